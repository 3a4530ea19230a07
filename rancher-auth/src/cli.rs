//! The `rancher-auth-webhook` binary's flags, and what they start (feature `cli`).
//!
//! - [`WebhookArgs::start`]: the webhook server as the flags describe it.
//! - [`KubeconfigArgs::run`]: `rancher-auth-webhook kubeconfig`, a kubeconfig for the
//!   caller's Rancher key (`CATTLE_ACCESS_KEY`, `CATTLE_SECRET_KEY`) once Rancher confirms
//!   the key belongs to a member of the environment.
//! - [`LocalTokenArgs::run`]: `rancher-auth-webhook local-token`, a fresh local token and
//!   the Secret that holds its hash.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::registry::Registry;
use rancher_runtime::client::ClientArgs;
use rancher_runtime::ready::Readiness;
use rancher_runtime::shutdown::Shutdown;

use crate::authn::{Authentication, TokenAuthenticator, Union};
use crate::cache::{CacheConfig, CachingAuthenticator};
use crate::environment::EnvironmentAuthorizer;
use crate::identity::{Token, UserInfo};
use crate::kubeconfig::ClusterInfo;
use crate::local::{LocalAuthenticator, LocalToken, LocalTokens, TOKEN_LABEL};
use crate::rancher::{RancherAuthenticator, RancherConfig, credentials_of};
use crate::roles::RoleTable;
use crate::server::tls::{ReloadingCert, TlsFiles};
use crate::server::{Metrics, Webhook, WebhookConfig};

/// The admin server's default port (`--admin`) for `rancher-auth-webhook`.
pub const ADMIN_PORT: u16 = 9992;

/// Why the webhook, or a subcommand, could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// A flag or environment variable is missing or wrong.
    #[error("{0}")]
    Config(String),
    /// A file named by a flag could not be read.
    #[error("reading {flag} {path} failed")]
    Read {
        /// The flag.
        flag: &'static str,
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The role file is not valid.
    #[error(transparent)]
    Roles(#[from] crate::roles::RoleError),
    /// The serving certificate cannot be used.
    #[error(transparent)]
    Tls(#[from] crate::server::tls::TlsError),
    /// The listening socket could not be bound.
    #[error(transparent)]
    Bind(#[from] rancher_runtime::listen::BindError),
    /// The Rancher client could not be built.
    #[error("configuring the Rancher client failed")]
    Rancher(#[source] rancher_client::Error),
    /// The Kubernetes client could not be built.
    #[error("configuring the Kubernetes client failed")]
    Kubernetes(#[source] rancher_runtime::client::Error),
    /// Rancher could not judge the key.
    #[error("checking the Rancher key failed")]
    Check(#[source] crate::Error),
    /// Rancher refused the key.
    #[error("{0}")]
    Refused(String),
}

fn duration(text: &str) -> Result<Duration, String> {
    rancher_runtime::duration::parse(text).map_err(|e| e.to_string())
}

fn read(flag: &'static str, path: &PathBuf) -> Result<String, CliError> {
    std::fs::read_to_string(path).map_err(|source| CliError::Read {
        flag,
        path: path.clone(),
        source,
    })
}

/// The webhook server's flags.
#[derive(Clone, Debug, clap::Args)]
pub struct WebhookArgs {
    /// The Rancher environment (project) id this cluster stands for; defaults to the project
    /// in CATTLE_URL.
    #[arg(long, value_name = "ID")]
    pub environment: Option<String>,
    /// Where to serve POST /authenticate, POST /authorize and GET /kubeconfig (HTTPS).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:8443")]
    pub listen: SocketAddr,
    /// The serving certificate (PEM chain); reloaded when it changes.
    #[arg(long, value_name = "FILE", required = true)]
    pub tls_cert_file: Option<PathBuf>,
    /// The serving key (PEM); reloaded when it changes.
    #[arg(long, value_name = "FILE", required = true)]
    pub tls_private_key_file: Option<PathBuf>,
    /// How often the certificate and key files are checked for changes.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = duration)]
    pub tls_reload_interval: Duration,
    /// A role table file (YAML) whose roles replace or add to the default table.
    #[arg(long, value_name = "FILE")]
    pub roles: Option<PathBuf>,
    /// Serve local tokens from the Secrets labelled auth.rancher.io/token=true in this
    /// namespace (read with --kubeconfig or the in-cluster service account).
    #[arg(long, value_name = "NAMESPACE")]
    pub token_namespace: Option<String>,
    /// How long an authenticated token is remembered (a removed member keeps access this
    /// long, plus kube-apiserver's own cache).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration)]
    pub cache_ttl: Duration,
    /// How long a refused token is remembered.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration)]
    pub negative_cache_ttl: Duration,
    /// At most this many tokens are remembered.
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub cache_size: usize,
    /// How long one Rancher lookup (identities, then members) may take.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = duration)]
    pub rancher_timeout: Duration,
    /// How long one webhook answer may take before it is a 503.
    #[arg(long, value_name = "DURATION", default_value = "3s", value_parser = duration)]
    pub timeout: Duration,
    /// The API server URL put in the kubeconfigs GET /kubeconfig hands out; without it the
    /// endpoint is off.
    #[arg(long, value_name = "URL")]
    pub cluster_server: Option<String>,
    /// The API server's CA (PEM), embedded in those kubeconfigs.
    #[arg(long, value_name = "FILE")]
    pub cluster_ca: Option<PathBuf>,
    /// The cluster, user and context name in those kubeconfigs (default `rancher-<environment>`).
    #[arg(long, value_name = "NAME")]
    pub cluster_name: Option<String>,
}

/// A started webhook.
#[derive(Debug)]
pub struct Started {
    /// The address it serves on.
    pub addr: SocketAddr,
    /// The environment it answers for.
    pub environment: String,
}

impl WebhookArgs {
    /// Starts the webhook: authenticators (local tokens first, then Rancher), the cache, the
    /// authorizer, the HTTPS server and the certificate reloads, all tracked by `shutdown`.
    /// Metrics go into `registry`; `readiness` waits for the local tokens' first list.
    pub async fn start(
        &self,
        client: &ClientArgs,
        registry: &mut Registry,
        readiness: &Readiness,
        shutdown: &Shutdown,
    ) -> Result<Started, CliError> {
        let rancher = match std::env::var_os(rancher_client::ENV_URL) {
            Some(_) => Some(rancher_client::Client::from_env().map_err(CliError::Rancher)?),
            None => None,
        };
        let environment = self
            .environment
            .clone()
            .or_else(|| {
                rancher
                    .as_ref()
                    .and_then(|c| c.project_id().map(str::to_owned))
            })
            .ok_or_else(|| {
                CliError::Config(
                    "--environment is required (or a CATTLE_URL naming a project)".into(),
                )
            })?;
        let mut table = RoleTable::default();
        if let Some(path) = &self.roles {
            let text = read("--roles", path)?;
            table = table.with_overrides(RoleTable::from_yaml(&text, &path.display().to_string())?);
        }
        // Local files first, so a bad one is reported before anything is contacted.
        let (Some(cert), Some(key)) = (&self.tls_cert_file, &self.tls_private_key_file) else {
            return Err(CliError::Config(
                "--tls-cert-file and --tls-private-key-file are required".into(),
            ));
        };
        let tls = ReloadingCert::load(TlsFiles::new(cert, key))?;
        let mut union = Union::new();
        if let Some(namespace) = &self.token_namespace {
            let kube = client.client().await.map_err(CliError::Kubernetes)?;
            let tokens = Arc::new(LocalTokens::new());
            let ready = readiness.register("local tokens");
            let (namespace, watched) = (namespace.clone(), tokens.clone());
            let token = shutdown.token();
            shutdown.spawn(async move {
                tokio::select! {
                    () = crate::local::secrets::watch(kube, &namespace, watched, Some(ready)) => {}
                    () = token.cancelled() => {}
                }
            });
            union = union.with(Arc::new(LocalAuthenticator::new(tokens)));
        }
        match rancher {
            Some(rancher) => {
                let config = RancherConfig::new(environment.clone()).timeout(self.rancher_timeout);
                union = union.with(Arc::new(RancherAuthenticator::new(rancher, config)));
            }
            None if self.token_namespace.is_none() => {
                return Err(CliError::Config(
                    "nothing to authenticate with: set CATTLE_URL (Rancher keys) or --token-namespace (local tokens)".into(),
                ));
            }
            None => tracing::warn!("CATTLE_URL is not set: only local tokens are accepted"),
        }
        let cache = CachingAuthenticator::new(
            Arc::new(union),
            CacheConfig {
                positive_ttl: self.cache_ttl,
                negative_ttl: self.negative_cache_ttl,
                capacity: self.cache_size,
            },
        );
        let cluster = match &self.cluster_server {
            Some(server) => {
                let name = self
                    .cluster_name
                    .clone()
                    .unwrap_or_else(|| format!("rancher-{environment}"));
                let mut info = ClusterInfo::new(name, server.clone());
                if let Some(ca) = &self.cluster_ca {
                    info = info.with_certificate_authority(read("--cluster-ca", ca)?);
                }
                Some(info)
            }
            None => None,
        };
        let metrics = Metrics::register(registry);
        let tls_config = tls
            .server_config()
            .map_err(|e| CliError::Config(format!("TLS: {e}")))?;
        let reloads = metrics.clone();
        shutdown.spawn(
            tls.watch(self.tls_reload_interval, shutdown.token(), move |result| {
                reloads.certificate_reloaded(result.is_ok());
            }),
        );
        let webhook = Webhook::new(
            Arc::new(cache),
            Arc::new(EnvironmentAuthorizer::new(environment.clone(), table)),
            WebhookConfig {
                timeout: self.timeout,
                cluster,
            },
            metrics,
        );
        let listener =
            rancher_runtime::listen::tcp("webhook server", self.listen, Some("--listen")).await?;
        let addr = listener.local_addr().map_err(|source| {
            rancher_runtime::listen::BindError::new(
                "webhook server",
                self.listen,
                Some("--listen"),
                source,
            )
        })?;
        shutdown.spawn(crate::server::tls::serve(
            listener,
            Arc::new(tls_config),
            webhook.router(),
            shutdown.token(),
        ));
        tracing::info!(%addr, %environment, "webhook serving");
        Ok(Started { addr, environment })
    }
}

/// `rancher-auth-webhook kubeconfig`: a kubeconfig for the caller's Rancher key.
#[derive(Clone, Debug, clap::Args)]
pub struct KubeconfigArgs {
    /// The Rancher environment (project) id of the cluster.
    #[arg(long, value_name = "ID")]
    pub environment: String,
    /// The cluster's API server URL.
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// The API server's CA (PEM), embedded in the kubeconfig.
    #[arg(long, value_name = "FILE")]
    pub certificate_authority: Option<PathBuf>,
    /// The cluster, user and context name (default `rancher-<environment>`).
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// How long the check with Rancher may take.
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = duration)]
    pub timeout: Duration,
}

impl KubeconfigArgs {
    /// Checks the key in `CATTLE_ACCESS_KEY`/`CATTLE_SECRET_KEY` with the Rancher at
    /// `CATTLE_URL` (it must belong to a member of the environment) and returns the
    /// kubeconfig (YAML), whose token is that key.
    pub async fn run(&self) -> Result<String, CliError> {
        let config = rancher_client::Config::from_env().map_err(CliError::Rancher)?;
        let key = config.credentials.clone().ok_or_else(|| {
            CliError::Config(format!(
                "{} and {} must hold your Rancher API key",
                rancher_client::ENV_ACCESS_KEY,
                rancher_client::ENV_SECRET_KEY
            ))
        })?;
        let token = Token::new(format!("{}:{}", key.access_key, key.secret_key.expose()));
        if credentials_of(&token).is_none() {
            return Err(CliError::Config(
                "the Rancher API key holds characters a key does not have".into(),
            ));
        }
        let client = rancher_client::Client::new(config).map_err(CliError::Rancher)?;
        let authn = RancherAuthenticator::new(
            client,
            RancherConfig::new(self.environment.clone()).timeout(self.timeout),
        );
        match authn.authenticate(&token).await.map_err(CliError::Check)? {
            Authentication::Authenticated(_) => {}
            Authentication::Unauthenticated { reason } => return Err(CliError::Refused(reason)),
        }
        let name = self
            .name
            .clone()
            .unwrap_or_else(|| format!("rancher-{}", self.environment));
        let mut info = ClusterInfo::new(name, self.server.clone());
        if let Some(ca) = &self.certificate_authority {
            info = info.with_certificate_authority(read("--certificate-authority", ca)?);
        }
        Ok(info.kubeconfig(&token))
    }
}

/// `rancher-auth-webhook local-token`: a new local token and the Secret for it.
#[derive(Clone, Debug, clap::Args)]
pub struct LocalTokenArgs {
    /// The Kubernetes user name the token authenticates as.
    #[arg(long, value_name = "NAME")]
    pub username: String,
    /// A group (repeatable), e.g. rancher:environment:1a5:member.
    #[arg(long = "group", value_name = "GROUP")]
    pub groups: Vec<String>,
    /// The Secret's namespace (the webhook's --token-namespace).
    #[arg(long, value_name = "NAMESPACE", default_value = "rancher-auth")]
    pub namespace: String,
    /// The token stops working this long from now (default: never).
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    pub expires_in: Option<Duration>,
}

impl LocalTokenArgs {
    /// The Secret manifest (YAML) holding the new token's hash, and the token itself.
    pub fn run(&self) -> Result<(String, Token), CliError> {
        let user = UserInfo::new(self.username.clone()).with_groups(self.groups.iter().cloned());
        let (token, mut entry) = LocalToken::generate(user)
            .map_err(|_| CliError::Config("no secure random numbers available".into()))?;
        if let Some(after) = self.expires_in {
            entry = entry.expiring_at(std::time::SystemTime::now() + after);
        }
        // Check it the way the webhook will read it.
        let data = entry.to_secret_data();
        let bytes = data
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into_bytes()))
            .collect();
        LocalToken::from_secret_data("the new token", &bytes)
            .map_err(|e| CliError::Config(e.to_string()))?;
        let secret = serde_json::json!({
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {
                "name": format!("{}-{}", self.username.replace(|c: char| !c.is_ascii_alphanumeric(), "-").to_ascii_lowercase(), entry.access_key),
                "namespace": self.namespace,
                "labels": {TOKEN_LABEL: "true"},
            },
            "type": "Opaque",
            "stringData": data,
        });
        let yaml = serde_saphyr::to_string(&secret)
            .map_err(|e| CliError::Config(format!("rendering the Secret failed: {e}")))?;
        Ok((yaml, token))
    }
}
