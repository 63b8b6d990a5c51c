//! Start-up configuration ([`Config`]) and the settings an operator or a test
//! can change while the sandbox runs ([`Settings`], served as `/sandbox/config`).

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// The API key the sandbox accepts when none is configured, so the demo needs no setup.
/// Shaped like a real key: `sk_test_<site slug>_<base64url of 32 bytes>`.
pub const DEFAULT_API_KEY: &str = "sk_test_demo_Gmw2Fn1m2BfjY9imZVObHqKjtDaxA9Wqgi5dIX77GVg";

/// The webhook secret the sandbox signs with when none is configured.
pub const DEFAULT_WEBHOOK_SECRET: &str = "whsec_QI-On1Iz5R9D1XgB1l17mW6qVexx7f_PQe48iE7TXqw";

/// Parts per million that make the real retry schedule.
pub const REAL_SCHEDULE_PPM: u64 = 1_000_000;

/// Everything the sandbox needs to start. `Default` gives a sandbox the demo can use as is.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where [`crate::Sandbox::spawn`] binds (port 0 picks a free port).
    pub bind: SocketAddr,
    /// Base of every `depositUrl`; `None` means `http://<bound address>`.
    pub public_url: Option<String>,
    /// The one API key (one site) the External API accepts.
    pub api_key: String,
    /// The webhook secret in force at start (rotated through the webhook-config endpoint).
    pub webhook_secret: String,
    /// The webhook URL in force at start; without one, events wait as PENDING.
    pub webhook_url: Option<String>,
    /// `Some(n)`: every review happens by itself `n` ms after it became due. `None`: manual review.
    pub auto_approve_ms: Option<u64>,
    /// Multiplier of the retry schedule in parts per million (`1_000_000` = the real schedule).
    pub retry_scale_ppm: u64,
    /// Shown on the hosted deposit page.
    pub tenant_name: String,
    /// CSS colour of the hosted deposit page, `#rgb` or `#rrggbb`.
    pub tenant_color: String,
    /// External API calls per API key in any 60-second window.
    pub rate_limit_per_minute: u32,
    /// How long a deposit intent stays RESERVED before it is AUTO_CANCELLED.
    pub intent_ttl: Duration,
    /// Size of the receiving-account pool deposits reserve from.
    pub accounts: usize,
    /// Most webhook POSTs in flight at once.
    pub max_concurrent_deliveries: usize,
    /// Per-attempt timeout of a webhook POST.
    pub delivery_timeout: Duration,
    /// The pages that may show the hosted deposit page in a frame at start: a
    /// CSP `frame-ancestors` source list such as `'none'` or `https://partner.example`.
    pub frame_ancestors: String,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            bind: SocketAddr::from(([127, 0, 0, 1], 8081)),
            public_url: None,
            api_key: DEFAULT_API_KEY.to_owned(),
            webhook_secret: DEFAULT_WEBHOOK_SECRET.to_owned(),
            webhook_url: None,
            auto_approve_ms: None,
            retry_scale_ppm: REAL_SCHEDULE_PPM,
            tenant_name: "Pientegra Sandbox".to_owned(),
            tenant_color: "#4f46e5".to_owned(),
            rate_limit_per_minute: 60,
            intent_ttl: Duration::from_secs(30 * 60),
            accounts: 50,
            max_concurrent_deliveries: 16,
            delivery_timeout: Duration::from_secs(10),
            frame_ancestors: crate::html::NO_FRAMING.to_owned(),
        }
    }
}

impl Config {
    /// Where the sandbox is reached once bound to `addr`: `public_url` without a
    /// trailing slash, or the bound address (a wildcard address becomes
    /// loopback, which a browser on this machine can open).
    pub fn base_url(&self, addr: SocketAddr) -> String {
        match &self.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let mut addr = addr;
                if addr.ip().is_unspecified() {
                    addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
                }
                format!("http://{addr}")
            }
        }
    }

    /// Refuses a configuration the sandbox cannot serve, naming the setting.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.api_key.trim().is_empty(), "api_key must not be empty");
        anyhow::ensure!(!self.webhook_secret.trim().is_empty(), "webhook_secret must not be empty");
        anyhow::ensure!(self.accounts > 0, "accounts must be at least 1");
        anyhow::ensure!(self.rate_limit_per_minute > 0, "rate_limit_per_minute must be at least 1");
        anyhow::ensure!(self.max_concurrent_deliveries > 0, "max_concurrent_deliveries must be at least 1");
        anyhow::ensure!(
            is_hex_color(&self.tenant_color),
            "tenant_color must be a CSS hex colour such as #4f46e5, got {:?}",
            self.tenant_color
        );
        anyhow::ensure!(
            is_source_list(&self.frame_ancestors),
            "frame_ancestors must be a frame-ancestors source list such as 'none' or https://partner.example, got {:?}",
            self.frame_ancestors
        );
        if let Some(url) = &self.public_url {
            let parsed = url::Url::parse(url).map_err(|e| anyhow::anyhow!("public_url {url:?} is not a URL: {e}"))?;
            anyhow::ensure!(matches!(parsed.scheme(), "http" | "https"), "public_url must be http or https");
        }
        Ok(())
    }
}

/// Visible ASCII words without `;` or `,`: safe to put into a CSP header as
/// one directive's value (those two would end the directive or the policy).
fn is_source_list(s: &str) -> bool {
    !s.trim().is_empty() && s.bytes().all(|b| (b == b' ' || b.is_ascii_graphic()) && b != b';' && b != b',')
}

/// `#rgb` or `#rrggbb`: safe to put into a style sheet as is.
fn is_hex_color(s: &str) -> bool {
    s.strip_prefix('#').is_some_and(|hex| matches!(hex.len(), 3 | 6) && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Parses a non-negative decimal such as `"1"`, `"0.001"` or `"2.5"` into parts per million,
/// exactly (no floats): at most six decimals, and only digits around one optional point.
pub fn parse_scale_ppm(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (whole, fraction) = s.split_once('.').unwrap_or((s, ""));
    let digits_only = |part: &str| part.bytes().all(|b| b.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits_only(whole) || !digits_only(fraction) {
        return Err(format!("{s:?} is not a decimal number such as 1 or 0.001"));
    }
    if fraction.len() > 6 {
        return Err(format!("{s:?} has more than six decimals"));
    }
    let parse = |part: &str| -> Result<u64, String> {
        if part.is_empty() { Ok(0) } else { part.parse().map_err(|_| format!("{s:?} is too large")) }
    };
    let fraction_ppm = parse(&format!("{fraction:0<6}"))?;
    parse(whole)?
        .checked_mul(REAL_SCHEDULE_PPM)
        .and_then(|ppm| ppm.checked_add(fraction_ppm))
        .ok_or_else(|| format!("{s:?} is too large"))
}

/// Writes parts per million back as the shortest decimal: `1000` → `"0.001"`.
pub fn format_scale_ppm(ppm: u64) -> String {
    let whole = ppm / REAL_SCHEDULE_PPM;
    let fraction = ppm % REAL_SCHEDULE_PPM;
    if fraction == 0 {
        whole.to_string()
    } else {
        let digits = format!("{fraction:06}");
        format!("{whole}.{}", digits.trim_end_matches('0'))
    }
}

/// `duration × ppm / 1_000_000` in integer nanoseconds (saturating, never a float).
pub fn scale_duration(duration: Duration, ppm: u64) -> Duration {
    let nanos = duration.as_nanos().saturating_mul(u128::from(ppm)) / u128::from(REAL_SCHEDULE_PPM);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

/// The settings that can change while the sandbox runs (`GET`/`PUT /sandbox/config`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Settings {
    /// `None`: manual review only.
    pub auto_approve_ms: Option<u64>,
    /// Retry schedule multiplier as a decimal string, e.g. `"0.001"`.
    #[serde(serialize_with = "serialize_scale")]
    pub retry_scale: u64,
    pub rate_limit_per_minute: u32,
    pub intent_ttl_ms: u64,
    /// `false`: events are recorded as PENDING and nothing is sent until it is `true` again.
    pub webhooks_enabled: bool,
    /// The hosted deposit page's CSP `frame-ancestors` source list.
    pub frame_ancestors: String,
    pub faults: Faults,
}

fn serialize_scale<S: serde::Serializer>(ppm: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_scale_ppm(*ppm))
}

impl Settings {
    /// The settings a freshly started sandbox has.
    pub fn from_config(config: &Config) -> Settings {
        Settings {
            auto_approve_ms: config.auto_approve_ms,
            retry_scale: config.retry_scale_ppm,
            rate_limit_per_minute: config.rate_limit_per_minute,
            intent_ttl_ms: u64::try_from(config.intent_ttl.as_millis()).unwrap_or(u64::MAX),
            webhooks_enabled: true,
            frame_ancestors: config.frame_ancestors.clone(),
            faults: Faults::default(),
        }
    }

    /// Applies a partial update; fields left out keep their value.
    pub fn apply(&mut self, update: SettingsUpdate) -> Result<(), String> {
        if let Some(auto) = update.auto_approve_ms {
            self.auto_approve_ms = auto;
        }
        if let Some(scale) = update.retry_scale {
            self.retry_scale = match scale {
                ScaleInput::Text(text) => parse_scale_ppm(&text).map_err(|e| format!("retryScale: {e}"))?,
                ScaleInput::Whole(n) => {
                    n.checked_mul(REAL_SCHEDULE_PPM).ok_or_else(|| "retryScale: too large".to_owned())?
                }
            };
        }
        if let Some(limit) = update.rate_limit_per_minute {
            if limit == 0 {
                return Err("rateLimitPerMinute must be at least 1".to_owned());
            }
            self.rate_limit_per_minute = limit;
        }
        if let Some(ttl) = update.intent_ttl_ms {
            if ttl == 0 {
                return Err("intentTtlMs must be at least 1".to_owned());
            }
            self.intent_ttl_ms = ttl;
        }
        if let Some(enabled) = update.webhooks_enabled {
            self.webhooks_enabled = enabled;
        }
        if let Some(ancestors) = update.frame_ancestors {
            if !is_source_list(&ancestors) {
                return Err(format!(
                    "frameAncestors must be a frame-ancestors source list such as 'none' or https://partner.example, \
                     got {ancestors:?}"
                ));
            }
            self.frame_ancestors = ancestors.trim().to_owned();
        }
        if let Some(faults) = update.faults {
            self.faults.apply(faults)?;
        }
        Ok(())
    }

    /// How long a new intent stays RESERVED.
    pub fn intent_ttl(&self) -> Duration {
        Duration::from_millis(self.intent_ttl_ms)
    }
}

/// Fault injection: each knob makes one kind of real-world trouble happen on purpose.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Faults {
    /// Every delivered event is POSTed this many more times (each copy signed anew).
    pub duplicate_deliveries: u32,
    /// Deliveries due together go out in random order.
    pub shuffle_order: bool,
    /// Waited before each delivery attempt.
    pub delivery_delay_ms: u64,
    /// The next N delivery attempts fail without anything being sent.
    pub fail_next_deliveries: u32,
    /// Each delivery attempt fails (without being sent) with this probability.
    pub fail_delivery_percent: u8,
    /// The next N External API calls answer 500, 502, 503, 500, ... and do nothing.
    pub api_errors_next: u32,
    /// Each External API call answers a 5xx with this probability and does nothing.
    pub api_error_percent: u8,
    /// Added to External API calls (inside the idempotent section of the creates).
    pub api_latency_ms: u64,
    /// When above 0, only this many more calls get the latency; 0 means every call.
    pub api_latency_next: u32,
}

impl Faults {
    fn apply(&mut self, update: FaultsUpdate) -> Result<(), String> {
        let percent = |name: &str, p: u8| {
            if p > 100 { Err(format!("faults.{name} must be 0..=100")) } else { Ok(p) }
        };
        if let Some(v) = update.duplicate_deliveries {
            self.duplicate_deliveries = v;
        }
        if let Some(v) = update.shuffle_order {
            self.shuffle_order = v;
        }
        if let Some(v) = update.delivery_delay_ms {
            self.delivery_delay_ms = v;
        }
        if let Some(v) = update.fail_next_deliveries {
            self.fail_next_deliveries = v;
        }
        if let Some(v) = update.fail_delivery_percent {
            self.fail_delivery_percent = percent("failDeliveryPercent", v)?;
        }
        if let Some(v) = update.api_errors_next {
            self.api_errors_next = v;
        }
        if let Some(v) = update.api_error_percent {
            self.api_error_percent = percent("apiErrorPercent", v)?;
        }
        if let Some(v) = update.api_latency_ms {
            self.api_latency_ms = v;
        }
        if let Some(v) = update.api_latency_next {
            self.api_latency_next = v;
        }
        Ok(())
    }
}

/// The body of `PUT /sandbox/config`: every field optional.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SettingsUpdate {
    /// Absent: unchanged; `null`: manual review; a number: auto-approve after that many ms.
    #[serde(default, deserialize_with = "present")]
    pub auto_approve_ms: Option<Option<u64>>,
    pub retry_scale: Option<ScaleInput>,
    pub rate_limit_per_minute: Option<u32>,
    pub intent_ttl_ms: Option<u64>,
    pub webhooks_enabled: Option<bool>,
    pub frame_ancestors: Option<String>,
    pub faults: Option<FaultsUpdate>,
}

/// The retry scale as the decimal string the config answers with, or a whole number.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum ScaleInput {
    Whole(u64),
    Text(String),
}

/// Partial update of [`Faults`].
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultsUpdate {
    pub duplicate_deliveries: Option<u32>,
    pub shuffle_order: Option<bool>,
    pub delivery_delay_ms: Option<u64>,
    pub fail_next_deliveries: Option<u32>,
    pub fail_delivery_percent: Option<u8>,
    pub api_errors_next: Option<u32>,
    pub api_error_percent: Option<u8>,
    pub api_latency_ms: Option<u64>,
    pub api_latency_next: Option<u32>,
}

/// Tells a present `null` (`Some(None)`) from an absent field (`None`, via `default`).
fn present<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_parse_exactly() {
        assert_eq!(parse_scale_ppm("1"), Ok(1_000_000));
        assert_eq!(parse_scale_ppm("0.001"), Ok(1_000));
        assert_eq!(parse_scale_ppm(".5"), Ok(500_000));
        assert_eq!(parse_scale_ppm("2.5"), Ok(2_500_000));
        assert_eq!(parse_scale_ppm("0.000001"), Ok(1));
        for bad in ["", ".", "-1", "1e-3", "0.0000001", "abc", "1.2.3"] {
            assert!(parse_scale_ppm(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scales_format_back() {
        for s in ["1", "0.001", "2.5", "0", "0.000001", "10"] {
            assert_eq!(format_scale_ppm(parse_scale_ppm(s).unwrap()), s);
        }
    }

    #[test]
    fn durations_scale_with_integers() {
        assert_eq!(scale_duration(Duration::from_secs(10), 1_000), Duration::from_millis(10));
        assert_eq!(scale_duration(Duration::from_secs(1200), 1_000_000), Duration::from_secs(1200));
        assert_eq!(scale_duration(Duration::from_secs(30), 0), Duration::ZERO);
    }

    #[test]
    fn a_partial_update_tells_null_from_absent() {
        let mut settings = Settings::from_config(&Config { auto_approve_ms: Some(5), ..Config::default() });
        settings.apply(serde_json::from_str(r#"{"rateLimitPerMinute": 7}"#).unwrap()).unwrap();
        assert_eq!(settings.auto_approve_ms, Some(5));
        settings.apply(serde_json::from_str(r#"{"autoApproveMs": null}"#).unwrap()).unwrap();
        assert_eq!(settings.auto_approve_ms, None);
        assert_eq!(settings.rate_limit_per_minute, 7);
    }
}
