//! The records one owner contributes, built from its model objects.
//!
//! The index stores no records: it keeps the (small) model objects and
//! builds an owner's records from them whenever they are needed, to diff an
//! update, to answer [`RecordIndex::get`](super::RecordIndex::get) or to
//! list the zone for a backend.

use std::collections::BTreeMap;
use std::net::IpAddr;

use crate::model::{
    EndpointSlice, Options, Pod, PodRecords, RData, SCHEMA_VERSION, Service, ServiceKind, Soa,
};
use crate::name;

/// Records an owner contributes, by name (lower-case, no trailing dot);
/// each name's records sorted and deduplicated. Built when needed, dropped
/// after use.
pub(super) type Owned = BTreeMap<String, Vec<RData>>;

/// The EndpointSlices of one Service, by slice name.
pub(super) type Slices = BTreeMap<String, EndpointSlice>;

/// Builds records for `options`. Invalid data is logged and counted only
/// when `report` is set: rebuilding an owner's earlier records (to diff an
/// update) or listing the zone does not count it again.
pub(super) struct Build<'a> {
    options: &'a Options,
    report: bool,
    /// Objects or parts skipped as invalid (with `report`).
    pub(super) skipped: u64,
}

impl<'a> Build<'a> {
    pub(super) fn new(options: &'a Options, report: bool) -> Self {
        Self {
            options,
            report,
            skipped: 0,
        }
    }

    fn skip(&mut self, object: impl FnOnce() -> String, field: &'static str, reason: &str) {
        if self.report {
            let object = object();
            tracing::warn!(%object, field, %reason, "skipping invalid data");
            self.skipped += 1;
        }
    }

    /// Sorts and deduplicates each name's records.
    fn finish(mut owned: Owned) -> Owned {
        for records in owned.values_mut() {
            records.sort();
            records.dedup();
        }
        owned
    }

    /// SOA and NS at the apex, `dns-version.<zone>` TXT, `ns.dns.<zone>`.
    pub(super) fn statics(&mut self) -> Owned {
        let o = self.options;
        let mut owned = Owned::new();
        let ns = o.nameserver();
        owned.insert(
            o.zone.clone(),
            vec![
                RData::Soa(Box::new(Soa::for_options(o))),
                RData::Ns(ns.clone()),
            ],
        );
        owned.insert(
            format!("dns-version.{}", o.zone),
            vec![RData::Txt(vec![SCHEMA_VERSION.to_owned()])],
        );
        if !o.nameserver_addresses.is_empty() {
            let recs = o
                .nameserver_addresses
                .iter()
                .map(|ip| addr_record(*ip))
                .collect();
            self.insert_with_parents(&mut owned, ns, recs);
        }
        Self::finish(owned)
    }

    /// `<dashed-ip>.<ns>.pod.<zone>` for a Pod with pod records verified.
    pub(super) fn pod(&mut self, pod: &Pod) -> Owned {
        let mut owned = Owned::new();
        if self.options.pods != PodRecords::Verified
            || !self.options.serves_namespace(&pod.namespace)
        {
            return owned;
        }
        if !name::is_rfc1123_label(&pod.namespace) {
            self.skip(
                || format!("pod/{}/{}", pod.namespace, pod.name),
                "metadata.namespace",
                "not a DNS label",
            );
            return owned;
        }
        for ip in &pod.ips {
            let n = format!(
                "{}.{}.pod.{}",
                name::dashed_ip(*ip),
                pod.namespace,
                self.options.zone
            );
            self.insert_with_parents(&mut owned, n, vec![addr_record(*ip)]);
        }
        Self::finish(owned)
    }

    /// Adds `records` at `name`, plus empty non-terminals up to the apex.
    fn insert_with_parents(&self, owned: &mut Owned, name: String, records: Vec<RData>) {
        let mut parent = name.as_str();
        while let Some((_, rest)) = parent.split_once('.') {
            if rest.len() <= self.options.zone.len() {
                break;
            }
            if !owned.contains_key(rest) {
                owned.insert(rest.to_owned(), Vec::new());
            }
            parent = rest;
        }
        owned.entry(name).or_default().extend(records);
    }

    /// Everything a Service contributes: its name, SRV names, endpoint
    /// names, PTRs and the empty non-terminals above them.
    pub(super) fn service(&mut self, svc: &Service, slices: Option<&Slices>) -> Owned {
        let mut owned = Owned::new();
        let key = &svc.key;
        if !self.options.serves_namespace(&key.namespace) {
            return owned;
        }
        let object = || format!("service/{key}");
        if !name::is_rfc1123_label(&key.name) || !name::is_rfc1123_label(&key.namespace) {
            self.skip(object, "metadata.name", "not a DNS label");
            return owned;
        }
        let base = format!("{}.{}.svc.{}", key.name, key.namespace, self.options.zone);
        match &svc.kind {
            ServiceKind::ClusterIp(ips) => {
                if ips.is_empty() {
                    return owned;
                }
                let recs = ips.iter().map(|ip| addr_record(*ip)).collect();
                self.insert_with_parents(&mut owned, base.clone(), recs);
                for ip in ips {
                    owned
                        .entry(name::reverse_name(*ip))
                        .or_default()
                        .push(RData::Ptr(base.clone()));
                }
                for port in &svc.ports {
                    let Some(pname) = &port.name else { continue };
                    if !valid_port_name(pname) {
                        let reason = format!("{pname:?} is not a DNS label");
                        self.skip(object, "spec.ports.name", &reason);
                        continue;
                    }
                    let srv = format!("_{pname}._{}.{base}", port.protocol.label());
                    let rec = RData::Srv {
                        priority: 0,
                        weight: 100,
                        port: port.port,
                        target: base.clone(),
                    };
                    self.insert_with_parents(&mut owned, srv, vec![rec]);
                }
            }
            ServiceKind::ExternalName(target) => match name::normalize(target) {
                Ok(t) if !t.is_empty() => {
                    self.insert_with_parents(&mut owned, base, vec![RData::Cname(t)]);
                }
                _ => {
                    let reason = format!("{target:?} is not a domain name");
                    self.skip(object, "spec.externalName", &reason);
                }
            },
            ServiceKind::Headless => {
                if let Some(slices) = slices {
                    self.headless(svc, &base, slices, &mut owned);
                }
            }
        }
        Self::finish(owned)
    }

    fn headless(&mut self, svc: &Service, base: &str, slices: &Slices, owned: &mut Owned) {
        let mut srv: BTreeMap<String, Vec<(u16, String)>> = BTreeMap::new();
        for slice in slices.values() {
            let object = || format!("endpointslice/{}/{}", slice.namespace, slice.name);
            for ep in &slice.endpoints {
                if !(ep.ready || svc.publish_not_ready_addresses) {
                    continue;
                }
                if ep.addresses.is_empty() {
                    self.skip(object, "endpoints.addresses", "endpoint has no addresses");
                    continue;
                }
                if let Some(h) = &ep.hostname
                    && !name::is_rfc1123_label(h)
                {
                    let reason = format!("{h:?} is not a DNS label");
                    self.skip(object, "endpoints.hostname", &reason);
                    continue;
                }
                let label_for = |ip: IpAddr| -> String {
                    if let Some(h) = &ep.hostname {
                        return h.to_ascii_lowercase();
                    }
                    if self.options.endpoint_pod_names
                        && let Some(p) =
                            ep.pod_name.as_deref().filter(|p| name::is_rfc1123_label(p))
                    {
                        return p.to_ascii_lowercase();
                    }
                    name::dashed_ip(ip)
                };
                for ip in &ep.addresses {
                    let host = format!("{}.{base}", label_for(*ip));
                    self.insert_with_parents(owned, base.to_owned(), vec![addr_record(*ip)]);
                    self.insert_with_parents(owned, host.clone(), vec![addr_record(*ip)]);
                    if ep.hostname.is_some() {
                        owned
                            .entry(name::reverse_name(*ip))
                            .or_default()
                            .push(RData::Ptr(host.clone()));
                    }
                    for port in &slice.ports {
                        let Some(pname) = &port.name else { continue };
                        if !valid_port_name(pname) {
                            continue;
                        }
                        let n = format!("_{pname}._{}.{base}", port.protocol.label());
                        srv.entry(n).or_default().push((port.port, host.clone()));
                    }
                }
            }
        }
        for (n, targets) in srv {
            let weight = u16::try_from((100 / targets.len()).max(1)).unwrap_or(1);
            let recs = targets
                .into_iter()
                .map(|(port, target)| RData::Srv {
                    priority: 0,
                    weight,
                    port,
                    target,
                })
                .collect();
            self.insert_with_parents(owned, n, recs);
        }
    }
}

fn valid_port_name(name: &str) -> bool {
    name::is_rfc1123_label(name)
}

pub(super) fn addr_record(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(v4),
        IpAddr::V6(v6) => RData::Aaaa(v6),
    }
}
