//! The DNS controller and server against the in-memory API server: real
//! `dig` queries for a StatefulSet-style headless service, ClusterIP,
//! ExternalName, IPv6 and dual-stack services, then writes through the API
//! that show up in `dig` answers.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, DeleteParams, PostParams};
use prometheus_client::registry::Registry;
use rancher_dns::controller::{Dns, DnsArgs};
use rancher_runtime::{client::ClientArgs, ready::Readiness};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::common::{Dig, dig};

async fn create<K>(api: &Api<K>, value: serde_json::Value) -> K
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + serde::Serialize + std::fmt::Debug,
{
    let object: K = serde_json::from_value(value).expect("valid object");
    api.create(&PostParams::default(), &object)
        .await
        .expect("create")
}

fn endpoint(ip: &str, hostname: Option<&str>, ready: bool) -> serde_json::Value {
    let mut e = json!({ "addresses": [ip], "conditions": { "ready": ready } });
    if let Some(h) = hostname {
        e["hostname"] = json!(h);
        e["targetRef"] = json!({ "kind": "Pod", "name": h, "namespace": "default" });
    }
    e
}

fn slice(
    name: &str,
    service: &str,
    family: &str,
    endpoints: Vec<serde_json::Value>,
    port: Option<(&str, u16)>,
) -> serde_json::Value {
    let mut s = json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": { "name": name, "namespace": "default", "labels": { "kubernetes.io/service-name": service } },
        "addressType": family,
        "endpoints": endpoints,
    });
    if let Some((n, p)) = port {
        s["ports"] = json!([{ "name": n, "port": p, "protocol": "TCP" }]);
    }
    s
}

/// Runs dig until `check` holds, or fails after the deadline.
async fn eventually(
    addr: SocketAddr,
    args: &[&str],
    check: impl Fn(&Dig) -> bool + Send + 'static,
) -> Dig {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let d = dig(addr, &args);
            if check(&d) || Instant::now() > deadline {
                return d;
            }
        }
    })
    .await
    .expect("dig task")
}

async fn ask(addr: SocketAddr, args: &[&str]) -> Dig {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    tokio::task::spawn_blocking(move || {
        dig(addr, &args.iter().map(String::as_str).collect::<Vec<_>>())
    })
    .await
    .expect("dig task")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dig_answers_follow_the_api() {
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
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");

    // StatefulSet-style: headless mongodb, pods mdb-0..2 with hostname and
    // subdomain, mdb-2 not ready.
    create(&services, json!({
        "metadata": { "name": "mongodb" },
        "spec": { "clusterIP": "None", "selector": { "app": "mongodb" }, "ports": [{ "name": "mongo", "port": 27017 }] }
    })).await;
    for i in 0..3 {
        create(&pods, json!({
            "metadata": { "name": format!("mdb-{i}"), "labels": { "app": "mongodb" } },
            "spec": { "hostname": format!("mdb-{i}"), "subdomain": "mongodb", "containers": [{ "name": "mongo", "image": "mongo" }] }
        })).await;
    }
    let mongo_eps = |ready2: bool| {
        vec![
            endpoint("10.42.0.10", Some("mdb-0"), true),
            endpoint("10.42.0.11", Some("mdb-1"), true),
            endpoint("10.42.0.12", Some("mdb-2"), ready2),
        ]
    };
    create(
        &slices,
        slice(
            "mongodb-abc",
            "mongodb",
            "IPv4",
            mongo_eps(false),
            Some(("mongo", 27017)),
        ),
    )
    .await;
    let web = create(
        &services,
        json!({
            "metadata": { "name": "web" },
            "spec": { "selector": { "app": "web" }, "ports": [{ "name": "http", "port": 80 }] }
        }),
    )
    .await;
    let web_ip = web
        .spec
        .and_then(|s| s.cluster_ip)
        .expect("allocated cluster IP");
    create(
        &services,
        json!({
            "metadata": { "name": "ext" },
            "spec": { "type": "ExternalName", "externalName": "www.example.org" }
        }),
    )
    .await;
    // The sandbox allocates IPv4 cluster IPs only, so IPv6 and dual-stack
    // come as headless services with IPv6 (and IPv4) EndpointSlices.
    create(
        &services,
        json!({ "metadata": { "name": "v6" }, "spec": { "clusterIP": "None" } }),
    )
    .await;
    create(
        &slices,
        slice(
            "v6-1",
            "v6",
            "IPv6",
            vec![endpoint("fd00::42:1", Some("node-0"), true)],
            None,
        ),
    )
    .await;
    create(
        &services,
        json!({ "metadata": { "name": "dual" }, "spec": { "clusterIP": "None" } }),
    )
    .await;
    create(
        &slices,
        slice(
            "dual-4",
            "dual",
            "IPv4",
            vec![endpoint("10.42.9.1", Some("node-0"), true)],
            None,
        ),
    )
    .await;
    create(
        &slices,
        slice(
            "dual-6",
            "dual",
            "IPv6",
            vec![endpoint("fd00::9:1", Some("node-0"), true)],
            None,
        ),
    )
    .await;

    // The controller and server, as the rancher-dns binary runs them.
    let args = DnsArgs {
        listen: "127.0.0.1:0".parse().unwrap(),
        resolv_conf: dir.path().join("no-resolv.conf"),
        udp_threads: 1,
        ..DnsArgs::default()
    };
    let kube = ClientArgs::kubeconfig(&kubeconfig).client().await.unwrap();
    let readiness = Readiness::new();
    let shutdown = CancellationToken::new();
    let mut registry = Registry::default();
    let dns = Dns::start(&args, kube, &mut registry, &readiness, shutdown.clone())
        .await
        .unwrap();
    let a = dns.local_addr();
    tokio::time::timeout(Duration::from_secs(10), readiness.wait())
        .await
        .expect("first sync within 10 s");
    assert!(dns.synced());

    let d = ask(a, &["web.default.svc.cluster.local", "A"]).await;
    assert_eq!(d.status, "NOERROR");
    assert!(d.flags.contains(&"aa".to_owned()));
    assert_eq!(d.data(), vec![web_ip.clone()]);
    let d = ask(a, &["mongodb.default.svc.cluster.local", "A"]).await;
    assert_eq!(
        d.data(),
        vec!["10.42.0.10", "10.42.0.11"],
        "mdb-2 is not ready"
    );
    let d = ask(a, &["mdb-1.mongodb.default.svc.cluster.local", "A"]).await;
    assert_eq!(d.data(), vec!["10.42.0.11"]);
    let d = ask(a, &["mdb-2.mongodb.default.svc.cluster.local", "A"]).await;
    assert_eq!(d.status, "NXDOMAIN");
    assert!(d.authority[0].starts_with("cluster.local.") && d.authority[0].contains("SOA"));
    let d = ask(a, &["_mongo._tcp.mongodb.default.svc.cluster.local", "SRV"]).await;
    assert_eq!(
        d.data(),
        vec![
            "0 50 27017 mdb-0.mongodb.default.svc.cluster.local.",
            "0 50 27017 mdb-1.mongodb.default.svc.cluster.local."
        ]
    );
    let d = ask(a, &["-x", "10.42.0.11"]).await;
    assert_eq!(d.data(), vec!["mdb-1.mongodb.default.svc.cluster.local."]);
    let d = ask(a, &["ext.default.svc.cluster.local", "A"]).await;
    assert_eq!(d.data(), vec!["www.example.org."]);
    let d = ask(a, &["v6.default.svc.cluster.local", "AAAA"]).await;
    assert_eq!(d.data(), vec!["fd00::42:1"]);
    let d = ask(a, &["v6.default.svc.cluster.local", "A"]).await;
    assert_eq!(
        (d.status.as_str(), d.answer.len(), d.authority.len()),
        ("NOERROR", 0, 1),
        "NODATA with SOA"
    );
    let d = ask(a, &["node-0.dual.default.svc.cluster.local", "AAAA"]).await;
    assert_eq!(d.data(), vec!["fd00::9:1"]);
    let d = ask(a, &["node-0.dual.default.svc.cluster.local", "A"]).await;
    assert_eq!(d.data(), vec!["10.42.9.1"]);
    let d = ask(a, &["-x", "fd00::9:1"]).await;
    assert_eq!(d.data(), vec!["node-0.dual.default.svc.cluster.local."]);
    let d = ask(a, &["dns-version.cluster.local", "TXT"]).await;
    assert_eq!(d.data(), vec!["\"1.1.0\""]);
    let d = ask(a, &["kubernetes.default.svc.cluster.local", "A"]).await;
    assert_eq!(
        d.status, "NOERROR",
        "the sandbox's default/kubernetes service"
    );
    let d = ask(a, &["www.example.org", "A"]).await;
    assert_eq!(d.status, "REFUSED", "no upstream configured");

    // Writes through the API show up in answers: mdb-2 becomes ready...
    let mut s: EndpointSlice = slices.get("mongodb-abc").await.unwrap();
    s.endpoints = serde_json::from_value(json!(mongo_eps(true))).unwrap();
    slices
        .replace("mongodb-abc", &PostParams::default(), &s)
        .await
        .unwrap();
    let d = eventually(a, &["mongodb.default.svc.cluster.local", "A"], |d| {
        d.answer.len() == 3
    })
    .await;
    assert_eq!(d.data(), vec!["10.42.0.10", "10.42.0.11", "10.42.0.12"]);
    let d = eventually(a, &["mdb-2.mongodb.default.svc.cluster.local", "A"], |d| {
        d.status == "NOERROR"
    })
    .await;
    assert_eq!(d.data(), vec!["10.42.0.12"]);
    // ...and a deleted service goes away.
    services
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    let d = eventually(a, &["web.default.svc.cluster.local", "A"], |d| {
        d.status == "NXDOMAIN"
    })
    .await;
    assert_eq!(d.status, "NXDOMAIN");
    let d = ask(a, &["-x", &web_ip]).await;
    assert_ne!(
        d.data(),
        vec!["web.default.svc.cluster.local."],
        "PTR gone too"
    );

    shutdown.cancel();
    dns.stopped().await;
    sandbox.shutdown().await;
}
