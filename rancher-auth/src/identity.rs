//! Who is asking: a [`UserInfo`], and the bearer [`Token`] that proved it.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// The group kube-apiserver adds to every authenticated user.
pub const GROUP_AUTHENTICATED: &str = "system:authenticated";
/// The group that kube-apiserver lets do anything, before any authorizer is asked.
pub const GROUP_MASTERS: &str = "system:masters";
/// The prefix of names Kubernetes reserves for its own users and groups.
pub const SYSTEM_PREFIX: &str = "system:";

/// An authenticated user as Kubernetes sees one: the `user` of a TokenReview status and the
/// subject of a SubjectAccessReview.
///
/// The field names and JSON shape are Kubernetes' (`username`, `uid`, `groups`, `extra`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct UserInfo {
    /// The name that identifies the user among all active users (`alice`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub username: String,
    /// A value that stays the same for this user when the name is reused by someone else.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    /// The groups the user belongs to, in the order the authenticator gave them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    /// Other facts about the user (for audit: the Rancher principal, say).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// A user with this name and nothing else.
    pub fn new(username: impl Into<String>) -> Self {
        Self {
            username: username.into(),
            ..Self::default()
        }
    }

    /// Sets the uid.
    #[must_use]
    pub fn with_uid(mut self, uid: impl Into<String>) -> Self {
        self.uid = uid.into();
        self
    }

    /// Adds a group (once).
    #[must_use]
    pub fn with_group(mut self, group: impl Into<String>) -> Self {
        let group = group.into();
        if !self.groups.contains(&group) {
            self.groups.push(group);
        }
        self
    }

    /// Adds several groups (each once).
    #[must_use]
    pub fn with_groups<I, S>(self, groups: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        groups.into_iter().fold(self, Self::with_group)
    }

    /// Adds a value to an `extra` key.
    #[must_use]
    pub fn with_extra(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.extra.entry(key.into()).or_default().push(value.into());
        self
    }

    /// Whether the user is in `group`.
    pub fn in_group(&self, group: &str) -> bool {
        self.groups.iter().any(|g| g == group)
    }
}

/// A bearer token, as a client sent it.
///
/// Its `Debug` output never shows the value, so a token held in a struct that is logged does
/// not leak. Read it with [`Token::expose`], and never log what that returns.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(String);

impl Token {
    /// Wraps a token.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The token. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the token is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Splits a token of the form `ACCESS:SECRET` (a Rancher API key pair, or a local token)
    /// into its public and secret halves, when both are non-empty and made of the characters
    /// keys use (ASCII letters, digits, `-`, `_`, `.`), at most 256 each.
    pub fn key_pair(&self) -> Option<(&str, &str)> {
        let (access, secret) = self.0.split_once(':')?;
        (is_key_part(access) && is_key_part(secret)).then_some((access, secret))
    }
}

fn is_key_part(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl From<String> for Token {
    fn from(value: String) -> Self {
        Self(value)
    }
}

impl From<&str> for Token {
    fn from(value: &str) -> Self {
        Self(value.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_debug_is_redacted() {
        let t = Token::new("AKEY:s3cr3t");
        assert!(!format!("{t:?}").contains("s3cr3t"));
        assert!(!format!("{:#?}", Some(&t)).contains("AKEY"));
    }

    #[test]
    fn key_pair_accepts_only_key_shaped_tokens() {
        assert_eq!(
            Token::new("ABC:def-1_2.3").key_pair(),
            Some(("ABC", "def-1_2.3"))
        );
        for odd in [
            "", ":", "abc", "abc:", ":abc", "a:b:c", "a b:c", "ä:b", "a:b\n", "a:\u{0}",
        ] {
            assert_eq!(Token::new(odd).key_pair(), None, "{odd:?}");
        }
        let long = format!("{}:x", "a".repeat(257));
        assert_eq!(Token::new(long).key_pair(), None);
    }

    #[test]
    fn user_info_json_is_kubernetes_shaped() {
        let user = UserInfo::new("alice")
            .with_uid("1a7")
            .with_groups(["g1", "g2", "g1"])
            .with_extra("rancher.io/principal-id", "rancher_id:1a7");
        assert_eq!(user.groups, ["g1", "g2"]);
        let json = serde_json::to_value(&user).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"username": "alice", "uid": "1a7", "groups": ["g1", "g2"],
                "extra": {"rancher.io/principal-id": ["rancher_id:1a7"]}})
        );
        assert!(user.in_group("g2"));
    }
}
