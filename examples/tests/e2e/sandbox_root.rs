//! The sandbox's root mode: every pod in a network namespace of its own, wired by the
//! `rancher-cni` plugin binary through the CNI protocol, with a real address from its
//! node's range, reachable from the host; namespaces and bridges go with the pods and
//! the sandbox. Runs as root (as `./scripts/test` and CI do); the range is a /23 of
//! 10.250.0.0/16 picked at random, and the names carry this process's id.

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use rancher_sandbox::workloads::CniNetwork;
use rancher_sandbox::{PodNetwork, Sandbox, SandboxNode, Workloads};

use super::cni_plugin::PLUGIN;
use super::support::{eventually, kubectl};

fn link_exists(name: &str) -> bool {
    std::process::Command::new("ip")
        .args(["link", "show", name])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn netns_left(prefix: &str) -> Vec<String> {
    std::fs::read_dir("/run/netns")
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with(prefix))
                .collect()
        })
        .unwrap_or_default()
}

fn http_get(addr: SocketAddr) -> Option<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.write_all(b"GET /root HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    out.split("\r\n\r\n").nth(1).map(str::to_owned)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_mode_pods_get_namespaces_and_real_addresses_from_rancher_cni() {
    rancher_runtime::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    let third = fastrand::u8(0..128) * 2;
    let cidr = format!("10.250.{third}.0/23");
    let network = CniNetwork::new(PLUGIN, dir.path().join("ipam"));
    let prefix = format!("sb{}", std::process::id() % 1_000_000);
    let sandbox = Sandbox::builder()
        .kubeconfig_path(&kubeconfig)
        .workloads(
            Workloads::new()
                .node(SandboxNode::new("node-a", "127.0.0.2".parse().expect("ip")))
                .node(SandboxNode::new("node-b", "127.0.0.3".parse().expect("ip")))
                .cluster_cidr(&cidr)
                .pod_network(PodNetwork::Cni(network)),
        )
        .start()
        .await
        .expect("sandbox starts");
    let (ok, out) = kubectl(
        &kubeconfig,
        &[
            "create",
            "deployment",
            "web",
            "--image=nginx",
            "--replicas=2",
            "--port=8080",
        ],
    )
    .await;
    assert!(ok, "{out}");
    let pods: Api<Pod> = Api::namespaced(sandbox.client(), "default");
    let ips: Vec<IpAddr> = eventually("two running pods with addresses", || async {
        let list = pods
            .list(&ListParams::default().labels("app=web"))
            .await
            .ok()?;
        let ips: Vec<IpAddr> = list
            .items
            .iter()
            .filter_map(|p| p.status.as_ref()?.pod_ip.as_deref()?.parse().ok())
            .collect();
        (ips.len() == 2).then_some(ips)
    })
    .await;
    for ip in &ips {
        assert!(
            ip.to_string().starts_with(&format!("10.250.{third}."))
                || ip
                    .to_string()
                    .starts_with(&format!("10.250.{}.", third + 1)),
            "{ip} is not in {cidr}"
        );
        // Reachable from the host: the echo server in the pod's namespace answers.
        let body = eventually("the pod answers from its namespace", || async {
            http_get(SocketAddr::new(*ip, 8080))
        })
        .await;
        assert!(
            body.starts_with("web-") && body.trim_end().ends_with(" /root"),
            "{body}"
        );
    }
    assert_eq!(netns_left(&prefix).len(), 2, "one namespace per pod");
    assert!(link_exists(&format!("{prefix}b0")) || link_exists(&format!("{prefix}b1")));

    // Deleted pods leave no namespace behind; the stopped sandbox no bridge.
    let (ok, out) = kubectl(&kubeconfig, &["delete", "deployment", "web"]).await;
    assert!(ok, "{out}");
    eventually("the pods' namespaces are gone", || async {
        netns_left(&prefix).is_empty().then_some(())
    })
    .await;
    sandbox.shutdown().await;
    eventually("the bridges are gone", || async {
        (!link_exists(&format!("{prefix}b0")) && !link_exists(&format!("{prefix}b1"))).then_some(())
    })
    .await;
}
