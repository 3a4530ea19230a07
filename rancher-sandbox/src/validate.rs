//! Validation of names, labels and the fields of the kinds the sandbox knows, worded as
//! kube-apiserver words them.

use serde_json::Value;

use crate::resource::{NameRule, ResourceType};
use crate::selector::LabelSelector;

fn is_label_char(c: char) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'
}

/// DNS-1123 label: `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 characters.
pub(crate) fn dns1123_label(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 63 {
        return Err("must be no more than 63 characters and not empty".to_string());
    }
    let ok = s.chars().all(is_label_char) && !s.starts_with('-') && !s.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err("a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character".to_string())
    }
}

/// DNS-1123 subdomain: dot-separated labels, at most 253 characters.
pub(crate) fn dns1123_subdomain(s: &str) -> Result<(), String> {
    if s.is_empty() || s.len() > 253 {
        return Err("must be no more than 253 characters and not empty".to_string());
    }
    if s.split('.').all(|l| dns1123_label(l).is_ok()) {
        Ok(())
    } else {
        Err("a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character".to_string())
    }
}

/// DNS-1035 label: a DNS-1123 label that starts with a letter.
pub(crate) fn dns1035_label(s: &str) -> Result<(), String> {
    dns1123_label(s)?;
    if s.starts_with(|c: char| c.is_ascii_lowercase()) {
        Ok(())
    } else {
        Err("a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character".to_string())
    }
}

/// Validates an object name under `rule`.
pub(crate) fn name(rule: NameRule, s: &str) -> Result<(), String> {
    match rule {
        NameRule::Subdomain => dns1123_subdomain(s),
        NameRule::Label => dns1123_label(s),
        NameRule::Rfc1035Label => dns1035_label(s),
        NameRule::PathSegment => {
            if s.is_empty() || s == "." || s == ".." || s.contains('/') || s.contains('%') {
                Err("may not be '.', '..', or contain '/' or '%'".to_string())
            } else {
                Ok(())
            }
        }
    }
}

fn qualified_name_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.')
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.ends_with(|c: char| c.is_ascii_alphanumeric())
}

/// A label or annotation key: an optional DNS subdomain prefix and `/`, then a name.
pub(crate) fn label_key(key: &str) -> Result<(), String> {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    if let Some(p) = prefix {
        dns1123_subdomain(p).map_err(|e| format!("prefix part {e}"))?;
    }
    if qualified_name_part(name) {
        Ok(())
    } else {
        Err("name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character".to_string())
    }
}

/// A label value: empty, or a qualified name part of at most 63 characters.
pub(crate) fn label_value(value: &str) -> Result<(), String> {
    if value.is_empty() || qualified_name_part(value) {
        Ok(())
    } else {
        Err("a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character".to_string())
    }
}

/// Validates `metadata` and the kind-specific fields; returns `field: message` causes.
pub(crate) fn object(rt: &ResourceType, obj: &Value) -> Vec<String> {
    let mut causes = Vec::new();
    let meta = &obj["metadata"];
    if let Some(labels) = meta.get("labels") {
        match labels.as_object() {
            Some(map) => {
                for (k, v) in map {
                    if let Err(e) = label_key(k) {
                        causes.push(format!("metadata.labels: Invalid value: {k:?}: {e}"));
                    }
                    match v.as_str() {
                        Some(s) => {
                            if let Err(e) = label_value(s) {
                                causes.push(format!("metadata.labels: Invalid value: {s:?}: {e}"));
                            }
                        }
                        None if v.is_null() => {}
                        None => causes.push(format!(
                            "metadata.labels.{k}: Invalid value: must be a string"
                        )),
                    }
                }
            }
            None if labels.is_null() => {}
            None => {
                causes.push("metadata.labels: Invalid value: must be a map of strings".to_string())
            }
        }
    }
    if let Some(annotations) = meta.get("annotations") {
        match annotations.as_object() {
            Some(map) => {
                let mut total = 0;
                for (k, v) in map {
                    if let Err(e) = label_key(k) {
                        causes.push(format!("metadata.annotations: Invalid value: {k:?}: {e}"));
                    }
                    if !v.is_string() && !v.is_null() {
                        causes.push(format!(
                            "metadata.annotations.{k}: Invalid value: must be a string"
                        ));
                    }
                    total += k.len() + v.as_str().map_or(0, str::len);
                }
                if total > 256 * 1024 {
                    causes.push(
                        "metadata.annotations: Too long: must have at most 262144 bytes"
                            .to_string(),
                    );
                }
            }
            None if annotations.is_null() => {}
            None => causes
                .push("metadata.annotations: Invalid value: must be a map of strings".to_string()),
        }
    }
    if let Some(f) = meta.get("finalizers") {
        let ok = f.is_null()
            || f.as_array().is_some_and(|a| {
                a.iter()
                    .all(|x| x.as_str().is_some_and(|s| label_key(s).is_ok()))
            });
        if !ok {
            causes.push(
                "metadata.finalizers: Invalid value: each finalizer must be a qualified name"
                    .to_string(),
            );
        }
    }
    match (rt.group.as_str(), rt.kind.as_str()) {
        ("", "Service") => service(obj, &mut causes),
        ("", "Pod") => pod(&obj["spec"], "spec", &mut causes),
        ("apps", kind @ ("Deployment" | "ReplicaSet" | "StatefulSet" | "DaemonSet")) => {
            workload(kind, obj, &mut causes);
        }
        ("networking.k8s.io", "Ingress") => ingress(obj, &mut causes),
        ("discovery.k8s.io", "EndpointSlice") => endpoint_slice(obj, &mut causes),
        ("coordination.k8s.io", "Lease") => {
            if let Some(d) = obj["spec"].get("leaseDurationSeconds")
                && !d.is_null()
                && d.as_i64().is_none_or(|d| d <= 0)
            {
                causes.push(
                    "spec.leaseDurationSeconds: Invalid value: must be greater than 0".to_string(),
                );
            }
        }
        _ => {}
    }
    causes
}

fn arr_of(v: &Value) -> &[Value] {
    v.as_array().map_or(&[], Vec::as_slice)
}

fn endpoint_slice(obj: &Value, causes: &mut Vec<String>) {
    match obj["addressType"].as_str() {
        Some("IPv4" | "IPv6" | "FQDN") => {}
        other => causes.push(format!("addressType: Unsupported value: {other:?}: supported values: \"FQDN\", \"IPv4\", \"IPv6\"")),
    }
    if !obj["ports"].is_null() && !obj["ports"].is_array() {
        causes.push("ports: Invalid value: must be a list".to_string());
    }
    for (i, p) in arr_of(&obj["ports"]).iter().enumerate() {
        if !p.is_object() || !(p["port"].is_null() || port_number(&p["port"])) {
            causes.push(format!(
                "ports[{i}].port: Invalid value: must be between 1 and 65535, inclusive"
            ));
        }
    }
    if !obj["endpoints"].is_null() && !obj["endpoints"].is_array() {
        causes.push("endpoints: Invalid value: must be a list".to_string());
    }
    for (i, e) in arr_of(&obj["endpoints"]).iter().enumerate() {
        if !e["addresses"].is_array() {
            causes.push(format!("endpoints[{i}].addresses: Required value"));
        }
    }
}

fn port_number(v: &Value) -> bool {
    v.as_i64().is_some_and(|p| (1..=65535).contains(&p))
}

fn service(obj: &Value, causes: &mut Vec<String>) {
    let spec = &obj["spec"];
    let ty = spec["type"].as_str().unwrap_or("ClusterIP");
    if !["ClusterIP", "NodePort", "LoadBalancer", "ExternalName"].contains(&ty) {
        causes.push(format!("spec.type: Unsupported value: {ty:?}: supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""));
    }
    let headless = spec["clusterIP"].as_str() == Some("None");
    let ports = spec["ports"].as_array().cloned().unwrap_or_default();
    if ports.is_empty() && !headless && ty != "ExternalName" {
        causes.push("spec.ports: Required value".to_string());
    }
    if ty == "ExternalName" && spec["externalName"].as_str().is_none_or(str::is_empty) {
        causes.push("spec.externalName: Required value".to_string());
    }
    let mut seen = Vec::new();
    for (i, p) in ports.iter().enumerate() {
        if !port_number(&p["port"]) {
            causes.push(format!(
                "spec.ports[{i}].port: Invalid value: {}: must be between 1 and 65535, inclusive",
                p["port"]
            ));
        }
        let proto = p["protocol"].as_str().unwrap_or("TCP");
        if !["TCP", "UDP", "SCTP"].contains(&proto) {
            causes.push(format!("spec.ports[{i}].protocol: Unsupported value: {proto:?}: supported values: \"SCTP\", \"TCP\", \"UDP\""));
        }
        if ports.len() > 1 && p["name"].as_str().is_none_or(str::is_empty) {
            causes.push(format!("spec.ports[{i}].name: Required value"));
        }
        let key = (p["port"].as_i64(), proto.to_string());
        if seen.contains(&key) {
            causes.push(format!(
                "spec.ports[{i}]: Duplicate value: {{\"port\": {}, \"protocol\": {proto:?}}}",
                p["port"]
            ));
        }
        seen.push(key);
    }
}

fn pod(spec: &Value, path: &str, causes: &mut Vec<String>) {
    let containers = spec["containers"].as_array().cloned().unwrap_or_default();
    if containers.is_empty() {
        causes.push(format!("{path}.containers: Required value"));
    }
    for (i, c) in containers.iter().enumerate() {
        match c["name"].as_str() {
            Some(n) => {
                if let Err(e) = dns1123_label(n) {
                    causes.push(format!(
                        "{path}.containers[{i}].name: Invalid value: {n:?}: {e}"
                    ));
                }
            }
            None => causes.push(format!("{path}.containers[{i}].name: Required value")),
        }
        if c["image"].as_str().is_none_or(str::is_empty) {
            causes.push(format!("{path}.containers[{i}].image: Required value"));
        }
        if !c.is_object() {
            causes.push(format!(
                "{path}.containers[{i}]: Invalid value: must be an object"
            ));
            continue;
        }
        for (j, p) in arr_of(&c["ports"]).iter().enumerate() {
            if !p.is_object() || !port_number(&p["containerPort"]) {
                causes.push(format!("{path}.containers[{i}].ports[{j}].containerPort: Invalid value: must be between 1 and 65535, inclusive"));
            }
        }
    }
}

/// Deployments, ReplicaSets, StatefulSets and DaemonSets: a selector that selects the
/// template's labels, non-negative replicas, a valid pod template.
fn workload(kind: &str, obj: &Value, causes: &mut Vec<String>) {
    let spec = &obj["spec"];
    if let Some(r) = spec.get("replicas").filter(|r| !r.is_null()) {
        match r.as_i64() {
            Some(n) if n < 0 => causes.push(format!(
                "spec.replicas: Invalid value: {n}: must be greater than or equal to 0"
            )),
            Some(_) => {}
            None => causes.push(format!(
                "spec.replicas: Invalid value: {r}: must be an integer"
            )),
        }
    }
    let labels = &spec["template"]["metadata"]["labels"];
    if !spec["selector"].is_object() {
        causes.push("spec.selector: Required value".to_string());
    } else {
        match LabelSelector::from_object(&spec["selector"], "spec.selector") {
            Err(why) => causes.push(why),
            Ok(sel) if sel.is_empty() => causes.push(format!(
                "spec.selector: Invalid value: {}: empty selector is invalid for {}",
                spec["selector"],
                kind.to_lowercase()
            )),
            Ok(sel) if !sel.matches(labels) => causes.push(format!(
                "spec.template.metadata.labels: Invalid value: {labels}: `selector` does not match template `labels`"
            )),
            Ok(_) => {}
        }
    }
    let restart = spec["template"]["spec"]["restartPolicy"].as_str();
    if let Some(policy) = restart.filter(|p| *p != "Always") {
        causes.push(format!(
            "spec.template.spec.restartPolicy: Unsupported value: {policy:?}: supported values: \"Always\""
        ));
    }
    pod(&spec["template"]["spec"], "spec.template.spec", causes);
}

fn ingress(obj: &Value, causes: &mut Vec<String>) {
    let spec = &obj["spec"];
    let rules = spec["rules"].as_array().cloned().unwrap_or_default();
    if rules.is_empty() && !spec["defaultBackend"].is_object() {
        causes.push(
            "spec: Invalid value: either `defaultBackend` or `rules` must be specified".to_string(),
        );
    }
    for (i, rule) in rules.iter().enumerate() {
        if let Some(host) = rule["host"].as_str() {
            let h = host.strip_prefix("*.").unwrap_or(host);
            if dns1123_subdomain(h).is_err() {
                causes.push(format!("spec.rules[{i}].host: Invalid value: {host:?}: a lowercase RFC 1123 subdomain (optionally with a leading '*.')"));
            }
        }
        for (j, path) in rule["http"]["paths"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .enumerate()
        {
            let pt = path["pathType"].as_str().unwrap_or_default();
            if !["Exact", "Prefix", "ImplementationSpecific"].contains(&pt) {
                causes.push(format!("spec.rules[{i}].http.paths[{j}].pathType: Unsupported value: {pt:?}: supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\""));
            }
            if let Some(p) = path["path"].as_str()
                && pt != "ImplementationSpecific"
                && !p.starts_with('/')
            {
                causes.push(format!("spec.rules[{i}].http.paths[{j}].path: Invalid value: {p:?}: must be an absolute path"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(dns1123_subdomain("web.example.org").is_ok());
        assert!(dns1123_subdomain("Web").is_err());
        assert!(dns1123_label("a.b").is_err());
        assert!(dns1035_label("1abc").is_err());
        assert!(dns1035_label("abc-1").is_ok());
        assert!(label_key("example.org/app").is_ok());
        assert!(label_key("-x").is_err());
        assert!(label_value("").is_ok());
        assert!(label_value("a b").is_err());
    }
}
