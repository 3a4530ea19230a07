//! Your own cloud `LoadBalancer`: addresses from a pool, one per Service.
//!
//! Run with:
//!
//! ```text
//! cargo run -p rancher-examples --example cloud_load_balancer
//! ```
//!
//! It starts its own in-process sandbox API server (so it does not compete
//! with the running demo's cloud controller for the same Services), creates a
//! `type: LoadBalancer` Service, runs the service controller with the `Pool`
//! provider until the Service's status shows its address, and stops.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Service as KubeService;
use kube::api::{Api, PostParams};
use parking_lot::Mutex;
use rancher_cloudprovider::controller::{Config, Controller};
use rancher_cloudprovider::model::{Ingress, LoadBalancerStatus, Node, Service};
use rancher_cloudprovider::{Cloud, LoadBalancer, Result};
use rancher_runtime::{lease::Leadership, ready::Readiness, shutdown::Shutdown};

/// Hands out 192.0.2.1, 192.0.2.2, ... and keeps each Service's address.
#[derive(Default)]
struct Pool {
    given: Mutex<BTreeMap<String, IpAddr>>,
}

#[async_trait]
impl LoadBalancer for Pool {
    async fn get_load_balancer(&self, c: &str, s: &Service) -> Result<Option<LoadBalancerStatus>> {
        let given = self
            .given
            .lock()
            .get(&self.load_balancer_name(c, s))
            .copied();
        Ok(given.map(|ip| LoadBalancerStatus {
            ingress: vec![Ingress::ip(ip)],
        }))
    }
    fn load_balancer_name(&self, _cluster: &str, service: &Service) -> String {
        service.uid.clone()
    }
    async fn ensure_load_balancer(
        &self,
        c: &str,
        s: &Service,
        _: &[Node],
    ) -> Result<LoadBalancerStatus> {
        let mut given = self.given.lock();
        let next = Ipv4Addr::new(192, 0, 2, u8::try_from(given.len() + 1).unwrap_or(254));
        let ip = *given
            .entry(self.load_balancer_name(c, s))
            .or_insert(IpAddr::V4(next));
        tracing::info!(service = %s.key, %ip, ports = s.ports.len(), "ensured");
        Ok(LoadBalancerStatus {
            ingress: vec![Ingress::ip(ip)],
        })
    }
    async fn update_load_balancer(&self, _: &str, s: &Service, nodes: &[Node]) -> Result<()> {
        tracing::info!(service = %s.key, nodes = nodes.len(), "updated");
        Ok(())
    }
    async fn ensure_load_balancer_deleted(&self, c: &str, s: &Service) -> Result<()> {
        self.given.lock().remove(&self.load_balancer_name(c, s));
        Ok(())
    }
}

struct PoolCloud(Arc<Pool>);

impl Cloud for PoolCloud {
    fn provider_name(&self) -> &str {
        "pool"
    }
    fn load_balancer(&self) -> Option<Arc<dyn LoadBalancer>> {
        Some(self.0.clone())
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rancher_runtime::install_crypto_provider();
    rancher_runtime::log::LogArgs::default().init("info");
    let sandbox = rancher_sandbox::Sandbox::builder().start().await?;
    let client = sandbox.client();
    let shutdown = Shutdown::new();
    let cloud = Arc::new(PoolCloud(Arc::new(Pool::default())));
    let controller = Controller::new(client.clone(), cloud, Config::default());
    let running = shutdown.clone();
    shutdown.spawn(async move {
        controller
            .run(Leadership::always(), Readiness::new(), &running)
            .await;
    });

    let services = Api::<KubeService>::namespaced(client, "default");
    let service: KubeService = serde_json::from_value(serde_json::json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"type": "LoadBalancer", "ports": [{"port": 443, "protocol": "TCP"}]},
    }))?;
    services.create(&PostParams::default(), &service).await?;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    let address = loop {
        let status = services.get("web").await?.status;
        let ingress = status.and_then(|s| s.load_balancer?.ingress?.into_iter().next());
        if let Some(ip) = ingress.and_then(|i| i.ip) {
            break ip;
        }
        anyhow::ensure!(
            tokio::time::Instant::now() < deadline,
            "no address within 10 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    tracing::info!(%address, "service default/web has its load balancer address");
    shutdown.drain(std::time::Duration::from_secs(5)).await?;
    sandbox.shutdown().await;
    Ok(())
}
