//! A pod's ports: the sockets of its containers (inside the pod's namespace in root
//! mode, host ports on the node's address), served by echo servers; and the ports a
//! Service targets on a pod that declares none.

use std::collections::BTreeSet;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use serde_json::Value;
use tokio_util::sync::CancellationToken;

use super::echo::{self, Echo};
use super::{NodeAgent, cni};
use crate::store::State;
use crate::workloads::objects::{self, Key, meta};

/// A bound socket, not yet served.
pub(super) enum Bound {
    Tcp(std::net::TcpListener),
    Udp(std::net::UdpSocket),
}

pub(super) fn bind(addr: SocketAddr, protocol: &str) -> io::Result<Bound> {
    match protocol {
        "UDP" => std::net::UdpSocket::bind(addr).map(Bound::Udp),
        "TCP" => std::net::TcpListener::bind(addr).map(Bound::Tcp),
        other => Err(io::Error::new(
            io::ErrorKind::Unsupported,
            format!("protocol {other} is not served by sandbox nodes"),
        )),
    }
}

/// A container's declared ports: (containerPort, protocol, hostPort).
pub(super) fn declared_ports(container: &Value) -> Vec<(u16, String, Option<u16>)> {
    container["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            Some((
                u16::try_from(p["containerPort"].as_i64()?).ok()?,
                p["protocol"].as_str().unwrap_or("TCP").to_string(),
                p["hostPort"]
                    .as_i64()
                    .and_then(|h| u16::try_from(h).ok())
                    .filter(|h| *h > 0),
            ))
        })
        .collect()
}

pub(super) fn has_declared_ports(pod: &Value) -> bool {
    pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| !declared_ports(c).is_empty())
}

/// Binds `addr`, inside the pod's namespace in root mode.
pub(super) fn bind_in(netns: Option<&str>, addr: SocketAddr, protocol: &str) -> io::Result<Bound> {
    match netns {
        Some(ns) => cni::run_in(ns, || bind(addr, protocol))?,
        None => bind(addr, protocol),
    }
}

/// The sockets of one container, bound on `ip` (in the pod's namespace in root mode),
/// and its host ports on `host_ip`.
pub(super) fn bind_container(
    (ip, netns): (IpAddr, Option<&str>),
    host_ip: IpAddr,
    ports: &[(u16, String, Option<u16>)],
) -> Result<Vec<Bound>, (SocketAddr, io::Error)> {
    let mut out = Vec::new();
    for (port, protocol, host_port) in ports {
        let addr = SocketAddr::new(ip, *port);
        out.push(bind_in(netns, addr, protocol).map_err(|e| (addr, e))?);
        if let Some(hp) = host_port {
            let addr = SocketAddr::new(host_ip, *hp);
            out.push(bind(addr, protocol).map_err(|e| (addr, e))?);
        }
    }
    Ok(out)
}

pub(super) fn serve(sockets: Vec<Bound>, echo: &Arc<Echo>, stop: &CancellationToken) {
    for s in sockets {
        let served = match s {
            Bound::Tcp(l) => echo::serve_tcp(l, echo.clone(), stop.clone()),
            Bound::Udp(u) => echo::serve_udp(u, echo.clone(), stop.clone()),
        };
        if let Err(e) = served {
            echo.log.push(format!("serving failed: {e}"));
        }
    }
}

pub(super) fn bind_message(addr: SocketAddr, e: &io::Error) -> String {
    format!("listen {addr}: bind: {e}")
}

pub(super) fn ports_text(ports: &[(u16, String, Option<u16>)]) -> String {
    if ports.is_empty() {
        return "none declared".to_string();
    }
    ports
        .iter()
        .map(|(p, proto, host)| match host {
            Some(h) => format!("{p}/{proto} (host port {h})"),
            None => format!("{p}/{proto}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl NodeAgent {
    /// Serves the target ports of the Services that select a pod declaring no ports.
    pub(super) fn infer_ports(&mut self, state: &State, pod: &Value, key: &Key) {
        if has_declared_ports(pod) {
            return;
        }
        let Some(running) = self.pods.get_mut(key) else {
            return;
        };
        let Some(svc_rt) = objects::rt(state, "", "services") else {
            return;
        };
        let mut wanted = BTreeSet::new();
        for svc in objects::list(state, &svc_rt, Some(&key.0)) {
            let Some(sel) = svc["spec"]["selector"]
                .as_object()
                .filter(|m| !m.is_empty())
            else {
                continue;
            };
            if !sel
                .iter()
                .all(|(k, v)| pod["metadata"]["labels"].get(k) == Some(v))
            {
                continue;
            }
            for p in svc["spec"]["ports"].as_array().into_iter().flatten() {
                let port = p["targetPort"]
                    .as_i64()
                    .or_else(|| p["targetPort"].as_str().and_then(|s| s.parse().ok()))
                    .or_else(|| {
                        p["targetPort"]
                            .is_null()
                            .then(|| p["port"].as_i64())
                            .flatten()
                    });
                if let Some(port) = port.and_then(|n| u16::try_from(n).ok()) {
                    wanted.insert((port, p["protocol"].as_str().unwrap_or("TCP").to_string()));
                }
            }
        }
        let Some(first) = running.containers.first() else {
            return;
        };
        let log = self.logs.open(&key.0, meta(pod, "name"), &first.name);
        let echo = Arc::new(Echo {
            pod: meta(pod, "name").to_string(),
            log,
        });
        for (port, protocol) in wanted.difference(&running.inferred.clone()) {
            let addr = SocketAddr::new(running.ip, *port);
            let netns = running.netns.as_ref().map(|(ns, _)| ns.as_str());
            match bind_in(netns, addr, protocol) {
                Ok(s) => {
                    echo.log.push(format!("serving {addr}/{protocol}, a port a Service targets (the container declares none)"));
                    serve(vec![s], &echo, &running.stop);
                    running.inferred.insert((*port, protocol.clone()));
                }
                Err(e) => echo.log.push(bind_message(addr, &e)),
            }
        }
    }
}
