//! Lease-based leader election from `rancher-runtime` against the sandbox.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::Lease;
use kube::api::Api;
use rancher_runtime::lease::{LeaderArgs, Leadership};
use tokio_util::sync::CancellationToken;

use super::{eventually, sandbox};

fn candidate(
    client: kube::Client,
    identity: &str,
) -> (Leadership, CancellationToken, tokio::task::JoinHandle<()>) {
    let mut args = LeaderArgs::new("kube-system", "rancher-test");
    args.identity = Some(identity.to_string());
    args.lease_duration = Duration::from_secs(2);
    args.renew_deadline = Duration::from_millis(1500);
    args.retry_period = Duration::from_millis(100);
    let shutdown = CancellationToken::new();
    let (leadership, run) = args.start(client, shutdown.clone());
    let task = tokio::spawn(run.expect("election is enabled"));
    (leadership, shutdown, task)
}

#[tokio::test]
async fn one_leader_at_a_time_and_a_clean_handover() {
    let sb = sandbox().await;
    let (a, stop_a, task_a) = candidate(sb.client(), "replica-a");
    let (b, stop_b, task_b) = candidate(sb.client(), "replica-b");
    let leases: Api<Lease> = Api::namespaced(sb.client(), "kube-system");

    let first = eventually("a leader is elected", || {
        let (a, b) = (a.clone(), b.clone());
        async move {
            match (a.is_leader(), b.is_leader()) {
                (true, false) => Some("replica-a"),
                (false, true) => Some("replica-b"),
                (true, true) => panic!("two leaders at once"),
                (false, false) => None,
            }
        }
    })
    .await;
    // The Lease names the leader, and leadership stays put while it renews.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!(a.is_leader() && b.is_leader()), "two leaders at once");
    }
    let lease = leases.get("rancher-test").await.unwrap();
    assert_eq!(lease.spec.unwrap().holder_identity.as_deref(), Some(first));

    // The leader shuts down and releases; the other takes over.
    let (stop, task, other, other_id) = if first == "replica-a" {
        (stop_a, task_a, b.clone(), "replica-b")
    } else {
        (stop_b, task_b, a.clone(), "replica-a")
    };
    stop.cancel();
    task.await.unwrap();
    eventually("the standby takes over", || {
        let other = other.clone();
        async move { other.is_leader().then_some(()) }
    })
    .await;
    let lease = leases.get("rancher-test").await.unwrap();
    let spec = lease.spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref(), Some(other_id));
    assert!(spec.lease_transitions.unwrap_or(0) >= 1);
}
