//! `rancher-sandbox`: the whole stack on this machine (what `./scripts/sandbox`
//! runs): an in-memory API server seeded with the demo manifests, fake nodes,
//! echo backends, DNS, and the Ingress and cloud controllers on HAProxy.

use clap::Parser;
use rancher_examples::sandbox::{self, SandboxArgs};
use rancher_runtime::log::LogArgs;

/// Runs the rancher-* stack on loopback addresses, with a guide of commands to try.
#[derive(Parser)]
#[command(name = "rancher-sandbox", version)]
struct Args {
    #[command(flatten)]
    sandbox: SandboxArgs,
    #[command(flatten)]
    log: LogArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rancher_runtime::install_crypto_provider();
    let args = Args::parse();
    args.log.init("warn");
    sandbox::run(args.sandbox).await
}
