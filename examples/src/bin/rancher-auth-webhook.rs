//! `rancher-auth-webhook`: kube-apiserver's token authentication and authorization webhooks
//! from Rancher environment roles, and kubeconfigs for Rancher users.

use std::io::Write as _;
use std::time::Duration;

use clap::{Parser, Subcommand};
use prometheus_client::registry::Registry;
use rancher_auth::cli::{ADMIN_PORT, KubeconfigArgs, LocalTokenArgs, WebhookArgs};
use rancher_runtime::admin::{AdminArgs, AdminState};
use rancher_runtime::{client::ClientArgs, log::LogArgs, ready::Readiness, shutdown::Shutdown};

/// TokenReview and SubjectAccessReview webhooks for the Rancher environment a cluster is.
/// Rancher: CATTLE_URL, CATTLE_ACCESS_KEY, CATTLE_SECRET_KEY.
#[derive(Parser)]
#[command(
    name = "rancher-auth-webhook",
    version,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    webhook: WebhookArgs,
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    admin: AdminArgs<ADMIN_PORT>,
    #[command(flatten)]
    log: LogArgs,
}

#[derive(Subcommand)]
enum Command {
    /// Print a kubeconfig for your Rancher key (CATTLE_URL, CATTLE_ACCESS_KEY, CATTLE_SECRET_KEY).
    Kubeconfig(KubeconfigArgs),
    /// Print a Secret holding a new local token's hash (the token goes to stderr).
    LocalToken(LocalTokenArgs),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rancher_runtime::install_crypto_provider();
    let args = Args::parse();
    args.log.init("info");
    match args.command {
        Some(Command::Kubeconfig(kubeconfig)) => {
            let text = kubeconfig.run().await?;
            std::io::stdout().write_all(text.as_bytes())?;
            return Ok(());
        }
        Some(Command::LocalToken(local)) => {
            let (secret, token) = local.run()?;
            std::io::stdout().write_all(secret.as_bytes())?;
            writeln!(std::io::stderr(), "token: {}", token.expose())?;
            return Ok(());
        }
        None => {}
    }
    let shutdown = Shutdown::on_signals();
    let readiness = Readiness::new();
    let mut registry = Registry::with_prefix("rancher_auth");
    args.webhook
        .start(&args.client, &mut registry, &readiness, &shutdown)
        .await?;
    let admin = args
        .admin
        .bind(AdminState::new(readiness, registry))
        .await?;
    shutdown.spawn(admin.serve(shutdown.token()));
    shutdown.triggered().await;
    shutdown.drain(Duration::from_secs(10)).await?;
    Ok(())
}
