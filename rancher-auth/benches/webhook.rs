//! The webhook's speed: decisions per second and latency through the HTTPS server for
//! cached authentication and for authorization, and the cost of a token cache miss against
//! the fake Rancher.
//!
//! The `rancher-auth-webhook` release binary runs pinned to core 0 (`taskset -c 0`, so one
//! tokio worker); this process (load generator and fake Rancher) pins itself to core 1.
//!
//! ```text
//! cargo build --release -p rancher-examples --bin rancher-auth-webhook
//! cargo bench -p rancher-auth --bench webhook
//! ```
//!
//! The peer, measured in the same run on the same core with the same client, certificate and
//! TLS: HAProxy (one thread) answering every request with the webhook's own answer, byte for
//! byte, without reading it, so the ratio is how close the webhook comes to an HTTPS server
//! doing no work at all (no webhook peer such as Guard or kube-api-auth can be built here).
//! Without `haproxy` on the PATH the peer is left out and said so.
//!
//! `RANCHER_AUTH_WEBHOOK` names another binary; `BENCH_SECONDS` (default 5) sets the length
//! of each throughput run.

// A benchmark's figures are its output.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rancher_client::resource::role;
use rancher_client::testing::{FakeRancher, FakeUser};
use serde_json::json;

const ENV: &str = "1a5";
const HOT_USERS: usize = 100;
const MISS_USERS: usize = 500;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("RANCHER_AUTH_WEBHOOK") {
        return PathBuf::from(path);
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/release/rancher-auth-webhook");
    assert!(
        path.exists(),
        "{} is missing: cargo build --release -p rancher-examples --bin rancher-auth-webhook",
        path.display()
    );
    path
}

fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// Pins every thread of this process to `core` (before the runtime starts its threads).
fn pin_self(core: usize) -> bool {
    std::process::Command::new("taskset")
        .args([
            "-a",
            "-p",
            "-c",
            &core.to_string(),
            &std::process::id().to_string(),
        ])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

fn login(i: usize) -> String {
    format!("user{i}")
}

fn token(i: usize) -> String {
    let c = FakeUser::new(login(i)).credentials();
    format!("{}:{}", c.access_key, c.secret_key.expose())
}

fn token_review(token: &str) -> Vec<u8> {
    json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
           "metadata": {"creationTimestamp": null}, "spec": {"token": token}, "status": {"user": {}}})
    .to_string()
    .into_bytes()
}

fn sar(i: usize) -> Vec<u8> {
    let verbs = ["get", "list", "watch", "create", "delete"];
    let resources = ["pods", "secrets", "deployments", "configmaps", "services"];
    json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
           "spec": {"resourceAttributes": {"namespace": "web", "verb": verbs[i % 5],
                        "resource": resources[(i / 5) % 5], "version": "v1"},
                    "user": login(i % HOT_USERS),
                    "groups": [format!("rancher:environment:{ENV}:member"), "system:authenticated"]}})
    .to_string()
    .into_bytes()
}

struct Figures {
    requests: u64,
    failures: u64,
    seconds: f64,
    latencies: Vec<u64>,
}

impl Figures {
    fn percentile(&self, p: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies.len() as f64 - 1.0) * p).round() as usize;
        self.latencies[i] as f64 / 1000.0
    }

    fn rate(&self) -> f64 {
        self.requests as f64 / self.seconds
    }

    fn line(&self, what: &str) -> String {
        format!(
            "| {what} | {:.0} | {:.3} | {:.3} | {} |",
            self.requests as f64 / self.seconds,
            self.percentile(0.5),
            self.percentile(0.99),
            self.failures
        )
    }
}

/// `concurrency` connections posting to `url` for `length`; bodies from `body(i)`.
async fn load(
    client: &reqwest::Client,
    url: &str,
    concurrency: usize,
    length: Duration,
    body: Arc<dyn Fn(usize) -> Vec<u8> + Send + Sync>,
    expect: &'static str,
) -> Figures {
    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let (client, url, stop, failures, body) = (
                client.clone(),
                url.to_owned(),
                stop.clone(),
                failures.clone(),
                body.clone(),
            );
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut i = task;
                while !stop.load(Ordering::Relaxed) {
                    let payload = body(i);
                    let sent = Instant::now();
                    let ok = match client.post(&url).body(payload).send().await {
                        Ok(r) if r.status().is_success() => r.bytes().await.is_ok_and(|b| {
                            std::str::from_utf8(&b).is_ok_and(|t| t.contains(expect))
                        }),
                        _ => false,
                    };
                    latencies.push(sent.elapsed().as_micros() as u64);
                    if !ok {
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    i += concurrency;
                }
                latencies
            })
        })
        .collect();
    tokio::time::sleep(length).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap_or_default());
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    Figures {
        requests: latencies.len() as u64,
        failures: failures.load(Ordering::Relaxed),
        seconds,
        latencies,
    }
}

/// One request after another: the latency of each.
async fn sequential(
    client: &reqwest::Client,
    url: &str,
    bodies: impl Iterator<Item = Vec<u8>>,
    expect: &str,
) -> Figures {
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut failures = 0;
    for body in bodies {
        let sent = Instant::now();
        let ok = match client.post(url).body(body).send().await {
            Ok(r) if r.status().is_success() => r.text().await.is_ok_and(|t| t.contains(expect)),
            _ => false,
        };
        latencies.push(sent.elapsed().as_micros() as u64);
        failures += u64::from(!ok);
    }
    let seconds = started.elapsed().as_secs_f64();
    latencies.sort_unstable();
    Figures {
        requests: latencies.len() as u64,
        failures,
        seconds,
        latencies,
    }
}

fn main() {
    let cores = cores();
    let pinned = cores >= 2 && pin_self(1);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(run(pinned, cores));
}

async fn run(pinned: bool, cores: usize) {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let mut builder = FakeRancher::builder().project_id(ENV);
    for i in 0..HOT_USERS + MISS_USERS {
        builder = builder.user(FakeUser::new(login(i)).role(role::MEMBER));
    }
    let fake = builder.start().await.expect("the fake Rancher starts");

    let (port, admin) = (free_port(), free_port());
    let mut command = std::process::Command::new("taskset");
    command.args(["-c", "0"]).arg(binary());
    if !pinned {
        command = std::process::Command::new(binary());
    }
    let mut webhook = command
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--tls-cert-file")
        .arg(data("server-1.crt"))
        .arg("--tls-private-key-file")
        .arg(data("server-1.key"))
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .args([
            "--cache-ttl",
            "10m",
            "--negative-cache-ttl",
            "10m",
            "--timeout",
            "10s",
        ])
        .envs(fake.env())
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the webhook starts");

    let ca = reqwest::Certificate::from_pem(&std::fs::read(data("ca.crt")).unwrap()).unwrap();
    let client = reqwest::Client::builder()
        .tls_certs_only([ca])
        .pool_max_idle_per_host(256)
        .build()
        .unwrap();
    let ready = format!("http://127.0.0.1:{admin}/readyz");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !reqwest::Client::new()
        .get(&ready)
        .send()
        .await
        .is_ok_and(|r| r.status().is_success())
    {
        assert!(Instant::now() < deadline, "the webhook never got ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let authn = format!("https://127.0.0.1:{port}/authenticate");
    let authz = format!("https://127.0.0.1:{port}/authorize");

    // Misses first, while the cache is cold: each goes to the fake Rancher (identities, then
    // the membership query), one after another.
    let miss = sequential(
        &client,
        &authn,
        (HOT_USERS..HOT_USERS + MISS_USERS).map(|i| token_review(&token(i))),
        "\"authenticated\":true",
    )
    .await;
    let negative = sequential(
        &client,
        &authn,
        (0..200).map(|i| token_review(&format!("NOBODY{i}:wrong"))),
        "\"authenticated\":false",
    )
    .await;
    // Warm the cache with the hot users.
    let _ = sequential(
        &client,
        &authn,
        (0..HOT_USERS).map(|i| token_review(&token(i))),
        "true",
    )
    .await;

    let length = Duration::from_secs(seconds);
    let ours = measure(&client, &authn, &authz, length).await;
    // The peer answers with the very bytes the webhook gave.
    let answers = [
        (
            "authn.json",
            post_text(&client, &authn, token_review(&token(0))).await,
        ),
        ("authz.json", post_text(&client, &authz, sar(0)).await),
    ];

    let rss = std::fs::read_to_string(format!("/proc/{}/status", webhook.id()))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l.split_whitespace().nth(1).unwrap_or("?").to_owned())
        })
        .unwrap_or_else(|| "?".into());
    let _ = webhook.kill();
    let _ = webhook.wait();

    let peer = match HaproxyPeer::start(pinned, &answers) {
        Ok(peer) => {
            peer.wait_ready(&client).await;
            let figures = measure(
                &client,
                &peer.url("authenticate"),
                &peer.url("authorize"),
                length,
            )
            .await;
            Some((peer.version.clone(), figures))
        }
        Err(e) => {
            eprintln!("the HAProxy peer did not start ({e}): no ratio");
            None
        }
    };

    println!(
        "rancher-auth webhook, HTTPS (TLS 1.3, keep-alive), server on {} ({} cores here), load generator and fake Rancher on core 1",
        if pinned {
            "core 0 only"
        } else {
            "any core (not pinned)"
        },
        cores
    );
    println!("| what | decisions/s | p50 ms | p99 ms | failures |");
    println!("| --- | --- | --- | --- | --- |");
    for line in ours.lines("") {
        println!("{line}");
    }
    println!(
        "{}",
        miss.line(&format!(
            "cache miss, member ({MISS_USERS} users; identities + membership from the fake Rancher)"
        ))
    );
    println!("{}", negative.line("cache miss, key Rancher refuses (200)"));
    println!("webhook RSS after the run: {rss} kB");
    if let Some((version, peer)) = peer {
        println!();
        println!(
            "peer: {version}, one thread on the same core, the same certificate, TLS and client, \
             answering every request with a fixed body (the webhook's own answer, byte for byte) \
             without reading it: an HTTPS server doing no work at all"
        );
        println!("| what | decisions/s | p50 ms | p99 ms | failures |");
        println!("| --- | --- | --- | --- | --- |");
        for line in peer.lines("HAProxy: ") {
            println!("{line}");
        }
        println!();
        println!(
            "ratios, webhook over peer (decisions/s: more is better; p99: the peer's over ours, more is better)"
        );
        for ((what, a), (_, b)) in ours.rows().iter().zip(peer.rows().iter()) {
            println!(
                "| {what} | {:.2} | {:.2} |",
                a.rate() / b.rate(),
                b.percentile(0.99) / a.percentile(0.99)
            );
        }
    }
}

/// What one server does: one request at a time, then saturated at 16 and 64 connections.
struct Run {
    idle_authn: Figures,
    idle_authz: Figures,
    saturated: Vec<(usize, Figures, Figures)>,
}

impl Run {
    fn rows(&self) -> Vec<(String, &Figures)> {
        let mut rows = vec![
            (
                "cached TokenReview, one at a time".to_owned(),
                &self.idle_authn,
            ),
            (
                "SubjectAccessReview, one at a time".to_owned(),
                &self.idle_authz,
            ),
        ];
        for (concurrency, a, z) in &self.saturated {
            rows.push((format!("cached TokenReview, {concurrency} connections"), a));
            rows.push((format!("SubjectAccessReview, {concurrency} connections"), z));
        }
        rows
    }

    fn lines(&self, prefix: &str) -> Vec<String> {
        self.rows()
            .iter()
            .map(|(what, figures)| figures.line(&format!("{prefix}{what}")))
            .collect()
    }
}

async fn measure(client: &reqwest::Client, authn: &str, authz: &str, length: Duration) -> Run {
    let idle_authn = sequential(
        client,
        authn,
        (0..5000).map(|i| token_review(&token(i % HOT_USERS))),
        "\"authenticated\":true",
    )
    .await;
    let idle_authz = sequential(client, authz, (0..5000).map(sar), "\"allowed\"").await;
    let hot: Arc<dyn Fn(usize) -> Vec<u8> + Send + Sync> =
        Arc::new(|i| token_review(&token(i % HOT_USERS)));
    let mut saturated = Vec::new();
    for concurrency in [16, 64] {
        let a = load(
            client,
            authn,
            concurrency,
            length,
            hot.clone(),
            "\"authenticated\":true",
        )
        .await;
        let z = load(
            client,
            authz,
            concurrency,
            length,
            Arc::new(sar),
            "\"allowed\"",
        )
        .await;
        saturated.push((concurrency, a, z));
    }
    Run {
        idle_authn,
        idle_authz,
        saturated,
    }
}

async fn post_text(client: &reqwest::Client, url: &str, body: Vec<u8>) -> String {
    let answer = client.post(url).body(body).send().await.expect("an answer");
    answer.text().await.expect("an answer's body")
}

/// HAProxy as the floor: TLS termination and a fixed answer, nothing else.
struct HaproxyPeer {
    child: std::process::Child,
    port: u16,
    version: String,
    _dir: tempfile::TempDir,
}

impl HaproxyPeer {
    fn start(pinned: bool, answers: &[(&str, String)]) -> std::io::Result<Self> {
        let version = std::process::Command::new("haproxy").arg("-v").output()?;
        let version = String::from_utf8_lossy(&version.stdout)
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(2))
            .map(|v| format!("HAProxy {v}"))
            .unwrap_or_else(|| "HAProxy".into());
        let dir = tempfile::tempdir()?;
        let mut pem = std::fs::read(data("server-1.crt"))?;
        pem.extend(std::fs::read(data("server-1.key"))?);
        std::fs::write(dir.path().join("server.pem"), pem)?;
        for (name, body) in answers {
            std::fs::write(dir.path().join(name), body)?;
        }
        let port = free_port();
        let d = dir.path().display();
        let config = format!(
            "global\n  nbthread 1\n  maxconn 4096\n\
             defaults\n  mode http\n  timeout client 60s\n  timeout connect 5s\n  timeout server 60s\n  timeout http-keep-alive 60s\n\
             frontend webhook\n  bind 127.0.0.1:{port} ssl crt {d}/server.pem alpn http/1.1\n\
             \x20 http-request return status 200 content-type application/json file {d}/authn.json if {{ path /authenticate }}\n\
             \x20 http-request return status 200 content-type application/json file {d}/authz.json\n"
        );
        let cfg = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg, config)?;
        let mut command = std::process::Command::new("taskset");
        command.args(["-c", "0", "haproxy"]);
        if !pinned {
            command = std::process::Command::new("haproxy");
        }
        let child = command
            .arg("-db")
            .arg("-f")
            .arg(&cfg)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        Ok(Self {
            child,
            port,
            version,
            _dir: dir,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}/{path}", self.port)
    }

    async fn wait_ready(&self, client: &reqwest::Client) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !client
            .post(self.url("authorize"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            assert!(Instant::now() < deadline, "HAProxy never answered");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for HaproxyPeer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
