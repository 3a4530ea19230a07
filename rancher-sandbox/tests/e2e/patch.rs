//! Patches (merge, JSON, strategic, server-side apply), selectors and pagination.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Event, Pod, Service};
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::sandbox;

fn code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

fn pod(name: &str, node: &str, labels: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "spec": {"nodeName": node, "containers": [{"name": "app", "image": "example.org/app:1", "ports": [{"containerPort": 80}]}]}
    }))
    .unwrap()
}

#[tokio::test]
async fn merge_json_and_strategic_patches() {
    let sb = sandbox().await;
    let pods: Api<Pod> = Api::namespaced(sb.client(), "default");
    pods.create(
        &PostParams::default(),
        &pod("p", "n1", json!({"app": "web"})),
    )
    .await
    .unwrap();
    let pp = PatchParams::default();

    // Strategic: containers merge by name, ports by containerPort.
    let p = pods
        .patch(
            "p",
            &pp,
            &Patch::Strategic(json!({"spec": {"containers": [
            {"name": "app", "image": "example.org/app:2", "ports": [{"containerPort": 443}]},
            {"name": "sidecar", "image": "example.org/sidecar:1"}]}})),
        )
        .await
        .unwrap();
    let containers = p.spec.unwrap().containers;
    assert_eq!(containers.len(), 2);
    assert_eq!(containers[0].image.as_deref(), Some("example.org/app:2"));
    let ports: Vec<i32> = containers[0]
        .ports
        .as_ref()
        .unwrap()
        .iter()
        .map(|p| p.container_port)
        .collect();
    assert_eq!(ports, [80, 443]);

    // Strategic on status: conditions merge by type.
    pods.patch_status("p", &pp, &Patch::Strategic(json!({"status": {"conditions": [{"type": "Ready", "status": "False"}, {"type": "PodScheduled", "status": "True"}]}}))).await.unwrap();
    let p = pods
        .patch_status(
            "p",
            &pp,
            &Patch::Strategic(
                json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
            ),
        )
        .await
        .unwrap();
    let conditions: Vec<(String, String)> = p
        .status
        .unwrap()
        .conditions
        .unwrap()
        .into_iter()
        .map(|c| (c.type_, c.status))
        .collect();
    assert_eq!(
        conditions,
        [
            ("Ready".to_string(), "True".to_string()),
            ("PodScheduled".to_string(), "True".to_string())
        ]
    );

    // Finalizers merge as a set.
    pods.patch(
        "p",
        &pp,
        &Patch::Strategic(json!({"metadata": {"finalizers": ["example.org/a"]}})),
    )
    .await
    .unwrap();
    let p = pods
        .patch(
            "p",
            &pp,
            &Patch::Strategic(
                json!({"metadata": {"finalizers": ["example.org/b", "example.org/a"]}}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(
        p.metadata.finalizers.unwrap(),
        ["example.org/a", "example.org/b"]
    );

    // Merge replaces lists and deletes with null.
    let p = pods
        .patch(
            "p",
            &pp,
            &Patch::Merge(
                json!({"metadata": {"finalizers": null, "labels": {"app": null, "tier": "front"}}}),
            ),
        )
        .await
        .unwrap();
    assert!(p.metadata.finalizers.is_none());
    assert_eq!(
        p.metadata.labels.unwrap().into_iter().collect::<Vec<_>>(),
        [("tier".to_string(), "front".to_string())]
    );

    // JSON patch, including a failing test op that changes nothing.
    let before = pods.get("p").await.unwrap();
    let jp = serde_json::from_value(
        json!([{"op": "replace", "path": "/metadata/labels/tier", "value": "back"}]),
    )
    .unwrap();
    let p = pods.patch("p", &pp, &Patch::<()>::Json(jp)).await.unwrap();
    assert_eq!(p.metadata.labels.unwrap()["tier"], "back");
    let bad = serde_json::from_value(json!([{"op": "test", "path": "/metadata/labels/tier", "value": "front"}, {"op": "remove", "path": "/metadata/labels"}])).unwrap();
    assert_eq!(
        code(
            pods.patch("p", &pp, &Patch::<()>::Json(bad))
                .await
                .unwrap_err()
        ),
        422
    );
    assert_eq!(
        pods.get("p").await.unwrap().metadata.resource_version,
        p.metadata.resource_version
    );
    assert_ne!(
        p.metadata.resource_version,
        before.metadata.resource_version
    );
    assert_eq!(
        pods.get("p").await.unwrap().metadata.labels.unwrap()["tier"],
        "back"
    );

    // Service ports merge by port.
    let svcs: Api<Service> = Api::namespaced(sb.client(), "default");
    let svc: Service = serde_json::from_value(
        json!({"metadata": {"name": "web"}, "spec": {"ports": [{"name": "http", "port": 80}]}}),
    )
    .unwrap();
    svcs.create(&PostParams::default(), &svc).await.unwrap();
    let s = svcs
        .patch(
            "web",
            &pp,
            &Patch::Strategic(json!({"spec": {"ports": [{"name": "https", "port": 443}]}})),
        )
        .await
        .unwrap();
    let ports: Vec<i32> = s
        .spec
        .unwrap()
        .ports
        .unwrap()
        .iter()
        .map(|p| p.port)
        .collect();
    assert_eq!(ports, [80, 443]);
}

fn deploy_config(replicas: i32, labels: serde_json::Value) -> serde_json::Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web", "labels": labels},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}
    })
}

#[tokio::test]
async fn server_side_apply_owns_fields_and_reports_conflicts() {
    let sb = sandbox().await;
    let api: Api<Deployment> = Api::namespaced(sb.client(), "default");
    let alice = PatchParams::apply("alice");
    let d = api
        .patch(
            "web",
            &alice,
            &Patch::Apply(deploy_config(2, json!({"team": "a", "extra": "x"}))),
        )
        .await
        .unwrap();
    assert_eq!(d.spec.replicas, Some(2));
    let mf = d.metadata.managed_fields.unwrap();
    assert_eq!(mf[0].manager.as_deref(), Some("alice"));
    assert_eq!(mf[0].operation.as_deref(), Some("Apply"));

    // Dropping a field from the applied config removes it.
    let d = api
        .patch(
            "web",
            &alice,
            &Patch::Apply(deploy_config(2, json!({"team": "a"}))),
        )
        .await
        .unwrap();
    assert!(!d.metadata.labels.unwrap().contains_key("extra"));

    // Another applier changing alice's field conflicts, and changes nothing...
    let bob = PatchParams::apply("bob");
    let conflict = api.patch("web", &bob, &Patch::Apply(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 5}}))).await.unwrap_err();
    match conflict {
        kube::Error::Api(s) => {
            assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
            assert!(s.message.contains("alice"), "{}", s.message);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(api.get("web").await.unwrap().spec.replicas, Some(2));
    // ...unless forced; then bob owns it, and alice dropping it no longer removes it.
    let d = api.patch("web", &bob.clone().force(), &Patch::Apply(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 5}}))).await.unwrap();
    assert_eq!(d.spec.replicas, Some(5));
    let mut without = deploy_config(2, json!({"team": "a"}));
    without["spec"].as_object_mut().unwrap().remove("replicas");
    let d = api
        .patch("web", &alice, &Patch::Apply(without))
        .await
        .unwrap();
    assert_eq!(d.spec.replicas, Some(5));

    // Apply without a field manager is a bad request.
    let config_maps: Api<ConfigMap> = Api::namespaced(sb.client(), "default");
    let no_manager = config_maps
        .patch(
            "x",
            &PatchParams::default(),
            &Patch::Apply(
                json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}),
            ),
        )
        .await;
    assert!(no_manager.is_err());
}

#[tokio::test]
async fn label_and_field_selectors() {
    let sb = sandbox().await;
    let pods: Api<Pod> = Api::namespaced(sb.client(), "default");
    pods.create(
        &PostParams::default(),
        &pod("a", "n1", json!({"app": "web", "tier": "front"})),
    )
    .await
    .unwrap();
    pods.create(
        &PostParams::default(),
        &pod("b", "n2", json!({"app": "web"})),
    )
    .await
    .unwrap();
    pods.create(
        &PostParams::default(),
        &pod("c", "n1", json!({"app": "db"})),
    )
    .await
    .unwrap();
    let names = |lp: ListParams| {
        let pods = pods.clone();
        async move {
            pods.list(&lp).await.map(|l| {
                l.items
                    .into_iter()
                    .filter_map(|p| p.metadata.name)
                    .collect::<Vec<_>>()
            })
        }
    };
    assert_eq!(
        names(ListParams::default().labels("app=web"))
            .await
            .unwrap(),
        ["a", "b"]
    );
    assert_eq!(
        names(ListParams::default().labels("app in (web,db),!tier"))
            .await
            .unwrap(),
        ["b", "c"]
    );
    assert_eq!(
        names(ListParams::default().labels("app notin (web)"))
            .await
            .unwrap(),
        ["c"]
    );
    assert_eq!(
        names(ListParams::default().labels("tier")).await.unwrap(),
        ["a"]
    );
    assert_eq!(
        names(ListParams::default().fields("spec.nodeName=n1"))
            .await
            .unwrap(),
        ["a", "c"]
    );
    assert_eq!(
        names(ListParams::default().fields("metadata.name!=a,spec.nodeName=n1"))
            .await
            .unwrap(),
        ["c"]
    );
    assert_eq!(
        code(
            names(ListParams::default().labels("app in web"))
                .await
                .unwrap_err()
        ),
        400
    );
    assert_eq!(
        code(
            names(ListParams::default().fields("spec.bogus=1"))
                .await
                .unwrap_err()
        ),
        400
    );

    // Events written through events.k8s.io/v1 are read through core/v1 with involvedObject selectors.
    let v1: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(sb.client(), "default");
    let ev: k8s_openapi::api::events::v1::Event = serde_json::from_value(json!({
        "metadata": {"name": "a.1"}, "eventTime": "2026-01-01T00:00:00.000000Z", "reason": "Synced", "note": "synced a",
        "type": "Normal", "action": "Sync", "reportingController": "example.org/ctl", "reportingInstance": "ctl-1",
        "regarding": {"kind": "Pod", "namespace": "default", "name": "a"}})).unwrap();
    v1.create(&PostParams::default(), &ev).await.unwrap();
    let core: Api<Event> = Api::namespaced(sb.client(), "default");
    let found = core
        .list(&ListParams::default().fields("involvedObject.name=a,involvedObject.kind=Pod"))
        .await
        .unwrap();
    assert_eq!(found.items.len(), 1);
    assert_eq!(found.items[0].message.as_deref(), Some("synced a"));
    assert!(
        core.list(&ListParams::default().fields("involvedObject.name=b"))
            .await
            .unwrap()
            .items
            .is_empty()
    );
}

#[tokio::test]
async fn limit_and_continue_paginate_in_key_order() {
    let sb = sandbox().await;
    let api: Api<ConfigMap> = Api::namespaced(sb.client(), "default");
    for i in 0..25 {
        let cm: ConfigMap =
            serde_json::from_value(json!({"metadata": {"name": format!("cm-{i:02}")}})).unwrap();
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
    let mut names = Vec::new();
    let mut lp = ListParams::default().limit(10);
    let mut pages = 0;
    loop {
        let page = api.list(&lp).await.unwrap();
        pages += 1;
        names.extend(page.items.into_iter().filter_map(|c| c.metadata.name));
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(c) => {
                assert!(page.metadata.remaining_item_count.is_some());
                lp = lp.continue_token(&c);
            }
            None => break,
        }
    }
    assert_eq!(pages, 3);
    let expected: Vec<String> = (0..25).map(|i| format!("cm-{i:02}")).collect();
    assert_eq!(names, expected);
    assert_eq!(
        code(
            api.list(&ListParams::default().continue_token("garbage!"))
                .await
                .unwrap_err()
        ),
        400
    );
}
