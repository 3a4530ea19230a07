//! Runs a sandbox until Ctrl-C: `cargo run -p rancher-sandbox --example serve -- /tmp/sandbox.kubeconfig [manifests-dir]`.
#![allow(clippy::print_stdout)]

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .init();
    let mut args = std::env::args().skip(1);
    let kubeconfig = args
        .next()
        .unwrap_or_else(|| "sandbox.kubeconfig".to_string());
    let mut builder = rancher_sandbox::Sandbox::builder().kubeconfig_path(&kubeconfig);
    if let Some(dir) = args.next() {
        builder = builder.manifests_dir(dir);
    }
    let sandbox = builder.start().await?;
    for e in sandbox.seed_errors() {
        println!("not loaded: {e}");
    }
    println!(
        "listening on http://{}; kubectl --kubeconfig {kubeconfig} get ns",
        sandbox.addr()
    );
    tokio::signal::ctrl_c().await?;
    sandbox.shutdown().await;
    Ok(())
}
