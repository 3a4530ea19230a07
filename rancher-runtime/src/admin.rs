//! The admin HTTP server: `/livez`, `/readyz` and `/metrics`.
//!
//! - `/livez` answers 200 while the process serves requests.
//! - `/readyz` answers 200 once every part registered with [`Readiness`] is ready
//!   (for a controller: every watched resource has listed), 503 with the pending
//!   parts before that. A tracked watch whose view is stale (its connection to
//!   the API server lost) makes it answer 503 too, naming the watch and how long
//!   since it was current, unless that watch keeps the process ready
//!   ([`WatchTracker::ready_when_stale`](crate::ready::WatchTracker::ready_when_stale)),
//!   in which case the 200 body names it. Where leader election runs, the body
//!   says `leader` or `standby`; a standby is ready too, so rolling updates do
//!   not stall.
//! - `/metrics` serves the [`prometheus_client`] registry in OpenMetrics text,
//!   with the watch metrics of [`Readiness::collector`] added, and
//!   `runtime_alive_tasks`: the tasks alive in the process's Tokio runtime (a
//!   count that returns to its level after churn shows no task leaked).

use std::{convert::Infallible, net::SocketAddr, sync::Arc};

use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::{
    lease::Leadership,
    listen::{self, BindError},
    ready::Readiness,
};

/// The content type of `/metrics`.
pub const OPENMETRICS_CONTENT_TYPE: &str =
    "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The flag that sets the admin server's address.
pub const ADMIN_FLAG: &str = "--admin";

/// Admin server settings, with the binary's default port as `PORT`.
///
/// Each binary has a port of its own, so that several can run on one host
/// (on host network, as `deploy/` runs rancher-dns and the ingress
/// controller). A binary declares it once and flattens the arguments:
///
/// ```
/// # #[cfg(feature = "clap")] {
/// use clap::Parser;
/// use rancher_runtime::admin::AdminArgs;
///
/// /// `rancher-dns`'s admin port (CoreDNS's metrics port).
/// const ADMIN_PORT: u16 = 9153;
///
/// #[derive(Parser)]
/// struct Args {
///     #[command(flatten)]
///     admin: AdminArgs<ADMIN_PORT>,
/// }
///
/// let args = Args::parse_from(["rancher-dns"]);
/// assert_eq!(args.admin.addr.to_string(), "0.0.0.0:9153");
/// # }
/// ```
#[derive(Clone, Debug)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct AdminArgs<const PORT: u16> {
    /// The address of the admin server (`/livez`, `/readyz`, `/metrics`).
    #[cfg_attr(
        feature = "clap",
        arg(
            long = "admin",
            value_name = "ADDR",
            default_value_t = SocketAddr::from(([0, 0, 0, 0], PORT))
        )
    )]
    pub addr: SocketAddr,
}

impl<const PORT: u16> Default for AdminArgs<PORT> {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([0, 0, 0, 0], PORT)),
        }
    }
}

impl<const PORT: u16> AdminArgs<PORT> {
    /// The default address: all interfaces, port `PORT`.
    pub const DEFAULT_PORT: u16 = PORT;

    /// Binds the admin server to the address; a failure names it and
    /// [`ADMIN_FLAG`].
    pub async fn bind(&self, state: AdminState) -> Result<AdminServer, BindError> {
        let listener = listen::tcp(WHAT, self.addr, Some(ADMIN_FLAG)).await?;
        Ok(AdminServer { listener, state })
    }
}

/// What the admin server is called in bind errors.
const WHAT: &str = "admin server";

/// What the admin server reports.
#[derive(Clone, Debug)]
pub struct AdminState {
    readiness: Readiness,
    leadership: Option<Leadership>,
    registry: Arc<Registry>,
}

impl AdminState {
    /// State reporting `readiness` and the metrics in `registry`, plus the
    /// watch metrics of `readiness` (`watch_stale`, `watch_seconds_since_sync`,
    /// `watch_restarts_total`, under the registry's prefix) and the runtime's
    /// `runtime_alive_tasks`.
    pub fn new(readiness: Readiness, mut registry: Registry) -> Self {
        registry.register_collector(Box::new(readiness.collector()));
        registry.register_collector(Box::new(RuntimeCollector));
        Self {
            readiness,
            leadership: None,
            registry: Arc::new(registry),
        }
    }

    /// Also reports leader or standby in `/readyz`.
    #[must_use]
    pub fn with_leadership(mut self, leadership: Leadership) -> Self {
        self.leadership = Some(leadership);
        self
    }

    fn respond(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        if request.method() != Method::GET && request.method() != Method::HEAD {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed\n".into(),
            );
        }
        match request.uri().path() {
            "/livez" => text(StatusCode::OK, "ok\n".into()),
            "/readyz" => {
                let role = self
                    .leadership
                    .as_ref()
                    .map(|l| if l.is_leader() { "leader" } else { "standby" });
                let stale = self.readiness.stale();
                let mut stale_lines = String::new();
                for watch in &stale {
                    stale_lines.push_str(&format!(
                        "stale: {} ({}s since last sync)\n",
                        watch.name,
                        watch.age.as_secs()
                    ));
                }
                if !self.readiness.is_ready() {
                    let mut body = String::from("not ready:");
                    for part in self.readiness.pending() {
                        body.push(' ');
                        body.push_str(&part);
                    }
                    body.push('\n');
                    text(StatusCode::SERVICE_UNAVAILABLE, body)
                } else if stale.iter().any(|s| !s.ready) {
                    text(
                        StatusCode::SERVICE_UNAVAILABLE,
                        format!("not ready: serving from a stale view\n{stale_lines}"),
                    )
                } else {
                    let mut body = "ok\n".to_owned();
                    if let Some(role) = role {
                        body.push_str(role);
                        body.push('\n');
                    }
                    body.push_str(&stale_lines);
                    text(StatusCode::OK, body)
                }
            }
            "/metrics" => {
                let mut body = String::new();
                match prometheus_client::encoding::text::encode(&mut body, &self.registry) {
                    Ok(()) => Response::builder()
                        .status(StatusCode::OK)
                        .header(header::CONTENT_TYPE, OPENMETRICS_CONTENT_TYPE)
                        .body(Full::new(Bytes::from(body)))
                        .unwrap_or_else(|_| Response::new(Full::default())),
                    Err(_) => text(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "encoding failed\n".into(),
                    ),
                }
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n".into()),
        }
    }
}

/// Encodes `runtime_alive_tasks` from the Tokio runtime the scrape runs on.
#[derive(Debug)]
struct RuntimeCollector;

impl prometheus_client::collector::Collector for RuntimeCollector {
    fn encode(
        &self,
        mut encoder: prometheus_client::encoding::DescriptorEncoder<'_>,
    ) -> Result<(), std::fmt::Error> {
        use prometheus_client::{encoding::EncodeMetric, metrics::gauge::ConstGauge};
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            return Ok(());
        };
        let tasks = i64::try_from(handle.metrics().num_alive_tasks()).unwrap_or(i64::MAX);
        let gauge = ConstGauge::new(tasks);
        let metric = encoder.encode_descriptor(
            "runtime_alive_tasks",
            "Tasks alive in the process's Tokio runtime",
            None,
            gauge.metric_type(),
        )?;
        gauge.encode(metric)
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A bound admin server.
#[derive(Debug)]
pub struct AdminServer {
    listener: TcpListener,
    state: AdminState,
}

impl AdminServer {
    /// Binds `addr` (port 0 picks a free port). Binaries bind through
    /// [`AdminArgs::bind`], whose errors also name the flag.
    pub async fn bind(addr: SocketAddr, state: AdminState) -> Result<Self, BindError> {
        let listener = listen::tcp(WHAT, addr, None).await?;
        Ok(Self { listener, state })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` is cancelled.
    pub async fn serve(self, shutdown: CancellationToken) {
        let state = self.state;
        loop {
            let accepted = tokio::select! {
                () = shutdown.cancelled() => return,
                accepted = self.listener.accept() => accepted,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    tracing::debug!(%error, "admin accept failed");
                    continue;
                }
            };
            let state = state.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let response = state.respond(&request);
                    async move { Ok::<_, Infallible>(response) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                tokio::select! {
                    _ = connection => {}
                    () = shutdown.cancelled() => {}
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::metrics::counter::Counter;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(
                format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
            )
            .await
            .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        let status = response[9..12].parse().unwrap();
        let body = response
            .split("\r\n\r\n")
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        (status, body)
    }

    #[tokio::test]
    async fn readyz_follows_readiness_and_metrics_serve_the_registry() {
        let readiness = Readiness::new();
        let pending = readiness.register("ingresses");
        let mut registry = Registry::with_prefix("test");
        let syncs = Counter::<u64>::default();
        registry.register("syncs", "Syncs done", syncs.clone());
        syncs.inc_by(3);
        let state = AdminState::new(readiness, registry).with_leadership(Leadership::always());
        let server = AdminServer::bind("127.0.0.1:0".parse().unwrap(), state)
            .await
            .unwrap();
        let addr = server.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.serve(shutdown.clone()));

        assert_eq!(get(addr, "/livez").await.0, 200);
        let (status, body) = get(addr, "/readyz").await;
        assert_eq!(status, 503);
        assert!(body.contains("ingresses"), "{body}");
        pending.ready();
        let (status, body) = get(addr, "/readyz").await;
        assert_eq!((status, body.as_str()), (200, "ok\nleader\n"));
        let (status, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(body.contains("test_syncs_total 3"), "{body}");
        assert!(body.contains("test_runtime_alive_tasks "), "{body}");
        assert_eq!(get(addr, "/nope").await.0, 404);

        shutdown.cancel();
        task.await.unwrap();
    }

    #[tokio::test]
    async fn stale_watches_show_in_readyz_and_metrics() {
        let readiness = Readiness::new();
        let services = readiness.track_watch("services");
        let dns = readiness.track_watch("dns-services").ready_when_stale();
        let state = AdminState::new(readiness, Registry::with_prefix("test"));
        let server = AdminServer::bind("127.0.0.1:0".parse().unwrap(), state)
            .await
            .unwrap();
        let addr = server.local_addr().unwrap();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(server.serve(shutdown.clone()));

        // Not listed yet: both stale, and `services` makes the process unready.
        let (status, body) = get(addr, "/readyz").await;
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("stale: services"), "{body}");
        services.current();
        dns.current();
        let (status, body) = get(addr, "/readyz").await;
        assert_eq!((status, body.as_str()), (200, "ok\n"));
        let (_, metrics) = get(addr, "/metrics").await;
        assert!(
            metrics.contains("test_watch_stale{watch=\"services\"} 0"),
            "{metrics}"
        );

        // DNS's watch loses the API server: still ready, but it says so.
        dns.stale(std::time::Instant::now() - std::time::Duration::from_secs(12));
        dns.restarted(crate::ready::Restart::Error);
        let (status, body) = get(addr, "/readyz").await;
        assert_eq!(status, 200);
        assert!(
            body.contains("stale: dns-services (12s since last sync)"),
            "{body}"
        );
        let (_, metrics) = get(addr, "/metrics").await;
        assert!(
            metrics.contains("test_watch_stale{watch=\"dns-services\"} 1"),
            "{metrics}"
        );
        assert!(
            metrics.contains("test_watch_seconds_since_sync{watch=\"dns-services\"} 12."),
            "{metrics}"
        );
        assert!(
            metrics
                .contains("test_watch_restarts_total{watch=\"dns-services\",reason=\"error\"} 1"),
            "{metrics}"
        );
        // A controller's watch does not keep it ready.
        services.stale(std::time::Instant::now());
        assert_eq!(get(addr, "/readyz").await.0, 503);
        services.current();
        assert_eq!(get(addr, "/readyz").await.0, 200);

        shutdown.cancel();
        task.await.unwrap();
    }
}
