use super::*;
use crate::fixtures::*;
use crate::model::{Port, Protocol, RecordType};

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
    let listed: Vec<(&str, &[RData])> = view.names().collect();
    assert_eq!(listed.len(), view.len());
    assert_eq!(view.len(), idx.len());
    let mut names: Vec<&str> = listed.iter().map(|(n, _)| *n).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), listed.len(), "every name once");
    for (name, records) in &listed {
        assert_eq!(idx.get(name).as_deref(), Some(*records), "{name}");
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
