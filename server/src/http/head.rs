//! The request head of an event-stream connection, parsed from the bytes
//! read so far.
//!
//! This file uses only the `http` and `httparse` crates and names nothing
//! else of the server, so that the fuzz target `stream_head` compiles it as
//! it is (`fuzz/fuzz_targets/stream_head.rs`) without building the server.

use http::header::{CONTENT_LENGTH, TRANSFER_ENCODING};
use http::{HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version};

/// The most header lines a stream request may have (a browser sends about 15).
pub const MAX_HEADERS: usize = 48;

/// The request in `head`, or `None` while it is incomplete; a head the
/// server cannot serve as a stream is the status to answer it with.
pub fn parse_head(head: &[u8]) -> Result<Option<Request<()>>, StatusCode> {
    let bad = StatusCode::BAD_REQUEST;
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Request::new(&mut headers);
    match parsed.parse(head) {
        Ok(httparse::Status::Complete(_)) => {}
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => return Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE),
        Err(_) => return Err(bad),
    }
    // Only a GET is routed here (the connection's first bytes said so).
    if parsed.method != Some("GET") {
        return Err(bad);
    }
    let uri: Uri = parsed.path.unwrap_or_default().parse().map_err(|_| bad)?;
    let version = if parsed.version == Some(0) { Version::HTTP_10 } else { Version::HTTP_11 };
    let mut request = Request::builder().method(Method::GET).uri(uri).version(version);
    for header in parsed.headers.iter() {
        let name = HeaderName::from_bytes(header.name.as_bytes()).map_err(|_| bad)?;
        // A GET with a body is not a stream request this server understands.
        if name == TRANSFER_ENCODING || (name == CONTENT_LENGTH && header.value != b"0") {
            return Err(bad);
        }
        request = request.header(name, HeaderValue::from_bytes(header.value).map_err(|_| bad)?);
    }
    request.body(()).map(Some).map_err(|_| bad)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

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
        let bad = Err(StatusCode::BAD_REQUEST);
        assert_eq!(parse_head(b"GET /api/events HTTP/1.1\r\nBad Header\r\n\r\n").map(|_| ()), bad);
        let chunked = b"GET /api/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n";
        assert_eq!(parse_head(chunked).map(|_| ()), bad);
        let sized = b"GET /api/events HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(parse_head(sized).map(|_| ()), bad);
        assert_eq!(parse_head(b"POST /api/events HTTP/1.1\r\n\r\n").map(|_| ()), bad);
        let many: String = (0..MAX_HEADERS + 1).map(|i| format!("x-{i}: 1\r\n")).collect();
        let too_many = format!("GET /api/events HTTP/1.1\r\n{many}\r\n");
        assert_eq!(parse_head(too_many.as_bytes()).map(|_| ()), Err(StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE));
    }

    /// A well-formed stream request: a query, and header lines a browser might send.
    fn stream_request() -> impl Strategy<Value = (String, Vec<(String, String)>)> {
        let query = "[A-Za-z0-9._~=&%-]{0,40}";
        let header = ("[a-z][a-z0-9-]{0,20}", "[ -~&&[^ ]]([ -~]{0,30}[!-~])?")
            .prop_filter("no body headers", |(name, _)| name != "content-length" && name != "transfer-encoding");
        (query, proptest::collection::vec(header, 0..MAX_HEADERS))
    }

    fn head_of(query: &str, headers: &[(String, String)]) -> Vec<u8> {
        let mut head = format!("GET /api/events?{query} HTTP/1.1\r\n");
        for (name, value) in headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        head.push_str("\r\n");
        head.into_bytes()
    }

    proptest! {
        // The twin of the fuzz target `stream_head`.
        #[test]
        fn any_bytes_parse_or_are_refused_without_panicking(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
            let _ = parse_head(&bytes);
        }

        #[test]
        fn a_well_formed_head_parses_to_what_was_sent_and_every_prefix_waits((query, headers) in stream_request()) {
            let head = head_of(&query, &headers);
            let request = parse_head(&head).unwrap().unwrap();
            prop_assert_eq!(request.uri().query().unwrap_or_default(), query.as_str());
            prop_assert_eq!(request.headers().len(), headers.len());
            for (name, value) in &headers {
                prop_assert!(request.headers().get_all(name.as_str()).iter().any(|v| v == value.as_str()));
            }
            for end in 0..head.len() {
                prop_assert_eq!(parse_head(&head[..end]).map(|r| r.is_some()), Ok(false), "prefix of {} bytes", end);
            }
        }

        #[test]
        fn garbage_after_a_valid_start_is_refused_or_waits_but_never_panics(
            (query, headers) in stream_request(),
            cut in any::<prop::sample::Index>(),
            garbage in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let mut head = head_of(&query, &headers);
            let at = cut.index(head.len());
            head.splice(at..at, garbage);
            let _ = parse_head(&head);
        }
    }
}
