//! Event-stream connections, served without hyper.
//!
//! A widget keeps its `GET /api/events` stream open for as long as its page
//! is open, so one server holds thousands of them, nearly all idle. Under
//! hyper each one keeps a 16 KiB read buffer and an 8 KiB write buffer for its
//! whole life. Here a connection whose request line starts `GET /api/events`
//! is read with a buffer that is dropped once the request head is parsed. The
//! request goes through the same router as any other, so authentication, CORS
//! and the security headers are the same. The response is written straight to
//! the socket, frame by frame, and the connection closes after it. Every other
//! connection goes to hyper untouched, through [`Listener`].

use std::io;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, Version};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// What a stream request starts with, up to the character after the path.
const STREAM_REQUEST: &[u8] = b"GET /api/events";
/// A request head must arrive whole within this.
const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest request head read here (a token in the query is well under 1 KiB).
const MAX_HEAD: usize = 8 * 1024;
const MAX_HEADERS: usize = 48;

/// The server's listener: hands hyper every connection but event streams.
pub struct Listener {
    hyper: mpsc::Receiver<(TcpStream, SocketAddr)>,
    local: SocketAddr,
}

impl Listener {
    /// Starts accepting on `tcp`; stream requests are answered by `app` here.
    /// Accepting stops when `shutdown` is cancelled.
    pub fn new(tcp: TcpListener, app: Router, shutdown: CancellationToken) -> io::Result<Listener> {
        let local = tcp.local_addr()?;
        let (to_hyper, hyper) = mpsc::channel(64);
        tokio::spawn(async move {
            loop {
                let (socket, peer) = tokio::select! {
                    accepted = tcp.accept() => match accepted {
                        Ok(accepted) => accepted,
                        Err(e) => {
                            // Out of file descriptors and the like: wait rather than spin.
                            tracing::warn!(error = %e, "accepting a connection");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    },
                    () = shutdown.cancelled() => return,
                };
                tokio::spawn(route(socket, peer, app.clone(), to_hyper.clone()));
            }
        });
        Ok(Listener { hyper, local })
    }
}

impl axum::serve::Listener for Listener {
    type Io = TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (TcpStream, SocketAddr) {
        match self.hyper.recv().await {
            Some(connection) => connection,
            // The acceptor stopped (shutdown): hyper is stopping too and never asks again.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(self.local)
    }
}

/// Serves an event-stream request here; passes anything else to hyper.
async fn route(socket: TcpStream, peer: SocketAddr, app: Router, to_hyper: mpsc::Sender<(TcpStream, SocketAddr)>) {
    let mut start = [0u8; STREAM_REQUEST.len() + 1];
    // Without the whole request line's start at once (a slow client, say), hyper takes it as usual.
    let peeked = tokio::time::timeout(HEAD_TIMEOUT, socket.peek(&mut start)).await;
    let is_stream = matches!(peeked, Ok(Ok(n)) if n == start.len())
        && start.starts_with(STREAM_REQUEST)
        && matches!(start[STREAM_REQUEST.len()], b' ' | b'?');
    if is_stream {
        serve_stream(socket, app).await;
    } else {
        let _ = to_hyper.send((socket, peer)).await;
    }
}

async fn serve_stream(mut socket: TcpStream, app: Router) {
    // Frames are small and must not wait for the previous one's ACK.
    let _ = socket.set_nodelay(true);
    // Boxed, so what only the start needs is freed once the stream runs.
    let answer = Box::pin(async {
        match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut socket)).await {
            Ok(Ok(request)) => {
                let version = request.version();
                Some((app.oneshot(request).await.unwrap_or_else(|never| match never {}), version))
            }
            Ok(Err(Some(status))) => Some((plain(status), Version::HTTP_11)),
            Ok(Err(None)) => None,
            Err(_) => Some((plain(StatusCode::REQUEST_TIMEOUT), Version::HTTP_11)),
        }
    })
    .await;
    if let Some((response, version)) = answer {
        // An error here is the client gone: nothing is left to tell it.
        let _ = write_response(&mut socket, response, version).await;
    }
}

/// Reads and parses the request head. `Err(None)`: the client left.
async fn read_head(socket: &mut TcpStream) -> Result<Request<Body>, Option<StatusCode>> {
    let mut head = Vec::with_capacity(1024);
    loop {
        if head.len() >= MAX_HEAD {
            return Err(Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
        }
        let mut more = (&mut *socket).take((MAX_HEAD - head.len()) as u64);
        match more.read_buf(&mut head).await {
            Ok(0) | Err(_) => return Err(None),
            Ok(_) => {}
        }
        if let Some(request) = parse_head(&head)? {
            return Ok(request);
        }
    }
}

/// The request in `head`, or `None` while it is incomplete.
fn parse_head(head: &[u8]) -> Result<Option<Request<Body>>, Option<StatusCode>> {
    let bad = Some(StatusCode::BAD_REQUEST);
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)),
        Err(_) => return Err(bad),
    }
    let uri: Uri = parsed.path.unwrap_or_default().parse().map_err(|_| bad)?;
    let mut request = Request::builder().method(Method::GET).uri(uri).version(if parsed.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    });
    for header in parsed.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes()).map_err(|_| bad)?;
        // A GET with a body is not a stream request this server understands.
        if name == axum::http::header::TRANSFER_ENCODING
            || (name == axum::http::header::CONTENT_LENGTH && header.value != b"0")
        {
            return Err(bad);
        }
        request = request.header(name, HeaderValue::from_bytes(header.value).map_err(|_| bad)?);
    }
    request.body(Body::empty()).map(Some).map_err(|_| bad)
}

/// A response with only a status, for requests that never reached the router.
fn plain(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    response
}

/// Writes `response` as HTTP/1.1 and returns when the body ends or the client
/// leaves. A body of unknown length is chunked, or, for an HTTP/1.0 client
/// (which knows no chunks), ends when the connection closes.
async fn write_response(socket: &mut TcpStream, response: Response<Body>, version: Version) -> io::Result<()> {
    let (parts, body) = response.into_parts();
    let length = body.size_hint().exact();
    let chunked = length.is_none() && version != Version::HTTP_10;
    let mut head = Vec::with_capacity(512);
    head.extend_from_slice(format!("HTTP/1.1 {}\r\n", parts.status).as_bytes());
    for (name, value) in &parts.headers {
        head.extend_from_slice(name.as_str().as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(value.as_bytes());
        head.extend_from_slice(b"\r\n");
    }
    if let Some(length) = length {
        head.extend_from_slice(format!("content-length: {length}\r\n").as_bytes());
    } else if chunked {
        head.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    head.extend_from_slice(format!("date: {}\r\n", httpdate::fmt_http_date(SystemTime::now())).as_bytes());
    head.extend_from_slice(b"connection: close\r\n\r\n");
    let (mut reader, mut writer) = socket.split();
    writer.write_all(&head).await?;
    drop(head);

    let mut body = body.into_data_stream();
    let mut probe = [0u8; 16];
    loop {
        tokio::select! {
            data = body.next() => match data {
                Some(Ok(data)) if data.is_empty() => {}
                Some(Ok(data)) if !chunked => writer.write_all(&data).await?,
                Some(Ok(data)) => {
                    let mut chunk = Vec::with_capacity(data.len() + 12);
                    chunk.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                    chunk.extend_from_slice(&data);
                    chunk.extend_from_slice(b"\r\n");
                    writer.write_all(&chunk).await?;
                }
                None => {
                    if chunked {
                        writer.write_all(b"0\r\n\r\n").await?;
                    }
                    return writer.shutdown().await;
                }
                // Ends without the last chunk: the client sees the stream broke, and reconnects.
                Some(Err(_)) => return Ok(()),
            },
            // A client that leaves is noticed now, not at the next keep-alive comment.
            read = reader.read(&mut probe) => match read {
                Ok(0) | Err(_) => return Ok(()),
                // Anything it sends after the request is ignored: the connection closes after this response.
                Ok(_) => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_is_parsed_once_complete() {
        let head = b"GET /api/events?token=abc HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 7\r\n";
        assert!(parse_head(head).unwrap().is_none());
        let head = b"GET /api/events?token=abc HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 7\r\n\r\n";
        let request = parse_head(head).unwrap().unwrap();
        assert_eq!(request.uri(), "/api/events?token=abc");
        assert_eq!(request.headers()["last-event-id"], "7");
        assert_eq!(request.version(), Version::HTTP_11);
    }

    #[test]
    fn a_malformed_head_or_one_with_a_body_is_refused() {
        let bad = Err(Some(StatusCode::BAD_REQUEST));
        assert_eq!(parse_head(b"GET /api/events HTTP/1.1\r\nBad Header\r\n\r\n").map(|_| ()), bad);
        let chunked = b"GET /api/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse_head(chunked).map(|_| ()), bad);
        let sized = b"GET /api/events HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(parse_head(sized).map(|_| ()), bad);
        let many: String = (0..MAX_HEADERS + 1).map(|i| format!("x-{i}: 1\r\n")).collect();
        let too_many = format!("GET /api/events HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse_head(too_many.as_bytes()).map(|_| ()), Err(Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE)));
    }
}
