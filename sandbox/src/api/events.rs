//! Events & replay, and the site's webhook configuration.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::StatusCode;
use pientegra_shared::wire::{self, DeliveryStatus, Page, ReplayAccepted, WebhookConfig};
use serde_json::Value;

use super::list::{CursorKind, Query, encode_cursor, parse_id};
use crate::error::ApiError;
use crate::state::{AppState, now};
use crate::store::known_event_types;

/// `GET /external/events`: newest first, filtered by time, type and delivery status.
pub async fn list(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Page<wire::EventRecord>>, ApiError> {
    let mut query = Query::parse(query.as_deref());
    let window = query.window(CursorKind::Events)?;
    let types = query.list("eventType", |s| known_event_types().find(|known| *known == s))?;
    let statuses = query.list("deliveryStatus", DeliveryStatus::parse)?;
    let store = state.store();
    let (items, next) = store.events.page(&window, |e| {
        types.as_ref().is_none_or(|wanted| wanted.contains(&e.event_type))
            && statuses.as_ref().is_none_or(|wanted| wanted.contains(&e.delivery.status))
    });
    Ok(Json(Page {
        data: items.into_iter().map(|e| e.to_wire()).collect(),
        next_cursor: next.map(|key| encode_cursor(CursorKind::Events, key)),
    }))
}

/// `POST /external/events/{eventId}/replay`: 202, the event goes out again.
pub async fn replay(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<ReplayAccepted>), ApiError> {
    let event_id = parse_id(&id, "event")?;
    state.change(|store| store.replay(event_id))?;
    Ok((StatusCode::ACCEPTED, Json(ReplayAccepted { event_id, delivery_status: DeliveryStatus::Pending })))
}

/// `PUT /external/site/webhook-config`: sets the URL and (by default) rotates the secret.
///
/// A rotation applies to deliveries that have not started; one already
/// under way keeps the secret of its first attempt.
pub async fn webhook_config(State(state): State<AppState>, body: Bytes) -> Result<Json<WebhookConfig>, ApiError> {
    let value: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::invalid(format!("the request body is not valid JSON: {e}")))?;
    let Value::Object(fields) = value else {
        return Err(ApiError::invalid("the request body must be a JSON object"));
    };
    let url = match fields.get("webhookUrl") {
        Some(Value::String(url)) => check_webhook_url(url)?,
        Some(Value::Null) | None => return Err(ApiError::field("webhookUrl", "is required")),
        Some(_) => return Err(ApiError::field("webhookUrl", "must be a string")),
    };
    let rotate = match fields.get("rotateSecret") {
        Some(Value::Bool(rotate)) => *rotate,
        Some(Value::Null) | None => true,
        Some(_) => return Err(ApiError::field("rotateSecret", "must be true or false")),
    };
    let new_secret = rotate.then(|| format!("whsec_{}", URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())));
    let rotated_at = state.change(|store| {
        store.webhook.url = Some(url.clone());
        if let Some(secret) = &new_secret {
            store.webhook.secret = secret.clone();
            store.webhook.rotated_at = now();
        }
        store.webhook.rotated_at
    });
    tracing::info!(%url, rotated = rotate, "webhook configuration changed");
    Ok(Json(WebhookConfig { webhook_url: url, webhook_secret: new_secret, rotated_at: Some(rotated_at) }))
}

/// `https://` anywhere, `http://` only on loopback (a local receiver in a test or demo).
fn check_webhook_url(raw: &str) -> Result<String, ApiError> {
    let url = url::Url::parse(raw.trim()).map_err(|e| ApiError::field("webhookUrl", format!("is not a URL: {e}")))?;
    let loopback = match url.host() {
        Some(url::Host::Domain(domain)) => domain.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" if url.host().is_some() => Ok(url.into()),
        "http" if loopback => Ok(url.into()),
        "http" => Err(ApiError::field("webhookUrl", "must use https (http is accepted on loopback only)")),
        _ => Err(ApiError::field("webhookUrl", "must be an https URL")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls_are_https_or_loopback_http() {
        for ok in ["https://example.com/hook", "http://127.0.0.1:9000/h", "http://localhost/h", "http://[::1]:80/"] {
            assert!(check_webhook_url(ok).is_ok(), "{ok}");
        }
        for bad in ["http://example.com/hook", "ftp://127.0.0.1/", "not a url", "http://10.0.0.1/", "https://"] {
            assert!(check_webhook_url(bad).is_err(), "{bad}");
        }
    }
}
