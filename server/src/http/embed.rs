//! Which pages may use this server: `GET /api/embed-check`, which the
//! widget's loader asks before anything else so that a page missing from
//! `ALLOWED_ORIGINS` is told so in words rather than by a failed request, and
//! the page origin the deposit answer's `framing` is about.

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use pientegra_shared::api::EmbedCheck;
use url::Url;

use super::AppState;
use crate::settings::Settings;

/// `GET /api/embed-check`, readable from any page (`Access-Control-Allow-Origin: *`, no credentials).
pub fn router() -> Router<AppState> {
    Router::new().route("/api/embed-check", get(embed_check))
}

/// The routes' part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(embed_check))]
pub(super) struct Api;

/// Whether the asking page may use this server.
///
/// Whether the page asking (its `Origin`) may use this server: listed in
/// `ALLOWED_ORIGINS`, or this server's own origin. A request without `Origin`
/// (same-origin, or not from a browser) is allowed. Readable from any page
/// (`Access-Control-Allow-Origin: *`); no database, no Pientegra call.
#[utoipa::path(
    get, path = "/api/embed-check", operation_id = "embed_check", tag = "widget",
    responses((status = 200, description = "Whether the origin is allowed", body = EmbedCheck)),
)]
async fn embed_check(State(state): State<AppState>, headers: HeaderMap) -> Response {
    let origin = header_origin(&headers);
    let allowed = origin.as_deref().is_none_or(|origin| origin_allowed(&state.settings, &headers, origin));
    let mut response = Json(EmbedCheck { origin, allowed }).into_response();
    response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    response
}

/// The request's `Origin` header, as sent.
fn header_origin(headers: &HeaderMap) -> Option<String> {
    headers.get(header::ORIGIN).map(|value| String::from_utf8_lossy(value.as_bytes()).into_owned())
}

/// Whether a page of `origin` may use this server: listed in `ALLOWED_ORIGINS`,
/// or this server's own origin.
pub(crate) fn origin_allowed(settings: &Settings, headers: &HeaderMap, origin: &str) -> bool {
    settings.allowed_origins.iter().any(|allowed| allowed == origin) || is_own_origin(headers, origin)
}

/// Whether `origin` names the host and port this request was sent to (its
/// `Host`). The scheme is taken from `origin`: behind a proxy that ends TLS the
/// server cannot see it, and a page reaching this host is served by it either way.
fn is_own_origin(headers: &HeaderMap, origin: &str) -> bool {
    let Ok(origin) = Url::parse(origin) else { return false };
    let Some(host) = headers.get(header::HOST).and_then(|host| host.to_str().ok()) else { return false };
    let own = Url::parse(&format!("{}://{host}", origin.scheme()));
    origin.origin().is_tuple() && own.is_ok_and(|own| own.origin() == origin.origin())
}

/// The origin of the page that sent the request: its `Origin` header (`null`
/// for an opaque one), else this server's own (a same-origin request from a
/// client that sends none), `http` unless `X-Forwarded-Proto` says `https`.
pub(crate) fn page_origin(headers: &HeaderMap) -> String {
    if let Some(origin) = header_origin(headers) {
        return origin;
    }
    let https = headers.get("x-forwarded-proto").is_some_and(|proto| proto.as_bytes().eq_ignore_ascii_case(b"https"));
    let scheme = if https { "https" } else { "http" };
    headers
        .get(header::HOST)
        .and_then(|host| host.to_str().ok())
        .and_then(|host| Url::parse(&format!("{scheme}://{host}")).ok())
        .map_or_else(|| "null".to_owned(), |own| own.origin().ascii_serialization())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        pairs
            .iter()
            .map(|(name, value)| (header::HeaderName::from_static(name), HeaderValue::from_static(value)))
            .collect()
    }

    #[test]
    fn the_own_origin_is_the_host_the_request_was_sent_to_in_any_scheme() {
        let sent_to = headers(&[("host", "kit.example:8443")]);
        assert!(is_own_origin(&sent_to, "https://kit.example:8443"));
        assert!(is_own_origin(&sent_to, "http://kit.example:8443"));
        assert!(!is_own_origin(&sent_to, "https://kit.example"));
        assert!(!is_own_origin(&sent_to, "https://partner.example:8443"));
        assert!(!is_own_origin(&sent_to, "null"));
        let default_port = headers(&[("host", "Kit.Example")]);
        assert!(is_own_origin(&default_port, "https://kit.example"));
        assert!(!is_own_origin(&headers(&[]), "https://kit.example"), "no Host, no own origin");
    }

    #[test]
    fn the_page_origin_is_the_origin_header_else_the_servers_own() {
        assert_eq!(
            page_origin(&headers(&[("origin", "https://partner.example"), ("host", "kit.example")])),
            "https://partner.example"
        );
        assert_eq!(page_origin(&headers(&[("host", "127.0.0.1:8080")])), "http://127.0.0.1:8080");
        assert_eq!(
            page_origin(&headers(&[("host", "kit.example"), ("x-forwarded-proto", "https")])),
            "https://kit.example"
        );
        assert_eq!(page_origin(&headers(&[])), "null");
    }
}
