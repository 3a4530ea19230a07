use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use rancher_dns::backend::{DnsBackend, ServerBackend};
use rancher_dns::fixtures::*;
use rancher_dns::forward::ForwardConfig;
use rancher_dns::metrics::Metrics;
use rancher_dns::model::Options;
use rancher_dns::records::RecordIndex;
use rancher_dns::server::{Server, ServerConfig};

pub(crate) struct Running {
    pub(crate) server: Server,
    pub(crate) backend: ServerBackend,
    pub(crate) metrics: Metrics,
}

impl Running {
    pub(crate) fn addr(&self) -> SocketAddr {
        self.server.local_addr()
    }
}

/// A server on a loopback port with the sample cluster, synced.
pub(crate) async fn start(options: Options, upstreams: Vec<SocketAddr>, sample: bool) -> Running {
    start_with(options, upstreams, sample, 1).await
}

/// Like [`start`] with `threads` UDP sockets (more than one share the port
/// with `SO_REUSEPORT`).
pub(crate) async fn start_with(
    options: Options,
    upstreams: Vec<SocketAddr>,
    sample: bool,
    threads: usize,
) -> Running {
    let metrics = Metrics::new();
    let backend = ServerBackend::new(&options, metrics.clone());
    let mut index = RecordIndex::new(options);
    if sample {
        index.apply_service(mk_service(
            "ns",
            "web",
            &["10.43.0.7", "fd00::7"],
            vec![tcp("http", 80)],
        ));
        index.apply_service(mk_headless("ns", "mongodb", vec![tcp("mongo", 27017)]));
        index.apply_slice(mk_slice(
            "ns",
            "mongodb-1",
            "mongodb",
            vec![
                mk_endpoint("10.42.0.10", Some("mdb-0"), true),
                mk_endpoint("10.42.0.11", Some("mdb-1"), true),
                mk_endpoint("10.42.0.12", Some("mdb-2"), false),
            ],
            vec![tcp("mongo", 27017)],
        ));
        index.apply_service(mk_external("ns", "ext", "www.example.org"));
        let eps = (0..80)
            .map(|n| mk_endpoint(&format!("10.42.1.{n}"), None, true))
            .collect();
        index.apply_service(mk_headless("ns", "big", vec![]));
        index.apply_slice(mk_slice("ns", "big-1", "big", eps, vec![]));
    }
    backend.sync(&index.view()).await.unwrap();
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        udp_threads: threads,
        forward: ForwardConfig {
            upstreams,
            timeout: Duration::from_millis(500),
            ..ForwardConfig::default()
        },
        ..ServerConfig::default()
    };
    let server = Server::start(&config, backend.snapshots(), metrics.clone()).unwrap();
    Running {
        server,
        backend,
        metrics,
    }
}

#[derive(Debug, Default)]
pub(crate) struct Dig {
    pub(crate) status: String,
    pub(crate) flags: Vec<String>,
    pub(crate) answer: Vec<String>,
    pub(crate) authority: Vec<String>,
}

impl Dig {
    /// Answer record data (last field(s) after the type), sorted.
    pub(crate) fn data(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .answer
            .iter()
            .map(|l| l.split_whitespace().skip(4).collect::<Vec<_>>().join(" "))
            .collect();
        v.sort();
        v
    }
}

/// Runs real `dig` against the server and parses its output.
pub(crate) fn dig(addr: SocketAddr, args: &[&str]) -> Dig {
    let out = Command::new("dig")
        .arg(format!("@{}", addr.ip()))
        .args([
            "-p",
            &addr.port().to_string(),
            "+tries=1",
            "+time=2",
            "+nocookie",
        ])
        .args(args)
        .output()
        .expect("dig runs (Debian package dnsutils)");
    let text = String::from_utf8_lossy(&out.stdout);
    let mut d = Dig::default();
    let mut section = "";
    for line in text.lines() {
        if let Some(rest) = line.split("status: ").nth(1) {
            d.status = rest.split(',').next().unwrap_or("").to_owned();
        } else if let Some(rest) = line.strip_prefix(";; flags: ") {
            d.flags = rest
                .split(';')
                .next()
                .unwrap_or("")
                .split_whitespace()
                .map(str::to_owned)
                .collect();
        } else if line.starts_with(";; ANSWER SECTION") {
            section = "answer";
        } else if line.starts_with(";; AUTHORITY SECTION") {
            section = "authority";
        } else if line.starts_with(";;") || line.is_empty() {
            section = "";
        } else if !line.starts_with(';') {
            match section {
                "answer" => d.answer.push(line.to_owned()),
                "authority" => d.authority.push(line.to_owned()),
                _ => {}
            }
        }
    }
    assert!(!d.status.is_empty(), "dig got no answer: {text}");
    d
}
