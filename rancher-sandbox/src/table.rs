//! Server-side `Table` output (`Accept: application/json;as=Table;v=v1;g=meta.k8s.io`),
//! with the columns `kubectl get` shows for each kind.

use serde_json::{Value, json};

use crate::resource::{Printer, ResourceType};

/// What each row carries in `object` (the `includeObject` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IncludeObject {
    None,
    Metadata,
    Object,
}

impl IncludeObject {
    pub(crate) fn parse(s: Option<&str>) -> Self {
        match s {
            Some("None") => Self::None,
            Some("Object") => Self::Object,
            _ => Self::Metadata,
        }
    }
}

/// kube's `HumanDuration`: `42s`, `5m3s`, `3h`, `2d5h`, `400d`, `3y20d`.
pub(crate) fn human_duration(secs: i64) -> String {
    if secs < -1 {
        return "<invalid>".to_string();
    }
    let s = secs.max(0);
    let (m, h, d) = (s / 60, s / 3600, s / 86400);
    if s < 120 {
        format!("{s}s")
    } else if m < 10 {
        if s % 60 == 0 {
            format!("{m}m")
        } else {
            format!("{m}m{}s", s % 60)
        }
    } else if h < 3 {
        format!("{m}m")
    } else if h < 8 {
        if m % 60 == 0 {
            format!("{h}h")
        } else {
            format!("{h}h{}m", m % 60)
        }
    } else if h < 48 {
        format!("{h}h")
    } else if h < 24 * 8 {
        if h % 24 == 0 {
            format!("{d}d")
        } else {
            format!("{d}d{}h", h % 24)
        }
    } else if d < 365 * 2 {
        format!("{d}d")
    } else if d < 365 * 8 {
        let y = d / 365;
        if d % 365 == 0 {
            format!("{y}y")
        } else {
            format!("{y}y{}d", d % 365)
        }
    } else {
        format!("{}y", d / 365)
    }
}

fn age_of(ts: &Value) -> String {
    match ts.as_str().and_then(|s| s.parse::<jiff::Timestamp>().ok()) {
        Some(t) => human_duration(jiff::Timestamp::now().as_second() - t.as_second()),
        None => "<unknown>".to_string(),
    }
}

fn col(name: &str, ty: &str, format: &str, description: &str) -> Value {
    json!({"name": name, "type": ty, "format": format, "description": description, "priority": 0})
}

fn name_col() -> Value {
    col(
        "Name",
        "string",
        "name",
        "Name must be unique within a namespace.",
    )
}

fn age_col() -> Value {
    col(
        "Age",
        "string",
        "",
        "CreationTimestamp is a timestamp representing the server time when this object was created.",
    )
}

fn s(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

fn join_or(items: Vec<String>, empty: &str) -> String {
    if items.is_empty() {
        empty.to_string()
    } else {
        items.join(",")
    }
}

fn arr(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

fn truncated(items: Vec<String>, max: usize) -> String {
    if items.is_empty() {
        return "<none>".to_string();
    }
    if items.len() > max {
        format!("{} + {} more...", items[..max].join(","), items.len() - max)
    } else {
        items.join(",")
    }
}

fn lb_addresses(status: &Value) -> Vec<String> {
    arr(&status["loadBalancer"]["ingress"])
        .iter()
        .filter_map(|i| {
            i["ip"]
                .as_str()
                .or_else(|| i["hostname"].as_str())
                .map(str::to_string)
        })
        .collect()
}

/// A simple JSONPath (`.spec.replicas`, `.status.conditions[0].type`).
fn json_path(obj: &Value, path: &str) -> Value {
    let mut cur = obj;
    for part in path
        .trim_start_matches('.')
        .split('.')
        .filter(|p| !p.is_empty())
    {
        let (field, index) = match part.split_once('[') {
            Some((f, rest)) => (f, rest.trim_end_matches(']').parse::<usize>().ok()),
            None => (part, None),
        };
        cur = &cur[field];
        if let Some(i) = index {
            cur = &cur[i];
        }
    }
    cur.clone()
}

/// The extra columns `kubectl get -o wide` shows (priority 1).
fn wide_columns(rt: &ResourceType) -> Vec<Value> {
    let names: &[&str] = match rt.printer {
        Printer::Pod => &["IP", "Node"],
        Printer::Service => &["Selector"],
        Printer::Node => &["Internal-IP", "External-IP"],
        Printer::Deployment | Printer::ReplicaSet | Printer::DaemonSet => {
            &["Containers", "Images", "Selector"]
        }
        Printer::StatefulSet => &["Containers", "Images"],
        _ => &[],
    };
    names
        .iter()
        .map(|n| {
            let mut c = col(n, "string", "", "");
            c["priority"] = json!(1);
            c
        })
        .collect()
}

fn wide_cells(rt: &ResourceType, o: &Value) -> Vec<Value> {
    let spec = &o["spec"];
    let status = &o["status"];
    let or_none = |v: String| {
        json!(if v.is_empty() {
            "<none>".to_string()
        } else {
            v
        })
    };
    let map_selector = |m: &Value| {
        m.as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", s(v)))
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    };
    let addr = |ty: &str| {
        arr(&status["addresses"])
            .iter()
            .filter(|a| a["type"] == ty)
            .map(|a| s(&a["address"]))
            .collect::<Vec<_>>()
            .join(",")
    };
    match rt.printer {
        Printer::Pod => vec![or_none(s(&status["podIP"])), or_none(s(&spec["nodeName"]))],
        Printer::Service => vec![or_none(map_selector(&spec["selector"]))],
        Printer::Node => vec![or_none(addr("InternalIP")), or_none(addr("ExternalIP"))],
        Printer::Deployment | Printer::ReplicaSet | Printer::DaemonSet | Printer::StatefulSet => {
            let containers = arr(&spec["template"]["spec"]["containers"]);
            let mut cells = vec![
                json!(
                    containers
                        .iter()
                        .map(|c| s(&c["name"]))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                json!(
                    containers
                        .iter()
                        .map(|c| s(&c["image"]))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
            ];
            if rt.printer != Printer::StatefulSet {
                cells.push(or_none(map_selector(&spec["selector"]["matchLabels"])));
            }
            cells
        }
        _ => Vec::new(),
    }
}

/// Column definitions for `rt`.
fn columns(rt: &ResourceType) -> Vec<Value> {
    let mut out = base_columns(rt);
    out.extend(wide_columns(rt));
    out
}

fn base_columns(rt: &ResourceType) -> Vec<Value> {
    let c = |n: &str, t: &str| col(n, t, "", "");
    match &rt.printer {
        Printer::Default => vec![name_col(), age_col()],
        Printer::Namespace => vec![name_col(), c("Status", "string"), age_col()],
        Printer::Node => vec![
            name_col(),
            c("Status", "string"),
            c("Roles", "string"),
            age_col(),
            c("Version", "string"),
        ],
        Printer::Pod => vec![
            name_col(),
            c("Ready", "string"),
            c("Status", "string"),
            c("Restarts", "string"),
            age_col(),
        ],
        Printer::Service => vec![
            name_col(),
            c("Type", "string"),
            c("Cluster-IP", "string"),
            c("External-IP", "string"),
            c("Port(s)", "string"),
            age_col(),
        ],
        Printer::Endpoints => vec![name_col(), c("Endpoints", "string"), age_col()],
        Printer::ConfigMap => vec![name_col(), c("Data", "integer"), age_col()],
        Printer::Secret => vec![
            name_col(),
            c("Type", "string"),
            c("Data", "integer"),
            age_col(),
        ],
        Printer::Event => vec![
            c("Last Seen", "string"),
            c("Type", "string"),
            c("Reason", "string"),
            c("Object", "string"),
            c("Message", "string"),
        ],
        Printer::Lease => vec![name_col(), c("Holder", "string"), age_col()],
        Printer::EndpointSlice => vec![
            name_col(),
            c("AddressType", "string"),
            c("Ports", "string"),
            c("Endpoints", "string"),
            age_col(),
        ],
        Printer::Ingress => vec![
            name_col(),
            c("Class", "string"),
            c("Hosts", "string"),
            c("Address", "string"),
            c("Ports", "string"),
            age_col(),
        ],
        Printer::IngressClass => vec![
            name_col(),
            c("Controller", "string"),
            c("Parameters", "string"),
            age_col(),
        ],
        Printer::Deployment => vec![
            name_col(),
            c("Ready", "string"),
            c("Up-to-date", "string"),
            c("Available", "string"),
            age_col(),
        ],
        Printer::ReplicaSet => vec![
            name_col(),
            c("Desired", "integer"),
            c("Current", "integer"),
            c("Ready", "integer"),
            age_col(),
        ],
        Printer::StatefulSet => vec![name_col(), c("Ready", "string"), age_col()],
        Printer::DaemonSet => vec![
            name_col(),
            c("Desired", "integer"),
            c("Current", "integer"),
            c("Ready", "integer"),
            c("Up-to-date", "integer"),
            c("Available", "integer"),
            c("Node Selector", "string"),
            age_col(),
        ],
        Printer::Crd => vec![name_col(), col("Created At", "date", "", "")],
        Printer::Custom(cols) => {
            let mut out = vec![name_col()];
            for pc in cols {
                let mut def = col(
                    &pc.name,
                    if pc.type_ == "date" {
                        "string"
                    } else {
                        &pc.type_
                    },
                    "",
                    "",
                );
                def["priority"] = json!(pc.priority);
                out.push(def);
            }
            out.push(age_col());
            out
        }
    }
}

/// The cells of one row.
fn cells(rt: &ResourceType, o: &Value) -> Vec<Value> {
    let meta = &o["metadata"];
    let name = json!(s(&meta["name"]));
    let age = json!(age_of(&meta["creationTimestamp"]));
    let spec = &o["spec"];
    let status = &o["status"];
    match &rt.printer {
        Printer::Namespace => vec![name, json!(s(&status["phase"])), age],
        Printer::Node => node_row(o, name, age),
        Printer::Pod => pod_row(o, name, age),
        Printer::Service => service_row(o, name, age),
        Printer::Endpoints => endpoints_row(o, name, age),
        Printer::ConfigMap => {
            let n = o["data"].as_object().map_or(0, |m| m.len())
                + o["binaryData"].as_object().map_or(0, |m| m.len());
            vec![name, json!(n), age]
        }
        Printer::Secret => {
            let n = o["data"].as_object().map_or(0, |m| m.len());
            vec![name, json!(s(&o["type"])), json!(n), age]
        }
        Printer::Event => event_row(o),
        Printer::Lease => vec![name, json!(s(&spec["holderIdentity"])), age],
        Printer::EndpointSlice => endpointslice_row(o, name, age),
        Printer::Ingress => ingress_row(o, name, age),
        Printer::IngressClass => {
            let params = &spec["parameters"];
            let p = if params.is_object() {
                format!("{}/{}", s(&params["kind"]), s(&params["name"]))
            } else {
                "<none>".to_string()
            };
            vec![name, json!(s(&spec["controller"])), json!(p), age]
        }
        Printer::Deployment => {
            let replicas = spec["replicas"].as_i64().unwrap_or(0);
            let n = |f: &str| status[f].as_i64().unwrap_or(0);
            vec![
                name,
                json!(format!("{}/{replicas}", n("readyReplicas"))),
                json!(n("updatedReplicas")),
                json!(n("availableReplicas")),
                age,
            ]
        }
        Printer::ReplicaSet => {
            let n = |f: &str| status[f].as_i64().unwrap_or(0);
            vec![
                name,
                json!(spec["replicas"].as_i64().unwrap_or(0)),
                json!(n("replicas")),
                json!(n("readyReplicas")),
                age,
            ]
        }
        Printer::StatefulSet => {
            let ready = status["readyReplicas"].as_i64().unwrap_or(0);
            let replicas = spec["replicas"].as_i64().unwrap_or(0);
            vec![name, json!(format!("{ready}/{replicas}")), age]
        }
        Printer::DaemonSet => daemonset_row(o, name, age),
        Printer::Crd => vec![name, json!(s(&meta["creationTimestamp"]))],
        Printer::Custom(cols) => {
            let mut out = vec![name];
            for pc in cols {
                let v = json_path(o, &pc.json_path);
                out.push(if pc.type_ == "date" {
                    json!(age_of(&v))
                } else if v.is_null() {
                    json!("")
                } else {
                    v
                });
            }
            out.push(age);
            out
        }
        Printer::Default => vec![name, age],
    }
}

/// A Node's row: status (with `SchedulingDisabled`), roles, age, kubelet version.
fn node_row(o: &Value, name: Value, age: Value) -> Vec<Value> {
    let meta = &o["metadata"];
    let spec = &o["spec"];
    let status = &o["status"];
    let ready = arr(&status["conditions"])
        .iter()
        .find(|c| c["type"] == "Ready");
    let mut st = match ready.map(|c| s(&c["status"])) {
        Some(x) if x == "True" => "Ready".to_string(),
        Some(x) if x == "False" => "NotReady".to_string(),
        _ => "Unknown".to_string(),
    };
    if spec["unschedulable"] == true {
        st.push_str(",SchedulingDisabled");
    }
    let roles: Vec<String> = meta["labels"]
        .as_object()
        .map(|l| {
            l.keys()
                .filter_map(|k| {
                    k.strip_prefix("node-role.kubernetes.io/")
                        .map(str::to_string)
                })
                .collect()
        })
        .unwrap_or_default();
    vec![
        name,
        json!(st),
        json!(join_or(roles, "<none>")),
        age,
        json!(s(&status["nodeInfo"]["kubeletVersion"])),
    ]
}

/// A pod's row: ready containers, the status kubectl prints, restarts, age.
fn pod_row(o: &Value, name: Value, age: Value) -> Vec<Value> {
    let meta = &o["metadata"];
    let spec = &o["spec"];
    let status = &o["status"];
    let total = arr(&spec["containers"]).len();
    let statuses = arr(&status["containerStatuses"]);
    let ready = statuses.iter().filter(|c| c["ready"] == true).count();
    let restarts: i64 = statuses
        .iter()
        .filter_map(|c| c["restartCount"].as_i64())
        .sum();
    let phase = if meta.get("deletionTimestamp").is_some_and(|v| !v.is_null()) {
        "Terminating".to_string()
    } else if let Some(r) = status["reason"].as_str() {
        r.to_string()
    } else if let Some(r) = statuses.iter().rev().find_map(|c| {
        c["state"]["waiting"]["reason"]
            .as_str()
            .or_else(|| c["state"]["terminated"]["reason"].as_str())
    }) {
        // As kubectl prints it: a waiting or terminated container's reason.
        r.to_string()
    } else {
        s(&status["phase"])
    };
    vec![
        name,
        json!(format!("{ready}/{total}")),
        json!(phase),
        json!(restarts.to_string()),
        age,
    ]
}

/// A Service's row: type, cluster IP, external addresses, ports, age.
fn service_row(o: &Value, name: Value, age: Value) -> Vec<Value> {
    let spec = &o["spec"];
    let status = &o["status"];
    let ty = spec["type"].as_str().unwrap_or("ClusterIP");
    let mut external: Vec<String> = arr(&spec["externalIPs"]).iter().map(s).collect();
    let external = match ty {
        "ExternalName" => s(&spec["externalName"]),
        "LoadBalancer" => {
            external.extend(lb_addresses(status));
            join_or(external, "<pending>")
        }
        _ => join_or(external, "<none>"),
    };
    let ports: Vec<String> = arr(&spec["ports"])
        .iter()
        .map(|p| match p["nodePort"].as_i64() {
            Some(np) => format!(
                "{}:{np}/{}",
                s(&p["port"]),
                p["protocol"].as_str().unwrap_or("TCP")
            ),
            None => format!(
                "{}/{}",
                s(&p["port"]),
                p["protocol"].as_str().unwrap_or("TCP")
            ),
        })
        .collect();
    let cip = spec["clusterIP"].as_str().unwrap_or("<none>");
    vec![
        name,
        json!(ty),
        json!(if cip.is_empty() { "<none>" } else { cip }),
        json!(external),
        json!(join_or(ports, "<none>")),
        age,
    ]
}

/// An Endpoints' row: up to three addresses.
fn endpoints_row(o: &Value, name: Value, age: Value) -> Vec<Value> {
    let mut eps = Vec::new();
    for subset in arr(&o["subsets"]) {
        for a in arr(&subset["addresses"]) {
            let ports = arr(&subset["ports"]);
            if ports.is_empty() {
                eps.push(s(&a["ip"]));
            }
            for p in ports {
                eps.push(format!("{}:{}", s(&a["ip"]), s(&p["port"])));
            }
        }
    }
    vec![name, json!(truncated(eps, 3)), age]
}

/// An Event's row: last seen, type, reason, object, message.
fn event_row(o: &Value) -> Vec<Value> {
    let meta = &o["metadata"];
    let last = [
        &o["lastTimestamp"],
        &o["eventTime"],
        &o["series"]["lastObservedTime"],
        &meta["creationTimestamp"],
    ]
    .into_iter()
    .find(|v| v.is_string())
    .map_or_else(|| "<unknown>".to_string(), age_of);
    let obj = &o["involvedObject"];
    vec![
        json!(last),
        json!(s(&o["type"])),
        json!(s(&o["reason"])),
        json!(format!(
            "{}/{}",
            s(&obj["kind"]).to_lowercase(),
            s(&obj["name"])
        )),
        json!(s(&o["message"])),
    ]
}

/// An EndpointSlice's row: address type, ports, up to three addresses.
fn endpointslice_row(o: &Value, name: Value, age: Value) -> Vec<Value> {
    let ports: Vec<String> = arr(&o["ports"])
        .iter()
        .filter_map(|p| p["port"].as_i64().map(|n| n.to_string()))
        .collect();
    let addrs: Vec<String> = arr(&o["endpoints"])
        .iter()
        .flat_map(|e| arr(&e["addresses"]).iter().map(s))
        .collect();
    vec![
        name,
        json!(s(&o["addressType"])),
        json!(join_or(ports, "<unset>")),
        json!(truncated(addrs, 3)),
        age,
    ]
}

/// An Ingress's row: class, hosts, addresses, ports, age.
fn ingress_row(o: &Value, name: Value, age: Value) -> Vec<Value> {
    let spec = &o["spec"];
    let status = &o["status"];
    let hosts: Vec<String> = arr(&spec["rules"])
        .iter()
        .map(|r| r["host"].as_str().unwrap_or("*").to_string())
        .collect();
    let ports = if arr(&spec["tls"]).is_empty() {
        "80"
    } else {
        "80, 443"
    };
    let class = spec["ingressClassName"].as_str().unwrap_or("<none>");
    vec![
        name,
        json!(class),
        json!(join_or(hosts, "*")),
        json!(lb_addresses(status).join(",")),
        json!(ports),
        age,
    ]
}

/// A DaemonSet's row: its counts and node selector.
fn daemonset_row(o: &Value, name: Value, age: Value) -> Vec<Value> {
    let spec = &o["spec"];
    let status = &o["status"];
    let n = |f: &str| status[f].as_i64().unwrap_or(0);
    let selector = spec["template"]["spec"]["nodeSelector"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| format!("{k}={}", s(v)))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    vec![
        name,
        json!(n("desiredNumberScheduled")),
        json!(n("currentNumberScheduled")),
        json!(n("numberReady")),
        json!(n("updatedNumberScheduled")),
        json!(n("numberAvailable")),
        json!(join_or(selector, "<none>")),
        age,
    ]
}

fn row(rt: &ResourceType, o: &Value, include: IncludeObject) -> Value {
    let mut all = cells(rt, o);
    all.extend(wide_cells(rt, o));
    let mut r = json!({ "cells": all });
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => r["object"] = partial_metadata(o),
        IncludeObject::Object => r["object"] = o.clone(),
    }
    r
}

/// `PartialObjectMetadata` for an object.
pub(crate) fn partial_metadata(o: &Value) -> Value {
    json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": o["metadata"]})
}

/// A Table of `objects` (already in served form).
pub(crate) fn table<'a>(
    rt: &ResourceType,
    objects: impl Iterator<Item = &'a Value>,
    rv: u64,
    cont: Option<&str>,
    include: IncludeObject,
    headers: bool,
) -> Value {
    let mut t = json!({
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": rv.to_string()},
        "rows": objects.map(|o| row(rt, o, include)).collect::<Vec<_>>(),
    });
    if headers {
        t["columnDefinitions"] = json!(columns(rt));
    }
    if let Some(c) = cont {
        t["metadata"]["continue"] = json!(c);
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Registry;

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(125), "2m5s");
        assert_eq!(human_duration(3600 * 5 + 60), "5h1m");
        assert_eq!(human_duration(86400 * 3), "3d");
        assert_eq!(human_duration(86400 * 800), "2y70d");
    }

    #[test]
    fn ingress_address_column_joins_load_balancer_ips() {
        let reg = Registry::built_in();
        let rt = reg.find("networking.k8s.io", "v1", "ingresses").unwrap();
        let ing = json!({"metadata": {"name": "web", "creationTimestamp": "2020-01-01T00:00:00Z"},
            "spec": {"ingressClassName": "rancher", "rules": [{"host": "a.example.org"}, {"host": "b.example.org"}]},
            "status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.2"}, {"ip": "127.0.0.3"}]}}});
        let t = table(
            &rt,
            [&ing].into_iter(),
            7,
            None,
            IncludeObject::Metadata,
            true,
        );
        let cells = &t["rows"][0]["cells"];
        assert_eq!(cells[0], "web");
        assert_eq!(cells[1], "rancher");
        assert_eq!(cells[2], "a.example.org,b.example.org");
        assert_eq!(cells[3], "127.0.0.2,127.0.0.3");
        assert_eq!(cells[4], "80");
        assert_eq!(t["columnDefinitions"][3]["name"], "Address");

        let rt = reg.find("", "v1", "pods").unwrap();
        let pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "host-1", "containers": [{"name": "a"}]},
            "status": {"phase": "Running", "podIP": "10.42.0.5"}});
        let t = table(&rt, [&pod].into_iter(), 7, None, IncludeObject::None, true);
        let defs = t["columnDefinitions"].as_array().unwrap();
        assert_eq!(defs.len(), t["rows"][0]["cells"].as_array().unwrap().len());
        assert_eq!(defs[5]["name"], "IP");
        assert_eq!(defs[5]["priority"], 1);
        assert_eq!(t["rows"][0]["cells"][5], "10.42.0.5");
        assert_eq!(t["rows"][0]["cells"][6], "host-1");
    }
}
