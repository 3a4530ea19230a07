//! A fake Rancher server for tests and demos (feature `testing`).
//!
//! [`FakeRancher`] serves the v2-beta project API over HTTP on loopback, in memory, with the
//! habits of the real server that clients depend on:
//!
//! - ids like `1st1` (stacks), `1s5` (services), `1c3` (certificates and registry
//!   credentials), `1sp2` (registries), `1h1` (hosts), `1a7` (projects);
//! - environments (`projects`) at the API root, the served one (the project in
//!   [`FakeRancher::url`]) and any added with [`FakeProject`], with labels; each one's
//!   Kubernetes API proxied at `/r/projects/<id>/kubernetes:6443` to a backend the test
//!   gives (a sandbox cluster), authenticated by the key as bearer token the way Rancher's
//!   kubeconfig carries it ([`crate::KubernetesAccess`]);
//! - collections shaped `{"type": "collection", "data": [...], "pagination": {"next": ...},
//!   "links": ..., "actions": ...}`, paged by `limit` with a `marker`, filtered by any field
//!   (`name=`, `externalId=`, `stackId=`, `removed_null=1`, `name_ne=`, …);
//! - lifecycles: objects pass through transitioning states (`registering`, `activating`,
//!   `updating-active`, `removing`, `purging`, …, with `transitioning: yes`) that settle after
//!   a configurable delay; `remove` leaves a `removed` object that `purge` turns `purged`;
//!   actions are offered in `actions` only in the states where they are valid;
//! - basic authentication with an access key and secret key (401 otherwise);
//! - validation errors in Rancher's shape: `{"type": "error", "status": 422, "code":
//!   "MissingRequired", "fieldName": "stackId", ...}`;
//! - load balancer placement: the fake keeps a set of hosts with labels and IPs and places
//!   each running loadBalancerService's `scale` instances on distinct active hosts that match
//!   its `io.rancher.scheduler.affinity:host_label`, carry none of its
//!   `io.rancher.scheduler.affinity:host_label_ne` pairs, and whose public ports are not taken
//!   by another load balancer (`io.rancher.scheduler.global: "true"`: every such host; the soft
//!   `_soft` and `_soft_ne` labels are accepted and do not change the order). `publicEndpoints` lists every (host IP, public port) pair;
//!   `currentScale` and `healthState` (`healthy`, `degraded`, `unhealthy`) follow. When hosts
//!   change (added, marked unhealthy, removed) instances move.
//!
//! Tests also get fault injection, for the next requests ([`FakeRancher::fail_next`],
//! [`FakeRancher::drop_next`], [`FakeRancher::lose_next_answers`],
//! [`FakeRancher::set_response_delay`]) or for a while ([`FakeRancher::fault_for`] with a
//! [`Fault`]: errors, dropped connections, answers lost after the change was made, slow
//! answers; the server recovers when the time is up), a log of requests ([`FakeRancher::requests`]) and
//! direct access to the state ([`FakeRancher::get`], [`FakeRancher::seed`], host controls).
//!
//! Where the fake chose a behaviour the real server's documentation does not pin down:
//! an action that is not available answers `422 InvalidAction`; a load balancer that cannot
//! place all its instances settles to `active` with `healthState: degraded` (or `unhealthy`
//! with none) and a `transitioningMessage` naming the shortfall, instead of retrying forever.
//!
//! # Using it from another crate's tests
//!
//! Add `rancher-client = { workspace = true, features = ["testing"] }` to the
//! dev-dependencies, start a fake with the hosts the test needs, and give the code under test
//! [`FakeRancher::url`] and the keys (or [`FakeRancher::env`], or [`FakeRancher::client`]).
//! Then assert on what a user would see: the load balancer's `publicEndpoints` through a
//! client, or the fake's view ([`FakeRancher::placements`], [`FakeRancher::requests`]).
//!
//! ```
//! use std::time::Duration;
//! use rancher_client::{
//!     ListParams, LoadBalancerService, Stack, WaitParams,
//!     resource::LaunchConfig,
//!     testing::{FakeHost, FakeRancher},
//! };
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let fake = FakeRancher::builder()
//!     .host(FakeHost::new("node-1", "192.0.2.11").label("ingress", "true"))
//!     .host(FakeHost::new("node-2", "192.0.2.12").extra_ip("198.51.100.12"))
//!     .settle_delay(Duration::from_millis(10))
//!     .start()
//!     .await?;
//! let client = fake.client();
//!
//! // Seed what the code under test expects to find, already active.
//! let stack = fake.seed(&Stack::new("kubernetes-ingress-lbs", "kubernetes-ingress-lbs://"))?;
//!
//! // ... run the code under test; here, by hand:
//! let mut lb = LoadBalancerService::new("default-rancherlb-web", &stack.meta.id);
//! lb.scale = Some(2);
//! lb.start_on_create = Some(true);
//! lb.launch_config = Some(LaunchConfig { ports: vec!["80:80".into()], ..Default::default() });
//! let lb = client.load_balancer_services().create(&lb).await?;
//! let wait = WaitParams::timeout(Duration::from_secs(5)).interval(Duration::from_millis(10));
//! let lb = client.load_balancer_services().wait_settled(&lb.meta.id, &wait).await?;
//! assert_eq!(lb.public_ips().len(), 2);
//!
//! // A host fails: its instance has nowhere to go (two hosts, scale 2).
//! let node1 = fake.host_id("node-1").unwrap();
//! fake.set_host_healthy(&node1, false);
//! let lb = client.load_balancer_services().get(&lb.meta.id).await?;
//! assert_eq!(lb.public_ips(), vec!["192.0.2.12"]);
//! assert_eq!(lb.health_state.as_deref(), Some("degraded"));
//!
//! // Faults for the next requests.
//! fake.fail_next(2); // two 500s: reads are retried and succeed
//! client.hosts().list(&ListParams::new()).await?;
//! # Ok(()) }
//! ```
//!
//! A fake on a fixed address ([`FakeRancherBuilder::bind`]) serves other processes too, for
//! as long as the runtime that started it runs.

// The fake passes Rancher error bodies and HTTP responses by value on its error paths; they
// are cold paths of test code, so boxing them would only add noise.
#![allow(clippy::result_large_err)]

mod access;
mod faults;
mod http;
mod kubernetes;
mod store;

use std::{collections::BTreeMap, net::SocketAddr, sync::Arc, time::Duration};

use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use access::{ADMIN_ACCOUNT_ID, FakeUser, GROUP_ID_TYPE};
pub use kubernetes::FakeProject;
pub use store::FakeHost;

use crate::{
    Client, Config, Credentials, Host, LoadBalancerService, Project, Resource, RetryPolicy,
    error::ErrorBody,
    resource::{LB_INSTANCE_IMAGE, state},
};
pub use faults::Fault;
use faults::Faults;
use http::{Shared, lock};
use store::{Kind, Store};

/// Access key the fake accepts unless the builder sets another.
pub const DEFAULT_ACCESS_KEY: &str = "fake-access-key";
/// Secret key the fake accepts unless the builder sets another.
pub const DEFAULT_SECRET_KEY: &str = "fake-secret-key";
/// Project id in the fake's URL unless the builder sets another.
pub const DEFAULT_PROJECT_ID: &str = "1a5";
/// The value of the `lb.instance.image` setting.
pub const DEFAULT_LB_IMAGE: &str = "rancher/lb-service-haproxy:v0.9.14";

/// A request the fake received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path, e.g. `/v2-beta/projects/1a5/loadbalancerservices/1s1`.
    pub path: String,
    /// The raw query, e.g. `action=activate`.
    pub query: Option<String>,
    /// The status answered; `None` when the connection was dropped.
    pub status: Option<u16>,
}

impl RecordedRequest {
    /// Whether this is `method` on a path ending with `suffix`.
    pub fn is(&self, method: &str, suffix: &str) -> bool {
        self.method == method && self.path.ends_with(suffix)
    }
}

/// Builds a [`FakeRancher`].
#[derive(Clone, Debug)]
pub struct FakeRancherBuilder {
    bind: SocketAddr,
    project_id: String,
    credentials: Option<Credentials>,
    hosts: Vec<FakeHost>,
    settle_delay: Duration,
    page_limit: usize,
    settings: BTreeMap<String, String>,
    served_project: FakeProject,
    projects: Vec<FakeProject>,
    users: Vec<FakeUser>,
}

impl Default for FakeRancherBuilder {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            project_id: DEFAULT_PROJECT_ID.to_owned(),
            credentials: Some(Credentials::new(DEFAULT_ACCESS_KEY, DEFAULT_SECRET_KEY)),
            hosts: Vec::new(),
            settle_delay: Duration::from_millis(50),
            page_limit: 100,
            settings: BTreeMap::from([(LB_INSTANCE_IMAGE.to_owned(), DEFAULT_LB_IMAGE.to_owned())]),
            served_project: FakeProject::new("Default"),
            projects: Vec::new(),
            users: Vec::new(),
        }
    }
}

impl FakeRancherBuilder {
    /// Address to listen on; default `127.0.0.1:0` (a free port).
    pub fn bind(mut self, addr: SocketAddr) -> Self {
        self.bind = addr;
        self
    }

    /// The project id in the URL; default [`DEFAULT_PROJECT_ID`].
    pub fn project_id(mut self, id: impl Into<String>) -> Self {
        self.project_id = id.into();
        self
    }

    /// The key pair the server accepts; default [`DEFAULT_ACCESS_KEY`] /
    /// [`DEFAULT_SECRET_KEY`].
    pub fn credentials(
        mut self,
        access_key: impl Into<String>,
        secret_key: impl Into<String>,
    ) -> Self {
        self.credentials = Some(Credentials::new(access_key.into(), secret_key.into()));
        self
    }

    /// Accept requests without authentication.
    pub fn no_auth(mut self) -> Self {
        self.credentials = None;
        self
    }

    /// Adds a host.
    pub fn host(mut self, host: FakeHost) -> Self {
        self.hosts.push(host);
        self
    }

    /// Adds hosts.
    pub fn hosts(mut self, hosts: impl IntoIterator<Item = FakeHost>) -> Self {
        self.hosts.extend(hosts);
        self
    }

    /// How long each transitioning state lasts; default 50 ms. Zero settles on the next
    /// request.
    pub fn settle_delay(mut self, delay: Duration) -> Self {
        self.settle_delay = delay;
        self
    }

    /// Default page size of collections; default 100 (as Rancher).
    pub fn page_limit(mut self, limit: usize) -> Self {
        self.page_limit = limit.max(1);
        self
    }

    /// The environment the fake serves stacks, services, hosts, … under (the project in
    /// [`FakeRancher::url`]); default a Kubernetes environment named `Default`.
    pub fn served_project(mut self, project: FakeProject) -> Self {
        self.served_project = project;
        self
    }

    /// Adds another environment. It is listed under `/v2-beta/projects` (with its id from
    /// [`FakeRancher::project_id_by_name`]) and its Kubernetes proxy works; its own
    /// collections are not served.
    pub fn project(mut self, project: FakeProject) -> Self {
        self.projects.push(project);
        self
    }

    /// Adds a user account with its own API key (and, with [`FakeUser::role`], its
    /// membership of the served environment).
    pub fn user(mut self, user: FakeUser) -> Self {
        self.users.push(user);
        self
    }

    /// Sets a server setting.
    pub fn setting(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.settings.insert(name.into(), value.into());
        self
    }

    /// Binds the listener and starts serving on the current tokio runtime.
    pub async fn start(self) -> std::io::Result<FakeRancher> {
        let listener = TcpListener::bind(self.bind).await?;
        let addr = listener.local_addr()?;
        let origin = format!("http://{addr}");
        let base_url = format!("{origin}/v2-beta/projects/{}", self.project_id);
        let mut store = Store::new(self.project_id.clone(), base_url.clone(), self.settle_delay);
        store.page_limit = self.page_limit;
        for (name, value) in &self.settings {
            store
                .seed(
                    Kind::Setting,
                    json!({"name": name, "value": value}),
                    state::ACTIVE,
                )
                .map_err(|e| std::io::Error::other(format!("setting {name}: {e:?}")))?;
        }
        for host in self.hosts {
            store.add_host(host);
        }
        let served = &self.served_project;
        store
            .insert_served_project(served.body())
            .map_err(|e| std::io::Error::other(format!("project {}: {e:?}", served.name)))?;
        if let Some(url) = &served.kubernetes {
            store
                .kube_backends
                .insert(self.project_id.clone(), url.clone());
        }
        for project in &self.projects {
            let created = store
                .seed(Kind::Project, project.body(), state::ACTIVE)
                .map_err(|e| std::io::Error::other(format!("project {}: {e:?}", project.name)))?;
            if let (Some(url), Some(id)) = (&project.kubernetes, created["id"].as_str()) {
                store.kube_backends.insert(id.to_owned(), url.clone());
            }
        }
        let shared = Arc::new(Shared {
            store: std::sync::Mutex::new(store),
            faults: std::sync::Mutex::new(Faults::default()),
            requests: std::sync::Mutex::new(Vec::new()),
            credentials: self.credentials,
            project_id: self.project_id,
            origin,
            accounts: std::sync::Mutex::new(Vec::new()),
        });
        for user in self.users {
            let login = user.login.clone();
            access::add_account(&shared, user)
                .map_err(|e| std::io::Error::other(format!("user {login}: {e:?}")))?;
        }
        let shutdown = CancellationToken::new();
        tokio::spawn(http::serve(listener, shared.clone(), shutdown.clone()));
        Ok(FakeRancher {
            shared,
            addr,
            base_url,
            guard: Arc::new(ShutdownGuard(shutdown)),
        })
    }
}

#[derive(Debug)]
struct ShutdownGuard(CancellationToken);

impl Drop for ShutdownGuard {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// A running fake Rancher server. Clones share the server; it stops when the last clone is
/// dropped or on [`FakeRancher::shutdown`]. `Debug` shows neither the secret key nor stored
/// secrets (registry passwords, certificate keys).
#[derive(Clone)]
pub struct FakeRancher {
    shared: Arc<Shared>,
    addr: SocketAddr,
    base_url: String,
    guard: Arc<ShutdownGuard>,
}

impl std::fmt::Debug for FakeRancher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeRancher")
            .field("url", &self.base_url)
            .field("credentials", &self.shared.credentials)
            .finish_non_exhaustive()
    }
}

impl FakeRancher {
    /// A builder with the defaults: `127.0.0.1:0`, project `1a5`, keys
    /// [`DEFAULT_ACCESS_KEY`]/[`DEFAULT_SECRET_KEY`], no hosts, 50 ms settle delay.
    pub fn builder() -> FakeRancherBuilder {
        FakeRancherBuilder::default()
    }

    /// The versioned project URL, the value for `CATTLE_URL`.
    pub fn url(&self) -> &str {
        &self.base_url
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The key pair the server accepts, if it checks authentication.
    pub fn credentials(&self) -> Option<&Credentials> {
        self.shared.credentials.as_ref()
    }

    /// `CATTLE_URL`, `CATTLE_ACCESS_KEY` and `CATTLE_SECRET_KEY` for the code under test.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![(crate::ENV_URL, self.base_url.clone())];
        if let Some(c) = &self.shared.credentials {
            env.push((crate::ENV_ACCESS_KEY, c.access_key.clone()));
            env.push((crate::ENV_SECRET_KEY, c.secret_key.expose().to_owned()));
        }
        env
    }

    /// A client configuration for this server with its keys, a 10 s timeout and quick
    /// retries (3 retries from 10 ms).
    pub fn config(&self) -> Config {
        // The URL is built by the fake, so it parses.
        let mut config = Config::new(&self.base_url)
            .unwrap_or_else(|e| unreachable!("fake url {} is invalid: {e}", self.base_url))
            .timeout(Duration::from_secs(10))
            .retry(RetryPolicy {
                max_retries: 3,
                initial_backoff: Duration::from_millis(10),
                max_backoff: Duration::from_millis(100),
            });
        if let Some(c) = &self.shared.credentials {
            config = config.credentials(c.clone());
        }
        config
    }

    /// A client for this server (see [`FakeRancher::config`]). Installs the ring crypto
    /// provider first if the process has none, since this is test code.
    pub fn client(&self) -> Client {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            let _ = rustls::crypto::ring::default_provider().install_default();
        }
        Client::new(self.config())
            .unwrap_or_else(|e| unreachable!("client for the fake server: {e}"))
    }

    /// Stops serving; open connections are closed.
    pub fn shutdown(&self) {
        self.guard.0.cancel();
    }

    // ----- requests --------------------------------------------------------------------

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.shared.requests).clone()
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        lock(&self.shared.requests).clear();
    }

    // ----- lifecycle -------------------------------------------------------------------

    /// Changes how long each transitioning state lasts.
    pub fn set_settle_delay(&self, delay: Duration) {
        self.shared.store().settle_delay = delay;
    }

    /// Completes every pending transition now.
    pub fn settle_now(&self) {
        self.shared.store().settle_now();
    }

    /// Ends the current transition of an object with `transitioning: error` and `message`.
    /// Returns false if there is no such object.
    pub fn fail_transition<R: Resource>(&self, id: &str, message: &str) -> bool {
        match Kind::from_type(R::TYPE) {
            Some(kind) => self.shared.store().fail_transition(kind, id, message),
            None => false,
        }
    }

    // ----- state -----------------------------------------------------------------------

    /// One object as a client would read it, `None` if absent (or of a type the fake does
    /// not serve).
    pub fn get<R: Resource>(&self, id: &str) -> Option<R> {
        let kind = Kind::from_type(R::TYPE)?;
        let value = self.shared.store().get(kind, id).ok()?;
        serde_json::from_value(value).ok()
    }

    /// Every object of a type, removed ones included, oldest first.
    pub fn list<R: Resource>(&self) -> Vec<R> {
        let Some(kind) = Kind::from_type(R::TYPE) else {
            return Vec::new();
        };
        let store = self.shared.store();
        store
            .records(kind)
            .filter_map(|r| serde_json::from_value(store.render(r)).ok())
            .collect()
    }

    /// Stores an object directly, already settled (`active`), validated as a create would
    /// be. Use it to seed registries, credentials, certificates, stacks or settings.
    pub fn seed<R: Resource>(&self, object: &R) -> Result<R, ErrorBody> {
        let kind = Kind::from_type(R::TYPE).ok_or_else(|| {
            ErrorBody::new(
                404,
                "NotFound",
                format!("the fake does not serve {}", R::TYPE),
            )
        })?;
        if kind == Kind::Host {
            return Err(ErrorBody::new(
                422,
                "InvalidType",
                "add hosts with add_host",
            ));
        }
        let value = serde_json::to_value(object)
            .map_err(|e| ErrorBody::new(422, "InvalidBodyContent", e.to_string()))?;
        let stored = self.shared.store().seed(kind, value, state::ACTIVE)?;
        serde_json::from_value(stored)
            .map_err(|e| ErrorBody::new(500, "ServerError", e.to_string()))
    }

    /// Sets a server setting, creating it if needed.
    pub fn set_setting(&self, name: &str, value: &str) {
        let mut store = self.shared.store();
        let update = json!({"value": value});
        if store.update(Kind::Setting, name, update).is_err() {
            let _ = store.seed(
                Kind::Setting,
                json!({"name": name, "value": value}),
                state::ACTIVE,
            );
        }
    }

    // ----- hosts -----------------------------------------------------------------------

    /// Adds a host; returns its id. Load balancers short of instances are placed on it.
    pub fn add_host(&self, host: FakeHost) -> String {
        self.shared.store().add_host(host)
    }

    /// Every host, removed ones included.
    pub fn hosts(&self) -> Vec<Host> {
        self.list()
    }

    /// The id of the host with this hostname.
    pub fn host_id(&self, hostname: &str) -> Option<String> {
        self.hosts()
            .into_iter()
            .find(|h| h.hostname == hostname && !h.meta.is_removed())
            .map(|h| h.meta.id)
    }

    /// Marks a host's agent connected (`agentState: active`) or `disconnected`. Instances on
    /// a disconnected host move to other eligible hosts. Returns false if there is no such
    /// host.
    pub fn set_host_healthy(&self, id: &str, healthy: bool) -> bool {
        let mut store = self.shared.store();
        let Some(body) = store.host_mut(id) else {
            return false;
        };
        let agent = if healthy { "active" } else { "disconnected" };
        body.insert("agentState".into(), json!(agent));
        store.place();
        true
    }

    /// Replaces a host's labels. Returns false if there is no such host.
    pub fn set_host_labels(&self, id: &str, labels: BTreeMap<String, String>) -> bool {
        let mut store = self.shared.store();
        let Some(body) = store.host_mut(id) else {
            return false;
        };
        body.insert("labels".into(), json!(labels));
        store.place();
        true
    }

    /// Removes a host; its instances move. Returns false if there is no such host.
    pub fn remove_host(&self, id: &str) -> bool {
        self.shared.store().remove_host(id)
    }

    // ----- environments ----------------------------------------------------------------

    /// Adds an environment; returns its id.
    pub fn add_project(&self, project: FakeProject) -> Result<String, ErrorBody> {
        let mut store = self.shared.store();
        let created = store.seed(Kind::Project, project.body(), state::ACTIVE)?;
        let id = created["id"].as_str().unwrap_or_default().to_owned();
        if let Some(url) = project.kubernetes {
            store.kube_backends.insert(id.clone(), url);
        }
        Ok(id)
    }

    /// Every environment, removed ones included, the served one first.
    pub fn projects(&self) -> Vec<Project> {
        self.list()
    }

    /// The id of the environment with this name that is not removed.
    pub fn project_id_by_name(&self, name: &str) -> Option<String> {
        self.projects()
            .into_iter()
            .find(|p| p.meta.name.as_deref() == Some(name) && !p.meta.is_removed())
            .map(|p| p.meta.id)
    }

    /// Replaces an environment's labels (as an update through the API would). Returns false if
    /// there is no such environment or it is removed.
    pub fn set_project_labels(&self, id: &str, labels: BTreeMap<String, String>) -> bool {
        self.shared
            .store()
            .update(Kind::Project, id, json!({ "labels": labels }))
            .is_ok()
    }

    /// Removes an environment (the `remove` action). Returns false if there is no such
    /// environment or it cannot be removed in its state.
    pub fn remove_project(&self, id: &str) -> bool {
        self.shared
            .store()
            .action(
                Kind::Project,
                id,
                crate::resource::action::REMOVE,
                json!({}),
            )
            .is_ok()
    }

    // ----- accounts and members ------------------------------------------------------

    /// Adds a user account with its own API key; returns the account id (its identity is
    /// `rancher_id:<id>`).
    pub fn add_user(&self, user: FakeUser) -> Result<String, ErrorBody> {
        access::add_account(&self.shared, user)
    }

    /// The account id of the user with this login.
    pub fn user_id(&self, login: &str) -> Option<String> {
        http::lock(&self.shared.accounts)
            .iter()
            .find(|a| a.user.login == login)
            .map(|a| a.id.clone())
    }

    /// Makes the identity `external_id_type:external_id` (a user account is
    /// `rancher_id:<account id>`, a group `ldap_group:<name>`) a member of environment
    /// `project_id` with `role`; returns the member id.
    pub fn add_member(
        &self,
        project_id: &str,
        external_id_type: &str,
        external_id: &str,
        role: &str,
    ) -> Result<String, ErrorBody> {
        let body = json!({"projectId": project_id, "externalId": external_id,
            "externalIdType": external_id_type, "role": role});
        let created = self
            .shared
            .store()
            .seed(Kind::ProjectMember, body, state::ACTIVE)?;
        Ok(created["id"].as_str().unwrap_or_default().to_owned())
    }

    /// Removes the user with this login from environment `project_id` (as removing the
    /// member in Rancher's UI does). Returns how many members were removed.
    pub fn remove_user_from(&self, project_id: &str, login: &str) -> usize {
        let Some(id) = self.user_id(login) else {
            return 0;
        };
        let mut store = self.shared.store();
        access::remove_members(&mut store, project_id, |m| {
            m.get("externalIdType").and_then(Value::as_str) == Some(crate::resource::RANCHER_ID)
                && m.get("externalId").and_then(Value::as_str) == Some(id.as_str())
        })
    }

    /// The live members of environment `project_id`.
    pub fn members(&self, project_id: &str) -> Vec<crate::ProjectMember> {
        self.list::<crate::ProjectMember>()
            .into_iter()
            .filter(|m| m.project_id == project_id && !m.meta.is_removed())
            .collect()
    }

    /// Sets (or with `None` clears) the Kubernetes API server behind an environment's proxy at
    /// `/r/projects/<id>/kubernetes:6443`.
    pub fn set_kubernetes_backend(&self, id: &str, url: Option<String>) {
        kubernetes::set_backend(&self.shared, id, url);
    }

    /// Ids of the hosts running instances of a load balancer, in placement order.
    pub fn placements(&self, lb_id: &str) -> Vec<String> {
        self.shared.store().placements(lb_id)
    }

    /// The load balancer, for assertions (same as `get::<LoadBalancerService>`).
    pub fn load_balancer(&self, id: &str) -> Option<LoadBalancerService> {
        self.get(id)
    }

    /// Raw JSON of an object as a client would read it.
    pub fn raw<R: Resource>(&self, id: &str) -> Option<Value> {
        let kind = Kind::from_type(R::TYPE)?;
        self.shared.store().get(kind, id).ok()
    }
}
