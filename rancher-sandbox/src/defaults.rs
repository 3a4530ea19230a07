//! Defaults kube-apiserver fills in for pods and the `apps/v1` workloads, so a stored object
//! reads back as it would from a cluster (and a pod template hashes the same either way).

use serde_json::{Value, json};

/// Sets `obj[key]` to `value` when it is missing or null.
fn default(obj: &mut Value, key: &str, value: Value) {
    if let Some(map) = obj.as_object_mut() {
        let slot = map.entry(key.to_string()).or_insert(Value::Null);
        if slot.is_null() {
            *slot = value;
        }
    }
}

/// The pull policy kube-apiserver picks: `Always` for `:latest` or an untagged image.
fn pull_policy(image: &str) -> &'static str {
    let name = image.rsplit('/').next().unwrap_or(image);
    let untagged = !name.contains(':') && !image.contains('@');
    if untagged || name.ends_with(":latest") {
        "Always"
    } else {
        "IfNotPresent"
    }
}

/// Defaults of a pod spec (a Pod's or a workload's template).
pub(crate) fn pod_spec(spec: &mut Value) {
    if !spec.is_object() {
        return;
    }
    default(spec, "restartPolicy", json!("Always"));
    default(spec, "dnsPolicy", json!("ClusterFirst"));
    default(spec, "schedulerName", json!("default-scheduler"));
    default(spec, "terminationGracePeriodSeconds", json!(30));
    default(spec, "securityContext", json!({}));
    default(spec, "enableServiceLinks", json!(true));
    for list in ["initContainers", "containers"] {
        for c in spec[list].as_array_mut().into_iter().flatten() {
            if !c.is_object() {
                continue;
            }
            let image = c["image"].as_str().unwrap_or_default().to_string();
            default(c, "imagePullPolicy", json!(pull_policy(&image)));
            default(c, "terminationMessagePath", json!("/dev/termination-log"));
            default(c, "terminationMessagePolicy", json!("File"));
            default(c, "resources", json!({}));
            for p in c["ports"].as_array_mut().into_iter().flatten() {
                default(p, "protocol", json!("TCP"));
            }
        }
    }
}

/// Defaults of a Pod: its spec, and the tolerations kube-apiserver's
/// `DefaultTolerationSeconds` admission adds.
pub(crate) fn pod(obj: &mut Value) {
    pod_spec(&mut obj["spec"]);
    let spec = &mut obj["spec"];
    if !spec.is_object() {
        return;
    }
    default(spec, "tolerations", json!([]));
    for key in [
        "node.kubernetes.io/not-ready",
        "node.kubernetes.io/unreachable",
    ] {
        let Some(list) = spec["tolerations"].as_array_mut() else {
            return;
        };
        let tolerated = list
            .iter()
            .any(|t| t["key"] == key && (t["effect"] == "NoExecute" || t["effect"].is_null()));
        if !tolerated {
            list.push(json!({"key": key, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}));
        }
    }
}

/// Defaults of an `apps/v1` workload (`kind` is its Kind).
pub(crate) fn workload(kind: &str, obj: &mut Value) {
    let spec = &mut obj["spec"];
    if !spec.is_object() {
        return;
    }
    match kind {
        "Deployment" => {
            default(spec, "replicas", json!(1));
            default(spec, "revisionHistoryLimit", json!(10));
            default(spec, "progressDeadlineSeconds", json!(600));
            default(spec, "strategy", json!({"type": "RollingUpdate"}));
            if spec["strategy"]["type"] == "RollingUpdate" {
                default(&mut spec["strategy"], "rollingUpdate", json!({}));
                let ru = &mut spec["strategy"]["rollingUpdate"];
                default(ru, "maxSurge", json!("25%"));
                default(ru, "maxUnavailable", json!("25%"));
            }
        }
        "ReplicaSet" => default(spec, "replicas", json!(1)),
        "StatefulSet" => {
            default(spec, "replicas", json!(1));
            default(spec, "revisionHistoryLimit", json!(10));
            default(spec, "podManagementPolicy", json!("OrderedReady"));
            default(spec, "updateStrategy", json!({"type": "RollingUpdate"}));
            if spec["updateStrategy"]["type"] == "RollingUpdate" {
                default(
                    &mut spec["updateStrategy"],
                    "rollingUpdate",
                    json!({"partition": 0}),
                );
            }
            default(
                spec,
                "persistentVolumeClaimRetentionPolicy",
                json!({"whenDeleted": "Retain", "whenScaled": "Retain"}),
            );
        }
        "DaemonSet" => {
            default(spec, "revisionHistoryLimit", json!(10));
            default(spec, "updateStrategy", json!({"type": "RollingUpdate"}));
            if spec["updateStrategy"]["type"] == "RollingUpdate" {
                default(&mut spec["updateStrategy"], "rollingUpdate", json!({}));
                let ru = &mut spec["updateStrategy"]["rollingUpdate"];
                default(ru, "maxUnavailable", json!(1));
                default(ru, "maxSurge", json!(0));
            }
        }
        _ => return,
    }
    pod_spec(&mut spec["template"]["spec"]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployments_get_the_upstream_defaults() {
        let mut d = json!({"spec": {"selector": {}, "template": {"spec": {"containers": [
            {"name": "web", "image": "nginx", "ports": [{"containerPort": 80}]},
            {"name": "side", "image": "example.org/side:1.2"},
        ]}}}});
        workload("Deployment", &mut d);
        assert_eq!(d["spec"]["replicas"], 1);
        assert_eq!(d["spec"]["strategy"]["rollingUpdate"]["maxSurge"], "25%");
        let c = &d["spec"]["template"]["spec"]["containers"];
        assert_eq!(c[0]["imagePullPolicy"], "Always");
        assert_eq!(c[1]["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c[0]["ports"][0]["protocol"], "TCP");
        assert_eq!(d["spec"]["template"]["spec"]["restartPolicy"], "Always");
    }

    #[test]
    fn set_values_are_kept() {
        let mut s = json!({"spec": {"replicas": 0, "updateStrategy": {"type": "OnDelete"}}});
        workload("StatefulSet", &mut s);
        assert_eq!(s["spec"]["replicas"], 0);
        assert!(s["spec"]["updateStrategy"].get("rollingUpdate").is_none());
        let mut p = json!({"spec": {"containers": [], "tolerations": [
            {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}
        ]}});
        pod(&mut p);
        assert_eq!(p["spec"]["tolerations"].as_array().unwrap().len(), 2);
    }
}
