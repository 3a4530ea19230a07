//! Domain names: validation, lower-case wire form, reverse (PTR) names.
//!
//! Names in the record model are lower-case text without the trailing dot
//! (`web.default.svc.cluster.local`); the server keys its index by the same
//! name in lower-case wire form (length-prefixed labels, ending in a zero byte).

use std::net::IpAddr;

/// Errors from building a domain name.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A label is empty, longer than 63 bytes or holds characters other than
    /// letters, digits, `-` and `_`.
    #[error("invalid DNS label {0:?}")]
    InvalidLabel(String),
    /// The whole name is longer than 255 bytes in wire form.
    #[error("domain name {0:?} is longer than 255 bytes")]
    TooLong(String),
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Longest label, in bytes.
pub const MAX_LABEL: usize = 63;
/// Longest name in wire form, in bytes.
pub const MAX_NAME: usize = 255;

/// Whether `label` is an RFC 1123 label (letters, digits, inner `-`), the rule
/// Kubernetes applies to hostnames and service names.
pub fn is_rfc1123_label(label: &str) -> bool {
    let b = label.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_LABEL
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// Checks a label that may also carry `_` (SRV labels such as `_http`).
fn is_label(label: &str) -> bool {
    let b = label.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_LABEL
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_' || *c == b'*')
}

/// Normalises a text name: lower-case, no trailing dot, every label checked.
pub fn normalize(name: &str) -> Result<String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    let lower = trimmed.to_ascii_lowercase();
    for label in lower.split('.') {
        if !is_label(label) {
            return Err(Error::InvalidLabel(label.to_owned()));
        }
    }
    if lower.len() + 2 > MAX_NAME {
        return Err(Error::TooLong(lower));
    }
    Ok(lower)
}

/// Encodes a normalised text name (see [`normalize`]) in lower-case wire form.
pub fn to_wire(name: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(name.len() + 2);
    if !name.is_empty() {
        for label in name.split('.') {
            out.push(label.len() as u8);
            out.extend(label.bytes().map(|b| b.to_ascii_lowercase()));
        }
    }
    out.push(0);
    out
}

/// Decodes a wire-form name without compression back to text (no trailing
/// dot). Returns `None` on malformed input.
pub fn from_wire(wire: &[u8]) -> Option<String> {
    let mut out = String::new();
    let mut i = 0;
    loop {
        let len = *wire.get(i)? as usize;
        if len == 0 {
            return Some(out);
        }
        let label = wire.get(i + 1..i + 1 + len)?;
        if !out.is_empty() {
            out.push('.');
        }
        out.push_str(std::str::from_utf8(label).ok()?);
        i += 1 + len;
    }
}

/// Whether wire-form `name` equals `zone` or lies below it (both lower-case).
/// Returns the byte offset of `zone` within `name`.
pub fn wire_suffix_offset(name: &[u8], zone: &[u8]) -> Option<usize> {
    if zone.len() > name.len() {
        return None;
    }
    let mut i = 0;
    loop {
        if name.len() - i == zone.len() {
            return (name[i..] == *zone).then_some(i);
        }
        let len = *name.get(i)? as usize;
        if len == 0 {
            return None;
        }
        i += 1 + len;
        if i > name.len() {
            return None;
        }
    }
}

/// The reverse-lookup name of an address: `d.c.b.a.in-addr.arpa` for IPv4,
/// 32 nibbles then `ip6.arpa` for IPv6.
pub fn reverse_name(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            format!("{}.{}.{}.{}.in-addr.arpa", o[3], o[2], o[1], o[0])
        }
        IpAddr::V6(v6) => {
            let mut s = String::with_capacity(72);
            for byte in v6.octets().iter().rev() {
                for nibble in [byte & 0x0f, byte >> 4] {
                    s.push(char::from_digit(u32::from(nibble), 16).unwrap_or('0'));
                    s.push('.');
                }
            }
            s.push_str("ip6.arpa");
            s
        }
    }
}

/// The system-assigned endpoint label of an address (CoreDNS style):
/// `10-1-2-3` for IPv4; for IPv6 the compressed text with `:` replaced by
/// `-`, and a trailing `0` when it would end in `-` (or start with `-`).
pub fn dashed_ip(ip: IpAddr) -> String {
    match ip {
        IpAddr::V4(v4) => v4.to_string().replace('.', "-"),
        IpAddr::V6(v6) => {
            let mut s = v6.to_string().replace(':', "-");
            if s.starts_with('-') {
                s.insert(0, '0');
            }
            if s.ends_with('-') {
                s.push('0');
            }
            s
        }
    }
}

/// Parses a dashed pod-record label (`10-1-2-3`, or an IPv6 address with `-`
/// for `:`) back into an address.
pub fn parse_dashed_ip(label: &str) -> Option<IpAddr> {
    if let Ok(v4) = label.replace('-', ".").parse::<std::net::Ipv4Addr>() {
        return Some(IpAddr::V4(v4));
    }
    label
        .replace('-', ":")
        .parse::<std::net::Ipv6Addr>()
        .ok()
        .map(IpAddr::V6)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_case_and_trailing_dot() {
        assert_eq!(
            normalize("Web.Default.SVC.cluster.local.").unwrap(),
            "web.default.svc.cluster.local"
        );
        assert!(normalize("a..b").is_err());
        assert!(normalize(&"a".repeat(64)).is_err());
        assert!(normalize(&["abcdefghi"; 30].join(".")).is_err());
    }

    #[test]
    fn wire_round_trip_and_suffix() {
        let w = to_wire("a.cluster.local");
        assert_eq!(w, b"\x01a\x07cluster\x05local\x00");
        assert_eq!(from_wire(&w).unwrap(), "a.cluster.local");
        assert_eq!(wire_suffix_offset(&w, &to_wire("cluster.local")), Some(2));
        assert_eq!(wire_suffix_offset(&w, &to_wire("a.cluster.local")), Some(0));
        assert_eq!(wire_suffix_offset(&w, &to_wire("luster.local")), None);
        assert_eq!(
            wire_suffix_offset(&to_wire("local"), &to_wire("cluster.local")),
            None
        );
    }

    #[test]
    fn reverse_names() {
        assert_eq!(
            reverse_name("10.43.0.10".parse().unwrap()),
            "10.0.43.10.in-addr.arpa"
        );
        assert_eq!(
            reverse_name("2001:db8::567:89ab".parse().unwrap()),
            "b.a.9.8.7.6.5.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"
        );
    }

    #[test]
    fn dashed_labels() {
        assert_eq!(dashed_ip("10.1.2.3".parse().unwrap()), "10-1-2-3");
        assert_eq!(dashed_ip("fd00::1".parse().unwrap()), "fd00--1");
        assert_eq!(dashed_ip("fd00::".parse().unwrap()), "fd00--0");
        assert_eq!(
            parse_dashed_ip("10-1-2-3"),
            Some("10.1.2.3".parse().unwrap())
        );
        assert_eq!(parse_dashed_ip("fd00--1"), Some("fd00::1".parse().unwrap()));
        assert_eq!(parse_dashed_ip("nope"), None);
    }
}
