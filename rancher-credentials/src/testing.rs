//! Test support: a [`FakeProvider`] and a [`conformance`] battery that any
//! [`CredentialProvider`] (this crate's or yours) can run.
//!
//! ```
//! use rancher_credentials::testing::{Expectations, FakeProvider, conformance};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let provider = FakeProvider::new().with_auth("registry.example.org", "robot", "s3cr3t");
//! conformance(&provider, &Expectations::new("registry.example.org/team/app", "robot", "s3cr3t")).await;
//! # }
//! ```

use std::{collections::BTreeMap, sync::Mutex, time::Duration};

use async_trait::async_trait;

use crate::{
    CredentialProvider, matching,
    model::{AuthConfig, CacheKeyType, Request, Response},
    provider::{self, Error},
};

/// A provider answering from a map of patterns, recording every request, and
/// failing on demand.
///
/// It answers like the Docker config provider: every entry for the image's
/// registry, with the configured cache key type and duration.
#[derive(Debug)]
pub struct FakeProvider {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    auth: BTreeMap<String, AuthConfig>,
    cache_key_type: CacheKeyType,
    cache_duration: Option<Duration>,
    failure: Option<String>,
    requests: Vec<Request>,
}

impl Default for FakeProvider {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeProvider {
    /// A provider with no credentials, answering with `Registry` and no duration.
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State {
                auth: BTreeMap::new(),
                cache_key_type: CacheKeyType::Registry,
                cache_duration: None,
                failure: None,
                requests: Vec::new(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Adds a credential under `pattern`.
    pub fn with_auth(self, pattern: &str, username: &str, password: &str) -> Self {
        self.state()
            .auth
            .insert(pattern.to_owned(), AuthConfig::new(username, password));
        self
    }

    /// Sets the cache key type and duration of the answers.
    pub fn with_cache(self, key_type: CacheKeyType, duration: Option<Duration>) -> Self {
        {
            let mut state = self.state();
            state.cache_key_type = key_type;
            state.cache_duration = duration;
        }
        self
    }

    /// Makes every following request fail with `message` (`None` to recover).
    pub fn fail_with(&self, message: Option<&str>) {
        self.state().failure = message.map(str::to_owned);
    }

    /// The requests received so far.
    pub fn requests(&self) -> Vec<Request> {
        self.state().requests.clone()
    }
}

#[async_trait]
impl CredentialProvider for FakeProvider {
    async fn credentials(&self, request: &Request) -> provider::Result<Response> {
        let mut state = self.state();
        state.requests.push(request.clone());
        if let Some(message) = &state.failure {
            return Err(Error::Backend {
                backend: "fake".to_owned(),
                source: message.clone().into(),
            });
        }
        let auth: BTreeMap<String, AuthConfig> = state
            .auth
            .iter()
            .filter(|(key, _)| matching::matches_registry(key, &request.image))
            .map(|(key, auth)| (key.clone(), auth.clone()))
            .collect();
        if auth.is_empty() {
            return Ok(Response::empty());
        }
        let mut response =
            Response::new(state.cache_key_type).with_cache_duration(state.cache_duration);
        response.auth = auth;
        Ok(response)
    }
}

/// What [`conformance`] expects of a provider.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Expectations {
    /// An image (repository, no tag) the provider holds a credential for.
    pub image: String,
    /// The username the kubelet must try first for [`image`](Self::image).
    pub username: String,
    /// The password that goes with it.
    pub password: String,
    /// An image the provider holds no credential for.
    pub unknown_image: String,
}

impl Expectations {
    /// Expect `username`/`password` first for `image`, and nothing for
    /// `unknown.example.net/nothing/here`.
    pub fn new(image: &str, username: &str, password: &str) -> Self {
        Self {
            image: image.to_owned(),
            username: username.to_owned(),
            password: password.to_owned(),
            unknown_image: "unknown.example.net/nothing/here".to_owned(),
        }
    }

    /// Sets the image the provider must have nothing for.
    pub fn unknown_image(mut self, image: &str) -> Self {
        self.unknown_image = image.to_owned();
        self
    }
}

/// Checks what the kubelet relies on, panicking with a message on the first
/// violation:
///
/// 1. the credential for [`Expectations::image`] is the first one the kubelet's
///    keyring would try ([`Response::lookup`]);
/// 2. every `auth` key is already in the kubelet's normal form (no scheme, no
///    `/v1/`), so it matches exactly as written;
/// 3. the same image with a tag and with a digest still gets the credential;
/// 4. the response survives the kubelet's strict decoder;
/// 5. `Debug` output of the response does not show the password;
/// 6. the unknown image gets no credential, and no error;
/// 7. concurrent requests get the same answer.
pub async fn conformance(provider: &dyn CredentialProvider, expect: &Expectations) {
    let request = Request::new(&expect.image);
    let response = provider
        .credentials(&request)
        .await
        .unwrap_or_else(|e| panic!("credentials for {}: {e}", expect.image));
    check_first(&response, &expect.image, expect);

    for key in response.auth.keys() {
        assert_eq!(
            matching::normalize_key(key).as_deref(),
            Some(key.as_str()),
            "auth key {key:?} is not in the kubelet's normal form"
        );
    }

    for suffix in [
        ":v1.2.3",
        "@sha256:0000000000000000000000000000000000000000000000000000000000000000",
    ] {
        let image = format!("{}{suffix}", expect.image);
        let tagged = provider
            .credentials(&Request::new(&image))
            .await
            .unwrap_or_else(|e| panic!("credentials for {image}: {e}"));
        check_first(&tagged, &image, expect);
    }

    let json = response.to_json();
    let decoded = Response::from_json(&json)
        .unwrap_or_else(|e| panic!("the kubelet would reject the response: {e}"));
    assert_eq!(decoded, response, "the response does not round-trip");

    if !expect.password.is_empty() {
        let debug = format!("{response:?}");
        assert!(
            !debug.contains(&expect.password),
            "Debug output shows the password"
        );
    }

    let unknown = provider
        .credentials(&Request::new(&expect.unknown_image))
        .await
        .unwrap_or_else(|e| panic!("an unknown image must not be an error: {e}"));
    assert!(
        unknown.lookup(&expect.unknown_image).is_empty(),
        "credentials returned for the unknown image {}",
        expect.unknown_image
    );

    let (a, b) = futures_join(provider, &request).await;
    assert_eq!(a, b, "concurrent requests got different answers");
}

async fn futures_join(
    provider: &dyn CredentialProvider,
    request: &Request,
) -> (Response, Response) {
    let (a, b) = tokio::join!(provider.credentials(request), provider.credentials(request));
    let a = a.unwrap_or_else(|e| panic!("concurrent request: {e}"));
    let b = b.unwrap_or_else(|e| panic!("concurrent request: {e}"));
    (a, b)
}

fn check_first(response: &Response, image: &str, expect: &Expectations) {
    let found = response.lookup(image);
    let (key, auth) = found.first().unwrap_or_else(|| {
        panic!(
            "no auth key matches {image}: keys {:?}",
            response.auth.keys()
        )
    });
    assert_eq!(
        (
            auth.username.as_str(),
            auth.password.expose() == expect.password
        ),
        (expect.username.as_str(), true),
        "the first credential for {image} (key {key:?}) is not the expected one"
    );
}
