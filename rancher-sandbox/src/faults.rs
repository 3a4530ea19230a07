//! Fault injection for tests: an API server that goes away and comes back, and
//! watches that silently stop delivering.
//!
//! These hooks exist so that controllers' recovery can be tested against the
//! sandbox: [`Cluster::stop_listener`] and [`Cluster::start_listener`] take the
//! API server away (connections refused, open watches ended) and bring it back
//! on the same address with its state (objects, resourceVersions, watch
//! history) intact, as a restarted kube-apiserver in front of the same etcd;
//! [`Cluster::stall_watches`] makes every open watch go silent while its
//! connection stays open, as behind a proxy that lost its upstream.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;

use crate::{Cluster, Error, Result};

/// The per-cluster state the hooks change.
#[derive(Debug)]
pub(crate) struct Faults {
    /// Cancelled when the listener stops: ends the server and its watches.
    serving: Mutex<CancellationToken>,
    /// Bumped by each stall: watches started before then stay silent.
    stalls: AtomicU64,
}

impl Faults {
    pub(crate) fn new(serving: CancellationToken) -> Self {
        Self {
            serving: Mutex::new(serving),
            stalls: AtomicU64::new(0),
        }
    }

    /// The token of the listener serving now.
    pub(crate) fn serving(&self) -> CancellationToken {
        lock(&self.serving).clone()
    }

    fn replace_serving(&self, token: CancellationToken) {
        *lock(&self.serving) = token;
    }

    /// The stall generation a watch starting now belongs to.
    pub(crate) fn generation(&self) -> u64 {
        self.stalls.load(Ordering::Acquire)
    }

    /// Whether a watch of `generation` has been stalled since it started.
    pub(crate) fn stalled(&self, generation: u64) -> bool {
        self.stalls.load(Ordering::Acquire) != generation
    }
}

impl Cluster {
    /// Test hook: stops serving, as an API server that went away. New
    /// connections are refused, open watches end and idle connections close;
    /// the cluster's state is kept for [`start_listener`](Self::start_listener).
    /// Does nothing if the listener is stopped already.
    pub async fn stop_listener(&self) {
        let serving = self.shared.faults.serving();
        serving.cancel();
        let task = lock(&self.task).take();
        if let Some(task) = task {
            let abort = task.abort_handle();
            if tokio::time::timeout(std::time::Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
        tracing::info!(name = %self.name, addr = %self.addr, "sandbox listener stopped");
    }

    /// Test hook: serves again on the same address with the state kept, after
    /// [`stop_listener`](Self::stop_listener). Watches resume from their
    /// resourceVersions as on a restarted kube-apiserver. Does nothing if the
    /// listener is running.
    pub async fn start_listener(&self) -> Result<()> {
        if lock(&self.task).is_some() {
            return Ok(());
        }
        let listener = tokio::net::TcpListener::bind(self.addr)
            .await
            .map_err(Error::Bind)?;
        let serving = self.shared.shutdown.child_token();
        self.shared.faults.replace_serving(serving.clone());
        let task = crate::serve(self.shared.clone(), listener, serving)?;
        *lock(&self.task) = Some(task);
        tracing::info!(name = %self.name, addr = %self.addr, "sandbox listener started again");
        Ok(())
    }

    /// Whether the listener is serving (not stopped by
    /// [`stop_listener`](Self::stop_listener)).
    pub fn is_listening(&self) -> bool {
        lock(&self.task).is_some()
    }

    /// Test hook: every watch open now stops delivering anything (no event, no
    /// bookmark, no error) while its connection stays open, until the client
    /// gives up on it. Watches opened afterwards behave normally.
    pub fn stall_watches(&self) {
        self.shared.faults.stalls.fetch_add(1, Ordering::AcqRel);
        tracing::info!(name = %self.name, "sandbox watches stalled");
    }
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
