//! `core/v1` Events, as the cluster's components write them (`kubectl describe` shows
//! them): a repeated event bumps the count of the first one.

use std::collections::HashMap;

use serde_json::{Value, json};

use super::objects::{self, Writer, meta};
use crate::store::State;

/// Records the events of one component.
pub(crate) struct Recorder {
    writer: Writer,
    /// (involved uid, reason, message) → the event's `(namespace, name)`.
    seen: HashMap<(String, String, String), (String, String)>,
}

/// Normal or Warning.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Severity {
    Normal,
    Warning,
}

impl Recorder {
    /// A recorder writing as `component`.
    pub(crate) fn new(component: &'static str) -> Self {
        Self {
            writer: Writer { manager: component },
            seen: HashMap::new(),
        }
    }

    /// Records `reason: message` about `involved` (of `api_version`/`kind`).
    pub(crate) fn record(
        &mut self,
        state: &mut State,
        involved: &Value,
        (api_version, kind): (&str, &str),
        severity: Severity,
        reason: &str,
        message: String,
    ) {
        let Some(rt) = state.find_type("", "v1", "events") else {
            return;
        };
        let uid = meta(involved, "uid").to_string();
        let ns = match meta(involved, "namespace") {
            "" => "default".to_string(),
            ns => ns.to_string(),
        };
        let now = objects::now();
        let seen_key = (uid.clone(), reason.to_string(), message.clone());
        if let Some((ev_ns, ev_name)) = self.seen.get(&seen_key)
            && let Some(old) = objects::get(state, &rt, ev_ns, ev_name)
        {
            let mut ev = old.value.clone();
            ev["count"] = json!(ev["count"].as_i64().unwrap_or(1) + 1);
            ev["lastTimestamp"] = json!(now);
            let _ = self.writer.update(state, &rt, ev);
            return;
        }
        if self.seen.len() > 10_000 {
            self.seen.clear();
        }
        let nanos = jiff::Timestamp::now().as_nanosecond();
        let name = format!("{}.{:x}", meta(involved, "name"), nanos);
        let component = self.writer.manager;
        let ev = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": name, "namespace": ns},
            "involvedObject": {
                "apiVersion": api_version,
                "kind": kind,
                "name": meta(involved, "name"),
                "namespace": meta(involved, "namespace"),
                "uid": uid,
                "resourceVersion": meta(involved, "resourceVersion"),
            },
            "reason": reason,
            "message": message,
            "type": match severity { Severity::Normal => "Normal", Severity::Warning => "Warning" },
            "source": {"component": component},
            "reportingComponent": component,
            "reportingInstance": "",
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        });
        if self.writer.create(state, &rt, &ns, ev).is_ok() {
            self.seen.insert(seen_key, (ns, name));
        }
    }
}
