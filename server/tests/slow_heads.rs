//! The `pientegra-server` binary as a process under a slow-head attack:
//! thousands of connections that send part of a request head and then
//! nothing. Each must be closed once the header timeout is over, the
//! server's memory must stay bounded while they are open, and `/healthz`
//! must keep answering.

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pientegra_sandbox::{Config, Sandbox};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_pientegra-server");
const TOKEN_SECRET: &str = "slow-heads-token-secret-0123456789abcdef0123";

const ATTACKERS: usize = 5_000;
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(2);
/// The server's largest request head in this test (its default).
const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// How much the server's resident memory may grow during the attack: 16 KiB
/// for each of its connections. Half of them send heads of 100 KiB, which
/// the server must answer with 431 after reading `MAX_REQUEST_HEAD`, not
/// hold: buffering them (as the server did before it had limits, 150 KiB a
/// connection) would take over 250 MiB. The other half hold 6 KiB heads
/// until the header timeout; one costs about 15 KiB (measured, debug build):
/// its head buffer of `MAX_REQUEST_HEAD`, the 8 KiB write buffer hyper
/// allocates for every connection (the event-stream path has none), and the
/// task's and connection's state. That is 38 MiB for all of them, half the
/// bound.
const RSS_GROWTH_BOUND_KIB: u64 = 16 * ATTACKERS as u64;
/// How late after the header timeout a connection may close on a loaded machine.
const SLACK: Duration = Duration::from_secs(10);

/// Raises this process's open-file limit (the server inherits it) so both
/// ends of every connection fit.
fn enough_descriptors() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let needed = 3 * ATTACKERS as u64;
    let limit = getrlimit(Resource::Nofile);
    if limit.current.is_some_and(|soft| soft < needed) {
        let raised = limit.maximum.map_or(needed, |hard| hard.min(needed));
        let _ = setrlimit(Resource::Nofile, Rlimit { current: Some(raised), ..limit });
    }
    let soft = getrlimit(Resource::Nofile).current;
    assert!(soft.is_none_or(|soft| soft >= needed), "the open-file limit {soft:?} is below {needed}: raise ulimit -n");
}

struct Server {
    child: Child,
    addr: SocketAddr,
    pid: u32,
}

impl Server {
    /// Starts `pientegra-server serve` on port 0 and reads its address from its log.
    async fn start(sandbox: &Sandbox, dir: &std::path::Path) -> Server {
        let mut child = Command::new(BIN)
            .arg("serve")
            .env_clear()
            .env("PIENTEGRA_API_BASE", sandbox.api_base())
            .env("PIENTEGRA_API_KEY", sandbox.api_key())
            .env("PIENTEGRA_WEBHOOK_SECRET", sandbox.webhook_secret())
            .env("WIDGET_TOKEN_SECRET", TOKEN_SECRET)
            .env("DATABASE_URL", format!("sqlite://{}", dir.join("s.db").display()))
            .env("BIND", "127.0.0.1:0")
            .env("RECONCILE_INTERVAL", "0")
            .env("HEADER_READ_TIMEOUT", format!("{}ms", HEADER_READ_TIMEOUT.as_millis()))
            .env("MAX_REQUEST_HEAD", MAX_REQUEST_HEAD.to_string())
            .env("RUST_LOG", "info")
            .env("LOG_FORMAT", "json")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = child.id().unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
                if entry["fields"]["message"] == "pientegra-server listening" {
                    return entry["fields"]["addr"].as_str().unwrap().parse::<SocketAddr>().unwrap();
                }
            }
            panic!("the server exited before listening");
        })
        .await
        .expect("the server listens");
        // The log must keep flowing, or the server would block writing it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Server { child, addr, pid }
    }

    fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    }
}

/// The `i`th attacker's unfinished head: every other one 100 KiB to
/// `/healthz`, more than the server reads (answered 431 at once); the others
/// 6 KiB, to `/healthz` (hyper's path) or, one in five, to `/api/events` (the
/// event-stream path).
fn unfinished_head(i: usize) -> Vec<u8> {
    let (path, pad) = match i % 10 {
        1 | 3 | 5 | 7 | 9 => ("/healthz", 100 * 1024),
        0 => ("/api/events?ticket=x", 6 * 1024),
        _ => ("/healthz", 6 * 1024),
    };
    format!("GET {path} HTTP/1.1\r\nHost: x\r\nX-Pad: {}", "a".repeat(pad)).into_bytes()
}

/// Sends `head` and waits for the server to close the connection (an answer
/// first, a reset, or a plain close); how long after the head was sent.
async fn hold(addr: SocketAddr, head: Vec<u8>, open: Arc<AtomicU64>) -> Duration {
    let mut socket = TcpStream::connect(addr).await.expect("connects");
    // A reset while writing (the 431 case) means the server closed it: fine.
    let _ = socket.write_all(&head).await;
    let since = Instant::now();
    open.fetch_add(1, Ordering::Relaxed);
    let mut buf = [0u8; 4096];
    let closed =
        tokio::time::timeout(HEADER_READ_TIMEOUT + SLACK, async { while let Ok(1..) = socket.read(&mut buf).await {} })
            .await;
    open.fetch_sub(1, Ordering::Relaxed);
    assert!(closed.is_ok(), "a connection was still open {SLACK:?} after the header timeout");
    since.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_unfinished_heads_are_closed_after_the_header_timeout_with_memory_bounded_and_healthz_answering()
{
    enough_descriptors();
    let sandbox = Sandbox::spawn(Config { bind: "127.0.0.1:0".parse().unwrap(), ..Config::default() }).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::start(&sandbox, dir.path()).await;
    let healthz = format!("http://{}/healthz", server.addr);
    // A new connection for each probe: new connections must keep being accepted.
    let http = reqwest::Client::builder().pool_max_idle_per_host(0).timeout(Duration::from_secs(10)).build().unwrap();
    assert!(http.get(&healthz).send().await.unwrap().status().is_success());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss_before = server.rss_kib();

    let open = Arc::new(AtomicU64::new(0));
    let attack = async {
        let attackers: Vec<_> =
            (0..ATTACKERS).map(|i| tokio::spawn(hold(server.addr, unfinished_head(i), open.clone()))).collect();
        let closed_after: Vec<Duration> =
            futures::future::join_all(attackers).await.into_iter().map(Result::unwrap).collect();
        closed_after
    };
    let attack_done = tokio_util::sync::CancellationToken::new();
    let probing = async {
        let (mut probes, mut rss_peak, mut open_peak) = (Vec::new(), 0, 0);
        while !attack_done.is_cancelled() {
            let asked = Instant::now();
            let answered = http.get(&healthz).send().await.map(|r| r.status());
            probes.push((answered.map_err(|e| e.to_string()), asked.elapsed()));
            rss_peak = rss_peak.max(server.rss_kib());
            open_peak = open_peak.max(open.load(Ordering::Relaxed));
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (probes, rss_peak, open_peak)
    };
    let (closed_after, (probes, rss_peak, open_peak)) = tokio::join!(
        async {
            let closed_after = attack.await;
            attack_done.cancel();
            closed_after
        },
        probing
    );
    let slowest_close = closed_after.iter().max().unwrap();
    let growth = rss_peak.saturating_sub(rss_before);
    let slowest_probe = probes.iter().map(|(_, t)| *t).max().unwrap_or_default();
    eprintln!(
        "RSS {rss_before} KiB before, {rss_peak} KiB at the peak (+{growth} KiB, {} KiB a connection); \
         at most {open_peak} heads held at once; the slowest close {slowest_close:?} after its head; \
         {} /healthz probes, the slowest {slowest_probe:?}",
        growth / ATTACKERS as u64,
        probes.len()
    );
    for (answer, took) in &probes {
        assert!(answer.as_ref().is_ok_and(|s| s.is_success()), "/healthz during the attack: {answer:?} after {took:?}");
    }
    assert!(probes.len() >= 5, "only {} probes: the attack was over too soon to say", probes.len());
    assert!(growth <= RSS_GROWTH_BOUND_KIB, "RSS grew by {growth} KiB, more than {RSS_GROWTH_BOUND_KIB} KiB");
    let _ = server.child.kill().await;
}
