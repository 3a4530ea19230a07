//! The CRDs in `deploy/federation/crds.yaml` are the ones the code defines.
//! Regenerate with `UPDATE_MANIFESTS=1 cargo test -p rancher-federation --test e2e manifests`.

use std::path::PathBuf;

use kube::CustomResourceExt;
use rancher_federation::crd::{FederatedCluster, FederatedService, Federation};

fn path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../deploy/federation/crds.yaml")
}

#[test]
fn deployed_crds_match_the_code() {
    let crds = vec![
        Federation::crd(),
        FederatedCluster::crd(),
        FederatedService::crd(),
    ];
    if std::env::var_os("UPDATE_MANIFESTS").is_some() {
        let yaml = serde_saphyr::to_string_multiple(&crds).expect("serialise");
        let header = "# Generated from rancher-federation's crd module; do not edit.\n# Regenerate: UPDATE_MANIFESTS=1 cargo test -p rancher-federation --test e2e manifests\n";
        std::fs::write(path(), format!("{header}{yaml}")).expect("write crds.yaml");
    }
    let text = std::fs::read_to_string(path()).expect("read deploy/federation/crds.yaml");
    let deployed: Vec<serde_json::Value> = serde_saphyr::from_multiple(&text).expect("parse");
    let wanted: Vec<serde_json::Value> = crds
        .iter()
        .map(|crd| serde_json::to_value(crd).unwrap())
        .collect();
    assert_eq!(
        deployed, wanted,
        "deploy/federation/crds.yaml is stale; regenerate it"
    );
}
