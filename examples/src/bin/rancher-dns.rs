//! `rancher-dns`: cluster DNS for every host, answering from Services and
//! EndpointSlices and forwarding other names upstream.

use std::time::Duration;

use clap::Parser;
use prometheus_client::registry::Registry;
use rancher_dns::controller::{Dns, DnsArgs};
use rancher_runtime::admin::{AdminArgs, AdminState};
use rancher_runtime::{client::ClientArgs, log::LogArgs, ready::Readiness, shutdown::Shutdown};

/// The admin server's default port (`--admin`): CoreDNS's metrics port, which deployments
/// that swap kube-dns for rancher-dns already scrape; the port table in `deploy/README.md`
/// lists every binary's.
const ADMIN_PORT: u16 = 9153;

/// Kubernetes cluster DNS (DNS-Based Service Discovery 1.1.0).
#[derive(Parser)]
#[command(name = "rancher-dns", version)]
struct Args {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    dns: DnsArgs,
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
    let mut registry = Registry::with_prefix("rancher_dns");
    let dns = Dns::start(
        &args.dns,
        client,
        &mut registry,
        &readiness,
        shutdown.token(),
    )
    .await?;
    let admin = args
        .admin
        .bind(AdminState::new(readiness, registry))
        .await?;
    shutdown.spawn(admin.serve(shutdown.token()));
    shutdown.triggered().await;
    dns.stopped().await;
    shutdown.drain(Duration::from_secs(10)).await?;
    Ok(())
}
