//! The Ingress flows with the in-tree backend on `rancher-lb`'s Rancher driver,
//! against the fake Rancher server from `rancher-client`.

use std::{sync::Arc, time::Duration};

use rancher_client::testing::{FakeHost, FakeRancher};
use rancher_ingress::backend::lb::LbBackend;
use rancher_lb::{
    driver::Driver,
    model::LbId,
    rancher::{RancherConfig, RancherDriver},
};

use crate::support::*;

const IPS: [&str; 2] = ["192.0.2.11", "192.0.2.12"];

async fn start() -> (Running, Arc<RancherDriver>, FakeRancher) {
    rancher_runtime::install_crypto_provider();
    let fake = FakeRancher::builder()
        .host(FakeHost::new("node-1", IPS[0]))
        .host(FakeHost::new("node-2", IPS[1]))
        .settle_delay(Duration::from_millis(10))
        .setting("lb.instance.image", "rancher/lb-service-haproxy:v0.9.1")
        .start()
        .await
        .expect("fake Rancher starts");
    let (running, driver) = start_on(&fake).await;
    (running, driver, fake)
}

/// A controller on a new sandbox, with the Rancher driver on `fake`.
async fn start_on(fake: &FakeRancher) -> (Running, Arc<RancherDriver>) {
    let driver = Arc::new(RancherDriver::new(fake.client(), RancherConfig::new()));
    let backend = Arc::new(LbBackend::new(driver.clone()));
    // Rancher has no push: re-read what the backend ensured until it settles.
    {
        let (backend, driver) = (backend.clone(), driver.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let _ = driver.refresh(&backend.models()).await;
            }
        });
    }
    let running = Running::start(backend).await;
    running.apply(service("nginx-service", 80)).await;
    running
        .apply(slice("nginx-service", 8080, &["10.42.0.5"]))
        .await;
    (running, driver)
}

fn scalelb(scale: &str) -> k8s_openapi::api::networking::v1::Ingress {
    ingress(
        "scalelb",
        "rancher",
        &[("scale", scale)],
        &[("foo.bar.com", "/foo", "Prefix", "nginx-service", 80)],
    )
}

#[tokio::test]
async fn the_seed_example_scales_on_rancher_and_kubectl_shows_the_hosts() {
    let (running, _driver, _fake) = start().await;
    running.apply(scalelb("2")).await;
    running.wait_addresses("scalelb", &IPS).await;
    let table = running.kubectl(&["get", "ingress", "scalelb"]).await;
    assert!(table.contains("192.0.2.11,192.0.2.12"), "{table}");
    running.apply(scalelb("1")).await;
    wait_for("one address", || async {
        (running.addresses("scalelb").await.len() == 1).then_some(())
    })
    .await;
    running.apply(scalelb("2")).await;
    running.wait_addresses("scalelb", &IPS).await;
    running.stop().await;
}

#[tokio::test]
async fn deleting_removes_the_rancher_load_balancer_and_other_classes_are_ignored() {
    let (running, driver, _fake) = start().await;
    running
        .apply(ingress(
            "theirs",
            "nginx",
            &[],
            &[("bar.example.org", "/", "Prefix", "nginx-service", 80)],
        ))
        .await;
    running.apply(scalelb("1")).await;
    wait_for("one address", || async {
        (running.addresses("scalelb").await.len() == 1).then_some(())
    })
    .await;
    assert!(running.addresses("theirs").await.is_empty());
    let id = LbId::new("ingress-http80-x1").expect("id");
    assert!(driver.status(&id).await.expect("status").is_some());
    running.delete_ingress("scalelb").await;
    wait_for("the Rancher load balancer removed", || async {
        driver
            .status(&id)
            .await
            .expect("status")
            .is_none()
            .then_some(())
    })
    .await;
    running.stop().await;
}

#[tokio::test]
async fn a_restarted_controller_deletes_what_was_left_behind_and_only_that() {
    let (running, driver, fake) = start().await;
    running.apply(scalelb("1")).await;
    wait_for("one address", || async {
        (running.addresses("scalelb").await.len() == 1).then_some(())
    })
    .await;
    // Another controller's load balancer in the same stack, named the way
    // the cloud provider names them, in a cluster called `ingress-prod`.
    let theirs = rancher_lb::model::LoadBalancer::new(&rancher_lb::model::LoadBalancerSpec {
        id: "ingress-prod.default.web.abc123".into(),
        scale: 1,
        ..Default::default()
    })
    .expect("valid");
    driver.ensure(&theirs).await.expect("ensure");
    let ours = LbId::new("ingress-http80-x1").expect("id");
    let listed = driver.list().await.expect("list");
    assert!(
        listed.contains(&ours) && listed.contains(theirs.id()),
        "{listed:?}"
    );

    // The controller goes away; its Ingress is deleted meanwhile (here: the
    // new controller watches a cluster without it).
    running.stop().await;
    assert!(
        driver.list().await.expect("list").contains(&ours),
        "stopping a controller leaves its load balancers"
    );
    let (restarted, driver) = start_on(&fake).await;
    wait_for("the left-over load balancer deleted", || async {
        (!driver.list().await.expect("list").contains(&ours)).then_some(())
    })
    .await;
    assert!(
        driver.list().await.expect("list").contains(theirs.id()),
        "another controller's load balancer was deleted"
    );
    restarted.stop().await;
}
