//! The Secret provider against a mocked API server (tower-test): one `GET` of the
//! named Secret per request, and clear errors when it is missing, forbidden or of
//! the wrong type.

use std::time::Duration;

use base64::Engine as _;
use http::{Method, Request as HttpRequest, Response as HttpResponse, StatusCode};
use kube::client::Body;
use rancher_credentials::{
    CredentialProvider,
    model::{CacheKeyType, Request},
    provider::{SecretConfig, SecretProvider, SecretRef},
    testing::{Expectations, conformance},
};
use serde_json::{Value, json};
use tokio::task::JoinHandle;
use tower_test::mock::Handle;

type ApiHandle = Handle<HttpRequest<Body>, HttpResponse<Body>>;

const PATH: &str = "/api/v1/namespaces/kube-system/secrets/registry-credentials";

fn provider(cache_duration: Option<Duration>) -> (SecretProvider, ApiHandle) {
    let (service, handle) = tower_test::mock::pair::<HttpRequest<Body>, HttpResponse<Body>>();
    let client = kube::Client::new(service, "default");
    let config = SecretConfig {
        cache_duration,
        ..SecretConfig::new(SecretRef::new("kube-system", "registry-credentials"))
    };
    (SecretProvider::new(client, config), handle)
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn dockerconfigjson_secret() -> Value {
    let config = json!({"auths": {
        "registry.example.org": {"auth": b64("robot:s3cr3t")},
        "registry.example.org:5000": {"username": "port-robot", "password": "p0rt"},
    }});
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "registry-credentials", "namespace": "kube-system"},
        "type": "kubernetes.io/dockerconfigjson",
        "data": {".dockerconfigjson": b64(&config.to_string())}
    })
}

fn status(code: u16, reason: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("secrets \"registry-credentials\" is {reason}"),
        "reason": reason, "code": code
    })
}

/// Answers every request with `status` and `body`, checking it is a GET of the
/// Secret; returns how many requests it served.
fn serve(mut handle: ApiHandle, status: StatusCode, body: Value) -> JoinHandle<usize> {
    tokio::spawn(async move {
        let mut served = 0;
        while let Some((request, send)) = handle.next_request().await {
            assert_eq!(request.method(), Method::GET);
            assert_eq!(request.uri().path(), PATH);
            send.send_response(
                HttpResponse::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap(),
            );
            served += 1;
        }
        served
    })
}

#[tokio::test]
async fn passes_the_conformance_battery_with_one_get_per_request() {
    let (provider, handle) = provider(Some(Duration::from_secs(120)));
    let server = serve(handle, StatusCode::OK, dockerconfigjson_secret());
    conformance(
        &provider,
        &Expectations::new("registry.example.org/team/app", "robot", "s3cr3t"),
    )
    .await;
    conformance(
        &provider,
        &Expectations::new("registry.example.org:5000/team/app", "port-robot", "p0rt"),
    )
    .await;
    let response = provider
        .credentials(&Request::new("registry.example.org:5000/app"))
        .await
        .unwrap();
    assert_eq!(response.cache_key_type, CacheKeyType::Registry);
    assert_eq!(response.cache_duration, Some(Duration::from_secs(120)));
    drop(provider);
    // Two batteries of 6 requests each (image, tagged, digest, unknown, two
    // concurrent), plus the last one: exactly one GET per request.
    assert_eq!(server.await.unwrap(), 13);
}

#[tokio::test]
async fn a_missing_secret_is_an_error_naming_it() {
    let (provider, handle) = provider(None);
    let server = serve(handle, StatusCode::NOT_FOUND, status(404, "NotFound"));
    let err = provider
        .credentials(&Request::new("registry.example.org/app"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid credentials in secret kube-system/registry-credentials: not found"
    );
    drop(provider);
    assert_eq!(server.await.unwrap(), 1);
}

#[tokio::test]
async fn a_forbidden_secret_is_a_backend_error() {
    let (provider, handle) = provider(None);
    let _server = serve(handle, StatusCode::FORBIDDEN, status(403, "Forbidden"));
    let err = provider
        .credentials(&Request::new("registry.example.org/app"))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "reading secret kube-system/registry-credentials failed"
    );
    let cause = std::error::Error::source(&err).unwrap().to_string();
    assert!(
        cause.contains("Forbidden") || cause.contains("403"),
        "{cause}"
    );
}

#[tokio::test]
async fn a_secret_of_another_type_is_rejected_without_quoting_it() {
    let (provider, handle) = provider(None);
    let mut secret = dockerconfigjson_secret();
    secret["type"] = json!("Opaque");
    let _server = serve(handle, StatusCode::OK, secret);
    let err = provider
        .credentials(&Request::new("registry.example.org/app"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("type is \"Opaque\""), "{err}");
    assert!(
        !err.contains("s3cr3t") && !err.contains(&b64("robot:s3cr3t")),
        "{err}"
    );
}
