use super::*;

const ORG_CRT: &str = include_str!("../../tests/data/example-org.crt");
const ORG_KEY: &str = include_str!("../../tests/data/example-org.key");
const OTHER_KEY: &str = include_str!("../../tests/data/other.key");

fn spec() -> LoadBalancerSpec {
    LoadBalancerSpec {
        id: "default.web".into(),
        listeners: vec![ListenerSpec {
            port: 80,
            protocol: Protocol::Http,
        }],
        http_routes: vec![HttpRouteSpec {
            port: 80,
            host: Some("www.example.org".into()),
            path: Some("/api/".into()),
            path_match: PathMatch::Prefix,
            backend: "api".into(),
        }],
        backends: vec![BackendSpec {
            name: "api".into(),
            endpoints: vec![EndpointSpec {
                address: "10.0.0.1".into(),
                port: 8080,
            }],
            ..Default::default()
        }],
        scale: 1,
        ..Default::default()
    }
}

fn invalid_field(spec: &LoadBalancerSpec) -> String {
    match LoadBalancer::new(spec) {
        Ok(_) => panic!("spec was accepted: {spec:?}"),
        Err(e) => {
            let msg = e.to_string();
            assert!(msg.starts_with("load balancer "), "{msg}");
            e.field().to_owned()
        }
    }
}

#[test]
fn accepts_a_plain_load_balancer_and_normalises_prefix_slash() {
    let lb = LoadBalancer::new(&spec()).unwrap();
    assert_eq!(lb.id().as_str(), "default.web");
    assert_eq!(lb.http_routes()[0].path.as_str(), "/api");
    assert_eq!(lb.backends()[0].endpoints[0].to_string(), "10.0.0.1:8080");
}

#[test]
fn bad_paths_are_rejected_naming_the_field() {
    for path in [
        "/with space",
        "/new\nline",
        "/tab\t",
        "/hash#frag",
        "/enc%0a",
        "/enc%0D",
        "/enc%2fslash",
        "/quote\"",
        "/quote'",
        "/back`tick",
        "/brace{",
        "/back\\slash",
        "/dot/../up",
        "/dot/./here",
        "/double//slash",
        "/trailing/..",
        "relative",
        "",
        "/non-ascii-é",
        "/bad%zz",
        "/nul\0",
    ] {
        let mut s = spec();
        s.http_routes[0].path = Some(path.into());
        assert_eq!(invalid_field(&s), "http_routes[0].path", "{path:?}");
        let mut s = spec();
        s.http_routes[0].path = Some(path.into());
        s.http_routes[0].path_match = PathMatch::Exact;
        assert_eq!(invalid_field(&s), "http_routes[0].path", "{path:?}");
    }
}

#[test]
fn rfc3986_paths_are_accepted() {
    for path in [
        "/",
        "/a-b_c.d~e",
        "/x;y=1,z",
        "/@user:1",
        "/%20space",
        "/(a)*+!$&",
    ] {
        let mut s = spec();
        s.http_routes[0].path = Some(path.into());
        s.http_routes[0].path_match = PathMatch::Exact;
        let lb = LoadBalancer::new(&s).unwrap();
        assert_eq!(lb.http_routes()[0].path.as_str(), path);
    }
}

#[test]
fn bad_hosts_are_rejected_naming_the_field() {
    for host in [
        "under_score.example.org",
        "trailing.example.org.",
        "Upper.example.org",
        "10.0.0.1",
        "::1",
        "[::1]",
        "example.org:80",
        "*",
        "*.",
        "foo.*.example.org",
        "-dash.example.org",
        "space .example.org",
        "new\nline.example.org",
        "a..b",
        &"a".repeat(64),
    ] {
        let mut s = spec();
        s.http_routes[0].host = Some(host.into());
        assert_eq!(invalid_field(&s), "http_routes[0].host", "{host:?}");
    }
}

#[test]
fn wildcard_hosts_match_exactly_one_label() {
    let m = HostMatch::new("*.example.org").unwrap();
    assert!(m.matches("bar.example.org"));
    assert!(!m.matches("baz.bar.example.org"));
    assert!(!m.matches("example.org"));
    assert_eq!(m.to_string(), "*.example.org");
}

#[test]
fn prefix_matching_is_element_wise() {
    let p = HttpPath::new("/foo", PathMatch::Prefix).unwrap();
    assert!(p.matches(PathMatch::Prefix, "/foo"));
    assert!(p.matches(PathMatch::Prefix, "/foo/"));
    assert!(p.matches(PathMatch::Prefix, "/foo/bar"));
    assert!(!p.matches(PathMatch::Prefix, "/foobar"));
    assert!(!p.matches(PathMatch::Exact, "/foo/"));
    let slash = HttpPath::new("/aaa/bbb/", PathMatch::Prefix).unwrap();
    assert!(slash.matches(PathMatch::Prefix, "/aaa/bbb"));
    let exact = HttpPath::new("/foo/", PathMatch::Exact).unwrap();
    assert_eq!(exact.as_str(), "/foo/");
}

#[test]
fn ports_outside_the_range_are_rejected() {
    for port in [0, 65536, 70000] {
        let mut s = spec();
        s.listeners[0].port = port;
        assert_eq!(invalid_field(&s), "listeners[0].port");
        let mut s = spec();
        s.backends[0].endpoints[0].port = port;
        assert_eq!(invalid_field(&s), "backends[0].endpoints[0].port");
    }
}

#[test]
fn endpoints_must_be_ip_addresses() {
    let mut s = spec();
    s.backends[0].endpoints[0].address = "pod.example.org".into();
    assert_eq!(invalid_field(&s), "backends[0].endpoints[0].address");
}

#[test]
fn a_backend_without_endpoints_is_valid() {
    let mut s = spec();
    s.backends[0].endpoints.clear();
    let lb = LoadBalancer::new(&s).unwrap();
    assert!(lb.backends()[0].endpoints.is_empty());
}

#[test]
fn references_are_checked() {
    let mut s = spec();
    s.http_routes[0].backend = "missing".into();
    assert_eq!(invalid_field(&s), "http_routes[0].backend");

    let mut s = spec();
    s.http_routes[0].port = 81;
    assert_eq!(invalid_field(&s), "http_routes[0].port");

    let mut s = spec();
    s.listeners.push(ListenerSpec {
        port: 5432,
        protocol: Protocol::Tcp,
    });
    assert_eq!(invalid_field(&s), "listeners[1]");
    s.tcp_routes.push(TcpRouteSpec {
        port: 80,
        backend: "api".into(),
    });
    assert_eq!(invalid_field(&s), "tcp_routes[0].port");
    s.tcp_routes[0].port = 5432;
    LoadBalancer::new(&s).unwrap();

    let mut s = spec();
    s.listeners.push(ListenerSpec {
        port: 80,
        protocol: Protocol::Https,
    });
    assert_eq!(invalid_field(&s), "listeners[1].port");

    let mut s = spec();
    s.backends.push(s.backends[0].clone());
    assert_eq!(invalid_field(&s), "backends[1].name");

    let mut s = spec();
    s.backends.push(BackendSpec {
        name: "other".into(),
        ..Default::default()
    });
    s.http_routes.push(HttpRouteSpec {
        backend: "other".into(),
        ..s.http_routes[0].clone()
    });
    assert_eq!(invalid_field(&s), "http_routes[1].path");

    let mut s = spec();
    s.default_backend = Some("missing".into());
    assert_eq!(invalid_field(&s), "default_backend");
    s.default_backend = Some("api".into());
    assert_eq!(
        LoadBalancer::new(&s)
            .unwrap()
            .default_backend()
            .map(Name::as_str),
        Some("api")
    );
    // Only HTTP listeners have a use for it.
    s.listeners[0].protocol = Protocol::Tcp;
    s.http_routes.clear();
    s.tcp_routes.push(TcpRouteSpec {
        port: 80,
        backend: "api".into(),
    });
    assert_eq!(invalid_field(&s), "default_backend");
}

#[test]
fn names_and_ids_follow_rfc1123() {
    let mut s = spec();
    s.id = "Bad_Id".into();
    assert_eq!(invalid_field(&s), "id");
    let mut s = spec();
    s.backends[0].name = "a b".into();
    assert_eq!(invalid_field(&s), "backends[0].name");
    let mut s = spec();
    s.backends[0].stickiness = StickinessSpec::Cookie { name: "x;y".into() };
    assert_eq!(invalid_field(&s), "backends[0].stickiness.name");
    let mut s = spec();
    s.scale = MAX_SCALE + 1;
    assert_eq!(invalid_field(&s), "scale");
}

fn tls_spec(key: &str) -> LoadBalancerSpec {
    let mut s = spec();
    s.listeners.push(ListenerSpec {
        port: 443,
        protocol: Protocol::Https,
    });
    s.certificates.push(CertificateSpec {
        name: "org".into(),
        chain_pem: ORG_CRT.into(),
        key_pem: key.into(),
        hosts: vec!["www.example.org".into()],
        default: true,
    });
    s
}

#[test]
fn certificates_must_match_their_key() {
    let lb = LoadBalancer::new(&tls_spec(ORG_KEY)).unwrap();
    let pem = lb.certificates()[0].to_combined_pem();
    assert!(pem.starts_with("-----BEGIN CERTIFICATE-----\n"));
    assert!(pem.contains("-----BEGIN PRIVATE KEY-----\n"));
    assert!(!format!("{lb:?}").contains("PRIVATE"));

    let err = LoadBalancer::new(&tls_spec(OTHER_KEY)).unwrap_err();
    assert_eq!(err.field(), "certificates[0].key_pem");
    assert!(err.to_string().contains("does not match"), "{err}");

    let err = LoadBalancer::new(&tls_spec("garbage")).unwrap_err();
    assert_eq!(err.field(), "certificates[0].key_pem");

    let mut s = tls_spec(ORG_KEY);
    s.certificates[0].chain_pem = "nothing".into();
    assert_eq!(invalid_field(&s), "certificates[0].chain_pem");

    let mut s = tls_spec(ORG_KEY);
    s.certificates.clear();
    assert_eq!(invalid_field(&s), "certificates");

    let mut s = tls_spec(ORG_KEY);
    let mut second = s.certificates[0].clone();
    second.name = "org2".into();
    s.certificates.push(second);
    assert_eq!(invalid_field(&s), "certificates");
}

#[test]
fn snippets_cannot_open_sections() {
    let mut s = spec();
    s.snippet = Some("timeout server 5s\nbackend evil".into());
    assert_eq!(invalid_field(&s), "snippet");
    s.snippet = Some("timeout server 5s\n  http-request set-header X-A b".into());
    assert_eq!(
        LoadBalancer::new(&s).unwrap().snippet(),
        s.snippet.as_deref()
    );
}

#[test]
fn error_messages_escape_control_characters() {
    let mut s = spec();
    s.http_routes[0].path = Some("/a\nb".into());
    let msg = LoadBalancer::new(&s).unwrap_err().to_string();
    assert!(!msg.contains('\n'), "{msg}");
    assert!(msg.contains("\\n"), "{msg}");
}

#[test]
fn placement_labels_are_checked() {
    let mut s = spec();
    s.placement
        .required_labels
        .insert("zone".into(), "a b".into());
    assert_eq!(invalid_field(&s), "placement.required_labels[\"zone\"]");
}

#[test]
fn endpoint_only_changes_are_recognised() {
    let lb = LoadBalancer::new(&spec()).unwrap();
    let name = lb.backends()[0].name.clone();
    let moved = lb.clone().with_endpoints(
        &name,
        vec![Endpoint {
            address: "10.0.0.9".parse().unwrap(),
            port: 80,
        }],
    );
    assert!(lb.differs_only_in_endpoints(&moved));
    assert!(!lb.differs_only_in_endpoints(&lb.clone().with_scale(2)));
    let mut other = spec();
    other.http_routes[0].path = Some("/other".into());
    assert!(!lb.differs_only_in_endpoints(&LoadBalancer::new(&other).unwrap()));
    let mut other = spec();
    other.default_backend = Some("api".into());
    assert!(!lb.differs_only_in_endpoints(&LoadBalancer::new(&other).unwrap()));
}
