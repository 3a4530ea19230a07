//! Conversion between stored and served forms (`apiVersion` rewriting and
//! `events.k8s.io/v1` ⇄ `core/v1` Events).

use std::borrow::Cow;

use serde_json::{Map, Value, json};

use crate::resource::{Conversion, ResourceType};

/// Field renames between `events.k8s.io/v1` (left) and `core/v1` (right) Events.
const EVENT_FIELDS: &[(&str, &str)] = &[
    ("regarding", "involvedObject"),
    ("note", "message"),
    ("reportingController", "reportingComponent"),
    ("deprecatedSource", "source"),
    ("deprecatedFirstTimestamp", "firstTimestamp"),
    ("deprecatedLastTimestamp", "lastTimestamp"),
    ("deprecatedCount", "count"),
];

fn rename(obj: &Value, pairs: impl Iterator<Item = (&'static str, &'static str)>) -> Value {
    let Some(map) = obj.as_object() else {
        return obj.clone();
    };
    let pairs: Vec<(&str, &str)> = pairs.collect();
    let mut out = Map::new();
    for (k, v) in map {
        let key = pairs
            .iter()
            .find(|(from, _)| from == k)
            .map_or(k.as_str(), |(_, to)| to);
        out.insert(key.to_string(), v.clone());
    }
    Value::Object(out)
}

/// Whether `rt` serves `stored` byte for byte (so its cached encoding can be sent).
pub(crate) fn served_as_stored(rt: &ResourceType, stored: &Value) -> bool {
    rt.conversion == Conversion::None
        && stored["apiVersion"].as_str().is_some_and(|av| {
            if rt.group.is_empty() {
                av == rt.version
            } else {
                av.len() == rt.group.len() + 1 + rt.version.len()
                    && av.starts_with(rt.group.as_str())
                    && av.ends_with(rt.version.as_str())
            }
        })
}

/// The object as `rt` serves it.
pub(crate) fn present<'a>(rt: &ResourceType, stored: &'a Value) -> Cow<'a, Value> {
    let api_version = rt.api_version();
    match rt.conversion {
        Conversion::None => {
            if stored["apiVersion"].as_str() == Some(api_version.as_str()) {
                Cow::Borrowed(stored)
            } else {
                let mut v = stored.clone();
                v["apiVersion"] = json!(api_version);
                Cow::Owned(v)
            }
        }
        Conversion::EventsV1 => {
            let mut v = rename(stored, EVENT_FIELDS.iter().map(|(a, b)| (*b, *a)));
            if let Some(series_count) = stored["series"]["count"].as_i64() {
                v["series"]["count"] = json!(series_count);
            }
            v["apiVersion"] = json!(api_version);
            Cow::Owned(v)
        }
    }
}

/// The object as storage keeps it, from what a client sent to `rt`.
pub(crate) fn to_storage(rt: &ResourceType, served: Value) -> Value {
    match rt.conversion {
        Conversion::None => {
            let mut v = served;
            if v.is_object() {
                v["apiVersion"] = json!(rt.api_version());
                v["kind"] = json!(rt.kind);
            }
            v
        }
        Conversion::EventsV1 => {
            let mut v = rename(&served, EVENT_FIELDS.iter().copied());
            if v.is_object() {
                v["apiVersion"] = json!("v1");
                v["kind"] = json!("Event");
            }
            v
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resource::Registry;

    #[test]
    fn events_round_trip_between_groups() {
        let reg = Registry::built_in();
        let v1 = reg.find("events.k8s.io", "v1", "events").unwrap();
        let sent = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "e"},
            "regarding": {"kind": "Pod", "name": "p"}, "note": "hello", "reason": "Started"});
        let stored = to_storage(&v1, sent.clone());
        assert_eq!(stored["involvedObject"]["name"], "p");
        assert_eq!(stored["message"], "hello");
        assert_eq!(stored["apiVersion"], "v1");
        assert_eq!(present(&v1, &stored).into_owned(), sent);
    }
}
