//! The role → permission table, as data.
//!
//! [`RoleTable::default`] is the table in `src/roles/default.yaml` (shown in the crate
//! README, generated from the data by [`RoleTable::to_markdown`]):
//!
//! | role | in short |
//! | --- | --- |
//! | `owner` | everything |
//! | `member` | everything but RBAC objects, nodes and cluster-scoped writes |
//! | `restricted` | workloads in namespaces only |
//! | `readonly` | get, list and watch on everything except Secrets |
//!
//! A file in the same shape ([`RoleTable::with_overrides`], the binary's `--roles FILE`)
//! replaces roles of the same name and adds new ones.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use crate::authz::{NonResourceAttributes, Request, ResourceAttributes};

/// The default table, as shipped.
pub const DEFAULT_ROLES_YAML: &str = include_str!("roles/default.yaml");

/// A role file or table that is not valid: the origin, the field path and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {field}: {reason}")]
pub struct RoleError {
    /// Where the table came from (a path, `default`).
    pub origin: String,
    /// The field, as a path: `roles.member.allow[1].apiGroups`.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

/// Where a rule applies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Scope {
    /// Namespaced and cluster-scoped requests alike.
    #[default]
    Any,
    /// Requests inside a namespace.
    Namespaced,
    /// Requests with no namespace: cluster-scoped objects, and lists or watches across all
    /// namespaces.
    Cluster,
}

/// One RBAC-shaped rule.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct Rule {
    /// Verbs (`get`, `create`, ...; `*` for all).
    #[serde(default)]
    pub verbs: Vec<String>,
    /// API groups (`""` for core, `*` for all); required with `resources`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub api_groups: Vec<String>,
    /// Resources: `pods`, `pods/log`, `pods/*`, `*/scale`, `*`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resources: Vec<String>,
    /// Where a resource rule applies.
    #[serde(default, skip_serializing_if = "is_any")]
    pub scope: Scope,
    /// Non-resource paths: `/healthz`, `/api/*`, `*`.
    #[serde(
        default,
        rename = "nonResourceURLs",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub non_resource_urls: Vec<String>,
}

fn is_any(scope: &Scope) -> bool {
    *scope == Scope::Any
}

impl Rule {
    /// Whether the rule covers `request`.
    pub fn matches(&self, request: &Request) -> bool {
        match request {
            Request::Resource(r) => self.matches_resource(r),
            Request::NonResource(n) => self.matches_non_resource(n),
        }
    }

    /// `*` matches every verb, but only verbs: a request whose verb is empty or not
    /// lower-case letters matches no rule.
    fn matches_verb(&self, verb: &str) -> bool {
        is_verb(verb) && self.verbs.iter().any(|v| v == "*" || v == verb)
    }

    fn matches_resource(&self, r: &ResourceAttributes) -> bool {
        if self.resources.is_empty() || !self.matches_verb(&r.verb) {
            return false;
        }
        let scope_ok = match self.scope {
            Scope::Any => true,
            Scope::Namespaced => !r.namespace.is_empty(),
            Scope::Cluster => r.namespace.is_empty(),
        };
        scope_ok
            && self.api_groups.iter().any(|g| g == "*" || *g == r.group)
            && self
                .resources
                .iter()
                .any(|pattern| resource_matches(pattern, &r.resource, &r.subresource))
    }

    fn matches_non_resource(&self, n: &NonResourceAttributes) -> bool {
        self.matches_verb(&n.verb)
            && self.non_resource_urls.iter().any(|pattern| {
                pattern == "*"
                    || *pattern == n.path
                    || pattern
                        .strip_suffix('*')
                        .is_some_and(|prefix| n.path.starts_with(prefix))
            })
    }

    fn validate(&self, field: &str) -> Result<(), (String, String)> {
        let err = |f: &str, reason: &str| Err((format!("{field}.{f}"), reason.to_owned()));
        if self.verbs.is_empty() {
            return err("verbs", "at least one verb is required");
        }
        for (i, verb) in self.verbs.iter().enumerate() {
            if verb != "*" && !is_verb(verb) {
                return err(
                    &format!("verbs[{i}]"),
                    &format!("{verb:?} is not a verb (lower-case letters, or \"*\")"),
                );
            }
        }
        match (self.resources.is_empty(), self.non_resource_urls.is_empty()) {
            (true, true) => {
                return err(
                    "resources",
                    "either resources or nonResourceURLs is required",
                );
            }
            (false, false) => {
                return err(
                    "nonResourceURLs",
                    "a rule has either resources or nonResourceURLs, not both",
                );
            }
            (false, true) => {
                if self.api_groups.is_empty() {
                    return err(
                        "apiGroups",
                        "required when resources is set (\"\" is the core group)",
                    );
                }
                for (i, r) in self.resources.iter().enumerate() {
                    if !valid_resource_pattern(r) {
                        return err(
                            &format!("resources[{i}]"),
                            &format!(
                                "{r:?} is not a resource pattern (pods, pods/log, pods/*, */scale, *)"
                            ),
                        );
                    }
                }
            }
            (true, false) => {
                if !self.api_groups.is_empty() || self.scope != Scope::Any {
                    return err(
                        "apiGroups",
                        "apiGroups and scope apply to resources, not to nonResourceURLs",
                    );
                }
                for (i, u) in self.non_resource_urls.iter().enumerate() {
                    let star = u.find('*');
                    let ok =
                        u == "*" || (u.starts_with('/') && star.is_none_or(|at| at == u.len() - 1));
                    if !ok {
                        return err(
                            &format!("nonResourceURLs[{i}]"),
                            &format!(
                                "{u:?} is not a path pattern (/healthz, /api/*, or *; '*' only at the end)"
                            ),
                        );
                    }
                }
            }
        }
        Ok(())
    }
}

fn is_verb(verb: &str) -> bool {
    !verb.is_empty() && verb.bytes().all(|b| b.is_ascii_lowercase())
}

fn resource_matches(pattern: &str, resource: &str, subresource: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.split_once('/') {
        None => subresource.is_empty() && pattern == resource,
        Some(("*", sub)) => !subresource.is_empty() && sub == subresource,
        Some((res, "*")) => !subresource.is_empty() && res == resource,
        Some((res, sub)) => res == resource && sub == subresource,
    }
}

fn valid_resource_pattern(pattern: &str) -> bool {
    let part = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'.'))
    };
    match pattern.split_once('/') {
        None => pattern == "*" || part(pattern),
        Some(("*", "*")) => false,
        Some((res, sub)) => (res == "*" || part(res)) && (sub == "*" || part(sub)),
    }
}

/// One role: what it allows and what it denies outright.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[non_exhaustive]
pub struct Role {
    /// One line on what the role is for.
    #[serde(default)]
    pub description: String,
    /// Requests the role allows.
    #[serde(default)]
    pub allow: Vec<Rule>,
    /// Requests the role denies, whatever `allow` says.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub deny: Vec<Rule>,
}

/// What a role says about a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleVerdict {
    /// A deny rule matched (its index in `deny`).
    Denied(usize),
    /// An allow rule matched (its index in `allow`) and no deny rule did.
    Allowed(usize),
    /// No rule matched.
    NotCovered,
}

impl Role {
    /// Deny rules first, then allow rules.
    pub fn evaluate(&self, request: &Request) -> RoleVerdict {
        if let Some(i) = self.deny.iter().position(|r| r.matches(request)) {
            return RoleVerdict::Denied(i);
        }
        match self.allow.iter().position(|r| r.matches(request)) {
            Some(i) => RoleVerdict::Allowed(i),
            None => RoleVerdict::NotCovered,
        }
    }
}

#[derive(Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct RoleFile {
    roles: BTreeMap<String, Role>,
}

/// Every role by name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoleTable {
    roles: BTreeMap<String, Role>,
}

impl Default for RoleTable {
    /// The shipped table (`src/roles/default.yaml`).
    fn default() -> Self {
        // The shipped table is checked by a unit test; should it ever not parse, an empty
        // table (nobody is allowed anything) is the safe fallback.
        Self::from_yaml(DEFAULT_ROLES_YAML, "default").unwrap_or_else(|_| Self {
            roles: BTreeMap::new(),
        })
    }
}

impl RoleTable {
    /// A table from YAML (or JSON) text in the shape of `default.yaml`; `origin` names it in
    /// errors.
    pub fn from_yaml(text: &str, origin: &str) -> Result<Self, RoleError> {
        let file: RoleFile = serde_saphyr::from_str(text).map_err(|e| RoleError {
            origin: origin.to_owned(),
            field: "roles".to_owned(),
            reason: e.to_string(),
        })?;
        for (name, role) in &file.roles {
            validate_role(name, role).map_err(|(field, reason)| RoleError {
                origin: origin.to_owned(),
                field,
                reason,
            })?;
        }
        Ok(Self { roles: file.roles })
    }

    /// This table with the roles of `other` replacing (or adding to) its own.
    #[must_use]
    pub fn with_overrides(mut self, other: Self) -> Self {
        self.roles.extend(other.roles);
        self
    }

    /// The role called `name`.
    pub fn role(&self, name: &str) -> Option<&Role> {
        self.roles.get(name)
    }

    /// Role names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.roles.keys().map(String::as_str)
    }

    /// The table as YAML, in the shape [`RoleTable::from_yaml`] reads.
    pub fn to_yaml(&self) -> String {
        let file = RoleFile {
            roles: self.roles.clone(),
        };
        serde_saphyr::to_string(&file).unwrap_or_default()
    }

    /// The table as a Markdown table, one line per rule: Rancher's four roles first, from
    /// most to least privileged, then any others by name.
    pub fn to_markdown(&self) -> String {
        const RANCHER_ORDER: [&str; 4] = ["owner", "member", "restricted", "readonly"];
        let mut out = String::from("| role | effect | verbs | on |\n| --- | --- | --- | --- |\n");
        let ordered = RANCHER_ORDER
            .iter()
            .filter_map(|name| self.roles.get_key_value(*name))
            .chain(
                self.roles
                    .iter()
                    .filter(|(name, _)| !RANCHER_ORDER.contains(&name.as_str())),
            );
        for (name, role) in ordered {
            let _ = writeln!(out, "| `{name}` | {} | | |", role.description);
            for (effect, rules) in [("allow", &role.allow), ("deny", &role.deny)] {
                for rule in rules {
                    let _ = writeln!(
                        out,
                        "| | {effect} | {} | {} |",
                        code_list(&rule.verbs),
                        describe_target(rule)
                    );
                }
            }
        }
        out
    }
}

fn code_list(items: &[String]) -> String {
    items
        .iter()
        .map(|i| format!("`{i}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe_target(rule: &Rule) -> String {
    if !rule.non_resource_urls.is_empty() {
        return format!("paths {}", code_list(&rule.non_resource_urls));
    }
    let groups: Vec<String> = rule
        .api_groups
        .iter()
        .map(|g| match g.as_str() {
            "" => "core".to_owned(),
            "*" => "any group".to_owned(),
            g => g.to_owned(),
        })
        .collect();
    let scope = match rule.scope {
        Scope::Any => "",
        Scope::Namespaced => ", in namespaces",
        Scope::Cluster => ", cluster scope",
    };
    format!(
        "{} ({}{scope})",
        code_list(&rule.resources),
        groups.join(", ")
    )
}

fn validate_role(name: &str, role: &Role) -> Result<(), (String, String)> {
    let valid_name = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if !valid_name {
        return Err((
            format!("roles.{name}"),
            "a role name is lower-case letters, digits and '-', at most 63".to_owned(),
        ));
    }
    for (kind, rules) in [("allow", &role.allow), ("deny", &role.deny)] {
        for (i, rule) in rules.iter().enumerate() {
            rule.validate(&format!("roles.{name}.{kind}[{i}]"))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::{NonResourceAttributes, ResourceAttributes};

    fn res(verb: &str, group: &str, resource: &str, ns: &str) -> Request {
        Request::Resource(ResourceAttributes::new(verb, group, resource).in_namespace(ns))
    }

    fn sub(verb: &str, resource: &str, sub: &str, ns: &str) -> Request {
        Request::Resource(
            ResourceAttributes::new(verb, "", resource)
                .subresource(sub)
                .in_namespace(ns),
        )
    }

    fn allowed(table: &RoleTable, role: &str, request: &Request) -> bool {
        matches!(
            table.role(role).unwrap().evaluate(request),
            RoleVerdict::Allowed(_)
        )
    }

    fn denied(table: &RoleTable, role: &str, request: &Request) -> bool {
        matches!(
            table.role(role).unwrap().evaluate(request),
            RoleVerdict::Denied(_)
        )
    }

    #[test]
    fn the_default_table_parses_and_has_the_four_rancher_roles() {
        let table = RoleTable::from_yaml(DEFAULT_ROLES_YAML, "default").unwrap();
        assert_eq!(
            table.names().collect::<Vec<_>>(),
            ["member", "owner", "readonly", "restricted"]
        );
        assert_eq!(table, RoleTable::default());
        // The YAML rendering reads back to the same table.
        assert_eq!(
            RoleTable::from_yaml(&table.to_yaml(), "round trip").unwrap(),
            table
        );
    }

    #[test]
    fn the_default_table_says_what_the_issue_says() {
        let t = RoleTable::default();
        let rbac = "rbac.authorization.k8s.io";
        let create_clusterrole = res("create", rbac, "clusterroles", "");
        // owner: everything.
        for request in [
            create_clusterrole.clone(),
            res("delete", "", "nodes", ""),
            res("get", "", "secrets", "web"),
            Request::NonResource(NonResourceAttributes::new("post", "/anything")),
        ] {
            assert!(allowed(&t, "owner", &request), "{request:?}");
        }
        // member: everything but RBAC objects, nodes and cluster-scoped writes.
        assert!(allowed(
            &t,
            "member",
            &res("create", "apps", "deployments", "web")
        ));
        assert!(allowed(&t, "member", &res("get", "", "secrets", "web")));
        assert!(allowed(&t, "member", &res("list", "", "pods", "")));
        assert!(allowed(&t, "member", &res("get", "", "namespaces", "")));
        assert!(denied(&t, "member", &create_clusterrole));
        assert!(denied(
            &t,
            "member",
            &res("create", rbac, "rolebindings", "web")
        ));
        assert!(denied(&t, "member", &res("list", "", "nodes", "")));
        assert!(denied(&t, "member", &sub("get", "nodes", "proxy", "")));
        assert!(!allowed(&t, "member", &res("create", "", "namespaces", "")));
        assert!(!allowed(
            &t,
            "member",
            &res("deletecollection", "", "pods", "")
        ));
        // restricted: workloads in namespaces only.
        assert!(allowed(&t, "restricted", &res("create", "", "pods", "web")));
        assert!(allowed(
            &t,
            "restricted",
            &sub("create", "pods", "exec", "web")
        ));
        assert!(allowed(
            &t,
            "restricted",
            &res("patch", "apps", "deployments", "web")
        ));
        assert!(!allowed(&t, "restricted", &res("list", "", "nodes", "")));
        assert!(!allowed(&t, "restricted", &res("list", "", "pods", "")));
        assert!(!allowed(
            &t,
            "restricted",
            &res("get", "", "secrets", "web")
        ));
        assert!(!allowed(
            &t,
            "restricted",
            &res("create", "", "namespaces", "")
        ));
        // readonly: get/list/watch on everything except Secrets.
        assert!(allowed(&t, "readonly", &res("list", "", "pods", "web")));
        assert!(allowed(&t, "readonly", &res("watch", "", "nodes", "")));
        assert!(allowed(&t, "readonly", &sub("get", "pods", "log", "web")));
        assert!(denied(&t, "readonly", &res("get", "", "secrets", "web")));
        assert!(denied(&t, "readonly", &res("list", "", "secrets", "")));
        assert!(!allowed(&t, "readonly", &res("create", "", "pods", "web")));
        assert!(!allowed(
            &t,
            "readonly",
            &sub("create", "pods", "exec", "web")
        ));
        // Every role can discover the API and ask what it may do.
        for role in ["owner", "member", "restricted", "readonly"] {
            let discovery =
                Request::NonResource(NonResourceAttributes::new("get", "/apis/apps/v1"));
            assert!(allowed(&t, role, &discovery), "{role}");
            let ssar = res(
                "create",
                "authorization.k8s.io",
                "selfsubjectaccessreviews",
                "",
            );
            assert!(allowed(&t, role, &ssar), "{role}");
        }
    }

    #[test]
    fn resource_patterns_match_like_rbac_plus_subresource_wildcards() {
        assert!(resource_matches("*", "pods", "log"));
        assert!(resource_matches("pods", "pods", ""));
        assert!(!resource_matches("pods", "pods", "log"));
        assert!(resource_matches("pods/log", "pods", "log"));
        assert!(resource_matches("*/scale", "deployments", "scale"));
        assert!(!resource_matches("*/scale", "deployments", ""));
        assert!(resource_matches("nodes/*", "nodes", "proxy"));
        assert!(!resource_matches("nodes/*", "nodes", ""));
    }

    #[test]
    fn overrides_replace_roles_by_name_and_add_new_ones() {
        let file = r#"
roles:
  readonly:
    description: pods only
    allow:
      - verbs: [get, list]
        apiGroups: [""]
        resources: [pods]
  auditor:
    allow:
      - verbs: [get]
        nonResourceURLs: ["/metrics"]
"#;
        let t =
            RoleTable::default().with_overrides(RoleTable::from_yaml(file, "roles.yaml").unwrap());
        assert!(allowed(&t, "readonly", &res("get", "", "pods", "web")));
        assert!(!allowed(&t, "readonly", &res("get", "", "nodes", "")));
        assert!(allowed(
            &t,
            "auditor",
            &Request::NonResource(NonResourceAttributes::new("get", "/metrics"))
        ));
        assert!(
            allowed(&t, "owner", &res("delete", "", "nodes", "")),
            "others stay"
        );
    }

    #[test]
    fn bad_role_files_are_rejected_naming_the_field() {
        let cases = [
            (
                "roles: {m: {allow: [{verbs: [get]}]}}",
                "roles.m.allow[0].resources",
            ),
            (
                "roles: {m: {allow: [{verbs: [get], resources: [pods]}]}}",
                "roles.m.allow[0].apiGroups",
            ),
            (
                "roles: {m: {allow: [{apiGroups: ['*'], resources: [pods]}]}}",
                "roles.m.allow[0].verbs",
            ),
            (
                "roles: {m: {allow: [{verbs: [GET], apiGroups: ['*'], resources: [pods]}]}}",
                "roles.m.allow[0].verbs[0]",
            ),
            (
                "roles: {m: {deny: [{verbs: [get], apiGroups: ['*'], resources: ['Pods!']}]}}",
                "roles.m.deny[0].resources[0]",
            ),
            (
                "roles: {m: {allow: [{verbs: [get], nonResourceURLs: ['healthz']}]}}",
                "roles.m.allow[0].nonResourceURLs[0]",
            ),
            (
                "roles: {m: {allow: [{verbs: [get], nonResourceURLs: ['/a*b']}]}}",
                "roles.m.allow[0].nonResourceURLs[0]",
            ),
            (
                "roles: {m: {allow: [{verbs: [get], apiGroups: [''], resources: [pods], nonResourceURLs: ['/x']}]}}",
                "roles.m.allow[0].nonResourceURLs",
            ),
            ("roles: {M: {}}", "roles.M"),
        ];
        for (text, field) in cases {
            let err = RoleTable::from_yaml(text, "roles.yaml").unwrap_err();
            assert_eq!(err.field, field, "{text}: {err}");
            assert!(err.to_string().starts_with("roles.yaml: "), "{err}");
        }
        // Unknown fields and wrong types are parse errors.
        for text in [
            "roles: {m: {allow: [{verbs: [get], apiGroup: [''], resources: [pods]}]}}",
            "roles: {m: {allow: [{verbs: [get], apiGroups: [''], resources: [pods], scope: Everywhere}]}}",
            "rules: []",
            "roles: 7",
            "",
        ] {
            assert!(RoleTable::from_yaml(text, "roles.yaml").is_err(), "{text}");
        }
    }

    #[test]
    fn the_markdown_rendering_lists_every_rule() {
        let md = RoleTable::default().to_markdown();
        assert!(md.starts_with("| role | effect | verbs | on |"));
        assert!(
            md.contains("| `readonly` | get, list and watch on everything except Secrets | | |")
        );
        assert!(md.contains("| | deny | `*` | `secrets` (core) |"));
        let owner = md.find("`owner`").unwrap();
        let readonly = md.find("`readonly`").unwrap();
        assert!(owner < readonly);
        // The crate README shows exactly this table.
        let readme = include_str!("../README.md");
        assert!(
            readme.contains(&md),
            "README.md's role table is not the default table:\n{md}"
        );
    }
}
