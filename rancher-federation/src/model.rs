//! The federation's domain model, free of Kubernetes types: domain names,
//! members, per-cluster service shards, DNS records and record changes.

use std::{
    collections::BTreeSet,
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

/// The TTL of every federated record unless configured otherwise, in seconds
/// (Federation v1's `minDNSTTL`, KubeFed's `defaultDNSTTL`).
pub const DEFAULT_TTL: u32 = 180;

/// Longest label, in bytes.
pub const MAX_LABEL: usize = 63;

/// Longest name in text form without the trailing dot, in bytes.
pub const MAX_NAME: usize = 253;

/// Errors from building model values.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// A label is empty, longer than 63 bytes, or holds characters other than
    /// letters, digits and inner `-` (`_` is allowed for service labels).
    #[error("invalid DNS label {label:?} in {name:?}")]
    InvalidLabel {
        /// The offending label.
        label: String,
        /// The whole name.
        name: String,
    },
    /// The name is longer than 253 bytes.
    #[error("domain name {0:?} is longer than 253 bytes")]
    TooLong(String),
    /// The name is empty.
    #[error("empty domain name")]
    Empty,
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether `label` is an RFC 1123 label: letters, digits and inner `-`, at
/// most 63 bytes.
pub fn is_label(label: &str) -> bool {
    let b = label.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_LABEL
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'-' || *c == b'_')
        && b[0] != b'-'
        && b[b.len() - 1] != b'-'
}

/// A domain name: lower-case, without the trailing dot, every label checked.
///
/// Comparison is therefore case-insensitive, as DNS requires.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DnsName(String);

impl DnsName {
    /// Parses and normalises `name` (a trailing dot is accepted and dropped).
    pub fn new(name: &str) -> Result<Self> {
        let trimmed = name.strip_suffix('.').unwrap_or(name);
        if trimmed.is_empty() {
            return Err(Error::Empty);
        }
        if trimmed.len() > MAX_NAME {
            return Err(Error::TooLong(name.to_owned()));
        }
        let lower = trimmed.to_ascii_lowercase();
        if let Some(label) = lower.split('.').find(|label| !is_label(label)) {
            return Err(Error::InvalidLabel {
                label: label.to_owned(),
                name: name.to_owned(),
            });
        }
        Ok(Self(lower))
    }

    /// `label.self`, checked.
    pub fn prepend(&self, label: &str) -> Result<Self> {
        Self::new(&format!("{label}.{}", self.0))
    }

    /// The name as text, without the trailing dot.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name with the trailing dot (`nginx.default.myfed.svc.example.com.`).
    pub fn fqdn(&self) -> String {
        format!("{}.", self.0)
    }

    /// The labels, leftmost first.
    pub fn labels(&self) -> impl Iterator<Item = &str> {
        self.0.split('.')
    }

    /// Whether `self` is `other` or lies below it.
    pub fn is_within(&self, other: &Self) -> bool {
        self == other
            || self
                .0
                .strip_suffix(other.as_str())
                .is_some_and(|rest| rest.ends_with('.'))
    }
}

impl fmt::Display for DnsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for DnsName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::new(s)
    }
}

/// A federation as the record computation needs it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Federation {
    /// The federation's name: one label (`myfed`).
    pub name: String,
    /// The DNS suffix the federation's names live under (`example.com`).
    pub suffix: DnsName,
    /// The TTL of every record, seconds.
    pub ttl: u32,
}

impl Federation {
    /// A federation with the default TTL of 180 s.
    pub fn new(name: &str, suffix: &str) -> Result<Self> {
        let suffix = DnsName::new(suffix)?;
        let name = name.to_ascii_lowercase();
        if !is_label(&name) {
            return Err(Error::InvalidLabel {
                name: name.clone(),
                label: name,
            });
        }
        Ok(Self {
            name,
            suffix,
            ttl: DEFAULT_TTL,
        })
    }

    /// The part of the DNS namespace this federation's records live in.
    pub fn scope(&self) -> Scope {
        Scope {
            federation: self.name.clone(),
            suffix: self.suffix.clone(),
        }
    }
}

/// The names one federation owns under its suffix:
/// `<svc>.<ns>.<federation>.svc[.<zone>][.<region>].<suffix>`.
///
/// A provider lists and changes only names within a scope, so records of other
/// federations and any other record in the zone are never touched.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scope {
    /// The federation's name.
    pub federation: String,
    /// The DNS suffix.
    pub suffix: DnsName,
}

impl Scope {
    /// Whether `name` is a federated service name of this federation at any
    /// level (global, region or zone).
    pub fn owns(&self, name: &DnsName) -> bool {
        let Some(prefix) = name
            .as_str()
            .strip_suffix(self.suffix.as_str())
            .and_then(|rest| rest.strip_suffix('.'))
        else {
            return false;
        };
        let labels: Vec<&str> = prefix.split('.').collect();
        (4..=6).contains(&labels.len()) && labels[2] == self.federation && labels[3] == "svc"
    }
}

/// One member cluster as the record computation sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The member's name (its `FederatedCluster`).
    pub cluster: String,
    /// Whether the last health check passed. An unhealthy member's shards do
    /// not count.
    pub healthy: bool,
    /// The member's region, from its nodes' `topology.kubernetes.io/region`.
    pub region: Option<String>,
    /// The member's zones within that region, from its nodes'
    /// `topology.kubernetes.io/zone`.
    pub zones: Vec<String>,
}

/// A federated service's namespace and name.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ServiceKey {
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl ServiceKey {
    /// A key.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// One load balancer ingress point of a member's Service.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Ingress {
    /// An address.
    Ip(IpAddr),
    /// A hostname (cloud load balancers such as AWS ELB report one).
    Hostname(String),
}

/// The federated Service in one member cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shard {
    /// The member holding it.
    pub cluster: String,
    /// The Service's `status.loadBalancer.ingress`.
    pub ingress: Vec<Ingress>,
    /// How many ready endpoints the Service has in that member.
    pub ready_endpoints: usize,
}

impl Shard {
    /// A shard serves traffic when it has a load balancer address and at least
    /// one ready endpoint. Whether its member is healthy is checked separately.
    pub fn serves(&self) -> bool {
        !self.ingress.is_empty() && self.ready_endpoints > 0
    }
}

/// The data of one record.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RecordData {
    /// An IPv4 address.
    A(Ipv4Addr),
    /// An IPv6 address.
    Aaaa(Ipv6Addr),
    /// An alias.
    Cname(DnsName),
}

impl RecordData {
    /// The A or AAAA record data for `ip`.
    pub fn address(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::A(v4),
            IpAddr::V6(v6) => Self::Aaaa(v6),
        }
    }

    /// The record type's mnemonic.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::A(_) => "A",
            Self::Aaaa(_) => "AAAA",
            Self::Cname(_) => "CNAME",
        }
    }
}

impl fmt::Display for RecordData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::A(ip) => write!(f, "A {ip}"),
            Self::Aaaa(ip) => write!(f, "AAAA {ip}"),
            Self::Cname(target) => write!(f, "CNAME {}", target.fqdn()),
        }
    }
}

/// One resource record.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Record {
    /// The owner name.
    pub name: DnsName,
    /// The data.
    pub data: RecordData,
    /// Time to live, seconds.
    pub ttl: u32,
}

impl Record {
    /// A record.
    pub fn new(name: DnsName, ttl: u32, data: RecordData) -> Self {
        Self { name, data, ttl }
    }
}

impl fmt::Display for Record {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} IN {}", self.name.fqdn(), self.ttl, self.data)
    }
}

/// A set of records, ordered by name, then data, then TTL.
pub type RecordSet = BTreeSet<Record>;

/// The records to remove and to add to turn one record set into another.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Records to delete (by name, type and data).
    pub removed: Vec<Record>,
    /// Records to add.
    pub added: Vec<Record>,
}

impl Changes {
    /// The minimal change from `current` to `desired`: every record only in
    /// `current` is removed, every record only in `desired` is added, nothing
    /// else is touched. A TTL change is a removal and an addition.
    pub fn between(current: &RecordSet, desired: &RecordSet) -> Self {
        Self {
            removed: current.difference(desired).cloned().collect(),
            added: desired.difference(current).cloned().collect(),
        }
    }

    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.added.is_empty()
    }

    /// Applies the change to `records`: removals first, then additions.
    pub fn apply_to(&self, records: &mut RecordSet) {
        for record in &self.removed {
            records.remove(record);
        }
        records.extend(self.added.iter().cloned());
    }
}

impl fmt::Display for Changes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} removed, {} added",
            self.removed.len(),
            self.added.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> DnsName {
        DnsName::new(s).unwrap()
    }

    #[test]
    fn names_are_normalised_and_checked() {
        assert_eq!(name("Web.Example.ORG.").as_str(), "web.example.org");
        assert_eq!(name("web.example.org").fqdn(), "web.example.org.");
        assert_eq!(DnsName::new(""), Err(Error::Empty));
        assert_eq!(DnsName::new("."), Err(Error::Empty));
        assert!(matches!(
            DnsName::new("a..example.org"),
            Err(Error::InvalidLabel { .. })
        ));
        assert!(matches!(
            DnsName::new("-a.example.org"),
            Err(Error::InvalidLabel { .. })
        ));
        assert!(matches!(
            DnsName::new("a b.example.org"),
            Err(Error::InvalidLabel { .. })
        ));
        assert!(DnsName::new(&"a".repeat(64)).is_err());
        let long = vec!["abcdefghi"; 26].join(".");
        assert!(matches!(DnsName::new(&long), Err(Error::TooLong(_))));
    }

    #[test]
    fn within_compares_whole_labels() {
        let zone = name("example.org");
        assert!(name("a.example.org").is_within(&zone));
        assert!(name("example.org").is_within(&zone));
        assert!(!name("badexample.org").is_within(&zone));
        assert!(!name("example.net").is_within(&zone));
    }

    #[test]
    fn scope_owns_only_the_federations_service_names() {
        let scope = Federation::new("myfed", "example.org").unwrap().scope();
        for owned in [
            "nginx.default.myfed.svc.example.org",
            "nginx.default.myfed.svc.eu.example.org",
            "nginx.default.myfed.svc.eu-1a.eu.example.org",
        ] {
            assert!(scope.owns(&name(owned)), "{owned}");
        }
        for foreign in [
            "example.org",
            "www.example.org",
            "nginx.default.otherfed.svc.example.org",
            "nginx.default.myfed.svc.example.net",
            "default.myfed.svc.example.org",
            "x.nginx.default.myfed.svc.a.b.c.example.org",
            "nginx.default.myfed.svc.notexample.org",
        ] {
            assert!(!scope.owns(&name(foreign)), "{foreign}");
        }
    }

    #[test]
    fn federation_names_must_be_labels() {
        assert!(Federation::new("my.fed", "example.org").is_err());
        assert!(Federation::new("", "example.org").is_err());
        assert_eq!(
            Federation::new("MyFed", "example.org").unwrap().name,
            "myfed"
        );
        assert_eq!(Federation::new("f", "example.org").unwrap().ttl, 180);
    }

    #[test]
    fn changes_are_minimal_and_apply() {
        let a = |ip: &str| {
            Record::new(
                name("a.example.org"),
                180,
                RecordData::A(ip.parse().unwrap()),
            )
        };
        let current: RecordSet = [a("192.0.2.1"), a("192.0.2.2")].into();
        let desired: RecordSet = [a("192.0.2.2"), a("192.0.2.3")].into();
        let changes = Changes::between(&current, &desired);
        assert_eq!(changes.removed, vec![a("192.0.2.1")]);
        assert_eq!(changes.added, vec![a("192.0.2.3")]);
        let mut applied = current.clone();
        changes.apply_to(&mut applied);
        assert_eq!(applied, desired);
        assert!(Changes::between(&desired, &desired).is_empty());
        assert_eq!(changes.to_string(), "1 removed, 1 added");
    }

    #[test]
    fn records_print_in_zone_file_form() {
        let record = Record::new(
            name("a.example.org"),
            180,
            RecordData::Cname(name("b.example.org")),
        );
        assert_eq!(
            record.to_string(),
            "a.example.org. 180 IN CNAME b.example.org."
        );
    }
}
