//! Cluster access from Rancher environments: token authentication and authorization
//! webhooks for kube-apiserver, local hashed tokens, and kubeconfigs for users.
//!
//! # Overview
//!
//! In Rancher 1.x each Kubernetes cluster was an environment whose members had a role
//! (owner, member, restricted, read-only); whoever could use the environment could use its
//! cluster. This crate does that the Kubernetes way:
//!
//! - [`identity`]: the [`UserInfo`] an authenticator produces, and the bearer [`Token`]
//!   (whose `Debug` never shows it).
//! - [`authn`]: the [`TokenAuthenticator`] trait (authenticated, unauthenticated with a
//!   reason, or an error meaning "cannot tell") and [`Union`](authn::Union), which asks
//!   several in order.
//! - [`authz`]: the [`Authorizer`] trait over request [`Attributes`],
//!   answering allow, deny or no opinion, each with a reason.
//! - [`roles`]: the role → permission table as data ([`RoleTable`]), overridable by a file.
//! - [`environment`]: environment roles as groups `rancher:environment:<id>:<role>`, and the
//!   [`EnvironmentAuthorizer`] that decides from them.
//! - [`local`]: `ACCESS:SECRET` tokens checked against salted hashes (kept in Secrets in a
//!   cluster), so `kubectl` keeps working while Rancher is down.
//! - [`cache`]: bounded caches with separate positive and negative TTLs and single flight
//!   ([`CachingAuthenticator`](cache::CachingAuthenticator)).
//! - `rancher` (feature `rancher`): `RancherAuthenticator`, which resolves a Rancher API key
//!   to a member of the environment the cluster is, as Rancher's own 2017 webhook did.
//! - [`kubeconfig`]: kubeconfigs for users ([`ClusterInfo`](kubeconfig::ClusterInfo)).
//! - `server` (feature `server`): the webhook server, `POST /authenticate`, `POST
//!   /authorize` and `GET /kubeconfig` over HTTPS, with certificates reloaded when their
//!   files change.
//! - [`review`]: the TokenReview and SubjectAccessReview wire formats
//!   (`authentication.k8s.io/v1` and `v1beta1`, `authorization.k8s.io/v1` and `v1beta1`),
//!   strict on input.
//!
//! Nothing above depends on Kubernetes client types: a backend author depends on the crate
//! with `default-features = false`.
//!
//! # Implementing a backend
//!
//! An authenticator for tokens kept somewhere else; a user of the crate plugs it into the
//! webhook server next to the others:
//!
//! ```no_run
//! use async_trait::async_trait;
//! use rancher_auth::{Authentication, Token, TokenAuthenticator, UserInfo, environment};
//!
//! /// Tokens from a vault of some kind.
//! struct Vault;
//!
//! #[async_trait]
//! impl TokenAuthenticator for Vault {
//!     async fn authenticate(&self, token: &Token) -> rancher_auth::Result<Authentication> {
//!         // A definite no is Ok(Unauthenticated); "the vault is down" is Err (fail closed).
//!         if token.expose() == "let-me-in" {
//!             let user = UserInfo::new("alice")
//!                 .with_group(environment::environment_group("1a5", "member"));
//!             return Ok(Authentication::Authenticated(user));
//!         }
//!         Ok(Authentication::unauthenticated("not a vault token"))
//!     }
//! }
//! ```
//!
//! Check it with the battery from the `testing` feature:
//! `rancher_auth::testing::authenticator_conformance(&Vault, &expectations).await`.
//!
//! # Running the webhook
//!
//! The binary `rancher-auth-webhook` (package `rancher-examples`) serves `POST /authenticate`
//! and `POST /authorize` over HTTPS for kube-apiserver, and `GET /kubeconfig` for users;
//! `deploy/rancher-auth/` holds the Deployment, the kube-apiserver configuration files and
//! the RBAC.
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `server` | yes | [`server`]: the HTTPS webhook server on axum and tokio-rustls (ring), with certificate reload and metrics |
//! | `rancher` | yes | [`rancher::RancherAuthenticator`]: Rancher API keys of an environment's members, through `rancher-client` |
//! | `runtime` | no | `local::secrets`: local tokens from labelled Secrets, watched through `kube` and `rancher-runtime` |
//! | `cli` | no | `cli`: the `rancher-auth-webhook` binary's flags (clap) and what they start |
//! | `testing` | no | [`testing`]: fake authenticator and authorizer, conformance batteries |

pub mod authn;
pub mod authz;
pub mod cache;
#[cfg(feature = "cli")]
pub mod cli;
pub mod environment;
pub mod error;
pub mod identity;
pub mod kubeconfig;
pub mod local;
#[cfg(feature = "rancher")]
pub mod rancher;
pub mod review;
pub mod roles;
#[cfg(feature = "server")]
pub mod server;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

pub use authn::{Authentication, TokenAuthenticator};
pub use authz::{Attributes, Authorizer, Decision, Verdict};
pub use environment::EnvironmentAuthorizer;
pub use error::{Error, Result};
pub use identity::{Token, UserInfo};
pub use roles::RoleTable;

/// The README's examples, compiled as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
