//! `projectMember` and `identity`: who belongs to an environment, with which role, and who an
//! API key is.

use serde::{Deserialize, Serialize};

use super::{Extra, ResourceMeta, Scope, impl_resource};

/// The roles a member can have in an environment, as Rancher spells them.
pub mod role {
    /// Manages the environment, its members and everything in it.
    pub const OWNER: &str = "owner";
    /// Uses the environment fully, but does not manage its members.
    pub const MEMBER: &str = "member";
    /// Deploys and manages services, but not the hosts or the environment.
    pub const RESTRICTED: &str = "restricted";
    /// Sees everything, changes nothing.
    pub const READONLY: &str = "readonly";
    /// Every role, most privileged first.
    pub const ALL: [&str; 4] = [OWNER, MEMBER, RESTRICTED, READONLY];
}

/// The `externalIdType` of an identity from Rancher's own user accounts.
pub const RANCHER_ID: &str = "rancher_id";

/// A member of an environment (project): one identity (a user, or a group such as an LDAP
/// group or a GitHub team) with one role.
///
/// Members live at the API root (`/v2-beta/projectmembers`), filtered by `projectId`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProjectMember {
    /// Common fields.
    #[serde(flatten)]
    pub meta: ResourceMeta,
    /// The environment.
    #[serde(default)]
    pub project_id: String,
    /// The identity's id in its source (`1a7` for a Rancher account).
    #[serde(default)]
    pub external_id: String,
    /// The identity's source: [`RANCHER_ID`], `github_user`, `github_team`, `ldap_user`,
    /// `ldap_group`, …
    #[serde(default)]
    pub external_id_type: String,
    /// One of [`role::ALL`].
    #[serde(default)]
    pub role: String,
    /// Fields this crate does not model, kept for round trips.
    #[serde(flatten)]
    pub extra: Extra,
}

impl_resource!(ProjectMember, "projectMember", "projectmembers", Scope::Api);

impl ProjectMember {
    /// A member to create: `identity` with `role` in `project_id`.
    pub fn new(
        project_id: impl Into<String>,
        identity: &Identity,
        role: impl Into<String>,
    ) -> Self {
        Self {
            project_id: project_id.into(),
            external_id: identity.external_id.clone(),
            external_id_type: identity.external_id_type.clone(),
            role: role.into(),
            ..Default::default()
        }
    }

    /// Whether this member is `identity`.
    pub fn is(&self, identity: &Identity) -> bool {
        self.external_id == identity.external_id
            && self.external_id_type == identity.external_id_type
    }
}

/// An identity: a user or a group, from Rancher's own accounts or an external directory.
///
/// `GET /v2-beta/identities` with an account's API key lists the identities of that key's
/// account: the user itself (`user: true`) and the groups it belongs to. Rancher's 2017
/// Kubernetes authentication webhook resolved a token exactly that way.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// Common fields (the id is `<externalIdType>:<externalId>`).
    #[serde(flatten)]
    pub meta: ResourceMeta,
    /// The id in its source.
    #[serde(default)]
    pub external_id: String,
    /// The source ([`RANCHER_ID`], `ldap_group`, …).
    #[serde(default)]
    pub external_id_type: String,
    /// The login name (`alice`), or the group's name.
    #[serde(default)]
    pub login: String,
    /// Whether this is a user (not a group).
    #[serde(default)]
    pub user: bool,
    /// Fields this crate does not model, kept for round trips.
    #[serde(flatten)]
    pub extra: Extra,
}

impl_resource!(Identity, "identity", "identities", Scope::Api);

impl Identity {
    /// `<externalIdType>:<externalId>`, the identity's id.
    pub fn principal_id(&self) -> String {
        format!("{}:{}", self.external_id_type, self.external_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_and_identities_read_rancher_json() {
        let member: ProjectMember = serde_json::from_value(serde_json::json!({
            "id": "1pm3", "type": "projectMember", "projectId": "1a5",
            "externalId": "1a7", "externalIdType": "rancher_id", "role": "owner", "name": "alice",
        }))
        .unwrap();
        let identity: Identity = serde_json::from_value(serde_json::json!({
            "id": "rancher_id:1a7", "type": "identity", "externalId": "1a7",
            "externalIdType": "rancher_id", "login": "alice", "user": true, "me": true,
        }))
        .unwrap();
        assert!(member.is(&identity));
        assert_eq!(identity.principal_id(), "rancher_id:1a7");
        assert_eq!(identity.extra["me"], true);
        let new = ProjectMember::new("1a5", &identity, role::READONLY);
        assert_eq!(
            serde_json::to_value(&new).unwrap(),
            serde_json::json!({"projectId": "1a5", "externalId": "1a7",
                "externalIdType": "rancher_id", "role": "readonly"})
        );
    }
}
