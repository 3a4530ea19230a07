//! Command-line flags that choose the providers of the plugin binary.

use std::{path::PathBuf, sync::Arc, time::Duration};

use crate::{
    duration,
    exec::DEFAULT_TIMEOUT,
    provider::{CompositeProvider, DockerConfigConfig, DockerConfigProvider},
};

/// The providers could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No provider flag was given.
    #[error("no provider chosen: give --docker-config PATH, --secret NAMESPACE/NAME or --rancher")]
    NoProvider,
    /// The Kubernetes client for `--secret` could not be built.
    #[cfg(feature = "runtime")]
    #[error("failed to build the Kubernetes client for --secret")]
    Kubernetes(#[source] rancher_runtime::client::Error),
    /// The Rancher client for `--rancher` could not be built.
    #[cfg(feature = "rancher")]
    #[error("failed to build the Rancher client for --rancher")]
    Rancher(#[source] rancher_client::Error),
}

/// Result of setting up the providers.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which providers answer, in this order: every `--docker-config` file, every
/// `--secret`, then Rancher (`--rancher`). The first with a credential for the
/// image wins.
#[derive(Clone, Debug, clap::Args)]
pub struct ProviderArgs {
    /// A Docker config.json whose `auths` hold credentials; repeatable.
    #[arg(long = "docker-config", value_name = "PATH")]
    pub docker_config: Vec<PathBuf>,

    /// A `kubernetes.io/dockerconfigjson` Secret to read; repeatable.
    #[cfg(feature = "runtime")]
    #[arg(long = "secret", value_name = "NAMESPACE/NAME")]
    pub secret: Vec<crate::provider::SecretRef>,

    /// Answer with the registry credentials of the Rancher project at
    /// CATTLE_URL (keys in CATTLE_ACCESS_KEY and CATTLE_SECRET_KEY).
    #[cfg(feature = "rancher")]
    #[arg(long)]
    pub rancher: bool,

    /// The cacheDuration to answer with (a Go duration: 30s, 5m, 1h). Without
    /// it the kubelet's defaultCacheDuration applies.
    #[arg(long = "cache-duration", value_name = "DURATION", value_parser = duration::parse)]
    pub cache_duration: Option<Duration>,

    /// Give up on a request after this long (the kubelet kills the plugin after 1m).
    #[arg(long, value_name = "DURATION", value_parser = duration::parse, default_value = "50s")]
    pub timeout: Duration,

    /// Kubernetes client settings, used only with --secret.
    #[cfg(feature = "runtime")]
    #[command(flatten)]
    pub client: rancher_runtime::client::ClientArgs,
}

impl Default for ProviderArgs {
    fn default() -> Self {
        Self {
            docker_config: Vec::new(),
            #[cfg(feature = "runtime")]
            secret: Vec::new(),
            #[cfg(feature = "rancher")]
            rancher: false,
            cache_duration: None,
            timeout: DEFAULT_TIMEOUT,
            #[cfg(feature = "runtime")]
            client: rancher_runtime::client::ClientArgs::default(),
        }
    }
}

impl ProviderArgs {
    /// Builds the chosen providers. A Kubernetes client is built only for
    /// `--secret`, and a Rancher client only for `--rancher`, so a file-only plugin
    /// starts without either.
    pub async fn provider(&self) -> Result<CompositeProvider> {
        let mut composite = CompositeProvider::new();
        for path in &self.docker_config {
            composite.push(Arc::new(DockerConfigProvider::new(DockerConfigConfig {
                cache_duration: self.cache_duration,
                ..DockerConfigConfig::new(path)
            })));
        }
        #[cfg(feature = "runtime")]
        if !self.secret.is_empty() {
            use crate::provider::{SecretConfig, SecretProvider};
            let client = self.client.client().await.map_err(Error::Kubernetes)?;
            for secret in &self.secret {
                composite.push(Arc::new(SecretProvider::new(
                    client.clone(),
                    SecretConfig {
                        cache_duration: self.cache_duration,
                        ..SecretConfig::new(secret.clone())
                    },
                )));
            }
        }
        #[cfg(feature = "rancher")]
        if self.rancher {
            use crate::provider::{RancherConfig, RancherProvider};
            let config = rancher_client::Config::from_env().map_err(Error::Rancher)?;
            // One attempt never outlives the whole request.
            let timeout = config.timeout.min(self.timeout);
            let client =
                rancher_client::Client::new(config.timeout(timeout)).map_err(Error::Rancher)?;
            composite.push(Arc::new(RancherProvider::new(
                client,
                RancherConfig::default().cache_duration(self.cache_duration),
            )));
        }
        if composite.is_empty() {
            return Err(Error::NoProvider);
        }
        Ok(composite)
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        providers: ProviderArgs,
    }

    #[test]
    fn parses_go_durations_and_repeated_flags() {
        let cli = Cli::try_parse_from([
            "plugin",
            "--docker-config",
            "/a.json",
            "--docker-config",
            "/b.json",
            "--cache-duration",
            "1h30m",
            "--timeout",
            "10s",
        ])
        .unwrap();
        assert_eq!(cli.providers.docker_config.len(), 2);
        assert_eq!(
            cli.providers.cache_duration,
            Some(Duration::from_secs(5400))
        );
        assert_eq!(cli.providers.timeout, Duration::from_secs(10));
        let err = Cli::try_parse_from(["plugin", "--cache-duration", "300"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("missing unit"), "{err}");
    }

    #[tokio::test]
    async fn no_provider_is_an_error() {
        let err = ProviderArgs::default().provider().await.unwrap_err();
        assert!(matches!(err, Error::NoProvider));
    }
}
