//! The real `kubectl` against the sandbox: apply, server-side apply, get (table, yaml,
//! watch), create, replace, patch (merge, json, strategic), label, annotate, delete.
//!
//! `kubectl` must be installed (`scripts/test` installs it); the test fails, not skips,
//! when it is missing. Set `KUBECTL` to use another binary.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Service};
use k8s_openapi::api::networking::v1::Ingress;
use kube::api::{Api, Patch, PatchParams};
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};

pub(crate) struct Kubectl {
    bin: String,
    kubeconfig: PathBuf,
    cache: PathBuf,
}

impl Kubectl {
    pub(crate) fn new(kubeconfig: &Path, cache: &Path) -> Self {
        let bin = std::env::var("KUBECTL").unwrap_or_else(|_| "kubectl".to_string());
        Self {
            bin,
            kubeconfig: kubeconfig.to_path_buf(),
            cache: cache.to_path_buf(),
        }
    }

    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.bin);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args);
        cmd.stdin(Stdio::null()).kill_on_drop(true);
        cmd
    }

    /// Runs kubectl; returns (success, stdout, stderr).
    pub(crate) async fn run(&self, args: &[&str]) -> (bool, String, String) {
        let out = tokio::time::timeout(Duration::from_secs(60), self.command(args).output())
            .await
            .unwrap_or_else(|_| panic!("kubectl {args:?} timed out"))
            .unwrap_or_else(|e| panic!("running {} failed ({e}); kubectl must be installed (Debian package kubernetes-client)", self.bin));
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    /// Runs kubectl and expects success; returns stdout.
    pub(crate) async fn ok(&self, args: &[&str]) -> String {
        let (ok, out, err) = self.run(args).await;
        assert!(ok, "kubectl {args:?} failed:\nstdout: {out}\nstderr: {err}");
        out
    }
}

const MANIFESTS: &str = r#"
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: shop
spec:
  selector: {app: web}
  ports:
  - name: http
    port: 80
    targetPort: 8080
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  replicas: 1
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: registry.example.org/web:1
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: shop
spec:
  ingressClassName: rancher
  rules:
  - host: shop.example.org
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service: {name: web, port: {number: 80}}
"#;

/// A sandbox and kubectl pointed at it, in a temporary directory.
pub(crate) async fn start() -> (tempfile::TempDir, rancher_sandbox::Sandbox, Kubectl) {
    super::install_provider();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let sb = rancher_sandbox::Sandbox::builder()
        .kubeconfig_path(&kubeconfig)
        .start()
        .await
        .unwrap();
    let k = Kubectl::new(&kubeconfig, &dir.path().join("cache"));
    (dir, sb, k)
}

fn columns(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

#[tokio::test]
async fn kubectl_drives_the_sandbox() {
    let (dir, sb, k) = start().await;

    let version = k.ok(&["version", "-o", "json"]).await;
    assert!(version.contains("\"serverVersion\""), "{version}");

    // apply -f (client-side), then get as a table.
    let manifests = dir.path().join("shop.yaml");
    std::fs::write(&manifests, MANIFESTS).unwrap();
    let out = k.ok(&["apply", "-f", manifests.to_str().unwrap()]).await;
    assert!(
        out.contains("namespace/shop created")
            && out.contains("ingress.networking.k8s.io/web created"),
        "{out}"
    );
    let svc: Service = Api::namespaced(sb.client(), "shop")
        .get("web")
        .await
        .unwrap();
    let ip = svc.spec.unwrap().cluster_ip.unwrap();
    assert!(ip.starts_with("10.43."), "{ip}");

    let ingresses: Api<Ingress> = Api::namespaced(sb.client(), "shop");
    ingresses
        .patch_status("web", &PatchParams::default(), &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.2"}, {"ip": "127.0.0.3"}]}}})))
        .await
        .unwrap();
    let out = k.ok(&["get", "ingress", "-n", "shop"]).await;
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        columns(lines[0]),
        ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"],
        "{out}"
    );
    assert_eq!(
        columns(lines[1])[..5],
        [
            "web",
            "rancher",
            "shop.example.org",
            "127.0.0.2,127.0.0.3",
            "80"
        ],
        "{out}"
    );
    let out = k.ok(&["get", "svc", "web", "-n", "shop"]).await;
    assert!(out.contains(&ip) && out.contains("80/TCP"), "{out}");

    // get -o yaml.
    let yaml = k
        .ok(&["get", "svc", "web", "-n", "shop", "-o", "yaml"])
        .await;
    let parsed: serde_json::Value = serde_saphyr::from_str(&yaml).unwrap();
    assert_eq!(parsed["spec"]["clusterIP"], ip.as_str());
    assert_eq!(parsed["kind"], "Service");

    // get -w sees a status change.
    let mut watch = k
        .command(&["get", "ingress", "web", "-n", "shop", "-w"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(first.starts_with("NAME"), "{first}");
    let initial = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(initial.contains("127.0.0.2,127.0.0.3"), "{initial}");
    // kubectl may start its watch after printing (older versions then drop the first
    // event), so keep changing the address until a change shows up.
    let mut seen = None;
    for last in 4..=20 {
        let ip = format!("127.0.0.{last}");
        ingresses
            .patch_status(
                "web",
                &PatchParams::default(),
                &Patch::Merge(json!({"status": {"loadBalancer": {"ingress": [{"ip": ip}]}}})),
            )
            .await
            .unwrap();
        if let Ok(line) = tokio::time::timeout(Duration::from_secs(2), lines.next_line()).await {
            seen = line.unwrap();
            break;
        }
    }
    let changed = seen.expect("kubectl get -w printed a change");
    assert!(
        columns(&changed)
            .iter()
            .any(|c| c.starts_with("127.0.0.") && !c.contains(',')),
        "{changed}"
    );
    watch.kill().await.unwrap();

    // apply again with a change: a three-way strategic merge.
    std::fs::write(
        &manifests,
        MANIFESTS.replace("targetPort: 8080", "targetPort: 9090"),
    )
    .unwrap();
    let out = k.ok(&["apply", "-f", manifests.to_str().unwrap()]).await;
    assert!(out.contains("service/web configured"), "{out}");
    let svc: Service = Api::namespaced(sb.client(), "shop")
        .get("web")
        .await
        .unwrap();
    assert_eq!(
        svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].target_port,
        Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(9090))
    );
    assert_eq!(
        svc.spec.unwrap().cluster_ip.unwrap(),
        ip,
        "the ClusterIP survives updates"
    );

    // create, replace, patch, label, annotate, delete on a ConfigMap.
    let cm_file = dir.path().join("cm.yaml");
    std::fs::write(&cm_file, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: shop\ndata:\n  mode: a\n").unwrap();
    let out = k.ok(&["create", "-f", cm_file.to_str().unwrap()]).await;
    assert!(out.contains("configmap/settings created"), "{out}");
    let (ok, _, err) = k.run(&["create", "-f", cm_file.to_str().unwrap()]).await;
    assert!(!ok && err.contains("AlreadyExists"), "{err}");
    std::fs::write(&cm_file, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\n  namespace: shop\ndata:\n  mode: b\n").unwrap();
    k.ok(&["replace", "-f", cm_file.to_str().unwrap()]).await;
    let cms: Api<ConfigMap> = Api::namespaced(sb.client(), "shop");
    assert_eq!(
        cms.get("settings").await.unwrap().data.unwrap()["mode"],
        "b"
    );
    k.ok(&[
        "patch",
        "configmap",
        "settings",
        "-n",
        "shop",
        "--type",
        "merge",
        "-p",
        r#"{"data":{"merge":"1"}}"#,
    ])
    .await;
    k.ok(&[
        "patch",
        "configmap",
        "settings",
        "-n",
        "shop",
        "--type",
        "json",
        "-p",
        r#"[{"op":"add","path":"/data/json","value":"2"}]"#,
    ])
    .await;
    k.ok(&[
        "patch",
        "configmap",
        "settings",
        "-n",
        "shop",
        "--type",
        "strategic",
        "-p",
        r#"{"data":{"strategic":"3"}}"#,
    ])
    .await;
    k.ok(&["label", "configmap", "settings", "-n", "shop", "tier=front"])
        .await;
    k.ok(&[
        "annotate",
        "configmap",
        "settings",
        "-n",
        "shop",
        "example.org/note=hello",
    ])
    .await;
    let got = cms.get("settings").await.unwrap();
    let data = got.data.unwrap();
    assert_eq!(
        (
            data["merge"].as_str(),
            data["json"].as_str(),
            data["strategic"].as_str()
        ),
        ("1", "2", "3")
    );
    assert_eq!(got.metadata.labels.unwrap()["tier"], "front");
    assert_eq!(
        got.metadata.annotations.unwrap()["example.org/note"],
        "hello"
    );
    let out = k
        .ok(&[
            "get",
            "configmaps",
            "-n",
            "shop",
            "-l",
            "tier=front",
            "-o",
            "name",
        ])
        .await;
    assert_eq!(out.trim(), "configmap/settings");
    let (ok, _, err) = k
        .run(&[
            "patch",
            "configmap",
            "settings",
            "-n",
            "shop",
            "--type",
            "json",
            "-p",
            r#"[{"op":"remove","path":"/data/nope"}]"#,
        ])
        .await;
    assert!(!ok && !err.is_empty(), "a patch that does not apply fails");

    // scale uses the scale subresource.
    k.ok(&["scale", "deployment", "web", "-n", "shop", "--replicas=3"])
        .await;
    let deploy: k8s_openapi::api::apps::v1::Deployment = Api::namespaced(sb.client(), "shop")
        .get("web")
        .await
        .unwrap();
    assert_eq!(deploy.spec.replicas, Some(3));

    // Typed generators post protobuf bodies.
    k.ok(&["create", "namespace", "scratch"]).await;
    k.ok(&[
        "create",
        "configmap",
        "literal",
        "-n",
        "scratch",
        "--from-literal=colour=blue",
    ])
    .await;
    k.ok(&[
        "create",
        "secret",
        "generic",
        "token",
        "-n",
        "scratch",
        "--from-literal=token=s3cret",
    ])
    .await;
    let scratch: Api<ConfigMap> = Api::namespaced(sb.client(), "scratch");
    assert_eq!(
        scratch.get("literal").await.unwrap().data.unwrap()["colour"],
        "blue"
    );
    let secret: k8s_openapi::api::core::v1::Secret = Api::namespaced(sb.client(), "scratch")
        .get("token")
        .await
        .unwrap();
    assert_eq!(secret.data.unwrap()["token"].0, b"s3cret");
    assert_eq!(secret.type_.as_deref(), Some("Opaque"));

    // apply --server-side takes over and changes a field.
    let ssa = dir.path().join("ssa.yaml");
    std::fs::write(&ssa, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\n  namespace: shop\ndata:\n  owner: kubectl\n").unwrap();
    let out = k
        .ok(&["apply", "--server-side", "-f", ssa.to_str().unwrap()])
        .await;
    assert!(out.contains("serverside-applied"), "{out}");
    std::fs::write(&ssa, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied\n  namespace: shop\ndata:\n  owner: kubectl\n  more: yes-please\n").unwrap();
    k.ok(&["apply", "--server-side", "-f", ssa.to_str().unwrap()])
        .await;
    let applied = cms.get("applied").await.unwrap();
    assert_eq!(applied.data.unwrap()["more"], "yes-please");
    assert!(
        applied
            .metadata
            .managed_fields
            .unwrap()
            .iter()
            .any(|m| m.manager.as_deref() == Some("kubectl")
                && m.operation.as_deref() == Some("Apply"))
    );

    // delete, and errors read like kube-apiserver's.
    let out = k
        .ok(&["delete", "configmap", "settings", "-n", "shop"])
        .await;
    assert!(out.contains("deleted"), "{out}");
    let (ok, _, err) = k.run(&["get", "configmap", "settings", "-n", "shop"]).await;
    assert!(
        !ok && err.contains("NotFound") && err.contains("\"settings\" not found"),
        "{err}"
    );
    let out = k.ok(&["delete", "ingress", "web", "-n", "shop"]).await;
    assert!(
        out.contains("ingress.networking.k8s.io \"web\" deleted"),
        "{out}"
    );
    // Deleting the namespace deletes what is left in it (the sandbox does it at once).
    let out = k.ok(&["delete", "namespace", "shop"]).await;
    assert!(out.contains("namespace \"shop\" deleted"), "{out}");
    let out = k.ok(&["get", "namespaces", "-o", "name"]).await;
    assert!(!out.contains("namespace/shop"), "{out}");
    let out = k.ok(&["get", "services", "-A", "-o", "name"]).await;
    assert_eq!(out.trim(), "service/kubernetes");
}

/// `(labels, annotations, spec)` of an object as JSON, to compare what the
/// sandbox stored with what kubectl meant to send.
fn essentials(object: &serde_json::Value) -> serde_json::Value {
    json!({
        "labels": object["metadata"]["labels"],
        "annotations": object["metadata"]["annotations"],
        "spec": object["spec"],
    })
}

/// Whether `stored` holds everything `sent` has (defaults may add fields;
/// an empty object or a null sent stands for nothing).
fn holds(stored: &serde_json::Value, sent: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (stored, sent) {
        (_, Value::Null) => true,
        (Value::Object(s), Value::Object(w)) => w.iter().all(|(k, v)| match s.get(k) {
            Some(sv) => holds(sv, v),
            None => v.is_null() || v.as_object().is_some_and(|o| o.is_empty()),
        }),
        (Value::Array(s), Value::Array(w)) => {
            s.len() == w.len() && s.iter().zip(w).all(|(a, b)| holds(a, b))
        }
        (s, w) => s == w,
    }
}

#[tokio::test]
async fn kubectl_generators_post_protobuf_the_sandbox_reads_faithfully() {
    let (_dir, sb, k) = start().await;
    // Each generator: what kubectl sends (client dry run) must be what the
    // sandbox stores, apart from the defaults it adds.
    let generators: &[(&[&str], &str)] = &[
        (
            &[
                "create",
                "deployment",
                "web",
                "--image=registry.example.org/web:1",
                "--replicas=2",
                "--port=8080",
            ],
            "deployment/web",
        ),
        (
            &[
                "create",
                "deployment",
                "idle",
                "--image=busybox",
                "--replicas=0",
                "--",
                "sleep",
                "3600",
            ],
            "deployment/idle",
        ),
        (
            &[
                "create",
                "service",
                "clusterip",
                "api",
                "--tcp=80:8080",
                "--tcp=443:8443",
            ],
            "service/api",
        ),
        (
            &[
                "create",
                "service",
                "nodeport",
                "np",
                "--tcp=5678:8080",
                "--node-port=30080",
            ],
            "service/np",
        ),
        (
            &[
                "expose",
                "deployment",
                "web",
                "--name=web-exp",
                "--port=80",
                "--target-port=http",
            ],
            "service/web-exp",
        ),
        (
            &[
                "create",
                "ingress",
                "shop",
                "--class=rancher",
                "--rule=shop.example.org/api*=api:80",
                "--rule=shop.example.org/=web-exp:http,tls=shop-tls",
            ],
            "ingress/shop",
        ),
        (
            &["create", "serviceaccount", "robot"],
            "serviceaccount/robot",
        ),
    ];
    for (args, object) in generators {
        let mut dry = args.to_vec();
        let split = dry.iter().position(|a| *a == "--").unwrap_or(dry.len());
        dry.splice(split..split, ["--dry-run=client", "-o", "json"]);
        let sent: serde_json::Value = serde_json::from_str(&k.ok(&dry).await).unwrap();
        k.ok(args).await;
        let stored: serde_json::Value =
            serde_json::from_str(&k.ok(&["get", object, "-o", "json"]).await).unwrap();
        let (sent, stored) = (essentials(&sent), essentials(&stored));
        assert!(
            holds(&stored, &sent),
            "kubectl {args:?}: sent\n{sent:#}\nstored\n{stored:#}"
        );
    }
    let deploy: k8s_openapi::api::apps::v1::Deployment = Api::namespaced(sb.client(), "default")
        .get("idle")
        .await
        .unwrap();
    assert_eq!(deploy.spec.replicas, Some(0), "replicas 0 is kept");
}
