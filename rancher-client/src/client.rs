//! The HTTP client: configuration, authentication, retries and error mapping.

use std::{fmt, sync::Arc, time::Duration};

use reqwest::{Method, StatusCode, Url, header};
use serde::{Serialize, de::DeserializeOwned};

use crate::{
    Api, Certificate, Error, Host, Identity, KubernetesAccess, ListParams, LoadBalancerService,
    Project, ProjectMember, Registry, RegistryCredential, Result, Secret, Setting, Stack,
    resource::{Collection, Resource, Scope},
};

/// Environment variable holding the versioned API root, e.g.
/// `http://rancher.example.org:8080/v2-beta/projects/1a5`.
pub const ENV_URL: &str = "CATTLE_URL";
/// Environment variable holding the access key (the basic-auth user).
pub const ENV_ACCESS_KEY: &str = "CATTLE_ACCESS_KEY";
/// Environment variable holding the secret key (the basic-auth password).
pub const ENV_SECRET_KEY: &str = "CATTLE_SECRET_KEY";

/// An API key pair. `Debug` shows the access key and hides the secret key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// The access key, sent as the basic-auth user name.
    pub access_key: String,
    /// The secret key, sent as the basic-auth password.
    pub secret_key: Secret,
}

impl Credentials {
    /// A key pair.
    pub fn new(access_key: impl Into<String>, secret_key: impl Into<Secret>) -> Self {
        Self {
            access_key: access_key.into(),
            secret_key: secret_key.into(),
        }
    }
}

/// When and how often failed requests are retried.
///
/// Connect errors are retried for every method. GET, PUT and DELETE are also retried on other
/// transport errors (a dropped connection) and on any 5xx. POST (create and actions) is not
/// idempotent, so it is retried on 5xx only for 502, 503 and 504, which gateways send before
/// the request reaches Rancher. 4xx and timeouts are never retried.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Retries after the first attempt; 0 disables retrying.
    pub max_retries: u32,
    /// Delay before the first retry; doubled each time, with jitter.
    pub initial_backoff: Duration,
    /// Upper bound of one delay.
    pub max_backoff: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_retries: 3,
            initial_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(5),
        }
    }
}

impl RetryPolicy {
    /// Never retry.
    pub fn none() -> Self {
        Self {
            max_retries: 0,
            ..Self::default()
        }
    }

    /// The delay before retry number `attempt` (0-based): exponential, capped, with jitter
    /// in `[d/2, d]`.
    fn backoff(&self, attempt: u32) -> Duration {
        let base = self
            .initial_backoff
            .saturating_mul(2u32.saturating_pow(attempt.min(16)))
            .min(self.max_backoff);
        let half = base / 2;
        let jitter_ms = u64::try_from(half.as_millis()).unwrap_or(u64::MAX);
        half + Duration::from_millis(fastrand::u64(0..=jitter_ms))
    }
}

/// Client configuration.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// The versioned project API root, e.g. `http://rancher:8080/v2-beta/projects/1a5`.
    pub url: Url,
    /// The key pair; `None` sends no authentication.
    pub credentials: Option<Credentials>,
    /// Total time for one HTTP attempt.
    pub timeout: Duration,
    /// Time to establish a connection.
    pub connect_timeout: Duration,
    /// Retry policy.
    pub retry: RetryPolicy,
}

impl Config {
    /// A configuration for the given versioned API root, without credentials.
    ///
    /// The URL must be `http` or `https` and must not carry a user or password (put keys in
    /// [`Config::credentials`], so they never show up in URLs, logs or errors).
    pub fn new(url: &str) -> Result<Self> {
        let url = Url::parse(url.trim()).map_err(|e| Error::Config {
            message: format!("{ENV_URL}: cannot parse the url: {e}"),
        })?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(Error::Config {
                message: format!(
                    "{ENV_URL}: scheme must be http or https, not {}",
                    url.scheme()
                ),
            });
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::Config {
                message: format!(
                    "{ENV_URL}: the url must not contain credentials; use {ENV_ACCESS_KEY} and {ENV_SECRET_KEY}"
                ),
            });
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(Error::Config {
                message: format!("{ENV_URL}: the url must not have a query or fragment"),
            });
        }
        Ok(Self {
            url,
            credentials: None,
            timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(5),
            retry: RetryPolicy::default(),
        })
    }

    /// Reads `CATTLE_URL`, `CATTLE_ACCESS_KEY` and `CATTLE_SECRET_KEY`. The URL is required;
    /// the keys are optional but must be set together.
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`Config::from_env`], reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let url = get(ENV_URL).ok_or_else(|| Error::Config {
            message: format!("{ENV_URL} is not set"),
        })?;
        let config = Self::new(&url)?;
        match (get(ENV_ACCESS_KEY), get(ENV_SECRET_KEY)) {
            (Some(access), Some(secret)) => {
                Ok(config.credentials(Credentials::new(access, secret)))
            }
            (None, None) => Ok(config),
            (Some(_), None) => Err(Error::Config {
                message: format!("{ENV_ACCESS_KEY} is set but {ENV_SECRET_KEY} is not"),
            }),
            (None, Some(_)) => Err(Error::Config {
                message: format!("{ENV_SECRET_KEY} is set but {ENV_ACCESS_KEY} is not"),
            }),
        }
    }

    /// Sets the key pair.
    pub fn credentials(mut self, credentials: Credentials) -> Self {
        self.credentials = Some(credentials);
        self
    }

    /// Sets the per-attempt timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets the connect timeout.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sets the retry policy.
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }
}

/// A client for one Rancher project (environment).
///
/// Cheap to clone (the state is behind an `Arc`), `Send + Sync`. `Debug` never shows the secret
/// key.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    config: Config,
    /// The project URL as a string without a trailing slash.
    base: String,
    /// The versioned API root (`…/v2-beta`) without a trailing slash.
    api_root: String,
    /// The project id in the URL, if it names one.
    project_id: Option<String>,
}

/// Splits a configured URL path into the versioned API root and the project id:
/// `/v2-beta/projects/1a5` → (`/v2-beta`, `1a5`); `/v2-beta` → (`/v2-beta`, none).
fn split_project(base: &str) -> (String, Option<String>) {
    if let Some((root, id)) = base.rsplit_once("/projects/")
        && !id.is_empty()
        && !id.contains('/')
    {
        return (root.to_owned(), Some(id.to_owned()));
    }
    (base.to_owned(), None)
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("url", &self.inner.base)
            .field("credentials", &self.inner.config.credentials)
            .field("timeout", &self.inner.config.timeout)
            .field("retry", &self.inner.config.retry)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// A client from `CATTLE_URL`, `CATTLE_ACCESS_KEY` and `CATTLE_SECRET_KEY`.
    pub fn from_env() -> Result<Self> {
        Self::new(Config::from_env()?)
    }

    /// A client from a configuration.
    ///
    /// A rustls crypto provider must be installed first (for example with
    /// `rustls::crypto::ring::default_provider().install_default()`); without one this
    /// returns [`Error::Config`].
    pub fn new(config: Config) -> Result<Self> {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            return Err(Error::Config {
                message: "no rustls crypto provider is installed; install the ring provider \
                          before building a client"
                    .to_owned(),
            });
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.connect_timeout)
            .user_agent(concat!("rancher-client/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config {
                message: format!("cannot build the http client: {e}"),
            })?;
        let base = config.url.as_str().trim_end_matches('/').to_owned();
        let (api_root, project_id) = split_project(&base);
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                config,
                base,
                api_root,
                project_id,
            }),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    /// Reads the project resource (the `CATTLE_URL` itself): succeeds when Rancher is
    /// reachable and accepts the keys. Meant for readiness checks.
    pub async fn ping(&self) -> Result<()> {
        let url = self.parse(&self.inner.base)?;
        let _: serde_json::Value = self.get_json(url).await?;
        Ok(())
    }

    /// The project (environment) id `CATTLE_URL` names, e.g. `1a5` in
    /// `…/v2-beta/projects/1a5`; `None` when it is the API root.
    pub fn project_id(&self) -> Option<&str> {
        self.inner.project_id.as_deref()
    }

    /// Typed access to one resource type.
    pub fn api<R: Resource>(&self) -> Api<R> {
        Api::new(self.clone())
    }

    /// `stacks`.
    pub fn stacks(&self) -> Api<Stack> {
        self.api()
    }

    /// `loadBalancerServices`.
    pub fn load_balancer_services(&self) -> Api<LoadBalancerService> {
        self.api()
    }

    /// `certificates`.
    pub fn certificates(&self) -> Api<Certificate> {
        self.api()
    }

    /// `registries`.
    pub fn registries(&self) -> Api<Registry> {
        self.api()
    }

    /// `registryCredentials`.
    pub fn registry_credentials(&self) -> Api<RegistryCredential> {
        self.api()
    }

    /// `hosts`.
    pub fn hosts(&self) -> Api<Host> {
        self.api()
    }

    /// `settings`.
    pub fn settings(&self) -> Api<Setting> {
        self.api()
    }

    /// `projects` (environments), at the API root: every project the key's account can see.
    pub fn projects(&self) -> Api<Project> {
        self.api()
    }

    /// `projectmembers`, at the API root: members of environments, with their roles.
    pub fn project_members(&self) -> Api<ProjectMember> {
        self.api()
    }

    /// The members of environment `project_id` that are not removed.
    pub async fn members_of(&self, project_id: &str) -> Result<Vec<ProjectMember>> {
        let params = ListParams::new()
            .filter("projectId", project_id)
            .removed_null();
        self.project_members().list(&params).await
    }

    /// Replaces the members of environment `project_id` (the project's `setmembers` action);
    /// each member's `externalId`, `externalIdType` and `role` are sent.
    pub async fn set_members(&self, project_id: &str, members: &[ProjectMember]) -> Result<()> {
        let members: Vec<serde_json::Value> = members
            .iter()
            .map(|m| {
                serde_json::json!({"externalId": m.external_id,
                    "externalIdType": m.external_id_type, "role": m.role})
            })
            .collect();
        let mut url = self.resource_url(Scope::Api, Project::COLLECTION, project_id)?;
        url.query_pairs_mut().append_pair("action", "setmembers");
        let input = serde_json::json!({ "members": members });
        let _: serde_json::Value = self.send_json(Method::POST, url, Some(&input)).await?;
        Ok(())
    }

    /// `identities`, at the API root: the identities of this client's own key.
    pub fn identities(&self) -> Api<Identity> {
        self.api()
    }

    /// The identities of another API key (the user, then its groups), read with that key
    /// from `/v2-beta/identities`: how a Rancher key presented as a token is resolved to a
    /// user. A key Rancher does not accept is [`Error::Unauthorized`]; it is asked once, not
    /// retried on 5xx, so that a caller on a deadline decides.
    pub async fn identities_of(&self, credentials: &Credentials) -> Result<Vec<Identity>> {
        let mut config = self.inner.config.clone();
        config.credentials = Some(credentials.clone());
        config.retry = RetryPolicy::none();
        let other = Self {
            inner: Arc::new(Inner {
                http: self.inner.http.clone(),
                config,
                base: self.inner.base.clone(),
                api_root: self.inner.api_root.clone(),
                project_id: self.inner.project_id.clone(),
            }),
        };
        other.identities().list(&ListParams::new()).await
    }

    /// How to reach the Kubernetes API of `project` through this Rancher server with this
    /// client's API key, as Rancher's generated kubeconfig does (see [`KubernetesAccess`]).
    /// Fails with [`Error::Config`] when the client has no credentials.
    pub fn kubernetes_access(&self, project: &Project) -> Result<KubernetesAccess> {
        let credentials = self
            .inner
            .config
            .credentials
            .as_ref()
            .ok_or_else(|| Error::Config {
                message: format!(
                    "kubernetes access to project {} needs an API key ({ENV_ACCESS_KEY}, {ENV_SECRET_KEY})",
                    project.meta.id
                ),
            })?;
        KubernetesAccess::for_project(&self.inner.config.url, &project.meta.id, credentials)
    }

    /// Follows the link `link` of `resource` to a single object (e.g. a registry credential's
    /// `registry`).
    pub async fn follow_link<T: DeserializeOwned>(
        &self,
        resource: &impl Resource,
        link: &str,
    ) -> Result<T> {
        let url = self.link_url(resource, link)?;
        self.get_json(url).await
    }

    /// Follows the link `link` of `resource` to a collection (e.g. a host's `ipAddresses`),
    /// reading every page.
    pub async fn follow_link_list<T: DeserializeOwned>(
        &self,
        resource: &impl Resource,
        link: &str,
    ) -> Result<Vec<T>> {
        let url = self.link_url(resource, link)?;
        self.collect_pages(url).await
    }

    fn link_url(&self, resource: &impl Resource, link: &str) -> Result<Url> {
        let meta = resource.meta();
        let href = meta.links.get(link).ok_or_else(|| Error::NoSuchLink {
            resource: resource.display_name(),
            link: link.to_owned(),
        })?;
        self.server_url(href)
    }

    fn scope_base(&self, scope: Scope) -> &str {
        match scope {
            Scope::Api => &self.inner.api_root,
            Scope::Project => &self.inner.base,
        }
    }

    /// `<project url or api root>/<collection>`.
    pub(crate) fn collection_url(&self, scope: Scope, collection: &str) -> Result<Url> {
        self.parse(&format!("{}/{collection}", self.scope_base(scope)))
    }

    /// `<project url or api root>/<collection>/<id>`.
    pub(crate) fn resource_url(&self, scope: Scope, collection: &str, id: &str) -> Result<Url> {
        if id.is_empty() || id == "." || id == ".." || id.contains(['/', '\\', '?', '#', '%']) {
            return Err(Error::InvalidId {
                collection: collection.to_owned(),
                id: id.to_owned(),
            });
        }
        self.parse(&format!("{}/{collection}/{id}", self.scope_base(scope)))
    }

    fn parse(&self, url: &str) -> Result<Url> {
        Url::parse(url).map_err(|e| Error::Config {
            message: format!("invalid url {url:?}: {e}"),
        })
    }

    /// A URL the server sent (a link or `pagination.next`). Its scheme, host and port are
    /// replaced by the configured ones, so that credentials are only ever sent to the
    /// configured server even if Rancher builds links for another address.
    pub(crate) fn server_url(&self, href: &str) -> Result<Url> {
        let mut url = Url::options()
            .base_url(Some(&self.inner.config.url))
            .parse(href)
            .map_err(|e| Error::Config {
                message: format!("invalid url from server {href:?}: {e}"),
            })?;
        let ours = &self.inner.config.url;
        if url.origin() != ours.origin() {
            let rebased = format!(
                "{}{}{}",
                ours.origin().ascii_serialization(),
                url.path(),
                url.query().map(|q| format!("?{q}")).unwrap_or_default()
            );
            url = self.parse(&rebased)?;
        }
        Ok(url)
    }

    pub(crate) async fn get_json<T: DeserializeOwned>(&self, url: Url) -> Result<T> {
        let (path, body) = self.send(Method::GET, url, None).await?;
        decode(&path, &body)
    }

    pub(crate) async fn send_json<T: DeserializeOwned>(
        &self,
        method: Method,
        url: Url,
        body: Option<&impl Serialize>,
    ) -> Result<T> {
        let bytes = match body {
            Some(b) => Some(serde_json::to_vec(b).map_err(|source| Error::Decode {
                path: describe(&url),
                source,
            })?),
            None => None,
        };
        let (path, body) = self.send(method, url, bytes).await?;
        decode(&path, &body)
    }

    /// Reads a collection and every following page.
    pub(crate) async fn collect_pages<T: DeserializeOwned>(&self, first: Url) -> Result<Vec<T>> {
        const MAX_PAGES: usize = 100_000;
        let mut items = Vec::new();
        let mut url = first;
        let mut seen = std::collections::HashSet::new();
        for _ in 0..MAX_PAGES {
            seen.insert(url.to_string());
            let page: Collection<T> = self.get_json(url.clone()).await?;
            items.extend(page.data);
            match page.pagination.and_then(|p| p.next) {
                Some(next) if !next.is_empty() => {
                    let next = self.server_url(&next)?;
                    if seen.contains(next.as_str()) {
                        break;
                    }
                    url = next;
                }
                _ => break,
            }
        }
        Ok(items)
    }

    /// Sends a request with retries; returns the request path (for messages) and the body.
    async fn send(
        &self,
        method: Method,
        url: Url,
        body: Option<Vec<u8>>,
    ) -> Result<(String, bytes::Bytes)> {
        let path = describe(&url);
        let span = tracing::debug_span!("rancher_request", %method, %path);
        let retry = &self.inner.config.retry;
        let idempotent = method != Method::POST;
        let run = async {
            let mut attempt = 0;
            loop {
                let result = self.attempt(&method, &url, &path, body.as_deref()).await;
                match result {
                    Ok(bytes) => return Ok(bytes),
                    Err(err) if attempt < retry.max_retries && retryable(&err, idempotent) => {
                        let delay = retry.backoff(attempt);
                        tracing::debug!(attempt, ?delay, error = %err, "retrying rancher request");
                        tokio::time::sleep(delay).await;
                        attempt += 1;
                    }
                    Err(err) => return Err(err),
                }
            }
        };
        let bytes = tracing::Instrument::instrument(run, span).await?;
        Ok((path, bytes))
    }

    async fn attempt(
        &self,
        method: &Method,
        url: &Url,
        path: &str,
        body: Option<&[u8]>,
    ) -> Result<bytes::Bytes> {
        let mut req = self
            .inner
            .http
            .request(method.clone(), url.clone())
            .header(header::ACCEPT, "application/json");
        if let Some(c) = &self.inner.config.credentials {
            req = req.basic_auth(&c.access_key, Some(c.secret_key.expose()));
        }
        if let Some(body) = body {
            req = req
                .header(header::CONTENT_TYPE, "application/json")
                .body(body.to_vec());
        }
        let transport = |source: reqwest::Error| {
            if source.is_timeout() {
                Error::Timeout {
                    path: path.to_owned(),
                }
            } else {
                Error::Transport {
                    path: path.to_owned(),
                    source: source.without_url(),
                }
            }
        };
        let resp = req.send().await.map_err(transport)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(transport)?;
        tracing::trace!(status = status.as_u16(), "rancher response");
        if status.is_success() {
            Ok(bytes)
        } else {
            Err(Error::from_response(path, status.as_u16(), &bytes))
        }
    }
}

fn retryable(err: &Error, idempotent: bool) -> bool {
    match err {
        Error::Transport { source, .. } => source.is_connect() || idempotent,
        Error::Api { status, .. } => {
            let status = StatusCode::from_u16(*status).unwrap_or(StatusCode::OK);
            if idempotent {
                status.is_server_error()
            } else {
                matches!(
                    status,
                    StatusCode::BAD_GATEWAY
                        | StatusCode::SERVICE_UNAVAILABLE
                        | StatusCode::GATEWAY_TIMEOUT
                )
            }
        }
        _ => false,
    }
}

/// The path and query of a URL, for messages.
fn describe(url: &Url) -> String {
    match url.query() {
        Some(q) => format!("{}?{q}", url.path()),
        None => url.path().to_owned(),
    }
}

fn decode<T: DeserializeOwned>(path: &str, body: &[u8]) -> Result<T> {
    serde_json::from_slice(body).map_err(|source| Error::Decode {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| (*v).to_owned())
        }
    }

    #[test]
    fn config_from_env_variables() {
        let c = Config::from_lookup(lookup(&[
            (
                ENV_URL,
                "http://rancher.example.org:8080/v2-beta/projects/1a5",
            ),
            (ENV_ACCESS_KEY, "AK"),
            (ENV_SECRET_KEY, "SK-very-secret"),
        ]))
        .unwrap();
        assert_eq!(c.url.path(), "/v2-beta/projects/1a5");
        assert_eq!(c.credentials.as_ref().unwrap().access_key, "AK");
        assert!(!format!("{c:?}").contains("SK-very-secret"));
    }

    #[test]
    fn config_rejects_bad_input() {
        let missing = Config::from_lookup(lookup(&[])).unwrap_err();
        assert!(
            missing.to_string().contains("CATTLE_URL is not set"),
            "{missing}"
        );
        let half = Config::from_lookup(lookup(&[
            (ENV_URL, "http://rancher.example.org/v2-beta"),
            (ENV_ACCESS_KEY, "AK"),
        ]))
        .unwrap_err();
        assert!(half.to_string().contains("CATTLE_SECRET_KEY"), "{half}");
        let userinfo = Config::new("http://ak:topsecret@rancher.example.org/v2-beta").unwrap_err();
        assert!(!userinfo.to_string().contains("topsecret"), "{userinfo}");
        assert!(Config::new("ftp://rancher.example.org/").is_err());
        assert!(Config::new("not a url").is_err());
    }

    #[test]
    fn server_links_are_rebased_onto_the_configured_origin() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let client = Client::new(
            Config::new("https://rancher.example.org/v2-beta/projects/1a5/")
                .unwrap()
                .credentials(Credentials::new("ak", "sk")),
        )
        .unwrap();
        let url = client
            .server_url("http://evil.example.net:8080/v2-beta/projects/1a5/hosts?limit=2&marker=m4")
            .unwrap();
        assert_eq!(
            url.as_str(),
            "https://rancher.example.org/v2-beta/projects/1a5/hosts?limit=2&marker=m4"
        );
        let same = client
            .server_url("https://rancher.example.org/v2-beta/projects/1a5/hosts/1h1")
            .unwrap();
        assert_eq!(same.path(), "/v2-beta/projects/1a5/hosts/1h1");
        assert_eq!(
            client
                .collection_url(Scope::Project, "stacks")
                .unwrap()
                .as_str(),
            "https://rancher.example.org/v2-beta/projects/1a5/stacks"
        );
        assert_eq!(
            client
                .resource_url(Scope::Api, "projects", "1a7")
                .unwrap()
                .as_str(),
            "https://rancher.example.org/v2-beta/projects/1a7"
        );
        assert_eq!(client.project_id(), Some("1a5"));
        for bad in ["../x/y", "..", "", "a?b", "a%2Fb"] {
            assert!(
                client.resource_url(Scope::Project, "stacks", bad).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let p = RetryPolicy {
            max_retries: 10,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(400),
        };
        let d0 = p.backoff(0);
        assert!(d0 >= Duration::from_millis(50) && d0 <= Duration::from_millis(100));
        let d5 = p.backoff(5);
        assert!(d5 >= Duration::from_millis(200) && d5 <= Duration::from_millis(400));
    }

    #[tokio::test]
    async fn connect_errors_are_retried_for_every_method() {
        let _ = rustls::crypto::ring::default_provider().install_default();
        // Nothing listens on the discard port of loopback.
        let source = reqwest::Client::new()
            .post("http://127.0.0.1:9/")
            .send()
            .await
            .unwrap_err();
        assert!(source.is_connect(), "{source:?}");
        let err = Error::Transport {
            path: "/".into(),
            source,
        };
        assert!(retryable(&err, false));
        assert!(retryable(&err, true));
    }

    #[test]
    fn retry_rules() {
        let api = |status| Error::Api {
            path: String::new(),
            status,
            code: String::new(),
            message: String::new(),
            field_name: None,
        };
        assert!(retryable(&api(500), true));
        assert!(!retryable(&api(500), false));
        assert!(retryable(&api(503), false));
        assert!(!retryable(&api(422), true));
        assert!(!retryable(
            &Error::Timeout {
                path: String::new()
            },
            true
        ));
    }
}
