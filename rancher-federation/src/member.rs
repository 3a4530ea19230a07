//! Member clusters: credentials from Secrets, auto-discovery by label, health
//! checks of `/readyz` with timeouts, and region and zones from node labels.

use std::{collections::BTreeMap, time::Duration};

use k8s_openapi::{
    ByteString,
    api::core::v1::{Node, Secret},
};
use kube::{
    Api, ResourceExt,
    api::{ListParams, ObjectMeta},
    config::{KubeConfigOptions, Kubeconfig},
};

use crate::{
    crd::{FederatedCluster, FederatedClusterSpec, SecretRef},
    well_known::{
        API_ENDPOINT_ANNOTATION, CA_KEY, DISCOVERED_LABEL, FEDERATION_LABEL, KUBECONFIG_KEY,
        LEGACY_REGION_LABEL, LEGACY_ZONE_LABEL, REGION_LABEL, TOKEN_KEY, ZONE_LABEL,
    },
};

#[cfg(feature = "rancher")]
pub mod rancher;

/// Errors reaching a member.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The credentials Secret does not exist.
    #[error("secret {namespace}/{name} not found")]
    MissingSecret {
        /// The namespace.
        namespace: String,
        /// The name.
        name: String,
    },
    /// The Secret holds neither a usable kubeconfig nor a token.
    #[error("secret {secret}: {reason}")]
    InvalidCredentials {
        /// `namespace/name` of the Secret.
        secret: String,
        /// What is wrong (never the secret's content).
        reason: String,
    },
    /// Building a client from the credentials failed.
    #[error("cluster {cluster}: cannot build a client")]
    Client {
        /// The member.
        cluster: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// The cluster names neither a credentials Secret nor a Rancher
    /// environment, or both.
    #[error("cluster {cluster}: {reason}")]
    InvalidSpec {
        /// The member.
        cluster: String,
        /// What is wrong.
        reason: String,
    },
    /// The cluster is a Rancher environment, and reaching it through Rancher
    /// is not possible: no `--rancher`, no API key, an invalid project id.
    #[error("cluster {cluster}: rancher environment {project}: {reason}")]
    Rancher {
        /// The member.
        cluster: String,
        /// The project id.
        project: String,
        /// What is wrong (never a key).
        reason: String,
    },
    /// The member did not answer in time.
    #[error("cluster {cluster}: no answer within {timeout:?}")]
    Timeout {
        /// The member.
        cluster: String,
        /// The limit.
        timeout: Duration,
    },
    /// The member answered with an error.
    #[error("cluster {cluster}: {what} failed")]
    Api {
        /// The member.
        cluster: String,
        /// What was asked.
        what: &'static str,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// `/readyz` answered something other than `ok`.
    #[error("cluster {cluster}: /readyz answered {answer:?}")]
    NotReady {
        /// The member.
        cluster: String,
        /// The answer (first line).
        answer: String,
    },
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The client configuration for `cluster` from its credentials `secret`:
/// a kubeconfig under `kubeconfig`, or a bearer token under `token` (with an
/// optional `ca.crt`) and the endpoint from the spec or the Secret's
/// `federation.rancher.io/api-endpoint` annotation. `spec.apiEndpoint`
/// overrides the kubeconfig's server. Connect and read timeouts are `timeout`.
pub async fn config(
    cluster: &FederatedCluster,
    secret: &Secret,
    timeout: Duration,
) -> Result<kube::Config> {
    let secret_id = format!(
        "{}/{}",
        secret.namespace().unwrap_or_default(),
        secret.name_any()
    );
    let invalid = |reason: String| Error::InvalidCredentials {
        secret: secret_id.clone(),
        reason,
    };
    let data = secret.data.clone().unwrap_or_default();
    let text = |key: &str| -> Result<Option<String>> {
        data.get(key)
            .map(|ByteString(bytes)| {
                String::from_utf8(bytes.clone())
                    .map_err(|_| invalid(format!("key {key} is not UTF-8")))
            })
            .transpose()
    };
    let endpoint = cluster
        .spec
        .api_endpoint
        .clone()
        .or_else(|| secret.annotations().get(API_ENDPOINT_ANNOTATION).cloned());
    let kubeconfig = if let Some(yaml) = text(KUBECONFIG_KEY)? {
        // The parser's message quotes the input, which may hold secrets: drop it.
        Kubeconfig::from_yaml(&yaml)
            .map_err(|_| invalid(format!("key {KUBECONFIG_KEY} is not a valid kubeconfig")))?
    } else if let Some(token) = text(TOKEN_KEY)? {
        let server = endpoint.clone().ok_or_else(|| {
            invalid(format!(
                "key {TOKEN_KEY} needs spec.apiEndpoint or annotation {API_ENDPOINT_ANNOTATION}"
            ))
        })?;
        let mut cluster_entry = serde_json::json!({ "server": server });
        if let Some(ca) = text(CA_KEY)? {
            use base64::Engine as _;
            cluster_entry["certificate-authority-data"] =
                base64::engine::general_purpose::STANDARD.encode(ca).into();
        }
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{ "name": "member", "cluster": cluster_entry }],
            "users": [{ "name": "member", "user": { "token": token.trim() } }],
            "contexts": [{ "name": "member", "context": { "cluster": "member", "user": "member" } }],
            "current-context": "member",
        }))
        .map_err(|error| invalid(format!("token credentials: {error}")))?
    } else {
        return Err(invalid(format!(
            "neither key {KUBECONFIG_KEY} nor key {TOKEN_KEY} is set"
        )));
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .map_err(|error| invalid(format!("kubeconfig: {error}")))?;
    finish(config, endpoint.as_deref(), timeout, invalid)
}

/// Points `config` at `endpoint` (when set) and bounds connects, reads and
/// writes by `timeout`.
fn finish(
    mut config: kube::Config,
    endpoint: Option<&str>,
    timeout: Duration,
    invalid: impl Fn(String) -> Error,
) -> Result<kube::Config> {
    if let Some(endpoint) = endpoint {
        config.cluster_url = endpoint
            .parse()
            .map_err(|_| invalid(format!("api endpoint {endpoint:?} is not a URL")))?;
    }
    config.connect_timeout = Some(timeout);
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    Ok(config)
}

/// A client for `cluster` from `config`.
pub fn client(cluster: &str, config: kube::Config) -> Result<kube::Client> {
    kube::Client::try_from(config).map_err(|source| Error::Client {
        cluster: cluster.to_owned(),
        source,
    })
}

/// What a health check found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Probe {
    /// The region of most nodes.
    pub region: Option<String>,
    /// The zones of the nodes in that region, sorted.
    pub zones: Vec<String>,
}

/// Checks `/readyz` and reads the nodes' topology, each within `timeout`.
pub async fn probe(cluster: &str, client: &kube::Client, timeout: Duration) -> Result<Probe> {
    let timed_out = || Error::Timeout {
        cluster: cluster.to_owned(),
        timeout,
    };
    let request = http::Request::get("/readyz")
        .body(Vec::new())
        .map_err(|error| Error::Api {
            cluster: cluster.to_owned(),
            what: "/readyz",
            source: kube::Error::HttpError(error),
        })?;
    let answer = tokio::time::timeout(timeout, client.request_text(request))
        .await
        .map_err(|_| timed_out())?
        .map_err(|source| Error::Api {
            cluster: cluster.to_owned(),
            what: "/readyz",
            source,
        })?;
    if answer.trim() != "ok" {
        return Err(Error::NotReady {
            cluster: cluster.to_owned(),
            answer: answer
                .lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(200)
                .collect(),
        });
    }
    let nodes = tokio::time::timeout(
        timeout,
        Api::<Node>::all(client.clone()).list_metadata(&ListParams::default()),
    )
    .await
    .map_err(|_| timed_out())?
    .map_err(|source| Error::Api {
        cluster: cluster.to_owned(),
        what: "listing nodes",
        source,
    })?;
    let labels: Vec<BTreeMap<String, String>> = nodes
        .items
        .iter()
        .map(|node| node.labels().clone())
        .collect();
    Ok(topology(&labels))
}

/// The region of most nodes (ties: the first in name order) and the zones of
/// that region's nodes. Reads `topology.kubernetes.io/{region,zone}`, falling
/// back to the deprecated `failure-domain.beta.kubernetes.io` labels.
pub fn topology(nodes: &[BTreeMap<String, String>]) -> Probe {
    let label = |labels: &BTreeMap<String, String>, current: &str, legacy: &str| {
        labels
            .get(current)
            .or_else(|| labels.get(legacy))
            .filter(|value| !value.is_empty())
            .cloned()
    };
    let mut regions: BTreeMap<String, usize> = BTreeMap::new();
    for labels in nodes {
        if let Some(region) = label(labels, REGION_LABEL, LEGACY_REGION_LABEL) {
            *regions.entry(region).or_default() += 1;
        }
    }
    let region = regions
        .iter()
        .fold(
            None::<(&String, usize)>,
            |best, (region, count)| match best {
                Some((_, best_count)) if best_count >= *count => best,
                _ => Some((region, *count)),
            },
        )
        .map(|(region, _)| region.clone());
    let mut zones: Vec<String> = nodes
        .iter()
        .filter(|labels| label(labels, REGION_LABEL, LEGACY_REGION_LABEL) == region)
        .filter_map(|labels| label(labels, ZONE_LABEL, LEGACY_ZONE_LABEL))
        .collect();
    zones.sort();
    zones.dedup();
    if region.is_none() {
        zones.clear();
    }
    Probe { region, zones }
}

/// The `FederatedCluster`s that auto-discovery wants for `federation`: one per
/// Secret in `secrets` labelled `federation.rancher.io/name: <federation>`,
/// named after the Secret, in its namespace.
pub fn discovered(federation: &str, secrets: &[Secret]) -> Vec<FederatedCluster> {
    secrets
        .iter()
        .filter(|secret| {
            secret.labels().get(FEDERATION_LABEL).map(String::as_str) == Some(federation)
                && secret.metadata.deletion_timestamp.is_none()
        })
        .map(|secret| {
            let labels = [
                (DISCOVERED_LABEL.to_owned(), "true".to_owned()),
                (FEDERATION_LABEL.to_owned(), federation.to_owned()),
            ]
            .into();
            FederatedCluster {
                metadata: ObjectMeta {
                    name: Some(secret.name_any()),
                    namespace: secret.namespace(),
                    labels: Some(labels),
                    ..ObjectMeta::default()
                },
                spec: FederatedClusterSpec {
                    federation: federation.to_owned(),
                    api_endpoint: secret.annotations().get(API_ENDPOINT_ANNOTATION).cloned(),
                    secret_ref: Some(SecretRef {
                        name: secret.name_any(),
                    }),
                    rancher: None,
                },
                status: None,
            }
        })
        .collect()
}

/// Whether `cluster` was created by auto-discovery.
pub fn is_discovered(cluster: &FederatedCluster) -> bool {
    cluster.labels().get(DISCOVERED_LABEL).map(String::as_str) == Some("true")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn topology_takes_the_main_region_and_its_zones() {
        let nodes = vec![
            labels(&[(REGION_LABEL, "eu"), (ZONE_LABEL, "eu-b")]),
            labels(&[(REGION_LABEL, "eu"), (ZONE_LABEL, "eu-a")]),
            labels(&[(REGION_LABEL, "eu"), (ZONE_LABEL, "eu-a")]),
            labels(&[(REGION_LABEL, "us"), (ZONE_LABEL, "us-a")]),
            labels(&[]),
        ];
        assert_eq!(
            topology(&nodes),
            Probe {
                region: Some("eu".into()),
                zones: vec!["eu-a".into(), "eu-b".into()],
            }
        );
    }

    #[test]
    fn topology_reads_legacy_labels_and_breaks_ties_by_name() {
        let nodes = vec![
            labels(&[(LEGACY_REGION_LABEL, "west"), (LEGACY_ZONE_LABEL, "w1")]),
            labels(&[(REGION_LABEL, "east"), (ZONE_LABEL, "e1")]),
        ];
        assert_eq!(
            topology(&nodes),
            Probe {
                region: Some("east".into()),
                zones: vec!["e1".into()],
            }
        );
        assert_eq!(topology(&[labels(&[(ZONE_LABEL, "z")])]), Probe::default());
    }

    fn secret(name: &str, data: &[(&str, &str)], annotations: &[(&str, &str)]) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(name.into()),
                namespace: Some("federation-system".into()),
                labels: Some(labels(&[(FEDERATION_LABEL, "myfed")])),
                annotations: Some(labels(annotations)),
                ..ObjectMeta::default()
            },
            data: Some(
                data.iter()
                    .map(|(k, v)| ((*k).to_owned(), ByteString(v.as_bytes().to_vec())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    #[test]
    fn discovery_follows_the_label() {
        let mut other = secret("other", &[], &[]);
        other
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert(FEDERATION_LABEL.into(), "elsewhere".into());
        let mut unlabelled = secret("plain", &[], &[]);
        unlabelled.metadata.labels = None;
        let found = discovered(
            "myfed",
            &[
                secret(
                    "east",
                    &[],
                    &[(API_ENDPOINT_ANNOTATION, "https://192.0.2.1:6443")],
                ),
                other,
                unlabelled,
            ],
        );
        assert_eq!(found.len(), 1);
        let east = &found[0];
        assert_eq!(east.name_any(), "east");
        assert_eq!(east.namespace().as_deref(), Some("federation-system"));
        assert_eq!(east.spec.federation, "myfed");
        assert_eq!(east.spec.secret_ref.as_ref().unwrap().name, "east");
        assert_eq!(
            east.spec.api_endpoint.as_deref(),
            Some("https://192.0.2.1:6443")
        );
        assert!(is_discovered(east));
    }

    fn member(endpoint: Option<&str>) -> FederatedCluster {
        FederatedCluster::new(
            "east",
            FederatedClusterSpec {
                federation: "myfed".into(),
                api_endpoint: endpoint.map(str::to_owned),
                secret_ref: Some(SecretRef {
                    name: "east".into(),
                }),
                rancher: None,
            },
        )
    }

    const KUBECONFIG: &str = "apiVersion: v1
kind: Config
clusters:
- name: c
  cluster:
    server: http://127.0.0.1:6443
users:
- name: u
  user:
    token: abc
contexts:
- name: x
  context:
    cluster: c
    user: u
current-context: x
";

    #[tokio::test]
    async fn credentials_from_a_kubeconfig_or_a_token() {
        let timeout = Duration::from_secs(3);
        let from_kubeconfig = config(
            &member(None),
            &secret("east", &[(KUBECONFIG_KEY, KUBECONFIG)], &[]),
            timeout,
        )
        .await
        .unwrap();
        assert_eq!(
            from_kubeconfig.cluster_url.to_string(),
            "http://127.0.0.1:6443/"
        );
        assert_eq!(from_kubeconfig.read_timeout, Some(timeout));
        assert_eq!(from_kubeconfig.connect_timeout, Some(timeout));

        let overridden = config(
            &member(Some("http://127.0.0.2:7443")),
            &secret("east", &[(KUBECONFIG_KEY, KUBECONFIG)], &[]),
            timeout,
        )
        .await
        .unwrap();
        assert_eq!(overridden.cluster_url.to_string(), "http://127.0.0.2:7443/");

        let from_token = config(
            &member(None),
            &secret(
                "east",
                &[(TOKEN_KEY, "t0ken\n")],
                &[(API_ENDPOINT_ANNOTATION, "http://127.0.0.3:6443")],
            ),
            timeout,
        )
        .await
        .unwrap();
        assert_eq!(from_token.cluster_url.to_string(), "http://127.0.0.3:6443/");
    }

    #[tokio::test]
    async fn bad_credentials_name_the_secret_and_never_its_content() {
        let timeout = Duration::from_secs(1);
        let cases = [
            secret("east", &[], &[]),
            secret("east", &[(KUBECONFIG_KEY, "clusters: [ {{{ s3cr3t")], &[]),
            secret("east", &[(TOKEN_KEY, "s3cr3t")], &[]),
            secret(
                "east",
                &[(KUBECONFIG_KEY, "apiVersion: v1\nkind: Config\n")],
                &[],
            ),
        ];
        for case in cases {
            let error = config(&member(None), &case, timeout).await.unwrap_err();
            let text = error.to_string();
            assert!(
                matches!(error, Error::InvalidCredentials { .. }),
                "{error:?}"
            );
            assert!(text.contains("federation-system/east"), "{text}");
            assert!(!text.contains("s3cr3t"), "{text}");
        }
    }
}
