//! Benchmark: N Ingresses (two rules each) on the sandbox, realised by real
//! HAProxy on 127.0.0.2 through the in-tree backend. Prints a Markdown table:
//! time from controller start until every status is written, time from one
//! Ingress change until its new route is served, and the memory the controller
//! added to this process.
//!
//! `cargo bench -p rancher-ingress --bench sync [-- N]` (default 5000).

// A bench script: printing its table is its output.
#![allow(clippy::print_stdout)]

use std::{net::IpAddr, sync::Arc, time::Duration};

use futures::{StreamExt, stream};
use k8s_openapi::api::{
    core::v1::Service, discovery::v1::EndpointSlice, networking::v1::Ingress,
    networking::v1::IngressClass,
};
use kube::{
    Api,
    api::{Patch, PatchParams, PostParams},
};
use prometheus_client::registry::Registry;
use rancher_ingress::{
    backend::lb::LbBackend,
    run::{self, IngressArgs},
};
use rancher_lb::{
    haproxy::{HaproxyConfig, HaproxyDriver},
    placement::Host,
    testing::HttpEcho,
};
use rancher_runtime::{lease::Leadership, ready::Readiness, shutdown::Shutdown};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    time::Instant,
};

/// Services the Ingresses route to; a few more exist for the changes.
const SERVICES: usize = 50;
/// Route changes measured (to a Service already routed to).
const ROUTE_CHANGES: usize = 10;
/// Changes measured that route to a Service not yet routed to.
const NEW_SERVICE_CHANGES: usize = 3;
const HOST: &str = "127.0.0.2";

fn json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("valid object")
}

fn ingress(i: usize, port: u16) -> Ingress {
    let svc = |n: usize| format!("svc-{}", n % SERVICES);
    json(serde_json::json!({
        "metadata": {"name": format!("ing-{i:05}"), "namespace": "default",
                     "annotations": {"http.port": port.to_string()}},
        "spec": {"ingressClassName": "rancher", "rules": [{
            "host": format!("host-{i}.example.org"),
            "http": {"paths": [
                {"path": "/a", "pathType": "Prefix",
                 "backend": {"service": {"name": svc(i), "port": {"number": 80}}}},
                {"path": "/b", "pathType": "Exact",
                 "backend": {"service": {"name": svc(i + 1), "port": {"number": 80}}}}
            ]}
        }]}
    }))
}

fn service(name: &str) -> Service {
    json(serde_json::json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP"}]}
    }))
}

fn slice(service: &str, port: u16) -> EndpointSlice {
    json(serde_json::json!({
        "metadata": {"name": format!("{service}-1"), "namespace": "default",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": port, "protocol": "TCP"}],
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": true}}]
    }))
}

/// One `GET` with `Connection: close`; the whole response as text.
async fn get(port: u16, host: &str, path: &str) -> String {
    let Ok(mut stream) = TcpStream::connect((HOST, port)).await else {
        return String::new();
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    if stream.write_all(request.as_bytes()).await.is_err() {
        return String::new();
    }
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response).await;
    response
}

fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .unwrap_or(0)
}

async fn free_port() -> u16 {
    let listener = TcpListener::bind((HOST, 0)).await.expect("bind");
    listener.local_addr().expect("addr").port()
}

#[tokio::main]
async fn main() {
    rancher_runtime::install_crypto_provider();
    let n: usize = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(5000);
    let sandbox = rancher_sandbox::Sandbox::builder()
        .watch_history(4 * n + 10_000)
        .start()
        .await
        .expect("sandbox");
    let client = sandbox.client();
    Api::<IngressClass>::all(client.clone())
        .create(
            &PostParams::default(),
            &json(serde_json::json!({"metadata": {"name": "rancher"},
                                     "spec": {"controller": "rancher.io/ingress"}})),
        )
        .await
        .expect("class");
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let mut echoes = Vec::new();
    for s in 0..SERVICES + NEW_SERVICE_CHANGES {
        let name = format!("svc-{s}");
        let echo = HttpEcho::start(&name).await.expect("echo backend");
        let port = echo.port();
        echoes.push(echo);
        services
            .create(&PostParams::default(), &service(&name))
            .await
            .expect("service");
        slices
            .create(&PostParams::default(), &slice(&name, port))
            .await
            .expect("slice");
    }
    let port = free_port().await;
    let ingresses: Api<Ingress> = Api::namespaced(client.clone(), "default");
    let created = Instant::now();
    stream::iter(0..n)
        .map(|i| {
            let ingresses = ingresses.clone();
            async move {
                ingresses
                    .create(&PostParams::default(), &ingress(i, port))
                    .await
                    .expect("ingress");
            }
        })
        .buffer_unordered(16)
        .collect::<()>()
        .await;
    let create_time = created.elapsed();
    let rss_before = rss_kib();

    let work = tempfile::tempdir().expect("work dir");
    let host: IpAddr = HOST.parse().expect("address");
    let driver = Arc::new(
        HaproxyDriver::new(HaproxyConfig::new(
            work.path().join("haproxy"),
            vec![Host::new(host)],
        ))
        .await
        .expect("driver"),
    );
    let shutdown = Shutdown::new();
    let readiness = Readiness::new();
    let mut registry = Registry::default();
    let started = Instant::now();
    let running = run::start(
        &IngressArgs::default(),
        client.clone(),
        Arc::new(LbBackend::new(driver.clone())),
        &mut registry,
        &readiness,
        Leadership::always(),
        &shutdown,
    );
    let n_u64 = u64::try_from(n).expect("count");
    while running.metrics.status_writes.get() < n_u64 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let full_sync = started.elapsed();
    // Every Ingress's rules are served.
    let last = format!("host-{}.example.org", n - 1);
    let served_all = loop {
        if get(port, &last, "/a").await.contains(" 200 OK") {
            break started.elapsed();
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    let rss_after = rss_kib();

    // Where a change's time goes, measured on the synced state (best of 5,
    // with the index lock already held).
    let config = IngressArgs::default().config().translate;
    let (translation, translate_time) = {
        let index = running.index.read();
        let mut best = Duration::MAX;
        let mut last = None;
        for _ in 0..5 {
            let t = Instant::now();
            last = Some(rancher_ingress::translate::translate(
                index.sources(),
                &config,
            ));
            best = best.min(t.elapsed());
        }
        (last.expect("translated"), best)
    };
    let biggest = translation
        .balancers
        .values()
        .max_by_key(|lb| lb.routes.len())
        .expect("a load balancer");
    let mut model_time = Duration::MAX;
    let mut model = None;
    for _ in 0..3 {
        let t = Instant::now();
        model = Some(rancher_ingress::backend::lb::to_model(biggest).expect("valid model"));
        model_time = model_time.min(t.elapsed());
    }
    let model = model.expect("built");
    let t = Instant::now();
    rancher_lb::driver::Driver::ensure(driver.as_ref(), &model)
        .await
        .expect("ensure");
    let unchanged_ensure = t.elapsed();

    // One change → served: a new path on ing-00000, until HAProxy answers
    // it. Route changes to a service that is already routed to change map
    // entries through the runtime API; a route to a service not yet routed
    // adds a backend, which is a reload.
    let change = |round: usize, service: usize| {
        let ingresses = ingresses.clone();
        async move {
            let path = format!("/new-{round}");
            let patch = serde_json::json!({"spec": {"rules": [{
                "host": "host-0.example.org",
                "http": {"paths": [
                    {"path": "/a", "pathType": "Prefix",
                     "backend": {"service": {"name": "svc-0", "port": {"number": 80}}}},
                    {"path": path, "pathType": "Exact",
                     "backend": {"service": {"name": format!("svc-{service}"), "port": {"number": 80}}}}
                ]}
            }]}});
            let t0 = Instant::now();
            ingresses
                .patch("ing-00000", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .expect("patch");
            loop {
                let response = get(port, "host-0.example.org", &path).await;
                if response.contains(&format!("svc-{service} {path}")) {
                    break;
                }
                assert!(
                    t0.elapsed() < Duration::from_secs(60),
                    "change never served"
                );
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            t0.elapsed()
        }
    };
    let reloads_before = driver.counters().await.reloads;
    let mut changes = Vec::new();
    for round in 0..ROUTE_CHANGES {
        changes.push(change(round, 2).await);
    }
    changes.sort();
    let route_reloads = driver.counters().await.reloads - reloads_before;
    let mut structural = Vec::new();
    for round in 0..NEW_SERVICE_CHANGES {
        structural.push(change(ROUTE_CHANGES + round, SERVICES + round).await);
    }
    structural.sort();
    let structural_reloads = driver.counters().await.reloads - reloads_before - route_reloads;

    let ms = |d: Duration| format!("{:.1} ms", d.as_secs_f64() * 1000.0);
    println!("| what | figure |");
    println!("| --- | --- |");
    println!("| Ingresses (rules) | {n} ({}) |", 2 * n);
    println!(
        "| creating them on the sandbox (16 at once) | {} |",
        ms(create_time)
    );
    println!(
        "| controller start → every status written | {} |",
        ms(full_sync)
    );
    println!(
        "| controller start → the last Ingress served by HAProxy | {} |",
        ms(served_all)
    );
    println!(
        "| one Ingress change → new route served, to an already-routed Service ({ROUTE_CHANGES} changes: min / median / p90 / max; {route_reloads} reloads) | {} / {} / {} / {} |",
        ms(changes[0]),
        ms(changes[ROUTE_CHANGES / 2]),
        ms(changes[ROUTE_CHANGES * 9 / 10]),
        ms(changes[ROUTE_CHANGES - 1])
    );
    println!(
        "| one Ingress change → new route served, to a Service not yet routed ({NEW_SERVICE_CHANGES} changes: min / median / max; {structural_reloads} reloads) | {} / {} / {} |",
        ms(structural[0]),
        ms(structural[NEW_SERVICE_CHANGES / 2]),
        ms(structural[NEW_SERVICE_CHANGES - 1])
    );
    println!(
        "| controller memory (process RSS after sync minus before start) | {} MiB |",
        rss_after.saturating_sub(rss_before) / 1024
    );
    println!("| translations run | {} |", running.metrics.syncs.get());
    println!(
        "| one translation of every Ingress (best of 5) | {} |",
        ms(translate_time)
    );
    println!(
        "| building the rancher-lb model of the shared load balancer (best of 3) | {} |",
        ms(model_time)
    );
    println!(
        "| driver ensure with nothing changed | {} |",
        ms(unchanged_ensure)
    );

    shutdown.drain(Duration::from_secs(10)).await.ok();
    driver.shutdown().await;
}
