use rancher_dns::model::Options;
use rancher_dns::wire::Rcode;

use crate::common::{dig, start, start_with};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_cluster_names_over_udp_and_tcp() {
    // Two SO_REUSEPORT sockets: every answer below is right whichever gets it.
    let r = start_with(Options::default(), vec![], true, 2).await;
    let a = r.addr();
    let d = tokio::task::spawn_blocking(move || {
        let web = dig(a, &["web.ns.svc.cluster.local", "A"]);
        let aaaa = dig(a, &["web.ns.svc.cluster.local", "AAAA", "+tcp"]);
        let mdb = dig(a, &["MDB-1.mongodb.NS.svc.cluster.local", "A"]);
        let headless = dig(a, &["mongodb.ns.svc.cluster.local", "A"]);
        let srv = dig(a, &["_mongo._tcp.mongodb.ns.svc.cluster.local", "SRV"]);
        let ptr = dig(a, &["-x", "10.43.0.7"]);
        let ptr6 = dig(a, &["-x", "fd00::7"]);
        let ext = dig(a, &["ext.ns.svc.cluster.local", "A"]);
        let version = dig(a, &["dns-version.cluster.local", "TXT"]);
        (web, aaaa, mdb, headless, srv, ptr, ptr6, ext, version)
    })
    .await
    .unwrap();
    let (web, aaaa, mdb, headless, srv, ptr, ptr6, ext, version) = d;
    assert_eq!(web.status, "NOERROR");
    assert!(web.flags.contains(&"aa".to_owned()), "{:?}", web.flags);
    assert_eq!(web.data(), vec!["10.43.0.7"]);
    assert!(
        web.answer[0].contains("\t5\tIN\tA")
            || web.answer[0].split_whitespace().nth(1) == Some("5")
    );
    assert_eq!(aaaa.data(), vec!["fd00::7"]);
    assert_eq!(mdb.data(), vec!["10.42.0.11"]);
    assert!(
        mdb.answer[0].starts_with("MDB-1.mongodb.NS.svc.cluster.local."),
        "echoes the query case"
    );
    assert_eq!(headless.data(), vec!["10.42.0.10", "10.42.0.11"]);
    assert_eq!(
        srv.data(),
        vec![
            "0 50 27017 mdb-0.mongodb.ns.svc.cluster.local.",
            "0 50 27017 mdb-1.mongodb.ns.svc.cluster.local."
        ]
    );
    assert_eq!(ptr.data(), vec!["web.ns.svc.cluster.local."]);
    assert_eq!(ptr6.data(), vec!["web.ns.svc.cluster.local."]);
    assert_eq!(ext.data(), vec!["www.example.org."]);
    assert_eq!(version.data(), vec!["\"1.1.0\""]);
    assert!(r.metrics.queries_total("A", Rcode::NoError) >= 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn negative_answers_carry_the_soa() {
    let r = start(Options::default(), vec![], true).await;
    let a = r.addr();
    let (nx, nodata, ent, not_ready, wildcard) = tokio::task::spawn_blocking(move || {
        (
            dig(a, &["web.ns.svc.ns.svc.cluster.local", "A"]),
            dig(a, &["web.ns.svc.cluster.local", "TXT"]),
            dig(a, &["ns.svc.cluster.local", "A"]),
            dig(a, &["mdb-2.mongodb.ns.svc.cluster.local", "A"]),
            dig(a, &["*.ns.svc.cluster.local", "A"]),
        )
    })
    .await
    .unwrap();
    assert_eq!(nx.status, "NXDOMAIN");
    assert!(nx.flags.contains(&"aa".to_owned()));
    assert!(nx.answer.is_empty());
    assert_eq!(nx.authority.len(), 1);
    assert!(
        nx.authority[0].starts_with("cluster.local.") && nx.authority[0].contains("SOA"),
        "{:?}",
        nx.authority
    );
    assert_eq!(nodata.status, "NOERROR");
    assert!(nodata.answer.is_empty());
    assert!(nodata.authority[0].contains("SOA"));
    assert_eq!(ent.status, "NOERROR");
    assert_eq!(not_ready.status, "NXDOMAIN");
    assert_eq!(wildcard.status, "NXDOMAIN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncates_over_udp_and_answers_fully_over_tcp() {
    let r = start(Options::default(), vec![], true).await;
    let a = r.addr();
    let (udp, edns, tcp) = tokio::task::spawn_blocking(move || {
        (
            dig(a, &["big.ns.svc.cluster.local", "A", "+noedns", "+ignore"]),
            dig(a, &["big.ns.svc.cluster.local", "A", "+bufsize=4096"]),
            dig(a, &["big.ns.svc.cluster.local", "A", "+tcp"]),
        )
    })
    .await
    .unwrap();
    assert!(udp.flags.contains(&"tc".to_owned()), "{:?}", udp.flags);
    assert!(udp.answer.is_empty());
    assert!(
        !edns.flags.contains(&"tc".to_owned()),
        "fits the client's EDNS buffer"
    );
    assert_eq!(edns.answer.len(), 80);
    assert_eq!(tcp.answer.len(), 80);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn servfail_before_first_sync_and_refused_without_upstream() {
    use rancher_dns::backend::ServerBackend;
    use rancher_dns::metrics::Metrics;
    use rancher_dns::server::{Server, ServerConfig};
    let metrics = Metrics::new();
    let backend = ServerBackend::new(&Options::default(), metrics.clone());
    let config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        udp_threads: 1,
        ..ServerConfig::default()
    };
    let server = Server::start(&config, backend.snapshots(), metrics).unwrap();
    let a = server.local_addr();
    let (cluster, outside) = tokio::task::spawn_blocking(move || {
        (
            dig(a, &["web.ns.svc.cluster.local", "A"]),
            dig(a, &["www.example.org", "A"]),
        )
    })
    .await
    .unwrap();
    assert_eq!(cluster.status, "SERVFAIL");
    assert_eq!(outside.status, "REFUSED");
    server.shutdown().await;
}
