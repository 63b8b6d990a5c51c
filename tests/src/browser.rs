//! The browser tests' stacks: the demo page served by an in-process server,
//! driven with [`pientegra_testkit::browser`].

pub use pientegra_testkit::browser::*;
use serde_json::Value;

use crate::{Options, Stack};

/// A stack serving the built demo page, and the partner bundle it loads the widget from.
pub async fn demo_stack() -> Stack {
    Stack::with(Options { static_dir: Some(dist()), widget_dir: Some(widget_dist()), ..Options::default() }).await
}

/// The newest record of `user` in the stack's sandbox (`intents` or `withdrawals`).
pub async fn newest(stack: &Stack, list: &str, user: &str) -> Value {
    newest_at(&stack.sandbox.base_url(), list, user).await
}

/// The server's open event streams, from `/metrics`.
pub async fn sse_connections(stack: &Stack) -> usize {
    let text = stack.http.get(format!("{}/metrics", stack.server.url())).send().await.unwrap().text().await.unwrap();
    let line = text.lines().find(|l| l.starts_with("pientegra_sse_connections ")).expect("the stream gauge");
    line.rsplit(' ').next().and_then(|n| n.parse().ok()).expect("a count")
}
