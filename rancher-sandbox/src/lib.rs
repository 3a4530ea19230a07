//! An in-memory Kubernetes API server on loopback that `kube` clients and `kubectl` both
//! talk to, for tests, examples and demos on a machine with no cluster.
//!
//! # Overview
//!
//! [`Sandbox::builder`] starts one or more independent clusters in the current process.
//! Each serves the Kubernetes REST API over plain HTTP on `127.0.0.1` from memory:
//! discovery, CRUD, list/watch with resourceVersion semantics (bookmarks, 410 on expired
//! versions), label and field selectors, `limit`/`continue` pagination, merge, JSON,
//! strategic-merge and server-side-apply patches, status subresources, finalizers, `Status`
//! error bodies, ClusterIP/NodePort allocation and server-side `Table` output for
//! `kubectl get`. A bare sandbox runs no controllers; with
//! [`SandboxBuilder::workloads`] it also runs the controllers users rely on (Deployment,
//! ReplicaSet, StatefulSet, DaemonSet, EndpointSlice, garbage collection, node ranges), a
//! scheduler and sandbox nodes whose pods answer on loopback addresses ([`workloads`]).
//!
//! Served kinds are listed in a table ([`resource`]): namespaces, nodes, pods, services,
//! endpoints, secrets, configmaps, events (`core/v1` and `events.k8s.io/v1`, one storage),
//! leases, endpointslices, ingresses, ingressclasses, deployments, replicasets,
//! statefulsets, daemonsets, RBAC kinds and CustomResourceDefinitions; an established CRD
//! adds its kinds at run time.
//!
//! Each [`Cluster`] has an address, a ready [`kube::Client`] and a context in the
//! kubeconfig file the builder writes ([`SandboxBuilder::kubeconfig_path`]), which
//! `kubectl --kubeconfig` uses as is.
//!
//! # Running the sandbox
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use k8s_openapi::api::core::v1::ConfigMap;
//! use kube::api::{Api, PostParams};
//!
//! // Binaries and tests install the ring provider once, before any client exists.
//! let _ = rustls::crypto::ring::default_provider().install_default();
//! let sandbox = rancher_sandbox::Sandbox::builder()
//!     .kubeconfig_path("/tmp/sandbox.kubeconfig")
//!     .start()
//!     .await?;
//! let config_maps: Api<ConfigMap> = Api::namespaced(sandbox.client(), "default");
//! let mut cm = ConfigMap::default();
//! cm.metadata.name = Some("settings".into());
//! config_maps.create(&PostParams::default(), &cm).await?;
//! // `kubectl --kubeconfig /tmp/sandbox.kubeconfig get configmaps` now shows it.
//! sandbox.shutdown().await;
//! # Ok(()) }
//! ```
//!
//! Objects can also be loaded at start from a directory of YAML manifests
//! ([`SandboxBuilder::manifests_dir`]); documents that fail are reported by
//! [`Sandbox::seed_errors`] with file, document number and reason, and the rest load.
//!
//! # Where the sandbox differs from kube-apiserver
//!
//! - Authentication and authorization are off unless configured ([`SandboxBuilder::access`]:
//!   webhooks only, as kube-apiserver's token and authorization webhooks; no RBAC
//!   enforcement, RBAC objects are stored). No admission webhooks. `dryRun=All` writes go
//!   to a copy of the store that is dropped after: the answer is what would be stored, and
//!   no object, allocation, resourceVersion or watch event changes. Protobuf request bodies
//!   are read for what kubectl's generators
//!   post (`kubectl create namespace|configmap|secret|serviceaccount|deployment|service|
//!   ingress`, `kubectl expose`), other protobuf bodies get 415; responses are always JSON.
//! - A `continue` token resumes after the last key of the previous page; later pages see
//!   current data rather than a snapshot.
//! - Every write records `metadata.managedFields` as kube-apiserver does: the manager from
//!   `fieldManager` or the User-Agent, `operation: Update` with the fields the write set
//!   (after defaulting; allocated cluster IPs and node ports excluded) or `Apply`, the
//!   subresource. Server-side apply owns lists whole and reports conflicts only between
//!   appliers (a field an updater owns is taken without one). `metadata.generation` is set
//!   on every kind, where kube-apiserver sets it only on some (not Services).
//! - No schema validation of custom resources and no conversion between CRD versions
//!   (every served version reads the same stored object).
//! - Deleting a namespace deletes its objects at once (finalizers still hold them).
//!
//! # Feature flags
//!
//! | flag | default | what |
//! | --- | --- | --- |
//! | (none) | | the crate has no optional features |

pub mod access;
pub mod allocate;
mod convert;
mod defaults;
pub mod discovery;
mod faults;
mod kubeconfig;
mod managed;
mod openapi;
pub mod patch;
mod protobuf;
pub mod resource;
pub mod seed;
mod selector;
mod server;
pub mod status;
mod store;
mod table;
mod validate;
mod watch;
pub mod workloads;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use crate::seed::SeedError;
pub use crate::server::MAX_BODY_BYTES;
pub use crate::watch::INITIAL_EVENTS_END_ANNOTATION;
pub use crate::workloads::{PodNetwork, SandboxNode, Workloads};

/// Errors starting a sandbox.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The service CIDR is not a usable IPv4 network.
    #[error(transparent)]
    ServiceCidr(#[from] allocate::CidrError),
    /// Binding the listening socket failed.
    #[error("binding the API server socket failed")]
    Bind(#[source] std::io::Error),
    /// Writing the kubeconfig file failed.
    #[error("writing the kubeconfig to {path} failed")]
    Kubeconfig {
        /// The kubeconfig path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The manifests directory could not be read.
    #[error("reading the manifests failed")]
    Manifests(#[from] seed::Error),
    /// Building the `kube::Client` failed.
    #[error("building the kube client failed")]
    Client(#[source] kube::Error),
    /// `clusters(0)` was asked for.
    #[error("a sandbox needs at least one cluster")]
    NoClusters,
    /// The workloads' configuration is not usable.
    #[error(transparent)]
    Workloads(#[from] workloads::Error),
    /// A webhook of the access configuration is not usable.
    #[error(transparent)]
    Access(#[from] access::ConfigError),
}

/// Result of sandbox operations.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Configures and starts a [`Sandbox`].
#[derive(Debug, Clone)]
#[must_use]
pub struct SandboxBuilder {
    kubeconfig_path: Option<PathBuf>,
    clusters: usize,
    service_cidr: String,
    manifests_dir: Option<PathBuf>,
    watch_history: usize,
    bookmark_interval: Duration,
    default_objects: bool,
    name: String,
    workloads: Option<Workloads>,
    access: Option<access::Access>,
}

impl Default for SandboxBuilder {
    fn default() -> Self {
        Self {
            kubeconfig_path: None,
            clusters: 1,
            service_cidr: allocate::DEFAULT_SERVICE_CIDR.to_string(),
            manifests_dir: None,
            watch_history: 10_000,
            bookmark_interval: Duration::from_secs(10),
            default_objects: true,
            name: "sandbox".to_string(),
            workloads: None,
            access: None,
        }
    }
}

impl SandboxBuilder {
    /// Writes a kubeconfig here on start (one context per cluster, the first current).
    pub fn kubeconfig_path(mut self, path: impl Into<PathBuf>) -> Self {
        self.kubeconfig_path = Some(path.into());
        self
    }

    /// How many independent clusters to run (default 1).
    pub fn clusters(mut self, n: usize) -> Self {
        self.clusters = n;
        self
    }

    /// The IPv4 service CIDR ClusterIPs come from (default `10.43.0.0/16`).
    pub fn service_cidr(mut self, cidr: impl Into<String>) -> Self {
        self.service_cidr = cidr.into();
        self
    }

    /// Loads every manifest in this directory into every cluster at start.
    pub fn manifests_dir(mut self, dir: impl Into<PathBuf>) -> Self {
        self.manifests_dir = Some(dir.into());
        self
    }

    /// How many changes a cluster retains for watches that resume from a resourceVersion
    /// (default 10 000); older versions get 410 Gone.
    pub fn watch_history(mut self, changes: usize) -> Self {
        self.watch_history = changes;
        self
    }

    /// How often watches with `allowWatchBookmarks` get a BOOKMARK (default 10 s).
    pub fn bookmark_interval(mut self, every: Duration) -> Self {
        self.bookmark_interval = every;
        self
    }

    /// Whether to create what every cluster has: the `default`, `kube-system`,
    /// `kube-public` and `kube-node-lease` namespaces and the `default/kubernetes`
    /// Service (default true).
    pub fn default_objects(mut self, yes: bool) -> Self {
        self.default_objects = yes;
        self
    }

    /// Context and cluster name in the kubeconfig: `NAME` for one cluster, `NAME-0`,
    /// `NAME-1`, ... for several (default `sandbox`).
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Runs workloads in every cluster: the controllers (Deployment, ReplicaSet,
    /// StatefulSet, DaemonSet, EndpointSlice, garbage collector, node ranges), a scheduler
    /// and sandbox nodes that run pods ([`workloads`]). Off by default: a bare API server.
    pub fn workloads(mut self, workloads: Workloads) -> Self {
        self.workloads = Some(workloads);
        self
    }

    /// Authenticates and authorizes every request with webhooks, configured as
    /// kube-apiserver's are ([`access`]). Off by default: everyone may do everything.
    pub fn access(mut self, access: access::Access) -> Self {
        self.access = Some(access);
        self
    }

    /// Starts the clusters, seeds them and writes the kubeconfig.
    pub async fn start(self) -> Result<Sandbox> {
        if self.clusters == 0 {
            return Err(Error::NoClusters);
        }
        if let Some(w) = &self.workloads {
            workloads::check(w)?;
        }
        let files = match &self.manifests_dir {
            Some(dir) => seed::manifest_files(dir)?,
            None => Vec::new(),
        };
        let mut clusters = Vec::new();
        let mut seed_errors = Vec::new();
        for i in 0..self.clusters {
            let name = if self.clusters == 1 {
                self.name.clone()
            } else {
                format!("{}-{i}", self.name)
            };
            let (cluster, errors) = Cluster::start(&self, name, &files).await?;
            clusters.push(cluster);
            seed_errors.extend(errors);
        }
        if let Some(path) = &self.kubeconfig_path {
            let entries: Vec<kubeconfig::Entry> = clusters
                .iter()
                .map(|c| kubeconfig::Entry {
                    name: c.name.clone(),
                    server: c.url(),
                    credentials: c
                        .token()
                        .zip(c.ca_pem())
                        .map(|(token, ca)| (token.to_owned(), ca.to_owned())),
                })
                .collect();
            let text = kubeconfig::render(&entries);
            if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|source| Error::Kubeconfig {
                    path: path.clone(),
                    source,
                })?;
            }
            std::fs::write(path, text).map_err(|source| Error::Kubeconfig {
                path: path.clone(),
                source,
            })?;
        }
        Ok(Sandbox {
            clusters,
            kubeconfig_path: self.kubeconfig_path,
            seed_errors,
        })
    }
}

/// A running sandbox: one or more clusters. Dropping it stops them.
#[derive(Debug)]
pub struct Sandbox {
    clusters: Vec<Cluster>,
    kubeconfig_path: Option<PathBuf>,
    seed_errors: Vec<SeedError>,
}

impl Sandbox {
    /// A builder with the defaults: one cluster, service CIDR `10.43.0.0/16`, no kubeconfig.
    pub fn builder() -> SandboxBuilder {
        SandboxBuilder::default()
    }

    /// The first cluster's client (default namespace `default`).
    pub fn client(&self) -> kube::Client {
        self.clusters[0].client()
    }

    /// The first cluster's address.
    pub fn addr(&self) -> SocketAddr {
        self.clusters[0].addr()
    }

    /// The kubeconfig file, if the builder was given a path.
    pub fn kubeconfig_path(&self) -> Option<&Path> {
        self.kubeconfig_path.as_deref()
    }

    /// All clusters, in kubeconfig order.
    pub fn clusters(&self) -> &[Cluster] {
        &self.clusters
    }

    /// Cluster `i`, if there is one.
    pub fn cluster(&self, i: usize) -> Option<&Cluster> {
        self.clusters.get(i)
    }

    /// Manifest documents that failed to load at start (all clusters).
    pub fn seed_errors(&self) -> &[SeedError] {
        &self.seed_errors
    }

    /// Stops every cluster and waits for the servers to finish.
    pub async fn shutdown(mut self) {
        for c in &mut self.clusters {
            c.stop().await;
        }
    }
}

/// One cluster of a sandbox: its own address, state and kubeconfig context.
pub struct Cluster {
    name: String,
    addr: SocketAddr,
    client: kube::Client,
    shared: Arc<server::Shared>,
    /// The server task; `None` while the listener is stopped.
    task: std::sync::Mutex<Option<JoinHandle<()>>>,
    workloads: Option<workloads::Running>,
}

impl Cluster {
    async fn start(
        b: &SandboxBuilder,
        name: String,
        files: &[PathBuf],
    ) -> Result<(Self, Vec<SeedError>)> {
        let alloc = allocate::Allocator::new(&b.service_cidr)?;
        let first_ip = alloc.first_ip();
        let store = store::Store::new(
            &store::StoreConfig {
                history: b.watch_history,
            },
            alloc,
        );
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
            .await
            .map_err(Error::Bind)?;
        let addr = listener.local_addr().map_err(Error::Bind)?;
        let shutdown = CancellationToken::new();
        let serving = shutdown.child_token();
        let shared = Arc::new(server::Shared {
            store,
            addr: addr.to_string(),
            bookmark_interval: b.bookmark_interval,
            shutdown: shutdown.clone(),
            logs: Arc::default(),
            access: match &b.access {
                Some(access) => Some(Arc::new(access::Gate::new(access).await?)),
                None => None,
            },
            faults: faults::Faults::new(serving.clone()),
        });
        let errors = {
            let mut state = shared.store.lock();
            if b.default_objects {
                default_objects(&mut state, &first_ip.to_string());
            }
            seed::load(&mut state, files)?
        };
        let running = match &b.workloads {
            Some(w) => Some(workloads::start(&shared, w)?),
            None => None,
        };
        let scheme = if shared.access.is_some() {
            "https"
        } else {
            "http"
        };
        let task = serve(shared.clone(), listener, serving)?;
        let url: http::Uri =
            format!("{scheme}://{addr}")
                .parse()
                .map_err(|e: http::uri::InvalidUri| {
                    Error::Bind(std::io::Error::new(
                        std::io::ErrorKind::InvalidInput,
                        e.to_string(),
                    ))
                })?;
        let client = match &shared.access {
            None => {
                let mut config = kube::Config::new(url);
                config.default_namespace = "default".to_string();
                kube::Client::try_from(config).map_err(Error::Client)?
            }
            Some(gate) => {
                kubeconfig::client(&name, &url.to_string(), gate.admin_token(), gate.ca_pem())
                    .await
                    .map_err(Error::Client)?
            }
        };
        tracing::info!(%name, %addr, "sandbox cluster listening");
        Ok((
            Self {
                name,
                addr,
                client,
                shared,
                task: std::sync::Mutex::new(Some(task)),
                workloads: running,
            },
            errors,
        ))
    }

    /// The admin token (user `kubernetes-admin`, group `system:masters`) when access is
    /// configured ([`SandboxBuilder::access`]); the written kubeconfig and
    /// [`Cluster::client`] use it.
    pub fn token(&self) -> Option<&str> {
        self.shared.access.as_deref().map(access::Gate::admin_token)
    }

    /// The kubeconfig context (and cluster) name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The listening address on loopback.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, or `https://` when access control is on.
    pub fn url(&self) -> String {
        let scheme = if self.shared.access.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://{}", self.addr)
    }

    /// The CA (PEM) that verifies this cluster's serving certificate, when it serves HTTPS
    /// (access control on).
    pub fn ca_pem(&self) -> Option<&str> {
        self.shared.access.as_deref().map(access::Gate::ca_pem)
    }

    /// A client for this cluster (default namespace `default`).
    pub fn client(&self) -> kube::Client {
        self.client.clone()
    }

    /// The loopback network pod addresses come from (such as `127.77.0.0/16`), when the
    /// cluster runs [`workloads`](SandboxBuilder::workloads).
    pub fn pod_network(&self) -> Option<&str> {
        self.workloads.as_ref().map(|w| w.pod_network.as_str())
    }

    /// The current cluster-wide resourceVersion.
    pub fn resource_version(&self) -> u64 {
        self.shared.store.lock().resource_version()
    }

    /// Loads the manifests in `dir` into this cluster; returns the documents that failed.
    pub fn load_manifests(&self, dir: &Path) -> Result<Vec<SeedError>> {
        let files = seed::manifest_files(dir)?;
        let mut state = self.shared.store.lock();
        Ok(seed::load(&mut state, &files)?)
    }

    async fn stop(&mut self) {
        self.shared.shutdown.cancel();
        let task = self
            .task
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("name", &self.name)
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shared.shutdown.cancel();
        let task = self
            .task
            .get_mut()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(task) = task {
            task.abort();
        }
    }
}

/// Serves the API on `listener` (over TLS when access control is configured)
/// until `serving` is cancelled.
fn serve(
    shared: Arc<server::Shared>,
    listener: tokio::net::TcpListener,
    serving: CancellationToken,
) -> Result<JoinHandle<()>> {
    let router = server::router(shared.clone());
    Ok(match &shared.access {
        None => tokio::spawn(async move {
            let serve =
                axum::serve(listener, router).with_graceful_shutdown(serving.cancelled_owned());
            if let Err(e) = serve.await {
                tracing::warn!(error = %e, "sandbox API server stopped");
            }
        }),
        Some(gate) => {
            let listener =
                access::TlsListener::new(listener, gate.tls_config()).map_err(Error::Bind)?;
            tokio::spawn(async move {
                let serve =
                    axum::serve(listener, router).with_graceful_shutdown(serving.cancelled_owned());
                if let Err(e) = serve.await {
                    tracing::warn!(error = %e, "sandbox API server stopped");
                }
            })
        }
    })
}

fn default_objects(state: &mut store::State, first_ip: &str) {
    let by = managed::Writer::named(managed::API_SERVER_MANAGER);
    let Some(namespaces) = state.find_type("", "v1", "namespaces") else {
        return;
    };
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        let obj = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "labels": {"kubernetes.io/metadata.name": ns}}});
        let _ = state.create(&namespaces, "", obj, &by);
    }
    if let Some(services) = state.find_type("", "v1", "services") {
        let svc = json!({
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "kubernetes", "labels": {"component": "apiserver", "provider": "kubernetes"}},
            "spec": {"clusterIP": first_ip, "ports": [{"name": "https", "port": 443, "protocol": "TCP", "targetPort": 6443}]},
        });
        let _ = state.create(&services, "default", svc, &by);
    }
}
