//! Debian's containerd, started by a test as root with its own root, state and
//! socket directories (a containerd the machine runs is neither used nor
//! touched), and `ctr` against it. Dropping it removes everything it ran:
//! tasks, containers (and their snapshots), then stops the daemon; its
//! directories go with the temporary directory.

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Output, Stdio},
};

use crate::support::eventually;

/// containerd with its own directories, stopped (with its containers) on drop.
pub(crate) struct Containerd {
    dir: tempfile::TempDir,
    child: Child,
}

impl Containerd {
    /// Starts containerd and waits until `ctr` reaches it.
    pub(crate) async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let config = format!(
            "version = 2\nroot = \"{root}\"\nstate = \"{state}\"\n\
             disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
             [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n",
            root = d.join("root").display(),
            state = d.join("state").display(),
            sock = d.join("containerd.sock").display(),
        );
        std::fs::write(d.join("config.toml"), config).expect("config");
        let log = std::fs::File::create(d.join("containerd.log")).expect("log");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(d.join("config.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("containerd (Debian package containerd) must be installed");
        let containerd = Self { dir, child };
        eventually("containerd answers", || async {
            containerd.ctr(&["version"]).status.success().then_some(())
        })
        .await;
        containerd
    }

    /// The directory holding containerd's files; tests may put theirs in it.
    pub(crate) fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    /// Runs `ctr` against this containerd, stdin closed.
    pub(crate) fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("-a")
            .arg(self.socket())
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("ctr")
    }

    /// A rootfs of busybox-static.
    pub(crate) fn rootfs(&self, name: &str) -> PathBuf {
        let root = self.dir.path().join(name);
        for d in ["bin", "proc", "sys", "dev", "etc", "tmp"] {
            std::fs::create_dir_all(root.join(d)).expect("rootfs dir");
        }
        std::fs::copy("/bin/busybox", root.join("bin/busybox"))
            .expect("/bin/busybox (Debian package busybox-static) must be installed");
        for applet in ["sh", "nc", "ip", "cat", "sleep", "seq"] {
            std::os::unix::fs::symlink("busybox", root.join("bin").join(applet)).expect("applet");
        }
        root
    }

    /// The pids of container `id`'s processes (`ctr task ps`).
    pub(crate) fn pids(&self, id: &str) -> Vec<u32> {
        let out = self.ctr(&["task", "ps", id]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .skip(1)
            .filter_map(|l| l.split_whitespace().next()?.parse().ok())
            .collect()
    }

    /// Every container this containerd knows.
    fn containers(&self) -> Vec<String> {
        let out = self.ctr(&["containers", "list", "-q"]);
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        for id in self.containers() {
            let _ = self.ctr(&["task", "kill", "-s", "SIGKILL", &id]);
            let _ = self.ctr(&["task", "delete", "--force", &id]);
            let _ = self.ctr(&["container", "delete", &id]);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Whatever is still mounted below our directories (a task containerd
        // could not delete) would keep them from being removed.
        unmount_below(self.dir.path());
    }
}

/// Lazily unmounts whatever is still mounted below `dir`, so that it can go.
pub(crate) fn unmount_below(dir: &Path) {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    let ours = dir.display().to_string();
    for point in mounts.lines().filter_map(|l| l.split_whitespace().nth(1)) {
        if point.starts_with(&ours) {
            let _ = Command::new("umount").args(["-l", point]).status();
        }
    }
}

/// Exit status and output of a command, for assertion messages.
pub(crate) fn text(out: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}
