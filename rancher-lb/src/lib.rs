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
//! # Feature flags
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `testing` | no | a fake driver and a conformance battery |

pub mod model;
pub mod placement;
