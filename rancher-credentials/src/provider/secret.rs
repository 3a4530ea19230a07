//! Credentials from one Kubernetes Secret of type `kubernetes.io/dockerconfigjson`
//! (or the legacy `kubernetes.io/dockercfg`), read through `kube`.

use std::{fmt, str::FromStr, time::Duration};

use async_trait::async_trait;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;

use super::{CredentialProvider, DockerConfig, Error, Result};
use crate::model::{Request, Response};

/// The Secret type holding a `config.json` document.
pub const DOCKER_CONFIG_JSON_TYPE: &str = "kubernetes.io/dockerconfigjson";
/// The data key of a [`DOCKER_CONFIG_JSON_TYPE`] Secret.
pub const DOCKER_CONFIG_JSON_KEY: &str = ".dockerconfigjson";
/// The legacy Secret type holding a `.dockercfg` document.
pub const DOCKERCFG_TYPE: &str = "kubernetes.io/dockercfg";
/// The data key of a [`DOCKERCFG_TYPE`] Secret.
pub const DOCKERCFG_KEY: &str = ".dockercfg";

/// A Secret named `namespace/name`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SecretRef {
    /// The namespace.
    pub namespace: String,
    /// The name.
    pub name: String,
}

impl SecretRef {
    /// The Secret `namespace/name`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.name)
    }
}

/// A `NAMESPACE/NAME` that is not one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid secret reference {input:?}: expected NAMESPACE/NAME")]
pub struct ParseSecretRefError {
    input: String,
}

impl FromStr for SecretRef {
    type Err = ParseSecretRefError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        match input.split_once('/') {
            Some((namespace, name))
                if !namespace.is_empty() && !name.is_empty() && !name.contains('/') =>
            {
                Ok(Self::new(namespace, name))
            }
            _ => Err(ParseSecretRefError {
                input: input.to_owned(),
            }),
        }
    }
}

/// The Docker config a Secret holds. `origin` names the Secret in errors.
pub fn docker_config_from_secret(secret: &Secret, origin: &str) -> Result<DockerConfig> {
    let invalid = |reason: String| Error::InvalidCredentials {
        origin: origin.to_owned(),
        reason,
    };
    let secret_type = secret.type_.as_deref().unwrap_or("Opaque");
    let (key, legacy) = match secret_type {
        DOCKER_CONFIG_JSON_TYPE => (DOCKER_CONFIG_JSON_KEY, false),
        DOCKERCFG_TYPE => (DOCKERCFG_KEY, true),
        other => {
            return Err(invalid(format!(
                "type is {other:?}, expected {DOCKER_CONFIG_JSON_TYPE:?}"
            )));
        }
    };
    let data = secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .ok_or_else(|| invalid(format!("data has no key {key:?}")))?;
    if legacy {
        DockerConfig::from_dockercfg(&data.0, origin)
    } else {
        DockerConfig::from_config_json(&data.0, origin)
    }
}

/// Settings of a [`SecretProvider`].
#[derive(Clone, Debug)]
pub struct SecretConfig {
    /// The Secret to read.
    pub secret: SecretRef,
    /// The `cacheDuration` to answer with; `None` leaves it to the kubelet.
    pub cache_duration: Option<Duration>,
}

impl SecretConfig {
    /// Settings for the Secret `secret`, with no cache duration of its own.
    pub fn new(secret: SecretRef) -> Self {
        Self {
            secret,
            cache_duration: None,
        }
    }
}

/// Answers from one named Secret, read with a single `GET` per request.
///
/// Like the Docker config provider it returns every entry for the image's
/// registry with `cacheKeyType: Registry`. A missing Secret, a Secret of another
/// type, and an unreachable API server are errors. The node's identity needs
/// `get` on that one Secret.
#[derive(Clone)]
pub struct SecretProvider {
    api: Api<Secret>,
    config: SecretConfig,
    origin: String,
}

impl fmt::Debug for SecretProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretProvider")
            .field("secret", &self.config.secret)
            .finish()
    }
}

impl SecretProvider {
    /// A provider reading `config.secret` through `client`.
    pub fn new(client: kube::Client, config: SecretConfig) -> Self {
        let api = Api::namespaced(client, &config.secret.namespace);
        let origin = format!("secret {}", config.secret);
        Self {
            api,
            config,
            origin,
        }
    }

    /// Reads and parses the Secret.
    pub async fn load(&self) -> Result<DockerConfig> {
        let secret = self
            .api
            .get_opt(&self.config.secret.name)
            .await
            .map_err(|source| Error::Backend {
                backend: format!("reading {}", self.origin),
                source: Box::new(source),
            })?
            .ok_or_else(|| Error::InvalidCredentials {
                origin: self.origin.clone(),
                reason: "not found".to_owned(),
            })?;
        docker_config_from_secret(&secret, &self.origin)
    }
}

#[async_trait]
impl CredentialProvider for SecretProvider {
    async fn credentials(&self, request: &Request) -> Result<Response> {
        let config = self.load().await?;
        Ok(config.respond(request, self.config.cache_duration))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use k8s_openapi::ByteString;

    use super::*;

    fn secret(type_: &str, key: &str, value: &str) -> Secret {
        Secret {
            type_: Some(type_.to_owned()),
            data: Some(BTreeMap::from([(
                key.to_owned(),
                ByteString(value.as_bytes().to_vec()),
            )])),
            ..Secret::default()
        }
    }

    #[test]
    fn parses_both_secret_types() {
        let config = docker_config_from_secret(
            &secret(
                DOCKER_CONFIG_JSON_TYPE,
                DOCKER_CONFIG_JSON_KEY,
                r#"{"auths":{"registry.example.org":{"username":"u","password":"p"}}}"#,
            ),
            "secret ns/a",
        )
        .unwrap();
        assert_eq!(config.auths["registry.example.org"].username, "u");
        let config = docker_config_from_secret(
            &secret(
                DOCKERCFG_TYPE,
                DOCKERCFG_KEY,
                r#"{"registry.example.org":{"username":"old","password":"p"}}"#,
            ),
            "secret ns/a",
        )
        .unwrap();
        assert_eq!(config.auths["registry.example.org"].username, "old");
    }

    #[test]
    fn rejects_other_secrets_naming_them() {
        let err = docker_config_from_secret(&secret("Opaque", "x", "{}"), "secret ns/a")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid credentials in secret ns/a: type is \"Opaque\", expected \"kubernetes.io/dockerconfigjson\""
        );
        let err = docker_config_from_secret(
            &secret(DOCKER_CONFIG_JSON_TYPE, "config.json", "{}"),
            "secret ns/a",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("data has no key \".dockerconfigjson\""),
            "{err}"
        );
    }

    #[test]
    fn secret_refs_parse() {
        assert_eq!(
            "kube-system/registry".parse::<SecretRef>(),
            Ok(SecretRef::new("kube-system", "registry"))
        );
        for bad in ["registry", "/registry", "ns/", "a/b/c", ""] {
            assert!(bad.parse::<SecretRef>().is_err(), "{bad}");
        }
    }
}
