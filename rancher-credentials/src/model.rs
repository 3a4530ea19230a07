//! The `credentialprovider.kubelet.k8s.io/v1` request and response, and their exact
//! JSON.
//!
//! Requests are parsed leniently about unknown fields (a newer kubelet may send
//! more) but strictly about everything the kubelet promises: `apiVersion`, `kind`
//! and a non-empty `image`. Responses are written with exactly the fields the
//! kubelet's strict decoder knows, and [`Response::from_json`] reads them back as
//! strictly as the kubelet does.

use std::{collections::BTreeMap, fmt, time::Duration};

use serde::{Deserialize, Serialize};

use crate::{duration, matching};

/// The plugin API version this crate speaks.
pub const API_VERSION: &str = "credentialprovider.kubelet.k8s.io/v1";
/// The `kind` of a request.
pub const REQUEST_KIND: &str = "CredentialProviderRequest";
/// The `kind` of a response.
pub const RESPONSE_KIND: &str = "CredentialProviderResponse";

/// A request or response that is not what the kubelet sends or accepts.
///
/// Messages never quote values from the document, which may hold credentials:
/// they name the field, or give the line and column.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Nothing but whitespace.
    #[error("empty {what}: expected one JSON {what}")]
    Empty {
        /// `request` or `response`.
        what: &'static str,
    },
    /// Not JSON, or JSON of the wrong shape.
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// `request` or `response`.
        what: &'static str,
        /// What is wrong and where, without the offending value.
        detail: String,
    },
    /// `apiVersion` is not [`API_VERSION`].
    #[error("unsupported apiVersion {found:?} in {what}: expected {API_VERSION:?}")]
    ApiVersion {
        /// `request` or `response`.
        what: &'static str,
        /// The apiVersion that was sent.
        found: String,
    },
    /// `kind` is not the expected kind.
    #[error("unexpected kind {found:?} in {what}: expected {expected:?}")]
    Kind {
        /// `request` or `response`.
        what: &'static str,
        /// The kind that was sent.
        found: String,
        /// The kind that was expected.
        expected: &'static str,
    },
    /// The request's `image` is empty.
    #[error("image in request is empty")]
    EmptyImage,
}

/// Result of parsing a request or a response.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A string that never shows in `Debug` output: a password or a token.
///
/// Read it with [`SecretString::expose`], and never log what it returns.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SecretString(String);

impl SecretString {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret value.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl From<String> for SecretString {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for SecretString {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

/// What the kubelet asks: the credentials for one image.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Request {
    /// The image as the kubelet passes it: the normalised repository without tag
    /// or digest (`nginx:1.25` arrives as `docker.io/library/nginx`). Providers
    /// should still cope with a tag or a digest.
    pub image: String,
    /// The pod's service account token, when the provider is configured with
    /// `tokenAttributes` and the pod has a service account.
    pub service_account_token: Option<SecretString>,
    /// The configured service account annotations present on the service account.
    pub service_account_annotations: BTreeMap<String, String>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
struct RequestWire {
    kind: String,
    api_version: String,
    image: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service_account_token: Option<SecretString>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    service_account_annotations: Option<BTreeMap<String, String>>,
}

impl Request {
    /// A request for `image`, without service account fields.
    pub fn new(image: impl Into<String>) -> Self {
        Self {
            image: image.into(),
            ..Self::default()
        }
    }

    /// Adds a service account token.
    pub fn with_service_account_token(mut self, token: impl Into<SecretString>) -> Self {
        self.service_account_token = Some(token.into());
        self
    }

    /// Adds a service account annotation.
    pub fn with_annotation(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.service_account_annotations
            .insert(key.into(), value.into());
        self
    }

    /// Parses the JSON the kubelet writes on the plugin's stdin.
    ///
    /// Unknown fields are ignored, for newer kubelets; `apiVersion` must be
    /// [`API_VERSION`], `kind` [`REQUEST_KIND`], and `image` non-empty.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        const WHAT: &str = "request";
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::Empty { what: WHAT });
        }
        let wire: RequestWire = serde_json::from_slice(bytes).map_err(|e| malformed(WHAT, &e))?;
        check_type(WHAT, &wire.api_version, &wire.kind, REQUEST_KIND)?;
        if wire.image.trim().is_empty() {
            return Err(Error::EmptyImage);
        }
        Ok(Self {
            image: wire.image,
            service_account_token: wire.service_account_token,
            service_account_annotations: wire.service_account_annotations.unwrap_or_default(),
        })
    }

    /// The JSON the kubelet would write for this request (for tests and tools).
    pub fn to_json(&self) -> Vec<u8> {
        let wire = RequestWire {
            kind: REQUEST_KIND.to_owned(),
            api_version: API_VERSION.to_owned(),
            image: self.image.clone(),
            service_account_token: self.service_account_token.clone(),
            service_account_annotations: (!self.service_account_annotations.is_empty())
                .then(|| self.service_account_annotations.clone()),
        };
        let mut json = serde_json::to_vec(&wire).unwrap_or_default();
        json.push(b'\n');
        json
    }
}

/// How the kubelet caches a response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CacheKeyType {
    /// Per image (the repository without tag): for credentials that depend on the
    /// repository path.
    Image,
    /// Per registry (host and port): for registry-scoped credentials.
    Registry,
    /// For every image: for a provider that answers the same whatever the image.
    Global,
}

impl CacheKeyType {
    /// The cache key the kubelet files a response for `image` under.
    pub fn key<'a>(&self, image: &'a str) -> &'a str {
        match self {
            Self::Image => image,
            Self::Registry => matching::registry(image),
            Self::Global => "global",
        }
    }
}

/// One username and password, as the kubelet hands it to the container runtime.
///
/// `Debug` shows the username only.
#[derive(Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct AuthConfig {
    /// The username; may be empty.
    #[serde(default)]
    pub username: String,
    /// The password or token; may be empty.
    #[serde(default)]
    pub password: SecretString,
}

impl AuthConfig {
    /// A username and password.
    pub fn new(username: impl Into<String>, password: impl Into<SecretString>) -> Self {
        Self {
            username: username.into(),
            password: password.into(),
        }
    }
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("username", &self.username)
            .field("password", &self.password)
            .finish()
    }
}

/// What a provider answers: credentials keyed by image pattern, and how long the
/// kubelet may cache them.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Response {
    /// How the kubelet files the response in its cache.
    pub cache_key_type: CacheKeyType,
    /// How long the kubelet may cache the response; `None` leaves it to the
    /// provider's `defaultCacheDuration`, zero means do not cache.
    pub cache_duration: Option<Duration>,
    /// Credentials keyed by pattern (host with its port if any, optional path,
    /// globs per label), matched against images as
    /// [`matching::matches`] does.
    pub auth: BTreeMap<String, AuthConfig>,
}

#[derive(Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ResponseWire {
    kind: String,
    api_version: String,
    cache_key_type: CacheKeyType,
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        with = "duration::serde_opt"
    )]
    cache_duration: Option<Duration>,
    #[serde(default)]
    auth: Option<BTreeMap<String, AuthConfig>>,
}

impl Response {
    /// An empty response with the given cache key type and no cache duration.
    pub fn new(cache_key_type: CacheKeyType) -> Self {
        Self {
            cache_key_type,
            cache_duration: None,
            auth: BTreeMap::new(),
        }
    }

    /// No credentials, not to be cached (`Registry`, `0s`): the answer of a
    /// provider that knows nothing about the image.
    pub fn empty() -> Self {
        Self::new(CacheKeyType::Registry).with_cache_duration(Some(Duration::ZERO))
    }

    /// Sets the cache duration.
    pub fn with_cache_duration(mut self, duration: Option<Duration>) -> Self {
        self.cache_duration = duration;
        self
    }

    /// Adds a credential under `pattern`.
    pub fn with_auth(mut self, pattern: impl Into<String>, auth: AuthConfig) -> Self {
        self.auth.insert(pattern.into(), auth);
        self
    }

    /// The credentials the kubelet would try for `image`, in its order: keys are
    /// normalised ([`matching::normalize_key`]), sorted in reverse lexicographic
    /// order, and kept when they match the image; a Docker Hub image also gets the
    /// credential stored under [`matching::DOCKER_HUB_HOST`].
    pub fn lookup(&self, image: &str) -> Vec<(String, &AuthConfig)> {
        let mut keys: Vec<(String, &AuthConfig)> = self
            .auth
            .iter()
            .filter_map(|(key, auth)| Some((matching::normalize_key(key)?, auth)))
            .collect();
        keys.sort_by(|a, b| b.0.cmp(&a.0));
        let mut found: Vec<(String, &AuthConfig)> = keys
            .iter()
            .filter(|(key, _)| matching::matches(key, image))
            .cloned()
            .collect();
        if found.is_empty() && matching::is_docker_hub(image) {
            found.extend(
                keys.iter()
                    .filter(|(key, _)| key == matching::DOCKER_HUB_HOST)
                    .cloned(),
            );
        }
        found
    }

    /// The JSON document for the kubelet: `kind`, `apiVersion`, `cacheKeyType`,
    /// `cacheDuration` when set, and `auth`, followed by a newline.
    pub fn to_json(&self) -> Vec<u8> {
        let wire = ResponseWire {
            kind: RESPONSE_KIND.to_owned(),
            api_version: API_VERSION.to_owned(),
            cache_key_type: self.cache_key_type,
            cache_duration: self.cache_duration,
            auth: Some(self.auth.clone()),
        };
        // Serialising plain strings and maps to a Vec cannot fail.
        let mut json = serde_json::to_vec(&wire).unwrap_or_default();
        json.push(b'\n');
        json
    }

    /// Parses a response as strictly as current kubelets do: unknown or duplicate
    /// fields, a wrong `apiVersion` or `kind`, a missing or unknown
    /// `cacheKeyType`, and a `cacheDuration` that is not a Go duration are errors.
    pub fn from_json(bytes: &[u8]) -> Result<Self> {
        const WHAT: &str = "response";
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(Error::Empty { what: WHAT });
        }
        let wire: ResponseWire = serde_json::from_slice(bytes).map_err(|e| malformed(WHAT, &e))?;
        check_type(WHAT, &wire.api_version, &wire.kind, RESPONSE_KIND)?;
        Ok(Self {
            cache_key_type: wire.cache_key_type,
            cache_duration: wire.cache_duration,
            auth: wire.auth.unwrap_or_default(),
        })
    }
}

fn check_type(
    what: &'static str,
    api_version: &str,
    kind: &str,
    expected: &'static str,
) -> Result<()> {
    if api_version != API_VERSION {
        return Err(Error::ApiVersion {
            what,
            found: api_version.to_owned(),
        });
    }
    if kind != expected {
        return Err(Error::Kind {
            what,
            found: kind.to_owned(),
            expected,
        });
    }
    Ok(())
}

/// Describes a JSON error without quoting the document: serde's messages for
/// wrong types quote the value, which may be a password or a token.
fn malformed(what: &'static str, error: &serde_json::Error) -> Error {
    let message = error.to_string();
    // These messages name fields or enum variants only, never values.
    // So do the duration errors, which quote a cacheDuration.
    let names_only = [
        "unknown field",
        "missing field",
        "duplicate field",
        "unknown variant",
        "invalid duration",
        "missing unit in duration",
        "unknown unit",
        "negative duration",
        "duration ",
    ]
    .iter()
    .any(|prefix| message.starts_with(prefix));
    let detail = if names_only {
        message
    } else {
        let category = match error.classify() {
            serde_json::error::Category::Io => "read error",
            serde_json::error::Category::Syntax => "invalid JSON",
            serde_json::error::Category::Data => "a field has the wrong type or value",
            serde_json::error::Category::Eof => "unexpected end of input",
        };
        format!(
            "{category} at line {} column {}",
            error.line(),
            error.column()
        )
    };
    Error::Malformed { what, detail }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn parses_the_basic_request() {
        let request = Request::from_json(
            br#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"registry.example.org/team/app"}
"#,
        )
        .unwrap();
        assert_eq!(request, Request::new("registry.example.org/team/app"));
    }

    #[test]
    fn parses_a_service_account_request() {
        let request = Request::from_json(
            json!({
                "kind": "CredentialProviderRequest",
                "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
                "image": "registry.example.org/team/app",
                "serviceAccountToken": "header.payload.signature",
                "serviceAccountAnnotations": {"example.org/identity-id": "12345"}
            })
            .to_string()
            .as_bytes(),
        )
        .unwrap();
        assert_eq!(
            request
                .service_account_token
                .as_ref()
                .map(SecretString::expose),
            Some("header.payload.signature")
        );
        assert_eq!(
            request.service_account_annotations["example.org/identity-id"],
            "12345"
        );
        assert!(!format!("{request:?}").contains("header.payload"));
        // And it round-trips through the kubelet's encoding.
        assert_eq!(Request::from_json(&request.to_json()).unwrap(), request);
    }

    #[test]
    fn tolerates_unknown_request_fields_and_nulls() {
        let request = Request::from_json(
            br#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"a.example.org/x","futureField":{"a":1},"serviceAccountToken":null,"serviceAccountAnnotations":null}"#,
        )
        .unwrap();
        assert_eq!(request, Request::new("a.example.org/x"));
    }

    #[test]
    fn rejects_invalid_requests() {
        let cases: &[(&str, &str)] = &[
            ("", "empty request"),
            ("  \n", "empty request"),
            ("{", "malformed request: unexpected end of input"),
            ("not json", "malformed request: invalid JSON"),
            ("[]", "malformed request"),
            (
                r#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1beta1","image":"a.example.org/x"}"#,
                "unsupported apiVersion \"credentialprovider.kubelet.k8s.io/v1beta1\"",
            ),
            (
                r#"{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"a.example.org/x"}"#,
                "unexpected kind \"CredentialProviderResponse\"",
            ),
            (
                r#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":""}"#,
                "image in request is empty",
            ),
            (
                r#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1"}"#,
                "missing field `image`",
            ),
            (
                r#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"a","image":"b"}"#,
                "duplicate field `image`",
            ),
            (
                r#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"a"} {}"#,
                "malformed request: invalid JSON",
            ),
        ];
        for (input, expected) in cases {
            let err = Request::from_json(input.as_bytes())
                .unwrap_err()
                .to_string();
            assert!(err.contains(expected), "{input:?}: {err}");
        }
    }

    #[test]
    fn errors_never_quote_values() {
        // A token of the wrong type: serde would quote it.
        let err = Request::from_json(
            br#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"a","serviceAccountAnnotations":"hunter2-token"}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("line 1 column"), "{err}");
        let err = Response::from_json(
            br#"{"kind":"CredentialProviderResponse","apiVersion":"credentialprovider.kubelet.k8s.io/v1","cacheKeyType":"Registry","auth":{"a.example.org":{"username":"u","password":987654}}}"#,
        )
        .unwrap_err()
        .to_string();
        assert!(!err.contains("987654"), "{err}");
        assert!(err.contains("wrong type"), "{err}");
    }

    #[test]
    fn writes_exactly_the_fields_the_kubelet_knows() {
        let response = Response::new(CacheKeyType::Registry)
            .with_cache_duration(Some(Duration::from_secs(6 * 3600)))
            .with_auth(
                "registry.example.org",
                AuthConfig::new("robot$ci", "s3cr3t"),
            )
            .with_auth(
                "*.registry.example.org",
                AuthConfig::new("robot$ci", "s3cr3t"),
            );
        let json = response.to_json();
        assert_eq!(json.last(), Some(&b'\n'));
        let value: Value = serde_json::from_slice(&json).unwrap();
        assert_eq!(
            value,
            json!({
                "kind": "CredentialProviderResponse",
                "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
                "cacheKeyType": "Registry",
                "cacheDuration": "6h0m0s",
                "auth": {
                    "registry.example.org": {"username": "robot$ci", "password": "s3cr3t"},
                    "*.registry.example.org": {"username": "robot$ci", "password": "s3cr3t"}
                }
            })
        );
        // kind and apiVersion come first, as the kubelet's encoder writes them.
        assert!(json.starts_with(br#"{"kind":"CredentialProviderResponse","apiVersion":"#));
        assert_eq!(Response::from_json(&json).unwrap(), response);
    }

    #[test]
    fn omits_an_unset_cache_duration_and_writes_zero() {
        let value: Value =
            serde_json::from_slice(&Response::new(CacheKeyType::Image).to_json()).unwrap();
        assert!(value.get("cacheDuration").is_none(), "{value}");
        assert_eq!(value["auth"], json!({}));
        let value: Value = serde_json::from_slice(&Response::empty().to_json()).unwrap();
        assert_eq!(value["cacheDuration"], "0s");
        assert_eq!(value["cacheKeyType"], "Registry");
    }

    #[test]
    fn cache_key_types_serialise_as_the_kubelet_expects() {
        for (key_type, text) in [
            (CacheKeyType::Image, "Image"),
            (CacheKeyType::Registry, "Registry"),
            (CacheKeyType::Global, "Global"),
        ] {
            let value: Value = serde_json::from_slice(&Response::new(key_type).to_json()).unwrap();
            assert_eq!(value["cacheKeyType"], text);
        }
        let image = "registry.example.org:5000/team/app";
        assert_eq!(CacheKeyType::Image.key(image), image);
        assert_eq!(
            CacheKeyType::Registry.key(image),
            "registry.example.org:5000"
        );
        assert_eq!(CacheKeyType::Global.key(image), "global");
    }

    #[test]
    fn strict_response_parsing() {
        let base = json!({
            "kind": "CredentialProviderResponse",
            "apiVersion": "credentialprovider.kubelet.k8s.io/v1",
            "cacheKeyType": "Image",
            "cacheDuration": "5m",
            "auth": null
        });
        let parsed = Response::from_json(base.to_string().as_bytes()).unwrap();
        assert_eq!(parsed.cache_duration, Some(Duration::from_secs(300)));
        assert!(parsed.auth.is_empty());

        let bad = |f: &dyn Fn(&mut Value)| {
            let mut value = base.clone();
            f(&mut value);
            Response::from_json(value.to_string().as_bytes())
                .unwrap_err()
                .to_string()
        };
        assert!(bad(&|v| v["extra"] = json!(1)).contains("unknown field `extra`"));
        assert!(bad(&|v| v["cacheKeyType"] = json!("")).contains("unknown variant"));
        assert!(bad(&|v| v["cacheKeyType"] = json!("Pod")).contains("unknown variant"));
        assert!(
            bad(&|v| {
                v.as_object_mut().unwrap().remove("cacheKeyType");
            })
            .contains("missing field `cacheKeyType`")
        );
        assert!(bad(&|v| v["cacheDuration"] = json!("300")).contains("missing unit in duration"));
        assert!(bad(&|v| v["apiVersion"] = json!("kubelet.k8s.io/v1")).contains("apiVersion"));
        assert!(bad(&|v| v["kind"] = json!("CredentialProviderRequest")).contains("kind"));
        assert!(
            bad(&|v| v["auth"] = json!({"a.example.org": {"username": "u", "email": "e"}}))
                .contains("unknown field `email`")
        );
        // The blog post's wrong layout is rejected.
        assert!(bad(&|v| {
            v["auth"] = json!({"a.example.org": {"username": "u", "password": "p", "cacheKeyType": "Image"}});
        })
        .contains("unknown field"));
    }

    #[test]
    fn debug_never_shows_passwords() {
        let response = Response::new(CacheKeyType::Global)
            .with_auth("a.example.org", AuthConfig::new("user", "hunter2"));
        let debug = format!("{response:?} {response:#?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("user"));
    }

    #[test]
    fn lookup_follows_the_keyring() {
        let response = Response::new(CacheKeyType::Global)
            .with_auth("registry.example.org", AuthConfig::new("host", "p1"))
            .with_auth("registry.example.org/team", AuthConfig::new("team", "p2"))
            .with_auth("*.example.org", AuthConfig::new("wild", "p3"))
            .with_auth("registry.example.org:5000", AuthConfig::new("port", "p4"))
            .with_auth("https://index.docker.io/v1/", AuthConfig::new("hub", "p5"));
        let users = |image: &str| -> Vec<String> {
            response
                .lookup(image)
                .into_iter()
                .map(|(_, auth)| auth.username.clone())
                .collect()
        };
        assert_eq!(
            users("registry.example.org/team/app"),
            ["team", "host", "wild"]
        );
        assert_eq!(users("registry.example.org/other/app"), ["host", "wild"]);
        assert_eq!(users("registry.example.org:5000/app"), ["port"]);
        assert_eq!(users("docker.io/library/nginx"), ["hub"]);
        assert!(users("registry.example.net/app").is_empty());
    }
}
