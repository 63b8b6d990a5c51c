//! The partner bundle at `/widget/v1/` (`WIDGET_DIR`, written by `cargo xtask
//! widget`): a stable loader, `pientegra.js`, that loads content-named files
//! (`pientegra-<16 hex>.js|wasm|css`) with integrity checks.
//!
//! The content-named files never change, so browsers keep them a year
//! without asking; the loader and its type declarations change with every
//! release and are kept five minutes, then revalidated (`Last-Modified`).
//! Each file is served as its precompressed `.br` or `.gz` twin when the
//! browser accepts it. Any page may run the loader (it then explains when its
//! origin is not allowed); the files it loads are shared, via CORS, with the
//! pages of `ALLOWED_ORIGINS` and this server's own.

use std::convert::Infallible;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_http::services::ServeDir;

use super::AppState;
use super::embed::origin_allowed;
use super::error::AppError;

/// Where the bundle is served.
const PREFIX: &str = "/widget/v1";

const IMMUTABLE: &str = "public, max-age=31536000, immutable";
const SHORT: &str = "public, max-age=300";

/// `/widget/v1/*` from `WIDGET_DIR`; without it, every path there is 404 `not_found`.
pub fn router(state: &AppState) -> Router<AppState> {
    let files = match &state.settings.widget_dir {
        Some(dir) => Router::new().nest_service(
            PREFIX,
            ServeDir::new(dir)
                .precompressed_br()
                .precompressed_gzip()
                .append_index_html_on_directories(false)
                .fallback(tower::service_fn(|_| async { Ok::<_, Infallible>(not_found()) })),
        ),
        None => Router::new().nest_service(
            PREFIX,
            tower::service_fn(|_| async {
                Ok::<_, Infallible>(AppError::not_found("widget bundle: WIDGET_DIR is not set").into_response())
            }),
        ),
    };
    files.layer(middleware::from_fn_with_state(state.clone(), file_headers))
}

/// The bundle's part of the OpenAPI document: `GET /widget/v1/{file}`.
pub(super) fn openapi() -> utoipa::openapi::OpenApi {
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem};
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    use utoipa::openapi::{ContentBuilder, OpenApiBuilder, PathsBuilder, Required, ResponseBuilder};

    let file = ParameterBuilder::new()
        .name("file")
        .parameter_in(ParameterIn::Path)
        .required(Required::True)
        .description(Some(
            "`pientegra.js` (the loader), `pientegra.d.ts`, or a content-named `pientegra-<16 hex>.js|wasm|css`",
        ))
        .schema(Some(ObjectBuilder::new().schema_type(Type::String)))
        .example(Some(serde_json::json!("pientegra.js")));
    let bytes = || ContentBuilder::new().schema(Some(ObjectBuilder::new().schema_type(Type::String))).build();
    let ok = ResponseBuilder::new()
        .description(
            "The file, precompressed (`Content-Encoding: br` or `gzip`) when accepted. Content-named files are \
             cached a year (`immutable`) and shared via CORS with the allowed origins; the loader is cached five \
             minutes and readable from any page.",
        )
        .content("text/javascript", bytes())
        .content("application/wasm", bytes())
        .content("text/css", bytes())
        .content("application/typescript", bytes());
    let not_found = ResponseBuilder::new()
        .description("Not found: `not_found` (no such file, or `WIDGET_DIR` is not set)")
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(utoipa::openapi::Ref::from_schema_name("ApiError"))).build(),
        );
    let operation = OperationBuilder::new()
        .tag("widget-bundle")
        .summary(Some("A file of the partner bundle (`cargo xtask widget`), from `WIDGET_DIR`"))
        .operation_id(Some("widget_file"))
        .parameter(file)
        .response("200", ok)
        .response("304", ResponseBuilder::new().description("Not modified (`If-Modified-Since`)"))
        .response("404", not_found);
    let path = format!("{PREFIX}/{{file}}");
    OpenApiBuilder::new().paths(PathsBuilder::new().path(path, PathItem::new(HttpMethod::Get, operation))).build()
}

fn not_found() -> Response {
    AppError::not_found("file in the widget bundle").into_response()
}

/// The two kinds of file in the bundle.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// `pientegra-<16 hex>.js|wasm|css`: named by its content, never changes.
    ContentNamed,
    /// The loader, its declarations, anything else: may change at any release.
    StableName,
}

impl Kind {
    fn of(name: &str) -> Kind {
        let content_named =
            name.strip_prefix("pientegra-").and_then(|rest| rest.split_once('.')).is_some_and(|(hash, extension)| {
                hash.len() == 16
                    && hash.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
                    && matches!(extension, "js" | "wasm" | "css")
            });
        if content_named { Kind::ContentNamed } else { Kind::StableName }
    }
}

/// The type of a bundle file by its name; `None` leaves `ServeDir`'s guess.
fn content_type(name: &str) -> Option<HeaderValue> {
    let value = if name.ends_with(".d.ts") {
        "application/typescript; charset=utf-8"
    } else if name.ends_with(".wasm") {
        "application/wasm"
    } else if name.ends_with(".js") {
        "text/javascript; charset=utf-8"
    } else if name.ends_with(".css") {
        "text/css; charset=utf-8"
    } else {
        return None;
    };
    Some(HeaderValue::from_static(value))
}

/// Caching, type, CORS and resource-policy headers by kind of file.
async fn file_headers(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let name = request.uri().path().rsplit('/').next().unwrap_or_default().to_owned();
    let kind = Kind::of(&name);
    let shared_with = match kind {
        Kind::StableName => Some(HeaderValue::from_static("*")),
        Kind::ContentNamed => allowed_origin(&state, request.headers()),
    };
    let mut response = next.run(request).await;
    let status = response.status();
    let headers = response.headers_mut();
    if status.is_success() || status == StatusCode::NOT_MODIFIED {
        let cache = match kind {
            Kind::ContentNamed => IMMUTABLE,
            Kind::StableName => SHORT,
        };
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
        if let Some(content_type) = content_type(&name).filter(|_| status != StatusCode::NOT_MODIFIED) {
            headers.insert(header::CONTENT_TYPE, content_type);
        }
        headers.append(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    }
    if kind == Kind::ContentNamed {
        headers.append(header::VARY, HeaderValue::from_static("Origin"));
    }
    if let Some(origin) = shared_with {
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        headers.insert(HeaderName::from_static("timing-allow-origin"), origin);
    }
    headers.insert(HeaderName::from_static("cross-origin-resource-policy"), HeaderValue::from_static("cross-origin"));
    response
}

/// The request's `Origin`, when this server shares its files with it.
fn allowed_origin(state: &AppState, headers: &HeaderMap) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    let allowed = origin.to_str().is_ok_and(|origin| origin_allowed(&state.settings, headers, origin));
    allowed.then(|| origin.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pientegra_with_16_lowercase_hex_digits_and_a_bundle_extension_is_content_named() {
        for name in
            ["pientegra-0123456789abcdef.js", "pientegra-0123456789abcdef.wasm", "pientegra-fedcba9876543210.css"]
        {
            assert_eq!(Kind::of(name), Kind::ContentNamed, "{name}");
        }
        for name in [
            "pientegra.js",
            "pientegra.d.ts",
            "pientegra-0123456789ABCDEF.js",
            "pientegra-0123456789abcde.js",
            "pientegra-0123456789abcdef0.js",
            "pientegra-0123456789abcdef.js.br",
            "pientegra-0123456789abcdef.html",
            "other-0123456789abcdef.js",
            "",
        ] {
            assert_eq!(Kind::of(name), Kind::StableName, "{name}");
        }
    }

    #[test]
    fn bundle_files_have_the_types_browsers_need() {
        let of = |name| content_type(name).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(of("pientegra-0123456789abcdef.wasm").as_deref(), Some("application/wasm"));
        assert_eq!(of("pientegra.js").as_deref(), Some("text/javascript; charset=utf-8"));
        assert_eq!(of("pientegra.d.ts").as_deref(), Some("application/typescript; charset=utf-8"));
        assert_eq!(of("pientegra-0123456789abcdef.css").as_deref(), Some("text/css; charset=utf-8"));
        assert_eq!(of("notes.txt"), None);
    }
}
