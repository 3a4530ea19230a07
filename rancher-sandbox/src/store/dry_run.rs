//! `dryRun=All`: a write run against a copy of the state, so it is validated,
//! defaulted and allocated exactly as the real write would be, and then dropped:
//! nothing is stored, no watch sees an event and the resourceVersion does not move.

use std::collections::VecDeque;

use serde_json::Value;
use tokio::sync::broadcast;

use super::State;
use crate::status::{ApiError, ApiResult};

/// Whether a request asks for a dry run: `dryRun=All` in the query, or `"dryRun":
/// ["All"]` in a DELETE's options. Any other value is refused, as kube-apiserver does.
pub(crate) fn requested(query: Option<&str>, options: &Value) -> ApiResult<bool> {
    let mut values: Vec<&str> = query.into_iter().filter(|v| !v.is_empty()).collect();
    if let Some(list) = options["dryRun"].as_array() {
        values.extend(list.iter().filter_map(Value::as_str));
    }
    match values.iter().find(|v| **v != "All") {
        Some(other) => Err(ApiError::bad_request(format!(
            "dryRun: Unsupported value: {other:?}: supported values: \"All\""
        ))),
        None => Ok(!values.is_empty()),
    }
}

impl State {
    /// A copy of the state for one dry-run write: the same objects (shared, they are
    /// immutable), types and allocations, with no history and a change channel nobody
    /// listens to.
    pub(crate) fn dry_run_copy(&self) -> Self {
        let (events, _) = broadcast::channel(1);
        Self {
            rv: self.rv,
            registry: self.registry.clone(),
            tables: self.tables.clone(),
            history: VecDeque::new(),
            history_limit: 1,
            compacted: self.rv,
            alloc: self.alloc.clone(),
            events,
            garbage_collector: self.garbage_collector,
        }
    }
}

/// The object a dry-run write answers with: what would be stored, with the
/// resourceVersion it has now (`previous`'s), or none for an object that does not exist.
pub(crate) fn answer(previous: Option<&Value>, result: &Value) -> Value {
    let mut value = result.clone();
    if let Some(meta) = value["metadata"].as_object_mut() {
        match previous.and_then(|p| p["metadata"].get("resourceVersion")) {
            Some(rv) => meta.insert("resourceVersion".to_string(), rv.clone()),
            None => meta.remove("resourceVersion"),
        };
    }
    value
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn only_all_is_a_dry_run_value() {
        assert!(!requested(None, &Value::Null).unwrap());
        assert!(!requested(Some(""), &Value::Null).unwrap());
        assert!(requested(Some("All"), &Value::Null).unwrap());
        assert!(requested(None, &json!({"dryRun": ["All"]})).unwrap());
        let err = requested(Some("Some"), &Value::Null).unwrap_err();
        assert!(
            err.to_string().contains("Unsupported value: \"Some\""),
            "{err}"
        );
        assert!(requested(None, &json!({"dryRun": ["x"]})).is_err());
    }

    #[test]
    fn the_answer_keeps_the_current_resource_version() {
        let previous = json!({"metadata": {"name": "a", "resourceVersion": "7"}});
        let written = json!({"metadata": {"name": "a", "resourceVersion": "8"}});
        let answer_update = answer(Some(&previous), &written);
        assert_eq!(answer_update["metadata"]["resourceVersion"], "7");
        let answer_create = answer(None, &written);
        assert!(answer_create["metadata"].get("resourceVersion").is_none());
    }
}
