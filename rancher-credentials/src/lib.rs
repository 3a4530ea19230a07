//! A kubelet image credential provider (`credentialprovider.kubelet.k8s.io/v1`)
//! for private registries.
//!
//! # Overview
//!
//! The kubelet runs a credential provider plugin for each image that matches the
//! plugin's `matchImages`, writes one request on its stdin and reads one response
//! from its stdout. This crate is that plugin, as a library:
//!
//! - [`model`]: the [`Request`](model::Request) and
//!   [`Response`](model::Response) with their exact JSON, the
//!   [`CacheKeyType`](model::CacheKeyType), and credentials whose `Debug` output
//!   never shows a password.
//! - [`CredentialProvider`]: the trait a backend implements.
//! - [`exec::run`]: the exec protocol over any reader and writer, strict both
//!   ways, with a deadline.
//! - [`matching::matches`]: `matchImages` and `auth` key matching exactly as the
//!   kubelet does it, to test a configuration with.
//! - [`duration`]: Go duration strings, the form of `cacheDuration`.
//! - Providers in [`provider`]: Rancher's private registries (`RancherProvider`,
//!   feature `rancher`: every active registry with its own credential), a Docker
//!   `config.json` file
//!   ([`DockerConfigProvider`](provider::DockerConfigProvider)), a
//!   `kubernetes.io/dockerconfigjson` Secret (`SecretProvider`, feature `runtime`),
//!   and several of them asked in order
//!   ([`CompositeProvider`](provider::CompositeProvider)).
//!
//! # Implementing a backend
//!
//! A provider answers with credentials keyed by patterns that match the image:
//!
//! ```no_run
//! use std::time::Duration;
//! use async_trait::async_trait;
//! use rancher_credentials::{
//!     CredentialProvider,
//!     matching,
//!     model::{AuthConfig, CacheKeyType, Request, Response},
//!     provider::Result,
//! };
//!
//! /// One robot account for every registry under example.org.
//! struct Robot;
//!
//! #[async_trait]
//! impl CredentialProvider for Robot {
//!     async fn credentials(&self, request: &Request) -> Result<Response> {
//!         if !matching::matches_registry("*.example.org", &request.image) {
//!             return Ok(Response::empty());
//!         }
//!         Ok(Response::new(CacheKeyType::Registry)
//!             .with_cache_duration(Some(Duration::from_secs(600)))
//!             .with_auth(matching::registry(&request.image), AuthConfig::new("robot", "token")))
//!     }
//! }
//!
//! # async fn serve() {
//! // In the plugin's main: one request on stdin, one response on stdout.
//! if let Err(err) = rancher_credentials::exec::run(tokio::io::stdin(), tokio::io::stdout(), &Robot).await {
//!     eprintln!("{}", err.one_line());
//!     std::process::exit(err.exit_code().into());
//! }
//! # }
//! ```
//!
//! # Running the plugin
//!
//! The binary `rancher-credential-provider` in the `rancher-examples` package
//! flattens `cli::ProviderArgs` (feature `clap`): `--docker-config PATH`,
//! `--secret NAMESPACE/NAME`, `--rancher` (with `CATTLE_URL`, `CATTLE_ACCESS_KEY`,
//! `CATTLE_SECRET_KEY`), `--cache-duration` and `--timeout`. It runs one request
//! on a current-thread runtime and builds a Kubernetes or Rancher client only when
//! a flag asks for one. `deploy/credential-provider/` holds a
//! `CredentialProviderConfig` and the kubelet flags that install it:
//!
//! ```text
//! --image-credential-provider-config=/etc/kubernetes/credential-provider/config.yaml
//! --image-credential-provider-bin-dir=/usr/local/lib/kubelet/credential-provider
//! ```
//!
//! `cargo run --release -p rancher-credentials --example invocation_bench` measures one
//! invocation, process start to exit, per provider.
//!
//! # Feature flags
//!
//! | feature | default | what it adds |
//! | --- | --- | --- |
//! | `runtime` | yes | `provider::SecretProvider`: credentials from one `kubernetes.io/dockerconfigjson` Secret, read through `kube` |
//! | `clap` | no | `cli::ProviderArgs`: the plugin's flags (`--docker-config`, `--secret`, `--rancher`, `--cache-duration`, `--timeout`) as a clap argument group |
//! | `rancher` | yes | `provider::RancherProvider`: the credentials of every active registry of a Rancher project, through `rancher-client` |
//! | `testing` | no | [`testing::FakeProvider`] and the [`testing::conformance`] battery every provider can run |

#[cfg(feature = "clap")]
pub mod cli;
pub mod duration;
pub mod exec;
pub mod matching;
pub mod model;
pub mod provider;
#[cfg(feature = "testing")]
pub mod testing;

pub use provider::CredentialProvider;
