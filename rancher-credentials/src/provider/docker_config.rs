//! Credentials from a Docker config file (`~/.docker/config.json`) or the same
//! document held elsewhere (a `dockerconfigjson` Secret).

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use async_trait::async_trait;
use base64::Engine as _;
use serde::Deserialize;

use super::{CredentialProvider, Error, Result};
use crate::{
    matching,
    model::{AuthConfig, CacheKeyType, Request, Response, SecretString},
};

/// The registry entries of a Docker config document, keys normalised as the
/// kubelet does ([`matching::normalize_key`]).
///
/// Reads `auths` of a `config.json`, or the bare map of a legacy `.dockercfg`.
/// Each entry's credentials come from its base64 `auth` (`user:password`), else
/// from `username` and `password`. `credsStore` and `credHelpers` name programs
/// this crate does not run; entries that rely on them have no credentials here and
/// are skipped with a debug log line.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DockerConfig {
    /// Normalised key → credentials.
    pub auths: BTreeMap<String, AuthConfig>,
}

#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    auths: Option<BTreeMap<String, Entry>>,
    #[serde(default, rename = "credsStore")]
    creds_store: Option<serde_json::Value>,
    #[serde(default, rename = "credHelpers")]
    cred_helpers: Option<serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct Entry {
    #[serde(default)]
    auth: Option<SecretString>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<SecretString>,
}

impl DockerConfig {
    /// Parses a `config.json` document (`{"auths": {...}}`). `origin` names the
    /// document in errors (a path, a Secret).
    pub fn from_config_json(bytes: &[u8], origin: &str) -> Result<Self> {
        let file: ConfigFile = serde_json::from_slice(bytes).map_err(|e| invalid(origin, &e))?;
        if file.creds_store.is_some() || file.cred_helpers.is_some() {
            tracing::warn!(
                %origin,
                "credsStore and credHelpers are not run: only credentials stored in auths are used"
            );
        }
        Self::from_entries(file.auths.unwrap_or_default(), origin)
    }

    /// Parses a legacy `.dockercfg` document: the registry map itself.
    pub fn from_dockercfg(bytes: &[u8], origin: &str) -> Result<Self> {
        let entries: BTreeMap<String, Entry> =
            serde_json::from_slice(bytes).map_err(|e| invalid(origin, &e))?;
        Self::from_entries(entries, origin)
    }

    fn from_entries(entries: BTreeMap<String, Entry>, origin: &str) -> Result<Self> {
        let mut auths = BTreeMap::new();
        for (key, entry) in entries {
            let Some(normalised) = matching::normalize_key(&key) else {
                return Err(Error::InvalidCredentials {
                    origin: origin.to_owned(),
                    reason: format!("registry key {key:?} is not a valid registry address"),
                });
            };
            let credentials = match (&entry.auth, entry.username, entry.password) {
                (Some(auth), _, _) if !auth.expose().is_empty() => decode_auth(auth, &key, origin)?,
                (_, Some(username), password) => {
                    AuthConfig::new(username, password.unwrap_or_default())
                }
                (_, None, Some(password)) => AuthConfig::new("", password),
                _ => {
                    tracing::debug!(%origin, registry = %key, "entry has no stored credentials, skipped");
                    continue;
                }
            };
            auths.insert(normalised, credentials);
        }
        Ok(Self { auths })
    }

    /// The entries for the registry `image` is on (every path under it), plus the
    /// Docker Hub entry for a Docker Hub image.
    pub fn for_registry_of(&self, image: &str) -> BTreeMap<String, AuthConfig> {
        let docker_hub = matching::is_docker_hub(image);
        self.auths
            .iter()
            .filter(|(key, _)| {
                matching::matches_registry(key, image)
                    || (docker_hub && key.as_str() == matching::DOCKER_HUB_HOST)
            })
            .map(|(key, auth)| (key.clone(), auth.clone()))
            .collect()
    }

    /// The answer for `request`: the entries for its registry, cached per
    /// registry.
    pub fn respond(&self, request: &Request, cache_duration: Option<Duration>) -> Response {
        let auth = self.for_registry_of(&request.image);
        if auth.is_empty() {
            return Response::empty();
        }
        let mut response =
            Response::new(CacheKeyType::Registry).with_cache_duration(cache_duration);
        response.auth = auth;
        response
    }
}

/// Decodes `base64(user:password)`, naming the entry but not the value on error.
fn decode_auth(auth: &SecretString, key: &str, origin: &str) -> Result<AuthConfig> {
    let invalid = |what: &str| Error::InvalidCredentials {
        origin: origin.to_owned(),
        reason: format!("auth of {key:?} {what}"),
    };
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(auth.expose().trim())
        .map_err(|_| invalid("is not valid base64"))?;
    let text = String::from_utf8(bytes).map_err(|_| invalid("is not UTF-8 text"))?;
    let (username, password) = text
        .split_once(':')
        .ok_or_else(|| invalid("is not of the form user:password"))?;
    Ok(AuthConfig::new(username, password))
}

/// Describes a JSON error in a credentials document by category and position:
/// serde messages may quote values, and these documents hold passwords.
fn invalid(origin: &str, error: &serde_json::Error) -> Error {
    let what = match error.classify() {
        serde_json::error::Category::Data => "a field has the wrong type",
        serde_json::error::Category::Eof => "unexpected end of input",
        serde_json::error::Category::Io | serde_json::error::Category::Syntax => "invalid JSON",
    };
    Error::InvalidCredentials {
        origin: origin.to_owned(),
        reason: format!("{what} at line {} column {}", error.line(), error.column()),
    }
}

/// Settings of a [`DockerConfigProvider`].
#[derive(Clone, Debug)]
pub struct DockerConfigConfig {
    /// The `config.json` to read.
    pub path: PathBuf,
    /// The `cacheDuration` to answer with; `None` leaves it to the kubelet's
    /// `defaultCacheDuration`.
    pub cache_duration: Option<Duration>,
}

impl DockerConfigConfig {
    /// Settings for the file at `path`, with no cache duration of its own.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            cache_duration: None,
        }
    }
}

/// Answers from a Docker `config.json` file, read anew on every request so that
/// changes apply without restarting anything.
///
/// The response holds every entry for the image's registry (all paths under it)
/// with `cacheKeyType: Registry`; a missing or invalid file is an error, so the
/// kubelet does not cache an empty answer.
#[derive(Clone, Debug)]
pub struct DockerConfigProvider {
    config: DockerConfigConfig,
}

impl DockerConfigProvider {
    /// A provider reading the file `config` names.
    pub fn new(config: DockerConfigConfig) -> Self {
        Self { config }
    }

    /// Reads and parses the file.
    pub async fn load(&self) -> Result<DockerConfig> {
        let path = &self.config.path;
        let bytes = tokio::fs::read(path).await.map_err(|source| Error::Read {
            path: path.clone(),
            source,
        })?;
        DockerConfig::from_config_json(&bytes, &path.display().to_string())
    }
}

#[async_trait]
impl CredentialProvider for DockerConfigProvider {
    async fn credentials(&self, request: &Request) -> Result<Response> {
        let config = self.load().await?;
        Ok(config.respond(request, self.config.cache_duration))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(text: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(text)
    }

    #[test]
    fn reads_auth_and_username_password() {
        let json = serde_json::json!({
            "auths": {
                "https://index.docker.io/v1/": {"auth": b64("hub:hubpass")},
                "registry.example.org:5000": {"username": "port", "password": "portpass"},
                "registry.example.org": {"auth": b64("plain:pa:ss")},
                "helper.example.org": {},
            },
            "credsStore": "desktop",
            "credHelpers": {"helper.example.org": "ecr-login"}
        });
        let config = DockerConfig::from_config_json(json.to_string().as_bytes(), "test").unwrap();
        let get = |key: &str| {
            let auth = &config.auths[key];
            (auth.username.as_str(), auth.password.expose())
        };
        assert_eq!(get("index.docker.io"), ("hub", "hubpass"));
        assert_eq!(get("registry.example.org:5000"), ("port", "portpass"));
        // Only the first colon splits.
        assert_eq!(get("registry.example.org"), ("plain", "pa:ss"));
        assert!(!config.auths.contains_key("helper.example.org"));
    }

    #[test]
    fn answers_for_the_registry_with_its_port() {
        let json = serde_json::json!({"auths": {
            "registry.example.org": {"username": "a", "password": "1"},
            "registry.example.org/team": {"username": "b", "password": "2"},
            "registry.example.org:5000": {"username": "c", "password": "3"},
            "registry.example.net": {"username": "d", "password": "4"},
        }});
        let config = DockerConfig::from_config_json(json.to_string().as_bytes(), "test").unwrap();
        let response = config.respond(
            &Request::new("registry.example.org/other/app"),
            Some(Duration::from_secs(60)),
        );
        assert_eq!(response.cache_key_type, CacheKeyType::Registry);
        assert_eq!(
            response.auth.keys().collect::<Vec<_>>(),
            ["registry.example.org", "registry.example.org/team"]
        );
        let response = config.respond(&Request::new("registry.example.org:5000/app"), None);
        assert_eq!(
            response.auth.keys().collect::<Vec<_>>(),
            ["registry.example.org:5000"]
        );
        assert_eq!(response.cache_duration, None);
        let response = config.respond(&Request::new("registry.example.com/app"), None);
        assert_eq!(response, Response::empty());
    }

    #[test]
    fn docker_hub_images_get_the_index_entry() {
        let json = serde_json::json!({"auths": {
            "https://index.docker.io/v1/": {"auth": b64("hub:hubpass")},
        }});
        let config = DockerConfig::from_config_json(json.to_string().as_bytes(), "test").unwrap();
        let response = config.respond(&Request::new("docker.io/library/nginx"), None);
        let found = response.lookup("docker.io/library/nginx");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].1.username, "hub");
    }

    #[test]
    fn invalid_documents_name_the_entry_not_the_secret() {
        let cases = [
            (
                serde_json::json!({"auths": {"r.example.org": {"auth": "%%%secret"}}}),
                "auth of \"r.example.org\" is not valid base64",
            ),
            (
                serde_json::json!({"auths": {"r.example.org": {"auth": b64("nocolonsecret")}}}),
                "is not of the form user:password",
            ),
            (
                serde_json::json!({"auths": {"r.example.org": {"password": ["secret"]}}}),
                "wrong type",
            ),
            (
                serde_json::json!({"auths": {"r.example.org:abc": {"username": "u"}}}),
                "not a valid registry address",
            ),
        ];
        for (json, expected) in cases {
            let err =
                DockerConfig::from_config_json(json.to_string().as_bytes(), "/etc/config.json")
                    .unwrap_err()
                    .to_string();
            assert!(err.contains(expected), "{err}");
            assert!(err.contains("/etc/config.json"), "{err}");
            assert!(!err.contains("secret"), "{err}");
        }
        let err = DockerConfig::from_config_json(b"{", "f")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unexpected end of input"), "{err}");
    }

    #[test]
    fn reads_legacy_dockercfg() {
        let json = serde_json::json!({"registry.example.org": {"auth": b64("u:p")}});
        let config = DockerConfig::from_dockercfg(json.to_string().as_bytes(), "test").unwrap();
        assert_eq!(config.auths["registry.example.org"].username, "u");
    }

    #[tokio::test]
    async fn reads_the_file_on_every_request() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.json");
        let provider = DockerConfigProvider::new(DockerConfigConfig::new(&path));
        let request = Request::new("registry.example.org/app");

        let err = provider
            .credentials(&request)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("failed to read") && err.contains("config.json"),
            "{err}"
        );

        std::fs::write(
            &path,
            r#"{"auths":{"registry.example.org":{"username":"one","password":"1"}}}"#,
        )
        .unwrap();
        let response = provider.credentials(&request).await.unwrap();
        assert_eq!(response.auth["registry.example.org"].username, "one");

        std::fs::write(
            &path,
            r#"{"auths":{"registry.example.org":{"username":"two","password":"2"}}}"#,
        )
        .unwrap();
        let response = provider.credentials(&request).await.unwrap();
        assert_eq!(response.auth["registry.example.org"].username, "two");
    }
}
