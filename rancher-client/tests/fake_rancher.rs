//! The client against the fake Rancher server: CRUD, pagination, filters, actions, waits,
//! placement, retries, authentication and secret hygiene.

use std::time::Duration;

use rancher_client::{
    Certificate, Client, Config, Credentials, Error, ListParams, LoadBalancerService, Registry,
    RegistryCredential, RetryPolicy, Stack, WaitParams,
    resource::{IpAddress, LaunchConfig, LbConfig, PortRule, Protocol, ServiceUpgrade, state},
    testing::{FakeHost, FakeRancher},
};
use tokio_util::sync::CancellationToken;

const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n";
const KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIEsecretkeymaterial\n-----END PRIVATE KEY-----\n";

fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn wait() -> WaitParams {
    WaitParams::timeout(Duration::from_secs(10)).interval(Duration::from_millis(10))
}

fn three_hosts() -> Vec<FakeHost> {
    vec![
        FakeHost::new("node-1", "192.0.2.11").label("zone", "a"),
        FakeHost::new("node-2", "192.0.2.12")
            .label("zone", "b")
            .extra_ip("198.51.100.12"),
        FakeHost::new("node-3", "192.0.2.13").label("zone", "a"),
    ]
}

async fn fake() -> FakeRancher {
    init();
    FakeRancher::builder()
        .hosts(three_hosts())
        .settle_delay(Duration::from_millis(20))
        .start()
        .await
        .expect("fake rancher starts")
}

fn lb(name: &str, stack: &str, ports: &[&str], scale: u32) -> LoadBalancerService {
    let mut lb = LoadBalancerService::new(name, stack);
    lb.scale = Some(scale);
    lb.external_id = Some(format!("kubernetes-ingress-lbs://{name}"));
    lb.launch_config = Some(LaunchConfig {
        ports: ports.iter().map(|p| (*p).to_owned()).collect(),
        image_uuid: Some("docker:rancher/lb-service-haproxy:v0.9.14".into()),
        ..Default::default()
    });
    lb.lb_config = Some(LbConfig {
        port_rules: vec![PortRule {
            source_port: 80,
            target_port: Some(8080),
            protocol: Protocol::Http,
            hostname: Some("www.example.org".into()),
            path: Some("/".into()),
            service_id: Some("1s99".into()),
            ..Default::default()
        }],
        ..Default::default()
    });
    lb
}

async fn stack(client: &Client, name: &str) -> Stack {
    let stacks = client.stacks();
    let created = stacks
        .create(&Stack::new(name, format!("{name}://")))
        .await
        .unwrap();
    stacks
        .wait_settled(&created.meta.id, &wait())
        .await
        .unwrap()
}

/// Creates, activates and waits for an LB to be active.
async fn active_lb(client: &Client, lb_def: &LoadBalancerService) -> LoadBalancerService {
    let api = client.load_balancer_services();
    let created = api.create(lb_def).await.unwrap();
    let id = created.meta.id.clone();
    api.wait_until(&id, &wait(), |l| l.meta.has_action("activate"))
        .await
        .unwrap();
    api.activate(&id).await.unwrap();
    api.wait_settled(&id, &wait()).await.unwrap()
}

#[tokio::test]
async fn create_activate_and_publish_endpoints() {
    let fake = fake().await;
    let client = fake.client();
    let st = stack(&client, "kubernetes-ingress-lbs").await;
    assert!(st.meta.id.starts_with("1st"), "{}", st.meta.id);
    assert_eq!(st.meta.state(), state::ACTIVE);

    let api = client.load_balancer_services();
    let created = api
        .create(&lb(
            "default-rancherlb-web",
            &st.meta.id,
            &["80:80", "443:443"],
            2,
        ))
        .await
        .unwrap();
    assert!(created.meta.id.starts_with("1s"), "{}", created.meta.id);
    assert_eq!(created.meta.state(), state::REGISTERING);
    assert!(created.meta.is_transitioning());
    assert!(!created.meta.has_action("activate"));

    let inactive = api
        .wait_until(&created.meta.id, &wait(), |l| l.meta.has_action("activate"))
        .await
        .unwrap();
    assert_eq!(inactive.meta.state(), state::INACTIVE);
    assert!(inactive.public_endpoints.is_empty());

    let mut activating = api.activate(&created.meta.id).await.unwrap();
    assert_eq!(activating.meta.state(), state::ACTIVATING);
    // Updates are accepted mid-transition; the transition carries on.
    activating.meta.description = Some("web load balancer".into());
    let still = api.update(&activating).await.unwrap();
    assert_eq!(still.meta.state(), state::ACTIVATING);
    assert_eq!(still.meta.description.as_deref(), Some("web load balancer"));
    let active = api.wait_settled(&created.meta.id, &wait()).await.unwrap();
    assert_eq!(active.meta.state(), state::ACTIVE);
    assert!(active.meta.has_action("deactivate"));
    assert_eq!(active.current_scale, Some(2));
    assert_eq!(active.health_state.as_deref(), Some("healthy"));
    // Two instances on two distinct hosts, each publishing both ports.
    let ips = active.public_ips();
    assert_eq!(ips.len(), 2, "{:?}", active.public_endpoints);
    assert_eq!(active.public_endpoints.len(), 4);
    let mut ports: Vec<u16> = active.public_endpoints.iter().map(|e| e.port).collect();
    ports.sort_unstable();
    assert_eq!(ports, vec![80, 80, 443, 443]);
    assert!(ips.iter().all(|ip| ip.starts_with("192.0.2.")));

    // The hosts report the endpoints too.
    let hosts = client.hosts().list(&ListParams::new()).await.unwrap();
    let busy: Vec<_> = hosts
        .iter()
        .filter(|h| !h.public_endpoints.is_empty())
        .collect();
    assert_eq!(busy.len(), 2);
}

#[tokio::test]
async fn port_conflicts_spread_and_limit_placement() {
    let fake = fake().await;
    let client = fake.client();
    let st = stack(&client, "kubernetes-ingress-lbs").await;
    let first = active_lb(&client, &lb("first", &st.meta.id, &["80:80"], 2)).await;
    let second = active_lb(&client, &lb("second", &st.meta.id, &["80:80"], 2)).await;
    // Three hosts, port 80 taken on two of them by the first LB: only one left.
    assert_eq!(first.current_scale, Some(2));
    assert_eq!(second.current_scale, Some(1));
    assert_eq!(second.health_state.as_deref(), Some("degraded"));
    assert!(
        second
            .meta
            .transitioning_message
            .as_deref()
            .is_some_and(|m| m.contains("80/tcp")),
        "{:?}",
        second.meta.transitioning_message
    );
    let first_hosts = fake.placements(&first.meta.id);
    let second_hosts = fake.placements(&second.meta.id);
    assert!(second_hosts.iter().all(|h| !first_hosts.contains(h)));

    // A different port can share hosts.
    let third = active_lb(&client, &lb("third", &st.meta.id, &["8080:8080"], 3)).await;
    assert_eq!(third.current_scale, Some(3));

    // A new host lets the second LB reach its scale.
    fake.add_host(FakeHost::new("node-4", "192.0.2.14"));
    let second = client
        .load_balancer_services()
        .get(&second.meta.id)
        .await
        .unwrap();
    assert_eq!(second.current_scale, Some(2));
    assert!(second.public_ips().contains(&"192.0.2.14"));
}

#[tokio::test]
async fn unhealthy_host_moves_instances() {
    let fake = fake().await;
    let client = fake.client();
    let st = stack(&client, "lbs").await;
    let web = active_lb(&client, &lb("web", &st.meta.id, &["80:80"], 2)).await;
    let placed = fake.placements(&web.meta.id);
    assert_eq!(placed.len(), 2);
    let spare = fake
        .hosts()
        .into_iter()
        .map(|h| h.meta.id)
        .find(|h| !placed.contains(h))
        .unwrap();

    assert!(fake.set_host_healthy(&placed[0], false));
    let moved = client
        .load_balancer_services()
        .get(&web.meta.id)
        .await
        .unwrap();
    let now = fake.placements(&web.meta.id);
    assert_eq!(now.len(), 2);
    assert!(now.contains(&spare));
    assert!(now.contains(&placed[1]), "the healthy instance stays put");
    assert!(!now.contains(&placed[0]));
    let spare_ip = fake
        .get::<rancher_client::Host>(&spare)
        .unwrap()
        .agent_ip_address
        .unwrap();
    assert!(moved.public_ips().contains(&spare_ip.as_str()));
}

#[tokio::test]
async fn host_label_affinity() {
    let fake = fake().await;
    let client = fake.client();
    let st = stack(&client, "lbs").await;
    let mut def = lb("zone-a", &st.meta.id, &["80:80"], 3);
    if let Some(lc) = def.launch_config.as_mut() {
        lc.labels.insert(
            "io.rancher.scheduler.affinity:host_label".into(),
            "zone=a".into(),
        );
    }
    let placed = active_lb(&client, &def).await;
    assert_eq!(placed.current_scale, Some(2));
    let mut ips = placed.public_ips();
    ips.sort_unstable();
    assert_eq!(ips, vec!["192.0.2.11", "192.0.2.13"]);

    // Relabelling node-2 into zone a through the API makes room for the third instance.
    let node2 = fake.host_id("node-2").unwrap();
    let mut host = client.hosts().get(&node2).await.unwrap();
    host.labels.insert("zone".into(), "a".into());
    client.hosts().update(&host).await.unwrap();
    let grown = client
        .load_balancer_services()
        .get(&placed.meta.id)
        .await
        .unwrap();
    assert_eq!(grown.current_scale, Some(3));
    assert_eq!(grown.health_state.as_deref(), Some("healthy"));

    // And relabelling it away through the fake's controls takes it back.
    assert!(fake.set_host_labels(&node2, [("zone".to_owned(), "b".to_owned())].into()));
    assert_eq!(fake.placements(&placed.meta.id).len(), 2);
    assert!(!fake.placements(&placed.meta.id).contains(&node2));
}

#[tokio::test]
async fn pagination_follows_next_to_the_end() {
    init();
    let fake = FakeRancher::builder()
        .page_limit(3)
        .settle_delay(Duration::ZERO)
        .start()
        .await
        .unwrap();
    for i in 0..8 {
        fake.seed(&Registry::new(format!("registry-{i}.example.org")))
            .unwrap();
    }
    let client = fake.client();
    let api = client.registries();
    let first = api.list_page(&ListParams::new()).await.unwrap();
    assert_eq!(first.data.len(), 3);
    assert!(first.pagination.as_ref().unwrap().next.is_some());

    fake.clear_requests();
    let all = api.list(&ListParams::new()).await.unwrap();
    assert_eq!(all.len(), 8);
    let addrs: Vec<_> = all.iter().map(|r| r.server_address.as_str()).collect();
    assert_eq!(addrs[0], "registry-0.example.org");
    assert_eq!(addrs[7], "registry-7.example.org");
    assert_eq!(fake.requests().len(), 3, "8 items in pages of 3");

    // An explicit page size, with a filter carried across pages.
    let two = api
        .list(&ListParams::new().removed_null().limit(2))
        .await
        .unwrap();
    assert_eq!(two.len(), 8);
    let mut page = api.list_page(&ListParams::new().limit(5)).await.unwrap();
    let mut count = page.data.len();
    while let Some(next) = api.next_page(&page).await.unwrap() {
        count += next.data.len();
        page = next;
    }
    assert_eq!(count, 8);
}

#[tokio::test]
async fn filters_by_name_external_id_stack_and_removed() {
    let fake = fake().await;
    let client = fake.client();
    let a = stack(&client, "stack-a").await;
    let b = stack(&client, "stack-b").await;
    let api = client.load_balancer_services();
    let web_a = api
        .create(&lb("web", &a.meta.id, &["80"], 1))
        .await
        .unwrap();
    api.create(&lb("web", &b.meta.id, &["81"], 1))
        .await
        .unwrap();
    api.create(&lb("api", &a.meta.id, &["82"], 1))
        .await
        .unwrap();

    let by_name = api.list(&ListParams::new().name("web")).await.unwrap();
    assert_eq!(by_name.len(), 2);
    let in_a = api
        .list(&ListParams::new().name("web").stack_id(&a.meta.id))
        .await
        .unwrap();
    assert_eq!(in_a.len(), 1);
    assert_eq!(in_a[0].meta.id, web_a.meta.id);
    let by_ext = api
        .list(&ListParams::new().external_id("kubernetes-ingress-lbs://api"))
        .await
        .unwrap();
    assert_eq!(by_ext.len(), 1);
    assert_eq!(by_ext[0].meta.name.as_deref(), Some("api"));

    // Removed objects stay visible until filtered with removed_null.
    api.remove(&web_a.meta.id).await.unwrap();
    let removed = api.wait_settled(&web_a.meta.id, &wait()).await.unwrap();
    assert_eq!(removed.meta.state(), state::REMOVED);
    assert!(removed.meta.removed.is_some());
    assert!(removed.meta.has_action("purge"));
    assert_eq!(
        api.list(&ListParams::new().name("web"))
            .await
            .unwrap()
            .len(),
        2
    );
    let live = api
        .list(&ListParams::new().name("web").removed_null())
        .await
        .unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].stack_id, b.meta.id);
    assert!(api.find_by_name("api").await.unwrap().is_some());
    assert!(api.find_by_name("nope").await.unwrap().is_none());
}

#[tokio::test]
async fn remove_then_purge_lifecycle() {
    let fake = fake().await;
    let client = fake.client();
    let st = stack(&client, "lbs").await;
    let web = active_lb(&client, &lb("web", &st.meta.id, &["80:80"], 1)).await;
    let api = client.load_balancer_services();

    // Purge is only offered once removed.
    let err = api.purge(&web.meta.id).await.unwrap_err();
    assert_eq!(err.status(), Some(422), "{err}");

    let removing = api.remove(&web.meta.id).await.unwrap();
    assert_eq!(removing.meta.state(), state::REMOVING);
    let removed = api.wait_settled(&web.meta.id, &wait()).await.unwrap();
    assert_eq!(removed.meta.state(), state::REMOVED);
    assert!(removed.public_endpoints.is_empty(), "instances are gone");
    let err = api.update(&removed).await.unwrap_err();
    assert!(
        matches!(&err, Error::Api { status: 422, code, .. } if code == "InvalidState"),
        "{err}"
    );
    api.purge(&web.meta.id).await.unwrap();
    let purged = api.wait_settled(&web.meta.id, &wait()).await.unwrap();
    assert_eq!(purged.meta.state(), state::PURGED);

    // The name is free again.
    active_lb(&client, &lb("web", &st.meta.id, &["80:80"], 1)).await;
}

#[tokio::test]
async fn update_round_trips_unknown_fields_and_replaces_port_rules() {
    let fake = fake().await;
    let client = fake.client();
    let st = stack(&client, "lbs").await;
    let mut def = lb("web", &st.meta.id, &["80:80"], 1);
    def.extra
        .insert("fqdn".into(), serde_json::json!("web.lbs.example.org"));
    let mut current = active_lb(&client, &def).await;
    assert_eq!(current.extra["fqdn"], "web.lbs.example.org");

    let api = client.load_balancer_services();
    let cfg = current.lb_config.get_or_insert_with(Default::default);
    cfg.port_rules.push(PortRule {
        source_port: 80,
        target_port: Some(9090),
        hostname: Some("api.example.org".into()),
        ..Default::default()
    });
    cfg.config = Some("defaults\nbalance source\n".into());
    let updating = api.update(&current).await.unwrap();
    assert_eq!(updating.meta.state(), state::UPDATING_ACTIVE);
    let updated = api.wait_settled(&current.meta.id, &wait()).await.unwrap();
    assert_eq!(updated.meta.state(), state::ACTIVE);
    let rules = &updated.lb_config.as_ref().unwrap().port_rules;
    assert_eq!(rules.len(), 2);
    assert_eq!(rules[1].hostname.as_deref(), Some("api.example.org"));
    assert_eq!(updated.extra["fqdn"], "web.lbs.example.org");

    // Scaling up in place places another instance.
    let mut bigger = updated.clone();
    bigger.scale = Some(3);
    api.update(&bigger).await.unwrap();
    let scaled = api.wait_settled(&bigger.meta.id, &wait()).await.unwrap();
    assert_eq!(scaled.current_scale, Some(3));
    assert_eq!(scaled.public_ips().len(), 3);
}

#[tokio::test]
async fn upgrade_and_finish() {
    let fake = fake().await;
    let client = fake.client();
    let st = stack(&client, "lbs").await;
    let web = active_lb(&client, &lb("web", &st.meta.id, &["80:80"], 1)).await;
    let api = client.load_balancer_services();
    let upgrade = ServiceUpgrade {
        in_service_strategy: Some(rancher_client::resource::InServiceStrategy {
            launch_config: Some(LaunchConfig {
                ports: vec!["80:80".into(), "443:443".into()],
                ..Default::default()
            }),
            start_first: Some(true),
            ..Default::default()
        }),
        ..Default::default()
    };
    let upgrading = api.upgrade(&web.meta.id, &upgrade).await.unwrap();
    assert_eq!(upgrading.meta.state(), state::UPGRADING);
    let upgraded = api.wait_settled(&web.meta.id, &wait()).await.unwrap();
    assert_eq!(upgraded.meta.state(), state::UPGRADED);
    assert!(upgraded.meta.has_action("finishupgrade"));
    assert_eq!(upgraded.public_ports(), vec![80, 443]);
    api.finish_upgrade(&web.meta.id).await.unwrap();
    let done = api.wait_settled(&web.meta.id, &wait()).await.unwrap();
    assert_eq!(done.meta.state(), state::ACTIVE);
}

#[tokio::test]
async fn waits_are_bounded_cancellable_and_report_failures() {
    let fake = fake().await;
    fake.set_settle_delay(Duration::from_secs(3600));
    let client = fake.client();
    let created = client
        .stacks()
        .create(&Stack::new("slow", "slow://"))
        .await
        .unwrap();
    let id = created.meta.id.clone();

    let err = client
        .stacks()
        .wait_settled(
            &id,
            &WaitParams::timeout(Duration::from_millis(50)).interval(Duration::from_millis(10)),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::WaitTimedOut { state, .. } if state == "activating"),
        "{err}"
    );

    let token = CancellationToken::new();
    let params = WaitParams::timeout(Duration::from_secs(3600))
        .interval(Duration::from_millis(10))
        .cancel(token.clone());
    let api = client.stacks();
    let waiter = tokio::spawn({
        let id = id.clone();
        async move { api.wait_settled(&id, &params).await }
    });
    token.cancel();
    let err = waiter.await.unwrap().unwrap_err();
    assert!(matches!(err, Error::Cancelled { .. }), "{err}");

    assert!(fake.fail_transition::<Stack>(&id, "image pull failed"));
    let err = client
        .stacks()
        .wait_settled(&id, &wait())
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::TransitionFailed { message, .. } if message == "image pull failed"),
        "{err}"
    );

    // settle_now finishes pending work at once.
    let other = client
        .stacks()
        .create(&Stack::new("other", "other://"))
        .await
        .unwrap();
    fake.settle_now();
    let settled = client.stacks().get(&other.meta.id).await.unwrap();
    assert_eq!(settled.meta.state(), state::ACTIVE);
}

#[tokio::test]
async fn retries_500_then_succeeds() {
    let fake = fake().await;
    let client = fake.client();
    fake.fail_next(2);
    fake.clear_requests();
    let hosts = client.hosts().list(&ListParams::new()).await.unwrap();
    assert_eq!(hosts.len(), 3);
    let statuses: Vec<_> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![Some(500), Some(500), Some(200)]);

    // More failures than retries: the last error comes back typed.
    fake.fail_next(10);
    let err = client.hosts().list(&ListParams::new()).await.unwrap_err();
    assert!(
        matches!(&err, Error::Api { status: 500, code, .. } if code == "ServerError"),
        "{err}"
    );
    fake.clear_faults();
}

#[tokio::test]
async fn post_is_not_retried_on_500_but_is_on_503() {
    let fake = fake().await;
    let client = fake.client();
    fake.fail_next(1);
    fake.clear_requests();
    let err = client
        .stacks()
        .create(&Stack::new("once", "once://"))
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(500));
    assert_eq!(fake.requests().len(), 1);

    fake.fail_next_with(1, 503);
    fake.clear_requests();
    client
        .stacks()
        .create(&Stack::new("twice", "twice://"))
        .await
        .unwrap();
    assert_eq!(fake.requests().len(), 2);
}

#[tokio::test]
async fn no_retry_on_422_and_validation_errors_name_the_field() {
    let fake = fake().await;
    let client = fake.client();
    fake.clear_requests();
    let err = client
        .load_balancer_services()
        .create(&LoadBalancerService::new("web", ""))
        .await
        .unwrap_err();
    match &err {
        Error::Api {
            status: 422,
            code,
            field_name,
            ..
        } => {
            assert_eq!(code, "MissingRequired");
            assert_eq!(field_name.as_deref(), Some("stackId"));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(err.to_string().contains("stackId"), "{err}");
    assert_eq!(fake.requests().len(), 1, "a 422 is not retried");

    let err = client
        .load_balancer_services()
        .create(&LoadBalancerService::new("web", "1st404"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Api { code, .. } if code == "InvalidReference"),
        "{err}"
    );

    let st = stack(&client, "lbs").await;
    let err = client
        .load_balancer_services()
        .create(&lb("bad-ports", &st.meta.id, &["http:80"], 1))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Api { field_name: Some(f), .. } if f == "ports"),
        "{err}"
    );
    let mut missing_cert = lb("tls", &st.meta.id, &["443:443"], 1);
    missing_cert
        .lb_config
        .as_mut()
        .unwrap()
        .default_certificate_id = Some("1c999".into());
    let err = client
        .load_balancer_services()
        .create(&missing_cert)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Api { field_name: Some(f), .. } if f == "defaultCertificateId"),
        "{err}"
    );
    let dup = client
        .stacks()
        .create(&Stack::new("lbs", "again://"))
        .await
        .unwrap_err();
    assert!(
        matches!(&dup, Error::Api { code, .. } if code == "NotUnique"),
        "{dup}"
    );
}

#[tokio::test]
async fn client_from_the_fakes_environment() {
    let fake = fake().await;
    let env = fake.env();
    let config =
        Config::from_lookup(|name| env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone()))
            .unwrap();
    let client = Client::new(config).unwrap();
    assert_eq!(
        client.hosts().list(&ListParams::new()).await.unwrap().len(),
        3
    );
}

#[tokio::test]
async fn not_found_is_typed() {
    let fake = fake().await;
    let client = fake.client();
    let err = client
        .load_balancer_services()
        .get("1s404")
        .await
        .unwrap_err();
    assert!(err.is_not_found(), "{err}");
    assert!(
        client
            .load_balancer_services()
            .get_opt("1s404")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test]
async fn dropped_connections_are_retried_for_reads() {
    let fake = fake().await;
    let client = fake.client();
    fake.drop_next(1);
    fake.clear_requests();
    let hosts = client.hosts().list(&ListParams::new()).await.unwrap();
    assert_eq!(hosts.len(), 3);
    let statuses: Vec<_> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![None, Some(200)]);
}

#[tokio::test]
async fn slow_responses_time_out() {
    let fake = fake().await;
    let client = Client::new(
        fake.config()
            .timeout(Duration::from_millis(100))
            .retry(RetryPolicy::none()),
    )
    .unwrap();
    fake.set_response_delay(Some(Duration::from_secs(5)));
    let err = client.hosts().list(&ListParams::new()).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { .. }), "{err}");
    fake.set_response_delay(None);
    assert_eq!(
        client.hosts().list(&ListParams::new()).await.unwrap().len(),
        3
    );
}

#[tokio::test]
async fn connect_errors_are_transport_errors() {
    let fake = fake().await;
    let config = fake.config().retry(RetryPolicy {
        max_retries: 1,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(1),
    });
    fake.shutdown();
    // Give the listener a moment to close by waiting until a connect fails.
    let client = Client::new(config).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match client.hosts().list(&ListParams::new()).await {
            Err(Error::Transport { .. }) => break,
            other => assert!(
                tokio::time::Instant::now() < deadline,
                "still reachable: {other:?}"
            ),
        }
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn wrong_keys_are_unauthorized_and_secrets_never_leak() {
    let fake = fake().await;
    let secret = "s3cr3t-Key-that-must-not-leak";
    let client = Client::new(
        Config::new(fake.url())
            .unwrap()
            .credentials(Credentials::new("wrong-access", secret))
            .retry(RetryPolicy::none()),
    )
    .unwrap();
    let err = client.hosts().list(&ListParams::new()).await.unwrap_err();
    assert!(
        matches!(err, Error::Unauthorized { status: 401, .. }),
        "{err}"
    );
    let ping = client.ping().await.unwrap_err();
    assert!(matches!(ping, Error::Unauthorized { .. }), "{ping}");
    fake.client().ping().await.unwrap();
    for text in [
        format!("{err}"),
        format!("{err:?}"),
        format!("{client:?}"),
        format!("{:?}", client.config()),
        format!("{:?}", client.hosts()),
    ] {
        assert!(!text.contains(secret), "secret leaked in {text}");
    }

    // No credentials at all.
    let anonymous = Client::new(Config::new(fake.url()).unwrap()).unwrap();
    let err = anonymous
        .hosts()
        .list(&ListParams::new())
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err}");

    // The fake's own Debug hides its secret key and the secrets it stores.
    let fake_secret = fake.credentials().unwrap().secret_key.expose().to_owned();
    let registry = fake.seed(&Registry::new("registry.example.org")).unwrap();
    fake.seed(&RegistryCredential::new(
        &registry.meta.id,
        "user",
        "stored-password",
    ))
    .unwrap();
    let fake_debug = format!("{fake:?}");
    assert!(!fake_debug.contains(&fake_secret), "{fake_debug}");
    assert!(!fake_debug.contains("stored-password"), "{fake_debug}");
    assert!(!format!("{:?}", fake.client()).contains(&fake_secret));
}

#[tokio::test]
async fn transport_errors_do_not_leak_secrets() {
    init();
    let secret = "another-secret-value";
    // Nothing listens on port 9 of loopback (discard); the connect fails.
    let client = Client::new(
        Config::new("http://127.0.0.1:9/v2-beta/projects/1a5")
            .unwrap()
            .credentials(Credentials::new("ak", secret))
            .connect_timeout(Duration::from_millis(500))
            .retry(RetryPolicy::none()),
    )
    .unwrap();
    let err = client.stacks().list(&ListParams::new()).await.unwrap_err();
    assert!(
        matches!(err, Error::Transport { .. } | Error::Timeout { .. }),
        "{err}"
    );
    let mut chain = format!("{err} {err:?}");
    let mut source = std::error::Error::source(&err);
    while let Some(s) = source {
        chain.push_str(&format!(" {s} {s:?}"));
        source = s.source();
    }
    assert!(!chain.contains(secret), "{chain}");
}

#[tokio::test]
async fn registries_credentials_and_links() {
    let fake = fake().await;
    let client = fake.client();
    let quay = client
        .registries()
        .create(&Registry::new("quay.io"))
        .await
        .unwrap();
    assert!(quay.meta.id.starts_with("1sp"), "{}", quay.meta.id);
    let cred = client
        .registry_credentials()
        .create(&RegistryCredential::new(&quay.meta.id, "foo", "qwerty"))
        .await
        .unwrap();
    assert!(cred.meta.id.starts_with("1c"), "{}", cred.meta.id);
    assert!(
        !format!("{cred:?}").contains("qwerty"),
        "credential Debug leaks"
    );
    assert_eq!(
        cred.secret_value.as_ref().map(|s| s.expose()),
        Some("qwerty")
    );

    let registry: Registry = client.follow_link(&cred, "registry").await.unwrap();
    assert_eq!(registry.server_address, "quay.io");
    let creds: Vec<RegistryCredential> = client
        .follow_link_list(&registry, "credentials")
        .await
        .unwrap();
    assert_eq!(creds.len(), 1);

    let err = client
        .follow_link::<Registry>(&registry, "nope")
        .await
        .unwrap_err();
    assert!(matches!(err, Error::NoSuchLink { .. }), "{err}");

    // A credential needs an existing registry; a registry address is unique.
    let err = client
        .registry_credentials()
        .create(&RegistryCredential::new("1sp999", "foo", "bar"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Api { field_name: Some(f), .. } if f == "registryId"),
        "{err}"
    );
    assert!(!err.to_string().contains("bar"));
    let err = client
        .registries()
        .create(&Registry::new("quay.io"))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Api { code, .. } if code == "NotUnique"),
        "{err}"
    );

    // Deactivate and activate.
    let api = client.registry_credentials();
    api.wait_settled(&cred.meta.id, &wait()).await.unwrap();
    api.deactivate(&cred.meta.id).await.unwrap();
    let inactive = api.wait_settled(&cred.meta.id, &wait()).await.unwrap();
    assert_eq!(inactive.meta.state(), state::INACTIVE);
    api.activate(&cred.meta.id).await.unwrap();
    let active = api.wait_settled(&cred.meta.id, &wait()).await.unwrap();
    assert_eq!(active.meta.state(), state::ACTIVE);
}

#[tokio::test]
async fn hosts_ip_addresses_and_settings() {
    let fake = fake().await;
    let client = fake.client();
    let hosts = client
        .hosts()
        .list(&ListParams::new().removed_null())
        .await
        .unwrap();
    let node2 = hosts.iter().find(|h| h.hostname == "node-2").unwrap();
    assert!(node2.meta.id.starts_with("1h"));
    assert_eq!(node2.agent_ip_address.as_deref(), Some("192.0.2.12"));
    assert_eq!(node2.labels.get("zone").map(String::as_str), Some("b"));
    let ips: Vec<IpAddress> = client.follow_link_list(node2, "ipAddresses").await.unwrap();
    let addrs: Vec<_> = ips.iter().map(|i| i.address.as_str()).collect();
    assert_eq!(addrs, vec!["192.0.2.12", "198.51.100.12"]);

    let image = client
        .settings()
        .find_by_name("lb.instance.image")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        image.effective_value(),
        Some(rancher_client::testing::DEFAULT_LB_IMAGE)
    );
    fake.set_setting("lb.instance.image", "rancher/lb-service-haproxy:v0.9.99");
    let image = client.settings().get("lb.instance.image").await.unwrap();
    assert_eq!(
        image.value.as_deref(),
        Some("rancher/lb-service-haproxy:v0.9.99")
    );

    // Removing a host drops it from the live list.
    let id = fake.host_id("node-3").unwrap();
    assert!(fake.remove_host(&id));
    let live = client
        .hosts()
        .list(&ListParams::new().removed_null())
        .await
        .unwrap();
    assert_eq!(live.len(), 2);
}

#[tokio::test]
async fn certificates_keep_keys_out_of_debug() {
    let fake = fake().await;
    let client = fake.client();
    let cert = client
        .certificates()
        .create(&Certificate::new("web-tls", CERT, KEY))
        .await
        .unwrap();
    assert!(cert.meta.id.starts_with("1c"));
    assert!(!format!("{cert:?}").contains("secretkeymaterial"));
    let found = client
        .certificates()
        .list(&ListParams::new().name("web-tls").removed_null())
        .await
        .unwrap();
    assert_eq!(found.len(), 1);

    let st = stack(&client, "lbs").await;
    let mut def = lb("tls", &st.meta.id, &["443:443"], 1);
    let cfg = def.lb_config.as_mut().unwrap();
    cfg.default_certificate_id = Some(cert.meta.id.clone());
    cfg.certificate_ids = vec![cert.meta.id.clone()];
    let tls = active_lb(&client, &def).await;
    assert_eq!(
        tls.lb_config.unwrap().default_certificate_id.as_deref(),
        Some(cert.meta.id.as_str())
    );

    let err = client
        .certificates()
        .create(&Certificate::new("broken", "not pem", KEY))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Api { field_name: Some(f), .. } if f == "cert"),
        "{err}"
    );
    assert!(!err.to_string().contains("secretkeymaterial"));
}

#[tokio::test]
async fn client_is_cheap_to_share_across_tasks() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<Client>();
    let fake = fake().await;
    let client = fake.client();
    let mut tasks = Vec::new();
    for i in 0..8 {
        let client = client.clone();
        tasks.push(tokio::spawn(async move {
            client
                .registries()
                .create(&Registry::new(format!("r{i}.example.net")))
                .await
        }));
    }
    for t in tasks {
        t.await.unwrap().unwrap();
    }
    assert_eq!(
        client
            .registries()
            .list(&ListParams::new())
            .await
            .unwrap()
            .len(),
        8
    );
}

#[tokio::test]
async fn start_on_create_and_stack_removal_cascade() {
    let fake = fake().await;
    let client = fake.client();
    let st = stack(&client, "lbs").await;
    let api = client.load_balancer_services();
    let mut def = lb("auto", &st.meta.id, &["80:80"], 1);
    def.start_on_create = Some(true);
    let created = api.create(&def).await.unwrap();
    let active = api.wait_settled(&created.meta.id, &wait()).await.unwrap();
    assert_eq!(active.meta.state(), state::ACTIVE);
    assert_eq!(active.current_scale, Some(1));

    // Removing the stack removes its services and frees their hosts' ports.
    client.stacks().remove(&st.meta.id).await.unwrap();
    let removed = api.wait_settled(&created.meta.id, &wait()).await.unwrap();
    assert_eq!(removed.meta.state(), state::REMOVED);
    assert!(removed.public_endpoints.is_empty());
    let hosts = client.hosts().list(&ListParams::new()).await.unwrap();
    assert!(hosts.iter().all(|h| h.public_endpoints.is_empty()));
    // A service cannot be created in a removed stack.
    let err = api
        .create(&lb("late", &st.meta.id, &["80"], 1))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::Api { field_name: Some(f), .. } if f == "stackId"),
        "{err}"
    );
}
