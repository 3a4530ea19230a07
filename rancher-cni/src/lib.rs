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
//!   addresses, routes, VXLAN peers) and [`LinuxDataplane`](dataplane::LinuxDataplane)
//!   over rtnetlink.
//! - [`plugin`]: one CNI invocation over any dataplane and store;
//!   [`plugin::main`] is the whole `rancher-cni` binary.
//! - [`overlay`]: which peers a node programs, the diff against the kernel, range
//!   picking.
//! - `agent` (feature `runtime`): the node agent behind `rancher-cni-agent`.
//!
//! # Implementing a backend
//!
//! A store (or a dataplane) implements the trait and runs the conformance battery
//! of feature `testing`; the plugin takes any of them:
//!
//! ```no_run
//! use rancher_cni::ipam::{IpStore, Locked, Result};
//!
//! /// Reservations in some shared database.
//! struct DbStore;
//!
//! impl IpStore for DbStore {
//!     fn lock(&self, network: &str) -> Result<Box<dyn Locked + '_>> {
//!         // Take a lock that every plugin process honours, then hand out a
//!         // transaction over the network's rows.
//!         # let _ = network;
//!         unimplemented!()
//!     }
//! }
//!
//! # fn run(env: &rancher_cni::protocol::Env, stdin: &[u8]) {
//! let dataplane = rancher_cni::dataplane::LinuxDataplane::new().expect("netlink");
//! let out = rancher_cni::plugin::run(env, stdin, &dataplane, &|_data_dir| Box::new(DbStore));
//! # let _ = out;
//! # }
//! ```
//!
//! # Running the plugin
//!
//! The `rancher-cni` binary in `examples/` is `rancher_cni::plugin::main()`: a
//! runtime runs it as the CNI spec says (environment + stdin, in the host's
//! network namespace). The agent `rancher-cni-agent` writes
//! `/etc/cni/net.d/10-rancher-cni.conflist`; the crate README says how runtimes
//! find both.
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
