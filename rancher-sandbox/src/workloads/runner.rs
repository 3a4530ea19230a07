//! The loop every controller of the sandbox runs on: changes from the store's watch are
//! mapped to keys, each key is queued at most once, and reconciled under the store's lock
//! against the current objects, so a controller never works from a stale cache.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::hash::Hash;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::broadcast::error::TryRecvError;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::time::Instant;

use crate::server::Shared;
use crate::store::{Change, State};

/// One controller: which keys a change touches, and how to bring a key to its desired state.
pub(crate) trait Reconciler: Send + 'static {
    /// What the controller reconciles (usually namespace and name).
    type Key: Clone + Eq + Hash + Ord + Send + std::fmt::Debug;

    /// A short name for logs.
    fn name(&self) -> &'static str;

    /// Adds the keys a change touches to `out`.
    fn keys_for(&mut self, state: &State, change: &Change, out: &mut Vec<Self::Key>);

    /// Adds every key to `out`: at start, and after the controller fell behind the watch.
    fn all_keys(&mut self, state: &State, out: &mut Vec<Self::Key>);

    /// Brings `key` to its desired state under the store's lock; `Some(after)` asks to be
    /// called again after that long (a timer: minReadySeconds, a back-off).
    fn reconcile(&mut self, state: &mut State, key: &Self::Key) -> Option<Duration>;

    /// Keys the controller queues itself, from work it does away from the store's lock
    /// (the kubelet's CNI calls); taken once when the loop starts.
    fn wakeups(&mut self) -> Option<UnboundedReceiver<Self::Key>> {
        None
    }
}

/// A FIFO of keys in which a key waits at most once.
struct Queue<K> {
    order: VecDeque<K>,
    queued: HashSet<K>,
    timers: BTreeMap<(Instant, u64), K>,
    timer_seq: u64,
}

impl<K: Clone + Eq + Hash + Ord> Queue<K> {
    fn new() -> Self {
        Self {
            order: VecDeque::new(),
            queued: HashSet::new(),
            timers: BTreeMap::new(),
            timer_seq: 0,
        }
    }

    fn push(&mut self, key: K) {
        if self.queued.insert(key.clone()) {
            self.order.push_back(key);
        }
    }

    fn pop(&mut self) -> Option<K> {
        let key = self.order.pop_front()?;
        self.queued.remove(&key);
        Some(key)
    }

    fn after(&mut self, delay: Duration, key: K) {
        self.timer_seq += 1;
        self.timers
            .insert((Instant::now() + delay, self.timer_seq), key);
    }

    /// Moves keys whose timer has fired into the queue; returns when the next one fires.
    fn fire_timers(&mut self) -> Option<Instant> {
        let now = Instant::now();
        while let Some(entry) = self.timers.first_entry() {
            if entry.key().0 > now {
                return Some(entry.key().0);
            }
            let key = entry.remove();
            self.push(key);
        }
        None
    }
}

/// Runs `controller` on the cluster until the cluster shuts down.
pub(crate) fn spawn<R: Reconciler>(shared: Arc<Shared>, mut controller: R) {
    tokio::spawn(async move {
        let mut queue = Queue::new();
        let mut keys = Vec::new();
        // Subscribing and listing under one lock: no change is missed.
        let mut changes = {
            let state = shared.store.lock();
            controller.all_keys(&state, &mut keys);
            shared.store.subscribe()
        };
        let mut wakeups = controller.wakeups();
        let mut batch: Vec<Arc<Change>> = Vec::new();
        loop {
            if let Some(w) = wakeups.as_mut() {
                while let Ok(key) = w.try_recv() {
                    keys.push(key);
                }
            }
            // Everything that arrived since the last round, mapped under one lock.
            let mut resync = false;
            loop {
                match changes.try_recv() {
                    Ok(change) => batch.push(change),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Lagged(missed)) => {
                        tracing::debug!(controller = controller.name(), missed, "resync");
                        resync = true;
                    }
                    Err(TryRecvError::Closed) => return,
                }
            }
            if resync || !batch.is_empty() {
                let state = shared.store.lock();
                if resync {
                    controller.all_keys(&state, &mut keys);
                }
                for change in batch.drain(..) {
                    controller.keys_for(&state, &change, &mut keys);
                }
            }
            for key in keys.drain(..) {
                queue.push(key);
            }
            let next_timer = queue.fire_timers();
            if let Some(key) = queue.pop() {
                let again = {
                    let mut state = shared.store.lock();
                    controller.reconcile(&mut state, &key)
                };
                if let Some(after) = again {
                    queue.after(after, key);
                }
                // Let the API server and the other controllers in between keys.
                tokio::task::yield_now().await;
                continue;
            }
            let timer = async {
                match next_timer {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let woken = async {
                match wakeups.as_mut() {
                    Some(w) => w.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                Some(key) = woken => keys.push(key),
                change = changes.recv() => match change {
                    Ok(change) => batch.push(change),
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                        let state = shared.store.lock();
                        controller.all_keys(&state, &mut keys);
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                },
                () = timer => {}
                () = shared.shutdown.cancelled() => return,
            }
            if shared.shutdown.is_cancelled() {
                return;
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_waits_once_in_arrival_order() {
        let mut q = Queue::new();
        q.push("b");
        q.push("a");
        q.push("b");
        assert_eq!(q.pop(), Some("b"));
        assert_eq!(q.pop(), Some("a"));
        assert_eq!(q.pop(), None);
        q.push("b");
        assert_eq!(q.pop(), Some("b"));
    }

    #[tokio::test(start_paused = true)]
    async fn timers_fire_in_order() {
        let mut q = Queue::new();
        q.after(Duration::from_secs(2), "late");
        q.after(Duration::from_secs(1), "early");
        assert!(q.fire_timers().is_some());
        assert_eq!(q.pop(), None);
        tokio::time::advance(Duration::from_millis(1500)).await;
        q.fire_timers();
        assert_eq!(q.pop(), Some("early"));
        assert_eq!(q.pop(), None);
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(q.fire_timers(), None);
        assert_eq!(q.pop(), Some("late"));
    }
}
