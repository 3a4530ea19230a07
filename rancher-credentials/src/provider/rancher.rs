//! Credentials of Rancher's private registries, listed through `rancher-client`.
//!
//! This is the modern form of the kubelet's old in-tree `rancher-registry-creds`
//! provider, with its faults fixed: every registry gets its own credential (the
//! original stored a pointer to the Go loop variable, so every registry got the
//! last credential's), removed and inactive objects are skipped, lists are
//! paginated, and registries added later are served without restarting anything.

use std::{collections::BTreeMap, fmt, time::Duration};

use async_trait::async_trait;
use rancher_client::{Client, ListParams, Registry, RegistryCredential, resource::state};

use super::{CredentialProvider, Error, Result};
use crate::{
    matching,
    model::{AuthConfig, CacheKeyType, Request, Response},
};

/// Settings of a [`RancherProvider`].
#[derive(Clone, Debug, Default)]
#[non_exhaustive]
pub struct RancherConfig {
    /// The `cacheDuration` to answer with; `None` leaves it to the kubelet's
    /// `defaultCacheDuration`.
    pub cache_duration: Option<Duration>,
    /// Page size of the list calls; `None` uses Rancher's default (100).
    pub page_size: Option<u32>,
}

impl RancherConfig {
    /// Sets the cache duration.
    pub fn cache_duration(mut self, duration: Option<Duration>) -> Self {
        self.cache_duration = duration;
        self
    }

    /// Sets the page size of the list calls.
    pub fn page_size(mut self, size: u32) -> Self {
        self.page_size = Some(size);
        self
    }
}

/// Answers with the credentials of every active registry of a Rancher project.
///
/// Each request lists the registries and the registry credentials (two paginated
/// list calls, not one call per credential), keeps the active ones, and returns
/// `serverAddress → {publicValue, secretValue}` for every registry with an active
/// credential. The answer does not depend on the image, so it is `Global`: the
/// kubelet runs the plugin once per cache period for all images. When a registry
/// has several active credentials, the most recently created one is used.
#[derive(Clone)]
pub struct RancherProvider {
    client: Client,
    config: RancherConfig,
}

impl fmt::Debug for RancherProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RancherProvider")
            .field("client", &self.client)
            .field("config", &self.config)
            .finish()
    }
}

impl RancherProvider {
    /// A provider reading through `client`.
    pub fn new(client: Client, config: RancherConfig) -> Self {
        Self { client, config }
    }

    fn params(&self) -> ListParams {
        let params = ListParams::new().removed_null();
        match self.config.page_size {
            Some(size) => params.limit(size),
            None => params,
        }
    }

    /// Every active registry's credential, keyed by its normalised server address.
    pub async fn registry_credentials(&self) -> Result<BTreeMap<String, AuthConfig>> {
        let params = self.params();
        let registries: Vec<Registry> = self
            .client
            .registries()
            .list(&params)
            .await
            .map_err(backend)?;
        let credentials: Vec<RegistryCredential> = self
            .client
            .registry_credentials()
            .list(&params)
            .await
            .map_err(backend)?;

        let mut addresses = BTreeMap::new();
        for registry in &registries {
            if !is_active(&registry.meta) {
                continue;
            }
            match matching::normalize_key(&registry.server_address) {
                Some(address) if !registry.server_address.trim().is_empty() => {
                    addresses.insert(registry.meta.id.as_str(), address);
                }
                _ => tracing::warn!(
                    registry = %registry.meta.id,
                    server_address = %registry.server_address,
                    "registry skipped: its serverAddress is not a registry address"
                ),
            }
        }

        // Newest first, so the first credential seen for a registry wins.
        let mut active: Vec<&RegistryCredential> = credentials
            .iter()
            .filter(|credential| is_active(&credential.meta))
            .collect();
        newest_first(&mut active);
        let mut auth = BTreeMap::new();
        for credential in active {
            let Some(address) = addresses.get(credential.registry_id.as_str()) else {
                continue;
            };
            if auth.contains_key(address) {
                tracing::debug!(
                    registry = %credential.registry_id,
                    credential = %credential.meta.id,
                    "older credential for the same registry ignored"
                );
                continue;
            }
            // Each entry owns copies of its own credential's values.
            let entry = AuthConfig::new(
                credential.public_value.clone().unwrap_or_default(),
                credential
                    .secret_value
                    .as_ref()
                    .map(|secret| secret.expose().to_owned())
                    .unwrap_or_default(),
            );
            auth.insert(address.clone(), entry);
        }
        Ok(auth)
    }
}

/// Sorts by `created`, then id, newest first. Ids count up (`1c9` before
/// `1c10`), so they compare by length, then text.
fn newest_first(credentials: &mut [&RegistryCredential]) {
    credentials.sort_by_key(|c| {
        std::cmp::Reverse((c.meta.created.clone(), c.meta.id.len(), c.meta.id.clone()))
    });
}

/// Not removed, and in the `active` state.
fn is_active(meta: &rancher_client::resource::ResourceMeta) -> bool {
    meta.removed.is_none() && meta.state.as_deref() == Some(state::ACTIVE)
}

fn backend(error: rancher_client::Error) -> Error {
    Error::Backend {
        backend: "rancher".to_owned(),
        source: Box::new(error),
    }
}

#[async_trait]
impl CredentialProvider for RancherProvider {
    async fn credentials(&self, _request: &Request) -> Result<Response> {
        let auth = self.registry_credentials().await?;
        let mut response =
            Response::new(CacheKeyType::Global).with_cache_duration(self.config.cache_duration);
        response.auth = auth;
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn credential(id: &str, created: &str) -> RegistryCredential {
        let mut credential = RegistryCredential::new("1sp1", id, "password");
        credential.meta.id = id.to_owned();
        credential.meta.created = Some(created.to_owned());
        credential
    }

    #[test]
    fn newest_by_created_then_by_numeric_id() {
        let a = credential("1c9", "2026-01-01T00:00:00Z");
        let b = credential("1c10", "2026-01-01T00:00:00Z");
        let c = credential("1c2", "2026-03-01T00:00:00Z");
        let mut all = vec![&a, &b, &c];
        newest_first(&mut all);
        let ids: Vec<&str> = all.iter().map(|c| c.meta.id.as_str()).collect();
        assert_eq!(ids, ["1c2", "1c10", "1c9"]);
    }
}
