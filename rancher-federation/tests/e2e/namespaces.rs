//! Federated Services in namespaces members lack: the federation makes the
//! namespace (labelled as its own), reports a member where it cannot, and
//! removes only the namespaces it made once nothing else is in them.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Service};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ObjectMeta, PostParams},
};
use rancher_federation::{
    crd::FederatedService, provider::MemoryProvider, well_known::MANAGED_BY_LABEL,
};

use crate::{
    federation::{FED, World, wait_for},
    forbid,
};

async fn namespace(client: &kube::Client, name: &str) -> Option<Namespace> {
    Api::<Namespace>::all(client.clone())
        .get_opt(name)
        .await
        .expect("get namespace")
}

async fn create_namespace(client: &kube::Client, name: &str) {
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(name.into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace created");
}

async fn service(client: &kube::Client, ns: &str, name: &str) -> Option<Service> {
    Api::<Service>::namespaced(client.clone(), ns)
        .get_opt(name)
        .await
        .ok()
        .flatten()
}

/// Whether namespace `name` is gone, or going (terminating), in `client`.
async fn gone(client: &kube::Client, name: &str) -> bool {
    namespace(client, name)
        .await
        .is_none_or(|ns| ns.metadata.deletion_timestamp.is_some())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_namespaces_are_made_reported_and_cleaned_up() {
    let provider = Arc::new(MemoryProvider::new());
    let world = World::start(provider).await;
    let (host, one, two) = (world.member(0), world.member(1), world.member(2));
    // The host (also member 0) has both namespaces, made by its users.
    create_namespace(&host, "fedapp").await;
    create_namespace(&host, "shared").await;
    // Member 2's credentials may not create namespaces.
    let refusing = forbid::namespace_creation_refused(world.url(2)).await;
    world.join(0).await;
    world.join(1).await;
    world.join_through(2, &refusing).await;
    world.federate_in("fedapp", "web").await;
    world.federate_in("shared", "api").await;

    // Member 1 gets the namespaces, labelled as the federation's, and the Services.
    for (ns, name) in [("fedapp", "web"), ("shared", "api")] {
        wait_for("the service in member 1", || service(&one, ns, name)).await;
        let made = namespace(&one, ns).await.expect("made in member 1");
        assert_eq!(
            made.labels().get(MANAGED_BY_LABEL).map(String::as_str),
            Some(FED),
            "{ns} is labelled as made by the federation"
        );
        wait_for("the service in member 0", || service(&host, ns, name)).await;
        assert!(
            namespace(&host, ns)
                .await
                .unwrap()
                .labels()
                .get(MANAGED_BY_LABEL)
                .is_none(),
            "the host's own {ns} is not taken over"
        );
    }

    // Member 2 cannot have it: the condition names the member and the namespace.
    let services: Api<FederatedService> = Api::namespaced(world.host.clone(), "fedapp");
    let condition = wait_for("NamespaceCreationFailed", || {
        let services = services.clone();
        async move {
            let status = services.get("web").await.ok()?.status?;
            status
                .conditions
                .into_iter()
                .find(|c| c.type_ == "Propagated" && c.reason == "NamespaceCreationFailed")
        }
    })
    .await;
    assert_eq!(condition.status, "False");
    assert!(
        condition.message.contains("cluster-2") && condition.message.contains("fedapp"),
        "{}",
        condition.message
    );
    assert!(
        condition.message.contains("forbidden"),
        "{}",
        condition.message
    );
    let status = services.get("web").await.unwrap().status.unwrap();
    let two_status = status
        .clusters
        .iter()
        .find(|c| c.cluster == "cluster-2")
        .unwrap();
    assert_eq!(
        two_status.reason.as_deref(),
        Some("NamespaceCreationFailed")
    );
    assert!(namespace(&two, "fedapp").await.is_none());
    let reasons = world.events_about("fedapp", "web").await;
    assert!(
        reasons.iter().any(|r| r == "NamespaceCreationFailed"),
        "{reasons:?}"
    );

    // A user puts something of their own into member 1's `shared`.
    let settings = ConfigMap {
        metadata: ObjectMeta {
            name: Some("settings".into()),
            ..ObjectMeta::default()
        },
        ..ConfigMap::default()
    };
    Api::<ConfigMap>::namespaced(one.clone(), "shared")
        .create(&PostParams::default(), &settings)
        .await
        .unwrap();

    // The federated Services go: so do their Services, and the namespaces the
    // federation made that nothing else uses; the others stay.
    for (ns, name) in [("fedapp", "web"), ("shared", "api")] {
        Api::<FederatedService>::namespaced(world.host.clone(), ns)
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    wait_for("member 1's fedapp removed", || async {
        gone(&one, "fedapp").await.then_some(())
    })
    .await;
    wait_for("the api service gone from member 1", || async {
        service(&one, "shared", "api").await.is_none().then_some(())
    })
    .await;
    // Two more full rounds after that (each sweeps Services, then
    // namespaces) leave `shared` in place.
    let labels = rancher_federation::metrics::FederationLabels {
        federation: FED.into(),
    };
    let rounds = || world.metrics.reconciles.get_or_create(&labels).get();
    let seen = rounds();
    wait_for("two more reconciles", || async {
        (rounds() >= seen + 2).then_some(())
    })
    .await;
    assert!(
        !gone(&one, "shared").await,
        "member 1's shared holds a user's ConfigMap"
    );
    assert!(namespace(&host, "fedapp").await.is_some(), "the host's own");
    assert!(
        service(&host, "fedapp", "web").await.is_none(),
        "member 0's service deleted"
    );
    world.stop().await;
}
