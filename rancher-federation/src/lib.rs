//! Services federated across Kubernetes clusters, with public DNS names for
//! them at the global, region and zone level.
//!
//! # Overview
//!
//! - [`model`]: the federation's model without Kubernetes types: [`DnsName`](model::DnsName),
//!   [`Federation`](model::Federation) and its [`Scope`](model::Scope) of names,
//!   [`Member`](model::Member)s with health, region and zones, per-cluster
//!   [`Shard`](model::Shard)s of a service, [`Record`](model::Record)s and the minimal
//!   [`Changes`](model::Changes) between two record sets.
//! - [`records::desired`]: the naming scheme as a pure function. For federation `myfed`
//!   and suffix `example.com`, service `nginx` in `default` gets
//!   `nginx.default.myfed.svc.example.com` (every healthy shard),
//!   `nginx.default.myfed.svc.<region>.example.com` and
//!   `nginx.default.myfed.svc.<zone>.<region>.example.com`, each falling back to a
//!   CNAME one level up when it has no healthy shard, with no global record when no
//!   shard is healthy. TTL 180 s.
//! - [`provider::DnsProvider`]: where records go. [`ensure`](provider::DnsProvider::ensure)
//!   reads the records within the federation's scope and applies only the
//!   difference. In-tree: [`Rfc2136Provider`](provider::Rfc2136Provider) (dynamic
//!   updates signed with TSIG, e.g. to BIND),
//!   `provider::RancherDnsProvider` (feature `rancher-dns`: the
//!   zone served by `rancher-dns`'s built-in authoritative server) and, behind `testing`,
//!   [`MemoryProvider`](provider::MemoryProvider) with a
//!   [conformance battery](provider::conformance).
//! - [`crd`] (feature `runtime`): the custom resources
//!   [`Federation`](crd::Federation), [`FederatedCluster`](crd::FederatedCluster) and
//!   [`FederatedService`](crd::FederatedService), group `federation.rancher.io/v1alpha1`.
//! - [`member`]: member credentials from Secrets (kubeconfig or token), auto-discovery of
//!   clusters whose credentials Secret carries `federation.rancher.io/name: <federation>`,
//!   and (feature `rancher`) of Rancher environments carrying that label, reached through
//!   Rancher's Kubernetes proxy; health checks of `/readyz` with timeouts, region and zones
//!   from node labels.
//! - [`controller::Controller`]: propagates every `FederatedService` to the healthy
//!   members (owned by the label `federation.rancher.io/federation`; a user's Service
//!   of the same name is left alone and reported), collects each member's
//!   `status.loadBalancer` and ready endpoints, and is the single writer of the
//!   federation's records in the DNS provider.
//! - [`well_known`]: labels, annotations, condition types and event reasons.
//!
//! # Implementing a backend
//!
//! A provider lists the records it holds within a scope and applies changes;
//! the default [`ensure`](provider::DnsProvider::ensure) does the rest. Run the
//! conformance battery (feature `testing`) against it.
//!
//! ```no_run
//! use async_trait::async_trait;
//! use rancher_federation::model::{Changes, RecordSet, Scope};
//! use rancher_federation::provider::{DnsProvider, Result};
//!
//! struct MyCloudDns;
//!
//! #[async_trait]
//! impl DnsProvider for MyCloudDns {
//!     async fn records(&self, scope: &Scope) -> Result<RecordSet> {
//!         // List the zone and keep the names `scope.owns(..)`.
//!         Ok(RecordSet::new())
//!     }
//!     async fn apply(&self, changes: &Changes) -> Result<()> {
//!         // Delete `changes.removed`, then create `changes.added`.
//!         Ok(())
//!     }
//! }
//! ```
//!
//! # Running
//!
//! Computing a federation's records and publishing them through RFC 2136:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use rancher_federation::{
//!     model::{DnsName, Federation, Ingress, Member, ServiceKey, Shard},
//!     provider::{DnsProvider, Rfc2136Config, Rfc2136Provider, TsigKey},
//!     records::{self, Resolved, ServiceShards},
//! };
//!
//! let federation = Federation::new("myfed", "example.org")?;
//! let members = vec![Member {
//!     cluster: "east".into(),
//!     healthy: true,
//!     region: Some("us-east".into()),
//!     zones: vec!["us-east-1a".into()],
//! }];
//! let nginx = ServiceShards {
//!     service: ServiceKey::new("default", "nginx"),
//!     shards: vec![Shard {
//!         cluster: "east".into(),
//!         ingress: vec![Ingress::Ip("192.0.2.10".parse()?)],
//!         ready_endpoints: 2,
//!     }],
//! };
//! let desired = records::desired(&federation, &members, &[nginx], &Resolved::new());
//!
//! let key = TsigKey::new("federation", "hmac-sha256", "c2VjcmV0LXNlY3JldC1zZWNyZXQ=")?;
//! let provider = Rfc2136Provider::new(Rfc2136Config::new(
//!     "192.0.2.53:53".parse()?,
//!     DnsName::new("example.org")?,
//!     Some(key),
//! ))?;
//! let changes = provider.ensure(&federation.scope(), &desired.records).await?;
//! println!("{changes}");
//! # Ok(()) }
//! ```
//!
//! Running the controller against a host cluster:
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::sync::Arc;
//! use rancher_federation::{
//!     controller::{Config, Controller},
//!     model::DnsName,
//!     provider::{Rfc2136Config, Rfc2136Provider},
//! };
//! rancher_runtime::install_crypto_provider();
//! let provider = Arc::new(Rfc2136Provider::new(Rfc2136Config::new(
//!     "192.0.2.53:53".parse()?,
//!     DnsName::new("example.org")?,
//!     None,
//! ))?);
//! let host = kube::Client::try_default().await?;
//! let controller = Controller::new(host, Config::new("federation-system"), provider);
//! controller.run(tokio_util::sync::CancellationToken::new()).await;
//! # Ok(()) }
//! ```
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `runtime` | yes | [`crd`], [`member`], [`controller`]: the Kubernetes side (kube, k8s-openapi, rancher-runtime) |
//! | `rfc2136` | yes | [`Rfc2136Provider`](provider::Rfc2136Provider): RFC 2136 updates with TSIG (hickory-proto, ring) |
//! | `clap` | no | `args::ControllerArgs`: the controller's flags for binaries (with `rancher`) |
//! | `rancher` | no | `controller::Config::rancher`: members discovered from Rancher environments (rancher-client) |
//! | `rancher-dns` | no | `provider::RancherDnsProvider`: the zone served by `rancher-dns`'s built-in server |
//! | `testing` | no | [`MemoryProvider`](provider::MemoryProvider) and the provider [conformance battery](provider::conformance) |

#[cfg(feature = "clap")]
pub mod args;
#[cfg(feature = "runtime")]
pub mod controller;
#[cfg(feature = "runtime")]
pub mod crd;
#[cfg(feature = "runtime")]
pub mod member;
#[cfg(feature = "runtime")]
pub mod metrics;
pub mod model;
pub mod provider;
pub mod records;
pub mod well_known;
