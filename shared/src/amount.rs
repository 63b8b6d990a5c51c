//! Money as an exact count of minor units (kuruş for TRY): the wire form,
//! the Pientegra range check, locale-aware formatting, and a paste-tolerant
//! parser for what people type into an amount field.
//!
//! There are no floats anywhere in here. A binary float cannot hold 0,10 ₺
//! exactly, and a payment kit that rounds is a payment kit that loses kuruş.

use std::fmt;
use std::str::FromStr;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

/// Minor units in one major unit: 100 kuruş make one lira.
const MINOR_PER_MAJOR: u64 = 100;

/// Digits a TRY amount can have after the decimal separator.
const MAX_DECIMALS: usize = 2;

/// Currency markers people type or paste around a TRY amount. Matched
/// case-insensitively, so "tl" and "Try" are stripped too.
const CURRENCY_MARKERS: [&str; 3] = ["₺", "TRY", "TL"];

/// What the deserializer says when it is handed anything but an amount.
const EXPECTING: &str = "a non-negative integer of minor units, as a string or number";

/// An amount of money in minor units (kuruş for TRY).
///
/// The type holds any `u64`; [`Amount::check_range`] applies the Pientegra
/// limits where a payment is being made. On the wire an amount is a string
/// of digits (`"100050"` is 1.000,50 ₺), so JavaScript clients, whose numbers
/// are doubles, never round it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Amount(u64);

impl Amount {
    /// No money at all.
    pub const ZERO: Amount = Amount(0);
    /// The smallest amount Pientegra accepts for a payment: 1,00 ₺.
    pub const MIN: Amount = Amount(100);
    /// The largest amount Pientegra accepts for a payment: 1.000.000,00 ₺.
    pub const MAX: Amount = Amount(100_000_000);

    /// An amount of `minor` minor units (kuruş).
    pub const fn from_minor(minor: u64) -> Amount {
        Amount(minor)
    }

    /// The amount in minor units (kuruş).
    pub const fn minor(self) -> u64 {
        self.0
    }

    /// `self + other`, or `None` if the sum does not fit in a `u64`.
    pub fn checked_add(self, other: Amount) -> Option<Amount> {
        self.0.checked_add(other.0).map(Amount)
    }

    /// `self - other`, or `None` if `other` is larger: amounts are never negative.
    pub fn checked_sub(self, other: Amount) -> Option<Amount> {
        self.0.checked_sub(other.0).map(Amount)
    }

    /// Parses the wire form: minor units as ASCII digits only, e.g. `"100050"`.
    ///
    /// Signs, decimal points, exponents, whitespace and non-ASCII digits are
    /// all rejected: the wire form is written by programs, so anything but
    /// plain digits is a bug worth surfacing rather than guessing about.
    pub fn parse_wire(s: &str) -> Result<Amount, AmountError> {
        if s.is_empty() {
            return Err(AmountError::Empty);
        }
        if !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AmountError::NotDigits);
        }
        decimal_value(s).map(Amount).ok_or(AmountError::Overflow)
    }

    /// Checks the Pientegra range, [`Amount::MIN`]`..=`[`Amount::MAX`]
    /// (1,00 ₺ to 1.000.000,00 ₺ inclusive), and hands the amount back.
    pub fn check_range(self) -> Result<Amount, RangeError> {
        if self < Amount::MIN {
            Err(RangeError::BelowMin)
        } else if self > Amount::MAX {
            Err(RangeError::AboveMax)
        } else {
            Ok(self)
        }
    }

    /// Parses what a person typed or pasted, in MAJOR units (lira), into an
    /// exact number of minor units.
    ///
    /// Tolerates what real input looks like: surrounding whitespace, a
    /// currency marker (`₺`, `TL`, `TRY`) before or after the number, spaces
    /// used as thousands separators (`"1 000,50"`), and numbers written in
    /// the other locale's style (`"1,000.50"` typed into a Turkish form).
    /// When both `.` and `,` appear, the last one is the decimal separator.
    ///
    /// Does not check the Pientegra range: call [`Amount::check_range`].
    pub fn parse_input(input: &str, locale: Locale) -> Result<Amount, InputError> {
        let number = strip_decorations(input)?;
        let typed = TypedNumber::scan(number)?;
        if typed.groups.iter().all(String::is_empty) {
            return Err(InputError::Empty);
        }

        let (integer, fraction) = typed.split(locale)?;
        if integer.len() > 1 && !are_thousands_groups(integer) {
            return Err(InputError::MisplacedSeparator);
        }
        if fraction.len() > MAX_DECIMALS {
            return Err(InputError::TooManyDecimals);
        }

        // ",5" has no integer digits and "5," no fraction digits; both are
        // fine, and an empty run of digits reads as zero.
        let major = decimal_value(&integer.concat()).ok_or(InputError::Overflow)?;
        // "5" after the decimal separator is fifty kuruş, not five.
        let kurus = decimal_value(&format!("{fraction:0<MAX_DECIMALS$}")).ok_or(InputError::Overflow)?;
        major
            .checked_mul(MINOR_PER_MAJOR)
            .and_then(|minor| minor.checked_add(kurus))
            .map(Amount)
            .ok_or(InputError::Overflow)
    }

    /// Formats for people, with the currency sign: `"1.000,50 ₺"` in
    /// Turkish, `"₺1,000.50"` in English. Always two decimals.
    pub fn format(self, locale: Locale) -> String {
        let number = self.format_number(locale);
        match locale {
            // Turkish convention puts the sign after the number, spaced.
            Locale::Tr => format!("{number} ₺"),
            Locale::En => format!("₺{number}"),
        }
    }

    /// The number part of [`Amount::format`], without the currency sign:
    /// `"1.000,50"` in Turkish, `"1,000.50"` in English.
    pub fn format_number(self, locale: Locale) -> String {
        let major = (self.0 / MINOR_PER_MAJOR).to_string();
        let kurus = self.0 % MINOR_PER_MAJOR;

        let mut grouped = String::with_capacity(major.len() + major.len() / 3);
        for (i, digit) in major.chars().enumerate() {
            // A separator goes wherever a whole number of groups of three remains.
            if i > 0 && (major.len() - i) % 3 == 0 {
                grouped.push(locale.group_separator());
            }
            grouped.push(digit);
        }
        format!("{grouped}{}{kurus:02}", locale.decimal_separator())
    }
}

impl fmt::Display for Amount {
    /// The wire form: minor units as plain digits, e.g. `100050`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

impl FromStr for Amount {
    type Err = AmountError;

    /// Same as [`Amount::parse_wire`].
    fn from_str(s: &str) -> Result<Amount, AmountError> {
        Amount::parse_wire(s)
    }
}

impl Serialize for Amount {
    /// Always a string of digits (`"100050"`): JSON numbers are doubles in
    /// JavaScript, and money must survive every client intact.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Amount {
    /// Accepts the wire string (`"100050"`) or a non-negative JSON integer
    /// (`100050`); rejects floats, negatives and everything else.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Amount, D::Error> {
        // `deserialize_any`, because which of string or number arrives is
        // only known once the input is read.
        deserializer.deserialize_any(AmountVisitor)
    }
}

/// On the wire an amount is a string of digits, minor units; requests may
/// also send the same integer as a JSON number.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Amount {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some("^[0-9]+$"))
            .description(Some(
                "An amount of money in minor units (kuruş for TRY) as a string of digits: \"150000\" is \
                 1.500,00 TRY. Answers always send a string; requests may send the same integer as a JSON number.",
            ))
            .examples(["150000"])
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Amount {}

/// Reads an [`Amount`] from either of its accepted JSON shapes.
struct AmountVisitor;

impl Visitor<'_> for AmountVisitor {
    type Value = Amount;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(EXPECTING)
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Amount, E> {
        Amount::parse_wire(v).map_err(E::custom)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Amount, E> {
        Ok(Amount(v))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Amount, E> {
        // serde_json only calls this for negatives, but other formats may
        // hand over small positives as i64 too.
        u64::try_from(v).map(Amount).map_err(|_| E::custom(format_args!("amount must be {EXPECTING}; got {v}")))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Amount, E> {
        // serde_json reads 1.5, 1e5 and 100.0 as floats. Even the integral
        // ones are refused: a float on the wire means float math upstream.
        Err(E::custom(format_args!("amount must be {EXPECTING}; got the floating-point number {v}")))
    }
}

/// Why a wire-form amount (see [`Amount::parse_wire`]) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AmountError {
    /// The string was empty.
    #[error("amount is empty")]
    Empty,
    /// Something other than the ASCII digits 0-9 appeared.
    #[error("amount must be ASCII digits only: an integer number of minor units such as \"100050\"")]
    NotDigits,
    /// The digits are too many for a `u64` of minor units.
    #[error("amount is too large: it does not fit in a 64-bit count of minor units")]
    Overflow,
}

/// Why an amount falls outside the range Pientegra accepts for a payment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RangeError {
    /// Less than [`Amount::MIN`].
    #[error("amount is below the minimum of 100 minor units (1.00 TRY)")]
    BelowMin,
    /// More than [`Amount::MAX`].
    #[error("amount is above the maximum of 100000000 minor units (1,000,000.00 TRY)")]
    AboveMax,
}

impl RangeError {
    /// Stable machine-readable code, for API error bodies and translations.
    pub fn code(self) -> &'static str {
        match self {
            RangeError::BelowMin => "amount_below_min",
            RangeError::AboveMax => "amount_above_max",
        }
    }
}

/// Why typed input (see [`Amount::parse_input`]) is not an amount.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    /// Nothing but whitespace, separators or a currency marker.
    #[error("amount is empty")]
    Empty,
    /// A minus sign in front: payments are never negative.
    #[error("amount cannot be negative")]
    Negative,
    /// A character that is not a digit, separator, space or currency marker.
    #[error("amount contains {0:?}, which is not a digit, a separator or a currency sign")]
    InvalidCharacter(char),
    /// `.` or `,` where neither a thousands nor a decimal separator can be.
    #[error("amount has a thousands or decimal separator in the wrong place")]
    MisplacedSeparator,
    /// More than two digits after the decimal separator.
    #[error("amount has more than two digits after the decimal separator")]
    TooManyDecimals,
    /// Too large to count in minor units.
    #[error("amount is too large")]
    Overflow,
}

impl InputError {
    /// Stable machine-readable code, for API error bodies and translations.
    /// Both kinds of malformed input share `amount_invalid`: to the person
    /// typing, a stray letter and a stray separator need the same fix.
    pub fn code(&self) -> &'static str {
        match self {
            InputError::Empty => "amount_empty",
            InputError::Negative => "amount_negative",
            InputError::InvalidCharacter(_) | InputError::MisplacedSeparator => "amount_invalid",
            InputError::TooManyDecimals => "amount_too_many_decimals",
            InputError::Overflow => "amount_too_large",
        }
    }
}

/// A language for showing and reading amounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Locale {
    /// Turkish: `1.000,50 ₺`. The default, as Pientegra serves Turkey.
    #[default]
    Tr,
    /// English: `₺1,000.50`.
    En,
}

impl Locale {
    /// The language tag: `"tr"` or `"en"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Locale::Tr => "tr",
            Locale::En => "en",
        }
    }

    /// Reads a language tag leniently: only the primary language counts, in
    /// any case, so `"tr"`, `"TR"`, `"tr-TR"` and `"tr_TR"` are all
    /// Turkish and `"en-US"` and `"en-GB"` English. Any other language is `None`.
    pub fn from_tag(tag: &str) -> Option<Locale> {
        let language = tag.trim().split(['-', '_']).next()?;
        if language.eq_ignore_ascii_case("tr") {
            Some(Locale::Tr)
        } else if language.eq_ignore_ascii_case("en") {
            Some(Locale::En)
        } else {
            None
        }
    }

    /// The separator between whole units and kuruş: `,` in Turkish, `.` in English.
    pub fn decimal_separator(self) -> char {
        match self {
            Locale::Tr => ',',
            Locale::En => '.',
        }
    }

    /// The thousands separator: `.` in Turkish, `,` in English.
    pub fn group_separator(self) -> char {
        match self {
            Locale::Tr => '.',
            Locale::En => ',',
        }
    }
}

/// The value of a run of ASCII digits (empty is zero), or `None` if it does
/// not fit in a `u64`. Callers have already checked that every byte is a digit.
fn decimal_value(digits: &str) -> Option<u64> {
    digits
        .bytes()
        .try_fold(0_u64, |value, digit| value.checked_mul(10)?.checked_add(u64::from(digit.wrapping_sub(b'0'))))
}

/// Strips what surrounds a pasted number: whitespace, one currency marker
/// before it and one after it, and a minus sign, which is refused because a
/// payment cannot be negative.
fn strip_decorations(input: &str) -> Result<&str, InputError> {
    let mut rest = input.trim();
    // A minus may come before or after a leading marker: "-₺5" and "₺-5".
    let mut negative = false;
    if let Some(after) = strip_minus(rest) {
        negative = true;
        rest = after.trim_start();
    }
    if let Some(after) = strip_currency_prefix(rest) {
        rest = after.trim_start();
    }
    if let Some(after) = strip_minus(rest) {
        negative = true;
        rest = after;
    }
    if let Some(before) = strip_currency_suffix(rest) {
        rest = before.trim_end();
    }
    if negative { Err(InputError::Negative) } else { Ok(rest) }
}

/// `s` without a leading ASCII hyphen-minus or Unicode minus sign (U+2212).
fn strip_minus(s: &str) -> Option<&str> {
    s.strip_prefix(['-', '\u{2212}'])
}

/// `s` without a leading currency marker, if it has one.
fn strip_currency_prefix(s: &str) -> Option<&str> {
    CURRENCY_MARKERS.iter().find_map(|marker| {
        let (head, rest) = s.split_at_checked(marker.len())?;
        head.eq_ignore_ascii_case(marker).then_some(rest)
    })
}

/// `s` without a trailing currency marker, if it has one.
fn strip_currency_suffix(s: &str) -> Option<&str> {
    CURRENCY_MARKERS.iter().find_map(|marker| {
        let (rest, tail) = s.split_at_checked(s.len().checked_sub(marker.len())?)?;
        tail.eq_ignore_ascii_case(marker).then_some(rest)
    })
}

/// A typed number reduced to runs of ASCII digits and the `.` and `,`
/// separators between them: `"1.000,50"` is groups `["1", "000", "50"]` and
/// separators `['.', ',']`. There is always one more group than separators.
struct TypedNumber {
    groups: Vec<String>,
    separators: Vec<char>,
}

impl TypedNumber {
    /// Splits `s` at its separators, dropping whitespace wherever it is:
    /// people group thousands with ordinary, no-break (U+00A0) and narrow
    /// no-break (U+202F) spaces, as in `"1 000,50"`.
    fn scan(s: &str) -> Result<TypedNumber, InputError> {
        let mut groups = Vec::new();
        let mut separators = Vec::new();
        let mut current = String::new();
        for c in s.chars() {
            match c {
                '0'..='9' => current.push(c),
                '.' | ',' => {
                    groups.push(std::mem::take(&mut current));
                    separators.push(c);
                }
                c if c.is_whitespace() => {}
                other => return Err(InputError::InvalidCharacter(other)),
            }
        }
        groups.push(current);
        Ok(TypedNumber { groups, separators })
    }

    /// Decides which separator, if any, is the decimal one, and splits the
    /// digit groups into the integer part (still grouped, not yet checked)
    /// and the fraction digits.
    fn split(&self, locale: Locale) -> Result<(&[String], &str), InputError> {
        // A decimal separator is always the last one, so the fraction is
        // the last group and every separator before it groups thousands.
        let (last_group, leading_groups) = self.groups.split_last().ok_or(InputError::Empty)?;
        let decimal = Ok((leading_groups, last_group.as_str()));
        let whole = Ok((self.groups.as_slice(), ""));

        let Some(&last) = self.separators.last() else {
            return whole;
        };
        let count = self.separators.iter().filter(|&&s| s == last).count();

        if self.separators.iter().any(|&s| s != last) {
            // Both kinds: "1.000,50" or "1,000.50". Whichever comes last is
            // the decimal separator, whichever locale the text came from.
            return if count == 1 { decimal } else { Err(InputError::MisplacedSeparator) };
        }

        if last == locale.decimal_separator() {
            if count == 1 {
                decimal
            } else if are_thousands_groups(&self.groups) {
                // A repeated decimal separator can only be grouping pasted
                // from the other locale: "1,000,000" in a Turkish form.
                whole
            } else {
                Err(InputError::MisplacedSeparator)
            }
        } else if are_thousands_groups(&self.groups) {
            whole
        } else if count == 1 && last_group.len() <= MAX_DECIMALS {
            // Not grouping, so a decimal point typed the other locale's
            // way: "1.5" in a Turkish form is 1,50 ₺, "2,25" in English 2.25.
            decimal
        } else {
            Err(InputError::MisplacedSeparator)
        }
    }
}

/// Whether digit groups are a correctly grouped integer: one to three digits
/// first, then exactly three in every group after it.
fn are_thousands_groups(groups: &[String]) -> bool {
    match groups.split_first() {
        Some((first, rest)) => (1..=3).contains(&first.len()) && rest.iter().all(|group| group.len() == 3),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tr(input: &str) -> Result<u64, InputError> {
        Amount::parse_input(input, Locale::Tr).map(Amount::minor)
    }

    fn en(input: &str) -> Result<u64, InputError> {
        Amount::parse_input(input, Locale::En).map(Amount::minor)
    }

    fn both(input: &str) -> [Result<u64, InputError>; 2] {
        [tr(input), en(input)]
    }

    #[test]
    fn constants_and_accessors() {
        assert_eq!(Amount::ZERO.minor(), 0);
        assert_eq!(Amount::MIN.minor(), 100);
        assert_eq!(Amount::MAX.minor(), 100_000_000);
        assert_eq!(Amount::default(), Amount::ZERO);
        assert_eq!(Amount::from_minor(100_050).minor(), 100_050);
        assert!(Amount::from_minor(1) < Amount::from_minor(2));
    }

    #[test]
    fn checked_arithmetic() {
        let a = Amount::from_minor(150);
        let b = Amount::from_minor(50);
        assert_eq!(a.checked_add(b), Some(Amount::from_minor(200)));
        assert_eq!(a.checked_sub(b), Some(Amount::from_minor(100)));
        assert_eq!(b.checked_sub(a), None);
        assert_eq!(Amount::from_minor(u64::MAX).checked_add(Amount::from_minor(1)), None);
        assert_eq!(a.checked_sub(a), Some(Amount::ZERO));
    }

    #[test]
    fn parse_wire_accepts_plain_digits() {
        assert_eq!(Amount::parse_wire("100050"), Ok(Amount::from_minor(100_050)));
        assert_eq!(Amount::parse_wire("0"), Ok(Amount::ZERO));
        assert_eq!(Amount::parse_wire("007"), Ok(Amount::from_minor(7)));
        assert_eq!(Amount::parse_wire("18446744073709551615"), Ok(Amount::from_minor(u64::MAX)));
        assert_eq!("250".parse::<Amount>(), Ok(Amount::from_minor(250)));
    }

    #[test]
    fn parse_wire_rejects_everything_else() {
        assert_eq!(Amount::parse_wire(""), Err(AmountError::Empty));
        for bad in
            ["-1", "1.5", "1,5", "1e5", "+1", " 1", "1 ", "1 0", "\t1", "1\n", "١٢٣", "１２３", "0x10", "abc", "1_000"]
        {
            assert_eq!(Amount::parse_wire(bad), Err(AmountError::NotDigits), "{bad:?}");
        }
        assert_eq!(Amount::parse_wire("18446744073709551616"), Err(AmountError::Overflow));
        assert_eq!(Amount::parse_wire("99999999999999999999"), Err(AmountError::Overflow));
        // A non-digit anywhere wins over overflow: it is the more useful report.
        assert_eq!(Amount::parse_wire("99999999999999999999x"), Err(AmountError::NotDigits));
        assert_eq!("x".parse::<Amount>(), Err(AmountError::NotDigits));
    }

    #[test]
    fn check_range_is_inclusive() {
        assert_eq!(Amount::from_minor(99).check_range(), Err(RangeError::BelowMin));
        assert_eq!(Amount::ZERO.check_range(), Err(RangeError::BelowMin));
        assert_eq!(Amount::MIN.check_range(), Ok(Amount::MIN));
        assert_eq!(Amount::MAX.check_range(), Ok(Amount::MAX));
        assert_eq!(Amount::from_minor(100_000_001).check_range(), Err(RangeError::AboveMax));
        assert_eq!(RangeError::BelowMin.code(), "amount_below_min");
        assert_eq!(RangeError::AboveMax.code(), "amount_above_max");
    }

    #[test]
    fn parse_input_required_examples() {
        assert_eq!(tr("1.000,50"), Ok(100_050));
        assert_eq!(en("1,000.50"), Ok(100_050));
        assert_eq!(tr("1500"), Ok(150_000));
        assert_eq!(tr("1.500,00"), Ok(150_000));
        assert_eq!(tr("1.500,00 ₺"), Ok(150_000));
        assert_eq!(en("₺1,500.00"), Ok(150_000));
        assert_eq!(tr("1 000,50"), Ok(100_050));
        assert_eq!(tr("1,5"), Ok(150));
        assert_eq!(en("0.01"), Ok(1));
        assert_eq!(tr("1.000"), Ok(100_000));
        assert_eq!(en("1,000"), Ok(100_000));
        assert_eq!(tr("1,000"), Err(InputError::TooManyDecimals));
        assert_eq!(en("1.000"), Err(InputError::TooManyDecimals));
        assert_eq!(tr("1.50"), Ok(150));
        assert_eq!(tr("12.34.56"), Err(InputError::MisplacedSeparator));
        assert_eq!(both("abc"), [Err(InputError::InvalidCharacter('a')), Err(InputError::InvalidCharacter('a'))]);
        assert_eq!(both("-5"), [Err(InputError::Negative), Err(InputError::Negative)]);
        assert_eq!(both(""), [Err(InputError::Empty), Err(InputError::Empty)]);
        assert_eq!(both("  "), [Err(InputError::Empty), Err(InputError::Empty)]);
        assert_eq!(en("1,2,3"), Err(InputError::MisplacedSeparator));
        assert_eq!(tr("1.000.000,99"), Ok(100_000_099));
        assert_eq!(en("1,000,000.99"), Ok(100_000_099));
        assert_eq!(tr("1,000.50"), Ok(100_050));
        assert_eq!(both("TL 250"), [Ok(25_000), Ok(25_000)]);
        assert_eq!(both("250 TRY"), [Ok(25_000), Ok(25_000)]);
        assert_eq!(both("99999999999999999999"), [Err(InputError::Overflow), Err(InputError::Overflow)]);
    }

    #[test]
    fn parse_input_currency_markers() {
        for input in [
            "₺250",
            "₺ 250",
            "250₺",
            "250 ₺",
            "TL250",
            "250TL",
            "250 tl",
            "tl 250",
            "Try 250",
            "250 try",
            " ₺ 250 ",
            "₺250 TL",
        ] {
            assert_eq!(both(input), [Ok(25_000), Ok(25_000)], "{input:?}");
        }
        assert_eq!(both("₺"), [Err(InputError::Empty), Err(InputError::Empty)]);
        assert_eq!(both("TL"), [Err(InputError::Empty), Err(InputError::Empty)]);
        // Markers only count at the ends, once each.
        assert_eq!(tr("2TL50"), Err(InputError::InvalidCharacter('T')));
        assert_eq!(tr("₺₺5"), Err(InputError::InvalidCharacter('₺')));
        assert_eq!(tr("$5"), Err(InputError::InvalidCharacter('$')));
        assert_eq!(tr("5 EUR"), Err(InputError::InvalidCharacter('E')));
    }

    #[test]
    fn parse_input_whitespace_anywhere() {
        assert_eq!(tr("1\u{00A0}000,50"), Ok(100_050));
        assert_eq!(tr("1\u{202F}000,50"), Ok(100_050));
        assert_eq!(en("1 000 000.00"), Ok(100_000_000));
        assert_eq!(tr("\t 1.000 , 5 \n"), Ok(100_050));
        assert_eq!(tr("\u{00A0}"), Err(InputError::Empty));
    }

    #[test]
    fn parse_input_signs_and_characters() {
        for negative in ["-5", "- 5", "\u{2212}5", "-₺5", "₺-5", "-5 TL", "-", "-abc", "-0"] {
            assert_eq!(both(negative), [Err(InputError::Negative), Err(InputError::Negative)], "{negative:?}");
        }
        assert_eq!(tr("+5"), Err(InputError::InvalidCharacter('+')));
        assert_eq!(tr("5-"), Err(InputError::InvalidCharacter('-')));
        assert_eq!(tr("1'000"), Err(InputError::InvalidCharacter('\'')));
        assert_eq!(tr("1e5"), Err(InputError::InvalidCharacter('e')));
        assert_eq!(tr("١٢٣"), Err(InputError::InvalidCharacter('١')));
        assert_eq!(tr("１２３"), Err(InputError::InvalidCharacter('１')));
    }

    #[test]
    fn parse_input_separator_at_the_ends() {
        assert_eq!(both("5,"), [Ok(500), Ok(500)]);
        assert_eq!(both("5."), [Ok(500), Ok(500)]);
        assert_eq!(both(",5"), [Ok(50), Ok(50)]);
        assert_eq!(both(".5"), [Ok(50), Ok(50)]);
        assert_eq!(both(",05"), [Ok(5), Ok(5)]);
        assert_eq!(tr("1.000,"), Ok(100_000));
        assert_eq!(both(","), [Err(InputError::Empty), Err(InputError::Empty)]);
        assert_eq!(both("."), [Err(InputError::Empty), Err(InputError::Empty)]);
        assert_eq!(both("₺ ,"), [Err(InputError::Empty), Err(InputError::Empty)]);
        assert_eq!(tr(".000"), Err(InputError::MisplacedSeparator));
        assert_eq!(tr("1.000.,5"), Err(InputError::MisplacedSeparator));
    }

    #[test]
    fn parse_input_separator_readings() {
        // The locale's own decimal separator, once.
        assert_eq!(tr("12,34"), Ok(1234));
        assert_eq!(en("12.34"), Ok(1234));
        assert_eq!(tr("0,1"), Ok(10));
        // Repeated decimal separator: grouping from the other locale, or nonsense.
        assert_eq!(tr("1,000,000"), Ok(100_000_000));
        assert_eq!(en("1.000.000"), Ok(100_000_000));
        assert_eq!(tr("1,00,000"), Err(InputError::MisplacedSeparator));
        assert_eq!(tr("1,5,0"), Err(InputError::MisplacedSeparator));
        // The locale's grouping separator: grouping if it can be, else a
        // decimal point typed the other locale's way.
        assert_eq!(tr("123.456"), Ok(12_345_600));
        assert_eq!(en("2,25"), Ok(225));
        assert_eq!(tr("2.5"), Ok(250));
        assert_eq!(tr("1.0000"), Err(InputError::MisplacedSeparator));
        assert_eq!(tr("1.000.00"), Err(InputError::MisplacedSeparator));
        assert_eq!(tr("1234.567"), Err(InputError::MisplacedSeparator));
        // Both kinds: the last is the decimal separator.
        assert_eq!(en("1.000,50"), Ok(100_050));
        assert_eq!(tr("1,000,000.5"), Ok(100_000_050));
        assert_eq!(tr("1.000,50,5"), Err(InputError::MisplacedSeparator));
        assert_eq!(en("1,000.000.50"), Err(InputError::MisplacedSeparator));
        assert_eq!(tr("10.00,50"), Err(InputError::MisplacedSeparator));
        assert_eq!(tr("1000.000,5"), Err(InputError::MisplacedSeparator));
        assert_eq!(tr("1.000,505"), Err(InputError::TooManyDecimals));
        // Ungrouped digits are fine however many there are.
        assert_eq!(tr("1000000,00"), Ok(100_000_000));
        assert_eq!(tr("0001,00"), Ok(100));
    }

    #[test]
    fn parse_input_overflow_is_exact() {
        // u64::MAX minor units is 184467440737095516,15 major.
        assert_eq!(tr("184467440737095516,15"), Ok(u64::MAX));
        assert_eq!(tr("184467440737095516,16"), Err(InputError::Overflow));
        assert_eq!(tr("184467440737095517"), Err(InputError::Overflow));
        assert_eq!(en("184,467,440,737,095,516.15"), Ok(u64::MAX));
    }

    #[test]
    fn parse_input_does_not_check_range() {
        assert_eq!(tr("0,01"), Ok(1));
        assert_eq!(tr("0"), Ok(0));
        assert_eq!(tr("5.000.000"), Ok(500_000_000));
    }

    #[test]
    fn input_error_codes() {
        assert_eq!(InputError::Empty.code(), "amount_empty");
        assert_eq!(InputError::Negative.code(), "amount_negative");
        assert_eq!(InputError::InvalidCharacter('x').code(), "amount_invalid");
        assert_eq!(InputError::MisplacedSeparator.code(), "amount_invalid");
        assert_eq!(InputError::TooManyDecimals.code(), "amount_too_many_decimals");
        assert_eq!(InputError::Overflow.code(), "amount_too_large");
    }

    #[test]
    fn error_messages_are_specific() {
        assert_eq!(
            InputError::InvalidCharacter('a').to_string(),
            "amount contains 'a', which is not a digit, a separator or a currency sign"
        );
        assert_eq!(AmountError::Empty.to_string(), "amount is empty");
        assert!(RangeError::BelowMin.to_string().contains("minimum"));
        assert!(RangeError::AboveMax.to_string().contains("maximum"));
    }

    #[test]
    fn format_examples() {
        let cases: [(u64, &str, &str); 7] = [
            (0, "0,00 ₺", "₺0.00"),
            (1, "0,01 ₺", "₺0.01"),
            (10, "0,10 ₺", "₺0.10"),
            (100_050, "1.000,50 ₺", "₺1,000.50"),
            (99_999, "999,99 ₺", "₺999.99"),
            (100_000_000, "1.000.000,00 ₺", "₺1,000,000.00"),
            (u64::MAX, "184.467.440.737.095.516,15 ₺", "₺184,467,440,737,095,516.15"),
        ];
        for (minor, turkish, english) in cases {
            let amount = Amount::from_minor(minor);
            assert_eq!(amount.format(Locale::Tr), turkish);
            assert_eq!(amount.format(Locale::En), english);
        }
        assert_eq!(Amount::from_minor(100_050).format_number(Locale::Tr), "1.000,50");
        assert_eq!(Amount::from_minor(100_050).format_number(Locale::En), "1,000.50");
        assert_eq!(Amount::from_minor(12_345_678).format_number(Locale::Tr), "123.456,78");
    }

    #[test]
    fn display_and_from_str_are_the_wire_form() {
        assert_eq!(Amount::from_minor(100_050).to_string(), "100050");
        assert_eq!(Amount::ZERO.to_string(), "0");
        assert_eq!("100050".parse(), Ok(Amount::from_minor(100_050)));
    }

    #[test]
    fn serializes_as_a_string() {
        let json = serde_json::to_string(&Amount::from_minor(100_050)).unwrap();
        assert_eq!(json, r#""100050""#);
        let json = serde_json::to_string(&Amount::from_minor(u64::MAX)).unwrap();
        assert_eq!(json, r#""18446744073709551615""#);
    }

    #[test]
    fn deserializes_from_string_or_integer() {
        let from = |json: &str| serde_json::from_str::<Amount>(json);
        assert_eq!(from(r#""100050""#).unwrap(), Amount::from_minor(100_050));
        assert_eq!(from("100050").unwrap(), Amount::from_minor(100_050));
        assert_eq!(from("0").unwrap(), Amount::ZERO);
        assert_eq!(from("18446744073709551615").unwrap(), Amount::from_minor(u64::MAX));
        let value = serde_json::json!({ "amount": 250 });
        assert_eq!(Amount::deserialize(&value["amount"]).unwrap(), Amount::from_minor(250));
    }

    #[test]
    fn deserialize_rejects_floats_negatives_and_other_types() {
        let error = |json: &str| serde_json::from_str::<Amount>(json).unwrap_err().to_string();
        for json in ["1.5", "1e5", "100.0", "-1", "true", "null", "[]", "{}", r#""1.5""#, r#""-1""#, r#""""#] {
            assert!(serde_json::from_str::<Amount>(json).is_err(), "{json}");
        }
        assert!(error("1.5").contains("non-negative integer of minor units"));
        assert!(error("1e5").contains("floating-point"));
        assert!(error("-1").contains("non-negative integer of minor units"));
        assert!(error("true").contains("non-negative integer of minor units"));
        assert!(error(r#""1.5""#).contains("ASCII digits only"));
        assert!(error(r#""""#).contains("amount is empty"));
        // Too big for u64: serde_json reads it as a float, so it is refused.
        assert!(serde_json::from_str::<Amount>("18446744073709551616").is_err());
    }

    #[test]
    fn locale_tags() {
        assert_eq!(Locale::Tr.as_str(), "tr");
        assert_eq!(Locale::En.as_str(), "en");
        assert_eq!(Locale::default(), Locale::Tr);
        for tag in ["tr", "TR", "tr-TR", "tr_TR", "Tr-tr", " tr "] {
            assert_eq!(Locale::from_tag(tag), Some(Locale::Tr), "{tag:?}");
        }
        for tag in ["en", "EN", "en-US", "en-GB", "en_GB"] {
            assert_eq!(Locale::from_tag(tag), Some(Locale::En), "{tag:?}");
        }
        for tag in ["", "de", "de-DE", "fr", "tur", "english", "t", "-tr"] {
            assert_eq!(Locale::from_tag(tag), None, "{tag:?}");
        }
    }

    #[test]
    fn locale_separators_and_serde() {
        assert_eq!(Locale::Tr.decimal_separator(), ',');
        assert_eq!(Locale::Tr.group_separator(), '.');
        assert_eq!(Locale::En.decimal_separator(), '.');
        assert_eq!(Locale::En.group_separator(), ',');
        assert_eq!(serde_json::to_string(&Locale::Tr).unwrap(), r#""tr""#);
        assert_eq!(serde_json::from_str::<Locale>(r#""en""#).unwrap(), Locale::En);
        assert!(serde_json::from_str::<Locale>(r#""de""#).is_err());
    }
}
