//! One driver, several controllers: [`Scoped`] shows a controller only the
//! status updates of the load balancers it ensured itself.
//!
//! The Ingress controller reconciles every load balancer whose status update
//! it hears about, and deletes those it does not want; on a driver shared
//! with the cloud controller it would delete the Services' load balancers.
//! Each controller therefore gets its own `Scoped` view of the shared driver.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use rancher_lb::driver::{Driver, Result, STATUS_CHANNEL_CAPACITY, Status, StatusUpdate};
use rancher_lb::model::{LbId, LoadBalancer};
use rancher_lb::placement::Host;
use tokio::sync::broadcast;

/// A view of a shared driver limited to the load balancers ensured through it.
pub(super) struct Scoped {
    inner: Arc<dyn Driver>,
    ids: Arc<Mutex<BTreeSet<LbId>>>,
}

impl Scoped {
    /// A view of `inner` that has ensured nothing yet.
    pub(super) fn new(inner: Arc<dyn Driver>) -> Self {
        Self {
            inner,
            ids: Arc::new(Mutex::new(BTreeSet::new())),
        }
    }
}

#[async_trait]
impl Driver for Scoped {
    async fn ensure(&self, lb: &LoadBalancer) -> Result<Status> {
        // Before the call: its updates may arrive while it runs.
        self.ids.lock().insert(lb.id().clone());
        self.inner.ensure(lb).await
    }

    async fn ensure_deleted(&self, id: &LbId) -> Result<()> {
        self.inner.ensure_deleted(id).await?;
        self.ids.lock().remove(id);
        Ok(())
    }

    async fn status(&self, id: &LbId) -> Result<Option<Status>> {
        self.inner.status(id).await
    }

    /// Only this view's load balancers: the shared driver's others belong to
    /// another controller.
    async fn list(&self) -> Result<Vec<LbId>> {
        let mine = self.ids.lock().clone();
        let mut all = self.inner.list().await?;
        all.retain(|id| mine.contains(id));
        Ok(all)
    }

    fn subscribe(&self) -> broadcast::Receiver<StatusUpdate> {
        let mut updates = self.inner.subscribe();
        let (tx, rx) = broadcast::channel(STATUS_CHANNEL_CAPACITY);
        let ids = self.ids.clone();
        tokio::spawn(async move {
            loop {
                match updates.recv().await {
                    Ok(update) => {
                        let ours = ids.lock().contains(&update.id);
                        if ours && tx.send(update).is_err() {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => return,
                }
            }
        });
        rx
    }

    async fn set_hosts(&self, hosts: Vec<Host>) -> Result<()> {
        self.inner.set_hosts(hosts).await
    }
}
