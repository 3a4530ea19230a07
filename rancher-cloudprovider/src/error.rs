//! Errors a provider returns; each variant tells the controller what to do next.

use std::time::Duration;

/// A provider error.
///
/// The controller maps these onto its retry policy: [`Error::Retry`] is retried
/// after exactly `after` and is not counted as a failure; everything else backs off
/// exponentially. [`Error::ImplementedElsewhere`] is not a failure at all.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The provider does not implement this optional capability.
    #[error("{what} is not implemented by this provider")]
    NotImplemented {
        /// The capability, e.g. `instance shutdown state`.
        what: &'static str,
    },

    /// The load balancer is converging; ask again after `after`. Providers return
    /// this instead of blocking, so one slow load balancer never holds up others.
    #[error("{reason}; retrying in {after:?}")]
    Retry {
        /// When to try again.
        after: Duration,
        /// What the provider is waiting for.
        reason: String,
    },

    /// Another component manages this part of the load balancer (for example it
    /// writes the Service status itself). Returned from
    /// [`ensure_load_balancer`](crate::LoadBalancer::ensure_load_balancer) and
    /// [`update_load_balancer`](crate::LoadBalancer::update_load_balancer) only;
    /// never from `ensure_load_balancer_deleted`.
    #[error("implemented elsewhere")]
    ImplementedElsewhere,

    /// The node has no instance behind it.
    #[error("no instance for node {node}")]
    InstanceNotFound {
        /// The node's name.
        node: String,
    },

    /// The Service asks for something this provider cannot do, or is malformed.
    /// The message names the field; the controller reports it as a Warning event.
    #[error("service {service}: {field}: {message}")]
    InvalidService {
        /// `namespace/name`.
        service: String,
        /// The offending field, e.g. `spec.ports[1].protocol`.
        field: String,
        /// What is wrong with it.
        message: String,
    },

    /// Anything else: the backend failed.
    #[error("provider failed")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// A [`Error::Retry`].
    pub fn retry(after: Duration, reason: impl Into<String>) -> Self {
        Self::Retry {
            after,
            reason: reason.into(),
        }
    }

    /// An [`Error::InvalidService`] about `service`'s `field`.
    pub fn invalid(
        service: &crate::model::ServiceKey,
        field: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Self::InvalidService {
            service: service.to_string(),
            field: field.into(),
            message: message.into(),
        }
    }

    /// Wraps any backend error as [`Error::Other`].
    pub fn other(error: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self::Other(error.into())
    }

    /// Whether this is [`Error::NotImplemented`].
    pub fn is_not_implemented(&self) -> bool {
        matches!(self, Self::NotImplemented { .. })
    }
}

/// Result of a provider call.
pub type Result<T, E = Error> = std::result::Result<T, E>;
