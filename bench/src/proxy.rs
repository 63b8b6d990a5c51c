//! The least any companion server adds to a deposit: `pientegra-bench proxy`
//! is a separate process that takes `POST /api/deposits` and passes its body
//! on to Pientegra's `POST /external/deposits`, and Pientegra's answer back,
//! doing nothing else (no token, no JSON, no idempotency claim, no database).
//! Figure 4 times it beside the real server: what the proxy adds over a direct
//! request is the price of one more process and loopback hop on this machine,
//! which no server design can avoid.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{get, post};

/// Where the proxy sends what it receives, read from its environment.
const UPSTREAM_ENV: &str = "PROXY_UPSTREAM";
/// The sandbox's API key, passed in the environment rather than the command line.
const API_KEY_ENV: &str = "PROXY_API_KEY";
const BIND_ENV: &str = "PROXY_BIND";

#[derive(Clone)]
struct Upstream {
    http: reqwest::Client,
    deposits: String,
    api_key: String,
}

/// `pientegra-bench proxy`: serves until killed, on a runtime like the server's
/// (`#[tokio::main]`: one worker per CPU).
pub fn serve() -> anyhow::Result<()> {
    let var = |name: &str| std::env::var(name).with_context(|| format!("{name} is not set"));
    let upstream = Upstream {
        http: reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?,
        deposits: format!("{}/external/deposits", var(UPSTREAM_ENV)?.trim_end_matches('/')),
        api_key: var(API_KEY_ENV)?,
    };
    let bind = var(BIND_ENV)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        let app = Router::new()
            .route("/api/deposits", post(pass_on))
            .route("/healthz", get(|| async { StatusCode::OK }))
            .with_state(upstream);
        let listener = tokio::net::TcpListener::bind(&bind).await.with_context(|| format!("binding {bind}"))?;
        axum::serve(listener, app).await.context("serving")
    })
}

async fn pass_on(
    State(upstream): State<Upstream>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Bytes), (StatusCode, String)> {
    let bad_gateway = |e: reqwest::Error| (StatusCode::BAD_GATEWAY, e.to_string());
    let mut request = upstream
        .http
        .post(&upstream.deposits)
        .bearer_auth(&upstream.api_key)
        .header("content-type", "application/json")
        .body(body);
    if let Some(key) = headers.get("idempotency-key") {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await.map_err(bad_gateway)?;
    let status = StatusCode::from_u16(response.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    Ok((status, response.bytes().await.map_err(bad_gateway)?))
}

/// The proxy running as a child process of the bench.
pub struct ProxyProcess {
    child: tokio::process::Child,
    pub url: String,
}

impl ProxyProcess {
    /// Starts `bench_bin proxy` in front of `sandbox` and waits until it answers.
    pub async fn start(bench_bin: &Path, sandbox: &pientegra_sandbox::Sandbox) -> anyhow::Result<ProxyProcess> {
        let port = crate::stack::free_port()?;
        let url = format!("http://127.0.0.1:{port}");
        let child = tokio::process::Command::new(bench_bin)
            .arg("proxy")
            .env_clear()
            .env(UPSTREAM_ENV, sandbox.api_base())
            .env(API_KEY_ENV, sandbox.api_key())
            .env(BIND_ENV, format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {} proxy", bench_bin.display()))?;
        let proxy = ProxyProcess { child, url };
        if !crate::stack::healthy_within(&proxy.url, Duration::from_secs(10)).await {
            bail!("the proxy did not answer /healthz within 10 s");
        }
        Ok(proxy)
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}
