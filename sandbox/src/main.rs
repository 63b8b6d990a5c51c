//! `pientegra-sandbox`: parse the command line, bind, print how to use it, serve until Ctrl-C or SIGTERM.

use clap::Parser;
use pientegra_sandbox::cli::Cli;
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    let config = Cli::parse().into_config();
    config.validate()?;
    let listener = tokio::net::TcpListener::bind(config.bind).await?;
    let addr = listener.local_addr()?;
    let base = config.base_url(addr);
    // A local sandbox: printing its own test credentials is the point.
    println!("Pientegra sandbox");
    println!("  API base        {base}/api/v1");
    println!("  API key         {}", config.api_key);
    println!("  webhook secret  {}", config.webhook_secret);
    println!(
        "  webhook URL     {}",
        config.webhook_url.as_deref().unwrap_or("(none yet: PUT /api/v1/external/site/webhook-config)")
    );
    println!("  console         {base}/sandbox/console");

    let shutdown = CancellationToken::new();
    tokio::spawn(stop_on_signal(shutdown.clone()));
    pientegra_sandbox::run(listener, config, shutdown).await
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM.
async fn stop_on_signal(shutdown: CancellationToken) {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = terminate => {}
    }
    tracing::info!("shutting down");
    shutdown.cancel();
}
