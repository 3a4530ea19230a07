//! Rancher API keys as tokens: [`RancherAuthenticator`] (feature `rancher`).
//!
//! A token `ACCESS:SECRET` (or Rancher 1.x's kubeconfig form, `base64("Basic " +
//! base64(ACCESS:SECRET))`) is resolved the way Rancher's own 2017 webhook did it:
//!
//! 1. `GET /v2-beta/identities` with that key. Rancher refusing the key is a definite no.
//! 2. The memberships of each of the key's identities (the user and its groups) in the
//!    environment this cluster is (`--environment`), read with the webhook's own key, one
//!    filtered query per identity; the most privileged role wins (owner, member,
//!    restricted, readonly).
//! 3. The user is `login`, uid `<externalIdType>:<externalId>`, in the group
//!    `rancher:environment:<id>:<role>`; `extra["rancher.io/principal-ids"]` lists every
//!    identity, for audit.
//!
//! Anything else Rancher does (5xx, a timeout, a body that is not an identity list) is an
//! error: the webhook answers non-200, kube-apiserver denies and caches nothing.

use std::time::Duration;

use async_trait::async_trait;
use rancher_client::resource::{credentials_from_kubernetes_token, role};
use rancher_client::{Credentials, Identity, ListParams, ProjectMember};

use crate::authn::{Authentication, TokenAuthenticator};
use crate::environment::environment_group;
use crate::error::{Error, Result};
use crate::identity::{SYSTEM_PREFIX, Token, UserInfo};

/// The `extra` key listing the Rancher principals (`rancher_id:1a7`, `ldap_group:devs`) of an
/// authenticated user.
pub const EXTRA_PRINCIPAL_IDS: &str = "rancher.io/principal-ids";

const BACKEND: &str = "rancher";

/// How the Rancher authenticator works.
#[derive(Clone, Debug)]
pub struct RancherConfig {
    /// The environment (project) id this cluster stands for.
    pub environment: String,
    /// How long one token lookup (identities, then members) may take in all.
    pub timeout: Duration,
}

impl RancherConfig {
    /// Users of `environment`, with a 5 s lookup timeout.
    pub fn new(environment: impl Into<String>) -> Self {
        Self {
            environment: environment.into(),
            timeout: Duration::from_secs(5),
        }
    }

    /// Sets the lookup timeout.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
}

/// Authenticates Rancher API keys of members of one environment.
#[derive(Clone, Debug)]
pub struct RancherAuthenticator {
    client: rancher_client::Client,
    config: RancherConfig,
}

/// The key pair in a token: `ACCESS:SECRET`, or Rancher 1.x's kubeconfig token.
pub fn credentials_of(token: &Token) -> Option<Credentials> {
    if let Some((access, secret)) = token.key_pair() {
        return Some(Credentials::new(access, secret));
    }
    let credentials = credentials_from_kubernetes_token(token.expose())?;
    let pair = Token::new(format!(
        "{}:{}",
        credentials.access_key,
        credentials.secret_key.expose()
    ));
    pair.key_pair().is_some().then_some(credentials)
}

fn rank(role_name: &str) -> Option<usize> {
    role::ALL.iter().position(|r| *r == role_name)
}

impl RancherAuthenticator {
    /// An authenticator asking Rancher through `client` (whose own key must be allowed to
    /// read the environment's members).
    pub fn new(client: rancher_client::Client, config: RancherConfig) -> Self {
        Self { client, config }
    }

    /// The environment id.
    pub fn environment(&self) -> &str {
        &self.config.environment
    }

    async fn lookup(&self, credentials: Credentials) -> Result<Authentication> {
        let identities = match self.client.identities_of(&credentials).await {
            Ok(identities) => identities,
            Err(rancher_client::Error::Unauthorized { .. }) => {
                return Ok(Authentication::unauthenticated(
                    "Rancher does not accept this API key",
                ));
            }
            Err(e) => return Err(client_error(e)),
        };
        let Some(user) = pick_user(&identities) else {
            return Ok(Authentication::unauthenticated(
                "the API key belongs to no Rancher user",
            ));
        };
        if user.login.is_empty() {
            return Err(Error::invalid_response(
                BACKEND,
                "the user identity has no login",
            ));
        }
        // One filtered query per identity (the user and its groups), side by side: the cost
        // of a lookup does not grow with the size of the environment.
        let lookups = identities.iter().map(|identity| {
            let params = ListParams::new()
                .filter("projectId", &self.config.environment)
                .filter("externalIdType", &identity.external_id_type)
                .filter("externalId", &identity.external_id)
                .removed_null();
            let api = self.client.project_members();
            async move { api.list(&params).await }
        });
        let mut members = Vec::new();
        for found in futures::future::join_all(lookups).await {
            members.extend(found.map_err(client_error)?);
        }
        let best = members
            .iter()
            .filter(|m| identities.iter().any(|i| m.is(i)))
            .filter_map(|m: &ProjectMember| rank(&m.role).map(|r| (r, m.role.as_str())))
            .min();
        let Some((_, role_name)) = best else {
            return Ok(Authentication::unauthenticated(format!(
                "Rancher user {:?} is not a member of environment {}",
                user.login, self.config.environment
            )));
        };
        if user.login.starts_with(SYSTEM_PREFIX) {
            return Ok(Authentication::unauthenticated(format!(
                "Rancher user {:?} has a name Kubernetes reserves",
                user.login
            )));
        }
        let mut info = UserInfo::new(user.login.clone())
            .with_uid(user.principal_id())
            .with_group(environment_group(&self.config.environment, role_name));
        for identity in &identities {
            info = info.with_extra(EXTRA_PRINCIPAL_IDS, identity.principal_id());
        }
        Ok(Authentication::Authenticated(info))
    }
}

/// The user among a key's identities: an external one (GitHub, LDAP) before Rancher's own
/// account, as Rancher's 2017 webhook chose.
fn pick_user(identities: &[Identity]) -> Option<&Identity> {
    let users = identities.iter().filter(|i| i.user);
    users
        .clone()
        .find(|i| i.external_id_type != rancher_client::resource::RANCHER_ID)
        .or_else(|| users.clone().next())
}

fn client_error(e: rancher_client::Error) -> Error {
    match e {
        rancher_client::Error::Decode { path, .. } => Error::invalid_response(
            BACKEND,
            format!("{path} did not answer with the expected JSON"),
        ),
        other => Error::unavailable(BACKEND, other),
    }
}

#[async_trait]
impl TokenAuthenticator for RancherAuthenticator {
    async fn authenticate(&self, token: &Token) -> Result<Authentication> {
        let Some(credentials) = credentials_of(token) else {
            return Ok(Authentication::unauthenticated(
                "the token is not a Rancher API key (ACCESS:SECRET)",
            ));
        };
        match tokio::time::timeout(self.config.timeout, self.lookup(credentials)).await {
            Ok(answer) => answer,
            Err(_) => Err(Error::Timeout {
                backend: BACKEND.into(),
                after: self.config.timeout,
            }),
        }
    }
}
