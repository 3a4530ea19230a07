//! The scale runs on the realistic cluster of `cluster.rs`: the controller's
//! watch sink fed list pages in this process (each decoding in a process of
//! its own, so its memory figures are its own), and the `rancher-dns` binary
//! against a sandbox API server holding the same objects.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use kube::core::ObjectList;
use kube::runtime::watcher::Event;
use parking_lot::RwLock;
use rancher_dns::backend::{DnsBackend, ServerBackend};
use rancher_dns::controller::SLICE_PAGE;
use rancher_dns::index::{DnsIndex, Watched, follow};
use rancher_dns::metrics::Metrics;
use rancher_dns::model::Options;
use rancher_dns::object;
use rancher_dns::server::{Server, ServerConfig};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cluster::{self, ENDPOINTS, NAMESPACES, SERVICES};
use crate::{Killed, free_port, probe};

/// CoreDNS's published sizing for its kubernetes plugin, in MB:
/// (pods + services) / 1000 + 54, here with one Pod per endpoint.
const COREDNS_MB: f64 = ((SERVICES * ENDPOINTS + SERVICES) as f64) / 1000.0 + 54.0;

/// Services per list page: kube's watcher default.
const SERVICE_PAGE: usize = 500;

/// What list pages are decoded into.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decode {
    /// `rancher_dns::object`: only the fields DNS reads (the controller now).
    Lean,
    /// The full `k8s-openapi` types (the controller before).
    Full,
}

impl Decode {
    pub(crate) fn arg(self) -> &'static str {
        match self {
            Self::Lean => "lean",
            Self::Full => "full",
        }
    }

    pub(crate) fn from_arg(s: &str) -> Option<Self> {
        [Self::Lean, Self::Full].into_iter().find(|d| d.arg() == s)
    }
}

pub(crate) fn status_mb(pid: &str, key: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// Listed EndpointSlice `i`: Service `i / 2`'s own slice, then its placeholder.
fn slice_listed(i: usize) -> Value {
    if i.is_multiple_of(2) {
        cluster::slice_listed(i / 2, 2, None)
    } else {
        cluster::placeholder_listed(i / 2, 3)
    }
}

/// A watch's initial list as kube's watcher hands it over: each page is
/// fetched (here: built) when the previous one is used up, decoded as the
/// client does (the body as text, then serde_json into the page's type),
/// and its objects passed on one by one.
fn initial_list<K: Clone + DeserializeOwned>(
    pages: usize,
    page: impl Fn(usize) -> String,
) -> impl futures::Stream<Item = kube::runtime::watcher::Result<Event<K>>> {
    let objects = (0..pages).flat_map(move |p| {
        let text = page(p);
        let list: ObjectList<K> = serde_json::from_str(&text).expect("a page decodes");
        list.items.into_iter().map(Event::InitApply)
    });
    let events = std::iter::once(Event::Init)
        .chain(objects)
        .chain(std::iter::once(Event::InitDone));
    futures::stream::iter(events.map(Ok))
}

fn service_page(p: usize) -> String {
    let items = (p * SERVICE_PAGE..((p + 1) * SERVICE_PAGE).min(SERVICES))
        .map(|j| cluster::service_listed(j, 1))
        .collect();
    cluster::page("Service", "v1", items, 4, (p + 1) * SERVICE_PAGE < SERVICES)
}

fn slice_page(p: usize) -> String {
    let per = SLICE_PAGE as usize;
    let total = 2 * SERVICES;
    let items = (p * per..((p + 1) * per).min(total))
        .map(slice_listed)
        .collect();
    cluster::page(
        "EndpointSlice",
        "discovery.k8s.io/v1",
        items,
        4,
        (p + 1) * per < total,
    )
}

/// Runs the in-process scale run with pages decoded as `decode` says
/// (called in a child process: `--scale lean|full`).
pub(crate) fn in_process(decode: Decode) {
    match decode {
        Decode::Lean => run::<object::Service, object::EndpointSlice>(decode),
        Decode::Full => run::<core::Service, discovery::EndpointSlice>(decode),
    }
}

fn run<S, E>(decode: Decode)
where
    S: Watched + Clone + DeserializeOwned,
    E: Watched + Clone + DeserializeOwned,
{
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let rss_before = status_mb("self", "VmRSS:");
        let started = Instant::now();
        let metrics = Metrics::new();
        let (sink, mut changes) = DnsIndex::new(Options::default(), metrics.clone());
        let sink = Arc::new(RwLock::new(sink));
        let pages = SERVICES.div_ceil(SERVICE_PAGE);
        follow(sink.clone(), initial_list::<S>(pages, service_page), None).await;
        let rss_services = status_mb("self", "VmRSS:");
        let pages = (2 * SERVICES).div_ceil(SLICE_PAGE as usize);
        follow(sink.clone(), initial_list::<E>(pages, slice_page), None).await;
        let rss_index = status_mb("self", "VmRSS:");
        let backend = ServerBackend::new(&Options::default(), metrics.clone());
        // As the controller does: publish from now on, and sync a view
        // sharing the index's records.
        let zone = {
            let mut guard = sink.write();
            guard.start_publishing();
            guard.records().view()
        };
        backend.sync(&zone).await.expect("sync");
        drop(zone);
        let first_sync = started.elapsed();
        let cpu = cpu_seconds("self");
        let names = sink.read().records().len();
        let rss = status_mb("self", "VmRSS:");
        let hwm = status_mb("self", "VmHWM:");
        let arenas = arenas("self");

        let config = ServerConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            udp_threads: 1,
            ..ServerConfig::default()
        };
        let server = Server::start(&config, backend.snapshots(), metrics).expect("server");
        let addr = server.local_addr();
        let mut delays = Vec::new();
        let mut published = Vec::new();
        for round in 0..1000usize {
            // Endpoint k of Service j turns not ready: its hostname goes.
            let (j, k) = (round * 7 % SERVICES, round % ENDPOINTS);
            let name = format!("db{j}-{k}.db{j}.{}.svc.cluster.local", cluster::namespace(j));
            let event = cluster::slice_listed(j, 10 + round as u64, Some(k)).to_string();
            let t = Instant::now();
            let slice: E = serde_json::from_str(&event).expect("an event decodes");
            sink.write().apply_object(slice);
            let mut batch = Vec::new();
            while let Ok(more) = changes.try_recv() {
                batch.extend(more);
            }
            backend.apply(&batch).await.expect("apply");
            published.push(t.elapsed());
            let seen = tokio::task::spawn_blocking(move || {
                let deadline = Instant::now() + Duration::from_secs(2);
                while Instant::now() < deadline {
                    if probe(addr, &name) == Some(3) {
                        return true;
                    }
                }
                false
            })
            .await
            .expect("probe");
            assert!(seen, "change never became visible");
            delays.push(t.elapsed());
        }
        delays.sort();
        published.sort();
        let how = match decode {
            Decode::Lean => "lean `rancher_dns::object` types (the controller)",
            Decode::Full => "full k8s-openapi types (the controller before)",
        };
        println!();
        println!(
            "| scale, through the watch sink, pages decoded into {how} | value |"
        );
        println!("| --- | --- |");
        println!("| owner names in the zone | {names} |");
        println!(
            "| time to first full answer set (building the pages' JSON, decoding, index, snapshot); CPU time of the process until then | {:.2} s; {cpu:.2} s CPU |",
            first_sync.as_secs_f64()
        );
        println!(
            "| RSS after the first sync (process; before: {rss_before:.1} MB, Services indexed: {rss_services:.1} MB, slices indexed: {rss_index:.1} MB) | {rss:.1} MB |"
        );
        println!("| high-water mark (VmHWM) | {hwm:.1} MB |");
        println!("| malloc arenas after the first sync | {arenas} |");
        println!(
            "| RSS against CoreDNS's published sizing, (pods + services) / 1000 + 54 MB = {COREDNS_MB:.0} MB | {:.2}x |",
            rss / COREDNS_MB
        );
        println!(
            "| change-to-answer, median / p99 (endpoint readiness → NXDOMAIN over UDP) | {:.3} / {:.3} ms |",
            percentile(&delays, 0.5).as_secs_f64() * 1e3,
            percentile(&delays, 0.99).as_secs_f64() * 1e3
        );
        println!(
            "| change-to-published snapshot (decode, sink, backend), median / p99 | {:.3} / {:.3} ms |",
            percentile(&published, 0.5).as_secs_f64() * 1e3,
            percentile(&published, 0.99).as_secs_f64() * 1e3
        );
        server.shutdown().await;
    });
}

/// Runs this bench as a child for one in-process scale run.
pub(crate) fn in_child(decode: Decode) {
    let exe = std::env::current_exe().expect("own path");
    let status = Command::new(exe)
        .args(["--scale", decode.arg()])
        .status()
        .expect("scale run starts");
    assert!(status.success(), "scale run ({}) failed", decode.arg());
}

fn http_ok(addr: SocketAddr, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
    else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream
        .write_all(format!("GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    stream.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

/// POSTs `objects` (path, body) with `fieldManager`, 16 at a time.
async fn create_all(client: &kube::Client, manager: &str, objects: Vec<(String, Value)>) {
    let results: Vec<_> = futures::stream::iter(objects)
        .map(|(path, body)| {
            let request = http::Request::post(format!("{path}?fieldManager={manager}"))
                .header("content-type", "application/json")
                .body(serde_json::to_vec(&body).expect("json"))
                .expect("request");
            client.request_text(request)
        })
        .buffer_unordered(16)
        .collect()
        .await;
    if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
        panic!("creating the scale objects failed: {e}");
    }
}

fn collection(group_version: &str, ns: &str, plural: &str) -> String {
    let root = if group_version == "v1" { "api" } else { "apis" };
    format!("/{root}/{group_version}/namespaces/{ns}/{plural}")
}

/// Loads the cluster into the sandbox the way it is written in a real one:
/// Services and their slices as `kubectl apply` creates them, placeholders
/// as kube-controller-manager does.
async fn load(client: &kube::Client) {
    let namespaces = (0..NAMESPACES)
        .map(|n| {
            let body = serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("ns{n}")}});
            ("/api/v1/namespaces".to_owned(), body)
        })
        .collect();
    create_all(client, cluster::KUBECTL_APPLY, namespaces).await;
    let services = (0..SERVICES)
        .map(|j| {
            let path = collection("v1", &cluster::namespace(j), "services");
            (path, cluster::service_request(j))
        })
        .collect();
    create_all(client, cluster::KUBECTL_APPLY, services).await;
    let slices = |f: fn(usize) -> Value| {
        (0..SERVICES)
            .map(|j| {
                let path = collection(
                    "discovery.k8s.io/v1",
                    &cluster::namespace(j),
                    "endpointslices",
                );
                (path, f(j))
            })
            .collect()
    };
    create_all(
        client,
        cluster::KUBECTL_APPLY,
        slices(cluster::slice_request),
    )
    .await;
    create_all(client, cluster::KCM, slices(cluster::placeholder_request)).await;
}

/// Checks that the sandbox lists the objects as the in-process run is fed
/// them; returns their JSON sizes (Service, slice, placeholder).
async fn check_shape(client: &kube::Client) -> [usize; 3] {
    let j = 7;
    let ns = cluster::namespace(j);
    let placeholder = cluster::placeholder_request(j);
    let paths = [
        format!("{}/db{j}", collection("v1", &ns, "services")),
        format!(
            "{}/db{j}-pods",
            collection("discovery.k8s.io/v1", &ns, "endpointslices")
        ),
        format!(
            "{}/{}",
            collection("discovery.k8s.io/v1", &ns, "endpointslices"),
            placeholder["metadata"]["name"].as_str().unwrap_or_default()
        ),
    ];
    let expected = [
        cluster::service_listed(j, 1),
        cluster::slice_listed(j, 1, None),
        cluster::placeholder_listed(j, 1),
    ];
    let mut sizes = [0; 3];
    for (i, (path, want)) in paths.iter().zip(expected).enumerate() {
        let request = http::Request::get(path.as_str())
            .body(Vec::new())
            .expect("request");
        let text = client.request_text(request).await.expect("get");
        sizes[i] = text.len();
        let got: Value = serde_json::from_str(&text).expect("json");
        assert_eq!(
            cluster::normalize(got),
            cluster::normalize(want),
            "the sandbox lists {path} in another shape than the in-process run is fed"
        );
    }
    sizes
}

/// glibc's malloc arenas in process `pid`: the main one, plus one per
/// 64 MiB heap the others reserve (each a read-write mapping aligned to
/// 64 MiB followed by the reserved rest of the 64 MiB, as `/proc/PID/maps`
/// shows them).
pub(crate) fn arenas(pid: &str) -> usize {
    const HEAP: u64 = 64 << 20;
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap_or_default();
    let regions: Vec<(u64, u64, bool, bool)> = maps
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (range, perms) = (f.next()?, f.next()?);
            let anonymous = f.nth(3).is_none();
            let (a, b) = range.split_once('-')?;
            let (a, b) = (
                u64::from_str_radix(a, 16).ok()?,
                u64::from_str_radix(b, 16).ok()?,
            );
            Some((a, b, perms.starts_with("rw"), anonymous))
        })
        .collect();
    let heaps = regions
        .windows(2)
        .filter(|w| {
            let ((a, b, rw, anon), (c, d, rw2, anon2)) = (w[0], w[1]);
            rw && anon && !rw2 && anon2 && a % HEAP == 0 && b == c && d - a == HEAP
        })
        .count();
    // A heap grown to the full 64 MiB has no reserved rest.
    let full = regions
        .iter()
        .filter(|(a, b, rw, anon)| *rw && *anon && a % HEAP == 0 && b - a == HEAP)
        .count();
    1 + heaps + full
}

/// CPU time (user and system) process `pid` has used, in seconds: the
/// figure that matters on a loaded machine, where wall-clock time also
/// waits for other engineers' builds.
pub(crate) fn cpu_seconds(pid: &str) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks: f64 = [11, 12]
        .iter()
        .filter_map(|&i| fields.get(i).and_then(|v| v.parse::<f64>().ok()))
        .sum();
    // `/proc` counts in USER_HZ, 100 per second on Linux.
    ticks / 100.0
}

/// Where the binary's log goes: the file `DNSPERF_BINARY_LOG` names
/// (appended to), or nowhere.
fn log_to() -> Stdio {
    std::env::var_os("DNSPERF_BINARY_LOG")
        .and_then(|path| {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .ok()
        })
        .map_or_else(Stdio::null, Stdio::from)
}

/// What one run of the binary showed.
struct BinaryRun {
    ready: f64,
    rss: f64,
    hwm: f64,
    answers: bool,
    arenas: usize,
    /// CPU seconds used until ready.
    cpu: f64,
    /// CPU seconds this process (the sandbox API server serving the lists)
    /// used meanwhile.
    sandbox_cpu: f64,
}

/// One binary against the sandbox, with `env` added: time until `/readyz`,
/// RSS then, VmHWM, arenas, CPU time.
fn measure_binary(
    binary: &Path,
    kubeconfig: &Path,
    env: &[(&str, &str)],
    rt: &tokio::runtime::Runtime,
) -> BinaryRun {
    let port = free_port();
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let sandbox_cpu = cpu_seconds("self");
    let started = Instant::now();
    let child = Command::new(binary)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--upstream",
            "127.0.0.1:9",
            "--admin",
            &admin.to_string(),
        ])
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(log_to())
        .spawn()
        .expect("start rancher-dns");
    let child = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(120);
    rt.block_on(async {
        while !http_ok(admin, "/readyz") {
            assert!(Instant::now() < deadline, "rancher-dns never got ready");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    let ready = started.elapsed().as_secs_f64();
    let sandbox_cpu = cpu_seconds("self") - sandbox_cpu;
    let j = SERVICES - 3;
    let answers = probe(
        SocketAddr::from(([127, 0, 0, 1], port)),
        &format!("db{j}-4.db{j}.{}.svc.cluster.local", cluster::namespace(j)),
    ) == Some(0);
    let pid = child.0.id().to_string();
    let cpu = cpu_seconds(&pid);
    let (rss, hwm) = (status_mb(&pid, "VmRSS:"), status_mb(&pid, "VmHWM:"));
    let arenas = arenas(&pid);
    drop(child);
    BinaryRun {
        ready,
        rss,
        hwm,
        answers,
        arenas,
        cpu,
        sandbox_cpu,
    }
}

/// The `rancher-dns` binary (release build next to this bench, or
/// `DNSPERF_BINARY`) against a sandbox API server holding the cluster; with
/// `DNSPERF_BASELINE` set to another build of the binary, that one too, in
/// the same run.
pub(crate) fn binary() {
    let exe = std::env::current_exe().expect("own path");
    let built = exe
        .parent()
        .and_then(Path::parent)
        .map(|release| release.join("rancher-dns"));
    let binary = std::env::var_os("DNSPERF_BINARY")
        .map(PathBuf::from)
        .or(built)
        .filter(|b| b.exists());
    println!();
    println!("| the rancher-dns binary, same cluster in a sandbox API server | value |");
    println!("| --- | --- |");
    let Some(binary) = binary else {
        println!(
            "| not measured | build it first: `cargo build --release -p rancher-examples --bin rancher-dns` |"
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rancher_runtime::install_crypto_provider();
    let sandbox = rt
        .block_on(
            rancher_sandbox::Sandbox::builder()
                .service_cidr("10.100.0.0/16")
                .default_objects(false)
                .kubeconfig_path(&kubeconfig)
                .start(),
        )
        .expect("sandbox");
    let loading = Instant::now();
    let client = sandbox.client();
    rt.block_on(load(&client));
    let loaded = loading.elapsed();
    let sizes = rt.block_on(check_shape(&client));
    println!(
        "| objects: {SERVICES} Services, {} EndpointSlices, {} endpoints, loaded over HTTP in {:.1} s | JSON per object as listed: Service {} B, slice {} B, placeholder {} B (same shape as fed in process: checked) |",
        2 * SERVICES,
        SERVICES * ENDPOINTS,
        loaded.as_secs_f64(),
        sizes[0],
        sizes[1],
        sizes[2]
    );
    let mut runs = vec![("this tree", binary.clone(), &[][..])];
    // glibc gives each thread that allocates while the others hold the
    // lock an arena of its own (up to 8 per core): one arena is the floor.
    runs.push((
        "this tree, `MALLOC_ARENA_MAX=1`",
        binary.clone(),
        &[("MALLOC_ARENA_MAX", "1")][..],
    ));
    // And every free gives the top of the heap back (glibc's trim
    // threshold at 0): what trimming as memory is freed saves.
    runs.push((
        "this tree, `MALLOC_ARENA_MAX=1 MALLOC_TRIM_THRESHOLD_=0`",
        binary,
        &[("MALLOC_ARENA_MAX", "1"), ("MALLOC_TRIM_THRESHOLD_", "0")][..],
    ));
    if let Some(base) = std::env::var_os("DNSPERF_BASELINE").map(PathBuf::from) {
        runs.push(("baseline (`DNSPERF_BASELINE`)", base, &[][..]));
    }
    for (which, binary, env) in runs {
        let run = measure_binary(&binary, &kubeconfig, env, &rt);
        println!(
            "| {which}: start until /readyz (first full answer set served); CPU time used until then; CPU time of the sandbox serving it meanwhile | {:.2} s; {:.2} s CPU; {:.2} s CPU |",
            run.ready, run.cpu, run.sandbox_cpu
        );
        println!(
            "| {which}: RSS then / high-water mark (VmHWM); answers a StatefulSet pod name: {} | {:.1} MB / {:.1} MB |",
            run.answers, run.rss, run.hwm
        );
        println!("| {which}: malloc arenas then | {} |", run.arenas);
        println!(
            "| {which}: RSS against CoreDNS's published sizing, (pods + services) / 1000 + 54 MB = {COREDNS_MB:.0} MB | {:.2}x |",
            run.rss / COREDNS_MB
        );
    }
    rt.block_on(sandbox.shutdown());
}
