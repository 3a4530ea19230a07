//! Test support: an in-memory [`FakeBackend`] and the [`conformance`] battery that
//! any [`IngressBackend`] (ours or a user's) can run.

use std::{
    collections::{BTreeMap, VecDeque},
    net::IpAddr,
    sync::{Arc, Mutex, MutexGuard, PoisonError},
    time::Duration,
};

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::{
    backend::{Error, IngressBackend, Result},
    model::{Address, Backend, IngressKey, LoadBalancer, Status},
};

/// An in-memory backend: places `scale` instances on distinct hosts from a fixed
/// list (stable across updates), records every call, and can be told to fail.
#[derive(Clone, Debug)]
pub struct FakeBackend {
    inner: Arc<Mutex<State>>,
    changes: broadcast::Sender<String>,
}

#[derive(Debug, Default)]
struct State {
    hosts: Vec<IpAddr>,
    balancers: BTreeMap<String, (LoadBalancer, Vec<IpAddr>)>,
    calls: Vec<Call>,
    failures: VecDeque<Error>,
}

/// A call the fake received.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Call {
    /// [`IngressBackend::ensure`] for this load balancer name.
    Ensure(String),
    /// [`IngressBackend::ensure_deleted`].
    Delete(String),
}

impl FakeBackend {
    /// A fake whose instances run on these host addresses.
    pub fn new(hosts: impl IntoIterator<Item = IpAddr>) -> Self {
        let (changes, _) = broadcast::channel(1024);
        Self {
            inner: Arc::new(Mutex::new(State {
                hosts: hosts.into_iter().collect(),
                ..State::default()
            })),
            changes,
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The next calls fail with these errors, one each, in order.
    pub fn fail_next(&self, error: Error) {
        self.state().failures.push_back(error);
    }

    /// The model last ensured for `name`.
    pub fn get(&self, name: &str) -> Option<LoadBalancer> {
        self.state().balancers.get(name).map(|(lb, _)| lb.clone())
    }

    /// Every load balancer, by name.
    pub fn balancers(&self) -> BTreeMap<String, LoadBalancer> {
        self.state()
            .balancers
            .iter()
            .map(|(name, (lb, _))| (name.clone(), lb.clone()))
            .collect()
    }

    /// The calls received so far.
    pub fn calls(&self) -> Vec<Call> {
        self.state().calls.clone()
    }

    /// Forgets the recorded calls.
    pub fn clear_calls(&self) {
        self.state().calls.clear();
    }

    /// The hosts running instances of `name`.
    pub fn instances(&self, name: &str) -> Vec<IpAddr> {
        self.state()
            .balancers
            .get(name)
            .map(|(_, hosts)| hosts.clone())
            .unwrap_or_default()
    }

    /// Takes `host` out of service: its instances move to other hosts where
    /// possible, and the affected names are announced on [`IngressBackend::changes`].
    pub fn fail_host(&self, host: IpAddr) {
        let changed: Vec<String> = {
            let mut state = self.state();
            state.hosts.retain(|h| *h != host);
            let hosts = state.hosts.clone();
            let mut changed = Vec::new();
            for (name, (lb, placed)) in &mut state.balancers {
                if placed.contains(&host) {
                    placed.retain(|h| *h != host);
                    *placed = place(&hosts, placed, lb.scale);
                    changed.push(name.clone());
                }
            }
            changed
        };
        for name in changed {
            let _ = self.changes.send(name);
        }
    }

    /// What a request to `address:port` with this `Host` header and path reaches:
    /// every load balancer with an instance on `address` and a listener on `port`
    /// shares the port, as one process per host would. `None` is a 404 (or no
    /// listener).
    pub fn request(&self, address: IpAddr, port: u16, host: &str, path: &str) -> Option<Backend> {
        let state = self.state();
        let serving: Vec<&LoadBalancer> = state
            .balancers
            .values()
            .filter(|(lb, placed)| {
                placed.contains(&address) && lb.listeners.iter().any(|l| l.port == port)
            })
            .map(|(lb, _)| lb)
            .collect();
        // A route match anywhere first, then a default backend.
        for lb in &serving {
            let without_default = LoadBalancer {
                default_backend: None,
                ..(*lb).clone()
            };
            if let Some(backend) = without_default.route(host, path) {
                return Some(backend.clone());
            }
        }
        serving.iter().find_map(|lb| lb.route(host, path)).cloned()
    }

    /// The Ingresses served by any load balancer.
    pub fn owners(&self) -> Vec<IngressKey> {
        let state = self.state();
        let mut owners: Vec<IngressKey> = state
            .balancers
            .values()
            .flat_map(|(lb, _)| lb.owners.iter().cloned())
            .collect();
        owners.sort();
        owners.dedup();
        owners
    }
}

/// Keeps the hosts already used (if still eligible), then adds hosts in order.
fn place(hosts: &[IpAddr], current: &[IpAddr], scale: u32) -> Vec<IpAddr> {
    let want = usize::try_from(scale).unwrap_or(usize::MAX);
    let mut placed: Vec<IpAddr> = current
        .iter()
        .filter(|h| hosts.contains(h))
        .take(want)
        .copied()
        .collect();
    for host in hosts {
        if placed.len() >= want {
            break;
        }
        if !placed.contains(host) {
            placed.push(*host);
        }
    }
    placed
}

#[async_trait]
impl IngressBackend for FakeBackend {
    async fn ensure(&self, lb: &LoadBalancer) -> Result<Status> {
        let mut state = self.state();
        state.calls.push(Call::Ensure(lb.name.clone()));
        if let Some(error) = state.failures.pop_front() {
            return Err(error);
        }
        let hosts = state.hosts.clone();
        let current = state
            .balancers
            .get(&lb.name)
            .map(|(_, placed)| placed.clone())
            .unwrap_or_default();
        let scale = if lb.placement.global {
            u32::try_from(hosts.len()).unwrap_or(u32::MAX)
        } else {
            lb.scale
        };
        let placed = place(&hosts, &current, scale);
        let mut status = Status::new(placed.iter().copied().map(Address::Ip));
        if placed.len() < usize::try_from(scale).unwrap_or(usize::MAX) {
            status.problems.push(format!(
                "Shortfall: {} of {scale} instances placed",
                placed.len()
            ));
        }
        state
            .balancers
            .insert(lb.name.clone(), (lb.clone(), placed));
        Ok(status)
    }

    async fn ensure_deleted(&self, name: &str) -> Result<()> {
        let mut state = self.state();
        state.calls.push(Call::Delete(name.to_owned()));
        if let Some(error) = state.failures.pop_front() {
            return Err(error);
        }
        state.balancers.remove(name);
        Ok(())
    }

    async fn list(&self) -> Result<Vec<String>> {
        Ok(self.state().balancers.keys().cloned().collect())
    }

    async fn status(&self, name: &str) -> Result<Option<Status>> {
        Ok(self
            .state()
            .balancers
            .get(name)
            .map(|(_, placed)| Status::new(placed.iter().copied().map(Address::Ip))))
    }

    fn changes(&self) -> Option<broadcast::Receiver<String>> {
        Some(self.changes.subscribe())
    }
}

/// The backend conformance battery.
///
/// Runs the [`IngressBackend`] contract against `backend`, which must be able to
/// place instances on at least two hosts and must start without a load balancer
/// named `conformance-*`. Panics with a message naming the broken rule. `Retry`
/// errors are retried until `patience` has passed.
pub async fn conformance(backend: &dyn IngressBackend, patience: Duration) {
    use crate::{host::Host, model::Listener, model::Protocol, model::Route, path::PathRule};

    let name = "conformance-a";
    let web = Backend {
        namespace: "default".into(),
        service: "web".into(),
        port: "80".into(),
        endpoints: vec!["127.0.0.1:9".parse().expect("literal address")],
    };
    let mut lb = LoadBalancer {
        name: name.into(),
        listeners: vec![Listener {
            port: 80,
            protocol: Protocol::Http,
        }],
        routes: vec![Route {
            host: Host::Exact("foo.example.org".into()),
            path: PathRule::root(),
            backend: web.id(),
            owner: IngressKey::new("default", "conformance"),
        }],
        backends: BTreeMap::from([(web.id(), web)]),
        scale: 1,
        ..LoadBalancer::default()
    };
    lb.owners.insert(IngressKey::new("default", "conformance"));

    // Deleting what does not exist succeeds.
    backend
        .ensure_deleted("conformance-missing")
        .await
        .expect("ensure_deleted of a missing load balancer must be Ok");
    assert_eq!(
        backend
            .status("conformance-missing")
            .await
            .expect("status of a missing load balancer must be Ok"),
        None,
        "status of a missing load balancer must be None"
    );

    let one = ensure_converged(backend, &lb, patience).await;
    assert_eq!(one.addresses.len(), 1, "scale 1 gives one address: {one:?}");
    let again = ensure_converged(backend, &lb, patience).await;
    assert_eq!(one, again, "ensure is idempotent");
    assert!(
        backend
            .list()
            .await
            .expect("list must succeed")
            .iter()
            .any(|n| n == name),
        "list names an ensured load balancer"
    );
    assert_eq!(
        backend.status(name).await.expect("status must succeed"),
        Some(one.clone()),
        "status reports what ensure returned"
    );

    lb.scale = 2;
    let two = ensure_converged(backend, &lb, patience).await;
    assert_eq!(
        two.addresses.len(),
        2,
        "scale 2 runs on two distinct hosts: {two:?}"
    );
    assert!(
        two.addresses.contains(&one.addresses[0]),
        "scaling up keeps the existing instance where it is"
    );
    let sorted = Status::new(two.addresses.clone());
    assert_eq!(sorted, two, "addresses are sorted and deduplicated");

    lb.scale = 1;
    let down = ensure_converged(backend, &lb, patience).await;
    assert_eq!(down.addresses.len(), 1, "scaling down to 1: {down:?}");

    lb.scale = 0;
    let zero = ensure_converged(backend, &lb, patience).await;
    assert!(
        zero.addresses.is_empty(),
        "scale 0 has no address: {zero:?}"
    );

    backend
        .ensure_deleted(name)
        .await
        .expect("ensure_deleted must succeed");
    backend
        .ensure_deleted(name)
        .await
        .expect("ensure_deleted is idempotent");
    assert!(
        !backend
            .list()
            .await
            .expect("list must succeed")
            .iter()
            .any(|n| n == name),
        "a deleted load balancer is not listed"
    );
    assert_eq!(
        backend.status(name).await.expect("status must succeed"),
        None,
        "a deleted load balancer has no status"
    );
}

async fn ensure_converged(
    backend: &dyn IngressBackend,
    lb: &LoadBalancer,
    patience: Duration,
) -> Status {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match backend.ensure(lb).await {
            Ok(status) => return status,
            Err(Error::Retry { after, .. }) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(after.min(Duration::from_secs(1))).await;
            }
            Err(error) => panic!("ensure of {} failed: {error}", lb.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> Vec<IpAddr> {
        vec!["127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap()]
    }

    #[tokio::test]
    async fn the_fake_passes_the_battery() {
        conformance(&FakeBackend::new(hosts()), Duration::from_secs(5)).await;
    }

    #[tokio::test]
    async fn failures_are_injected_and_host_failures_announced() {
        let fake = FakeBackend::new(hosts());
        let mut changes = fake.changes().unwrap();
        fake.fail_next(Error::NotImplemented("ensure"));
        let lb = LoadBalancer {
            name: "a".into(),
            scale: 1,
            ..LoadBalancer::default()
        };
        assert!(fake.ensure(&lb).await.is_err());
        let status = fake.ensure(&lb).await.unwrap();
        assert_eq!(status.addresses, vec![Address::Ip(hosts()[0])]);
        fake.fail_host(hosts()[0]);
        assert_eq!(changes.recv().await.unwrap(), "a");
        assert_eq!(fake.instances("a"), vec![hosts()[1]]);
    }
}
