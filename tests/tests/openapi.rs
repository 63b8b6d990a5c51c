//! The OpenAPI document (`GET /openapi.json`, `docs/openapi.json`) covers
//! every route the server has, no more; the committed copy is the one the
//! server generates; `openapi-spec-validator` (PyPI) finds it valid; and a
//! running server serves it.
//!
//! The routes are found by walking the router the server serves, with every
//! feature on: its paths from axum's description of it (`Debug`), and each
//! path's methods from the `Allow` header of its 405 answer to a method no
//! route has. A `.route(...)` added without documentation fails the first test.
//!
//! The validator is the one `cargo xtask tools` installs under `$CARGO_HOME`
//! (`openapi-spec-validator/`). Without it the validation test skips, saying
//! so, except under `CI=true`, where it fails.

use std::collections::BTreeSet;
use std::path::PathBuf;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use pientegra_server::http::openapi;
use pientegra_server::settings::PgmSettings;
use pientegra_tests::{Options, Stack, settings_for};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The command that writes `docs/openapi.json`.
const REGENERATE: &str = "cargo run -p pientegra-server -- openapi > docs/openapi.json";
const PGM_TOKEN: &str = "pgm-facade-openapi-test-token-0123456789";

fn repository() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn document() -> Value {
    serde_json::from_str(&openapi::json()).expect("the document is JSON")
}

/// A path with every `{parameter}` as `{}`, so that names do not matter.
fn shape(path: &str) -> String {
    let mut shaped = String::new();
    let mut inside = false;
    for c in path.chars() {
        match c {
            '{' => {
                inside = true;
                shaped.push_str("{}");
            }
            '}' => inside = false,
            _ if inside => {}
            c => shaped.push(c),
        }
    }
    shaped
}

/// The server's router with every feature on: demo mode, admin, the PGM facade and the bundle.
async fn full_app(dir: &std::path::Path) -> Router {
    let sandbox = pientegra_tests::sandbox().await;
    let pgm = PgmSettings::new(PGM_TOKEN, None, None).expect("the facade's settings are valid");
    let options = Options { pgm: Some(pgm), widget_dir: Some(dir.to_owned()), ..Options::default() };
    let settings = settings_for(&sandbox, dir, &options);
    assert!(settings.demo && settings.admin_token.is_some(), "the demo and admin routes are on");
    let state = pientegra_server::app_state(settings, None, CancellationToken::new()).await.expect("state");
    pientegra_server::http::app(state)
}

/// The paths the router routes, read from its `Debug` description, which
/// lists them as `RouteId(n): "/path"` in its `path_router`, before its
/// `fallback_router` (the paths where its fallback answers).
fn routed_paths(app: &Router) -> BTreeSet<String> {
    let whole = format!("{app:?}");
    let description = whole.split("fallback_router:").next().expect("a description");
    let mut paths = BTreeSet::new();
    for (start, _) in description.match_indices("RouteId(") {
        let rest = &description[start + "RouteId(".len()..];
        let Some(after_id) = rest.trim_start_matches(|c: char| c.is_ascii_digit()).strip_prefix("): \"") else {
            continue;
        };
        let path = &after_id[..after_id.find('"').expect("a path ends with a quote")];
        // axum's own catch-all of a fallback is not a route.
        if !path.contains("__private__axum_fallback") {
            paths.insert(path.to_owned());
        }
    }
    assert!(
        paths.contains("/healthz") && paths.contains("/api/deposits"),
        "the router's description no longer lists its paths as expected (axum changed?): {paths:?}"
    );
    // A nested service is routed at `prefix/{*rest}`, and at `prefix` and `prefix/` too.
    let nests: Vec<String> =
        paths.iter().filter_map(|p| p.split_once("/{*").map(|(prefix, _)| prefix.to_owned())).collect();
    for prefix in nests {
        paths.remove(&prefix);
        paths.remove(&format!("{prefix}/"));
    }
    paths
}

/// The methods `path` answers, from the `Allow` header of its 405 to a method no route has.
async fn methods_of(app: &Router, path: &str) -> BTreeSet<String> {
    let uri = shape(path).replace("{}", "x");
    let request = Request::builder()
        .method(Method::from_bytes(b"PROBE").expect("a method"))
        .uri(&uri)
        .header(header::AUTHORIZATION, format!("Bearer {PGM_TOKEN}"))
        .body(Body::empty())
        .expect("request");
    let response = app.clone().oneshot(request).await.expect("the router answers");
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED, "PROBE {uri}");
    let allow = response.headers().get(header::ALLOW).unwrap_or_else(|| panic!("PROBE {uri}: no Allow header"));
    allow
        .to_str()
        .expect("ASCII")
        .split(',')
        .map(|method| method.trim().to_owned())
        // axum answers HEAD wherever it answers GET; the document lists GET.
        .filter(|method| method != "HEAD")
        .collect()
}

/// `(METHOD, shaped path)` of every operation in the document.
fn documented(document: &Value) -> BTreeSet<(String, String)> {
    let paths = document["paths"].as_object().expect("paths");
    paths
        .iter()
        .flat_map(|(path, item)| {
            item.as_object().expect("a path item").keys().map(move |method| (method.to_uppercase(), shape(path)))
        })
        .collect()
}

#[tokio::test]
async fn every_route_of_the_router_is_in_the_document_and_nothing_else() {
    let dir = tempfile::tempdir().expect("temp dir");
    let app = full_app(dir.path()).await;
    let mut routed = BTreeSet::new();
    for path in routed_paths(&app) {
        for method in methods_of(&app, &path).await {
            routed.insert((method, shape(&path)));
        }
    }
    let documented = documented(&document());
    let undocumented: Vec<_> = routed.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes missing from the OpenAPI document (add #[utoipa::path]): {undocumented:?}"
    );
    let unrouted: Vec<_> = documented.difference(&routed).collect();
    assert!(unrouted.is_empty(), "documented operations the server does not route: {unrouted:?}");
    // The probe itself is checked: the walk found the routes of every feature.
    for expected in ["/api/session", "/admin/intents/{}", "/v3/pientegra/pay", "/widget/v1/{}", "/openapi.json"] {
        assert!(routed.iter().any(|(_, path)| path == expected), "{expected} was not found by the walk");
    }
}

#[test]
fn the_committed_document_is_the_one_the_server_generates() {
    let path = repository().join("docs/openapi.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(committed == openapi::json(), "{} is missing or stale: regenerate it with `{REGENERATE}`", path.display());
}

#[test]
fn the_document_is_openapi_3_1_with_money_as_strings_of_digits() {
    let document = document();
    assert!(document["openapi"].as_str().is_some_and(|v| v.starts_with("3.1.")), "{}", document["openapi"]);
    let schemas = &document["components"]["schemas"];
    assert_eq!(schemas["Amount"]["type"], "string");
    assert_eq!(schemas["Amount"]["pattern"], "^[0-9]+$");
    for (schema, field) in
        [("Deposit", "amount"), ("Withdrawal", "amount"), ("Balance", "available"), ("CreateDeposit", "amount")]
    {
        assert_eq!(schemas[schema]["properties"][field]["$ref"], "#/components/schemas/Amount", "{schema}.{field}");
    }
    let schemes = document["components"]["securitySchemes"].as_object().expect("security schemes");
    for scheme in ["widgetToken", "streamTicket", "adminToken", "pgmFacadeToken", "webhookSignature"] {
        assert!(schemes.contains_key(scheme), "{scheme}");
    }
    let stream = &document["paths"]["/api/events"]["get"]["responses"]["200"]["content"];
    assert!(stream.get("text/event-stream").is_some(), "{stream}");
}

#[test]
fn every_error_answer_lists_its_codes_each_with_an_example() {
    let document = document();
    let mut checked = 0;
    for (path, item) in document["paths"].as_object().expect("paths") {
        for (method, operation) in item.as_object().expect("path item") {
            for (status, response) in operation["responses"].as_object().expect("responses") {
                let Some(content) = response["content"].get("application/json") else { continue };
                let Some(codes) = content["schema"]["allOf"][1]["properties"]["error"]["enum"].as_array() else {
                    continue;
                };
                let examples = content["examples"].as_object().expect("examples of each code");
                assert!(!codes.is_empty(), "{method} {path} {status}");
                for code in codes {
                    let code = code.as_str().expect("a code");
                    let example = &examples[code]["value"];
                    assert_eq!(example["error"], code, "{method} {path} {status}");
                    let message = example["message"].as_str().unwrap_or_default();
                    assert!(!message.is_empty(), "{method} {path} {status} {code}: no example message");
                }
                checked += 1;
            }
        }
    }
    assert!(checked > 20, "only {checked} error answers list codes");
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .expect("CARGO_HOME or HOME is set")
}

/// Runs openapi-spec-validator on `document`: `Ok` when valid, else its report.
fn validate(library: &std::path::Path, document: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("openapi.json");
    std::fs::write(&file, document).expect("write the document");
    let output = std::process::Command::new("python3")
        .args(["-m", "openapi_spec_validator"])
        .arg(&file)
        .env("PYTHONPATH", library)
        .output()
        .expect("python3 runs");
    let report = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(!report.contains("No module named"), "{report}");
    if output.status.success() { Ok(()) } else { Err(report) }
}

#[test]
fn openapi_spec_validator_finds_the_document_valid() {
    let library = cargo_home().join("openapi-spec-validator");
    if !library.exists() {
        assert!(std::env::var("CI").is_err(), "CI=true but openapi-spec-validator is missing at {}", library.display());
        eprintln!(
            "skipped: openapi-spec-validator is missing at {} (cargo xtask tools installs it)",
            library.display()
        );
        return;
    }
    if let Err(report) = validate(&library, &openapi::json()) {
        panic!("the document is not valid OpenAPI:\n{report}");
    }
    // The validator does refuse: an operation whose answer has no description.
    let mut broken = document();
    broken["paths"]["/healthz"]["get"]["responses"]["200"].as_object_mut().expect("a response").remove("description");
    assert!(validate(&library, &broken.to_string()).is_err(), "the validator accepted a broken document");
}

#[tokio::test]
async fn a_running_server_serves_the_document_at_openapi_json() {
    let stack = Stack::start().await;
    let response = reqwest::get(format!("{}/openapi.json", stack.server.url())).await.expect("the server answers");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()[header::CONTENT_TYPE], "application/json");
    assert_eq!(response.text().await.expect("a body"), openapi::json());
}
