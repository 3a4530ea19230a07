//! Kubernetes `Status` errors: the body every failed request gets.

use serde_json::{Value, json};

/// The `reason` strings of `metav1.Status` that the sandbox returns.
pub mod reason {
    /// 404: the object or collection does not exist.
    pub const NOT_FOUND: &str = "NotFound";
    /// 409: an object with that name already exists.
    pub const ALREADY_EXISTS: &str = "AlreadyExists";
    /// 409: the object changed since the caller read it (stale resourceVersion).
    pub const CONFLICT: &str = "Conflict";
    /// 422: the object failed validation.
    pub const INVALID: &str = "Invalid";
    /// 400: the request itself is malformed.
    pub const BAD_REQUEST: &str = "BadRequest";
    /// 410: the requested resourceVersion is older than the retained history.
    pub const EXPIRED: &str = "Expired";
    /// 410: the resource is gone.
    pub const GONE: &str = "Gone";
    /// 405: the verb is not supported on this resource.
    pub const METHOD_NOT_ALLOWED: &str = "MethodNotAllowed";
    /// 413: the request body is larger than the server accepts.
    pub const REQUEST_ENTITY_TOO_LARGE: &str = "RequestEntityTooLarge";
    /// 415: the request body's content type is not understood.
    pub const UNSUPPORTED_MEDIA_TYPE: &str = "UnsupportedMediaType";
    /// 403: the request is refused (e.g. creating in a terminating namespace).
    pub const FORBIDDEN: &str = "Forbidden";
    /// 500: the server failed.
    pub const INTERNAL_ERROR: &str = "InternalError";
}

/// A failed API request, rendered as a `metav1.Status` body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status code.
    pub code: u16,
    /// Machine-readable reason (see [`reason`]).
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
    /// `details.kind`, `details.name`, `details.group` when the error is about one object.
    pub details: Option<Box<(String, String, String)>>,
    /// `details.causes` of a validation error, each `field: message`.
    pub causes: Vec<String>,
}

impl ApiError {
    fn new(code: u16, reason: &'static str, message: impl Into<String>) -> Self {
        Self {
            code,
            reason,
            message: message.into(),
            details: None,
            causes: Vec::new(),
        }
    }

    fn with_details(mut self, group: &str, resource: &str, name: &str) -> Self {
        self.details = Some(Box::new((
            group.to_string(),
            resource.to_string(),
            name.to_string(),
        )));
        self
    }

    /// 404 for one named object, worded as kube-apiserver words it.
    pub fn not_found(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            404,
            reason::NOT_FOUND,
            format!("{} \"{name}\" not found", qualified(group, resource)),
        )
        .with_details(group, resource, name)
    }

    /// 404 for a path that names no resource.
    pub fn no_route(path: &str) -> Self {
        Self::new(
            404,
            reason::NOT_FOUND,
            format!("the server could not find the requested resource (path {path})"),
        )
    }

    /// 409: an object with this name exists.
    pub fn already_exists(group: &str, resource: &str, name: &str) -> Self {
        Self::new(
            409,
            reason::ALREADY_EXISTS,
            format!("{} \"{name}\" already exists", qualified(group, resource)),
        )
        .with_details(group, resource, name)
    }

    /// 409: the caller's resourceVersion is stale.
    pub fn conflict(group: &str, resource: &str, name: &str, why: &str) -> Self {
        Self::new(
            409,
            reason::CONFLICT,
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {why}",
                qualified(group, resource)
            ),
        )
        .with_details(group, resource, name)
    }

    /// 422: validation failed; `causes` are `field: message` strings.
    pub fn invalid(kind: &str, group: &str, name: &str, causes: &[String]) -> Self {
        let what = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        Self::new(
            422,
            reason::INVALID,
            format!("{what} \"{name}\" is invalid: {}", causes.join(", ")),
        )
        .with_details(group, kind, name)
        .with_causes(causes)
    }

    fn with_causes(mut self, causes: &[String]) -> Self {
        self.causes = causes.to_vec();
        self
    }

    /// 400: the request is malformed.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, reason::BAD_REQUEST, message)
    }

    /// 410: the resourceVersion is older than the retained history.
    pub fn expired(message: impl Into<String>) -> Self {
        Self::new(410, reason::EXPIRED, message)
    }

    /// 405: the verb is not allowed here.
    pub fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, reason::METHOD_NOT_ALLOWED, message)
    }

    /// 413: the body is too large.
    pub fn too_large(limit: usize) -> Self {
        Self::new(
            413,
            reason::REQUEST_ENTITY_TOO_LARGE,
            format!("Request entity too large: limit is {limit}"),
        )
    }

    /// 415: the content type is not understood.
    pub fn unsupported_media_type(content_type: &str) -> Self {
        Self::new(
            415,
            reason::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "the body of the request was in an unknown format - accepted media types include: application/json, application/yaml, application/merge-patch+json, application/json-patch+json, application/strategic-merge-patch+json, application/apply-patch+yaml (got {content_type:?})"
            ),
        )
    }

    /// 403: refused.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(403, reason::FORBIDDEN, message)
    }

    /// 500: the server failed.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, reason::INTERNAL_ERROR, message)
    }

    /// The `metav1.Status` object for this error.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some((group, kind, name)) = self.details.as_deref() {
            let mut details = json!({ "name": name, "kind": kind });
            if !group.is_empty() {
                details["group"] = json!(group);
            }
            if !self.causes.is_empty() {
                details["causes"] = self.causes.iter().map(|c| cause(c)).collect();
            }
            status["details"] = details;
        }
        status
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

/// A `metav1.StatusCause` from `field: message`, with the reason kube-apiserver gives.
fn cause(text: &str) -> Value {
    let (field, message) = text.split_once(": ").unwrap_or(("", text));
    let reason = [
        ("Invalid value", "FieldValueInvalid"),
        ("Required value", "FieldValueRequired"),
        ("Unsupported value", "FieldValueNotSupported"),
        ("Forbidden", "FieldValueForbidden"),
        ("Duplicate value", "FieldValueDuplicate"),
        ("Too long", "FieldValueTooLong"),
    ]
    .iter()
    .find(|(prefix, _)| message.starts_with(prefix))
    .map_or("FieldValueInvalid", |(_, r)| r);
    json!({"reason": reason, "message": message, "field": field})
}

/// `resource.group`, or `resource` for the core group.
fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

/// A success `Status`, as returned by an immediate delete.
pub(crate) fn success(group: &str, resource: &str, name: &str, uid: &str) -> Value {
    let mut details = json!({ "name": name, "kind": resource, "uid": uid });
    if !group.is_empty() {
        details["group"] = json!(group);
    }
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Success",
        "details": details,
    })
}

/// Result of an API operation.
pub type ApiResult<T> = std::result::Result<T, ApiError>;
