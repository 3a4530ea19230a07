//! The controller with the fake provider on the sandbox: the full lifecycle of a
//! Service, through the real API (watches, finalizers, status subresource, events).

use std::{sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::{Node, Service};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};
use rancher_cloudprovider::{
    controller::Config,
    model::ServiceKey,
    testing::{Call, FakeCloud, FakeFailure, FakeLoadBalancer},
    well_known::{EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS, LOAD_BALANCER_CLEANUP_FINALIZER},
};
use serde_json::json;

use crate::support::{Running, mk_service, status_ips, wait_for};

async fn start() -> (Running, FakeLoadBalancer) {
    let cloud = FakeCloud::default();
    let lb = cloud.load_balancer.clone();
    let running = Running::start(Arc::new(cloud), Config::default()).await;
    running.create_node("node-a", "127.0.0.2").await;
    running.create_node("node-b", "127.0.0.3").await;
    (running, lb)
}

fn ensures(lb: &FakeLoadBalancer, key: &ServiceKey) -> usize {
    lb.calls_for(key)
        .iter()
        .filter(|c| matches!(c, Call::Ensure(..)))
        .count()
}

#[tokio::test]
async fn service_lifecycle_through_the_api() {
    let (running, lb) = start().await;
    let services = running.services("default");
    let key = ServiceKey::new("default", "echo");
    running
        .create_service(mk_service(
            "default",
            "echo",
            &[("tcp", 7000), ("alt", 7001)],
        ))
        .await;

    // Status, finalizer, events.
    let svc = wait_for("status", || async {
        let svc = services.get("echo").await.ok()?;
        (!status_ips(&svc).is_empty()).then_some(svc)
    })
    .await;
    assert_eq!(status_ips(&svc), ["100.64.0.1"]);
    assert_eq!(svc.finalizers(), [LOAD_BALANCER_CLEANUP_FINALIZER]);
    let balancer = lb.balancer(&key).unwrap();
    assert_eq!(balancer.nodes, ["node-a", "node-b"]);
    let node_ports: Vec<Option<u16>> = balancer.service.ports.iter().map(|p| p.node_port).collect();
    assert!(node_ports.iter().all(Option::is_some), "{node_ports:?}");
    let events = wait_for("events", || async {
        let events = running.event_reasons("default", "echo").await;
        events
            .iter()
            .any(|(_, e)| e.starts_with("EnsuredLoadBalancer"))
            .then_some(events)
    })
    .await;
    assert!(
        events
            .iter()
            .any(|(_, e)| e.starts_with("EnsuringLoadBalancer"))
    );
    assert_eq!(ensures(&lb, &key), 1, "{:?}", lb.calls_for(&key));

    // A port change re-ensures.
    services
        .patch(
            "echo",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"ports": [
                {"name": "tcp", "port": 7100, "protocol": "TCP"},
                {"name": "alt", "port": 7001, "protocol": "TCP"}
            ]}})),
        )
        .await
        .unwrap();
    wait_for("port change applied", || async {
        let b = lb.balancer(&key)?;
        (b.service.ports[0].port == 7100).then_some(())
    })
    .await;

    // A node joins; another is excluded.
    running.create_node("node-c", "127.0.0.4").await;
    wait_for("node added", || async {
        (lb.balancer(&key)?.nodes == ["node-a", "node-b", "node-c"]).then_some(())
    })
    .await;
    Api::<Node>::all(running.client.clone())
        .patch(
            "node-a",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"labels": {EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS: "true"}}}),
            ),
        )
        .await
        .unwrap();
    wait_for("node excluded", || async {
        (lb.balancer(&key)?.nodes == ["node-b", "node-c"]).then_some(())
    })
    .await;
    assert!(
        lb.calls_for(&key)
            .iter()
            .any(|c| matches!(c, Call::Update(_, nodes) if nodes.len() == 2))
    );

    // Deletion: the object stays until the load balancer is gone.
    lb.fail_delete(
        Some(key.clone()),
        FakeFailure::Error("provider down".into()),
        1,
    );
    services
        .delete("echo", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("service gone", || async {
        services.get_opt("echo").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(lb.balancer(&key).is_none());
    let deletes = lb
        .calls_for(&key)
        .iter()
        .filter(|c| matches!(c, Call::Delete(_)))
        .count();
    assert_eq!(deletes, 2, "one failure, then success");
    running.stop().await;
}

#[tokio::test]
async fn type_change_and_other_classes() {
    let (running, lb) = start().await;
    let services = running.services("default");
    running
        .create_service(mk_service("default", "web", &[("http", 8080)]))
        .await;
    let mut classed = mk_service("default", "classed", &[("http", 8081)]);
    classed.spec.as_mut().unwrap().load_balancer_class = Some("example.org/other".into());
    running.create_service(classed).await;

    wait_for("status", || async {
        let svc = services.get("web").await.ok()?;
        (!status_ips(&svc).is_empty()).then_some(())
    })
    .await;
    services
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {
                "type": "ClusterIP",
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
            }})),
        )
        .await
        .unwrap();
    let svc: Service = wait_for("cleanup after type change", || async {
        let svc = services.get("web").await.ok()?;
        (svc.finalizers().is_empty() && status_ips(&svc).is_empty()).then_some(svc)
    })
    .await;
    assert!(svc.metadata.deletion_timestamp.is_none());
    assert!(lb.balancer(&ServiceKey::new("default", "web")).is_none());

    let classed = services.get("classed").await.unwrap();
    assert!(classed.finalizers().is_empty());
    assert!(
        lb.calls_for(&ServiceKey::new("default", "classed"))
            .is_empty()
    );
    running.stop().await;
}

#[tokio::test]
async fn a_failing_service_converges_after_recovery_without_holding_up_others() {
    let (running, lb) = start().await;
    let services = running.services("default");
    let broken = ServiceKey::new("default", "broken");
    lb.fail_ensure(
        Some(broken.clone()),
        FakeFailure::Retry(Duration::from_millis(100)),
        5,
    );
    running
        .create_service(mk_service("default", "broken", &[("http", 9000)]))
        .await;
    for i in 0..5 {
        running
            .create_service(mk_service(
                "default",
                &format!("ok-{i}"),
                &[("http", 9001 + i)],
            ))
            .await;
    }
    for i in 0..5 {
        let name = format!("ok-{i}");
        wait_for("healthy services get status", || async {
            let svc = services.get(&name).await.ok()?;
            (!status_ips(&svc).is_empty()).then_some(())
        })
        .await;
    }
    wait_for("the broken one converges", || async {
        let svc = services.get("broken").await.ok()?;
        (!status_ips(&svc).is_empty()).then_some(())
    })
    .await;
    assert_eq!(ensures(&lb, &broken), 6);
    let events = running.event_reasons("default", "broken").await;
    assert!(
        events
            .iter()
            .any(|(_, e)| e.starts_with("LoadBalancerPending")),
        "{events:?}"
    );
    running.stop().await;
}
