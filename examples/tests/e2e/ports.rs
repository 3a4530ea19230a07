//! Listening ports of the shipped binaries: each has an admin port of its own,
//! a port that cannot be bound is named with its flag, and two `rancher-dns`
//! never share one `--listen` address.

use std::{
    net::{SocketAddr, TcpListener},
    path::Path,
    process::Stdio,
};

use socket2::{Domain, Protocol, Socket, Type};
use tokio::process::Command;

use crate::support::{DEADLINE, dig, dns_command, eventually, free_dns_port, free_port, terminate};

/// Each binary and the admin address its `--help` must show as the default.
const ADMIN_DEFAULTS: [(&str, &str); 5] = [
    (env!("CARGO_BIN_EXE_rancher-dns"), "0.0.0.0:9153"),
    (
        env!("CARGO_BIN_EXE_rancher-ingress-controller"),
        "0.0.0.0:10254",
    ),
    (
        env!("CARGO_BIN_EXE_rancher-cloud-controller-manager"),
        "0.0.0.0:9990",
    ),
    (
        env!("CARGO_BIN_EXE_rancher-federation-controller"),
        "0.0.0.0:9100",
    ),
    (env!("CARGO_BIN_EXE_rancher-sandbox"), "127.0.0.1:9993"),
];

#[tokio::test]
async fn every_binary_has_an_admin_port_of_its_own() {
    let mut ports = Vec::new();
    for (binary, default) in ADMIN_DEFAULTS {
        let output = Command::new(binary)
            .arg("--help")
            .output()
            .await
            .unwrap_or_else(|e| panic!("{binary} --help: {e}"));
        assert!(output.status.success(), "{binary} --help");
        let help = String::from_utf8_lossy(&output.stdout);
        let admin = help
            .split("--admin <ADDR>")
            .nth(1)
            .unwrap_or_else(|| panic!("{binary} has --admin: {help}"));
        let shown = admin
            .split("[default: ")
            .nth(1)
            .and_then(|rest| rest.split(']').next())
            .unwrap_or_else(|| panic!("{binary} shows the --admin default: {admin}"));
        assert_eq!(shown, default, "{binary}");
        ports.push(shown.parse::<SocketAddr>().unwrap().port());
    }
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(
        ports.len(),
        ADMIN_DEFAULTS.len(),
        "no two binaries share one"
    );
}

/// Starts `rancher-dns` on `listen` with `threads` UDP sockets (more than one
/// means `SO_REUSEPORT` between them), its stderr captured (for one that is
/// to fail) or passed through.
fn spawn_dns(
    kubeconfig: &Path,
    listen: u16,
    admin: u16,
    threads: usize,
    capture: bool,
) -> tokio::process::Child {
    let mut command = dns_command(kubeconfig, listen, admin);
    command.args(["--udp-threads", &threads.to_string()]);
    if capture {
        command.stderr(Stdio::piped());
    }
    command.spawn().expect("the rancher-dns binary starts")
}

/// Waits for `child` to exit, which it must, unsuccessfully; returns its
/// stderr.
async fn failure(child: tokio::process::Child) -> String {
    let output = tokio::time::timeout(DEADLINE, child.wait_with_output())
        .await
        .expect("the binary exits")
        .expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!output.status.success(), "it must fail: {stderr}");
    stderr
}

/// Whether `dig` gets an answer for the cluster zone's SOA from port `port`.
async fn answers(port: u16) -> bool {
    dig(port, &["cluster.local", "SOA"])
        .await
        .contains("status: NOERROR")
}

async fn sandbox(dir: &Path) -> (rancher_sandbox::Sandbox, std::path::PathBuf) {
    rancher_runtime::install_crypto_provider();
    let kubeconfig = dir.join("kubeconfig");
    let sandbox = rancher_sandbox::Sandbox::builder()
        .kubeconfig_path(&kubeconfig)
        .start()
        .await
        .unwrap();
    (sandbox, kubeconfig)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_taken_port_is_named_with_its_address_and_flag() {
    let dir = tempfile::tempdir().unwrap();
    let (_sandbox, kubeconfig) = sandbox(dir.path()).await;

    // The admin port.
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let admin = taken.local_addr().unwrap().port();
    let stderr = failure(spawn_dns(&kubeconfig, free_dns_port(), admin, 1, true)).await;
    assert!(
        stderr.contains(&format!(
            "binding the admin server to 127.0.0.1:{admin} (--admin)"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("Address already in use"), "{stderr}");

    // The DNS port, taken for TCP only.
    let listen = free_dns_port();
    let _tcp = TcpListener::bind(("127.0.0.1", listen)).unwrap();
    let stderr = failure(spawn_dns(&kubeconfig, listen, free_port(), 2, true)).await;
    assert!(
        stderr.contains(&format!(
            "binding the dns server (tcp) to 127.0.0.1:{listen} (--listen)"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("Address already in use"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_udp_port_held_with_so_reuseport_is_not_joined() {
    let dir = tempfile::tempdir().unwrap();
    let (_sandbox, kubeconfig) = sandbox(dir.path()).await;
    // Another process's socket that allows sharing, as rancher-dns's own do:
    // the kernel would let a socket of the same user join it and split the
    // queries between them.
    let listen = free_dns_port();
    let addr: SocketAddr = ([127, 0, 0, 1], listen).into();
    let other = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    other.set_reuse_port(true).unwrap();
    other.bind(&addr.into()).unwrap();

    let stderr = failure(spawn_dns(&kubeconfig, listen, free_port(), 2, true)).await;
    assert!(
        stderr.contains(&format!(
            "binding the dns server (udp) to 127.0.0.1:{listen} (--listen)"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("Address already in use"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_rancher_dns_on_the_same_address_fails_and_the_first_serves_on() {
    let dir = tempfile::tempdir().unwrap();
    let (_sandbox, kubeconfig) = sandbox(dir.path()).await;
    let listen = free_dns_port();
    let mut first = spawn_dns(&kubeconfig, listen, free_port(), 2, false);
    eventually("the first rancher-dns to answer", || async {
        answers(listen).await.then_some(())
    })
    .await;

    let stderr = failure(spawn_dns(&kubeconfig, listen, free_port(), 2, true)).await;
    assert!(
        stderr.contains(&format!(
            "binding the dns server (udp) to 127.0.0.1:{listen} (--listen)"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("Address already in use"), "{stderr}");

    // The first one keeps every query: none goes to a socket of the second.
    for _ in 0..20 {
        assert!(answers(listen).await, "the first rancher-dns answers");
    }
    terminate(&mut first).await;
}
