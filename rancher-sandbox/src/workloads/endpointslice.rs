//! The EndpointSlice controller: for every Service with a selector, slices of the
//! selected pods' addresses (ready and not ready, `hostname` for pods whose subdomain is
//! the Service, named target ports resolved per pod), labelled as upstream labels them.
//! Slices it does not manage (a selector-less Service's, written by a user) are left alone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use super::objects::{self, Key, Writer, meta};
use super::runner::Reconciler;
use crate::selector::LabelSelector;
use crate::store::{Change, Obj, Propagation, State};

/// The controller's name, as kube-controller-manager's.
pub(crate) const NAME: &str = "endpointslice-controller";
/// The label naming a slice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming who manages a slice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's value of [`MANAGED_BY_LABEL`], as upstream's.
pub const MANAGED_BY: &str = "endpointslice-controller.k8s.io";
/// The label on the slices of a headless Service.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// Endpoints per slice, as upstream's default.
const MAX_ENDPOINTS: usize = 100;

pub(crate) struct EndpointSlices {
    writer: Writer,
}

impl EndpointSlices {
    pub(crate) fn new() -> Self {
        Self {
            writer: Writer { manager: NAME },
        }
    }
}

/// The Service's selector, when it has one (`None` for selector-less Services).
fn service_selector(svc: &Value) -> Option<LabelSelector> {
    let sel = svc["spec"]["selector"]
        .as_object()
        .filter(|m| !m.is_empty())?;
    LabelSelector::from_object(&json!({"matchLabels": sel}), "spec.selector").ok()
}

/// Whether a slice is one this controller manages.
fn managed(slice: &Value) -> bool {
    slice["metadata"]["labels"][MANAGED_BY_LABEL] == MANAGED_BY
}

/// The port a Service port targets on `pod`: the number, or the named container port.
fn target_port(port: &Value, pod: &Value) -> Option<i64> {
    let target = &port["targetPort"];
    if let Some(n) = target.as_i64() {
        return Some(n);
    }
    let Some(name) = target.as_str() else {
        return port["port"].as_i64();
    };
    if let Ok(n) = name.parse::<i64>() {
        return Some(n);
    }
    let protocol = port["protocol"].as_str().unwrap_or("TCP");
    pod["spec"]["containers"]
        .as_array()?
        .iter()
        .flat_map(|c| c["ports"].as_array().into_iter().flatten())
        .find(|p| p["name"] == name && p["protocol"].as_str().unwrap_or("TCP") == protocol)
        .and_then(|p| p["containerPort"].as_i64())
}

/// One pod's endpoint, and the slice ports it is reachable on.
fn endpoint(svc: &Value, pod: &Value, zones: &BTreeMap<String, String>) -> Option<(Value, Value)> {
    let ip = pod["status"]["podIP"]
        .as_str()
        .filter(|ip| !ip.is_empty())?;
    if matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    ) {
        return None;
    }
    let ports: Vec<Value> = svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let mut port = json!({
                "name": p["name"].as_str().unwrap_or_default(),
                "port": target_port(p, pod)?,
                "protocol": p["protocol"].as_str().unwrap_or("TCP"),
            });
            if let Some(ap) = p.get("appProtocol") {
                port["appProtocol"] = ap.clone();
            }
            Some(port)
        })
        .collect();
    let terminating = objects::is_deleting(pod);
    let serving = objects::pod_ready(pod);
    let publish = svc["spec"]["publishNotReadyAddresses"] == true;
    let mut ep = json!({
        "addresses": [ip],
        "conditions": {
            "ready": publish || (serving && !terminating),
            "serving": publish || serving,
            "terminating": terminating,
        },
        "targetRef": {
            "kind": "Pod",
            "namespace": meta(pod, "namespace"),
            "name": meta(pod, "name"),
            "uid": meta(pod, "uid"),
        },
    });
    let node = pod["spec"]["nodeName"].as_str().unwrap_or_default();
    if !node.is_empty() {
        ep["nodeName"] = json!(node);
        if let Some(zone) = zones.get(node) {
            ep["zone"] = json!(zone);
        }
    }
    let hostname = pod["spec"]["hostname"].as_str().unwrap_or_default();
    if !hostname.is_empty() && pod["spec"]["subdomain"] == meta(svc, "name") {
        ep["hostname"] = json!(hostname);
    }
    Some((ep, Value::Array(ports)))
}

/// The slices a Service should have: (ports, endpoints) groups, at most 100 each.
fn desired(state: &State, svc: &Value, sel: &LabelSelector) -> Vec<(Value, Vec<Value>)> {
    let mut zones = BTreeMap::new();
    if let Some(nodes) = objects::rt(state, "", "nodes") {
        for n in objects::list(state, &nodes, None) {
            if let Some(z) = n["metadata"]["labels"]["topology.kubernetes.io/zone"].as_str() {
                zones.insert(meta(&n, "name").to_string(), z.to_string());
            }
        }
    }
    let Some(pod_rt) = objects::rt(state, "", "pods") else {
        return Vec::new();
    };
    let mut groups: BTreeMap<String, (Value, Vec<Value>)> = BTreeMap::new();
    for pod in objects::list(state, &pod_rt, Some(meta(svc, "namespace"))) {
        if !sel.matches(&pod["metadata"]["labels"]) {
            continue;
        }
        if let Some((ep, ports)) = endpoint(svc, &pod, &zones) {
            let group = groups
                .entry(ports.to_string())
                .or_insert_with(|| (ports, Vec::new()));
            group.1.push(ep);
        }
    }
    let mut out = Vec::new();
    for (_, (ports, endpoints)) in groups {
        for chunk in endpoints.chunks(MAX_ENDPOINTS) {
            out.push((ports.clone(), chunk.to_vec()));
        }
    }
    if out.is_empty() {
        // As upstream: a Service that selects nothing keeps one empty placeholder slice.
        out.push((json!([]), Vec::new()));
    }
    out
}

impl Reconciler for EndpointSlices {
    type Key = Key;

    fn name(&self) -> &'static str {
        NAME
    }

    fn keys_for(&mut self, state: &State, change: &Change, out: &mut Vec<Key>) {
        match change.storage.as_str() {
            "/services" => out.push(objects::key_of(&change.object)),
            "discovery.k8s.io/endpointslices" if managed(&change.object) => {
                if let Some(svc) = change.object["metadata"]["labels"][SERVICE_NAME_LABEL].as_str()
                {
                    out.push((
                        meta(&change.object, "namespace").to_string(),
                        svc.to_string(),
                    ));
                }
            }
            "/pods" => {
                let Some(svc_rt) = objects::rt(state, "", "services") else {
                    return;
                };
                let ns = meta(&change.object, "namespace");
                for svc in objects::list(state, &svc_rt, Some(ns)) {
                    let Some(sel) = service_selector(&svc) else {
                        continue;
                    };
                    let selects = |o: &Value| sel.matches(&o["metadata"]["labels"]);
                    if selects(&change.object)
                        || change.previous.as_deref().is_some_and(|p| selects(p))
                    {
                        out.push(objects::key_of(&svc));
                    }
                }
            }
            _ => {}
        }
    }

    fn all_keys(&mut self, state: &State, out: &mut Vec<Key>) {
        if let Some(rt) = objects::rt(state, "", "services") {
            out.extend(
                objects::list(state, &rt, None)
                    .iter()
                    .map(|o| objects::key_of(o)),
            );
        }
    }

    fn reconcile(&mut self, state: &mut State, (ns, name): &Key) -> Option<Duration> {
        let slice_rt = state.find_type("discovery.k8s.io", "v1", "endpointslices")?;
        let svc_rt = objects::rt(state, "", "services")?;
        let svc = objects::get(state, &svc_rt, ns, name);
        let mut existing: Vec<Arc<Obj>> = objects::list(state, &slice_rt, Some(ns))
            .into_iter()
            .filter(|s| managed(s) && s["metadata"]["labels"][SERVICE_NAME_LABEL] == name.as_str())
            .collect();
        existing.sort_by(|a, b| meta(a, "name").cmp(meta(b, "name")));
        let selector = svc.as_ref().and_then(|s| service_selector(s));
        let (Some(svc), Some(sel)) = (
            svc.filter(|s| s["spec"]["type"] != "ExternalName" && !objects::is_deleting(s)),
            selector,
        ) else {
            for slice in existing {
                self.writer
                    .delete(state, &slice_rt, &slice, Propagation::Background);
            }
            return None;
        };
        let want = desired(state, &svc, &sel);
        let mut labels = svc["metadata"]["labels"]
            .as_object()
            .cloned()
            .unwrap_or_default();
        labels.insert(SERVICE_NAME_LABEL.to_string(), json!(name));
        labels.insert(MANAGED_BY_LABEL.to_string(), json!(MANAGED_BY));
        if svc["spec"]["clusterIP"] == "None" {
            labels.insert(HEADLESS_LABEL.to_string(), json!(""));
        } else {
            labels.remove(HEADLESS_LABEL);
        }
        let address_type = if svc["spec"]["ipFamilies"][0] == "IPv6" {
            "IPv6"
        } else {
            "IPv4"
        };
        let mut old = existing.into_iter();
        for (ports, endpoints) in want {
            let body = |mut base: Value| {
                base["metadata"]["labels"] = Value::Object(labels.clone());
                base["metadata"]["ownerReferences"] =
                    json!([objects::owner_ref(&svc, "v1", "Service")]);
                base["addressType"] = json!(address_type);
                base["endpoints"] = Value::Array(endpoints.clone());
                base["ports"] = ports.clone();
                base
            };
            match old.next() {
                Some(slice) => {
                    let updated = body(slice.value.clone());
                    if updated != slice.value {
                        let _ = self.writer.update(state, &slice_rt, updated);
                    }
                }
                None => {
                    let new = body(json!({
                        "apiVersion": "discovery.k8s.io/v1",
                        "kind": "EndpointSlice",
                        "metadata": {"generateName": format!("{name}-"), "namespace": ns},
                    }));
                    let _ = self.writer.create(state, &slice_rt, ns, new);
                }
            }
        }
        for extra in old {
            self.writer
                .delete(state, &slice_rt, &extra, Propagation::Background);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str, ip: &str, ready: bool) -> Value {
        json!({
            "metadata": {"name": name, "namespace": "default", "uid": name, "labels": {"app": "db"}},
            "spec": {"nodeName": "n1", "hostname": name, "subdomain": "db",
                     "containers": [{"name": "c", "ports": [{"name": "mongo", "containerPort": 27017}]}]},
            "status": {"podIP": ip, "phase": "Running",
                       "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]},
        })
    }

    #[test]
    fn endpoints_carry_readiness_hostnames_and_named_ports() {
        let svc = json!({"metadata": {"name": "db", "namespace": "default"},
                         "spec": {"selector": {"app": "db"}, "ports": [{"name": "m", "port": 80, "targetPort": "mongo"}]}});
        let zones = BTreeMap::from([("n1".to_string(), "zone-a".to_string())]);
        let (ep, ports) = endpoint(&svc, &pod("db-0", "127.1.0.2", false), &zones).unwrap();
        assert_eq!(ep["conditions"]["ready"], false);
        assert_eq!(ep["hostname"], "db-0");
        assert_eq!(ep["zone"], "zone-a");
        assert_eq!(ports[0]["port"], 27017);
        let mut published = svc.clone();
        published["spec"]["publishNotReadyAddresses"] = json!(true);
        let (ep, _) = endpoint(&published, &pod("db-0", "127.1.0.2", false), &zones).unwrap();
        assert_eq!(ep["conditions"]["ready"], true);
        assert!(endpoint(&svc, &pod("db-1", "", true), &zones).is_none());
    }
}
