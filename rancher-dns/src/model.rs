//! The record model: stripped-down Services, EndpointSlices and Pods (no
//! Kubernetes types), the options that shape the zone, and DNS records.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

/// The schema version of the Kubernetes DNS-Based Service Discovery
/// specification this crate implements, served as `dns-version.<zone>` TXT.
pub const SCHEMA_VERSION: &str = "1.1.0";
/// Default cluster domain.
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";
/// Default record TTL.
pub const DEFAULT_TTL: Duration = Duration::from_secs(5);

/// Identifies a Service: namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServiceKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ServiceKey {
    /// Builds a key.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for ServiceKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// How a Service is addressed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServiceKind {
    /// A virtual IP per IP family (`spec.clusterIPs`).
    ClusterIp(Vec<IpAddr>),
    /// `clusterIP: None`: the name resolves to the endpoint addresses.
    Headless,
    /// `type: ExternalName`: a CNAME to the target.
    ExternalName(String),
}

/// Transport protocol of a port.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Protocol {
    /// TCP.
    Tcp,
    /// UDP.
    Udp,
    /// SCTP.
    Sctp,
}

impl Protocol {
    /// The SRV label without underscore: `tcp`, `udp`, `sctp`.
    pub fn label(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        }
    }
}

/// A port of a Service or an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Port {
    /// Port name; unnamed ports get no SRV record.
    pub name: Option<String>,
    /// Protocol.
    pub protocol: Protocol,
    /// Port number.
    pub port: u16,
}

/// A Service as DNS needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// Namespace and name.
    pub key: ServiceKey,
    /// How the Service is addressed.
    pub kind: ServiceKind,
    /// Service ports (SRV for ClusterIP services).
    pub ports: Vec<Port>,
    /// `spec.publishNotReadyAddresses`: not-ready endpoints are published too.
    pub publish_not_ready_addresses: bool,
}

/// One endpoint of an EndpointSlice.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Addresses (one family per slice).
    pub addresses: Vec<IpAddr>,
    /// `hostname` (StatefulSet pods: the pod name).
    pub hostname: Option<String>,
    /// `conditions.ready` (unset counts as ready).
    pub ready: bool,
    /// Name of the Pod behind the endpoint (`targetRef`), if any.
    pub pod_name: Option<String>,
}

/// An EndpointSlice as DNS needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSlice {
    /// Namespace.
    pub namespace: String,
    /// Name of the slice.
    pub name: String,
    /// The Service it belongs to (`kubernetes.io/service-name` label).
    pub service: String,
    /// Endpoints.
    pub endpoints: Vec<Endpoint>,
    /// Endpoint ports (SRV for headless services).
    pub ports: Vec<Port>,
}

/// A Pod, for `pods verified` records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `status.podIPs`.
    pub ips: Vec<IpAddr>,
}

/// Pod records `a-b-c-d.<ns>.pod.<zone>` (removed from the spec in 1.1.0,
/// kept as an option like CoreDNS's `pods`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum PodRecords {
    /// No pod records (default).
    #[default]
    Disabled,
    /// Any dashed address in any namespace resolves to itself.
    Insecure,
    /// Only addresses of existing Pods in that namespace resolve.
    Verified,
}

impl std::str::FromStr for PodRecords {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "disabled" => Ok(Self::Disabled),
            "insecure" => Ok(Self::Insecure),
            "verified" => Ok(Self::Verified),
            other => Err(format!(
                "pod records must be disabled, insecure or verified, not {other:?}"
            )),
        }
    }
}

/// Options that shape the zone, like CoreDNS's `kubernetes` plugin options.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    /// Cluster domain (normalised, no trailing dot).
    pub zone: String,
    /// TTL of every record and the negative-caching TTL (SOA minimum).
    pub ttl: Duration,
    /// Pod records.
    pub pods: PodRecords,
    /// Use the pod name as the endpoint label when an endpoint has no hostname.
    pub endpoint_pod_names: bool,
    /// Serve only these namespaces (`None`: all).
    pub namespaces: Option<BTreeSet<String>>,
    /// Reverse zones answered authoritatively on a miss (NXDOMAIN); PTR
    /// misses elsewhere in `in-addr.arpa`/`ip6.arpa` are forwarded upstream.
    pub reverse_zones: Vec<String>,
    /// Addresses of the DNS server itself, published as `ns.dns.<zone>`.
    pub nameserver_addresses: Vec<IpAddr>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            zone: DEFAULT_CLUSTER_DOMAIN.to_owned(),
            ttl: DEFAULT_TTL,
            pods: PodRecords::Disabled,
            endpoint_pod_names: false,
            namespaces: None,
            reverse_zones: Vec::new(),
            nameserver_addresses: Vec::new(),
        }
    }
}

impl Options {
    /// Whether a namespace is served.
    pub fn serves_namespace(&self, namespace: &str) -> bool {
        self.namespaces
            .as_ref()
            .is_none_or(|set| set.contains(namespace))
    }

    /// TTL in seconds, as carried in records.
    pub fn ttl_secs(&self) -> u32 {
        u32::try_from(self.ttl.as_secs()).unwrap_or(u32::MAX)
    }

    /// The name of the zone's nameserver, `ns.dns.<zone>`.
    pub fn nameserver(&self) -> String {
        format!("ns.dns.{}", self.zone)
    }
}

/// Record data.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum RData {
    /// IPv4 address.
    A(Ipv4Addr),
    /// IPv6 address.
    Aaaa(Ipv6Addr),
    /// Canonical name.
    Cname(String),
    /// Reverse pointer.
    Ptr(String),
    /// Service location.
    Srv {
        /// Priority.
        priority: u16,
        /// Weight.
        weight: u16,
        /// Port.
        port: u16,
        /// Target host.
        target: String,
    },
    /// Text strings.
    Txt(Vec<String>),
    /// Nameserver.
    Ns(String),
    /// Start of authority (boxed: it is rare and large).
    Soa(Box<Soa>),
}

/// The data of an SOA record.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Soa {
    /// Primary nameserver.
    pub mname: String,
    /// Responsible mailbox (`hostmaster.<zone>`).
    pub rname: String,
    /// Serial.
    pub serial: u32,
    /// Refresh (s).
    pub refresh: u32,
    /// Retry (s).
    pub retry: u32,
    /// Expire (s).
    pub expire: u32,
    /// Negative-caching TTL (s).
    pub minimum: u32,
}

impl Soa {
    /// The SOA this crate serves for a zone: `ns.dns.<zone>`,
    /// `hostmaster.<zone>`, the TTL as negative-caching TTL.
    pub fn for_options(options: &Options) -> Self {
        Self {
            mname: options.nameserver(),
            rname: format!("hostmaster.{}", options.zone),
            serial: 1,
            refresh: 7200,
            retry: 1800,
            expire: 86400,
            minimum: options.ttl_secs(),
        }
    }
}

impl RData {
    /// The record type code.
    pub fn rtype(&self) -> RecordType {
        match self {
            Self::A(_) => RecordType::A,
            Self::Aaaa(_) => RecordType::AAAA,
            Self::Cname(_) => RecordType::CNAME,
            Self::Ptr(_) => RecordType::PTR,
            Self::Srv { .. } => RecordType::SRV,
            Self::Txt(_) => RecordType::TXT,
            Self::Ns(_) => RecordType::NS,
            Self::Soa(_) => RecordType::SOA,
        }
    }
}

/// DNS record type codes this crate serves (plus any other as a number).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RecordType(pub u16);

#[allow(missing_docs)]
impl RecordType {
    pub const A: Self = Self(1);
    pub const NS: Self = Self(2);
    pub const CNAME: Self = Self(5);
    pub const SOA: Self = Self(6);
    pub const PTR: Self = Self(12);
    pub const TXT: Self = Self(16);
    pub const AAAA: Self = Self(28);
    pub const SRV: Self = Self(33);
    pub const OPT: Self = Self(41);
    pub const IXFR: Self = Self(251);
    pub const AXFR: Self = Self(252);
    pub const ANY: Self = Self(255);
}

impl std::fmt::Display for RecordType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = match *self {
            Self::A => "A",
            Self::NS => "NS",
            Self::CNAME => "CNAME",
            Self::SOA => "SOA",
            Self::PTR => "PTR",
            Self::TXT => "TXT",
            Self::AAAA => "AAAA",
            Self::SRV => "SRV",
            Self::ANY => "ANY",
            Self(n) => return write!(f, "TYPE{n}"),
        };
        f.write_str(s)
    }
}

/// All records of one owner name (lower-case, no trailing dot). An empty
/// `records` list is an empty non-terminal: the name exists (NODATA, not
/// NXDOMAIN) but owns nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRecords {
    /// Owner name.
    pub name: String,
    /// Records, sorted and deduplicated.
    pub records: Vec<RData>,
}

/// The whole zone as a backend receives it in
/// [`DnsBackend::sync`](crate::backend::DnsBackend::sync): every owner name
/// once, with its records.
///
/// The index hands out a [`ZoneView`](crate::records::ZoneView), which
/// shares the index's objects and builds each name's records as it is read
/// (so a backend copies only what it keeps); a list of [`NameRecords`] (a
/// `Vec`, an array) is a zone too.
pub trait ZoneRecords: Sync {
    /// Number of owner names.
    fn len(&self) -> usize;

    /// Whether the zone has no name at all.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Calls `f` with every owner name (lower-case, no trailing dot) and its
    /// records (sorted, deduplicated; empty for an empty non-terminal). Each
    /// name comes once; the order is unspecified. The records are only
    /// borrowed for the call: a backend copies what it keeps.
    fn for_each_name(&self, f: &mut dyn FnMut(&str, &[RData]));
}

impl ZoneRecords for [NameRecords] {
    fn len(&self) -> usize {
        <[NameRecords]>::len(self)
    }

    fn for_each_name(&self, f: &mut dyn FnMut(&str, &[RData])) {
        for n in self {
            f(&n.name, &n.records);
        }
    }
}

impl ZoneRecords for Vec<NameRecords> {
    fn len(&self) -> usize {
        self.as_slice().len()
    }

    fn for_each_name(&self, f: &mut dyn FnMut(&str, &[RData])) {
        self.as_slice().for_each_name(f);
    }
}

impl<const N: usize> ZoneRecords for [NameRecords; N] {
    fn len(&self) -> usize {
        N
    }

    fn for_each_name(&self, f: &mut dyn FnMut(&str, &[RData])) {
        self.as_slice().for_each_name(f);
    }
}

/// A change to the zone, as backends receive it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Change {
    /// The name now has exactly these records (replacing any earlier set).
    Upsert(NameRecords),
    /// The name no longer exists.
    Remove(String),
}

impl Change {
    /// The owner name the change is about.
    pub fn name(&self) -> &str {
        match self {
            Self::Upsert(r) => &r.name,
            Self::Remove(n) => n,
        }
    }
}
