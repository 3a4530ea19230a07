//! Patches: JSON merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge patch and
//! the merge step of server-side apply.
//!
//! Strategic merge patch merges these lists by key, as kube-apiserver does for the built-in
//! kinds: `containers`, `initContainers`, `ephemeralContainers`, `env`, `volumes`,
//! `imagePullSecrets`, `resourceClaims` (by `name`), `volumeMounts` (by `mountPath`),
//! `ports` (by `containerPort` in pods, `port` in services), `conditions` and node
//! `addresses` (by `type`), `taints` (by `key`), `hostAliases` (by `ip`),
//! `ownerReferences` (by `uid`); `finalizers` merge as a set. Every other list is replaced
//! whole, which is also what kube-apiserver does for Ingress `rules` and `tls`,
//! EndpointSlice `endpoints` and `ports` (atomic lists, although their items have a
//! `port`: a top-level `ports` is an EndpointSlice's) and `status.loadBalancer.ingress`. The directives `$patch`
//! (`replace`, `delete`, `merge`), `$retainKeys`, `$deleteFromPrimitiveList/<field>` and
//! `$setElementOrder/<field>` are understood (the last only for order).

use serde_json::{Map, Value};

/// A patch that could not be applied; the message says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PatchError(pub String);

type Result<T, E = PatchError> = std::result::Result<T, E>;

/// Applies an RFC 7386 JSON merge patch.
pub fn merge_patch(target: &Value, patch: &Value) -> Value {
    match patch {
        Value::Object(p) => {
            let mut out = match target {
                Value::Object(t) => t.clone(),
                _ => Map::new(),
            };
            for (k, v) in p {
                if v.is_null() {
                    out.remove(k);
                } else {
                    let merged = merge_patch(out.get(k).unwrap_or(&Value::Null), v);
                    out.insert(k.clone(), merged);
                }
            }
            Value::Object(out)
        }
        other => other.clone(),
    }
}

fn unescape(token: &str) -> String {
    token.replace("~1", "/").replace("~0", "~")
}

fn tokens(pointer: &str) -> Result<Vec<String>> {
    if pointer.is_empty() {
        return Ok(Vec::new());
    }
    let rest = pointer.strip_prefix('/').ok_or_else(|| {
        PatchError(format!(
            "invalid JSON pointer {pointer:?}: must start with '/'"
        ))
    })?;
    Ok(rest.split('/').map(unescape).collect())
}

fn index(token: &str, len: usize, allow_end: bool, path: &str) -> Result<usize> {
    if allow_end && token == "-" {
        return Ok(len);
    }
    let i: usize = token
        .parse()
        .map_err(|_| PatchError(format!("invalid array index {token:?} in path {path:?}")))?;
    let max = if allow_end {
        len
    } else {
        len.saturating_sub(1)
    };
    if i > max || (!allow_end && len == 0) {
        return Err(PatchError(format!(
            "array index {i} out of bounds in path {path:?}"
        )));
    }
    Ok(i)
}

fn parent_mut<'a>(doc: &'a mut Value, toks: &[String], path: &str) -> Result<&'a mut Value> {
    let mut cur = doc;
    for t in toks {
        cur = match cur {
            Value::Object(m) => m.get_mut(t).ok_or_else(|| {
                PatchError(format!("path {path:?} does not exist: missing {t:?}"))
            })?,
            Value::Array(a) => {
                let i = index(t, a.len(), false, path)?;
                &mut a[i]
            }
            _ => return Err(PatchError(format!("path {path:?} does not exist"))),
        };
    }
    Ok(cur)
}

fn get_at(doc: &Value, path: &str) -> Result<Value> {
    let toks = tokens(path)?;
    let mut cur = doc;
    for t in &toks {
        cur = match cur {
            Value::Object(m) => m
                .get(t)
                .ok_or_else(|| PatchError(format!("path {path:?} does not exist")))?,
            Value::Array(a) => &a[index(t, a.len(), false, path)?],
            _ => return Err(PatchError(format!("path {path:?} does not exist"))),
        };
    }
    Ok(cur.clone())
}

fn add_at(doc: &mut Value, path: &str, value: Value) -> Result<()> {
    let toks = tokens(path)?;
    let Some((last, parents)) = toks.split_last() else {
        *doc = value;
        return Ok(());
    };
    match parent_mut(doc, parents, path)? {
        Value::Object(m) => {
            m.insert(last.clone(), value);
        }
        Value::Array(a) => {
            let i = index(last, a.len(), true, path)?;
            a.insert(i, value);
        }
        _ => {
            return Err(PatchError(format!(
                "cannot add at {path:?}: parent is not an object or array"
            )));
        }
    }
    Ok(())
}

fn remove_at(doc: &mut Value, path: &str) -> Result<Value> {
    let toks = tokens(path)?;
    let Some((last, parents)) = toks.split_last() else {
        return Err(PatchError("cannot remove the whole document".to_string()));
    };
    match parent_mut(doc, parents, path)? {
        Value::Object(m) => m
            .remove(last)
            .ok_or_else(|| PatchError(format!("cannot remove {path:?}: it does not exist"))),
        Value::Array(a) => {
            let i = index(last, a.len(), false, path)?;
            Ok(a.remove(i))
        }
        _ => Err(PatchError(format!(
            "cannot remove {path:?}: parent is not an object or array"
        ))),
    }
}

/// Applies an RFC 6902 JSON patch (`add`, `remove`, `replace`, `move`, `copy`, `test`).
pub fn json_patch(target: &Value, patch: &Value) -> Result<Value> {
    let ops = patch
        .as_array()
        .ok_or_else(|| PatchError("a JSON patch must be an array of operations".to_string()))?;
    let mut doc = target.clone();
    for (n, op) in ops.iter().enumerate() {
        let kind = op["op"]
            .as_str()
            .ok_or_else(|| PatchError(format!("operation {n}: missing \"op\"")))?;
        let path = op["path"]
            .as_str()
            .ok_or_else(|| PatchError(format!("operation {n}: missing \"path\"")))?;
        let value = || {
            op.get("value")
                .cloned()
                .ok_or_else(|| PatchError(format!("operation {n} ({kind}): missing \"value\"")))
        };
        let from = || {
            op["from"]
                .as_str()
                .ok_or_else(|| PatchError(format!("operation {n} ({kind}): missing \"from\"")))
        };
        match kind {
            "add" => add_at(&mut doc, path, value()?)?,
            "remove" => {
                remove_at(&mut doc, path)?;
            }
            "replace" => {
                remove_at(&mut doc, path)?;
                add_at(&mut doc, path, value()?)?;
            }
            "move" => {
                let v = remove_at(&mut doc, from()?)?;
                add_at(&mut doc, path, v)?;
            }
            "copy" => {
                let v = get_at(&doc, from()?)?;
                add_at(&mut doc, path, v)?;
            }
            "test" => {
                // Like kube-apiserver's JSON patch, a missing member tests equal to null.
                let actual = match get_at(&doc, path) {
                    Ok(v) => v,
                    Err(_)
                        if tokens(path)?.split_last().is_some_and(|(_, parents)| {
                            parent_mut(&mut doc.clone(), parents, path).is_ok_and(|p| p.is_object())
                        }) =>
                    {
                        Value::Null
                    }
                    Err(e) => return Err(e),
                };
                if actual != value()? {
                    return Err(PatchError(format!(
                        "test operation {n} failed: value at {path:?} differs"
                    )));
                }
            }
            other => return Err(PatchError(format!("operation {n}: unknown op {other:?}"))),
        }
    }
    Ok(doc)
}

/// How a list field merges in a strategic merge patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListStrategy<'a> {
    Replace,
    MergeByKey(&'a str),
    MergePrimitive,
}

fn list_strategy<'a>(field: &str, sample: Option<&'a Value>) -> ListStrategy<'a> {
    match field {
        "containers"
        | "initContainers"
        | "ephemeralContainers"
        | "env"
        | "volumes"
        | "imagePullSecrets"
        | "resourceClaims" => ListStrategy::MergeByKey("name"),
        "volumeMounts" => ListStrategy::MergeByKey("mountPath"),
        "volumeDevices" => ListStrategy::MergeByKey("devicePath"),
        "conditions" | "addresses" => ListStrategy::MergeByKey("type"),
        "taints" => ListStrategy::MergeByKey("key"),
        "hostAliases" => ListStrategy::MergeByKey("ip"),
        "ownerReferences" => ListStrategy::MergeByKey("uid"),
        "ports" => match sample {
            Some(v) if v.get("containerPort").is_some() => {
                ListStrategy::MergeByKey("containerPort")
            }
            Some(v) if v.get("port").is_some() => ListStrategy::MergeByKey("port"),
            _ => ListStrategy::Replace,
        },
        "finalizers" => ListStrategy::MergePrimitive,
        _ => ListStrategy::Replace,
    }
}

/// Applies a strategic merge patch.
pub fn strategic_merge_patch(target: &Value, patch: &Value) -> Result<Value> {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => {
            let mut out = merge_map(t, p)?;
            // The only built-in kind with a top-level `ports` is EndpointSlice,
            // whose `ports` is an atomic list.
            if let Some(Value::Array(ports)) = p.get("ports") {
                out.insert("ports".to_owned(), Value::Array(strip_list(ports)));
            }
            Ok(Value::Object(out))
        }
        (_, Value::Object(p)) => Ok(Value::Object(merge_map(&Map::new(), p)?)),
        _ => Err(PatchError(
            "a strategic merge patch must be a JSON object".to_string(),
        )),
    }
}

fn strip_directives(m: &Map<String, Value>) -> Map<String, Value> {
    m.iter()
        .filter(|(k, _)| !k.starts_with('$'))
        .map(|(k, v)| {
            (
                k.clone(),
                match v {
                    Value::Object(o) => Value::Object(strip_directives(o)),
                    other => other.clone(),
                },
            )
        })
        .collect()
}

fn merge_map(
    target: &Map<String, Value>,
    patch: &Map<String, Value>,
) -> Result<Map<String, Value>> {
    match patch.get("$patch").and_then(Value::as_str) {
        Some("replace") => return Ok(strip_directives(patch)),
        Some("delete") => return Ok(Map::new()),
        Some("merge") | None => {}
        Some(other) => return Err(PatchError(format!("unknown $patch directive {other:?}"))),
    }
    let mut out = target.clone();
    for (k, v) in patch {
        if let Some(field) = k.strip_prefix("$deleteFromPrimitiveList/") {
            let remove = v.as_array().cloned().unwrap_or_default();
            if let Some(Value::Array(list)) = out.get_mut(field) {
                list.retain(|x| !remove.contains(x));
            }
            continue;
        }
        if k.starts_with('$') {
            continue;
        }
        match v {
            Value::Null => {
                out.remove(k);
            }
            Value::Object(pm) => {
                let merged = match out.get(k) {
                    Some(Value::Object(tm)) => merge_map(tm, pm)?,
                    _ => merge_map(&Map::new(), pm)?,
                };
                if pm.get("$patch").and_then(Value::as_str) == Some("delete") {
                    out.remove(k);
                } else {
                    out.insert(k.clone(), Value::Object(merged));
                }
            }
            Value::Array(pl) => {
                let current = out
                    .get(k)
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                let sample = pl.iter().chain(current.iter()).find(|x| x.is_object());
                let merged = match list_strategy(k, sample) {
                    ListStrategy::Replace => strip_list(pl),
                    ListStrategy::MergePrimitive => {
                        let mut list = current;
                        for x in pl {
                            if !list.contains(x) {
                                list.push(x.clone());
                            }
                        }
                        list
                    }
                    ListStrategy::MergeByKey(key) => merge_list(&current, pl, key)?,
                };
                out.insert(k.clone(), Value::Array(merged));
            }
            other => {
                out.insert(k.clone(), other.clone());
            }
        }
    }
    if let Some(retain) = patch.get("$retainKeys").and_then(Value::as_array) {
        out.retain(|k, _| retain.iter().any(|r| r.as_str() == Some(k)));
    }
    Ok(out)
}

fn strip_list(list: &[Value]) -> Vec<Value> {
    list.iter()
        .map(|x| match x {
            Value::Object(o) => Value::Object(strip_directives(o)),
            other => other.clone(),
        })
        .collect()
}

fn merge_list(current: &[Value], patch: &[Value], key: &str) -> Result<Vec<Value>> {
    if patch
        .iter()
        .any(|e| e.get("$patch").and_then(Value::as_str) == Some("replace"))
    {
        return Ok(strip_list(
            &patch
                .iter()
                .filter(|e| e.get("$patch").is_none())
                .cloned()
                .collect::<Vec<_>>(),
        ));
    }
    let mut out = current.to_vec();
    for element in patch {
        let Some(pm) = element.as_object() else {
            return Err(PatchError(format!(
                "list merged by {key:?} holds a non-object element {element}"
            )));
        };
        let Some(kv) = pm.get(key) else {
            return Err(PatchError(format!(
                "list element {element} is missing its merge key {key:?}"
            )));
        };
        let pos = out.iter().position(|x| x.get(key) == Some(kv));
        let delete = pm.get("$patch").and_then(Value::as_str) == Some("delete");
        match (pos, delete) {
            (Some(i), true) => {
                out.remove(i);
            }
            (None, true) => {}
            (Some(i), false) => {
                let merged = match &out[i] {
                    Value::Object(tm) => merge_map(tm, pm)?,
                    _ => strip_directives(pm),
                };
                out[i] = Value::Object(merged);
            }
            (None, false) => out.push(Value::Object(strip_directives(pm))),
        }
    }
    Ok(out)
}

/// A field path into an object, as server-side apply tracks ownership.
pub(crate) type FieldPath = Vec<String>;

/// The leaf field paths of an applied configuration. Maps are walked; lists and scalars
/// are leaves (lists are owned whole). Identity fields are not owned.
pub(crate) fn leaf_paths(config: &Value) -> Vec<FieldPath> {
    fn walk(v: &Value, prefix: &mut FieldPath, out: &mut Vec<FieldPath>) {
        match v {
            Value::Object(m) if !m.is_empty() => {
                for (k, child) in m {
                    prefix.push(k.clone());
                    walk(child, prefix, out);
                    prefix.pop();
                }
            }
            _ => out.push(prefix.clone()),
        }
    }
    let mut out = Vec::new();
    walk(config, &mut Vec::new(), &mut out);
    out.retain(|p| {
        let p: Vec<&str> = p.iter().map(String::as_str).collect();
        !matches!(
            p.as_slice(),
            ["apiVersion"]
                | ["kind"]
                | ["metadata", "name"]
                | ["metadata", "namespace"]
                | ["metadata", "resourceVersion"]
                | ["metadata", "uid"]
                | ["metadata", "managedFields", ..]
                | ["metadata", "creationTimestamp"]
                | ["metadata", "generation"]
        )
    });
    out
}

/// The value at `path`, if present.
pub(crate) fn value_at<'a>(obj: &'a Value, path: &[String]) -> Option<&'a Value> {
    let mut cur = obj;
    for seg in path {
        cur = cur.get(seg)?;
    }
    Some(cur)
}

/// Removes the value at `path`, then any maps it leaves empty.
pub(crate) fn remove_path(obj: &mut Value, path: &[String]) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    fn go(cur: &mut Value, parents: &[String], last: &str) {
        match parents.split_first() {
            None => {
                if let Value::Object(m) = cur {
                    m.remove(last);
                }
            }
            Some((head, rest)) => {
                if let Some(child) = cur.get_mut(head) {
                    go(child, rest, last);
                    if child.as_object().is_some_and(Map::is_empty)
                        && let Value::Object(m) = cur
                    {
                        m.remove(head);
                    }
                }
            }
        }
    }
    go(obj, parents, last);
}

/// Encodes paths as a `fieldsV1` tree (`{"f:spec":{"f:replicas":{}}}`).
pub(crate) fn to_fields_v1(paths: &[FieldPath]) -> Value {
    let mut root = Map::new();
    for p in paths {
        let mut cur = &mut root;
        for seg in p {
            let entry = cur
                .entry(format!("f:{seg}"))
                .or_insert_with(|| Value::Object(Map::new()));
            let Value::Object(next) = entry else { break };
            cur = next;
        }
    }
    Value::Object(root)
}

/// Decodes a `fieldsV1` tree back into leaf paths (`k:`/`v:`/`i:` entries end a path).
pub(crate) fn from_fields_v1(fields: &Value) -> Vec<FieldPath> {
    fn walk(v: &Value, prefix: &mut FieldPath, out: &mut Vec<FieldPath>) {
        let children: Vec<(&String, &Value)> = v
            .as_object()
            .map(|m| m.iter().filter(|(k, _)| k.starts_with("f:")).collect())
            .unwrap_or_default();
        let has_other = v
            .as_object()
            .is_some_and(|m| m.keys().any(|k| !k.starts_with("f:") && k != "."));
        if children.is_empty() || has_other {
            if !prefix.is_empty() {
                out.push(prefix.clone());
            }
            if has_other {
                return;
            }
        }
        for (k, child) in children {
            prefix.push(k[2..].to_string());
            walk(child, prefix, out);
            prefix.pop();
        }
    }
    let mut out = Vec::new();
    walk(fields, &mut Vec::new(), &mut out);
    out
}

/// Whether two paths overlap (one is a prefix of the other).
pub(crate) fn overlaps(a: &[String], b: &[String]) -> bool {
    let n = a.len().min(b.len());
    a[..n] == b[..n]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_patch_removes_nulls_and_merges_maps() {
        let t = json!({"a": {"b": 1, "c": 2}, "l": [1, 2]});
        let p = json!({"a": {"b": null, "d": 3}, "l": [3]});
        assert_eq!(
            merge_patch(&t, &p),
            json!({"a": {"c": 2, "d": 3}, "l": [3]})
        );
    }

    #[test]
    fn json_patch_operations() {
        let t = json!({"a": [1, 2], "b": {"c": "x"}});
        let p = json!([
            {"op": "add", "path": "/a/-", "value": 3},
            {"op": "replace", "path": "/b/c", "value": "y"},
            {"op": "copy", "from": "/b/c", "path": "/d"},
            {"op": "move", "from": "/d", "path": "/e"},
            {"op": "remove", "path": "/a/0"},
            {"op": "test", "path": "/e", "value": "y"}
        ]);
        assert_eq!(
            json_patch(&t, &p).unwrap(),
            json!({"a": [2, 3], "b": {"c": "y"}, "e": "y"})
        );
        assert!(json_patch(&t, &json!([{"op": "remove", "path": "/nope"}])).is_err());
        assert!(json_patch(&t, &json!([{"op": "test", "path": "/b/c", "value": "z"}])).is_err());
        assert!(
            json_patch(
                &t,
                &json!([{"op": "test", "path": "/b/missing", "value": null}])
            )
            .is_ok()
        );
        assert!(json_patch(&t, &json!({"op": "add"})).is_err());
    }

    #[test]
    fn strategic_merge_by_key_and_directives() {
        let t = json!({"spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}],
            "ports": [{"port": 80, "name": "http"}]}, "metadata": {"finalizers": ["x"]}});
        let p = json!({"spec": {"containers": [{"name": "b", "image": "b:2"}, {"name": "c", "image": "c:1"},
            {"name": "a", "$patch": "delete"}], "ports": [{"port": 443, "name": "https"}],
            "$setElementOrder/containers": [{"name": "b"}, {"name": "c"}]},
            "metadata": {"finalizers": ["y"]}});
        let out = strategic_merge_patch(&t, &p).unwrap();
        assert_eq!(
            out["spec"]["containers"],
            json!([{"name": "b", "image": "b:2"}, {"name": "c", "image": "c:1"}])
        );
        assert_eq!(
            out["spec"]["ports"],
            json!([{"port": 80, "name": "http"}, {"port": 443, "name": "https"}])
        );
        assert_eq!(out["metadata"]["finalizers"], json!(["x", "y"]));
        let p = json!({"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}});
        assert_eq!(
            strategic_merge_patch(&t, &p).unwrap()["metadata"]["finalizers"],
            json!([])
        );
        let p = json!({"spec": {"$patch": "replace", "ports": []}});
        assert_eq!(
            strategic_merge_patch(&t, &p).unwrap()["spec"],
            json!({"ports": []})
        );
    }

    #[test]
    fn endpoint_slice_ports_are_replaced_whole() {
        let t = json!({"addressType": "IPv4", "ports": [{"port": 8080, "protocol": "TCP"}],
            "endpoints": [{"addresses": ["10.0.0.1"]}]});
        let p = json!({"ports": [{"port": 9090, "protocol": "TCP"}]});
        let out = strategic_merge_patch(&t, &p).unwrap();
        assert_eq!(out["ports"], json!([{"port": 9090, "protocol": "TCP"}]));
        assert_eq!(out["endpoints"], t["endpoints"]);
        // A Service's ports still merge by port.
        let t = json!({"spec": {"ports": [{"port": 80}]}});
        let p = json!({"spec": {"ports": [{"port": 443}]}});
        let out = strategic_merge_patch(&t, &p).unwrap();
        assert_eq!(out["spec"]["ports"], json!([{"port": 80}, {"port": 443}]));
    }

    #[test]
    fn fields_v1_round_trip() {
        let paths = leaf_paths(
            &json!({"apiVersion": "v1", "metadata": {"name": "x", "labels": {"a": "b"}},
            "spec": {"replicas": 2, "ports": [1]}}),
        );
        assert_eq!(paths.len(), 3);
        let mut back = from_fields_v1(&to_fields_v1(&paths));
        back.sort();
        let mut paths = paths;
        paths.sort();
        assert_eq!(back, paths);
    }
}
