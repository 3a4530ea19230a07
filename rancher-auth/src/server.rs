//! The webhook server (feature `server`): `POST /authenticate` (TokenReview), `POST
//! /authorize` (SubjectAccessReview) and `GET /kubeconfig`, over HTTPS.
//!
//! - Definite answers are HTTP 200 in the version asked, so kube-apiserver caches them.
//! - Malformed reviews, unknown API versions and bodies over [`MAX_BODY_BYTES`] get 400 or
//!   413 with a `Status` body naming the problem.
//! - When the authenticator or authorizer cannot tell (Rancher down, slow, garbled) the
//!   answer is 503 with a `Status` body: kube-apiserver treats it as a failure (the request
//!   is denied, nothing is cached) and, as the answer is neither 500 nor 429 and carries no
//!   `Retry-After`, does not retry it, so an outage does not multiply the load on Rancher.
//! - `GET /kubeconfig` takes the caller's Rancher key (`Authorization: Basic` with the key
//!   pair, or `Bearer ACCESS:SECRET`), checks it like a TokenReview, and answers with a
//!   kubeconfig for the cluster ([`ClusterInfo`]) carrying that key as token.
//! - Tokens never reach a log line, a metric label or an answer other than the caller's own
//!   kubeconfig.

pub mod metrics;
pub mod tls;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use axum::routing::{get, post};
use base64::Engine as _;
use http::{HeaderMap, HeaderValue, StatusCode, header};
use serde_json::json;

pub use metrics::{DecisionLabels, Metrics, ResultLabels, ReviewLabels};

use crate::authn::Authentication;
use crate::authz::{Authorizer, Verdict};
use crate::cache::CachingAuthenticator;
use crate::error::Error;
use crate::identity::Token;
use crate::kubeconfig::ClusterInfo;
use crate::review;

/// The largest review body accepted (1 MiB); TokenReviews and SubjectAccessReviews are a
/// few hundred bytes.
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Webhook settings.
#[derive(Clone, Debug)]
pub struct WebhookConfig {
    /// How long one answer may take before it is a 503 (default 3 s, below kube-apiserver's
    /// webhook timeouts).
    pub timeout: Duration,
    /// The cluster for `GET /kubeconfig`; `None` turns the endpoint off (404).
    pub cluster: Option<ClusterInfo>,
}

impl Default for WebhookConfig {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(3),
            cluster: None,
        }
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct Webhook {
    authn: Arc<CachingAuthenticator>,
    authz: Arc<dyn Authorizer>,
    config: Arc<WebhookConfig>,
    metrics: Metrics,
}

impl std::fmt::Debug for Webhook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhook")
            .field("authn", &self.authn)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Webhook {
    /// A webhook answering TokenReviews with `authn` and SubjectAccessReviews with `authz`.
    pub fn new(
        authn: Arc<CachingAuthenticator>,
        authz: Arc<dyn Authorizer>,
        config: WebhookConfig,
        metrics: Metrics,
    ) -> Self {
        Self {
            authn,
            authz,
            config: Arc::new(config),
            metrics,
        }
    }

    /// The routes.
    pub fn router(&self) -> axum::Router {
        axum::Router::new()
            .route("/authenticate", post(authenticate))
            .route("/authorize", post(authorize))
            .route("/kubeconfig", get(kubeconfig))
            .fallback(not_found)
            .with_state(self.clone())
    }
}

/// A `Status` answer, as kube-apiserver's own errors look.
fn status(code: StatusCode, reason: &str, message: &str) -> Response {
    let body = json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code.as_u16(),
    });
    let mut response = Response::new(Body::from(body.to_string()));
    *response.status_mut() = code;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn json_ok(body: Vec<u8>) -> Response {
    let mut response = Response::new(Body::from(body));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

fn bad_request(message: &str) -> Response {
    status(StatusCode::BAD_REQUEST, "BadRequest", message)
}

fn unavailable(error: &Error) -> Response {
    status(
        StatusCode::SERVICE_UNAVAILABLE,
        "ServiceUnavailable",
        &error.one_line(),
    )
}

async fn not_found(request: Request) -> Response {
    status(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!(
            "{} {} is not served here (POST /authenticate, POST /authorize, GET /kubeconfig)",
            request.method(),
            request.uri().path()
        ),
    )
}

async fn read_body(request: Request) -> Result<axum::body::Bytes, Response> {
    let too_large = || {
        status(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestEntityTooLarge",
            &format!("the body is larger than {MAX_BODY_BYTES} bytes"),
        )
    };
    if request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|len| len > MAX_BODY_BYTES)
    {
        return Err(too_large());
    }
    axum::body::to_bytes(request.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|e| {
            let limit = std::error::Error::source(&e)
                .is_some_and(|s| s.to_string().contains("length limit"))
                || e.to_string().contains("length limit");
            if limit {
                too_large()
            } else {
                bad_request(&format!("reading the body failed: {e}"))
            }
        })
}

async fn with_timeout<T>(
    timeout: Duration,
    work: impl Future<Output = crate::Result<T>>,
) -> crate::Result<T> {
    tokio::time::timeout(timeout, work)
        .await
        .unwrap_or(Err(Error::Timeout {
            backend: "the webhook".into(),
            after: timeout,
        }))
}

async fn authenticate(State(hook): State<Webhook>, request: Request) -> Response {
    const REVIEW: &str = "authenticate";
    let started = Instant::now();
    let response = async {
        let body = match read_body(request).await {
            Ok(body) => body,
            Err(response) => return ("bad_request", response),
        };
        let review = match review::parse_token_review(&body) {
            Ok(review) => review,
            Err(e) => return ("bad_request", bad_request(&e.0)),
        };
        let lookup = async {
            let (answer, source) = hook.authn.lookup(&review.token).await;
            hook.metrics
                .token_cache
                .get_or_create(&metrics::ResultLabels {
                    result: source.as_str(),
                })
                .inc();
            answer
        };
        match with_timeout(hook.config.timeout, lookup).await {
            Ok(outcome) => {
                let decision = match &outcome {
                    Authentication::Authenticated(user) => {
                        tracing::debug!(user = %user.username, "token authenticated");
                        "authenticated"
                    }
                    Authentication::Unauthenticated { reason } => {
                        tracing::debug!(%reason, "token not authenticated");
                        "unauthenticated"
                    }
                };
                (
                    decision,
                    json_ok(review::token_review_response(review.version, &outcome)),
                )
            }
            Err(e) => {
                tracing::warn!(error = %e.one_line(), "a token could not be judged");
                ("error", unavailable(&e))
            }
        }
    }
    .await;
    finish(&hook, REVIEW, response, started)
}

async fn authorize(State(hook): State<Webhook>, request: Request) -> Response {
    const REVIEW: &str = "authorize";
    let started = Instant::now();
    let response = async {
        let body = match read_body(request).await {
            Ok(body) => body,
            Err(response) => return ("bad_request", response),
        };
        let review = match review::parse_subject_access_review(&body) {
            Ok(review) => review,
            Err(e) => return ("bad_request", bad_request(&e.0)),
        };
        match with_timeout(
            hook.config.timeout,
            hook.authz.authorize(&review.attributes),
        )
        .await
        {
            Ok(decision) => {
                tracing::debug!(
                    user = %review.attributes.user.username,
                    request = %review.attributes,
                    verdict = ?decision.verdict,
                    reason = %decision.reason,
                    "decided"
                );
                let label = match decision.verdict {
                    Verdict::Allow => "allowed",
                    Verdict::Deny => "denied",
                    Verdict::NoOpinion => "no_opinion",
                };
                (
                    label,
                    json_ok(review::subject_access_review_response(
                        review.version,
                        &decision,
                    )),
                )
            }
            Err(e) => {
                tracing::warn!(error = %e.one_line(), "a request could not be authorized");
                ("error", unavailable(&e))
            }
        }
    }
    .await;
    finish(&hook, REVIEW, response, started)
}

/// The token in an `Authorization` header: the key pair of `Basic`, or a `Bearer` token.
fn token_of(headers: &HeaderMap) -> Option<Token> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?.trim();
    let (scheme, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(rest)
            .ok()?;
        return String::from_utf8(decoded).ok().map(Token::new);
    }
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| Token::new(rest))
}

fn unauthorized(message: &str) -> Response {
    let mut response = status(StatusCode::UNAUTHORIZED, "Unauthorized", message);
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(
            "Basic realm=\"rancher-auth: your Rancher API key (access key and secret key)\"",
        ),
    );
    response
}

async fn kubeconfig(State(hook): State<Webhook>, headers: HeaderMap) -> Response {
    const REVIEW: &str = "kubeconfig";
    let started = Instant::now();
    let response = async {
        let Some(cluster) = &hook.config.cluster else {
            return (
                "bad_request",
                status(
                    StatusCode::NOT_FOUND,
                    "NotFound",
                    "this webhook hands out no kubeconfigs (start it with --cluster-server)",
                ),
            );
        };
        let Some(token) = token_of(&headers) else {
            return (
                "unauthenticated",
                unauthorized("send your Rancher API key: basic authentication with the access key and secret key"),
            );
        };
        match with_timeout(hook.config.timeout, async { hook.authn.lookup(&token).await.0 }).await {
            Ok(Authentication::Authenticated(user)) => {
                tracing::info!(user = %user.username, "kubeconfig issued");
                let mut response = Response::new(Body::from(cluster.kubeconfig(&token)));
                let headers = response.headers_mut();
                headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/yaml"));
                headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
                ("authenticated", response)
            }
            Ok(Authentication::Unauthenticated { reason }) => {
                tracing::debug!(%reason, "kubeconfig refused");
                ("unauthenticated", unauthorized("Unauthorized"))
            }
            Err(e) => {
                tracing::warn!(error = %e.one_line(), "a kubeconfig request could not be judged");
                ("error", unavailable(&e))
            }
        }
    }
    .await;
    finish(&hook, REVIEW, response, started)
}

fn finish(
    hook: &Webhook,
    review: &'static str,
    (decision, response): (&'static str, Response),
    started: Instant,
) -> Response {
    hook.metrics.decided(review, decision);
    hook.metrics.took(review, started.elapsed().as_secs_f64());
    response
}
