use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType as HType;

use super::*;
use crate::fixtures::*;
use crate::records::RecordIndex;

pub(crate) fn query_packet(name: &str, qtype: u16, edns: Option<u16>) -> Vec<u8> {
    let mut p = vec![
        0xab,
        0xcd,
        0x01,
        0x00,
        0,
        1,
        0,
        0,
        0,
        0,
        0,
        u8::from(edns.is_some()),
    ];
    for label in name.trim_end_matches('.').split('.') {
        p.push(label.len() as u8);
        p.extend(label.as_bytes());
    }
    p.push(0);
    p.extend(qtype.to_be_bytes());
    p.extend(1u16.to_be_bytes());
    if let Some(size) = edns {
        p.extend([0, 0, 41]);
        p.extend(size.to_be_bytes());
        p.extend([0, 0, 0, 0, 0, 0]);
    }
    p
}

struct Zone {
    index: RecordIndex,
    builder: SnapshotBuilder,
}

impl Zone {
    fn new(options: Options) -> Self {
        let index = RecordIndex::new(options.clone());
        let mut builder = SnapshotBuilder::new(&options);
        builder.replace_all(&index.view());
        builder.set_synced(true);
        Self { index, builder }
    }

    fn update(&mut self, f: impl FnOnce(&mut RecordIndex) -> Vec<Change>) {
        let changes = f(&mut self.index);
        self.builder.apply(&changes);
    }

    /// Asks the current snapshot; `None` means forwarded.
    fn ask(&self, name: &str, qtype: HType) -> Option<Message> {
        let p = query_packet(name, u16::from(qtype), Some(1232));
        let q = wire::parse_query(&p).unwrap();
        let mut out = Vec::new();
        self.builder
            .snapshot()
            .respond(&p, &q, &mut out, q.udp_limit())?;
        let m = Message::from_vec(&out).expect("response decodes");
        assert_eq!(m.metadata.id, 0xabcd);
        assert_eq!(
            m.queries[0].name.to_string().trim_end_matches('.'),
            name.trim_end_matches('.'),
            "question echoed in the client's case"
        );
        Some(m)
    }
}

fn data(m: &Message) -> Vec<String> {
    let mut v: Vec<String> = m
        .answers
        .iter()
        .map(|r| format!("{} {}", r.record_type(), r.data))
        .collect();
    v.sort();
    v
}

fn sample() -> Zone {
    let mut z = Zone::new(Options::default());
    z.update(|i| {
        i.apply_service(mk_service(
            "ns",
            "web",
            &["10.43.0.7", "fd00::7"],
            vec![tcp("http", 80)],
        ))
    });
    z.update(|i| i.apply_service(mk_headless("ns", "mongodb", vec![])));
    z.update(|i| {
        i.apply_slice(mk_slice(
            "ns",
            "mongodb-1",
            "mongodb",
            vec![
                mk_endpoint("10.42.0.10", Some("mdb-0"), true),
                mk_endpoint("10.42.0.11", Some("mdb-1"), true),
                mk_endpoint("10.42.0.12", Some("mdb-2"), false),
            ],
            vec![tcp("mongo", 27017)],
        ))
    });
    z.update(|i| i.apply_service(mk_external("ns", "ext", "www.example.org")));
    z
}

#[test]
fn a_and_aaaa_authoritative() {
    let z = sample();
    let m = z.ask("web.ns.svc.cluster.local", HType::A).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.metadata.authoritative);
    assert_eq!(data(&m), vec!["A 10.43.0.7"]);
    assert_eq!(m.answers[0].ttl, 5);
    assert_eq!(
        data(&z.ask("web.ns.svc.cluster.local", HType::AAAA).unwrap()),
        vec!["AAAA fd00::7"]
    );
}

#[test]
fn case_insensitive_and_echoes_case() {
    let z = sample();
    let m = z.ask("WeB.Ns.SVC.Cluster.Local", HType::A).unwrap();
    assert_eq!(data(&m), vec!["A 10.43.0.7"]);
    assert_eq!(m.answers[0].name.to_string(), "WeB.Ns.SVC.Cluster.Local.");
}

#[test]
fn headless_and_statefulset_names() {
    let z = sample();
    let m = z.ask("mongodb.ns.svc.cluster.local", HType::A).unwrap();
    assert_eq!(data(&m), vec!["A 10.42.0.10", "A 10.42.0.11"]);
    let m = z
        .ask("mdb-1.mongodb.ns.svc.cluster.local", HType::A)
        .unwrap();
    assert_eq!(data(&m), vec!["A 10.42.0.11"]);
    let m = z
        .ask("mdb-2.mongodb.ns.svc.cluster.local", HType::A)
        .unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn srv_records() {
    let z = sample();
    let m = z
        .ask("_http._tcp.web.ns.svc.cluster.local", HType::SRV)
        .unwrap();
    assert_eq!(data(&m), vec!["SRV 0 100 80 web.ns.svc.cluster.local."]);
    let m = z
        .ask("_mongo._tcp.mongodb.ns.svc.cluster.local", HType::SRV)
        .unwrap();
    assert_eq!(
        data(&m),
        vec![
            "SRV 0 50 27017 mdb-0.mongodb.ns.svc.cluster.local.",
            "SRV 0 50 27017 mdb-1.mongodb.ns.svc.cluster.local."
        ]
    );
    // Unnamed or unknown port: NXDOMAIN.
    let m = z
        .ask("_https._tcp.web.ns.svc.cluster.local", HType::SRV)
        .unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn ptr_records_v4_and_v6() {
    let z = sample();
    let m = z.ask("7.0.43.10.in-addr.arpa", HType::PTR).unwrap();
    assert!(m.metadata.authoritative);
    assert_eq!(data(&m), vec!["PTR web.ns.svc.cluster.local."]);
    let v6 = name::reverse_name("fd00::7".parse().unwrap());
    assert_eq!(
        data(&z.ask(&v6, HType::PTR).unwrap()),
        vec!["PTR web.ns.svc.cluster.local."]
    );
    let m = z.ask("11.0.42.10.in-addr.arpa", HType::PTR).unwrap();
    assert_eq!(data(&m), vec!["PTR mdb-1.mongodb.ns.svc.cluster.local."]);
    // Reverse misses outside an authoritative reverse zone are forwarded.
    assert!(z.ask("8.8.8.8.in-addr.arpa", HType::PTR).is_none());
}

#[test]
fn authoritative_reverse_zone_misses_are_nxdomain() {
    let z = Zone::new(Options {
        reverse_zones: vec!["43.10.in-addr.arpa".into()],
        ..Options::default()
    });
    let m = z.ask("99.0.43.10.in-addr.arpa", HType::PTR).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(m.authorities[0].name.to_string(), "43.10.in-addr.arpa.");
}

#[test]
fn external_name_cname_for_every_type() {
    let z = sample();
    for t in [HType::A, HType::AAAA, HType::CNAME, HType::TXT] {
        let m = z.ask("ext.ns.svc.cluster.local", t).unwrap();
        assert_eq!(data(&m), vec!["CNAME www.example.org."], "{t}");
    }
}

#[test]
fn dns_version_soa_and_ns() {
    let z = sample();
    assert_eq!(
        data(&z.ask("dns-version.cluster.local", HType::TXT).unwrap()),
        vec!["TXT 1.1.0"]
    );
    let m = z.ask("cluster.local", HType::SOA).unwrap();
    assert_eq!(m.answers.len(), 1);
    assert!(data(&m)[0].starts_with("SOA ns.dns.cluster.local. hostmaster.cluster.local."));
    assert_eq!(
        data(&z.ask("cluster.local", HType::NS).unwrap()),
        vec!["NS ns.dns.cluster.local."]
    );
}

#[test]
fn nxdomain_and_nodata_carry_the_soa() {
    let z = sample();
    // NXDOMAIN: unknown name, with SOA authority (RFC 2308).
    let m = z.ask("nope.ns.svc.cluster.local", HType::A).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert!(m.metadata.authoritative);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities.len(), 1);
    assert_eq!(m.authorities[0].record_type(), HType::SOA);
    assert_eq!(m.authorities[0].name.to_string(), "cluster.local.");
    assert_eq!(m.authorities[0].ttl, 5);
    // NODATA: the name exists, the type does not.
    let m = z.ask("web.ns.svc.cluster.local", HType::TXT).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(m.authorities[0].record_type(), HType::SOA);
    // Empty non-terminals are NODATA (RFC 8020), not NXDOMAIN.
    for ent in [
        "ns.svc.cluster.local",
        "svc.cluster.local",
        "_tcp.web.ns.svc.cluster.local",
    ] {
        let m = z.ask(ent, HType::A).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{ent}");
        assert_eq!(m.authorities.len(), 1);
    }
    // Search-path expansion of a short name.
    let m = z.ask("web.ns.svc.ns.svc.cluster.local", HType::A).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn no_wildcards() {
    let z = sample();
    for n in [
        "*.ns.svc.cluster.local",
        "*.mongodb.ns.svc.cluster.local",
        "any.ns.svc.cluster.local",
    ] {
        let m = z.ask(n, HType::A).unwrap();
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{n}");
    }
}

#[test]
fn servfail_before_first_sync_and_forward_outside() {
    let options = Options::default();
    let b = SnapshotBuilder::new(&options);
    let s = b.snapshot();
    let p = query_packet("web.ns.svc.cluster.local", 1, None);
    let q = wire::parse_query(&p).unwrap();
    let mut out = Vec::new();
    assert_eq!(s.respond(&p, &q, &mut out, 512), Some(Rcode::ServFail));
    let p = query_packet("www.example.org", 1, None);
    let q = wire::parse_query(&p).unwrap();
    assert_eq!(s.respond(&p, &q, &mut out, 512), None);
}

#[test]
fn any_is_notimp_and_other_classes_refused() {
    let z = sample();
    let m = z.ask("web.ns.svc.cluster.local", HType::ANY).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
    let mut p = query_packet("web.ns.svc.cluster.local", 16, None);
    let n = p.len();
    p[n - 1] = 3; // class CH
    let q = wire::parse_query(&p).unwrap();
    let mut out = Vec::new();
    assert_eq!(
        z.builder.snapshot().respond(&p, &q, &mut out, 512),
        Some(Rcode::Refused)
    );
}

#[test]
fn insecure_pod_records() {
    let z = Zone::new(Options {
        pods: PodRecords::Insecure,
        ..Options::default()
    });
    let m = z.ask("10-42-1-5.any.pod.cluster.local", HType::A).unwrap();
    assert_eq!(data(&m), vec!["A 10.42.1.5"]);
    let m = z
        .ask("10-42-1-5.any.pod.cluster.local", HType::AAAA)
        .unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(m.answers.is_empty());
    let z = Zone::new(Options::default());
    let m = z.ask("10-42-1-5.any.pod.cluster.local", HType::A).unwrap();
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
}

#[test]
fn truncation_over_udp_and_full_over_tcp_limit() {
    let mut z = Zone::new(Options::default());
    z.update(|i| i.apply_service(mk_headless("ns", "big", vec![])));
    let eps = (0..60)
        .map(|n| mk_endpoint(&format!("10.42.1.{n}"), None, true))
        .collect();
    z.update(|i| i.apply_slice(mk_slice("ns", "big-1", "big", eps, vec![])));
    let p = query_packet("big.ns.svc.cluster.local", 1, None);
    let q = wire::parse_query(&p).unwrap();
    let mut out = Vec::new();
    z.builder
        .snapshot()
        .respond(&p, &q, &mut out, q.udp_limit());
    let m = Message::from_vec(&out).unwrap();
    assert!(m.metadata.truncation);
    assert!(m.answers.is_empty());
    z.builder.snapshot().respond(&p, &q, &mut out, 65535);
    let m = Message::from_vec(&out).unwrap();
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 60);
}

#[test]
fn snapshots_are_immutable() {
    let mut z = sample();
    let before = z.builder.snapshot();
    z.update(|i| i.delete_service(&crate::model::ServiceKey::new("ns", "web")));
    let p = query_packet("web.ns.svc.cluster.local", 1, None);
    let q = wire::parse_query(&p).unwrap();
    let mut out = Vec::new();
    assert_eq!(before.respond(&p, &q, &mut out, 512), Some(Rcode::NoError));
    assert_eq!(
        z.builder.snapshot().respond(&p, &q, &mut out, 512),
        Some(Rcode::NxDomain)
    );
}

/// The answers the server gives are the same whether the snapshot was
/// built from a view of the index (the first sync) or from the changes of
/// each update, byte for byte: mixed-case and 63-byte labels, StatefulSet
/// hostnames, IPv6 PTRs, headless next to ClusterIP, and a name with so
/// many endpoints that UDP truncates it while TCP carries it whole.
#[test]
fn a_snapshot_synced_from_a_view_answers_as_one_built_from_changes() {
    let long = "a".repeat(63);
    let mut z = Zone::new(Options::default());
    z.update(|i| {
        i.apply_service(mk_service(
            "ns",
            "web",
            &["10.43.0.7", "fd00::7"],
            vec![tcp("http", 80)],
        ))
    });
    z.update(|i| i.apply_service(mk_headless("ns", &long, vec![tcp("db", 5432)])));
    z.update(|i| {
        i.apply_slice(mk_slice(
            "ns",
            "long-1",
            &long,
            vec![
                mk_endpoint("10.42.0.10", Some("Mdb-0"), true),
                mk_endpoint("fd00::10", Some(&"b".repeat(63)), true),
                mk_endpoint("10.42.0.12", None, true),
            ],
            vec![tcp("db", 5432)],
        ))
    });
    z.update(|i| i.apply_service(mk_headless("ns", "big", vec![])));
    let eps = (0..300)
        .map(|n| mk_endpoint(&format!("10.42.{}.{}", n / 250 + 2, n % 250), None, true))
        .collect();
    z.update(|i| i.apply_slice(mk_slice("ns", "big-1", "big", eps, vec![])));

    let mut synced = SnapshotBuilder::new(z.index.options());
    synced.replace_all(&z.index.view());
    synced.set_synced(true);
    let (incremental, synced) = (z.builder.snapshot(), synced.snapshot());
    let full = z.index.full();
    assert_eq!(incremental.len(), full.len());
    assert_eq!(synced.len(), full.len());
    let mut asked = 0;
    for n in &full {
        for qtype in [1u16, 28, 12, 33, 5, 16] {
            for limit in [512, 65535] {
                let p = query_packet(&n.name, qtype, None);
                let q = wire::parse_query(&p).unwrap();
                let (mut a, mut b) = (Vec::new(), Vec::new());
                let ra = incremental.respond(&p, &q, &mut a, limit);
                let rb = synced.respond(&p, &q, &mut b, limit);
                assert_eq!((ra, &a), (rb, &b), "{} type {qtype} limit {limit}", n.name);
                asked += 1;
            }
        }
    }
    assert!(asked > 100);

    let ask = |name: &str, qtype: u16, limit: usize| {
        let p = query_packet(name, qtype, None);
        let q = wire::parse_query(&p).unwrap();
        let mut out = Vec::new();
        synced.respond(&p, &q, &mut out, limit);
        Message::from_vec(&out).unwrap()
    };
    let m = ask("BIG.ns.svc.cluster.local", 1, 512);
    assert!(
        m.metadata.truncation,
        "300 addresses do not fit in 512 bytes"
    );
    let m = ask("BIG.ns.svc.cluster.local", 1, 65535);
    assert!(!m.metadata.truncation);
    assert_eq!(m.answers.len(), 300);
    let host = format!("mdb-0.{long}.ns.svc.cluster.local");
    assert_eq!(
        data(&ask(&host.to_uppercase(), 1, 512)),
        vec!["A 10.42.0.10"]
    );
    let ptr = crate::name::reverse_name("fd00::10".parse().unwrap());
    assert_eq!(
        data(&ask(&ptr, 12, 512)),
        vec![format!(
            "PTR {}.{long}.ns.svc.cluster.local.",
            "b".repeat(63)
        )]
    );
    assert_eq!(
        data(&ask(
            &format!("10-42-0-12.{long}.ns.svc.cluster.local"),
            1,
            512
        )),
        vec!["A 10.42.0.12"]
    );
}
