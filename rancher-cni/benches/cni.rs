//! Benchmark: ADD and DEL latency per pod of `rancher-cni` against Debian's
//! reference `bridge` + `host-local` (cniVersion 1.0.0), same netns setup, same
//! way of running (a fresh process per call, spawned from a thread inside the host
//! namespace, config on stdin); then the agent: time to program 500 remote nodes
//! and time from a Node change to its route in the kernel.
//!
//! `cargo bench -p rancher-cni --bench cni` (root, iproute2, containernetworking-plugins).
//! The bench binary is also the plugin: run with `CNI_COMMAND` set it does exactly
//! what the `rancher-cni` binary does (`rancher_cni::plugin::main`).

#![allow(clippy::print_stdout, missing_docs)]

use std::{
    io::Write,
    process::{Command, Stdio},
    sync::Arc,
    time::{Duration, Instant},
};

use k8s_openapi::api::core::v1::{Node, NodeSpec};
use kube::{
    Api,
    api::{ObjectMeta, PostParams},
};
use prometheus_client::registry::Registry;
use rancher_cni::{
    agent::{Agent, AgentArgs, PUBLIC_IP_ANNOTATION, VTEP_MAC_ANNOTATION},
    dataplane::{Dataplane, LinuxDataplane},
    testing::netns::TestNetns,
};
use rancher_runtime::ready::Readiness;
use serde_json::json;
use tokio_util::sync::CancellationToken;

const PODS: usize = 50;
const REMOTE_NODES: usize = 500;
const CHANGES: usize = 20;
const REFERENCE: &str = "/usr/lib/cni/bridge";

fn main() {
    if std::env::var_os("CNI_COMMAND").is_some() {
        std::process::exit(rancher_cni::plugin::main());
    }
    let me = std::env::current_exe().expect("current exe");
    let (ref_add, ref_del) = plugin_latency(REFERENCE, "bridge");
    let (our_add, our_del) = plugin_latency(me.to_str().expect("utf-8 path"), "rancher-cni");
    println!("\nCNI plugin latency, {PODS} pods, one process per call from inside the host netns");
    println!(
        "{:<34} {:>12} {:>12} {:>12} {:>12}",
        "plugin", "ADD median", "ADD mean", "DEL median", "DEL mean"
    );
    for (name, add, del) in [
        ("reference bridge + host-local", &ref_add, &ref_del),
        ("rancher-cni", &our_add, &our_del),
    ] {
        println!(
            "{:<34} {:>9.2} ms {:>9.2} ms {:>9.2} ms {:>9.2} ms",
            name,
            ms(median(add)),
            ms(mean(add)),
            ms(median(del)),
            ms(mean(del))
        );
    }
    println!(
        "ratio rancher-cni / reference: ADD {:.3}x (median) {:.3}x (mean), DEL {:.3}x (median) {:.3}x (mean)",
        ms(median(&our_add)) / ms(median(&ref_add)),
        ms(mean(&our_add)) / ms(mean(&ref_add)),
        ms(median(&our_del)) / ms(median(&ref_del)),
        ms(mean(&our_del)) / ms(mean(&ref_del)),
    );
    agent_bench();
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn median(v: &[Duration]) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    s[s.len() / 2]
}

fn percentile(v: &[Duration], p: f64) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    let idx = ((s.len() as f64 - 1.0) * p).round() as usize;
    s[idx]
}

fn mean(v: &[Duration]) -> Duration {
    v.iter().sum::<Duration>() / u32::try_from(v.len()).unwrap_or(1)
}

/// ADD then DEL for `PODS` pods; the durations of each call.
fn plugin_latency(binary: &str, kind: &str) -> (Vec<Duration>, Vec<Duration>) {
    let host = TestNetns::new("bh").expect("host");
    let pods: Vec<TestNetns> = (0..PODS)
        .map(|_| TestNetns::new("bp").expect("pod"))
        .collect();
    let data = tempfile::tempdir().expect("tempdir");
    let conf = json!({
        "cniVersion": "1.0.0",
        "name": "bench",
        "type": kind,
        "bridge": "cni0",
        "isGateway": true,
        "isDefaultGateway": true,
        "mtu": 1450,
        "hairpinMode": true,
        "ipam": {"type": "host-local", "dataDir": data.path(), "ranges": [[{"subnet": "10.250.70.0/24"}]]}
    })
    .to_string();
    let paths: Vec<String> = pods.iter().map(|p| p.path().to_string()).collect();
    host.run(|| {
        let call = |command: &str, i: usize| -> Duration {
            let id = format!("bench{i}");
            let start = Instant::now();
            let mut child = Command::new(binary)
                .env_clear()
                .env("CNI_COMMAND", command)
                .env("CNI_CONTAINERID", &id)
                .env("CNI_NETNS", &paths[i])
                .env("CNI_IFNAME", "eth0")
                .env("CNI_PATH", "/usr/lib/cni")
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn the plugin");
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(conf.as_bytes())
                .expect("write stdin");
            let out = child.wait_with_output().expect("wait");
            let took = start.elapsed();
            assert!(
                out.status.success(),
                "{binary} {command}: {}",
                String::from_utf8_lossy(&out.stdout)
            );
            took
        };
        // One untimed round first: the bridge exists afterwards for both, as on
        // a node that has run pods before.
        call("ADD", 0);
        call("DEL", 0);
        let adds: Vec<Duration> = (0..PODS).map(|i| call("ADD", i)).collect();
        let dels: Vec<Duration> = (0..PODS).map(|i| call("DEL", i)).collect();
        (adds, dels)
    })
    .expect("in the host namespace")
}

fn agent_bench() {
    let host = TestNetns::new("ba").expect("host");
    host.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "eth1",
    ])
    .expect("underlay");
    host.ip(&["addr", "add", "10.250.80.2/24", "dev", "eth0"])
        .expect("addr");
    host.ip(&["link", "set", "eth0", "up"]).expect("up");
    host.ip(&["link", "set", "eth1", "up"]).expect("up");
    let dp: Arc<dyn Dataplane> = Arc::new(
        host.run(LinuxDataplane::new)
            .expect("netns")
            .expect("dataplane"),
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        rancher_runtime::install_crypto_provider();
        let sandbox = rancher_sandbox::Sandbox::builder().start().await.expect("sandbox");
        let client = sandbox.client();
        let nodes: Api<Node> = Api::all(client.clone());
        let mk = |i: usize| -> Node {
            let (hi, lo) = (i / 250, i % 250);
            Node {
                metadata: ObjectMeta {
                    name: Some(format!("remote-{i}")),
                    annotations: Some(
                        [
                            (
                                VTEP_MAC_ANNOTATION.to_string(),
                                format!("0e:00:0a:fb:{hi:02x}:{lo:02x}"),
                            ),
                            (PUBLIC_IP_ANNOTATION.to_string(), format!("10.251.{hi}.{}", lo + 1)),
                        ]
                        .into(),
                    ),
                    ..ObjectMeta::default()
                },
                spec: Some(NodeSpec {
                    pod_cidrs: Some(vec![if i < 250 {
                        format!("10.42.{i}.0/24")
                    } else {
                        format!("10.43.{}.0/24", i - 250)
                    }]),
                    ..NodeSpec::default()
                }),
                ..Node::default()
            }
        };
        nodes
            .create(
                &PostParams::default(),
                &Node {
                    metadata: ObjectMeta {
                        name: Some("bench-me".into()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(NodeSpec {
                        pod_cidrs: Some(vec!["10.44.0.0/24".into()]),
                        ..NodeSpec::default()
                    }),
                    ..Node::default()
                },
            )
            .await
            .expect("own node");
        for i in 0..REMOTE_NODES {
            nodes.create(&PostParams::default(), &mk(i)).await.expect("node");
        }
        let conf_dir = tempfile::tempdir().expect("tempdir");
        let mut args = AgentArgs::new("bench-me");
        args.cni_conf_dir = conf_dir.path().to_path_buf();
        args.iface = Some("eth0".into());
        args.cluster_cidrs = vec!["10.40.0.0/13".parse().expect("cidr")];
        let readiness = Readiness::new();
        let token = CancellationToken::new();
        let start = Instant::now();
        let agent = Agent::start(
            &args,
            client.clone(),
            Arc::clone(&dp),
            &mut Registry::default(),
            &readiness,
            token.clone(),
        )
        .await
        .expect("agent");
        while !readiness.is_ready() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let programmed = start.elapsed();
        let device = args.device();
        let count = dp.peers(&device).expect("peers").len();
        assert_eq!(count, REMOTE_NODES, "every remote node programmed");
        let mut latencies = Vec::new();
        for c in 0..CHANGES {
            let node = Node {
                metadata: ObjectMeta {
                    name: Some(format!("late-{c}")),
                    annotations: Some(
                        [
                            (VTEP_MAC_ANNOTATION.to_string(), format!("0e:00:0a:fc:00:{c:02x}")),
                            (PUBLIC_IP_ANNOTATION.to_string(), format!("10.252.0.{}", c + 1)),
                        ]
                        .into(),
                    ),
                    ..ObjectMeta::default()
                },
                spec: Some(NodeSpec {
                    pod_cidrs: Some(vec![format!("10.45.{c}.0/24")]),
                    ..NodeSpec::default()
                }),
                ..Node::default()
            };
            let changed = Instant::now();
            nodes.create(&PostParams::default(), &node).await.expect("node");
            let want = format!("10.45.{c}.0/24");
            loop {
                let dp = Arc::clone(&dp);
                let device = device.clone();
                let peers = tokio::task::spawn_blocking(move || dp.peers(&device))
                    .await
                    .expect("join")
                    .expect("peers");
                if peers.iter().any(|p| p.ranges.iter().any(|r| r.to_string() == want)) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
            latencies.push(changed.elapsed());
        }
        println!("\nrancher-cni-agent (in-process, LinuxDataplane in a netns, sandbox API server)");
        println!(
            "{REMOTE_NODES} remote nodes programmed (start to /readyz, incl. the Node list): {:.1} ms",
            ms(programmed)
        );
        println!(
            "Node created -> its route in the kernel, {CHANGES} changes: median {:.2} ms, p90 {:.2} ms, max {:.2} ms",
            ms(median(&latencies)),
            ms(percentile(&latencies, 0.9)),
            ms(*latencies.iter().max().expect("latencies"))
        );
        token.cancel();
        agent.stopped().await;
    });
}
