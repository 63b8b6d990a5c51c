//! Typed settings: every value from an environment variable with a flag twin,
//! validated once at start. Errors name the variable; secrets never print.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::ledger::BalanceModel;

/// `serve` flags; each also reads the environment variable named beside it.
#[derive(Args, Clone, Debug)]
pub struct ServeArgs {
    /// Pientegra External API base, e.g. https://api.pientegra.com/api/v1
    #[arg(long, env = "PIENTEGRA_API_BASE")]
    pub api_base: Option<String>,
    /// Pientegra API key (sk_live_... / sk_test_...)
    #[arg(long, env = "PIENTEGRA_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Webhook secrets, comma-separated, newest first (rotation)
    #[arg(long, env = "PIENTEGRA_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// sqlite://path.db (default) or postgres://...
    #[arg(long, env = "DATABASE_URL", default_value = "sqlite://pientegra.db")]
    pub database_url: String,
    /// Secret that signs widget tokens (at least 32 bytes)
    #[arg(long, env = "WIDGET_TOKEN_SECRET", hide_env_values = true)]
    pub widget_token_secret: Option<String>,
    /// Partner page origins allowed to call the API (CORS), comma-separated
    #[arg(long, env = "ALLOWED_ORIGINS", default_value = "")]
    pub allowed_origins: String,
    /// Hosts a depositUrl may point to, comma-separated (default: the API base's host)
    #[arg(long, env = "DEPOSIT_URL_HOSTS")]
    pub deposit_url_hosts: Option<String>,
    /// Address to listen on
    #[arg(long, env = "BIND", default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// pre-reserve | final-debit
    #[arg(long, env = "BALANCE_MODEL", default_value = "pre-reserve")]
    pub balance_model: String,
    /// How often reconciliation runs, e.g. 1h, 15m (0 = never)
    #[arg(long, env = "RECONCILE_INTERVAL", default_value = "1h")]
    pub reconcile_interval: String,
    /// Bearer token for /admin/* (admin routes are off without it)
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Demo mode: enables POST /api/session (never in production)
    #[arg(long, env = "DEMO_MODE", value_parser = clap::builder::BoolishValueParser::new(), default_value = "false")]
    pub demo: bool,
    /// Money-moving requests allowed per user per minute
    #[arg(long, env = "RATE_LIMIT_PER_MINUTE", default_value = "30")]
    pub rate_limit_per_minute: u32,
    /// Serve the built widget and demo page (trunk's dist/) from this folder
    #[arg(long, env = "STATIC_DIR")]
    pub static_dir: Option<std::path::PathBuf>,
    /// Bearer token Mia-Platform's Payment Gateway Manager must send to /v3/pientegra (the facade is off without it)
    #[arg(long, env = "PGM_FACADE_TOKEN", hide_env_values = true)]
    pub pgm_facade_token: Option<String>,
    /// Where the facade notifies the shop of payment status changes (PGM's PAYMENT_CALLBACK_URL)
    #[arg(long, env = "PAYMENT_CALLBACK_URL")]
    pub payment_callback_url: Option<String>,
    /// Connections served at once, event streams included; more wait in the listen backlog
    #[arg(long, env = "MAX_CONNECTIONS", default_value_t = ConnectionLimits::default().max_connections)]
    pub max_connections: usize,
    /// Time a client has to send a whole request head, e.g. 10s
    #[arg(long, env = "HEADER_READ_TIMEOUT", default_value = "10s")]
    pub header_read_timeout: String,
    /// A kept-alive connection on which no new request starts for this long is closed
    #[arg(long, env = "KEEP_ALIVE_TIMEOUT", default_value = "75s")]
    pub keep_alive_timeout: String,
    /// A response write that makes no progress for this long drops the connection
    #[arg(long, env = "WRITE_TIMEOUT", default_value = "30s")]
    pub write_timeout: String,
    /// The largest request head accepted, in bytes (larger gets 431)
    #[arg(long, env = "MAX_REQUEST_HEAD", default_value_t = ConnectionLimits::default().max_request_head)]
    pub max_request_head: usize,
    /// Open event streams per user on one instance; one more closes the user's oldest
    #[arg(long, env = "MAX_STREAMS_PER_USER", default_value_t = ConnectionLimits::default().max_streams_per_user)]
    pub max_streams_per_user: usize,
}

/// Validated settings of a running server.
#[derive(Clone, Debug)]
pub struct Settings {
    pub api_base: Url,
    pub api_key: SecretString,
    /// Newest first.
    pub webhook_secrets: Vec<SecretString>,
    pub database_url: String,
    pub widget_token_secret: SecretString,
    pub allowed_origins: Vec<String>,
    pub deposit_url_hosts: Vec<String>,
    pub bind: SocketAddr,
    pub balance_model: BalanceModel,
    pub reconcile_interval: Option<Duration>,
    pub admin_token: Option<SecretString>,
    pub demo: bool,
    pub rate_limit_per_minute: u32,
    pub static_dir: Option<std::path::PathBuf>,
    /// The PGM facade: its bearer token and the shop's callback URL.
    pub pgm: Option<PgmSettings>,
    /// Limits on connections, for hyper's and the event streams' alike.
    pub connections: ConnectionLimits,
}

/// How many connections the server holds, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections served at once; the next waits in the kernel's listen backlog.
    pub max_connections: usize,
    /// From accepting a connection, or from the first byte of a later request
    /// on a kept-alive one, until its request head is complete.
    pub header_read_timeout: Duration,
    /// From the end of a response until the first byte of the next request.
    pub keep_alive_timeout: Duration,
    /// How long a response write may make no progress (a client that stopped reading).
    pub write_timeout: Duration,
    /// The largest request head, in bytes.
    pub max_request_head: usize,
    /// Open event streams per user on one instance.
    pub max_streams_per_user: usize,
}

impl ConnectionLimits {
    /// The smallest `max_request_head`: hyper's smallest read buffer.
    pub const MIN_REQUEST_HEAD: usize = 8 * 1024;
    /// The largest `max_request_head`.
    pub const MAX_REQUEST_HEAD: usize = 1024 * 1024;
}

impl Default for ConnectionLimits {
    fn default() -> ConnectionLimits {
        ConnectionLimits {
            // Above the 10,000 idle streams one instance is sized for (BENCHMARKS.md, figure 2).
            max_connections: 16_384,
            header_read_timeout: Duration::from_secs(10),
            // Longer than the 60 s idle timeout of common load balancers, so they close first.
            keep_alive_timeout: Duration::from_secs(75),
            write_timeout: Duration::from_secs(30),
            // Apache's limit per header line; what hyper reads a head into at first.
            max_request_head: 8 * 1024,
            max_streams_per_user: 8,
        }
    }
}

/// Settings of the Mia-Platform PGM facade.
#[derive(Clone, Debug)]
pub struct PgmSettings {
    pub token: SecretString,
    pub callback_url: Option<Url>,
}

fn required(value: Option<String>, var: &str) -> anyhow::Result<String> {
    match value {
        Some(v) if !v.trim().is_empty() => Ok(v.trim().to_owned()),
        _ => bail!("{var} is required (or its flag twin)"),
    }
}

fn comma_list(raw: &str) -> Vec<String> {
    raw.split(',').map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

impl Settings {
    /// Validates the flags, naming the variable of the first bad value.
    pub fn from_args(args: ServeArgs) -> anyhow::Result<Settings> {
        let api_base: Url =
            required(args.api_base, "PIENTEGRA_API_BASE")?.parse().context("PIENTEGRA_API_BASE is not a URL")?;
        if !matches!(api_base.scheme(), "http" | "https") {
            bail!("PIENTEGRA_API_BASE must be an http(s) URL");
        }
        let api_key = SecretString::from(required(args.api_key, "PIENTEGRA_API_KEY")?);
        let webhook_secrets: Vec<SecretString> =
            comma_list(&required(args.webhook_secret, "PIENTEGRA_WEBHOOK_SECRET")?)
                .into_iter()
                .map(SecretString::from)
                .collect();
        if webhook_secrets.is_empty() {
            bail!("PIENTEGRA_WEBHOOK_SECRET must hold at least one secret");
        }
        let widget_token_secret = SecretString::from(required(args.widget_token_secret, "WIDGET_TOKEN_SECRET")?);
        if widget_token_secret.expose_secret().len() < 32 {
            bail!("WIDGET_TOKEN_SECRET must be at least 32 bytes long");
        }
        let allowed_origins = comma_list(&args.allowed_origins);
        for origin in &allowed_origins {
            if origin == "*" {
                bail!("ALLOWED_ORIGINS must list origins; a wildcard is refused");
            }
            let url: Url = origin.parse().with_context(|| format!("ALLOWED_ORIGINS: {origin} is not an origin"))?;
            if url.origin().ascii_serialization() != *origin {
                bail!("ALLOWED_ORIGINS: {origin} is not an origin (scheme://host[:port], no path or trailing slash)");
            }
        }
        let deposit_url_hosts = match args.deposit_url_hosts {
            Some(raw) => comma_list(&raw),
            None => vec![api_base.host_str().unwrap_or_default().to_owned()],
        };
        if deposit_url_hosts.is_empty() {
            bail!("DEPOSIT_URL_HOSTS must name at least one host");
        }
        let balance_model = args
            .balance_model
            .parse()
            .map_err(|_| anyhow::anyhow!("BALANCE_MODEL must be pre-reserve or final-debit"))?;
        let reconcile_interval =
            parse_duration(&args.reconcile_interval).context("RECONCILE_INTERVAL is not a duration like 1h or 15m")?;
        if !(args.database_url.starts_with("sqlite:") || args.database_url.starts_with("postgres")) {
            bail!("DATABASE_URL must start with sqlite: or postgres://");
        }
        let timeout = |raw: &str, var: &str| -> anyhow::Result<Duration> {
            let duration = parse_duration(raw).with_context(|| format!("{var} is not a duration like 10s"))?;
            if duration.is_zero() {
                bail!("{var} must be more than 0");
            }
            Ok(duration)
        };
        let connections = ConnectionLimits {
            max_connections: match args.max_connections {
                0 => bail!("MAX_CONNECTIONS must be at least 1"),
                n => n,
            },
            header_read_timeout: timeout(&args.header_read_timeout, "HEADER_READ_TIMEOUT")?,
            keep_alive_timeout: timeout(&args.keep_alive_timeout, "KEEP_ALIVE_TIMEOUT")?,
            write_timeout: timeout(&args.write_timeout, "WRITE_TIMEOUT")?,
            max_request_head: match args.max_request_head {
                n @ ConnectionLimits::MIN_REQUEST_HEAD..=ConnectionLimits::MAX_REQUEST_HEAD => n,
                _ => bail!(
                    "MAX_REQUEST_HEAD must be between {} and {} bytes",
                    ConnectionLimits::MIN_REQUEST_HEAD,
                    ConnectionLimits::MAX_REQUEST_HEAD
                ),
            },
            max_streams_per_user: match args.max_streams_per_user {
                0 => bail!("MAX_STREAMS_PER_USER must be at least 1"),
                n => n,
            },
        };
        Ok(Settings {
            api_base,
            api_key,
            webhook_secrets,
            database_url: args.database_url,
            widget_token_secret,
            allowed_origins,
            deposit_url_hosts,
            bind: args.bind,
            balance_model,
            reconcile_interval: (!reconcile_interval.is_zero()).then_some(reconcile_interval),
            admin_token: args.admin_token.filter(|t| !t.is_empty()).map(SecretString::from),
            demo: args.demo,
            rate_limit_per_minute: args.rate_limit_per_minute.max(1),
            static_dir: args.static_dir,
            pgm: match args.pgm_facade_token.filter(|t| !t.trim().is_empty()) {
                None => None,
                Some(token) => Some(PgmSettings {
                    token: SecretString::from(token),
                    callback_url: args
                        .payment_callback_url
                        .map(|u| u.parse::<Url>())
                        .transpose()
                        .context("PAYMENT_CALLBACK_URL is not a URL")?,
                }),
            },
            connections,
        })
    }
}

/// Parses `1h`, `15m`, `30s`, `250ms`, `2d`, or a bare number of seconds.
pub fn parse_duration(raw: &str) -> anyhow::Result<Duration> {
    let raw = raw.trim();
    let split = raw.find(|c: char| !c.is_ascii_digit()).unwrap_or(raw.len());
    let (digits, unit) = raw.split_at(split);
    let n: u64 = digits.parse().with_context(|| format!("{raw:?} has no number"))?;
    let ms = match unit {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        other => bail!("unknown unit {other:?}"),
    };
    Ok(Duration::from_millis(n.checked_mul(ms).context("duration too large")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_in_common_units() {
        assert_eq!(parse_duration("1h").unwrap(), Duration::from_secs(3600));
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("90").unwrap(), Duration::from_secs(90));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("5y").is_err());
    }

    #[derive(clap::Parser)]
    struct Serve {
        #[command(flatten)]
        args: ServeArgs,
    }

    fn settings(extra: &[&str]) -> anyhow::Result<Settings> {
        use clap::Parser;
        let required = [
            "serve",
            "--api-base=http://127.0.0.1:1/api/v1",
            "--api-key=k",
            "--webhook-secret=s",
            "--widget-token-secret=0123456789abcdef0123456789abcdef",
        ];
        Settings::from_args(Serve::try_parse_from(required.iter().chain(extra))?.args)
    }

    #[test]
    fn the_flags_defaults_are_the_connection_limits_defaults() {
        assert_eq!(settings(&[]).unwrap().connections, ConnectionLimits::default());
    }

    #[test]
    fn connection_limits_out_of_range_name_their_variable() {
        for (flag, variable) in [
            ("--max-connections=0", "MAX_CONNECTIONS"),
            ("--header-read-timeout=0", "HEADER_READ_TIMEOUT"),
            ("--keep-alive-timeout=soon", "KEEP_ALIVE_TIMEOUT"),
            ("--write-timeout=0s", "WRITE_TIMEOUT"),
            ("--max-request-head=4096", "MAX_REQUEST_HEAD"),
            ("--max-request-head=2000000", "MAX_REQUEST_HEAD"),
            ("--max-streams-per-user=0", "MAX_STREAMS_PER_USER"),
        ] {
            let error = format!("{:#}", settings(&[flag]).unwrap_err());
            assert!(error.contains(variable), "{flag}: {error}");
        }
        let tuned = settings(&["--header-read-timeout=2s", "--keep-alive-timeout=500ms", "--max-request-head=8192"])
            .unwrap()
            .connections;
        assert_eq!(tuned.header_read_timeout, Duration::from_secs(2));
        assert_eq!(tuned.keep_alive_timeout, Duration::from_millis(500));
        assert_eq!(tuned.max_request_head, 8192);
    }
}
