//! What users rely on past the happy path, through the real `kubectl`: a tainted node
//! takes only the pods that tolerate its taint (the others are `Unschedulable` with
//! kube-scheduler's message); EndpointSlices resolve named target ports, carry a pod
//! that is not ready as not ready (and as ready with `publishNotReadyAddresses`); and a
//! slice the user writes for a selector-less Service is left alone.

use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ListParams};
use rancher_sandbox::{SandboxNode, Workloads};
use serde_json::Value;

use super::kubectl::Kubectl;
use super::workloads::{http_get, items, until, wait_endpoints};

const OBJECTS: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: plain, namespace: default}
spec:
  replicas: 3
  selector: {matchLabels: {app: plain}}
  template:
    metadata: {labels: {app: plain}}
    spec:
      containers: [{name: web, image: nginx, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: plain, namespace: default}
spec:
  selector: {app: plain}
  ports: [{name: web, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata: {name: pinned, namespace: default}
spec:
  nodeSelector: {kubernetes.io/hostname: node-b}
  containers: [{name: c, image: busybox}]
---
apiVersion: v1
kind: Pod
metadata: {name: tolerant, namespace: default}
spec:
  nodeSelector: {kubernetes.io/hostname: node-b}
  tolerations: [{key: dedicated, operator: Equal, value: infra, effect: NoSchedule}]
  containers: [{name: c, image: busybox, ports: [{containerPort: 8080}]}]
---
apiVersion: v1
kind: Service
metadata: {name: ext, namespace: default}
spec:
  ports: [{name: web, port: 80}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: ext-1
  namespace: default
  labels: {kubernetes.io/service-name: ext}
addressType: IPv4
endpoints: [{addresses: [10.250.7.7]}]
ports: [{name: web, port: 80}]
"#;

/// The Service's EndpointSlices.
async fn slices(client: &kube::Client, service: &str) -> Vec<EndpointSlice> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), "default");
    api.list(&ListParams::default().labels(&format!("kubernetes.io/service-name={service}")))
        .await
        .expect("slices listed")
        .items
}

fn readiness(slices: &[EndpointSlice]) -> Vec<bool> {
    slices
        .iter()
        .flat_map(|s| s.endpoints.iter().flatten())
        .map(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taints_readiness_named_ports_and_user_slices() {
    super::install_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let kubeconfig = dir.path().join("kubeconfig");
    let sb = rancher_sandbox::Sandbox::builder()
        .kubeconfig_path(&kubeconfig)
        .workloads(
            Workloads::new()
                .node(SandboxNode::new("node-a", "127.0.0.2".parse().expect("ip")))
                .node(
                    SandboxNode::new("node-b", "127.0.0.3".parse().expect("ip")).taint(
                        "dedicated",
                        "infra",
                        "NoSchedule",
                    ),
                ),
        )
        .start()
        .await
        .expect("sandbox starts");
    let client = sb.client();
    let k = Kubectl::new(&kubeconfig, &dir.path().join("cache"));
    let file = dir.path().join("objects.yaml");
    std::fs::write(&file, OBJECTS).expect("manifest written");
    k.ok(&["apply", "-f", &file.to_string_lossy()]).await;

    // The taint keeps the Deployment's pods off node-b, and the pinned pod out.
    let out = k
        .ok(&["rollout", "status", "deployment/plain", "--timeout=30s"])
        .await;
    assert!(out.contains("successfully rolled out"), "{out}");
    for p in items(&k, &["get", "pods", "-l", "app=plain"]).await {
        assert_eq!(p["spec"]["nodeName"], "node-a", "{p}");
    }
    let why = until(
        &k,
        &[
            "get",
            "pod",
            "pinned",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"PodScheduled\")].reason}|{.status.conditions[?(@.type==\"PodScheduled\")].message}",
        ],
        |o| o.starts_with("Unschedulable|"),
    )
    .await;
    assert_eq!(
        why,
        "Unschedulable|0/2 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, 1 node(s) had untolerated taint {dedicated: infra}. preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
    );
    // A pod that tolerates it runs there.
    until(
        &k,
        &[
            "get",
            "pod",
            "tolerant",
            "-o",
            "jsonpath={.spec.nodeName} {.status.phase} {.status.hostIP}",
        ],
        |o| o == "node-b Running 127.0.0.3",
    )
    .await;

    // The named target port resolves to the containers' port 8080, and the pods answer.
    let eps = wait_endpoints(&client, "plain", 3).await;
    for ep in &eps {
        assert!(ep.ends_with(":8080"), "{eps:?}");
        let body = http_get(ep, "/named").await;
        assert!(body.starts_with("plain-"), "{body}");
    }

    // A pod that is not ready (its host port is taken): in the slice, not ready; with
    // publishNotReadyAddresses, ready.
    let taken = std::net::TcpListener::bind("127.0.0.2:0").expect("a port on node-a");
    let port = taken.local_addr().expect("bound").port();
    let sick = dir.path().join("sick.yaml");
    std::fs::write(
        &sick,
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata: {{name: sick, labels: {{app: sick}}}}\nspec:\n  nodeName: node-a\n  containers: [{{name: c, image: x, ports: [{{containerPort: 8080, hostPort: {port}}}]}}]\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: sick}}\nspec:\n  selector: {{app: sick}}\n  ports: [{{port: 80, targetPort: 8080}}]\n"
        ),
    )
    .expect("manifest written");
    k.ok(&["apply", "-f", &sick.to_string_lossy()]).await;
    until(
        &k,
        &[
            "get",
            "pod",
            "sick",
            "-o",
            "jsonpath={.status.containerStatuses[0].state.waiting.reason}",
        ],
        |o| o == "CrashLoopBackOff",
    )
    .await;
    let end = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while readiness(&slices(&client, "sick").await) != [false] {
        assert!(
            tokio::time::Instant::now() < end,
            "the sick pod never showed as not ready: {:?}",
            slices(&client, "sick").await
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // The selector-less Service is touched too, before the publishNotReadyAddresses
    // change: once that change shows, the controller has been past `ext` as well.
    k.ok(&["annotate", "service", "ext", "touched=yes"]).await;
    k.ok(&[
        "patch",
        "service",
        "sick",
        "-p",
        r#"{"spec":{"publishNotReadyAddresses":true}}"#,
    ])
    .await;
    while readiness(&slices(&client, "sick").await) != [true] {
        assert!(
            tokio::time::Instant::now() < end,
            "publishNotReadyAddresses never showed: {:?}",
            slices(&client, "sick").await
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    drop(taken);

    // The user's slice for `ext` is as written: no other slice, no managed-by label.
    let ext = items(
        &k,
        &[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=ext",
        ],
    )
    .await;
    assert_eq!(ext.len(), 1, "{ext:?}");
    let slice: &Value = &ext[0];
    assert_eq!(slice["metadata"]["name"], "ext-1");
    assert!(
        slice["metadata"]["labels"]
            .get("endpointslice.kubernetes.io/managed-by")
            .is_none(),
        "{slice}"
    );
    assert_eq!(slice["endpoints"][0]["addresses"][0], "10.250.7.7");
    assert!(slice["metadata"]["ownerReferences"].is_null(), "{slice}");
    sb.shutdown().await;
}
