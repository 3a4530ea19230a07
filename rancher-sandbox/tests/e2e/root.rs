//! Root mode, with a stand-in CNI plugin that blocks in ADD until the test releases it:
//! the API server keeps answering reads and writes while pods are being wired (the
//! plugin runs away from the store's lock), pods are wired side by side, they show
//! `ContainerCreating` meanwhile, they run once the plugin answers, and a pod deleted
//! while its ADD runs is unwired when the ADD returns. The network is a
//! /24 of 10.250.0.0/16 picked at random; namespaces are named after this process's id
//! and removed even when the test fails.

use std::path::{Path, PathBuf};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::api::{Api, ListParams, PostParams};
use rancher_sandbox::workloads::CniNetwork;
use rancher_sandbox::{PodNetwork, SandboxNode, Workloads};
use serde_json::json;

use super::eventually;
use super::kubectl::Kubectl;

/// How many pods start at once.
const PODS: usize = 3;

/// A CNI plugin standing in for `rancher-cni`: ADD writes `add.<container id>` (the
/// namespace's path), waits until `release` exists (at most 60 s, then fails), puts the
/// next free address of `PREFIX.2..` on the namespace's `lo` and answers it; DEL
/// appends the container id to `del`.
const PLUGIN: &str = r#"#!/bin/sh
dir='DIR'
cat >/dev/null
case "$CNI_COMMAND" in
ADD)
  echo "$CNI_NETNS" > "$dir/add.$CNI_CONTAINERID"
  i=0
  while [ ! -e "$dir/release" ]; do
    i=$((i + 1))
    if [ "$i" -gt 1200 ]; then
      echo '{"cniVersion":"1.0.0","code":11,"msg":"the test never released the plugin"}'
      exit 1
    fi
    sleep 0.05
  done
  n=2
  while ! mkdir "$dir/ip.$n" 2>/dev/null; do n=$((n + 1)); done
  ip -n "$(basename "$CNI_NETNS")" addr add "PREFIX.$n/32" dev lo >&2 || exit 1
  printf '{"cniVersion":"1.0.0","ips":[{"address":"PREFIX.%s/24"}]}' "$n"
  ;;
DEL)
  echo "$CNI_CONTAINERID" >> "$dir/del"
  ;;
esac
"#;

/// Releases the plugin and removes the namespaces it saw, however the test ends.
struct Cleanup(PathBuf);

impl Drop for Cleanup {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.join("release"), "");
        for netns in adds(&self.0) {
            if let Some(name) = Path::new(&netns).file_name() {
                let _ = std::process::Command::new("ip")
                    .args(["netns", "del"])
                    .arg(name)
                    .output();
            }
        }
    }
}

/// The namespaces the plugin was called ADD for.
fn adds(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .filter(|e| e.file_name().to_string_lossy().starts_with("add."))
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .map(|s| s.trim().to_string())
                .collect()
        })
        .unwrap_or_default()
}

fn netns_exists(path: &str) -> bool {
    Path::new(path).exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_server_answers_while_root_mode_pods_are_wired() {
    super::install_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let calls = dir.path().join("calls");
    std::fs::create_dir(&calls).expect("calls dir");
    let _cleanup = Cleanup(calls.clone());
    let third = fastrand::u8(0..=255);
    let prefix = format!("10.250.{third}");
    let plugin = dir.path().join("slow-cni");
    std::fs::write(
        &plugin,
        PLUGIN
            .replace("DIR", &calls.to_string_lossy())
            .replace("PREFIX", &prefix),
    )
    .expect("plugin written");
    let mut perms = std::fs::metadata(&plugin).expect("plugin").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&plugin, perms).expect("plugin executable");

    let kubeconfig = dir.path().join("kubeconfig");
    let sandbox = rancher_sandbox::Sandbox::builder()
        .kubeconfig_path(&kubeconfig)
        .workloads(
            Workloads::new()
                .node(SandboxNode::new("node-a", "127.0.0.2".parse().expect("ip")))
                .cluster_cidr(format!("{prefix}.0/24"))
                .pod_network(PodNetwork::Cni(CniNetwork::new(
                    &plugin,
                    dir.path().join("ipam"),
                ))),
        )
        .start()
        .await
        .expect("sandbox starts");
    let k = Kubectl::new(&kubeconfig, &dir.path().join("cache"));
    k.ok(&[
        "create",
        "deployment",
        "slow",
        "--image=nginx",
        &format!("--replicas={PODS}"),
        "--port=8080",
    ])
    .await;
    eventually("a CNI ADD in progress", || async {
        (!adds(&calls).is_empty()).then_some(())
    })
    .await;

    // The plugin is blocked in ADD: the API server answers a read and a write anyway.
    let pods: Api<Pod> = Api::namespaced(sandbox.client(), "default");
    let listed = tokio::time::timeout(
        Duration::from_secs(20),
        pods.list(&ListParams::default().labels("app=slow")),
    )
    .await
    .expect("the API server answers a GET while a CNI ADD is in progress")
    .expect("pods listed");
    assert_eq!(listed.items.len(), PODS);
    let configmaps: Api<ConfigMap> = Api::namespaced(sandbox.client(), "default");
    let cm = serde_json::from_value(json!({"metadata": {"name": "during-add"}})).expect("cm");
    tokio::time::timeout(
        Duration::from_secs(20),
        configmaps.create(&PostParams::default(), &cm),
    )
    .await
    .expect("the API server answers a write while a CNI ADD is in progress")
    .expect("configmap created");
    // Pods are wired side by side, and show what a kubelet shows meanwhile.
    eventually("every pod's ADD in progress at once", || async {
        (adds(&calls).len() == PODS).then_some(())
    })
    .await;
    let out = k
        .ok(&["get", "pods", "-l", "app=slow", "--no-headers"])
        .await;
    assert!(
        !std::fs::exists(calls.join("release")).unwrap_or(true),
        "the plugin was released too early"
    );
    assert_eq!(
        out.lines()
            .filter(|l| l.contains("ContainerCreating"))
            .count(),
        PODS,
        "{out}"
    );

    // Scaled down while every ADD is blocked: the pod deleted meanwhile is unwired (a
    // DEL, its namespace removed) once its ADD returns.
    k.ok(&[
        "scale",
        "deployment",
        "slow",
        &format!("--replicas={}", PODS - 1),
    ])
    .await;
    eventually("one pod fewer", || async {
        let list = pods
            .list(&ListParams::default().labels("app=slow"))
            .await
            .ok()?;
        (list.items.len() == PODS - 1).then_some(())
    })
    .await;

    // Released: the pods run with the plugin's addresses.
    std::fs::write(calls.join("release"), "").expect("release");
    let ips: Vec<String> = eventually("the pods run with their addresses", || async {
        let list = pods
            .list(&ListParams::default().labels("app=slow"))
            .await
            .ok()?;
        let ips: Vec<String> = list
            .items
            .iter()
            .filter(|p| {
                p.status
                    .as_ref()
                    .and_then(|s| s.conditions.as_ref())
                    .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            })
            .filter_map(|p| p.status.as_ref()?.pod_ip.clone())
            .collect();
        (ips.len() == PODS - 1).then_some(ips)
    })
    .await;
    for ip in &ips {
        assert!(ip.starts_with(&format!("{prefix}.")), "{ip}");
    }

    // Deleted: DEL for each pod, and the namespaces go.
    k.ok(&["delete", "deployment", "slow"]).await;
    eventually("a DEL for each pod and no namespace left", || async {
        let dels = std::fs::read_to_string(calls.join("del")).unwrap_or_default();
        (dels.lines().count() == PODS && !adds(&calls).iter().any(|n| netns_exists(n)))
            .then_some(())
    })
    .await;
    sandbox.shutdown().await;
}
