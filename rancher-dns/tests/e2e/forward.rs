use rancher_dns::model::Options;
use rancher_dns::wire::Rcode;

use crate::common::{dig, start};

fn zone(z: &str) -> Options {
    Options {
        zone: z.to_owned(),
        ..Options::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forwards_other_names_and_caches_positive_and_negative_answers() {
    // A second instance of ours serves example.org as the "upstream".
    let upstream = start(zone("example.org"), vec![], true).await;
    let local = start(Options::default(), vec![upstream.addr()], true).await;
    let a = local.addr();
    let (first, second, nx1, nx2, cluster) = tokio::task::spawn_blocking(move || {
        (
            dig(a, &["web.ns.svc.example.org", "A"]),
            dig(a, &["WEB.ns.svc.example.org", "A"]),
            dig(a, &["nope.ns.svc.example.org", "A"]),
            dig(a, &["nope.ns.svc.example.org", "A"]),
            dig(a, &["web.ns.svc.cluster.local", "A"]),
        )
    })
    .await
    .unwrap();
    assert_eq!(first.status, "NOERROR");
    assert_eq!(first.data(), vec!["10.43.0.7"]);
    assert!(
        !first.flags.contains(&"aa".to_owned()),
        "forwarded answers are not authoritative"
    );
    assert!(first.flags.contains(&"ra".to_owned()));
    assert_eq!(second.data(), vec!["10.43.0.7"]);
    assert!(
        second.answer[0].starts_with("WEB.ns.svc.example.org."),
        "cached answer echoes this client's case"
    );
    assert_eq!(nx1.status, "NXDOMAIN");
    assert_eq!(nx2.status, "NXDOMAIN");
    assert!(nx2.authority[0].contains("SOA"));
    assert_eq!(cluster.data(), vec!["10.43.0.7"]);
    assert_eq!(
        local.metrics.cache_hits.get(),
        2,
        "one positive and one negative hit"
    );
    assert_eq!(upstream.metrics.queries_total("A", Rcode::NoError), 1);
    assert_eq!(upstream.metrics.queries_total("A", Rcode::NxDomain), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servfail_when_upstream_is_silent() {
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let local = start(
        Options::default(),
        vec![silent.local_addr().unwrap()],
        false,
    )
    .await;
    let a = local.addr();
    let d = tokio::task::spawn_blocking(move || dig(a, &["www.example.net", "A"]))
        .await
        .unwrap();
    assert_eq!(d.status, "SERVFAIL");
    assert_eq!(local.metrics.upstream_errors.get(), 1);
}
