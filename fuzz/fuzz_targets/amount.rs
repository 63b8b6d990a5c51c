//! Amounts arrive as typed text (the widget's field) and as wire strings and
//! JSON (every request and webhook). Properties: no parser panics; whatever
//! `parse_input` accepts, its formatting reads back to the same amount in
//! either locale; the wire form and its JSON string agree.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pientegra_shared::amount::{Amount, Locale};

fuzz_target!(|data: &[u8]| {
    let s = String::from_utf8_lossy(data);

    let wire = Amount::parse_wire(&s);
    if let Ok(amount) = wire {
        assert!(s.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(Amount::parse_wire(&amount.to_string()), Ok(amount));
    }

    for locale in [Locale::Tr, Locale::En] {
        if let Ok(amount) = Amount::parse_input(&s, locale) {
            for shown_in in [Locale::Tr, Locale::En] {
                assert_eq!(
                    Amount::parse_input(&amount.format(shown_in), locale),
                    Ok(amount),
                    "{s:?} shown in {shown_in:?}"
                );
                assert_eq!(Amount::parse_input(&amount.format_number(shown_in), locale), Ok(amount));
            }
        }
    }

    // The raw bytes as a JSON document (numbers, floats, garbage) ...
    if let Ok(amount) = serde_json::from_str::<Amount>(&s) {
        assert_eq!(serde_json::from_str::<Amount>(&serde_json::to_string(&amount).unwrap()).ok(), Some(amount));
    }
    // ... and as a JSON string, which must mean exactly the wire form.
    let quoted = serde_json::to_string(&*s).expect("a string serializes");
    assert_eq!(serde_json::from_str::<Amount>(&quoted).ok(), wire.ok());
});
