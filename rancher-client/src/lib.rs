//! Typed client for Rancher's v2-beta API, with a fake Rancher server for tests.
//!
//! ```no_run
//! use rancher_client::{Client, ListParams};
//!
//! # async fn run() -> rancher_client::Result<()> {
//! // CATTLE_URL=http://rancher.example.org:8080/v2-beta/projects/1a5,
//! // CATTLE_ACCESS_KEY and CATTLE_SECRET_KEY (a rustls crypto provider must be installed).
//! let client = Client::from_env()?;
//! let live = ListParams::new().removed_null();
//! for lb in client.load_balancer_services().list(&live).await? {
//!     println!("{} {:?} {:?}", lb.meta.id, lb.meta.name, lb.public_ips());
//! }
//! for registry in client.registries().list(&live).await? {
//!     println!("{} {}", registry.meta.id, registry.server_address);
//! }
//! # Ok(()) }
//! ```
//!
//! # Overview
//!
//! - [`Client`] talks to one Rancher project (environment): configured from `CATTLE_URL`,
//!   `CATTLE_ACCESS_KEY` and `CATTLE_SECRET_KEY` ([`Client::from_env`]) or from a [`Config`];
//!   HTTP basic authentication, timeouts, and retries with backoff on connect errors and 5xx
//!   ([`RetryPolicy`] says exactly which). It is cheap to clone and `Send + Sync`.
//!   [`Client::ping`] checks reachability and keys, for readiness probes. Each request runs
//!   in a `rancher_request` tracing span (method and path; never credentials).
//! - [`Api<R>`](Api) holds the operations on one resource type: [`Api::list`] with filters
//!   ([`ListParams`]) following `pagination.next` to the end, [`Api::get`], [`Api::create`],
//!   [`Api::update`] (PUT), actions ([`Api::activate`], [`Api::deactivate`], [`Api::remove`],
//!   [`Api::purge`], [`Api::upgrade`](Api#method.upgrade)), and waits that end when a
//!   resource leaves its transitioning state ([`Api::wait_settled`], [`Api::wait_until`]),
//!   bounded and cancellable ([`WaitParams`]). [`Client::follow_link`] and
//!   [`Client::follow_link_list`] follow a resource's links.
//! - [`resource`] has the typed resources: [`Stack`], [`LoadBalancerService`] (with
//!   `launchConfig`, `lbConfig.portRules`, `publicEndpoints`), [`Certificate`], [`Registry`],
//!   [`RegistryCredential`], [`Host`] (and its [`IpAddress`]es), [`Setting`], and
//!   [`Project`] (an environment; at the API root, see [`Scope`]) with its
//!   [`ProjectMember`]s and their roles, and the [`Identity`]s of an API key. Fields the
//!   crate does not model are kept in `extra` and sent back on update.
//! - [`Client::identities_of`] resolves someone else's API key to its identities (what
//!   Rancher's own Kubernetes authentication webhook did), [`Client::members_of`] lists the
//!   live members of an environment.
//! - [`Client::kubernetes_access`] gives an environment's Kubernetes API as Rancher 1.x
//!   issued it: its proxy URL on the Rancher server and the API key as bearer token
//!   ([`KubernetesAccess`]).
//! - [`Error`] tells apart [`Error::NotFound`], [`Error::Conflict`], [`Error::Unauthorized`],
//!   Rancher's error bodies ([`Error::Api`] with status, code and message), [`Error::Timeout`]
//!   and [`Error::Transport`].
//! - Secrets (the secret key, registry passwords, certificate keys) are held in [`Secret`],
//!   whose `Debug` is redacted, so neither the client, nor the resources, nor errors print
//!   them.
//!
//! # Running against the fake server
//!
//! With feature `testing`, `testing::FakeRancher` serves the same API in memory on
//! loopback, with Rancher's ids, collections, filters, lifecycles, authentication, validation
//! errors and load balancer placement on hosts, plus fault injection. Tests of code that uses
//! Rancher start one and hand its `url()` and keys to the code
//! under test:
//!
//! ```no_run
//! use rancher_client::testing::{FakeHost, FakeRancher};
//!
//! # async fn run() -> std::io::Result<()> {
//! let fake = FakeRancher::builder()
//!     .hosts([FakeHost::new("node-1", "192.0.2.11"), FakeHost::new("node-2", "192.0.2.12")])
//!     .start()
//!     .await?;
//! let client = fake.client();
//! fake.fail_next(1); // the next request gets a 500, which the client retries
//! # let _ = client; Ok(()) }
//! ```
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `testing` | no | `testing::FakeRancher`, the in-memory fake Rancher server (axum) |
//!
//! This crate has no Kubernetes dependency. It uses reqwest with rustls but picks no crypto
//! provider: install one (the workspace uses ring) before building a [`Client`].

mod api;
mod client;
pub mod error;
pub mod resource;
mod secret;
#[cfg(feature = "testing")]
pub mod testing;

pub use api::{Api, ListParams, WaitParams};
pub use client::{
    Client, Config, Credentials, ENV_ACCESS_KEY, ENV_SECRET_KEY, ENV_URL, RetryPolicy,
};
pub use error::{Error, Result};
pub use resource::{
    Certificate, Host, Identity, IpAddress, KubernetesAccess, LoadBalancerService, Project,
    ProjectMember, Registry, RegistryCredential, Resource, Scope, Setting, Stack,
};
pub use secret::Secret;

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
