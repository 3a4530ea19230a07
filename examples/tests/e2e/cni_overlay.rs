//! Three "hosts" (network namespaces on one underlay bridge, itself in a namespace
//! of its own), each running the `rancher-cni-agent` binary against the sandbox
//! API server; pods added through the `rancher-cni` binary with the conflist the
//! agent wrote; TCP between pods across hosts over the VXLAN overlay.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use k8s_openapi::api::core::v1::{Node, NodeSpec};
use kube::{
    Api,
    api::{DeleteParams, ObjectMeta, PostParams},
};
use rancher_cni::{agent::conflist::plugin_config, testing::netns::TestNetns};
use serde_json::Value;

use crate::{
    cni_plugin::{call, echo, tcp_round_trip},
    support::eventually,
};

const AGENT: &str = env!("CARGO_BIN_EXE_rancher-cni-agent");

/// A host: its namespace, its agent, its conf dir and data dir.
pub(crate) struct Host {
    pub(crate) name: String,
    pub(crate) ns: TestNetns,
    pub(crate) underlay: String,
    pub(crate) conf_dir: tempfile::TempDir,
    pub(crate) data_dir: tempfile::TempDir,
    pub(crate) kubeconfig: PathBuf,
    agent: Option<Child>,
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stop_agent();
    }
}

impl Host {
    pub(crate) fn stop_agent(&mut self) {
        if let Some(mut child) = self.agent.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts `rancher-cni-agent` inside the host's namespace.
    pub(crate) fn start_agent(&mut self, extra: &[&str]) {
        let conf_dir = self.conf_dir.path().to_path_buf();
        let kubeconfig = self.kubeconfig.clone();
        let name = self.name.clone();
        let extra: Vec<String> = extra.iter().map(ToString::to_string).collect();
        let child = self
            .ns
            .run(move || {
                Command::new(AGENT)
                    .arg("--kubeconfig")
                    .arg(&kubeconfig)
                    .args([
                        "--node-name",
                        &name,
                        "--iface",
                        "eth0",
                        "--admin",
                        "127.0.0.1:9991",
                    ])
                    .arg("--cni-conf-dir")
                    .arg(&conf_dir)
                    .args(&extra)
                    .env("RUST_LOG", "info")
                    .stdin(Stdio::null())
                    .stdout(Stdio::null())
                    .spawn()
                    .expect("start rancher-cni-agent")
            })
            .expect("in the host namespace");
        self.agent = Some(child);
    }

    /// GET `path` on the agent's admin server (inside the host's namespace).
    pub(crate) fn admin_get(&self, path: &str) -> Option<(u16, String)> {
        self.ns
            .run(|| {
                let mut s = TcpStream::connect_timeout(
                    &"127.0.0.1:9991".parse().ok()?,
                    Duration::from_secs(1),
                )
                .ok()?;
                s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
                write!(s, "GET {path} HTTP/1.0\r\nHost: agent\r\n\r\n").ok()?;
                let mut text = String::new();
                s.read_to_string(&mut text).ok()?;
                let status = text.split_whitespace().nth(1)?.parse().ok()?;
                Some((status, text))
            })
            .ok()
            .flatten()
    }

    /// The plugin configuration the runtime would build from the agent's conflist.
    pub(crate) fn plugin_conf(&self) -> Option<Value> {
        let path = self.conf_dir.path().join("10-rancher-cni.conflist");
        let list: Value = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
        let mut conf = plugin_config(&list)?;
        conf["ipam"]["dataDir"] = Value::String(self.data_dir.path().display().to_string());
        Some(conf)
    }

    /// The routes of the host's namespace, as `ip route` prints them.
    pub(crate) fn routes(&self) -> String {
        self.ns
            .ip(&["route"])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }
}

/// Forwards connections to `127.0.0.1:<port>` inside `ns` to `to` (the sandbox API
/// server on this machine's loopback); returns the port.
pub(crate) fn relay(ns: &TestNetns, to: SocketAddr) -> u16 {
    let listener = ns
        .run(|| TcpListener::bind("127.0.0.1:0"))
        .expect("in the namespace")
        .expect("bind the relay");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for inside in listener.incoming().flatten() {
            let Ok(outside) = TcpStream::connect(to) else {
                continue;
            };
            let (Ok(mut a), Ok(mut b)) = (inside.try_clone(), outside.try_clone()) else {
                continue;
            };
            let (mut inside, mut outside) = (inside, outside);
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut a, &mut outside);
                let _ = outside.shutdown(std::net::Shutdown::Write);
            });
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut b, &mut inside);
                let _ = inside.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    port
}

/// A switch namespace with a bridge, and `n` hosts wired to it with an address
/// 10.250.40.(11+i)/24 on their `eth0`; each gets a kubeconfig through a relay.
pub(crate) fn hosts(
    n: usize,
    sandbox: SocketAddr,
    kubeconfig: &Path,
    names: &[&str],
) -> (TestNetns, Vec<Host>) {
    let switch = TestNetns::new("s").expect("switch");
    switch
        .ip(&["link", "add", "br0", "type", "bridge"])
        .expect("bridge");
    switch.ip(&["link", "set", "br0", "up"]).expect("up");
    let text = std::fs::read_to_string(kubeconfig).expect("kubeconfig");
    let mut out = Vec::new();
    for (i, name) in names.iter().take(n).enumerate() {
        let ns = TestNetns::new("n").expect("host");
        let port_name = format!("sw{i}");
        switch
            .ip(&[
                "link",
                "add",
                &port_name,
                "type",
                "veth",
                "peer",
                "name",
                "eth0",
                "netns",
                ns.name(),
            ])
            .expect("wire the host");
        switch
            .ip(&["link", "set", &port_name, "master", "br0", "up"])
            .expect("port up");
        let underlay = format!("10.250.40.{}", 11 + i);
        ns.ip(&["addr", "add", &format!("{underlay}/24"), "dev", "eth0"])
            .expect("underlay address");
        ns.ip(&["link", "set", "eth0", "up"]).expect("eth0 up");
        let port = relay(&ns, sandbox);
        let conf_dir = tempfile::tempdir().expect("tempdir");
        let host_kubeconfig = conf_dir.path().join("kubeconfig");
        std::fs::write(
            &host_kubeconfig,
            text.replace(
                &format!("http://{sandbox}"),
                &format!("http://127.0.0.1:{port}"),
            ),
        )
        .expect("write kubeconfig");
        out.push(Host {
            name: (*name).to_string(),
            ns,
            underlay,
            conf_dir,
            data_dir: tempfile::tempdir().expect("tempdir"),
            kubeconfig: host_kubeconfig,
            agent: None,
        });
    }
    (switch, out)
}

pub(crate) fn node(name: &str, pod_cidrs: Option<Vec<String>>) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..ObjectMeta::default()
        },
        spec: pod_cidrs.map(|c| NodeSpec {
            pod_cidr: c.first().cloned(),
            pod_cidrs: Some(c),
            ..NodeSpec::default()
        }),
        ..Node::default()
    }
}

fn first_ip(result: &Value) -> std::net::IpAddr {
    result["ips"][0]["address"]
        .as_str()
        .and_then(|c| c.split('/').next())
        .and_then(|a| a.parse().ok())
        .expect("an address in the result")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pods_on_three_hosts_talk_over_the_vxlan_overlay() {
    rancher_runtime::install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    let sandbox = rancher_sandbox::Sandbox::builder()
        .kubeconfig_path(&kubeconfig)
        .start()
        .await
        .expect("sandbox");
    let nodes: Api<Node> = Api::all(sandbox.client());
    // host-a's range comes from the cluster (as with --allocate-node-cidrs); the
    // other two claim theirs.
    nodes
        .create(
            &PostParams::default(),
            &node("host-a", Some(vec!["10.42.77.0/24".into()])),
        )
        .await
        .expect("node a");
    for n in ["host-b", "host-c"] {
        nodes
            .create(&PostParams::default(), &node(n, None))
            .await
            .expect("node");
    }
    let (_switch, mut hosts) = hosts(
        3,
        sandbox.addr(),
        &kubeconfig,
        &["host-a", "host-b", "host-c"],
    );
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
    for h in &hosts {
        let published = nodes.get(&h.name).await.expect("node");
        assert_eq!(
            published
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get("cni.rancher.io/public-ip")),
            Some(&h.underlay),
            "{} publishes its underlay address",
            h.name
        );
    }
    let confs: Vec<Value> = hosts
        .iter()
        .map(|h| h.plugin_conf().expect("conflist"))
        .collect();
    let subnets: Vec<String> = confs
        .iter()
        .map(|c| {
            c["ipam"]["ranges"][0][0]["subnet"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        })
        .collect();
    assert_eq!(subnets[0], "10.42.77.0/24", "the cluster's range is used");
    assert!(
        subnets[1] != subnets[2] && !subnets[1..].contains(&subnets[0]),
        "{subnets:?}"
    );
    assert_eq!(confs[0]["mtu"], 1450);
    // The routes to the others are in place on every host.
    for (i, h) in hosts.iter().enumerate() {
        for (j, s) in subnets.iter().enumerate() {
            if i != j {
                eventually(&format!("route to {s} on {}", h.name), || async {
                    h.routes().contains(&format!("{s} via")).then_some(())
                })
                .await;
            }
        }
    }

    // One pod per host, two on host-a.
    let pods: Vec<TestNetns> = (0..4).map(|_| TestNetns::new("p").expect("pod")).collect();
    let placement = [0usize, 0, 1, 2];
    let mut results = Vec::new();
    for (i, (pod, host)) in pods.iter().zip(placement).enumerate() {
        let r = call(
            &hosts[host].ns,
            "ADD",
            &format!("pod{i}"),
            pod.path(),
            &confs[host],
        );
        assert!(r.ok, "{:?}", r.out);
        results.push(r.out);
    }
    let listeners: Vec<SocketAddr> = pods
        .iter()
        .zip(&results)
        .map(|(pod, r)| echo(pod, SocketAddr::new(first_ip(r), 0)))
        .collect();
    tcp_round_trip(&pods[0], listeners[1]).expect("same host");
    tcp_round_trip(&pods[0], listeners[2]).expect("a -> b over VXLAN");
    tcp_round_trip(&pods[3], listeners[0]).expect("c -> a over VXLAN");
    tcp_round_trip(&pods[2], listeners[3]).expect("b -> c over VXLAN");
    // A host reaches a pod on another host.
    tcp_round_trip(&hosts[1].ns, listeners[0]).expect("host b -> pod on a");

    // The agent restarts: running pods keep their connectivity, the MAC stays.
    let before = nodes.get("host-b").await.expect("node b");
    hosts[1].stop_agent();
    hosts[1].start_agent(&[]);
    eventually("host-b ready again", || async {
        hosts[1]
            .admin_get("/readyz")
            .filter(|(s, _)| *s == 200)
            .map(|_| ())
    })
    .await;
    let after = nodes.get("host-b").await.expect("node b");
    assert_eq!(
        before
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("cni.rancher.io/vtep-mac")),
        after
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("cni.rancher.io/vtep-mac")),
    );
    tcp_round_trip(&pods[0], listeners[2]).expect("a -> b after b's agent restarted");
    let metrics = hosts[0].admin_get("/metrics").expect("metrics").1;
    assert!(metrics.contains("rancher_cni_agent_peers 2"), "{metrics}");

    // host-c leaves: its route goes from the others.
    hosts[2].stop_agent();
    nodes
        .delete("host-c", &DeleteParams::default())
        .await
        .expect("delete node c");
    for h in &hosts[..2] {
        eventually(
            &format!("route to {} gone from {}", subnets[2], h.name),
            || async { (!h.routes().contains(&subnets[2])).then_some(()) },
        )
        .await;
    }

    for (i, (pod, host)) in pods.iter().zip(placement).enumerate() {
        let r = call(
            &hosts[host].ns,
            "DEL",
            &format!("pod{i}"),
            pod.path(),
            &confs[host],
        );
        assert!(r.ok, "{:?}", r.out);
    }
    for h in &mut hosts {
        h.stop_agent();
    }
}
