//! `rancher-ingress-controller`: programs the Rancher load balancer from Ingresses
//! and writes the addresses of its hosts back to each Ingress's status.

use std::time::Duration;

use clap::Parser;
use prometheus_client::registry::Registry;
use rancher_ingress::run::{self, DriverArgs, IngressArgs};
use rancher_runtime::{
    admin::{AdminArgs, AdminState},
    client::ClientArgs,
    lease::LeaderArgs,
    log::LogArgs,
    ready::Readiness,
    shutdown::Shutdown,
};

/// The admin server's default port (`--admin`): the ingress-nginx controller's port, which
/// ingress dashboards and probes already use; the port table in `deploy/README.md` lists
/// every binary's.
const ADMIN_PORT: u16 = 10254;

/// Kubernetes Ingress controller for the Rancher load balancer.
#[derive(Parser)]
#[command(name = "rancher-ingress-controller", version)]
struct Args {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    ingress: IngressArgs,
    #[command(flatten)]
    driver: DriverArgs,
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
    let (shutdown, readiness) = (Shutdown::on_signals(), Readiness::new());
    let leader = args.leader.with_default_name("rancher-ingress-controller");
    let (leadership, elector) = leader.start(client.clone(), shutdown.token());
    if let Some(elector) = elector {
        shutdown.spawn(elector);
    }
    let mut registry = Registry::with_prefix("rancher_ingress");
    let backend = (args.driver)
        .start(
            client.clone(),
            args.ingress.allow_snippets,
            &readiness,
            &mut registry,
            &shutdown,
        )
        .await?;
    run::start(
        &args.ingress,
        client,
        backend,
        &mut registry,
        &readiness,
        leadership.clone(),
        &shutdown,
    );
    let state = AdminState::new(readiness, registry).with_leadership(leadership);
    let admin = args.admin.bind(state).await?;
    shutdown.spawn(admin.serve(shutdown.token()));
    shutdown.triggered().await;
    shutdown.drain(Duration::from_secs(15)).await?;
    Ok(())
}
