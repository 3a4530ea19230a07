//! Label selectors (equality- and set-based) and field selectors, as query strings parse them.

use serde_json::Value;

use crate::status::{ApiError, ApiResult};
use crate::validate;

/// One requirement of a label selector.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed label selector: every requirement must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct LabelSelector(Vec<Requirement>);

impl LabelSelector {
    /// Parses the `labelSelector` query parameter.
    pub(crate) fn parse(input: &str) -> ApiResult<Self> {
        let mut reqs = Vec::new();
        for part in split_top_level(input) {
            let part = part.trim();
            if part.is_empty() {
                continue;
            }
            reqs.push(parse_requirement(part).map_err(|why| {
                ApiError::bad_request(format!(
                    "unable to parse requirement: {why} (in label selector {input:?})"
                ))
            })?);
        }
        Ok(Self(reqs))
    }

    /// Reads a `metav1.LabelSelector` object (`matchLabels` and `matchExpressions`), as
    /// workload specs and Services carry them; a Service's plain map is `matchLabels`.
    /// The error names the offending field below `path`.
    pub(crate) fn from_object(selector: &Value, path: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        let labels = selector.get("matchLabels").unwrap_or(&Value::Null);
        for (k, v) in labels.as_object().into_iter().flatten() {
            let value = v.as_str().unwrap_or_default();
            let key =
                check_key(k).map_err(|e| format!("{path}.matchLabels: Invalid value: {e}"))?;
            let value = check_value(value)
                .map_err(|e| format!("{path}.matchLabels: Invalid value: {e}"))?;
            reqs.push(Requirement::Equals(key, value));
        }
        let expressions = selector.get("matchExpressions").unwrap_or(&Value::Null);
        for (i, e) in expressions.as_array().into_iter().flatten().enumerate() {
            let at = format!("{path}.matchExpressions[{i}]");
            let key = check_key(e["key"].as_str().unwrap_or_default())
                .map_err(|why| format!("{at}.key: Invalid value: {why}"))?;
            let values: Vec<String> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| check_value(v.as_str().unwrap_or_default()))
                .collect::<Result<_, _>>()
                .map_err(|why| format!("{at}.values: Invalid value: {why}"))?;
            let op = e["operator"].as_str().unwrap_or_default();
            if !matches!(op, "In" | "NotIn" | "Exists" | "DoesNotExist") {
                return Err(format!(
                    "{at}.operator: Invalid value: {op:?}: not a valid selector operator"
                ));
            }
            let needs_values = matches!(op, "In" | "NotIn");
            if needs_values == values.is_empty() {
                return Err(if needs_values {
                    format!(
                        "{at}.values: Required value: must be specified when `operator` is 'In' or 'NotIn'"
                    )
                } else {
                    format!(
                        "{at}.values: Forbidden: may not be specified when `operator` is 'Exists' or 'DoesNotExist'"
                    )
                });
            }
            reqs.push(match op {
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                _ => Requirement::NotExists(key),
            });
        }
        Ok(Self(reqs))
    }

    /// Whether the selector has no requirement (and so selects everything).
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `labels` (an object's `metadata.labels`) satisfy the selector.
    pub(crate) fn matches(&self, labels: &Value) -> bool {
        let get = |k: &str| labels.get(k).and_then(Value::as_str);
        self.0.iter().all(|r| match r {
            Requirement::Equals(k, v) => get(k) == Some(v.as_str()),
            Requirement::NotEquals(k, v) => get(k) != Some(v.as_str()),
            Requirement::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            Requirement::NotIn(k, vs) => get(k).is_none_or(|x| !vs.iter().any(|v| v == x)),
            Requirement::Exists(k) => get(k).is_some(),
            Requirement::NotExists(k) => get(k).is_none(),
        })
    }
}

/// Splits on commas that are not inside parentheses.
fn split_top_level(input: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in input.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&input[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&input[start..]);
    parts
}

fn check_key(key: &str) -> Result<String, String> {
    validate::label_key(key).map_err(|why| format!("invalid label key {key:?}: {why}"))?;
    Ok(key.to_string())
}

fn check_value(value: &str) -> Result<String, String> {
    validate::label_value(value).map_err(|why| format!("invalid label value {value:?}: {why}"))?;
    Ok(value.to_string())
}

fn parse_set(rest: &str) -> Result<Vec<String>, String> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("expected a parenthesised set of values, found {rest:?}"))?;
    if inner.trim().is_empty() {
        return Err("a set needs at least one value".to_string());
    }
    let values: Vec<String> = inner
        .split(',')
        .map(|v| check_value(v.trim()))
        .collect::<Result<_, _>>()?;
    if values.is_empty() {
        return Err("a set needs at least one value".to_string());
    }
    Ok(values)
}

fn parse_requirement(part: &str) -> Result<Requirement, String> {
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::NotExists(check_key(key.trim())?));
    }
    if let Some((k, v)) = part.split_once("!=") {
        return Ok(Requirement::NotEquals(
            check_key(k.trim())?,
            check_value(v.trim())?,
        ));
    }
    if let Some((k, v)) = part.split_once("==") {
        return Ok(Requirement::Equals(
            check_key(k.trim())?,
            check_value(v.trim())?,
        ));
    }
    if let Some((k, v)) = part.split_once('=') {
        return Ok(Requirement::Equals(
            check_key(k.trim())?,
            check_value(v.trim())?,
        ));
    }
    let mut words = part.splitn(2, char::is_whitespace);
    let key = words.next().unwrap_or_default().trim();
    let rest = words.next().unwrap_or_default().trim();
    if rest.is_empty() {
        return Ok(Requirement::Exists(check_key(key)?));
    }
    if let Some(set) = rest.strip_prefix("notin") {
        return Ok(Requirement::NotIn(check_key(key)?, parse_set(set)?));
    }
    if let Some(set) = rest.strip_prefix("in") {
        return Ok(Requirement::In(check_key(key)?, parse_set(set)?));
    }
    Err(format!("unknown operator in {part:?}"))
}

/// A parsed field selector: `field=value`, `field==value`, `field!=value`, comma-separated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldSelector(Vec<(String, bool, String)>);

impl FieldSelector {
    /// Parses the `fieldSelector` query parameter; `supported` says which fields exist.
    pub(crate) fn parse(
        input: &str,
        supported: impl Fn(&str) -> bool,
        kind: &str,
    ) -> ApiResult<Self> {
        let mut reqs = Vec::new();
        for part in input.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = part.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = part.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = part.split_once('=') {
                (f, true, v)
            } else {
                return Err(ApiError::bad_request(format!(
                    "invalid selector: '{input}'; can't understand '{part}'"
                )));
            };
            let field = field.trim();
            if !supported(field) {
                return Err(ApiError::bad_request(format!(
                    "field label not supported: {field} (for kind {kind})"
                )));
            }
            reqs.push((field.to_string(), equal, value.trim().to_string()));
        }
        Ok(Self(reqs))
    }

    /// Whether `object` satisfies the selector. A missing field compares as `""`.
    pub(crate) fn matches(&self, object: &Value) -> bool {
        self.0.iter().all(|(field, equal, value)| {
            let mut cur = object;
            for seg in field.split('.') {
                cur = cur.get(seg).unwrap_or(&Value::Null);
            }
            let actual = match cur {
                Value::String(s) => s.clone(),
                Value::Null => String::new(),
                Value::Object(o) if field == "source" => o
                    .get("component")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string(),
                other => other.to_string(),
            };
            (actual == *value) == *equal
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn equality_and_set_based_requirements() {
        let labels = json!({"app": "web", "tier": "front"});
        let ok = |s: &str| LabelSelector::parse(s).unwrap().matches(&labels);
        assert!(ok("app=web"));
        assert!(ok("app==web,tier"));
        assert!(ok("app in (web, api),!missing"));
        assert!(ok("tier notin (back)"));
        assert!(!ok("app!=web"));
        assert!(!ok("app in (api)"));
        assert!(!ok("!tier"));
        assert!(ok(""));
    }

    #[test]
    fn label_selector_objects() {
        let sel = LabelSelector::from_object(
            &json!({"matchLabels": {"app": "web"}, "matchExpressions": [
                {"key": "tier", "operator": "In", "values": ["front", "back"]},
                {"key": "canary", "operator": "DoesNotExist"},
            ]}),
            "spec.selector",
        )
        .unwrap();
        assert!(sel.matches(&json!({"app": "web", "tier": "front"})));
        assert!(!sel.matches(&json!({"app": "web", "tier": "front", "canary": "1"})));
        assert!(!sel.matches(&json!({"app": "web"})));
        assert!(
            LabelSelector::from_object(&json!({}), "s")
                .unwrap()
                .is_empty()
        );
        let err = LabelSelector::from_object(
            &json!({"matchExpressions": [{"key": "a", "operator": "Near", "values": ["b"]}]}),
            "spec.selector",
        )
        .unwrap_err();
        assert!(
            err.starts_with("spec.selector.matchExpressions[0].operator"),
            "{err}"
        );
        let err = LabelSelector::from_object(
            &json!({"matchExpressions": [{"key": "a", "operator": "In"}]}),
            "spec.selector",
        )
        .unwrap_err();
        assert!(err.contains("Required value"), "{err}");
    }

    #[test]
    fn bad_label_selectors_are_rejected() {
        for bad in [
            "app in web",
            "a=b=c!",
            "app notin ()",
            "-bad-=x",
            "app in (a b)",
        ] {
            assert!(LabelSelector::parse(bad).is_err(), "{bad} parsed");
        }
    }

    #[test]
    fn field_selectors_compare_strings() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"nodeName": "n1"}});
        let sel =
            FieldSelector::parse("spec.nodeName=n1,metadata.name!=q", |_| true, "Pod").unwrap();
        assert!(sel.matches(&pod));
        let sel = FieldSelector::parse("spec.nodeName=", |_| true, "Pod").unwrap();
        assert!(!sel.matches(&pod));
        assert!(FieldSelector::parse("spec.bogus=1", |f| f == "metadata.name", "Pod").is_err());
        assert!(FieldSelector::parse("nonsense", |_| true, "Pod").is_err());
    }
}
