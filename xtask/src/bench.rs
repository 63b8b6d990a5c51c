//! `cargo xtask bench [--only 1,2,..] [--quick] [--no-build]`: builds what the
//! benchmarks measure (the server and the load generator in release, the widget,
//! its partner bundle and the Leptos counter baseline with trunk), then runs `pientegra-bench`,
//! which prints the table and writes BENCHMARKS.md.
//!
//! The bench binary runs under `ulimit -n <hard limit>`: figures 2 and 3 hold
//! 10,000 SSE connections open, one file descriptor each on both ends.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Builds, then runs the benchmarks with `args` passed through.
pub fn run(args: &[String]) -> anyhow::Result<()> {
    let root = super::root();
    let no_build = args.iter().any(|a| a == "--no-build");
    let passed: Vec<&String> = args.iter().filter(|a| *a != "--no-build").collect();

    super::run(super::cargo().args(["build", "--release", "-p", "pientegra-server", "-p", "pientegra-bench"]))?;
    if !no_build {
        // Figures 6, 7 and 9 measure these builds; a failure is reported by
        // the bench as "not measured" rather than stopping every other figure.
        super::tools()?;
        // The counter gets its own target directory: a shared one would hand
        // it the widget's wasm-bindgen snippets, and the bench would count them.
        let counter_target = target_dir(&root).join("counter");
        for (dir, target) in [(root.clone(), target_dir(&root)), (root.join("bench").join("counter"), counter_target)] {
            let built = super::run(Command::new("trunk").current_dir(&dir).env("CARGO_TARGET_DIR", &target).args([
                "build",
                "--release",
                "--offline",
            ]))
            .and_then(|()| super::minify::pinned_scripts(&dir.join("dist")))
            .and_then(|()| if dir == root { super::bundles() } else { Ok(()) });
            if let Err(error) = built {
                eprintln!("xtask: bench: trunk build in {} failed: {error:#}", dir.display());
            }
        }
    }

    let release = target_dir(&root).join("release");
    let bench = release.join("pientegra-bench");
    let server = release.join("pientegra-server");
    let mut cmd = Command::new("sh");
    // Raise the soft descriptor limit to the hard one; the server the bench
    // spawns inherits it.
    cmd.current_dir(&root)
        .args(["-c", r#"ulimit -n "$(ulimit -Hn)" 2>/dev/null; exec "$0" "$@""#])
        .arg(&bench)
        .arg("--root")
        .arg(&root)
        .arg("--server-bin")
        .arg(&server)
        .args(passed);
    super::run(&mut cmd)
}

/// Where cargo puts its builds: `CARGO_TARGET_DIR` (relative to the workspace) or `target/`.
fn target_dir(root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => root.join(dir),
        _ => root.join("target"),
    }
}
