//! The whole stack on one machine, as `./scripts/sandbox` runs it.
//!
//! [`run`] starts, in one process and in this order:
//!
//! 1. the in-memory API server (`rancher-sandbox`) seeded from a directory of
//!    manifests, writing a kubeconfig for `kubectl`;
//! 2. one fake Node per host address (loopback `127.0.0.2`, `127.0.0.3`),
//!    Ready, labelled with a zone and a region;
//! 3. an echo HTTP backend on every loopback address and TCP port the
//!    EndpointSlices name, answering with its name and the request path;
//! 4. the DNS server (`rancher-dns`);
//! 5. one load balancer driver shared by the Ingress controller
//!    (`rancher-ingress`) and the cloud controller (`rancher-cloudprovider`):
//!    HAProxy (`rancher-lb`), one process per host serving every load
//!    balancer placed there, or with `--rancher-fake` the Rancher driver
//!    against `rancher-client`'s fake Rancher server;
//! 6. the admin server (`/readyz`, `/metrics`).
//!
//! It says when each part is ready, waits for the Ingresses and
//! `type: LoadBalancer` Services to get addresses, prints a guide of commands
//! built from what is actually running, and on Ctrl-C or SIGTERM stops
//! everything, HAProxy processes included.

mod echo;
mod federation;
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
use k8s_openapi::api::core::v1::{Node, Secret, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
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
use serde_json::json;

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

    // 1. The API server.
    let sandbox = rancher_sandbox::Sandbox::builder()
        .kubeconfig_path(&args.kubeconfig_out)
        .manifests_dir(&args.manifests)
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
    // 2. Fake Nodes.
    create_nodes(&client, hosts).await?;
    say(format_args!(
        "✓ nodes: {}",
        hosts
            .iter()
            .map(|h| format!("{} ({}, {})", h.name, h.address, h.zone))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    // 3. Echo backends.
    let echoes = start_echoes(&client, shutdown).await?;
    say(format_args!(
        "✓ echo backends: {}",
        echoes
            .iter()
            .map(|(addr, name)| format!("{name} on {addr}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));

    let readiness = Readiness::new();
    let mut registry = Registry::default();

    // 4. DNS.
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

    // 5. One driver for both controllers.
    let lb = match start_driver(args, hosts, run_dir, &client, &readiness, shutdown).await {
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
    readiness: &Readiness,
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
        () = wait_for_addresses(&client) => {}
        () = shutdown.triggered() => return Ok(()),
    }
    let (federation, federation_lines) = start_federation(args, hosts, &client).await?;
    let mut guide = guide(args, &client)
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

async fn create_nodes(client: &kube::Client, hosts: &[HostSpec]) -> anyhow::Result<()> {
    let api: Api<Node> = Api::all(client.clone());
    for host in hosts {
        let labels = json!({
            "kubernetes.io/hostname": host.name,
            "kubernetes.io/os": "linux",
            "topology.kubernetes.io/zone": host.zone,
            "topology.kubernetes.io/region": "region-1",
            (HOST_ZONE_LABEL): host.zone,
            (HOST_REGION_LABEL): "region-1",
        });
        let status = json!({
            "addresses": [
                {"type": "InternalIP", "address": host.address.to_string()},
                {"type": "Hostname", "address": host.name},
            ],
            "conditions": [{
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "a loopback address standing for a host",
            }],
        });
        let node: Node = serde_json::from_value(json!({
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": host.name, "labels": labels},
            "status": status,
        }))
        .context("building a Node")?;
        match api.create(&PostParams::default(), &node).await {
            Ok(_) => {}
            Err(kube::Error::Api(status)) if status.code == 409 => {}
            Err(error) => {
                return Err(error).with_context(|| format!("creating Node {}", host.name));
            }
        }
        // Status is a subresource: make sure it is there whatever create kept.
        api.patch_status(
            &host.name,
            &PatchParams::default(),
            &Patch::Merge(json!({ "status": status })),
        )
        .await
        .with_context(|| format!("writing the status of Node {}", host.name))?;
    }
    Ok(())
}

/// Starts an echo backend on every loopback address and TCP port the
/// EndpointSlices name; returns them by address with their names.
async fn start_echoes(
    client: &kube::Client,
    shutdown: &Shutdown,
) -> anyhow::Result<BTreeMap<SocketAddr, String>> {
    let slices: Api<EndpointSlice> = Api::all(client.clone());
    let mut wanted = BTreeMap::new();
    for slice in slices.list(&ListParams::default()).await?.items {
        let service = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("kubernetes.io/service-name"))
            .cloned()
            .unwrap_or_else(|| "echo".to_owned());
        let ports: Vec<u16> = slice
            .ports
            .iter()
            .flatten()
            .filter(|p| p.protocol.as_deref().unwrap_or("TCP") == "TCP")
            .filter_map(|p| p.port.and_then(|p| u16::try_from(p).ok()))
            .collect();
        for endpoint in slice.endpoints.iter().flatten() {
            let name = endpoint
                .target_ref
                .as_ref()
                .and_then(|r| r.name.clone())
                .or_else(|| endpoint.hostname.clone())
                .unwrap_or_else(|| service.clone());
            for address in &endpoint.addresses {
                let Ok(ip) = address.parse::<IpAddr>() else {
                    continue;
                };
                if !ip.is_loopback() {
                    continue;
                }
                for port in &ports {
                    wanted
                        .entry(SocketAddr::new(ip, *port))
                        .or_insert_with(|| name.clone());
                }
            }
        }
    }
    for (addr, name) in &wanted {
        echo::start(*addr, name.clone(), shutdown.token())
            .await
            .with_context(|| {
                format!("starting the echo backend {name} on {addr} (is another sandbox running?)")
            })?;
    }
    Ok(wanted)
}

/// Waits until every Ingress and `type: LoadBalancer` Service has an address,
/// saying so for each; gives up after [`STATUS_DEADLINE`] naming the others.
async fn wait_for_addresses(client: &kube::Client) {
    let deadline = tokio::time::Instant::now() + STATUS_DEADLINE;
    let mut announced = std::collections::BTreeSet::new();
    loop {
        let mut pending = Vec::new();
        for (kind, key, addresses) in addressed(client).await {
            if addresses.is_empty() {
                pending.push(format!("{kind} {key}"));
            } else if announced.insert((kind, key.clone())) {
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
                "! no address yet for {} (see `kubectl describe` and the events)",
                pending.join(", ")
            ));
            return;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Every Ingress and `type: LoadBalancer` Service with its status addresses.
async fn addressed(client: &kube::Client) -> Vec<(&'static str, String, Vec<String>)> {
    let mut out = Vec::new();
    let ingresses: Api<Ingress> = Api::all(client.clone());
    if let Ok(list) = ingresses.list(&ListParams::default()).await {
        for ingress in list.items {
            out.push((
                "ingress",
                key(&ingress.metadata),
                ingress_addresses(&ingress),
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

/// The annotation value under the prefixed key or the bare one.
fn annotation<'a>(ingress: &'a Ingress, keys: [&str; 2]) -> Option<&'a str> {
    let annotations = ingress.metadata.annotations.as_ref()?;
    keys.iter()
        .find_map(|k| annotations.get(*k).map(String::as_str))
}

/// The guide: commands to try, built from the objects and addresses in use.
async fn guide(args: &SandboxArgs, client: &kube::Client) -> anyhow::Result<String> {
    use rancher_ingress::annotations as a;
    let kubeconfig = args.kubeconfig_out.display();
    let mut g = String::new();
    let cmd = |g: &mut String, line: String| {
        let _ = writeln!(g, "{COMMAND_PREFIX}{line}");
    };
    let _ = writeln!(g, "\nThings to try:\n");
    let _ = writeln!(
        g,
        "Objects, as a cluster shows them (addresses in ADDRESS / EXTERNAL-IP):"
    );
    cmd(
        &mut g,
        format!("kubectl --kubeconfig {kubeconfig} get nodes,ingress,services"),
    );

    // Ingresses.
    let ingresses: Api<Ingress> = Api::all(client.clone());
    for ingress in ingresses.list(&ListParams::default()).await?.items {
        let addresses = ingress_addresses(&ingress);
        let Some(spec) = ingress.spec.as_ref() else {
            continue;
        };
        let Some((host, path)) = spec.rules.iter().flatten().find_map(|r| {
            let host = r.host.clone()?;
            let path = r
                .http
                .as_ref()?
                .paths
                .first()
                .and_then(|p| p.path.clone())
                .unwrap_or_else(|| "/".to_owned());
            Some((host, path))
        }) else {
            continue;
        };
        let tls = spec
            .tls
            .iter()
            .flatten()
            .any(|t| t.hosts.iter().flatten().any(|h| *h == host));
        let _ = writeln!(
            g,
            "\nIngress {} routes {host}{path}, on {}:",
            key(&ingress.metadata),
            if addresses.is_empty() {
                "no address yet".to_owned()
            } else {
                addresses.join(" and ")
            }
        );
        let allow_http =
            annotation(&ingress, [a::ALLOW_HTTP, a::LEGACY_ALLOW_HTTP]) != Some("false");
        let http_port = annotation(&ingress, [a::HTTP_PORT, a::LEGACY_HTTP_PORT]).unwrap_or("80");
        let https_port =
            annotation(&ingress, [a::HTTPS_PORT, a::LEGACY_HTTPS_PORT]).unwrap_or("443");
        for address in addresses.iter().filter(|_| !args.rancher_fake) {
            if tls {
                cmd(
                    &mut g,
                    format!(
                        "curl -fsS -k --resolve {host}:{https_port}:{address} https://{host}:{https_port}{path}"
                    ),
                );
            } else if allow_http {
                let port = if http_port == "80" {
                    String::new()
                } else {
                    format!(":{http_port}")
                };
                cmd(
                    &mut g,
                    format!("curl -fsS -H 'Host: {host}' http://{address}{port}{path}"),
                );
            }
        }
    }

    // LoadBalancer Services.
    let services: Api<Service> = Api::all(client.clone());
    let services = services.list(&ListParams::default()).await?.items;
    for service in services.iter().filter(|s| is_load_balancer(s)) {
        let addresses = service_addresses(service);
        let port = service
            .spec
            .as_ref()
            .and_then(|s| s.ports.as_ref())
            .and_then(|p| p.first())
            .map_or(80, |p| p.port);
        let _ = writeln!(
            g,
            "\ntype: LoadBalancer Service {} (TCP; the demo's backends speak HTTP):",
            key(&service.metadata)
        );
        for address in addresses.iter().filter(|_| !args.rancher_fake) {
            cmd(&mut g, format!("curl -fsS http://{address}:{port}/"));
        }
    }

    if args.rancher_fake {
        let _ = writeln!(
            g,
            "\n(--rancher-fake: the fake Rancher server only reports where Rancher would run \
             the load balancers, nothing serves traffic, and Rancher's host-port rule keeps \
             load balancers sharing a port on different hosts.)"
        );
    }

    // DNS.
    let dig = format!(
        "dig @{} -p {} +short",
        args.dns_listen.ip(),
        args.dns_listen.port()
    );
    let _ = writeln!(g, "\nCluster DNS:");
    let slices: Api<EndpointSlice> = Api::all(client.clone());
    let slices = slices.list(&ListParams::default()).await?.items;
    for service in &services {
        let (Some(name), Some(ns)) = (&service.metadata.name, &service.metadata.namespace) else {
            continue;
        };
        let spec = service.spec.clone().unwrap_or_default();
        let headless = spec.cluster_ip.as_deref() == Some("None");
        if headless {
            let hostname = slices
                .iter()
                .filter(|s| {
                    s.metadata.namespace.as_deref() == Some(ns)
                        && s.metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get("kubernetes.io/service-name"))
                            == Some(name)
                })
                .flat_map(|s| s.endpoints.iter().flatten())
                .find_map(|e| e.hostname.clone());
            if let Some(hostname) = hostname {
                cmd(
                    &mut g,
                    format!("{dig} {hostname}.{name}.{ns}.svc.cluster.local"),
                );
            }
            cmd(&mut g, format!("{dig} {name}.{ns}.svc.cluster.local"));
            if let Some(port) = spec.ports.iter().flatten().find(|p| p.name.is_some()) {
                let port_name = port.name.as_deref().unwrap_or_default();
                let protocol = port.protocol.as_deref().unwrap_or("TCP").to_lowercase();
                cmd(
                    &mut g,
                    format!("{dig} SRV _{port_name}._{protocol}.{name}.{ns}.svc.cluster.local"),
                );
            }
        } else if spec.type_.as_deref().unwrap_or("ClusterIP") == "ClusterIP"
            && !(ns == "default" && name == "kubernetes")
        {
            cmd(&mut g, format!("{dig} {name}.{ns}.svc.cluster.local"));
        }
    }

    // Registry credentials.
    let secrets: Api<Secret> = Api::all(client.clone());
    let provider = credential_provider_command();
    for secret in secrets.list(&ListParams::default()).await?.items {
        if secret.type_.as_deref() != Some("kubernetes.io/dockerconfigjson") {
            continue;
        }
        let Some(registry) = first_registry(&secret) else {
            continue;
        };
        let _ = writeln!(
            g,
            "\nThe kubelet credential provider, answering from Secret {}:",
            key(&secret.metadata)
        );
        cmd(
            &mut g,
            format!(
                "echo '{{\"kind\":\"CredentialProviderRequest\",\"apiVersion\":\"credentialprovider.kubelet.k8s.io/v1\",\"image\":\"{registry}/app:1\"}}' | {provider} --secret {} --kubeconfig {kubeconfig}",
                key(&secret.metadata)
            ),
        );
    }

    let _ = writeln!(g, "\nHealth and metrics of the controllers:");
    cmd(&mut g, format!("curl -fsS http://{}/readyz", args.admin));
    cmd(&mut g, format!("curl -fsS http://{}/metrics", args.admin));
    if !args.rancher_fake {
        let _ = writeln!(
            g,
            "\nHAProxy configurations, one per host: {}/haproxy/",
            std::path::absolute(&args.run_dir)
                .unwrap_or_else(|_| args.run_dir.clone())
                .display()
        );
    }
    Ok(g)
}

/// The first registry of a `kubernetes.io/dockerconfigjson` Secret.
fn first_registry(secret: &Secret) -> Option<String> {
    let data = secret.data.as_ref()?.get(".dockerconfigjson")?;
    let config: serde_json::Value = serde_json::from_slice(&data.0).ok()?;
    let registry = config.get("auths")?.as_object()?.keys().next()?.clone();
    // Keep the guide's command shell-safe.
    registry
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".-:".contains(&b))
        .then_some(registry)
}

/// How to run the credential provider binary: next to this one when built,
/// else through cargo.
fn credential_provider_command() -> String {
    let sibling = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("rancher-credential-provider")))
        .filter(|p| p.is_file());
    match sibling {
        Some(path) => path.display().to_string(),
        None => "cargo run -q -p rancher-examples --bin rancher-credential-provider --".to_owned(),
    }
}
