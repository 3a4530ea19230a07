use super::*;
use crate::fixtures::*;
use crate::model::{PodRecords, Port, Protocol, RecordType};
use crate::name;

fn index() -> RecordIndex {
    RecordIndex::new(Options::default())
}

fn types(idx: &RecordIndex, name: &str) -> Vec<RecordType> {
    idx.get(name)
        .unwrap_or_else(|| panic!("{name} missing"))
        .iter()
        .map(RData::rtype)
        .collect()
}

#[test]
fn static_records_at_apex() {
    let idx = index();
    assert_eq!(
        types(&idx, "cluster.local"),
        vec![RecordType::NS, RecordType::SOA]
    );
    assert_eq!(
        idx.get("dns-version.cluster.local").unwrap(),
        &[RData::Txt(vec!["1.1.0".to_owned()])]
    );
}

#[test]
fn cluster_ip_dual_stack_srv_and_ptr() {
    let mut idx = index();
    idx.apply_service(mk_service(
        "ns",
        "web",
        &["10.43.0.7", "fd00::7"],
        vec![
            tcp("http", 80),
            Port {
                name: None,
                protocol: Protocol::Tcp,
                port: 81,
            },
        ],
    ));
    let recs = idx.get("web.ns.svc.cluster.local").unwrap();
    assert!(recs.contains(&RData::A("10.43.0.7".parse().unwrap())));
    assert!(recs.contains(&RData::Aaaa("fd00::7".parse().unwrap())));
    assert_eq!(
        idx.get("_http._tcp.web.ns.svc.cluster.local").unwrap(),
        &[RData::Srv {
            priority: 0,
            weight: 100,
            port: 80,
            target: "web.ns.svc.cluster.local".into()
        }]
    );
    assert_eq!(
        idx.get("7.0.43.10.in-addr.arpa").unwrap(),
        &[RData::Ptr("web.ns.svc.cluster.local".into())]
    );
    assert!(
        idx.get(&name::reverse_name("fd00::7".parse().unwrap()))
            .is_some()
    );
    // Empty non-terminals exist with no records.
    assert_eq!(idx.get("ns.svc.cluster.local").unwrap(), &[]);
    assert_eq!(idx.get("svc.cluster.local").unwrap(), &[]);
    assert_eq!(idx.get("_tcp.web.ns.svc.cluster.local").unwrap(), &[]);
}

#[test]
fn headless_statefulset_identities_and_readiness() {
    let mut idx = index();
    idx.apply_service(mk_headless("ns", "mongodb", vec![]));
    idx.apply_slice(mk_slice(
        "ns",
        "mongodb-abc",
        "mongodb",
        vec![
            mk_endpoint("10.42.0.10", Some("mdb-0"), true),
            mk_endpoint("10.42.0.11", Some("mdb-1"), true),
            mk_endpoint("10.42.0.12", Some("mdb-2"), false),
        ],
        vec![tcp("mongo", 27017)],
    ));
    let base = idx.get("mongodb.ns.svc.cluster.local").unwrap();
    assert_eq!(base.len(), 2, "not-ready mdb-2 is not published: {base:?}");
    assert_eq!(
        idx.get("mdb-1.mongodb.ns.svc.cluster.local").unwrap(),
        &[RData::A("10.42.0.11".parse().unwrap())]
    );
    assert!(idx.get("mdb-2.mongodb.ns.svc.cluster.local").is_none());
    assert_eq!(
        idx.get("11.0.42.10.in-addr.arpa").unwrap(),
        &[RData::Ptr("mdb-1.mongodb.ns.svc.cluster.local".into())]
    );
    let srv = idx.get("_mongo._tcp.mongodb.ns.svc.cluster.local").unwrap();
    assert_eq!(srv.len(), 2);
    assert!(srv.contains(&RData::Srv {
        priority: 0,
        weight: 50,
        port: 27017,
        target: "mdb-0.mongodb.ns.svc.cluster.local".into()
    }));

    // publishNotReadyAddresses publishes mdb-2 too.
    let mut svc = mk_headless("ns", "mongodb", vec![]);
    svc.publish_not_ready_addresses = true;
    idx.apply_service(svc);
    assert_eq!(idx.get("mongodb.ns.svc.cluster.local").unwrap().len(), 3);
    assert!(idx.get("mdb-2.mongodb.ns.svc.cluster.local").is_some());
}

#[test]
fn headless_without_hostname_gets_dashed_label_and_no_ptr() {
    let mut idx = index();
    idx.apply_service(mk_headless("ns", "h", vec![]));
    let mut ep = mk_endpoint("10.42.0.20", None, true);
    ep.pod_name = Some("h-7f9c".into());
    idx.apply_slice(mk_slice(
        "ns",
        "h-1",
        "h",
        vec![ep, mk_endpoint("fd00::20", None, true)],
        vec![tcp("p", 9)],
    ));
    assert!(idx.get("10-42-0-20.h.ns.svc.cluster.local").is_some());
    assert!(idx.get("fd00--20.h.ns.svc.cluster.local").is_some());
    assert!(
        idx.get("20.0.42.10.in-addr.arpa").is_none(),
        "no PTR without hostname"
    );

    let mut idx = RecordIndex::new(Options {
        endpoint_pod_names: true,
        ..Options::default()
    });
    idx.apply_service(mk_headless("ns", "h", vec![]));
    let mut ep = mk_endpoint("10.42.0.20", None, true);
    ep.pod_name = Some("h-7f9c".into());
    idx.apply_slice(mk_slice("ns", "h-1", "h", vec![ep], vec![]));
    assert!(idx.get("h-7f9c.h.ns.svc.cluster.local").is_some());
}

#[test]
fn headless_without_ready_endpoints_has_no_name() {
    let mut idx = index();
    idx.apply_service(mk_headless("ns", "h", vec![]));
    idx.apply_slice(mk_slice(
        "ns",
        "h-1",
        "h",
        vec![mk_endpoint("10.42.0.30", Some("a"), false)],
        vec![],
    ));
    assert!(idx.get("h.ns.svc.cluster.local").is_none());
}

#[test]
fn external_name_is_a_cname() {
    let mut idx = index();
    idx.apply_service(mk_external("ns", "ext", "WWW.Example.org."));
    assert_eq!(
        idx.get("ext.ns.svc.cluster.local").unwrap(),
        &[RData::Cname("www.example.org".into())]
    );
}

#[test]
fn invalid_data_is_skipped_and_counted_rest_served() {
    let mut idx = index();
    idx.apply_service(mk_headless("ns", "h", vec![]));
    idx.apply_slice(mk_slice(
        "ns",
        "h-1",
        "h",
        vec![
            mk_endpoint("10.42.0.1", Some("Not_A_Label!"), true),
            crate::model::Endpoint {
                addresses: vec![],
                hostname: None,
                ready: true,
                pod_name: None,
            },
            mk_endpoint("10.42.0.2", Some("good"), true),
        ],
        vec![],
    ));
    idx.apply_service(mk_external("ns", "bad", "not a name"));
    assert_eq!(idx.skipped_total(), 3);
    assert!(idx.get("good.h.ns.svc.cluster.local").is_some());
    assert_eq!(idx.get("h.ns.svc.cluster.local").unwrap().len(), 1);
    assert!(idx.get("bad.ns.svc.cluster.local").is_none());
}

#[test]
fn namespace_filter() {
    let opts = Options {
        namespaces: Some(["a".to_owned()].into()),
        ..Options::default()
    };
    let mut idx = RecordIndex::new(opts);
    idx.apply_service(mk_service("a", "x", &["10.43.0.1"], vec![]));
    idx.apply_service(mk_service("b", "x", &["10.43.0.2"], vec![]));
    assert!(idx.get("x.a.svc.cluster.local").is_some());
    assert!(idx.get("x.b.svc.cluster.local").is_none());
}

#[test]
fn changes_touch_only_the_affected_names() {
    let mut idx = index();
    idx.apply_service(mk_service("ns", "a", &["10.43.0.1"], vec![]));
    let changes = idx.apply_service(mk_service("ns", "b", &["10.43.0.2"], vec![]));
    let names: Vec<&str> = changes.iter().map(Change::name).collect();
    assert!(names.contains(&"b.ns.svc.cluster.local"));
    assert!(names.contains(&"2.0.43.10.in-addr.arpa"));
    assert!(!names.iter().any(|n| n.starts_with("a.")), "{names:?}");
    // ns.svc.cluster.local already existed: no change for it.
    assert!(!names.contains(&"ns.svc.cluster.local"));
    // Re-applying the same object changes nothing.
    assert!(
        idx.apply_service(mk_service("ns", "b", &["10.43.0.2"], vec![]))
            .is_empty()
    );
    // Deleting b removes its names but keeps the shared ENT.
    let changes = idx.delete_service(&ServiceKey::new("ns", "b"));
    assert!(changes.contains(&Change::Remove("b.ns.svc.cluster.local".into())));
    assert!(idx.get("ns.svc.cluster.local").is_some());
    idx.delete_service(&ServiceKey::new("ns", "a"));
    assert!(idx.get("ns.svc.cluster.local").is_none());
    assert!(idx.get("svc.cluster.local").is_none());
}

#[test]
fn slice_events_and_resets() {
    let mut idx = index();
    idx.apply_service(mk_headless("ns", "h", vec![]));
    idx.apply_slice(mk_slice(
        "ns",
        "s1",
        "h",
        vec![mk_endpoint("10.42.0.1", Some("a"), true)],
        vec![],
    ));
    idx.apply_slice(mk_slice(
        "ns",
        "s2",
        "h",
        vec![mk_endpoint("10.42.0.2", Some("b"), true)],
        vec![],
    ));
    assert_eq!(idx.get("h.ns.svc.cluster.local").unwrap().len(), 2);
    idx.delete_slice("ns", "s1");
    assert_eq!(idx.get("h.ns.svc.cluster.local").unwrap().len(), 1);
    idx.reset_slices(vec![]);
    assert!(idx.get("h.ns.svc.cluster.local").is_none());
    idx.reset_services(vec![]);
    assert!(idx.get("svc.cluster.local").is_none());
    assert_eq!(idx.full().len(), 2, "apex and dns-version remain");
}

#[test]
fn verified_pod_records() {
    let opts = Options {
        pods: PodRecords::Verified,
        ..Options::default()
    };
    let mut idx = RecordIndex::new(opts);
    idx.apply_pod(Pod {
        namespace: "ns".into(),
        name: "p".into(),
        ips: vec!["10.42.1.5".parse().unwrap()],
    });
    assert!(idx.get("10-42-1-5.ns.pod.cluster.local").is_some());
    idx.delete_pod("ns", "p");
    assert!(idx.get("10-42-1-5.ns.pod.cluster.local").is_none());
}

#[test]
fn names_shared_by_owners_merge_and_unmerge() {
    let mut idx = index();
    for svc in ["h1", "h2"] {
        idx.apply_service(mk_headless("ns", svc, vec![]));
        idx.apply_slice(mk_slice(
            "ns",
            &format!("{svc}-1"),
            svc,
            vec![mk_endpoint("10.42.0.5", Some("a"), true)],
            vec![],
        ));
    }
    let ptr = "5.0.42.10.in-addr.arpa";
    assert_eq!(
        idx.get(ptr).unwrap(),
        vec![
            RData::Ptr("a.h1.ns.svc.cluster.local".into()),
            RData::Ptr("a.h2.ns.svc.cluster.local".into())
        ]
    );
    let changes = idx.delete_service(&ServiceKey::new("ns", "h1"));
    assert!(changes.contains(&Change::Upsert(NameRecords {
        name: ptr.into(),
        records: vec![RData::Ptr("a.h2.ns.svc.cluster.local".into())]
    })));
    assert!(idx.full().iter().any(|n| n.name == ptr));
    let changes = idx.delete_service(&ServiceKey::new("ns", "h2"));
    assert!(changes.contains(&Change::Remove(ptr.into())));
    assert!(idx.get(ptr).is_none());
}

#[test]
fn a_view_lists_every_name_once_and_keeps_its_moment() {
    let mut idx = index();
    idx.apply_service(mk_service(
        "ns",
        "web",
        &["10.43.0.7"],
        vec![tcp("http", 80)],
    ));
    for svc in ["h1", "h2"] {
        idx.apply_service(mk_headless("ns", svc, vec![]));
        idx.apply_slice(mk_slice(
            "ns",
            &format!("{svc}-1"),
            svc,
            // The same address behind both: a PTR name two owners share.
            vec![mk_endpoint("10.42.0.5", Some("a"), true)],
            vec![tcp("db", 5432)],
        ));
    }
    let view = idx.view();
    let mut listed: Vec<(String, Vec<RData>)> = Vec::new();
    view.for_each_name(&mut |n, r| listed.push((n.to_owned(), r.to_vec())));
    assert_eq!(listed.len(), view.len());
    assert_eq!(view.len(), idx.len());
    let mut names: Vec<&str> = listed.iter().map(|(n, _)| n.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), listed.len(), "every name once");
    for (name, records) in &listed {
        assert_eq!(idx.get(name).as_ref(), Some(records), "{name}");
    }
    let before = view.to_vec();

    // Later changes do not show through a view taken earlier; replaying
    // them on its copy gives the index's new state.
    let mut changes = idx.delete_service(&ServiceKey::new("ns", "h1"));
    changes.extend(idx.apply_service(mk_service("ns", "api", &["10.43.0.8"], vec![])));
    assert_eq!(view.to_vec(), before);
    let mut replayed: std::collections::BTreeMap<String, Vec<RData>> =
        before.into_iter().map(|n| (n.name, n.records)).collect();
    for change in changes {
        match change {
            Change::Upsert(n) => {
                replayed.insert(n.name, n.records);
            }
            Change::Remove(name) => {
                replayed.remove(&name);
            }
        }
    }
    let now: Vec<NameRecords> = replayed
        .into_iter()
        .map(|(name, records)| NameRecords { name, records })
        .collect();
    assert_eq!(now, idx.full());
}

/// Random changes to a small cluster (shared addresses, moving slices,
/// mixed-case hostnames, pods): after each, replaying the returned changes
/// on the previous zone gives exactly the index's zone, every name's
/// records from `get` agree with it, and `len` counts it.
#[test]
fn incremental_changes_replay_to_the_full_zone() {
    let opts = Options {
        pods: PodRecords::Verified,
        nameserver_addresses: vec!["10.43.0.10".parse().unwrap()],
        ..Options::default()
    };
    let mut idx = RecordIndex::new(opts);
    let mut rng = fastrand::Rng::with_seed(21);
    let mut zone: std::collections::BTreeMap<String, Vec<RData>> = idx
        .full()
        .into_iter()
        .map(|n| (n.name, n.records))
        .collect();
    let namespaces = ["a", "b"];
    let services = ["x", "y", "svc"];
    let addrs = ["10.42.0.1", "10.42.0.2", "10.43.0.10", "fd00::1", "fd00::2"];
    let hostnames = [Some("h0"), Some("Mdb-1"), None, Some("bad_name")];
    for round in 0..400 {
        let ns = namespaces[rng.usize(..namespaces.len())];
        let svc = services[rng.usize(..services.len())];
        let changes = match rng.u8(..8) {
            0 | 1 => {
                let ip = addrs[rng.usize(..addrs.len())];
                let port = if rng.bool() {
                    tcp("http", 80)
                } else {
                    tcp("p", 81)
                };
                idx.apply_service(match rng.u8(..4) {
                    0 => mk_service(ns, svc, &[ip], vec![port]),
                    1 => mk_external(ns, svc, "WWW.example.org"),
                    _ => {
                        let mut s = mk_headless(ns, svc, vec![]);
                        s.publish_not_ready_addresses = rng.bool();
                        s
                    }
                })
            }
            2 => idx.delete_service(&ServiceKey::new(ns, svc)),
            3 | 4 => {
                let eps = (0..rng.usize(..4))
                    .map(|_| {
                        let ip = addrs[rng.usize(..addrs.len())];
                        let host = hostnames[rng.usize(..hostnames.len())];
                        mk_endpoint(ip, host, rng.u8(..4) != 0)
                    })
                    .collect();
                let name = format!("s{}", rng.u8(..4));
                idx.apply_slice(mk_slice(ns, &name, svc, eps, vec![tcp("db", 5432)]))
            }
            5 => idx.delete_slice(ns, &format!("s{}", rng.u8(..4))),
            6 => idx.apply_pod(Pod {
                namespace: ns.into(),
                name: format!("p{}", rng.u8(..3)),
                ips: vec![addrs[rng.usize(..addrs.len())].parse().unwrap()],
            }),
            _ => idx.delete_pod(ns, &format!("p{}", rng.u8(..3))),
        };
        for change in changes {
            match change {
                Change::Upsert(n) => {
                    zone.insert(n.name, n.records);
                }
                Change::Remove(name) => {
                    assert!(
                        zone.remove(&name).is_some(),
                        "round {round}: {name} removed twice"
                    );
                }
            }
        }
        let full: std::collections::BTreeMap<String, Vec<RData>> = idx
            .full()
            .into_iter()
            .map(|n| (n.name, n.records))
            .collect();
        assert_eq!(zone, full, "round {round}");
        assert_eq!(idx.len(), full.len(), "round {round}");
        for (name, records) in &full {
            assert_eq!(
                idx.get(name).as_ref(),
                Some(records),
                "round {round}: {name}"
            );
        }
    }
}

#[test]
fn names_under_a_service_belong_to_it_alone() {
    let mut idx = index();
    // A Service named like a namespace, in a namespace named `svc`.
    idx.apply_service(mk_service(
        "svc",
        "a",
        &["10.43.0.1"],
        vec![tcp("http", 80)],
    ));
    idx.apply_service(mk_headless("a", "svc", vec![]));
    idx.apply_slice(mk_slice(
        "a",
        "s",
        "svc",
        vec![mk_endpoint("10.42.0.1", Some("A-0"), true)],
        vec![tcp("http", 80)],
    ));
    assert_eq!(
        idx.get("a.svc.svc.cluster.local").unwrap(),
        vec![RData::A("10.43.0.1".parse().unwrap())]
    );
    assert_eq!(
        idx.get("a-0.svc.a.svc.cluster.local").unwrap(),
        vec![RData::A("10.42.0.1".parse().unwrap())],
        "hostnames are lower-cased"
    );
    assert_eq!(
        idx.get("1.0.42.10.in-addr.arpa").unwrap(),
        vec![RData::Ptr("a-0.svc.a.svc.cluster.local".into())]
    );
    assert_eq!(
        idx.get("svc.svc.cluster.local").unwrap(),
        &[],
        "namespace ENT"
    );
    assert_eq!(
        idx.get("a.svc.cluster.local").unwrap(),
        &[],
        "namespace ENT"
    );
    assert!(idx.get("b.a.svc.svc.cluster.local").is_none());
    assert!(idx.get("x.svc.a.svc.cluster.local").is_none());
    assert_eq!(idx.len(), idx.full().len());
}

#[test]
fn ipv6_endpoint_ptr_and_a_ptr_shared_with_a_cluster_ip() {
    let mut idx = index();
    idx.apply_service(mk_service("ns", "web", &["fd00::7"], vec![]));
    idx.apply_service(mk_headless("ns", "db", vec![]));
    idx.apply_slice(mk_slice(
        "ns",
        "db-1",
        "db",
        vec![mk_endpoint("fd00::7", Some("db-0"), true)],
        vec![],
    ));
    let ptr = name::reverse_name("fd00::7".parse().unwrap());
    assert_eq!(
        idx.get(&ptr).unwrap(),
        vec![
            RData::Ptr("db-0.db.ns.svc.cluster.local".into()),
            RData::Ptr("web.ns.svc.cluster.local".into()),
        ]
    );
    assert_eq!(
        idx.get("db-0.db.ns.svc.cluster.local").unwrap(),
        vec![RData::Aaaa("fd00::7".parse().unwrap())]
    );
    let changes = idx.delete_slice("ns", "db-1");
    assert!(changes.contains(&Change::Upsert(NameRecords {
        name: ptr.clone(),
        records: vec![RData::Ptr("web.ns.svc.cluster.local".into())],
    })));
    assert!(changes.contains(&Change::Remove("db.ns.svc.cluster.local".into())));
}
