//! Leader failover of the ingress controller and the cloud controller
//! manager: two replicas of each binary elect on a Lease with the default
//! durations (lease 15 s, renew deadline 10 s, retry 2 s) and program the
//! fake Rancher through the Rancher driver. The leaders are killed with
//! SIGKILL (no Lease release); each standby must lead within the lease
//! duration and, having checked everything, change nothing that is right: no
//! write to Rancher (no load balancer update, so no reload of its HAProxy), no
//! status write on the Ingress, the Service or the Nodes. The takeover times
//! are printed (figures in `BENCHMARKS.md`).

use std::{path::Path, time::Duration, time::Instant};

use k8s_openapi::api::{
    core::v1::{Node, Service},
    networking::v1::Ingress,
};
use kube::{
    Api, ResourceExt,
    api::{ListParams, PostParams},
};
use rancher_client::testing::{FakeHost, FakeRancher};
use tokio::process::{Child, Command};

use crate::support::{curl, eventually, free_port, kubectl, metric, terminate};

const HOSTS: [(&str, &str); 2] = [("node-1", "192.0.2.11"), ("node-2", "192.0.2.12")];

const MANIFESTS: &str = r#"apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata:
  name: rancher
spec:
  controller: rancher.io/ingress
---
apiVersion: v1
kind: Service
metadata:
  name: web
  namespace: default
spec:
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: web-1
  namespace: default
  labels:
    kubernetes.io/service-name: web
addressType: IPv4
ports:
- port: 8080
  protocol: TCP
endpoints:
- addresses: ["10.42.0.5"]
  conditions:
    ready: true
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
  namespace: default
spec:
  ingressClassName: rancher
  rules:
  - host: www.example.org
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: web
            port:
              number: 80
---
apiVersion: v1
kind: Service
metadata:
  name: db
  namespace: default
spec:
  type: LoadBalancer
  selector:
    app: db
  ports:
  - name: pg
    port: 5432
    protocol: TCP
"#;

/// One replica of `binary` electing as `identity`, on the Rancher driver.
fn replica(
    binary: &str,
    kubeconfig: &Path,
    fake: &FakeRancher,
    identity: &str,
    admin: u16,
) -> Child {
    Command::new(binary)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--driver", "rancher", "--leader-elect"])
        .args(["--leader-elect-namespace", "default"])
        .args(["--leader-elect-identity", identity])
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .envs(fake.env())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{binary} starts: {e}"))
}

/// The role `/readyz` on `admin` reports (`leader`, `standby`), once ready.
async fn role(admin: u16) -> Option<&'static str> {
    let (code, body) = curl(&format!("http://127.0.0.1:{admin}/readyz"), None).await;
    if code != 200 {
        return None;
    }
    ["leader", "standby"]
        .into_iter()
        .find(|role| body.lines().any(|l| l.contains(role)))
}

/// Requests that changed something in Rancher.
fn rancher_writes(fake: &FakeRancher) -> Vec<String> {
    fake.requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .map(|r| format!("{} {} {:?}", r.method, r.path, r.query))
        .collect()
}

/// The resourceVersions of what the controllers write: the Ingress, the
/// Service and the Nodes.
async fn written(client: &kube::Client) -> Vec<(String, String)> {
    let ingress = Api::<Ingress>::namespaced(client.clone(), "default")
        .get("web")
        .await
        .expect("the Ingress");
    let service = Api::<Service>::namespaced(client.clone(), "default")
        .get("db")
        .await
        .expect("the Service");
    let mut out = vec![
        (
            "ingress/web".to_owned(),
            ingress.resource_version().unwrap_or_default(),
        ),
        (
            "service/db".to_owned(),
            service.resource_version().unwrap_or_default(),
        ),
    ];
    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .expect("nodes");
    for node in nodes {
        out.push((
            format!("node/{}", node.name_any()),
            node.resource_version().unwrap_or_default(),
        ));
    }
    out
}

async fn status_ips(kubeconfig: &Path, kind: &str, name: &str) -> Option<String> {
    let (ok, out) = kubectl(
        kubeconfig,
        &[
            "get",
            kind,
            name,
            "-o",
            "jsonpath={.status.loadBalancer.ingress[*].ip}",
        ],
    )
    .await;
    let out = out.trim().to_owned();
    (ok && !out.is_empty()).then_some(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_leaders_are_replaced_within_the_lease_and_the_standbys_change_nothing() {
    rancher_runtime::install_crypto_provider();
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    let sandbox = rancher_sandbox::Sandbox::builder()
        .kubeconfig_path(&kubeconfig)
        .start()
        .await
        .expect("sandbox starts");
    let client = sandbox.client();
    let fake = FakeRancher::builder()
        .hosts(HOSTS.map(|(name, ip)| FakeHost::new(name, ip)))
        .settle_delay(Duration::from_millis(10))
        .start()
        .await
        .expect("fake Rancher starts");
    for (name, ip) in HOSTS {
        let node: Node = serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]}
        }))
        .expect("node");
        Api::<Node>::all(client.clone())
            .create(&PostParams::default(), &node)
            .await
            .expect("node created");
    }
    let file = dir.path().join("manifests.yaml");
    std::fs::write(&file, MANIFESTS).expect("write manifests");
    let (ok, out) = kubectl(&kubeconfig, &["apply", "-f", file.to_str().unwrap()]).await;
    assert!(ok, "{out}");

    let ingress_bin = env!("CARGO_BIN_EXE_rancher-ingress-controller");
    let cloud_bin = env!("CARGO_BIN_EXE_rancher-cloud-controller-manager");
    let admins: [u16; 4] = std::array::from_fn(|_| free_port());
    // The first replica of each leads; the second starts once it does.
    let mut ingress_a = replica(ingress_bin, &kubeconfig, &fake, "ingress-a", admins[0]);
    let mut cloud_a = replica(cloud_bin, &kubeconfig, &fake, "cloud-a", admins[1]);
    for admin in [admins[0], admins[1]] {
        eventually("the first replica to lead", || async {
            (role(admin).await == Some("leader")).then_some(())
        })
        .await;
    }
    let mut ingress_b = replica(ingress_bin, &kubeconfig, &fake, "ingress-b", admins[2]);
    let mut cloud_b = replica(cloud_bin, &kubeconfig, &fake, "cloud-b", admins[3]);
    for admin in [admins[2], admins[3]] {
        eventually("the second replica to stand by", || async {
            (role(admin).await == Some("standby")).then_some(())
        })
        .await;
    }
    let ingress_ips = eventually("the Ingress's addresses", || {
        status_ips(&kubeconfig, "ingress", "web")
    })
    .await;
    let service_ips = eventually("the Service's addresses", || {
        status_ips(&kubeconfig, "service", "db")
    })
    .await;
    eventually("provider IDs on the Nodes", || async {
        let nodes = Api::<Node>::all(client.clone())
            .list(&ListParams::default())
            .await
            .ok()?;
        nodes
            .iter()
            .all(|n| {
                n.spec
                    .as_ref()
                    .and_then(|s| s.provider_id.as_ref())
                    .is_some()
            })
            .then_some(())
    })
    .await;
    // Settled: two seconds in a row without a write to Rancher.
    eventually("Rancher to be left alone for 2 s", || async {
        fake.clear_requests();
        tokio::time::sleep(Duration::from_secs(2)).await;
        rancher_writes(&fake).is_empty().then_some(())
    })
    .await;
    let before = written(&client).await;
    let lbs_before = fake.list::<rancher_client::LoadBalancerService>();
    fake.clear_requests();

    // kill -9 both leaders.
    ingress_a.start_kill().expect("SIGKILL");
    cloud_a.start_kill().expect("SIGKILL");
    let killed = Instant::now();
    let _ = ingress_a.wait().await;
    let _ = cloud_a.wait().await;
    let mut took = Vec::new();
    for (what, admin) in [("ingress", admins[2]), ("cloud", admins[3])] {
        eventually(&format!("the {what} standby to lead"), || async {
            (role(admin).await == Some("leader")).then_some(())
        })
        .await;
        took.push(killed.elapsed().as_secs_f64());
    }
    println!(
        "takeover after kill -9 with the default flags (lease 15 s, retry 2 s): \
         ingress controller {:.1} s, cloud controller manager {:.1} s",
        took[0], took[1]
    );

    // The new leaders check everything: the ingress controller translates and
    // ensures its load balancer, the cloud controller ensures the Service's.
    eventually(
        "the new ingress leader to ensure its load balancer",
        || async {
            metric(admins[2], "rancher_ingress_backend_applies_total")
                .await
                .filter(|n| *n >= 1.0)
        },
    )
    .await;
    eventually("the new cloud leader to ensure the Service", || async {
        let ok = "rancher_cloud_controller_provider_calls_total{call=\"ensure\",outcome=\"ok\"}";
        metric(admins[3], ok).await.filter(|n| *n >= 1.0)
    })
    .await;
    // Then three seconds of their reconciles and Rancher refreshes, in which
    // nothing may be written.
    let quiet = Instant::now();
    while quiet.elapsed() < Duration::from_secs(3) {
        assert_eq!(
            rancher_writes(&fake),
            Vec::<String>::new(),
            "no write to Rancher"
        );
        assert_eq!(written(&client).await, before, "no status write");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        metric(admins[2], "rancher_ingress_status_writes_total").await,
        Some(0.0),
        "no Ingress status write"
    );
    let lbs_after = fake.list::<rancher_client::LoadBalancerService>();
    assert_eq!(
        lbs_after, lbs_before,
        "the load balancers in Rancher are as they were"
    );
    assert_eq!(
        status_ips(&kubeconfig, "ingress", "web").await,
        Some(ingress_ips)
    );
    assert_eq!(
        status_ips(&kubeconfig, "service", "db").await,
        Some(service_ips)
    );

    // And they act: a change is served by the new leaders.
    let (ok, out) = kubectl(
        &kubeconfig,
        &["annotate", "ingress", "web", "scale=2", "--overwrite"],
    )
    .await;
    assert!(ok, "{out}");
    eventually("the Ingress on both hosts", || async {
        status_ips(&kubeconfig, "ingress", "web")
            .await
            .filter(|ips| ips.split_whitespace().count() == 2)
    })
    .await;

    terminate(&mut ingress_b).await;
    terminate(&mut cloud_b).await;
}
