//! A real container runtime: Debian's containerd and runc run containers with
//! `ctr run --cni` from a rootfs of Debian's busybox-static, on two "hosts"
//! (network namespaces) whose agents built the overlay; ctr finds `rancher-cni`
//! through `/etc/cni/net.d` and its CNI bin dir, bind-mounted for ctr alone (in
//! the private mount namespace `ip netns exec` gives it), so the machine's own
//! CNI configuration is neither used nor touched. containerd runs with its own
//! root, state and socket ([`Containerd`]), and is stopped after.

use std::{
    path::Path,
    process::{Command, Output},
};

use k8s_openapi::api::core::v1::Node;
use kube::{Api, api::PostParams};
use serde_json::Value;

use crate::{
    cni_overlay::{Host, hosts, node},
    cni_plugin::{PLUGIN, reservations},
    containerd::{Containerd, text},
    support::eventually,
};

impl Containerd {
    /// `ctr run --cni` inside `host`'s namespace, with `net_d` as /etc/cni/net.d and
    /// `bin` as the CNI bin dirs, for ctr and the plugins it runs only.
    fn run_on(&self, host: &Host, net_d: &Path, bin: &Path, args: &[&str]) -> Output {
        let mut script = format!(
            "mkdir -p /opt/cni/bin /usr/lib/cni /etc/cni/net.d && \
             mount --bind {net_d} /etc/cni/net.d && mount --bind {bin} /opt/cni/bin && \
             mount --bind {bin} /usr/lib/cni && exec ctr -a {sock} run --cni",
            net_d = net_d.display(),
            bin = bin.display(),
            sock = self.socket().display(),
        );
        for a in args {
            script.push_str(" '");
            script.push_str(&a.replace('\'', "'\\''"));
            script.push('\'');
        }
        Command::new("ip")
            .args(["netns", "exec", host.ns.name(), "sh", "-c", &script])
            .output()
            .expect("ip netns exec ctr")
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_runs_containers_that_talk_across_hosts() {
    rancher_runtime::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    let sandbox = rancher_sandbox::Sandbox::builder()
        .kubeconfig_path(&kubeconfig)
        .start()
        .await
        .expect("sandbox");
    let nodes: Api<Node> = Api::all(sandbox.client());
    for n in ["ctr-a", "ctr-b"] {
        nodes
            .create(&PostParams::default(), &node(n, None))
            .await
            .expect("node");
    }
    let (_switch, mut hosts) = hosts(2, sandbox.addr(), &kubeconfig, &["ctr-a", "ctr-b"]);
    for h in &mut hosts {
        h.start_agent(&[]);
    }
    for h in &hosts {
        eventually(&format!("{} ready", h.name), || async {
            h.admin_get("/readyz")
                .filter(|(s, _)| *s == 200)
                .map(|_| ())
        })
        .await;
    }
    // The plugin binary where ctr looks for it, and per host the agent's conflist
    // with the host's own dataDir.
    let bin = dir.path().join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    std::fs::copy(PLUGIN, bin.join("rancher-cni")).expect("install the plugin");
    let mut net_ds = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        let path = h.conf_dir.path().join("10-rancher-cni.conflist");
        let mut list: Value =
            serde_json::from_str(&std::fs::read_to_string(&path).expect("conflist")).expect("json");
        list["plugins"][0]["ipam"]["dataDir"] =
            Value::String(h.data_dir.path().display().to_string());
        let net_d = dir.path().join(format!("net.d-{i}"));
        std::fs::create_dir_all(&net_d).expect("net.d");
        std::fs::write(net_d.join("10-rancher-cni.conflist"), list.to_string()).expect("write");
        net_ds.push(net_d);
    }

    let containerd = Containerd::start().await;
    let server_root = containerd.rootfs("rootfs-a");
    let client_root = containerd.rootfs("rootfs-b");
    let started = containerd.run_on(
        &hosts[0],
        &net_ds[0],
        &bin,
        &[
            "-d",
            "--rootfs",
            &server_root.display().to_string(),
            "rcni-server",
            "/bin/sh",
            "-c",
            "while true; do echo from-host-a | nc -l -p 8080; done",
        ],
    );
    assert!(started.status.success(), "{}", text(&started));
    let reserved = reservations(&hosts[0].data_dir.path().join("rancher"));
    assert_eq!(
        reserved.len(),
        1,
        "the server holds one address: {reserved:?}"
    );
    let server_ip = reserved[0].clone();

    // The client on the other host connects through the overlay.
    let script =
        format!("for i in $(seq 1 50); do nc {server_ip} 8080 && exit 0; sleep 0.2; done; exit 1");
    let client = containerd.run_on(
        &hosts[1],
        &net_ds[1],
        &bin,
        &[
            "--rm",
            "--rootfs",
            &client_root.display().to_string(),
            "rcni-client",
            "/bin/sh",
            "-c",
            &script,
        ],
    );
    assert!(client.status.success(), "{}", text(&client));
    assert!(
        String::from_utf8_lossy(&client.stdout).contains("from-host-a"),
        "{}",
        text(&client)
    );
    // `--rm` ran DEL: the client's address is released.
    assert!(reservations(&hosts[1].data_dir.path().join("rancher")).is_empty());
    drop(containerd);
    for h in &mut hosts {
        h.stop_agent();
    }
}
