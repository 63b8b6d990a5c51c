//! The head of an event-stream request (`GET /api/events`) is read and parsed
//! by the server itself, from any client, before anything is authenticated.
//! Properties: `parse_head` never panics; what it accepts is a GET with no
//! body and headers it could represent; what it refuses gets 400 or 431; and
//! bytes after a complete head change nothing.

#![no_main]

use libfuzzer_sys::fuzz_target;

// The parser's own source, compiled as it is: it names nothing of the server,
// so the fuzzer need not build the server's database and TLS dependencies.
#[path = "../../server/src/http/head.rs"]
mod head;

fuzz_target!(|data: &[u8]| {
    match head::parse_head(data) {
        Ok(Some(request)) => {
            assert_eq!(request.method(), http::Method::GET);
            assert!(!request.headers().contains_key(http::header::TRANSFER_ENCODING));
            assert!(request.headers().get_all(http::header::CONTENT_LENGTH).iter().all(|v| v == "0"));
            assert!(request.headers().len() <= head::MAX_HEADERS);
            // The head ends where it ends: more bytes are the body's or the next request's.
            let mut longer = data.to_vec();
            longer.extend_from_slice(b"\r\n\r\nGET / HTTP/1.1\r\n");
            let again = head::parse_head(&longer).expect("a longer copy of a complete head parses").expect("complete");
            assert_eq!(again.uri(), request.uri());
            assert_eq!(again.headers(), request.headers());
        }
        Ok(None) => {}
        Err(status) => assert!(
            status == http::StatusCode::BAD_REQUEST || status == http::StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "{status}"
        ),
    }
});
