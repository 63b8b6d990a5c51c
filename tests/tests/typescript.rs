//! The loader's TypeScript declarations (`widget/loader/pientegra.d.ts`)
//! against the example partner script that uses all of them and the file of
//! misuses they must refuse, with the tsc that `cargo xtask tools` installs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// `widget/loader`: the declarations, the examples and their tsconfig.json.
fn loader_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../widget/loader")
}

/// `tsc --noEmit --strict` on the project in `dir`.
fn type_check(tsc: &Path, dir: &Path) -> Output {
    Command::new(tsc)
        .arg("--project")
        .arg(dir)
        .args(["--noEmit", "--strict", "--pretty", "false"])
        .output()
        .unwrap_or_else(|e| panic!("running {}: {e}", tsc.display()))
}

fn text(output: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr))
}

/// The TypeScript compiler: the one `cargo xtask tools` installs under
/// `$CARGO_HOME/typescript`, else `tsc` on PATH. Without it the tests skip,
/// saying so, except under `CI=true`, where they fail.
fn tsc() -> Option<PathBuf> {
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")));
    let installed = cargo_home.map(|home| home.join("typescript/node_modules/.bin/tsc")).filter(|p| p.exists());
    let on_path = || {
        std::env::var_os("PATH")
            .and_then(|path| std::env::split_paths(&path).map(|dir| dir.join("tsc")).find(|p| p.exists()))
    };
    let found = installed.or_else(on_path);
    if found.is_none() {
        assert!(std::env::var("CI").is_err(), "CI=true but tsc is missing (cargo xtask tools)");
        eprintln!("skipped: tsc is missing (cargo xtask tools installs it)");
    }
    found
}

#[test]
fn the_example_partner_script_type_checks_and_every_misuse_is_refused() {
    let Some(tsc) = tsc() else { return };

    let output = type_check(&tsc, &loader_dir());

    assert!(output.status.success(), "tsc:\n{}", text(&output));
}

#[test]
fn declarations_grown_loose_fail_the_check() {
    let Some(tsc) = tsc() else { return };
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(loader_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "ts" || ext == "json") {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let declarations = dir.path().join("pientegra.d.ts");
    let exact = std::fs::read_to_string(&declarations).unwrap();
    let modes = r#"export type PientegraMode = "popup" | "redirect" | "auto" | "iframe";"#;
    assert!(exact.contains(modes), "the declarations name the modes as the test expects");
    std::fs::write(&declarations, exact.replace(modes, "export type PientegraMode = string;")).unwrap();

    let output = type_check(&tsc, dir.path());

    let errors = text(&output);
    assert!(!output.status.success(), "tsc accepted any string as a mode:\n{errors}");
    assert!(errors.contains("example-misuse.ts") && errors.contains("TS2578"), "{errors}");
}
