//! The `pientegra-server` binary as a process: configuration errors name the
//! variable, demo mode refuses to run where strangers reach it, `--help` shows
//! no variable's value, `token mint` works, and a full deposit and a PGM
//! payment with its signed shop notification leave no secret in any log line
//! or response.

use std::process::Stdio;
use std::time::Duration;

use pientegra_sandbox::{Config, Sandbox};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_pientegra-server");
const TOKEN_SECRET: &str = "process-test-token-secret-0123456789abcdef";
const ADMIN_TOKEN: &str = "process-test-admin-token-0123456789abcdef";
const PGM_TOKEN: &str = "process-test-pgm-facade-token-0123456789";
const CALLBACK_SECRET: &str = "process-test-callback-secret-0123456789";

/// Waits for `/healthz` to answer.
async fn wait_until_up(http: &reqwest::Client, base: &str) {
    for _ in 0..200 {
        if http.get(format!("{base}/healthz")).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{base} did not start");
}

/// Polls `/api/account` until `available` is `want`; returns that body.
async fn account_once_credited(http: &reqwest::Client, base: &str, token: &str, want: &str) -> String {
    let needle = format!("\"available\":\"{want}\"");
    for _ in 0..200 {
        let account =
            http.get(format!("{base}/api/account")).bearer_auth(token).send().await.unwrap().text().await.unwrap();
        if account.contains(&needle) {
            return account;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the deposit was not credited");
}

/// A session for `user`, a 1,500.00 TRY deposit, its hosted page opened, then confirmed
/// and approved in the sandbox, until credited. Every answer is appended to `bodies`;
/// returns the widget token and the intent id.
async fn deposit_1500_and_approve(
    http: &reqwest::Client,
    base: &str,
    sandbox_base: &str,
    user: &str,
    bodies: &mut String,
) -> (String, String) {
    let session: Value = http
        .post(format!("{base}/api/session"))
        .json(&json!({"externalUserId": user}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    bodies.push_str(&session.to_string());
    let token = session["token"].as_str().unwrap().to_owned();
    let deposit: Value = http
        .post(format!("{base}/api/deposits"))
        .bearer_auth(&token)
        .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
        .json(&json!({"amount": "150000"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    bodies.push_str(&deposit.to_string());
    let page = http.get(deposit["depositUrl"].as_str().unwrap()).send().await.unwrap().text().await.unwrap();
    bodies.push_str(&page);
    let id = deposit["intentId"].as_str().unwrap().to_owned();
    for action in ["confirm", "approve"] {
        http.post(format!("{sandbox_base}/sandbox/intents/{id}/{action}")).json(&json!({})).send().await.unwrap();
    }
    bodies.push_str(&account_once_credited(http, base, &token, "150000").await);
    (token, id)
}

/// SIGTERM, wait for the exit, and return everything the process printed.
/// Reads the child's stderr and stdout as they are written: a server logging at
/// `trace` fills a pipe's 64 KiB buffer in seconds, and a pipe nobody reads
/// blocks the writing thread (a runtime worker) until it is read, so the
/// logs are drained from the start, not after the run.
fn capture_logs(child: &mut tokio::process::Child) -> tokio::task::JoinHandle<String> {
    let (mut stderr, mut stdout) = (child.stderr.take().unwrap(), child.stdout.take().unwrap());
    tokio::spawn(async move {
        let (mut err, mut out) = (Vec::new(), Vec::new());
        let (read_err, read_out) = tokio::join!(stderr.read_to_end(&mut err), stdout.read_to_end(&mut out));
        read_err.unwrap();
        read_out.unwrap();
        err.extend_from_slice(&out);
        String::from_utf8(err).unwrap()
    })
}

/// Stops the child (SIGTERM, then SIGKILL after 10 s) and returns what it logged.
async fn stop_and_read_logs(child: &mut tokio::process::Child, logs: tokio::task::JoinHandle<String>) -> String {
    let pid = child.id().unwrap().to_string();
    Command::new("kill").args(["-TERM", &pid]).status().await.unwrap();
    if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
        child.kill().await.unwrap();
    }
    logs.await.unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

#[tokio::test]
async fn a_missing_variable_is_named_at_start() {
    let output = Command::new(BIN)
        .arg("serve")
        .env_clear()
        .env("PIENTEGRA_API_BASE", "http://127.0.0.1:1/api/v1")
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("PIENTEGRA_API_KEY"), "{stderr}");
}

/// `serve` with a complete configuration that needs nothing running (demo mode
/// on loopback), to which a test adds the variable it checks.
fn serve_with(dir: &std::path::Path, port: u16) -> Command {
    let mut command = Command::new(BIN);
    command
        .arg("serve")
        .env_clear()
        .env("PIENTEGRA_API_BASE", "http://127.0.0.1:1/api/v1")
        .env("PIENTEGRA_API_KEY", "sk_test_process_0123456789")
        .env("PIENTEGRA_WEBHOOK_SECRET", "whsec_process_0123456789")
        .env("WIDGET_TOKEN_SECRET", TOKEN_SECRET)
        .env("DATABASE_URL", format!("sqlite://{}", dir.join("p.db").display()))
        .env("BIND", format!("127.0.0.1:{port}"))
        .env("DEMO_MODE", "true")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Readiness needs no credentials: while Pientegra is out of reach every probe
/// answers 503, and a flood of them writes nothing to the log.
#[tokio::test]
async fn unready_probes_write_no_log_line() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut child = serve_with(dir.path(), port).spawn().unwrap();
    let logs = capture_logs(&mut child);
    let (http, base) = (reqwest::Client::new(), format!("http://127.0.0.1:{port}"));
    wait_until_up(&http, &base).await;
    for _ in 0..200 {
        let probe = http.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(probe.status(), reqwest::StatusCode::SERVICE_UNAVAILABLE);
    }
    let logs = stop_and_read_logs(&mut child, logs).await;
    let probe_lines: Vec<_> = logs.lines().filter(|line| line.contains("/readyz")).collect();
    assert!(probe_lines.is_empty(), "{} lines, the first: {:?}", probe_lines.len(), probe_lines.first());
    // Written to a pipe, as under systemd: plain text, no terminal colour codes.
    assert!(!logs.is_empty() && !logs.contains('\u{1b}'), "{logs}");
}

#[tokio::test]
async fn demo_mode_refuses_a_live_key_or_a_public_address_unless_told_and_then_warns() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let live_key = "sk_live_process_0123456789";
    let refused = serve_with(dir.path(), port).env("PIENTEGRA_API_KEY", live_key).output().await.unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("DEMO_MODE") && stderr.contains("PIENTEGRA_API_KEY"), "{stderr}");
    assert!(stderr.contains("I_UNDERSTAND_DEMO_MODE_IS_PUBLIC"), "{stderr}");
    assert!(!stderr.contains(live_key), "{stderr}");

    let public = serve_with(dir.path(), port).env("BIND", format!("0.0.0.0:{port}")).output().await.unwrap();
    assert!(!public.status.success());
    let stderr = String::from_utf8_lossy(&public.stderr);
    assert!(stderr.contains("DEMO_MODE") && stderr.contains(&format!("BIND 0.0.0.0:{port}")), "{stderr}");

    // Told, it starts, and says at once what it exposes.
    let mut child = serve_with(dir.path(), port)
        .env("PIENTEGRA_API_KEY", live_key)
        .env("I_UNDERSTAND_DEMO_MODE_IS_PUBLIC", "true")
        .spawn()
        .unwrap();
    let logs = capture_logs(&mut child);
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_until_up(&http, &base).await;
    let session = http.post(format!("{base}/api/session")).json(&json!({"externalUserId": "u"})).send().await.unwrap();
    assert_eq!(session.status(), 201);
    let logs = stop_and_read_logs(&mut child, logs).await;
    assert!(logs.contains("WARN") && logs.contains("DEMO MODE IS PUBLIC"), "{logs}");
    assert!(logs.contains("PIENTEGRA_API_KEY") && !logs.contains(live_key), "{logs}");
}

#[tokio::test]
async fn an_admin_token_shorter_than_32_bytes_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let short = "short-admin-token";
    let output = serve_with(dir.path(), free_port()).env("ADMIN_TOKEN", short).output().await.unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ADMIN_TOKEN must be at least 32 bytes"), "{stderr}");
    assert!(!stderr.contains(short), "{stderr}");
}

/// Every subcommand's `--help`, with every variable any argument reads set.
#[tokio::test]
async fn help_shows_no_variables_value() {
    use clap::CommandFactory;
    let mut variables = Vec::new();
    let mut commands = vec![(Vec::<String>::new(), pientegra_server::cli::Cli::command())];
    let mut invocations = Vec::new();
    while let Some((path, command)) = commands.pop() {
        for arg in command.get_arguments() {
            if let Some(var) = arg.get_env() {
                variables.push(var.to_string_lossy().into_owned());
            }
        }
        for sub in command.get_subcommands() {
            let mut sub_path = path.clone();
            sub_path.push(sub.get_name().to_owned());
            commands.push((sub_path, sub.clone()));
        }
        invocations.push(path);
    }
    variables.sort();
    variables.dedup();
    for must in ["DATABASE_URL", "PIENTEGRA_API_KEY", "WIDGET_TOKEN_SECRET", "ADMIN_TOKEN", "PGM_FACADE_TOKEN"] {
        assert!(variables.iter().any(|v| v == must), "{must} is read by an argument");
    }
    // Recognisable, and as a DATABASE_URL would carry it: a password.
    let value = |var: &str| format!("postgres://kit:pw-{}@db.internal/kit", var.to_lowercase());
    assert!(invocations.len() >= 5, "{invocations:?}");
    for path in &invocations {
        let mut command = Command::new(BIN);
        command.args(path).arg("--help").env_clear();
        for var in &variables {
            command.env(var, value(var));
        }
        let output = command.output().await.unwrap();
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success(), "{path:?} --help: {}", String::from_utf8_lossy(&output.stderr));
        for var in &variables {
            assert!(!help.contains(&value(var)), "`{} --help` shows {var}'s value:\n{help}", path.join(" "));
        }
        assert!(!help.contains("pw-"), "`{} --help` shows a password:\n{help}", path.join(" "));
    }
    let serve_help = Command::new(BIN).args(["serve", "--help"]).output().await.unwrap();
    assert!(String::from_utf8_lossy(&serve_help.stdout).contains("[env: DATABASE_URL"), "variables are still named");
}

#[tokio::test]
async fn the_pgm_facade_settings_are_checked_at_start() {
    let https = ("PAYMENT_CALLBACK_URL", "https://shop.example/pgm/callback");
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[("PGM_FACADE_TOKEN", "pgm-facade-test-token")], "PGM_FACADE_TOKEN must be at least 32 bytes"),
        (
            &[
                ("PGM_FACADE_TOKEN", PGM_TOKEN),
                ("PAYMENT_CALLBACK_URL", "http://shop.example/cb"),
                ("PAYMENT_CALLBACK_SECRET", CALLBACK_SECRET),
            ],
            "PAYMENT_CALLBACK_URL must use https",
        ),
        (&[("PGM_FACADE_TOKEN", PGM_TOKEN), https], "PAYMENT_CALLBACK_SECRET is required"),
        (
            &[("PGM_FACADE_TOKEN", PGM_TOKEN), https, ("PAYMENT_CALLBACK_SECRET", "short-callback-secret")],
            "PAYMENT_CALLBACK_SECRET must be at least 32 bytes",
        ),
        (&[https, ("PAYMENT_CALLBACK_SECRET", CALLBACK_SECRET)], "need PGM_FACADE_TOKEN"),
    ];
    for (pgm, expected) in cases {
        let output = Command::new(BIN)
            .arg("serve")
            .env_clear()
            .env("PIENTEGRA_API_BASE", "http://127.0.0.1:1/api/v1")
            .env("PIENTEGRA_API_KEY", "sk_test_process")
            .env("PIENTEGRA_WEBHOOK_SECRET", "whsec_process")
            .env("WIDGET_TOKEN_SECRET", TOKEN_SECRET)
            .envs(pgm.iter().copied())
            .output()
            .await
            .unwrap();
        assert!(!output.status.success(), "{expected}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(expected), "{expected}: {stderr}");
        for (_, value) in pgm {
            assert!(value.starts_with("http") || !stderr.contains(value), "a secret in the error: {stderr}");
        }
    }
}

#[tokio::test]
async fn token_mint_prints_a_token() {
    let output = Command::new(BIN)
        .args(["token", "mint", "--user", "user-42", "--ttl", "10m"])
        .env("WIDGET_TOKEN_SECRET", TOKEN_SECRET)
        .output()
        .await
        .unwrap();
    assert!(output.status.success());
    let token = String::from_utf8(output.stdout).unwrap();
    let key = pientegra_server::token::TokenKey::new(TOKEN_SECRET.to_owned().into());
    let claims = key.verify(&token, chrono::Utc::now()).expect("the minted token verifies");
    assert_eq!(claims.user.as_str(), "user-42");
    assert!(!token.contains(TOKEN_SECRET));
}

#[tokio::test]
async fn token_mint_refuses_a_lifetime_over_the_maximum() {
    for (ttl, max) in [("25h", None), ("2h", Some("1h"))] {
        let mut command = Command::new(BIN);
        command.args(["token", "mint", "--user", "user-42", "--ttl", ttl]).env("WIDGET_TOKEN_SECRET", TOKEN_SECRET);
        match max {
            Some(max) => command.env("WIDGET_TOKEN_MAX_LIFETIME", max),
            None => command.env_remove("WIDGET_TOKEN_MAX_LIFETIME"),
        };
        let output = command.output().await.unwrap();
        assert!(!output.status.success(), "--ttl {ttl}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("WIDGET_TOKEN_MAX_LIFETIME") && stderr.contains("--ttl"), "{stderr}");
        assert!(output.stdout.is_empty() && !stderr.contains(TOKEN_SECRET));
    }
}

#[tokio::test]
async fn token_mint_refuses_the_account_of_a_pgm_order() {
    let output = Command::new(BIN)
        .args(["token", "mint", "--user", "pgm-order:01a1fcce-e986-7000-8000-000000000001:ayse"])
        .env("WIDGET_TOKEN_SECRET", TOKEN_SECRET)
        .output()
        .await
        .unwrap();
    assert!(!output.status.success());
    assert!(output.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("reserved"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test]
async fn no_secret_reaches_a_log_line_or_a_response() {
    let sandbox = Sandbox::spawn(Config {
        bind: "127.0.0.1:0".parse().unwrap(),
        retry_scale_ppm: 1_000,
        rate_limit_per_minute: 100_000,
        ..Config::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    // The shop: takes one notification and keeps its head and body.
    let shop = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let shop_addr = shop.local_addr().unwrap();
    let notification = tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let (mut socket, _) = shop.accept().await.unwrap();
        let mut request = Vec::new();
        let mut chunk = [0u8; 4096];
        while !String::from_utf8_lossy(&request).contains("\"action\"") {
            let n = socket.read(&mut chunk).await.unwrap();
            assert!(n > 0, "the notification ended early");
            request.extend_from_slice(&chunk[..n]);
        }
        socket.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").await.unwrap();
        String::from_utf8(request).unwrap()
    });
    let mut child = Command::new(BIN)
        .arg("serve")
        .env("PIENTEGRA_API_BASE", sandbox.api_base())
        .env("PIENTEGRA_API_KEY", sandbox.api_key())
        .env("PIENTEGRA_WEBHOOK_SECRET", sandbox.webhook_secret())
        .env("WIDGET_TOKEN_SECRET", TOKEN_SECRET)
        .env("ADMIN_TOKEN", ADMIN_TOKEN)
        .env("DATABASE_URL", format!("sqlite://{}", dir.path().join("p.db").display()))
        .env("BIND", format!("127.0.0.1:{port}"))
        .env("DEMO_MODE", "1")
        .env("RUST_LOG", "trace")
        .env("PGM_FACADE_TOKEN", PGM_TOKEN)
        .env("PAYMENT_CALLBACK_URL", format!("http://{shop_addr}/pgm/callback"))
        .env("PAYMENT_CALLBACK_SECRET", CALLBACK_SECRET)
        .stderr(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let logs = capture_logs(&mut child);
    let http = reqwest::Client::new();
    wait_until_up(&http, &base).await;
    http.put(format!("{}/external/site/webhook-config", sandbox.api_base()))
        .bearer_auth(sandbox.api_key())
        .json(&json!({"webhookUrl": format!("{base}/webhooks/pientegra"), "rotateSecret": false}))
        .send()
        .await
        .unwrap();

    let mut bodies = String::new();
    let (token, intent_id) = deposit_1500_and_approve(&http, &base, &sandbox.base_url(), "quiet", &mut bodies).await;
    // A stream opened with a ticket in the query string must not log it either,
    // nor the refusal of a widget token there.
    let ticket: Value =
        http.post(format!("{base}/api/stream-ticket")).bearer_auth(&token).send().await.unwrap().json().await.unwrap();
    let ticket = ticket["ticket"].as_str().unwrap().to_owned();
    let mut stream = http.get(format!("{base}/api/events?ticket={ticket}")).send().await.unwrap();
    let first = stream.chunk().await.unwrap().unwrap();
    bodies.push_str(&String::from_utf8_lossy(&first));
    drop(stream);
    let refused = http.get(format!("{base}/api/events?token={token}")).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    bodies.push_str(&refused.text().await.unwrap());
    for path in ["/readyz", "/metrics", &format!("/admin/intents/{intent_id}")] {
        bodies.push_str(
            &http.get(format!("{base}{path}")).bearer_auth(ADMIN_TOKEN).send().await.unwrap().text().await.unwrap(),
        );
    }
    // A PGM payment, and its status sent to the shop.
    let pgm = |path: &str| format!("{base}/v3/pientegra{path}");
    let paid: Value = http
        .post(pgm("/pay"))
        .bearer_auth(PGM_TOKEN)
        .json(&json!({"amount": 20000, "currency": "TRY", "shopTransactionId": "order-1", "providerData": {"externalUserId": "quiet"}}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    bodies.push_str(&paid.to_string());
    let payment_id = paid["paymentId"].as_str().expect("a PGM payment").to_owned();
    bodies.push_str(
        &http
            .get(pgm(&format!("/check?paymentId={payment_id}")))
            .bearer_auth(PGM_TOKEN)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
    );
    let notification = tokio::time::timeout(Duration::from_secs(10), notification).await.unwrap().unwrap();
    assert!(notification.to_ascii_lowercase().contains("pientegra-kit-signature: t="), "{notification}");
    assert!(!notification.contains(CALLBACK_SECRET) && !notification.contains(PGM_TOKEN), "{notification}");
    // An invalid signature attempt, which logs a warning.
    http.post(format!("{base}/webhooks/pientegra"))
        .header("Pientegra-Signature", "t=1,v1=00")
        .body("{}")
        .send()
        .await
        .unwrap();

    let logs = stop_and_read_logs(&mut child, logs).await;
    assert!(logs.contains("webhook"), "logs were captured: {}", &logs[..logs.len().min(500)]);

    for (name, secret) in [
        ("API key", sandbox.api_key()),
        ("webhook secret", sandbox.webhook_secret()),
        ("token secret", TOKEN_SECRET),
        ("admin token", ADMIN_TOKEN),
        ("PGM facade token", PGM_TOKEN),
        ("callback secret", CALLBACK_SECRET),
        ("widget token", token.as_str()),
        ("stream ticket", ticket.as_str()),
    ] {
        assert!(!logs.contains(secret), "the {name} appears in the logs");
        if name != "widget token" && name != "stream ticket" {
            assert!(!bodies.contains(secret), "the {name} appears in a response");
        }
    }
}

#[tokio::test]
async fn reconcile_prints_a_report_in_json_and_as_a_table() {
    let sandbox = Sandbox::spawn(Config { bind: "127.0.0.1:0".parse().unwrap(), ..Config::default() }).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let database = format!("sqlite://{}", dir.path().join("r.db").display());
    let run = |format: &'static str| {
        Command::new(BIN)
            .args(["reconcile", "--from", "24h", "--apply", "--format", format])
            .env("PIENTEGRA_API_BASE", sandbox.api_base())
            .env("PIENTEGRA_API_KEY", sandbox.api_key())
            .env("DATABASE_URL", &database)
            .output()
    };
    let json_out = run("json").await.unwrap();
    assert!(json_out.status.success(), "{}", String::from_utf8_lossy(&json_out.stderr));
    let report: Value = serde_json::from_slice(&json_out.stdout).unwrap();
    assert_eq!(report["intentsChecked"], 0);
    assert_eq!(report["apply"], true);
    let table = run("table").await.unwrap();
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.contains("status behind") && text.contains("events replayed"), "{text}");
    assert!(!text.contains(sandbox.api_key()));
    let bad = Command::new(BIN)
        .args(["reconcile", "--from", "yesterday-ish"])
        .env("PIENTEGRA_API_BASE", sandbox.api_base())
        .env("PIENTEGRA_API_KEY", sandbox.api_key())
        .env("DATABASE_URL", &database)
        .output()
        .await
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--from"));
}

#[tokio::test]
async fn a_full_demo_run_logs_no_secret() {
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "<!doctype html><title>demo</title>").unwrap();
    let (port, sandbox_port) = (free_port(), free_port());
    let base = format!("http://127.0.0.1:{port}");
    let sandbox_base = format!("http://127.0.0.1:{sandbox_port}");
    let mut child = Command::new(BIN)
        .arg("demo")
        .args(["--bind", &format!("127.0.0.1:{port}"), "--sandbox-bind", &format!("127.0.0.1:{sandbox_port}")])
        .arg("--static-dir")
        .arg(site.path())
        .arg("--database")
        .arg(site.path().join("demo.db"))
        .env("RUST_LOG", "trace")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let logs = capture_logs(&mut child);
    let http = reqwest::Client::new();
    wait_until_up(&http, &base).await;
    let mut bodies = http.get(format!("{base}/")).send().await.unwrap().text().await.unwrap();
    bodies.push_str(&http.get(format!("{sandbox_base}/sandbox/console")).send().await.unwrap().text().await.unwrap());
    let (token, _) = deposit_1500_and_approve(&http, &base, &sandbox_base, "demo", &mut bodies).await;
    let logs = stop_and_read_logs(&mut child, logs).await;
    assert!(logs.contains("demo is running"), "logs were captured");
    let defaults = Config::default();
    for (name, secret) in [("API key", defaults.api_key.as_str()), ("webhook secret", defaults.webhook_secret.as_str())]
    {
        assert!(!logs.contains(secret), "the demo's {name} appears in its logs");
        assert!(!bodies.contains(secret), "the demo's {name} appears in a page or response");
    }
    assert!(!logs.contains(&token), "a widget token appears in the demo's logs");
}
