//! Pod addresses in loopback mode: the pod `10.42.N.H` of a node whose range is
//! `10.42.N.0/24` is served on `127.B.N.H`, where `B` is picked at random per cluster so
//! that sandboxes running side by side rarely meet; an address whose port is taken
//! anyway is skipped for the next one.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use crate::allocate::parse_ipv4_cidr;

/// The first host index handed out in a node range (`.1` is the range's gateway).
const FIRST_HOST: u8 = 2;

/// Loopback pod addresses of one cluster.
#[derive(Debug)]
pub(crate) struct Loopback {
    octet: u8,
    used: HashSet<Ipv4Addr>,
    /// Where the next search starts, so a freed address is not reused at once.
    cursor: u8,
}

impl Loopback {
    /// Addresses under `127.octet.0.0/16`.
    pub(crate) fn new(octet: u8) -> Self {
        Self {
            octet,
            used: HashSet::new(),
            cursor: FIRST_HOST,
        }
    }

    /// A random second octet in `64..=254`, clear of `127.0.x.x` (host addresses, DNS).
    pub(crate) fn random_octet() -> u8 {
        fastrand::u8(64..=254)
    }

    /// The loopback network pod addresses come from, e.g. `127.77.0.0/16`.
    pub(crate) fn network(&self) -> String {
        format!("127.{}.0.0/16", self.octet)
    }

    /// A free address in the node range `range` (such as `10.42.3.0/24`), not in `avoid`.
    pub(crate) fn allocate(&mut self, range: &str, avoid: &HashSet<Ipv4Addr>) -> Option<Ipv4Addr> {
        let (net, _) = parse_ipv4_cidr(range, 8..=30)?;
        let third = net.octets()[2];
        for step in 0..u16::from(u8::MAX - FIRST_HOST) {
            let host = FIRST_HOST
                + u8::try_from(
                    (u16::from(self.cursor - FIRST_HOST) + step) % u16::from(u8::MAX - FIRST_HOST),
                )
                .ok()?;
            let ip = Ipv4Addr::new(127, self.octet, third, host);
            if !self.used.contains(&ip) && !avoid.contains(&ip) {
                self.used.insert(ip);
                self.cursor = if host >= u8::MAX - 1 {
                    FIRST_HOST
                } else {
                    host + 1
                };
                return Some(ip);
            }
        }
        None
    }

    /// Gives an address back.
    pub(crate) fn release(&mut self, ip: Ipv4Addr) {
        self.used.remove(&ip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_mirror_the_node_range() {
        let mut net = Loopback::new(77);
        let a = net.allocate("10.42.3.0/24", &HashSet::new()).unwrap();
        assert_eq!(a, Ipv4Addr::new(127, 77, 3, 2));
        let b = net
            .allocate(
                "10.42.3.0/24",
                &HashSet::from([Ipv4Addr::new(127, 77, 3, 3)]),
            )
            .unwrap();
        assert_eq!(b, Ipv4Addr::new(127, 77, 3, 4));
        net.release(a);
        // Freed addresses come back only after the others.
        assert_eq!(
            net.allocate("10.42.3.0/24", &HashSet::new()).unwrap(),
            Ipv4Addr::new(127, 77, 3, 5)
        );
        assert!(net.allocate("not a range", &HashSet::new()).is_none());
        assert_eq!(net.network(), "127.77.0.0/16");
    }

    #[test]
    fn a_full_range_gives_none() {
        let mut net = Loopback::new(70);
        let mut n = 0;
        while net.allocate("10.42.0.0/24", &HashSet::new()).is_some() {
            n += 1;
        }
        assert_eq!(n, 253);
    }
}
