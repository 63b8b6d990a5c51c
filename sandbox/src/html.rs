//! The server-rendered HTML pages' shared shell: escaping, a per-response CSP
//! nonce for the one inline style sheet and script, and the security headers.

use axum::response::{Html, IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderValue, StatusCode, header};

/// Escapes text for an element's content or a double-quoted attribute.
pub fn esc(text: &str) -> String {
    html_escape::encode_double_quoted_attribute(text).into_owned()
}

/// A page to render.
pub struct Page<'a> {
    pub title: &'a str,
    /// CSS colour of headings and buttons (already validated as a hex colour).
    pub accent: &'a str,
    /// Extra CSS rules.
    pub style: &'a str,
    /// The `<body>` content, already escaped.
    pub body: String,
    /// An inline script, run under the page's nonce.
    pub script: Option<&'a str>,
    /// Reload every this many seconds.
    pub refresh_secs: Option<u32>,
    /// The pages that may show this one in a frame: a CSP `frame-ancestors`
    /// source list (`'none'` for most pages).
    pub frame_ancestors: &'a str,
}

/// The `frame-ancestors` source list that lets no page frame a page.
pub const NO_FRAMING: &str = "'none'";

const BASE_STYLE: &str = "
:root { --accent: ACCENT; }
* { box-sizing: border-box; }
body { font-family: system-ui, -apple-system, 'Segoe UI', sans-serif; margin: 0; background: #f4f5f7; color: #1f2328; }
main { max-width: 34rem; margin: 2rem auto; background: #fff; border-radius: 12px; padding: 1.5rem 2rem;
       box-shadow: 0 1px 4px rgba(0,0,0,.08); }
h1 { color: var(--accent); font-size: 1.4rem; margin-top: 0; }
dl { display: grid; grid-template-columns: max-content 1fr; gap: .5rem 1rem; }
dt { color: #57606a; }
dd { margin: 0; font-weight: 600; overflow-wrap: anywhere; }
button { background: var(--accent); color: #fff; border: 0; border-radius: 8px; padding: .7rem 1.2rem;
         font-size: 1rem; cursor: pointer; }
button:focus-visible { outline: 3px solid #0969da; outline-offset: 2px; }
.muted { color: #57606a; }
";

/// Renders `page` with `status`, a fresh nonce and the headers every page carries:
/// no caching (a payment page must not come back from history stale), no referrer
/// (the token in the URL must not leak to other sites), a CSP that allows
/// only this response's own inline style and script, and the page's framing
/// rule (`X-Frame-Options: DENY` too when no page may frame it, for browsers
/// that know only that header).
pub fn render(status: StatusCode, page: Page<'_>) -> Response {
    let nonce = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 16]>());
    let refresh =
        page.refresh_secs.map(|secs| format!("<meta http-equiv=\"refresh\" content=\"{secs}\">")).unwrap_or_default();
    let script = page.script.map(|script| format!("<script nonce=\"{nonce}\">{script}</script>")).unwrap_or_default();
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{refresh}\
         <title>{title}</title><style nonce=\"{nonce}\">{base}{extra}</style></head>\
         <body>{body}{script}</body></html>\n",
        title = esc(page.title),
        base = BASE_STYLE.replace("ACCENT", page.accent),
        extra = page.style,
        body = page.body,
    );
    let csp = format!(
        "default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; \
         connect-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; \
         frame-ancestors {}",
        page.frame_ancestors
    );
    let mut response = (status, Html(html)).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if let Ok(value) = HeaderValue::from_str(&csp) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    if page.frame_ancestors.trim().eq_ignore_ascii_case(NO_FRAMING) {
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    }
    response
}
