//! The network model: address ranges, attachments, reservations, overlay peers.
//!
//! Nothing here knows the kernel or Kubernetes: addresses are [`std::net`] and
//! [`ipnet`] values, interfaces are names, network namespaces are paths.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
    str::FromStr,
};

use ipnet::IpNet;

/// The maximum length of a Linux interface name (`IFNAMSIZ` minus the NUL).
pub const IFNAME_MAX: usize = 15;

/// The VXLAN encapsulation overhead over an IPv4 underlay (outer IPv4 20 +
/// UDP 8 + VXLAN 8 + inner Ethernet 14 bytes).
pub const VXLAN_OVERHEAD_V4: u32 = 50;

/// The VXLAN encapsulation overhead over an IPv6 underlay (outer header 40 bytes).
pub const VXLAN_OVERHEAD_V6: u32 = 70;

/// An address family.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Family {
    /// IPv4.
    V4,
    /// IPv6.
    V6,
}

impl Family {
    /// The family of `addr`.
    pub fn of(addr: IpAddr) -> Self {
        match addr {
            IpAddr::V4(_) => Self::V4,
            IpAddr::V6(_) => Self::V6,
        }
    }

    /// The family of `net`.
    pub fn of_net(net: &IpNet) -> Self {
        Self::of(net.addr())
    }

    /// The default route of this family (`0.0.0.0/0` or `::/0`).
    pub fn default_route(self) -> IpNet {
        match self {
            Self::V4 => IpNet::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0),
            Self::V6 => IpNet::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), 0),
        }
        .unwrap_or_default()
    }
}

impl fmt::Display for Family {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::V4 => "IPv4",
            Self::V6 => "IPv6",
        })
    }
}

/// `addr` as a number, for range arithmetic within one family.
pub fn to_u128(addr: IpAddr) -> u128 {
    match addr {
        IpAddr::V4(a) => u128::from(u32::from(a)),
        IpAddr::V6(a) => u128::from(a),
    }
}

/// The address of `family` numbered `n` (truncated to 32 bits for IPv4).
pub fn from_u128(family: Family, n: u128) -> IpAddr {
    match family {
        Family::V4 => IpAddr::V4(Ipv4Addr::from(n as u32)),
        Family::V6 => IpAddr::V6(Ipv6Addr::from(n)),
    }
}

/// One contiguous pool of addresses inside a subnet, with its gateway: one entry of
/// a `host-local` style range set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Range {
    /// The subnet the addresses are configured with (`10.42.3.0/24`).
    pub subnet: IpNet,
    /// The first address handed out.
    pub start: IpAddr,
    /// The last address handed out.
    pub end: IpAddr,
    /// The gateway: the bridge's address, never handed out.
    pub gateway: IpAddr,
}

/// Why a [`Range`] could not be built.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RangeError {
    /// The subnet leaves no address for pods.
    #[error("subnet {0} is too small (it needs room for a gateway and a pod)")]
    TooSmall(IpNet),
    /// An address is outside the subnet or of the other family.
    #[error("{what} {addr} is not inside subnet {subnet}")]
    Outside {
        /// `rangeStart`, `rangeEnd` or `gateway`.
        what: &'static str,
        /// The address.
        addr: IpAddr,
        /// The subnet.
        subnet: IpNet,
    },
    /// `rangeStart` comes after `rangeEnd`.
    #[error("rangeStart {start} is after rangeEnd {end}")]
    Reversed {
        /// The start.
        start: IpAddr,
        /// The end.
        end: IpAddr,
    },
}

impl Range {
    /// The range of `subnet` with the defaults of `host-local`: addresses from the
    /// second of the subnet to the last but one (IPv4: before the broadcast address),
    /// gateway the first, unless given.
    pub fn new(
        subnet: IpNet,
        start: Option<IpAddr>,
        end: Option<IpAddr>,
        gateway: Option<IpAddr>,
    ) -> Result<Self, RangeError> {
        let subnet = subnet.trunc();
        let family = Family::of_net(&subnet);
        let network = to_u128(subnet.network());
        let last = to_u128(subnet.broadcast());
        // IPv4 keeps the broadcast address out; IPv6 has none but host-local
        // leaves the all-ones address out too.
        if last.saturating_sub(network) < 2 {
            return Err(RangeError::TooSmall(subnet));
        }
        let first_host = network + 1;
        let last_host = last - 1;
        let check = |what: &'static str, addr: IpAddr| {
            let n = to_u128(addr);
            if Family::of(addr) != family || n < network || n > last {
                Err(RangeError::Outside { what, addr, subnet })
            } else {
                Ok(n)
            }
        };
        let gateway = match gateway {
            Some(g) => {
                check("gateway", g)?;
                g
            }
            None => from_u128(family, first_host),
        };
        let start = match start {
            Some(s) => check("rangeStart", s)?,
            None => first_host,
        };
        let end = match end {
            Some(e) => check("rangeEnd", e)?,
            None => last_host,
        };
        if start > end {
            return Err(RangeError::Reversed {
                start: from_u128(family, start),
                end: from_u128(family, end),
            });
        }
        Ok(Self {
            subnet,
            start: from_u128(family, start),
            end: from_u128(family, end),
            gateway,
        })
    }

    /// The family of the range.
    pub fn family(&self) -> Family {
        Family::of_net(&self.subnet)
    }

    /// Whether `addr` may be handed out from this range.
    pub fn contains(&self, addr: IpAddr) -> bool {
        Family::of(addr) == self.family()
            && (to_u128(self.start)..=to_u128(self.end)).contains(&to_u128(addr))
            && addr != self.gateway
    }

    /// How many addresses the range hands out at most.
    pub fn capacity(&self) -> u128 {
        let span = to_u128(self.end) - to_u128(self.start) + 1;
        let gateway_inside =
            (to_u128(self.start)..=to_u128(self.end)).contains(&to_u128(self.gateway));
        span - u128::from(gateway_inside)
    }

    /// `addr` with this range's prefix length (`10.42.3.7/24`).
    pub fn with_prefix(&self, addr: IpAddr) -> IpNet {
        IpNet::new(addr, self.subnet.prefix_len()).unwrap_or_else(|_| IpNet::from(addr))
    }
}

/// Ranges of one family from which one address is handed out (the first range with
/// a free address wins): one entry of `ipam.ranges`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RangeSet {
    /// The ranges, in order.
    pub ranges: Vec<Range>,
}

impl RangeSet {
    /// The family of the set (all its ranges share it).
    pub fn family(&self) -> Option<Family> {
        self.ranges.first().map(Range::family)
    }

    /// The range `addr` belongs to.
    pub fn range_of(&self, addr: IpAddr) -> Option<&Range> {
        self.ranges.iter().find(|r| r.contains(addr))
    }

    /// Whether `addr` may be handed out from this set.
    pub fn contains(&self, addr: IpAddr) -> bool {
        self.range_of(addr).is_some()
    }

    /// The address handed out after `after` (or the first one): round-robin over
    /// every range of the set, wrapping around, skipping the gateways.
    pub fn next_after(&self, after: Option<IpAddr>) -> Option<IpAddr> {
        let (mut idx, mut n) = match after.and_then(|a| {
            self.ranges
                .iter()
                .position(|r| r.contains(a))
                .map(|i| (i, to_u128(a)))
        }) {
            Some((i, n)) => (i, Some(n)),
            None => (0, None),
        };
        // At most every range once, plus the wrap back into the first.
        for _ in 0..=self.ranges.len() {
            let range = self.ranges.get(idx)?;
            let family = range.family();
            let mut candidate = match n {
                Some(prev) => prev + 1,
                None => to_u128(range.start),
            };
            while candidate <= to_u128(range.end) {
                let addr = from_u128(family, candidate);
                if addr != range.gateway {
                    return Some(addr);
                }
                candidate += 1;
            }
            idx = (idx + 1) % self.ranges.len();
            n = None;
        }
        None
    }
}

/// One attachment of a container to a network: the key of a reservation.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Attachment {
    /// `CNI_CONTAINERID`.
    pub container_id: String,
    /// `CNI_IFNAME`.
    pub ifname: String,
}

impl Attachment {
    /// The attachment of `ifname` in container `container_id`.
    pub fn new(container_id: impl Into<String>, ifname: impl Into<String>) -> Self {
        Self {
            container_id: container_id.into(),
            ifname: ifname.into(),
        }
    }

    /// The host end of this attachment's veth pair: `rc` and 13 hex digits of a hash
    /// of the container id and interface name, so DEL, CHECK and GC find it without
    /// the container's network namespace, and two attachments never share one.
    pub fn host_veth(&self) -> String {
        // FNV-1a over "id\0ifname", folded to 52 bits (13 hex digits).
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for byte in self
            .container_id
            .bytes()
            .chain(std::iter::once(0))
            .chain(self.ifname.bytes())
        {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{HOST_VETH_PREFIX}{:013x}", hash & 0x000f_ffff_ffff_ffff)
    }
}

/// The prefix of every host-side veth the plugin creates.
pub const HOST_VETH_PREFIX: &str = "rc";

/// Whether `name` looks like a host veth made by [`Attachment::host_veth`].
pub fn is_host_veth(name: &str) -> bool {
    name.len() == HOST_VETH_PREFIX.len() + 13
        && name.starts_with(HOST_VETH_PREFIX)
        && name[HOST_VETH_PREFIX.len()..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
}

/// One reserved address and who holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation {
    /// The address.
    pub addr: IpAddr,
    /// The holder.
    pub attachment: Attachment,
}

/// An Ethernet address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default, PartialOrd, Ord)]
pub struct MacAddr(pub [u8; 6]);

impl fmt::Display for MacAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let b = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            b[0], b[1], b[2], b[3], b[4], b[5]
        )
    }
}

/// A MAC address that did not parse.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid MAC address {0:?} (want six hex octets separated by colons)")]
pub struct MacParseError(pub String);

impl FromStr for MacAddr {
    type Err = MacParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 6];
        let mut parts = s.split(':');
        for slot in &mut out {
            let part = parts.next().ok_or_else(|| MacParseError(s.to_string()))?;
            if part.len() != 2 {
                return Err(MacParseError(s.to_string()));
            }
            *slot = u8::from_str_radix(part, 16).map_err(|_| MacParseError(s.to_string()))?;
        }
        if parts.next().is_some() {
            return Err(MacParseError(s.to_string()));
        }
        Ok(Self(out))
    }
}

impl MacAddr {
    /// Whether this is a usable unicast address (not zero, not multicast).
    pub fn is_unicast(&self) -> bool {
        self.0 != [0; 6] && self.0[0] & 1 == 0
    }
}

/// Another node of the overlay, as the agent programs it: traffic to `ranges` goes
/// through the VXLAN device to `vtep_mac`, which lives at `underlay`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Peer {
    /// The node's name.
    pub node: String,
    /// The node's pod ranges (one per family).
    pub ranges: Vec<IpNet>,
    /// The MAC address of the node's VXLAN device.
    pub vtep_mac: MacAddr,
    /// The node's underlay address, where its VXLAN packets go.
    pub underlay: IpAddr,
}

/// The next hop and neighbour address the overlay uses for a remote range: the
/// range's network address, as flannel does (the route is `onlink`).
pub fn overlay_next_hop(range: &IpNet) -> IpAddr {
    range.network()
}

/// An interface name as the kernel accepts it: 1 to 15 bytes, no `/`, `:` or
/// whitespace, not `.` or `..`.
pub fn valid_ifname(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= IFNAME_MAX
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/' && b != b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn range_defaults_follow_host_local() {
        let r = Range::new(net("10.42.3.0/24"), None, None, None).unwrap();
        assert_eq!(r.start, ip("10.42.3.1"));
        assert_eq!(r.end, ip("10.42.3.254"));
        assert_eq!(r.gateway, ip("10.42.3.1"));
        assert_eq!(r.capacity(), 253);
        assert!(!r.contains(ip("10.42.3.1")));
        assert!(r.contains(ip("10.42.3.2")));
        assert!(!r.contains(ip("10.42.3.255")));
        assert!(!r.contains(ip("fd00::1")));
    }

    #[test]
    fn range_rejects_bad_bounds() {
        assert!(matches!(
            Range::new(net("10.42.3.0/31"), None, None, None),
            Err(RangeError::TooSmall(_))
        ));
        assert!(matches!(
            Range::new(net("10.42.3.0/24"), Some(ip("10.42.4.1")), None, None),
            Err(RangeError::Outside {
                what: "rangeStart",
                ..
            })
        ));
        assert!(matches!(
            Range::new(net("10.42.3.0/24"), None, None, Some(ip("fd00::1"))),
            Err(RangeError::Outside {
                what: "gateway",
                ..
            })
        ));
        assert!(matches!(
            Range::new(
                net("10.42.3.0/24"),
                Some(ip("10.42.3.9")),
                Some(ip("10.42.3.8")),
                None
            ),
            Err(RangeError::Reversed { .. })
        ));
    }

    #[test]
    fn round_robin_wraps_and_skips_gateways() {
        let set = RangeSet {
            ranges: vec![
                Range::new(net("10.42.3.0/24"), None, Some(ip("10.42.3.3")), None).unwrap(),
                Range::new(net("10.42.9.0/30"), None, None, None).unwrap(),
            ],
        };
        assert_eq!(set.next_after(None), Some(ip("10.42.3.2")));
        assert_eq!(set.next_after(Some(ip("10.42.3.2"))), Some(ip("10.42.3.3")));
        // 10.42.9.0/30: .1 is the gateway, .2 the only pod address.
        assert_eq!(set.next_after(Some(ip("10.42.3.3"))), Some(ip("10.42.9.2")));
        assert_eq!(set.next_after(Some(ip("10.42.9.2"))), Some(ip("10.42.3.2")));
        // An address from elsewhere starts over.
        assert_eq!(set.next_after(Some(ip("192.0.2.1"))), Some(ip("10.42.3.2")));
    }

    #[test]
    fn ipv6_ranges() {
        let r = Range::new(net("fd42:0:0:3::/64"), None, None, None).unwrap();
        assert_eq!(r.gateway, ip("fd42:0:0:3::1"));
        let set = RangeSet { ranges: vec![r] };
        assert_eq!(set.next_after(None), Some(ip("fd42:0:0:3::2")));
    }

    #[test]
    fn host_veth_names_are_stable_short_and_distinct() {
        let a = Attachment::new("abc", "eth0").host_veth();
        assert_eq!(a, Attachment::new("abc", "eth0").host_veth());
        assert_ne!(a, Attachment::new("abc", "eth1").host_veth());
        assert_ne!(a, Attachment::new("abc0", "eth").host_veth());
        assert_eq!(a.len(), IFNAME_MAX);
        assert!(is_host_veth(&a));
        assert!(valid_ifname(&a));
        assert!(!is_host_veth("rcni0"));
    }

    #[test]
    fn mac_round_trip() {
        let mac: MacAddr = "0e:00:0a:fa:01:02".parse().unwrap();
        assert_eq!(mac.to_string(), "0e:00:0a:fa:01:02");
        assert!(mac.is_unicast());
        assert!("0e:00:0a:fa:01".parse::<MacAddr>().is_err());
        assert!("0e:00:0a:fa:01:02:03".parse::<MacAddr>().is_err());
        assert!(!"01:00:5e:00:00:01".parse::<MacAddr>().unwrap().is_unicast());
    }

    #[test]
    fn ifnames() {
        assert!(valid_ifname("eth0"));
        assert!(!valid_ifname(""));
        assert!(!valid_ifname("a/b"));
        assert!(!valid_ifname("0123456789abcdef"));
        assert!(!valid_ifname(".."));
        assert!(!valid_ifname("eth 0"));
    }
}
