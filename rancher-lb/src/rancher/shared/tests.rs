use rancher_client::resource::{LaunchConfig, ResourceMeta};

use super::*;

fn id(s: &str) -> LbId {
    LbId::new(s).unwrap()
}

fn member(name: &str, scale: u32, listeners: &[(u16, Protocol)]) -> Member {
    Member {
        id: id(name),
        scale,
        listeners: listeners
            .iter()
            .map(|(port, protocol)| Port {
                port: *port,
                protocol: *protocol,
            })
            .collect(),
        default_certificate_id: None,
        certificate_ids: Vec::new(),
    }
}

fn rule(owner: &str, port: u16, host: Option<&str>, path: Option<&str>) -> PortRule {
    PortRule {
        source_port: port,
        target_port: Some(8080),
        hostname: host.map(str::to_owned),
        path: path.map(str::to_owned),
        selector: Some(format!("{BACKEND_LABEL}={owner}.web")),
        backend_name: Some(format!("{owner}{BACKEND_SEPARATOR}web")),
        ..Default::default()
    }
}

fn part(m: Member, rules: Vec<PortRule>) -> Part {
    Part { member: m, rules }
}

const HTTP: Protocol = Protocol::Http;
const HTTPS: Protocol = Protocol::Https;
const TCP: Protocol = Protocol::Tcp;

/// A service as Rancher would return it after `build`.
fn service(svc_id: &str, ports: &[u16], labels: &[(&str, &str)], parts: &[Part]) -> Shared {
    let built = build(parts, &[], None);
    let mut svc = LoadBalancerService {
        meta: ResourceMeta {
            id: svc_id.to_owned(),
            name: Some(format!("svc-{svc_id}")),
            ..Default::default()
        },
        external_id: parts
            .first()
            .map(|p| format!("{EXTERNAL_ID_PREFIX}{}", p.member.id)),
        scale: Some(built.scale),
        launch_config: Some(LaunchConfig {
            ports: ports.iter().map(|p| format!("{p}:{p}/tcp")).collect(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            ..Default::default()
        }),
        lb_config: Some(built.lb_config),
        ..Default::default()
    };
    svc.metadata.insert(METADATA_KEY.to_owned(), built.record);
    Shared::parse(svc).unwrap()
}

fn ids(parts: &[Part]) -> Vec<&str> {
    parts.iter().map(|p| p.member.id.as_str()).collect()
}

#[test]
fn http_ports_are_shared_and_tcp_ports_are_not() {
    let web = member("web", 2, &[(80, HTTP)]);
    let secure = member("secure", 1, &[(80, HTTP), (443, HTTPS)]);
    let db = member("db", 1, &[(5432, TCP)]);
    let db2 = member("db2", 1, &[(5432, TCP)]);
    let other = member("other", 1, &[(8080, HTTP)]);
    let zero = member("zero", 0, &[(80, HTTP)]);
    assert!(can_join(&[&web], &[&secure], false));
    assert!(
        !can_join(&[&db], &[&db2], false),
        "a tcp port is never shared"
    );
    assert!(!can_join(&[&web], &[&other], false), "no port in common");
    assert!(
        !can_join(&[&web], &[&zero], false),
        "scale 0 wants no instance"
    );
    assert!(can_join(&[&web], &[&zero], true), "global wants every host");
    let mixed = member("mixed", 1, &[(443, TCP)]);
    assert!(
        !can_join(&[&secure], &[&mixed], false),
        "https and tcp on one port conflict"
    );
}

#[test]
fn a_new_load_balancer_joins_the_service_on_its_port_in_place() {
    let web = part(
        member("web", 2, &[(80, HTTP)]),
        vec![rule("web", 80, Some("foo.bar.com"), Some("/foo"))],
    );
    let services = vec![service("1s1", &[80], &[], std::slice::from_ref(&web))];
    let other = part(
        member("other", 1, &[(80, HTTP)]),
        vec![rule("other", 80, Some("other.example.org"), None)],
    );
    let layout = plan(&services, other, &BTreeMap::new());
    assert!(layout.create.is_none() && layout.remove.is_empty());
    assert_eq!(layout.update.len(), 1);
    let (i, parts) = &layout.update[0];
    assert_eq!(*i, 0);
    assert_eq!(
        ids(parts),
        ["web", "other"],
        "members in the order they joined"
    );
    let built = build(parts, &[], None);
    assert_eq!(built.scale, 2, "the largest scale asked");
    assert_eq!(built.lb_config.port_rules.len(), 2);
}

#[test]
fn a_member_needing_another_port_recreates_the_service_with_everyone() {
    let web = part(
        member("web", 2, &[(80, HTTP)]),
        vec![rule("web", 80, Some("foo.bar.com"), Some("/foo"))],
    );
    let tls = part(
        member("api", 1, &[(443, HTTPS)]),
        vec![rule("api", 443, Some("api.example.org"), None)],
    );
    // web alone on 80; api alone on 443; then secure on both.
    let services = vec![
        service("1s1", &[80], &[], std::slice::from_ref(&web)),
        service("1s2", &[443], &[], std::slice::from_ref(&tls)),
    ];
    let secure = part(
        member("secure", 1, &[(80, HTTP), (443, HTTPS)]),
        vec![rule("secure", 443, Some("secure.example.org"), None)],
    );
    let layout = plan(&services, secure, &BTreeMap::new());
    let c = layout.create.expect("a new service");
    assert_eq!(c.replaces, Some(0), "the oldest service is created again");
    assert_eq!(c.founder.as_str(), "web");
    assert_eq!(c.ports, BTreeSet::from([80, 443]));
    assert_eq!(
        ids(&c.parts),
        ["web", "secure", "api"],
        "the clashing service merged in"
    );
    let mut removed = layout.remove.clone();
    removed.sort_unstable();
    assert_eq!(removed, [0, 1]);
    assert!(layout.update.is_empty());
}

#[test]
fn members_leave_when_they_no_longer_fit_and_keep_the_others_in_place() {
    let web = part(
        member("web", 2, &[(80, HTTP)]),
        vec![rule("web", 80, None, None)],
    );
    let other = part(
        member("other", 1, &[(80, HTTP), (443, HTTPS)]),
        vec![rule("other", 443, Some("o.example.org"), None)],
    );
    let services = vec![service(
        "1s1",
        &[80, 443],
        &[],
        &[web.clone(), other.clone()],
    )];

    // Other labels: it leaves; the service keeps its ports and web's rules.
    let zone_a: BTreeMap<String, String> = BTreeMap::from([(
        scheduler::AFFINITY_HOST_LABEL.to_owned(),
        "zone=a".to_owned(),
    )]);
    let layout = plan(&services, other.clone(), &zone_a);
    assert_eq!(layout.update.len(), 1);
    assert_eq!(ids(&layout.update[0].1), ["web"]);
    let c = layout.create.expect("its own service");
    assert_eq!((c.replaces, ids(&c.parts)), (None, vec!["other"]));

    // Scale 0: it wants no instance, so it cannot share.
    let mut zero = other.clone();
    zero.member.scale = 0;
    let layout = plan(&services, zero, &BTreeMap::new());
    assert_eq!(ids(&layout.update[0].1), ["web"]);
    assert!(layout.create.is_some());

    // A port it no longer needs stays published while others are there.
    let mut fewer = other;
    fewer.member.listeners.truncate(1);
    let layout = plan(&services, fewer, &BTreeMap::new());
    assert!(layout.create.is_none() && layout.remove.is_empty());
    assert_eq!(ids(&layout.update[0].1), ["web", "other"]);

    // Alone, its ports follow it (the service is created again).
    let services = vec![service("1s1", &[80, 443], &[], std::slice::from_ref(&web))];
    let mut moved = web;
    moved.member.listeners[0].port = 8080;
    let layout = plan(&services, moved, &BTreeMap::new());
    let c = layout.create.expect("created again");
    assert_eq!((c.replaces, c.ports), (Some(0), BTreeSet::from([8080])));
}

#[test]
fn a_lone_member_moves_into_an_older_service_it_may_share() {
    let web = part(
        member("web", 1, &[(80, HTTP)]),
        vec![rule("web", 80, None, None)],
    );
    let late = part(
        member("late", 1, &[(80, HTTP)]),
        vec![rule("late", 80, Some("late.example.org"), None)],
    );
    let services = vec![
        service("1s1", &[80], &[], std::slice::from_ref(&web)),
        service("1s2", &[80], &[], std::slice::from_ref(&late)),
    ];
    let layout = plan(&services, late.clone(), &BTreeMap::new());
    assert_eq!(layout.remove, [1]);
    assert_eq!(ids(&layout.update[0].1), ["web", "late"]);
    // The older one stays where it is.
    let layout = plan(&services, web, &BTreeMap::new());
    assert!(layout.remove.is_empty() && layout.create.is_none());
    assert_eq!(layout.update.len(), 1);
    assert_eq!(
        (layout.update[0].0, ids(&layout.update[0].1)),
        (0, vec!["web"])
    );
}

#[test]
fn the_older_member_keeps_a_contested_route_and_rules_are_ordered() {
    let mut a = member("a", 1, &[(80, HTTP), (443, HTTPS)]);
    a.default_certificate_id = Some("1c1".into());
    a.certificate_ids = vec!["1c2".into()];
    let mut b = member("b", 3, &[(80, HTTP)]);
    b.default_certificate_id = Some("1c3".into());
    b.certificate_ids = vec!["1c2".into(), "1c4".into()];
    let parts = [
        part(
            a,
            vec![
                rule("a", 80, None, None),
                rule("a", 80, Some("foo.bar.com"), Some("/foo")),
            ],
        ),
        part(
            b,
            vec![
                rule("b", 80, None, None),
                rule("b", 80, Some("foo.bar.com"), Some("/foo/bar")),
                rule("b", 80, Some("*.bar.com"), None),
                rule("b", 80, Some("foo.bar.com"), None),
            ],
        ),
    ];
    let built = build(&parts, &[], None);
    assert_eq!(built.scale, 3);
    let order: Vec<_> = built
        .lb_config
        .port_rules
        .iter()
        .map(|r| {
            (
                r.hostname.as_deref(),
                r.path.as_deref(),
                r.backend_name.as_deref(),
                r.priority,
            )
        })
        .collect();
    assert_eq!(
        order,
        [
            (
                Some("foo.bar.com"),
                Some("/foo/bar"),
                Some("b_web"),
                Some(1)
            ),
            (Some("foo.bar.com"), Some("/foo"), Some("a_web"), Some(2)),
            (Some("foo.bar.com"), None, Some("b_web"), Some(3)),
            (Some("*.bar.com"), None, Some("b_web"), Some(4)),
            (None, None, Some("a_web"), Some(5)),
        ]
    );
    let lost = &built.conflicts[&id("b")];
    assert_eq!(lost.len(), 2, "{lost:?}");
    assert!(lost[0].contains("route */ on port 80 is shadowed by load balancer a"));
    assert!(
        lost[0].ends_with("in the shared Rancher service"),
        "{lost:?}"
    );
    assert!(lost[1].contains("default certificate"));
    assert!(!built.conflicts.contains_key(&id("a")));
    assert_eq!(
        built.lb_config.default_certificate_id.as_deref(),
        Some("1c1")
    );
    assert_eq!(built.lb_config.certificate_ids, ["1c2", "1c3", "1c4"]);
    assert_eq!(
        built.record["members"][1]["id"], "b",
        "members recorded in order"
    );
}

#[test]
fn services_read_back_say_whose_rules_are_whose() {
    let web = part(
        member("web", 2, &[(80, HTTP)]),
        vec![rule("web", 80, Some("foo.bar.com"), Some("/foo"))],
    );
    let secure = part(
        member("secure", 1, &[(80, HTTP), (443, HTTPS)]),
        vec![rule("secure", 443, Some("secure.example.org"), None)],
    );
    let mut s = service("1s1", &[80, 443], &[], &[web.clone(), secure.clone()]);
    let mut hand = rule("x", 80, Some("hand.example.org"), None);
    hand.backend_name = Some("by-hand".into());
    s.svc
        .lb_config
        .as_mut()
        .unwrap()
        .port_rules
        .push(hand.clone());
    let back = Shared::parse(s.svc.clone()).unwrap();
    assert_eq!(ids(&back.parts), ["web", "secure"]);
    assert_eq!(back.parts[0].rules.len(), 1);
    assert_eq!(
        back.parts[1].rules[0].hostname.as_deref(),
        Some("secure.example.org")
    );
    assert_eq!(back.foreign, [hand]);

    // A service made before sharing: its one load balancer in the external id.
    let mut legacy = s.svc.clone();
    legacy.metadata.clear();
    legacy.external_id = Some(format!("{EXTERNAL_ID_PREFIX}default.web"));
    let back = Shared::parse(legacy.clone()).unwrap();
    assert_eq!(ids(&back.parts), ["default.web"]);
    assert_eq!(back.parts[0].rules.len(), 3);
    assert_eq!(
        back.parts[0].member.listeners,
        [
            Port {
                port: 80,
                protocol: HTTP
            },
            Port {
                port: 443,
                protocol: HTTP
            }
        ],
        "protocols from the rules on each port"
    );
    // Not ours at all.
    legacy.external_id = Some("kubernetes-ingress-lbs://x".into());
    assert!(Shared::parse(legacy).is_none());
}

#[test]
fn a_route_beats_another_members_default_backend() {
    let mut default = rule("a", 80, Some("h.example.org"), None);
    default.backend_name = Some(format!("a{BACKEND_SEPARATOR}dflt{DEFAULT_SUFFIX}"));
    assert!(is_default(&default));
    assert!(!is_default(&rule("a", 80, None, None)));
    let parts = [
        part(member("a", 1, &[(80, HTTP)]), vec![default]),
        part(
            member("b", 1, &[(80, HTTP)]),
            vec![rule("b", 80, Some("h.example.org"), None)],
        ),
    ];
    let built = build(&parts, &[], None);
    let kept: Vec<_> = built
        .lb_config
        .port_rules
        .iter()
        .map(|r| r.backend_name.as_deref())
        .collect();
    assert_eq!(kept, [Some("b_web")], "the newer member's route wins");
    assert!(
        built.conflicts[&id("a")][0].starts_with("the default backend for host h.example.org"),
        "{:?}",
        built.conflicts
    );
}
