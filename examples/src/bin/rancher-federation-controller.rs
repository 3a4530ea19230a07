//! `rancher-federation-controller`: federates Services across the member
//! clusters of each `Federation` and publishes their DNS names through
//! RFC 2136 dynamic updates.

use std::time::Duration;

use clap::Parser;
use prometheus_client::registry::Registry;
use rancher_federation::{args::ControllerArgs, controller::Controller, metrics::Metrics};
use rancher_runtime::admin::{AdminArgs, AdminState};
use rancher_runtime::{
    client::ClientArgs, lease::LeaderArgs, log::LogArgs, ready::Readiness, shutdown::Shutdown,
};

/// The admin server's default port (`--admin`): the port `deploy/federation/` exposes; the
/// port table in `deploy/README.md` lists every binary's.
const ADMIN_PORT: u16 = 9100;

/// Services federated across clusters, with public DNS names.
#[derive(Parser)]
#[command(name = "rancher-federation-controller", version)]
struct Args {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    federation: ControllerArgs,
    #[command(flatten)]
    leader: LeaderArgs,
    #[command(flatten)]
    admin: AdminArgs<ADMIN_PORT>,
    #[command(flatten)]
    log: LogArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rancher_runtime::install_crypto_provider();
    let args = Args::parse();
    args.log.init("info");
    let client = args.client.client().await?;
    let provider = args.federation.provider()?;
    let shutdown = Shutdown::on_signals();
    let readiness = Readiness::new();
    let leader = args
        .leader
        .with_default_name("rancher-federation-controller");
    let (leadership, elector) = leader.start(client.clone(), shutdown.token());
    if let Some(elector) = elector {
        shutdown.spawn(elector);
    }
    let mut registry = Registry::with_prefix("rancher_federation");
    let metrics = Metrics::register(&mut registry);
    let state = AdminState::new(readiness.clone(), registry).with_leadership(leadership.clone());
    let admin = args.admin.bind(state).await?;
    shutdown.spawn(admin.serve(shutdown.token()));
    let controller = Controller::new(client, args.federation.config()?, provider)
        .with_leadership(leadership)
        .with_readiness(readiness)
        .with_metrics(metrics);
    shutdown.spawn(controller.run(shutdown.token()));
    shutdown.triggered().await;
    shutdown.drain(Duration::from_secs(10)).await?;
    Ok(())
}
