//! [`RancherDnsProvider`]: the federation's zone served directly by
//! `rancher-dns`'s built-in authoritative server (feature `rancher-dns`).
//!
//! The provider keeps the zone's federated records and turns every
//! [`Changes`] into per-name changes for a [`DnsBackend`] (normally
//! [`ServerBackend`](rancher_dns::backend::ServerBackend), whose snapshots a
//! [`Server`](rancher_dns::server::Server) answers from), so only the names
//! that changed are republished. The zone's apex gets an SOA and an NS record.
//!
//! The built-in server answers every record of a zone with the zone's TTL
//! ([`Options::ttl`]); set it to the federation's TTL (180 s by default).
//! Records read back keep the TTL they were written with.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::Arc,
};

use async_trait::async_trait;
use rancher_dns::{
    backend::DnsBackend,
    model::{Change, NameRecords, Options, RData, Soa},
};

use super::{DnsProvider, Error, Result};
use crate::model::{Changes, DnsName, RecordData, RecordSet, Scope};

/// Publishes the federation's records through a `rancher-dns` backend.
pub struct RancherDnsProvider {
    backend: Arc<dyn DnsBackend>,
    zone: DnsName,
    records: tokio::sync::Mutex<RecordSet>,
}

impl std::fmt::Debug for RancherDnsProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RancherDnsProvider")
            .field("zone", &self.zone)
            .finish_non_exhaustive()
    }
}

impl RancherDnsProvider {
    /// Serves `options.zone` through `backend`: publishes the apex (SOA, NS)
    /// and marks the zone synced, so missing names are NXDOMAIN.
    pub async fn new(backend: Arc<dyn DnsBackend>, options: &Options) -> Result<Self> {
        let zone = DnsName::new(&options.zone)
            .map_err(|error| Error::Config(format!("zone {:?}: {error}", options.zone)))?;
        let apex = NameRecords {
            name: zone.to_string(),
            records: vec![
                RData::Ns(options.nameserver()),
                RData::Soa(Box::new(Soa::for_options(options))),
            ],
        };
        backend.sync(&[apex]).await.map_err(other)?;
        Ok(Self {
            backend,
            zone,
            records: tokio::sync::Mutex::new(RecordSet::new()),
        })
    }
}

fn other(error: rancher_dns::backend::Error) -> Error {
    Error::Other(Box::new(error))
}

#[async_trait]
impl DnsProvider for RancherDnsProvider {
    async fn records(&self, scope: &Scope) -> Result<RecordSet> {
        Ok(self
            .records
            .lock()
            .await
            .iter()
            .filter(|record| scope.owns(&record.name))
            .cloned()
            .collect())
    }

    async fn apply(&self, changes: &Changes) -> Result<()> {
        if let Some(record) = changes
            .removed
            .iter()
            .chain(&changes.added)
            .find(|record| !record.name.is_within(&self.zone) || record.name == self.zone)
        {
            return Err(Error::Config(format!(
                "record {} is outside zone {}",
                record.name, self.zone
            )));
        }
        let mut stored = self.records.lock().await;
        let mut next = stored.clone();
        // One TTL per name and type, as in any zone: an addition renews it.
        for added in &changes.added {
            let stale: Vec<_> = next
                .iter()
                .filter(|r| {
                    r.name == added.name && r.data.kind() == added.data.kind() && r.ttl != added.ttl
                })
                .cloned()
                .collect();
            for mut record in stale {
                next.remove(&record);
                record.ttl = added.ttl;
                next.insert(record);
            }
        }
        changes.apply_to(&mut next);

        let names: BTreeSet<&DnsName> = changes
            .removed
            .iter()
            .chain(&changes.added)
            .map(|record| &record.name)
            .collect();
        let mut by_name: BTreeMap<&DnsName, Vec<RData>> = BTreeMap::new();
        for record in next.iter().filter(|r| names.contains(&r.name)) {
            by_name
                .entry(&record.name)
                .or_default()
                .push(match &record.data {
                    RecordData::A(ip) => RData::A(*ip),
                    RecordData::Aaaa(ip) => RData::Aaaa(*ip),
                    RecordData::Cname(target) => RData::Cname(target.to_string()),
                });
        }
        let updates: Vec<Change> = names
            .iter()
            .map(|name| match by_name.remove(name) {
                Some(mut records) => {
                    records.sort();
                    records.dedup();
                    Change::Upsert(NameRecords {
                        name: name.to_string(),
                        records,
                    })
                }
                None => Change::Remove(name.to_string()),
            })
            .collect();
        self.backend.apply(&updates).await.map_err(other)?;
        *stored = next;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use rancher_dns::{
        backend::ServerBackend,
        metrics::Metrics,
        server::{Server, ServerConfig},
    };

    use super::*;
    use crate::model::{Federation, Record};

    fn options() -> Options {
        Options {
            zone: "example.org".into(),
            ttl: Duration::from_secs(180),
            ..Options::default()
        }
    }

    #[tokio::test]
    async fn passes_the_conformance_battery() {
        let backend = Arc::new(ServerBackend::new(&options(), Metrics::new()));
        let provider = RancherDnsProvider::new(backend, &options()).await.unwrap();
        super::super::conformance::run(&provider).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_built_in_server_answers_dig() {
        let backend = Arc::new(ServerBackend::new(&options(), Metrics::new()));
        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            udp_threads: 1,
            ..ServerConfig::default()
        };
        let server = Server::start(&config, backend.snapshots(), Metrics::new()).unwrap();
        let provider = RancherDnsProvider::new(backend, &options()).await.unwrap();
        let fed = Federation::new("myfed", "example.org").unwrap();
        let global = DnsName::new("nginx.default.myfed.svc.example.org").unwrap();
        let zone = DnsName::new("nginx.default.myfed.svc.z1.r1.example.org").unwrap();
        let desired: RecordSet = [
            Record::new(
                global.clone(),
                180,
                RecordData::A("192.0.2.1".parse().unwrap()),
            ),
            Record::new(
                global.clone(),
                180,
                RecordData::A("192.0.2.2".parse().unwrap()),
            ),
            Record::new(zone.clone(), 180, RecordData::Cname(global.clone())),
        ]
        .into();
        provider.ensure(&fed.scope(), &desired).await.unwrap();

        let port = server.local_addr().port().to_string();
        let dig = |name: &str, kind: &str| {
            let output = std::process::Command::new("dig")
                .args([
                    "@127.0.0.1",
                    "-p",
                    &port,
                    "+short",
                    "+time=2",
                    "+tries=2",
                    name,
                    kind,
                ])
                .output()
                .expect("run dig (Debian package dnsutils)");
            let mut lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
                .lines()
                .map(str::to_owned)
                .collect();
            lines.sort();
            lines
        };
        assert_eq!(dig(global.as_str(), "A"), ["192.0.2.1", "192.0.2.2"]);
        assert_eq!(dig(zone.as_str(), "CNAME"), [global.fqdn()]);

        provider
            .ensure(&fed.scope(), &RecordSet::new())
            .await
            .unwrap();
        assert!(dig(global.as_str(), "A").is_empty());
        assert!(dig(zone.as_str(), "CNAME").is_empty());
        server.shutdown().await;
    }
}
