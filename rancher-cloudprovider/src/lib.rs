//! Cloud-provider traits for Kubernetes in Rust, and a generic service controller
//! that drives them: implement [`LoadBalancer`] and get `type: LoadBalancer`
//! Services.
//!
//! # Overview
//!
//! - [`LoadBalancer`], [`Instances`], [`Zones`]: the traits a provider implements,
//!   mirroring `k8s.io/cloud-provider`, grouped by [`Cloud`]. Their inputs are the
//!   Kubernetes-free [`model`] types; their contract (idempotent ensure verbs,
//!   delete is `Ok` when nothing exists) is written on each method.
//! - [`Error`]: what the controller does next. [`Error::Retry`] asks again after a
//!   fixed delay (a provider never blocks while a load balancer converges),
//!   [`Error::ImplementedElsewhere`] leaves the status to someone else, optional
//!   capabilities return [`Error::NotImplemented`], malformed input gives
//!   [`Error::InvalidService`] naming the field.
//! - [`well_known`]: the finalizer, labels and event reasons.
//! - [`controller`] (feature `runtime`): the service controller and the node
//!   controller part, over [`index::Index`] and `convert` (objects into the model).
//! - `testing` (feature `testing`): a fake provider that records calls, and a
//!   conformance battery any provider can run.
//!
//! # Implementing a backend
//!
//! ```no_run
//! use async_trait::async_trait;
//! use rancher_cloudprovider::{
//!     LoadBalancer, Result,
//!     model::{Ingress, LoadBalancerStatus, Node, Service},
//! };
//!
//! struct Static;
//!
//! #[async_trait]
//! impl LoadBalancer for Static {
//!     async fn get_load_balancer(&self, _: &str, _: &Service) -> Result<Option<LoadBalancerStatus>> {
//!         Ok(None)
//!     }
//!     fn load_balancer_name(&self, cluster: &str, service: &Service) -> String {
//!         format!("{cluster}-{}", service.uid)
//!     }
//!     async fn ensure_load_balancer(
//!         &self,
//!         _: &str,
//!         _: &Service,
//!         nodes: &[Node],
//!     ) -> Result<LoadBalancerStatus> {
//!         // Publish the nodes' addresses, as k3s ServiceLB does.
//!         let ingress = nodes
//!             .iter()
//!             .filter_map(Node::forwarding_address)
//!             .map(Ingress::ip)
//!             .collect();
//!         Ok(LoadBalancerStatus { ingress })
//!     }
//!     async fn update_load_balancer(&self, _: &str, _: &Service, _: &[Node]) -> Result<()> {
//!         Ok(())
//!     }
//!     async fn ensure_load_balancer_deleted(&self, _: &str, _: &Service) -> Result<()> {
//!         Ok(())
//!     }
//! }
//! ```
//!
//! Check it with the conformance battery (feature `testing`):
//! `rancher_cloudprovider::testing::conformance::load_balancer(&Static, &Fixture::example())`.
//!
//! # Running the controller
//!
//! [`controller::Controller`] (feature `runtime`) watches Services, Nodes and
//! EndpointSlices and calls the provider; the plumbing (watches, retries, leader
//! election, shutdown) is `rancher-runtime`'s:
//!
//! ```no_run
//! # #[cfg(feature = "testing")]
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use std::{sync::Arc, time::Duration};
//! use rancher_cloudprovider::{controller::{Config, Controller}, testing::FakeCloud};
//! use rancher_runtime::{client::ClientArgs, lease::Leadership, ready::Readiness, shutdown::Shutdown};
//!
//! rancher_runtime::install_crypto_provider();
//! let client = ClientArgs::default().client().await?;
//! let shutdown = Shutdown::on_signals();
//! let controller = Controller::new(client, Arc::new(FakeCloud::default()), Config::default());
//! controller.run(Leadership::always(), Readiness::new(), &shutdown).await;
//! shutdown.drain(Duration::from_secs(10)).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `runtime` | yes | `convert` and the controllers (kube, k8s-openapi, rancher-runtime) |
//! | `testing` | no | `testing`: the fake provider and the conformance battery |
//! | `rancher` | no | `rancher`: the Rancher implementation on `rancher-lb` and `rancher-client` |
//! | `clap` | no | `rancher::args`: the cloud controller's command-line arguments |

#[cfg(feature = "runtime")]
pub mod controller;
#[cfg(feature = "runtime")]
pub mod convert;
pub mod error;
#[cfg(feature = "runtime")]
pub mod index;
pub mod model;
mod provider;
#[cfg(feature = "rancher")]
pub mod rancher;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod well_known;

pub use error::{Error, Result};
pub use provider::{Cloud, Instances, LoadBalancer, Zones};
