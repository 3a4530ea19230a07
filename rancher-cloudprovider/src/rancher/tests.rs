use std::{collections::BTreeMap, net::IpAddr, sync::Arc};

use rancher_lb::{
    model::{Endpoint, Name, Stickiness},
    placement::Host,
    testing::FakeDriver,
};

use super::*;
use crate::{
    model::{Endpoint as ModelEndpoint, ServiceKey},
    testing::conformance::{self, Fixture},
};

fn hosts() -> Vec<Host> {
    ["127.0.0.2", "127.0.0.3", "127.0.0.4"]
        .iter()
        .map(|ip| Host::new(ip.parse().unwrap()))
        .collect()
}

fn provider() -> (RancherLoadBalancer, Arc<FakeDriver>) {
    let driver = Arc::new(FakeDriver::new(hosts()));
    let lb =
        RancherLoadBalancer::new(driver.clone()).with_hosts(hosts().into_iter().map(|h| h.address));
    (lb, driver)
}

fn service() -> Service {
    Service::new(
        ServiceKey::new("shop", "web"),
        "0b6c1f4e-77aa-4d0e-9a53-2f5a3c1d9e01",
        &[(80, Some(30080)), (443, Some(30443))],
    )
}

fn nodes() -> Vec<Node> {
    vec![
        Node::new("n1", "10.0.0.1".parse().unwrap()),
        Node::new("n2", "10.0.0.2".parse().unwrap()),
    ]
}

fn backend<'a>(
    lb: &'a rancher_lb::model::LoadBalancer,
    name: &str,
) -> &'a rancher_lb::model::Backend {
    lb.backend(&Name::new(name).unwrap()).unwrap()
}

#[tokio::test]
async fn passes_the_conformance_battery() {
    let (lb, driver) = provider();
    conformance::load_balancer(&lb, &Fixture::example())
        .await
        .unwrap();
    assert!(driver.ids().is_empty());
}

#[test]
fn one_tcp_listener_per_port_forwarding_to_node_ports() {
    let (provider, _) = provider();
    let lb = provider.build("kubernetes", &service(), &nodes()).unwrap();
    assert_eq!(lb.id().as_str(), "kubernetes.shop.web.0b6c1f4e");
    let ports: Vec<(u16, LbProtocol)> = lb
        .listeners()
        .iter()
        .map(|l| (l.port, l.protocol))
        .collect();
    assert_eq!(ports, [(80, LbProtocol::Tcp), (443, LbProtocol::Tcp)]);
    assert_eq!(
        backend(&lb, "port-443").endpoints,
        vec![
            Endpoint {
                address: "10.0.0.1".parse().unwrap(),
                port: 30443
            },
            Endpoint {
                address: "10.0.0.2".parse().unwrap(),
                port: 30443
            },
        ]
    );
    assert_eq!(lb.scale(), DEFAULT_SCALE);
    assert_eq!(backend(&lb, "port-80").stickiness, Stickiness::None);
}

#[test]
fn without_node_ports_the_endpoints_are_the_targets() {
    let (provider, _) = provider();
    let mut svc = Service::new(ServiceKey::new("shop", "web"), "u1", &[(80, None)]);
    svc.endpoints = vec![ModelEndpoint {
        address: "10.42.0.7".parse().unwrap(),
        node_name: Some("n1".into()),
        ports: BTreeMap::from([(String::new(), 8080)]),
    }];
    let lb = provider.build("kubernetes", &svc, &nodes()).unwrap();
    assert_eq!(
        backend(&lb, "port-80").endpoints,
        vec![Endpoint {
            address: "10.42.0.7".parse().unwrap(),
            port: 8080
        }]
    );
}

#[test]
fn client_ip_affinity_becomes_source_stickiness() {
    let (provider, _) = provider();
    let mut svc = service();
    svc.session_affinity = SessionAffinity::ClientIp {
        timeout_seconds: Some(600),
    };
    let lb = provider.build("kubernetes", &svc, &nodes()).unwrap();
    assert_eq!(backend(&lb, "port-80").stickiness, Stickiness::Source);
}

#[tokio::test]
async fn udp_is_rejected_before_anything_changes() {
    let (provider, driver) = provider();
    let mut svc = service();
    svc.ports[1].protocol = Protocol::Udp;
    let error = provider
        .ensure_load_balancer("kubernetes", &svc, &nodes())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::InvalidService { field, .. } if field == "spec.ports[1].protocol"),
        "{error}"
    );
    assert!(error.to_string().contains("UDP"), "{error}");
    assert_eq!(driver.ensure_calls(), 0, "no partial listener");
}

#[tokio::test]
async fn scale_annotation_is_honoured_and_bad_values_name_the_field() {
    let (provider, driver) = provider();
    let mut svc = service();
    svc.annotations.insert(SCALE_ANNOTATION.into(), "2".into());
    let status = provider
        .ensure_load_balancer("kubernetes", &svc, &nodes())
        .await
        .unwrap();
    assert_eq!(status.ingress.len(), 2, "two instances on two hosts");
    assert!(
        status
            .ingress
            .iter()
            .all(|i| i.ip_mode == Some(IpMode::Proxy))
    );

    svc.annotations.insert(SCALE_ANNOTATION.into(), "3".into());
    let status = provider
        .ensure_load_balancer("kubernetes", &svc, &nodes())
        .await
        .unwrap();
    assert_eq!(status.ingress.len(), 3, "scale changes apply on update");

    for bad in ["two", "-1", "100000"] {
        svc.annotations.insert(SCALE_ANNOTATION.into(), bad.into());
        let calls = driver.ensure_calls();
        let error = provider
            .ensure_load_balancer("kubernetes", &svc, &nodes())
            .await
            .unwrap_err();
        assert!(
            error.to_string().contains(SCALE_ANNOTATION),
            "{bad}: {error}"
        );
        assert_eq!(driver.ensure_calls(), calls);
    }

    svc.annotations.insert(SCALE_ANNOTATION.into(), "0".into());
    let status = provider
        .ensure_load_balancer("kubernetes", &svc, &nodes())
        .await
        .unwrap();
    assert!(
        status.ingress.is_empty(),
        "scale 0: no instance, empty status"
    );
}

#[tokio::test]
async fn load_balancer_ip_only_where_a_host_has_it() {
    let (provider, _) = provider();
    let mut svc = service();
    svc.load_balancer_ip = Some("127.0.0.4".parse().unwrap());
    let status = provider
        .ensure_load_balancer("kubernetes", &svc, &nodes())
        .await
        .unwrap();
    let ips: Vec<IpAddr> = status.ingress.iter().filter_map(|i| i.ip).collect();
    assert_eq!(ips, ["127.0.0.4".parse::<IpAddr>().unwrap()]);

    svc.load_balancer_ip = Some("192.0.2.77".parse().unwrap());
    let error = provider
        .ensure_load_balancer("kubernetes", &svc, &nodes())
        .await
        .unwrap_err();
    assert!(
        matches!(&error, Error::InvalidService { field, .. } if field == "spec.loadBalancerIP"),
        "{error}"
    );

    // A driver whose hosts are unknown cannot honour any address.
    let unknown = RancherLoadBalancer::new(Arc::new(FakeDriver::new(hosts())));
    svc.load_balancer_ip = Some("127.0.0.4".parse().unwrap());
    assert!(unknown.build("kubernetes", &svc, &nodes()).is_err());
}

#[tokio::test]
async fn no_running_instance_is_a_retry_not_an_empty_status() {
    let driver = Arc::new(FakeDriver::new(vec![]));
    let provider = RancherLoadBalancer::new(driver);
    let error = provider
        .ensure_load_balancer("kubernetes", &service(), &nodes())
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Retry { .. }), "{error}");
}

#[tokio::test]
async fn node_label_instances_read_zone_labels() {
    let mut node = Node::new("n1", "10.0.0.1".parse().unwrap());
    node.labels.insert(HOST_ZONE_LABEL.into(), "zone-b".into());
    node.labels.insert(HOST_REGION_LABEL.into(), "eu".into());
    let zone = NodeLabelInstances.zone(&node).await.unwrap();
    assert_eq!((zone.zone.as_str(), zone.region.as_str()), ("zone-b", "eu"));
    assert_eq!(
        NodeLabelInstances.provider_id(&node).await.unwrap(),
        "rancher://n1"
    );
}

#[tokio::test]
async fn rancher_hosts_give_ids_addresses_and_real_zones() {
    use rancher_client::testing::{FakeHost, FakeRancher};
    rancher_runtime::install_crypto_provider();
    let fake = FakeRancher::builder()
        .hosts([
            FakeHost::new("node-1.example.org", "192.0.2.11")
                .label(HOST_ZONE_LABEL, "zone-a")
                .label(HOST_REGION_LABEL, "region-1"),
            FakeHost::new("node-2", "192.0.2.12").label(HOST_ZONE_LABEL, "zone-b"),
        ])
        .start()
        .await
        .unwrap();
    let hosts = RancherHosts::new(fake.client());

    // Short name against the host's FQDN.
    let n1 = Node::new("node-1", "10.9.9.9".parse().unwrap());
    assert!(hosts.instance_exists(&n1).await.unwrap());
    let zone = hosts.zone(&n1).await.unwrap();
    assert_eq!(
        (zone.zone.as_str(), zone.region.as_str()),
        ("zone-a", "region-1")
    );
    let id = hosts.provider_id(&n1).await.unwrap();
    assert!(
        id.starts_with("rancher://") && id.len() > "rancher://".len(),
        "{id}"
    );
    let addresses = hosts.node_addresses(&n1).await.unwrap();
    assert!(
        addresses.contains(&crate::model::NodeAddress::new(
            crate::model::AddressType::ExternalIp,
            "192.0.2.11"
        )),
        "{addresses:?}"
    );

    // By address.
    let by_ip = Node::new("ip-192-0-2-12", "192.0.2.12".parse().unwrap());
    assert_eq!(hosts.zone(&by_ip).await.unwrap().zone, "zone-b");

    // Unknown node; and a Rancher outage after the first list keeps serving.
    let stranger = Node::new("stranger", "10.1.1.1".parse().unwrap());
    assert!(!hosts.instance_exists(&stranger).await.unwrap());
    fake.fail_next(1000);
    let hosts = hosts.with_ttl(std::time::Duration::ZERO);
    assert_eq!(
        hosts.zone(&n1).await.unwrap().zone,
        "zone-a",
        "stale list serves"
    );
    let cold = RancherHosts::new(fake.client());
    assert!(
        cold.instance_exists(&n1).await.is_err(),
        "no list to fall back on"
    );
    fake.clear_faults();
}
