//! Strict grammars for every string that can reach a configuration file.
//!
//! - [`Name`]: RFC 1123 subdomain (ids, backend and certificate names).
//! - [`Hostname`] / [`HostMatch`]: RFC 1123 host names, lowercase, no trailing
//!   dot, not an IP literal; a wildcard is `*.` followed by a host name.
//! - [`HttpPath`]: an absolute path of RFC 3986 `pchar`s and `/`, without
//!   quotes, `#`, whitespace, control characters or encoded control characters,
//!   and without the dot segments and `//` the Kubernetes API rejects.
//! - [`Token`]: a cookie name.

use std::fmt;
use std::net::IpAddr;

use super::PathMatch;

/// The longest path accepted, in bytes.
pub const MAX_PATH_LEN: usize = 2048;

/// A string failed its grammar. The message quotes the value with control
/// characters escaped.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[error("{value}: {reason}")]
pub struct Error {
    value: String,
    reason: &'static str,
}

fn fail(value: &str, reason: &'static str) -> Error {
    let mut shown = format!("{:?}", Shown(value));
    if shown.len() > 80 {
        let mut cut = 77;
        while !shown.is_char_boundary(cut) {
            cut -= 1;
        }
        shown.truncate(cut);
        shown.push_str("...");
    }
    Error {
        value: shown,
        reason,
    }
}

/// Shows a user string for an error message: `Debug` escapes control characters.
pub(crate) struct Shown<'a>(pub(crate) &'a str);

impl fmt::Debug for Shown<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.0, f)
    }
}

fn is_label(label: &str) -> bool {
    let b = label.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

fn subdomain(value: &str) -> Result<(), Error> {
    if value.is_empty() {
        return Err(fail(value, "must not be empty"));
    }
    if value.len() > 253 {
        return Err(fail(value, "is longer than 253 bytes"));
    }
    if value.bytes().any(|c| c.is_ascii_uppercase()) {
        return Err(fail(value, "must be lowercase"));
    }
    if value.ends_with('.') {
        return Err(fail(value, "must not end with a dot"));
    }
    if !value.split('.').all(is_label) {
        return Err(fail(
            value,
            "must be dot-separated labels of a-z, 0-9 and '-', each 1-63 long, not starting or ending with '-'",
        ));
    }
    Ok(())
}

/// An RFC 1123 subdomain used as a name: lowercase labels of `a-z0-9-`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Name(String);

impl Name {
    /// Validates a name.
    pub fn new(value: &str) -> Result<Self, Error> {
        subdomain(value)?;
        Ok(Self(value.to_owned()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An RFC 1123 host name: lowercase, no trailing dot, not an IP literal.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hostname(String);

impl Hostname {
    /// Validates a host name.
    pub fn new(value: &str) -> Result<Self, Error> {
        if value.parse::<IpAddr>().is_ok()
            || value
                .trim_start_matches('[')
                .trim_end_matches(']')
                .parse::<IpAddr>()
                .is_ok()
        {
            return Err(fail(value, "IP addresses are not host names"));
        }
        if value.contains(':') {
            return Err(fail(value, "must not carry a port"));
        }
        subdomain(value)?;
        Ok(Self(value.to_owned()))
    }

    /// The host name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Which requests (or SNI names) a route (or certificate) is for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HostMatch {
    /// Any host.
    Any,
    /// Exactly this host.
    Exact(Hostname),
    /// `*.<suffix>`: exactly one more label in front of the suffix.
    Wildcard(Hostname),
}

impl HostMatch {
    /// Parses `""` (any host), `foo.example.org` or `*.example.org`.
    pub fn new(value: &str) -> Result<Self, Error> {
        if value.is_empty() {
            return Ok(Self::Any);
        }
        if let Some(suffix) = value.strip_prefix("*.") {
            return Hostname::new(suffix)
                .map(Self::Wildcard)
                .map_err(|e| Error {
                    value: fail(value, "").value,
                    reason: e.reason,
                });
        }
        if value.contains('*') {
            return Err(fail(
                value,
                "a wildcard must be '*.' followed by a host name",
            ));
        }
        Hostname::new(value).map(Self::Exact)
    }

    /// Whether a (lowercase) request host matches.
    pub fn matches(&self, host: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(h) => h.as_str() == host,
            Self::Wildcard(suffix) => host
                .split_once('.')
                .is_some_and(|(first, rest)| !first.is_empty() && rest == suffix.as_str()),
        }
    }
}

impl fmt::Display for HostMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Exact(h) => f.write_str(h.as_str()),
            Self::Wildcard(h) => write!(f, "*.{h}"),
        }
    }
}

/// An absolute request path in the restricted RFC 3986 grammar.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HttpPath(String);

impl HttpPath {
    /// `/`.
    pub fn root() -> Self {
        Self("/".to_owned())
    }

    /// Validates a path; a [`PathMatch::Prefix`] path loses its trailing
    /// slash (the Ingress spec ignores it), except `/` itself.
    pub fn new(value: &str, kind: PathMatch) -> Result<Self, Error> {
        if value.len() > MAX_PATH_LEN {
            return Err(fail(value, "is longer than 2048 bytes"));
        }
        if !value.starts_with('/') {
            return Err(fail(value, "must start with '/'"));
        }
        let b = value.as_bytes();
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            match c {
                b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' => {}
                b'-' | b'.' | b'_' | b'~' => {}
                b'!' | b'$' | b'&' | b'(' | b')' | b'*' | b'+' | b',' | b';' | b'=' => {}
                b':' | b'@' | b'/' => {}
                b'%' => {
                    let hex = |x: u8| (x as char).to_digit(16);
                    let (Some(h), Some(l)) = (
                        b.get(i + 1).copied().and_then(hex),
                        b.get(i + 2).copied().and_then(hex),
                    ) else {
                        return Err(fail(value, "'%' must be followed by two hex digits"));
                    };
                    let decoded = h * 16 + l;
                    if decoded < 0x20 || decoded == 0x7f {
                        return Err(fail(value, "must not encode control characters"));
                    }
                    if decoded == u32::from(b'/') {
                        return Err(fail(value, "must not encode '/'"));
                    }
                    i += 2;
                }
                c if c.is_ascii_whitespace() || c.is_ascii_control() || c >= 0x80 => {
                    return Err(fail(
                        value,
                        "must not contain whitespace, control or non-ASCII characters",
                    ));
                }
                b'#' => return Err(fail(value, "must not contain '#'")),
                b'"' | b'\'' | b'`' => return Err(fail(value, "must not contain quotes")),
                _ => {
                    return Err(fail(
                        value,
                        "may only contain letters, digits and -._~!$&()*+,;=:@/ and %XX",
                    ));
                }
            }
            i += 1;
        }
        if value.contains("//") {
            return Err(fail(value, "must not contain '//'"));
        }
        if value.contains("/./")
            || value.contains("/../")
            || value.ends_with("/.")
            || value.ends_with("/..")
        {
            return Err(fail(value, "must not contain '.' or '..' segments"));
        }
        let mut path = value.to_owned();
        if kind == PathMatch::Prefix && path.len() > 1 && path.ends_with('/') {
            path.pop();
        }
        Ok(Self(path))
    }

    /// The path.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether a request path matches this path with `kind`, by the Ingress rules.
    pub fn matches(&self, kind: PathMatch, request: &str) -> bool {
        match kind {
            PathMatch::Exact => self.0 == request,
            PathMatch::Prefix => {
                if self.0 == "/" {
                    return true;
                }
                request == self.0
                    || request
                        .strip_prefix(self.0.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
            }
        }
    }
}

impl fmt::Display for HttpPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A token such as a cookie name: 1–64 bytes of `A-Za-z0-9_-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Token(String);

impl Token {
    /// Validates a token.
    pub fn new(value: &str) -> Result<Self, Error> {
        if value.is_empty() || value.len() > 64 {
            return Err(fail(value, "must be 1-64 bytes long"));
        }
        if !value
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'-')
        {
            return Err(fail(value, "may only contain A-Z, a-z, 0-9, '_' and '-'"));
        }
        Ok(Self(value.to_owned()))
    }

    /// The token.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checks a host label key (`[prefix/]name` of `A-Za-z0-9._-`).
pub(crate) fn label_key(value: &str) -> Result<(), Error> {
    if value.is_empty() || value.len() > 253 {
        return Err(fail(value, "must be 1-253 bytes long"));
    }
    if !value
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-' | b'/' | b':'))
    {
        return Err(fail(value, "may only contain A-Z, a-z, 0-9 and ._-/:"));
    }
    Ok(())
}

/// Checks a host label value (`A-Za-z0-9._-`, at most 63 bytes).
pub(crate) fn label_value(value: &str) -> Result<(), Error> {
    if value.len() > 63 {
        return Err(fail(value, "must be at most 63 bytes long"));
    }
    if !value
        .bytes()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'_' | b'-'))
    {
        return Err(fail(value, "may only contain A-Z, a-z, 0-9 and ._-"));
    }
    Ok(())
}

/// Section keywords a snippet line may not start with, so a snippet stays in
/// the section it is put in.
pub const SECTION_KEYWORDS: &[&str] = &[
    "global",
    "defaults",
    "frontend",
    "backend",
    "listen",
    "resolvers",
    "peers",
    "userlist",
    "program",
    "mailers",
    "cache",
    "ring",
    "http-errors",
    "crt-store",
    "traces",
];

/// Checks a raw snippet: printable ASCII lines, no section keywords.
pub(crate) fn snippet(value: &str) -> Result<String, Error> {
    if value.len() > super::MAX_SNIPPET_LEN {
        return Err(fail(value, "is longer than 4096 bytes"));
    }
    for line in value.lines() {
        if line
            .bytes()
            .any(|c| (c.is_ascii_control() && c != b'\t') || c >= 0x80)
        {
            return Err(fail(line, "must only contain printable ASCII"));
        }
        let first = line.split_whitespace().next().unwrap_or("");
        if SECTION_KEYWORDS.contains(&first) {
            return Err(fail(line, "must not open a new section"));
        }
    }
    if value.contains('\r') {
        return Err(fail(value, "must not contain carriage returns"));
    }
    Ok(value.to_owned())
}
