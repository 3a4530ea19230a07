//! Authorization: the request [`Attributes`], the [`Decision`], and the [`Authorizer`] trait.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;

use crate::error::Result;
use crate::identity::UserInfo;

/// What is being done to a resource, as kube-apiserver's request-info resolver sees it.
///
/// Empty strings mean "not set": `namespace` is empty for cluster-scoped resources and for
/// lists across all namespaces, `group` is empty for the core group, `name` is empty for
/// lists and creates.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ResourceAttributes {
    /// The namespace, or empty.
    pub namespace: String,
    /// The verb: `get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
    /// `deletecollection`, or another (`impersonate`, `bind`, `escalate`, `use`).
    pub verb: String,
    /// The API group (`""` for core, `apps`, `rbac.authorization.k8s.io`).
    pub group: String,
    /// The API version (`v1`).
    pub version: String,
    /// The resource, plural (`pods`).
    pub resource: String,
    /// The subresource (`log`, `status`, `exec`), or empty.
    pub subresource: String,
    /// The object's name, or empty.
    pub name: String,
}

impl ResourceAttributes {
    /// `verb` on `resource` in `group` (any version), cluster-wide.
    pub fn new(
        verb: impl Into<String>,
        group: impl Into<String>,
        resource: impl Into<String>,
    ) -> Self {
        Self {
            verb: verb.into(),
            group: group.into(),
            resource: resource.into(),
            ..Self::default()
        }
    }

    /// Sets the namespace.
    #[must_use]
    pub fn in_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.namespace = namespace.into();
        self
    }

    /// Sets the subresource.
    #[must_use]
    pub fn subresource(mut self, subresource: impl Into<String>) -> Self {
        self.subresource = subresource.into();
        self
    }

    /// Sets the object name.
    #[must_use]
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the version.
    #[must_use]
    pub fn version(mut self, version: impl Into<String>) -> Self {
        self.version = version.into();
        self
    }

    /// `resource/subresource`, or the resource alone.
    pub fn combined_resource(&self) -> String {
        if self.subresource.is_empty() {
            self.resource.clone()
        } else {
            format!("{}/{}", self.resource, self.subresource)
        }
    }

    /// The resource qualified by its group, as kube-apiserver prints it: `pods`,
    /// `clusterroles.rbac.authorization.k8s.io`, `pods/log`.
    pub fn qualified(&self) -> String {
        let resource = self.combined_resource();
        if self.group.is_empty() {
            resource
        } else {
            format!("{resource}.{}", self.group)
        }
    }
}

/// A request to a path that is not a resource (`/healthz`, `/api`, `/version`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct NonResourceAttributes {
    /// The URL path.
    pub path: String,
    /// The lower-case HTTP method (`get`, `post`, ...).
    pub verb: String,
}

impl NonResourceAttributes {
    /// `verb` on `path`.
    pub fn new(verb: impl Into<String>, path: impl Into<String>) -> Self {
        Self {
            verb: verb.into(),
            path: path.into(),
        }
    }
}

/// What is asked: a resource or a non-resource path.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Request {
    /// A resource request.
    Resource(ResourceAttributes),
    /// A non-resource request.
    NonResource(NonResourceAttributes),
}

/// Who asks to do what: one SubjectAccessReview.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Attributes {
    /// The user, as the authenticator described them.
    pub user: UserInfo,
    /// What they ask to do.
    pub request: Request,
}

impl Attributes {
    /// `user` asks for a resource.
    pub fn resource(user: UserInfo, attributes: ResourceAttributes) -> Self {
        Self {
            user,
            request: Request::Resource(attributes),
        }
    }

    /// `user` asks for a non-resource path.
    pub fn non_resource(user: UserInfo, attributes: NonResourceAttributes) -> Self {
        Self {
            user,
            request: Request::NonResource(attributes),
        }
    }

    /// The verb asked for.
    pub fn verb(&self) -> &str {
        match &self.request {
            Request::Resource(r) => &r.verb,
            Request::NonResource(n) => &n.verb,
        }
    }
}

impl fmt::Display for Attributes {
    /// `alice create clusterroles.rbac.authorization.k8s.io at cluster scope`, `bob get
    /// pods in namespace "web"`, `carol get path "/healthz"`: how reasons name a request.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.request {
            Request::Resource(r) => {
                write!(f, "{} {}", r.verb, r.qualified())?;
                if !r.name.is_empty() {
                    write!(f, " {:?}", r.name)?;
                }
                if r.namespace.is_empty() {
                    f.write_str(" at cluster scope")
                } else {
                    write!(f, " in namespace {:?}", r.namespace)
                }
            }
            Request::NonResource(n) => write!(f, "{} path {:?}", n.verb, n.path),
        }
    }
}

/// An authorizer's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    /// The request is allowed; later authorizers are not asked.
    Allow,
    /// The request is denied; later authorizers are not asked either.
    Deny,
    /// This authorizer has nothing to say; the next one decides (none left: forbidden).
    NoOpinion,
}

/// A verdict and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The verdict.
    pub verdict: Verdict,
    /// Why, in words a user reading a 403 understands; may be empty for `Allow`.
    pub reason: String,
}

impl Decision {
    /// Allowed, because `reason`.
    pub fn allow(reason: impl Into<String>) -> Self {
        Self {
            verdict: Verdict::Allow,
            reason: reason.into(),
        }
    }

    /// Denied, because `reason`.
    pub fn deny(reason: impl Into<String>) -> Self {
        Self {
            verdict: Verdict::Deny,
            reason: reason.into(),
        }
    }

    /// No opinion, because `reason`.
    pub fn no_opinion(reason: impl Into<String>) -> Self {
        Self {
            verdict: Verdict::NoOpinion,
            reason: reason.into(),
        }
    }

    /// Whether the verdict is `Allow`.
    pub fn is_allowed(&self) -> bool {
        self.verdict == Verdict::Allow
    }
}

/// Decides whether a user may do something.
///
/// # Contract
///
/// - `Allow` only when the request is allowed; `Deny` to forbid it even if a later
///   authorizer would allow it; `NoOpinion` when this authorizer does not cover the user or
///   the request. Give a reason with `Deny` and `NoOpinion`.
/// - Any attributes are valid input: empty verbs, odd paths, unknown groups, huge names.
///   Never panic on them and never allow by accident.
/// - `Err` only when the answer cannot be known now; the caller then applies its failure
///   policy (never `Allow`).
#[async_trait]
pub trait Authorizer: Send + Sync + 'static {
    /// Decides on `attributes`.
    async fn authorize(&self, attributes: &Attributes) -> Result<Decision>;
}

#[async_trait]
impl<A: Authorizer + ?Sized> Authorizer for Arc<A> {
    async fn authorize(&self, attributes: &Attributes) -> Result<Decision> {
        (**self).authorize(attributes).await
    }
}

#[async_trait]
impl<A: Authorizer + ?Sized> Authorizer for Box<A> {
    async fn authorize(&self, attributes: &Attributes) -> Result<Decision> {
        (**self).authorize(attributes).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_display_names_the_request_like_kubernetes() {
        let user = UserInfo::new("alice");
        let a = Attributes::resource(
            user.clone(),
            ResourceAttributes::new("create", "rbac.authorization.k8s.io", "clusterroles"),
        );
        assert_eq!(
            a.to_string(),
            "create clusterroles.rbac.authorization.k8s.io at cluster scope"
        );
        let a = Attributes::resource(
            user.clone(),
            ResourceAttributes::new("get", "", "pods")
                .in_namespace("web")
                .subresource("log")
                .named("p1"),
        );
        assert_eq!(a.to_string(), "get pods/log \"p1\" in namespace \"web\"");
        let a = Attributes::non_resource(user, NonResourceAttributes::new("get", "/healthz"));
        assert_eq!(a.to_string(), "get path \"/healthz\"");
    }
}
