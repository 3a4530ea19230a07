//! `certificate`.

use serde::{Deserialize, Serialize};

use super::{Extra, ResourceMeta, impl_resource};
use crate::Secret;

/// A TLS certificate with its private key, referenced by load balancers through
/// `lbConfig.defaultCertificateId` and `lbConfig.certificateIds`.
///
/// `Debug` never shows [`Certificate::key`].
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Certificate {
    /// Common fields.
    #[serde(flatten)]
    pub meta: ResourceMeta,
    /// PEM certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert: Option<String>,
    /// PEM private key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<Secret>,
    /// PEM chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_chain: Option<String>,
    /// Server-computed common name.
    #[serde(rename = "CN", default, skip_serializing_if = "Option::is_none")]
    pub cn: Option<String>,
    /// Server-computed fingerprint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cert_fingerprint: Option<String>,
    /// Server-computed subject alternative names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alternative_names: Vec<String>,
    /// Server-computed expiry (RFC 3339).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Fields this crate does not model, kept for round trips.
    #[serde(flatten)]
    pub extra: Extra,
}

impl_resource!(Certificate, "certificate", "certificates");

impl Certificate {
    /// A certificate to create.
    pub fn new(name: impl Into<String>, cert: impl Into<String>, key: impl Into<Secret>) -> Self {
        Self {
            meta: ResourceMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            cert: Some(cert.into()),
            key: Some(key.into()),
            ..Default::default()
        }
    }
}
