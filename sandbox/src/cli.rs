//! The command line: every setting has a flag and a `PIENTEGRA_SANDBOX_*`
//! environment twin, and no flag at all gives a sandbox the demo can use.
//! `--help` names the variables but never shows their values (the API key and
//! the webhook secret may be real ones).

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;

use crate::config::{self, Config};

/// A local stand-in for the Pientegra payment API.
#[derive(Debug, Parser)]
#[command(name = "pientegra-sandbox", version, about)]
pub struct Cli {
    /// Address to listen on.
    #[arg(long, env = "PIENTEGRA_SANDBOX_BIND", hide_env_values = true, default_value = "127.0.0.1:8081")]
    pub bind: SocketAddr,
    /// Base URL of `depositUrl` links (default: http://<bind address>).
    #[arg(long, env = "PIENTEGRA_SANDBOX_PUBLIC_URL", hide_env_values = true)]
    pub public_url: Option<String>,
    /// The API key to accept (default: a fixed demo key, printed at start).
    #[arg(long, env = "PIENTEGRA_SANDBOX_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// The webhook secret to sign with at start, `whsec_...` (default: a fixed demo secret).
    #[arg(long, env = "PIENTEGRA_SANDBOX_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Where to POST webhooks (can also be set with the webhook-config endpoint).
    #[arg(long, env = "PIENTEGRA_SANDBOX_WEBHOOK_URL", hide_env_values = true)]
    pub webhook_url: Option<String>,
    /// Approve every review this many ms after it becomes due (default: manual review).
    #[arg(long, env = "PIENTEGRA_SANDBOX_AUTO_APPROVE_MS", hide_env_values = true)]
    pub auto_approve_ms: Option<u64>,
    /// Multiplier of the webhook retry schedule, e.g. 0.001 (at most six decimals).
    #[arg(long, env = "PIENTEGRA_SANDBOX_RETRY_SCALE", hide_env_values = true, default_value = "1", value_parser = config::parse_scale_ppm)]
    pub retry_scale: u64,
    /// External API calls allowed per API key per minute.
    #[arg(long, env = "PIENTEGRA_SANDBOX_RATE_LIMIT", hide_env_values = true, default_value_t = 60)]
    pub rate_limit: u32,
    /// Milliseconds a deposit stays open before it is AUTO_CANCELLED.
    #[arg(long, env = "PIENTEGRA_SANDBOX_INTENT_TTL_MS", hide_env_values = true, default_value_t = 30 * 60 * 1000)]
    pub intent_ttl_ms: u64,
    /// Number of receiving accounts deposits reserve from.
    #[arg(long, env = "PIENTEGRA_SANDBOX_ACCOUNTS", hide_env_values = true, default_value_t = 50)]
    pub accounts: usize,
    /// Tenant name shown on the hosted deposit page.
    #[arg(long, env = "PIENTEGRA_SANDBOX_TENANT_NAME", hide_env_values = true, default_value = "Pientegra Sandbox")]
    pub tenant_name: String,
    /// Tenant colour of the hosted deposit page, #rgb or #rrggbb.
    #[arg(long, env = "PIENTEGRA_SANDBOX_TENANT_COLOR", hide_env_values = true, default_value = "#4f46e5")]
    pub tenant_color: String,
    /// Pages that may frame the hosted deposit page: a CSP frame-ancestors source list, e.g. 'self' https://partner.example
    #[arg(long, env = "PIENTEGRA_SANDBOX_FRAME_ANCESTORS", hide_env_values = true, default_value = "'none'")]
    pub frame_ancestors: String,
}

impl Cli {
    /// The configuration these arguments describe.
    pub fn into_config(self) -> Config {
        let defaults = Config::default();
        Config {
            bind: self.bind,
            public_url: self.public_url,
            api_key: self.api_key.unwrap_or(defaults.api_key),
            webhook_secret: self.webhook_secret.unwrap_or(defaults.webhook_secret),
            webhook_url: self.webhook_url,
            auto_approve_ms: self.auto_approve_ms,
            retry_scale_ppm: self.retry_scale,
            tenant_name: self.tenant_name,
            tenant_color: self.tenant_color,
            rate_limit_per_minute: self.rate_limit,
            intent_ttl: Duration::from_millis(self.intent_ttl_ms),
            accounts: self.accounts,
            frame_ancestors: self.frame_ancestors,
            ..defaults
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_flags_give_the_defaults() {
        let config = Cli::parse_from(["pientegra-sandbox"]).into_config();
        let defaults = Config::default();
        assert_eq!(config.bind, defaults.bind);
        assert_eq!(config.api_key, defaults.api_key);
        assert_eq!(config.retry_scale_ppm, 1_000_000);
        assert_eq!(config.intent_ttl, defaults.intent_ttl);
        assert_eq!(config.tenant_color, defaults.tenant_color);
        assert_eq!(config.frame_ancestors, "'none'");
    }

    #[test]
    fn frame_ancestors_is_one_directive_or_refused() {
        let parse = |value: &str| Cli::parse_from(["pientegra-sandbox", "--frame-ancestors", value]).into_config();
        assert!(parse("'self' https://partner.example http://127.0.0.1:*").validate().is_ok());
        for bad in ["", "  ", "https://a.example; script-src *", "https://a.example, frame-ancestors *", "'self'\n"] {
            let error = parse(bad).validate().expect_err(bad).to_string();
            assert!(error.contains("frame_ancestors"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn the_retry_scale_is_read_exactly() {
        let config = Cli::parse_from(["pientegra-sandbox", "--retry-scale", "0.001"]).into_config();
        assert_eq!(config.retry_scale_ppm, 1_000);
        assert!(Cli::try_parse_from(["pientegra-sandbox", "--retry-scale", "fast"]).is_err());
    }
}
