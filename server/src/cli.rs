//! The `pientegra-server` command line.

use anyhow::Context;
use chrono::Utc;
use clap::{Parser, Subcommand};
use pientegra_shared::ids::{ExternalUserId, UserLabel};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::settings::{
    DEMO_PUBLIC_OVERRIDE, ServeArgs, Settings, demo_mode_guard, parse_duration, widget_token_max_lifetime,
    widget_token_secrets,
};

/// The Pientegra kit's companion server.
#[derive(Parser)]
#[command(name = "pientegra-server", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Serve the widget API, the webhook receiver and the SSE streams.
    // Boxed: its many flags would make every other command as large.
    Serve(Box<ServeArgs>),
    /// Run the whole kit locally: the sandbox, the server in demo mode, and the demo page.
    Demo(DemoArgs),
    /// Compare a time window of Pientegra's intents and withdrawals with the ledger, and repair.
    Reconcile(ReconcileArgs),
    /// Print the OpenAPI 3.1 document of the HTTP API (as served at GET /openapi.json).
    Openapi,
    /// Widget tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

/// `demo` flags.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// Where the server (API + demo page) listens
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub bind: std::net::SocketAddr,
    /// Where the sandbox listens
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub sandbox_bind: std::net::SocketAddr,
    /// Approve confirmed deposits automatically after this many ms (default: manual, in the console)
    #[arg(long)]
    pub auto_approve_ms: Option<u64>,
    /// The built widget and demo page (trunk's dist/)
    #[arg(long, default_value = "dist")]
    pub static_dir: std::path::PathBuf,
    /// The partner bundle to serve at /widget/v1/ (cargo xtask widget's dist-widget/)
    #[arg(long)]
    pub widget_dir: Option<std::path::PathBuf>,
    /// The demo's SQLite file
    #[arg(long, default_value = "target/pientegra-demo.db")]
    pub database: std::path::PathBuf,
    /// Let the demo listen beyond loopback (anyone who reaches it can mint tokens)
    #[arg(long = "i-understand-demo-mode-is-public", env = DEMO_PUBLIC_OVERRIDE, hide_env_values = true, action = clap::ArgAction::SetTrue, value_parser = clap::builder::BoolishValueParser::new())]
    pub allow_public: bool,
}

/// `reconcile` flags.
#[derive(clap::Args)]
pub struct ReconcileArgs {
    /// Window start: an ISO 8601 time, or a duration ago such as 24h
    #[arg(long)]
    pub from: String,
    /// Window end (exclusive): an ISO 8601 time, or a duration ago; default now
    #[arg(long)]
    pub to: Option<String>,
    /// Apply missed transitions and replay DEAD/FAILED events (default: report only)
    #[arg(long)]
    pub apply: bool,
    /// table | json
    #[arg(long, default_value = "table")]
    pub format: String,
    #[arg(long, env = "PIENTEGRA_API_BASE", hide_env_values = true)]
    pub api_base: String,
    #[arg(long, env = "PIENTEGRA_API_KEY", hide_env_values = true)]
    pub api_key: String,
    #[arg(long, env = "DATABASE_URL", hide_env_values = true, default_value = "sqlite://pientegra.db")]
    pub database_url: String,
    #[command(flatten)]
    pub budget: crate::settings::BudgetArgs,
}

#[derive(Subcommand)]
pub enum TokenCommand {
    /// Print a widget token for one user.
    Mint {
        /// The user's externalUserId
        #[arg(long)]
        user: String,
        /// Display label
        #[arg(long)]
        label: Option<String>,
        /// Lifetime, e.g. 1h, 15m; at most the maximum lifetime
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// The secrets that sign tokens, comma-separated, newest first: the first signs
        #[arg(long, env = "WIDGET_TOKEN_SECRET", hide_env_values = true)]
        secret: String,
        /// The longest lifetime the server accepts
        #[arg(long, env = "WIDGET_TOKEN_MAX_LIFETIME", hide_env_values = true, default_value = "24h")]
        max_lifetime: String,
    },
}

/// Runs the command line.
pub async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve(args) => {
            let settings = Settings::from_args(*args)?;
            let listener = crate::http::listen(settings.bind)
                .with_context(|| format!("BIND: cannot listen on {}", settings.bind))?;
            let shutdown = CancellationToken::new();
            tokio::spawn(cancel_on_signal(shutdown.clone()));
            crate::run(listener, settings, shutdown).await
        }
        Command::Demo(args) => demo(args).await,
        Command::Reconcile(args) => reconcile(args).await,
        Command::Openapi => {
            print!("{}", crate::http::openapi::json());
            Ok(())
        }
        Command::Token { command: TokenCommand::Mint { user, label, ttl, secret, max_lifetime } } => {
            let user = ExternalUserId::parse(&user).context("--user")?;
            crate::token::may_name(&user).context("--user")?;
            let label = label.as_deref().map(UserLabel::parse).transpose().context("--label")?;
            let max_lifetime = widget_token_max_lifetime(&max_lifetime)?;
            let lifetime = parse_duration(&ttl).context("--ttl")?;
            if lifetime > max_lifetime {
                anyhow::bail!(
                    "--ttl {ttl} is longer than WIDGET_TOKEN_MAX_LIFETIME ({}s): the server would refuse the token",
                    max_lifetime.as_secs()
                );
            }
            if lifetime.is_zero() {
                anyhow::bail!("--ttl must be at least 1s");
            }
            let key = crate::token::key(&widget_token_secrets(&secret)?, max_lifetime);
            let issued_at = Utc::now();
            println!(
                "{}",
                key.mint(&user, label.as_ref(), issued_at, issued_at + chrono::Duration::from_std(lifetime)?)
            );
            Ok(())
        }
    }
}

/// An ISO 8601 instant, or a duration before now (`24h`).
fn instant(raw: &str, flag: &str) -> anyhow::Result<chrono::DateTime<Utc>> {
    if let Some(t) = pientegra_shared::time::parse(raw) {
        return Ok(t);
    }
    let ago = parse_duration(raw).with_context(|| format!("{flag}: not an ISO 8601 time or a duration like 24h"))?;
    Ok(Utc::now() - chrono::Duration::from_std(ago)?)
}

async fn reconcile(args: ReconcileArgs) -> anyhow::Result<()> {
    let from = instant(&args.from, "--from")?;
    let to = args.to.as_deref().map(|t| instant(t, "--to")).transpose()?.unwrap_or_else(Utc::now);
    if from >= to {
        anyhow::bail!("--from must be before --to");
    }
    let json = match args.format.as_str() {
        "table" => false,
        "json" => true,
        other => anyhow::bail!("--format must be table or json, not {other}"),
    };
    let storage = crate::storage::connect(&args.database_url).await?;
    let budget = args.budget.settings()?;
    // A reconciliation is background work: it yields to the servers' creates and lookups.
    let budget = crate::pientegra::CallBudget::connect(budget, &args.database_url, CancellationToken::new()).await?;
    let client = crate::pientegra::HttpClient::new(
        &args.api_base,
        SecretString::from(args.api_key),
        crate::pientegra::RetryPolicy::default(),
    )
    .context("PIENTEGRA_API_BASE / PIENTEGRA_API_KEY")?
    .with_budget(std::sync::Arc::new(budget))
    .in_background();
    let hub = crate::sse::Hub::default();
    let reconciler = crate::reconcile::Reconciler { storage: storage.as_ref(), pientegra: &client, hub: &hub };
    let report = reconciler.run(from, to, args.apply).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    // The sandbox's key is a test key; the address is what could expose it.
    let exposure = demo_mode_guard("", args.bind, "--bind", args.allow_public)?;
    if !args.static_dir.join("index.html").exists() {
        anyhow::bail!(
            "{} has no index.html: build the widget first (cargo xtask demo does)",
            args.static_dir.display()
        );
    }
    if let Some(dir) = args.widget_dir.as_ref().filter(|dir| !dir.join("pientegra.js").exists()) {
        anyhow::bail!("{} has no pientegra.js: build the partner bundle first (cargo xtask widget)", dir.display());
    }
    let site = format!("http://{}", args.bind);
    let sandbox = pientegra_sandbox::Sandbox::spawn(pientegra_sandbox::Config {
        bind: args.sandbox_bind,
        webhook_url: Some(format!("{site}/webhooks/pientegra")),
        auto_approve_ms: args.auto_approve_ms,
        ..pientegra_sandbox::Config::default()
    })
    .await
    .with_context(|| format!("starting the sandbox on {}", args.sandbox_bind))?;
    if let Some(parent) = args.database.parent() {
        std::fs::create_dir_all(parent).context("creating the demo database folder")?;
    }
    let api_base: url::Url = sandbox.api_base().parse().context("sandbox URL")?;
    let settings = Settings {
        deposit_url_hosts: vec![api_base.host_str().unwrap_or("127.0.0.1").to_owned()],
        api_base,
        api_key: SecretString::from(sandbox.api_key().to_owned()),
        webhook_secrets: vec![SecretString::from(sandbox.webhook_secret().to_owned())],
        database_url: format!("sqlite://{}", args.database.display()).into(),
        // A fresh token secret per run: demo tokens end with the demo.
        widget_token_secrets: vec![SecretString::from(format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        ))],
        widget_token_max_lifetime: crate::token::DEFAULT_MAX_LIFETIME.to_std().expect("positive"),
        allowed_origins: vec![site.clone()],
        bind: args.bind,
        balance_model: crate::ledger::BalanceModel::PreReserve,
        reconcile_interval: None,
        admin_token: None,
        demo: true,
        rate_limit_per_minute: 120,
        pientegra_budget: crate::pientegra::BudgetSettings::default(),
        pientegra_retry: crate::pientegra::RetryPolicy::default(),
        static_dir: Some(args.static_dir),
        widget_dir: args.widget_dir,
        pgm: None,
        connections: crate::settings::ConnectionLimits::default(),
    };
    let listener = crate::http::listen(settings.bind).with_context(|| format!("cannot listen on {}", settings.bind))?;
    println!();
    println!("  Pientegra kit demo is running.");
    println!("  Open:            {site}/");
    println!("  Sandbox console: {}/sandbox/console", sandbox.base_url());
    if settings.widget_dir.is_some() {
        println!("  Partner bundle:  {site}/widget/v1/pientegra.js");
    }
    println!("  Stop with Ctrl-C.");
    println!();
    let shutdown = CancellationToken::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));
    if let Some(warning) = exposure {
        tracing::warn!("{warning}");
    }
    let served = crate::run(listener, settings, shutdown).await;
    sandbox.shutdown().await;
    served
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM.
pub async fn cancel_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let term = async {
        if let Ok(mut s) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            s.recv().await;
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        () = term => {},
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// Every argument of `command` and its subcommands, with the path of the command it belongs to.
    fn all_args(command: &clap::Command, path: &str, out: &mut Vec<(String, clap::Arg)>) {
        let path = format!("{path} {}", command.get_name()).trim().to_owned();
        out.extend(command.get_arguments().map(|arg| (path.clone(), arg.clone())));
        for sub in command.get_subcommands() {
            all_args(sub, &path, out);
        }
    }

    #[test]
    fn no_argument_shows_its_environment_value_in_help() {
        let mut args = Vec::new();
        all_args(&Cli::command(), "", &mut args);
        let with_env: Vec<_> = args.iter().filter(|(_, arg)| arg.get_env().is_some()).collect();
        assert!(with_env.len() >= 20, "the walk found the arguments: {}", with_env.len());
        for (command, arg) in with_env {
            assert!(arg.is_hide_env_values_set(), "{command} --{} shows its value", arg.get_id());
        }
    }

    #[test]
    fn the_demo_refuses_an_address_beyond_loopback_unless_told() {
        let parse = |extra: &[&str]| Cli::try_parse_from([&["pientegra-server", "demo"], extra].concat()).unwrap();
        let Command::Demo(public) = parse(&["--bind", "0.0.0.0:8080"]).command else { unreachable!() };
        let error = demo_mode_guard("", public.bind, "--bind", public.allow_public).unwrap_err().to_string();
        assert!(error.contains("--bind 0.0.0.0:8080") && error.contains(DEMO_PUBLIC_OVERRIDE), "{error}");
        let Command::Demo(told) = parse(&["--bind", "0.0.0.0:8080", "--i-understand-demo-mode-is-public"]).command
        else {
            unreachable!()
        };
        assert!(told.allow_public);
        assert!(demo_mode_guard("", told.bind, "--bind", told.allow_public).unwrap().is_some());
    }
}
