//! Typed settings: every value from an environment variable with a flag twin,
//! validated once at start. Errors name the variable; secrets never print.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use pientegra_shared::token::MIN_SECRET_BYTES;
use secrecy::{ExposeSecret, SecretString};
use url::Url;

use crate::ledger::BalanceModel;
use crate::pientegra::{BudgetSettings, RetryPolicy};

/// The variable that lets demo mode start where strangers can reach it. Its
/// name says what it allows, so nobody sets it by accident.
pub const DEMO_PUBLIC_OVERRIDE: &str = "I_UNDERSTAND_DEMO_MODE_IS_PUBLIC";
/// Its flag twin.
pub const DEMO_PUBLIC_OVERRIDE_FLAG: &str = "--i-understand-demo-mode-is-public";
/// The shortest accepted `ADMIN_TOKEN`, as for `WIDGET_TOKEN_SECRET`: a guessable token opens `/admin/*`.
pub const MIN_ADMIN_TOKEN_BYTES: usize = 32;

/// `serve` flags; each also reads the environment variable named beside it.
/// Not `Debug`: they hold the secrets as given.
#[derive(Args, Clone)]
pub struct ServeArgs {
    /// Pientegra External API base, e.g. https://api.pientegra.com/api/v1
    #[arg(long, env = "PIENTEGRA_API_BASE", hide_env_values = true)]
    pub api_base: Option<String>,
    /// Pientegra API key (sk_live_... / sk_test_...)
    #[arg(long, env = "PIENTEGRA_API_KEY", hide_env_values = true)]
    pub api_key: Option<String>,
    /// Webhook secrets, comma-separated, newest first (rotation)
    #[arg(long, env = "PIENTEGRA_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// sqlite://path.db (default) or postgres://...
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, default_value = "sqlite://pientegra.db")]
    pub database_url: String,
    /// Secrets that sign widget tokens (HS256 JWTs), comma-separated, newest first (rotation); each at least 32 bytes
    #[arg(long, env = "WIDGET_TOKEN_SECRET", hide_env_values = true)]
    pub widget_token_secret: Option<String>,
    /// The longest lifetime (exp - iat) of an accepted widget token, e.g. 24h, 15m
    #[arg(long, env = "WIDGET_TOKEN_MAX_LIFETIME", hide_env_values = true, default_value = "24h")]
    pub widget_token_max_lifetime: String,
    /// Partner page origins allowed to call the API (CORS), comma-separated
    #[arg(long, env = "ALLOWED_ORIGINS", hide_env_values = true, default_value = "")]
    pub allowed_origins: String,
    /// Hosts a depositUrl may point to, comma-separated (default: the API base's host)
    #[arg(long, env = "DEPOSIT_URL_HOSTS", hide_env_values = true)]
    pub deposit_url_hosts: Option<String>,
    /// Address to listen on
    #[arg(long, env = "BIND", hide_env_values = true, default_value = "127.0.0.1:8080")]
    pub bind: SocketAddr,
    /// pre-reserve | final-debit
    #[arg(long, env = "BALANCE_MODEL", hide_env_values = true, default_value = "pre-reserve")]
    pub balance_model: String,
    /// How often reconciliation runs, e.g. 1h, 15m (0 = never)
    #[arg(long, env = "RECONCILE_INTERVAL", hide_env_values = true, default_value = "1h")]
    pub reconcile_interval: String,
    /// Bearer token for /admin/* (admin routes are off without it)
    #[arg(long, env = "ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// Demo mode: enables POST /api/session, with which anyone mints a token for any user (never in production)
    #[arg(long, env = "DEMO_MODE", hide_env_values = true, value_parser = clap::builder::BoolishValueParser::new(), default_value = "false")]
    pub demo: bool,
    /// Let demo mode start with a live API key or on a non-loopback address (anyone who reaches it can mint tokens)
    #[arg(long = "i-understand-demo-mode-is-public", env = DEMO_PUBLIC_OVERRIDE, hide_env_values = true, action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    pub demo_allow_public: bool,
    /// Money-moving requests allowed per user per minute
    #[arg(long, env = "RATE_LIMIT_PER_MINUTE", hide_env_values = true, default_value = "30")]
    pub rate_limit_per_minute: u32,
    #[command(flatten)]
    pub pientegra_budget: BudgetArgs,
    /// Serve the built widget and demo page (trunk's dist/) from this folder
    #[arg(long, env = "STATIC_DIR", hide_env_values = true)]
    pub static_dir: Option<std::path::PathBuf>,
    /// Serve the partner bundle (cargo xtask widget's dist-widget/) at /widget/v1/ from this folder
    #[arg(long, env = "WIDGET_DIR", hide_env_values = true)]
    pub widget_dir: Option<std::path::PathBuf>,
    /// Bearer token Mia-Platform's Payment Gateway Manager must send to /v3/pientegra (at least 32 bytes; the facade is off without it)
    #[arg(long, env = "PGM_FACADE_TOKEN", hide_env_values = true)]
    pub pgm_facade_token: Option<String>,
    /// Where the facade notifies the shop of payment status changes (PGM's PAYMENT_CALLBACK_URL; https unless loopback)
    #[arg(long, env = "PAYMENT_CALLBACK_URL", hide_env_values = true)]
    pub payment_callback_url: Option<String>,
    /// Secret that signs every shop notification (Pientegra-Kit-Signature; at least 32 bytes)
    #[arg(long, env = "PAYMENT_CALLBACK_SECRET", hide_env_values = true)]
    pub payment_callback_secret: Option<String>,
    /// Connections served at once, event streams included; more wait in the listen backlog
    #[arg(long, env = "MAX_CONNECTIONS", hide_env_values = true, default_value_t = ConnectionLimits::default().max_connections)]
    pub max_connections: usize,
    /// Time a client has to send a whole request head, e.g. 10s
    #[arg(long, env = "HEADER_READ_TIMEOUT", hide_env_values = true, default_value = "10s")]
    pub header_read_timeout: String,
    /// A kept-alive connection on which no new request starts for this long is closed
    #[arg(long, env = "KEEP_ALIVE_TIMEOUT", hide_env_values = true, default_value = "75s")]
    pub keep_alive_timeout: String,
    /// A response write that makes no progress for this long drops the connection
    #[arg(long, env = "WRITE_TIMEOUT", hide_env_values = true, default_value = "30s")]
    pub write_timeout: String,
    /// The largest request head accepted, in bytes (larger gets 431)
    #[arg(long, env = "MAX_REQUEST_HEAD", hide_env_values = true, default_value_t = ConnectionLimits::default().max_request_head)]
    pub max_request_head: usize,
    /// Open event streams per user on one instance; one more closes the user's oldest
    #[arg(long, env = "MAX_STREAMS_PER_USER", hide_env_values = true, default_value_t = ConnectionLimits::default().max_streams_per_user)]
    pub max_streams_per_user: usize,
}

/// The Pientegra call budget's flags, shared by `serve` and `reconcile`.
#[derive(Args, Clone, Debug)]
pub struct BudgetArgs {
    /// Calls to Pientegra per minute, shared by every instance on one database (keep it plus the burst under your key's limit)
    #[arg(
        long = "pientegra-calls-per-minute",
        env = "PIENTEGRA_CALLS_PER_MINUTE",
        hide_env_values = true,
        default_value = "45"
    )]
    pub calls_per_minute: u32,
    /// Calls to Pientegra that may go at once after a quiet spell
    #[arg(long = "pientegra-call-burst", env = "PIENTEGRA_CALL_BURST", hide_env_values = true, default_value = "5")]
    pub call_burst: u32,
}

impl BudgetArgs {
    /// The budget, refused when either number is 0.
    pub fn settings(&self) -> anyhow::Result<BudgetSettings> {
        if self.calls_per_minute == 0 || self.call_burst == 0 {
            bail!("PIENTEGRA_CALLS_PER_MINUTE and PIENTEGRA_CALL_BURST must be at least 1");
        }
        Ok(BudgetSettings { per_minute: self.calls_per_minute, burst: self.call_burst })
    }
}

/// Validated settings of a running server.
#[derive(Clone, Debug)]
pub struct Settings {
    pub api_base: Url,
    pub api_key: SecretString,
    /// Newest first.
    pub webhook_secrets: Vec<SecretString>,
    pub database_url: DatabaseUrl,
    /// Newest first: the first mints, any verifies.
    pub widget_token_secrets: Vec<SecretString>,
    /// The longest `exp - iat` of an accepted widget token.
    pub widget_token_max_lifetime: Duration,
    pub allowed_origins: Vec<String>,
    pub deposit_url_hosts: Vec<String>,
    pub bind: SocketAddr,
    pub balance_model: BalanceModel,
    pub reconcile_interval: Option<Duration>,
    pub admin_token: Option<SecretString>,
    pub demo: bool,
    pub rate_limit_per_minute: u32,
    /// The one budget of calls to Pientegra.
    pub pientegra_budget: BudgetSettings,
    /// When and how long to try each Pientegra call (not a flag: the contract's schedule).
    pub pientegra_retry: RetryPolicy,
    pub static_dir: Option<std::path::PathBuf>,
    /// The partner bundle served at `/widget/v1/`.
    pub widget_dir: Option<std::path::PathBuf>,
    /// The PGM facade: its bearer token and the shop's callback URL.
    pub pgm: Option<PgmSettings>,
    /// Limits on connections, for hyper's and the event streams' alike.
    pub connections: ConnectionLimits,
}

/// `DATABASE_URL`, which may hold a password: its `Debug` shows the scheme only.
#[derive(Clone)]
pub struct DatabaseUrl(String);

impl From<String> for DatabaseUrl {
    fn from(url: String) -> DatabaseUrl {
        DatabaseUrl(url)
    }
}

impl std::ops::Deref for DatabaseUrl {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let scheme = self.0.split_once(':').map_or("?", |(scheme, _)| scheme);
        write!(f, "DatabaseUrl({scheme}:…)")
    }
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

/// Settings of the Mia-Platform PGM facade; build them with [`PgmSettings::new`],
/// which checks them.
#[derive(Clone, Debug)]
pub struct PgmSettings {
    /// What PGM sends as `Authorization: Bearer` (`PGM_FACADE_TOKEN`).
    pub token: SecretString,
    /// Where and how the shop is notified; nobody is without it.
    pub callback: Option<ShopCallback>,
    /// The first retry delay of a failed shop notification; it doubles with
    /// each failure ([`DEFAULT_NOTIFY_BACKOFF_BASE`]; tests shorten it).
    pub notify_backoff_base: Duration,
}

/// The first retry delay of a failed shop notification.
pub const DEFAULT_NOTIFY_BACKOFF_BASE: Duration = Duration::from_secs(1);

/// The shop's callback: its URL and the secret that signs each notification.
#[derive(Clone, Debug)]
pub struct ShopCallback {
    /// `PAYMENT_CALLBACK_URL`: https, or http on a loopback host.
    pub url: Url,
    /// `PAYMENT_CALLBACK_SECRET`.
    pub secret: SecretString,
}

/// The shortest facade token and callback secret accepted, in bytes.
pub const PGM_SECRET_MIN_BYTES: usize = 32;

impl PgmSettings {
    /// Checks the facade's settings, naming the variable of the first bad
    /// value: a token of at least 32 bytes; a callback URL only with its
    /// secret (at least 32 bytes, not the token), over https unless its host
    /// is loopback.
    pub fn new(token: &str, callback_url: Option<&str>, callback_secret: Option<&str>) -> anyhow::Result<PgmSettings> {
        let token = token.trim();
        if token.len() < PGM_SECRET_MIN_BYTES {
            bail!("PGM_FACADE_TOKEN must be at least {PGM_SECRET_MIN_BYTES} bytes long");
        }
        let callback = match (nonempty(callback_url), nonempty(callback_secret)) {
            (None, None) => None,
            (None, Some(_)) => bail!("PAYMENT_CALLBACK_SECRET is set without PAYMENT_CALLBACK_URL"),
            (Some(_), None) => bail!(
                "PAYMENT_CALLBACK_SECRET is required with PAYMENT_CALLBACK_URL: it signs every notification to the shop"
            ),
            (Some(url), Some(secret)) => {
                let url: Url = url.parse().context("PAYMENT_CALLBACK_URL is not a URL")?;
                check_callback_url(&url)?;
                if secret.len() < PGM_SECRET_MIN_BYTES {
                    bail!("PAYMENT_CALLBACK_SECRET must be at least {PGM_SECRET_MIN_BYTES} bytes long");
                }
                if secret == token {
                    bail!(
                        "PAYMENT_CALLBACK_SECRET must differ from PGM_FACADE_TOKEN, which travels in every PGM request"
                    );
                }
                Some(ShopCallback { url, secret: SecretString::from(secret.to_owned()) })
            }
        };
        Ok(PgmSettings {
            token: SecretString::from(token.to_owned()),
            callback,
            notify_backoff_base: DEFAULT_NOTIFY_BACKOFF_BASE,
        })
    }
}

fn nonempty(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

/// Notifications say a payment is paid, so they go over TLS; plain http only
/// to this machine (a local proxy, or tests).
fn check_callback_url(url: &Url) -> anyhow::Result<()> {
    match url.scheme() {
        "https" if url.host().is_some() => Ok(()),
        "http" if on_loopback(url) => Ok(()),
        "http" => bail!("PAYMENT_CALLBACK_URL must use https (plain http only to 127.0.0.0/8, ::1 or localhost)"),
        _ => bail!("PAYMENT_CALLBACK_URL must be an https URL"),
    }
}

/// Whether `url` names this machine (127.0.0.0/8, ::1 or localhost): the
/// only hosts plain http is accepted for.
pub(crate) fn on_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(host)) => host.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
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

/// The secrets of `WIDGET_TOKEN_SECRET`: comma-separated, newest first, each
/// at least [`MIN_SECRET_BYTES`] long (HS256 is as strong as its key).
pub fn widget_token_secrets(raw: &str) -> anyhow::Result<Vec<SecretString>> {
    let secrets = comma_list(raw);
    if secrets.is_empty() {
        bail!("WIDGET_TOKEN_SECRET must hold at least one secret");
    }
    if secrets.iter().any(|secret| secret.len() < MIN_SECRET_BYTES) {
        bail!("WIDGET_TOKEN_SECRET: each secret must be at least {MIN_SECRET_BYTES} bytes long");
    }
    Ok(secrets.into_iter().map(SecretString::from).collect())
}

/// `WIDGET_TOKEN_MAX_LIFETIME`: a duration of at least a second.
pub fn widget_token_max_lifetime(raw: &str) -> anyhow::Result<Duration> {
    let lifetime = parse_duration(raw).context("WIDGET_TOKEN_MAX_LIFETIME is not a duration like 24h or 15m")?;
    if lifetime < Duration::from_secs(1) {
        bail!("WIDGET_TOKEN_MAX_LIFETIME must be at least 1s");
    }
    Ok(lifetime)
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
        let widget_token_secrets = widget_token_secrets(&required(args.widget_token_secret, "WIDGET_TOKEN_SECRET")?)?;
        let widget_token_max_lifetime = widget_token_max_lifetime(&args.widget_token_max_lifetime)?;
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
        let pientegra_budget = args.pientegra_budget.settings()?;
        if !(args.database_url.starts_with("sqlite:") || args.database_url.starts_with("postgres")) {
            bail!("DATABASE_URL must start with sqlite: or postgres://");
        }
        let admin_token = args.admin_token.filter(|t| !t.is_empty()).map(SecretString::from);
        if admin_token.as_ref().is_some_and(|t| t.expose_secret().len() < MIN_ADMIN_TOKEN_BYTES) {
            bail!(
                "ADMIN_TOKEN must be at least {MIN_ADMIN_TOKEN_BYTES} bytes long \
                 (e.g. the output of `head -c 32 /dev/urandom | base64`)"
            );
        }
        if args.demo {
            if let Some(warning) = demo_mode_guard(api_key.expose_secret(), args.bind, "BIND", args.demo_allow_public)?
            {
                tracing::warn!("{warning}");
            }
        }
        if let Some(dir) = &args.widget_dir {
            if !dir.is_dir() {
                bail!("WIDGET_DIR: {} is not a folder (build it with cargo xtask widget)", dir.display());
            }
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
            database_url: args.database_url.into(),
            widget_token_secrets,
            widget_token_max_lifetime,
            allowed_origins,
            deposit_url_hosts,
            bind: args.bind,
            balance_model,
            reconcile_interval: (!reconcile_interval.is_zero()).then_some(reconcile_interval),
            admin_token,
            demo: args.demo,
            rate_limit_per_minute: args.rate_limit_per_minute.max(1),
            pientegra_budget,
            pientegra_retry: RetryPolicy::default(),
            static_dir: args.static_dir,
            widget_dir: args.widget_dir,
            pgm: match args.pgm_facade_token.filter(|t| !t.trim().is_empty()) {
                Some(token) => Some(PgmSettings::new(
                    &token,
                    args.payment_callback_url.as_deref(),
                    args.payment_callback_secret.as_deref(),
                )?),
                None if args.payment_callback_url.is_some() || args.payment_callback_secret.is_some() => {
                    bail!(
                        "PAYMENT_CALLBACK_URL and PAYMENT_CALLBACK_SECRET need PGM_FACADE_TOKEN: the facade is off without it"
                    )
                }
                None => None,
            },
            connections,
        })
    }
}

/// Refuses demo mode where strangers could use it: `POST /api/session` mints a
/// widget token for any user, so it must not run with a live API key
/// (`sk_live_...`) or listen beyond loopback. With the override
/// (`allow_public`) it starts anyway, and the returned warning is for the log.
/// `bind_name` is the variable or flag the address came from.
pub fn demo_mode_guard(
    api_key: &str,
    bind: SocketAddr,
    bind_name: &str,
    allow_public: bool,
) -> anyhow::Result<Option<String>> {
    let mut exposures = Vec::new();
    if api_key.trim().starts_with("sk_live_") {
        exposures.push("PIENTEGRA_API_KEY is a live key (sk_live_...)".to_owned());
    }
    if !bind.ip().is_loopback() {
        exposures.push(format!("{bind_name} {bind} is not a loopback address"));
    }
    if exposures.is_empty() {
        return Ok(None);
    }
    let exposures = exposures.join(" and ");
    if !allow_public {
        bail!(
            "DEMO_MODE refused: {exposures}, and demo mode's POST /api/session lets anyone mint a widget token \
             for any user. Turn DEMO_MODE off, or set {DEMO_PUBLIC_OVERRIDE}=true ({DEMO_PUBLIC_OVERRIDE_FLAG}) \
             if that is truly what you want"
        );
    }
    Ok(Some(format!(
        "DEMO MODE IS PUBLIC ({DEMO_PUBLIC_OVERRIDE}): {exposures}; anyone who reaches this server can mint \
         a widget token for any user with POST /api/session"
    )))
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

    const TOKEN: &str = "pgm-facade-token-0123456789abcdef";
    const SECRET: &str = "shop-callback-secret-0123456789ab";

    fn error(result: anyhow::Result<PgmSettings>) -> String {
        format!("{:#}", result.expect_err("refused"))
    }

    #[test]
    fn a_facade_token_shorter_than_32_bytes_is_refused() {
        let err = error(PgmSettings::new("pgm-facade-test-token", None, None));
        assert!(err.contains("PGM_FACADE_TOKEN") && err.contains("32 bytes"), "{err}");
        // Surrounding spaces do not count.
        assert!(PgmSettings::new(&format!("  {}  ", &TOKEN[..31]), None, None).is_err());
        assert!(PgmSettings::new(TOKEN, None, None).unwrap().callback.is_none());
    }

    #[test]
    fn a_callback_needs_a_secret_of_at_least_32_bytes_other_than_the_token() {
        let url = Some("https://shop.example/pgm/callback");
        let err = error(PgmSettings::new(TOKEN, url, None));
        assert!(err.contains("PAYMENT_CALLBACK_SECRET is required"), "{err}");
        let err = error(PgmSettings::new(TOKEN, url, Some(&SECRET[..31])));
        assert!(err.contains("PAYMENT_CALLBACK_SECRET") && err.contains("32 bytes"), "{err}");
        let err = error(PgmSettings::new(TOKEN, url, Some(TOKEN)));
        assert!(err.contains("PAYMENT_CALLBACK_SECRET must differ"), "{err}");
        let err = error(PgmSettings::new(TOKEN, None, Some(SECRET)));
        assert!(err.contains("without PAYMENT_CALLBACK_URL"), "{err}");
        let ok = PgmSettings::new(TOKEN, url, Some(SECRET)).unwrap().callback.unwrap();
        assert_eq!(ok.secret.expose_secret(), SECRET);
    }

    #[test]
    fn a_plain_http_callback_is_refused_unless_its_host_is_loopback() {
        for refused in [
            "http://shop.example/cb",
            "http://10.0.0.7:8080/cb",
            "http://localhost.shop.example/cb",
            "http://[2001:db8::1]/cb",
            "http://0.0.0.0/cb",
        ] {
            let err = error(PgmSettings::new(TOKEN, Some(refused), Some(SECRET)));
            assert!(err.contains("PAYMENT_CALLBACK_URL must use https"), "{refused}: {err}");
        }
        for refused in ["ftp://shop.example/cb", "file:///tmp/cb", "mailto:shop@example.com"] {
            let err = error(PgmSettings::new(TOKEN, Some(refused), Some(SECRET)));
            assert!(err.contains("PAYMENT_CALLBACK_URL must be an https URL"), "{refused}: {err}");
        }
        let err = error(PgmSettings::new(TOKEN, Some("not a url"), Some(SECRET)));
        assert!(err.contains("PAYMENT_CALLBACK_URL is not a URL"), "{err}");
        for accepted in [
            "https://shop.example/pgm/callback",
            "http://127.0.0.1:9090/cb",
            "http://127.8.9.10/cb",
            "http://[::1]:9090/cb",
            "http://localhost:9090/cb",
            "http://LOCALHOST/cb",
        ] {
            assert!(PgmSettings::new(TOKEN, Some(accepted), Some(SECRET)).is_ok(), "{accepted}");
        }
    }

    #[test]
    fn the_settings_never_print_a_secret() {
        let mut args = args();
        args.database_url = "postgres://kit:db-password-0123@db.internal/kit".into();
        args.admin_token = Some("admin-token-0123456789abcdef0123456789".into());
        let settings = Settings::from_args(args).expect("valid");
        let printed = format!("{settings:?}");
        for secret in [TEST_KEY, "whsec_test", "0123456789abcdef0123456789abcdef", "db-password", "admin-token"] {
            assert!(!printed.contains(secret), "{secret} in {printed}");
        }
        assert!(printed.contains("DatabaseUrl(postgres:…)"), "{printed}");
    }

    #[test]
    fn the_facade_secrets_never_print() {
        let pgm = PgmSettings::new(TOKEN, Some("https://shop.example/cb"), Some(SECRET)).unwrap();
        let printed = format!("{pgm:?}");
        assert!(!printed.contains(TOKEN) && !printed.contains(SECRET), "{printed}");
    }

    const TEST_KEY: &str = "sk_test_0123456789abcdef";
    const LIVE_KEY: &str = "sk_live_0123456789abcdef";

    /// Valid `serve` arguments, built directly so that no variable of the
    /// test process's environment takes part.
    fn args() -> ServeArgs {
        ServeArgs {
            api_base: Some("http://127.0.0.1:8081/api/v1".into()),
            api_key: Some(TEST_KEY.into()),
            webhook_secret: Some("whsec_test".into()),
            database_url: "sqlite://p.db".into(),
            widget_token_secret: Some("0123456789abcdef0123456789abcdef".into()),
            widget_token_max_lifetime: "24h".into(),
            allowed_origins: String::new(),
            deposit_url_hosts: None,
            bind: "127.0.0.1:8080".parse().unwrap(),
            balance_model: "pre-reserve".into(),
            reconcile_interval: "1h".into(),
            admin_token: None,
            demo: false,
            demo_allow_public: false,
            rate_limit_per_minute: 30,
            pientegra_budget: BudgetArgs { calls_per_minute: 45, call_burst: 5 },
            static_dir: None,
            widget_dir: None,
            pgm_facade_token: None,
            payment_callback_url: None,
            payment_callback_secret: None,
            max_connections: 16_384,
            header_read_timeout: "10s".into(),
            keep_alive_timeout: "75s".into(),
            write_timeout: "30s".into(),
            max_request_head: 8_192,
            max_streams_per_user: 8,
        }
    }

    fn refusal(args: ServeArgs) -> String {
        format!("{:#}", Settings::from_args(args).expect_err("refused"))
    }

    #[test]
    fn demo_mode_starts_on_loopback_with_a_test_key() {
        for bind in ["127.0.0.1:8080", "[::1]:8080"] {
            let settings = Settings::from_args(ServeArgs { demo: true, bind: bind.parse().unwrap(), ..args() });
            assert!(settings.unwrap().demo, "{bind}");
        }
    }

    #[test]
    fn demo_mode_refuses_a_live_api_key_and_names_the_variables() {
        let error = refusal(ServeArgs { demo: true, api_key: Some(LIVE_KEY.into()), ..args() });
        assert!(error.contains("DEMO_MODE") && error.contains("PIENTEGRA_API_KEY"), "{error}");
        assert!(error.contains(DEMO_PUBLIC_OVERRIDE) && error.contains(DEMO_PUBLIC_OVERRIDE_FLAG), "{error}");
        assert!(!error.contains(LIVE_KEY), "the key itself is never printed: {error}");
    }

    #[test]
    fn demo_mode_refuses_an_address_beyond_loopback() {
        for bind in ["0.0.0.0:8080", "192.168.1.20:8080", "[::]:8080"] {
            let error = refusal(ServeArgs { demo: true, bind: bind.parse().unwrap(), ..args() });
            assert!(error.contains("DEMO_MODE") && error.contains("BIND") && error.contains(bind), "{error}");
        }
    }

    #[test]
    fn demo_mode_goes_public_only_with_the_override_and_says_so() {
        let public = ServeArgs {
            demo: true,
            demo_allow_public: true,
            api_key: Some(LIVE_KEY.into()),
            bind: "0.0.0.0:8080".parse().unwrap(),
            ..args()
        };
        assert!(Settings::from_args(public).unwrap().demo);
        let warning = demo_mode_guard(LIVE_KEY, "0.0.0.0:8080".parse().unwrap(), "BIND", true).unwrap().unwrap();
        assert!(warning.contains("PUBLIC") && warning.contains("PIENTEGRA_API_KEY") && warning.contains("BIND"));
        assert!(!warning.contains(LIVE_KEY));
        assert_eq!(demo_mode_guard(TEST_KEY, "127.0.0.1:1".parse().unwrap(), "BIND", true).unwrap(), None);
    }

    #[test]
    fn without_demo_mode_a_live_key_on_any_address_is_fine() {
        let live = ServeArgs { api_key: Some(LIVE_KEY.into()), bind: "0.0.0.0:8080".parse().unwrap(), ..args() };
        assert!(!Settings::from_args(live).unwrap().demo);
    }

    #[test]
    fn an_admin_token_shorter_than_32_bytes_is_refused() {
        let error = refusal(ServeArgs { admin_token: Some("admin-token-of-31-bytes-0123456".into()), ..args() });
        assert!(error.contains("ADMIN_TOKEN") && error.contains("32 bytes"), "{error}");
        assert!(!error.contains("admin-token-of"), "{error}");
        let settings =
            Settings::from_args(ServeArgs { admin_token: Some("admin-token-of-32-bytes-01234567".into()), ..args() });
        assert!(settings.unwrap().admin_token.is_some());
        // Empty means no admin routes, as unset does.
        assert!(
            Settings::from_args(ServeArgs { admin_token: Some(String::new()), ..args() })
                .unwrap()
                .admin_token
                .is_none()
        );
    }

    #[test]
    fn widget_token_secrets_rotate_and_each_is_at_least_32_bytes() {
        let (new, old) = ("n".repeat(32), "o".repeat(40));
        let settings = Settings::from_args(ServeArgs { widget_token_secret: Some(format!("{new}, {old}")), ..args() });
        let secrets = settings.unwrap().widget_token_secrets;
        let exposed: Vec<&str> = secrets.iter().map(ExposeSecret::expose_secret).collect();
        assert_eq!(exposed, [new.as_str(), old.as_str()]);
        for bad in [format!("{new},short"), " , ".to_owned()] {
            let error = refusal(ServeArgs { widget_token_secret: Some(bad), ..args() });
            assert!(error.contains("WIDGET_TOKEN_SECRET") && !error.contains(&new), "{error}");
        }
    }

    #[test]
    fn the_widget_token_lifetime_is_a_day_unless_configured() {
        assert_eq!(Settings::from_args(args()).unwrap().widget_token_max_lifetime, Duration::from_secs(24 * 3600));
        let settings = Settings::from_args(ServeArgs { widget_token_max_lifetime: "15m".into(), ..args() });
        assert_eq!(settings.unwrap().widget_token_max_lifetime, Duration::from_secs(900));
        for bad in ["soon", "0", "500ms"] {
            let error = refusal(ServeArgs { widget_token_max_lifetime: bad.into(), ..args() });
            assert!(error.contains("WIDGET_TOKEN_MAX_LIFETIME"), "{error}");
        }
    }

    #[test]
    fn a_widget_dir_must_be_a_folder() {
        let folder = tempfile::tempdir().unwrap();
        let settings = Settings::from_args(ServeArgs { widget_dir: Some(folder.path().to_owned()), ..args() });
        assert_eq!(settings.unwrap().widget_dir.as_deref(), Some(folder.path()));
        let missing = folder.path().join("dist-widget");
        let error = refusal(ServeArgs { widget_dir: Some(missing), ..args() });
        assert!(error.contains("WIDGET_DIR") && error.contains("dist-widget"), "{error}");
    }

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
