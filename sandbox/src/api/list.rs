//! Lookups and the cursor-paginated listings of intents and withdrawals,
//! plus the query parsing and the opaque keyset cursor the events listing shares.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use pientegra_shared::status::{IntentStatus, WithdrawalStatus};
use pientegra_shared::time::{self, Timestamp};
use pientegra_shared::wire::{self, Page};
use uuid::Uuid;

use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{Key, Window};

/// Page size when the query names none.
const DEFAULT_LIMIT: usize = 50;
/// Largest page size.
const MAX_LIMIT: usize = 100;

/// `GET /external/intents/{id}`.
pub async fn intent(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<wire::Intent>, ApiError> {
    let id = parse_id(&id, "intent")?;
    state.store().intents.get(&id).map(|i| Json(i.to_wire())).ok_or_else(|| not_found("intent"))
}

/// `GET /external/withdrawals/{id}`.
pub async fn withdrawal(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<wire::Withdrawal>, ApiError> {
    let id = parse_id(&id, "withdrawal")?;
    state.store().withdrawals.get(&id).map(|w| Json(w.to_wire())).ok_or_else(|| not_found("withdrawal"))
}

/// `GET /external/intents`: newest first.
pub async fn intents(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Page<wire::Intent>>, ApiError> {
    let mut query = Query::parse(query.as_deref());
    let window = query.window(CursorKind::Intents)?;
    let statuses = query.list("status", IntentStatus::parse)?;
    let store = state.store();
    let (items, next) =
        store.intents.page(&window, |i| statuses.as_ref().is_none_or(|wanted| wanted.contains(&i.status)));
    Ok(Json(Page {
        data: items.into_iter().map(|i| i.to_wire()).collect(),
        next_cursor: next.map(|key| encode_cursor(CursorKind::Intents, key)),
    }))
}

/// `GET /external/withdrawals`: newest first.
pub async fn withdrawals(
    State(state): State<AppState>,
    RawQuery(query): RawQuery,
) -> Result<Json<Page<wire::Withdrawal>>, ApiError> {
    let mut query = Query::parse(query.as_deref());
    let window = query.window(CursorKind::Withdrawals)?;
    let statuses = query.list("status", WithdrawalStatus::parse)?;
    let store = state.store();
    let (items, next) =
        store.withdrawals.page(&window, |w| statuses.as_ref().is_none_or(|wanted| wanted.contains(&w.status)));
    Ok(Json(Page {
        data: items.into_iter().map(|w| w.to_wire()).collect(),
        next_cursor: next.map(|key| encode_cursor(CursorKind::Withdrawals, key)),
    }))
}

/// A path id that is not a UUID names nothing: 404, like an unknown one.
pub fn parse_id(raw: &str, what: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(raw).map_err(|_| not_found(what))
}

fn not_found(what: &str) -> ApiError {
    ApiError::NotFound(format!("no such {what}"))
}

/// Which listing a cursor belongs to, so one listing's cursor is refused by another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CursorKind {
    Intents,
    Withdrawals,
    Events,
}

impl CursorKind {
    fn tag(self) -> &'static str {
        match self {
            CursorKind::Intents => "i",
            CursorKind::Withdrawals => "w",
            CursorKind::Events => "e",
        }
    }
}

/// `base64url("<kind>:<createdAt unix ms>:<id>")`; clients must treat it as opaque.
pub fn encode_cursor(kind: CursorKind, (created_at, id): Key) -> String {
    URL_SAFE_NO_PAD.encode(format!("{}:{}:{id}", kind.tag(), created_at.timestamp_millis()))
}

fn decode_cursor(kind: CursorKind, cursor: &str) -> Option<Key> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(cursor).ok()?).ok()?;
    let mut parts = text.splitn(3, ':');
    if parts.next()? != kind.tag() {
        return None;
    }
    let created_at = time::from_unix_millis(parts.next()?.parse().ok()?)?;
    let id = Uuid::parse_str(parts.next()?).ok()?;
    Some((created_at, id))
}

/// A listing's query string, taken apart field by field so each fault names its field.
/// Unknown parameters are ignored, as unknown fields are everywhere in the API.
pub struct Query {
    params: HashMap<String, String>,
}

impl Query {
    /// Splits a raw query; a repeated parameter keeps its last value.
    pub fn parse(raw: Option<&str>) -> Query {
        let params = url::form_urlencoded::parse(raw.unwrap_or_default().as_bytes()).into_owned().collect();
        Query { params }
    }

    fn take(&mut self, name: &str) -> Option<String> {
        self.params.remove(name)
    }

    fn time(&mut self, name: &'static str) -> Result<Option<Timestamp>, ApiError> {
        self.take(name)
            .map(|raw| {
                time::parse(&raw).ok_or_else(|| ApiError::field(name, format!("{raw:?} is not an ISO 8601 time")))
            })
            .transpose()
    }

    /// `createdFrom`, `createdTo` (default now: no record is newer), `cursor` and `limit`.
    pub fn window(&mut self, kind: CursorKind) -> Result<Window, ApiError> {
        let from = self.time("createdFrom")?;
        let to = self.time("createdTo")?;
        let before = self
            .take("cursor")
            .map(|raw| {
                decode_cursor(kind, &raw)
                    .ok_or_else(|| ApiError::field("cursor", "is not a cursor this listing issued"))
            })
            .transpose()?;
        let limit = match self.take("limit") {
            None => DEFAULT_LIMIT,
            Some(raw) => raw.parse::<usize>().ok().filter(|n| (1..=MAX_LIMIT).contains(n)).ok_or_else(|| {
                ApiError::field("limit", format!("must be an integer in 1..={MAX_LIMIT}, got {raw:?}"))
            })?,
        };
        Ok(Window { from, to, before, limit })
    }

    /// A comma-separated list whose every item `parse` knows; `None` when absent.
    pub fn list<T>(
        &mut self,
        name: &'static str,
        parse: impl Fn(&str) -> Option<T>,
    ) -> Result<Option<Vec<T>>, ApiError> {
        let Some(raw) = self.take(name) else { return Ok(None) };
        raw.split(',')
            .map(|item| {
                let item = item.trim();
                parse(item).ok_or_else(|| ApiError::field(name, format!("unknown value {item:?}")))
            })
            .collect::<Result<Vec<T>, ApiError>>()
            .map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_stay_in_their_listing() {
        let key = (time::parse("2026-04-28T12:30:00.123Z").unwrap(), Uuid::now_v7());
        let cursor = encode_cursor(CursorKind::Intents, key);
        assert_eq!(decode_cursor(CursorKind::Intents, &cursor), Some(key));
        assert_eq!(decode_cursor(CursorKind::Events, &cursor), None);
        assert_eq!(decode_cursor(CursorKind::Intents, "garbage!"), None);
        assert_eq!(decode_cursor(CursorKind::Intents, &URL_SAFE_NO_PAD.encode("i:x:y")), None);
    }
}
