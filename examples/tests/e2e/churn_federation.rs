//! Memory and resources of `rancher-federation-controller` under churn: two
//! sandbox clusters (the first is the host and a member's credentials point
//! at the second), BIND on loopback taking the RFC 2136 updates, and rounds
//! of federated Services created, propagated, served (a load balancer
//! address and a ready endpoint in the member), published, and deleted.
//! Once the churn is over and everything it made is gone from the member and
//! from BIND, the controller's resident memory, sockets and tasks come back
//! to their level, measured as in [`crate::churn`] (`CHURN_SECONDS` makes it
//! the soak).

use k8s_openapi::{
    ByteString,
    api::{
        core::v1::{Node, Secret, Service, ServicePort, ServiceSpec},
        discovery::v1::EndpointSlice,
    },
};
use kube::{
    Api,
    api::{DeleteParams, ObjectMeta, Patch, PatchParams, PostParams},
};
use rancher_federation::{
    crd::{FederatedCluster, FederatedService, FederatedServiceSpec, ServiceTemplate},
    well_known::{FEDERATION_LABEL, KUBECONFIG_KEY, REGION_LABEL, ZONE_LABEL},
};
use serde_json::json;

use crate::{
    bind::{ALGORITHM, Bind, KEY_NAME, ZONE},
    churn::{Binary, Churn},
    federation_controller::{FED, NS, install_federation},
    support::{eventually, free_port},
};

/// The member's load balancer address, as its cloud controller would write it.
const LB_ADDRESS: &str = "127.0.42.2";
/// Federated Services made and deleted per round.
const APPS: usize = 6;

/// The public name of federated Service `name`.
fn global(name: &str) -> String {
    format!("{name}.default.{FED}.svc.{ZONE}")
}

/// A labelled node in the member.
async fn member_node(member: &kube::Client) {
    let node: Node = serde_json::from_value(json!({
        "metadata": {"name": "r1-a-node",
            "labels": {REGION_LABEL: "r1", ZONE_LABEL: "r1-a"}},
        "status": {"addresses": [{"type": "InternalIP", "address": "127.0.42.11"}],
            "conditions": [{"type": "Ready", "status": "True"}]}
    }))
    .expect("node");
    Api::<Node>::all(member.clone())
        .create(&PostParams::default(), &node)
        .await
        .expect("member node");
}

/// The credentials Secret that makes the cluster at `url` member `cluster-1`.
async fn join(host: &kube::Client, url: &str) {
    let kubeconfig = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: member\n  cluster:\n    server: {url}\nusers:\n- name: member\n  user: {{}}\ncontexts:\n- name: member\n  context:\n    cluster: member\n    user: member\ncurrent-context: member\n"
    );
    let secret = Secret {
        metadata: ObjectMeta {
            name: Some("cluster-1".into()),
            namespace: Some(NS.into()),
            labels: Some([(FEDERATION_LABEL.to_owned(), FED.to_owned())].into()),
            ..ObjectMeta::default()
        },
        data: Some(
            [(
                KUBECONFIG_KEY.to_owned(),
                ByteString(kubeconfig.into_bytes()),
            )]
            .into(),
        ),
        ..Secret::default()
    };
    Api::<Secret>::namespaced(host.clone(), NS)
        .create(&PostParams::default(), &secret)
        .await
        .expect("member secret");
}

fn federated_service(name: &str) -> FederatedService {
    let spec = ServiceSpec {
        type_: Some("LoadBalancer".into()),
        selector: Some([("app".to_owned(), name.to_owned())].into()),
        ports: Some(vec![ServicePort {
            name: Some("http".into()),
            port: 28080,
            protocol: Some("TCP".into()),
            ..ServicePort::default()
        }]),
        ..ServiceSpec::default()
    };
    let mut fs = FederatedService::new(
        name,
        FederatedServiceSpec {
            federation: FED.into(),
            template: ServiceTemplate {
                metadata: Default::default(),
                spec,
            },
        },
    );
    fs.metadata.namespace = Some("default".into());
    fs
}

fn slice(name: &str) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"name": format!("{name}-1"), "namespace": "default",
            "labels": {"kubernetes.io/service-name": name}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["10.42.1.5"], "conditions": {"ready": true}}]
    }))
    .expect("slice")
}

/// One round: `APPS` federated Services created; each, once propagated to
/// the member, served there; the last one published in BIND; all deleted,
/// with their member EndpointSlices. Returns the number of changes made.
async fn round(host: &kube::Client, member: &kube::Client, bind: &Bind, n: usize) -> usize {
    let federated = Api::<FederatedService>::namespaced(host.clone(), "default");
    let services = Api::<Service>::namespaced(member.clone(), "default");
    let slices = Api::<EndpointSlice>::namespaced(member.clone(), "default");
    let names: Vec<String> = (0..APPS).map(|i| format!("fed-{n}-{i}")).collect();
    let mut changes = 0;
    for name in &names {
        federated
            .create(&PostParams::default(), &federated_service(name))
            .await
            .expect("create federated service");
        changes += 1;
    }
    for name in &names {
        eventually("the federated service in the member", || async {
            services.get_opt(name).await.ok().flatten()
        })
        .await;
        let status = json!({"status": {"loadBalancer": {"ingress": [{"ip": LB_ADDRESS}]}}});
        services
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&status))
            .await
            .expect("load balancer status");
        slices
            .create(&PostParams::default(), &slice(name))
            .await
            .expect("create slice");
        changes += 2;
    }
    let last = global(&names[APPS - 1]);
    eventually("the round published in BIND", || async {
        (bind.dig(&last, "A") == [LB_ADDRESS]).then_some(())
    })
    .await;
    for name in &names {
        federated
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete federated service");
        slices
            .delete(&format!("{name}-1"), &DeleteParams::default())
            .await
            .expect("delete slice");
        changes += 2;
    }
    changes
}

/// Waits until round `n` is gone from the member and from BIND.
async fn settled(member: &kube::Client, bind: &Bind, n: usize) {
    let services = Api::<Service>::namespaced(member.clone(), "default");
    for i in 0..APPS {
        let name = format!("fed-{n}-{i}");
        eventually("the member service deleted", || async {
            services.get_opt(&name).await.ok()?.is_none().then_some(())
        })
        .await;
        let public = global(&name);
        eventually("the name gone from BIND", || async {
            bind.dig(&public, "A").is_empty().then_some(())
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_federation_controller_comes_back_after_churn() {
    rancher_runtime::install_crypto_provider();
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig");
    let sandbox = rancher_sandbox::Sandbox::builder()
        .clusters(2)
        .kubeconfig_path(&kubeconfig)
        .start()
        .await
        .expect("sandbox starts");
    let host = sandbox.client();
    let member_cluster = &sandbox.clusters()[1];
    let member = member_cluster.client();
    install_federation(&host).await;
    member_node(&member).await;
    join(&host, &member_cluster.url()).await;
    let bind = Bind::start().await;
    let secret_file = dir.path().join("tsig.secret");
    std::fs::write(&secret_file, bind.secret()).expect("write the tsig secret");

    let admin = free_port();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_rancher-federation-controller"))
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .args(["--health-check-period", "1"])
        .args(["--rfc2136-server", &bind.addr().to_string()])
        .args(["--rfc2136-zone", ZONE])
        .args(["--tsig-key", KEY_NAME, "--tsig-algorithm", ALGORITHM])
        .arg("--tsig-secret-file")
        .arg(&secret_file)
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .stdout(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("rancher-federation-controller starts");
    let mut binaries = [Binary {
        name: "rancher-federation-controller",
        child,
        admin,
        prefix: "rancher_federation",
        work_dir: None,
    }];
    let clusters: Api<FederatedCluster> = Api::namespaced(host.clone(), NS);
    eventually("the member to join, healthy", || async {
        let cluster = clusters.get_opt("cluster-1").await.ok()??;
        cluster.status?.healthy.then_some(())
    })
    .await;

    // Warm-up round, then the level before the churn.
    round(&host, &member, &bind, 0).await;
    settled(&member, &bind, 0).await;
    let api_ports = [sandbox.addr().port(), member_cluster.addr().port()];
    let mut churn = Churn::start(&binaries, &api_ports).await;
    while let Some(n) = churn.next_round() {
        let changes = round(&host, &member, &bind, n).await;
        churn.round_done(&binaries, changes).await;
    }
    settled(&member, &bind, churn.rounds).await;
    churn.verdict(&mut binaries).await;
}
