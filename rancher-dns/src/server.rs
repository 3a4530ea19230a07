//! The built-in DNS server: UDP on one `SO_REUSEPORT` socket per core, each
//! served by its own thread; TCP on a tokio listener; answers from the
//! current [`Snapshot`]; everything else forwarded upstream.
//!
//! An alias answer (an ExternalName Service's CNAME) is followed as CoreDNS
//! does: the target's answers for the same type are appended, from the
//! snapshot when the target is in a cluster zone, else from upstream (through
//! the cache), so that stub resolvers that do not follow CNAMEs themselves
//! still get addresses. At most [`MAX_CHASE`] aliases are followed.

use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use arc_swap::ArcSwap;
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use hickory_proto::op::Message;
use hickory_proto::rr::RData as HRData;

use crate::forward::{self, ForwardConfig, Forwarder};
use crate::metrics::Metrics;
use crate::name;
use crate::snapshot::Snapshot;
use crate::wire::{self, ParseError, Query, RA, Rcode};

/// Errors starting the server.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Binding a socket failed: the address is taken (by another process,
    /// another rancher-dns included), not local, or needs privileges.
    #[error("binding the dns server ({protocol}) to {addr}")]
    Bind {
        /// `udp` or `tcp`.
        protocol: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Starting a worker thread failed.
    #[error("starting a UDP worker failed")]
    Thread(#[source] io::Error),
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Default listen address.
pub const DEFAULT_LISTEN: &str = "0.0.0.0:53";

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// UDP and TCP address (port 0 picks one, the same for both).
    pub listen: SocketAddr,
    /// UDP sockets/threads; 0 means one per core.
    pub udp_threads: usize,
    /// Forwarding of names outside the cluster zones.
    pub forward: ForwardConfig,
    /// Idle TCP connections are closed after this long.
    pub tcp_idle_timeout: Duration,
    /// Most concurrent TCP connections.
    pub max_tcp_connections: usize,
    /// Most concurrent upstream exchanges; more are answered SERVFAIL.
    pub max_forwards: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 53)),
            udp_threads: 0,
            forward: ForwardConfig::default(),
            tcp_idle_timeout: Duration::from_secs(10),
            max_tcp_connections: 1024,
            max_forwards: 4096,
        }
    }
}

/// The most aliases followed for one query.
pub const MAX_CHASE: usize = 8;

/// What to do with a packet.
#[derive(Debug)]
pub enum Outcome {
    /// Send the response written to the output buffer.
    Reply,
    /// Forward upstream.
    Forward(Box<Query>),
    /// An alias answer whose target is answered upstream: finish it with
    /// [`Handler::chase`].
    Chase(Box<Chase>),
    /// Send nothing.
    Drop,
}

/// An alias answer waiting for its target's answers from upstream.
#[derive(Debug)]
pub struct Chase {
    /// The client's query.
    client: Query,
    /// The response so far: the alias records.
    response: Vec<u8>,
    /// The query for the target, as sent upstream.
    packet: Vec<u8>,
    /// The same, parsed.
    query: Query,
}

/// Answers packets: shared by the UDP workers and TCP connections.
#[derive(Debug)]
pub struct Handler {
    snapshot: Arc<ArcSwap<Snapshot>>,
    forwarder: Option<Forwarder>,
    metrics: Metrics,
    forwards: Arc<Semaphore>,
}

impl Handler {
    /// A handler answering from `snapshot`, forwarding per `config`.
    pub fn new(snapshot: Arc<ArcSwap<Snapshot>>, config: &ServerConfig, metrics: Metrics) -> Self {
        let forwarder =
            (!config.forward.upstreams.is_empty()).then(|| Forwarder::new(config.forward.clone()));
        Self {
            snapshot,
            forwarder,
            metrics,
            forwards: Arc::new(Semaphore::new(config.max_forwards)),
        }
    }

    /// Answers `packet` into `out` from the snapshot or the cache.
    pub fn answer(&self, packet: &[u8], out: &mut Vec<u8>, tcp: bool) -> Outcome {
        self.answer_at(packet, out, tcp, 0)
    }

    /// [`answer`](Self::answer) for a client query (`depth` 0) or for the
    /// target of an alias being followed (not counted in the metrics).
    fn answer_at(&self, packet: &[u8], out: &mut Vec<u8>, tcp: bool, depth: usize) -> Outcome {
        let metrics = (depth == 0).then_some(&self.metrics);
        let q = match wire::parse_query(packet) {
            Ok(q) => q,
            Err(ParseError::Drop) => {
                if let Some(m) = metrics {
                    m.dropped.inc();
                }
                return Outcome::Drop;
            }
            Err(ParseError::Reject { id, flags, rcode }) => {
                wire::reject_response(out, id, flags, rcode);
                if let Some(m) = metrics {
                    m.query(0, rcode);
                }
                return Outcome::Reply;
            }
        };
        let limit = if tcp {
            usize::from(u16::MAX)
        } else {
            q.udp_limit()
        };
        let snapshot = self.snapshot.load();
        if let Some(rcode) = snapshot.respond(packet, &q, out, limit) {
            if self.forwarder.is_some() {
                out[3] |= RA as u8;
            }
            if rcode == Rcode::NoError
                && let Some(target) = alias_target(out, &q)
            {
                return self.follow(q, out, &target, tcp, depth);
            }
            if let Some(m) = metrics {
                m.query(q.qtype, rcode);
            }
            return Outcome::Reply;
        }
        let Some(forwarder) = &self.forwarder else {
            wire::begin_response(out, packet, &q, 0, Rcode::Refused);
            wire::finish_response(out, &q, q.question_end - 12, limit);
            if let Some(m) = metrics {
                m.query(q.qtype, Rcode::Refused);
            }
            return Outcome::Reply;
        };
        if forwarder.cached(packet, &q, out, limit) {
            if let Some(m) = metrics {
                m.cache_hits.inc();
                m.query(q.qtype, rcode_of(out));
            }
            return Outcome::Reply;
        }
        Outcome::Forward(Box::new(q))
    }

    /// Appends the answers for `target` to the alias answer in `out`: now
    /// when the snapshot or the cache has them, else as an [`Outcome::Chase`].
    fn follow(
        &self,
        q: Query,
        out: &mut Vec<u8>,
        target: &str,
        tcp: bool,
        depth: usize,
    ) -> Outcome {
        let limit = if tcp {
            usize::from(u16::MAX)
        } else {
            q.udp_limit()
        };
        let done = |out: &mut Vec<u8>| {
            if depth == 0 {
                self.metrics.query(q.qtype, rcode_of(out));
            }
            Outcome::Reply
        };
        if depth + 1 >= MAX_CHASE {
            return done(out);
        }
        let packet = target_query(target, &q);
        let mut found = Vec::new();
        match self.answer_at(&packet, &mut found, true, depth + 1) {
            Outcome::Reply => {
                append_answers(out, &found, &q, limit);
                done(out)
            }
            Outcome::Forward(query) => Outcome::Chase(Box::new(Chase {
                client: q,
                response: std::mem::take(out),
                packet,
                query: *query,
            })),
            Outcome::Chase(inner) => {
                // The target is an alias too, whose own target is upstream.
                append_answers(out, &inner.response, &q, usize::from(u16::MAX));
                Outcome::Chase(Box::new(Chase {
                    client: q,
                    response: std::mem::take(out),
                    packet: inner.packet,
                    query: inner.query,
                }))
            }
            Outcome::Drop => done(out),
        }
    }

    /// Finishes an alias answer with its target's answers from upstream;
    /// when upstream fails, the alias answer alone.
    pub async fn chase(&self, chase: Chase, tcp: bool) -> Vec<u8> {
        let Chase {
            client,
            mut response,
            packet,
            query,
        } = chase;
        let limit = if tcp {
            usize::from(u16::MAX)
        } else {
            client.udp_limit()
        };
        if let Some(found) = self.exchange(&packet, &query).await {
            append_answers(&mut response, &found, &client, limit);
        } else {
            forward::fit(&mut response, &client, limit);
        }
        self.metrics.query(client.qtype, rcode_of(&response));
        response
    }

    /// One upstream exchange (or `None`), within the forwarding limit.
    async fn exchange(&self, packet: &[u8], q: &Query) -> Option<Vec<u8>> {
        let (Some(forwarder), Ok(_permit)) = (&self.forwarder, self.forwards.try_acquire()) else {
            return None;
        };
        self.metrics.cache_misses.inc();
        match forwarder.forward(packet, q).await {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::debug!(error = %e, "forwarding failed");
                self.metrics.upstream_errors.inc();
                None
            }
        }
    }

    /// Forwards a query upstream; SERVFAIL when no upstream answers.
    pub async fn forward(&self, packet: &[u8], q: &Query, tcp: bool) -> Vec<u8> {
        let limit = if tcp {
            usize::from(u16::MAX)
        } else {
            q.udp_limit()
        };
        let servfail = |metrics: &Metrics| {
            let mut out = Vec::new();
            wire::begin_response(&mut out, packet, q, RA, Rcode::ServFail);
            wire::finish_response(&mut out, q, q.question_end - 12, limit);
            metrics.query(q.qtype, Rcode::ServFail);
            out
        };
        match self.exchange(packet, q).await {
            Some(mut r) => {
                forward::fit(&mut r, q, limit);
                self.metrics.query(q.qtype, rcode_of(&r));
                r
            }
            None => servfail(&self.metrics),
        }
    }
}

/// The target of a response that answers `q` with an alias only: one CNAME
/// record, for a type other than CNAME and ANY.
fn alias_target(response: &[u8], q: &Query) -> Option<String> {
    const CNAME: u16 = 5;
    const ANY: u16 = 255;
    if q.qtype == CNAME || q.qtype == ANY || response.get(6..8)? != [0, 1] {
        return None;
    }
    let at = wire::skip_name(response, q.question_end)?;
    if response.get(at..at + 2)? != CNAME.to_be_bytes() {
        return None;
    }
    let message = Message::from_vec(response).ok()?;
    match &message.answers.first()?.data {
        HRData::CNAME(target) => Some(target.0.to_ascii().trim_end_matches('.').to_owned()),
        _ => None,
    }
}

/// A recursive query for `target` with the client's type, class and EDNS.
fn target_query(target: &str, q: &Query) -> Vec<u8> {
    let mut p = Vec::with_capacity(target.len() + 32);
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(&wire::RD.to_be_bytes());
    p.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, u8::from(q.edns.is_some())]);
    p.extend_from_slice(&name::to_wire(target));
    p.extend_from_slice(&q.qtype.to_be_bytes());
    p.extend_from_slice(&q.qclass.to_be_bytes());
    if q.edns.is_some() {
        p.extend_from_slice(&[0, 0, 41]);
        p.extend_from_slice(&wire::EDNS_PAYLOAD.to_be_bytes());
        p.extend_from_slice(&[0; 6]);
    }
    p
}

/// Appends the answer records of `found` to the response in `out`, then
/// truncates it to `limit` (with TC) if it grew too large. `out` is left as
/// it was when either does not parse.
fn append_answers(out: &mut Vec<u8>, found: &[u8], q: &Query, limit: usize) {
    let (Ok(mut message), Ok(found)) = (Message::from_vec(out), Message::from_vec(found)) else {
        return;
    };
    for record in found.answers {
        // An alias loop would repeat the same records.
        if !message.answers.contains(&record) {
            message.answers.push(record);
        }
    }
    if let Ok(bytes) = message.to_vec() {
        *out = bytes;
    }
    forward::fit(out, q, limit);
}

fn rcode_of(r: &[u8]) -> Rcode {
    r.get(3)
        .and_then(|b| Rcode::from_code(b & 0x0f))
        .unwrap_or(Rcode::ServFail)
}

/// A running server. Dropping it stops the workers.
#[derive(Debug)]
pub struct Server {
    local_addr: SocketAddr,
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    tcp: tokio::task::JoinHandle<()>,
}

/// A UDP socket; `share` sets `SO_REUSEPORT` so that one socket per core
/// can bind the same address. A shared port can also be joined by any other
/// socket of the same user that asks for it, a second rancher-dns included:
/// [`Server::start`] first binds the address without `SO_REUSEPORT` to prove
/// that nobody holds it.
fn udp_socket(addr: SocketAddr, share: bool) -> io::Result<StdUdpSocket> {
    let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
    s.set_reuse_port(share)?;
    // A larger receive buffer absorbs bursts; the kernel caps it.
    let _ = s.set_recv_buffer_size(4 << 20);
    s.bind(&addr.into())?;
    s.set_read_timeout(Some(Duration::from_millis(200)))?;
    Ok(s.into())
}

fn tcp_listener(addr: SocketAddr) -> io::Result<StdTcpListener> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    s.set_nonblocking(true)?;
    Ok(s.into())
}

impl Server {
    /// Binds UDP and TCP and starts serving. Must be called within a tokio
    /// runtime (forwarding and TCP run on it).
    pub fn start(
        config: &ServerConfig,
        snapshot: Arc<ArcSwap<Snapshot>>,
        metrics: Metrics,
    ) -> Result<Self> {
        let handler = Arc::new(Handler::new(snapshot, config, metrics));
        let bind_err = |protocol, addr| {
            move |source| Error::Bind {
                protocol,
                addr,
                source,
            }
        };
        let threads = match config.udp_threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        };
        // The address must be free for UDP and TCP: an exclusive UDP socket
        // (no SO_REUSEPORT) proves that no other process holds the UDP port,
        // even one that would let us share it, and the TCP listener, held from
        // here on, keeps a second rancher-dns from passing the same check
        // while the exclusive socket makes way for the shared ones. With port
        // 0 the kernel picks a free UDP port; TCP takes the same number, so
        // try again when that is taken for TCP.
        let attempts = if config.listen.port() == 0 { 20 } else { 1 };
        let mut bound = None;
        for attempt in 1..=attempts {
            let probe = udp_socket(config.listen, false).map_err(bind_err("udp", config.listen))?;
            let local_addr = probe.local_addr().map_err(bind_err("udp", config.listen))?;
            match tcp_listener(local_addr).and_then(TcpListener::from_std) {
                Ok(listener) => {
                    bound = Some((probe, local_addr, listener));
                    break;
                }
                Err(e) if attempt < attempts && e.kind() == io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(bind_err("tcp", local_addr)(e)),
            }
        }
        let Some((probe, local_addr, listener)) = bound else {
            return Err(bind_err("tcp", config.listen)(
                io::ErrorKind::AddrInUse.into(),
            ));
        };
        let sockets = if threads > 1 {
            drop(probe);
            let mut sockets = Vec::with_capacity(threads);
            for _ in 0..threads {
                sockets.push(udp_socket(local_addr, true).map_err(bind_err("udp", local_addr))?);
            }
            sockets
        } else {
            vec![probe]
        };
        let stop = Arc::new(AtomicBool::new(false));
        let runtime = tokio::runtime::Handle::current();
        let mut handles = Vec::new();
        for (n, socket) in sockets.into_iter().enumerate() {
            let (h, stop, rt) = (handler.clone(), stop.clone(), runtime.clone());
            let socket = Arc::new(socket);
            let t = std::thread::Builder::new()
                .name(format!("dns-udp-{n}"))
                .spawn(move || batch::udp_loop(&socket, &h, &stop, &rt))
                .map_err(Error::Thread)?;
            handles.push(t);
        }
        let tcp = tokio::spawn(tcp_loop(
            listener,
            handler,
            Arc::new(Semaphore::new(config.max_tcp_connections)),
            config.tcp_idle_timeout,
        ));
        tracing::info!(%local_addr, udp_sockets = threads, "dns server listening");
        Ok(Self {
            local_addr,
            stop,
            threads: handles,
            tcp,
        })
    }

    /// The bound address (UDP and TCP).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Stops the workers and waits for them.
    pub async fn shutdown(mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.tcp.abort();
        let threads = std::mem::take(&mut self.threads);
        let _ = tokio::task::spawn_blocking(move || {
            for t in threads {
                let _ = t.join();
            }
        })
        .await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.tcp.abort();
    }
}

/// One datagram at a time (platforms without `recvmmsg`).
#[cfg_attr(target_os = "linux", allow(dead_code))]
fn udp_loop(
    socket: &Arc<StdUdpSocket>,
    handler: &Arc<Handler>,
    stop: &AtomicBool,
    rt: &tokio::runtime::Handle,
) {
    let mut buf = vec![0u8; 65535];
    let mut out = Vec::with_capacity(4096);
    while !stop.load(Ordering::Relaxed) {
        let (n, peer) = match socket.recv_from(&mut buf) {
            Ok(x) => x,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue;
            }
            Err(e) => {
                tracing::debug!(error = %e, "udp receive failed");
                continue;
            }
        };
        let packet = &buf[..n];
        match handler.answer(packet, &mut out, false) {
            Outcome::Reply => {
                let _ = socket.send_to(&out, peer);
            }
            Outcome::Drop => {}
            Outcome::Forward(q) => {
                let (packet, h, s) = (packet.to_vec(), handler.clone(), socket.clone());
                rt.spawn(async move {
                    let r = h.forward(&packet, &q, false).await;
                    let _ = s.send_to(&r, peer);
                });
            }
            Outcome::Chase(c) => {
                let (h, s) = (handler.clone(), socket.clone());
                rt.spawn(async move {
                    let r = h.chase(*c, false).await;
                    let _ = s.send_to(&r, peer);
                });
            }
        }
    }
}

#[cfg(not(target_os = "linux"))]
mod batch {
    pub(super) use super::udp_loop;
}

/// Batched UDP: `recvmmsg` up to [`BATCH`](batch::BATCH) queries per system
/// call, answer them, `sendmmsg` the answers.
#[cfg(target_os = "linux")]
mod batch {
    use std::io::{IoSlice, IoSliceMut};
    use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
    use std::os::fd::AsRawFd;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use nix::errno::Errno;
    use nix::sys::socket::{MsgFlags, MultiHeaders, SockaddrStorage, recvmmsg, sendmmsg};

    use super::{Handler, Outcome};

    /// Datagrams per system call.
    pub(super) const BATCH: usize = 32;
    /// Largest query read (larger ones are cut and answered FORMERR).
    const MAX_QUERY: usize = 4096;

    fn to_std(addr: &SockaddrStorage) -> Option<SocketAddr> {
        if let Some(v4) = addr.as_sockaddr_in() {
            return Some(SocketAddr::V4((*v4).into()));
        }
        addr.as_sockaddr_in6()
            .map(|v6| SocketAddr::V6((*v6).into()))
    }

    pub(super) fn udp_loop(
        socket: &Arc<StdUdpSocket>,
        handler: &Arc<Handler>,
        stop: &AtomicBool,
        rt: &tokio::runtime::Handle,
    ) {
        let fd = socket.as_raw_fd();
        let mut bufs = vec![[0u8; MAX_QUERY]; BATCH];
        let mut outs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(1232)).collect();
        let mut recv_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
        let mut send_headers = MultiHeaders::<SockaddrStorage>::preallocate(BATCH, None);
        let mut received: Vec<(usize, Option<SockaddrStorage>)> = Vec::with_capacity(BATCH);
        let mut replies: Vec<(usize, SockaddrStorage)> = Vec::with_capacity(BATCH);
        while !stop.load(Ordering::Relaxed) {
            received.clear();
            {
                let mut iovs: Vec<[IoSliceMut<'_>; 1]> = bufs
                    .iter_mut()
                    .map(|b| [IoSliceMut::new(&mut b[..])])
                    .collect();
                match recvmmsg(
                    fd,
                    &mut recv_headers,
                    iovs.iter_mut(),
                    MsgFlags::MSG_WAITFORONE,
                    None,
                ) {
                    Ok(msgs) => received.extend(msgs.map(|m| (m.bytes, m.address))),
                    Err(Errno::EAGAIN | Errno::EINTR) => continue,
                    Err(e) => {
                        tracing::debug!(error = %e, "udp receive failed");
                        continue;
                    }
                }
            }
            replies.clear();
            for (i, (len, addr)) in received.iter().enumerate() {
                let Some(addr) = addr else { continue };
                let packet = &bufs[i][..(*len).min(MAX_QUERY)];
                match handler.answer(packet, &mut outs[i], false) {
                    Outcome::Reply => replies.push((i, *addr)),
                    Outcome::Drop => {}
                    Outcome::Forward(q) => {
                        let Some(peer) = to_std(addr) else { continue };
                        let (packet, h, s) = (packet.to_vec(), handler.clone(), socket.clone());
                        rt.spawn(async move {
                            let r = h.forward(&packet, &q, false).await;
                            let _ = s.send_to(&r, peer);
                        });
                    }
                    Outcome::Chase(c) => {
                        let Some(peer) = to_std(addr) else { continue };
                        let (h, s) = (handler.clone(), socket.clone());
                        rt.spawn(async move {
                            let r = h.chase(*c, false).await;
                            let _ = s.send_to(&r, peer);
                        });
                    }
                }
            }
            let mut sent = 0;
            while sent < replies.len() {
                let pending = &replies[sent..];
                let iovs: Vec<[IoSlice<'_>; 1]> = pending
                    .iter()
                    .map(|(i, _)| [IoSlice::new(&outs[*i])])
                    .collect();
                let addrs: Vec<Option<SockaddrStorage>> =
                    pending.iter().map(|(_, a)| Some(*a)).collect();
                match sendmmsg(fd, &mut send_headers, &iovs, addrs, [], MsgFlags::empty()) {
                    Ok(done) => {
                        let n = done.count();
                        // A datagram the kernel refused is skipped, not retried forever.
                        sent += n.max(1);
                    }
                    Err(Errno::EINTR) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "udp send failed");
                        sent += 1;
                    }
                }
            }
        }
    }
}

async fn tcp_loop(
    listener: TcpListener,
    handler: Arc<Handler>,
    slots: Arc<Semaphore>,
    idle: Duration,
) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let h = handler.clone();
        tokio::spawn(async move {
            let _ = tcp_conn(stream, &h, idle).await;
            drop(permit);
        });
    }
}

async fn tcp_conn(mut stream: TcpStream, handler: &Handler, idle: Duration) -> io::Result<()> {
    let mut buf = Vec::new();
    let mut out = Vec::with_capacity(4096);
    loop {
        let Ok(len) = tokio::time::timeout(idle, stream.read_u16()).await else {
            return Ok(());
        };
        let len = usize::from(len?);
        buf.resize(len, 0);
        tokio::time::timeout(idle, stream.read_exact(&mut buf))
            .await
            .map_err(io::Error::other)??;
        let response = match handler.answer(&buf, &mut out, true) {
            Outcome::Reply => std::mem::take(&mut out),
            Outcome::Drop => return Ok(()),
            Outcome::Forward(q) => handler.forward(&buf, &q, true).await,
            Outcome::Chase(c) => handler.chase(*c, true).await,
        };
        let len = u16::try_from(response.len()).unwrap_or(u16::MAX);
        let mut framed = Vec::with_capacity(response.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(&response);
        stream.write_all(&framed).await?;
        out = response;
    }
}
