//! Figure 9: what a person on a phone feels. A cold load of a partner page
//! on another origin that embeds the widget from the companion server's
//! `/widget/v1/pientegra.js`, in headless Chromium with a phone's network
//! (Lighthouse's mobile throttling): the widget's bytes over the wire, and
//! the time until the deposit button can be used.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::chrome::{self, Driver, Pages, Session};
use crate::report::{Row, Verdict};
use crate::stack::{self, ServerProcess};
use crate::widget::{BLANK_PAGE, LOAD_END, READY};
use crate::{Ctx, Figure};

pub const FIGURE: &str = "phone: partner page on another origin, cold, mobile network";
pub const TARGET: &str = "≤ 105 KiB transferred (brotli), ≤ 1.5 s";
const TARGET_BYTES: f64 = 105.0 * 1024.0;
const TARGET_MS: f64 = 1_500.0;

/// Lighthouse's mobile network (its "slow 4G": 150 ms round trip,
/// 1.6 Mbit/s down, 750 kbit/s up, with Lighthouse's 1 kbit = 1024 bit),
/// as `Network.emulateNetworkConditions` takes it (bytes per second).
const LATENCY_MS: f64 = 150.0;
const DOWNLOAD: f64 = 1.6 * 1024.0 * 1024.0 / 8.0;
const UPLOAD: f64 = 750.0 * 1024.0 / 8.0;
/// Lighthouse's mobile CPU slowdown, for the informational row.
const CPU_SLOWDOWN: f64 = 4.0;
/// The phone Lighthouse emulates (a Moto G Power): CSS pixels and pixel ratio.
const SCREEN: (u32, u32, f64) = (412, 823, 1.75);

/// The button the figure waits for, inside the element the page wrote.
const BUTTON: &str = "pientegra-deposit [data-testid=deposit-submit]";

/// Lists the page's Resource Timing entries for `/widget/v1/`, once the
/// loader and the three content-named files are all among them (else null).
const WIDGET_RESOURCES: &str = r#"
const entries = performance.getEntriesByType('resource')
  .map(e => ({ url: new URL(e.name), transfer: e.transferSize, encoded: e.encodedBodySize }))
  .filter(e => e.url.pathname.startsWith('/widget/v1/'))
  .map(e => ({ name: e.url.pathname.slice('/widget/v1/'.length), transfer: e.transfer, encoded: e.encoded }));
const hashed = (ext) => new RegExp(`^pientegra-[0-9a-f]{16}\\.${ext}$`);
const wanted = [/^pientegra\.js$/, hashed('js'), hashed('wasm'), hashed('css')];
return wanted.every(w => entries.some(e => w.test(e.name))) ? entries : null;"#;

/// One widget resource as the page fetched it.
struct Fetched {
    name: String,
    transfer: u64,
    encoded: u64,
}

/// Figure 9.
pub async fn run(ctx: &Ctx) -> anyhow::Result<Figure> {
    let bundle = ctx.root.join("dist-widget");
    if !bundle.join("pientegra.js").exists() {
        bail!("{} has no pientegra.js: run `cargo xtask widget`", bundle.display());
    }
    let samples = if ctx.quick { 3 } else { 7 };
    let dir = tempfile::tempdir()?;
    let sandbox = stack::sandbox(10).await?;
    let db = stack::fresh_database(dir.path(), "server.db").await?;
    // The partner page's origin must be known before the server starts (ALLOWED_ORIGINS).
    let partner = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let partner_origin = format!("http://{}", partner.local_addr()?);
    let server = ServerProcess::serve_with(
        &ctx.server_bin,
        &sandbox,
        &db,
        &dir.path().join("server.log"),
        &[("WIDGET_DIR", bundle.as_os_str()), ("ALLOWED_ORIGINS", partner_origin.as_ref())],
    )
    .await?;
    let page = partner_page(&server.url, &stack::token("phone-user")?);
    let pages = Pages::serve(partner, vec![("/", page), ("/blank", BLANK_PAGE.to_owned())])?;
    let result = async {
        serves_the_loader(&server.url).await?;
        let driver = Driver::start().await?;
        let measured = measure(&driver, &pages.origin, dir.path(), samples).await;
        driver.stop().await;
        measured
    }
    .await;
    server.stop().await;
    let [network, cpu] = result?;
    let fetched = describe(&network.fetched, &bundle);
    let kib = |bytes: f64| bytes / 1024.0;
    let row = |id: &str, figure: &str, m: &Conditions, target: &str, verdict| Row {
        id: id.into(),
        figure: figure.into(),
        value: format!(
            "{:.2} s to a usable deposit button (median of {samples} cold loads, {:.2}–{:.2} s); {:.1} KiB transferred",
            m.ready_ms / 1e3,
            m.fastest_ms / 1e3,
            m.slowest_ms / 1e3,
            kib(m.transferred),
        ),
        baseline: format!("the page without the widget: {:.2} s (load event)", m.blank_ms / 1e3),
        ratio: format!("{:.1}x", m.ready_ms / m.blank_ms),
        target: target.into(),
        verdict,
    };
    Ok(Figure {
        rows: vec![
            row(
                "9",
                FIGURE,
                &network,
                TARGET,
                Verdict::of(network.transferred <= TARGET_BYTES && network.ready_ms <= TARGET_MS),
            ),
            row("9", "the same with Lighthouse's 4x CPU slowdown too", &cpu, "(info)", Verdict::Info),
        ],
        notes: vec![format!(
            "#9: a partner page on its own origin (a page the bench serves on another loopback port: \
             `<script type=\"module\" src=\"<kit>/widget/v1/pientegra.js\">` and `<pientegra-deposit token=…>`, \
             nothing else) embeds the widget from `pientegra-server serve` (release, `WIDGET_DIR=dist-widget` as \
             `cargo xtask widget` writes it, `ALLOWED_ORIGINS` = the page's origin, the in-process sandbox). Each \
             load is a cold one: a new Chromium (headless, chromedriver; flags: {flags}) with a fresh \
             --user-data-dir, and through the DevTools protocol `Network.setCacheDisabled`, \
             `Network.emulateNetworkConditions` with Lighthouse's mobile figures (latency {LATENCY_MS} ms, \
             download {DOWNLOAD} B/s = 1.6 Mbit/s, upload {UPLOAD} B/s = 750 kbit/s; Lighthouse's own \
             DevTools-throttling preset uses 562.5 ms of request latency and 90% of these throughputs, to stand for \
             the same round trips) and a phone's screen \
             (`Emulation.setDeviceMetricsOverride` {w}×{h}, pixel ratio {dpr}, mobile). The time is \
             `performance.now()` (ms since navigation start) when a MutationObserver, installed with \
             `Page.addScriptToEvaluateOnNewDocument`, first sees `{BUTTON}` present and enabled; the bytes are \
             the Resource Timing `transferSize` (headers included) of every `/widget/v1/` resource, which the \
             server lets the page read (`Timing-Allow-Origin`). Median of {samples} loads. Baseline: a page of the \
             same partner origin without the script and the element, its `loadEventEnd`, same conditions, same \
             count. The second row adds `Emulation.setCPUThrottlingRate` {CPU_SLOWDOWN}x, Lighthouse's mobile CPU. \
             Files (first load, network only): {fetched}.",
            flags = chrome::FLAGS.split_whitespace().collect::<Vec<_>>().join(" "),
            w = SCREEN.0,
            h = SCREEN.1,
            dpr = SCREEN.2,
        )],
    })
}

/// Fails at once, rather than after a browser's wait, when the server does not serve the bundle.
async fn serves_the_loader(kit: &str) -> anyhow::Result<()> {
    let url = format!("{kit}/widget/v1/pientegra.js");
    let status = reqwest::get(&url).await?.status();
    if !status.is_success() {
        bail!("GET {url} answered {status}: the server does not serve WIDGET_DIR");
    }
    Ok(())
}

/// The partner page: the three-line embed, the token written in by the partner's server.
fn partner_page(kit: &str, token: &str) -> String {
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>Partner wallet</title>\n\
         <script type=\"module\" src=\"{kit}/widget/v1/pientegra.js\"></script>\n</head>\n<body>\n\
         <h1>Wallet</h1>\n<pientegra-deposit token=\"{token}\"></pientegra-deposit>\n</body>\n</html>\n"
    )
}

/// The figures of one set of conditions.
struct Conditions {
    /// Medians, and the range of the widget's.
    ready_ms: f64,
    fastest_ms: f64,
    slowest_ms: f64,
    blank_ms: f64,
    transferred: f64,
    /// The first load's widget resources.
    fetched: Vec<Fetched>,
}

/// `samples` cold loads of the widget page and of the blank page, with the
/// mobile network alone, then with the CPU slowed down as well.
async fn measure(driver: &Driver, origin: &str, scratch: &Path, samples: usize) -> anyhow::Result<[Conditions; 2]> {
    let mut results = Vec::new();
    let mut profile = 0;
    for cpu in [None, Some(CPU_SLOWDOWN)] {
        let mut ready = Vec::new();
        let mut transferred = Vec::new();
        let mut blank = Vec::new();
        let mut first = None;
        for _ in 0..samples {
            profile += 1;
            let session = cold_browser(driver, &scratch.join(format!("profile-{profile}")), cpu).await?;
            let load = widget_load(&session, &format!("{origin}/")).await;
            session.close().await;
            let (ms, fetched) = load?;
            ready.push(ms);
            transferred.push(fetched.iter().map(|f| f.transfer as f64).sum());
            first.get_or_insert(fetched);

            profile += 1;
            let session = cold_browser(driver, &scratch.join(format!("profile-{profile}")), cpu).await?;
            session.navigate(&format!("{origin}/blank")).await?;
            let load = session.until("the blank page's load", LOAD_END, Duration::from_secs(60)).await;
            session.close().await;
            blank.push(load?.as_f64().context("loadEventEnd is a number")?);
        }
        results.push(Conditions {
            fastest_ms: ready.iter().copied().fold(f64::INFINITY, f64::min),
            slowest_ms: ready.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            ready_ms: stack::median(&mut ready),
            blank_ms: stack::median(&mut blank),
            transferred: stack::median(&mut transferred),
            fetched: first.unwrap_or_default(),
        });
    }
    let cpu = results.pop().context("two sets of conditions")?;
    let network = results.pop().context("two sets of conditions")?;
    Ok([network, cpu])
}

/// A new browser with an empty profile, its cache off, a phone's screen
/// and network, the CPU slowed down `cpu` times, and the readiness probe.
async fn cold_browser(driver: &Driver, profile: &Path, cpu: Option<f64>) -> anyhow::Result<Session> {
    let session = driver.session(profile).await?;
    let setup = async {
        session.cdp("Network.enable", json!({})).await?;
        session.cdp("Network.setCacheDisabled", json!({"cacheDisabled": true})).await?;
        session
            .cdp(
                "Network.emulateNetworkConditions",
                json!({
                    "offline": false,
                    "latency": LATENCY_MS,
                    "downloadThroughput": DOWNLOAD,
                    "uploadThroughput": UPLOAD,
                }),
            )
            .await?;
        let (width, height, ratio) = SCREEN;
        session
            .cdp(
                "Emulation.setDeviceMetricsOverride",
                json!({"width": width, "height": height, "deviceScaleFactor": ratio, "mobile": true}),
            )
            .await?;
        if let Some(rate) = cpu {
            session.cdp("Emulation.setCPUThrottlingRate", json!({"rate": rate})).await?;
        }
        session.cdp("Page.addScriptToEvaluateOnNewDocument", json!({"source": chrome::ready_probe(BUTTON)})).await
    }
    .await;
    match setup {
        Ok(_) => Ok(session),
        Err(error) => {
            session.close().await;
            Err(error)
        }
    }
}

/// One load of the partner page: ms from navigation start to the usable
/// button, and the widget's resources.
async fn widget_load(session: &Session, url: &str) -> anyhow::Result<(f64, Vec<Fetched>)> {
    session.navigate(url).await?;
    let ms = session.until("the deposit button's enabling", READY, Duration::from_secs(60)).await?;
    let ms = ms.as_f64().context("window.__pkReady is a number")?;
    let entries = session.until("the widget's resources", WIDGET_RESOURCES, Duration::from_secs(60)).await?;
    let fetched = entries.as_array().context("a list of resources")?.iter().map(fetched).collect::<Option<Vec<_>>>();
    let fetched = fetched.with_context(|| format!("resource entries: {entries}"))?;
    if let Some(unreadable) = fetched.iter().find(|f| f.transfer == 0) {
        bail!(
            "{}: transferSize 0 with the cache off: the server sent no Timing-Allow-Origin for the partner page",
            unreadable.name
        );
    }
    Ok((ms, fetched))
}

fn fetched(entry: &Value) -> Option<Fetched> {
    Some(Fetched {
        name: entry["name"].as_str()?.to_owned(),
        transfer: entry["transfer"].as_u64()?,
        encoded: entry["encoded"].as_u64()?,
    })
}

/// "pientegra.js 312 B br (transfer 602 B); …": how each file came, told
/// by comparing its encoded size with the bundle's `.br`, `.gz` and plain files.
fn describe(fetched: &[Fetched], bundle: &Path) -> String {
    let size = |name: &str| std::fs::metadata(bundle.join(name)).map(|m| m.len()).ok();
    fetched
        .iter()
        .map(|f| {
            let encoding = if size(&format!("{}.br", f.name)) == Some(f.encoded) {
                "br"
            } else if size(&format!("{}.gz", f.name)) == Some(f.encoded) {
                "gzip"
            } else if size(&f.name) == Some(f.encoded) {
                "uncompressed"
            } else {
                "unknown encoding"
            };
            format!("{} {} B {encoding} ({} B with headers)", f.name, f.encoded, f.transfer)
        })
        .collect::<Vec<_>>()
        .join("; ")
}
