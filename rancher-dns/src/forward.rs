//! Forwarding of names outside the cluster zone to upstream resolvers, with a
//! bounded cache that honours TTLs and caches negative answers (RFC 2308).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RData as HRData;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

use crate::wire::{self, Query, TC};

/// Errors from an upstream exchange.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No upstream answered in time.
    #[error("no upstream answered within {0:?}")]
    Timeout(Duration),
    /// Socket error talking to an upstream.
    #[error("upstream i/o failed")]
    Io(#[from] std::io::Error),
    /// No upstream is configured.
    #[error("no upstream resolver configured")]
    NoUpstream,
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Forwarder settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardConfig {
    /// Upstream resolvers, tried in order.
    pub upstreams: Vec<SocketAddr>,
    /// Time to wait for one upstream.
    pub timeout: Duration,
    /// Most cached responses.
    pub cache_capacity: usize,
    /// Longest time a positive answer is cached.
    pub max_ttl: Duration,
    /// Longest time a negative answer is cached.
    pub max_negative_ttl: Duration,
}

impl Default for ForwardConfig {
    fn default() -> Self {
        Self {
            upstreams: Vec::new(),
            timeout: Duration::from_secs(2),
            cache_capacity: 10_000,
            max_ttl: Duration::from_secs(3600),
            max_negative_ttl: Duration::from_secs(300),
        }
    }
}

/// Reads `nameserver` lines from a resolv.conf-style text (port 53).
pub fn parse_resolv_conf(text: &str) -> Vec<SocketAddr> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|rest| rest.split_whitespace().next())
        .filter_map(|ip| ip.split('%').next()?.parse::<std::net::IpAddr>().ok())
        .map(|ip| SocketAddr::new(ip, 53))
        .collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Key {
    name: Box<[u8]>,
    qtype: u16,
    qclass: u16,
    edns: bool,
}

#[derive(Debug)]
struct Cached {
    response: Box<[u8]>,
    ttl_offsets: Box<[u16]>,
    stored: Instant,
    ttl: u32,
}

/// Forwards queries upstream and caches the answers.
#[derive(Debug)]
pub struct Forwarder {
    config: ForwardConfig,
    cache: Mutex<HashMap<Key, Cached>>,
}

impl Forwarder {
    /// A forwarder with an empty cache.
    pub fn new(config: ForwardConfig) -> Self {
        Self {
            config,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &ForwardConfig {
        &self.config
    }

    /// Number of cached responses.
    pub fn cache_len(&self) -> usize {
        self.cache.lock().map_or(0, |c| c.len())
    }

    fn key(q: &Query) -> Key {
        Key {
            name: q.qname.as_wire().into(),
            qtype: q.qtype,
            qclass: q.qclass,
            edns: q.edns.is_some(),
        }
    }

    /// Answers from the cache into `out` when a fresh entry exists, with
    /// every TTL reduced by the entry's age.
    pub fn cached(&self, packet: &[u8], q: &Query, out: &mut Vec<u8>, limit: usize) -> bool {
        let Ok(cache) = self.cache.lock() else {
            return false;
        };
        let Some(c) = cache.get(&Self::key(q)) else {
            return false;
        };
        let age = u32::try_from(c.stored.elapsed().as_secs()).unwrap_or(u32::MAX);
        if age >= c.ttl {
            return false;
        }
        out.clear();
        out.extend_from_slice(&c.response);
        for off in c.ttl_offsets.iter() {
            let i = usize::from(*off);
            if let Some(b) = out.get_mut(i..i + 4) {
                let ttl = u32::from_be_bytes([b[0], b[1], b[2], b[3]]).saturating_sub(age);
                b.copy_from_slice(&ttl.to_be_bytes());
            }
        }
        drop(cache);
        out[0..2].copy_from_slice(&q.id.to_be_bytes());
        // Echo this client's question (same length: same name, other case).
        if out.len() >= q.question_end {
            out[12..q.question_end].copy_from_slice(&packet[12..q.question_end]);
        }
        fit(out, q, limit);
        true
    }

    /// Sends the query upstream (UDP, then TCP when truncated) and returns
    /// the response with the client's id, caching it when cacheable.
    pub async fn forward(&self, packet: &[u8], q: &Query) -> Result<Vec<u8>> {
        if self.config.upstreams.is_empty() {
            return Err(Error::NoUpstream);
        }
        let mut last = Error::Timeout(self.config.timeout);
        for upstream in &self.config.upstreams {
            match self.exchange(*upstream, packet, q).await {
                Ok(mut response) => {
                    // Not authoritative here; recursion is available.
                    response[2] &= !((wire::AA >> 8) as u8);
                    response[3] |= wire::RA as u8;
                    self.store(q, &response);
                    response[0..2].copy_from_slice(&q.id.to_be_bytes());
                    return Ok(response);
                }
                Err(e) => {
                    tracing::debug!(%upstream, error = %e, "upstream exchange failed");
                    last = e;
                }
            }
        }
        Err(last)
    }

    async fn exchange(&self, upstream: SocketAddr, packet: &[u8], q: &Query) -> Result<Vec<u8>> {
        let id: u16 = fastrand::u16(..);
        let mut msg = packet.to_vec();
        msg[0..2].copy_from_slice(&id.to_be_bytes());
        let bind: SocketAddr = if upstream.is_ipv4() {
            ([0, 0, 0, 0], 0).into()
        } else {
            ([0u16; 8], 0).into()
        };
        let socket = UdpSocket::bind(bind).await?;
        socket.connect(upstream).await?;
        socket.send(&msg).await?;
        let mut buf = vec![0u8; 65535];
        let deadline = tokio::time::Instant::now() + self.config.timeout;
        loop {
            let n = tokio::time::timeout_at(deadline, socket.recv(&mut buf))
                .await
                .map_err(|_| Error::Timeout(self.config.timeout))??;
            let r = &buf[..n];
            if !matches_query(r, id, packet, q) {
                continue;
            }
            let flags = u16::from_be_bytes([r[2], r[3]]);
            if flags & TC != 0 {
                return self.exchange_tcp(upstream, &msg, id, packet, q).await;
            }
            return Ok(r.to_vec());
        }
    }

    async fn exchange_tcp(
        &self,
        upstream: SocketAddr,
        msg: &[u8],
        id: u16,
        packet: &[u8],
        q: &Query,
    ) -> Result<Vec<u8>> {
        let work = async {
            let mut stream = TcpStream::connect(upstream).await?;
            let len = u16::try_from(msg.len()).unwrap_or(u16::MAX);
            let mut framed = len.to_be_bytes().to_vec();
            framed.extend_from_slice(msg);
            stream.write_all(&framed).await?;
            let len = stream.read_u16().await?;
            let mut buf = vec![0u8; usize::from(len)];
            stream.read_exact(&mut buf).await?;
            Ok::<_, std::io::Error>(buf)
        };
        let buf = tokio::time::timeout(self.config.timeout, work)
            .await
            .map_err(|_| Error::Timeout(self.config.timeout))??;
        if !matches_query(&buf, id, packet, q) {
            return Err(Error::Io(std::io::Error::other(
                "upstream answered another question",
            )));
        }
        Ok(buf)
    }

    fn store(&self, q: &Query, response: &[u8]) {
        let Some(ttl) = self.cacheable_ttl(response) else {
            return;
        };
        let Some(ttl_offsets) = ttl_offsets(response) else {
            return;
        };
        let Ok(mut cache) = self.cache.lock() else {
            return;
        };
        if cache.len() >= self.config.cache_capacity {
            let now = Instant::now();
            cache.retain(|_, c| now.duration_since(c.stored).as_secs() < u64::from(c.ttl));
            while cache.len() >= self.config.cache_capacity {
                let Some(k) = cache.keys().next().cloned() else {
                    break;
                };
                cache.remove(&k);
            }
        }
        if self.config.cache_capacity == 0 {
            return;
        }
        let mut stored = response.to_vec();
        stored[0..2].copy_from_slice(&[0, 0]);
        cache.insert(
            Self::key(q),
            Cached {
                response: stored.into(),
                ttl_offsets: ttl_offsets.into(),
                stored: Instant::now(),
                ttl,
            },
        );
    }

    /// How long a response may be cached: the smallest TTL for a positive
    /// answer, min(SOA TTL, SOA minimum) for a negative one (RFC 2308);
    /// `None` for errors, truncated answers and negatives without SOA.
    fn cacheable_ttl(&self, response: &[u8]) -> Option<u32> {
        let m = Message::from_vec(response).ok()?;
        if m.metadata.truncation {
            return None;
        }
        let cap = |d: Duration| u32::try_from(d.as_secs()).unwrap_or(u32::MAX);
        let negative = match m.metadata.response_code {
            ResponseCode::NXDomain => true,
            ResponseCode::NoError => m.answers.is_empty(),
            _ => return None,
        };
        let ttl = if negative {
            let soa = m.authorities.iter().find_map(|r| match &r.data {
                HRData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                _ => None,
            })?;
            soa.min(cap(self.config.max_negative_ttl))
        } else {
            m.answers
                .iter()
                .chain(&m.authorities)
                .map(|r| r.ttl)
                .min()?
                .min(cap(self.config.max_ttl))
        };
        (ttl > 0).then_some(ttl)
    }
}

/// Truncates a response that does not fit `limit` to its question, with TC.
pub fn fit(out: &mut Vec<u8>, q: &Query, limit: usize) {
    if out.len() > limit && out.len() >= q.question_end {
        out.truncate(q.question_end);
        out[2] |= (TC >> 8) as u8;
        wire::set_counts(out, 0, 0, 0);
    }
}

fn matches_query(r: &[u8], id: u16, packet: &[u8], q: &Query) -> bool {
    r.len() >= q.question_end
        && u16::from_be_bytes([r[0], r[1]]) == id
        && r[2] & 0x80 != 0
        && r[4..6] == [0, 1]
        && r[12..q.question_end].eq_ignore_ascii_case(&packet[12..q.question_end])
}

/// Offsets of the TTL fields of every record but OPT.
fn ttl_offsets(p: &[u8]) -> Option<Vec<u16>> {
    if p.len() < 12 {
        return None;
    }
    let count = |i: usize| usize::from(u16::from_be_bytes([p[i], p[i + 1]]));
    let mut i = 12;
    for _ in 0..count(4) {
        i = wire::skip_name(p, i)? + 4;
    }
    let mut offsets = Vec::new();
    for _ in 0..count(6) + count(8) + count(10) {
        i = wire::skip_name(p, i)?;
        let rtype = u16::from_be_bytes([*p.get(i)?, *p.get(i + 1)?]);
        let rdlen = usize::from(u16::from_be_bytes([*p.get(i + 8)?, *p.get(i + 9)?]));
        if rtype != 41 {
            offsets.push(u16::try_from(i + 4).ok()?);
        }
        i += 10 + rdlen;
        if i > p.len() {
            return None;
        }
    }
    Some(offsets)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nameservers() {
        let text = "# comment\nsearch example.org\nnameserver 192.0.2.53\nnameserver fe80::1%eth0\noptions ndots:5\n";
        assert_eq!(
            parse_resolv_conf(text),
            vec![
                "192.0.2.53:53".parse().unwrap(),
                "[fe80::1]:53".parse().unwrap()
            ]
        );
    }
}
