//! The federation controller: membership, Service propagation, status
//! collection and the single DNS writer.
//!
//! Work is keyed by federation. One reconcile of federation `F`:
//!
//! 1. auto-discovery: a `FederatedCluster` per Secret labelled
//!    `federation.rancher.io/name: F` in the controller's namespace; those
//!    whose Secret lost the label are deleted;
//! 2. health: every member's `/readyz` and nodes, concurrently, each within the
//!    federation's timeout, so an unreachable member never blocks the others;
//!    results go to the `FederatedCluster` status (`Ready` condition, region,
//!    zones) with an event on every change;
//! 3. propagation: every `FederatedService` of `F` is created or updated in each
//!    healthy member, owned by the label `federation.rancher.io/federation: F`;
//!    a Service of the same name without that label is the user's and is left
//!    alone (reported as `NameCollision`). A namespace the member lacks is
//!    created, labelled as the federation's (reported as
//!    `NamespaceCreationFailed` when it cannot be). Managed Services whose
//!    `FederatedService` is gone are deleted, also in members that were down
//!    when it was deleted, and so are the namespaces the federation made once
//!    nothing is left in them;
//! 4. collection: each member Service's `status.loadBalancer` and ready
//!    endpoint count go into the `FederatedService` status per cluster, region
//!    and zone;
//! 5. DNS: the records of every federated service of `F` are computed together
//!    ([`records::desired`]) and handed to the [`DnsProvider`] in one
//!    [`ensure`](DnsProvider::ensure): one writer for all clusters' shards.
//!
//! Changes to the host objects requeue their federation at once; every
//! federation is also reconciled each health-check period.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    sync::Arc,
    time::Duration,
};

use futures::future::join_all;
use k8s_openapi::api::core::v1::Secret;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, Patch, PatchParams},
    runtime::watcher,
};
use parking_lot::Mutex;
use rancher_runtime::{
    events::{Recorder, error_chain},
    lease::Leadership,
    queue::Queue,
    ready::Readiness,
    requeue::{Classify, ErrorKind, Policy},
    status::patch_status,
};
use tokio_util::sync::CancellationToken;

use crate::{
    crd::{
        ClusterServiceStatus, Condition, FederatedCluster, FederatedClusterStatus,
        FederatedService, FederatedServiceStatus, Federation, FederationStatus, LevelStatus,
        set_condition,
    },
    member,
    metrics::Metrics,
    model::{self, Ingress, Member, ServiceKey, Shard},
    provider::{self, DnsProvider},
    records::{self, Resolved, ServiceShards},
    well_known::{CLEANUP_FINALIZER, CONTROLLER_NAME, FEDERATION_LABEL, condition, reason},
};

mod discovery;
mod namespace;
mod propagate;
mod trigger;

use propagate::{Propagation, ensure_member_service, ready_endpoints, sweep_orphans};
use trigger::spawn_trigger;

/// The default seconds between health checks of a member.
pub const DEFAULT_PERIOD: Duration = Duration::from_secs(10);

/// The default time a member may take to answer.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// Errors of one reconcile.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading or writing an object in the host cluster failed.
    #[error("host cluster: {what} failed")]
    Host {
        /// What was attempted.
        what: String,
        /// The cause.
        #[source]
        source: kube::Error,
    },
    /// The DNS provider failed; the records are retried.
    #[error("federation {federation}: publishing dns records failed")]
    Dns {
        /// The federation.
        federation: String,
        /// The cause.
        #[source]
        source: provider::Error,
    },
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Classify for Error {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::Dns { source, .. } => match source.retry_after() {
                Some(after) => ErrorKind::Retry { after },
                None => ErrorKind::Backoff,
            },
            Self::Host { .. } => ErrorKind::Backoff,
        }
    }
}

fn host(what: impl Into<String>) -> impl FnOnce(kube::Error) -> Error {
    let what = what.into();
    move |source| Error::Host { what, source }
}

/// Settings of the controller.
#[derive(Clone, Debug)]
pub struct Config {
    /// The namespace holding `Federation`s, `FederatedCluster`s and the
    /// credentials Secrets.
    pub namespace: String,
    /// Reconciles run in parallel (one per federation at a time).
    pub workers: usize,
    /// The health-check period when a `Federation` does not set one.
    pub period: Duration,
    /// The member timeout when a `Federation` does not set one.
    pub timeout: Duration,
    /// Rancher, for members discovered from Rancher environments labelled
    /// `federation.rancher.io/name: <federation>` (feature `rancher`; the
    /// binary's `--rancher`). `None`: Secrets are the only source.
    #[cfg(feature = "rancher")]
    pub rancher: Option<rancher_client::Client>,
}

impl Config {
    /// Defaults for `namespace`.
    pub fn new(namespace: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            workers: 2,
            period: DEFAULT_PERIOD,
            timeout: DEFAULT_TIMEOUT,
            #[cfg(feature = "rancher")]
            rancher: None,
        }
    }

    /// Also discovers members from the environments of `rancher`.
    #[cfg(feature = "rancher")]
    #[must_use]
    pub fn with_rancher(mut self, rancher: rancher_client::Client) -> Self {
        self.rancher = Some(rancher);
        self
    }
}

/// The federation controller. Cheap to clone.
#[derive(Clone)]
pub struct Controller {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Controller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Controller")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

struct Inner {
    host: kube::Client,
    config: Config,
    provider: Arc<dyn DnsProvider>,
    recorder: Recorder,
    leadership: Mutex<Leadership>,
    readiness: Mutex<Option<Readiness>>,
    metrics: Mutex<Metrics>,
    /// Member clients by cluster, with the credentials they were built from.
    clients: Mutex<HashMap<String, (String, kube::Client)>>,
    /// The last DNS outcome per federation, to publish events on changes only.
    dns_outcome: Mutex<HashMap<String, String>>,
}

/// One member as seen in this reconcile.
#[derive(Clone)]
struct MemberState {
    name: String,
    healthy: bool,
    region: Option<String>,
    zones: Vec<String>,
    client: Option<kube::Client>,
    reason: &'static str,
    message: String,
}

impl Controller {
    /// A controller writing to `provider`, acting on the host cluster through
    /// `host`.
    pub fn new(host: kube::Client, config: Config, provider: Arc<dyn DnsProvider>) -> Self {
        Self {
            inner: Arc::new(Inner {
                recorder: Recorder::new(host.clone(), CONTROLLER_NAME),
                host,
                config,
                provider,
                leadership: Mutex::new(Leadership::always()),
                readiness: Mutex::new(None),
                metrics: Mutex::new(Metrics::default()),
                clients: Mutex::new(HashMap::new()),
                dns_outcome: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Acts only while `leadership` says this replica leads (by default it
    /// always does).
    pub fn with_leadership(self, leadership: Leadership) -> Self {
        *self.inner.leadership.lock() = leadership;
        self
    }

    /// Counts into `metrics` (see [`Metrics::register`]).
    pub fn with_metrics(self, metrics: Metrics) -> Self {
        *self.inner.metrics.lock() = metrics;
        self
    }

    /// Registers the controller's watches with `readiness`: ready once each has
    /// listed.
    pub fn with_readiness(self, readiness: Readiness) -> Self {
        *self.inner.readiness.lock() = Some(readiness);
        self
    }

    /// Watches the host cluster and reconciles every federation until
    /// `shutdown` is cancelled.
    pub async fn run(self, shutdown: CancellationToken) {
        let queue: Queue<String> = Queue::new();
        let ns = self.inner.config.namespace.clone();
        let client = self.inner.host.clone();
        let readiness = self.inner.readiness.lock().clone();
        // Each watch is pending until listed, and reports when it is stale.
        let ready = |name: &str| {
            let name = format!("federation {name}");
            readiness
                .as_ref()
                .map(|r| (r.register(name.clone()), r.track_watch(name)))
        };
        let watches = vec![
            spawn_trigger(
                Api::<Federation>::namespaced(client.clone(), &ns),
                watcher::Config::default(),
                queue.clone(),
                |f: &Federation| Some(f.name_any()),
                ready("federations"),
                shutdown.clone(),
            ),
            spawn_trigger(
                Api::<FederatedCluster>::namespaced(client.clone(), &ns),
                watcher::Config::default(),
                queue.clone(),
                |c: &FederatedCluster| Some(c.spec.federation.clone()),
                ready("federatedclusters"),
                shutdown.clone(),
            ),
            spawn_trigger(
                Api::<FederatedService>::all(client.clone()),
                watcher::Config::default(),
                queue.clone(),
                |s: &FederatedService| Some(s.spec.federation.clone()),
                ready("federatedservices"),
                shutdown.clone(),
            ),
            spawn_trigger(
                Api::<Secret>::namespaced(client.clone(), &ns),
                watcher::Config::default().labels(FEDERATION_LABEL),
                queue.clone(),
                |s: &Secret| s.labels().get(FEDERATION_LABEL).cloned(),
                ready("secrets"),
                shutdown.clone(),
            ),
        ];

        let policy = Arc::new(Policy::default());
        let workers = self.inner.config.workers;
        let this = self.clone();
        let requeue = queue.clone();
        queue
            .run(workers, policy, shutdown, move |federation: String| {
                let (this, requeue) = (this.clone(), requeue.clone());
                async move {
                    let period = this.reconcile(&federation).await?;
                    if let Some(period) = period {
                        requeue.add_after(federation, period);
                    }
                    Ok::<(), Error>(())
                }
            })
            .await;
        for watch in watches {
            watch.abort();
        }
    }

    /// Reconciles federation `name` once; returns when to check it again
    /// (`None` when it does not exist).
    pub async fn reconcile(&self, name: &str) -> Result<Option<Duration>> {
        let metrics = self.inner.metrics.lock().clone();
        let labels = Metrics::labels(name);
        metrics.reconciles.get_or_create(&labels).inc();
        let result = self.reconcile_inner(name, &metrics).await;
        if result.is_err() {
            metrics.reconcile_errors.get_or_create(&labels).inc();
        }
        result
    }

    async fn reconcile_inner(&self, name: &str, metrics: &Metrics) -> Result<Option<Duration>> {
        let inner = &self.inner;
        let ns = &inner.config.namespace;
        let federations: Api<Federation> = Api::namespaced(inner.host.clone(), ns);
        let Some(fed) = federations
            .get_opt(name)
            .await
            .map_err(host(format!("reading federation {name}")))?
        else {
            return Ok(None);
        };
        let period = fed
            .spec
            .health_check_period_seconds
            .map_or(inner.config.period, |s| {
                Duration::from_secs(u64::from(s.max(1)))
            });
        // A standby writes nothing: no clean-up, not even the finalizer.
        if !inner.leadership.lock().is_leader() {
            return Ok(Some(period));
        }
        if fed.metadata.deletion_timestamp.is_some() {
            self.clean_up(&fed).await?;
            return Ok(None);
        }
        if !fed.finalizers().iter().any(|f| f == CLEANUP_FINALIZER) {
            let mut finalizers = fed.finalizers().to_vec();
            finalizers.push(CLEANUP_FINALIZER.to_owned());
            self.set_finalizers(name, finalizers).await?;
        }
        let timeout = fed
            .spec
            .health_check_timeout_seconds
            .map_or(inner.config.timeout, |s| {
                Duration::from_secs(u64::from(s.max(1)))
            });
        let now = now();

        let mut federation = match model::Federation::new(name, &fed.spec.dns_suffix) {
            Ok(federation) => federation,
            Err(error) => {
                let message = format!("spec.dnsSuffix: {error}");
                self.dns_event(&fed, reason::DNS_FAILED, &message, false)
                    .await;
                let mut status = fed.status.clone().unwrap_or_default();
                set_condition(
                    &mut status.conditions,
                    Condition::new(condition::DNS_PUBLISHED, false, reason::DNS_FAILED, message),
                    &now,
                );
                self.patch_federation_status(&fed, status).await?;
                return Ok(Some(period));
            }
        };
        if let Some(ttl) = fed.spec.ttl {
            federation.ttl = ttl;
        }

        // 1. Auto-discovery.
        self.discover(name).await?;

        // 2. Health of every member, concurrently.
        let clusters: Vec<FederatedCluster> =
            Api::<FederatedCluster>::namespaced(inner.host.clone(), ns)
                .list(&ListParams::default())
                .await
                .map_err(host("listing federated clusters"))?
                .items
                .into_iter()
                .filter(|c| c.spec.federation == name)
                .collect();
        let members: Vec<MemberState> =
            join_all(clusters.iter().map(|c| self.check_member(c, timeout))).await;
        for (cluster, state) in clusters.iter().zip(&members) {
            self.record_member(cluster, state, &now).await?;
        }

        // 3, 4. Propagation and collection for every federated service.
        let all_services: Vec<FederatedService> = Api::<FederatedService>::all(inner.host.clone())
            .list(&ListParams::default())
            .await
            .map_err(host("listing federated services"))?
            .items
            .into_iter()
            .filter(|s| s.spec.federation == name)
            .collect();
        let live: Vec<&FederatedService> = all_services
            .iter()
            .filter(|s| s.metadata.deletion_timestamp.is_none())
            .collect();
        let mut collected = Vec::new();
        for service in &live {
            let statuses = join_all(
                members
                    .iter()
                    .map(|m| self.propagate(name, service, m, timeout)),
            )
            .await;
            collected.push(statuses);
        }
        let keep: BTreeSet<(String, String)> = live
            .iter()
            .map(|s| (s.namespace().unwrap_or_default(), s.name_any()))
            .collect();
        let keep_namespaces: BTreeSet<String> = keep.iter().map(|(ns, _)| ns.clone()).collect();
        join_all(members.iter().filter(|m| m.healthy).map(|m| async {
            sweep_orphans(name, m, &keep, timeout).await;
            namespace::sweep(name, m, &keep_namespaces, timeout).await;
        }))
        .await;

        // 5. DNS: one writer for every shard of every service.
        let model_members: Vec<Member> = members
            .iter()
            .map(|m| Member {
                cluster: m.name.clone(),
                healthy: m.healthy,
                region: m.region.clone(),
                zones: m.zones.clone(),
            })
            .collect();
        let mut inputs = Vec::new();
        for (service, statuses) in live.iter().zip(&collected) {
            if service.spec.template.spec.type_.as_deref() != Some("LoadBalancer") {
                continue;
            }
            inputs.push(ServiceShards {
                service: ServiceKey::new(
                    service.namespace().unwrap_or_default(),
                    service.name_any(),
                ),
                shards: statuses
                    .iter()
                    .filter_map(|(_, shard)| shard.clone())
                    .collect(),
            });
        }
        let resolved = resolve_hostnames(&inputs, timeout).await;
        let desired = records::desired(&federation, &model_members, &inputs, &resolved);
        for problem in &desired.problems {
            tracing::warn!(federation = name, %problem, "record skipped");
        }
        let dns = inner
            .provider
            .ensure(&federation.scope(), &desired.records)
            .await;
        let (dns_ok, dns_reason, dns_message) = match &dns {
            Ok(changes) => {
                let labels = Metrics::labels(name);
                metrics
                    .records_added
                    .get_or_create(&labels)
                    .inc_by(changes.added.len() as u64);
                metrics
                    .records_removed
                    .get_or_create(&labels)
                    .inc_by(changes.removed.len() as u64);
                if !changes.is_empty() {
                    tracing::info!(federation = name, %changes, "dns records updated");
                }
                (
                    true,
                    reason::PUBLISHED,
                    format!("{} records published", desired.records.len()),
                )
            }
            Err(error) => {
                let why = if matches!(error, provider::Error::Unauthorized { .. }) {
                    reason::DNS_UNAUTHORIZED
                } else {
                    reason::DNS_FAILED
                };
                (false, why, error_chain(error))
            }
        };
        self.dns_event(&fed, dns_reason, &dns_message, dns_ok).await;

        // Statuses.
        for (service, statuses) in live.iter().zip(&collected) {
            self.record_service(
                &federation,
                service,
                &members,
                statuses,
                dns_ok,
                dns_reason,
                &dns_message,
                &now,
            )
            .await?;
        }
        let mut status = fed.status.clone().unwrap_or_default();
        let mut names: Vec<String> = members.iter().map(|m| m.name.clone()).collect();
        names.sort();
        status.member_count = u32::try_from(names.len()).unwrap_or(u32::MAX);
        status.healthy_count =
            u32::try_from(members.iter().filter(|m| m.healthy).count()).unwrap_or(u32::MAX);
        status.members = names;
        let labels = Metrics::labels(name);
        metrics
            .members
            .get_or_create(&labels)
            .set(i64::from(status.member_count));
        metrics
            .healthy_members
            .get_or_create(&labels)
            .set(i64::from(status.healthy_count));
        metrics
            .records
            .get_or_create(&labels)
            .set(i64::try_from(desired.records.len()).unwrap_or(i64::MAX));
        set_condition(
            &mut status.conditions,
            Condition::new(condition::DNS_PUBLISHED, dns_ok, dns_reason, dns_message),
            &now,
        );
        self.patch_federation_status(&fed, status).await?;

        match dns {
            Ok(_) => Ok(Some(period)),
            Err(source) => Err(Error::Dns {
                federation: name.to_owned(),
                source,
            }),
        }
    }

    async fn set_finalizers(&self, name: &str, finalizers: Vec<String>) -> Result<()> {
        let api: Api<Federation> =
            Api::namespaced(self.inner.host.clone(), &self.inner.config.namespace);
        let patch = serde_json::json!({ "metadata": { "finalizers": finalizers } });
        api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(host(format!(
                "updating the finalizers of federation {name}"
            )))?;
        Ok(())
    }

    /// A deleted federation: its records, the Services it made in reachable
    /// members and its discovered members go, then the finalizer.
    async fn clean_up(&self, fed: &Federation) -> Result<()> {
        let name = fed.name_any();
        if !fed.finalizers().iter().any(|f| f == CLEANUP_FINALIZER) {
            return Ok(());
        }
        if let Ok(federation) = model::Federation::new(&name, &fed.spec.dns_suffix) {
            self.inner
                .provider
                .ensure(&federation.scope(), &model::RecordSet::new())
                .await
                .map_err(|source| Error::Dns {
                    federation: name.clone(),
                    source,
                })?;
        }
        let ns = &self.inner.config.namespace;
        let timeout = self.inner.config.timeout;
        let clusters_api: Api<FederatedCluster> = Api::namespaced(self.inner.host.clone(), ns);
        let clusters: Vec<FederatedCluster> = clusters_api
            .list(&ListParams::default())
            .await
            .map_err(host("listing federated clusters"))?
            .items
            .into_iter()
            .filter(|c| c.spec.federation == name)
            .collect();
        let members = join_all(clusters.iter().map(|c| self.check_member(c, timeout))).await;
        let (none, no_namespaces) = (BTreeSet::new(), BTreeSet::new());
        join_all(members.iter().filter(|m| m.healthy).map(|m| async {
            sweep_orphans(&name, m, &none, timeout).await;
            namespace::sweep(&name, m, &no_namespaces, timeout).await;
        }))
        .await;
        for cluster in clusters.iter().filter(|c| member::is_discovered(c)) {
            match clusters_api
                .delete(&cluster.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(status)) if status.code == 404 => {}
                Err(error) => return Err(host("deleting a federated cluster")(error)),
            }
            self.inner.clients.lock().remove(&cluster.name_any());
        }
        let finalizers: Vec<String> = fed
            .finalizers()
            .iter()
            .filter(|f| *f != CLEANUP_FINALIZER)
            .cloned()
            .collect();
        self.set_finalizers(&name, finalizers).await?;
        self.inner.dns_outcome.lock().remove(&name);
        tracing::info!(federation = name, "federation deleted and cleaned up");
        Ok(())
    }

    async fn patch_federation_status(
        &self,
        fed: &Federation,
        status: FederationStatus,
    ) -> Result<()> {
        if fed.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let api: Api<Federation> =
            Api::namespaced(self.inner.host.clone(), &self.inner.config.namespace);
        patch_status(&api, &fed.name_any(), CONTROLLER_NAME, status)
            .await
            .map_err(|error| Error::Host {
                what: format!("patching the status of federation {}", fed.name_any()),
                source: match error {
                    rancher_runtime::status::Error::PatchStatusFailed { source, .. } => source,
                    other => kube::Error::Service(Box::new(other)),
                },
            })?;
        Ok(())
    }

    async fn dns_event(&self, fed: &Federation, why: &str, message: &str, ok: bool) {
        let outcome = format!("{why}: {message}");
        let changed = {
            let mut last = self.inner.dns_outcome.lock();
            let previous = last.insert(fed.name_any(), outcome.clone());
            previous.as_deref() != Some(outcome.as_str())
        };
        if !changed {
            return;
        }
        if ok {
            self.inner
                .recorder
                .normal(fed, why, "PublishDNS", message)
                .await;
        } else {
            self.inner
                .recorder
                .warning(fed, why, "PublishDNS", message)
                .await;
        }
    }

    async fn check_member(&self, cluster: &FederatedCluster, timeout: Duration) -> MemberState {
        let name = cluster.name_any();
        let mut state = MemberState {
            name: name.clone(),
            healthy: false,
            region: cluster.status.as_ref().and_then(|s| s.region.clone()),
            zones: cluster
                .status
                .as_ref()
                .map(|s| s.zones.clone())
                .unwrap_or_default(),
            client: None,
            reason: reason::UNREACHABLE,
            message: String::new(),
        };
        let client = match self.member_client(cluster, timeout).await {
            Ok(client) => client,
            Err(error) => {
                state.reason = reason::INVALID_CREDENTIALS;
                state.message = error_chain(&error);
                return state;
            }
        };
        state.client = Some(client.clone());
        match member::probe(&name, &client, timeout).await {
            Ok(probe) => {
                state.healthy = true;
                state.region = probe.region;
                state.zones = probe.zones;
                state.reason = reason::HEALTHY;
                state.message = "/readyz answered ok".into();
            }
            Err(error) => {
                state.message = error_chain(&error);
            }
        }
        state
    }

    async fn record_member(
        &self,
        cluster: &FederatedCluster,
        state: &MemberState,
        now: &str,
    ) -> Result<()> {
        let before = cluster.status.clone().unwrap_or_default();
        let mut status = FederatedClusterStatus {
            healthy: state.healthy,
            region: state.region.clone(),
            zones: state.zones.clone(),
            conditions: before.conditions.clone(),
        };
        set_condition(
            &mut status.conditions,
            Condition::new(
                condition::READY,
                state.healthy,
                state.reason,
                state.message.clone(),
            ),
            now,
        );
        if cluster.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let was = before
            .conditions
            .iter()
            .find(|c| c.type_ == condition::READY)
            .map(|c| (c.is_true(), c.reason.clone()));
        if was != Some((state.healthy, state.reason.to_owned())) {
            if state.healthy {
                self.inner
                    .recorder
                    .normal(cluster, state.reason, "HealthCheck", state.message.clone())
                    .await;
            } else {
                self.inner
                    .recorder
                    .warning(cluster, state.reason, "HealthCheck", state.message.clone())
                    .await;
            }
        }
        let api: Api<FederatedCluster> =
            Api::namespaced(self.inner.host.clone(), &self.inner.config.namespace);
        match patch_status(&api, &cluster.name_any(), CONTROLLER_NAME, status).await {
            Ok(_) => Ok(()),
            // Deleted meanwhile (the Secret lost its label).
            Err(rancher_runtime::status::Error::PatchStatusFailed {
                source: kube::Error::Api(status),
                ..
            }) if status.code == 404 => Ok(()),
            Err(rancher_runtime::status::Error::PatchStatusFailed { source, .. }) => {
                Err(Error::Host {
                    what: format!(
                        "patching the status of federated cluster {}",
                        cluster.name_any()
                    ),
                    source,
                })
            }
            Err(other) => Err(Error::Host {
                what: format!(
                    "patching the status of federated cluster {}",
                    cluster.name_any()
                ),
                source: kube::Error::Service(Box::new(other)),
            }),
        }
    }

    /// Ensures the member Service and reads its shard.
    async fn propagate(
        &self,
        federation: &str,
        service: &FederatedService,
        member: &MemberState,
        timeout: Duration,
    ) -> (ClusterServiceStatus, Option<Shard>) {
        let mut status = ClusterServiceStatus {
            cluster: member.name.clone(),
            region: member.region.clone(),
            zones: member.zones.clone(),
            ..ClusterServiceStatus::default()
        };
        let (true, Some(client)) = (member.healthy, member.client.as_ref()) else {
            status.message = Some(format!("cluster not healthy: {}", member.message));
            return (status, None);
        };
        let ns = service.namespace().unwrap_or_default();
        let name = service.name_any();
        let result = tokio::time::timeout(
            timeout,
            ensure_member_service(federation, client, &ns, &name, service),
        )
        .await
        .unwrap_or_else(|_| Err(Propagation::Failed(format!("no answer within {timeout:?}"))));
        let current = match result {
            Ok(current) => current,
            Err(Propagation::Collision) => {
                let note = format!(
                    "cluster {}: a Service {ns}/{name} not created by federation {federation} exists; left alone",
                    member.name
                );
                status.message = Some(note);
                status.reason = Some(reason::NAME_COLLISION.to_owned());
                return (status, None);
            }
            Err(Propagation::Namespace(why)) => {
                status.message = Some(format!("cluster {}: {why}", member.name));
                status.reason = Some(reason::NAMESPACE_CREATION_FAILED.to_owned());
                return (status, None);
            }
            Err(Propagation::Failed(why)) => {
                status.message = Some(format!("cluster {}: {why}", member.name));
                status.reason = Some(reason::PROPAGATION_FAILED.to_owned());
                return (status, None);
            }
        };
        let ingress: Vec<Ingress> = current
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref())
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| {
                        i.ip.as_deref()
                            .and_then(|ip| ip.parse().ok())
                            .map(Ingress::Ip)
                            .or_else(|| i.hostname.clone().map(Ingress::Hostname))
                    })
                    .collect()
            })
            .unwrap_or_default();
        let ready = match tokio::time::timeout(timeout, ready_endpoints(client, &ns, &name)).await {
            Ok(Ok(ready)) => ready,
            Ok(Err(error)) => {
                status.message = Some(format!("reading endpoint slices: {}", error_chain(&error)));
                0
            }
            Err(_) => {
                status.message = Some(format!(
                    "reading endpoint slices: no answer within {timeout:?}"
                ));
                0
            }
        };
        status.ingress = ingress
            .iter()
            .map(|i| match i {
                Ingress::Ip(ip) => ip.to_string(),
                Ingress::Hostname(host) => host.clone(),
            })
            .collect();
        status.ready_endpoints = u32::try_from(ready).unwrap_or(u32::MAX);
        let shard = Shard {
            cluster: member.name.clone(),
            ingress,
            ready_endpoints: ready,
        };
        status.healthy = shard.serves();
        (status, Some(shard))
    }

    #[allow(clippy::too_many_arguments)]
    async fn record_service(
        &self,
        federation: &model::Federation,
        service: &FederatedService,
        members: &[MemberState],
        statuses: &[(ClusterServiceStatus, Option<Shard>)],
        dns_ok: bool,
        dns_reason: &str,
        dns_message: &str,
        now: &str,
    ) -> Result<()> {
        let key = ServiceKey::new(service.namespace().unwrap_or_default(), service.name_any());
        let before = service.status.clone().unwrap_or_default();
        let mut clusters: Vec<ClusterServiceStatus> =
            statuses.iter().map(|(s, _)| s.clone()).collect();
        clusters.sort_by(|a, b| a.cluster.cmp(&b.cluster));

        let mut regions: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        let mut zones: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
        for cluster in clusters.iter().filter(|c| c.healthy) {
            if let Some(region) = &cluster.region {
                regions
                    .entry(region.clone())
                    .or_default()
                    .extend(cluster.ingress.iter().cloned());
                for zone in &cluster.zones {
                    zones
                        .entry((region.clone(), zone.clone()))
                        .or_default()
                        .extend(cluster.ingress.iter().cloned());
                }
            }
        }
        // Every region and zone of the federation appears, empty ones too.
        for m in members {
            if let Some(region) = &m.region {
                regions.entry(region.clone()).or_default();
                for zone in &m.zones {
                    zones.entry((region.clone(), zone.clone())).or_default();
                }
            }
        }
        let mut status = FederatedServiceStatus {
            dns_name: records::global_name(federation, &key)
                .ok()
                .map(|n| n.to_string()),
            clusters,
            regions: regions
                .into_iter()
                .map(|(region, addresses)| LevelStatus {
                    region,
                    zone: None,
                    addresses: addresses.into_iter().collect(),
                })
                .collect(),
            zones: zones
                .into_iter()
                .map(|((region, zone), addresses)| LevelStatus {
                    region,
                    zone: Some(zone),
                    addresses: addresses.into_iter().collect(),
                })
                .collect(),
            conditions: before.conditions.clone(),
        };
        let problems: Vec<(&str, &str)> = status
            .clusters
            .iter()
            .filter(|c| members.iter().any(|m| m.name == c.cluster && m.healthy))
            .filter_map(|c| {
                let why = c.reason.as_deref().unwrap_or(reason::PROPAGATION_FAILED);
                c.message.as_deref().map(|message| (why, message))
            })
            .collect();
        let propagated = problems.is_empty();
        let (why, message) = if propagated {
            (
                reason::PROPAGATED,
                "the service exists in every healthy member".to_owned(),
            )
        } else {
            // The reason every problem shares (a collision, a namespace that
            // could not be made), else the general one.
            let first = problems[0].0;
            let why = if problems.iter().all(|(w, _)| *w == first) {
                first
            } else {
                reason::PROPAGATION_FAILED
            };
            let messages: Vec<&str> = problems.iter().map(|(_, m)| *m).collect();
            (why, messages.join("; "))
        };
        let previous = before
            .conditions
            .iter()
            .find(|c| c.type_ == condition::PROPAGATED)
            .map(|c| (c.reason.clone(), c.message.clone()));
        if previous != Some((why.to_owned(), message.clone())) && !propagated {
            self.inner
                .recorder
                .warning(service, why, "Propagate", message.clone())
                .await;
        }
        set_condition(
            &mut status.conditions,
            Condition::new(condition::PROPAGATED, propagated, why, message),
            now,
        );
        set_condition(
            &mut status.conditions,
            Condition::new(condition::DNS_PUBLISHED, dns_ok, dns_reason, dns_message),
            now,
        );
        if service.status.as_ref() == Some(&status) {
            return Ok(());
        }
        let api: Api<FederatedService> = Api::namespaced(self.inner.host.clone(), &key.namespace);
        match patch_status(&api, &key.name, CONTROLLER_NAME, status).await {
            Ok(_) => Ok(()),
            Err(rancher_runtime::status::Error::PatchStatusFailed {
                source: kube::Error::Api(status),
                ..
            }) if status.code == 404 => Ok(()),
            Err(rancher_runtime::status::Error::PatchStatusFailed { source, .. }) => {
                Err(Error::Host {
                    what: format!("patching the status of federated service {key}"),
                    source,
                })
            }
            Err(other) => Err(Error::Host {
                what: format!("patching the status of federated service {key}"),
                source: kube::Error::Service(Box::new(other)),
            }),
        }
    }
}

/// Resolves every load balancer hostname of `services`, each within
/// `timeout`; unresolved ones are left out (and published as CNAMEs).
async fn resolve_hostnames(services: &[ServiceShards], timeout: Duration) -> Resolved {
    let hostnames: BTreeSet<String> = services
        .iter()
        .flat_map(|s| &s.shards)
        .flat_map(|shard| &shard.ingress)
        .filter_map(|i| match i {
            Ingress::Hostname(host) => model::DnsName::new(host).ok().map(|n| n.to_string()),
            Ingress::Ip(_) => None,
        })
        .collect();
    let lookups = hostnames.into_iter().map(|host| async move {
        let found = tokio::time::timeout(timeout, tokio::net::lookup_host((host.as_str(), 0)))
            .await
            .ok()
            .and_then(Result::ok)
            .map(|addrs| {
                let mut ips: Vec<_> = addrs.map(|a| a.ip()).collect();
                ips.sort();
                ips.dedup();
                ips
            })
            .unwrap_or_default();
        (host, found)
    });
    join_all(lookups)
        .await
        .into_iter()
        .filter(|(_, ips)| !ips.is_empty())
        .collect()
}

fn now() -> String {
    jiff::Timestamp::now().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dns_errors_say_how_to_retry() {
        let unreachable = Error::Dns {
            federation: "f".into(),
            source: provider::Error::Unreachable {
                server: "x".into(),
                source: std::io::ErrorKind::ConnectionRefused.into(),
            },
        };
        assert_eq!(
            unreachable.kind(),
            ErrorKind::Retry {
                after: Duration::from_secs(5)
            }
        );
        let refused = Error::Dns {
            federation: "f".into(),
            source: provider::Error::Unauthorized {
                server: "x".into(),
                reason: "BadSig".into(),
            },
        };
        assert_eq!(refused.kind(), ErrorKind::Backoff);
        assert!(
            error_chain(&refused).contains("BadSig"),
            "{}",
            error_chain(&refused)
        );
    }
}
