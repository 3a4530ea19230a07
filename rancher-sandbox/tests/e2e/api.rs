//! CRUD, discovery, semantics and kubeconfig through `kube::Api`.

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{DynamicObject, GroupVersionKind};
use kube::discovery::{ApiResource, Discovery};
use serde_json::json;

use super::sandbox;

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}})).unwrap()
}

fn api_status(e: kube::Error) -> (u16, String) {
    match e {
        kube::Error::Api(s) => (s.code, s.reason),
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn crud_round_trip_with_server_owned_metadata() {
    let sb = sandbox().await;
    let api: Api<ConfigMap> = Api::namespaced(sb.client(), "default");
    let created = api
        .create(&PostParams::default(), &cm("settings"))
        .await
        .unwrap();
    let meta = &created.metadata;
    assert!(meta.uid.as_deref().is_some_and(|u| u.len() == 36));
    assert!(meta.creation_timestamp.is_some());
    assert_eq!(meta.generation, Some(1));
    let rv1: u64 = meta.resource_version.as_deref().unwrap().parse().unwrap();

    let got = api.get("settings").await.unwrap();
    assert_eq!(got.data, created.data);

    // Update with the current version succeeds and bumps the cluster-wide counter.
    let mut updated = got.clone();
    updated.data = Some([("k".to_string(), "w".to_string())].into());
    let updated = api
        .replace("settings", &PostParams::default(), &updated)
        .await
        .unwrap();
    let rv2: u64 = updated
        .metadata
        .resource_version
        .as_deref()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv2 > rv1);
    assert_eq!(updated.metadata.uid, created.metadata.uid);

    // A stale resourceVersion is a 409 Conflict and changes nothing.
    let (code, reason) = api_status(
        api.replace("settings", &PostParams::default(), &got)
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "Conflict"));
    assert_eq!(api.get("settings").await.unwrap().data.unwrap()["k"], "w");

    // Creating it again is AlreadyExists.
    let (code, reason) = api_status(
        api.create(&PostParams::default(), &cm("settings"))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (409, "AlreadyExists"));

    let list = api.list(&ListParams::default()).await.unwrap();
    assert_eq!(list.items.len(), 1);
    assert!(
        list.metadata
            .resource_version
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= rv2
    );

    api.delete("settings", &DeleteParams::default())
        .await
        .unwrap();
    let (code, reason) = api_status(api.get("settings").await.unwrap_err());
    assert_eq!((code, reason.as_str()), (404, "NotFound"));
}

#[tokio::test]
async fn names_namespaces_and_generate_name() {
    let sb = sandbox().await;
    let missing: Api<ConfigMap> = Api::namespaced(sb.client(), "nowhere");
    let (code, _) = api_status(
        missing
            .create(&PostParams::default(), &cm("a"))
            .await
            .unwrap_err(),
    );
    assert_eq!(code, 404);

    let api: Api<ConfigMap> = Api::namespaced(sb.client(), "default");
    let (code, reason) = api_status(
        api.create(&PostParams::default(), &cm("Not_Valid"))
            .await
            .unwrap_err(),
    );
    assert_eq!((code, reason.as_str()), (422, "Invalid"));

    let svcs: Api<Service> = Api::namespaced(sb.client(), "default");
    let svc: Service = serde_json::from_value(
        json!({"metadata": {"name": "1web"}, "spec": {"ports": [{"port": 80}]}}),
    )
    .unwrap();
    let (code, _) = api_status(svcs.create(&PostParams::default(), &svc).await.unwrap_err());
    assert_eq!(code, 422, "service names are DNS-1035 labels");

    let mut generated = cm("");
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("gen-".into());
    let a = api
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    let b = api
        .create(&PostParams::default(), &generated)
        .await
        .unwrap();
    let (a, b) = (a.metadata.name.unwrap(), b.metadata.name.unwrap());
    assert!(a.starts_with("gen-") && a.len() == 9, "{a}");
    assert_ne!(a, b);

    let namespaces: Api<Namespace> = Api::all(sb.client());
    let names: Vec<String> = namespaces
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|n| n.metadata.name)
        .collect();
    assert_eq!(
        names,
        ["default", "kube-node-lease", "kube-public", "kube-system"]
    );
}

fn deployment(replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": "web"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "web", "image": "nginx"}]}}}
    }))
    .unwrap()
}

#[tokio::test]
async fn status_subresource_and_generation() {
    let sb = sandbox().await;
    let api: Api<Deployment> = Api::namespaced(sb.client(), "default");
    let mut d = deployment(1);
    d.status = Some(serde_json::from_value(json!({"replicas": 9})).unwrap());
    let created = api.create(&PostParams::default(), &d).await.unwrap();
    assert_eq!(
        created.status.and_then(|s| s.replicas),
        None,
        "status is reset on create"
    );

    // Status writes change status only and keep generation.
    let st = api
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 5}, "status": {"readyReplicas": 1}})),
        )
        .await
        .unwrap();
    assert_eq!(st.status.unwrap().ready_replicas, Some(1));
    assert_eq!(st.spec.replicas, Some(1));
    assert_eq!(st.metadata.generation, Some(1));

    // Spec writes ignore status and bump generation; metadata-only writes do not.
    let p = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}, "status": {"readyReplicas": 7}})),
        )
        .await
        .unwrap();
    assert_eq!(p.metadata.generation, Some(2));
    assert_eq!(p.status.unwrap().ready_replicas, Some(1));
    let p = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(p.metadata.generation, Some(2));

    // The scale subresource reads and writes spec.replicas.
    let scale = api.get_scale("web").await.unwrap();
    assert_eq!(scale.spec.unwrap().replicas, Some(3));
    assert_eq!(scale.status.unwrap().selector.as_deref(), Some("app=web"));
    let scaled = api
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 4}})),
        )
        .await
        .unwrap();
    assert_eq!(scaled.spec.unwrap().replicas, Some(4));
    let p = api.get("web").await.unwrap();
    assert_eq!(p.spec.replicas, Some(4));
    assert_eq!(p.metadata.generation, Some(3));
    let bad = api
        .patch_scale(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": -1}})),
        )
        .await;
    assert_eq!(api_status(bad.unwrap_err()).0, 422);

    // A write that changes nothing keeps the resourceVersion.
    let same = api
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"a": "b"}}})),
        )
        .await
        .unwrap();
    assert_eq!(same.metadata.resource_version, p.metadata.resource_version);
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let sb = sandbox().await;
    let api: Api<ConfigMap> = Api::namespaced(sb.client(), "default");
    let mut c = cm("held");
    c.metadata.finalizers = Some(vec!["example.org/cleanup".into()]);
    api.create(&PostParams::default(), &c).await.unwrap();
    let deleting = api.delete("held", &DeleteParams::default()).await.unwrap();
    let obj = deleting
        .left()
        .expect("a pending delete returns the object");
    assert!(obj.metadata.deletion_timestamp.is_some());
    // Still readable, and no new finalizers may be added.
    let got = api.get("held").await.unwrap();
    assert!(got.metadata.deletion_timestamp.is_some());
    let add = api
        .patch(
            "held",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"finalizers": ["example.org/cleanup", "example.org/more"]}}),
            ),
        )
        .await;
    assert_eq!(api_status(add.unwrap_err()).0, 422);
    api.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    assert_eq!(api_status(api.get("held").await.unwrap_err()).0, 404);
}

#[tokio::test]
async fn discovery_and_custom_resource_definitions() {
    let sb = sandbox().await;
    let discovery = Discovery::new(sb.client()).run().await.unwrap();
    for (group, kind) in [
        ("", "Pod"),
        ("networking.k8s.io", "Ingress"),
        ("discovery.k8s.io", "EndpointSlice"),
        ("coordination.k8s.io", "Lease"),
        ("events.k8s.io", "Event"),
        ("apps", "Deployment"),
    ] {
        let gvk = GroupVersionKind::gvk(group, "v1", kind);
        assert!(
            discovery.resolve_gvk(&gvk).is_some(),
            "{gvk:?} not discovered"
        );
    }

    let crds: Api<DynamicObject> = Api::all_with(
        sb.client(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    let crd: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.org"},
        "spec": {"group": "example.org", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget", "shortNames": ["wd"]},
            "versions": [{"name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}}, "schema": {"openAPIV3Schema": {"type": "object"}}}]}
    }))
    .unwrap();
    let created = crds.create(&PostParams::default(), &crd).await.unwrap();
    let established = created.data["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Established" && c["status"] == "True");
    assert!(established);

    let discovery = Discovery::new(sb.client()).run().await.unwrap();
    let (ar, caps) = discovery
        .resolve_gvk(&GroupVersionKind::gvk("example.org", "v1", "Widget"))
        .expect("widget discovered");
    assert!(
        caps.subresources
            .iter()
            .any(|(s, _)| s.plural == "widgets/status" || s.plural == "status")
    );
    let widgets: Api<DynamicObject> = Api::namespaced_with(sb.client(), "default", &ar);
    let w: DynamicObject = serde_json::from_value(json!({"apiVersion": "example.org/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 3}})).unwrap();
    widgets.create(&PostParams::default(), &w).await.unwrap();
    assert_eq!(widgets.get("w1").await.unwrap().data["spec"]["size"], 3);

    // Deleting the CRD removes its kind and objects.
    crds.delete("widgets.example.org", &DeleteParams::default())
        .await
        .unwrap();
    assert_eq!(api_status(widgets.get("w1").await.unwrap_err()).0, 404);
}

#[tokio::test]
async fn clusters_are_independent_and_the_kubeconfig_works() {
    super::install_provider();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    let sb = rancher_sandbox::Sandbox::builder()
        .kubeconfig_path(&path)
        .clusters(2)
        .start()
        .await
        .unwrap();
    assert_ne!(sb.cluster(0).unwrap().addr(), sb.cluster(1).unwrap().addr());
    let a: Api<ConfigMap> = Api::namespaced(sb.cluster(0).unwrap().client(), "default");
    a.create(&PostParams::default(), &cm("only-in-a"))
        .await
        .unwrap();
    let b: Api<ConfigMap> = Api::namespaced(sb.cluster(1).unwrap().client(), "default");
    assert_eq!(api_status(b.get("only-in-a").await.unwrap_err()).0, 404);

    // The kubeconfig's second context reaches the second cluster.
    let kc = kube::config::Kubeconfig::read_from(&path).unwrap();
    let options = kube::config::KubeConfigOptions {
        context: Some(sb.cluster(1).unwrap().name().to_string()),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kc, &options)
        .await
        .unwrap();
    assert_eq!(
        config.cluster_url.to_string(),
        format!("{}/", sb.cluster(1).unwrap().url())
    );
    let client = kube::Client::try_from(config).unwrap();
    let via_file: Api<ConfigMap> = Api::namespaced(client, "default");
    via_file
        .create(&PostParams::default(), &cm("only-in-b"))
        .await
        .unwrap();
    assert!(b.get("only-in-b").await.is_ok());
    assert_eq!(api_status(a.get("only-in-b").await.unwrap_err()).0, 404);
    let addr = sb.addr();
    sb.shutdown().await;
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "stopped after shutdown"
    );
}

#[tokio::test]
async fn dropping_the_sandbox_stops_it_and_ends_watches() {
    use futures::StreamExt;
    let sb = sandbox().await;
    let addr = sb.addr();
    let api: Api<ConfigMap> = Api::namespaced(sb.client(), "default");
    let mut watch = api
        .watch(&kube::api::WatchParams::default().disable_bookmarks(), "0")
        .await
        .unwrap()
        .boxed();
    drop(sb);
    let ended = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        while let Some(Ok(_)) = watch.next().await {}
    })
    .await;
    assert!(
        ended.is_ok(),
        "the open watch ends when the sandbox is dropped"
    );
    super::eventually("the port closes", || async move {
        tokio::net::TcpStream::connect(addr)
            .await
            .is_err()
            .then_some(())
    })
    .await;
}
