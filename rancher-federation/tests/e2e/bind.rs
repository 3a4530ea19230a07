//! A real BIND (`named`) on loopback, started by the test in a temporary
//! directory, with a primary zone that accepts TSIG-signed updates and
//! transfers. The server is killed when the handle drops, also on panic.

use std::{
    net::{SocketAddr, TcpListener, UdpSocket},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::Duration,
};

use base64::Engine as _;
use rancher_federation::{
    model::{DnsName, Federation},
    provider::{DnsProvider, Rfc2136Config, Rfc2136Provider, TsigKey},
};

/// The zone the server is primary for.
pub(crate) const ZONE: &str = "example.org";
/// The name of the key allowed to update it.
pub(crate) const KEY_NAME: &str = "federation-key";
/// The key's algorithm.
pub(crate) const ALGORITHM: &str = "hmac-sha256";

/// A running `named`.
pub(crate) struct Bind {
    dir: tempfile::TempDir,
    port: u16,
    secret: String,
    child: Option<Child>,
}

impl Bind {
    /// Writes the configuration and zone and starts `named`; returns once it
    /// answers a signed zone transfer.
    pub(crate) async fn start() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let port = free_port();
        let mut key = [0u8; 32];
        key.iter_mut().for_each(|b| *b = fastrand::u8(..));
        let secret = base64::engine::general_purpose::STANDARD.encode(key);
        let path = dir.path().display().to_string();
        let conf = format!(
            r#"options {{
    directory "{path}";
    pid-file "{path}/named.pid";
    session-keyfile "{path}/session.key";
    managed-keys-directory "{path}";
    listen-on port {port} {{ 127.0.0.1; }};
    listen-on-v6 {{ none; }};
    recursion no;
    dnssec-validation no;
    notify no;
}};
controls {{ }};
key "{KEY_NAME}" {{ algorithm {ALGORITHM}; secret "{secret}"; }};
zone "{ZONE}" {{
    type primary;
    file "{path}/{ZONE}.zone";
    allow-update {{ key "{KEY_NAME}"; }};
    allow-transfer {{ key "{KEY_NAME}"; }};
}};
"#
        );
        std::fs::write(dir.path().join("named.conf"), conf).expect("write named.conf");
        let zone = format!(
            "$TTL 300\n@ IN SOA ns1.{ZONE}. hostmaster.{ZONE}. 1 3600 600 86400 60\n@ IN NS ns1.{ZONE}.\nns1 IN A 127.0.0.1\nwww IN A 192.0.2.80\n"
        );
        std::fs::write(dir.path().join(format!("{ZONE}.zone")), zone).expect("write zone");
        let mut bind = Self {
            dir,
            port,
            secret,
            child: None,
        };
        bind.spawn().await;
        bind
    }

    fn conf(&self) -> PathBuf {
        self.dir.path().join("named.conf")
    }

    async fn spawn(&mut self) {
        let child = Command::new(named())
            .arg("-g")
            .arg("-c")
            .arg(self.conf())
            .arg("-p")
            .arg(self.port.to_string())
            .arg("-n")
            .arg("1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::create(self.dir.path().join("named.log"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            )
            .spawn()
            .expect("start named (Debian package bind9)");
        self.child = Some(child);
        self.wait_ready().await;
    }

    async fn wait_ready(&mut self) {
        let provider = self.provider();
        let scope = Federation::new("ready", ZONE).unwrap().scope();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        loop {
            if provider.records(&scope).await.is_ok() {
                return;
            }
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("named exited with {status}:\n{}", self.log());
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "named did not answer in 30 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Kills `named` (as a crash or a host restart would).
    pub(crate) fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts `named` again on the same port with the same zone (its journal
    /// keeps the applied updates).
    pub(crate) async fn restart(&mut self) {
        self.stop();
        self.spawn().await;
    }

    /// The server's TCP/UDP address.
    pub(crate) fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The port.
    pub(crate) fn port(&self) -> u16 {
        self.port
    }

    /// The key BIND accepts.
    pub(crate) fn key(&self) -> TsigKey {
        TsigKey::new(KEY_NAME, ALGORITHM, &self.secret).unwrap()
    }

    /// The base64 secret of the key BIND accepts.
    pub(crate) fn secret(&self) -> &str {
        &self.secret
    }

    /// A provider that updates the zone with the right key.
    pub(crate) fn provider(&self) -> Rfc2136Provider {
        self.provider_with(Some(self.key()))
    }

    /// A provider with any key.
    pub(crate) fn provider_with(&self, key: Option<TsigKey>) -> Rfc2136Provider {
        let mut config = Rfc2136Config::new(self.addr(), DnsName::new(ZONE).unwrap(), key);
        config.timeout = Duration::from_secs(2);
        Rfc2136Provider::new(config).unwrap()
    }

    /// `named`'s output so far.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("named.log")).unwrap_or_default()
    }

    /// Asks the server with `dig +short` (a real client) for `name`'s `kind`
    /// records; sorted lines.
    pub(crate) fn dig(&self, name: &str, kind: &str) -> Vec<String> {
        let output = Command::new("dig")
            .args([
                &format!("@{}", self.addr().ip()),
                "-p",
                &self.port.to_string(),
                "+short",
                "+norec",
                "+time=2",
                "+tries=2",
                name,
                kind,
            ])
            .output()
            .expect("run dig (Debian package dnsutils)");
        assert!(output.status.success(), "dig {name} {kind} failed");
        let mut lines: Vec<String> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .map(str::to_owned)
            .filter(|line| !line.is_empty())
            .collect();
        lines.sort();
        lines
    }
}

impl Drop for Bind {
    fn drop(&mut self) {
        self.stop();
    }
}

fn named() -> &'static str {
    if std::path::Path::new("/usr/sbin/named").exists() {
        "/usr/sbin/named"
    } else {
        "named"
    }
}

/// A port free on 127.0.0.1 for both TCP and UDP.
fn free_port() -> u16 {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let port = tcp.local_addr().expect("addr").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}
