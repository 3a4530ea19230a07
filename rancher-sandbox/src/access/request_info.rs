//! What a request asks for, worked out from its method, path and query exactly as
//! kube-apiserver's request-info resolver does, so a webhook authorizer sees the same
//! SubjectAccessReview from the sandbox as from a real API server.

use serde_json::{Value, json};

/// The attributes of one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RequestInfo {
    /// A request under `/api/<version>/...` or `/apis/<group>/<version>/...`.
    Resource {
        verb: String,
        group: String,
        version: String,
        namespace: String,
        resource: String,
        subresource: String,
        name: String,
    },
    /// Anything else: discovery roots, `/version`, `/healthz`, `/openapi/...`.
    NonResource { verb: String, path: String },
}

impl RequestInfo {
    /// Resolves `method path?query`.
    pub(crate) fn new(method: &http::Method, path: &str, query: Option<&str>) -> Self {
        let non_resource = || Self::NonResource {
            verb: method.as_str().to_ascii_lowercase(),
            path: path.to_owned(),
        };
        let parts: Vec<&str> = path.split('/').filter(|p| !p.is_empty()).collect();
        if parts.len() < 3 || !matches!(parts[0], "api" | "apis") {
            return non_resource();
        }
        let mut rest = &parts[1..];
        let mut group = "";
        if parts[0] == "apis" {
            if rest.len() < 3 {
                return non_resource();
            }
            group = rest[0];
            rest = &rest[1..];
        }
        let version = rest[0];
        rest = &rest[1..];
        let mut verb = match *method {
            http::Method::POST => "create",
            http::Method::GET | http::Method::HEAD => "get",
            http::Method::PUT => "update",
            http::Method::PATCH => "patch",
            http::Method::DELETE => "delete",
            _ => "",
        };
        if matches!(rest[0], "proxy" | "watch") {
            if rest.len() < 2 {
                // kube-apiserver refuses such a path; nothing can match it anyway.
                return non_resource();
            }
            verb = rest[0];
            rest = &rest[1..];
        }
        let mut namespace = "";
        if rest[0] == "namespaces" && rest.len() > 1 {
            namespace = rest[1];
            if rest.len() > 2 && !matches!(rest[2], "status" | "finalize") {
                rest = &rest[2..];
            }
        }
        let resource = rest.first().copied().unwrap_or_default();
        let mut name = rest.get(1).copied().unwrap_or_default().to_owned();
        let subresource = if verb == "proxy" {
            ""
        } else {
            rest.get(2).copied().unwrap_or_default()
        };
        let mut verb = verb.to_owned();
        if name.is_empty() && verb == "get" {
            let query = parse_query(query.unwrap_or_default());
            let watch = query
                .iter()
                .find(|(k, _)| k == "watch")
                .is_some_and(|(_, v)| !matches!(v.to_ascii_lowercase().as_str(), "false" | "0"));
            verb = if watch { "watch" } else { "list" }.to_owned();
            if let Some((_, selector)) = query.iter().find(|(k, _)| k == "fieldSelector")
                && let Some(exact) = exact_name(selector)
            {
                name = exact;
            }
        }
        if name.is_empty() && verb == "delete" {
            verb = "deletecollection".to_owned();
        }
        Self::Resource {
            verb,
            group: group.to_owned(),
            version: version.to_owned(),
            namespace: namespace.to_owned(),
            resource: resource.to_owned(),
            subresource: subresource.to_owned(),
            name,
        }
    }

    /// The verb.
    pub(crate) fn verb(&self) -> &str {
        match self {
            Self::Resource { verb, .. } | Self::NonResource { verb, .. } => verb,
        }
    }

    /// The `resourceAttributes` or `nonResourceAttributes` of a SubjectAccessReview spec.
    pub(crate) fn spec_attributes(&self) -> (&'static str, Value) {
        match self {
            Self::Resource {
                verb,
                group,
                version,
                namespace,
                resource,
                subresource,
                name,
            } => {
                let mut attrs = serde_json::Map::new();
                for (key, value) in [
                    ("namespace", namespace),
                    ("verb", verb),
                    ("group", group),
                    ("version", version),
                    ("resource", resource),
                    ("subresource", subresource),
                    ("name", name),
                ] {
                    if !value.is_empty() {
                        attrs.insert(key.into(), json!(value));
                    }
                }
                ("resourceAttributes", Value::Object(attrs))
            }
            Self::NonResource { verb, path } => {
                ("nonResourceAttributes", json!({"path": path, "verb": verb}))
            }
        }
    }

    /// Reads the attributes of a SelfSubjectAccessReview spec.
    pub(crate) fn from_spec(spec: &Value) -> Option<Self> {
        let text = |v: &Value, k: &str| v[k].as_str().unwrap_or_default().to_owned();
        match (
            spec.get("resourceAttributes").filter(|v| v.is_object()),
            spec.get("nonResourceAttributes").filter(|v| v.is_object()),
        ) {
            (Some(r), None) => Some(Self::Resource {
                verb: text(r, "verb"),
                group: text(r, "group"),
                version: text(r, "version"),
                namespace: text(r, "namespace"),
                resource: text(r, "resource"),
                subresource: text(r, "subresource"),
                name: text(r, "name"),
            }),
            (None, Some(n)) => Some(Self::NonResource {
                verb: text(n, "verb"),
                path: text(n, "path"),
            }),
            _ => None,
        }
    }

    /// kube-apiserver's 403 message: `User "u" cannot <verb> resource "r[/sub]" in API group
    /// "g" in the namespace "ns"` (or `at the cluster scope`, or `cannot <verb> path "p"`).
    pub(crate) fn forbidden_message(&self, username: &str) -> String {
        match self {
            Self::NonResource { verb, path } => {
                format!("User {username:?} cannot {verb} path {path:?}")
            }
            Self::Resource {
                verb,
                group,
                namespace,
                resource,
                subresource,
                ..
            } => {
                let resource = if subresource.is_empty() {
                    resource.clone()
                } else {
                    format!("{resource}/{subresource}")
                };
                if namespace.is_empty() {
                    format!(
                        "User {username:?} cannot {verb} resource {resource:?} in API group {group:?} at the cluster scope"
                    )
                } else {
                    format!(
                        "User {username:?} cannot {verb} resource {resource:?} in API group {group:?} in the namespace {namespace:?}"
                    )
                }
            }
        }
    }
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let hex = |b: u8| char::from(b).to_digit(16);
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => match (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                (Some(hi), Some(lo)) => {
                    out.push(u8::try_from(hi * 16 + lo).unwrap_or(b'?'));
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The name a field selector requires exactly (`metadata.name=x` or `metadata.name==x`,
/// alone or among other terms), when it is a valid path segment.
fn exact_name(selector: &str) -> Option<String> {
    selector.split(',').find_map(|term| {
        let term = term.trim();
        let value = term
            .strip_prefix("metadata.name==")
            .or_else(|| term.strip_prefix("metadata.name="))?;
        let ok = !value.is_empty() && value != "." && value != ".." && !value.contains(['/', '%']);
        ok.then(|| value.to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    fn res(
        method: Method,
        path: &str,
        query: Option<&str>,
    ) -> (String, String, String, String, String, String) {
        match RequestInfo::new(&method, path, query) {
            RequestInfo::Resource {
                verb,
                group,
                namespace,
                resource,
                subresource,
                name,
                ..
            } => (verb, group, namespace, resource, subresource, name),
            other => panic!("{path}: {other:?}"),
        }
    }

    fn t(v: &[&str; 6]) -> (String, String, String, String, String, String) {
        (
            v[0].into(),
            v[1].into(),
            v[2].into(),
            v[3].into(),
            v[4].into(),
            v[5].into(),
        )
    }

    #[test]
    fn resource_requests_resolve_like_kube_apiserver() {
        let cases: &[(Method, &str, Option<&str>, [&str; 6])] = &[
            (
                Method::GET,
                "/api/v1/pods",
                None,
                ["list", "", "", "pods", "", ""],
            ),
            (
                Method::GET,
                "/api/v1/pods",
                Some("watch=true"),
                ["watch", "", "", "pods", "", ""],
            ),
            (
                Method::GET,
                "/api/v1/pods",
                Some("watch=0"),
                ["list", "", "", "pods", "", ""],
            ),
            (
                Method::GET,
                "/api/v1/namespaces/web/pods/p1",
                None,
                ["get", "", "web", "pods", "", "p1"],
            ),
            (
                Method::HEAD,
                "/api/v1/namespaces/web/pods/p1",
                None,
                ["get", "", "web", "pods", "", "p1"],
            ),
            (
                Method::GET,
                "/api/v1/namespaces/web/pods/p1/log",
                None,
                ["get", "", "web", "pods", "log", "p1"],
            ),
            (
                Method::POST,
                "/api/v1/namespaces/web/pods/p1/exec",
                None,
                ["create", "", "web", "pods", "exec", "p1"],
            ),
            (
                Method::GET,
                "/api/v1/namespaces/web/pods",
                Some("fieldSelector=metadata.name%3Dp1&watch=1"),
                ["watch", "", "web", "pods", "", "p1"],
            ),
            (
                Method::GET,
                "/api/v1/watch/namespaces/web/pods",
                None,
                ["watch", "", "web", "pods", "", ""],
            ),
            (
                Method::GET,
                "/api/v1/namespaces",
                None,
                ["list", "", "", "namespaces", "", ""],
            ),
            (
                Method::GET,
                "/api/v1/namespaces/web",
                None,
                ["get", "", "web", "namespaces", "", "web"],
            ),
            (
                Method::PUT,
                "/api/v1/namespaces/web/finalize",
                None,
                ["update", "", "web", "namespaces", "finalize", "web"],
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/web/pods",
                None,
                ["deletecollection", "", "web", "pods", "", ""],
            ),
            (
                Method::DELETE,
                "/api/v1/namespaces/web/pods/p1",
                None,
                ["delete", "", "web", "pods", "", "p1"],
            ),
            (
                Method::POST,
                "/apis/rbac.authorization.k8s.io/v1/clusterroles",
                None,
                [
                    "create",
                    "rbac.authorization.k8s.io",
                    "",
                    "clusterroles",
                    "",
                    "",
                ],
            ),
            (
                Method::PATCH,
                "/apis/apps/v1/namespaces/web/deployments/d/scale",
                None,
                ["patch", "apps", "web", "deployments", "scale", "d"],
            ),
            (
                Method::GET,
                "/api/v1/namespaces/web/pods/p1/proxy/some/path",
                None,
                ["get", "", "web", "pods", "proxy", "p1"],
            ),
            (
                Method::GET,
                "/api/v1/proxy/namespaces/web/pods/p1/some/path",
                None,
                ["proxy", "", "web", "pods", "", "p1"],
            ),
        ];
        for (method, path, query, want) in cases {
            assert_eq!(
                res(method.clone(), path, *query),
                t(want),
                "{method} {path}"
            );
        }
    }

    #[test]
    fn other_paths_are_non_resource_requests() {
        for path in [
            "/",
            "/api",
            "/api/v1",
            "/apis",
            "/apis/apps",
            "/apis/apps/v1",
            "/version",
            "/healthz",
            "/openapi/v2",
            "/api/v1/watch",
        ] {
            let info = RequestInfo::new(&Method::GET, path, None);
            assert_eq!(
                info,
                RequestInfo::NonResource {
                    verb: "get".into(),
                    path: path.into()
                },
                "{path}"
            );
        }
    }

    #[test]
    fn forbidden_messages_are_worded_as_kube_apiserver_words_them() {
        let info = RequestInfo::new(
            &Method::POST,
            "/apis/rbac.authorization.k8s.io/v1/clusterroles",
            None,
        );
        assert_eq!(
            info.forbidden_message("mike"),
            r#"User "mike" cannot create resource "clusterroles" in API group "rbac.authorization.k8s.io" at the cluster scope"#
        );
        let info = RequestInfo::new(&Method::GET, "/api/v1/namespaces/web/secrets", None);
        assert_eq!(
            info.forbidden_message("ravi"),
            r#"User "ravi" cannot list resource "secrets" in API group "" in the namespace "web""#
        );
        let info = RequestInfo::new(&Method::GET, "/metrics", None);
        assert_eq!(
            info.forbidden_message("x"),
            r#"User "x" cannot get path "/metrics""#
        );
    }
}
