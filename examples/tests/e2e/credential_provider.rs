//! `rancher-credential-provider` end to end: the built binary as the kubelet runs
//! it, JSON on stdin, JSON on stdout, the exit code, and stderr that never holds a
//! secret. Rancher is the fake server, in this process on 127.0.0.1.

use std::{process::Stdio, time::Duration};

use base64::Engine as _;
use rancher_client::{Registry, RegistryCredential, testing::FakeRancher};
use rancher_credentials::model::{CacheKeyType, Request, Response};
use serde_json::json;
use tokio::io::AsyncWriteExt;

const BIN: &str = env!("CARGO_BIN_EXE_rancher-credential-provider");

/// Every secret any fixture holds: none may ever reach stderr.
const SECRETS: &[&str] = &[
    "s3cr3t",
    "p0rt",
    "hub-pass",
    "qwerty",
    "asdfgh",
    "zxcvbn",
    "fake-secret-key",
    "wrong-key",
];

struct Run {
    code: i32,
    stdout: Vec<u8>,
    stderr: String,
}

impl Run {
    /// The response, parsed as strictly as the kubelet does.
    fn response(&self) -> Response {
        assert_eq!(self.code, 0, "exit code; stderr: {}", self.stderr);
        Response::from_json(&self.stdout).expect("a response the kubelet accepts")
    }

    /// A failure: nothing on stdout, one line on stderr.
    fn failure(&self, code: i32) -> &str {
        assert_eq!(self.code, code, "exit code; stderr: {}", self.stderr);
        assert!(
            self.stdout.is_empty(),
            "stdout: {:?}",
            String::from_utf8_lossy(&self.stdout)
        );
        assert_eq!(self.stderr.lines().count(), 1, "stderr: {:?}", self.stderr);
        &self.stderr
    }
}

async fn run(args: &[&str], env: &[(&str, String)], stdin: &[u8]) -> Run {
    let mut child = tokio::process::Command::new(BIN)
        .args(args)
        .env_remove("CATTLE_URL")
        .env_remove("CATTLE_ACCESS_KEY")
        .env_remove("CATTLE_SECRET_KEY")
        .env_remove("RUST_LOG")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the plugin starts");
    let mut pipe = child.stdin.take().unwrap();
    // A plugin that fails before reading its request (a missing config file)
    // closes stdin early; the test then reads its exit code and stderr instead.
    match pipe.write_all(stdin).await {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::BrokenPipe => {}
        Err(error) => panic!("writing the request to the plugin: {error}"),
    }
    drop(pipe);
    // Only a guard against a hung plugin; the kubelet would kill it after 1m.
    let output = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("the plugin exits")
        .unwrap();
    let run = Run {
        code: output.status.code().unwrap_or(-1),
        stdout: output.stdout,
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    for secret in SECRETS {
        assert!(
            !run.stderr.contains(secret),
            "a secret on stderr: {}",
            run.stderr
        );
    }
    run
}

fn request(image: &str) -> Vec<u8> {
    Request::new(image).to_json()
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn docker_config(dir: &tempfile::TempDir, auths: serde_json::Value) -> String {
    let path = dir.path().join("config.json");
    std::fs::write(&path, json!({"auths": auths}).to_string()).unwrap();
    path.display().to_string()
}

fn users(response: &Response, image: &str) -> Vec<String> {
    response
        .lookup(image)
        .into_iter()
        .map(|(_, auth)| format!("{}:{}", auth.username, auth.password.expose()))
        .collect()
}

#[tokio::test]
async fn docker_config_answers_with_the_port_in_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = docker_config(
        &dir,
        json!({
            "registry.example.org": {"auth": b64("robot:s3cr3t")},
            "registry.example.org:5000": {"username": "port-robot", "password": "p0rt"},
            "https://index.docker.io/v1/": {"auth": b64("hub:hub-pass")},
        }),
    );
    let out = run(
        &["--docker-config", &path, "--cache-duration", "5m"],
        &[],
        &request("registry.example.org:5000/team/app"),
    )
    .await;
    let response = out.response();
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    assert_eq!(response.cache_key_type, CacheKeyType::Registry);
    assert_eq!(response.cache_duration, Some(Duration::from_secs(300)));
    assert_eq!(
        response.auth.keys().collect::<Vec<_>>(),
        ["registry.example.org:5000"]
    );
    assert_eq!(
        users(&response, "registry.example.org:5000/team/app"),
        ["port-robot:p0rt"]
    );
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(value["cacheDuration"], "5m0s");
    assert_eq!(value["apiVersion"], "credentialprovider.kubelet.k8s.io/v1");
    assert_eq!(value["kind"], "CredentialProviderResponse");

    // Docker Hub images, as the kubelet normalises them.
    let out = run(
        &["--docker-config", &path],
        &[],
        &request("docker.io/library/nginx"),
    )
    .await;
    let response = out.response();
    assert_eq!(
        response.cache_duration, None,
        "left to defaultCacheDuration"
    );
    assert_eq!(
        users(&response, "docker.io/library/nginx"),
        ["hub:hub-pass"]
    );

    // Nothing for this registry: an empty answer that is not cached.
    let out = run(
        &["--docker-config", &path],
        &[],
        &request("registry.example.net/app"),
    )
    .await;
    let value: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(out.code, 0);
    assert_eq!(value["auth"], json!({}));
    assert_eq!(value["cacheDuration"], "0s");
}

/// Rows of the reference's matching table, through the binary: the keys of a
/// Docker config are the patterns, and the kubelet's keyring lookup decides.
#[tokio::test]
async fn matching_table_rows_through_the_binary() {
    let rows: &[(&str, &str, bool)] = &[
        ("*.kubernetes.io", "prefix.kubernetes.io/app", true),
        (
            "*.kubernetes.io:1111/blah",
            "prefix.kubernetes.io:1111/blah",
            true,
        ),
        (
            "prefix.*.io:1111/foo",
            "prefix.kubernetes.io:1111/foo/bar",
            true,
        ),
        ("*.kubernetes.io", "kubernetes.io/app", false),
        (
            "*.kubernetes.io:1234/blah",
            "prefix.kubernetes.io:1111/blah",
            false,
        ),
        (
            "prefix.*.io/foo",
            "prefix.kubernetes.io:1111/foo/bar",
            false,
        ),
        ("bar.example.com/pong", "bar.example.com/pongz", true),
        ("*.io", "k8s.gcr.io/pause", false),
        ("registry.io", "registry.io:5000/app", false),
        ("registry.io:5000", "registry.io/app", false),
        ("registry.io/team", "registry.io/team-b/app", true),
    ];
    let dir = tempfile::tempdir().unwrap();
    for (pattern, image, expected) in rows {
        let path = docker_config(
            &dir,
            json!({ *pattern: {"username": "u", "password": "s3cr3t"} }),
        );
        let out = run(&["--docker-config", &path], &[], &request(image)).await;
        let response = out.response();
        assert_eq!(
            !response.lookup(image).is_empty(),
            *expected,
            "{pattern:?} against {image:?}: {}",
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[tokio::test]
async fn invalid_requests_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = docker_config(
        &dir,
        json!({"registry.example.org": {"auth": b64("robot:s3cr3t")}}),
    );
    let cases: &[(&[u8], &str)] = &[
        (b"", "empty request"),
        (b"{\"kind\":", "malformed request"),
        (
            br#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1alpha1","image":"registry.example.org/app"}"#,
            "unsupported apiVersion",
        ),
        (
            br#"{"kind":"Pod","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"registry.example.org/app"}"#,
            "unexpected kind \"Pod\"",
        ),
        (
            br#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":""}"#,
            "image in request is empty",
        ),
    ];
    for (input, expected) in cases {
        let out = run(&["--docker-config", &path], &[], input).await;
        let line = out.failure(2);
        assert!(line.contains(expected), "{line}");
        assert!(
            line.starts_with("rancher-credential-provider: invalid request: "),
            "{line}"
        );
    }
}

#[tokio::test]
async fn a_missing_config_file_exits_1_naming_it() {
    let out = run(
        &["--docker-config", "/nonexistent/config.json"],
        &[],
        &request("registry.example.org/app"),
    )
    .await;
    let line = out.failure(1);
    assert!(
        line.contains("failed to read /nonexistent/config.json"),
        "{line}"
    );
    let out = run(&[], &[], &request("registry.example.org/app")).await;
    assert!(out.failure(1).contains("no provider chosen"));
}

async fn fake_rancher() -> FakeRancher {
    rancher_runtime::install_crypto_provider();
    let fake = FakeRancher::builder().start().await.unwrap();
    for (address, user, password) in [
        ("quay.io", "foo", "qwerty"),
        ("192.168.5.0", "bar", "asdfgh"),
        ("registry.example.org:5000", "baz", "zxcvbn"),
    ] {
        let registry = fake.seed(&Registry::new(address)).unwrap();
        fake.seed(&RegistryCredential::new(&registry.meta.id, user, password))
            .unwrap();
    }
    fake
}

#[tokio::test(flavor = "multi_thread")]
async fn rancher_gives_each_registry_its_own_credential() {
    let fake = fake_rancher().await;
    let out = run(
        &["--rancher", "--cache-duration", "30s"],
        &fake.env(),
        &request("quay.io/foo/bar"),
    )
    .await;
    let response = out.response();
    assert!(out.stderr.is_empty(), "{}", out.stderr);
    assert_eq!(response.cache_key_type, CacheKeyType::Global);
    assert_eq!(response.cache_duration, Some(Duration::from_secs(30)));
    assert_eq!(users(&response, "quay.io/foo/bar"), ["foo:qwerty"]);
    assert_eq!(users(&response, "192.168.5.0/foo/bar"), ["bar:asdfgh"]);
    assert_eq!(
        users(&response, "registry.example.org:5000/app"),
        ["baz:zxcvbn"]
    );
    assert!(users(&response, "1.1.1.1/foo/bar").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_answer_comes_before_rancher() {
    let fake = fake_rancher().await;
    let dir = tempfile::tempdir().unwrap();
    let path = docker_config(
        &dir,
        json!({"quay.io": {"username": "file", "password": "s3cr3t"}}),
    );
    let out = run(
        &["--docker-config", &path, "--rancher"],
        &fake.env(),
        &request("quay.io/foo/bar"),
    )
    .await;
    assert_eq!(users(&out.response(), "quay.io/foo/bar"), ["file:s3cr3t"]);
    let out = run(
        &["--docker-config", &path, "--rancher"],
        &fake.env(),
        &request("192.168.5.0/foo/bar"),
    )
    .await;
    assert_eq!(
        users(&out.response(), "192.168.5.0/foo/bar"),
        ["bar:asdfgh"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rancher_401_exits_1_without_secrets() {
    let fake = fake_rancher().await;
    let mut env = fake.env();
    for (key, value) in &mut env {
        if *key == "CATTLE_SECRET_KEY" {
            *value = "wrong-key".to_owned();
        }
    }
    let out = run(&["--rancher"], &env, &request("quay.io/foo/bar")).await;
    let line = out.failure(1);
    assert!(line.contains("rancher failed: unauthorized"), "{line}");
    assert!(line.contains("401"), "{line}");
}

#[tokio::test(flavor = "multi_thread")]
async fn rancher_500_exits_1_after_retries() {
    let fake = fake_rancher().await;
    fake.fail_next(100);
    let out = run(&["--rancher"], &fake.env(), &request("quay.io/foo/bar")).await;
    let line = out.failure(1);
    assert!(
        line.contains("rancher failed") && line.contains("500"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hanging_rancher_fails_at_the_deadline() {
    let fake = fake_rancher().await;
    fake.set_response_delay(Some(Duration::from_secs(600)));
    let out = run(
        &["--rancher", "--timeout", "2s"],
        &fake.env(),
        &request("quay.io/foo/bar"),
    )
    .await;
    let line = out.failure(1);
    // Whichever comes first, the per-attempt timeout or the deadline, names it.
    assert!(
        line.contains("timed out") || line.contains("within 2s"),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn rancher_without_cattle_url_exits_1() {
    let out = run(&["--rancher"], &[], &request("quay.io/foo/bar")).await;
    assert!(out.failure(1).contains("CATTLE_URL is not set"));
}

/// The example `CredentialProviderConfig` in deploy/ is what the kubelet's strict
/// decoder accepts, names this binary, and its args work with this binary.
#[tokio::test(flavor = "multi_thread")]
async fn the_deploy_example_config_works_with_the_binary() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/credential-provider/config.yaml"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let config: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(config["apiVersion"], "kubelet.config.k8s.io/v1");
    assert_eq!(config["kind"], "CredentialProviderConfig");
    let provider = &config["providers"][0];
    let known = [
        "name",
        "matchImages",
        "defaultCacheDuration",
        "apiVersion",
        "args",
        "env",
        "tokenAttributes",
    ];
    for field in provider.as_object().unwrap().keys() {
        assert!(
            known.contains(&field.as_str()),
            "unknown provider field {field}"
        );
    }
    assert_eq!(
        provider["name"],
        std::path::Path::new(BIN)
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
    );
    assert_eq!(
        provider["apiVersion"],
        rancher_credentials::model::API_VERSION
    );
    rancher_credentials::duration::parse(provider["defaultCacheDuration"].as_str().unwrap())
        .unwrap();
    let patterns: Vec<&str> = provider["matchImages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    let allowed = |image: &str| {
        patterns
            .iter()
            .any(|p| rancher_credentials::matching::matches(p, image))
    };
    assert!(allowed("registry.example.org/team/app"));
    assert!(allowed("eu.registry.example.org/team/app"));
    assert!(allowed("registry.example.org:5000/team/app"));
    assert!(allowed("quay.io/foo/bar"));
    assert!(!allowed("docker.io/library/nginx"));

    // Run the binary with the config's args and env, the file and Rancher
    // swapped for a temporary file and the fake.
    let fake = fake_rancher().await;
    let dir = tempfile::tempdir().unwrap();
    let file = docker_config(
        &dir,
        json!({"registry.example.org": {"username": "file", "password": "s3cr3t"}}),
    );
    let args: Vec<String> = provider["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            let a = a.as_str().unwrap();
            match a.strip_prefix("--docker-config=") {
                Some(_) => format!("--docker-config={file}"),
                None => a.to_owned(),
            }
        })
        .collect();
    let env_names: Vec<&str> = provider["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        env_names,
        ["CATTLE_URL", "CATTLE_ACCESS_KEY", "CATTLE_SECRET_KEY"]
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = run(
        &args,
        &fake.env(),
        &request("registry.example.org/team/app"),
    )
    .await;
    assert_eq!(
        users(&out.response(), "registry.example.org/team/app"),
        ["file:s3cr3t"]
    );
    let out = run(&args, &fake.env(), &request("quay.io/foo/bar")).await;
    assert_eq!(users(&out.response(), "quay.io/foo/bar"), ["foo:qwerty"]);
}

/// `--secret` against the in-memory API server, through a kubeconfig, as a node
/// would run it.
#[tokio::test(flavor = "multi_thread")]
async fn secret_provider_reads_the_named_secret_from_the_api_server() {
    use k8s_openapi::{ByteString, api::core::v1::Secret};
    use kube::api::{Api, PostParams};

    rancher_runtime::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let sandbox = rancher_sandbox::Sandbox::builder()
        .kubeconfig_path(&kubeconfig)
        .start()
        .await
        .unwrap();
    let secrets: Api<Secret> = Api::namespaced(sandbox.client(), "default");
    let secret = |name: &str, type_: &str, key: &str, value: serde_json::Value| Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.to_owned()),
            ..Default::default()
        },
        type_: Some(type_.to_owned()),
        data: Some(
            [(key.to_owned(), ByteString(value.to_string().into_bytes()))]
                .into_iter()
                .collect(),
        ),
        ..Default::default()
    };
    let auths = json!({"auths": {
        "registry.example.org:5000": {"auth": b64("robot:s3cr3t")},
    }});
    secrets
        .create(
            &PostParams::default(),
            &secret(
                "registry-credentials",
                "kubernetes.io/dockerconfigjson",
                ".dockerconfigjson",
                auths.clone(),
            ),
        )
        .await
        .unwrap();
    secrets
        .create(
            &PostParams::default(),
            &secret("opaque", "Opaque", "config.json", auths),
        )
        .await
        .unwrap();

    let kubeconfig = kubeconfig.display().to_string();
    let image = "registry.example.org:5000/team/app";
    let out = run(
        &[
            "--secret",
            "default/registry-credentials",
            "--kubeconfig",
            &kubeconfig,
            "--cache-duration",
            "10m",
        ],
        &[],
        &request(image),
    )
    .await;
    let response = out.response();
    assert_eq!(response.cache_key_type, CacheKeyType::Registry);
    assert_eq!(response.cache_duration, Some(Duration::from_secs(600)));
    assert_eq!(users(&response, image), ["robot:s3cr3t"]);

    let out = run(
        &["--secret", "default/missing", "--kubeconfig", &kubeconfig],
        &[],
        &request(image),
    )
    .await;
    assert!(
        out.failure(1).contains("secret default/missing: not found"),
        "{}",
        out.stderr
    );

    let out = run(
        &["--secret", "default/opaque", "--kubeconfig", &kubeconfig],
        &[],
        &request(image),
    )
    .await;
    assert!(
        out.failure(1).contains("type is \"Opaque\""),
        "{}",
        out.stderr
    );

    let out = run(
        &["--secret", "no-slash", "--kubeconfig", &kubeconfig],
        &[],
        &request(image),
    )
    .await;
    assert_eq!(out.code, 2, "a usage error: {}", out.stderr);
    assert!(out.stdout.is_empty());
}

/// Service-account mode: the token is accepted and never shows on stderr, even
/// when the request around it is invalid.
#[tokio::test]
async fn service_account_tokens_never_reach_stderr() {
    let dir = tempfile::tempdir().unwrap();
    let path = docker_config(
        &dir,
        json!({"registry.example.org": {"auth": b64("robot:s3cr3t")}}),
    );
    let token = "eyJhbGciOiJSUzI1NiJ9.sa-token-payload.signature";
    let with_token = Request::new("registry.example.org/app")
        .with_service_account_token(token)
        .with_annotation("example.org/identity", "team-a")
        .to_json();
    let out = run(&["--docker-config", &path], &[], &with_token).await;
    assert_eq!(
        users(&out.response(), "registry.example.org/app"),
        ["robot:s3cr3t"]
    );
    assert!(!out.stderr.contains("sa-token"), "{}", out.stderr);

    // The token where a map belongs: serde would quote it in its message.
    let bad = format!(
        r#"{{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"registry.example.org/app","serviceAccountAnnotations":"{token}"}}"#
    );
    let out = run(&["--docker-config", &path], &[], bad.as_bytes()).await;
    let line = out.failure(2);
    assert!(!line.contains("sa-token"), "{line}");
    assert!(line.contains("wrong type"), "{line}");
}
