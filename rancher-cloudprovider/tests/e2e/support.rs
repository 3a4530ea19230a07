//! Shared helpers: a sandbox with the controller running, object builders, waits.

use std::{collections::BTreeMap, future::Future, sync::Arc, time::Duration};

use k8s_openapi::api::{
    core::v1::{Node, NodeAddress, NodeStatus, Service, ServicePort, ServiceSpec},
    events::v1::Event,
};
use kube::{
    Api,
    api::{ListParams, ObjectMeta, PostParams},
};
use rancher_cloudprovider::{
    Cloud,
    controller::{Config, Controller},
};
use rancher_runtime::{lease::Leadership, ready::Readiness, shutdown::Shutdown};
use rancher_sandbox::Sandbox;

pub(crate) struct Running {
    pub(crate) sandbox: Sandbox,
    pub(crate) client: kube::Client,
    shutdown: Shutdown,
    pub(crate) readiness: Readiness,
}

impl Running {
    /// A sandbox with the controller for `cloud` running against it.
    pub(crate) async fn start(cloud: Arc<dyn Cloud>, config: Config) -> Self {
        rancher_runtime::install_crypto_provider();
        let sandbox = Sandbox::builder().start().await.expect("sandbox starts");
        let client = sandbox.client();
        let shutdown = Shutdown::new();
        let readiness = Readiness::new();
        let controller = Controller::new(client.clone(), cloud, config);
        {
            let (readiness, shutdown2) = (readiness.clone(), shutdown.clone());
            shutdown.spawn(async move {
                controller
                    .run(Leadership::always(), readiness, &shutdown2)
                    .await;
            });
        }
        let running = Self {
            sandbox,
            client,
            shutdown,
            readiness,
        };
        wait_for("caches synced", || {
            let ready = running.readiness.is_ready();
            async move { ready.then_some(()) }
        })
        .await;
        running
    }

    pub(crate) fn services(&self, ns: &str) -> Api<Service> {
        Api::namespaced(self.client.clone(), ns)
    }

    pub(crate) async fn create_service(&self, service: Service) -> Service {
        let ns = service.metadata.namespace.clone().unwrap();
        self.services(&ns)
            .create(&PostParams::default(), &service)
            .await
            .expect("service created")
    }

    pub(crate) async fn create_node(&self, name: &str, ip: &str) {
        Api::<Node>::all(self.client.clone())
            .create(&PostParams::default(), &mk_node(name, ip))
            .await
            .expect("node created");
    }

    /// Reasons of the events recorded about Service `ns/name`.
    pub(crate) async fn event_reasons(&self, ns: &str, name: &str) -> Vec<(String, String)> {
        let events: Api<Event> = Api::namespaced(self.client.clone(), ns);
        let list = events.list(&ListParams::default()).await.expect("events");
        list.items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    format!(
                        "{}: {}",
                        e.reason.unwrap_or_default(),
                        e.note.unwrap_or_default()
                    ),
                )
            })
            .collect()
    }

    pub(crate) async fn stop(self) {
        self.shutdown.trigger();
        self.shutdown
            .drain(Duration::from_secs(10))
            .await
            .expect("controller stops");
        self.sandbox.shutdown().await;
    }
}

pub(crate) fn mk_service(ns: &str, name: &str, ports: &[(&str, i32)]) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            selector: Some(BTreeMap::from([("app".into(), name.into())])),
            ports: Some(
                ports
                    .iter()
                    .map(|(port_name, port)| ServicePort {
                        name: Some((*port_name).into()),
                        port: *port,
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        status: None,
    }
}

pub(crate) fn mk_node(name: &str, ip: &str) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: None,
        status: Some(NodeStatus {
            addresses: Some(vec![NodeAddress {
                type_: "InternalIP".into(),
                address: ip.into(),
            }]),
            ..Default::default()
        }),
    }
}

/// Polls `check` until it returns `Some`, failing after 20 s.
pub(crate) async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The Service's status IPs, once it has any.
pub(crate) fn status_ips(service: &Service) -> Vec<String> {
    service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|i| i.ip.clone())
        .collect()
}
