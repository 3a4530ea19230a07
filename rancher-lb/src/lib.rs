//! The Rancher load balancer as a library: a validated model, placement of
//! instances on hosts, and drivers that make it real.
//!
//! # Overview
//!
//! - [`model`]: a [`LoadBalancer`](model::LoadBalancer) built from a
//!   [`LoadBalancerSpec`](model::LoadBalancerSpec) and validated on
//!   construction: listeners, HTTP and TCP routes, backends, certificates,
//!   `scale` and placement constraints. Every string is checked against a strict
//!   grammar, so nothing unchecked reaches a configuration file.
//! - [`placement`]: [`place`](placement::place) puts `scale` instances on
//!   distinct eligible hosts, stable across updates, honouring labels and
//!   listener-port conflicts, and reports a shortfall.
//! - [`driver`]: the [`Driver`](driver::Driver) trait: `ensure` a load
//!   balancer and get its [`Status`](driver::Status) (addresses, instances,
//!   conditions), `ensure_deleted`, and [`subscribe`](driver::Driver::subscribe)
//!   to status changes (an instance restarted, a host failed).
//! - [`haproxy`]: [`HaproxyDriver`](haproxy::HaproxyDriver) runs and supervises
//!   one real HAProxy (master-worker) per host address, each serving every
//!   load balancer placed on that host. Routing goes through map files (exact
//!   host, wildcard host, then exact path, exact prefix and a case-sensitive
//!   `map_beg` prefix map, so the longest path wins, then the host's default
//!   backend), certificates through a
//!   crt-list chosen by SNI, endpoint changes through the runtime API without a
//!   reload, and other changes through `haproxy -c` and a hitless reload.
//! - `rancher` (feature `rancher`): `RancherDriver` maps load balancers
//!   onto Rancher `loadBalancerService`s through `rancher-client`, one
//!   service shared by those on the same ports and placement (as the HAProxy
//!   driver shares one process per host), and reads `publicEndpoints` back
//!   as the addresses.
//! - `testing` (feature `testing`): `FakeDriver` and the `Conformance`
//!   battery.
//!
//! ```
//! use rancher_lb::model::{
//!     BackendSpec, EndpointSpec, HttpRouteSpec, ListenerSpec, LoadBalancer,
//!     LoadBalancerSpec, PathMatch, Protocol,
//! };
//!
//! let lb = LoadBalancer::new(&LoadBalancerSpec {
//!     id: "default.web".into(),
//!     listeners: vec![ListenerSpec { port: 80, protocol: Protocol::Http }],
//!     http_routes: vec![HttpRouteSpec {
//!         port: 80,
//!         host: Some("www.example.org".into()),
//!         path: Some("/api".into()),
//!         path_match: PathMatch::Prefix,
//!         backend: "api".into(),
//!     }],
//!     backends: vec![BackendSpec {
//!         name: "api".into(),
//!         endpoints: vec![EndpointSpec { address: "10.42.0.5".into(), port: 8080 }],
//!         ..Default::default()
//!     }],
//!     scale: 2,
//!     ..Default::default()
//! })?;
//! assert_eq!(lb.scale(), 2);
//! # Ok::<(), rancher_lb::model::Error>(())
//! ```
//!
//! # Implementing a backend
//!
//! A driver implements [`Driver`](driver::Driver); it is used as
//! `Arc<dyn Driver>`. With the `testing` feature, `rancher_lb::testing`
//! offers a fake driver and a conformance battery to run against your own.
//!
//! ```no_run
//! use async_trait::async_trait;
//! use rancher_lb::driver::{Driver, Result, Status, StatusUpdate};
//! use rancher_lb::model::{LbId, LoadBalancer};
//! use tokio::sync::broadcast;
//!
//! struct Printer {
//!     tx: broadcast::Sender<StatusUpdate>,
//! }
//!
//! #[async_trait]
//! impl Driver for Printer {
//!     async fn ensure(&self, lb: &LoadBalancer) -> Result<Status> {
//!         tracing::info!(id = %lb.id(), routes = lb.http_routes().len(), "ensure");
//!         Ok(Status::default())
//!     }
//!     async fn ensure_deleted(&self, _id: &LbId) -> Result<()> {
//!         Ok(())
//!     }
//!     async fn status(&self, _id: &LbId) -> Result<Option<Status>> {
//!         Ok(None)
//!     }
//!     async fn list(&self) -> Result<Vec<LbId>> {
//!         Ok(Vec::new())
//!     }
//!     fn subscribe(&self) -> broadcast::Receiver<StatusUpdate> {
//!         self.tx.subscribe()
//!     }
//! }
//! ```
//!
//! # Running the drivers
//!
//! Drivers are libraries; the Ingress controller and the cloud provider pick
//! one at run time and hold it as `Arc<dyn Driver>`. The HAProxy driver needs
//! the `haproxy` binary (Debian package `haproxy`) and a private work
//! directory; on one machine, loopback addresses stand for hosts:
//!
//! ```no_run
//! use std::sync::Arc;
//! use rancher_lb::driver::Driver;
//! use rancher_lb::haproxy::{HaproxyConfig, HaproxyDriver};
//! use rancher_lb::placement::Host;
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let hosts = vec![
//!     Host::new("127.0.0.2".parse()?),
//!     Host::new("127.0.0.3".parse()?),
//! ];
//! let haproxy = Arc::new(HaproxyDriver::new(HaproxyConfig::new("/run/rancher-lb", hosts)).await?);
//! let driver: Arc<dyn Driver> = haproxy.clone();
//! // driver.ensure(&lb).await? ...
//! haproxy.shutdown().await;
//! # Ok(())
//! # }
//! ```
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `testing` | no | a fake driver and a conformance battery |
//! | `rancher` | no | `rancher::RancherDriver`, on `rancher-client` |

pub mod driver;
pub mod haproxy;
pub mod model;
pub mod placement;
#[cfg(feature = "rancher")]
pub mod rancher;
#[cfg(feature = "testing")]
pub mod testing;
