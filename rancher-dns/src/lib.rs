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
//! 3. [`backend::DnsBackend`]: receives the full zone and per-name changes.
//!    In-tree: [`backend::ServerBackend`] (feeds the built-in server),
//!    [`backend::AnswersBackend`] (Rancher DNS `answers.json`, written
//!    atomically) and, behind `testing`, `MemoryBackend` with a conformance
//!    battery any backend can run.
//! 4. [`snapshot`]: the built-in server's index of precomputed answers,
//!    published as immutable snapshots; [`wire`] parses queries and writes
//!    responses without allocating; [`server::Server`] serves UDP (one
//!    `SO_REUSEPORT` socket per core) and TCP and forwards other names
//!    through [`forward::Forwarder`] (bounded cache, negative caching);
//!    [`metrics::Metrics`] counts queries by type and rcode.
//!
//! # Implementing a backend
//!
//! ```no_run
//! use async_trait::async_trait;
//! use rancher_dns::backend::{DnsBackend, Result};
//! use rancher_dns::model::{Change, ZoneRecords};
//!
//! /// Logs every change.
//! struct LogBackend;
//!
//! #[async_trait]
//! impl DnsBackend for LogBackend {
//!     async fn sync(&self, zone: &dyn ZoneRecords) -> Result<()> {
//!         println!("full zone: {} names", zone.len());
//!         zone.for_each_name(&mut |name, records| {
//!             println!("{name}: {} records", records.len());
//!         });
//!         Ok(())
//!     }
//!     async fn apply(&self, changes: &[Change]) -> Result<()> {
//!         for c in changes {
//!             println!("changed: {}", c.name());
//!         }
//!         Ok(())
//!     }
//! }
//! ```
//!
//! # Running the server
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use rancher_dns::backend::{DnsBackend, ServerBackend};
//! use rancher_dns::metrics::Metrics;
//! use rancher_dns::model::Options;
//! use rancher_dns::records::RecordIndex;
//! use rancher_dns::server::{Server, ServerConfig};
//!
//! let options = Options::default();
//! let metrics = Metrics::new();
//! let backend = ServerBackend::new(&options, metrics.clone());
//! let index = RecordIndex::new(options);
//! backend.sync(&index.view()).await?;
//! let config = ServerConfig { listen: "127.0.0.1:5353".parse()?, ..ServerConfig::default() };
//! let server = Server::start(&config, backend.snapshots(), metrics)?;
//! # drop(server);
//! # Ok(())
//! # }
//! ```
//!
//! # The index on its own
//!
//! ```
//! use rancher_dns::model::{Options, Service, ServiceKey, ServiceKind};
//! use rancher_dns::records::RecordIndex;
//! use rancher_dns::snapshot::SnapshotBuilder;
//!
//! let options = Options::default();
//! let mut index = RecordIndex::new(options.clone());
//! let mut builder = SnapshotBuilder::new(&options);
//! builder.replace_all(&index.view());
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
//! | `runtime` | yes | [`object`] (Kubernetes objects decoded into the fields DNS reads), [`convert`] (those and the full k8s-openapi objects to the model), the watch sink `index` and the `controller` with `DnsArgs` and `Dns::start` |
//! | `clap` | no | `clap::Args` on `controller::DnsArgs` |
//! | `testing` | no | `fixtures` (hand-built objects), `backend::MemoryBackend` and `backend::conformance` |

pub mod backend;
#[cfg(feature = "runtime")]
pub mod controller;
#[cfg(feature = "runtime")]
pub mod convert;
#[cfg(any(test, feature = "testing"))]
pub mod fixtures;
pub mod forward;
#[cfg(feature = "runtime")]
pub mod index;
pub mod metrics;
pub mod model;
pub mod name;
#[cfg(feature = "runtime")]
pub mod object;
pub mod records;
pub mod server;
pub mod snapshot;
pub mod wire;
