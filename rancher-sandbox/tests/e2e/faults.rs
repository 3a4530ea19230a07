//! The fault hooks: a listener stopped and started again keeps the state and
//! lets watches resume; stalled watches go silent while new ones work.

use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams, WatchEvent, WatchParams};
use rancher_sandbox::Sandbox;
use serde_json::json;

use super::{eventually, install_provider};

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}})).unwrap()
}

#[tokio::test]
async fn a_stopped_listener_refuses_then_serves_the_same_state_on_the_same_address() {
    let sb = sandbox_with_fast_bookmarks().await;
    let cluster = &sb.clusters()[0];
    let api: Api<ConfigMap> = Api::namespaced(sb.client(), "default");
    let a = api.create(&PostParams::default(), &cm("a")).await.unwrap();
    let version = a.metadata.resource_version.unwrap();
    let mut open = api
        .watch(&WatchParams::default(), &version)
        .await
        .unwrap()
        .boxed();

    cluster.stop_listener().await;
    assert!(!cluster.is_listening());
    // The open watch ends, and new requests are refused.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(event) = open.next().await {
            if event.is_err() {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the open watch ends with the listener");
    let refused = api.get("a").await.unwrap_err();
    assert!(
        !matches!(refused, kube::Error::Api(_)),
        "no API answer while stopped: {refused:?}"
    );

    cluster.start_listener().await.unwrap();
    assert!(cluster.is_listening());
    assert_eq!(sb.addr(), cluster.addr(), "same address");
    let got = eventually("the API back", || async { api.get("a").await.ok() }).await;
    assert_eq!(
        got.metadata.resource_version.as_deref(),
        Some(version.as_str())
    );
    // A watch resumes from the version seen before the outage.
    api.create(&PostParams::default(), &cm("b")).await.unwrap();
    let mut resumed = api
        .watch(&WatchParams::default(), &version)
        .await
        .unwrap()
        .boxed();
    match resumed.next().await {
        Some(Ok(WatchEvent::Added(cm))) => assert_eq!(cm.metadata.name.as_deref(), Some("b")),
        other => panic!("expected b added, got {other:?}"),
    }
    sb.shutdown().await;
}

#[tokio::test]
async fn stalled_watches_deliver_nothing_while_new_watches_do() {
    let sb = sandbox_with_fast_bookmarks().await;
    let cluster = &sb.clusters()[0];
    let api: Api<ConfigMap> = Api::namespaced(sb.client(), "default");
    let params = WatchParams::default();
    let mut stalled = api.watch(&params, "0").await.unwrap().boxed();
    // Bookmarks arrive while it is healthy.
    let first = tokio::time::timeout(Duration::from_secs(10), stalled.next()).await;
    assert!(
        matches!(first, Ok(Some(Ok(WatchEvent::Bookmark(_))))),
        "{first:?}"
    );

    cluster.stall_watches();
    api.create(&PostParams::default(), &cm("c")).await.unwrap();
    let mut fresh = api.watch(&params, "0").await.unwrap().boxed();
    let event = loop {
        match tokio::time::timeout(Duration::from_secs(10), fresh.next()).await {
            Ok(Some(Ok(WatchEvent::Bookmark(_)))) => {}
            other => break other,
        }
    };
    assert!(
        matches!(&event, Ok(Some(Ok(WatchEvent::Added(cm)))) if cm.metadata.name.as_deref() == Some("c")),
        "a watch opened after the stall works: {event:?}"
    );
    // The stalled one stays open and silent past several bookmark intervals.
    let silent = tokio::time::timeout(Duration::from_secs(1), stalled.next()).await;
    assert!(silent.is_err(), "the stalled watch delivered {silent:?}");
    sb.shutdown().await;
}

async fn sandbox_with_fast_bookmarks() -> Sandbox {
    install_provider();
    Sandbox::builder()
        .bookmark_interval(Duration::from_millis(100))
        .start()
        .await
        .expect("sandbox starts")
}
