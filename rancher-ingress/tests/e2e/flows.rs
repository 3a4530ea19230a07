//! The Ingress flows with the in-tree backend on `rancher-lb`'s fake driver:
//! what the API server and `kubectl` see.

use std::{net::IpAddr, sync::Arc, time::Duration};

use rancher_ingress::backend::lb::LbBackend;
use rancher_lb::{placement::Host, testing::FakeDriver};
use rancher_runtime::lease::{LeaderArgs, Leadership};

use crate::support::*;

const ORG_CRT: &str = include_str!("../data/example.org.crt");
const ORG_KEY: &str = include_str!("../data/example.org.key");
const NET_KEY: &str = include_str!("../data/example.net.key");

fn fake() -> Arc<FakeDriver> {
    let hosts = ["127.0.0.2", "127.0.0.3"]
        .iter()
        .map(|a| Host::new(a.parse::<IpAddr>().expect("address")))
        .collect();
    Arc::new(FakeDriver::new(hosts))
}

async fn start() -> (Running, Arc<FakeDriver>) {
    let driver = fake();
    let running = Running::start(Arc::new(LbBackend::new(driver.clone()))).await;
    running.apply(service("nginx-service", 80)).await;
    running
        .apply(slice("nginx-service", 8080, &["127.0.0.1"]))
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
async fn the_seed_example_gets_two_addresses_that_kubectl_shows() {
    let (running, _driver) = start().await;
    running.apply(scalelb("2")).await;
    running
        .wait_addresses("scalelb", &["127.0.0.2", "127.0.0.3"])
        .await;
    let table = running.kubectl(&["get", "ingress", "scalelb"]).await;
    assert!(
        table.contains("127.0.0.2,127.0.0.3"),
        "kubectl shows both addresses:\n{table}"
    );
    let events = running.events("scalelb").await;
    assert!(
        events
            .iter()
            .any(|(type_, reason, _)| type_ == "Normal" && reason == "Synced"),
        "{events:?}"
    );
    running.stop().await;
}

#[tokio::test]
async fn scale_goes_from_two_to_one_and_back() {
    let (running, driver) = start().await;
    running.apply(scalelb("2")).await;
    running
        .wait_addresses("scalelb", &["127.0.0.2", "127.0.0.3"])
        .await;
    running.apply(scalelb("1")).await;
    running.wait_addresses("scalelb", &["127.0.0.2"]).await;
    wait_for("the scale-2 load balancer deleted", || {
        let ids = driver.ids();
        async move { (ids.len() == 1).then_some(()) }
    })
    .await;
    running.apply(scalelb("2")).await;
    running
        .wait_addresses("scalelb", &["127.0.0.2", "127.0.0.3"])
        .await;
    running.stop().await;
}

#[tokio::test]
async fn other_classes_are_ignored_and_deleting_removes_the_load_balancer() {
    let (running, driver) = start().await;
    running
        .apply(ingress(
            "theirs",
            "nginx",
            &[],
            &[("bar.example.org", "/", "Prefix", "nginx-service", 80)],
        ))
        .await;
    running.apply(scalelb("1")).await;
    running.wait_addresses("scalelb", &["127.0.0.2"]).await;
    assert!(running.addresses("theirs").await.is_empty());
    let lb = driver.applied(&driver.ids()[0]).expect("applied");
    assert!(
        lb.http_routes()
            .iter()
            .all(|r| r.host.to_string() == "foo.bar.com"),
        "only our Ingress is routed: {:?}",
        lb.http_routes()
    );
    running.delete_ingress("scalelb").await;
    wait_for("load balancer deleted", || {
        let ids = driver.ids();
        async move { ids.is_empty().then_some(()) }
    })
    .await;
    running.stop().await;
}

#[tokio::test]
async fn an_ingress_moved_to_another_class_has_its_status_cleared() {
    let (running, _driver) = start().await;
    running.apply(scalelb("1")).await;
    running.wait_addresses("scalelb", &["127.0.0.2"]).await;
    let mut moved = scalelb("1");
    moved.spec.as_mut().expect("spec").ingress_class_name = Some("nginx".into());
    running.apply(moved).await;
    running.wait_addresses("scalelb", &[]).await;
    running.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_warning_naming_the_field_and_others_are_served() {
    let (running, driver) = start().await;
    running.apply(scalelb("1")).await;
    running
        .apply(ingress(
            "two",
            "rancher",
            &[("scale", "two")],
            &[("two.example.org", "/", "Prefix", "nginx-service", 80)],
        ))
        .await;
    running
        .apply(ingress(
            "semicolon",
            "rancher",
            &[],
            &[("semi.example.org", "/a;b", "Prefix", "nginx-service", 80)],
        ))
        .await;
    running
        .apply(ingress(
            "regex",
            "rancher",
            &[],
            &[(
                "regex.example.org",
                "/api/(.*)",
                "ImplementationSpecific",
                "nginx-service",
                80,
            )],
        ))
        .await;
    running
        .apply(ingress(
            "snippet",
            "rancher",
            &[("config", "global\n  lua-load /tmp/x.lua")],
            &[("snippet.example.org", "/", "Prefix", "nginx-service", 80)],
        ))
        .await;
    running
        .apply(tls_secret("mismatch", ORG_CRT, NET_KEY))
        .await;
    running
        .apply(with_tls(
            ingress(
                "badtls",
                "rancher",
                &[],
                &[("www.example.org", "/", "Prefix", "nginx-service", 80)],
            ),
            &[(&["www.example.org"], "mismatch")],
        ))
        .await;
    running
        .wait_warning("two", r#"metadata.annotations["scale"]"#)
        .await;
    running
        .wait_warning("semicolon", "spec.rules[0].http.paths[0].path")
        .await;
    running.wait_warning("regex", "regular expression").await;
    running
        .wait_warning("snippet", r#"metadata.annotations["config"]"#)
        .await;
    running
        .wait_warning("badtls", "spec.tls[0].secretName")
        .await;
    running.wait_addresses("scalelb", &["127.0.0.2"]).await;
    for name in ["two", "semicolon", "regex", "snippet", "badtls"] {
        assert!(
            running.addresses(name).await.is_empty(),
            "{name} has no status"
        );
    }
    for id in driver.ids() {
        let lb = driver.applied(&id).expect("applied");
        for route in lb.http_routes() {
            assert_eq!(
                route.host.to_string(),
                "foo.bar.com",
                "nothing of a rejected Ingress reaches the driver"
            );
        }
    }
    // A good Secret fixes the TLS Ingress.
    running
        .apply(tls_secret("mismatch", ORG_CRT, ORG_KEY))
        .await;
    wait_for("badtls served once its Secret is fixed", || async {
        (running.addresses("badtls").await.len() == 1).then_some(())
    })
    .await;
    running.stop().await;
}

/// A controller whose load balancers run on `host`, electing on the shared
/// Lease as `identity`.
async fn elected(
    running: &Running,
    identity: &str,
    host: &str,
) -> (
    rancher_runtime::shutdown::Shutdown,
    Leadership,
    Arc<FakeDriver>,
) {
    let shutdown = rancher_runtime::shutdown::Shutdown::new();
    let args = LeaderArgs {
        identity: Some(identity.to_owned()),
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_millis(1500),
        retry_period: Duration::from_millis(100),
        ..LeaderArgs::new("default", "rancher-ingress")
    };
    let (leadership, election) = args.start(running.client.clone(), shutdown.token());
    shutdown.spawn(election.expect("election enabled"));
    let driver = Arc::new(FakeDriver::new(vec![Host::new(
        host.parse::<IpAddr>().expect("address"),
    )]));
    running
        .start_controller(
            Arc::new(LbBackend::new(driver.clone())),
            leadership.clone(),
            &shutdown,
        )
        .await;
    (shutdown, leadership, driver)
}

#[tokio::test]
async fn only_the_leader_acts_and_a_standby_takes_over() {
    use rancher_lb::driver::Driver as _;
    let running = Running::without_controller().await;
    running.apply(service("nginx-service", 80)).await;
    running
        .apply(slice("nginx-service", 8080, &["127.0.0.1"]))
        .await;
    // Each replica's instances run on its own address, so the status tells
    // which replica wrote it.
    let (a, mut lead_a, _) = elected(&running, "replica-a", "127.0.0.2").await;
    assert!(lead_a.wait_leader().await);
    let (b, lead_b, driver_b) = elected(&running, "replica-b", "127.0.0.3").await;
    running.apply(scalelb("1")).await;
    running.wait_addresses("scalelb", &["127.0.0.2"]).await;
    assert!(!lead_b.is_leader(), "two leaders");
    assert!(
        driver_b.list().await.expect("list").is_empty(),
        "the standby programmed a load balancer"
    );

    // A stops and releases the Lease: B takes over, programs its load
    // balancer and rewrites the status.
    a.drain(Duration::from_secs(10)).await.expect("a stops");
    running.wait_addresses("scalelb", &["127.0.0.3"]).await;
    assert!(lead_b.is_leader());
    assert_eq!(driver_b.list().await.expect("list").len(), 1);
    b.drain(Duration::from_secs(10)).await.expect("b stops");
    running.stop().await;
}
