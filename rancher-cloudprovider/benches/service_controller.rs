//! Benchmark: N `type: LoadBalancer` Services created at once on the sandbox,
//! with the controller driving the fake provider, or (`haproxy`) the Rancher
//! implementation on real HAProxy with two loopback hosts. Prints a Markdown
//! table: time until every status is written, provider calls per Service, and
//! provider calls during resyncs where nothing changed.
//!
//! `cargo bench -p rancher-cloudprovider --all-features --bench service_controller -- [N] [haproxy]`

// A bench script: printing its table is its output.
#![allow(clippy::print_stdout)]

use std::{sync::Arc, time::Duration};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{
    Node, NodeAddress, NodeStatus, Service, ServicePort, ServiceSpec,
};
use kube::{
    Api,
    api::{ListParams, ObjectMeta, PostParams},
};
use rancher_cloudprovider::{
    Cloud, LoadBalancer, Result,
    controller::{Config, Controller},
    model::{LoadBalancerStatus, Node as ModelNode, Service as ModelService},
    rancher::RancherLoadBalancer,
    testing::{Call, FakeCloud, FakeLoadBalancer},
};
use rancher_lb::{
    haproxy::{HaproxyConfig, HaproxyDriver},
    placement::Host,
};
use rancher_runtime::{lease::Leadership, ready::Readiness, shutdown::Shutdown};
use tokio::time::Instant;

fn service(i: usize, haproxy: bool) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some("default".into()),
            name: Some(format!("svc-{i:04}")),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            ports: Some(vec![ServicePort {
                name: Some("tcp".into()),
                // HAProxy hosts are shared: every Service needs its own port.
                port: if haproxy { 20000 + i as i32 } else { 8000 },
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

fn node(i: usize) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(format!("node-{i}")),
            ..Default::default()
        },
        spec: None,
        status: Some(NodeStatus {
            addresses: Some(vec![NodeAddress {
                type_: "InternalIP".into(),
                address: format!("127.0.0.{}", i + 2),
            }]),
            ..Default::default()
        }),
    }
}

async fn with_status(api: &Api<Service>) -> usize {
    api.list(&ListParams::default())
        .await
        .map(|list| {
            list.items
                .iter()
                .filter(|s| {
                    s.status
                        .as_ref()
                        .and_then(|s| s.load_balancer.as_ref())
                        .and_then(|lb| lb.ingress.as_ref())
                        .is_some_and(|i| !i.is_empty())
                })
                .count()
        })
        .unwrap_or(0)
}

#[tokio::main]
async fn main() {
    rancher_runtime::install_crypto_provider();
    // `RUST_LOG=rancher_lb=debug` shows where each batch's time goes.
    rancher_runtime::log::LogArgs::default().init("off");
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    let haproxy = std::env::args().any(|a| a == "haproxy");
    let resync = Duration::from_secs(3);

    let sandbox = rancher_sandbox::Sandbox::builder()
        .watch_history(100_000)
        .start()
        .await
        .expect("sandbox");
    let client = sandbox.client();
    let fake = FakeCloud::default();
    let lb = fake.load_balancer.clone();
    let work = tempfile::tempdir().expect("work dir");
    let recording = Recording::new(fake.load_balancer.clone());
    let cloud: Arc<dyn Cloud> = if haproxy {
        let hosts: Vec<std::net::IpAddr> = ["127.0.94.1", "127.0.94.2"]
            .iter()
            .map(|h| h.parse().unwrap())
            .collect();
        let driver = HaproxyDriver::new(HaproxyConfig::new(
            work.path().join("haproxy"),
            hosts.iter().copied().map(Host::new).collect(),
        ))
        .await
        .expect("haproxy driver");
        recording.wrap(RancherLoadBalancer::new(Arc::new(driver)).with_hosts(hosts));
        Arc::new(recording.clone())
    } else {
        Arc::new(fake)
    };
    let mut config = Config::default();
    config.resync = resync;
    if let Some(w) = std::env::var("BENCH_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
    {
        config.workers = w;
    }
    let nodes: Api<Node> = Api::all(client.clone());
    for i in 0..3 {
        nodes
            .create(&PostParams::default(), &node(i))
            .await
            .expect("node");
    }
    let shutdown = Shutdown::new();
    let readiness = Readiness::new();
    {
        let controller = Controller::new(client.clone(), cloud, config);
        let (readiness, shutdown2) = (readiness.clone(), shutdown.clone());
        shutdown.spawn(async move {
            controller
                .run(Leadership::always(), readiness, &shutdown2)
                .await;
        });
    }
    readiness.wait().await;

    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let start = Instant::now();
    futures::stream::iter(0..n)
        .map(|i| {
            let services = services.clone();
            async move {
                services
                    .create(&PostParams::default(), &service(i, haproxy))
                    .await
            }
        })
        .buffer_unordered(64)
        .try_collect::<Vec<_>>()
        .await
        .expect("services created");
    let created = start.elapsed();
    loop {
        if with_status(&services).await == n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let all_status = start.elapsed();

    let calls = lb.calls();
    let ensures = calls
        .iter()
        .filter(|c| matches!(c, Call::Ensure(..)))
        .count();
    let updates = calls
        .iter()
        .filter(|c| matches!(c, Call::Update(..)))
        .count();
    let others = calls.len() - ensures - updates;

    // Steady state: let every Service's watch events settle, then count calls
    // over two resync periods in which nothing changes.
    tokio::time::sleep(Duration::from_secs(1)).await;
    lb.clear_calls();
    tokio::time::sleep(resync * 2 + Duration::from_millis(500)).await;
    let resync_calls = lb.calls().len();

    println!(
        "| Services | create requests done | every status written | ensure calls / Service | update calls | other calls | provider calls in 2 resyncs without change |"
    );
    println!("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |");
    println!(
        "| {n} | {:.2} s | {:.2} s | {:.3} | {updates} | {others} | {resync_calls} |",
        created.as_secs_f64(),
        all_status.as_secs_f64(),
        ensures as f64 / n as f64,
    );

    shutdown.trigger();
    let _ = shutdown.drain(Duration::from_secs(10)).await;
    sandbox.shutdown().await;
}

/// Counts calls on the fake's recorder while a real provider does the work.
#[derive(Clone)]
struct Recording {
    calls: FakeLoadBalancer,
    inner: Arc<std::sync::OnceLock<Arc<dyn LoadBalancer>>>,
}

impl Recording {
    fn new(calls: FakeLoadBalancer) -> Self {
        Self {
            calls,
            inner: Arc::new(std::sync::OnceLock::new()),
        }
    }

    fn wrap(&self, lb: impl LoadBalancer) {
        let _ = self.inner.set(Arc::new(lb));
    }

    fn inner(&self) -> &Arc<dyn LoadBalancer> {
        self.inner.get().expect("wrapped")
    }
}

impl Cloud for Recording {
    fn provider_name(&self) -> &str {
        "rancher"
    }
    fn load_balancer(&self) -> Option<Arc<dyn LoadBalancer>> {
        Some(Arc::new(self.clone()))
    }
}

#[async_trait::async_trait]
impl LoadBalancer for Recording {
    async fn get_load_balancer(
        &self,
        cluster: &str,
        service: &ModelService,
    ) -> Result<Option<LoadBalancerStatus>> {
        let _ = self.calls.get_load_balancer(cluster, service).await;
        self.inner().get_load_balancer(cluster, service).await
    }
    fn load_balancer_name(&self, cluster: &str, service: &ModelService) -> String {
        self.inner().load_balancer_name(cluster, service)
    }
    async fn ensure_load_balancer(
        &self,
        cluster: &str,
        service: &ModelService,
        nodes: &[ModelNode],
    ) -> Result<LoadBalancerStatus> {
        // Record the call on the fake (its own balancer is not used).
        let _ = self
            .calls
            .ensure_load_balancer(cluster, service, nodes)
            .await;
        self.inner()
            .ensure_load_balancer(cluster, service, nodes)
            .await
    }
    async fn update_load_balancer(
        &self,
        cluster: &str,
        service: &ModelService,
        nodes: &[ModelNode],
    ) -> Result<()> {
        let _ = self
            .calls
            .update_load_balancer(cluster, service, nodes)
            .await;
        self.inner()
            .update_load_balancer(cluster, service, nodes)
            .await
    }
    async fn ensure_load_balancer_deleted(
        &self,
        cluster: &str,
        service: &ModelService,
    ) -> Result<()> {
        let _ = self
            .calls
            .ensure_load_balancer_deleted(cluster, service)
            .await;
        self.inner()
            .ensure_load_balancer_deleted(cluster, service)
            .await
    }
    fn status_changes(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        self.inner().status_changes()
    }
}
