//! The `rancher-ingress-controller` binary against the in-memory API server,
//! with the HAProxy driver on two loopback host addresses: the seed example
//! applied with the real `kubectl`, served through HAProxy to the real `curl`,
//! its status shown by `kubectl get ingress`, and the admin endpoints.
//!
//! The controller's semantics are covered by rancher-ingress's own
//! end-to-end tests; this one proves the shipped binary wires them up from a
//! kubeconfig and its flags.

use crate::support::{curl, eventually, free_port, kubectl, spawn_haproxy_controller, terminate};
use rancher_lb::testing::HttpEcho;

const HOSTS: [&str; 2] = ["127.0.0.2", "127.0.0.3"];

/// The seed's `scalelb` Ingress (scale 2, `foo.bar.com/foo`) on `http_port`, its
/// IngressClass, and the Service and EndpointSlice of a backend on 127.0.0.1.
pub(crate) fn manifests(http_port: u16, backend_port: u16) -> String {
    format!(
        r#"apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: rancher
spec:
  controller: rancher.io/ingress
---
apiVersion: v1
kind: Service
metadata:
  name: nginx-service
  namespace: default
spec:
  ports:
  - port: 80
    targetPort: {backend_port}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: nginx-service-1
  namespace: default
  labels:
    kubernetes.io/service-name: nginx-service
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
  name: scalelb
  namespace: default
  annotations:
    scale: "2"
    http.port: "{http_port}"
spec:
  ingressClassName: rancher
  rules:
  - host: foo.bar.com
    http:
      paths:
      - path: /foo
        pathType: Prefix
        backend:
          service:
            name: nginx-service
            port:
              number: 80
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_the_seed_example_on_two_hosts() {
    rancher_runtime::install_crypto_provider();
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    let _sandbox = rancher_sandbox::Sandbox::builder()
        .kubeconfig_path(&kubeconfig)
        .start()
        .await
        .expect("sandbox starts");
    let echo = HttpEcho::start("nginx").await.expect("echo backend");
    let (http_port, admin_port) = (free_port(), free_port());
    let file = dir.path().join("seed.yaml");
    std::fs::write(&file, manifests(http_port, echo.port())).expect("write manifests");
    let file = file.to_str().expect("UTF-8 path");
    let (ok, out) = kubectl(&kubeconfig, &["apply", "-f", file]).await;
    assert!(ok, "{out}");

    let mut child = spawn_haproxy_controller(
        env!("CARGO_BIN_EXE_rancher-ingress-controller"),
        &kubeconfig,
        &HOSTS,
        &dir.path().join("lb"),
        admin_port,
    );

    // `kubectl get ingress` shows both host addresses.
    let table = eventually("both addresses in kubectl get ingress", || async {
        let (ok, out) = kubectl(&kubeconfig, &["get", "ingress", "scalelb"]).await;
        (ok && out.contains("127.0.0.2,127.0.0.3")).then_some(out)
    })
    .await;
    assert!(table.contains("scalelb"), "{table}");
    // Both serve the route; other paths and hosts get 404.
    for host in HOSTS {
        let base = format!("http://{host}:{http_port}");
        let (code, body) = curl(&format!("{base}/foo/bar"), Some("foo.bar.com")).await;
        assert_eq!((code, body.as_str()), (200, "nginx /foo/bar"), "{host}");
        let (code, _) = curl(&format!("{base}/foobar"), Some("foo.bar.com")).await;
        assert_eq!(code, 404, "{host}: /foobar is not under the prefix /foo");
        let (code, _) = curl(&format!("{base}/foo"), Some("other.example.org")).await;
        assert_eq!(code, 404, "{host}: another host");
    }
    let admin = format!("http://127.0.0.1:{admin_port}");
    assert_eq!(curl(&format!("{admin}/readyz"), None).await.0, 200);
    let (code, metrics) = curl(&format!("{admin}/metrics"), None).await;
    assert_eq!(code, 200);
    for metric in [
        "rancher_ingress_syncs_total",
        "rancher_ingress_haproxy_instances_running 2",
    ] {
        assert!(
            metrics.contains(metric),
            "{metric} in {}",
            &metrics[..metrics.len().min(3000)]
        );
    }

    // Scale 2 → 1 through kubectl: one address left.
    let (ok, out) = kubectl(
        &kubeconfig,
        &["annotate", "--overwrite", "ingress", "scalelb", "scale=1"],
    )
    .await;
    assert!(ok, "{out}");
    eventually("one address after scaling down", || async {
        let (ok, out) = kubectl(
            &kubeconfig,
            &[
                "get",
                "ingress",
                "scalelb",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[*].ip}",
            ],
        )
        .await;
        (ok && out.split_whitespace().count() == 1).then_some(())
    })
    .await;

    // SIGTERM: the controller exits cleanly and takes HAProxy with it.
    terminate(&mut child).await;
    for host in HOSTS {
        let (code, _) = curl(
            &format!("http://{host}:{http_port}/foo"),
            Some("foo.bar.com"),
        )
        .await;
        assert_eq!(
            code, 0,
            "{host}: HAProxy still serves after the controller exited"
        );
    }
}
