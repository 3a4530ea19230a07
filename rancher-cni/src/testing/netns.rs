//! Network namespaces for tests, standing for hosts and pods: named, unique to
//! the run, removed on drop even when the test fails. Made with `ip netns` from
//! iproute2 (tests may use it; the plugin never does).

use std::{
    fs::File,
    io,
    os::fd::AsFd,
    process::{Command, Output},
    sync::atomic::{AtomicU32, Ordering},
};

use nix::sched::{CloneFlags, setns};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A named network namespace (`/run/netns/<name>`), deleted on drop.
#[derive(Debug)]
pub struct TestNetns {
    name: String,
    path: String,
}

/// A name unique to this process and call: `<prefix><pid>x<n>`, short enough for
/// interface names when `prefix` is at most 4 characters.
pub fn unique_name(prefix: &str) -> String {
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}{}x{n}", std::process::id())
}

fn check(out: Output, what: &str) -> io::Result<Output> {
    if out.status.success() {
        Ok(out)
    } else {
        Err(io::Error::other(format!(
            "{what} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

impl TestNetns {
    /// A new namespace named from `prefix`, the process id and a counter, with `lo` up.
    pub fn new(prefix: &str) -> io::Result<Self> {
        let name = format!("rcni-{}", unique_name(prefix));
        check(
            Command::new("ip").args(["netns", "add", &name]).output()?,
            "ip netns add",
        )?;
        let ns = Self {
            path: format!("/run/netns/{name}"),
            name,
        };
        ns.ip(&["link", "set", "lo", "up"])?;
        Ok(ns)
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its path, as `CNI_NETNS` carries it.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Runs `ip -n <name> ARGS`; an error carries ip's stderr.
    pub fn ip(&self, args: &[&str]) -> io::Result<Output> {
        check(
            Command::new("ip")
                .arg("-n")
                .arg(&self.name)
                .args(args)
                .output()?,
            &format!("ip -n {} {}", self.name, args.join(" ")),
        )
    }

    /// Runs `f` on a new thread inside the namespace. Sockets it opens stay in the
    /// namespace; processes it spawns start there.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> io::Result<T> {
        let file = File::open(&self.path)?;
        std::thread::scope(|scope| {
            scope
                .spawn(move || {
                    setns(file.as_fd(), CloneFlags::CLONE_NEWNET).map_err(io::Error::from)?;
                    Ok(f())
                })
                .join()
                .map_err(|_| io::Error::other("the thread in the namespace panicked"))?
        })
    }
}

impl Drop for TestNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
