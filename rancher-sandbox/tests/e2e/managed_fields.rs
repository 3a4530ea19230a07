//! `metadata.managedFields` as kube-apiserver writes them, through the real `kubectl`,
//! compared with what kube-apiserver v1.32 returns for the same commands
//! (`tests/data/kubectl-apply/`: the fixture's header says where its shape comes from).

use std::path::Path;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

fn data(file: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/kubectl-apply")
        .join(file)
}

fn is_timestamp(v: &Value) -> bool {
    v.as_str()
        .is_some_and(|s| s.parse::<jiff::Timestamp>().is_ok() && s.ends_with('Z'))
}

/// Takes out what differs from run to run, after checking its form.
fn normalize(mut obj: Value, what: &str) -> Value {
    let meta = obj["metadata"].as_object_mut().expect("metadata");
    let uid = meta.remove("uid").unwrap_or_default();
    assert!(
        uid.as_str()
            .is_some_and(|u| u.len() == 36 && u.matches('-').count() == 4),
        "{what}: uid {uid}"
    );
    let rv = meta.remove("resourceVersion").unwrap_or_default();
    assert!(
        rv.as_str().is_some_and(|r| r.parse::<u64>().is_ok()),
        "{what}: resourceVersion {rv}"
    );
    let created = meta.remove("creationTimestamp").unwrap_or_default();
    assert!(
        is_timestamp(&created),
        "{what}: creationTimestamp {created}"
    );
    for entry in meta
        .get_mut("managedFields")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
    {
        let time = entry.as_object_mut().and_then(|e| e.remove("time"));
        assert!(
            time.as_ref().is_some_and(is_timestamp),
            "{what}: managedFields time {time:?}"
        );
    }
    if let Some(ip) = obj["spec"]["clusterIP"].as_str().filter(|ip| *ip != "None") {
        assert!(ip.parse::<std::net::Ipv4Addr>().is_ok(), "{what}: {ip}");
        assert_eq!(obj["spec"]["clusterIPs"], json!([ip]), "{what}");
        obj["spec"]["clusterIP"] = json!("<allocated>");
        obj["spec"]["clusterIPs"] = json!(["<allocated>"]);
    }
    obj
}

#[tokio::test]
async fn kubectl_apply_writes_managed_fields_as_kube_apiserver_does() {
    let (_dir, _sb, k) = super::kubectl::start().await;
    k.ok(&["create", "namespace", "shop"]).await;
    let manifests = data("manifests.yaml");
    k.ok(&["apply", "-f", manifests.to_str().unwrap()]).await;
    k.ok(&["label", "service", "web", "-n", "shop", "tier=frontend"])
        .await;

    let fixture = std::fs::read_to_string(data("kube-apiserver-v1.32.yaml")).unwrap();
    let mut compared = 0;
    for doc in fixture.split("\n---\n") {
        let want: Value = serde_saphyr::from_str(doc).unwrap();
        let kind = want["kind"].as_str().unwrap().to_lowercase();
        let name = want["metadata"]["name"].as_str().unwrap();
        let what = format!("{kind} {name}");
        let out = k
            .ok(&[
                "get",
                &kind,
                name,
                "-n",
                "shop",
                "-o",
                "json",
                "--show-managed-fields",
            ])
            .await;
        let mut got: Value = serde_json::from_str(&out).unwrap();
        // The one known difference: the sandbox sets metadata.generation on every kind,
        // kube-apiserver only where the kind's strategy does (not on Services).
        if want["metadata"].get("generation").is_none()
            && let Some(m) = got["metadata"].as_object_mut()
        {
            m.remove("generation");
        }
        assert_eq!(
            normalize(got, &what),
            normalize(want, &what),
            "{what}: the sandbox's object differs from kube-apiserver's"
        );
        compared += 1;
    }
    assert_eq!(compared, 3);
}

#[tokio::test]
async fn every_write_is_recorded_and_server_side_apply_still_owns_its_fields() {
    let sb = super::sandbox().await;
    let cms: Api<ConfigMap> = Api::namespaced(sb.client(), "default");
    let mut cm = ConfigMap::default();
    cm.metadata.name = Some("settings".into());
    cm.data = Some([("a".to_string(), "1".to_string())].into());
    let pp = PostParams {
        field_manager: Some("creator".into()),
        ..PostParams::default()
    };
    cms.create(&pp, &cm).await.unwrap();

    // A merge patch by another manager takes the field it changes.
    let merge = PatchParams {
        field_manager: Some("editor".into()),
        ..PatchParams::default()
    };
    cms.patch(
        "settings",
        &merge,
        &Patch::Merge(json!({"data": {"a": "2", "b": "3"}})),
    )
    .await
    .unwrap();
    let got = cms.get("settings").await.unwrap();
    let entries = got.metadata.managed_fields.unwrap();
    let owners: Vec<(String, String, Value)> = entries
        .iter()
        .map(|e| {
            (
                e.manager.clone().unwrap_or_default(),
                e.operation.clone().unwrap_or_default(),
                e.fields_v1
                    .as_ref()
                    .map(|f| f.0.clone())
                    .unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        owners,
        vec![
            ("creator".into(), "Update".into(), json!({"f:data": {}})),
            (
                "editor".into(),
                "Update".into(),
                json!({"f:data": {"f:a": {}, "f:b": {}}})
            ),
        ]
    );

    // Server-side apply: the applier owns its configuration, the editor loses what the
    // apply changed, and a second applier still conflicts.
    let apply = PatchParams::apply("applier");
    cms.patch(
        "settings",
        &apply,
        &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"b": "4"}})),
    )
    .await
    .unwrap();
    let got = cms.get("settings").await.unwrap();
    let entries = got.metadata.managed_fields.unwrap();
    let by = |m: &str| {
        entries
            .iter()
            .find(|e| e.manager.as_deref() == Some(m))
            .map(|e| e.fields_v1.as_ref().unwrap().0.clone())
    };
    assert_eq!(by("applier"), Some(json!({"f:data": {"f:b": {}}})));
    assert_eq!(by("editor"), Some(json!({"f:data": {"f:a": {}}})));
    assert_eq!(
        entries[0].operation.as_deref(),
        Some("Apply"),
        "Apply sorts first"
    );
    let err = cms
        .patch(
            "settings",
            &PatchParams::apply("other"),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "settings"}, "data": {"b": "5"}})),
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("conflict with \"applier\""),
        "{err}"
    );

    // Without fieldManager the manager comes from the User-Agent, as kube-apiserver does.
    let raw = patch_as_curl(&sb, "settings").await;
    assert!(raw.contains("\"manager\":\"curl\""), "{raw}");
}

/// A PATCH sent with `User-Agent: curl/8.0` and no fieldManager, over plain HTTP.
async fn patch_as_curl(sb: &rancher_sandbox::Sandbox, name: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let addr = sb.addr();
    let body = r#"{"data":{"c":"6"}}"#;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "PATCH /api/v1/namespaces/default/configmaps/{name} HTTP/1.1\r\nHost: x\r\nUser-Agent: curl/8.0\r\nContent-Type: application/merge-patch+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    stream.read_to_string(&mut out).await.unwrap();
    out
}
