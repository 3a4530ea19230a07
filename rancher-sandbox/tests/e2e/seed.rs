//! Seeding clusters from a directory of YAML manifests.

use k8s_openapi::api::core::v1::{ConfigMap, Node, Service};
use kube::api::Api;
use kube::core::{DynamicObject, GroupVersionKind};
use kube::discovery::ApiResource;

const GOOD: &str = r#"
# The demo's objects: a namespace, a node with status, a CRD and one of its objects.
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: demo
data:
  mode: fast
---
apiVersion: v1
kind: Namespace
metadata:
  name: demo
---
apiVersion: v1
kind: Node
metadata:
  name: host-1
  labels: {kubernetes.io/hostname: host-1}
status:
  addresses:
  - {type: InternalIP, address: 127.0.0.2}
---
apiVersion: example.org/v1
kind: Widget
metadata:
  name: w1
  namespace: demo
spec:
  size: 2
"#;

const CRD: &str = r#"{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
 "metadata": {"name": "widgets.example.org"},
 "spec": {"group": "example.org", "scope": "Namespaced", "names": {"plural": "widgets", "kind": "Widget"},
  "versions": [{"name": "v1", "served": true, "storage": true}]}}"#;

const BAD: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: fine
  namespace: default
spec:
  ports: [{port: 80}]
---
apiVersion: v1
kind: ConfigMap
metadata: [this is not a map
---
apiVersion: example.net/v9
kind: Gadget
metadata:
  name: g
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: lost
  namespace: missing
"#;

#[tokio::test]
async fn good_manifests_load_and_bad_ones_are_reported() {
    super::install_provider();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("10-good.yaml"), GOOD).unwrap();
    std::fs::write(dir.path().join("05-crd.json"), CRD).unwrap();
    std::fs::write(dir.path().join("20-bad.yml"), BAD).unwrap();
    std::fs::write(dir.path().join("README.txt"), "not a manifest").unwrap();
    let sb = rancher_sandbox::Sandbox::builder()
        .manifests_dir(dir.path())
        .clusters(2)
        .start()
        .await
        .unwrap();

    for cluster in sb.clusters() {
        let cms: Api<ConfigMap> = Api::namespaced(cluster.client(), "demo");
        assert_eq!(
            cms.get("settings").await.unwrap().data.unwrap()["mode"],
            "fast"
        );
        let node: Node = Api::all(cluster.client()).get("host-1").await.unwrap();
        assert_eq!(
            node.status.unwrap().addresses.unwrap()[0].address,
            "127.0.0.2",
            "status is seeded too"
        );
        let ar = ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("example.org", "v1", "Widget"),
            "widgets",
        );
        let w: DynamicObject = Api::namespaced_with(cluster.client(), "demo", &ar)
            .get("w1")
            .await
            .unwrap();
        assert_eq!(w.data["spec"]["size"], 2);
        let svc: Service = Api::namespaced(cluster.client(), "default")
            .get("fine")
            .await
            .unwrap();
        assert!(svc.spec.unwrap().cluster_ip.is_some());
    }

    // Three bad documents per cluster, each named by file, document number and reason.
    let errors = sb.seed_errors();
    assert_eq!(errors.len(), 6, "{errors:#?}");
    let first: Vec<(String, usize)> = errors[..3]
        .iter()
        .map(|e| {
            (
                e.file.file_name().unwrap().to_string_lossy().into_owned(),
                e.document,
            )
        })
        .collect();
    let mut sorted = first.clone();
    sorted.sort_by_key(|e| e.1);
    assert_eq!(
        sorted,
        [
            ("20-bad.yml".to_string(), 2),
            ("20-bad.yml".to_string(), 3),
            ("20-bad.yml".to_string(), 4)
        ]
    );
    let reasons: Vec<String> = errors[..3].iter().map(ToString::to_string).collect();
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("document 3") && r.contains("Gadget")),
        "{reasons:?}"
    );
    assert!(
        reasons
            .iter()
            .any(|r| r.contains("document 4") && r.contains("namespaces \"missing\" not found")),
        "{reasons:?}"
    );
}

#[tokio::test]
async fn an_unreadable_manifests_dir_fails_the_start() {
    super::install_provider();
    let result = rancher_sandbox::Sandbox::builder()
        .manifests_dir("/nonexistent/manifests")
        .start()
        .await;
    assert!(matches!(result, Err(rancher_sandbox::Error::Manifests(_))));
}
