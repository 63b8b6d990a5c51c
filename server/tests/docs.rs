//! The docs, held to the code: every variable of `serve` is in the
//! configuration reference and nothing else is, every flag a documented
//! command uses exists, and the curl walk-throughs of `docs/server.md` and
//! `docs/pgm.md` run, as written, against the sandbox and the server binary.
//!
//! The walk-throughs run in bash with two stand-ins defined first: `cargo run
//! -p <package> -- ...` runs the binary this test was built with (the sandbox
//! runs in the test's process, on the port the script is given), and `curl`
//! waits for the webhooks a sandbox control call started to be delivered, as
//! the person typing the next command would. Ports are the only words changed
//! (and `BIND`, the server's default port, is set to match).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use clap::CommandFactory;
use pientegra_sandbox::Sandbox;
use tokio::io::AsyncReadExt;
use tokio::process::Command;

const SERVER: &str = env!("CARGO_BIN_EXE_pientegra-server");

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("the workspace").to_owned()
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|err| panic!("{path}: {err}"))
}

/// The documentation files whose commands must exist.
fn documents() -> Vec<String> {
    let mut paths = vec!["README.md".to_owned(), "widget/README.md".to_owned()];
    for entry in std::fs::read_dir(repo().join("docs")).expect("docs/") {
        let name = entry.expect("a docs/ entry").file_name().into_string().expect("a UTF-8 name");
        if name.ends_with(".md") {
            paths.push(format!("docs/{name}"));
        }
    }
    paths.sort();
    paths
}

/// The fenced code blocks of a markdown text, with their info strings.
fn code_blocks(markdown: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in markdown.lines() {
        match (&mut open, line.trim_start().strip_prefix("```")) {
            (None, Some(info)) => open = Some((info.trim().to_owned(), String::new())),
            (Some(_), Some(_)) => blocks.push(open.take().expect("an open block")),
            (Some((_, body)), None) => {
                body.push_str(line);
                body.push('\n');
            }
            (None, None) => {}
        }
    }
    blocks
}

/// The shell blocks of a markdown file.
fn shell_blocks(path: &str) -> Vec<String> {
    code_blocks(&read(path)).into_iter().filter(|(info, _)| info == "sh").map(|(_, body)| body).collect()
}

/// Shell lines with their `\` continuations joined, comments dropped.
fn commands(block: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in block.lines() {
        let line = line.split(" # ").next().unwrap_or_default();
        if line.trim_start().starts_with('#') {
            continue;
        }
        match line.trim_end().strip_suffix('\\') {
            Some(head) => current.push_str(head),
            None => {
                current.push_str(line);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

/// The `--flags` a command line passes, with any `=value` or `[...]` around them dropped.
fn flags(words: &str) -> Vec<String> {
    words
        .split(|c: char| c.is_whitespace() || "[]|=\"'".contains(c))
        .filter(|word| word.starts_with("--") && word.len() > 2)
        .map(str::to_owned)
        .collect()
}

/// Every `--long` name of `command`.
fn long_flags(command: &clap::Command) -> BTreeSet<String> {
    let mut out: BTreeSet<String> =
        command.get_arguments().filter_map(|arg| arg.get_long()).map(|long| format!("--{long}")).collect();
    out.insert("--help".to_owned());
    out
}

/// The clap command a documented invocation names: `pientegra-server <sub> [<sub>]` or
/// `pientegra-sandbox`, however it is started (`cargo run -p X --` or the binary).
fn documented_command(line: &str) -> Option<(String, clap::Command, String)> {
    for (binary, root) in [
        ("pientegra-server", pientegra_server::cli::Cli::command()),
        ("pientegra-sandbox", pientegra_sandbox::cli::Cli::command()),
    ] {
        let Some(at) = line.find(binary) else { continue };
        let rest = line[at + binary.len()..].trim_start().trim_start_matches("--").trim_start();
        let mut command = root;
        let mut name = binary.to_owned();
        let mut rest = rest.to_owned();
        loop {
            let word = rest.split_whitespace().next().unwrap_or_default().to_owned();
            match command.find_subcommand(&word).cloned() {
                Some(sub) => {
                    name = format!("{name} {word}");
                    command = sub;
                    rest = rest.trim_start()[word.len()..].to_owned();
                }
                None => break,
            }
        }
        return Some((name, command, rest));
    }
    None
}

#[test]
fn every_flag_the_docs_show_exists() {
    let mut checked = 0;
    for path in documents() {
        for (_, block) in code_blocks(&read(&path)) {
            for line in commands(&block) {
                // `cargo run -p X -- ...`'s own flags are cargo's; only the binary's are checked.
                let Some((name, command, rest)) = documented_command(&line) else { continue };
                let known = long_flags(&command);
                for flag in flags(&rest) {
                    assert!(known.contains(&flag), "{path}: `{name}` has no {flag} (in: {})", line.trim());
                    checked += 1;
                }
            }
        }
    }
    assert!(checked >= 20, "the scan found the documented flags: {checked}");
}

#[test]
fn every_cargo_xtask_command_the_docs_show_exists() {
    let xtask = read("xtask/src/main.rs");
    let mut checked = 0;
    for path in documents() {
        for (_, block) in code_blocks(&read(&path)) {
            for line in commands(&block) {
                let Some(at) = line.find("cargo xtask ") else { continue };
                let name = line[at + "cargo xtask ".len()..].split_whitespace().next().unwrap_or_default();
                assert!(xtask.contains(&format!("Some(\"{name}\")")), "{path}: no `cargo xtask {name}`");
                checked += 1;
            }
        }
    }
    assert!(checked >= 2, "the scan found the documented xtask commands: {checked}");
}

/// The variables named in the first column of the `serve` table of the configuration reference.
fn documented_serve_variables() -> BTreeSet<String> {
    let page = read("docs/configuration.md");
    let section = page.split("\n## ").find(|s| s.starts_with("`pientegra-server serve`")).expect("the serve section");
    let mut names = BTreeSet::new();
    for row in section.lines().filter(|line| line.starts_with("| `")) {
        let first = row.split('|').nth(1).unwrap_or_default();
        for name in first.split('`').skip(1).step_by(2) {
            let name = name.split('=').next().unwrap_or_default();
            if !name.is_empty() && name.chars().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_') {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

#[test]
fn the_configuration_reference_lists_exactly_what_serve_reads() {
    let serve = pientegra_server::cli::Cli::command().find_subcommand("serve").cloned().expect("serve");
    let mut read_by_serve: BTreeSet<String> =
        serve.get_arguments().filter_map(|arg| arg.get_env()).map(|name| name.to_string_lossy().into_owned()).collect();
    // The logger reads its two outside clap.
    let telemetry = read("server/src/telemetry.rs");
    for name in ["RUST_LOG", "LOG_FORMAT"] {
        if telemetry.contains(&format!("\"{name}\"")) || telemetry.contains(&format!("`{name}`")) {
            read_by_serve.insert(name.to_owned());
        }
    }
    let documented = documented_serve_variables();
    let missing: Vec<_> = read_by_serve.difference(&documented).collect();
    let unknown: Vec<_> = documented.difference(&read_by_serve).collect();
    assert!(missing.is_empty(), "docs/configuration.md lacks: {missing:?}");
    assert!(unknown.is_empty(), "docs/configuration.md lists what serve does not read: {unknown:?}");
    assert!(documented.len() >= 25, "the table was read: {documented:?}");
}

/// A free port on loopback.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("a free port").local_addr().expect("its address").port()
}

/// The stand-ins the walk-throughs run with (see the module's comment).
const PRELUDE: &str = r#"
set -euo pipefail
# In a subshell (`&`, `$(...)`) the binary replaces it, so killing the job stops the binary.
run_here() { if [ "$BASHPID" != "$$" ]; then exec "$@"; else "$@"; fi; }
cargo() {
  [ "$1" = run ] || { echo "docs test: only cargo run is mapped: $*" >&2; return 2; }
  shift
  local package=""
  while [ $# -gt 0 ]; do
    case "$1" in
      -q|--quiet) shift ;;
      -p) package=$2; shift 2 ;;
      --) shift; break ;;
      *) echo "docs test: unexpected cargo flag $1" >&2; return 2 ;;
    esac
  done
  case "$package" in
    pientegra-server) run_here "$DOCS_TEST_SERVER" "$@" ;;
    pientegra-sandbox)
      [ $# -eq 0 ] || { echo "docs test: the sandbox runs with its defaults: $*" >&2; return 2; }
      echo "(the sandbox runs in the test's process on $DOCS_TEST_SANDBOX)" ;;
    *) echo "docs test: no package $package" >&2; return 2 ;;
  esac
}
# Waits until the sandbox has no delivery left that has not been attempted.
settle() {
  for _ in $(seq 100); do
    if command curl -s "$DOCS_TEST_SANDBOX/sandbox/state" | python3 -c '
import json, sys
sys.exit(0 if all(d["deliveryStatus"] != "PENDING" for d in json.load(sys.stdin)["deliveries"]) else 1)'; then
      return 0
    fi
    sleep 0.1
  done
  echo "docs test: deliveries still pending" >&2
  return 1
}
curl() {
  local settle_after=no
  case "$*" in *"$DOCS_TEST_SANDBOX/sandbox/"*) settle_after=yes ;; esac
  # A server started with `&` a line earlier may not listen yet: a refused connection sent nothing.
  if [ "$BASHPID" != "$$" ]; then exec curl --retry 30 --retry-connrefused --retry-delay 1 "$@"; fi
  command curl --retry 30 --retry-connrefused --retry-delay 1 "$@"
  if [ $settle_after = yes ]; then settle; fi
}
"#;

/// A walk-through's script, its ports moved to `ports` (`documented → free`).
fn script(blocks: &[&str], ports: &[(u16, u16)]) -> String {
    let mut script = PRELUDE.to_owned();
    for block in blocks {
        script.push_str(block);
        script.push('\n');
    }
    for (documented, free) in ports {
        script = script.replace(&format!("127.0.0.1:{documented}"), &format!("127.0.0.1:{free}"));
    }
    script
}

/// Runs `script` in bash in `dir` until it ends, then waits until `done` holds for its output
/// (what background jobs print arrives later), then stops everything it started.
async fn run_walkthrough(
    script: &str,
    dir: &Path,
    server: u16,
    sandbox: &Sandbox,
    done: impl Fn(&str) -> bool,
) -> (std::process::ExitStatus, String) {
    let out_path = dir.join("output.txt");
    let out = std::fs::File::create(&out_path).expect("the output file");
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .env("DOCS_TEST_SERVER", SERVER)
        .env("DOCS_TEST_SANDBOX", sandbox.base_url())
        // The server's default address, moved as the script's ports are.
        .env("BIND", format!("127.0.0.1:{server}"))
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(out.try_clone().expect("stdout"))
        .stderr(out)
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .expect("bash");
    let pid = child.id().expect("a running shell");
    let status = tokio::time::timeout(Duration::from_secs(120), child.wait())
        .await
        .expect("the walk-through ended within 2 minutes")
        .expect("bash's status");
    let mut output = String::new();
    for _ in 0..300 {
        output = std::fs::read_to_string(&out_path).expect("the output");
        if done(&output) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let group = rustix::process::Pid::from_raw(i32::try_from(pid).expect("a pid")).expect("not 0");
    let _ = rustix::process::kill_process_group(group, rustix::process::Signal::TERM);
    let mut rest = String::new();
    if let Ok(mut file) = tokio::fs::File::open(&out_path).await {
        let _ = file.read_to_string(&mut rest).await;
    }
    (status, if rest.len() > output.len() { rest } else { output })
}

/// The sandbox as `cargo run -p pientegra-sandbox` starts it, on a free port.
async fn sandbox() -> Sandbox {
    use clap::Parser;
    let cli = pientegra_sandbox::cli::Cli::parse_from(["pientegra-sandbox", "--bind", "127.0.0.1:0"]);
    Sandbox::spawn(cli.into_config()).await.expect("the sandbox")
}

#[tokio::test]
async fn the_curl_walkthrough_of_the_server_docs_runs() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let sandbox = sandbox().await;
    let (server, sandbox_port) = (free_port(), sandbox.addr().port());
    let blocks = shell_blocks("docs/server.md");
    let walkthrough = blocks.iter().find(|b| b.contains("/api/deposits")).expect("the walk-through's block");
    let script = script(&[walkthrough], &[(8080, server), (8081, sandbox_port)]);

    let credited = |out: &str| {
        out.contains("event: balance.updated")
            && out.lines().any(|line| line.contains("data:") && line.contains("{\"available\":\"150000\""))
    };
    let (status, output) = run_walkthrough(&script, dir.path(), server, &sandbox, credited).await;
    assert!(status.success(), "the walk-through failed ({status}):\n{output}");
    assert!(output.contains("\"status\":\"RESERVED\""), "the deposit was created:\n{output}");
    assert!(
        output.contains("event: deposit.updated") && output.contains("\"status\":\"APPROVED\""),
        "the stream showed the approval:\n{output}"
    );
    assert!(credited(&output), "the stream showed the new balance:\n{output}");
    assert!(output.contains("\"externalUserId\":\"ayse\""), "the account was read:\n{output}");
    sandbox.shutdown().await;
}

/// A shop's notification endpoint on a free port: the bodies it was sent, and the port.
async fn shop() -> (std::sync::Arc<std::sync::Mutex<Vec<String>>>, u16) {
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/pgm/callback",
        axum::routing::post(move |body: String| {
            let record = record.clone();
            async move {
                record.lock().expect("the shop's list").push(body);
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("a port for the shop");
    let port = listener.local_addr().expect("the shop's address").port();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (seen, port)
}

#[tokio::test]
async fn the_curl_walkthrough_of_the_pgm_docs_runs() {
    let dir = tempfile::tempdir().expect("a temporary folder");
    let sandbox = sandbox().await;
    let (notifications, shop_port) = shop().await;
    let (server, sandbox_port) = (free_port(), sandbox.addr().port());
    // "sandbox and server as in the walk-through of server.md": its settings, then the PGM block.
    let server_block =
        shell_blocks("docs/server.md").into_iter().find(|b| b.contains("/api/deposits")).expect("server.md");
    let settings: String =
        server_block.lines().filter(|l| l.starts_with("export ")).map(|l| format!("{l}\n")).collect();
    let webhook_config: String = commands(&server_block).into_iter().filter(|l| l.contains("webhook-config")).collect();
    let pgm =
        shell_blocks("docs/pgm.md").into_iter().find(|b| b.contains("/v3/pientegra/pay")).expect("pgm.md's block");
    let script =
        script(&[&settings, &webhook_config, &pgm], &[(8080, server), (8081, sandbox_port), (9090, shop_port)]);

    let refunded = |out: &str| out.contains("\"action\":\"REFUND\"");
    let (status, output) = run_walkthrough(&script, dir.path(), server, &sandbox, refunded).await;
    assert!(status.success(), "the walk-through failed ({status}):\n{output}");
    assert!(output.contains("\"result\":\"REDIRECT_TO_URL\""), "the payment was created:\n{output}");
    assert!(output.contains("\"result\":\"KO\""), "the refund without an IBAN was refused:\n{output}");
    assert!(output.contains("\"result\":\"PENDING\""), "the refund was paid out:\n{output}");
    assert!(
        output.contains("\"action\":\"REFUND\"") && output.contains("\"pientegraStatus\":\"SENT\""),
        "the refund's status was read:\n{output}"
    );
    assert!(output.contains("subscriptions are not supported"), "subscriptions are refused:\n{output}");
    let sent = notifications.lock().expect("the shop's list").clone();
    assert!(
        sent.iter().any(|body| body.contains("\"status\":\"ACCEPTED\"")),
        "the shop heard of the payment: {sent:?}"
    );
    sandbox.shutdown().await;
}
