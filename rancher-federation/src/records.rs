//! The federation's naming scheme and the records it wants, as a pure function
//! of the federation, its members and every federated service's shards.
//!
//! For federation `myfed` with suffix `example.com`, service `nginx` in
//! namespace `default`:
//!
//! | level | name | content |
//! | --- | --- | --- |
//! | global | `nginx.default.myfed.svc.example.com` | A/AAAA of every healthy shard; no record when none |
//! | region | `nginx.default.myfed.svc.<region>.example.com` | A/AAAA of the region's healthy shards, else CNAME to the global name |
//! | zone | `nginx.default.myfed.svc.<zone>.<region>.example.com` | A/AAAA of the zone's healthy shards, else CNAME to the region name |
//!
//! A shard is healthy when its member is healthy and the shard
//! [serves](Shard::serves) (a load balancer address and a ready endpoint).
//! Load balancer hostnames are published as the addresses they resolve to (the
//! caller resolves them into [`Resolved`]); a level whose only targets are
//! unresolved hostnames becomes a CNAME to the first of them in name order. A
//! member spanning several zones counts in each of them (Federation v1 used
//! only the first). Every record carries the federation's TTL (180 s unless
//! configured).
//!
//! Region and zone names exist for every region and zone of every member,
//! whether or not the member is healthy: that is what lets a zone whose
//! clusters all failed answer with a CNAME up the hierarchy.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use crate::model::{
    self, DnsName, Federation, Ingress, Member, Record, RecordData, RecordSet, ServiceKey, Shard,
};

/// Hostnames (lower-case, no trailing dot) and the addresses they resolved to.
pub type Resolved = BTreeMap<String, Vec<IpAddr>>;

/// One federated service and its shards in the member clusters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServiceShards {
    /// The federated service.
    pub service: ServiceKey,
    /// Its shards, at most one per member.
    pub shards: Vec<Shard>,
}

/// Something the computation skipped; the rest of the records are still
/// computed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Problem {
    /// The service's name or namespace does not make a valid DNS name.
    #[error("service {service} has no valid federated DNS name")]
    InvalidServiceName {
        /// The service.
        service: ServiceKey,
        /// Why.
        #[source]
        source: model::Error,
    },
    /// A member's region or zone is not a valid DNS label, so it has no
    /// region or zone names.
    #[error("cluster {cluster}: topology value {value:?} is not a DNS label")]
    InvalidTopology {
        /// The member.
        cluster: String,
        /// The region or zone.
        value: String,
    },
    /// A member reports zones but no region; its zones get no names.
    #[error("cluster {cluster} has zones but no region")]
    MissingRegion {
        /// The member.
        cluster: String,
    },
    /// A shard's load balancer hostname is not a valid domain name.
    #[error(
        "service {service} in cluster {cluster}: load balancer hostname {hostname:?} is invalid"
    )]
    InvalidHostname {
        /// The service.
        service: ServiceKey,
        /// The member.
        cluster: String,
        /// The hostname.
        hostname: String,
    },
}

/// The computed records and what was skipped.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Desired {
    /// Every record the federation wants, all within its
    /// [`Scope`](model::Scope).
    pub records: RecordSet,
    /// What was skipped, for conditions and events.
    pub problems: Vec<Problem>,
}

/// `<svc>.<ns>.<federation>.svc.<suffix>`.
pub fn global_name(federation: &Federation, service: &ServiceKey) -> model::Result<DnsName> {
    DnsName::new(&format!(
        "{}.{}.{}.svc.{}",
        service.name, service.namespace, federation.name, federation.suffix
    ))
}

/// `<svc>.<ns>.<federation>.svc.<region>.<suffix>`.
pub fn region_name(
    federation: &Federation,
    service: &ServiceKey,
    region: &str,
) -> model::Result<DnsName> {
    DnsName::new(&format!(
        "{}.{}.{}.svc.{region}.{}",
        service.name, service.namespace, federation.name, federation.suffix
    ))
}

/// `<svc>.<ns>.<federation>.svc.<zone>.<region>.<suffix>`.
pub fn zone_name(
    federation: &Federation,
    service: &ServiceKey,
    zone: &str,
    region: &str,
) -> model::Result<DnsName> {
    DnsName::new(&format!(
        "{}.{}.{}.svc.{zone}.{region}.{}",
        service.name, service.namespace, federation.name, federation.suffix
    ))
}

/// Where a member sits: its region and the zones in it, both valid labels.
struct Place<'a> {
    region: Option<&'a str>,
    zones: Vec<&'a str>,
}

/// Addresses and unresolved hostnames collected for one name.
#[derive(Default)]
struct Targets {
    addresses: BTreeSet<IpAddr>,
    hostnames: BTreeSet<DnsName>,
}

impl Targets {
    fn extend(&mut self, other: &Self) {
        self.addresses.extend(other.addresses.iter().copied());
        self.hostnames.extend(other.hostnames.iter().cloned());
    }
}

/// Computes every record the federation wants.
///
/// `members` are all members of the federation, healthy or not; `services`
/// are the federated services that want records (the controller passes only
/// `type: LoadBalancer` ones); `resolved` holds the addresses of load
/// balancer hostnames. A service missing from `services` gets no record, so
/// a deleted service's names, CNAMEs included, disappear.
pub fn desired(
    federation: &Federation,
    members: &[Member],
    services: &[ServiceShards],
    resolved: &Resolved,
) -> Desired {
    let mut out = Desired::default();

    // Where each member sits, and the federation's regions and zones.
    let mut places: BTreeMap<&str, Place<'_>> = BTreeMap::new();
    let mut topology: BTreeMap<&str, BTreeSet<&str>> = BTreeMap::new();
    for member in members {
        let valid = |value: &str, out: &mut Desired| {
            let ok = model::is_label(value) && !value.contains('_');
            if !ok {
                out.problems.push(Problem::InvalidTopology {
                    cluster: member.cluster.clone(),
                    value: value.to_owned(),
                });
            }
            ok
        };
        let region = member
            .region
            .as_deref()
            .filter(|region| valid(region, &mut out));
        let zones: Vec<&str> = match region {
            Some(_) => member
                .zones
                .iter()
                .map(String::as_str)
                .filter(|zone| valid(zone, &mut out))
                .collect(),
            None => {
                if member.region.is_none() && !member.zones.is_empty() {
                    out.problems.push(Problem::MissingRegion {
                        cluster: member.cluster.clone(),
                    });
                }
                Vec::new()
            }
        };
        if let Some(region) = region {
            topology
                .entry(region)
                .or_default()
                .extend(zones.iter().copied());
        }
        places.insert(&member.cluster, Place { region, zones });
    }
    let healthy: BTreeSet<&str> = members
        .iter()
        .filter(|member| member.healthy)
        .map(|member| member.cluster.as_str())
        .collect();

    for service in services {
        let key = &service.service;
        let global = match global_name(federation, key) {
            Ok(name) => name,
            Err(source) => {
                out.problems.push(Problem::InvalidServiceName {
                    service: key.clone(),
                    source,
                });
                continue;
            }
        };

        let mut global_targets = Targets::default();
        let mut region_targets: BTreeMap<&str, Targets> = BTreeMap::new();
        let mut zone_targets: BTreeMap<(&str, &str), Targets> = BTreeMap::new();
        for shard in &service.shards {
            if !healthy.contains(shard.cluster.as_str()) || !shard.serves() {
                continue;
            }
            let targets = shard_targets(key, shard, resolved, &mut out.problems);
            global_targets.extend(&targets);
            let Some(place) = places.get(shard.cluster.as_str()) else {
                continue;
            };
            if let Some(region) = place.region {
                region_targets.entry(region).or_default().extend(&targets);
                for zone in &place.zones {
                    zone_targets
                        .entry((region, zone))
                        .or_default()
                        .extend(&targets);
                }
            }
        }

        let ttl = federation.ttl;
        emit(&mut out.records, &global, &global_targets, None, ttl);
        for (region, zones) in &topology {
            let Ok(region_dns) = region_name(federation, key, region) else {
                // Too long with this region: the service name is already long.
                continue;
            };
            let empty = Targets::default();
            let targets = region_targets.get(region).unwrap_or(&empty);
            emit(&mut out.records, &region_dns, targets, Some(&global), ttl);
            for zone in zones {
                let Ok(zone_dns) = zone_name(federation, key, zone, region) else {
                    continue;
                };
                let targets = zone_targets.get(&(*region, *zone)).unwrap_or(&empty);
                emit(&mut out.records, &zone_dns, targets, Some(&region_dns), ttl);
            }
        }
    }
    out
}

fn shard_targets(
    service: &ServiceKey,
    shard: &Shard,
    resolved: &Resolved,
    problems: &mut Vec<Problem>,
) -> Targets {
    let mut targets = Targets::default();
    for ingress in &shard.ingress {
        match ingress {
            Ingress::Ip(ip) => {
                targets.addresses.insert(*ip);
            }
            Ingress::Hostname(hostname) => match DnsName::new(hostname) {
                Ok(name) => match resolved.get(name.as_str()) {
                    Some(addresses) if !addresses.is_empty() => {
                        targets.addresses.extend(addresses.iter().copied());
                    }
                    _ => {
                        targets.hostnames.insert(name);
                    }
                },
                Err(_) => problems.push(Problem::InvalidHostname {
                    service: service.clone(),
                    cluster: shard.cluster.clone(),
                    hostname: hostname.clone(),
                }),
            },
        }
    }
    targets
}

fn emit(
    records: &mut RecordSet,
    name: &DnsName,
    targets: &Targets,
    fallback: Option<&DnsName>,
    ttl: u32,
) {
    if !targets.addresses.is_empty() {
        records.extend(
            targets
                .addresses
                .iter()
                .map(|ip| Record::new(name.clone(), ttl, RecordData::address(*ip))),
        );
    } else if let Some(hostname) = targets.hostnames.first() {
        records.insert(Record::new(
            name.clone(),
            ttl,
            RecordData::Cname(hostname.clone()),
        ));
    } else if let Some(up) = fallback {
        records.insert(Record::new(
            name.clone(),
            ttl,
            RecordData::Cname(up.clone()),
        ));
    }
}

#[cfg(test)]
mod tests;
