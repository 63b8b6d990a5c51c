//! The `pientegra-server` command line.

use anyhow::Context;
use chrono::Utc;
use clap::{Parser, Subcommand};
use pientegra_shared::ids::{ExternalUserId, UserLabel};
use secrecy::SecretString;
use tokio_util::sync::CancellationToken;

use crate::settings::{ServeArgs, Settings, parse_duration};
use crate::token::TokenKey;

/// The Pientegra kit's companion server.
#[derive(Parser, Debug)]
#[command(name = "pientegra-server", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the widget API, the webhook receiver and the SSE streams.
    Serve(ServeArgs),
    /// Widget tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Print a widget token for one user.
    Mint {
        /// The user's externalUserId
        #[arg(long)]
        user: String,
        /// Display label
        #[arg(long)]
        label: Option<String>,
        /// Lifetime, e.g. 1h, 15m
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// The secret that signs tokens
        #[arg(long, env = "WIDGET_TOKEN_SECRET", hide_env_values = true)]
        secret: String,
    },
}

/// Runs the command line.
pub async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Serve(args) => {
            let settings = Settings::from_args(args)?;
            let listener = tokio::net::TcpListener::bind(settings.bind)
                .await
                .with_context(|| format!("BIND: cannot listen on {}", settings.bind))?;
            let shutdown = CancellationToken::new();
            tokio::spawn(cancel_on_signal(shutdown.clone()));
            crate::run(listener, settings, shutdown).await
        }
        Command::Token { command: TokenCommand::Mint { user, label, ttl, secret } } => {
            let user = ExternalUserId::parse(&user).context("--user")?;
            let label = label.as_deref().map(UserLabel::parse).transpose().context("--label")?;
            let ttl = chrono::Duration::from_std(parse_duration(&ttl).context("--ttl")?)?;
            if secret.len() < 32 {
                anyhow::bail!("WIDGET_TOKEN_SECRET must be at least 32 bytes long");
            }
            let key = TokenKey::new(SecretString::from(secret));
            println!("{}", key.mint(&user, label.as_ref(), Utc::now() + ttl));
            Ok(())
        }
    }
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
