//! The plugin's commands over the memory fakes.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::*;
use crate::testing::{MemoryDataplane, MemoryStore};

struct Harness {
    dp: MemoryDataplane,
    store: MemoryStore,
}

impl Harness {
    fn new() -> Self {
        let dp = MemoryDataplane::default();
        dp.add_netns("/run/netns/pod1");
        dp.add_netns("/run/netns/pod2");
        Self {
            dp,
            store: MemoryStore::default(),
        }
    }

    fn call(&self, vars: &[(&str, &str)], conf: &Value) -> Result<Option<String>, CniError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        let env = Env::from_lookup(|k| map.get(k).cloned())?;
        let store = self.store.clone();
        run(&env, conf.to_string().as_bytes(), &self.dp, &move |_| {
            Box::new(store.clone())
        })
    }

    fn add(&self, id: &str, netns: &str, conf: &Value) -> Result<Value, CniError> {
        self.call(
            &[
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", id),
                ("CNI_NETNS", netns),
                ("CNI_IFNAME", "eth0"),
                ("CNI_PATH", "/opt/cni/bin"),
            ],
            conf,
        )
        .map(|out| serde_json::from_str(&out.unwrap_or_default()).unwrap())
    }

    fn del(&self, id: &str, conf: &Value) -> Result<Option<String>, CniError> {
        self.call(
            &[
                ("CNI_COMMAND", "DEL"),
                ("CNI_CONTAINERID", id),
                ("CNI_IFNAME", "eth0"),
            ],
            conf,
        )
    }
}

fn conf() -> Value {
    json!({
        "cniVersion": "1.1.0",
        "name": "rancher",
        "type": "rancher-cni",
        "dns": {"nameservers": ["10.43.0.10"]},
        "ipam": {"ranges": [[{"subnet": "10.42.3.0/24"}], [{"subnet": "fd42:0:0:3::/64"}]]}
    })
}

#[test]
fn add_check_del_dual_stack() {
    let h = Harness::new();
    let result = h.add("c1", "/run/netns/pod1", &conf()).unwrap();
    assert_eq!(result["cniVersion"], "1.1.0");
    let ifaces = result["interfaces"].as_array().unwrap();
    assert_eq!(ifaces.len(), 3);
    assert_eq!(ifaces[0]["name"], "cni0");
    assert_eq!(ifaces[2]["name"], "eth0");
    assert_eq!(ifaces[2]["sandbox"], "/run/netns/pod1");
    assert_eq!(
        ifaces[2]["mtu"], 1450,
        "underlay 1500 minus the VXLAN overhead"
    );
    assert_eq!(result["ips"][0]["address"], "10.42.3.2/24");
    assert_eq!(result["ips"][0]["gateway"], "10.42.3.1");
    assert_eq!(result["ips"][0]["interface"], 2);
    assert_eq!(result["ips"][1]["address"], "fd42:0:0:3::2/64");
    assert_eq!(result["routes"][0]["dst"], "0.0.0.0/0");
    assert_eq!(result["routes"][1]["dst"], "::/0");
    assert_eq!(result["dns"]["nameservers"][0], "10.43.0.10");
    let host_veth = Attachment::new("c1", "eth0").host_veth();
    assert_eq!(
        h.dp.hairpin(&host_veth),
        Some(true),
        "hairpin on by default"
    );

    let mut with_prev = conf();
    with_prev["prevResult"] = result.clone();
    let check = [
        ("CNI_COMMAND", "CHECK"),
        ("CNI_CONTAINERID", "c1"),
        ("CNI_NETNS", "/run/netns/pod1"),
        ("CNI_IFNAME", "eth0"),
    ];
    assert_eq!(h.call(&check, &with_prev), Ok(None));
    // A second ADD of the same attachment is refused and changes nothing.
    let err = h.add("c1", "/run/netns/pod1", &conf()).unwrap_err();
    assert_eq!(err.code, code::INTERFACE_EXISTS, "{err}");
    assert_eq!(h.call(&check, &with_prev), Ok(None));

    assert_eq!(h.del("c1", &conf()), Ok(None));
    assert!(h.dp.interfaces_in("/run/netns/pod1").is_empty());
    assert!(!h.dp.host_links().contains(&host_veth));
    let err = h.call(&check, &with_prev).unwrap_err();
    assert_eq!(err.code, code::CHECK_FAILED);
    // DEL is idempotent, and succeeds for unknown containers.
    assert_eq!(h.del("c1", &conf()), Ok(None));
    assert_eq!(h.del("never-added", &conf()), Ok(None));
}

#[test]
fn old_versions_get_their_shape_and_commands() {
    let h = Harness::new();
    let mut c = conf();
    c["cniVersion"] = json!("0.3.1");
    let result = h.add("c1", "/run/netns/pod1", &c).unwrap();
    assert_eq!(result["ips"][0]["version"], "4");
    let mut with_prev = c.clone();
    with_prev["prevResult"] = result;
    let err = h
        .call(
            &[
                ("CNI_COMMAND", "CHECK"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_NETNS", "/run/netns/pod1"),
                ("CNI_IFNAME", "eth0"),
            ],
            &with_prev,
        )
        .unwrap_err();
    assert_eq!(err.code, code::INCOMPATIBLE_VERSION);
    let err = h.call(&[("CNI_COMMAND", "STATUS")], &c).unwrap_err();
    assert_eq!(err.code, code::INCOMPATIBLE_VERSION);
}

#[test]
fn failures_leave_nothing_half_made() {
    let h = Harness::new();
    h.dp.fail_next("configure_pod");
    let err = h.add("c1", "/run/netns/pod1", &conf()).unwrap_err();
    assert_eq!(err.code, code::DATAPLANE);
    assert!(h.dp.interfaces_in("/run/netns/pod1").is_empty());
    assert_eq!(h.dp.host_links(), vec!["cni0".to_string()]);
    let mut tx = h.store.lock("rancher").unwrap();
    assert!(tx.reservations().unwrap().is_empty());
    drop(tx);
    // A namespace that does not exist: code 3, naming CNI_NETNS.
    let err = h.add("c2", "/run/netns/missing", &conf()).unwrap_err();
    assert_eq!(err.code, code::UNKNOWN_CONTAINER);
    assert!(err.msg.starts_with("CNI_NETNS"), "{}", err.msg);
}

#[test]
fn exhaustion_is_clear_and_leaked_addresses_come_back() {
    let h = Harness::new();
    let c = json!({
        "cniVersion": "1.0.0",
        "name": "tiny",
        "type": "rancher-cni",
        "ipam": {"subnet": "10.42.3.0/24", "rangeEnd": "10.42.3.2"}
    });
    h.add("c1", "/run/netns/pod1", &c).unwrap();
    let err = h.add("c2", "/run/netns/pod2", &c).unwrap_err();
    assert_eq!(err.code, code::EXHAUSTED);
    assert!(err.msg.contains("no free IPv4 address"), "{}", err.msg);
    assert!(h.dp.interfaces_in("/run/netns/pod2").is_empty());
    // The runtime lost pod1 without calling DEL: its namespace (and with it the
    // veth pair) is gone. The next ADD takes the address back.
    h.dp.remove_netns("/run/netns/pod1");
    let result = h.add("c2", "/run/netns/pod2", &c).unwrap();
    assert_eq!(result["ips"][0]["address"], "10.42.3.2/24");
}

#[test]
fn gc_releases_what_is_not_valid() {
    let h = Harness::new();
    h.add("c1", "/run/netns/pod1", &conf()).unwrap();
    h.add("c2", "/run/netns/pod2", &conf()).unwrap();
    let mut c = conf();
    c["cni.dev/valid-attachments"] = json!([{"containerID": "c2", "ifname": "eth0"}]);
    assert_eq!(h.call(&[("CNI_COMMAND", "GC")], &c), Ok(None));
    let mut tx = h.store.lock("rancher").unwrap();
    let left: Vec<_> = tx.reservations().unwrap();
    assert!(left.iter().all(|r| r.attachment.container_id == "c2"));
    assert_eq!(left.len(), 2);
    drop(tx);
    assert!(
        !h.dp
            .host_links()
            .contains(&Attachment::new("c1", "eth0").host_veth())
    );
    assert!(
        h.dp.host_links()
            .contains(&Attachment::new("c2", "eth0").host_veth())
    );
    // Without the list, GC refuses rather than releasing everything.
    let err = h.call(&[("CNI_COMMAND", "GC")], &conf()).unwrap_err();
    assert_eq!(err.code, code::INVALID_CONFIG);
}

#[test]
fn version_status_and_bad_input() {
    let h = Harness::new();
    let out = h
        .call(&[("CNI_COMMAND", "VERSION")], &json!({}))
        .unwrap()
        .unwrap();
    let v: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        v["supportedVersions"],
        json!(["0.3.1", "0.4.0", "1.0.0", "1.1.0"])
    );
    assert_eq!(h.call(&[("CNI_COMMAND", "STATUS")], &conf()), Ok(None));
    let mut c = conf();
    c["cniVersion"] = json!("9.0.0");
    let err = h.add("c1", "/run/netns/pod1", &c).unwrap_err();
    assert_eq!(err.code, code::INCOMPATIBLE_VERSION);
    let mut c = conf();
    c["ipam"]["ranges"][0][0]["subnet"] = json!("fd00::/64");
    c["ipam"]["ranges"][0][0]["gateway"] = json!("10.0.0.1");
    let err = h.add("c1", "/run/netns/pod1", &c).unwrap_err();
    assert_eq!(err.code, code::INVALID_CONFIG);
    assert!(err.msg.contains("ipam.ranges[0][0].gateway"), "{}", err.msg);
    let err = h
        .call(
            &[
                ("CNI_COMMAND", "ADD"),
                ("CNI_CONTAINERID", "c1"),
                ("CNI_NETNS", "/run/netns/pod1"),
                ("CNI_IFNAME", "eth0"),
                ("CNI_ARGS", "K8S_POD_NAME=x;$(reboot)=1"),
            ],
            &conf(),
        )
        .unwrap_err();
    assert_eq!(err.code, code::INVALID_ENV);
    assert!(h.dp.interfaces_in("/run/netns/pod1").is_empty());
}

#[test]
fn ip_masq_and_promisc() {
    let h = Harness::new();
    let mut c = conf();
    c["ipMasq"] = json!(true);
    c["clusterNetworks"] = json!(["10.42.0.0/16", "fd42::/48"]);
    c["promiscMode"] = json!(true);
    c["mtu"] = json!(1400);
    let result = h.add("c1", "/run/netns/pod1", &c).unwrap();
    assert_eq!(result["interfaces"][2]["mtu"], 1400);
    let masq = h.dp.masquerades();
    assert_eq!(masq.len(), 1);
    assert_eq!(masq[0].1.len(), 2);
    assert_eq!(
        h.dp.hairpin(&Attachment::new("c1", "eth0").host_veth()),
        Some(false)
    );
}
