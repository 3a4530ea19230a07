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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn external_name_aliases_are_followed_in_the_zone_and_upstream() {
    use rancher_dns::backend::DnsBackend as _;
    use rancher_dns::fixtures::mk_external;
    use rancher_dns::records::RecordIndex;

    // The upstream serves example.org (web.ns.svc.example.org: 10.43.0.7).
    let upstream = start(zone("example.org"), vec![], true).await;
    let local = start(Options::default(), vec![upstream.addr()], true).await;
    let mut index = RecordIndex::new(Options::default());
    for (name, target) in [
        ("out", "web.ns.svc.example.org"),
        ("in", "web.ns.svc.cluster.local"),
        ("chain", "in.ns.svc.cluster.local"),
        ("loop-a", "loop-b.ns.svc.cluster.local"),
        ("loop-b", "loop-a.ns.svc.cluster.local"),
    ] {
        let changes = index.apply_service(mk_external("ns", name, target));
        local.backend.apply(&changes).await.unwrap();
    }
    let a = local.addr();
    let ask = move |args: &'static [&'static str]| {
        tokio::task::spawn_blocking(move || crate::common::dig(a, args))
    };

    // Outside the zone: the target's addresses come from upstream.
    let d = ask(&["out.ns.svc.cluster.local", "A"]).await.unwrap();
    assert_eq!(d.status, "NOERROR");
    assert_eq!(d.data(), vec!["10.43.0.7", "web.ns.svc.example.org."]);
    assert!(
        d.answer[0].contains("CNAME"),
        "the alias first: {:?}",
        d.answer
    );
    let d = ask(&["out.ns.svc.cluster.local", "AAAA"]).await.unwrap();
    assert_eq!(d.data(), vec!["fd00::7", "web.ns.svc.example.org."]);
    // Again: from the cache, upstream asked once per type.
    let d = ask(&["OUT.ns.svc.cluster.local", "A"]).await.unwrap();
    assert_eq!(d.data(), vec!["10.43.0.7", "web.ns.svc.example.org."]);
    assert_eq!(upstream.metrics.queries_total("A", Rcode::NoError), 1);
    assert_eq!(upstream.metrics.queries_total("AAAA", Rcode::NoError), 1);

    // Inside the zone: answered from the snapshot, one alias after another.
    let d = ask(&["in.ns.svc.cluster.local", "A"]).await.unwrap();
    assert_eq!(d.data(), vec!["10.43.0.7", "web.ns.svc.cluster.local."]);
    let d = ask(&["chain.ns.svc.cluster.local", "A"]).await.unwrap();
    assert_eq!(
        d.data(),
        vec![
            "10.43.0.7",
            "in.ns.svc.cluster.local.",
            "web.ns.svc.cluster.local."
        ]
    );
    // A loop ends, each alias once.
    let d = ask(&["loop-a.ns.svc.cluster.local", "A"]).await.unwrap();
    assert_eq!(d.status, "NOERROR");
    assert_eq!(
        d.data(),
        vec![
            "loop-a.ns.svc.cluster.local.",
            "loop-b.ns.svc.cluster.local."
        ]
    );
    // Asking for the alias itself does not follow it; a target upstream
    // does not know leaves the alias alone.
    let d = ask(&["out.ns.svc.cluster.local", "CNAME"]).await.unwrap();
    assert_eq!(d.data(), vec!["web.ns.svc.example.org."]);
    let d = ask(&["ext.ns.svc.cluster.local", "A"]).await.unwrap();
    assert_eq!(
        (d.status.as_str(), d.data()),
        ("NOERROR", vec!["www.example.org.".to_owned()])
    );
    assert_eq!(upstream.metrics.queries_total("A", Rcode::NxDomain), 1);
    assert_eq!(
        local.metrics.queries_total("A", Rcode::NoError),
        6,
        "client queries only, not the followed targets"
    );
}
