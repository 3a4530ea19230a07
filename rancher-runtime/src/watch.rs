//! Watch streams that recover from API server faults within seconds.
//!
//! [`watch`] lists a resource, then watches it from the list's resourceVersion,
//! and yields [`kube::runtime::watcher::Event`]s as kube-runtime's watcher does,
//! so the [`index`](crate::index) drivers (and any other consumer of that
//! stream) take it as is. What it does differently is recovery:
//!
//! - **Backoff that still probes often.** A failed list or watch request is
//!   retried after an exponential delay with jitter, from 250 ms up to a cap of
//!   4 s plus up to 25 % jitter, so a watch probes a returning API server at
//!   least every 5 s and sees it back within that (kube-runtime's default backs
//!   off to 30 s and keeps that for two minutes after an outage). The jitter
//!   spreads the probes of many watches and replicas so a recovering API server
//!   is not hit by all of them at once. The delay resets once a list completes
//!   or a watch delivers something.
//! - **Resume, re-list only when needed.** A broken watch resumes from the last
//!   resourceVersion it saw (of an event or a bookmark), so nothing is listed
//!   again after an outage the API server's watch cache covers. A 410 Gone, as
//!   a watch `ERROR` event or as the answer to the watch request, means that
//!   version is too old: the watch lists again ([`Event::Init`] ...
//!   [`Event::InitDone`]), and the index drivers remove what disappeared.
//! - **Stall detection.** Watches ask for bookmarks, and the API server is
//!   asked to end each watch after about two thirds of the idle timeout (it
//!   then resumes at once). A watch that delivers nothing at all, no event and
//!   no bookmark, for the idle timeout (90 s by default; kube-apiserver sends
//!   a bookmark about every minute) is taken as silently stalled, dropped and
//!   resumed.
//! - **Staleness reported.** With a [`WatchTracker`] ([`Watch::tracked`]) the
//!   watch says when its view is current and since when it is not, which
//!   `/readyz` and `/metrics` report; see [`crate::ready`].

use std::collections::VecDeque;
use std::fmt::Debug;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use futures::{Stream, StreamExt, stream::BoxStream};
use kube::{
    Api, Resource, ResourceExt,
    api::{ListParams, VersionMatch, WatchEvent, WatchParams},
    runtime::watcher::{self, Event, ListSemantic},
};
use serde::de::DeserializeOwned;
use tokio::time::Instant;

use crate::{
    ready::{Restart, WatchTracker},
    requeue::Backoff,
};

/// The first retry delay after a failed list or watch request.
pub const DEFAULT_RETRY_INITIAL: Duration = Duration::from_millis(250);
/// The largest retry delay before jitter (up to 25 % is added).
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(4);
/// How long a watch may deliver nothing before it is taken as stalled.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// A watch that lived at least this long before it ended is resumed at once;
/// one that ended sooner without delivering anything counts as a failure.
const HEALTHY_WATCH: Duration = Duration::from_secs(1);

/// How a watch retries and when it is taken as stalled.
#[derive(Clone, Copy, Debug, PartialEq)]
#[non_exhaustive]
pub struct Settings {
    /// Delays between retries of failed requests.
    pub retry: Backoff,
    /// A watch that delivers no event and no bookmark for this long is dropped
    /// and resumed. The API server is asked to end each watch after about two
    /// thirds of it, so a healthy quiet watch never gets there.
    pub idle_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            retry: Backoff {
                initial: DEFAULT_RETRY_INITIAL,
                max: DEFAULT_RETRY_MAX,
                jitter: 0.25,
            },
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
        }
    }
}

impl Settings {
    /// These settings with a different idle timeout.
    #[must_use]
    pub fn with_idle_timeout(mut self, idle_timeout: Duration) -> Self {
        self.idle_timeout = idle_timeout;
        self
    }

    /// These settings with different retry delays.
    #[must_use]
    pub fn with_retry(mut self, retry: Backoff) -> Self {
        self.retry = retry;
        self
    }

    /// The `timeoutSeconds` of the next watch request: two thirds of the idle
    /// timeout, minus up to a tenth at random so watches do not all end at once.
    fn server_timeout(&self) -> u32 {
        let base = self.idle_timeout.as_secs_f64() * 2.0 / 3.0;
        let secs = base * (1.0 - 0.1 * fastrand::f64());
        // At least one second: 0 would mean "no timeout" to the API server.
        u32::try_from(secs.max(1.0) as u64).unwrap_or(u32::MAX)
    }
}

/// Lists and watches `api`, recovering from faults as the [module](self) says.
///
/// `config` gives the selectors, page size, list semantic and whether to ask
/// for bookmarks; its `timeout` and `initial_list_strategy` are not used (the
/// watch times itself from [`Settings::idle_timeout`] and always lists first).
/// Errors are yielded for the consumer to log; the stream never ends.
pub fn watch<K>(api: Api<K>, config: watcher::Config) -> Watch<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    Watch {
        machine: Some(Machine {
            url: api.resource_url().to_owned(),
            api,
            config,
            settings: Settings::default(),
            tracker: None,
            state: State::Empty,
            failures: 0,
            delay: None,
        }),
        stream: None,
    }
}

/// The stream [`watch`] returns. Configure it before polling it.
#[must_use = "a watch does nothing until polled"]
pub struct Watch<K: 'static> {
    machine: Option<Machine<K>>,
    stream: Option<BoxStream<'static, watcher::Result<Event<K>>>>,
}

impl<K> Watch<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    /// Uses these retry and stall settings.
    pub fn settings(mut self, settings: Settings) -> Self {
        if let Some(machine) = &mut self.machine {
            machine.settings = settings;
        }
        self
    }

    /// Reports this watch's staleness through `tracker`.
    pub fn tracked(mut self, tracker: WatchTracker) -> Self {
        if let Some(machine) = &mut self.machine {
            machine.tracker = Some(tracker);
        }
        self
    }
}

// No field is pinned: the machine is moved into the boxed stream on first poll.
impl<K> Unpin for Watch<K> {}

impl<K> Debug for Watch<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watch")
            .field("url", &self.machine.as_ref().map(|m| m.url.as_str()))
            .field("started", &self.stream.is_some())
            .finish()
    }
}

impl<K> Stream for Watch<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    type Item = watcher::Result<Event<K>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.stream.is_none() {
            let Some(machine) = self.machine.take() else {
                return Poll::Ready(None);
            };
            self.stream = Some(
                futures::stream::unfold(machine, |mut machine| async move {
                    let item = machine.next().await;
                    Some((item, machine))
                })
                .boxed(),
            );
        }
        match &mut self.stream {
            Some(stream) => stream.poll_next_unpin(cx),
            None => Poll::Ready(None),
        }
    }
}

enum State<K> {
    /// Nothing listed yet, or the last list or watch is void: list.
    Empty,
    /// Listing: the rest of the current page, and where to go on from.
    Listing {
        continue_token: Option<String>,
        page: VecDeque<K>,
        version: Option<String>,
    },
    /// Listed or watched up to `version`: (re)start the watch from there.
    Resume { version: String },
    /// A watch is open.
    Watching {
        version: String,
        events: BoxStream<'static, kube::Result<WatchEvent<K>>>,
        opened: Instant,
        /// When it last delivered anything (or opened).
        heard: Instant,
        delivered: bool,
    },
}

struct Machine<K> {
    api: Api<K>,
    url: String,
    config: watcher::Config,
    settings: Settings,
    tracker: Option<WatchTracker>,
    state: State<K>,
    /// Consecutive failures, for the retry delay.
    failures: u32,
    /// Wait this long before the next request.
    delay: Option<Duration>,
}

impl<K> Machine<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    /// The next item: steps the state machine until it has something to yield.
    async fn next(&mut self) -> watcher::Result<Event<K>> {
        loop {
            if let Some(delay) = self.delay.take() {
                tokio::time::sleep(delay).await;
            }
            let state = std::mem::replace(&mut self.state, State::Empty);
            if let Some(item) = self.step(state).await {
                return item;
            }
        }
    }

    async fn step(&mut self, state: State<K>) -> Option<watcher::Result<Event<K>>> {
        match state {
            State::Empty => {
                self.state = State::Listing {
                    continue_token: None,
                    page: VecDeque::new(),
                    version: None,
                };
                Some(Ok(Event::Init))
            }
            State::Listing {
                continue_token,
                mut page,
                version,
            } => {
                if let Some(object) = page.pop_front() {
                    self.state = State::Listing {
                        continue_token,
                        page,
                        version,
                    };
                    return Some(Ok(Event::InitApply(object)));
                }
                if continue_token.is_none()
                    && let Some(version) = version
                {
                    self.succeeded();
                    self.current();
                    self.state = State::Resume { version };
                    return Some(Ok(Event::InitDone));
                }
                self.list(continue_token).await
            }
            State::Resume { version } => self.start_watch(version).await,
            State::Watching {
                version,
                events,
                opened,
                heard,
                delivered,
            } => self.read(version, events, opened, heard, delivered).await,
        }
    }

    async fn list(&mut self, continue_token: Option<String>) -> Option<watcher::Result<Event<K>>> {
        let mut params = self.list_params();
        params.continue_token = continue_token;
        match self.api.list(&params).await {
            Ok(list) => {
                let version = list.metadata.resource_version.filter(|v| !v.is_empty());
                let continue_token = list.metadata.continue_.filter(|c| !c.is_empty());
                if version.is_none() && continue_token.is_none() {
                    self.failed(Restart::Error, Instant::now());
                    return Some(Err(watcher::Error::NoResourceVersion));
                }
                self.state = State::Listing {
                    continue_token,
                    page: list.items.into(),
                    version,
                };
                None
            }
            Err(error) => {
                // Start over (an expired continue token included); the
                // consumer drops what it buffered at the next `Init`.
                self.failed(Restart::Error, Instant::now());
                Some(Err(watcher::Error::InitialListFailed(error)))
            }
        }
    }

    async fn start_watch(&mut self, version: String) -> Option<watcher::Result<Event<K>>> {
        let params = WatchParams {
            label_selector: self.config.label_selector.clone(),
            field_selector: self.config.field_selector.clone(),
            timeout: Some(self.settings.server_timeout()),
            bookmarks: self.config.bookmarks,
            send_initial_events: false,
        };
        match self.api.watch(&params, &version).await {
            Ok(events) => {
                self.current();
                let now = Instant::now();
                self.state = State::Watching {
                    version,
                    events: events.boxed(),
                    opened: now,
                    heard: now,
                    delivered: false,
                };
                None
            }
            Err(error) if is_gone(&error) => {
                tracing::info!(url = %self.url, %version, "resourceVersion expired; listing again");
                self.restarted(Restart::Expired);
                // The state is `Empty`: list at once.
                Some(Err(watcher::Error::WatchStartFailed(error)))
            }
            Err(error) => {
                self.failed(Restart::Error, Instant::now());
                self.state = State::Resume { version };
                Some(Err(watcher::Error::WatchStartFailed(error)))
            }
        }
    }

    async fn read(
        &mut self,
        mut version: String,
        mut events: BoxStream<'static, kube::Result<WatchEvent<K>>>,
        opened: Instant,
        heard: Instant,
        delivered: bool,
    ) -> Option<watcher::Result<Event<K>>> {
        let deadline = heard + self.settings.idle_timeout;
        let next = tokio::time::timeout_at(deadline, events.next()).await;
        let now = Instant::now();
        let event = match next {
            Err(_elapsed) => {
                tracing::warn!(
                    url = %self.url,
                    idle = ?self.settings.idle_timeout,
                    "watch delivered nothing, not even a bookmark; restarting it"
                );
                self.restarted(Restart::Stalled);
                if let Some(tracker) = &self.tracker {
                    tracker.stale(heard.into_std());
                }
                self.state = State::Resume { version };
                return None;
            }
            Ok(None) => {
                // The API server ended the watch (its timeout, or going away).
                if !delivered && now.duration_since(opened) < HEALTHY_WATCH {
                    self.failed(Restart::Error, now);
                }
                self.state = State::Resume { version };
                return None;
            }
            Ok(Some(Err(error))) => {
                self.failed(Restart::Error, now);
                self.state = State::Resume { version };
                return Some(Err(watcher::Error::WatchFailed(error)));
            }
            Ok(Some(Ok(event))) => event,
        };
        let item = match event {
            WatchEvent::Added(object) | WatchEvent::Modified(object) => {
                match object.resource_version().filter(|v| !v.is_empty()) {
                    Some(v) => {
                        version = v;
                        Some(Ok(Event::Apply(object)))
                    }
                    None => return self.no_version(),
                }
            }
            WatchEvent::Deleted(object) => {
                match object.resource_version().filter(|v| !v.is_empty()) {
                    Some(v) => {
                        version = v;
                        Some(Ok(Event::Delete(object)))
                    }
                    None => return self.no_version(),
                }
            }
            WatchEvent::Bookmark(bookmark) => {
                if !bookmark.metadata.resource_version.is_empty() {
                    version = bookmark.metadata.resource_version;
                }
                None
            }
            WatchEvent::Error(status) if status.code == 410 => {
                tracing::info!(url = %self.url, %version, "resourceVersion expired; listing again");
                self.restarted(Restart::Expired);
                // The state is `Empty`: list at once.
                return Some(Err(watcher::Error::WatchError(status)));
            }
            WatchEvent::Error(status) => {
                // The API server ends the watch after an error: resume.
                self.failed(Restart::Error, now);
                self.state = State::Resume { version };
                return Some(Err(watcher::Error::WatchError(status)));
            }
        };
        self.succeeded();
        self.state = State::Watching {
            version,
            events,
            opened,
            heard: now,
            delivered: true,
        };
        item
    }

    fn no_version(&mut self) -> Option<watcher::Result<Event<K>>> {
        self.failed(Restart::Error, Instant::now());
        Some(Err(watcher::Error::NoResourceVersion))
    }

    fn list_params(&self) -> ListParams {
        let (resource_version, version_match) = match self.config.list_semantic {
            ListSemantic::Any => (Some("0".to_owned()), Some(VersionMatch::NotOlderThan)),
            ListSemantic::MostRecent => (None, None),
        };
        ListParams {
            label_selector: self.config.label_selector.clone(),
            field_selector: self.config.field_selector.clone(),
            limit: self.config.page_size,
            resource_version,
            version_match,
            ..ListParams::default()
        }
    }

    fn current(&self) {
        if let Some(tracker) = &self.tracker {
            tracker.current();
        }
    }

    fn restarted(&self, why: Restart) {
        if let Some(tracker) = &self.tracker {
            tracker.restarted(why);
        }
    }

    fn succeeded(&mut self) {
        self.failures = 0;
    }

    /// A request failed at `at`: wait before the next one, and report the view
    /// stale from then.
    fn failed(&mut self, why: Restart, at: Instant) {
        self.failures = self.failures.saturating_add(1);
        let delay = self.settings.retry.delay(self.failures);
        tracing::debug!(url = %self.url, ?delay, failures = self.failures, "watch retry");
        self.delay = Some(delay);
        self.restarted(why);
        if let Some(tracker) = &self.tracker {
            tracker.stale(at.into_std());
        }
    }
}

fn is_gone(error: &kube::Error) -> bool {
    matches!(error, kube::Error::Api(status) if status.code == 410)
}

#[cfg(test)]
mod tests {
    //! The watch's requests against a mocked API server on tokio's paused
    //! clock: the retry schedule is checked in virtual time, deterministically.

    use std::collections::HashMap;
    use std::convert::Infallible;

    use futures::channel::mpsc;
    use http::{Request, Response, StatusCode};
    use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
    use hyper::body::{Bytes, Frame};
    use k8s_openapi::api::core::v1::Service;
    use kube::client::Body;
    use serde_json::{Value, json};
    use tower_test::mock::{Handle, SendResponse};

    use super::*;
    use crate::ready::Readiness;

    type TestBody = BoxBody<Bytes, Infallible>;
    type ApiHandle = Handle<Request<Body>, Response<TestBody>>;
    type Chunks = mpsc::UnboundedSender<Result<Frame<Bytes>, Infallible>>;

    fn mock() -> (kube::Client, ApiHandle) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<TestBody>>();
        (kube::Client::new(service, "default"), handle)
    }

    struct Call {
        at: Instant,
        query: HashMap<String, String>,
        send: SendResponse<Response<TestBody>>,
    }

    impl Call {
        fn is_watch(&self) -> bool {
            self.query.get("watch").is_some_and(|w| w == "true")
        }

        fn version(&self) -> Option<&str> {
            self.query.get("resourceVersion").map(String::as_str)
        }

        fn reply(self, status: StatusCode, body: &Value) {
            let bytes = Bytes::from(serde_json::to_vec(body).unwrap());
            self.reply_body(status, http_body_util::Full::new(bytes).boxed());
        }

        fn reply_body(self, status: StatusCode, body: TestBody) {
            self.send.send_response(
                Response::builder()
                    .status(status)
                    .header("content-type", "application/json")
                    .body(body)
                    .unwrap(),
            );
        }

        /// Answers a watch with a body the test writes lines into.
        fn stream(self) -> Chunks {
            let (tx, rx) = mpsc::unbounded();
            self.reply_body(StatusCode::OK, BodyExt::boxed(StreamBody::new(rx)));
            tx
        }

        fn refuse(self) {
            self.send.send_error(std::io::Error::new(
                std::io::ErrorKind::ConnectionRefused,
                "connection refused",
            ));
        }
    }

    async fn next(handle: &mut ApiHandle) -> Call {
        let (request, send) = handle.next_request().await.expect("the client is alive");
        assert_eq!(request.uri().path(), "/api/v1/services");
        let query = request
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        Call {
            at: Instant::now(),
            query,
            send,
        }
    }

    fn svc(name: &str, version: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": name, "namespace": "ns", "resourceVersion": version}})
    }

    fn list(version: &str, items: &[Value]) -> Value {
        json!({"apiVersion": "v1", "kind": "ServiceList",
            "metadata": {"resourceVersion": version}, "items": items})
    }

    fn line(tx: &Chunks, kind: &str, object: &Value) {
        let mut bytes = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap();
        bytes.push(b'\n');
        tx.unbounded_send(Ok(Frame::data(Bytes::from(bytes))))
            .unwrap();
    }

    /// Runs the watch, sending a summary of each item to the receiver.
    fn consume(
        client: kube::Client,
        tracker: Option<WatchTracker>,
    ) -> tokio::sync::mpsc::UnboundedReceiver<String> {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let mut stream = watch(Api::<Service>::all(client), watcher::Config::default());
        if let Some(tracker) = tracker {
            stream = stream.tracked(tracker);
        }
        tokio::spawn(async move {
            let mut stream = stream;
            while let Some(item) = stream.next().await {
                let summary = match item {
                    Ok(Event::Init) => "Init".to_owned(),
                    Ok(Event::InitApply(s)) => format!("InitApply({})", s.name_any()),
                    Ok(Event::InitDone) => "InitDone".to_owned(),
                    Ok(Event::Apply(s)) => format!("Apply({})", s.name_any()),
                    Ok(Event::Delete(s)) => format!("Delete({})", s.name_any()),
                    Err(_) => "Err".to_owned(),
                };
                if tx.send(summary).is_err() {
                    return;
                }
            }
        });
        rx
    }

    async fn expect(rx: &mut tokio::sync::mpsc::UnboundedReceiver<String>, want: &[&str]) {
        for want in want {
            assert_eq!(rx.recv().await.as_deref(), Some(*want));
        }
    }

    /// Lists `a` at version 10 and opens the watch from there.
    async fn listed(handle: &mut ApiHandle) -> (Call, Instant) {
        let call = next(handle).await;
        assert!(!call.is_watch(), "lists first");
        assert_eq!(call.version(), None, "a consistent list");
        call.reply(StatusCode::OK, &list("10", &[svc("a", "5")]));
        let call = next(handle).await;
        assert!(call.is_watch());
        assert_eq!(call.version(), Some("10"));
        assert_eq!(
            call.query.get("allowWatchBookmarks").map(String::as_str),
            Some("true")
        );
        let at = call.at;
        (call, at)
    }

    #[tokio::test(start_paused = true)]
    async fn an_outage_is_probed_every_few_seconds_and_the_watch_resumes_where_it_was() {
        let (client, mut handle) = mock();
        let readiness = Readiness::new();
        let tracker = readiness.track_watch("services");
        let mut rx = consume(client, Some(tracker.clone()));
        let (call, _) = listed(&mut handle).await;
        expect(&mut rx, &["Init", "InitApply(a)", "InitDone"]).await;
        assert!(!tracker.is_stale(), "current once listed and watching");
        let tx = call.stream();
        line(&tx, "ADDED", &svc("b", "11"));
        expect(&mut rx, &["Apply(b)"]).await;

        // The API server goes away for a minute: the connection ends and every
        // request is refused.
        drop(tx);
        let outage = Instant::now();
        let mut last = outage;
        let mut gaps = Vec::new();
        let call = loop {
            let call = next(&mut handle).await;
            assert!(call.is_watch(), "no list: the watch resumes");
            assert_eq!(call.version(), Some("11"), "from the last event");
            gaps.push(call.at - last);
            last = call.at;
            if call.at - outage >= Duration::from_secs(60) {
                break call;
            }
            call.refuse();
            assert_eq!(rx.recv().await.as_deref(), Some("Err"));
            assert!(tracker.is_stale());
            let stale = readiness.stale();
            assert_eq!(stale.len(), 1);
            assert!(!stale[0].ready, "a controller's watch makes it unready");
        };
        // Every probe came at most 5 s (4 s plus 25 % jitter) after the last,
        // so the first probe after the API server returns comes within 5 s.
        let longest = gaps.iter().max().copied().unwrap_or_default();
        assert!(longest <= Duration::from_secs(5), "gaps {gaps:?}");
        assert!(gaps.len() > 12, "probed throughout: {gaps:?}");
        assert!(tracker.restarts(Restart::Error) >= 12);

        // Back: the watch catches up from version 11 without listing again.
        let tx = call.stream();
        line(&tx, "ADDED", &svc("c", "12"));
        expect(&mut rx, &["Apply(c)"]).await;
        assert!(!tracker.is_stale());
        assert_eq!(tracker.restarts(Restart::Expired), 0);
        assert!(readiness.stale().is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn gone_lists_again_whether_an_error_event_or_an_answer() {
        let (client, mut handle) = mock();
        let readiness = Readiness::new();
        let tracker = readiness.track_watch("services");
        let mut rx = consume(client, Some(tracker.clone()));
        let (call, _) = listed(&mut handle).await;
        expect(&mut rx, &["Init", "InitApply(a)", "InitDone"]).await;
        let gone = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "too old resource version: 10 (20)", "reason": "Expired", "code": 410});
        // As a watch ERROR event ...
        let tx = call.stream();
        line(&tx, "ERROR", &gone);
        expect(&mut rx, &["Err"]).await;
        let call = next(&mut handle).await;
        assert!(!call.is_watch(), "listed again");
        call.reply(StatusCode::OK, &list("20", &[svc("b", "15")]));
        expect(&mut rx, &["Init", "InitApply(b)", "InitDone"]).await;
        // ... and as the answer to the watch request.
        let call = next(&mut handle).await;
        assert_eq!(call.version(), Some("20"));
        call.reply(StatusCode::GONE, &gone);
        expect(&mut rx, &["Err"]).await;
        let call = next(&mut handle).await;
        assert!(!call.is_watch(), "listed again");
        call.reply(StatusCode::OK, &list("30", &[]));
        expect(&mut rx, &["Init", "InitDone"]).await;
        assert_eq!(tracker.restarts(Restart::Expired), 2);
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_that_delivers_nothing_is_restarted_after_the_idle_timeout() {
        let (client, mut handle) = mock();
        let readiness = Readiness::new();
        let tracker = readiness.track_watch("services");
        let mut rx = consume(client, Some(tracker.clone()));
        let (call, opened) = listed(&mut handle).await;
        let timeout: u64 = call.query["timeoutSeconds"].parse().unwrap();
        assert!(
            (54..=60).contains(&timeout),
            "the server ends it first: {timeout}"
        );
        expect(&mut rx, &["Init", "InitApply(a)", "InitDone"]).await;
        // A bookmark moves the version and counts as a sign of life ...
        let tx = call.stream();
        let bookmark = json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"resourceVersion": "14"}});
        tokio::time::sleep(Duration::from_secs(60)).await;
        line(&tx, "BOOKMARK", &bookmark);
        // ... then the connection stays open with nothing on it.
        let call = next(&mut handle).await;
        assert!(call.is_watch());
        assert_eq!(call.version(), Some("14"), "resumed from the bookmark");
        assert_eq!(
            call.at - opened,
            Duration::from_secs(60) + DEFAULT_IDLE_TIMEOUT
        );
        assert_eq!(tracker.restarts(Restart::Stalled), 1);
        let tx2 = call.stream();
        line(&tx2, "ADDED", &svc("d", "15"));
        expect(&mut rx, &["Apply(d)"]).await;
        assert!(!tracker.is_stale());
        drop((tx, tx2));
    }

    #[tokio::test(start_paused = true)]
    async fn a_watch_the_server_ends_at_once_is_retried_with_backoff() {
        let (client, mut handle) = mock();
        let mut rx = consume(client, None);
        let (call, _) = listed(&mut handle).await;
        expect(&mut rx, &["Init", "InitApply(a)", "InitDone"]).await;
        // A server that accepts each watch and closes it right away is not
        // hammered: each retry waits longer, up to the cap.
        call.reply_body(StatusCode::OK, http_body_util::Empty::new().boxed());
        let mut last = Instant::now();
        let mut gaps = Vec::new();
        for _ in 0..8 {
            let call = next(&mut handle).await;
            gaps.push(call.at - last);
            last = call.at;
            call.reply_body(StatusCode::OK, http_body_util::Empty::new().boxed());
        }
        assert!(gaps[1] > Duration::ZERO, "{gaps:?}");
        assert!(gaps[7] >= Duration::from_secs(4), "{gaps:?}");
    }

    #[test]
    fn retry_delays_are_capped_and_jittered() {
        let settings = Settings::default();
        for failures in 1..100 {
            let delay = settings.retry.delay(failures);
            assert!(delay <= Duration::from_secs(5), "{failures}: {delay:?}");
            assert!(delay >= settings.retry.base_delay(failures));
        }
        assert_eq!(settings.retry.base_delay(1), Duration::from_millis(250));
        assert_eq!(settings.retry.base_delay(10), Duration::from_secs(4));
    }
}
