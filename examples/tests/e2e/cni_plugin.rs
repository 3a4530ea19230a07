//! The `rancher-cni` plugin binary run exactly as a container runtime runs it
//! (environment + stdin, inside the host's network namespace), on "hosts" and
//! "pods" that are network namespaces made by the test.

use std::{
    collections::HashSet,
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream},
    path::Path,
    process::{Command, Stdio},
    time::Duration,
};

use rancher_cni::testing::netns::TestNetns;
use serde_json::{Value, json};

pub(crate) const PLUGIN: &str = env!("CARGO_BIN_EXE_rancher-cni");

/// One plugin run's outcome: exit status and the JSON it printed (Null if none).
#[derive(Debug)]
pub(crate) struct Outcome {
    pub(crate) ok: bool,
    pub(crate) out: Value,
}

impl Outcome {
    pub(crate) fn code(&self) -> u64 {
        self.out["code"].as_u64().unwrap_or(0)
    }

    pub(crate) fn msg(&self) -> &str {
        self.out["msg"].as_str().unwrap_or_default()
    }
}

/// Starts the plugin inside `host` with `vars` as its whole environment.
pub(crate) fn spawn_plugin(
    host: &TestNetns,
    binary: &str,
    vars: &[(&str, &str)],
) -> std::process::Child {
    host.run(|| {
        Command::new(binary)
            .env_clear()
            .envs(vars.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the plugin")
    })
    .expect("in the host namespace")
}

/// Feeds `stdin` to a started plugin and reads its answer.
pub(crate) fn finish(mut child: std::process::Child, stdin: &[u8]) -> Outcome {
    if let Some(mut input) = child.stdin.take() {
        let _ = input.write_all(stdin);
    }
    let out = child.wait_with_output().expect("plugin output");
    let text = String::from_utf8_lossy(&out.stdout);
    Outcome {
        ok: out.status.success(),
        out: if text.trim().is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("plugin printed {text:?}: {e}"))
        },
    }
}

/// Runs `binary` (`rancher-cni` or a reference plugin) for `command`.
pub(crate) fn call_binary(
    host: &TestNetns,
    binary: &str,
    command: &str,
    id: &str,
    netns: &str,
    conf: &Value,
) -> Outcome {
    let vars = [
        ("CNI_COMMAND", command),
        ("CNI_CONTAINERID", id),
        ("CNI_NETNS", netns),
        ("CNI_IFNAME", "eth0"),
        ("CNI_PATH", "/usr/lib/cni:/opt/cni/bin"),
        ("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
    ];
    finish(
        spawn_plugin(host, binary, &vars),
        conf.to_string().as_bytes(),
    )
}

pub(crate) fn call(
    host: &TestNetns,
    command: &str,
    id: &str,
    netns: &str,
    conf: &Value,
) -> Outcome {
    call_binary(host, PLUGIN, command, id, netns, conf)
}

/// A network configuration for `subnet` with its reservations under `data_dir`.
pub(crate) fn conf(name: &str, subnet: &str, data_dir: &Path) -> Value {
    json!({
        "cniVersion": "1.1.0",
        "name": name,
        "type": "rancher-cni",
        "ipam": {"dataDir": data_dir, "ranges": [[{"subnet": subnet}]]}
    })
}

/// A TCP echo listener on `addr` inside `ns`, answering one connection per thread.
pub(crate) fn echo(ns: &TestNetns, addr: SocketAddr) -> SocketAddr {
    let listener = ns
        .run(|| TcpListener::bind(addr))
        .expect("in the namespace")
        .expect("bind the echo listener");
    let local = listener.local_addr().expect("local addr");
    std::thread::spawn(move || {
        for mut stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut buf = [0u8; 256];
                if let Ok(n) = stream.read(&mut buf) {
                    let _ = stream.write_all(&buf[..n]);
                }
            });
        }
    });
    local
}

/// Connects from inside `ns` to `to`, sends a line and expects it back.
pub(crate) fn tcp_round_trip(ns: &TestNetns, to: SocketAddr) -> Result<(), String> {
    ns.run(|| {
        let mut s = TcpStream::connect_timeout(&to, Duration::from_secs(5))
            .map_err(|e| format!("connect to {to}: {e}"))?;
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .map_err(|e| e.to_string())?;
        s.write_all(b"hello rancher\n").map_err(|e| e.to_string())?;
        let mut buf = [0u8; 64];
        let n = s
            .read(&mut buf)
            .map_err(|e| format!("read from {to}: {e}"))?;
        if &buf[..n] == b"hello rancher\n" {
            Ok(())
        } else {
            Err(format!("{to} answered {:?}", &buf[..n]))
        }
    })
    .map_err(|e| e.to_string())?
}

/// The host veths (`rc…`) in `host`.
pub(crate) fn host_veths(host: &TestNetns) -> Vec<String> {
    let out = host.ip(&["-o", "link", "show"]).expect("ip link");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split(": ").nth(1))
        .map(|n| n.split('@').next().unwrap_or(n).to_string())
        .filter(|n| rancher_cni::model::is_host_veth(n))
        .collect()
}

/// The reserved addresses in `dir` (files named like addresses).
pub(crate) fn reservations(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
                .collect()
        })
        .unwrap_or_default()
}

fn addr_of(result: &Value) -> std::net::IpAddr {
    let cidr = result["ips"][0]["address"].as_str().expect("an address");
    cidr.split('/')
        .next()
        .unwrap_or_default()
        .parse()
        .expect("an IP")
}

#[test]
fn plugin_attaches_pods_and_detaches_them_completely() {
    let host = TestNetns::new("h").expect("host");
    let pod1 = TestNetns::new("p").expect("pod");
    let pod2 = TestNetns::new("p").expect("pod");
    let data = tempfile::tempdir().expect("tempdir");
    let c = conf("podnet", "10.250.31.0/24", data.path());

    let r1 = call(&host, "ADD", "ctr-one", pod1.path(), &c);
    assert!(r1.ok, "{:?}", r1.out);
    let r2 = call(&host, "ADD", "ctr-two", pod2.path(), &c);
    assert!(r2.ok, "{:?}", r2.out);
    assert_eq!(r1.out["cniVersion"], "1.1.0");
    assert_eq!(r1.out["interfaces"][0]["name"], "cni0");
    assert_eq!(r1.out["interfaces"][2]["sandbox"], pod1.path());
    assert_eq!(r1.out["ips"][0]["gateway"], "10.250.31.1");
    assert_eq!(r1.out["ips"][0]["interface"], 2);
    assert_eq!(r1.out["routes"][0]["dst"], "0.0.0.0/0");

    // Pod to pod on one host, pod to the host (the bridge's gateway address).
    let to_pod2 = echo(&pod2, SocketAddr::new(addr_of(&r2.out), 0));
    tcp_round_trip(&pod1, to_pod2).expect("pod1 -> pod2");
    let to_host = echo(&host, "10.250.31.1:0".parse().expect("addr"));
    tcp_round_trip(&pod1, to_host).expect("pod1 -> host");
    // Hairpin on the bridge port, so a pod reaches itself through a Service.
    let veth = r1.out["interfaces"][1]["name"].as_str().expect("host veth");
    let detail = host.ip(&["-d", "link", "show", veth]).expect("ip -d link");
    assert!(
        String::from_utf8_lossy(&detail.stdout).contains("hairpin on"),
        "{}",
        String::from_utf8_lossy(&detail.stdout)
    );

    let mut with_prev = c.clone();
    with_prev["prevResult"] = r1.out.clone();
    let checked = call(&host, "CHECK", "ctr-one", pod1.path(), &with_prev);
    assert!(checked.ok, "{:?}", checked.out);

    for (id, pod) in [("ctr-one", &pod1), ("ctr-two", &pod2)] {
        let del = call(&host, "DEL", id, pod.path(), &c);
        assert!(del.ok && del.out.is_null(), "{:?}", del.out);
    }
    assert!(host_veths(&host).is_empty(), "{:?}", host_veths(&host));
    assert!(reservations(&data.path().join("podnet")).is_empty());
    let links = pod1.ip(&["-o", "link"]).expect("links");
    assert!(!String::from_utf8_lossy(&links.stdout).contains("eth0"));
    // Again, and without a namespace: still success.
    assert!(call(&host, "DEL", "ctr-one", pod1.path(), &c).ok);
    assert!(call(&host, "DEL", "ctr-one", "", &c).ok);
    // CHECK now reports what is missing.
    let checked = call(&host, "CHECK", "ctr-one", pod1.path(), &with_prev);
    assert!(!checked.ok);
}

#[test]
fn plugin_dual_stack_pods_talk_over_both_families_and_masquerade() {
    let host = TestNetns::new("h").expect("host");
    let pod1 = TestNetns::new("p").expect("pod");
    let pod2 = TestNetns::new("p").expect("pod");
    let data = tempfile::tempdir().expect("tempdir");
    let mut c = conf("dual", "10.250.35.0/24", data.path());
    c["ipam"]["ranges"] = json!([[{"subnet": "10.250.35.0/24"}], [{"subnet": "fd42:250:35::/64"}]]);
    c["ipMasq"] = json!(true);
    c["clusterNetworks"] = json!(["10.250.0.0/16", "fd42:250::/32"]);
    let r1 = call(&host, "ADD", "dual-one", pod1.path(), &c);
    assert!(r1.ok, "{:?}", r1.out);
    let r2 = call(&host, "ADD", "dual-two", pod2.path(), &c);
    assert!(r2.ok, "{:?}", r2.out);
    assert_eq!(r2.out["ips"][1]["gateway"], "fd42:250:35::1");
    let v6: std::net::IpAddr = r2.out["ips"][1]["address"]
        .as_str()
        .and_then(|a| a.split('/').next())
        .and_then(|a| a.parse().ok())
        .expect("an IPv6 address");
    let to_v6 = echo(&pod2, SocketAddr::new(v6, 0));
    tcp_round_trip(&pod1, to_v6).expect("pod1 -> pod2 over IPv6");
    let to_v4 = echo(&pod2, SocketAddr::new(addr_of(&r2.out), 0));
    tcp_round_trip(&pod1, to_v4).expect("pod1 -> pod2 over IPv4");
    // ipMasq: the host's nat table sends the pods' traffic to the masquerade chain,
    // which returns for the cluster networks.
    let nat = host
        .run(|| Command::new("iptables").args(["-t", "nat", "-S"]).output())
        .expect("in the host")
        .expect("iptables (Debian package iptables) must be installed");
    let nat = String::from_utf8_lossy(&nat.stdout);
    assert!(
        nat.contains("-A POSTROUTING -s 10.250.35.0/24") && nat.contains("RANCHER-CNI-MASQ"),
        "{nat}"
    );
    assert!(
        nat.contains("-A RANCHER-CNI-MASQ -d 10.250.0.0/16 -j RETURN"),
        "{nat}"
    );
    for (id, pod) in [("dual-one", &pod1), ("dual-two", &pod2)] {
        assert!(call(&host, "DEL", id, pod.path(), &c).ok);
    }
    assert!(reservations(&data.path().join("dual")).is_empty());
}

#[test]
fn plugin_bad_input_gets_the_spec_codes_and_leaves_nothing() {
    let host = TestNetns::new("h").expect("host");
    let pod = TestNetns::new("p").expect("pod");
    let data = tempfile::tempdir().expect("tempdir");
    let c = conf("badnet", "10.250.32.0/24", data.path());
    let path = pod.path();

    let truncated = finish(
        spawn_plugin(
            &host,
            PLUGIN,
            &[
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_NETNS", path),
                ("CNI_IFNAME", "eth0"),
            ],
        ),
        br#"{"cniVersion":"1.1.0","name":"#,
    );
    assert_eq!(truncated.code(), 6, "{:?}", truncated.out);

    let mut v = c.clone();
    v["cniVersion"] = json!("0.2.0");
    let r = call(&host, "ADD", "c1", path, &v);
    assert_eq!(r.code(), 1, "{:?}", r.out);
    assert!(r.msg().contains("1.1.0"), "{}", r.msg());

    let missing = finish(
        spawn_plugin(
            &host,
            PLUGIN,
            &[("CNI_COMMAND", "ADD"), ("CNI_IFNAME", "eth0")],
        ),
        c.to_string().as_bytes(),
    );
    assert_eq!(missing.code(), 4);
    assert!(
        missing.msg().contains("CNI_CONTAINERID, CNI_NETNS"),
        "{}",
        missing.msg()
    );

    let r = call(&host, "ADD", "c1", "/run/netns/rcni-does-not-exist", &c);
    assert_eq!(r.code(), 3, "{:?}", r.out);
    assert!(r.msg().contains("CNI_NETNS"));

    let mut v = c.clone();
    v["ipam"]["ranges"] = json!([[{"subnet": "10.250.32.0/24"}, {"subnet": "fd42::/64"}]]);
    let r = call(&host, "ADD", "c1", path, &v);
    assert_eq!(r.code(), 7, "{:?}", r.out);
    assert!(r.msg().contains("ipam.ranges[0][1].subnet"), "{}", r.msg());

    let hostile = finish(
        spawn_plugin(
            &host,
            PLUGIN,
            &[
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_NETNS", path),
                ("CNI_IFNAME", "eth0"),
                ("CNI_ARGS", "K8S_POD_NAME=a;../../etc/passwd=$(id)"),
            ],
        ),
        c.to_string().as_bytes(),
    );
    assert_eq!(hostile.code(), 4, "{:?}", hostile.out);
    assert!(hostile.msg().contains("CNI_ARGS"));

    // The interface name is taken in the pod: refused, nothing left on the host.
    pod.ip(&[
        "link", "add", "eth0", "type", "veth", "peer", "name", "other0",
    ])
    .expect("occupy eth0");
    let r = call(&host, "ADD", "c1", path, &c);
    assert!(!r.ok);
    assert!(r.msg().contains("eth0"), "{}", r.msg());
    assert!(host_veths(&host).is_empty());
    assert!(reservations(&data.path().join("badnet")).is_empty());
    // The runtime DELs after a failed ADD: that must not touch the pod's own eth0.
    assert!(call(&host, "DEL", "c1", path, &c).ok);
    pod.ip(&["link", "show", "eth0"]).expect("eth0 still there");

    let status = call(&host, "STATUS", "", "", &c);
    assert!(status.ok, "{:?}", status.out);
    let version = call(&host, "VERSION", "", "", &json!({"cniVersion": "1.0.0"}));
    assert_eq!(
        version.out["supportedVersions"],
        json!(["0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    );
}

#[test]
fn plugin_200_concurrent_adds_never_share_an_address() {
    const PODS: usize = 200;
    let host = TestNetns::new("h").expect("host");
    let pods: Vec<TestNetns> = (0..PODS)
        .map(|_| TestNetns::new("c").expect("pod"))
        .collect();
    let data = tempfile::tempdir().expect("tempdir");
    // A /24 whose range holds 150 addresses: 150 ADDs succeed, 50 fail cleanly.
    let mut c = conf("busy", "10.250.33.0/24", data.path());
    c["ipam"]["ranges"][0][0]["rangeEnd"] = json!("10.250.33.151");
    let stdin = c.to_string();
    let ids: Vec<String> = (0..PODS).map(|i| format!("ctr{i}")).collect();
    let children: Vec<_> = pods
        .iter()
        .zip(&ids)
        .map(|(pod, id)| {
            spawn_plugin(
                &host,
                PLUGIN,
                &[
                    ("CNI_COMMAND", "ADD"),
                    ("CNI_CONTAINERID", id),
                    ("CNI_NETNS", pod.path()),
                    ("CNI_IFNAME", "eth0"),
                ],
            )
        })
        .collect();
    let outcomes: Vec<Outcome> = children
        .into_iter()
        .map(|child| finish(child, stdin.as_bytes()))
        .collect();
    let addrs: Vec<std::net::IpAddr> = outcomes
        .iter()
        .filter(|o| o.ok)
        .map(|o| addr_of(&o.out))
        .collect();
    let unique: HashSet<_> = addrs.iter().collect();
    assert_eq!(addrs.len(), 150, "successes");
    assert_eq!(unique.len(), 150, "no address twice");
    for (o, pod) in outcomes.iter().zip(&pods) {
        if !o.ok {
            assert_eq!(o.code(), 101, "{:?}", o.out);
            let links = pod.ip(&["-o", "link"]).expect("links");
            assert!(!String::from_utf8_lossy(&links.stdout).contains("eth0"));
        }
    }
    assert_eq!(host_veths(&host).len(), 150);
    assert_eq!(reservations(&data.path().join("busy")).len(), 150);
    for (id, pod) in ids.iter().zip(&pods) {
        let del = call(&host, "DEL", id, pod.path(), &c);
        assert!(del.ok, "{:?}", del.out);
    }
    assert!(host_veths(&host).is_empty());
    assert!(reservations(&data.path().join("busy")).is_empty());
}

#[test]
fn plugin_killed_mid_add_leaves_nothing_del_or_add_cannot_clean() {
    let host = TestNetns::new("h").expect("host");
    let pod = TestNetns::new("p").expect("pod");
    let data = tempfile::tempdir().expect("tempdir");
    let c = conf("killed", "10.250.34.0/24", data.path());
    let stdin = c.to_string();
    // Kill ADDs at growing delays; whatever state each leaves, DEL cleans it and a
    // new ADD of the same attachment succeeds.
    for delay_us in [0u64, 200, 500, 1000, 2000, 4000] {
        let mut child = spawn_plugin(
            &host,
            PLUGIN,
            &[
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "victim"),
                ("CNI_NETNS", pod.path()),
                ("CNI_IFNAME", "eth0"),
            ],
        );
        if let Some(mut input) = child.stdin.take() {
            let _ = input.write_all(stdin.as_bytes());
        }
        // The kill point, not a wait for a condition (and no async runtime here).
        #[expect(
            clippy::disallowed_methods,
            reason = "a kill point in a synchronous test"
        )]
        std::thread::sleep(Duration::from_micros(delay_us));
        let _ = child.kill();
        let _ = child.wait();
        let del = call(&host, "DEL", "victim", pod.path(), &c);
        assert!(del.ok, "DEL after a kill at {delay_us} µs: {:?}", del.out);
        assert!(
            host_veths(&host).is_empty(),
            "after a kill at {delay_us} µs"
        );
        assert!(reservations(&data.path().join("killed")).is_empty());
    }
    let again = call(&host, "ADD", "victim", pod.path(), &c);
    assert!(again.ok, "{:?}", again.out);
    // GC with no valid attachment cleans what a runtime forgot to DEL.
    let mut gc = c.clone();
    gc["cni.dev/valid-attachments"] = json!([]);
    let r = call(&host, "GC", "", "", &gc);
    assert!(r.ok, "{:?}", r.out);
    assert!(host_veths(&host).is_empty());
    assert!(reservations(&data.path().join("killed")).is_empty());
}
