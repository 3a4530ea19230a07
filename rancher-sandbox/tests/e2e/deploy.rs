//! `deploy/` as an operator uses it: `kubectl kustomize deploy/` renders every
//! plugin's manifests, `kubectl apply --dry-run=server` accepts all of them and
//! stores nothing, and they apply for real. The sandbox serves every kind the
//! base holds (CRDs included), so nothing is skipped. Every `image:` names an
//! image `./scripts/images` builds (the list is `deploy/images.txt`).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::kubectl::start;

fn deploy_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy")
}

/// The images `deploy/images.txt` lists, as `rancher-plugins/<name>:<version>`.
fn built_images() -> BTreeSet<String> {
    let list = std::fs::read_to_string(deploy_dir().join("images.txt")).unwrap();
    list.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_whitespace().next())
        .map(|name| format!("rancher-plugins/{name}:{}", env!("CARGO_PKG_VERSION")))
        .collect()
}

/// Every value of an `image` field in `v`.
fn images(v: &Value, found: &mut BTreeSet<String>) {
    match v {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("image", Value::String(image)) => {
                        found.insert(image.clone());
                    }
                    _ => images(value, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| images(i, found)),
        _ => {}
    }
}

/// `kind/name` of each item of a `kubectl ... -o json` list.
fn names(list: &Value) -> Vec<String> {
    list["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .map(|o| {
                    format!(
                        "{}/{}",
                        o["kind"].as_str().unwrap_or("?"),
                        o["metadata"]["name"].as_str().unwrap_or("?")
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn the_deploy_kustomization_renders_and_applies_to_the_sandbox() {
    let (dir, _sb, k) = start().await;
    let deploy = deploy_dir();
    let rendered = k.ok(&["kustomize", deploy.to_str().unwrap()]).await;
    let documents: Vec<&str> = rendered
        .split("\n---\n")
        .filter(|d| !d.trim().is_empty())
        .collect();
    let file = dir.path().join("deploy.yaml");
    std::fs::write(&file, &rendered).unwrap();
    let file = file.to_str().unwrap();

    // As with kube-apiserver, a dry run creates no namespace, so the objects in
    // a new one are refused; and it stores nothing.
    let (ok, _, err) = k.run(&["apply", "--dry-run=server", "-f", file]).await;
    assert!(
        !ok && err.contains("namespaces \"federation-system\" not found"),
        "{err}"
    );
    let stored = k
        .ok(&["get", "-f", file, "--ignore-not-found", "-o", "name"])
        .await;
    assert_eq!(stored.trim(), "", "a dry run stored objects");

    // With the namespaces created, the whole render passes a dry run.
    let namespaces: Vec<&str> = documents
        .iter()
        .copied()
        .filter(|d| d.lines().any(|l| l == "kind: Namespace"))
        .collect();
    assert_eq!(namespaces.len(), 2, "federation-system and rancher-auth");
    let ns_file = dir.path().join("namespaces.yaml");
    std::fs::write(&ns_file, namespaces.join("\n---\n")).unwrap();
    k.ok(&["apply", "-f", ns_file.to_str().unwrap()]).await;
    let dry: Value = serde_json::from_str(
        &k.ok(&["apply", "--dry-run=server", "-f", file, "-o", "json"])
            .await,
    )
    .unwrap();
    let objects = names(&dry);
    assert_eq!(objects.len(), documents.len(), "{objects:?}");
    for kind in [
        "CustomResourceDefinition",
        "DaemonSet",
        "Deployment",
        "IngressClass",
        "ClusterRole",
    ] {
        assert!(
            objects.iter().any(|o| o.starts_with(&format!("{kind}/"))),
            "{kind} in {objects:?}"
        );
    }
    let stored = k
        .ok(&["get", "-f", file, "--ignore-not-found", "-o", "name"])
        .await;
    assert_eq!(
        stored.lines().count(),
        namespaces.len(),
        "only the namespaces: {stored}"
    );

    // Every image is one ./scripts/images builds.
    let mut used = BTreeSet::new();
    images(&dry, &mut used);
    let built = built_images();
    assert!(used.len() >= 6, "{used:?}");
    for image in &used {
        assert!(
            built.contains(image),
            "{image} is not built by scripts/images: {built:?}"
        );
    }

    // For real: everything is created, and a dry-run delete leaves it all.
    let out = k.ok(&["apply", "-f", file]).await;
    let created = out.lines().filter(|l| l.ends_with(" created")).count();
    assert_eq!(created, documents.len() - namespaces.len(), "{out}");
    let out = k.ok(&["delete", "--dry-run=server", "-f", file]).await;
    assert_eq!(
        out.lines()
            .filter(|l| l.ends_with("(server dry run)"))
            .count(),
        documents.len(),
        "{out}"
    );
    let stored = k.ok(&["get", "-f", file, "-o", "name"]).await;
    assert_eq!(stored.lines().count(), documents.len(), "{stored}");

    // Beyond the base: a member cluster's RBAC, and objects of the CRDs' kinds.
    for extra in [
        "federation/member-rbac.yaml",
        "federation/example.yaml",
        "credential-provider/secret-rbac.yaml",
    ] {
        let path = deploy.join(extra);
        k.ok(&["apply", "--dry-run=server", "-f", path.to_str().unwrap()])
            .await;
        k.ok(&["apply", "-f", path.to_str().unwrap()]).await;
    }
    let out = k
        .ok(&["get", "federations,federatedservices", "-A", "-o", "name"])
        .await;
    assert!(
        out.contains("federation.federation.rancher.io/myfed")
            && out.contains("federatedservice.federation.rancher.io/nginx"),
        "{out}"
    );
}
