//! The Ingress flows with the in-tree backend on `rancher-lb`'s Rancher driver,
//! against the fake Rancher server from `rancher-client`.

use std::{sync::Arc, time::Duration};

use rancher_client::{
    LoadBalancerService,
    testing::{FakeHost, FakeRancher},
};
use rancher_ingress::backend::lb::LbBackend;
use rancher_lb::{
    driver::Driver,
    model::LbId,
    rancher::{RancherConfig, RancherDriver},
};

use crate::support::*;

const IPS: [&str; 2] = ["192.0.2.11", "192.0.2.12"];
const ORG_CRT: &str = include_str!("../data/example.org.crt");
const ORG_KEY: &str = include_str!("../data/example.org.key");

async fn start() -> (Running, Arc<RancherDriver>, FakeRancher) {
    let fake = fake().await;
    let (running, driver) = start_on(&fake).await;
    (running, driver, fake)
}

/// A fake Rancher with two hosts.
async fn fake() -> FakeRancher {
    rancher_runtime::install_crypto_provider();
    FakeRancher::builder()
        .host(FakeHost::new("node-1", IPS[0]))
        .host(FakeHost::new("node-2", IPS[1]))
        .settle_delay(Duration::from_millis(10))
        .setting("lb.instance.image", "rancher/lb-service-haproxy:v0.9.1")
        .start()
        .await
        .expect("fake Rancher starts")
}

/// Starts the controller on `running` with the Rancher driver on `fake`.
async fn with_rancher(running: &Running, fake: &FakeRancher) -> Arc<RancherDriver> {
    let driver = Arc::new(RancherDriver::new(fake.client(), RancherConfig::new()));
    let backend = Arc::new(LbBackend::new(driver.clone()));
    running.start_own_controller(backend.clone()).await;
    // Rancher has no push: re-read what the backend ensured until it settles.
    let refreshing = driver.clone();
    running.spawn_until_stopped(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let _ = refreshing.refresh(&backend.models()).await;
        }
    });
    driver
}

/// A controller on a new sandbox, with the Rancher driver on `fake`.
async fn start_on(fake: &FakeRancher) -> (Running, Arc<RancherDriver>) {
    let running = Running::without_controller().await;
    let driver = with_rancher(&running, fake).await;
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

/// The seed's TLS Ingress: HTTP and HTTPS for `secure.example.org`.
fn secure() -> k8s_openapi::api::networking::v1::Ingress {
    with_tls(
        ingress(
            "secure",
            "rancher",
            &[],
            &[("secure.example.org", "/", "Prefix", "nginx-service", 80)],
        ),
        &[(&["secure.example.org"], "secure-tls")],
    )
}

/// The Rancher load balancer services not removed.
fn live(fake: &FakeRancher) -> Vec<LoadBalancerService> {
    fake.list::<LoadBalancerService>()
        .into_iter()
        .filter(|s| !s.meta.is_removed())
        .collect()
}

/// `(port, hostname, path)` of a service's rules, sorted.
fn rules(svc: &LoadBalancerService) -> Vec<(u16, String, String)> {
    let mut out: Vec<_> = svc
        .lb_config
        .iter()
        .flat_map(|c| &c.port_rules)
        .map(|r| {
            (
                r.source_port,
                r.hostname.clone().unwrap_or_default(),
                r.path.clone().unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

/// Every Warning event in the namespace, as `reason: note`.
async fn warnings(running: &Running) -> Vec<String> {
    let mut out = Vec::new();
    for name in ["scalelb", "secure"] {
        for (type_, reason, note) in running.events(name).await {
            if type_ == "Warning" {
                out.push(format!("{name} {reason}: {note}"));
            }
        }
    }
    out
}

/// The seed's story on the Rancher driver, from a clean start each time:
/// `scalelb` (scale 2) and the TLS Ingress share one Rancher load balancer
/// service on ports 80 and 443 of both hosts, whether both exist when the
/// controller starts or the TLS Ingress comes later; nothing warns; deleting
/// one leaves the other's routes.
#[tokio::test]
async fn the_seed_story_shares_one_rancher_service_every_time() {
    for round in 0..20 {
        let fake = fake().await;
        // The objects exist when the controller starts: it ensures both
        // load balancers at once.
        let running = Running::without_controller().await;
        running.apply(service("nginx-service", 80)).await;
        running
            .apply(slice("nginx-service", 8080, &["10.42.0.5"]))
            .await;
        running
            .apply(tls_secret("secure-tls", ORG_CRT, ORG_KEY))
            .await;
        running.apply(scalelb("2")).await;
        // Every other round the TLS Ingress comes once scalelb is served: it
        // joins a service that must be made again with port 443.
        let later = round % 2 == 1;
        if !later {
            running.apply(secure()).await;
        }
        with_rancher(&running, &fake).await;
        if later {
            running.wait_addresses("scalelb", &IPS).await;
            running.apply(secure()).await;
        }
        running.wait_addresses("scalelb", &IPS).await;
        wait_for(&format!("round {round}: secure served"), || async {
            (!running.addresses("secure").await.is_empty()).then_some(())
        })
        .await;
        let shared = wait_for(&format!("round {round}: one service"), || async {
            let services = live(&fake);
            (services.len() == 1
                && services[0].public_ips().len() == 2
                && services[0].public_ports() == [80, 443])
            .then(|| services[0].clone())
        })
        .await;
        if later {
            // Made again for port 443, under scalelb's name.
            assert_eq!(
                shared.meta.name.as_deref(),
                Some("ingress-http80-x2"),
                "round {round}"
            );
        }
        let mut placed = fake.placements(&shared.meta.id);
        placed.sort();
        let mut hosts: Vec<String> = IPS
            .iter()
            .map(|ip| {
                fake.hosts()
                    .into_iter()
                    .find(|h| h.agent_ip_address.as_deref() == Some(*ip))
                    .map(|h| h.meta.id)
                    .expect("host")
            })
            .collect();
        hosts.sort();
        assert_eq!(placed, hosts, "round {round}: on both hosts");
        let foo = (80, "foo.bar.com".to_owned(), "/foo".to_owned());
        let secure_https = (443, "secure.example.org".to_owned(), String::new());
        let both = rules(&shared);
        assert!(
            both.contains(&foo) && both.contains(&secure_https),
            "round {round}: {both:?}"
        );

        // Deleting one leaves the other's routes in the shared service.
        running.delete_ingress("secure").await;
        let after = wait_for(&format!("round {round}: secure's rules gone"), || async {
            let services = live(&fake);
            (services.len() == 1 && !rules(&services[0]).contains(&secure_https))
                .then(|| services[0].clone())
        })
        .await;
        assert_eq!(after.meta.id, shared.meta.id, "round {round}: in place");
        assert_eq!(rules(&after), vec![foo], "round {round}");
        running.wait_addresses("scalelb", &IPS).await;

        let warned = warnings(&running).await;
        assert!(warned.is_empty(), "round {round}: {warned:?}");
        running.stop().await;
    }
}

/// Two Ingresses on one shared Rancher service route the same host and
/// path: the older keeps it, the newer is told.
#[tokio::test]
async fn on_a_shared_rancher_service_the_older_ingress_keeps_a_contested_route() {
    let (running, _driver, fake) = start().await;
    running.apply(scalelb("2")).await;
    running.wait_addresses("scalelb", &IPS).await;
    running.apply(service("other-service", 80)).await;
    // Created in the same second, Ingresses are ordered by name: this one is
    // the newer either way.
    running
        .apply(ingress(
            "z-newer",
            "rancher",
            &[],
            &[
                ("foo.bar.com", "/foo", "Prefix", "other-service", 80),
                ("bar.example.org", "/", "Prefix", "nginx-service", 80),
            ],
        ))
        .await;
    let note = running.wait_warning("z-newer", "default/scalelb").await;
    assert!(note.contains("foo.bar.com"), "{note}");
    let shared = wait_for("the newer Ingress's other route", || async {
        let services = live(&fake);
        (services.len() == 1
            && rules(&services[0]).contains(&(80, "bar.example.org".to_owned(), String::new())))
        .then(|| services[0].clone())
    })
    .await;
    let foo: Vec<_> = shared
        .lb_config
        .iter()
        .flat_map(|c| &c.port_rules)
        .filter(|r| r.hostname.as_deref() == Some("foo.bar.com"))
        .collect();
    assert_eq!(foo.len(), 1, "{foo:?}");
    assert_eq!(
        foo[0]
            .backend_name
            .as_deref()
            .map(|b| b.starts_with("ingress-http80-x2_")),
        Some(true),
        "{foo:?}"
    );
    running.stop().await;
}
