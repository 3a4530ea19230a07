//! Supervising one HAProxy master-worker process per host.
//!
//! The master runs in the foreground (`-W`) with a master CLI socket (`-S`)
//! and reads `current/haproxy.cfg` in the host directory, where `current` is a
//! symlink to the latest checked generation. A reload is the master CLI's
//! `reload` (the master re-executes itself, starts a new worker with the
//! listening sockets handed over and lets the old one finish its
//! connections). A master that exits without being asked to is started again
//! after an exponential backoff.
//!
//! The running master's pid is kept in `haproxy.pid` in the host directory.
//! A supervisor killed without a chance to stop its HAProxy (SIGKILL, OOM)
//! leaves it running, still serving its last configuration on the same
//! addresses; the next supervisor of that directory starts its own master,
//! and once that one serves, retires the leftover (a soft stop, which lets it
//! finish its connections, then SIGTERM, then SIGKILL), so traffic never
//! stops and the old configuration does not outlive the restart.

use std::net::IpAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::process::{Child, Command};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::runtime;
use crate::driver::InstanceState;

/// How long a start or a reload may take.
pub(crate) const START_TIMEOUT: Duration = Duration::from_secs(10);
const SOCKET_TIMEOUT: Duration = Duration::from_secs(2);
const STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// A process that ran this long before failing starts again from the
/// smallest backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);

/// Errors from supervising a process.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The instance is not running.
    #[error("haproxy on {host} is not running")]
    NotRunning {
        /// The host.
        host: IpAddr,
    },
    /// The master CLI failed.
    #[error("haproxy on {host}: {source}")]
    Socket {
        /// The host.
        host: IpAddr,
        /// The cause.
        #[source]
        source: runtime::Error,
    },
    /// The reload did not happen or failed.
    #[error("haproxy on {host}: reload failed: {reason}")]
    Reload {
        /// The host.
        host: IpAddr,
        /// Why.
        reason: String,
    },
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// A snapshot of an instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) state: InstanceState,
    pub(crate) restarts: u32,
    pub(crate) master_pid: Option<u32>,
}

/// What a supervisor needs.
#[derive(Debug, Clone)]
pub(crate) struct Spec {
    pub(crate) host: IpAddr,
    pub(crate) binary: PathBuf,
    pub(crate) dir: PathBuf,
    pub(crate) backoff_min: Duration,
    pub(crate) backoff_max: Duration,
    pub(crate) changed: mpsc::UnboundedSender<IpAddr>,
}

impl Spec {
    pub(crate) fn master_socket(&self) -> PathBuf {
        self.dir.join("master.sock")
    }
    pub(crate) fn admin_socket(&self) -> PathBuf {
        self.dir.join("admin.sock")
    }
    pub(crate) fn config(&self) -> PathBuf {
        self.dir.join("current").join("haproxy.cfg")
    }
    pub(crate) fn pid_file(&self) -> PathBuf {
        self.dir.join("haproxy.pid")
    }
}

/// One supervised HAProxy.
pub(crate) struct Instance {
    spec: Spec,
    shared: Arc<Mutex<Snapshot>>,
    stop: watch::Sender<bool>,
    task: Option<JoinHandle<()>>,
}

impl Instance {
    /// Starts supervising; the first start happens in the background.
    pub(crate) fn start(spec: Spec) -> Self {
        let shared = Arc::new(Mutex::new(Snapshot {
            state: InstanceState::Starting { restarts: 0 },
            restarts: 0,
            master_pid: None,
        }));
        let (stop, stop_rx) = watch::channel(false);
        let task = tokio::spawn(supervise(spec.clone(), shared.clone(), stop_rx));
        Self {
            spec,
            shared,
            stop,
            task: Some(task),
        }
    }

    pub(crate) fn spec(&self) -> &Spec {
        &self.spec
    }

    pub(crate) fn snapshot(&self) -> Snapshot {
        lock(&self.shared).clone()
    }

    pub(crate) fn is_running(&self) -> bool {
        self.snapshot().state == InstanceState::Running
    }

    /// Waits until the instance runs, or the timeout passes.
    pub(crate) async fn wait_running(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.is_running() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// `show proc` on the master CLI.
    pub(crate) async fn procs(&self) -> Result<runtime::Procs> {
        runtime::show_proc(&self.spec.master_socket(), SOCKET_TIMEOUT)
            .await
            .map_err(|source| Error::Socket {
                host: self.spec.host,
                source,
            })
    }

    /// Reloads through the master CLI and waits for the new worker.
    pub(crate) async fn reload(&self) -> Result<()> {
        let host = self.spec.host;
        if !self.is_running() {
            return Err(Error::NotRunning { host });
        }
        let before = self.procs().await?;
        // The master closes the connection when it re-executes; the answer,
        // if any, says nothing useful in 2.x.
        let _ = runtime::command(&self.spec.master_socket(), "reload", SOCKET_TIMEOUT).await;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            tokio::time::sleep(Duration::from_millis(10)).await;
            if let Ok(now) = self.procs().await {
                if now.master != before.master {
                    return Err(Error::Reload {
                        host,
                        reason: "the master restarted during the reload".into(),
                    });
                }
                if now.failed_reloads > before.failed_reloads {
                    return Err(Error::Reload {
                        host,
                        reason: "the new configuration did not load".into(),
                    });
                }
                if now.reloads > before.reloads && !now.workers.is_empty() {
                    return Ok(());
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::Reload {
                    host,
                    reason: format!("no new worker within {START_TIMEOUT:?}"),
                });
            }
        }
    }

    /// Stops the process (SIGTERM to the master, SIGKILL after a grace
    /// period) and ends supervision.
    pub(crate) async fn stop(mut self) {
        let _ = self.stop.send(true);
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        // Dropping the supervisor drops the child, which is killed on drop;
        // workers exit when their master dies.
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

fn lock(m: &Mutex<Snapshot>) -> std::sync::MutexGuard<'_, Snapshot> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn set(spec: &Spec, shared: &Mutex<Snapshot>, f: impl FnOnce(&mut Snapshot)) {
    let changed = {
        let mut s = lock(shared);
        let before = s.clone();
        f(&mut s);
        *s != before
    };
    if changed {
        let _ = spec.changed.send(spec.host);
    }
}

fn spawn(spec: &Spec) -> std::io::Result<Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(spec.dir.join("haproxy.log"))?;
    let mut master = spec.master_socket().into_os_string();
    master.push(",mode,600");
    Command::new(&spec.binary)
        .arg("-W")
        .arg("-S")
        .arg(master)
        .arg("-f")
        .arg(spec.config())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
}

async fn terminate(child: &mut Child) {
    if let Some(pid) = child.id() {
        signal(pid, "TERM").await;
        if tokio::time::timeout(STOP_TIMEOUT, child.wait())
            .await
            .is_ok()
        {
            return;
        }
    }
    let _ = child.kill().await;
}

/// Waits until the master reports a worker. `Ok(false)` if the child exited.
async fn wait_ready(spec: &Spec, child: &mut Child) -> bool {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Ok(Some(_)) = child.try_wait() {
            return false;
        }
        if let Ok(p) = runtime::show_proc(&spec.master_socket(), SOCKET_TIMEOUT).await
            && !p.workers.is_empty()
            && Some(p.master) == child.id()
        {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the handle is gone, which is a stop too.
    let _ = stop.wait_for(|s| *s).await;
}

async fn sleep_or_stop(d: Duration, stop: &mut watch::Receiver<bool>) -> bool {
    tokio::select! {
        () = tokio::time::sleep(d) => false,
        () = stopped(stop) => true,
    }
}

/// Whether `pid` is a live (not zombie) HAProxy master started on this
/// spec's master socket.
fn is_master_of(spec: &Spec, pid: u32) -> bool {
    let proc = PathBuf::from(format!("/proc/{pid}"));
    let Ok(stat) = std::fs::read_to_string(proc.join("stat")) else {
        return false;
    };
    // The state follows the parenthesised command name.
    let zombie = stat
        .rsplit_once(") ")
        .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X'));
    if zombie {
        return false;
    }
    let Ok(cmdline) = std::fs::read(proc.join("cmdline")) else {
        return false;
    };
    let socket = spec.master_socket();
    let socket = socket.as_os_str().as_bytes();
    cmdline.split(|b| *b == 0).any(|arg| {
        arg.strip_prefix(socket)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with(b","))
    })
}

/// The master an earlier supervisor of this directory left running, if any.
fn leftover_master(spec: &Spec) -> Option<u32> {
    let pid = std::fs::read_to_string(spec.pid_file())
        .ok()?
        .trim()
        .parse()
        .ok()?;
    is_master_of(spec, pid).then_some(pid)
}

async fn signal(pid: u32, signal: &str) {
    let _ = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await;
}

/// Stops a leftover master: a soft stop (its workers stop listening and
/// finish their connections), then SIGTERM, then SIGKILL.
async fn retire(spec: Spec, pid: u32) {
    for sig in ["USR1", "TERM", "KILL"] {
        if !is_master_of(&spec, pid) {
            break;
        }
        tracing::info!(host = %spec.host, pid, signal = sig, "stopping the haproxy left by an earlier run");
        signal(pid, sig).await;
        let deadline = Instant::now() + STOP_TIMEOUT;
        while is_master_of(&spec, pid) && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

fn write_pid(spec: &Spec, pid: u32) {
    let tmp = spec.dir.join("haproxy.pid.tmp");
    let written = std::fs::write(&tmp, format!("{pid}\n"))
        .and_then(|()| std::fs::rename(&tmp, spec.pid_file()));
    if let Err(error) = written {
        tracing::warn!(host = %spec.host, %error, "cannot write haproxy.pid");
    }
}

async fn supervise(spec: Spec, shared: Arc<Mutex<Snapshot>>, mut stop: watch::Receiver<bool>) {
    let mut backoff = spec.backoff_min;
    let mut restarts = 0u32;
    // Read before our own master overwrites the file.
    let mut leftover = leftover_master(&spec);
    loop {
        if *stop.borrow() {
            break;
        }
        set(&spec, &shared, |s| {
            s.state = InstanceState::Starting { restarts };
            s.master_pid = None;
        });
        let mut child = match spawn(&spec) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(host = %spec.host, error = %e, "cannot start haproxy");
                restarts += 1;
                set(&spec, &shared, |s| {
                    s.state = InstanceState::Down {
                        reason: format!("cannot start haproxy: {e}"),
                    };
                    s.restarts = restarts;
                });
                if sleep_or_stop(backoff, &mut stop).await {
                    break;
                }
                backoff = (backoff * 2).min(spec.backoff_max);
                continue;
            }
        };
        let started = Instant::now();
        let ready = tokio::select! {
            r = wait_ready(&spec, &mut child) => r,
            () = stopped(&mut stop) => {
                terminate(&mut child).await;
                break;
            }
        };
        if ready {
            let pid = child.id();
            tracing::info!(host = %spec.host, pid, "haproxy is running");
            if let Some(pid) = pid {
                write_pid(&spec, pid);
            }
            if let Some(old) = leftover.take() {
                tokio::spawn(retire(spec.clone(), old));
            }
            set(&spec, &shared, |s| {
                s.state = InstanceState::Running;
                s.master_pid = pid;
            });
        } else {
            terminate(&mut child).await;
        }
        let exited = if ready {
            tokio::select! {
                status = child.wait() => Some(status),
                () = stopped(&mut stop) => {
                    terminate(&mut child).await;
                    break;
                }
            }
        } else {
            None
        };
        let reason = match exited {
            Some(Ok(status)) => format!("haproxy exited: {status}"),
            Some(Err(e)) => format!("haproxy could not be waited for: {e}"),
            None => tail_log(&spec.dir.join("haproxy.log")),
        };
        tracing::warn!(host = %spec.host, %reason, "haproxy stopped; restarting");
        if started.elapsed() >= STABLE_AFTER {
            backoff = spec.backoff_min;
        }
        restarts += 1;
        set(&spec, &shared, |s| {
            s.state = InstanceState::Down {
                reason: reason.clone(),
            };
            s.restarts = restarts;
            s.master_pid = None;
        });
        if sleep_or_stop(backoff, &mut stop).await {
            break;
        }
        backoff = (backoff * 2).min(spec.backoff_max);
    }
    let _ = std::fs::remove_file(spec.pid_file());
    set(&spec, &shared, |s| {
        s.state = InstanceState::Down {
            reason: "stopped".into(),
        };
        s.master_pid = None;
    });
}

fn tail_log(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let last: Vec<&str> = text.lines().rev().take(3).collect();
    if last.is_empty() {
        "haproxy did not become ready".into()
    } else {
        format!(
            "haproxy did not become ready: {}",
            last.into_iter().rev().collect::<Vec<_>>().join(" | ")
        )
    }
}
