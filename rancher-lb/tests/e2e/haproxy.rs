//! The HAProxy driver against real HAProxy.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rancher_lb::driver::{ConditionKind, Driver, Error, InstanceState};
use rancher_lb::model::{
    BackendSpec, CertificateSpec, EndpointSpec, HttpRouteSpec, ListenerSpec, LoadBalancer,
    LoadBalancerSpec, PathMatch, Protocol, TcpRouteSpec,
};
use rancher_lb::testing::Conformance;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::support::*;

fn endpoint(addr: SocketAddr) -> EndpointSpec {
    EndpointSpec {
        address: addr.ip().to_string(),
        port: u32::from(addr.port()),
    }
}

fn backend(name: &str, addrs: &[SocketAddr]) -> BackendSpec {
    BackendSpec {
        name: name.into(),
        endpoints: addrs.iter().copied().map(endpoint).collect(),
        ..Default::default()
    }
}

fn route(
    port: u16,
    host: Option<&str>,
    path: &str,
    kind: PathMatch,
    backend: &str,
) -> HttpRouteSpec {
    HttpRouteSpec {
        port: u32::from(port),
        host: host.map(Into::into),
        path: Some(path.into()),
        path_match: kind,
        backend: backend.into(),
    }
}

fn http_listener(port: u16) -> ListenerSpec {
    ListenerSpec {
        port: u32::from(port),
        protocol: Protocol::Http,
    }
}

/// A one-route load balancer: any host, prefix `/`, to `addrs`.
fn simple(id: &str, port: u16, scale: u32, addrs: &[SocketAddr]) -> LoadBalancer {
    LoadBalancer::new(&LoadBalancerSpec {
        id: id.into(),
        listeners: vec![http_listener(port)],
        http_routes: vec![route(port, None, "/", PathMatch::Prefix, "web")],
        backends: vec![backend("web", addrs)],
        scale,
        ..Default::default()
    })
    .unwrap()
}

async fn body(addr: IpAddr, port: u16, host: &str, path: &str) -> (u16, String) {
    let r = get(addr, port, host, path)
        .await
        .unwrap_or_else(|e| panic!("GET http://{addr}:{port}{path} (Host {host}): {e}"));
    (r.status, r.body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_by_host_and_path_with_longest_prefix_and_segment_semantics() {
    let h = Harness::new(1).await;
    let port = free_port().await;
    let (web, api, v2, exact, wild, any) = (
        http_echo("web").await,
        http_echo("api").await,
        http_echo("v2").await,
        http_echo("exact").await,
        http_echo("wild").await,
        http_echo("any").await,
    );
    let lb = LoadBalancer::new(&LoadBalancerSpec {
        id: "routes".into(),
        listeners: vec![http_listener(port)],
        http_routes: vec![
            route(port, Some("www.example.org"), "/", PathMatch::Prefix, "web"),
            route(
                port,
                Some("www.example.org"),
                "/api",
                PathMatch::Prefix,
                "api",
            ),
            route(
                port,
                Some("www.example.org"),
                "/api/v2/",
                PathMatch::Prefix,
                "v2",
            ),
            route(
                port,
                Some("www.example.org"),
                "/foo",
                PathMatch::Exact,
                "exact",
            ),
            route(
                port,
                Some("www.example.org"),
                "/empty",
                PathMatch::Prefix,
                "empty",
            ),
            route(port, Some("*.example.net"), "/", PathMatch::Prefix, "wild"),
            route(port, None, "/only", PathMatch::Prefix, "any"),
        ],
        backends: vec![
            backend("web", &[web.addr]),
            backend("api", &[api.addr]),
            backend("v2", &[v2.addr]),
            backend("exact", &[exact.addr]),
            backend("wild", &[wild.addr]),
            backend("any", &[any.addr]),
            backend("empty", &[]),
        ],
        scale: 1,
        ..Default::default()
    })
    .unwrap();
    let status = h.driver.ensure(&lb).await.unwrap();
    assert_eq!(status.addresses, vec![host(2)]);
    assert!(
        status.condition(ConditionKind::NoEndpoints).is_some(),
        "{status:?}"
    );
    let a = host(2);
    let cases: &[(&str, &str, u16, &str)] = &[
        ("www.example.org", "/", 200, "web /"),
        ("www.example.org", "/index.html", 200, "web /index.html"),
        ("WWW.Example.org:1234", "/api", 200, "api /api"),
        ("www.example.org", "/api/", 200, "api /api/"),
        (
            "www.example.org",
            "/api/users?x=1",
            200,
            "api /api/users?x=1",
        ),
        ("www.example.org", "/apix", 200, "web /apix"),
        ("www.example.org", "/api/v2", 200, "v2 /api/v2"),
        ("www.example.org", "/api/v2/x", 200, "v2 /api/v2/x"),
        ("www.example.org", "/api/v22", 200, "api /api/v22"),
        ("www.example.org", "/foo", 200, "exact /foo"),
        ("www.example.org", "/foo/bar", 200, "web /foo/bar"),
        ("www.example.org", "/empty/x", 503, ""),
        ("a.example.net", "/x", 200, "wild /x"),
        ("a.b.example.net", "/only", 200, "any /only"),
        ("example.net", "/x", 404, ""),
        ("unknown.example.org", "/only/x", 200, "any /only/x"),
        ("unknown.example.org", "/onlyx", 404, ""),
    ];
    for (host_header, path, want_status, want_body) in cases {
        let (status, got) = body(a, port, host_header, path).await;
        assert_eq!(status, *want_status, "{host_header}{path}: {got}");
        if *want_status == 200 {
            assert_eq!(got, format!("{want_body} http"), "{host_header}{path}");
        }
    }
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn route_changes_go_through_the_runtime_api_without_reload() {
    let h = Harness::new(1).await;
    let port = free_port().await;
    let (web, api, extra) = (
        http_echo("web").await,
        http_echo("api").await,
        http_echo("extra").await,
    );
    type Route<'a> = (Option<&'a str>, &'a str, PathMatch, &'a str);
    let lb = |routes: &[Route<'_>], with_extra: bool| {
        let mut backends = vec![backend("web", &[web.addr]), backend("api", &[api.addr])];
        if with_extra {
            backends.push(backend("extra", &[extra.addr]));
        }
        LoadBalancer::new(&LoadBalancerSpec {
            id: "maps".into(),
            listeners: vec![http_listener(port)],
            http_routes: routes
                .iter()
                .map(|(host, path, kind, be)| route(port, *host, path, *kind, be))
                .collect(),
            backends,
            scale: 1,
            ..Default::default()
        })
        .unwrap()
    };
    let a = host(2);
    let www = Some("www.example.org");
    let mut routes: Vec<Route<'_>> = vec![
        (www, "/", PathMatch::Prefix, "web"),
        (www, "/api", PathMatch::Prefix, "api"),
    ];
    h.driver.ensure(&lb(&routes, false)).await.unwrap();
    let before = h.driver.instance_info(a).await.unwrap();
    let counters = h.driver.counters().await;
    let expect = |cases: Vec<(&'static str, &'static str, u16, &'static str)>| async move {
        for (host_header, path, want_status, want_body) in cases {
            let (status, got) = body(a, port, host_header, path).await;
            assert_eq!(status, want_status, "{host_header}{path}: {got}");
            if want_status == 200 {
                assert_eq!(got, format!("{want_body} http"), "{host_header}{path}");
            }
        }
    };
    expect(vec![
        ("www.example.org", "/api/x", 200, "api /api/x"),
        ("www.example.org", "/x", 200, "web /x"),
    ])
    .await;

    // A longer prefix added into the prefix tree: the longest still wins.
    routes.push((www, "/api/v2", PathMatch::Prefix, "web"));
    // A new host, and a path with the stats socket's command separator.
    routes.push((Some("new.example.org"), "/", PathMatch::Prefix, "api"));
    routes.push((www, "/a;b", PathMatch::Exact, "api"));
    h.driver.ensure(&lb(&routes, false)).await.unwrap();
    expect(vec![
        ("www.example.org", "/api/v2/x", 200, "web /api/v2/x"),
        ("www.example.org", "/api/v2", 200, "web /api/v2"),
        ("www.example.org", "/api/v22", 200, "api /api/v22"),
        ("www.example.org", "/api/x", 200, "api /api/x"),
        ("new.example.org", "/x", 200, "api /x"),
        ("www.example.org", "/a;b", 200, "api /a;b"),
        ("www.example.org", "/a", 200, "web /a"),
    ])
    .await;

    // A route moved to the other backend, two removed.
    routes[1].3 = "web";
    routes.retain(|r| r.1 != "/api/v2" && r.0 != Some("new.example.org"));
    h.driver.ensure(&lb(&routes, false)).await.unwrap();
    let after_moves = vec![
        ("www.example.org", "/api/x", 200, "web /api/x"),
        ("www.example.org", "/api/v2/x", 200, "web /api/v2/x"),
        ("new.example.org", "/x", 404, ""),
        ("www.example.org", "/a;b", 200, "api /a;b"),
    ];
    expect(after_moves.clone()).await;

    let after = h.driver.instance_info(a).await.unwrap();
    assert_eq!(after.master_pid, before.master_pid);
    assert_eq!(after.reloads, before.reloads, "no reload for route changes");
    let c = h.driver.counters().await;
    assert_eq!(c.reloads, counters.reloads);
    assert_eq!(c.runtime_updates, counters.runtime_updates + 2);

    // A route to a backend not yet routed to changes the structure: a
    // reload, which reads the map files the runtime changes were written to.
    routes.push((Some("extra.example.org"), "/", PathMatch::Prefix, "extra"));
    h.driver.ensure(&lb(&routes, true)).await.unwrap();
    assert_eq!(h.driver.counters().await.reloads, counters.reloads + 1);
    expect(after_moves).await;
    expect(vec![("extra.example.org", "/y", 200, "extra /y")]).await;

    // The same counts on /metrics.
    let mut registry = prometheus_client::registry::Registry::default();
    h.driver.register_metrics(&mut registry);
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
    for line in [
        "runtime_updates_total 2",
        "reloads_total 1",
        "rejected_configurations_total 0",
        "load_balancers 1",
        "instances_running 1",
    ] {
        assert!(text.lines().any(|l| l == line), "{line:?} in\n{text}");
    }
    h.finish().await;
}

/// Asserts each `(host, path, status, body)`; the body only for 200.
async fn expect_served(addr: IpAddr, port: u16, cases: &[(&str, &str, u16, &str)]) {
    for (host_header, path, want_status, want_body) in cases {
        let (status, got) = body(addr, port, host_header, path).await;
        assert_eq!(status, *want_status, "{host_header}{path}: {got}");
        if *want_status == 200 {
            assert_eq!(got, format!("{want_body} http"), "{host_header}{path}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_whose_paths_do_not_match_gets_the_default_backend_also_after_runtime_changes() {
    let h = Harness::new(1).await;
    let port = free_port().await;
    let (dflt, aaa, other, extra) = (
        http_echo("dflt").await,
        http_echo("aaa").await,
        http_echo("other").await,
        http_echo("extra").await,
    );
    type Route<'a> = (Option<&'a str>, &'a str, PathMatch, &'a str);
    let lb = |routes: &[Route<'_>], default: Option<&str>, with_extra: bool| {
        let mut backends = vec![
            backend("dflt", &[dflt.addr]),
            backend("aaa", &[aaa.addr]),
            backend("other", &[other.addr]),
        ];
        if with_extra {
            backends.push(backend("extra", &[extra.addr]));
        }
        LoadBalancer::new(&LoadBalancerSpec {
            id: "dflt".into(),
            listeners: vec![http_listener(port)],
            http_routes: routes
                .iter()
                .map(|(host, path, kind, be)| route(port, *host, path, *kind, be))
                .collect(),
            default_backend: default.map(Into::into),
            backends,
            scale: 1,
            ..Default::default()
        })
        .unwrap()
    };
    let a = host(2);
    let mut routes: Vec<Route<'_>> = vec![
        (Some("b-dflt"), "/aaa", PathMatch::Prefix, "aaa"),
        (None, "/other", PathMatch::Prefix, "other"),
        // Keeps every backend routed to, so that moving the default between
        // them changes map entries only.
        (Some("keep.example.org"), "/", PathMatch::Prefix, "dflt"),
    ];
    h.driver
        .ensure(&lb(&routes, Some("dflt"), false))
        .await
        .unwrap();
    expect_served(
        a,
        port,
        &[
            // The host's own paths win, then the default backend.
            ("b-dflt", "/aaa/x", 200, "aaa /aaa/x"),
            ("b-dflt", "/ccc", 200, "dflt /ccc"),
            ("B-DFLT:80", "/", 200, "dflt /"),
            // The host is strict: not a route without a host.
            ("b-dflt", "/other", 200, "dflt /other"),
            // Other hosts: the routes without a host, then the default.
            ("x.example.org", "/other/1", 200, "other /other/1"),
            ("x.example.org", "/zzz", 200, "dflt /zzz"),
        ],
    )
    .await;
    let counters = h.driver.counters().await;
    let before = h.driver.instance_info(a).await.unwrap();

    // A new host with a path: its path, host and default entries go in
    // through the runtime API.
    routes.push((Some("new.example.org"), "/n", PathMatch::Prefix, "other"));
    h.driver
        .ensure(&lb(&routes, Some("dflt"), false))
        .await
        .unwrap();
    expect_served(
        a,
        port,
        &[
            ("new.example.org", "/n/1", 200, "other /n/1"),
            ("new.example.org", "/q", 200, "dflt /q"),
        ],
    )
    .await;

    // The default moved to another backend already routed to.
    h.driver
        .ensure(&lb(&routes, Some("aaa"), false))
        .await
        .unwrap();
    expect_served(
        a,
        port,
        &[
            ("b-dflt", "/ccc", 200, "aaa /ccc"),
            ("new.example.org", "/q", 200, "aaa /q"),
            ("x.example.org", "/zzz", 200, "aaa /zzz"),
            ("x.example.org", "/other", 200, "other /other"),
        ],
    )
    .await;

    // No default backend: 404 where no route matches.
    h.driver.ensure(&lb(&routes, None, false)).await.unwrap();
    expect_served(
        a,
        port,
        &[
            ("b-dflt", "/ccc", 404, ""),
            ("b-dflt", "/aaa", 200, "aaa /aaa"),
            ("x.example.org", "/zzz", 404, ""),
            ("new.example.org", "/q", 404, ""),
        ],
    )
    .await;

    // Back to the first default, and a host removed.
    routes.retain(|r| r.0 != Some("new.example.org"));
    h.driver
        .ensure(&lb(&routes, Some("dflt"), false))
        .await
        .unwrap();
    let back = [
        ("b-dflt", "/ccc", 200, "dflt /ccc"),
        ("new.example.org", "/n", 200, "dflt /n"),
        ("x.example.org", "/other", 200, "other /other"),
    ];
    expect_served(a, port, &back).await;

    let after = h.driver.instance_info(a).await.unwrap();
    assert_eq!(after.master_pid, before.master_pid);
    assert_eq!(after.reloads, before.reloads, "no reload for these changes");
    let c = h.driver.counters().await;
    assert_eq!(c.reloads, counters.reloads);
    assert_eq!(c.runtime_updates, counters.runtime_updates + 4);

    // A new backend changes the structure: the reload reads the map files
    // the runtime changes were written to.
    routes.push((Some("extra.example.org"), "/", PathMatch::Prefix, "extra"));
    h.driver
        .ensure(&lb(&routes, Some("dflt"), true))
        .await
        .unwrap();
    assert_eq!(h.driver.counters().await.reloads, counters.reloads + 1);
    expect_served(a, port, &back).await;
    expect_served(a, port, &[("extra.example.org", "/e", 200, "extra /e")]).await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_ensures_share_reloads_and_a_bad_one_fails_alone() {
    let h = Harness::with(1, |c| c.with_snippets(true)).await;
    let web = http_echo("web").await;
    let lb = |id: String, port: u16, snippet: Option<&str>| {
        LoadBalancer::new(&LoadBalancerSpec {
            id: id.clone(),
            listeners: vec![http_listener(port)],
            http_routes: vec![route(
                port,
                Some(&format!("{id}.example.org")),
                "/",
                PathMatch::Prefix,
                "web",
            )],
            backends: vec![backend("web", &[web.addr])],
            snippet: snippet.map(Into::into),
            scale: 1,
            ..Default::default()
        })
        .unwrap()
    };
    let first_port = free_port().await;
    h.driver
        .ensure(&lb("first".into(), first_port, None))
        .await
        .unwrap();
    let before = h.driver.counters().await;

    // Twelve load balancers at once, each on its own port: applied together.
    let mut ports = Vec::new();
    for _ in 0..12 {
        ports.push(free_port().await);
    }
    let calls: Vec<_> = ports
        .iter()
        .enumerate()
        .map(|(i, port)| {
            let (driver, lb) = (h.driver.clone(), lb(format!("c{i}"), *port, None));
            tokio::spawn(async move { driver.ensure(&lb).await })
        })
        .collect();
    for call in calls {
        let status = call.await.unwrap().unwrap();
        assert_eq!(status.addresses, vec![host(2)]);
    }
    let reloads = h.driver.counters().await.reloads - before.reloads;
    assert!(reloads <= 4, "{reloads} reloads for 12 concurrent ensures");
    for (i, port) in ports.iter().enumerate() {
        let name = format!("c{i}.example.org");
        assert_eq!(body(host(2), *port, &name, "/x").await.1, "web /x http");
    }

    // One that does not check among good ones: only it fails.
    let mut calls = Vec::new();
    let mut good = Vec::new();
    for i in 0..4 {
        let port = free_port().await;
        good.push(port);
        let (driver, lb) = (h.driver.clone(), lb(format!("g{i}"), port, None));
        calls.push(tokio::spawn(async move { driver.ensure(&lb).await }));
    }
    let bad = lb(
        "bad".into(),
        free_port().await,
        Some("no-such-keyword at all"),
    );
    let driver = h.driver.clone();
    let bad_call = tokio::spawn(async move { driver.ensure(&bad).await });
    for call in calls {
        call.await.unwrap().unwrap();
    }
    match bad_call.await.unwrap() {
        Err(Error::Rejected { lb, .. }) => assert_eq!(lb.as_str(), "bad"),
        other => panic!("the bad load balancer was not rejected: {other:?}"),
    }
    for (i, port) in good.iter().enumerate() {
        let name = format!("g{i}.example.org");
        assert_eq!(body(host(2), *port, &name, "/y").await.1, "web /y http");
    }
    assert_eq!(
        body(host(2), first_port, "first.example.org", "/").await.1,
        "web / http"
    );
    h.finish().await;
}

/// Load balancers whose ensures arrive a few milliseconds apart, as a
/// controller's workers send them when many Services are created at once,
/// share one `haproxy -c` and one reload. Without coalescing the first call
/// is applied alone and the rest after it: two reloads or more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ensures_arriving_together_share_one_reload() {
    // A window wide enough that a loaded machine still sees the calls as
    // together; the default is 10 ms.
    let h = Harness::with(1, |c| {
        c.with_coalesce(Duration::from_millis(300), Duration::from_secs(30))
    })
    .await;
    let web = http_echo("web").await;
    let lb = |id: String, port: u16| {
        LoadBalancer::new(&LoadBalancerSpec {
            id: id.clone(),
            listeners: vec![http_listener(port)],
            http_routes: vec![route(
                port,
                Some(&format!("{id}.example.org")),
                "/",
                PathMatch::Prefix,
                "web",
            )],
            backends: vec![backend("web", &[web.addr])],
            scale: 1,
            ..Default::default()
        })
        .unwrap()
    };
    h.driver
        .ensure(&lb("first".into(), free_port().await))
        .await
        .unwrap();
    let before = h.driver.counters().await;

    // Ten new listeners, one call every 5 ms: each changes the structure.
    let mut ports = Vec::new();
    for _ in 0..10 {
        ports.push(free_port().await);
    }
    let mut calls = Vec::new();
    for (i, port) in ports.iter().enumerate() {
        let (driver, lb) = (h.driver.clone(), lb(format!("t{i}"), *port));
        calls.push(tokio::spawn(async move { driver.ensure(&lb).await }));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    for call in calls {
        let status = call.await.unwrap().unwrap();
        assert_eq!(status.addresses, vec![host(2)]);
    }
    let reloads = h.driver.counters().await.reloads - before.reloads;
    assert_eq!(
        reloads, 1,
        "{reloads} reloads for 10 ensures arriving together"
    );
    // Each answered only once its listener serves.
    for (i, port) in ports.iter().enumerate() {
        let name = format!("t{i}.example.org");
        assert_eq!(body(host(2), *port, &name, "/z").await.1, "web /z http");
    }
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exact_and_prefix_segments() {
    let h = Harness::new(1).await;
    let port = free_port().await;
    let (pre, ex) = (http_echo("prefix").await, http_echo("exact").await);
    let lb = LoadBalancer::new(&LoadBalancerSpec {
        id: "segments".into(),
        listeners: vec![http_listener(port)],
        http_routes: vec![
            route(
                port,
                Some("p.example.org"),
                "/foo",
                PathMatch::Prefix,
                "prefix",
            ),
            route(
                port,
                Some("e.example.org"),
                "/foo",
                PathMatch::Exact,
                "exact",
            ),
        ],
        backends: vec![backend("prefix", &[pre.addr]), backend("exact", &[ex.addr])],
        scale: 1,
        ..Default::default()
    })
    .unwrap();
    h.driver.ensure(&lb).await.unwrap();
    let a = host(2);
    for (path, want) in [
        ("/foo", 200),
        ("/foo/", 200),
        ("/foo/bar", 200),
        ("/foobar", 404),
        ("/Foo", 404),
    ] {
        assert_eq!(
            body(a, port, "p.example.org", path).await.0,
            want,
            "prefix {path}"
        );
    }
    for (path, want) in [
        ("/foo", 200),
        ("/foo/", 404),
        ("/foo/bar", 404),
        ("/foobar", 404),
    ] {
        assert_eq!(
            body(a, port, "e.example.org", path).await.0,
            want,
            "exact {path}"
        );
    }
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_with_sni_and_tcp_pass_through() {
    let h = Harness::new(1).await;
    let (tls_port, tcp_port, tls_tcp_port) =
        (free_port().await, free_port().await, free_port().await);
    let (org, net, db, term) = (
        http_echo("org").await,
        http_echo("net").await,
        tcp_echo("db").await,
        tcp_echo("terminated").await,
    );
    let mut spec = LoadBalancerSpec {
        id: "tls".into(),
        listeners: vec![
            ListenerSpec {
                port: u32::from(tls_port),
                protocol: Protocol::Https,
            },
            ListenerSpec {
                port: u32::from(tcp_port),
                protocol: Protocol::Tcp,
            },
            ListenerSpec {
                port: u32::from(tls_tcp_port),
                protocol: Protocol::Tls,
            },
        ],
        http_routes: vec![
            route(
                tls_port,
                Some("www.example.org"),
                "/",
                PathMatch::Prefix,
                "org",
            ),
            route(
                tls_port,
                Some("*.example.net"),
                "/",
                PathMatch::Prefix,
                "net",
            ),
        ],
        tcp_routes: vec![
            TcpRouteSpec {
                port: u32::from(tcp_port),
                backend: "db".into(),
            },
            TcpRouteSpec {
                port: u32::from(tls_tcp_port),
                backend: "terminated".into(),
            },
        ],
        backends: vec![
            backend("org", &[org.addr]),
            backend("net", &[net.addr]),
            backend("db", &[db.addr]),
            backend("terminated", &[term.addr]),
        ],
        certificates: vec![
            CertificateSpec {
                name: "org".into(),
                chain_pem: ORG_CRT.into(),
                key_pem: ORG_KEY.into(),
                hosts: vec!["www.example.org".into()],
                default: true,
            },
            CertificateSpec {
                name: "net".into(),
                chain_pem: NET_CRT.into(),
                key_pem: NET_KEY.into(),
                hosts: vec!["*.example.net".into()],
                default: false,
            },
        ],
        scale: 1,
        ..Default::default()
    };
    let lb = LoadBalancer::new(&spec).unwrap();
    h.driver.ensure(&lb).await.unwrap();
    let a = host(2);

    let (r, leaf) = get_tls(a, tls_port, "www.example.org", "www.example.org", "/x")
        .await
        .unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "org /x https"));
    assert_eq!(
        leaf,
        der_of(ORG_CRT),
        "www.example.org gets the org certificate"
    );

    let (r, leaf) = get_tls(a, tls_port, "shop.example.net", "shop.example.net", "/y")
        .await
        .unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "net /y https"));
    assert_eq!(
        leaf,
        der_of(NET_CRT),
        "SNI shop.example.net gets the net certificate"
    );

    let (_, leaf) = get_tls(a, tls_port, "other.example.com", "other.example.com", "/")
        .await
        .unwrap();
    assert_eq!(
        leaf,
        der_of(ORG_CRT),
        "unknown SNI gets the default certificate"
    );

    // TCP pass-through: the backend greets first, then echoes.
    let s = tokio::net::TcpStream::connect((a, tcp_port)).await.unwrap();
    let mut s = BufReader::new(s);
    let mut line = String::new();
    s.read_line(&mut line).await.unwrap();
    assert_eq!(line, "db\n");
    s.get_mut().write_all(b"ping\n").await.unwrap();
    line.clear();
    s.read_line(&mut line).await.unwrap();
    assert_eq!(line, "ping\n");

    // TLS terminated in front of a TCP backend.
    let (tls, leaf) = tls_connect(a, tls_tcp_port, "www.example.org")
        .await
        .unwrap();
    assert_eq!(leaf, der_of(ORG_CRT));
    let mut tls = BufReader::new(tls);
    line.clear();
    tls.read_line(&mut line).await.unwrap();
    assert_eq!(line, "terminated\n");

    // A rotated certificate (same name and SNI names, new contents) goes
    // through the runtime API: served at once, without a reload.
    let before = h.driver.counters().await;
    spec.certificates[1].chain_pem = ORG_CRT.into();
    spec.certificates[1].key_pem = ORG_KEY.into();
    h.driver
        .ensure(&LoadBalancer::new(&spec).unwrap())
        .await
        .unwrap();
    let (r, leaf) = get_tls(a, tls_port, "shop.example.net", "shop.example.net", "/z")
        .await
        .unwrap();
    assert_eq!((r.status, r.body.as_str()), (200, "net /z https"));
    assert_eq!(leaf, der_of(ORG_CRT), "the rotated certificate is served");
    let after = h.driver.counters().await;
    assert_eq!(after.reloads, before.reloads, "no reload for a rotation");
    assert_eq!(after.runtime_updates, before.runtime_updates + 1);
    // The file a later reload reads holds the new certificate too.
    assert!(h.all_files().contains(ORG_CRT.lines().nth(1).unwrap()));
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_two_serves_on_both_addresses_and_scale_changes_apply() {
    let h = Harness::new(3).await;
    let port = free_port().await;
    let web = http_echo("web").await;
    let lb = simple("scaled", port, 2, &[web.addr]);
    let status = h.driver.ensure(&lb).await.unwrap();
    assert_eq!(status.addresses.len(), 2, "{status:?}");
    for a in &status.addresses {
        assert_eq!(
            body(*a, port, "x.example.org", "/").await,
            (200, "web / http".into())
        );
    }
    let unused: Vec<IpAddr> = h
        .hosts
        .iter()
        .filter(|a| !status.addresses.contains(a))
        .copied()
        .collect();
    assert_eq!(unused.len(), 1);
    assert!(
        get(unused[0], port, "x.example.org", "/").await.is_err(),
        "no instance on {}",
        unused[0]
    );

    let three = h.driver.ensure(&lb.clone().with_scale(3)).await.unwrap();
    assert_eq!(three.addresses, h.hosts);
    assert_eq!(body(unused[0], port, "x.example.org", "/").await.0, 200);

    let one = h.driver.ensure(&lb.clone().with_scale(1)).await.unwrap();
    assert_eq!(one.addresses.len(), 1);
    assert!(
        status.addresses.contains(&one.addresses[0]),
        "scale down keeps an old instance"
    );
    for a in &h.hosts {
        let served = get(*a, port, "x.example.org", "/").await.is_ok();
        assert_eq!(served, *a == one.addresses[0], "{a}");
    }
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoint_changes_go_through_the_runtime_api_without_reload() {
    let h = Harness::new(1).await;
    let port = free_port().await;
    let (one, two) = (http_echo("one").await, http_echo("two").await);
    let lb = simple("endpoints", port, 1, &[one.addr]);
    h.driver.ensure(&lb).await.unwrap();
    let a = host(2);
    assert_eq!(body(a, port, "x.example.org", "/").await.1, "one / http");
    let before = h.driver.instance_info(a).await.unwrap();
    let counters = h.driver.counters().await;

    let moved = simple("endpoints", port, 1, &[two.addr]);
    h.driver.ensure(&moved).await.unwrap();
    assert_eq!(body(a, port, "x.example.org", "/").await.1, "two / http");
    let both = simple("endpoints", port, 1, &[one.addr, two.addr]);
    h.driver.ensure(&both).await.unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..10 {
        seen.insert(body(a, port, "x.example.org", "/").await.1);
    }
    assert_eq!(seen.len(), 2, "round robin over both endpoints: {seen:?}");
    let none = simple("endpoints", port, 1, &[]);
    let status = h.driver.ensure(&none).await.unwrap();
    assert_eq!(body(a, port, "x.example.org", "/").await.0, 503);
    assert!(status.condition(ConditionKind::NoEndpoints).is_some());

    let after = h.driver.instance_info(a).await.unwrap();
    assert_eq!(after.master_pid, before.master_pid);
    assert_eq!(after.worker_pids, before.worker_pids);
    assert_eq!(
        after.reloads, before.reloads,
        "no reload for endpoint changes"
    );
    let c = h.driver.counters().await;
    assert_eq!(c.reloads, counters.reloads);
    assert_eq!(c.runtime_updates, counters.runtime_updates + 3);

    // More endpoints than slots: a reload, and every endpoint serves.
    let many: Vec<_> = echoes(9).await;
    let addrs: Vec<SocketAddr> = many.iter().map(|e| e.addr).collect();
    h.driver
        .ensure(&simple("endpoints", port, 1, &addrs))
        .await
        .unwrap();
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..30 {
        seen.insert(body(a, port, "x.example.org", "/").await.1);
    }
    assert_eq!(seen.len(), 9, "{seen:?}");
    assert_eq!(h.driver.counters().await.reloads, counters.reloads + 1);
    h.finish().await;
}

async fn echoes(n: usize) -> Vec<Echo> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(http_echo(&format!("e{i}")).await);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_instance_comes_back() {
    let h = Harness::new(1).await;
    let port = free_port().await;
    let (web, moved) = (http_echo("web").await, http_echo("moved").await);
    let lb = simple("phoenix", port, 1, &[web.addr]);
    h.driver.ensure(&lb).await.unwrap();
    // An endpoint change through the runtime API must survive the restart.
    h.driver
        .ensure(&simple("phoenix", port, 1, &[moved.addr]))
        .await
        .unwrap();
    let a = host(2);
    let before = h.driver.instance_info(a).await.unwrap();
    assert_eq!(before.reloads, 0);
    let mut updates = h.driver.subscribe();

    let killed = tokio::process::Command::new("kill")
        .arg("-KILL")
        .arg(before.master_pid.to_string())
        .status()
        .await
        .unwrap();
    assert!(killed.success());

    // The status says the instance is down, then running again.
    let mut saw_down = false;
    let status = loop {
        let u = tokio::time::timeout(Duration::from_secs(20), updates.recv())
            .await
            .expect("a status update")
            .unwrap();
        let Some(s) = u.status else { continue };
        if s.condition(ConditionKind::InstanceDown).is_some() {
            saw_down = true;
        } else if saw_down
            && s.instances
                .iter()
                .all(|i| i.state == InstanceState::Running)
        {
            break s;
        }
    };
    assert_eq!(status.addresses, vec![a]);
    let after = h.driver.instance_info(a).await.unwrap();
    assert_ne!(after.master_pid, before.master_pid);
    assert_eq!(after.restarts, 1);
    eventually("the restarted instance to serve", 10, || async {
        get(a, port, "x.example.org", "/")
            .await
            .ok()
            .filter(|r| r.status == 200)
    })
    .await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_rejected_and_the_others_keep_serving() {
    let h = Harness::new(2).await;
    let port = free_port().await;
    let web = http_echo("web").await;
    let good = LoadBalancer::new(&LoadBalancerSpec {
        id: "good".into(),
        listeners: vec![http_listener(port)],
        http_routes: vec![route(
            port,
            Some("good.example.org"),
            "/",
            PathMatch::Prefix,
            "web",
        )],
        backends: vec![backend("web", &[web.addr])],
        scale: 2,
        ..Default::default()
    })
    .unwrap();
    h.driver.ensure(&good).await.unwrap();

    let base = |f: &dyn Fn(&mut LoadBalancerSpec)| {
        let mut s = LoadBalancerSpec {
            id: "bad".into(),
            listeners: vec![http_listener(port)],
            http_routes: vec![route(
                port,
                Some("bad.example.org"),
                "/ok",
                PathMatch::Prefix,
                "web",
            )],
            backends: vec![backend("web", &[web.addr])],
            scale: 2,
            ..Default::default()
        };
        f(&mut s);
        s
    };
    let bad: Vec<(&str, &str, LoadBalancerSpec)> = vec![
        (
            "http_routes[0].path",
            "/with space",
            base(&|s| s.http_routes[0].path = Some("/with space".into())),
        ),
        (
            "http_routes[0].path",
            "/new\nline",
            base(&|s| s.http_routes[0].path = Some("/new\nline".into())),
        ),
        (
            "http_routes[0].path",
            "/hash#x",
            base(&|s| s.http_routes[0].path = Some("/hash#x".into())),
        ),
        (
            "http_routes[0].path",
            "/enc%0a",
            base(&|s| s.http_routes[0].path = Some("/enc%0a".into())),
        ),
        (
            "http_routes[0].path",
            "/q\"uote",
            base(&|s| s.http_routes[0].path = Some("/q\"uote".into())),
        ),
        (
            "http_routes[0].host",
            "under_score.example.org",
            base(&|s| s.http_routes[0].host = Some("under_score.example.org".into())),
        ),
        (
            "http_routes[0].host",
            "trailing.example.org.",
            base(&|s| s.http_routes[0].host = Some("trailing.example.org.".into())),
        ),
        (
            "http_routes[0].host",
            "UPPER.example.org",
            base(&|s| s.http_routes[0].host = Some("UPPER.example.org".into())),
        ),
        (
            "http_routes[0].host",
            "192.0.2.1",
            base(&|s| s.http_routes[0].host = Some("192.0.2.1".into())),
        ),
        (
            "listeners[0].port",
            "70000",
            base(&|s| s.listeners[0].port = 70000),
        ),
        (
            "certificates[0].key_pem",
            "mismatch",
            base(&|s| {
                s.listeners.push(ListenerSpec {
                    port: 1,
                    protocol: Protocol::Https,
                });
                s.certificates.push(CertificateSpec {
                    name: "mismatch".into(),
                    chain_pem: ORG_CRT.into(),
                    key_pem: OTHER_KEY.into(),
                    hosts: vec!["bad.example.org".into()],
                    default: true,
                });
            }),
        ),
    ];
    for (field, needle, spec) in &bad {
        let err = LoadBalancer::new(spec).expect_err(needle);
        assert_eq!(err.field(), *field, "{needle:?}: {err}");
        assert!(
            err.to_string().starts_with("load balancer \"bad\": "),
            "{err}"
        );
    }
    // A snippet is refused by a driver without snippets.
    let snippet =
        LoadBalancer::new(&base(&|s| s.snippet = Some("http-request deny".into()))).unwrap();
    match h.driver.ensure(&snippet).await {
        Err(Error::Rejected { reason, .. }) => assert!(reason.contains("snippets"), "{reason}"),
        other => panic!("snippet accepted: {other:?}"),
    }
    assert!(h.driver.status(snippet.id()).await.unwrap().is_none());

    // A backend without endpoints is accepted, answers 503 and says so.
    let empty = LoadBalancer::new(&base(&|s| s.backends[0].endpoints.clear())).unwrap();
    let status = h.driver.ensure(&empty).await.unwrap();
    assert!(status.condition(ConditionKind::NoEndpoints).is_some());
    for a in &status.addresses {
        assert_eq!(body(*a, port, "bad.example.org", "/ok").await.0, 503);
    }

    let files = h.all_files();
    for (_, needle, _) in &bad {
        if needle.len() > 6 {
            assert!(!files.contains(needle), "{needle:?} reached a file");
        }
    }
    assert!(!files.contains("http-request deny"));
    for a in &h.hosts {
        assert_eq!(
            body(*a, port, "good.example.org", "/").await,
            (200, "web / http".into())
        );
    }
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancers_share_http_ports_and_reloads_do_not_fail_requests() {
    let h = Harness::new(1).await;
    let port = free_port().await;
    let (a_web, b_web) = (http_echo("a").await, http_echo("b").await);
    // Each change routes to a backend of a new name: a structural change,
    // so a reload (route-only changes would go through the runtime API).
    let one = |id: &str, host_name: &str, path: &str, addr| {
        let name = format!("web{}", path.trim_start_matches('/'));
        LoadBalancer::new(&LoadBalancerSpec {
            id: id.into(),
            listeners: vec![http_listener(port)],
            http_routes: vec![route(port, Some(host_name), path, PathMatch::Prefix, &name)],
            backends: vec![backend(&name, &[addr])],
            scale: 1,
            ..Default::default()
        })
        .unwrap()
    };
    h.driver
        .ensure(&one("a", "a.example.org", "/", a_web.addr))
        .await
        .unwrap();
    h.driver
        .ensure(&one("b", "b.example.org", "/", b_web.addr))
        .await
        .unwrap();
    let addr = host(2);
    assert_eq!(body(addr, port, "a.example.org", "/").await.1, "a / http");
    assert_eq!(body(addr, port, "b.example.org", "/").await.1, "b / http");

    // Requests in a loop while b's routes change (each change reloads).
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let client = {
        let stop = stop.clone();
        tokio::spawn(async move {
            let (mut ok, mut failed) = (0u32, Vec::new());
            // Keep-alive connections, 20 requests each: a reload must not
            // close a connection under a request.
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                match get_keepalive(addr, port, "a.example.org", 20).await {
                    Ok(statuses) => {
                        for s in statuses {
                            if s == 200 {
                                ok += 1;
                            } else {
                                failed.push(format!("status {s}"));
                            }
                        }
                    }
                    Err(e) => failed.push(e.to_string()),
                }
            }
            (ok, failed)
        })
    };
    let reloads_before = h.driver.counters().await.reloads;
    for i in 0..10 {
        h.driver
            .ensure(&one("b", "b.example.org", &format!("/v{i}"), b_web.addr))
            .await
            .unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (ok, failed) = client.await.unwrap();
    assert_eq!(h.driver.counters().await.reloads, reloads_before + 10);
    assert!(
        failed.is_empty(),
        "{} failed of {}: {:?}",
        failed.len(),
        ok as usize + failed.len(),
        &failed[..failed.len().min(3)]
    );
    assert!(ok > 0);
    assert_eq!(
        body(addr, port, "b.example.org", "/v9/x").await.1,
        "b /v9/x http"
    );
    h.driver.ensure_deleted(&"b".parse_id()).await.unwrap();
    assert_eq!(body(addr, port, "b.example.org", "/v9/x").await.0, 404);
    h.finish().await;
}

trait ParseId {
    fn parse_id(&self) -> rancher_lb::model::LbId;
}

impl ParseId for str {
    fn parse_id(&self) -> rancher_lb::model::LbId {
        rancher_lb::model::LbId::new(self).unwrap()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_haproxy_driver_passes_the_conformance_battery() {
    let h = Harness::new(3).await;
    let port = free_port().await;
    let web = http_echo("web").await;
    Conformance::new(
        h.driver.clone() as Arc<dyn Driver>,
        h.hosts.clone(),
        port,
        (web.addr.ip(), web.addr.port()),
    )
    .run()
    .await;
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn instances_move_off_a_failed_host() {
    let h = Harness::new(3).await;
    let port = free_port().await;
    let web = http_echo("web").await;
    let lb = simple("mover", port, 2, &[web.addr]);
    let before = h.driver.ensure(&lb).await.unwrap();
    assert_eq!(before.addresses.len(), 2);
    let failed = before.addresses[0];
    let kept = before.addresses[1];
    let old_master = h.driver.instance_info(failed).await.unwrap().master_pid;

    let mut updates = h.driver.subscribe();
    let hosts = h
        .hosts
        .iter()
        .map(|a| rancher_lb::placement::Host {
            healthy: *a != failed,
            ..rancher_lb::placement::Host::new(*a)
        })
        .collect();
    h.driver.set_hosts(hosts).await.unwrap();
    let update = tokio::time::timeout(Duration::from_secs(10), updates.recv())
        .await
        .unwrap()
        .unwrap();
    let after = update.status.unwrap();
    assert_eq!(after.addresses.len(), 2, "{after:?}");
    assert!(!after.addresses.contains(&failed));
    assert!(
        after.addresses.contains(&kept),
        "the healthy instance stays"
    );
    for a in &after.addresses {
        assert_eq!(body(*a, port, "x.example.org", "/").await.0, 200);
    }
    // The failed host's process is gone.
    assert!(h.driver.instance_info(failed).await.is_none());
    eventually("the old haproxy to exit", 10, || async {
        (!alive(old_master)).then_some(())
    })
    .await;
    assert!(get(failed, port, "x.example.org", "/").await.is_err());
    h.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snippets_work_only_when_enabled_and_keys_stay_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let h = Harness::with(1, |c| c.with_snippets(true)).await;
    let port = free_port().await;
    let web = http_echo("web").await;
    let spec = LoadBalancerSpec {
        id: "snippet".into(),
        listeners: vec![
            http_listener(port),
            ListenerSpec {
                port: u32::from(free_port().await),
                protocol: Protocol::Https,
            },
        ],
        http_routes: vec![route(port, None, "/", PathMatch::Prefix, "web")],
        backends: vec![backend("web", &[web.addr])],
        certificates: vec![CertificateSpec {
            name: "org".into(),
            chain_pem: ORG_CRT.into(),
            key_pem: ORG_KEY.into(),
            hosts: vec![],
            default: true,
        }],
        snippet: Some(
            "http-request return status 418 content-type text/plain string teapot".into(),
        ),
        scale: 1,
        ..Default::default()
    };
    h.driver
        .ensure(&LoadBalancer::new(&spec).unwrap())
        .await
        .unwrap();
    assert_eq!(
        body(host(2), port, "x.example.org", "/").await,
        (418, "teapot".into())
    );

    // Keys: mode 0600 in 0700 directories.
    let work = h.dir.path().join("lb");
    assert_eq!(
        std::fs::metadata(&work).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let current = std::fs::canonicalize(h.driver.host_dir(host(2)).join("current")).unwrap();
    let certs = current.join("certs");
    assert_eq!(
        std::fs::metadata(&certs).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let key_file = certs.join("snippet:org.pem");
    assert!(
        std::fs::read_to_string(&key_file)
            .unwrap()
            .contains("PRIVATE KEY")
    );
    assert_eq!(
        std::fs::metadata(&key_file).unwrap().permissions().mode() & 0o777,
        0o600
    );
    h.finish().await;
}
