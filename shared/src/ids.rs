//! Identifiers and short validated strings, parsed once at the edge.

use serde::{Deserialize, Deserializer, Serialize, de::Error};
use uuid::Uuid;

/// An `Idempotency-Key` header value: a UUID (the contract asks for v4 or v7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
pub struct IdempotencyKey(Uuid);

impl IdempotencyKey {
    /// Parses a header value; any UUID version is accepted, in hyphenated form.
    pub fn parse(s: &str) -> Result<IdempotencyKey, IdError> {
        let s = s.trim();
        if s.len() != 36 {
            return Err(IdError::NotUuid);
        }
        Uuid::parse_str(s).map(IdempotencyKey).map_err(|_| IdError::NotUuid)
    }

    /// Wraps a UUID the caller generated.
    pub fn from_uuid(uuid: Uuid) -> IdempotencyKey {
        IdempotencyKey(uuid)
    }

    /// The underlying UUID.
    pub fn uuid(&self) -> Uuid {
        self.0
    }
}

impl std::fmt::Display for IdempotencyKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

/// Why an identifier or short text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must be a UUID such as 0192f1c4-8b7e-7c3a-9f1e-2b7d8c9a0e11")]
    NotUuid,
    #[error("must not be empty")]
    Empty,
    #[error("must be at most {max} characters, got {actual}")]
    TooLong { max: usize, actual: usize },
    #[error("must not contain control characters")]
    ControlCharacter,
}

/// Checks a free text field: trimmed length in `1..=max` characters, no control characters.
fn checked_text(s: &str, max: usize) -> Result<String, IdError> {
    let s = s.trim();
    let actual = s.chars().count();
    if actual == 0 {
        return Err(IdError::Empty);
    }
    if actual > max {
        return Err(IdError::TooLong { max, actual });
    }
    if s.chars().any(char::is_control) {
        return Err(IdError::ControlCharacter);
    }
    Ok(s.to_owned())
}

macro_rules! text_newtype {
    ($(#[$doc:meta])* $name:ident, $max:expr) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Longest accepted value, in characters.
            pub const MAX_CHARS: usize = $max;

            /// Trims, then checks length and characters.
            pub fn parse(s: &str) -> Result<$name, IdError> {
                checked_text(s, $max).map($name)
            }

            /// The validated text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                let raw = String::deserialize(d)?;
                $name::parse(&raw).map_err(D::Error::custom)
            }
        }
    };
}

text_newtype!(
    /// The user's id on the partner site (1..=128 characters).
    ExternalUserId,
    128
);
text_newtype!(
    /// The optional display label of a user (1..=128 characters).
    UserLabel,
    128
);
text_newtype!(
    /// The account holder of a withdrawal's target IBAN (1..=140 characters, any script).
    HolderName,
    140
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idempotency_key_accepts_uuids_only() {
        assert!(IdempotencyKey::parse("0192f1c4-8b7e-7c3a-9f1e-2b7d8c9a0e11").is_ok());
        assert!(IdempotencyKey::parse("0192f1c48b7e7c3a9f1e2b7d8c9a0e11").is_err());
        assert!(IdempotencyKey::parse("hello").is_err());
        assert!(IdempotencyKey::parse("").is_err());
    }

    #[test]
    fn holder_names_of_any_script_fit() {
        assert_eq!(HolderName::parse(" Ahmet Yılmaz ").unwrap().as_str(), "Ahmet Yılmaz");
        assert_eq!(HolderName::parse("").unwrap_err(), IdError::Empty);
        assert!(matches!(HolderName::parse(&"ş".repeat(141)), Err(IdError::TooLong { max: 140, actual: 141 })));
        assert!(HolderName::parse(&"ş".repeat(140)).is_ok());
        assert_eq!(ExternalUserId::parse("a\u{0}b").unwrap_err(), IdError::ControlCharacter);
    }
}
