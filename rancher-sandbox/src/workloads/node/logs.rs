//! Container logs: what each echo server writes (its start, every request), kept per
//! container in a bounded buffer and served at `pods/NAME/log` as the kubelet serves them
//! (`container`, `follow`, `tailLines`, `timestamps`, `sinceSeconds`, `limitBytes`).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::{HeaderValue, header};
use serde_json::Value;
use tokio::sync::watch;

use crate::status::{ApiError, ApiResult};

/// Lines kept per container; older ones are dropped.
const KEPT_LINES: usize = 1000;

/// One container's log.
#[derive(Debug)]
pub(crate) struct ContainerLog {
    lines: Mutex<VecDeque<(u64, jiff::Timestamp, String)>>,
    /// The sequence number of the last line, and whether the container stopped.
    tail: watch::Sender<(u64, bool)>,
}

impl ContainerLog {
    fn new() -> Self {
        Self {
            lines: Mutex::new(VecDeque::new()),
            tail: watch::channel((0, false)).0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, jiff::Timestamp, String)>> {
        self.lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Appends a line.
    pub(crate) fn push(&self, line: impl Into<String>) {
        let mut lines = self.lock();
        let seq = self.tail.borrow().0 + 1;
        lines.push_back((seq, jiff::Timestamp::now(), line.into()));
        while lines.len() > KEPT_LINES {
            lines.pop_front();
        }
        drop(lines);
        self.tail.send_modify(|t| t.0 = seq);
    }

    /// Marks the container stopped: followers finish.
    pub(crate) fn close(&self) {
        self.tail.send_modify(|t| t.1 = true);
    }

    /// Lines after `after`, formatted.
    fn since(&self, after: u64, opts: &LogOptions) -> (u64, Vec<u8>) {
        let lines = self.lock();
        let cutoff = opts
            .since_seconds
            .map(|s| jiff::Timestamp::now().as_second() - s);
        let mut picked: Vec<&(u64, jiff::Timestamp, String)> = lines
            .iter()
            .filter(|(seq, at, _)| *seq > after && cutoff.is_none_or(|c| at.as_second() >= c))
            .collect();
        if after == 0
            && let Some(n) = opts.tail_lines
        {
            let skip = picked.len().saturating_sub(n);
            picked.drain(..skip);
        }
        let last = picked.last().map_or(after, |(seq, _, _)| *seq);
        let mut out = Vec::new();
        for (_, at, line) in picked {
            if opts.timestamps {
                out.extend_from_slice(format!("{at:.9} ").as_bytes());
            }
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
        }
        (last, out)
    }
}

/// The logs of every container a cluster's nodes run, by (namespace, pod, container).
#[derive(Debug, Default)]
pub(crate) struct PodLogs {
    logs: Mutex<HashMap<(String, String, String), Arc<ContainerLog>>>,
}

impl PodLogs {
    fn map(
        &self,
    ) -> std::sync::MutexGuard<'_, HashMap<(String, String, String), Arc<ContainerLog>>> {
        self.logs
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The log of a container that starts now (a restart keeps the earlier lines).
    pub(crate) fn open(&self, ns: &str, pod: &str, container: &str) -> Arc<ContainerLog> {
        let key = (ns.to_string(), pod.to_string(), container.to_string());
        let log = self
            .map()
            .entry(key)
            .or_insert_with(|| Arc::new(ContainerLog::new()))
            .clone();
        log.tail.send_modify(|t| t.1 = false);
        log
    }

    /// Forgets a pod's logs (the pod is gone).
    pub(crate) fn remove_pod(&self, ns: &str, pod: &str) {
        self.map().retain(|(n, p, _), log| {
            let gone = n == ns && p == pod;
            if gone {
                log.close();
            }
            !gone
        });
    }

    fn get(&self, ns: &str, pod: &str, container: &str) -> Option<Arc<ContainerLog>> {
        self.map()
            .get(&(ns.to_string(), pod.to_string(), container.to_string()))
            .cloned()
    }
}

/// The query of a log request.
#[derive(Debug, Default)]
struct LogOptions {
    follow: bool,
    timestamps: bool,
    tail_lines: Option<usize>,
    since_seconds: Option<i64>,
    limit_bytes: Option<usize>,
}

fn number<T: std::str::FromStr>(q: &HashMap<String, String>, name: &str) -> ApiResult<Option<T>> {
    match q.get(name).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => v.parse().map(Some).map_err(|_| {
            ApiError::bad_request(format!(
                "invalid {name} {v:?}: must be a non-negative integer"
            ))
        }),
    }
}

/// Serves `GET pods/NAME/log` for `pod` (already read from the store).
pub(crate) fn serve(
    logs: &PodLogs,
    pod: &Value,
    query: &HashMap<String, String>,
    shutdown: tokio_util::sync::CancellationToken,
) -> ApiResult<Response> {
    let name = pod["metadata"]["name"].as_str().unwrap_or_default();
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or_default();
    let containers: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    let container = match query.get("container").filter(|c| !c.is_empty()) {
        Some(c) if containers.contains(&c.as_str()) => c.clone(),
        Some(c) => {
            return Err(ApiError::bad_request(format!(
                "container {c} is not valid for pod {name}"
            )));
        }
        None if containers.len() == 1 => containers[0].to_string(),
        None => {
            return Err(ApiError::bad_request(format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                containers.join(" ")
            )));
        }
    };
    if query.get("previous").is_some_and(|p| p == "true") {
        return Err(ApiError::bad_request(format!(
            "previous terminated container \"{container}\" in pod \"{name}\" not found"
        )));
    }
    let Some(log) = logs.get(ns, name, &container) else {
        let reason = pod["status"]["containerStatuses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["name"] == container.as_str())
            .and_then(|c| c["state"]["waiting"]["reason"].as_str())
            .unwrap_or("ContainerCreating");
        return Err(ApiError::bad_request(format!(
            "container \"{container}\" in pod \"{name}\" is waiting to start: {reason}"
        )));
    };
    let opts = LogOptions {
        follow: query.get("follow").is_some_and(|f| f == "true"),
        timestamps: query.get("timestamps").is_some_and(|f| f == "true"),
        tail_lines: number(query, "tailLines")?,
        since_seconds: number(query, "sinceSeconds")?,
        limit_bytes: number(query, "limitBytes")?,
    };
    let mut resp = if opts.follow {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Bytes>(16);
        tokio::spawn(follow(log, opts, tx, shutdown));
        let stream = futures::stream::poll_fn(move |cx| {
            rx.poll_recv(cx)
                .map(|o| o.map(Ok::<_, std::convert::Infallible>))
        });
        Response::new(Body::from_stream(stream))
    } else {
        let (_, mut body) = log.since(0, &opts);
        if let Some(limit) = opts.limit_bytes {
            body.truncate(limit);
        }
        Response::new(Body::from(body))
    };
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(resp)
}

async fn follow(
    log: Arc<ContainerLog>,
    opts: LogOptions,
    tx: tokio::sync::mpsc::Sender<Bytes>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    let mut tail = log.tail.subscribe();
    let mut after = 0;
    let mut sent = 0usize;
    loop {
        let (last, mut chunk) = log.since(after, &opts);
        after = last;
        if let Some(limit) = opts.limit_bytes {
            chunk.truncate(limit.saturating_sub(sent));
        }
        sent += chunk.len();
        if !chunk.is_empty() && tx.send(Bytes::from(chunk)).await.is_err() {
            return;
        }
        if opts.limit_bytes.is_some_and(|l| sent >= l) || tail.borrow_and_update().1 {
            return;
        }
        tokio::select! {
            changed = tail.changed() => if changed.is_err() { return },
            () = shutdown.cancelled() => return,
            () = tx.closed() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_and_timestamps() {
        let logs = PodLogs::default();
        let log = logs.open("default", "web-1", "nginx");
        for i in 0..5 {
            log.push(format!("line {i}"));
        }
        let opts = LogOptions {
            tail_lines: Some(2),
            ..LogOptions::default()
        };
        let (last, body) = log.since(0, &opts);
        assert_eq!(String::from_utf8(body).unwrap(), "line 3\nline 4\n");
        assert_eq!(last, 5);
        let opts = LogOptions {
            timestamps: true,
            ..LogOptions::default()
        };
        let (_, body) = log.since(4, &opts);
        let text = String::from_utf8(body).unwrap();
        assert!(text.ends_with("Z line 4\n"), "{text}");
        logs.remove_pod("default", "web-1");
        assert!(logs.get("default", "web-1", "nginx").is_none());
    }
}
