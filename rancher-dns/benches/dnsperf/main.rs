//! Benchmark of the built-in server, printed as a table:
//!
//! 1. Queries per second against NSD (Debian `nsd`, `rrl-ratelimit: 0`)
//!    and hickory-server's in-memory zone handler (`--serve-hickory`: the
//!    file store, which loads into the in-memory one), both serving the same
//!    records from the same zone files, with `dnsperf`; each server pinned to
//!    core 0 with `taskset`, dnsperf on core 1. The query mix is what pods
//!    send: service hits, NXDOMAINs from search-path expansion, SRV, NODATA
//!    (AAAA of IPv4 services), headless and pod names, PTR.
//! 2. Scale, on the cluster of issue 21 as a real API server holds it
//!    (`cluster.rs`): 10 000 headless Services applied with `kubectl apply`
//!    (last-applied annotation, managedFields), an EndpointSlice of 10
//!    endpoints each (hostname, node, Pod `targetRef`) and the placeholder
//!    slice kube-controller-manager adds: list pages decoded as the client
//!    does, through `index::follow`, then the controller's first sync. Each
//!    run in a process of its own, once with the lean `object` types the
//!    controller decodes into and once with the full k8s-openapi types (as
//!    before): time to the first full answer set, RSS after it, the
//!    high-water mark (VmHWM), and the delay from an endpoint change to the
//!    changed answer over UDP (median, p99).
//! 3. The `rancher-dns` binary (release build, or `DNSPERF_BINARY`; skipped
//!    with a note when it is not built) against a sandbox API server loaded
//!    with the same objects over HTTP as kubectl and kube-controller-manager
//!    write them (the bench checks that the sandbox lists them in the shape
//!    part 2 is fed): time until `/readyz`, RSS then and VmHWM; with
//!    `DNSPERF_BASELINE` naming another build, that one too.
//!
//! Run with `cargo bench -p rancher-dns --bench dnsperf` (needs `nsd`,
//! `dnsperf` and `taskset`; build the binary first with
//! `cargo build --release -p rancher-examples --bin rancher-dns`).
//! `DNSPERF_SKIP_QPS`, `DNSPERF_SKIP_IN_PROCESS` and `DNSPERF_SKIP_BINARY` leave
//! parts out, `DNSPERF_BINARY_LOG` keeps the binary's log in a file; `--scale
//! lean|full` runs one in-process scale run. Without
//! `--bench` it does nothing, so test runs that build every target stay
//! quick.
#![allow(clippy::print_stdout, clippy::print_stderr, missing_docs)]

mod cluster;
mod scale;

use std::fmt::Write as _;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rancher_dns::backend::{DnsBackend, ServerBackend};
use rancher_dns::fixtures::{mk_endpoint, mk_external, mk_headless, mk_service, mk_slice, tcp};
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
    if let Some(i) = args.iter().position(|a| a == "--scale") {
        let decode = args.get(i + 1).and_then(|d| scale::Decode::from_arg(d));
        scale::in_process(decode.unwrap_or(scale::Decode::Lean));
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
    // Each in a process of its own, so that its memory figures are its own.
    if std::env::var_os("DNSPERF_SKIP_IN_PROCESS").is_none() {
        scale::in_child(scale::Decode::Full);
        scale::in_child(scale::Decode::Lean);
    }
    if std::env::var_os("DNSPERF_SKIP_BINARY").is_none() {
        scale::binary();
    }
}
