//! [`Rfc2136Provider`]: RFC 2136 dynamic updates, signed with TSIG (RFC 8945),
//! to an authoritative server such as BIND.
//!
//! Records are read with a TSIG-signed zone transfer (AXFR) and changed with
//! one signed UPDATE per [`Changes`]: first a delete-by-data (class `NONE`) per
//! removed record, then an addition per new record, so a name can switch
//! between addresses and a CNAME in one atomic update. Everything goes over
//! TCP, with a timeout per exchange.
//!
//! The server needs `allow-update` and `allow-transfer` for the key on the
//! zone, for example in BIND:
//!
//! ```text
//! key "federation" { algorithm hmac-sha256; secret "<base64>"; };
//! zone "example.org" {
//!     type primary; file "example.org.zone";
//!     allow-update { key "federation"; };
//!     allow-transfer { key "federation"; };
//! };
//! ```

use std::{fmt, net::SocketAddr, time::Duration};

use async_trait::async_trait;
use base64::Engine as _;
use hickory_proto::{
    op::{Message, MessageType, OpCode, Query, ResponseCode, UpdateMessage},
    rr::{
        DNSClass, Name, RData, RecordType, TSigner,
        rdata::{A, AAAA, CNAME, tsig::TsigAlgorithm},
    },
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

use super::{DnsProvider, Error, Result};
use crate::model::{Changes, DnsName, Record, RecordData, RecordSet, Scope};

/// The default time allowed for one exchange with the server.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// The TSIG fudge: how far the server's clock may differ from ours, seconds.
const FUDGE: u16 = 300;

/// A TSIG key: name, algorithm and shared secret. `Debug` never shows the
/// secret.
#[derive(Clone)]
pub struct TsigKey {
    name: DnsName,
    algorithm: TsigAlgorithm,
    secret: Vec<u8>,
}

impl fmt::Debug for TsigKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsigKey")
            .field("name", &self.name)
            .field("algorithm", &self.algorithm.to_name().to_ascii())
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl TsigKey {
    /// A key named `name` with `algorithm` (`hmac-sha256`, `hmac-sha384` or
    /// `hmac-sha512`, as in BIND's `key` statement) and the base64 `secret`.
    pub fn new(name: &str, algorithm: &str, secret_base64: &str) -> Result<Self> {
        let name =
            DnsName::new(name).map_err(|error| Error::Config(format!("tsig key name: {error}")))?;
        let algorithm = match algorithm.to_ascii_lowercase().trim_end_matches('.') {
            "hmac-sha256" => TsigAlgorithm::HmacSha256,
            "hmac-sha384" => TsigAlgorithm::HmacSha384,
            "hmac-sha512" => TsigAlgorithm::HmacSha512,
            other => {
                return Err(Error::Config(format!(
                    "tsig algorithm {other:?} is not supported (use hmac-sha256, hmac-sha384 or hmac-sha512)"
                )));
            }
        };
        let secret = base64::engine::general_purpose::STANDARD
            .decode(secret_base64.trim())
            .map_err(|_| Error::Config(format!("tsig key {name}: the secret is not base64")))?;
        if secret.is_empty() {
            return Err(Error::Config(format!(
                "tsig key {name}: the secret is empty"
            )));
        }
        Ok(Self {
            name,
            algorithm,
            secret,
        })
    }

    /// The key's name.
    pub fn name(&self) -> &DnsName {
        &self.name
    }

    fn signer(&self) -> Result<TSigner> {
        let name = to_name(&self.name)?;
        TSigner::new(self.secret.clone(), self.algorithm.clone(), name, FUDGE)
            .map_err(|error| Error::Config(format!("tsig key {}: {error}", self.name)))
    }
}

/// Where and how to send updates.
#[derive(Clone, Debug)]
pub struct Rfc2136Config {
    /// The primary server's address.
    pub server: SocketAddr,
    /// The zone to update; every federated name must lie in it.
    pub zone: DnsName,
    /// The TSIG key; `None` sends unsigned requests.
    pub key: Option<TsigKey>,
    /// The time allowed for one exchange.
    pub timeout: Duration,
}

impl Rfc2136Config {
    /// A configuration for `zone` at `server` with the default timeout.
    pub fn new(server: SocketAddr, zone: DnsName, key: Option<TsigKey>) -> Self {
        Self {
            server,
            zone,
            key,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

/// Publishes records through RFC 2136 dynamic updates.
pub struct Rfc2136Provider {
    config: Rfc2136Config,
    signer: Option<TSigner>,
}

impl fmt::Debug for Rfc2136Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key's Debug redacts the secret; the signer is not shown.
        f.debug_struct("Rfc2136Provider")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Rfc2136Provider {
    /// A provider for `config`. Fails when the key cannot be used.
    pub fn new(config: Rfc2136Config) -> Result<Self> {
        let signer = config.key.as_ref().map(TsigKey::signer).transpose()?;
        Ok(Self { config, signer })
    }

    /// The configuration.
    pub fn config(&self) -> &Rfc2136Config {
        &self.config
    }

    fn server(&self) -> String {
        self.config.server.to_string()
    }

    fn unreachable(&self, source: std::io::Error) -> Error {
        Error::Unreachable {
            server: self.server(),
            source,
        }
    }

    fn invalid(&self, reason: impl fmt::Display) -> Error {
        Error::InvalidAnswer {
            server: self.server(),
            reason: reason.to_string(),
        }
    }

    /// Signs `message` when a key is configured and encodes it.
    fn encode(
        &self,
        message: &mut Message,
    ) -> Result<(Vec<u8>, Option<hickory_proto::rr::TSigVerifier>)> {
        let verifier = match &self.signer {
            Some(signer) => message
                .finalize(signer, now())
                .map_err(|error| Error::Other(Box::new(error)))?,
            None => None,
        };
        let bytes = message
            .to_vec()
            .map_err(|error| Error::Other(Box::new(error)))?;
        Ok((bytes, verifier))
    }

    async fn connect(&self) -> Result<TcpStream> {
        match tokio::time::timeout(self.config.timeout, TcpStream::connect(self.config.server))
            .await
        {
            Ok(Ok(stream)) => Ok(stream),
            Ok(Err(error)) => Err(self.unreachable(error)),
            Err(_) => Err(self.unreachable(std::io::ErrorKind::TimedOut.into())),
        }
    }

    async fn send(&self, stream: &mut TcpStream, bytes: &[u8]) -> Result<()> {
        let length = u16::try_from(bytes.len())
            .map_err(|_| Error::Config("update larger than 64 KiB".into()))?;
        let mut framed = Vec::with_capacity(bytes.len() + 2);
        framed.extend_from_slice(&length.to_be_bytes());
        framed.extend_from_slice(bytes);
        match tokio::time::timeout(self.config.timeout, stream.write_all(&framed)).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(self.unreachable(error)),
            Err(_) => Err(self.unreachable(std::io::ErrorKind::TimedOut.into())),
        }
    }

    async fn receive(&self, stream: &mut TcpStream) -> Result<Vec<u8>> {
        let read = async {
            let length = stream.read_u16().await?;
            let mut buffer = vec![0; usize::from(length)];
            stream.read_exact(&mut buffer).await?;
            Ok::<_, std::io::Error>(buffer)
        };
        match tokio::time::timeout(self.config.timeout, read).await {
            Ok(Ok(buffer)) => Ok(buffer),
            Ok(Err(error)) => Err(self.unreachable(error)),
            Err(_) => Err(self.unreachable(std::io::ErrorKind::TimedOut.into())),
        }
    }

    /// Decodes a response, maps error codes, and checks the TSIG signature
    /// when one is expected.
    fn check_response(
        &self,
        bytes: &[u8],
        id: u16,
        operation: &'static str,
        verifier: Option<&mut hickory_proto::rr::TSigVerifier>,
    ) -> Result<Message> {
        let message = Message::from_vec(bytes).map_err(|error| self.invalid(error))?;
        if message.metadata.id != id {
            return Err(self.invalid("response id does not match the request"));
        }
        let rcode = message.metadata.response_code;
        if rcode == ResponseCode::NotAuth {
            let reason = message
                .signature()
                .and_then(|tsig| tsig.data.error.as_ref())
                .map_or_else(|| "not authorized".to_owned(), |error| format!("{error:?}"));
            return Err(Error::Unauthorized {
                server: self.server(),
                reason,
            });
        }
        if rcode != ResponseCode::NoError {
            return Err(Error::Refused {
                server: self.server(),
                operation,
                rcode: rcode.to_string(),
            });
        }
        if let Some(verifier) = verifier {
            if message.signature().is_none() {
                return Err(self.invalid("the response is not signed"));
            }
            verifier
                .verify(bytes)
                .map_err(|error| self.invalid(format!("tsig: {error}")))?;
        }
        Ok(message)
    }

    /// Reads the zone with AXFR.
    async fn transfer(&self) -> Result<Vec<hickory_proto::rr::Record>> {
        let zone = to_name(&self.config.zone)?;
        let mut message = Message::new(fastrand::u16(..), MessageType::Query, OpCode::Query);
        let mut query = Query::query(zone, RecordType::AXFR);
        query.set_query_class(DNSClass::IN);
        message.add_query(query);
        let id = message.metadata.id;
        let (bytes, mut verifier) = self.encode(&mut message)?;
        let mut stream = self.connect().await?;
        self.send(&mut stream, &bytes).await?;

        let mut records = Vec::new();
        let mut soas = 0;
        let mut first = true;
        while soas < 2 {
            let bytes = self.receive(&mut stream).await?;
            // Every message of the transfer is signed by BIND; check the first
            // one always and later ones when signed.
            let check = match &mut verifier {
                Some(verifier) if first => Some(verifier),
                Some(verifier) => Message::from_vec(&bytes)
                    .ok()
                    .filter(|m| m.signature().is_some())
                    .map(|_| verifier),
                None => None,
            };
            let message = self.check_response(&bytes, id, "zone transfer", check)?;
            first = false;
            if message.answers.is_empty() {
                return Err(self.invalid("empty zone transfer message"));
            }
            for record in message.answers {
                if record.record_type() == RecordType::SOA {
                    soas += 1;
                }
                records.push(record);
            }
        }
        Ok(records)
    }
}

#[async_trait]
impl DnsProvider for Rfc2136Provider {
    async fn records(&self, scope: &Scope) -> Result<RecordSet> {
        let mut out = RecordSet::new();
        for record in self.transfer().await? {
            let Ok(name) = DnsName::new(&record.name.to_ascii()) else {
                continue;
            };
            if !scope.owns(&name) {
                continue;
            }
            let data = match &record.data {
                RData::A(a) => RecordData::A(a.0),
                RData::AAAA(aaaa) => RecordData::Aaaa(aaaa.0),
                RData::CNAME(cname) => match DnsName::new(&cname.0.to_ascii()) {
                    Ok(target) => RecordData::Cname(target),
                    Err(_) => continue,
                },
                _ => continue,
            };
            out.insert(Record::new(name, record.ttl, data));
        }
        Ok(out)
    }

    async fn apply(&self, changes: &Changes) -> Result<()> {
        if changes.is_empty() {
            return Ok(());
        }
        for record in changes.removed.iter().chain(&changes.added) {
            if !record.name.is_within(&self.config.zone) {
                return Err(Error::Config(format!(
                    "record {} is outside zone {}",
                    record.name, self.config.zone
                )));
            }
        }
        let zone = to_name(&self.config.zone)?;
        let mut message = Message::new(fastrand::u16(..), MessageType::Query, OpCode::Update);
        message.metadata.recursion_desired = false;
        let mut query = Query::query(zone, RecordType::SOA);
        query.set_query_class(DNSClass::IN);
        message.add_zone(query);
        for record in &changes.removed {
            let mut rr = to_record(record)?;
            rr.dns_class = DNSClass::NONE;
            rr.ttl = 0;
            message.add_update(rr);
        }
        for record in &changes.added {
            message.add_update(to_record(record)?);
        }
        let id = message.metadata.id;
        let (bytes, mut verifier) = self.encode(&mut message)?;
        let mut stream = self.connect().await?;
        self.send(&mut stream, &bytes).await?;
        let response = self.receive(&mut stream).await?;
        self.check_response(&response, id, "update", verifier.as_mut())?;
        tracing::debug!(server = %self.config.server, %changes, "dns update applied");
        Ok(())
    }
}

fn to_name(name: &DnsName) -> Result<Name> {
    Name::from_ascii(name.fqdn()).map_err(|error| Error::Config(format!("name {name}: {error}")))
}

fn to_record(record: &Record) -> Result<hickory_proto::rr::Record> {
    let data = match &record.data {
        RecordData::A(ip) => RData::A(A(*ip)),
        RecordData::Aaaa(ip) => RData::AAAA(AAAA(*ip)),
        RecordData::Cname(target) => RData::CNAME(CNAME(to_name(target)?)),
    };
    Ok(hickory_proto::rr::Record::from_rdata(
        to_name(&record.name)?,
        record.ttl,
        data,
    ))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_checked_and_never_printed() {
        let key = TsigKey::new("federation.", "HMAC-SHA256", "c2VjcmV0LXNlY3JldA==").unwrap();
        assert_eq!(key.name().as_str(), "federation");
        let shown = format!("{key:?}");
        assert!(shown.contains("<redacted>"), "{shown}");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
        assert!(matches!(
            TsigKey::new("k", "hmac-md5", "c2VjcmV0"),
            Err(Error::Config(message)) if message.contains("hmac-md5")
        ));
        assert!(matches!(
            TsigKey::new("k", "hmac-sha256", "not base64!"),
            Err(Error::Config(message)) if message.contains("base64")
        ));
        assert!(matches!(
            TsigKey::new("k", "hmac-sha256", ""),
            Err(Error::Config(_))
        ));
    }

    #[tokio::test]
    async fn unreachable_server_is_reported_as_such() {
        // A port nobody listens on: bind, take the port, close.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let server = listener.local_addr().unwrap();
        drop(listener);
        let provider = Rfc2136Provider::new(Rfc2136Config::new(
            server,
            DnsName::new("example.org").unwrap(),
            None,
        ))
        .unwrap();
        let scope = crate::model::Federation::new("f", "example.org")
            .unwrap()
            .scope();
        let error = provider.records(&scope).await.unwrap_err();
        assert!(matches!(error, Error::Unreachable { .. }), "{error:?}");
        assert!(error.retry_after().is_some());
    }
}
