//! Headless Chromium through chromedriver's WebDriver API, and the DevTools
//! protocol through chromedriver's `goog/cdp/execute`: what figures 7 and 9
//! drive. Plain HTTP with reqwest: the few commands needed are one call each.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::stack;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// The flags of every browser the bench starts (its profile comes on top).
pub const FLAGS: &str = "--headless --no-sandbox --disable-gpu --disable-background-networking \
                         --disable-component-update --disable-sync --no-first-run";

/// A chromedriver process on a loopback port.
pub struct Driver {
    child: tokio::process::Child,
    url: String,
    http: reqwest::Client,
}

impl Driver {
    /// Starts chromedriver and waits until it answers.
    pub async fn start() -> anyhow::Result<Driver> {
        for tool in [CHROMIUM, CHROMEDRIVER] {
            if !Path::new(tool).exists() {
                bail!("{tool} is missing (Debian: apt-get install chromium chromium-driver)");
            }
        }
        let port = stack::free_port()?;
        let child = pientegra_testkit::browser::chromedriver(port)?;
        let driver = Driver { child, url: format!("http://127.0.0.1:{port}"), http: reqwest::Client::new() };
        wait_ok(&driver.http, &format!("{}/status", driver.url)).await.context("chromedriver")?;
        Ok(driver)
    }

    /// A new browser, its profile (and so its HTTP cache) in `profile`.
    pub async fn session(&self, profile: &Path) -> anyhow::Result<Session> {
        let mut args: Vec<String> = FLAGS.split_whitespace().map(str::to_owned).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let answer: Value = self
            .http
            .post(format!("{}/session", self.url))
            .json(&json!({"capabilities": {"alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": {"binary": CHROMIUM, "args": args}
            }}}))
            .send()
            .await?
            .json()
            .await?;
        let id = answer["value"]["sessionId"].as_str().with_context(|| format!("no WebDriver session: {answer}"))?;
        Ok(Session { http: self.http.clone(), url: format!("{}/session/{id}", self.url) })
    }

    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
    }
}

/// One browser of a [`Driver`].
pub struct Session {
    http: reqwest::Client,
    url: String,
}

impl Session {
    /// A DevTools protocol command on the page.
    pub async fn cdp(&self, cmd: &str, params: Value) -> anyhow::Result<Value> {
        let answer: Value = self
            .http
            .post(format!("{}/goog/cdp/execute", self.url))
            .json(&json!({"cmd": cmd, "params": params}))
            .send()
            .await?
            .json()
            .await?;
        if answer["value"].get("error").is_some() {
            bail!("{cmd}: {answer}");
        }
        Ok(answer["value"].clone())
    }

    /// Goes to `url` and waits for its load event (WebDriver's default page load strategy).
    pub async fn navigate(&self, url: &str) -> anyhow::Result<()> {
        let answer: Value =
            self.http.post(format!("{}/url", self.url)).json(&json!({"url": url})).send().await?.json().await?;
        if answer["value"].get("error").is_some() {
            bail!("navigating to {url}: {answer}");
        }
        Ok(())
    }

    /// Runs `source` (a function body) in the page and returns its value.
    pub async fn script(&self, source: &str) -> anyhow::Result<Value> {
        let answer: Value = self
            .http
            .post(format!("{}/execute/sync", self.url))
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

    /// Runs `source` every 20 ms until it returns something other than
    /// null, and returns that; fails after `within`, naming `what`.
    pub async fn until(&self, what: &str, source: &str, within: Duration) -> anyhow::Result<Value> {
        let deadline = Instant::now() + within;
        loop {
            let value = self.script(source).await?;
            if !value.is_null() {
                return Ok(value);
            }
            if Instant::now() > deadline {
                bail!("{what} did not happen within {} s", within.as_secs());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Closes the browser.
    pub async fn close(self) {
        let _ = self.http.delete(&self.url).send().await;
    }
}

/// A script for `Page.addScriptToEvaluateOnNewDocument`: records in
/// `window.__pkReady` the `performance.now()` (ms since navigation start) at
/// which a MutationObserver first sees an element matching `button` present
/// and enabled.
pub fn ready_probe(button: &str) -> String {
    format!(
        r#"(() => {{
  const ready = () => {{
    const b = document.querySelector({button:?});
    return b && !b.disabled && b.getAttribute('aria-disabled') !== 'true';
  }};
  const observer = new MutationObserver(() => {{
    if (window.__pkReady === undefined && ready()) {{
      window.__pkReady = performance.now();
      observer.disconnect();
    }}
  }});
  observer.observe(document, {{ subtree: true, childList: true, attributes: true }});
}})();"#
    )
}

/// Waits until `url` answers 2xx (asked every 100 ms, for up to 30 s).
pub async fn wait_ok(http: &reqwest::Client, url: &str) -> anyhow::Result<()> {
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

/// A loopback HTTP server of fixed HTML pages, each at its path (anything
/// else is a 404); one request per connection.
pub struct Pages {
    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub origin: String,
    task: tokio::task::JoinHandle<()>,
}

impl Pages {
    /// Serves `pages` (path, HTML) from `listener`.
    pub fn serve(listener: tokio::net::TcpListener, pages: Vec<(&'static str, String)>) -> anyhow::Result<Pages> {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};

        let origin = format!("http://{}", listener.local_addr()?);
        let pages = std::sync::Arc::new(pages);
        let task = tokio::spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let pages = pages.clone();
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let Ok(n) = tcp.read(&mut buf).await else { return };
                    // "GET /path HTTP/1.1": a browser's request line fits the first read.
                    let head = String::from_utf8_lossy(&buf[..n]);
                    let path = head.split_whitespace().nth(1).unwrap_or_default();
                    let response = match pages.iter().find(|(p, _)| *p == path) {
                        Some((_, body)) => format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\nContent-Length: {}\r\n\
                             Connection: close\r\n\r\n{body}",
                            body.len()
                        ),
                        None => "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_owned(),
                    };
                    let _ = tcp.write_all(response.as_bytes()).await;
                    let _ = tcp.shutdown().await;
                });
            }
        });
        Ok(Pages { origin, task })
    }

    /// Serves `pages` on a free loopback port.
    pub async fn start(pages: Vec<(&'static str, String)>) -> anyhow::Result<Pages> {
        Pages::serve(tokio::net::TcpListener::bind("127.0.0.1:0").await?, pages)
    }
}

impl Drop for Pages {
    fn drop(&mut self) {
        self.task.abort();
    }
}
