//! Ingress host names: precise names, one-label wildcards, and "any host".
//!
//! A precise host matches only a request host equal to it. A wildcard `*.foo.com`
//! matches a request host whose first label removed equals `foo.com`, so it matches
//! `bar.foo.com` but neither `baz.bar.foo.com` nor `foo.com`. An empty host matches
//! every request.

use std::fmt;

/// Why a host was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The host is longer than 253 characters.
    #[error("host is longer than 253 characters")]
    TooLong,
    /// The host is an IP address; Ingress hosts must be names.
    #[error("host {0:?} is an IP address, not a DNS name")]
    IpAddress(String),
    /// The host carries a port.
    #[error("host {0:?} must not carry a port")]
    Port(String),
    /// `*` appears other than as the whole first label.
    #[error("host {0:?}: a wildcard must be the whole first label, as in *.example.org")]
    Wildcard(String),
    /// A label is empty, too long, or has characters outside `[a-z0-9-]`.
    #[error(
        "host {0:?} is not a lowercase DNS name (labels of a-z, 0-9 and '-', at most 63 characters, not starting or ending with '-')"
    )]
    Invalid(String),
}

/// Result of parsing a host.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which request hosts a rule applies to.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Host {
    /// Every host (the rule has no host).
    Any,
    /// Exactly this host.
    Exact(String),
    /// `*.` followed by this suffix: one label, then the suffix.
    Wildcard(String),
}

impl Host {
    /// Parses an Ingress host: empty means [`Host::Any`].
    pub fn parse(host: &str) -> Result<Self> {
        if host.is_empty() {
            return Ok(Self::Any);
        }
        if host.len() > 253 {
            return Err(Error::TooLong);
        }
        if host.parse::<std::net::IpAddr>().is_ok() {
            return Err(Error::IpAddress(host.to_owned()));
        }
        if host.contains(':') {
            return Err(Error::Port(host.to_owned()));
        }
        let (wildcard, rest) = match host.strip_prefix("*.") {
            Some(rest) => (true, rest),
            None => (false, host),
        };
        if rest.contains('*') || host == "*" {
            return Err(Error::Wildcard(host.to_owned()));
        }
        if !is_subdomain(rest) {
            return Err(Error::Invalid(host.to_owned()));
        }
        Ok(if wildcard {
            Self::Wildcard(rest.to_owned())
        } else {
            Self::Exact(rest.to_owned())
        })
    }

    /// Whether a request's host (the `Host` header or SNI name, without port)
    /// matches. Comparison ignores ASCII case and a trailing dot.
    pub fn matches(&self, request_host: &str) -> bool {
        let request = request_host.trim_end_matches('.');
        match self {
            Self::Any => true,
            Self::Exact(host) => host.eq_ignore_ascii_case(request),
            Self::Wildcard(suffix) => request.split_once('.').is_some_and(|(first, rest)| {
                !first.is_empty() && rest.eq_ignore_ascii_case(suffix)
            }),
        }
    }

    /// How specific the host is, for precedence: exact over wildcard over any.
    pub fn specificity(&self) -> u8 {
        match self {
            Self::Exact(_) => 2,
            Self::Wildcard(_) => 1,
            Self::Any => 0,
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => Ok(()),
            Self::Exact(host) => f.write_str(host),
            Self::Wildcard(suffix) => write!(f, "*.{suffix}"),
        }
    }
}

/// Whether `name` is a lowercase DNS-1123 subdomain.
pub fn is_subdomain(name: &str) -> bool {
    !name.is_empty() && name.len() <= 253 && name.split('.').all(is_label)
}

/// Whether `label` is a lowercase DNS-1123 label.
pub fn is_label(label: &str) -> bool {
    let bytes = label.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 63
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-')
        && bytes[0] != b'-'
        && bytes[bytes.len() - 1] != b'-'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_precise_wildcard_and_empty_hosts() {
        assert_eq!(Host::parse("").unwrap(), Host::Any);
        assert_eq!(
            Host::parse("foo.example.org").unwrap(),
            Host::Exact("foo.example.org".into())
        );
        assert_eq!(
            Host::parse("*.example.org").unwrap(),
            Host::Wildcard("example.org".into())
        );
        assert_eq!(
            Host::parse("*.example.org").unwrap().to_string(),
            "*.example.org"
        );
    }

    #[test]
    fn rejects_what_the_api_would_and_what_is_unsafe() {
        for bad in [
            "*",
            "foo.*.org",
            "**.example.org",
            "Foo.example.org",
            "foo example.org",
            "foo\nexample.org",
            "foo#.org",
            "-foo.org",
            "foo..org",
            "foo.org:80",
            "10.0.0.1",
            "::1",
            "foo;.org",
            "\"foo\".org",
        ] {
            assert!(Host::parse(bad).is_err(), "{bad:?} accepted");
        }
        assert!(Host::parse(&"a".repeat(64)).is_err());
        assert!(matches!(Host::parse("10.0.0.1"), Err(Error::IpAddress(_))));
    }

    #[test]
    fn wildcard_matches_exactly_one_label() {
        let host = Host::parse("*.foo.com").unwrap();
        assert!(host.matches("bar.foo.com"));
        assert!(host.matches("BAR.foo.com."));
        assert!(!host.matches("baz.bar.foo.com"));
        assert!(!host.matches("foo.com"));
        assert!(!host.matches(".foo.com"));
        let exact = Host::parse("foo.bar.com").unwrap();
        assert!(exact.matches("foo.bar.com"));
        assert!(exact.matches("FOO.bar.com"));
        assert!(!exact.matches("x.foo.bar.com"));
        assert!(Host::Any.matches("anything.example.net"));
    }
}
