//! Leader failover: two replicas of the federation controller elect a leader
//! on a Lease; the leader is killed without releasing it (its runtime is
//! dropped mid-flight, as `kill -9` would end the process), and the standby
//! takes over once the Lease expires and changes nothing that is already
//! right: no DNS update (BIND's serial stays), no status write.

use std::{sync::Arc, time::Instant};

use kube::{Api, ResourceExt};
use rancher_federation::{
    controller::Controller,
    crd::{FederatedCluster, FederatedService, Federation},
    metrics::{FederationLabels, Metrics},
    provider::DnsProvider,
};
use rancher_runtime::lease::{LeaderArgs, Leadership};
use tokio_util::sync::CancellationToken;

use crate::{
    bind::{Bind, ZONE},
    federation::{FED, GLOBAL, NS, World, controller_config, wait_dig, wait_for},
};

/// One replica: a controller and its elector on a runtime of their own.
struct Replica {
    leadership: Leadership,
    kill: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Replica {
    fn start(
        identity: &str,
        url: String,
        provider: Arc<dyn DnsProvider>,
        metrics: Metrics,
    ) -> Self {
        let (ready, leadership) = std::sync::mpsc::channel();
        let (kill, killed) = tokio::sync::oneshot::channel::<()>();
        let identity = identity.to_owned();
        let thread = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async move {
                let client = kube::Client::try_from(kube::Config::new(url.parse().expect("url")))
                    .expect("client");
                let args = LeaderArgs {
                    identity: Some(identity),
                    ..LeaderArgs::new(NS, "rancher-federation-controller")
                };
                let shutdown = CancellationToken::new();
                let (leadership, elector) = args.start(client.clone(), shutdown.clone());
                tokio::spawn(elector.expect("election enabled"));
                let controller = Controller::new(client, controller_config(), provider)
                    .with_leadership(leadership.clone())
                    .with_metrics(metrics);
                tokio::spawn(controller.run(shutdown));
                ready.send(leadership).expect("test waits");
                let _ = killed.await;
            });
            // Every task is dropped with the runtime: nothing releases the Lease.
            drop(runtime);
        });
        Self {
            leadership: leadership.recv().expect("replica started"),
            kill: Some(kill),
            thread: Some(thread),
        }
    }

    /// Ends the replica at once, as `kill -9` would.
    fn kill(&mut self) {
        if let Some(kill) = self.kill.take() {
            let _ = kill.send(());
        }
        if let Some(thread) = self.thread.take() {
            thread.join().expect("replica thread");
        }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        self.kill();
    }
}

fn soa_serial(bind: &Bind) -> String {
    let soa = bind.dig(ZONE, "SOA");
    soa.first()
        .and_then(|line| line.split_whitespace().nth(2))
        .expect("an SOA record")
        .to_owned()
}

fn count(
    family: &prometheus_client::metrics::family::Family<
        FederationLabels,
        prometheus_client::metrics::counter::Counter,
    >,
) -> u64 {
    family
        .get_or_create(&FederationLabels {
            federation: FED.to_owned(),
        })
        .get()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_leader_is_replaced_and_the_standby_changes_nothing_already_right() {
    let bind = Bind::start().await;
    let world = World::start_without_controller().await;
    let mut a = Replica::start(
        "replica-a",
        world.url(0),
        Arc::new(bind.provider()),
        Metrics::default(),
    );
    let mut leadership = a.leadership.clone();
    assert!(leadership.wait_leader().await, "replica a leads");
    let b_metrics = Metrics::default();
    let b = Replica::start(
        "replica-b",
        world.url(0),
        Arc::new(bind.provider()),
        b_metrics.clone(),
    );
    assert!(!b.leadership.is_leader(), "replica b stands by");

    world.join(1).await;
    world.federate("nginx").await;
    wait_for("nginx in member 1", || async {
        Api::<k8s_openapi::api::core::v1::Service>::namespaced(world.member(1), "default")
            .get_opt("nginx")
            .await
            .ok()
            .flatten()
    })
    .await;
    world.serve(1, "nginx").await;
    wait_dig(&bind, GLOBAL, "A", &["127.0.42.2"]).await;
    // Settled: published and the status says so.
    let services: Api<FederatedService> = Api::namespaced(world.host.clone(), "default");
    wait_for("the federated service's status", || async {
        let fs = services.get("nginx").await.ok()?;
        let status = fs.status?;
        status
            .conditions
            .iter()
            .any(|c| c.type_ == "DNSPublished" && c.status == "True")
            .then_some(())
    })
    .await;
    let serial = soa_serial(&bind);
    let before = status_versions(&world).await;

    // kill -9 the leader.
    a.kill();
    let killed = Instant::now();
    let mut leadership = b.leadership.clone();
    assert!(leadership.wait_leader().await, "replica b takes over");
    println!(
        "federation: the standby led {:.1} s after the leader was killed (lease 15 s, retry 2 s)",
        killed.elapsed().as_secs_f64()
    );
    // Several reconciles (a health check a second) with nothing to change.
    let led = count(&b_metrics.reconciles);
    wait_for("three reconciles by the new leader", || async {
        (count(&b_metrics.reconciles) >= led + 3).then_some(())
    })
    .await;
    assert_eq!(count(&b_metrics.records_added), 0, "no record added");
    assert_eq!(count(&b_metrics.records_removed), 0, "no record removed");
    assert_eq!(soa_serial(&bind), serial, "no DNS update reached BIND");
    assert_eq!(status_versions(&world).await, before, "no status written");
    assert_eq!(bind.dig(GLOBAL, "A"), ["127.0.42.2"]);
    world.stop().await;
}

/// The resourceVersions of the objects whose status the controller writes.
async fn status_versions(world: &World) -> [String; 3] {
    let host = world.host.clone();
    let fs = Api::<FederatedService>::namespaced(host.clone(), "default")
        .get("nginx")
        .await
        .expect("federated service");
    let fc = Api::<FederatedCluster>::namespaced(host.clone(), NS)
        .get("cluster-1")
        .await
        .expect("federated cluster");
    let fed = Api::<Federation>::namespaced(host, NS)
        .get(FED)
        .await
        .expect("federation");
    [
        fs.resource_version(),
        fc.resource_version(),
        fed.resource_version(),
    ]
    .map(Option::unwrap_or_default)
}
