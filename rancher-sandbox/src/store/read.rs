//! Reads: paged lists with continue tokens, selector matching, and the events a watch
//! starts with.

use base64::Engine as _;
use serde_json::{Value, json};

use super::{EventType, ListOptions, ListPage, Replayed, State, Table, WatchFrom};
use crate::convert;
use crate::resource::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{ApiError, ApiResult};

/// The continue token: where the next page starts and the list's resourceVersion.
fn encode_continue(rv: u64, key: &(String, String)) -> String {
    let raw = json!({"rv": rv, "ns": key.0, "name": key.1}).to_string();
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
}

fn decode_continue(token: &str) -> ApiResult<(u64, (String, String))> {
    let bad = || ApiError::bad_request(format!("continue key is not valid: {token:?}"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token)
        .map_err(|_| bad())?;
    let v: Value = serde_json::from_slice(&raw).map_err(|_| bad())?;
    let rv = v["rv"].as_u64().ok_or_else(bad)?;
    let ns = v["ns"].as_str().ok_or_else(bad)?.to_string();
    let name = v["name"].as_str().ok_or_else(bad)?.to_string();
    Ok((rv, (ns, name)))
}

impl State {
    /// Whether an object matches the selectors, as `rt` serves it.
    pub(crate) fn matches(
        rt: &ResourceType,
        obj: &Value,
        labels: &LabelSelector,
        fields: &FieldSelector,
    ) -> bool {
        if !labels.matches(&obj["metadata"]["labels"]) {
            return false;
        }
        if fields == &FieldSelector::default() {
            return true;
        }
        fields.matches(&convert::present(rt, obj))
    }

    /// Lists objects of `rt` in `ns` (all namespaces when `None`).
    pub(crate) fn list(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        opts: &ListOptions,
    ) -> ApiResult<ListPage> {
        let (rv, start) = match opts.continue_token.as_deref().filter(|t| !t.is_empty()) {
            Some(t) => {
                let (rv, key) = decode_continue(t)?;
                (rv, Some(key))
            }
            None => (self.rv, None),
        };
        let empty = Table::new();
        let table = self.table(&rt.storage).unwrap_or(&empty);
        let lower = match (&start, ns) {
            (Some(k), _) => std::ops::Bound::Excluded(k.clone()),
            (None, Some(ns)) => std::ops::Bound::Included((ns.to_string(), String::new())),
            (None, None) => std::ops::Bound::Unbounded,
        };
        let limit = opts.limit.filter(|l| *l > 0);
        let selected =
            opts.labels != LabelSelector::default() || opts.fields != FieldSelector::default();
        let mut items = Vec::new();
        let mut continue_token = None;
        let mut remaining = None;
        let in_ns = |((k_ns, _), _): &(&(String, String), _)| ns.is_none_or(|n| n == k_ns);
        let mut iter = table
            .range((lower, std::ops::Bound::Unbounded))
            .take_while(in_ns)
            .filter(|(_, obj)| !selected || Self::matches(rt, obj, &opts.labels, &opts.fields));
        let mut last = None;
        for (key, obj) in iter.by_ref() {
            items.push(obj.clone());
            if limit.is_some_and(|l| items.len() >= l) {
                last = Some(key);
                break;
            }
        }
        if let Some(key) = last {
            // As kube-apiserver: the count of what is left only for a list
            // without selectors, where every key left is an item, so it is
            // counted from the keys without reading an object; with
            // selectors only whether anything is left.
            let more = if selected {
                iter.next().is_some()
            } else {
                let after = (
                    std::ops::Bound::Excluded(key.clone()),
                    std::ops::Bound::Unbounded,
                );
                let rest = table.range(after).take_while(in_ns).count();
                remaining = (rest > 0).then_some(rest);
                rest > 0
            };
            if more {
                continue_token = Some(encode_continue(rv, key));
            }
        }
        Ok(ListPage {
            items,
            resource_version: rv,
            continue_token,
            remaining,
        })
    }

    /// Starts a watch: the events to send first, and whether the requested version expired.
    pub(crate) fn watch_backlog(
        &self,
        rt: &ResourceType,
        ns: Option<&str>,
        from: WatchFrom,
    ) -> ApiResult<Vec<Replayed>> {
        match from {
            WatchFrom::Current => {
                let empty = Table::new();
                let table = self.table(&rt.storage).unwrap_or(&empty);
                Ok(table
                    .iter()
                    .filter(|((k_ns, _), _)| ns.is_none_or(|n| n == k_ns))
                    .map(|(_, o)| (EventType::Added, o.clone(), None))
                    .collect())
            }
            WatchFrom::Version(v) => {
                if v < self.compacted {
                    return Err(ApiError::expired(format!(
                        "too old resource version: {v} ({})",
                        self.compacted + 1
                    )));
                }
                let start = self.history.partition_point(|c| c.rv <= v);
                Ok(self
                    .history
                    .range(start..)
                    .filter(|c| c.storage == rt.storage && ns.is_none_or(|n| n == c.namespace))
                    .map(|c| (c.kind, c.object.clone(), c.previous.clone()))
                    .collect())
            }
        }
    }
}
