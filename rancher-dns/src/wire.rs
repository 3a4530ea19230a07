//! The DNS wire format on the hot path: an allocation-free query parser, a
//! response writer and the record encoder used to precompute answers.
//!
//! Answers are precomputed per (name, type) as the bytes that follow the
//! question, with compression pointers into the question (offset 12). A
//! response is then: header, the client's question copied verbatim (which
//! echoes the client's letter case), the precomputed bytes, and an OPT
//! record when the query carried one.

use crate::model::{RData, RecordType};
use crate::name;

/// Header flag: response.
pub const QR: u16 = 0x8000;
/// Header flag: authoritative answer.
pub const AA: u16 = 0x0400;
/// Header flag: truncated.
pub const TC: u16 = 0x0200;
/// Header flag: recursion desired.
pub const RD: u16 = 0x0100;
/// Header flag: recursion available.
pub const RA: u16 = 0x0080;
/// Header flag: checking disabled.
pub const CD: u16 = 0x0010;

/// Response codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
#[non_exhaustive]
pub enum Rcode {
    /// No error.
    NoError = 0,
    /// Format error.
    FormErr = 1,
    /// Server failure.
    ServFail = 2,
    /// Name does not exist.
    NxDomain = 3,
    /// Not implemented.
    NotImp = 4,
    /// Refused.
    Refused = 5,
}

impl Rcode {
    /// The rcode of a header's low four bits (`None` for codes not listed).
    pub fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::NoError,
            1 => Self::FormErr,
            2 => Self::ServFail,
            3 => Self::NxDomain,
            4 => Self::NotImp,
            5 => Self::Refused,
            _ => return None,
        })
    }

    /// Name as in `dig` output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NoError => "NOERROR",
            Self::FormErr => "FORMERR",
            Self::ServFail => "SERVFAIL",
            Self::NxDomain => "NXDOMAIN",
            Self::NotImp => "NOTIMP",
            Self::Refused => "REFUSED",
        }
    }
}

/// Class IN.
pub const CLASS_IN: u16 = 1;
/// The UDP payload size this server advertises in EDNS.
pub const EDNS_PAYLOAD: u16 = 1232;
/// Largest UDP response without EDNS.
pub const CLASSIC_UDP: usize = 512;
/// Records allowed in the answer, authority and additional sections of a query.
const MAX_QUERY_RECORDS: usize = 16;

/// A lower-case wire-form name held inline.
#[derive(Clone, Copy)]
pub struct NameBuf {
    buf: [u8; name::MAX_NAME],
    len: u8,
}

impl NameBuf {
    /// The lower-case wire form, ending in the root label.
    pub fn as_wire(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for NameBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", name::from_wire(self.as_wire()))
    }
}

/// EDNS(0) parameters of a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edns {
    /// Requestor's UDP payload size.
    pub payload: u16,
    /// EDNS version.
    pub version: u8,
    /// DNSSEC OK bit.
    pub dnssec_ok: bool,
}

/// A parsed query. Borrows nothing: the packet stays with the caller.
#[derive(Debug, Clone, Copy)]
pub struct Query {
    /// Message id.
    pub id: u16,
    /// Header flags as received.
    pub flags: u16,
    /// Lower-case question name.
    pub qname: NameBuf,
    /// Offset just past the question (name, type, class).
    pub question_end: usize,
    /// Question type.
    pub qtype: u16,
    /// Question class.
    pub qclass: u16,
    /// EDNS parameters, when the query had an OPT record.
    pub edns: Option<Edns>,
}

impl Query {
    /// The largest response the client accepts over UDP.
    pub fn udp_limit(&self) -> usize {
        match self.edns {
            Some(e) => usize::from(e.payload).max(CLASSIC_UDP),
            None => CLASSIC_UDP,
        }
    }
}

/// Why a packet could not be parsed as a query.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Not worth an answer: too short for a header, or a response.
    Drop,
    /// Answer with this rcode and no question.
    Reject {
        /// Message id.
        id: u16,
        /// Flags as received.
        flags: u16,
        /// Rcode to answer with.
        rcode: Rcode,
    },
}

fn be16(p: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*p.get(i)?, *p.get(i + 1)?]))
}

/// Parses a query. Names in the question may not use compression (RFC 1035
/// allows it, no client does it, and refusing it rules out pointer loops).
pub fn parse_query(p: &[u8]) -> Result<Query, ParseError> {
    if p.len() < 12 {
        return Err(ParseError::Drop);
    }
    let id = u16::from_be_bytes([p[0], p[1]]);
    let flags = u16::from_be_bytes([p[2], p[3]]);
    if flags & QR != 0 {
        return Err(ParseError::Drop);
    }
    let reject = |rcode| Err(ParseError::Reject { id, flags, rcode });
    if (flags >> 11) & 0xf != 0 {
        return reject(Rcode::NotImp);
    }
    let qd = u16::from_be_bytes([p[4], p[5]]);
    let others = usize::from(u16::from_be_bytes([p[6], p[7]]))
        + usize::from(u16::from_be_bytes([p[8], p[9]]))
        + usize::from(u16::from_be_bytes([p[10], p[11]]));
    let ar = usize::from(u16::from_be_bytes([p[10], p[11]]));
    if qd != 1 || others > MAX_QUERY_RECORDS {
        return reject(Rcode::FormErr);
    }
    let mut qname = NameBuf {
        buf: [0; name::MAX_NAME],
        len: 0,
    };
    let mut i = 12;
    let mut n = 0usize;
    loop {
        let Some(&len) = p.get(i) else {
            return reject(Rcode::FormErr);
        };
        let len = usize::from(len);
        if len > name::MAX_LABEL || n + 1 + len > name::MAX_NAME {
            return reject(Rcode::FormErr);
        }
        let Some(label) = p.get(i + 1..i + 1 + len) else {
            return reject(Rcode::FormErr);
        };
        qname.buf[n] = len as u8;
        for (dst, src) in qname.buf[n + 1..n + 1 + len].iter_mut().zip(label) {
            *dst = src.to_ascii_lowercase();
        }
        n += 1 + len;
        i += 1 + len;
        if len == 0 {
            break;
        }
    }
    qname.len = n as u8;
    let (Some(qtype), Some(qclass)) = (be16(p, i), be16(p, i + 2)) else {
        return reject(Rcode::FormErr);
    };
    let question_end = i + 4;
    // Skip answer and authority records, read OPT from the additional section.
    let mut edns = None;
    let mut j = question_end;
    for k in 0..others {
        let in_additional = k >= others - ar;
        let name_start = j;
        let Some(after_name) = skip_name(p, j) else {
            return reject(Rcode::FormErr);
        };
        let (Some(rtype), Some(class), Some(rdlen)) = (
            be16(p, after_name),
            be16(p, after_name + 2),
            be16(p, after_name + 8),
        ) else {
            return reject(Rcode::FormErr);
        };
        let end = after_name + 10 + usize::from(rdlen);
        if end > p.len() {
            return reject(Rcode::FormErr);
        }
        if in_additional && rtype == RecordType::OPT.0 {
            if edns.is_some() || p[name_start] != 0 {
                return reject(Rcode::FormErr);
            }
            edns = Some(Edns {
                payload: class,
                version: p[after_name + 5],
                dnssec_ok: p[after_name + 6] & 0x80 != 0,
            });
        }
        j = end;
    }
    Ok(Query {
        id,
        flags,
        qname,
        question_end,
        qtype,
        qclass,
        edns,
    })
}

/// Skips a possibly compressed name without following pointers; returns the offset after it.
pub fn skip_name(p: &[u8], mut i: usize) -> Option<usize> {
    let mut total = 0usize;
    loop {
        let len = *p.get(i)?;
        match len & 0xc0 {
            0xc0 => return (i + 2 <= p.len()).then_some(i + 2),
            0x00 => {
                if len == 0 {
                    return Some(i + 1);
                }
                total += usize::from(len) + 1;
                if total > name::MAX_NAME {
                    return None;
                }
                i += 1 + usize::from(len);
            }
            _ => return None,
        }
    }
}

/// Writes a response header and, when `q` is given, the client's question.
pub fn begin_response(out: &mut Vec<u8>, packet: &[u8], q: &Query, extra_flags: u16, rcode: Rcode) {
    out.clear();
    out.extend_from_slice(&q.id.to_be_bytes());
    let flags = QR | (q.flags & (RD | CD)) | extra_flags | rcode as u16;
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&packet[12..q.question_end]);
}

/// Writes a header-only error response for a packet that did not parse.
pub fn reject_response(out: &mut Vec<u8>, id: u16, flags: u16, rcode: Rcode) {
    out.clear();
    out.extend_from_slice(&id.to_be_bytes());
    let flags = QR | (flags & (RD | 0x7800)) | rcode as u16;
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&[0; 8]);
}

/// Sets the answer, authority and additional counts of a response.
pub fn set_counts(out: &mut [u8], an: u16, ns: u16, ar: u16) {
    out[6..8].copy_from_slice(&an.to_be_bytes());
    out[8..10].copy_from_slice(&ns.to_be_bytes());
    out[10..12].copy_from_slice(&ar.to_be_bytes());
}

/// Appends the OPT record when the query had one, then truncates to `limit`
/// (setting TC and dropping every section but the question) if needed.
pub fn finish_response(out: &mut Vec<u8>, q: &Query, question_len: usize, limit: usize) {
    let opt_len = if q.edns.is_some() { 11 } else { 0 };
    if out.len() + opt_len > limit {
        out.truncate(12 + question_len);
        let flags = u16::from_be_bytes([out[2], out[3]]) | TC;
        out[2..4].copy_from_slice(&flags.to_be_bytes());
        set_counts(out, 0, 0, 0);
    }
    if let Some(e) = q.edns {
        let ar = u16::from_be_bytes([out[10], out[11]]) + 1;
        out[10..12].copy_from_slice(&ar.to_be_bytes());
        // Unsupported versions get BADVERS (extended rcode 16 = 1 << 4).
        let ext = if e.version > 0 { 1 } else { 0 };
        out.extend_from_slice(&[0, 0, 41]);
        out.extend_from_slice(&EDNS_PAYLOAD.to_be_bytes());
        out.extend_from_slice(&[ext, 0, 0, 0, 0, 0]);
    }
}

/// Encodes records with name compression.
#[derive(Debug, Default)]
pub struct Encoder {
    /// The message bytes written so far.
    pub buf: Vec<u8>,
    suffixes: Vec<(Vec<u8>, u16)>,
    compress: bool,
}

impl Encoder {
    /// An encoder whose message starts with a header and the question
    /// `qname_wire` (lower-case), so pointers into the question line up
    /// with any response to a query for that name.
    pub fn for_question(qname_wire: &[u8]) -> Self {
        let mut e = Self {
            buf: vec![0; 12],
            suffixes: Vec::new(),
            compress: true,
        };
        e.write_name(qname_wire, true);
        e.buf.extend_from_slice(&[0, 0, 0, 0]);
        e
    }

    /// Length of header plus question.
    pub fn question_end(qname_wire: &[u8]) -> usize {
        12 + qname_wire.len() + 4
    }

    /// Writes a wire-form name, compressed against names written before
    /// when `compress` is set (and the encoder compresses at all: one made
    /// with `default()` does not, for records copied into other messages).
    pub fn write_name(&mut self, wire: &[u8], compress: bool) {
        let compress = compress && self.compress;
        let mut i = 0;
        loop {
            let rest = &wire[i..];
            if rest == [0] || rest.is_empty() {
                self.buf.push(0);
                return;
            }
            if compress
                && let Some((_, off)) = self.suffixes.iter().find(|(s, _)| s.as_slice() == rest)
            {
                self.buf.extend_from_slice(&(0xc000 | *off).to_be_bytes());
                return;
            }
            if let Ok(off) = u16::try_from(self.buf.len())
                && off < 0x3fff
            {
                self.suffixes.push((rest.to_vec(), off));
            }
            let len = usize::from(rest[0]);
            self.buf.extend_from_slice(&rest[..1 + len]);
            i += 1 + len;
        }
    }

    /// Writes one resource record of class IN.
    pub fn write_record(&mut self, owner_wire: &[u8], ttl: u32, data: &RData) {
        self.write_name(owner_wire, true);
        self.buf.extend_from_slice(&data.rtype().0.to_be_bytes());
        self.buf.extend_from_slice(&CLASS_IN.to_be_bytes());
        self.buf.extend_from_slice(&ttl.to_be_bytes());
        let len_at = self.buf.len();
        self.buf.extend_from_slice(&[0, 0]);
        match data {
            RData::A(ip) => self.buf.extend_from_slice(&ip.octets()),
            RData::Aaaa(ip) => self.buf.extend_from_slice(&ip.octets()),
            RData::Cname(t) | RData::Ptr(t) | RData::Ns(t) => {
                self.write_name(&name::to_wire(t), true)
            }
            RData::Srv {
                priority,
                weight,
                port,
                target,
            } => {
                self.buf.extend_from_slice(&priority.to_be_bytes());
                self.buf.extend_from_slice(&weight.to_be_bytes());
                self.buf.extend_from_slice(&port.to_be_bytes());
                // RFC 2782: the target is not compressed.
                self.write_name(&name::to_wire(target), false);
            }
            RData::Txt(strings) => {
                for s in strings {
                    for chunk in s.as_bytes().chunks(255) {
                        self.buf.push(chunk.len() as u8);
                        self.buf.extend_from_slice(chunk);
                    }
                }
            }
            RData::Soa(soa) => {
                self.write_name(&name::to_wire(&soa.mname), true);
                self.write_name(&name::to_wire(&soa.rname), true);
                for v in [soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum] {
                    self.buf.extend_from_slice(&v.to_be_bytes());
                }
            }
        }
        let rdlen = (self.buf.len() - len_at - 2) as u16;
        self.buf[len_at..len_at + 2].copy_from_slice(&rdlen.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
        let mut p = vec![
            0x12,
            0x34,
            0x01,
            0x00,
            0,
            1,
            0,
            0,
            0,
            0,
            0,
            u8::from(edns.is_some()),
        ];
        p.extend(name::to_wire(name));
        p.extend(qtype.to_be_bytes());
        p.extend(CLASS_IN.to_be_bytes());
        if let Some(size) = edns {
            p.extend([0, 0, 41]);
            p.extend(size.to_be_bytes());
            p.extend([0, 0, 0x80, 0, 0, 0]);
        }
        p
    }

    #[test]
    fn parses_question_lowercase_and_edns() {
        let p = query("Web.Default.SVC.cluster.local", 1, Some(4096));
        let q = parse_query(&p).unwrap();
        assert_eq!(q.id, 0x1234);
        assert_eq!(
            q.qname.as_wire(),
            name::to_wire("web.default.svc.cluster.local")
        );
        assert_eq!(q.qtype, 1);
        assert_eq!(
            q.edns,
            Some(Edns {
                payload: 4096,
                version: 0,
                dnssec_ok: true
            })
        );
        assert_eq!(q.udp_limit(), 4096);
    }

    #[test]
    fn rejects_malformed_queries() {
        assert_eq!(parse_query(&[0; 5]).unwrap_err(), ParseError::Drop);
        let mut p = query("a.example.org", 1, None);
        p[2] |= 0x80;
        assert_eq!(parse_query(&p).unwrap_err(), ParseError::Drop);
        let mut p = query("a.example.org", 1, None);
        p[5] = 2;
        assert!(matches!(
            parse_query(&p),
            Err(ParseError::Reject {
                rcode: Rcode::FormErr,
                ..
            })
        ));
        // A compression pointer in the question.
        let mut p = query("a.example.org", 1, None);
        p.truncate(12);
        p.extend([0xc0, 12, 0, 1, 0, 1]);
        assert!(matches!(
            parse_query(&p),
            Err(ParseError::Reject {
                rcode: Rcode::FormErr,
                ..
            })
        ));
        // Opcode NOTIFY.
        let mut p = query("a.example.org", 1, None);
        p[2] |= 4 << 3;
        assert!(matches!(
            parse_query(&p),
            Err(ParseError::Reject {
                rcode: Rcode::NotImp,
                ..
            })
        ));
    }

    #[test]
    fn truncates_to_limit_with_tc() {
        let p = query("a.example.org", 16, None);
        let q = parse_query(&p).unwrap();
        let mut out = Vec::new();
        begin_response(&mut out, &p, &q, AA, Rcode::NoError);
        out.extend(std::iter::repeat_n(0u8, 600));
        set_counts(&mut out, 3, 0, 0);
        finish_response(&mut out, &q, q.question_end - 12, q.udp_limit());
        assert_eq!(out.len(), q.question_end);
        assert_ne!(u16::from_be_bytes([out[2], out[3]]) & TC, 0);
    }

    #[test]
    fn encoder_compresses_owner_into_question() {
        let q = name::to_wire("a.example.org");
        let mut e = Encoder::for_question(&q);
        e.write_record(&q, 5, &RData::A("192.0.2.1".parse().unwrap()));
        let rr = &e.buf[Encoder::question_end(&q)..];
        assert_eq!(&rr[..2], &[0xc0, 12]);
    }
}
