//! Well-known strings: finalizer, labels, taints, annotations and event reasons.

/// The finalizer the service controller puts on every Service it creates a load
/// balancer for, before creating it; removed only once the load balancer is gone.
pub const LOAD_BALANCER_CLEANUP_FINALIZER: &str = "service.kubernetes.io/load-balancer-cleanup";

/// A node carrying this label (any value) is never a load balancer backend.
pub const EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS: &str =
    "node.kubernetes.io/exclude-from-external-load-balancers";

/// The cluster autoscaler's taint on a node it is about to remove; such nodes are
/// not load balancer backends.
pub const TO_BE_DELETED_BY_CLUSTER_AUTOSCALER: &str = "ToBeDeletedByClusterAutoscaler";

/// The node label carrying the zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// The node label carrying the region.
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";

/// The node label carrying the instance type.
pub const INSTANCE_TYPE_LABEL: &str = "node.kubernetes.io/instance-type";

/// The taint kubelets started with `--cloud-provider=external` carry until the
/// cloud node controller has initialised the node.
pub const UNINITIALIZED_TAINT: &str = "node.cloudprovider.kubernetes.io/uninitialized";

/// The EndpointSlice label naming its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Event reasons, as the upstream service controller spells them.
pub mod reason {
    /// Normal: about to call `ensure_load_balancer`.
    pub const ENSURING: &str = "EnsuringLoadBalancer";
    /// Normal: `ensure_load_balancer` succeeded.
    pub const ENSURED: &str = "EnsuredLoadBalancer";
    /// Normal: the provider is still converging (a `Retry`).
    pub const PENDING: &str = "LoadBalancerPending";
    /// Warning: `ensure_load_balancer` failed or the Service is invalid.
    pub const SYNC_FAILED: &str = "SyncLoadBalancerFailed";
    /// Normal: `update_load_balancer` succeeded.
    pub const UPDATED: &str = "UpdatedLoadBalancer";
    /// Warning: `update_load_balancer` failed.
    pub const UPDATE_FAILED: &str = "UpdateLoadBalancerFailed";
    /// Normal: about to call `ensure_load_balancer_deleted`.
    pub const DELETING: &str = "DeletingLoadBalancer";
    /// Normal: the load balancer is gone.
    pub const DELETED: &str = "DeletedLoadBalancer";
    /// Warning: `ensure_load_balancer_deleted` failed.
    pub const DELETE_FAILED: &str = "DeleteLoadBalancerFailed";
    /// Warning: no eligible node is left to serve the load balancer.
    pub const UNAVAILABLE: &str = "UnAvailableLoadBalancer";
}
