//! Typed operations on one resource type: list, get, create, update, actions, waits.

use std::{marker::PhantomData, time::Duration};

use reqwest::{Method, Url};
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use crate::{
    Client, Error, LoadBalancerService, Result,
    resource::{Collection, Resource, ServiceUpgrade, action},
};

/// Filters and page size for a list call.
///
/// Filters are query parameters, `field=value`, with Rancher's modifiers as suffixes
/// (`removed_null=1`, `name_ne=x`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListParams {
    /// `(field, value)` pairs, sent in order.
    pub filters: Vec<(String, String)>,
    /// Page size (`limit`); `None` uses the server default.
    pub limit: Option<u32>,
}

impl ListParams {
    /// No filters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `field=value`.
    pub fn filter(mut self, field: impl Into<String>, value: impl Into<String>) -> Self {
        self.filters.push((field.into(), value.into()));
        self
    }

    /// `name=<name>`.
    pub fn name(self, name: impl Into<String>) -> Self {
        self.filter("name", name)
    }

    /// `externalId=<id>`.
    pub fn external_id(self, id: impl Into<String>) -> Self {
        self.filter("externalId", id)
    }

    /// `stackId=<id>`.
    pub fn stack_id(self, id: impl Into<String>) -> Self {
        self.filter("stackId", id)
    }

    /// `removed_null=1`: only objects that are not removed.
    pub fn removed_null(self) -> Self {
        self.filter("removed_null", "1")
    }

    /// Page size.
    pub fn limit(mut self, limit: u32) -> Self {
        self.limit = Some(limit);
        self
    }

    fn apply(&self, url: &mut Url) {
        let mut q = url.query_pairs_mut();
        for (k, v) in &self.filters {
            q.append_pair(k, v);
        }
        if let Some(limit) = self.limit {
            q.append_pair("limit", &limit.to_string());
        }
    }
}

/// How long and how often to poll while waiting on a resource.
#[derive(Clone, Debug)]
pub struct WaitParams {
    /// Give up after this long with [`Error::WaitTimedOut`].
    pub timeout: Duration,
    /// Delay between two reads.
    pub interval: Duration,
    /// Cancelling this token ends the wait with [`Error::Cancelled`].
    pub cancel: Option<CancellationToken>,
}

impl Default for WaitParams {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(120),
            interval: Duration::from_millis(500),
            cancel: None,
        }
    }
}

impl WaitParams {
    /// Default interval, given timeout.
    pub fn timeout(timeout: Duration) -> Self {
        Self {
            timeout,
            ..Self::default()
        }
    }

    /// Sets the poll interval.
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sets the cancellation token.
    pub fn cancel(mut self, token: CancellationToken) -> Self {
        self.cancel = Some(token);
        self
    }
}

/// Operations on the collection of one resource type, e.g. `Api<LoadBalancerService>`.
/// Get one from [`Client::api`] or the named helpers such as
/// [`Client::load_balancer_services`].
pub struct Api<R> {
    client: Client,
    _resource: PhantomData<fn() -> R>,
}

impl<R> Clone for Api<R> {
    fn clone(&self) -> Self {
        Self {
            client: self.client.clone(),
            _resource: PhantomData,
        }
    }
}

impl<R: Resource> std::fmt::Debug for Api<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api")
            .field("collection", &R::COLLECTION)
            .field("client", &self.client)
            .finish()
    }
}

impl<R: Resource> Api<R> {
    pub(crate) fn new(client: Client) -> Self {
        Self {
            client,
            _resource: PhantomData,
        }
    }

    /// Every object matching `params`, following `pagination.next` to the last page.
    pub async fn list(&self, params: &ListParams) -> Result<Vec<R>> {
        let mut url = self.client.collection_url(R::SCOPE, R::COLLECTION)?;
        params.apply(&mut url);
        self.client.collect_pages(url).await
    }

    /// The first page of objects matching `params`; continue with [`Api::next_page`].
    pub async fn list_page(&self, params: &ListParams) -> Result<Collection<R>> {
        let mut url = self.client.collection_url(R::SCOPE, R::COLLECTION)?;
        params.apply(&mut url);
        self.client.get_json(url).await
    }

    /// The page after `page`, or `None` on the last page.
    pub async fn next_page(&self, page: &Collection<R>) -> Result<Option<Collection<R>>> {
        match page.pagination.as_ref().and_then(|p| p.next.as_deref()) {
            Some(next) if !next.is_empty() => {
                let url = self.client.server_url(next)?;
                self.client.get_json(url).await.map(Some)
            }
            _ => Ok(None),
        }
    }

    /// The object named `name` that is not removed, if any (the first when several match).
    pub async fn find_by_name(&self, name: &str) -> Result<Option<R>> {
        let params = ListParams::new().name(name).removed_null();
        Ok(self.list(&params).await?.into_iter().next())
    }

    /// One object by id.
    pub async fn get(&self, id: &str) -> Result<R> {
        let url = self.client.resource_url(R::SCOPE, R::COLLECTION, id)?;
        self.client.get_json(url).await
    }

    /// One object by id, `None` when Rancher answers 404.
    pub async fn get_opt(&self, id: &str) -> Result<Option<R>> {
        match self.get(id).await {
            Ok(r) => Ok(Some(r)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Creates an object (`POST` to the collection); returns it as Rancher stored it.
    pub async fn create(&self, resource: &R) -> Result<R> {
        let url = self.client.collection_url(R::SCOPE, R::COLLECTION)?;
        self.client
            .send_json(Method::POST, url, Some(resource))
            .await
    }

    /// Replaces an object's writable fields (`PUT` to its id). Fields this crate does not model
    /// are sent back as they were read.
    pub async fn update(&self, resource: &R) -> Result<R> {
        let url = self
            .client
            .resource_url(R::SCOPE, R::COLLECTION, &resource.meta().id)?;
        self.client
            .send_json(Method::PUT, url, Some(resource))
            .await
    }

    /// Deletes an object (`DELETE`); Rancher treats it like the `remove` action.
    pub async fn delete(&self, id: &str) -> Result<R> {
        let url = self.client.resource_url(R::SCOPE, R::COLLECTION, id)?;
        self.client
            .send_json(Method::DELETE, url, None::<&()>)
            .await
    }

    /// Runs an action without input: `POST <resource>?action=<name>`.
    pub async fn action(&self, id: &str, name: &str) -> Result<R> {
        self.action_with(id, name, None::<&()>).await
    }

    /// Runs an action with an input body.
    pub async fn action_with(
        &self,
        id: &str,
        name: &str,
        input: Option<&impl Serialize>,
    ) -> Result<R> {
        let mut url = self.client.resource_url(R::SCOPE, R::COLLECTION, id)?;
        url.query_pairs_mut().append_pair("action", name);
        self.client.send_json(Method::POST, url, input).await
    }

    /// The `activate` action.
    pub async fn activate(&self, id: &str) -> Result<R> {
        self.action(id, action::ACTIVATE).await
    }

    /// The `deactivate` action.
    pub async fn deactivate(&self, id: &str) -> Result<R> {
        self.action(id, action::DEACTIVATE).await
    }

    /// The `remove` action.
    pub async fn remove(&self, id: &str) -> Result<R> {
        self.action(id, action::REMOVE).await
    }

    /// The `purge` action (on a removed object).
    pub async fn purge(&self, id: &str) -> Result<R> {
        self.action(id, action::PURGE).await
    }

    /// Polls the object until it is no longer transitioning (see
    /// [`ResourceMeta::is_transitioning`](crate::resource::ResourceMeta::is_transitioning)).
    ///
    /// Fails with [`Error::TransitionFailed`] if Rancher reports `transitioning: error`,
    /// [`Error::WaitTimedOut`] after `params.timeout`, [`Error::Cancelled`] when the token is
    /// cancelled, and [`Error::NotFound`] if the object disappears.
    pub async fn wait_settled(&self, id: &str, params: &WaitParams) -> Result<R> {
        self.wait_until(id, params, |r| !r.meta().is_transitioning())
            .await
    }

    /// Polls the object until `done` holds, with the same bounds and errors as
    /// [`Api::wait_settled`].
    pub async fn wait_until(
        &self,
        id: &str,
        params: &WaitParams,
        done: impl Fn(&R) -> bool,
    ) -> Result<R> {
        let start = tokio::time::Instant::now();
        let deadline = start + params.timeout;
        let label = format!("{}/{id}", R::TYPE);
        let cancelled = || Error::Cancelled {
            resource: label.clone(),
        };
        loop {
            if params.cancel.as_ref().is_some_and(|c| c.is_cancelled()) {
                return Err(cancelled());
            }
            let current = self.get(id).await?;
            if done(&current) {
                return Ok(current);
            }
            let meta = current.meta();
            if meta.is_failed() {
                return Err(Error::TransitionFailed {
                    resource: label,
                    state: meta.state().to_owned(),
                    message: meta.transitioning_message.clone().unwrap_or_default(),
                });
            }
            let now = tokio::time::Instant::now();
            if now >= deadline {
                return Err(Error::WaitTimedOut {
                    resource: label,
                    state: meta.state().to_owned(),
                    waited: now - start,
                });
            }
            let pause = tokio::time::sleep(params.interval.min(deadline - now));
            match &params.cancel {
                Some(token) => tokio::select! {
                    () = pause => {}
                    () = token.cancelled() => return Err(cancelled()),
                },
                None => pause.await,
            }
        }
    }
}

impl Api<LoadBalancerService> {
    /// The `upgrade` action: starts an in-service upgrade to a new launch config. The service
    /// ends in state `upgraded`; finish with [`Api::finish_upgrade`].
    pub async fn upgrade(&self, id: &str, upgrade: &ServiceUpgrade) -> Result<LoadBalancerService> {
        self.action_with(id, action::UPGRADE, Some(upgrade)).await
    }

    /// The `finishupgrade` action.
    pub async fn finish_upgrade(&self, id: &str) -> Result<LoadBalancerService> {
        self.action(id, action::FINISH_UPGRADE).await
    }
}
