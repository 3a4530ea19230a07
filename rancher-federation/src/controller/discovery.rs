//! Membership: `FederatedCluster`s discovered from labelled credentials Secrets.

use std::collections::BTreeSet;

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

impl Controller {
    /// Creates a `FederatedCluster` for every labelled Secret and deletes the
    /// discovered ones whose Secret lost the label.
    pub(super) async fn discover(&self, federation: &str) -> Result<()> {
        let ns = &self.inner.config.namespace;
        let secrets = Api::<Secret>::namespaced(self.inner.host.clone(), ns)
            .list(&ListParams::default().labels(&format!("{FEDERATION_LABEL}={federation}")))
            .await
            .map_err(host("listing credentials secrets"))?
            .items;
        let wanted = member::discovered(federation, &secrets);
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
                            format!(
                                "secret {} joined federation {federation}",
                                cluster.name_any()
                            ),
                        )
                        .await;
                }
                Err(kube::Error::Api(status)) if status.code == 409 => {}
                Err(error) => return Err(host("creating a discovered federated cluster")(error)),
            }
        }
        let wanted_names: BTreeSet<String> = wanted.iter().map(ResourceExt::name_any).collect();
        for cluster in existing {
            if cluster.spec.federation == federation
                && member::is_discovered(&cluster)
                && !wanted_names.contains(&cluster.name_any())
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
}
