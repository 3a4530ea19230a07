//! The webhook's TLS: a certificate and key read from files, reloaded when they change, and
//! the accept loop serving HTTP/1.1 over tokio-rustls (ring).
//!
//! Files are polled (default every 2 s) rather than watched: a Kubernetes Secret volume
//! swaps a symlink, which inotify sees as nothing on the files themselves. A change is
//! noticed by content, so a rewrite in place, a rename over and a symlink swap all count. A
//! pair that does not load (half written, mismatched) keeps the previous certificate in
//! service and is tried again on the next poll.

use std::convert::Infallible;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use hyper_util::rt::TokioIo;
use parking_lot::{Mutex, RwLock};
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::{
    self, server::ClientHello, server::ResolvesServerCert, sign::CertifiedKey,
};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt as _;

/// How long a client may take to finish the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A certificate and key that could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read.
    #[error("reading {path} failed")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A file is not what it should be.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong (never key material).
        reason: String,
    },
}

/// The certificate (chain) and key files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
}

impl TlsFiles {
    /// The pair.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self {
            cert: cert.into(),
            key: key.into(),
        }
    }

    fn read(&self) -> Result<(Vec<u8>, Vec<u8>), TlsError> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|source| TlsError::Read {
                path: path.to_owned(),
                source,
            })
        };
        Ok((read(&self.cert)?, read(&self.key)?))
    }

    fn load(&self, cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, TlsError> {
        let invalid = |path: &Path, reason: String| TlsError::Invalid {
            path: path.to_owned(),
            reason,
        };
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| invalid(&self.cert, format!("not a PEM certificate chain: {e}")))?;
        if chain.is_empty() {
            return Err(invalid(&self.cert, "holds no certificate".into()));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|_| invalid(&self.key, "holds no PEM private key".into()))?;
        let provider = rustls::crypto::ring::default_provider();
        let certified = CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
            invalid(
                &self.key,
                format!("does not go with the certificate or is not supported: {e}"),
            )
        })?;
        Ok(certified)
    }
}

/// Serves the current certificate and reloads it when the files change.
#[derive(Debug)]
pub struct ReloadingCert {
    files: TlsFiles,
    current: RwLock<Arc<CertifiedKey>>,
    fingerprint: Mutex<ring::digest::Digest>,
}

fn fingerprint(cert: &[u8], key: &[u8]) -> ring::digest::Digest {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(&(cert.len() as u64).to_be_bytes());
    ctx.update(cert);
    ctx.update(key);
    ctx.finish()
}

impl ReloadingCert {
    /// Loads the pair; fails when it cannot be used.
    pub fn load(files: TlsFiles) -> Result<Arc<Self>, TlsError> {
        let (cert, key) = files.read()?;
        let certified = files.load(&cert, &key)?;
        Ok(Arc::new(Self {
            fingerprint: Mutex::new(fingerprint(&cert, &key)),
            current: RwLock::new(Arc::new(certified)),
            files,
        }))
    }

    /// Reloads the pair if the files changed: `Ok(true)` when a new certificate is in
    /// service, `Ok(false)` when nothing changed, `Err` (the old one stays) when the new
    /// files do not load.
    pub fn reload_if_changed(&self) -> Result<bool, TlsError> {
        let (cert, key) = self.files.read()?;
        let print = fingerprint(&cert, &key);
        if print.as_ref() == self.fingerprint.lock().as_ref() {
            return Ok(false);
        }
        let certified = self.files.load(&cert, &key)?;
        *self.current.write() = Arc::new(certified);
        *self.fingerprint.lock() = print;
        Ok(true)
    }

    /// Polls the files every `every` until `shutdown`, calling `on_reload` with each result
    /// that is not "unchanged".
    pub async fn watch(
        self: Arc<Self>,
        every: Duration,
        shutdown: CancellationToken,
        on_reload: impl Fn(&Result<bool, TlsError>) + Send + 'static,
    ) {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let result = self.reload_if_changed();
            match &result {
                Ok(false) => continue,
                Ok(true) => {
                    tracing::info!(cert = %self.files.cert.display(), "reloaded the serving certificate")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the new certificate files do not load; keeping the old ones")
                }
            }
            on_reload(&result);
        }
    }

    /// A rustls server configuration (TLS 1.2 and 1.3 on ring, ALPN `http/1.1`) serving
    /// this certificate.
    pub fn server_config(self: &Arc<Self>) -> Result<rustls::ServerConfig, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_no_client_auth()
            .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(config)
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.read().clone())
    }
}

/// Serves `app` over TLS on `listener` until `shutdown` fires: one task per connection, the
/// handshake bounded by [`HANDSHAKE_TIMEOUT`], HTTP/1.1 with keep-alive.
pub async fn serve(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    app: axum::Router,
    shutdown: CancellationToken,
) {
    let acceptor = TlsAcceptor::from(config);
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::debug!(%error, "accept failed");
                // Out of file descriptors, say: do not spin.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let acceptor = acceptor.clone();
        let app = app.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => tls,
                Ok(Err(error)) => {
                    tracing::debug!(%error, "TLS handshake failed");
                    return;
                }
                Err(_) => {
                    tracing::debug!("TLS handshake timed out");
                    return;
                }
            };
            let service = hyper::service::service_fn(
                move |request: hyper::Request<hyper::body::Incoming>| {
                    let app = app.clone();
                    async move {
                        let response = match app.oneshot(request.map(Body::new)).await {
                            Ok(response) => response,
                            Err(never) => match never {},
                        };
                        Ok::<_, Infallible>(response)
                    }
                },
            );
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .serve_connection(TokioIo::new(tls), service);
            tokio::pin!(connection);
            tokio::select! {
                _ = connection.as_mut() => {}
                () = shutdown.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(Duration::from_secs(5), connection).await;
                }
            }
        });
    }
}
