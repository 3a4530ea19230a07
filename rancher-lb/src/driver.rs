//! The [`Driver`] trait: what makes a [`LoadBalancer`] real.

use std::fmt;
use std::net::IpAddr;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::model::{LbId, LoadBalancer};
use crate::placement::{Host, Outcome};

/// Errors a driver returns. The variants tell a controller what to do next.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The driver refuses this load balancer (for example, it carries a
    /// snippet and snippets are disabled). Retrying the same input fails again.
    #[error("load balancer {lb}: {reason}")]
    Rejected {
        /// The load balancer.
        lb: LbId,
        /// Why.
        reason: String,
    },
    /// The operation is not supported by this driver.
    #[error("not implemented by this driver")]
    NotImplemented,
    /// Not done yet; call again after this delay.
    #[error("not ready yet, retry in {after:?}")]
    Retry {
        /// How long to wait.
        after: Duration,
    },
    /// Anything else (I/O, the proxy, a remote API).
    #[error("{context}")]
    Other {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl Error {
    /// Wraps a cause with what was being done.
    pub fn other(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        Self::Other {
            context: context.into(),
            source: source.into(),
        }
    }
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What a load balancer looks like from outside.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Status {
    /// Addresses clients can reach it on: hosts with a running instance,
    /// sorted and deduplicated.
    pub addresses: Vec<IpAddr>,
    /// Every placed instance and its state.
    pub instances: Vec<Instance>,
    /// Anything worth telling the user.
    pub conditions: Vec<Condition>,
}

impl Status {
    /// The condition of this kind, if present.
    pub fn condition(&self, kind: ConditionKind) -> Option<&Condition> {
        self.conditions.iter().find(|c| c.kind == kind)
    }
}

/// One instance of a load balancer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    /// The host it runs on.
    pub host: IpAddr,
    /// Its state.
    pub state: InstanceState,
}

/// The state of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum InstanceState {
    /// Serving.
    Running,
    /// Being started (first start or restart after a failure).
    Starting {
        /// How many times it was restarted after failing so far.
        restarts: u32,
    },
    /// Not serving, with why.
    Down {
        /// Why.
        reason: String,
    },
}

/// A condition on a status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Condition {
    /// What kind.
    pub kind: ConditionKind,
    /// A human-readable explanation.
    pub message: String,
}

/// The kinds of [`Condition`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ConditionKind {
    /// Fewer instances than `scale` could be placed.
    Shortfall,
    /// An instance is not running (crashed and being restarted, or failed).
    InstanceDown,
    /// A backend has no endpoints; requests routed to it get 503.
    NoEndpoints,
    /// A route is shadowed by another load balancer's route on a shared port.
    RouteConflict,
}

impl fmt::Display for ConditionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Shortfall => "Shortfall",
            Self::InstanceDown => "InstanceDown",
            Self::NoEndpoints => "NoEndpoints",
            Self::RouteConflict => "RouteConflict",
        })
    }
}

/// A status change, as published by [`Driver::subscribe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    /// The load balancer.
    pub id: LbId,
    /// Its new status; `None` once it is deleted.
    pub status: Option<Status>,
}

/// Capacity of the status broadcast channel drivers use.
pub const STATUS_CHANNEL_CAPACITY: usize = 1024;

/// Makes load balancers real.
///
/// Implementations are shared as `Arc<dyn Driver>`.
#[async_trait]
pub trait Driver: Send + Sync + 'static {
    /// Makes the load balancer look like `lb`, creating it if needed, and
    /// returns its status. Idempotent: the same input gives the same result
    /// and changes nothing. Other load balancers keep serving whatever
    /// happens to this one.
    async fn ensure(&self, lb: &LoadBalancer) -> Result<Status>;

    /// Removes the load balancer. `Ok` when it does not exist.
    async fn ensure_deleted(&self, id: &LbId) -> Result<()>;

    /// The current status, `None` if the driver does not know `id`.
    async fn status(&self, id: &LbId) -> Result<Option<Status>>;

    /// Every load balancer the driver holds, in no particular order. Drivers
    /// whose load balancers outlive the process (the Rancher driver) include
    /// those created before it started, so a controller can delete the ones
    /// nobody wants any more after a restart.
    async fn list(&self) -> Result<Vec<LbId>>;

    /// Status changes that happen outside [`ensure`](Self::ensure) (an
    /// instance crashed or came back, a host failed) and those it causes.
    fn subscribe(&self) -> broadcast::Receiver<StatusUpdate>;

    /// Replaces the set of hosts instances may run on (health and labels
    /// included); instances move off hosts that left or failed. Drivers whose
    /// hosts are managed elsewhere return [`Error::NotImplemented`].
    async fn set_hosts(&self, hosts: Vec<Host>) -> Result<()> {
        let _ = hosts;
        Err(Error::NotImplemented)
    }
}

/// The status a driver that places with [`place`] reports, when every placed
/// instance is in the state `state_of` gives.
pub(crate) fn placed_status(
    lb: &LoadBalancer,
    outcome: &Outcome,
    state_of: impl Fn(IpAddr) -> InstanceState,
) -> Status {
    let mut status = Status::default();
    for host in &outcome.hosts {
        let state = state_of(*host);
        if state == InstanceState::Running {
            status.addresses.push(*host);
        } else {
            status.conditions.push(Condition {
                kind: ConditionKind::InstanceDown,
                message: format!("instance on {host} is not running: {state:?}"),
            });
        }
        status.instances.push(Instance { host: *host, state });
    }
    status.addresses.sort();
    status.addresses.dedup();
    if let Some(s) = &outcome.shortfall {
        status.conditions.push(Condition {
            kind: ConditionKind::Shortfall,
            message: s.to_string(),
        });
    }
    for b in lb.backends() {
        if b.endpoints.is_empty() {
            status.conditions.push(Condition {
                kind: ConditionKind::NoEndpoints,
                message: format!("backend {} has no endpoints; its routes answer 503", b.name),
            });
        }
    }
    status
}
