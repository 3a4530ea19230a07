//! Kubeconfigs for users: one cluster, one user with a bearer token, one context.

use base64::Engine as _;
use serde_json::json;

use crate::identity::Token;

/// Where the cluster is, for the kubeconfigs handed to users.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterInfo {
    /// The cluster, user and context name in the kubeconfig (`rancher-1a5`).
    pub name: String,
    /// The API server URL (`https://k8s.example.org:6443`).
    pub server: String,
    /// The API server's CA certificate (PEM), embedded as `certificate-authority-data`.
    pub certificate_authority: Option<String>,
}

impl ClusterInfo {
    /// A cluster called `name` at `server`, verified against the system's CAs.
    pub fn new(name: impl Into<String>, server: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            server: server.into(),
            certificate_authority: None,
        }
    }

    /// Embeds `pem` as the CA.
    #[must_use]
    pub fn with_certificate_authority(mut self, pem: impl Into<String>) -> Self {
        self.certificate_authority = Some(pem.into());
        self
    }

    /// A kubeconfig (YAML) for the holder of `token`. It contains the token: treat it as a
    /// secret.
    pub fn kubeconfig(&self, token: &Token) -> String {
        let mut cluster = json!({"server": self.server});
        if let Some(pem) = &self.certificate_authority {
            cluster["certificate-authority-data"] =
                json!(base64::engine::general_purpose::STANDARD.encode(pem));
        }
        let config = json!({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": self.name, "cluster": cluster}],
            "users": [{"name": self.name, "user": {"token": token.expose()}}],
            "contexts": [{"name": self.name, "context": {"cluster": self.name, "user": self.name}}],
            "current-context": self.name,
            "preferences": {},
        });
        serde_saphyr::to_string(&config).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kubeconfig_names_the_server_the_ca_and_the_token() {
        let info = ClusterInfo::new("rancher-1a5", "https://127.0.0.1:6443")
            .with_certificate_authority(
                "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n",
            );
        let text = info.kubeconfig(&Token::new("AK:SK"));
        let back: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
        assert_eq!(back["current-context"], "rancher-1a5");
        assert_eq!(
            back["clusters"][0]["cluster"]["server"],
            "https://127.0.0.1:6443"
        );
        let ca = back["clusters"][0]["cluster"]["certificate-authority-data"]
            .as_str()
            .unwrap();
        let ca = base64::engine::general_purpose::STANDARD
            .decode(ca)
            .unwrap();
        assert!(
            String::from_utf8(ca)
                .unwrap()
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
        assert_eq!(back["users"][0]["user"]["token"], "AK:SK");
        assert_eq!(back["contexts"][0]["context"]["user"], "rancher-1a5");
        // A name with YAML specials stays a string.
        let odd = ClusterInfo::new("a: b # c", "https://x").kubeconfig(&Token::new("t: 1"));
        let back: serde_json::Value = serde_saphyr::from_str(&odd).unwrap();
        assert_eq!(back["current-context"], "a: b # c");
        assert_eq!(back["users"][0]["user"]["token"], "t: 1");
    }
}
