//! The `rancher-cloud-controller-manager` binary against the in-memory API
//! server, with the HAProxy driver on two loopback host addresses: a
//! `type: LoadBalancer` Service applied with the real `kubectl` gets a host
//! address in its status, TCP through HAProxy reaches the node port, and
//! deleting the Service removes the listener and lets the Service go.
//!
//! The controller's semantics are covered by rancher-cloudprovider's own
//! end-to-end tests; this one proves the shipped binary wires them up.

use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, PostParams};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
};

use crate::support::{eventually, free_port, kubectl, spawn_haproxy_controller, terminate};

const HOSTS: [&str; 2] = ["127.0.94.1", "127.0.94.2"];
const NODE_IP: &str = "127.0.94.11";

/// Sends one line to `ip:port`; the answer, or `None` when nothing answers.
async fn ask(ip: &str, port: u16) -> Option<String> {
    let attempt = async {
        let mut stream = TcpStream::connect((ip, port)).await.ok()?;
        stream.write_all(b"hello\n").await.ok()?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).await.ok()?;
        (!line.is_empty()).then(|| line.trim_end().to_owned())
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_gives_a_load_balancer_service_a_working_address() {
    rancher_runtime::install_crypto_provider();
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    let sandbox = rancher_sandbox::Sandbox::builder()
        .kubeconfig_path(&kubeconfig)
        .start()
        .await
        .expect("sandbox starts");
    let node: Node = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "node-a"},
        "status": {"addresses": [{"type": "InternalIP", "address": NODE_IP}]}
    }))
    .expect("node");
    Api::<Node>::all(sandbox.client())
        .create(&PostParams::default(), &node)
        .await
        .expect("node created");

    let port = free_port();
    let manifest = format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: echo\n  namespace: default\n\
         spec:\n  type: LoadBalancer\n  selector:\n    app: echo\n  ports:\n  \
         - name: tcp\n    port: {port}\n    protocol: TCP\n"
    );
    let file = dir.path().join("service.yaml");
    std::fs::write(&file, manifest).expect("write manifest");
    let file = file.to_str().expect("UTF-8 path");
    let (ok, out) = kubectl(&kubeconfig, &["apply", "-f", file]).await;
    assert!(ok, "{out}");
    let (ok, node_port) = kubectl(
        &kubeconfig,
        &[
            "get",
            "service",
            "echo",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}",
        ],
    )
    .await;
    assert!(ok, "{node_port}");
    let node_port: u16 = node_port.trim().parse().expect("a node port");
    // The node's kube-proxy, played by an echo server on the node port.
    let listener = TcpListener::bind((NODE_IP, node_port))
        .await
        .expect("echo binds");
    let echo = tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut line = String::new();
                if BufReader::new(read).read_line(&mut line).await.is_ok() {
                    let _ = write.write_all(format!("node-a {line}").as_bytes()).await;
                }
            });
        }
    });

    let admin_port = free_port();
    let mut child = spawn_haproxy_controller(
        env!("CARGO_BIN_EXE_rancher-cloud-controller-manager"),
        &kubeconfig,
        &HOSTS,
        &dir.path().join("lb"),
        admin_port,
    );

    let address = eventually("an address in the Service's status", || async {
        let (ok, out) = kubectl(
            &kubeconfig,
            &[
                "get",
                "service",
                "echo",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[*].ip}",
            ],
        )
        .await;
        let out = out.trim().to_owned();
        (ok && !out.is_empty()).then_some(out)
    })
    .await;
    assert!(HOSTS.contains(&address.as_str()), "{address}");
    let answer = eventually("TCP through HAProxy", || ask(&address, port)).await;
    assert_eq!(answer, "node-a hello");

    // Deleting the Service removes the listener, then the finalizer.
    let (ok, out) = kubectl(&kubeconfig, &["delete", "service", "echo", "--wait=false"]).await;
    assert!(ok, "{out}");
    eventually("the Service gone", || async {
        let (ok, out) = kubectl(&kubeconfig, &["get", "service", "echo"]).await;
        (!ok && out.contains("NotFound")).then_some(())
    })
    .await;
    assert_eq!(ask(&address, port).await, None, "the listener is gone");

    terminate(&mut child).await;
    echo.abort();
}
