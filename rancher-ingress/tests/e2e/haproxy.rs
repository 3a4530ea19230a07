//! The Ingress flows on real HAProxy (the `rancher-lb` HAProxy driver) on the
//! loopback host addresses 127.0.0.2 and 127.0.0.3, with echo backends, checked
//! with `curl` and `kubectl`.

use std::{net::IpAddr, sync::Arc};

use rancher_ingress::backend::lb::LbBackend;
use rancher_lb::{
    haproxy::{HaproxyConfig, HaproxyDriver},
    placement::Host,
    testing::HttpEcho,
};
use tokio::net::TcpListener;

use crate::support::*;

const ORG_CRT: &str = include_str!("../data/example.org.crt");
const ORG_KEY: &str = include_str!("../data/example.org.key");
const ROTATED_CRT: &str = include_str!("../data/example.org-rotated.crt");
const ROTATED_KEY: &str = include_str!("../data/example.org-rotated.key");
const NET_CRT: &str = include_str!("../data/example.net.crt");
const NET_KEY: &str = include_str!("../data/example.net.key");

const HOSTS: [&str; 2] = ["127.0.0.2", "127.0.0.3"];

struct Haproxy {
    running: Running,
    driver: Arc<HaproxyDriver>,
    _work: tempfile::TempDir,
    _echoes: Vec<HttpEcho>,
}

impl Haproxy {
    async fn start() -> Self {
        let work = tempfile::tempdir().expect("work dir");
        let hosts = HOSTS
            .iter()
            .map(|a| Host::new(a.parse::<IpAddr>().expect("address")))
            .collect();
        let driver = Arc::new(
            HaproxyDriver::new(HaproxyConfig::new(work.path().join("haproxy"), hosts))
                .await
                .expect("driver"),
        );
        let running = Running::start(Arc::new(LbBackend::new(driver.clone()))).await;
        Self {
            running,
            driver,
            _work: work,
            _echoes: Vec::new(),
        }
    }

    /// An echo backend behind Service `name` (port 80 → the echo's port).
    async fn echo_service(&mut self, name: &str) {
        let echo = HttpEcho::start(name).await.expect("echo backend");
        self.running.apply(service(name, 80)).await;
        self.running
            .apply(slice(name, echo.port(), &["127.0.0.1"]))
            .await;
        self._echoes.push(echo);
    }

    async fn stop(self) {
        self.running.stop().await;
        self.driver.shutdown().await;
    }
}

/// A port free on both hosts right now.
async fn free_port() -> u16 {
    loop {
        let first = TcpListener::bind((HOSTS[0], 0)).await.expect("bind");
        let port = first.local_addr().expect("addr").port();
        if TcpListener::bind((HOSTS[1], port)).await.is_ok() {
            return port;
        }
    }
}

/// `curl -H 'Host: HOST' http://ADDR:PORT/PATH`: the status code and body.
async fn curl(addr: &str, port: u16, host: &str, path: &str) -> (u16, String) {
    let output = tokio::process::Command::new("curl")
        .args(["-s", "-m", "5", "-o", "-", "-w", "\n%{http_code}", "-H"])
        .arg(format!("Host: {host}"))
        .arg(format!("http://{addr}:{port}{path}"))
        .output()
        .await
        .expect("curl runs");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// Waits until `curl` gets `code` and a body starting with `body`.
async fn wait_served(addr: &str, port: u16, host: &str, path: &str, code: u16, body: &str) {
    wait_for(
        &format!("{host}{path} on {addr}:{port} → {code} {body:?}"),
        || async {
            let (have_code, have_body) = curl(addr, port, host, path).await;
            (have_code == code && have_body.starts_with(body)).then_some(())
        },
    )
    .await;
}

/// The subject of the certificate served for `sni` on `addr:port`.
async fn served_subject(addr: &str, port: u16, sni: &str) -> String {
    let output = tokio::process::Command::new("curl")
        .args(["-s", "-v", "-k", "-m", "5", "-o", "/dev/null", "--resolve"])
        .arg(format!("{sni}:{port}:{addr}"))
        .arg(format!("https://{sni}:{port}/"))
        .output()
        .await
        .expect("curl runs");
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .find_map(|line| {
            line.trim_start_matches(['*', ' '])
                .strip_prefix("subject: ")
        })
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn the_seed_example_is_served_on_both_addresses() {
    let mut h = Haproxy::start().await;
    h.echo_service("nginx-service").await;
    h.running
        .apply(ingress(
            "scalelb",
            "rancher",
            &[("scale", "2")],
            &[("foo.bar.com", "/foo", "Prefix", "nginx-service", 80)],
        ))
        .await;
    h.running.wait_addresses("scalelb", &HOSTS).await;
    for addr in HOSTS {
        wait_served(addr, 80, "foo.bar.com", "/foo", 200, "nginx-service /foo").await;
        assert_eq!(curl(addr, 80, "foo.bar.com", "/foobar").await.0, 404);
        assert_eq!(curl(addr, 80, "other.example.org", "/foo").await.0, 404);
    }
    let table = h.running.kubectl(&["get", "ingress", "scalelb"]).await;
    assert!(table.contains("127.0.0.2,127.0.0.3"), "{table}");
    h.stop().await;
}

#[tokio::test]
async fn path_types_follow_the_ingress_rules() {
    let mut h = Haproxy::start().await;
    for name in ["prefix", "exact", "deeper", "root"] {
        h.echo_service(name).await;
    }
    let port = free_port().await;
    let port_text = port.to_string();
    h.running
        .apply(ingress(
            "paths",
            "rancher",
            &[("http.port", &port_text)],
            &[
                ("p.example.org", "/foo", "Prefix", "prefix", 80),
                ("p.example.org", "/foo", "Exact", "exact", 80),
                (
                    "p.example.org",
                    "/foo/bar",
                    "ImplementationSpecific",
                    "deeper",
                    80,
                ),
                ("*.example.net", "/", "Prefix", "root", 80),
            ],
        ))
        .await;
    h.running.wait_addresses("paths", &HOSTS[..1]).await;
    let addr = HOSTS[0];
    wait_served(addr, port, "p.example.org", "/foo", 200, "exact /foo").await;
    for (host, path, code, body) in [
        ("p.example.org", "/foo/", 200, "prefix /foo/"),
        ("p.example.org", "/foo/x", 200, "prefix /foo/x"),
        ("p.example.org", "/foo/bar/baz", 200, "deeper /foo/bar/baz"),
        ("p.example.org", "/foo/barbaz", 200, "prefix /foo/barbaz"),
        ("p.example.org", "/foobar", 404, ""),
        ("p.example.org", "/FOO", 404, ""),
        ("a.example.net", "/anything", 200, "root /anything"),
        ("a.b.example.net", "/anything", 404, ""),
    ] {
        let (have_code, have_body) = curl(addr, port, host, path).await;
        assert_eq!(have_code, code, "{host}{path}: {have_body}");
        assert!(have_body.starts_with(body), "{host}{path}: {have_body}");
    }
    h.stop().await;
}

/// `ingress` with `spec.defaultBackend` set to port 80 of Service `service`.
fn with_default_backend(
    mut ingress: k8s_openapi::api::networking::v1::Ingress,
    service: &str,
) -> k8s_openapi::api::networking::v1::Ingress {
    let spec = ingress.spec.get_or_insert_with(Default::default);
    spec.default_backend = Some(
        serde_json::from_value(serde_json::json!({
            "service": {"name": service, "port": {"number": 80}}
        }))
        .expect("backend"),
    );
    ingress
}

#[tokio::test]
async fn the_default_backend_answers_a_host_whose_paths_do_not_match() {
    let mut h = Haproxy::start().await;
    for name in ["dflt", "aaa"] {
        h.echo_service(name).await;
    }
    let (port, other_port) = (free_port().await, free_port().await);
    let (port_text, other_port_text) = (port.to_string(), other_port.to_string());
    h.running
        .apply(with_default_backend(
            ingress(
                "dflt",
                "rancher",
                &[("http.port", &port_text)],
                &[("b-dflt", "/aaa", "Prefix", "aaa", 80)],
            ),
            "dflt",
        ))
        .await;
    // A host without a default backend, on a load balancer of its own.
    h.running
        .apply(ingress(
            "no-dflt",
            "rancher",
            &[("http.port", &other_port_text)],
            &[("n-dflt", "/aaa", "Prefix", "aaa", 80)],
        ))
        .await;
    // Each load balancer on a host of its own (scale 1, spread).
    let running = &h.running;
    let addr = wait_for("dflt to get an address", || async {
        running.addresses("dflt").await.pop()
    })
    .await;
    let other_addr = wait_for("no-dflt to get an address", || async {
        running.addresses("no-dflt").await.pop()
    })
    .await;
    wait_served(&addr, port, "b-dflt", "/aaa", 200, "aaa /aaa").await;
    wait_served(&other_addr, other_port, "n-dflt", "/aaa", 200, "aaa /aaa").await;
    for (addr, port, host, path, code, body) in [
        // The host's own paths first.
        (&addr, port, "b-dflt", "/aaa/x", 200, "aaa /aaa/x"),
        // The host matched, no path did: the Ingress's default backend.
        (&addr, port, "b-dflt", "/ccc", 200, "dflt /ccc"),
        (&addr, port, "B-Dflt", "/", 200, "dflt /"),
        // No host matched.
        (&addr, port, "other.example.org", "/aaa", 200, "dflt /aaa"),
        // Without a default backend: 404.
        (
            &other_addr,
            other_port,
            "n-dflt",
            "/aaa/x",
            200,
            "aaa /aaa/x",
        ),
        (&other_addr, other_port, "n-dflt", "/ccc", 404, ""),
        (
            &other_addr,
            other_port,
            "other.example.org",
            "/aaa",
            404,
            "",
        ),
    ] {
        let (have_code, have_body) = curl(addr, port, host, path).await;
        assert_eq!(have_code, code, "{host}{path} on port {port}: {have_body}");
        assert!(
            have_body.starts_with(body),
            "{host}{path} on port {port}: {have_body}"
        );
    }
    h.stop().await;
}

#[tokio::test]
async fn two_certificates_by_sni_and_a_rotated_secret_is_served() {
    let mut h = Haproxy::start().await;
    h.echo_service("web").await;
    let (http, https) = (free_port().await, free_port().await);
    h.running.apply(tls_secret("org", ORG_CRT, ORG_KEY)).await;
    h.running.apply(tls_secret("net", NET_CRT, NET_KEY)).await;
    let (http_text, https_text) = (http.to_string(), https.to_string());
    let tls = with_tls(
        ingress(
            "tls",
            "rancher",
            &[("http.port", &http_text), ("https.port", &https_text)],
            &[
                ("www.example.org", "/", "Prefix", "web", 80),
                ("www.example.net", "/", "Prefix", "web", 80),
            ],
        ),
        &[(&["www.example.org"], "org"), (&["www.example.net"], "net")],
    );
    h.running.apply(tls).await;
    h.running.wait_addresses("tls", &HOSTS[..1]).await;
    let addr = HOSTS[0];
    wait_for("the example.org certificate", || async {
        (served_subject(addr, https, "www.example.org").await == "CN=example.org").then_some(())
    })
    .await;
    assert_eq!(
        served_subject(addr, https, "www.example.net").await,
        "CN=example.net"
    );
    wait_served(addr, http, "www.example.org", "/x", 200, "web /x").await;

    h.running
        .apply(tls_secret("org", ROTATED_CRT, ROTATED_KEY))
        .await;
    wait_for("the rotated certificate", || async {
        let subject = served_subject(addr, https, "www.example.org").await;
        subject.contains("Rotated").then_some(())
    })
    .await;
    assert_eq!(
        served_subject(addr, https, "www.example.net").await,
        "CN=example.net"
    );
    h.stop().await;
}

#[tokio::test]
async fn bad_input_writes_nothing_and_others_are_served() {
    let mut h = Haproxy::start().await;
    h.echo_service("web").await;
    let port = free_port().await;
    let port_text = port.to_string();
    h.running
        .apply(ingress(
            "good",
            "rancher",
            &[("http.port", &port_text)],
            &[("good.example.org", "/", "Prefix", "web", 80)],
        ))
        .await;
    h.running.wait_addresses("good", &HOSTS[..1]).await;
    wait_served(HOSTS[0], port, "good.example.org", "/", 200, "web /").await;
    let bad = [
        ("newline", "/a\nb", "Prefix"),
        ("quote", "/a\"b", "Prefix"),
        ("hash", "/a#b", "Exact"),
        ("space", "/a b", "Prefix"),
    ];
    for (name, path, kind) in bad {
        h.running
            .apply(ingress(
                name,
                "rancher",
                &[("http.port", &port_text)],
                &[("bad.example.org", path, kind, "web", 80)],
            ))
            .await;
    }
    for (name, _, _) in bad {
        h.running
            .wait_warning(name, "spec.rules[0].http.paths[0].path")
            .await;
    }
    // Nothing of them in any HAProxy file; the good Ingress still served.
    let mut files = Vec::new();
    collect_files(h._work.path(), &mut files);
    assert!(!files.is_empty(), "HAProxy wrote its configuration");
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap_or_default();
        assert!(
            !text.contains("bad.example.org"),
            "{} mentions a rejected Ingress",
            file.display()
        );
    }
    wait_served(HOSTS[0], port, "good.example.org", "/", 200, "web /").await;
    h.stop().await;
}

#[tokio::test]
async fn deleting_an_ingress_removes_its_routes_and_another_class_is_ignored() {
    let mut h = Haproxy::start().await;
    h.echo_service("web").await;
    let port = free_port().await;
    let port_text = port.to_string();
    let annotations = [("http.port", port_text.as_str())];
    h.running
        .apply(ingress(
            "keep",
            "rancher",
            &annotations,
            &[("keep.example.org", "/", "Prefix", "web", 80)],
        ))
        .await;
    h.running
        .apply(ingress(
            "gone",
            "rancher",
            &annotations,
            &[("gone.example.org", "/", "Prefix", "web", 80)],
        ))
        .await;
    h.running
        .apply(ingress(
            "theirs",
            "nginx",
            &annotations,
            &[("theirs.example.org", "/", "Prefix", "web", 80)],
        ))
        .await;
    h.running.wait_addresses("gone", &HOSTS[..1]).await;
    wait_served(HOSTS[0], port, "gone.example.org", "/", 200, "web /").await;
    assert_eq!(curl(HOSTS[0], port, "theirs.example.org", "/").await.0, 404);
    assert!(h.running.addresses("theirs").await.is_empty());
    h.running.delete_ingress("gone").await;
    wait_served(HOSTS[0], port, "gone.example.org", "/", 404, "").await;
    wait_served(HOSTS[0], port, "keep.example.org", "/", 200, "web /").await;
    h.stop().await;
}

fn collect_files(dir: &std::path::Path, out: &mut Vec<std::path::PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect_files(&path, out);
        } else if path.is_file() {
            out.push(path);
        }
    }
}

#[tokio::test]
async fn scale_goes_from_two_to_one_and_back_on_haproxy() {
    let mut h = Haproxy::start().await;
    h.echo_service("web").await;
    let port = free_port().await;
    let port_text = port.to_string();
    let scaled = |scale: &'static str| {
        ingress(
            "scaled",
            "rancher",
            &[("http.port", &port_text), ("scale", scale)],
            &[("scaled.example.org", "/", "Prefix", "web", 80)],
        )
    };
    h.running.apply(scaled("2")).await;
    h.running.wait_addresses("scaled", &HOSTS).await;
    for addr in HOSTS {
        wait_served(addr, port, "scaled.example.org", "/", 200, "web /").await;
    }
    h.running.apply(scaled("1")).await;
    h.running.wait_addresses("scaled", &HOSTS[..1]).await;
    wait_served(HOSTS[0], port, "scaled.example.org", "/x", 200, "web /x").await;
    wait_for("the second instance stopped serving", || async {
        let (code, _) = curl(HOSTS[1], port, "scaled.example.org", "/").await;
        (code != 200).then_some(())
    })
    .await;
    h.running.apply(scaled("2")).await;
    h.running.wait_addresses("scaled", &HOSTS).await;
    wait_served(HOSTS[1], port, "scaled.example.org", "/y", 200, "web /y").await;
    h.stop().await;
}
