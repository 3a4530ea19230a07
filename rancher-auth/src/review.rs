//! The wire formats kube-apiserver speaks to webhooks: TokenReview
//! (`authentication.k8s.io/v1` and `v1beta1`) and SubjectAccessReview
//! (`authorization.k8s.io/v1` and `v1beta1`).
//!
//! Parsing is strict where a mistake could change a decision: the `apiVersion` must be one of
//! the two known ones and match the `kind`, a SubjectAccessReview names exactly one of
//! `resourceAttributes` and `nonResourceAttributes`, and the groups field must be the one of
//! its version (`groups` in v1, `group` in v1beta1). Fields added by newer Kubernetes
//! versions (`fieldSelector`, `labelSelector`) are accepted and not used. Answers echo the
//! request's `apiVersion`, which kube-apiserver requires.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::authn::Authentication;
use crate::authz::{
    Attributes, Decision, NonResourceAttributes, Request, ResourceAttributes, Verdict,
};
use crate::identity::{Token, UserInfo};

/// `authentication.k8s.io/v1`.
pub const AUTHENTICATION_V1: &str = "authentication.k8s.io/v1";
/// `authentication.k8s.io/v1beta1`, still the default of kube-apiserver's
/// `--authentication-token-webhook-version`.
pub const AUTHENTICATION_V1BETA1: &str = "authentication.k8s.io/v1beta1";
/// `authorization.k8s.io/v1`.
pub const AUTHORIZATION_V1: &str = "authorization.k8s.io/v1";
/// `authorization.k8s.io/v1beta1`.
pub const AUTHORIZATION_V1BETA1: &str = "authorization.k8s.io/v1beta1";

/// A review that cannot be read; the webhook answers 400 with the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ReviewError(pub String);

/// Which version of a review API.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Version {
    /// `v1`.
    V1,
    /// `v1beta1`.
    V1beta1,
}

impl Version {
    /// `v1` or `v1beta1`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V1beta1 => "v1beta1",
        }
    }
}

#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "apiVersion", default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    spec: Option<Value>,
}

fn envelope(body: &[u8], kind: &str, group: &str) -> Result<(Version, Value), ReviewError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ReviewError(format!("the body is not a {kind} in JSON: {e}")))?;
    if !value.is_object() {
        return Err(ReviewError(format!(
            "the body is not a {kind} in JSON: not an object"
        )));
    }
    let envelope: Envelope = serde_json::from_value(value)
        .map_err(|e| ReviewError(format!("the body is not a {kind} in JSON: {e}")))?;
    let version = match envelope.api_version.as_deref() {
        Some(v) if v == format!("{group}/v1") => Version::V1,
        Some(v) if v == format!("{group}/v1beta1") => Version::V1beta1,
        Some(other) => {
            return Err(ReviewError(format!(
                "apiVersion {other:?} is not supported (use {group}/v1 or {group}/v1beta1)"
            )));
        }
        None => return Err(ReviewError("apiVersion is required".into())),
    };
    match envelope.kind.as_deref() {
        Some(k) if k == kind => {}
        Some(other) => return Err(ReviewError(format!("kind {other:?} is not {kind}"))),
        None => return Err(ReviewError("kind is required".into())),
    }
    let spec = envelope
        .spec
        .filter(Value::is_object)
        .ok_or_else(|| ReviewError("spec is required and must be an object".into()))?;
    Ok((version, spec))
}

/// A TokenReview request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct TokenReview {
    /// The version asked in; the answer uses the same.
    pub version: Version,
    /// The token.
    pub token: Token,
    /// The audiences the apiserver wants the token to be valid for (empty: its own).
    pub audiences: Vec<String>,
}

#[derive(Deserialize)]
struct TokenReviewSpec {
    token: Option<String>,
    #[serde(default)]
    audiences: Option<Vec<String>>,
}

/// Reads a TokenReview request body.
pub fn parse_token_review(body: &[u8]) -> Result<TokenReview, ReviewError> {
    let (version, spec) = envelope(body, "TokenReview", "authentication.k8s.io")?;
    let spec: TokenReviewSpec = serde_json::from_value(spec)
        .map_err(|e| ReviewError(format!("spec is not a TokenReviewSpec: {e}")))?;
    let token = spec
        .token
        .ok_or_else(|| ReviewError("spec.token is required".into()))?;
    Ok(TokenReview {
        version,
        token: Token::new(token),
        audiences: spec.audiences.unwrap_or_default(),
    })
}

/// A TokenReview request body, as kube-apiserver sends it.
pub fn token_review_request(version: Version, token: &Token, audiences: &[String]) -> Vec<u8> {
    let mut spec = json!({"token": token.expose()});
    if !audiences.is_empty() {
        spec["audiences"] = json!(audiences);
    }
    let body = json!({
        "apiVersion": format!("authentication.k8s.io/{}", version.as_str()),
        "kind": "TokenReview",
        "metadata": {"creationTimestamp": null},
        "spec": spec,
        "status": {"user": {}},
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The TokenReview answer for `outcome`, in `version`.
///
/// An unauthenticated answer carries no `error`: kube-apiserver would treat one as a failure
/// of the authenticator rather than a definite no.
pub fn token_review_response(version: Version, outcome: &Authentication) -> Vec<u8> {
    let status = match outcome {
        Authentication::Authenticated(user) => json!({"authenticated": true, "user": user}),
        Authentication::Unauthenticated { .. } => json!({"authenticated": false}),
    };
    let body = json!({
        "apiVersion": format!("authentication.k8s.io/{}", version.as_str()),
        "kind": "TokenReview",
        "status": status,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The status of a TokenReview answer, read back (for clients of a webhook).
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[non_exhaustive]
pub struct TokenReviewStatus {
    /// Whether the token is valid.
    #[serde(default)]
    pub authenticated: bool,
    /// The user, when it is.
    #[serde(default)]
    pub user: UserInfo,
    /// The audiences the token is valid for.
    #[serde(default)]
    pub audiences: Vec<String>,
    /// An error the webhook reported.
    #[serde(default)]
    pub error: String,
}

/// Reads the status of a TokenReview answer.
pub fn parse_token_review_status(body: &[u8]) -> Result<TokenReviewStatus, ReviewError> {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        status: TokenReviewStatus,
    }
    serde_json::from_slice::<Answer>(body)
        .map(|a| a.status)
        .map_err(|e| ReviewError(format!("the answer is not a TokenReview: {e}")))
}

/// A SubjectAccessReview request.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SubjectAccessReview {
    /// The version asked in; the answer uses the same.
    pub version: Version,
    /// Who asks to do what.
    pub attributes: Attributes,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SarSpec {
    #[serde(default)]
    resource_attributes: Option<WireResource>,
    #[serde(default)]
    non_resource_attributes: Option<WireNonResource>,
    #[serde(default)]
    user: String,
    #[serde(default)]
    groups: Option<Vec<String>>,
    #[serde(default)]
    group: Option<Vec<String>>,
    #[serde(default)]
    extra: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    uid: String,
}

#[derive(Deserialize, Serialize, Default)]
#[serde(rename_all = "camelCase")]
struct WireResource {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    verb: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    group: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    version: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    resource: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    subresource: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    name: String,
}

#[derive(Deserialize, Serialize, Default)]
struct WireNonResource {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    path: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    verb: String,
}

/// Reads a SubjectAccessReview request body.
pub fn parse_subject_access_review(body: &[u8]) -> Result<SubjectAccessReview, ReviewError> {
    let (version, spec) = envelope(body, "SubjectAccessReview", "authorization.k8s.io")?;
    let spec: SarSpec = serde_json::from_value(spec)
        .map_err(|e| ReviewError(format!("spec is not a SubjectAccessReviewSpec: {e}")))?;
    let groups = match (version, spec.groups, spec.group) {
        (Version::V1, groups, None) => groups.unwrap_or_default(),
        (Version::V1beta1, None, group) => group.unwrap_or_default(),
        (Version::V1, _, Some(_)) => {
            return Err(ReviewError(
                "spec.group is the v1beta1 field; authorization.k8s.io/v1 uses spec.groups".into(),
            ));
        }
        (Version::V1beta1, Some(_), _) => {
            return Err(ReviewError(
                "spec.groups is the v1 field; authorization.k8s.io/v1beta1 uses spec.group".into(),
            ));
        }
    };
    if spec.user.is_empty() && groups.is_empty() {
        return Err(ReviewError("spec.user or spec.groups is required".into()));
    }
    let mut user = UserInfo::new(spec.user).with_uid(spec.uid);
    user.groups = groups;
    user.extra = spec.extra;
    let request = match (spec.resource_attributes, spec.non_resource_attributes) {
        (Some(r), None) => Request::Resource(ResourceAttributes {
            namespace: r.namespace,
            verb: r.verb,
            group: r.group,
            version: r.version,
            resource: r.resource,
            subresource: r.subresource,
            name: r.name,
        }),
        (None, Some(n)) => Request::NonResource(NonResourceAttributes::new(n.verb, n.path)),
        (Some(_), Some(_)) => {
            return Err(ReviewError(
                "spec.resourceAttributes and spec.nonResourceAttributes are exclusive".into(),
            ));
        }
        (None, None) => {
            return Err(ReviewError(
                "one of spec.resourceAttributes and spec.nonResourceAttributes is required".into(),
            ));
        }
    };
    Ok(SubjectAccessReview {
        version,
        attributes: Attributes { user, request },
    })
}

/// A SubjectAccessReview request body, as kube-apiserver sends it.
pub fn subject_access_review_request(version: Version, attributes: &Attributes) -> Vec<u8> {
    let user = &attributes.user;
    let mut spec = serde_json::Map::new();
    match &attributes.request {
        Request::Resource(r) => {
            let wire = WireResource {
                namespace: r.namespace.clone(),
                verb: r.verb.clone(),
                group: r.group.clone(),
                version: r.version.clone(),
                resource: r.resource.clone(),
                subresource: r.subresource.clone(),
                name: r.name.clone(),
            };
            spec.insert("resourceAttributes".into(), json!(wire));
        }
        Request::NonResource(n) => {
            let wire = WireNonResource {
                path: n.path.clone(),
                verb: n.verb.clone(),
            };
            spec.insert("nonResourceAttributes".into(), json!(wire));
        }
    }
    spec.insert("user".into(), json!(user.username));
    let groups_key = match version {
        Version::V1 => "groups",
        Version::V1beta1 => "group",
    };
    spec.insert(groups_key.into(), json!(user.groups));
    if !user.extra.is_empty() {
        spec.insert("extra".into(), json!(user.extra));
    }
    if !user.uid.is_empty() {
        spec.insert("uid".into(), json!(user.uid));
    }
    let body = json!({
        "apiVersion": format!("authorization.k8s.io/{}", version.as_str()),
        "kind": "SubjectAccessReview",
        "metadata": {"creationTimestamp": null},
        "spec": spec,
        "status": {"allowed": false},
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The SubjectAccessReview answer for `decision`, in `version`: `allowed` always present,
/// `denied: true` only for a deny, `reason` when there is one.
pub fn subject_access_review_response(version: Version, decision: &Decision) -> Vec<u8> {
    let mut status = json!({"allowed": decision.verdict == Verdict::Allow});
    if decision.verdict == Verdict::Deny {
        status["denied"] = json!(true);
    }
    if !decision.reason.is_empty() {
        status["reason"] = json!(decision.reason);
    }
    let body = json!({
        "apiVersion": format!("authorization.k8s.io/{}", version.as_str()),
        "kind": "SubjectAccessReview",
        "status": status,
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// The status of a SubjectAccessReview answer, read back.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SubjectAccessReviewStatus {
    /// Allowed.
    #[serde(default)]
    pub allowed: bool,
    /// Denied (no other authorizer may allow it).
    #[serde(default)]
    pub denied: bool,
    /// Why.
    #[serde(default)]
    pub reason: String,
    /// An error while deciding.
    #[serde(default)]
    pub evaluation_error: String,
}

impl SubjectAccessReviewStatus {
    /// The decision this status stands for, as kube-apiserver reads it: both `allowed` and
    /// `denied` is a deny.
    pub fn decision(&self) -> Decision {
        let verdict = match (self.allowed, self.denied) {
            (_, true) => Verdict::Deny,
            (true, false) => Verdict::Allow,
            (false, false) => Verdict::NoOpinion,
        };
        Decision {
            verdict,
            reason: self.reason.clone(),
        }
    }
}

/// Reads the status of a SubjectAccessReview answer.
pub fn parse_subject_access_review_status(
    body: &[u8],
) -> Result<SubjectAccessReviewStatus, ReviewError> {
    #[derive(Deserialize)]
    struct Answer {
        #[serde(default)]
        status: SubjectAccessReviewStatus,
    }
    serde_json::from_slice::<Answer>(body)
        .map(|a| a.status)
        .map_err(|e| ReviewError(format!("the answer is not a SubjectAccessReview: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn value(bytes: &[u8]) -> Value {
        serde_json::from_slice(bytes).unwrap()
    }

    #[test]
    fn token_reviews_parse_in_both_versions_and_answers_echo_the_version() {
        // What kube-apiserver sends (its default v1beta1, and v1).
        for (version, api) in [
            (Version::V1beta1, AUTHENTICATION_V1BETA1),
            (Version::V1, AUTHENTICATION_V1),
        ] {
            let body = format!(
                r#"{{"kind":"TokenReview","apiVersion":"{api}","metadata":{{"creationTimestamp":null}},"spec":{{"token":"AK:SK","audiences":["https://kubernetes.default.svc"]}},"status":{{"user":{{}}}}}}"#
            );
            let review = parse_token_review(body.as_bytes()).unwrap();
            assert_eq!(review.version, version);
            assert_eq!(review.token.expose(), "AK:SK");
            assert_eq!(review.audiences, ["https://kubernetes.default.svc"]);
            assert_eq!(
                parse_token_review(&token_review_request(
                    version,
                    &review.token,
                    &review.audiences
                ))
                .unwrap(),
                review
            );

            let user = UserInfo::new("alice")
                .with_uid("1a7")
                .with_group("rancher:environment:1a5:owner");
            let yes = value(&token_review_response(
                version,
                &Authentication::Authenticated(user),
            ));
            assert_eq!(
                yes,
                json!({"apiVersion": api, "kind": "TokenReview", "status": {"authenticated": true,
                    "user": {"username": "alice", "uid": "1a7", "groups": ["rancher:environment:1a5:owner"]}}})
            );
            let no = value(&token_review_response(
                version,
                &Authentication::unauthenticated("unknown"),
            ));
            assert_eq!(
                no,
                json!({"apiVersion": api, "kind": "TokenReview", "status": {"authenticated": false}})
            );
            let status = parse_token_review_status(&token_review_response(
                version,
                &Authentication::unauthenticated("x"),
            ))
            .unwrap();
            assert!(!status.authenticated);
        }
    }

    #[test]
    fn bad_token_reviews_are_refused_with_a_reason() {
        let cases: &[(&str, &str)] = &[
            ("", "not a TokenReview in JSON"),
            ("[]", "not a TokenReview in JSON"),
            ("{", "not a TokenReview in JSON"),
            (
                r#"{"kind":"TokenReview","spec":{"token":"x"}}"#,
                "apiVersion is required",
            ),
            (
                r#"{"apiVersion":"authentication.k8s.io/v2","kind":"TokenReview","spec":{"token":"x"}}"#,
                "is not supported",
            ),
            (
                r#"{"apiVersion":"authorization.k8s.io/v1","kind":"TokenReview","spec":{"token":"x"}}"#,
                "is not supported",
            ),
            (
                r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SubjectAccessReview","spec":{"token":"x"}}"#,
                "is not TokenReview",
            ),
            (
                r#"{"apiVersion":"authentication.k8s.io/v1","spec":{"token":"x"}}"#,
                "kind is required",
            ),
            (
                r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview"}"#,
                "spec is required",
            ),
            (
                r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":"x"}"#,
                "spec is required",
            ),
            (
                r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{}}"#,
                "spec.token is required",
            ),
            (
                r#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":7}}"#,
                "not a TokenReviewSpec",
            ),
            (
                r#"{"apiVersion":1,"kind":"TokenReview","spec":{"token":"x"}}"#,
                "not a TokenReview in JSON",
            ),
        ];
        for (body, expected) in cases {
            let err = parse_token_review(body.as_bytes()).unwrap_err();
            assert!(err.0.contains(expected), "{body}: {err}");
        }
        // An error message never contains the token.
        let err = parse_token_review(br#"{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"SECRET-TOKEN","audiences":"x"}}"#).unwrap_err();
        assert!(!err.0.contains("SECRET-TOKEN"), "{err}");
    }

    #[test]
    fn subject_access_reviews_parse_in_both_versions() {
        let v1 = br#"{"kind":"SubjectAccessReview","apiVersion":"authorization.k8s.io/v1","metadata":{"creationTimestamp":null},
            "spec":{"resourceAttributes":{"namespace":"web","verb":"get","version":"v1","resource":"pods","subresource":"log","name":"p1",
            "fieldSelector":{"rawSelector":"spec.nodeName=n1"}},
            "user":"alice","groups":["rancher:environment:1a5:member","system:authenticated"],
            "extra":{"rancher.io/principal-id":["rancher_id:1a7"]},"uid":"1a7"},"status":{"allowed":false}}"#;
        let review = parse_subject_access_review(v1).unwrap();
        assert_eq!(review.version, Version::V1);
        let a = &review.attributes;
        assert_eq!(a.user.username, "alice");
        assert_eq!(a.user.groups.len(), 2);
        assert_eq!(a.user.extra["rancher.io/principal-id"], ["rancher_id:1a7"]);
        assert_eq!(a.to_string(), "get pods/log \"p1\" in namespace \"web\"");
        assert_eq!(
            parse_subject_access_review(&subject_access_review_request(Version::V1, a)).unwrap(),
            review
        );

        let v1beta1 = br#"{"kind":"SubjectAccessReview","apiVersion":"authorization.k8s.io/v1beta1",
            "spec":{"nonResourceAttributes":{"path":"/healthz","verb":"get"},"user":"bob","group":["g"]}}"#;
        let review = parse_subject_access_review(v1beta1).unwrap();
        assert_eq!(review.version, Version::V1beta1);
        assert_eq!(review.attributes.user.groups, ["g"]);
        assert_eq!(review.attributes.to_string(), "get path \"/healthz\"");
        let again = subject_access_review_request(Version::V1beta1, &review.attributes);
        assert_eq!(parse_subject_access_review(&again).unwrap(), review);
    }

    #[test]
    fn bad_subject_access_reviews_are_refused_with_a_reason() {
        let spec = |s: &str| {
            format!(
                r#"{{"apiVersion":"authorization.k8s.io/v1","kind":"SubjectAccessReview","spec":{s}}}"#
            )
        };
        let cases = [
            (spec(r#"{"user":"a"}"#), "one of spec.resourceAttributes"),
            (spec(r#"{"user":"a","resourceAttributes":{"verb":"get"},"nonResourceAttributes":{"path":"/"}}"#), "exclusive"),
            (spec(r#"{"resourceAttributes":{"verb":"get"}}"#), "spec.user or spec.groups"),
            (spec(r#"{"user":"a","group":["g"],"resourceAttributes":{"verb":"get"}}"#), "v1beta1 field"),
            (spec(r#"{"user":"a","resourceAttributes":{"verb":7}}"#), "not a SubjectAccessReviewSpec"),
            (spec(r#"{"user":"a","groups":"g","resourceAttributes":{}}"#), "not a SubjectAccessReviewSpec"),
            (r#"{"apiVersion":"authorization.k8s.io/v1beta1","kind":"SubjectAccessReview","spec":{"user":"a","groups":["g"],"resourceAttributes":{}}}"#.to_owned(), "v1 field"),
            (r#"{"apiVersion":"authorization.k8s.io/v1","kind":"TokenReview","spec":{"user":"a"}}"#.to_owned(), "is not SubjectAccessReview"),
            (r#"{"apiVersion":"authentication.k8s.io/v1","kind":"SubjectAccessReview","spec":{"user":"a"}}"#.to_owned(), "is not supported"),
        ];
        for (body, expected) in cases {
            let err = parse_subject_access_review(body.as_bytes()).unwrap_err();
            assert!(err.0.contains(expected), "{body}: {err}");
        }
    }

    #[test]
    fn subject_access_review_answers_are_kubernetes_shaped() {
        for (version, api) in [
            (Version::V1, AUTHORIZATION_V1),
            (Version::V1beta1, AUTHORIZATION_V1BETA1),
        ] {
            let allow = value(&subject_access_review_response(
                version,
                &Decision::allow(""),
            ));
            assert_eq!(
                allow,
                json!({"apiVersion": api, "kind": "SubjectAccessReview", "status": {"allowed": true}})
            );
            let deny = value(&subject_access_review_response(
                version,
                &Decision::deny("no"),
            ));
            assert_eq!(
                deny["status"],
                json!({"allowed": false, "denied": true, "reason": "no"})
            );
            let none = value(&subject_access_review_response(
                version,
                &Decision::no_opinion("dunno"),
            ));
            assert_eq!(none["status"], json!({"allowed": false, "reason": "dunno"}));
        }
        let both =
            parse_subject_access_review_status(br#"{"status":{"allowed":true,"denied":true}}"#)
                .unwrap();
        assert_eq!(both.decision().verdict, Verdict::Deny);
    }
}
