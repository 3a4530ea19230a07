//! The [`CredentialProvider`] trait and the providers of this crate.

use std::{path::PathBuf, sync::Arc};

use async_trait::async_trait;

use crate::model::{Request, Response};

mod composite;
mod docker_config;
#[cfg(feature = "rancher")]
mod rancher;
#[cfg(feature = "runtime")]
pub mod secret;

pub use composite::CompositeProvider;
pub use docker_config::{DockerConfig, DockerConfigConfig, DockerConfigProvider};
#[cfg(feature = "rancher")]
pub use rancher::{RancherConfig, RancherProvider};
#[cfg(feature = "runtime")]
pub use secret::{SecretConfig, SecretProvider, SecretRef};

/// A boxed error from a backend.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a provider could not answer.
///
/// Messages name the image, the file or the object, never a credential.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The image is not something this provider can reason about.
    #[error("invalid image {image:?}: {reason}")]
    InvalidImage {
        /// The image from the request.
        image: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A credentials file could not be read.
    #[error("failed to read {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// A credentials document (a Docker config, a Secret) is invalid.
    #[error("invalid credentials in {origin}: {reason}")]
    InvalidCredentials {
        /// Where the document came from: a path, `secret ns/name`.
        origin: String,
        /// What is wrong, naming the field but not its value.
        reason: String,
    },
    /// The backend holding the credentials failed or could not be reached.
    #[error("{backend} failed")]
    Backend {
        /// Which backend: `rancher`, `kubernetes secret ns/name`.
        backend: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
}

/// Result of a provider.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Answers the kubelet's question: which credentials to use for an image.
///
/// # Contract
///
/// - Return `Ok` with the credentials you have for the image, keyed by patterns
///   that [`matches`](crate::matching::matches) the image (for an image on
///   `host:5000` the key must carry `:5000`); return `Ok` with an empty `auth`
///   when you have nothing for it ([`Response::empty`] is never cached).
/// - Return `Err` when you cannot tell (the backend is down, the file is
///   unreadable): the kubelet then caches nothing and asks again on the next pull.
/// - Pick [`CacheKeyType`](crate::model::CacheKeyType) by what your answer
///   depends on: the repository (`Image`), the registry (`Registry`), or nothing
///   (`Global`).
/// - Never log a password or a token.
#[async_trait]
pub trait CredentialProvider: Send + Sync + 'static {
    /// The credentials for `request.image`.
    async fn credentials(&self, request: &Request) -> Result<Response>;
}

#[async_trait]
impl<P: CredentialProvider + ?Sized> CredentialProvider for Arc<P> {
    async fn credentials(&self, request: &Request) -> Result<Response> {
        (**self).credentials(request).await
    }
}

#[async_trait]
impl<P: CredentialProvider + ?Sized> CredentialProvider for Box<P> {
    async fn credentials(&self, request: &Request) -> Result<Response> {
        (**self).credentials(request).await
    }
}
