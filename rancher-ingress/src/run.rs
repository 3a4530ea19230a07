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
) -> Arc<RwLock<Index>> {
    let index = Arc::new(RwLock::new(Index::new()));
    let config = watcher::Config::default();

    macro_rules! watch_namespaced {
        ($kind:ty, $name:literal) => {{
            let events = index::watch(Api::<$kind>::all(client.clone()), config.clone());
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
        let events = index::watch(Api::<IngressClass>::all(client.clone()), config);
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
        metrics,
    );
    shutdown.spawn(controller.run(readiness.clone(), shutdown.token()));
    index
}
