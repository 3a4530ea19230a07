//! Your own `IngressBackend`: a controller for the IngressClass `printer`
//! that prints each load balancer's routing table and reports an address.
//!
//! Run with (the sandbox running in another terminal):
//!
//! ```text
//! cargo run -p rancher-examples --example ingress_backend -- --kubeconfig target/sandbox/kubeconfig
//! kubectl --kubeconfig target/sandbox/kubeconfig get ingress hello
//! ```
//!
//! It creates the IngressClass `printer` (controller `example.org/printer`) and
//! the Ingress `hello` of that class; the sandbox's own controller leaves them
//! alone, as they are not of its class.

use std::sync::Arc;

use async_trait::async_trait;
use clap::Parser;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use kube::api::{Api, Patch, PatchParams};
use prometheus_client::registry::Registry;
use rancher_ingress::backend::{IngressBackend, Result};
use rancher_ingress::model::{Address, LoadBalancer, Status};
use rancher_ingress::run::IngressArgs;
use rancher_runtime::{
    client::ClientArgs, lease::Leadership, ready::Readiness, shutdown::Shutdown,
};

const CONTROLLER: &str = "example.org/printer";

/// Prints what it is asked to realise; every load balancer "runs" on 192.0.2.80.
struct Printer;

#[async_trait]
impl IngressBackend for Printer {
    async fn ensure(&self, lb: &LoadBalancer) -> Result<Status> {
        for route in &lb.routes {
            let endpoints = lb.backends.get(&route.backend).map(|b| &b.endpoints);
            tracing::info!(lb = %lb.name, "{}{} -> {endpoints:?}", route.host, route.path);
        }
        Ok(Status::new([Address::parse("192.0.2.80")]))
    }
    async fn ensure_deleted(&self, name: &str) -> Result<()> {
        tracing::info!(lb = name, "deleted");
        Ok(())
    }
    async fn list(&self) -> Result<Vec<String>> {
        Ok(Vec::new())
    }
    async fn status(&self, _name: &str) -> Result<Option<Status>> {
        Ok(None)
    }
}

/// Runs an Ingress controller with the `Printer` backend.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    client: ClientArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    rancher_runtime::install_crypto_provider();
    rancher_runtime::log::LogArgs::default().init("info");
    let client = Args::parse().client.client().await?;
    let apply = PatchParams::apply("ingress-backend-example");
    let class: IngressClass = serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": "printer"}, "spec": {"controller": CONTROLLER},
    }))?;
    Api::<IngressClass>::all(client.clone())
        .patch("printer", &apply, &Patch::Apply(&class))
        .await?;
    let ingress: Ingress = serde_json::from_value(serde_json::json!({
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "hello", "namespace": "default"},
        "spec": {"ingressClassName": "printer", "rules": [{"host": "hello.example.org", "http": {"paths": [
            {"path": "/", "pathType": "Prefix",
             "backend": {"service": {"name": "nginx-service", "port": {"number": 80}}}}]}}]},
    }))?;
    Api::<Ingress>::namespaced(client.clone(), "default")
        .patch("hello", &apply, &Patch::Apply(&ingress))
        .await?;

    let args = IngressArgs {
        controller_name: CONTROLLER.to_owned(),
        ingress_class: "printer".to_owned(),
        ..IngressArgs::default()
    };
    let shutdown = Shutdown::on_signals();
    let readiness = Readiness::new();
    rancher_ingress::run::start(
        &args,
        client,
        Arc::new(Printer),
        &mut Registry::default(),
        &readiness,
        Leadership::always(),
        &shutdown,
    );
    readiness.wait().await;
    tracing::info!("ready; Ctrl-C to stop");
    shutdown.triggered().await;
    shutdown.drain(std::time::Duration::from_secs(5)).await?;
    Ok(())
}
