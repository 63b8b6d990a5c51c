//! Timestamps on the wire: ISO 8601 UTC with milliseconds, `2026-04-28T12:30:00.000Z`.

use chrono::{DateTime, SecondsFormat, Utc};

/// A UTC instant as carried by every Pientegra and kit message.
pub type Timestamp = DateTime<Utc>;

/// Formats an instant exactly as the contract writes it (milliseconds, `Z`).
pub fn format(ts: &Timestamp) -> String {
    ts.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Parses any RFC 3339 instant (other offsets and precisions are tolerated).
pub fn parse(s: &str) -> Option<Timestamp> {
    DateTime::parse_from_rfc3339(s).ok().map(|t| t.with_timezone(&Utc))
}

/// The instant `ms` milliseconds after the Unix epoch.
pub fn from_unix_millis(ms: i64) -> Option<Timestamp> {
    DateTime::from_timestamp_millis(ms)
}

/// `#[serde(with = "pientegra_shared::time::millis")]` for a required timestamp.
pub mod millis {
    use super::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(ts: &Timestamp, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(ts))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Timestamp, D::Error> {
        let raw = String::deserialize(d)?;
        super::parse(&raw).ok_or_else(|| D::Error::custom(format!("not an ISO 8601 time: {raw}")))
    }
}

/// `#[serde(with = "pientegra_shared::time::millis_opt", default)]` for an optional timestamp.
pub mod millis_opt {
    use super::Timestamp;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(ts: &Option<Timestamp>, s: S) -> Result<S::Ok, S::Error> {
        match ts {
            Some(ts) => s.serialize_str(&super::format(ts)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Timestamp>, D::Error> {
        match Option::<String>::deserialize(d)? {
            None => Ok(None),
            Some(raw) => {
                super::parse(&raw).map(Some).ok_or_else(|| D::Error::custom(format!("not an ISO 8601 time: {raw}")))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_milliseconds_and_z() {
        let ts = parse("2026-04-28T12:30:00Z").unwrap();
        assert_eq!(format(&ts), "2026-04-28T12:30:00.000Z");
        let ts = parse("2026-04-28T15:30:00.123+03:00").unwrap();
        assert_eq!(format(&ts), "2026-04-28T12:30:00.123Z");
    }

    #[test]
    fn rejects_what_is_not_a_time() {
        assert!(parse("yesterday").is_none());
        assert!(parse("2026-04-28").is_none());
    }
}
