//! Graceful shutdown on SIGTERM and SIGINT.
//!
//! A [`Shutdown`] owns a cancellation token that every long-running task watches
//! and a tracker of the tasks spawned through it. On a signal the token is
//! cancelled: watches stop, the leader elector releases its Lease, and
//! [`Shutdown::drain`] waits for in-flight work to finish, up to a deadline.

use std::{future::Future, time::Duration};

use tokio::task::JoinHandle;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// The work did not finish within the drain deadline.
#[derive(Debug, thiserror::Error)]
#[error("{remaining} task(s) still running after the {deadline:?} shutdown deadline")]
pub struct DrainTimeout {
    /// The tasks still running.
    pub remaining: usize,
    /// The deadline that passed.
    pub deadline: Duration,
}

/// Coordinates the shutdown of a process's tasks. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct Shutdown {
    token: CancellationToken,
    tracker: TaskTracker,
}

impl Shutdown {
    /// A shutdown not yet triggered.
    pub fn new() -> Self {
        Self::default()
    }

    /// A shutdown that triggers on SIGTERM or SIGINT (Ctrl-C).
    ///
    /// Must be called within a Tokio runtime.
    pub fn on_signals() -> Self {
        let shutdown = Self::new();
        let token = shutdown.token.clone();
        tokio::spawn(async move {
            tokio::select! {
                signal = wait_for_signal() => {
                    tracing::info!(signal, "shutting down");
                    token.cancel();
                }
                () = token.cancelled() => {}
            }
        });
        shutdown
    }

    /// The token tasks watch; cancelled when shutdown starts.
    pub fn token(&self) -> CancellationToken {
        self.token.clone()
    }

    /// Starts shutdown by hand.
    pub fn trigger(&self) {
        self.token.cancel();
    }

    /// Whether shutdown has started.
    pub fn is_triggered(&self) -> bool {
        self.token.is_cancelled()
    }

    /// Waits until shutdown starts.
    pub async fn triggered(&self) {
        self.token.cancelled().await;
    }

    /// Spawns a task that [`drain`](Self::drain) waits for.
    pub fn spawn<F>(&self, task: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.tracker.spawn(task)
    }

    /// Starts shutdown if it has not started, then waits for every spawned task to
    /// finish, up to `deadline`.
    pub async fn drain(&self, deadline: Duration) -> Result<(), DrainTimeout> {
        self.token.cancel();
        self.tracker.close();
        match tokio::time::timeout(deadline, self.tracker.wait()).await {
            Ok(()) => Ok(()),
            Err(_) => Err(DrainTimeout {
                remaining: self.tracker.len(),
                deadline,
            }),
        }
    }
}

#[cfg(unix)]
async fn wait_for_signal() -> &'static str {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::warn!("cannot install signal handlers; shutdown only on request");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() -> &'static str {
    let _ = tokio::signal::ctrl_c().await;
    "Ctrl-C"
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    };

    #[tokio::test]
    async fn drain_lets_in_flight_work_finish() {
        let shutdown = Shutdown::new();
        let finished = Arc::new(AtomicBool::new(false));
        let token = shutdown.token();
        let done = finished.clone();
        shutdown.spawn(async move {
            token.cancelled().await;
            // In-flight work completes after the signal.
            tokio::task::yield_now().await;
            done.store(true, Ordering::SeqCst);
        });
        shutdown.drain(Duration::from_secs(5)).await.unwrap();
        assert!(finished.load(Ordering::SeqCst));
    }

    #[tokio::test(start_paused = true)]
    async fn drain_reports_tasks_past_the_deadline() {
        let shutdown = Shutdown::new();
        shutdown.spawn(std::future::pending::<()>());
        let err = shutdown.drain(Duration::from_secs(1)).await.unwrap_err();
        assert_eq!(err.remaining, 1);
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn sigterm_triggers_shutdown() {
        // Install the process-wide handler before raising, so the signal is
        // caught and does not terminate the test process.
        let shutdown = Shutdown::on_signals();
        tokio::task::yield_now().await;
        let mut probe =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).unwrap();
        let status = tokio::process::Command::new("kill")
            .arg("-TERM")
            .arg(std::process::id().to_string())
            .status()
            .await
            .unwrap();
        assert!(status.success());
        probe.recv().await;
        tokio::time::timeout(Duration::from_secs(10), shutdown.triggered())
            .await
            .expect("SIGTERM starts shutdown");
    }
}
