//! Which pod network the main job runs: `--pod-network auto` (the default)
//! picks `cni` when it can wire pods into network namespaces of their own and
//! `loopback` otherwise, and says why.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use ipnet::IpNet;

/// The pod network modes `--pod-network` accepts.
pub(super) const MODES: [&str; 3] = ["auto", "loopback", "cni"];

/// What the machine offers, read once so the choice itself is a pure function.
#[derive(Debug)]
pub(super) struct Host {
    /// Whether the process runs as root (namespaces and bridges need it).
    pub(super) root: bool,
    /// Whether the `rancher-cni` plugin was built next to the binary.
    pub(super) plugin: bool,
    /// The networks the host already routes (its routing table, default routes left out).
    pub(super) routes: Vec<IpNet>,
}

impl Host {
    /// Reads the effective user, the plugin next to `exe_dir` and the routing tables.
    pub(super) fn read(exe_dir: Option<&Path>) -> Self {
        Self {
            root: nix::unistd::geteuid().is_root(),
            plugin: exe_dir.is_some_and(|d| d.join("rancher-cni").is_file()),
            routes: routes(),
        }
    }
}

/// The mode to run and, when `auto` fell back to loopback, the reason.
pub(super) fn choose(
    requested: &str,
    cluster_cidr: &str,
    host: &Host,
) -> (&'static str, Option<String>) {
    match requested {
        "cni" => ("cni", None),
        "auto" => match cni_obstacle(cluster_cidr, host) {
            None => ("cni", None),
            Some(reason) => ("loopback", Some(reason)),
        },
        _ => ("loopback", None),
    }
}

/// Why `auto` cannot pick `cni` here, if anything stops it.
fn cni_obstacle(cluster_cidr: &str, host: &Host) -> Option<String> {
    if !host.root {
        return Some("not running as root".to_string());
    }
    if !host.plugin {
        return Some("the rancher-cni plugin is not built next to this binary".to_string());
    }
    for range in cluster_cidr.split(',').map(str::trim) {
        let Ok(range) = range.parse::<IpNet>() else {
            // The workloads report a bad --cluster-cidr themselves.
            return None;
        };
        if let Some(taken) = host.routes.iter().find(|r| overlaps(r, &range)) {
            return Some(format!(
                "--cluster-cidr {range} overlaps the host's route to {taken} (pass another --cluster-cidr for pods of their own)"
            ));
        }
    }
    None
}

fn overlaps(a: &IpNet, b: &IpNet) -> bool {
    a.contains(&b.network()) || b.contains(&a.network())
}

/// The host's IPv4 and IPv6 routes, from `/proc/net/route` and `/proc/net/ipv6_route`.
fn routes() -> Vec<IpNet> {
    let v4 = std::fs::read_to_string("/proc/net/route").unwrap_or_default();
    let v6 = std::fs::read_to_string("/proc/net/ipv6_route").unwrap_or_default();
    let mut all = parse_ipv4_routes(&v4);
    all.extend(parse_ipv6_routes(&v6));
    all
}

/// `/proc/net/route`: a header line, then `Iface Destination Gateway Flags ... Mask ...`
/// with the addresses in host byte order as hexadecimal.
fn parse_ipv4_routes(table: &str) -> Vec<IpNet> {
    table
        .lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let destination = u32::from_str_radix(fields.get(1)?, 16).ok()?;
            let mask = u32::from_str_radix(fields.get(7)?, 16).ok()?;
            let prefix = mask.count_ones() as u8;
            // The kernel prints the address as it lies in memory: network order bytes.
            let address = Ipv4Addr::from(destination.to_ne_bytes());
            (prefix > 0)
                .then(|| IpNet::new(IpAddr::V4(address), prefix).ok())
                .flatten()
        })
        .collect()
}

/// `/proc/net/ipv6_route`: `destination prefix-length source ...`, the address
/// as 32 hexadecimal digits; local and multicast routes are left out.
fn parse_ipv6_routes(table: &str) -> Vec<IpNet> {
    table
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let address = Ipv6Addr::from(u128::from_str_radix(fields.first()?, 16).ok()?);
            let prefix = u8::from_str_radix(fields.get(1)?, 16).ok()?;
            let usable = prefix > 0 && !address.is_multicast() && !address.is_loopback();
            usable
                .then(|| IpNet::new(IpAddr::V6(address), prefix).ok())
                .flatten()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROUTE: &str = "\
Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT
eth0\t00000000\t0100A8C0\t0003\t0\t0\t0\t00000000\t0\t0\t0
eth0\t0000A8C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0
flannel.1\t00002A0A\t00000000\t0001\t0\t0\t0\t0000FFFF\t0\t0\t0
";

    const ROUTE6: &str = "\
fd000000000000000000000000000000 40 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000001 00000000 00000001     eth0
00000000000000000000000000000001 80 00000000000000000000000000000000 00 00000000000000000000000000000000 00000000 00000002 00000000 80200001       lo
ff000000000000000000000000000000 08 00000000000000000000000000000000 00 00000000000000000000000000000000 00000100 00000003 00000000 00000001     eth0
";

    fn host(root: bool, plugin: bool) -> Host {
        let mut routes = parse_ipv4_routes(ROUTE);
        routes.extend(parse_ipv6_routes(ROUTE6));
        Host {
            root,
            plugin,
            routes,
        }
    }

    #[test]
    fn the_routing_tables_read_as_networks_without_default_local_or_multicast_routes() {
        let routes: Vec<String> = host(true, true)
            .routes
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(routes, ["192.168.0.0/24", "10.42.0.0/16", "fd00::/64"]);
    }

    #[test]
    fn auto_wires_pods_as_root_with_the_plugin_and_a_free_range() {
        assert_eq!(
            choose("auto", "10.250.4.0/23", &host(true, true)),
            ("cni", None)
        );
        assert_eq!(
            choose("auto", "10.250.4.0/23,fd01::/48", &host(true, true)),
            ("cni", None)
        );
    }

    #[test]
    fn auto_falls_back_to_loopback_and_says_why() {
        let (mode, why) = choose("auto", "10.250.4.0/23", &host(false, true));
        assert_eq!(
            (mode, why.as_deref()),
            ("loopback", Some("not running as root"))
        );
        let (mode, why) = choose("auto", "10.250.4.0/23", &host(true, false));
        assert_eq!(mode, "loopback");
        assert!(why.is_some_and(|w| w.contains("rancher-cni plugin")));
        // A host that already routes the cluster range (here flannel's 10.42.0.0/16).
        let (mode, why) = choose("auto", "10.42.0.0/16", &host(true, true));
        assert_eq!(mode, "loopback");
        let why = why.unwrap_or_default();
        assert!(
            why.contains("10.42.0.0/16") && why.contains("--cluster-cidr"),
            "{why}"
        );
        let (_, why) = choose("auto", "10.250.0.0/16,fd00::/48", &host(true, true));
        assert!(why.is_some_and(|w| w.contains("fd00::/64")));
    }

    #[test]
    fn an_explicit_mode_is_kept() {
        assert_eq!(
            choose("cni", "10.42.0.0/16", &host(false, false)),
            ("cni", None)
        );
        assert_eq!(
            choose("loopback", "10.250.0.0/23", &host(true, true)),
            ("loopback", None)
        );
    }
}
