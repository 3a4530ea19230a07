//! The controller: translate on every change, realise load balancers through an
//! [`IngressBackend`], write their addresses to the Ingresses, record events.
//!
//! Work goes through a [`Queue`] of three kinds of keys:
//! - [`Key::Sync`]: translate every Ingress; report new problems as Warning
//!   events; queue the load balancers and statuses that differ;
//! - [`Key::Balancer`]: ensure (or delete) one load balancer; when its addresses
//!   change, queue the statuses of the Ingresses it serves;
//! - [`Key::Status`]: write one Ingress's `status.loadBalancer.ingress`.
//!
//! Only the leader does any of it: a standby keeps its index warm and starts
//! with a full sync when it takes over. Failures are requeued through the
//! [`Policy`]: a backend's `Retry { after }` after exactly that delay, anything
//! else with exponential backoff.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
    time::Instant,
};

use async_trait::async_trait;
use parking_lot::{Mutex, RwLock};
use rancher_runtime::{
    lease::Leadership,
    queue::Queue,
    ready::Readiness,
    requeue::{Classify, ErrorKind, Policy},
};
use tokio_util::sync::CancellationToken;

use crate::{
    backend::{self, IngressBackend},
    index::Index,
    metrics::Metrics,
    model::{Address, FieldError, IngressKey, LoadBalancer, Status},
    source::Ingress,
    translate::{self, Outcome},
};

/// The field manager status writes are made under.
pub const FIELD_MANAGER: &str = "rancher-ingress";
/// Event reason: the Ingress's status now lists these addresses.
pub const REASON_SYNCED: &str = "Synced";
/// Event reason: a field is invalid; the Ingress is not programmed.
pub const REASON_INVALID: &str = "InvalidIngress";
/// Event reason: part of the Ingress was ignored (conflict lost, Service missing).
pub const REASON_IGNORED: &str = "RuleIgnored";
/// Event reason: the backend failed to realise the load balancer.
pub const REASON_BACKEND_FAILED: &str = "LoadBalancerFailed";
/// Event reason: the load balancer runs, but degraded (fewer hosts than
/// `scale`, an instance down).
pub const REASON_DEGRADED: &str = "LoadBalancerDegraded";

/// Errors from one reconcile.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The backend failed.
    #[error(transparent)]
    Backend(#[from] backend::Error),
    /// Writing an Ingress's status failed.
    #[error("failed to write the status of Ingress {key}")]
    Status {
        /// The Ingress.
        key: IngressKey,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Result of a reconcile.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Classify for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Backend(backend::Error::Retry { after, .. }) => {
                ErrorKind::Retry { after: *after }
            }
            _ => ErrorKind::Backoff,
        }
    }
}

/// What the controller writes to the cluster: statuses and events. The
/// Kubernetes implementation is [`KubeEffects`]; tests record calls.
#[async_trait]
pub trait Effects: Send + Sync + 'static {
    /// Replaces `status.loadBalancer.ingress` of `ingress` with `addresses`
    /// (an empty list clears it).
    async fn write_status(&self, ingress: &Ingress, addresses: &[Address]) -> Result<()>;

    /// Records an event about `ingress`; best effort.
    async fn event(&self, ingress: &Ingress, warning: bool, reason: &str, note: &str);
}

/// A work item.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Key {
    /// Translate everything.
    Sync,
    /// Ensure or delete one load balancer.
    Balancer(String),
    /// Write one Ingress's status.
    Status(IngressKey),
}

/// Controller settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Translation settings (class rules, annotation options).
    pub translate: translate::Config,
    /// Concurrent workers.
    pub workers: usize,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            translate: translate::Config::default(),
            workers: 8,
        }
    }
}

#[derive(Default)]
struct State {
    /// The last translation's load balancers and outcomes.
    desired: BTreeMap<String, LoadBalancer>,
    outcomes: BTreeMap<IngressKey, Outcome>,
    /// What the backend last accepted, and the addresses it reported.
    applied: BTreeMap<String, LoadBalancer>,
    addresses: BTreeMap<String, Status>,
    /// Problems already reported per Ingress, so events are not repeated.
    reported: HashMap<IngressKey, Vec<FieldError>>,
    /// The last backend error reported per load balancer.
    backend_errors: HashMap<String, String>,
    /// Leftover load balancers were collected after the first sync.
    collected: bool,
    /// Every address a load balancer of ours has reported: a status made only
    /// of these was written by us.
    known: BTreeSet<Address>,
}

struct Shared {
    index: Arc<RwLock<Index>>,
    backend: Arc<dyn IngressBackend>,
    effects: Arc<dyn Effects>,
    config: Config,
    metrics: Metrics,
    leadership: Leadership,
    queue: Queue<Key>,
    state: Mutex<State>,
}

/// The Ingress controller.
#[derive(Clone)]
pub struct Controller {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller").finish_non_exhaustive()
    }
}

impl Controller {
    /// A controller reading `index`, realising through `backend` and writing
    /// through `effects` while `leadership` says it leads.
    pub fn new(
        index: Arc<RwLock<Index>>,
        backend: Arc<dyn IngressBackend>,
        effects: Arc<dyn Effects>,
        config: Config,
        leadership: Leadership,
        metrics: Metrics,
    ) -> Self {
        Self {
            shared: Arc::new(Shared {
                index,
                backend,
                effects,
                config,
                metrics,
                leadership,
                queue: Queue::new(),
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Runs until `shutdown` is cancelled. Waits for `readiness` (every watch
    /// listed) before the first translation, so nothing is judged on a partial
    /// view.
    pub async fn run(self, readiness: Readiness, shutdown: CancellationToken) {
        tokio::select! {
            () = readiness.wait() => {}
            () = shutdown.cancelled() => return,
        }
        let shared = &self.shared;
        let mut tasks = tokio::task::JoinSet::new();

        // Index changes → keys.
        let notify = shared.index.read().notifier();
        {
            let shared = shared.clone();
            tasks.spawn(async move {
                loop {
                    let changes = shared.index.write().take_changes();
                    if changes.spec {
                        shared.queue.add(Key::Sync);
                    }
                    for key in changes.status {
                        shared.queue.add(Key::Status(key));
                    }
                    notify.notified().await;
                }
            });
        }
        // Addresses that the backend changed by itself.
        if let Some(mut changes) = shared.backend.changes() {
            let shared = shared.clone();
            tasks.spawn(async move {
                loop {
                    match changes.recv().await {
                        Ok(name) => shared.queue.add(Key::Balancer(name)),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                            shared.queue.add(Key::Sync);
                            let names: Vec<String> =
                                shared.state.lock().desired.keys().cloned().collect();
                            for name in names {
                                shared.queue.add(Key::Balancer(name));
                            }
                        }
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                    }
                }
            });
        }
        // Taking over leadership: redo everything.
        {
            let shared = shared.clone();
            let mut leadership = shared.leadership.clone();
            tasks.spawn(async move {
                while let Some(leader) = leadership.changed().await {
                    if leader {
                        shared.state.lock().reported.clear();
                        shared.queue.add(Key::Sync);
                    }
                }
            });
        }

        shared.queue.add(Key::Sync);
        let policy = Arc::new(Policy::default());
        let workers = shared.config.workers.max(1);
        let controller = self.clone();
        shared
            .queue
            .run(workers, policy, shutdown, move |key| {
                let controller = controller.clone();
                async move { controller.reconcile(key).await }
            })
            .await;
        tasks.abort_all();
    }

    /// Reconciles one key.
    pub async fn reconcile(&self, key: Key) -> Result<()> {
        if !self.shared.leadership.is_leader() {
            return Ok(());
        }
        match key {
            Key::Sync => {
                self.sync().await;
                Ok(())
            }
            Key::Balancer(name) => self.balancer(&name).await,
            Key::Status(key) => self.status(&key).await,
        }
    }

    async fn sync(&self) {
        let shared = &self.shared;
        let started = Instant::now();
        let translation = {
            let index = shared.index.read();
            translate::translate(index.sources(), &shared.config.translate)
        };
        shared.metrics.syncs.inc();
        shared
            .metrics
            .sync_duration
            .observe(started.elapsed().as_secs_f64());
        shared
            .metrics
            .load_balancers
            .set(i64::try_from(translation.balancers.len()).unwrap_or(i64::MAX));
        shared.metrics.routes.set(
            translation
                .balancers
                .values()
                .map(|lb| i64::try_from(lb.routes.len()).unwrap_or(i64::MAX))
                .sum(),
        );
        let mut counts = [0i64; 3];
        for outcome in translation.outcomes.values() {
            counts[match outcome {
                Outcome::Programmed { .. } => 0,
                Outcome::Rejected(_) => 1,
                Outcome::NotOurs => 2,
            }] += 1;
        }
        for (state, count) in ["programmed", "rejected", "ignored"]
            .into_iter()
            .zip(counts)
        {
            shared
                .metrics
                .ingresses
                .get_or_create(&vec![("state", state)])
                .set(count);
        }

        // Problems not reported yet.
        let mut events: Vec<(IngressKey, bool, Vec<FieldError>)> = Vec::new();
        let first = {
            let mut state = shared.state.lock();
            state
                .reported
                .retain(|key, _| translation.outcomes.contains_key(key));
            for (key, outcome) in &translation.outcomes {
                let (rejected, problems) = match outcome {
                    Outcome::Rejected(errors) => (true, errors.clone()),
                    Outcome::Programmed { notes, .. } => (false, notes.clone()),
                    Outcome::NotOurs => (false, Vec::new()),
                };
                let before = state.reported.get(key).cloned().unwrap_or_default();
                if problems != before {
                    let new: Vec<FieldError> = problems
                        .iter()
                        .filter(|p| !before.contains(p))
                        .cloned()
                        .collect();
                    if !new.is_empty() {
                        events.push((key.clone(), rejected, new));
                    }
                    state.reported.insert(key.clone(), problems);
                }
            }
            let mut changed: BTreeSet<String> = BTreeSet::new();
            for (name, lb) in &translation.balancers {
                if state.applied.get(name) != Some(lb) {
                    changed.insert(name.clone());
                }
            }
            for name in state.applied.keys() {
                if !translation.balancers.contains_key(name) {
                    changed.insert(name.clone());
                }
            }
            state.desired = translation.balancers;
            state.outcomes = translation.outcomes;
            for name in changed {
                shared.queue.add(Key::Balancer(name));
            }
            !std::mem::replace(&mut state.collected, true)
        };

        // After a restart, delete the load balancers nobody wants any more.
        if first {
            match shared.backend.list().await {
                Ok(names) => {
                    let state = shared.state.lock();
                    for name in names {
                        if !state.desired.contains_key(&name) {
                            shared.queue.add(Key::Balancer(name));
                        }
                    }
                }
                Err(error) => {
                    shared.state.lock().collected = false;
                    tracing::warn!(
                        error = &error as &dyn std::error::Error,
                        "listing load balancers failed"
                    );
                }
            }
        }

        // Statuses that differ from what they should be.
        let stale: Vec<IngressKey> = {
            let index = shared.index.read();
            let state = shared.state.lock();
            index
                .sources()
                .ingresses()
                .filter(|ingress| {
                    desired_status(&state, ingress).is_some_and(|want| want != ingress.status)
                })
                .map(|ingress| ingress.key.clone())
                .collect()
        };
        for key in stale {
            shared.queue.add(Key::Status(key));
        }

        for (key, rejected, problems) in events {
            let Some(ingress) = shared.index.read().sources().ingress(&key).cloned() else {
                continue;
            };
            for problem in problems {
                let reason = if rejected {
                    REASON_INVALID
                } else {
                    REASON_IGNORED
                };
                tracing::info!(ingress = %key, field = %problem.field, "{}", problem.message);
                shared
                    .effects
                    .event(&ingress, true, reason, &problem.to_string())
                    .await;
            }
        }
    }

    async fn balancer(&self, name: &str) -> Result<()> {
        let shared = &self.shared;
        let desired = shared.state.lock().desired.get(name).cloned();
        match desired {
            Some(lb) => match shared.backend.ensure(&lb).await {
                Ok(status) => {
                    shared.metrics.backend_applies.inc();
                    let new_problems: Vec<String> = {
                        let state = shared.state.lock();
                        let before = state.addresses.get(name).map(|s| &s.problems);
                        status
                            .problems
                            .iter()
                            .filter(|p| !before.is_some_and(|b| b.contains(p)))
                            .cloned()
                            .collect()
                    };
                    if !new_problems.is_empty() {
                        let owners: Vec<Ingress> = {
                            let index = shared.index.read();
                            lb.owners
                                .iter()
                                .filter_map(|k| index.sources().ingress(k).cloned())
                                .collect()
                        };
                        for owner in &owners {
                            for problem in &new_problems {
                                shared
                                    .effects
                                    .event(owner, true, REASON_DEGRADED, problem)
                                    .await;
                            }
                        }
                    }
                    let owners: Vec<IngressKey> = {
                        let mut state = shared.state.lock();
                        state.backend_errors.remove(name);
                        let changed = state
                            .addresses
                            .get(name)
                            .is_none_or(|s| s.addresses != status.addresses);
                        state.known.extend(status.addresses.iter().cloned());
                        state.addresses.insert(name.to_owned(), status);
                        let before = state.applied.insert(name.to_owned(), lb.clone());
                        // Owners whose status may be stale: all of them when the
                        // addresses changed, else those new since the last apply.
                        // Ingresses that joined after this ensure started are
                        // in the current desired state, not in `lb`.
                        let current = state.desired.get(name).map(|d| &d.owners);
                        lb.owners
                            .iter()
                            .chain(current.into_iter().flatten())
                            .filter(|owner| {
                                changed
                                    || !before.as_ref().is_some_and(|b| b.owners.contains(owner))
                            })
                            .cloned()
                            .collect::<BTreeSet<_>>()
                            .into_iter()
                            .collect()
                    };
                    for owner in owners {
                        shared.queue.add(Key::Status(owner));
                    }
                    Ok(())
                }
                Err(error) => {
                    if !matches!(error, backend::Error::Retry { .. }) {
                        shared
                            .metrics
                            .errors
                            .get_or_create(&vec![("stage", "backend")])
                            .inc();
                        let message = rancher_runtime::events::error_chain(&error);
                        let new = shared
                            .state
                            .lock()
                            .backend_errors
                            .insert(name.to_owned(), message.clone())
                            != Some(message.clone());
                        if new {
                            let owners: Vec<Ingress> = {
                                let index = shared.index.read();
                                lb.owners
                                    .iter()
                                    .filter_map(|k| index.sources().ingress(k).cloned())
                                    .collect()
                            };
                            for owner in owners {
                                shared
                                    .effects
                                    .event(&owner, true, REASON_BACKEND_FAILED, &message)
                                    .await;
                            }
                        }
                    }
                    Err(error.into())
                }
            },
            None => {
                shared.backend.ensure_deleted(name).await.inspect_err(|_| {
                    shared
                        .metrics
                        .errors
                        .get_or_create(&vec![("stage", "backend")])
                        .inc();
                })?;
                shared.metrics.backend_applies.inc();
                let short: Vec<String> = {
                    let mut state = shared.state.lock();
                    // Only forget it if it is still unwanted.
                    if !state.desired.contains_key(name) {
                        state.applied.remove(name);
                        state.addresses.remove(name);
                    }
                    // Hosts (and their ports) were freed: load balancers short of
                    // instances may fit now, as when a scale change moves an
                    // Ingress to a new load balancer on a Rancher host port.
                    state
                        .desired
                        .iter()
                        .filter(|(other, lb)| {
                            let have = state
                                .addresses
                                .get(*other)
                                .map_or(0, |status| status.addresses.len());
                            u32::try_from(have).unwrap_or(u32::MAX) < lb.scale
                        })
                        .map(|(other, _)| other.clone())
                        .collect()
                };
                for other in short {
                    shared.queue.add(Key::Balancer(other));
                }
                Ok(())
            }
        }
    }

    async fn status(&self, key: &IngressKey) -> Result<()> {
        let shared = &self.shared;
        let Some(ingress) = shared.index.read().sources().ingress(key).cloned() else {
            return Ok(());
        };
        let want = {
            let state = shared.state.lock();
            desired_status(&state, &ingress)
        };
        let Some(want) = want else {
            return Ok(());
        };
        if want == ingress.status {
            return Ok(());
        }
        shared
            .effects
            .write_status(&ingress, &want)
            .await
            .inspect_err(|_| {
                shared
                    .metrics
                    .errors
                    .get_or_create(&vec![("stage", "status")])
                    .inc();
            })?;
        shared.metrics.status_writes.inc();
        let note = if want.is_empty() {
            "status cleared".to_owned()
        } else {
            let list: Vec<String> = want.iter().map(ToString::to_string).collect();
            format!("serving on {}", list.join(", "))
        };
        shared
            .effects
            .event(&ingress, false, REASON_SYNCED, &note)
            .await;
        Ok(())
    }
}

/// The status `ingress` should have, or `None` when it is not known yet (its
/// load balancer has not been realised) or not ours to touch.
fn desired_status(state: &State, ingress: &Ingress) -> Option<Vec<Address>> {
    match state.outcomes.get(&ingress.key)? {
        Outcome::Programmed { balancer, .. } => state
            .addresses
            .get(balancer)
            .map(|status| status.addresses.clone()),
        Outcome::Rejected(_) => Some(Vec::new()),
        Outcome::NotOurs => {
            // Clear only what we wrote: every address is one of ours.
            let ours = !ingress.status.is_empty()
                && ingress
                    .status
                    .iter()
                    .all(|address| state.known.contains(address));
            ours.then(Vec::new)
        }
    }
}

/// Writes statuses with the status subresource and events with
/// `rancher_runtime::events::Recorder`.
#[derive(Clone)]
pub struct KubeEffects {
    client: kube::Client,
    recorder: rancher_runtime::events::Recorder,
}

impl std::fmt::Debug for KubeEffects {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeEffects").finish_non_exhaustive()
    }
}

impl KubeEffects {
    /// Effects through `client`, events reported as `controller`.
    pub fn new(client: kube::Client, controller: &str) -> Self {
        Self {
            recorder: rancher_runtime::events::Recorder::new(client.clone(), controller),
            client,
        }
    }
}

fn object(ingress: &Ingress) -> k8s_openapi::api::networking::v1::Ingress {
    k8s_openapi::api::networking::v1::Ingress {
        metadata: kube::api::ObjectMeta {
            name: Some(ingress.key.name.clone()),
            namespace: Some(ingress.key.namespace.clone()),
            uid: Some(ingress.uid.clone()).filter(|u| !u.is_empty()),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// The `status` body for these addresses.
pub fn status_body(addresses: &[Address]) -> serde_json::Value {
    let entries: Vec<serde_json::Value> = addresses
        .iter()
        .map(|address| match address {
            Address::Ip(ip) => serde_json::json!({ "ip": ip.to_string() }),
            Address::Hostname(name) => serde_json::json!({ "hostname": name }),
        })
        .collect();
    if entries.is_empty() {
        serde_json::json!({ "loadBalancer": { "ingress": null } })
    } else {
        serde_json::json!({ "loadBalancer": { "ingress": entries } })
    }
}

#[async_trait]
impl Effects for KubeEffects {
    async fn write_status(&self, ingress: &Ingress, addresses: &[Address]) -> Result<()> {
        let api: kube::Api<k8s_openapi::api::networking::v1::Ingress> =
            kube::Api::namespaced(self.client.clone(), &ingress.key.namespace);
        rancher_runtime::status::patch_status(
            &api,
            &ingress.key.name,
            FIELD_MANAGER,
            status_body(addresses),
        )
        .await
        .map(drop)
        .map_err(|source| Error::Status {
            key: ingress.key.clone(),
            source: Box::new(source),
        })
    }

    async fn event(&self, ingress: &Ingress, warning: bool, reason: &str, note: &str) {
        let object = object(ingress);
        if warning {
            self.recorder.warning(&object, reason, "Sync", note).await;
        } else {
            self.recorder.normal(&object, reason, "Sync", note).await;
        }
    }
}

#[cfg(test)]
mod tests;
