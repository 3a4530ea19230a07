//! Memory and resources under churn: `rancher-dns`, the ingress controller and
//! the cloud controller manager (both on the HAProxy driver) run while
//! Services, EndpointSlices and Ingresses are created, updated and deleted in
//! rounds. Once the churn is over and everything it made is gone, each
//! binary's resident memory comes back to within 10 % of its level before the
//! churn, and its sockets, its Tokio tasks (`runtime_alive_tasks` in
//! `/metrics`) and the HAProxy processes under its work directory come back
//! to their level too. The figures are printed.
//!
//! The test suite runs a short churn (`CHURN_ROUNDS`, 4 rounds of about 150
//! changes). The soak of `BENCHMARKS.md` runs the same test for 10 minutes:
//! `CHURN_SECONDS=600 cargo nextest run -p rancher-examples --all-features
//! churn --no-capture`.
//!
//! "Before the churn" is measured after one warm-up round, so that the
//! one-time growth (the first HAProxy reloads, the allocator's arenas, the
//! HTTP connections to the API server) counts as the base level.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice, networking::v1::Ingress};
use kube::{
    Api,
    api::{DeleteParams, PostParams},
};
use rancher_lb::testing::HttpEcho;
use serde_json::json;
use tokio::process::Child;

use crate::support::{
    CLASS, app, curl, dns_command, eventually, free_dns_port, free_port, kubectl, metric, short,
    spawn_haproxy_controller, terminate, within,
};

const INGRESS_HOST: &str = "127.0.97.1";
const CLOUD_HOST: &str = "127.0.97.2";
/// Apps (Service, EndpointSlice, Ingress) made and deleted per round.
const APPS: usize = 12;
/// Rounds of the short churn run in the test suite.
const CHURN_ROUNDS: usize = 4;
/// How long the resources may take to come back.
const SETTLE: Duration = Duration::from_secs(90);

/// What is measured of one binary.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Sample {
    rss_kib: u64,
    sockets: usize,
    /// Of those, TCP connections to the API server: the Kubernetes client
    /// keeps idle ones in its pool (each with its connection task) until its
    /// idle timeout, so they are counted apart.
    api_connections: usize,
    threads: usize,
    tasks: u64,
    haproxies: usize,
}

/// A long-running binary under churn.
pub(crate) struct Binary {
    pub(crate) name: &'static str,
    pub(crate) child: Child,
    pub(crate) admin: u16,
    /// The prefix of its metrics.
    pub(crate) prefix: &'static str,
    /// Its HAProxy work directory, if it runs HAProxy.
    pub(crate) work_dir: Option<std::path::PathBuf>,
}

/// The socket inodes of TCP connections to any of `ports` on loopback.
fn connections_to(ports: &[u16]) -> std::collections::HashSet<String> {
    let mut out = std::collections::HashSet::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(table).unwrap_or_default();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let remote_port = fields
                .get(2)
                .and_then(|r| r.rsplit_once(':'))
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            if remote_port.is_some_and(|p| ports.contains(&p))
                && let Some(inode) = fields.get(9)
            {
                out.insert((*inode).to_owned());
            }
        }
    }
    out
}

impl Binary {
    /// Its figures now; `api_ports` are the API servers it talks to.
    async fn sample(&self, api_ports: &[u16]) -> Sample {
        let pid = self.child.id().expect("running");
        let proc = format!("/proc/{pid}");
        let status = std::fs::read_to_string(format!("{proc}/status")).unwrap_or_default();
        let rss_kib = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        let sockets: Vec<String> = std::fs::read_dir(format!("{proc}/fd"))
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|fd| {
                let target = std::fs::read_link(fd.path()).ok()?;
                let target = target.to_string_lossy().into_owned();
                let inode = target.strip_prefix("socket:[")?.strip_suffix(']')?;
                Some(inode.to_owned())
            })
            .collect();
        let api = connections_to(api_ports);
        let api_connections = sockets.iter().filter(|i| api.contains(*i)).count();
        let sockets = sockets.len();
        let threads = std::fs::read_dir(format!("{proc}/task"))
            .map(|d| d.count())
            .unwrap_or(0);
        let tasks = metric(self.admin, &format!("{}_runtime_alive_tasks", self.prefix))
            .await
            .unwrap_or(f64::NAN) as u64;
        let haproxies = self.work_dir.as_deref().map_or(0, haproxies_under);
        Sample {
            rss_kib,
            sockets,
            api_connections,
            threads,
            tasks,
            haproxies,
        }
    }
}

/// Live HAProxy processes whose command line names a path under `dir`.
fn haproxies_under(dir: &Path) -> usize {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .flatten()
        .filter(|entry| {
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                return false;
            };
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            let alive = stat
                .rsplit_once(") ")
                .is_some_and(|(_, rest)| !rest.starts_with('Z') && !rest.starts_with('X'));
            alive && String::from_utf8_lossy(&cmdline).contains(&dir)
        })
        .count()
}

fn service(name: &str, port: u16) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"ports": [{"port": 80, "targetPort": port}]}
    }))
    .expect("service")
}

fn slice(name: &str, port: u16, ready: usize) -> EndpointSlice {
    let endpoints: Vec<_> = (0..ready)
        .map(
            |i| json!({"addresses": [format!("127.0.0.{}", 1 + i)], "conditions": {"ready": true}}),
        )
        .collect();
    serde_json::from_value(json!({
        "metadata": {"name": format!("{name}-1"), "namespace": "default",
            "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "ports": [{"port": port, "protocol": "TCP"}],
        "endpoints": endpoints
    }))
    .expect("slice")
}

fn ingress(name: &str, http_port: u16) -> Ingress {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default",
            "annotations": {"http.port": http_port.to_string()}},
        "spec": {"ingressClassName": "rancher", "rules": [{"host": format!("{name}.example.org"),
            "http": {"paths": [{"path": "/", "pathType": "Prefix",
                "backend": {"service": {"name": name, "port": {"number": 80}}}}]}}]}
    }))
    .expect("ingress")
}

fn lb_service(name: &str, port: u16) -> Service {
    serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"type": "LoadBalancer", "selector": {"app": name},
            "ports": [{"name": "tcp", "port": port, "protocol": "TCP"}]}
    }))
    .expect("lb service")
}

/// One round: `APPS` apps created, their endpoints changed twice, deleted;
/// a `type: LoadBalancer` Service created and deleted. Returns the number of
/// changes made.
async fn round(client: &kube::Client, n: usize, http_port: u16, backend: u16) -> usize {
    let services = Api::<Service>::namespaced(client.clone(), "default");
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), "default");
    let ingresses = Api::<Ingress>::namespaced(client.clone(), "default");
    let pp = PostParams::default();
    let dp = DeleteParams::default();
    let names: Vec<String> = (0..APPS).map(|i| format!("churn-{n}-{i}")).collect();
    let mut changes = 0;
    let lb = format!("churn-lb-{n}");
    services
        .create(&pp, &lb_service(&lb, free_port()))
        .await
        .expect("create lb");
    changes += 1;
    for name in &names {
        services
            .create(&pp, &service(name, backend))
            .await
            .expect("create service");
        slices
            .create(&pp, &slice(name, backend, 1))
            .await
            .expect("create slice");
        ingresses
            .create(&pp, &ingress(name, http_port))
            .await
            .expect("create ingress");
        changes += 3;
    }
    for ready in [3, 2] {
        for name in &names {
            let mut current = slices.get(&format!("{name}-1")).await.expect("slice");
            let wanted = slice(name, backend, ready);
            current.endpoints = wanted.endpoints;
            slices
                .replace(&format!("{name}-1"), &pp, &current)
                .await
                .expect("update slice");
            changes += 1;
        }
    }
    for name in &names {
        ingresses.delete(name, &dp).await.expect("delete ingress");
        slices
            .delete(&format!("{name}-1"), &dp)
            .await
            .expect("delete slice");
        services.delete(name, &dp).await.expect("delete service");
        changes += 3;
    }
    services.delete(&lb, &dp).await.expect("delete lb");
    changes + 1
}

/// Waits until the churn of round `n` is gone from DNS and HAProxy and the
/// load balancer Service (its finalizer removed) is gone from the API.
async fn settled(kubeconfig: &Path, dns_port: u16, http_port: u16, n: usize) {
    let last = format!("churn-{n}-{}", APPS - 1);
    eventually("the churn gone from DNS", || async {
        short(dns_port, &format!("{last}.default.svc.cluster.local"))
            .await
            .is_empty()
            .then_some(())
    })
    .await;
    eventually("the churn gone from HAProxy", || async {
        let url = format!("http://{INGRESS_HOST}:{http_port}/x");
        let (code, _) = curl(&url, Some(&format!("{last}.example.org"))).await;
        (code == 404).then_some(())
    })
    .await;
    eventually("the load balancer Service gone", || async {
        let (ok, out) = kubectl(kubeconfig, &["get", "service", &format!("churn-lb-{n}")]).await;
        (!ok && out.contains("NotFound")).then_some(())
    })
    .await;
}

/// Whether `after` is back to the level of `before`: RSS within 10 %, no
/// more sockets and tasks (apart from the client's pooled API server
/// connections, one task each), no more HAProxy processes.
fn back(before: &Sample, after: &Sample) -> Result<(), String> {
    let pooled = after.api_connections.saturating_sub(before.api_connections);
    if after.rss_kib * 100 > before.rss_kib * 110 {
        return Err(format!(
            "RSS {} KiB after, {} KiB before",
            after.rss_kib, before.rss_kib
        ));
    }
    if after.sockets - after.api_connections > before.sockets - before.api_connections {
        return Err(format!("sockets {before:?} -> {after:?}"));
    }
    if after.tasks > before.tasks + pooled as u64 {
        return Err(format!("tasks {before:?} -> {after:?}"));
    }
    if after.haproxies > before.haproxies {
        return Err(format!("HAProxy processes {before:?} -> {after:?}"));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resources_come_back_after_churn() {
    rancher_runtime::install_crypto_provider();
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    let sandbox = rancher_sandbox::Sandbox::builder()
        .kubeconfig_path(&kubeconfig)
        .start()
        .await
        .expect("sandbox starts");
    let client = sandbox.client();
    let api_port = sandbox.addr().port();
    let echo = HttpEcho::start("base").await.expect("echo");
    let http_port = free_port();
    let base = dir.path().join("base.yaml");
    let manifest = format!(
        "{CLASS}---\n{}",
        app("base", "base.example.org", http_port, echo.port())
    );
    std::fs::write(&base, manifest).expect("write manifests");
    let (ok, out) = kubectl(&kubeconfig, &["apply", "-f", base.to_str().unwrap()]).await;
    assert!(ok, "{out}");

    let (dns_port, dns_admin) = (free_dns_port(), free_port());
    let (ingress_admin, cloud_admin) = (free_port(), free_port());
    let (ingress_dir, cloud_dir) = (dir.path().join("ingress"), dir.path().join("cloud"));
    let mut binaries = [
        Binary {
            name: "rancher-dns",
            child: dns_command(&kubeconfig, dns_port, dns_admin)
                .spawn()
                .expect("rancher-dns starts"),
            admin: dns_admin,
            prefix: "rancher_dns",
            work_dir: None,
        },
        Binary {
            name: "rancher-ingress-controller",
            child: spawn_haproxy_controller(
                env!("CARGO_BIN_EXE_rancher-ingress-controller"),
                &kubeconfig,
                &[INGRESS_HOST],
                &ingress_dir,
                ingress_admin,
            ),
            admin: ingress_admin,
            prefix: "rancher_ingress",
            work_dir: Some(ingress_dir),
        },
        Binary {
            name: "rancher-cloud-controller-manager",
            child: spawn_haproxy_controller(
                env!("CARGO_BIN_EXE_rancher-cloud-controller-manager"),
                &kubeconfig,
                &[CLOUD_HOST],
                &cloud_dir,
                cloud_admin,
            ),
            admin: cloud_admin,
            prefix: "rancher_cloud_controller",
            work_dir: Some(cloud_dir),
        },
    ];
    eventually("the base app served", || async {
        let url = format!("http://{INGRESS_HOST}:{http_port}/x");
        (curl(&url, Some("base.example.org")).await.0 == 200).then_some(())
    })
    .await;

    // Warm-up round, then the level before the churn.
    round(&client, 0, http_port, echo.port()).await;
    settled(&kubeconfig, dns_port, http_port, 0).await;
    let api_ports = [api_port];
    let mut churn = Churn::start(&binaries, &api_ports).await;
    while let Some(n) = churn.next_round() {
        let changes = round(&client, n, http_port, echo.port()).await;
        churn.round_done(&binaries, changes).await;
    }
    settled(&kubeconfig, dns_port, http_port, churn.rounds).await;
    // The base app is still served and answered.
    let url = format!("http://{INGRESS_HOST}:{http_port}/x");
    assert_eq!(curl(&url, Some("base.example.org")).await.0, 200);
    assert_eq!(
        short(dns_port, "base.default.svc.cluster.local")
            .await
            .len(),
        1
    );
    churn.verdict(&mut binaries).await;
}

/// One churn run over some binaries: its rounds, and their figures before,
/// at the peak and after.
pub(crate) struct Churn<'a> {
    api_ports: &'a [u16],
    /// `CHURN_SECONDS`, when set; otherwise `CHURN_ROUNDS` rounds.
    seconds: Option<u64>,
    started: Instant,
    pub(crate) rounds: usize,
    changes: usize,
    before: Vec<Sample>,
    peak: Vec<Sample>,
}

impl<'a> Churn<'a> {
    /// Takes the level before the churn (call it after a warm-up round);
    /// `api_ports` are the API servers the binaries talk to.
    pub(crate) async fn start(binaries: &[Binary], api_ports: &'a [u16]) -> Self {
        let mut before = Vec::new();
        for binary in binaries {
            before.push(binary.sample(api_ports).await);
        }
        Self {
            api_ports,
            seconds: std::env::var("CHURN_SECONDS")
                .ok()
                .and_then(|s| s.parse().ok()),
            started: Instant::now(),
            rounds: 0,
            changes: 0,
            peak: before.clone(),
            before,
        }
    }

    /// The number of the next round, or `None` when the churn is over.
    pub(crate) fn next_round(&mut self) -> Option<usize> {
        let over = match self.seconds {
            Some(s) => self.started.elapsed() >= Duration::from_secs(s),
            None => self.rounds >= CHURN_ROUNDS,
        };
        if over {
            return None;
        }
        self.rounds += 1;
        Some(self.rounds)
    }

    /// Counts a round's `changes` and the binaries' peak memory.
    pub(crate) async fn round_done(&mut self, binaries: &[Binary], changes: usize) {
        self.changes += changes;
        for (binary, peak) in binaries.iter().zip(&mut self.peak) {
            let now = binary.sample(self.api_ports).await;
            peak.rss_kib = peak.rss_kib.max(now.rss_kib);
        }
    }

    /// Once the churn has settled: waits (up to `SETTLE`) for every binary
    /// to come back to its level, prints the figures, stops the binaries,
    /// then fails naming those that did not come back.
    #[allow(clippy::print_stdout)] // the figures BENCHMARKS.md records
    pub(crate) async fn verdict(self, binaries: &mut [Binary]) {
        let churn = self.started.elapsed();
        let settle = Instant::now();
        let samples = async |binaries: &[Binary]| {
            let mut samples = Vec::new();
            for binary in binaries {
                samples.push(binary.sample(self.api_ports).await);
            }
            samples
        };
        within(SETTLE, || async {
            let now = samples(binaries).await;
            let level = self
                .before
                .iter()
                .zip(&now)
                .all(|(b, a)| back(b, a).is_ok());
            level.then_some(())
        })
        .await;
        let after = samples(binaries).await;
        println!(
            "churn: {} changes in {} rounds over {:.0} s; back to level after {:.1} s",
            self.changes,
            self.rounds,
            churn.as_secs_f64(),
            settle.elapsed().as_secs_f64()
        );
        println!(
            "binary | RSS before / peak / after (KiB) | after/before | sockets (API connections) | tasks | threads | HAProxy processes"
        );
        let figures = binaries
            .iter()
            .zip(&self.before)
            .zip(self.peak.iter().zip(&after));
        for ((binary, b), (p, a)) in figures {
            println!(
                "{} | {} / {} / {} | {:.3} | {} ({}) -> {} ({}) | {} -> {} | {} -> {} | {} -> {}",
                binary.name,
                b.rss_kib,
                p.rss_kib,
                a.rss_kib,
                a.rss_kib as f64 / b.rss_kib as f64,
                b.sockets,
                b.api_connections,
                a.sockets,
                a.api_connections,
                b.tasks,
                a.tasks,
                b.threads,
                a.threads,
                b.haproxies,
                a.haproxies
            );
        }
        let failures: Vec<String> = binaries
            .iter()
            .zip(&self.before)
            .zip(&after)
            .filter_map(|((binary, b), a)| {
                back(b, a)
                    .err()
                    .map(|why| format!("{}: {why}", binary.name))
            })
            .collect();
        // Stopped gracefully before any verdict: a controller killed by a
        // panic's unwinding would leave its HAProxy running.
        for binary in binaries.iter_mut() {
            terminate(&mut binary.child).await;
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }
}
