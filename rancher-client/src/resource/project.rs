//! `project`: a Rancher environment, and the Kubernetes API access Rancher gives to it.

use std::collections::BTreeMap;

use base64::Engine as _;
use reqwest::Url;
use serde::{Deserialize, Serialize};

use super::{Extra, ResourceMeta, Scope, impl_resource};
use crate::{Credentials, Error, Result, Secret};

/// A project, which Rancher's UI calls an *environment*: one orchestrated cluster (with
/// `orchestration: kubernetes`, one Kubernetes cluster) and the hosts, stacks and services in
/// it.
///
/// Projects live at the API root (`/v2-beta/projects`), not under a project URL: see
/// [`Scope::Api`]. An account API key lists every project its account is a member of; an
/// environment API key lists only its own.
///
/// Rancher 1.x's project schema has no labels. This crate reads and writes them as a
/// top-level `labels` map of strings, the shape hosts and services use, so that environments
/// can carry selectors such as `federation.rancher.io/name`; the fake server stores them. A
/// Rancher server whose schema lacks the field drops it on create, and the map reads empty.
///
/// Members and their roles are not modelled here: Rancher serves them as a separate
/// `projectMember` resource (and on the `setmembers` action); they stay in [`Project::extra`]
/// when a server inlines them.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    /// Common fields.
    #[serde(flatten)]
    pub meta: ResourceMeta,
    /// The orchestrator: `kubernetes`, `cattle`, `swarm`, `mesos`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orchestration: Option<String>,
    /// Labels (see the type's documentation for where they come from). Always sent, so that
    /// an update with no labels clears them (Rancher keeps fields a `PUT` leaves out).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The template the project was created from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_template_id: Option<String>,
    /// Rancher's view of the project's health: `healthy`, `unhealthy`, `initializing`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_state: Option<String>,
    /// Fields this crate does not model, kept for round trips.
    #[serde(flatten)]
    pub extra: Extra,
}

impl_resource!(Project, "project", "projects", Scope::Api);

impl Project {
    /// The `orchestration` of a Kubernetes environment.
    pub const KUBERNETES: &'static str = "kubernetes";

    /// A project to create, with a name.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            meta: ResourceMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// Sets `orchestration`.
    pub fn orchestration(mut self, orchestration: impl Into<String>) -> Self {
        self.orchestration = Some(orchestration.into());
        self
    }

    /// Adds a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Whether the project runs Kubernetes.
    pub fn is_kubernetes(&self) -> bool {
        self.orchestration.as_deref() == Some(Self::KUBERNETES)
    }

    /// The label `key`, if set.
    pub fn label_value(&self, key: &str) -> Option<&str> {
        self.labels.get(key).map(String::as_str)
    }
}

/// How a client reaches the Kubernetes API of a Rancher environment, as Rancher 1.x issues it
/// in the kubeconfig of its *Kubernetes → CLI* page:
///
/// - the API server is reached through the Rancher server, at
///   `<rancher origin>/r/projects/<project id>/kubernetes:6443`; Rancher proxies the request
///   to the environment's `kube-apiserver`;
/// - the bearer token is a Rancher API key: `base64("Basic " + base64(access:secret))`; the
///   environment's authentication webhook turns it back into the key's identity;
/// - Rancher's certificate is usually its own, so the issued kubeconfig skips TLS
///   verification ([`KubernetesAccess::insecure_skip_tls_verify`]).
///
/// Build one with [`KubernetesAccess::for_project`] or
/// [`Client::kubernetes_access`](crate::Client::kubernetes_access). `Debug` hides the token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KubernetesAccess {
    /// The project (environment) id.
    pub project_id: String,
    /// The API server URL, e.g. `https://rancher.example.org/r/projects/1a7/kubernetes:6443`.
    pub server: Url,
    /// The bearer token.
    pub token: Secret,
    /// Whether to skip verifying the server's certificate (true for `https` URLs, as Rancher's
    /// kubeconfig does; false for `http`).
    pub insecure_skip_tls_verify: bool,
}

/// The path under the Rancher origin where Rancher proxies a project's Kubernetes API:
/// `/r/projects/<id>/kubernetes:6443`.
pub fn kubernetes_proxy_path(project_id: &str) -> String {
    format!("/r/projects/{project_id}/kubernetes:6443")
}

/// The bearer token Rancher's kubeconfig carries for an API key:
/// `base64("Basic " + base64(access:secret))`.
pub fn kubernetes_token(credentials: &Credentials) -> Secret {
    let engine = base64::engine::general_purpose::STANDARD;
    let basic = engine.encode(format!(
        "{}:{}",
        credentials.access_key,
        credentials.secret_key.expose()
    ));
    Secret::new(engine.encode(format!("Basic {basic}")))
}

/// Reads a token made by [`kubernetes_token`] back into its key pair; `None` when it is not
/// one.
pub fn credentials_from_kubernetes_token(token: &str) -> Option<Credentials> {
    let engine = base64::engine::general_purpose::STANDARD;
    let outer = String::from_utf8(engine.decode(token.trim()).ok()?).ok()?;
    let basic = outer
        .strip_prefix("Basic ")
        .or_else(|| outer.strip_prefix("basic "))?;
    let pair = String::from_utf8(engine.decode(basic.trim()).ok()?).ok()?;
    let (access, secret) = pair.split_once(':')?;
    Some(Credentials::new(access, secret))
}

impl KubernetesAccess {
    /// The access Rancher at `rancher` (any URL of the server: only its origin is used) gives
    /// to project `project_id` with the API key `credentials`.
    pub fn for_project(rancher: &Url, project_id: &str, credentials: &Credentials) -> Result<Self> {
        if project_id.is_empty() || project_id.contains(['/', '\\', '?', '#', '%', '.']) {
            return Err(Error::InvalidId {
                collection: "projects".to_owned(),
                id: project_id.to_owned(),
            });
        }
        let origin = rancher.origin().ascii_serialization();
        let text = format!("{origin}{}", kubernetes_proxy_path(project_id));
        let server = Url::parse(&text).map_err(|e| Error::Config {
            message: format!("invalid kubernetes url {text:?}: {e}"),
        })?;
        Ok(Self {
            project_id: project_id.to_owned(),
            insecure_skip_tls_verify: server.scheme() == "https",
            server,
            token: kubernetes_token(credentials),
        })
    }

    /// A kubeconfig (YAML) with one cluster, user and context named `name`, as Rancher's UI
    /// generates it. It holds the token: treat it as a secret.
    pub fn kubeconfig(&self, name: &str) -> String {
        let quote = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
        let name = quote(name);
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: {name}\n  cluster:\n    server: {server}\n    insecure-skip-tls-verify: {insecure}\nusers:\n- name: {name}\n  user:\n    token: {token}\ncontexts:\n- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\ncurrent-context: {name}\n",
            server = quote(self.server.as_str()),
            insecure = self.insecure_skip_tls_verify,
            token = quote(self.token.expose()),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn access_goes_through_the_rancher_proxy_with_the_key_as_token() {
        let rancher = Url::parse("https://rancher.example.org:8443/v2-beta/projects/1a5").unwrap();
        let key = Credentials::new("AK", "SK");
        let access = KubernetesAccess::for_project(&rancher, "1a7", &key).unwrap();
        assert_eq!(
            access.server.as_str(),
            "https://rancher.example.org:8443/r/projects/1a7/kubernetes:6443"
        );
        assert!(access.insecure_skip_tls_verify);
        // base64("Basic " + base64("AK:SK")), as Rancher 1.x's kubeconfig.
        assert_eq!(access.token.expose(), "QmFzaWMgUVVzNlUwcz0=");
        assert_eq!(
            credentials_from_kubernetes_token(access.token.expose()),
            Some(key)
        );
        assert!(!format!("{access:?}").contains("QmFzaWMgUVVzNlUwcz0="));
        let yaml = access.kubeconfig("prod");
        assert!(
            yaml.contains(
                "server: \"https://rancher.example.org:8443/r/projects/1a7/kubernetes:6443\""
            ),
            "{yaml}"
        );
        assert!(yaml.contains("token: \"QmFzaWMgUVVzNlUwcz0=\""), "{yaml}");
        assert!(
            KubernetesAccess::for_project(&rancher, "../x", &Credentials::new("a", "b")).is_err()
        );
        assert_eq!(credentials_from_kubernetes_token("not base64!"), None);
    }

    #[test]
    fn labels_round_trip_and_unknown_fields_are_kept() {
        let json = serde_json::json!({
            "id": "1a7", "type": "project", "name": "prod", "orchestration": "kubernetes",
            "labels": {"federation.rancher.io/name": "myfed"},
            "members": [{"externalId": "1a1", "role": "owner"}],
        });
        let p: Project = serde_json::from_value(json.clone()).unwrap();
        assert!(p.is_kubernetes());
        assert_eq!(p.label_value("federation.rancher.io/name"), Some("myfed"));
        assert!(p.extra.contains_key("members"));
        assert_eq!(serde_json::to_value(&p).unwrap(), json);
    }
}
