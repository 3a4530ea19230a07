//! Readiness: a process is ready once every part that registered has said so,
//! and while the watches it serves from are current.
//!
//! Each watched resource registers a [`Pending`] when its watch starts and marks it
//! ready once its first list has been applied; the admin server's `/readyz` answers
//! 200 only when nothing is pending.
//!
//! Each watch also reports whether its view is current through a [`WatchTracker`]
//! ([`Readiness::track_watch`]): stale from when its connection to the API server
//! is lost until it is re-established. A stale watch makes `/readyz` answer 503,
//! unless it was made with [`WatchTracker::ready_when_stale`] (DNS, which must keep
//! answering from its last view); either way `/readyz` names it and `/metrics`
//! shows it ([`WatchCollector`]).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
};
use tokio::sync::watch;

/// Tracks the parts of a process that are not ready yet. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Readiness {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    pending: Mutex<Vec<(u64, String)>>,
    next: std::sync::atomic::AtomicU64,
    ready: watch::Sender<bool>,
    /// Tracked watches; a watch whose trackers are all dropped disappears.
    watches: Mutex<Vec<std::sync::Weak<WatchState>>>,
}

/// A part that is not ready yet. Dropping it without calling [`Pending::ready`]
/// leaves the process not ready.
#[derive(Debug)]
#[must_use = "a Pending part keeps the process not ready until `ready` is called"]
pub struct Pending {
    id: u64,
    readiness: Readiness,
}

impl Default for Readiness {
    fn default() -> Self {
        Self::new()
    }
}

impl Readiness {
    /// A tracker with nothing registered: ready until something registers.
    pub fn new() -> Self {
        let (ready, _) = watch::channel(true);
        Self {
            inner: Arc::new(Inner {
                pending: Mutex::new(Vec::new()),
                next: std::sync::atomic::AtomicU64::new(0),
                ready,
                watches: Mutex::new(Vec::new()),
            }),
        }
    }

    /// Registers a part, named for `/readyz` output, that is not ready yet.
    pub fn register(&self, name: impl Into<String>) -> Pending {
        let id = self
            .inner
            .next
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut pending = lock(&self.inner.pending);
        pending.push((id, name.into()));
        self.inner.ready.send_replace(false);
        Pending {
            id,
            readiness: self.clone(),
        }
    }

    /// Whether every registered part is ready.
    pub fn is_ready(&self) -> bool {
        *self.inner.ready.borrow()
    }

    /// The names of the parts still pending.
    pub fn pending(&self) -> Vec<String> {
        lock(&self.inner.pending)
            .iter()
            .map(|(_, name)| name.clone())
            .collect()
    }

    /// Waits until every registered part is ready.
    pub async fn wait(&self) {
        let mut rx = self.inner.ready.subscribe();
        // The sender lives in `self`, so this only ends when ready.
        let _ = rx.wait_for(|ready| *ready).await;
    }

    /// Starts tracking whether the watch named `name` is current; hand the
    /// tracker to [`crate::watch::Watch::tracked`]. The watch counts as stale
    /// until its first list completes.
    pub fn track_watch(&self, name: impl Into<String>) -> WatchTracker {
        let state = Arc::new(WatchState {
            name: name.into(),
            ready_when_stale: std::sync::atomic::AtomicBool::new(false),
            health: Mutex::new(Health {
                stale_since: Some(Instant::now()),
                restarts: [0; Restart::ALL.len()],
            }),
        });
        let mut watches = lock(&self.inner.watches);
        watches.retain(|w| w.strong_count() > 0);
        watches.push(Arc::downgrade(&state));
        drop(watches);
        WatchTracker { state }
    }

    /// The tracked watches that are stale now, with how long since each was last
    /// known current.
    pub fn stale(&self) -> Vec<Stale> {
        let now = Instant::now();
        self.watches()
            .iter()
            .filter_map(|w| {
                let since = lock(&w.health).stale_since?;
                Some(Stale {
                    name: w.name.clone(),
                    age: now.saturating_duration_since(since),
                    ready: w.ready_when_stale(),
                })
            })
            .collect()
    }

    fn watches(&self) -> Vec<Arc<WatchState>> {
        lock(&self.inner.watches)
            .iter()
            .filter_map(std::sync::Weak::upgrade)
            .collect()
    }

    /// Whether the process is ready and no tracked watch that makes it unready
    /// is stale: what `/readyz` answers.
    pub fn is_ready_and_current(&self) -> bool {
        self.is_ready() && self.stale().iter().all(|s| s.ready)
    }

    /// A `prometheus-client` collector for the tracked watches, registered by
    /// [`crate::admin::AdminState::new`].
    pub fn collector(&self) -> WatchCollector {
        WatchCollector {
            readiness: self.clone(),
        }
    }

    fn mark(&self, id: u64) {
        let mut pending = lock(&self.inner.pending);
        pending.retain(|(other, _)| *other != id);
        if pending.is_empty() {
            self.inner.ready.send_replace(true);
        }
    }
}

impl Pending {
    /// The readiness this part belongs to, to track related parts with.
    pub fn readiness(&self) -> &Readiness {
        &self.readiness
    }

    /// Marks this part ready.
    pub fn ready(self) {
        self.readiness.mark(self.id);
    }
}

/// Why a watch was restarted, as the `reason` label of the restart counter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Restart {
    /// A list or watch request failed, or the watch connection broke.
    Error,
    /// The API server answered 410 Gone: the resourceVersion is too old to
    /// resume from, so the watch listed again.
    Expired,
    /// The watch delivered nothing (no event, no bookmark) for its idle timeout.
    Stalled,
}

impl Restart {
    const ALL: [Self; 3] = [Self::Error, Self::Expired, Self::Stalled];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Error => "error",
            Self::Expired => "expired",
            Self::Stalled => "stalled",
        }
    }

    fn index(self) -> usize {
        match self {
            Self::Error => 0,
            Self::Expired => 1,
            Self::Stalled => 2,
        }
    }
}

/// A stale watch, as [`Readiness::stale`] reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stale {
    /// The watch's name.
    pub name: String,
    /// How long since its view was last known current.
    pub age: Duration,
    /// Whether the process stays ready while this watch is stale.
    pub ready: bool,
}

#[derive(Debug)]
struct WatchState {
    name: String,
    ready_when_stale: std::sync::atomic::AtomicBool,
    health: Mutex<Health>,
}

impl WatchState {
    fn ready_when_stale(&self) -> bool {
        self.ready_when_stale
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[derive(Debug)]
struct Health {
    /// Since when the view is not known to be current; `None` while it is.
    stale_since: Option<Instant>,
    restarts: [u64; Restart::ALL.len()],
}

/// Reports whether one watch's view is current; made by
/// [`Readiness::track_watch`]. Cheap to clone.
#[derive(Clone, Debug)]
pub struct WatchTracker {
    state: Arc<WatchState>,
}

impl WatchTracker {
    /// Keeps the process ready while this watch is stale (it still shows in
    /// `/readyz`'s body and in `/metrics`): for a server that must keep
    /// answering from its last view, such as DNS.
    #[must_use]
    pub fn ready_when_stale(self) -> Self {
        self.state
            .ready_when_stale
            .store(true, std::sync::atomic::Ordering::Relaxed);
        self
    }

    /// The watch's name.
    pub fn name(&self) -> &str {
        &self.state.name
    }

    /// The view is current: a list completed or a watch is connected.
    pub fn current(&self) {
        lock(&self.state.health).stale_since = None;
    }

    /// The view stopped being known current at `since` (when the connection was
    /// lost, or when the last event arrived before a stall). Keeps an earlier
    /// time if the watch is stale already.
    pub fn stale(&self, since: Instant) {
        let mut health = lock(&self.state.health);
        if health.stale_since.is_none() {
            health.stale_since = Some(since);
        }
    }

    /// Counts a restart of the watch.
    pub fn restarted(&self, why: Restart) {
        let mut health = lock(&self.state.health);
        health.restarts[why.index()] = health.restarts[why.index()].saturating_add(1);
    }

    /// Whether the view is stale now.
    pub fn is_stale(&self) -> bool {
        lock(&self.state.health).stale_since.is_some()
    }

    /// How many times the watch restarted for `why`.
    pub fn restarts(&self, why: Restart) -> u64 {
        lock(&self.state.health).restarts[why.index()]
    }
}

/// The watch metrics of a [`Readiness`], computed at each scrape:
///
/// - `watch_stale{watch}`: 1 while the watch's view is not known current.
/// - `watch_seconds_since_sync{watch}`: seconds since its view was last known
///   current (0 while it is: listed and connected).
/// - `watch_restarts_total{watch,reason}`: restarts by reason (`error`,
///   `expired`, `stalled`).
#[derive(Debug)]
pub struct WatchCollector {
    readiness: Readiness,
}

impl Collector for WatchCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let now = Instant::now();
        let watches: Vec<(String, Option<Duration>, [u64; Restart::ALL.len()])> = self
            .readiness
            .watches()
            .iter()
            .map(|w| {
                let health = lock(&w.health);
                (
                    w.name.clone(),
                    health
                        .stale_since
                        .map(|since| now.saturating_duration_since(since)),
                    health.restarts,
                )
            })
            .collect();
        if watches.is_empty() {
            return Ok(());
        }
        let mut family = encoder.encode_descriptor(
            "watch_stale",
            "Whether the watch's view is stale (1) or current (0)",
            None,
            ConstGauge::new(0i64).metric_type(),
        )?;
        for (name, stale, _) in &watches {
            let labels = [("watch", name.as_str())];
            ConstGauge::new(i64::from(stale.is_some())).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "watch_seconds_since_sync",
            "Seconds since the watch's view was last known current (0 while it is)",
            None,
            ConstGauge::new(0f64).metric_type(),
        )?;
        for (name, stale, _) in &watches {
            let labels = [("watch", name.as_str())];
            let seconds = stale.map_or(0.0, |d| d.as_secs_f64());
            ConstGauge::new(seconds).encode(family.encode_family(&labels)?)?;
        }
        let mut family = encoder.encode_descriptor(
            "watch_restarts",
            "Watch restarts, by reason",
            None,
            ConstCounter::new(0u64).metric_type(),
        )?;
        for (name, _, restarts) in &watches {
            for why in Restart::ALL {
                let labels = [("watch", name.as_str()), ("reason", why.as_str())];
                ConstCounter::new(restarts[why.index()]).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn ready_only_when_every_part_is() {
        let readiness = Readiness::new();
        assert!(readiness.is_ready());
        let services = readiness.register("services");
        let slices = readiness.register("endpointslices");
        assert!(!readiness.is_ready());
        assert_eq!(readiness.pending(), ["services", "endpointslices"]);
        services.ready();
        assert!(!readiness.is_ready());
        let waiter = tokio::spawn({
            let readiness = readiness.clone();
            async move { readiness.wait().await }
        });
        slices.ready();
        waiter.await.unwrap();
        assert!(readiness.is_ready());
    }
}
