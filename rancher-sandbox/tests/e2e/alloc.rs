//! Service ClusterIP and NodePort allocation.

use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;

fn svc(name: &str, spec: serde_json::Value) -> Service {
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": spec})).unwrap()
}

fn status_code(e: kube::Error) -> u16 {
    match e {
        kube::Error::Api(s) => s.code,
        other => panic!("expected an API error, got {other:?}"),
    }
}

#[tokio::test]
async fn cluster_ips_come_from_the_service_cidr() {
    super::install_provider();
    let sb = rancher_sandbox::Sandbox::builder()
        .service_cidr("10.96.0.0/24")
        .start()
        .await
        .unwrap();
    let api: Api<Service> = Api::namespaced(sb.client(), "default");
    let pp = PostParams::default();
    let kubernetes = api.get("kubernetes").await.unwrap();
    assert_eq!(
        kubernetes.spec.unwrap().cluster_ip.as_deref(),
        Some("10.96.0.1")
    );

    let a = api
        .create(&pp, &svc("a", json!({"ports": [{"port": 80}]})))
        .await
        .unwrap()
        .spec
        .unwrap();
    let ip = a.cluster_ip.unwrap();
    assert!(ip.starts_with("10.96.0.") && ip != "10.96.0.1", "{ip}");
    assert_eq!(a.cluster_ips.unwrap(), std::slice::from_ref(&ip));
    assert_eq!(a.type_.as_deref(), Some("ClusterIP"));
    assert_eq!(a.ports.unwrap()[0].protocol.as_deref(), Some("TCP"));

    let headless = api
        .create(
            &pp,
            &svc("h", json!({"clusterIP": "None", "selector": {"app": "h"}})),
        )
        .await
        .unwrap()
        .spec
        .unwrap();
    assert_eq!(headless.cluster_ip.as_deref(), Some("None"));

    // A requested address is honoured once; a taken or out-of-range one is Invalid.
    let dns = api
        .create(
            &pp,
            &svc(
                "dns",
                json!({"clusterIP": "10.96.0.10", "ports": [{"port": 53, "protocol": "UDP"}]}),
            ),
        )
        .await
        .unwrap();
    assert_eq!(dns.spec.unwrap().cluster_ip.as_deref(), Some("10.96.0.10"));
    assert_eq!(
        status_code(
            api.create(
                &pp,
                &svc(
                    "dns2",
                    json!({"clusterIP": "10.96.0.10", "ports": [{"port": 53}]})
                )
            )
            .await
            .unwrap_err()
        ),
        422
    );
    assert_eq!(
        status_code(
            api.create(
                &pp,
                &svc(
                    "far",
                    json!({"clusterIP": "10.97.0.10", "ports": [{"port": 53}]})
                )
            )
            .await
            .unwrap_err()
        ),
        422
    );

    // The address is immutable, kept when an update omits it, and released on delete.
    let mut replaced = api.get("dns").await.unwrap();
    replaced.spec.as_mut().unwrap().cluster_ip = None;
    replaced.spec.as_mut().unwrap().cluster_ips = None;
    let kept = api.replace("dns", &pp, &replaced).await.unwrap();
    assert_eq!(kept.spec.unwrap().cluster_ip.as_deref(), Some("10.96.0.10"));
    let change = api
        .patch(
            "dns",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"spec": {"clusterIP": "10.96.0.11", "clusterIPs": ["10.96.0.11"]}}),
            ),
        )
        .await;
    assert_eq!(status_code(change.unwrap_err()), 422);
    api.delete("dns", &DeleteParams::default()).await.unwrap();
    api.create(
        &pp,
        &svc(
            "dns2",
            json!({"clusterIP": "10.96.0.10", "ports": [{"port": 53}]}),
        ),
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn node_ports_for_node_port_and_load_balancer_services() {
    let sb = super::sandbox().await;
    let api: Api<Service> = Api::namespaced(sb.client(), "default");
    let pp = PostParams::default();
    let np = api.create(&pp, &svc("np", json!({"type": "NodePort", "ports": [{"name": "a", "port": 80}, {"name": "b", "port": 443}]}))).await.unwrap();
    let ports: Vec<i32> = np
        .spec
        .unwrap()
        .ports
        .unwrap()
        .iter()
        .map(|p| p.node_port.unwrap())
        .collect();
    assert!(
        ports.iter().all(|p| (30000..=32767).contains(p)),
        "{ports:?}"
    );
    assert_ne!(ports[0], ports[1]);

    let lb = api
        .create(
            &pp,
            &svc(
                "lb",
                json!({"type": "LoadBalancer", "ports": [{"port": 80}]}),
            ),
        )
        .await
        .unwrap()
        .spec
        .unwrap();
    assert!(lb.ports.unwrap()[0].node_port.is_some());
    assert_eq!(lb.allocate_load_balancer_node_ports, Some(true));
    let lb2 = api.create(&pp, &svc("lb2", json!({"type": "LoadBalancer", "allocateLoadBalancerNodePorts": false, "ports": [{"port": 80}]}))).await.unwrap();
    assert!(lb2.spec.unwrap().ports.unwrap()[0].node_port.is_none());

    // A requested NodePort that is taken is Invalid; after delete it is free.
    let taken = svc(
        "taken",
        json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": ports[0]}]}),
    );
    assert_eq!(status_code(api.create(&pp, &taken).await.unwrap_err()), 422);
    assert_eq!(
        status_code(
            api.create(
                &pp,
                &svc("cip", json!({"ports": [{"port": 80, "nodePort": 31000}]}))
            )
            .await
            .unwrap_err()
        ),
        422
    );
    api.delete("np", &DeleteParams::default()).await.unwrap();
    let got = api.create(&pp, &taken).await.unwrap();
    assert_eq!(
        got.spec.unwrap().ports.unwrap()[0].node_port,
        Some(ports[0])
    );
}
