//! `rancher-auth-webhook` end to end: the real `kubectl` with Rancher keys as tokens against
//! the sandbox configured with the webhook as kube-apiserver would be, and a fake Rancher
//! holding an environment with one user per role.

use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::Engine as _;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, PostParams};
use rancher_auth::{
    Attributes, EnvironmentAuthorizer, RoleTable, UserInfo, Verdict,
    authz::ResourceAttributes,
    environment::environment_group,
    local::{LocalToken, TOKEN_LABEL},
};
use rancher_client::{
    resource::role,
    testing::{FakeRancher, FakeUser},
};
use rancher_sandbox::{
    Sandbox,
    access::{Access, AuthenticationWebhook, AuthorizationWebhook, ReviewVersion},
};

use crate::support::{self, eventually, free_port};

const BIN: &str = env!("CARGO_BIN_EXE_rancher-auth-webhook");
const ENV: &str = "1a5";
/// Both the webhook's and the sandbox's token caches.
const TTL: Duration = Duration::from_secs(4);

fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../rancher-auth/tests/data")
        .join(name)
}

fn key(login: &str) -> String {
    let c = FakeUser::new(login).credentials();
    format!("{}:{}", c.access_key, c.secret_key.expose())
}

struct World {
    fake: FakeRancher,
    sandbox: Sandbox,
    dir: tempfile::TempDir,
    webhook: tokio::process::Child,
    webhook_url: String,
    admin_port: u16,
}

impl World {
    async fn start() -> Self {
        Self::start_with_roles(None).await
    }

    /// The world, with `--roles` pointing at a file holding `roles` when given.
    async fn start_with_roles(roles: Option<&str>) -> Self {
        rancher_runtime::install_crypto_provider();
        let fake = FakeRancher::builder()
            .project_id(ENV)
            .user(FakeUser::new("olivia").role(role::OWNER))
            .user(FakeUser::new("mike").role(role::MEMBER))
            .user(FakeUser::new("rita").role(role::RESTRICTED))
            .user(FakeUser::new("ravi").role(role::READONLY))
            .user(FakeUser::new("nina"))
            .start()
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let webhook_url = format!("https://127.0.0.1:{port}");
        // The kube-apiserver side: a webhook kubeconfig per webhook, as in deploy/rancher-auth/.
        let ca = data("ca.crt");
        for (file, path) in [
            ("authn.kubeconfig", "authenticate"),
            ("authz.kubeconfig", "authorize"),
        ] {
            std::fs::write(
                dir.path().join(file),
                format!(
                    "apiVersion: v1\nkind: Config\nclusters:\n- name: rancher-auth\n  cluster:\n    server: {webhook_url}/{path}\n    certificate-authority: {}\nusers:\n- name: kube-apiserver\n  user: {{}}\ncontexts:\n- name: webhook\n  context:\n    cluster: rancher-auth\n    user: kube-apiserver\ncurrent-context: webhook\n",
                    ca.display()
                ),
            )
            .unwrap();
        }
        let mut authn = AuthenticationWebhook::new(dir.path().join("authn.kubeconfig"));
        authn.cache_ttl = TTL;
        authn.timeout = Duration::from_secs(10);
        let mut authz = AuthorizationWebhook::new(dir.path().join("authz.kubeconfig"));
        authz.version = ReviewVersion::V1;
        authz.timeout = Duration::from_secs(10);
        let sandbox = Sandbox::builder()
            .kubeconfig_path(dir.path().join("admin.kubeconfig"))
            .access(Access::new().authentication(authn).authorization(authz))
            .start()
            .await
            .unwrap();
        let cluster = &sandbox.clusters()[0];
        std::fs::write(dir.path().join("cluster-ca.crt"), cluster.ca_pem().unwrap()).unwrap();
        Api::<Namespace>::all(sandbox.client())
            .create(
                &PostParams::default(),
                &serde_json::from_value(serde_json::json!({"metadata": {"name": "rancher-auth"}}))
                    .unwrap(),
            )
            .await
            .unwrap();
        let admin_port = free_port();
        let mut webhook = tokio::process::Command::new(BIN);
        if let Some(roles) = roles {
            std::fs::write(dir.path().join("roles.yaml"), roles).unwrap();
            webhook.arg("--roles").arg(dir.path().join("roles.yaml"));
        }
        let mut world = Self {
            webhook: webhook
                .args(["--listen", &format!("127.0.0.1:{port}")])
                .arg("--tls-cert-file")
                .arg(data("server-1.crt"))
                .arg("--tls-private-key-file")
                .arg(data("server-1.key"))
                .args(["--admin", &format!("127.0.0.1:{admin_port}")])
                .args(["--token-namespace", "rancher-auth"])
                .arg("--kubeconfig")
                .arg(dir.path().join("admin.kubeconfig"))
                .args(["--cache-ttl", "4s", "--negative-cache-ttl", "1s"])
                .args(["--cluster-server", &cluster.url()])
                .arg("--cluster-ca")
                .arg(dir.path().join("cluster-ca.crt"))
                .envs(fake.env())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::inherit())
                .kill_on_drop(true)
                .spawn()
                .expect("rancher-auth-webhook starts"),
            fake,
            sandbox,
            dir,
            webhook_url,
            admin_port,
        };
        world.wait_ready().await;
        world
    }

    async fn wait_ready(&mut self) {
        let url = format!("http://127.0.0.1:{}/readyz", self.admin_port);
        eventually("the webhook to be ready", || async {
            let out = tokio::process::Command::new("curl")
                .args(["-fsS", &url])
                .output()
                .await
                .expect("curl runs");
            out.status.success().then_some(())
        })
        .await;
    }

    /// A kubeconfig for the sandbox with `token`.
    fn kubeconfig_for(&self, who: &str, token: &str) -> PathBuf {
        let cluster = &self.sandbox.clusters()[0];
        let ca = base64::engine::general_purpose::STANDARD.encode(cluster.ca_pem().unwrap());
        let path = self.dir.path().join(format!("{who}.kubeconfig"));
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: s\n  cluster:\n    server: {}\n    certificate-authority-data: {ca}\nusers:\n- name: {who}\n  user:\n    token: {}\ncontexts:\n- name: s\n  context:\n    cluster: s\n    user: {who}\n    namespace: default\ncurrent-context: s\n",
                cluster.url(),
                serde_json::Value::String(token.to_owned())
            ),
        )
        .unwrap();
        path
    }

    async fn kubectl(&self, kubeconfig: &Path, args: &[&str]) -> (bool, String) {
        let mut all = vec!["--cache-dir", self.dir.path().to_str().unwrap()];
        all.extend_from_slice(args);
        support::kubectl(kubeconfig, &all).await
    }
}

fn expect_forbidden(out: &str, what: &str) {
    // kube-apiserver's 403 message, as kubectl prints it ("Error from server (Forbidden): ..."
    // or, for its generators, "error: failed to create ...: ...").
    assert!(out.contains(" is forbidden: User "), "{out}");
    assert!(out.contains(what), "{out}");
}

fn expect_unauthorized(out: &str) {
    assert!(out.contains("You must be logged in to the server"), "{out}");
}

/// `kubectl auth can-i` for `role` agrees with the role table, on a set of questions.
/// Questions about cluster-scoped resources carry `--all-namespaces`: without it kubectl
/// sends the context's namespace anyway (and warns that the resource is not namespaced).
async fn can_i_agrees_with_the_table(world: &World, login: &str, role: &str) {
    let kubeconfig = world.kubeconfig_for(login, &key(login));
    let table = EnvironmentAuthorizer::new(ENV, RoleTable::default());
    let user = UserInfo::new(login).with_group(environment_group(ENV, role));
    let questions: &[(&[&str], ResourceAttributes)] = &[
        (
            &["create", "clusterroles", "--all-namespaces"],
            ResourceAttributes::new("create", "rbac.authorization.k8s.io", "clusterroles"),
        ),
        (
            &["list", "nodes", "--all-namespaces"],
            ResourceAttributes::new("list", "", "nodes"),
        ),
        (
            &["get", "secrets", "-n", "web"],
            ResourceAttributes::new("get", "", "secrets").in_namespace("web"),
        ),
        (
            &["create", "pods", "-n", "web"],
            ResourceAttributes::new("create", "", "pods").in_namespace("web"),
        ),
        (
            &["list", "pods", "--all-namespaces"],
            ResourceAttributes::new("list", "", "pods"),
        ),
        (
            &["delete", "deployments.apps", "-n", "web"],
            ResourceAttributes::new("delete", "apps", "deployments").in_namespace("web"),
        ),
        (
            &["create", "namespaces", "--all-namespaces"],
            ResourceAttributes::new("create", "", "namespaces"),
        ),
        (
            &["create", "pods", "--subresource=exec", "-n", "web"],
            ResourceAttributes::new("create", "", "pods")
                .subresource("exec")
                .in_namespace("web"),
        ),
    ];
    for (args, attributes) in questions {
        let want = table
            .decide(&Attributes::resource(user.clone(), attributes.clone()))
            .verdict
            == Verdict::Allow;
        let mut all = vec!["auth", "can-i"];
        all.extend_from_slice(args);
        let (ok, out) = world.kubectl(&kubeconfig, &all).await;
        let first = out.lines().next().unwrap_or_default();
        assert_eq!(ok, want, "{role}: kubectl auth can-i {args:?}: {out}");
        assert!(
            first.starts_with(if want { "yes" } else { "no" }),
            "{role}: {args:?}: {out}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_with_rancher_keys_follows_environment_roles() {
    let mut world = World::start().await;
    let manifests = world.dir.path().join("clusterrole.yaml");
    std::fs::write(
        &manifests,
        "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata:\n  name: made-by-rancher-user\nrules:\n- apiGroups: [\"\"]\n  resources: [pods]\n  verbs: [get]\n",
    )
    .unwrap();
    let file = manifests.to_str().unwrap();

    // The owner can create ClusterRoles; who they are comes from Rancher.
    let olivia = world.kubeconfig_for("olivia", &key("olivia"));
    let (ok, out) = world.kubectl(&olivia, &["create", "-f", file]).await;
    assert!(ok, "{out}");
    let (ok, out) = world.kubectl(&olivia, &["auth", "whoami"]).await;
    assert!(
        ok && out.contains("olivia") && out.contains("rancher:environment:1a5:owner"),
        "{out}"
    );

    // A member cannot, and is told why.
    let mike = world.kubeconfig_for("mike", &key("mike"));
    let (ok, out) = world.kubectl(&mike, &["create", "-f", file]).await;
    assert!(!ok);
    expect_forbidden(
        &out,
        "User \"mike\" cannot create resource \"clusterroles\" in API group \"rbac.authorization.k8s.io\" at the cluster scope: role member in Rancher environment 1a5 does not allow create clusterroles.rbac.authorization.k8s.io at cluster scope",
    );
    let (ok, out) = world
        .kubectl(&mike, &["create", "configmap", "settings"])
        .await;
    assert!(ok, "{out}");

    // Restricted cannot touch nodes.
    let rita = world.kubeconfig_for("rita", &key("rita"));
    let (ok, out) = world.kubectl(&rita, &["get", "nodes"]).await;
    assert!(!ok);
    expect_forbidden(&out, "User \"rita\" cannot list resource \"nodes\"");

    // Read-only can list pods but not read Secrets or write.
    let ravi = world.kubeconfig_for("ravi", &key("ravi"));
    let (ok, out) = world.kubectl(&ravi, &["get", "pods"]).await;
    assert!(ok, "{out}");
    let (ok, out) = world.kubectl(&ravi, &["get", "secrets"]).await;
    assert!(!ok);
    expect_forbidden(
        &out,
        "role readonly in Rancher environment 1a5 does not allow list secrets",
    );
    let (ok, out) = world.kubectl(&ravi, &["create", "configmap", "nope"]).await;
    assert!(!ok);
    expect_forbidden(&out, "User \"ravi\" cannot create resource \"configmaps\"");

    // A wrong key, a non-member and garbage get 401.
    for (who, token) in [
        ("wrong", "OLIVIA-AK:wrong-secret".to_owned()),
        ("nina", key("nina")),
        ("garbage", "%%%not-a-key%%%".to_owned()),
    ] {
        let kubeconfig = world.kubeconfig_for(who, &token);
        let (ok, out) = world.kubectl(&kubeconfig, &["get", "pods"]).await;
        assert!(!ok, "{who}");
        expect_unauthorized(&out);
    }

    // `kubectl auth can-i` agrees with the role table.
    for (login, role) in [
        ("olivia", "owner"),
        ("mike", "member"),
        ("rita", "restricted"),
        ("ravi", "readonly"),
    ] {
        can_i_agrees_with_the_table(&world, login, role).await;
    }

    // A member removed from the environment loses access within the cache TTLs.
    let (ok, out) = world.kubectl(&mike, &["get", "pods"]).await;
    assert!(ok, "{out}");
    assert_eq!(world.fake.remove_user_from(ENV, "mike"), 1);
    eventually("mike to lose access", || async {
        let (ok, out) = world.kubectl(&mike, &["get", "pods"]).await;
        (!ok && out.contains("You must be logged in")).then_some(())
    })
    .await;

    support::terminate(&mut world.webhook).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn rancher_down_keeps_cached_and_local_users_and_lets_nobody_new_in() {
    let mut world = World::start().await;
    // A local token in a Secret, made as `rancher-auth-webhook local-token` makes one.
    let user = UserInfo::new("lena").with_group(environment_group(ENV, "member"));
    let (token, entry) = LocalToken::generate(user).unwrap();
    let secret: Secret = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "lena", "namespace": "rancher-auth", "labels": {TOKEN_LABEL: "true"}},
        "stringData": entry.to_secret_data(),
    }))
    .unwrap();
    Api::<Secret>::namespaced(world.sandbox.client(), "rancher-auth")
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let lena = world.kubeconfig_for("lena", token.expose());
    eventually("the local token to be loaded", || async {
        world.kubectl(&lena, &["get", "pods"]).await.0.then_some(())
    })
    .await;

    // Olivia has just been let in; Rancher goes down (every request a 500).
    let olivia = world.kubeconfig_for("olivia", &key("olivia"));
    let (ok, out) = world.kubectl(&olivia, &["get", "configmaps"]).await;
    assert!(ok, "{out}");
    world.fake.fail_next(1_000_000);
    let (ok, out) = world.kubectl(&olivia, &["get", "configmaps"]).await;
    assert!(ok, "a cached user keeps access until the TTL: {out}");
    let ravi = world.kubeconfig_for("ravi", &key("ravi"));
    let (ok, out) = world.kubectl(&ravi, &["get", "pods"]).await;
    assert!(!ok);
    expect_unauthorized(&out);
    let (ok, out) = world
        .kubectl(
            &lena,
            &["create", "configmap", "written-while-rancher-is-down"],
        )
        .await;
    assert!(ok, "a Secret-token user keeps access: {out}");
    // Once the TTLs pass, the cached user is asked about again, and Rancher cannot say.
    eventually("olivia's cached access to end", || async {
        let (ok, out) = world.kubectl(&olivia, &["get", "configmaps"]).await;
        (!ok && out.contains("You must be logged in")).then_some(())
    })
    .await;
    // Rancher is back.
    world.fake.clear_faults();
    eventually("olivia to get in again", || async {
        world
            .kubectl(&olivia, &["get", "configmaps"])
            .await
            .0
            .then_some(())
    })
    .await;
    support::terminate(&mut world.webhook).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn generated_kubeconfigs_work_with_kubectl() {
    let mut world = World::start().await;
    // GET /kubeconfig with the caller's Rancher key, through curl.
    let out = tokio::process::Command::new("curl")
        .args(["-fsS", "--cacert"])
        .arg(data("ca.crt"))
        .args([
            "-u",
            &key("mike"),
            &format!("{}/kubeconfig", world.webhook_url),
        ])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let served = world.dir.path().join("served.kubeconfig");
    std::fs::write(&served, &out.stdout).unwrap();
    let (ok, text) = world.kubectl(&served, &["get", "configmaps"]).await;
    assert!(ok, "{text}");
    let (ok, text) = world.kubectl(&served, &["auth", "whoami"]).await;
    assert!(ok && text.contains("mike"), "{text}");
    let wrong = tokio::process::Command::new("curl")
        .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(data("ca.crt"))
        .args([
            "-u",
            "MIKE-AK:wrong",
            &format!("{}/kubeconfig", world.webhook_url),
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&wrong.stdout), "401");

    // `rancher-auth-webhook kubeconfig` with the caller's key in CATTLE_*.
    let c = FakeUser::new("olivia").credentials();
    let out = tokio::process::Command::new(BIN)
        .args([
            "kubeconfig",
            "--environment",
            ENV,
            "--server",
            &world.sandbox.clusters()[0].url(),
        ])
        .arg("--certificate-authority")
        .arg(world.dir.path().join("cluster-ca.crt"))
        .env("CATTLE_URL", world.fake.url())
        .env("CATTLE_ACCESS_KEY", &c.access_key)
        .env("CATTLE_SECRET_KEY", c.secret_key.expose())
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = world.dir.path().join("printed.kubeconfig");
    std::fs::write(&printed, &out.stdout).unwrap();
    let (ok, text) = world
        .kubectl(&printed, &["auth", "can-i", "create", "clusterroles"])
        .await;
    assert!(ok && text.starts_with("yes"), "{text}");
    // ... and refuses a non-member.
    let n = FakeUser::new("nina").credentials();
    let out = tokio::process::Command::new(BIN)
        .args([
            "kubeconfig",
            "--environment",
            ENV,
            "--server",
            "https://127.0.0.1:1",
        ])
        .env("CATTLE_URL", world.fake.url())
        .env("CATTLE_ACCESS_KEY", &n.access_key)
        .env("CATTLE_SECRET_KEY", n.secret_key.expose())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("not a member of environment 1a5"), "{err}");
    assert!(!err.contains(n.secret_key.expose()), "{err}");
    support::terminate(&mut world.webhook).await;
}

fn deploy(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy/rancher-auth")
        .join(file)
}

/// The kube-apiserver side of `deploy/rancher-auth/` says what kube-apiserver must read,
/// and the Deployment's arguments are ones the binary takes.
#[tokio::test]
async fn the_deploy_files_fit_kube_apiserver_and_the_binary() {
    for (file, path) in [
        ("apiserver/authn-webhook.kubeconfig", "/authenticate"),
        ("apiserver/authz-webhook.kubeconfig", "/authorize"),
    ] {
        let kubeconfig = kube::config::Kubeconfig::read_from(deploy(file)).unwrap();
        let cluster = kubeconfig.clusters[0].cluster.as_ref().unwrap();
        assert!(cluster.server.as_deref().unwrap().ends_with(path), "{file}");
        assert!(
            cluster
                .server
                .as_deref()
                .unwrap()
                .starts_with("https://10.43.0.43/"),
            "{file}"
        );
        assert_eq!(
            cluster.certificate_authority.as_deref(),
            Some("/etc/kubernetes/rancher-auth/ca.crt")
        );
        assert_eq!(kubeconfig.current_context.as_deref(), Some("webhook"));
    }
    let text = std::fs::read_to_string(deploy("apiserver/authorization-config.yaml")).unwrap();
    let config: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    assert_eq!(config["apiVersion"], "apiserver.config.k8s.io/v1");
    assert_eq!(config["kind"], "AuthorizationConfiguration");
    let types: Vec<&str> = config["authorizers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["Node", "Webhook", "RBAC"]);
    let webhook = &config["authorizers"][1]["webhook"];
    // The fields kube-apiserver requires, with values it accepts.
    assert_eq!(webhook["failurePolicy"], "Deny");
    assert_eq!(webhook["subjectAccessReviewVersion"], "v1");
    assert_eq!(webhook["matchConditionSubjectAccessReviewVersion"], "v1");
    assert_eq!(webhook["timeout"], "3s");
    assert_eq!(webhook["connectionInfo"]["type"], "KubeConfigFile");
    assert_eq!(
        webhook["connectionInfo"]["kubeConfigFile"],
        "/etc/kubernetes/rancher-auth/authz-webhook.kubeconfig"
    );
    let conditions = webhook["matchConditions"].as_array().unwrap();
    assert!(!conditions.is_empty() && conditions.len() <= 64);
    assert!(conditions.iter().all(|c| c["expression"].is_string()));

    // The kustomization renders the namespace, RBAC, Service and Deployment (and none of
    // the kube-apiserver files).
    let out = tokio::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(deploy(""))
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let docs: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .split("\n---\n")
        .map(|doc| serde_saphyr::from_str::<serde_json::Value>(doc).unwrap())
        .collect();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    for kind in [
        "Namespace",
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Service",
        "Deployment",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    assert!(!kinds.contains(&"Config") && !kinds.contains(&"AuthorizationConfiguration"));

    // The Deployment: the image and arguments the binary takes (it gets as far as the
    // certificate files, which only exist in the pod).
    let deployment = docs.iter().find(|doc| doc["kind"] == "Deployment").unwrap();
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        container["image"],
        "rancher-plugins/rancher-auth-webhook:0.1.0"
    );
    let args: Vec<&str> = container["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let out = tokio::process::Command::new(BIN)
        .args(&args)
        .env_remove("CATTLE_URL")
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("/etc/rancher-auth/tls/tls.crt"), "{err}");
}

/// `--roles FILE` replaces a role of the default table: here readonly may also read Secrets,
/// and still writes nothing; a bad file stops the webhook with the field named.
#[tokio::test(flavor = "multi_thread")]
async fn a_role_file_overrides_the_table() {
    let roles = "roles:\n  readonly:\n    description: get, list and watch on everything\n    allow:\n      - verbs: [get, list, watch]\n        apiGroups: [\"*\"]\n        resources: [\"*\"]\n      - verbs: [create]\n        apiGroups: [authorization.k8s.io]\n        resources: [selfsubjectaccessreviews]\n      - verbs: [get]\n        nonResourceURLs: [/api, /api/*, /apis, /apis/*, /version]\n";
    let mut world = World::start_with_roles(Some(roles)).await;
    let ravi = world.kubeconfig_for("ravi", &key("ravi"));
    let (ok, out) = world.kubectl(&ravi, &["get", "secrets"]).await;
    assert!(ok, "{out}");
    let (ok, out) = world
        .kubectl(&ravi, &["auth", "can-i", "list", "secrets"])
        .await;
    assert!(ok && out.trim() == "yes", "{out}");
    let (ok, out) = world.kubectl(&ravi, &["create", "configmap", "nope"]).await;
    assert!(!ok);
    expect_forbidden(&out, "User \"ravi\" cannot create resource \"configmaps\"");
    // The other roles keep the defaults: a member still cannot create ClusterRoles.
    let mike = world.kubeconfig_for("mike", &key("mike"));
    let (ok, out) = world
        .kubectl(
            &mike,
            &[
                "auth",
                "can-i",
                "create",
                "clusterroles",
                "--all-namespaces",
            ],
        )
        .await;
    assert!(!ok && out.starts_with("no"), "{out}");
    support::terminate(&mut world.webhook).await;

    let bad = world.dir.path().join("bad-roles.yaml");
    std::fs::write(
        &bad,
        "roles:\n  member:\n    allow:\n      - verbs: [get]\n        resources: [pods]\n",
    )
    .unwrap();
    let out = tokio::process::Command::new(BIN)
        .arg("--roles")
        .arg(&bad)
        .args(["--environment", ENV, "--tls-cert-file"])
        .arg(data("server-1.crt"))
        .arg("--tls-private-key-file")
        .arg(data("server-1.key"))
        .envs(world.fake.env())
        .output()
        .await
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("bad-roles.yaml") && err.contains("roles.member.allow[0].apiGroups"),
        "{err}"
    );
}
