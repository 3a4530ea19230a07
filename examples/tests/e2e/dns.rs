//! The `rancher-dns` binary against the in-memory API server, queried with the real
//! `dig`: a StatefulSet-style headless service, a ClusterIP service, then writes
//! through the API that must show up in `dig` answers.
//!
//! The record semantics are covered in depth by rancher-dns's own end-to-end tests;
//! this one proves the shipped binary wires them up from a kubeconfig.

use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

use crate::support::{dig, eventually, free_dns_port, free_port, short, spawn_dns, terminate};

fn mongodb_slice(ready: [bool; 3]) -> EndpointSlice {
    let endpoints: Vec<_> = (0..3)
        .map(|i| {
            json!({
                "addresses": [format!("10.42.0.{}", 10 + i)],
                "hostname": format!("mdb-{i}"),
                "conditions": {"ready": ready[i]},
            })
        })
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "mongodb-abc", "namespace": "default",
                     "labels": {"kubernetes.io/service-name": "mongodb"}},
        "addressType": "IPv4",
        "ports": [{"name": "mongo", "port": 27017, "protocol": "TCP"}],
        "endpoints": endpoints,
    }))
    .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_binary_serves_cluster_names_and_follows_api_writes() {
    rancher_runtime::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let sandbox = rancher_sandbox::Sandbox::builder()
        .kubeconfig_path(&kubeconfig)
        .start()
        .await
        .unwrap();
    let client = sandbox.client();
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client, "default");
    let post = PostParams::default();
    let headless: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "mongodb", "namespace": "default"},
        "spec": {"clusterIP": "None", "ports": [{"name": "mongo", "port": 27017}]},
    }))
    .unwrap();
    services.create(&post, &headless).await.unwrap();
    slices
        .create(&post, &mongodb_slice([true, true, false]))
        .await
        .unwrap();
    let web: Service = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"ports": [{"port": 80}]},
    }))
    .unwrap();
    let web = services.create(&post, &web).await.unwrap();
    let web_ip = web.spec.and_then(|s| s.cluster_ip).expect("a ClusterIP");

    let port = free_dns_port();
    let mut child = spawn_dns(&kubeconfig, port, free_port());

    let mdb1 = "mdb-1.mongodb.default.svc.cluster.local";
    eventually("the StatefulSet pod name", || async {
        (short(port, mdb1).await == ["10.42.0.11"]).then_some(())
    })
    .await;
    assert_eq!(
        short(port, "mongodb.default.svc.cluster.local").await,
        ["10.42.0.10", "10.42.0.11"],
        "a headless service answers its ready endpoints only"
    );
    assert_eq!(short(port, "web.default.svc.cluster.local").await, [web_ip]);
    let missing = dig(
        port,
        &[
            "+noall",
            "+comments",
            "+authority",
            "nope.default.svc.cluster.local",
        ],
    )
    .await;
    assert!(missing.contains("status: NXDOMAIN"), "{missing}");
    assert!(missing.contains("flags: qr aa"), "authoritative: {missing}");
    assert!(
        missing.contains("SOA"),
        "SOA in the authority section: {missing}"
    );

    // Writes through the API show up in answers.
    let mut slice = slices.get("mongodb-abc").await.unwrap();
    let ready = mongodb_slice([true, true, true]);
    slice.endpoints = ready.endpoints;
    slices.replace("mongodb-abc", &post, &slice).await.unwrap();
    eventually("mdb-2 to become ready", || async {
        (short(port, "mongodb.default.svc.cluster.local").await.len() == 3).then_some(())
    })
    .await;
    services
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the deleted service to be gone", || async {
        dig(port, &["web.default.svc.cluster.local"])
            .await
            .contains("status: NXDOMAIN")
            .then_some(())
    })
    .await;

    // SIGTERM stops it cleanly.
    terminate(&mut child).await;
}
