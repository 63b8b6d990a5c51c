//! IBANs are typed and pasted by users, then stored and sent to Pientegra.
//! Properties: neither the parser nor the as-you-type grouping panics, and a
//! valid IBAN parses back to itself from its printed, electronic and JSON forms.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pientegra_shared::iban::{self, Iban};

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);
    let grouped = iban::group_for_display(&s);
    assert!(!grouped.starts_with(' ') && !grouped.ends_with(' '));

    if let Ok(parsed) = Iban::parse(&s) {
        assert_eq!(Iban::parse(&parsed.formatted()).as_ref(), Ok(&parsed));
        assert_eq!(Iban::parse(parsed.as_str()).as_ref(), Ok(&parsed));
        assert_eq!(parsed.formatted(), grouped, "grouping valid input is the printed form");
        assert_eq!(iban::expected_length(parsed.country()), Some(parsed.as_str().len()));
        let json = serde_json::to_string(&parsed).expect("an IBAN serializes");
        assert_eq!(serde_json::from_str::<Iban>(&json).ok().as_ref(), Some(&parsed));
    }
});
