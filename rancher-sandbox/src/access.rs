//! Optional authentication and authorization, configured the way kube-apiserver's are:
//! a token webhook (`--authentication-token-webhook-config-file`) and an authorization
//! webhook (`--authorization-mode=Webhook`, `--authorization-webhook-config-file`), each
//! a kubeconfig file naming the webhook, called with TokenReview and SubjectAccessReview
//! in the version asked for, with kube-apiserver's caches.
//!
//! With access configured ([`SandboxBuilder::access`](crate::SandboxBuilder::access)):
//!
//! - the cluster serves HTTPS (client-go sends tokens only over TLS), with the certificate
//!   given ([`Access::tls`]) or one generated at start, whose CA is in the kubeconfig the
//!   sandbox writes and in [`Cluster::ca_pem`](crate::Cluster::ca_pem);
//! - every request needs a bearer token (anonymous requests are refused, as with
//!   `--anonymous-auth=false`); a token the webhook does not accept gets kube-apiserver's
//!   401 `Status`;
//! - the sandbox's own token ([`Access::admin_token`], in the kubeconfig it writes and in its
//!   `kube::Client`) is the user `kubernetes-admin` in `system:masters`, which, as on
//!   kube-apiserver, is allowed everything without asking any authorizer;
//! - every other request is put to the authorization webhook, and one that is not allowed
//!   gets kube-apiserver's 403 `Status` (`... is forbidden: User "u" cannot <verb> resource
//!   ...: <reason>`); a webhook that fails gives 500, as on kube-apiserver;
//! - `SelfSubjectAccessReview` (`kubectl auth can-i`), `SelfSubjectRulesReview` (incomplete,
//!   as with any webhook authorizer) and `SelfSubjectReview` (`kubectl auth whoami`) are
//!   served.
//!
//! Without it the sandbox lets everyone do everything, and still answers the self reviews
//! (everything is allowed; the user is `system:anonymous`).

mod request_info;
mod tls;
mod webhook;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use http::{HeaderValue, Method, StatusCode, header};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use request_info::RequestInfo;
pub use tls::TlsFiles;
pub(crate) use tls::TlsListener;
pub use webhook::ConfigError;
use webhook::{AnswerCache, WebhookClient};

/// The user the sandbox's own token authenticates as.
pub const ADMIN_USER: &str = "kubernetes-admin";
/// The group allowed everything without asking an authorizer.
pub const MASTERS_GROUP: &str = "system:masters";
/// The group every authenticated user is in.
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// Which version of the review APIs a webhook is called with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReviewVersion {
    /// `v1`.
    V1,
    /// `v1beta1`, the default of kube-apiserver's `--authentication-token-webhook-version` and
    /// `--authorization-webhook-version`.
    #[default]
    V1beta1,
}

impl ReviewVersion {
    fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V1beta1 => "v1beta1",
        }
    }
}

/// The token webhook: kube-apiserver's `--authentication-token-webhook-*` flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthenticationWebhook {
    /// The kubeconfig file naming the webhook (`--authentication-token-webhook-config-file`).
    pub config_file: PathBuf,
    /// `--authentication-token-webhook-version` (default `v1beta1`).
    pub version: ReviewVersion,
    /// `--authentication-token-webhook-cache-ttl` (default 2 min): how long answers, yes and no
    /// alike, are kept. Errors are never kept.
    pub cache_ttl: Duration,
    /// How long one call may take, retries included (default 30 s).
    pub timeout: Duration,
}

impl AuthenticationWebhook {
    /// The webhook named by `config_file`, with kube-apiserver's defaults.
    pub fn new(config_file: impl Into<PathBuf>) -> Self {
        Self {
            config_file: config_file.into(),
            version: ReviewVersion::default(),
            cache_ttl: Duration::from_secs(120),
            timeout: Duration::from_secs(30),
        }
    }
}

/// The authorization webhook: kube-apiserver's `--authorization-webhook-*` flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuthorizationWebhook {
    /// The kubeconfig file naming the webhook (`--authorization-webhook-config-file`).
    pub config_file: PathBuf,
    /// `--authorization-webhook-version` (default `v1beta1`).
    pub version: ReviewVersion,
    /// `--authorization-webhook-cache-authorized-ttl` (default 5 min).
    pub authorized_ttl: Duration,
    /// `--authorization-webhook-cache-unauthorized-ttl` (default 30 s).
    pub unauthorized_ttl: Duration,
    /// How long one call may take, retries included (default 30 s).
    pub timeout: Duration,
}

impl AuthorizationWebhook {
    /// The webhook named by `config_file`, with kube-apiserver's defaults.
    pub fn new(config_file: impl Into<PathBuf>) -> Self {
        Self {
            config_file: config_file.into(),
            version: ReviewVersion::default(),
            authorized_ttl: Duration::from_secs(300),
            unauthorized_ttl: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
        }
    }
}

/// Authentication and authorization for a sandbox.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    /// The token webhook; without one only the admin token is accepted.
    pub authentication: Option<AuthenticationWebhook>,
    /// The authorization webhook; without one every authenticated user may do everything
    /// (`--authorization-mode=AlwaysAllow`).
    pub authorization: Option<AuthorizationWebhook>,
    /// The sandbox's own token (user [`ADMIN_USER`] in [`MASTERS_GROUP`]); a random one when
    /// `None`.
    pub admin_token: Option<String>,
    /// The serving certificate; a generated one (a fresh CA and a certificate for
    /// `127.0.0.1` it signed) when `None`.
    pub tls: Option<TlsFiles>,
}

impl Access {
    /// No webhooks yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Authenticates tokens with this webhook.
    #[must_use]
    pub fn authentication(mut self, webhook: AuthenticationWebhook) -> Self {
        self.authentication = Some(webhook);
        self
    }

    /// Authorizes requests with this webhook.
    #[must_use]
    pub fn authorization(mut self, webhook: AuthorizationWebhook) -> Self {
        self.authorization = Some(webhook);
        self
    }

    /// Serves with this certificate and key.
    #[must_use]
    pub fn tls(mut self, files: TlsFiles) -> Self {
        self.tls = Some(files);
        self
    }

    /// Uses this admin token.
    #[must_use]
    pub fn admin_token(mut self, token: impl Into<String>) -> Self {
        self.admin_token = Some(token.into());
        self
    }
}

/// A user, as TokenReviews and SubjectAccessReviews carry one.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UserInfo {
    #[serde(default)]
    username: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    uid: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    groups: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    extra: BTreeMap<String, Vec<String>>,
}

#[derive(Debug)]
struct TokenWebhook {
    client: WebhookClient,
    config: AuthenticationWebhook,
    cache: AnswerCache<String, Option<UserInfo>>,
}

#[derive(Debug)]
struct AccessWebhook {
    client: WebhookClient,
    config: AuthorizationWebhook,
    cache: AnswerCache<String, Decision>,
}

/// An authorizer's verdict with its reason.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Decision {
    allowed: bool,
    denied: bool,
    reason: String,
}

/// The running checks of one cluster.
pub(crate) struct Gate {
    admin_token: String,
    serving: tls::Serving,
    authn: Option<TokenWebhook>,
    authz: Option<AccessWebhook>,
}

impl std::fmt::Debug for Gate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("authn", &self.authn)
            .field("authz", &self.authz)
            .finish_non_exhaustive()
    }
}

impl Gate {
    /// Reads the webhooks' kubeconfig files and builds their clients.
    pub(crate) async fn new(access: &Access) -> Result<Self, ConfigError> {
        let authn = match &access.authentication {
            Some(config) => Some(TokenWebhook {
                client: WebhookClient::from_kubeconfig(
                    &config.config_file,
                    config.timeout,
                    "authentication",
                )
                .await?,
                config: config.clone(),
                cache: AnswerCache::new(4096),
            }),
            None => None,
        };
        let authz = match &access.authorization {
            Some(config) => Some(AccessWebhook {
                client: WebhookClient::from_kubeconfig(
                    &config.config_file,
                    config.timeout,
                    "authorization",
                )
                .await?,
                config: config.clone(),
                cache: AnswerCache::new(8192),
            }),
            None => None,
        };
        let admin_token = access.admin_token.clone().unwrap_or_else(|| {
            std::iter::repeat_with(fastrand::alphanumeric)
                .take(40)
                .collect()
        });
        let serving = match &access.tls {
            Some(files) => tls::Serving::from_files(files)?,
            None => tls::Serving::generate()?,
        };
        Ok(Self {
            admin_token,
            serving,
            authn,
            authz,
        })
    }

    /// The sandbox's own token.
    pub(crate) fn admin_token(&self) -> &str {
        &self.admin_token
    }

    /// The CA (PEM) clients trust.
    pub(crate) fn ca_pem(&self) -> &str {
        &self.serving.ca_pem
    }

    /// The TLS configuration to serve with.
    pub(crate) fn tls_config(&self) -> std::sync::Arc<tokio_rustls::rustls::ServerConfig> {
        self.serving.config.clone()
    }

    async fn authenticate(&self, token: &str) -> Result<Option<UserInfo>, String> {
        if token == self.admin_token {
            return Ok(Some(UserInfo {
                username: ADMIN_USER.into(),
                groups: vec![MASTERS_GROUP.into(), AUTHENTICATED_GROUP.into()],
                ..UserInfo::default()
            }));
        }
        let Some(hook) = &self.authn else {
            return Ok(None);
        };
        if let Some(answer) = hook.cache.get(&token.to_owned()) {
            return Ok(answer);
        }
        let version = hook.config.version.as_str();
        let body = json!({
            "apiVersion": format!("authentication.k8s.io/{version}"),
            "kind": "TokenReview",
            "metadata": {"creationTimestamp": null},
            "spec": {"token": token},
            "status": {"user": {}},
        });
        let answer = hook.client.post(body.to_string().as_bytes()).await?;
        #[derive(Deserialize)]
        struct Status {
            #[serde(default)]
            authenticated: bool,
            #[serde(default)]
            user: UserInfo,
            #[serde(default)]
            error: String,
        }
        #[derive(Deserialize)]
        struct Review {
            #[serde(default)]
            status: Option<Status>,
        }
        let review: Review = serde_json::from_slice(&answer).map_err(|e| {
            format!("the authentication webhook's answer is not a TokenReview: {e}")
        })?;
        let status = review
            .status
            .ok_or_else(|| "the authentication webhook's answer has no status".to_owned())?;
        let outcome = if status.authenticated {
            if status.user.username.is_empty() {
                return Err("the authentication webhook authenticated a user with no name".into());
            }
            let mut user = status.user;
            if !user.groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
                user.groups.push(AUTHENTICATED_GROUP.into());
            }
            Some(user)
        } else if !status.error.is_empty() {
            return Err(format!(
                "the authentication webhook reported: {}",
                status.error
            ));
        } else {
            None
        };
        hook.cache
            .insert(token.to_owned(), outcome.clone(), hook.config.cache_ttl);
        Ok(outcome)
    }

    async fn authorize(&self, user: &UserInfo, info: &RequestInfo) -> Result<Decision, String> {
        if user.groups.iter().any(|g| g == MASTERS_GROUP) {
            return Ok(Decision {
                allowed: true,
                denied: false,
                reason: String::new(),
            });
        }
        let Some(hook) = &self.authz else {
            return Ok(Decision {
                allowed: true,
                denied: false,
                reason: String::new(),
            });
        };
        let version = hook.config.version;
        let (attributes_key, attributes) = info.spec_attributes();
        let groups_key = match version {
            ReviewVersion::V1 => "groups",
            ReviewVersion::V1beta1 => "group",
        };
        let mut spec =
            json!({attributes_key: attributes, "user": user.username, groups_key: user.groups});
        if !user.extra.is_empty() {
            spec["extra"] = json!(user.extra);
        }
        if !user.uid.is_empty() {
            spec["uid"] = json!(user.uid);
        }
        let key = spec.to_string();
        if let Some(decision) = hook.cache.get(&key) {
            return Ok(decision);
        }
        let body = json!({
            "apiVersion": format!("authorization.k8s.io/{}", version.as_str()),
            "kind": "SubjectAccessReview",
            "metadata": {"creationTimestamp": null},
            "spec": spec,
            "status": {"allowed": false},
        });
        let answer = hook.client.post(body.to_string().as_bytes()).await?;
        let status = serde_json::from_slice::<Value>(&answer)
            .ok()
            .and_then(|v| v.get("status").cloned())
            .filter(Value::is_object)
            .ok_or_else(|| {
                "the authorization webhook's answer is not a SubjectAccessReview".to_owned()
            })?;
        let flag = |k: &str| status[k].as_bool().unwrap_or(false);
        let decision = Decision {
            allowed: flag("allowed") && !flag("denied"),
            denied: flag("denied"),
            reason: status["reason"].as_str().unwrap_or_default().to_owned(),
        };
        if flag("allowed") && flag("denied") {
            return Err("the authorization webhook both allowed and denied the request".into());
        }
        // As kube-apiserver: huge requests (user-controlled attributes) are not cached.
        if key.len() <= 10_000 {
            let ttl = if decision.allowed {
                hook.config.authorized_ttl
            } else {
                hook.config.unauthorized_ttl
            };
            hook.cache.insert(key, decision.clone(), ttl);
        }
        Ok(decision)
    }
}

/// What the gate does with a request.
pub(crate) enum Admission {
    /// Serve it.
    Pass(Request),
    /// Answer this instead.
    Answer(Response),
}

fn status_response(code: StatusCode, body: &Value) -> Response {
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// kube-apiserver's 401.
fn unauthorized() -> Response {
    status_response(
        StatusCode::UNAUTHORIZED,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "Unauthorized", "reason": "Unauthorized", "code": 401}),
    )
}

/// kube-apiserver's 403.
fn forbidden(info: &RequestInfo, user: &UserInfo, reason: &str) -> Response {
    let mut error = info.forbidden_message(&user.username);
    if !reason.is_empty() {
        error = format!("{error}: {reason}");
    }
    let (message, details) = match info {
        RequestInfo::Resource {
            group,
            resource,
            name,
            ..
        } => {
            let qualified = if group.is_empty() {
                resource.clone()
            } else {
                format!("{resource}.{group}")
            };
            let message = if name.is_empty() {
                format!("{qualified} is forbidden: {error}")
            } else {
                format!("{qualified} {name:?} is forbidden: {error}")
            };
            let mut details = json!({"kind": resource});
            if !name.is_empty() {
                details["name"] = json!(name);
            }
            if !group.is_empty() {
                details["group"] = json!(group);
            }
            (message, details)
        }
        RequestInfo::NonResource { .. } => (format!("forbidden: {error}"), json!({})),
    };
    status_response(
        StatusCode::FORBIDDEN,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": message, "reason": "Forbidden", "details": details, "code": 403}),
    )
}

/// kube-apiserver's 500 when an authorizer fails (plain text).
fn internal_error(uri: &http::Uri, error: &str) -> Response {
    let mut response = Response::new(Body::from(format!(
        "Internal Server Error: {:?}: {error}",
        uri.to_string()
    )));
    *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

fn bearer(request: &Request) -> Option<String> {
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then(|| token.to_owned())
}

/// Which self review a request is, if any.
#[derive(Clone, Copy, PartialEq, Eq)]
enum SelfReview {
    Access,
    Rules,
    Subject,
}

fn self_review(request: &Request) -> Option<SelfReview> {
    if request.method() != Method::POST {
        return None;
    }
    match request.uri().path().trim_end_matches('/') {
        "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews" => Some(SelfReview::Access),
        "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews" => Some(SelfReview::Rules),
        "/apis/authentication.k8s.io/v1/selfsubjectreviews" => Some(SelfReview::Subject),
        _ => None,
    }
}

/// The one point where the request path meets access control: authenticate, authorize,
/// and answer the self reviews.
pub(crate) async fn admit(gate: Option<&Gate>, request: Request) -> Admission {
    let review = self_review(&request);
    let Some(gate) = gate else {
        return match review {
            None => Admission::Pass(request),
            Some(kind) => {
                let anonymous = UserInfo {
                    username: "system:anonymous".into(),
                    groups: vec!["system:unauthenticated".into()],
                    ..UserInfo::default()
                };
                Admission::Answer(answer_self_review(None, kind, &anonymous, request).await)
            }
        };
    };
    let Some(token) = bearer(&request) else {
        return Admission::Answer(unauthorized());
    };
    let user = match gate.authenticate(&token).await {
        Ok(Some(user)) => user,
        Ok(None) => return Admission::Answer(unauthorized()),
        Err(error) => {
            tracing::warn!(%error, "token authentication failed");
            return Admission::Answer(unauthorized());
        }
    };
    let info = RequestInfo::new(
        request.method(),
        request.uri().path(),
        request.uri().query(),
    );
    match gate.authorize(&user, &info).await {
        Ok(decision) if decision.allowed => {}
        Ok(decision) => {
            tracing::debug!(user = %user.username, verb = info.verb(), reason = %decision.reason, "forbidden");
            return Admission::Answer(forbidden(&info, &user, &decision.reason));
        }
        Err(error) => {
            tracing::warn!(%error, "authorization failed");
            return Admission::Answer(internal_error(request.uri(), &error));
        }
    }
    match review {
        None => Admission::Pass(request),
        Some(kind) => Admission::Answer(answer_self_review(Some(gate), kind, &user, request).await),
    }
}

async fn answer_self_review(
    gate: Option<&Gate>,
    kind: SelfReview,
    user: &UserInfo,
    request: Request,
) -> Response {
    let bad = |message: String| {
        status_response(
            StatusCode::BAD_REQUEST,
            &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": message, "reason": "BadRequest", "code": 400}),
        )
    };
    let headers = request.headers().clone();
    let body = match axum::body::to_bytes(request.into_body(), crate::MAX_BODY_BYTES).await {
        Ok(body) => body,
        Err(e) => return bad(format!("reading the request body failed: {e}")),
    };
    // JSON, YAML or the protobuf kubectl posts.
    let object = match crate::server::decode_object(&headers, &body) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => return bad("the body is not an object".into()),
        Err(e) => return bad(e.message),
    };
    let spec = object.get("spec").cloned().unwrap_or_else(|| json!({}));
    let (kind_name, api_version, status) = match kind {
        SelfReview::Subject => (
            "SelfSubjectReview",
            "authentication.k8s.io/v1",
            json!({"userInfo": user}),
        ),
        SelfReview::Rules => {
            let masters = user.groups.iter().any(|g| g == MASTERS_GROUP);
            let (resource_rules, non_resource_rules) =
                if masters || gate.is_none_or(|g| g.authz.is_none()) {
                    (
                        json!([{"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}]),
                        json!([{"verbs": ["*"], "nonResourceURLs": ["*"]}]),
                    )
                } else {
                    (json!([]), json!([]))
                };
            let mut status = json!({"resourceRules": resource_rules, "nonResourceRules": non_resource_rules, "incomplete": false});
            if gate.is_some_and(|g| g.authz.is_some()) {
                status["incomplete"] = json!(true);
                status["evaluationError"] =
                    json!("webhook authorizer does not support user rule resolution");
            }
            ("SelfSubjectRulesReview", "authorization.k8s.io/v1", status)
        }
        SelfReview::Access => {
            let Some(info) = RequestInfo::from_spec(&spec) else {
                return bad(
                    "spec: exactly one of resourceAttributes and nonResourceAttributes is required"
                        .into(),
                );
            };
            let status = match gate {
                None => json!({"allowed": true}),
                Some(gate) => match gate.authorize(user, &info).await {
                    Ok(d) => {
                        let mut s = json!({"allowed": d.allowed});
                        if d.denied {
                            s["denied"] = json!(true);
                        }
                        if !d.reason.is_empty() {
                            s["reason"] = json!(d.reason);
                        }
                        s
                    }
                    Err(error) => json!({"allowed": false, "evaluationError": error}),
                },
            };
            ("SelfSubjectAccessReview", "authorization.k8s.io/v1", status)
        }
    };
    let mut answer = json!({
        "kind": kind_name,
        "apiVersion": api_version,
        "metadata": {"creationTimestamp": null},
        "status": status,
    });
    if kind != SelfReview::Subject {
        answer["spec"] = spec;
    }
    status_response(StatusCode::CREATED, &answer)
}
