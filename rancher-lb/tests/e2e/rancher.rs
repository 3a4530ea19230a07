//! The Rancher driver against the fake Rancher server from `rancher-client`.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use rancher_client::resource::{Protocol as RProtocol, scheduler};
use rancher_client::testing::{FakeHost, FakeRancher};
use rancher_client::{Certificate as RCertificate, LoadBalancerService};
use rancher_lb::driver::{ConditionKind, Driver, Error, Status};
use rancher_lb::model::{
    BackendSpec, CertificateSpec, EndpointSpec, HttpRouteSpec, LbId, ListenerSpec, LoadBalancer,
    LoadBalancerSpec, PathMatch, PlacementSpec, Protocol, TcpRouteSpec,
};
use rancher_lb::rancher::{RancherConfig, RancherDriver};
use rancher_lb::testing::Conformance;

use crate::support::{NET_CRT, NET_KEY, ORG_CRT, ORG_KEY, eventually};

const IPS: [&str; 3] = ["192.0.2.11", "192.0.2.12", "192.0.2.13"];

pub(crate) async fn fake() -> FakeRancher {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    FakeRancher::builder()
        .host(FakeHost::new("node-1", IPS[0]).label("zone", "a"))
        .host(FakeHost::new("node-2", IPS[1]).label("zone", "a"))
        .host(FakeHost::new("node-3", IPS[2]).label("zone", "b"))
        .settle_delay(Duration::from_millis(10))
        .setting("lb.instance.image", "rancher/lb-service-haproxy:v0.9.1")
        .start()
        .await
        .unwrap()
}

/// The load balancer services not removed.
pub(crate) fn live(fake: &FakeRancher) -> Vec<LoadBalancerService> {
    fake.list::<LoadBalancerService>()
        .into_iter()
        .filter(|l| !l.meta.is_removed())
        .collect()
}

fn ips() -> Vec<IpAddr> {
    IPS.iter().map(|s| s.parse().unwrap()).collect()
}

fn spec(scale: u32) -> LoadBalancerSpec {
    LoadBalancerSpec {
        id: "default.web".into(),
        listeners: vec![
            ListenerSpec {
                port: 80,
                protocol: Protocol::Http,
            },
            ListenerSpec {
                port: 443,
                protocol: Protocol::Https,
            },
            ListenerSpec {
                port: 5432,
                protocol: Protocol::Tcp,
            },
        ],
        http_routes: vec![
            HttpRouteSpec {
                port: 80,
                host: Some("www.example.org".into()),
                path: Some("/api".into()),
                path_match: PathMatch::Prefix,
                backend: "api".into(),
            },
            HttpRouteSpec {
                port: 443,
                host: Some("*.example.net".into()),
                path: None,
                path_match: PathMatch::Prefix,
                backend: "api".into(),
            },
        ],
        tcp_routes: vec![TcpRouteSpec {
            port: 5432,
            backend: "db".into(),
        }],
        backends: vec![
            BackendSpec {
                name: "api".into(),
                endpoints: vec![EndpointSpec {
                    address: "10.42.0.5".into(),
                    port: 8080,
                }],
                ..Default::default()
            },
            BackendSpec {
                name: "db".into(),
                endpoints: vec![EndpointSpec {
                    address: "10.42.0.6".into(),
                    port: 5432,
                }],
                ..Default::default()
            },
        ],
        certificates: vec![
            CertificateSpec {
                name: "org".into(),
                chain_pem: ORG_CRT.into(),
                key_pem: ORG_KEY.into(),
                hosts: vec!["www.example.org".into()],
                default: true,
            },
            CertificateSpec {
                name: "net".into(),
                chain_pem: NET_CRT.into(),
                key_pem: NET_KEY.into(),
                hosts: vec!["*.example.net".into()],
                default: false,
            },
        ],
        scale,
        placement: PlacementSpec {
            required_labels: [("zone".to_owned(), "a".to_owned())].into(),
            ..Default::default()
        },
        ..Default::default()
    }
}

async fn settled(driver: &RancherDriver, lb: &LoadBalancer, want: usize) -> Status {
    eventually("the load balancer to settle", 10, || async {
        let s = driver.ensure(lb).await.unwrap();
        (s.addresses.len() == want).then_some(s)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rancher_driver_passes_the_conformance_battery() {
    let fake = fake().await;
    let driver = Arc::new(RancherDriver::new(fake.client(), RancherConfig::new()));
    Conformance::new(driver, ips(), 80, ("10.42.0.5".parse().unwrap(), 8080))
        .run()
        .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_balancer_maps_onto_a_load_balancer_service() {
    let fake = fake().await;
    let driver = RancherDriver::new(fake.client(), RancherConfig::new());
    let lb = LoadBalancer::new(&spec(2)).unwrap();
    let status = settled(&driver, &lb, 2).await;
    // Only zone=a hosts.
    assert_eq!(status.addresses, vec![ips()[0], ips()[1]]);

    let all: Vec<LoadBalancerService> = fake.list();
    assert_eq!(all.len(), 1);
    let svc = &all[0];
    assert_eq!(svc.meta.name.as_deref(), Some("default-web"));
    assert_eq!(svc.external_id.as_deref(), Some("rancher-lb://default.web"));
    assert_eq!(svc.scale, Some(2));
    let launch = svc.launch_config.as_ref().unwrap();
    assert_eq!(
        launch.ports,
        vec!["80:80/tcp", "443:443/tcp", "5432:5432/tcp"]
    );
    assert_eq!(
        launch
            .labels
            .get(scheduler::AFFINITY_HOST_LABEL)
            .map(String::as_str),
        Some("zone=a")
    );
    assert_eq!(
        launch.image_uuid.as_deref(),
        Some("docker:rancher/lb-service-haproxy:v0.9.1")
    );
    let cfg = svc.lb_config.as_ref().unwrap();
    let rules: Vec<_> = cfg
        .port_rules
        .iter()
        .map(|r| {
            (
                r.source_port,
                r.protocol,
                r.hostname.clone(),
                r.path.clone(),
                r.target_port,
                r.selector.clone(),
            )
        })
        .collect();
    assert_eq!(
        rules,
        vec![
            (
                80,
                RProtocol::Http,
                Some("www.example.org".into()),
                Some("/api".into()),
                Some(8080),
                Some("rancher-lb.backend=default.web.api".into())
            ),
            (
                443,
                RProtocol::Https,
                Some("*.example.net".into()),
                None,
                Some(8080),
                Some("rancher-lb.backend=default.web.api".into())
            ),
            (
                5432,
                RProtocol::Tcp,
                None,
                None,
                Some(5432),
                Some("rancher-lb.backend=default.web.db".into())
            ),
        ]
    );

    // Certificates: uploaded once each under namespaced names; the default one
    // is the default certificate.
    let certs: Vec<RCertificate> = fake.list();
    assert_eq!(certs.len(), 2);
    let org = certs
        .iter()
        .find(|c| {
            c.meta
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with("default-web-org-"))
        })
        .unwrap();
    assert_eq!(
        cfg.default_certificate_id.as_deref(),
        Some(org.meta.id.as_str())
    );
    assert_eq!(cfg.certificate_ids.len(), 1);
    assert!(
        org.cert
            .as_deref()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );

    // Ensuring again changes nothing and uploads nothing.
    fake.clear_requests();
    driver.ensure(&lb).await.unwrap();
    let writes: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .collect();
    assert!(writes.is_empty(), "{writes:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_updates_in_place_and_port_changes_recreate() {
    let fake = fake().await;
    let driver = RancherDriver::new(fake.client(), RancherConfig::new());
    let mut s = spec(1);
    s.placement = PlacementSpec::default();
    let lb = LoadBalancer::new(&s).unwrap();
    settled(&driver, &lb, 1).await;
    let first: Vec<LoadBalancerService> = fake.list();

    settled(&driver, &lb.clone().with_scale(3), 3).await;
    let after: Vec<LoadBalancerService> = fake.list();
    assert_eq!(after.len(), 1);
    assert_eq!(
        after[0].meta.id, first[0].meta.id,
        "scale is updated in place"
    );
    assert_eq!(after[0].scale, Some(3));

    // Published ports cannot change in place: the service is created again.
    let mut s2 = s.clone();
    s2.certificates.truncate(1);
    s2.listeners[0].port = 8080;
    s2.http_routes[0].port = 8080;
    let moved = LoadBalancer::new(&s2).unwrap().with_scale(3);
    let status = settled(&driver, &moved, 3).await;
    assert_eq!(status.addresses, ips());
    let live = live(&fake);
    assert_eq!(live.len(), 1);
    assert_ne!(live[0].meta.id, first[0].meta.id, "a port change recreates");
    assert_eq!(live[0].public_ports(), vec![443, 5432, 8080]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scheduler_labels_carry_placement_and_changing_them_recreates() {
    let fake = fake().await;
    let driver = RancherDriver::new(fake.client(), RancherConfig::new());
    let mut s = spec(1);
    s.placement = PlacementSpec {
        forbidden_labels: [("zone".to_owned(), "b".to_owned())].into(),
        preferred_labels: [("disk".to_owned(), "ssd".to_owned())].into(),
        avoided_labels: [("disk".to_owned(), "hdd".to_owned())].into(),
        global: true,
        ..Default::default()
    };
    // Global: every host but the zone=b one, whatever the scale.
    let lb = LoadBalancer::new(&s).unwrap();
    let status = settled(&driver, &lb, 2).await;
    assert_eq!(status.addresses, vec![ips()[0], ips()[1]]);
    let first: Vec<LoadBalancerService> = fake.list();
    let labels = &first[0].launch_config.as_ref().unwrap().labels;
    let label = |key: &str| labels.get(key).map(String::as_str);
    assert_eq!(label(scheduler::AFFINITY_HOST_LABEL_NE), Some("zone=b"));
    assert_eq!(label(scheduler::AFFINITY_HOST_LABEL_SOFT), Some("disk=ssd"));
    assert_eq!(
        label(scheduler::AFFINITY_HOST_LABEL_SOFT_NE),
        Some("disk=hdd")
    );
    assert_eq!(label(scheduler::GLOBAL), Some("true"));
    assert_eq!(label(scheduler::AFFINITY_HOST_LABEL), None);

    // Rancher cannot change scheduler labels in place: created again.
    s.placement.global = false;
    let lb = LoadBalancer::new(&s).unwrap();
    let status = settled(&driver, &lb, 1).await;
    assert_eq!(status.addresses.len(), 1);
    let live = live(&fake);
    assert_eq!(live.len(), 1);
    assert_ne!(
        live[0].meta.id, first[0].meta.id,
        "a label change recreates"
    );
    assert_eq!(driver.list().await.unwrap(), vec![lb.id().clone()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_hosts_and_shortfalls_show_in_the_status() {
    let fake = fake().await;
    let driver = RancherDriver::new(fake.client(), RancherConfig::new());
    let lb = LoadBalancer::new(&spec(3)).unwrap();
    // Only two zone=a hosts: a shortfall.
    let status = settled(&driver, &lb, 2).await;
    let s = eventually("a shortfall", 10, || async {
        let s = driver.ensure(&lb).await.unwrap();
        s.condition(ConditionKind::Shortfall).is_some().then_some(s)
    })
    .await;
    assert_eq!(s.addresses, status.addresses);
    assert!(
        s.condition(ConditionKind::Shortfall)
            .unwrap()
            .message
            .starts_with("wanted 3, placed 2"),
        "{s:?}"
    );

    let mut updates = driver.subscribe();
    let node1 = fake.host_id("node-1").unwrap();
    fake.set_host_healthy(&node1, false);
    driver.refresh(std::slice::from_ref(&lb)).await.unwrap();
    let u = tokio::time::timeout(Duration::from_secs(5), updates.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(u.id, *lb.id());
    assert_eq!(u.status.unwrap().addresses, vec![ips()[1]]);

    driver.ensure_deleted(lb.id()).await.unwrap();
    assert!(driver.status(lb.id()).await.unwrap().is_none());
    driver.ensure_deleted(lb.id()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolved_backends_target_services_and_errors_are_reported() {
    let fake = fake().await;
    let config =
        RancherConfig::new().with_resolver(Arc::new(|_: &LbId, b: &rancher_lb::model::Backend| {
            (b.name.as_str() == "api").then(|| "1s99".to_owned())
        }));
    let driver = RancherDriver::new(fake.client(), config);
    let lb = LoadBalancer::new(&spec(1)).unwrap();
    driver.ensure(&lb).await.unwrap();
    let svc = &fake.list::<LoadBalancerService>()[0];
    let rules = &svc.lb_config.as_ref().unwrap().port_rules;
    assert_eq!(rules[0].service_id.as_deref(), Some("1s99"));
    assert_eq!(rules[0].selector, None);
    assert_eq!(rules[2].service_id, None);

    let snippet = LoadBalancer::new(&LoadBalancerSpec {
        snippet: Some("timeout server 5s".into()),
        ..spec(1)
    })
    .unwrap();
    assert!(matches!(
        driver.ensure(&snippet).await,
        Err(Error::Rejected { .. })
    ));

    fake.fail_next_with(10, 500);
    let err = driver.ensure(&lb).await.unwrap_err();
    assert!(err.to_string().starts_with("rancher: "), "{err}");
    fake.clear_faults();
}

/// An HTTP load balancer routing `host``path` to one endpoint; with `tls`,
/// also HTTPS on 443 with the example.org certificate as the default.
pub(crate) fn http(id: &str, scale: u32, host: &str, path: &str, tls: bool) -> LoadBalancer {
    LoadBalancer::new(&http_spec(id, scale, host, path, tls)).unwrap()
}

/// The spec of [`http`]'s load balancer.
fn http_spec(id: &str, scale: u32, host: &str, path: &str, tls: bool) -> LoadBalancerSpec {
    let mut listeners = vec![ListenerSpec {
        port: 80,
        protocol: Protocol::Http,
    }];
    let mut certificates = Vec::new();
    if tls {
        listeners.push(ListenerSpec {
            port: 443,
            protocol: Protocol::Https,
        });
        certificates.push(CertificateSpec {
            name: "org".into(),
            chain_pem: ORG_CRT.into(),
            key_pem: ORG_KEY.into(),
            hosts: vec!["www.example.org".into()],
            default: true,
        });
    }
    let http_routes = listeners
        .iter()
        .map(|l| HttpRouteSpec {
            port: l.port,
            host: Some(host.into()),
            path: Some(path.into()),
            path_match: PathMatch::Prefix,
            backend: "web".into(),
        })
        .collect();
    LoadBalancerSpec {
        id: id.into(),
        listeners,
        http_routes,
        backends: vec![BackendSpec {
            name: "web".into(),
            endpoints: vec![EndpointSpec {
                address: "10.42.0.5".into(),
                port: 8080,
            }],
            ..Default::default()
        }],
        certificates,
        scale,
        ..Default::default()
    }
}

/// `(hostname, path, backendName)` of a service's rules, sorted.
fn routes(svc: &LoadBalancerService) -> Vec<(u16, String, String, String)> {
    let mut out: Vec<_> = svc
        .lb_config
        .iter()
        .flat_map(|c| &c.port_rules)
        .map(|r| {
            (
                r.source_port,
                r.hostname.clone().unwrap_or_default(),
                r.path.clone().unwrap_or_default(),
                r.backend_name.clone().unwrap_or_default(),
            )
        })
        .collect();
    out.sort();
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancers_on_port_80_share_one_service_and_keep_each_others_rules() {
    let fake = fake().await;
    let driver = RancherDriver::new(fake.client(), RancherConfig::new());
    let web = http("web", 2, "foo.bar.com", "/foo", false);
    let secure = http("secure", 1, "www.example.org", "/", true);
    settled(&driver, &web, 2).await;
    // Joining needs 443 too: the service is made again with both.
    let status = settled(&driver, &secure, 2).await;
    let both = driver.status(web.id()).await.unwrap().unwrap();
    assert_eq!(both.addresses, status.addresses, "one service serves both");
    assert!(
        both.condition(ConditionKind::Shortfall).is_none(),
        "{both:?}"
    );

    let shared = live(&fake);
    assert_eq!(shared.len(), 1, "{shared:?}");
    let svc = &shared[0];
    assert_eq!(
        svc.meta.name.as_deref(),
        Some("web"),
        "named after the first"
    );
    assert_eq!(svc.public_ports(), vec![80, 443]);
    assert_eq!(svc.scale, Some(2), "the largest scale asked");
    let cfg = svc.lb_config.as_ref().unwrap();
    assert!(cfg.default_certificate_id.is_some());
    let web_routes = vec![(80, "foo.bar.com".into(), "/foo".into(), "web_web".into())];
    let secure_routes = vec![
        (
            80,
            "www.example.org".into(),
            String::new(),
            "secure_web".into(),
        ),
        (
            443,
            "www.example.org".into(),
            String::new(),
            "secure_web".into(),
        ),
    ];
    let mut all = web_routes.clone();
    all.extend(secure_routes.clone());
    all.sort();
    assert_eq!(routes(svc), all);
    assert_eq!(
        driver.list().await.unwrap(),
        vec![secure.id().clone(), web.id().clone()]
    );

    // Changing one updates the service in place and keeps the other's rules.
    let moved = http("secure", 1, "www.example.org", "/shop", true);
    driver.ensure(&moved).await.unwrap();
    let after = live(&fake);
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].meta.id, svc.meta.id, "updated in place");
    assert!(
        routes(&after[0]).contains(&web_routes[0]),
        "{:?}",
        routes(&after[0])
    );
    assert!(routes(&after[0]).contains(&(
        443,
        "www.example.org".into(),
        "/shop".into(),
        "secure_web".into()
    )));

    // Deleting one keeps the other's rules, in place.
    driver.ensure_deleted(secure.id()).await.unwrap();
    let after = live(&fake);
    assert_eq!(after.len(), 1);
    assert_eq!(after[0].meta.id, svc.meta.id, "updated in place");
    assert_eq!(routes(&after[0]), web_routes);
    let cfg = after[0].lb_config.as_ref().unwrap();
    assert_eq!(
        (
            cfg.default_certificate_id.as_deref(),
            cfg.certificate_ids.len()
        ),
        (None, 0)
    );
    assert_eq!(driver.list().await.unwrap(), vec![web.id().clone()]);
    assert!(driver.status(secure.id()).await.unwrap().is_none());
    assert_eq!(
        settled(&driver, &web, 2).await.addresses,
        status.addresses,
        "web keeps its instances"
    );

    // Ensuring again writes nothing.
    fake.clear_requests();
    driver.ensure(&web).await.unwrap();
    let writes: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .collect();
    assert!(writes.is_empty(), "{writes:?}");

    // The last one out removes the service.
    driver.ensure_deleted(web.id()).await.unwrap();
    assert!(live(&fake).is_empty());
    assert!(driver.list().await.unwrap().is_empty());
}

pub(crate) fn tcp(id: &str, scale: u32) -> LoadBalancer {
    LoadBalancer::new(&LoadBalancerSpec {
        id: id.into(),
        listeners: vec![ListenerSpec {
            port: 5432,
            protocol: Protocol::Tcp,
        }],
        tcp_routes: vec![TcpRouteSpec {
            port: 5432,
            backend: "db".into(),
        }],
        backends: vec![BackendSpec {
            name: "db".into(),
            ..Default::default()
        }],
        scale,
        ..Default::default()
    })
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_port_is_not_shared_and_the_shortfall_names_who_holds_it() {
    let fake = fake().await;
    let driver = RancherDriver::new(fake.client(), RancherConfig::new());
    let first = tcp("db-first", 3);
    settled(&driver, &first, 3).await;
    let second = tcp("db-second", 1);
    let status = eventually("a shortfall", 10, || async {
        let s = driver.ensure(&second).await.unwrap();
        s.condition(ConditionKind::Shortfall).cloned()
    })
    .await;
    assert_eq!(live(&fake).len(), 2, "separate services");
    assert!(
        status.message.starts_with("wanted 1, placed 0: "),
        "{}",
        status.message
    );
    assert!(
        status.message.contains(
            "port 5432 on 192.0.2.11 is held by load balancer db-first (Rancher service db-first)"
        ),
        "{}",
        status.message
    );
}

/// Two HTTP load balancers on port 80 whose placements differ cannot share
/// a service: the one that does not fit on the other's hosts is short, and
/// its shortfall names who holds port 80 there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_placements_do_not_share_and_the_shortfall_names_who_holds_the_port() {
    let fake = fake().await;
    let driver = RancherDriver::new(fake.client(), RancherConfig::new());
    let mut zone_a = http_spec("web-a", 2, "a.example.org", "/", false);
    zone_a.placement.required_labels = [("zone".to_owned(), "a".to_owned())].into();
    let zone_a = LoadBalancer::new(&zone_a).unwrap();
    let status = settled(&driver, &zone_a, 2).await;
    assert_eq!(status.addresses, vec![ips()[0], ips()[1]]);
    let anywhere = http("web-any", 3, "any.example.org", "/", false);
    let status = eventually("a shortfall", 10, || async {
        let s = driver.ensure(&anywhere).await.unwrap();
        (s.addresses.len() == 1)
            .then(|| s.condition(ConditionKind::Shortfall).cloned())
            .flatten()
    })
    .await;
    assert_eq!(live(&fake).len(), 2, "separate services");
    assert!(
        status.message.starts_with("wanted 3, placed 1: "),
        "{}",
        status.message
    );
    for ip in [IPS[0], IPS[1]] {
        assert!(
            status.message.contains(&format!(
                "port 80 on {ip} is held by load balancer web-a (Rancher service web-a)"
            )),
            "{}",
            status.message
        );
    }
    // The holder keeps both its hosts.
    let a = driver.status(zone_a.id()).await.unwrap().unwrap();
    assert_eq!(a.addresses, vec![ips()[0], ips()[1]]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_driver_keeps_the_members_it_does_not_know() {
    let fake = fake().await;
    let before = RancherDriver::new(fake.client(), RancherConfig::new());
    let web = http("web", 2, "foo.bar.com", "/foo", false);
    let secure = http("secure", 1, "www.example.org", "/", true);
    before.ensure(&web).await.unwrap();
    before.ensure(&secure).await.unwrap();
    let svc = live(&fake).remove(0);
    drop(before);

    let after = RancherDriver::new(fake.client(), RancherConfig::new());
    assert_eq!(
        after.list().await.unwrap(),
        vec![secure.id().clone(), web.id().clone()]
    );
    let changed = http("web", 2, "foo.bar.com", "/bar", false);
    after.ensure(&changed).await.unwrap();
    let now = live(&fake);
    assert_eq!(now.len(), 1);
    assert_eq!(now[0].meta.id, svc.meta.id, "updated in place");
    let rules = routes(&now[0]);
    assert!(
        rules.contains(&(
            443,
            "www.example.org".into(),
            String::new(),
            "secure_web".into()
        )),
        "{rules:?}"
    );
    assert!(rules.contains(&(80, "foo.bar.com".into(), "/bar".into(), "web_web".into())));
    assert_eq!(
        now[0].lb_config.as_ref().unwrap().default_certificate_id,
        svc.lb_config.as_ref().unwrap().default_certificate_id,
        "secure's certificate stays"
    );

    // Deleting the unknown member after the restart takes its rules and
    // certificates out.
    after.ensure_deleted(secure.id()).await.unwrap();
    let now = live(&fake);
    assert_eq!(
        routes(&now[0]),
        vec![(80, "foo.bar.com".into(), "/bar".into(), "web_web".into())]
    );
    assert_eq!(
        now[0].lb_config.as_ref().unwrap().default_certificate_id,
        None
    );
    assert_eq!(after.list().await.unwrap(), vec![web.id().clone()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_ensures_make_one_stack_and_one_service() {
    let fake = fake().await;
    // Slow answers: both drivers find no stack before either makes it.
    fake.set_response_delay(Some(Duration::from_millis(50)));
    let a = Arc::new(RancherDriver::new(fake.client(), RancherConfig::new()));
    let b = Arc::new(RancherDriver::new(fake.client(), RancherConfig::new()));
    let mut tasks = Vec::new();
    for (i, driver) in [a.clone(), b.clone()].into_iter().enumerate() {
        tasks.push(tokio::spawn(async move {
            // Another process's load balancer: its own port.
            let lb = tcp(&format!("db-{i}"), 1);
            driver.ensure(&lb).await.map(|_| ())
        }));
    }
    for i in 0..6 {
        let driver = a.clone();
        tasks.push(tokio::spawn(async move {
            let lb = http(
                &format!("web-{i}"),
                1,
                &format!("w{i}.example.org"),
                "/",
                false,
            );
            driver.ensure(&lb).await.map(|_| ())
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    fake.set_response_delay(None);
    let stacks: Vec<rancher_client::Stack> = fake.list();
    assert_eq!(stacks.len(), 1, "{stacks:?}");
    let not_unique = fake
        .requests()
        .into_iter()
        .filter(|r| r.is("POST", "/stacks") && r.status == Some(422))
        .count();
    assert_eq!(not_unique, 1, "one driver lost the race and read the stack");
    let services = live(&fake);
    let web: Vec<_> = services
        .iter()
        .filter(|s| s.public_ports() == vec![80])
        .collect();
    assert_eq!(web.len(), 1, "{services:?}");
    assert_eq!(
        web[0].metadata["rancher-lb"]["members"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    assert_eq!(services.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_default_backend_answers_unmatched_paths_of_each_host() {
    let fake = fake().await;
    let driver = RancherDriver::new(fake.client(), RancherConfig::new());
    let mut s = spec(1);
    s.backends.push(BackendSpec {
        name: "dflt".into(),
        endpoints: vec![EndpointSpec {
            address: "10.42.0.7".into(),
            port: 8081,
        }],
        ..Default::default()
    });
    s.default_backend = Some("dflt".into());
    let lb = LoadBalancer::new(&s).unwrap();
    driver.ensure(&lb).await.unwrap();
    let svc = &live(&fake)[0];
    let rules = &svc.lb_config.as_ref().unwrap().port_rules;
    let defaults: Vec<_> = rules
        .iter()
        .filter(|r| r.backend_name.as_deref() == Some("default.web_dflt_default"))
        .map(|r| {
            (
                r.source_port,
                r.protocol,
                r.hostname.clone(),
                r.path.clone(),
                r.target_port,
                r.selector.clone(),
            )
        })
        .collect();
    let dflt = || Some("rancher-lb.backend=default.web.dflt".to_owned());
    // www.example.org has /api only: a rule for its other paths. *.example.net
    // has a rule for all its paths on 443 already.
    assert_eq!(
        defaults,
        vec![
            (
                80,
                RProtocol::Http,
                Some("www.example.org".into()),
                None,
                Some(8081),
                dflt()
            ),
            (80, RProtocol::Http, None, None, Some(8081), dflt()),
            (443, RProtocol::Https, None, None, Some(8081), dflt()),
        ]
    );
    // First match by priority: the host's path, then the host's default, then
    // the rule without a host.
    let priority = |host: Option<&str>, path: Option<&str>| {
        rules
            .iter()
            .find(|r| {
                r.source_port == 80 && r.hostname.as_deref() == host && r.path.as_deref() == path
            })
            .and_then(|r| r.priority)
            .unwrap()
    };
    assert!(
        priority(Some("www.example.org"), Some("/api")) < priority(Some("www.example.org"), None)
    );
    assert!(priority(Some("www.example.org"), None) < priority(None, None));
}

/// A service removed to be created again with a new member, and the create
/// fails: the other members are not lost, the next call puts them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_recreate_loses_no_member() {
    let fake = fake().await;
    let driver = Arc::new(RancherDriver::new(fake.client(), RancherConfig::new()));
    let web = http("web", 2, "foo.bar.com", "/foo", false);
    settled(&driver, &web, 2).await;
    let old = live(&fake).remove(0);
    // Another member that needs port 8080 too: the service is made again.
    let mut spec = LoadBalancerSpec {
        id: "wide".into(),
        listeners: vec![
            ListenerSpec {
                port: 80,
                protocol: Protocol::Http,
            },
            ListenerSpec {
                port: 8080,
                protocol: Protocol::Http,
            },
        ],
        backends: vec![BackendSpec {
            name: "web".into(),
            ..Default::default()
        }],
        scale: 1,
        ..Default::default()
    };
    spec.http_routes.push(HttpRouteSpec {
        port: 8080,
        host: Some("wide.example.org".into()),
        backend: "web".into(),
        ..Default::default()
    });
    let wide = LoadBalancer::new(&spec).unwrap();

    // Slow answers, so the creation can be failed once the removal is done.
    fake.set_response_delay(Some(Duration::from_millis(500)));
    fake.clear_requests();
    let ensuring = {
        let (driver, wide) = (driver.clone(), wide.clone());
        tokio::spawn(async move { driver.ensure(&wide).await })
    };
    let removal = format!("/loadbalancerservices/{}", old.meta.id);
    eventually("the old service removed", 10, || async {
        fake.requests()
            .iter()
            .any(|r| r.is("POST", &removal) && r.query.as_deref() == Some("action=remove"))
            .then_some(())
    })
    .await;
    fake.fail_next_with(1, 500);
    assert!(ensuring.await.unwrap().is_err(), "the creation failed");
    fake.set_response_delay(None);
    assert!(live(&fake).is_empty());
    assert!(
        driver.list().await.unwrap().contains(web.id()),
        "web is still known"
    );

    // The retry puts both back in one service.
    driver.ensure(&wide).await.unwrap();
    let now = live(&fake);
    assert_eq!(now.len(), 1, "{now:?}");
    assert_eq!(now[0].public_ports(), vec![80, 8080]);
    let rules = routes(&now[0]);
    assert!(
        rules.contains(&(80, "foo.bar.com".into(), "/foo".into(), "web_web".into())),
        "{rules:?}"
    );
    assert_eq!(
        driver.list().await.unwrap(),
        vec![web.id().clone(), wide.id().clone()]
    );
}
