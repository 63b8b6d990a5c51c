//! `pientegra-server`: see `pientegra_server::cli`.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    pientegra_server::telemetry::init();
    pientegra_server::cli::main().await
}
