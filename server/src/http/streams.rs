//! Event-stream connections, served without hyper.
//!
//! A widget keeps its `GET /api/events` stream open for as long as its page
//! is open, so one server holds thousands of them, nearly all idle. Under
//! hyper each one keeps an 8 KiB read buffer and an 8 KiB write buffer for its
//! whole life. Here a connection whose request line starts `GET /api/events`
//! is read with a buffer that is dropped once the request head is parsed. The
//! request goes through the same router as any other, so authentication, CORS
//! and the security headers are the same. The response is written straight to
//! the socket, frame by frame, and the connection closes after it. Every other
//! connection is hyper's (`connections`), and both count against the same
//! connection limit.

use std::io;
use std::time::{Duration, SystemTime};

use axum::Router;
use axum::body::{Body, HttpBody};
use axum::http::{Response, StatusCode, Version};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::connections::{Stall, WriteTimeout};
use super::head::parse_head;
use crate::settings::ConnectionLimits;

/// What a stream request starts with, up to the character after the path.
const STREAM_REQUEST: &[u8] = b"GET /api/events";
/// How many bytes [`is_stream_request`] looks at.
pub(super) const START: usize = STREAM_REQUEST.len() + 1;

/// Whether a connection whose first bytes are `start` asks for an event stream.
pub(super) fn is_stream_request(start: &[u8]) -> bool {
    start.len() == START && start.starts_with(STREAM_REQUEST) && matches!(start[STREAM_REQUEST.len()], b' ' | b'?')
}

/// Serves the event-stream request of `socket`, whose head must be complete
/// by `head_deadline`, holding the connection's slot until it closes. A
/// connection still without a whole head at shutdown is closed; a stream
/// that runs ends with the shutdown (see `events`).
pub(super) async fn serve(
    mut socket: TcpStream,
    _slot: OwnedSemaphorePermit,
    app: Router,
    head_deadline: Instant,
    limits: ConnectionLimits,
    shutdown: CancellationToken,
) {
    // Frames are small and must not wait for the previous one's ACK.
    let _ = socket.set_nodelay(true);
    // Boxed, so what only the start needs is freed once the stream runs.
    let answer = Box::pin(async {
        let read = tokio::select! {
            read = tokio::time::timeout_at(head_deadline, read_head(&mut socket, limits.max_request_head)) => read,
            () = shutdown.cancelled() => return None,
        };
        match read {
            Ok(Ok(request)) => {
                let version = request.version();
                let request = request.map(|()| Body::empty());
                Some((app.oneshot(request).await.unwrap_or_else(|never| match never {}), version))
            }
            Ok(Err(Some(status))) => Some((plain(status), Version::HTTP_11)),
            Ok(Err(None)) => None,
            Err(_) => Some((plain(StatusCode::REQUEST_TIMEOUT), Version::HTTP_11)),
        }
    })
    .await;
    if let Some((response, version)) = answer {
        // An error here is the client gone, or not reading: nothing is left to tell it.
        let _ = write_response(&mut socket, response, version, limits.write_timeout).await;
    }
}

/// Reads and parses the request head. `Err(None)`: the client left.
async fn read_head(socket: &mut TcpStream, max_head: usize) -> Result<axum::http::Request<()>, Option<StatusCode>> {
    let mut head = Vec::with_capacity(1024);
    loop {
        if head.len() >= max_head {
            return Err(Some(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
        }
        let mut more = (&mut *socket).take((max_head - head.len()) as u64);
        match more.read_buf(&mut head).await {
            Ok(0) | Err(_) => return Err(None),
            Ok(_) => {}
        }
        if let Some(request) = parse_head(&head).map_err(Some)? {
            return Ok(request);
        }
    }
}

/// A response with only a status (and the headers every answer carries),
/// for requests that never reached the router.
fn plain(status: StatusCode) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = status;
    super::set_security_headers(response.headers_mut());
    response
}

/// Writes `response` as HTTP/1.1 and returns when the body ends, the client
/// leaves, or a write makes no progress for `write_timeout` (a client that
/// stopped reading, its socket buffers full). A body of unknown length is
/// chunked, or, for an HTTP/1.0 client (which knows no chunks), ends when the
/// connection closes.
async fn write_response(
    socket: &mut TcpStream,
    response: Response<Body>,
    version: Version,
    write_timeout: Duration,
) -> io::Result<()> {
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
    let (mut reader, writer) = socket.split();
    let mut writer = WriteTimeout { inner: writer, stall: Stall::new(write_timeout) };
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
