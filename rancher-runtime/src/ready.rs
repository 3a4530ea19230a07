//! Readiness: a process is ready once every part that registered has said so.
//!
//! Each watched resource registers a [`Pending`] when its watch starts and marks it
//! ready once its first list has been applied; the admin server's `/readyz` answers
//! 200 only when nothing is pending.

use std::sync::{Arc, Mutex};

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

    fn mark(&self, id: u64) {
        let mut pending = lock(&self.inner.pending);
        pending.retain(|(other, _)| *other != id);
        if pending.is_empty() {
            self.inner.ready.send_replace(true);
        }
    }
}

impl Pending {
    /// Marks this part ready.
    pub fn ready(self) {
        self.readiness.mark(self.id);
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
