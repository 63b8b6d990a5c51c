//! Properties of `Iban`: parsing never panics, valid IBANs survive their own
//! printed form, and mod-97 catches every single-character substitution.

use pientegra_shared::iban::{self, Iban, IbanError};
use proptest::prelude::*;

/// A sample of registry countries with short, typical and long IBANs.
const COUNTRIES: [&str; 12] = ["TR", "DE", "GB", "FR", "NL", "CH", "NO", "MT", "LC", "RU", "BR", "IT"];

/// The ISO 13616 remainder, computed independently of the crate: the full
/// rearranged number, reduced seven digits at a time.
fn remainder(iban: &str) -> u64 {
    let rearranged = format!("{}{}", &iban[4..], &iban[..4]);
    let digits: String = rearranged.chars().map(|c| c.to_digit(36).expect("alphanumeric").to_string()).collect();
    digits.as_bytes().chunks(7).fold(0, |rest, chunk| {
        let chunk = std::str::from_utf8(chunk).unwrap();
        format!("{rest}{chunk}").parse::<u64>().unwrap() % 97
    })
}

/// A valid IBAN for a sample country with a random BBAN.
fn valid_iban() -> impl Strategy<Value = String> {
    proptest::sample::select(&COUNTRIES[..]).prop_flat_map(|country| {
        let bban_length = iban::expected_length(country).unwrap() - 4;
        proptest::collection::vec(proptest::sample::select(&b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"[..]), bban_length)
            .prop_map(move |bban| {
                let bban = String::from_utf8(bban).unwrap();
                let check = 98 - remainder(&format!("{country}00{bban}"));
                format!("{country}{check:02}{bban}")
            })
    })
}

proptest! {
    #[test]
    fn parse_never_panics(input in any::<String>()) {
        let _ = Iban::parse(&input);
    }

    #[test]
    fn parse_never_panics_on_iban_like_text(input in "[A-Za-z0-9 \u{00A0}\\-]{0,40}") {
        let _ = Iban::parse(&input);
    }

    #[test]
    fn group_for_display_never_panics(input in any::<String>()) {
        let _ = iban::group_for_display(&input);
    }

    #[test]
    fn generated_ibans_are_valid(valid in valid_iban()) {
        let parsed = Iban::parse(&valid).unwrap();
        prop_assert_eq!(parsed.as_str(), valid.as_str());
        prop_assert_eq!(parsed.country(), &valid[..2]);
    }

    #[test]
    fn printed_forms_reparse_to_the_same(valid in valid_iban()) {
        let parsed = Iban::parse(&valid).unwrap();
        prop_assert_eq!(Iban::parse(&parsed.formatted()), Ok(parsed.clone()));
        prop_assert_eq!(Iban::parse(&parsed.formatted().to_lowercase()), Ok(parsed.clone()));
        prop_assert_eq!(Iban::parse(&iban::group_for_display(&valid)), Ok(parsed.clone()));
        let json = serde_json::to_string(&parsed).unwrap();
        prop_assert_eq!(serde_json::from_str::<Iban>(&json).unwrap(), parsed);
    }

    #[test]
    fn any_single_digit_change_is_rejected(
        valid in valid_iban(),
        position in any::<proptest::sample::Index>(),
        shift in 1_u8..10,
    ) {
        let digits: Vec<usize> = valid
            .bytes()
            .enumerate()
            .filter(|(_, b)| b.is_ascii_digit())
            .map(|(i, _)| i)
            .collect();
        let at = digits[position.index(digits.len())];
        let mut changed = valid.into_bytes();
        changed[at] = b'0' + (changed[at] - b'0' + shift) % 10;
        let changed = String::from_utf8(changed).unwrap();
        prop_assert_eq!(Iban::parse(&changed), Err(IbanError::Checksum));
    }

    #[test]
    fn any_single_letter_change_in_the_bban_is_rejected(
        valid in valid_iban(),
        position in any::<proptest::sample::Index>(),
        shift in 1_u8..26,
    ) {
        let letters: Vec<usize> = valid
            .bytes()
            .enumerate()
            .skip(4)
            .filter(|(_, b)| b.is_ascii_uppercase())
            .map(|(i, _)| i)
            .collect();
        prop_assume!(!letters.is_empty());
        let at = letters[position.index(letters.len())];
        let mut changed = valid.into_bytes();
        changed[at] = b'A' + (changed[at] - b'A' + shift) % 26;
        let changed = String::from_utf8(changed).unwrap();
        prop_assert_eq!(Iban::parse(&changed), Err(IbanError::Checksum));
    }
}
