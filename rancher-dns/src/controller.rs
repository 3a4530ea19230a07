//! The controller (feature `runtime`): watches Services, EndpointSlices and
//! (for verified pod records) Pods, keeps the [`DnsIndex`] and publishes its
//! changes to the backends; plus [`DnsArgs`] and [`Dns::start`], which wire
//! the built-in server, the optional answers file and the controller the way
//! the `rancher-dns` binary runs them.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use kube::Api;
use kube::runtime::watcher;
use parking_lot::RwLock;
use prometheus_client::registry::Registry;
use rancher_runtime::index;
use rancher_runtime::ready::{Pending, Readiness};
use rancher_runtime::watch::Watch;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::backend::{AnswersBackend, AnswersConfig, DnsBackend, ServerBackend};
use crate::forward::{ForwardConfig, parse_resolv_conf};
use crate::index::{DnsIndex, follow};
use crate::metrics::Metrics;
use crate::model::{Change, Options, PodRecords, ZoneRecords};
use crate::name;
use crate::object;
use crate::server::{self, Server, ServerConfig};

/// Errors starting DNS.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A flag has an invalid value.
    #[error("invalid --{flag}: {reason}")]
    InvalidArg {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A socket could not be bound: names the address and the flag it came
    /// from ([`DnsArgs::listen_flag`]).
    #[error(transparent)]
    Listen(#[from] rancher_runtime::listen::BindError),
    /// The server could not start.
    #[error("starting the dns server failed")]
    Server(#[from] server::Error),
    /// The controller's thread or its runtime could not start.
    #[error("starting the dns controller thread failed")]
    Thread(#[source] std::io::Error),
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// EndpointSlices per list page while the controller lists them.
pub const SLICE_PAGE: u32 = 100;

/// The flag of [`DnsArgs::listen`].
pub const LISTEN_FLAG: &str = "--listen";

/// Command-line settings of the DNS server and controller.
#[derive(Clone, Debug)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct DnsArgs {
    /// UDP and TCP address to serve DNS on.
    #[cfg_attr(feature = "clap", arg(long, default_value = server::DEFAULT_LISTEN))]
    pub listen: SocketAddr,
    /// The flag `listen` came from, named when it cannot be bound:
    /// [`LISTEN_FLAG`] unless a program embeds the server under a flag of
    /// its own (the sandbox's `--dns-listen`).
    #[cfg_attr(feature = "clap", arg(skip = LISTEN_FLAG))]
    pub listen_flag: &'static str,
    /// The cluster domain.
    #[cfg_attr(feature = "clap", arg(long, default_value = crate::model::DEFAULT_CLUSTER_DOMAIN))]
    pub cluster_domain: String,
    /// Upstream resolver for other names (`IP` or `IP:PORT`, repeatable);
    /// defaults to the nameservers of `--resolv-conf`.
    #[cfg_attr(feature = "clap", arg(long = "upstream", value_name = "ADDR"))]
    pub upstreams: Vec<String>,
    /// Where default upstreams come from.
    #[cfg_attr(feature = "clap", arg(long, default_value = "/etc/resolv.conf"))]
    pub resolv_conf: PathBuf,
    /// Record TTL in seconds (also the negative-caching TTL).
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 5))]
    pub ttl: u32,
    /// Pod records: disabled, insecure or verified.
    #[cfg_attr(feature = "clap", arg(long, default_value = "disabled"))]
    pub pods: PodRecords,
    /// Use pod names as endpoint labels when an endpoint has no hostname.
    #[cfg_attr(feature = "clap", arg(long))]
    pub endpoint_pod_names: bool,
    /// Serve only these namespaces (repeatable; default all).
    #[cfg_attr(feature = "clap", arg(long = "namespace", value_name = "NS"))]
    pub namespaces: Vec<String>,
    /// Reverse zones answered NXDOMAIN on a miss, e.g. `43.10.in-addr.arpa`
    /// (repeatable); other reverse misses are forwarded.
    #[cfg_attr(feature = "clap", arg(long = "reverse-zone", value_name = "ZONE"))]
    pub reverse_zones: Vec<String>,
    /// UDP sockets (one thread each); 0 means one per core.
    #[cfg_attr(feature = "clap", arg(long, default_value_t = 0))]
    pub udp_threads: usize,
    /// Also write Rancher DNS's answers.json here.
    #[cfg_attr(feature = "clap", arg(long, value_name = "PATH"))]
    pub answers_file: Option<PathBuf>,
}

impl Default for DnsArgs {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([0, 0, 0, 0], 53)),
            listen_flag: LISTEN_FLAG,
            cluster_domain: crate::model::DEFAULT_CLUSTER_DOMAIN.to_owned(),
            upstreams: Vec::new(),
            resolv_conf: PathBuf::from("/etc/resolv.conf"),
            ttl: 5,
            pods: PodRecords::Disabled,
            endpoint_pod_names: false,
            namespaces: Vec::new(),
            reverse_zones: Vec::new(),
            udp_threads: 0,
            answers_file: None,
        }
    }
}

impl DnsArgs {
    /// The zone options.
    pub fn options(&self) -> Result<Options> {
        let invalid = |flag, e: name::Error| Error::InvalidArg {
            flag,
            reason: e.to_string(),
        };
        let zone =
            name::normalize(&self.cluster_domain).map_err(|e| invalid("cluster-domain", e))?;
        let mut reverse_zones = Vec::new();
        for z in &self.reverse_zones {
            reverse_zones.push(name::normalize(z).map_err(|e| invalid("reverse-zone", e))?);
        }
        Ok(Options {
            zone,
            ttl: Duration::from_secs(u64::from(self.ttl)),
            pods: self.pods,
            endpoint_pod_names: self.endpoint_pod_names,
            namespaces: (!self.namespaces.is_empty())
                .then(|| self.namespaces.iter().cloned().collect()),
            reverse_zones,
            nameserver_addresses: Vec::new(),
        })
    }

    /// The upstream resolvers: `--upstream`, else the resolv.conf
    /// nameservers other than this server itself.
    pub fn upstreams(&self) -> Result<Vec<SocketAddr>> {
        if !self.upstreams.is_empty() {
            return self
                .upstreams
                .iter()
                .map(|u| {
                    u.parse::<SocketAddr>()
                        .or_else(|_| u.parse::<IpAddr>().map(|ip| SocketAddr::new(ip, 53)))
                        .map_err(|_| Error::InvalidArg {
                            flag: "upstream",
                            reason: format!("{u:?} is not IP or IP:PORT"),
                        })
                })
                .collect();
        }
        let text = std::fs::read_to_string(&self.resolv_conf).unwrap_or_default();
        let me = self.listen;
        Ok(parse_resolv_conf(&text)
            .into_iter()
            .filter(|u| {
                let same_port = u.port() == me.port();
                !(same_port
                    && (u.ip() == me.ip() || (me.ip().is_unspecified() && u.ip().is_loopback())))
            })
            .collect())
    }

    /// The server settings.
    pub fn server_config(&self) -> Result<ServerConfig> {
        Ok(ServerConfig {
            listen: self.listen,
            udp_threads: self.udp_threads,
            forward: ForwardConfig {
                upstreams: self.upstreams()?,
                ..ForwardConfig::default()
            },
            ..ServerConfig::default()
        })
    }
}

/// Runs the watches and publishes changes to `backends` until `shutdown`.
///
/// The first full state goes out with [`DnsBackend::sync`] once every watch
/// has listed; `ready` (if given) is marked then. Later events go out with
/// [`DnsBackend::apply`], batched as they queue up. A backend that fails an
/// `apply` gets a full `sync` again after a second.
pub async fn run(
    client: kube::Client,
    options: Options,
    backends: Vec<Arc<dyn DnsBackend>>,
    metrics: Metrics,
    ready: Option<rancher_runtime::ready::Pending>,
    shutdown: CancellationToken,
) {
    let pods = options.pods == PodRecords::Verified;
    let (sink, changes) = DnsIndex::new(options, metrics);
    let sink = Arc::new(RwLock::new(sink));
    let watches = Readiness::new();
    let mut tasks = tokio::task::JoinSet::new();
    let config = watcher::Config::default;
    {
        // The lean `object` types: list pages and events are decoded into the
        // fields DNS uses, never into whole objects.
        let events = index::watch(Api::<object::Service>::all(client.clone()), config());
        let events = tracked(events, ready.as_ref(), "services");
        tasks.spawn(follow(
            sink.clone(),
            events,
            Some(watches.register("services")),
        ));
        // An EndpointSlice holds up to 100 endpoints (1 000 at most): list
        // them in pages of 100, the most the watcher holds at a time.
        let events = index::watch(
            Api::<object::EndpointSlice>::all(client.clone()),
            config().page_size(SLICE_PAGE),
        );
        let events = tracked(events, ready.as_ref(), "endpointslices");
        tasks.spawn(follow(
            sink.clone(),
            events,
            Some(watches.register("endpointslices")),
        ));
        if pods {
            let events = index::watch(Api::<object::Pod>::all(client.clone()), config());
            let events = tracked(events, ready.as_ref(), "pods");
            tasks.spawn(follow(sink.clone(), events, Some(watches.register("pods"))));
        }
    }
    tokio::select! {
        () = publish(sink, changes, backends, watches, ready) => {}
        () = shutdown.cancelled() => {}
    }
    tasks.shutdown().await;
}

/// Reports the watch's staleness to the process's readiness (through the part
/// `run` was given) but keeps the process ready: DNS answers from its last
/// view while the API server is away.
fn tracked<K>(events: Watch<K>, ready: Option<&Pending>, name: &str) -> Watch<K>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    match ready {
        Some(ready) => events.tracked(ready.readiness().track_watch(name).ready_when_stale()),
        None => events,
    }
}

async fn publish(
    sink: Arc<RwLock<DnsIndex>>,
    mut changes: mpsc::UnboundedReceiver<Vec<Change>>,
    backends: Vec<Arc<dyn DnsBackend>>,
    watches: Readiness,
    ready: Option<rancher_runtime::ready::Pending>,
) {
    watches.wait().await;
    let mut ready = ready;
    let mut stale = vec![true; backends.len()];
    loop {
        if stale.iter().any(|s| *s) {
            // Changes queued so far are part of the full state: drop them
            // while holding the lock that writers need to queue more. The
            // view shares the index's records, so this copies nothing.
            let zone = {
                let mut guard = sink.write();
                guard.start_publishing();
                while changes.try_recv().is_ok() {}
                guard.records().view()
            };
            for (backend, stale) in backends.iter().zip(stale.iter_mut()) {
                if *stale {
                    match backend.sync(&zone).await {
                        Ok(()) => *stale = false,
                        Err(error) => tracing::warn!(%error, "dns backend sync failed"),
                    }
                }
            }
            tracing::info!(names = zone.len(), "dns zone synced");
            drop(zone);
            if stale.iter().all(|s| !*s) {
                if let Some(r) = ready.take() {
                    r.ready();
                }
            } else {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        }
        let Some(mut batch) = changes.recv().await else {
            return;
        };
        while let Ok(more) = changes.try_recv() {
            batch.extend(more);
        }
        for (backend, stale) in backends.iter().zip(stale.iter_mut()) {
            if let Err(error) = backend.apply(&batch).await {
                tracing::warn!(%error, "dns backend apply failed; resyncing");
                *stale = true;
            }
        }
        if stale.iter().any(|s| *s) {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }
}

/// A running DNS service: the built-in server plus the controller task.
#[derive(Debug)]
pub struct Dns {
    server: Server,
    /// Fires when the controller thread is done.
    controller: tokio::sync::oneshot::Receiver<()>,
    snapshots: Arc<arc_swap::ArcSwap<crate::snapshot::Snapshot>>,
}

impl Dns {
    /// Starts the server on `args.listen` and the controller, on a thread
    /// of its own. Metrics go to `registry`; `readiness` gets a `dns` part
    /// that turns ready once the first full zone is served.
    pub async fn start(
        args: &DnsArgs,
        client: kube::Client,
        registry: &mut Registry,
        readiness: &Readiness,
        shutdown: CancellationToken,
    ) -> Result<Self> {
        let options = args.options()?;
        let config = args.server_config()?;
        let metrics = Metrics::register(registry);
        let server_backend = Arc::new(ServerBackend::new(&options, metrics.clone()));
        let snapshots = server_backend.snapshots();
        let server = Server::start(&config, snapshots.clone(), metrics.clone()).map_err(
            |error| match error {
                server::Error::Bind {
                    protocol,
                    addr,
                    source,
                } => Error::Listen(rancher_runtime::listen::BindError::new(
                    if protocol == "tcp" {
                        "dns server (tcp)"
                    } else {
                        "dns server (udp)"
                    },
                    addr,
                    Some(args.listen_flag),
                    source,
                )),
                other => Error::Server(other),
            },
        )?;
        let mut backends: Vec<Arc<dyn DnsBackend>> = vec![server_backend];
        if let Some(path) = &args.answers_file {
            backends.push(Arc::new(AnswersBackend::new(AnswersConfig {
                path: path.clone(),
                zone: options.zone.clone(),
                search: vec![format!("svc.{}", options.zone)],
                recurse: config
                    .forward
                    .upstreams
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                ttl: options.ttl_secs(),
            })));
        }
        tracing::info!(upstreams = ?config.forward.upstreams, zone = %options.zone, "starting dns");
        let ready = readiness.register("dns");
        // The controller runs on a thread of its own: everything it
        // allocates (listed objects, the index, snapshots) then comes from
        // one allocator arena, so the memory a list frees is reused by the
        // index built from it instead of staying behind in another
        // worker's arena (at 10 000 Services with 100 000 endpoints the
        // binary held 154 MB after the first sync on the shared runtime,
        // 138 MB on its own thread).
        // The runtime is built and dropped on that thread: a runtime may not
        // be dropped in async code, which a failed spawn would do.
        let (done, controller) = tokio::sync::oneshot::channel();
        let (started, runtime_built) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("dns-controller".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = started.send(Err(error));
                        return;
                    }
                };
                let _ = started.send(Ok(()));
                runtime.block_on(run(
                    client,
                    options,
                    backends,
                    metrics,
                    Some(ready),
                    shutdown,
                ));
                let _ = done.send(());
            })
            .map_err(Error::Thread)?;
        runtime_built
            .await
            .unwrap_or_else(|_| Err(std::io::Error::other("the controller thread ended")))
            .map_err(Error::Thread)?;
        Ok(Self {
            server,
            controller,
            snapshots,
        })
    }

    /// The address the server is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// Whether the first full zone is being served.
    pub fn synced(&self) -> bool {
        self.snapshots.load().synced()
    }

    /// Waits for the controller to stop (after shutdown), then stops the server.
    pub async fn stopped(self) {
        let _ = self.controller.await;
        self.server.shutdown().await;
    }
}
