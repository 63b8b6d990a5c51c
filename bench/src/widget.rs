//! Figures 6 and 7: the shipped widget's size (the partner bundle) against
//! a bare Leptos counter built the same way, and the demo page's time to
//! interactive in headless Chromium against a blank page.

use std::io::Write;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;

use crate::chrome::{self, Driver, Pages, Session};
use crate::report::{Row, Verdict};
use crate::stack;
use crate::{Ctx, Figure};

const SIZE_TARGET: &str = "≤ 60 KiB gzip and ≤ 1.8x counter";
const TTI_TARGET: &str = "≤ 300 ms";

/// Figure 6.
pub fn size(ctx: &Ctx) -> anyhow::Result<Figure> {
    let bundle = ctx.root.join("dist-widget");
    let counter = ctx.root.join("bench").join("counter").join("dist");
    let widget = shipped(&bundle).with_context(|| format!("reading {} (cargo xtask widget)", bundle.display()))?;
    let base = shipped(&counter)
        .with_context(|| format!("reading {} (build it: trunk build --release in bench/counter)", counter.display()))?;
    if !widget.iter().any(|f| f.name.ends_with(".wasm")) {
        bail!("{} holds no .wasm: run `cargo xtask widget`", bundle.display());
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
            "#6: what a page loads of the partner bundle `dist-widget/` as `cargo xtask widget` writes it: the \
             loader `pientegra.js` and the content-named glue, wasm and CSS, scripts minified by terser (the \
             `.d.ts` and the precompressed copies excluded), each compressed on its own as a server would send it: \
             gzip level 9 (flate2) and brotli quality 11, window 22. Widget: {}. Counter (`bench/counter`, Leptos \
             0.8 CSR, wasm-bindgen =0.2.130, profile wasm-release, wasm-opt -Os as the widget (binaryen 132, \
             one-caller inlining off), scripts minified by terser as the widget's, its own target directory, the \
             kit's Cargo.lock versions): {}.",
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

/// Figure 7.
pub async fn tti(ctx: &Ctx) -> anyhow::Result<Figure> {
    let dist = ctx.root.join("dist");
    let bundle = ctx.root.join("dist-widget");
    for (folder, file) in [(&dist, "index.html"), (&bundle, "pientegra.js")] {
        if !folder.join(file).exists() {
            bail!("{} has no {file}: run `cargo xtask widget`", folder.display());
        }
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
        // The demo page loads the widget as a partner page does, from /widget/v1/.
        .arg("--widget-dir")
        .arg(&bundle)
        .arg("--database")
        .arg(dir.path().join("demo.db"))
        .env("RUST_LOG", "warn")
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("starting pientegra-server demo")?;
    let blank = Pages::start(vec![("/", BLANK_PAGE.to_owned())]).await?;
    let result = async {
        let driver = Driver::start().await?;
        let measured =
            measure_tti(&driver, demo_port, &format!("{}/", blank.origin), &dir.path().join("profile")).await;
        driver.stop().await;
        measured
    }
    .await;
    let _ = demo.kill().await;
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
            "#7: `pientegra-server demo --static-dir dist --widget-dir dist-widget` (release) on loopback, \
             `/?user=ayse` (the page mints its own demo token). Chromium headless via chromedriver's WebDriver API \
             (flags: {}, a fresh --user-data-dir). A script installed with `Page.addScriptToEvaluateOnNewDocument` \
             records `performance.now()` (ms since navigation start) when a MutationObserver first sees \
             `[data-testid=deposit-submit]` present and enabled. One cold load (reported), one warm-up, then the \
             median of {} loads with a warm HTTP cache. Baseline: `loadEventEnd` of a minimal HTML page served from \
             loopback by the bench, same browser, same count.",
            chrome::FLAGS.split_whitespace().collect::<Vec<_>>().join(" "),
            TTI_RUNS
        )],
    })
}

const TTI_RUNS: usize = 7;

/// A minimal HTML page: the browser's own floor.
pub const BLANK_PAGE: &str =
    "<!doctype html><html><head><meta charset=\"utf-8\"><title>blank</title></head><body><p>blank</p></body></html>";

async fn measure_tti(driver: &Driver, demo_port: u16, blank: &str, profile: &Path) -> anyhow::Result<(f64, f64, f64)> {
    let demo_url = format!("http://127.0.0.1:{demo_port}/?user=ayse");
    chrome::wait_ok(&reqwest::Client::new(), &format!("http://127.0.0.1:{demo_port}/healthz"))
        .await
        .context("the demo server")?;
    let session = driver.session(profile).await?;
    let result = async {
        let probe = chrome::ready_probe("[data-testid=deposit-submit]");
        session.cdp("Page.addScriptToEvaluateOnNewDocument", json!({"source": probe})).await?;
        let cold = widget_load(&session, &demo_url).await?;
        widget_load(&session, &demo_url).await?;
        let mut widget = Vec::new();
        for _ in 0..TTI_RUNS {
            widget.push(widget_load(&session, &demo_url).await?);
        }
        let mut blanks = Vec::new();
        blank_load(&session, blank).await?;
        for _ in 0..TTI_RUNS {
            blanks.push(blank_load(&session, blank).await?);
        }
        anyhow::Ok((stack::median(&mut widget), stack::median(&mut blanks), cold))
    }
    .await;
    session.close().await;
    result
}

/// One load of the demo page: ms from navigation start to the enabled button.
async fn widget_load(session: &Session, url: &str) -> anyhow::Result<f64> {
    session.navigate("about:blank").await?;
    session.navigate(url).await?;
    let ms = session.until("the deposit button's enabling", READY, Duration::from_secs(15)).await?;
    ms.as_f64().context("window.__pkReady is a number")
}

/// One load of the blank page: its loadEventEnd, ms from navigation start.
pub async fn blank_load(session: &Session, url: &str) -> anyhow::Result<f64> {
    session.navigate("about:blank").await?;
    session.navigate(url).await?;
    let ms = session.until("the blank page's load", LOAD_END, Duration::from_secs(15)).await?;
    ms.as_f64().context("loadEventEnd is a number")
}

/// What [`chrome::ready_probe`] recorded, or null.
pub const READY: &str = "return window.__pkReady ?? null;";

/// The page's `loadEventEnd`, or null until it has one.
pub const LOAD_END: &str =
    "const n = performance.getEntriesByType('navigation')[0]; return n && n.loadEventEnd > 0 ? n.loadEventEnd : null;";
