//! The network configuration the plugin reads on stdin, parsed and validated.
//!
//! Keys follow the reference `bridge` and `host-local` plugins where they mean the
//! same thing (`bridge`, `isGateway`, `isDefaultGateway`, `ipMasq`, `mtu`,
//! `hairpinMode`, `promiscMode`, `ipam.ranges`, `ipam.subnet`, `ipam.routes`,
//! `ipam.dataDir`), plus Rancher's `linkMTUOverhead` and this plugin's
//! `clusterNetworks`. Unknown keys are passed over, as the spec asks. Every error
//! names the key that is wrong.
//!
//! ```json
//! {
//!   "cniVersion": "1.1.0",
//!   "name": "rancher",
//!   "type": "rancher-cni",
//!   "bridge": "cni0",
//!   "ipMasq": true,
//!   "clusterNetworks": ["10.42.0.0/16"],
//!   "ipam": {"ranges": [[{"subnet": "10.42.3.0/24"}]]}
//! }
//! ```

use std::{net::IpAddr, path::PathBuf};

use ipnet::IpNet;
use serde_json::{Map, Value};

use crate::{
    model::{Attachment, Family, Range, RangeSet, VXLAN_OVERHEAD_V4, valid_ifname},
    protocol::{CniError, Route, SUPPORTED_VERSIONS, code, supported, version_cmp},
};

/// The plugin's `type`.
pub const PLUGIN_TYPE: &str = "rancher-cni";

/// The default bridge.
pub const DEFAULT_BRIDGE: &str = "cni0";

/// Where reservations live unless `ipam.dataDir` says otherwise: under `/run`, so a
/// reboot (which kills every container) also clears every reservation.
pub const DEFAULT_DATA_DIR: &str = "/run/rancher-cni/networks";

/// A configuration that is not valid, naming the key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid network configuration: {key}: {reason}")]
pub struct ConfigError {
    /// The key, as a path (`ipam.ranges[0][1].subnet`).
    pub key: String,
    /// What is wrong with it.
    pub reason: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

impl From<ConfigError> for CniError {
    fn from(e: ConfigError) -> Self {
        Self::new(code::INVALID_CONFIG, e.to_string())
    }
}

/// The parsed network configuration.
#[derive(Clone, Debug, PartialEq)]
pub struct NetConf {
    /// The spec version results are written in.
    pub cni_version: String,
    /// The network's name (also the directory of its reservations).
    pub name: String,
    /// The bridge on the host.
    pub bridge: String,
    /// The MTU of the bridge, the veth pair and the container's interface; `None`:
    /// the underlay's MTU minus `link_mtu_overhead`.
    pub mtu: Option<u32>,
    /// What the overlay takes off the underlay's MTU (default 50, VXLAN over IPv4).
    pub link_mtu_overhead: u32,
    /// Hairpin on the bridge port, so a pod reaches itself through a Service.
    pub hairpin: bool,
    /// Promiscuous bridge (Rancher's alternative to hairpin; never both).
    pub promisc: bool,
    /// Masquerade traffic from the pods that leaves `cluster_networks`.
    pub ip_masq: bool,
    /// Default routes in the container through the bridge.
    pub default_gateway: bool,
    /// The cluster's pod networks, not masqueraded (default: the ranges' subnets).
    pub cluster_networks: Vec<IpNet>,
    /// Where reservations are kept.
    pub data_dir: PathBuf,
    /// One address per set (one set per family for dual-stack).
    pub range_sets: Vec<RangeSet>,
    /// Extra routes in the container (via the gateway of their family).
    pub routes: Vec<Route>,
    /// The `dns` section, passed into the result.
    pub dns: Option<Value>,
    /// `prevResult`.
    pub prev_result: Option<Value>,
    /// GC's `cni.dev/valid-attachments`.
    pub valid_attachments: Option<Vec<Attachment>>,
    /// Addresses asked for through `runtimeConfig.ips` or `args.cni.ips`.
    pub requested_ips: Vec<IpAddr>,
}

impl NetConf {
    /// Parses `stdin`: code 6 when it is not JSON, code 1 for a version this plugin
    /// does not speak, code 7 naming the key otherwise.
    pub fn parse(stdin: &[u8]) -> Result<Self, CniError> {
        let value: Value = serde_json::from_slice(stdin).map_err(|e| {
            CniError::new(
                code::DECODE,
                format!("network configuration is not valid JSON: {e}"),
            )
        })?;
        let Value::Object(obj) = value else {
            return Err(CniError::new(
                code::DECODE,
                "network configuration is not a JSON object",
            ));
        };
        let cni_version = negotiate_version(&obj)?;
        Ok(Self::from_object(&obj, cni_version)?)
    }

    fn from_object(obj: &Map<String, Value>, cni_version: String) -> Result<Self, ConfigError> {
        let name = req_str(obj, "name", "")?;
        if !valid_network_name(&name) {
            return Err(ConfigError::new(
                "name",
                "must start with a letter or digit and hold only letters, digits, '_', '.' and '-'",
            ));
        }
        let kind = req_str(obj, "type", "")?;
        if kind != PLUGIN_TYPE {
            return Err(ConfigError::new(
                "type",
                format!("{kind:?} is not {PLUGIN_TYPE:?}"),
            ));
        }
        let bridge = opt_str(obj, "bridge", "")?.unwrap_or_else(|| DEFAULT_BRIDGE.to_string());
        if !valid_ifname(&bridge) {
            return Err(ConfigError::new(
                "bridge",
                format!("{bridge:?} is not a valid interface name"),
            ));
        }
        let mtu = opt_u32(obj, "mtu", "")?;
        if let Some(m) = mtu
            && !(576..=65_535).contains(&m)
        {
            return Err(ConfigError::new(
                "mtu",
                format!("{m} is outside 576..=65535"),
            ));
        }
        let link_mtu_overhead = opt_u32(obj, "linkMTUOverhead", "")?.unwrap_or(VXLAN_OVERHEAD_V4);
        if link_mtu_overhead > 1000 {
            return Err(ConfigError::new(
                "linkMTUOverhead",
                format!("{link_mtu_overhead} is more than 1000"),
            ));
        }
        let hairpin = opt_bool(obj, "hairpinMode", "")?;
        let promisc = opt_bool(obj, "promiscMode", "")?.unwrap_or(false);
        if promisc && hairpin == Some(true) {
            return Err(ConfigError::new(
                "promiscMode",
                "promiscMode and hairpinMode cannot both be true",
            ));
        }
        let hairpin = hairpin.unwrap_or(!promisc);
        let ip_masq = opt_bool(obj, "ipMasq", "")?.unwrap_or(false);
        let default_gateway = opt_bool(obj, "isDefaultGateway", "")?.unwrap_or(true);
        // `isGateway` is always true here (the bridge holds the gateway); accepted for
        // configurations written for the reference plugin.
        if opt_bool(obj, "isGateway", "")? == Some(false) {
            return Err(ConfigError::new(
                "isGateway",
                "the bridge is always the pods' gateway; false is not supported",
            ));
        }
        let ipam = match obj.get("ipam") {
            None => {
                return Err(ConfigError::new(
                    "ipam",
                    "missing (the pods' address ranges)",
                ));
            }
            Some(Value::Object(ipam)) => ipam,
            Some(_) => return Err(ConfigError::new("ipam", "expected an object")),
        };
        let (range_sets, routes, data_dir) = parse_ipam(ipam)?;
        let cluster_networks = match obj.get("clusterNetworks") {
            None => range_sets
                .iter()
                .flat_map(|s| s.ranges.iter().map(|r| r.subnet))
                .collect(),
            Some(v) => parse_net_list(v, "clusterNetworks")?,
        };
        let dns = match obj.get("dns") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) => Some(v.clone()),
            Some(_) => return Err(ConfigError::new("dns", "expected an object")),
        };
        let prev_result = match obj.get("prevResult") {
            None | Some(Value::Null) => None,
            Some(v @ Value::Object(_)) => Some(v.clone()),
            Some(_) => return Err(ConfigError::new("prevResult", "expected an object")),
        };
        let valid_attachments = match obj.get("cni.dev/valid-attachments") {
            None | Some(Value::Null) => None,
            Some(v) => Some(parse_attachments(v)?),
        };
        let requested_ips = requested_ips(obj)?;
        Ok(Self {
            cni_version,
            name,
            bridge,
            mtu,
            link_mtu_overhead,
            hairpin,
            promisc,
            ip_masq,
            default_gateway,
            cluster_networks,
            data_dir,
            range_sets,
            routes,
            dns,
            prev_result,
            valid_attachments,
            requested_ips,
        })
    }

    /// The gateway of `family`: the first range of that family's first set.
    pub fn gateway(&self, family: Family) -> Option<IpAddr> {
        self.range_sets
            .iter()
            .filter(|s| s.family() == Some(family))
            .find_map(|s| s.ranges.first())
            .map(|r| r.gateway)
    }

    /// Every gateway with its subnet: the addresses the bridge holds.
    pub fn gateways(&self) -> Vec<IpNet> {
        let mut out: Vec<IpNet> = Vec::new();
        for set in &self.range_sets {
            for range in &set.ranges {
                let net = range.with_prefix(range.gateway);
                if !out.contains(&net) {
                    out.push(net);
                }
            }
        }
        out
    }

    /// The families the configuration hands out addresses of.
    pub fn families(&self) -> Vec<Family> {
        let mut out: Vec<Family> = self
            .range_sets
            .iter()
            .filter_map(RangeSet::family)
            .collect();
        out.dedup();
        out
    }
}

/// Picks the version to speak: `cniVersion`, or the highest supported entry of
/// `cniVersions` when no `cniVersion` is given.
fn negotiate_version(obj: &Map<String, Value>) -> Result<String, CniError> {
    match obj.get("cniVersion") {
        Some(Value::String(v)) => {
            if supported(v) {
                Ok(v.clone())
            } else {
                Err(CniError::incompatible_version(v, ""))
            }
        }
        Some(_) => Err(ConfigError::new("cniVersion", "expected a string").into()),
        None => match obj.get("cniVersions") {
            Some(Value::Array(list)) => {
                let mut best: Option<&str> = None;
                for (i, v) in list.iter().enumerate() {
                    let v = v.as_str().ok_or_else(|| {
                        ConfigError::new(format!("cniVersions[{i}]"), "expected a string")
                    })?;
                    if supported(v) && best.is_none_or(|b| version_cmp(v, b).is_gt()) {
                        best = Some(v);
                    }
                }
                best.map(str::to_string).ok_or_else(|| {
                    CniError::new(
                        code::INCOMPATIBLE_VERSION,
                        format!(
                            "none of cniVersions is supported; supported versions: {}",
                            SUPPORTED_VERSIONS.join(", ")
                        ),
                    )
                })
            }
            Some(_) => Err(ConfigError::new("cniVersions", "expected a list of strings").into()),
            None => Err(ConfigError::new("cniVersion", "missing").into()),
        },
    }
}

/// Reads only the version of a configuration, for VERSION and for error documents:
/// `None` when stdin has none or is not JSON.
pub fn peek_version(stdin: &[u8]) -> Option<String> {
    let value: Value = serde_json::from_slice(stdin).ok()?;
    match value.get("cniVersion") {
        Some(Value::String(v)) => Some(v.clone()),
        _ => {
            let obj = value.as_object()?;
            negotiate_version(obj).ok()
        }
    }
}

/// Whether `name` is a valid network name.
pub fn valid_network_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
        && name.len() <= 255
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn key(prefix: &str, k: &str) -> String {
    if prefix.is_empty() {
        k.to_string()
    } else {
        format!("{prefix}.{k}")
    }
}

fn req_str(obj: &Map<String, Value>, k: &str, prefix: &str) -> Result<String, ConfigError> {
    opt_str(obj, k, prefix)?.ok_or_else(|| ConfigError::new(key(prefix, k), "missing"))
}

fn opt_str(obj: &Map<String, Value>, k: &str, prefix: &str) -> Result<Option<String>, ConfigError> {
    match obj.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ConfigError::new(key(prefix, k), "expected a string")),
    }
}

fn opt_bool(obj: &Map<String, Value>, k: &str, prefix: &str) -> Result<Option<bool>, ConfigError> {
    match obj.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(ConfigError::new(key(prefix, k), "expected true or false")),
    }
}

fn opt_u32(obj: &Map<String, Value>, k: &str, prefix: &str) -> Result<Option<u32>, ConfigError> {
    match obj.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .map(Some)
            .ok_or_else(|| ConfigError::new(key(prefix, k), "expected a non-negative integer")),
    }
}

fn opt_ip(obj: &Map<String, Value>, k: &str, prefix: &str) -> Result<Option<IpAddr>, ConfigError> {
    match opt_str(obj, k, prefix)? {
        None => Ok(None),
        Some(s) => s
            .parse()
            .map(Some)
            .map_err(|_| ConfigError::new(key(prefix, k), format!("{s:?} is not an IP address"))),
    }
}

fn parse_net(s: &str, k: &str) -> Result<IpNet, ConfigError> {
    s.parse()
        .map_err(|_| ConfigError::new(k, format!("{s:?} is not a CIDR (like 10.42.0.0/16)")))
}

fn parse_net_list(v: &Value, k: &str) -> Result<Vec<IpNet>, ConfigError> {
    let Value::Array(list) = v else {
        return Err(ConfigError::new(k, "expected a list of CIDRs"));
    };
    list.iter()
        .enumerate()
        .map(|(i, item)| {
            let k = format!("{k}[{i}]");
            let s = item
                .as_str()
                .ok_or_else(|| ConfigError::new(&k, "expected a string"))?;
            parse_net(s, &k)
        })
        .collect()
}

fn parse_range(obj: &Map<String, Value>, prefix: &str) -> Result<Range, ConfigError> {
    let subnet = parse_net(&req_str(obj, "subnet", prefix)?, &key(prefix, "subnet"))?;
    let start = opt_ip(obj, "rangeStart", prefix)?;
    let end = opt_ip(obj, "rangeEnd", prefix)?;
    let gateway = opt_ip(obj, "gateway", prefix)?;
    Range::new(subnet, start, end, gateway).map_err(|e| {
        let field = match &e {
            crate::model::RangeError::Outside { what, .. } => *what,
            crate::model::RangeError::Reversed { .. } => "rangeStart",
            _ => "subnet",
        };
        ConfigError::new(key(prefix, field), e.to_string())
    })
}

type Ipam = (Vec<RangeSet>, Vec<Route>, PathBuf);

fn parse_ipam(ipam: &Map<String, Value>) -> Result<Ipam, ConfigError> {
    if let Some(kind) = opt_str(ipam, "type", "ipam")?
        && kind != PLUGIN_TYPE
        && kind != "host-local"
    {
        return Err(ConfigError::new(
            "ipam.type",
            format!(
                "{kind:?}: the address management is built in; use {PLUGIN_TYPE:?} or \"host-local\" (same keys) or leave it out"
            ),
        ));
    }
    let mut sets = Vec::new();
    match ipam.get("ranges") {
        Some(Value::Array(list)) => {
            for (i, set) in list.iter().enumerate() {
                let Value::Array(ranges) = set else {
                    return Err(ConfigError::new(
                        format!("ipam.ranges[{i}]"),
                        "expected a list of ranges",
                    ));
                };
                let mut parsed: Vec<Range> = Vec::new();
                for (j, range) in ranges.iter().enumerate() {
                    let prefix = format!("ipam.ranges[{i}][{j}]");
                    let Value::Object(range) = range else {
                        return Err(ConfigError::new(prefix, "expected an object"));
                    };
                    let range = parse_range(range, &prefix)?;
                    if let Some(first) = parsed.first()
                        && first.family() != range.family()
                    {
                        return Err(ConfigError::new(
                            format!("{prefix}.subnet"),
                            format!(
                                "{} range in a set of {} ranges (one family per set)",
                                range.family(),
                                first.family()
                            ),
                        ));
                    }
                    if let Some(other) = parsed
                        .iter()
                        .find(|r| {
                            r.subnet.contains(&range.start) || range.subnet.contains(&r.start)
                        })
                        .filter(|r| overlaps(r, &range))
                    {
                        return Err(ConfigError::new(
                            format!("{prefix}.subnet"),
                            format!("overlaps {} in the same set", other.subnet),
                        ));
                    }
                    parsed.push(range);
                }
                if parsed.is_empty() {
                    return Err(ConfigError::new(format!("ipam.ranges[{i}]"), "is empty"));
                }
                sets.push(RangeSet { ranges: parsed });
            }
            if ipam.contains_key("subnet") {
                return Err(ConfigError::new(
                    "ipam.subnet",
                    "give either ipam.ranges or ipam.subnet, not both",
                ));
            }
        }
        Some(_) => {
            return Err(ConfigError::new(
                "ipam.ranges",
                "expected a list of range sets",
            ));
        }
        None => {
            if !ipam.contains_key("subnet") {
                return Err(ConfigError::new(
                    "ipam.ranges",
                    "missing (or give ipam.subnet)",
                ));
            }
            sets.push(RangeSet {
                ranges: vec![parse_range(ipam, "ipam")?],
            });
        }
    }
    if sets.is_empty() {
        return Err(ConfigError::new("ipam.ranges", "is empty"));
    }
    let mut routes = Vec::new();
    match ipam.get("routes") {
        None | Some(Value::Null) => {}
        Some(Value::Array(list)) => {
            for (i, r) in list.iter().enumerate() {
                let prefix = format!("ipam.routes[{i}]");
                let Value::Object(r) = r else {
                    return Err(ConfigError::new(prefix, "expected an object"));
                };
                let dst = parse_net(&req_str(r, "dst", &prefix)?, &key(&prefix, "dst"))?;
                let gw = opt_ip(r, "gw", &prefix)?;
                if let Some(gw) = gw
                    && Family::of(gw) != Family::of_net(&dst)
                {
                    return Err(ConfigError::new(
                        key(&prefix, "gw"),
                        "is not of the destination's family",
                    ));
                }
                if !sets
                    .iter()
                    .any(|s| s.family() == Some(Family::of_net(&dst)))
                {
                    return Err(ConfigError::new(
                        key(&prefix, "dst"),
                        format!("no {} range to route {dst} from", Family::of_net(&dst)),
                    ));
                }
                routes.push(Route { dst, gw });
            }
        }
        Some(_) => return Err(ConfigError::new("ipam.routes", "expected a list of routes")),
    }
    let data_dir = opt_str(ipam, "dataDir", "ipam")?
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    if !data_dir.is_absolute() {
        return Err(ConfigError::new("ipam.dataDir", "must be an absolute path"));
    }
    Ok((sets, routes, data_dir))
}

fn overlaps(a: &Range, b: &Range) -> bool {
    use crate::model::to_u128;
    a.family() == b.family()
        && to_u128(a.start) <= to_u128(b.end)
        && to_u128(b.start) <= to_u128(a.end)
}

fn parse_attachments(v: &Value) -> Result<Vec<Attachment>, ConfigError> {
    const K: &str = "cni.dev/valid-attachments";
    let Value::Array(list) = v else {
        return Err(ConfigError::new(K, "expected a list"));
    };
    list.iter()
        .enumerate()
        .map(|(i, item)| {
            let prefix = format!("{K}[{i}]");
            let Value::Object(obj) = item else {
                return Err(ConfigError::new(prefix, "expected an object"));
            };
            Ok(Attachment::new(
                req_str(obj, "containerID", &prefix)?,
                req_str(obj, "ifname", &prefix)?,
            ))
        })
        .collect()
}

fn requested_ips(obj: &Map<String, Value>) -> Result<Vec<IpAddr>, ConfigError> {
    let sources = [
        (
            "runtimeConfig.ips",
            obj.get("runtimeConfig").and_then(|r| r.get("ips")),
        ),
        (
            "args.cni.ips",
            obj.get("args")
                .and_then(|a| a.get("cni"))
                .and_then(|c| c.get("ips")),
        ),
    ];
    let mut out = Vec::new();
    for (k, v) in sources {
        let Some(v) = v else { continue };
        let Value::Array(list) = v else {
            return Err(ConfigError::new(k, "expected a list of addresses"));
        };
        for (i, item) in list.iter().enumerate() {
            let s = item
                .as_str()
                .ok_or_else(|| ConfigError::new(format!("{k}[{i}]"), "expected a string"))?;
            let addr = s.split('/').next().unwrap_or(s);
            out.push(addr.parse().map_err(|_| {
                ConfigError::new(format!("{k}[{i}]"), format!("{s:?} is not an IP address"))
            })?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn parse(v: Value) -> Result<NetConf, CniError> {
        NetConf::parse(v.to_string().as_bytes())
    }

    fn base() -> Value {
        json!({
            "cniVersion": "1.1.0",
            "name": "rancher",
            "type": "rancher-cni",
            "ipam": {"ranges": [[{"subnet": "10.42.3.0/24"}]]}
        })
    }

    fn err_key(v: Value) -> String {
        let e = parse(v).unwrap_err();
        assert_eq!(e.code, code::INVALID_CONFIG, "{e}");
        e.msg
    }

    #[test]
    fn defaults() {
        let c = parse(base()).unwrap();
        assert_eq!(c.bridge, "cni0");
        assert!(c.hairpin && !c.promisc && !c.ip_masq && c.default_gateway);
        assert_eq!(c.mtu, None);
        assert_eq!(c.link_mtu_overhead, 50);
        assert_eq!(c.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert_eq!(c.gateways(), vec!["10.42.3.1/24".parse::<IpNet>().unwrap()]);
        assert_eq!(
            c.cluster_networks,
            vec!["10.42.3.0/24".parse::<IpNet>().unwrap()]
        );
    }

    #[test]
    fn decode_and_version_errors() {
        assert_eq!(
            NetConf::parse(b"{\"cniVersion\":").unwrap_err().code,
            code::DECODE
        );
        assert_eq!(NetConf::parse(b"[]").unwrap_err().code, code::DECODE);
        let mut v = base();
        v["cniVersion"] = json!("0.2.0");
        let e = parse(v).unwrap_err();
        assert_eq!(e.code, code::INCOMPATIBLE_VERSION);
        assert!(e.msg.contains("0.3.1, 0.4.0, 1.0.0, 1.1.0"), "{}", e.msg);
        let mut v = base();
        v.as_object_mut().unwrap().remove("cniVersion");
        v["cniVersions"] = json!(["0.4.0", "1.0.0", "9.9.9"]);
        assert_eq!(parse(v).unwrap().cni_version, "1.0.0");
    }

    #[test]
    fn errors_name_the_key() {
        let mut v = base();
        v["mtu"] = json!("big");
        assert!(err_key(v).contains("mtu"));
        let mut v = base();
        v["type"] = json!("bridge");
        assert!(err_key(v).contains("type"));
        let mut v = base();
        v["name"] = json!("../x");
        assert!(err_key(v).contains("name"));
        let mut v = base();
        v["hairpinMode"] = json!(true);
        v["promiscMode"] = json!(true);
        assert!(err_key(v).contains("promiscMode"));
        let mut v = base();
        v["ipam"]["ranges"] = json!([[{"subnet": "10.42.3.0/24"}, {"subnet": "fd42::/64"}]]);
        assert!(err_key(v).contains("ipam.ranges[0][1].subnet"));
        let mut v = base();
        v["ipam"]["ranges"] = json!([[{"subnet": "10.42.3.0/24", "rangeStart": "fd42::2"}]]);
        assert!(err_key(v).contains("ipam.ranges[0][0].rangeStart"));
        let mut v = base();
        v["ipam"]["ranges"] = json!([[{"subnet": "10.42.3.0/33"}]]);
        assert!(err_key(v).contains("ipam.ranges[0][0].subnet"));
        let mut v = base();
        v["ipam"]["type"] = json!("dhcp");
        assert!(err_key(v).contains("ipam.type"));
        let mut v = base();
        v["ipam"]["routes"] = json!([{"dst": "fd00::/8"}]);
        assert!(err_key(v).contains("ipam.routes[0].dst"));
        let mut v = base();
        v["ipam"]["dataDir"] = json!("relative");
        assert!(err_key(v).contains("ipam.dataDir"));
        let mut v = base();
        v["cni.dev/valid-attachments"] = json!([{"containerID": "a"}]);
        assert!(err_key(v).contains("cni.dev/valid-attachments[0].ifname"));
        let mut v = base();
        v.as_object_mut().unwrap().remove("ipam");
        assert!(err_key(v).contains("ipam"));
    }

    #[test]
    fn dual_stack_and_shorthand() {
        let mut v = base();
        v["ipam"] = json!({
            "ranges": [[{"subnet": "10.42.3.0/24"}], [{"subnet": "fd42:0:0:3::/64"}]],
            "routes": [{"dst": "10.43.0.0/16"}]
        });
        let c = parse(v).unwrap();
        assert_eq!(c.families(), vec![Family::V4, Family::V6]);
        assert_eq!(
            c.gateway(Family::V6),
            Some("fd42:0:0:3::1".parse().unwrap())
        );
        let mut v = base();
        v["ipam"] =
            json!({"type": "host-local", "subnet": "10.42.5.0/24", "rangeStart": "10.42.5.10"});
        let c = parse(v).unwrap();
        assert_eq!(
            c.range_sets[0].ranges[0].start,
            "10.42.5.10".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn unknown_keys_pass() {
        let mut v = base();
        v["somethingElse"] = json!({"x": 1});
        v["runtimeConfig"] = json!({"ips": ["10.42.3.9/24"]});
        let c = parse(v).unwrap();
        assert_eq!(
            c.requested_ips,
            vec!["10.42.3.9".parse::<IpAddr>().unwrap()]
        );
    }
}
