//! An Ingress controller that programs the Rancher load balancer and writes its
//! addresses back to each Ingress's `status.loadBalancer.ingress`.
//!
//! # Overview
//!
//! - [`source`]: the Kubernetes objects read (Ingress, IngressClass, Service,
//!   EndpointSlice, Secret), stripped to what matters, without Kubernetes types.
//! - [`class`]: which Ingresses are ours; [`annotations`]: typed annotation
//!   values; [`host`] and [`path`]: validation and matching semantics.
//! - [`translate`]: [`Sources`](translate::Sources) → load balancers
//!   ([`model::LoadBalancer`]) plus an [`Outcome`](translate::Outcome) per Ingress,
//!   with conflicts resolved oldest-first.
//! - [`backend::IngressBackend`]: what realises load balancers and reports their
//!   addresses.
//!
//! # Implementing a backend
//!
//! ```no_run
//! use async_trait::async_trait;
//! use rancher_ingress::backend::{IngressBackend, Result};
//! use rancher_ingress::model::{Address, LoadBalancer, Status};
//!
//! struct Printer;
//!
//! #[async_trait]
//! impl IngressBackend for Printer {
//!     async fn ensure(&self, lb: &LoadBalancer) -> Result<Status> {
//!         tracing::info!(name = %lb.name, routes = lb.routes.len(), "ensure");
//!         Ok(Status::new([Address::parse("192.0.2.10")]))
//!     }
//!     async fn ensure_deleted(&self, _name: &str) -> Result<()> {
//!         Ok(())
//!     }
//!     async fn list(&self) -> Result<Vec<String>> {
//!         Ok(Vec::new())
//!     }
//!     async fn status(&self, _name: &str) -> Result<Option<Status>> {
//!         Ok(None)
//!     }
//! }
//! ```
//!
//! With the `testing` feature, run `rancher_ingress::testing::conformance` against
//! your backend in a test.
//!
//! # Running the controller
//!
//! Translation alone, from hand-built objects:
//!
//! ```
//! use rancher_ingress::source::{BackendRef, HttpPath, Ingress, IngressClass, PortRef, Rule};
//! use rancher_ingress::model::IngressKey;
//! use rancher_ingress::translate::{translate, Config, Sources};
//!
//! let mut sources = Sources::new();
//! sources.apply_class(IngressClass {
//!     name: "rancher".into(),
//!     controller: "rancher.io/ingress".into(),
//!     is_default: false,
//! });
//! let mut ingress = Ingress {
//!     key: IngressKey::new("default", "scalelb"),
//!     class_name: Some("rancher".into()),
//!     rules: vec![Rule {
//!         host: Some("foo.bar.com".into()),
//!         paths: vec![HttpPath {
//!             path: Some("/foo".into()),
//!             path_type: "Prefix".into(),
//!             backend: BackendRef::Service {
//!                 name: "nginx-service".into(),
//!                 port: Some(PortRef::Number(80)),
//!             },
//!         }],
//!     }],
//!     ..Ingress::default()
//! };
//! ingress.annotations.insert("scale".into(), "2".into());
//! sources.apply_ingress(ingress);
//! let translation = translate(&sources, &Config::default());
//! let lb = &translation.balancers["ingress-http80-x2"];
//! assert_eq!(lb.scale, 2);
//! assert_eq!(lb.route("foo.bar.com", "/foo/x").unwrap().service, "nginx-service");
//! ```
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `runtime` | yes | Kubernetes conversion, indexes and the controller |
//! | `lb` | yes | [`backend::lb::LbBackend`], the in-tree backend on a `rancher-lb` driver |
//! | `rancher` | no | `--driver rancher`: `rancher-lb`'s Rancher API driver |
//! | `clap` | no | `clap::Args` on `run::IngressArgs` |
//! | `testing` | no | [`testing::FakeBackend`], the conformance battery, and `fixtures` |

pub mod annotations;
pub mod backend;
pub mod class;
#[cfg(feature = "runtime")]
pub mod controller;
#[cfg(feature = "runtime")]
pub mod convert;
#[cfg(any(test, feature = "testing"))]
pub mod fixtures;
pub mod host;
#[cfg(feature = "runtime")]
pub mod index;
#[cfg(feature = "runtime")]
pub mod metrics;
pub mod model;
#[cfg(all(feature = "runtime", feature = "lb"))]
pub mod nodes;
pub mod path;
#[cfg(feature = "runtime")]
pub mod run;
pub mod source;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod tls;
pub mod translate;
