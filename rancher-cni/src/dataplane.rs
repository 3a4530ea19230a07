//! The dataplane: bridge, veth pairs, addresses, routes and VXLAN peers, behind the
//! [`Dataplane`] trait.
//!
//! The trait speaks the model's language (names, [`std::net`] addresses,
//! [`ipnet`] prefixes, namespace paths); [`LinuxDataplane`] implements it over
//! netlink, `testing::MemoryDataplane` (feature `testing`) in memory.
//!
//! The trait is synchronous on purpose: the plugin is a short-lived process that
//! enters the container's network namespace on its only thread, and an async
//! runtime's worker threads would not follow it there. The agent calls it from
//! `tokio::task::spawn_blocking`.

pub mod linux;

pub use linux::LinuxDataplane;

use std::net::IpAddr;

use ipnet::IpNet;

use crate::model::{MacAddr, Peer};

/// Errors of a dataplane.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An interface to create exists already.
    #[error("interface {name} already exists{}", in_ns(.netns))]
    Exists {
        /// The interface.
        name: String,
        /// The namespace it is in, when not the host's.
        netns: Option<String>,
    },
    /// The network namespace path does not exist or is not a network namespace.
    #[error("network namespace {path} does not exist or is not a network namespace")]
    NetnsNotFound {
        /// The path.
        path: String,
    },
    /// Something expected is missing (CHECK).
    #[error("{0}")]
    Missing(String),
    /// The kernel refused an operation.
    #[error("{op} failed: {source}")]
    Kernel {
        /// What was being done (`create veth rc0123 to eth0`).
        op: String,
        /// The kernel's answer.
        #[source]
        source: std::io::Error,
    },
    /// The dataplane cannot do this (a fake told to fail, a missing tool).
    #[error("{0}")]
    Unsupported(String),
}

fn in_ns(netns: &Option<String>) -> String {
    netns
        .as_ref()
        .map(|n| format!(" in {n}"))
        .unwrap_or_default()
}

/// Result of dataplane operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The bridge pods are attached to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeSpec {
    /// Its name (`cni0`).
    pub name: String,
    /// Its MTU.
    pub mtu: u32,
    /// The gateway addresses it holds, with the pod subnets' prefix lengths.
    pub addresses: Vec<IpNet>,
    /// Promiscuous mode.
    pub promisc: bool,
}

/// What [`Dataplane::ensure_bridge`] reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BridgeInfo {
    /// Its MAC address.
    pub mac: MacAddr,
    /// Its MTU.
    pub mtu: u32,
}

/// A veth pair from the bridge into a container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VethSpec {
    /// The container's network namespace (a path such as `/run/netns/x`).
    pub netns: String,
    /// The interface name inside the container (`CNI_IFNAME`).
    pub ifname: String,
    /// The host end's name.
    pub host_veth: String,
    /// The bridge the host end joins.
    pub bridge: String,
    /// The MTU of both ends.
    pub mtu: u32,
    /// Hairpin mode on the bridge port.
    pub hairpin: bool,
}

/// What [`Dataplane::create_veth`] made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VethInfo {
    /// The host end's MAC address.
    pub host_mac: MacAddr,
    /// The container end's MAC address.
    pub container_mac: MacAddr,
}

/// The addresses and routes of a container's interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PodNetwork {
    /// The container's network namespace.
    pub netns: String,
    /// The interface inside it.
    pub ifname: String,
    /// Its addresses with prefix lengths.
    pub addresses: Vec<IpNet>,
    /// Routes through the interface: destination and next hop.
    pub routes: Vec<(IpNet, IpAddr)>,
}

/// The host's uplink, the overlay's underlay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Underlay {
    /// The interface name.
    pub name: String,
    /// Its MTU.
    pub mtu: u32,
    /// Its addresses (first the one the overlay should use).
    pub addresses: Vec<IpAddr>,
}

/// The overlay's VXLAN device.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VxlanSpec {
    /// Its name (`vtep1042`).
    pub name: String,
    /// The VXLAN network identifier.
    pub vni: u32,
    /// The UDP port.
    pub port: u16,
    /// The underlay interface packets leave by.
    pub underlay: String,
    /// The local underlay address (the source of encapsulated packets).
    pub local: IpAddr,
    /// Its MTU (underlay MTU minus the encapsulation).
    pub mtu: u32,
    /// Its MAC address, to keep the one peers know after a restart.
    pub mac: Option<MacAddr>,
    /// Addresses of the device itself (the node ranges' network addresses as /32 or
    /// /128, so the host can reach remote pods with a source address of its range).
    pub addresses: Vec<IpNet>,
}

/// A backend that makes and removes the kernel objects the plugin and the agent need.
///
/// Every method is idempotent where the name says `ensure`; `remove_*` is `Ok` when
/// the object is gone already.
pub trait Dataplane: Send + Sync {
    /// Creates the bridge if missing (up, with `spec`'s MTU and addresses); adds
    /// missing addresses to an existing one.
    fn ensure_bridge(&self, spec: &BridgeSpec) -> Result<BridgeInfo>;

    /// Creates a veth pair: `host_veth` on the bridge, its peer named `ifname` in the
    /// container's namespace, both up. [`Error::Exists`] when `ifname` exists in the
    /// container, [`Error::NetnsNotFound`] when the namespace does not. A failed call
    /// leaves nothing behind.
    fn create_veth(&self, spec: &VethSpec) -> Result<VethInfo>;

    /// Adds the addresses and routes to the container's interface.
    fn configure_pod(&self, network: &PodNetwork) -> Result<()>;

    /// Removes the veth pair by its host end; `Ok` when it does not exist.
    fn remove_veth(&self, host_veth: &str) -> Result<()>;

    /// Whether the host has an interface called `name`.
    fn link_exists(&self, name: &str) -> Result<bool>;

    /// The host-side veths attached to `bridge`.
    fn bridge_ports(&self, bridge: &str) -> Result<Vec<String>>;

    /// Verifies what [`create_veth`](Dataplane::create_veth) and
    /// [`configure_pod`](Dataplane::configure_pod) made: [`Error::Missing`] naming
    /// the first thing that is not there.
    fn check_pod(&self, veth: &VethSpec, network: &PodNetwork) -> Result<()>;

    /// The uplink: `name` if given, else the interface of the default route (IPv4,
    /// then IPv6).
    fn underlay(&self, name: Option<&str>) -> Result<Underlay>;

    /// Masquerades traffic from `sources` to anything outside `exclude`.
    fn ensure_masquerade(&self, sources: &[IpNet], exclude: &[IpNet]) -> Result<()> {
        let _ = (sources, exclude);
        Err(Error::Unsupported(
            "ipMasq is not supported by this dataplane".into(),
        ))
    }

    /// Creates or adjusts the VXLAN device; returns its MAC address.
    fn ensure_vxlan(&self, spec: &VxlanSpec) -> Result<MacAddr>;

    /// Programs the path to `peer` through `device`: FDB entry (its VTEP MAC at its
    /// underlay address), permanent neighbour entry per range (the range's network
    /// address at its VTEP MAC), and last the route to each range (so the kernel
    /// never has to resolve a neighbour first).
    fn set_peer(&self, device: &str, peer: &Peer) -> Result<()>;

    /// Removes what [`set_peer`](Dataplane::set_peer) programmed, route first.
    fn remove_peer(&self, device: &str, peer: &Peer) -> Result<()>;

    /// The peers programmed on `device`, rebuilt from its routes, neighbours and FDB
    /// (their `node` is empty: the kernel does not know names).
    fn peers(&self, device: &str) -> Result<Vec<Peer>>;
}
