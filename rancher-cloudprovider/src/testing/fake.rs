//! A fake provider that records calls and keeps its load balancers in memory.

use std::{
    collections::{BTreeMap, HashMap, VecDeque},
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
    time::Duration,
};

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::{
    error::{Error, Result},
    model::{Ingress, LoadBalancerStatus, Node, NodeAddress, Service, ServiceKey, Zone},
    provider::{Cloud, Instances, LoadBalancer, Zones},
};

/// One recorded provider call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// `get_load_balancer`.
    Get(ServiceKey),
    /// `ensure_load_balancer` with the node names passed.
    Ensure(ServiceKey, Vec<String>),
    /// `update_load_balancer` with the node names passed.
    Update(ServiceKey, Vec<String>),
    /// `ensure_load_balancer_deleted`.
    Delete(ServiceKey),
}

impl Call {
    /// The Service the call was about.
    pub fn key(&self) -> &ServiceKey {
        match self {
            Self::Get(key) | Self::Ensure(key, _) | Self::Update(key, _) | Self::Delete(key) => key,
        }
    }
}

/// A scripted failure for the next calls of one kind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// [`Error::Retry`] with this delay.
    Retry(Duration),
    /// [`Error::Other`] with this message.
    Error(String),
    /// [`Error::ImplementedElsewhere`].
    ImplementedElsewhere,
}

impl Failure {
    fn to_error(&self) -> Error {
        match self {
            Self::Retry(after) => Error::retry(*after, "fake load balancer provisioning"),
            Self::Error(message) => Error::other(message.clone()),
            Self::ImplementedElsewhere => Error::ImplementedElsewhere,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Op {
    Ensure,
    Update,
    Delete,
}

/// One load balancer the fake holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FakeBalancer {
    /// The name from [`LoadBalancer::load_balancer_name`].
    pub name: String,
    /// The Service as last ensured or updated.
    pub service: Service,
    /// The node names as last ensured or updated.
    pub nodes: Vec<String>,
    /// The status returned.
    pub status: LoadBalancerStatus,
}

#[derive(Debug, Default)]
struct LbState {
    calls: Vec<Call>,
    balancers: BTreeMap<ServiceKey, FakeBalancer>,
    failures: HashMap<(Op, Option<ServiceKey>), VecDeque<Failure>>,
    next_address: u32,
}

/// A [`LoadBalancer`] that records calls and hands out one address per Service
/// from `100.64.0.0/10`. Cheap to clone; clones share state.
#[derive(Clone, Debug)]
pub struct FakeLoadBalancer {
    state: Arc<Mutex<LbState>>,
    changes: tokio::sync::broadcast::Sender<String>,
}

impl Default for FakeLoadBalancer {
    fn default() -> Self {
        Self {
            state: Arc::default(),
            changes: tokio::sync::broadcast::channel(1024).0,
        }
    }
}

impl FakeLoadBalancer {
    /// An empty fake.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<Call> {
        self.state.lock().calls.clone()
    }

    /// The calls about `key`, in order.
    pub fn calls_for(&self, key: &ServiceKey) -> Vec<Call> {
        self.state
            .lock()
            .calls
            .iter()
            .filter(|call| call.key() == key)
            .cloned()
            .collect()
    }

    /// Forgets the recorded calls (not the load balancers).
    pub fn clear_calls(&self) {
        self.state.lock().calls.clear();
    }

    /// The load balancer for `key`, if one exists.
    pub fn balancer(&self, key: &ServiceKey) -> Option<FakeBalancer> {
        self.state.lock().balancers.get(key).cloned()
    }

    /// Changes the status of the load balancer for `key` behind the controller's
    /// back (as a crashed or moved instance would) and reports it on
    /// [`LoadBalancer::status_changes`]. `false` if there is none.
    pub fn set_status(&self, key: &ServiceKey, status: LoadBalancerStatus) -> bool {
        let name = {
            let mut state = self.state.lock();
            let Some(lb) = state.balancers.get_mut(key) else {
                return false;
            };
            lb.status = status;
            lb.name.clone()
        };
        let _ = self.changes.send(name);
        true
    }

    /// The number of load balancers that exist.
    pub fn len(&self) -> usize {
        self.state.lock().balancers.len()
    }

    /// Whether no load balancer exists.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The next `times` ensures (of `key`, or of any Service with `None`) fail
    /// with `failure`, before anything changes.
    pub fn fail_ensure(&self, key: Option<ServiceKey>, failure: Failure, times: usize) {
        self.script(Op::Ensure, key, failure, times);
    }

    /// The next `times` updates fail with `failure`.
    pub fn fail_update(&self, key: Option<ServiceKey>, failure: Failure, times: usize) {
        self.script(Op::Update, key, failure, times);
    }

    /// The next `times` deletes fail with `failure`.
    pub fn fail_delete(&self, key: Option<ServiceKey>, failure: Failure, times: usize) {
        self.script(Op::Delete, key, failure, times);
    }

    fn script(&self, op: Op, key: Option<ServiceKey>, failure: Failure, times: usize) {
        let mut state = self.state.lock();
        let queue = state.failures.entry((op, key)).or_default();
        queue.extend(std::iter::repeat_n(failure, times));
    }

    fn scripted(state: &mut LbState, op: Op, key: &ServiceKey) -> Option<Error> {
        for slot in [Some(key.clone()), None] {
            if let Some(queue) = state.failures.get_mut(&(op, slot))
                && let Some(failure) = queue.pop_front()
            {
                return Some(failure.to_error());
            }
        }
        None
    }
}

fn names(nodes: &[Node]) -> Vec<String> {
    nodes.iter().map(|node| node.name.clone()).collect()
}

#[async_trait]
impl LoadBalancer for FakeLoadBalancer {
    async fn get_load_balancer(
        &self,
        _cluster: &str,
        service: &Service,
    ) -> Result<Option<LoadBalancerStatus>> {
        let mut state = self.state.lock();
        state.calls.push(Call::Get(service.key.clone()));
        Ok(state
            .balancers
            .get(&service.key)
            .filter(|lb| lb.service.uid == service.uid)
            .map(|lb| lb.status.clone()))
    }

    fn load_balancer_name(&self, cluster: &str, service: &Service) -> String {
        let uid: String = service.uid.chars().filter(|c| *c != '-').collect();
        let mut name = format!("{cluster}-a{uid}");
        name.truncate(63);
        name
    }

    async fn ensure_load_balancer(
        &self,
        cluster: &str,
        service: &Service,
        nodes: &[Node],
    ) -> Result<LoadBalancerStatus> {
        let name = self.load_balancer_name(cluster, service);
        let mut state = self.state.lock();
        state
            .calls
            .push(Call::Ensure(service.key.clone(), names(nodes)));
        if let Some(error) = Self::scripted(&mut state, Op::Ensure, &service.key) {
            return Err(error);
        }
        let status = match state.balancers.get(&service.key) {
            Some(existing) => existing.status.clone(),
            None => {
                let n = state.next_address;
                state.next_address += 1;
                let base = u32::from(Ipv4Addr::new(100, 64, 0, 1));
                LoadBalancerStatus {
                    ingress: vec![Ingress::ip(IpAddr::V4(Ipv4Addr::from(base + n)))],
                }
            }
        };
        state.balancers.insert(
            service.key.clone(),
            FakeBalancer {
                name,
                service: service.clone(),
                nodes: names(nodes),
                status: status.clone(),
            },
        );
        Ok(status)
    }

    async fn update_load_balancer(
        &self,
        _cluster: &str,
        service: &Service,
        nodes: &[Node],
    ) -> Result<()> {
        let mut state = self.state.lock();
        state
            .calls
            .push(Call::Update(service.key.clone(), names(nodes)));
        if let Some(error) = Self::scripted(&mut state, Op::Update, &service.key) {
            return Err(error);
        }
        if let Some(lb) = state.balancers.get_mut(&service.key) {
            lb.service = service.clone();
            lb.nodes = names(nodes);
        }
        Ok(())
    }

    async fn ensure_load_balancer_deleted(&self, _cluster: &str, service: &Service) -> Result<()> {
        let mut state = self.state.lock();
        state.calls.push(Call::Delete(service.key.clone()));
        if let Some(error) = Self::scripted(&mut state, Op::Delete, &service.key) {
            return Err(error);
        }
        state.balancers.remove(&service.key);
        Ok(())
    }

    fn status_changes(&self) -> Option<tokio::sync::broadcast::Receiver<String>> {
        Some(self.changes.subscribe())
    }
}

/// What [`FakeInstances`] knows about one node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FakeInstance {
    /// The instance ID (the provider ID is `fake://<id>`).
    pub id: String,
    /// The addresses reported.
    pub addresses: Vec<NodeAddress>,
    /// The zone reported.
    pub zone: Zone,
    /// The instance type reported, if any.
    pub instance_type: Option<String>,
}

/// [`Instances`] and [`Zones`] from a table of node names. Cheap to clone.
#[derive(Clone, Debug, Default)]
pub struct FakeInstances {
    instances: Arc<Mutex<BTreeMap<String, FakeInstance>>>,
}

impl FakeInstances {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets what is known about node `name`.
    pub fn insert(&self, name: impl Into<String>, instance: FakeInstance) {
        self.instances.lock().insert(name.into(), instance);
    }

    /// Forgets node `name`: it no longer exists.
    pub fn remove(&self, name: &str) {
        self.instances.lock().remove(name);
    }

    fn get(&self, node: &Node) -> Result<FakeInstance> {
        self.instances
            .lock()
            .get(&node.name)
            .cloned()
            .ok_or_else(|| Error::InstanceNotFound {
                node: node.name.clone(),
            })
    }
}

#[async_trait]
impl Instances for FakeInstances {
    async fn node_addresses(&self, node: &Node) -> Result<Vec<NodeAddress>> {
        Ok(self.get(node)?.addresses)
    }

    async fn provider_id(&self, node: &Node) -> Result<String> {
        Ok(format!("fake://{}", self.get(node)?.id))
    }

    async fn instance_exists(&self, node: &Node) -> Result<bool> {
        Ok(self.instances.lock().contains_key(&node.name))
    }

    async fn instance_type(&self, node: &Node) -> Result<String> {
        self.get(node)?.instance_type.ok_or(Error::NotImplemented {
            what: "instance type",
        })
    }
}

#[async_trait]
impl Zones for FakeInstances {
    async fn zone(&self, node: &Node) -> Result<Zone> {
        Ok(self.get(node)?.zone)
    }
}

/// A [`Cloud`] made of a [`FakeLoadBalancer`] and, optionally, [`FakeInstances`].
#[derive(Clone, Debug, Default)]
pub struct FakeCloud {
    /// The load balancers.
    pub load_balancer: FakeLoadBalancer,
    /// The instances and zones, when the node controller should run.
    pub instances: Option<FakeInstances>,
}

impl Cloud for FakeCloud {
    fn provider_name(&self) -> &str {
        "fake"
    }

    fn load_balancer(&self) -> Option<Arc<dyn LoadBalancer>> {
        Some(Arc::new(self.load_balancer.clone()))
    }

    fn instances(&self) -> Option<Arc<dyn Instances>> {
        self.instances
            .clone()
            .map(|instances| Arc::new(instances) as Arc<dyn Instances>)
    }

    fn zones(&self) -> Option<Arc<dyn Zones>> {
        self.instances
            .clone()
            .map(|instances| Arc::new(instances) as Arc<dyn Zones>)
    }
}
