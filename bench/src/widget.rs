//! Figures 6 and 7: the shipped widget's size against a bare Leptos counter
//! built the same way, and its time to interactive in headless Chromium
//! against a blank page.

use std::io::Write;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::report::{Row, Verdict};
use crate::stack;
use crate::{Ctx, Figure};

const SIZE_TARGET: &str = "≤ 60 KiB gzip and ≤ 1.8x counter";
const TTI_TARGET: &str = "≤ 300 ms";

/// Figure 6.
pub fn size(ctx: &Ctx) -> anyhow::Result<Figure> {
    let dist = ctx.root.join("dist");
    let counter = ctx.root.join("bench").join("counter").join("dist");
    let widget = shipped(&dist).with_context(|| format!("reading {}", dist.display()))?;
    let base = shipped(&counter)
        .with_context(|| format!("reading {} (build it: trunk build --release in bench/counter)", counter.display()))?;
    if !widget.iter().any(|f| f.name.ends_with(".wasm")) {
        bail!("{} holds no .wasm: run `cargo xtask widget`", dist.display());
    }
    if !base.iter().any(|f| f.name.ends_with(".wasm")) {
        bail!("{} holds no .wasm: the counter did not build", counter.display());
    }
    let total = |files: &[Shipped]| files.iter().fold((0, 0, 0), |(r, g, b), f| (r + f.raw, g + f.gzip, b + f.brotli));
    let (w_raw, w_gz, w_br) = total(&widget);
    let (c_raw, c_gz, c_br) = total(&base);
    let kib = |b: usize| b as f64 / 1024.0;
    let ratio_gz = w_gz as f64 / c_gz as f64;
    let ratio_br = w_br as f64 / c_br as f64;
    let met = kib(w_gz) <= 60.0 && ratio_gz <= 1.8;
    let list = |files: &[Shipped]| {
        files
            .iter()
            .map(|f| format!("{} {} B raw / {} gz / {} br", f.name, f.raw, f.gzip, f.brotli))
            .collect::<Vec<_>>()
            .join("; ")
    };
    Ok(Figure {
        rows: vec![Row {
            id: "6".into(),
            figure: "shipped widget (wasm + js + css)".into(),
            value: format!("{:.1} KiB gzip, {:.1} KiB brotli ({:.1} KiB raw)", kib(w_gz), kib(w_br), kib(w_raw)),
            baseline: format!(
                "Leptos counter: {:.1} KiB gzip, {:.1} KiB brotli ({:.1} KiB raw)",
                kib(c_gz),
                kib(c_br),
                kib(c_raw)
            ),
            ratio: format!("{ratio_gz:.2}x gzip, {ratio_br:.2}x brotli"),
            target: SIZE_TARGET.into(),
            verdict: Verdict::of(met),
        }],
        notes: vec![format!(
            "#6: every .wasm, .js and .css trunk put in `dist/` for the widget, its scripts minified by terser \
             afterwards as `cargo xtask widget` ships them (the demo page's own `demo.js`, `demo-*.css` and \
             `index.html` excluded), each compressed on its own as a server would send it: gzip level 9 (flate2) \
             and brotli quality 11, window 22. Widget: {}. Counter (`bench/counter`, Leptos 0.8 CSR, wasm-bindgen \
             =0.2.130, profile wasm-release, wasm-opt -Os as the widget (binaryen 132, one-caller inlining off), \
             scripts minified by terser as the widget's, its own target directory, the kit's Cargo.lock versions): \
             {}.",
            list(&widget),
            list(&base)
        )],
    })
}

struct Shipped {
    name: String,
    raw: usize,
    gzip: usize,
    brotli: usize,
}

fn shipped(dist: &Path) -> anyhow::Result<Vec<Shipped>> {
    let mut files = Vec::new();
    let mut dirs = vec![dist.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            let name = path.strip_prefix(dist)?.to_string_lossy().into_owned();
            let ext = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
            if !matches!(ext, "wasm" | "js" | "css") || name.starts_with("demo") {
                continue;
            }
            let bytes = std::fs::read(&path)?;
            files.push(Shipped { name, raw: bytes.len(), gzip: gzip(&bytes)?, brotli: brotli(&bytes)? });
        }
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

fn gzip(bytes: &[u8]) -> anyhow::Result<usize> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes)?;
    Ok(encoder.finish()?.len())
}

fn brotli(bytes: &[u8]) -> anyhow::Result<usize> {
    let mut out = Vec::new();
    let params = brotli::enc::BrotliEncoderParams { quality: 11, lgwin: 22, ..Default::default() };
    brotli::BrotliCompress(&mut &bytes[..], &mut out, &params)?;
    Ok(out.len())
}

/// Installed before any page script: records `performance.now()` (ms since
/// navigation start) the moment the deposit button exists and is enabled.
const READY_PROBE: &str = r#"(() => {
  const ready = () => {
    const b = document.querySelector('[data-testid=deposit-submit]');
    return b && !b.disabled && b.getAttribute('aria-disabled') !== 'true';
  };
  const observer = new MutationObserver(() => {
    if (window.__pkReady === undefined && ready()) {
      window.__pkReady = performance.now();
      observer.disconnect();
    }
  });
  observer.observe(document, { subtree: true, childList: true, attributes: true });
})();"#;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// Figure 7.
pub async fn tti(ctx: &Ctx) -> anyhow::Result<Figure> {
    for tool in [CHROMIUM, CHROMEDRIVER] {
        if !Path::new(tool).exists() {
            bail!("{tool} is missing (Debian: apt-get install chromium chromium-driver)");
        }
    }
    let dist = ctx.root.join("dist");
    if !dist.join("index.html").exists() {
        bail!("{} has no index.html: run `cargo xtask widget`", dist.display());
    }
    let dir = tempfile::tempdir()?;
    let demo_port = stack::free_port()?;
    let log = std::fs::File::create(dir.path().join("demo.log"))?;
    let mut demo = tokio::process::Command::new(&ctx.server_bin)
        .arg("demo")
        .arg("--bind")
        .arg(format!("127.0.0.1:{demo_port}"))
        .arg("--sandbox-bind")
        .arg(format!("127.0.0.1:{}", stack::free_port()?))
        .arg("--static-dir")
        .arg(&dist)
        .arg("--database")
        .arg(dir.path().join("demo.db"))
        .env("RUST_LOG", "warn")
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("starting pientegra-server demo")?;
    let blank = BlankPage::start().await?;
    let driver_port = stack::free_port()?;
    let mut driver = tokio::process::Command::new(CHROMEDRIVER)
        .arg(format!("--port={driver_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting chromedriver")?;
    let result = measure_tti(demo_port, driver_port, &blank.url, &dir.path().join("profile")).await;
    let _ = driver.kill().await;
    let _ = demo.kill().await;
    blank.task.abort();
    let (widget, blank_ms, cold) = result?;
    Ok(Figure {
        rows: vec![Row {
            id: "7".into(),
            figure: "widget time to interactive (headless Chromium)".into(),
            value: format!("{widget:.0} ms (median; first, cold-cache load {cold:.0} ms)"),
            baseline: format!("blank page: {blank_ms:.0} ms"),
            ratio: format!("{:.1}x", widget / blank_ms),
            target: TTI_TARGET.into(),
            verdict: Verdict::of(widget <= 300.0),
        }],
        notes: vec![format!(
            "#7: `pientegra-server demo --static-dir dist` (release) on loopback, `/?user=ayse` (the page mints its \
             own demo token). Chromium headless via chromedriver's WebDriver API (flags: --headless --no-sandbox \
             --disable-gpu --disable-background-networking --disable-component-update --disable-sync \
             --no-first-run, a fresh --user-data-dir). A script installed with `Page.addScriptToEvaluateOnNewDocument` \
             records `performance.now()` (ms since navigation start) when a MutationObserver first sees \
             `[data-testid=deposit-submit]` present and enabled. One cold load (reported), one warm-up, then the median \
             of {} loads with a warm HTTP cache. Baseline: `loadEventEnd` of a minimal HTML page served from \
             loopback by the bench, same browser, same count.",
            TTI_RUNS
        )],
    })
}

const TTI_RUNS: usize = 7;

async fn measure_tti(demo_port: u16, driver_port: u16, blank: &str, profile: &Path) -> anyhow::Result<(f64, f64, f64)> {
    let http = reqwest::Client::new();
    let demo_url = format!("http://127.0.0.1:{demo_port}/?user=ayse");
    let driver = format!("http://127.0.0.1:{driver_port}");
    wait_ok(&http, &format!("http://127.0.0.1:{demo_port}/healthz")).await.context("the demo server")?;
    wait_ok(&http, &format!("{driver}/status")).await.context("chromedriver")?;
    let session: Value = http
        .post(format!("{driver}/session"))
        .json(&json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--no-first-run",
                         format!("--user-data-dir={}", profile.display())]
            }
        }}}))
        .send()
        .await?
        .json()
        .await?;
    let id = session["value"]["sessionId"].as_str().with_context(|| format!("no WebDriver session: {session}"))?;
    let session = format!("{driver}/session/{id}");
    let result = async {
        let cdp: Value = http
            .post(format!("{session}/goog/cdp/execute"))
            .json(&json!({"cmd": "Page.addScriptToEvaluateOnNewDocument", "params": {"source": READY_PROBE}}))
            .send()
            .await?
            .json()
            .await?;
        if cdp["value"].get("error").is_some() {
            bail!("installing the probe: {cdp}");
        }
        let cold = widget_load(&http, &session, &demo_url).await?;
        widget_load(&http, &session, &demo_url).await?;
        let mut widget = Vec::new();
        for _ in 0..TTI_RUNS {
            widget.push(widget_load(&http, &session, &demo_url).await?);
        }
        let mut blanks = Vec::new();
        blank_load(&http, &session, blank).await?;
        for _ in 0..TTI_RUNS {
            blanks.push(blank_load(&http, &session, blank).await?);
        }
        anyhow::Ok((stack::median(&mut widget), stack::median(&mut blanks), cold))
    }
    .await;
    let _ = http.delete(&session).send().await;
    result
}

async fn navigate(http: &reqwest::Client, session: &str, url: &str) -> anyhow::Result<()> {
    let answer: Value = http.post(format!("{session}/url")).json(&json!({"url": url})).send().await?.json().await?;
    if answer["value"].get("error").is_some() {
        bail!("navigating to {url}: {answer}");
    }
    Ok(())
}

async fn script(http: &reqwest::Client, session: &str, source: &str) -> anyhow::Result<Value> {
    let answer: Value = http
        .post(format!("{session}/execute/sync"))
        .json(&json!({"script": source, "args": []}))
        .send()
        .await?
        .json()
        .await?;
    if answer["value"].get("error").is_some() {
        bail!("script failed: {answer}");
    }
    Ok(answer["value"].clone())
}

/// One load of the demo page: ms from navigation start to the enabled button.
async fn widget_load(http: &reqwest::Client, session: &str, url: &str) -> anyhow::Result<f64> {
    navigate(http, session, "about:blank").await?;
    navigate(http, session, url).await?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(ms) = script(http, session, "return window.__pkReady ?? null;").await?.as_f64() {
            return Ok(ms);
        }
        if Instant::now() > deadline {
            bail!("the deposit button was not enabled within 15 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One load of the blank page: its loadEventEnd, ms from navigation start.
async fn blank_load(http: &reqwest::Client, session: &str, url: &str) -> anyhow::Result<f64> {
    navigate(http, session, "about:blank").await?;
    navigate(http, session, url).await?;
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let v = script(http, session, "const n = performance.getEntriesByType('navigation')[0]; return n && n.loadEventEnd > 0 ? n.loadEventEnd : null;").await?;
        if let Some(ms) = v.as_f64() {
            return Ok(ms);
        }
        if Instant::now() > deadline {
            bail!("the blank page did not load within 15 s");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn wait_ok(http: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if http.get(url).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{url} did not answer within 30 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A loopback HTTP server answering every request with a minimal HTML page.
struct BlankPage {
    url: String,
    task: tokio::task::JoinHandle<()>,
}

impl BlankPage {
    async fn start() -> anyhow::Result<BlankPage> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/", listener.local_addr()?);
        let task = tokio::spawn(async move {
            const BODY: &str = "<!doctype html><html><head><meta charset=\"utf-8\"><title>blank</title></head><body><p>blank</p></body></html>";
            while let Ok((mut tcp, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    // One request per connection is enough for a browser to load the page.
                    if tcp.read(&mut buf).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{BODY}",
                        BODY.len()
                    );
                    let _ = tcp.write_all(response.as_bytes()).await;
                    let _ = tcp.shutdown().await;
                });
            }
        });
        Ok(BlankPage { url, task })
    }
}
