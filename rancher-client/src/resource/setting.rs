//! `setting`.

use serde::{Deserialize, Serialize};

use super::{Extra, ResourceMeta, impl_resource};

/// The setting holding the load balancer image, read as `docker:<value>` for `imageUuid`.
pub const LB_INSTANCE_IMAGE: &str = "lb.instance.image";

/// A server setting, e.g. [`LB_INSTANCE_IMAGE`]. Its id is its name.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Setting {
    /// Common fields.
    #[serde(flatten)]
    pub meta: ResourceMeta,
    /// The effective value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// The value currently active on the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active_value: Option<String>,
    /// Fields this crate does not model, kept for round trips.
    #[serde(flatten)]
    pub extra: Extra,
}

impl_resource!(Setting, "setting", "settings");

impl Setting {
    /// The value, falling back to `activeValue`.
    pub fn effective_value(&self) -> Option<&str> {
        self.value.as_deref().or(self.active_value.as_deref())
    }
}
