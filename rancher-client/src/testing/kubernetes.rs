//! Environments (projects) of the fake, and the Kubernetes API proxy Rancher runs for each one
//! at `/r/projects/<id>/kubernetes:6443`.

use std::{collections::BTreeMap, sync::Arc};

use axum::{
    body::Body,
    extract::{Path, Request, State},
    http::{HeaderName, Uri, header},
    response::Response,
};
use hyper_util::{
    client::legacy::{Client as HttpClient, connect::HttpConnector},
    rt::TokioExecutor,
};
use serde_json::{Value, json};

use super::http::{Shared, error_response, lock};
use super::store::not_found;
use crate::{Project, error::ErrorBody};

/// An environment as given to the fake: a name, labels, and the Kubernetes API server that the
/// fake's proxy stands in front of.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeProject {
    /// The environment's name.
    pub name: String,
    /// `orchestration`; default `kubernetes`.
    pub orchestration: String,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// The URL of the environment's Kubernetes API server (e.g. a sandbox cluster's), which the
    /// fake proxies at `/r/projects/<id>/kubernetes:6443`.
    pub kubernetes: Option<String>,
}

impl FakeProject {
    /// A Kubernetes environment with a name, no labels and no API server behind its proxy.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            orchestration: Project::KUBERNETES.to_owned(),
            labels: BTreeMap::new(),
            kubernetes: None,
        }
    }

    /// Adds a label.
    pub fn label(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    /// Sets `orchestration` (`cattle`, `swarm`, …).
    pub fn orchestration(mut self, orchestration: impl Into<String>) -> Self {
        self.orchestration = orchestration.into();
        self
    }

    /// The Kubernetes API server behind the environment's proxy, e.g. `http://127.0.0.1:6443`.
    pub fn kubernetes(mut self, url: impl Into<String>) -> Self {
        self.kubernetes = Some(url.into());
        self
    }

    pub(crate) fn body(&self) -> Value {
        json!({
            "name": self.name,
            "orchestration": self.orchestration,
            "labels": self.labels,
        })
    }
}

/// Headers that belong to one connection and are not forwarded.
const HOP_BY_HOP: &[HeaderName] = &[
    header::CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
];

/// `ANY /r/projects/{project}/kubernetes:6443/{*rest}`: checks the bearer token (an API key the
/// fake accepts, as Rancher's kubeconfig carries it; done before routing, see `handle`),
/// then forwards the request to the environment's API server without the caller's
/// `Authorization`, streaming both bodies (so watches work). Upgrades (exec, attach,
/// port-forward) are not proxied.
pub(crate) async fn proxy(
    State(shared): State<Arc<Shared>>,
    Path((project, rest)): Path<(String, String)>,
    req: Request,
) -> Response {
    let backend = {
        let store = shared.store();
        let project_live = store
            .record(super::store::Kind::Project, &project)
            .is_some_and(|r| !r.is_removed());
        if !project_live {
            return error_response(not_found(format!("project {project}")));
        }
        store.kube_backends.get(&project).cloned()
    };
    let Some(backend) = backend else {
        return error_response(ErrorBody::new(
            503,
            "ServiceUnavailable",
            format!("project {project} has no kubernetes api server"),
        ));
    };
    let (mut parts, body) = req.into_parts();
    let query = parts
        .uri
        .query()
        .map(|q| format!("?{q}"))
        .unwrap_or_default();
    let target = format!("{}/{rest}{query}", backend.trim_end_matches('/'));
    let Ok(uri) = target.parse::<Uri>() else {
        return error_response(ErrorBody::new(
            502,
            "BadGateway",
            format!("invalid kubernetes url {target}"),
        ));
    };
    parts.uri = uri;
    parts.headers.remove(header::AUTHORIZATION);
    parts.headers.remove(header::HOST);
    for h in HOP_BY_HOP {
        parts.headers.remove(h);
    }
    let client: HttpClient<HttpConnector, Body> =
        HttpClient::builder(TokioExecutor::new()).build_http();
    match client.request(Request::from_parts(parts, body)).await {
        Ok(resp) => {
            let (mut parts, body) = resp.into_parts();
            for h in HOP_BY_HOP {
                parts.headers.remove(h);
            }
            Response::from_parts(parts, Body::new(body))
        }
        Err(e) => error_response(ErrorBody::new(
            502,
            "BadGateway",
            format!("kubernetes api server of project {project}: {e}"),
        )),
    }
}

/// Whether a path is served by the Kubernetes proxy (authenticated by bearer token).
pub(crate) fn is_proxy_path(path: &str) -> bool {
    path.starts_with("/r/projects/")
}

/// Sets or clears the API server behind a project's proxy.
pub(crate) fn set_backend(shared: &Shared, project: &str, url: Option<String>) {
    let mut store = lock(&shared.store);
    match url {
        Some(url) => store.kube_backends.insert(project.to_owned(), url),
        None => store.kube_backends.remove(project),
    };
}
