//! Rancher environments as Kubernetes groups, and the [`EnvironmentAuthorizer`] that answers
//! from a user's role in the environment a cluster stands for.
//!
//! An authenticator puts each member of an environment in the group
//! `rancher:environment:<id>:<role>` ([`environment_group`]); the authorizer reads the role
//! back from the groups of the SubjectAccessReview and looks the request up in the
//! [`RoleTable`]. It needs no network, so it answers the same while Rancher is down, and a
//! user removed from the environment stops being authorized when their token review expires.

use async_trait::async_trait;

use crate::authz::{Attributes, Authorizer, Decision};
use crate::error::Result;
use crate::identity::SYSTEM_PREFIX;
use crate::roles::{RoleTable, RoleVerdict};

/// The prefix of environment groups.
pub const GROUP_PREFIX: &str = "rancher:environment:";

/// The group of `role` members of environment `environment`:
/// `rancher:environment:<id>:<role>`.
pub fn environment_group(environment: &str, role: &str) -> String {
    format!("{GROUP_PREFIX}{environment}:{role}")
}

/// The roles `groups` give in `environment`, in group order.
pub fn roles_in<'a>(
    groups: impl IntoIterator<Item = &'a String>,
    environment: &str,
) -> Vec<&'a str> {
    groups
        .into_iter()
        .filter_map(|g| {
            g.strip_prefix(GROUP_PREFIX)?
                .strip_prefix(environment)?
                .strip_prefix(':')
        })
        .filter(|role| !role.is_empty() && !role.contains(':'))
        .collect()
}

/// Decides from the user's role in one environment.
///
/// - A user in no `rancher:environment:<id>:*` group of this environment, and every
///   `system:` user: no opinion (the next authorizer decides).
/// - Otherwise each role the groups name is evaluated: allowed if any role allows; denied if
///   none allows and one denies; else no opinion. Roles the table does not know are skipped.
#[derive(Clone, Debug)]
pub struct EnvironmentAuthorizer {
    environment: String,
    table: RoleTable,
}

impl EnvironmentAuthorizer {
    /// An authorizer for `environment` with `table`.
    pub fn new(environment: impl Into<String>, table: RoleTable) -> Self {
        Self {
            environment: environment.into(),
            table,
        }
    }

    /// The environment id.
    pub fn environment(&self) -> &str {
        &self.environment
    }

    /// The decision, computed without awaiting anything.
    pub fn decide(&self, attributes: &Attributes) -> Decision {
        let user = &attributes.user;
        if user.username.starts_with(SYSTEM_PREFIX) {
            return Decision::no_opinion(format!(
                "{:?} is a system user; rancher-auth leaves system users to other authorizers",
                user.username
            ));
        }
        let roles = roles_in(&user.groups, &self.environment);
        if roles.is_empty() {
            return Decision::no_opinion(format!(
                "user {:?} is not a member of Rancher environment {}",
                user.username, self.environment
            ));
        }
        let mut denied = None;
        let mut known = Vec::new();
        for role_name in &roles {
            let Some(role) = self.table.role(role_name) else {
                continue;
            };
            known.push(*role_name);
            match role.evaluate(&attributes.request) {
                RoleVerdict::Allowed(_) => {
                    return Decision::allow(format!(
                        "role {role_name} in Rancher environment {} allows {attributes}",
                        self.environment
                    ));
                }
                RoleVerdict::Denied(_) if denied.is_none() => denied = Some(*role_name),
                RoleVerdict::Denied(_) | RoleVerdict::NotCovered => {}
            }
        }
        if let Some(role_name) = denied {
            return Decision::deny(format!(
                "role {role_name} in Rancher environment {} does not allow {attributes}",
                self.environment
            ));
        }
        if known.is_empty() {
            return Decision::no_opinion(format!(
                "role {} in Rancher environment {} is not in the role table",
                roles.join(", "),
                self.environment
            ));
        }
        Decision::no_opinion(format!(
            "role {} in Rancher environment {} does not allow {attributes}",
            known.join(", "),
            self.environment
        ))
    }
}

#[async_trait]
impl Authorizer for EnvironmentAuthorizer {
    async fn authorize(&self, attributes: &Attributes) -> Result<Decision> {
        Ok(self.decide(attributes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::{ResourceAttributes, Verdict};
    use crate::identity::UserInfo;

    fn ask(authz: &EnvironmentAuthorizer, groups: &[&str], r: ResourceAttributes) -> Decision {
        let user = UserInfo::new("alice").with_groups(groups.iter().copied());
        authz.decide(&Attributes::resource(user, r))
    }

    #[test]
    fn groups_name_roles_in_one_environment_only() {
        let groups: Vec<String> = [
            "rancher:environment:1a5:member",
            "rancher:environment:1a55:owner",
            "rancher:environment:1a5:",
            "rancher:environment:1a5:a:b",
            "system:authenticated",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(roles_in(&groups, "1a5"), ["member"]);
        assert_eq!(
            environment_group("1a5", "owner"),
            "rancher:environment:1a5:owner"
        );
    }

    #[test]
    fn decisions_follow_the_role_and_say_why() {
        let authz = EnvironmentAuthorizer::new("1a5", RoleTable::default());
        let create_cr =
            || ResourceAttributes::new("create", "rbac.authorization.k8s.io", "clusterroles");

        let d = ask(&authz, &["rancher:environment:1a5:owner"], create_cr());
        assert_eq!(d.verdict, Verdict::Allow);
        let d = ask(&authz, &["rancher:environment:1a5:member"], create_cr());
        assert_eq!(d.verdict, Verdict::Deny);
        assert_eq!(
            d.reason,
            "role member in Rancher environment 1a5 does not allow create \
             clusterroles.rbac.authorization.k8s.io at cluster scope"
        );
        let d = ask(
            &authz,
            &["rancher:environment:1a5:readonly"],
            ResourceAttributes::new("create", "", "pods").in_namespace("web"),
        );
        assert_eq!(d.verdict, Verdict::NoOpinion);
        // Another environment's owner is nobody here.
        let d = ask(&authz, &["rancher:environment:1a6:owner"], create_cr());
        assert_eq!(d.verdict, Verdict::NoOpinion);
        assert!(
            d.reason.contains("not a member of Rancher environment 1a5"),
            "{}",
            d.reason
        );
        // Two roles: the more generous wins over a deny of the other.
        let d = ask(
            &authz,
            &[
                "rancher:environment:1a5:readonly",
                "rancher:environment:1a5:owner",
            ],
            ResourceAttributes::new("get", "", "secrets").in_namespace("web"),
        );
        assert_eq!(d.verdict, Verdict::Allow);
        // A role the table does not know gives nothing.
        let d = ask(&authz, &["rancher:environment:1a5:superuser"], create_cr());
        assert_eq!(d.verdict, Verdict::NoOpinion);
        // System users are left to others, whatever groups they claim.
        let user =
            UserInfo::new("system:kube-scheduler").with_group("rancher:environment:1a5:owner");
        let d = authz.decide(&Attributes::resource(user, create_cr()));
        assert_eq!(d.verdict, Verdict::NoOpinion);
    }
}
