//! Members from Rancher environments (feature `rancher`): every Kubernetes
//! environment labelled `federation.rancher.io/name: <federation>` is a
//! member, reached through Rancher's Kubernetes proxy
//! (`<rancher>/r/projects/<id>/kubernetes:6443`) with the controller's API
//! key as bearer token, the way Rancher's own kubeconfig reaches it.

use std::time::Duration;

use kube::{
    ResourceExt,
    api::ObjectMeta,
    config::{KubeConfigOptions, Kubeconfig},
};
use rancher_client::{KubernetesAccess, Project};

use super::{Error, Result};
use crate::{
    crd::{FederatedCluster, FederatedClusterSpec, RancherEnvironment},
    well_known::{DISCOVERED_LABEL, FEDERATION_LABEL},
};

/// The prefix of the `FederatedCluster` of a Rancher environment:
/// `rancher-<project id>`.
pub const NAME_PREFIX: &str = "rancher-";

/// The `FederatedCluster` name of environment `project_id`: `rancher-` and
/// the id, lower-cased, anything but letters and digits made `-`.
pub fn cluster_name(project_id: &str) -> String {
    let id: String = project_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    format!("{NAME_PREFIX}{id}")
}

/// Whether a cluster is a Rancher environment.
pub fn is_rancher(cluster: &FederatedCluster) -> bool {
    cluster.spec.rancher.is_some()
}

/// The `FederatedCluster`s `federation` wants from Rancher: one per live
/// Kubernetes environment in `projects` labelled
/// `federation.rancher.io/name: <federation>`, in `namespace`.
pub fn discovered(
    federation: &str,
    namespace: &str,
    projects: &[Project],
) -> Vec<FederatedCluster> {
    projects
        .iter()
        .filter(|p| {
            p.label_value(FEDERATION_LABEL) == Some(federation)
                && p.is_kubernetes()
                && !p.meta.is_removed()
                && !p.meta.id.is_empty()
        })
        .map(|p| {
            let labels = [
                (DISCOVERED_LABEL.to_owned(), "true".to_owned()),
                (FEDERATION_LABEL.to_owned(), federation.to_owned()),
            ]
            .into();
            FederatedCluster {
                metadata: ObjectMeta {
                    name: Some(cluster_name(&p.meta.id)),
                    namespace: Some(namespace.to_owned()),
                    labels: Some(labels),
                    ..ObjectMeta::default()
                },
                spec: FederatedClusterSpec {
                    federation: federation.to_owned(),
                    api_endpoint: None,
                    secret_ref: None,
                    rancher: Some(RancherEnvironment {
                        project_id: p.meta.id.clone(),
                        name: p.meta.name.clone(),
                    }),
                },
                status: None,
            }
        })
        .collect()
}

/// The client configuration for a cluster that is a Rancher environment:
/// Rancher's Kubernetes proxy for it, the API key of `rancher` as token
/// (TLS verification skipped for `https`, as Rancher's kubeconfig does,
/// since Rancher serves its own certificate), `timeout` for connect and
/// reads. `spec.apiEndpoint`, when set, replaces the proxy URL.
pub async fn config(
    cluster: &FederatedCluster,
    rancher: &rancher_client::Client,
    timeout: Duration,
) -> Result<kube::Config> {
    let name = cluster.name_any();
    let project = cluster
        .spec
        .rancher
        .as_ref()
        .map(|r| r.project_id.clone())
        .unwrap_or_default();
    let fail = |reason: String| Error::Rancher {
        cluster: name.clone(),
        project: project.clone(),
        reason,
    };
    let credentials = rancher.config().credentials.as_ref().ok_or_else(|| {
        fail("the controller has no rancher API key (CATTLE_ACCESS_KEY, CATTLE_SECRET_KEY)".into())
    })?;
    let access = KubernetesAccess::for_project(&rancher.config().url, &project, credentials)
        .map_err(|error| fail(error.to_string()))?;
    // The parser's message may quote the token: drop it.
    let kubeconfig = Kubeconfig::from_yaml(&access.kubeconfig(&name))
        .map_err(|_| fail("the kubeconfig for the environment does not parse".into()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|error| fail(format!("kubeconfig: {error}")))?;
    super::finish(config, cluster.spec.api_endpoint.as_deref(), timeout, fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(id: &str, name: &str, labels: &[(&str, &str)]) -> Project {
        let mut p = Project::new(name).orchestration("kubernetes");
        p.meta.id = id.into();
        for (k, v) in labels {
            p = p.label(*k, *v);
        }
        p
    }

    #[test]
    fn labelled_kubernetes_environments_are_members() {
        let mut cattle = project("1a9", "cattle", &[(FEDERATION_LABEL, "myfed")]);
        cattle.orchestration = Some("cattle".into());
        let mut removed = project("1a10", "gone", &[(FEDERATION_LABEL, "myfed")]);
        removed.meta.state = Some("removed".into());
        let projects = vec![
            project("1a7", "prod east", &[(FEDERATION_LABEL, "myfed")]),
            project("1a8", "other", &[(FEDERATION_LABEL, "otherfed")]),
            project("1a5", "Default", &[]),
            cattle,
            removed,
        ];
        let found = discovered("myfed", "federation-system", &projects);
        assert_eq!(found.len(), 1);
        let east = &found[0];
        assert_eq!(east.name_any(), "rancher-1a7");
        assert_eq!(east.namespace().as_deref(), Some("federation-system"));
        assert!(super::super::is_discovered(east));
        assert!(is_rancher(east));
        let env = east.spec.rancher.as_ref().unwrap();
        assert_eq!(env.project_id, "1a7");
        assert_eq!(env.name.as_deref(), Some("prod east"));
        assert_eq!(east.spec.secret_ref, None);
        assert_eq!(cluster_name("1A_7"), "rancher-1a-7");
    }

    #[tokio::test]
    async fn the_member_is_reached_through_rancher_with_the_key_as_token() {
        rancher_runtime::install_crypto_provider();
        let rancher = rancher_client::Client::new(
            rancher_client::Config::new("https://rancher.example.org/v2-beta/projects/1a5")
                .unwrap()
                .credentials(rancher_client::Credentials::new("AK", "SK")),
        )
        .unwrap();
        let member = discovered(
            "myfed",
            "federation-system",
            &[project("1a7", "east", &[(FEDERATION_LABEL, "myfed")])],
        )
        .remove(0);
        let timeout = Duration::from_secs(3);
        let built = config(&member, &rancher, timeout).await.unwrap();
        assert_eq!(
            built.cluster_url.to_string(),
            "https://rancher.example.org/r/projects/1a7/kubernetes:6443"
        );
        assert!(built.accept_invalid_certs);
        assert_eq!(built.read_timeout, Some(timeout));

        let keyless = rancher_client::Client::new(
            rancher_client::Config::new("https://rancher.example.org/v2-beta").unwrap(),
        )
        .unwrap();
        let error = config(&member, &keyless, timeout).await.unwrap_err();
        assert!(error.to_string().contains("rancher-1a7"), "{error}");
        assert!(error.to_string().contains("1a7"), "{error}");
    }
}
