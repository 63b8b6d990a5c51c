//! Widget tokens and stream tickets: the credentials a browser holds.
//!
//! A **widget token** is a JWT (RFC 7519) signed with HS256 under
//! `WIDGET_TOKEN_SECRET`, minted by the partner's backend for its logged-in
//! user with any standard JWT library. Its claims:
//!
//! | claim  | required | meaning |
//! |--------|----------|---------|
//! | `sub`  | yes | the user's `externalUserId` (1 to 128 characters, no control characters) |
//! | `aud`  | yes | [`AUDIENCE`], `"pientegra-kit/widget"` |
//! | `iat`  | yes | issued at, Unix seconds; at most [`CLOCK_SKEW`] in the future |
//! | `exp`  | yes | expires at, Unix seconds; at most the maximum lifetime after `iat` ([`DEFAULT_MAX_LIFETIME`] unless configured) |
//! | `name` | no  | the user's display name (1 to 128 characters) |
//! | `nbf`  | no  | not before, Unix seconds; honoured like `iat` |
//!
//! Any other `alg` than HS256 (`none` included) is refused before the
//! signature is looked at; every other check comes after it, so only a holder
//! of the secret learns which claim was wrong. During a rotation the key holds
//! several secrets, newest first: it mints with the newest and accepts a token
//! signed with any. It travels in `Authorization: Bearer` only.
//!
//! A **stream ticket**, `st1.<base64url(JSON {sub, exp, end})>.<base64url(HMAC-SHA256)>`,
//! is what an `EventSource` URL carries instead (it cannot send headers, and
//! URLs end up in access logs). The server issues one for a valid widget token;
//! it opens `GET /api/events` for that user within [`TICKET_TTL`] and nothing
//! else, and the stream it opens ends when the widget token would have
//! expired (`end`). Its key is derived from the newest secret under its own
//! label (HKDF-SHA256), and tickets of every secret of the rotation verify, so
//! every instance sharing the secrets accepts the tickets of the others, and
//! neither kind of credential verifies as the other.
//!
//! Pure: no clock (callers pass `now`), so the fuzz target uses it as the
//! server does. The JWT library does not build for wasm32, so the module is
//! behind the `token` feature, which the server enables.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::api::codes;
use crate::ids::{ExternalUserId, UserLabel};

/// The `aud` every widget token names: this kit's widget API.
pub const AUDIENCE: &str = "pientegra-kit/widget";
/// The longest `exp − iat` accepted unless configured otherwise.
pub const DEFAULT_MAX_LIFETIME: TimeDelta = TimeDelta::hours(24);
/// How far in the future `iat` (or `nbf`) may be: the partner's clock and ours differ a little.
pub const CLOCK_SKEW: TimeDelta = TimeDelta::seconds(60);
/// The shortest accepted `WIDGET_TOKEN_SECRET`: HS256 is as strong as its key.
pub const MIN_SECRET_BYTES: usize = 32;

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

/// The claims [`TokenKey::mint`] writes.
#[derive(Serialize)]
struct MintedClaims<'a> {
    sub: &'a str,
    aud: &'static str,
    iat: i64,
    exp: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
}

/// The claims [`TokenKey::verify`] reads (`aud` is the JWT library's to check).
/// Each is optional here so that a missing one is named, not a parse error.
#[derive(Deserialize)]
struct ReadClaims {
    sub: Option<String>,
    iat: Option<i64>,
    exp: Option<i64>,
    nbf: Option<i64>,
    name: Option<String>,
}

/// The JOSE header, as far as the algorithm check reads it.
#[derive(Deserialize)]
struct JoseHeader {
    alg: String,
}

#[derive(Serialize, Deserialize)]
struct TicketPayload {
    sub: String,
    /// Unix seconds: the ticket opens no stream from then on.
    exp: i64,
    /// Unix seconds: the stream it opened ends then.
    end: i64,
}

/// Why a token or ticket was refused. Messages say what to fix and never
/// repeat the credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the credential is malformed")]
    Malformed,
    #[error("the credential's signature is not valid")]
    BadSignature,
    #[error("the credential has expired")]
    Expired,
    #[error("the token's alg must be HS256")]
    WrongAlgorithm,
    #[error("the token's aud must be \"pientegra-kit/widget\"")]
    WrongAudience,
    #[error("the token lacks a required claim (sub, iat and exp are required)")]
    MissingClaim,
    #[error("the token's exp must be after its iat, by at most the maximum lifetime")]
    Lifetime,
    #[error("the token's iat or nbf is in the future")]
    NotYetValid,
    #[error("the token's sub is not a valid user id (1 to 128 characters, no control characters)")]
    BadSubject,
    #[error("the token's name is not a valid display name (1 to 128 characters, no control characters)")]
    BadName,
}

impl TokenError {
    /// The stable code of the refusal (see [`codes`]).
    pub fn code(self) -> &'static str {
        match self {
            TokenError::Malformed | TokenError::BadSignature => codes::UNAUTHORIZED,
            TokenError::Expired => codes::TOKEN_EXPIRED,
            TokenError::WrongAlgorithm => codes::TOKEN_WRONG_ALGORITHM,
            TokenError::WrongAudience => codes::TOKEN_WRONG_AUDIENCE,
            TokenError::MissingClaim => codes::TOKEN_MISSING_CLAIM,
            TokenError::Lifetime => codes::TOKEN_LIFETIME_REFUSED,
            TokenError::NotYetValid => codes::TOKEN_NOT_YET_VALID,
            TokenError::BadSubject | TokenError::BadName => codes::TOKEN_INVALID_CLAIM,
        }
    }
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

/// The `alg` of a JWT's header, read before any key is tried.
fn algorithm(token: &str) -> Result<String, TokenError> {
    let header_b64 = token.split('.').next().unwrap_or_default();
    let raw = URL_SAFE_NO_PAD.decode(header_b64).map_err(|_| TokenError::Malformed)?;
    let header: JoseHeader = serde_json::from_slice(&raw).map_err(|_| TokenError::Malformed)?;
    Ok(header.alg)
}

/// What the JWT library checks: HS256, the signature, and `aud`. Times are
/// checked against the caller's `now`, so its own clock stays out of it.
fn validation() -> Validation {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_audience(&[AUDIENCE]);
    validation.set_required_spec_claims(&["aud"]);
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation
}

/// One secret of the rotation, ready to sign and verify.
#[derive(Clone)]
struct Secret {
    encoding: EncodingKey,
    decoding: DecodingKey,
}

/// Mints and checks widget tokens with the secrets of a rotation (newest
/// first), and holds the stream-ticket keys derived from them.
#[derive(Clone)]
pub struct TokenKey {
    /// Never empty; the first mints.
    secrets: Vec<Secret>,
    max_lifetime: TimeDelta,
    tickets: TicketKey,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey([redacted])")
    }
}

impl TokenKey {
    /// Wraps the (newest) `WIDGET_TOKEN_SECRET`; the maximum lifetime is [`DEFAULT_MAX_LIFETIME`].
    pub fn new(secret: SecretString) -> TokenKey {
        TokenKey {
            secrets: vec![Secret::from(&secret)],
            max_lifetime: DEFAULT_MAX_LIFETIME,
            tickets: TicketKey::derive(&secret),
        }
    }

    /// Also accepts tokens and tickets signed with `older` secrets, newest first.
    pub fn with_previous(mut self, older: impl IntoIterator<Item = SecretString>) -> TokenKey {
        for secret in older {
            self.secrets.push(Secret::from(&secret));
            self.tickets.keys.push(TicketKey::derive(&secret).keys[0]);
        }
        self
    }

    /// Refuses tokens whose `exp − iat` is longer than `max_lifetime`.
    pub fn with_max_lifetime(mut self, max_lifetime: TimeDelta) -> TokenKey {
        self.max_lifetime = max_lifetime;
        self
    }

    /// The longest `exp − iat` this key accepts.
    pub fn max_lifetime(&self) -> TimeDelta {
        self.max_lifetime
    }

    /// A token for `user`, issued at `issued_at`, valid until `expires_at`,
    /// signed with the newest secret.
    pub fn mint(
        &self,
        user: &ExternalUserId,
        label: Option<&UserLabel>,
        issued_at: DateTime<Utc>,
        expires_at: DateTime<Utc>,
    ) -> String {
        let claims = MintedClaims {
            sub: user.as_str(),
            aud: AUDIENCE,
            iat: issued_at.timestamp(),
            exp: expires_at.timestamp(),
            name: label.map(UserLabel::as_str),
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.secrets[0].encoding)
            .expect("HS256 signs any claims that serialize")
    }

    /// Checks the algorithm, then the signature against each secret, then the
    /// claims against `now` (see the module's documentation).
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Claims, TokenError> {
        let token = token.trim();
        if algorithm(token)? != "HS256" {
            return Err(TokenError::WrongAlgorithm);
        }
        let validation = validation();
        let mut read = Err(TokenError::BadSignature);
        for secret in &self.secrets {
            match jsonwebtoken::decode::<ReadClaims>(token, &secret.decoding, &validation) {
                Err(e) if *e.kind() == ErrorKind::InvalidSignature => continue,
                decoded => {
                    read = decoded.map(|data| data.claims).map_err(|e| refusal(e.kind()));
                    break;
                }
            }
        }
        self.check(read?, now)
    }

    /// The claims' own rules, once the signature and `aud` hold.
    fn check(&self, read: ReadClaims, now: DateTime<Utc>) -> Result<Claims, TokenError> {
        let (Some(sub), Some(iat), Some(exp)) = (read.sub, read.iat, read.exp) else {
            return Err(TokenError::MissingClaim);
        };
        let user = ExternalUserId::parse(&sub).map_err(|_| TokenError::BadSubject)?;
        let label = read.name.as_deref().map(UserLabel::parse).transpose().map_err(|_| TokenError::BadName)?;
        let (issued_at, expires_at) = (instant(iat)?, instant(exp)?);
        let latest_start = now.checked_add_signed(CLOCK_SKEW).unwrap_or(DateTime::<Utc>::MAX_UTC);
        let not_before = read.nbf.map(instant).transpose()?;
        if issued_at > latest_start || not_before.is_some_and(|nbf| nbf > latest_start) {
            return Err(TokenError::NotYetValid);
        }
        let lifetime = expires_at - issued_at;
        if lifetime <= TimeDelta::zero() || lifetime > self.max_lifetime {
            return Err(TokenError::Lifetime);
        }
        if expires_at <= now {
            return Err(TokenError::Expired);
        }
        Ok(Claims { user, label, expires_at })
    }

    /// The stream-ticket keys of the same secrets.
    pub fn tickets(&self) -> &TicketKey {
        &self.tickets
    }
}

impl From<&SecretString> for Secret {
    fn from(secret: &SecretString) -> Secret {
        let bytes = secret.expose_secret().as_bytes();
        Secret { encoding: EncodingKey::from_secret(bytes), decoding: DecodingKey::from_secret(bytes) }
    }
}

/// The refusal a JWT library error stands for.
fn refusal(kind: &ErrorKind) -> TokenError {
    match kind {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => TokenError::WrongAlgorithm,
        // `aud` is the only claim the library is told to require.
        ErrorKind::InvalidAudience | ErrorKind::MissingRequiredClaim(_) => TokenError::WrongAudience,
        _ => TokenError::Malformed,
    }
}

/// Issues and checks stream tickets (see the module's documentation).
#[derive(Clone)]
pub struct TicketKey {
    /// Never empty; the first issues.
    keys: Vec<[u8; 32]>,
}

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
        TicketKey { keys: vec![key] }
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
        Ticket { ticket: seal(&self.keys[0], TICKET_PREFIX, &payload), expires_at }
    }

    /// Checks the signature against each key (constant time), then expiry against `now`.
    pub fn verify(&self, ticket: &str, now: DateTime<Utc>) -> Result<TicketClaims, TokenError> {
        let mut opened = Err(TokenError::BadSignature);
        for key in &self.keys {
            opened = open::<TicketPayload>(key, TICKET_PREFIX, ticket);
            if !matches!(opened, Err(TokenError::BadSignature)) {
                break;
            }
        }
        let payload = opened?;
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
    use serde_json::json;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

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

    /// A token of `claims` under `header`, signed with `secret` as any JWT library would.
    fn jwt(header: serde_json::Value, claims: serde_json::Value, secret: &str) -> String {
        let signing_input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
        mac.update(signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
    }

    fn hs256() -> serde_json::Value {
        json!({"alg": "HS256", "typ": "JWT"})
    }

    /// Valid claims for `user-1`, issued a minute ago for an hour.
    fn good_claims() -> serde_json::Value {
        let iat = now().timestamp() - 60;
        json!({"sub": "user-1", "aud": AUDIENCE, "iat": iat, "exp": iat + 3600, "name": "Ada"})
    }

    fn with(mut claims: serde_json::Value, field: &str, value: serde_json::Value) -> serde_json::Value {
        if value.is_null() {
            claims.as_object_mut().unwrap().remove(field);
        } else {
            claims[field] = value;
        }
        claims
    }

    #[test]
    fn a_minted_token_verifies_until_it_expires() {
        let k = key(SECRET);
        let now = now();
        let label = UserLabel::parse("Ada").unwrap();
        let token = k.mint(&user("user-1"), Some(&label), now, now + Duration::hours(1));
        let claims = k.verify(&token, now).unwrap();
        assert_eq!((claims.user, claims.label), (user("user-1"), Some(label)));
        assert_eq!(k.verify(&token, now + Duration::hours(2)), Err(TokenError::Expired));
        assert_eq!(TokenError::Expired.code(), codes::TOKEN_EXPIRED);
    }

    #[test]
    fn a_minted_token_is_a_standard_jwt_with_the_documented_claims() {
        let token = key(SECRET).mint(&user("user-1"), None, now(), now() + Duration::hours(1));
        let parts: Vec<&str> = token.split('.').collect();
        let header: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(header["alg"], "HS256");
        let iat = now().timestamp();
        assert_eq!(claims, json!({"sub": "user-1", "aud": AUDIENCE, "iat": iat, "exp": iat + 3600}));
        // Signed as any library signs: the same claims, signed here, verify.
        assert_eq!(key(SECRET).verify(&jwt(hs256(), good_claims(), SECRET), now()).unwrap().user, user("user-1"));
    }

    #[test]
    fn each_refused_kind_has_its_error_and_code() {
        let k = key(SECRET);
        let t = now().timestamp();
        let cases = [
            ("alg none", jwt(json!({"alg": "none"}), good_claims(), SECRET), TokenError::WrongAlgorithm),
            ("alg HS512", jwt(json!({"alg": "HS512"}), good_claims(), SECRET), TokenError::WrongAlgorithm),
            ("alg RS256", jwt(json!({"alg": "RS256"}), good_claims(), SECRET), TokenError::WrongAlgorithm),
            ("no aud", jwt(hs256(), with(good_claims(), "aud", json!(null)), SECRET), TokenError::WrongAudience),
            ("wrong aud", jwt(hs256(), with(good_claims(), "aud", json!("other")), SECRET), TokenError::WrongAudience),
            ("no exp", jwt(hs256(), with(good_claims(), "exp", json!(null)), SECRET), TokenError::MissingClaim),
            ("no iat", jwt(hs256(), with(good_claims(), "iat", json!(null)), SECRET), TokenError::MissingClaim),
            ("no sub", jwt(hs256(), with(good_claims(), "sub", json!(null)), SECRET), TokenError::MissingClaim),
            ("25 h", jwt(hs256(), with(good_claims(), "exp", json!(t - 60 + 25 * 3600)), SECRET), TokenError::Lifetime),
            ("exp before iat", jwt(hs256(), with(good_claims(), "exp", json!(t - 61)), SECRET), TokenError::Lifetime),
            (
                "iat in 2 min",
                jwt(hs256(), with(with(good_claims(), "iat", json!(t + 120)), "exp", json!(t + 600)), SECRET),
                TokenError::NotYetValid,
            ),
            ("nbf in 2 min", jwt(hs256(), with(good_claims(), "nbf", json!(t + 120)), SECRET), TokenError::NotYetValid),
            ("empty sub", jwt(hs256(), with(good_claims(), "sub", json!("  ")), SECRET), TokenError::BadSubject),
            ("control sub", jwt(hs256(), with(good_claims(), "sub", json!("a\u{7}")), SECRET), TokenError::BadSubject),
            ("empty name", jwt(hs256(), with(good_claims(), "name", json!("")), SECRET), TokenError::BadName),
            ("expired", jwt(hs256(), with(good_claims(), "exp", json!(t)), SECRET), TokenError::Expired),
            ("other secret", jwt(hs256(), good_claims(), "fedcba9876543210fedcba9876543210"), TokenError::BadSignature),
            ("two parts", "eyJhbGciOiJIUzI1NiJ9.e30".to_owned(), TokenError::Malformed),
            ("empty", String::new(), TokenError::Malformed),
        ];
        for (what, token, refused) in cases {
            assert_eq!(k.verify(&token, now()), Err(refused), "{what}");
        }
        // Within the skew, and up to the maximum, is fine.
        let at_edge = with(with(good_claims(), "iat", json!(t + 60)), "exp", json!(t + 60 + 24 * 3600));
        assert!(k.verify(&jwt(hs256(), at_edge, SECRET), now()).is_ok());
        let codes: std::collections::BTreeSet<_> = [
            TokenError::WrongAlgorithm,
            TokenError::WrongAudience,
            TokenError::MissingClaim,
            TokenError::Lifetime,
            TokenError::NotYetValid,
            TokenError::BadSubject,
            TokenError::Expired,
            TokenError::BadSignature,
        ]
        .map(TokenError::code)
        .into();
        assert_eq!(codes.len(), 8, "each kind has its own code");
    }

    #[test]
    fn claims_are_checked_only_once_the_signature_holds() {
        let k = key(SECRET);
        let foreign = "fedcba9876543210fedcba9876543210";
        for claims in [with(good_claims(), "aud", json!("other")), with(good_claims(), "exp", json!(null))] {
            assert_eq!(k.verify(&jwt(hs256(), claims, foreign), now()), Err(TokenError::BadSignature));
        }
    }

    #[test]
    fn the_maximum_lifetime_is_configurable() {
        let k = key(SECRET).with_max_lifetime(Duration::minutes(30));
        let now = now();
        assert_eq!(
            k.verify(&k.mint(&user("user-1"), None, now, now + Duration::minutes(31)), now),
            Err(TokenError::Lifetime)
        );
        assert!(k.verify(&k.mint(&user("user-1"), None, now, now + Duration::minutes(30)), now).is_ok());
    }

    #[test]
    fn during_a_rotation_the_newest_secret_mints_and_every_secret_verifies() {
        let old = "fedcba9876543210fedcba9876543210";
        let k = key(SECRET).with_previous([SecretString::from(old.to_owned())]);
        let now = now();
        let minted = k.mint(&user("user-1"), None, now, now + Duration::hours(1));
        assert!(key(SECRET).verify(&minted, now).is_ok(), "minted with the newest");
        assert!(key(old).verify(&minted, now).is_err());
        assert!(k.verify(&jwt(hs256(), good_claims(), old), now).is_ok(), "the previous secret still verifies");
        assert_eq!(
            k.verify(&jwt(hs256(), good_claims(), "0000000000000000ffffffffffffffff"), now),
            Err(TokenError::BadSignature)
        );
        // A refusal under the older secret is that refusal, not a bad signature.
        let claims = with(good_claims(), "aud", json!("other"));
        assert_eq!(k.verify(&jwt(hs256(), claims, old), now), Err(TokenError::WrongAudience));
        // Tickets: issued with the newest, verified with any.
        let claims = Claims { user: user("user-1"), label: None, expires_at: now + Duration::hours(1) };
        let ticket = k.tickets().issue(&claims, now).ticket;
        assert!(key(SECRET).tickets().verify(&ticket, now).is_ok());
        let old_ticket = key(old).tickets().issue(&claims, now).ticket;
        assert!(k.tickets().verify(&old_ticket, now).is_ok());
        assert!(!format!("{k:?}").contains("0123"));
    }

    #[test]
    fn forged_and_foreign_tokens_are_refused() {
        let k = key(SECRET);
        let other = key("fedcba9876543210fedcba9876543210");
        let now = now();
        let token = other.mint(&user("user-1"), None, now, now + Duration::hours(1));
        assert_eq!(k.verify(&token, now), Err(TokenError::BadSignature));
        // Swapping the payload for another user's breaks the signature.
        let mine = k.mint(&user("user-1"), None, now, now + Duration::hours(1));
        let theirs = k.mint(&user("user-2"), None, now, now + Duration::hours(1));
        let mut forged: Vec<&str> = mine.split('.').collect();
        forged[1] = theirs.split('.').nth(1).unwrap();
        assert_eq!(k.verify(&forged.join("."), now), Err(TokenError::BadSignature));
        assert!(!format!("{k:?}").contains("0123"));
    }

    #[test]
    fn a_ticket_opens_a_stream_for_a_minute_and_the_stream_ends_with_the_token() {
        let k = key(SECRET);
        let now = now();
        let claims = k.verify(&k.mint(&user("user-1"), None, now, now + Duration::hours(1)), now).unwrap();
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
        let k = key(SECRET);
        let now = now();
        let claims = k.verify(&k.mint(&user("user-1"), None, now, now + Duration::seconds(10)), now).unwrap();
        let ticket = k.tickets().issue(&claims, now);
        assert_eq!(ticket.expires_at, now + Duration::seconds(10));
        assert_eq!(k.tickets().verify(&ticket.ticket, now + Duration::seconds(10)), Err(TokenError::Expired));
    }

    #[test]
    fn tickets_and_tokens_never_pass_for_each_other() {
        let k = key(SECRET);
        let now = now();
        let token = k.mint(&user("user-1"), None, now, now + Duration::hours(1));
        let ticket = k.tickets().issue(&k.verify(&token, now).unwrap(), now).ticket;
        assert_eq!(k.verify(&ticket, now), Err(TokenError::Malformed));
        assert_eq!(k.tickets().verify(&token, now), Err(TokenError::Malformed));
        // Given the other's first part, each is still signed with the other key.
        let relabelled = ticket.replacen("st1", token.split('.').next().unwrap(), 1);
        assert_eq!(k.verify(&relabelled, now), Err(TokenError::BadSignature));
        let relabelled = format!("st1.{}", token.split_once('.').unwrap().1);
        assert_eq!(k.tickets().verify(&relabelled, now), Err(TokenError::BadSignature));
    }

    #[test]
    fn another_users_or_another_secrets_ticket_is_refused() {
        let k = key(SECRET);
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
        let a = key(SECRET);
        let b = key(SECRET);
        let now = now();
        let claims = Claims { user: user("user-1"), label: None, expires_at: now + Duration::hours(1) };
        let ticket = a.tickets().issue(&claims, now).ticket;
        assert_eq!(b.tickets().verify(&ticket, now).unwrap().user, user("user-1"));
    }
}
