//! Your own `DnsBackend`: the cluster zone as an `/etc/hosts` file.
//!
//! Run with (the sandbox running in another terminal):
//!
//! ```text
//! cargo run -p rancher-examples --example dns_backend -- --kubeconfig target/sandbox/kubeconfig
//! cat target/sandbox/hosts
//! ```
//!
//! The controller watches Services and EndpointSlices and hands the backend
//! the full zone once (`sync`), then per-name changes (`apply`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use clap::Parser;
use parking_lot::Mutex;
use rancher_dns::backend::{DnsBackend, Error, Result};
use rancher_dns::metrics::Metrics;
use rancher_dns::model::{Change, Options, RData, ZoneRecords};
use rancher_runtime::client::ClientArgs;
use rancher_runtime::shutdown::Shutdown;

/// Keeps the A records and rewrites the file on every change.
struct HostsFile {
    path: PathBuf,
    names: Mutex<BTreeMap<String, Vec<String>>>,
}

impl HostsFile {
    fn upsert(names: &mut BTreeMap<String, Vec<String>>, name: &str, records: &[RData]) {
        let ips: Vec<String> = records
            .iter()
            .filter_map(|r| match r {
                RData::A(ip) => Some(ip.to_string()),
                _ => None,
            })
            .collect();
        if ips.is_empty() {
            names.remove(name);
        } else {
            names.insert(name.to_owned(), ips);
        }
    }

    fn write(&self, names: &BTreeMap<String, Vec<String>>) -> Result<()> {
        let mut text = String::new();
        for (name, ips) in names {
            for ip in ips {
                text.push_str(&format!("{ip}\t{}\n", name.trim_end_matches('.')));
            }
        }
        std::fs::write(&self.path, text).map_err(|source| Error::Write {
            path: self.path.clone(),
            source,
        })?;
        tracing::info!(path = %self.path.display(), names = names.len(), "hosts file written");
        Ok(())
    }
}

#[async_trait]
impl DnsBackend for HostsFile {
    async fn sync(&self, zone: &dyn ZoneRecords) -> Result<()> {
        let mut names = self.names.lock();
        names.clear();
        zone.for_each_name(&mut |name, records| Self::upsert(&mut names, name, records));
        self.write(&names)
    }

    async fn apply(&self, changes: &[Change]) -> Result<()> {
        let mut names = self.names.lock();
        for change in changes {
            match change {
                Change::Upsert(r) => Self::upsert(&mut names, &r.name, &r.records),
                Change::Remove(name) => {
                    names.remove(name);
                }
                _ => {}
            }
        }
        self.write(&names)
    }
}

/// Writes the cluster zone's A records as a hosts file.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    client: ClientArgs,
    /// The file to write.
    #[arg(long, default_value = "target/sandbox/hosts")]
    out: PathBuf,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rancher_runtime::install_crypto_provider();
    rancher_runtime::log::LogArgs::default().init("info");
    let args = Args::parse();
    let client = args.client.client().await?;
    let backend = Arc::new(HostsFile {
        path: args.out,
        names: Mutex::new(BTreeMap::new()),
    });
    let shutdown = Shutdown::on_signals();
    // Runs until Ctrl-C.
    rancher_dns::controller::run(
        client,
        Options::default(),
        vec![backend],
        Metrics::new(),
        None,
        shutdown.token(),
    )
    .await;
    Ok(())
}
