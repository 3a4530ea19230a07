use std::{net::IpAddr, time::Duration};

use super::*;
use crate::{fixtures::*, testing::FakeBackend};

/// Records statuses and events; a status write is fed back into the index as the
/// API server's watch would.
#[derive(Default)]
struct Recorded {
    statuses: Mutex<Vec<(IngressKey, Vec<Address>)>>,
    events: Mutex<Vec<(IngressKey, bool, String, String)>>,
    index: Mutex<Option<Arc<RwLock<Index>>>>,
}

#[async_trait]
impl Effects for Recorded {
    async fn write_status(&self, ingress: &Ingress, addresses: &[Address]) -> Result<()> {
        self.statuses
            .lock()
            .push((ingress.key.clone(), addresses.to_vec()));
        if let Some(index) = self.index.lock().clone() {
            let mut updated = ingress.clone();
            updated.status = addresses.to_vec();
            index.write().apply_ingress(updated);
        }
        Ok(())
    }

    async fn event(&self, ingress: &Ingress, warning: bool, reason: &str, note: &str) {
        self.events.lock().push((
            ingress.key.clone(),
            warning,
            reason.to_owned(),
            note.to_owned(),
        ));
    }
}

struct Harness {
    index: Arc<RwLock<Index>>,
    fake: FakeBackend,
    effects: Arc<Recorded>,
    metrics: Metrics,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

fn hosts() -> Vec<IpAddr> {
    vec!["127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap()]
}

impl Harness {
    fn start(setup: impl FnOnce(&mut Index)) -> Self {
        let mut index = Index::new();
        index.apply_class(rancher_class());
        index.apply_class(mk_class("nginx", "k8s.io/ingress-nginx", false));
        index.apply_service(mk_service("default", "nginx-service", &[("", 80)]));
        index.apply_slice(mk_slice(
            "default",
            "nginx-1",
            "nginx-service",
            &[("", 8080)],
            &["10.42.0.5"],
        ));
        setup(&mut index);
        let index = Arc::new(RwLock::new(index));
        let fake = FakeBackend::new(hosts());
        let effects = Arc::new(Recorded::default());
        *effects.index.lock() = Some(index.clone());
        let metrics = Metrics::default();
        let controller = Controller::new(
            index.clone(),
            Arc::new(fake.clone()),
            effects.clone(),
            Config::default(),
            Leadership::always(),
            metrics.clone(),
        );
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(controller.run(Readiness::new(), shutdown.clone()));
        Self {
            index,
            fake,
            effects,
            metrics,
            shutdown,
            task,
        }
    }

    fn status(&self, namespace: &str, name: &str) -> Vec<Address> {
        self.index
            .read()
            .sources()
            .ingress(&IngressKey::new(namespace, name))
            .map(|i| i.status.clone())
            .unwrap_or_default()
    }

    fn warnings(&self, name: &str) -> Vec<String> {
        self.effects
            .events
            .lock()
            .iter()
            .filter(|(key, warning, _, _)| *warning && key.name == name)
            .map(|(_, _, _, note)| note.clone())
            .collect()
    }

    async fn until(&self, what: &str, mut condition: impl FnMut(&Self) -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !condition(self) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "timed out waiting for {what}"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.task.await.unwrap();
    }
}

fn ips(list: &[&str]) -> Vec<Address> {
    list.iter().map(|a| Address::parse(a)).collect()
}

fn scalelb(scale: &str) -> Ingress {
    annotate(
        mk_ingress(
            "default",
            "scalelb",
            100,
            vec![rule(
                "foo.bar.com",
                vec![path("/foo", "Prefix", svc("nginx-service", 80))],
            )],
        ),
        "scale",
        scale,
    )
}

#[tokio::test]
async fn scale_two_gives_two_addresses_served_on_both_hosts() {
    let h = Harness::start(|index| index.apply_ingress(scalelb("2")));
    h.until("two addresses", |h| {
        h.status("default", "scalelb") == ips(&["127.0.0.2", "127.0.0.3"])
    })
    .await;
    for host in hosts() {
        let backend = h
            .fake
            .request(host, 80, "foo.bar.com", "/foo")
            .expect("served");
        assert_eq!(backend.endpoints, vec!["10.42.0.5:8080".parse().unwrap()]);
        assert!(h.fake.request(host, 80, "foo.bar.com", "/foobar").is_none());
    }
    let events = h.effects.events.lock().clone();
    assert!(
        events.iter().any(|(_, warning, reason, note)| !warning
            && reason == REASON_SYNCED
            && note.contains("127.0.0.2")),
        "{events:?}"
    );
    assert_eq!(h.metrics.load_balancers.get(), 1);
    assert_eq!(h.metrics.routes.get(), 1);
    h.stop().await;
}

#[tokio::test]
async fn scale_changes_are_honoured_both_ways() {
    let h = Harness::start(|index| index.apply_ingress(scalelb("2")));
    h.until("two", |h| h.status("default", "scalelb").len() == 2)
        .await;
    h.index.write().apply_ingress(scalelb("1"));
    h.until("one", |h| {
        h.status("default", "scalelb") == ips(&["127.0.0.2"])
    })
    .await;
    h.until("old load balancer deleted", |h| {
        h.fake.balancers().len() == 1
    })
    .await;
    h.index.write().apply_ingress(scalelb("2"));
    h.until("two again", |h| h.status("default", "scalelb").len() == 2)
        .await;
    h.stop().await;
}

#[tokio::test]
async fn bad_input_is_rejected_with_a_warning_and_others_are_served() {
    let h = Harness::start(|index| {
        index.apply_ingress(scalelb("2"));
        index.apply_ingress(mk_ingress(
            "default",
            "bad",
            200,
            vec![rule(
                "bad.example.org",
                vec![path("/a;b", "Prefix", svc("nginx-service", 80))],
            )],
        ));
        index.apply_ingress(annotate(
            mk_ingress(
                "default",
                "two",
                200,
                vec![rule(
                    "two.example.org",
                    vec![path("/", "Prefix", svc("nginx-service", 80))],
                )],
            ),
            "scale",
            "two",
        ));
    });
    h.until("good one served", |h| {
        h.status("default", "scalelb").len() == 2
    })
    .await;
    h.until("warnings", |h| {
        !h.warnings("bad").is_empty() && !h.warnings("two").is_empty()
    })
    .await;
    assert!(h.warnings("bad")[0].contains("spec.rules[0].http.paths[0].path"));
    assert!(h.warnings("two")[0].contains(r#"metadata.annotations["scale"]"#));
    assert_eq!(
        h.fake.owners(),
        vec![IngressKey::new("default", "scalelb")],
        "nothing of the rejected Ingresses reaches the backend"
    );
    assert!(h.status("default", "bad").is_empty());
    // Fixing it programs it, and the warning is not repeated.
    let warnings_before = h.warnings("bad").len();
    h.index.write().apply_ingress(mk_ingress(
        "default",
        "bad",
        200,
        vec![rule(
            "bad.example.org",
            vec![path("/a", "Prefix", svc("nginx-service", 80))],
        )],
    ));
    h.until("fixed one served", |h| {
        !h.status("default", "bad").is_empty()
    })
    .await;
    assert_eq!(h.warnings("bad").len(), warnings_before);
    h.stop().await;
}

#[tokio::test]
async fn the_loser_of_a_conflict_is_told_the_winner() {
    let h = Harness::start(|index| {
        index.apply_ingress(scalelb("1"));
        let mut newer = scalelb("1");
        newer.key.name = "newer".into();
        newer.created = 500;
        index.apply_ingress(newer);
    });
    h.until("warning", |h| !h.warnings("newer").is_empty())
        .await;
    assert!(
        h.warnings("newer")[0].contains("default/scalelb"),
        "{:?}",
        h.warnings("newer")
    );
    assert!(h.warnings("scalelb").is_empty());
    h.stop().await;
}

#[tokio::test]
async fn deleting_an_ingress_removes_its_routes_and_other_classes_are_ignored() {
    let h = Harness::start(|index| {
        index.apply_ingress(scalelb("1"));
        let mut theirs = scalelb("1");
        theirs.key.name = "theirs".into();
        theirs.class_name = Some("nginx".into());
        index.apply_ingress(theirs);
    });
    h.until("served", |h| !h.status("default", "scalelb").is_empty())
        .await;
    assert!(h.status("default", "theirs").is_empty());
    assert_eq!(h.fake.owners(), vec![IngressKey::new("default", "scalelb")]);
    h.index
        .write()
        .delete_ingress(&IngressKey::new("default", "scalelb"));
    h.until("load balancer gone", |h| h.fake.balancers().is_empty())
        .await;
    h.stop().await;
}

#[tokio::test]
async fn status_is_cleared_when_the_ingress_stops_being_ours() {
    let h = Harness::start(|index| index.apply_ingress(scalelb("1")));
    h.until("served", |h| !h.status("default", "scalelb").is_empty())
        .await;
    let mut moved = h
        .index
        .read()
        .sources()
        .ingress(&IngressKey::new("default", "scalelb"))
        .cloned()
        .unwrap();
    moved.class_name = Some("nginx".into());
    h.index.write().apply_ingress(moved);
    h.until("cleared", |h| h.status("default", "scalelb").is_empty())
        .await;
    h.stop().await;
}

#[tokio::test]
async fn addresses_follow_the_backend_without_polling() {
    let h = Harness::start(|index| index.apply_ingress(scalelb("1")));
    h.until("served", |h| {
        h.status("default", "scalelb") == ips(&["127.0.0.2"])
    })
    .await;
    h.fake.fail_host(hosts()[0]);
    h.until("moved", |h| {
        h.status("default", "scalelb") == ips(&["127.0.0.3"])
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn backend_failures_are_retried_and_reported() {
    let h = Harness::start(|_| {});
    h.fake.fail_next(backend::Error::Retry {
        name: "x".into(),
        reason: "starting".into(),
        after: Duration::from_millis(10),
    });
    h.fake.fail_next(backend::Error::Unsupported {
        name: "ingress-http80-x1".into(),
        what: "something".into(),
    });
    h.index.write().apply_ingress(scalelb("1"));
    h.until("warning", |h| !h.warnings("scalelb").is_empty())
        .await;
    assert!(h.warnings("scalelb")[0].contains("not supported"));
    // Backoff starts at 5 s; nudge it with a change.
    let mut changed = scalelb("1");
    changed.rules[0]
        .paths
        .push(path("/bar", "Prefix", svc("nginx-service", 80)));
    h.index.write().apply_ingress(changed);
    h.until("served after the failures", |h| {
        !h.status("default", "scalelb").is_empty()
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn a_shortfall_is_reported_and_the_available_hosts_are_used() {
    let h = Harness::start(|index| index.apply_ingress(scalelb("3")));
    h.until("two of three", |h| {
        h.status("default", "scalelb").len() == 2
    })
    .await;
    h.until("warning", |h| {
        h.warnings("scalelb").iter().any(|w| w.contains("2 of 3"))
    })
    .await;
    h.stop().await;
}
