//! What the binary tests share: free ports, `kubectl`, `curl`, `dig`, and
//! waits with a deadline.

use std::{
    net::TcpListener,
    path::Path,
    time::{Duration, Instant},
};

use tokio::process::Command;

/// How long a wait may take.
pub(crate) const DEADLINE: Duration = Duration::from_secs(30);

/// A TCP port free on 127.0.0.1 now.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Runs `kubectl` against `kubeconfig`: (success, stdout then stderr).
pub(crate) async fn kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .await
        .expect("kubectl runs (scripts/test installs it when missing)");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// `curl` through `addr:port` with a Host header: (status, body).
pub(crate) async fn curl(url: &str, host: Option<&str>) -> (u16, String) {
    let mut command = Command::new("curl");
    command.args(["-s", "--max-time", "2", "-w", "\n%{http_code}"]);
    if let Some(host) = host {
        command.args(["-H", &format!("Host: {host}")]);
    }
    let output = command
        .arg(url)
        .output()
        .await
        .expect("curl runs (scripts/test installs it when missing)");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (code.trim().parse().unwrap_or(0), body.to_owned())
}

/// `dig` output for `args`, e.g. `["+short", "name"]`.
pub(crate) async fn dig(port: u16, args: &[&str]) -> String {
    let output = Command::new("dig")
        .args(["@127.0.0.1", "-p", &port.to_string(), "+time=1", "+tries=1"])
        .args(args)
        .output()
        .await
        .expect("dig runs (scripts/test installs dnsutils)");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The sorted `+short` answer lines for `name`.
pub(crate) async fn short(port: u16, name: &str) -> Vec<String> {
    let mut lines: Vec<String> = dig(port, &["+short", name])
        .await
        .lines()
        .map(str::to_owned)
        .filter(|l| !l.starts_with(';'))
        .collect();
    lines.sort();
    lines
}

/// Starts a controller binary with the HAProxy driver on `hosts`, its files
/// in `work_dir` and its admin server on `admin_port`.
pub(crate) fn spawn_haproxy_controller(
    binary: &str,
    kubeconfig: &Path,
    hosts: &[&str],
    work_dir: &Path,
    admin_port: u16,
) -> tokio::process::Child {
    Command::new(binary)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--driver", "haproxy", "--hosts", &hosts.join(",")])
        .arg("--work-dir")
        .arg(work_dir)
        .args(["--admin", &format!("127.0.0.1:{admin_port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{binary} starts: {e}"))
}

/// A port free for both UDP and TCP on 127.0.0.1 now (DNS serves both).
pub(crate) fn free_dns_port() -> u16 {
    loop {
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("a free UDP port")
            .port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The `rancher-dns` command serving on `127.0.0.1:port`, its admin server
/// on `admin_port`, forwarding nowhere, stderr passed through; add flags
/// before spawning.
pub(crate) fn dns_command(kubeconfig: &Path, port: u16, admin_port: u16) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rancher-dns"));
    command
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--admin", &format!("127.0.0.1:{admin_port}")])
        .args(["--upstream", "127.0.0.1:9"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true);
    command
}

/// Starts [`dns_command`].
pub(crate) fn spawn_dns(kubeconfig: &Path, port: u16, admin_port: u16) -> tokio::process::Child {
    dns_command(kubeconfig, port, admin_port)
        .spawn()
        .expect("the rancher-dns binary starts")
}

/// The value of the first sample in `/metrics` on `admin_port` whose line
/// starts with `series` (name and labels), if there is one.
pub(crate) async fn metric(admin_port: u16, series: &str) -> Option<f64> {
    let (code, text) = curl(&format!("http://127.0.0.1:{admin_port}/metrics"), None).await;
    if code != 200 {
        return None;
    }
    text.lines()
        .find_map(|line| line.strip_prefix(series))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|value| value.parse().ok())
}

/// Sends SIGTERM to `child` and checks that it exits cleanly within
/// [`DEADLINE`].
pub(crate) async fn terminate(child: &mut tokio::process::Child) {
    let pid = child.id().expect("running").to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill runs");
    assert!(status.success());
    let exit = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("exits after SIGTERM")
        .expect("wait");
    assert!(exit.success(), "{exit}");
}

/// Polls `check` every 100 ms until it returns `Some`, failing after
/// [`DEADLINE`].
pub(crate) async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    match within(DEADLINE, check).await {
        Some(value) => value,
        None => panic!("timed out waiting for {what}"),
    }
}

/// Polls `check` every 100 ms until it returns `Some`, for at most `deadline`;
/// `None` when time ran out, for callers that add their own diagnostics.
pub(crate) async fn within<T, F, Fut>(deadline: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if start.elapsed() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A Service `name` with an EndpointSlice `name-1` on 127.0.0.1:`backend_port`
/// and an Ingress `name` of class `rancher` for `host` on `http_port`
/// routing to it.
pub(crate) fn app(name: &str, host: &str, http_port: u16, backend_port: u16) -> String {
    format!(
        r#"apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: default
spec:
  ports:
  - port: 80
    targetPort: {backend_port}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: {name}-1
  namespace: default
  labels:
    kubernetes.io/service-name: {name}
addressType: IPv4
ports:
- port: {backend_port}
  protocol: TCP
endpoints:
- addresses: ["127.0.0.1"]
  conditions:
    ready: true
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {name}
  namespace: default
  annotations:
    http.port: "{http_port}"
spec:
  ingressClassName: rancher
  rules:
  - host: {host}
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: {name}
            port:
              number: 80
"#
    )
}

/// The IngressClass `rancher` of the in-tree controller.
pub(crate) const CLASS: &str = r#"apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: rancher
spec:
  controller: rancher.io/ingress
"#;
