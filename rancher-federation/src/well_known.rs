//! Well-known strings: API group, labels, finalizer, field manager, condition
//! types and event reasons.

/// The API group of the federation's custom resources.
pub const GROUP: &str = "federation.rancher.io";

/// The label naming a federation. On a credentials Secret in the controller's
/// namespace it makes the cluster the Secret points at join that federation
/// (auto-discovery); removing the label makes it leave.
pub const FEDERATION_LABEL: &str = "federation.rancher.io/name";

/// The label on every Service the controller creates in a member cluster; its
/// value is the federation's name. Services without it are the users' and are
/// never changed or deleted.
pub const MANAGED_BY_LABEL: &str = "federation.rancher.io/federation";

/// The label on `FederatedCluster`s the controller created from a labelled
/// Secret (value `true`); only those are removed when the label goes away.
pub const DISCOVERED_LABEL: &str = "federation.rancher.io/discovered";

/// The annotation on a credentials Secret giving the member's API endpoint when
/// the Secret holds a token rather than a kubeconfig.
pub const API_ENDPOINT_ANNOTATION: &str = "federation.rancher.io/api-endpoint";

/// The Secret key holding a kubeconfig.
pub const KUBECONFIG_KEY: &str = "kubeconfig";

/// The Secret key holding a bearer token.
pub const TOKEN_KEY: &str = "token";

/// The Secret key holding the member API server's CA certificate (PEM).
pub const CA_KEY: &str = "ca.crt";

/// The finalizer on `Federation`s: removed once the federation's records, its
/// member Services and its discovered `FederatedCluster`s are gone.
pub const CLEANUP_FINALIZER: &str = "federation.rancher.io/cleanup";

/// The field manager and event reporter of the controller.
pub const CONTROLLER_NAME: &str = "rancher.io/federation";

/// The node label carrying the zone.
pub const ZONE_LABEL: &str = "topology.kubernetes.io/zone";

/// The node label carrying the region.
pub const REGION_LABEL: &str = "topology.kubernetes.io/region";

/// The deprecated node label carrying the zone, read when the current one is
/// missing.
pub const LEGACY_ZONE_LABEL: &str = "failure-domain.beta.kubernetes.io/zone";

/// The deprecated node label carrying the region.
pub const LEGACY_REGION_LABEL: &str = "failure-domain.beta.kubernetes.io/region";

/// The EndpointSlice label naming its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// Condition types.
pub mod condition {
    /// `FederatedCluster`: the member's `/readyz` answered `ok` in time.
    pub const READY: &str = "Ready";
    /// `FederatedService`: the Service exists in every healthy member.
    pub const PROPAGATED: &str = "Propagated";
    /// `Federation` and `FederatedService`: the DNS provider holds the records.
    pub const DNS_PUBLISHED: &str = "DNSPublished";
}

/// Event and condition reasons.
pub mod reason {
    /// The member answered its health check.
    pub const HEALTHY: &str = "Healthy";
    /// The member did not answer its health check in time, or answered badly.
    pub const UNREACHABLE: &str = "Unreachable";
    /// The member's credentials Secret is missing or unusable.
    pub const INVALID_CREDENTIALS: &str = "InvalidCredentials";
    /// A member already has a Service of that name that the controller did not
    /// create; it is left alone.
    pub const NAME_COLLISION: &str = "NameCollision";
    /// Creating or updating a member Service failed.
    pub const PROPAGATION_FAILED: &str = "PropagationFailed";
    /// The federated Service's namespace is missing in a member and creating
    /// it failed; the message names the member and the namespace.
    pub const NAMESPACE_CREATION_FAILED: &str = "NamespaceCreationFailed";
    /// Every healthy member has the Service.
    pub const PROPAGATED: &str = "Propagated";
    /// The DNS provider holds the desired records.
    pub const PUBLISHED: &str = "Published";
    /// The DNS provider refused or could not be reached.
    pub const DNS_FAILED: &str = "DNSUpdateFailed";
    /// The DNS provider rejected the credentials (e.g. a TSIG key).
    pub const DNS_UNAUTHORIZED: &str = "DNSUnauthorized";
    /// A cluster joined the federation.
    pub const JOINED: &str = "Joined";
    /// A cluster left the federation.
    pub const LEFT: &str = "Left";
    /// The federated service's template is invalid.
    pub const INVALID_TEMPLATE: &str = "InvalidTemplate";
}
