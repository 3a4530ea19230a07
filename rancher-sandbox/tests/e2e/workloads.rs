//! Workloads: the controllers, the scheduler and the sandbox nodes, driven by the real
//! `kubectl` as a user would, with the pods' echo servers answering over TCP.

use std::net::SocketAddr;
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use rancher_sandbox::{SandboxNode, Workloads};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::kubectl::Kubectl;

/// How long a condition may take to hold.
const DEADLINE: Duration = Duration::from_secs(30);

async fn start(
    nodes: &[(&str, &str, &str)],
) -> (tempfile::TempDir, rancher_sandbox::Sandbox, Kubectl) {
    super::install_provider();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let mut w = Workloads::new();
    for (name, address, zone) in nodes {
        w = w.node(
            SandboxNode::new(*name, address.parse().unwrap())
                .label("topology.kubernetes.io/zone", *zone),
        );
    }
    let sb = rancher_sandbox::Sandbox::builder()
        .kubeconfig_path(&kubeconfig)
        .workloads(w)
        .start()
        .await
        .unwrap();
    let k = Kubectl::new(&kubeconfig, &dir.path().join("cache"));
    (dir, sb, k)
}

const TWO_NODES: &[(&str, &str, &str)] = &[
    ("node-a", "127.0.0.2", "zone-a"),
    ("node-b", "127.0.0.3", "zone-b"),
];

/// Runs `kubectl` until its output passes `check`, failing at the deadline.
pub(super) async fn until(k: &Kubectl, args: &[&str], check: impl Fn(&str) -> bool) -> String {
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        let (ok, out, err) = k.run(args).await;
        if ok && check(&out) {
            return out;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "kubectl {args:?} never passed:\nstdout: {out}\nstderr: {err}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// `kubectl get ... -o json` items.
pub(super) async fn items(k: &Kubectl, args: &[&str]) -> Vec<Value> {
    let mut all = args.to_vec();
    all.extend(["-o", "json"]);
    let out = k.ok(&all).await;
    let v: Value = serde_json::from_str(&out).unwrap();
    v["items"].as_array().cloned().unwrap_or_default()
}

/// The ready addresses of a Service's slices (as `ip:port` of the first port).
async fn ready_endpoints(client: &kube::Client, service: &str) -> Vec<String> {
    let slices: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
    let mut out = Vec::new();
    for s in slices.list(&lp).await.unwrap().items {
        let port = s.ports.iter().flatten().find_map(|p| p.port).unwrap_or(0);
        for e in s.endpoints.into_iter().flatten() {
            if e.conditions.as_ref().and_then(|c| c.ready) == Some(true) {
                out.extend(e.addresses.iter().map(|a| format!("{a}:{port}")));
            }
        }
    }
    out.sort();
    out
}

pub(super) async fn wait_endpoints(client: &kube::Client, service: &str, n: usize) -> Vec<String> {
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        let eps = ready_endpoints(client, service).await;
        if eps.len() == n {
            return eps;
        }
        assert!(
            tokio::time::Instant::now() < end,
            "{service} has {eps:?}, not {n} ready endpoints"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// One HTTP/1.1 GET; the response body.
pub(super) async fn http_get(addr: &str, path: &str) -> String {
    let addr: SocketAddr = addr.parse().unwrap();
    let mut s = tokio::time::timeout(DEADLINE, tokio::net::TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{addr} refuses: {e}"));
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string()
}

fn names(items: &[Value]) -> Vec<String> {
    let mut n: Vec<String> = items
        .iter()
        .filter_map(|i| i["metadata"]["name"].as_str().map(str::to_string))
        .collect();
    n.sort();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deployment_rolls_out_scales_and_serves_from_its_pods() {
    let (_dir, sb, k) = start(TWO_NODES).await;
    let client = sb.client();
    // The nodes get their ranges from the cluster range.
    let cidrs = until(
        &k,
        &["get", "nodes", "-o", "jsonpath={.items[*].spec.podCIDR}"],
        |o| o.split_whitespace().count() == 2,
    )
    .await;
    assert_eq!(cidrs.trim(), "10.42.0.0/24 10.42.1.0/24");

    k.ok(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "--replicas=2",
        "--port=8080",
    ])
    .await;
    let out = k
        .ok(&["rollout", "status", "deployment/web", "--timeout=30s"])
        .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let pods = items(&k, &["get", "pods", "-l", "app=web"]).await;
    assert_eq!(pods.len(), 2);
    let nodes: std::collections::BTreeSet<&str> = pods
        .iter()
        .filter_map(|p| p["spec"]["nodeName"].as_str())
        .collect();
    assert_eq!(nodes.len(), 2, "replicas spread over both nodes: {nodes:?}");
    for p in &pods {
        assert_eq!(p["status"]["phase"], "Running");
        let host = p["status"]["hostIP"].as_str().unwrap();
        assert!(["127.0.0.2", "127.0.0.3"].contains(&host));
        let ip = p["status"]["podIP"].as_str().unwrap();
        assert!(ip.starts_with("127."), "{ip}");
        assert_eq!(p["metadata"]["ownerReferences"][0]["kind"], "ReplicaSet");
    }
    let wide = k.ok(&["get", "pods", "-o", "wide"]).await;
    assert!(
        wide.contains("Running") && wide.contains("node-a") && wide.contains("node-b"),
        "{wide}"
    );

    // Exposed: an EndpointSlice as upstream writes it, and the pods answer.
    k.ok(&[
        "expose",
        "deployment",
        "web",
        "--port=80",
        "--target-port=8080",
    ])
    .await;
    let eps = wait_endpoints(&client, "web", 2).await;
    let slices = items(
        &k,
        &[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
        ],
    )
    .await;
    assert_eq!(slices.len(), 1);
    let labels = &slices[0]["metadata"]["labels"];
    assert_eq!(
        labels["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(
        slices[0]["metadata"]["ownerReferences"][0]["kind"],
        "Service"
    );
    let zones: Vec<&str> = slices[0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["zone"].as_str())
        .collect();
    assert_eq!(zones.len(), 2);
    for ep in &eps {
        let body = http_get(ep, "/hello").await;
        assert!(
            body.starts_with("web-") && body.trim_end().ends_with(" /hello"),
            "{body}"
        );
    }
    // kubectl logs shows the requests.
    let pod = pods[0]["metadata"]["name"].as_str().unwrap();
    let ip = pods[0]["status"]["podIP"].as_str().unwrap();
    http_get(&format!("{ip}:8080"), "/logged").await;
    until(&k, &["logs", pod], |o| {
        o.contains("\"GET /logged HTTP/1.1\" 200")
    })
    .await;
    let logs = k
        .ok(&["logs", "deployment/web", "--tail=1", "--timestamps"])
        .await;
    assert!(logs.lines().count() == 1, "{logs}");

    // Scale up and down.
    k.ok(&["scale", "deployment", "web", "--replicas=4"]).await;
    wait_endpoints(&client, "web", 4).await;
    k.ok(&["scale", "deployment", "web", "--replicas=1"]).await;
    wait_endpoints(&client, "web", 1).await;
    until(&k, &["get", "pods", "-l", "app=web", "-o", "name"], |o| {
        o.lines().count() == 1
    })
    .await;

    // A deleted pod is replaced through the ReplicaSet.
    let before = names(&items(&k, &["get", "pods", "-l", "app=web"]).await);
    k.ok(&["delete", "pod", &before[0]]).await;
    let after = until(&k, &["get", "pods", "-l", "app=web", "-o", "name"], |o| {
        o.lines().count() == 1 && !o.contains(&before[0])
    })
    .await;
    assert!(after.starts_with("pod/web-"));
    wait_endpoints(&client, "web", 1).await;

    // A rolling update: a new ReplicaSet, the old one scaled to zero.
    k.ok(&["scale", "deployment", "web", "--replicas=3"]).await;
    k.ok(&["set", "image", "deployment/web", "nginx=nginx:1.27"])
        .await;
    let out = k
        .ok(&["rollout", "status", "deployment/web", "--timeout=30s"])
        .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let rs = items(&k, &["get", "replicasets", "-l", "app=web"]).await;
    assert_eq!(rs.len(), 2, "{rs:?}");
    let replicas: Vec<i64> = rs
        .iter()
        .map(|r| r["spec"]["replicas"].as_i64().unwrap())
        .collect();
    assert!(
        replicas.contains(&3) && replicas.contains(&0),
        "{replicas:?}"
    );
    let history = k.ok(&["rollout", "history", "deployment/web"]).await;
    assert!(history.contains('2'), "{history}");
    let pods = items(&k, &["get", "pods", "-l", "app=web"]).await;
    assert!(
        pods.iter()
            .all(|p| p["spec"]["containers"][0]["image"] == "nginx:1.27")
    );
    wait_endpoints(&client, "web", 3).await;

    // Deleting the Deployment deletes its ReplicaSets, pods and endpoints.
    k.ok(&["delete", "deployment", "web"]).await;
    until(&k, &["get", "pods,replicasets", "-o", "name"], |o| {
        o.trim().is_empty()
    })
    .await;
    wait_endpoints(&client, "web", 0).await;
    k.ok(&["delete", "service", "web"]).await;
    until(&k, &["get", "endpointslices", "-o", "name"], |o| {
        !o.contains("web-")
    })
    .await;
}

const MONGO: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: mongodb, namespace: default}
spec:
  clusterIP: None
  selector: {app: mongodb}
  ports: [{name: mongo, port: 27017}]
---
apiVersion: apps/v1
kind: StatefulSet
metadata: {name: mdb, namespace: default}
spec:
  serviceName: mongodb
  replicas: 3
  selector: {matchLabels: {app: mongodb}}
  template:
    metadata: {labels: {app: mongodb}}
    spec:
      containers:
      - name: mongo
        image: mongo:7
        ports: [{name: mongo, containerPort: 27017}]
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statefulset_numbers_its_pods_and_names_them_in_its_service() {
    let (dir, sb, k) = start(TWO_NODES).await;
    let file = dir.path().join("mongo.yaml");
    std::fs::write(&file, MONGO).unwrap();
    k.ok(&["apply", "-f", file.to_str().unwrap()]).await;
    let out = k
        .ok(&["rollout", "status", "statefulset/mdb", "--timeout=30s"])
        .await;
    assert!(
        out.contains("roll out complete") || out.contains("rolling update complete"),
        "{out}"
    );
    let pods = items(&k, &["get", "pods", "-l", "app=mongodb"]).await;
    assert_eq!(names(&pods), ["mdb-0", "mdb-1", "mdb-2"]);
    // Created in order: each after the one before it was ready.
    let mut created: Vec<(String, String)> = pods
        .iter()
        .map(|p| {
            (
                p["metadata"]["name"].as_str().unwrap().to_string(),
                p["status"]["startTime"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    created.sort_by(|a, b| a.1.cmp(&b.1));
    assert_eq!(created[0].0, "mdb-0");
    for p in &pods {
        assert_eq!(p["spec"]["hostname"], p["metadata"]["name"]);
        assert_eq!(p["spec"]["subdomain"], "mongodb");
    }
    let eps = wait_endpoints(&sb.client(), "mongodb", 3).await;
    let slices = items(
        &k,
        &[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=mongodb",
        ],
    )
    .await;
    assert_eq!(
        slices[0]["metadata"]["labels"]["service.kubernetes.io/headless"],
        ""
    );
    let mut hostnames: Vec<&str> = slices[0]["endpoints"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["hostname"].as_str())
        .collect();
    hostnames.sort_unstable();
    assert_eq!(hostnames, ["mdb-0", "mdb-1", "mdb-2"]);
    // A plain TCP connection is greeted with the pod's name.
    let mut s = tokio::net::TcpStream::connect(eps[0].parse::<SocketAddr>().unwrap())
        .await
        .unwrap();
    let mut greeting = vec![0u8; 6];
    s.read_exact(&mut greeting).await.unwrap();
    assert!(String::from_utf8(greeting).unwrap().starts_with("mdb-"));

    // Scaled to a negative number: kube-apiserver's error, and nothing changes.
    let (ok, _, err) = k
        .run(&[
            "patch",
            "statefulset",
            "mdb",
            "-p",
            r#"{"spec":{"replicas":-1}}"#,
        ])
        .await;
    assert!(!ok);
    assert!(
        err.contains("spec.replicas: Invalid value: -1: must be greater than or equal to 0"),
        "{err}"
    );
    // Scaled down: the highest ordinals go.
    k.ok(&["scale", "statefulset", "mdb", "--replicas=1"]).await;
    until(
        &k,
        &["get", "pods", "-l", "app=mongodb", "-o", "name"],
        |o| o.trim() == "pod/mdb-0",
    )
    .await;
    wait_endpoints(&sb.client(), "mongodb", 1).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn daemonsets_scheduling_and_bad_input() {
    let (dir, sb, k) = start(TWO_NODES).await;
    let file = dir.path().join("objects.yaml");
    std::fs::write(
        &file,
        r#"
apiVersion: apps/v1
kind: DaemonSet
metadata: {name: agent, namespace: default}
spec:
  selector: {matchLabels: {app: agent}}
  template:
    metadata: {labels: {app: agent}}
    spec:
      containers: [{name: agent, image: agent:1}]
---
apiVersion: v1
kind: Pod
metadata: {name: picky, namespace: default}
spec:
  nodeSelector: {disk: ssd}
  containers: [{name: c, image: busybox}]
"#,
    )
    .unwrap();
    k.ok(&["apply", "-f", file.to_str().unwrap()]).await;
    let out = k
        .ok(&["rollout", "status", "daemonset/agent", "--timeout=30s"])
        .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    let pods = items(&k, &["get", "pods", "-l", "app=agent"]).await;
    let mut on: Vec<&str> = pods
        .iter()
        .filter_map(|p| p["spec"]["nodeName"].as_str())
        .collect();
    on.sort_unstable();
    assert_eq!(on, ["node-a", "node-b"]);

    // A pod no node fits: Pending, with kube-scheduler's condition and event.
    let cond = until(
        &k,
        &[
            "get",
            "pod",
            "picky",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].message}",
        ],
        |o| !o.is_empty(),
    )
    .await;
    assert_eq!(
        cond,
        "0/2 nodes are available: 2 node(s) didn't match Pod's node affinity/selector. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    let described = k.ok(&["describe", "pod", "picky"]).await;
    assert!(described.contains("FailedScheduling"), "{described}");
    // Labelling a node makes room: the pod is scheduled there.
    k.ok(&["label", "node", "node-b", "disk=ssd"]).await;
    until(
        &k,
        &[
            "get",
            "pod",
            "picky",
            "-o",
            "jsonpath={.spec.nodeName} {.status.phase}",
        ],
        |o| o == "node-b Running",
    )
    .await;

    // A Deployment whose selector does not select its template: kube-apiserver's error.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: bad}\nspec:\n  selector: {matchLabels: {app: a}}\n  template:\n    metadata: {labels: {app: b}}\n    spec: {containers: [{name: c, image: x}]}\n",
    )
    .unwrap();
    let (ok, _, err) = k.run(&["apply", "-f", bad.to_str().unwrap()]).await;
    assert!(!ok);
    assert!(
        err.contains("`selector` does not match template `labels`"),
        "{err}"
    );

    // A port taken on the host: the container fails as a crashing one does, and the
    // rest of the cluster keeps running.
    let taken = std::net::TcpListener::bind("127.0.0.3:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    std::fs::write(
        &bad,
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: clash}}\nspec:\n  nodeName: node-b\n  containers: [{{name: c, image: x, ports: [{{containerPort: 8080, hostPort: {port}}}]}}]\n"),
    )
    .unwrap();
    k.ok(&["apply", "-f", bad.to_str().unwrap()]).await;
    let state = until(&k, &["get", "pod", "clash", "-o", "jsonpath={.status.containerStatuses[0].state.waiting.reason}|{.status.containerStatuses[0].lastState.terminated.message}"], |o| o.starts_with("CrashLoopBackOff")).await;
    assert!(
        state.contains(&format!("listen 127.0.0.3:{port}: bind:")) && state.contains("in use"),
        "{state}"
    );
    let table = k.ok(&["get", "pod", "clash"]).await;
    assert!(
        table.contains("CrashLoopBackOff") && table.contains("0/1"),
        "{table}"
    );
    drop(taken);
    let pods: Api<Pod> = Api::namespaced(sb.client(), "default");
    assert!(pods.get("picky").await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owners_are_deleted_in_the_foreground_background_or_orphaning() {
    let (_dir, _sb, k) = start(&[("node-a", "127.0.0.2", "zone-a")]).await;
    for name in ["fg", "orphan", "bg"] {
        k.ok(&[
            "create",
            "deployment",
            name,
            "--image=nginx",
            "--replicas=2",
            "--port=8080",
        ])
        .await;
        k.ok(&[
            "rollout",
            "status",
            &format!("deployment/{name}"),
            "--timeout=30s",
        ])
        .await;
    }
    // Foreground: kubectl waits until the pods are gone, then the Deployment goes.
    k.ok(&[
        "delete",
        "deployment",
        "fg",
        "--cascade=foreground",
        "--wait=true",
        "--timeout=30s",
    ])
    .await;
    let left = k
        .ok(&[
            "get",
            "deployments,replicasets,pods",
            "-l",
            "app=fg",
            "-o",
            "name",
        ])
        .await;
    assert!(left.trim().is_empty(), "{left}");
    // Orphan: the ReplicaSet and pods stay, without their owner.
    k.ok(&["delete", "deployment", "orphan", "--cascade=orphan"])
        .await;
    let rs = until(
        &k,
        &["get", "replicasets", "-l", "app=orphan", "-o", "json"],
        |o| {
            serde_json::from_str::<Value>(o).is_ok_and(|v| {
                v["items"]
                    .as_array()
                    .is_some_and(|a| a.len() == 1 && a[0]["metadata"]["ownerReferences"].is_null())
            })
        },
    )
    .await;
    assert!(rs.contains("orphan-"));
    let pods = k
        .ok(&["get", "pods", "-l", "app=orphan", "-o", "name"])
        .await;
    assert_eq!(pods.lines().count(), 2);
    // Background: the Deployment goes at once, its dependents after.
    k.ok(&["delete", "deployment", "bg"]).await;
    until(
        &k,
        &["get", "replicasets,pods", "-l", "app=bg", "-o", "name"],
        |o| o.trim().is_empty(),
    )
    .await;
}
