//! The partner bundle: `dist-widget/`, the widget alone, as a partner page
//! loads it from the companion server's `/widget/v1/`.
//!
//! From trunk's `dist/` it takes the wasm-bindgen glue (minified here with
//! terser: trunk leaves it as wasm-bindgen wrote it), the wasm and the CSS
//! built from `widget/style.css`, and names each by its content (`pientegra-<16 hex of its SHA-256>.<ext>`), so
//! the server may let browsers keep them for a year. A page names only the
//! stable loader `pientegra.js`, generated from `widget/loader/pientegra.js`
//! with those names and their integrity hashes filled in. Every file is also
//! written compressed (`.br`, `.gz`), so the server only has to pick one.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use sha2::{Digest, Sha256};

use super::minify::integrity;
use super::npm::TERSER;

/// The bundle folder, at the repository root.
pub const DIR: &str = "dist-widget";

/// The loader's file name, in the template folder and in the bundle.
const LOADER: &str = "pientegra.js";
/// The TypeScript declarations' file name, in the template folder and in the bundle.
const DECLARATIONS: &str = "pientegra.d.ts";

/// Writes `out` from trunk's `dist` and the loader folder `loader` (which
/// holds the template `pientegra.js` and `pientegra.d.ts`), removes what an
/// earlier build left there, and returns the sizes of what it wrote.
pub fn write(dist: &Path, loader: &Path, out: &Path) -> anyhow::Result<Vec<Shipped>> {
    let glue = trunk_output(dist, "pientegra-widget", ".js")?;
    let wasm = trunk_output(dist, "pientegra-widget", "_bg.wasm")?;
    // trunk names the CSS after its source file: `widget/style.css`, not the demo page's `demo.css`.
    let css = trunk_output(dist, "style", ".css")?;
    check_imports(&glue)?;

    let read = |path: &Path| std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    let assets = [
        Asset::new(terser(&glue).with_context(|| format!("minifying {}", glue.display()))?.into_bytes(), "js"),
        Asset::new(read(&wasm)?, "wasm"),
        Asset::new(read(&css)?, "css"),
    ];
    let template_path = loader.join(LOADER);
    let template = std::fs::read_to_string(&template_path)
        .with_context(|| format!("reading the loader template {}", template_path.display()))?;
    let loader_js = fill_loader(&template, &assets)
        .with_context(|| format!("filling in the loader template {}", template_path.display()))?;
    let minified = minify_loader(&loader_js, out)?;
    for asset in &assets {
        if !minified.contains(&asset.name) || !minified.contains(&asset.integrity) {
            bail!(
                "the minified loader lost {} or its integrity hash: does {} name it only in a comment?",
                asset.name,
                template_path.display()
            );
        }
    }
    let declarations = loader.join(DECLARATIONS);
    let declarations = std::fs::read(&declarations).with_context(|| format!("reading {}", declarations.display()))?;

    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    // The loader last: a page that fetches it mid-build finds every file it names.
    let files = assets
        .iter()
        .map(|a| (a.name.as_str(), a.bytes.as_slice()))
        .chain([(DECLARATIONS, declarations.as_slice()), (LOADER, minified.as_bytes())]);
    let mut shipped = Vec::new();
    let mut written = BTreeSet::new();
    for (name, bytes) in files {
        let gzip = gzip(bytes)?;
        let brotli = brotli(bytes)?;
        for (file, content) in [(format!("{name}.br"), &brotli), (format!("{name}.gz"), &gzip)] {
            write_file(out, &file, content)?;
            written.insert(file);
        }
        write_file(out, name, bytes)?;
        written.insert(name.to_owned());
        shipped.push(Shipped { name: name.to_owned(), raw: bytes.len(), gzip: gzip.len(), brotli: brotli.len() });
    }
    remove_all_but(out, &written)?;
    Ok(shipped)
}

/// One file of the bundle and its sizes, in bytes.
pub struct Shipped {
    pub name: String,
    pub raw: usize,
    pub gzip: usize,
    pub brotli: usize,
}

/// Prints what the bundle holds, and what a page downloads: everything but the declarations.
pub fn print_sizes(out: &Path, files: &[Shipped]) {
    eprintln!("xtask: {} (raw / gzip -9 / brotli q11):", out.display());
    let line = |name: &str, raw: usize, gzip: usize, brotli: usize| {
        eprintln!("  {name:<40} {raw:>9} B {gzip:>9} B {brotli:>9} B");
    };
    let (mut raw, mut gzip, mut brotli) = (0, 0, 0);
    for file in files {
        line(&file.name, file.raw, file.gzip, file.brotli);
        if file.name != DECLARATIONS {
            raw += file.raw;
            gzip += file.gzip;
            brotli += file.brotli;
        }
    }
    line("what a page loads (all but the .d.ts)", raw, gzip, brotli);
}

/// The glue, the wasm or the CSS, as the bundle names and pins it.
struct Asset {
    bytes: Vec<u8>,
    /// `pientegra-<16 hex of SHA-256>.<ext>`.
    name: String,
    /// `sha384-<base64>`, as a `integrity` attribute or `fetch` option wants it.
    integrity: String,
}

impl Asset {
    fn new(bytes: Vec<u8>, ext: &str) -> Asset {
        let digest = Sha256::digest(&bytes);
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Asset { name: format!("pientegra-{hex}.{ext}"), integrity: integrity(&bytes), bytes }
    }
}

/// The one file trunk wrote to `dist` as `<stem>-<hash><suffix>`: trunk
/// writes its 64-bit hash in hex without leading zeros, so up to 16 digits.
fn trunk_output(dist: &Path, stem: &str, suffix: &str) -> anyhow::Result<PathBuf> {
    let matches = |name: &str| {
        name.strip_prefix(stem)
            .and_then(|rest| rest.strip_prefix('-'))
            .and_then(|rest| rest.strip_suffix(suffix))
            .is_some_and(|hash| (1..=16).contains(&hash.len()) && hash.bytes().all(|b| b.is_ascii_hexdigit()))
    };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dist).with_context(|| format!("reading {} (cargo xtask widget)", dist.display()))? {
        let path = entry?.path();
        if path.is_file() && path.file_name().and_then(|n| n.to_str()).is_some_and(matches) {
            found.push(path);
        }
    }
    match found.as_slice() {
        [one] => Ok(one.clone()),
        [] => bail!("{} holds no {stem}-<hash>{suffix}: did trunk build the widget?", dist.display()),
        many => bail!("{} holds several {stem}-<hash>{suffix}: {many:?}", dist.display()),
    }
}

/// Fails if the glue imports a JS snippet: wasm-bindgen writes one under
/// `./snippets/` for each `inline_js` or `module` binding, and the partner
/// bundle ships the glue, the wasm and the CSS only.
fn check_imports(glue: &Path) -> anyhow::Result<()> {
    let source = std::fs::read_to_string(glue).with_context(|| format!("reading {}", glue.display()))?;
    if let Some(at) = source.find("./snippets/") {
        let snippet: String = source[at..].chars().take_while(|c| !matches!(c, '"' | '\'' | '`')).collect();
        bail!(
            "the widget's glue {} imports {snippet}, which the partner bundle does not ship (it holds the glue, the \
             wasm and the CSS only): the widget crate must not use `inline_js` or JS snippets",
            glue.display()
        );
    }
    Ok(())
}

/// The placeholders of the loader template and what each becomes.
fn fill_loader(template: &str, assets: &[Asset]) -> anyhow::Result<String> {
    let [js, wasm, css] = assets else { bail!("the bundle has a glue, a wasm and a CSS file") };
    let values = [
        ("__PK_JS__", &js.name),
        ("__PK_JS_INTEGRITY__", &js.integrity),
        ("__PK_WASM__", &wasm.name),
        ("__PK_WASM_INTEGRITY__", &wasm.integrity),
        ("__PK_CSS__", &css.name),
        ("__PK_CSS_INTEGRITY__", &css.integrity),
    ];
    let mut filled = template.to_owned();
    for (placeholder, value) in values {
        if !filled.contains(placeholder) {
            bail!("the template has no {placeholder}");
        }
        filled = filled.replace(placeholder, value);
    }
    Ok(filled)
}

/// The loader as terser minifies it. Its input goes through a scratch file
/// in `scratch` (the bundle folder); were it left there, the end of the build
/// would remove it with the other leftovers.
fn minify_loader(source: &str, scratch: &Path) -> anyhow::Result<String> {
    std::fs::create_dir_all(scratch).with_context(|| format!("creating {}", scratch.display()))?;
    let input = scratch.join(".loader.unminified.js");
    std::fs::write(&input, source).with_context(|| format!("writing {}", input.display()))?;
    let minified = terser(&input).context("minifying the loader");
    let _ = std::fs::remove_file(&input);
    minified
}

/// The module `input` as terser minifies it (`--module --compress --mangle`).
fn terser(input: &Path) -> anyhow::Result<String> {
    let terser = TERSER.path()?;
    let result = Command::new(&terser)
        .arg(input)
        .args(["--module", "--compress", "--mangle"])
        .output()
        .with_context(|| format!("starting {} (cargo xtask tools)", terser.display()))?;
    if !result.status.success() {
        bail!("terser failed: {}", String::from_utf8_lossy(&result.stderr));
    }
    String::from_utf8(result.stdout).context("terser's output is not UTF-8")
}

fn gzip(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    // GzEncoder writes no file name and a zero time: the same input gives the same bytes.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes)?;
    Ok(encoder.finish()?)
}

fn brotli(bytes: &[u8]) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams { quality: 11, lgwin: 22, ..Default::default() };
    brotli::BrotliCompress(&mut &bytes[..], &mut out, &params)?;
    Ok(out)
}

/// Writes `dir/name` whole or not at all (a server may be reading the folder).
fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> anyhow::Result<()> {
    let scratch = dir.join(format!(".{name}.partial"));
    let path = dir.join(name);
    std::fs::write(&scratch, bytes).with_context(|| format!("writing {}", scratch.display()))?;
    std::fs::rename(&scratch, &path).with_context(|| format!("renaming {} to {name}", scratch.display()))
}

/// Removes every entry of `dir` not named in `keep`: earlier builds' files.
fn remove_all_but(dir: &Path, keep: &BTreeSet<String>) -> anyhow::Result<()> {
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let entry = entry?;
        if keep.contains(entry.file_name().to_string_lossy().as_ref()) {
            continue;
        }
        let path = entry.path();
        let removed =
            if entry.file_type()?.is_dir() { std::fs::remove_dir_all(&path) } else { std::fs::remove_file(&path) };
        removed.with_context(|| format!("removing {}", path.display()))?;
    }
    Ok(())
}

/// What the module `source` imports: the specifiers of `import … from "x"`,
/// `import "x"`, `export … from "x"` and `import("x")`.
///
#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// A `dist/` as trunk leaves it, the loader folder, and the bundle folder, in one temporary directory.
    struct Fixture {
        _dir: tempfile::TempDir,
        dist: PathBuf,
        loader: PathBuf,
        out: PathBuf,
    }

    /// As wasm-bindgen writes it: comments, long names, whitespace.
    const GLUE: &str = "// wasm-bindgen's glue\nlet wasm;\n\nexport function mountDeposit(element, options) {\n    \
        return wasm.mount(element, options);\n}\n\nexport default async function init(module_or_path) {\n    \
        module_or_path ??= new URL(\"pientegra-widget_bg.wasm\", import.meta.url);\n    wasm = module_or_path;\n}\n";
    const TEMPLATE: &str = "// the loader\nconst files = { js: \"__PK_JS__\", jsIntegrity: \"__PK_JS_INTEGRITY__\",\n  \
        wasm: \"__PK_WASM__\", wasmIntegrity: \"__PK_WASM_INTEGRITY__\",\n  css: \"__PK_CSS__\", cssIntegrity: \
        \"__PK_CSS_INTEGRITY__\" };\nexport const ready = Promise.resolve(files);\n";

    impl Fixture {
        fn new() -> Fixture {
            let dir = tempfile::tempdir().unwrap();
            let dist = dir.path().join("dist");
            let loader = dir.path().join("loader");
            std::fs::create_dir_all(&dist).unwrap();
            std::fs::create_dir_all(&loader).unwrap();
            let file = |dir: &Path, name: &str, content: &[u8]| std::fs::write(dir.join(name), content).unwrap();
            file(&dist, "pientegra-widget-0123456789abcdef.js", GLUE.as_bytes());
            file(&dist, "pientegra-widget-0123456789abcdef_bg.wasm", b"\0asm\x01\0\0\0 the widget");
            file(&dist, "style-fedcba9876543210.css", b".pk{color:red}");
            file(&dist, "demo-0011223344556677.css", b".demo{color:blue}");
            file(&dist, "demo.js", b"import('./pientegra-widget-0123456789abcdef.js')");
            file(&dist, "index.html", b"<!doctype html>");
            file(&loader, LOADER, TEMPLATE.as_bytes());
            file(&loader, DECLARATIONS, b"export declare const ready: Promise<void>;\n");
            let out = dir.path().join(DIR);
            Fixture { _dir: dir, dist, loader, out }
        }

        fn write(&self) -> anyhow::Result<Vec<Shipped>> {
            write(&self.dist, &self.loader, &self.out)
        }

        fn names(&self) -> BTreeSet<String> {
            std::fs::read_dir(&self.out)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        }
    }

    fn content_name(bytes: &[u8], ext: &str) -> String {
        let hex: String = Sha256::digest(bytes)[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("pientegra-{hex}.{ext}")
    }

    #[test]
    fn the_bundle_holds_the_content_named_files_a_filled_in_loader_and_their_compressed_twins() {
        if TERSER.for_test().is_none() {
            return;
        }
        let fixture = Fixture::new();
        std::fs::create_dir_all(fixture.out.join("old")).unwrap();
        std::fs::write(fixture.out.join("pientegra-00000000deadbeef.wasm"), b"an earlier build").unwrap();

        let shipped = fixture.write().unwrap();

        let js = &shipped[0].name;
        let glue = std::fs::read_to_string(fixture.out.join(js)).unwrap();
        assert_eq!(*js, content_name(glue.as_bytes(), "js"), "named by its minified content");
        assert!(glue.len() < GLUE.len() && !glue.contains("wasm-bindgen's glue"), "minified: {glue}");
        assert!(glue.contains("mountDeposit"), "exports keep their names: {glue}");
        let wasm = content_name(b"\0asm\x01\0\0\0 the widget", "wasm");
        let css = content_name(b".pk{color:red}", "css");
        let expected: BTreeSet<String> = [js, &wasm, &css, DECLARATIONS, LOADER]
            .iter()
            .flat_map(|name| [name.to_string(), format!("{name}.br"), format!("{name}.gz")])
            .collect();
        assert_eq!(fixture.names(), expected, "the earlier build's files, the demo's CSS and scratch files are gone");
        assert_eq!(
            shipped.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            [js, &wasm, &css, DECLARATIONS, LOADER]
        );

        let loader = std::fs::read_to_string(fixture.out.join(LOADER)).unwrap();
        assert!(!loader.contains("__PK_"), "{loader}");
        assert!(!loader.contains("the loader"), "minified, comments dropped: {loader}");
        for (name, content) in
            [(js, glue.as_bytes()), (&wasm, b"\0asm\x01\0\0\0 the widget"), (&css, b".pk{color:red}")]
        {
            assert_eq!(std::fs::read(fixture.out.join(name)).unwrap(), content);
            assert!(loader.contains(&format!("\"{name}\"")), "{name} in {loader}");
            assert!(loader.contains(&format!("\"{}\"", integrity(content))), "{name}'s integrity in {loader}");
        }
        for name in fixture.names().iter().filter(|n| !n.ends_with(".br") && !n.ends_with(".gz")) {
            let raw = std::fs::read(fixture.out.join(name)).unwrap();
            let mut from_gzip = Vec::new();
            flate2::read::GzDecoder::new(&std::fs::read(fixture.out.join(format!("{name}.gz"))).unwrap()[..])
                .read_to_end(&mut from_gzip)
                .unwrap();
            let mut from_brotli = Vec::new();
            brotli::BrotliDecompress(
                &mut &std::fs::read(fixture.out.join(format!("{name}.br"))).unwrap()[..],
                &mut from_brotli,
            )
            .unwrap();
            assert_eq!(from_gzip, raw, "{name}.gz");
            assert_eq!(from_brotli, raw, "{name}.br");
        }
    }

    #[test]
    fn a_glue_that_imports_a_snippet_is_refused_and_the_bundle_left_alone() {
        let fixture = Fixture::new();
        let glue = format!("import{{f}}from\"./snippets/pientegra-widget-92fd3ec2a28be3f0/inline0.js\";{GLUE}");
        std::fs::write(fixture.dist.join("pientegra-widget-0123456789abcdef.js"), glue).unwrap();
        std::fs::create_dir_all(&fixture.out).unwrap();
        std::fs::write(fixture.out.join(LOADER), "the last good loader").unwrap();

        let error = format!("{:#}", fixture.write().err().expect("refused"));

        assert!(error.contains("./snippets/pientegra-widget-92fd3ec2a28be3f0/inline0.js"), "{error}");
        assert!(error.contains("inline_js"), "{error}");
        assert_eq!(std::fs::read_to_string(fixture.out.join(LOADER)).unwrap(), "the last good loader");
    }

    #[test]
    fn a_template_without_a_placeholder_is_refused() {
        let fixture = Fixture::new();
        std::fs::write(fixture.loader.join(LOADER), TEMPLATE.replace("__PK_CSS_INTEGRITY__", "sha384-x")).unwrap();

        let error = format!("{:#}", fixture.write().err().expect("refused"));

        assert!(error.contains("__PK_CSS_INTEGRITY__"), "{error}");
    }

    #[test]
    fn a_dist_without_the_widget_css_is_refused() {
        let fixture = Fixture::new();
        std::fs::remove_file(fixture.dist.join("style-fedcba9876543210.css")).unwrap();

        let error = format!("{:#}", fixture.write().err().expect("refused"));

        assert!(error.contains("style-<hash>.css"), "{error}");
    }
}
