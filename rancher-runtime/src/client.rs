//! Building a [`kube::Client`] from a kubeconfig file, a context, or the in-cluster
//! service account.

use std::path::PathBuf;

use kube::config::{Config, KubeConfigOptions, Kubeconfig};

/// Errors from building a client.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The kubeconfig file could not be read or parsed.
    #[error("failed to load kubeconfig {path}")]
    Kubeconfig {
        /// The file that was read.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: kube::config::KubeconfigError,
    },
    /// No kubeconfig was found and the process is not running in a cluster.
    #[error("failed to infer a Kubernetes configuration (no kubeconfig, not in a cluster)")]
    Infer(#[source] kube::config::InferConfigError),
    /// The configuration was loaded but the client could not be built from it.
    #[error("failed to build the Kubernetes client")]
    Build(#[source] kube::Error),
}

/// Result of client construction.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Where the Kubernetes API is and how to reach it.
///
/// With no kubeconfig path the usual inference applies: `$KUBECONFIG`, then
/// `~/.kube/config`, then the in-cluster service account.
#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct ClientArgs {
    /// Path to a kubeconfig file. Defaults to `$KUBECONFIG`, `~/.kube/config`, then in-cluster.
    #[cfg_attr(feature = "clap", arg(long, value_name = "PATH"))]
    pub kubeconfig: Option<PathBuf>,

    /// The kubeconfig context to use instead of its current context.
    #[cfg_attr(feature = "clap", arg(long, value_name = "NAME"))]
    pub context: Option<String>,

    /// The kubeconfig cluster to use instead of the context's.
    #[cfg_attr(feature = "clap", arg(long, value_name = "NAME"))]
    pub cluster: Option<String>,

    /// The kubeconfig user to use instead of the context's.
    #[cfg_attr(feature = "clap", arg(long, value_name = "NAME"))]
    pub user: Option<String>,
}

impl ClientArgs {
    /// Arguments for a kubeconfig file at `path`, using its current context.
    pub fn kubeconfig(path: impl Into<PathBuf>) -> Self {
        Self {
            kubeconfig: Some(path.into()),
            ..Self::default()
        }
    }

    /// Loads the client configuration these arguments describe.
    pub async fn config(&self) -> Result<Config> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            cluster: self.cluster.clone(),
            user: self.user.clone(),
        };
        match &self.kubeconfig {
            Some(path) => {
                let kubeconfig =
                    Kubeconfig::read_from(path).map_err(|source| Error::Kubeconfig {
                        path: path.clone(),
                        source,
                    })?;
                Config::from_custom_kubeconfig(kubeconfig, &options)
                    .await
                    .map_err(|source| Error::Kubeconfig {
                        path: path.clone(),
                        source,
                    })
            }
            None if options.context.is_some()
                || options.cluster.is_some()
                || options.user.is_some() =>
            {
                Config::from_kubeconfig(&options)
                    .await
                    .map_err(|source| Error::Kubeconfig {
                        path: PathBuf::from("$KUBECONFIG"),
                        source,
                    })
            }
            None => Config::infer().await.map_err(Error::Infer),
        }
    }

    /// Builds a client. Call [`install_crypto_provider`](crate::install_crypto_provider)
    /// first.
    pub async fn client(&self) -> Result<kube::Client> {
        let config = self.config().await?;
        kube::Client::try_from(config).map_err(Error::Build)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn kubeconfig_path_and_context_select_the_server() {
        crate::install_crypto_provider();
        let dir = std::env::temp_dir().join(format!("rr-kubeconfig-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("config");
        std::fs::write(
            &path,
            r#"apiVersion: v1
kind: Config
clusters:
- name: one
  cluster: {server: "http://127.0.0.1:1111"}
- name: two
  cluster: {server: "http://127.0.0.1:2222"}
users:
- name: u
  user: {}
contexts:
- name: one
  context: {cluster: one, user: u, namespace: a}
- name: two
  context: {cluster: two, user: u, namespace: b}
current-context: one
"#,
        )
        .unwrap();

        let current = ClientArgs::kubeconfig(&path).config().await.unwrap();
        assert_eq!(current.cluster_url.to_string(), "http://127.0.0.1:1111/");
        assert_eq!(current.default_namespace, "a");

        let other = ClientArgs {
            context: Some("two".into()),
            ..ClientArgs::kubeconfig(&path)
        };
        let config = other.config().await.unwrap();
        assert_eq!(config.cluster_url.to_string(), "http://127.0.0.1:2222/");
        assert_eq!(config.default_namespace, "b");
        other.client().await.unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn a_missing_kubeconfig_names_the_file() {
        let err = ClientArgs::kubeconfig("/nonexistent/kubeconfig")
            .config()
            .await
            .unwrap_err();
        assert!(err.to_string().contains("/nonexistent/kubeconfig"), "{err}");
    }
}
