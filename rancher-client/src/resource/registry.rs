//! `registry` and `registryCredential`.

use serde::{Deserialize, Serialize};

use super::{Extra, ResourceMeta, impl_resource};
use crate::Secret;

/// A private registry, e.g. `quay.io`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Registry {
    /// Common fields.
    #[serde(flatten)]
    pub meta: ResourceMeta,
    /// Host (and optional port) of the registry; required on create.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub server_address: String,
    /// Fields this crate does not model, kept for round trips.
    #[serde(flatten)]
    pub extra: Extra,
}

impl_resource!(Registry, "registry", "registries");

impl Registry {
    /// A registry to create.
    pub fn new(server_address: impl Into<String>) -> Self {
        Self {
            server_address: server_address.into(),
            ..Default::default()
        }
    }
}

/// A username/password pair for a [`Registry`]; link `registry` leads to it.
///
/// `Debug` never shows [`RegistryCredential::secret_value`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegistryCredential {
    /// Common fields.
    #[serde(flatten)]
    pub meta: ResourceMeta,
    /// The registry this credential is for; required on create.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub registry_id: String,
    /// The username.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub public_value: Option<String>,
    /// The password.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_value: Option<Secret>,
    /// An email (API v1 only; absent in v2-beta).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// Fields this crate does not model, kept for round trips.
    #[serde(flatten)]
    pub extra: Extra,
}

impl_resource!(
    RegistryCredential,
    "registryCredential",
    "registrycredentials"
);

impl RegistryCredential {
    /// A credential to create.
    pub fn new(
        registry_id: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<Secret>,
    ) -> Self {
        Self {
            registry_id: registry_id.into(),
            public_value: Some(username.into()),
            secret_value: Some(password.into()),
            ..Default::default()
        }
    }
}
