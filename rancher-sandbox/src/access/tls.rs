//! HTTPS for a sandbox with access control: kubectl sends bearer tokens only over TLS, as
//! client-go reads a kubeconfig's credentials only for a TLS server. The serving certificate
//! comes from files, or, as kube-apiserver does without `--tls-cert-file`, is generated at
//! start (a CA and a certificate for `127.0.0.1` and `localhost` it signed).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls;
use tokio_rustls::server::TlsStream;

use super::ConfigError;

/// A serving certificate and key from files (kube-apiserver's `--tls-cert-file` and
/// `--tls-private-key-file`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain, leaf first.
    pub cert: PathBuf,
    /// PEM private key.
    pub key: PathBuf,
    /// The CA that kubeconfigs written by the sandbox trust; the certificate file when
    /// `None`.
    pub ca: Option<PathBuf>,
}

/// What the sandbox serves with, and what its clients trust.
pub(crate) struct Serving {
    pub(crate) config: Arc<rustls::ServerConfig>,
    pub(crate) ca_pem: String,
}

fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, String> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| e.to_string())?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

impl Serving {
    /// A fresh CA and a certificate for `127.0.0.1`, `::1` and `localhost` it signed.
    pub(crate) fn generate() -> Result<Self, ConfigError> {
        let err = |e: rcgen::Error| ConfigError {
            path: PathBuf::from("<generated serving certificate>"),
            reason: e.to_string(),
        };
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "rancher-sandbox CA");
        ca_params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let ca_key = rcgen::KeyPair::generate().map_err(err)?;
        let ca = rcgen::CertifiedIssuer::self_signed(ca_params, ca_key).map_err(err)?;
        let mut params = rcgen::CertificateParams::new(vec![
            "127.0.0.1".to_owned(),
            "::1".to_owned(),
            "localhost".to_owned(),
        ])
        .map_err(err)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "rancher-sandbox");
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        let key = rcgen::KeyPair::generate().map_err(err)?;
        let cert = params.signed_by(&key, &ca).map_err(err)?;
        let key_der = PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| ConfigError {
            path: PathBuf::from("<generated serving certificate>"),
            reason: e.to_owned(),
        })?;
        let config =
            server_config(vec![cert.der().clone()], key_der).map_err(|reason| ConfigError {
                path: PathBuf::from("<generated serving certificate>"),
                reason,
            })?;
        Ok(Self {
            config,
            ca_pem: ca.pem(),
        })
    }

    /// The certificate and key in `files`.
    pub(crate) fn from_files(files: &TlsFiles) -> Result<Self, ConfigError> {
        let read = |path: &PathBuf| {
            std::fs::read(path).map_err(|e| ConfigError {
                path: path.clone(),
                reason: e.to_string(),
            })
        };
        let cert_pem = read(&files.cert)?;
        let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&cert_pem)
            .collect::<Result<_, _>>()
            .map_err(|e| ConfigError {
                path: files.cert.clone(),
                reason: format!("not a PEM certificate chain: {e}"),
            })?;
        let key = PrivateKeyDer::from_pem_slice(&read(&files.key)?).map_err(|_| ConfigError {
            path: files.key.clone(),
            reason: "holds no PEM private key".into(),
        })?;
        let config = server_config(chain, key).map_err(|reason| ConfigError {
            path: files.key.clone(),
            reason,
        })?;
        let ca = match &files.ca {
            Some(ca) => read(ca)?,
            None => cert_pem,
        };
        Ok(Self {
            config,
            ca_pem: String::from_utf8_lossy(&ca).into_owned(),
        })
    }
}

/// A listener that hands axum TLS connections, doing the handshakes concurrently so a slow
/// client holds up nobody else.
pub(crate) struct TlsListener {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    pub(crate) fn new(
        listener: TcpListener,
        config: Arc<rustls::ServerConfig>,
    ) -> std::io::Result<Self> {
        let addr = listener.local_addr()?;
        let (tx, accepted) = mpsc::channel(64);
        let acceptor = tokio_rustls::TlsAcceptor::from(config);
        let task = tokio::spawn(async move {
            loop {
                let (stream, peer) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        tracing::debug!(%error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream))
                        .await
                    {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(error)) => tracing::debug!(%error, "TLS handshake failed"),
                        Err(_) => tracing::debug!("TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(Self {
            accepted,
            addr,
            task,
        })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(accepted) => accepted,
            // The accept loop only ends when this listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.addr)
    }
}
