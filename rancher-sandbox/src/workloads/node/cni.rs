//! Pod addresses in root mode: every pod gets a network namespace of its own, wired by a
//! CNI plugin (`rancher-cni`) called as a container runtime calls it (the `CNI_*`
//! environment and the network configuration on stdin), with an address from its node's
//! range; the pod's ports are bound inside that namespace.

use std::fs::File;
use std::io::{self, Write as _};
use std::os::fd::AsFd as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::sched::{CloneFlags, setns};
use serde_json::{Value, json};

/// How root-mode pods are wired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniNetwork {
    pub(crate) plugin: PathBuf,
    pub(crate) data_dir: PathBuf,
    pub(crate) prefix: String,
}

impl CniNetwork {
    /// Pods wired by the CNI plugin binary at `plugin` (its `"type"` is its file name),
    /// with address reservations under `data_dir`. Namespace and bridge names start
    /// with `sb` and this process's id, so sandboxes side by side do not meet.
    pub fn new(plugin: impl Into<PathBuf>, data_dir: impl Into<PathBuf>) -> Self {
        Self {
            plugin: plugin.into(),
            data_dir: data_dir.into(),
            prefix: format!("sb{}", std::process::id() % 1_000_000),
        }
    }

    /// The bridge of the node numbered `index` (at most 15 characters).
    pub(crate) fn bridge(&self, index: usize) -> String {
        format!("{}b{index}", self.prefix)
    }

    /// The network namespace of a pod.
    pub(crate) fn netns(&self, uid: &str) -> String {
        let short: String = uid.chars().filter(|c| *c != '-').take(12).collect();
        format!("{}-{short}", self.prefix)
    }

    fn config(&self, bridge: &str, range: &str) -> Value {
        let kind = self.plugin.file_name().map_or_else(
            || "rancher-cni".to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        json!({
            "cniVersion": "1.0.0",
            "name": format!("{}-{bridge}", self.prefix),
            "type": kind,
            "bridge": bridge,
            "isDefaultGateway": true,
            "ipMasq": false,
            "hairpinMode": true,
            "ipam": {"ranges": [[{"subnet": range}]], "dataDir": self.data_dir},
        })
    }

    fn call(
        &self,
        command: &str,
        uid: &str,
        netns: &str,
        bridge: &str,
        range: &str,
    ) -> io::Result<Value> {
        let dir = self.plugin.parent().unwrap_or_else(|| Path::new("/"));
        let mut child = Command::new(&self.plugin)
            .env("CNI_COMMAND", command)
            .env("CNI_CONTAINERID", uid)
            .env("CNI_NETNS", format!("/run/netns/{netns}"))
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        if let Some(mut stdin) = child.stdin.take() {
            stdin.write_all(self.config(bridge, range).to_string().as_bytes())?;
        }
        let out = child.wait_with_output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        if !out.status.success() {
            let why: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            return Err(io::Error::other(format!(
                "CNI {command} failed: {}",
                why["msg"].as_str().map_or_else(
                    || String::from_utf8_lossy(&out.stderr).into_owned(),
                    str::to_string
                )
            )));
        }
        Ok(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Makes the pod's namespace and wires it: its address.
    pub(crate) fn add(&self, uid: &str, bridge: &str, range: &str) -> io::Result<std::net::IpAddr> {
        let netns = self.netns(uid);
        ip(&["netns", "add", &netns])?;
        ip(&["-n", &netns, "link", "set", "lo", "up"])?;
        let result = self.call("ADD", uid, &netns, bridge, range).and_then(|r| {
            r["ips"][0]["address"]
                .as_str()
                .and_then(|a| a.split('/').next())
                .and_then(|a| a.parse().ok())
                .ok_or_else(|| io::Error::other(format!("the CNI result has no address: {r}")))
        });
        if result.is_err() {
            self.del(uid, bridge, range);
        }
        result
    }

    /// Unwires the pod and removes its namespace (each step done even if one fails).
    pub(crate) fn del(&self, uid: &str, bridge: &str, range: &str) {
        let netns = self.netns(uid);
        if let Err(e) = self.call("DEL", uid, &netns, bridge, range) {
            tracing::debug!(%netns, error = %e, "CNI DEL");
        }
        let _ = ip(&["netns", "del", &netns]);
    }

    /// Removes a node's bridge (the sandbox stops).
    pub(crate) fn remove_bridge(&self, bridge: &str) {
        let _ = ip(&["link", "del", bridge]);
    }
}

fn ip(args: &[&str]) -> io::Result<()> {
    let out = Command::new("ip").args(args).output()?;
    if out.status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// Runs `f` on a thread inside the network namespace `netns`: the sockets it opens stay
/// there.
pub(crate) fn run_in<T: Send>(netns: &str, f: impl FnOnce() -> T + Send) -> io::Result<T> {
    let file = File::open(format!("/run/netns/{netns}"))?;
    std::thread::scope(|scope| {
        scope
            .spawn(move || {
                setns(file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
                Ok(f())
            })
            .join()
            .map_err(|_| io::Error::other("the thread in the pod's namespace panicked"))?
    })
}
