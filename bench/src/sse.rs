//! Figures 2 and 3, one server run: webhook → SSE frame latency with 1 and
//! with 10,000 idle streams open, and the server's RSS growth per idle stream.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc};

use crate::report::{Row, Verdict};
use crate::stack::{self, Seeded, ServerProcess};
use crate::{Ctx, Figure};

const IDLE: usize = 10_000;
const LIVE_USER: &str = "sse-live";

pub async fn run(ctx: &Ctx) -> anyhow::Result<Figure> {
    let samples = if ctx.quick { 60 } else { 1_000 };
    let warmup = 20;
    let idle = idle_budget()?;
    let dir = tempfile::tempdir()?;
    let sandbox = stack::sandbox(50).await?;
    let db = stack::fresh_database(dir.path(), "server.db").await?;
    let seeded: Vec<Seeded> = (0..2 * (samples + warmup)).map(|_| Seeded::new(LIVE_USER, 10_000)).collect();
    stack::seed_deposits(&db, &seeded).await?;
    let server = ServerProcess::serve(&ctx.server_bin, &sandbox, &db, &dir.path().join("server.log")).await?;
    let result = measure(&server, sandbox.webhook_secret(), &seeded, samples, warmup, idle).await;
    server.stop().await;
    sandbox.shutdown().await;
    let m = result?;

    let ratio = m.loaded.p99 / m.single.p99;
    let per_conn_kib = m.rss_after.saturating_sub(m.rss_before) as f64 / m.opened as f64;
    let rows = vec![
        Row {
            id: "2".into(),
            figure: format!("webhook → SSE frame, {} idle streams open", m.opened),
            value: format!("p50 {:.2} ms, p99 {:.2} ms", m.loaded.p50, m.loaded.p99),
            baseline: format!("1 stream: p50 {:.2} ms, p99 {:.2} ms", m.single.p50, m.single.p99),
            ratio: format!("{ratio:.2}x (p99)"),
            target: "p99 ≤ 5 ms".into(),
            verdict: if m.opened == IDLE { Verdict::of(m.loaded.p99 <= 5.0) } else { Verdict::NotMeasured },
        },
        Row {
            id: "3".into(),
            figure: "server memory per idle SSE stream".into(),
            value: format!(
                "{per_conn_kib:.1} KiB (RSS {:.1} → {:.1} MiB over {} streams)",
                m.rss_before as f64 / 1024.0,
                m.rss_after as f64 / 1024.0,
                m.opened
            ),
            baseline: format!("RSS with 0 idle streams: {:.1} MiB", m.rss_before as f64 / 1024.0),
            ratio: "-".into(),
            target: "≤ 8 KiB".into(),
            verdict: if m.opened == IDLE { Verdict::of(per_conn_kib <= 8.0) } else { Verdict::NotMeasured },
        },
    ];
    Ok(Figure {
        rows,
        notes: vec![
            format!(
                "#2: `pientegra-server serve` (release, separate process). One stream for user `{LIVE_USER}` is read by a \
                 raw HTTP/1.1 client; each sample POSTs a signed `intent.approved` crediting one of the user's seeded \
                 deposits and times from just before the POST to the arrival of its `deposit.updated` frame. {warmup} \
                 warm-up webhooks, then {samples} sequential samples with only that stream open (baseline), then the \
                 same with {} idle streams of {} other users open (one each: idle streams are woken by nothing). \
                 Opening the idle streams took {:.1} s.",
                m.opened, m.opened, m.open_secs
            ),
            format!(
                "#3: VmRSS of the server process from /proc/<pid>/status with the one live stream open (\"0 idle\"), then \
                 2 s after the {} idle streams (each a TCP connection that received its opening balance frame) were open; \
                 per stream = delta / {}. This includes the per-user hub entry and the socket's user-space buffers, not \
                 kernel socket memory.",
                m.opened, m.opened
            ),
        ],
    })
}

struct Measured {
    single: stack::Stats,
    loaded: stack::Stats,
    rss_before: u64,
    rss_after: u64,
    opened: usize,
    open_secs: f64,
}

async fn measure(
    server: &ServerProcess,
    secret: &str,
    seeded: &[Seeded],
    samples: usize,
    warmup: usize,
    idle: usize,
) -> anyhow::Result<Measured> {
    let host = server.url.trim_start_matches("http://").to_owned();
    let http = reqwest::Client::new();
    let (frames_tx, mut frames) = mpsc::unbounded_channel();
    let mut live = open_stream(&host, &stack::stream_ticket(LIVE_USER)?).await?;
    let reader = tokio::spawn(async move {
        let mut line = String::new();
        loop {
            line.clear();
            if live.read_line(&mut line).await.unwrap_or(0) == 0 {
                break;
            }
            if line.trim_end() == "event: deposit.updated" && frames_tx.send(Instant::now()).is_err() {
                break;
            }
        }
    });
    let mut deposits = seeded.iter();
    let mut sample = |n: usize| {
        let batch: Vec<Seeded> = deposits.by_ref().take(n).cloned().collect();
        batch
    };

    let warm = sample(warmup);
    timed(&http, &server.url, secret, &warm, &mut frames).await?;
    let first = sample(samples);
    let mut single = timed(&http, &server.url, secret, &first, &mut frames).await?;

    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = server.rss_kib()?;
    let opened_at = Instant::now();
    let idle_streams = open_idle(&host, idle).await?;
    let open_secs = opened_at.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_after = server.rss_kib()?;

    let warm = sample(warmup);
    timed(&http, &server.url, secret, &warm, &mut frames).await?;
    let second = sample(samples);
    let mut loaded = timed(&http, &server.url, secret, &second, &mut frames).await?;
    let opened = idle_streams.len();
    drop(idle_streams);
    reader.abort();
    Ok(Measured {
        single: stack::stats(&mut single),
        loaded: stack::stats(&mut loaded),
        rss_before,
        rss_after,
        opened,
        open_secs,
    })
}

/// Sends one webhook per deposit, one at a time; each sample is the time to its frame.
pub(crate) async fn timed(
    http: &reqwest::Client,
    server: &str,
    secret: &str,
    deposits: &[Seeded],
    frames: &mut mpsc::UnboundedReceiver<Instant>,
) -> anyhow::Result<Vec<Duration>> {
    let mut out = Vec::with_capacity(deposits.len());
    for d in deposits {
        while frames.try_recv().is_ok() {}
        let body = stack::approved_body(d);
        let sent = Instant::now();
        let outcome = stack::post_webhook(http, server, secret, body).await?;
        if outcome != "applied" {
            bail!("webhook outcome {outcome}, expected applied");
        }
        let got = tokio::time::timeout(Duration::from_secs(10), frames.recv())
            .await
            .context("no deposit.updated frame within 10 s")?
            .context("the live stream ended")?;
        out.push(got.saturating_duration_since(sent));
    }
    Ok(out)
}

/// Opens `/api/events` by hand and reads up to the end of the response headers.
pub(crate) async fn open_stream(host: &str, ticket: &str) -> anyhow::Result<BufReader<TcpStream>> {
    let mut tcp = TcpStream::connect(host).await?;
    tcp.set_nodelay(true)?;
    let request = format!(
        "GET /api/events?ticket={ticket} HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
    );
    tcp.write_all(request.as_bytes()).await?;
    let mut reader = BufReader::new(tcp);
    let (mut status, mut line) = (String::new(), String::new());
    stack::read_head(&mut reader, &mut status, &mut line).await.context("opening SSE")?;
    if !status.starts_with("HTTP/1.1 200") {
        bail!("SSE answered {}", status.trim_end());
    }
    Ok(reader)
}

/// Opens `count` streams, one per user, each read up to its opening balance frame.
pub(crate) async fn open_idle(host: &str, count: usize) -> anyhow::Result<Vec<BufReader<TcpStream>>> {
    let gate = Arc::new(Semaphore::new(64));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..count {
        let (gate, host) = (gate.clone(), host.to_owned());
        tasks.spawn(async move {
            let _permit = gate.acquire_owned().await?;
            let mut stream = open_stream(&host, &stack::stream_ticket(&format!("idle-{i}"))?).await?;
            let mut line = String::new();
            let opened = tokio::time::timeout(Duration::from_secs(30), async {
                loop {
                    line.clear();
                    if stream.read_line(&mut line).await? == 0 {
                        bail!("idle stream closed");
                    }
                    if line.starts_with("data:") {
                        return anyhow::Ok(());
                    }
                }
            })
            .await;
            opened.context("idle stream: no opening frame within 30 s")??;
            anyhow::Ok(stream)
        });
    }
    let mut streams = Vec::with_capacity(count);
    while let Some(done) = tasks.join_next().await {
        streams.push(done.context("opening task")??);
    }
    Ok(streams)
}

/// How many idle streams the descriptor limit allows (both ends are limited
/// by the soft RLIMIT_NOFILE the bench and its server child share).
fn idle_budget() -> anyhow::Result<usize> {
    let soft = crate::stack::soft_open_file_limit();
    if soft < IDLE + 500 {
        eprintln!(
            "bench: the soft open-file limit is {soft}; figure 2/3 need {}: run through `cargo xtask bench` \
             (it raises the limit) or `ulimit -n 20000` first. Using {} streams.",
            IDLE + 500,
            soft.saturating_sub(500)
        );
        return Ok(soft.saturating_sub(500));
    }
    Ok(IDLE)
}
