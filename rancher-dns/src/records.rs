//! The record index: turns Services, EndpointSlices and Pods into the records
//! the Kubernetes DNS specification requires, incrementally.
//!
//! Each object *owns* the names it contributes (a Service owns its service
//! name, SRV names, endpoint names, PTRs and the empty non-terminals above
//! them). An update recomputes only the changed owner's names and returns the
//! per-name [`Change`]s, which backends apply.

use std::collections::{BTreeMap, HashMap, HashSet, hash_map::Entry};
use std::net::IpAddr;
use std::sync::Arc;

use crate::model::{
    Change, EndpointSlice, NameRecords, Options, Pod, PodRecords, RData, SCHEMA_VERSION, Service,
    ServiceKey, ServiceKind, Soa, ZoneRecords,
};
use crate::name;

/// Who contributes a name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Owner {
    Static,
    Service(ServiceKey),
    Pod(ServiceKey),
}

/// Records an owner builds, by name (transient).
type Owned = BTreeMap<String, Vec<RData>>;

/// Records an owner contributes, sorted by name (stored: the only copy of
/// the records in the index). Shared with the [`ZoneView`]s taken while it
/// is current; an update replaces it rather than changing it.
type Stored = Vec<(Arc<str>, Vec<RData>)>;

type OwnerId = u32;

/// The owners of a name; almost always exactly one.
#[derive(Debug, Clone)]
enum Owners {
    One(OwnerId),
    // Boxed: the names table holds one `Owners` per name, and a bare `Vec`
    // would double its size for the few names with several owners.
    #[allow(clippy::box_collection)]
    Many(Box<Vec<OwnerId>>),
}

impl Owners {
    fn as_slice(&self) -> &[OwnerId] {
        match self {
            Self::One(o) => std::slice::from_ref(o),
            Self::Many(v) => v,
        }
    }

    fn push(&mut self, id: OwnerId) {
        match self {
            Self::One(o) => *self = Self::Many(Box::new(vec![*o, id])),
            Self::Many(v) => v.push(id),
        }
    }

    fn remove(&mut self, id: OwnerId) {
        if let Self::Many(v) = self {
            v.retain(|o| *o != id);
            if let [only] = v.as_slice() {
                *self = Self::One(*only);
            }
        }
    }
}

fn lookup<'a>(stored: &'a Stored, name: &str) -> Option<&'a Vec<RData>> {
    stored
        .binary_search_by(|(n, _)| (**n).cmp(name))
        .ok()
        .map(|i| &stored[i].1)
}

/// Incremental index from objects to records. Not thread-safe by itself:
/// the controller owns it and hands the resulting changes to backends.
#[derive(Debug)]
pub struct RecordIndex {
    options: Options,
    zone_suffix: String,
    services: HashMap<ServiceKey, Service>,
    slices: HashMap<ServiceKey, BTreeMap<String, EndpointSlice>>,
    slice_service: HashMap<(String, String), ServiceKey>,
    pods: HashMap<ServiceKey, Pod>,
    owner_ids: HashMap<Owner, OwnerId>,
    next_owner: OwnerId,
    owned: HashMap<OwnerId, Arc<Stored>>,
    /// Who contributes each name; a name exists while it has a contributor.
    names: HashMap<Arc<str>, Owners>,
    skipped: u64,
}

impl RecordIndex {
    /// An index holding only the static records: SOA and NS at the apex,
    /// `dns-version.<zone>` TXT and `ns.dns.<zone>`.
    pub fn new(options: Options) -> Self {
        let zone_suffix = format!(".{}", options.zone);
        let mut index = Self {
            options,
            zone_suffix,
            services: HashMap::new(),
            slices: HashMap::new(),
            slice_service: HashMap::new(),
            pods: HashMap::new(),
            owner_ids: HashMap::new(),
            next_owner: 0,
            owned: HashMap::new(),
            names: HashMap::new(),
            skipped: 0,
        };
        let statics = index.static_records();
        index.set_owner(Owner::Static, statics);
        index
    }

    /// The options the index was built with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// How many objects or parts of objects were skipped as invalid so far.
    pub fn skipped_total(&self) -> u64 {
        self.skipped
    }

    /// Number of owner names in the zone (including empty non-terminals).
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// Whether the zone is empty (never: the apex always exists).
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }

    /// The records of a name, if it exists (lower-case, no trailing dot).
    pub fn get(&self, name: &str) -> Option<Vec<RData>> {
        let owners = self.names.get(name)?;
        Some(self.merge(name, owners.as_slice()))
    }

    /// The records all `owners` contribute to `name`, sorted.
    fn merge(&self, name: &str, owners: &[OwnerId]) -> Vec<RData> {
        let mut parts = owners
            .iter()
            .filter_map(|o| lookup(self.owned.get(o)?, name));
        let first = parts.next().cloned().unwrap_or_default();
        let Some(second) = parts.next() else {
            return first;
        };
        let mut merged: Vec<RData> = first.into_iter().chain(second.iter().cloned()).collect();
        for p in parts {
            merged.extend(p.iter().cloned());
        }
        merged.sort();
        merged.dedup();
        merged
    }

    /// The full state as it is now, without copying the records: the view
    /// shares them with the index, and later changes to the index do not
    /// show through it. This is what [`DnsBackend::sync`] is given.
    ///
    /// [`DnsBackend::sync`]: crate::backend::DnsBackend::sync
    pub fn view(&self) -> ZoneView {
        let mut parts: Vec<(OwnerId, Arc<Stored>)> = self
            .owned
            .iter()
            .map(|(id, stored)| (*id, stored.clone()))
            .collect();
        parts.sort_unstable_by_key(|(id, _)| *id);
        let mut shared: Stored = self
            .names
            .iter()
            .filter(|(_, owners)| owners.as_slice().len() > 1)
            .map(|(n, owners)| (n.clone(), self.merge(n, owners.as_slice())))
            .collect();
        shared.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        ZoneView {
            parts: parts.into_iter().map(|(_, stored)| stored).collect(),
            shared,
            len: self.names.len(),
        }
    }

    /// A copy of the full state, sorted by name (for tests and tools; a
    /// backend is given the cheaper [`RecordIndex::view`]).
    pub fn full(&self) -> Vec<NameRecords> {
        self.view().to_vec()
    }

    /// Adds or replaces a Service.
    pub fn apply_service(&mut self, service: Service) -> Vec<Change> {
        let key = service.key.clone();
        self.services.insert(key.clone(), service);
        self.rebuild_service(&key)
    }

    /// Removes a Service.
    pub fn delete_service(&mut self, key: &ServiceKey) -> Vec<Change> {
        self.services.remove(key);
        self.rebuild_service(key)
    }

    /// Adds or replaces an EndpointSlice.
    pub fn apply_slice(&mut self, slice: EndpointSlice) -> Vec<Change> {
        let id = (slice.namespace.clone(), slice.name.clone());
        let key = ServiceKey::new(slice.namespace.clone(), slice.service.clone());
        let mut changes = Vec::new();
        if let Some(previous) = self.slice_service.insert(id.clone(), key.clone())
            && previous != key
        {
            if let Some(m) = self.slices.get_mut(&previous) {
                m.remove(&id.1);
            }
            changes.extend(self.rebuild_service(&previous));
        }
        self.slices
            .entry(key.clone())
            .or_default()
            .insert(id.1, slice);
        changes.extend(self.rebuild_service(&key));
        changes
    }

    /// Removes an EndpointSlice.
    pub fn delete_slice(&mut self, namespace: &str, name: &str) -> Vec<Change> {
        let Some(key) = self
            .slice_service
            .remove(&(namespace.to_owned(), name.to_owned()))
        else {
            return Vec::new();
        };
        if let Entry::Occupied(mut e) = self.slices.entry(key.clone()) {
            e.get_mut().remove(name);
            if e.get().is_empty() {
                e.remove();
            }
        }
        self.rebuild_service(&key)
    }

    /// Adds or replaces a Pod (only used with [`PodRecords::Verified`]).
    pub fn apply_pod(&mut self, pod: Pod) -> Vec<Change> {
        let key = ServiceKey::new(pod.namespace.clone(), pod.name.clone());
        let records = self.pod_records(&pod);
        self.pods.insert(key.clone(), pod);
        self.set_owner(Owner::Pod(key), records)
    }

    /// Removes a Pod.
    pub fn delete_pod(&mut self, namespace: &str, name: &str) -> Vec<Change> {
        let key = ServiceKey::new(namespace, name);
        self.pods.remove(&key);
        self.set_owner(Owner::Pod(key), Owned::new())
    }

    /// Replaces every Service (a re-list): Services not in `services` go.
    pub fn reset_services(&mut self, services: Vec<Service>) -> Vec<Change> {
        let keep: HashSet<ServiceKey> = services.iter().map(|s| s.key.clone()).collect();
        let gone: Vec<ServiceKey> = self
            .services
            .keys()
            .filter(|k| !keep.contains(*k))
            .cloned()
            .collect();
        let mut changes = Vec::new();
        for key in gone {
            changes.extend(self.delete_service(&key));
        }
        for s in services {
            if self.services.get(&s.key) != Some(&s) {
                changes.extend(self.apply_service(s));
            }
        }
        changes
    }

    /// Replaces every EndpointSlice.
    pub fn reset_slices(&mut self, slices: Vec<EndpointSlice>) -> Vec<Change> {
        let keep: HashSet<(String, String)> = slices
            .iter()
            .map(|s| (s.namespace.clone(), s.name.clone()))
            .collect();
        let gone: Vec<(String, String)> = self
            .slice_service
            .keys()
            .filter(|k| !keep.contains(*k))
            .cloned()
            .collect();
        let mut changes = Vec::new();
        for (ns, name) in gone {
            changes.extend(self.delete_slice(&ns, &name));
        }
        for s in slices {
            let unchanged = self
                .slice_service
                .get(&(s.namespace.clone(), s.name.clone()))
                .and_then(|k| self.slices.get(k))
                .and_then(|m| m.get(&s.name))
                == Some(&s);
            if !unchanged {
                changes.extend(self.apply_slice(s));
            }
        }
        changes
    }

    /// Replaces every Pod.
    pub fn reset_pods(&mut self, pods: Vec<Pod>) -> Vec<Change> {
        let keep: HashSet<ServiceKey> = pods
            .iter()
            .map(|p| ServiceKey::new(p.namespace.clone(), p.name.clone()))
            .collect();
        let gone: Vec<ServiceKey> = self
            .pods
            .keys()
            .filter(|k| !keep.contains(*k))
            .cloned()
            .collect();
        let mut changes = Vec::new();
        for key in gone {
            changes.extend(self.delete_pod(&key.namespace, &key.name));
        }
        for p in pods {
            changes.extend(self.apply_pod(p));
        }
        changes
    }

    fn static_records(&self) -> Owned {
        let o = &self.options;
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
        owned
    }

    fn pod_records(&mut self, pod: &Pod) -> Owned {
        let mut owned = Owned::new();
        if self.options.pods != PodRecords::Verified
            || !self.options.serves_namespace(&pod.namespace)
        {
            return owned;
        }
        if !name::is_rfc1123_label(&pod.namespace) {
            self.skip(
                format!("pod/{}/{}", pod.namespace, pod.name),
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
        owned
    }

    fn skip(&mut self, object: String, field: &'static str, reason: impl Into<String>) {
        let reason = reason.into();
        tracing::warn!(%object, field, %reason, "skipping invalid data");
        self.skipped += 1;
    }

    /// Adds `records` at `name`, plus empty non-terminals up to the apex.
    fn insert_with_parents(&self, owned: &mut Owned, name: String, records: Vec<RData>) {
        let mut parent = name.as_str();
        while let Some((_, rest)) = parent.split_once('.') {
            if rest.len() <= self.options.zone.len() {
                break;
            }
            owned.entry(rest.to_owned()).or_default();
            parent = rest;
        }
        owned.entry(name).or_default().extend(records);
    }

    fn rebuild_service(&mut self, key: &ServiceKey) -> Vec<Change> {
        // Taken out while its records are built (no copy), then put back.
        let owned = match self.services.remove(key) {
            Some(svc) => {
                let owned = self.service_records(&svc);
                self.services.insert(key.clone(), svc);
                owned
            }
            None => Owned::new(),
        };
        self.set_owner(Owner::Service(key.clone()), owned)
    }

    fn service_records(&mut self, svc: &Service) -> Owned {
        let mut owned = Owned::new();
        let key = &svc.key;
        if !self.options.serves_namespace(&key.namespace) {
            return owned;
        }
        let object = format!("service/{key}");
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
                        self.skip(
                            format!("service/{key}"),
                            "spec.ports.name",
                            format!("{pname:?} is not a DNS label"),
                        );
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
                _ => self.skip(
                    object,
                    "spec.externalName",
                    format!("{target:?} is not a domain name"),
                ),
            },
            ServiceKind::Headless => self.headless_records(svc, &base, &mut owned),
        }
        owned
    }

    fn headless_records(&mut self, svc: &Service, base: &str, owned: &mut Owned) {
        // Taken out while the records are built (no copy), put back below.
        let Some(slices) = self.slices.remove(&svc.key) else {
            return;
        };
        let mut srv: BTreeMap<String, Vec<(u16, String)>> = BTreeMap::new();
        for slice in slices.values() {
            let object = format!("endpointslice/{}/{}", slice.namespace, slice.name);
            for ep in &slice.endpoints {
                if !(ep.ready || svc.publish_not_ready_addresses) {
                    continue;
                }
                if ep.addresses.is_empty() {
                    self.skip(
                        object.clone(),
                        "endpoints.addresses",
                        "endpoint has no addresses",
                    );
                    continue;
                }
                if let Some(h) = &ep.hostname
                    && !name::is_rfc1123_label(h)
                {
                    self.skip(
                        object.clone(),
                        "endpoints.hostname",
                        format!("{h:?} is not a DNS label"),
                    );
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
        self.slices.insert(svc.key.clone(), slices);
    }

    /// Replaces what `owner` contributes and returns the per-name changes.
    fn set_owner(&mut self, owner: Owner, new: Owned) -> Vec<Change> {
        let id = match self.owner_ids.get(&owner) {
            Some(id) => *id,
            None if new.is_empty() => return Vec::new(),
            None => {
                let id = self.next_owner;
                self.next_owner = self.next_owner.wrapping_add(1);
                self.owner_ids.insert(owner.clone(), id);
                id
            }
        };
        let old = self.owned.remove(&id).unwrap_or_default();
        let old: &Stored = &old;
        let new: Stored = new
            .into_iter()
            .map(|(n, mut r)| {
                r.sort();
                r.dedup();
                // Kept until the owner changes: no spare capacity.
                r.shrink_to_fit();
                // Share the name with the names table when it is there.
                let name = match self.names.get_key_value(n.as_str()) {
                    Some((k, _)) => k.clone(),
                    None => Arc::from(n),
                };
                (name, r)
            })
            .collect();
        let mut changes = Vec::new();
        let (mut i, mut j) = (0, 0);
        while i < old.len() || j < new.len() {
            let (name, before, after) = match (old.get(i), new.get(j)) {
                (Some(o), Some(n)) if o.0 == n.0 => {
                    i += 1;
                    j += 1;
                    (&o.0, Some(&o.1), Some(&n.1))
                }
                (Some(o), Some(n)) if o.0 < n.0 => {
                    i += 1;
                    (&o.0, Some(&o.1), None)
                }
                (Some(o), None) => {
                    i += 1;
                    (&o.0, Some(&o.1), None)
                }
                (_, Some(n)) => {
                    j += 1;
                    (&n.0, None, Some(&n.1))
                }
                (None, None) => break,
            };
            if before == after {
                continue;
            }
            if let Some(c) = self.contribute(&name.clone(), id, before, after) {
                changes.push(c);
            }
        }
        if new.is_empty() {
            self.owner_ids.remove(&owner);
        } else {
            self.owned.insert(id, Arc::new(new));
        }
        changes
    }

    /// Records that owner `id` now contributes `after` (was `before`) to
    /// `name`; `self.owned` holds neither version of `id` at this point.
    fn contribute(
        &mut self,
        name: &Arc<str>,
        id: OwnerId,
        before: Option<&Vec<RData>>,
        after: Option<&Vec<RData>>,
    ) -> Option<Change> {
        let has_others = self
            .names
            .get(name)
            .is_some_and(|v| v.as_slice().iter().any(|o| *o != id));
        let blank = |r: Option<&Vec<RData>>| r.is_none_or(|r| r.is_empty());
        let change = if !has_others {
            Some(match after {
                Some(records) => Change::Upsert(NameRecords {
                    name: name.to_string(),
                    records: records.clone(),
                }),
                None => Change::Remove(name.to_string()),
            })
        } else if blank(before) && blank(after) {
            // An empty non-terminal others keep alive: nothing visible changes.
            None
        } else {
            let others: Vec<OwnerId> = self
                .names
                .get(name)
                .map(Owners::as_slice)
                .unwrap_or_default()
                .iter()
                .copied()
                .filter(|o| *o != id)
                .collect();
            let base = self.merge(name, &others);
            let with = |r: Option<&Vec<RData>>| {
                let mut m = base.clone();
                m.extend(r.into_iter().flatten().cloned());
                m.sort();
                m.dedup();
                m
            };
            let new = with(after);
            (with(before) != new).then(|| {
                Change::Upsert(NameRecords {
                    name: name.to_string(),
                    records: new,
                })
            })
        };
        match (before, after) {
            (None, Some(_)) => match self.names.get_mut(name) {
                Some(owners) => owners.push(id),
                None => {
                    self.names.insert(name.clone(), Owners::One(id));
                }
            },
            (Some(_), None) => {
                if has_others {
                    if let Some(v) = self.names.get_mut(name) {
                        v.remove(id);
                    }
                } else {
                    self.names.remove(name);
                }
            }
            _ => {}
        }
        change
    }

    /// Whether `name` (normalised) is inside the cluster zone.
    pub fn in_zone(&self, name: &str) -> bool {
        name == self.options.zone || name.ends_with(&self.zone_suffix)
    }
}

/// The full zone as it was when [`RecordIndex::view`] took it: shares the
/// index's records (no copy), so taking one is cheap and holding one costs
/// only the records the index has replaced since.
#[derive(Debug, Clone)]
pub struct ZoneView {
    /// What each owner contributed, as the index stores it.
    parts: Vec<Arc<Stored>>,
    /// Names several owners contribute to, merged; sorted by name. They are
    /// few (the namespace and `svc` empty non-terminals, shared PTRs).
    shared: Stored,
    len: usize,
}

impl ZoneView {
    fn is_shared(&self, name: &str) -> bool {
        !self.shared.is_empty()
            && self
                .shared
                .binary_search_by(|(n, _)| (**n).cmp(name))
                .is_ok()
    }

    /// A copy of every name and its records, sorted by name.
    pub fn to_vec(&self) -> Vec<NameRecords> {
        let mut all: Vec<NameRecords> = self
            .names()
            .map(|(name, records)| NameRecords {
                name: name.to_owned(),
                records: records.to_vec(),
            })
            .collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}

impl ZoneRecords for ZoneView {
    fn len(&self) -> usize {
        self.len
    }

    fn names(&self) -> Box<dyn Iterator<Item = (&str, &[RData])> + '_> {
        let shared = self.shared.iter().map(|(n, r)| (&**n, r.as_slice()));
        let single = self
            .parts
            .iter()
            .flat_map(|stored| stored.iter())
            .filter(|(n, _)| !self.is_shared(n))
            .map(|(n, r)| (&**n, r.as_slice()));
        Box::new(shared.chain(single))
    }
}

fn valid_port_name(name: &str) -> bool {
    name::is_rfc1123_label(name)
}

fn addr_record(ip: IpAddr) -> RData {
    match ip {
        IpAddr::V4(v4) => RData::A(v4),
        IpAddr::V6(v6) => RData::Aaaa(v6),
    }
}

#[cfg(test)]
mod tests;
