//! Benchmark of the sandbox's workloads, driven by the real `kubectl`.
//!
//! `cargo run --release -p rancher-sandbox --example workloads_bench [-- --demo-binary PATH]`
//!
//! Two sandbox nodes on 127.0.0.2 and 127.0.0.3. Prints a table: the time from
//! `kubectl create deployment` (10 replicas) until all 10 endpoints are ready in the
//! Service's EndpointSlices, from `kubectl scale` (10 → 20 → 5) until the slices show the
//! change, from `kubectl create deployment` (100 replicas) until 100 pods are Ready and
//! their endpoints are, the pods started per second, and the memory per pod (RSS of this
//! process, which holds the sandbox, after the 100 pods minus before, over 100).
//!
//! With `--demo-binary PATH` (a release build of `rancher-sandbox` from
//! `rancher-examples`), it also starts the main job with its demo manifests, waits for
//! its guide and reads the process's RSS after 5 idle seconds.
#![allow(clippy::print_stdout)]

use std::io::BufRead as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use rancher_sandbox::{Sandbox, SandboxNode, Workloads};

fn rss_mib(pid: &str) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn kubectl(kubeconfig: &Path, args: &[&str]) {
    let out = std::process::Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("kubectl runs (apt-get install kubernetes-client)");
    assert!(
        out.status.success(),
        "kubectl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn ready_endpoints(client: &kube::Client, service: &str) -> usize {
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
    slices
        .list(&lp)
        .await
        .map(|l| {
            l.items
                .iter()
                .flat_map(|s| s.endpoints.iter().flatten())
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
                .count()
        })
        .unwrap_or(0)
}

async fn ready_pods(client: &kube::Client, app: &str) -> usize {
    let pods: Api<Pod> = Api::namespaced(client.clone(), "default");
    pods.list(&ListParams::default().labels(&format!("app={app}")))
        .await
        .map(|l| {
            l.items
                .iter()
                .filter(|p| {
                    p.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
                })
                .count()
        })
        .unwrap_or(0)
}

/// Polls `count` until it returns `n`; the time since `start`.
async fn until<F, Fut>(start: Instant, n: usize, mut count: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = usize>,
{
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if count().await == n {
            return start.elapsed();
        }
        assert!(Instant::now() < deadline, "never reached {n}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// Starts the main job's binary with its demo and reads its RSS when idle.
fn demo_rss(binary: &Path) -> f64 {
    let dir = tempfile::tempdir().expect("tempdir");
    let free = || {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.to_string())
            .expect("free port")
    };
    let mut child = std::process::Command::new(binary)
        .arg("--kubeconfig-out")
        .arg(dir.path().join("kubeconfig"))
        .arg("--run-dir")
        .arg(dir.path().join("run"))
        .args(["--dns-listen", &free(), "--federation-dns-listen", &free()])
        .args(["--admin", &free(), "--dns-upstream", "127.0.0.1:9"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("the demo binary starts");
    let stdout = child.stdout.take().expect("stdout");
    for line in std::io::BufReader::new(stdout).lines() {
        let Ok(line) = line else { break };
        if line.starts_with("The sandbox is running") {
            break;
        }
    }
    #[allow(clippy::disallowed_methods)]
    std::thread::sleep(Duration::from_secs(5));
    let rss = rss_mib(&child.id().to_string());
    let _ = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status();
    let _ = child.wait();
    rss
}

#[tokio::main]
async fn main() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let args: Vec<String> = std::env::args().collect();
    let demo: Option<PathBuf> = args
        .iter()
        .position(|a| a == "--demo-binary")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from);
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    let sandbox = Sandbox::builder()
        .kubeconfig_path(&kubeconfig)
        .workloads(
            Workloads::new()
                .node(SandboxNode::new("node-a", "127.0.0.2".parse().expect("ip")))
                .node(SandboxNode::new("node-b", "127.0.0.3".parse().expect("ip"))),
        )
        .start()
        .await
        .expect("sandbox starts");
    let client = sandbox.client();
    let me = std::process::id().to_string();
    let mut rows: Vec<(String, String)> = Vec::new();

    // 10 replicas: create until every endpoint is ready, then scale.
    kubectl(
        &kubeconfig,
        &["create", "service", "clusterip", "b10", "--tcp=8080:8080"],
    );
    let start = Instant::now();
    kubectl(
        &kubeconfig,
        &[
            "create",
            "deployment",
            "b10",
            "--image=nginx",
            "--replicas=10",
            "--port=8080",
        ],
    );
    let t = until(start, 10, || ready_endpoints(&client, "b10")).await;
    rows.push((
        "kubectl create deployment (10 replicas) → 10 ready endpoints".into(),
        ms(t),
    ));
    for n in [20usize, 5] {
        let start = Instant::now();
        kubectl(
            &kubeconfig,
            &["scale", "deployment", "b10", &format!("--replicas={n}")],
        );
        let t = until(start, n, || ready_endpoints(&client, "b10")).await;
        rows.push((format!("kubectl scale → {n} ready endpoints"), ms(t)));
    }

    // 100 replicas.
    let before = rss_mib(&me);
    kubectl(
        &kubeconfig,
        &["create", "service", "clusterip", "b100", "--tcp=8080:8080"],
    );
    let start = Instant::now();
    kubectl(
        &kubeconfig,
        &[
            "create",
            "deployment",
            "b100",
            "--image=nginx",
            "--replicas=100",
            "--port=8080",
        ],
    );
    let pods = until(start, 100, || ready_pods(&client, "b100")).await;
    let endpoints = until(start, 100, || ready_endpoints(&client, "b100")).await;
    let after = rss_mib(&me);
    rows.push((
        "kubectl create deployment (100 replicas) → 100 pods Ready".into(),
        ms(pods),
    ));
    rows.push(("same → 100 ready endpoints".into(), ms(endpoints)));
    rows.push((
        "pods started per second".into(),
        format!("{:.0}", 100.0 / pods.as_secs_f64()),
    ));
    rows.push((
        "memory per pod (RSS after 100 pods minus before, / 100)".into(),
        format!(
            "{:.1} KiB ({before:.1} → {after:.1} MiB)",
            (after - before) * 1024.0 / 100.0
        ),
    ));
    sandbox.shutdown().await;
    if let Some(binary) = demo {
        rows.push((
            "main job with the demo, idle: RSS".into(),
            format!("{:.1} MiB", demo_rss(&binary)),
        ));
    }
    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    for (k, v) in rows {
        println!("{k:width$}  {v}");
    }
}
