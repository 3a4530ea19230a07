//! The [`IngressBackend`] trait: what realises translated load balancers.
//!
//! The controller hands a backend the complete desired state of one load balancer
//! at a time ("ensure" verbs, idempotent) and writes the addresses the backend
//! reports to the Ingresses that load balancer serves. The in-tree backend drives a
//! `rancher-lb` driver; users plug in their own by implementing this trait.

#[cfg(feature = "lb")]
pub mod lb;

use std::time::Duration;

use async_trait::async_trait;

use crate::model::{LoadBalancer, Status};

/// Errors from a backend. They carry control-flow meaning for the controller.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The load balancer is converging: ask again after `after`, without counting
    /// it as a failure.
    #[error("load balancer {name} is not ready yet: {reason}")]
    Retry {
        /// The load balancer.
        name: String,
        /// What it is waiting for.
        reason: String,
        /// When to ask again.
        after: Duration,
    },
    /// The backend cannot realise part of the model (for example raw snippets).
    #[error("load balancer {name}: {what} is not supported by this backend")]
    Unsupported {
        /// The load balancer.
        name: String,
        /// The unsupported part.
        what: String,
    },
    /// The operation is not implemented by this backend.
    #[error("{0} is not implemented by this backend")]
    NotImplemented(&'static str),
    /// Anything else; retried with exponential backoff.
    #[error("load balancer {name}: backend operation failed")]
    Other {
        /// The load balancer.
        name: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Result of a backend operation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Realises translated load balancers.
///
/// Implementations are shared as `Arc<dyn IngressBackend>` and called from several
/// tasks at once, but never for the same load balancer name concurrently.
#[async_trait]
pub trait IngressBackend: Send + Sync + 'static {
    /// Makes the load balancer named `lb.name` match `lb` exactly, creating it if
    /// needed, and returns where it is reachable.
    ///
    /// Idempotent: calling it again with the same model changes nothing. `lb.scale`
    /// instances run on distinct hosts (fewer if fewer hosts are eligible); the
    /// returned [`Status`] lists the addresses of the hosts running them, and is
    /// empty for scale 0. A backend that is still converging returns
    /// [`Error::Retry`] instead of blocking.
    async fn ensure(&self, lb: &LoadBalancer) -> Result<Status>;

    /// Deletes the load balancer `name`. `Ok` when it does not exist.
    async fn ensure_deleted(&self, name: &str) -> Result<()>;

    /// The names of the load balancers this backend manages, so the controller
    /// can delete those it no longer wants after a restart.
    async fn list(&self) -> Result<Vec<String>>;

    /// The current status of `name` without changing anything; `None` when it
    /// does not exist.
    async fn status(&self, name: &str) -> Result<Option<Status>>;

    /// Names of load balancers whose addresses changed on the backend's own
    /// initiative (an instance moved off a failed host), so the controller can
    /// rewrite the status without polling. `None` (the default) when addresses
    /// only change through [`ensure`](Self::ensure).
    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        None
    }
}
