//! An API server outage while `rancher-dns` and the ingress controller run,
//! with the real `dig`, `curl` and HAProxy: both keep serving from their last
//! view, `/readyz` and `/metrics` say the view is stale (DNS stays ready), and
//! what is created once the API server is back is served. The time from its
//! return to the first answer is printed (figures in `BENCHMARKS.md`).

use std::time::Instant;

use rancher_lb::testing::HttpEcho;

use crate::support::{
    CLASS, app, curl, eventually, free_dns_port, free_port, kubectl, metric, short, spawn_dns,
    spawn_haproxy_controller, terminate,
};

const HOSTS: [&str; 1] = ["127.0.95.1"];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dns_and_ingress_serve_through_an_outage_and_follow_changes_after_it() {
    rancher_runtime::install_crypto_provider();
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    let sandbox = rancher_sandbox::Sandbox::builder()
        .kubeconfig_path(&kubeconfig)
        .start()
        .await
        .expect("sandbox starts");
    let echo = HttpEcho::start("echo").await.expect("echo backend");
    let http_port = free_port();
    let apply = |name: &str, text: String| {
        let file = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&file, text).expect("write manifests");
        file
    };
    let before = apply(
        "before",
        format!(
            "{CLASS}---\n{}",
            app("before", "before.example.org", http_port, echo.port())
        ),
    );
    let (ok, out) = kubectl(&kubeconfig, &["apply", "-f", before.to_str().unwrap()]).await;
    assert!(ok, "{out}");

    let (dns_port, dns_admin, ingress_admin) = (free_dns_port(), free_port(), free_port());
    let mut dns = spawn_dns(&kubeconfig, dns_port, dns_admin);
    let mut ingress = spawn_haproxy_controller(
        env!("CARGO_BIN_EXE_rancher-ingress-controller"),
        &kubeconfig,
        &HOSTS,
        &dir.path().join("lb"),
        ingress_admin,
    );
    let url = format!("http://{}:{http_port}/x", HOSTS[0]);
    let serves = |host: &'static str| {
        let url = url.clone();
        async move { curl(&url, Some(host)).await == (200, "echo /x".to_owned()) }
    };
    eventually("DNS answers", || async {
        (short(dns_port, "before.default.svc.cluster.local")
            .await
            .len()
            == 1)
            .then_some(())
    })
    .await;
    eventually("HAProxy serves the Ingress", || async {
        serves("before.example.org").await.then_some(())
    })
    .await;

    // The API server goes away.
    let cluster = &sandbox.clusters()[0];
    cluster.stop_listener().await;
    let readyz =
        |port: u16| async move { curl(&format!("http://127.0.0.1:{port}/readyz"), None).await };
    eventually(
        "DNS to say it serves a stale view, and stay ready",
        || async {
            let (code, body) = readyz(dns_admin).await;
            (code == 200 && body.contains("stale: services")).then_some(())
        },
    )
    .await;
    eventually("the ingress controller to turn unready", || async {
        let (code, body) = readyz(ingress_admin).await;
        (code == 503 && body.contains("stale: ingresses")).then_some(())
    })
    .await;
    let stale = "rancher_dns_watch_stale{watch=\"services\"}";
    assert_eq!(metric(dns_admin, stale).await, Some(1.0));
    // Wait until the retries have reached their cap (the sixth failure), as
    // after a long outage.
    let failures = "rancher_dns_watch_restarts_total{watch=\"services\",reason=\"error\"}";
    eventually("six failed watch retries", || async {
        metric(dns_admin, failures).await.filter(|n| *n >= 6.0)
    })
    .await;
    let since = "rancher_dns_watch_seconds_since_sync{watch=\"services\"}";
    assert!(metric(dns_admin, since).await.unwrap_or_default() > 0.0);
    // Meanwhile both still serve what they knew.
    assert_eq!(
        short(dns_port, "before.default.svc.cluster.local")
            .await
            .len(),
        1
    );
    assert!(serves("before.example.org").await, "HAProxy serves on");

    // Back, and a new Service and Ingress right away.
    cluster
        .start_listener()
        .await
        .expect("the listener starts again");
    let back = Instant::now();
    let after = apply(
        "after",
        app("after", "after.example.org", http_port, echo.port()),
    );
    eventually("kubectl apply once the API server answers", || async {
        kubectl(&kubeconfig, &["apply", "-f", after.to_str().unwrap()])
            .await
            .0
            .then_some(())
    })
    .await;
    eventually("DNS to answer the new Service", || async {
        (short(dns_port, "after.default.svc.cluster.local")
            .await
            .len()
            == 1)
            .then_some(())
    })
    .await;
    let dns_seconds = back.elapsed().as_secs_f64();
    eventually("HAProxy to serve the new Ingress", || async {
        serves("after.example.org").await.then_some(())
    })
    .await;
    let ingress_seconds = back.elapsed().as_secs_f64();
    println!(
        "after the API server returned: DNS answered the new Service in {dns_seconds:.2} s, \
         HAProxy served the new Ingress in {ingress_seconds:.2} s"
    );
    for (what, port) in [("DNS", dns_admin), ("ingress", ingress_admin)] {
        eventually(&format!("{what} current and ready again"), || async {
            let (code, body) = readyz(port).await;
            (code == 200 && !body.contains("stale")).then_some(())
        })
        .await;
    }
    assert_eq!(metric(dns_admin, stale).await, Some(0.0));

    terminate(&mut ingress).await;
    terminate(&mut dns).await;
}
