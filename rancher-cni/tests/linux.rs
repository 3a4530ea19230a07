//! The Linux dataplane against the conformance battery, in network namespaces the
//! test makes (one standing for the host, two for pods). Needs root and iproute2.

use rancher_cni::{
    dataplane::{BridgeSpec, Dataplane, LinuxDataplane, PodNetwork, VethSpec},
    model::Attachment,
    testing::{dataplane_conformance, netns::TestNetns},
};

#[test]
fn linux_dataplane_conforms() {
    let host = TestNetns::new("h").expect("host netns");
    let pod_a = TestNetns::new("a").expect("pod netns");
    let pod_b = TestNetns::new("b").expect("pod netns");
    // An uplink with a default route, for `underlay(None)` and the VXLAN device.
    host.ip(&["link", "add", "ul0", "type", "veth", "peer", "name", "ul1"])
        .expect("veth");
    host.ip(&["link", "set", "ul1", "up"]).expect("up");
    host.ip(&["addr", "add", "10.250.200.2/24", "dev", "ul0"])
        .expect("addr");
    host.ip(&["link", "set", "ul0", "up"]).expect("up");
    host.ip(&["route", "add", "default", "via", "10.250.200.1"])
        .expect("route");
    host.run(|| {
        let dp = LinuxDataplane::new().expect("dataplane");
        dataplane_conformance(&dp, pod_a.path(), pod_b.path(), "cnitest0", "vtest1042");
    })
    .expect("run in the host namespace");
    // The battery removed what it made; the pods are empty again.
    let links = pod_a.ip(&["-o", "link"]).expect("links");
    assert!(!String::from_utf8_lossy(&links.stdout).contains("eth0"));
}

/// `ip -d -j link show dev NAME` in `ns`, as JSON.
fn link_json(ns: &TestNetns, name: &str) -> serde_json::Value {
    let out = ns
        .ip(&["-d", "-j", "link", "show", "dev", name])
        .expect("ip link show");
    let mut all: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).expect("ip -j");
    all.pop().expect("one link")
}

/// What `create_veth` reports is what the kernel has: the MACs the result carries,
/// both ends up, the host end on the bridge with hairpin on, the MTU, and the
/// container end configured by `configure_pod`.
#[test]
fn linux_veth_is_what_it_reports() {
    let host = TestNetns::new("h").expect("host netns");
    let pod = TestNetns::new("p").expect("pod netns");
    let att = Attachment::new("linux-veth-report", "eth0");
    let spec = VethSpec {
        netns: pod.path().to_string(),
        ifname: "eth0".into(),
        host_veth: att.host_veth(),
        bridge: "cnitest0".into(),
        mtu: 1400,
        hairpin: true,
    };
    let made = host
        .run(|| {
            let dp = LinuxDataplane::new().expect("dataplane");
            dp.ensure_bridge(&BridgeSpec {
                name: "cnitest0".into(),
                mtu: 1400,
                addresses: vec!["10.250.79.1/24".parse().expect("cidr")],
                promisc: false,
            })
            .expect("bridge");
            let made = dp.create_veth(&spec).expect("create_veth");
            dp.configure_pod(&PodNetwork {
                netns: pod.path().to_string(),
                ifname: "eth0".into(),
                addresses: vec!["10.250.79.2/24".parse().expect("cidr")],
                routes: vec![(
                    "0.0.0.0/0".parse().expect("cidr"),
                    "10.250.79.1".parse().expect("ip"),
                )],
            })
            .expect("configure_pod");
            made
        })
        .expect("in the host namespace");
    let host_end = link_json(&host, &spec.host_veth);
    let inner = link_json(&pod, "eth0");
    assert_eq!(host_end["address"], made.host_mac.to_string());
    assert_eq!(inner["address"], made.container_mac.to_string());
    for link in [&host_end, &inner] {
        assert!(
            link["flags"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x == "UP")),
            "{link} is up"
        );
        assert_eq!(link["mtu"], 1400);
    }
    assert_eq!(host_end["master"], "cnitest0");
    assert_eq!(host_end["linkinfo"]["info_slave_data"]["hairpin"], true);
    let addrs = pod
        .ip(&["-4", "-o", "addr", "show", "dev", "eth0"])
        .expect("addr");
    assert!(String::from_utf8_lossy(&addrs.stdout).contains("10.250.79.2/24"));
    let routes = pod.ip(&["route", "show", "default"]).expect("routes");
    assert!(String::from_utf8_lossy(&routes.stdout).contains("via 10.250.79.1 dev eth0"));
}
