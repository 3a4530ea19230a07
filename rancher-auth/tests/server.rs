//! The webhook server over HTTPS with the request shapes kube-apiserver sends: answers in
//! both API versions, fail-closed errors, bad input, `GET /kubeconfig`, metrics, and the
//! certificate reloaded when its files change.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::registry::Registry;
use rancher_auth::{
    EnvironmentAuthorizer, RoleTable, UserInfo,
    cache::{CacheConfig, CachingAuthenticator},
    environment::environment_group,
    kubeconfig::ClusterInfo,
    server::{
        Metrics, Webhook, WebhookConfig,
        tls::{ReloadingCert, TlsFiles},
    },
    testing::FakeAuthenticator,
};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(name)
}

struct Server {
    url: String,
    authn: Arc<FakeAuthenticator>,
    registry: Arc<Registry>,
    shutdown: CancellationToken,
    addr: std::net::SocketAddr,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn start(files: TlsFiles, config: WebhookConfig, reload_every: Option<Duration>) -> Server {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let member = UserInfo::new("mike").with_group(environment_group("1a5", "member"));
    let owner = UserInfo::new("olivia").with_group(environment_group("1a5", "owner"));
    let authn = Arc::new(
        FakeAuthenticator::new()
            .with_token("MIKE:secret", member)
            .with_token("OLIVIA:secret", owner),
    );
    let cached = Arc::new(CachingAuthenticator::new(
        authn.clone(),
        CacheConfig::default(),
    ));
    let authz = Arc::new(EnvironmentAuthorizer::new("1a5", RoleTable::default()));
    let mut registry = Registry::with_prefix("rancher_auth");
    let metrics = Metrics::register(&mut registry);
    let hook = Webhook::new(cached, authz, config, metrics.clone());
    let cert = ReloadingCert::load(files).expect("the test certificate loads");
    let tls = Arc::new(cert.server_config().unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let shutdown = CancellationToken::new();
    tokio::spawn(rancher_auth::server::tls::serve(
        listener,
        tls,
        hook.router(),
        shutdown.clone(),
    ));
    if let Some(every) = reload_every {
        let metrics = metrics.clone();
        tokio::spawn(cert.watch(every, shutdown.clone(), move |result| {
            metrics.certificate_reloaded(result.is_ok());
        }));
    }
    Server {
        url: format!("https://127.0.0.1:{}", addr.port()),
        authn,
        registry: Arc::new(registry),
        shutdown,
        addr,
    }
}

fn client() -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(&std::fs::read(data("ca.crt")).unwrap()).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([ca])
        .build()
        .unwrap()
}

async fn post(client: &reqwest::Client, url: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    let response = client
        .post(url)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn token_review(api: &str, token: &str) -> String {
    json!({"apiVersion": api, "kind": "TokenReview", "metadata": {"creationTimestamp": null},
           "spec": {"token": token}, "status": {"user": {}}})
    .to_string()
}

fn sar(api: &str, user: &str, groups: &[&str], attributes: Value) -> String {
    let groups_key = if api.ends_with("v1beta1") {
        "group"
    } else {
        "groups"
    };
    json!({"apiVersion": api, "kind": "SubjectAccessReview",
           "spec": {"resourceAttributes": attributes, "user": user, groups_key: groups}})
    .to_string()
}

fn files() -> TlsFiles {
    TlsFiles::new(data("server-1.crt"), data("server-1.key"))
}

fn metrics_text(server: &Server) -> String {
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &server.registry).unwrap();
    text
}

#[tokio::test]
async fn token_reviews_are_answered_in_the_version_asked_and_fail_closed() {
    let server = start(files(), WebhookConfig::default(), None).await;
    let client = client();
    let url = format!("{}/authenticate", server.url);
    for api in ["authentication.k8s.io/v1", "authentication.k8s.io/v1beta1"] {
        let (code, body) = post(&client, &url, token_review(api, "MIKE:secret")).await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["apiVersion"], api);
        assert_eq!(body["status"]["authenticated"], true);
        assert_eq!(body["status"]["user"]["username"], "mike");
        assert_eq!(
            body["status"]["user"]["groups"],
            json!(["rancher:environment:1a5:member"])
        );
        let (code, body) = post(&client, &url, token_review(api, "MIKE:wrong")).await;
        assert_eq!(
            (code, &body["status"]),
            (200, &json!({"authenticated": false}))
        );
    }
    // Cached: the fake was asked once per token.
    assert_eq!(server.authn.calls(), 2);

    // The backend is down: 503 with a Status, for tokens not in the cache; never a yes.
    server.authn.fail(true);
    let (code, body) = post(
        &client,
        &url,
        token_review("authentication.k8s.io/v1", "OLIVIA:secret"),
    )
    .await;
    assert_eq!(code, 503, "{body}");
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["reason"], "ServiceUnavailable");
    assert!(!body.to_string().contains("OLIVIA:secret"));
    // ... cached members keep access until the TTL.
    let (code, body) = post(
        &client,
        &url,
        token_review("authentication.k8s.io/v1", "MIKE:secret"),
    )
    .await;
    assert_eq!(
        (code, &body["status"]["authenticated"]),
        (200, &json!(true))
    );

    let metrics = metrics_text(&server);
    assert!(
        metrics.contains(
            r#"rancher_auth_decisions_total{review="authenticate",decision="authenticated"} 3"#
        ),
        "{metrics}"
    );
    assert!(
        metrics
            .contains(r#"rancher_auth_decisions_total{review="authenticate",decision="error"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"rancher_auth_token_cache_lookups_total{result="hit"} 3"#),
        "{metrics}"
    );
    assert!(
        metrics.contains("rancher_auth_request_duration_seconds_bucket"),
        "{metrics}"
    );
    assert!(!metrics.contains("secret") && !metrics.contains("MIKE"));
}

#[tokio::test]
async fn subject_access_reviews_follow_the_role_table() {
    let server = start(files(), WebhookConfig::default(), None).await;
    let client = client();
    let url = format!("{}/authorize", server.url);
    let clusterroles = json!({"verb": "create", "group": "rbac.authorization.k8s.io", "version": "v1", "resource": "clusterroles"});
    let owner = ["rancher:environment:1a5:owner", "system:authenticated"];
    let member = ["rancher:environment:1a5:member", "system:authenticated"];
    for api in ["authorization.k8s.io/v1", "authorization.k8s.io/v1beta1"] {
        let (code, body) = post(
            &client,
            &url,
            sar(api, "olivia", &owner, clusterroles.clone()),
        )
        .await;
        assert_eq!(code, 200, "{body}");
        assert_eq!(body["apiVersion"], api);
        assert_eq!(body["status"]["allowed"], true);
        let (_, body) = post(
            &client,
            &url,
            sar(api, "mike", &member, clusterroles.clone()),
        )
        .await;
        assert_eq!(body["status"]["allowed"], false);
        assert_eq!(body["status"]["denied"], true);
        assert!(
            body["status"]["reason"]
                .as_str()
                .unwrap()
                .contains("role member"),
            "{body}"
        );
        let (_, body) = post(
            &client,
            &url,
            sar(
                api,
                "nobody",
                &["system:authenticated"],
                clusterroles.clone(),
            ),
        )
        .await;
        assert_eq!(
            body["status"],
            json!({"allowed": false, "reason": "user \"nobody\" is not a member of Rancher environment 1a5"})
        );
    }
    // Non-resource URLs.
    let body = json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"nonResourceAttributes": {"path": "/version", "verb": "get"}, "user": "mike", "groups": member}});
    let (code, body) = post(&client, &url, body.to_string()).await;
    assert_eq!((code, &body["status"]["allowed"]), (200, &json!(true)));
}

#[tokio::test]
async fn bad_input_gets_a_clear_error_and_never_an_allow() {
    let server = start(files(), WebhookConfig::default(), None).await;
    let client = client();
    let authn = format!("{}/authenticate", server.url);
    let authz = format!("{}/authorize", server.url);
    let cases: Vec<(&str, String, u16, &str)> = vec![
        (&authn, "{".into(), 400, "not a TokenReview in JSON"),
        (&authn, "".into(), 400, "not a TokenReview in JSON"),
        (&authn, token_review("authentication.k8s.io/v2", "MIKE:secret"), 400, "is not supported"),
        (&authn, json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {}}).to_string(), 400, "spec.token is required"),
        (&authz, sar("authorization.k8s.io/v2", "olivia", &["rancher:environment:1a5:owner"], json!({"verb": "get"})), 400, "is not supported"),
        (&authz, json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {"user": "olivia", "groups": ["rancher:environment:1a5:owner"]}}).to_string(), 400, "one of spec.resourceAttributes"),
        (&authz, token_review("authentication.k8s.io/v1", "x"), 400, "is not supported"),
        (&authn, format!("{{\"pad\": \"{}\"}}", "x".repeat(2 * 1024 * 1024)), 413, "larger than"),
    ];
    for (url, body, want, message) in cases {
        let (code, answer) = post(&client, url, body.clone()).await;
        assert_eq!(code, want, "{}: {answer}", &body[..body.len().min(120)]);
        assert_eq!(answer["kind"], "Status", "{answer}");
        assert!(
            answer["message"].as_str().unwrap().contains(message),
            "{answer}"
        );
    }
    // Odd tokens: a definite no, never an error or a yes.
    for token in [
        "",
        "\u{0}",
        "🦀:🦀",
        &"a".repeat(100_000),
        "MIKE:secret\n",
        "Bearer MIKE:secret",
    ] {
        let (code, answer) = post(
            &client,
            &authn,
            token_review("authentication.k8s.io/v1", token),
        )
        .await;
        assert_eq!(
            (code, &answer["status"]["authenticated"]),
            (200, &json!(false))
        );
    }
    // Other methods and paths.
    let get = client.get(&authn).send().await.unwrap();
    assert_eq!(get.status().as_u16(), 405);
    let (code, answer) = post(&client, &format!("{}/nope", server.url), "{}").await;
    assert_eq!((code, answer["reason"].as_str()), (404, Some("NotFound")));
    // A chunked body with no length is limited too.
    let chunks = futures::stream::iter((0..40).map(|_| {
        Ok::<_, std::io::Error>(hyper::body::Frame::data(bytes::Bytes::from(vec![
            b' ';
            64 * 1024
        ])))
    }));
    let response = client
        .post(&authn)
        .body(reqwest::Body::wrap(http_body_util::StreamBody::new(chunks)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
    // Plain HTTP on the TLS port is not served.
    let plain = reqwest::Client::new()
        .post(format!("http://{}/authenticate", server.addr))
        .body(token_review("authentication.k8s.io/v1", "MIKE:secret"))
        .send()
        .await;
    assert!(plain.is_err() || !plain.unwrap().status().is_success());
}

#[tokio::test]
async fn a_slow_backend_is_a_503_within_the_timeout() {
    let config = WebhookConfig {
        timeout: Duration::from_millis(200),
        ..WebhookConfig::default()
    };
    let server = start(files(), config, None).await;
    server.authn.set_delay(Some(Duration::from_secs(5)));
    let started = Instant::now();
    let (code, body) = post(
        &client(),
        &format!("{}/authenticate", server.url),
        token_review("authentication.k8s.io/v1", "MIKE:secret"),
    )
    .await;
    assert_eq!(code, 503, "{body}");
    assert!(started.elapsed() < Duration::from_secs(4));
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("did not answer within"),
        "{body}"
    );
}

#[tokio::test]
async fn kubeconfig_is_issued_for_a_good_key_only() {
    let cluster = ClusterInfo::new("rancher-1a5", "https://k8s.example.org:6443")
        .with_certificate_authority(std::fs::read_to_string(data("ca.crt")).unwrap());
    let config = WebhookConfig {
        cluster: Some(cluster),
        ..WebhookConfig::default()
    };
    let server = start(files(), config, None).await;
    let client = client();
    let url = format!("{}/kubeconfig", server.url);
    let response = client
        .get(&url)
        .basic_auth("MIKE", Some("secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    assert_eq!(response.headers()["cache-control"], "no-store");
    let text = response.text().await.unwrap();
    let config: Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(config["users"][0]["user"]["token"], "MIKE:secret");
    assert_eq!(
        config["clusters"][0]["cluster"]["server"],
        "https://k8s.example.org:6443"
    );
    let bearer = client
        .get(&url)
        .bearer_auth("OLIVIA:secret")
        .send()
        .await
        .unwrap();
    assert_eq!(bearer.status().as_u16(), 200);

    for request in [
        client.get(&url),
        client.get(&url).basic_auth("MIKE", Some("wrong")),
        client.get(&url).header("authorization", "Basic !!!"),
        client.get(&url).header("authorization", "Digest x"),
    ] {
        let response = request.send().await.unwrap();
        assert_eq!(response.status().as_u16(), 401);
        assert!(
            response.headers()["www-authenticate"]
                .to_str()
                .unwrap()
                .starts_with("Basic")
        );
    }

    let without = start(files(), WebhookConfig::default(), None).await;
    let response = client
        .get(format!("{}/kubeconfig", without.url))
        .basic_auth("MIKE", Some("secret"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 404);
}

async fn served_certificate(addr: std::net::SocketAddr) -> Vec<u8> {
    use tokio_rustls::rustls;
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(data("ca.crt")).unwrap();
    for cert in rustls_pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    tls.get_ref().1.peer_certificates().unwrap()[0].to_vec()
}

use rustls_pki_types::pem::PemObject as _;

fn der_of(path: &Path) -> Vec<u8> {
    rustls_pki_types::CertificateDer::from_pem_file(path)
        .unwrap()
        .to_vec()
}

#[tokio::test]
async fn the_certificate_is_reloaded_when_its_files_change() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = (dir.path().join("tls.crt"), dir.path().join("tls.key"));
    std::fs::copy(data("server-1.crt"), &cert).unwrap();
    std::fs::copy(data("server-1.key"), &key).unwrap();
    let server = start(
        TlsFiles::new(&cert, &key),
        WebhookConfig::default(),
        Some(Duration::from_millis(50)),
    )
    .await;
    assert_eq!(
        served_certificate(server.addr).await,
        der_of(&data("server-1.crt"))
    );

    // A half-written pair (new certificate, old key) does not load: the old pair stays.
    std::fs::copy(data("server-2.crt"), &cert).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !metrics_text(&server)
        .contains(r#"rancher_auth_certificate_reloads_total{result="error"}"#)
    {
        assert!(Instant::now() < deadline, "the broken pair was never tried");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        served_certificate(server.addr).await,
        der_of(&data("server-1.crt"))
    );

    // The key follows: the new pair is served.
    std::fs::copy(data("server-2.key"), &key).unwrap();
    let want = der_of(&data("server-2.crt"));
    loop {
        if served_certificate(server.addr).await == want {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the new certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, _) = post(
        &client(),
        &format!("{}/authenticate", server.url),
        token_review("authentication.k8s.io/v1", "MIKE:secret"),
    )
    .await;
    assert_eq!(code, 200);
}

#[test]
fn bad_certificate_files_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not pem").unwrap();
    let missing = dir.path().join("missing.pem");
    for (files, name) in [
        (TlsFiles::new(&missing, data("server-1.key")), "missing.pem"),
        (TlsFiles::new(&garbage, data("server-1.key")), "garbage.pem"),
        (TlsFiles::new(data("server-1.crt"), &garbage), "garbage.pem"),
        (
            TlsFiles::new(data("server-1.crt"), data("server-2.key")),
            "server-2.key",
        ),
    ] {
        let err = ReloadingCert::load(files).unwrap_err();
        assert!(err.to_string().contains(name), "{err}");
    }
}
