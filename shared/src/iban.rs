//! International Bank Account Numbers (ISO 13616): validation against the
//! SWIFT IBAN registry's country lengths and the mod-97 check digits, the
//! printed four-character grouping, and as-you-type grouping for forms.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Registered IBAN lengths by country code, from the SWIFT IBAN registry.
///
/// Only codes the registry itself assigns are listed: territories that bank
/// under another country's IBANs (Åland under FI, the French overseas
/// departments under FR, Jersey under GB, ...) never start an IBAN with a
/// code of their own. Kept sorted so it reads like the registry.
const REGISTRY: [(&str, usize); 89] = [
    ("AD", 24),
    ("AE", 23),
    ("AL", 28),
    ("AT", 20),
    ("AZ", 28),
    ("BA", 20),
    ("BE", 16),
    ("BG", 22),
    ("BH", 22),
    ("BI", 27),
    ("BR", 29),
    ("BY", 28),
    ("CH", 21),
    ("CR", 22),
    ("CY", 28),
    ("CZ", 24),
    ("DE", 22),
    ("DJ", 27),
    ("DK", 18),
    ("DO", 28),
    ("EE", 20),
    ("EG", 29),
    ("ES", 24),
    ("FI", 18),
    ("FK", 18),
    ("FO", 18),
    ("FR", 27),
    ("GB", 22),
    ("GE", 22),
    ("GI", 23),
    ("GL", 18),
    ("GR", 27),
    ("GT", 28),
    ("HN", 28),
    ("HR", 21),
    ("HU", 28),
    ("IE", 22),
    ("IL", 23),
    ("IQ", 23),
    ("IS", 26),
    ("IT", 27),
    ("JO", 30),
    ("KW", 30),
    ("KZ", 20),
    ("LB", 28),
    ("LC", 32),
    ("LI", 21),
    ("LT", 20),
    ("LU", 20),
    ("LV", 21),
    ("LY", 25),
    ("MC", 27),
    ("MD", 24),
    ("ME", 22),
    ("MK", 19),
    ("MN", 20),
    ("MR", 27),
    ("MT", 31),
    ("MU", 30),
    ("NI", 28),
    ("NL", 18),
    ("NO", 15),
    ("OM", 23),
    ("PK", 24),
    ("PL", 28),
    ("PS", 29),
    ("PT", 25),
    ("QA", 29),
    ("RO", 24),
    ("RS", 22),
    ("RU", 33),
    ("SA", 24),
    ("SC", 31),
    ("SD", 18),
    ("SE", 24),
    ("SI", 19),
    ("SK", 24),
    ("SM", 27),
    ("SO", 23),
    ("ST", 25),
    ("SV", 28),
    ("TL", 23),
    ("TN", 24),
    ("TR", 26),
    ("UA", 29),
    ("VA", 22),
    ("VG", 24),
    ("XK", 20),
    ("YE", 30),
];

/// A validated IBAN in electronic format: uppercase, no spaces, e.g.
/// `TR330006100519786457841326`.
///
/// Holding one means the country is in the registry, the length is that
/// country's, and the check digits match. It does not mean the account
/// exists: only the bank can say that.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Iban(String);

impl Iban {
    /// Validates an IBAN as typed or pasted.
    ///
    /// Whitespace anywhere (including no-break spaces) is ignored, because
    /// that is how IBANs are printed, and lowercase letters are uppercased.
    /// Anything else, such as hyphens or dots, is refused rather than
    /// stripped: it more likely means a different number than formatting.
    pub fn parse(input: &str) -> Result<Iban, IbanError> {
        let mut electronic = String::with_capacity(input.len());
        for typed in input.chars().filter(|c| !c.is_whitespace()) {
            let c = typed.to_ascii_uppercase();
            // Only ASCII is ever pushed, so the byte length is the position.
            if !allowed_at(electronic.len(), c) {
                return Err(IbanError::InvalidCharacter(typed));
            }
            electronic.push(c);
        }
        if electronic.is_empty() {
            return Err(IbanError::Empty);
        }

        let country = &electronic[..electronic.len().min(2)];
        let expected = expected_length(country).ok_or_else(|| IbanError::UnknownCountry(country.to_owned()))?;
        if electronic.len() != expected {
            return Err(IbanError::WrongLength { country: country.to_owned(), expected, actual: electronic.len() });
        }

        // ISO 13616 check digits run from 02 to 98; 00, 01 and 99 can pass
        // mod-97 (they alias 97, 98 and 02) but are never issued.
        let check_digits = &electronic[2..4];
        if matches!(check_digits, "00" | "01" | "99") || mod97(&electronic) != 1 {
            return Err(IbanError::Checksum);
        }
        Ok(Iban(electronic))
    }

    /// The electronic form: uppercase, no spaces.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The two-letter country code, e.g. `"TR"`.
    pub fn country(&self) -> &str {
        &self.0[..2]
    }

    /// The printed form, in groups of four: `"TR33 0006 1005 1978 6457 8413 26"`.
    pub fn formatted(&self) -> String {
        group_for_display(&self.0)
    }
}

impl fmt::Display for Iban {
    /// The electronic form, as stored and sent on the wire.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for Iban {
    type Err = IbanError;

    /// Same as [`Iban::parse`].
    fn from_str(s: &str) -> Result<Iban, IbanError> {
        Iban::parse(s)
    }
}

impl Serialize for Iban {
    /// The electronic form, as a string.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Iban {
    /// A string, validated like [`Iban::parse`]; the error names what is wrong.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Iban, D::Error> {
        let raw = String::deserialize(deserializer)?;
        Iban::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// Groups input into fours for display while it is being typed: whitespace
/// is dropped and letters are uppercased, so `"tr33000610"` shows as
/// `"TR33 0006 10"`. Never fails: partial and invalid input is grouped as is.
pub fn group_for_display(input: &str) -> String {
    let mut grouped = String::with_capacity(input.len() + input.len() / 4);
    for (i, c) in input.chars().filter(|c| !c.is_whitespace()).enumerate() {
        if i > 0 && i % 4 == 0 {
            grouped.push(' ');
        }
        grouped.push(c.to_ascii_uppercase());
    }
    grouped
}

/// The registered IBAN length for a two-letter country code (in any case),
/// or `None` if the country does not issue IBANs.
pub fn expected_length(country: &str) -> Option<usize> {
    REGISTRY.iter().find(|(code, _)| code.eq_ignore_ascii_case(country)).map(|&(_, length)| length)
}

/// Why a string is not a valid IBAN.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IbanError {
    /// Nothing but whitespace.
    #[error("IBAN is empty")]
    Empty,
    /// A character that cannot appear where it is: an IBAN is two letters,
    /// two digits, then letters and digits only.
    #[error("IBAN cannot contain {0:?} there: it is two letters, two check digits, then letters and digits")]
    InvalidCharacter(char),
    /// The first two letters are not a country in the IBAN registry.
    #[error("{0:?} is not the country code of a country that issues IBANs")]
    UnknownCountry(String),
    /// The length is not the one registered for the country.
    #[error("a {country} IBAN has {expected} characters, this one has {actual}")]
    WrongLength {
        /// The country code the IBAN starts with.
        country: String,
        /// The registered length for that country.
        expected: usize,
        /// The length of the input, whitespace excluded.
        actual: usize,
    },
    /// The check digits do not match the rest: usually a mistyped character.
    #[error("IBAN check digits do not match; a character is probably mistyped")]
    Checksum,
}

impl IbanError {
    /// Stable machine-readable code, for API error bodies and translations.
    /// Always `invalid_iban`: the message carries the detail.
    pub fn code(&self) -> &'static str {
        "invalid_iban"
    }
}

/// Whether `c` (already uppercased) may stand at position `i` of an IBAN.
fn allowed_at(i: usize, c: char) -> bool {
    match i {
        0 | 1 => c.is_ascii_uppercase(),
        2 | 3 => c.is_ascii_digit(),
        _ => c.is_ascii_uppercase() || c.is_ascii_digit(),
    }
}

/// The ISO 13616 remainder of an IBAN of at least four uppercase ASCII
/// letters and digits; valid IBANs give 1.
///
/// The country and check digits move to the end, each letter becomes two
/// digits (A = 10 ... Z = 35), and the remainder of that number, up to 68
/// digits long, is taken a digit at a time, so no big integer is needed.
fn mod97(electronic: &str) -> u32 {
    let (head, bban) = electronic.split_at(4);
    bban.bytes().chain(head.bytes()).fold(0, |rest, b| {
        if b.is_ascii_digit() {
            (rest * 10 + u32::from(b - b'0')) % 97
        } else {
            (rest * 100 + u32::from(b - b'A') + 10) % 97
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Examples from the SWIFT registry and national banks, one per country family.
    const VALID: [&str; 10] = [
        "TR330006100519786457841326",
        "DE89370400440532013000",
        "GB29NWBK60161331926819",
        "FR1420041010050500013M02606",
        "NL91ABNA0417164300",
        "CH9300762011623852957",
        "BE68539007547034",
        "NO9386011117947",
        "MT84MALT011000012345MTLCAST001S",
        "LC55HEMM000100010012001200023015",
    ];

    #[test]
    fn accepts_known_valid_ibans() {
        for iban in VALID {
            let parsed = Iban::parse(iban).unwrap_or_else(|e| panic!("{iban}: {e}"));
            assert_eq!(parsed.as_str(), iban);
            assert_eq!(parsed.to_string(), iban);
            assert_eq!(parsed.country(), &iban[..2]);
        }
    }

    #[test]
    fn turkish_iban_parts() {
        let iban = Iban::parse("TR330006100519786457841326").unwrap();
        assert_eq!(iban.country(), "TR");
        assert_eq!(iban.formatted(), "TR33 0006 1005 1978 6457 8413 26");
    }

    #[test]
    fn accepts_lowercase_and_whitespace() {
        let expected = Iban::parse("TR330006100519786457841326").unwrap();
        for typed in [
            "tr33 0006 1005 1978 6457 8413 26",
            "  TR33\u{00A0}0006\u{202F}1005 1978\t6457 8413 26\n",
            "Tr330006100519786457841326",
        ] {
            assert_eq!(Iban::parse(typed), Ok(expected.clone()), "{typed:?}");
        }
        assert_eq!(Iban::parse("fr14 2004 1010 0505 0001 3m02 606").unwrap().as_str(), "FR1420041010050500013M02606");
    }

    #[test]
    fn one_changed_digit_fails_the_checksum() {
        assert_eq!(Iban::parse("TR330006100519786457841327"), Err(IbanError::Checksum));
        assert_eq!(Iban::parse("DE89370400440532013001"), Err(IbanError::Checksum));
        assert_eq!(Iban::parse("TR340006100519786457841326"), Err(IbanError::Checksum));
        // Two adjacent digits swapped.
        assert_eq!(Iban::parse("GB29NWBK61061331926819"), Err(IbanError::Checksum));
    }

    #[test]
    fn refuses_check_digits_outside_02_to_98() {
        // "00", "01" and "99" alias 97, 98 and 02 under mod 97: find Dutch
        // IBANs whose check digits are 02 and 97, then swap in the aliases.
        let with_check_digits = |wanted: u32| {
            (0..100_000_u32).find_map(|n| {
                let candidate = format!("NL{wanted:02}ABNA{n:010}");
                (mod97(&candidate) == 1).then_some(candidate)
            })
        };
        let two = with_check_digits(2).unwrap();
        assert!(Iban::parse(&two).is_ok());
        let ninety_nine = format!("NL99{}", &two[4..]);
        assert_eq!(mod97(&ninety_nine), 1);
        assert_eq!(Iban::parse(&ninety_nine), Err(IbanError::Checksum));

        let ninety_seven = with_check_digits(97).unwrap();
        let zero = format!("NL00{}", &ninety_seven[4..]);
        assert_eq!(mod97(&zero), 1);
        assert_eq!(Iban::parse(&zero), Err(IbanError::Checksum));
    }

    #[test]
    fn wrong_length() {
        let error = Iban::parse("TR33000610051978645784132").unwrap_err();
        assert_eq!(error, IbanError::WrongLength { country: "TR".into(), expected: 26, actual: 25 });
        assert_eq!(error.to_string(), "a TR IBAN has 26 characters, this one has 25");
        assert!(matches!(Iban::parse("TR3300061005197864578413260"), Err(IbanError::WrongLength { actual: 27, .. })));
        assert!(matches!(Iban::parse("TR"), Err(IbanError::WrongLength { actual: 2, .. })));
    }

    #[test]
    fn unknown_country() {
        assert_eq!(Iban::parse("XX330006100519786457841326"), Err(IbanError::UnknownCountry("XX".into())));
        assert_eq!(
            IbanError::UnknownCountry("XX".into()).to_string(),
            r#""XX" is not the country code of a country that issues IBANs"#
        );
        // US accounts have no IBAN.
        assert_eq!(Iban::parse("US12345678901234"), Err(IbanError::UnknownCountry("US".into())));
        assert_eq!(Iban::parse("t"), Err(IbanError::UnknownCountry("T".into())));
    }

    #[test]
    fn invalid_characters_and_empty() {
        assert_eq!(Iban::parse(""), Err(IbanError::Empty));
        assert_eq!(Iban::parse(" \u{00A0}\t"), Err(IbanError::Empty));
        assert_eq!(Iban::parse("TR33-0006-1005-1978-6457-8413-26"), Err(IbanError::InvalidCharacter('-')));
        assert_eq!(Iban::parse("12TR"), Err(IbanError::InvalidCharacter('1')));
        assert_eq!(Iban::parse("TRab"), Err(IbanError::InvalidCharacter('a')));
        assert_eq!(Iban::parse("TR33ı"), Err(IbanError::InvalidCharacter('ı')));
        assert_eq!(Iban::parse("İT60"), Err(IbanError::InvalidCharacter('İ')));
        assert_eq!(Iban::parse("TR33.0006"), Err(IbanError::InvalidCharacter('.')));
    }

    #[test]
    fn error_code_is_always_invalid_iban() {
        for error in [
            IbanError::Empty,
            IbanError::InvalidCharacter('-'),
            IbanError::UnknownCountry("XX".into()),
            IbanError::Checksum,
        ] {
            assert_eq!(error.code(), "invalid_iban");
        }
    }

    #[test]
    fn display_grouping_while_typing() {
        assert_eq!(group_for_display("tr33000610"), "TR33 0006 10");
        assert_eq!(group_for_display(""), "");
        assert_eq!(group_for_display("tr3"), "TR3");
        assert_eq!(group_for_display("TR33"), "TR33");
        assert_eq!(group_for_display("TR330"), "TR33 0");
        assert_eq!(group_for_display(" tr 33 00 06 1 "), "TR33 0006 1");
        // Invalid input is grouped all the same.
        assert_eq!(group_for_display("ab-cd!ef"), "AB-C D!EF");
    }

    #[test]
    fn serde_uses_the_electronic_form() {
        let iban = Iban::parse("tr33 0006 1005 1978 6457 8413 26").unwrap();
        let json = serde_json::to_string(&iban).unwrap();
        assert_eq!(json, r#""TR330006100519786457841326""#);
        assert_eq!(serde_json::from_str::<Iban>(&json).unwrap(), iban);
        let spaced: Iban = serde_json::from_str(r#""TR33 0006 1005 1978 6457 8413 26""#).unwrap();
        assert_eq!(spaced, iban);
        let error = serde_json::from_str::<Iban>(r#""TR33000610051978645784132""#).unwrap_err();
        assert!(error.to_string().contains("a TR IBAN has 26 characters, this one has 25"));
        assert!(serde_json::from_str::<Iban>("42").is_err());
    }

    #[test]
    fn from_str_parses() {
        let iban: Iban = "CH93 0076 2011 6238 5295 7".parse().unwrap();
        assert_eq!(iban.as_str(), "CH9300762011623852957");
        assert_eq!("XX00".parse::<Iban>(), Err(IbanError::UnknownCountry("XX".into())));
    }

    #[test]
    fn registry_is_sorted_and_covers_sepa() {
        assert!(REGISTRY.windows(2).all(|pair| pair[0].0 < pair[1].0));
        assert!(REGISTRY.iter().all(|(code, length)| {
            code.len() == 2 && code.bytes().all(|b| b.is_ascii_uppercase()) && (15..=34).contains(length)
        }));
        let sepa = [
            "AD", "AL", "AT", "BE", "BG", "CH", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GB", "GI", "GR", "HR",
            "HU", "IE", "IS", "IT", "LI", "LT", "LU", "LV", "MC", "MD", "ME", "MK", "MT", "NL", "NO", "PL", "PT", "RO",
            "SE", "SI", "SK", "SM", "VA",
        ];
        for country in sepa {
            assert!(expected_length(country).is_some(), "{country}");
        }
    }

    #[test]
    fn expected_lengths() {
        assert_eq!(expected_length("TR"), Some(26));
        assert_eq!(expected_length("tr"), Some(26));
        assert_eq!(expected_length("DE"), Some(22));
        assert_eq!(expected_length("NO"), Some(15));
        assert_eq!(expected_length("RU"), Some(33));
        assert_eq!(expected_length("XX"), None);
        assert_eq!(expected_length("US"), None);
        assert_eq!(expected_length(""), None);
        assert_eq!(expected_length("TUR"), None);
    }
}
