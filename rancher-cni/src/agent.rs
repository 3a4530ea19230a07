//! The node agent (feature `runtime`): the node's range, the conflist, the VXLAN
//! device, and a route + neighbour + FDB entry per other node.
//!
//! On start the agent takes its node's ranges from `spec.podCIDRs` (set by
//! `kube-controller-manager --allocate-node-cidrs`) or claims them
//! ([`claim`]), finds the underlay (`--iface` or the default route's interface),
//! creates the VXLAN device (keeping the MAC its Node annotation names, so peers
//! stay valid across restarts), writes the conflist atomically, and publishes its
//! VTEP MAC and underlay address on its Node. Then it watches Nodes and programs
//! flannel's scheme for every other node, diffing against what the kernel holds,
//! so a restart re-converges without touching the bridge or any pod. `/readyz` is
//! ready once the first full programming is done.

pub mod claim;
pub mod conflist;
pub mod convert;

use std::{
    collections::BTreeMap,
    net::IpAddr,
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use kube::{Api, Client, ResourceExt, api::PostParams, runtime::watcher};
use parking_lot::RwLock;
use prometheus_client::{
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};
use rancher_runtime::{
    index::{self, ClusterRemoved, IndexClusterResource},
    ready::Readiness,
};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::{
    dataplane::{self, Dataplane, VxlanSpec},
    model::{MacAddr, VXLAN_OVERHEAD_V4, VXLAN_OVERHEAD_V6},
    overlay::{NodeInfo, desired_peers, plan, vtep_mac_for},
};

/// The Node annotation with the node's VXLAN device MAC.
pub const VTEP_MAC_ANNOTATION: &str = "cni.rancher.io/vtep-mac";

/// The Node annotation with the node's underlay address.
pub const PUBLIC_IP_ANNOTATION: &str = "cni.rancher.io/public-ip";

/// The Node annotation with the ranges the agent claimed (when the cluster does
/// not set `spec.podCIDRs`), comma-separated.
pub const POD_CIDRS_ANNOTATION: &str = "cni.rancher.io/pod-cidrs";

/// The default cluster network (Rancher's managed network).
pub const DEFAULT_CLUSTER_CIDR: &str = "10.42.0.0/16";

/// How often the agent re-programs everything even without Node changes.
pub const RESYNC: Duration = Duration::from_secs(60);

/// Errors of the agent.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A Kubernetes request failed.
    #[error("{0} failed")]
    Kube(String, #[source] kube::Error),
    /// The cluster network has no free range left.
    #[error("no free /{size} left in {cluster}")]
    NoFreeRange {
        /// The cluster network.
        cluster: IpNet,
        /// The range size asked for.
        size: u8,
    },
    /// Too many agents raced for ranges at once.
    #[error("claiming a range lost too many races; giving up for now")]
    Contended,
    /// A dataplane operation failed.
    #[error("{0} failed")]
    Dataplane(String, #[source] dataplane::Error),
    /// Writing the conflist failed.
    #[error("writing the conflist in {0} failed")]
    Conflist(PathBuf, #[source] std::io::Error),
    /// The underlay has no address to send VXLAN packets from.
    #[error("the underlay interface {0} has no address")]
    NoUnderlayAddress(String),
    /// The node has no range of a family the cluster uses.
    #[error("node {0} has no pod range")]
    NoRange(String),
}

/// Result of agent operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The agent's settings.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct AgentArgs {
    /// This node's name.
    #[cfg_attr(feature = "clap", arg(long, env = "NODE_NAME"))]
    pub node_name: String,
    /// The cluster network(s), comma-separated (one per family).
    #[cfg_attr(
        feature = "clap",
        arg(long = "cluster-cidr", value_delimiter = ',', default_value = DEFAULT_CLUSTER_CIDR)
    )]
    pub cluster_cidrs: Vec<IpNet>,
    /// Where the conflist is written.
    #[cfg_attr(feature = "clap", arg(long, default_value = "/etc/cni/net.d"))]
    pub cni_conf_dir: PathBuf,
    /// The VXLAN UDP port.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 4789))]
    pub vxlan_port: u16,
    /// The VXLAN network identifier.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 1042))]
    pub vni: u32,
    /// The underlay interface (default: the default route's).
    #[cfg_attr(feature = "clap", arg(long))]
    pub iface: Option<String>,
    /// The IPv4 range size a node claims when the cluster allocates none.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 24))]
    pub node_cidr_size_v4: u8,
    /// The IPv6 range size a node claims when the cluster allocates none.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 64))]
    pub node_cidr_size_v6: u8,
    /// The pods' bridge.
    #[cfg_attr(feature = "clap", arg(long, default_value = "cni0"))]
    pub bridge: String,
    /// Masquerade pod traffic that leaves the cluster networks (needs iptables).
    #[cfg_attr(feature = "clap", arg(long))]
    pub ip_masq: bool,
}

impl AgentArgs {
    /// The defaults for node `node_name`.
    pub fn new(node_name: impl Into<String>) -> Self {
        Self {
            node_name: node_name.into(),
            cluster_cidrs: vec![
                DEFAULT_CLUSTER_CIDR
                    .parse()
                    .unwrap_or_else(|_| IpNet::default()),
            ],
            cni_conf_dir: PathBuf::from("/etc/cni/net.d"),
            vxlan_port: 4789,
            vni: 1042,
            iface: None,
            node_cidr_size_v4: 24,
            node_cidr_size_v6: 64,
            bridge: "cni0".into(),
            ip_masq: false,
        }
    }

    /// The VXLAN device's name: `vtep<VNI>`, as Rancher named it.
    pub fn device(&self) -> String {
        format!("vtep{}", self.vni)
    }
}

#[derive(Clone, Default)]
struct Metrics {
    peers: Gauge,
    syncs: Counter,
    errors: Counter,
    node_events: Counter,
}

impl Metrics {
    fn register(registry: &mut Registry) -> Self {
        let m = Self::default();
        registry.register(
            "peers",
            "Remote nodes programmed on the VXLAN device",
            m.peers.clone(),
        );
        registry.register("syncs", "Overlay programming passes", m.syncs.clone());
        registry.register(
            "programming_errors",
            "Peers whose programming failed",
            m.errors.clone(),
        );
        registry.register("node_events", "Node changes seen", m.node_events.clone());
        m
    }
}

/// The watched Nodes.
#[derive(Default)]
struct NodeIndex {
    nodes: BTreeMap<String, NodeInfo>,
    synced: bool,
    changed: Arc<Notify>,
    events: Counter,
}

impl IndexClusterResource<Node> for NodeIndex {
    fn apply(&mut self, node: Node) {
        let info = convert::node_info(&node);
        if self.nodes.get(&info.name) != Some(&info) {
            self.nodes.insert(info.name.clone(), info);
            self.events.inc();
            self.changed.notify_one();
        }
    }

    fn delete(&mut self, name: String) {
        self.nodes.remove(&name);
        self.events.inc();
        self.changed.notify_one();
    }

    fn reset(&mut self, nodes: Vec<Node>, _removed: ClusterRemoved) {
        self.nodes = nodes
            .iter()
            .map(|n| {
                let info = convert::node_info(n);
                (info.name.clone(), info)
            })
            .collect();
        self.synced = true;
        self.events.inc();
        self.changed.notify_one();
    }
}

/// A running agent.
pub struct Agent {
    task: tokio::task::JoinHandle<()>,
    /// The node's ranges.
    pub ranges: Vec<IpNet>,
    /// The VXLAN device's MAC.
    pub vtep_mac: MacAddr,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("ranges", &self.ranges)
            .field("vtep_mac", &self.vtep_mac)
            .finish_non_exhaustive()
    }
}

async fn blocking<T: Send + 'static>(
    what: String,
    f: impl FnOnce() -> dataplane::Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Dataplane(what.clone(), dataplane::Error::Unsupported(e.to_string())))?
        .map_err(|e| Error::Dataplane(what, e))
}

/// Writes `annotations` onto Node `name` with a PUT carrying the resourceVersion
/// read, retrying when someone else wrote in between.
async fn annotate(nodes: &Api<Node>, name: &str, annotations: &[(&str, String)]) -> Result<()> {
    for _ in 0..20 {
        let mut node = nodes
            .get(name)
            .await
            .map_err(|e| Error::Kube(format!("read node {name}"), e))?;
        let current = node.annotations_mut();
        if annotations.iter().all(|(k, v)| current.get(*k) == Some(v)) {
            return Ok(());
        }
        for (k, v) in annotations {
            current.insert((*k).to_string(), v.clone());
        }
        match nodes.replace(name, &PostParams::default(), &node).await {
            Ok(_) => return Ok(()),
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(Error::Kube(format!("annotate node {name}"), e)),
        }
    }
    Err(Error::Contended)
}

impl Agent {
    /// Sets the node up and starts programming the overlay until `shutdown`.
    pub async fn start(
        args: &AgentArgs,
        client: Client,
        dp: Arc<dyn Dataplane>,
        registry: &mut Registry,
        readiness: &Readiness,
        shutdown: CancellationToken,
    ) -> Result<Self> {
        let pending = readiness.register("overlay");
        let metrics = Metrics::register(registry);
        let nodes: Api<Node> = Api::all(client.clone());
        let me = nodes
            .get(&args.node_name)
            .await
            .map_err(|e| Error::Kube(format!("read node {}", args.node_name), e))?;
        let mut ranges = convert::node_ranges(&me);
        let claimed = ranges.is_empty();
        if claimed {
            ranges = claim::claim(
                &client,
                &args.node_name,
                &args.cluster_cidrs,
                args.node_cidr_size_v4,
                args.node_cidr_size_v6,
            )
            .await?;
        }
        if ranges.is_empty() {
            return Err(Error::NoRange(args.node_name.clone()));
        }
        let iface = args.iface.clone();
        let dp2 = Arc::clone(&dp);
        let underlay = blocking("find the underlay".into(), move || {
            dp2.underlay(iface.as_deref())
        })
        .await?;
        let local: IpAddr = underlay
            .addresses
            .iter()
            .find(|a| a.is_ipv4())
            .or_else(|| underlay.addresses.first())
            .copied()
            .ok_or_else(|| Error::NoUnderlayAddress(underlay.name.clone()))?;
        let overhead = if local.is_ipv4() {
            VXLAN_OVERHEAD_V4
        } else {
            VXLAN_OVERHEAD_V6
        };
        let mtu = underlay.mtu.saturating_sub(overhead).max(576);
        let known_mac = me
            .annotations()
            .get(VTEP_MAC_ANNOTATION)
            .and_then(|m| m.parse::<MacAddr>().ok())
            .filter(MacAddr::is_unicast);
        let spec = VxlanSpec {
            name: args.device(),
            vni: args.vni,
            port: args.vxlan_port,
            underlay: underlay.name.clone(),
            local,
            mtu,
            mac: known_mac.or_else(|| vtep_mac_for(local)),
            addresses: ranges.iter().map(|r| IpNet::from(r.network())).collect(),
        };
        let dp2 = Arc::clone(&dp);
        let vtep_mac = blocking(format!("create {}", spec.name), move || {
            dp2.ensure_vxlan(&spec)
        })
        .await?;
        conflist::Conflist {
            ranges: ranges.clone(),
            cluster_cidrs: args.cluster_cidrs.clone(),
            bridge: args.bridge.clone(),
            mtu,
            ip_masq: args.ip_masq,
        }
        .write(&args.cni_conf_dir)
        .map_err(|e| Error::Conflist(args.cni_conf_dir.clone(), e))?;
        let mut annotations = vec![
            (VTEP_MAC_ANNOTATION, vtep_mac.to_string()),
            (PUBLIC_IP_ANNOTATION, local.to_string()),
        ];
        if claimed {
            let joined: Vec<String> = ranges.iter().map(ToString::to_string).collect();
            annotations.push((POD_CIDRS_ANNOTATION, joined.join(",")));
        }
        annotate(&nodes, &args.node_name, &annotations).await?;
        tracing::info!(node = %args.node_name, ranges = ?ranges, %vtep_mac, underlay = %local, "node set up");

        let changed = Arc::new(Notify::new());
        let index = Arc::new(RwLock::new(NodeIndex {
            changed: Arc::clone(&changed),
            events: metrics.node_events.clone(),
            ..NodeIndex::default()
        }));
        let events = index::watch(nodes, watcher::Config::default());
        let watch_index = Arc::clone(&index);
        let watch_token = shutdown.clone();
        tokio::spawn(async move {
            tokio::select! {
                () = index::cluster(watch_index, events, None) => {}
                () = watch_token.cancelled() => {}
            }
        });
        let me_name = args.node_name.clone();
        let device = args.device();
        let task = tokio::spawn(async move {
            let mut pending = Some(pending);
            let mut known: Vec<String> = Vec::new();
            let mut wait = RESYNC;
            loop {
                tokio::select! {
                    () = changed.notified() => {}
                    () = tokio::time::sleep(wait) => {}
                    () = shutdown.cancelled() => return,
                }
                let (synced, infos) = {
                    let idx = index.read();
                    (idx.synced, idx.nodes.values().cloned().collect::<Vec<_>>())
                };
                if !synced {
                    continue;
                }
                let started = Instant::now();
                let ok = program(&dp, &device, &me_name, &infos, &metrics).await;
                // A failed pass is retried soon; a good one at the resync period.
                wait = if ok { RESYNC } else { Duration::from_secs(2) };
                tracing::debug!(elapsed = ?started.elapsed(), ok, "overlay programmed");
                if ok && let Some(p) = pending.take() {
                    p.ready();
                }
                let names: Vec<String> = infos.iter().map(|n| n.name.clone()).collect();
                if names.len() < known.len() {
                    let _ = claim::release_departed(&client, &names).await;
                }
                known = names;
            }
        });
        Ok(Self {
            task,
            ranges,
            vtep_mac,
        })
    }

    /// Waits until the agent stopped (after shutdown).
    pub async fn stopped(self) {
        let _ = self.task.await;
    }
}

/// One programming pass: diff the kernel against the Nodes and apply. `true` when
/// every peer was programmed.
async fn program(
    dp: &Arc<dyn Dataplane>,
    device: &str,
    me: &str,
    nodes: &[NodeInfo],
    metrics: &Metrics,
) -> bool {
    let desired = desired_peers(me, nodes);
    let dp = Arc::clone(dp);
    let device = device.to_string();
    let result = tokio::task::spawn_blocking(move || {
        let current = dp.peers(&device)?;
        let (remove, set) = plan(&current, &desired);
        let mut failures = 0u64;
        for peer in &remove {
            if let Err(e) = dp.remove_peer(&device, peer) {
                tracing::warn!(mac = %peer.vtep_mac, error = %e, "removing a peer failed");
                failures += 1;
            }
        }
        for peer in &set {
            if let Err(e) = dp.set_peer(&device, peer) {
                tracing::warn!(node = %peer.node, error = %e, "programming a peer failed");
                failures += 1;
            }
        }
        Ok::<_, dataplane::Error>((desired.len(), failures))
    })
    .await;
    metrics.syncs.inc();
    match result {
        Ok(Ok((peers, failures))) => {
            metrics.peers.set(i64::try_from(peers).unwrap_or(i64::MAX));
            metrics.errors.inc_by(failures);
            failures == 0
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "reading the overlay's state failed");
            metrics.errors.inc();
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "the programming task failed");
            metrics.errors.inc();
            false
        }
    }
}
