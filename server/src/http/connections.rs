//! Accepting connections, and holding each one only as long as its client
//! does its part.
//!
//! Every connection takes a slot first: past `MAX_CONNECTIONS`, the next one
//! waits in the kernel's listen backlog until a slot frees (and past the
//! backlog, the kernel drops its handshake, which the client retries). A
//! waiting connection costs the process nothing (no descriptor, no task) and
//! is served in arrival order once a slot frees, which the timeouts below
//! bound. Closing it instead would cost an accept and a close per attempt
//! during a flood, and fail clients that a moment later could have been
//! served.
//!
//! Then the first bytes decide the path: an event-stream request is served
//! by `streams`, anything else by hyper. On both, the first request head must
//! be complete `HEADER_READ_TIMEOUT` after the accept, and a write that makes
//! no progress for `WRITE_TIMEOUT` closes the connection. On hyper's, a
//! kept-alive connection on which no byte of a new request arrives for
//! `KEEP_ALIVE_TIMEOUT` after a response is closed, and a new head has
//! `HEADER_READ_TIMEOUT` from its first byte. hyper's own
//! `header_read_timeout` is off: it starts whenever hyper waits for a head,
//! so on a kept-alive connection it would be the idle timeout too.
//!
//! On shutdown, accepting stops, connections with no request under way close,
//! requests in flight finish (event streams end), and [`serve`] returns when
//! the last connection has closed.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::streams;
use crate::settings::ConnectionLimits;

/// How many connections the kernel keeps waiting for the server to take: a
/// burst of new connections, or those past `MAX_CONNECTIONS`, wait here
/// rather than have their handshakes dropped and retried a second or more
/// later. Linux caps it at `net.core.somaxconn` (4096 by default).
const LISTEN_BACKLOG: u32 = 4096;

/// Descriptors kept for what is not a client connection: the database, calls
/// to Pientegra, log files.
const RESERVED_DESCRIPTORS: u64 = 256;

/// A listener on `addr` with the server's listen backlog.
pub fn listen(addr: std::net::SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() { tokio::net::TcpSocket::new_v4()? } else { tokio::net::TcpSocket::new_v6()? };
    // As `TcpListener::bind`: a restarted server may take over its port at once.
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// Serves `app` on `tcp` within `limits` until `shutdown` is cancelled, then
/// returns once every connection has closed.
pub async fn serve(tcp: TcpListener, app: Router, limits: ConnectionLimits, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(connection_slots(limits.max_connections)));
    let connections = TaskTracker::new();
    loop {
        let slot = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_closed) => break,
            },
        };
        let socket = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            accepted = tcp.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(e) => {
                    // Out of descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accepting a connection");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        connections.spawn(connection(socket, slot, app.clone(), limits, shutdown.clone(), connections.clone()));
    }
    // Connections still in the backlog are refused from here on.
    drop(tcp);
    connections.close();
    connections.wait().await;
}

/// How many connections may be open at once: `wanted`, when the open-file
/// limit leaves room for them. The soft limit is raised toward the hard one
/// first, as Go's runtime does; past the hard one, fewer slots and a warning.
fn connection_slots(wanted: usize) -> usize {
    #[cfg(unix)]
    {
        use rustix::process::{Resource, getrlimit, setrlimit};
        let needed = u64::try_from(wanted).unwrap_or(u64::MAX).saturating_add(RESERVED_DESCRIPTORS);
        let limit = getrlimit(Resource::Nofile);
        if let Some(soft) = limit.current.filter(|&soft| soft < needed) {
            let raised = limit.maximum.map_or(needed, |hard| hard.min(needed));
            if raised > soft {
                let _ = setrlimit(Resource::Nofile, rustix::process::Rlimit { current: Some(raised), ..limit });
            }
        }
        if let Some(soft) = getrlimit(Resource::Nofile).current.filter(|&soft| soft < needed) {
            let slots = usize::try_from(soft.saturating_sub(RESERVED_DESCRIPTORS).max(1)).unwrap_or(wanted);
            tracing::warn!(
                max_connections = wanted,
                open_file_limit = soft,
                serving_at_most = slots,
                "MAX_CONNECTIONS does not fit the open-file limit (ulimit -n) with room for the database and calls \
                 to Pientegra; raise the limit to serve more"
            );
            return slots;
        }
    }
    wanted
}

/// One accepted connection, holding its slot until it closes (an event
/// stream's own task takes the slot over).
async fn connection(
    socket: TcpStream,
    slot: OwnedSemaphorePermit,
    app: Router,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
    tasks: TaskTracker,
) {
    let accepted = Instant::now();
    let head_deadline = accepted + limits.header_read_timeout;
    let mut start = [0u8; streams::START];
    let peeked = tokio::select! {
        peeked = tokio::time::timeout_at(head_deadline, socket.peek(&mut start)) => peeked,
        () = shutdown.cancelled() => return,
    };
    match peeked {
        // A task of its own, sized for the stream alone: it may stay open for
        // hours, and thousands of them at once.
        Ok(Ok(n)) if streams::is_stream_request(&start[..n]) => {
            tasks.spawn(streams::serve(socket, slot, app, head_deadline, limits, shutdown));
        }
        // A request line whose start arrived in pieces is hyper's too, served the usual way.
        Ok(Ok(1..)) => {
            let _slot = slot;
            Box::pin(hyper_connection(socket, app, accepted, limits, shutdown)).await;
        }
        // Closed, failed, or silent until the deadline: there is nothing to answer.
        _ => {}
    }
}

/// Serves a connection with hyper (HTTP/1.1, keep-alive) under the watchdog
/// described at the top of this module.
async fn hyper_connection(
    socket: TcpStream,
    app: Router,
    accepted: Instant,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    let activity = Arc::new(Activity::new(accepted));
    let io = TokioIo::new(WriteTimeout {
        inner: Watched { socket, activity: activity.clone() },
        stall: Stall::new(limits.write_timeout),
    });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |request: Request<Incoming>| {
            let busy = Busy::start(&activity);
            let app = app.clone();
            async move {
                let response = app.oneshot(request.map(Body::new)).await.unwrap_or_else(|never| match never {});
                Ok::<_, Infallible>(response.map(|body| Tracked { body, _busy: busy }))
            }
        })
    };
    let mut builder = http1::Builder::new();
    // hyper answers a head that outgrows its read buffer with 431.
    builder.header_read_timeout(None).max_buf_size(limits.max_request_head);
    let mut conn = pin!(builder.serve_connection(io, service));
    let mut stopping = pin!(shutdown.cancelled());
    let mut timer = pin!(tokio::time::sleep_until(accepted + limits.header_read_timeout));
    let mut draining = false;
    poll_fn(|cx| {
        if !draining && stopping.as_mut().poll(cx).is_ready() {
            draining = true;
            conn.as_mut().graceful_shutdown();
        }
        if let Poll::Ready(served) = conn.as_mut().poll(cx) {
            if let Err(e) = served {
                tracing::debug!(error = %e, "serving a connection");
            }
            return Poll::Ready(());
        }
        // Every change of the activity happens while `conn` is polled, so the
        // deadline is current. Past it no request is in flight: closing the
        // connection drops nothing anyone waits for.
        let Some(deadline) = activity.deadline(&limits, draining) else { return Poll::Pending };
        if deadline <= Instant::now() {
            return Poll::Ready(());
        }
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        timer.as_mut().poll(cx)
    })
    .await;
}

/// What a hyper connection is doing, as far as its deadline depends on it.
/// Times are milliseconds since the accept.
struct Activity {
    accepted: Instant,
    /// Requests whose response has not ended.
    busy: AtomicU32,
    /// Whether a request head has been complete on this connection.
    served: AtomicBool,
    /// When the last response ended.
    idle_since: AtomicU64,
    /// One more than when the first byte of the next head arrived; 0 while none has.
    head_started: AtomicU64,
}

impl Activity {
    fn new(accepted: Instant) -> Activity {
        Activity {
            accepted,
            busy: AtomicU32::new(0),
            served: AtomicBool::new(false),
            idle_since: AtomicU64::new(0),
            head_started: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.accepted.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    fn at(&self, ms: u64) -> Instant {
        self.accepted + Duration::from_millis(ms)
    }

    fn bytes_arrived(&self) {
        if self.busy.load(Relaxed) == 0 && self.head_started.load(Relaxed) == 0 {
            self.head_started.store(self.now() + 1, Relaxed);
        }
    }

    /// When to close the connection if nothing changes; `None` while a request is in flight.
    fn deadline(&self, limits: &ConnectionLimits, draining: bool) -> Option<Instant> {
        if self.busy.load(Relaxed) > 0 {
            return None;
        }
        let head_started = self.head_started.load(Relaxed);
        if draining && head_started == 0 {
            return Some(Instant::now());
        }
        Some(if !self.served.load(Relaxed) {
            // The first head is timed from the accept, as on the event-stream path.
            self.accepted + limits.header_read_timeout
        } else if head_started == 0 {
            self.at(self.idle_since.load(Relaxed)) + limits.keep_alive_timeout
        } else {
            self.at(head_started - 1) + limits.header_read_timeout
        })
    }
}

/// A request in flight: from its complete head until its response body is
/// dropped (written out, or the connection gone).
struct Busy(Arc<Activity>);

impl Busy {
    fn start(activity: &Arc<Activity>) -> Busy {
        activity.busy.fetch_add(1, Relaxed);
        activity.served.store(true, Relaxed);
        activity.head_started.store(0, Relaxed);
        Busy(activity.clone())
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.idle_since.store(self.0.now(), Relaxed);
        self.0.busy.fetch_sub(1, Relaxed);
    }
}

/// A response body that keeps its request [`Busy`] until hyper drops it.
struct Tracked {
    body: Body,
    _busy: Busy,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.get_mut().body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

/// Fails a write that has made no progress for `timeout`: a client that
/// stopped reading, its socket buffers full. The timer exists only while a
/// write waits, so an idle connection carries just the empty `Option`.
pub(super) struct Stall {
    timeout: Duration,
    timer: Option<Pin<Box<Sleep>>>,
}

impl Stall {
    pub(super) fn new(timeout: Duration) -> Stall {
        Stall { timeout, timer: None }
    }

    /// `written`, unless it has been pending for longer than the timeout.
    fn check<T>(&mut self, cx: &mut Context<'_>, written: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if written.is_ready() {
            self.timer = None;
            return written;
        }
        let timeout = self.timeout;
        let timer = self.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading"))),
            Poll::Pending => Poll::Pending,
        }
    }
}

/// A writer whose writes fail once one has made no progress for a while (see [`Stall`]).
pub(super) struct WriteTimeout<W> {
    pub(super) inner: W,
    pub(super) stall: Stall,
}

impl<W: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<W> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, data);
        this.stall.check(cx, written)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, data);
        this.stall.check(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// The socket as hyper reads it: notes the first byte of each request head.
struct Watched {
    socket: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let read = Pin::new(&mut this.socket).poll_read(cx, buf);
        if buf.filled().len() > before {
            this.activity.bytes_arrived();
        }
        read
    }
}

impl AsyncWrite for Watched {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().socket).poll_write(cx, data)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().socket).poll_write_vectored(cx, data)
    }

    fn is_write_vectored(&self) -> bool {
        self.socket.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().socket).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().socket).poll_shutdown(cx)
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for WriteTimeout<R> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;

    use axum::routing::get;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::task::JoinHandle;

    use super::*;

    /// A bound on the server's reaction, far above the timeouts under test:
    /// these tests check what happens, not how fast.
    const PATIENCE: Duration = Duration::from_secs(20);

    fn limits() -> ConnectionLimits {
        ConnectionLimits {
            max_connections: 64,
            header_read_timeout: Duration::from_millis(700),
            keep_alive_timeout: Duration::from_millis(700),
            write_timeout: Duration::from_millis(700),
            ..ConnectionLimits::default()
        }
    }

    fn endless() -> Body {
        Body::from_stream(futures::stream::repeat_with(|| Ok::<_, Infallible>(Bytes::from_static(&[b'x'; 16 * 1024]))))
    }

    struct Running {
        addr: SocketAddr,
        shutdown: CancellationToken,
        task: JoinHandle<()>,
    }

    async fn start(limits: ConnectionLimits) -> Running {
        let app = Router::new()
            .route("/ok", get(|| async { "ok" }))
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    "done"
                }),
            )
            .route("/endless", get(|| async { endless() }))
            .route("/api/events", get(|| async { endless() }));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(serve(listener, app, limits, shutdown.clone()));
        Running { addr, shutdown, task }
    }

    /// Reads until the server closes the connection (a reset counts); what it sent.
    async fn until_closed(socket: &mut TcpStream) -> String {
        let mut seen = Vec::new();
        let reading = async {
            let mut buf = [0u8; 64 * 1024];
            while let Ok(n @ 1..) = socket.read(&mut buf).await {
                seen.extend_from_slice(&buf[..n]);
                assert!(seen.len() < 256 * 1024 * 1024, "the server never stopped writing");
            }
        };
        tokio::time::timeout(PATIENCE, reading).await.expect("the server closed the connection");
        String::from_utf8_lossy(&seen).into_owned()
    }

    /// Sends a GET of `path` and reads its answer (`Content-Length` bodies only).
    async fn get_on(socket: &mut TcpStream, path: &str) -> String {
        socket.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
        let mut seen = Vec::new();
        let reading = async {
            let mut buf = [0u8; 4096];
            loop {
                let text = String::from_utf8_lossy(&seen).into_owned();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length = head
                        .lines()
                        .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length: ").map(str::to_owned))
                        .and_then(|l| l.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if body.len() >= length {
                        return text;
                    }
                }
                match socket.read(&mut buf).await.unwrap() {
                    0 => panic!("closed before the answer: {text:?}"),
                    n => seen.extend_from_slice(&buf[..n]),
                }
            }
        };
        tokio::time::timeout(PATIENCE, reading).await.expect("an answer")
    }

    #[tokio::test]
    async fn a_client_that_stops_reading_is_dropped_after_the_write_timeout_on_both_paths() {
        let server = start(limits()).await;
        for path in ["/api/events", "/endless"] {
            // A small receive window, so the server's writes stall soon.
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.set_recv_buffer_size(4096).unwrap();
            let mut socket = socket.connect(server.addr).await.unwrap();
            socket.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
            // Not reading for several write timeouts; then what was buffered, and the end.
            tokio::time::sleep(limits().write_timeout * 4).await;
            let answer = until_closed(&mut socket).await;
            assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{path}: {:?}", &answer[..answer.len().min(200)]);
        }
        server.shutdown.cancel();
        server.task.await.unwrap();
    }

    #[tokio::test]
    async fn a_kept_alive_connection_serves_requests_then_closes_once_idle_past_the_keep_alive_timeout() {
        let limits = ConnectionLimits { keep_alive_timeout: Duration::from_secs(3), ..limits() };
        let server = start(limits).await;
        let mut socket = TcpStream::connect(server.addr).await.unwrap();
        let mut idle_since = Instant::now();
        for _ in 0..3 {
            assert!(get_on(&mut socket, "/ok").await.ends_with("\r\n\r\nok"));
            idle_since = Instant::now();
            // Well within the idle timeout, and longer than the header timeout:
            // between requests the idle timeout applies, not the header one.
            tokio::time::sleep(limits.header_read_timeout * 2).await;
        }
        assert_eq!(until_closed(&mut socket).await, "");
        // Not the header timeout's doing: the connection stayed open well past it.
        let idle = idle_since.elapsed();
        assert!(idle >= limits.keep_alive_timeout - limits.header_read_timeout, "closed after {idle:?} idle");
    }

    #[tokio::test]
    async fn a_head_not_complete_within_the_header_timeout_is_closed_on_both_paths() {
        let server = start(limits()).await;
        for (start, answer) in [
            // Silent: nothing to answer.
            ("", ""),
            // hyper's path closes without an answer, as hyper does.
            ("GET /ok HTTP/1.1\r\nHost: x\r\n", ""),
            // The event-stream path answers 408.
            ("GET /api/events HTTP/1.1\r\nHost: x\r\n", "HTTP/1.1 408 Request Timeout\r\n"),
        ] {
            let mut socket = TcpStream::connect(server.addr).await.unwrap();
            socket.write_all(start.as_bytes()).await.unwrap();
            let opened = Instant::now();
            let got = until_closed(&mut socket).await;
            assert!(got.starts_with(answer), "{start:?}: {got:?}");
            assert!(answer.is_empty() || got.contains("x-content-type-options: nosniff"), "{got:?}");
            assert!(opened.elapsed() >= limits().header_read_timeout / 2, "{start:?} closed at once");
        }
        // A later head on a kept-alive connection has the header timeout from its first byte.
        let mut socket = TcpStream::connect(server.addr).await.unwrap();
        assert!(get_on(&mut socket, "/ok").await.ends_with("ok"));
        socket.write_all(b"GET /ok HTTP/1.1\r\n").await.unwrap();
        assert_eq!(until_closed(&mut socket).await, "");
    }

    #[tokio::test]
    async fn a_head_larger_than_the_limit_gets_431_on_both_paths() {
        let limits = ConnectionLimits { max_request_head: 8 * 1024, header_read_timeout: PATIENCE, ..limits() };
        let server = start(limits).await;
        for path in ["/ok", "/api/events"] {
            let mut socket = TcpStream::connect(server.addr).await.unwrap();
            let head = format!("GET {path} HTTP/1.1\r\nX-Pad: {}", "a".repeat(limits.max_request_head));
            // Only as much as the server reads before it answers, so closing does not reset the answer away.
            socket.write_all(&head.as_bytes()[..limits.max_request_head]).await.unwrap();
            let answer = until_closed(&mut socket).await;
            assert!(answer.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"), "{path}: {answer:?}");
        }
    }

    #[tokio::test]
    async fn past_the_connection_limit_a_connection_waits_until_a_slot_frees() {
        let limits = ConnectionLimits {
            max_connections: 2,
            header_read_timeout: PATIENCE,
            keep_alive_timeout: PATIENCE,
            ..limits()
        };
        let server = start(limits).await;
        let mut held = Vec::new();
        for _ in 0..2 {
            let mut socket = TcpStream::connect(server.addr).await.unwrap();
            assert!(get_on(&mut socket, "/ok").await.ends_with("ok"));
            held.push(socket);
        }
        // The kernel completes the handshake; the server does not take the connection yet.
        let mut waiting = TcpStream::connect(server.addr).await.unwrap();
        let mut answer = Box::pin(async move { get_on(&mut waiting, "/ok").await });
        assert!(
            tokio::time::timeout(Duration::from_millis(500), answer.as_mut()).await.is_err(),
            "answered past the limit"
        );
        drop(held.pop());
        assert!(answer.await.ends_with("ok"));
    }

    #[tokio::test]
    async fn shutdown_finishes_requests_in_flight_and_closes_idle_connections() {
        let limits = ConnectionLimits { keep_alive_timeout: PATIENCE, header_read_timeout: PATIENCE, ..limits() };
        let server = start(limits).await;
        let mut idle = TcpStream::connect(server.addr).await.unwrap();
        assert!(get_on(&mut idle, "/ok").await.ends_with("ok"));
        let mut silent = TcpStream::connect(server.addr).await.unwrap();
        let mut busy = TcpStream::connect(server.addr).await.unwrap();
        busy.write_all(b"GET /slow HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        server.shutdown.cancel();
        assert_eq!(until_closed(&mut idle).await, "");
        assert_eq!(until_closed(&mut silent).await, "");
        assert!(until_closed(&mut busy).await.ends_with("\r\n\r\ndone"));
        tokio::time::timeout(PATIENCE, server.task).await.expect("serve returns").unwrap();
        assert!(TcpStream::connect(server.addr).await.is_err(), "no longer accepting");
    }
}
