//! Benchmark: N `type: LoadBalancer` Services created at once on the sandbox,
//! with the controller driving the fake provider. Prints a Markdown table: time
//! until every status is written, provider calls per Service, and provider calls
//! during resyncs where nothing changed.
//!
//! `cargo bench -p rancher-cloudprovider --all-features --bench service_controller [-- N]`

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
    controller::{Config, Controller},
    testing::{Call, FakeCloud},
};
use rancher_runtime::{lease::Leadership, ready::Readiness, shutdown::Shutdown};
use tokio::time::Instant;

fn service(i: usize) -> Service {
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
                port: 8000,
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
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(1000);
    let resync = Duration::from_secs(3);

    let sandbox = rancher_sandbox::Sandbox::builder()
        .watch_history(100_000)
        .start()
        .await
        .expect("sandbox");
    let client = sandbox.client();
    let cloud = FakeCloud::default();
    let lb = cloud.load_balancer.clone();
    let mut config = Config::default();
    config.resync = resync;
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
        let controller = Controller::new(client.clone(), Arc::new(cloud), config);
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
            async move { services.create(&PostParams::default(), &service(i)).await }
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
