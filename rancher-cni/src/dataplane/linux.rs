//! [`LinuxDataplane`]: the [`Dataplane`] over rtnetlink (`netlink-packet-route` on a
//! blocking `netlink-sys` socket), entering container namespaces with `setns` only
//! long enough to open a socket there.

mod masq;
mod netlink;

use std::{
    collections::BTreeMap,
    hash::{BuildHasher, RandomState},
    io,
    net::IpAddr,
    os::fd::AsRawFd,
    path::Path,
};

use ipnet::IpNet;
use netlink_packet_core::NLM_F_DUMP;
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    link::{
        InfoBridgePort, InfoData, InfoKind, InfoPortData, InfoPortKind, InfoVeth, InfoVxlan,
        LinkAttribute, LinkFlags, LinkInfo, LinkMessage,
    },
    neighbour::{
        NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
    },
};
use parking_lot::Mutex;

use self::netlink::{CREATE_EXCL, CREATE_REPLACE, Netlink, NetnsError, is_exists, is_gone};
use super::{
    BridgeInfo, BridgeSpec, Dataplane, Error, PodNetwork, Result, Underlay, VethInfo, VethSpec,
    VxlanSpec,
};
use crate::model::{MacAddr, Peer, overlay_next_hop};

/// The Linux dataplane, acting on the network namespace of the thread that built it
/// (the host).
pub struct LinuxDataplane {
    host: Mutex<Netlink>,
}

impl std::fmt::Debug for LinuxDataplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinuxDataplane").finish_non_exhaustive()
    }
}

fn kernel(op: impl Into<String>) -> impl FnOnce(io::Error) -> Error {
    let op = op.into();
    move |source| Error::Kernel { op, source }
}

fn mac_of(link: &LinkMessage) -> MacAddr {
    link.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Address(b) if b.len() == 6 => {
                let mut m = [0u8; 6];
                m.copy_from_slice(b);
                Some(MacAddr(m))
            }
            _ => None,
        })
        .unwrap_or_default()
}

fn mtu_of(link: &LinkMessage) -> u32 {
    link.attributes
        .iter()
        .find_map(|a| match a {
            LinkAttribute::Mtu(m) => Some(*m),
            _ => None,
        })
        .unwrap_or(0)
}

fn controller_of(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Controller(c) => Some(*c),
        _ => None,
    })
}

fn name_of(link: &LinkMessage) -> Option<&str> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}

/// A random locally administered unicast MAC address (what the kernel picks for a
/// veth end when asked for none). `RandomState`'s keys come from the OS's random
/// source and differ per call, so two calls never agree by construction.
fn random_mac(salt: &str) -> MacAddr {
    let bytes = RandomState::new().hash_one(salt).to_le_bytes();
    MacAddr([
        (bytes[0] & 0xfe) | 0x02,
        bytes[1],
        bytes[2],
        bytes[3],
        bytes[4],
        bytes[5],
    ])
}

/// The request creating `spec`'s pair: the host end up from the start, both with their
/// MACs, one transmit queue each (left to the kernel, a veth gets one per CPU and
/// then drops to one, waiting for an RCU grace period per end), the host end on
/// `bridge`, the peer moved into the container's namespace `netns_fd`.
fn veth_message(spec: &VethSpec, bridge: u32, macs: &VethInfo, netns_fd: i32) -> LinkMessage {
    // The peer cannot be brought up here: the kernel configures it before it is
    // paired, and a veth without its pair refuses to open.
    let mut peer = LinkMessage::default();
    peer.attributes
        .push(LinkAttribute::IfName(spec.ifname.clone()));
    peer.attributes.push(LinkAttribute::Mtu(spec.mtu));
    peer.attributes
        .push(LinkAttribute::Address(macs.container_mac.0.to_vec()));
    peer.attributes.push(LinkAttribute::NumTxQueues(1));
    peer.attributes.push(LinkAttribute::NetNsFd(netns_fd));
    let mut msg = LinkMessage::default();
    msg.header.flags = LinkFlags::Up;
    msg.header.change_mask = LinkFlags::Up;
    msg.attributes
        .push(LinkAttribute::IfName(spec.host_veth.clone()));
    msg.attributes.push(LinkAttribute::Mtu(spec.mtu));
    msg.attributes
        .push(LinkAttribute::Address(macs.host_mac.0.to_vec()));
    msg.attributes.push(LinkAttribute::NumTxQueues(1));
    msg.attributes.push(LinkAttribute::Controller(bridge));
    msg.attributes.push(LinkAttribute::LinkInfo(vec![
        LinkInfo::Kind(InfoKind::Veth),
        LinkInfo::Data(InfoData::Veth(InfoVeth::Peer(peer))),
    ]));
    msg
}

/// Turns on IP forwarding for `v6` or IPv4 in the calling thread's namespace.
fn enable_forwarding(v6: bool) -> Result<()> {
    let path = if v6 {
        "/proc/sys/net/ipv6/conf/all/forwarding"
    } else {
        "/proc/sys/net/ipv4/ip_forward"
    };
    match std::fs::read(path) {
        Ok(v) if v.first() == Some(&b'1') => Ok(()),
        _ => std::fs::write(path, b"1").map_err(kernel(format!("write 1 to {path}"))),
    }
}

impl LinuxDataplane {
    /// A dataplane for the calling thread's network namespace.
    pub fn new() -> Result<Self> {
        Ok(Self {
            host: Mutex::new(Netlink::new().map_err(kernel("open a netlink socket"))?),
        })
    }

    fn link_index(nl: &mut Netlink, name: &str) -> Result<LinkMessage> {
        nl.link(name)
            .map_err(kernel(format!("look up {name}")))?
            .ok_or_else(|| Error::Missing(format!("interface {name} does not exist")))
    }

    fn open_netns(path: &str) -> Result<(Netlink, std::fs::File)> {
        Netlink::in_netns(Path::new(path)).map_err(|e| match e {
            NetnsError::NotFound => Error::NetnsNotFound {
                path: path.to_string(),
            },
            NetnsError::Io(source) => Error::Kernel {
                op: format!("enter network namespace {path}"),
                source,
            },
        })
    }

    fn neighbour(index: u32, dst: IpAddr, mac: MacAddr, fdb: bool) -> NeighbourMessage {
        let mut msg = NeighbourMessage::default();
        msg.header.ifindex = index;
        msg.header.state = NeighbourState::Permanent;
        if fdb {
            msg.header.family = AddressFamily::Bridge;
            msg.header.flags = NeighbourFlags::Own;
            msg.attributes
                .push(NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()));
            msg.attributes
                .push(NeighbourAttribute::Destination(NeighbourAddress::from(dst)));
        } else {
            msg.header.family = netlink::family(dst);
            msg.attributes
                .push(NeighbourAttribute::Destination(NeighbourAddress::from(dst)));
            msg.attributes
                .push(NeighbourAttribute::LinkLayerAddress(mac.0.to_vec()));
        }
        msg
    }

    fn neighbours(
        nl: &mut Netlink,
        family: AddressFamily,
        index: u32,
    ) -> Result<Vec<(IpAddr, MacAddr)>> {
        let mut q = NeighbourMessage::default();
        q.header.family = family;
        let answers = nl
            .request(RouteNetlinkMessage::GetNeighbour(q), NLM_F_DUMP)
            .map_err(kernel("list neighbours"))?;
        let mut out = Vec::new();
        for m in answers {
            let RouteNetlinkMessage::NewNeighbour(n) = m else {
                continue;
            };
            if n.header.ifindex != index {
                continue;
            }
            let mut ip = None;
            let mut mac = None;
            for a in &n.attributes {
                match a {
                    NeighbourAttribute::Destination(NeighbourAddress::Inet(v4)) => {
                        ip = Some(IpAddr::V4(*v4));
                    }
                    NeighbourAttribute::Destination(NeighbourAddress::Inet6(v6)) => {
                        ip = Some(IpAddr::V6(*v6));
                    }
                    // FDB entries (AF_BRIDGE) carry the destination as raw bytes.
                    NeighbourAttribute::Destination(NeighbourAddress::Other(b)) => {
                        ip = match b.len() {
                            4 => <[u8; 4]>::try_from(b.as_slice()).ok().map(IpAddr::from),
                            16 => <[u8; 16]>::try_from(b.as_slice()).ok().map(IpAddr::from),
                            _ => None,
                        };
                    }
                    NeighbourAttribute::LinkLayerAddress(b) if b.len() == 6 => {
                        let mut m = [0u8; 6];
                        m.copy_from_slice(b);
                        mac = Some(MacAddr(m));
                    }
                    _ => {}
                }
            }
            if let (Some(ip), Some(mac)) = (ip, mac) {
                out.push((ip, mac));
            }
        }
        Ok(out)
    }
}

impl Dataplane for LinuxDataplane {
    fn ensure_bridge(&self, spec: &BridgeSpec) -> Result<BridgeInfo> {
        let mut nl = self.host.lock();
        let link = match nl
            .link(&spec.name)
            .map_err(kernel(format!("look up bridge {}", spec.name)))?
        {
            Some(link) => link,
            None => {
                let mut msg = LinkMessage::default();
                msg.attributes
                    .push(LinkAttribute::IfName(spec.name.clone()));
                msg.attributes.push(LinkAttribute::Mtu(spec.mtu));
                msg.attributes
                    .push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(
                        InfoKind::Bridge,
                    )]));
                match nl.request(RouteNetlinkMessage::NewLink(msg), CREATE_EXCL) {
                    Err(e) if !is_exists(&e) => {
                        return Err(kernel(format!("create bridge {}", spec.name))(e));
                    }
                    _ => {}
                }
                Self::link_index(&mut nl, &spec.name)?
            }
        };
        let index = link.header.index;
        let up = link.header.flags.contains(LinkFlags::Up);
        let promisc = link.header.flags.contains(LinkFlags::Promisc);
        if !up || (spec.promisc && !promisc) {
            nl.set_up(index, spec.promisc)
                .map_err(kernel(format!("set bridge {} up", spec.name)))?;
        }
        for net in &spec.addresses {
            nl.add_address(index, *net)
                .map_err(kernel(format!("add {net} to {}", spec.name)))?;
        }
        if spec.addresses.iter().any(|a| a.addr().is_ipv4()) {
            enable_forwarding(false)?;
        }
        if spec.addresses.iter().any(|a| a.addr().is_ipv6()) {
            enable_forwarding(true)?;
        }
        Ok(BridgeInfo {
            mac: mac_of(&link),
            mtu: mtu_of(&link),
        })
    }

    fn create_veth(&self, spec: &VethSpec) -> Result<VethInfo> {
        let (mut ns, ns_file) = Self::open_netns(&spec.netns)?;
        let mut nl = self.host.lock();
        let bridge = Self::link_index(&mut nl, &spec.bridge)?.header.index;
        // The MACs are chosen here, as the kernel would (random, locally
        // administered), so that reporting them needs no lookup.
        let info = VethInfo {
            host_mac: random_mac(&spec.host_veth),
            container_mac: random_mac(&spec.ifname),
        };
        let msg = veth_message(spec, bridge, &info, ns_file.as_raw_fd());
        let mut created = nl.request(RouteNetlinkMessage::NewLink(msg.clone()), CREATE_EXCL);
        if matches!(&created, Err(e) if is_exists(e)) {
            // Either CNI_IFNAME is taken in the container, or a host end was left
            // by a plugin killed in the middle of an earlier ADD of this attachment
            // (its peer is not in the container, or the name would be taken).
            if ns
                .link(&spec.ifname)
                .map_err(kernel(format!("look up {} in {}", spec.ifname, spec.netns)))?
                .is_some()
            {
                return Err(Error::Exists {
                    name: spec.ifname.clone(),
                    netns: Some(spec.netns.clone()),
                });
            }
            nl.delete_link(&spec.host_veth)
                .map_err(kernel(format!("delete stale {}", spec.host_veth)))?;
            created = nl.request(RouteNetlinkMessage::NewLink(msg), CREATE_EXCL);
        }
        created.map_err(|e| {
            if is_exists(&e) {
                Error::Exists {
                    name: spec.ifname.clone(),
                    netns: Some(spec.netns.clone()),
                }
            } else {
                kernel(format!(
                    "create veth {} to {} in {}",
                    spec.host_veth, spec.ifname, spec.netns
                ))(e)
            }
        })?;
        let mut up = LinkMessage::default();
        up.header.flags = LinkFlags::Up;
        up.header.change_mask = LinkFlags::Up;
        up.attributes
            .push(LinkAttribute::IfName(spec.ifname.clone()));
        if let Err(e) = ns.request(RouteNetlinkMessage::NewLink(up), 0) {
            let _ = nl.delete_link(&spec.host_veth);
            return Err(kernel(format!("set {} up in {}", spec.ifname, spec.netns))(
                e,
            ));
        }
        // A new bridge port starts with hairpin off: only turning it on costs a
        // request (by name: the index is not needed).
        if spec.hairpin {
            let mut set = LinkMessage::default();
            set.attributes
                .push(LinkAttribute::IfName(spec.host_veth.clone()));
            set.attributes.push(LinkAttribute::LinkInfo(vec![
                LinkInfo::PortKind(InfoPortKind::Bridge),
                LinkInfo::PortData(InfoPortData::BridgePort(vec![InfoBridgePort::HairpinMode(
                    true,
                )])),
            ]));
            if let Err(e) = nl.request(RouteNetlinkMessage::NewLink(set), 0) {
                let _ = nl.delete_link(&spec.host_veth);
                return Err(kernel(format!("turn hairpin on for {}", spec.host_veth))(e));
            }
        }
        Ok(info)
    }

    fn configure_pod(&self, network: &PodNetwork) -> Result<()> {
        let (mut ns, _file) = Self::open_netns(&network.netns)?;
        let index = Self::link_index(&mut ns, &network.ifname)?.header.index;
        // Addresses then routes, in one round trip: the kernel handles them in
        // order, so each route finds its gateway's subnet on the link.
        let mut requests = Vec::new();
        for net in &network.addresses {
            requests.push((
                RouteNetlinkMessage::NewAddress(Netlink::address_message(index, *net)),
                CREATE_EXCL,
            ));
        }
        for (dst, gw) in &network.routes {
            let msg = Netlink::route_message(index, *dst, Some(*gw), false);
            requests.push((RouteNetlinkMessage::NewRoute(msg), CREATE_EXCL));
        }
        let results = ns.batch(requests).map_err(kernel(format!(
            "configure {} in {}",
            network.ifname, network.netns
        )))?;
        let ops = network
            .addresses
            .iter()
            .map(|net| format!("add {net} to {} in {}", network.ifname, network.netns))
            .chain(
                network
                    .routes
                    .iter()
                    .map(|(dst, gw)| format!("add route {dst} via {gw} in {}", network.netns)),
            );
        for (result, op) in results.into_iter().zip(ops) {
            match result {
                Err(e) if !is_exists(&e) => return Err(kernel(op)(e)),
                _ => {}
            }
        }
        Ok(())
    }

    fn remove_veth(&self, host_veth: &str) -> Result<()> {
        self.host
            .lock()
            .delete_link(host_veth)
            .map(drop)
            .map_err(kernel(format!("delete {host_veth}")))
    }

    fn link_exists(&self, name: &str) -> Result<bool> {
        Ok(self
            .host
            .lock()
            .link(name)
            .map_err(kernel(format!("look up {name}")))?
            .is_some())
    }

    fn bridge_ports(&self, bridge: &str) -> Result<Vec<String>> {
        let mut nl = self.host.lock();
        let Some(br) = nl
            .link(bridge)
            .map_err(kernel(format!("look up {bridge}")))?
        else {
            return Ok(Vec::new());
        };
        Ok(nl
            .links()
            .map_err(kernel("list links"))?
            .iter()
            .filter(|l| controller_of(l) == Some(br.header.index))
            .filter_map(|l| name_of(l).map(String::from))
            .collect())
    }

    fn check_pod(&self, veth: &VethSpec, network: &PodNetwork) -> Result<()> {
        let mut nl = self.host.lock();
        let host = nl
            .link(&veth.host_veth)
            .map_err(kernel(format!("look up {}", veth.host_veth)))?
            .ok_or_else(|| Error::Missing(format!("host veth {} is missing", veth.host_veth)))?;
        let bridge = Self::link_index(&mut nl, &veth.bridge)?;
        if controller_of(&host) != Some(bridge.header.index) {
            return Err(Error::Missing(format!(
                "host veth {} is not on bridge {}",
                veth.host_veth, veth.bridge
            )));
        }
        drop(nl);
        let (mut ns, _file) = Self::open_netns(&network.netns)?;
        let link = ns
            .link(&network.ifname)
            .map_err(kernel(format!("look up {}", network.ifname)))?
            .ok_or_else(|| {
                Error::Missing(format!(
                    "{} is missing in {}",
                    network.ifname, network.netns
                ))
            })?;
        if mtu_of(&link) != veth.mtu {
            return Err(Error::Missing(format!(
                "{} has MTU {}, not {}",
                network.ifname,
                mtu_of(&link),
                veth.mtu
            )));
        }
        let have = ns
            .addresses(link.header.index)
            .map_err(kernel("list addresses"))?;
        for a in &network.addresses {
            if !have.contains(a) {
                return Err(Error::Missing(format!(
                    "address {a} is missing on {}",
                    network.ifname
                )));
            }
        }
        let routes = ns.routes().map_err(kernel("list routes"))?;
        for (dst, gw) in &network.routes {
            if !routes
                .iter()
                .any(|(d, g, oif)| d == dst && *g == Some(*gw) && *oif == link.header.index)
            {
                return Err(Error::Missing(format!(
                    "route to {dst} via {gw} is missing in {}",
                    network.netns
                )));
            }
        }
        Ok(())
    }

    fn underlay(&self, name: Option<&str>) -> Result<Underlay> {
        let mut nl = self.host.lock();
        let link = match name {
            Some(n) => Self::link_index(&mut nl, n)?,
            None => {
                let routes = nl.routes().map_err(kernel("list routes"))?;
                let oif = [false, true]
                    .iter()
                    .find_map(|v6| {
                        routes
                            .iter()
                            .find(|(d, _, oif)| {
                                d.prefix_len() == 0 && d.addr().is_ipv6() == *v6 && *oif != 0
                            })
                            .map(|(_, _, oif)| *oif)
                    })
                    .ok_or_else(|| {
                        Error::Missing("no default route to find the underlay interface by".into())
                    })?;
                nl.link_by_index(oif)
                    .map_err(kernel(format!("look up interface {oif}")))?
                    .ok_or_else(|| Error::Missing(format!("no interface with index {oif}")))?
            }
        };
        let addresses: Vec<IpAddr> = nl
            .addresses(link.header.index)
            .map_err(kernel("list addresses"))?
            .into_iter()
            .map(|n| n.addr())
            .filter(|a| match a {
                IpAddr::V6(v6) => (v6.segments()[0] & 0xffc0) != 0xfe80,
                IpAddr::V4(_) => true,
            })
            .collect();
        Ok(Underlay {
            name: name_of(&link).unwrap_or_default().to_string(),
            mtu: mtu_of(&link),
            addresses,
        })
    }

    fn ensure_masquerade(&self, sources: &[IpNet], exclude: &[IpNet]) -> Result<()> {
        masq::ensure(sources, exclude)
    }

    fn ensure_vxlan(&self, spec: &VxlanSpec) -> Result<MacAddr> {
        let mut nl = self.host.lock();
        let link = match nl
            .link(&spec.name)
            .map_err(kernel(format!("look up {}", spec.name)))?
        {
            Some(link) => link,
            None => {
                let underlay = Self::link_index(&mut nl, &spec.underlay)?.header.index;
                let mut data = vec![
                    InfoVxlan::Id(spec.vni),
                    InfoVxlan::Port(spec.port),
                    InfoVxlan::Link(underlay),
                    InfoVxlan::Learning(false),
                ];
                data.push(match spec.local {
                    IpAddr::V4(v4) => InfoVxlan::Local(v4),
                    IpAddr::V6(v6) => InfoVxlan::Local6(v6),
                });
                let mut msg = LinkMessage::default();
                msg.attributes
                    .push(LinkAttribute::IfName(spec.name.clone()));
                msg.attributes.push(LinkAttribute::Mtu(spec.mtu));
                if let Some(mac) = spec.mac {
                    msg.attributes.push(LinkAttribute::Address(mac.0.to_vec()));
                }
                msg.attributes.push(LinkAttribute::LinkInfo(vec![
                    LinkInfo::Kind(InfoKind::Vxlan),
                    LinkInfo::Data(InfoData::Vxlan(data)),
                ]));
                match nl.request(RouteNetlinkMessage::NewLink(msg), CREATE_EXCL) {
                    Err(e) if !is_exists(&e) => {
                        return Err(kernel(format!("create VXLAN device {}", spec.name))(e));
                    }
                    _ => {}
                }
                Self::link_index(&mut nl, &spec.name)?
            }
        };
        let index = link.header.index;
        if !link.header.flags.contains(LinkFlags::Up) {
            nl.set_up(index, false)
                .map_err(kernel(format!("set {} up", spec.name)))?;
        }
        for net in &spec.addresses {
            nl.add_address(index, *net)
                .map_err(kernel(format!("add {net} to {}", spec.name)))?;
        }
        Ok(mac_of(&link))
    }

    fn set_peer(&self, device: &str, peer: &Peer) -> Result<()> {
        let mut nl = self.host.lock();
        let index = Self::link_index(&mut nl, device)?.header.index;
        let fdb = Self::neighbour(index, peer.underlay, peer.vtep_mac, true);
        nl.request(RouteNetlinkMessage::NewNeighbour(fdb), CREATE_REPLACE)
            .map_err(kernel(format!(
                "add FDB entry {} dst {} on {device}",
                peer.vtep_mac, peer.underlay
            )))?;
        for range in &peer.ranges {
            let hop = overlay_next_hop(range);
            let neigh = Self::neighbour(index, hop, peer.vtep_mac, false);
            nl.request(RouteNetlinkMessage::NewNeighbour(neigh), CREATE_REPLACE)
                .map_err(kernel(format!(
                    "add neighbour {hop} at {} on {device}",
                    peer.vtep_mac
                )))?;
        }
        // Routes last: by then the kernel knows where the next hop is.
        for range in &peer.ranges {
            let hop = overlay_next_hop(range);
            let route = Netlink::route_message(index, *range, Some(hop), true);
            nl.request(RouteNetlinkMessage::NewRoute(route), CREATE_REPLACE)
                .map_err(kernel(format!("add route {range} via {hop} on {device}")))?;
        }
        Ok(())
    }

    fn remove_peer(&self, device: &str, peer: &Peer) -> Result<()> {
        let mut nl = self.host.lock();
        let Some(link) = nl
            .link(device)
            .map_err(kernel(format!("look up {device}")))?
        else {
            return Ok(());
        };
        let index = link.header.index;
        let ok_if_gone = |r: io::Result<Vec<RouteNetlinkMessage>>, op: String| match r {
            Err(e) if !is_gone(&e) => Err(kernel(op)(e)),
            _ => Ok(()),
        };
        for range in &peer.ranges {
            let hop = overlay_next_hop(range);
            let route = Netlink::route_message(index, *range, Some(hop), true);
            ok_if_gone(
                nl.request(RouteNetlinkMessage::DelRoute(route), 0),
                format!("delete route {range} on {device}"),
            )?;
            let neigh = Self::neighbour(index, hop, peer.vtep_mac, false);
            ok_if_gone(
                nl.request(RouteNetlinkMessage::DelNeighbour(neigh), 0),
                format!("delete neighbour {hop} on {device}"),
            )?;
        }
        let fdb = Self::neighbour(index, peer.underlay, peer.vtep_mac, true);
        ok_if_gone(
            nl.request(RouteNetlinkMessage::DelNeighbour(fdb), 0),
            format!("delete FDB entry {} on {device}", peer.vtep_mac),
        )
    }

    fn peers(&self, device: &str) -> Result<Vec<Peer>> {
        let mut nl = self.host.lock();
        let Some(link) = nl
            .link(device)
            .map_err(kernel(format!("look up {device}")))?
        else {
            return Ok(Vec::new());
        };
        let index = link.header.index;
        let routes = nl.routes().map_err(kernel("list routes"))?;
        let mut neighbours: BTreeMap<IpAddr, MacAddr> = BTreeMap::new();
        for fam in [AddressFamily::Inet, AddressFamily::Inet6] {
            neighbours.extend(Self::neighbours(&mut nl, fam, index)?);
        }
        let fdb: BTreeMap<MacAddr, IpAddr> =
            Self::neighbours(&mut nl, AddressFamily::Bridge, index)?
                .into_iter()
                .map(|(ip, mac)| (mac, ip))
                .collect();
        let mut by_mac: BTreeMap<MacAddr, Peer> = BTreeMap::new();
        for (dst, gw, oif) in routes {
            let Some(gw) = gw else { continue };
            if oif != index || dst.prefix_len() == 0 {
                continue;
            }
            let Some(mac) = neighbours.get(&gw) else {
                continue;
            };
            let Some(underlay) = fdb.get(mac) else {
                continue;
            };
            by_mac
                .entry(*mac)
                .or_insert_with(|| Peer {
                    node: String::new(),
                    ranges: Vec::new(),
                    vtep_mac: *mac,
                    underlay: *underlay,
                })
                .ranges
                .push(dst);
        }
        // FDB entries without routes are peers half programmed; report them too so
        // a reconcile removes or completes them.
        for (mac, underlay) in fdb {
            if mac.is_unicast() {
                by_mac.entry(mac).or_insert_with(|| Peer {
                    node: String::new(),
                    ranges: Vec::new(),
                    vtep_mac: mac,
                    underlay,
                });
            }
        }
        Ok(by_mac.into_values().collect())
    }
}
