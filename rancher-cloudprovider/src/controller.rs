//! The generic service controller (and the node controller part): watches
//! Services, Nodes and EndpointSlices and drives a [`Cloud`].
//!
//! For each `type: LoadBalancer` Service whose `spec.loadBalancerClass` is unset
//! (or the class this controller was given):
//!
//! 1. the finalizer [`LOAD_BALANCER_CLEANUP_FINALIZER`] is added before anything is
//!    created;
//! 2. [`LoadBalancer::ensure_load_balancer`] runs when the Service changed in a way
//!    that matters (anything but labels, selector and status), and
//!    [`LoadBalancer::update_load_balancer`] when only the backends did: the
//!    eligible node set, or the ready endpoints for `externalTrafficPolicy: Local`
//!    (only nodes with local endpoints are backends) and
//!    `allocateLoadBalancerNodePorts: false` (the endpoints are the targets);
//!    nothing is called when nothing changed, so resyncs are free;
//! 3. `status.loadBalancer` is patched through the status subresource when it
//!    differs from what the provider returned;
//! 4. when the Service is deleted or stops asking for a load balancer,
//!    [`LoadBalancer::ensure_load_balancer_deleted`] runs and only on success is the
//!    finalizer removed (and, for a type change, the status cleared).
//!
//! Failures are retried per Service through [`rancher_runtime::requeue::Policy`]
//! (fixed delay for [`Error::Retry`](crate::Error::Retry), backoff otherwise) on a
//! [`Queue`] with several workers, so one converging load balancer never holds up
//! another. Every ensure, update, delete and failure is recorded as an Event
//! (reasons in [`well_known::reason`](crate::well_known::reason)). Only the
//! leader acts.
//!
//! With [`Cloud::instances`], the node controller part fills in each Node's
//! `spec.providerID`, `status.addresses`, the instance-type label and, with
//! [`Cloud::zones`], the `topology.kubernetes.io/zone` and `…/region` labels, and
//! removes the `node.cloudprovider.kubernetes.io/uninitialized` taint.
//!
//! [`LOAD_BALANCER_CLEANUP_FINALIZER`]: crate::well_known::LOAD_BALANCER_CLEANUP_FINALIZER
//! [`LoadBalancer::ensure_load_balancer`]: crate::LoadBalancer::ensure_load_balancer
//! [`LoadBalancer::update_load_balancer`]: crate::LoadBalancer::update_load_balancer
//! [`LoadBalancer::ensure_load_balancer_deleted`]: crate::LoadBalancer::ensure_load_balancer_deleted

mod metrics;
mod node;
mod service;
#[cfg(test)]
mod tests;
mod writer;

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::{
    core::v1::{Node, Service},
    discovery::v1::EndpointSlice,
};
use kube::{Api, runtime::watcher};
use parking_lot::RwLock;
use rancher_runtime::{
    index,
    lease::Leadership,
    queue::Queue,
    ready::Readiness,
    requeue::{Backoff, Classify, ErrorKind, Policy},
    shutdown::Shutdown,
};

use crate::{Cloud, index::Index, model::ServiceKey};

pub(crate) use writer::{KubeWriter, Writer};

/// The field manager of status and metadata writes, by default.
pub const DEFAULT_FIELD_MANAGER: &str = "rancher-cloud-controller-manager";

/// The reporting controller of Events, by default.
pub const DEFAULT_CONTROLLER_NAME: &str = "rancher.io/cloud-controller-manager";

/// Controller settings.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// The cluster name passed to the provider.
    pub cluster_name: String,
    /// The `spec.loadBalancerClass` this controller serves besides unclassed
    /// Services; `None` serves unclassed Services only.
    pub load_balancer_class: Option<String>,
    /// Concurrent Service reconciles.
    pub workers: usize,
    /// How often every Service is looked at again (no provider call unless
    /// something changed).
    pub resync: Duration,
    /// Retry backoff for failures.
    pub backoff: Backoff,
    /// Field manager of writes.
    pub field_manager: String,
    /// Reporting controller of Events.
    pub controller_name: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            cluster_name: "kubernetes".into(),
            load_balancer_class: None,
            workers: 4,
            resync: Duration::from_secs(300),
            backoff: Backoff::default(),
            field_manager: DEFAULT_FIELD_MANAGER.into(),
            controller_name: DEFAULT_CONTROLLER_NAME.into(),
        }
    }
}

impl Config {
    /// Serves `class` as well as unclassed Services.
    #[must_use]
    pub fn with_load_balancer_class(mut self, class: Option<String>) -> Self {
        self.load_balancer_class = class;
        self
    }

    /// Sets the cluster name.
    #[must_use]
    pub fn with_cluster_name(mut self, name: impl Into<String>) -> Self {
        self.cluster_name = name.into();
        self
    }

    /// Sets the number of concurrent reconciles.
    #[must_use]
    pub fn with_workers(mut self, workers: usize) -> Self {
        self.workers = workers.max(1);
        self
    }

    /// Sets the retry backoff.
    #[must_use]
    pub fn with_backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }
}

/// Why one reconcile failed; the Service or Node is retried.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The provider failed or is converging.
    #[error("provider call {call} for {object} failed")]
    Provider {
        /// The call (`ensure`, `update`, `delete`, …).
        call: &'static str,
        /// `service ns/name` or `node name`.
        object: String,
        /// The provider's error.
        #[source]
        source: crate::Error,
    },
    /// The Service cannot be converted to the model.
    #[error("invalid service")]
    Invalid(#[source] crate::convert::Error),
    /// An API write failed.
    #[error("api write to {object} failed")]
    Api {
        /// The object written.
        object: String,
        /// The API error.
        #[source]
        source: kube::Error,
    },
    /// A status write failed.
    #[error("status write failed")]
    Status(#[source] rancher_runtime::status::Error),
    /// A patch could not be encoded.
    #[error("failed to encode a patch")]
    Encode(#[source] serde_json::Error),
}

impl Classify for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Provider {
                source: crate::Error::Retry { after, .. },
                ..
            } => ErrorKind::Retry { after: *after },
            _ => ErrorKind::Backoff,
        }
    }
}

/// Result of a reconcile.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The service controller, plus the node controller when the provider has
/// [`Instances`](crate::Instances).
pub struct Controller {
    client: kube::Client,
    cloud: Arc<dyn Cloud>,
    config: Config,
    metrics: metrics::Metrics,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("provider", &self.cloud.provider_name())
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Controller {
    /// A controller for `cloud` talking to the API through `client`.
    pub fn new(client: kube::Client, cloud: Arc<dyn Cloud>, config: Config) -> Self {
        Self {
            client,
            cloud,
            config,
            metrics: metrics::Metrics::default(),
        }
    }

    /// Registers the controller's metrics into `registry`:
    /// `provider_calls_total{call, outcome}` (calls of `ensure`, `update`,
    /// `delete` and `get`; outcomes `ok`, `retry`, `elsewhere`, `error`) and
    /// `load_balancers` (Services with a load balancer applied).
    #[must_use]
    pub fn with_metrics(self, registry: &mut prometheus_client::registry::Registry) -> Self {
        self.metrics.register(registry);
        self
    }

    /// Runs until `shutdown` triggers: watches, waits for the caches to sync
    /// (registering them with `readiness`), then reconciles while `leadership`
    /// says this replica leads.
    pub async fn run(self, leadership: Leadership, readiness: Readiness, shutdown: &Shutdown) {
        let writer: Arc<dyn Writer> = Arc::new(KubeWriter::new(
            self.client.clone(),
            self.config.field_manager.clone(),
            self.config.controller_name.clone(),
        ));
        let parts = Parts::with_metrics(self.cloud, self.config, writer, self.metrics);
        let token = shutdown.token();

        let client = self.client;
        {
            let (index, token) = (parts.index.clone(), token.clone());
            let events = index::watch(
                Api::<Service>::all(client.clone()),
                watcher::Config::default(),
            )
            .tracked(readiness.track_watch("services"));
            let ready = readiness.register("services");
            shutdown.spawn(async move {
                tokio::select! {
                    () = index::namespaced(index, events, Some(ready)) => {}
                    () = token.cancelled() => {}
                }
            });
        }
        {
            let (index, token) = (parts.index.clone(), token.clone());
            let events = index::watch(Api::<Node>::all(client.clone()), watcher::Config::default())
                .tracked(readiness.track_watch("nodes"));
            let ready = readiness.register("nodes");
            shutdown.spawn(async move {
                tokio::select! {
                    () = index::cluster(index, events, Some(ready)) => {}
                    () = token.cancelled() => {}
                }
            });
        }
        {
            let (index, token) = (parts.index.clone(), token.clone());
            let events = index::watch(
                Api::<EndpointSlice>::all(client),
                watcher::Config::default().labels(crate::well_known::SERVICE_NAME_LABEL),
            )
            .tracked(readiness.track_watch("endpointslices"));
            let ready = readiness.register("endpointslices");
            shutdown.spawn(async move {
                tokio::select! {
                    () = index::namespaced::<EndpointSlice, _, _>(index, events, Some(ready)) => {}
                    () = token.cancelled() => {}
                }
            });
        }

        tokio::select! {
            () = readiness.wait() => {}
            () = token.cancelled() => return,
        }
        parts.run(leadership, token).await;
    }
}

/// Everything a running controller is made of, without the watches: tests feed
/// the index by hand.
pub(crate) struct Parts {
    pub(crate) index: Arc<RwLock<Index>>,
    pub(crate) services: Arc<service::Reconciler>,
    pub(crate) nodes: Option<Arc<node::Reconciler>>,
    service_queue: Queue<ServiceKey>,
    node_queue: Option<Queue<String>>,
    config: Config,
}

impl Parts {
    #[cfg(test)]
    pub(crate) fn new(cloud: Arc<dyn Cloud>, config: Config, writer: Arc<dyn Writer>) -> Self {
        Self::with_metrics(cloud, config, writer, metrics::Metrics::default())
    }

    pub(crate) fn with_metrics(
        cloud: Arc<dyn Cloud>,
        config: Config,
        writer: Arc<dyn Writer>,
        metrics: metrics::Metrics,
    ) -> Self {
        let service_queue = Queue::new();
        let node_queue = cloud.instances().map(|_| Queue::new());
        let index = Arc::new(RwLock::new(Index::new(
            config.load_balancer_class.clone(),
            service_queue.clone(),
            node_queue.clone(),
        )));
        let services = Arc::new(service::Reconciler::new(
            index.clone(),
            cloud.load_balancer(),
            writer.clone(),
            config.cluster_name.clone(),
            metrics,
        ));
        let nodes = cloud.instances().map(|instances| {
            Arc::new(node::Reconciler::new(
                index.clone(),
                instances,
                cloud.zones(),
                writer,
            ))
        });
        Self {
            index,
            services,
            nodes,
            service_queue,
            node_queue,
            config,
        }
    }

    /// Runs the workers until `token` is cancelled.
    pub(crate) async fn run(
        self,
        leadership: Leadership,
        token: tokio_util::sync::CancellationToken,
    ) {
        let Self {
            index,
            services,
            nodes,
            service_queue,
            node_queue,
            config,
        } = self;

        // Queue everything on start, whenever leadership is gained, and on every
        // resync.
        {
            let index = index.clone();
            let token = token.clone();
            let resync = config.resync;
            let mut leadership = leadership.clone();
            tokio::spawn(async move {
                let mut ticker = tokio::time::interval(resync);
                let mut electing = true;
                loop {
                    let change = async {
                        if electing {
                            leadership.changed().await
                        } else {
                            std::future::pending().await
                        }
                    };
                    tokio::select! {
                        _ = ticker.tick() => index.read().queue_all(),
                        changed = change => match changed {
                            Some(true) => index.read().queue_all(),
                            Some(false) => {}
                            None => electing = false,
                        },
                        () = token.cancelled() => return,
                    }
                }
            });
        }

        // Status changes the provider reports on its own.
        if let Some(mut changes) = services.status_changes() {
            let (services, index, token) = (services.clone(), index.clone(), token.clone());
            tokio::spawn(async move {
                loop {
                    let name = tokio::select! {
                        received = changes.recv() => match received {
                            Ok(name) => Some(name),
                            Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => None,
                            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                        },
                        () = token.cancelled() => return,
                    };
                    let keys = services.status_changed(name.as_deref());
                    let index = index.read();
                    for key in &keys {
                        index.requeue(key);
                    }
                }
            });
        }

        let service_run = {
            let policy = Arc::new(Policy::new(config.backoff));
            let leadership = leadership.clone();
            service_queue.run(config.workers, policy, token.clone(), move |key| {
                let services = services.clone();
                let leading = leadership.is_leader();
                async move {
                    if !leading {
                        return Ok(());
                    }
                    services.reconcile(&key).await
                }
            })
        };
        match (nodes, node_queue) {
            (Some(nodes), Some(queue)) => {
                let policy = Arc::new(Policy::new(config.backoff));
                let node_run = queue.run(1, policy, token, move |name: String| {
                    let nodes = nodes.clone();
                    let leading = leadership.is_leader();
                    async move {
                        if !leading {
                            return Ok(());
                        }
                        nodes.reconcile(&name).await
                    }
                });
                tokio::join!(service_run, node_run);
            }
            _ => service_run.await,
        }
    }
}
