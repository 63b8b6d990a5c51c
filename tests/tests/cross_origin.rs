//! Embedding on another origin, checked over real sockets: the partner bundle
//! at `/widget/v1/` (caching, encodings, types, CORS), `GET /api/embed-check`,
//! and the deposit answer's `framing`, read from the hosted page's headers.

use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use pientegra_sandbox::{Config as SandboxConfig, Sandbox};
use pientegra_tests::{Options, Stack, demo_token, settings_for, start_server};
use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

const PARTNER: &str = "http://partner.test";
const STRANGER: &str = "http://stranger.test";

const JS: &str = "pientegra-0123456789abcdef.js";
const WASM: &str = "pientegra-fedcba9876543210.wasm";
const CSS: &str = "pientegra-00112233aabbccdd.css";
const LOADER: &str = "pientegra.js";
const TYPES: &str = "pientegra.d.ts";

/// A bundle as `cargo xtask widget` lays it out: each file, its `.br` and its `.gz`.
fn write_bundle(dir: &Path) -> Vec<(&'static str, Vec<u8>)> {
    let repeat = |text: &str| text.repeat(200).into_bytes();
    let mut wasm = b"\0asm\x01\0\0\0".to_vec();
    wasm.extend(std::iter::repeat_n(7u8, 4096));
    let files = vec![
        (JS, repeat("export function mount(e){return e}\n")),
        (WASM, wasm),
        (CSS, repeat(".pk-deposit{color:var(--pk-accent)}\n")),
        (LOADER, repeat("import('./pientegra-0123456789abcdef.js');\n")),
        (TYPES, repeat("export declare function mountDeposit(e: HTMLElement): void;\n")),
    ];
    for (name, content) in &files {
        std::fs::write(dir.join(name), content).unwrap();
        let mut br = Vec::new();
        brotli::CompressorWriter::new(&mut br, 4096, 11, 22).write_all(content).unwrap();
        std::fs::write(dir.join(format!("{name}.br")), br).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(content).unwrap();
        std::fs::write(dir.join(format!("{name}.gz")), gz.finish().unwrap()).unwrap();
    }
    files
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).map(|value| value.to_str().unwrap())
}

/// Every value of `Vary`, lower-cased.
fn vary(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all("vary")
        .iter()
        .flat_map(|value| value.to_str().unwrap().split(',').map(|v| v.trim().to_ascii_lowercase()).collect::<Vec<_>>())
        .collect()
}

/// `GET /widget/v1/<name>` with `Accept-Encoding` and `Origin` as given.
async fn fetch(stack: &Stack, name: &str, encoding: Option<&str>, origin: Option<&str>) -> reqwest::Response {
    let mut request = stack.http.get(format!("{}/widget/v1/{name}", stack.server.url()));
    if let Some(encoding) = encoding {
        request = request.header("accept-encoding", encoding);
    }
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    request.send().await.unwrap()
}

fn decoded(encoding: Option<&str>, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    match encoding {
        Some("br") => brotli::Decompressor::new(body, 4096).read_to_end(&mut out).unwrap(),
        Some("gzip") => flate2::read::GzDecoder::new(body).read_to_end(&mut out).unwrap(),
        None => return body.to_vec(),
        Some(other) => panic!("unexpected encoding {other}"),
    };
    out
}

#[tokio::test]
async fn the_bundle_is_served_precompressed_with_long_or_short_caching_and_cors_by_kind_of_file() {
    let bundle = tempfile::tempdir().unwrap();
    let files = write_bundle(bundle.path());
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("index.html"), "<!doctype html><title>demo wallet</title>").unwrap();
    let stack = Stack::with(Options {
        widget_dir: Some(bundle.path().to_owned()),
        static_dir: Some(site.path().to_owned()),
        allowed_origins: vec![PARTNER.into()],
        ..Options::default()
    })
    .await;

    for (name, content) in &files {
        let content_named = name.starts_with("pientegra-");
        for (accepted, chosen) in [
            (Some("br, gzip"), Some("br")),
            (Some("gzip, deflate, br;q=0"), Some("gzip")),
            (Some("gzip"), Some("gzip")),
            (Some("identity"), None),
            (None, None),
        ] {
            let response = fetch(&stack, name, accepted, Some(PARTNER)).await;
            assert_eq!(response.status(), StatusCode::OK, "{name} {accepted:?}");
            let headers = response.headers().clone();
            assert_eq!(header(&headers, "content-encoding"), chosen, "{name} with {accepted:?}");
            assert!(vary(&headers).contains(&"accept-encoding".to_owned()), "{name}: {headers:?}");
            let want_cache = if content_named { "public, max-age=31536000, immutable" } else { "public, max-age=300" };
            assert_eq!(header(&headers, "cache-control"), Some(want_cache), "{name}");
            assert_eq!(header(&headers, "cross-origin-resource-policy"), Some("cross-origin"), "{name}");
            let body = response.bytes().await.unwrap();
            assert_eq!(&decoded(chosen, &body), content, "{name} with {accepted:?} decodes to the file");
        }
    }

    let stack_ref = &stack;
    let content_type = |name: &'static str| async move {
        let response = fetch(stack_ref, name, Some("br"), None).await;
        header(response.headers(), "content-type").unwrap().to_owned()
    };
    assert_eq!(content_type(WASM).await, "application/wasm");
    assert!(content_type(JS).await.starts_with("text/javascript"));
    assert!(content_type(LOADER).await.starts_with("text/javascript"));
    assert!(content_type(CSS).await.starts_with("text/css"));
    assert!(content_type(TYPES).await.starts_with("application/typescript"));

    // The content-named files are shared with the listed partner and the server's own pages only.
    let own = stack.server.url();
    for name in [JS, WASM, CSS] {
        for origin in [PARTNER, own.as_str()] {
            let response = fetch(&stack, name, None, Some(origin)).await;
            let headers = response.headers();
            assert_eq!(header(headers, "access-control-allow-origin"), Some(origin), "{name} for {origin}");
            assert_eq!(header(headers, "timing-allow-origin"), Some(origin), "{name} for {origin}");
            assert!(vary(headers).contains(&"origin".to_owned()), "{name}: {headers:?}");
            assert!(headers.get("access-control-allow-credentials").is_none());
        }
        let response = fetch(&stack, name, None, Some(STRANGER)).await;
        assert_eq!(response.status(), StatusCode::OK, "the file itself is public");
        let headers = response.headers();
        assert!(headers.get("access-control-allow-origin").is_none(), "{name} for a stranger: {headers:?}");
        assert!(headers.get("timing-allow-origin").is_none(), "{name} for a stranger: {headers:?}");
        assert!(vary(headers).contains(&"origin".to_owned()), "{name}: {headers:?}");
    }
    // Any page may run the loader and read its declarations.
    for name in [LOADER, TYPES] {
        for origin in [Some(PARTNER), Some(STRANGER), None] {
            let response = fetch(&stack, name, None, origin).await;
            let headers = response.headers();
            assert_eq!(header(headers, "access-control-allow-origin"), Some("*"), "{name} for {origin:?}");
            assert_eq!(header(headers, "timing-allow-origin"), Some("*"), "{name} for {origin:?}");
        }
    }

    // The loader revalidates after its five minutes.
    let loader = fetch(&stack, LOADER, Some("br"), None).await;
    let last_modified = header(loader.headers(), "last-modified").expect("Last-Modified").to_owned();
    let again = stack
        .http
        .get(format!("{}/widget/v1/{LOADER}", stack.server.url()))
        .header("accept-encoding", "br")
        .header("if-modified-since", &last_modified)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), StatusCode::NOT_MODIFIED);
    assert_eq!(header(again.headers(), "cache-control"), Some("public, max-age=300"));

    // A missing file, and the folder itself, are the JSON 404 of every other route.
    for path in ["pientegra-ffffffffffffffff.js", "nothing-here.js", "", "..%2FCargo.toml"] {
        let response = fetch(&stack, path, None, Some(PARTNER)).await;
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{path:?}");
        assert_eq!(header(response.headers(), "cache-control"), Some("no-store"), "{path:?}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["error"], "not_found", "{path:?}");
    }

    // The demo page is still served at `/`, and the API still says no-store.
    let page = stack.http.get(format!("{}/", stack.server.url())).send().await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("demo wallet"));
    let token = stack.token("ayse").await;
    for response in [
        stack.http.get(format!("{}/api/account", stack.server.url())).bearer_auth(&token).send().await.unwrap(),
        stack.http.get(format!("{}/api/embed-check", stack.server.url())).send().await.unwrap(),
        stack.http.get(format!("{}/healthz", stack.server.url())).send().await.unwrap(),
    ] {
        assert_eq!(header(response.headers(), "cache-control"), Some("no-store"), "{}", response.url());
    }
    let (status, _, headers) = create_deposit(&stack, &token, Some(PARTNER), &uuid::Uuid::new_v4().to_string()).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(header(&headers, "cache-control"), Some("no-store"));
    assert_eq!(header(&headers, "access-control-allow-origin"), Some(PARTNER), "the API keeps its CORS");
}

#[tokio::test]
async fn without_a_widget_dir_the_bundle_path_is_a_json_404() {
    let stack = Stack::start().await;
    let response = fetch(&stack, LOADER, None, None).await;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "not_found");
}

#[tokio::test]
async fn the_embed_check_says_whether_the_asking_page_may_use_the_server() {
    let stack = Stack::start().await;
    let own = stack.server.url();
    for (origin, allowed) in [(Some(PARTNER), true), (Some(own.as_str()), true), (Some(STRANGER), false), (None, true)]
    {
        let mut request = stack.http.get(format!("{own}/api/embed-check"));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let headers = response.headers().clone();
        assert_eq!(header(&headers, "access-control-allow-origin"), Some("*"), "{origin:?}");
        assert!(headers.get("access-control-allow-credentials").is_none());
        assert_eq!(header(&headers, "cache-control"), Some("no-store"));
        let body: Value = response.json().await.unwrap();
        assert_eq!(body, json!({"origin": origin, "allowed": allowed}), "{origin:?}");
    }
}

/// `POST /api/deposits` from a page of `origin`: status, body, headers.
async fn create_deposit(stack: &Stack, token: &str, origin: Option<&str>, key: &str) -> (StatusCode, Value, HeaderMap) {
    let mut request = stack
        .http
        .post(format!("{}/api/deposits", stack.server.url()))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(&json!({"amount": "10000"}));
    if let Some(origin) = origin {
        request = request.header("origin", origin);
    }
    let response = request.send().await.unwrap();
    let (status, headers) = (response.status(), response.headers().clone());
    (status, response.json().await.unwrap(), headers)
}

#[tokio::test]
async fn the_sandboxs_hosted_page_refuses_frames_by_default() {
    let stack = Stack::start().await;
    let token = stack.token("ayse").await;
    let key = uuid::Uuid::new_v4().to_string();
    let (status, body, _) = create_deposit(&stack, &token, Some(PARTNER), &key).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["framing"], json!({"allowed": false, "reason": "frame_ancestors"}));
    // The replay carries the same answer.
    let (status, replay, headers) = create_deposit(&stack, &token, Some(PARTNER), &key).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(header(&headers, "idempotency-replayed"), Some("true"));
    assert_eq!(replay, body);
    // Framing belongs to the creating answer, not to the deposit.
    let (_, looked_up) = stack.get_json(&token, &format!("/api/deposits/{}", body["intentId"].as_str().unwrap())).await;
    assert!(looked_up.get("framing").is_none(), "{looked_up}");
}

#[tokio::test]
async fn a_hosted_page_that_lists_the_partner_may_be_framed_by_it_alone() {
    let stack = Stack::with(Options { frame_ancestors: Some(format!("'self' {PARTNER}")), ..Options::default() }).await;
    let token = stack.token("ayse").await;
    let framing = |origin| {
        let (stack, token) = (&stack, &token);
        async move {
            let (status, body, _) = create_deposit(stack, token, origin, &uuid::Uuid::new_v4().to_string()).await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            body["framing"].clone()
        }
    };
    assert_eq!(framing(Some(PARTNER)).await, json!({"allowed": true, "reason": null}));
    assert_eq!(framing(Some(STRANGER)).await, json!({"allowed": false, "reason": "frame_ancestors"}));
    assert_eq!(framing(Some("null")).await, json!({"allowed": false, "reason": "frame_ancestors"}));
    // Without an Origin the page is the server's own, which the sandbox does not list.
    assert_eq!(framing(None).await, json!({"allowed": false, "reason": "frame_ancestors"}));
}

/// A stand-in hosted page: answers `HEAD /d/{token}` with `csp` and counts the `HEAD`s.
async fn counted_hosted_page(csp: &'static str) -> (String, Arc<AtomicUsize>) {
    let heads = Arc::new(AtomicUsize::new(0));
    let counter = heads.clone();
    let app = axum::Router::new().route(
        "/d/{token}",
        axum::routing::head(move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async move { [("content-security-policy", csp), ("x-frame-options", "DENY")] }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, heads)
}

#[tokio::test]
async fn one_head_of_the_hosted_page_answers_every_deposit_from_every_page() {
    let (hosted, heads) = counted_hosted_page("default-src 'self'; frame-ancestors http://partner.test").await;
    // The sandbox's depositUrls point at the stand-in; the server talks to the sandbox itself.
    let sandbox = Sandbox::spawn(SandboxConfig {
        bind: "127.0.0.1:0".parse().unwrap(),
        public_url: Some(hosted),
        rate_limit_per_minute: 100_000,
        ..SandboxConfig::default()
    })
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings_for(&sandbox, dir.path(), &Options::default());
    settings.api_base = format!("http://{}/api/v1", sandbox.addr()).parse().unwrap();
    let server = start_server(&settings, "127.0.0.1:0".parse().unwrap(), None).await;
    let http = reqwest::Client::new();
    let token = demo_token(&http, &server.url(), "ayse").await;
    let deposit = |origin: &'static str| {
        let (http, url, token) = (http.clone(), server.url(), token.clone());
        async move {
            let response = http
                .post(format!("{url}/api/deposits"))
                .bearer_auth(token)
                .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
                .header("origin", origin)
                .json(&json!({"amount": "10000"}))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), StatusCode::CREATED);
            response.json::<Value>().await.unwrap()["framing"].clone()
        }
    };

    // Together at first, so the cache's first fill is shared too; then one by one.
    let first = futures::future::join_all((0..6).map(|i| deposit(if i % 2 == 0 { PARTNER } else { STRANGER }))).await;
    let mut answers = first;
    for origin in [PARTNER, STRANGER, PARTNER, STRANGER] {
        answers.push(deposit(origin).await);
    }
    let allowed = json!({"allowed": true, "reason": null});
    let refused = json!({"allowed": false, "reason": "frame_ancestors"});
    assert_eq!(answers.iter().filter(|a| **a == allowed).count(), 5, "{answers:?}");
    assert_eq!(answers.iter().filter(|a| **a == refused).count(), 5, "frame-ancestors wins over DENY: {answers:?}");
    assert_eq!(heads.load(Ordering::SeqCst), 1, "one HEAD for ten deposits from two pages");
    server.stop().await;
    sandbox.shutdown().await;
}
