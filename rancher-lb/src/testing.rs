//! Test support: a fake [`Driver`] and a conformance battery any driver can run.
//!
//! [`FakeDriver`] places instances with [`place`] and
//! reports every placed instance as running; it records what it was asked to
//! do, and can be told to fail. [`Conformance`] checks the [`Driver`] contract
//! against any driver.

mod echo;

pub use echo::HttpEcho;

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::broadcast;

use crate::driver::{
    ConditionKind, Driver, Error, InstanceState, Result, STATUS_CHANNEL_CAPACITY, Status,
    StatusUpdate, placed_status,
};
use crate::model::{
    BackendSpec, EndpointSpec, HttpRouteSpec, LbId, ListenerSpec, LoadBalancer, LoadBalancerSpec,
    PathMatch, Protocol,
};
use crate::placement::{Assignment, Host, place};

#[derive(Default)]
struct State {
    hosts: Vec<Host>,
    lbs: BTreeMap<LbId, LoadBalancer>,
    assignment: Assignment,
    statuses: BTreeMap<LbId, Status>,
    ensure_calls: usize,
    fail_next: Option<Error>,
}

/// A [`Driver`] that keeps everything in memory.
pub struct FakeDriver {
    state: Mutex<State>,
    tx: broadcast::Sender<StatusUpdate>,
    snippets: bool,
}

impl FakeDriver {
    /// A fake driver with these hosts and snippets disabled.
    pub fn new(hosts: Vec<Host>) -> Self {
        Self {
            state: Mutex::new(State {
                hosts,
                ..State::default()
            }),
            tx: broadcast::channel(STATUS_CHANNEL_CAPACITY).0,
            snippets: false,
        }
    }

    /// Accepts load balancers with snippets.
    #[must_use]
    pub fn with_snippets(mut self, enabled: bool) -> Self {
        self.snippets = enabled;
        self
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The load balancer last ensured under `id`.
    pub fn applied(&self, id: &LbId) -> Option<LoadBalancer> {
        self.lock().lbs.get(id).cloned()
    }

    /// Ids of every load balancer the driver holds.
    pub fn ids(&self) -> Vec<LbId> {
        self.lock().lbs.keys().cloned().collect()
    }

    /// How many times [`Driver::ensure`] was called.
    pub fn ensure_calls(&self) -> usize {
        self.lock().ensure_calls
    }

    /// Makes the next `ensure` or `ensure_deleted` fail with `error`.
    pub fn fail_next(&self, error: Error) {
        self.lock().fail_next = Some(error);
    }

    fn replace(&self, state: &mut State) {
        let lbs: Vec<&LoadBalancer> = state.lbs.values().collect();
        let outcomes = place(&state.hosts, &lbs, &state.assignment);
        let mut statuses = BTreeMap::new();
        let mut assignment = Assignment::new();
        for (id, outcome) in &outcomes {
            let Some(lb) = state.lbs.get(id) else {
                continue;
            };
            statuses.insert(
                id.clone(),
                placed_status(lb, outcome, |_| InstanceState::Running),
            );
            assignment.insert(id.clone(), outcome.hosts.clone());
        }
        for (id, status) in &statuses {
            if state.statuses.get(id) != Some(status) {
                let _ = self.tx.send(StatusUpdate {
                    id: id.clone(),
                    status: Some(status.clone()),
                });
            }
        }
        state.statuses = statuses;
        state.assignment = assignment;
    }
}

#[async_trait]
impl Driver for FakeDriver {
    async fn ensure(&self, lb: &LoadBalancer) -> Result<Status> {
        let mut state = self.lock();
        state.ensure_calls += 1;
        if let Some(e) = state.fail_next.take() {
            return Err(e);
        }
        if lb.snippet().is_some() && !self.snippets {
            return Err(Error::Rejected {
                lb: lb.id().clone(),
                reason: "snippets are disabled".into(),
            });
        }
        state.lbs.insert(lb.id().clone(), lb.clone());
        self.replace(&mut state);
        Ok(state.statuses.get(lb.id()).cloned().unwrap_or_default())
    }

    async fn ensure_deleted(&self, id: &LbId) -> Result<()> {
        let mut state = self.lock();
        if let Some(e) = state.fail_next.take() {
            return Err(e);
        }
        if state.lbs.remove(id).is_some() {
            state.statuses.remove(id);
            state.assignment.remove(id);
            let _ = self.tx.send(StatusUpdate {
                id: id.clone(),
                status: None,
            });
            self.replace(&mut state);
        }
        Ok(())
    }

    async fn status(&self, id: &LbId) -> Result<Option<Status>> {
        Ok(self.lock().statuses.get(id).cloned())
    }

    async fn list(&self) -> Result<Vec<LbId>> {
        Ok(self.lock().lbs.keys().cloned().collect())
    }

    fn subscribe(&self) -> broadcast::Receiver<StatusUpdate> {
        self.tx.subscribe()
    }

    async fn set_hosts(&self, hosts: Vec<Host>) -> Result<()> {
        let mut state = self.lock();
        state.hosts = hosts;
        self.replace(&mut state);
        Ok(())
    }
}

/// The conformance battery: checks the [`Driver`] contract on a live driver.
///
/// Each check panics with a message saying what broke. The battery creates
/// load balancers with ids starting `conformance-`, one HTTP listener on
/// `port` and one backend pointing at `endpoint`, and deletes them at the end.
pub struct Conformance {
    /// The driver under test.
    pub driver: Arc<dyn Driver>,
    /// Addresses of the hosts the driver places instances on (at least one).
    pub hosts: Vec<IpAddr>,
    /// The HTTP listener port to use.
    pub port: u16,
    /// The backend endpoint (`address`, `port`); it need not answer.
    pub endpoint: (IpAddr, u16),
    /// How long to wait for a driver that answers [`Error::Retry`].
    pub deadline: Duration,
}

impl Conformance {
    /// A battery with a 30 s deadline.
    pub fn new(
        driver: Arc<dyn Driver>,
        hosts: Vec<IpAddr>,
        port: u16,
        endpoint: (IpAddr, u16),
    ) -> Self {
        Self {
            driver,
            hosts,
            port,
            endpoint,
            deadline: Duration::from_secs(30),
        }
    }

    /// The load balancer the battery uses.
    pub fn lb(&self, id: &str, scale: u32) -> LoadBalancer {
        let spec = LoadBalancerSpec {
            id: format!("conformance-{id}"),
            listeners: vec![ListenerSpec {
                port: u32::from(self.port),
                protocol: Protocol::Http,
            }],
            http_routes: vec![HttpRouteSpec {
                port: u32::from(self.port),
                host: Some("conformance.example.org".into()),
                path: Some("/".into()),
                path_match: PathMatch::Prefix,
                backend: "web".into(),
            }],
            backends: vec![BackendSpec {
                name: "web".into(),
                endpoints: vec![EndpointSpec {
                    address: self.endpoint.0.to_string(),
                    port: u32::from(self.endpoint.1),
                }],
                ..Default::default()
            }],
            scale,
            ..Default::default()
        };
        match LoadBalancer::new(&spec) {
            Ok(lb) => lb,
            Err(e) => panic!("conformance load balancer is invalid: {e}"),
        }
    }

    /// `ensure` until it stops answering [`Error::Retry`] and the status has
    /// `want` addresses (or the deadline passes).
    pub async fn ensure_settled(&self, lb: &LoadBalancer, want: usize) -> Status {
        let deadline = tokio::time::Instant::now() + self.deadline;
        loop {
            let result = self.driver.ensure(lb).await;
            let now = tokio::time::Instant::now();
            match result {
                Ok(status) if status.addresses.len() == want || now >= deadline => return status,
                Ok(_) => tokio::time::sleep(Duration::from_millis(100)).await,
                Err(Error::Retry { after }) if now < deadline => {
                    tokio::time::sleep(after.min(Duration::from_secs(1))).await;
                }
                Err(e) => panic!("ensure {} failed: {e}", lb.id()),
            }
        }
    }

    /// Runs every check.
    pub async fn run(&self) {
        assert!(
            !self.hosts.is_empty(),
            "the battery needs at least one host"
        );
        self.delete_of_unknown_is_ok().await;
        self.scale_places_distinct_hosts_and_is_idempotent().await;
        self.scale_changes_take_effect_and_are_stable().await;
        self.shortfall_is_reported().await;
        self.changes_are_published().await;
        self.delete_removes().await;
        self.list_shows_what_exists().await;
    }

    /// `list` holds every load balancer ensured and none deleted.
    pub async fn list_shows_what_exists(&self) {
        let (a, b) = (self.lb("list-a", 1), self.lb("list-b", 1));
        self.ensure_settled(&a, 1).await;
        self.ensure_settled(&b, 1).await;
        let listed = self.driver.list().await.expect("list");
        for lb in [&a, &b] {
            assert!(
                listed.contains(lb.id()),
                "{} not listed: {listed:?}",
                lb.id()
            );
        }
        self.delete(a.id()).await;
        let listed = self.driver.list().await.expect("list");
        assert!(
            !listed.contains(a.id()),
            "{} listed after ensure_deleted: {listed:?}",
            a.id()
        );
        assert!(listed.contains(b.id()), "{} not listed: {listed:?}", b.id());
        self.delete(b.id()).await;
    }

    /// `ensure_deleted` of an unknown id is `Ok`.
    pub async fn delete_of_unknown_is_ok(&self) {
        let id = LbId::new("conformance-never-created").expect("valid id");
        if let Err(e) = self.driver.ensure_deleted(&id).await {
            panic!("ensure_deleted of an unknown load balancer failed: {e}");
        }
        match self.driver.status(&id).await {
            Ok(None) => {}
            other => panic!("status of an unknown load balancer: {other:?}"),
        }
    }

    /// `scale` N gives N distinct known addresses; ensuring again changes nothing.
    pub async fn scale_places_distinct_hosts_and_is_idempotent(&self) {
        let n = self.hosts.len().min(2);
        let lb = self.lb("a", u32::try_from(n).unwrap_or(2));
        let status = self.ensure_settled(&lb, n).await;
        assert_eq!(status.addresses.len(), n, "scale {n}: {status:?}");
        for a in &status.addresses {
            assert!(
                self.hosts.contains(a),
                "address {a} is not one of the hosts"
            );
        }
        assert!(
            status.condition(ConditionKind::Shortfall).is_none(),
            "unexpected shortfall: {status:?}"
        );
        let again = self.ensure_settled(&lb, n).await;
        assert_eq!(
            again.addresses, status.addresses,
            "ensure is not idempotent"
        );
        let read = self.driver.status(lb.id()).await.expect("status");
        assert_eq!(
            read.map(|s| s.addresses),
            Some(status.addresses),
            "status() disagrees with ensure()"
        );
    }

    /// Scaling down keeps a current instance; scaling to 0 leaves no address.
    pub async fn scale_changes_take_effect_and_are_stable(&self) {
        let n = self.hosts.len().min(2);
        let lb = self.lb("a", u32::try_from(n).unwrap_or(2));
        let before = self.ensure_settled(&lb, n).await;
        let one = self.ensure_settled(&lb.clone().with_scale(1), 1).await;
        assert_eq!(one.addresses.len(), 1, "scale 1: {one:?}");
        assert!(
            before.addresses.contains(&one.addresses[0]),
            "scaling down moved the instance: {before:?} -> {one:?}"
        );
        let zero = self.ensure_settled(&lb.clone().with_scale(0), 0).await;
        assert!(zero.addresses.is_empty(), "scale 0: {zero:?}");
    }

    /// More instances than hosts: every host is used and a shortfall reported.
    pub async fn shortfall_is_reported(&self) {
        let n = self.hosts.len();
        let lb = self.lb("b", u32::try_from(n + 1).unwrap_or(u32::MAX));
        let status = self.ensure_settled(&lb, n).await;
        assert_eq!(status.addresses.len(), n, "{status:?}");
        let cond = status
            .condition(ConditionKind::Shortfall)
            .unwrap_or_else(|| panic!("no shortfall reported: {status:?}"));
        assert!(
            cond.message
                .starts_with(&format!("wanted {}, placed {n}", n + 1)),
            "{}",
            cond.message
        );
        self.delete(lb.id()).await;
    }

    /// A change made through `ensure` reaches subscribers.
    pub async fn changes_are_published(&self) {
        let mut rx = self.driver.subscribe();
        let lb = self.lb("c", 1);
        self.ensure_settled(&lb, 1).await;
        let deadline = tokio::time::Instant::now() + self.deadline;
        loop {
            match tokio::time::timeout_at(deadline, rx.recv()).await {
                Ok(Ok(u)) if &u.id == lb.id() => break,
                Ok(Ok(_)) | Ok(Err(broadcast::error::RecvError::Lagged(_))) => {}
                Ok(Err(broadcast::error::RecvError::Closed)) => panic!("status channel closed"),
                Err(_) => panic!("no status update for {} was published", lb.id()),
            }
        }
        self.delete(lb.id()).await;
    }

    /// After `ensure_deleted` the driver no longer knows the load balancer;
    /// deleting again is `Ok`.
    pub async fn delete_removes(&self) {
        let lb = self.lb("a", 1);
        self.ensure_settled(&lb, 1).await;
        self.delete(lb.id()).await;
        self.delete(lb.id()).await;
    }

    async fn delete(&self, id: &LbId) {
        let deadline = tokio::time::Instant::now() + self.deadline;
        loop {
            match self.driver.ensure_deleted(id).await {
                Ok(()) => break,
                Err(Error::Retry { after }) if tokio::time::Instant::now() < deadline => {
                    tokio::time::sleep(after.min(Duration::from_secs(1))).await;
                }
                Err(e) => panic!("ensure_deleted {id} failed: {e}"),
            }
        }
        match self.driver.status(id).await {
            Ok(None) => {}
            other => panic!("status after ensure_deleted {id}: {other:?}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> Vec<Host> {
        (2..5)
            .map(|i| Host::new(IpAddr::from([127, 0, 0, i])))
            .collect()
    }

    #[tokio::test]
    async fn the_fake_passes_the_battery() {
        let hosts = hosts();
        let addrs = hosts.iter().map(|h| h.address).collect();
        let driver = Arc::new(FakeDriver::new(hosts));
        Conformance::new(driver, addrs, 80, (IpAddr::from([10, 0, 0, 1]), 8080))
            .run()
            .await;
    }

    #[tokio::test]
    async fn the_fake_moves_instances_off_failed_hosts_and_says_so() {
        let mut hosts = hosts();
        let addrs: Vec<IpAddr> = hosts.iter().map(|h| h.address).collect();
        let driver = FakeDriver::new(hosts.clone());
        let battery = Conformance::new(
            Arc::new(FakeDriver::new(vec![])),
            addrs,
            80,
            (IpAddr::from([10, 0, 0, 1]), 8080),
        );
        let lb = battery.lb("a", 2);
        let mut rx = driver.subscribe();
        let before = driver.ensure(&lb).await.unwrap();
        rx.recv().await.unwrap();
        let failed = before.addresses[0];
        hosts
            .iter_mut()
            .find(|h| h.address == failed)
            .unwrap()
            .healthy = false;
        driver.set_hosts(hosts).await.unwrap();
        let update = rx.recv().await.unwrap();
        let after = update.status.unwrap();
        assert_eq!(after.addresses.len(), 2);
        assert!(!after.addresses.contains(&failed));
        assert!(after.addresses.contains(&before.addresses[1]));
    }

    #[tokio::test]
    async fn the_fake_rejects_snippets_unless_enabled_and_can_fail() {
        let driver = FakeDriver::new(hosts());
        let mut spec = LoadBalancerSpec {
            id: "s".into(),
            scale: 1,
            snippet: Some("timeout server 5s".into()),
            ..Default::default()
        };
        let lb = LoadBalancer::new(&spec).unwrap();
        let err = driver.ensure(&lb).await.unwrap_err();
        assert_eq!(err.to_string(), "load balancer s: snippets are disabled");
        assert!(driver.applied(lb.id()).is_none());
        let driver = driver.with_snippets(true);
        driver.ensure(&lb).await.unwrap();
        assert_eq!(driver.applied(lb.id()).unwrap(), lb);

        driver.fail_next(Error::Retry {
            after: Duration::from_secs(1),
        });
        spec.snippet = None;
        let lb2 = LoadBalancer::new(&spec).unwrap();
        assert!(matches!(
            driver.ensure(&lb2).await,
            Err(Error::Retry { .. })
        ));
        assert_eq!(
            driver.applied(lb.id()).unwrap(),
            lb,
            "a failed ensure changes nothing"
        );
        assert_eq!(driver.ensure_calls(), 3);
    }
}
