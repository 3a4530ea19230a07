//! `rancher-cloud-controller-manager`: `type: LoadBalancer` Services on the
//! Rancher load balancer (HAProxy on hosts, or Rancher's own), and node
//! provider IDs, addresses and zones from Rancher hosts or node labels.

use std::time::Duration;

use clap::Parser;
use prometheus_client::registry::Registry;
use rancher_cloudprovider::{controller::Controller, rancher::args::RancherArgs};
use rancher_runtime::admin::{AdminArgs, AdminState};
use rancher_runtime::{client::ClientArgs, lease::LeaderArgs, log::LogArgs};
use rancher_runtime::{ready::Readiness, shutdown::Shutdown};

/// The admin server's default port (`--admin`): the port every binary used before each got
/// its own; the port table in `deploy/README.md` lists every binary's.
const ADMIN_PORT: u16 = 9990;

/// Cloud controller manager for Rancher load balancers.
#[derive(Parser)]
#[command(name = "rancher-cloud-controller-manager", version)]
struct Args {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    rancher: RancherArgs,
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
    let shutdown = Shutdown::on_signals();
    let readiness = Readiness::new();
    let built = args.rancher.build().await?;
    let (leadership, elector) = args
        .leader
        .with_default_name("rancher-cloud-controller-manager")
        .start(client.clone(), shutdown.token());
    if let Some(elector) = elector {
        shutdown.spawn(elector);
    }
    let mut registry = Registry::with_prefix("rancher_cloud_controller");
    if let Some(haproxy) = &built.haproxy {
        haproxy.register_metrics(registry.sub_registry_with_prefix("haproxy"));
    }
    let controller = Controller::new(client, built.cloud, built.config).with_metrics(&mut registry);
    let state = AdminState::new(readiness.clone(), registry).with_leadership(leadership.clone());
    let admin = args.admin.bind(state).await?;
    shutdown.spawn(admin.serve(shutdown.token()));
    controller.run(leadership, readiness, &shutdown).await;
    if let Some(haproxy) = built.haproxy {
        haproxy.shutdown().await;
    }
    shutdown.drain(Duration::from_secs(10)).await?;
    Ok(())
}
