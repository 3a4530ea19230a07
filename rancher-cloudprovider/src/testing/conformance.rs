//! A conformance battery for [`LoadBalancer`] implementations: the idempotence and
//! existence rules of the contract, checked against a real backend.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! use rancher_cloudprovider::testing::{FakeLoadBalancer, conformance::{self, Fixture}};
//!
//! let lb = FakeLoadBalancer::new();
//! conformance::load_balancer(&lb, &Fixture::example()).await.unwrap();
//! # }
//! ```

use std::time::Duration;

use tokio::time::Instant;

use crate::{
    error::Error,
    model::{LoadBalancerStatus, Node, Service, ServiceKey},
    provider::LoadBalancer,
};

/// The input the battery runs with.
#[derive(Clone, Debug)]
pub struct Fixture {
    /// The cluster name passed to every call.
    pub cluster: String,
    /// A Service the backend can serve.
    pub service: Service,
    /// Eligible nodes (at least two, so a node removal can be tested).
    pub nodes: Vec<Node>,
    /// How long to keep asking while the backend answers `Retry`.
    pub converge_within: Duration,
}

impl Fixture {
    /// A two-port TCP Service `conformance/web` and nodes on 127.0.0.2 and
    /// 127.0.0.3.
    pub fn example() -> Self {
        Self {
            cluster: "kubernetes".into(),
            service: Service::new(
                ServiceKey::new("conformance", "web"),
                "6a4e9d0c-1f3b-4c52-9b1e-0d2f8c7a5e11",
                &[(8080, Some(30080)), (8443, Some(30443))],
            ),
            nodes: vec![
                Node::new("node-a", [127, 0, 0, 2].into()),
                Node::new("node-b", [127, 0, 0, 3].into()),
            ],
            converge_within: Duration::from_secs(30),
        }
    }
}

/// A broken rule of the contract.
#[derive(Debug, thiserror::Error)]
#[error("conformance step `{step}` failed: {message}")]
pub struct Failure {
    /// The step that failed.
    pub step: &'static str,
    /// What was wrong.
    pub message: String,
}

fn fail<T>(step: &'static str, message: impl Into<String>) -> Result<T, Failure> {
    Err(Failure {
        step,
        message: message.into(),
    })
}

/// Runs the battery against `lb`. On return nothing is left behind (the last
/// step deletes the load balancer).
pub async fn load_balancer(lb: &dyn LoadBalancer, fixture: &Fixture) -> Result<(), Failure> {
    let cluster = fixture.cluster.as_str();
    let service = &fixture.service;

    // Names: stable, non-empty, distinct per Service UID.
    let name = lb.load_balancer_name(cluster, service);
    if name.is_empty() {
        return fail("name", "load_balancer_name returned an empty name");
    }
    if lb.load_balancer_name(cluster, service) != name {
        return fail("name", "load_balancer_name is not stable");
    }
    let mut other = service.clone();
    other.uid = format!("{}-other", service.uid);
    other.key.name = format!("{}-other", service.key.name);
    if lb.load_balancer_name(cluster, &other) == name {
        return fail("name", "two Services with different UIDs share a name");
    }

    // Nothing exists yet: get says so, delete is a no-op.
    match lb.get_load_balancer(cluster, service).await {
        Ok(None) => {}
        Ok(Some(_)) => return fail("get-absent", "reports a load balancer before any ensure"),
        Err(error) => return fail("get-absent", error_chain(&error)),
    }
    converge("delete-absent", fixture, || {
        lb.ensure_load_balancer_deleted(cluster, service)
    })
    .await?;

    // Ensure, then ensure again: same status.
    let first = converge("ensure", fixture, || {
        lb.ensure_load_balancer(cluster, service, &fixture.nodes)
    })
    .await?;
    let elsewhere = first.is_none();
    if let Some(status) = &first
        && status.ingress.is_empty()
    {
        return fail("ensure", "returned an empty status");
    }
    let second = converge("ensure-again", fixture, || {
        lb.ensure_load_balancer(cluster, service, &fixture.nodes)
    })
    .await?;
    if second != first {
        return fail(
            "ensure-again",
            format!("not idempotent: {first:?} then {second:?}"),
        );
    }

    // It exists now, with the status ensure returned.
    match lb.get_load_balancer(cluster, service).await {
        Ok(Some(status)) => {
            if let Some(first) = &first
                && !same_addresses(first, &status)
            {
                return fail(
                    "get",
                    format!("get returned {status:?}, ensure returned {first:?}"),
                );
            }
        }
        Ok(None) if elsewhere => {}
        Ok(None) => return fail("get", "no load balancer after a successful ensure"),
        Err(error) => return fail("get", error_chain(&error)),
    }

    // A node leaves, then comes back.
    let fewer = &fixture.nodes[..fixture.nodes.len().saturating_sub(1)];
    for (step, nodes) in [("update-fewer", fewer), ("update-all", &fixture.nodes[..])] {
        match lb.update_load_balancer(cluster, service, nodes).await {
            Ok(()) | Err(Error::ImplementedElsewhere) => {}
            Err(Error::Retry { .. }) => {
                converge(step, fixture, || {
                    lb.update_load_balancer(cluster, service, nodes)
                })
                .await?;
            }
            Err(error) => return fail(step, error_chain(&error)),
        }
    }

    // Delete, then delete again; afterwards get reports nothing.
    for step in ["delete", "delete-again"] {
        match lb.ensure_load_balancer_deleted(cluster, service).await {
            Err(Error::ImplementedElsewhere) => {
                return fail(
                    step,
                    "ensure_load_balancer_deleted returned ImplementedElsewhere",
                );
            }
            _ => {
                converge(step, fixture, || {
                    lb.ensure_load_balancer_deleted(cluster, service)
                })
                .await?;
            }
        }
    }
    match lb.get_load_balancer(cluster, service).await {
        Ok(None) => Ok(()),
        Ok(Some(status)) => fail("get-deleted", format!("still exists: {status:?}")),
        Err(error) => fail("get-deleted", error_chain(&error)),
    }
}

fn same_addresses(a: &LoadBalancerStatus, b: &LoadBalancerStatus) -> bool {
    let key = |s: &LoadBalancerStatus| {
        let mut v: Vec<_> = s
            .ingress
            .iter()
            .map(|i| (i.ip, i.hostname.clone()))
            .collect();
        v.sort();
        v
    };
    key(a) == key(b)
}

/// Calls `op` until it stops answering `Retry` or the fixture's deadline passes.
/// `Ok(None)` means `ImplementedElsewhere`.
async fn converge<T, F, Fut>(
    step: &'static str,
    fixture: &Fixture,
    mut op: F,
) -> Result<Option<T>, Failure>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = crate::error::Result<T>>,
{
    let deadline = Instant::now() + fixture.converge_within;
    loop {
        match op().await {
            Ok(value) => return Ok(Some(value)),
            Err(Error::ImplementedElsewhere) => return Ok(None),
            Err(Error::Retry { after, reason }) => {
                if Instant::now() + after > deadline {
                    return fail(step, format!("still converging at the deadline: {reason}"));
                }
                tokio::time::sleep(after).await;
            }
            Err(error) => return fail(step, error_chain(&error)),
        }
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(": ");
        message.push_str(&cause.to_string());
        source = cause.source();
    }
    message
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{FakeFailure, FakeLoadBalancer};
    use async_trait::async_trait;

    #[tokio::test]
    async fn the_fake_passes_even_while_provisioning() {
        let lb = FakeLoadBalancer::new();
        lb.fail_ensure(None, FakeFailure::Retry(Duration::from_millis(5)), 2);
        load_balancer(&lb, &Fixture::example()).await.unwrap();
        assert!(lb.is_empty());
    }

    /// A provider that forgets to treat a missing load balancer as deleted.
    struct StrictDelete(FakeLoadBalancer);

    #[async_trait]
    impl LoadBalancer for StrictDelete {
        async fn get_load_balancer(
            &self,
            c: &str,
            s: &Service,
        ) -> crate::Result<Option<LoadBalancerStatus>> {
            self.0.get_load_balancer(c, s).await
        }
        fn load_balancer_name(&self, c: &str, s: &Service) -> String {
            self.0.load_balancer_name(c, s)
        }
        async fn ensure_load_balancer(
            &self,
            c: &str,
            s: &Service,
            n: &[Node],
        ) -> crate::Result<LoadBalancerStatus> {
            self.0.ensure_load_balancer(c, s, n).await
        }
        async fn update_load_balancer(
            &self,
            c: &str,
            s: &Service,
            n: &[Node],
        ) -> crate::Result<()> {
            self.0.update_load_balancer(c, s, n).await
        }
        async fn ensure_load_balancer_deleted(&self, c: &str, s: &Service) -> crate::Result<()> {
            if self.0.balancer(&s.key).is_none() {
                return Err(Error::other("load balancer not found"));
            }
            self.0.ensure_load_balancer_deleted(c, s).await
        }
    }

    #[tokio::test]
    async fn a_provider_erroring_on_a_missing_load_balancer_fails() {
        let failure = load_balancer(&StrictDelete(FakeLoadBalancer::new()), &Fixture::example())
            .await
            .unwrap_err();
        assert_eq!(failure.step, "delete-absent");
        assert!(failure.message.contains("not found"), "{failure}");
    }
}
