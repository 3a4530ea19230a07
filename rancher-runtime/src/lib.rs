//! Shared Kubernetes plumbing for the `rancher-*` controllers, written once so no
//! plugin writes it again.
//!
//! # Overview
//!
//! - [`client::ClientArgs`]: a [`kube::Client`] from a kubeconfig file and context,
//!   or from the in-cluster service account.
//! - [`index`]: sink traits ([`IndexNamespacedResource`](index::IndexNamespacedResource),
//!   [`IndexClusterResource`](index::IndexClusterResource)) that an in-memory index
//!   implements per resource, and driver functions that feed a
//!   [`kube::runtime::watcher()`] stream into them.
//! - [`watch::watch`]: the watch stream those drivers take, which recovers from
//!   API server faults within seconds (capped, jittered retries; resume from the
//!   last resourceVersion; a new list on 410 Gone; stalled watches restarted).
//! - [`ready::Readiness`]: the process is ready once every watched resource has
//!   listed; tracked watches report when their view is stale.
//! - [`requeue::Policy`]: the reconcile retry policy. An error whose
//!   [`kind`](requeue::Classify::kind) is [`Retry { after }`](requeue::ErrorKind::Retry)
//!   is retried after exactly `after`; other errors back off exponentially with
//!   jitter, from 5 s doubling to 5 min; success resets the backoff.
//! - [`queue::Queue`]: a keyed work queue for reconcilers: deduplicated keys, no
//!   key processed twice at once, failures requeued through the policy, so one
//!   converging object never holds up the others.
//! - [`lease`]: leader election on a `coordination.k8s.io/v1` Lease, so only one
//!   replica writes status.
//! - [`admin`]: `/livez`, `/readyz` and `/metrics` (Prometheus text from a
//!   [`prometheus_client`] registry the plugins register into), on a port each
//!   binary chooses ([`AdminArgs<PORT>`](admin::AdminArgs)).
//! - [`listen::BindError`]: a socket that cannot be bound names its address and
//!   the flag it came from.
//! - [`shutdown::Shutdown`]: SIGTERM/SIGINT stop the watches, let in-flight work
//!   finish within a deadline, and release the Lease.
//! - [`status::patch_status`] and [`events::Recorder`]: status subresource patches
//!   under a field manager, and `events.k8s.io/v1` Events under a reporting
//!   controller name.
//! - [`log::LogArgs`]: tracing for binaries, `RUST_LOG` filtered, plain or JSON.
//! - [`install_crypto_provider`]: the one place the ring rustls provider is
//!   installed; every binary and test harness calls it first.
//!
//! # Implementing a backend
//!
//! This crate has no backend trait of its own. A plugin implements the sink traits
//! on its index, and classifies its errors for the retry policy:
//!
//! ```
//! use std::time::Duration;
//! use rancher_runtime::requeue::{Classify, ErrorKind};
//!
//! #[derive(Debug)]
//! enum Error {
//!     /// The load balancer is still converging.
//!     Pending { after: Duration },
//!     /// Anything else.
//!     Failed(String),
//! }
//!
//! impl Classify for Error {
//!     fn kind(&self) -> ErrorKind {
//!         match self {
//!             Error::Pending { after } => ErrorKind::Retry { after: *after },
//!             Error::Failed(_) => ErrorKind::Backoff,
//!         }
//!     }
//! }
//! ```
//!
//! # Running the controller
//!
//! Wiring a watcher into an index, and running a controller that writes status only
//! while it holds the Lease:
//!
//! ```no_run
//! use std::{sync::Arc, time::Duration};
//! use k8s_openapi::api::core::v1::Service;
//! use kube::{Api, ResourceExt, runtime::watcher};
//! use parking_lot::RwLock;
//! use rancher_runtime::{
//!     admin::{AdminArgs, AdminState},
//!     client::ClientArgs,
//!     index::{self, IndexNamespacedResource},
//!     lease::LeaderArgs,
//!     ready::Readiness,
//!     shutdown::Shutdown,
//! };
//!
//! #[derive(Default)]
//! struct Names(std::collections::BTreeSet<String>);
//!
//! impl IndexNamespacedResource<Service> for Names {
//!     fn apply(&mut self, svc: Service) {
//!         self.0.insert(format!("{}/{}", svc.namespace().unwrap_or_default(), svc.name_any()));
//!     }
//!     fn delete(&mut self, namespace: String, name: String) {
//!         self.0.remove(&format!("{namespace}/{name}"));
//!     }
//! }
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! rancher_runtime::install_crypto_provider();
//! let client = ClientArgs::default().client().await?;
//! let shutdown = Shutdown::on_signals();
//! let readiness = Readiness::new();
//!
//! // Feed the Service watch into the index; ready once it has listed.
//! let names = Arc::new(RwLock::new(Names::default()));
//! let events = index::watch(Api::<Service>::all(client.clone()), watcher::Config::default());
//! let ready = readiness.register("services");
//! shutdown.spawn({
//!     let (names, token) = (names.clone(), shutdown.token());
//!     async move {
//!         tokio::select! {
//!             () = index::namespaced(names, events, Some(ready)) => {}
//!             () = token.cancelled() => {}
//!         }
//!     }
//! });
//!
//! // Leader election; the elector releases the Lease on shutdown.
//! let (mut leadership, elector) = LeaderArgs::new("kube-system", "my-controller")
//!     .start(client.clone(), shutdown.token());
//! if let Some(elector) = elector {
//!     shutdown.spawn(elector);
//! }
//!
//! // /livez, /readyz, /metrics.
//! let state = AdminState::new(readiness.clone(), Default::default())
//!     .with_leadership(leadership.clone());
//! let admin = AdminArgs::<9999>::default().bind(state).await?;
//! shutdown.spawn(admin.serve(shutdown.token()));
//!
//! // The controller: act only while leading.
//! readiness.wait().await;
//! while !shutdown.is_triggered() {
//!     if leadership.is_leader() {
//!         println!("{} services", names.read().0.len());
//!     }
//!     tokio::select! {
//!         _ = leadership.changed() => {}
//!         () = tokio::time::sleep(Duration::from_secs(10)) => {}
//!         () = shutdown.triggered() => {}
//!     }
//! }
//! shutdown.drain(Duration::from_secs(10)).await?;
//! # Ok(())
//! # }
//! ```
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `clap` | no | `clap::Args` derives on [`client::ClientArgs`], [`lease::LeaderArgs`], [`admin::AdminArgs`] and [`log::LogArgs`], so binaries flatten them into their own arguments |

pub mod admin;
pub mod client;
pub mod duration;
pub mod events;
pub mod index;
pub mod lease;
pub mod listen;
pub mod log;
pub mod queue;
pub mod ready;
pub mod requeue;
pub mod shutdown;
pub mod status;
pub mod watch;

/// Installs ring as the process-wide rustls crypto provider.
///
/// Every crate in this workspace uses ring; kube and reqwest both need a provider
/// installed before their first TLS connection. Call this first in every binary and
/// test harness. Calling it again is harmless.
pub fn install_crypto_provider() {
    // An error means a provider is installed already, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
