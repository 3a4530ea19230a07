//! The plugin: one CNI invocation from environment and stdin to stdout and exit
//! status, over any [`Dataplane`] and [`IpStore`].
//!
//! ADD creates the host veth on the bridge and its peer in the container first,
//! then reserves addresses, then configures them, and undoes its own work when a
//! later step fails. Because the veth exists before the reservation, a reservation
//! whose host veth is gone belongs to a container that is gone: the allocator
//! reclaims those when a range runs out, so leaks heal without GC. DEL releases the
//! reservation and removes the host veth (the peer goes with it); it never needs
//! the container's namespace and succeeds when there is nothing to remove.

use std::{
    io::{Read, Write},
    net::IpAddr,
    path::Path,
};

use ipnet::IpNet;

use crate::{
    config::{NetConf, peek_version},
    dataplane::{self, BridgeSpec, Dataplane, LinuxDataplane, PodNetwork, VethSpec},
    ipam::{self, FileStore, IpStore},
    model::{Attachment, Family, is_host_veth},
    protocol::{
        CURRENT_VERSION, CniError, CniResult, Command, Env, Interface, IpConfig, PrevResult, Route,
        code, supported, version_cmp, version_result,
    },
};

/// Opens the address store for a configuration's `dataDir`.
pub type StoreFactory<'a> = &'a dyn Fn(&Path) -> Box<dyn IpStore>;

/// Runs one invocation. `Ok(Some(json))` is written to stdout; `Ok(None)` writes
/// nothing; `Err` becomes an error document and exit status 1.
pub fn run(
    env: &Env,
    stdin: &[u8],
    dp: &dyn Dataplane,
    store: StoreFactory<'_>,
) -> Result<Option<String>, CniError> {
    if env.command == Command::Version {
        let version = peek_version(stdin)
            .filter(|v| supported(v))
            .unwrap_or_else(|| CURRENT_VERSION.to_string());
        return Ok(Some(version_result(&version)));
    }
    let conf = NetConf::parse(stdin)?;
    if version_cmp(&conf.cni_version, env.command.since()).is_lt() {
        return Err(CniError::new(
            code::INCOMPATIBLE_VERSION,
            format!(
                "cniVersion {} does not have {} (it came with {})",
                conf.cni_version,
                env.command,
                env.command.since()
            ),
        ));
    }
    let store = store(&conf.data_dir);
    match env.command {
        Command::Add => add(env, &conf, dp, &*store).map(Some),
        Command::Del => del(env, &conf, dp, &*store).map(|()| None),
        Command::Check => check(env, &conf, dp, &*store).map(|()| None),
        Command::Status => status(&conf, &*store).map(|()| None),
        Command::Gc => gc(&conf, dp, &*store).map(|()| None),
        Command::Version => Ok(None),
    }
}

/// The binary's whole `main`: reads the process environment and stdin, runs on the
/// Linux dataplane and the file store, writes stdout, returns the exit status.
pub fn main() -> i32 {
    let mut stdin = Vec::new();
    let env = Env::from_lookup(|k| std::env::var(k).ok());
    let result = match env {
        Err(e) => Err(e),
        Ok(env) => match std::io::stdin().read_to_end(&mut stdin).map(drop) {
            Err(e) => Err(CniError::new(
                code::IO,
                format!("reading stdin failed: {e}"),
            )),
            Ok(()) if env.command == Command::Version => run(&env, &stdin, &NoDataplane, &|_| {
                Box::new(FileStore::new("/nonexistent"))
            }),
            Ok(()) => match LinuxDataplane::new() {
                Err(e) => Err(CniError::new(code::IO, e.to_string())),
                Ok(dp) => run(&env, &stdin, &dp, &|dir| Box::new(FileStore::new(dir))),
            },
        },
    };
    let mut out = std::io::stdout().lock();
    match result {
        Ok(Some(json)) => {
            let _ = writeln!(out, "{json}");
            0
        }
        Ok(None) => 0,
        Err(e) => {
            let version = peek_version(&stdin)
                .filter(|v| supported(v))
                .unwrap_or_else(|| CURRENT_VERSION.to_string());
            let _ = writeln!(out, "{}", e.to_json(&version));
            1
        }
    }
}

/// VERSION needs no dataplane; this one refuses everything.
struct NoDataplane;

impl Dataplane for NoDataplane {
    fn ensure_bridge(&self, _: &BridgeSpec) -> dataplane::Result<dataplane::BridgeInfo> {
        Err(unsupported())
    }
    fn create_veth(&self, _: &VethSpec) -> dataplane::Result<dataplane::VethInfo> {
        Err(unsupported())
    }
    fn configure_pod(&self, _: &PodNetwork) -> dataplane::Result<()> {
        Err(unsupported())
    }
    fn remove_veth(&self, _: &str) -> dataplane::Result<()> {
        Err(unsupported())
    }
    fn link_exists(&self, _: &str) -> dataplane::Result<bool> {
        Err(unsupported())
    }
    fn bridge_ports(&self, _: &str) -> dataplane::Result<Vec<String>> {
        Err(unsupported())
    }
    fn check_pod(&self, _: &VethSpec, _: &PodNetwork) -> dataplane::Result<()> {
        Err(unsupported())
    }
    fn underlay(&self, _: Option<&str>) -> dataplane::Result<dataplane::Underlay> {
        Err(unsupported())
    }
    fn ensure_vxlan(&self, _: &dataplane::VxlanSpec) -> dataplane::Result<crate::model::MacAddr> {
        Err(unsupported())
    }
    fn set_peer(&self, _: &str, _: &crate::model::Peer) -> dataplane::Result<()> {
        Err(unsupported())
    }
    fn remove_peer(&self, _: &str, _: &crate::model::Peer) -> dataplane::Result<()> {
        Err(unsupported())
    }
    fn peers(&self, _: &str) -> dataplane::Result<Vec<crate::model::Peer>> {
        Err(unsupported())
    }
}

fn unsupported() -> dataplane::Error {
    dataplane::Error::Unsupported("no dataplane for VERSION".into())
}

fn dp_error(e: dataplane::Error) -> CniError {
    match e {
        dataplane::Error::Exists { .. } => {
            CniError::new(code::INTERFACE_EXISTS, format!("CNI_IFNAME: {e}"))
        }
        dataplane::Error::NetnsNotFound { .. } => {
            CniError::new(code::UNKNOWN_CONTAINER, format!("CNI_NETNS: {e}"))
        }
        dataplane::Error::Missing(m) => CniError::new(code::CHECK_FAILED, m),
        e => CniError::new(code::DATAPLANE, e.to_string()),
    }
}

fn ipam_error(e: ipam::Error) -> CniError {
    match e {
        ipam::Error::Exhausted { .. } => CniError::new(code::EXHAUSTED, e.to_string()),
        ipam::Error::NotInRange(_) | ipam::Error::Taken(_) => {
            CniError::new(code::INVALID_CONFIG, format!("requested IP: {e}"))
        }
        ipam::Error::Duplicate { .. } => CniError::new(code::STORE, e.to_string()),
        e => CniError::new(code::STORE, e.to_string()),
    }
}

/// The MTU for pods: configured, or the underlay's minus the overlay's overhead.
fn pod_mtu(conf: &NetConf, dp: &dyn Dataplane) -> u32 {
    conf.mtu.unwrap_or_else(|| {
        let underlay = dp.underlay(None).map(|u| u.mtu).unwrap_or(1500);
        underlay.saturating_sub(conf.link_mtu_overhead).max(576)
    })
}

fn veth_spec(env: &Env, conf: &NetConf, netns: &str, mtu: u32) -> VethSpec {
    VethSpec {
        netns: netns.to_string(),
        ifname: env.ifname.clone(),
        host_veth: Attachment::new(&env.container_id, &env.ifname).host_veth(),
        bridge: conf.bridge.clone(),
        mtu,
        hairpin: conf.hairpin,
    }
}

/// The container's routes: default routes per family (when `isDefaultGateway`),
/// then `ipam.routes`, each via its family's gateway unless it names one.
fn pod_routes(conf: &NetConf, families: &[Family]) -> Vec<(IpNet, IpAddr)> {
    let mut out = Vec::new();
    if conf.default_gateway {
        for f in families {
            if let Some(gw) = conf.gateway(*f) {
                out.push((f.default_route(), gw));
            }
        }
    }
    for r in &conf.routes {
        let family = Family::of_net(&r.dst);
        if let Some(gw) = r.gw.or_else(|| conf.gateway(family))
            && !out.iter().any(|(d, _)| *d == r.dst)
        {
            out.push((r.dst, gw));
        }
    }
    out
}

/// The routes as the result reports them, in the reference `bridge`'s order and
/// form: `ipam.routes` first (a route without `gw` goes via the interface's
/// gateway and is reported without one), then the default routes with theirs.
fn result_routes(conf: &NetConf, families: &[Family]) -> Vec<Route> {
    let mut out: Vec<Route> = conf
        .routes
        .iter()
        .filter(|r| families.contains(&Family::of_net(&r.dst)))
        .cloned()
        .collect();
    if conf.default_gateway {
        for f in families {
            let dst = f.default_route();
            if let Some(gw) = conf.gateway(*f)
                && !out.iter().any(|r| r.dst == dst)
            {
                out.push(Route { dst, gw: Some(gw) });
            }
        }
    }
    out
}

/// Whether `netns` is the namespace this process runs in (code 8, as the Go
/// library answers).
fn is_own_netns(netns: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (
        std::fs::metadata("/proc/self/ns/net"),
        std::fs::metadata(netns),
    ) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn add(
    env: &Env,
    conf: &NetConf,
    dp: &dyn Dataplane,
    store: &dyn IpStore,
) -> Result<String, CniError> {
    let netns = env.netns.as_deref().unwrap_or_default();
    if is_own_netns(netns) {
        return Err(CniError::new(
            code::INVALID_NETNS,
            format!("CNI_NETNS: {netns} is the plugin's own network namespace"),
        ));
    }
    let attachment = Attachment::new(&env.container_id, &env.ifname);
    let mut requested = env.args.requested_ips()?;
    requested.extend(conf.requested_ips.iter().copied());
    let mtu = pod_mtu(conf, dp);
    let bridge = dp
        .ensure_bridge(&BridgeSpec {
            name: conf.bridge.clone(),
            mtu,
            addresses: conf.gateways(),
            promisc: conf.promisc,
        })
        .map_err(dp_error)?;
    let veth = veth_spec(env, conf, netns, mtu);
    let made = dp.create_veth(&veth).map_err(dp_error)?;
    let undo_veth = || {
        let _ = dp.remove_veth(&veth.host_veth);
    };
    let allocations = {
        let mut tx = match store.lock(&conf.name) {
            Ok(tx) => tx,
            Err(e) => {
                undo_veth();
                return Err(ipam_error(e));
            }
        };
        let in_use = |r: &crate::model::Reservation| {
            // A holder whose host veth is gone is gone; when unsure, it is in use.
            dp.link_exists(&r.attachment.host_veth()).unwrap_or(true)
        };
        match ipam::allocate(&mut *tx, &conf.range_sets, &attachment, &requested, &in_use) {
            Ok(a) => a,
            Err(e) => {
                drop(tx);
                undo_veth();
                return Err(ipam_error(e));
            }
        }
    };
    let families: Vec<Family> = allocations.iter().map(|a| a.range.family()).collect();
    let network = PodNetwork {
        netns: netns.to_string(),
        ifname: env.ifname.clone(),
        addresses: allocations
            .iter()
            .map(|a| a.range.with_prefix(a.addr))
            .collect(),
        routes: pod_routes(conf, &families),
    };
    let configured = dp.configure_pod(&network).map_err(dp_error).and_then(|()| {
        if conf.ip_masq {
            let sources: Vec<IpNet> = allocations.iter().map(|a| a.range.subnet).collect();
            dp.ensure_masquerade(&sources, &conf.cluster_networks)
                .map_err(|e| CniError::new(code::DATAPLANE, format!("ipMasq: {e}")))
        } else {
            Ok(())
        }
    });
    if let Err(e) = configured {
        if let Ok(mut tx) = store.lock(&conf.name) {
            let _ = ipam::release(&mut *tx, &attachment);
        }
        undo_veth();
        return Err(e);
    }
    let result = CniResult {
        interfaces: vec![
            Interface {
                name: conf.bridge.clone(),
                mac: bridge.mac,
                mtu: bridge.mtu,
                sandbox: None,
            },
            Interface {
                name: veth.host_veth.clone(),
                mac: made.host_mac,
                mtu,
                sandbox: None,
            },
            Interface {
                name: env.ifname.clone(),
                mac: made.container_mac,
                mtu,
                sandbox: Some(netns.to_string()),
            },
        ],
        ips: allocations
            .iter()
            .map(|a| IpConfig {
                address: a.range.with_prefix(a.addr),
                gateway: Some(a.range.gateway),
                interface: Some(2),
            })
            .collect(),
        routes: result_routes(conf, &families),
        dns: conf.dns.clone(),
    };
    serde_json::to_string(&result.to_value(&conf.cni_version))
        .map_err(|e| CniError::new(code::IO, format!("encoding the result failed: {e}")))
}

fn del(env: &Env, conf: &NetConf, dp: &dyn Dataplane, store: &dyn IpStore) -> Result<(), CniError> {
    let attachment = Attachment::new(&env.container_id, &env.ifname);
    // Release first: a reservation must never outlive a DEL that said it succeeded.
    let released = store
        .lock(&conf.name)
        .and_then(|mut tx| ipam::release(&mut *tx, &attachment));
    let removed = dp.remove_veth(&attachment.host_veth());
    released.map_err(ipam_error)?;
    removed.map_err(dp_error)
}

fn check(
    env: &Env,
    conf: &NetConf,
    dp: &dyn Dataplane,
    store: &dyn IpStore,
) -> Result<(), CniError> {
    let netns = env.netns.as_deref().unwrap_or_default();
    let Some(prev) = &conf.prev_result else {
        return Err(CniError::new(
            code::INVALID_CONFIG,
            "prevResult: missing (CHECK needs the result of ADD)",
        ));
    };
    let prev = PrevResult::parse(prev)?;
    if !prev.sandbox_interfaces.contains(&env.ifname) {
        return Err(CniError::new(
            code::CHECK_FAILED,
            format!(
                "prevResult.interfaces: no interface {} in a sandbox",
                env.ifname
            ),
        ));
    }
    let attachment = Attachment::new(&env.container_id, &env.ifname);
    let held = store
        .lock(&conf.name)
        .and_then(|mut tx| ipam::held(&mut *tx, &attachment))
        .map_err(ipam_error)?;
    for ip in &prev.ips {
        if !held.contains(&ip.addr()) {
            return Err(CniError::new(
                code::CHECK_FAILED,
                format!(
                    "address {} is not reserved for {}/{}",
                    ip.addr(),
                    env.container_id,
                    env.ifname
                ),
            ));
        }
    }
    let families: Vec<Family> = prev.ips.iter().map(Family::of_net).collect();
    let veth = veth_spec(env, conf, netns, pod_mtu(conf, dp));
    let network = PodNetwork {
        netns: netns.to_string(),
        ifname: env.ifname.clone(),
        addresses: prev.ips.clone(),
        routes: pod_routes(conf, &families),
    };
    dp.check_pod(&veth, &network).map_err(|e| match e {
        dataplane::Error::NetnsNotFound { .. } => dp_error(e),
        e => CniError::new(code::CHECK_FAILED, e.to_string()),
    })
}

fn status(conf: &NetConf, store: &dyn IpStore) -> Result<(), CniError> {
    store.lock(&conf.name).map(drop).map_err(|e| {
        CniError::new(
            code::NOT_AVAILABLE,
            format!("the address store for {} is not usable: {e}", conf.name),
        )
    })
}

fn gc(conf: &NetConf, dp: &dyn Dataplane, store: &dyn IpStore) -> Result<(), CniError> {
    let Some(valid) = &conf.valid_attachments else {
        return Err(CniError::new(
            code::INVALID_CONFIG,
            "cni.dev/valid-attachments: missing (GC needs the attachments to keep)",
        ));
    };
    let mut first_error = None;
    if let Err(e) = store
        .lock(&conf.name)
        .and_then(|mut tx| ipam::gc(&mut *tx, &|a| valid.contains(a)))
    {
        first_error.get_or_insert(ipam_error(e));
    }
    let keep: Vec<String> = valid.iter().map(Attachment::host_veth).collect();
    match dp.bridge_ports(&conf.bridge) {
        Ok(ports) => {
            for port in ports {
                if is_host_veth(&port)
                    && !keep.contains(&port)
                    && let Err(e) = dp.remove_veth(&port)
                {
                    first_error.get_or_insert(dp_error(e));
                }
            }
        }
        Err(e) => {
            first_error.get_or_insert(dp_error(e));
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests;
