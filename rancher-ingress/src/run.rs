//! Wiring for a binary or a test: the five watches feed the [`Index`], the
//! [`Controller`] realises through a backend and writes through [`KubeEffects`].

use std::sync::Arc;

use k8s_openapi::api::{
    core::v1::{Secret, Service},
    discovery::v1::EndpointSlice,
    networking::v1::{Ingress, IngressClass},
};
use kube::{Api, runtime::watcher};
use parking_lot::RwLock;
use prometheus_client::registry::Registry;
use rancher_runtime::{index, lease::Leadership, ready::Readiness, shutdown::Shutdown};

use crate::{
    annotations,
    backend::IngressBackend,
    class::{ClassConfig, DEFAULT_CONTROLLER, DEFAULT_LEGACY_CLASS},
    controller::{self, Controller, KubeEffects},
    index::Index,
    metrics::Metrics,
    translate,
};

/// The controller's settings, as command-line flags with the `clap` feature.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct IngressArgs {
    /// The `spec.controller` of the IngressClasses this controller serves.
    #[cfg_attr(feature = "clap", arg(long, value_name = "NAME", default_value = DEFAULT_CONTROLLER))]
    pub controller_name: String,
    /// The class name accepted in the legacy `kubernetes.io/ingress.class`
    /// annotation without an IngressClass.
    #[cfg_attr(feature = "clap", arg(long, value_name = "NAME", default_value = DEFAULT_LEGACY_CLASS))]
    pub ingress_class: String,
    /// Accept raw configuration snippets (`ingress.rancher.io/config-snippet`,
    /// `config`). Off by default: snippets are an injection surface.
    #[cfg_attr(feature = "clap", arg(long))]
    pub allow_snippets: bool,
    /// Concurrent reconcile workers.
    #[cfg_attr(feature = "clap", arg(long, value_name = "N", default_value_t = 8))]
    pub workers: usize,
}

impl Default for IngressArgs {
    fn default() -> Self {
        Self {
            controller_name: DEFAULT_CONTROLLER.to_owned(),
            ingress_class: DEFAULT_LEGACY_CLASS.to_owned(),
            allow_snippets: false,
            workers: 8,
        }
    }
}

impl IngressArgs {
    /// The controller configuration these flags describe.
    pub fn config(&self) -> controller::Config {
        controller::Config {
            translate: translate::Config {
                class: ClassConfig {
                    controller: self.controller_name.clone(),
                    legacy_class: self.ingress_class.clone(),
                },
                annotations: annotations::Options {
                    allow_snippets: self.allow_snippets,
                },
            },
            workers: self.workers,
        }
    }
}

/// What [`start`] started: the index the watches feed and the controller's
/// metrics.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Started {
    /// The watched objects.
    pub index: Arc<RwLock<Index>>,
    /// The controller's metrics (also registered in the registry).
    pub metrics: Metrics,
}

/// Starts the watches and the controller on `shutdown`'s task tracker.
///
/// `readiness` turns ready once every watch has listed; metrics go into
/// `registry`; only while `leadership` leads does the controller act.
pub fn start(
    args: &IngressArgs,
    client: kube::Client,
    backend: Arc<dyn IngressBackend>,
    registry: &mut Registry,
    readiness: &Readiness,
    leadership: Leadership,
    shutdown: &Shutdown,
) -> Started {
    let index = Arc::new(RwLock::new(Index::new()));
    let config = watcher::Config::default();

    macro_rules! watch_namespaced {
        ($kind:ty, $name:literal) => {{
            let events = index::watch(Api::<$kind>::all(client.clone()), config.clone())
                .tracked(readiness.track_watch($name));
            let ready = readiness.register($name);
            let (index, token) = (index.clone(), shutdown.token());
            shutdown.spawn(async move {
                tokio::select! {
                    () = index::namespaced(index, events, Some(ready)) => {}
                    () = token.cancelled() => {}
                }
            });
        }};
    }
    watch_namespaced!(Ingress, "ingresses");
    watch_namespaced!(Service, "services");
    watch_namespaced!(EndpointSlice, "endpointslices");
    watch_namespaced!(Secret, "secrets");
    {
        let events = index::watch(Api::<IngressClass>::all(client.clone()), config)
            .tracked(readiness.track_watch("ingressclasses"));
        let ready = readiness.register("ingressclasses");
        let (index, token) = (index.clone(), shutdown.token());
        shutdown.spawn(async move {
            tokio::select! {
                () = index::cluster(index, events, Some(ready)) => {}
                () = token.cancelled() => {}
            }
        });
    }

    let metrics = Metrics::register(registry);
    let effects = Arc::new(KubeEffects::new(client, &args.controller_name));
    let controller = Controller::new(
        index.clone(),
        backend,
        effects,
        args.config(),
        leadership,
        metrics.clone(),
    );
    shutdown.spawn(controller.run(readiness.clone(), shutdown.token()));
    Started { index, metrics }
}

/// Which `rancher-lb` driver realises the load balancers.
#[cfg(feature = "lb")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
#[non_exhaustive]
pub enum DriverKind {
    /// Real HAProxy, one process per managed host address.
    #[default]
    Haproxy,
    /// Rancher `loadBalancerService`s through the Rancher API (`CATTLE_URL`,
    /// `CATTLE_ACCESS_KEY`, `CATTLE_SECRET_KEY`); needs the `rancher` feature.
    Rancher,
}

/// Errors starting a driver.
#[cfg(feature = "lb")]
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The HAProxy driver could not start.
    #[error("failed to start the HAProxy driver")]
    Haproxy(#[source] rancher_lb::haproxy::Error),
    /// The Rancher API client could not be configured.
    #[cfg(feature = "rancher")]
    #[error("failed to configure the Rancher API client")]
    Rancher(#[source] rancher_client::Error),
    /// The driver was not compiled in.
    #[error("the {0} driver needs the `{0}` feature")]
    NotCompiled(&'static str),
}

/// The Rancher stack the Rancher driver keeps the Ingress load balancers in.
pub const DEFAULT_RANCHER_STACK: &str = "rancher-ingress";

/// The driver settings, as command-line flags with the `clap` feature.
#[cfg(feature = "lb")]
#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct DriverArgs {
    /// The load balancer driver.
    #[cfg_attr(feature = "clap", arg(long, value_enum, default_value = "haproxy"))]
    pub driver: DriverKind,
    /// The host addresses the HAProxy driver manages (comma-separated); without
    /// them, the InternalIP (else ExternalIP) of every Node, following changes.
    #[cfg_attr(
        feature = "clap",
        arg(long, value_name = "IP,...", value_delimiter = ',')
    )]
    pub hosts: Vec<std::net::IpAddr>,
    /// Where the HAProxy driver keeps configurations, certificates and sockets.
    #[cfg_attr(
        feature = "clap",
        arg(long, value_name = "DIR", default_value = "/var/lib/rancher-ingress")
    )]
    pub work_dir: std::path::PathBuf,
    /// The Rancher stack holding this controller's load balancers (`--driver
    /// rancher`; empty: `rancher-ingress`). One stack per controller: after a
    /// restart the controller deletes the load balancers in it that no
    /// Ingress wants, so another controller must not share it.
    #[cfg_attr(
        feature = "clap",
        arg(long, value_name = "NAME", default_value = DEFAULT_RANCHER_STACK)
    )]
    pub rancher_stack: String,
}

#[cfg(feature = "lb")]
impl DriverArgs {
    /// Starts the driver and the in-tree backend on it. For HAProxy without
    /// `--hosts`, a Node watch keeps the driver's hosts current (registered
    /// with `readiness`, run on `shutdown`), and the driver's metrics go into
    /// a `haproxy` sub-registry of `registry`; for Rancher, which has no
    /// push, the backend's load balancers are re-read every second.
    pub async fn start(
        &self,
        client: kube::Client,
        allow_snippets: bool,
        readiness: &Readiness,
        registry: &mut Registry,
        shutdown: &Shutdown,
    ) -> Result<Arc<crate::backend::lb::LbBackend>, Error> {
        match self.driver {
            DriverKind::Haproxy => {
                let driver = self
                    .start_haproxy(client, allow_snippets, readiness, registry, shutdown)
                    .await?;
                Ok(Arc::new(crate::backend::lb::LbBackend::new(driver)))
            }
            #[cfg(feature = "rancher")]
            DriverKind::Rancher => {
                use rancher_lb::rancher::{RancherConfig, RancherDriver};
                let api = rancher_client::Client::from_env().map_err(Error::Rancher)?;
                let stack = match self.rancher_stack.as_str() {
                    "" => DEFAULT_RANCHER_STACK,
                    stack => stack,
                };
                let driver = Arc::new(RancherDriver::new(
                    api,
                    RancherConfig::new().with_stack(stack),
                ));
                let backend = Arc::new(crate::backend::lb::LbBackend::new(driver.clone()));
                let (refreshing, token) = (backend.clone(), shutdown.token());
                shutdown.spawn(async move {
                    loop {
                        tokio::select! {
                            () = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
                            () = token.cancelled() => return,
                        }
                        if let Err(error) = driver.refresh(&refreshing.models()).await {
                            tracing::warn!(
                                error = &error as &dyn std::error::Error,
                                "refreshing Rancher load balancers failed"
                            );
                        }
                    }
                });
                Ok(backend)
            }
            #[cfg(not(feature = "rancher"))]
            DriverKind::Rancher => Err(Error::NotCompiled("rancher")),
        }
    }

    async fn start_haproxy(
        &self,
        client: kube::Client,
        allow_snippets: bool,
        readiness: &Readiness,
        registry: &mut Registry,
        shutdown: &Shutdown,
    ) -> Result<Arc<dyn rancher_lb::driver::Driver>, Error> {
        use rancher_lb::{
            haproxy::{HaproxyConfig, HaproxyDriver},
            placement::Host,
        };
        let hosts = self.hosts.iter().copied().map(Host::new).collect();
        let config = HaproxyConfig::new(&self.work_dir, hosts).with_snippets(allow_snippets);
        let driver = Arc::new(HaproxyDriver::new(config).await.map_err(Error::Haproxy)?);
        driver.register_metrics(registry.sub_registry_with_prefix("haproxy"));
        {
            let driver = driver.clone();
            let token = shutdown.token();
            shutdown.spawn(async move {
                token.cancelled().await;
                driver.shutdown().await;
            });
        }
        let driver: Arc<dyn rancher_lb::driver::Driver> = driver;
        if self.hosts.is_empty() {
            let (nodes, rx) = crate::nodes::NodeHosts::new();
            let nodes = Arc::new(RwLock::new(nodes));
            let events = index::watch(
                Api::<k8s_openapi::api::core::v1::Node>::all(client),
                watcher::Config::default(),
            )
            .tracked(readiness.track_watch("nodes"));
            let ready = readiness.register("nodes");
            let token = shutdown.token();
            shutdown.spawn(async move {
                tokio::select! {
                    () = index::cluster(nodes, events, Some(ready)) => {}
                    () = token.cancelled() => {}
                }
            });
            shutdown.spawn(crate::nodes::feed(driver.clone(), rx, shutdown.token()));
        }
        Ok(driver)
    }
}
