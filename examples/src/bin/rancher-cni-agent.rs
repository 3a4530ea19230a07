//! `rancher-cni-agent`: the node agent of Rancher's managed network, run on every
//! node (a DaemonSet): the node's range, the conflist, the VXLAN overlay.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use clap::Parser;
use prometheus_client::registry::Registry;
use rancher_cni::{
    agent::{Agent, AgentArgs},
    dataplane::LinuxDataplane,
};
use rancher_runtime::{
    admin::{AdminServer, AdminState},
    client::ClientArgs,
    log::LogArgs,
    ready::Readiness,
    shutdown::Shutdown,
};

/// The rancher-cni node agent.
#[derive(Parser)]
#[command(name = "rancher-cni-agent", version)]
struct Args {
    #[command(flatten)]
    client: ClientArgs,
    #[command(flatten)]
    agent: AgentArgs,
    /// The address of the admin server (`/livez`, `/readyz`, `/metrics`).
    #[arg(long = "admin", value_name = "ADDR", default_value = "0.0.0.0:9991")]
    admin: SocketAddr,
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
    let mut registry = Registry::with_prefix("rancher_cni_agent");
    let dataplane = Arc::new(LinuxDataplane::new()?);
    let agent = Agent::start(
        &args.agent,
        client,
        dataplane,
        &mut registry,
        &readiness,
        shutdown.token(),
    )
    .await?;
    // The admin server starts once the agent registered its metrics; /readyz turns
    // 200 after the first full programming of the overlay.
    let admin = AdminServer::bind(args.admin, AdminState::new(readiness, registry)).await?;
    shutdown.spawn(admin.serve(shutdown.token()));
    shutdown.triggered().await;
    agent.stopped().await;
    shutdown.drain(Duration::from_secs(10)).await?;
    Ok(())
}
