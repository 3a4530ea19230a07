//! The controller with the Rancher implementation on the real HAProxy driver, on
//! the sandbox: TCP connections to the Service's status address reach the
//! backend, and port, scale, node and deletion changes behave as specified.
//!
//! Hosts are loopback addresses 127.0.93.1-2; "nodes" are 127.0.93.11-12, each
//! running an echo server on the Service's node ports in place of kube-proxy.

use std::{net::IpAddr, sync::Arc, time::Duration};

use k8s_openapi::api::core::v1::{Node, Service};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, Patch, PatchParams},
};
use rancher_cloudprovider::{
    controller::Config,
    rancher::{RancherCloud, RancherLoadBalancer, SCALE_ANNOTATION},
};
use rancher_lb::{
    haproxy::{HaproxyConfig, HaproxyDriver},
    placement::Host,
};
use serde_json::json;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

use crate::support::{Running, mk_service, status_ips, wait_for};

const HOSTS: [&str; 2] = ["127.0.93.1", "127.0.93.2"];
const NODES: [(&str, &str); 2] = [("node-a", "127.0.93.11"), ("node-b", "127.0.93.12")];

/// An echo server answering `<node> <line>` on `ip:port`.
async fn echo(node: &'static str, ip: &str, port: u16) -> JoinHandle<()> {
    let listener = TcpListener::bind((ip.parse::<IpAddr>().unwrap(), port))
        .await
        .expect("echo listener binds");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut line = String::new();
                if BufReader::new(read).read_line(&mut line).await.is_ok() {
                    let _ = write.write_all(format!("{node} {line}").as_bytes()).await;
                }
            });
        }
    })
}

/// Sends one line to `ip:port`; the answer, or `None` when nothing answers.
async fn ask(ip: &str, port: u16) -> Option<String> {
    let attempt = async {
        let mut stream = TcpStream::connect((ip, port)).await.ok()?;
        stream.write_all(b"hello\n").await.ok()?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line).await.ok()?;
        (!line.is_empty()).then(|| line.trim_end().to_owned())
    };
    tokio::time::timeout(Duration::from_secs(2), attempt)
        .await
        .ok()
        .flatten()
}

fn node_ports(service: &Service) -> Vec<u16> {
    service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|p| p.node_port.and_then(|n| u16::try_from(n).ok()))
        .collect()
}

#[tokio::test]
async fn load_balancer_services_on_real_haproxy() {
    if !std::path::Path::new("/usr/sbin/haproxy").exists()
        && std::process::Command::new("haproxy")
            .arg("-v")
            .output()
            .is_err()
    {
        panic!("haproxy is required (apt-get install haproxy)");
    }
    let work = tempfile::tempdir().unwrap();
    let hosts: Vec<IpAddr> = HOSTS.iter().map(|h| h.parse().unwrap()).collect();
    let driver = Arc::new(
        HaproxyDriver::new(HaproxyConfig::new(
            work.path().join("haproxy"),
            hosts.iter().copied().map(Host::new).collect(),
        ))
        .await
        .expect("haproxy driver"),
    );
    let lb = RancherLoadBalancer::new(driver.clone())
        .with_hosts(hosts.clone())
        .with_settle_delay(Duration::from_millis(200));
    let running = Running::start(Arc::new(RancherCloud::new(lb)), Config::default()).await;
    for (name, ip) in NODES {
        running.create_node(name, ip).await;
    }
    let services = running.services("default");

    // Two ports, one instance: the status names the host, and both ports reach
    // the backend through the node ports.
    let created = running
        .create_service(mk_service(
            "default",
            "echo",
            &[("tcp", 18081), ("alt", 18082)],
        ))
        .await;
    let mut echoes = Vec::new();
    let mut served = Vec::new();
    for port in node_ports(&created) {
        for (node, ip) in NODES {
            echoes.push(echo(node, ip, port).await);
        }
        served.push(port);
    }
    let svc = wait_for("status", || async {
        let svc = services.get("echo").await.ok()?;
        (!status_ips(&svc).is_empty()).then_some(svc)
    })
    .await;
    let ips = status_ips(&svc);
    assert_eq!(ips.len(), 1, "scale 1: {ips:?}");
    assert!(HOSTS.contains(&ips[0].as_str()), "{ips:?}");
    let addr = ips[0].clone();
    for port in [18081, 18082] {
        let answer = wait_for("traffic through haproxy", || ask(&addr, port)).await;
        assert!(answer.ends_with(" hello"), "{answer}");
        assert!(answer.starts_with("node-"), "{answer}");
    }

    // A port change moves the listener.
    services
        .patch(
            "echo",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"ports": [
                {"name": "tcp", "port": 18083, "protocol": "TCP"},
                {"name": "alt", "port": 18082, "protocol": "TCP"}
            ]}})),
        )
        .await
        .unwrap();
    for port in node_ports(&services.get("echo").await.unwrap()) {
        if !served.contains(&port) {
            for (node, ip) in NODES {
                echoes.push(echo(node, ip, port).await);
            }
            served.push(port);
        }
    }
    wait_for("new port serves", || ask(&addr, 18083)).await;
    wait_for("old port closed", || async {
        ask(&addr, 18081).await.is_none().then_some(())
    })
    .await;

    // Scale 2: both hosts serve and are in the status.
    services
        .patch(
            "echo",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"annotations": {SCALE_ANNOTATION: "2"}}})),
        )
        .await
        .unwrap();
    let svc = wait_for("two addresses", || async {
        let svc = services.get("echo").await.ok()?;
        (status_ips(&svc).len() == 2).then_some(svc)
    })
    .await;
    for ip in status_ips(&svc) {
        wait_for("each instance serves", || ask(&ip, 18083)).await;
    }

    // A node leaves: every connection lands on the remaining one.
    Api::<Node>::all(running.client.clone())
        .delete("node-b", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("only node-a answers", || async {
        for _ in 0..10 {
            if !ask(&addr, 18083).await?.starts_with("node-a ") {
                return None;
            }
        }
        Some(())
    })
    .await;

    // A protocol HAProxy cannot serve: a Warning naming the field, no listener,
    // and the other Service keeps serving.
    let mut udp = mk_service("default", "dns", &[("dns", 18053)]);
    udp.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].protocol = Some("UDP".into());
    running.create_service(udp).await;
    let warning = wait_for("a warning about the protocol", || async {
        running
            .event_reasons("default", "dns")
            .await
            .into_iter()
            .find(|(kind, e)| kind == "Warning" && e.contains("spec.ports[0].protocol"))
    })
    .await;
    assert!(warning.1.contains("UDP"), "{warning:?}");
    assert!(status_ips(&services.get("dns").await.unwrap()).is_empty());
    assert!(ask(&addr, 18083).await.is_some());

    // An address no host has, and a scale that is not a number: each gets a
    // Warning naming the field, and nothing listens.
    let mut pinned = mk_service("default", "pinned", &[("tcp", 18090)]);
    pinned.spec.as_mut().unwrap().load_balancer_ip = Some("192.0.2.200".into());
    running.create_service(pinned).await;
    let mut scaled = mk_service("default", "scaled", &[("tcp", 18091)]);
    scaled
        .annotations_mut()
        .insert(SCALE_ANNOTATION.into(), "many".into());
    running.create_service(scaled).await;
    for (name, field) in [
        ("pinned", "spec.loadBalancerIP".to_owned()),
        (
            "scaled",
            format!("metadata.annotations[{SCALE_ANNOTATION}]"),
        ),
    ] {
        wait_for("a warning naming the field", || async {
            running
                .event_reasons("default", name)
                .await
                .into_iter()
                .find(|(kind, e)| kind == "Warning" && e.contains(&field))
        })
        .await;
    }
    for (ip, port) in [
        (HOSTS[0], 18090),
        (HOSTS[1], 18090),
        (HOSTS[0], 18091),
        (HOSTS[1], 18091),
    ] {
        assert!(ask(ip, port).await.is_none(), "{ip}:{port} listens");
    }
    assert!(
        ask(&addr, 18083).await.is_some(),
        "the good Service still serves"
    );

    // Deletion: once the Service is gone (finalizer removed), so is the listener.
    services
        .delete("echo", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("service gone", || async {
        services.get_opt("echo").await.ok()?.is_none().then_some(())
    })
    .await;
    for ip in HOSTS {
        assert!(ask(ip, 18083).await.is_none(), "{ip}:18083 still answers");
    }
    let dns = services.get("dns").await.unwrap();
    assert!(
        dns.finalizers()
            .iter()
            .any(|f| f.contains("load-balancer-cleanup"))
    );

    for task in echoes {
        task.abort();
    }
    running.stop().await;
    driver.shutdown().await;
}

/// Echo servers on every node for each of `service`'s node ports.
async fn serve(
    service: &Service,
    nodes: &[(&'static str, &'static str)],
    echoes: &mut Vec<JoinHandle<()>>,
) {
    for port in node_ports(service) {
        for (node, ip) in nodes {
            echoes.push(echo(node, ip, port).await);
        }
    }
}

/// A port free on every address of `ips` right now.
async fn free_port(ips: &[&str]) -> u16 {
    loop {
        let first = TcpListener::bind((ips[0], 0)).await.expect("bind");
        let port = first.local_addr().expect("addr").port();
        let mut free = true;
        for ip in &ips[1..] {
            free &= TcpListener::bind((*ip, port)).await.is_ok();
        }
        if free {
            return port;
        }
    }
}

#[tokio::test]
async fn services_created_together_share_reloads_and_serve_once_their_status_is_written() {
    const BATCH_HOSTS: [&str; 2] = ["127.0.92.1", "127.0.92.2"];
    const BATCH_NODES: [(&str, &str); 2] = [("node-c", "127.0.92.11"), ("node-d", "127.0.92.12")];
    const SERVICES: usize = 24;
    let work = tempfile::tempdir().unwrap();
    let hosts: Vec<IpAddr> = BATCH_HOSTS.iter().map(|h| h.parse().unwrap()).collect();
    let driver = Arc::new(
        HaproxyDriver::new(HaproxyConfig::new(
            work.path().join("haproxy"),
            hosts.iter().copied().map(Host::new).collect(),
        ))
        .await
        .expect("haproxy driver"),
    );
    let lb = RancherLoadBalancer::new(driver.clone()).with_hosts(hosts.clone());
    let running = Running::start(Arc::new(RancherCloud::new(lb)), Config::default()).await;
    for (name, ip) in BATCH_NODES {
        running.create_node(name, ip).await;
    }
    let services = running.services("default");

    // One Service first, so that the processes run; then the others at once.
    let mut ports = Vec::new();
    for _ in 0..SERVICES {
        ports.push(free_port(&BATCH_HOSTS).await);
    }
    let create = |i: usize| {
        let running = &running;
        let port = i32::from(ports[i]);
        async move {
            running
                .create_service(mk_service(
                    "default",
                    &format!("many-{i}"),
                    &[("tcp", port)],
                ))
                .await
        }
    };
    let mut echoes = Vec::new();
    let first = create(0).await;
    serve(&first, &BATCH_NODES, &mut echoes).await;
    wait_for("the first status", || async {
        let svc = services.get("many-0").await.ok()?;
        (!status_ips(&svc).is_empty()).then_some(())
    })
    .await;
    let before = driver.counters().await;
    let created = futures::future::join_all((1..SERVICES).map(create)).await;
    for svc in &created {
        serve(svc, &BATCH_NODES, &mut echoes).await;
    }

    // Each status, as soon as it is seen, names an address that serves.
    let mut seen = std::collections::BTreeSet::from(["many-0".to_owned()]);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while seen.len() < SERVICES {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for every status; seen {seen:?}"
        );
        for svc in services.list(&Default::default()).await.unwrap().items {
            let name = svc.name_any();
            let ips = status_ips(&svc);
            if ips.is_empty() || seen.contains(&name) {
                continue;
            }
            let port = svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port;
            let port = u16::try_from(port).unwrap();
            let answer = ask(&ips[0], port).await;
            assert!(
                answer.as_deref().is_some_and(|a| a.ends_with(" hello")),
                "{name}: status {ips:?} written before {}:{port} served: {answer:?}",
                ips[0]
            );
            seen.insert(name);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Created together, applied together: a few reloads, not one per Service.
    let reloads = driver.counters().await.reloads - before.reloads;
    assert!(
        reloads <= 8,
        "{reloads} reloads for {} Services created at once",
        SERVICES - 1
    );

    for task in echoes {
        task.abort();
    }
    running.stop().await;
    driver.shutdown().await;
}
