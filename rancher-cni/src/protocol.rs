//! The CNI protocol (spec 1.1.0): commands, the environment, error codes, results
//! and version negotiation.
//!
//! A runtime runs the plugin with `CNI_COMMAND` and friends in the environment and
//! the network configuration on stdin; the plugin answers on stdout with a result
//! (ADD), a version document (VERSION), nothing (DEL, CHECK, STATUS, GC), or an
//! error document and a non-zero exit status. Everything here is pure: the
//! environment is a map, stdin and stdout are strings.

use std::{collections::BTreeMap, fmt, net::IpAddr};

use ipnet::IpNet;
use serde::Serialize;
use serde_json::{Value, json};

use crate::model::{Family, MacAddr, valid_ifname};

/// The spec versions this plugin speaks, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &["0.3.1", "0.4.0", "1.0.0", "1.1.0"];

/// The newest spec version, used where the configuration names none.
pub const CURRENT_VERSION: &str = "1.1.0";

/// Error codes of the spec (0–99) and of this plugin (100 and up).
pub mod code {
    /// Incompatible CNI version.
    pub const INCOMPATIBLE_VERSION: u32 = 1;
    /// Unsupported field in the network configuration.
    pub const UNSUPPORTED_FIELD: u32 = 2;
    /// Container unknown or does not exist.
    pub const UNKNOWN_CONTAINER: u32 = 3;
    /// Invalid necessary environment variables.
    pub const INVALID_ENV: u32 = 4;
    /// I/O failure.
    pub const IO: u32 = 5;
    /// Failed to decode content.
    pub const DECODE: u32 = 6;
    /// Invalid network configuration.
    pub const INVALID_CONFIG: u32 = 7;
    /// The network namespace is invalid (the Go library's code).
    pub const INVALID_NETNS: u32 = 8;
    /// Try again later.
    pub const TRY_AGAIN_LATER: u32 = 11;
    /// STATUS: the plugin is not available.
    pub const NOT_AVAILABLE: u32 = 50;
    /// STATUS: not available, and existing containers may have lost connectivity.
    pub const NOT_AVAILABLE_DISRUPTED: u32 = 51;
    /// The kernel refused a change to links, addresses or routes.
    pub const DATAPLANE: u32 = 100;
    /// No free address is left in a range set.
    pub const EXHAUSTED: u32 = 101;
    /// The address store failed.
    pub const STORE: u32 = 102;
    /// CHECK found the attachment not as ADD left it.
    pub const CHECK_FAILED: u32 = 103;
    /// The interface to create exists already.
    pub const INTERFACE_EXISTS: u32 = 104;
}

/// A CNI error document: `{cniVersion, code, msg, details}`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("CNI error {code}: {msg}")]
pub struct CniError {
    /// The error code (see [`code`]).
    pub code: u32,
    /// A short message.
    pub msg: String,
    /// Longer details (may be empty).
    pub details: String,
}

impl CniError {
    /// An error with `code` and `msg`.
    pub fn new(code: u32, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
            details: String::new(),
        }
    }

    /// Adds details.
    #[must_use]
    pub fn with_details(mut self, details: impl Into<String>) -> Self {
        self.details = details.into();
        self
    }

    /// An incompatible version error that names the supported versions.
    pub fn incompatible_version(version: &str, what: &str) -> Self {
        Self::new(
            code::INCOMPATIBLE_VERSION,
            format!(
                "incompatible CNI version {version:?}{what}; supported versions: {}",
                SUPPORTED_VERSIONS.join(", ")
            ),
        )
    }

    /// The error document, in JSON.
    pub fn to_json(&self, cni_version: &str) -> String {
        let mut doc = json!({
            "cniVersion": cni_version,
            "code": self.code,
            "msg": self.msg,
        });
        if !self.details.is_empty() {
            doc["details"] = Value::String(self.details.clone());
        }
        serde_json::to_string(&doc).unwrap_or_default()
    }
}

/// The operations of the spec.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Attach a container.
    Add,
    /// Detach a container (idempotent).
    Del,
    /// Verify an attachment.
    Check,
    /// Is the plugin ready for ADD?
    Status,
    /// Release what no valid attachment uses.
    Gc,
    /// Which versions are supported?
    Version,
}

impl Command {
    /// The command named `s` (`ADD`, `DEL`, ...).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "ADD" => Self::Add,
            "DEL" => Self::Del,
            "CHECK" => Self::Check,
            "STATUS" => Self::Status,
            "GC" => Self::Gc,
            "VERSION" => Self::Version,
            _ => return None,
        })
    }

    /// The spec version that introduced the command.
    pub fn since(self) -> &'static str {
        match self {
            Self::Check => "0.4.0",
            Self::Status | Self::Gc => "1.1.0",
            _ => "0.1.0",
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Add => "ADD",
            Self::Del => "DEL",
            Self::Check => "CHECK",
            Self::Status => "STATUS",
            Self::Gc => "GC",
            Self::Version => "VERSION",
        })
    }
}

/// The longest `CNI_ARGS` value accepted, and the longest container id.
pub const MAX_ARG_LEN: usize = 4096;

/// The parsed environment of one invocation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Env {
    /// `CNI_COMMAND`.
    pub command: Command,
    /// `CNI_CONTAINERID` (empty for VERSION, STATUS and GC).
    pub container_id: String,
    /// `CNI_NETNS`; `None` when unset or empty (allowed for DEL).
    pub netns: Option<String>,
    /// `CNI_IFNAME` (empty for VERSION, STATUS and GC).
    pub ifname: String,
    /// `CNI_ARGS`, parsed.
    pub args: Args,
    /// `CNI_PATH`, split.
    pub path: Vec<String>,
}

/// `CNI_ARGS`: `KEY=VALUE` pairs separated by `;`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Args {
    /// The pairs, by key.
    pub pairs: BTreeMap<String, String>,
}

/// Keys of `CNI_ARGS` this plugin understands; others are refused unless
/// `IgnoreUnknown` is set, as in the reference plugins.
pub const KNOWN_ARGS: &[&str] = &[
    "IgnoreUnknown",
    "K8S_POD_NAMESPACE",
    "K8S_POD_NAME",
    "K8S_POD_INFRA_CONTAINER_ID",
    "K8S_POD_UID",
    "IP",
];

impl Args {
    /// Parses `CNI_ARGS`.
    pub fn parse(raw: &str) -> Result<Self, CniError> {
        let bad = |why: String| CniError::new(code::INVALID_ENV, format!("CNI_ARGS: {why}"));
        if raw.len() > MAX_ARG_LEN {
            return Err(bad(format!("longer than {MAX_ARG_LEN} bytes")));
        }
        let mut pairs = BTreeMap::new();
        for pair in raw.split(';').filter(|p| !p.is_empty()) {
            let Some((key, value)) = pair.split_once('=') else {
                return Err(bad(format!("{pair:?} is not KEY=VALUE")));
            };
            if key.is_empty()
                || !key
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(bad(format!("invalid key {key:?}")));
            }
            if value.chars().any(char::is_control) {
                return Err(bad(format!("value of {key} contains control characters")));
            }
            pairs.insert(key.to_string(), value.to_string());
        }
        let args = Self { pairs };
        let ignore_unknown = matches!(
            args.get("IgnoreUnknown")
                .map(str::to_ascii_lowercase)
                .as_deref(),
            Some("1" | "true")
        );
        if !ignore_unknown
            && let Some(key) = args
                .pairs
                .keys()
                .find(|k| !KNOWN_ARGS.contains(&k.as_str()))
        {
            return Err(bad(format!(
                "unknown key {key} (set IgnoreUnknown=1 to ignore it)"
            )));
        }
        Ok(args)
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.get(key).map(String::as_str)
    }

    /// The addresses asked for with `IP=a,b`.
    pub fn requested_ips(&self) -> Result<Vec<IpAddr>, CniError> {
        let Some(raw) = self.get("IP") else {
            return Ok(Vec::new());
        };
        raw.split(',')
            .filter(|s| !s.is_empty())
            .map(|s| {
                // Accept `10.42.0.5` and `10.42.0.5/24`.
                let addr = s.split('/').next().unwrap_or(s);
                addr.parse().map_err(|_| {
                    CniError::new(
                        code::INVALID_ENV,
                        format!("CNI_ARGS: IP={s} is not an IP address"),
                    )
                })
            })
            .collect()
    }
}

/// Whether `id` is a valid container id: a letter or digit, then letters, digits,
/// `_`, `.` and `-`.
pub fn valid_container_id(id: &str) -> bool {
    let mut bytes = id.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphanumeric())
        && id.len() <= MAX_ARG_LEN
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

impl Env {
    /// Reads the environment from `get` (usually `std::env::var`), checking the
    /// variables the command needs. Missing ones are named together (code 4).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self, CniError> {
        let get = |name: &str| get(name).filter(|v| !v.is_empty());
        let Some(raw_command) = get("CNI_COMMAND") else {
            return Err(CniError::new(
                code::INVALID_ENV,
                "required environment variables missing: CNI_COMMAND",
            ));
        };
        let command = Command::parse(&raw_command).ok_or_else(|| {
            CniError::new(
                code::INVALID_ENV,
                format!(
                    "CNI_COMMAND: unknown command {raw_command:?} (want ADD, DEL, CHECK, STATUS, GC or VERSION)"
                ),
            )
        })?;
        let required: &[&str] = match command {
            Command::Add | Command::Check => &["CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME"],
            Command::Del => &["CNI_CONTAINERID", "CNI_IFNAME"],
            Command::Version | Command::Status | Command::Gc => &[],
        };
        let missing: Vec<&str> = required
            .iter()
            .copied()
            .filter(|name| get(name).is_none())
            .collect();
        if !missing.is_empty() {
            return Err(CniError::new(
                code::INVALID_ENV,
                format!(
                    "required environment variables missing: {}",
                    missing.join(", ")
                ),
            ));
        }
        let container_id = get("CNI_CONTAINERID").unwrap_or_default();
        let ifname = get("CNI_IFNAME").unwrap_or_default();
        let netns = get("CNI_NETNS");
        if !required.is_empty() {
            if !valid_container_id(&container_id) {
                return Err(CniError::new(
                    code::INVALID_ENV,
                    "CNI_CONTAINERID: must start with a letter or digit and hold only letters, digits, '_', '.' and '-'",
                ));
            }
            if !valid_ifname(&ifname) {
                return Err(CniError::new(
                    code::INVALID_ENV,
                    format!(
                        "CNI_IFNAME: {ifname:?} is not a valid interface name (1 to 15 characters, no '/', ':' or spaces)"
                    ),
                ));
            }
            if let Some(ns) = &netns
                && (!ns.starts_with('/') || ns.chars().any(char::is_control))
            {
                return Err(CniError::new(
                    code::INVALID_ENV,
                    format!("CNI_NETNS: {ns:?} is not an absolute path"),
                ));
            }
        }
        let args = match get("CNI_ARGS") {
            Some(raw) if matches!(command, Command::Add | Command::Check | Command::Del) => {
                Args::parse(&raw)?
            }
            _ => Args::default(),
        };
        let path = get("CNI_PATH")
            .map(|p| {
                p.split(':')
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default();
        Ok(Self {
            command,
            container_id,
            netns,
            ifname,
            args,
            path,
        })
    }
}

/// Compares two dotted versions numerically.
pub fn version_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    let parse = |v: &str| -> Vec<u64> { v.split('.').map(|p| p.parse().unwrap_or(0)).collect() };
    parse(a).cmp(&parse(b))
}

/// Whether `version` is one this plugin speaks.
pub fn supported(version: &str) -> bool {
    SUPPORTED_VERSIONS.contains(&version)
}

/// The VERSION document.
pub fn version_result(cni_version: &str) -> String {
    serde_json::to_string(&json!({
        "cniVersion": cni_version,
        "supportedVersions": SUPPORTED_VERSIONS,
    }))
    .unwrap_or_default()
}

/// One interface of a result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// The name.
    pub name: String,
    /// The MAC address.
    pub mac: MacAddr,
    /// The MTU.
    pub mtu: u32,
    /// The network namespace path, for interfaces inside the container.
    pub sandbox: Option<String>,
}

/// One address of a result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IpConfig {
    /// The address with its prefix length.
    pub address: IpNet,
    /// The gateway.
    pub gateway: Option<IpAddr>,
    /// The index of its interface in [`CniResult::interfaces`].
    pub interface: Option<usize>,
}

/// One route of a result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The destination.
    pub dst: IpNet,
    /// The next hop (the default gateway when absent).
    pub gw: Option<IpAddr>,
}

/// The ADD result, in the shape of spec 1.1.0, rendered for any supported version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CniResult {
    /// The interfaces: the bridge, the host veth, the container's interface.
    pub interfaces: Vec<Interface>,
    /// The addresses.
    pub ips: Vec<IpConfig>,
    /// The routes inside the container.
    pub routes: Vec<Route>,
    /// The `dns` section, passed through from the configuration.
    pub dns: Option<Value>,
}

#[derive(Serialize)]
struct WireInterface<'a> {
    name: &'a str,
    mac: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    mtu: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sandbox: Option<&'a str>,
}

#[derive(Serialize)]
struct WireIp {
    #[serde(skip_serializing_if = "Option::is_none")]
    version: Option<&'static str>,
    address: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    interface: Option<usize>,
}

#[derive(Serialize)]
struct WireRoute {
    dst: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    gw: Option<String>,
}

impl CniResult {
    /// The result as JSON for `cni_version`: 0.3.x and 0.4.0 carry `ips[].version`,
    /// only 1.1.0 carries `interfaces[].mtu`.
    pub fn to_value(&self, cni_version: &str) -> Value {
        let pre_1 = version_cmp(cni_version, "1.0.0").is_lt();
        let with_mtu = version_cmp(cni_version, "1.1.0").is_ge();
        let interfaces: Vec<WireInterface<'_>> = self
            .interfaces
            .iter()
            .map(|i| WireInterface {
                name: &i.name,
                mac: i.mac.to_string(),
                mtu: with_mtu.then_some(i.mtu),
                sandbox: i.sandbox.as_deref(),
            })
            .collect();
        let ips: Vec<WireIp> = self
            .ips
            .iter()
            .map(|ip| WireIp {
                version: pre_1.then_some(match Family::of(ip.address.addr()) {
                    Family::V4 => "4",
                    Family::V6 => "6",
                }),
                address: ip.address.to_string(),
                gateway: ip.gateway.map(|g| g.to_string()),
                interface: ip.interface,
            })
            .collect();
        let routes: Vec<WireRoute> = self
            .routes
            .iter()
            .map(|r| WireRoute {
                dst: r.dst.to_string(),
                gw: r.gw.map(|g| g.to_string()),
            })
            .collect();
        let mut doc = json!({
            "cniVersion": cni_version,
            "interfaces": interfaces,
            "ips": ips,
            "routes": routes,
        });
        doc["dns"] = self.dns.clone().unwrap_or_else(|| json!({}));
        doc
    }
}

/// A `prevResult` as CHECK reads it: what it needs of any version's shape.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PrevResult {
    /// The container-side interface names listed with a `sandbox`.
    pub sandbox_interfaces: Vec<String>,
    /// The addresses.
    pub ips: Vec<IpNet>,
    /// The routes.
    pub routes: Vec<Route>,
}

impl PrevResult {
    /// Reads `prevResult`, naming the field that is wrong (code 6 on bad shapes).
    pub fn parse(value: &Value) -> Result<Self, CniError> {
        let bad = |field: String, why: &str| {
            CniError::new(code::DECODE, format!("prevResult.{field}: {why}"))
        };
        let mut out = Self::default();
        if let Some(list) = value.get("interfaces").and_then(Value::as_array) {
            for (i, iface) in list.iter().enumerate() {
                if iface
                    .get("sandbox")
                    .and_then(Value::as_str)
                    .is_some_and(|s| !s.is_empty())
                {
                    let name = iface
                        .get("name")
                        .and_then(Value::as_str)
                        .ok_or_else(|| bad(format!("interfaces[{i}].name"), "missing"))?;
                    out.sandbox_interfaces.push(name.to_string());
                }
            }
        }
        if let Some(list) = value.get("ips").and_then(Value::as_array) {
            for (i, ip) in list.iter().enumerate() {
                let address = ip
                    .get("address")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(format!("ips[{i}].address"), "missing"))?;
                out.ips.push(
                    address
                        .parse()
                        .map_err(|_| bad(format!("ips[{i}].address"), "not a CIDR address"))?,
                );
            }
        }
        if let Some(list) = value.get("routes").and_then(Value::as_array) {
            for (i, route) in list.iter().enumerate() {
                let dst = route
                    .get("dst")
                    .and_then(Value::as_str)
                    .ok_or_else(|| bad(format!("routes[{i}].dst"), "missing"))?
                    .parse()
                    .map_err(|_| bad(format!("routes[{i}].dst"), "not a CIDR"))?;
                let gw = match route.get("gw").and_then(Value::as_str) {
                    Some(g) => Some(
                        g.parse()
                            .map_err(|_| bad(format!("routes[{i}].gw"), "not an address"))?,
                    ),
                    None => None,
                };
                out.routes.push(Route { dst, gw });
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<Env, CniError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
            .collect();
        Env::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn missing_variables_are_named_together() {
        let err = env(&[("CNI_COMMAND", "ADD"), ("CNI_IFNAME", "eth0")]).unwrap_err();
        assert_eq!(err.code, code::INVALID_ENV);
        assert!(
            err.msg.contains("CNI_CONTAINERID, CNI_NETNS"),
            "{}",
            err.msg
        );
        let err = env(&[]).unwrap_err();
        assert!(err.msg.contains("CNI_COMMAND"));
        let err = env(&[("CNI_COMMAND", "FROB")]).unwrap_err();
        assert_eq!(err.code, code::INVALID_ENV);
    }

    #[test]
    fn del_does_not_need_a_netns() {
        let e = env(&[
            ("CNI_COMMAND", "DEL"),
            ("CNI_CONTAINERID", "c1"),
            ("CNI_IFNAME", "eth0"),
            ("CNI_NETNS", ""),
        ])
        .unwrap();
        assert_eq!(e.netns, None);
        assert!(env(&[("CNI_COMMAND", "VERSION")]).is_ok());
        assert!(env(&[("CNI_COMMAND", "STATUS")]).is_ok());
        assert!(env(&[("CNI_COMMAND", "GC")]).is_ok());
    }

    #[test]
    fn container_id_and_ifname_are_checked() {
        let base = [
            ("CNI_COMMAND", "ADD"),
            ("CNI_NETNS", "/run/netns/x"),
            ("CNI_IFNAME", "eth0"),
        ];
        let mut vars = base.to_vec();
        vars.push(("CNI_CONTAINERID", "../etc"));
        assert_eq!(env(&vars).unwrap_err().code, code::INVALID_ENV);
        let mut vars = base.to_vec();
        vars[2] = ("CNI_IFNAME", "eth0/../x");
        vars.push(("CNI_CONTAINERID", "c1"));
        let err = env(&vars).unwrap_err();
        assert!(err.msg.starts_with("CNI_IFNAME"), "{}", err.msg);
        let mut vars = base.to_vec();
        vars[1] = ("CNI_NETNS", "relative");
        vars.push(("CNI_CONTAINERID", "c1"));
        assert!(env(&vars).unwrap_err().msg.starts_with("CNI_NETNS"));
    }

    #[test]
    fn cni_args_are_strict_unless_ignore_unknown() {
        let args = Args::parse("IgnoreUnknown=1;K8S_POD_NAME=web;Foo=bar").unwrap();
        assert_eq!(args.get("K8S_POD_NAME"), Some("web"));
        let err = Args::parse("Foo=bar").unwrap_err();
        assert!(err.msg.contains("unknown key Foo"), "{}", err.msg);
        assert!(Args::parse("novalue").is_err());
        assert!(Args::parse("K8S_POD_NAME=a\nb").is_err());
        assert!(Args::parse("a b=c").is_err());
        assert!(Args::parse(&"K8S_POD_NAME=x".repeat(1000)).is_err());
        let ips = Args::parse("IP=10.42.0.9/24,fd42::9")
            .unwrap()
            .requested_ips()
            .unwrap();
        assert_eq!(ips.len(), 2);
        assert!(Args::parse("IP=nope").unwrap().requested_ips().is_err());
    }

    #[test]
    fn results_follow_each_version() {
        let result = CniResult {
            interfaces: vec![Interface {
                name: "eth0".into(),
                mac: MacAddr([2, 0, 0, 0, 0, 1]),
                mtu: 1450,
                sandbox: Some("/run/netns/x".into()),
            }],
            ips: vec![IpConfig {
                address: "10.42.0.2/24".parse().unwrap(),
                gateway: Some("10.42.0.1".parse().unwrap()),
                interface: Some(0),
            }],
            routes: vec![Route {
                dst: "0.0.0.0/0".parse().unwrap(),
                gw: None,
            }],
            dns: None,
        };
        let v = result.to_value("1.1.0");
        assert_eq!(v["interfaces"][0]["mtu"], 1450);
        assert_eq!(v["interfaces"][0]["sandbox"], "/run/netns/x");
        assert_eq!(v["ips"][0]["interface"], 0);
        assert!(v["ips"][0].get("version").is_none());
        let v = result.to_value("0.4.0");
        assert_eq!(v["ips"][0]["version"], "4");
        assert!(v["interfaces"][0].get("mtu").is_none());
        let prev = PrevResult::parse(&result.to_value("1.0.0")).unwrap();
        assert_eq!(prev.sandbox_interfaces, vec!["eth0".to_string()]);
        assert_eq!(prev.ips.len(), 1);
        assert_eq!(prev.routes.len(), 1);
    }

    #[test]
    fn error_document() {
        let e = CniError::incompatible_version("0.2.0", "");
        let doc: Value = serde_json::from_str(&e.to_json("1.1.0")).unwrap();
        assert_eq!(doc["code"], 1);
        assert!(doc["msg"].as_str().unwrap().contains("1.1.0"));
        assert!(version_cmp("0.10.0", "0.4.0").is_gt());
    }
}
