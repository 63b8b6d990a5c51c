//! `cargo xtask fuzz [SECONDS]`: runs every libFuzzer target of `fuzz/` for a
//! while, starting from the committed seed corpus, and fails if any crashes.
//!
//! cargo-fuzz needs nightly-only flags (`-Zsanitizer`, `-Cpasses`); the kit
//! builds with stable, so they are unlocked with `RUSTC_BOOTSTRAP=1` rather than
//! by asking for a second toolchain. Runs work on a scratch copy of the corpus
//! under `fuzz/target/`, so what libFuzzer adds never dirties the committed one.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

/// Where a crashing input of `target` is written (ignored by git).
const ARTIFACTS: &str = "artifacts";

/// What one target's run did.
struct Outcome {
    target: String,
    executions: Option<u64>,
    crashed: bool,
    artifact: Option<String>,
}

/// Installs cargo-fuzz if needed, then fuzzes each target for `seconds`
/// (0 = only replay the seed corpus) and prints executions and crashes per target.
pub fn run(seconds: u64) -> anyhow::Result<()> {
    let fuzz_dir = fuzz_dir();
    ensure_cargo_fuzz()?;
    let targets = targets(&fuzz_dir)?;
    let sanitizer = build(&fuzz_dir)?;

    let mut outcomes = Vec::new();
    for target in &targets {
        let corpus = scratch_corpus(&fuzz_dir, target)?;
        let budget = if seconds == 0 { "-runs=0".to_owned() } else { format!("-max_total_time={seconds}") };
        eprintln!("xtask: fuzzing {target} for {seconds} s");
        let mut cmd = cargo_fuzz(&fuzz_dir);
        cmd.args(["run", target.as_str()]).arg(&corpus).args(["--sanitizer", sanitizer]);
        cmd.args(["--", budget.as_str(), "-print_final_stats=1"]);
        cmd.arg(format!("-artifact_prefix={}/", fuzz_dir.join(ARTIFACTS).join(target).display()));
        std::fs::create_dir_all(fuzz_dir.join(ARTIFACTS).join(target)).context("creating the artifacts folder")?;
        let out = cmd.output().with_context(|| format!("starting {cmd:?}"))?;
        // libFuzzer reports on stderr; cargo's own lines go there too.
        let log = String::from_utf8_lossy(&out.stderr);
        let crashed = !out.status.success() || log.contains("==ERROR") || log.contains("Test unit written to");
        if crashed {
            eprintln!("{log}");
        }
        outcomes.push(Outcome {
            target: target.clone(),
            executions: final_stat(&log, "stat::number_of_executed_units"),
            crashed,
            artifact: log.lines().find_map(|l| l.split_once("Test unit written to ")).map(|(_, p)| p.trim().to_owned()),
        });
    }

    println!("{:<20} {:>14}  result", "target", "executions");
    for o in &outcomes {
        let executions = o.executions.map_or_else(|| "?".to_owned(), |n| n.to_string());
        let result = match (&o.crashed, &o.artifact) {
            (false, _) => "ok".to_owned(),
            (true, Some(path)) => format!("CRASHED, input in {path}"),
            (true, None) => "CRASHED".to_owned(),
        };
        println!("{:<20} {executions:>14}  {result}", o.target);
    }
    let crashed: Vec<&str> = outcomes.iter().filter(|o| o.crashed).map(|o| o.target.as_str()).collect();
    if !crashed.is_empty() {
        bail!("fuzz targets crashed: {}", crashed.join(", "));
    }
    Ok(())
}

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits in the workspace").join("fuzz")
}

fn cargo_fuzz(fuzz_dir: &Path) -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.arg("fuzz").current_dir(fuzz_dir).env("RUSTC_BOOTSTRAP", "1");
    cmd
}

fn ensure_cargo_fuzz() -> anyhow::Result<()> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let installed = Command::new(&cargo).args(["fuzz", "--version"]).output().is_ok_and(|o| o.status.success());
    if installed {
        return Ok(());
    }
    eprintln!("xtask: installing cargo-fuzz");
    let status = Command::new(&cargo)
        .args(["install", "cargo-fuzz", "--locked"])
        .status()
        .context("starting cargo install cargo-fuzz")?;
    if !status.success() {
        bail!("cargo install cargo-fuzz failed ({status})");
    }
    Ok(())
}

/// The target names: one `fuzz_targets/<name>.rs` each.
fn targets(fuzz_dir: &Path) -> anyhow::Result<Vec<String>> {
    let mut targets = Vec::new();
    for entry in std::fs::read_dir(fuzz_dir.join("fuzz_targets")).context("listing fuzz/fuzz_targets")? {
        let path = entry?.path();
        let stem = path.file_stem().and_then(|s| s.to_str());
        match stem {
            Some(stem) if path.extension().is_some_and(|e| e == "rs") => targets.push(stem.to_owned()),
            _ => {}
        }
    }
    targets.sort();
    if targets.is_empty() {
        bail!("no fuzz targets in {}", fuzz_dir.join("fuzz_targets").display());
    }
    Ok(targets)
}

/// Builds every target with AddressSanitizer, or without a sanitizer where the
/// toolchain has no ASan runtime; returns the sanitizer that built.
fn build(fuzz_dir: &Path) -> anyhow::Result<&'static str> {
    for sanitizer in ["address", "none"] {
        let mut cmd = cargo_fuzz(fuzz_dir);
        cmd.args(["build", "--sanitizer", sanitizer]);
        eprintln!("xtask: running {cmd:?}");
        if cmd.status().with_context(|| format!("starting {cmd:?}"))?.success() {
            return Ok(sanitizer);
        }
        eprintln!("xtask: building the fuzz targets with sanitizer {sanitizer} failed");
    }
    bail!("the fuzz targets do not build")
}

/// A fresh copy of `fuzz/corpus/<target>` under `fuzz/target/`, for libFuzzer to grow.
fn scratch_corpus(fuzz_dir: &Path, target: &str) -> anyhow::Result<PathBuf> {
    let committed = fuzz_dir.join("corpus").join(target);
    let scratch = fuzz_dir.join("target").join("xtask-corpus").join(target);
    if scratch.exists() {
        std::fs::remove_dir_all(&scratch).with_context(|| format!("clearing {}", scratch.display()))?;
    }
    std::fs::create_dir_all(&scratch).with_context(|| format!("creating {}", scratch.display()))?;
    if committed.is_dir() {
        for entry in std::fs::read_dir(&committed).with_context(|| format!("listing {}", committed.display()))? {
            let path = entry?.path();
            if path.is_file() {
                std::fs::copy(&path, scratch.join(path.file_name().expect("a file has a name")))
                    .with_context(|| format!("copying {}", path.display()))?;
            }
        }
    }
    Ok(scratch)
}

/// The value of libFuzzer's `-print_final_stats=1` line `name: N`.
fn final_stat(log: &str, name: &str) -> Option<u64> {
    log.lines().rev().find_map(|line| line.trim().strip_prefix(name)?.trim().strip_prefix(':')?.trim().parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_libfuzzer_final_stats() {
        let log = "#2\tDONE cov: 3\nDone 123 runs in 1 second(s)\nstat::number_of_executed_units: 123456\n\
                   stat::average_exec_per_sec:     4567\n";
        assert_eq!(final_stat(log, "stat::number_of_executed_units"), Some(123_456));
        assert_eq!(final_stat(log, "stat::average_exec_per_sec"), Some(4_567));
        assert_eq!(final_stat("no stats", "stat::number_of_executed_units"), None);
    }
}
