//! Command-line arguments for the federation controller (feature `clap`),
//! for binaries to flatten into their own.

use std::{net::SocketAddr, path::PathBuf, sync::Arc, time::Duration};

use crate::{
    controller::Config,
    model::DnsName,
    provider::{self, DnsProvider, Rfc2136Config, Rfc2136Provider, TsigKey},
};

/// Errors turning arguments into a controller configuration.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The TSIG secret file could not be read.
    #[error("reading the tsig secret file {path} failed")]
    SecretFile {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A value is invalid.
    #[error("--{flag}: {reason}")]
    Invalid {
        /// The flag.
        flag: &'static str,
        /// Why.
        reason: String,
    },
    /// The provider rejected its configuration.
    #[error(transparent)]
    Provider(#[from] provider::Error),
    /// `--rancher`: the Rancher client could not be configured (`CATTLE_URL`,
    /// `CATTLE_ACCESS_KEY`, `CATTLE_SECRET_KEY`).
    #[error("--rancher: configuring the rancher client failed")]
    Rancher(#[source] rancher_client::Error),
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The controller's settings.
#[derive(Clone, Debug, clap::Args)]
pub struct ControllerArgs {
    /// The namespace holding Federations, FederatedClusters and the members'
    /// credentials Secrets.
    #[arg(
        id = "federation_namespace",
        value_name = "NAMESPACE",
        long = "namespace",
        env = "FEDERATION_NAMESPACE",
        default_value = "federation-system"
    )]
    pub namespace: String,
    /// Seconds between health checks when a Federation does not say.
    #[arg(long, default_value_t = 10)]
    pub health_check_period: u64,
    /// Seconds a member may take to answer when a Federation does not say.
    #[arg(long, default_value_t = 5)]
    pub health_check_timeout: u64,
    /// Federations reconciled in parallel.
    #[arg(long, default_value_t = 2)]
    pub workers: usize,
    /// The primary DNS server taking RFC 2136 updates (`host:port`).
    #[arg(long, env = "RFC2136_SERVER")]
    pub rfc2136_server: SocketAddr,
    /// The zone to update.
    #[arg(long, env = "RFC2136_ZONE")]
    pub rfc2136_zone: String,
    /// The TSIG key name; unsigned updates without it.
    #[arg(long, env = "RFC2136_TSIG_KEY")]
    pub tsig_key: Option<String>,
    /// The TSIG algorithm.
    #[arg(long, env = "RFC2136_TSIG_ALGORITHM", default_value = "hmac-sha256")]
    pub tsig_algorithm: String,
    /// A file holding the base64 TSIG secret (a mounted Secret).
    #[arg(long, env = "RFC2136_TSIG_SECRET_FILE")]
    pub tsig_secret_file: Option<PathBuf>,
    /// Seconds one exchange with the DNS server may take.
    #[arg(long, default_value_t = 5)]
    pub rfc2136_timeout: u64,
    /// Also make every Rancher environment labelled
    /// `federation.rancher.io/name: <federation>` a member (and remove it when
    /// the label goes), reached through Rancher's Kubernetes proxy. Rancher is
    /// at `CATTLE_URL` with the account API key `CATTLE_ACCESS_KEY` /
    /// `CATTLE_SECRET_KEY` (an environment key sees only its own environment).
    #[arg(long)]
    pub rancher: bool,
}

impl ControllerArgs {
    /// The controller configuration; with `--rancher`, a Rancher client from
    /// `CATTLE_URL`, `CATTLE_ACCESS_KEY` and `CATTLE_SECRET_KEY` (a rustls
    /// crypto provider must be installed).
    pub fn config(&self) -> Result<Config> {
        let mut config = Config::new(self.namespace.clone());
        config.period = Duration::from_secs(self.health_check_period.max(1));
        config.timeout = Duration::from_secs(self.health_check_timeout.max(1));
        config.workers = self.workers.max(1);
        if self.rancher {
            config =
                config.with_rancher(rancher_client::Client::from_env().map_err(Error::Rancher)?);
        }
        Ok(config)
    }

    /// The RFC 2136 provider.
    pub fn provider(&self) -> Result<Arc<dyn DnsProvider>> {
        let zone = DnsName::new(&self.rfc2136_zone).map_err(|error| Error::Invalid {
            flag: "rfc2136-zone",
            reason: error.to_string(),
        })?;
        let key = match (&self.tsig_key, &self.tsig_secret_file) {
            (Some(name), Some(path)) => {
                let secret = std::fs::read_to_string(path).map_err(|source| Error::SecretFile {
                    path: path.clone(),
                    source,
                })?;
                Some(TsigKey::new(name, &self.tsig_algorithm, secret.trim())?)
            }
            (None, None) => None,
            _ => {
                return Err(Error::Invalid {
                    flag: "tsig-key",
                    reason: "--tsig-key and --tsig-secret-file go together".into(),
                });
            }
        };
        let mut config = Rfc2136Config::new(self.rfc2136_server, zone, key);
        config.timeout = Duration::from_secs(self.rfc2136_timeout.max(1));
        Ok(Arc::new(Rfc2136Provider::new(config)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ControllerArgs,
    }

    /// What the binary flattens: the flags must not collide.
    #[derive(Parser)]
    struct Binary {
        #[command(flatten)]
        client: rancher_runtime::client::ClientArgs,
        #[command(flatten)]
        federation: ControllerArgs,
        #[command(flatten)]
        leader: rancher_runtime::lease::LeaderArgs,
        #[command(flatten)]
        admin: rancher_runtime::admin::AdminArgs<9100>,
        #[command(flatten)]
        log: rancher_runtime::log::LogArgs,
    }

    #[test]
    fn flags_do_not_collide_with_the_runtime_flags() {
        use clap::CommandFactory;
        Binary::command().debug_assert();
        let binary = Binary::parse_from([
            "x",
            "--namespace",
            "feds",
            "--rfc2136-server",
            "127.0.0.1:53",
            "--rfc2136-zone",
            "example.org",
        ]);
        assert_eq!(binary.federation.config().unwrap().namespace, "feds");
    }

    #[test]
    fn a_key_needs_its_secret_file_and_the_file_is_read() {
        let cli = Cli::parse_from([
            "x",
            "--rfc2136-server",
            "127.0.0.1:53",
            "--rfc2136-zone",
            "example.org",
            "--tsig-key",
            "federation",
        ]);
        assert!(matches!(
            cli.args.provider(),
            Err(Error::Invalid {
                flag: "tsig-key",
                ..
            })
        ));

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret");
        std::fs::write(&file, "c2VjcmV0LXNlY3JldC1zZWNyZXQ=\n").unwrap();
        let cli = Cli::parse_from([
            "x",
            "--rfc2136-server",
            "127.0.0.1:53",
            "--rfc2136-zone",
            "example.org",
            "--tsig-key",
            "federation",
            "--tsig-secret-file",
            file.to_str().unwrap(),
            "--health-check-period",
            "3",
        ]);
        assert!(cli.args.provider().is_ok());
        assert_eq!(cli.args.config().unwrap().period, Duration::from_secs(3));
        assert_eq!(cli.args.config().unwrap().namespace, "federation-system");
    }
}
