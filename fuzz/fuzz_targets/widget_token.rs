//! Widget tokens arrive in every `Authorization` header, and stream tickets in
//! every `GET /api/events` URL: both are attacker's bytes until verified.
//!
//! Input layout: `secret \n user \n credential`, so the seed corpus can hold
//! real tokens and tickets with the secret that signed them.
//! Properties: neither `verify` panics at any clock; whatever verifies is not
//! yet expired and ends within the skew plus the maximum lifetime; a minted
//! token and an issued ticket verify until their expiry and never as each
//! other; and an edited token or ticket never verifies.

#![no_main]

use chrono::{DateTime, Utc};
use libfuzzer_sys::fuzz_target;
use pientegra_shared::ids::ExternalUserId;
use pientegra_shared::token::{CLOCK_SKEW, TICKET_TTL, TokenError, TokenKey};
use secrecy::SecretString;

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == b'\n');
    let secret = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let user = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let credential = String::from_utf8_lossy(parts.next().unwrap_or_default()).into_owned();
    let key = TokenKey::new(SecretString::from(secret));

    for now in clocks() {
        if let Ok(claims) = key.verify(&credential, now) {
            assert!(claims.expires_at > now);
            let latest = now.checked_add_signed(CLOCK_SKEW + key.max_lifetime());
            assert!(latest.is_none_or(|latest| claims.expires_at <= latest));
        }
        if let Ok(ticket) = key.tickets().verify(&credential, now) {
            assert!(ticket.expires_at > now);
            assert!(key.verify(&credential, now).is_err(), "a ticket is no token");
        }
    }

    let Ok(user) = ExternalUserId::parse(&user) else { return };
    let hash = fnv1a(data);
    // Any second up to the year 2100.
    let expires_at = DateTime::from_timestamp(i64::try_from(hash % 4_102_444_800).expect("fits"), 0).expect("in range");
    let token = key.mint(&user, None, expires_at - chrono::Duration::hours(1), expires_at);
    let before = expires_at - chrono::Duration::seconds(1);
    let claims = key.verify(&token, before).expect("a minted token verifies");
    assert_eq!(claims.user, user);
    assert_eq!(key.verify(&token, expires_at), Err(TokenError::Expired));

    let ticket = key.tickets().issue(&claims, before);
    assert!(ticket.expires_at <= expires_at && ticket.expires_at <= before + TICKET_TTL);
    let checked = key.tickets().verify(&ticket.ticket, before).expect("an issued ticket verifies");
    assert_eq!((checked.user, checked.stream_until), (user, expires_at));
    assert!(key.verify(&ticket.ticket, before).is_err());
    assert!(key.tickets().verify(&token, before).is_err());

    // One byte of each replaced by one from the input: refused, unless the
    // edit only added surrounding whitespace.
    for original in [&token, &ticket.ticket] {
        let mut edited = original.as_bytes().to_vec();
        let at = usize::try_from(hash >> 32).expect("fits") % edited.len();
        edited[at] = data[usize::try_from(hash).unwrap_or(0) % data.len()];
        let edited = String::from_utf8_lossy(&edited);
        let accepted = key.verify(&edited, before).is_ok() || key.tickets().verify(&edited, before).is_ok();
        assert!(!accepted || edited.trim() == original.as_str(), "{edited:?} verified");
    }
});

/// The extremes of chrono's range, the epoch and an ordinary day.
fn clocks() -> [DateTime<Utc>; 4] {
    [
        DateTime::<Utc>::MIN_UTC,
        DateTime::from_timestamp(0, 0).expect("epoch"),
        DateTime::from_timestamp(1_767_225_600, 0).expect("2026"),
        DateTime::<Utc>::MAX_UTC,
    ]
}

/// A cheap stable hash, so the expiry and the edit depend on every input byte.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}
