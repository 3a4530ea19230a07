//! Controllers killed in the middle of changes and restarted: the ingress
//! controller and the cloud controller manager on the HAProxy driver, and
//! `rancher-dns`, are killed with SIGKILL right after a batch of Ingress,
//! Service and EndpointSlice changes is applied; more changes come while they
//! are down; once restarted they converge to exactly what the API holds. The
//! real `curl` through HAProxy reaches what exists and nothing deleted, the
//! HAProxy configuration names no deleted host, the statuses list the host,
//! the cloud controller's finalizer lets a Service deleted meanwhile go and
//! its listener closes, `dig` answers only the Services that exist, and
//! exactly one HAProxy master per host directory is left (the one a killed
//! controller left running is retired once the new one serves).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use rancher_lb::testing::HttpEcho;
use tokio::{net::TcpStream, process::Child};

use crate::support::{
    CLASS, app, curl, dns_command, eventually, free_dns_port, free_port, kubectl, short,
    spawn_haproxy_controller, terminate,
};

const INGRESS_HOST: &str = "127.0.96.1";
const CLOUD_HOST: &str = "127.0.96.2";

/// A `type: LoadBalancer` Service `name` on `port`.
fn lb_service(name: &str, port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\n  namespace: default\n\
         spec:\n  type: LoadBalancer\n  selector:\n    app: {name}\n  ports:\n  \
         - name: tcp\n    port: {port}\n    protocol: TCP\n"
    )
}

/// The pids of the HAProxy processes (masters and workers) started on the
/// master socket in `host_dir`, with their parents.
fn haproxies(host_dir: &Path) -> Vec<(u32, u32)> {
    let socket = host_dir.join("master.sock");
    let socket = socket.to_string_lossy().into_owned();
    let mut out = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline);
        if !cmdline.split('\0').any(|arg| arg.starts_with(&socket)) {
            continue;
        }
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(") ") else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().unwrap_or("Z");
        let ppid = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if state != "Z" && state != "X" {
            out.push((pid, ppid));
        }
    }
    out
}

/// The masters among [`haproxies`]: those whose parent is not one of them.
fn masters(host_dir: &Path) -> Vec<u32> {
    let all = haproxies(host_dir);
    all.iter()
        .filter(|(_, ppid)| !all.iter().any(|(pid, _)| pid == ppid))
        .map(|(pid, _)| *pid)
        .collect()
}

/// Whether something accepts TCP connections on `ip:port`.
async fn listens(ip: &str, port: u16) -> bool {
    matches!(
        tokio::time::timeout(Duration::from_secs(1), TcpStream::connect((ip, port))).await,
        Ok(Ok(_))
    )
}

async fn kill9(child: &mut Child) {
    child.start_kill().expect("SIGKILL");
    let _ = child.wait().await;
}

struct World {
    dir: tempfile::TempDir,
    kubeconfig: PathBuf,
    http_port: u16,
}

impl World {
    async fn apply(&self, name: &str, text: &str) {
        let file = self.dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, text).expect("write manifests");
        let (ok, out) = kubectl(&self.kubeconfig, &["apply", "-f", file.to_str().unwrap()]).await;
        assert!(ok, "{out}");
    }

    async fn delete(&self, args: &[&str]) {
        let mut all = vec!["delete", "--wait=false"];
        all.extend_from_slice(args);
        let (ok, out) = kubectl(&self.kubeconfig, &all).await;
        assert!(ok, "{out}");
    }

    /// `(status, body)` of `GET /x` through the ingress HAProxy for `host`.
    async fn get(&self, host: &str) -> (u16, String) {
        let url = format!("http://{INGRESS_HOST}:{}/x", self.http_port);
        curl(&url, Some(host)).await
    }

    fn ingress(&self, admin: u16) -> Child {
        spawn_haproxy_controller(
            env!("CARGO_BIN_EXE_rancher-ingress-controller"),
            &self.kubeconfig,
            &[INGRESS_HOST],
            &self.dir.path().join("ingress"),
            admin,
        )
    }

    fn cloud(&self, admin: u16) -> Child {
        spawn_haproxy_controller(
            env!("CARGO_BIN_EXE_rancher-cloud-controller-manager"),
            &self.kubeconfig,
            &[CLOUD_HOST],
            &self.dir.path().join("cloud"),
            admin,
        )
    }

    async fn ingress_ips(&self, name: &str) -> String {
        kubectl(
            &self.kubeconfig,
            &[
                "get",
                "ingress",
                name,
                "-o",
                "jsonpath={.status.loadBalancer.ingress[*].ip}",
            ],
        )
        .await
        .1
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controllers_killed_mid_change_converge_to_exactly_the_api_state() {
    rancher_runtime::install_crypto_provider();
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    let _sandbox = rancher_sandbox::Sandbox::builder()
        .kubeconfig_path(&kubeconfig)
        .start()
        .await
        .expect("sandbox starts");
    let world = World {
        dir,
        kubeconfig,
        http_port: free_port(),
    };
    let (one, two) = (
        HttpEcho::start("one").await.expect("echo one"),
        HttpEcho::start("two").await.expect("echo two"),
    );
    let host = |name: &str| format!("{name}.example.org");
    let manifest =
        |name: &str, echo: &HttpEcho| app(name, &host(name), world.http_port, echo.port());
    let (lb_keep, lb_gone) = (free_port(), free_port());
    world.apply("class", CLASS).await;
    for name in ["a1", "a2", "a3"] {
        world.apply(name, &manifest(name, &one)).await;
    }
    world
        .apply("lb-keep", &lb_service("lb-keep", lb_keep))
        .await;
    world
        .apply("lb-gone", &lb_service("lb-gone", lb_gone))
        .await;

    let (dns_port, dns_admin) = (free_dns_port(), free_port());
    let spawn_dns = || {
        dns_command(&world.kubeconfig, dns_port, dns_admin)
            .spawn()
            .expect("rancher-dns starts")
    };
    let (ingress_admin, cloud_admin) = (free_port(), free_port());
    let mut ingress = world.ingress(ingress_admin);
    let mut cloud = world.cloud(cloud_admin);
    let mut dns = spawn_dns();
    for name in ["a1", "a2", "a3"] {
        eventually(&format!("{name} served"), || async {
            (world.get(&host(name)).await == (200, "one /x".to_owned())).then_some(())
        })
        .await;
    }
    for port in [lb_keep, lb_gone] {
        eventually("the cloud listeners", || async {
            listens(CLOUD_HOST, port).await.then_some(())
        })
        .await;
    }
    eventually("DNS answers a3", || async {
        (short(dns_port, "a3.default.svc.cluster.local").await.len() == 1).then_some(())
    })
    .await;
    let ingress_dir = world.dir.path().join("ingress").join(INGRESS_HOST);
    let leftover = masters(&ingress_dir);
    assert_eq!(leftover.len(), 1, "one HAProxy master: {leftover:?}");

    // A batch of changes, and everyone killed while it is being applied.
    world.apply("a4", &manifest("a4", &one)).await;
    world.delete(&["ingress", "a1"]).await;
    world.delete(&["service", "a1"]).await;
    // a2 moves to the second backend: its EndpointSlice changes.
    world.apply("a2", &manifest("a2", &two)).await;
    kill9(&mut ingress).await;
    kill9(&mut cloud).await;
    kill9(&mut dns).await;
    // The killed controller's HAProxy still serves, from its last view.
    assert_eq!(
        masters(&ingress_dir),
        leftover,
        "SIGKILL leaves HAProxy running"
    );

    // More changes while they are down.
    world.apply("a5", &manifest("a5", &two)).await;
    world.delete(&["ingress", "a3"]).await;
    world.delete(&["service", "a3"]).await;
    world.delete(&["service", "lb-gone"]).await;

    // Restarted on the same directories and ports.
    let mut ingress = world.ingress(ingress_admin);
    let mut cloud = world.cloud(cloud_admin);
    let mut dns = spawn_dns();
    // What each host must get: the body, or `None` for no route (not 200).
    let want = [
        ("a1", None),
        ("a2", Some("two /x")),
        ("a3", None),
        ("a4", Some("one /x")),
        ("a5", Some("two /x")),
    ];
    let right = |got: &(u16, String), want: Option<&str>| match want {
        Some(body) => got.0 == 200 && got.1 == body,
        None => got.0 != 200 && got.0 != 0,
    };
    eventually("HAProxy to serve exactly what the API holds", || async {
        for (name, body) in want {
            if !right(&world.get(&host(name)).await, body) {
                return None;
            }
        }
        Some(())
    })
    .await;
    eventually("one HAProxy master again: the leftover retired", || async {
        let now = masters(&ingress_dir);
        (now.len() == 1 && now != leftover).then_some(())
    })
    .await;
    // Served by the new master alone: many requests, all right.
    for _ in 0..20 {
        for (name, body) in want {
            let got = world.get(&host(name)).await;
            assert!(right(&got, body), "{name}: {got:?}, want {body:?}");
        }
    }
    let config = std::fs::read_to_string(ingress_dir.join("current").join("haproxy.cfg"))
        .expect("the current configuration");
    // Backends are named after the Services (`…:default.a2.80`).
    for gone in ["a1", "a3"] {
        let backend = format!(":default.{gone}.");
        assert!(
            !config.contains(&backend),
            "{gone} left in the configuration"
        );
    }
    for kept in ["a2", "a4", "a5"] {
        let backend = format!(":default.{kept}.");
        assert!(
            config.contains(&backend),
            "{kept} missing from the configuration"
        );
        let ips = eventually(&format!("{kept}'s status"), || async {
            let ips = world.ingress_ips(kept).await;
            (ips.trim() == INGRESS_HOST).then_some(ips)
        })
        .await;
        assert_eq!(ips.trim(), INGRESS_HOST);
    }

    // The cloud controller lets the deleted Service go and closes its
    // listener; the other stays.
    eventually("lb-gone deleted once its finalizer is removed", || async {
        let (ok, out) = kubectl(&world.kubeconfig, &["get", "service", "lb-gone"]).await;
        (!ok && out.contains("NotFound")).then_some(())
    })
    .await;
    let cloud_dir = world.dir.path().join("cloud").join(CLOUD_HOST);
    eventually("the cloud's leftover HAProxy retired", || async {
        (masters(&cloud_dir).len() == 1).then_some(())
    })
    .await;
    eventually("lb-gone's listener closed", || async {
        (!listens(CLOUD_HOST, lb_gone).await).then_some(())
    })
    .await;
    assert!(listens(CLOUD_HOST, lb_keep).await, "lb-keep still listens");

    // DNS answers exactly the Services that exist.
    eventually("DNS to answer exactly the Services that exist", || async {
        for (name, present) in [
            ("a1", false),
            ("a2", true),
            ("a3", false),
            ("a4", true),
            ("a5", true),
        ] {
            let answers = short(dns_port, &format!("{name}.default.svc.cluster.local")).await;
            if answers.len() != usize::from(present) {
                return None;
            }
        }
        Some(())
    })
    .await;

    terminate(&mut ingress).await;
    terminate(&mut cloud).await;
    terminate(&mut dns).await;
    // A clean stop leaves no HAProxy behind.
    for dir in [&ingress_dir, &cloud_dir] {
        eventually("no HAProxy after a clean stop", || async {
            haproxies(dir).is_empty().then_some(())
        })
        .await;
    }
}
