//! Controller tests on hand-built objects: the index is fed by hand, the provider
//! is the fake, and the API writes go to a recorder that applies them back to the
//! index the way an API server and its watch would.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use async_trait::async_trait;
use k8s_openapi::{
    api::{
        core::v1::{
            LoadBalancerIngress, Node, NodeAddress, NodeSpec, NodeStatus, Service, ServicePort,
            ServiceSpec, ServiceStatus, Taint,
        },
        discovery::v1::{Endpoint, EndpointPort, EndpointSlice},
    },
    apimachinery::pkg::apis::meta::v1::Time,
};
use kube::{ResourceExt, api::ObjectMeta};
use parking_lot::Mutex;
use rancher_runtime::{
    events::Type,
    index::{IndexClusterResource, IndexNamespacedResource},
    lease::Leadership,
    requeue::{Classify, ErrorKind},
};
use serde_json::Value;

use super::{Config, Error, Parts, Writer};
use crate::{
    model::{AddressType, NodeAddress as ModelAddress, ServiceKey, Zone},
    testing::{Call, FakeCloud, FakeFailure, FakeInstances, FakeLoadBalancer, fake::FakeInstance},
    well_known::{
        EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS, LOAD_BALANCER_CLEANUP_FINALIZER, REGION_LABEL,
        SERVICE_NAME_LABEL, UNINITIALIZED_TAINT, ZONE_LABEL, reason,
    },
};

#[derive(Clone, Debug, PartialEq)]
enum Op {
    AddFinalizer(String, usize),
    RemoveFinalizer(String),
    Status(String, Vec<String>),
    Node(String, Value),
    NodeAddresses(String, Vec<String>),
    Event(String, &'static str, String, String),
}

/// Records writes and applies them to the index.
struct Api {
    ops: Mutex<Vec<Op>>,
    lb: FakeLoadBalancer,
    index: Mutex<Option<Arc<parking_lot::RwLock<crate::index::Index>>>>,
}

impl Api {
    fn ops(&self) -> Vec<Op> {
        self.ops.lock().clone()
    }
    fn clear(&self) {
        self.ops.lock().clear();
    }
    fn events(&self) -> Vec<(String, &'static str, String)> {
        self.ops()
            .into_iter()
            .filter_map(|op| match op {
                Op::Event(key, type_, reason, _) => Some((key, type_, reason)),
                _ => None,
            })
            .collect()
    }
    fn writes(&self) -> Vec<Op> {
        self.ops()
            .into_iter()
            .filter(|op| !matches!(op, Op::Event(..)))
            .collect()
    }
    fn index(&self) -> Arc<parking_lot::RwLock<crate::index::Index>> {
        self.index.lock().clone().unwrap()
    }
    fn update(&self, service: &Service, change: impl FnOnce(&mut Service)) {
        let index = self.index();
        let key = crate::convert::service_key(service);
        let mut current = (*index.read().service(&key).unwrap()).clone();
        change(&mut current);
        let gone = current.metadata.deletion_timestamp.is_some() && current.finalizers().is_empty();
        let mut index = index.write();
        if gone {
            IndexNamespacedResource::<Service>::delete(&mut *index, key.namespace, key.name);
        } else {
            IndexNamespacedResource::<Service>::apply(&mut *index, current);
        }
    }
}

fn key_of(service: &Service) -> String {
    crate::convert::service_key(service).to_string()
}

#[async_trait]
impl Writer for Api {
    async fn add_finalizer(&self, service: &Service) -> Result<(), Error> {
        if service
            .finalizers()
            .iter()
            .any(|f| f == LOAD_BALANCER_CLEANUP_FINALIZER)
        {
            return Ok(());
        }
        let ensures = self
            .lb
            .calls()
            .iter()
            .filter(|c| matches!(c, Call::Ensure(..)))
            .count();
        self.ops
            .lock()
            .push(Op::AddFinalizer(key_of(service), ensures));
        self.update(service, |s| {
            s.finalizers_mut()
                .push(LOAD_BALANCER_CLEANUP_FINALIZER.into());
        });
        Ok(())
    }

    async fn remove_finalizer(&self, service: &Service) -> Result<(), Error> {
        self.ops.lock().push(Op::RemoveFinalizer(key_of(service)));
        self.update(service, |s| {
            s.finalizers_mut()
                .retain(|f| f != LOAD_BALANCER_CLEANUP_FINALIZER);
        });
        Ok(())
    }

    async fn patch_status(
        &self,
        service: &Service,
        ingress: Option<Vec<LoadBalancerIngress>>,
    ) -> Result<(), Error> {
        let ips = ingress
            .iter()
            .flatten()
            .filter_map(|i| i.ip.clone())
            .collect();
        self.ops.lock().push(Op::Status(key_of(service), ips));
        self.update(service, |s| {
            s.status.get_or_insert_default().load_balancer =
                Some(k8s_openapi::api::core::v1::LoadBalancerStatus { ingress });
        });
        Ok(())
    }

    async fn patch_node(&self, node: &str, patch: Value) -> Result<(), Error> {
        self.ops.lock().push(Op::Node(node.into(), patch.clone()));
        let index = self.index();
        let mut current = (*index.read().node(node).unwrap()).clone();
        if let Some(labels) = patch["metadata"]["labels"].as_object() {
            for (k, v) in labels {
                current
                    .labels_mut()
                    .insert(k.clone(), v.as_str().unwrap().into());
            }
        }
        let spec = current.spec.get_or_insert_default();
        if let Some(id) = patch["spec"]["providerID"].as_str() {
            spec.provider_id = Some(id.into());
        }
        if let Some(taints) = patch["spec"].get("taints") {
            spec.taints = serde_json::from_value(taints.clone()).unwrap();
        }
        IndexClusterResource::<Node>::apply(&mut *index.write(), current);
        Ok(())
    }

    async fn patch_node_addresses(
        &self,
        node: &str,
        addresses: Vec<NodeAddress>,
    ) -> Result<(), Error> {
        self.ops.lock().push(Op::NodeAddresses(
            node.into(),
            addresses.iter().map(|a| a.address.clone()).collect(),
        ));
        let index = self.index();
        let mut current = (*index.read().node(node).unwrap()).clone();
        current.status.get_or_insert_default().addresses = Some(addresses);
        IndexClusterResource::<Node>::apply(&mut *index.write(), current);
        Ok(())
    }

    async fn event(&self, service: &Service, type_: Type, reason: &str, note: String) {
        let type_ = if type_ == Type::Warning {
            "Warning"
        } else {
            "Normal"
        };
        self.ops
            .lock()
            .push(Op::Event(key_of(service), type_, reason.into(), note));
    }
}

struct Harness {
    parts: Parts,
    api: Arc<Api>,
    lb: FakeLoadBalancer,
    instances: FakeInstances,
}

impl Harness {
    fn new(config: Config) -> Self {
        Self::with_instances(config, false)
    }

    fn with_instances(config: Config, instances: bool) -> Self {
        let lb = FakeLoadBalancer::new();
        let fake_instances = FakeInstances::new();
        let cloud = FakeCloud {
            load_balancer: lb.clone(),
            instances: instances.then(|| fake_instances.clone()),
        };
        let api = Arc::new(Api {
            ops: Mutex::new(Vec::new()),
            lb: lb.clone(),
            index: Mutex::new(None),
        });
        let parts = Parts::new(Arc::new(cloud), config, api.clone());
        *api.index.lock() = Some(parts.index.clone());
        Self {
            parts,
            api,
            lb,
            instances: fake_instances,
        }
    }

    fn apply_service(&self, service: Service) {
        IndexNamespacedResource::<Service>::apply(&mut *self.parts.index.write(), service);
    }

    fn apply_node(&self, node: Node) {
        IndexClusterResource::<Node>::apply(&mut *self.parts.index.write(), node);
    }

    fn apply_slice(&self, slice: EndpointSlice) {
        IndexNamespacedResource::<EndpointSlice>::apply(&mut *self.parts.index.write(), slice);
    }

    fn service(&self, key: &ServiceKey) -> Option<Service> {
        self.parts.index.read().service(key).map(|s| (*s).clone())
    }

    async fn reconcile(&self, key: &ServiceKey) -> Result<(), Error> {
        self.parts.services.reconcile(key).await
    }
}

fn mk_service(ns: &str, name: &str, ports: &[(i32, i32)]) -> Service {
    Service {
        metadata: ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(name.into()),
            uid: Some(format!("uid-{ns}-{name}")),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            type_: Some("LoadBalancer".into()),
            ports: Some(
                ports
                    .iter()
                    .enumerate()
                    .map(|(i, (port, node_port))| ServicePort {
                        name: Some(format!("p{i}")),
                        port: *port,
                        node_port: Some(*node_port).filter(|n| *n != 0),
                        protocol: Some("TCP".into()),
                        ..Default::default()
                    })
                    .collect(),
            ),
            ..Default::default()
        }),
        status: Some(ServiceStatus::default()),
    }
}

fn mk_node(name: &str, ip: &str) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..Default::default()
        },
        spec: Some(NodeSpec::default()),
        status: Some(NodeStatus {
            addresses: Some(vec![NodeAddress {
                type_: "InternalIP".into(),
                address: ip.into(),
            }]),
            ..Default::default()
        }),
    }
}

fn mk_slice(ns: &str, service: &str, endpoints: &[(&str, &str)], port: i32) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            namespace: Some(ns.into()),
            name: Some(format!("{service}-abc")),
            labels: Some(BTreeMap::from([(
                SERVICE_NAME_LABEL.to_string(),
                service.to_string(),
            )])),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints: Some(
            endpoints
                .iter()
                .map(|(ip, node)| Endpoint {
                    addresses: vec![(*ip).into()],
                    node_name: Some((*node).into()),
                    ..Default::default()
                })
                .collect(),
        ),
        ports: Some(vec![EndpointPort {
            name: Some("p0".into()),
            port: Some(port),
            ..Default::default()
        }]),
    }
}

fn key(ns: &str, name: &str) -> ServiceKey {
    ServiceKey::new(ns, name)
}

fn ensures(lb: &FakeLoadBalancer, key: &ServiceKey) -> usize {
    lb.calls_for(key)
        .iter()
        .filter(|c| matches!(c, Call::Ensure(..)))
        .count()
}

#[tokio::test]
async fn finalizer_before_ensure_then_status_and_events() {
    let h = Harness::new(Config::default());
    h.apply_node(mk_node("n1", "10.0.0.1"));
    h.apply_node(mk_node("n2", "10.0.0.2"));
    h.apply_service(mk_service("default", "web", &[(80, 30080), (443, 30443)]));
    let k = key("default", "web");

    h.reconcile(&k).await.unwrap();

    let writes = h.api.writes();
    assert_eq!(
        writes[0],
        Op::AddFinalizer("default/web".into(), 0),
        "finalizer first, with no ensure yet"
    );
    assert_eq!(
        h.lb.calls_for(&k),
        vec![Call::Ensure(k.clone(), vec!["n1".into(), "n2".into()])]
    );
    assert_eq!(
        writes[1],
        Op::Status("default/web".into(), vec!["100.64.0.1".into()])
    );
    let reasons: Vec<String> = h.api.events().into_iter().map(|e| e.2).collect();
    assert_eq!(reasons, [reason::ENSURING, reason::ENSURED]);
    let service = h.service(&k).unwrap();
    assert_eq!(service.finalizers(), [LOAD_BALANCER_CLEANUP_FINALIZER]);

    // A resync where nothing changed: no provider call, no write, no event.
    h.api.clear();
    h.lb.clear_calls();
    h.reconcile(&k).await.unwrap();
    assert!(h.lb.calls().is_empty(), "{:?}", h.lb.calls());
    assert!(h.api.ops().is_empty(), "{:?}", h.api.ops());
}

#[tokio::test]
async fn label_and_selector_changes_do_not_ensure_but_annotations_and_ports_do() {
    let h = Harness::new(Config::default());
    h.apply_node(mk_node("n1", "10.0.0.1"));
    h.apply_service(mk_service("default", "web", &[(80, 30080)]));
    let k = key("default", "web");
    h.reconcile(&k).await.unwrap();
    let svc = h.service(&k).unwrap();

    h.api.update(&svc, |s| {
        s.labels_mut().insert("team".into(), "a".into());
        s.spec.as_mut().unwrap().selector = Some(BTreeMap::from([("app".into(), "x".into())]));
    });
    h.reconcile(&k).await.unwrap();
    assert_eq!(ensures(&h.lb, &k), 1);

    h.api.update(&svc, |s| {
        s.annotations_mut()
            .insert("example.org/x".into(), "1".into());
    });
    h.reconcile(&k).await.unwrap();
    assert_eq!(ensures(&h.lb, &k), 2);

    h.api.update(&svc, |s| {
        s.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].port = 8080;
    });
    h.reconcile(&k).await.unwrap();
    assert_eq!(ensures(&h.lb, &k), 3);
    assert_eq!(h.lb.balancer(&k).unwrap().service.ports[0].port, 8080);
}

#[tokio::test]
async fn retry_is_a_fixed_delay_and_errors_back_off_with_a_warning() {
    let h = Harness::new(Config::default());
    h.apply_node(mk_node("n1", "10.0.0.1"));
    h.apply_service(mk_service("default", "web", &[(80, 30080)]));
    let k = key("default", "web");

    h.lb.fail_ensure(
        Some(k.clone()),
        FakeFailure::Retry(Duration::from_secs(10)),
        1,
    );
    let error = h.reconcile(&k).await.unwrap_err();
    assert_eq!(
        error.kind(),
        ErrorKind::Retry {
            after: Duration::from_secs(10)
        }
    );
    assert!(
        h.api
            .events()
            .iter()
            .any(|e| e.1 == "Normal" && e.2 == reason::PENDING)
    );
    assert!(!h.api.events().iter().any(|e| e.1 == "Warning"));

    h.lb.fail_ensure(Some(k.clone()), FakeFailure::Error("quota".into()), 1);
    let error = h.reconcile(&k).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Backoff);
    let warning = h
        .api
        .ops()
        .into_iter()
        .find_map(|op| match op {
            Op::Event(_, "Warning", reason, note) if reason == reason::SYNC_FAILED => Some(note),
            _ => None,
        })
        .unwrap();
    assert!(warning.contains("quota"), "{warning}");
    assert!(
        !h.api.writes().iter().any(|op| matches!(op, Op::Status(..))),
        "no status before success"
    );

    h.reconcile(&k).await.unwrap();
    assert!(h.api.writes().iter().any(|op| matches!(op, Op::Status(..))));
}

#[tokio::test]
async fn other_classes_and_other_types_are_left_alone() {
    let h = Harness::new(Config::default().with_load_balancer_class(Some("rancher.io/lb".into())));
    let mut other = mk_service("default", "other", &[(80, 30080)]);
    other.spec.as_mut().unwrap().load_balancer_class = Some("example.org/other".into());
    let mut ours = mk_service("default", "ours", &[(80, 30081)]);
    ours.spec.as_mut().unwrap().load_balancer_class = Some("rancher.io/lb".into());
    let mut cluster_ip = mk_service("default", "plain", &[(80, 0)]);
    cluster_ip.spec.as_mut().unwrap().type_ = Some("ClusterIP".into());
    h.apply_service(other);
    h.apply_service(ours);
    h.apply_service(cluster_ip);
    for name in ["other", "ours", "plain"] {
        h.reconcile(&key("default", name)).await.unwrap();
    }
    assert!(h.lb.calls_for(&key("default", "other")).is_empty());
    assert!(h.lb.calls_for(&key("default", "plain")).is_empty());
    assert_eq!(ensures(&h.lb, &key("default", "ours")), 1);
    assert!(
        !h.api
            .ops()
            .iter()
            .any(|op| matches!(op, Op::AddFinalizer(k, _) if k != "default/ours"))
    );
}

#[tokio::test]
async fn another_class_with_the_shared_finalizer_is_not_cleaned_up() {
    // Another controller's Service carries the same well-known finalizer.
    let h = Harness::new(Config::default().with_load_balancer_class(Some("rancher.io/lb".into())));
    let mut other = mk_service("default", "other", &[(80, 30080)]);
    other.spec.as_mut().unwrap().load_balancer_class = Some("example.org/other".into());
    other.metadata.finalizers = Some(vec![LOAD_BALANCER_CLEANUP_FINALIZER.into()]);
    h.apply_service(other);
    let k = key("default", "other");
    h.reconcile(&k).await.unwrap();
    assert!(h.lb.calls_for(&k).is_empty(), "no provider call");
    assert!(
        !h.api
            .ops()
            .iter()
            .any(|op| matches!(op, Op::RemoveFinalizer(..))),
        "the other controller's finalizer stays: {:?}",
        h.api.ops()
    );
}

#[tokio::test]
async fn type_change_deletes_then_removes_finalizer_and_clears_status() {
    let h = Harness::new(Config::default());
    h.apply_node(mk_node("n1", "10.0.0.1"));
    h.apply_service(mk_service("default", "web", &[(80, 30080)]));
    let k = key("default", "web");
    h.reconcile(&k).await.unwrap();
    h.api.clear();

    let svc = h.service(&k).unwrap();
    h.api.update(&svc, |s| {
        let spec = s.spec.as_mut().unwrap();
        spec.type_ = Some("ClusterIP".into());
        spec.ports.as_mut().unwrap()[0].node_port = None;
    });
    h.reconcile(&k).await.unwrap();

    assert!(h.lb.balancer(&k).is_none());
    assert_eq!(
        h.api.writes(),
        vec![
            Op::Status("default/web".into(), vec![]),
            Op::RemoveFinalizer("default/web".into()),
        ]
    );
    let reasons: Vec<String> = h.api.events().into_iter().map(|e| e.2).collect();
    assert_eq!(reasons, [reason::DELETING, reason::DELETED]);
    let svc = h.service(&k).unwrap();
    assert!(svc.finalizers().is_empty());

    // Nothing more to do afterwards.
    h.lb.clear_calls();
    h.reconcile(&k).await.unwrap();
    assert!(h.lb.calls().is_empty());
}

#[tokio::test]
async fn finalizer_stays_until_delete_succeeds() {
    let h = Harness::new(Config::default());
    h.apply_node(mk_node("n1", "10.0.0.1"));
    h.apply_service(mk_service("default", "web", &[(80, 30080)]));
    let k = key("default", "web");
    h.reconcile(&k).await.unwrap();

    let svc = h.service(&k).unwrap();
    h.api.update(&svc, |s| {
        s.metadata.deletion_timestamp = Some(Time(k8s_openapi::jiff::Timestamp::now()));
    });
    h.lb.fail_delete(Some(k.clone()), FakeFailure::Error("api down".into()), 1);
    h.api.clear();
    let error = h.reconcile(&k).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Backoff);
    assert!(h.lb.balancer(&k).is_some());
    assert!(
        !h.api
            .writes()
            .iter()
            .any(|op| matches!(op, Op::RemoveFinalizer(_)))
    );
    assert!(
        h.api
            .events()
            .iter()
            .any(|e| e.1 == "Warning" && e.2 == reason::DELETE_FAILED)
    );
    // Never re-adds the finalizer to a Service being deleted.
    assert!(
        !h.api
            .writes()
            .iter()
            .any(|op| matches!(op, Op::AddFinalizer(..)))
    );

    h.reconcile(&k).await.unwrap();
    assert!(h.lb.balancer(&k).is_none());
    assert_eq!(
        h.api.writes(),
        vec![Op::RemoveFinalizer("default/web".into())],
        "no status write for a Service being deleted"
    );
    assert!(h.service(&k).is_none(), "the API removed the object");
    h.reconcile(&k).await.unwrap();
}

#[tokio::test]
async fn eligible_node_changes_update_and_readiness_does_not() {
    let h = Harness::new(Config::default());
    h.apply_node(mk_node("n1", "10.0.0.1"));
    h.apply_service(mk_service("default", "web", &[(80, 30080)]));
    let k = key("default", "web");
    h.reconcile(&k).await.unwrap();
    h.lb.clear_calls();
    h.api.clear();

    h.apply_node(mk_node("n2", "10.0.0.2"));
    h.reconcile(&k).await.unwrap();
    assert_eq!(
        h.lb.calls_for(&k),
        vec![Call::Update(k.clone(), vec!["n1".into(), "n2".into()])]
    );
    assert!(h.api.events().iter().any(|e| e.2 == reason::UPDATED));

    // Readiness flips are not backend changes.
    h.lb.clear_calls();
    let mut n2 = mk_node("n2", "10.0.0.2");
    n2.status.as_mut().unwrap().conditions =
        Some(vec![k8s_openapi::api::core::v1::NodeCondition {
            type_: "Ready".into(),
            status: "False".into(),
            ..Default::default()
        }]);
    h.apply_node(n2);
    h.reconcile(&k).await.unwrap();
    assert!(h.lb.calls().is_empty());

    // Excluded and to-be-deleted nodes leave the set.
    let mut n1 = mk_node("n1", "10.0.0.1");
    n1.labels_mut()
        .insert(EXCLUDE_FROM_EXTERNAL_LOAD_BALANCERS.into(), "true".into());
    h.apply_node(n1);
    let mut n3 = mk_node("n3", "10.0.0.3");
    n3.spec.as_mut().unwrap().taints = Some(vec![Taint {
        key: "ToBeDeletedByClusterAutoscaler".into(),
        effect: "NoSchedule".into(),
        ..Default::default()
    }]);
    h.apply_node(n3);
    h.reconcile(&k).await.unwrap();
    assert_eq!(
        h.lb.calls_for(&k),
        vec![Call::Update(k.clone(), vec!["n2".into()])]
    );

    // No eligible node at all: a warning.
    h.api.clear();
    IndexClusterResource::<Node>::delete(&mut *h.parts.index.write(), "n2".into());
    h.reconcile(&k).await.unwrap();
    assert!(
        h.api
            .events()
            .iter()
            .any(|e| e.1 == "Warning" && e.2 == reason::UNAVAILABLE)
    );
}

#[tokio::test]
async fn update_failure_warns_and_is_retried() {
    let h = Harness::new(Config::default());
    h.apply_node(mk_node("n1", "10.0.0.1"));
    h.apply_service(mk_service("default", "web", &[(80, 30080)]));
    let k = key("default", "web");
    h.reconcile(&k).await.unwrap();
    h.apply_node(mk_node("n2", "10.0.0.2"));
    h.lb.fail_update(None, FakeFailure::Error("busy".into()), 1);
    assert!(h.reconcile(&k).await.is_err());
    assert!(
        h.api
            .events()
            .iter()
            .any(|e| e.1 == "Warning" && e.2 == reason::UPDATE_FAILED)
    );
    h.lb.clear_calls();
    h.reconcile(&k).await.unwrap();
    assert_eq!(
        h.lb.calls_for(&k),
        vec![Call::Update(k.clone(), vec!["n1".into(), "n2".into()])]
    );
}

#[tokio::test]
async fn local_policy_uses_only_nodes_with_local_endpoints() {
    let h = Harness::new(Config::default());
    for (n, ip) in [("n1", "10.0.0.1"), ("n2", "10.0.0.2"), ("n3", "10.0.0.3")] {
        h.apply_node(mk_node(n, ip));
    }
    let mut svc = mk_service("default", "web", &[(80, 30080)]);
    let spec = svc.spec.as_mut().unwrap();
    spec.external_traffic_policy = Some("Local".into());
    spec.health_check_node_port = Some(32000);
    h.apply_service(svc);
    h.apply_slice(mk_slice("default", "web", &[("10.42.0.5", "n2")], 8080));
    let k = key("default", "web");
    h.reconcile(&k).await.unwrap();
    assert_eq!(
        h.lb.calls_for(&k),
        vec![Call::Ensure(k.clone(), vec!["n2".into()])]
    );
    assert_eq!(
        h.lb.balancer(&k).unwrap().service.health_check_node_port,
        Some(32000)
    );

    h.lb.clear_calls();
    h.apply_slice(mk_slice(
        "default",
        "web",
        &[("10.42.0.5", "n2"), ("10.42.0.9", "n3")],
        8080,
    ));
    h.reconcile(&k).await.unwrap();
    assert_eq!(
        h.lb.calls_for(&k),
        vec![Call::Update(k.clone(), vec!["n2".into(), "n3".into()])]
    );
}

#[tokio::test]
async fn without_node_ports_endpoint_changes_update_the_targets() {
    let h = Harness::new(Config::default());
    h.apply_node(mk_node("n1", "10.0.0.1"));
    let mut svc = mk_service("default", "web", &[(80, 0)]);
    svc.spec.as_mut().unwrap().allocate_load_balancer_node_ports = Some(false);
    h.apply_service(svc);
    h.apply_slice(mk_slice("default", "web", &[("10.42.0.5", "n1")], 8080));
    let k = key("default", "web");
    h.reconcile(&k).await.unwrap();
    let lb = h.lb.balancer(&k).unwrap();
    assert!(lb.service.targets_endpoints());
    assert_eq!(
        lb.service.endpoint_targets(&lb.service.ports[0]),
        vec!["10.42.0.5:8080".parse().unwrap()]
    );

    h.lb.clear_calls();
    h.apply_slice(mk_slice("default", "web", &[("10.42.0.6", "n1")], 8080));
    h.reconcile(&k).await.unwrap();
    assert_eq!(
        h.lb.calls_for(&k),
        vec![Call::Update(k.clone(), vec!["n1".into()])]
    );
    let lb = h.lb.balancer(&k).unwrap();
    assert_eq!(
        lb.service.endpoint_targets(&lb.service.ports[0]),
        vec!["10.42.0.6:8080".parse().unwrap()]
    );
}

#[tokio::test]
async fn bad_input_warns_naming_the_field_and_touches_nothing() {
    let h = Harness::new(Config::default());
    h.apply_node(mk_node("n1", "10.0.0.1"));
    h.apply_service(mk_service("default", "empty", &[]));
    h.apply_service(mk_service("default", "dup", &[(80, 30080), (80, 30081)]));
    h.apply_service(mk_service("default", "good", &[(80, 30082)]));
    for (name, field) in [("empty", "spec.ports"), ("dup", "spec.ports[1].port")] {
        let error = h.reconcile(&key("default", name)).await.unwrap_err();
        assert!(matches!(error, Error::Invalid(_)), "{error}");
        let note = h
            .api
            .ops()
            .into_iter()
            .find_map(|op| match op {
                Op::Event(k, "Warning", _, note) if k == format!("default/{name}") => Some(note),
                _ => None,
            })
            .unwrap();
        assert!(note.contains(field), "{note}");
    }
    assert!(h.lb.calls().is_empty());
    assert!(
        h.api.writes().is_empty(),
        "no finalizer on invalid Services"
    );
    h.reconcile(&key("default", "good")).await.unwrap();
    assert_eq!(ensures(&h.lb, &key("default", "good")), 1);
}

#[tokio::test]
async fn implemented_elsewhere_keeps_the_finalizer_and_writes_no_status() {
    let h = Harness::new(Config::default());
    h.apply_node(mk_node("n1", "10.0.0.1"));
    h.apply_service(mk_service("default", "web", &[(80, 30080)]));
    let k = key("default", "web");
    h.lb.fail_ensure(None, FakeFailure::ImplementedElsewhere, 1);
    h.reconcile(&k).await.unwrap();
    assert_eq!(
        h.api.writes(),
        vec![Op::AddFinalizer("default/web".into(), 0)]
    );
    h.lb.clear_calls();
    h.reconcile(&k).await.unwrap();
    assert!(h.lb.calls().is_empty(), "recorded as applied");
}

#[tokio::test]
async fn node_controller_sets_provider_id_addresses_and_zone_labels() {
    let h = Harness::with_instances(Config::default(), true);
    h.instances.insert(
        "n1",
        FakeInstance {
            id: "host-1".into(),
            addresses: vec![
                ModelAddress::new(AddressType::InternalIp, "10.0.0.1"),
                ModelAddress::new(AddressType::ExternalIp, "203.0.113.1"),
            ],
            zone: Zone {
                zone: "zone-a".into(),
                region: "region-1".into(),
            },
            instance_type: None,
        },
    );
    let mut n1 = mk_node("n1", "10.0.0.1");
    n1.spec.as_mut().unwrap().taints = Some(vec![
        Taint {
            key: UNINITIALIZED_TAINT.into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        },
        Taint {
            key: "example.org/keep".into(),
            effect: "NoSchedule".into(),
            ..Default::default()
        },
    ]);
    h.apply_node(n1);
    let nodes = h.parts.nodes.clone().unwrap();
    nodes.reconcile("n1").await.unwrap();

    let node = h.parts.index.read().node("n1").unwrap();
    assert_eq!(
        node.spec.as_ref().unwrap().provider_id.as_deref(),
        Some("fake://host-1")
    );
    assert_eq!(node.labels()[ZONE_LABEL], "zone-a");
    assert_eq!(node.labels()[REGION_LABEL], "region-1");
    let taints: Vec<&str> = node
        .spec
        .as_ref()
        .unwrap()
        .taints
        .iter()
        .flatten()
        .map(|t| t.key.as_str())
        .collect();
    assert_eq!(taints, ["example.org/keep"]);
    assert!(h.api.writes().contains(&Op::NodeAddresses(
        "n1".into(),
        vec!["10.0.0.1".into(), "203.0.113.1".into()]
    )));

    // Converged: a second pass writes nothing.
    h.api.clear();
    nodes.reconcile("n1").await.unwrap();
    assert!(h.api.writes().is_empty(), "{:?}", h.api.writes());

    // A node without an instance is left alone.
    h.apply_node(mk_node("stranger", "10.0.0.9"));
    nodes.reconcile("stranger").await.unwrap();
    assert!(h.api.writes().is_empty());
}

#[tokio::test]
async fn a_converging_service_never_holds_up_the_others() {
    let h = Harness::new(Config::default().with_workers(2));
    h.apply_node(mk_node("n1", "10.0.0.1"));
    let slow = key("default", "slow");
    h.lb.fail_ensure(
        Some(slow.clone()),
        FakeFailure::Retry(Duration::from_millis(20)),
        10_000,
    );
    h.apply_service(mk_service("default", "slow", &[(80, 30080)]));
    for i in 0..20 {
        h.apply_service(mk_service("default", &format!("s{i}"), &[(80, 30100 + i)]));
    }
    let lb = h.lb.clone();
    let token = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn(h.parts.run(Leadership::always(), token.clone()));

    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let done = (0..20).all(|i| lb.balancer(&key("default", &format!("s{i}"))).is_some());
        let slow_attempts = ensures(&lb, &slow);
        if done && slow_attempts >= 3 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "others not ensured while one converges"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(lb.balancer(&slow).is_none());
    token.cancel();
    run.await.unwrap();
}

#[tokio::test]
async fn provider_reported_status_changes_are_written_without_an_ensure() {
    let h = Harness::new(Config::default());
    h.apply_node(mk_node("n1", "10.0.0.1"));
    h.apply_service(mk_service("default", "web", &[(80, 30080)]));
    let k = key("default", "web");
    let (lb, api) = (h.lb.clone(), h.api.clone());
    let token = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn(h.parts.run(Leadership::always(), token.clone()));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !api.writes().iter().any(|op| matches!(op, Op::Status(..))) {
        assert!(tokio::time::Instant::now() < deadline, "first status");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }

    let moved = crate::model::LoadBalancerStatus {
        ingress: vec![crate::model::Ingress::ip("192.0.2.9".parse().unwrap())],
    };
    assert!(lb.set_status(&k, moved));
    let want = Op::Status("default/web".into(), vec!["192.0.2.9".into()]);
    while !api.writes().contains(&want) {
        assert!(tokio::time::Instant::now() < deadline, "{:?}", api.writes());
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(ensures(&lb, &k), 1, "read back with get, not ensured again");
    assert!(lb.calls_for(&k).contains(&Call::Get(k.clone())));
    token.cancel();
    run.await.unwrap();
}
