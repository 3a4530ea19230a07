//! Several providers asked in order.

use std::sync::Arc;

use async_trait::async_trait;

use super::{CredentialProvider, Result};
use crate::model::{Request, Response};

/// Asks its providers in order and returns the first answer that holds a
/// credential for the image (as [`Response::lookup`] decides it).
///
/// When no provider has one: if any provider failed, the first failure is
/// returned, so that the kubelet does not cache an empty answer while a backend
/// is down; otherwise the answer is [`Response::empty`].
#[derive(Clone, Default)]
pub struct CompositeProvider {
    providers: Vec<Arc<dyn CredentialProvider>>,
}

impl CompositeProvider {
    /// A composite with no providers; it answers [`Response::empty`].
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a provider, asked after the ones already added.
    pub fn with(mut self, provider: impl CredentialProvider) -> Self {
        self.providers.push(Arc::new(provider));
        self
    }

    /// Appends a shared provider.
    pub fn push(&mut self, provider: Arc<dyn CredentialProvider>) {
        self.providers.push(provider);
    }

    /// The number of providers.
    pub fn len(&self) -> usize {
        self.providers.len()
    }

    /// Whether there are no providers.
    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }
}

impl std::fmt::Debug for CompositeProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CompositeProvider")
            .field("providers", &self.providers.len())
            .finish()
    }
}

#[async_trait]
impl CredentialProvider for CompositeProvider {
    async fn credentials(&self, request: &Request) -> Result<Response> {
        let mut first_error = None;
        for (index, provider) in self.providers.iter().enumerate() {
            match provider.credentials(request).await {
                Ok(response) if !response.lookup(&request.image).is_empty() => {
                    return Ok(response);
                }
                Ok(_) => {}
                Err(error) => {
                    tracing::debug!(provider = index, image = %request.image, %error, "provider failed");
                    first_error.get_or_insert(error);
                }
            }
        }
        match first_error {
            Some(error) => Err(error),
            None => Ok(Response::empty()),
        }
    }
}
