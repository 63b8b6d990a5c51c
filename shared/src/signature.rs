//! The `Pientegra-Signature` webhook header: `t=<unix ms>,v1=<lowercase hex>`, where
//! `v1 = HMAC-SHA256(key = the whole secret string, message = t + "." + raw body)`.
//!
//! Verification runs on the raw body bytes before any parsing, compares in
//! constant time, accepts any of several secrets (rotation: newest first), and
//! allows five minutes of clock difference either way.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The header's name.
pub const HEADER: &str = "Pientegra-Signature";

/// Largest accepted difference between the header's `t` and the receiver's clock.
pub const TOLERANCE_MS: i64 = 5 * 60 * 1000;

type HmacSha256 = Hmac<Sha256>;

/// Hex of `HMAC-SHA256(secret, "<t>.<body>")`, the header's `v1` value.
pub fn compute_v1(secret: &str, t_ms: i64, body: &[u8]) -> String {
    hex::encode(mac(secret, t_ms, body).finalize().into_bytes())
}

/// The complete header value for `body` signed at `t_ms`.
pub fn sign(secret: &str, t_ms: i64, body: &[u8]) -> String {
    format!("t={t_ms},v1={}", compute_v1(secret, t_ms, body))
}

fn mac(secret: &str, t_ms: i64, body: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(t_ms.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Which check a signature failed; each maps to a stable snake_case code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the Pientegra-Signature header is malformed (a part without '=' or a repeated t)")]
    Malformed,
    #[error("the Pientegra-Signature header has no t= part")]
    MissingTimestamp,
    #[error("the Pientegra-Signature header's t is not an integer of unix milliseconds")]
    InvalidTimestamp,
    #[error("the Pientegra-Signature header has no v1= part")]
    MissingSignature,
    #[error("no v1 signature matches any configured webhook secret")]
    NoMatch,
    #[error("the signature timestamp is more than 5 minutes old")]
    TooOld,
    #[error("the signature timestamp is more than 5 minutes in the future")]
    InFuture,
    #[error("no webhook secret is configured")]
    NoSecrets,
}

impl SignatureError {
    /// Every way a signature can fail.
    pub const ALL: [SignatureError; 8] = [
        SignatureError::Malformed,
        SignatureError::MissingTimestamp,
        SignatureError::InvalidTimestamp,
        SignatureError::MissingSignature,
        SignatureError::NoMatch,
        SignatureError::TooOld,
        SignatureError::InFuture,
        SignatureError::NoSecrets,
    ];

    /// Stable code for logs, metrics and error bodies.
    pub fn code(self) -> &'static str {
        match self {
            SignatureError::Malformed => "signature_malformed",
            SignatureError::MissingTimestamp => "signature_missing_timestamp",
            SignatureError::InvalidTimestamp => "signature_invalid_timestamp",
            SignatureError::MissingSignature => "signature_missing_v1",
            SignatureError::NoMatch => "signature_mismatch",
            SignatureError::TooOld => "signature_too_old",
            SignatureError::InFuture => "signature_in_future",
            SignatureError::NoSecrets => "signature_no_secrets",
        }
    }
}

/// What a successful verification established.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verified {
    /// The header's timestamp, unix milliseconds.
    pub t_ms: i64,
    /// Index into the secrets slice of the secret that matched (0 = newest).
    pub secret_index: usize,
}

/// The header split into its timestamp and candidate signatures.
struct Parsed<'a> {
    t_ms: i64,
    v1: Vec<&'a str>,
}

fn parse_header(header: &str) -> Result<Parsed<'_>, SignatureError> {
    let mut t = None;
    let mut v1 = Vec::new();
    for part in header.split(',') {
        let (key, value) = part.split_once('=').ok_or(SignatureError::Malformed)?;
        match key.trim() {
            "t" if t.is_some() => return Err(SignatureError::Malformed),
            "t" => t = Some(value.trim()),
            "v1" => v1.push(value.trim()),
            // Unknown schemes (a future v2) are ignored, as Stripe-style receivers do.
            _ => {}
        }
    }
    let t = t.ok_or(SignatureError::MissingTimestamp)?;
    if t.is_empty() || !t.bytes().all(|b| b.is_ascii_digit()) {
        return Err(SignatureError::InvalidTimestamp);
    }
    let t_ms = t.parse().map_err(|_| SignatureError::InvalidTimestamp)?;
    if v1.is_empty() {
        return Err(SignatureError::MissingSignature);
    }
    Ok(Parsed { t_ms, v1 })
}

/// Checks that `header` is well formed: all that can be checked before the
/// body it signs has arrived. [`verify`] checks it again.
pub fn check_header(header: &str) -> Result<(), SignatureError> {
    parse_header(header).map(|_| ())
}

/// Verifies `header` for the raw `body` against `secrets` (newest first) at `now_ms`.
///
/// Several `v1` parts are allowed and any one matching suffices (a sender may
/// sign with two secrets during rotation). A `v1` that is empty, of the wrong
/// length or in uppercase hex never matches.
pub fn verify<S: AsRef<str>>(
    header: &str,
    body: &[u8],
    secrets: &[S],
    now_ms: i64,
) -> Result<Verified, SignatureError> {
    if secrets.is_empty() {
        return Err(SignatureError::NoSecrets);
    }
    let parsed = parse_header(header)?;
    let secret_index = secrets
        .iter()
        .position(|secret| {
            let expected = compute_v1(secret.as_ref(), parsed.t_ms, body);
            parsed.v1.iter().any(|given| constant_time_eq(expected.as_bytes(), given.as_bytes()))
        })
        .ok_or(SignatureError::NoMatch)?;
    let skew = now_ms.saturating_sub(parsed.t_ms);
    if skew > TOLERANCE_MS {
        return Err(SignatureError::TooOld);
    }
    if skew < -TOLERANCE_MS {
        return Err(SignatureError::InFuture);
    }
    Ok(Verified { t_ms: parsed.t_ms, secret_index })
}

/// Constant-time equality; a length mismatch is rejected up front (lengths are public).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_test_secret";
    const BODY: &[u8] = br#"{"eventId":"e1","eventType":"intent.approved"}"#;
    const NOW: i64 = 1_767_225_600_000;

    fn header_with_v1(v1: &str) -> String {
        format!("t={NOW},v1={v1}")
    }

    #[test]
    fn a_fresh_signature_verifies() {
        let header = sign(SECRET, NOW, BODY);
        assert_eq!(verify(&header, BODY, &[SECRET], NOW), Ok(Verified { t_ms: NOW, secret_index: 0 }));
    }

    #[test]
    fn the_independent_vectors_match() {
        let file: serde_json::Value = serde_json::from_str(include_str!("../tests/signature-vectors.json")).unwrap();
        for v in file["vectors"].as_array().unwrap() {
            let secret = v["secret"].as_str().unwrap();
            let t = v["t"].as_i64().unwrap();
            let body = v["body"].as_str().unwrap().as_bytes();
            let header = v["header"].as_str().unwrap();
            assert_eq!(sign(secret, t, body), header);
            assert!(verify(header, body, &[secret], t).is_ok());
        }
    }

    #[test]
    fn an_empty_v1_does_not_match() {
        assert_eq!(verify(&header_with_v1(""), BODY, &[SECRET], NOW), Err(SignatureError::NoMatch));
    }

    #[test]
    fn uppercase_hex_does_not_match() {
        let v1 = compute_v1(SECRET, NOW, BODY).to_uppercase();
        assert_eq!(verify(&header_with_v1(&v1), BODY, &[SECRET], NOW), Err(SignatureError::NoMatch));
    }

    #[test]
    fn a_truncated_v1_does_not_match() {
        let v1 = compute_v1(SECRET, NOW, BODY);
        assert_eq!(verify(&header_with_v1(&v1[..63]), BODY, &[SECRET], NOW), Err(SignatureError::NoMatch));
    }

    #[test]
    fn spaces_around_parts_are_trimmed() {
        let v1 = compute_v1(SECRET, NOW, BODY);
        let header = format!(" t = {NOW} , v1 = {v1} ");
        assert!(verify(&header, BODY, &[SECRET], NOW).is_ok());
    }

    #[test]
    fn any_of_two_v1_parts_may_match() {
        let v1 = compute_v1(SECRET, NOW, BODY);
        let bad = "0".repeat(64);
        assert!(verify(&format!("t={NOW},v1={bad},v1={v1}"), BODY, &[SECRET], NOW).is_ok());
        assert_eq!(verify(&format!("t={NOW},v1={bad},v1={bad}"), BODY, &[SECRET], NOW), Err(SignatureError::NoMatch));
    }

    #[test]
    fn a_missing_t_is_named() {
        let v1 = compute_v1(SECRET, NOW, BODY);
        assert_eq!(verify(&format!("v1={v1}"), BODY, &[SECRET], NOW), Err(SignatureError::MissingTimestamp));
    }

    #[test]
    fn a_non_numeric_t_is_named() {
        for t in ["abc", "", "-5", "1.5", "1e3", "+5"] {
            let header = format!("t={t},v1={}", "0".repeat(64));
            assert_eq!(verify(&header, BODY, &[SECRET], NOW), Err(SignatureError::InvalidTimestamp), "{t}");
        }
    }

    #[test]
    fn structural_faults_are_named() {
        assert_eq!(verify("", BODY, &[SECRET], NOW), Err(SignatureError::Malformed));
        assert_eq!(verify(&format!("t={NOW}"), BODY, &[SECRET], NOW), Err(SignatureError::MissingSignature));
        assert_eq!(verify(&format!("t={NOW},t={NOW},v1=00"), BODY, &[SECRET], NOW), Err(SignatureError::Malformed));
        assert_eq!(verify(&sign(SECRET, NOW, BODY), BODY, &[] as &[&str], NOW), Err(SignatureError::NoSecrets));
    }

    /// What the header alone shows, `check_header` finds as `verify` does;
    /// what needs the body or the secrets, it leaves to `verify`.
    #[test]
    fn the_header_check_names_the_faults_of_form_and_only_those() {
        for header in ["", "v1=00", &format!("t={NOW}"), &format!("t={NOW},t={NOW},v1=00"), "t=abc,v1=00"] {
            let whole = verify(header, BODY, &[SECRET], NOW).unwrap_err();
            assert_eq!(check_header(header), Err(whole), "{header:?}");
        }
        for header in [format!("t={NOW},v1=00"), sign("whsec_other", NOW - 10 * TOLERANCE_MS, BODY)] {
            assert_eq!(check_header(&header), Ok(()), "{header:?}");
        }
    }

    #[test]
    fn stale_and_future_timestamps_are_refused_at_the_edge() {
        let at = |t: i64| verify(&sign(SECRET, t, BODY), BODY, &[SECRET], NOW);
        assert!(at(NOW - TOLERANCE_MS).is_ok());
        assert!(at(NOW + TOLERANCE_MS).is_ok());
        assert_eq!(at(NOW - TOLERANCE_MS - 1), Err(SignatureError::TooOld));
        assert_eq!(at(NOW + TOLERANCE_MS + 1), Err(SignatureError::InFuture));
    }

    #[test]
    fn a_wrong_secret_or_tampered_body_does_not_match() {
        let header = sign("whsec_other", NOW, BODY);
        assert_eq!(verify(&header, BODY, &[SECRET], NOW), Err(SignatureError::NoMatch));
        let header = sign(SECRET, NOW, BODY);
        assert_eq!(verify(&header, b"{}", &[SECRET], NOW), Err(SignatureError::NoMatch));
    }

    #[test]
    fn rotation_accepts_old_and_new_secrets() {
        let secrets = ["whsec_new", "whsec_old"];
        let old = sign("whsec_old", NOW, BODY);
        assert_eq!(verify(&old, BODY, &secrets, NOW).unwrap().secret_index, 1);
        let new = sign("whsec_new", NOW, BODY);
        assert_eq!(verify(&new, BODY, &secrets, NOW).unwrap().secret_index, 0);
    }
}
