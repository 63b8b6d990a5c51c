//! Figure 8: the server under a slow-head attack. 5,000 connections each send
//! part of a request head and then nothing; meanwhile `/healthz` is asked
//! again and again, each time on a new connection (as a load balancer's
//! health check does). Two attacks: heads of 100 KiB (more than the server
//! reads: it must refuse them, not buffer them), and heads of 7 KiB (under
//! `MAX_REQUEST_HEAD`: held until `HEADER_READ_TIMEOUT`, the costlier case).
//! The baseline is the same server idle, in the same run.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::report::{Row, Verdict};
use crate::stack::{self, ServerProcess};
use crate::{Ctx, Figure};

const ATTACKERS: usize = 5_000;
/// The server's defaults, which the figure runs with.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_REQUEST_HEAD_KIB: usize = 8;
/// What a connection holding a head may cost: hyper's read buffer
/// (`MAX_REQUEST_HEAD`, 8 KiB), the 8 KiB write buffer hyper allocates for
/// every connection, and about 3 KiB of task and connection state (the
/// event-stream path needs less: no write buffer). Before the server had
/// limits, 100 KB heads cost 150 KiB a connection.
const RSS_PER_CONNECTION_KIB: f64 = 20.0;
/// A health check must not notice the attack: a p99 under 5 ms is what the
/// idle server's probes take on this machine many times over, and far inside
/// the 1 s a Kubernetes probe waits by default.
const HEALTHZ_P99_MS: f64 = 5.0;

pub async fn run(ctx: &Ctx) -> anyhow::Result<Figure> {
    let baseline_for = if ctx.quick { Duration::from_secs(1) } else { Duration::from_secs(5) };
    budget()?;
    let dir = tempfile::tempdir()?;
    let sandbox = stack::sandbox(10).await?;
    let db = stack::fresh_database(dir.path(), "server.db").await?;
    let server = ServerProcess::serve(&ctx.server_bin, &sandbox, &db, &dir.path().join("server.log")).await?;
    let result = measure(&server, baseline_for).await;
    server.stop().await;
    sandbox.shutdown().await;
    let m = result?;

    let mut idle = m.idle_healthz.clone();
    let idle_stats = stack::stats(&mut idle);
    let baseline = format!(
        "idle server: RSS {:.1} MiB; /healthz p50 {:.2} ms, p99 {:.2} ms ({} probes)",
        m.idle_rss_kib as f64 / 1024.0,
        idle_stats.p50,
        idle_stats.p99,
        m.idle_healthz.len()
    );
    let mut rows = Vec::new();
    for attack in &m.attacks {
        let growth_kib = attack.rss_peak_kib.saturating_sub(m.idle_rss_kib);
        let per_connection = growth_kib as f64 / ATTACKERS as f64;
        let slowest_close = attack.closed_after.iter().max().copied().unwrap_or_default();
        let memory = format!(
            "RSS {:.1} MiB (+{:.1} MiB, {per_connection:.1} KiB a connection)",
            attack.rss_peak_kib as f64 / 1024.0,
            growth_kib as f64 / 1024.0
        );
        let closing = format!(
            "{} held at once at most; every one closed by the server, the last {:.2} s after its head",
            attack.held_peak,
            slowest_close.as_secs_f64()
        );
        let mut all = attack.probes(|_| true);
        let whole = stack::stats(&mut all);
        let whole = format!(
            "/healthz over the whole attack: p50 {:.2} ms, p99 {:.2} ms, max {:.1} ms ({} probes, {} failed)",
            whole.p50,
            whole.p99,
            all.last().map_or(0.0, |d| d.as_secs_f64() * 1e3),
            all.len(),
            attack.failed_probes
        );
        let memory_met = per_connection <= RSS_PER_CONNECTION_KIB && attack.failed_probes == 0;
        match attack.hold {
            Some((from, to)) => {
                let mut held = attack.probes(|started| started >= from && started < to);
                let h = stack::stats(&mut held);
                rows.push(Row {
                    id: "8".into(),
                    figure: format!("slow-head attack: {ATTACKERS} connections hold unfinished {} heads", attack.name),
                    value: format!(
                        "{memory}; /healthz while all are held ({:.1} s): p50 {:.2} ms, p99 {:.2} ms ({} probes); \
                         {closing}; {whole}",
                        (to - from).as_secs_f64(),
                        h.p50,
                        h.p99,
                        held.len()
                    ),
                    baseline: baseline.clone(),
                    ratio: format!("{:.2}x (p99)", h.p99 / idle_stats.p99),
                    target: format!(
                        "RSS ≤ {RSS_PER_CONNECTION_KIB:.0} KiB a connection; /healthz p99 ≤ {HEALTHZ_P99_MS:.0} ms \
                         while held, none failed"
                    ),
                    verdict: Verdict::of(memory_met && !held.is_empty() && h.p99 <= HEALTHZ_P99_MS),
                });
            }
            None => rows.push(Row {
                id: "8".into(),
                figure: format!(
                    "slow-head attack: {ATTACKERS} connections send {} heads (refused: more than MAX_REQUEST_HEAD)",
                    attack.name
                ),
                value: format!("{memory}; {closing}; {whole}"),
                baseline: baseline.clone(),
                ratio: "-".into(),
                target: format!("RSS ≤ {RSS_PER_CONNECTION_KIB:.0} KiB a connection, no /healthz failed"),
                verdict: Verdict::of(memory_met),
            }),
        }
    }
    let notes = vec![format!(
        "#8: `pientegra-server serve` (release, separate process, its default limits: HEADER_READ_TIMEOUT 10 s, \
         MAX_REQUEST_HEAD {MAX_REQUEST_HEAD_KIB} KiB, MAX_CONNECTIONS 16384, listen backlog 4096). `/healthz` probe: \
         `GET /healthz` on a new connection (`Connection: close`, as a load balancer's health check), timed from \
         connect to the end of the answer. Baseline: VmRSS, and probes as during the attacks for {} s, on the idle \
         server. Each attack: {ATTACKERS} connections opened at once, each sending `GET /healthz HTTP/1.1` (one in ten `GET \
         /api/events?ticket=x HTTP/1.1`, the event-stream path) and one header of the given size without the blank \
         line that ends a head, then reading until the server closes the connection. Meanwhile a probe starts \
         every {} ms whether or not the previous one has answered (so a slow answer does not hide the ones behind \
         it), and VmRSS is read every 10 ms; the peak is reported, and RSS a connection = (peak − idle) / \
         {ATTACKERS}. \"While all are held\": probes started after the last head was sent and before the server \
         closed the first connection. The whole attack includes opening the {ATTACKERS} connections at once, \
         whose handshakes can overflow the listen backlog on 2 CPUs (a dropped handshake is retried by the \
         client's kernel after 1 s). A server without these limits grew from 23 to 249 MB (150 KiB a \
         connection) under 100 KiB heads; 7 KiB heads fit under MAX_REQUEST_HEAD, so the server holds \
         them until HEADER_READ_TIMEOUT.",
        baseline_for.as_secs(),
        PROBE_EVERY.as_millis()
    )];
    Ok(Figure { rows, notes })
}

/// How often a `/healthz` probe starts during an attack.
const PROBE_EVERY: Duration = Duration::from_millis(2);

struct Measured {
    idle_rss_kib: u64,
    idle_healthz: Vec<Duration>,
    attacks: Vec<AttackOutcome>,
}

struct AttackOutcome {
    name: &'static str,
    rss_peak_kib: u64,
    /// Each probe's start and, if it answered, how long it took.
    probes: Vec<(Instant, Option<Duration>)>,
    failed_probes: usize,
    held_peak: usize,
    /// From the last head sent to the first connection closed, when in that order.
    hold: Option<(Instant, Instant)>,
    /// For each connection, from its head sent to the server closing it.
    closed_after: Vec<Duration>,
}

impl AttackOutcome {
    /// The answered probes that started when `when` says.
    fn probes(&self, when: impl Fn(Instant) -> bool) -> Vec<Duration> {
        self.probes.iter().filter(|(started, _)| when(*started)).filter_map(|(_, took)| *took).collect()
    }
}

async fn measure(server: &ServerProcess, baseline_for: Duration) -> anyhow::Result<Measured> {
    let addr = server.url.trim_start_matches("http://").to_owned();
    // Warm-up: the first requests pay for lazy set-up.
    for _ in 0..50 {
        healthz(&addr).await?;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_rss_kib = server.rss_kib()?;
    let stop = Arc::new(AtomicBool::new(false));
    let prober = probe_until(&addr, stop.clone());
    tokio::time::sleep(baseline_for).await;
    stop.store(true, Ordering::Relaxed);
    let mut idle_healthz = Vec::new();
    for (_, took) in prober.await.context("prober task")? {
        idle_healthz.push(took.context("/healthz failed on the idle server")?);
    }
    let mut attacks = Vec::new();
    for (name, pad) in [("100 KiB", 100 * 1024), ("7 KiB", 7 * 1024)] {
        attacks.push(attack(server, &addr, name, pad).await?);
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    Ok(Measured { idle_rss_kib, idle_healthz, attacks })
}

/// When each attacker sent its head and when the server closed it.
#[derive(Default)]
struct Timeline {
    held: AtomicUsize,
    last_sent: Mutex<Option<Instant>>,
    first_closed: Mutex<Option<Instant>>,
}

async fn attack(server: &ServerProcess, addr: &str, name: &'static str, pad: usize) -> anyhow::Result<AttackOutcome> {
    let padding = "a".repeat(pad);
    let stream_head: Arc<[u8]> =
        format!("GET /api/events?ticket=x HTTP/1.1\r\nHost: bench\r\nX-Pad: {padding}").into_bytes().into();
    let hyper_head: Arc<[u8]> = format!("GET /healthz HTTP/1.1\r\nHost: bench\r\nX-Pad: {padding}").into_bytes().into();
    let timeline = Arc::new(Timeline::default());
    let stop = Arc::new(AtomicBool::new(false));
    let prober = probe_until(addr, stop.clone());
    let mut attackers = tokio::task::JoinSet::new();
    for i in 0..ATTACKERS {
        let head = if i % 10 == 0 { stream_head.clone() } else { hyper_head.clone() };
        let (addr, timeline) = (addr.to_owned(), timeline.clone());
        attackers.spawn(async move { hold(&addr, &head, &timeline).await });
    }
    let (mut rss_peak_kib, mut held_peak) = (0, 0);
    let mut closed_after = Vec::with_capacity(ATTACKERS);
    let deadline = Instant::now() + HEADER_READ_TIMEOUT + Duration::from_secs(30);
    while !attackers.is_empty() {
        rss_peak_kib = rss_peak_kib.max(server.rss_kib()?);
        held_peak = held_peak.max(timeline.held.load(Ordering::Relaxed));
        while let Some(done) = attackers.try_join_next() {
            closed_after.push(done.context("attacker task")??);
        }
        if Instant::now() > deadline {
            bail!("{} connections were still open 30 s after the header timeout", attackers.len());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let probes = prober.await.context("prober task")?;
    let failed_probes = probes.iter().filter(|(_, took)| took.is_none()).count();
    let last_sent = *timeline.last_sent.lock().expect("timeline");
    let first_closed = *timeline.first_closed.lock().expect("timeline");
    let hold = last_sent.zip(first_closed).filter(|(sent, closed)| sent < closed);
    Ok(AttackOutcome { name, rss_peak_kib, probes, failed_probes, held_peak, hold, closed_after })
}

/// Starts a `/healthz` probe every `PROBE_EVERY` until `stop`, whether or not
/// the previous one answered; each probe's start and time, if it answered.
fn probe_until(addr: &str, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<Vec<(Instant, Option<Duration>)>> {
    let addr = addr.to_owned();
    tokio::spawn(async move {
        let mut ticks = tokio::time::interval(PROBE_EVERY);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut probes = tokio::task::JoinSet::new();
        while !stop.load(Ordering::Relaxed) {
            ticks.tick().await;
            let addr = addr.clone();
            probes.spawn(async move { (Instant::now(), healthz(&addr).await.ok()) });
        }
        probes.join_all().await
    })
}

/// Sends `head` and waits for the server to close the connection; how long
/// after the head was sent. A reset counts as closed.
async fn hold(addr: &str, head: &[u8], timeline: &Timeline) -> anyhow::Result<Duration> {
    let mut tcp = TcpStream::connect(addr).await.context("connecting")?;
    // A head larger than the server reads may meet a reset before it is all written.
    let _ = tcp.write_all(head).await;
    let sent = Instant::now();
    timeline.held.fetch_add(1, Ordering::Relaxed);
    {
        let mut last_sent = timeline.last_sent.lock().expect("timeline");
        *last_sent = Some(last_sent.map_or(sent, |last| last.max(sent)));
    }
    let mut buf = [0u8; 1024];
    let closed = tokio::time::timeout(HEADER_READ_TIMEOUT + Duration::from_secs(30), async {
        while let Ok(1..) = tcp.read(&mut buf).await {}
    })
    .await;
    let closed_at = Instant::now();
    timeline.held.fetch_sub(1, Ordering::Relaxed);
    {
        let mut first_closed = timeline.first_closed.lock().expect("timeline");
        *first_closed = Some(first_closed.map_or(closed_at, |first| first.min(closed_at)));
    }
    closed.context("the server did not close the connection")?;
    Ok(closed_at - sent)
}

/// One `GET /healthz` on a new connection, from connect to the answer's end.
async fn healthz(addr: &str) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let answered = tokio::time::timeout(Duration::from_secs(5), async {
        let mut tcp = TcpStream::connect(addr).await?;
        tcp.set_nodelay(true)?;
        tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n").await?;
        let mut answer = Vec::with_capacity(512);
        tcp.read_to_end(&mut answer).await?;
        anyhow::Ok(answer)
    })
    .await
    .context("/healthz did not answer within 5 s")??;
    if !answered.starts_with(b"HTTP/1.1 200") {
        bail!("/healthz answered {:?}", String::from_utf8_lossy(&answered[..answered.len().min(40)]));
    }
    Ok(started.elapsed())
}

/// Both ends of every connection need a descriptor in this process and the server.
fn budget() -> anyhow::Result<()> {
    let soft = crate::stack::soft_open_file_limit();
    if soft < ATTACKERS + 500 {
        bail!(
            "the soft open-file limit is {soft}; figure 8 needs {}: run through `cargo xtask bench` (it raises the \
             limit) or `ulimit -n 20000` first",
            ATTACKERS + 500
        );
    }
    Ok(())
}
