//! `cargo xtask`: the project's two commands and what they need.
//!
//! - `cargo xtask demo [--auto-approve-ms N]`: installs missing tools, builds the
//!   widget, and runs the sandbox, the server and the demo page.
//! - `cargo xtask test`: installs missing tools, checks the wasm builds, builds
//!   the widget, and runs every test (browser tests included).
//! - `cargo xtask widget`: builds the widget and the demo page into `dist/`,
//!   and the partner bundle into `dist-widget/`, and prints their sizes.
//! - `cargo xtask crash` / `cargo xtask chaos`: the reliability storms at full size.
//! - `cargo xtask scaleout`: the storms through nginx to two instances on
//!   PostgreSQL (needs nginx and `PIENTEGRA_TEST_POSTGRES_URL`) at full size.
//! - `cargo xtask fuzz [seconds]`: every fuzz target for at least that long (default 60).
//! - `cargo xtask bench`: the benchmarks; writes BENCHMARKS.md.

mod bench;
mod bundle;
mod fuzz;
mod minify;
mod npm;
mod pip;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use anyhow::{Context, bail};

/// The trunk release that builds with this toolchain (newer ones need a newer rustc).
const TRUNK_VERSION: &str = "0.21.14";
const WASM_TARGET: &str = "wasm32-unknown-unknown";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("demo") => demo(&args[1..]),
        Some("test") => test(&args[1..]),
        Some("widget") => tools().and_then(|()| widget()),
        Some("tools") => tools(),
        Some("bench") => bench::run(&args[1..]),
        Some("fuzz") => {
            let seconds = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(60);
            fuzz::run(seconds)
        }
        Some("crash") => storm(
            "crash",
            &[
                ("CRASH_USERS", "50"),
                ("CRASH_DEPOSITS", "2000"),
                ("CRASH_WITHDRAWALS", "300"),
                ("CRASH_KILLS", "12"),
                ("CRASH_WORKERS", "16"),
            ],
        ),
        Some("chaos") => storm(
            "chaos",
            &[("CHAOS_USERS", "50"), ("CHAOS_DEPOSITS", "1000"), ("CHAOS_WITHDRAWALS", "200"), ("CHAOS_WORKERS", "16")],
        ),
        Some("scaleout") => storm(
            "scaleout",
            &[
                ("SCALEOUT_USERS", "50"),
                ("SCALEOUT_DEPOSITS", "1000"),
                ("SCALEOUT_WITHDRAWALS", "200"),
                ("SCALEOUT_WORKERS", "16"),
                ("SCALEOUT_KILLS", "12"),
                ("SCALEOUT_KILLS_WITH_DB_FAULTS", "4"),
                ("SCALEOUT_DB_FAULTS", "30"),
                ("SCALEOUT_WATCHERS", "10"),
            ],
        ),
        _ => {
            eprintln!("usage: cargo xtask <demo|test|widget|tools|crash|chaos|scaleout|fuzz [seconds]|bench>");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("xtask: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask sits in the workspace").to_path_buf()
}

fn cargo() -> Command {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.current_dir(root());
    cmd
}

fn run(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("xtask: running {cmd:?}");
    let status = cmd.status().with_context(|| format!("starting {cmd:?}"))?;
    if !status.success() {
        bail!("{cmd:?} failed ({status})");
    }
    Ok(())
}

fn output(program: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(program).args(args).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The exact `wasm-bindgen` version in Cargo.lock: the CLI must match it.
fn wasm_bindgen_version() -> anyhow::Result<String> {
    let lock = std::fs::read_to_string(root().join("Cargo.lock")).context("reading Cargo.lock")?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"wasm-bindgen\"" {
            if let Some(version) = lines.next().and_then(|l| l.strip_prefix("version = \"")) {
                return Ok(version.trim_end_matches('"').to_owned());
            }
        }
    }
    bail!("wasm-bindgen is not in Cargo.lock")
}

/// Installs what a fresh machine lacks: the wasm32 target, trunk,
/// wasm-bindgen-cli, a working wasm-opt, terser and TypeScript, the JWT
/// libraries the interop tests mint with (jose from npm, PyJWT from PyPI), and
/// the OpenAPI validator (openapi-spec-validator from PyPI).
fn tools() -> anyhow::Result<()> {
    let installed = output("rustup", &["target", "list", "--installed"]).unwrap_or_default();
    if !installed.lines().any(|t| t.trim() == WASM_TARGET) {
        run(Command::new("rustup").args(["target", "add", WASM_TARGET]))?;
    }
    let trunk = output("trunk", &["--version"]).unwrap_or_default();
    if !trunk.contains(TRUNK_VERSION) {
        // --debug: trunk's release profile is fat LTO with one codegen unit, which took
        // about 5 minutes of a fresh CI run; the debug build takes 3 and trunk's own work is light.
        run(cargo().args(["install", "trunk", "--version", TRUNK_VERSION, "--locked", "--debug"]))?;
    }
    let bindgen = wasm_bindgen_version()?;
    let cli = output("wasm-bindgen", &["--version"]).unwrap_or_default();
    if !cli.split_whitespace().any(|w| w == bindgen) {
        // Not --locked: the registry lacks some of the CLI's locked dependency versions.
        // --debug, as trunk: the install takes half the time (1 min 51 s against 3 min 43 s
        // here) and its one run per widget build 1 s instead of 0.2 s, with the same output.
        run(cargo().args(["install", "wasm-bindgen-cli", "--version", &bindgen, "--debug"]))?;
    }
    wasm_opt()?;
    npm::TERSER.install()?;
    npm::TYPESCRIPT.install()?;
    npm::JOSE.install()?;
    pip::PYJWT.install()?;
    pip::OPENAPI_SPEC_VALIDATOR.install()
}

/// Where cargo keeps its installed tools: `$CARGO_HOME`, or `~/.cargo`.
fn cargo_home() -> anyhow::Result<PathBuf> {
    match std::env::var_os("CARGO_HOME") {
        Some(home) => Ok(PathBuf::from(home)),
        None => {
            Ok(PathBuf::from(std::env::var_os("HOME").context("neither CARGO_HOME nor HOME is set")?).join(".cargo"))
        }
    }
}

/// The binaryen release the widget is checked with. Debian's (108) must not be
/// used: it rewrites the module's export of wasm-bindgen's externref table
/// (`__wbindgen_externrefs`) to point at the function table, even with no
/// pass run, and the page then dies in `WebAssembly.Table.set()`.
const WASM_OPT_MIN: u32 = 132;
/// What npm installs when the machine's `wasm-opt` is missing or older.
const BINARYEN_NPM: &str = "binaryen@132.0.0";

/// The major version of the `wasm-opt` on PATH ("wasm-opt version 132 (version_132)").
fn wasm_opt_version() -> Option<u32> {
    let text = output("wasm-opt", &["--version"])?;
    text.split_whitespace().skip_while(|w| *w != "version").nth(1)?.parse().ok()
}

/// Makes sure the `wasm-opt` trunk finds is recent enough: if not, installs
/// npm's build of binaryen (it runs on the machine's Node.js) beside cargo's
/// tools and links it into `$CARGO_HOME/bin`, which comes first on PATH.
fn wasm_opt() -> anyhow::Result<()> {
    if wasm_opt_version().is_some_and(|v| v >= WASM_OPT_MIN) {
        return Ok(());
    }
    let cargo_home = cargo_home()?;
    let prefix = cargo_home.join("binaryen");
    run(Command::new("npm").args(["install", "--no-audit", "--no-fund", "--prefix"]).arg(&prefix).arg(BINARYEN_NPM))
        .context("installing binaryen from npm (needs Node.js and npm)")?;
    let link = cargo_home.join("bin").join("wasm-opt");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(prefix.join("node_modules/binaryen/bin/wasm-opt"), &link)
        .with_context(|| format!("linking {}", link.display()))?;
    match wasm_opt_version() {
        Some(v) if v >= WASM_OPT_MIN => Ok(()),
        found => bail!(
            "wasm-opt on PATH is {found:?}, need >= {WASM_OPT_MIN}: put {} before the system's on PATH",
            link.parent().unwrap_or(&cargo_home).display()
        ),
    }
}

/// Builds the demo page into `dist/` (the widget with its `demo` feature, and
/// a loader for it in `dist/demo-widget/`), then the widget alone into the
/// partner bundle `dist-widget/`, and prints what ships. The bundles minify
/// the scripts they ship.
fn widget() -> anyhow::Result<()> {
    // trunk passes --offline on to cargo, so every crate (the wasm-only ones too)
    // must already be in the local registry: fetch them first.
    run(cargo().arg("fetch"))?;
    run(Command::new("trunk").current_dir(root()).args(["build", "--release", "--offline"]))?;
    print_sizes(&root().join("dist"))?;
    bundles()
}

/// The demo page's bundle, from trunk's build in `dist/`, and the partner
/// bundle, from trunk's build of the widget alone (`widget/loader/bundle.html`).
fn bundles() -> anyhow::Result<()> {
    let dist = root().join("dist");
    bundle_from(&dist, &dist.join("demo-widget"))?;
    let partner = root().join("target").join("widget-partner-build");
    run(Command::new("trunk")
        .current_dir(root())
        .args(["build", "widget/loader/bundle.html", "--release", "--offline", "--dist"])
        .arg(&partner))?;
    bundle_from(&partner, &root().join(bundle::DIR))
}

/// Writes a bundle to `out` from trunk's build in `dist` and prints its sizes.
fn bundle_from(dist: &Path, out: &Path) -> anyhow::Result<()> {
    let files = bundle::write(dist, &root().join("widget").join("loader"), out)?;
    bundle::print_sizes(out, &files);
    Ok(())
}

fn print_sizes(dist: &Path) -> anyhow::Result<()> {
    let mut total = 0u64;
    let mut total_gz = 0u64;
    eprintln!("xtask: shipped files (raw / gzip -9):");
    let mut entries: Vec<_> = std::fs::read_dir(dist)?.filter_map(Result::ok).map(|e| e.path()).collect();
    entries.sort();
    for path in entries {
        let Some(ext) = path.extension().and_then(|e| e.to_str()) else { continue };
        if !matches!(ext, "wasm" | "js" | "css" | "html") {
            continue;
        }
        let raw = std::fs::metadata(&path)?.len();
        let gz = output("sh", &["-c", &format!("gzip -9c '{}' | wc -c", path.display())])
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(0);
        total += raw;
        total_gz += gz;
        eprintln!("  {:<48} {:>9} B {:>9} B", path.file_name().unwrap_or_default().to_string_lossy(), raw, gz);
    }
    eprintln!("  {:<48} {:>9} B {:>9} B", "total", total, total_gz);
    Ok(())
}

fn demo(rest: &[String]) -> anyhow::Result<()> {
    eprintln!(
        "xtask: demo: a first run installs the tools and compiles the widget and the server, which takes \
         several minutes (cargo and trunk show their progress below); later runs rebuild only what changed"
    );
    tools()?;
    widget()?;
    // Not --quiet: cargo's progress is all a first run shows while the server compiles.
    run(cargo()
        .args(["run", "-p", "pientegra-server", "--", "demo", "--static-dir"])
        .arg(root().join("dist"))
        .arg("--widget-dir")
        .arg(root().join(bundle::DIR))
        .args(rest))
}

/// A full-size storm (the test suite runs the same harness at reduced size).
/// Sizes can be overridden through the same environment variables.
fn storm(test: &str, sizes: &[(&str, &str)]) -> anyhow::Result<()> {
    let mut cmd = cargo();
    // One test at a time: a full-size storm has the machine to itself.
    cmd.args(["test", "-p", "pientegra-server", "--test", test, "--", "--nocapture", "--test-threads", "1"]);
    for (name, value) in sizes {
        if std::env::var_os(name).is_none() {
            cmd.env(name, value);
        }
    }
    run(&mut cmd)
}

fn test(rest: &[String]) -> anyhow::Result<()> {
    tools()?;
    // `shared` must build for the browser as well as for the host.
    run(cargo().args(["build", "-p", "pientegra-shared", "--target", WASM_TARGET]))?;
    widget()?;
    // The widget's unit tests run on the host; the crate is outside the default members.
    run(cargo().args(["test", "-p", "pientegra-widget", "--features", "demo", "--lib"]))?;
    run(cargo()
        .args(["test"])
        .args(rest)
        .env("PIENTEGRA_DIST", root().join("dist"))
        .env("PIENTEGRA_WIDGET_DIST", root().join(bundle::DIR)))
}
