//! ClusterIP and NodePort allocation for Services, as kube-apiserver does it.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use serde_json::{Value, json};

/// The first and last NodePort.
pub const NODE_PORT_RANGE: (u16, u16) = (30000, 32767);

/// The default service CIDR (as in Rancher).
pub const DEFAULT_SERVICE_CIDR: &str = "10.43.0.0/16";

/// A service CIDR that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid service CIDR {0:?}: expected an IPv4 network such as 10.43.0.0/16 with a prefix of /8 to /30"
)]
pub struct CidrError(pub String);

/// Parses an IPv4 CIDR such as `10.42.0.0/16` whose prefix length is in `prefixes`;
/// returns the network address (host bits cleared) and the prefix length.
pub(crate) fn parse_ipv4_cidr(
    cidr: &str,
    prefixes: std::ops::RangeInclusive<u32>,
) -> Option<(Ipv4Addr, u32)> {
    let (addr, prefix) = cidr.split_once('/')?;
    let addr: Ipv4Addr = addr.parse().ok()?;
    let prefix: u32 = prefix.parse().ok()?;
    if !prefixes.contains(&prefix) || prefix == 0 {
        return None;
    }
    let mask = u32::MAX << (32 - prefix);
    Some((Ipv4Addr::from(u32::from(addr) & mask), prefix))
}

/// Allocation state of one cluster.
#[derive(Debug, Clone)]
pub(crate) struct Allocator {
    network: u32,
    size: u32,
    ips: HashSet<u32>,
    next_ip: u32,
    dynamic_start: u32,
    ports: HashSet<u16>,
    next_port: u16,
}

impl Allocator {
    /// An allocator for `cidr` (e.g. `10.43.0.0/16`).
    pub(crate) fn new(cidr: &str) -> Result<Self, CidrError> {
        let (network, prefix) =
            parse_ipv4_cidr(cidr, 8..=30).ok_or_else(|| CidrError(cidr.to_string()))?;
        let size = 1u32 << (32 - prefix);
        let network = u32::from(network);
        // Like kube-apiserver, dynamic allocations prefer the upper band and leave the
        // lower band for requested addresses (such as a DNS service's 10.43.0.10).
        let dynamic_start = (size / 16).clamp(16, 256).min(size / 2);
        Ok(Self {
            network,
            size,
            ips: HashSet::new(),
            next_ip: dynamic_start,
            dynamic_start,
            ports: HashSet::new(),
            next_port: NODE_PORT_RANGE.0,
        })
    }

    /// The first usable address (the `kubernetes` Service's).
    pub(crate) fn first_ip(&self) -> Ipv4Addr {
        Ipv4Addr::from(self.network + 1)
    }

    fn allocate_ip(&mut self, requested: Option<&str>) -> Result<String, String> {
        match requested {
            Some(req) => {
                let ip: Ipv4Addr = req
                    .parse()
                    .map_err(|_| format!("{req:?}: must be a valid IP address"))?;
                let v = u32::from(ip);
                if v <= self.network || v >= self.network + self.size - 1 {
                    return Err(format!(
                        "failed to allocate IP {req}: the provided IP ({req}) is not in the valid range. The range of valid IPs is {}/{}",
                        Ipv4Addr::from(self.network),
                        32 - self.size.trailing_zeros()
                    ));
                }
                if !self.ips.insert(v - self.network) {
                    return Err(format!(
                        "failed to allocate IP {req}: provided IP is already allocated"
                    ));
                }
                Ok(req.to_string())
            }
            None => {
                let usable = self.size - 2;
                for _ in 0..usable {
                    let offset = self.next_ip;
                    self.next_ip = if self.next_ip + 1 >= self.size - 1 {
                        1
                    } else {
                        self.next_ip + 1
                    };
                    if self.ips.insert(offset) {
                        return Ok(Ipv4Addr::from(self.network + offset).to_string());
                    }
                }
                Err("failed to allocate a serviceIP: range is full".to_string())
            }
        }
    }

    fn release_ip(&mut self, ip: &str) {
        if let Ok(ip) = ip.parse::<Ipv4Addr>() {
            let v = u32::from(ip);
            if v > self.network {
                self.ips.remove(&(v - self.network));
            }
        }
        let _ = self.dynamic_start;
    }

    fn allocate_port(&mut self, requested: Option<i64>) -> Result<u16, String> {
        let (lo, hi) = NODE_PORT_RANGE;
        match requested {
            Some(p) => {
                let port = u16::try_from(p).ok().filter(|p| (lo..=hi).contains(p)).ok_or_else(|| {
                    format!("{p}: provided port is not in the valid range. The range of valid ports is {lo}-{hi}")
                })?;
                if !self.ports.insert(port) {
                    return Err(format!("{p}: provided port is already allocated"));
                }
                Ok(port)
            }
            None => {
                for _ in lo..=hi {
                    let port = self.next_port;
                    self.next_port = if port >= hi { lo } else { port + 1 };
                    if self.ports.insert(port) {
                        return Ok(port);
                    }
                }
                Err("range is full".to_string())
            }
        }
    }

    fn release_port(&mut self, port: u16) {
        self.ports.remove(&port);
    }

    /// Releases everything `service` holds.
    pub(crate) fn release_service(&mut self, service: &Value) {
        for ip in cluster_ips(service) {
            self.release_ip(&ip);
        }
        for port in node_ports(service) {
            self.release_port(port);
        }
    }

    /// Applies defaults to `new` and allocates its ClusterIP and NodePorts; `old` is the
    /// stored Service on update. On error nothing stays allocated.
    pub(crate) fn allocate_service(
        &mut self,
        old: Option<&Value>,
        new: &mut Value,
    ) -> Result<(), Vec<String>> {
        let mut taken_ips: Vec<String> = Vec::new();
        let mut taken_ports: Vec<u16> = Vec::new();
        let result = self.allocate_inner(old, new, &mut taken_ips, &mut taken_ports);
        if result.is_err() {
            for ip in &taken_ips {
                self.release_ip(ip);
            }
            for p in &taken_ports {
                self.release_port(*p);
            }
            return result;
        }
        // Release what the old Service held and the new one does not.
        if let Some(old) = old {
            let keep_ips = cluster_ips(new);
            for ip in cluster_ips(old) {
                if !keep_ips.contains(&ip) {
                    self.release_ip(&ip);
                }
            }
            let keep_ports = node_ports(new);
            for p in node_ports(old) {
                if !keep_ports.contains(&p) {
                    self.release_port(p);
                }
            }
        }
        Ok(())
    }

    fn allocate_inner(
        &mut self,
        old: Option<&Value>,
        new: &mut Value,
        taken_ips: &mut Vec<String>,
        taken_ports: &mut Vec<u16>,
    ) -> Result<(), Vec<String>> {
        if !new["spec"].is_object() {
            new["spec"] = json!({});
        }
        let spec = &mut new["spec"];
        let ty = spec["type"].as_str().unwrap_or("ClusterIP").to_string();
        spec["type"] = json!(ty);
        if spec.get("sessionAffinity").is_none() {
            spec["sessionAffinity"] = json!("None");
        }
        if let Some(ports) = spec["ports"].as_array_mut() {
            for p in ports.iter_mut() {
                if p.get("protocol").is_none() {
                    p["protocol"] = json!("TCP");
                }
                if p.get("targetPort").is_none() {
                    p["targetPort"] = p["port"].clone();
                }
            }
        }
        if ty == "ExternalName" {
            if let Some(m) = spec.as_object_mut() {
                m.remove("clusterIP");
                m.remove("clusterIPs");
            }
            return Ok(());
        }
        if spec.get("internalTrafficPolicy").is_none() {
            spec["internalTrafficPolicy"] = json!("Cluster");
        }
        if (ty == "NodePort" || ty == "LoadBalancer") && spec.get("externalTrafficPolicy").is_none()
        {
            spec["externalTrafficPolicy"] = json!("Cluster");
        }
        if ty == "LoadBalancer" && spec.get("allocateLoadBalancerNodePorts").is_none() {
            spec["allocateLoadBalancerNodePorts"] = json!(true);
        }

        // ClusterIP.
        let requested = spec["clusterIP"]
            .as_str()
            .filter(|s| !s.is_empty())
            .or_else(|| spec["clusterIPs"][0].as_str().filter(|s| !s.is_empty()))
            .map(str::to_string);
        let old_ip = old
            .filter(|o| o["spec"]["type"].as_str() != Some("ExternalName"))
            .and_then(|o| o["spec"]["clusterIP"].as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_string);
        let ip = match (requested, old_ip) {
            (None, Some(old)) => old,
            (Some(req), Some(old)) if req == old => old,
            (Some(req), Some(old)) => {
                return Err(vec![format!(
                    "spec.clusterIPs[0]: Invalid value: []string{{\"{req}\"}}: may not change once set (was {old})"
                )]);
            }
            (Some(req), None) if req == "None" => req,
            (req, None) => {
                let ip = self
                    .allocate_ip(req.as_deref())
                    .map_err(|e| vec![format!("spec.clusterIPs: Invalid value: {req:?}: {e}")])?;
                taken_ips.push(ip.clone());
                ip
            }
        };
        spec["clusterIP"] = json!(ip);
        spec["clusterIPs"] = json!([ip]);
        if ip != "None" {
            if spec.get("ipFamilies").is_none() {
                spec["ipFamilies"] = json!(["IPv4"]);
            }
            if spec.get("ipFamilyPolicy").is_none() {
                spec["ipFamilyPolicy"] = json!("SingleStack");
            }
        } else if spec.get("ipFamilyPolicy").is_none() {
            spec["ipFamilyPolicy"] = json!("SingleStack");
            spec["ipFamilies"] = json!(["IPv4"]);
        }

        // NodePorts.
        let wants_node_ports = ty == "NodePort"
            || (ty == "LoadBalancer"
                && spec["allocateLoadBalancerNodePorts"].as_bool() != Some(false));
        let old_ports: Vec<(i64, String, i64)> = old
            .and_then(|o| o["spec"]["ports"].as_array())
            .map(|ps| {
                ps.iter()
                    .filter_map(|p| {
                        Some((
                            p["port"].as_i64()?,
                            p["protocol"].as_str().unwrap_or("TCP").to_string(),
                            p["nodePort"].as_i64()?,
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let mut causes = Vec::new();
        if let Some(ports) = spec["ports"].as_array_mut() {
            for (i, p) in ports.iter_mut().enumerate() {
                let requested = p["nodePort"].as_i64().filter(|n| *n != 0);
                if !wants_node_ports {
                    if requested.is_some() && ty == "ClusterIP" {
                        causes.push(format!("spec.ports[{i}].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"));
                    }
                    if ty != "LoadBalancer"
                        && let Some(m) = p.as_object_mut()
                    {
                        m.remove("nodePort");
                    }
                    continue;
                }
                let key_port = p["port"].as_i64().unwrap_or_default();
                let key_proto = p["protocol"].as_str().unwrap_or("TCP").to_string();
                let previous = old_ports
                    .iter()
                    .find(|(port, proto, _)| *port == key_port && *proto == key_proto)
                    .map(|x| x.2);
                let port = match (requested, previous) {
                    (Some(r), Some(prev)) if r == prev => r,
                    (None, Some(prev)) => prev,
                    (req, _) => match self.allocate_port(req) {
                        Ok(n) => {
                            taken_ports.push(n);
                            i64::from(n)
                        }
                        Err(e) => {
                            causes.push(format!("spec.ports[{i}].nodePort: Invalid value: {e}"));
                            continue;
                        }
                    },
                };
                p["nodePort"] = json!(port);
            }
        }
        if causes.is_empty() {
            Ok(())
        } else {
            Err(causes)
        }
    }
}

fn cluster_ips(service: &Value) -> Vec<String> {
    let spec = &service["spec"];
    let mut ips: Vec<String> = spec["clusterIPs"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    if let Some(ip) = spec["clusterIP"].as_str()
        && !ips.iter().any(|x| x == ip)
    {
        ips.push(ip.to_string());
    }
    ips.retain(|ip| ip != "None" && !ip.is_empty());
    ips
}

fn node_ports(service: &Value) -> Vec<u16> {
    service["spec"]["ports"]
        .as_array()
        .map(|ps| {
            ps.iter()
                .filter_map(|p| p["nodePort"].as_u64().and_then(|n| u16::try_from(n).ok()))
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn svc(ty: &str, ip: Option<&str>) -> Value {
        let mut s = json!({"spec": {"type": ty, "ports": [{"port": 80}]}});
        if let Some(ip) = ip {
            s["spec"]["clusterIP"] = json!(ip);
        }
        s
    }

    #[test]
    fn allocates_and_rejects_taken_addresses() {
        let mut a = Allocator::new("10.43.0.0/16").unwrap();
        let mut s1 = svc("ClusterIP", None);
        a.allocate_service(None, &mut s1).unwrap();
        assert_eq!(s1["spec"]["clusterIP"], "10.43.1.0");
        let mut s2 = svc("ClusterIP", Some("10.43.0.10"));
        a.allocate_service(None, &mut s2).unwrap();
        let mut s3 = svc("ClusterIP", Some("10.43.0.10"));
        assert!(a.allocate_service(None, &mut s3).is_err());
        let mut s4 = svc("ClusterIP", Some("10.44.0.1"));
        assert!(a.allocate_service(None, &mut s4).is_err());
        a.release_service(&s2);
        a.allocate_service(None, &mut s3).unwrap();
        let mut h = svc("ClusterIP", Some("None"));
        a.allocate_service(None, &mut h).unwrap();
        assert_eq!(h["spec"]["clusterIPs"], json!(["None"]));
    }

    #[test]
    fn node_ports_follow_the_type() {
        let mut a = Allocator::new("10.43.0.0/16").unwrap();
        let mut np = svc("NodePort", None);
        a.allocate_service(None, &mut np).unwrap();
        let port = np["spec"]["ports"][0]["nodePort"].as_u64().unwrap();
        assert!((30000..=32767).contains(&port));
        let mut lb = svc("LoadBalancer", None);
        lb["spec"]["allocateLoadBalancerNodePorts"] = json!(false);
        a.allocate_service(None, &mut lb).unwrap();
        assert!(lb["spec"]["ports"][0].get("nodePort").is_none());
        let mut taken = svc("NodePort", None);
        taken["spec"]["ports"][0]["nodePort"] = json!(port);
        assert!(a.allocate_service(None, &mut taken).is_err());
        // Back to ClusterIP releases the port.
        let mut back = np.clone();
        back["spec"]["type"] = json!("ClusterIP");
        back["spec"]["ports"][0]
            .as_object_mut()
            .unwrap()
            .remove("nodePort");
        a.allocate_service(Some(&np), &mut back).unwrap();
        a.allocate_service(None, &mut taken).unwrap();
    }
}
