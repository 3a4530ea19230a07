//! End-to-end tests: real `kube` clients (and the real `kubectl`) against the sandbox.

mod access;
mod alloc;
mod api;
mod bad_input;
mod deploy;
mod dry_run;
mod faults;
mod kubectl;
mod lease;
mod managed_fields;
mod patch;
mod root;
mod scheduling;
mod seed;
mod watch;
mod workloads;

use rancher_sandbox::Sandbox;

/// Installs the ring provider (idempotent).
pub fn install_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// A one-cluster sandbox with defaults.
pub async fn sandbox() -> Sandbox {
    install_provider();
    Sandbox::builder().start().await.expect("sandbox starts")
}

/// Polls `f` until it returns `Some`, for at most 10 seconds.
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}
