//! The Python packages the tests use, each installed from PyPI at a pinned
//! release with `pip install --target` into its own folder under
//! `$CARGO_HOME` (beside the npm tools, outside the repository). A test puts
//! that folder on `PYTHONPATH`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::Context;

use super::{cargo_home, run};

/// One PyPI package and the folder it is installed into.
pub struct PipPackage {
    package: &'static str,
    version: &'static str,
    dir: &'static str,
}

/// The JWT library of the integration guide's Python snippet, which
/// `tests/tests/jwt_interop.rs` runs against the server.
pub const PYJWT: PipPackage = PipPackage { package: "PyJWT", version: "2.15.1", dir: "pyjwt" };

/// The OpenAPI validator `tests/tests/openapi.rs` checks the server's document with.
pub const OPENAPI_SPEC_VALIDATOR: PipPackage =
    PipPackage { package: "openapi-spec-validator", version: "0.9.0", dir: "openapi-spec-validator" };

impl PipPackage {
    /// `$CARGO_HOME/<dir>`: what goes on `PYTHONPATH`.
    fn target(&self) -> anyhow::Result<PathBuf> {
        Ok(cargo_home()?.join(self.dir))
    }

    /// Installs the pinned release unless it is there already.
    pub fn install(&self) -> anyhow::Result<()> {
        let target = self.target()?;
        // pip names the metadata folder after the normalized name: lower case, `_` for `-`.
        let dist_info = format!("{}-{}.dist-info", self.package.to_lowercase().replace('-', "_"), self.version);
        if target.join(dist_info).is_dir() {
            return Ok(());
        }
        run(Command::new("python3")
            .args(["-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--upgrade", "--target"])
            .arg(&target)
            .arg(format!("{}=={}", self.package, self.version)))
        .with_context(|| format!("installing {} from PyPI (needs Python 3 with pip)", self.package))
    }
}
