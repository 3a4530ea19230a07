//! The other two engines an operator loads our archives into: Debian's podman
//! (daemonless) and Debian's dockerd, each started by the test as root with its
//! own directories and socket, so nothing the machine runs is used or touched,
//! and without a bridge or firewall rules (containers run on the host network).
//! Dropping either removes what it made.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
};

use crate::{
    containerd::{text, unmount_below},
    support::eventually,
};

/// The limits given to containers: podman and dockerd otherwise ask for more
/// open files and processes than a CI machine's hard limits may allow.
const ULIMITS: [&str; 4] = [
    "--ulimit",
    "nofile=1024:1024",
    "--ulimit",
    "nproc=4096:4096",
];

/// An engine that loads an archive and runs an image's command.
pub(crate) trait Engine {
    /// The engine's name, for messages.
    fn name(&self) -> &'static str;

    /// Runs the engine's client with `args`.
    fn client(&self, args: &[&str]) -> Output;

    /// `load -i archive`: the references it printed as loaded.
    fn load(&self, archive: &Path) -> Vec<String> {
        let out = self.client(&["load", "-i", archive.to_str().expect("UTF-8 path")]);
        assert!(
            out.status.success(),
            "{} load {}: {}",
            self.name(),
            archive.display(),
            text(&out)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("Loaded image: "))
            .map(str::to_owned)
            .collect()
    }

    /// `run --rm --network host <ulimits> reference args...`.
    fn run(&self, reference: &str, args: &[&str]) -> Output {
        let mut all = vec!["run", "--rm", "--network", "host"];
        all.extend_from_slice(&ULIMITS);
        all.push(reference);
        all.extend_from_slice(args);
        self.client(&all)
    }
}

/// podman with its own storage, run and temporary directories.
pub(crate) struct Podman {
    dir: tempfile::TempDir,
    /// Whether podman's network directory under /run existed before us (it
    /// makes one whatever it is told).
    run_containers_existed: bool,
}

const RUN_CONTAINERS: &str = "/run/containers";

impl Podman {
    pub(crate) fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("tempdir"),
            run_containers_existed: Path::new(RUN_CONTAINERS).exists(),
        }
    }
}

impl Engine for Podman {
    fn name(&self) -> &'static str {
        "podman"
    }

    fn client(&self, args: &[&str]) -> Output {
        let d = self.dir.path();
        Command::new("podman")
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("run"))
            .arg("--tmpdir")
            .arg(d.join("tmp"))
            .arg("--network-config-dir")
            .arg(d.join("net"))
            .args(["--events-backend", "file", "--storage-driver", "vfs"])
            .args(["--cgroup-manager", "cgroupfs"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("podman (Debian package podman) must be installed")
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.client(&["rm", "--all", "--force"]);
        let _ = self.client(&["rmi", "--all", "--force"]);
        unmount_below(self.dir.path());
        if !self.run_containers_existed {
            let _ = std::fs::remove_dir_all(RUN_CONTAINERS);
        }
    }
}

/// dockerd with its own data, exec root and socket, no bridge and no iptables;
/// it runs its own containerd below the exec root.
pub(crate) struct Docker {
    dir: tempfile::TempDir,
    child: Child,
}

impl Docker {
    /// Starts dockerd and waits until the client reaches it.
    pub(crate) async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let log = std::fs::File::create(d.join("dockerd.log")).expect("log");
        let child = Command::new("dockerd")
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("dockerd.pid"))
            .arg("--host")
            .arg(format!("unix://{}", d.join("docker.sock").display()))
            .args(["--bridge=none", "--iptables=false", "--ip6tables=false"])
            .args(["--ip-masq=false", "--storage-driver=vfs"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("dockerd (Debian package docker.io) must be installed");
        let docker = Self { dir, child };
        eventually("dockerd answers", || async {
            docker.client(&["version"]).status.success().then_some(())
        })
        .await;
        docker
    }

    fn log(&self) -> PathBuf {
        self.dir.path().join("dockerd.log")
    }
}

impl Engine for Docker {
    fn name(&self) -> &'static str {
        "docker"
    }

    fn client(&self, args: &[&str]) -> Output {
        // Debian's client, the one that comes with this dockerd.
        Command::new("/usr/bin/docker")
            .env(
                "DOCKER_HOST",
                format!("unix://{}", self.dir.path().join("docker.sock").display()),
            )
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("docker client (Debian package docker.io)")
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        let listed = self.client(&["ps", "--all", "--quiet"]);
        for id in String::from_utf8_lossy(&listed.stdout).split_whitespace() {
            let _ = self.client(&["rm", "--force", id]);
        }
        // SIGTERM: dockerd stops its containers and its containerd, then exits.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while std::time::Instant::now() < end {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            pause();
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        unmount_below(self.dir.path());
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.log()).unwrap_or_default();
            print_log(&log);
        }
    }
}

/// dockerd's log beside a failed test's message.
#[allow(clippy::print_stderr)]
fn print_log(log: &str) {
    eprintln!("dockerd's log:\n{log}");
}

/// A short wait in `drop`, which cannot await.
#[allow(clippy::disallowed_methods)]
fn pause() {
    std::thread::sleep(std::time::Duration::from_millis(100));
}
