//! A blocking rtnetlink socket: one request, its answers, its acknowledgement.
//!
//! A netlink socket belongs to the network namespace of the thread that opened it,
//! for its whole life; [`Netlink::in_netns`] opens one inside a container's
//! namespace and comes straight back, so no other work ever runs there.

use std::{fs::File, io, net::IpAddr, os::fd::AsFd, path::Path};

use ipnet::IpNet;
use netlink_packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::{
    AddressFamily, RouteNetlinkMessage,
    address::{AddressAttribute, AddressHeaderFlags, AddressMessage},
    link::{LinkAttribute, LinkFlags, LinkMessage},
    route::{
        RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteProtocol,
        RouteScope, RouteType,
    },
};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};
use nix::sched::{CloneFlags, setns};

/// Flags of a request that creates and fails when the object exists.
pub(crate) const CREATE_EXCL: u16 = NLM_F_CREATE | NLM_F_EXCL;
/// Flags of a request that creates or replaces.
pub(crate) const CREATE_REPLACE: u16 = NLM_F_CREATE | NLM_F_REPLACE;

/// Why entering a network namespace failed.
#[derive(Debug)]
pub(crate) enum NetnsError {
    /// The path is missing or is not a network namespace.
    NotFound,
    /// Anything else.
    Io(io::Error),
}

pub(crate) struct Netlink {
    socket: Socket,
    seq: u32,
    buf: Vec<u8>,
}

impl Netlink {
    /// A socket in the calling thread's network namespace.
    pub(crate) fn new() -> io::Result<Self> {
        let mut socket = Socket::new(NETLINK_ROUTE)?;
        socket.bind_auto()?;
        socket.connect(&SocketAddr::new(0, 0))?;
        let _ = socket.set_ext_ack(true);
        Ok(Self {
            socket,
            seq: 0,
            buf: vec![0; 64 * 1024],
        })
    }

    /// A socket inside the network namespace at `path`, and that namespace's file
    /// (for moving links into it). The calling thread is back in its own namespace
    /// when this returns.
    pub(crate) fn in_netns(path: &Path) -> Result<(Self, File), NetnsError> {
        let target = File::open(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => NetnsError::NotFound,
            _ => NetnsError::Io(e),
        })?;
        let original = File::open("/proc/thread-self/ns/net").map_err(NetnsError::Io)?;
        setns(target.as_fd(), CloneFlags::CLONE_NEWNET).map_err(|e| match e {
            nix::errno::Errno::EINVAL => NetnsError::NotFound,
            e => NetnsError::Io(io::Error::from(e)),
        })?;
        let socket = Self::new();
        // Back home before anything else happens on this thread.
        setns(original.as_fd(), CloneFlags::CLONE_NEWNET)
            .map_err(|e| NetnsError::Io(io::Error::from(e)))?;
        Ok((socket.map_err(NetnsError::Io)?, target))
    }

    /// Appends `message` with `flags` (plus REQUEST, and ACK unless it is a dump)
    /// to `out`; returns its sequence number.
    fn encode(&mut self, message: RouteNetlinkMessage, flags: u16, out: &mut Vec<u8>) -> u32 {
        self.seq = self.seq.wrapping_add(1);
        let dump = flags & NLM_F_DUMP == NLM_F_DUMP;
        let mut header = NetlinkHeader::default();
        header.flags = NLM_F_REQUEST | flags | if dump { 0 } else { NLM_F_ACK };
        header.sequence_number = self.seq;
        let mut packet = NetlinkMessage::new(header, NetlinkPayload::from(message));
        packet.finalize();
        let start = out.len();
        out.resize(start + packet.buffer_len(), 0);
        packet.serialize(&mut out[start..]);
        self.seq
    }

    /// Reads answers until every request from `first` to `last` (sequence numbers)
    /// has its acknowledgement or end of dump, giving each message to `on`.
    fn receive(
        &mut self,
        first: u32,
        last: u32,
        mut on: impl FnMut(u32, NetlinkPayload<RouteNetlinkMessage>),
    ) -> io::Result<()> {
        let mut pending = last.wrapping_sub(first) + 1;
        while pending > 0 {
            let size = self.socket.recv(&mut &mut self.buf[..], 0)?;
            let mut offset = 0;
            while offset < size {
                let bytes = &self.buf[offset..size];
                let msg: NetlinkMessage<RouteNetlinkMessage> =
                    NetlinkMessage::deserialize(bytes)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string()))?;
                let len = msg.header.length as usize;
                if len == 0 {
                    break;
                }
                offset += len;
                let seq = msg.header.sequence_number;
                if seq.wrapping_sub(first) > last.wrapping_sub(first) {
                    continue;
                }
                if matches!(
                    msg.payload,
                    NetlinkPayload::Error(_) | NetlinkPayload::Done(_)
                ) {
                    pending -= 1;
                }
                on(seq, msg.payload);
            }
        }
        Ok(())
    }

    /// Sends `message` with `flags` (plus REQUEST and ACK) and collects the answers.
    pub(crate) fn request(
        &mut self,
        message: RouteNetlinkMessage,
        flags: u16,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        let mut out = Vec::new();
        let seq = self.encode(message, flags, &mut out);
        self.socket.send(&out, 0)?;
        let mut answers = Vec::new();
        let mut error = None;
        self.receive(seq, seq, |_, payload| match payload {
            NetlinkPayload::Error(e) => {
                error = e.code.map(|code| io::Error::from_raw_os_error(-code.get()));
            }
            NetlinkPayload::InnerMessage(inner) => answers.push(inner),
            _ => {}
        })?;
        match error {
            Some(e) => Err(e),
            None => Ok(answers),
        }
    }

    /// Sends every request (none a dump) in one datagram and waits for all their
    /// acknowledgements: one round trip for the lot. The kernel carries on past a
    /// failed request, so each has its own result, in order.
    pub(crate) fn batch(
        &mut self,
        requests: Vec<(RouteNetlinkMessage, u16)>,
    ) -> io::Result<Vec<io::Result<()>>> {
        if requests.is_empty() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        let count = requests.len();
        let mut first = None;
        let mut last = 0;
        for (message, flags) in requests {
            last = self.encode(message, flags & !NLM_F_DUMP, &mut out);
            first.get_or_insert(last);
        }
        let first = first.unwrap_or(last);
        self.socket.send(&out, 0)?;
        let mut results: Vec<io::Result<()>> = (0..count).map(|_| Ok(())).collect();
        self.receive(first, last, |seq, payload| {
            if let NetlinkPayload::Error(e) = payload
                && let Some(code) = e.code
                && let Some(slot) = results.get_mut(seq.wrapping_sub(first) as usize)
            {
                *slot = Err(io::Error::from_raw_os_error(-code.get()));
            }
        })?;
        Ok(results)
    }

    /// A dump of links.
    pub(crate) fn links(&mut self) -> io::Result<Vec<LinkMessage>> {
        Ok(self
            .request(
                RouteNetlinkMessage::GetLink(LinkMessage::default()),
                NLM_F_DUMP,
            )?
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })
            .collect())
    }

    /// The link called `name`; `None` when there is none.
    pub(crate) fn link(&mut self, name: &str) -> io::Result<Option<LinkMessage>> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(answers) => Ok(answers.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })),
            Err(e) if is_gone(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The link with index `index`; `None` when there is none.
    pub(crate) fn link_by_index(&mut self, index: u32) -> io::Result<Option<LinkMessage>> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        match self.request(RouteNetlinkMessage::GetLink(msg), 0) {
            Ok(answers) => Ok(answers.into_iter().find_map(|m| match m {
                RouteNetlinkMessage::NewLink(l) => Some(l),
                _ => None,
            })),
            Err(e) if is_gone(&e) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Deletes the link called `name`; `Ok(false)` when there is none.
    pub(crate) fn delete_link(&mut self, name: &str) -> io::Result<bool> {
        let mut msg = LinkMessage::default();
        msg.attributes.push(LinkAttribute::IfName(name.to_string()));
        match self.request(RouteNetlinkMessage::DelLink(msg), 0) {
            Ok(_) => Ok(true),
            Err(e) if is_gone(&e) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Sets link `index` up (and promiscuous when asked).
    pub(crate) fn set_up(&mut self, index: u32, promisc: bool) -> io::Result<()> {
        let mut msg = LinkMessage::default();
        msg.header.index = index;
        msg.header.flags = LinkFlags::Up;
        msg.header.change_mask = LinkFlags::Up;
        if promisc {
            msg.header.flags |= LinkFlags::Promisc;
            msg.header.change_mask |= LinkFlags::Promisc;
        }
        self.request(RouteNetlinkMessage::SetLink(msg), 0).map(drop)
    }

    /// The addresses of link `index` (every link when 0).
    pub(crate) fn addresses(&mut self, index: u32) -> io::Result<Vec<IpNet>> {
        let answers = self.request(
            RouteNetlinkMessage::GetAddress(AddressMessage::default()),
            NLM_F_DUMP,
        )?;
        Ok(answers
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) if index == 0 || a.header.index == index => {
                    let addr = a.attributes.iter().find_map(|attr| match attr {
                        AddressAttribute::Local(ip) => Some(*ip),
                        _ => None,
                    });
                    let addr = addr.or_else(|| {
                        a.attributes.iter().find_map(|attr| match attr {
                            AddressAttribute::Address(ip) => Some(*ip),
                            _ => None,
                        })
                    })?;
                    IpNet::new(addr, a.header.prefix_len).ok()
                }
                _ => None,
            })
            .collect())
    }

    /// The request that adds `net` to link `index` (with [`CREATE_EXCL`]).
    pub(crate) fn address_message(index: u32, net: IpNet) -> AddressMessage {
        let mut msg = AddressMessage::default();
        msg.header.family = family(net.addr());
        msg.header.prefix_len = net.prefix_len();
        msg.header.index = index;
        if net.addr().is_ipv6() {
            // No duplicate address detection: the address is ours by reservation,
            // and DAD would hold it "tentative" for a second or more.
            msg.header.flags = AddressHeaderFlags::Nodad;
        }
        msg.attributes.push(AddressAttribute::Local(net.addr()));
        msg.attributes.push(AddressAttribute::Address(net.addr()));
        msg
    }

    /// Adds `net` to link `index`; `Ok` when it is there already.
    pub(crate) fn add_address(&mut self, index: u32, net: IpNet) -> io::Result<()> {
        let msg = Self::address_message(index, net);
        match self.request(RouteNetlinkMessage::NewAddress(msg), CREATE_EXCL) {
            Err(e) if is_exists(&e) => Ok(()),
            other => other.map(drop),
        }
    }

    /// A route to `dst` through link `index` via `gw` (`onlink`: the next hop needs
    /// no route of its own).
    pub(crate) fn route_message(
        index: u32,
        dst: IpNet,
        gw: Option<IpAddr>,
        onlink: bool,
    ) -> RouteMessage {
        let mut msg = RouteMessage::default();
        msg.header.address_family = family(dst.addr());
        msg.header.destination_prefix_length = dst.prefix_len();
        msg.header.table = RouteHeader::RT_TABLE_MAIN;
        msg.header.protocol = RouteProtocol::Boot;
        msg.header.scope = if gw.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        msg.header.kind = RouteType::Unicast;
        if onlink {
            msg.header.flags = RouteFlags::Onlink;
        }
        if dst.prefix_len() > 0 {
            msg.attributes
                .push(RouteAttribute::Destination(RouteAddress::from(
                    dst.network(),
                )));
        }
        if let Some(gw) = gw {
            msg.attributes
                .push(RouteAttribute::Gateway(RouteAddress::from(gw)));
        }
        msg.attributes.push(RouteAttribute::Oif(index));
        msg
    }

    /// Every route of the main table of both families: (destination, gateway, oif).
    pub(crate) fn routes(&mut self) -> io::Result<Vec<(IpNet, Option<IpAddr>, u32)>> {
        let mut out = Vec::new();
        for fam in [AddressFamily::Inet, AddressFamily::Inet6] {
            let mut q = RouteMessage::default();
            q.header.address_family = fam;
            for m in self.request(RouteNetlinkMessage::GetRoute(q), NLM_F_DUMP)? {
                let RouteNetlinkMessage::NewRoute(r) = m else {
                    continue;
                };
                if r.header.table != RouteHeader::RT_TABLE_MAIN {
                    continue;
                }
                let mut dst = None;
                let mut gw = None;
                let mut oif = 0;
                for a in &r.attributes {
                    match a {
                        RouteAttribute::Destination(d) => dst = route_ip(d),
                        RouteAttribute::Gateway(g) => gw = route_ip(g),
                        RouteAttribute::Oif(i) => oif = *i,
                        RouteAttribute::Table(t) if *t != u32::from(RouteHeader::RT_TABLE_MAIN) => {
                            oif = 0;
                        }
                        _ => {}
                    }
                }
                let dst = match dst {
                    Some(d) => IpNet::new(d, r.header.destination_prefix_length).ok(),
                    None if fam == AddressFamily::Inet => {
                        IpNet::new(IpAddr::from([0, 0, 0, 0]), 0).ok()
                    }
                    None => IpNet::new(IpAddr::from([0u16; 8]), 0).ok(),
                };
                if let Some(dst) = dst {
                    out.push((dst, gw, oif));
                }
            }
        }
        Ok(out)
    }
}

/// The address family of `addr`.
pub(crate) fn family(addr: IpAddr) -> AddressFamily {
    match addr {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    }
}

pub(crate) fn route_ip(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// Whether `e` says the object does not exist.
pub(crate) fn is_gone(e: &io::Error) -> bool {
    use nix::errno::Errno;
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::ENODEV | Errno::ENOENT | Errno::ESRCH | Errno::EADDRNOTAVAIL)
    )
}

/// Whether `e` says the object exists.
pub(crate) fn is_exists(e: &io::Error) -> bool {
    e.raw_os_error() == Some(nix::errno::Errno::EEXIST as i32)
}
