use super::*;
use crate::fixtures::*;

fn sources() -> Sources {
    let mut sources = Sources::new();
    sources.apply_class(rancher_class());
    sources.apply_class(mk_class("nginx", "k8s.io/ingress-nginx", false));
    sources.apply_service(mk_service("default", "nginx-service", &[("http", 80)]));
    sources.apply_slice(mk_slice(
        "default",
        "nginx-service-abc",
        "nginx-service",
        &[("http", 8080)],
        &["10.42.0.5", "10.42.0.6"],
    ));
    sources
}

fn scalelb() -> Ingress {
    annotate(
        mk_ingress(
            "default",
            "scalelb",
            100,
            vec![rule(
                "foo.bar.com",
                vec![path("/foo", "Prefix", svc("nginx-service", 80))],
            )],
        ),
        "scale",
        "2",
    )
}

fn notes(translation: &Translation, namespace: &str, name: &str) -> Vec<FieldError> {
    match &translation.outcomes[&IngressKey::new(namespace, name)] {
        Outcome::Programmed { notes, .. } => notes.clone(),
        other => panic!("{namespace}/{name} not programmed: {other:?}"),
    }
}

fn rejected(translation: &Translation, namespace: &str, name: &str) -> Vec<FieldError> {
    match &translation.outcomes[&IngressKey::new(namespace, name)] {
        Outcome::Rejected(errors) => errors.clone(),
        other => panic!("{namespace}/{name} not rejected: {other:?}"),
    }
}

#[test]
fn the_seed_example_resolves_to_ready_endpoints() {
    let mut sources = sources();
    sources.apply_ingress(scalelb());
    let t = translate(&sources, &Config::default());
    assert_eq!(t.balancers.len(), 1);
    let lb = &t.balancers["ingress-http80-x2"];
    assert_eq!(lb.scale, 2);
    assert_eq!(
        lb.listeners,
        vec![Listener {
            port: 80,
            protocol: Protocol::Http
        }]
    );
    let backend = lb.route("foo.bar.com", "/foo/bar").expect("routed");
    assert_eq!(
        backend.endpoints,
        vec![
            "10.42.0.5:8080".parse().unwrap(),
            "10.42.0.6:8080".parse().unwrap()
        ],
        "service port 80 resolves to the endpoints' target port"
    );
    assert!(lb.route("foo.bar.com", "/foobar").is_none());
    assert!(lb.route("other.example.org", "/foo").is_none());
    assert!(notes(&t, "default", "scalelb").is_empty());
    assert_eq!(
        lb.owners.iter().collect::<Vec<_>>(),
        vec![&IngressKey::new("default", "scalelb")]
    );
}

#[test]
fn ports_by_name_and_multiple_slices() {
    let mut sources = sources();
    sources.apply_service(mk_service(
        "default",
        "web",
        &[("http", 80), ("admin", 9000)],
    ));
    sources.apply_slice(mk_slice(
        "default",
        "web-1",
        "web",
        &[("http", 8080), ("admin", 9090)],
        &["10.42.1.1"],
    ));
    sources.apply_slice(mk_slice(
        "default",
        "web-2",
        "web",
        &[("http", 8080)],
        &["10.42.1.2"],
    ));
    sources.apply_ingress(mk_ingress(
        "default",
        "web",
        1,
        vec![rule(
            "web.example.org",
            vec![
                path("/", "Prefix", svc_named("web", "http")),
                path("/admin", "Exact", svc_named("web", "admin")),
            ],
        )],
    ));
    let t = translate(&sources, &Config::default());
    let lb = &t.balancers["ingress-http80-x1"];
    assert_eq!(
        lb.route("web.example.org", "/x").unwrap().endpoints.len(),
        2
    );
    assert_eq!(
        lb.route("web.example.org", "/admin").unwrap().endpoints,
        vec!["10.42.1.1:9090".parse().unwrap()]
    );
    // A slice going away removes its endpoints.
    sources.delete_slice("default", "web-2");
    let t = translate(&sources, &Config::default());
    assert_eq!(
        t.balancers["ingress-http80-x1"]
            .route("web.example.org", "/x")
            .unwrap()
            .endpoints,
        vec!["10.42.1.1:8080".parse().unwrap()]
    );
}

#[test]
fn missing_services_are_notes_not_rejections() {
    let mut sources = sources();
    sources.apply_ingress(mk_ingress(
        "default",
        "a",
        1,
        vec![rule(
            "a.example.org",
            vec![
                path("/", "Prefix", svc("missing", 80)),
                path("/p", "Prefix", svc("nginx-service", 81)),
            ],
        )],
    ));
    let t = translate(&sources, &Config::default());
    let notes = notes(&t, "default", "a");
    assert_eq!(notes.len(), 2, "{notes:?}");
    assert_eq!(
        notes[0].field,
        "spec.rules[0].http.paths[0].backend.service.name"
    );
    assert_eq!(
        notes[1].field,
        "spec.rules[0].http.paths[1].backend.service.port"
    );
    let lb = &t.balancers["ingress-http80-x1"];
    assert!(
        lb.route("a.example.org", "/").unwrap().endpoints.is_empty(),
        "503, not 404"
    );
}

#[test]
fn ingresses_alike_share_one_load_balancer() {
    let mut sources = sources();
    sources.apply_ingress(mk_ingress(
        "default",
        "a",
        1,
        vec![rule(
            "foo.example.org",
            vec![path("/a", "Prefix", svc("nginx-service", 80))],
        )],
    ));
    sources.apply_ingress(mk_ingress(
        "team",
        "b",
        2,
        vec![rule(
            "foo.example.org",
            vec![path("/b", "Prefix", svc("web", 80))],
        )],
    ));
    let t = translate(&sources, &Config::default());
    assert_eq!(t.balancers.len(), 1);
    let lb = &t.balancers["ingress-http80-x1"];
    assert_eq!(lb.owners.len(), 2);
    assert_eq!(
        lb.route("foo.example.org", "/a").unwrap().namespace,
        "default"
    );
    assert_eq!(lb.route("foo.example.org", "/b").unwrap().namespace, "team");
}

#[test]
fn the_oldest_ingress_wins_a_conflict_and_the_loser_learns_its_name() {
    let mut sources = sources();
    sources.apply_service(mk_service("default", "other", &[("", 80)]));
    let conflicting = |name: &str, created: i64, service: &str| {
        mk_ingress(
            "default",
            name,
            created,
            vec![rule(
                "foo.example.org",
                vec![
                    path("/x", "Prefix", svc(service, 80)),
                    path(&format!("/{name}"), "Prefix", svc(service, 80)),
                ],
            )],
        )
    };
    // "zzz" is older than "aaa": age decides, not the name.
    sources.apply_ingress(conflicting("zzz", 10, "nginx-service"));
    sources.apply_ingress(conflicting("aaa", 20, "other"));
    let t = translate(&sources, &Config::default());
    let lb = &t.balancers["ingress-http80-x1"];
    assert_eq!(
        lb.route("foo.example.org", "/x").unwrap().service,
        "nginx-service"
    );
    assert_eq!(
        lb.route("foo.example.org", "/aaa").unwrap().service,
        "other",
        "the loser keeps its other rules"
    );
    assert!(notes(&t, "default", "zzz").is_empty());
    let lost = notes(&t, "default", "aaa");
    assert_eq!(lost.len(), 1);
    assert_eq!(lost[0].field, "spec.rules[0].http.paths[0]");
    assert!(lost[0].message.contains("default/zzz"), "{}", lost[0]);

    // Same creation time: namespace/name decides.
    let mut sources = self::sources();
    sources.apply_service(mk_service("default", "other", &[("", 80)]));
    sources.apply_ingress(conflicting("bbb", 10, "nginx-service"));
    sources.apply_ingress(conflicting("aaa", 10, "other"));
    let t = translate(&sources, &Config::default());
    assert_eq!(
        t.balancers["ingress-http80-x1"]
            .route("foo.example.org", "/x")
            .unwrap()
            .service,
        "other"
    );
    assert!(
        notes(&t, "default", "bbb")[0]
            .message
            .contains("default/aaa")
    );

    // Exact and Prefix on the same path do not conflict.
    let mut sources = self::sources();
    sources.apply_ingress(mk_ingress(
        "default",
        "p",
        1,
        vec![rule(
            "",
            vec![path("/x", "Prefix", svc("nginx-service", 80))],
        )],
    ));
    sources.apply_ingress(mk_ingress(
        "default",
        "e",
        2,
        vec![rule(
            "",
            vec![path("/x", "Exact", svc("nginx-service", 80))],
        )],
    ));
    let t = translate(&sources, &Config::default());
    assert!(notes(&t, "default", "e").is_empty());
    assert_eq!(t.balancers["ingress-http80-x1"].routes.len(), 2);
}

#[test]
fn other_classes_are_ignored() {
    let mut sources = sources();
    let mut theirs = scalelb();
    theirs.key.name = "theirs".into();
    theirs.class_name = Some("nginx".into());
    sources.apply_ingress(theirs);
    let t = translate(&sources, &Config::default());
    assert!(t.balancers.is_empty());
    assert_eq!(
        t.outcomes[&IngressKey::new("default", "theirs")],
        Outcome::NotOurs
    );
}

#[test]
fn bad_input_is_rejected_by_field_and_others_still_served() {
    let mut sources = sources();
    sources.apply_ingress(mk_ingress(
        "default",
        "good",
        1,
        vec![rule(
            "good.example.org",
            vec![path("/", "Prefix", svc("nginx-service", 80))],
        )],
    ));
    let bad_paths = [
        ("/a b", "Prefix"),
        ("/a\nb", "Prefix"),
        ("/a#b", "Prefix"),
        ("/a\"b", "Exact"),
        ("/a;b", "Prefix"),
        ("/api/(.*)", "ImplementationSpecific"),
    ];
    for (i, (bad, kind)) in bad_paths.iter().enumerate() {
        sources.apply_ingress(mk_ingress(
            "default",
            &format!("bad-path-{i}"),
            2,
            vec![rule(
                "bad.example.org",
                vec![path(bad, kind, svc("nginx-service", 80))],
            )],
        ));
    }
    sources.apply_ingress(mk_ingress(
        "default",
        "bad-host",
        2,
        vec![rule(
            "Bad_Host.example.org",
            vec![path("/", "Prefix", svc("nginx-service", 80))],
        )],
    ));
    sources.apply_ingress(annotate(scalelb(), "scale", "two"));
    let mut negative = annotate(scalelb(), "scale", "-1");
    negative.key.name = "negative".into();
    sources.apply_ingress(negative);
    sources.apply_ingress(mk_ingress(
        "default",
        "cross-ns",
        2,
        vec![rule(
            "x.example.org",
            vec![path("/", "Prefix", svc("web.other-namespace", 80))],
        )],
    ));
    sources.apply_ingress(annotate(
        mk_ingress(
            "default",
            "snippet",
            2,
            vec![rule(
                "s.example.org",
                vec![path("/", "Prefix", svc("nginx-service", 80))],
            )],
        ),
        "config",
        "global\n  lua-load /tmp/x",
    ));
    let t = translate(&sources, &Config::default());

    for i in 0..bad_paths.len() {
        let errors = rejected(&t, "default", &format!("bad-path-{i}"));
        assert_eq!(
            errors[0].field, "spec.rules[0].http.paths[0].path",
            "{errors:?}"
        );
    }
    assert!(
        rejected(&t, "default", &format!("bad-path-{}", bad_paths.len() - 1))[0]
            .message
            .contains("regular expression")
    );
    assert_eq!(
        rejected(&t, "default", "bad-host")[0].field,
        "spec.rules[0].host"
    );
    assert_eq!(
        rejected(&t, "default", "scalelb")[0].field,
        r#"metadata.annotations["scale"]"#
    );
    assert_eq!(
        rejected(&t, "default", "negative")[0].field,
        r#"metadata.annotations["scale"]"#
    );
    let cross = rejected(&t, "default", "cross-ns");
    assert_eq!(
        cross[0].field,
        "spec.rules[0].http.paths[0].backend.service.name"
    );
    assert!(cross[0].message.contains("cross-namespace"));
    assert_eq!(
        rejected(&t, "default", "snippet")[0].field,
        r#"metadata.annotations["config"]"#
    );

    // Nothing of the rejected Ingresses is in any load balancer; the good one is.
    assert_eq!(t.balancers.len(), 1);
    let lb = &t.balancers["ingress-http80-x1"];
    assert_eq!(
        lb.owners
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>(),
        ["default/good"]
    );
    assert_eq!(lb.routes.len(), 1);
}

#[test]
fn external_name_and_resource_backends_are_rejected() {
    let mut sources = sources();
    let mut external = mk_service("default", "ext", &[("", 80)]);
    external.external_name = true;
    sources.apply_service(external);
    sources.apply_ingress(mk_ingress(
        "default",
        "ext",
        1,
        vec![rule("", vec![path("/", "Prefix", svc("ext", 80))])],
    ));
    let mut resource = mk_ingress("default", "res", 1, vec![]);
    resource.default_backend = Some(crate::source::BackendRef::Resource {
        kind: "StorageBucket".into(),
    });
    sources.apply_ingress(resource);
    let t = translate(&sources, &Config::default());
    assert!(
        rejected(&t, "default", "ext")[0]
            .message
            .contains("ExternalName")
    );
    assert_eq!(
        rejected(&t, "default", "res")[0].field,
        "spec.defaultBackend.resource"
    );
}

#[test]
fn default_backend_answers_unmatched_requests() {
    let mut sources = sources();
    let mut ingress = mk_ingress(
        "default",
        "d",
        1,
        vec![rule(
            "foo.example.org",
            vec![path("/foo", "Exact", svc("nginx-service", 80))],
        )],
    );
    ingress.default_backend = Some(svc("nginx-service", 80));
    sources.apply_service(mk_service("default", "fallback", &[("", 80)]));
    let mut newer = mk_ingress("default", "e", 2, vec![]);
    newer.default_backend = Some(svc("fallback", 80));
    sources.apply_ingress(ingress);
    sources.apply_ingress(newer);
    let t = translate(&sources, &Config::default());
    let lb = &t.balancers["ingress-http80-x1"];
    assert_eq!(
        lb.route("anything.example.net", "/zzz").unwrap().service,
        "nginx-service"
    );
    let lost = notes(&t, "default", "e");
    assert_eq!(lost[0].field, "spec.defaultBackend");
    assert!(lost[0].message.contains("default/d"));
}

#[test]
fn the_oldest_default_backend_wins_across_load_balancers() {
    let mut sources = sources();
    sources.apply_service(mk_service("default", "fallback", &[("", 80)]));
    let mut older = mk_ingress("default", "a", 1, vec![]);
    older.default_backend = Some(svc("nginx-service", 80));
    // Another scale: another load balancer, on the same port.
    let mut newer = annotate(mk_ingress("default", "b", 2, vec![]), "scale", "2");
    newer.default_backend = Some(svc("fallback", 80));
    // A rule for any host and `/` is the same catch-all.
    let catch_all = annotate(
        mk_ingress(
            "default",
            "c",
            3,
            vec![rule("", vec![path("/", "Prefix", svc("fallback", 80))])],
        ),
        "scale",
        "3",
    );
    sources.apply_ingress(older);
    sources.apply_ingress(newer);
    sources.apply_ingress(catch_all);
    let t = translate(&sources, &Config::default());
    assert!(t.balancers["ingress-http80-x1"].default_backend.is_some());
    assert_eq!(t.balancers["ingress-http80-x2"].default_backend, None);
    let lost = notes(&t, "default", "b");
    assert_eq!(lost[0].field, "spec.defaultBackend");
    assert!(lost[0].message.contains("default/a"), "{lost:?}");
    let lost = notes(&t, "default", "c");
    assert_eq!(lost.len(), 1, "{lost:?}");
    assert!(lost[0].message.contains("default/a"), "{lost:?}");
    assert!(t.balancers["ingress-http80-x3"].routes.is_empty());

    // The same default backend in two Ingresses is no conflict.
    let mut same = mk_ingress("default", "d", 4, vec![]);
    same.default_backend = Some(svc("nginx-service", 80));
    sources.apply_ingress(same);
    let t = translate(&sources, &Config::default());
    assert!(notes(&t, "default", "d").is_empty());
}

#[test]
fn tls_certificates_by_sni_host() {
    let mut sources = sources();
    sources.apply_secret(mk_tls_secret(
        "default",
        "org",
        EXAMPLE_ORG_CRT,
        EXAMPLE_ORG_KEY,
    ));
    sources.apply_secret(mk_tls_secret(
        "default",
        "net",
        EXAMPLE_NET_CRT,
        EXAMPLE_NET_KEY,
    ));
    let ingress = mk_ingress(
        "default",
        "tls",
        1,
        vec![
            rule(
                "www.example.org",
                vec![path("/", "Prefix", svc("nginx-service", 80))],
            ),
            rule(
                "www.example.net",
                vec![path("/", "Prefix", svc("nginx-service", 80))],
            ),
        ],
    );
    let ingress = with_tls(
        with_tls(ingress, &["www.example.org"], "org"),
        &["www.example.net"],
        "net",
    );
    sources.apply_ingress(ingress);
    let t = translate(&sources, &Config::default());
    let lb = &t.balancers["ingress-http80-https443-x1"];
    assert_eq!(
        lb.listeners,
        vec![
            Listener {
                port: 80,
                protocol: Protocol::Http
            },
            Listener {
                port: 443,
                protocol: Protocol::Https
            }
        ],
        "TLS adds HTTPS and keeps HTTP"
    );
    assert_eq!(
        lb.certificate_for("www.example.org").unwrap().name,
        "default/org"
    );
    assert_eq!(
        lb.certificate_for("www.example.net").unwrap().name,
        "default/net"
    );
    assert_eq!(
        lb.certificate_for("www.example.net").unwrap().chain_pem,
        EXAMPLE_NET_CRT
    );

    // A rotated Secret is followed.
    sources.apply_secret(mk_tls_secret(
        "default",
        "org",
        EXAMPLE_NET_CRT,
        EXAMPLE_NET_KEY,
    ));
    let t = translate(&sources, &Config::default());
    assert_eq!(
        t.balancers["ingress-http80-https443-x1"]
            .certificate_for("www.example.org")
            .unwrap()
            .chain_pem,
        EXAMPLE_NET_CRT
    );
}

#[test]
fn bad_tls_secrets_are_rejected() {
    let mut sources = sources();
    let mut no_key = mk_tls_secret("default", "no-key", EXAMPLE_ORG_CRT, "");
    no_key.key = None;
    sources.apply_secret(no_key);
    sources.apply_secret(mk_tls_secret(
        "default",
        "mismatch",
        EXAMPLE_ORG_CRT,
        EXAMPLE_NET_KEY,
    ));
    let mut opaque = mk_tls_secret("default", "opaque", EXAMPLE_ORG_CRT, EXAMPLE_ORG_KEY);
    opaque.type_ = "Opaque".into();
    sources.apply_secret(opaque);
    for (name, secret, expect) in [
        ("a", "no-key", "tls.key"),
        ("b", "mismatch", "does not match"),
        ("c", "opaque", "Opaque"),
        ("d", "absent", "not found"),
    ] {
        let ingress = mk_ingress(
            "default",
            name,
            1,
            vec![rule(
                &format!("{name}.example.org"),
                vec![path("/", "Prefix", svc("nginx-service", 80))],
            )],
        );
        sources.apply_ingress(with_tls(ingress, &[&format!("{name}.example.org")], secret));
        let t = translate(&sources, &Config::default());
        let errors = rejected(&t, "default", name);
        assert_eq!(errors[0].field, "spec.tls[0].secretName");
        assert!(errors[0].message.contains(expect), "{}", errors[0]);
        sources.delete_ingress(&IngressKey::new("default", name));
    }
}

#[test]
fn annotations_pick_listeners_and_scale_changes_move_the_ingress() {
    let mut sources = sources();
    sources.apply_secret(mk_tls_secret(
        "default",
        "org",
        EXAMPLE_ORG_CRT,
        EXAMPLE_ORG_KEY,
    ));
    let ingress = with_tls(
        annotate(
            annotate(scalelb(), "allow.http", "false"),
            "https.port",
            "8443",
        ),
        &["foo.bar.com"],
        "org",
    );
    sources.apply_ingress(ingress.clone());
    let t = translate(&sources, &Config::default());
    let lb = &t.balancers["ingress-https8443-x2"];
    assert_eq!(
        lb.listeners,
        vec![Listener {
            port: 8443,
            protocol: Protocol::Https
        }]
    );

    sources.apply_ingress(annotate(ingress, "scale", "1"));
    let t = translate(&sources, &Config::default());
    assert_eq!(
        t.balancers.keys().collect::<Vec<_>>(),
        ["ingress-https8443-x1"]
    );
    assert_eq!(t.balancers["ingress-https8443-x1"].scale, 1);
}

#[test]
fn placement_annotations_make_a_separate_load_balancer() {
    let mut sources = sources();
    sources.apply_ingress(scalelb());
    let mut placed = annotate(
        mk_ingress(
            "default",
            "placed",
            2,
            vec![rule(
                "p.example.org",
                vec![path("/", "Prefix", svc("nginx-service", 80))],
            )],
        ),
        "io.rancher.scheduler.affinity.host_label",
        "lb=true",
    );
    placed = annotate(placed, "scale", "2");
    sources.apply_ingress(placed);
    let t = translate(&sources, &Config::default());
    assert_eq!(t.balancers.len(), 2);
    let placed = t
        .balancers
        .values()
        .find(|lb| lb.owners.contains(&IngressKey::new("default", "placed")))
        .unwrap();
    assert_eq!(placed.placement.required["lb"], "true");
    assert!(placed.name.starts_with("ingress-http80-x2-"));
}

#[test]
fn cached_parses_follow_every_change_they_depend_on() {
    let mut sources = sources();
    let web = |path: &str| {
        mk_ingress(
            "default",
            "web",
            1,
            vec![rule("web.example.org", vec![path_rule(path)])],
        )
    };
    fn path_rule(p: &str) -> crate::source::HttpPath {
        path(p, "Prefix", svc("late", 80))
    }
    sources.apply_ingress(web("/a"));
    let t = translate(&sources, &Config::default());
    assert!(
        t.balancers["ingress-http80-x1"]
            .route("web.example.org", "/a")
            .unwrap()
            .endpoints
            .is_empty()
    );
    assert_eq!(notes(&t, "default", "web").len(), 1, "service missing");

    // The Service and its endpoints arrive later.
    sources.apply_service(mk_service("default", "late", &[("", 80)]));
    sources.apply_slice(mk_slice(
        "default",
        "late-1",
        "late",
        &[("", 9000)],
        &["10.42.9.9"],
    ));
    let t = translate(&sources, &Config::default());
    assert_eq!(
        t.balancers["ingress-http80-x1"]
            .route("web.example.org", "/a")
            .unwrap()
            .endpoints,
        vec!["10.42.9.9:9000".parse().unwrap()]
    );
    assert!(notes(&t, "default", "web").is_empty());

    // A status-only change keeps the cached parse; a spec change does not.
    let mut with_status = web("/a");
    with_status.status = vec![crate::model::Address::parse("127.0.0.2")];
    sources.apply_ingress(with_status);
    sources.apply_ingress(web("/b"));
    let t = translate(&sources, &Config::default());
    let lb = &t.balancers["ingress-http80-x1"];
    assert!(lb.route("web.example.org", "/a").is_none());
    assert!(lb.route("web.example.org", "/b").is_some());

    // Other settings re-parse everything.
    let snippets = Config {
        annotations: crate::annotations::Options {
            allow_snippets: true,
        },
        ..Config::default()
    };
    sources.apply_ingress(annotate(web("/b"), "config", "maxconn 10"));
    assert!(matches!(
        translate(&sources, &Config::default()).outcomes[&IngressKey::new("default", "web")],
        Outcome::Rejected(_)
    ));
    assert!(matches!(
        translate(&sources, &snippets).outcomes[&IngressKey::new("default", "web")],
        Outcome::Programmed { .. }
    ));
}

#[test]
fn deleted_services_leave_no_counter_and_cached_parses_see_them_go() {
    let mut sources = sources();
    let web = mk_ingress(
        "default",
        "web",
        1,
        vec![rule(
            "web.example.org",
            vec![path("/", "Prefix", svc("brief", 80))],
        )],
    );
    sources.apply_ingress(web);
    let endpoints = |sources: &Sources| {
        translate(sources, &Config::default()).balancers["ingress-http80-x1"]
            .route("web.example.org", "/")
            .unwrap()
            .endpoints
            .clone()
    };
    assert!(endpoints(&sources).is_empty());
    for round in 0..3 {
        sources.apply_service(mk_service("default", "brief", &[("", 80)]));
        sources.apply_slice(mk_slice(
            "default",
            "brief-1",
            "brief",
            &[("", 9000)],
            &["10.42.1.1"],
        ));
        assert_eq!(endpoints(&sources).len(), 1, "round {round}: served");
        // The slice goes first: the Service is still there, so a change.
        sources.delete_slice("default", "brief-1");
        assert!(endpoints(&sources).is_empty(), "round {round}: slice gone");
        sources.delete_service("default", "brief");
        assert!(
            endpoints(&sources).is_empty(),
            "round {round}: service gone"
        );
    }
    // Short-lived Services and Secrets leave no change counter behind.
    for i in 0..50 {
        let name = format!("gone-{i}");
        sources.apply_service(mk_service("default", &name, &[("", 80)]));
        sources.apply_slice(mk_slice(
            "default",
            &name,
            &name,
            &[("", 9000)],
            &["10.42.1.2"],
        ));
        sources.delete_service("default", &name);
        sources.delete_slice("default", &name);
    }
    let left: Vec<_> = sources
        .versions
        .keys()
        .filter(|dep| matches!(dep, Dep::Service(_, name) if name != "nginx-service"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}
