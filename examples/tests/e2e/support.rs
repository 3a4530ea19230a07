//! What the binary tests share: free ports, `kubectl`, and waits with a
//! deadline.

use std::{
    net::TcpListener,
    path::Path,
    time::{Duration, Instant},
};

use tokio::process::Command;

/// How long a wait may take.
pub(crate) const DEADLINE: Duration = Duration::from_secs(30);

/// A TCP port free on 127.0.0.1 now.
pub(crate) fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Runs `kubectl` against `kubeconfig`: (success, stdout then stderr).
pub(crate) async fn kubectl(kubeconfig: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .await
        .expect("kubectl runs (scripts/test installs it when missing)");
    let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&output.stderr));
    (output.status.success(), text)
}

/// Starts a controller binary with the HAProxy driver on `hosts`, its files
/// in `work_dir` and its admin server on `admin_port`.
pub(crate) fn spawn_haproxy_controller(
    binary: &str,
    kubeconfig: &Path,
    hosts: &[&str],
    work_dir: &Path,
    admin_port: u16,
) -> tokio::process::Child {
    Command::new(binary)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--driver", "haproxy", "--hosts", &hosts.join(",")])
        .arg("--work-dir")
        .arg(work_dir)
        .args(["--admin", &format!("127.0.0.1:{admin_port}")])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .unwrap_or_else(|e| panic!("{binary} starts: {e}"))
}

/// Sends SIGTERM to `child` and checks that it exits cleanly within
/// [`DEADLINE`].
pub(crate) async fn terminate(child: &mut tokio::process::Child) {
    let pid = child.id().expect("running").to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill runs");
    assert!(status.success());
    let exit = tokio::time::timeout(DEADLINE, child.wait())
        .await
        .expect("exits after SIGTERM")
        .expect("wait");
    assert!(exit.success(), "{exit}");
}

/// Polls `check` every 100 ms until it returns `Some`, failing after
/// [`DEADLINE`].
pub(crate) async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
