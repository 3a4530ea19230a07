//! Members discovered from Rancher environments: the fake Rancher serves the
//! environments, each backed by a sandbox cluster behind its Kubernetes proxy;
//! every Kubernetes environment labelled `federation.rancher.io/name: myfed`
//! joins, and leaves when the label (or the environment) goes.

use std::{collections::BTreeMap, sync::Arc};

use k8s_openapi::api::core::v1::Service;
use kube::{Api, ResourceExt, api::ListParams};
use rancher_client::testing::{FakeProject, FakeRancher};
use rancher_federation::{
    crd::FederatedCluster,
    provider::MemoryProvider,
    well_known::{FEDERATION_LABEL, MANAGED_BY_LABEL},
};

use crate::federation::{FED, NS, World, wait_for};

/// The `FederatedCluster`s, by name.
async fn members(world: &World) -> BTreeMap<String, FederatedCluster> {
    Api::<FederatedCluster>::namespaced(world.host.clone(), NS)
        .list(&ListParams::default())
        .await
        .expect("list federated clusters")
        .items
        .into_iter()
        .map(|c| (c.name_any(), c))
        .collect()
}

/// Waits until the members are exactly `names`, each healthy if `healthy`.
async fn wait_members(
    world: &World,
    names: &[&str],
    healthy: bool,
) -> BTreeMap<String, FederatedCluster> {
    let mut want: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    want.sort();
    wait_for(&format!("members {want:?}"), || async {
        let found = members(world).await;
        let ok = found.keys().cloned().collect::<Vec<_>>() == want
            && (!healthy
                || found
                    .values()
                    .all(|c| c.status.as_ref().is_some_and(|s| s.healthy)));
        ok.then_some(found)
    })
    .await
}

async fn service(client: kube::Client, name: &str) -> Option<Service> {
    Api::<Service>::namespaced(client, "default")
        .get_opt(name)
        .await
        .ok()
        .flatten()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn labelled_rancher_environments_join_and_leave() {
    rancher_runtime::install_crypto_provider();
    let fake = FakeRancher::builder().start().await.expect("fake rancher");
    let world = World::start_with(Arc::new(MemoryProvider::new()), Some(fake.client())).await;
    let east = fake
        .add_project(
            FakeProject::new("east")
                .label(FEDERATION_LABEL, FED)
                .kubernetes(world.url(1)),
        )
        .unwrap();
    let west = fake
        .add_project(
            FakeProject::new("prod west")
                .label(FEDERATION_LABEL, FED)
                .kubernetes(world.url(2)),
        )
        .unwrap();
    let other = fake
        .add_project(
            FakeProject::new("other")
                .label(FEDERATION_LABEL, "otherfed")
                .kubernetes(world.url(0)),
        )
        .unwrap();
    fake.add_project(
        FakeProject::new("cattle")
            .orchestration("cattle")
            .label(FEDERATION_LABEL, FED),
    )
    .unwrap();
    let (east_member, west_member) = (format!("rancher-{east}"), format!("rancher-{west}"));

    // The two labelled Kubernetes environments join and are healthy, checked
    // through Rancher's proxy: their nodes' regions and zones come back.
    let found = wait_members(&world, &[&east_member, &west_member], true).await;
    let east_status = found[&east_member].status.clone().unwrap();
    assert_eq!(east_status.region.as_deref(), Some("r1"));
    assert_eq!(east_status.zones, ["r1-b"]);
    let env = found[&west_member].spec.rancher.clone().unwrap();
    assert_eq!(env.project_id, west);
    assert_eq!(env.name.as_deref(), Some("prod west"));
    assert_eq!(found[&west_member].spec.secret_ref, None);
    let joined = world.events_about(NS, &east_member).await;
    assert!(joined.iter().any(|r| r == "Joined"), "{joined:?}");

    // A federated Service reaches both, through the proxy with the key.
    world.federate_in("default", "nginx").await;
    for i in [1, 2] {
        let svc = wait_for("nginx in the environment's cluster", || {
            service(world.member(i), "nginx")
        })
        .await;
        assert_eq!(
            svc.labels().get(MANAGED_BY_LABEL).map(String::as_str),
            Some(FED)
        );
    }
    assert!(
        service(world.member(0), "nginx").await.is_none(),
        "not a member"
    );
    let proxied = format!("/r/projects/{east}/kubernetes:6443/api/v1/namespaces/default/services");
    assert!(
        fake.requests()
            .iter()
            .any(|r| r.method == "POST" && r.path == proxied && r.status == Some(201)),
        "the Service was created through Rancher's proxy"
    );

    // Rancher answers nothing for a while: members stay (unhealthy), not removed.
    let labels = rancher_federation::metrics::FederationLabels {
        federation: FED.into(),
    };
    let rounds = || world.metrics.reconciles.get_or_create(&labels).get();
    fake.fail_next_with(1_000_000, 503);
    let seen = rounds();
    wait_for("two reconciles without rancher", || async {
        (rounds() >= seen + 2).then_some(())
    })
    .await;
    wait_members(&world, &[&east_member, &west_member], false).await;
    fake.clear_faults();
    wait_members(&world, &[&east_member, &west_member], true).await;

    // The label goes from west, comes to other: west leaves, other joins.
    assert!(fake.set_project_labels(&west, BTreeMap::new()));
    let relabelled = BTreeMap::from([(FEDERATION_LABEL.to_owned(), FED.to_owned())]);
    assert!(fake.set_project_labels(&other, relabelled));
    let other_member = format!("rancher-{other}");
    wait_members(&world, &[&east_member, &other_member], true).await;
    wait_for("nginx in other's cluster (the host)", || {
        service(world.member(0), "nginx")
    })
    .await;

    // A removed environment leaves too.
    assert!(fake.remove_project(&east));
    wait_members(&world, &[&other_member], true).await;
    world.stop().await;
}
