//! The server's answer index: immutable snapshots of precomputed answers,
//! sharded so that an update copies only the shards it touches.
//!
//! A [`Snapshot`] maps lower-case wire names to precomputed answers per
//! record type, one allocation per name. [`SnapshotBuilder`] applies [`Change`]s
//! copy-on-write (`Arc::make_mut` on the touched shards) and publishes a new
//! snapshot; readers holding the previous one are never disturbed.

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::Arc;

use crate::model::{Change, NameRecords, Options, PodRecords, RData, RecordType, ZoneRecords};
use crate::name;
use crate::wire::{self, AA, Encoder, Query, Rcode};

/// Number of shards. A change copies the shards it touches, each about
/// 1/256 of the zone.
const SHARDS: usize = 256;

/// One precomputed answer: the bytes that follow the question.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireAnswer<'a> {
    /// Answer count.
    pub an: u16,
    /// Authority count.
    pub ns: u16,
    /// Additional count.
    pub ar: u16,
    /// The records, compressed against a question for the owner name.
    pub body: &'a [u8],
}

/// One name and all its precomputed answers in a single allocation:
/// `[name length][wire name][flags]` then per record type
/// `[type][an][ns][ar][body length][body]` (u16 big-endian), sorted by type.
/// Hashes and compares by name only, so shards are sets looked up by name.
#[derive(Debug, Clone)]
struct Slot(Arc<[u8]>);

/// Flag: the name is an alias; its CNAME answers every type.
const CNAME_FLAG: u8 = 1;

impl Slot {
    fn build(name: &str, recs: &[RData], ttl: u32) -> Self {
        let owner = name::to_wire(name);
        let has_cname = recs.iter().any(|r| matches!(r, RData::Cname(_)));
        let mut out = Vec::with_capacity(owner.len() + 64);
        out.push(owner.len() as u8);
        out.extend_from_slice(&owner);
        out.push(if has_cname { CNAME_FLAG } else { 0 });
        let mut i = 0;
        while i < recs.len() {
            let t = recs[i].rtype();
            let mut j = i;
            while j < recs.len() && recs[j].rtype() == t {
                j += 1;
            }
            if !has_cname || t == RecordType::CNAME {
                let mut enc = Encoder::for_question(&owner);
                for r in &recs[i..j] {
                    enc.write_record(&owner, ttl, r);
                }
                let body = &enc.buf[Encoder::question_end(&owner)..];
                for v in [t.0, (j - i) as u16, 0, 0, body.len() as u16] {
                    out.extend_from_slice(&v.to_be_bytes());
                }
                out.extend_from_slice(body);
            }
            i = j;
        }
        Self(out.into())
    }

    fn name(&self) -> &[u8] {
        let n = usize::from(self.0[0]);
        &self.0[1..1 + n]
    }

    fn answer(&self, qtype: u16) -> Option<WireAnswer<'_>> {
        let b = &self.0[..];
        let mut i = 1 + usize::from(b[0]);
        let cname = b[i] & CNAME_FLAG != 0;
        i += 1;
        let u = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
        while i + 10 <= b.len() {
            let len = usize::from(u(i + 8));
            if cname || u(i) == qtype {
                let body = &b[i + 10..i + 10 + len];
                return Some(WireAnswer {
                    an: u(i + 2),
                    ns: u(i + 4),
                    ar: u(i + 6),
                    body,
                });
            }
            i += 10 + len;
        }
        None
    }
}

impl PartialEq for Slot {
    fn eq(&self, other: &Self) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Slot {}

impl std::hash::Hash for Slot {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.name().hash(state);
    }
}

impl std::borrow::Borrow<[u8]> for Slot {
    fn borrow(&self) -> &[u8] {
        self.name()
    }
}

/// A zone this server is authoritative for: its apex and SOA record.
#[derive(Debug, Clone)]
pub struct Zone {
    apex: Vec<u8>,
    /// SOA record after the owner name: type, class, TTL, rdlength, rdata.
    soa_tail: Vec<u8>,
    /// Misses are NXDOMAIN here (otherwise they are forwarded).
    authoritative_misses: bool,
}

impl Zone {
    fn new(apex: &str, options: &Options, authoritative_misses: bool) -> Self {
        let ttl = options.ttl_secs();
        let soa = RData::Soa(Box::new(crate::model::Soa::for_options(options)));
        let mut enc = Encoder::default();
        enc.write_record(&[0], ttl, &soa);
        Self {
            apex: name::to_wire(apex),
            soa_tail: enc.buf[1..].to_vec(),
            authoritative_misses,
        }
    }
}

type Shard = HashSet<Slot, foldhash::fast::RandomState>;

/// How a query is answered.
#[derive(Debug)]
pub enum Resolution<'a> {
    /// A positive answer.
    Answer(WireAnswer<'a>),
    /// The name exists but has no record of that type (SOA in authority;
    /// the usize is the offset of the zone apex within the name).
    NoData(&'a Zone, usize),
    /// The name does not exist.
    NxDomain(&'a Zone, usize),
    /// An insecure pod record computed from the name.
    Pod(IpAddr),
    /// Not ours: forward upstream.
    Forward,
    /// Ours, but the first full sync has not happened yet.
    NotSynced,
    /// Ours, but the query type is not served (ANY, zone transfers).
    NotImplemented,
}

/// An immutable view of the zone that queries are answered from.
#[derive(Debug, Clone)]
pub struct Snapshot {
    shards: Box<[Arc<Shard>]>,
    shard_hasher: foldhash::fast::FixedState,
    cluster: Zone,
    reverse: Arc<[Zone]>,
    pods: PodRecords,
    ttl: u32,
    synced: bool,
    names: usize,
}

impl Snapshot {
    /// Whether the first full sync happened.
    pub fn synced(&self) -> bool {
        self.synced
    }

    /// Number of owner names.
    pub fn len(&self) -> usize {
        self.names
    }

    /// Whether there are no names at all.
    pub fn is_empty(&self) -> bool {
        self.names == 0
    }

    fn entry(&self, wire_name: &[u8]) -> Option<&Slot> {
        let shard = (self.shard_hasher.hash_one(wire_name) as usize) % SHARDS;
        self.shards[shard].get(wire_name)
    }

    /// Resolves a lower-case wire-form question.
    pub fn resolve(&self, qname: &[u8], qtype: u16) -> Resolution<'_> {
        let (zone, offset) = if let Some(off) = name::wire_suffix_offset(qname, &self.cluster.apex)
        {
            (&self.cluster, off)
        } else if let Some((z, off)) = self
            .reverse
            .iter()
            .find_map(|z| name::wire_suffix_offset(qname, &z.apex).map(|o| (z, o)))
        {
            (z, off)
        } else {
            return Resolution::Forward;
        };
        if !self.synced {
            return Resolution::NotSynced;
        }
        if qtype == RecordType::ANY.0 || qtype == RecordType::AXFR.0 || qtype == RecordType::IXFR.0
        {
            return Resolution::NotImplemented;
        }
        match self.entry(qname) {
            Some(entry) => match entry.answer(qtype) {
                Some(a) => Resolution::Answer(a),
                None => Resolution::NoData(zone, offset),
            },
            None => {
                if std::ptr::eq(zone, &self.cluster)
                    && let Some(ip) = self.insecure_pod(qname, offset)
                {
                    let is_v4 = ip.is_ipv4();
                    return if (is_v4 && qtype == RecordType::A.0)
                        || (!is_v4 && qtype == RecordType::AAAA.0)
                    {
                        Resolution::Pod(ip)
                    } else {
                        Resolution::NoData(zone, offset)
                    };
                }
                if zone.authoritative_misses {
                    Resolution::NxDomain(zone, offset)
                } else {
                    Resolution::Forward
                }
            }
        }
    }

    /// `<dashed-ip>.<ns>.pod.<zone>` with pod records insecure.
    fn insecure_pod(&self, qname: &[u8], zone_offset: usize) -> Option<IpAddr> {
        if self.pods != PodRecords::Insecure {
            return None;
        }
        let mut labels = Vec::with_capacity(3);
        let mut i = 0;
        while i < zone_offset {
            let len = usize::from(qname[i]);
            labels.push(std::str::from_utf8(qname.get(i + 1..i + 1 + len)?).ok()?);
            i += 1 + len;
        }
        let mut labels = labels.into_iter();
        let (ip, _ns, pod, end) = (
            labels.next()?,
            labels.next()?,
            labels.next()?,
            labels.next(),
        );
        if pod != "pod" || end.is_some() {
            return None;
        }
        name::parse_dashed_ip(ip)
    }

    /// Answers a parsed query into `out`. Returns the rcode written, or
    /// `None` when the query must be forwarded.
    pub fn respond(
        &self,
        packet: &[u8],
        q: &Query,
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Option<Rcode> {
        let qlen = q.question_end - 12;
        if q.qclass != wire::CLASS_IN {
            wire::begin_response(out, packet, q, 0, Rcode::Refused);
            wire::finish_response(out, q, qlen, limit);
            return Some(Rcode::Refused);
        }
        let rcode = match self.resolve(q.qname.as_wire(), q.qtype) {
            Resolution::Forward => return None,
            Resolution::Answer(a) => {
                wire::begin_response(out, packet, q, AA, Rcode::NoError);
                out.extend_from_slice(a.body);
                wire::set_counts(out, a.an, a.ns, a.ar);
                Rcode::NoError
            }
            Resolution::NoData(zone, off) => {
                wire::begin_response(out, packet, q, AA, Rcode::NoError);
                push_soa(out, zone, off);
                Rcode::NoError
            }
            Resolution::NxDomain(zone, off) => {
                wire::begin_response(out, packet, q, AA, Rcode::NxDomain);
                push_soa(out, zone, off);
                Rcode::NxDomain
            }
            Resolution::Pod(ip) => {
                wire::begin_response(out, packet, q, AA, Rcode::NoError);
                out.extend_from_slice(&[0xc0, 12]);
                let mut enc = Encoder::default();
                let data = match ip {
                    IpAddr::V4(v4) => RData::A(v4),
                    IpAddr::V6(v6) => RData::Aaaa(v6),
                };
                enc.write_record(&[0], self.ttl, &data);
                out.extend_from_slice(&enc.buf[1..]);
                wire::set_counts(out, 1, 0, 0);
                Rcode::NoError
            }
            Resolution::NotSynced => {
                wire::begin_response(out, packet, q, 0, Rcode::ServFail);
                Rcode::ServFail
            }
            Resolution::NotImplemented => {
                wire::begin_response(out, packet, q, 0, Rcode::NotImp);
                Rcode::NotImp
            }
        };
        wire::finish_response(out, q, qlen, limit);
        Some(rcode)
    }
}

fn push_soa(out: &mut Vec<u8>, zone: &Zone, offset: usize) {
    let ptr = 0xc000u16 | (12 + offset) as u16;
    out.extend_from_slice(&ptr.to_be_bytes());
    out.extend_from_slice(&zone.soa_tail);
    wire::set_counts(out, 0, 1, 0);
}

/// Applies changes copy-on-write and publishes snapshots.
#[derive(Debug)]
pub struct SnapshotBuilder {
    current: Snapshot,
}

impl SnapshotBuilder {
    /// An empty, unsynced zone for `options`.
    pub fn new(options: &Options) -> Self {
        let mut reverse: Vec<Zone> = options
            .reverse_zones
            .iter()
            .map(|z| Zone::new(z, options, true))
            .collect();
        reverse.push(Zone::new("in-addr.arpa", options, false));
        reverse.push(Zone::new("ip6.arpa", options, false));
        let shard = Arc::new(Shard::default());
        Self {
            current: Snapshot {
                shards: (0..SHARDS).map(|_| shard.clone()).collect(),
                shard_hasher: foldhash::fast::FixedState::with_seed(fastrand::u64(..)),
                cluster: Zone::new(&options.zone, options, true),
                reverse: reverse.into(),
                pods: options.pods,
                ttl: options.ttl_secs(),
                synced: false,
                names: 0,
            },
        }
    }

    /// Applies per-name changes.
    pub fn apply(&mut self, changes: &[Change]) {
        for change in changes {
            match change {
                Change::Upsert(records) => self.upsert(records),
                Change::Remove(name) => self.remove(name),
            }
        }
    }

    fn shard_of(&mut self, key: &[u8]) -> &mut Shard {
        let shard = (self.current.shard_hasher.hash_one(key) as usize) % SHARDS;
        Arc::make_mut(&mut self.current.shards[shard])
    }

    /// Sets the records of one name.
    pub fn upsert(&mut self, records: &NameRecords) {
        self.upsert_borrowed(&records.name, &records.records);
    }

    fn upsert_borrowed(&mut self, name: &str, records: &[RData]) {
        let slot = Slot::build(name, records, self.current.ttl);
        let key = slot.name().to_vec();
        if self.shard_of(&key).replace(slot).is_none() {
            self.current.names += 1;
        }
    }

    /// Removes one name.
    pub fn remove(&mut self, name: &str) {
        let key = name::to_wire(name);
        if self.shard_of(&key).remove(key.as_slice()) {
            self.current.names -= 1;
        }
    }

    /// Replaces the whole zone, reading the records as the zone hands them
    /// out (a [`ZoneView`](crate::records::ZoneView) builds them from the
    /// index's objects one owner at a time).
    pub fn replace_all(&mut self, zone: &dyn ZoneRecords) {
        // Sized up front: the shards do not grow (and leave freed tables
        // behind) while the zone is built.
        let per_shard = zone.len().div_ceil(SHARDS);
        let hasher = foldhash::fast::RandomState::default();
        self.current.shards = (0..SHARDS)
            .map(|_| Arc::new(Shard::with_capacity_and_hasher(per_shard, hasher.clone())))
            .collect();
        self.current.names = 0;
        zone.for_each_name(&mut |name, records| self.upsert_borrowed(name, records));
    }

    /// Marks the zone synced (or not).
    pub fn set_synced(&mut self, synced: bool) {
        self.current.synced = synced;
    }

    /// The snapshot as of now (cheap: shards are shared).
    pub fn snapshot(&self) -> Snapshot {
        self.current.clone()
    }
}

#[cfg(test)]
mod tests;
