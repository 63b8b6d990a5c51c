//! Connection limits seen from the outside: a kept-alive connection closes
//! once idle, a user's streams are capped, and the event-stream path's own
//! error answers carry the same security headers as the router's.

use std::time::{Duration, Instant};

use pientegra_server::settings::ConnectionLimits;
use pientegra_tests::{Server, Stack, start_server, wait_for};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A bound on the server's reaction, far above the timeouts under test.
const PATIENCE: Duration = Duration::from_secs(20);

/// A second server on the stack's database, with `limits`.
async fn server_with(stack: &Stack, limits: ConnectionLimits) -> Server {
    let mut settings = stack.settings.clone();
    settings.connections = limits;
    start_server(&settings, "127.0.0.1:0".parse().unwrap(), None).await
}

/// Writes `bytes` on a new connection to `server`.
async fn send(server: &Server, bytes: &[u8]) -> TcpStream {
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    socket.write_all(bytes).await.unwrap();
    socket
}

/// Everything the server sends until it closes the connection.
async fn until_closed(socket: &mut TcpStream) -> String {
    let mut seen = Vec::new();
    let reading = async {
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = socket.read(&mut buf).await {
            seen.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(PATIENCE, reading).await.expect("the server closes the connection");
    String::from_utf8_lossy(&seen).into_owned()
}

/// Reads one answer with a `Content-Length` body from a kept-alive connection.
async fn answer(socket: &mut TcpStream) -> String {
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
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before the answer: {text:?}");
            seen.extend_from_slice(&buf[..n]);
        }
    };
    tokio::time::timeout(PATIENCE, reading).await.expect("an answer")
}

/// The value of header `name` in a raw answer's head.
fn header<'a>(answer: &'a str, name: &str) -> Option<&'a str> {
    let (head, _) = answer.split_once("\r\n\r\n").unwrap_or((answer, ""));
    head.lines().skip(1).find_map(|line| {
        let (n, v) = line.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

#[tokio::test]
async fn a_kept_alive_connection_is_closed_once_idle_past_the_keep_alive_timeout() {
    let stack = Stack::start().await;
    let limits = ConnectionLimits {
        keep_alive_timeout: Duration::from_secs(2),
        header_read_timeout: Duration::from_millis(500),
        ..ConnectionLimits::default()
    };
    let server = server_with(&stack, limits).await;
    let mut socket = TcpStream::connect(server.addr).await.unwrap();
    let mut idle_since = Instant::now();
    for _ in 0..2 {
        socket.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        assert!(answer(&mut socket).await.starts_with("HTTP/1.1 200 OK\r\n"));
        idle_since = Instant::now();
        // Longer than the header timeout: between requests the idle timeout applies.
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    assert_eq!(until_closed(&mut socket).await, "", "closed without a word");
    // Not the header timeout's doing: the connection stayed open well past it.
    let idle = idle_since.elapsed();
    assert!(idle >= limits.keep_alive_timeout - limits.header_read_timeout, "closed after {idle:?} idle");
    server.stop().await;
}

#[tokio::test]
async fn a_users_ninth_stream_closes_their_first_and_leaves_the_others_open() {
    let stack = Stack::start().await;
    let per_user = ConnectionLimits::default().max_streams_per_user;
    assert_eq!(per_user, 8);
    let token = stack.token("many-tabs").await;
    let other = stack.token("other-user").await;
    // The first by hand, to see how it ends.
    let ticket = pientegra_tests::sse::stream_ticket(&stack.server.url(), &token).await.unwrap();
    let request = format!("GET /api/events?ticket={ticket} HTTP/1.1\r\nHost: x\r\n\r\n");
    let mut first = TcpStream::connect(stack.server.addr).await.unwrap();
    first.write_all(request.as_bytes()).await.unwrap();
    let mut opening = [0u8; 12];
    first.read_exact(&mut opening).await.unwrap();
    assert_eq!(&opening, b"HTTP/1.1 200");
    let mut others = Vec::new();
    for _ in 1..per_user {
        others.push(stack.events(&token, None).await);
    }
    let mut other_user = stack.events(&other, None).await;
    let metrics = || async {
        let text = stack.http.get(format!("{}/metrics", stack.server.url())).send().await.unwrap().text().await;
        text.unwrap().lines().find(|l| l.starts_with("pientegra_sse_connections ")).unwrap().to_owned()
    };
    assert_eq!(metrics().await, format!("pientegra_sse_connections {}", per_user + 1));

    let mut ninth = stack.events(&token, None).await;
    let ended = until_closed(&mut first).await;
    assert!(ended.contains("retry: 30000\n: replaced by a newer stream\n"), "{ended}");
    assert!(ended.ends_with("0\r\n\r\n"), "a complete chunked end: {ended:?}");
    wait_for(PATIENCE, || async { metrics().await == format!("pientegra_sse_connections {}", per_user + 1) })
        .await
        .expect("eight streams of the user and one of the other");

    // The other seven, the ninth and the other user's stream all stay live.
    let deposit = stack.deposit(&token, "10000").await;
    stack.pay_and_approve(deposit.intent_id).await;
    for stream in others.iter_mut().chain([&mut ninth]) {
        stream
            .until(PATIENCE, |e| e.event == "balance.updated" && e.json()["available"] == "10000")
            .await
            .expect("a stream of the user still open");
    }
    let deposit = stack.deposit(&other, "20000").await;
    stack.pay_and_approve(deposit.intent_id).await;
    other_user
        .until(PATIENCE, |e| e.event == "balance.updated" && e.json()["available"] == "20000")
        .await
        .expect("the other user's stream untouched");
}

#[tokio::test]
async fn the_event_stream_paths_own_400_408_431_carry_the_routers_security_headers() {
    let stack = Stack::start().await;
    let limits = ConnectionLimits { header_read_timeout: Duration::from_secs(1), ..ConnectionLimits::default() };
    let server = server_with(&stack, limits).await;
    let router = stack.http.get(format!("{}/healthz", server.url())).send().await.unwrap();
    let expected: Vec<(&str, String)> =
        ["x-content-type-options", "referrer-policy", "cache-control", "content-security-policy"]
            .into_iter()
            .map(|name| (name, router.headers()[name].to_str().unwrap().to_owned()))
            .collect();
    assert!(expected.iter().any(|(_, v)| v.contains("frame-ancestors 'none'")), "{expected:?}");

    let too_large = format!("GET /api/events HTTP/1.1\r\nX-Pad: {}", "a".repeat(limits.max_request_head));
    for (head, status) in [
        ("GET /api/events HTTP/1.1\r\nBad Header\r\n\r\n".to_owned(), "400 Bad Request"),
        ("GET /api/events HTTP/1.1\r\nHost: x\r\n".to_owned(), "408 Request Timeout"),
        // Exactly what the server reads before answering, so nothing is left unread to reset the answer away.
        (too_large[..limits.max_request_head].to_owned(), "431 Request Header Fields Too Large"),
    ] {
        let mut socket = send(&server, head.as_bytes()).await;
        let answer = until_closed(&mut socket).await;
        assert!(answer.starts_with(&format!("HTTP/1.1 {status}\r\n")), "{status}: {answer:?}");
        for (name, value) in &expected {
            assert_eq!(header(&answer, name), Some(value.as_str()), "{name} on the {status}: {answer:?}");
        }
    }
    server.stop().await;
}
