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
use crate::placement::{Assignment, Host, Outcome, place};
use metrics::HaproxyMetrics;
use process::Instance;
use render::{Paths, Rendered, Server, Settings, Slots};

/// The default number of server slots per backend.
pub const DEFAULT_SERVER_SLOTS: usize = 8;

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
    /// `maxconn` per process.
    pub maxconn: u32,
    /// Old workers are stopped this long after a reload at the latest.
    pub hard_stop_after: Duration,
    /// First restart delay after a crash; doubles up to `restart_backoff_max`.
    pub restart_backoff_min: Duration,
    /// Largest restart delay.
    pub restart_backoff_max: Duration,
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
        }
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

/// A host's new configuration, checked, waiting to be applied.
struct Pending {
    host: IpAddr,
    rendered: Rendered,
    template: String,
    generation: PathBuf,
    /// `Some`: same structure as what runs; these runtime API commands
    /// instead of a reload.
    runtime: Option<Vec<String>>,
}

/// The most runtime API commands one change may take before a reload is
/// cheaper (each command is one round trip on the stats socket).
const MAX_RUNTIME_COMMANDS: usize = 2000;

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
    async fn drain_waiting(&self, state: &mut State) {
        let mut batch = std::mem::take(
            &mut *self
                .waiting
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        batch.retain(|w| !w.tx.is_closed());
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

    /// Renders a host once: the configuration with server addresses as
    /// placeholders (the template, to compare structures) and the full
    /// configuration.
    fn render_host(
        &self,
        state: &State,
        host: IpAddr,
        lbs: &[&LoadBalancer],
        generation: &Path,
    ) -> (Rendered, String) {
        let dir = self.host_dir(host);
        let paths = Paths {
            generation: generation.display().to_string(),
            admin_socket: dir.join("admin.sock").display().to_string(),
        };
        let mut rendered = render::render(host, lbs, &state.slots, &paths, &self.settings(), false);
        let template = std::mem::take(&mut rendered.config);
        rendered.config = render::fill(&template, &rendered.servers);
        (rendered, template)
    }

    async fn check(&self, generation: &Path) -> Result<(), String> {
        let out = tokio::process::Command::new(&self.config.binary)
            .arg("-c")
            .arg("-q")
            .arg("-f")
            .arg(generation.join("haproxy.cfg"))
            .stdin(std::process::Stdio::null())
            .output()
            .await
            .map_err(|e| format!("cannot run {}: {e}", self.config.binary.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
            text.push_str(&String::from_utf8_lossy(&out.stdout));
            let lines: Vec<&str> = text
                .lines()
                .filter(|l| l.contains("ALERT"))
                .take(5)
                .collect();
            Err(if lines.is_empty() {
                format!("haproxy -c failed: {}", out.status)
            } else {
                lines.join(" | ")
            })
        }
    }

    fn write_generation(&self, generation: &Path, rendered: &Rendered) -> Result<()> {
        mkdir_private(generation)?;
        mkdir_private(&generation.join("maps"))?;
        mkdir_private(&generation.join("certs"))?;
        for f in &rendered.files {
            let mode = if f.private { 0o600 } else { 0o644 };
            write_file(&generation.join(&f.path), &f.contents, mode)?;
        }
        write_file(&generation.join("haproxy.cfg"), &rendered.config, 0o600)
    }

    fn make_current(&self, host: IpAddr, generation: &Path) -> Result<()> {
        let dir = self.host_dir(host);
        let tmp = dir.join("current.tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(generation, &tmp)
            .map_err(io(format!("linking {}", tmp.display())))?;
        std::fs::rename(&tmp, dir.join("current"))
            .map_err(io(format!("making {} current", generation.display())))
    }

    fn prune_generations(&self, host: IpAddr, keep: &Path) {
        let Ok(entries) = std::fs::read_dir(self.host_dir(host)) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            let is_gen = e.file_name().to_string_lossy().starts_with("gen-");
            if is_gen && p != keep {
                let _ = std::fs::remove_dir_all(&p);
            }
        }
    }

    /// Applies a change that only touches endpoints, without rendering: new
    /// server slots go to the runtime API and into the running
    /// configuration's template. `None` when the change is not of that kind
    /// (or the runtime API failed), for the general path to take over.
    async fn endpoints_only(&self, state: &mut State, lbs: &[LoadBalancer]) -> Option<Vec<Status>> {
        let mut new_slots = BTreeMap::new();
        for lb in lbs {
            if !state.lbs.get(lb.id())?.differs_only_in_endpoints(lb) {
                return None;
            }
            for b in lb.backends() {
                let key = (lb.id().clone(), b.name.clone());
                let old = state.slots.get(&key);
                let slots = assign_slots(old, &b.endpoints, self.config.server_slots);
                if old.map(Vec::len) != Some(slots.len()) {
                    return None;
                }
                new_slots.insert(key, slots);
            }
        }
        let mut by_backend: BTreeMap<String, &Slots> = BTreeMap::new();
        for ((id, name), slots) in &new_slots {
            by_backend.insert(render::backend_name(id, name, true), slots);
            by_backend.insert(render::backend_name(id, name, false), slots);
        }
        let mut hosts = BTreeSet::new();
        for lb in lbs {
            hosts.extend(state.outcomes.get(lb.id())?.hosts.iter().copied());
        }
        let mut updates = Vec::new();
        for host in hosts {
            let hs = state
                .host_states
                .get(&host)
                .filter(|h| h.instance.is_running())?;
            let mut servers = hs.servers.clone();
            for s in &mut servers {
                if let Some(slots) = by_backend.get(&s.backend) {
                    let index = s.name.trim_start_matches('s').parse::<usize>().ok()?;
                    s.endpoint = slots.get(index.checked_sub(1)?).copied().flatten();
                }
            }
            let commands = runtime_commands(&hs.servers, &servers);
            let config = render::fill(&hs.template, &servers);
            updates.push((host, servers, commands, config));
        }
        for (host, servers, commands, config) in updates {
            if commands.is_empty() {
                continue;
            }
            let hs = state.host_states.get_mut(&host)?;
            // The live process first, then the file later restarts read.
            let socket = hs.instance.spec().admin_socket();
            if let Err(e) = runtime::run(&socket, &commands, RUNTIME_TIMEOUT).await {
                tracing::warn!(%host, error = %e, "runtime update failed");
                return None;
            }
            hs.servers = servers;
            if let Err(e) = write_file(&hs.generation.join("haproxy.cfg"), &config, 0o600) {
                // The next render rewrites it; a restart before then loses
                // this change until the controller ensures again.
                tracing::warn!(%host, error = %e, "writing the configuration failed");
            }
            state.runtime_updates += 1;
            self.metrics.runtime_updates.inc();
        }
        for lb in lbs {
            state.lbs.insert(lb.id().clone(), lb.clone());
        }
        state.slots.extend(new_slots);
        self.publish(state);
        Some(
            lbs.iter()
                .map(|lb| state.statuses.get(lb.id()).cloned().unwrap_or_default())
                .collect(),
        )
    }

    /// Places every load balancer and brings every host in line. On a failed
    /// check nothing is changed on any host.
    async fn apply(&self, state: &mut State, culprit: &LbId) -> driver::Result<()> {
        let lbs: Vec<&LoadBalancer> = state.lbs.values().collect();
        let outcomes = place(&state.hosts, &lbs, &state.assignment);
        let mut per_host: BTreeMap<IpAddr, Vec<LbId>> = BTreeMap::new();
        for (id, o) in &outcomes {
            for h in &o.hosts {
                per_host.entry(*h).or_default().push(id.clone());
            }
        }

        let mut pending = Vec::new();
        for (host, ids) in &per_host {
            let lbs: Vec<&LoadBalancer> = ids.iter().filter_map(|id| state.lbs.get(id)).collect();
            let current = state.host_states.get(host);
            if let Some(c) = current.filter(|c| c.instance.is_running()) {
                // Same structure as what runs (compared with the current
                // generation's paths): only server addresses and map
                // entries may differ, and those the runtime API changes.
                let generation = c.generation.clone();
                let (rendered, template) = self.render_host(state, *host, &lbs, &generation);
                if c.template == template
                    && let Some(mut commands) = map_commands(&generation, &c.files, &rendered.files)
                {
                    commands.extend(runtime_commands(&c.servers, &rendered.servers));
                    if commands.is_empty() && rendered.config == read_config(&generation) {
                        continue;
                    }
                    if commands.len() <= MAX_RUNTIME_COMMANDS {
                        pending.push(Pending {
                            host: *host,
                            rendered,
                            template,
                            generation,
                            runtime: Some(commands),
                        });
                        continue;
                    }
                }
            }
            state.next_generation += 1;
            let generation = self
                .host_dir(*host)
                .join(format!("gen-{}", state.next_generation));
            let (rendered, template) = self.render_host(state, *host, &lbs, &generation);
            let other = |e: Error| driver::Error::other("writing haproxy files", e);
            mkdir_private(&self.host_dir(*host)).map_err(other)?;
            self.write_generation(&generation, &rendered)
                .map_err(other)?;
            if let Err(reason) = self.check(&generation).await {
                self.metrics.rejected.inc();
                let _ = std::fs::remove_dir_all(&generation);
                for p in &pending {
                    if p.runtime.is_none() {
                        let _ = std::fs::remove_dir_all(&p.generation);
                    }
                }
                return Err(driver::Error::Rejected {
                    lb: culprit.clone(),
                    reason: format!("the configuration for {host} does not check: {reason}"),
                });
            }
            pending.push(Pending {
                host: *host,
                rendered,
                template,
                generation,
                runtime: None,
            });
        }

        // Everything checked: commit.
        state.outcomes = outcomes;
        state.assignment = state
            .outcomes
            .iter()
            .map(|(k, v)| (k.clone(), v.hosts.clone()))
            .collect();
        let mut first_error = None;
        for p in pending {
            let host = p.host;
            let result = self.commit(state, p).await;
            if let Err(e) = result {
                tracing::warn!(%host, error = %e, "applying haproxy changes failed");
                first_error.get_or_insert(e);
            }
        }
        // Hosts left without load balancers stop.
        let idle: Vec<IpAddr> = state
            .host_states
            .keys()
            .filter(|h| !per_host.contains_key(h))
            .copied()
            .collect();
        for h in idle {
            if let Some(hs) = state.host_states.remove(&h) {
                hs.instance.stop().await;
            }
        }
        match first_error {
            None => Ok(()),
            Some(e) => Err(e),
        }
    }

    async fn commit(&self, state: &mut State, p: Pending) -> driver::Result<()> {
        let Pending {
            host,
            rendered,
            template,
            generation,
            runtime,
        } = p;
        let other = |context: &str| {
            let context = format!("haproxy on {host}: {context}");
            move |e: Error| driver::Error::other(context, e)
        };
        if let Some(commands) = runtime {
            // Same structure: the files for later reloads and restarts (the
            // changed maps and the configuration, each replaced atomically),
            // then the live process.
            let Some(hs) = state.host_states.get_mut(&host) else {
                return Ok(());
            };
            for f in &rendered.files {
                if hs.files.iter().any(|old| old == f) {
                    continue;
                }
                let mode = if f.private { 0o600 } else { 0o644 };
                write_file(&generation.join(&f.path), &f.contents, mode)
                    .map_err(other("writing a map file"))?;
            }
            write_file(&generation.join("haproxy.cfg"), &rendered.config, 0o600)
                .map_err(other("writing the configuration"))?;
            let socket = hs.instance.spec().admin_socket();
            match runtime::run(&socket, &commands, RUNTIME_TIMEOUT).await {
                Ok(()) => {
                    state.runtime_updates += 1;
                    self.metrics.runtime_updates.inc();
                }
                Err(e) => {
                    // The files on disk are complete: a reload reads them.
                    tracing::warn!(%host, error = %e, "runtime update failed; reloading instead");
                    if let Err(e) = hs.instance.reload().await {
                        // HAProxy may hold part of the commands: whatever
                        // comes next goes through a new generation.
                        hs.template.clear();
                        return Err(driver::Error::other(
                            format!("reloading haproxy on {host}"),
                            e,
                        ));
                    }
                    state.reloads += 1;
                    self.metrics.reloads.inc();
                }
            }
            hs.servers = rendered.servers;
            hs.conflicts = rendered.conflicts;
            hs.template = template;
            hs.files = rendered.files;
            return Ok(());
        }
        self.make_current(host, &generation)
            .map_err(other("switching generations"))?;
        match state.host_states.get_mut(&host) {
            Some(hs) => {
                hs.files = rendered.files;
                hs.template = template;
                hs.servers = rendered.servers;
                hs.conflicts = rendered.conflicts;
                hs.generation = generation.clone();
                if hs.instance.is_running() {
                    hs.instance.reload().await.map_err(|e| {
                        driver::Error::other(format!("reloading haproxy on {host}"), e)
                    })?;
                    state.reloads += 1;
                    self.metrics.reloads.inc();
                }
                // Otherwise the supervisor starts it with the new generation.
            }
            None => {
                let instance = Instance::start(process::Spec {
                    host,
                    binary: self.config.binary.clone(),
                    dir: self.host_dir(host),
                    backoff_min: self.config.restart_backoff_min,
                    backoff_max: self.config.restart_backoff_max,
                    changed: self.changed.clone(),
                });
                let running = instance.wait_running(process::START_TIMEOUT).await;
                state.host_states.insert(
                    host,
                    HostState {
                        instance,
                        files: rendered.files,
                        template,
                        servers: rendered.servers,
                        generation: generation.clone(),
                        conflicts: rendered.conflicts,
                    },
                );
                if !running {
                    tracing::warn!(%host, "haproxy did not start in time; the supervisor keeps trying");
                }
            }
        }
        self.prune_generations(host, &generation);
        Ok(())
    }
}

fn read_config(generation: &Path) -> String {
    std::fs::read_to_string(generation.join("haproxy.cfg")).unwrap_or_default()
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

/// Escapes a runtime API argument: the stats socket splits commands on `;`
/// and arguments on blanks, with `\\` as the escape.
fn cli_arg(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        if matches!(c, ';' | ' ' | '\t' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Parses a rendered map file (`key value` lines) into its entries.
fn map_entries(contents: &str) -> BTreeMap<&str, &str> {
    contents.lines().filter_map(|l| l.split_once(' ')).collect()
}

/// Runtime API commands turning the running generation's `old` files into
/// `new` ones, when only map entries and certificate contents differ:
/// certificates first, then map additions and changes, then removals, so a
/// route that moves is never missing. `None` when another file (a crt-list)
/// or the set of files differs.
fn map_commands(
    generation: &Path,
    old: &[render::File],
    new: &[render::File],
) -> Option<Vec<String>> {
    if old.len() != new.len() {
        return None;
    }
    // Paths before hosts when adding, hosts before paths when removing: a
    // host is never known without its paths, so its requests do not lose
    // the any-host routes in between. Certificates first.
    let (mut path_upserts, mut host_upserts) = (Vec::new(), Vec::new());
    let (mut host_removals, mut path_removals) = (Vec::new(), Vec::new());
    let mut certificates = Vec::new();
    for (o, n) in old.iter().zip(new) {
        if o == n {
            continue;
        }
        if o.path != n.path {
            return None;
        }
        if n.path.starts_with("certs/") && n.path.ends_with(".pem") {
            // A rotated certificate (same file, same SNI names in the
            // crt-list): a transaction with the new PEM, then its commit.
            let file = cli_arg(&generation.join(&n.path).display().to_string());
            let pem: Vec<&str> = n.contents.lines().filter(|l| !l.is_empty()).collect();
            certificates.push(format!("set ssl cert {file} <<\n{}\n", pem.join("\n")));
            certificates.push(format!("commit ssl cert {file}"));
            continue;
        }
        if !n.path.starts_with("maps/") {
            return None;
        }
        let hosts = n.path.starts_with("maps/host-") || n.path.starts_with("maps/wildcard-");
        let (upserts, removals) = if hosts {
            (&mut host_upserts, &mut host_removals)
        } else {
            (&mut path_upserts, &mut path_removals)
        };
        let map = cli_arg(&generation.join(&n.path).display().to_string());
        let (before, after) = (map_entries(&o.contents), map_entries(&n.contents));
        for (key, value) in &after {
            let verb = match before.get(key) {
                Some(v) if v == value => continue,
                Some(_) => "set",
                None => "add",
            };
            upserts.push(format!(
                "{verb} map {map} {} {}",
                cli_arg(key),
                cli_arg(value)
            ));
        }
        for key in before.keys().filter(|k| !after.contains_key(*k)) {
            removals.push(format!("del map {map} {}", cli_arg(key)));
        }
    }
    let mut commands = certificates;
    commands.extend(path_upserts);
    commands.extend(host_upserts);
    commands.extend(host_removals);
    commands.extend(path_removals);
    Some(commands)
}

/// Runtime API commands turning `old` server slots into `new` ones (same
/// structure).
fn runtime_commands(old: &[Server], new: &[Server]) -> Vec<String> {
    let mut out = Vec::new();
    for (o, n) in old.iter().zip(new) {
        if o.endpoint == n.endpoint {
            continue;
        }
        let target = format!("{}/{}", n.backend, n.name);
        match n.endpoint {
            Some(ep) => {
                out.push(format!(
                    "set server {target} addr {} port {}",
                    ep.address, ep.port
                ));
                out.push(format!("set server {target} state ready"));
            }
            None => out.push(format!("set server {target} state maint")),
        }
    }
    out
}

#[async_trait]
impl Driver for HaproxyDriver {
    /// Concurrent calls are applied together: whoever gets the state lock
    /// applies every call waiting for it, so N load balancers created at once
    /// cost one check and reload per host, not N.
    async fn ensure(&self, lb: &LoadBalancer) -> driver::Result<Status> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(Waiting { lb: lb.clone(), tx });
        {
            let mut state = self.inner.state.lock().await;
            self.inner.drain_waiting(&mut state).await;
        }
        rx.await.unwrap_or_else(|_| {
            Err(driver::Error::other(
                format!("ensuring {}", lb.id()),
                "the driver stopped before applying it",
            ))
        })
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
    fn runtime_commands_fill_and_free_slots() {
        let server = |name: &str, endpoint| Server {
            backend: "be:h:a:web".into(),
            name: name.into(),
            endpoint,
        };
        let old = vec![server("s1", Some(ep(1))), server("s2", None)];
        let new = vec![server("s1", None), server("s2", Some(ep(2)))];
        assert_eq!(
            runtime_commands(&old, &new),
            vec![
                "set server be:h:a:web/s1 state maint",
                "set server be:h:a:web/s2 addr 10.0.0.2 port 80",
                "set server be:h:a:web/s2 state ready",
            ]
        );
    }

    #[test]
    fn map_commands_add_and_change_before_removing_and_escape_keys() {
        let file = |path: &str, contents: &str| render::File {
            path: path.into(),
            contents: contents.into(),
            private: false,
        };
        let generation = Path::new("/run/lb/gen-3");
        // The host map comes first in the files, as rendered.
        let old = vec![
            file("maps/host-80.map", "a a\nc c\n"),
            file(
                "maps/path-exact-80.map",
                "a/x be:h:a:one\na/y be:h:a:one\nc/ be:h:a:one\n",
            ),
        ];
        let new = vec![
            file("maps/host-80.map", "a a\nb b\n"),
            file(
                "maps/path-exact-80.map",
                "a/x be:h:a:two\na/z;1 be:h:a:one\nb/ be:h:a:one\n",
            ),
        ];
        // Paths before their host when adding, the host before its paths
        // when removing.
        assert_eq!(
            map_commands(generation, &old, &new),
            Some(vec![
                "set map /run/lb/gen-3/maps/path-exact-80.map a/x be:h:a:two".to_owned(),
                "add map /run/lb/gen-3/maps/path-exact-80.map a/z\\;1 be:h:a:one".to_owned(),
                "add map /run/lb/gen-3/maps/path-exact-80.map b/ be:h:a:one".to_owned(),
                "add map /run/lb/gen-3/maps/host-80.map b b".to_owned(),
                "del map /run/lb/gen-3/maps/host-80.map c".to_owned(),
                "del map /run/lb/gen-3/maps/path-exact-80.map a/y".to_owned(),
                "del map /run/lb/gen-3/maps/path-exact-80.map c/".to_owned(),
            ])
        );
        assert_eq!(map_commands(generation, &old, &old), Some(Vec::new()));
        // A rotated certificate: a transaction with the new PEM, committed.
        let cert = vec![file("certs/a:c.pem", "one")];
        let rotated = vec![file("certs/a:c.pem", "-----BEGIN X-----\nAB\n\nCD\n")];
        assert_eq!(
            map_commands(generation, &cert, &rotated),
            Some(vec![
                "set ssl cert /run/lb/gen-3/certs/a:c.pem <<\n-----BEGIN X-----\nAB\nCD\n"
                    .to_owned(),
                "commit ssl cert /run/lb/gen-3/certs/a:c.pem".to_owned(),
            ])
        );
        // A crt-list or a different set of files needs a reload.
        let list = vec![file("certs/crt-list-443.txt", "a")];
        let grown = vec![file("certs/crt-list-443.txt", "a\nb")];
        assert_eq!(map_commands(generation, &list, &grown), None);
        assert_eq!(map_commands(generation, &old, &new[..1]), None);
    }

    #[test]
    fn work_dirs_must_be_plain_absolute_paths() {
        assert!(check_path("work_dir", Path::new("/tmp/.tmpAb12/x")).is_ok());
        assert!(check_path("work_dir", Path::new("relative")).is_err());
        assert!(check_path("work_dir", Path::new("/tmp/with space")).is_err());
        assert!(check_path("work_dir", Path::new("/tmp/new\nline")).is_err());
    }
}
