//! A minimal Server-Sent Events client for tests.

use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use futures::stream::BoxStream;

/// One received event.
#[derive(Clone, Debug, PartialEq)]
pub struct Received {
    pub id: Option<String>,
    pub event: String,
    pub data: String,
}

impl Received {
    /// The data as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or(serde_json::Value::Null)
    }

    /// The id as a number.
    pub fn seq(&self) -> Option<i64> {
        self.id.as_deref()?.parse().ok()
    }
}

/// An open stream.
pub struct SseClient {
    body: BoxStream<'static, reqwest::Result<Vec<u8>>>,
    buffer: String,
    /// Every event received so far.
    pub seen: Vec<Received>,
}

impl SseClient {
    /// Connects to `GET /api/events` with the token in the query (as `EventSource` does).
    pub async fn connect(base: &str, token: &str, last_event_id: Option<i64>) -> anyhow::Result<SseClient> {
        let mut request = reqwest::Client::new().get(format!("{base}/api/events")).query(&[("token", token)]);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        let response = request.send().await.context("SSE request")?;
        if !response.status().is_success() {
            bail!("SSE answered {}", response.status());
        }
        let body = response.bytes_stream().map(|chunk| chunk.map(|b| b.to_vec())).boxed();
        Ok(SseClient { body, buffer: String::new(), seen: vec![] })
    }

    /// The next event (comments and keep-alives skipped), or an error after `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> anyhow::Result<Received> {
        tokio::time::timeout(timeout, self.next_event()).await.context("no SSE event in time")?
    }

    async fn next_event(&mut self) -> anyhow::Result<Received> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut event = Received { id: None, event: "message".into(), data: String::new() };
                let mut has_data = false;
                for line in block.lines() {
                    if let Some(v) = line.strip_prefix("id:") {
                        event.id = Some(v.trim().to_owned());
                    } else if let Some(v) = line.strip_prefix("event:") {
                        event.event = v.trim().to_owned();
                    } else if let Some(v) = line.strip_prefix("data:") {
                        if has_data {
                            event.data.push('\n');
                        }
                        event.data.push_str(v.strip_prefix(' ').unwrap_or(v));
                        has_data = true;
                    }
                }
                if has_data {
                    self.seen.push(event.clone());
                    return Ok(event);
                }
                continue;
            }
            match self.body.next().await {
                Some(chunk) => self.buffer.push_str(&String::from_utf8_lossy(&chunk.context("SSE body")?)),
                None => bail!("the SSE stream ended"),
            }
        }
    }

    /// Reads events until one matches, returning it.
    pub async fn until<F: Fn(&Received) -> bool>(&mut self, timeout: Duration, matches: F) -> anyhow::Result<Received> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let event = self.next(left).await?;
            if matches(&event) {
                return Ok(event);
            }
        }
    }
}
