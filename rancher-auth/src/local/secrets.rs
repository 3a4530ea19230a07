//! Local tokens from Secrets (feature `runtime`): a watch on the Secrets labelled
//! [`TOKEN_LABEL`]` = "true"` in one namespace, kept in [`LocalTokens`].
//!
//! A Secret that is not a valid token is skipped with a warning naming the Secret and the
//! field (never a value); the other tokens keep working.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt as _;
use kube::runtime::watcher;
use parking_lot::RwLock;
use rancher_runtime::index::{self, IndexNamespacedResource, NamespacedRemoved};
use rancher_runtime::ready::Pending;

use super::{LocalToken, LocalTokens, TOKEN_LABEL};

/// Feeds Secret events into [`LocalTokens`].
#[derive(Debug)]
pub struct SecretIndex {
    tokens: Arc<LocalTokens>,
}

impl SecretIndex {
    /// An index writing into `tokens`.
    pub fn new(tokens: Arc<LocalTokens>) -> Self {
        Self { tokens }
    }
}

fn origin(secret: &Secret) -> String {
    format!(
        "{}/{}",
        secret.namespace().unwrap_or_default(),
        secret.name_any()
    )
}

/// The token in `secret`, or `None` (with a warning) when it holds none.
pub fn convert(secret: &Secret) -> Option<LocalToken> {
    let data: BTreeMap<String, Vec<u8>> = secret
        .data
        .iter()
        .flatten()
        .map(|(k, v)| (k.clone(), v.0.clone()))
        .chain(
            secret
                .string_data
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone().into_bytes())),
        )
        .collect();
    match LocalToken::from_secret_data(&format!("secret {}", origin(secret)), &data) {
        Ok(token) => Some(token),
        Err(error) => {
            tracing::warn!(%error, "skipping a local token Secret");
            None
        }
    }
}

impl IndexNamespacedResource<Secret> for SecretIndex {
    fn apply(&mut self, secret: Secret) {
        let key = origin(&secret);
        match convert(&secret) {
            Some(token) => self.tokens.upsert(key, token),
            None => self.tokens.remove(&key),
        }
    }

    fn delete(&mut self, namespace: String, name: String) {
        self.tokens.remove(&format!("{namespace}/{name}"));
    }

    fn reset(&mut self, secrets: Vec<Secret>, _removed: NamespacedRemoved) {
        let tokens: Vec<(String, LocalToken)> = secrets
            .iter()
            .filter_map(|s| convert(s).map(|t| (origin(s), t)))
            .collect();
        tracing::info!(tokens = tokens.len(), "local tokens loaded");
        self.tokens.replace(tokens);
    }
}

/// Watches the token Secrets of `namespace` into `tokens` until the future is dropped;
/// `ready` is marked once the first list is in.
pub async fn watch(
    client: kube::Client,
    namespace: &str,
    tokens: Arc<LocalTokens>,
    ready: Option<Pending>,
) {
    let api: kube::Api<Secret> = kube::Api::namespaced(client, namespace);
    let config = watcher::Config::default().labels(&format!("{TOKEN_LABEL}=true"));
    let events = index::watch(api, config);
    let sink = Arc::new(RwLock::new(SecretIndex::new(tokens)));
    index::namespaced(sink, events, ready).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::UserInfo;
    use k8s_openapi::ByteString;

    fn secret(name: &str, data: &BTreeMap<String, String>) -> Secret {
        let mut s = Secret::default();
        s.metadata.name = Some(name.into());
        s.metadata.namespace = Some("rancher-auth".into());
        s.data = Some(
            data.iter()
                .map(|(k, v)| (k.clone(), ByteString(v.clone().into_bytes())))
                .collect(),
        );
        s
    }

    #[test]
    fn secrets_become_tokens_and_bad_ones_are_skipped() {
        let tokens = Arc::new(LocalTokens::new());
        let mut index = SecretIndex::new(tokens.clone());
        let (token, entry) = LocalToken::generate(UserInfo::new("alice")).unwrap();
        let good = secret("alice", &entry.to_secret_data());
        let mut broken = entry.to_secret_data();
        broken.insert("secretHash".into(), "plain text".into());
        let bad = secret("broken", &broken);
        index.reset(vec![good, bad.clone()], NamespacedRemoved::new());
        assert!(tokens.is_ready());
        assert_eq!(tokens.len(), 1);
        let authn = crate::local::LocalAuthenticator::new(tokens.clone());
        assert!(authn.check(&token).unwrap().user().is_some());

        index.delete("rancher-auth".into(), "alice".into());
        assert!(tokens.is_empty());
        // A valid Secret turning invalid stops working.
        let good = secret("alice", &entry.to_secret_data());
        index.apply(good);
        assert_eq!(tokens.len(), 1);
        let mut now_bad = bad;
        now_bad.metadata.name = Some("alice".into());
        index.apply(now_bad);
        assert!(tokens.is_empty());
    }
}
