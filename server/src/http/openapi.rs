//! The OpenAPI 3.1 document of the HTTP surface, generated from the handlers'
//! `#[utoipa::path]` annotations and the wire types, served at
//! `GET /openapi.json`. `pientegra-server openapi` prints it; `docs/openapi.json`
//! is a copy that the test suite keeps equal to it.

use std::sync::LazyLock;

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;
use pientegra_shared::api::ApiError;
use pientegra_shared::signature::HEADER as SIGNATURE_HEADER;
use utoipa::OpenApi;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};

use super::AppState;

/// The whole document: every route of every feature, whatever the settings
/// (the demo, admin and PGM routes answer 404 where they are off).
pub fn document() -> utoipa::openapi::OpenApi {
    let mut document = Base::openapi();
    for part in [
        super::money::Api::openapi(),
        super::account::Api::openapi(),
        super::stream_ticket::Api::openapi(),
        super::events::Api::openapi(),
        super::embed::Api::openapi(),
        super::session::Api::openapi(),
        super::site::Api::openapi(),
        super::admin::Api::openapi(),
        super::ops::Api::openapi(),
        super::webhooks::Api::openapi(),
        super::pgm::openapi(),
        super::widget_files::openapi(),
        Served::openapi(),
    ] {
        document.merge(part);
    }
    document
}

/// The document as served: pretty JSON, ending with a newline.
pub fn json() -> String {
    let mut json = document().to_pretty_json().expect("the document serializes");
    json.push('\n');
    json
}

/// Built once, on the first request or when the router is made.
static DOCUMENT: LazyLock<Bytes> = LazyLock::new(|| Bytes::from(json()));

/// `GET /openapi.json`, readable from any page (API tools run elsewhere).
pub(super) fn router() -> Router<AppState> {
    LazyLock::force(&DOCUMENT);
    Router::new().route("/openapi.json", get(serve))
}

#[derive(OpenApi)]
#[openapi(paths(serve))]
struct Served;

/// This document.
#[utoipa::path(
    get, path = "/openapi.json", operation_id = "openapi", tag = "ops",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")),
)]
async fn serve() -> impl IntoResponse {
    let headers = [
        (header::CONTENT_TYPE, HeaderValue::from_static("application/json")),
        (header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*")),
    ];
    (headers, DOCUMENT.clone())
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Pientegra kit companion server",
        description = include_str!("openapi.md"),
        license(name = "MIT OR Apache-2.0", identifier = "MIT OR Apache-2.0"),
    ),
    components(schemas(ApiError)),
    modifiers(&SecuritySchemes),
    tags(
        (name = "widget", description = "The widget's API: the user's account, deposits and withdrawals"),
        (name = "events", description = "The user's event stream (Server-Sent Events)"),
        (name = "webhooks", description = "Pientegra's signed webhooks"),
        (name = "admin", description = "Support lookups (`ADMIN_TOKEN`; 404 without it)"),
        (name = "ops", description = "Probes, metrics and this document"),
        (name = "demo", description = "Demo mode only (404 elsewhere)"),
        (name = "pgm", description = "The Mia-Platform PGM facade (`PGM_FACADE_TOKEN`; 404 without it)"),
        (name = "widget-bundle", description = "The partner bundle's files (`WIDGET_DIR`)"),
    ),
)]
struct Base;

/// The credentials the routes name in their `security`.
struct SecuritySchemes;

impl utoipa::Modify for SecuritySchemes {
    fn modify(&self, document: &mut utoipa::openapi::OpenApi) {
        let components = document.components.get_or_insert_with(Default::default);
        let bearer = |format: Option<&str>, description: &str| {
            let mut scheme = HttpBuilder::new().scheme(HttpAuthScheme::Bearer).description(Some(description));
            if let Some(format) = format {
                scheme = scheme.bearer_format(format);
            }
            SecurityScheme::Http(scheme.build())
        };
        components.add_security_scheme(
            "widgetToken",
            bearer(
                Some("JWT"),
                "A widget token: an HS256 JWT the partner's backend signs with `WIDGET_TOKEN_SECRET`, with \
                 `sub` (the user's id), `aud` = `pientegra-kit/widget`, `iat`, `exp` and optionally `name`.",
            ),
        );
        components.add_security_scheme(
            "streamTicket",
            SecurityScheme::ApiKey(ApiKey::Query(ApiKeyValue::with_description(
                "ticket",
                "A stream ticket from `POST /api/stream-ticket`: opens `GET /api/events` within a minute.",
            ))),
        );
        components.add_security_scheme("adminToken", bearer(None, "`ADMIN_TOKEN`"));
        components.add_security_scheme("pgmFacadeToken", bearer(None, "`PGM_FACADE_TOKEN`"));
        components.add_security_scheme(
            "webhookSignature",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                SIGNATURE_HEADER,
                "`t=<unix ms>,v1=<hex HMAC-SHA256 of \"<t>.<raw body>\" under a webhook secret>`; \
                 five minutes of clock difference are allowed.",
            ))),
        );
    }
}
