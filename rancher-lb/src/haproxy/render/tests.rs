use super::*;
use crate::model::{
    BackendSpec, CertificateSpec, EndpointSpec, HttpRouteSpec, ListenerSpec, LoadBalancerSpec,
    StickinessSpec, TcpRouteSpec,
};

const ORG_CRT: &str = include_str!("../../../tests/data/example-org.crt");
const ORG_KEY: &str = include_str!("../../../tests/data/example-org.key");
const NET_CRT: &str = include_str!("../../../tests/data/example-net.crt");
const NET_KEY: &str = include_str!("../../../tests/data/example-net.key");

const HOST: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, 2));

fn paths() -> Paths {
    Paths {
        generation: "/run/lb/gen-1".into(),
        admin_socket: "/run/lb/admin.sock".into(),
    }
}

fn settings(snippets: bool) -> Settings {
    Settings {
        maxconn: 1000,
        hard_stop_after_secs: 30,
        snippets,
    }
}

fn route(host: Option<&str>, path: &str, kind: PathMatch, backend: &str) -> HttpRouteSpec {
    HttpRouteSpec {
        port: 8080,
        host: host.map(Into::into),
        path: Some(path.into()),
        path_match: kind,
        backend: backend.into(),
    }
}

fn backend(name: &str) -> BackendSpec {
    BackendSpec {
        name: name.into(),
        endpoints: vec![EndpointSpec {
            address: "10.0.0.1".into(),
            port: 80,
        }],
        ..Default::default()
    }
}

fn http_lb(id: &str, routes: Vec<HttpRouteSpec>) -> LoadBalancer {
    let mut names: Vec<String> = routes.iter().map(|r| r.backend.clone()).collect();
    names.sort();
    names.dedup();
    LoadBalancer::new(&LoadBalancerSpec {
        id: id.into(),
        listeners: vec![ListenerSpec {
            port: 8080,
            protocol: Protocol::Http,
        }],
        http_routes: routes,
        backends: names.iter().map(|n| backend(n)).collect(),
        scale: 1,
        ..Default::default()
    })
    .unwrap()
}

fn slots_for(lbs: &[&LoadBalancer], n: usize) -> BTreeMap<(LbId, Name), Slots> {
    let mut out = BTreeMap::new();
    for lb in lbs {
        for b in lb.backends() {
            let mut s: Slots = b.endpoints.iter().copied().map(Some).collect();
            s.resize(n.max(s.len()), None);
            out.insert((lb.id().clone(), b.name.clone()), s);
        }
    }
    out
}

fn file<'a>(r: &'a Rendered, path: &str) -> &'a str {
    &r.files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("no file {path}"))
        .contents
}

fn parse_map(text: &str) -> Vec<(String, String)> {
    text.lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// What HAProxy does with the maps, step by step, as the frontend says.
fn lookup(r: &Rendered, host: &str, path: &str) -> Option<String> {
    let m = |name: &str| parse_map(file(r, &format!("maps/{name}-8080.map")));
    let host = host.split(':').next().unwrap().to_lowercase();
    let exact_host = m("host")
        .into_iter()
        .find(|(k, _)| *k == host)
        .map(|(_, v)| v);
    let hk = exact_host
        .or_else(|| {
            let stripped = host.find('.').map(|i| &host[i..]).unwrap_or("");
            m("wildcard")
                .into_iter()
                .find(|(k, _)| k == stripped)
                .map(|(_, v)| v)
        })
        .unwrap_or_else(|| "*".to_owned());
    let key = format!("{hk}{path}");
    if let Some((_, v)) = m("path-exact").into_iter().find(|(k, _)| *k == key) {
        return Some(v);
    }
    if let Some((_, v)) = m("path-prefix-exact").into_iter().find(|(k, _)| *k == key) {
        return Some(v);
    }
    m("path-prefix")
        .into_iter()
        .filter(|(k, _)| key.starts_with(k.as_str()))
        .max_by_key(|(k, _)| k.len())
        .map(|(_, v)| v)
        .or_else(|| {
            m("default")
                .into_iter()
                .find(|(k, _)| *k == hk)
                .map(|(_, v)| v)
        })
}

fn be(lb: &str, name: &str) -> Option<String> {
    Some(format!("be:h:{lb}:{name}"))
}

#[test]
fn maps_implement_the_ingress_path_rules() {
    use PathMatch::{Exact, Prefix};
    let lb = http_lb(
        "paths",
        vec![
            route(Some("exact.example.org"), "/foo", Exact, "foo"),
            route(Some("prefix.example.org"), "/", Prefix, "root"),
            route(Some("prefix.example.org"), "/aaa", Prefix, "aaa"),
            route(Some("prefix.example.org"), "/aaa/bbb/", Prefix, "bbb"),
            route(Some("mixed.example.org"), "/foo", Prefix, "prefix"),
            route(Some("mixed.example.org"), "/foo", Exact, "exact"),
            route(Some("only.example.org"), "/aaa", Prefix, "aaa"),
        ],
    );
    let r = render(
        HOST,
        &[&lb],
        &slots_for(&[&lb], 2),
        &paths(),
        &settings(false),
        true,
    );
    let cases: &[(&str, &str, Option<String>)] = &[
        ("exact.example.org", "/foo", be("paths", "foo")),
        ("exact.example.org", "/bar", None),
        ("exact.example.org", "/foo/", None),
        ("exact.example.org", "/FOO", None),
        ("prefix.example.org", "/anything", be("paths", "root")),
        ("prefix.example.org", "/aaa", be("paths", "aaa")),
        ("prefix.example.org", "/aaa/", be("paths", "aaa")),
        ("prefix.example.org", "/aaa/ccc", be("paths", "aaa")),
        ("prefix.example.org", "/aaaccc", be("paths", "root")),
        ("prefix.example.org", "/aaa/bbb", be("paths", "bbb")),
        ("prefix.example.org", "/aaa/bbb/", be("paths", "bbb")),
        ("prefix.example.org", "/aaa/bbb/ccc", be("paths", "bbb")),
        ("prefix.example.org", "/aaa/bbbxyz", be("paths", "aaa")),
        ("PREFIX.example.org:8080", "/aaa", be("paths", "aaa")),
        ("mixed.example.org", "/foo", be("paths", "exact")),
        ("mixed.example.org", "/foo/x", be("paths", "prefix")),
        ("mixed.example.org", "/foobar", None),
        ("only.example.org", "/ccc", None),
        ("unknown.example.org", "/aaa", None),
    ];
    for (host, path, want) in cases {
        assert_eq!(&lookup(&r, host, path), want, "{host}{path}");
    }
}

#[test]
fn hosts_are_strict_and_wildcards_cover_one_label() {
    use PathMatch::Prefix;
    let lb = http_lb(
        "hosts",
        vec![
            route(Some("*.example.org"), "/", Prefix, "wild"),
            route(Some("foo.example.org"), "/only", Prefix, "foo"),
            route(None, "/", Prefix, "any"),
        ],
    );
    let r = render(
        HOST,
        &[&lb],
        &slots_for(&[&lb], 1),
        &paths(),
        &settings(false),
        true,
    );
    assert_eq!(lookup(&r, "bar.example.org", "/x"), be("hosts", "wild"));
    assert_eq!(lookup(&r, "baz.bar.example.org", "/x"), be("hosts", "any"));
    assert_eq!(lookup(&r, "example.org", "/x"), be("hosts", "any"));
    assert_eq!(lookup(&r, "foo.example.org", "/only/x"), be("hosts", "foo"));
    // A host with routes does not fall through to the wildcard or any host.
    assert_eq!(lookup(&r, "foo.example.org", "/x"), None);
    assert_eq!(
        file(&r, "maps/wildcard-8080.map"),
        ".example.org *.example.org\n"
    );
}

#[test]
fn http_listeners_on_one_port_share_a_frontend() {
    let a = http_lb(
        "a",
        vec![route(Some("a.example.org"), "/", PathMatch::Prefix, "web")],
    );
    let b = http_lb(
        "b",
        vec![route(Some("b.example.org"), "/", PathMatch::Prefix, "web")],
    );
    let r = render(
        HOST,
        &[&b, &a],
        &slots_for(&[&a, &b], 2),
        &paths(),
        &settings(false),
        true,
    );
    assert_eq!(r.config.matches("frontend http-8080").count(), 1);
    assert!(r.config.contains("  bind 127.0.0.2:8080\n"), "{}", r.config);
    assert_eq!(lookup(&r, "a.example.org", "/"), be("a", "web"));
    assert_eq!(lookup(&r, "b.example.org", "/"), be("b", "web"));
    assert!(r.conflicts.is_empty());

    // The same host and path in two load balancers: the first id wins.
    let c = http_lb(
        "c",
        vec![route(Some("a.example.org"), "/", PathMatch::Prefix, "web")],
    );
    let r = render(
        HOST,
        &[&c, &a],
        &slots_for(&[&a, &c], 2),
        &paths(),
        &settings(false),
        true,
    );
    assert_eq!(lookup(&r, "a.example.org", "/"), be("a", "web"));
    assert_eq!(r.conflicts.len(), 1, "{:?}", r.conflicts);
    assert!(r.conflicts.iter().all(|c| c.lb.as_str() == "c"));
}

#[test]
fn server_slots_and_structure() {
    let a = http_lb("a", vec![route(None, "/", PathMatch::Prefix, "web")]);
    let slots = slots_for(&[&a], 4);
    let full = render(HOST, &[&a], &slots, &paths(), &settings(false), true);
    assert!(full.config.contains("\nbackend be:h:a:web\n  mode http\n  balance roundrobin\n  server s1 10.0.0.1:80\n  server s2 127.0.0.1:1 disabled\n"), "{}", full.config);
    assert_eq!(full.servers.len(), 4);

    let moved = a.clone().with_endpoints(
        &Name::new("web").unwrap(),
        vec![crate::model::Endpoint {
            address: IpAddr::from([10, 0, 0, 9]),
            port: 81,
        }],
    );
    let skel1 = render(HOST, &[&a], &slots, &paths(), &settings(false), false);
    let skel2 = render(
        HOST,
        &[&moved],
        &slots_for(&[&moved], 4),
        &paths(),
        &settings(false),
        false,
    );
    assert_eq!(
        skel1.config, skel2.config,
        "an endpoint change keeps the structure"
    );
    assert!(skel1.config.contains("server s1 \u{1}\n"));
    assert_eq!(fill(&skel1.config, &full.servers), full.config);
}

#[test]
fn tcp_tls_and_stickiness() {
    let lb = LoadBalancer::new(&LoadBalancerSpec {
        id: "db".into(),
        listeners: vec![
            ListenerSpec {
                port: 5432,
                protocol: Protocol::Tcp,
            },
            ListenerSpec {
                port: 8443,
                protocol: Protocol::Https,
            },
        ],
        tcp_routes: vec![TcpRouteSpec {
            port: 5432,
            backend: "pg".into(),
        }],
        http_routes: vec![HttpRouteSpec {
            port: 8443,
            host: Some("www.example.org".into()),
            backend: "pg".into(),
            ..Default::default()
        }],
        backends: vec![BackendSpec {
            stickiness: StickinessSpec::Cookie { name: "SRV".into() },
            ..backend("pg")
        }],
        certificates: vec![
            CertificateSpec {
                name: "net".into(),
                chain_pem: NET_CRT.into(),
                key_pem: NET_KEY.into(),
                hosts: vec!["*.example.net".into()],
                default: false,
            },
            CertificateSpec {
                name: "org".into(),
                chain_pem: ORG_CRT.into(),
                key_pem: ORG_KEY.into(),
                hosts: vec!["www.example.org".into()],
                default: true,
            },
        ],
        scale: 1,
        ..Default::default()
    })
    .unwrap();
    let r = render(
        HOST,
        &[&lb],
        &slots_for(&[&lb], 1),
        &paths(),
        &settings(false),
        true,
    );
    assert!(
        r.config.contains(
            "frontend tcp-5432\n  mode tcp\n  bind 127.0.0.2:5432\n  default_backend be:t:db:pg\n"
        ),
        "{}",
        r.config
    );
    assert!(r.config.contains("backend be:t:db:pg\n  mode tcp\n"));
    assert!(
        !r.config
            .contains("backend be:t:db:pg\n  mode tcp\n  balance roundrobin\n  cookie")
    );
    assert!(r.config.contains("backend be:h:db:pg\n  mode http\n  balance roundrobin\n  cookie SRV insert indirect nocache\n  server s1 10.0.0.1:80 cookie s1\n"));
    assert!(
        r.config
            .contains("bind 127.0.0.2:8443 ssl crt-list /run/lb/gen-1/certs/crt-list-8443.txt\n")
    );
    assert_eq!(
        file(&r, "certs/crt-list-8443.txt"),
        "/run/lb/gen-1/certs/db:org.pem\n\
         /run/lb/gen-1/certs/db:org.pem www.example.org\n\
         /run/lb/gen-1/certs/db:net.pem *.example.net\n"
    );
    let pem = r
        .files
        .iter()
        .find(|f| f.path == "certs/db:org.pem")
        .unwrap();
    assert!(pem.private);
    assert!(pem.contents.contains("PRIVATE KEY"));
    assert!(!r.config.contains("PRIVATE"));
}

#[test]
fn snippets_are_rendered_only_when_enabled() {
    let lb = LoadBalancer::new(&LoadBalancerSpec {
        snippet: Some("timeout server 7s".into()),
        ..LoadBalancerSpec {
            id: "s".into(),
            listeners: vec![ListenerSpec {
                port: 8080,
                protocol: Protocol::Http,
            }],
            http_routes: vec![route(None, "/", PathMatch::Prefix, "web")],
            backends: vec![backend("web")],
            scale: 1,
            ..Default::default()
        }
    })
    .unwrap();
    let off = render(
        HOST,
        &[&lb],
        &slots_for(&[&lb], 1),
        &paths(),
        &settings(false),
        true,
    );
    assert!(!off.config.contains("timeout server 7s"));
    let on = render(
        HOST,
        &[&lb],
        &slots_for(&[&lb], 1),
        &paths(),
        &settings(true),
        true,
    );
    assert!(on.config.contains("  timeout server 7s\n"));
}

#[test]
fn ipv6_endpoints_are_bracketed() {
    let lb = LoadBalancer::new(&LoadBalancerSpec {
        id: "v6".into(),
        listeners: vec![ListenerSpec {
            port: 8080,
            protocol: Protocol::Http,
        }],
        http_routes: vec![route(None, "/", PathMatch::Prefix, "web")],
        backends: vec![BackendSpec {
            endpoints: vec![EndpointSpec {
                address: "fd00::1".into(),
                port: 80,
            }],
            ..backend("web")
        }],
        scale: 1,
        ..Default::default()
    })
    .unwrap();
    let r = render(
        HOST,
        &[&lb],
        &slots_for(&[&lb], 1),
        &paths(),
        &settings(false),
        true,
    );
    assert!(
        r.config.contains("server s1 [fd00::1]:80\n"),
        "{}",
        r.config
    );
}

#[test]
fn a_host_without_a_matching_path_gets_its_load_balancers_default_backend() {
    use PathMatch::{Exact, Prefix};
    let with_default = |id: &str, routes: Vec<HttpRouteSpec>, default: &str| {
        let mut names: Vec<String> = routes.iter().map(|r| r.backend.clone()).collect();
        names.push(default.to_owned());
        names.sort();
        names.dedup();
        LoadBalancer::new(&LoadBalancerSpec {
            id: id.into(),
            listeners: vec![ListenerSpec {
                port: 8080,
                protocol: Protocol::Http,
            }],
            http_routes: routes,
            default_backend: Some(default.into()),
            backends: names.iter().map(|n| backend(n)).collect(),
            scale: 1,
            ..Default::default()
        })
        .unwrap()
    };
    let a = with_default(
        "a",
        vec![
            route(Some("b-dflt"), "/aaa", Prefix, "aaa"),
            route(Some("*.example.org"), "/x", Exact, "wild"),
            route(None, "/only", Prefix, "any"),
        ],
        "dflt",
    );
    // Another load balancer on the port, without a default backend.
    let b = http_lb("b", vec![route(Some("o.example.org"), "/p", Prefix, "p")]);
    let lbs = [&a, &b];
    let r = render(
        HOST,
        &lbs,
        &slots_for(&lbs, 1),
        &paths(),
        &settings(false),
        true,
    );
    let cases: &[(&str, &str, Option<String>)] = &[
        // The host's own paths win, then its load balancer's default backend.
        ("b-dflt", "/aaa/x", be("a", "aaa")),
        ("b-dflt", "/ccc", be("a", "dflt")),
        ("B-DFLT:8080", "/", be("a", "dflt")),
        // Not a route without a host: the host is strict.
        ("b-dflt", "/only", be("a", "dflt")),
        ("w.example.org", "/x", be("a", "wild")),
        ("w.example.org", "/y", be("a", "dflt")),
        // Other hosts: the routes without a host, then the default backend.
        ("unknown.example.net", "/only/1", be("a", "any")),
        ("unknown.example.net", "/zzz", be("a", "dflt")),
        // A host of a load balancer without a default backend: 404.
        ("o.example.org", "/p", be("b", "p")),
        ("o.example.org", "/q", None),
    ];
    for (host, path, want) in cases {
        assert_eq!(&lookup(&r, host, path), want, "{host}{path}");
    }
    assert!(r.conflicts.is_empty(), "{:?}", r.conflicts);
    assert!(r.config.contains("\nbackend be:h:a:dflt\n"), "{}", r.config);
    assert_eq!(
        file(&r, "maps/default-8080.map"),
        "* be:h:a:dflt\n*.example.org be:h:a:dflt\nb-dflt be:h:a:dflt\n"
    );

    // A later load balancer with its own default for the same host and for
    // other hosts loses both, and is told.
    let c = with_default(
        "c",
        vec![route(Some("b-dflt"), "/ccc/d", Prefix, "d")],
        "other",
    );
    let lbs = [&a, &b, &c];
    let r = render(
        HOST,
        &lbs,
        &slots_for(&lbs, 1),
        &paths(),
        &settings(false),
        true,
    );
    assert_eq!(lookup(&r, "b-dflt", "/ccc/d"), be("c", "d"));
    assert_eq!(lookup(&r, "b-dflt", "/ccc"), be("a", "dflt"));
    let messages: Vec<&str> = r.conflicts.iter().map(|c| c.message.as_str()).collect();
    assert_eq!(
        messages,
        [
            "default backend other for other hosts on port 8080 is shadowed by be:h:a:dflt",
            "default backend other for host b-dflt on port 8080 is shadowed by be:h:a:dflt",
        ]
    );
    assert!(r.conflicts.iter().all(|c| c.lb.as_str() == "c"));
}
