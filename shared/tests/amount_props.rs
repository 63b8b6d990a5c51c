//! Properties of `Amount`: formatting round-trips through the input parser
//! in either locale, the wire and JSON forms round-trip, and no input,
//! however odd, makes a parser panic.

use pientegra_shared::amount::{Amount, AmountError, Locale};
use proptest::prelude::*;

fn locale() -> impl Strategy<Value = Locale> {
    prop_oneof![Just(Locale::Tr), Just(Locale::En)]
}

/// Strings built from what amount fields actually receive, so the parser's
/// separator logic is exercised far more than by arbitrary Unicode.
fn amount_like() -> impl Strategy<Value = String> {
    proptest::string::string_regex("[0-9.,₺TLRYtly +\\-\u{2212}\u{00A0}\u{202F}a'١]{0,24}").expect("valid regex")
}

proptest! {
    #[test]
    fn format_round_trips_through_parse_input(
        minor in any::<u64>(),
        shown_in in locale(),
        parsed_in in locale(),
    ) {
        // Formatted amounts always carry two decimals, which makes them
        // unambiguous even when pasted into a form of the other locale.
        let amount = Amount::from_minor(minor);
        prop_assert_eq!(Amount::parse_input(&amount.format(shown_in), parsed_in), Ok(amount));
        prop_assert_eq!(Amount::parse_input(&amount.format_number(shown_in), parsed_in), Ok(amount));
    }

    #[test]
    fn small_amounts_round_trip_too(minor in 0_u64..1_000_000, l in locale()) {
        let amount = Amount::from_minor(minor);
        prop_assert_eq!(Amount::parse_input(&amount.format(l), l), Ok(amount));
    }

    #[test]
    fn whole_numbers_are_major_units(major in 0_u64..=u64::MAX / 100, l in locale()) {
        prop_assert_eq!(
            Amount::parse_input(&major.to_string(), l),
            Ok(Amount::from_minor(major * 100))
        );
    }

    #[test]
    fn wire_form_round_trips(minor in any::<u64>()) {
        let amount = Amount::from_minor(minor);
        prop_assert_eq!(Amount::parse_wire(&minor.to_string()), Ok(amount));
        prop_assert_eq!(amount.to_string().parse::<Amount>(), Ok(amount));
    }

    #[test]
    fn json_round_trips_as_string_and_number(minor in any::<u64>()) {
        let amount = Amount::from_minor(minor);
        let json = serde_json::to_string(&amount).unwrap();
        prop_assert_eq!(&json, &format!("\"{minor}\""));
        prop_assert_eq!(serde_json::from_str::<Amount>(&json).unwrap(), amount);
        prop_assert_eq!(serde_json::from_str::<Amount>(&minor.to_string()).unwrap(), amount);
    }

    #[test]
    fn json_negative_numbers_are_rejected(n in i64::MIN..0) {
        prop_assert!(serde_json::from_str::<Amount>(&n.to_string()).is_err());
    }

    #[test]
    fn json_fractional_numbers_are_rejected(whole in any::<u32>(), fraction in 0_u32..100) {
        let json = format!("{whole}.{fraction:02}");
        prop_assert!(serde_json::from_str::<Amount>(&json).is_err());
    }

    #[test]
    fn parse_input_never_panics(input in any::<String>(), l in locale()) {
        let _ = Amount::parse_input(&input, l);
    }

    #[test]
    fn parse_input_never_panics_on_amount_like_text(input in amount_like(), l in locale()) {
        let _ = Amount::parse_input(&input, l);
    }

    #[test]
    fn parse_wire_never_panics(input in any::<String>()) {
        let _ = Amount::parse_wire(&input);
    }

    #[test]
    fn parse_wire_rejects_any_non_digit(
        before in "[0-9]{0,10}",
        intruder in any::<char>().prop_filter("not an ASCII digit", |c| !c.is_ascii_digit()),
        after in "[0-9]{0,10}",
    ) {
        let input = format!("{before}{intruder}{after}");
        prop_assert_eq!(Amount::parse_wire(&input), Err(AmountError::NotDigits));
    }

    #[test]
    fn parse_wire_accepts_exactly_the_ascii_digit_strings(input in any::<String>()) {
        let all_digits = !input.is_empty() && input.bytes().all(|b| b.is_ascii_digit());
        if !all_digits {
            prop_assert!(Amount::parse_wire(&input).is_err());
        }
    }
}
