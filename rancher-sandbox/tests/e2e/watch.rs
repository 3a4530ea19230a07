//! Watches: raw resourceVersion semantics, bookmarks, 410, selectors, and kube-rs's
//! `watcher`, `reflector` and `Controller` (with a finalizer).

use std::sync::Arc;
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use serde_json::json;

use super::{eventually, sandbox};

fn cm(name: &str, labels: serde_json::Value) -> ConfigMap {
    serde_json::from_value(
        json!({"metadata": {"name": name, "labels": labels}, "data": {"k": "v"}}),
    )
    .unwrap()
}

async fn next_event(
    stream: &mut (impl futures::Stream<Item = kube::Result<WatchEvent<ConfigMap>>> + Unpin),
) -> WatchEvent<ConfigMap> {
    tokio::time::timeout(Duration::from_secs(10), stream.next())
        .await
        .expect("an event in time")
        .expect("stream open")
        .expect("event ok")
}

fn name_of(e: &WatchEvent<ConfigMap>) -> (&'static str, String) {
    match e {
        WatchEvent::Added(o) => ("ADDED", o.metadata.name.clone().unwrap()),
        WatchEvent::Modified(o) => ("MODIFIED", o.metadata.name.clone().unwrap()),
        WatchEvent::Deleted(o) => ("DELETED", o.metadata.name.clone().unwrap()),
        WatchEvent::Bookmark(b) => ("BOOKMARK", b.metadata.resource_version.clone()),
        WatchEvent::Error(e) => ("ERROR", e.code.to_string()),
    }
}

#[tokio::test]
async fn watch_resumes_from_a_resource_version() {
    let sb = sandbox().await;
    let api: Api<ConfigMap> = Api::namespaced(sb.client(), "default");
    let a = api
        .create(&PostParams::default(), &cm("a", json!({})))
        .await
        .unwrap();
    let rv = a.metadata.resource_version.unwrap();
    api.create(&PostParams::default(), &cm("b", json!({})))
        .await
        .unwrap();
    api.patch(
        "a",
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"k": "w"}})),
    )
    .await
    .unwrap();
    api.delete("b", &DeleteParams::default()).await.unwrap();

    // From `rv`: exactly the three later changes, in order.
    let mut s = api
        .watch(&WatchParams::default(), &rv)
        .await
        .unwrap()
        .boxed();
    let mut seen = Vec::new();
    for _ in 0..3 {
        seen.push(name_of(&next_event(&mut s).await));
    }
    assert_eq!(
        seen,
        [
            ("ADDED", "b".to_string()),
            ("MODIFIED", "a".to_string()),
            ("DELETED", "b".to_string())
        ]
    );

    // From "0": the current state as ADDED events, then live changes.
    let mut s = api
        .watch(&WatchParams::default(), "0")
        .await
        .unwrap()
        .boxed();
    assert_eq!(
        name_of(&next_event(&mut s).await),
        ("ADDED", "a".to_string())
    );
    api.create(&PostParams::default(), &cm("c", json!({})))
        .await
        .unwrap();
    assert_eq!(
        name_of(&next_event(&mut s).await),
        ("ADDED", "c".to_string())
    );
}

#[tokio::test]
async fn expired_versions_get_410_and_bookmarks_arrive() {
    super::install_provider();
    let sb = rancher_sandbox::Sandbox::builder()
        .watch_history(4)
        .bookmark_interval(Duration::from_millis(50))
        .start()
        .await
        .unwrap();
    let api: Api<ConfigMap> = Api::namespaced(sb.client(), "default");
    let first = api
        .create(&PostParams::default(), &cm("x", json!({})))
        .await
        .unwrap();
    for i in 0..10 {
        api.patch(
            "x",
            &PatchParams::default(),
            &Patch::Merge(json!({"data": {"i": i.to_string()}})),
        )
        .await
        .unwrap();
    }
    let old = first.metadata.resource_version.unwrap();
    let mut s = api
        .watch(&WatchParams::default(), &old)
        .await
        .unwrap()
        .boxed();
    match next_event(&mut s).await {
        WatchEvent::Error(e) => {
            assert_eq!(e.code, 410);
            assert_eq!(e.reason, "Expired");
        }
        other => panic!("expected a 410 ERROR event, got {other:?}"),
    }

    // Bookmarks carry the latest version the watcher has seen.
    let current = api
        .get("x")
        .await
        .unwrap()
        .metadata
        .resource_version
        .unwrap();
    let mut s = api
        .watch(&WatchParams::default().timeout(30), &current)
        .await
        .unwrap()
        .boxed();
    match next_event(&mut s).await {
        WatchEvent::Bookmark(b) => assert_eq!(b.metadata.resource_version, current),
        other => panic!("expected a bookmark, got {other:?}"),
    }
}

#[tokio::test]
async fn selectors_turn_label_changes_into_added_and_deleted() {
    let sb = sandbox().await;
    let api: Api<ConfigMap> = Api::namespaced(sb.client(), "default");
    let mut s = api
        .watch(&WatchParams::default().labels("app=web"), "0")
        .await
        .unwrap()
        .boxed();
    api.create(&PostParams::default(), &cm("other", json!({"app": "db"})))
        .await
        .unwrap();
    api.create(&PostParams::default(), &cm("web", json!({"app": "web"})))
        .await
        .unwrap();
    assert_eq!(
        name_of(&next_event(&mut s).await),
        ("ADDED", "web".to_string())
    );
    api.patch(
        "other",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "web"}}})),
    )
    .await
    .unwrap();
    assert_eq!(
        name_of(&next_event(&mut s).await),
        ("ADDED", "other".to_string())
    );
    api.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"app": "gone"}}})),
    )
    .await
    .unwrap();
    assert_eq!(
        name_of(&next_event(&mut s).await),
        ("DELETED", "web".to_string())
    );

    // Field selectors on watches too.
    let mut s = api
        .watch(&WatchParams::default().fields("metadata.name=other"), "0")
        .await
        .unwrap()
        .boxed();
    assert_eq!(
        name_of(&next_event(&mut s).await),
        ("ADDED", "other".to_string())
    );
}

#[tokio::test]
async fn watch_timeout_ends_the_stream() {
    let sb = sandbox().await;
    let api: Api<ConfigMap> = Api::namespaced(sb.client(), "default");
    let mut s = api
        .watch(&WatchParams::default().timeout(1).disable_bookmarks(), "0")
        .await
        .unwrap()
        .boxed();
    let end = tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .expect("the stream ends by itself");
    assert!(end.is_none());
}

#[tokio::test]
async fn reflector_follows_changes_with_list_watch_and_streaming_lists() {
    let sb = sandbox().await;
    let api: Api<ConfigMap> = Api::namespaced(sb.client(), "default");
    api.create(&PostParams::default(), &cm("before", json!({})))
        .await
        .unwrap();
    for config in [
        watcher::Config::default(),
        watcher::Config::default().streaming_lists(),
    ] {
        let (reader, writer) = reflector::store::<ConfigMap>();
        let stream = reflector(writer, watcher(api.clone(), config)).applied_objects();
        let task = tokio::spawn(stream.for_each(|_| async {}));
        reader.wait_until_ready().await.unwrap();
        assert!(
            reader
                .state()
                .iter()
                .any(|o| o.metadata.name.as_deref() == Some("before"))
        );
        let name = format!("after-{}", reader.state().len());
        api.create(&PostParams::default(), &cm(&name, json!({})))
            .await
            .unwrap();
        eventually("the reflector sees the new object", || {
            let found = reader
                .state()
                .iter()
                .any(|o| o.metadata.name.as_deref() == Some(name.as_str()));
            async move { found.then_some(()) }
        })
        .await;
        api.delete(&name, &DeleteParams::default()).await.unwrap();
        eventually("the reflector drops the deleted object", || {
            let gone = !reader
                .state()
                .iter()
                .any(|o| o.metadata.name.as_deref() == Some(name.as_str()));
            async move { gone.then_some(()) }
        })
        .await;
        task.abort();
    }
}

#[derive(Debug, thiserror::Error)]
#[error("reconcile failed: {0}")]
struct ReconcileError(#[from] kube::Error);

const FINALIZER: &str = "example.org/cleanup";

/// The controller's context: the API and the names it cleaned up.
type Ctx = (Api<ConfigMap>, Arc<std::sync::Mutex<Vec<String>>>);

#[tokio::test]
async fn controller_with_a_finalizer_reconciles_and_cleans_up() {
    let sb = sandbox().await;
    let api: Api<ConfigMap> = Api::namespaced(sb.client(), "default");
    let cleaned: Arc<std::sync::Mutex<Vec<String>>> = Arc::default();
    let ctx = Arc::new((api.clone(), cleaned.clone()));
    let reconcile = |obj: Arc<ConfigMap>, ctx: Arc<Ctx>| async move {
        let (api, cleaned) = (&ctx.0, ctx.1.clone());
        finalizer(api, FINALIZER, obj, |event| async move {
            match event {
                Finalizer::Apply(cm) => {
                    let name = cm.metadata.name.clone().unwrap();
                    if cm
                        .metadata
                        .annotations
                        .as_ref()
                        .and_then(|a| a.get("example.org/seen"))
                        .is_none()
                    {
                        api.patch(
                            &name,
                            &PatchParams::default(),
                            &Patch::Merge(
                                json!({"metadata": {"annotations": {"example.org/seen": "yes"}}}),
                            ),
                        )
                        .await?;
                    }
                    Ok::<_, ReconcileError>(Action::await_change())
                }
                Finalizer::Cleanup(cm) => {
                    cleaned
                        .lock()
                        .unwrap()
                        .push(cm.metadata.name.clone().unwrap());
                    Ok(Action::await_change())
                }
            }
        })
        .await
        .map_err(|e| ReconcileError(kube::Error::Service(e.to_string().into())))
    };
    let controller = Controller::new(api.clone(), watcher::Config::default())
        .run(
            reconcile,
            |_, _, _| Action::requeue(Duration::from_millis(100)),
            ctx,
        )
        .for_each(|_| async {});
    let task = tokio::spawn(controller);

    api.create(&PostParams::default(), &cm("managed", json!({})))
        .await
        .unwrap();
    let reconciled = eventually("the controller adds its finalizer and annotation", || {
        let api = api.clone();
        async move {
            let cm = api.get("managed").await.ok()?;
            let has_finalizer = cm
                .metadata
                .finalizers
                .as_ref()
                .is_some_and(|f| f.iter().any(|x| x == FINALIZER));
            let seen = cm
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key("example.org/seen"));
            (has_finalizer && seen).then_some(cm)
        }
    })
    .await;
    assert!(reconciled.metadata.deletion_timestamp.is_none());

    api.delete("managed", &DeleteParams::default())
        .await
        .unwrap();
    eventually("cleanup runs and the object goes", || {
        let api = api.clone();
        async move { api.get_opt("managed").await.ok()?.is_none().then_some(()) }
    })
    .await;
    assert_eq!(cleaned.lock().unwrap().as_slice(), ["managed"]);
    task.abort();
}

#[tokio::test]
async fn many_watchers_all_see_every_write() {
    let sb = sandbox().await;
    let api: Api<ConfigMap> = Api::namespaced(sb.client(), "default");
    let mut streams = Vec::new();
    for _ in 0..20 {
        streams.push(
            api.watch(&WatchParams::default().disable_bookmarks(), "0")
                .await
                .unwrap()
                .boxed(),
        );
    }
    for i in 0..5 {
        api.create(&PostParams::default(), &cm(&format!("n{i}"), json!({})))
            .await
            .unwrap();
    }
    for mut s in streams {
        let names: Vec<String> = (&mut s)
            .take(5)
            .map_ok(|e| name_of(&e).1)
            .try_collect()
            .await
            .unwrap();
        assert_eq!(names, ["n0", "n1", "n2", "n3", "n4"]);
    }
}
