//! Kubernetes cluster DNS per the DNS-Based Service Discovery specification
//! (schema 1.1.0), with a fast built-in authoritative server.
//!
//! # Overview
//!
//! Objects flow one way:
//!
//! 1. [`model`]: Services, EndpointSlices and Pods stripped to what DNS needs
//!    (no Kubernetes types), the zone [`Options`](model::Options) and records.
//! 2. [`records::RecordIndex`]: turns objects into the records the
//!    specification requires (A/AAAA, headless endpoint sets, StatefulSet
//!    hostnames, SRV, PTR, ExternalName CNAMEs, `dns-version`, SOA/NS),
//!    incrementally, as per-name [`Change`](model::Change)s.
//! 3. [`snapshot`]: the built-in server's index of precomputed answers,
//!    published as immutable snapshots; [`wire`] parses queries and writes
//!    responses without allocating.
//!
//! # Running
//!
//! ```
//! use rancher_dns::model::{Options, Service, ServiceKey, ServiceKind};
//! use rancher_dns::records::RecordIndex;
//! use rancher_dns::snapshot::SnapshotBuilder;
//!
//! let options = Options::default();
//! let mut index = RecordIndex::new(options.clone());
//! let mut builder = SnapshotBuilder::new(&options);
//! builder.replace_all(&index.full());
//! let web = Service {
//!     key: ServiceKey::new("default", "web"),
//!     kind: ServiceKind::ClusterIp(vec!["10.43.0.7".parse().unwrap()]),
//!     ports: vec![],
//!     publish_not_ready_addresses: false,
//! };
//! builder.apply(&index.apply_service(web));
//! builder.set_synced(true);
//! let snapshot = builder.snapshot();
//! assert!(snapshot.synced());
//! ```
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `testing` | no | [`fixtures`]: hand-built objects for tests |

#[cfg(any(test, feature = "testing"))]
pub mod fixtures;
pub mod model;
pub mod name;
pub mod records;
pub mod snapshot;
pub mod wire;
