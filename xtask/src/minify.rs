//! A trunk-built page's JavaScript, minified after trunk's build (the bench's
//! Leptos counter; the partner bundle minifies the widget's own scripts).
//!
//! Trunk minifies the page and the CSS but leaves wasm-bindgen's glue and
//! snippets as wasm-bindgen wrote them; terser takes them from 9.0 to 6.5 KiB
//! gzip. Trunk pins each of them in `index.html` with a Subresource Integrity
//! hash, so each file's hash there is replaced by its minified content's.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::Context;
use base64::Engine;
use sha2::{Digest, Sha384};

use super::npm::TERSER;
use super::run;

/// Minifies, in place, every script in `dist` that its `index.html` names
/// and pins with an integrity hash (what trunk built from the crate), and
/// updates those hashes. Scripts the page does not pin (the demo's own
/// `demo.js`) stay as written.
pub fn pinned_scripts(dist: &Path) -> anyhow::Result<()> {
    let index = dist.join("index.html");
    let mut html = std::fs::read_to_string(&index).with_context(|| format!("reading {}", index.display()))?;
    let terser = TERSER.path()?;
    for script in scripts(dist)? {
        let href = script.strip_prefix(dist)?.to_string_lossy().into_owned();
        let pin = integrity(&std::fs::read(&script)?);
        if !(html.contains(&format!("/{href}")) && html.contains(&pin)) {
            continue;
        }
        run(Command::new(&terser).arg(&script).args(["--module", "--compress", "--mangle", "--output"]).arg(&script))?;
        let minified = integrity(&std::fs::read(&script)?);
        html = html.replace(&pin, &minified);
    }
    std::fs::write(&index, html).with_context(|| format!("writing {}", index.display()))
}

/// The `integrity` attribute value of `content`, as trunk writes it.
pub fn integrity(content: &[u8]) -> String {
    format!("sha384-{}", base64::engine::general_purpose::STANDARD.encode(Sha384::digest(content)))
}

/// Every `.js` file under `dir`.
fn scripts(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.is_dir() {
            found.extend(scripts(&path)?);
        } else if path.extension().is_some_and(|ext| ext == "js") {
            found.push(path);
        }
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GLUE: &str =
        "export function greet(name) {\n    const greeting = 'hello, ' + name;\n    return greeting;\n}\n";

    #[test]
    fn pinned_scripts_are_minified_and_repinned_and_the_rest_left_alone() {
        // `page.js` has the same content, so the same hash, as the pinned
        // script: only the page's reference to `glue.js` tells them apart.
        if TERSER.for_test().is_none() {
            return;
        }
        let dist = tempfile::tempdir().unwrap();
        let snippets = dist.path().join("snippets");
        std::fs::create_dir(&snippets).unwrap();
        std::fs::write(snippets.join("glue.js"), GLUE).unwrap();
        std::fs::write(dist.path().join("page.js"), GLUE).unwrap();
        let html = format!("<link href=/snippets/glue.js integrity={} rel=modulepreload>", integrity(GLUE.as_bytes()));
        std::fs::write(dist.path().join("index.html"), html).unwrap();

        pinned_scripts(dist.path()).unwrap();

        let minified = std::fs::read(snippets.join("glue.js")).unwrap();
        assert!(minified.len() < GLUE.len(), "{}", String::from_utf8_lossy(&minified));
        assert!(String::from_utf8_lossy(&minified).contains("export function greet"), "exports keep their names");
        let html = std::fs::read_to_string(dist.path().join("index.html")).unwrap();
        assert_eq!(html, format!("<link href=/snippets/glue.js integrity={} rel=modulepreload>", integrity(&minified)));
        assert_eq!(std::fs::read_to_string(dist.path().join("page.js")).unwrap(), GLUE, "an unpinned script");
    }
}
