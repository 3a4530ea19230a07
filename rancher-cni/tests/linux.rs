//! The Linux dataplane against the conformance battery, in network namespaces the
//! test makes (one standing for the host, two for pods). Needs root and iproute2.

use rancher_cni::{
    dataplane::LinuxDataplane,
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
