//! The sandbox as an authenticating, authorizing API server: webhooks named by kubeconfig
//! files, TokenReview and SubjectAccessReview requests in the configured version, the
//! 401 and 403 `Status` answers of kube-apiserver, the self reviews behind `kubectl auth`,
//! and the real `kubectl` against it.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::{Json, extract::State, http::StatusCode, response::IntoResponse, routing::post};
use base64::Engine as _;
use rancher_sandbox::{
    Sandbox,
    access::{Access, AuthenticationWebhook, AuthorizationWebhook, ReviewVersion},
};
use serde_json::{Value, json};

use crate::kubectl::Kubectl;

/// A webhook pair answering from fixed tables, recording what it was asked.
#[derive(Default)]
struct Hook {
    reviews: Mutex<Vec<Value>>,
    /// Answer every request with this status instead.
    fail_with: Mutex<Option<u16>>,
}

type Shared = State<Arc<Hook>>;

async fn authn(State(hook): Shared, Json(review): Json<Value>) -> axum::response::Response {
    hook.reviews.lock().unwrap().push(review.clone());
    if let Some(code) = *hook.fail_with.lock().unwrap() {
        return (StatusCode::from_u16(code).unwrap(), "webhook failure").into_response();
    }
    let user = match review["spec"]["token"].as_str() {
        Some("alice-token") => Some(json!({"username": "alice", "uid": "a-1", "groups": ["devs"]})),
        Some("bob-token") => Some(json!({"username": "bob", "groups": ["ops"]})),
        _ => None,
    };
    let status = match user {
        Some(user) => json!({"authenticated": true, "user": user}),
        None => json!({"authenticated": false}),
    };
    Json(json!({"apiVersion": review["apiVersion"], "kind": "TokenReview", "status": status}))
        .into_response()
}

async fn authz(State(hook): Shared, Json(review): Json<Value>) -> axum::response::Response {
    hook.reviews.lock().unwrap().push(review.clone());
    if let Some(code) = *hook.fail_with.lock().unwrap() {
        return (StatusCode::from_u16(code).unwrap(), "webhook failure").into_response();
    }
    let spec = &review["spec"];
    let resource = spec["resourceAttributes"]["resource"]
        .as_str()
        .unwrap_or_default();
    let status = match spec["user"].as_str() {
        Some("alice") => json!({"allowed": true}),
        Some("bob") if resource.starts_with("selfsubject") => json!({"allowed": true}),
        Some("bob") if resource == "secrets" => {
            json!({"allowed": false, "denied": true, "reason": "ops may not read secrets"})
        }
        Some("bob")
            if spec.get("nonResourceAttributes").is_some()
                || spec["resourceAttributes"]["verb"] == "list"
                || spec["resourceAttributes"]["verb"] == "get" =>
        {
            json!({"allowed": true})
        }
        _ => json!({"allowed": false, "reason": "no rule for this"}),
    };
    Json(json!({"apiVersion": review["apiVersion"], "kind": "SubjectAccessReview", "status": status})).into_response()
}

struct Setup {
    sandbox: Sandbox,
    hook: Arc<Hook>,
    dir: tempfile::TempDir,
}

fn webhook_kubeconfig(path: &Path, server: &str) {
    std::fs::write(
        path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: hook\n  cluster:\n    server: {server}\nusers:\n- name: apiserver\n  user: {{}}\ncontexts:\n- name: hook\n  context:\n    cluster: hook\n    user: apiserver\ncurrent-context: hook\n"
        ),
    )
    .unwrap();
}

async fn setup(version: ReviewVersion, cache_ttl: Duration) -> Setup {
    crate::install_provider();
    let hook = Arc::new(Hook::default());
    let app = axum::Router::new()
        .route("/authn", post(authn))
        .route("/authz", post(authz))
        .with_state(hook.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().unwrap();
    let authn_file = dir.path().join("authn.kubeconfig");
    let authz_file = dir.path().join("authz.kubeconfig");
    webhook_kubeconfig(&authn_file, &format!("http://{addr}/authn"));
    webhook_kubeconfig(&authz_file, &format!("http://{addr}/authz"));
    let mut authentication = AuthenticationWebhook::new(&authn_file);
    authentication.version = version;
    authentication.cache_ttl = cache_ttl;
    authentication.timeout = Duration::from_secs(5);
    let mut authorization = AuthorizationWebhook::new(&authz_file);
    authorization.version = version;
    authorization.authorized_ttl = cache_ttl;
    authorization.unauthorized_ttl = cache_ttl;
    authorization.timeout = Duration::from_secs(5);
    let sandbox = Sandbox::builder()
        .kubeconfig_path(dir.path().join("admin.kubeconfig"))
        .access(
            Access::new()
                .authentication(authentication)
                .authorization(authorization),
        )
        .start()
        .await
        .expect("the sandbox starts with webhooks");
    Setup { sandbox, hook, dir }
}

impl Setup {
    /// A kubeconfig for the sandbox with this token (none when empty).
    fn kubeconfig(&self, token: &str) -> String {
        let cluster = &self.sandbox.clusters()[0];
        let ca = base64::engine::general_purpose::STANDARD.encode(cluster.ca_pem().unwrap());
        let user = if token.is_empty() {
            "{}".to_owned()
        } else {
            format!("\n    token: {token}")
        };
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: s\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\nusers:\n- name: u\n  user: {user}\ncontexts:\n- name: s\n  context:\n    cluster: s\n    user: u\n    namespace: default\ncurrent-context: s\n",
            cluster.url()
        )
    }

    fn kubectl_as(&self, token: &str) -> Kubectl {
        let path = self.dir.path().join(format!("{token}.kubeconfig"));
        std::fs::write(&path, self.kubeconfig(token)).unwrap();
        Kubectl::new(&path, &self.cache(token))
    }

    /// GETs `path` as the holder of `token` (none when empty), with `authorization` as an
    /// extra header when not empty: (status, body).
    async fn get(&self, path: &str, token: &str, authorization: &str) -> (u16, String) {
        let kubeconfig = kube::config::Kubeconfig::from_yaml(&self.kubeconfig(token)).unwrap();
        let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
            .await
            .unwrap();
        let client = kube::Client::try_from(config).unwrap();
        let mut request = http::Request::get(path);
        if !authorization.is_empty() {
            request = request.header("authorization", authorization);
        }
        let response = client
            .send(request.body(Vec::new()).unwrap().map(Into::into))
            .await
            .unwrap();
        let code = response.status().as_u16();
        let body = http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap()
            .to_bytes();
        (code, String::from_utf8_lossy(&body).into_owned())
    }

    fn cache(&self, who: &str) -> PathBuf {
        self.dir.path().join(format!("cache-{who}"))
    }

    fn reviews(&self, kind: &str) -> Vec<Value> {
        self.hook
            .reviews
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r["kind"] == kind)
            .cloned()
            .collect()
    }
}

#[tokio::test]
async fn kubectl_gets_kube_apiserver_answers_through_the_webhooks() {
    let s = setup(ReviewVersion::V1, Duration::from_secs(60)).await;

    // The admin kubeconfig the sandbox wrote: system:masters, no webhook asked to authorize.
    let admin = Kubectl::new(&s.dir.path().join("admin.kubeconfig"), &s.cache("admin"));
    admin
        .ok(&["create", "secret", "generic", "db", "--from-literal=k=v"])
        .await;
    assert!(s.reviews("SubjectAccessReview").is_empty());
    assert!(s.reviews("TokenReview").is_empty());

    // alice is allowed everything by the webhook.
    let alice = s.kubectl_as("alice-token");
    let out = alice.ok(&["get", "secrets"]).await;
    assert!(out.contains("db"), "{out}");
    let whoami = alice.ok(&["auth", "whoami", "-o", "json"]).await;
    let whoami: Value = serde_json::from_str(&whoami).unwrap();
    assert_eq!(whoami["status"]["userInfo"]["username"], "alice");
    assert_eq!(
        whoami["status"]["userInfo"]["groups"],
        json!(["devs", "system:authenticated"])
    );
    assert_eq!(
        alice.ok(&["auth", "can-i", "delete", "nodes"]).await.trim(),
        "yes"
    );

    // bob may read but not secrets, and not write.
    let bob = s.kubectl_as("bob-token");
    bob.ok(&["get", "configmaps"]).await;
    let (ok, _, err) = bob.run(&["get", "secrets"]).await;
    assert!(!ok);
    assert!(
        err.contains(r#"Error from server (Forbidden): secrets is forbidden: User "bob" cannot list resource "secrets" in API group "" in the namespace "default": ops may not read secrets"#),
        "{err}"
    );
    let (ok, out, _) = bob.run(&["auth", "can-i", "create", "configmaps"]).await;
    assert!(!ok);
    assert_eq!(out.trim(), "no - no rule for this");
    let (ok, _, err) = bob.run(&["create", "configmap", "x"]).await;
    assert!(!ok);
    assert!(err.contains(r#"configmaps is forbidden: User "bob" cannot create resource "configmaps" in API group "" in the namespace "default": no rule for this"#), "{err}");

    // A token nobody knows.
    let eve = s.kubectl_as("eve-token");
    let (ok, _, err) = eve.run(&["get", "pods"]).await;
    assert!(!ok);
    // kubectl's own wording of kube-apiserver's 401 on discovery.
    assert!(
        err.contains("error: You must be logged in to the server"),
        "{err}"
    );

    // The reviews are v1, with kube-apiserver's attributes.
    let sar = s.reviews("SubjectAccessReview");
    assert!(
        sar.iter()
            .all(|r| r["apiVersion"] == "authorization.k8s.io/v1")
    );
    assert!(
        sar.iter().any(|r| r["spec"]["resourceAttributes"]
            == json!({"namespace": "default", "verb": "list", "version": "v1", "resource": "secrets"})
            && r["spec"]["user"] == "bob"
            && r["spec"]["groups"] == json!(["ops", "system:authenticated"])),
        "{sar:#?}"
    );
    assert!(
        s.reviews("TokenReview")
            .iter()
            .all(|r| r["apiVersion"] == "authentication.k8s.io/v1")
    );
}

#[tokio::test]
async fn answers_are_cached_for_the_ttl_and_errors_are_not() {
    let s = setup(ReviewVersion::V1beta1, Duration::from_millis(600)).await;
    let get = |token: &'static str| s.get("/api/v1/namespaces/default/configmaps", token, "");

    let (code, _) = get("bob-token").await;
    assert_eq!(code, 200);
    let (code, _) = get("bob-token").await;
    assert_eq!(code, 200);
    assert_eq!(
        s.reviews("TokenReview").len(),
        1,
        "the second request used the cache"
    );
    assert_eq!(s.reviews("SubjectAccessReview").len(), 1);
    // v1beta1 puts the groups under `group`.
    assert_eq!(
        s.reviews("SubjectAccessReview")[0]["spec"]["group"],
        json!(["ops", "system:authenticated"])
    );
    assert_eq!(
        s.reviews("TokenReview")[0]["apiVersion"],
        "authentication.k8s.io/v1beta1"
    );

    // After the TTL the webhook is asked again.
    crate::eventually("the cache to expire", || async {
        get("bob-token").await;
        (s.reviews("TokenReview").len() > 1).then_some(())
    })
    .await;

    // The webhooks fail: tokens in the cache still work until the TTL; new ones get 401;
    // the authorizer failing is kube-apiserver's 500.
    *s.hook.fail_with.lock().unwrap() = Some(503);
    let (code, body) = get("alice-token").await;
    assert_eq!(code, 401, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap(),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": "Unauthorized", "reason": "Unauthorized", "code": 401})
    );
    crate::eventually(
        "bob's cached answers to expire and the authorizer to fail",
        || async {
            let (code, body) = get("bob-token").await;
            match code {
                200 => None,
                401 => Some(()),
                500 => {
                    assert!(
                        body.starts_with(
                            "Internal Server Error: \"/api/v1/namespaces/default/configmaps\": "
                        ),
                        "{body}"
                    );
                    None
                }
                other => panic!("{other}: {body}"),
            }
        },
    )
    .await;
    let failed = s.reviews("TokenReview").len();
    let (code, _) = get("alice-token").await;
    assert_eq!(code, 401);
    assert!(
        s.reviews("TokenReview").len() > failed,
        "errors are not cached"
    );
}

#[tokio::test]
async fn status_bodies_and_odd_credentials() {
    let s = setup(ReviewVersion::V1, Duration::from_secs(60)).await;
    // 403 with kube-apiserver's details.
    let (code, body) = s
        .get("/api/v1/namespaces/default/secrets/db", "bob-token", "")
        .await;
    assert_eq!(code, 403);
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        body,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": "secrets \"db\" is forbidden: User \"bob\" cannot get resource \"secrets\" in API group \"\" in the namespace \"default\": ops may not read secrets",
            "reason": "Forbidden", "details": {"name": "db", "kind": "secrets"}, "code": 403})
    );
    // No token, odd schemes and odd tokens: 401, never a pass.
    for header in [
        "",
        "Basic YWxpY2U6eA==",
        "Bearer ",
        "Bearer alice-token extra",
        "bearer\talice-token",
    ] {
        let (code, _) = s.get("/api/v1/pods", "", header).await;
        assert_eq!(code, 401, "{header:?}");
    }
    // The admin token is accepted, and the self reviews answer without any webhook.
    let token = s.sandbox.clusters()[0].token().unwrap().to_owned();
    let (code, _) = s.get("/api/v1/nodes", &token, "").await;
    assert_eq!(code, 200);
    assert!(
        s.reviews("SubjectAccessReview")
            .iter()
            .all(|r| r["spec"]["user"] != "kubernetes-admin")
    );
}

#[tokio::test]
async fn without_access_control_everyone_may_do_everything() {
    crate::install_provider();
    let dir = tempfile::tempdir().unwrap();
    let sandbox = Sandbox::builder()
        .kubeconfig_path(dir.path().join("kubeconfig"))
        .start()
        .await
        .unwrap();
    assert!(sandbox.clusters()[0].token().is_none());
    assert!(sandbox.clusters()[0].url().starts_with("http://"));
    let kubectl = Kubectl::new(&dir.path().join("kubeconfig"), &dir.path().join("cache"));
    assert_eq!(
        kubectl
            .ok(&["auth", "can-i", "create", "clusterroles"])
            .await
            .trim(),
        "yes"
    );
    let whoami = kubectl.ok(&["auth", "whoami", "-o", "json"]).await;
    let whoami: Value = serde_json::from_str(&whoami).unwrap();
    assert_eq!(whoami["status"]["userInfo"]["username"], "system:anonymous");
}
