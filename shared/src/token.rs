//! Widget tokens and stream tickets: the credentials a browser holds.
//!
//! A **widget token**, `pk1.<base64url(JSON {sub, lbl?, exp})>.<base64url(HMAC-SHA256)>`,
//! is minted by the partner's backend for its logged-in user with
//! `WIDGET_TOKEN_SECRET`: bound to one `externalUserId`, expiring, checked in
//! constant time. It travels in `Authorization: Bearer` only.
//!
//! A **stream ticket**, `st1.<base64url(JSON {sub, exp, end})>.<base64url(HMAC-SHA256)>`,
//! is what an `EventSource` URL carries instead (it cannot send headers, and
//! URLs end up in access logs). The server issues one for a valid widget token;
//! it opens `GET /api/events` for that user within [`TICKET_TTL`] and nothing
//! else, and the stream it opens ends when the widget token would have
//! expired (`end`). Its key is derived from the same secret under its own label
//! (HKDF-SHA256), so every instance sharing the secret accepts the tickets of
//! the others, and neither kind of credential verifies as the other.
//!
//! Pure: no clock (callers pass `now`), so the fuzz target and the wasm build
//! use it as the server does.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::ids::{ExternalUserId, UserLabel};

const TOKEN_PREFIX: &str = "pk1";
const TICKET_PREFIX: &str = "st1";
/// The HKDF `info` of the stream-ticket key: a new purpose gets a new label.
const TICKET_KEY_LABEL: &[u8] = b"pientegra-kit/stream-ticket/v1";

/// How long a stream ticket opens `GET /api/events`: long enough for the
/// browser to connect right after fetching it, short enough that one read
/// from an access log is of no use.
pub const TICKET_TTL: TimeDelta = TimeDelta::seconds(60);

/// Who a valid widget token speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    pub user: ExternalUserId,
    pub label: Option<UserLabel>,
    pub expires_at: DateTime<Utc>,
}

/// Who a valid stream ticket speaks for, and until when its stream may run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketClaims {
    pub user: ExternalUserId,
    /// The ticket opens a stream until then.
    pub expires_at: DateTime<Utc>,
    /// The expiry of the widget token it was issued for: the stream ends then.
    pub stream_until: DateTime<Utc>,
}

/// A stream ticket and the moment it stops opening streams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ticket {
    pub ticket: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
struct TokenPayload {
    sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lbl: Option<String>,
    /// Unix seconds.
    exp: i64,
}

#[derive(Serialize, Deserialize)]
struct TicketPayload {
    sub: String,
    /// Unix seconds: the ticket opens no stream from then on.
    exp: i64,
    /// Unix seconds: the stream it opened ends then.
    end: i64,
}

/// Why a token or ticket was refused. Messages never repeat the credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the credential is malformed")]
    Malformed,
    #[error("the credential's signature is not valid")]
    BadSignature,
    #[error("the credential has expired")]
    Expired,
}

/// HMAC-SHA256 of `prefix.payload_b64` under `key`.
fn mac(key: &[u8], prefix: &str, payload_b64: &str) -> [u8; 32] {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(prefix.as_bytes());
    mac.update(b".");
    mac.update(payload_b64.as_bytes());
    mac.finalize().into_bytes().into()
}

/// `prefix.payload.signature` for a JSON payload.
fn seal(key: &[u8], prefix: &str, payload: &impl Serialize) -> String {
    let payload_b64 = URL_SAFE_NO_PAD.encode(serde_json::to_vec(payload).expect("the payload serializes"));
    let sig = URL_SAFE_NO_PAD.encode(mac(key, prefix, &payload_b64));
    format!("{prefix}.{payload_b64}.{sig}")
}

/// The payload of `prefix.payload.signature` once its signature checks (in
/// constant time, before anything reads the payload).
fn open<T: for<'de> Deserialize<'de>>(key: &[u8], prefix: &str, sealed: &str) -> Result<T, TokenError> {
    let mut parts = sealed.trim().split('.');
    let (Some(found), Some(payload_b64), Some(sig_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    if found != prefix {
        return Err(TokenError::Malformed);
    }
    let sig = URL_SAFE_NO_PAD.decode(sig_b64).map_err(|_| TokenError::Malformed)?;
    let expected = mac(key, prefix, payload_b64);
    if sig.len() != expected.len() || !bool::from(sig.ct_eq(&expected)) {
        return Err(TokenError::BadSignature);
    }
    URL_SAFE_NO_PAD
        .decode(payload_b64)
        .ok()
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .ok_or(TokenError::Malformed)
}

fn instant(unix_seconds: i64) -> Result<DateTime<Utc>, TokenError> {
    DateTime::from_timestamp(unix_seconds, 0).ok_or(TokenError::Malformed)
}

/// Mints and checks widget tokens with one secret, and holds the stream-ticket
/// key derived from it.
#[derive(Clone)]
pub struct TokenKey {
    secret: SecretString,
    tickets: TicketKey,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey([redacted])")
    }
}

impl TokenKey {
    /// Wraps the `WIDGET_TOKEN_SECRET`.
    pub fn new(secret: SecretString) -> TokenKey {
        let tickets = TicketKey::derive(&secret);
        TokenKey { secret, tickets }
    }

    /// A token for `user` valid until `expires_at`.
    pub fn mint(&self, user: &ExternalUserId, label: Option<&UserLabel>, expires_at: DateTime<Utc>) -> String {
        let payload = TokenPayload {
            sub: user.as_str().to_owned(),
            lbl: label.map(|l| l.as_str().to_owned()),
            exp: expires_at.timestamp(),
        };
        seal(self.secret.expose_secret().as_bytes(), TOKEN_PREFIX, &payload)
    }

    /// Checks the signature first (constant time), then expiry against `now`.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Claims, TokenError> {
        let payload: TokenPayload = open(self.secret.expose_secret().as_bytes(), TOKEN_PREFIX, token)?;
        let expires_at = instant(payload.exp)?;
        if expires_at <= now {
            return Err(TokenError::Expired);
        }
        let user = ExternalUserId::parse(&payload.sub).map_err(|_| TokenError::Malformed)?;
        let label = payload.lbl.as_deref().map(UserLabel::parse).transpose().map_err(|_| TokenError::Malformed)?;
        Ok(Claims { user, label, expires_at })
    }

    /// The stream-ticket key of the same secret.
    pub fn tickets(&self) -> &TicketKey {
        &self.tickets
    }
}

/// Issues and checks stream tickets (see the module's documentation).
#[derive(Clone)]
pub struct TicketKey([u8; 32]);

impl std::fmt::Debug for TicketKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TicketKey([redacted])")
    }
}

impl TicketKey {
    /// The ticket key of a `WIDGET_TOKEN_SECRET`: HKDF-SHA256 under the ticket label.
    pub fn derive(secret: &SecretString) -> TicketKey {
        let mut key = [0u8; 32];
        hkdf::Hkdf::<Sha256>::new(None, secret.expose_secret().as_bytes())
            .expand(TICKET_KEY_LABEL, &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 length");
        TicketKey(key)
    }

    /// A ticket for the holder of a verified widget token: valid for
    /// [`TICKET_TTL`] (never past the token), its stream ending with the token.
    pub fn issue(&self, claims: &Claims, now: DateTime<Utc>) -> Ticket {
        let expires_at = now.checked_add_signed(TICKET_TTL).map_or(claims.expires_at, |t| t.min(claims.expires_at));
        let payload = TicketPayload {
            sub: claims.user.as_str().to_owned(),
            exp: expires_at.timestamp(),
            end: claims.expires_at.timestamp(),
        };
        Ticket { ticket: seal(&self.0, TICKET_PREFIX, &payload), expires_at }
    }

    /// Checks the signature first (constant time), then expiry against `now`.
    pub fn verify(&self, ticket: &str, now: DateTime<Utc>) -> Result<TicketClaims, TokenError> {
        let payload: TicketPayload = open(&self.0, TICKET_PREFIX, ticket)?;
        let expires_at = instant(payload.exp)?;
        if expires_at <= now {
            return Err(TokenError::Expired);
        }
        let stream_until = instant(payload.end)?;
        let user = ExternalUserId::parse(&payload.sub).map_err(|_| TokenError::Malformed)?;
        Ok(TicketClaims { user, expires_at, stream_until })
    }
}

/// Whether `credential` has the shape of a stream ticket (so that a refusal
/// can say where tickets go). Says nothing about its validity.
pub fn looks_like_ticket(credential: &str) -> bool {
    credential.trim().starts_with("st1.")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn key(secret: &str) -> TokenKey {
        TokenKey::new(SecretString::from(secret.to_owned()))
    }

    /// The tests' clock: `shared` has none.
    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_767_225_600, 0).unwrap()
    }

    fn user(id: &str) -> ExternalUserId {
        ExternalUserId::parse(id).unwrap()
    }

    #[test]
    fn a_minted_token_verifies_until_it_expires() {
        let k = key("0123456789abcdef0123456789abcdef");
        let now = now();
        let token = k.mint(&user("user-1"), None, now + Duration::hours(1));
        assert_eq!(k.verify(&token, now).unwrap().user, user("user-1"));
        assert_eq!(k.verify(&token, now + Duration::hours(2)), Err(TokenError::Expired));
    }

    #[test]
    fn forged_and_foreign_tokens_are_refused() {
        let k = key("0123456789abcdef0123456789abcdef");
        let other = key("fedcba9876543210fedcba9876543210");
        let now = now();
        let token = other.mint(&user("user-1"), None, now + Duration::hours(1));
        assert_eq!(k.verify(&token, now), Err(TokenError::BadSignature));
        // Swapping the payload for another user's breaks the signature.
        let mine = k.mint(&user("user-1"), None, now + Duration::hours(1));
        let theirs = k.mint(&user("user-2"), None, now + Duration::hours(1));
        let forged = format!("pk1.{}.{}", theirs.split('.').nth(1).unwrap(), mine.split('.').nth(2).unwrap());
        assert_eq!(k.verify(&forged, now), Err(TokenError::BadSignature));
        assert_eq!(k.verify("pk1.x", now), Err(TokenError::Malformed));
        assert_eq!(k.verify("", now), Err(TokenError::Malformed));
        assert!(!format!("{k:?}").contains("0123"));
    }

    #[test]
    fn a_ticket_opens_a_stream_for_a_minute_and_the_stream_ends_with_the_token() {
        let k = key("0123456789abcdef0123456789abcdef");
        let now = now();
        let claims = k.verify(&k.mint(&user("user-1"), None, now + Duration::hours(1)), now).unwrap();
        let ticket = k.tickets().issue(&claims, now);
        assert_eq!(ticket.expires_at, now + TICKET_TTL);
        let checked = k.tickets().verify(&ticket.ticket, now + Duration::seconds(59)).unwrap();
        assert_eq!(checked.user, user("user-1"));
        assert_eq!(checked.stream_until, now + Duration::hours(1));
        assert_eq!(k.tickets().verify(&ticket.ticket, now + TICKET_TTL), Err(TokenError::Expired));
        assert!(looks_like_ticket(&ticket.ticket));
        assert!(!format!("{:?}", k.tickets()).contains("0123"));
    }

    #[test]
    fn a_ticket_never_outlives_its_token() {
        let k = key("0123456789abcdef0123456789abcdef");
        let now = now();
        let claims = k.verify(&k.mint(&user("user-1"), None, now + Duration::seconds(10)), now).unwrap();
        let ticket = k.tickets().issue(&claims, now);
        assert_eq!(ticket.expires_at, now + Duration::seconds(10));
        assert_eq!(k.tickets().verify(&ticket.ticket, now + Duration::seconds(10)), Err(TokenError::Expired));
    }

    #[test]
    fn tickets_and_tokens_never_pass_for_each_other() {
        let k = key("0123456789abcdef0123456789abcdef");
        let now = now();
        let token = k.mint(&user("user-1"), None, now + Duration::hours(1));
        let ticket = k.tickets().issue(&k.verify(&token, now).unwrap(), now).ticket;
        assert_eq!(k.verify(&ticket, now), Err(TokenError::Malformed));
        assert_eq!(k.tickets().verify(&token, now), Err(TokenError::Malformed));
        // Relabelled, each is still signed with the other key.
        let relabelled = ticket.replacen("st1.", "pk1.", 1);
        assert_eq!(k.verify(&relabelled, now), Err(TokenError::BadSignature));
        let relabelled = token.replacen("pk1.", "st1.", 1);
        assert_eq!(k.tickets().verify(&relabelled, now), Err(TokenError::BadSignature));
    }

    #[test]
    fn another_users_or_another_secrets_ticket_is_refused() {
        let k = key("0123456789abcdef0123456789abcdef");
        let now = now();
        let claims = |id| Claims { user: user(id), label: None, expires_at: now + Duration::hours(1) };
        let mine = k.tickets().issue(&claims("user-1"), now).ticket;
        let theirs = k.tickets().issue(&claims("user-2"), now).ticket;
        let spliced = format!("st1.{}.{}", theirs.split('.').nth(1).unwrap(), mine.split('.').nth(2).unwrap());
        assert_eq!(k.tickets().verify(&spliced, now), Err(TokenError::BadSignature));
        let foreign = key("fedcba9876543210fedcba9876543210").tickets().issue(&claims("user-1"), now).ticket;
        assert_eq!(k.tickets().verify(&foreign, now), Err(TokenError::BadSignature));
    }

    #[test]
    fn instances_sharing_a_secret_accept_each_others_tickets() {
        let a = key("0123456789abcdef0123456789abcdef");
        let b = key("0123456789abcdef0123456789abcdef");
        let now = now();
        let claims = Claims { user: user("user-1"), label: None, expires_at: now + Duration::hours(1) };
        let ticket = a.tickets().issue(&claims, now).ticket;
        assert_eq!(b.tickets().verify(&ticket, now).unwrap().user, user("user-1"));
    }
}
