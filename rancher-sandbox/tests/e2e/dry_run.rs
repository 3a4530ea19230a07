//! `dryRun=All` (`kubectl --dry-run=server`): every write is checked and answered
//! as the real one would be, and nothing changes: not the objects, not the
//! resourceVersion, not the allocations, and no watch sees an event.

use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::{ConfigMap, Service};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use serde_json::json;

use super::sandbox;

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}})).unwrap()
}

fn code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn dry_runs_answer_like_writes_and_change_nothing() {
    let sb = sandbox().await;
    let cluster = sb.cluster(0).unwrap();
    let api: Api<ConfigMap> = Api::namespaced(sb.client(), "default");
    let kept = api
        .create(&PostParams::default(), &cm("kept"))
        .await
        .unwrap();
    let kept_rv = kept.metadata.resource_version.clone();
    let rv = cluster.resource_version();
    let mut events = api
        .watch(&WatchParams::default(), &rv.to_string())
        .await
        .unwrap()
        .boxed();
    let post = PostParams {
        dry_run: true,
        ..PostParams::default()
    };
    let patch = PatchParams {
        dry_run: true,
        ..PatchParams::default()
    };
    let delete = DeleteParams {
        dry_run: true,
        ..DeleteParams::default()
    };

    // Create: the object with what the server sets, but no resourceVersion.
    let created = api.create(&post, &cm("new")).await.unwrap();
    assert!(created.metadata.uid.is_some());
    assert!(created.metadata.creation_timestamp.is_some());
    assert_eq!(created.metadata.resource_version, None);
    assert_eq!(code(api.get("new").await.unwrap_err()), 404);
    // Refused as the write would be: an invalid name, an existing object.
    assert_eq!(
        code(api.create(&post, &cm("Bad_Name")).await.unwrap_err()),
        422
    );
    assert_eq!(code(api.create(&post, &cm("kept")).await.unwrap_err()), 409);

    // Update and patches: the changed object, at its current resourceVersion.
    let mut changed = kept.clone();
    changed.data = Some([("k".to_string(), "replaced".to_string())].into());
    let replaced = api.replace("kept", &post, &changed).await.unwrap();
    assert_eq!(replaced.data.unwrap()["k"], "replaced");
    assert_eq!(replaced.metadata.resource_version, kept_rv);
    let merged = api
        .patch(
            "kept",
            &patch,
            &Patch::Merge(json!({"data": {"k": "merged"}})),
        )
        .await
        .unwrap();
    assert_eq!(merged.data.unwrap()["k"], "merged");
    let apply = PatchParams::apply("dry-run-test").dry_run();
    let applied = api
        .patch(
            "applied",
            &apply,
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "applied"}, "data": {"k": "a"}})),
        )
        .await
        .unwrap();
    assert_eq!(applied.data.unwrap()["k"], "a");
    assert_eq!(code(api.get("applied").await.unwrap_err()), 404);

    // Deletes: answered, and the object stays.
    api.delete("kept", &delete).await.unwrap();
    let listed = api
        .delete_collection(&delete, &ListParams::default())
        .await
        .unwrap();
    assert!(listed.left().is_some_and(|l| l.items.len() == 1));

    let stored = api.get("kept").await.unwrap();
    assert_eq!(stored.data.unwrap()["k"], "v");
    assert_eq!(stored.metadata.resource_version, kept_rv);
    assert_eq!(
        cluster.resource_version(),
        rv,
        "no resourceVersion was used"
    );

    // A Service's cluster IP is shown but not taken: the real create gets the same.
    let services: Api<Service> = Api::namespaced(sb.client(), "default");
    let web: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}))
    .unwrap();
    let dry_ip = services
        .create(&post, &web)
        .await
        .unwrap()
        .spec
        .unwrap()
        .cluster_ip;
    assert!(dry_ip.is_some());
    let real_ip = services
        .create(&PostParams::default(), &web)
        .await
        .unwrap()
        .spec
        .unwrap()
        .cluster_ip;
    assert_eq!(dry_ip, real_ip);

    // The first change the watch sees is the next real write.
    api.create(&PostParams::default(), &cm("real"))
        .await
        .unwrap();
    let first = loop {
        let event = tokio::time::timeout(Duration::from_secs(10), events.next())
            .await
            .expect("an event in time")
            .expect("stream open")
            .expect("event ok");
        match event {
            WatchEvent::Bookmark(_) => continue,
            WatchEvent::Added(o) => break o.metadata.name,
            other => panic!("a dry run was seen by a watch: {other:?}"),
        }
    };
    assert_eq!(first.as_deref(), Some("real"));
}

#[tokio::test]
async fn dry_run_values_other_than_all_are_refused() {
    let sb = sandbox().await;
    let request = http::Request::post("/api/v1/namespaces/default/configmaps?dryRun=Some")
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&json!({"metadata": {"name": "x"}})).unwrap())
        .unwrap();
    let err = sb.client().request_text(request).await.unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 400);
            assert!(
                s.message.contains("dryRun: Unsupported value: \"Some\""),
                "{}",
                s.message
            );
        }
        other => panic!("expected 400, got {other:?}"),
    }
    let api: Api<ConfigMap> = Api::namespaced(sb.client(), "default");
    assert_eq!(code(api.get("x").await.unwrap_err()), 404);
}
