//! Errors returned by the client.

use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything a call to Rancher can fail with.
///
/// The variants carry control-flow meaning: [`Error::NotFound`] means the object is gone,
/// [`Error::Conflict`] means retry after re-reading, [`Error::Unauthorized`] means the keys are
/// wrong, [`Error::Api`] is any other error body Rancher sent (for example `422
/// MissingRequired`), and [`Error::Transport`] / [`Error::Timeout`] mean the request may not
/// have reached Rancher. No variant ever contains the secret key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The configuration is unusable (missing `CATTLE_URL`, a URL with embedded credentials, …).
    #[error("invalid rancher client configuration: {message}")]
    Config {
        /// What is wrong.
        message: String,
    },
    /// An id given to the client cannot be an id (empty, or with `/`, `?`, `#`, `%`).
    #[error("invalid {collection} id {id:?}")]
    InvalidId {
        /// The collection, e.g. `loadbalancerservices`.
        collection: String,
        /// The id as given.
        id: String,
    },
    /// Rancher answered 404.
    #[error("{path} not found: {message}")]
    NotFound {
        /// The API path that was requested, relative to the project URL.
        path: String,
        /// Rancher's message.
        message: String,
    },
    /// Rancher answered 409: the object changed underneath the request.
    #[error("conflict on {path}: {message}")]
    Conflict {
        /// The API path that was requested.
        path: String,
        /// Rancher's message.
        message: String,
    },
    /// Rancher answered 401 or 403: the access key or secret key is wrong or lacks rights.
    #[error("unauthorized on {path} (status {status}): {message}")]
    Unauthorized {
        /// The API path that was requested.
        path: String,
        /// 401 or 403.
        status: u16,
        /// Rancher's message.
        message: String,
    },
    /// Any other error status, with the fields of Rancher's `type: error` body.
    #[error("rancher api error {status} {code} on {path}: {message}{}", field_suffix(.field_name))]
    Api {
        /// The API path that was requested.
        path: String,
        /// HTTP status.
        status: u16,
        /// Rancher's error code, e.g. `MissingRequired`, `InvalidReference`, `NotUnique`.
        code: String,
        /// Rancher's message.
        message: String,
        /// The field the error is about, when Rancher names one.
        field_name: Option<String>,
    },
    /// The request timed out.
    #[error("request to {path} timed out")]
    Timeout {
        /// The API path that was requested.
        path: String,
    },
    /// The request could not be sent or the response could not be read.
    #[error("transport error on {path}")]
    Transport {
        /// The API path that was requested.
        path: String,
        /// The underlying HTTP error.
        #[source]
        source: reqwest::Error,
    },
    /// Rancher answered with a body this client could not decode.
    #[error("cannot decode the response of {path}")]
    Decode {
        /// The API path that was requested.
        path: String,
        /// The JSON error.
        #[source]
        source: serde_json::Error,
    },
    /// A wait for a resource to settle ran out of time.
    #[error("{resource} still {state} after {waited:?}")]
    WaitTimedOut {
        /// `type/id` of the resource.
        resource: String,
        /// The last state seen.
        state: String,
        /// How long the wait lasted.
        waited: Duration,
    },
    /// A wait was cancelled through its cancellation token.
    #[error("wait for {resource} cancelled")]
    Cancelled {
        /// `type/id` of the resource.
        resource: String,
    },
    /// The resource left its transitioning state with an error (`transitioning: error`).
    #[error("{resource} failed in state {state}: {message}")]
    TransitionFailed {
        /// `type/id` of the resource.
        resource: String,
        /// The state the resource is in.
        state: String,
        /// Rancher's `transitioningMessage`.
        message: String,
    },
    /// A link the caller asked to follow is not on the resource.
    #[error("{resource} has no link {link:?}")]
    NoSuchLink {
        /// `type/id` of the resource.
        resource: String,
        /// The link name.
        link: String,
    },
}

fn field_suffix(field: &Option<String>) -> String {
    field
        .as_ref()
        .map(|f| format!(" (field {f})"))
        .unwrap_or_default()
}

impl Error {
    /// Whether the error says the object does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Self::NotFound { .. })
    }

    /// Whether Rancher refused a create because an object with the same unique field (a
    /// name, a server address) exists: someone else made it, so read it and go on.
    pub fn is_not_unique(&self) -> bool {
        matches!(self, Self::Api { code, .. } if code == code::NOT_UNIQUE)
    }

    /// Whether Rancher refused a reference to an object that does not exist, and the field
    /// that held it (`stackId`, `certificateIds`, ...).
    pub fn invalid_reference(&self) -> Option<&str> {
        match self {
            Self::Api {
                code, field_name, ..
            } if code == code::INVALID_REFERENCE => Some(field_name.as_deref().unwrap_or("")),
            _ => None,
        }
    }

    /// The HTTP status Rancher answered with, if the error came from a response.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::NotFound { .. } => Some(404),
            Self::Conflict { .. } => Some(409),
            Self::Unauthorized { status, .. } | Self::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Builds the error for a non-success response.
    pub(crate) fn from_response(path: &str, status: u16, body: &[u8]) -> Self {
        let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
        let (code, message, field_name) = match parsed {
            Some(b) if b.kind == "error" => (b.code, b.message.unwrap_or_default(), b.field_name),
            _ => (
                String::new(),
                String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned(),
                None,
            ),
        };
        let path = path.to_owned();
        match status {
            404 => Self::NotFound { path, message },
            409 => Self::Conflict { path, message },
            401 | 403 => Self::Unauthorized {
                path,
                status,
                message,
            },
            _ => Self::Api {
                path,
                status,
                code,
                message,
                field_name,
            },
        }
    }
}

/// Rancher's error body: `{"type": "error", "status": 422, "code": "MissingRequired",
/// "message": "...", "fieldName": "name"}`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorBody {
    /// Always `error`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Always `error`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub base_type: String,
    /// HTTP status, repeated.
    pub status: u16,
    /// Machine-readable code.
    #[serde(default)]
    pub code: String,
    /// Human-readable message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The field at fault, for validation errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field_name: Option<String>,
    /// Extra detail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

impl std::fmt::Display for ErrorBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.status, self.code)?;
        if let Some(m) = &self.message {
            write!(f, ": {m}")?;
        }
        if let Some(field) = &self.field_name {
            write!(f, " (field {field})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ErrorBody {}

impl ErrorBody {
    /// An error body with the given status, code and message.
    pub fn new(status: u16, code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: "error".to_owned(),
            base_type: "error".to_owned(),
            status,
            code: code.into(),
            message: Some(message.into()),
            field_name: None,
            detail: None,
        }
    }

    /// Names the field at fault.
    pub fn field(mut self, field: impl Into<String>) -> Self {
        self.field_name = Some(field.into());
        self
    }
}

/// Rancher's validation error codes, as sent in [`ErrorBody::code`].
pub mod code {
    /// A required field is missing on create.
    pub const MISSING_REQUIRED: &str = "MissingRequired";
    /// A field refers to an object that does not exist.
    pub const INVALID_REFERENCE: &str = "InvalidReference";
    /// A field must be unique and is not.
    pub const NOT_UNIQUE: &str = "NotUnique";
    /// A field's value is not one of the allowed options.
    pub const INVALID_OPTION: &str = "InvalidOption";
    /// A field's value is malformed.
    pub const INVALID_FORMAT: &str = "InvalidFormat";
    /// A number is out of range.
    pub const MIN_LIMIT_EXCEEDED: &str = "MinLimitExceeded";
    /// A number is out of range.
    pub const MAX_LIMIT_EXCEEDED: &str = "MaxLimitExceeded";
    /// The action is not available in the resource's current state.
    pub const INVALID_ACTION: &str = "InvalidAction";
    /// The resource or collection does not exist.
    pub const NOT_FOUND: &str = "NotFound";
    /// The credentials are wrong.
    pub const UNAUTHORIZED: &str = "Unauthorized";
    /// The server failed.
    pub const SERVER_ERROR: &str = "ServerError";
    /// The request is in an invalid state.
    pub const INVALID_STATE: &str = "InvalidState";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_map_to_variants() {
        let body = |status: u16, code: &str| {
            serde_json::to_vec(&ErrorBody::new(status, code, "msg").field("name")).unwrap()
        };
        assert!(matches!(
            Error::from_response("/x", 404, &body(404, "NotFound")),
            Error::NotFound { .. }
        ));
        assert!(matches!(
            Error::from_response("/x", 409, &body(409, "Conflict")),
            Error::Conflict { .. }
        ));
        assert!(matches!(
            Error::from_response("/x", 403, &body(403, "Forbidden")),
            Error::Unauthorized { status: 403, .. }
        ));
        let api = Error::from_response("/x", 422, &body(422, "NotUnique"));
        assert!(
            matches!(&api, Error::Api { status: 422, code, field_name: Some(f), .. }
                if code == "NotUnique" && f == "name"),
            "{api:?}"
        );
        assert_eq!(
            api.to_string(),
            "rancher api error 422 NotUnique on /x: msg (field name)"
        );
        assert!(api.is_not_unique());
        assert_eq!(api.invalid_reference(), None);
        let reference = Error::from_response("/x", 422, &body(422, "InvalidReference"));
        assert!(!reference.is_not_unique());
        assert_eq!(reference.invalid_reference(), Some("name"));
        // A proxy's HTML error page still gives a usable error.
        let html = Error::from_response("/x", 502, b"<html>bad gateway</html>");
        assert!(
            matches!(&html, Error::Api { status: 502, message, .. } if message.contains("bad gateway"))
        );
    }
}
