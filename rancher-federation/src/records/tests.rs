use super::*;
use crate::model::Changes;

const FED: &str = "myfed";
const SUFFIX: &str = "example.org";

fn fed() -> Federation {
    Federation::new(FED, SUFFIX).unwrap()
}

fn member(cluster: &str, healthy: bool, region: &str, zones: &[&str]) -> Member {
    Member {
        cluster: cluster.into(),
        healthy,
        region: Some(region.into()),
        zones: zones.iter().map(|z| (*z).into()).collect(),
    }
}

fn shard(cluster: &str, ips: &[&str], ready: usize) -> Shard {
    Shard {
        cluster: cluster.into(),
        ingress: ips
            .iter()
            .map(|ip| Ingress::Ip(ip.parse().unwrap()))
            .collect(),
        ready_endpoints: ready,
    }
}

fn nginx(shards: Vec<Shard>) -> ServiceShards {
    ServiceShards {
        service: ServiceKey::new("default", "nginx"),
        shards,
    }
}

/// The records of one name, as `"A 192.0.2.1"` / `"CNAME x."` strings.
fn at(desired: &Desired, name: &str) -> Vec<String> {
    let name = DnsName::new(name).unwrap();
    desired
        .records
        .iter()
        .filter(|r| r.name == name)
        .map(|r| r.data.to_string())
        .collect()
}

const GLOBAL: &str = "nginx.default.myfed.svc.example.org";
const R1: &str = "nginx.default.myfed.svc.r1.example.org";
const R2: &str = "nginx.default.myfed.svc.r2.example.org";
const Z1A: &str = "nginx.default.myfed.svc.z1a.r1.example.org";
const Z1B: &str = "nginx.default.myfed.svc.z1b.r1.example.org";
const Z2A: &str = "nginx.default.myfed.svc.z2a.r2.example.org";

/// Two clusters in region r1 (zones z1a, z1b), one in r2 (zone z2a).
fn three(healthy: [bool; 3]) -> Vec<Member> {
    vec![
        member("c1", healthy[0], "r1", &["z1a"]),
        member("c2", healthy[1], "r1", &["z1b"]),
        member("c3", healthy[2], "r2", &["z2a"]),
    ]
}

fn three_shards() -> Vec<Shard> {
    vec![
        shard("c1", &["192.0.2.1"], 1),
        shard("c2", &["192.0.2.2"], 2),
        shard("c3", &["198.51.100.3"], 1),
    ]
}

#[test]
fn names_follow_the_federation_v1_scheme() {
    let key = ServiceKey::new("default", "nginx");
    assert_eq!(global_name(&fed(), &key).unwrap().as_str(), GLOBAL);
    assert_eq!(region_name(&fed(), &key, "r1").unwrap().as_str(), R1);
    assert_eq!(zone_name(&fed(), &key, "z1a", "r1").unwrap().as_str(), Z1A);
}

#[test]
fn all_healthy_every_level_has_its_shards() {
    let desired = desired(
        &fed(),
        &three([true; 3]),
        &[nginx(three_shards())],
        &Resolved::new(),
    );
    assert!(desired.problems.is_empty(), "{:?}", desired.problems);
    assert_eq!(
        at(&desired, GLOBAL),
        ["A 192.0.2.1", "A 192.0.2.2", "A 198.51.100.3"]
    );
    assert_eq!(at(&desired, R1), ["A 192.0.2.1", "A 192.0.2.2"]);
    assert_eq!(at(&desired, R2), ["A 198.51.100.3"]);
    assert_eq!(at(&desired, Z1A), ["A 192.0.2.1"]);
    assert_eq!(at(&desired, Z1B), ["A 192.0.2.2"]);
    assert_eq!(at(&desired, Z2A), ["A 198.51.100.3"]);
    assert_eq!(desired.records.len(), 9);
    assert!(desired.records.iter().all(|r| r.ttl == 180), "TTL 180");
    let scope = fed().scope();
    assert!(desired.records.iter().all(|r| scope.owns(&r.name)));
}

#[test]
fn one_zone_one_region_collapses_to_all_shards() {
    // The seed's Rancher clusters all reported FailureDomain1/Region1.
    let members = vec![
        member("a", true, "region1", &["failuredomain1"]),
        member("b", true, "region1", &["failuredomain1"]),
    ];
    let shards = vec![shard("a", &["192.0.2.1"], 1), shard("b", &["192.0.2.2"], 1)];
    let desired = desired(&fed(), &members, &[nginx(shards)], &Resolved::new());
    let both = ["A 192.0.2.1", "A 192.0.2.2"];
    assert_eq!(at(&desired, GLOBAL), both);
    assert_eq!(
        at(&desired, "nginx.default.myfed.svc.region1.example.org"),
        both
    );
    assert_eq!(
        at(
            &desired,
            "nginx.default.myfed.svc.failuredomain1.region1.example.org"
        ),
        both
    );
}

#[test]
fn unhealthy_member_drops_out_and_its_zone_cnames_to_the_region() {
    let desired = desired(
        &fed(),
        &three([true, false, true]),
        &[nginx(three_shards())],
        &Resolved::new(),
    );
    assert_eq!(at(&desired, GLOBAL), ["A 192.0.2.1", "A 198.51.100.3"]);
    assert_eq!(at(&desired, R1), ["A 192.0.2.1"]);
    assert_eq!(at(&desired, Z1B), [format!("CNAME {R1}.")]);
    assert_eq!(at(&desired, Z1A), ["A 192.0.2.1"]);
}

#[test]
fn empty_region_cnames_to_global() {
    let desired = desired(
        &fed(),
        &three([true, true, false]),
        &[nginx(three_shards())],
        &Resolved::new(),
    );
    assert_eq!(at(&desired, R2), [format!("CNAME {GLOBAL}.")]);
    assert_eq!(at(&desired, Z2A), [format!("CNAME {R2}.")]);
    assert_eq!(at(&desired, GLOBAL), ["A 192.0.2.1", "A 192.0.2.2"]);
}

#[test]
fn no_ready_endpoint_or_no_address_means_not_healthy() {
    let shards = vec![
        shard("c1", &["192.0.2.1"], 0),
        shard("c2", &[], 3),
        shard("c3", &["198.51.100.3"], 1),
    ];
    let desired = desired(
        &fed(),
        &three([true; 3]),
        &[nginx(shards)],
        &Resolved::new(),
    );
    assert_eq!(at(&desired, GLOBAL), ["A 198.51.100.3"]);
    assert_eq!(at(&desired, Z1A), [format!("CNAME {R1}.")]);
    assert_eq!(at(&desired, Z1B), [format!("CNAME {R1}.")]);
    assert_eq!(at(&desired, R1), [format!("CNAME {GLOBAL}.")]);
}

#[test]
fn none_healthy_leaves_no_global_record_and_a_cname_chain() {
    let desired = desired(
        &fed(),
        &three([false; 3]),
        &[nginx(three_shards())],
        &Resolved::new(),
    );
    assert!(at(&desired, GLOBAL).is_empty(), "no global record");
    assert_eq!(at(&desired, R1), [format!("CNAME {GLOBAL}.")]);
    assert_eq!(at(&desired, R2), [format!("CNAME {GLOBAL}.")]);
    assert_eq!(at(&desired, Z1A), [format!("CNAME {R1}.")]);
    assert_eq!(at(&desired, Z2A), [format!("CNAME {R2}.")]);
    assert_eq!(desired.records.len(), 5);
    // The same for a service with no shard at all yet.
    let none = super::desired(
        &fed(),
        &three([true; 3]),
        &[nginx(vec![])],
        &Resolved::new(),
    );
    assert_eq!(none.records, desired.records);
}

#[test]
fn a_deleted_service_leaves_nothing_behind() {
    let before = desired(
        &fed(),
        &three([true, false, true]),
        &[nginx(three_shards())],
        &Resolved::new(),
    );
    let after = desired(&fed(), &three([true, false, true]), &[], &Resolved::new());
    assert!(after.records.is_empty());
    let changes = Changes::between(&before.records, &after.records);
    assert!(changes.added.is_empty());
    assert_eq!(changes.removed.len(), before.records.len());
    assert!(
        changes
            .removed
            .iter()
            .any(|r| matches!(r.data, RecordData::Cname(_))),
        "the CNAME fallbacks go too (Federation v1 left them behind)"
    );
}

#[test]
fn ipv6_addresses_are_aaaa_records() {
    let shards = vec![shard("c1", &["2001:db8::1", "192.0.2.1"], 1)];
    let desired = desired(
        &fed(),
        &three([true; 3]),
        &[nginx(shards)],
        &Resolved::new(),
    );
    assert_eq!(at(&desired, GLOBAL), ["A 192.0.2.1", "AAAA 2001:db8::1"]);
}

#[test]
fn hostnames_are_resolved_or_cnamed() {
    let elb = |cluster: &str, host: &str| Shard {
        cluster: cluster.into(),
        ingress: vec![Ingress::Hostname(host.into())],
        ready_endpoints: 1,
    };
    let mut resolved = Resolved::new();
    resolved.insert(
        "lb-1.example.net".into(),
        vec!["203.0.113.1".parse().unwrap()],
    );
    // c1 resolves, c2 does not, c3 has an address.
    let shards = vec![
        elb("c1", "LB-1.example.net."),
        elb("c2", "lb-2.example.net"),
        shard("c3", &["198.51.100.3"], 1),
    ];
    let desired = desired(&fed(), &three([true; 3]), &[nginx(shards)], &resolved);
    assert_eq!(at(&desired, Z1A), ["A 203.0.113.1"], "resolved hostname");
    assert_eq!(
        at(&desired, Z1B),
        ["CNAME lb-2.example.net."],
        "unresolved hostname"
    );
    assert_eq!(
        at(&desired, R1),
        ["A 203.0.113.1"],
        "addresses win over a hostname: a CNAME cannot sit beside them"
    );
    assert_eq!(at(&desired, GLOBAL), ["A 198.51.100.3", "A 203.0.113.1"]);
}

#[test]
fn invalid_hostname_is_reported_and_skipped() {
    let shards = vec![Shard {
        cluster: "c1".into(),
        ingress: vec![Ingress::Hostname("not a host".into())],
        ready_endpoints: 1,
    }];
    let desired = desired(
        &fed(),
        &three([true; 3]),
        &[nginx(shards)],
        &Resolved::new(),
    );
    assert!(matches!(
        desired.problems.as_slice(),
        [Problem::InvalidHostname { cluster, .. }] if cluster == "c1"
    ));
    assert!(at(&desired, GLOBAL).is_empty());
    assert_eq!(at(&desired, Z1A), [format!("CNAME {R1}.")]);
}

#[test]
fn multi_zone_member_counts_in_each_zone() {
    let members = vec![member("c1", true, "r1", &["z1a", "z1b"])];
    let desired = desired(
        &fed(),
        &members,
        &[nginx(vec![shard("c1", &["192.0.2.1"], 1)])],
        &Resolved::new(),
    );
    assert_eq!(at(&desired, Z1A), ["A 192.0.2.1"]);
    assert_eq!(at(&desired, Z1B), ["A 192.0.2.1"]);
}

#[test]
fn members_without_topology_count_only_globally() {
    let members = vec![
        Member {
            cluster: "bare".into(),
            healthy: true,
            region: None,
            zones: vec![],
        },
        Member {
            cluster: "zoned".into(),
            healthy: true,
            region: None,
            zones: vec!["z".into()],
        },
        member("odd", true, "Not_A_Label", &["z"]),
    ];
    let shards = vec![
        shard("bare", &["192.0.2.1"], 1),
        shard("zoned", &["192.0.2.2"], 1),
        shard("odd", &["192.0.2.3"], 1),
    ];
    let desired = desired(&fed(), &members, &[nginx(shards)], &Resolved::new());
    assert_eq!(desired.records.len(), 3, "{:?}", desired.records);
    assert_eq!(at(&desired, GLOBAL).len(), 3);
    assert_eq!(
        desired.problems,
        vec![
            Problem::MissingRegion {
                cluster: "zoned".into()
            },
            Problem::InvalidTopology {
                cluster: "odd".into(),
                value: "Not_A_Label".into()
            },
        ]
    );
}

#[test]
fn shards_of_unknown_clusters_do_not_count() {
    let shards = vec![shard("stranger", &["192.0.2.9"], 1)];
    let desired = desired(
        &fed(),
        &three([true; 3]),
        &[nginx(shards)],
        &Resolved::new(),
    );
    assert!(at(&desired, GLOBAL).is_empty());
}

#[test]
fn services_are_independent_and_invalid_names_reported() {
    let web = ServiceShards {
        service: ServiceKey::new("shop", "web"),
        shards: vec![shard("c3", &["198.51.100.7"], 1)],
    };
    let bad = ServiceShards {
        service: ServiceKey::new("shop", "bad name"),
        shards: vec![shard("c3", &["198.51.100.8"], 1)],
    };
    let desired = desired(
        &fed(),
        &three([true; 3]),
        &[nginx(three_shards()), web, bad],
        &Resolved::new(),
    );
    assert_eq!(
        at(&desired, "web.shop.myfed.svc.example.org"),
        ["A 198.51.100.7"]
    );
    assert_eq!(at(&desired, GLOBAL).len(), 3);
    assert!(matches!(
        desired.problems.as_slice(),
        [Problem::InvalidServiceName { service, .. }] if service.name == "bad name"
    ));
    assert!(
        !desired
            .records
            .iter()
            .any(|r| r.data == RecordData::A("198.51.100.8".parse().unwrap()))
    );
}

#[test]
fn configured_ttl_applies_to_every_record() {
    let mut federation = fed();
    federation.ttl = 30;
    let desired = desired(
        &federation,
        &three([true, false, true]),
        &[nginx(three_shards())],
        &Resolved::new(),
    );
    assert!(desired.records.iter().all(|r| r.ttl == 30));
}

#[test]
fn recovery_is_a_minimal_change() {
    let members_down = three([true, false, true]);
    let before = desired(
        &fed(),
        &members_down,
        &[nginx(three_shards())],
        &Resolved::new(),
    );
    let after = desired(
        &fed(),
        &three([true; 3]),
        &[nginx(three_shards())],
        &Resolved::new(),
    );
    let changes = Changes::between(&before.records, &after.records);
    let show = |records: &[Record]| records.iter().map(ToString::to_string).collect::<Vec<_>>();
    assert_eq!(
        show(&changes.removed),
        [format!("{Z1B}. 180 IN CNAME {R1}.")]
    );
    assert_eq!(
        show(&changes.added),
        [
            format!("{GLOBAL}. 180 IN A 192.0.2.2"),
            format!("{R1}. 180 IN A 192.0.2.2"),
            format!("{Z1B}. 180 IN A 192.0.2.2"),
        ]
    );
}
