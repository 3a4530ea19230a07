//! Typed Rancher resources and the pieces every resource shares.
//!
//! Each resource struct flattens a [`ResourceMeta`] (id, state, links, actions, …) and keeps any
//! field this crate does not model in `extra`, so a resource read from Rancher, changed and
//! sent back with [`Api::update`](crate::Api::update) loses nothing.

mod certificate;
mod host;
mod load_balancer;
mod member;
mod project;
mod registry;
mod setting;
mod stack;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize, de::DeserializeOwned};
use serde_json::{Map, Value};

pub use certificate::Certificate;
pub use host::{Host, IpAddress};
pub use load_balancer::{
    InServiceStrategy, LaunchConfig, LbConfig, LoadBalancerService, PortRule, Protocol,
    PublicEndpoint, ServiceUpgrade, StickinessPolicy, parse_public_port, scheduler,
};
pub use member::{Identity, ProjectMember, RANCHER_ID, role};
pub use project::{
    KubernetesAccess, Project, credentials_from_kubernetes_token, kubernetes_proxy_path,
    kubernetes_token,
};
pub use registry::{Registry, RegistryCredential};
pub use setting::{LB_INSTANCE_IMAGE, Setting};
pub use stack::Stack;

/// A Rancher resource type with its own collection under the project URL.
pub trait Resource: Serialize + DeserializeOwned + Clone + Send + Sync + 'static {
    /// The resource `type`, e.g. `loadBalancerService`.
    const TYPE: &'static str;
    /// The collection path segment, e.g. `loadbalancerservices`.
    const COLLECTION: &'static str;
    /// Where the collection lives: under the project URL (the default) or at the API root.
    const SCOPE: Scope = Scope::Project;

    /// The common fields.
    fn meta(&self) -> &ResourceMeta;

    /// The common fields, mutably.
    fn meta_mut(&mut self) -> &mut ResourceMeta;

    /// `type/id`, for messages.
    fn display_name(&self) -> String {
        format!("{}/{}", Self::TYPE, self.meta().id)
    }
}

/// Where a resource type's collection lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Scope {
    /// Under the project URL (`CATTLE_URL`), e.g. `/v2-beta/projects/1a5/stacks`: the
    /// resources of one environment.
    Project,
    /// At the versioned API root, e.g. `/v2-beta/projects` or `/v2-beta/apikeys`: resources
    /// of the Rancher server or of the account, such as projects themselves.
    Api,
}

/// Fields every Rancher resource carries.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceMeta {
    /// The id, e.g. `1s5`. Empty on an object that was not created yet.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub id: String,
    /// The resource type, e.g. `loadBalancerService`.
    #[serde(rename = "type", default, skip_serializing_if = "String::is_empty")]
    pub kind: String,
    /// The name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The lifecycle state: `active`, `inactive`, `activating`, `removed`, `purged`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    /// `yes` while the resource is in a transitioning state, `error` when the transition
    /// failed, `no` otherwise.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transitioning: Option<String>,
    /// A message about the transition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transitioning_message: Option<String>,
    /// The uuid.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uuid: Option<String>,
    /// When it was created (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    /// When it was removed (RFC 3339); `None` while it is not removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed: Option<String>,
    /// Links by name (`self`, `registry`, `ipAddresses`, …) to URLs.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub links: BTreeMap<String, String>,
    /// Actions available in the current state, by name, to URLs. The presence of a key is a
    /// state test: `activate` present means inactive, `deactivate` present means active,
    /// `purge` present means removed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub actions: BTreeMap<String, String>,
}

/// Lifecycle states, as Rancher spells them.
pub mod state {
    /// Running and serving.
    pub const ACTIVE: &str = "active";
    /// Created or deactivated, not running.
    pub const INACTIVE: &str = "inactive";
    /// Removed; can still be purged.
    pub const REMOVED: &str = "removed";
    /// Gone for good.
    pub const PURGED: &str = "purged";
    /// An in-service upgrade finished and waits for `finishupgrade`.
    pub const UPGRADED: &str = "upgraded";
    /// Being created.
    pub const REGISTERING: &str = "registering";
    /// Being activated.
    pub const ACTIVATING: &str = "activating";
    /// Being deactivated.
    pub const DEACTIVATING: &str = "deactivating";
    /// Updated while active.
    pub const UPDATING_ACTIVE: &str = "updating-active";
    /// Updated while inactive.
    pub const UPDATING_INACTIVE: &str = "updating-inactive";
    /// Being upgraded.
    pub const UPGRADING: &str = "upgrading";
    /// Finishing an upgrade.
    pub const FINISHING_UPGRADE: &str = "finishing-upgrade";
    /// Being removed.
    pub const REMOVING: &str = "removing";
    /// Being purged.
    pub const PURGING: &str = "purging";
    /// Being restarted.
    pub const RESTARTING: &str = "restarting";
    /// Rolling back an upgrade.
    pub const ROLLING_BACK: &str = "rolling-back";
    /// Requested, not yet processed.
    pub const REQUESTED: &str = "requested";

    /// States a resource passes through on its way to a stable one.
    pub const TRANSITIONING: &[&str] = &[
        REGISTERING,
        ACTIVATING,
        DEACTIVATING,
        UPDATING_ACTIVE,
        UPDATING_INACTIVE,
        UPGRADING,
        FINISHING_UPGRADE,
        REMOVING,
        PURGING,
        RESTARTING,
        ROLLING_BACK,
        REQUESTED,
        "creating",
        "canceling-upgrade",
        "restoring",
    ];
}

/// Action names, as used in `?action=<name>`.
pub mod action {
    /// Start a resource.
    pub const ACTIVATE: &str = "activate";
    /// Stop a resource.
    pub const DEACTIVATE: &str = "deactivate";
    /// Remove a resource (it stays visible as `removed` until purged).
    pub const REMOVE: &str = "remove";
    /// Purge a removed resource.
    pub const PURGE: &str = "purge";
    /// Start an in-service upgrade of a service.
    pub const UPGRADE: &str = "upgrade";
    /// Finish an in-service upgrade.
    pub const FINISH_UPGRADE: &str = "finishupgrade";
    /// Update (present when the resource can be updated).
    pub const UPDATE: &str = "update";
}

impl ResourceMeta {
    /// Whether the resource is in a transitioning state (`transitioning: yes`, or a state from
    /// [`state::TRANSITIONING`]).
    pub fn is_transitioning(&self) -> bool {
        self.transitioning.as_deref() == Some("yes")
            || self
                .state
                .as_deref()
                .is_some_and(|s| state::TRANSITIONING.contains(&s))
    }

    /// Whether the last transition failed (`transitioning: error`).
    pub fn is_failed(&self) -> bool {
        self.transitioning.as_deref() == Some("error")
    }

    /// Whether the resource is removed or purged.
    pub fn is_removed(&self) -> bool {
        self.removed.is_some()
            || matches!(
                self.state.as_deref(),
                Some(state::REMOVED | state::PURGED | state::PURGING | state::REMOVING)
            )
    }

    /// Whether the action is available in the current state.
    pub fn has_action(&self, action: &str) -> bool {
        self.actions.contains_key(action)
    }

    /// The state, or `""`.
    pub fn state(&self) -> &str {
        self.state.as_deref().unwrap_or("")
    }
}

/// One page of a collection: `{"type": "collection", "data": [...], "pagination": {...}}`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Collection<T> {
    /// Always `collection`.
    #[serde(rename = "type", default)]
    pub kind: String,
    /// The resource type of the items.
    #[serde(default)]
    pub resource_type: String,
    /// The items on this page.
    #[serde(default = "Vec::new")]
    pub data: Vec<T>,
    /// Where the next page is.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pagination: Option<Pagination>,
    /// Links (`self`).
    #[serde(default)]
    pub links: BTreeMap<String, String>,
    /// Collection actions.
    #[serde(default)]
    pub actions: BTreeMap<String, String>,
    /// The filters the server applied, by field.
    #[serde(default, skip_serializing_if = "Map::is_empty")]
    pub filters: Map<String, Value>,
}

/// Pagination block of a collection.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Pagination {
    /// URL of the first page.
    #[serde(default)]
    pub first: Option<String>,
    /// URL of the previous page.
    #[serde(default)]
    pub previous: Option<String>,
    /// URL of the next page; `None` on the last page.
    #[serde(default)]
    pub next: Option<String>,
    /// Page size.
    #[serde(default)]
    pub limit: Option<u64>,
    /// Total count, when the server knows it.
    #[serde(default)]
    pub total: Option<u64>,
    /// Whether this page is a part of the result.
    #[serde(default)]
    pub partial: bool,
}

/// Implements [`Resource`] for a struct with a flattened `meta` field.
macro_rules! impl_resource {
    ($ty:ty, $type_name:literal, $collection:literal) => {
        $crate::resource::impl_resource!(
            $ty,
            $type_name,
            $collection,
            $crate::resource::Scope::Project
        );
    };
    ($ty:ty, $type_name:literal, $collection:literal, $scope:expr) => {
        impl $crate::resource::Resource for $ty {
            const TYPE: &'static str = $type_name;
            const COLLECTION: &'static str = $collection;
            const SCOPE: $crate::resource::Scope = $scope;

            fn meta(&self) -> &$crate::resource::ResourceMeta {
                &self.meta
            }

            fn meta_mut(&mut self) -> &mut $crate::resource::ResourceMeta {
                &mut self.meta
            }
        }
    };
}
pub(crate) use impl_resource;

/// A JSON object holding the fields a struct does not model.
pub type Extra = Map<String, Value>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transitioning_from_flag_or_state() {
        let mut m = ResourceMeta {
            state: Some("active".into()),
            ..Default::default()
        };
        assert!(!m.is_transitioning());
        m.state = Some("updating-active".into());
        assert!(m.is_transitioning());
        m.state = Some("custom".into());
        m.transitioning = Some("yes".into());
        assert!(m.is_transitioning());
    }
}
