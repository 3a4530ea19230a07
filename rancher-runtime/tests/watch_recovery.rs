//! Watch recovery against the sandbox API server and its fault hooks: an
//! outage, a silently stalled watch, and a resourceVersion that expired
//! while the watch was away.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::Service;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, PostParams},
    runtime::watcher,
};
use parking_lot::RwLock;
use rancher_runtime::{
    index::{self, IndexNamespacedResource, NamespacedRemoved},
    ready::{Readiness, Restart, WatchTracker},
    watch::Settings,
};
use rancher_sandbox::Sandbox;
use tokio::time::Instant;

#[derive(Default)]
struct Names {
    names: BTreeSet<String>,
    resets: usize,
}

impl IndexNamespacedResource<Service> for Names {
    fn apply(&mut self, svc: Service) {
        self.names.insert(svc.name_any());
    }
    fn delete(&mut self, _namespace: String, name: String) {
        self.names.remove(&name);
    }
    fn reset(&mut self, resources: Vec<Service>, removed: NamespacedRemoved) {
        self.resets += 1;
        for name in removed.into_values().flatten() {
            self.names.remove(&name);
        }
        for svc in resources {
            self.names.insert(svc.name_any());
        }
    }
}

struct Watched {
    names: Arc<RwLock<Names>>,
    tracker: WatchTracker,
    readiness: Readiness,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Watched {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Services in `default`, fed into an index through a tracked watch.
async fn watched(sandbox: &Sandbox, settings: Settings) -> Watched {
    let readiness = Readiness::new();
    let tracker = readiness.track_watch("services");
    let names = Arc::new(RwLock::new(Names::default()));
    let events = index::watch(
        Api::<Service>::namespaced(sandbox.client(), "default"),
        watcher::Config::default(),
    )
    .settings(settings)
    .tracked(tracker.clone());
    let task = tokio::spawn(index::namespaced(
        names.clone(),
        events,
        Some(readiness.register("services")),
    ));
    tokio::time::timeout(Duration::from_secs(30), readiness.wait())
        .await
        .expect("listed within 30 s");
    Watched {
        names,
        tracker,
        readiness,
        task,
    }
}

fn svc(name: &str) -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"ports": [{"port": 80}]},
    }))
    .unwrap()
}

/// Waits up to 60 s for `what`; returns how long it took.
async fn until(what: &str, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

/// Creates `name`, retrying while the API server is still coming back.
async fn create(api: &Api<Service>, name: &str) {
    let start = Instant::now();
    loop {
        match api.create(&PostParams::default(), &svc(name)).await {
            Ok(_) => return,
            Err(error) => {
                assert!(
                    start.elapsed() < Duration::from_secs(60),
                    "creating {name}: {error}"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn sandbox(history: usize) -> Sandbox {
    rancher_runtime::install_crypto_provider();
    Sandbox::builder()
        .watch_history(history)
        .start()
        .await
        .expect("sandbox starts")
}

#[tokio::test]
async fn after_an_outage_the_watch_resumes_and_sees_the_next_change() {
    let sandbox = sandbox(10_000).await;
    let api = Api::<Service>::namespaced(sandbox.client(), "default");
    create(&api, "before").await;
    let w = watched(&sandbox, Settings::default()).await;
    until("the first Service", || {
        w.names.read().names.contains("before")
    })
    .await;

    let cluster = &sandbox.clusters()[0];
    cluster.stop_listener().await;
    until("the watch to report stale", || w.tracker.is_stale()).await;
    let stale = w.readiness.stale();
    assert_eq!(stale.len(), 1, "{stale:?}");
    // Long enough for the retries to reach their cap.
    tokio::time::sleep(Duration::from_secs(8)).await;
    cluster.start_listener().await.unwrap();
    let back = Instant::now();
    create(&api, "after").await;
    until("the Service created after the outage", || {
        w.names.read().names.contains("after")
    })
    .await;
    println!(
        "change after the API server returned seen in {:.2} s",
        back.elapsed().as_secs_f64()
    );
    until("the watch to report current", || !w.tracker.is_stale()).await;
    assert!(w.readiness.stale().is_empty());
    assert!(w.tracker.restarts(Restart::Error) > 0);
    assert_eq!(w.tracker.restarts(Restart::Expired), 0);
    assert_eq!(w.names.read().resets, 1, "resumed, not listed again");
}

#[tokio::test]
async fn a_stalled_watch_is_restarted_and_catches_up() {
    let sandbox = sandbox(10_000).await;
    let api = Api::<Service>::namespaced(sandbox.client(), "default");
    let settings = Settings::default().with_idle_timeout(Duration::from_secs(2));
    let w = watched(&sandbox, settings).await;
    // Seen through the watch: it is open when the stall comes.
    create(&api, "before-stall").await;
    until("a Service through the watch", || {
        w.names.read().names.contains("before-stall")
    })
    .await;
    sandbox.clusters()[0].stall_watches();
    create(&api, "during-stall").await;
    until("the Service created while the watch was stalled", || {
        w.names.read().names.contains("during-stall")
    })
    .await;
    assert!(w.tracker.restarts(Restart::Stalled) >= 1);
    assert_eq!(w.names.read().resets, 1, "resumed, not listed again");
}

#[tokio::test]
async fn an_expired_version_lists_again_and_drops_what_was_deleted() {
    // A short history: the changes made while the watch is stalled push its
    // resourceVersion out, so it resumes with 410 Gone and lists again.
    let sandbox = sandbox(5).await;
    let api = Api::<Service>::namespaced(sandbox.client(), "default");
    create(&api, "doomed").await;
    let settings = Settings::default().with_idle_timeout(Duration::from_secs(2));
    let w = watched(&sandbox, settings).await;
    // Seen through the watch: it is open when the stall comes.
    create(&api, "seen").await;
    until("a Service through the watch", || {
        w.names.read().names.contains("seen")
    })
    .await;
    sandbox.clusters()[0].stall_watches();
    api.delete("doomed", &DeleteParams::default())
        .await
        .unwrap();
    for i in 0..10 {
        create(&api, &format!("new-{i}")).await;
    }
    until("the index to match the API", || {
        let names = w.names.read();
        !names.names.contains("doomed") && names.names.contains("new-9")
    })
    .await;
    assert!(w.tracker.restarts(Restart::Expired) >= 1);
    assert_eq!(w.names.read().resets, 2, "listed again once");
}
