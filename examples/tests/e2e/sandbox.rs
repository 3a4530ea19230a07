//! End to end: starts the `rancher-sandbox` binary as a newcomer would, waits
//! for its guide, runs every command the guide prints and checks what each
//! shows (among them the paragraph as written: `kubectl create
//! deployment web2`, `expose`, `create ingress`, `curl` through HAProxy on
//! 127.0.0.2 port 80, then `scale` and `delete pod`), then presses Ctrl-C and
//! checks that no HAProxy process is left; and the main job in root mode
//! (`--pod-network cni`).
//!
//! The demo manifests are copied with the listener ports moved up (Ingress
//! HTTP 18080, HTTPS 18443, LoadBalancer 18081), and the DNS servers and the
//! admin server get free ports, so the demo's own listeners run next to a
//! developer's `./scripts/sandbox`; the paragraph's Ingress takes port 80 of
//! 127.0.0.2, as the paragraph says.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt as _;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rancher_examples::sandbox::{COMMAND_PREFIX, DEMO_MANIFESTS, READY_LINE};

const HOSTS: [&str; 2] = ["127.0.0.2", "127.0.0.3"];

/// Copies the demo manifests, applying `(file, from, to)` text replacements
/// when `move_ports`; each must match, so a change of the manifests fails
/// here loudly.
fn copy_manifests(to: &Path, move_ports: bool) {
    let edits: &[(&str, &str, &str)] = if !move_ports {
        &[]
    } else {
        &[
            (
                "10-web.yaml",
                "    scale: \"2\"\n",
                "    scale: \"2\"\n    http.port: \"18080\"\n",
            ),
            (
                "30-loadbalancer.yaml",
                "      port: 8080\n      targetPort: 8080\n",
                "      port: 18081\n      targetPort: 8080\n",
            ),
            (
                "40-tls.yaml",
                "  name: secure\n  namespace: default\n",
                "  name: secure\n  namespace: default\n  annotations:\n    http.port: \"18080\"\n    https.port: \"18443\"\n",
            ),
        ]
    };
    std::fs::create_dir_all(to).expect("manifests dir");
    for entry in std::fs::read_dir(DEMO_MANIFESTS).expect("demo manifests") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let mut text = std::fs::read_to_string(&path).expect("read manifest");
        for (_, from, into) in edits.iter().filter(|(f, _, _)| *f == name) {
            assert!(text.contains(from), "{name} no longer contains {from:?}");
            text = text.replace(from, into);
        }
        std::fs::write(to.join(&name), text).expect("write manifest");
    }
}

fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn free_udp_and_tcp_port() -> u16 {
    loop {
        let udp = UdpSocket::bind("127.0.0.1:0").expect("udp");
        let port = udp.local_addr().expect("addr").port();
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The running sandbox; killed (group and all) if the test panics.
struct Sandbox {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{}", self.child.id())])
                .status();
            let _ = self.child.wait();
        }
    }
}

impl Sandbox {
    /// Reads stdout until a line equal to `wanted`, failing at the deadline.
    fn wait_for_line(&mut self, wanted: &str, deadline: Duration) {
        let end = Instant::now() + deadline;
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let done = line == wanted;
                    self.seen.push(line);
                    if done {
                        return;
                    }
                }
                Err(error) => panic!(
                    "no {wanted:?} from rancher-sandbox ({error}); output so far:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }
}

/// Runs `command` with `sh -c` until it exits 0 and its output passes
/// `check`, for at most a few seconds; returns the output.
fn run_until(command: &str, mut check: impl FnMut(&str) -> bool) -> String {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let output = Command::new("timeout")
            .args(["10", "sh", "-c", command])
            .output()
            .expect("sh runs");
        let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
        if output.status.success() && check(&stdout) {
            return stdout;
        }
        assert!(
            Instant::now() < end,
            "guide command failed: {command}\nstatus {}\nstdout:\n{stdout}\nstderr:\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        pause(200);
    }
}

/// The interval between polls. This test is synchronous: there is no async
/// runtime for a blocking sleep to stall.
#[allow(clippy::disallowed_methods)]
fn pause(millis: u64) {
    std::thread::sleep(Duration::from_millis(millis));
}

/// HAProxy processes whose command line mentions `dir`.
fn haproxy_processes_under(dir: &Path) -> Vec<String> {
    let dir = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains("haproxy") && cmdline.contains(&dir) {
            found.push(format!(
                "{}: {cmdline}",
                entry.file_name().to_string_lossy()
            ));
        }
    }
    found
}

/// A sandbox run's files and addresses.
struct Run {
    _work: tempfile::TempDir,
    kubeconfig: std::path::PathBuf,
    run_dir: std::path::PathBuf,
    dns: SocketAddr,
    federation_dns: SocketAddr,
    admin: SocketAddr,
}

impl Sandbox {
    /// Starts `rancher-sandbox` on copied manifests and free ports, with
    /// `extra` flags, and waits for its guide.
    fn start(extra: &[&str]) -> (Self, Run) {
        let work = tempfile::tempdir().expect("tempdir");
        let manifests = work.path().join("manifests");
        // With --rancher-fake nothing listens on the hosts: the demo's own
        // ports, as a newcomer runs it.
        copy_manifests(&manifests, !extra.contains(&"--rancher-fake"));
        let run = Run {
            kubeconfig: work.path().join("kubeconfig"),
            run_dir: work.path().join("run"),
            dns: format!("127.0.0.1:{}", free_udp_and_tcp_port())
                .parse()
                .expect("addr"),
            federation_dns: format!("127.0.0.1:{}", free_udp_and_tcp_port())
                .parse()
                .expect("addr"),
            admin: format!("127.0.0.1:{}", free_tcp_port())
                .parse()
                .expect("addr"),
            _work: work,
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_rancher-sandbox"));
        child
            .arg("--manifests")
            .arg(&manifests)
            .arg("--kubeconfig-out")
            .arg(&run.kubeconfig)
            .arg("--run-dir")
            .arg(&run.run_dir)
            .args([
                "--dns-listen",
                &run.dns.to_string(),
                "--admin",
                &run.admin.to_string(),
            ])
            .args(["--federation-dns-listen", &run.federation_dns.to_string()])
            // Names outside the cluster are not asked for; a dead upstream keeps
            // the test off the network.
            .args(["--dns-upstream", "127.0.0.1:9"])
            .args(extra)
            // As root the default (`auto`) wires pods with rancher-cni in the
            // cluster range; the guide tests keep to loopback so they run next
            // to the root-mode test, which picks a range of its own.
            .args(if extra.contains(&"--pod-network") {
                &[][..]
            } else {
                &["--pod-network", "loopback"][..]
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            // Its own process group, like a shell job: Ctrl-C reaches the group.
            .process_group(0);
        let mut child = child.spawn().expect("rancher-sandbox starts");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut sandbox = Self {
            child,
            lines,
            seen: Vec::new(),
        };
        sandbox.wait_for_line(READY_LINE, Duration::from_secs(180));
        (sandbox, run)
    }

    /// Ctrl-C: SIGINT to the whole process group, as a terminal sends it;
    /// the sandbox must exit cleanly within 30 s.
    fn interrupt(&mut self) {
        let status = Command::new("kill")
            .args(["-INT", "--", &format!("-{}", self.child.id())])
            .status()
            .expect("kill runs");
        assert!(status.success());
        let end = Instant::now() + Duration::from_secs(30);
        let exit = loop {
            if let Some(exit) = self.child.try_wait().expect("wait") {
                break exit;
            }
            assert!(
                Instant::now() < end,
                "rancher-sandbox did not stop within 30 s of Ctrl-C"
            );
            pause(100);
        };
        assert!(exit.success(), "rancher-sandbox exited with {exit}");
    }
}

#[test]
fn the_guide_commands_work_and_ctrl_c_leaves_nothing_behind() {
    let (mut sandbox, run) = Sandbox::start(&[]);
    let Run {
        kubeconfig,
        run_dir,
        dns,
        federation_dns,
        admin,
        ..
    } = &run;
    let (dns, federation_dns, admin) = (*dns, *federation_dns, *admin);
    let output = sandbox.seen.join("\n");
    let commands: Vec<&str> = sandbox
        .seen
        .iter()
        .filter_map(|l| l.strip_prefix(COMMAND_PREFIX))
        .collect();
    let with = |needle: &str| -> Vec<&str> {
        commands
            .iter()
            .copied()
            .filter(|c| c.contains(needle))
            .collect()
    };

    // The Ingress status has both host addresses, through kubectl.
    let kubectl = format!("kubectl --kubeconfig {}", kubeconfig.display());
    let ips = run_until(
        &format!(
            "{kubectl} get ingress scalelb -o jsonpath='{{.status.loadBalancer.ingress[*].ip}}'"
        ),
        |out| out.split_whitespace().count() == 2,
    );
    let mut ips: Vec<&str> = ips.split_whitespace().collect();
    ips.sort_unstable();
    assert_eq!(ips, HOSTS, "scalelb addresses");
    let get = with("get nodes,ingress,services");
    assert_eq!(get.len(), 1, "one kubectl get line in:\n{output}");
    run_until(get[0], |out| {
        out.lines()
            .any(|l| l.contains("scalelb") && l.contains("127.0.0.2,127.0.0.3"))
    });

    // Both addresses serve /foo.
    let foo = with("Host: foo.bar.com");
    assert_eq!(foo.len(), 2, "two curl lines for foo.bar.com in:\n{output}");
    for host in HOSTS {
        let line = foo
            .iter()
            .find(|c| c.contains(&format!("http://{host}:18080/foo")))
            .unwrap_or_else(|| panic!("no curl line for {host} in:\n{output}"));
        run_until(line, |out| {
            out.starts_with("nginx-") && out.trim_end().ends_with(" /foo")
        });
    }

    // The TLS Ingress.
    let tls = with("https://secure.example.org:18443/");
    assert_eq!(tls.len(), 1, "one HTTPS line in:\n{output}");
    run_until(tls[0], |out| out.starts_with("nginx-"));

    // The LoadBalancer Service: a TCP connection on its status address, and
    // the guide's curl through it.
    let lb = with(":18081/");
    assert_eq!(lb.len(), 1, "one LoadBalancer line in:\n{output}");
    let address = lb[0]
        .split("http://")
        .nth(1)
        .and_then(|rest| rest.strip_suffix('/'))
        .expect("address in the curl line");
    let address: SocketAddr = address.parse().expect("socket address");
    assert!(HOSTS.contains(&address.ip().to_string().as_str()));
    TcpStream::connect_timeout(&address, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("the LoadBalancer Service refuses TCP on {address}: {e}"));
    run_until(lb[0], |out| out.starts_with("nginx-"));

    // DNS.
    // DNS: the StatefulSet's pods by name (numbered from 0), the headless
    // Service's pod addresses.
    assert!(
        output.contains("runs pods mdb-0 to mdb-2 (the seed's PetSets counted from 1"),
        "the guide tells the numbering:\n{output}"
    );
    let mdb0 = run_until(
        &format!("{kubectl} get pod mdb-0 -o jsonpath='{{.status.podIP}}'"),
        |out| out.starts_with("127."),
    );
    let dig = with("mdb-0.mongodb.default.svc.cluster.local");
    assert_eq!(dig.len(), 1, "one dig line for mdb-0 in:\n{output}");
    assert!(dig[0].contains(&format!("-p {}", dns.port())));
    run_until(dig[0], |out| out.trim() == mdb0);
    let srv = with("SRV _mongo._tcp.mongodb");
    assert_eq!(srv.len(), 1, "one SRV line in:\n{output}");
    run_until(srv[0], |out| out.lines().count() == 3);
    let headless = format!(
        "dig @127.0.0.1 -p {} +short mongodb.default.svc.cluster.local",
        dns.port()
    );
    let ips = run_until(
        &format!("{kubectl} get pods -l app=mongodb -o jsonpath='{{.items[*].status.podIP}}'"),
        |out| out.split_whitespace().count() == 3,
    );
    let mut ips: Vec<&str> = ips.split_whitespace().collect();
    ips.sort_unstable();
    run_until(&headless, |out| {
        let mut got: Vec<&str> = out.split_whitespace().collect();
        got.sort_unstable();
        got == ips
    });
    let mut ran: Vec<&str> = vec![dig[0], srv[0]];

    // The paragraph, as written, from the guide's lines.
    let paragraph = [
        "create deployment web2 --image=nginx --replicas=2",
        "expose deployment web2 --port 80",
        "create ingress web2 --rule=\"web2.example.com/*=web2:80\"",
        "rollout status deployment/web2",
    ];
    for step in paragraph {
        let line = with(step);
        assert_eq!(line.len(), 1, "one line `{step}` in:\n{output}");
        assert_eq!(line[0], format!("{kubectl} {step}"));
        run_until(line[0], |_| true);
        ran.push(line[0]);
    }
    let curl = with("web2.example.com' http");
    assert_eq!(curl, ["curl -H 'Host: web2.example.com' http://127.0.0.2/"]);
    run_until(curl[0], |out| {
        out.starts_with("web2-") && out.trim_end().ends_with(" /")
    });
    ran.push(curl[0]);
    let reloads = || -> String {
        run_until(&format!("curl -fsS http://{admin}/metrics"), |out| {
            out.contains("haproxy_reloads_total")
        })
        .lines()
        .find(|l| l.starts_with("haproxy_reloads_total"))
        .unwrap_or_default()
        .to_owned()
    };
    let before = reloads();
    // Scaled up: a third pod answers through HAProxy, without a reload.
    let scale = with("scale deployment web2 --replicas=3");
    assert_eq!(scale.len(), 1, "one scale line in:\n{output}");
    run_until(scale[0], |_| true);
    ran.push(scale[0]);
    let mut answered = std::collections::BTreeSet::new();
    run_until(curl[0], |out| {
        answered.insert(out.split_whitespace().next().unwrap_or_default().to_owned());
        answered.len() == 3
    });
    assert_eq!(reloads(), before, "scaling reloaded HAProxy");
    // Scaled down: the pod left answers alone, still without a reload.
    run_until(
        &format!("{kubectl} scale deployment web2 --replicas=1"),
        |_| true,
    );
    let left = run_until(
        &format!("{kubectl} get pods -l app=web2 -o jsonpath='{{.items[*].metadata.name}}'"),
        |out| out.split_whitespace().count() == 1,
    );
    let left = format!("{} ", left.trim());
    let mut streak = 0;
    run_until(curl[0], |out| {
        streak = if out.starts_with(&left) {
            streak + 1
        } else {
            0
        };
        streak == 10
    });
    assert_eq!(reloads(), before, "scaling down reloaded HAProxy");
    // A deleted pod is replaced.
    let delete = with("delete pod nginx-");
    assert_eq!(delete.len(), 1, "one delete pod line in:\n{output}");
    let deleted = delete[0].rsplit(' ').next().unwrap_or_default();
    run_until(delete[0], |_| true);
    ran.push(delete[0]);
    run_until(&format!("{kubectl} get pods -l app=nginx -o name"), |out| {
        out.lines().count() == 2 && !out.contains(deleted)
    });
    for host in HOSTS {
        run_until(
            &format!("curl -fsS -H 'Host: foo.bar.com' http://{host}:18080/foo"),
            |out| out.starts_with("nginx-") && !out.starts_with(deleted),
        );
    }
    // The DNS answers follow a scaled StatefulSet.
    run_until(
        &format!("{kubectl} scale statefulset mdb --replicas=2"),
        |_| true,
    );
    run_until(&headless, |out| out.lines().count() == 2);

    // The federated names of the LoadBalancer Service, global and regional.
    let federated = with(".demo.svc.");
    assert_eq!(federated.len(), 2, "two federated dig lines in:\n{output}");
    for command in &federated {
        assert!(command.contains(&format!("-p {}", federation_dns.port())));
        run_until(command, |out| out.trim() == address.ip().to_string());
    }

    // The credential provider answers from the regcred Secret.
    let credential = with("CredentialProviderRequest");
    assert_eq!(credential.len(), 1, "one credential line in:\n{output}");
    run_until(credential[0], |out| {
        out.contains("\"kind\":\"CredentialProviderResponse\"")
            && out.contains("registry.example.org")
            && out.contains("\"username\":\"demo\"")
    });

    // Every other line of the guide works too.
    for command in commands.iter().filter(|c| !ran.contains(c)) {
        run_until(command, |_| true);
    }
    run_until(&format!("curl -fsS http://{admin}/readyz"), |out| {
        out.starts_with("ok")
    });
    assert!(
        !haproxy_processes_under(run_dir).is_empty(),
        "HAProxy should be running under {}",
        run_dir.display()
    );

    sandbox.interrupt();
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let left = haproxy_processes_under(run_dir);
        if left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < end,
            "HAProxy processes left behind:\n{}",
            left.join("\n")
        );
        pause(100);
    }
}

/// The Rancher load balancer services the guide's Rancher API command
/// shows, as `(name, sorted public addresses, port rule hostnames)`.
fn rancher_services(command: &str) -> Vec<(String, Vec<String>, Vec<String>)> {
    let out = run_until(command, |out| out.contains("\"data\""));
    let list: serde_json::Value = serde_json::from_str(&out).expect("the Rancher API answers JSON");
    let strings = |v: &serde_json::Value, key: &str| -> Vec<String> {
        let mut out: Vec<String> = v
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| e[key].as_str().map(str::to_owned))
            .collect();
        out.sort();
        out.dedup();
        out
    };
    list["data"]
        .as_array()
        .expect("data")
        .iter()
        .filter(|s| s["state"] != "removed")
        .map(|s| {
            (
                s["name"].as_str().unwrap_or_default().to_owned(),
                strings(&s["publicEndpoints"], "ipAddress"),
                strings(&s["lbConfig"]["portRules"], "hostname"),
            )
        })
        .collect()
}

/// `--rancher-fake`: the Rancher driver on a fake Rancher. The seed's two
/// Ingresses share one Rancher load balancer service, so the guide shows
/// both hosts for `scalelb` (and for the TLS Ingress) on every start, and
/// nothing warns. The first time, the guide's commands are followed as a
/// newcomer would: the Rancher API shows the one shared service, and the
/// reader's own Ingress joins it.
#[test]
fn the_rancher_fake_guide_shows_both_addresses_every_time() {
    for round in 0..3 {
        let (mut sandbox, run) = Sandbox::start(&["--rancher-fake"]);
        let output = sandbox.seen.join("\n");
        for ingress in [
            "Ingress default/scalelb routes foo.bar.com/foo, on 127.0.0.2 and 127.0.0.3:",
            "Ingress default/secure routes secure.example.org/, on 127.0.0.2 and 127.0.0.3:",
        ] {
            assert!(output.contains(ingress), "round {round}:\n{output}");
        }
        let shared: Vec<&String> = sandbox
            .seen
            .iter()
            .filter(|l| l.starts_with("  ingress-"))
            .collect();
        assert_eq!(
            shared.len(),
            1,
            "round {round}: one shared service in:\n{output}"
        );
        assert!(
            shared[0].contains(" on 127.0.0.2, 127.0.0.3: ")
                && shared[0].contains("foo.bar.com/foo")
                && shared[0].contains("secure.example.org/"),
            "round {round}: {}",
            shared[0]
        );
        let kubectl = format!("kubectl --kubeconfig {}", run.kubeconfig.display());
        if round == 0 {
            follow_the_rancher_fake_guide(&sandbox, &kubectl);
        }
        let types = run_until(
            &format!("{kubectl} get events.events.k8s.io -A -o jsonpath='{{.items[*].type}}'"),
            |out| out.contains("Normal"),
        );
        assert!(
            !types.contains("Warning"),
            "round {round}: {}",
            run_until(&format!("{kubectl} get events.events.k8s.io -A"), |_| true)
        );
        sandbox.interrupt();
    }
}

/// The namespaces and bridges named `PREFIX-…` and `PREFIXb…` (a root-mode
/// sandbox's), removed when the test ends however it ends.
struct RootLeftovers(Option<String>);

impl Drop for RootLeftovers {
    fn drop(&mut self) {
        let Some(prefix) = &self.0 else { return };
        for entry in std::fs::read_dir("/run/netns")
            .into_iter()
            .flatten()
            .flatten()
        {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with(&format!("{prefix}-")) {
                let _ = Command::new("ip").args(["netns", "del", &name]).output();
            }
        }
        for bridge in ["b0", "b1"] {
            let _ = Command::new("ip")
                .args(["link", "del", &format!("{prefix}{bridge}")])
                .output();
        }
    }
}

/// `--pod-network cni`, as root: the main job's pods get network namespaces of
/// their own, wired by the `rancher-cni` binary built next to it, with addresses
/// from `--cluster-cidr` (a /23 of 10.250.0.0/16 picked at random); they answer
/// from the host, DNS names them, and Ctrl-C removes the namespaces and bridges.
/// The Rancher fake stands in for HAProxy, so this runs next to the guide test.
#[test]
fn the_main_job_in_root_mode_wires_its_pods_with_rancher_cni() {
    let third = fastrand::u8(0..128) * 2;
    let cidr = format!("10.250.{third}.0/23");
    let in_range = |ip: &str| {
        ip.starts_with(&format!("10.250.{third}."))
            || ip.starts_with(&format!("10.250.{}.", third + 1))
    };
    // Removes what a failed run leaves (after the sandbox, declared below, is killed).
    let mut leftovers = RootLeftovers(None);
    let (mut sandbox, run) = Sandbox::start(&[
        "--rancher-fake",
        "--pod-network",
        "cni",
        "--cluster-cidr",
        &cidr,
    ]);
    let prefix = format!("sb{}", sandbox.child.id() % 1_000_000);
    leftovers.0 = Some(prefix.clone());
    let kubectl = format!("kubectl --kubeconfig {}", run.kubeconfig.display());
    let namespaces = || -> Vec<String> {
        std::fs::read_dir("/run/netns")
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| n.starts_with(&format!("{prefix}-")))
                    .collect()
            })
            .unwrap_or_default()
    };

    // The StatefulSet's first pod: an address from the range, answering from the
    // host, and named by DNS.
    let mdb0 = run_until(
        &format!("{kubectl} get pod mdb-0 -o jsonpath='{{.status.podIP}}'"),
        |out| !out.is_empty(),
    );
    assert!(
        in_range(&mdb0),
        "mdb-0 has {mdb0}, not an address of {cidr}"
    );
    run_until(
        &format!("curl -fsS --max-time 2 http://{mdb0}:27017/root"),
        |out| out.trim_end() == "mdb-0 /root",
    );
    run_until(
        &format!(
            "dig @127.0.0.1 -p {} +short mdb-0.mongodb.default.svc.cluster.local",
            run.dns.port()
        ),
        |out| out.trim() == mdb0,
    );
    // The nginx Deployment's pods too, each in a namespace of its own.
    let ips = run_until(
        &format!("{kubectl} get pods -l app=nginx -o jsonpath='{{.items[*].status.podIP}}'"),
        |out| out.split_whitespace().count() == 2,
    );
    for ip in ips.split_whitespace() {
        assert!(
            in_range(ip),
            "an nginx pod has {ip}, not an address of {cidr}"
        );
        run_until(
            &format!("curl -fsS --max-time 2 http://{ip}:8080/foo"),
            |out| out.starts_with("nginx-") && out.trim_end().ends_with(" /foo"),
        );
    }
    assert!(namespaces().len() >= 5, "{:?}", namespaces());

    // Ctrl-C: no namespace and no bridge left.
    sandbox.interrupt();
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let bridges = ["b0", "b1"]
            .iter()
            .filter(|b| {
                Command::new("ip")
                    .args(["link", "show", &format!("{prefix}{b}")])
                    .output()
                    .is_ok_and(|o| o.status.success())
            })
            .count();
        let left = namespaces();
        if left.is_empty() && bridges == 0 {
            break;
        }
        assert!(
            Instant::now() < end,
            "left behind: namespaces {left:?}, {bridges} bridge(s) {prefix}b*"
        );
        pause(100);
    }
}

/// Runs the `--rancher-fake` guide's commands: the Rancher API shows one
/// service on both hosts with both Ingresses' rules; the reader's own
/// Deployment and Ingress (the guide prints no `curl` through a load balancer,
/// since nothing serves traffic) get both hosts by joining that service.
fn follow_the_rancher_fake_guide(sandbox: &Sandbox, kubectl: &str) {
    let output = sandbox.seen.join("\n");
    let commands: Vec<&str> = sandbox
        .seen
        .iter()
        .filter_map(|l| l.strip_prefix(COMMAND_PREFIX))
        .collect();
    let with = |needle: &str| -> Vec<&str> {
        commands
            .iter()
            .copied()
            .filter(|c| c.contains(needle))
            .collect()
    };
    assert!(
        with("Host: ").is_empty() && with("https://").is_empty(),
        "a curl through a load balancer that nothing serves in:\n{output}"
    );
    let get = with("get nodes,ingress,services");
    assert_eq!(get.len(), 1, "one kubectl get line in:\n{output}");
    run_until(get[0], |out| {
        ["scalelb", "secure"].iter().all(|name| {
            out.lines()
                .any(|l| l.contains(name) && l.contains("127.0.0.2,127.0.0.3"))
        })
    });
    let api = with("/loadbalancerservices");
    assert_eq!(api.len(), 1, "one Rancher API line in:\n{output}");
    let hosts: Vec<String> = HOSTS.iter().map(|h| (*h).to_owned()).collect();
    let ingress_services = |command: &str| -> Vec<(String, Vec<String>, Vec<String>)> {
        rancher_services(command)
            .into_iter()
            .filter(|(name, ..)| name.starts_with("ingress-"))
            .collect()
    };
    let services = ingress_services(api[0]);
    assert_eq!(services.len(), 1, "{services:?}");
    assert_eq!(services[0].1, hosts, "{services:?}");
    assert_eq!(
        services[0].2,
        ["foo.bar.com", "secure.example.org"],
        "{services:?}"
    );

    for step in [
        "create deployment web2 --image=nginx --replicas=2",
        "expose deployment web2 --port 80",
        "create ingress web2 --rule=\"web2.example.com/*=web2:80\"",
        "rollout status deployment/web2",
        "get ingress web2",
    ] {
        let line = with(step);
        assert_eq!(line.len(), 1, "one line `{step}` in:\n{output}");
        assert_eq!(line[0], format!("{kubectl} {step}"));
        run_until(line[0], |out| {
            step != "get ingress web2" || out.contains("127.0.0.2,127.0.0.3")
        });
    }
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let services = ingress_services(api[0]);
        if services.len() == 1 && services[0].2.iter().any(|h| h == "web2.example.com") {
            assert_eq!(services[0].1, hosts, "{services:?}");
            break;
        }
        assert!(Instant::now() < end, "web2 did not join: {services:?}");
        pause(200);
    }

    let scale = with("scale deployment web2 --replicas=3");
    assert_eq!(scale.len(), 1, "one scale line in:\n{output}");
    run_until(scale[0], |_| true);
    run_until(
        &format!(
            "{kubectl} get endpointslices -l kubernetes.io/service-name=web2 \
             -o jsonpath='{{.items[*].endpoints[*].addresses[0]}}'"
        ),
        |out| out.split_whitespace().count() == 3,
    );
    let delete = with("delete pod nginx-");
    assert_eq!(delete.len(), 1, "one delete pod line in:\n{output}");
    let deleted = delete[0].rsplit(' ').next().unwrap_or_default();
    run_until(delete[0], |_| true);
    run_until(&format!("{kubectl} get pods -l app=nginx -o name"), |out| {
        out.lines().count() == 2 && !out.contains(deleted)
    });
}
