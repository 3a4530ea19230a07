//! Reconciling one Service against the provider's [`LoadBalancer`].

use std::{collections::HashMap, sync::Arc};

use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;
use parking_lot::{Mutex, RwLock};
use rancher_runtime::events::{Type, error_chain};

use super::{Error, Result, Writer, metrics::Metrics};
use crate::{
    LoadBalancer, convert,
    index::Index,
    model::{self, LoadBalancerStatus, ServiceKey, TrafficPolicy},
    well_known::{LOAD_BALANCER_CLEANUP_FINALIZER, reason},
};

/// What the provider was last told about one Service, successfully.
#[derive(Debug, Clone)]
struct Applied {
    /// The Service without endpoints.
    spec: model::Service,
    /// The backends: node identities and (where they matter) endpoints.
    nodes: Vec<(String, Option<String>, Vec<model::NodeAddress>)>,
    endpoints: Vec<model::Endpoint>,
    /// The status ensure returned; `None` with `ImplementedElsewhere`.
    status: Option<LoadBalancerStatus>,
    /// The provider said the status may have changed: ask it.
    refresh: bool,
}

pub(crate) struct Reconciler {
    index: Arc<RwLock<Index>>,
    lb: Option<Arc<dyn LoadBalancer>>,
    writer: Arc<dyn Writer>,
    cluster: String,
    applied: Mutex<HashMap<ServiceKey, Applied>>,
    /// Load balancer names of applied Services.
    names: Mutex<HashMap<String, ServiceKey>>,
    metrics: Metrics,
}

fn has_finalizer(service: &Service) -> bool {
    service
        .finalizers()
        .iter()
        .any(|f| f == LOAD_BALANCER_CLEANUP_FINALIZER)
}

/// Whether the Service's backends depend on its endpoints.
fn uses_endpoints(service: &Service) -> bool {
    service.spec.as_ref().is_some_and(|spec| {
        spec.external_traffic_policy.as_deref() == Some("Local")
            || spec.allocate_load_balancer_node_ports == Some(false)
    })
}

/// A model Service good enough to identify the load balancer when the Service no
/// longer converts (its type changed, its ports went away).
fn identity(service: &Service) -> model::Service {
    let mut model = model::Service::new(
        convert::service_key(service),
        service.uid().unwrap_or_default(),
        &[],
    );
    model.annotations = service.annotations().clone();
    model
}

fn node_identity(node: &model::Node) -> (String, Option<String>, Vec<model::NodeAddress>) {
    (
        node.name.clone(),
        node.provider_id.clone(),
        node.addresses.clone(),
    )
}

impl Reconciler {
    pub(crate) fn new(
        index: Arc<RwLock<Index>>,
        lb: Option<Arc<dyn LoadBalancer>>,
        writer: Arc<dyn Writer>,
        cluster: String,
        metrics: Metrics,
    ) -> Self {
        Self {
            metrics,
            index,
            lb,
            writer,
            cluster,
            applied: Mutex::new(HashMap::new()),
            names: Mutex::new(HashMap::new()),
        }
    }

    /// The provider reported that load balancer `name` may have a new status:
    /// the Service it belongs to, if any, to queue. `None` for every name (the
    /// report was lost) marks every Service.
    pub(crate) fn status_changed(&self, name: Option<&str>) -> Vec<ServiceKey> {
        let keys: Vec<ServiceKey> = match name {
            Some(name) => self.names.lock().get(name).cloned().into_iter().collect(),
            None => self.names.lock().values().cloned().collect(),
        };
        let mut applied = self.applied.lock();
        for key in &keys {
            if let Some(entry) = applied.get_mut(key) {
                entry.refresh = true;
            }
        }
        keys
    }

    fn provider_error(key: &ServiceKey, call: &'static str, source: crate::Error) -> Error {
        Error::Provider {
            call,
            object: format!("service {key}"),
            source,
        }
    }

    /// The provider's status change reports, if it makes any.
    pub(crate) fn status_changes(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        self.lb.as_ref()?.status_changes()
    }

    pub(crate) async fn reconcile(&self, key: &ServiceKey) -> Result<()> {
        let Some(lb) = self.lb.clone() else {
            return Ok(());
        };
        let (service, class) = {
            let index = self.index.read();
            (index.service(key), index.class().map(str::to_owned))
        };
        let Some(service) = service else {
            return self.forget(&*lb, key).await;
        };
        // A Service of another class belongs to another controller, even when it
        // carries the well-known cleanup finalizer (which that controller put
        // there): leave it alone, as upstream does. `loadBalancerClass` is
        // immutable, so a load balancer we applied can only be ours.
        let foreign = service
            .spec
            .as_ref()
            .and_then(|spec| spec.load_balancer_class.as_deref())
            .is_some_and(|requested| Some(requested) != class.as_deref());
        if foreign && !self.applied.lock().contains_key(key) {
            return Ok(());
        }
        let deleting = service.metadata.deletion_timestamp.is_some();
        let result = if deleting || !convert::wants_load_balancer(&service, class.as_deref()) {
            self.cleanup(&*lb, key, &service, deleting).await
        } else {
            self.sync(&*lb, key, &service).await
        };
        self.metrics.set_load_balancers(self.applied.lock().len());
        result
    }

    /// The Service is gone from the API. With the finalizer that only happens after
    /// cleanup; without it (removed by hand) the recorded load balancer is deleted.
    async fn forget(&self, lb: &dyn LoadBalancer, key: &ServiceKey) -> Result<()> {
        let Some(applied) = self.applied.lock().get(key).cloned() else {
            return Ok(());
        };
        let result = lb
            .ensure_load_balancer_deleted(&self.cluster, &applied.spec)
            .await;
        self.metrics.call("delete", &result);
        result.map_err(|source| Self::provider_error(key, "delete", source))?;
        self.applied.lock().remove(key);
        self.names.lock().retain(|_, k| k != key);
        Ok(())
    }

    async fn cleanup(
        &self,
        lb: &dyn LoadBalancer,
        key: &ServiceKey,
        service: &Service,
        deleting: bool,
    ) -> Result<()> {
        let known = self.applied.lock().contains_key(key);
        if !has_finalizer(service) && !known {
            return Ok(());
        }
        let model = self
            .applied
            .lock()
            .get(key)
            .map(|applied| applied.spec.clone())
            .unwrap_or_else(|| identity(service));
        self.event(
            service,
            Type::Normal,
            reason::DELETING,
            "deleting load balancer".into(),
        )
        .await;
        let result = lb.ensure_load_balancer_deleted(&self.cluster, &model).await;
        self.metrics.call("delete", &result);
        if let Err(error) = result {
            let error = Self::provider_error(key, "delete", error);
            self.event(
                service,
                Type::Warning,
                reason::DELETE_FAILED,
                format!("error deleting load balancer: {}", error_chain(&error)),
            )
            .await;
            return Err(error);
        }
        self.applied.lock().remove(key);
        self.names.lock().retain(|_, k| k != key);
        self.event(
            service,
            Type::Normal,
            reason::DELETED,
            "deleted load balancer".into(),
        )
        .await;
        if !deleting && !convert::current_status(service).ingress.is_empty() {
            self.writer.patch_status(service, None).await?;
        }
        self.writer.remove_finalizer(service).await
    }

    async fn sync(&self, lb: &dyn LoadBalancer, key: &ServiceKey, service: &Service) -> Result<()> {
        let with_endpoints = uses_endpoints(service);
        let slices = self.index.read().slices(key);
        let mut model = match convert::service(service, slices.iter().map(|s| &**s), with_endpoints)
        {
            Ok(model) => model,
            Err(error) => {
                self.event(
                    service,
                    Type::Warning,
                    reason::SYNC_FAILED,
                    format!("invalid service: {error}"),
                )
                .await;
                return Err(Error::Invalid(error));
            }
        };

        // The finalizer goes on before anything can be created.
        self.writer.add_finalizer(service).await?;

        let mut nodes = self.index.read().eligible_nodes();
        if model.external_traffic_policy == TrafficPolicy::Local {
            nodes.retain(|node| {
                model
                    .endpoints
                    .iter()
                    .any(|e| e.node_name.as_deref() == Some(node.name.as_str()))
            });
        }
        let endpoints = std::mem::take(&mut model.endpoints);
        let spec = model.clone();
        model.endpoints = endpoints.clone();
        let identities: Vec<_> = nodes.iter().map(node_identity).collect();

        let previous = self.applied.lock().get(key).cloned();
        match previous {
            Some(applied) if applied.spec == spec => {
                if applied.nodes == identities && applied.endpoints == endpoints {
                    // Nothing changed for the provider; keep the status right.
                    let status = if applied.refresh {
                        self.refresh(lb, key, &model, applied).await?
                    } else {
                        applied.status
                    };
                    if let Some(status) = &status {
                        self.write_status(service, status).await?;
                    }
                    return Ok(());
                }
                self.update(
                    lb, key, service, &model, &nodes, applied, identities, endpoints,
                )
                .await
            }
            _ => {
                self.ensure(
                    lb, key, service, &model, &nodes, spec, identities, endpoints,
                )
                .await
            }
        }
    }

    /// Reads the status of an applied load balancer again after the provider
    /// reported a change. A load balancer that vanished is ensured next time.
    async fn refresh(
        &self,
        lb: &dyn LoadBalancer,
        key: &ServiceKey,
        model: &model::Service,
        mut applied: Applied,
    ) -> Result<Option<LoadBalancerStatus>> {
        let result = lb.get_load_balancer(&self.cluster, model).await;
        self.metrics.call("get", &result);
        let current = result.map_err(|source| Self::provider_error(key, "get", source))?;
        match current {
            Some(status) => {
                applied.refresh = false;
                if applied.status.is_some() {
                    applied.status = Some(status);
                }
                let status = applied.status.clone();
                self.applied.lock().insert(key.clone(), applied);
                Ok(status)
            }
            None => {
                self.applied.lock().remove(key);
                self.index.read().requeue(key);
                Ok(None)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn ensure(
        &self,
        lb: &dyn LoadBalancer,
        key: &ServiceKey,
        service: &Service,
        model: &model::Service,
        nodes: &[model::Node],
        spec: model::Service,
        identities: Vec<(String, Option<String>, Vec<model::NodeAddress>)>,
        endpoints: Vec<model::Endpoint>,
    ) -> Result<()> {
        if nodes.is_empty() {
            self.event(
                service,
                Type::Warning,
                reason::UNAVAILABLE,
                "there are no available nodes for the load balancer".into(),
            )
            .await;
        }
        self.event(
            service,
            Type::Normal,
            reason::ENSURING,
            "ensuring load balancer".into(),
        )
        .await;
        // Known before the call: a provider that answered `Retry` may report
        // when it is done, and that report must find this Service.
        self.names
            .lock()
            .insert(lb.load_balancer_name(&self.cluster, model), key.clone());
        let result = lb.ensure_load_balancer(&self.cluster, model, nodes).await;
        self.metrics.call("ensure", &result);
        let status = match result {
            Ok(status) => Some(status),
            Err(crate::Error::ImplementedElsewhere) => None,
            Err(crate::Error::Retry { after, reason: why }) => {
                self.event(
                    service,
                    Type::Normal,
                    reason::PENDING,
                    format!("{why}; retrying in {after:?}"),
                )
                .await;
                return Err(Self::provider_error(
                    key,
                    "ensure",
                    crate::Error::Retry { after, reason: why },
                ));
            }
            Err(error) => {
                let note = format!("error syncing load balancer: {}", error_chain(&error));
                self.event(service, Type::Warning, reason::SYNC_FAILED, note)
                    .await;
                return Err(Self::provider_error(key, "ensure", error));
            }
        };
        self.event(
            service,
            Type::Normal,
            reason::ENSURED,
            "ensured load balancer".into(),
        )
        .await;
        self.applied.lock().insert(
            key.clone(),
            Applied {
                spec,
                nodes: identities,
                endpoints,
                status: status.clone(),
                refresh: false,
            },
        );
        if let Some(status) = &status {
            self.write_status(service, status).await?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn update(
        &self,
        lb: &dyn LoadBalancer,
        key: &ServiceKey,
        service: &Service,
        model: &model::Service,
        nodes: &[model::Node],
        mut applied: Applied,
        identities: Vec<(String, Option<String>, Vec<model::NodeAddress>)>,
        endpoints: Vec<model::Endpoint>,
    ) -> Result<()> {
        if nodes.is_empty() {
            self.event(
                service,
                Type::Warning,
                reason::UNAVAILABLE,
                "there are no available nodes for the load balancer".into(),
            )
            .await;
        }
        let result = lb.update_load_balancer(&self.cluster, model, nodes).await;
        self.metrics.call("update", &result);
        match result {
            Ok(()) | Err(crate::Error::ImplementedElsewhere) => {}
            Err(error) => {
                if !matches!(error, crate::Error::Retry { .. }) {
                    let names: Vec<&str> = nodes.iter().take(20).map(|n| n.name.as_str()).collect();
                    let note = format!(
                        "error updating load balancer with new hosts {names:?}: {}",
                        error_chain(&error)
                    );
                    self.event(service, Type::Warning, reason::UPDATE_FAILED, note)
                        .await;
                }
                return Err(Self::provider_error(key, "update", error));
            }
        }
        self.event(
            service,
            Type::Normal,
            reason::UPDATED,
            format!("updated load balancer with {} backend node(s)", nodes.len()),
        )
        .await;
        applied.nodes = identities;
        applied.endpoints = endpoints;
        let status = applied.status.clone();
        self.applied.lock().insert(key.clone(), applied);
        if let Some(status) = &status {
            self.write_status(service, status).await?;
        }
        Ok(())
    }

    /// Patches the status when it differs from what the Service carries.
    async fn write_status(&self, service: &Service, status: &LoadBalancerStatus) -> Result<()> {
        if convert::current_status(service) == *status {
            return Ok(());
        }
        self.writer
            .patch_status(service, convert::status(status).ingress)
            .await
    }

    async fn event(&self, service: &Service, type_: Type, reason: &str, note: String) {
        self.writer.event(service, type_, reason, note).await;
    }
}
