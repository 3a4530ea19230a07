//! The controller with the Rancher implementation on the Rancher driver, against
//! the fake Rancher server: status from `publicEndpoints`, scale, node provider
//! IDs and zones from hosts, deletion, and a Rancher API failing for a while.

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::Node;
use kube::{
    Api,
    api::{DeleteParams, Patch, PatchParams},
};
use rancher_client::{
    resource::LoadBalancerService,
    testing::{FakeHost, FakeRancher},
};
use rancher_cloudprovider::{
    controller::Config,
    rancher::{
        HOST_REGION_LABEL, HOST_ZONE_LABEL, RancherCloud, RancherHosts, RancherLoadBalancer,
        SCALE_ANNOTATION,
    },
    well_known::{REGION_LABEL, ZONE_LABEL},
};
use rancher_lb::rancher::{RancherConfig, RancherDriver};
use rancher_runtime::requeue::Backoff;
use serde_json::json;

use crate::support::{Running, mk_service, status_ips, wait_for};

async fn start() -> (Running, FakeRancher) {
    rancher_runtime::install_crypto_provider();
    let fake = FakeRancher::builder()
        .hosts([
            FakeHost::new("node-1", "192.0.2.11")
                .label(HOST_ZONE_LABEL, "zone-a")
                .label(HOST_REGION_LABEL, "region-1"),
            FakeHost::new("node-2", "192.0.2.12")
                .label(HOST_ZONE_LABEL, "zone-b")
                .label(HOST_REGION_LABEL, "region-1"),
        ])
        .settle_delay(Duration::from_millis(50))
        .start()
        .await
        .expect("fake rancher");
    let driver = RancherDriver::new(fake.client(), RancherConfig::new());
    let lb =
        RancherLoadBalancer::new(Arc::new(driver)).with_settle_delay(Duration::from_millis(100));
    let cloud = RancherCloud::new(lb).with_instances(RancherHosts::new(fake.client()));
    let backoff = Backoff {
        initial: Duration::from_millis(100),
        max: Duration::from_millis(500),
        jitter: 0.0,
    };
    let running = Running::start(Arc::new(cloud), Config::default().with_backoff(backoff)).await;
    running.create_node("node-1", "192.0.2.11").await;
    running.create_node("node-2", "192.0.2.12").await;
    (running, fake)
}

fn live_lbs(fake: &FakeRancher) -> Vec<LoadBalancerService> {
    fake.list::<LoadBalancerService>()
        .into_iter()
        .filter(|lb| lb.meta.removed.is_none() && lb.meta.state.as_deref() != Some("removed"))
        .collect()
}

#[tokio::test]
async fn rancher_load_balancer_lifecycle_and_nodes() {
    let (running, fake) = start().await;
    let services = running.services("default");
    running
        .create_service(mk_service(
            "default",
            "web",
            &[("http", 8080), ("admin", 8081)],
        ))
        .await;
    let svc = wait_for("status from publicEndpoints", || async {
        let svc = services.get("web").await.ok()?;
        (!status_ips(&svc).is_empty()).then_some(svc)
    })
    .await;
    let ips = status_ips(&svc);
    assert_eq!(ips.len(), 1, "{ips:?}");
    assert!(["192.0.2.11", "192.0.2.12"].contains(&ips[0].as_str()));
    let lbs = live_lbs(&fake);
    assert_eq!(lbs.len(), 1);
    let mut ports = lbs[0].public_ports();
    ports.sort_unstable();
    assert_eq!(ports, [8080, 8081]);

    // Scale is applied in place.
    services
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {SCALE_ANNOTATION: "2"}}})),
        )
        .await
        .unwrap();
    wait_for("two instances", || async {
        let svc = services.get("web").await.ok()?;
        (status_ips(&svc).len() == 2).then_some(())
    })
    .await;
    assert_eq!(live_lbs(&fake).len(), 1);
    assert_eq!(live_lbs(&fake)[0].scale, Some(2));

    // Nodes: provider ID and real zones from the hosts.
    let nodes: Api<Node> = Api::all(running.client.clone());
    let node = wait_for("node initialised", || async {
        let node = nodes.get("node-2").await.ok()?;
        node.metadata
            .labels
            .as_ref()
            .is_some_and(|l| l.contains_key(ZONE_LABEL))
            .then_some(node)
    })
    .await;
    let labels = node.metadata.labels.unwrap();
    assert_eq!(labels[ZONE_LABEL], "zone-b");
    assert_eq!(labels[REGION_LABEL], "region-1");
    let provider_id = node.spec.unwrap().provider_id.unwrap();
    assert!(provider_id.starts_with("rancher://"), "{provider_id}");

    // Deletion removes the Rancher load balancer before the Service goes.
    services
        .delete("web", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("service gone", || async {
        services.get_opt("web").await.ok()?.is_none().then_some(())
    })
    .await;
    // Rancher is removing it (or has): nothing is left active.
    assert!(
        live_lbs(&fake).iter().all(|lb| matches!(
            lb.meta.state.as_deref(),
            Some("removing" | "removed" | "purged")
        )),
        "{:?}",
        live_lbs(&fake)
    );
    wait_for("rancher finished removing", || async {
        live_lbs(&fake).is_empty().then_some(())
    })
    .await;
    running.stop().await;
}

#[tokio::test]
async fn services_converge_after_rancher_recovers_from_500s() {
    let (running, fake) = start().await;
    let services = running.services("default");
    fake.fail_next_with(1_000_000, 500);
    // Distinct ports: two hosts cannot hold three instances on one port.
    for (name, port) in [("one", 9000), ("two", 9001), ("three", 9002)] {
        running
            .create_service(mk_service("default", name, &[("http", port)]))
            .await;
    }
    // Every Service is attempted while Rancher fails: none waits behind another.
    for name in ["one", "two", "three"] {
        wait_for("a failure event per service", || async {
            running
                .event_reasons("default", name)
                .await
                .into_iter()
                .find(|(kind, e)| kind == "Warning" && e.starts_with("SyncLoadBalancerFailed"))
        })
        .await;
    }
    fake.clear_faults();
    for name in ["one", "two", "three"] {
        wait_for("converged after recovery", || async {
            let svc = services.get(name).await.ok()?;
            (!status_ips(&svc).is_empty()).then_some(())
        })
        .await;
    }
    assert_eq!(live_lbs(&fake).len(), 3);
    running.stop().await;
}
