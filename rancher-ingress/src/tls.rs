//! Checking TLS material from Secrets before it reaches a load balancer.

use rustls_pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};

/// Why a certificate/key pair was rejected. Messages never include key material.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `tls.crt` holds no PEM certificate.
    #[error("tls.crt holds no PEM certificate")]
    NoCertificate,
    /// `tls.key` holds no PEM private key.
    #[error("tls.key holds no PEM private key")]
    NoKey,
    /// The key's algorithm is not supported.
    #[error("tls.key is not an RSA, ECDSA or Ed25519 private key")]
    UnsupportedKey,
    /// The key does not belong to the certificate.
    #[error("tls.key does not match the certificate in tls.crt")]
    Mismatch,
    /// The PEM text is not UTF-8.
    #[error("{0} is not UTF-8 PEM text")]
    NotText(&'static str),
}

/// Result of a check.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Checks that `cert` is a PEM certificate chain and `key` the PEM private key of
/// its first certificate; returns both as text.
pub fn check_pair(cert: &[u8], key: &[u8]) -> Result<(String, String)> {
    let cert_text = std::str::from_utf8(cert).map_err(|_| Error::NotText("tls.crt"))?;
    let key_text = std::str::from_utf8(key).map_err(|_| Error::NotText("tls.key"))?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<_, _>>()
        .map_err(|_| Error::NoCertificate)?;
    if chain.is_empty() {
        return Err(Error::NoCertificate);
    }
    let private = PrivateKeyDer::from_pem_slice(key).map_err(|_| Error::NoKey)?;
    let signing = rustls::crypto::ring::sign::any_supported_type(&private)
        .map_err(|_| Error::UnsupportedKey)?;
    let certified = rustls::sign::CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => Ok((cert_text.to_owned(), key_text.to_owned())),
        // Keys whose public half cannot be derived cannot be checked; accept them.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {
            Ok((cert_text.to_owned(), key_text.to_owned()))
        }
        Err(_) => Err(Error::Mismatch),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORG_CRT: &str = include_str!("../tests/data/example.org.crt");
    const ORG_KEY: &str = include_str!("../tests/data/example.org.key");
    const NET_KEY: &str = include_str!("../tests/data/example.net.key");

    #[test]
    fn matching_pairs_pass_and_others_fail() {
        assert!(check_pair(ORG_CRT.as_bytes(), ORG_KEY.as_bytes()).is_ok());
        assert_eq!(
            check_pair(ORG_CRT.as_bytes(), NET_KEY.as_bytes()),
            Err(Error::Mismatch)
        );
        assert_eq!(
            check_pair(b"not a cert", ORG_KEY.as_bytes()),
            Err(Error::NoCertificate)
        );
        assert_eq!(check_pair(ORG_CRT.as_bytes(), b""), Err(Error::NoKey));
    }
}
