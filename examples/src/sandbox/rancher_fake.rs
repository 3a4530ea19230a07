//! The Rancher path: `rancher-lb`'s Rancher driver against `rancher-client`'s
//! fake Rancher server, in process.
//!
//! The Rancher driver's `ensure` returns what Rancher reports at once and
//! [`RancherDriver::refresh`] publishes later changes of the load balancers it
//! is handed, so [`Refreshing`] remembers what was ensured and refreshes it
//! every second, the way a real deployment would poll Rancher.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;
use rancher_client::testing::{FakeHost, FakeRancher};
use rancher_lb::driver::{Driver, Result, Status, StatusUpdate};
use rancher_lb::model::{LbId, LoadBalancer};
use rancher_lb::rancher::{RancherConfig, RancherDriver};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

/// How often the Rancher view of every load balancer is read again.
const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// A [`RancherDriver`] that refreshes every load balancer it ensured.
pub(super) struct Refreshing {
    driver: RancherDriver,
    known: Mutex<BTreeMap<LbId, LoadBalancer>>,
}

impl Refreshing {
    /// Starts a fake Rancher with one host per address (label
    /// `io.rancher.host.zone` = `zones[i]`) and a driver on it, refreshed
    /// until `shutdown`.
    ///
    /// # Errors
    ///
    /// When the fake server cannot bind.
    pub(super) async fn start(
        hosts: &[(String, IpAddr, String)],
        shutdown: CancellationToken,
    ) -> std::io::Result<(Arc<Self>, FakeRancher)> {
        let fake = FakeRancher::builder()
            .hosts(hosts.iter().map(|(name, address, zone)| {
                FakeHost::new(name.clone(), address.to_string()).label(
                    rancher_cloudprovider::rancher::HOST_ZONE_LABEL,
                    zone.clone(),
                )
            }))
            .settle_delay(Duration::from_millis(200))
            .start()
            .await?;
        let driver = Arc::new(Self {
            driver: RancherDriver::new(fake.client(), RancherConfig::new()),
            known: Mutex::new(BTreeMap::new()),
        });
        let weak = Arc::downgrade(&driver);
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = tokio::time::sleep(REFRESH_EVERY) => {}
                    () = shutdown.cancelled() => return,
                }
                let Some(driver) = weak.upgrade() else { return };
                let lbs: Vec<LoadBalancer> = driver.known.lock().values().cloned().collect();
                if let Err(error) = driver.driver.refresh(&lbs).await {
                    tracing::warn!(
                        error = &error as &dyn std::error::Error,
                        "rancher refresh failed"
                    );
                }
            }
        });
        Ok((driver, fake))
    }
}

#[async_trait]
impl Driver for Refreshing {
    async fn ensure(&self, lb: &LoadBalancer) -> Result<Status> {
        let status = self.driver.ensure(lb).await?;
        self.known.lock().insert(lb.id().clone(), lb.clone());
        Ok(status)
    }

    async fn ensure_deleted(&self, id: &LbId) -> Result<()> {
        self.driver.ensure_deleted(id).await?;
        self.known.lock().remove(id);
        Ok(())
    }

    async fn status(&self, id: &LbId) -> Result<Option<Status>> {
        self.driver.status(id).await
    }

    async fn list(&self) -> Result<Vec<LbId>> {
        self.driver.list().await
    }

    fn subscribe(&self) -> broadcast::Receiver<StatusUpdate> {
        self.driver.subscribe()
    }
}
