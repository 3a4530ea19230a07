//! Command-line arguments of the Rancher cloud controller (feature `clap`), and
//! building the [`RancherCloud`] they describe.

use std::{net::IpAddr, path::PathBuf, sync::Arc};

use rancher_lb::{
    driver::Driver,
    haproxy::{HaproxyConfig, HaproxyDriver},
    placement::Host,
    rancher::{RancherConfig, RancherDriver},
};

use super::{NodeLabelInstances, RancherCloud, RancherHosts, RancherLoadBalancer};
use crate::controller::Config;

/// Errors building the cloud from arguments.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `--driver haproxy` without `--hosts`.
    #[error("--driver haproxy needs --hosts: the addresses HAProxy instances bind")]
    NoHosts,
    /// The HAProxy driver could not start.
    #[error("starting the haproxy driver failed")]
    Haproxy(#[source] rancher_lb::haproxy::Error),
    /// The Rancher client could not be configured (`CATTLE_URL`, keys).
    #[error("configuring the rancher client failed")]
    Rancher(#[source] rancher_client::Error),
}

/// Result of building the cloud.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Which `rancher-lb` driver makes load balancers real.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum DriverKind {
    /// HAProxy processes on the `--hosts` addresses of this machine.
    Haproxy,
    /// Rancher `loadBalancerService`s through the API at `$CATTLE_URL`.
    Rancher,
}

/// Arguments of the Rancher cloud controller.
#[derive(Clone, Debug, clap::Args)]
pub struct RancherArgs {
    /// The load balancer driver.
    #[arg(long, value_enum, default_value = "haproxy")]
    pub driver: DriverKind,

    /// Host addresses HAProxy instances bind (`--driver haproxy`), comma-separated.
    #[arg(long, value_delimiter = ',', value_name = "IP,...")]
    pub hosts: Vec<IpAddr>,

    /// Where the HAProxy driver keeps configurations and sockets.
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/var/lib/rancher-cloud-controller-manager"
    )]
    pub work_dir: PathBuf,

    /// The `haproxy` binary (default: from `PATH`).
    #[arg(long, value_name = "PATH")]
    pub haproxy_binary: Option<PathBuf>,

    /// The Rancher stack holding the load balancers (`--driver rancher`).
    #[arg(long, value_name = "NAME", default_value = rancher_lb::rancher::DEFAULT_STACK)]
    pub rancher_stack: String,

    /// The cluster name passed to the provider (part of load balancer names).
    #[arg(long, value_name = "NAME", default_value = "kubernetes")]
    pub cluster_name: String,

    /// Also serve Services with this `spec.loadBalancerClass`.
    #[arg(long, value_name = "CLASS")]
    pub load_balancer_class: Option<String>,

    /// Services reconciled concurrently.
    #[arg(long, value_name = "N", default_value_t = 4)]
    pub concurrent_service_syncs: usize,
}

/// A built cloud, plus the HAProxy driver to shut down on exit.
pub struct Built {
    /// The cloud for the controller.
    pub cloud: Arc<RancherCloud>,
    /// The controller settings from the arguments.
    pub config: Config,
    /// The HAProxy driver, when that is the driver.
    pub haproxy: Option<Arc<HaproxyDriver>>,
}

impl std::fmt::Debug for Built {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Built")
            .field("cloud", &self.cloud)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

fn rancher_configured() -> bool {
    std::env::var_os("CATTLE_URL").is_some_and(|url| !url.is_empty())
}

impl RancherArgs {
    /// Builds the cloud: the chosen driver, instances and zones from Rancher hosts
    /// when `CATTLE_URL` is set, else from node labels.
    pub async fn build(&self) -> Result<Built> {
        let config = Config::default()
            .with_cluster_name(self.cluster_name.clone())
            .with_load_balancer_class(self.load_balancer_class.clone())
            .with_workers(self.concurrent_service_syncs);
        let rancher = if self.driver == DriverKind::Rancher || rancher_configured() {
            Some(rancher_client::Client::from_env().map_err(Error::Rancher)?)
        } else {
            None
        };
        let (lb, haproxy) = match self.driver {
            DriverKind::Haproxy => {
                if self.hosts.is_empty() {
                    return Err(Error::NoHosts);
                }
                let hosts = self.hosts.iter().copied().map(Host::new).collect();
                let mut haproxy = HaproxyConfig::new(&self.work_dir, hosts);
                if let Some(binary) = &self.haproxy_binary {
                    haproxy = haproxy.with_binary(binary);
                }
                let driver = Arc::new(HaproxyDriver::new(haproxy).await.map_err(Error::Haproxy)?);
                let lb = RancherLoadBalancer::new(driver.clone() as Arc<dyn Driver>)
                    .with_hosts(self.hosts.iter().copied());
                (lb, Some(driver))
            }
            DriverKind::Rancher => {
                let client = match &rancher {
                    Some(client) => client.clone(),
                    None => rancher_client::Client::from_env().map_err(Error::Rancher)?,
                };
                let driver = RancherDriver::new(
                    client,
                    RancherConfig::new().with_stack(self.rancher_stack.clone()),
                );
                (RancherLoadBalancer::new(Arc::new(driver)), None)
            }
        };
        let cloud = match rancher {
            Some(client) => RancherCloud::new(lb).with_instances(RancherHosts::new(client)),
            None => RancherCloud::new(lb).with_instances(NodeLabelInstances),
        };
        Ok(Built {
            cloud: Arc::new(cloud),
            config,
            haproxy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        rancher: RancherArgs,
    }

    fn parse(args: &[&str]) -> RancherArgs {
        Cli::try_parse_from(std::iter::once("ccm").chain(args.iter().copied()))
            .unwrap()
            .rancher
    }

    #[tokio::test]
    async fn haproxy_needs_hosts_and_builds_with_them() {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().to_str().unwrap();
        let error = parse(&["--work-dir", dir]).build().await.unwrap_err();
        assert!(matches!(error, Error::NoHosts), "{error}");

        let args = parse(&[
            "--work-dir",
            dir,
            "--hosts",
            "127.0.95.1,127.0.95.2",
            "--load-balancer-class",
            "example.org/lb",
            "--concurrent-service-syncs",
            "8",
        ]);
        assert_eq!(args.hosts.len(), 2);
        let built = args.build().await.unwrap();
        assert!(built.haproxy.is_some());
        assert_eq!(
            built.config.load_balancer_class.as_deref(),
            Some("example.org/lb")
        );
        assert_eq!(built.config.workers, 8);
        use crate::Cloud;
        assert_eq!(built.cloud.provider_name(), "rancher");
        assert!(
            built.cloud.instances().is_some(),
            "node labels without Rancher"
        );
        if let Some(haproxy) = built.haproxy {
            haproxy.shutdown().await;
        }
    }

    #[test]
    fn unknown_driver_is_rejected() {
        assert!(Cli::try_parse_from(["ccm", "--driver", "nginx"]).is_err());
        assert_eq!(parse(&["--driver", "rancher"]).driver, DriverKind::Rancher);
    }
}
