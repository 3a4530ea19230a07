//! The federation controller end to end: three sandbox clusters in one process
//! (the first is also the host), members discovered by label, BIND on
//! loopback as the public DNS server, `dig` as the client.

use std::{collections::BTreeMap, future::Future, sync::Arc, time::Duration};

use k8s_openapi::{
    ByteString,
    api::{
        core::v1::{
            LoadBalancerIngress, LoadBalancerStatus, Namespace, Node, NodeAddress, NodeCondition,
            NodeStatus, Secret, Service, ServicePort, ServiceSpec, ServiceStatus,
        },
        discovery::v1::{Endpoint, EndpointConditions, EndpointSlice},
        events::v1::Event,
    },
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, CustomResourceExt, ResourceExt,
    api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams},
};
use rancher_cloudprovider::{
    controller::{Config as CloudConfig, Controller as CloudController},
    rancher::{NodeLabelInstances, RancherCloud, RancherLoadBalancer},
};
use rancher_federation::{
    controller::{Config, Controller},
    crd::{
        FederatedCluster, FederatedService, FederatedServiceSpec, Federation, FederationSpec,
        ServiceTemplate,
    },
    metrics::Metrics,
    provider::{DnsProvider, TsigKey},
    well_known::{FEDERATION_LABEL, KUBECONFIG_KEY, MANAGED_BY_LABEL, REGION_LABEL, ZONE_LABEL},
};
use rancher_lb::{
    haproxy::{HaproxyConfig, HaproxyDriver},
    placement::Host,
};
use rancher_runtime::{lease::Leadership, ready::Readiness, shutdown::Shutdown};
use rancher_sandbox::Sandbox;
use tokio_util::sync::CancellationToken;

use crate::bind::{ALGORITHM, Bind, KEY_NAME};

pub(crate) const NS: &str = "federation-system";
pub(crate) const FED: &str = "myfed";

/// Cluster i: (region, zone, the loopback host its load balancers run on).
const TOPOLOGY: [(&str, &str, &str); 3] = [
    ("r1", "r1-a", "127.0.42.1"),
    ("r1", "r1-b", "127.0.42.2"),
    ("r2", "r2-a", "127.0.42.3"),
];

/// The federated Services' port (the HAProxy listeners bind it on the hosts).
const PORT: i32 = 28080;

pub(crate) const GLOBAL: &str = "nginx.default.myfed.svc.example.org";
const R1: &str = "nginx.default.myfed.svc.r1.example.org";
const R2: &str = "nginx.default.myfed.svc.r2.example.org";
const R1A: &str = "nginx.default.myfed.svc.r1-a.r1.example.org";
const R1B: &str = "nginx.default.myfed.svc.r1-b.r1.example.org";
const R2A: &str = "nginx.default.myfed.svc.r2-a.r2.example.org";

pub(crate) struct World {
    sandbox: Sandbox,
    pub(crate) metrics: Metrics,
    pub(crate) host: kube::Client,
    shutdown: CancellationToken,
    /// The cloud controllers and their HAProxy drivers, when started.
    clouds: Option<(Shutdown, Vec<Arc<HaproxyDriver>>, tempfile::TempDir)>,
}

impl World {
    /// Three clusters with labelled nodes, the CRDs and the federation in
    /// the first, and the controller running with `provider`.
    pub(crate) async fn start(provider: Arc<dyn DnsProvider>) -> Self {
        Self::start_with(provider, None).await
    }

    /// Like [`World::start`], the controller also discovering members from
    /// the environments of `rancher`.
    pub(crate) async fn start_with(
        provider: Arc<dyn DnsProvider>,
        rancher: Option<rancher_client::Client>,
    ) -> Self {
        let world = Self::start_without_controller().await;
        let mut config = controller_config();
        config.rancher = rancher;
        let controller = Controller::new(world.host.clone(), config, provider)
            .with_metrics(world.metrics.clone());
        tokio::spawn(controller.run(world.shutdown.clone()));
        world
    }

    /// [`World::start`] without a controller: the test runs its own.
    pub(crate) async fn start_without_controller() -> Self {
        rancher_runtime::install_crypto_provider();
        let sandbox = Sandbox::builder()
            .clusters(3)
            .start()
            .await
            .expect("sandbox");
        let host = sandbox.clusters()[0].client();
        for crd in [
            Federation::crd(),
            FederatedCluster::crd(),
            FederatedService::crd(),
        ] {
            Api::<CustomResourceDefinition>::all(host.clone())
                .create(&PostParams::default(), &crd)
                .await
                .expect("crd created");
        }
        let mut ns = Namespace::default();
        ns.metadata.name = Some(NS.into());
        Api::<Namespace>::all(host.clone())
            .create(&PostParams::default(), &ns)
            .await
            .expect("namespace");
        for (i, (cluster, (region, zone, _))) in sandbox.clusters().iter().zip(TOPOLOGY).enumerate()
        {
            let mut node = Node::default();
            node.metadata.name = Some(format!("{zone}-node"));
            node.status = Some(NodeStatus {
                addresses: Some(vec![NodeAddress {
                    type_: "InternalIP".into(),
                    address: format!("127.0.42.{}", 11 + i),
                }]),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: "True".into(),
                    ..NodeCondition::default()
                }]),
                ..NodeStatus::default()
            });
            node.metadata.labels = Some(
                [
                    (REGION_LABEL.to_owned(), region.to_owned()),
                    (ZONE_LABEL.to_owned(), zone.to_owned()),
                ]
                .into(),
            );
            Api::<Node>::all(cluster.client())
                .create(&PostParams::default(), &node)
                .await
                .expect("node");
        }
        let mut federation = Federation::new(
            FED,
            FederationSpec {
                dns_suffix: "example.org".into(),
                ttl: None,
                health_check_period_seconds: Some(1),
                health_check_timeout_seconds: Some(2),
            },
        );
        federation.metadata.namespace = Some(NS.into());
        Api::<Federation>::namespaced(host.clone(), NS)
            .create(&PostParams::default(), &federation)
            .await
            .expect("federation");

        let shutdown = CancellationToken::new();
        let metrics = Metrics::default();
        Self {
            sandbox,
            metrics,
            host,
            shutdown,
            clouds: None,
        }
    }

    /// Runs rancher-cloudprovider's service controller in every member, with
    /// the Rancher load balancer on a real HAProxy on that member's loopback
    /// host address.
    async fn start_cloud_controllers(&mut self) {
        let dir = tempfile::tempdir().expect("tempdir");
        let shutdown = Shutdown::new();
        let mut drivers = Vec::new();
        for (i, cluster) in self.sandbox.clusters().iter().enumerate() {
            let address: std::net::IpAddr = TOPOLOGY[i].2.parse().unwrap();
            let driver = Arc::new(
                HaproxyDriver::new(HaproxyConfig::new(
                    dir.path().join(format!("cluster-{i}")),
                    vec![Host::new(address)],
                ))
                .await
                .expect("haproxy driver (Debian package haproxy)"),
            );
            drivers.push(driver.clone());
            let cloud = RancherCloud::new(
                RancherLoadBalancer::new(driver)
                    .with_hosts([address])
                    .with_settle_delay(Duration::from_millis(200)),
            )
            .with_instances(NodeLabelInstances);
            let controller = CloudController::new(
                cluster.client(),
                Arc::new(cloud),
                CloudConfig::default().with_cluster_name(format!("cluster-{i}")),
            );
            let stop = shutdown.clone();
            shutdown.spawn(async move {
                controller
                    .run(Leadership::always(), Readiness::new(), &stop)
                    .await;
            });
        }
        self.clouds = Some((shutdown, drivers, dir));
    }

    pub(crate) fn member(&self, i: usize) -> kube::Client {
        self.sandbox.clusters()[i].client()
    }

    /// Labels a credentials Secret for cluster `i` with the federation.
    pub(crate) async fn join(&self, i: usize) {
        self.join_through(i, &self.sandbox.clusters()[i].url())
            .await;
    }

    /// The URL of cluster `i`'s API server.
    pub(crate) fn url(&self, i: usize) -> String {
        self.sandbox.clusters()[i].url()
    }

    /// Like [`World::join`], with the API server reached at `url` (a proxy in
    /// front of cluster `i`).
    pub(crate) async fn join_through(&self, i: usize, url: &str) {
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(format!("cluster-{i}")),
                namespace: Some(NS.into()),
                labels: Some([(FEDERATION_LABEL.to_owned(), FED.to_owned())].into()),
                ..ObjectMeta::default()
            },
            data: Some(
                [(
                    KUBECONFIG_KEY.to_owned(),
                    ByteString(kubeconfig(url).into_bytes()),
                )]
                .into(),
            ),
            ..Secret::default()
        };
        Api::<Secret>::namespaced(self.host.clone(), NS)
            .create(&PostParams::default(), &secret)
            .await
            .expect("secret");
    }

    /// Points cluster `i`'s credentials at a port nobody listens on.
    async fn break_member(&self, i: usize) {
        let dead = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let patch = serde_json::json!({
            "data": { KUBECONFIG_KEY: base64(&kubeconfig(&format!("http://{dead}"))) }
        });
        Api::<Secret>::namespaced(self.host.clone(), NS)
            .patch(
                &format!("cluster-{i}"),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .expect("secret patched");
    }

    pub(crate) async fn federate(&self, name: &str) {
        self.federate_in("default", name).await;
    }

    /// A `FederatedService` `name` in namespace `ns` of the host.
    pub(crate) async fn federate_in(&self, ns: &str, name: &str) {
        let spec = ServiceSpec {
            type_: Some("LoadBalancer".into()),
            selector: Some([("app".to_owned(), name.to_owned())].into()),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: PORT,
                protocol: Some("TCP".into()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        };
        let mut fs = FederatedService::new(
            name,
            FederatedServiceSpec {
                federation: FED.into(),
                template: ServiceTemplate {
                    metadata: Default::default(),
                    spec,
                },
            },
        );
        fs.metadata.namespace = Some(ns.into());
        Api::<FederatedService>::namespaced(self.host.clone(), ns)
            .create(&PostParams::default(), &fs)
            .await
            .expect("federated service");
    }

    /// What the cloud controller would do in member `i` (for the tests that
    /// run none): a load balancer address; and one ready endpoint.
    pub(crate) async fn serve(&self, i: usize, name: &str) {
        self.set_load_balancer(i, name, TOPOLOGY[i].2).await;
        self.set_endpoint(i, name, true).await;
    }

    /// Writes the Service's load balancer status in member `i`.
    async fn set_load_balancer(&self, i: usize, name: &str, ip: &str) {
        let services: Api<Service> = Api::namespaced(self.member(i), "default");
        let status = ServiceStatus {
            load_balancer: Some(LoadBalancerStatus {
                ingress: Some(vec![LoadBalancerIngress {
                    ip: Some(ip.into()),
                    ..LoadBalancerIngress::default()
                }]),
            }),
            ..ServiceStatus::default()
        };
        services
            .patch_status(
                name,
                &PatchParams::default(),
                &Patch::Merge(&serde_json::json!({ "status": status })),
            )
            .await
            .expect("status patched");
    }

    /// What the EndpointSlice controller would do in member `i`: one endpoint
    /// for Service `name`, ready or not.
    async fn set_endpoint(&self, i: usize, name: &str, ready: bool) {
        let slice = EndpointSlice {
            metadata: ObjectMeta {
                name: Some(format!("{name}-1")),
                namespace: Some("default".into()),
                labels: Some([("kubernetes.io/service-name".to_owned(), name.to_owned())].into()),
                ..ObjectMeta::default()
            },
            address_type: "IPv4".into(),
            endpoints: Some(vec![Endpoint {
                addresses: vec![format!("10.42.{i}.5")],
                conditions: Some(EndpointConditions {
                    ready: Some(ready),
                    ..EndpointConditions::default()
                }),
                ..Endpoint::default()
            }]),
            ports: None,
        };
        let slices: Api<EndpointSlice> = Api::namespaced(self.member(i), "default");
        slices
            .patch(
                &format!("{name}-1"),
                &PatchParams::apply("e2e").force(),
                &Patch::Apply(&slice),
            )
            .await
            .expect("endpoint slice");
    }

    async fn member_service(&self, i: usize, name: &str) -> Option<Service> {
        Api::<Service>::namespaced(self.member(i), "default")
            .get_opt(name)
            .await
            .expect("get service")
    }

    pub(crate) async fn events_about(&self, ns: &str, name: &str) -> Vec<String> {
        Api::<Event>::namespaced(self.host.clone(), ns)
            .list(&ListParams::default())
            .await
            .expect("events")
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .map(|e| e.reason.unwrap_or_default())
            .collect()
    }

    pub(crate) async fn stop(self) {
        self.shutdown.cancel();
        if let Some((shutdown, drivers, _dir)) = self.clouds {
            shutdown.trigger();
            let _ = shutdown.drain(Duration::from_secs(10)).await;
            for driver in drivers {
                driver.shutdown().await;
            }
        }
        self.sandbox.shutdown().await;
    }
}

/// The controller settings of these tests: health checks every second.
pub(crate) fn controller_config() -> Config {
    let mut config = Config::new(NS);
    config.period = Duration::from_secs(1);
    config.timeout = Duration::from_secs(2);
    config
}

fn kubeconfig(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: member\n  cluster:\n    server: {server}\nusers:\n- name: member\n  user: {{}}\ncontexts:\n- name: member\n  context:\n    cluster: member\n    user: member\ncurrent-context: member\n"
    )
}

fn base64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Polls `check` until it returns `Some`, failing after 60 s.
pub(crate) async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `dig name kind` answers exactly `want` (sorted).
pub(crate) async fn wait_dig(bind: &Bind, name: &str, kind: &str, want: &[&str]) {
    let mut want: Vec<String> = want.iter().map(|s| (*s).to_owned()).collect();
    want.sort();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let last = loop {
        let got = bind.dig(name, kind);
        if got == want {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            break got;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    panic!("dig {name} {kind}: want {want:?}, last answer {last:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_clusters_federate_a_service_into_bind() {
    let mut bind = Bind::start().await;
    let mut world = World::start(Arc::new(bind.provider())).await;
    world.start_cloud_controllers().await;
    for i in 0..3 {
        world.join(i).await;
    }

    // Members are discovered from the labelled Secrets and health-checked.
    let clusters: Api<FederatedCluster> = Api::namespaced(world.host.clone(), NS);
    wait_for("three healthy members with topology", || {
        let clusters = clusters.clone();
        async move {
            let list = clusters.list(&ListParams::default()).await.ok()?;
            let ok = list.items.len() == 3
                && list.items.iter().all(|c| {
                    c.status
                        .as_ref()
                        .is_some_and(|s| s.healthy && s.region.is_some() && !s.zones.is_empty())
                });
            ok.then_some(())
        }
    })
    .await;
    let c1 = clusters.get("cluster-1").await.unwrap();
    let status = c1.status.unwrap();
    assert_eq!(status.region.as_deref(), Some("r1"));
    assert_eq!(status.zones, ["r1-b"]);

    // A user's own Service named like a federated one, in member 2.
    let mut user_web = Service::default();
    user_web.metadata.name = Some("web".into());
    user_web.spec = Some(ServiceSpec {
        ports: Some(vec![ServicePort {
            port: 8080,
            ..ServicePort::default()
        }]),
        ..ServiceSpec::default()
    });
    Api::<Service>::namespaced(world.member(2), "default")
        .create(&PostParams::default(), &user_web)
        .await
        .unwrap();

    world.federate("nginx").await;
    world.federate("web").await;
    for i in 0..3 {
        let service = wait_for("nginx in every member", || async {
            world.member_service(i, "nginx").await
        })
        .await;
        assert_eq!(
            service.labels().get(MANAGED_BY_LABEL).map(String::as_str),
            Some(FED)
        );
        assert_eq!(service.spec.unwrap().type_.as_deref(), Some("LoadBalancer"));
        // The cloud controller gives it the member's load balancer address;
        // the endpoint stands in for the EndpointSlice controller.
        world.set_endpoint(i, "nginx", true).await;
    }
    for (i, (_, _, host)) in TOPOLOGY.iter().enumerate() {
        let service = wait_for(
            "load balancer address from the cloud controller",
            || async {
                let service = world.member_service(i, "nginx").await?;
                let ip = service
                    .status
                    .as_ref()?
                    .load_balancer
                    .as_ref()?
                    .ingress
                    .as_ref()?
                    .first()?
                    .ip
                    .clone()?;
                (ip == *host).then_some(service)
            },
        )
        .await;
        assert!(
            service
                .finalizers()
                .iter()
                .any(|f| f == "service.kubernetes.io/load-balancer-cleanup"),
            "the cloud controller owns the load balancer"
        );
        // HAProxy listens on the member's host address.
        tokio::net::TcpStream::connect((*host, PORT as u16))
            .await
            .expect("the load balancer accepts connections");
    }

    // All three addresses globally, the subsets by region and zone.
    wait_dig(
        &bind,
        GLOBAL,
        "A",
        &["127.0.42.1", "127.0.42.2", "127.0.42.3"],
    )
    .await;
    wait_dig(&bind, R1, "A", &["127.0.42.1", "127.0.42.2"]).await;
    wait_dig(&bind, R2, "A", &["127.0.42.3"]).await;
    wait_dig(&bind, R1A, "A", &["127.0.42.1"]).await;
    wait_dig(&bind, R1B, "A", &["127.0.42.2"]).await;
    wait_dig(&bind, R2A, "A", &["127.0.42.3"]).await;

    wait_for("metrics: three healthy members, nine records", || async {
        let labels = rancher_federation::metrics::FederationLabels {
            federation: FED.into(),
        };
        let healthy = world.metrics.healthy_members.get_or_create(&labels).get();
        let records = world.metrics.records.get_or_create(&labels).get();
        // nginx: 3 global + 2 regions (3 addresses) + 3 zones; web: CNAMEs only.
        (healthy == 3 && records >= 9).then_some(())
    })
    .await;

    // The federated object's status has every cluster, region and zone.
    let services: Api<FederatedService> = Api::namespaced(world.host.clone(), "default");
    let nginx = wait_for("nginx status", || {
        let services = services.clone();
        async move {
            let fs = services.get("nginx").await.ok()?;
            let status = fs.status?;
            (status.clusters.iter().filter(|c| c.healthy).count() == 3).then_some(status)
        }
    })
    .await;
    assert_eq!(nginx.dns_name.as_deref(), Some(GLOBAL));
    let r1 = nginx.regions.iter().find(|r| r.region == "r1").unwrap();
    assert_eq!(r1.addresses, ["127.0.42.1", "127.0.42.2"]);
    assert_eq!(nginx.zones.len(), 3);

    // A template change reaches every member.
    services
        .patch(
            "nginx",
            &PatchParams::default(),
            &Patch::Merge(&serde_json::json!({
                "spec": { "template": { "metadata": { "labels": { "tier": "web" } } } }
            })),
        )
        .await
        .unwrap();
    for i in 0..3 {
        wait_for("template label in every member", || async {
            let service = world.member_service(i, "nginx").await?;
            (service.labels().get("tier").map(String::as_str) == Some("web")).then_some(())
        })
        .await;
    }

    // The user's Service is left alone and the collision reported.
    let web = wait_for("web collision reported", || {
        let services = services.clone();
        async move {
            let status = services.get("web").await.ok()?.status?;
            status
                .conditions
                .iter()
                .find(|c| c.type_ == "Propagated" && c.reason == "NameCollision")
                .cloned()
        }
    })
    .await;
    assert!(web.message.contains("cluster-2"), "{}", web.message);
    let theirs = world.member_service(2, "web").await.unwrap();
    assert!(
        theirs.labels().get(MANAGED_BY_LABEL).is_none(),
        "not taken over"
    );
    assert_eq!(
        theirs.spec.unwrap().ports.unwrap()[0].port,
        8080,
        "not changed"
    );
    assert!(
        world.member_service(0, "web").await.is_some(),
        "others still get it"
    );
    let reasons = world.events_about("default", "web").await;
    assert!(reasons.iter().any(|r| r == "NameCollision"), "{reasons:?}");

    // BIND restarts mid-run: a change made meanwhile (member 2's only
    // endpoint turns unready) converges after it is back.
    bind.stop();
    world.set_endpoint(2, "nginx", false).await;
    let feds: Api<Federation> = Api::namespaced(world.host.clone(), NS);
    wait_for("DNS failure reported", || {
        let feds = feds.clone();
        async move {
            let status = feds.get(FED).await.ok()?.status?;
            status
                .conditions
                .iter()
                .find(|c| c.type_ == "DNSPublished" && c.status == "False")
                .map(|_| ())
        }
    })
    .await;
    let reasons = world.events_about(NS, FED).await;
    assert!(
        reasons.iter().any(|r| r == "DNSUpdateFailed"),
        "{reasons:?}"
    );
    bind.restart().await;
    wait_dig(&bind, R2A, "CNAME", &[&format!("{R2}.")]).await;
    wait_dig(&bind, R2, "CNAME", &[&format!("{GLOBAL}.")]).await;
    wait_dig(&bind, GLOBAL, "A", &["127.0.42.1", "127.0.42.2"]).await;
    world.set_endpoint(2, "nginx", true).await;
    wait_dig(&bind, R2A, "A", &["127.0.42.3"]).await;

    // Member 1 becomes unreachable: it drops out and its zone name CNAMEs to
    // the region name.
    world.break_member(1).await;
    wait_dig(&bind, R1B, "CNAME", &[&format!("{R1}.")]).await;
    wait_dig(&bind, GLOBAL, "A", &["127.0.42.1", "127.0.42.3"]).await;
    wait_dig(&bind, R1, "A", &["127.0.42.1"]).await;
    let c1 = clusters.get("cluster-1").await.unwrap();
    let ready = c1
        .status
        .unwrap()
        .conditions
        .into_iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason, "Unreachable");
    let reasons = world.events_about(NS, "cluster-1").await;
    assert!(reasons.iter().any(|r| r == "Unreachable"), "{reasons:?}");

    // Removing the label makes member 2 leave: its region falls back to global.
    Api::<Secret>::namespaced(world.host.clone(), NS)
        .patch(
            "cluster-2",
            &PatchParams::default(),
            &Patch::Merge(
                &serde_json::json!({ "metadata": { "labels": { FEDERATION_LABEL: null } } }),
            ),
        )
        .await
        .unwrap();
    wait_for("cluster-2 removed", || {
        let clusters = clusters.clone();
        async move {
            clusters
                .get_opt("cluster-2")
                .await
                .ok()?
                .is_none()
                .then_some(())
        }
    })
    .await;
    wait_dig(&bind, GLOBAL, "A", &["127.0.42.1"]).await;
    // No member is in r2 any more: its names are gone, not left as CNAMEs.
    wait_dig(&bind, R2, "ANY", &[]).await;
    wait_dig(&bind, R2A, "ANY", &[]).await;
    // Member 1 is unreachable but still a member: its zone keeps the CNAME.
    wait_dig(&bind, R1B, "CNAME", &[&format!("{R1}.")]).await;

    // Deleting the federated Service removes the Services and every record.
    services
        .delete("nginx", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("nginx gone from member 0", || async {
        world
            .member_service(0, "nginx")
            .await
            .is_none()
            .then_some(())
    })
    .await;
    for name in [GLOBAL, R1, R2, R1A, R1B, R2A] {
        wait_dig(&bind, name, "ANY", &[]).await;
    }

    // Deleting the federation removes its remaining records (web's), the
    // Services it made and its discovered members; the user's Service stays.
    let web_global = "web.default.myfed.svc.example.org";
    let web_zone = "web.default.myfed.svc.r1-a.r1.example.org";
    wait_dig(
        &bind,
        web_zone,
        "CNAME",
        &["web.default.myfed.svc.r1.example.org."],
    )
    .await;
    feds.delete(FED, &DeleteParams::default()).await.unwrap();
    wait_for("federation gone", || {
        let feds = feds.clone();
        async move { feds.get_opt(FED).await.ok()?.is_none().then_some(()) }
    })
    .await;
    wait_dig(&bind, web_zone, "ANY", &[]).await;
    wait_dig(&bind, web_global, "ANY", &[]).await;
    wait_for("managed web Service deleted", || async {
        world.member_service(0, "web").await.is_none().then_some(())
    })
    .await;
    assert!(
        world.member_service(2, "web").await.is_some(),
        "the user's Service stays"
    );
    assert!(
        clusters
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "discovered members removed"
    );
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rejected_tsig_key_is_reported_and_nothing_else_stalls() {
    let bind = Bind::start().await;
    let wrong = TsigKey::new(KEY_NAME, ALGORITHM, "d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA==").unwrap();
    let world = World::start(Arc::new(bind.provider_with(Some(wrong)))).await;
    world.join(0).await;
    world.federate("nginx").await;

    // Propagation goes on.
    wait_for("nginx in member 0", || async {
        world.member_service(0, "nginx").await
    })
    .await;

    let feds: Api<Federation> = Api::namespaced(world.host.clone(), NS);
    let condition = wait_for("DNSUnauthorized", || {
        let feds = feds.clone();
        async move {
            let status = feds.get(FED).await.ok()?.status?;
            status
                .conditions
                .into_iter()
                .find(|c| c.type_ == "DNSPublished" && c.reason == "DNSUnauthorized")
        }
    })
    .await;
    assert_eq!(condition.status, "False");
    assert!(
        !condition.message.contains("d3Jvbm"),
        "no secret in {}",
        condition.message
    );
    let reasons = world.events_about(NS, FED).await;
    assert!(
        reasons.iter().any(|r| r == "DNSUnauthorized"),
        "{reasons:?}"
    );
    assert!(bind.dig(GLOBAL, "A").is_empty());
    world.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_invalid_member_kubeconfig_is_reported_and_others_work() {
    let bind = Bind::start().await;
    let world = World::start(Arc::new(bind.provider())).await;
    world.join(0).await;
    let bad = Secret {
        metadata: ObjectMeta {
            name: Some("broken".into()),
            namespace: Some(NS.into()),
            labels: Some([(FEDERATION_LABEL.to_owned(), FED.to_owned())].into()),
            ..ObjectMeta::default()
        },
        data: Some(BTreeMap::from([(
            KUBECONFIG_KEY.to_owned(),
            ByteString(b"not: [a kubeconfig".to_vec()),
        )])),
        ..Secret::default()
    };
    Api::<Secret>::namespaced(world.host.clone(), NS)
        .create(&PostParams::default(), &bad)
        .await
        .unwrap();
    world.federate("nginx").await;
    wait_for("nginx in member 0", || async {
        world.member_service(0, "nginx").await
    })
    .await;
    world.serve(0, "nginx").await;
    wait_dig(&bind, GLOBAL, "A", &["127.0.42.1"]).await;

    let clusters: Api<FederatedCluster> = Api::namespaced(world.host.clone(), NS);
    let ready = wait_for("broken member reported", || {
        let clusters = clusters.clone();
        async move {
            let status = clusters.get("broken").await.ok()?.status?;
            status.conditions.into_iter().find(|c| c.type_ == "Ready")
        }
    })
    .await;
    assert_eq!(ready.status, "False");
    assert_eq!(ready.reason, "InvalidCredentials");
    assert!(
        ready.message.contains("federation-system/broken"),
        "{}",
        ready.message
    );
    let reasons = world.events_about(NS, "broken").await;
    assert!(
        reasons.iter().any(|r| r == "InvalidCredentials"),
        "{reasons:?}"
    );
    world.stop().await;
}
