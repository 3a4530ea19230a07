//! Membership: `FederatedCluster`s discovered from labelled credentials
//! Secrets and (with `Config::rancher`) from labelled Rancher environments,
//! and the clients that reach each member.

use std::{collections::BTreeSet, time::Duration};

use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, PostParams},
};

use super::{Controller, Result, host};
use crate::{
    crd::FederatedCluster,
    member,
    well_known::{FEDERATION_LABEL, reason},
};

/// How a discovered cluster came to be, for the `Joined` event.
fn origin(cluster: &FederatedCluster) -> String {
    match &cluster.spec.rancher {
        Some(env) => format!(
            "rancher environment {} ({})",
            env.name.as_deref().unwrap_or("unnamed"),
            env.project_id
        ),
        None => format!("secret {}", cluster.name_any()),
    }
}

impl Controller {
    /// Creates a `FederatedCluster` for every labelled Secret and every
    /// labelled Rancher environment, and deletes the discovered ones whose
    /// Secret or environment lost the label (or is gone). When Rancher cannot
    /// be listed, or the controller runs without it, the members from
    /// Rancher stay as they are.
    pub(super) async fn discover(&self, federation: &str) -> Result<()> {
        let ns = &self.inner.config.namespace;
        let secrets = Api::<Secret>::namespaced(self.inner.host.clone(), ns)
            .list(&ListParams::default().labels(&format!("{FEDERATION_LABEL}={federation}")))
            .await
            .map_err(host("listing credentials secrets"))?
            .items;
        let mut wanted = member::discovered(federation, &secrets);
        let rancher_listed = match self.rancher_members(federation).await {
            Some(members) => {
                wanted.extend(members);
                true
            }
            None => false,
        };
        let clusters: Api<FederatedCluster> = Api::namespaced(self.inner.host.clone(), ns);
        let existing = clusters
            .list(&ListParams::default())
            .await
            .map_err(host("listing federated clusters"))?
            .items;
        let existing_names: BTreeSet<String> = existing.iter().map(ResourceExt::name_any).collect();
        for cluster in &wanted {
            if existing_names.contains(&cluster.name_any()) {
                continue;
            }
            match clusters.create(&PostParams::default(), cluster).await {
                Ok(created) => {
                    self.inner
                        .recorder
                        .normal(
                            &created,
                            reason::JOINED,
                            "Discover",
                            format!("{} joined federation {federation}", origin(cluster)),
                        )
                        .await;
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(error) => return Err(host("creating a discovered federated cluster")(error)),
            }
        }
        let wanted_names: BTreeSet<String> = wanted.iter().map(ResourceExt::name_any).collect();
        for cluster in existing {
            let from_rancher = cluster.spec.rancher.is_some();
            if cluster.spec.federation == federation
                && member::is_discovered(&cluster)
                && !wanted_names.contains(&cluster.name_any())
                && (rancher_listed || !from_rancher)
            {
                match clusters
                    .delete(&cluster.name_any(), &DeleteParams::default())
                    .await
                {
                    Ok(_) => {
                        self.inner.clients.lock().remove(&cluster.name_any());
                        tracing::info!(
                            federation,
                            cluster = cluster.name_any(),
                            "cluster left the federation"
                        );
                    }
                    Err(kube::Error::Api(status)) if status.code == 404 => {}
                    Err(error) => return Err(host("deleting a federated cluster")(error)),
                }
            }
        }
        Ok(())
    }

    /// The members `federation` wants from Rancher's environments; `None`
    /// when the controller has no Rancher or Rancher could not be listed.
    #[cfg(feature = "rancher")]
    async fn rancher_members(&self, federation: &str) -> Option<Vec<FederatedCluster>> {
        let rancher = self.inner.config.rancher.as_ref()?;
        let live = rancher_client::ListParams::new().removed_null();
        match rancher.projects().list(&live).await {
            Ok(projects) => Some(member::rancher::discovered(
                federation,
                &self.inner.config.namespace,
                &projects,
            )),
            Err(error) => {
                tracing::warn!(
                    federation,
                    error = %rancher_runtime::events::error_chain(&error),
                    "listing rancher environments failed; members from rancher are kept as they are"
                );
                None
            }
        }
    }

    #[cfg(not(feature = "rancher"))]
    async fn rancher_members(&self, _federation: &str) -> Option<Vec<FederatedCluster>> {
        None
    }

    /// A client for `cluster`, cached while its credentials stay the same.
    pub(super) async fn member_client(
        &self,
        cluster: &FederatedCluster,
        timeout: Duration,
    ) -> member::Result<kube::Client> {
        let name = cluster.name_any();
        let (fingerprint, secret) = match (&cluster.spec.secret_ref, &cluster.spec.rancher) {
            (Some(secret_ref), None) => {
                let ns = &self.inner.config.namespace;
                let secret = Api::<Secret>::namespaced(self.inner.host.clone(), ns)
                    .get_opt(&secret_ref.name)
                    .await
                    .ok()
                    .flatten()
                    .ok_or_else(|| member::Error::MissingSecret {
                        namespace: ns.clone(),
                        name: secret_ref.name.clone(),
                    })?;
                let fingerprint = format!(
                    "secret|{}|{}|{:?}|{timeout:?}",
                    secret.resource_version().unwrap_or_default(),
                    secret.uid().unwrap_or_default(),
                    cluster.spec.api_endpoint,
                );
                (fingerprint, Some(secret))
            }
            (None, Some(env)) => (
                format!(
                    "rancher|{}|{:?}|{timeout:?}",
                    env.project_id, cluster.spec.api_endpoint
                ),
                None,
            ),
            _ => {
                return Err(member::Error::InvalidSpec {
                    cluster: name,
                    reason: "exactly one of spec.secretRef and spec.rancher must be set".into(),
                });
            }
        };
        if let Some((seen, client)) = self.inner.clients.lock().get(&name)
            && *seen == fingerprint
        {
            return Ok(client.clone());
        }
        let config = match &secret {
            Some(secret) => member::config(cluster, secret, timeout).await?,
            None => self.rancher_config(cluster, timeout).await?,
        };
        let client = member::client(&name, config)?;
        self.inner
            .clients
            .lock()
            .insert(name, (fingerprint, client.clone()));
        Ok(client)
    }

    #[cfg(feature = "rancher")]
    async fn rancher_config(
        &self,
        cluster: &FederatedCluster,
        timeout: Duration,
    ) -> member::Result<kube::Config> {
        match &self.inner.config.rancher {
            Some(rancher) => member::rancher::config(cluster, rancher, timeout).await,
            None => Err(rancher_unavailable(
                cluster,
                "the controller runs without --rancher",
            )),
        }
    }

    #[cfg(not(feature = "rancher"))]
    async fn rancher_config(
        &self,
        cluster: &FederatedCluster,
        _timeout: Duration,
    ) -> member::Result<kube::Config> {
        Err(rancher_unavailable(
            cluster,
            "rancher-federation is built without feature rancher",
        ))
    }
}

fn rancher_unavailable(cluster: &FederatedCluster, reason: &str) -> member::Error {
    member::Error::Rancher {
        cluster: cluster.name_any(),
        project: cluster
            .spec
            .rancher
            .as_ref()
            .map(|r| r.project_id.clone())
            .unwrap_or_default(),
        reason: reason.to_owned(),
    }
}
