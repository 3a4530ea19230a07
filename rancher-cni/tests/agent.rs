//! The agent against the sandbox API server, on the memory dataplane: ranges
//! claimed by many agents at once never collide, nodes added and removed are
//! programmed and unprogrammed.

use std::{
    collections::HashSet,
    sync::Arc,
    time::{Duration, Instant},
};

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{ConfigMap, Node, NodeSpec};
use kube::{
    Api,
    api::{DeleteParams, ObjectMeta, PostParams},
};
use prometheus_client::registry::Registry;
use rancher_cni::{
    agent::{Agent, AgentArgs, PUBLIC_IP_ANNOTATION, VTEP_MAC_ANNOTATION, claim},
    dataplane::Dataplane,
    testing::MemoryDataplane,
};
use rancher_runtime::ready::Readiness;
use tokio_util::sync::CancellationToken;

fn node(name: &str, pod_cidrs: Option<&str>, annotations: &[(&str, &str)]) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.into()),
            annotations: Some(
                annotations
                    .iter()
                    .map(|(k, v)| ((*k).to_string(), (*v).to_string()))
                    .collect(),
            ),
            ..ObjectMeta::default()
        },
        spec: pod_cidrs.map(|c| NodeSpec {
            pod_cidrs: Some(vec![c.into()]),
            ..NodeSpec::default()
        }),
        ..Node::default()
    }
}

async fn until(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_agents_claim_distinct_ranges_at_once() {
    rancher_runtime::install_crypto_provider();
    let sandbox = rancher_sandbox::Sandbox::builder()
        .start()
        .await
        .expect("sandbox");
    let client = sandbox.client();
    let nodes: Api<Node> = Api::all(client.clone());
    // One node has its range from the cluster: nobody may claim it.
    nodes
        .create(
            &PostParams::default(),
            &node("fixed", Some("10.42.0.0/24"), &[]),
        )
        .await
        .expect("node");
    let names: Vec<String> = (0..12).map(|i| format!("node-{i}")).collect();
    for n in &names {
        nodes
            .create(&PostParams::default(), &node(n, None, &[]))
            .await
            .expect("node");
    }
    let cluster: Vec<IpNet> = vec![
        "10.42.0.0/16".parse().unwrap(),
        "fd42::/48".parse().unwrap(),
    ];
    let claims = futures::future::join_all(names.iter().map(|n| {
        let client = client.clone();
        let cluster = cluster.clone();
        async move { claim::claim(&client, n, &cluster, 24, 64).await }
    }))
    .await;
    let mut seen = HashSet::new();
    for (n, c) in names.iter().zip(&claims) {
        let ranges = c.as_ref().unwrap_or_else(|e| panic!("{n}: {e}"));
        assert_eq!(ranges.len(), 2, "one range per family for {n}");
        for r in ranges {
            assert!(seen.insert(*r), "{r} claimed twice");
            assert_ne!(r.to_string(), "10.42.0.0/24");
        }
    }
    // A second claim returns the same ranges.
    let again = claim::claim(&client, "node-3", &cluster, 24, 64)
        .await
        .expect("claim");
    assert_eq!(&again, claims[3].as_ref().expect("claim"));
    let ledger: Api<ConfigMap> = Api::namespaced(client.clone(), claim::LEDGER_NAMESPACE);
    let cm = ledger.get(claim::LEDGER_NAME).await.expect("ledger");
    assert_eq!(cm.data.unwrap_or_default().len(), 24);
    // A departed node's ranges go back.
    let keep: Vec<String> = names[1..].to_vec();
    assert_eq!(
        claim::release_departed(&client, &keep)
            .await
            .expect("release"),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_agent_follows_nodes_coming_and_going() {
    rancher_runtime::install_crypto_provider();
    let sandbox = rancher_sandbox::Sandbox::builder()
        .start()
        .await
        .expect("sandbox");
    let client = sandbox.client();
    let nodes: Api<Node> = Api::all(client.clone());
    nodes
        .create(
            &PostParams::default(),
            &node("me", Some("10.42.5.0/24"), &[]),
        )
        .await
        .expect("node");
    let peer = |name: &str, range: &str, mac: &str, ip: &str| {
        node(
            name,
            Some(range),
            &[(VTEP_MAC_ANNOTATION, mac), (PUBLIC_IP_ANNOTATION, ip)],
        )
    };
    nodes
        .create(
            &PostParams::default(),
            &peer("other", "10.42.6.0/24", "0e:00:0a:fa:00:06", "192.0.2.6"),
        )
        .await
        .expect("node");
    let dp = MemoryDataplane::default();
    let conf_dir = tempfile::tempdir().expect("tempdir");
    let mut args = AgentArgs::new("me");
    args.cni_conf_dir = conf_dir.path().to_path_buf();
    let readiness = Readiness::new();
    let token = CancellationToken::new();
    let agent = Agent::start(
        &args,
        client.clone(),
        Arc::new(dp.clone()),
        &mut Registry::default(),
        &readiness,
        token.clone(),
    )
    .await
    .expect("agent");
    until("ready", || readiness.is_ready()).await;
    assert_eq!(agent.ranges, vec!["10.42.5.0/24".parse::<IpNet>().unwrap()]);
    assert!(conf_dir.path().join("10-rancher-cni.conflist").exists());
    let device = args.device();
    assert_eq!(dp.peers(&device).unwrap().len(), 1);
    // A node without annotations yet is not a peer; once annotated it is.
    nodes
        .create(
            &PostParams::default(),
            &node("late", Some("10.42.7.0/24"), &[]),
        )
        .await
        .expect("node");
    nodes
        .replace("late", &PostParams::default(), &{
            let mut n = nodes.get("late").await.expect("late");
            n.metadata.annotations = Some(
                [
                    (
                        VTEP_MAC_ANNOTATION.to_string(),
                        "0e:00:0a:fa:00:07".to_string(),
                    ),
                    (PUBLIC_IP_ANNOTATION.to_string(), "192.0.2.7".to_string()),
                ]
                .into(),
            );
            n
        })
        .await
        .expect("annotate");
    until("late programmed", || dp.peers(&device).unwrap().len() == 2).await;
    nodes
        .delete("other", &DeleteParams::default())
        .await
        .expect("delete");
    until("other removed", || {
        let peers = dp.peers(&device).unwrap();
        peers.len() == 1 && peers[0].ranges[0].to_string() == "10.42.7.0/24"
    })
    .await;
    // Its own Node carries its MAC and address.
    let me = nodes.get("me").await.expect("me");
    let annotations = me.metadata.annotations.unwrap_or_default();
    assert_eq!(
        annotations.get(PUBLIC_IP_ANNOTATION).map(String::as_str),
        Some("192.0.2.10")
    );
    assert!(annotations.contains_key(VTEP_MAC_ANNOTATION));
    token.cancel();
    agent.stopped().await;
}
