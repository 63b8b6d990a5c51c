//! The Node.js tools of the build, each installed from npm at a pinned
//! release into its own prefix under `$CARGO_HOME` (beside cargo's tools,
//! outside the repository), so every machine measures and checks with the same one.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Context;

use super::{cargo_home, output, run};

/// One npm package and the command it provides.
pub struct NpmTool {
    package: &'static str,
    version: &'static str,
    bin: &'static str,
}

/// Minifies the widget's scripts and the loader.
pub const TERSER: NpmTool = NpmTool { package: "terser", version: "5.51.2", bin: "terser" };

/// Type-checks the loader's declarations against the example partner scripts
/// (`tests/tests/typescript.rs` looks for it at the same place).
pub const TYPESCRIPT: NpmTool = NpmTool { package: "typescript", version: "5.9.3", bin: "tsc" };

impl NpmTool {
    /// `$CARGO_HOME/<package>`: the tool's own npm prefix.
    fn prefix(&self) -> anyhow::Result<PathBuf> {
        Ok(cargo_home()?.join(self.package))
    }

    /// The tool's command, once installed.
    pub fn path(&self) -> anyhow::Result<PathBuf> {
        Ok(self.prefix()?.join("node_modules/.bin").join(self.bin))
    }

    /// Installs the pinned release unless it is there already.
    pub fn install(&self) -> anyhow::Result<()> {
        let found = output(&self.path()?.to_string_lossy(), &["--version"]).unwrap_or_default();
        if found.split_whitespace().any(|word| word == self.version) {
            return Ok(());
        }
        run(Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(self.prefix()?)
            .arg(format!("{}@{}", self.package, self.version)))
        .with_context(|| format!("installing {} from npm (needs Node.js and npm)", self.package))
    }
}

/// An npm library a test imports, installed like the tools into its own
/// prefix under `$CARGO_HOME` (the test links that prefix's `node_modules`).
pub struct NpmLibrary {
    package: &'static str,
    version: &'static str,
}

/// The JWT library of the integration guide's Node.js snippet, which
/// `tests/tests/jwt_interop.rs` runs against the server.
pub const JOSE: NpmLibrary = NpmLibrary { package: "jose", version: "6.2.19" };

impl NpmLibrary {
    /// Installs the pinned release unless it is there already.
    pub fn install(&self) -> anyhow::Result<()> {
        let prefix = cargo_home()?.join(self.package);
        let manifest = prefix.join("node_modules").join(self.package).join("package.json");
        // npm writes the manifest's fields one a line.
        let installed = std::fs::read_to_string(&manifest)
            .is_ok_and(|text| text.contains(&format!("\"version\": \"{}\"", self.version)));
        if installed {
            return Ok(());
        }
        run(Command::new("npm")
            .args(["install", "--no-audit", "--no-fund", "--prefix"])
            .arg(&prefix)
            .arg(format!("{}@{}", self.package, self.version)))
        .with_context(|| format!("installing {} from npm (needs Node.js and npm)", self.package))
    }
}

#[cfg(test)]
impl NpmTool {
    /// The installed command for a test that needs it; `None` (the test
    /// skips, saying so) when it is missing, except under `CI=true`.
    pub fn for_test(&self) -> Option<PathBuf> {
        let path = self.path().ok().filter(|path| path.exists());
        if path.is_none() {
            // `cargo xtask test` installs the tools first; a plain `cargo test` may not have them.
            assert!(std::env::var("CI").is_err(), "CI=true but {} is not installed (cargo xtask tools)", self.package);
            eprintln!("skipped: {} is not installed (cargo xtask tools)", self.package);
        }
        path
    }
}
