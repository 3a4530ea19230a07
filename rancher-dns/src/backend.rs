//! The [`DnsBackend`] trait: where record changes go, and the in-tree
//! backends.
//!
//! A backend receives the full zone ([`DnsBackend::sync`], after the first
//! list and after every re-list) and per-name changes in between
//! ([`DnsBackend::apply`]). The full zone is a [`ZoneRecords`]: the
//! controller passes a [`ZoneView`](crate::records::ZoneView) that borrows
//! the index's records, so a backend copies only what it keeps.

use std::path::PathBuf;

use async_trait::async_trait;

use crate::model::{Change, ZoneRecords};

pub mod answers;
#[cfg(any(test, feature = "testing"))]
pub mod conformance;
#[cfg(any(test, feature = "testing"))]
pub mod memory;
pub mod server;

pub use answers::{AnswersBackend, AnswersConfig};
#[cfg(any(test, feature = "testing"))]
pub use memory::MemoryBackend;
pub use server::ServerBackend;

/// Errors a backend returns.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Writing a file failed.
    #[error("writing {path} failed")]
    Write {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The backend does not support this operation.
    #[error("not implemented by this backend")]
    NotImplemented,
    /// Any other failure.
    #[error("dns backend failed")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Receives the zone's records. Implementations are idempotent: applying
/// the same full state or the same change twice leaves the same result.
#[async_trait]
pub trait DnsBackend: Send + Sync + 'static {
    /// Replaces everything with `zone` and marks the zone synced: from now
    /// on a missing name is NXDOMAIN, not SERVFAIL.
    async fn sync(&self, zone: &dyn ZoneRecords) -> Result<()>;

    /// Applies per-name changes: [`Change::Upsert`] replaces a name's whole
    /// record set, [`Change::Remove`] deletes the name (`Ok` when absent).
    async fn apply(&self, changes: &[Change]) -> Result<()>;
}
