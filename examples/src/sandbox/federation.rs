//! A one-member federation's DNS names, served by `rancher-dns`'s built-in
//! server through `rancher-federation`'s `RancherDnsProvider`.
//!
//! The federation controller proper needs member clusters with credentials
//! Secrets and the federation CRDs; here the sandbox cluster is the only
//! member, and the names the controller would publish for each
//! `type: LoadBalancer` Service with an address are computed once with
//! [`records::desired`] and written through the provider.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rancher_dns::backend::ServerBackend;
use rancher_dns::metrics::Metrics;
use rancher_dns::model::Options;
use rancher_dns::server::{Server, ServerConfig};
use rancher_federation::model::{Federation, Ingress, Member, ServiceKey, Shard};
use rancher_federation::provider::{DnsProvider, RancherDnsProvider};
use rancher_federation::records::{self, Resolved, ServiceShards};

/// The federation's name.
pub(super) const NAME: &str = "demo";

/// The zone its names live in.
pub(super) const ZONE: &str = "example.org";

/// A running federation zone server; stops when dropped.
pub(super) struct FederationDns {
    _server: Server,
    /// How many records it serves.
    pub(super) records: usize,
}

/// Serves the federation zone on `listen` with the records of `services`
/// (`(namespace, name, addresses)`) on the one member `cluster`.
pub(super) async fn start(
    listen: SocketAddr,
    cluster: &str,
    region: &str,
    zones: Vec<String>,
    services: &[(String, String, Vec<IpAddr>)],
) -> anyhow::Result<FederationDns> {
    let options = Options {
        zone: ZONE.to_owned(),
        ttl: Duration::from_secs(180),
        ..Options::default()
    };
    let metrics = Metrics::new();
    let backend = Arc::new(ServerBackend::new(&options, metrics.clone()));
    let config = ServerConfig {
        listen,
        udp_threads: 1,
        ..ServerConfig::default()
    };
    let server = Server::start(&config, backend.snapshots(), metrics)?;
    let provider = RancherDnsProvider::new(backend, &options).await?;
    let federation = Federation::new(NAME, ZONE)?;
    let members = [Member {
        cluster: cluster.to_owned(),
        healthy: true,
        region: Some(region.to_owned()),
        zones,
    }];
    let shards: Vec<ServiceShards> = services
        .iter()
        .map(|(namespace, name, addresses)| ServiceShards {
            service: ServiceKey::new(namespace.clone(), name.clone()),
            shards: vec![Shard {
                cluster: cluster.to_owned(),
                ingress: addresses.iter().copied().map(Ingress::Ip).collect(),
                ready_endpoints: addresses.len(),
            }],
        })
        .collect();
    let desired = records::desired(&federation, &members, &shards, &Resolved::new());
    let records = desired.records.len();
    provider
        .ensure(&federation.scope(), &desired.records)
        .await?;
    Ok(FederationDns {
        _server: server,
        records,
    })
}
