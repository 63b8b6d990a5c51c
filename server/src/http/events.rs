//! `GET /api/events`: the user's Server-Sent Events stream.
//!
//! A browser's `EventSource` cannot send headers, and its URL lands in proxies'
//! access logs, so the URL carries a stream ticket (`?ticket=`, from
//! `POST /api/stream-ticket`: a minute long, good for this route only), never
//! the widget token; `?token=` is refused with `stream_ticket_required`.
//! Other clients may send the widget token as `Authorization: Bearer`.
//!
//! Every event has the user's monotonic sequence number as its `id`; a
//! reconnect with `Last-Event-ID` replays what was missed from storage, so a
//! restart of the server loses nothing. Streams end on shutdown, and when a
//! newer stream of the same user replaces them (see `sse::Hub::subscribe`).

use std::convert::Infallible;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::Stream;
use pientegra_shared::api::{UserEvent, codes};
use serde::Deserialize;

use super::AppState;
use super::auth::{User, check_ticket, check_token};
use super::error::{AppError, ErrorAnswers, error_answers};
use crate::storage::balance_event;

const KEEP_ALIVE: Duration = Duration::from_secs(15);
const RETRY_HINT: Duration = Duration::from_secs(2);
/// The reconnection delay a replaced stream leaves its browser with: pages of
/// a user beyond the limit take turns slowly instead of replacing each other
/// every two seconds.
const REPLACED_RETRY_HINT: Duration = Duration::from_secs(30);
const BATCH: i64 = 200;

pub fn router() -> Router<AppState> {
    Router::new().route("/api/events", get(events))
}

/// The routes' part of the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(events), components(schemas(StreamEvent)))]
pub(super) struct Api;

error_answers!(
    StreamErrors = ErrorAnswers::widget()
        .described(
            400,
            [(codes::VALIDATION_FAILED, "Failed to deserialize query string: lastEventId: invalid digit".to_owned())]
        )
        .on(401, &[codes::STREAM_TICKET_REQUIRED, codes::TICKET_EXPIRED])
);

/// One event of the stream, as its `id:`, `event:` and `data:` fields.
pub(super) struct StreamEvent;

impl utoipa::PartialSchema for StreamEvent {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, RefBuilder, Type};
        let event = |name: &str, data: &str| {
            ObjectBuilder::new()
                .property("id", ObjectBuilder::new().schema_type(Type::String).pattern(Some("^[0-9]+$")).description(
                    Some("The user's event sequence number: send it back as `Last-Event-ID` (or `?lastEventId=`) to resume"),
                ))
                .required("id")
                .property("event", ObjectBuilder::new().schema_type(Type::String).enum_values(Some([name])))
                .required("event")
                .property("data", RefBuilder::new()
                        .ref_location_from_schema_name(data)
                        .description(Some(format!("JSON: the {data} as it is now"))))
                .required("data")
        };
        OneOfBuilder::new()
            .item(event(UserEvent::DEPOSIT_UPDATED, "Deposit"))
            .item(event(UserEvent::WITHDRAWAL_UPDATED, "Withdrawal"))
            .item(event(UserEvent::BALANCE_UPDATED, "Balance"))
            .description(Some(
                "A Server-Sent Event: `id: <sequence>`, `event: <name>`, `data: <JSON>`. The stream opens with \
                 the comment `: connected` and a `retry:` hint, then (unless resuming) the current balance; \
                 comments keep it alive every 15 s.",
            ))
            .into()
    }
}

impl utoipa::ToSchema for StreamEvent {}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct StreamQuery {
    /// `EventSource` cannot send headers: a stream ticket comes here.
    ticket: Option<String>,
    /// Refused: a widget token does not belong in a URL.
    token: Option<String>,
    last_event_id: Option<i64>,
}

/// The user's event stream.
///
/// The user's Server-Sent Events stream: every change to a deposit,
/// withdrawal or the balance, each with its sequence number as `id`.
/// `Last-Event-ID` (or `?lastEventId=`) replays what was missed, across
/// restarts. A browser's `EventSource` opens it with `?ticket=` (from
/// `POST /api/stream-ticket`); other clients may send the widget token as
/// `Authorization: Bearer`. A widget token in the URL (`?token=`) is refused
/// with `stream_ticket_required`. The stream ends when the widget token expires.
#[utoipa::path(
    get, path = "/api/events", operation_id = "stream_events", tag = "events",
    security(("streamTicket" = []), ("widgetToken" = [])),
    params(
        ("ticket" = Option<String>, Query, description = "A stream ticket from `POST /api/stream-ticket`"),
        ("lastEventId" = Option<i64>, Query, description = "Resume after this event (as `Last-Event-ID`)"),
        ("Last-Event-ID" = Option<i64>, Header, description = "Resume after this event; wins over `lastEventId`"),
    ),
    responses(
        (status = 200, description = "The event stream", content_type = "text/event-stream", body = StreamEvent),
        StreamErrors,
    ),
)]
async fn events(
    State(state): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<StreamQuery>, QueryRejection>,
) -> Result<Response, AppError> {
    let Query(query) = query.map_err(|e| AppError::validation(e.body_text()))?;
    let bearer = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::to_owned);
    if query.token.is_some() {
        return Err(AppError::new(
            StatusCode::UNAUTHORIZED,
            codes::STREAM_TICKET_REQUIRED,
            "a widget token does not belong in a URL: POST /api/stream-ticket, then GET /api/events?ticket=",
        ));
    }
    let user = match (query.ticket, bearer) {
        (Some(ticket), _) => check_ticket(&state, &ticket)?,
        (None, Some(token)) => check_token(&state, &token)?,
        (None, None) => {
            return Err(AppError::unauthorized(
                "open the stream with ?ticket= (POST /api/stream-ticket), or send the widget token as Authorization: Bearer",
            ));
        }
    };
    let resume_from = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
        .or(query.last_event_id);
    let stream = user_stream(state, user, resume_from).await?;
    let mut response = Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)).into_response();
    // Proxies such as nginx must not buffer the stream.
    response.headers_mut().insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(response)
}

async fn user_stream(
    state: AppState,
    user: User,
    resume_from: Option<i64>,
) -> Result<impl Stream<Item = Result<Event, Infallible>>, AppError> {
    let user_id = user.id().to_owned();
    let mut subscription = state.hub.subscribe(&user_id);
    // Without Last-Event-ID the stream starts now, opening with the current balance.
    let (mut last, opening) = match resume_from {
        Some(seq) => (seq, None),
        None => {
            let seq = state.storage.last_event_seq(&user_id).await?;
            let balance = balance_event(state.storage.balance(&user_id).await?);
            (seq, Some(Event::default().id(seq.to_string()).event(balance.name()).data(balance.data())))
        }
    };
    let shutdown = state.shutdown.clone();
    let expires_at = user.0.expires_at;
    Ok(async_stream::stream! {
        yield Ok(Event::default().retry(RETRY_HINT).comment("connected"));
        if let Some(event) = opening {
            yield Ok(event);
        }
        loop {
            match state.storage.events_after(&user_id, last, BATCH).await {
                Ok(batch) => {
                    let full = i64::try_from(batch.len()).unwrap_or(BATCH) == BATCH;
                    for e in batch {
                        last = e.seq;
                        yield Ok(Event::default().id(e.seq.to_string()).event(e.name).data(e.data));
                    }
                    if full {
                        continue;
                    }
                }
                Err(err) => {
                    // The browser reconnects with Last-Event-ID and resumes where it was.
                    tracing::error!(error = format!("{err:#}"), "reading stream events");
                    break;
                }
            }
            let until_expiry = (expires_at - chrono::Utc::now()).to_std().unwrap_or_default();
            let replaced = tokio::select! {
                changed = subscription.wake.changed() => if changed.is_err() { break } else { false },
                _ = &mut subscription.replaced => true,
                () = shutdown.cancelled() => break,
                // A stream may not outlive its widget token (a ticket's stream ends
                // with the token it was issued for); the widget reconnects with a fresh one.
                () = tokio::time::sleep(until_expiry) => break,
            };
            if replaced {
                yield Ok(Event::default().retry(REPLACED_RETRY_HINT).comment("replaced by a newer stream"));
                break;
            }
        }
    })
}
