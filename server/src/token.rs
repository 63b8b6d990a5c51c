//! Widget tokens: the only credential a browser holds.
//!
//! `pk1.<base64url(JSON {sub, lbl?, exp})>.<base64url(HMAC-SHA256)>`, minted by the
//! partner's backend for its logged-in user, bound to one `externalUserId`,
//! expiring, checked in constant time.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use pientegra_shared::ids::{ExternalUserId, UserLabel};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use subtle::ConstantTimeEq;

const PREFIX: &str = "pk1";

/// Who a valid token speaks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claims {
    pub user: ExternalUserId,
    pub label: Option<UserLabel>,
    pub expires_at: DateTime<Utc>,
}

#[derive(Serialize, Deserialize)]
struct Payload {
    sub: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    lbl: Option<String>,
    /// Unix seconds.
    exp: i64,
}

/// Why a token was refused. Messages never repeat the token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed")]
    Malformed,
    #[error("the token's signature is not valid")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token names a reserved ledger account, not a user")]
    ReservedUser,
}

/// Whether a widget token may speak for `user`: any `externalUserId` except
/// the ledger accounts of PGM orders (`pgm-order:...`), whose money is the
/// shop's to refund and never the customer's to withdraw.
pub fn may_name(user: &ExternalUserId) -> Result<(), TokenError> {
    if crate::ledger::is_order_account(user.as_str()) { Err(TokenError::ReservedUser) } else { Ok(()) }
}

/// Mints and checks widget tokens with one secret.
#[derive(Clone)]
pub struct TokenKey(SecretString);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey([redacted])")
    }
}

impl TokenKey {
    /// Wraps the `WIDGET_TOKEN_SECRET`.
    pub fn new(secret: SecretString) -> TokenKey {
        TokenKey(secret)
    }

    fn mac(&self, payload_b64: &str) -> [u8; 32] {
        let mut mac = Hmac::<Sha256>::new_from_slice(self.0.expose_secret().as_bytes()).expect("any key length");
        mac.update(PREFIX.as_bytes());
        mac.update(b".");
        mac.update(payload_b64.as_bytes());
        mac.finalize().into_bytes().into()
    }

    /// A token for `user` valid until `expires_at`. One for a user that
    /// [`may_name`] refuses never verifies: check it first.
    pub fn mint(&self, user: &ExternalUserId, label: Option<&UserLabel>, expires_at: DateTime<Utc>) -> String {
        let payload = Payload {
            sub: user.as_str().to_owned(),
            lbl: label.map(|l| l.as_str().to_owned()),
            exp: expires_at.timestamp(),
        };
        let payload_b64 = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).expect("payload serializes"));
        let sig = URL_SAFE_NO_PAD.encode(self.mac(&payload_b64));
        format!("{PREFIX}.{payload_b64}.{sig}")
    }

    /// Checks signature first (constant time), then expiry against `now`.
    pub fn verify(&self, token: &str, now: DateTime<Utc>) -> Result<Claims, TokenError> {
        let mut parts = token.trim().split('.');
        let (Some(PREFIX), Some(payload_b64), Some(sig_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed);
        };
        let sig = URL_SAFE_NO_PAD.decode(sig_b64).map_err(|_| TokenError::Malformed)?;
        let expected = self.mac(payload_b64);
        if sig.len() != expected.len() || !bool::from(sig.ct_eq(&expected)) {
            return Err(TokenError::BadSignature);
        }
        let payload: Payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .ok()
            .and_then(|raw| serde_json::from_slice(&raw).ok())
            .ok_or(TokenError::Malformed)?;
        let expires_at = DateTime::from_timestamp(payload.exp, 0).ok_or(TokenError::Malformed)?;
        if expires_at <= now {
            return Err(TokenError::Expired);
        }
        let user = ExternalUserId::parse(&payload.sub).map_err(|_| TokenError::Malformed)?;
        may_name(&user)?;
        let label = payload.lbl.as_deref().map(UserLabel::parse).transpose().map_err(|_| TokenError::Malformed)?;
        Ok(Claims { user, label, expires_at })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn key(secret: &str) -> TokenKey {
        TokenKey::new(SecretString::from(secret.to_owned()))
    }

    #[test]
    fn a_minted_token_verifies_until_it_expires() {
        let k = key("0123456789abcdef0123456789abcdef");
        let user = ExternalUserId::parse("user-1").unwrap();
        let now = Utc::now();
        let token = k.mint(&user, None, now + Duration::hours(1));
        assert_eq!(k.verify(&token, now).unwrap().user, user);
        assert_eq!(k.verify(&token, now + Duration::hours(2)), Err(TokenError::Expired));
    }

    #[test]
    fn forged_and_foreign_tokens_are_refused() {
        let k = key("0123456789abcdef0123456789abcdef");
        let other = key("fedcba9876543210fedcba9876543210");
        let user = ExternalUserId::parse("user-1").unwrap();
        let now = Utc::now();
        let token = other.mint(&user, None, now + Duration::hours(1));
        assert_eq!(k.verify(&token, now), Err(TokenError::BadSignature));
        // Swapping the payload for another user's breaks the signature.
        let mine = k.mint(&user, None, now + Duration::hours(1));
        let theirs = k.mint(&ExternalUserId::parse("user-2").unwrap(), None, now + Duration::hours(1));
        let forged = format!("pk1.{}.{}", theirs.split('.').nth(1).unwrap(), mine.split('.').nth(2).unwrap());
        assert_eq!(k.verify(&forged, now), Err(TokenError::BadSignature));
        assert_eq!(k.verify("pk1.x", now), Err(TokenError::Malformed));
        assert_eq!(k.verify("", now), Err(TokenError::Malformed));
        assert!(!format!("{k:?}").contains("0123"));
    }

    #[test]
    fn no_token_speaks_for_the_account_of_a_pgm_order() {
        let k = key("0123456789abcdef0123456789abcdef");
        let now = Utc::now();
        let account = crate::ledger::order_account(uuid::Uuid::new_v4(), "user-1");
        // The account's own name, and anything else under its prefix.
        for sub in [account.as_str(), "pgm-order:x", " pgm-order:x "] {
            let user = ExternalUserId::parse(sub).unwrap();
            assert_eq!(may_name(&user), Err(TokenError::ReservedUser), "{sub}");
            let token = k.mint(&user, None, now + Duration::hours(1));
            assert_eq!(k.verify(&token, now), Err(TokenError::ReservedUser), "{sub}");
        }
        // Names that only look alike are ordinary users.
        for sub in ["pgm-order", "PGM-ORDER:x", "user pgm-order:x"] {
            let user = ExternalUserId::parse(sub).unwrap();
            assert_eq!(may_name(&user), Ok(()), "{sub}");
            assert_eq!(k.verify(&k.mint(&user, None, now + Duration::hours(1)), now).unwrap().user, user);
        }
    }
}
