//! Test support: in-memory fakes of [`IpStore`] and [`Dataplane`], and conformance
//! batteries any store or dataplane (ours or yours) can run.
//!
//! ```
//! use rancher_cni::testing::{MemoryStore, ip_store_conformance};
//! ip_store_conformance(&MemoryStore::default());
//! ```

pub mod netns;

use std::{
    collections::{BTreeMap, BTreeSet, HashSet},
    net::IpAddr,
    sync::Arc,
};

use ipnet::IpNet;
use parking_lot::{Mutex, MutexGuard};

use crate::{
    dataplane::{
        BridgeInfo, BridgeSpec, Dataplane, Error as DpError, PodNetwork, Result as DpResult,
        Underlay, VethInfo, VethSpec, VxlanSpec,
    },
    ipam::{self, IpStore, Locked, Result},
    model::{Attachment, MacAddr, Peer, Range, RangeSet, Reservation},
};

#[derive(Default, Debug)]
struct Network {
    reservations: BTreeMap<IpAddr, Attachment>,
    last: BTreeMap<usize, IpAddr>,
}

/// An [`IpStore`] in memory: one mutex for every network.
#[derive(Default, Debug, Clone)]
pub struct MemoryStore {
    networks: Arc<Mutex<BTreeMap<String, Network>>>,
}

struct MemoryLocked<'a> {
    guard: MutexGuard<'a, BTreeMap<String, Network>>,
    network: String,
}

impl MemoryLocked<'_> {
    fn net(&mut self) -> &mut Network {
        self.guard.entry(self.network.clone()).or_default()
    }
}

impl IpStore for MemoryStore {
    fn lock(&self, network: &str) -> Result<Box<dyn Locked + '_>> {
        Ok(Box::new(MemoryLocked {
            guard: self.networks.lock(),
            network: network.to_string(),
        }))
    }
}

impl Locked for MemoryLocked<'_> {
    fn reservations(&mut self) -> Result<Vec<Reservation>> {
        Ok(self
            .net()
            .reservations
            .iter()
            .map(|(addr, attachment)| Reservation {
                addr: *addr,
                attachment: attachment.clone(),
            })
            .collect())
    }

    fn reserve(&mut self, reservation: &Reservation) -> Result<bool> {
        let net = self.net();
        if net.reservations.contains_key(&reservation.addr) {
            return Ok(false);
        }
        net.reservations
            .insert(reservation.addr, reservation.attachment.clone());
        Ok(true)
    }

    fn release(&mut self, addr: IpAddr) -> Result<()> {
        self.net().reservations.remove(&addr);
        Ok(())
    }

    fn last_reserved(&mut self, set: usize) -> Result<Option<IpAddr>> {
        Ok(self.net().last.get(&set).copied())
    }

    fn set_last_reserved(&mut self, set: usize, addr: IpAddr) -> Result<()> {
        self.net().last.insert(set, addr);
        Ok(())
    }
}

/// Checks the [`IpStore`] contract: reservations are exclusive, releases are
/// idempotent, networks are independent, "last reserved" survives a new lock, and
/// threads allocating at once never share an address. Panics on the first breach.
pub fn ip_store_conformance(store: &dyn IpStore) {
    let a: IpAddr = "10.250.0.2"
        .parse()
        .unwrap_or(IpAddr::from([10, 250, 0, 2]));
    let holder = Reservation {
        addr: a,
        attachment: Attachment::new("conformance-a", "eth0"),
    };
    let other = Reservation {
        addr: a,
        attachment: Attachment::new("conformance-b", "eth0"),
    };
    {
        let mut tx = store.lock("conformance-1").expect("lock");
        for r in tx.reservations().expect("list") {
            tx.release(r.addr).expect("clean start");
        }
        assert!(
            tx.reserve(&holder).expect("reserve"),
            "a free address is reservable"
        );
        assert!(
            !tx.reserve(&other).expect("reserve"),
            "a held address is refused"
        );
        assert_eq!(tx.reservations().expect("list"), vec![holder.clone()]);
        tx.set_last_reserved(0, a).expect("set last");
    }
    {
        let mut tx = store.lock("conformance-2").expect("lock");
        for r in tx.reservations().expect("list") {
            tx.release(r.addr).expect("clean start");
        }
        assert!(
            tx.reserve(&other).expect("reserve"),
            "networks are independent"
        );
        tx.release(a).expect("release");
        tx.release(a).expect("a second release is Ok");
    }
    {
        let mut tx = store.lock("conformance-1").expect("lock");
        assert_eq!(
            tx.last_reserved(0).expect("last"),
            Some(a),
            "last reserved is kept"
        );
        assert_eq!(tx.last_reserved(7).expect("last"), None);
        tx.release(a).expect("release");
        assert!(tx.reservations().expect("list").is_empty());
    }
    // Concurrency: 12 threads × 4 allocations into 40 addresses.
    let sets = [RangeSet {
        ranges: vec![
            Range::new(
                "10.250.0.0/24".parse().unwrap_or(IpNet::from(a)),
                None,
                "10.250.0.41".parse().ok(),
                None,
            )
            .expect("range"),
        ],
    }];
    let results: Vec<Vec<IpAddr>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..12)
            .map(|t| {
                let sets = &sets;
                scope.spawn(move || {
                    let mut got = Vec::new();
                    for i in 0..4 {
                        let mut tx = store.lock("conformance-3").expect("lock");
                        let att = Attachment::new(format!("c{t}-{i}"), "eth0");
                        if let Ok(a) = ipam::allocate(&mut *tx, sets, &att, &[], &|_| true) {
                            got.push(a[0].addr);
                        }
                    }
                    got
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    let all: Vec<IpAddr> = results.into_iter().flatten().collect();
    let unique: HashSet<IpAddr> = all.iter().copied().collect();
    assert_eq!(all.len(), 40, "every address handed out once");
    assert_eq!(unique.len(), all.len(), "no address handed out twice");
    let mut tx = store.lock("conformance-3").expect("lock");
    let released = ipam::gc(&mut *tx, &|_| false).expect("gc");
    assert_eq!(released.len(), 40);
}

#[derive(Clone, Debug, Default)]
struct FakeLink {
    mac: MacAddr,
    mtu: u32,
    master: Option<String>,
    hairpin: bool,
    peer: Option<(String, String)>,
    addresses: Vec<IpNet>,
}

#[derive(Debug, Default)]
struct FakeState {
    host: BTreeMap<String, FakeLink>,
    namespaces: BTreeMap<String, BTreeMap<String, FakeLink>>,
    routes: BTreeMap<(String, String), Vec<(IpNet, IpAddr)>>,
    peers: BTreeMap<String, BTreeSet<Peer>>,
    masquerade: Vec<(Vec<IpNet>, Vec<IpNet>)>,
    next_mac: u8,
    fail: Option<String>,
}

impl FakeState {
    fn mac(&mut self) -> MacAddr {
        self.next_mac = self.next_mac.wrapping_add(1);
        MacAddr([0x02, 0, 0, 0, 0, self.next_mac])
    }

    fn check_fail(&mut self, op: &str) -> DpResult<()> {
        match &self.fail {
            Some(f) if f == op => {
                self.fail = None;
                Err(DpError::Unsupported(format!("{op} failed (injected)")))
            }
            _ => Ok(()),
        }
    }
}

/// A [`Dataplane`] in memory. Network namespaces exist once
/// [`add_netns`](MemoryDataplane::add_netns) made them.
#[derive(Clone, Debug, Default)]
pub struct MemoryDataplane {
    state: Arc<Mutex<FakeState>>,
}

impl MemoryDataplane {
    /// A fake network namespace at `path`.
    pub fn add_netns(&self, path: &str) {
        self.state
            .lock()
            .namespaces
            .entry(path.to_string())
            .or_default();
    }

    /// Removes a fake network namespace and the veth pairs into it.
    pub fn remove_netns(&self, path: &str) {
        let mut s = self.state.lock();
        s.namespaces.remove(path);
        s.host
            .retain(|_, l| l.peer.as_ref().is_none_or(|(ns, _)| ns != path));
    }

    /// Makes the next call of `op` (`create_veth`, `configure_pod`, ...) fail.
    pub fn fail_next(&self, op: &str) {
        self.state.lock().fail = Some(op.to_string());
    }

    /// The interfaces in `netns`.
    pub fn interfaces_in(&self, netns: &str) -> Vec<String> {
        self.state
            .lock()
            .namespaces
            .get(netns)
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// The addresses of `ifname` in `netns`.
    pub fn addresses_in(&self, netns: &str, ifname: &str) -> Vec<IpNet> {
        self.state
            .lock()
            .namespaces
            .get(netns)
            .and_then(|m| m.get(ifname))
            .map(|l| l.addresses.clone())
            .unwrap_or_default()
    }

    /// The host's interfaces.
    pub fn host_links(&self) -> Vec<String> {
        self.state.lock().host.keys().cloned().collect()
    }

    /// Whether the host veth `name` is in hairpin mode (`None`: no such link).
    pub fn hairpin(&self, name: &str) -> Option<bool> {
        self.state.lock().host.get(name).map(|l| l.hairpin)
    }

    /// The masquerade rules asked for.
    pub fn masquerades(&self) -> Vec<(Vec<IpNet>, Vec<IpNet>)> {
        self.state.lock().masquerade.clone()
    }
}

impl Dataplane for MemoryDataplane {
    fn ensure_bridge(&self, spec: &BridgeSpec) -> DpResult<BridgeInfo> {
        let mut s = self.state.lock();
        s.check_fail("ensure_bridge")?;
        if !s.host.contains_key(&spec.name) {
            let mac = s.mac();
            s.host.insert(
                spec.name.clone(),
                FakeLink {
                    mac,
                    mtu: spec.mtu,
                    ..FakeLink::default()
                },
            );
        }
        let link = s
            .host
            .get_mut(&spec.name)
            .ok_or_else(|| DpError::Missing(format!("bridge {} vanished", spec.name)))?;
        for a in &spec.addresses {
            if !link.addresses.contains(a) {
                link.addresses.push(*a);
            }
        }
        Ok(BridgeInfo {
            mac: link.mac,
            mtu: link.mtu,
        })
    }

    fn create_veth(&self, spec: &VethSpec) -> DpResult<VethInfo> {
        let mut s = self.state.lock();
        s.check_fail("create_veth")?;
        let Some(ns) = s.namespaces.get(&spec.netns) else {
            return Err(DpError::NetnsNotFound {
                path: spec.netns.clone(),
            });
        };
        if ns.contains_key(&spec.ifname) {
            return Err(DpError::Exists {
                name: spec.ifname.clone(),
                netns: Some(spec.netns.clone()),
            });
        }
        if s.host.contains_key(&spec.host_veth) {
            return Err(DpError::Exists {
                name: spec.host_veth.clone(),
                netns: None,
            });
        }
        let (host_mac, container_mac) = (s.mac(), s.mac());
        s.host.insert(
            spec.host_veth.clone(),
            FakeLink {
                mac: host_mac,
                mtu: spec.mtu,
                master: Some(spec.bridge.clone()),
                hairpin: spec.hairpin,
                peer: Some((spec.netns.clone(), spec.ifname.clone())),
                addresses: Vec::new(),
            },
        );
        if let Some(ns) = s.namespaces.get_mut(&spec.netns) {
            ns.insert(
                spec.ifname.clone(),
                FakeLink {
                    mac: container_mac,
                    mtu: spec.mtu,
                    peer: Some((String::new(), spec.host_veth.clone())),
                    ..FakeLink::default()
                },
            );
        }
        Ok(VethInfo {
            host_mac,
            container_mac,
        })
    }

    fn configure_pod(&self, network: &PodNetwork) -> DpResult<()> {
        let mut s = self.state.lock();
        s.check_fail("configure_pod")?;
        let link = s
            .namespaces
            .get_mut(&network.netns)
            .and_then(|ns| ns.get_mut(&network.ifname))
            .ok_or_else(|| DpError::Missing(format!("{} in {}", network.ifname, network.netns)))?;
        link.addresses.extend(network.addresses.iter().copied());
        s.routes.insert(
            (network.netns.clone(), network.ifname.clone()),
            network.routes.clone(),
        );
        Ok(())
    }

    fn remove_veth(&self, host_veth: &str) -> DpResult<()> {
        let mut s = self.state.lock();
        s.check_fail("remove_veth")?;
        if let Some(link) = s.host.remove(host_veth)
            && let Some((ns, ifname)) = link.peer
        {
            if let Some(ns_links) = s.namespaces.get_mut(&ns) {
                ns_links.remove(&ifname);
            }
            s.routes.remove(&(ns, ifname));
        }
        Ok(())
    }

    fn link_exists(&self, name: &str) -> DpResult<bool> {
        Ok(self.state.lock().host.contains_key(name))
    }

    fn bridge_ports(&self, bridge: &str) -> DpResult<Vec<String>> {
        Ok(self
            .state
            .lock()
            .host
            .iter()
            .filter(|(_, l)| l.master.as_deref() == Some(bridge))
            .map(|(n, _)| n.clone())
            .collect())
    }

    fn check_pod(&self, veth: &VethSpec, network: &PodNetwork) -> DpResult<()> {
        let s = self.state.lock();
        let host = s
            .host
            .get(&veth.host_veth)
            .ok_or_else(|| DpError::Missing(format!("host veth {} is missing", veth.host_veth)))?;
        if host.master.as_deref() != Some(veth.bridge.as_str()) {
            return Err(DpError::Missing(format!(
                "host veth {} is not on bridge {}",
                veth.host_veth, veth.bridge
            )));
        }
        let link = s
            .namespaces
            .get(&network.netns)
            .and_then(|ns| ns.get(&network.ifname))
            .ok_or_else(|| {
                DpError::Missing(format!(
                    "{} is missing in {}",
                    network.ifname, network.netns
                ))
            })?;
        for a in &network.addresses {
            if !link.addresses.contains(a) {
                return Err(DpError::Missing(format!(
                    "address {a} is missing on {}",
                    network.ifname
                )));
            }
        }
        let routes = s
            .routes
            .get(&(network.netns.clone(), network.ifname.clone()))
            .cloned()
            .unwrap_or_default();
        for r in &network.routes {
            if !routes.contains(r) {
                return Err(DpError::Missing(format!("route to {} is missing", r.0)));
            }
        }
        Ok(())
    }

    fn underlay(&self, name: Option<&str>) -> DpResult<Underlay> {
        Ok(Underlay {
            name: name.unwrap_or("eth0").to_string(),
            mtu: 1500,
            addresses: vec![IpAddr::from([192, 0, 2, 10])],
        })
    }

    fn ensure_masquerade(&self, sources: &[IpNet], exclude: &[IpNet]) -> DpResult<()> {
        let mut s = self.state.lock();
        let rule = (sources.to_vec(), exclude.to_vec());
        if !s.masquerade.contains(&rule) {
            s.masquerade.push(rule);
        }
        Ok(())
    }

    fn ensure_vxlan(&self, spec: &VxlanSpec) -> DpResult<MacAddr> {
        let mut s = self.state.lock();
        s.check_fail("ensure_vxlan")?;
        if let Some(link) = s.host.get(&spec.name) {
            return Ok(link.mac);
        }
        let mac = match spec.mac {
            Some(m) => m,
            None => s.mac(),
        };
        s.host.insert(
            spec.name.clone(),
            FakeLink {
                mac,
                mtu: spec.mtu,
                addresses: spec.addresses.clone(),
                ..FakeLink::default()
            },
        );
        s.peers.entry(spec.name.clone()).or_default();
        Ok(mac)
    }

    fn set_peer(&self, device: &str, peer: &Peer) -> DpResult<()> {
        let mut s = self.state.lock();
        s.check_fail("set_peer")?;
        let peers = s
            .peers
            .get_mut(device)
            .ok_or_else(|| DpError::Missing(format!("device {device} is missing")))?;
        let anonymous = Peer {
            node: String::new(),
            ..peer.clone()
        };
        // One entry per VTEP MAC, as the kernel's FDB keeps it.
        peers.retain(|p| p.vtep_mac != anonymous.vtep_mac);
        peers.insert(anonymous);
        Ok(())
    }

    fn remove_peer(&self, device: &str, peer: &Peer) -> DpResult<()> {
        let mut s = self.state.lock();
        if let Some(peers) = s.peers.get_mut(device) {
            peers.retain(|p| p.vtep_mac != peer.vtep_mac);
        }
        Ok(())
    }

    fn peers(&self, device: &str) -> DpResult<Vec<Peer>> {
        Ok(self
            .state
            .lock()
            .peers
            .get(device)
            .map(|p| p.iter().cloned().collect())
            .unwrap_or_default())
    }
}

/// Checks the [`Dataplane`] contract on fresh namespaces the caller made:
/// `netns_a` and `netns_b` exist and are empty; `bridge` and `vxlan` are names free
/// on the host. Everything the battery creates is removed again. Panics on the
/// first breach.
pub fn dataplane_conformance(
    dp: &dyn Dataplane,
    netns_a: &str,
    netns_b: &str,
    bridge: &str,
    vxlan: &str,
) {
    let net = |s: &str| s.parse::<IpNet>().expect("cidr");
    let gw = net("10.250.77.1/24");
    let info = dp
        .ensure_bridge(&BridgeSpec {
            name: bridge.into(),
            mtu: 1450,
            addresses: vec![gw],
            promisc: false,
        })
        .expect("ensure_bridge");
    assert!(info.mac.is_unicast(), "bridge MAC is unicast");
    dp.ensure_bridge(&BridgeSpec {
        name: bridge.into(),
        mtu: 1450,
        addresses: vec![gw],
        promisc: false,
    })
    .expect("ensure_bridge is idempotent");
    let att_a = Attachment::new("conformance-a", "eth0");
    let veth = |netns: &str, att: &Attachment| VethSpec {
        netns: netns.into(),
        ifname: att.ifname.clone(),
        host_veth: att.host_veth(),
        bridge: bridge.into(),
        mtu: 1450,
        hairpin: true,
    };
    let spec_a = veth(netns_a, &att_a);
    let made = dp.create_veth(&spec_a).expect("create_veth");
    assert_ne!(made.host_mac, made.container_mac);
    assert!(dp.link_exists(&spec_a.host_veth).expect("link_exists"));
    assert!(
        dp.bridge_ports(bridge)
            .expect("ports")
            .contains(&spec_a.host_veth),
        "the host end is on the bridge"
    );
    // The same interface name again in the same namespace is refused, and nothing
    // new is left on the host.
    let again = VethSpec {
        host_veth: Attachment::new("conformance-other", "eth0").host_veth(),
        ..spec_a.clone()
    };
    assert!(matches!(
        dp.create_veth(&again),
        Err(DpError::Exists { .. })
    ));
    assert!(!dp.link_exists(&again.host_veth).expect("link_exists"));
    let missing = VethSpec {
        netns: "/run/netns/rancher-cni-conformance-does-not-exist".into(),
        host_veth: Attachment::new("conformance-missing", "eth0").host_veth(),
        ..spec_a.clone()
    };
    assert!(matches!(
        dp.create_veth(&missing),
        Err(DpError::NetnsNotFound { .. })
    ));
    assert!(!dp.link_exists(&missing.host_veth).expect("link_exists"));
    let pod_a = PodNetwork {
        netns: netns_a.into(),
        ifname: "eth0".into(),
        addresses: vec![net("10.250.77.2/24")],
        routes: vec![(net("0.0.0.0/0"), gw.addr())],
    };
    assert!(
        dp.check_pod(&spec_a, &pod_a).is_err(),
        "CHECK fails before configure"
    );
    dp.configure_pod(&pod_a).expect("configure_pod");
    dp.check_pod(&spec_a, &pod_a)
        .expect("check_pod after configure");
    // A second pod on the same bridge.
    let att_b = Attachment::new("conformance-b", "eth0");
    let spec_b = veth(netns_b, &att_b);
    dp.create_veth(&spec_b).expect("create_veth b");
    dp.remove_veth(&spec_a.host_veth).expect("remove_veth");
    dp.remove_veth(&spec_a.host_veth)
        .expect("remove_veth again is Ok");
    assert!(!dp.link_exists(&spec_a.host_veth).expect("link_exists"));
    assert!(matches!(
        dp.check_pod(&spec_a, &pod_a),
        Err(DpError::Missing(_))
    ));
    dp.remove_veth(&spec_b.host_veth).expect("remove_veth b");
    // The overlay.
    let underlay = dp.underlay(None).expect("underlay");
    let mac = dp
        .ensure_vxlan(&VxlanSpec {
            name: vxlan.into(),
            vni: 1042,
            port: 4789,
            underlay: underlay.name.clone(),
            local: underlay
                .addresses
                .first()
                .copied()
                .unwrap_or(IpAddr::from([127, 0, 0, 1])),
            mtu: underlay.mtu.saturating_sub(50).max(576),
            mac: Some(MacAddr([0x0e, 0, 10, 250, 77, 1])),
            addresses: vec![net("10.250.77.0/32")],
        })
        .expect("ensure_vxlan");
    assert_eq!(
        mac,
        MacAddr([0x0e, 0, 10, 250, 77, 1]),
        "the asked MAC is kept"
    );
    let peer = Peer {
        node: "peer".into(),
        ranges: vec![net("10.250.78.0/24")],
        vtep_mac: MacAddr([0x0e, 0, 10, 250, 78, 1]),
        underlay: IpAddr::from([192, 0, 2, 78]),
    };
    dp.set_peer(vxlan, &peer).expect("set_peer");
    dp.set_peer(vxlan, &peer).expect("set_peer is idempotent");
    let listed = dp.peers(vxlan).expect("peers");
    assert_eq!(listed.len(), 1, "one peer: {listed:?}");
    assert_eq!(listed[0].ranges, peer.ranges);
    assert_eq!(listed[0].vtep_mac, peer.vtep_mac);
    assert_eq!(listed[0].underlay, peer.underlay);
    dp.remove_peer(vxlan, &peer).expect("remove_peer");
    dp.remove_peer(vxlan, &peer)
        .expect("remove_peer again is Ok");
    assert!(dp.peers(vxlan).expect("peers").is_empty());
    dp.remove_veth(vxlan).expect("remove the VXLAN device");
    dp.remove_veth(bridge).expect("remove the bridge");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_store_conforms() {
        ip_store_conformance(&MemoryStore::default());
    }

    #[test]
    fn memory_dataplane_conforms() {
        let dp = MemoryDataplane::default();
        dp.add_netns("/run/netns/a");
        dp.add_netns("/run/netns/b");
        dataplane_conformance(
            &dp,
            "/run/netns/a",
            "/run/netns/b",
            "cni-test0",
            "vtep-test",
        );
    }

    #[test]
    fn file_store_conforms() {
        let dir = tempfile::tempdir().expect("tempdir");
        ip_store_conformance(&crate::ipam::FileStore::new(dir.path()));
    }
}
