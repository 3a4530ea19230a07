//! Watch streams: newline-delimited `WatchEvent`s from a resourceVersion or from now,
//! with bookmarks, timeouts, selector transitions and 410 `ERROR` events.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};

use crate::convert;
use crate::resource::ResourceType;
use crate::selector::{FieldSelector, LabelSelector};
use crate::server::{Output, Shared};
use crate::status::ApiError;
use crate::store::{Change, EventType, Obj, State, WatchFrom};
use crate::table;

/// Parameters of one watch.
#[derive(Debug)]
pub(crate) struct WatchParams {
    pub(crate) from: WatchFrom,
    pub(crate) labels: LabelSelector,
    pub(crate) fields: FieldSelector,
    pub(crate) bookmarks: bool,
    pub(crate) timeout: Option<Duration>,
    pub(crate) output: Output,
    pub(crate) initial_events_end: bool,
}

/// Annotation on the bookmark that ends a `sendInitialEvents` stream.
pub const INITIAL_EVENTS_END_ANNOTATION: &str = "k8s.io/initial-events-end";

struct Encoder {
    rt: Arc<ResourceType>,
    output: Output,
    headers_sent: bool,
}

impl Encoder {
    fn line(&mut self, kind: &str, object: &Obj, rv: u64) -> Bytes {
        if self.output == Output::Full && convert::served_as_stored(&self.rt, object) {
            // The shared encoding: no per-watcher serialization.
            let json = object.json();
            let mut buf = Vec::with_capacity(json.len() + 32);
            buf.extend_from_slice(b"{\"type\":\"");
            buf.extend_from_slice(kind.as_bytes());
            buf.extend_from_slice(b"\",\"object\":");
            buf.extend_from_slice(json);
            buf.extend_from_slice(b"}\n");
            return Bytes::from(buf);
        }
        let presented = convert::present(&self.rt, object);
        let object = match self.output {
            Output::Full => presented.into_owned(),
            Output::Metadata => table::partial_metadata(&presented),
            Output::Table(include) => {
                let headers = !self.headers_sent;
                self.headers_sent = true;
                table::table(
                    &self.rt,
                    [presented.as_ref()].into_iter(),
                    rv,
                    None,
                    include,
                    headers,
                )
            }
        };
        let mut buf =
            serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap_or_default();
        buf.push(b'\n');
        Bytes::from(buf)
    }

    fn bookmark(&self, rv: u64, initial_end: bool) -> Bytes {
        let mut obj = json!({
            "kind": self.rt.kind,
            "apiVersion": self.rt.api_version(),
            "metadata": {"resourceVersion": rv.to_string()},
        });
        if initial_end {
            obj["metadata"]["annotations"] = json!({INITIAL_EVENTS_END_ANNOTATION: "true"});
        }
        let mut buf =
            serde_json::to_vec(&json!({"type": "BOOKMARK", "object": obj})).unwrap_or_default();
        buf.push(b'\n');
        Bytes::from(buf)
    }
}

fn error_line(e: &ApiError) -> Bytes {
    let mut buf =
        serde_json::to_vec(&json!({"type": "ERROR", "object": e.to_status()})).unwrap_or_default();
    buf.push(b'\n');
    Bytes::from(buf)
}

/// Which event (if any) a watcher with selectors sees for a change.
fn visible(
    rt: &ResourceType,
    p: &WatchParams,
    kind: EventType,
    object: &Value,
    previous: Option<&Value>,
) -> Option<&'static str> {
    let now = State::matches(rt, object, &p.labels, &p.fields);
    let before = previous.is_some_and(|o| State::matches(rt, o, &p.labels, &p.fields));
    match kind {
        EventType::Added => now.then_some("ADDED"),
        EventType::Deleted => (now || before).then_some("DELETED"),
        EventType::Modified => match (before, now) {
            (true, true) => Some("MODIFIED"),
            (false, true) => Some("ADDED"),
            (true, false) => Some("DELETED"),
            (false, false) => None,
        },
    }
}

/// Starts a watch and returns the streaming body.
pub(crate) fn start(
    shared: &Arc<Shared>,
    rt: Arc<ResourceType>,
    ns: Option<String>,
    params: WatchParams,
) -> Body {
    let (tx, mut rx_body) = mpsc::channel::<Bytes>(1024);
    let mut enc = Encoder {
        rt: rt.clone(),
        output: params.output,
        headers_sent: false,
    };
    // Backlog and subscription under one lock, so no change is missed or repeated.
    let (backlog, mut changes, start_rv) = {
        let state = shared.store.lock();
        let backlog = state.watch_backlog(&rt, ns.as_deref(), params.from);
        (backlog, shared.store.subscribe(), state.resource_version())
    };
    // Ends with the listener (or the sandbox), as a watch ends when its API
    // server goes away.
    let shutdown = shared.faults.serving();
    let generation = shared.faults.generation();
    let hooks = shared.clone();
    let bookmark_every = shared.bookmark_interval;
    tokio::spawn(async move {
        let backlog = match backlog {
            Ok(b) => b,
            Err(e) => {
                let _ = tx.send(error_line(&e)).await;
                return;
            }
        };
        let mut last_rv = match params.from {
            WatchFrom::Version(v) => v,
            WatchFrom::Current => start_rv,
        };
        for (kind, object, previous) in backlog {
            let rv = object["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(last_rv);
            if let Some(ty) = visible(
                &rt,
                &params,
                kind,
                &object,
                previous.as_deref().map(|o| &o.value),
            ) && tx.send(enc.line(ty, &object, rv)).await.is_err()
            {
                return;
            }
            last_rv = last_rv.max(rv);
        }
        if params.initial_events_end {
            last_rv = last_rv.max(start_rv);
            if tx.send(enc.bookmark(last_rv, true)).await.is_err() {
                return;
            }
        }
        let deadline = params.timeout.map(|t| tokio::time::Instant::now() + t);
        let mut ticker = tokio::time::interval(bookmark_every);
        ticker.reset();
        loop {
            if hooks.faults.stalled(generation) {
                // Stalled: the connection stays open and nothing more is sent.
                tokio::select! {
                    () = shutdown.cancelled() => return,
                    () = tx.closed() => return,
                }
            }
            let timeout = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                change = changes.recv() => match change {
                    Ok(c) => {
                        let c: Arc<Change> = c;
                        last_rv = c.rv;
                        if c.storage != rt.storage
                            || ns.as_deref().is_some_and(|n| n != c.namespace)
                            || hooks.faults.stalled(generation)
                        {
                            continue;
                        }
                        if let Some(ty) = visible(&rt, &params, c.kind, &c.object, c.previous.as_deref().map(|o| &o.value))
                            && tx.send(enc.line(ty, &c.object, c.rv)).await.is_err()
                        {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let e = ApiError::expired(format!("watcher fell behind; too old resource version: {last_rv}"));
                        let _ = tx.send(error_line(&e)).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = ticker.tick(), if params.bookmarks => {
                    if !hooks.faults.stalled(generation) && tx.send(enc.bookmark(last_rv, false)).await.is_err() {
                        return;
                    }
                }
                // A stalled watch does not even end at its timeout.
                () = timeout, if !hooks.faults.stalled(generation) => return,
                () = shutdown.cancelled() => return,
                () = tx.closed() => return,
            }
        }
    });
    let stream = futures::stream::poll_fn(move |cx| {
        rx_body
            .poll_recv(cx)
            .map(|o| o.map(Ok::<_, std::convert::Infallible>))
    });
    Body::from_stream(stream)
}
