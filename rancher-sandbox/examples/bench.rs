//! Benchmark: 10 000 Services plus 10 000 EndpointSlices.
//!
//! `cargo run --release -p rancher-sandbox --example bench [-- COUNT]`
//!
//! Prints a table: bulk create rate (with 10 watchers attached), full list latency (raw
//! HTTP and typed kube-rs), process RSS, and the delay from a write being sent to its
//! watch event reaching each of 10 concurrent watchers (median, p99).
#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Namespace, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use serde_json::json;

const WATCHERS: usize = 10;
const CONCURRENCY: usize = 32;

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}

async fn create_all<K>(api: &Api<K>, objects: Vec<K>) -> Duration
where
    K: kube::Resource
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + 'static,
{
    let start = Instant::now();
    futures::stream::iter(objects)
        .map(|o| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &o).await.map(|_| ()) }
        })
        .buffer_unordered(CONCURRENCY)
        .try_collect::<Vec<()>>()
        .await
        .expect("create");
    start.elapsed()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let count: usize = std::env::args()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .unwrap_or(10_000);
    let rss_start = rss_mib();
    let sandbox = rancher_sandbox::Sandbox::builder()
        .watch_history(1_000)
        .start()
        .await?;
    let client = sandbox.client();
    let ns: Api<Namespace> = Api::all(client.clone());
    ns.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "bench"}}))?,
    )
    .await?;
    let services: Api<Service> = Api::namespaced(client.clone(), "bench");
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "bench");

    // Ten watchers on Services across all namespaces, recording when each version arrives.
    let arrivals: Arc<Mutex<HashMap<String, Vec<Instant>>>> = Arc::default();
    let all_services: Api<Service> = Api::all(client.clone());
    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        let stream = all_services
            .watch(
                &WatchParams::default().disable_bookmarks().timeout(3600),
                "0",
            )
            .await?;
        let arrivals = arrivals.clone();
        watchers.push(tokio::spawn(async move {
            let mut stream = stream.boxed();
            while let Some(Ok(ev)) = stream.next().await {
                let now = Instant::now();
                if let WatchEvent::Modified(s) = ev
                    && let Some(rv) = s.metadata.resource_version
                {
                    arrivals
                        .lock()
                        .expect("lock")
                        .entry(rv)
                        .or_default()
                        .push(now);
                }
            }
        }));
    }

    let svc_objects: Vec<Service> = (0..count)
        .map(|i| {
            serde_json::from_value(json!({"metadata": {"name": format!("svc-{i:05}"), "labels": {"app": format!("app-{}", i % 100)}},
                "spec": {"selector": {"app": format!("app-{i}")}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}))
            .expect("service")
        })
        .collect();
    let svc_time = create_all(&services, svc_objects).await;
    let slice_objects: Vec<EndpointSlice> = (0..count)
        .map(|i| {
            serde_json::from_value(json!({"metadata": {"name": format!("svc-{i:05}-abcde"), "labels": {"kubernetes.io/service-name": format!("svc-{i:05}")}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": [format!("10.42.{}.{}", i / 250, i % 250 + 1)], "conditions": {"ready": true}}],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]}))
            .expect("slice")
        })
        .collect();
    let slice_time = create_all(&slices, slice_objects).await;
    let rss_loaded = rss_mib();

    // Full list latency: raw HTTP (server + transfer) and typed kube-rs (plus decoding).
    let mut raw = Vec::new();
    let mut typed = Vec::new();
    let mut raw_bytes = 0;
    for _ in 0..10 {
        let req = http::Request::get("/api/v1/namespaces/bench/services").body(Vec::new())?;
        let t = Instant::now();
        let text = client.request_text(req).await?;
        raw.push(t.elapsed());
        raw_bytes = text.len();
        let t = Instant::now();
        let list = services.list(&ListParams::default()).await?;
        typed.push(t.elapsed());
        assert_eq!(list.items.len(), count);
    }
    let mut slice_raw = Vec::new();
    for _ in 0..10 {
        let req = http::Request::get("/apis/discovery.k8s.io/v1/namespaces/bench/endpointslices")
            .body(Vec::new())?;
        let t = Instant::now();
        client.request_text(req).await?;
        slice_raw.push(t.elapsed());
    }
    raw.sort();
    typed.sort();
    slice_raw.sort();

    // Fan-out: 1 000 sequential writes, each timed from send to arrival at every watcher.
    arrivals.lock().expect("lock").clear();
    let mut sent: Vec<(String, Instant)> = Vec::new();
    for i in 0..1_000 {
        let name = format!("svc-{:05}", i % count);
        let t = Instant::now();
        let s = services
            .patch(
                &name,
                &PatchParams::default(),
                &Patch::Merge(
                    json!({"metadata": {"annotations": {"example.org/seq": i.to_string()}}}),
                ),
            )
            .await?;
        sent.push((s.metadata.resource_version.unwrap_or_default(), t));
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut delays = Vec::new();
    loop {
        let complete = {
            let a = arrivals.lock().expect("lock");
            sent.iter()
                .all(|(rv, _)| a.get(rv).is_some_and(|v| v.len() == WATCHERS))
        };
        if complete || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    {
        let a = arrivals.lock().expect("lock");
        for (rv, t) in &sent {
            for arrived in a.get(rv).map(Vec::as_slice).unwrap_or_default() {
                delays.push(arrived.duration_since(*t));
            }
        }
    }
    delays.sort();
    let rss_end = rss_mib();

    println!(
        "| measure ({count} Services + {count} EndpointSlices, {WATCHERS} watchers) | value |"
    );
    println!("| --- | --- |");
    println!(
        "| create Services ({CONCURRENCY} concurrent) | {:.0} objects/s ({:.2} s) |",
        count as f64 / svc_time.as_secs_f64(),
        svc_time.as_secs_f64()
    );
    println!(
        "| create EndpointSlices ({CONCURRENCY} concurrent) | {:.0} objects/s ({:.2} s) |",
        count as f64 / slice_time.as_secs_f64(),
        slice_time.as_secs_f64()
    );
    println!(
        "| list {count} Services, raw HTTP ({:.1} MiB), median / max of 10 | {} / {} |",
        raw_bytes as f64 / 1048576.0,
        ms(percentile(&raw, 0.5)),
        ms(percentile(&raw, 1.0))
    );
    println!(
        "| list {count} EndpointSlices, raw HTTP, median / max of 10 | {} / {} |",
        ms(percentile(&slice_raw, 0.5)),
        ms(percentile(&slice_raw, 1.0))
    );
    println!(
        "| list {count} Services, kube-rs typed (incl. decoding), median / max | {} / {} |",
        ms(percentile(&typed, 0.5)),
        ms(percentile(&typed, 1.0))
    );
    println!(
        "| RSS: start / after load / end (whole process, incl. client) | {rss_start:.0} / {rss_loaded:.0} / {rss_end:.0} MiB |"
    );
    println!(
        "| write → event at {WATCHERS} watchers: samples | {} of {} |",
        delays.len(),
        sent.len() * WATCHERS
    );
    println!(
        "| write → event: median | {} |",
        ms(percentile(&delays, 0.5))
    );
    println!("| write → event: p99 | {} |", ms(percentile(&delays, 0.99)));
    println!("| write → event: max | {} |", ms(percentile(&delays, 1.0)));
    for w in watchers {
        w.abort();
    }
    sandbox.shutdown().await;
    Ok(())
}
