//! The record index: turns Services, EndpointSlices and Pods into the records
//! the Kubernetes DNS specification requires, incrementally.
//!
//! Each object *owns* the names it contributes (a Service owns its service
//! name, SRV names, endpoint names, PTRs and the empty non-terminals above
//! them). An update recomputes only the changed owner's names and returns the
//! per-name [`Change`]s, which backends apply.
//!
//! The index keeps the model objects and no records: an owner's records are
//! built from its objects when they are needed (to diff an update, for
//! [`RecordIndex::get`], for a [`ZoneView`]). Names below a Service's own
//! name (`<svc>.<ns>.svc.<zone>` and everything under it) can only be that
//! Service's, so they are not tracked at all; only the names several owners
//! may share (empty non-terminals above the Services, PTR names, pod and
//! static names) are kept with their owners.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use crate::model::{
    Change, EndpointSlice, NameRecords, Options, Pod, RData, Service, ServiceKey, ZoneRecords,
};

mod build;

use build::{Build, Owned, Slices};

/// Who contributes a name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Owner {
    Static,
    Service(ServiceKey),
    Pod(ServiceKey),
}

type OwnerId = u32;

/// Set on an owner id in [`Owners`] when the owner contributes records to
/// the name, not only an empty non-terminal.
const HAS_RECORDS: u32 = 1 << 31;

/// The owners of a shared name (ids, with [`HAS_RECORDS`]); almost always
/// exactly one.
#[derive(Debug, Clone)]
enum Owners {
    One(u32),
    // Boxed: the table holds one `Owners` per name, and a bare `Vec` would
    // double its size for the few names with several owners.
    #[allow(clippy::box_collection)]
    Many(Box<Vec<u32>>),
}

impl Owners {
    fn as_slice(&self) -> &[u32] {
        match self {
            Self::One(o) => std::slice::from_ref(o),
            Self::Many(v) => v,
        }
    }

    /// Adds an owner (tagged) that is not one yet.
    fn push(&mut self, tagged: u32) {
        match self {
            Self::One(o) => *self = Self::Many(Box::new(vec![*o, tagged])),
            Self::Many(v) => v.push(tagged),
        }
    }

    /// Updates whether owner `id` has records (adds it if it is not one).
    fn set(&mut self, id: OwnerId, has_records: bool) {
        let tagged = if has_records { id | HAS_RECORDS } else { id };
        match self {
            Self::One(o) if *o & !HAS_RECORDS == id => *o = tagged,
            Self::One(o) => *self = Self::Many(Box::new(vec![*o, tagged])),
            Self::Many(v) => match v.iter_mut().find(|o| **o & !HAS_RECORDS == id) {
                Some(o) => *o = tagged,
                None => v.push(tagged),
            },
        }
    }

    fn remove(&mut self, id: OwnerId) {
        if let Self::Many(v) = self {
            v.retain(|o| *o & !HAS_RECORDS != id);
            if let [only] = v.as_slice() {
                *self = Self::One(*only);
            }
        }
    }
}

/// Incremental index from objects to records. Not thread-safe by itself:
/// the controller owns it and hands the resulting changes to backends.
#[derive(Debug)]
pub struct RecordIndex {
    options: Arc<Options>,
    zone_suffix: String,
    /// `.svc.<zone>`: names ending in it below `<ns>.svc.<zone>` are a
    /// Service's own.
    svc_suffix: String,
    services: HashMap<ServiceKey, Arc<Service>>,
    slices: HashMap<ServiceKey, Arc<Slices>>,
    slice_service: HashMap<(String, String), ServiceKey>,
    pods: HashMap<ServiceKey, Arc<Pod>>,
    owner_ids: HashMap<Owner, OwnerId>,
    owners: HashMap<OwnerId, Owner>,
    next_owner: OwnerId,
    /// Names outside every Service's own subtree, with their contributors;
    /// such a name exists while it has one.
    shared: HashMap<Box<str>, Owners>,
    /// Names in Services' own subtrees.
    private_names: usize,
    /// Whether updates return their changes (see
    /// [`RecordIndex::set_changes_wanted`]).
    changes_wanted: bool,
    skipped: u64,
}

impl RecordIndex {
    /// An index holding only the static records: SOA and NS at the apex,
    /// `dns-version.<zone>` TXT and `ns.dns.<zone>`.
    pub fn new(options: Options) -> Self {
        let zone_suffix = format!(".{}", options.zone);
        let svc_suffix = format!(".svc.{}", options.zone);
        let mut index = Self {
            options: Arc::new(options),
            zone_suffix,
            svc_suffix,
            services: HashMap::new(),
            slices: HashMap::new(),
            slice_service: HashMap::new(),
            pods: HashMap::new(),
            owner_ids: HashMap::new(),
            owners: HashMap::new(),
            next_owner: 0,
            shared: HashMap::new(),
            private_names: 0,
            changes_wanted: true,
            skipped: 0,
        };
        let statics = index.build_reported(&Owner::Static);
        index.replace(Owner::Static, Owned::new(), statics);
        index
    }

    /// The options the index was built with.
    pub fn options(&self) -> &Options {
        &self.options
    }

    /// Whether updates return the per-name [`Change`]s they make (the
    /// default). A caller that will sync the full state to its backends
    /// anyway (the controller before its first sync) turns them off, so an
    /// initial list does not build a change for every name of the zone.
    pub fn set_changes_wanted(&mut self, wanted: bool) {
        self.changes_wanted = wanted;
    }

    /// How many objects or parts of objects were skipped as invalid so far.
    pub fn skipped_total(&self) -> u64 {
        self.skipped
    }

    /// Number of owner names in the zone (including empty non-terminals).
    pub fn len(&self) -> usize {
        self.private_names + self.shared.len()
    }

    /// Whether the zone is empty (never: the apex always exists).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The records of a name, if it exists (lower-case, no trailing dot).
    pub fn get(&self, name: &str) -> Option<Vec<RData>> {
        if let Some(owners) = self.shared.get(name) {
            return Some(self.merge(name, owners.as_slice()));
        }
        let (namespace, service) = self.private_key(name)?;
        self.build(&Owner::Service(ServiceKey::new(namespace, service)))
            .remove(name)
    }

    /// The Service whose own subtree `name` is in: `(namespace, name)` for
    /// `<svc>.<ns>.svc.<zone>` and the names below it.
    fn private_key<'n>(&self, name: &'n str) -> Option<(&'n str, &'n str)> {
        let rest = name.strip_suffix(self.svc_suffix.as_str())?;
        let (above, namespace) = rest.rsplit_once('.')?;
        let service = above.rsplit('.').next()?;
        Some((namespace, service))
    }

    fn is_private(&self, owner: &Owner, name: &str) -> bool {
        match owner {
            Owner::Service(key) => self
                .private_key(name)
                .is_some_and(|(ns, svc)| ns == key.namespace && svc == key.name),
            Owner::Static | Owner::Pod(_) => false,
        }
    }

    /// Builds what `owner` contributes now, reporting nothing.
    fn build(&self, owner: &Owner) -> Owned {
        let mut build = Build::new(&self.options, false);
        self.build_with(owner, &mut build)
    }

    /// Builds what `owner` contributes now, counting invalid data.
    fn build_reported(&mut self, owner: &Owner) -> Owned {
        let options = self.options.clone();
        let mut build = Build::new(&options, true);
        let owned = self.build_with(owner, &mut build);
        self.skipped += build.skipped;
        owned
    }

    fn build_with(&self, owner: &Owner, build: &mut Build<'_>) -> Owned {
        match owner {
            Owner::Static => build.statics(),
            Owner::Service(key) => match self.services.get(key) {
                Some(svc) => build.service(svc, self.slices.get(key).map(|s| &**s)),
                None => Owned::new(),
            },
            Owner::Pod(key) => match self.pods.get(key) {
                Some(pod) => build.pod(pod),
                None => Owned::new(),
            },
        }
    }

    /// The records the `owners` (tagged ids) contribute to `name`, sorted.
    fn merge(&self, name: &str, owners: &[u32]) -> Vec<RData> {
        let mut merged = Vec::new();
        for tagged in owners.iter().filter(|o| **o & HAS_RECORDS != 0) {
            let Some(owner) = self.owners.get(&(tagged & !HAS_RECORDS)) else {
                continue;
            };
            if let Some(records) = self.build(owner).remove(name) {
                merged.extend(records);
            }
        }
        merged.sort();
        merged.dedup();
        merged
    }

    /// The full state as it is now, without building any record: the view
    /// shares the index's model objects, builds the records as it is read,
    /// and later changes to the index do not show through it. This is what
    /// [`DnsBackend::sync`] is given.
    ///
    /// [`DnsBackend::sync`]: crate::backend::DnsBackend::sync
    pub fn view(&self) -> ZoneView {
        let mut multi: Vec<(Box<str>, Vec<RData>)> = self
            .shared
            .iter()
            .filter(|(_, owners)| owners.as_slice().len() > 1)
            .map(|(n, owners)| (n.clone(), self.merge(n, owners.as_slice())))
            .collect();
        multi.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        ZoneView {
            options: self.options.clone(),
            services: self
                .services
                .iter()
                .map(|(key, svc)| (svc.clone(), self.slices.get(key).cloned()))
                .collect(),
            pods: self.pods.values().cloned().collect(),
            multi,
            len: self.len(),
        }
    }

    /// A copy of the full state, sorted by name (for tests and tools; a
    /// backend is given the cheaper [`RecordIndex::view`]).
    pub fn full(&self) -> Vec<NameRecords> {
        self.view().to_vec()
    }

    /// Runs `change` on the model objects and returns what it did to
    /// `owner`'s names.
    fn update(&mut self, owner: Owner, change: impl FnOnce(&mut Self)) -> Vec<Change> {
        let old = self.build(&owner);
        change(self);
        let new = self.build_reported(&owner);
        self.replace(owner, old, new)
    }

    /// Adds or replaces a Service.
    pub fn apply_service(&mut self, service: Service) -> Vec<Change> {
        let key = service.key.clone();
        self.update(Owner::Service(key.clone()), |index| {
            index.services.insert(key, Arc::new(service));
        })
    }

    /// Removes a Service.
    pub fn delete_service(&mut self, key: &ServiceKey) -> Vec<Change> {
        self.update(Owner::Service(key.clone()), |index| {
            index.services.remove(key);
        })
    }

    /// Drops what the records never read and spare capacity, as the slice
    /// is kept until it changes.
    fn trim(&self, slice: &mut EndpointSlice) {
        for ep in &mut slice.endpoints {
            if !self.options.endpoint_pod_names {
                ep.pod_name = None;
            }
            ep.addresses.shrink_to_fit();
        }
        slice.endpoints.shrink_to_fit();
        slice.ports.shrink_to_fit();
    }

    fn insert_slice(&mut self, key: ServiceKey, slice: EndpointSlice) {
        let id = (slice.namespace.clone(), slice.name.clone());
        let name = id.1.clone();
        self.slice_service.insert(id, key.clone());
        Arc::make_mut(self.slices.entry(key).or_default()).insert(name, slice);
    }

    fn remove_slice(&mut self, key: &ServiceKey, name: &str) {
        if let Some(slices) = self.slices.get_mut(key) {
            Arc::make_mut(slices).remove(name);
            if slices.is_empty() {
                self.slices.remove(key);
            }
        }
    }

    /// Adds or replaces an EndpointSlice.
    pub fn apply_slice(&mut self, mut slice: EndpointSlice) -> Vec<Change> {
        self.trim(&mut slice);
        let key = ServiceKey::new(slice.namespace.clone(), slice.service.clone());
        let mut changes = Vec::new();
        let id = (slice.namespace.clone(), slice.name.clone());
        if let Some(previous) = self.slice_service.get(&id).cloned()
            && previous != key
        {
            changes.extend(self.update(Owner::Service(previous.clone()), |index| {
                index.slice_service.remove(&id);
                index.remove_slice(&previous, &id.1);
            }));
        }
        changes.extend(self.update(Owner::Service(key.clone()), |index| {
            index.insert_slice(key, slice);
        }));
        changes
    }

    /// Removes an EndpointSlice.
    pub fn delete_slice(&mut self, namespace: &str, name: &str) -> Vec<Change> {
        let id = (namespace.to_owned(), name.to_owned());
        let Some(key) = self.slice_service.get(&id).cloned() else {
            return Vec::new();
        };
        self.update(Owner::Service(key.clone()), |index| {
            index.slice_service.remove(&id);
            index.remove_slice(&key, name);
        })
    }

    /// Adds or replaces a Pod (only used with
    /// [`PodRecords::Verified`](crate::model::PodRecords::Verified)).
    pub fn apply_pod(&mut self, pod: Pod) -> Vec<Change> {
        let key = ServiceKey::new(pod.namespace.clone(), pod.name.clone());
        self.update(Owner::Pod(key.clone()), |index| {
            index.pods.insert(key, Arc::new(pod));
        })
    }

    /// Removes a Pod.
    pub fn delete_pod(&mut self, namespace: &str, name: &str) -> Vec<Change> {
        let key = ServiceKey::new(namespace, name);
        self.update(Owner::Pod(key.clone()), |index| {
            index.pods.remove(&key);
        })
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
            if self.services.get(&s.key).is_none_or(|now| **now != s) {
                changes.extend(self.apply_service(s));
            }
        }
        changes
    }

    /// Replaces every EndpointSlice. Each Service's records are rebuilt
    /// once for all its slices.
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
        drop(keep);
        let mut changes = Vec::new();
        for (ns, name) in gone {
            changes.extend(self.delete_slice(&ns, &name));
        }
        let mut by_service: HashMap<ServiceKey, Vec<EndpointSlice>> = HashMap::new();
        for mut s in slices {
            self.trim(&mut s);
            let key = ServiceKey::new(s.namespace.clone(), s.service.clone());
            let id = (s.namespace.clone(), s.name.clone());
            match self.slice_service.get(&id) {
                Some(now) if *now != key => changes.extend(self.apply_slice(s)),
                Some(now) if self.slices.get(now).and_then(|m| m.get(&s.name)) == Some(&s) => {}
                _ => by_service.entry(key).or_default().push(s),
            }
        }
        for (key, group) in by_service {
            changes.extend(self.update(Owner::Service(key.clone()), |index| {
                for s in group {
                    index.insert_slice(key.clone(), s);
                }
            }));
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

    fn owner_id(&mut self, owner: &Owner) -> OwnerId {
        if let Some(id) = self.owner_ids.get(owner) {
            return *id;
        }
        let mut id = self.next_owner & !HAS_RECORDS;
        while self.owners.contains_key(&id) {
            id = id.wrapping_add(1) & !HAS_RECORDS;
        }
        self.next_owner = id.wrapping_add(1);
        self.owner_ids.insert(owner.clone(), id);
        self.owners.insert(id, owner.clone());
        id
    }

    /// Replaces what `owner` contributed (`old`) with `new` and returns the
    /// per-name changes.
    fn replace(&mut self, owner: Owner, old: Owned, new: Owned) -> Vec<Change> {
        let gone = new.is_empty();
        let mut changes = Vec::new();
        let mut old = old.into_iter().peekable();
        let mut new = new.into_iter().peekable();
        loop {
            let (name, before, after) = match (old.peek(), new.peek()) {
                (None, None) => break,
                (Some((o, _)), Some((n, _))) if o == n => {
                    let (name, before) = old.next().unzip();
                    let after = new.next().map(|(_, r)| r);
                    (name, before, after)
                }
                (Some((o, _)), Some((n, _))) if o < n => {
                    let (name, before) = old.next().unzip();
                    (name, before, None)
                }
                (Some(_), None) => {
                    let (name, before) = old.next().unzip();
                    (name, before, None)
                }
                (_, Some(_)) => {
                    let (name, after) = new.next().unzip();
                    (name, None, after)
                }
            };
            let Some(name) = name else { break };
            if before == after {
                continue;
            }
            if self.is_private(&owner, &name) {
                let change = match after {
                    Some(records) => {
                        if before.is_none() {
                            self.private_names += 1;
                        }
                        Change::Upsert(NameRecords { name, records })
                    }
                    None => {
                        self.private_names -= 1;
                        Change::Remove(name)
                    }
                };
                if self.changes_wanted {
                    changes.push(change);
                }
            } else {
                let id = self.owner_id(&owner);
                changes.extend(self.contribute(name, id, before, after));
            }
        }
        if gone && let Some(id) = self.owner_ids.remove(&owner) {
            self.owners.remove(&id);
        }
        changes
    }

    /// Records that owner `id` now contributes `after` (was `before`) to
    /// the shared `name`; the model already holds `after`.
    fn contribute(
        &mut self,
        name: String,
        id: OwnerId,
        before: Option<Vec<RData>>,
        after: Option<Vec<RData>>,
    ) -> Option<Change> {
        let not_id = |o: &u32| *o & !HAS_RECORDS != id;
        let has_others = self
            .shared
            .get(name.as_str())
            .is_some_and(|owners| owners.as_slice().iter().any(not_id));
        let has_records = after.as_ref().is_some_and(|r| !r.is_empty());
        let tagged = if has_records { id | HAS_RECORDS } else { id };
        match (&before, &after, self.shared.get_mut(name.as_str())) {
            (None, Some(_), Some(owners)) => owners.push(tagged),
            (None, Some(_), None) => {
                self.shared
                    .insert(name.clone().into_boxed_str(), Owners::One(tagged));
            }
            (Some(_), Some(_), Some(owners)) => owners.set(id, has_records),
            (Some(_), None, Some(owners)) if has_others => owners.remove(id),
            (Some(_), None, Some(_)) => {
                self.shared.remove(name.as_str());
            }
            _ => {}
        }
        let blank = |r: &Option<Vec<RData>>| r.as_ref().is_none_or(Vec::is_empty);
        if !self.changes_wanted {
            return None;
        }
        if !has_others {
            return Some(match after {
                Some(records) => Change::Upsert(NameRecords { name, records }),
                None => Change::Remove(name),
            });
        }
        if blank(&before) && blank(&after) {
            // An empty non-terminal others keep alive: nothing visible changes.
            return None;
        }
        let others: Vec<u32> = self
            .shared
            .get(name.as_str())
            .map(Owners::as_slice)
            .unwrap_or_default()
            .iter()
            .copied()
            .filter(not_id)
            .collect();
        let base = self.merge(&name, &others);
        let with = |r: Option<Vec<RData>>| {
            let mut m = base.clone();
            m.extend(r.into_iter().flatten());
            m.sort();
            m.dedup();
            m
        };
        let records = with(after);
        (with(before) != records).then_some(Change::Upsert(NameRecords { name, records }))
    }

    /// Whether `name` (normalised) is inside the cluster zone.
    pub fn in_zone(&self, name: &str) -> bool {
        name == self.options.zone || name.ends_with(&self.zone_suffix)
    }
}

/// The full zone as it was when [`RecordIndex::view`] took it: shares the
/// index's model objects (no copy) and builds each owner's records as it
/// is read, so taking one is cheap and holding one costs only the objects
/// the index has replaced since.
#[derive(Debug, Clone)]
pub struct ZoneView {
    options: Arc<Options>,
    services: Vec<(Arc<Service>, Option<Arc<Slices>>)>,
    pods: Vec<Arc<Pod>>,
    /// Names several owners contribute to, merged; sorted by name. They are
    /// few (the namespace and `svc` empty non-terminals, shared PTRs).
    multi: Vec<(Box<str>, Vec<RData>)>,
    len: usize,
}

impl ZoneView {
    fn is_multi(&self, name: &str) -> bool {
        !self.multi.is_empty()
            && self
                .multi
                .binary_search_by(|(n, _)| (**n).cmp(name))
                .is_ok()
    }

    /// A copy of every name and its records, sorted by name.
    pub fn to_vec(&self) -> Vec<NameRecords> {
        let mut all = Vec::with_capacity(self.len);
        self.for_each_name(&mut |name, records| {
            all.push(NameRecords {
                name: name.to_owned(),
                records: records.to_vec(),
            });
        });
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }
}

impl ZoneRecords for ZoneView {
    fn len(&self) -> usize {
        self.len
    }

    fn for_each_name(&self, f: &mut dyn FnMut(&str, &[RData])) {
        let mut build = Build::new(&self.options, false);
        let mut emit = |owned: Owned| {
            for (name, records) in &owned {
                if !self.is_multi(name) {
                    f(name, records);
                }
            }
        };
        emit(build.statics());
        for (svc, slices) in &self.services {
            emit(build.service(svc, slices.as_deref()));
        }
        for pod in &self.pods {
            emit(build.pod(pod));
        }
        for (name, records) in &self.multi {
            f(name, records);
        }
    }
}

#[cfg(test)]
mod tests;
