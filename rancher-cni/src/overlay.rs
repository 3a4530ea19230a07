//! The overlay between nodes, as data: which peers a node should program, what to
//! change to get there, and how node ranges are picked from the cluster network.
//! Kubernetes-free; the agent feeds it from Node objects.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::IpAddr,
};

use ipnet::IpNet;

use crate::model::{Family, MacAddr, Peer, from_u128, to_u128};

/// What the agent knows of a node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeInfo {
    /// The node's name.
    pub name: String,
    /// Its pod ranges.
    pub ranges: Vec<IpNet>,
    /// Its VXLAN device's MAC, once its agent published it.
    pub vtep_mac: Option<MacAddr>,
    /// Its underlay address, once its agent published it.
    pub underlay: Option<IpAddr>,
}

impl NodeInfo {
    /// The node as a peer, when it has everything a peer needs.
    pub fn peer(&self) -> Option<Peer> {
        let mut ranges = self.ranges.clone();
        ranges.sort();
        Some(Peer {
            node: self.name.clone(),
            ranges,
            vtep_mac: self.vtep_mac?,
            underlay: self.underlay?,
        })
        .filter(|p| !p.ranges.is_empty())
    }
}

/// The peers node `me` should program: every other complete node.
pub fn desired_peers<'a>(me: &str, nodes: impl IntoIterator<Item = &'a NodeInfo>) -> Vec<Peer> {
    let mut out: Vec<Peer> = nodes
        .into_iter()
        .filter(|n| n.name != me)
        .filter_map(NodeInfo::peer)
        .collect();
    out.sort();
    out
}

/// What to remove and what to (re)program to go from `current` (as the kernel
/// holds it, node names unknown) to `desired`. A peer counts as in place when the
/// kernel has its MAC at its underlay address with exactly its ranges.
pub fn plan(current: &[Peer], desired: &[Peer]) -> (Vec<Peer>, Vec<Peer>) {
    let key = |p: &Peer| {
        let mut ranges = p.ranges.clone();
        ranges.sort();
        (p.vtep_mac, p.underlay, ranges)
    };
    let have: BTreeSet<_> = current.iter().map(key).collect();
    let want: BTreeSet<_> = desired.iter().map(key).collect();
    let want_macs: BTreeMap<MacAddr, &Peer> = desired.iter().map(|p| (p.vtep_mac, p)).collect();
    let remove = current
        .iter()
        .filter(|p| !want.contains(&key(p)))
        .filter(|p| {
            // A peer whose MAC is still wanted is replaced in place, except for
            // ranges it no longer has: those routes must go.
            want_macs
                .get(&p.vtep_mac)
                .is_none_or(|w| p.ranges.iter().any(|r| !w.ranges.contains(r)))
        })
        .cloned()
        .collect();
    let set = desired
        .iter()
        .filter(|p| !have.contains(&key(p)))
        .cloned()
        .collect();
    (remove, set)
}

/// Picks the first range of `prefix_len` inside `cluster` that overlaps none of
/// `used`.
pub fn pick_free(cluster: &IpNet, prefix_len: u8, used: &[IpNet]) -> Option<IpNet> {
    if prefix_len < cluster.prefix_len() || prefix_len > cluster.max_prefix_len() {
        return None;
    }
    let family = Family::of_net(cluster);
    let bits = u32::from(cluster.max_prefix_len() - prefix_len);
    let step: u128 = 1u128.checked_shl(bits)?;
    let count: u128 = 1u128.checked_shl(u32::from(prefix_len - cluster.prefix_len()))?;
    let base = to_u128(cluster.network());
    (0..count.min(1 << 20)).find_map(|i| {
        let net = IpNet::new(from_u128(family, base + i * step), prefix_len).ok()?;
        (!used
            .iter()
            .any(|u| u.contains(&net.network()) || net.contains(&u.network())))
        .then_some(net)
    })
}

/// The MAC Rancher's VXLAN agent gave its device: `0e:00:` and the IPv4 underlay
/// address, so it is stable across restarts and unique per host.
pub fn vtep_mac_for(underlay: IpAddr) -> Option<MacAddr> {
    match underlay {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            Some(MacAddr([0x0e, 0x00, o[0], o[1], o[2], o[3]]))
        }
        IpAddr::V6(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, range: &str, mac: u8, ip: [u8; 4]) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            ranges: vec![range.parse().unwrap()],
            vtep_mac: Some(MacAddr([0x0e, 0, 0, 0, 0, mac])),
            underlay: Some(IpAddr::from(ip)),
        }
    }

    #[test]
    fn peers_skip_self_and_incomplete_nodes() {
        let a = node("a", "10.42.0.0/24", 1, [192, 0, 2, 1]);
        let b = node("b", "10.42.1.0/24", 2, [192, 0, 2, 2]);
        let c = NodeInfo {
            vtep_mac: None,
            ..node("c", "10.42.2.0/24", 3, [192, 0, 2, 3])
        };
        let peers = desired_peers("a", [&a, &b, &c]);
        assert_eq!(peers.len(), 1);
        assert_eq!(peers[0].node, "b");
    }

    #[test]
    fn plan_diffs_against_the_kernel() {
        let b = node("b", "10.42.1.0/24", 2, [192, 0, 2, 2]).peer().unwrap();
        let c = node("c", "10.42.2.0/24", 3, [192, 0, 2, 3]).peer().unwrap();
        let anon = |p: &Peer| Peer {
            node: String::new(),
            ..p.clone()
        };
        let (remove, set) = plan(&[anon(&b)], &[b.clone(), c.clone()]);
        assert!(remove.is_empty());
        assert_eq!(set, vec![c.clone()]);
        let (remove, set) = plan(&[anon(&b), anon(&c)], std::slice::from_ref(&b));
        assert_eq!(remove, vec![anon(&c)]);
        assert!(set.is_empty());
        // b moved to another underlay address: reprogrammed in place.
        let moved = node("b", "10.42.1.0/24", 2, [192, 0, 2, 9]).peer().unwrap();
        let (remove, set) = plan(&[anon(&b)], std::slice::from_ref(&moved));
        assert!(remove.is_empty());
        assert_eq!(set, vec![moved]);
    }

    #[test]
    fn free_ranges() {
        let cluster: IpNet = "10.42.0.0/16".parse().unwrap();
        assert_eq!(pick_free(&cluster, 24, &[]), "10.42.0.0/24".parse().ok());
        let used = [
            "10.42.0.0/24".parse().unwrap(),
            "10.42.1.0/24".parse().unwrap(),
        ];
        assert_eq!(pick_free(&cluster, 24, &used), "10.42.2.0/24".parse().ok());
        let full: Vec<IpNet> = vec![cluster];
        assert_eq!(pick_free(&cluster, 24, &full), None);
        let v6: IpNet = "fd42::/48".parse().unwrap();
        assert_eq!(pick_free(&v6, 64, &[]), "fd42::/64".parse().ok());
        assert_eq!(pick_free(&cluster, 8, &[]), None);
        assert_eq!(
            vtep_mac_for(IpAddr::from([10, 250, 40, 11])),
            Some(MacAddr([0x0e, 0, 10, 250, 40, 11]))
        );
    }
}
