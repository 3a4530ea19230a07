//! The scale run's cluster as a real API server holds it (issue 21): 10 000
//! headless Services created with `kubectl apply`, each with an
//! EndpointSlice of 10 endpoints (a hostname, a node and a Pod `targetRef`
//! each) also created with `kubectl apply`, plus the empty placeholder slice
//! kube-controller-manager writes for every Service with a selector and no
//! Pods: 10 000 Services, 20 000 EndpointSlices, 100 000 endpoints.
//!
//! Each object comes in two forms: what the client sends (`*_request`, with
//! kubectl's `last-applied-configuration` annotation, the way `kubectl
//! apply` creates it) and what the API server lists (`*_listed`, with the
//! server's metadata, defaults and `managedFields`, as
//! `rancher-sandbox/tests/data/kubectl-apply/kube-apiserver-v1.32.yaml` shows
//! them). The bench checks that the sandbox lists the same shape.

use serde_json::{Map, Value, json};

/// Headless Services.
pub(crate) const SERVICES: usize = 10_000;
/// Endpoints in each Service's slice.
pub(crate) const ENDPOINTS: usize = 10;
/// Namespaces the Services are spread over.
pub(crate) const NAMESPACES: usize = 100;

/// The field manager `kubectl apply` sends.
pub(crate) const KUBECTL_APPLY: &str = "kubectl-client-side-apply";
/// The manager kube-apiserver derives from kube-controller-manager's User-Agent.
pub(crate) const KCM: &str = "kube-controller-manager";

const TIME: &str = "2025-03-04T10:21:07Z";

pub(crate) fn namespace(j: usize) -> String {
    format!("ns{}", j % NAMESPACES)
}

/// The address of endpoint `k` of Service `j`.
pub(crate) fn endpoint_ip(j: usize, k: usize) -> String {
    format!("10.{}.{}.{}", 1 + j / 250, j % 250, k + 1)
}

/// `kubectl apply`'s annotation: the manifest as JSON with sorted keys and an
/// empty `annotations` map, then a newline.
fn with_last_applied(mut manifest: Value) -> Value {
    manifest["metadata"]["annotations"] = json!({});
    // serde_json's map is sorted, as Go's encoding of a map is.
    let applied = format!("{manifest}\n");
    manifest["metadata"]["annotations"] =
        json!({"kubectl.kubernetes.io/last-applied-configuration": applied});
    manifest
}

/// Service `db{j}` as `kubectl apply` creates it.
pub(crate) fn service_request(j: usize) -> Value {
    let name = format!("db{j}");
    with_last_applied(json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": namespace(j), "labels": {"app": name}},
        "spec": {
            "clusterIP": "None",
            "selector": {"app": name},
            "ports": [{"name": "mongo", "port": 27017}],
        },
    }))
}

fn server_metadata(obj: &mut Value, uid: String, rv: u64, entries: Value) {
    let meta = obj["metadata"].as_object_mut().expect("metadata");
    meta.insert("uid".into(), json!(uid));
    meta.insert("resourceVersion".into(), json!(rv.to_string()));
    meta.insert("creationTimestamp".into(), json!(TIME));
    meta.insert("managedFields".into(), entries);
}

fn uid(kind: u8, j: usize) -> String {
    format!("{kind:02x}{j:06x}-5b1e-4c3a-9f2d-6e8a7c4b1d20")
}

fn update_entry(manager: &str, api_version: &str, fields: Value) -> Value {
    json!({
        "manager": manager, "operation": "Update", "apiVersion": api_version,
        "time": TIME, "fieldsType": "FieldsV1", "fieldsV1": fields,
    })
}

/// Service `db{j}` as the API server lists it.
pub(crate) fn service_listed(j: usize, rv: u64) -> Value {
    let mut svc = service_request(j);
    let spec = &mut svc["spec"];
    spec["clusterIPs"] = json!(["None"]);
    spec["internalTrafficPolicy"] = json!("Cluster");
    spec["ipFamilies"] = json!(["IPv4"]);
    spec["ipFamilyPolicy"] = json!("SingleStack");
    spec["ports"] =
        json!([{"name": "mongo", "port": 27017, "protocol": "TCP", "targetPort": 27017}]);
    spec["sessionAffinity"] = json!("None");
    spec["type"] = json!("ClusterIP");
    svc["status"] = json!({"loadBalancer": {}});
    let fields = json!({
        "f:metadata": {
            "f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}},
            "f:labels": {".": {}, "f:app": {}},
        },
        "f:spec": {
            "f:clusterIP": {},
            "f:internalTrafficPolicy": {},
            "f:ports": {".": {}, "k:{\"port\":27017,\"protocol\":\"TCP\"}": {
                ".": {}, "f:name": {}, "f:port": {}, "f:protocol": {}, "f:targetPort": {},
            }},
            "f:selector": {},
            "f:sessionAffinity": {},
            "f:type": {},
        },
    });
    server_metadata(
        &mut svc,
        uid(1, j),
        rv,
        json!([update_entry(KUBECTL_APPLY, "v1", fields)]),
    );
    svc
}

/// Service `db{j}`'s own EndpointSlice as `kubectl apply` creates it.
pub(crate) fn slice_request(j: usize) -> Value {
    let ns = namespace(j);
    let endpoints: Vec<Value> = (0..ENDPOINTS)
        .map(|k| {
            let pod = format!("db{j}-{k}");
            json!({
                "addresses": [endpoint_ip(j, k)],
                "conditions": {"ready": true, "serving": true, "terminating": false},
                "hostname": pod,
                "nodeName": format!("node-{}", (j + k) % 50),
                "targetRef": {"kind": "Pod", "namespace": ns, "name": pod, "uid": uid(3, j * ENDPOINTS + k)},
            })
        })
        .collect();
    with_last_applied(json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("db{j}-pods"),
            "namespace": ns,
            "labels": {"kubernetes.io/service-name": format!("db{j}")},
        },
        "addressType": "IPv4",
        "ports": [{"name": "mongo", "port": 27017, "protocol": "TCP"}],
        "endpoints": endpoints,
    }))
}

/// That slice as the API server lists it (`endpoints.ready` of `not_ready`
/// flipped, for the change-to-answer rounds).
pub(crate) fn slice_listed(j: usize, rv: u64, not_ready: Option<usize>) -> Value {
    let mut slice = slice_request(j);
    if let Some(k) = not_ready {
        slice["endpoints"][k]["conditions"]["ready"] = json!(false);
    }
    slice["metadata"]["generation"] = json!(1);
    let fields = json!({
        "f:addressType": {},
        "f:endpoints": {},
        "f:metadata": {
            "f:annotations": {".": {}, "f:kubectl.kubernetes.io/last-applied-configuration": {}},
            "f:labels": {".": {}, "f:kubernetes.io/service-name": {}},
        },
        "f:ports": {},
    });
    server_metadata(
        &mut slice,
        uid(2, j),
        rv,
        json!([update_entry(KUBECTL_APPLY, "discovery.k8s.io/v1", fields)]),
    );
    slice
}

/// The placeholder slice kube-controller-manager writes for Service `db{j}`
/// (no endpoints: no Pod matches its selector), as it posts it.
pub(crate) fn placeholder_request(j: usize) -> Value {
    let service = format!("db{j}");
    json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": format!("{service}-{}", suffix(j)),
            "generateName": format!("{service}-"),
            "namespace": namespace(j),
            "labels": {
                "app": service,
                "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io",
                "kubernetes.io/service-name": service,
                "service.kubernetes.io/headless": "",
            },
            "ownerReferences": [{
                "apiVersion": "v1", "kind": "Service", "name": service, "uid": uid(1, j),
                "controller": true, "blockOwnerDeletion": true,
            }],
        },
        "addressType": "IPv4",
        "endpoints": null,
        "ports": null,
    })
}

/// A generated name's five-character suffix, as the API server makes them.
fn suffix(j: usize) -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    (0..5)
        .map(|i| ALPHABET[(j / ALPHABET.len().pow(i)) % ALPHABET.len()] as char)
        .collect()
}

/// The placeholder as the API server lists it.
pub(crate) fn placeholder_listed(j: usize, rv: u64) -> Value {
    let mut slice = placeholder_request(j);
    slice["metadata"]["generation"] = json!(1);
    let fields = json!({
        "f:addressType": {},
        "f:metadata": {
            "f:generateName": {},
            "f:labels": {
                ".": {}, "f:app": {}, "f:endpointslice.kubernetes.io/managed-by": {},
                "f:kubernetes.io/service-name": {}, "f:service.kubernetes.io/headless": {},
            },
            "f:ownerReferences": {".": {}, format!("k:{{\"uid\":\"{}\"}}", uid(1, j)): {}},
        },
    });
    server_metadata(
        &mut slice,
        uid(4, j),
        rv,
        json!([update_entry(KCM, "discovery.k8s.io/v1", fields)]),
    );
    slice
}

/// A list page as the API server sends it.
pub(crate) fn page(
    kind: &str,
    api_version: &str,
    items: Vec<Value>,
    rv: u64,
    more: bool,
) -> String {
    let mut meta = Map::new();
    meta.insert("resourceVersion".into(), json!(rv.to_string()));
    if more {
        meta.insert("continue".into(), json!("next"));
    }
    json!({"kind": format!("{kind}List"), "apiVersion": api_version, "metadata": meta, "items": items})
        .to_string()
}

/// What differs from run to run or is the server's to choose, taken out so
/// two listings of the same object compare equal.
pub(crate) fn normalize(mut obj: Value) -> Value {
    if let Some(meta) = obj["metadata"].as_object_mut() {
        for field in [
            "uid",
            "resourceVersion",
            "creationTimestamp",
            "generation",
            "name",
        ] {
            meta.remove(field);
        }
        for e in meta
            .get_mut("managedFields")
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            e["time"] = json!(TIME);
        }
        if let Some(refs) = meta
            .get_mut("ownerReferences")
            .and_then(Value::as_array_mut)
        {
            for r in refs {
                r["uid"] = json!("");
            }
        }
    }
    // Owner uids appear in the placeholder's managedFields key as well.
    let text = obj.to_string();
    let text = regex_free_uid_scrub(&text);
    serde_json::from_str(&text).unwrap_or(obj)
}

/// Replaces every `k:{"uid":"…"}` key's uid with nothing.
fn regex_free_uid_scrub(text: &str) -> String {
    let marker = r#"k:{\"uid\":\""#;
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(marker) {
        out.push_str(&rest[..i + marker.len()]);
        rest = &rest[i + marker.len()..];
        match rest.find(r#"\""#) {
            Some(end) => rest = &rest[end..],
            None => break,
        }
    }
    out.push_str(rest);
    out
}
