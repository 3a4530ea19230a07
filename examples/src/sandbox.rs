//! The whole stack on one machine, as `./scripts/sandbox` runs it.
//!
//! [`run`] starts, in one process and in this order:
//!
//! 1. the in-memory API server (`rancher-sandbox`) seeded from a directory of
//!    manifests, writing a kubeconfig for `kubectl`;
//! 2. its workloads: the controllers (Deployments, StatefulSets,
//!    EndpointSlices, garbage collection, ...), a scheduler and one sandbox
//!    node per host address (loopback `127.0.0.2`, `127.0.0.3`), labelled
//!    with a zone and a region, whose pods answer on loopback addresses
//!    (every container port an echo server answering with the pod's name and
//!    the request path);
//! 3. the DNS server (`rancher-dns`);
//! 4. one load balancer driver shared by the Ingress controller
//!    (`rancher-ingress`) and the cloud controller (`rancher-cloudprovider`):
//!    HAProxy (`rancher-lb`), one process per host serving every load
//!    balancer placed there, or with `--rancher-fake` the Rancher driver
//!    against `rancher-client`'s fake Rancher server;
//! 5. the admin server (`/readyz`, `/metrics`).
//!
//! It says when each part is ready, waits for the demo's pods to be ready and
//! the Ingresses and `type: LoadBalancer` Services to get addresses, prints a guide of commands
//! built from what is actually running, and on Ctrl-C or SIGTERM stops
//! everything, HAProxy processes included.

mod federation;
mod guide;
mod pod_network;
mod rancher_fake;
mod scoped;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::apps::v1::{DaemonSet, Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ListParams};
use kube::runtime::watcher;
use parking_lot::RwLock;
use prometheus_client::registry::Registry;
use rancher_cloudprovider::controller::{Config as CloudConfig, Controller as CloudController};
use rancher_cloudprovider::rancher::{
    HOST_REGION_LABEL, HOST_ZONE_LABEL, NodeLabelInstances, RancherCloud, RancherLoadBalancer,
};
use rancher_dns::controller::{Dns, DnsArgs};
use rancher_ingress::backend::lb::LbBackend;
use rancher_ingress::nodes::{self, NodeHosts};
use rancher_ingress::run::IngressArgs;
use rancher_lb::driver::Driver;
use rancher_lb::haproxy::{HaproxyConfig, HaproxyDriver};
use rancher_runtime::admin::{AdminArgs, AdminState};
use rancher_runtime::index;
use rancher_runtime::lease::Leadership;
use rancher_runtime::ready::Readiness;
use rancher_runtime::shutdown::Shutdown;
use rancher_sandbox::workloads::CniNetwork;
use rancher_sandbox::{PodNetwork, SandboxNode, Workloads};

pub use self::guide::EXPECT_PREFIX;
use self::scoped::Scoped;

/// The demo manifests shipped with this package.
pub const DEMO_MANIFESTS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/manifests");

/// The line printed once the guide is out and everything runs.
pub const READY_LINE: &str = "The sandbox is running. Press Ctrl-C to stop it.";

/// What a guide line starts with when it is a command to try.
pub const COMMAND_PREFIX: &str = "  $ ";

/// How long to wait for the demo's Ingresses and Services to get addresses.
const STATUS_DEADLINE: Duration = Duration::from_secs(60);

/// The sandbox's admin port (`--admin`, on loopback): its own, so that it runs beside
/// the binaries it stands in for (see the port table in `deploy/README.md`).
pub const ADMIN_PORT: u16 = 9993;

/// Settings of the sandbox, as command-line flags.
#[derive(Clone, Debug, clap::Args)]
pub struct SandboxArgs {
    /// Directory of manifests loaded into the API server at start.
    #[arg(long, value_name = "DIR", default_value = DEMO_MANIFESTS)]
    pub manifests: PathBuf,
    /// Where to write the kubeconfig for `kubectl`.
    #[arg(long, value_name = "PATH", default_value = "target/sandbox/kubeconfig")]
    pub kubeconfig_out: PathBuf,
    /// Working directory for HAProxy configurations and sockets.
    #[arg(long, value_name = "DIR", default_value = "target/sandbox/run")]
    pub run_dir: PathBuf,
    /// Loopback addresses standing for hosts (one fake Node and one HAProxy each).
    #[arg(
        long = "host",
        value_name = "ADDR",
        default_values = ["127.0.0.2", "127.0.0.3"]
    )]
    pub hosts: Vec<IpAddr>,
    /// UDP and TCP address of the DNS server.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5353")]
    pub dns_listen: SocketAddr,
    /// Upstream resolvers for names outside the cluster (default: /etc/resolv.conf).
    #[arg(long = "dns-upstream", value_name = "ADDR")]
    pub dns_upstreams: Vec<String>,
    /// UDP and TCP address of the DNS server for the federation demo's zone
    /// (`example.org`, served by rancher-dns's built-in server).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:5355")]
    pub federation_dns_listen: SocketAddr,
    /// Address of the admin server (`/livez`, `/readyz`, `/metrics`).
    #[arg(long, value_name = "ADDR", default_value_t = SocketAddr::from(([127, 0, 0, 1], ADMIN_PORT)))]
    pub admin: SocketAddr,
    /// Run the Rancher load balancer driver against an in-process fake Rancher
    /// server instead of HAProxy (statuses only: no traffic is served).
    #[arg(long)]
    pub rancher_fake: bool,
    /// How pods get their addresses: `loopback` (a loopback address per pod),
    /// `cni` (root only: a network namespace per pod wired by the `rancher-cni`
    /// plugin built next to this binary, with an address from the node's range
    /// of `--cluster-cidr`, reachable from the host) or `auto`: `cni` when run
    /// as root with the plugin built and `--cluster-cidr` not routed on the
    /// host already, `loopback` otherwise (the first line says which and why).
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = pod_network::MODES)]
    pub pod_network: String,
    /// The cluster's pod range, a /24 per node.
    #[arg(long, value_name = "CIDR", default_value = rancher_sandbox::workloads::DEFAULT_CLUSTER_CIDR)]
    pub cluster_cidr: String,
}

/// One host of the sandbox: a loopback address, a Node name and a zone.
#[derive(Clone, Debug)]
struct HostSpec {
    name: String,
    address: IpAddr,
    zone: String,
}

fn host_specs(addresses: &[IpAddr]) -> Vec<HostSpec> {
    addresses
        .iter()
        .enumerate()
        .map(|(i, address)| HostSpec {
            name: format!("host-{}", i + 1),
            address: *address,
            zone: format!("zone-{}", char::from(b'a' + (i % 26) as u8)),
        })
        .collect()
}

/// Writes one line to stdout at once (a closed stdout is ignored: the
/// sandbox keeps running).
fn say(line: impl std::fmt::Display) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The load balancer driver in use.
enum Lb {
    Haproxy(Arc<HaproxyDriver>),
    Rancher(rancher_client::testing::FakeRancher),
}

impl Lb {
    async fn stop(&self) {
        match self {
            Self::Haproxy(driver) => driver.shutdown().await,
            Self::Rancher(fake) => fake.shutdown(),
        }
    }
}

/// Runs the sandbox until Ctrl-C or SIGTERM.
///
/// # Errors
///
/// When a part cannot start: an address in use (another sandbox running?),
/// a missing `haproxy` binary, an unreadable manifests directory.
pub async fn run(args: SandboxArgs) -> anyhow::Result<()> {
    let shutdown = Shutdown::on_signals();
    let hosts = host_specs(&args.hosts);
    let run_dir = std::path::absolute(&args.run_dir)
        .with_context(|| format!("--run-dir {}", args.run_dir.display()))?;
    if let Some(dir) = args.kubeconfig_out.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("creating {} for the kubeconfig", dir.display()))?;
    }

    // 1. The API server, with its controllers, scheduler and sandbox nodes.
    let sandbox = rancher_sandbox::Sandbox::builder()
        .kubeconfig_path(&args.kubeconfig_out)
        .manifests_dir(&args.manifests)
        .workloads(workloads(&args, &hosts, &run_dir))
        .start()
        .await
        .context("starting the API server")?;
    for error in sandbox.seed_errors() {
        say(format_args!("! manifest not loaded: {error}"));
    }
    say(format_args!(
        "✓ API server on http://{} (manifests from {}), kubeconfig {}",
        sandbox.addr(),
        args.manifests.display(),
        args.kubeconfig_out.display()
    ));
    // 2. The nodes (one per host address) and their pods.
    say(format_args!(
        "✓ controllers, scheduler and sandbox nodes {}; pods answer on {} (images are not run: every container port is an echo server answering with the pod's name)",
        hosts
            .iter()
            .map(|h| format!("{} ({}, {})", h.name, h.address, h.zone))
            .collect::<Vec<_>>()
            .join(", "),
        sandbox
            .cluster(0)
            .and_then(|c| c.pod_network())
            .unwrap_or("loopback")
    ));

    let result = run_parts(&args, &hosts, &run_dir, sandbox.client(), &shutdown).await;
    if let Err(error) = &result {
        say(format_args!("✗ {error:#}"));
    }
    sandbox.shutdown().await;
    say("stopped");
    result
}

/// Everything after the API server; stops what it started before returning.
async fn run_parts(
    args: &SandboxArgs,
    hosts: &[HostSpec],
    run_dir: &Path,
    client: kube::Client,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let readiness = Readiness::new();
    let mut registry = Registry::default();

    // 3. DNS.
    let dns_args = DnsArgs {
        listen: args.dns_listen,
        listen_flag: "--dns-listen",
        upstreams: args.dns_upstreams.clone(),
        udp_threads: 1,
        ..DnsArgs::default()
    };
    let dns_ready = Readiness::new();
    let dns = Dns::start(
        &dns_args,
        client.clone(),
        &mut registry,
        &dns_ready,
        shutdown.token(),
    )
    .await
    .context("starting DNS")?;
    announce(
        &readiness,
        "dns",
        dns_ready,
        format!("DNS server on {} (zone cluster.local)", args.dns_listen),
    );

    // 4. One driver for both controllers.
    let lb = match start_driver(
        args,
        hosts,
        run_dir,
        &client,
        (&readiness, &mut registry),
        shutdown,
    )
    .await
    {
        Ok(lb) => lb,
        Err(error) => {
            shutdown.trigger();
            dns.stopped().await;
            return Err(error);
        }
    };
    let result = run_controllers(args, hosts, &lb, client, readiness, registry, shutdown).await;
    shutdown.trigger();
    if let Err(error) = shutdown.drain(Duration::from_secs(10)).await {
        say(format_args!("! {error}"));
    }
    dns.stopped().await;
    lb.0.stop().await;
    say(format_args!("✓ {} stopped", lb.2));
    result
}

/// Starts the driver; returns it with a name for messages.
async fn start_driver(
    args: &SandboxArgs,
    hosts: &[HostSpec],
    run_dir: &Path,
    client: &kube::Client,
    (readiness, registry): (&Readiness, &mut Registry),
    shutdown: &Shutdown,
) -> anyhow::Result<(Lb, Arc<dyn Driver>, &'static str)> {
    if args.rancher_fake {
        let specs: Vec<(String, IpAddr, String)> = hosts
            .iter()
            .map(|h| (h.name.clone(), h.address, h.zone.clone()))
            .collect();
        let (driver, fake) = rancher_fake::Refreshing::start(&specs, shutdown.token())
            .await
            .context("starting the fake Rancher server")?;
        say(format_args!(
            "✓ fake Rancher server on {} (Rancher load balancer driver; statuses only, no traffic)",
            fake.url()
        ));
        return Ok((Lb::Rancher(fake), driver, "fake Rancher server"));
    }
    let work_dir = run_dir.join("haproxy");
    let haproxy = Arc::new(
        HaproxyDriver::new(HaproxyConfig::new(&work_dir, Vec::new()))
            .await
            .context(
                "starting the HAProxy driver (is haproxy installed? apt-get install haproxy)",
            )?,
    );
    haproxy.register_metrics(registry.sub_registry_with_prefix("haproxy"));
    let driver: Arc<dyn Driver> = haproxy.clone();
    // Hosts come from the Nodes, as they would in a cluster.
    let (node_hosts, changes) = NodeHosts::new();
    let node_hosts = Arc::new(RwLock::new(node_hosts));
    let events = index::watch(Api::<Node>::all(client.clone()), watcher::Config::default());
    let nodes_ready = Readiness::new();
    let pending = nodes_ready.register("nodes");
    let token = shutdown.token();
    shutdown.spawn(async move {
        tokio::select! {
            () = index::cluster(node_hosts, events, Some(pending)) => {}
            () = token.cancelled() => {}
        }
    });
    shutdown.spawn(nodes::feed(driver.clone(), changes, shutdown.token()));
    announce(
        readiness,
        "haproxy",
        nodes_ready,
        format!(
            "HAProxy driver in {} on hosts {}",
            work_dir.display(),
            hosts
                .iter()
                .map(|h| h.address.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    );
    Ok((Lb::Haproxy(haproxy), driver, "HAProxy"))
}

async fn run_controllers(
    args: &SandboxArgs,
    hosts: &[HostSpec],
    lb: &(Lb, Arc<dyn Driver>, &'static str),
    client: kube::Client,
    readiness: Readiness,
    mut registry: Registry,
    shutdown: &Shutdown,
) -> anyhow::Result<()> {
    let driver = lb.1.clone();

    // The Ingress controller.
    let ingress_ready = Readiness::new();
    rancher_ingress::run::start(
        &IngressArgs::default(),
        client.clone(),
        Arc::new(LbBackend::new(Arc::new(Scoped::new(driver.clone())))),
        &mut registry,
        &ingress_ready,
        Leadership::always(),
        shutdown,
    );
    announce(
        &readiness,
        "ingress",
        ingress_ready,
        "Ingress controller (class rancher, controller rancher.io/ingress)".to_owned(),
    );

    // The cloud controller.
    let cloud = RancherCloud::new(
        RancherLoadBalancer::new(Arc::new(Scoped::new(driver)))
            .with_hosts(hosts.iter().map(|h| h.address)),
    )
    .with_instances(NodeLabelInstances);
    let controller = CloudController::new(client.clone(), Arc::new(cloud), CloudConfig::default());
    let cloud_ready = Readiness::new();
    {
        let (shutdown, cloud_ready) = (shutdown.clone(), cloud_ready.clone());
        shutdown.clone().spawn(async move {
            controller
                .run(Leadership::always(), cloud_ready, &shutdown)
                .await;
        });
    }
    announce(
        &readiness,
        "cloud",
        cloud_ready,
        "cloud controller (type: LoadBalancer Services)".to_owned(),
    );

    // The admin server.
    let admin = AdminArgs::<ADMIN_PORT> { addr: args.admin }
        .bind(AdminState::new(readiness.clone(), registry))
        .await?;
    shutdown.spawn(admin.serve(shutdown.token()));
    say(format_args!(
        "✓ admin server on http://{} (/readyz, /metrics)",
        args.admin
    ));

    tokio::select! {
        () = readiness.wait() => {}
        () = shutdown.triggered() => return Ok(()),
    }
    tokio::select! {
        () = wait_for_workloads(&client) => {}
        () = shutdown.triggered() => return Ok(()),
    }
    tokio::select! {
        () = wait_for_addresses(&client, hosts.len()) => {}
        () = shutdown.triggered() => return Ok(()),
    }
    let (federation, federation_lines) = start_federation(args, hosts, &client).await?;
    let rancher = match &lb.0 {
        Lb::Rancher(fake) => Some(fake),
        Lb::Haproxy(_) => None,
    };
    let mut guide = guide::guide(args, hosts, &client, rancher)
        .await
        .context("reading objects for the guide")?;
    guide.push_str(&federation_lines);
    say(guide);
    say(READY_LINE);
    shutdown.triggered().await;
    say("stopping...");
    drop(federation);
    Ok(())
}

/// Serves the federation demo's zone with the names of every
/// `type: LoadBalancer` Service that has an address; returns the server and
/// the guide's lines for it.
async fn start_federation(
    args: &SandboxArgs,
    hosts: &[HostSpec],
    client: &kube::Client,
) -> anyhow::Result<(federation::FederationDns, String)> {
    let services: Api<Service> = Api::all(client.clone());
    let mut published = Vec::new();
    for service in services.list(&ListParams::default()).await?.items {
        let addresses: Vec<IpAddr> = service_addresses(&service)
            .iter()
            .filter_map(|a| a.parse().ok())
            .collect();
        if is_load_balancer(&service) && !addresses.is_empty() {
            let meta = &service.metadata;
            published.push((
                meta.namespace.clone().unwrap_or_default(),
                meta.name.clone().unwrap_or_default(),
                addresses,
            ));
        }
    }
    let zones = hosts.iter().map(|h| h.zone.clone()).collect();
    let server = federation::start(
        args.federation_dns_listen,
        "sandbox",
        "region-1",
        zones,
        &published,
    )
    .await
    .with_context(|| {
        format!(
            "starting the federation demo's DNS on {} (--federation-dns-listen)",
            args.federation_dns_listen
        )
    })?;
    say(format_args!(
        "✓ federation {} of one member (this cluster): {} records in {} on {}",
        federation::NAME,
        server.records,
        federation::ZONE,
        args.federation_dns_listen
    ));
    let mut lines = String::new();
    if let Some((namespace, name, _)) = published.first() {
        let dig = format!(
            "dig @{} -p {} +short",
            args.federation_dns_listen.ip(),
            args.federation_dns_listen.port()
        );
        let global = format!(
            "{name}.{namespace}.{}.svc.{}",
            federation::NAME,
            federation::ZONE
        );
        let _ = writeln!(
            lines,
            "\nFederated names (rancher-federation's naming on rancher-dns's server), global and regional:"
        );
        let _ = writeln!(lines, "{COMMAND_PREFIX}{dig} {global}");
        let regional = format!(
            "{name}.{namespace}.{}.svc.region-1.{}",
            federation::NAME,
            federation::ZONE
        );
        let _ = writeln!(lines, "{COMMAND_PREFIX}{dig} {regional}");
    }
    Ok((server, lines))
}

/// Marks `name` ready in `all` and says so once `part` is ready.
fn announce(all: &Readiness, name: &str, part: Readiness, what: String) {
    let pending = all.register(name);
    tokio::spawn(async move {
        part.wait().await;
        say(format_args!("✓ {what} ready"));
        pending.ready();
    });
}

/// The sandbox nodes: one per host address, labelled with its zone and region
/// (the topology labels, and Rancher's host labels the cloud provider reads).
fn workloads(args: &SandboxArgs, hosts: &[HostSpec], run_dir: &Path) -> Workloads {
    let mut w = Workloads::new().cluster_cidr(args.cluster_cidr.clone());
    let exe_dir = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    let host = pod_network::Host::read(exe_dir.as_deref());
    let (mode, fallback) = pod_network::choose(&args.pod_network, &args.cluster_cidr, &host);
    if let Some(reason) = fallback {
        say(format_args!(
            "  pods on loopback addresses: {reason} (--pod-network auto)"
        ));
    }
    if mode == "cni" {
        let plugin =
            exe_dir.map_or_else(|| PathBuf::from("rancher-cni"), |d| d.join("rancher-cni"));
        w = w.pod_network(PodNetwork::Cni(CniNetwork::new(
            plugin,
            run_dir.join("cni"),
        )));
    }
    hosts.iter().fold(w, |w, host| {
        w.node(
            SandboxNode::new(host.name.clone(), host.address)
                .label("topology.kubernetes.io/zone", host.zone.clone())
                .label("topology.kubernetes.io/region", "region-1")
                .label(HOST_ZONE_LABEL, host.zone.clone())
                .label(HOST_REGION_LABEL, "region-1"),
        )
    })
}

/// Waits until every Deployment, StatefulSet and DaemonSet has its pods
/// ready, saying so for each with the pods' addresses; gives up after
/// [`STATUS_DEADLINE`] naming the others.
async fn wait_for_workloads(client: &kube::Client) {
    let deadline = tokio::time::Instant::now() + STATUS_DEADLINE;
    let mut announced = std::collections::BTreeSet::new();
    loop {
        let mut pending = Vec::new();
        for (kind, key, ready, wanted, selector) in workload_states(client).await {
            if ready < wanted {
                pending.push(format!("{kind} {key} ({ready}/{wanted})"));
            } else if announced.insert((kind, key.clone())) {
                let ns = key.split('/').next().unwrap_or_default();
                say(format_args!(
                    "✓ {kind} {key}: {ready}/{wanted} pods ready ({})",
                    pod_addresses(client, ns, &selector).await.join(", ")
                ));
            }
        }
        if pending.is_empty() {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            say(format_args!(
                "! not ready yet: {} (see `kubectl get pods` and `kubectl describe`)",
                pending.join(", ")
            ));
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (kind, namespace/name, ready pods, wanted pods, label selector) of every
/// workload.
async fn workload_states(client: &kube::Client) -> Vec<(&'static str, String, i32, i32, String)> {
    let selector = |s: Option<&BTreeMap<String, String>>| {
        s.into_iter()
            .flatten()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut out = Vec::new();
    let deployments: Api<Deployment> = Api::all(client.clone());
    for d in deployments
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
    {
        let spec = d.spec;
        let ready = d.status.and_then(|s| s.available_replicas).unwrap_or(0);
        out.push((
            "deployment",
            key(&d.metadata),
            ready,
            spec.replicas.unwrap_or(1),
            selector(spec.selector.match_labels.as_ref()),
        ));
    }
    let sets: Api<StatefulSet> = Api::all(client.clone());
    for s in sets
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
    {
        let spec = s.spec;
        let ready = s.status.and_then(|s| s.ready_replicas).unwrap_or(0);
        out.push((
            "statefulset",
            key(&s.metadata),
            ready,
            spec.replicas.unwrap_or(1),
            selector(spec.selector.match_labels.as_ref()),
        ));
    }
    let daemons: Api<DaemonSet> = Api::all(client.clone());
    for d in daemons
        .list(&ListParams::default())
        .await
        .map(|l| l.items)
        .unwrap_or_default()
    {
        let spec = d.spec;
        let status = d.status.unwrap_or_default();
        out.push((
            "daemonset",
            key(&d.metadata),
            status.number_ready,
            status.desired_number_scheduled,
            selector(spec.selector.match_labels.as_ref()),
        ));
    }
    out
}

/// `name IP` of the pods `selector` selects in `ns`.
async fn pod_addresses(client: &kube::Client, ns: &str, selector: &str) -> Vec<String> {
    let pods: Api<Pod> = Api::namespaced(client.clone(), ns);
    let list = pods
        .list(&ListParams::default().labels(selector))
        .await
        .map(|l| l.items)
        .unwrap_or_default();
    list.iter()
        .map(|p| {
            format!(
                "{} {}",
                p.metadata.name.as_deref().unwrap_or_default(),
                p.status
                    .as_ref()
                    .and_then(|s| s.pod_ip.as_deref())
                    .unwrap_or("-")
            )
        })
        .collect()
}

/// Waits until every Ingress has as many addresses as its `scale` asks (at
/// most one per host) and every `type: LoadBalancer` Service has one, saying
/// so for each; gives up after [`STATUS_DEADLINE`] naming the others. An
/// Ingress is announced once, with all its addresses: the guide shows
/// `scalelb` on both hosts, not on the first one Rancher reported.
async fn wait_for_addresses(client: &kube::Client, hosts: usize) {
    let deadline = tokio::time::Instant::now() + STATUS_DEADLINE;
    let mut announced = std::collections::BTreeSet::new();
    loop {
        let mut pending = Vec::new();
        for (kind, key, addresses, wanted) in addressed(client, hosts).await {
            if addresses.len() < wanted {
                pending.push(format!(
                    "{kind} {key} ({} of {wanted} addresses)",
                    addresses.len()
                ));
            } else if announced.insert((kind, key.clone())) && !addresses.is_empty() {
                say(format_args!(
                    "✓ {kind} {key} served on {}",
                    addresses.join(", ")
                ));
            }
        }
        if pending.is_empty() {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            say(format_args!(
                "! not all addresses yet for {} (see `kubectl describe` and the events)",
                pending.join(", ")
            ));
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// How many addresses an Ingress should get on `hosts` hosts: its `scale`
/// (1 when unset or unreadable; the controller reports a bad value), every
/// host when global.
fn wanted_addresses(ingress: &Ingress, hosts: usize) -> usize {
    use rancher_ingress::annotations as a;
    let global = ingress
        .metadata
        .annotations
        .as_ref()
        .and_then(|m| m.get(a::GLOBAL))
        .is_some_and(|v| v == "true");
    let scale = guide::annotation(ingress, [a::SCALE, a::LEGACY_SCALE])
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(1);
    if global { hosts } else { scale.min(hosts) }
}

/// Every Ingress and `type: LoadBalancer` Service with its status addresses
/// and how many it should get.
async fn addressed(
    client: &kube::Client,
    hosts: usize,
) -> Vec<(&'static str, String, Vec<String>, usize)> {
    let mut out = Vec::new();
    let ingresses: Api<Ingress> = Api::all(client.clone());
    if let Ok(list) = ingresses.list(&ListParams::default()).await {
        for ingress in list.items {
            out.push((
                "ingress",
                key(&ingress.metadata),
                ingress_addresses(&ingress),
                wanted_addresses(&ingress, hosts),
            ));
        }
    }
    let services: Api<Service> = Api::all(client.clone());
    if let Ok(list) = services.list(&ListParams::default()).await {
        for service in list.items.iter().filter(|s| is_load_balancer(s)) {
            out.push((
                "service",
                key(&service.metadata),
                service_addresses(service),
                1,
            ));
        }
    }
    out
}

fn key(meta: &kube::api::ObjectMeta) -> String {
    format!(
        "{}/{}",
        meta.namespace.as_deref().unwrap_or_default(),
        meta.name.as_deref().unwrap_or_default()
    )
}

fn ingress_addresses(ingress: &Ingress) -> Vec<String> {
    ingress
        .status
        .iter()
        .filter_map(|s| s.load_balancer.as_ref())
        .flat_map(|lb| lb.ingress.iter().flatten())
        .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
        .collect()
}

fn is_load_balancer(service: &Service) -> bool {
    service.spec.as_ref().and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
}

fn service_addresses(service: &Service) -> Vec<String> {
    service
        .status
        .iter()
        .filter_map(|s| s.load_balancer.as_ref())
        .flat_map(|lb| lb.ingress.iter().flatten())
        .filter_map(|i| i.ip.clone().or_else(|| i.hostname.clone()))
        .collect()
}
