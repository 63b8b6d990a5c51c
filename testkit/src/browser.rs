//! A real headless Chromium driven over WebDriver (chromedriver), and what
//! the browser tests of the demo page share: where the built page and the
//! partner bundle are, waiting on the page's state, a popup deposit.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use fantoccini::wd::WindowHandle;
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};
use tokio::process::{Child, Command};

/// Where the built widget is (`cargo xtask test` builds it and sets `PIENTEGRA_DIST`).
pub fn dist() -> PathBuf {
    std::env::var("PIENTEGRA_DIST")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist"))
}

/// Where screenshots go.
pub fn output_dir() -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../test-output/browser");
    std::fs::create_dir_all(&dir).expect("test output folder");
    dir
}

/// Whether the browser tests can run here; with `CI=true` a missing piece fails instead.
pub fn available() -> bool {
    let missing: Vec<&str> = [
        (!dist().join("index.html").exists()).then_some("the built demo page (cargo xtask widget)"),
        (!widget_dist().join("pientegra.js").exists()).then_some("the partner bundle (cargo xtask widget)"),
        (!std::path::Path::new("/usr/bin/chromium").exists()).then_some("/usr/bin/chromium"),
        (which("chromedriver").is_none()).then_some("chromedriver"),
    ]
    .into_iter()
    .flatten()
    .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(std::env::var("CI").is_err(), "CI=true but browser tests cannot run: missing {missing:?}");
    eprintln!("skipped: browser tests need {missing:?} (apt-get install chromium chromium-driver; cargo xtask test)");
    false
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| PathBuf::from(d).join(program)).find(|p| p.exists())
}

/// Starts chromedriver (from `PATH`) on `port`, quiet; it stops when the handle is dropped.
pub fn chromedriver(port: u16) -> anyhow::Result<Child> {
    Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .context("starting chromedriver")
}

/// A chromedriver process and one browser session.
pub struct Browser {
    pub client: Client,
    driver: Child,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromedriver and a headless Chromium with a fresh profile.
    pub async fn start() -> anyhow::Result<Browser> {
        // Several rustls providers are compiled in; pick one (a second call is a no-op error).
        let _ = rustls::crypto::ring::default_provider().install_default();
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let driver = chromedriver(port)?;
        let profile = tempfile::tempdir()?;
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            json!({
                "binary": "/usr/bin/chromium",
                "args": [
                    "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    "--no-first-run", "--window-size=1200,1400",
                    format!("--user-data-dir={}", profile.path().display()),
                ],
            }),
        );
        // A page that cannot load (every connection to its origin taken) fails
        // its test in half a minute rather than chromedriver's five.
        caps.insert("timeouts".into(), json!({ "pageLoad": 30_000 }));
        let url = format!("http://127.0.0.1:{port}");
        let mut last_err = None;
        for _ in 0..100 {
            match ClientBuilder::rustls()?.capabilities(caps.clone()).connect(&url).await {
                Ok(client) => return Ok(Browser { client, driver, _profile: profile }),
                Err(err) => last_err = Some(err),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        bail!("chromedriver did not start: {last_err:?}")
    }

    /// Waits for an element matching `css`.
    pub async fn find(&self, css: &str) -> anyhow::Result<fantoccini::elements::Element> {
        self.client
            .wait()
            .at_most(Duration::from_secs(15))
            .for_element(Locator::Css(css))
            .await
            .with_context(|| format!("no element {css}"))
    }

    /// Waits until `script` (a JS expression) is truthy.
    pub async fn until(&self, what: &str, script: &str) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        loop {
            let value = self.client.execute(&format!("return !!({script});"), vec![]).await?;
            if value.as_bool() == Some(true) {
                return Ok(());
            }
            if tokio::time::Instant::now() > deadline {
                let _ = self.screenshot(&format!("timeout-{}", what.replace(' ', "-"))).await;
                bail!("timed out waiting for {what} ({script})");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The `data-testid` element's attribute.
    pub async fn attr(&self, testid: &str, name: &str) -> anyhow::Result<Option<String>> {
        Ok(self.find(&format!("[data-testid={testid}]")).await?.attr(name).await?)
    }

    /// The `data-testid` element's text.
    pub async fn text(&self, testid: &str) -> anyhow::Result<String> {
        Ok(self.find(&format!("[data-testid={testid}]")).await?.text().await?)
    }

    /// Saves a screenshot under the test output folder.
    pub async fn screenshot(&self, name: &str) -> anyhow::Result<PathBuf> {
        let png = self.client.screenshot().await?;
        let path = output_dir().join(format!("{name}.png"));
        std::fs::write(&path, png)?;
        Ok(path)
    }

    /// Ends the session and chromedriver.
    pub async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill().await;
    }
}

/// A JS condition: the demo's deposit button is there and enabled.
pub const BUTTON_READY: &str = "document.querySelector('[data-testid=deposit-submit]') && !document.querySelector('[data-testid=deposit-submit]').disabled";

/// A JS condition: the widget's stream is live.
pub const LINK_LIVE: &str = "document.querySelector('[data-testid=link-state]')?.dataset.state === 'live'";

/// A JS condition: the event log shows a deposit approved (in Turkish).
pub const APPROVAL_LOGGED: &str = "Array.from(document.querySelectorAll('[data-testid=event-item][data-event=\"deposit.updated\"]'))\
                                   .some(e => e.textContent.includes('Onaylandı'))";

/// A JS condition: the `data-testid` element's `data-status` is `status`.
pub fn status_is(testid: &str, status: &str) -> String {
    format!("(document.querySelector('[data-testid={testid}]') || {{}}).dataset?.status === '{status}'")
}

/// A JS condition: the `data-testid` element's text contains `text`.
pub fn text_contains(testid: &str, text: &str) -> String {
    format!("(document.querySelector('[data-testid={testid}]') || {{}}).textContent?.includes('{text}')")
}

/// The newest record of `user` at the sandbox whose control API is at
/// `sandbox` (`intents` or `withdrawals`).
pub async fn newest_at(sandbox: &str, list: &str, user: &str) -> Value {
    let http = reqwest::Client::new();
    for _ in 0..200 {
        let state = crate::sandbox_state(&http, sandbox).await;
        if let Some(found) = state[list].as_array().unwrap().iter().find(|r| r["externalUserId"] == user) {
            return found.clone();
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no {list} for {user} at the sandbox")
}

/// Replaces the text of the `data-testid` field.
pub async fn type_into(browser: &Browser, testid: &str, text: &str) {
    let field = browser.find(&format!("[data-testid={testid}]")).await.unwrap();
    field.clear().await.unwrap();
    field.send_keys(text).await.unwrap();
}

/// Clicks deposit, follows the popup to the hosted page, checks it and confirms.
pub async fn deposit_through_popup(browser: &Browser, amount_typed: &str, amount_shown: &str) {
    let main = browser.client.window().await.unwrap();
    type_into(browser, "deposit-amount", amount_typed).await;
    let before = browser.client.windows().await.unwrap();
    browser.find("[data-testid=deposit-submit]").await.unwrap().click().await.unwrap();
    let popup = browser.new_window_since(&before).await;
    browser.client.switch_to_window(popup).await.unwrap();
    browser
        .until("the hosted page", "location.pathname.startsWith('/d/') && document.getElementById('confirm')")
        .await
        .unwrap();
    // The opener was cut before navigation.
    let opener = browser.client.execute("return window.opener === null;", vec![]).await.unwrap();
    assert_eq!(opener, json!(true));
    let shown = browser.client.find(Locator::Css("#amount")).await.unwrap().text().await.unwrap();
    assert!(shown.contains(amount_shown), "hosted page shows {shown}");
    let reference = browser.client.find(Locator::Css("#reference")).await.unwrap().text().await.unwrap();
    assert!(!reference.trim().is_empty());
    browser.screenshot("popup-hosted-page").await.unwrap();
    browser.client.find(Locator::Css("#confirm")).await.unwrap().click().await.unwrap();
    browser
        .until("submitted state", "document.getElementById('state')?.dataset.status === 'PENDING_REVIEW'")
        .await
        .unwrap();
    browser.client.close_window().await.unwrap();
    browser.client.switch_to_window(main).await.unwrap();
}

/// Where the partner bundle is (`cargo xtask test` builds it and sets `PIENTEGRA_WIDGET_DIST`).
pub fn widget_dist() -> PathBuf {
    std::env::var("PIENTEGRA_WIDGET_DIST")
        .map(PathBuf::from)
        .unwrap_or_else(|_| std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../dist-widget"))
}

impl Browser {
    /// Waits for a window that is not among `before` (a popup just opened).
    pub async fn new_window_since(&self, before: &[WindowHandle]) -> WindowHandle {
        for _ in 0..200 {
            let windows = self.client.windows().await.unwrap();
            if let Some(new) = windows.into_iter().find(|w| !before.contains(w)) {
                return new;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("no new window opened")
    }

    /// Opens `url` in this window and in `count - 1` new tabs, one after the
    /// other, each waited for until `ready` (a JS expression) holds; ends in
    /// the last tab. The tabs' handles, in order.
    pub async fn open_tabs(&self, url: &str, count: usize, ready: &str) -> Vec<WindowHandle> {
        let mut tabs = Vec::with_capacity(count);
        for n in 1..=count {
            let tab = match n {
                1 => self.client.window().await.unwrap(),
                _ => self.client.new_window(true).await.unwrap().handle,
            };
            self.client.switch_to_window(tab.clone()).await.unwrap();
            self.client.goto(url).await.unwrap_or_else(|e| panic!("tab {n} did not load: {e}"));
            self.until(&format!("tab {n} ready"), ready).await.unwrap();
            tabs.push(tab);
        }
        tabs
    }

    /// The text of the element matching `css`.
    pub async fn text_of(&self, css: &str) -> String {
        self.find(css).await.expect("element").text().await.expect("text")
    }
}
