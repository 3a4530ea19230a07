//! `stack` (v2-beta; `environment` in API v1).

use serde::{Deserialize, Serialize};

use super::{Extra, ResourceMeta, impl_resource};

/// A stack: a named group of services, e.g. `kubernetes-ingress-lbs`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stack {
    /// Common fields.
    #[serde(flatten)]
    pub meta: ResourceMeta,
    /// An id chosen by the creator, e.g. `kubernetes-ingress-lbs://`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Whether to start the stack's services when created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start_on_create: Option<bool>,
    /// Ids of the services in the stack.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_ids: Vec<String>,
    /// Fields this crate does not model, kept for round trips.
    #[serde(flatten)]
    pub extra: Extra,
}

impl_resource!(Stack, "stack", "stacks");

impl Stack {
    /// A stack to create, with a name and an external id.
    pub fn new(name: impl Into<String>, external_id: impl Into<String>) -> Self {
        Self {
            meta: ResourceMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            external_id: Some(external_id.into()),
            ..Default::default()
        }
    }
}
