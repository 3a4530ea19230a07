//! The `rancher-federation-controller` binary with `--rancher`: Rancher
//! environments (served by the fake Rancher, each in front of a sandbox
//! cluster) labelled with the federation's name become its members.

use std::process::Stdio;

use k8s_openapi::{
    api::core::v1::Namespace,
    apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
};
use kube::{
    Api, CustomResourceExt,
    api::{ObjectMeta, PostParams},
};
use rancher_client::testing::{FakeProject, FakeRancher};
use rancher_federation::{
    crd::{FederatedCluster, FederatedService, Federation, FederationSpec},
    well_known::FEDERATION_LABEL,
};
use tokio::process::Command;

use crate::support::{DEADLINE, eventually, free_port, terminate};

pub(crate) const NS: &str = "federation-system";
pub(crate) const FED: &str = "myfed";

/// The federation CRDs, the namespace `NS` and the Federation `FED` (DNS
/// suffix `example.org`, health checks every second) in the host cluster.
pub(crate) async fn install_federation(host: &kube::Client) {
    for crd in [
        Federation::crd(),
        FederatedCluster::crd(),
        FederatedService::crd(),
    ] {
        Api::<CustomResourceDefinition>::all(host.clone())
            .create(&PostParams::default(), &crd)
            .await
            .expect("crd created");
    }
    let ns = Namespace {
        metadata: ObjectMeta {
            name: Some(NS.into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    Api::<Namespace>::all(host.clone())
        .create(&PostParams::default(), &ns)
        .await
        .expect("namespace");
    let mut federation = Federation::new(
        FED,
        FederationSpec {
            dns_suffix: "example.org".into(),
            ttl: None,
            health_check_period_seconds: Some(1),
            health_check_timeout_seconds: Some(2),
        },
    );
    federation.metadata.namespace = Some(NS.into());
    Api::<Federation>::namespaced(host.clone(), NS)
        .create(&PostParams::default(), &federation)
        .await
        .expect("federation");
}

fn controller(kubeconfig: &std::path::Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_rancher-federation-controller"));
    command
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(["--rancher", "--health-check-period", "1"])
        // Nothing answers there: DNS publishing fails, membership does not care.
        .args(["--rfc2136-server", &format!("127.0.0.1:{}", free_port())])
        .args(["--rfc2136-zone", "example.org"])
        .args(["--admin", &format!("127.0.0.1:{}", free_port())])
        .env_remove(rancher_client::ENV_URL)
        .env_remove(rancher_client::ENV_ACCESS_KEY)
        .env_remove(rancher_client::ENV_SECRET_KEY)
        .stdout(Stdio::null())
        .kill_on_drop(true);
    command
}

#[tokio::test(flavor = "multi_thread")]
async fn labelled_rancher_environments_become_members() {
    rancher_runtime::install_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    let sandbox = rancher_sandbox::Sandbox::builder()
        .clusters(2)
        .kubeconfig_path(&kubeconfig)
        .start()
        .await
        .unwrap();
    let host = sandbox.client();
    install_federation(&host).await;

    let fake = FakeRancher::builder().start().await.unwrap();
    let east = fake
        .add_project(
            FakeProject::new("east")
                .label(FEDERATION_LABEL, FED)
                .kubernetes(sandbox.clusters()[1].url()),
        )
        .unwrap();

    // Without CATTLE_URL, --rancher cannot start, and says why.
    let output = tokio::time::timeout(DEADLINE, controller(&kubeconfig).output())
        .await
        .expect("exits")
        .expect("runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(stderr.contains("--rancher"), "{stderr}");
    assert!(stderr.contains("CATTLE_URL is not set"), "{stderr}");

    let mut child = controller(&kubeconfig)
        .envs(fake.env())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the binary starts");
    let clusters: Api<FederatedCluster> = Api::namespaced(host.clone(), NS);
    let member = format!("rancher-{east}");
    eventually("the environment to join, healthy", || async {
        let cluster = clusters.get_opt(&member).await.ok()??;
        let env = cluster.spec.rancher.as_ref()?;
        (env.project_id == east && cluster.status?.healthy).then_some(())
    })
    .await;

    // The label goes: the member goes.
    fake.set_project_labels(&east, Default::default());
    eventually("the environment to leave", || async {
        clusters
            .get_opt(&member)
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    terminate(&mut child).await;
}
