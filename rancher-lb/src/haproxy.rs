//! The HAProxy driver: real HAProxy processes, one per host address.
//!
//! [`HaproxyDriver`] places load balancers on the hosts of its
//! [`HaproxyConfig`] and runs one HAProxy master-worker process per host that
//! has instances; each process binds only its host's address and serves every
//! load balancer placed there. HTTP listeners on the same port share one
//! frontend; routing goes through map files (see [`render`]).
//!
//! Changes are applied in the cheapest safe way:
//!
//! - endpoint-only changes go through the runtime API into server slots set
//!   up in advance (`set server <b>/<s> addr <ip> port <p>`, `set server ...
//!   state ready|maint`), without a reload;
//! - route changes that keep the configuration's structure (a path or host
//!   added, moved or removed between backends that are already routed to)
//!   change map entries through the runtime API (`add map`, `set map`,
//!   `del map`), without a reload; the map files are rewritten too, so a
//!   later reload or restart reads the same routes;
//! - a rotated certificate (same name and SNI names, new contents) is
//!   replaced with `set ssl cert` and `commit ssl cert`, without a reload
//!   (the private key travels only over the 0600 admin socket and is never
//!   logged);
//! - anything else is written into a new generation directory, checked with
//!   `haproxy -c`, made current (an atomic symlink swap) and reloaded through
//!   the master CLI, so established connections finish on the old worker.
//!
//! Concurrent [`Driver::ensure`] calls are applied together: the caller that
//! gets the driver's lock applies every call waiting for it, so load
//! balancers created at once share one check and one reload per host.
//!
//! A master that exits unexpectedly is restarted with exponential backoff; the
//! affected load balancers' statuses say so while it is down and are
//! published on [`Driver::subscribe`]. Certificates and keys are written with
//! mode 0600 under directories of mode 0700. Snippets are refused unless
//! [`HaproxyConfig::snippets`] is set.

mod apply;
mod limits;
pub mod metrics;
pub mod process;
pub mod render;
pub mod runtime;

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Weak};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{Mutex, broadcast, mpsc, oneshot};

use crate::driver::{
    self, Condition, ConditionKind, Driver, InstanceState, STATUS_CHANNEL_CAPACITY, Status,
    StatusUpdate, placed_status,
};
use crate::model::{Endpoint, LbId, LoadBalancer, Name};
use crate::placement::{Assignment, Host, Outcome};
use metrics::HaproxyMetrics;
use process::Instance;
use render::{Server, Settings, Slots};

/// The default number of server slots per backend.
pub const DEFAULT_SERVER_SLOTS: usize = 8;

/// The default [`HaproxyConfig::coalesce`]: calls this close together are
/// applied as one batch.
pub const DEFAULT_COALESCE: Duration = Duration::from_millis(10);

/// The default [`HaproxyConfig::coalesce_max`].
pub const DEFAULT_COALESCE_MAX: Duration = Duration::from_millis(100);

/// How long a runtime API command may take.
const RUNTIME_TIMEOUT: Duration = Duration::from_secs(2);

/// Errors from the HAProxy driver's setup.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configured path cannot be used.
    #[error("{field}: {reason}")]
    Config {
        /// The configuration field.
        field: &'static str,
        /// Why.
        reason: String,
    },
    /// A file operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let context = context.into();
    move |source| Error::Io { context, source }
}

/// Configuration of a [`HaproxyDriver`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct HaproxyConfig {
    /// The `haproxy` binary.
    pub binary: PathBuf,
    /// Where configurations, maps, certificates and sockets live; created
    /// with mode 0700. One subdirectory per host.
    pub work_dir: PathBuf,
    /// The hosts instances may run on.
    pub hosts: Vec<Host>,
    /// Whether load balancers may carry raw snippets.
    pub snippets: bool,
    /// The smallest number of server slots per backend.
    pub server_slots: usize,
    /// `maxconn` per process; lowered by [`HaproxyDriver::new`] to what the
    /// hard limit on open files allows (HAProxy needs two per connection and
    /// refuses to start when the limit is short), with a warning.
    pub maxconn: u32,
    /// Old workers are stopped this long after a reload at the latest.
    pub hard_stop_after: Duration,
    /// First restart delay after a crash; doubles up to `restart_backoff_max`.
    pub restart_backoff_min: Duration,
    /// Largest restart delay.
    pub restart_backoff_max: Duration,
    /// Calls to [`Driver::ensure`] arriving within this long of each other
    /// are applied together: one placement, one `haproxy -c` and at most one
    /// reload per host for all of them. Zero applies each batch as soon as
    /// the driver is free.
    pub coalesce: Duration,
    /// The longest a call waits for others to arrive with it, however many
    /// keep arriving: the bound on the delay coalescing adds.
    pub coalesce_max: Duration,
}

impl HaproxyConfig {
    /// Defaults: `haproxy` from `PATH` (or `/usr/sbin/haproxy`), snippets off,
    /// 8 slots per backend.
    pub fn new(work_dir: impl Into<PathBuf>, hosts: Vec<Host>) -> Self {
        Self {
            binary: find_binary(),
            work_dir: work_dir.into(),
            hosts,
            snippets: false,
            server_slots: DEFAULT_SERVER_SLOTS,
            maxconn: 4096,
            hard_stop_after: Duration::from_secs(30),
            restart_backoff_min: Duration::from_millis(100),
            restart_backoff_max: Duration::from_secs(10),
            coalesce: DEFAULT_COALESCE,
            coalesce_max: DEFAULT_COALESCE_MAX,
        }
    }

    /// Sets how far apart calls to [`Driver::ensure`] may arrive and still
    /// be applied together ([`HaproxyConfig::coalesce`]), and the longest a
    /// call waits for others ([`HaproxyConfig::coalesce_max`]).
    #[must_use]
    pub fn with_coalesce(mut self, window: Duration, max: Duration) -> Self {
        self.coalesce = window;
        self.coalesce_max = max.max(window);
        self
    }

    /// Enables raw snippets.
    #[must_use]
    pub fn with_snippets(mut self, enabled: bool) -> Self {
        self.snippets = enabled;
        self
    }

    /// Uses this `haproxy` binary.
    #[must_use]
    pub fn with_binary(mut self, binary: impl Into<PathBuf>) -> Self {
        self.binary = binary.into();
        self
    }

    /// Sets the smallest number of server slots per backend.
    #[must_use]
    pub fn with_server_slots(mut self, slots: usize) -> Self {
        self.server_slots = slots.max(1);
        self
    }
}

fn find_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("haproxy");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    PathBuf::from("/usr/sbin/haproxy")
}

/// Facts about one running HAProxy, for tests and diagnostics.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct InstanceInfo {
    /// The master's pid.
    pub master_pid: u32,
    /// Current workers' pids.
    pub worker_pids: Vec<u32>,
    /// Old workers still finishing connections.
    pub old_worker_pids: Vec<u32>,
    /// Reloads since the master started.
    pub reloads: u32,
    /// Restarts after crashes since the driver started.
    pub restarts: u32,
}

struct HostState {
    instance: Instance,
    /// The running configuration with server addresses as placeholders.
    template: String,
    /// The running generation's map files, crt-lists and certificates.
    files: Vec<render::File>,
    servers: Vec<Server>,
    generation: PathBuf,
    conflicts: Vec<render::Conflict>,
}

#[derive(Default)]
struct State {
    hosts: Vec<Host>,
    lbs: BTreeMap<LbId, LoadBalancer>,
    assignment: Assignment,
    outcomes: BTreeMap<LbId, Outcome>,
    slots: BTreeMap<(LbId, Name), Slots>,
    host_states: BTreeMap<IpAddr, HostState>,
    statuses: BTreeMap<LbId, Status>,
    next_generation: u64,
    reloads: u64,
    runtime_updates: u64,
}

/// An `ensure` waiting for the state lock.
struct Waiting {
    lb: LoadBalancer,
    tx: oneshot::Sender<driver::Result<Status>>,
    arrived: tokio::time::Instant,
}

struct Inner {
    config: HaproxyConfig,
    state: Mutex<State>,
    /// Ensures waiting for the state lock: whoever gets it applies them all
    /// at once (one check and reload per host for the lot).
    waiting: std::sync::Mutex<Vec<Waiting>>,
    metrics: HaproxyMetrics,
    tx: broadcast::Sender<StatusUpdate>,
    changed: mpsc::UnboundedSender<IpAddr>,
}

/// The HAProxy [`Driver`]. See the [module docs](self).
pub struct HaproxyDriver {
    inner: Arc<Inner>,
}

/// Counters, for tests and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Counters {
    /// Reloads done by the driver.
    pub reloads: u64,
    /// Endpoint changes applied through the runtime API.
    pub runtime_updates: u64,
}

fn check_path(field: &'static str, p: &Path) -> Result<()> {
    let s = p.to_str().ok_or_else(|| Error::Config {
        field,
        reason: "not UTF-8".into(),
    })?;
    if !p.is_absolute() {
        return Err(Error::Config {
            field,
            reason: format!("{s:?} is not absolute"),
        });
    }
    if !s
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'/' | b'.' | b'_' | b'-' | b'+'))
    {
        return Err(Error::Config {
            field,
            reason: format!("{s:?} may only contain A-Z, a-z, 0-9 and /._-+"),
        });
    }
    Ok(())
}

fn mkdir_private(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .map_err(io(format!("setting the mode of {}", dir.display())))
}

fn write_file(path: &Path, contents: &str, mode: u32) -> Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::OpenOptionsExt as _;
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .map_err(io(format!("writing {}", tmp.display())))?;
    f.write_all(contents.as_bytes())
        .map_err(io(format!("writing {}", tmp.display())))?;
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode))
        .map_err(io(format!("setting the mode of {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(io(format!("renaming to {}", path.display())))
}

/// Puts `endpoints` into slots, keeping endpoints where they are.
fn assign_slots(old: Option<&Slots>, endpoints: &[Endpoint], min: usize) -> Slots {
    let mut slots = old.cloned().unwrap_or_default();
    for s in &mut slots {
        if s.is_some_and(|ep| !endpoints.contains(&ep)) {
            *s = None;
        }
    }
    let before = slots.len();
    for ep in endpoints {
        if slots.contains(&Some(*ep)) {
            continue;
        }
        match slots.iter_mut().find(|s| s.is_none()) {
            Some(free) => *free = Some(*ep),
            None => slots.push(Some(*ep)),
        }
    }
    let want = if slots.len() > before {
        slots.len().next_power_of_two().max(min)
    } else {
        slots.len().max(min)
    };
    slots.resize(want, None);
    slots
}

impl HaproxyDriver {
    /// Creates the work directory and the driver. Processes start when load
    /// balancers are placed on their hosts. Must run inside a Tokio runtime.
    ///
    /// # Errors
    ///
    /// [`Error::Config`] for unusable paths, [`Error::Io`] if the work
    /// directory cannot be created.
    pub async fn new(config: HaproxyConfig) -> Result<Self> {
        check_path("work_dir", &config.work_dir)?;
        if !config.binary.is_file() {
            return Err(Error::Config {
                field: "binary",
                reason: format!("{} does not exist", config.binary.display()),
            });
        }
        mkdir_private(&config.work_dir)?;
        let mut config = config;
        let hard_limit = limits::open_files_hard_limit();
        let maxconn = limits::fitting_maxconn(config.maxconn, hard_limit);
        if maxconn < config.maxconn {
            tracing::warn!(
                configured = config.maxconn,
                maxconn,
                open_files_limit = hard_limit,
                "HAProxy's maxconn lowered to fit the open-files limit"
            );
            config.maxconn = maxconn;
        }
        let (changed, mut changed_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            state: Mutex::new(State {
                hosts: config.hosts.clone(),
                ..State::default()
            }),
            config,
            waiting: std::sync::Mutex::new(Vec::new()),
            metrics: HaproxyMetrics::default(),
            tx: broadcast::channel(STATUS_CHANNEL_CAPACITY).0,
            changed,
        });
        let weak: Weak<Inner> = Arc::downgrade(&inner);
        tokio::spawn(async move {
            while changed_rx.recv().await.is_some() {
                while changed_rx.try_recv().is_ok() {}
                let Some(inner) = weak.upgrade() else { break };
                let mut state = inner.state.lock().await;
                inner.publish(&mut state);
            }
        });
        Ok(Self { inner })
    }

    /// Stops every HAProxy process and waits until they are gone. The driver
    /// forgets all load balancers.
    pub async fn shutdown(&self) {
        let mut state = self.inner.state.lock().await;
        let hosts = std::mem::take(&mut state.host_states);
        for (_, h) in hosts {
            h.instance.stop().await;
        }
        state.lbs.clear();
        state.assignment.clear();
        state.outcomes.clear();
        state.statuses.clear();
    }

    /// The running process on `host`, if any.
    pub async fn instance_info(&self, host: IpAddr) -> Option<InstanceInfo> {
        let state = self.inner.state.lock().await;
        let h = state.host_states.get(&host)?;
        let snap = h.instance.snapshot();
        let procs = h.instance.procs().await.ok()?;
        Some(InstanceInfo {
            master_pid: procs.master,
            worker_pids: procs.workers,
            old_worker_pids: procs.old_workers,
            reloads: procs.reloads,
            restarts: snap.restarts,
        })
    }

    /// Reload and runtime-update counters.
    pub async fn counters(&self) -> Counters {
        let state = self.inner.state.lock().await;
        Counters {
            reloads: state.reloads,
            runtime_updates: state.runtime_updates,
        }
    }

    /// Ensures several load balancers in one go: one placement, one check
    /// and at most one reload per host, as on a controller's first sync.
    /// Returns their statuses in order. If the result does not check, none
    /// of them is applied.
    ///
    /// # Errors
    ///
    /// As [`Driver::ensure`]; a rejection names the first load balancer.
    pub async fn ensure_all(&self, lbs: &[LoadBalancer]) -> driver::Result<Vec<Status>> {
        let mut state = self.inner.state.lock().await;
        self.inner.ensure_locked(&mut state, lbs).await
    }

    /// The host directory of `host` (configuration, sockets, log).
    pub fn host_dir(&self, host: IpAddr) -> PathBuf {
        self.inner.config.work_dir.join(host.to_string())
    }

    /// Registers the driver's metrics (reloads, runtime updates, rejected
    /// configurations, load balancers, running instances) in `registry`,
    /// conventionally a `haproxy` sub-registry of the controller's.
    pub fn register_metrics(&self, registry: &mut prometheus_client::registry::Registry) {
        self.inner.metrics.register(registry);
    }
}

impl Inner {
    /// [`HaproxyDriver::ensure_all`] with the state lock held.
    async fn ensure_locked(
        &self,
        state: &mut State,
        lbs: &[LoadBalancer],
    ) -> driver::Result<Vec<Status>> {
        for lb in lbs {
            if lb.snippet().is_some() && !self.config.snippets {
                return Err(driver::Error::Rejected {
                    lb: lb.id().clone(),
                    reason: "snippets are disabled in this driver".into(),
                });
            }
        }
        let Some(first) = lbs.first() else {
            return Ok(Vec::new());
        };
        if let Some(statuses) = self.endpoints_only(state, lbs).await {
            return Ok(statuses);
        }
        let previous_lbs = state.lbs.clone();
        let previous_slots = state.slots.clone();
        for lb in lbs {
            state.lbs.insert(lb.id().clone(), lb.clone());
            for b in lb.backends() {
                let key = (lb.id().clone(), b.name.clone());
                let slots = assign_slots(
                    state.slots.get(&key),
                    &b.endpoints,
                    self.config.server_slots,
                );
                state.slots.insert(key, slots);
            }
            let keep: BTreeSet<Name> = lb.backends().iter().map(|b| b.name.clone()).collect();
            state
                .slots
                .retain(|(id, name), _| id != lb.id() || keep.contains(name));
        }
        let result = self.apply(state, first.id()).await;
        if let Err(driver::Error::Rejected { .. }) = &result {
            state.lbs = previous_lbs;
            state.slots = previous_slots;
        }
        self.publish(state);
        result?;
        Ok(lbs
            .iter()
            .map(|lb| state.statuses.get(lb.id()).cloned().unwrap_or_default())
            .collect())
    }

    /// Applies every waiting `ensure` as one batch (calls whose caller went
    /// away are dropped). A batch that does not check is halved until the
    /// culprits are alone, so only they fail and a few bad ones among many
    /// cost a few checks, not one per call.
    ///
    /// Changes that arrive together share one check and reload: the batch
    /// starts once no call has arrived for [`HaproxyConfig::coalesce`], or
    /// [`HaproxyConfig::coalesce_max`] after its oldest call arrived. Calls
    /// arriving while a batch is applied wait for the next one, which takes
    /// them all.
    async fn drain_waiting(&self, state: &mut State) {
        let gathering = tokio::time::Instant::now();
        self.gather().await;
        let started = tokio::time::Instant::now();
        let reloads_before = state.reloads;
        let mut batch = std::mem::take(
            &mut *self
                .waiting
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        batch.retain(|w| !w.tx.is_closed());
        let calls = batch.len();
        let mut groups = vec![batch];
        while let Some(mut group) = groups.pop() {
            if group.is_empty() {
                continue;
            }
            let lbs: Vec<LoadBalancer> = group.iter().map(|w| w.lb.clone()).collect();
            match self.ensure_locked(state, &lbs).await {
                Ok(statuses) => {
                    for (w, status) in group.into_iter().zip(statuses) {
                        let _ = w.tx.send(Ok(status));
                    }
                }
                Err(driver::Error::Rejected { .. }) if group.len() > 1 => {
                    // The first half is applied first, keeping call order.
                    let second = group.split_off(group.len() / 2);
                    groups.push(second);
                    groups.push(group);
                }
                Err(e) => {
                    for w in group {
                        let _ = w.tx.send(Err(shared_error(&e)));
                    }
                }
            }
        }
        tracing::debug!(
            calls,
            gathered = ?(started - gathering),
            took = ?started.elapsed(),
            reloads = state.reloads - reloads_before,
            "applied a batch of ensures"
        );
    }

    /// Waits until no call has arrived for [`HaproxyConfig::coalesce`], or
    /// [`HaproxyConfig::coalesce_max`] after the oldest waiting call arrived.
    async fn gather(&self) {
        let (window, max) = (self.config.coalesce, self.config.coalesce_max);
        if window.is_zero() {
            return;
        }
        loop {
            let until = {
                let waiting = self
                    .waiting
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let arrivals = waiting.iter().map(|w| w.arrived);
                let (Some(oldest), Some(newest)) = (arrivals.clone().min(), arrivals.max()) else {
                    return;
                };
                (newest + window).min(oldest + max)
            };
            if tokio::time::Instant::now() >= until {
                return;
            }
            tokio::time::sleep_until(until).await;
        }
    }

    fn settings(&self) -> Settings {
        Settings {
            maxconn: self.config.maxconn,
            hard_stop_after_secs: self.config.hard_stop_after.as_secs().max(1),
            snippets: self.config.snippets,
        }
    }

    fn host_dir(&self, host: IpAddr) -> PathBuf {
        self.config.work_dir.join(host.to_string())
    }

    fn status_of(&self, state: &State, lb: &LoadBalancer) -> Status {
        let outcome = state.outcomes.get(lb.id()).cloned().unwrap_or_default();
        let mut status = placed_status(lb, &outcome, |h| match state.host_states.get(&h) {
            Some(hs) => hs.instance.snapshot().state,
            None => InstanceState::Down {
                reason: "not started".into(),
            },
        });
        let mut seen = BTreeSet::new();
        for host in &outcome.hosts {
            if let Some(hs) = state.host_states.get(host) {
                for c in hs.conflicts.iter().filter(|c| &c.lb == lb.id()) {
                    if seen.insert(c.message.clone()) {
                        status.conditions.push(Condition {
                            kind: ConditionKind::RouteConflict,
                            message: c.message.clone(),
                        });
                    }
                }
            }
        }
        status
    }

    /// Recomputes every status and publishes the ones that changed.
    fn publish(&self, state: &mut State) {
        let mut statuses = BTreeMap::new();
        for lb in state.lbs.values() {
            statuses.insert(lb.id().clone(), self.status_of(state, lb));
        }
        for (id, status) in &statuses {
            if state.statuses.get(id) != Some(status) {
                let _ = self.tx.send(StatusUpdate {
                    id: id.clone(),
                    status: Some(status.clone()),
                });
            }
        }
        for id in state.statuses.keys() {
            if !statuses.contains_key(id) {
                let _ = self.tx.send(StatusUpdate {
                    id: id.clone(),
                    status: None,
                });
            }
        }
        state.statuses = statuses;
        let running = state
            .host_states
            .values()
            .filter(|h| h.instance.is_running())
            .count();
        self.metrics
            .load_balancers
            .set(i64::try_from(state.lbs.len()).unwrap_or(i64::MAX));
        self.metrics
            .instances_running
            .set(i64::try_from(running).unwrap_or(i64::MAX));
    }
}

/// The same error for another caller of one batch.
fn shared_error(e: &driver::Error) -> driver::Error {
    match e {
        driver::Error::Rejected { lb, reason } => driver::Error::Rejected {
            lb: lb.clone(),
            reason: reason.clone(),
        },
        driver::Error::NotImplemented => driver::Error::NotImplemented,
        driver::Error::Retry { after } => driver::Error::Retry { after: *after },
        other => {
            let mut text = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(cause) = source {
                text.push_str(": ");
                text.push_str(&cause.to_string());
                source = cause.source();
            }
            driver::Error::other("applying a batch of load balancers", text)
        }
    }
}

#[async_trait]
impl Driver for HaproxyDriver {
    /// Concurrent calls are applied together: whoever gets the state lock
    /// applies every call waiting for it, so N load balancers created at once
    /// cost one check and reload per host, not N.
    async fn ensure(&self, lb: &LoadBalancer) -> driver::Result<Status> {
        let (tx, mut rx) = oneshot::channel();
        self.inner
            .waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Waiting {
                lb: lb.clone(),
                tx,
                arrived: tokio::time::Instant::now(),
            });
        let stopped = || {
            Err(driver::Error::other(
                format!("ensuring {}", lb.id()),
                "the driver stopped before applying it",
            ))
        };
        loop {
            // The holder of the lock may apply this call with its own: then
            // the answer is here without taking a turn at the lock (and
            // applying whatever arrived meanwhile for others).
            tokio::select! {
                biased;
                result = &mut rx => return result.unwrap_or_else(|_| stopped()),
                mut state = self.inner.state.lock() => {
                    match rx.try_recv() {
                        Ok(result) => return result,
                        Err(oneshot::error::TryRecvError::Closed) => return stopped(),
                        Err(oneshot::error::TryRecvError::Empty) => {}
                    }
                    self.inner.drain_waiting(&mut state).await;
                }
            }
        }
    }

    async fn list(&self) -> driver::Result<Vec<LbId>> {
        Ok(self.inner.state.lock().await.lbs.keys().cloned().collect())
    }

    async fn ensure_deleted(&self, id: &LbId) -> driver::Result<()> {
        let inner = &self.inner;
        let mut state = inner.state.lock().await;
        // Ensures called before this delete are applied before it.
        inner.drain_waiting(&mut state).await;
        if state.lbs.remove(id).is_none() {
            return Ok(());
        }
        state.slots.retain(|(lb, _), _| lb != id);
        state.assignment.remove(id);
        state.outcomes.remove(id);
        let result = inner.apply(&mut state, id).await;
        inner.publish(&mut state);
        result
    }

    async fn status(&self, id: &LbId) -> driver::Result<Option<Status>> {
        Ok(self.inner.state.lock().await.statuses.get(id).cloned())
    }

    fn subscribe(&self) -> broadcast::Receiver<StatusUpdate> {
        self.inner.tx.subscribe()
    }

    async fn set_hosts(&self, hosts: Vec<Host>) -> driver::Result<()> {
        let inner = &self.inner;
        let mut state = inner.state.lock().await;
        state.hosts = hosts;
        let id = LbId::new("hosts").map_err(|e| driver::Error::other("hosts", e))?;
        let result = inner.apply(&mut state, &id).await;
        inner.publish(&mut state);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(last: u8) -> Endpoint {
        Endpoint {
            address: IpAddr::from([10, 0, 0, last]),
            port: 80,
        }
    }

    #[test]
    fn slots_keep_endpoints_in_place_and_grow_in_powers_of_two() {
        let s = assign_slots(None, &[ep(1), ep(2)], 4);
        assert_eq!(s, vec![Some(ep(1)), Some(ep(2)), None, None]);
        let s2 = assign_slots(Some(&s), &[ep(2), ep(3)], 4);
        assert_eq!(s2, vec![Some(ep(3)), Some(ep(2)), None, None]);
        let s3 = assign_slots(Some(&s2), &[ep(1), ep(2), ep(3), ep(4), ep(5)], 4);
        assert_eq!(s3.len(), 8);
        assert_eq!(s3[1], Some(ep(2)));
        assert_eq!(s3.iter().flatten().count(), 5);
    }

    #[test]
    fn work_dirs_must_be_plain_absolute_paths() {
        assert!(check_path("work_dir", Path::new("/tmp/.tmpAb12/x")).is_ok());
        assert!(check_path("work_dir", Path::new("relative")).is_err());
        assert!(check_path("work_dir", Path::new("/tmp/with space")).is_err());
        assert!(check_path("work_dir", Path::new("/tmp/new\nline")).is_err());
    }
}
