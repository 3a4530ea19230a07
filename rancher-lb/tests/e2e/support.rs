//! Echo backends, raw HTTP/TLS/TCP clients and the driver harness.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rancher_lb::haproxy::{HaproxyConfig, HaproxyDriver};
use rancher_lb::placement::Host;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

pub(crate) const ORG_CRT: &str = include_str!("../data/example-org.crt");
pub(crate) const ORG_KEY: &str = include_str!("../data/example-org.key");
pub(crate) const NET_CRT: &str = include_str!("../data/example-net.crt");
pub(crate) const NET_KEY: &str = include_str!("../data/example-net.key");
pub(crate) const OTHER_KEY: &str = include_str!("../data/other.key");

pub(crate) fn host(last: u8) -> IpAddr {
    IpAddr::from([127, 0, 0, last])
}

/// A port free on 127.0.0.2-4 right now.
pub(crate) async fn free_port() -> u16 {
    loop {
        let l = TcpListener::bind((host(2), 0)).await.unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let mut ok = true;
        for h in [3, 4] {
            if TcpListener::bind((host(h), port)).await.is_err() {
                ok = false;
            }
        }
        if ok {
            return port;
        }
    }
}

/// An HTTP backend answering every request with its name and the path, and a
/// `X-Backend` header.
pub(crate) struct Echo {
    pub(crate) addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

pub(crate) async fn http_echo(name: &str) -> Echo {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let name = name.to_owned();
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                break;
            };
            let name = name.clone();
            tokio::spawn(async move {
                let mut reader = BufReader::new(stream);
                loop {
                    let mut request_line = String::new();
                    if reader.read_line(&mut request_line).await.unwrap_or(0) == 0 {
                        return;
                    }
                    let path = request_line.split(' ').nth(1).unwrap_or("").to_owned();
                    let mut headers = String::new();
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        headers.push_str(&line);
                    }
                    let proto = headers
                        .lines()
                        .find_map(|l| {
                            l.strip_prefix("x-forwarded-proto: ")
                                .or(l.strip_prefix("X-Forwarded-Proto: "))
                        })
                        .unwrap_or("")
                        .to_owned();
                    let body = format!("{name} {path} {proto}");
                    let response = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Backend: {name}\r\nContent-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if reader
                        .get_mut()
                        .write_all(response.as_bytes())
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    Echo { addr, task }
}

/// A TCP backend that greets with its name and echoes what it reads.
pub(crate) async fn tcp_echo(name: &str) -> Echo {
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let name = name.to_owned();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                break;
            };
            let name = name.clone();
            tokio::spawn(async move {
                let _ = stream.write_all(format!("{name}\n").as_bytes()).await;
                let mut buf = [0u8; 1024];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 || stream.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Echo { addr, task }
}

/// A parsed HTTP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Response {
    pub(crate) status: u16,
    pub(crate) body: String,
}

fn parse(raw: &[u8]) -> Response {
    let text = String::from_utf8_lossy(raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Response { status, body }
}

async fn exchange<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    mut s: S,
    host_header: &str,
    path: &str,
) -> std::io::Result<Response> {
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host_header}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    Ok(parse(&raw))
}

/// One plain HTTP request with a raw Host header.
pub(crate) async fn get(
    addr: IpAddr,
    port: u16,
    host_header: &str,
    path: &str,
) -> std::io::Result<Response> {
    let s = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect((addr, port)))
        .await
        .map_err(|_| std::io::Error::other("connect timeout"))??;
    tokio::time::timeout(Duration::from_secs(5), exchange(s, host_header, path))
        .await
        .map_err(|_| std::io::Error::other("request timeout"))?
}

#[derive(Debug)]
struct AcceptAny;

impl tokio_rustls::rustls::client::danger::ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &rustls_pki_types::CertificateDer<'_>,
        _: &[rustls_pki_types::CertificateDer<'_>],
        _: &rustls_pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls_pki_types::UnixTime,
    ) -> Result<tokio_rustls::rustls::client::danger::ServerCertVerified, tokio_rustls::rustls::Error>
    {
        Ok(tokio_rustls::rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &rustls_pki_types::CertificateDer<'_>,
        d: &tokio_rustls::rustls::DigitallySignedStruct,
    ) -> Result<
        tokio_rustls::rustls::client::danger::HandshakeSignatureValid,
        tokio_rustls::rustls::Error,
    > {
        tokio_rustls::rustls::crypto::verify_tls12_signature(
            m,
            c,
            d,
            &tokio_rustls::rustls::crypto::ring::default_provider()
                .signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &rustls_pki_types::CertificateDer<'_>,
        d: &tokio_rustls::rustls::DigitallySignedStruct,
    ) -> Result<
        tokio_rustls::rustls::client::danger::HandshakeSignatureValid,
        tokio_rustls::rustls::Error,
    > {
        tokio_rustls::rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &tokio_rustls::rustls::crypto::ring::default_provider()
                .signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<tokio_rustls::rustls::SignatureScheme> {
        tokio_rustls::rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// A TLS connection with SNI; returns the leaf certificate the server sent.
pub(crate) async fn tls_connect(
    addr: IpAddr,
    port: u16,
    sni: &str,
) -> std::io::Result<(tokio_rustls::client::TlsStream<TcpStream>, Vec<u8>)> {
    let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
    let config = tokio_rustls::rustls::ClientConfig::builder()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect((addr, port)).await?;
    let name =
        rustls_pki_types::ServerName::try_from(sni.to_owned()).map_err(std::io::Error::other)?;
    let tls = tokio::time::timeout(Duration::from_secs(5), connector.connect(name, tcp))
        .await
        .map_err(|_| std::io::Error::other("handshake timeout"))??;
    let leaf = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.as_ref().to_vec())
        .unwrap_or_default();
    Ok((tls, leaf))
}

/// One HTTPS request with SNI `sni` and Host `host_header`.
pub(crate) async fn get_tls(
    addr: IpAddr,
    port: u16,
    sni: &str,
    host_header: &str,
    path: &str,
) -> std::io::Result<(Response, Vec<u8>)> {
    let (tls, leaf) = tls_connect(addr, port, sni).await?;
    let r = tokio::time::timeout(Duration::from_secs(5), exchange(tls, host_header, path))
        .await
        .map_err(|_| std::io::Error::other("request timeout"))??;
    Ok((r, leaf))
}

/// The DER of the first certificate in a PEM text.
pub(crate) fn der_of(pem: &str) -> Vec<u8> {
    use rustls_pki_types::pem::PemObject;
    rustls_pki_types::CertificateDer::pem_slice_iter(pem.as_bytes())
        .next()
        .unwrap()
        .unwrap()
        .as_ref()
        .to_vec()
}

/// Polls `f` until it returns `Some`, or panics after `secs` seconds.
pub(crate) async fn eventually<T, F, Fut>(what: &str, secs: u64, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A driver on 127.0.0.2-4 in a temporary directory.
pub(crate) struct Harness {
    pub(crate) driver: Arc<HaproxyDriver>,
    pub(crate) hosts: Vec<IpAddr>,
    pub(crate) dir: tempfile::TempDir,
}

impl Harness {
    pub(crate) async fn new(hosts: u8) -> Self {
        Self::with(hosts, |c| c).await
    }

    pub(crate) async fn with(hosts: u8, f: impl FnOnce(HaproxyConfig) -> HaproxyConfig) -> Self {
        let _ = tokio_rustls::rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let addrs: Vec<IpAddr> = (2..2 + hosts).map(host).collect();
        let config = f(HaproxyConfig::new(
            dir.path().join("lb"),
            addrs.iter().map(|a| Host::new(*a)).collect(),
        ));
        let driver = Arc::new(HaproxyDriver::new(config).await.unwrap());
        Self {
            driver,
            hosts: addrs,
            dir,
        }
    }

    /// Shuts the driver down and checks no HAProxy process it started is left.
    pub(crate) async fn finish(self) {
        let mut pids = Vec::new();
        for h in &self.hosts {
            if let Some(info) = self.driver.instance_info(*h).await {
                pids.push(info.master_pid);
                pids.extend(info.worker_pids);
                pids.extend(info.old_worker_pids);
            }
        }
        self.driver.shutdown().await;
        eventually("haproxy processes to exit", 15, || {
            let pids = pids.clone();
            async move { pids.iter().all(|p| !alive(*p)).then_some(()) }
        })
        .await;
    }

    /// Every file under the work directory, concatenated.
    pub(crate) fn all_files(&self) -> String {
        let mut out = String::new();
        collect(&self.dir.path().join("lb"), &mut out);
        out
    }
}

fn collect(dir: &Path, out: &mut String) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else if let Ok(text) = std::fs::read_to_string(&p) {
            out.push_str(&text);
        }
    }
}

/// Whether a process exists and is not a zombie.
pub(crate) fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z') || rest.starts_with('X')),
        Err(_) => false,
    }
}

/// Sends `n` requests on one keep-alive connection, reconnecting only when
/// the server announces `Connection: close` on a response. Returns the
/// statuses; an I/O error (a connection closed under a request) is an error.
pub(crate) async fn get_keepalive(
    addr: IpAddr,
    port: u16,
    host_header: &str,
    n: usize,
) -> std::io::Result<Vec<u16>> {
    let mut statuses = Vec::new();
    let mut conn: Option<BufReader<TcpStream>> = None;
    while statuses.len() < n {
        let mut s = match conn.take() {
            Some(s) => s,
            None => BufReader::new(TcpStream::connect((addr, port)).await?),
        };
        let req = format!("GET / HTTP/1.1\r\nHost: {host_header}\r\n\r\n");
        s.get_mut().write_all(req.as_bytes()).await?;
        let mut line = String::new();
        if s.read_line(&mut line).await? == 0 {
            return Err(std::io::Error::other(
                "connection closed before the response",
            ));
        }
        let status = line
            .split(' ')
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        let (mut length, mut close) = (0usize, false);
        loop {
            line.clear();
            if s.read_line(&mut line).await? == 0 {
                return Err(std::io::Error::other("connection closed in the headers"));
            }
            if line == "\r\n" {
                break;
            }
            let lower = line.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                length = v.trim().parse().unwrap_or(0);
            }
            if lower.starts_with("connection:") && lower.contains("close") {
                close = true;
            }
        }
        let mut body = vec![0u8; length];
        s.read_exact(&mut body).await?;
        statuses.push(status);
        if !close {
            conn = Some(s);
        }
    }
    Ok(statuses)
}
