//! The [`DnsProvider`] trait: where the federation's records are published,
//! and the in-tree providers.
//!
//! A provider holds part of a public zone. The federation controller is the
//! single writer of every name in a federation's [`Scope`]: it computes the
//! complete desired record set and calls [`DnsProvider::ensure`], which reads
//! what the provider holds in that scope and applies only the difference
//! (records removed and added), never a zone rewrite. Names outside the scope
//! are never read or changed.

use std::time::Duration;

use async_trait::async_trait;

use crate::model::{Changes, Record, RecordSet, Scope};

#[cfg(any(test, doc, feature = "testing"))]
pub mod conformance;
#[cfg(any(test, doc, feature = "testing"))]
pub mod memory;
#[cfg(feature = "rancher-dns")]
pub mod rancher_dns;
#[cfg(feature = "rfc2136")]
pub mod rfc2136;

#[cfg(any(test, doc, feature = "testing"))]
pub use memory::MemoryProvider;
#[cfg(feature = "rancher-dns")]
pub use rancher_dns::RancherDnsProvider;
#[cfg(feature = "rfc2136")]
pub use rfc2136::{Rfc2136Config, Rfc2136Provider, TsigKey};

/// Errors a provider returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A desired record lies outside the scope being ensured.
    #[error("record {record} is outside federation {federation}'s names under {suffix}")]
    OutOfScope {
        /// The record.
        record: Box<Record>,
        /// The federation.
        federation: String,
        /// The federation's suffix.
        suffix: String,
    },
    /// The DNS server could not be reached or did not answer in time.
    #[error("dns server {server} unreachable")]
    Unreachable {
        /// The server.
        server: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The DNS server refused the request's credentials (a TSIG key it does
    /// not know, a wrong secret, or a clock too far off).
    #[error("dns server {server} rejected the credentials: {reason}")]
    Unauthorized {
        /// The server.
        server: String,
        /// What the server said.
        reason: String,
    },
    /// The DNS server answered an update or transfer with an error code.
    #[error("dns server {server} refused the {operation}: {rcode}")]
    Refused {
        /// The server.
        server: String,
        /// `update` or `zone transfer`.
        operation: &'static str,
        /// The response code.
        rcode: String,
    },
    /// The server's answer could not be parsed.
    #[error("invalid answer from dns server {server}: {reason}")]
    InvalidAnswer {
        /// The server.
        server: String,
        /// What was wrong.
        reason: String,
    },
    /// The provider's configuration is invalid.
    #[error("invalid dns provider configuration: {0}")]
    Config(String),
    /// The provider does not support this operation.
    #[error("not implemented by this provider")]
    NotImplemented,
    /// Any other failure.
    #[error("dns provider failed")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl Error {
    /// How long to wait before trying again, when the provider knows.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Unreachable { .. } => Some(Duration::from_secs(5)),
            _ => None,
        }
    }
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Publishes federated records into a zone.
///
/// Implementations must be idempotent and must touch only names within the
/// scope they are given; the conformance battery in
/// [`conformance`] (feature `testing`) checks
/// both.
#[async_trait]
pub trait DnsProvider: Send + Sync + 'static {
    /// Every record the provider holds at names within `scope`
    /// ([`Scope::owns`]).
    async fn records(&self, scope: &Scope) -> Result<RecordSet>;

    /// Applies `changes`: first every removal (by name, type and data; a
    /// missing record is not an error), then every addition (an existing record
    /// is not an error; a different TTL replaces the old one). Either all of it
    /// is applied or, on error, possibly none.
    async fn apply(&self, changes: &Changes) -> Result<()>;

    /// Makes the provider's records within `scope` equal `desired` with the
    /// minimal change, and returns that change (empty when nothing differed).
    ///
    /// Every record of `desired` must lie within `scope`
    /// ([`Error::OutOfScope`] otherwise, and nothing is changed).
    async fn ensure(&self, scope: &Scope, desired: &RecordSet) -> Result<Changes> {
        check_scope(scope, desired)?;
        let current = self.records(scope).await?;
        let changes = Changes::between(&current, desired);
        if !changes.is_empty() {
            self.apply(&changes).await?;
        }
        Ok(changes)
    }
}

/// Checks that every record in `records` lies within `scope`.
pub fn check_scope(scope: &Scope, records: &RecordSet) -> Result<()> {
    match records.iter().find(|record| !scope.owns(&record.name)) {
        Some(record) => Err(Error::OutOfScope {
            record: Box::new(record.clone()),
            federation: scope.federation.clone(),
            suffix: scope.suffix.to_string(),
        }),
        None => Ok(()),
    }
}
