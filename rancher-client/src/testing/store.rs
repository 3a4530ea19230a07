//! The fake server's in-memory state: records, lifecycles, validation and LB placement.

use std::{
    collections::{BTreeMap, HashMap, HashSet, VecDeque},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use serde_json::{Map, Value, json};
use tokio::time::Instant;

use crate::{
    error::{ErrorBody, code},
    resource::{
        Certificate, Host, LoadBalancerService, Project, Registry, RegistryCredential, Setting,
        Stack, action, parse_public_port, scheduler, state,
    },
};

/// The kinds of objects the fake stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Stack,
    LoadBalancer,
    Certificate,
    Registry,
    RegistryCredential,
    Host,
    IpAddress,
    Setting,
    Project,
    ProjectMember,
}

impl Kind {
    pub(crate) const ALL: [Self; 10] = [
        Self::Stack,
        Self::LoadBalancer,
        Self::Certificate,
        Self::Registry,
        Self::RegistryCredential,
        Self::Host,
        Self::IpAddress,
        Self::Setting,
        Self::Project,
        Self::ProjectMember,
    ];

    pub(crate) fn type_name(self) -> &'static str {
        match self {
            Self::Stack => "stack",
            Self::LoadBalancer => "loadBalancerService",
            Self::Certificate => "certificate",
            Self::Registry => "registry",
            Self::RegistryCredential => "registryCredential",
            Self::Host => "host",
            Self::IpAddress => "ipAddress",
            Self::Setting => "setting",
            Self::Project => "project",
            Self::ProjectMember => "projectMember",
        }
    }

    pub(crate) fn collection(self) -> &'static str {
        match self {
            Self::Stack => "stacks",
            Self::LoadBalancer => "loadbalancerservices",
            Self::Certificate => "certificates",
            Self::Registry => "registries",
            Self::RegistryCredential => "registrycredentials",
            Self::Host => "hosts",
            Self::IpAddress => "ipaddresses",
            Self::Setting => "settings",
            Self::Project => "projects",
            Self::ProjectMember => "projectmembers",
        }
    }

    pub(crate) fn from_collection(name: &str) -> Option<Self> {
        let lower = name.to_ascii_lowercase();
        Self::ALL.into_iter().find(|k| k.collection() == lower)
    }

    pub(crate) fn from_type(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.type_name() == name)
    }

    /// Id prefix; certificates and registry credentials share Rancher's credential table.
    fn id_prefix(self) -> &'static str {
        match self {
            Self::Stack => "1st",
            Self::LoadBalancer => "1s",
            Self::Certificate | Self::RegistryCredential => "1c",
            Self::Registry => "1sp",
            Self::Host => "1h",
            Self::IpAddress => "1ia",
            Self::Setting => "",
            Self::Project => "1a",
            Self::ProjectMember => "1pm",
        }
    }

    fn creatable(self) -> bool {
        matches!(
            self,
            Self::Stack
                | Self::LoadBalancer
                | Self::Certificate
                | Self::Registry
                | Self::RegistryCredential
                | Self::Project
                | Self::ProjectMember
        )
    }

    /// Whether the collection lives at the API root rather than under the project URL.
    pub(crate) fn at_api_root(self) -> bool {
        matches!(self, Self::Project | Self::ProjectMember)
    }
}

/// Fields the server owns; ignored in request bodies.
const SERVER_FIELDS: &[&str] = &[
    "id",
    "type",
    "baseType",
    "state",
    "transitioning",
    "transitioningMessage",
    "transitioningProgress",
    "created",
    "createdTS",
    "removed",
    "uuid",
    "links",
    "actions",
    "accountId",
    "publicEndpoints",
    "currentScale",
    "healthState",
    "instanceIds",
    "agentState",
    "agentIpAddress",
    "hostname",
    "activeValue",
    "hostId",
];

/// Fields that can only be set on create.
fn create_only(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::LoadBalancer => &["stackId"],
        Kind::RegistryCredential => &["registryId"],
        Kind::Registry => &["serverAddress"],
        Kind::Setting => &["name"],
        _ => &[],
    }
}

/// A stored object.
#[derive(Clone)]
pub(crate) struct Record {
    pub(crate) seq: u64,
    pub(crate) kind: Kind,
    pub(crate) body: Map<String, Value>,
    /// States still to pass through, one per settle delay.
    pending: VecDeque<&'static str>,
    next_at: Option<Instant>,
    /// For load balancers: `(host id, instance id)` of each placed instance.
    placements: Vec<(String, String)>,
}

impl Record {
    pub(crate) fn id(&self) -> &str {
        self.body.get("id").and_then(Value::as_str).unwrap_or("")
    }

    fn state(&self) -> &str {
        self.body.get("state").and_then(Value::as_str).unwrap_or("")
    }

    pub(crate) fn str_field(&self, field: &str) -> Option<&str> {
        self.body.get(field).and_then(Value::as_str)
    }

    pub(crate) fn is_removed(&self) -> bool {
        self.body.get("removed").is_some_and(|v| !v.is_null())
            || matches!(
                self.state(),
                state::REMOVING | state::REMOVED | state::PURGING | state::PURGED
            )
    }

    fn transitioning(&self) -> bool {
        !self.pending.is_empty()
    }
}

/// A host as given to the fake.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeHost {
    /// The hostname.
    pub hostname: String,
    /// The agent IP; also the IP that load balancers on this host publish.
    pub ip: String,
    /// More IPs, listed after the agent IP under the host's `ipAddresses` link.
    pub extra_ips: Vec<String>,
    /// Host labels.
    pub labels: BTreeMap<String, String>,
}

impl FakeHost {
    /// A host with a hostname and its agent IP.
    pub fn new(hostname: impl Into<String>, ip: impl Into<String>) -> Self {
        Self {
            hostname: hostname.into(),
            ip: ip.into(),
            extra_ips: Vec::new(),
            labels: BTreeMap::new(),
        }
    }

    /// Adds a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Adds an IP address besides the agent IP.
    pub fn extra_ip(mut self, ip: impl Into<String>) -> Self {
        self.extra_ips.push(ip.into());
        self
    }
}

/// Outcome of a store operation that the HTTP layer turns into a response.
pub(crate) type Outcome<T = Value> = Result<T, ErrorBody>;

pub(crate) fn not_found(what: impl std::fmt::Display) -> ErrorBody {
    ErrorBody::new(404, code::NOT_FOUND, format!("{what} not found"))
}

pub(crate) fn invalid(code: &str, field: &str, message: impl Into<String>) -> ErrorBody {
    ErrorBody::new(422, code, message).field(field)
}

/// The in-memory state. No `Debug`: it holds registry passwords and private keys.
pub(crate) struct Store {
    pub(crate) project_id: String,
    /// `http://addr/v2-beta/projects/<id>`.
    pub(crate) base_url: String,
    pub(crate) settle_delay: Duration,
    pub(crate) page_limit: usize,
    next_seq: u64,
    counters: HashMap<&'static str, u64>,
    records: BTreeMap<u64, Record>,
    by_id: HashMap<(Kind, String), u64>,
    /// Project id → the URL of the Kubernetes API server the `/r/projects/<id>/kubernetes:6443`
    /// proxy forwards to.
    pub(crate) kube_backends: HashMap<String, String>,
}

impl Store {
    pub(crate) fn new(project_id: String, base_url: String, settle_delay: Duration) -> Self {
        Self {
            project_id,
            base_url,
            settle_delay,
            page_limit: 100,
            next_seq: 1,
            counters: HashMap::new(),
            records: BTreeMap::new(),
            by_id: HashMap::new(),
            kube_backends: HashMap::new(),
        }
    }

    pub(crate) fn next_id(&mut self, kind: Kind) -> String {
        let prefix = kind.id_prefix();
        loop {
            let n = self.counters.entry(prefix).or_insert(0);
            *n += 1;
            let id = format!("{prefix}{n}");
            // Ids given by the builder (the served project's) are skipped.
            if self.seq_of(kind, &id).is_none() {
                return id;
            }
        }
    }

    /// `http://addr/v2-beta`: where API-root collections such as `projects` live.
    pub(crate) fn api_root(&self) -> &str {
        self.base_url
            .rsplit_once("/projects/")
            .map_or(self.base_url.as_str(), |(root, _)| root)
    }

    /// Stores the project the fake serves, under its fixed id.
    pub(crate) fn insert_served_project(&mut self, body: Value) -> Outcome<()> {
        let mut body = writable(body)?;
        self.validate(Kind::Project, &body, None)?;
        body.entry("orchestration")
            .or_insert(json!(Project::KUBERNETES));
        let id = self.project_id.clone();
        let seq = self.insert_record(Kind::Project, id, body);
        self.begin(seq, &[state::ACTIVE]);
        Ok(())
    }

    fn insert_record(&mut self, kind: Kind, id: String, mut body: Map<String, Value>) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        body.insert("id".into(), json!(id));
        body.insert("type".into(), json!(kind.type_name()));
        body.insert("accountId".into(), json!(self.project_id));
        body.entry("created")
            .or_insert_with(|| json!(rfc3339_now()));
        body.entry("uuid").or_insert_with(|| json!(random_uuid()));
        body.entry("removed").or_insert(Value::Null);
        self.by_id.insert((kind, id), seq);
        self.records.insert(
            seq,
            Record {
                seq,
                kind,
                body,
                pending: VecDeque::new(),
                next_at: None,
                placements: Vec::new(),
            },
        );
        seq
    }

    fn seq_of(&self, kind: Kind, id: &str) -> Option<u64> {
        self.by_id.get(&(kind, id.to_owned())).copied()
    }

    pub(crate) fn record(&self, kind: Kind, id: &str) -> Option<&Record> {
        self.seq_of(kind, id).and_then(|s| self.records.get(&s))
    }

    fn record_mut(&mut self, kind: Kind, id: &str) -> Option<&mut Record> {
        let seq = self.seq_of(kind, id)?;
        self.records.get_mut(&seq)
    }

    pub(crate) fn records(&self, kind: Kind) -> impl Iterator<Item = &Record> {
        self.records.values().filter(move |r| r.kind == kind)
    }

    /// Starts a sequence of states: the first now, the rest one settle delay apart.
    fn begin(&mut self, seq: u64, states: &[&'static str]) {
        let now = Instant::now();
        let delay = self.settle_delay;
        let Some(rec) = self.records.get_mut(&seq) else {
            return;
        };
        let Some((first, rest)) = states.split_first() else {
            return;
        };
        rec.pending = rest.iter().copied().collect();
        rec.next_at = (!rec.pending.is_empty()).then_some(now + delay);
        rec.body.insert("transitioningMessage".into(), Value::Null);
        self.enter_state(seq, first);
    }

    /// Applies the effects of reaching a state.
    fn enter_state(&mut self, seq: u64, new_state: &str) {
        let Some(rec) = self.records.get_mut(&seq) else {
            return;
        };
        rec.body.insert("state".into(), json!(new_state));
        let transitioning = if rec.pending.is_empty() { "no" } else { "yes" };
        rec.body
            .insert("transitioning".into(), json!(transitioning));
        if new_state == state::REMOVED && rec.body.get("removed").is_none_or(Value::is_null) {
            rec.body.insert("removed".into(), json!(rfc3339_now()));
        }
        if rec.kind == Kind::Stack && new_state == state::REMOVING {
            let stack_id = rec.id().to_owned();
            let services: Vec<u64> = self
                .records(Kind::LoadBalancer)
                .filter(|r| r.str_field("stackId") == Some(&stack_id) && !r.is_removed())
                .map(|r| r.seq)
                .collect();
            for s in services {
                self.begin(s, &[state::REMOVING, state::REMOVED]);
            }
        }
    }

    /// Moves every record whose next state is due; recomputes placements when anything moved.
    pub(crate) fn tick(&mut self) {
        let now = Instant::now();
        let mut changed = false;
        loop {
            let due: Vec<u64> = self
                .records
                .values()
                .filter(|r| r.next_at.is_some_and(|t| t <= now))
                .map(|r| r.seq)
                .collect();
            if due.is_empty() {
                break;
            }
            for seq in due {
                let delay = self.settle_delay;
                let Some(rec) = self.records.get_mut(&seq) else {
                    continue;
                };
                let Some(next) = rec.pending.pop_front() else {
                    rec.next_at = None;
                    continue;
                };
                let at = rec.next_at.unwrap_or(now);
                rec.next_at = (!rec.pending.is_empty()).then_some((at + delay).max(at));
                self.enter_state(seq, next);
                changed = true;
            }
        }
        if changed {
            self.place();
        }
    }

    /// Completes every pending transition at once.
    pub(crate) fn settle_now(&mut self) {
        // Entering a state can start other transitions (a stack's removal removes its
        // services), so repeat until nothing is pending.
        loop {
            let seqs: Vec<u64> = self
                .records
                .values()
                .filter(|r| r.transitioning())
                .map(|r| r.seq)
                .collect();
            if seqs.is_empty() {
                break;
            }
            for seq in seqs {
                while let Some(rec) = self.records.get_mut(&seq) {
                    let Some(next) = rec.pending.pop_front() else {
                        rec.next_at = None;
                        break;
                    };
                    self.enter_state(seq, next);
                }
            }
        }
        self.place();
    }

    /// Marks a resource's transition as failed (`transitioning: error`).
    pub(crate) fn fail_transition(&mut self, kind: Kind, id: &str, message: &str) -> bool {
        let Some(rec) = self.record_mut(kind, id) else {
            return false;
        };
        rec.pending.clear();
        rec.next_at = None;
        rec.body.insert("transitioning".into(), json!("error"));
        rec.body
            .insert("transitioningMessage".into(), json!(message));
        true
    }

    // ----- rendering -------------------------------------------------------------------

    fn self_url(&self, kind: Kind, id: &str) -> String {
        if kind.at_api_root() {
            format!("{}/{}/{id}", self.api_root(), kind.collection())
        } else {
            format!("{}/{}/{id}", self.base_url, kind.collection())
        }
    }

    /// The URL of a collection, without query.
    pub(crate) fn collection_url(&self, kind: Kind) -> String {
        if kind.at_api_root() {
            format!("{}/{}", self.api_root(), kind.collection())
        } else {
            format!("{}/{}", self.base_url, kind.collection())
        }
    }

    fn available_actions(&self, rec: &Record) -> Vec<&'static str> {
        use action::*;
        let st = rec.state();
        if rec.body.get("transitioning").and_then(Value::as_str) == Some("error") {
            return vec![REMOVE];
        }
        if rec.transitioning() {
            return match st {
                state::REMOVING | state::PURGING => vec![],
                _ if rec.kind == Kind::Setting || rec.kind == Kind::IpAddress => vec![],
                _ => vec![REMOVE],
            };
        }
        match (rec.kind, st) {
            (Kind::Setting, _) => vec![UPDATE],
            (Kind::IpAddress, _) => vec![],
            (_, state::REMOVED) => vec![PURGE],
            (_, state::PURGED) => vec![],
            (Kind::LoadBalancer, state::ACTIVE) => vec![DEACTIVATE, REMOVE, UPDATE, UPGRADE],
            (Kind::LoadBalancer, state::INACTIVE) => vec![ACTIVATE, REMOVE, UPDATE],
            (Kind::LoadBalancer, state::UPGRADED) => vec![FINISH_UPGRADE, REMOVE],
            (Kind::Stack | Kind::Certificate, state::ACTIVE) => vec![REMOVE, UPDATE],
            (_, state::ACTIVE) => vec![DEACTIVATE, REMOVE, UPDATE],
            (_, state::INACTIVE) => vec![ACTIVATE, REMOVE, UPDATE],
            _ => vec![REMOVE],
        }
    }

    fn links(&self, rec: &Record) -> Map<String, Value> {
        let id = rec.id();
        let me = self.self_url(rec.kind, id);
        let mut links = Map::new();
        links.insert("self".into(), json!(me));
        match rec.kind {
            Kind::LoadBalancer => {
                if let Some(stack) = rec.str_field("stackId") {
                    links.insert("stack".into(), json!(self.self_url(Kind::Stack, stack)));
                }
            }
            Kind::Stack => {
                links.insert("services".into(), json!(format!("{me}/services")));
            }
            Kind::RegistryCredential => {
                if let Some(reg) = rec.str_field("registryId") {
                    links.insert("registry".into(), json!(self.self_url(Kind::Registry, reg)));
                }
            }
            Kind::Registry => {
                links.insert("credentials".into(), json!(format!("{me}/credentials")));
            }
            Kind::Host => {
                links.insert("ipAddresses".into(), json!(format!("{me}/ipaddresses")));
            }
            // The served project links to the collections the fake serves under it.
            Kind::Project if id == self.project_id => {
                for k in Kind::ALL {
                    if k != Kind::IpAddress && !k.at_api_root() {
                        links.insert(k.collection().into(), json!(self.collection_url(k)));
                    }
                }
            }
            _ => {}
        }
        links
    }

    /// The JSON a client sees for a record.
    pub(crate) fn render(&self, rec: &Record) -> Value {
        let mut body = rec.body.clone();
        if rec.kind == Kind::IpAddress {
            body.remove("hostId");
        }
        body.insert("baseType".into(), json!(rec.kind.type_name()));
        body.insert("links".into(), Value::Object(self.links(rec)));
        let me = self.self_url(rec.kind, rec.id());
        let actions: Map<String, Value> = self
            .available_actions(rec)
            .into_iter()
            .filter(|a| *a != action::UPDATE)
            .map(|a| (a.to_owned(), json!(format!("{me}/?action={a}"))))
            .collect();
        body.insert("actions".into(), Value::Object(actions));
        Value::Object(body)
    }

    // ----- reads -----------------------------------------------------------------------

    pub(crate) fn get(&self, kind: Kind, id: &str) -> Outcome {
        self.record(kind, id)
            .map(|r| self.render(r))
            .ok_or_else(|| not_found(format!("{} {id}", kind.type_name())))
    }

    /// One page of a filtered collection. `collection_url` is the URL the page links use,
    /// without query.
    pub(crate) fn list(
        &self,
        kind: Kind,
        query: &[(String, String)],
        scope: Option<(&str, &str)>,
        collection_url: &str,
    ) -> Outcome {
        let mut limit = self.page_limit;
        let mut marker: u64 = 0;
        let mut filters: Vec<(String, String)> = Vec::new();
        for (k, v) in query {
            match k.as_str() {
                "limit" => {
                    limit = v.parse::<usize>().map_err(|_| {
                        invalid(code::INVALID_FORMAT, "limit", "limit must be a number")
                    })?;
                    limit = limit.clamp(1, 1000);
                }
                "marker" => {
                    marker = v
                        .strip_prefix('m')
                        .and_then(|n| n.parse().ok())
                        .ok_or_else(|| invalid(code::INVALID_FORMAT, "marker", "invalid marker"))?;
                }
                "sort" | "order" | "include" | "_" => {}
                _ => filters.push((k.clone(), v.clone())),
            }
        }
        let matching: Vec<&Record> = self
            .records(kind)
            .filter(|r| r.seq > marker)
            .filter(|r| scope.is_none_or(|(f, v)| r.str_field(f) == Some(v)))
            .filter(|r| filters.iter().all(|(k, v)| matches_filter(&r.body, k, v)))
            .collect();
        let page: Vec<Value> = matching
            .iter()
            .take(limit)
            .map(|r| self.render(r))
            .collect();
        let next = (matching.len() > limit).then(|| {
            let last = matching[limit - 1].seq;
            let mut q: Vec<String> = filters
                .iter()
                .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
                .collect();
            q.push(format!("limit={limit}"));
            q.push(format!("marker=m{last}"));
            format!("{collection_url}?{}", q.join("&"))
        });
        let mut filter_map = Map::new();
        for (k, v) in &filters {
            let (field, modifier) = split_modifier(k);
            filter_map.insert(
                field.to_owned(),
                json!([{ "modifier": modifier, "value": v }]),
            );
        }
        Ok(json!({
            "type": "collection",
            "resourceType": kind.type_name(),
            "links": { "self": collection_url },
            "createTypes": if kind.creatable() {
                json!({ kind.type_name(): collection_url })
            } else {
                json!({})
            },
            "actions": {},
            "data": page,
            "sortLinks": {},
            "pagination": {
                "first": null,
                "previous": null,
                "next": next,
                "limit": limit,
                "total": null,
                "partial": next.is_some(),
            },
            "sort": null,
            "filters": filter_map,
            "createDefaults": {},
        }))
    }

    /// Follows a link of a record: returns a single object or a collection.
    pub(crate) fn link(
        &self,
        kind: Kind,
        id: &str,
        link: &str,
        query: &[(String, String)],
    ) -> Outcome {
        let rec = self
            .record(kind, id)
            .ok_or_else(|| not_found(format!("{} {id}", kind.type_name())))?;
        let me = self.self_url(kind, id);
        match (kind, link.to_ascii_lowercase().as_str()) {
            (Kind::Host, "ipaddresses") => self.list(
                Kind::IpAddress,
                query,
                Some(("hostId", id)),
                &format!("{me}/ipaddresses"),
            ),
            (Kind::Registry, "credentials") => self.list(
                Kind::RegistryCredential,
                query,
                Some(("registryId", id)),
                &format!("{me}/credentials"),
            ),
            (Kind::Stack, "services") => self.list(
                Kind::LoadBalancer,
                query,
                Some(("stackId", id)),
                &format!("{me}/services"),
            ),
            (Kind::RegistryCredential, "registry") => {
                self.get(Kind::Registry, rec.str_field("registryId").unwrap_or(""))
            }
            (Kind::LoadBalancer, "stack") => {
                self.get(Kind::Stack, rec.str_field("stackId").unwrap_or(""))
            }
            _ => Err(not_found(format!(
                "link {link} of {} {id}",
                kind.type_name()
            ))),
        }
    }

    // ----- writes ----------------------------------------------------------------------

    pub(crate) fn create(&mut self, kind: Kind, input: Value) -> Outcome {
        if !kind.creatable() {
            return Err(ErrorBody::new(
                405,
                "MethodNotAllowed",
                format!("{} cannot be created through the api", kind.collection()),
            ));
        }
        let mut body = writable(input)?;
        self.apply_defaults(kind, &mut body);
        self.validate(kind, &body, None)?;
        let id = self.next_id(kind);
        let seq = self.insert_record(kind, id.clone(), body);
        let start_on_create = self.records[&seq]
            .body
            .get("startOnCreate")
            .and_then(Value::as_bool)
            .unwrap_or(false);
        match kind {
            Kind::LoadBalancer if start_on_create => {
                self.begin(seq, &[state::REGISTERING, state::ACTIVATING, state::ACTIVE])
            }
            Kind::LoadBalancer => self.begin(seq, &[state::REGISTERING, state::INACTIVE]),
            _ => self.begin(seq, &[state::ACTIVATING, state::ACTIVE]),
        }
        self.place();
        self.get(kind, &id)
    }

    /// Inserts an object as already settled (for seeding from tests).
    pub(crate) fn seed(
        &mut self,
        kind: Kind,
        input: Value,
        settled_state: &'static str,
    ) -> Outcome {
        let mut body = writable(input)?;
        self.apply_defaults(kind, &mut body);
        self.validate(kind, &body, None)?;
        let id = match kind {
            Kind::Setting => body
                .get("name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            _ => self.next_id(kind),
        };
        if self.seq_of(kind, &id).is_some() {
            return Err(invalid(code::NOT_UNIQUE, "name", format!("{id} exists")));
        }
        let seq = self.insert_record(kind, id.clone(), body);
        self.begin(seq, &[settled_state]);
        self.place();
        self.get(kind, &id)
    }

    fn apply_defaults(&self, kind: Kind, body: &mut Map<String, Value>) {
        match kind {
            Kind::LoadBalancer => {
                if body.get("scale").is_none_or(Value::is_null) {
                    body.insert("scale".into(), json!(1));
                }
                body.insert("currentScale".into(), json!(0));
                body.insert("publicEndpoints".into(), json!([]));
                body.insert("healthState".into(), json!("initializing"));
                body.entry("kind").or_insert(json!("loadBalancerService"));
            }
            Kind::Setting => {
                let value = body.get("value").cloned().unwrap_or(Value::Null);
                body.insert("activeValue".into(), value);
            }
            _ => {}
        }
    }

    pub(crate) fn update(&mut self, kind: Kind, id: &str, input: Value) -> Outcome {
        let rec = self
            .record(kind, id)
            .ok_or_else(|| not_found(format!("{} {id}", kind.type_name())))?;
        if rec.is_removed() || kind == Kind::IpAddress {
            return Err(ErrorBody::new(
                422,
                code::INVALID_STATE,
                format!(
                    "{} {id} cannot be updated in state {}",
                    kind.type_name(),
                    rec.state()
                ),
            ));
        }
        let mut changes = writable(input)?;
        for f in create_only(kind) {
            changes.remove(*f);
        }
        let mut merged = rec.body.clone();
        for (k, v) in changes {
            merged.insert(k, v);
        }
        self.apply_update_defaults(kind, &mut merged);
        self.validate(kind, &merged, Some(id))?;
        let seq = rec.seq;
        let current = rec.state().to_owned();
        if let Some(r) = self.records.get_mut(&seq) {
            r.body = merged;
        }
        match (kind, current.as_str()) {
            (Kind::Setting | Kind::Host, _) => {}
            (_, state::ACTIVE) => self.begin(seq, &[state::UPDATING_ACTIVE, state::ACTIVE]),
            (_, state::INACTIVE) => self.begin(seq, &[state::UPDATING_INACTIVE, state::INACTIVE]),
            _ => {}
        }
        self.place();
        self.get(kind, id)
    }

    fn apply_update_defaults(&self, kind: Kind, body: &mut Map<String, Value>) {
        if kind == Kind::Setting {
            let value = body.get("value").cloned().unwrap_or(Value::Null);
            body.insert("activeValue".into(), value);
        }
    }

    pub(crate) fn action(&mut self, kind: Kind, id: &str, name: &str, input: Value) -> Outcome {
        let rec = self
            .record(kind, id)
            .ok_or_else(|| not_found(format!("{} {id}", kind.type_name())))?;
        let name = name.to_ascii_lowercase();
        let available = self.available_actions(rec);
        if !available.iter().any(|a| *a == name) || name == action::UPDATE {
            return Err(ErrorBody::new(
                422,
                code::INVALID_ACTION,
                format!(
                    "action {name} is not available for {} {id} in state {}",
                    kind.type_name(),
                    rec.state()
                ),
            ));
        }
        let seq = rec.seq;
        match name.as_str() {
            action::ACTIVATE => self.begin(seq, &[state::ACTIVATING, state::ACTIVE]),
            action::DEACTIVATE => self.begin(seq, &[state::DEACTIVATING, state::INACTIVE]),
            action::REMOVE => self.begin(seq, &[state::REMOVING, state::REMOVED]),
            action::PURGE => self.begin(seq, &[state::PURGING, state::PURGED]),
            action::FINISH_UPGRADE => {
                self.begin(seq, &[state::FINISHING_UPGRADE, state::ACTIVE]);
            }
            action::UPGRADE => {
                let launch = input
                    .pointer("/inServiceStrategy/launchConfig")
                    .cloned()
                    .ok_or_else(|| {
                        invalid(
                            code::MISSING_REQUIRED,
                            "inServiceStrategy",
                            "upgrade needs inServiceStrategy.launchConfig",
                        )
                    })?;
                let mut merged = self.records[&seq].body.clone();
                merged.insert("launchConfig".into(), launch);
                self.validate(kind, &merged, Some(id))?;
                if let Some(r) = self.records.get_mut(&seq) {
                    r.body = merged;
                }
                self.begin(seq, &[state::UPGRADING, state::UPGRADED]);
            }
            _ => {
                return Err(ErrorBody::new(
                    422,
                    code::INVALID_ACTION,
                    format!("unknown action {name}"),
                ));
            }
        }
        self.place();
        self.get(kind, id)
    }

    // ----- validation ------------------------------------------------------------------

    /// Checks a full body about to be stored. `id` is the object's own id on update.
    fn validate(&self, kind: Kind, body: &Map<String, Value>, id: Option<&str>) -> Outcome<()> {
        let value = Value::Object(body.clone());
        let shape = |e: serde_json::Error| {
            ErrorBody::new(
                422,
                code::INVALID_FORMAT,
                format!("invalid {}: {e}", kind.type_name()),
            )
        };
        match kind {
            Kind::Stack => {
                let s: Stack = serde_json::from_value(value).map_err(shape)?;
                let name = required_name(s.meta.name.as_deref())?;
                if self.records(Kind::Stack).any(|r| {
                    !r.is_removed() && r.str_field("name") == Some(name) && Some(r.id()) != id
                }) {
                    return Err(invalid(
                        code::NOT_UNIQUE,
                        "name",
                        format!("a stack named {name} exists"),
                    ));
                }
            }
            Kind::LoadBalancer => {
                let lb: LoadBalancerService = serde_json::from_value(value).map_err(shape)?;
                self.validate_lb(&lb, id)?;
            }
            Kind::Certificate => {
                let c: Certificate = serde_json::from_value(value).map_err(shape)?;
                required_name(c.meta.name.as_deref())?;
                let cert = c.cert.as_deref().unwrap_or("");
                if cert.is_empty() {
                    return Err(invalid(code::MISSING_REQUIRED, "cert", "cert is required"));
                }
                if !cert.contains("-----BEGIN CERTIFICATE-----") {
                    return Err(invalid(
                        code::INVALID_FORMAT,
                        "cert",
                        "cert is not a PEM certificate",
                    ));
                }
                let key = c.key.as_ref().map(|k| k.expose()).unwrap_or("");
                if key.is_empty() {
                    return Err(invalid(code::MISSING_REQUIRED, "key", "key is required"));
                }
                if !key.contains("PRIVATE KEY-----") {
                    return Err(invalid(
                        code::INVALID_FORMAT,
                        "key",
                        "key is not a PEM private key",
                    ));
                }
            }
            Kind::Registry => {
                let r: Registry = serde_json::from_value(value).map_err(shape)?;
                let addr = r.server_address.trim();
                if addr.is_empty() {
                    return Err(invalid(
                        code::MISSING_REQUIRED,
                        "serverAddress",
                        "serverAddress is required",
                    ));
                }
                if addr.contains("://") || addr.contains('/') || addr.contains(char::is_whitespace)
                {
                    return Err(invalid(
                        code::INVALID_FORMAT,
                        "serverAddress",
                        format!("serverAddress {addr:?} must be a host[:port]"),
                    ));
                }
                if self.records(Kind::Registry).any(|x| {
                    !x.is_removed()
                        && x.str_field("serverAddress") == Some(addr)
                        && Some(x.id()) != id
                }) {
                    return Err(invalid(
                        code::NOT_UNIQUE,
                        "serverAddress",
                        format!("a registry for {addr} exists"),
                    ));
                }
            }
            Kind::RegistryCredential => {
                let c: RegistryCredential = serde_json::from_value(value).map_err(shape)?;
                if c.registry_id.is_empty() {
                    return Err(invalid(
                        code::MISSING_REQUIRED,
                        "registryId",
                        "registryId is required",
                    ));
                }
                if self
                    .record(Kind::Registry, &c.registry_id)
                    .is_none_or(Record::is_removed)
                {
                    return Err(invalid(
                        code::INVALID_REFERENCE,
                        "registryId",
                        format!("registry {} does not exist", c.registry_id),
                    ));
                }
                if c.public_value.as_deref().unwrap_or("").is_empty() {
                    return Err(invalid(
                        code::MISSING_REQUIRED,
                        "publicValue",
                        "publicValue is required",
                    ));
                }
                if c.secret_value.as_ref().is_none_or(|s| s.is_empty()) {
                    return Err(invalid(
                        code::MISSING_REQUIRED,
                        "secretValue",
                        "secretValue is required",
                    ));
                }
            }
            Kind::Host => {
                let _: Host = serde_json::from_value(value).map_err(shape)?;
            }
            Kind::Setting => {
                let s: Setting = serde_json::from_value(value).map_err(shape)?;
                required_field(s.meta.name.as_deref(), "name")?;
            }
            Kind::Project => {
                let p: Project = serde_json::from_value(value).map_err(shape)?;
                // Environment names are free text ("Default", "prod east").
                let name = required_field(p.meta.name.as_deref(), "name")?;
                if self.records(Kind::Project).any(|r| {
                    !r.is_removed() && r.str_field("name") == Some(name) && Some(r.id()) != id
                }) {
                    return Err(invalid(
                        code::NOT_UNIQUE,
                        "name",
                        format!("an environment named {name} exists"),
                    ));
                }
            }
            Kind::ProjectMember => super::access::validate_member(self, &value)?,
            Kind::IpAddress => {}
        }
        Ok(())
    }

    fn validate_lb(&self, lb: &LoadBalancerService, id: Option<&str>) -> Outcome<()> {
        let name = required_name(lb.meta.name.as_deref())?;
        if lb.stack_id.is_empty() {
            return Err(invalid(
                code::MISSING_REQUIRED,
                "stackId",
                "stackId is required",
            ));
        }
        if self
            .record(Kind::Stack, &lb.stack_id)
            .is_none_or(Record::is_removed)
        {
            return Err(invalid(
                code::INVALID_REFERENCE,
                "stackId",
                format!("stack {} does not exist", lb.stack_id),
            ));
        }
        if self.records(Kind::LoadBalancer).any(|r| {
            !r.is_removed()
                && r.str_field("name") == Some(name)
                && r.str_field("stackId") == Some(&lb.stack_id)
                && Some(r.id()) != id
        }) {
            return Err(invalid(
                code::NOT_UNIQUE,
                "name",
                format!("a service named {name} exists in stack {}", lb.stack_id),
            ));
        }
        if let Some(lc) = &lb.launch_config {
            for p in &lc.ports {
                if !valid_port_spec(p) {
                    return Err(invalid(
                        code::INVALID_FORMAT,
                        "ports",
                        format!("invalid port {p:?}; expected public[:private][/tcp|/udp]"),
                    ));
                }
            }
        }
        if let Some(cfg) = &lb.lb_config {
            for rule in &cfg.port_rules {
                if rule.source_port == 0 {
                    return Err(invalid(
                        code::MIN_LIMIT_EXCEEDED,
                        "sourcePort",
                        "sourcePort must be between 1 and 65535",
                    ));
                }
                if rule.target_port == Some(0) {
                    return Err(invalid(
                        code::MIN_LIMIT_EXCEEDED,
                        "targetPort",
                        "targetPort must be between 1 and 65535",
                    ));
                }
            }
            let certs = cfg
                .default_certificate_id
                .iter()
                .chain(cfg.certificate_ids.iter());
            for cert in certs {
                if self
                    .record(Kind::Certificate, cert)
                    .is_none_or(Record::is_removed)
                {
                    let field = if cfg.default_certificate_id.as_deref() == Some(cert) {
                        "defaultCertificateId"
                    } else {
                        "certificateIds"
                    };
                    return Err(invalid(
                        code::INVALID_REFERENCE,
                        field,
                        format!("certificate {cert} does not exist"),
                    ));
                }
            }
        }
        Ok(())
    }

    // ----- hosts -----------------------------------------------------------------------

    pub(crate) fn add_host(&mut self, host: FakeHost) -> String {
        let id = self.next_id(Kind::Host);
        let mut body = Map::new();
        body.insert("name".into(), json!(host.hostname));
        body.insert("hostname".into(), json!(host.hostname));
        body.insert("agentIpAddress".into(), json!(host.ip));
        body.insert("agentState".into(), json!("active"));
        body.insert("labels".into(), json!(host.labels));
        body.insert("publicEndpoints".into(), json!([]));
        let seq = self.insert_record(Kind::Host, id.clone(), body);
        self.begin(seq, &[state::ACTIVE]);
        for ip in std::iter::once(&host.ip).chain(host.extra_ips.iter()) {
            let ip_id = self.next_id(Kind::IpAddress);
            let mut body = Map::new();
            body.insert("address".into(), json!(ip));
            body.insert("kind".into(), json!("docker"));
            body.insert("hostId".into(), json!(id));
            let seq = self.insert_record(Kind::IpAddress, ip_id, body);
            self.begin(seq, &[state::ACTIVE]);
        }
        self.place();
        id
    }

    pub(crate) fn host_mut(&mut self, id: &str) -> Option<&mut Map<String, Value>> {
        self.record_mut(Kind::Host, id).map(|r| &mut r.body)
    }

    pub(crate) fn remove_host(&mut self, id: &str) -> bool {
        let Some(seq) = self.seq_of(Kind::Host, id) else {
            return false;
        };
        self.begin(seq, &[state::REMOVED]);
        self.place();
        true
    }

    pub(crate) fn placements(&self, lb_id: &str) -> Vec<String> {
        self.record(Kind::LoadBalancer, lb_id)
            .map(|r| r.placements.iter().map(|(h, _)| h.clone()).collect())
            .unwrap_or_default()
    }

    // ----- placement -------------------------------------------------------------------

    /// Places the instances of every running load balancer on distinct eligible hosts, the way
    /// Rancher's scheduler did: a host is eligible if it is active with a connected agent,
    /// matches the LB's host-label affinity and has none of the LB's public ports taken by
    /// another LB. Existing placements are kept while still eligible; older LBs keep theirs
    /// first. Then `currentScale`, `publicEndpoints`, `instanceIds` and `healthState` of the LBs
    /// and `publicEndpoints` of the hosts are rewritten.
    pub(crate) fn place(&mut self) {
        struct HostInfo {
            id: String,
            ip: String,
            labels: Map<String, Value>,
        }
        let hosts: Vec<HostInfo> = self
            .records(Kind::Host)
            .filter(|r| {
                r.state() == state::ACTIVE
                    && r.str_field("agentState").is_none_or(|s| s == "active")
            })
            .map(|r| HostInfo {
                id: r.id().to_owned(),
                ip: r.str_field("agentIpAddress").unwrap_or("").to_owned(),
                labels: r
                    .body
                    .get("labels")
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default(),
            })
            .collect();
        let host_ips: HashMap<String, String> =
            hosts.iter().map(|h| (h.id.clone(), h.ip.clone())).collect();

        struct Lb {
            seq: u64,
            ports: Vec<u16>,
            want: usize,
            eligible: Vec<String>,
            kept: Vec<(String, String)>,
        }
        let running = [
            state::ACTIVE,
            state::UPDATING_ACTIVE,
            state::UPGRADING,
            state::UPGRADED,
            state::FINISHING_UPGRADE,
            state::DEACTIVATING,
        ];
        let mut lbs: Vec<Lb> = Vec::new();
        let mut stopped: Vec<u64> = Vec::new();
        for rec in self.records(Kind::LoadBalancer) {
            let parsed: Option<LoadBalancerService> =
                serde_json::from_value(Value::Object(rec.body.clone())).ok();
            let Some(lb) = parsed.filter(|_| running.contains(&rec.state())) else {
                stopped.push(rec.seq);
                continue;
            };
            let labels = lb
                .launch_config
                .as_ref()
                .map(|l| l.labels.clone())
                .unwrap_or_default();
            let pairs = |key: &str| -> Vec<(String, String)> {
                labels
                    .get(key)
                    .map(|s| {
                        s.split(',')
                            .filter_map(|kv| kv.split_once('='))
                            .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
                            .collect()
                    })
                    .unwrap_or_default()
            };
            let affinity = pairs(scheduler::AFFINITY_HOST_LABEL);
            let anti_affinity = pairs(scheduler::AFFINITY_HOST_LABEL_NE);
            let global = labels
                .get(scheduler::GLOBAL)
                .is_some_and(|v| v.eq_ignore_ascii_case("true"));
            let eligible: Vec<String> = hosts
                .iter()
                .filter(|h| {
                    let has = |(k, v): &(String, String)| {
                        h.labels.get(k).and_then(Value::as_str) == Some(v.as_str())
                    };
                    affinity.iter().all(has) && !anti_affinity.iter().any(has)
                })
                .map(|h| h.id.clone())
                .collect();
            let want = if global {
                eligible.len()
            } else {
                lb.scale.unwrap_or(1) as usize
            };
            lbs.push(Lb {
                seq: rec.seq,
                ports: lb.public_ports(),
                want,
                eligible,
                kept: Vec::new(),
            });
        }

        // Phase 1: keep existing placements that are still valid, oldest LB first.
        let mut used: HashMap<String, HashSet<u16>> = HashMap::new();
        for lb in &mut lbs {
            let old = &self.records[&lb.seq].placements;
            for (host, inst) in old {
                if lb.kept.len() >= lb.want {
                    break;
                }
                let ports_free = used
                    .get(host)
                    .is_none_or(|u| lb.ports.iter().all(|p| !u.contains(p)));
                if lb.eligible.contains(host) && ports_free {
                    used.entry(host.clone()).or_default().extend(&lb.ports);
                    lb.kept.push((host.clone(), inst.clone()));
                }
            }
        }
        // Phase 2: fill up, preferring the least loaded host.
        let mut load: HashMap<String, usize> = HashMap::new();
        for lb in &lbs {
            for (h, _) in &lb.kept {
                *load.entry(h.clone()).or_default() += 1;
            }
        }
        let mut next_instance = self.counters.get("1i").copied().unwrap_or(0);
        for lb in &mut lbs {
            while lb.kept.len() < lb.want {
                let candidate = lb
                    .eligible
                    .iter()
                    .enumerate()
                    .filter(|(_, h)| !lb.kept.iter().any(|(k, _)| k == *h))
                    .filter(|(_, h)| {
                        used.get(*h)
                            .is_none_or(|u| lb.ports.iter().all(|p| !u.contains(p)))
                    })
                    .min_by_key(|(i, h)| (load.get(*h).copied().unwrap_or(0), *i))
                    .map(|(_, h)| h.clone());
                let Some(host) = candidate else { break };
                next_instance += 1;
                used.entry(host.clone()).or_default().extend(&lb.ports);
                *load.entry(host.clone()).or_default() += 1;
                lb.kept.push((host, format!("1i{next_instance}")));
            }
        }
        self.counters.insert("1i", next_instance);

        // Write back.
        let mut host_endpoints: HashMap<String, Vec<Value>> = HashMap::new();
        for lb in lbs {
            let Some(rec) = self.records.get_mut(&lb.seq) else {
                continue;
            };
            let lb_id = rec.id().to_owned();
            let mut endpoints = Vec::new();
            for (host, inst) in &lb.kept {
                for port in &lb.ports {
                    let ep = json!({
                        "type": "publicEndpoint",
                        "ipAddress": host_ips.get(host).cloned().unwrap_or_default(),
                        "port": port,
                        "hostId": host,
                        "instanceId": inst,
                        "serviceId": lb_id,
                    });
                    host_endpoints
                        .entry(host.clone())
                        .or_default()
                        .push(ep.clone());
                    endpoints.push(ep);
                }
            }
            let placed = lb.kept.len();
            let health = if placed >= lb.want {
                "healthy"
            } else if placed == 0 {
                "unhealthy"
            } else {
                "degraded"
            };
            rec.body.insert("currentScale".into(), json!(placed));
            rec.body.insert("publicEndpoints".into(), json!(endpoints));
            rec.body.insert(
                "instanceIds".into(),
                json!(lb.kept.iter().map(|(_, i)| i.clone()).collect::<Vec<_>>()),
            );
            rec.body.insert("healthState".into(), json!(health));
            if placed < lb.want && !rec.transitioning() {
                let ports: Vec<String> = lb.ports.iter().map(|p| format!("{p}/tcp")).collect();
                rec.body.insert(
                    "transitioningMessage".into(),
                    json!(format!(
                        "Scheduling failed: {} of {} instance(s) placed; no other active host \
                         matches the host labels with ports [{}] free",
                        placed,
                        lb.want,
                        ports.join(", ")
                    )),
                );
            } else if rec.body.get("transitioning").and_then(Value::as_str) != Some("error") {
                rec.body.insert("transitioningMessage".into(), Value::Null);
            }
            rec.placements = lb.kept;
        }
        for seq in stopped {
            if let Some(rec) = self.records.get_mut(&seq) {
                rec.placements.clear();
                rec.body.insert("currentScale".into(), json!(0));
                rec.body.insert("publicEndpoints".into(), json!([]));
                rec.body.insert("instanceIds".into(), json!([]));
                let health = match rec.state() {
                    state::REGISTERING | state::INACTIVE | state::ACTIVATING => "initializing",
                    _ => "unhealthy",
                };
                rec.body.insert("healthState".into(), json!(health));
            }
        }
        let host_seqs: Vec<u64> = self.records(Kind::Host).map(|r| r.seq).collect();
        for seq in host_seqs {
            if let Some(rec) = self.records.get_mut(&seq) {
                let eps = host_endpoints.remove(rec.id()).unwrap_or_default();
                rec.body.insert("publicEndpoints".into(), Value::Array(eps));
            }
        }
    }
}

/// Drops server-owned fields from a request body; fails if it is not an object.
fn writable(input: Value) -> Outcome<Map<String, Value>> {
    let Value::Object(mut body) = input else {
        return Err(ErrorBody::new(
            422,
            "InvalidBodyContent",
            "the request body must be a JSON object",
        ));
    };
    for f in SERVER_FIELDS {
        body.remove(*f);
    }
    Ok(body)
}

fn required_field<'a>(value: Option<&'a str>, field: &str) -> Outcome<&'a str> {
    match value.map(str::trim) {
        Some(v) if !v.is_empty() => Ok(v),
        _ => Err(invalid(
            code::MISSING_REQUIRED,
            field,
            format!("{field} is required"),
        )),
    }
}

/// Names are 1-63 letters, digits and dashes, not starting or ending with a dash.
fn required_name(value: Option<&str>) -> Outcome<&str> {
    let name = required_field(value, "name")?;
    let ok = name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(name)
    } else {
        Err(invalid(
            "InvalidCharacters",
            "name",
            format!("name {name:?} must be 1-63 letters, digits or dashes"),
        ))
    }
}

fn valid_port_spec(spec: &str) -> bool {
    let (ports, proto) = match spec.split_once('/') {
        Some((p, proto)) => (p, Some(proto)),
        None => (spec, None),
    };
    if proto.is_some_and(|p| p != "tcp" && p != "udp") {
        return false;
    }
    let valid = |p: &str| p.parse::<u16>().is_ok_and(|n| n != 0);
    let numbers_ok = match ports.split_once(':') {
        Some((public, private)) => valid(public) && valid(private),
        None => valid(ports),
    };
    numbers_ok && parse_public_port(spec).is_some()
}

/// Splits `name_ne` into (`name`, `ne`); plain `name` is (`name`, `eq`). Snake-case field
/// names (`external_id`) are mapped to Rancher's camelCase.
fn split_modifier(key: &str) -> (String, &'static str) {
    const MODIFIERS: &[(&str, &str)] = &[
        ("_notnull", "notnull"),
        ("_null", "null"),
        ("_ne", "ne"),
        ("_prefix", "prefix"),
        ("_like", "like"),
        ("_notlike", "notlike"),
    ];
    for (suffix, modifier) in MODIFIERS {
        if let Some(field) = key.strip_suffix(suffix) {
            return (camel(field), modifier);
        }
    }
    (camel(key), "eq")
}

fn camel(field: &str) -> String {
    let mut out = String::with_capacity(field.len());
    let mut upper = false;
    for c in field.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn matches_filter(body: &Map<String, Value>, key: &str, want: &str) -> bool {
    let (field, modifier) = split_modifier(key);
    let value = body.get(&field).filter(|v| !v.is_null());
    let text = value.map(|v| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    });
    match modifier {
        "null" => value.is_none(),
        "notnull" => value.is_some(),
        "ne" => text.as_deref() != Some(want),
        "prefix" => text.is_some_and(|t| t.starts_with(want)),
        "like" => text.is_some_and(|t| like(&t, want)),
        "notlike" => !text.is_some_and(|t| like(&t, want)),
        _ => text.as_deref() == Some(want),
    }
}

/// SQL `LIKE` with `%` wildcards.
fn like(text: &str, pattern: &str) -> bool {
    let parts: Vec<&str> = pattern.split('%').collect();
    if parts.len() == 1 {
        return text == pattern;
    }
    let mut rest = text;
    for (i, part) in parts.iter().enumerate() {
        if part.is_empty() {
            continue;
        }
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(pos) => rest = &rest[pos + part.len()..],
                None => return false,
            }
        }
    }
    true
}

fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn random_uuid() -> String {
    let hex = |n: usize| -> String {
        (0..n)
            .map(|_| char::from_digit(fastrand::u32(0..16), 16).unwrap_or('0'))
            .collect()
    };
    format!("{}-{}-4{}-a{}-{}", hex(8), hex(4), hex(3), hex(3), hex(12))
}

/// Now as `YYYY-MM-DDTHH:MM:SSZ`.
pub(crate) fn rfc3339_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil from days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = if m <= 2 { y + 1 } else { y };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_and_modifiers() {
        let body: Map<String, Value> = serde_json::from_value(json!({
            "name": "web", "externalId": "x://web", "removed": null, "scale": 2
        }))
        .unwrap();
        assert!(matches_filter(&body, "name", "web"));
        assert!(matches_filter(&body, "external_id", "x://web"));
        assert!(matches_filter(&body, "removed_null", "1"));
        assert!(!matches_filter(&body, "removed_notnull", "1"));
        assert!(matches_filter(&body, "name_ne", "api"));
        assert!(matches_filter(&body, "scale", "2"));
        assert!(matches_filter(&body, "name_like", "%e%"));
        assert!(!matches_filter(&body, "name", "api"));
    }

    #[test]
    fn port_specs() {
        assert!(valid_port_spec("80:80"));
        assert!(valid_port_spec("443"));
        assert!(valid_port_spec("53:53/udp"));
        assert!(!valid_port_spec("80:80/sctp"));
        assert!(!valid_port_spec("http"));
        assert!(!valid_port_spec("0:80"));
    }

    #[test]
    fn timestamp_shape() {
        let t = rfc3339_now();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    }
}
