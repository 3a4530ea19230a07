//! Benchmark of the HAProxy driver; prints a table.
//!
//! ```text
//! cargo run --release -p rancher-lb --example haproxy_bench
//! ```
//!
//! Needs `haproxy` and `wrk` (Debian packages of the same names) and the
//! loopback address 127.0.0.2. It measures: validating and rendering 5 000
//! HTTP routes across 1 000 load balancers, applying them to a real HAProxy,
//! HAProxy's memory, endpoint changes through the runtime API, and 100 reloads
//! under a steady `wrk` load.
// A benchmark reports on stdout.
#![allow(clippy::print_stdout)]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use rancher_lb::driver::Driver;
use rancher_lb::haproxy::render::{self, Paths, Settings};
use rancher_lb::haproxy::{HaproxyConfig, HaproxyDriver};
use rancher_lb::model::{
    BackendSpec, EndpointSpec, HttpRouteSpec, ListenerSpec, LoadBalancer, LoadBalancerSpec,
    PathMatch, Protocol,
};
use rancher_lb::placement::Host;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

const LBS: usize = 1000;
const ROUTES_PER_LB: usize = 5;
const RELOADS: usize = 100;
const ENDPOINT_CHANGES: usize = 50;
/// haproxy-ingress: about 2 s to parse and write 5 000 Ingresses (its FAQ).
const REFERENCE_RENDER: Duration = Duration::from_secs(2);

async fn echo(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                let mut line = String::new();
                loop {
                    line.clear();
                    if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    if line != "\r\n" {
                        continue;
                    }
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{name}",
                        name.len()
                    );
                    if reader
                        .get_mut()
                        .write_all(response.as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn spec(i: usize, port: u16, endpoint: SocketAddr, extra: Option<usize>) -> LoadBalancerSpec {
    let mut routes = Vec::new();
    let mut backends = Vec::new();
    for r in 0..ROUTES_PER_LB {
        routes.push(HttpRouteSpec {
            port: u32::from(port),
            host: Some(format!("lb{i}.example.org")),
            path: Some(format!("/p{r}")),
            path_match: PathMatch::Prefix,
            backend: format!("b{r}"),
        });
        backends.push(BackendSpec {
            name: format!("b{r}"),
            endpoints: vec![EndpointSpec {
                address: endpoint.ip().to_string(),
                port: u32::from(endpoint.port()),
            }],
            ..Default::default()
        });
    }
    if let Some(k) = extra {
        routes.push(HttpRouteSpec {
            path: Some(format!("/reload{k}")),
            ..routes[0].clone()
        });
    }
    LoadBalancerSpec {
        id: format!("bench.lb{i}"),
        listeners: vec![ListenerSpec {
            port: u32::from(port),
            protocol: Protocol::Http,
        }],
        http_routes: routes,
        backends,
        scale: 1,
        ..Default::default()
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(i).copied().unwrap_or_default()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let host: IpAddr = "127.0.0.2".parse()?;
    let port = {
        let l = std::net::TcpListener::bind((host, 0))?;
        l.local_addr()?.port()
    };
    let one = echo("one").await;
    let two = echo("two").await;
    let mut rows: Vec<(String, String)> = Vec::new();

    // Validate.
    let specs: Vec<LoadBalancerSpec> = (0..LBS).map(|i| spec(i, port, one, None)).collect();
    let t = Instant::now();
    let lbs: Vec<LoadBalancer> = specs
        .iter()
        .map(LoadBalancer::new)
        .collect::<Result<_, _>>()?;
    let validate = t.elapsed();
    rows.push((
        format!(
            "validate {} routes / {LBS} load balancers",
            LBS * ROUTES_PER_LB
        ),
        ms(validate),
    ));

    // Render (the structure of one host serving all of them), best of 5.
    let refs: Vec<&LoadBalancer> = lbs.iter().collect();
    let mut slots = BTreeMap::new();
    for lb in &lbs {
        for b in lb.backends() {
            let mut s: Vec<_> = b.endpoints.iter().copied().map(Some).collect();
            s.resize(8, None);
            slots.insert((lb.id().clone(), b.name.clone()), s);
        }
    }
    let paths = Paths {
        generation: "/run/rancher-lb/gen-1".into(),
        admin_socket: "/run/rancher-lb/admin.sock".into(),
    };
    let settings = Settings {
        maxconn: 4096,
        hard_stop_after_secs: 30,
        snippets: false,
    };
    let mut best = Duration::MAX;
    let mut size = 0;
    for _ in 0..5 {
        let t = Instant::now();
        let r = render::render(host, &refs, &slots, &paths, &settings, true);
        best = best.min(t.elapsed());
        size = r.config.len() + r.files.iter().map(|f| f.contents.len()).sum::<usize>();
    }
    rows.push((
        "render config + maps (best of 5)".into(),
        format!("{} ({} KiB)", ms(best), size / 1024),
    ));
    let total = validate + best;
    rows.push((
        "validate + render vs haproxy-ingress ~2 s".into(),
        format!(
            "{:.1}x faster ({:.4} of 2 s)",
            REFERENCE_RENDER.as_secs_f64() / total.as_secs_f64(),
            total.as_secs_f64() / REFERENCE_RENDER.as_secs_f64()
        ),
    ));

    // Apply to a real HAProxy.
    let dir = tempfile::tempdir()?;
    let driver = HaproxyDriver::new(HaproxyConfig::new(
        dir.path().join("lb"),
        vec![Host::new(host)],
    ))
    .await?;
    let t = Instant::now();
    driver.ensure_all(&lbs).await?;
    rows.push(("apply (write, haproxy -c, start)".into(), ms(t.elapsed())));
    let info = driver.instance_info(host).await.ok_or("no haproxy")?;
    let mut rss = rss_kib(info.master_pid);
    for w in &info.worker_pids {
        rss += rss_kib(*w);
    }
    rows.push((
        "haproxy RSS (master + worker)".into(),
        format!("{:.1} MiB", rss as f64 / 1024.0),
    ));

    // Endpoint changes through the runtime API.
    let before = driver.counters().await;
    let mut times = Vec::new();
    for k in 0..ENDPOINT_CHANGES {
        let target = if k % 2 == 0 { two } else { one };
        let lb = LoadBalancer::new(&spec(0, port, target, None))?;
        let t = Instant::now();
        driver.ensure(&lb).await?;
        times.push(t.elapsed());
    }
    let after = driver.counters().await;
    times.sort();
    rows.push((
        format!("endpoint change via runtime API (n={ENDPOINT_CHANGES})"),
        format!(
            "median {}, p95 {}, max {}; reloads {}",
            ms(percentile(&times, 0.5)),
            ms(percentile(&times, 0.95)),
            ms(percentile(&times, 1.0)),
            after.reloads - before.reloads
        ),
    ));

    // Reloads under load: estimate one reload, then run wrk long enough.
    let t = Instant::now();
    driver
        .ensure(&LoadBalancer::new(&spec(LBS - 1, port, one, Some(0)))?)
        .await?;
    let one_reload = t.elapsed();
    let secs = (one_reload.as_secs_f64() * RELOADS as f64 * 1.5).ceil() as u64 + 3;
    let wrk = tokio::process::Command::new("wrk")
        .args([
            "-t2",
            "-c16",
            &format!("-d{secs}s"),
            "-H",
            "Host: lb1.example.org",
        ])
        .arg(format!("http://{host}:{port}/p0/x"))
        .output();
    let reloader = async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let t = Instant::now();
        for k in 1..=RELOADS {
            driver
                .ensure(&LoadBalancer::new(&spec(LBS - 1, port, one, Some(k)))?)
                .await?;
        }
        Ok::<_, Box<dyn std::error::Error>>(t.elapsed())
    };
    let (wrk, reloads) = tokio::join!(wrk, reloader);
    let reloads_took = reloads?;
    let wrk = wrk?;
    let text = String::from_utf8_lossy(&wrk.stdout).into_owned();
    let requests = text
        .lines()
        .find(|l| l.contains("requests in"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap_or("?")
        .to_owned();
    let errors: Vec<String> = text
        .lines()
        .filter(|l| l.contains("Socket errors") || l.contains("Non-2xx"))
        .map(|l| l.trim().to_owned())
        .collect();
    rows.push((
        format!("{RELOADS} reloads under wrk -t2 -c16 ({secs} s)"),
        format!(
            "{} for the reloads ({} each); {requests} requests; {}",
            ms(reloads_took),
            ms(reloads_took / RELOADS as u32),
            if errors.is_empty() {
                "0 failed".to_owned()
            } else {
                errors.join("; ")
            }
        ),
    ));

    driver.shutdown().await;

    // The same load balancers with one server slot per backend instead of 8.
    let small_host: IpAddr = "127.0.0.3".parse()?;
    let small_dir = tempfile::tempdir()?;
    let small = HaproxyDriver::new(
        HaproxyConfig::new(small_dir.path().join("lb"), vec![Host::new(small_host)])
            .with_server_slots(1),
    )
    .await?;
    let t = Instant::now();
    small.ensure_all(&lbs).await?;
    let took = t.elapsed();
    let info = small.instance_info(small_host).await.ok_or("no haproxy")?;
    let mut rss = rss_kib(info.master_pid);
    for w in &info.worker_pids {
        rss += rss_kib(*w);
    }
    rows.push((
        "apply + RSS with 1 server slot per backend".into(),
        format!("{}, {:.1} MiB", ms(took), rss as f64 / 1024.0),
    ));
    small.shutdown().await;

    let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
    println!("| {:width$} | result |", "measure");
    println!("| {} | --- |", "-".repeat(width));
    for (k, v) in rows {
        println!("| {k:width$} | {v} |");
    }
    Ok(())
}
