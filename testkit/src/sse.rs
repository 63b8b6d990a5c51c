//! A minimal Server-Sent Events client, with the token as a bearer header or
//! a stream ticket (as the widget's `EventSource` opens it).

use std::time::Duration;

use anyhow::{Context, bail};
use futures::StreamExt;
use futures::stream::BoxStream;

/// `POST /api/stream-ticket` with the widget token: the ticket that opens the user's stream.
pub async fn stream_ticket(base: &str, token: &str) -> anyhow::Result<String> {
    let response = reqwest::Client::new()
        .post(format!("{base}/api/stream-ticket"))
        .bearer_auth(token)
        .send()
        .await
        .context("stream ticket request")?;
    if !response.status().is_success() {
        bail!("stream ticket answered {}", response.status());
    }
    let answer: pientegra_shared::api::StreamTicket = response.json().await.context("stream ticket body")?;
    Ok(answer.ticket)
}

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
    /// Connects to `GET /api/events` as the widget does: a stream ticket for
    /// the token first, then the ticket in the query (`EventSource` sends no headers).
    pub async fn connect(base: &str, token: &str, last_event_id: Option<i64>) -> anyhow::Result<SseClient> {
        let ticket = stream_ticket(base, token).await?;
        SseClient::connect_with_ticket(base, &ticket, last_event_id).await
    }

    /// Connects to `GET /api/events` with the widget token as `Authorization: Bearer`
    /// (as clients other than a browser's `EventSource` may).
    pub async fn connect_bearer(
        http: &reqwest::Client,
        base: &str,
        token: &str,
        last_event_id: Option<i64>,
    ) -> anyhow::Result<SseClient> {
        let mut request = http.get(format!("{base}/api/events")).bearer_auth(token);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        SseClient::open(request).await
    }

    /// Connects to `GET /api/events?ticket=`.
    pub async fn connect_with_ticket(
        base: &str,
        ticket: &str,
        last_event_id: Option<i64>,
    ) -> anyhow::Result<SseClient> {
        let mut request = reqwest::Client::new().get(format!("{base}/api/events")).query(&[("ticket", ticket)]);
        if let Some(id) = last_event_id {
            request = request.header("Last-Event-ID", id.to_string());
        }
        SseClient::open(request).await
    }

    async fn open(request: reqwest::RequestBuilder) -> anyhow::Result<SseClient> {
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
