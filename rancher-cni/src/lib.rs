//! Rancher's managed network as a CNI 1.1.0 plugin, with a node agent that carries
//! pod traffic between hosts over a VXLAN overlay.
//!
//! # Overview
//!
//! Every pod gets an address from its node's range of the cluster network
//! (10.42.0.0/16 by default, a /24 per node), on a bridge on each host (`cni0`,
//! the gateway is the range's first address); traffic to another node's range goes
//! through a VXLAN device (`vtep1042`, VNI 1042, UDP 4789), as Rancher's VXLAN
//! network did.
//!
//! - [`model`]: ranges, attachments, reservations, overlay peers; no kernel or
//!   Kubernetes types.
//! - [`config`]: the network configuration, parsed and validated (errors name the
//!   key).
//! - [`protocol`]: the CNI protocol: environment, error codes, results per spec
//!   version.
//! - [`ipam`]: the [`IpStore`](ipam::IpStore) trait, the file-locked
//!   [`FileStore`](ipam::FileStore) and the allocator on top.
//! - [`dataplane`]: the [`Dataplane`](dataplane::Dataplane) trait (bridge, veth,
//!   addresses, routes, VXLAN peers).
//!
//! # Feature flags
//!
//! | feature | what it adds |
//! | --- | --- |
//! | `runtime` (default) | the node agent (Kubernetes watch, range claims, conflist, overlay) |
//! | `clap` | `clap::Args` on the agent's arguments |
//! | `testing` | `MemoryStore`, `MemoryDataplane` and the conformance batteries |

#[cfg(feature = "runtime")]
pub mod agent;
pub mod config;
pub mod dataplane;
pub mod ipam;
pub mod model;
pub mod overlay;
pub mod plugin;
pub mod protocol;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
