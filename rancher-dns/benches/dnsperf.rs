//! Benchmark of the built-in server, printed as a table:
//!
//! 1. Queries per second against NSD (Debian `nsd`, `rrl-ratelimit: 0`)
//!    and hickory-server's in-memory zone handler (`--serve-hickory`: the
//!    file store, which loads into the in-memory one), both serving the same
//!    records from the same zone files, with `dnsperf`; each server pinned to
//!    core 0 with `taskset`, dnsperf on core 1. The query mix is what pods
//!    send: service hits, NXDOMAINs from search-path expansion, SRV, NODATA
//!    (AAAA of IPv4 services), headless and pod names, PTR.
//! 2. Scale: 10 000 Services with 100 000 endpoints, as Kubernetes objects
//!    in list pages through `index::follow` the way the controller gets
//!    them, then the controller's first sync: time to the first full answer
//!    set, RSS of the whole process, and the delay from an endpoint change
//!    to the changed answer over UDP (median, p99).
//! 3. The `rancher-dns` binary (release build; skipped with a note when it
//!    is not built) against a sandbox API server holding the same objects:
//!    time until `/readyz` and its RSS then.
//!
//! Run with `cargo bench -p rancher-dns --bench dnsperf` (needs `nsd`,
//! `dnsperf` and `taskset`; build the binary first with
//! `cargo build --release -p rancher-examples --bin rancher-dns`).
//! `DNSPERF_SKIP_QPS` and `DNSPERF_SKIP_BINARY` leave parts out. Without
//! `--bench` it does nothing, so test runs that build every target stay
//! quick.
#![allow(clippy::print_stdout, clippy::print_stderr, missing_docs)]

use std::fmt::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::discovery::v1 as discovery;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::runtime::watcher::Event;
use parking_lot::RwLock;
use rancher_dns::backend::{DnsBackend, ServerBackend};
use rancher_dns::controller::SLICE_PAGE;
use rancher_dns::convert::SERVICE_NAME_LABEL;
use rancher_dns::fixtures::{mk_endpoint, mk_external, mk_headless, mk_service, mk_slice, tcp};
use rancher_dns::index::{DnsIndex, follow};
use rancher_dns::metrics::Metrics;
use rancher_dns::model::{NameRecords, Options, RData};
use rancher_dns::records::RecordIndex;
use rancher_dns::server::{Server, ServerConfig};

const NAMESPACES: usize = 10;

fn options() -> Options {
    Options {
        reverse_zones: vec!["10.in-addr.arpa".into()],
        ..Options::default()
    }
}

/// The benchmark cluster: 1000 ClusterIP services, 100 headless services
/// with 10 StatefulSet pods each, 10 ExternalName services.
fn cluster() -> RecordIndex {
    let mut index = RecordIndex::new(options());
    for i in 0..1000 {
        let ip = format!("10.43.{}.{}", i / 250, i % 250 + 1);
        index.apply_service(mk_service(
            &format!("ns{}", i % NAMESPACES),
            &format!("svc{i}"),
            &[&ip],
            vec![tcp("http", 80)],
        ));
    }
    for j in 0..100 {
        let ns = format!("ns{}", j % NAMESPACES);
        index.apply_service(mk_headless(&ns, &format!("db{j}"), vec![]));
        let eps = (0..10)
            .map(|k| {
                mk_endpoint(
                    &format!("10.42.{j}.{}", k + 1),
                    Some(&format!("db{j}-{k}")),
                    true,
                )
            })
            .collect();
        index.apply_slice(mk_slice(
            &ns,
            &format!("db{j}-x"),
            &format!("db{j}"),
            eps,
            vec![tcp("mongo", 27017)],
        ));
    }
    for e in 0..10 {
        index.apply_service(mk_external(
            &format!("ns{e}"),
            &format!("ext{e}"),
            "www.example.org",
        ));
    }
    index
}

fn queries() -> String {
    let mut q = String::new();
    for i in 0..1000 {
        let ns = i % NAMESPACES;
        // A pod in ns looks up "svcI.nsN": ndots:5 tries the search path first.
        let _ = writeln!(q, "svc{i}.ns{ns}.ns{ns}.svc.cluster.local A");
        let _ = writeln!(q, "svc{i}.ns{ns}.svc.cluster.local A");
        let _ = writeln!(q, "svc{i}.ns{ns}.svc.cluster.local AAAA");
        if i % 2 == 0 {
            let _ = writeln!(q, "_http._tcp.svc{i}.ns{ns}.svc.cluster.local SRV");
        }
        if i % 4 == 0 {
            // An external name walks the whole search path.
            let _ = writeln!(q, "www.example{i}.org.ns{ns}.svc.cluster.local A");
            let _ = writeln!(q, "www.example{i}.org.svc.cluster.local A");
            let _ = writeln!(q, "www.example{i}.org.cluster.local A");
            let _ = writeln!(q, "{}.{}.43.10.in-addr.arpa PTR", i % 250 + 1, i / 250);
        }
    }
    for j in 0..100 {
        let ns = j % NAMESPACES;
        let _ = writeln!(q, "db{j}.ns{ns}.svc.cluster.local A");
        let _ = writeln!(q, "db{j}-{}.db{j}.ns{ns}.svc.cluster.local A", j % 10);
        let _ = writeln!(q, "_mongo._tcp.db{j}.ns{ns}.svc.cluster.local SRV");
    }
    q
}

fn rdata(r: &RData) -> String {
    match r {
        RData::A(ip) => format!("A {ip}"),
        RData::Aaaa(ip) => format!("AAAA {ip}"),
        RData::Cname(t) => format!("CNAME {t}."),
        RData::Ptr(t) => format!("PTR {t}."),
        RData::Ns(t) => format!("NS {t}."),
        RData::Srv {
            priority,
            weight,
            port,
            target,
        } => format!("SRV {priority} {weight} {port} {target}."),
        RData::Txt(s) => format!(
            "TXT {}",
            s.iter()
                .map(|t| format!("\"{t}\""))
                .collect::<Vec<_>>()
                .join(" ")
        ),
        RData::Soa(s) => {
            format!(
                "SOA {}. {}. {} {} {} {} {}",
                s.mname, s.rname, s.serial, s.refresh, s.retry, s.expire, s.minimum
            )
        }
        _ => String::new(),
    }
}

/// Zone files for NSD: the cluster zone and 10.in-addr.arpa.
fn zone_files(all: &[NameRecords], dir: &Path) {
    let soa = "SOA ns.dns.cluster.local. hostmaster.cluster.local. 1 7200 1800 86400 5";
    let mut fwd = String::new();
    let mut rev =
        format!("10.in-addr.arpa. 5 IN {soa}\n10.in-addr.arpa. 5 IN NS ns.dns.cluster.local.\n");
    for n in all {
        let out = if n.name.ends_with(".in-addr.arpa") {
            &mut rev
        } else {
            &mut fwd
        };
        for r in &n.records {
            let _ = writeln!(out, "{}. 5 IN {}", n.name, rdata(r));
        }
    }
    std::fs::write(dir.join("cluster.local.zone"), fwd).expect("write zone");
    std::fs::write(dir.join("10.in-addr.arpa.zone"), rev).expect("write zone");
}

fn free_port() -> u16 {
    let s = UdpSocket::bind("127.0.0.1:0").expect("bind");
    s.local_addr().expect("addr").port()
}

fn probe(addr: SocketAddr, name: &str) -> Option<u8> {
    let s = UdpSocket::bind("127.0.0.1:0").ok()?;
    s.set_read_timeout(Some(Duration::from_millis(200))).ok()?;
    let mut p = vec![0x42, 0x42, 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    p.extend(rancher_dns::name::to_wire(name));
    p.extend([0, 1, 0, 1]);
    s.send_to(&p, addr).ok()?;
    let mut buf = [0u8; 4096];
    let n = s.recv(&mut buf).ok()?;
    (n >= 12).then_some(buf[3] & 0x0f)
}

fn wait_up(addr: SocketAddr) -> bool {
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        if probe(addr, "svc1.ns1.svc.cluster.local") == Some(0) {
            return true;
        }
    }
    false
}

/// One dnsperf run: queries per second, and the lost share and response
/// codes as dnsperf reports them (to see that a peer answers like we do).
fn dnsperf(port: u16, file: &Path, seconds: u32) -> (f64, String) {
    let out = Command::new("taskset")
        .args([
            "-c",
            "1",
            "dnsperf",
            "-s",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-d",
        ])
        .arg(file)
        .args([
            "-l",
            &seconds.to_string(),
            "-c",
            "8",
            "-q",
            "500",
            "-T",
            "1",
        ])
        .output()
        .expect("dnsperf runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let field = |key: &str| {
        text.lines()
            .find_map(|l| l.trim().strip_prefix(key))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    let qps = field("Queries per second:").parse().unwrap_or(0.0);
    let answers = format!(
        "lost {}; {}",
        field("Queries lost:"),
        field("Response codes:")
    );
    (qps, answers)
}

struct Killed(Child);
impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_ours(port: u16) -> Killed {
    let exe = std::env::current_exe().expect("own path");
    let child = Command::new("taskset")
        .args(["-c", "0"])
        .arg(exe)
        .args(["--serve", &port.to_string()])
        .stdout(Stdio::null())
        .spawn()
        .expect("start server");
    Killed(child)
}

fn start_nsd(port: u16, dir: &Path) -> Killed {
    let d = dir.display();
    let conf = format!(
        "server:\n  ip-address: 127.0.0.1@{port}\n  port: {port}\n  server-count: 1\n  username: \"\"\n  chroot: \"\"\n  zonesdir: \"{d}\"\n  database: \"\"\n  pidfile: \"{d}/nsd.pid\"\n  xfrdfile: \"{d}/xfrd.state\"\n  zonelistfile: \"{d}/zone.list\"\n  logfile: \"{d}/nsd.log\"\n  rrl-ratelimit: 0\n  verbosity: 0\n  tcp-count: 16\nremote-control:\n  control-enable: no\nzone:\n  name: cluster.local\n  zonefile: cluster.local.zone\nzone:\n  name: 10.in-addr.arpa\n  zonefile: 10.in-addr.arpa.zone\n"
    );
    std::fs::write(dir.join("nsd.conf"), conf).expect("write nsd.conf");
    let child = Command::new("taskset")
        .args(["-c", "0", "nsd", "-d", "-c"])
        .arg(dir.join("nsd.conf"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start nsd");
    Killed(child)
}

fn start_hickory(port: u16, dir: &Path) -> Killed {
    let exe = std::env::current_exe().expect("own path");
    let child = Command::new("taskset")
        .args(["-c", "0"])
        .arg(exe)
        .args(["--serve-hickory", &port.to_string()])
        .arg(dir)
        .stdout(Stdio::null())
        .spawn()
        .expect("start hickory");
    Killed(child)
}

/// hickory-server answering from the zone files NSD loads: its file store
/// parses them into the in-memory zone handler, behind a `Catalog`, on one
/// thread like ours.
fn serve_hickory(port: u16, dir: &Path) {
    use hickory_proto::rr::{LowerName, Name};
    use hickory_server::store::file::{FileConfig, FileZoneHandler};
    use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut catalog = Catalog::new();
        for (zone, file) in [
            ("cluster.local.", "cluster.local.zone"),
            ("10.in-addr.arpa.", "10.in-addr.arpa.zone"),
        ] {
            let origin = Name::from_ascii(zone).expect("zone name");
            let handler = FileZoneHandler::try_from_config(
                origin.clone(),
                ZoneType::Primary,
                AxfrPolicy::Deny,
                Some(dir),
                &FileConfig {
                    zone_path: PathBuf::from(file),
                },
            )
            .expect("hickory loads the zone file");
            catalog.upsert(LowerName::new(&origin), vec![Arc::new(handler)]);
        }
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let mut server = hickory_server::Server::new(catalog);
        server.register_socket(tokio::net::UdpSocket::bind(addr).await.expect("udp"));
        server.register_listener(
            tokio::net::TcpListener::bind(addr).await.expect("tcp"),
            Duration::from_secs(5),
            65535,
        );
        let _ = server.block_until_done().await;
    });
}

fn serve(port: u16) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let index = cluster();
        let metrics = Metrics::new();
        let backend = ServerBackend::new(&options(), metrics.clone());
        backend.sync(&index.view()).await.expect("sync");
        let config = ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], port)),
            udp_threads: 1,
            ..ServerConfig::default()
        };
        let _server = Server::start(&config, backend.snapshots(), metrics).expect("server");
        std::future::pending::<()>().await;
    });
}

/// The hickory-server version in the lock file the bench was built with.
fn hickory_version() -> String {
    let lock = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.lock");
    let text = std::fs::read_to_string(lock).unwrap_or_default();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line == "name = \"hickory-server\"" {
            return lines
                .next()
                .and_then(|l| l.strip_prefix("version = "))
                .map(|v| v.trim_matches('"').to_owned())
                .unwrap_or_default();
        }
    }
    String::new()
}

fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// A ClusterIP (or, without `ip`, headless) Service as the API serves it.
fn k8s_service(ns: &str, name: &str, ip: Option<&str>, port: (&str, i32)) -> core::Service {
    let cluster_ip = ip.unwrap_or("None").to_owned();
    core::Service {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(ns.to_owned()),
            uid: Some(format!("{ns}-{name}-0000-0000-000000000000")),
            resource_version: Some("1".to_owned()),
            labels: Some([("app".to_owned(), name.to_owned())].into()),
            ..ObjectMeta::default()
        },
        spec: Some(core::ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            cluster_ip: Some(cluster_ip.clone()),
            cluster_ips: Some(vec![cluster_ip]),
            ip_families: Some(vec!["IPv4".to_owned()]),
            selector: Some([("app".to_owned(), name.to_owned())].into()),
            ports: Some(vec![core::ServicePort {
                name: Some(port.0.to_owned()),
                port: port.1,
                protocol: Some("TCP".to_owned()),
                ..core::ServicePort::default()
            }]),
            ..core::ServiceSpec::default()
        }),
        status: None,
    }
}

/// Service `i` of the scale run: 9 000 ClusterIP Services in 10.100.0.0/16,
/// then the 1 000 headless `db{j}`.
fn scale_service(i: usize) -> core::Service {
    match i.checked_sub(9000) {
        None => {
            let ip = format!("10.{}.{}.{}", 100 + i / 60000, (i / 250) % 240, i % 250 + 1);
            k8s_service(
                &format!("ns{}", i % 100),
                &format!("svc{i}"),
                Some(&ip),
                ("http", 80),
            )
        }
        Some(j) => k8s_service(
            &format!("ns{}", j % 100),
            &format!("db{j}"),
            None,
            ("mongo", 27017),
        ),
    }
}

/// The EndpointSlice of headless service `db{j}`: 100 pods, every other one
/// with a hostname (StatefulSet style); `not_ready` is the one that is not.
fn k8s_slice(j: usize, not_ready: Option<usize>) -> discovery::EndpointSlice {
    let ns = format!("ns{}", j % 100);
    let service = format!("db{j}");
    let endpoints = (0..100)
        .map(|k| {
            let pod = format!("db{j}-{k}");
            discovery::Endpoint {
                addresses: vec![format!("10.{}.{}.{}", j / 250 + 1, j % 250, k + 1)],
                hostname: (k % 2 == 0).then(|| pod.clone()),
                conditions: Some(discovery::EndpointConditions {
                    ready: Some(not_ready != Some(k)),
                    serving: Some(true),
                    terminating: Some(false),
                }),
                node_name: Some(format!("node-{}", k % 10)),
                target_ref: Some(core::ObjectReference {
                    kind: Some("Pod".to_owned()),
                    namespace: Some(ns.clone()),
                    uid: Some(format!("{pod}-0000-0000-000000000000")),
                    name: Some(pod),
                    ..core::ObjectReference::default()
                }),
                ..discovery::Endpoint::default()
            }
        })
        .collect();
    discovery::EndpointSlice {
        metadata: ObjectMeta {
            name: Some(format!("{service}-x")),
            namespace: Some(ns),
            uid: Some(format!("{service}-x-0000-0000-000000000000")),
            resource_version: Some("1".to_owned()),
            labels: Some(
                [
                    (SERVICE_NAME_LABEL.to_owned(), service),
                    (
                        "endpointslice.kubernetes.io/managed-by".to_owned(),
                        "endpointslice-controller.k8s.io".to_owned(),
                    ),
                ]
                .into(),
            ),
            ..ObjectMeta::default()
        },
        address_type: "IPv4".to_owned(),
        endpoints: Some(endpoints),
        ports: Some(vec![discovery::EndpointPort {
            name: Some("mongo".to_owned()),
            port: Some(27017),
            protocol: Some("TCP".to_owned()),
            ..discovery::EndpointPort::default()
        }]),
    }
}

/// A watch's initial list as the watcher hands it over: `Init`, the objects
/// one page at a time (a page is built when the previous one is used up),
/// `InitDone`.
fn initial_list<K>(
    pages: impl Iterator<Item = Vec<K>>,
) -> impl futures::Stream<Item = kube::runtime::watcher::Result<Event<K>>> {
    let events = std::iter::once(Event::Init)
        .chain(pages.flat_map(|page| page.into_iter().map(Event::InitApply)))
        .chain(std::iter::once(Event::InitDone));
    futures::stream::iter(events.map(Ok))
}

/// 10 000 Services with 100 000 endpoints, fed the way the controller gets
/// them: Kubernetes objects in list pages through [`follow`] into the watch
/// sink; then the first sync as `controller::run` does it, and endpoint
/// changes through the sink and its change channel.
fn scale() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let rss_before = rss_mb();
        let started = Instant::now();
        let metrics = Metrics::new();
        let (sink, mut changes) = DnsIndex::new(Options::default(), metrics.clone());
        let sink = Arc::new(RwLock::new(sink));
        // Services in the watcher's default pages of 500.
        let services = (0..20usize).map(|page| {
            (page * 500..page * 500 + 500)
                .map(scale_service)
                .collect::<Vec<_>>()
        });
        follow(sink.clone(), initial_list(services), None).await;
        let slices = (0..1000 / SLICE_PAGE as usize).map(|page| {
            let per = SLICE_PAGE as usize;
            (page * per..page * per + per).map(|j| k8s_slice(j, None)).collect::<Vec<_>>()
        });
        follow(sink.clone(), initial_list(slices), None).await;
        let rss_index = rss_mb();
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

        let names = sink.read().records().len();
        let rss = rss_mb();

        let config = ServerConfig { listen: "127.0.0.1:0".parse().expect("addr"), udp_threads: 1, ..ServerConfig::default() };
        let server = Server::start(&config, backend.snapshots(), metrics).expect("server");
        let addr = server.local_addr();
        let mut delays = Vec::new();
        let mut published = Vec::new();
        for round in 0..1000usize {
            let j = round % 1000;
            let k = (round / 10) % 50 * 2; // an endpoint with a hostname
            let name = format!("db{j}-{k}.db{j}.ns{}.svc.cluster.local", j % 100);
            let slice = k8s_slice(j, Some(k));
            let t = Instant::now();
            sink.write().apply_object(&slice);
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
        println!();
        println!("| scale: 10 000 services, 100 000 endpoints, through the watch sink | value |");
        println!("| --- | --- |");
        println!("| owner names in the zone | {names} |");
        println!("| time to first full answer set (objects, index, snapshot) | {:.2} s |", first_sync.as_secs_f64());
        println!("| RSS after sync (process; before: {rss_before:.1} MB, index {rss_index:.1} MB) | {rss:.1} MB |");
        println!("| change-to-answer, median (endpoint readiness → dig-visible NXDOMAIN over UDP) | {:.3} ms |", percentile(&delays, 0.5).as_secs_f64() * 1e3);
        println!("| change-to-answer, p99 | {:.3} ms |", percentile(&delays, 0.99).as_secs_f64() * 1e3);
        println!("| change-to-published snapshot (sink + backend), median / p99 | {:.3} / {:.3} ms |", percentile(&published, 0.5).as_secs_f64() * 1e3, percentile(&published, 0.99).as_secs_f64() * 1e3);
        server.shutdown().await;
    });
}

/// The scale run's objects as one manifest (a `List`) for the sandbox.
fn write_manifests(dir: &Path) {
    let mut items: Vec<serde_json::Value> = (0..100)
        .map(|n| serde_json::json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": format!("ns{n}")}}))
        .collect();
    let objects = (0..10_000)
        .map(|i| serde_json::to_value(scale_service(i)))
        .chain((0..1000).map(|j| serde_json::to_value(k8s_slice(j, None))));
    for object in objects {
        let mut object = object.expect("serialise");
        // Objects to create carry neither.
        if let Some(meta) = object["metadata"].as_object_mut() {
            meta.remove("uid");
            meta.remove("resourceVersion");
        }
        items.push(object);
    }
    let list = serde_json::json!({"apiVersion": "v1", "kind": "List", "items": items});
    std::fs::create_dir_all(dir).expect("manifest dir");
    std::fs::write(
        dir.join("objects.json"),
        serde_json::to_vec(&list).expect("json"),
    )
    .expect("write manifest");
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

fn proc_status_mb(pid: u32, key: &str) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(key))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// The `rancher-dns` binary itself (release build, next to this bench in
/// `target/release`) against a sandbox API server holding the scale run's
/// objects: time until `/readyz`, and the binary's RSS then.
fn binary_scale() {
    let exe = std::env::current_exe().expect("own path");
    let binary = exe
        .parent()
        .and_then(Path::parent)
        .map(|release| release.join("rancher-dns"))
        .filter(|b| b.exists());
    println!();
    println!("| the rancher-dns binary, same objects from a sandbox API server | value |");
    println!("| --- | --- |");
    let Some(binary) = binary else {
        println!(
            "| not measured | build it first: `cargo build --release -p rancher-examples --bin rancher-dns` |"
        );
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    write_manifests(&dir.path().join("manifests"));
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
                .manifests_dir(dir.path().join("manifests"))
                .kubeconfig_path(&kubeconfig)
                .start(),
        )
        .expect("sandbox");
    assert!(
        sandbox.seed_errors().is_empty(),
        "seed errors: {:?}",
        sandbox.seed_errors().first()
    );
    let port = free_port();
    let admin = SocketAddr::from(([127, 0, 0, 1], free_port()));
    let started = Instant::now();
    let child = Command::new(&binary)
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--upstream",
            "127.0.0.1:9",
            "--admin",
            &admin.to_string(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start rancher-dns");
    let child = Killed(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    rt.block_on(async {
        while !http_ok(admin, "/readyz") {
            assert!(Instant::now() < deadline, "rancher-dns never got ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let ready = started.elapsed();
    let answers = probe(
        SocketAddr::from(([127, 0, 0, 1], port)),
        "db7-4.db7.ns7.svc.cluster.local",
    ) == Some(0);
    let pid = child.0.id();
    let (rss, peak) = (proc_status_mb(pid, "VmRSS:"), proc_status_mb(pid, "VmHWM:"));
    println!(
        "| process start until /readyz (first full answer set served) | {:.2} s |",
        ready.as_secs_f64()
    );
    println!(
        "| RSS of the binary then (peak {peak:.1} MB; answers a StatefulSet pod name: {answers}) | {rss:.1} MB |"
    );
    drop(child);
    rt.block_on(sandbox.shutdown());
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == "--serve") {
        let port = args.get(i + 1).and_then(|p| p.parse().ok()).unwrap_or(5353);
        serve(port);
        return;
    }
    if let Some(i) = args.iter().position(|a| a == "--serve-hickory") {
        let port = args.get(i + 1).and_then(|p| p.parse().ok()).unwrap_or(5353);
        let dir = args
            .get(i + 2)
            .map_or_else(|| PathBuf::from("."), PathBuf::from);
        serve_hickory(port, &dir);
        return;
    }
    if !args.iter().any(|a| a == "--bench") {
        return;
    }
    let only_scale = std::env::var_os("DNSPERF_SKIP_QPS").is_some();
    if !only_scale {
        let dir = tempfile::tempdir().expect("tempdir");
        let index = cluster();
        zone_files(&index.full(), dir.path());
        let qfile = dir.path().join("queries.txt");
        std::fs::write(&qfile, queries()).expect("write queries");
        let seconds: u32 = std::env::var("DNSPERF_SECONDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10);
        let (mut ours, mut nsd, mut hickory) = (Vec::new(), Vec::new(), Vec::new());
        let mut answers = [String::new(), String::new(), String::new()];
        for _round in 0..2 {
            let port = free_port();
            let server = start_ours(port);
            assert!(
                wait_up(SocketAddr::from(([127, 0, 0, 1], port))),
                "rancher-dns did not start"
            );
            let (qps, a) = dnsperf(port, &qfile, seconds);
            ours.push(qps);
            answers[0] = a;
            drop(server);
            let port = free_port();
            let server = start_nsd(port, dir.path());
            assert!(
                wait_up(SocketAddr::from(([127, 0, 0, 1], port))),
                "nsd did not start"
            );
            let (qps, a) = dnsperf(port, &qfile, seconds);
            nsd.push(qps);
            answers[1] = a;
            drop(server);
            let port = free_port();
            let server = start_hickory(port, dir.path());
            assert!(
                wait_up(SocketAddr::from(([127, 0, 0, 1], port))),
                "hickory-server did not start"
            );
            let (qps, a) = dnsperf(port, &qfile, seconds);
            hickory.push(qps);
            answers[2] = a;
            drop(server);
        }
        let best = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        let (o, n, h) = (best(&ours), best(&nsd), best(&hickory));
        let ratio = |peer: f64| if peer > 0.0 { o / peer } else { 0.0 };
        println!(
            "| server (one core, taskset -c 0; dnsperf -c 8 -T 1 on core 1, {seconds} s, best of 2) | queries/s | runs |"
        );
        println!("| --- | --- | --- |");
        println!("| rancher-dns built-in server | {o:.0} | {ours:.0?} |");
        println!("| NSD (rrl-ratelimit: 0) | {n:.0} | {nsd:.0?} |");
        println!(
            "| hickory-server {} (in-memory zone handler, same zone files) | {h:.0} | {hickory:.0?} |",
            hickory_version()
        );
        println!("| ratio rancher-dns / NSD | {:.2}x | |", ratio(n));
        println!(
            "| ratio rancher-dns / hickory-server | {:.2}x | |",
            ratio(h)
        );
        println!(
            "| query mix | {} queries: hits, search-path NXDOMAINs, NODATA, SRV, headless, pod names, PTR | |",
            queries().lines().count()
        );
        for (server, a) in ["rancher-dns", "NSD", "hickory-server"]
            .iter()
            .zip(&answers)
        {
            println!("| answers, {server} (last run) | {a} | |");
        }
    }
    scale();
    if std::env::var_os("DNSPERF_SKIP_BINARY").is_none() {
        binary_scale();
    }
}
