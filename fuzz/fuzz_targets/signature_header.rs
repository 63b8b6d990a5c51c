//! `Pientegra-Signature` verification reads an attacker's header and body.
//!
//! Input layout: `header \n secrets \n body`, secrets separated by tabs (an
//! empty line means none configured), so the seed corpus can hold real headers.
//! Properties: `verify` never panics at any clock; a verified header stays
//! valid for exactly five minutes either way; and `sign` always round-trips.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pientegra_shared::signature::{SignatureError, TOLERANCE_MS, Verified, compute_v1, sign, verify};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == b'\n');
    let header = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let secrets_line = String::from_utf8_lossy(parts.next().unwrap_or_default());
    let body = parts.next().unwrap_or_default();
    let secrets: Vec<&str> = if secrets_line.is_empty() { Vec::new() } else { secrets_line.split('\t').collect() };

    // Any clock, including the extremes where `now - t` could overflow.
    for now in [i64::MIN, -1, 0, 1_767_225_600_000, i64::MAX] {
        let _ = verify(&header, body, &secrets, now);
    }

    // Verify at the header's own time (what a seed with a real header needs),
    // then check the tolerance edges around it.
    let t = claimed_t(&header).unwrap_or(0);
    if let Ok(Verified { t_ms, secret_index }) = verify(&header, body, &secrets, t) {
        assert_eq!(t_ms, t);
        assert!(secret_index < secrets.len());
        if let (Some(late), Some(too_late)) = (t.checked_add(TOLERANCE_MS), t.checked_add(TOLERANCE_MS + 1)) {
            assert!(verify(&header, body, &secrets, late).is_ok());
            assert_eq!(verify(&header, body, &secrets, too_late), Err(SignatureError::TooOld));
        }
        if let (Some(early), Some(too_early)) = (t.checked_sub(TOLERANCE_MS), t.checked_sub(TOLERANCE_MS + 1)) {
            assert!(verify(&header, body, &secrets, early).is_ok());
            assert_eq!(verify(&header, body, &secrets, too_early), Err(SignatureError::InFuture));
        }
    }

    // Round trip: whatever we sign, we verify, with the index of the first
    // equal secret. Unix milliseconds are never negative, so t is not either.
    let t = i64::try_from(fnv1a(data) >> 1).expect("63 bits fit i64");
    let secret: &str = secrets.last().copied().unwrap_or(&header);
    let signed = sign(secret, t, body);
    assert_eq!(verify(&signed, body, &[secret], t), Ok(Verified { t_ms: t, secret_index: 0 }));
    if !secrets.is_empty() {
        // The first secret that signs alike: HMAC pads short keys with zeros, so
        // "" and "\0" are the same key (harmless: secrets are ours, not the sender's).
        let v1 = compute_v1(secret, t, body);
        let first = secrets.iter().position(|s| compute_v1(s, t, body) == v1).expect("the last secret signs alike");
        assert!(secrets[..first].iter().all(|s| *s != secret));
        assert_eq!(verify(&signed, body, &secrets, t), Ok(Verified { t_ms: t, secret_index: first }));
    }
    // One byte more and it must not match.
    let mut tampered = body.to_vec();
    tampered.push(b' ');
    assert_eq!(verify(&signed, &tampered, &[secret], t), Err(SignatureError::NoMatch));
});

/// The header's `t` as a receiver would read it, if it is a plain integer.
fn claimed_t(header: &str) -> Option<i64> {
    header.split(',').find_map(|part| {
        let (key, value) = part.split_once('=')?;
        (key.trim() == "t").then(|| value.trim().parse().ok()).flatten()
    })
}

/// A cheap stable hash, so the signing time depends on every input byte.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}
