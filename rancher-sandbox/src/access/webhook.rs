//! Calling a webhook the way kube-apiserver does: the address, TLS and credentials from a
//! kubeconfig file, a JSON `POST`, retries with backoff on the answers kube-apiserver retries,
//! and small bounded caches for the answers.

use std::collections::HashMap;
use std::hash::Hash;
use std::path::{Path, PathBuf};
use std::time::Duration;

use http_body_util::BodyExt as _;
use std::sync::{Mutex, MutexGuard, PoisonError};
use tokio::time::Instant;

/// A webhook that could not be set up from its kubeconfig file.
#[derive(Debug, thiserror::Error)]
#[error("webhook configuration {path}: {reason}")]
pub struct ConfigError {
    /// The kubeconfig file.
    pub path: PathBuf,
    /// What is wrong.
    pub reason: String,
}

/// A webhook client: one `POST` target read from a kubeconfig file.
#[derive(Clone)]
pub(crate) struct WebhookClient {
    client: kube::Client,
    path_and_query: String,
    timeout: Duration,
    what: String,
}

impl std::fmt::Debug for WebhookClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookClient")
            .field("what", &self.what)
            .field("path", &self.path_and_query)
            .finish_non_exhaustive()
    }
}

/// kube-apiserver's webhook backoff: 500 ms, ×1.5 each time, 20 % jitter, 5 attempts.
const ATTEMPTS: u32 = 5;
const FIRST_BACKOFF: Duration = Duration::from_millis(500);

impl WebhookClient {
    /// Reads `path` (kubeconfig format: `clusters[].cluster.server` is the webhook URL, with
    /// `certificate-authority[-data]`; `users[].user` is how the server authenticates to it).
    pub(crate) async fn from_kubeconfig(
        path: &Path,
        timeout: Duration,
        what: &str,
    ) -> Result<Self, ConfigError> {
        let err = |reason: String| ConfigError {
            path: path.to_owned(),
            reason,
        };
        let kubeconfig =
            kube::config::Kubeconfig::read_from(path).map_err(|e| err(e.to_string()))?;
        let mut config = kube::Config::from_custom_kubeconfig(
            kubeconfig,
            &kube::config::KubeConfigOptions::default(),
        )
        .await
        .map_err(|e| err(e.to_string()))?;
        let url = config.cluster_url.clone();
        let scheme = url
            .scheme_str()
            .ok_or_else(|| err("the server URL has no scheme".into()))?;
        let authority = url
            .authority()
            .ok_or_else(|| err("the server URL has no host".into()))?;
        let path_and_query = url
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned());
        config.cluster_url = format!("{scheme}://{authority}")
            .parse()
            .map_err(|e: http::uri::InvalidUri| err(e.to_string()))?;
        config.read_timeout = Some(timeout);
        config.default_retry = false;
        let client = kube::Client::try_from(config).map_err(|e| err(e.to_string()))?;
        Ok(Self {
            client,
            path_and_query,
            timeout,
            what: what.to_owned(),
        })
    }

    /// `POST`s `body`; the answer's body on 2xx, else an error. Retried as kube-apiserver
    /// retries webhooks: on connection resets, 500, 504, 429 and answers with
    /// `Retry-After`, with backoff, within the timeout overall.
    pub(crate) async fn post(&self, body: &[u8]) -> Result<Vec<u8>, String> {
        let deadline = Instant::now() + self.timeout;
        let mut backoff = FIRST_BACKOFF;
        let mut attempt = 1;
        loop {
            let outcome = tokio::time::timeout_at(deadline, self.attempt(body)).await;
            let (error, retry) = match outcome {
                Err(_) => {
                    return Err(format!(
                        "the {} webhook did not answer within {:?}",
                        self.what, self.timeout
                    ));
                }
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(failure)) => failure,
            };
            if !retry || attempt >= ATTEMPTS {
                return Err(error);
            }
            let jitter = backoff.mul_f64(0.2 * fastrand::f64());
            let wake = Instant::now() + backoff + jitter;
            if wake >= deadline {
                return Err(error);
            }
            tracing::debug!(what = %self.what, attempt, %error, "retrying the webhook");
            tokio::time::sleep_until(wake).await;
            backoff = backoff.mul_f64(1.5);
            attempt += 1;
        }
    }

    /// One attempt: the body, or (error, whether kube-apiserver would retry it).
    async fn attempt(&self, body: &[u8]) -> Result<Vec<u8>, (String, bool)> {
        let request = http::Request::post(self.path_and_query.as_str())
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(http::header::ACCEPT, "application/json")
            .body(body.to_vec())
            .map_err(|e| (e.to_string(), false))?;
        let response = self
            .client
            .send(request.map(Into::into))
            .await
            .map_err(|e| {
                let text = e.to_string();
                let reset = format!("{e:?}").to_ascii_lowercase().contains("reset");
                (
                    format!("calling the {} webhook failed: {text}", self.what),
                    reset,
                )
            })?;
        let status = response.status();
        let retry_after = response.headers().contains_key(http::header::RETRY_AFTER);
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| {
                (
                    format!("reading the {} webhook's answer failed: {e}", self.what),
                    true,
                )
            })?
            .to_bytes();
        if status.is_success() {
            return Ok(bytes.to_vec());
        }
        let retry = retry_after
            || matches!(
                status,
                http::StatusCode::INTERNAL_SERVER_ERROR
                    | http::StatusCode::GATEWAY_TIMEOUT
                    | http::StatusCode::TOO_MANY_REQUESTS
            );
        let text: String = String::from_utf8_lossy(&bytes).chars().take(300).collect();
        Err((
            format!("the {} webhook answered {status}: {text}", self.what),
            retry,
        ))
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A bounded cache of answers, each with its own lifetime. When full, expired entries go; if
/// that is not enough, everything goes (the caches are small and refill on demand).
pub(crate) struct AnswerCache<K, V> {
    entries: Mutex<HashMap<K, (V, Instant)>>,
    capacity: usize,
}

impl<K, V> std::fmt::Debug for AnswerCache<K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnswerCache")
            .field("capacity", &self.capacity)
            .finish_non_exhaustive()
    }
}

impl<K: Eq + Hash, V: Clone> AnswerCache<K, V> {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            entries: Mutex::new(HashMap::new()),
            capacity,
        }
    }

    pub(crate) fn get(&self, key: &K) -> Option<V> {
        let now = Instant::now();
        let mut entries = lock(&self.entries);
        match entries.get(key) {
            Some((value, expires)) if *expires > now => Some(value.clone()),
            Some(_) => {
                entries.remove(key);
                None
            }
            None => None,
        }
    }

    pub(crate) fn insert(&self, key: K, value: V, ttl: Duration) {
        if ttl.is_zero() || self.capacity == 0 {
            return;
        }
        let now = Instant::now();
        let mut entries = lock(&self.entries);
        if entries.len() >= self.capacity {
            entries.retain(|_, (_, expires)| *expires > now);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(key, (value, now + ttl));
    }
}
