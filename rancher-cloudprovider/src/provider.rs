//! The traits a cloud provider implements, mirroring `k8s.io/cloud-provider`.
//!
//! All inputs are read-only; every method may be called again at any time with the
//! same or newer input (after a restart, on a resync, on a retry), so each one is
//! written as an idempotent "make it so".

use std::sync::Arc;

use async_trait::async_trait;

use crate::{
    error::{Error, Result},
    model::{LoadBalancerStatus, Node, NodeAddress, Service, Zone},
};

/// A provider: the capabilities it has.
///
/// The controller calls only what a provider returns here; a provider without load
/// balancers returns `None` from [`Cloud::load_balancer`], and the node controller
/// is skipped without [`Cloud::instances`].
pub trait Cloud: Send + Sync + 'static {
    /// The provider's name, used as the `providerID` scheme (`<name>://<id>`).
    fn provider_name(&self) -> &str;

    /// The load balancer capability.
    fn load_balancer(&self) -> Option<Arc<dyn LoadBalancer>>;

    /// The instances capability.
    fn instances(&self) -> Option<Arc<dyn Instances>> {
        None
    }

    /// The zones capability.
    fn zones(&self) -> Option<Arc<dyn Zones>> {
        None
    }
}

/// Load balancers for `type: LoadBalancer` Services.
///
/// `cluster` is the cluster's name (`--cluster-name`), so one provider account can
/// serve several clusters without name clashes.
#[async_trait]
pub trait LoadBalancer: Send + Sync + 'static {
    /// Returns the status of the load balancer for `service` if it exists.
    ///
    /// `Some` only for a load balancer this provider created for this Service (by
    /// its name or UID); `Ok(None)` when there is none. Has no side effects.
    async fn get_load_balancer(
        &self,
        cluster: &str,
        service: &Service,
    ) -> Result<Option<LoadBalancerStatus>>;

    /// The name of the load balancer for `service`: stable for the Service's
    /// lifetime, unique per Service (derived from its UID), and valid as a name in
    /// the provider's API.
    fn load_balancer_name(&self, cluster: &str, service: &Service) -> String;

    /// Creates the load balancer for `service` if it does not exist, or brings an
    /// existing one in line with `service` and `nodes`; returns its status.
    ///
    /// Idempotent: calling it again with the same input changes nothing and
    /// returns the same status. `nodes` is the complete set of eligible backends.
    /// The controller has added its cleanup finalizer before the first call, so
    /// whatever this creates is deleted later through
    /// [`ensure_load_balancer_deleted`](Self::ensure_load_balancer_deleted).
    ///
    /// Must not block while the backend converges: return [`Error::Retry`] and the
    /// controller asks again after that delay. May return
    /// [`Error::ImplementedElsewhere`] when something else writes the status. An
    /// input the provider cannot serve gives [`Error::InvalidService`] naming the
    /// field, before anything is changed.
    async fn ensure_load_balancer(
        &self,
        cluster: &str,
        service: &Service,
        nodes: &[Node],
    ) -> Result<LoadBalancerStatus>;

    /// Points an existing load balancer at a new set of backends: `nodes` changed
    /// (or, for Services that target them, the endpoints in `service`).
    ///
    /// Idempotent, like [`ensure_load_balancer`](Self::ensure_load_balancer).
    /// The controller calls it only after a successful ensure, so the load
    /// balancer normally exists; when it does not, return `Ok(())` and the next
    /// ensure recreates it. May return [`Error::ImplementedElsewhere`].
    async fn update_load_balancer(
        &self,
        cluster: &str,
        service: &Service,
        nodes: &[Node],
    ) -> Result<()>;

    /// Deletes the load balancer for `service` if it exists.
    ///
    /// Returns `Ok(())` when nothing exists, so it is safe to call again, and
    /// returns `Ok` only once everything it created is gone: the controller removes
    /// its finalizer on `Ok`, after which nothing else would clean up. Must never
    /// return [`Error::ImplementedElsewhere`].
    async fn ensure_load_balancer_deleted(&self, cluster: &str, service: &Service) -> Result<()>;

    /// Names (as [`load_balancer_name`](Self::load_balancer_name) gives them) of
    /// load balancers whose status may have changed outside these calls, for
    /// example an instance that crashed or moved to another host. The controller
    /// then asks [`get_load_balancer`](Self::get_load_balancer) and writes the new
    /// status. Optional: `None` when the provider cannot tell.
    fn status_changes(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        None
    }
}

/// Instances behind nodes.
#[async_trait]
pub trait Instances: Send + Sync + 'static {
    /// The node's addresses, as the provider knows them.
    async fn node_addresses(&self, node: &Node) -> Result<Vec<NodeAddress>>;

    /// The node's provider ID, `<provider>://<instance id>`.
    async fn provider_id(&self, node: &Node) -> Result<String>;

    /// Whether an instance still exists for the node. `false` only when it truly
    /// does not exist (not when it is stopped).
    async fn instance_exists(&self, node: &Node) -> Result<bool>;

    /// Whether the node's instance is shut down. Optional.
    async fn instance_shutdown(&self, _node: &Node) -> Result<bool> {
        Err(Error::NotImplemented {
            what: "instance shutdown state",
        })
    }

    /// The node's instance type (the `node.kubernetes.io/instance-type` label).
    /// Optional.
    async fn instance_type(&self, _node: &Node) -> Result<String> {
        Err(Error::NotImplemented {
            what: "instance type",
        })
    }
}

/// Failure domains of nodes.
#[async_trait]
pub trait Zones: Send + Sync + 'static {
    /// The node's zone and region.
    async fn zone(&self, node: &Node) -> Result<Zone>;
}
