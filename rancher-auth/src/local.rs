//! Local tokens: `ACCESS:SECRET` tokens whose secret half is stored only as a salted hash,
//! checked without asking Rancher, so `kubectl` keeps working while Rancher is down (as
//! Rancher's later authorized cluster endpoint did with kube-api-auth).
//!
//! Each token is one [`LocalToken`]; in a cluster each lives in a Secret labelled
//! [`TOKEN_LABEL`]` = "true"` with these keys ([`LocalToken::from_secret_data`]):
//!
//! | key | value |
//! | --- | --- |
//! | `accessKey` | the public half of the token (required) |
//! | `secretHash` | [`TokenHash`]: `$hmac-sha256$<salt>$<tag>` or `$pbkdf2-sha256$i=<n>$<salt>$<hash>` (required) |
//! | `username` | the Kubernetes user name (required) |
//! | `uid` | the user's uid (optional) |
//! | `groups` | groups, separated by commas or new lines (optional) |
//! | `expiresAt` | RFC 3339 time after which the token is refused (optional) |

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Arc;
use std::time::SystemTime;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD_NO_PAD;
use parking_lot::RwLock;
use ring::rand::SecureRandom as _;

use crate::authn::{Authentication, TokenAuthenticator};

#[cfg(feature = "runtime")]
pub mod secrets;
use crate::error::{Error, Result};
use crate::identity::{SYSTEM_PREFIX, Token, UserInfo};

/// The label that marks a Secret as holding a local token.
pub const TOKEN_LABEL: &str = "auth.rancher.io/token";

/// Secret data keys.
pub mod keys {
    /// The public half of the token.
    pub const ACCESS_KEY: &str = "accessKey";
    /// The [`TokenHash`](super::TokenHash) of the secret half.
    pub const SECRET_HASH: &str = "secretHash";
    /// The user name.
    pub const USERNAME: &str = "username";
    /// The uid.
    pub const UID: &str = "uid";
    /// Groups, separated by commas or new lines.
    pub const GROUPS: &str = "groups";
    /// RFC 3339 expiry.
    pub const EXPIRES_AT: &str = "expiresAt";
}

const MAX_PBKDF2_ITERATIONS: u32 = 10_000_000;

/// A stored token that is not usable: the origin (a Secret), the field and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{origin}: {field}: {reason}")]
pub struct TokenError {
    /// Where the token came from: `secret rancher-auth/alice`.
    pub origin: String,
    /// The field (`secretHash`).
    pub field: String,
    /// What is wrong; never the secret.
    pub reason: String,
}

/// The salted hash of a token's secret half.
///
/// Text forms (PHC-like, base64 without padding):
/// - `$hmac-sha256$<salt>$<tag>`: HMAC-SHA-256 keyed with the salt over the secret. Right
///   for generated, high-entropy secrets, and what [`TokenHash::new`] makes.
/// - `$pbkdf2-sha256$i=<iterations>$<salt>$<hash>`: PBKDF2-HMAC-SHA-256, for secrets a
///   person chose.
///
/// Both compare in constant time. `Debug` shows the scheme only.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenHash {
    /// HMAC-SHA-256 keyed with the salt.
    HmacSha256 {
        /// The salt (the HMAC key).
        salt: Vec<u8>,
        /// The 32-byte tag.
        tag: Vec<u8>,
    },
    /// PBKDF2-HMAC-SHA-256.
    Pbkdf2Sha256 {
        /// Iterations.
        iterations: NonZeroU32,
        /// The salt.
        salt: Vec<u8>,
        /// The derived bytes.
        hash: Vec<u8>,
    },
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HmacSha256 { .. } => f.write_str("TokenHash(hmac-sha256)"),
            Self::Pbkdf2Sha256 { iterations, .. } => {
                write!(f, "TokenHash(pbkdf2-sha256, i={iterations})")
            }
        }
    }
}

impl TokenHash {
    /// An `hmac-sha256` hash of `secret` with a fresh 16-byte random salt.
    pub fn new(secret: &str) -> Result<Self, ring::error::Unspecified> {
        let mut salt = vec![0u8; 16];
        ring::rand::SystemRandom::new().fill(&mut salt)?;
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &salt);
        let tag = ring::hmac::sign(&key, secret.as_bytes()).as_ref().to_vec();
        Ok(Self::HmacSha256 { salt, tag })
    }

    /// A `pbkdf2-sha256` hash of `secret` with a fresh salt.
    pub fn new_pbkdf2(
        secret: &str,
        iterations: NonZeroU32,
    ) -> Result<Self, ring::error::Unspecified> {
        let mut salt = vec![0u8; 16];
        ring::rand::SystemRandom::new().fill(&mut salt)?;
        let mut hash = vec![0u8; 32];
        ring::pbkdf2::derive(
            ring::pbkdf2::PBKDF2_HMAC_SHA256,
            iterations,
            &salt,
            secret.as_bytes(),
            &mut hash,
        );
        Ok(Self::Pbkdf2Sha256 {
            iterations,
            salt,
            hash,
        })
    }

    /// Whether `secret` hashes to this, compared in constant time.
    pub fn verify(&self, secret: &str) -> bool {
        match self {
            Self::HmacSha256 { salt, tag } => {
                let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, salt);
                ring::hmac::verify(&key, secret.as_bytes(), tag).is_ok()
            }
            Self::Pbkdf2Sha256 {
                iterations,
                salt,
                hash,
            } => ring::pbkdf2::verify(
                ring::pbkdf2::PBKDF2_HMAC_SHA256,
                *iterations,
                salt,
                secret.as_bytes(),
                hash,
            )
            .is_ok(),
        }
    }
}

impl fmt::Display for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::HmacSha256 { salt, tag } => write!(
                f,
                "$hmac-sha256${}${}",
                STANDARD_NO_PAD.encode(salt),
                STANDARD_NO_PAD.encode(tag)
            ),
            Self::Pbkdf2Sha256 {
                iterations,
                salt,
                hash,
            } => write!(
                f,
                "$pbkdf2-sha256$i={iterations}${}${}",
                STANDARD_NO_PAD.encode(salt),
                STANDARD_NO_PAD.encode(hash)
            ),
        }
    }
}

impl FromStr for TokenHash {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b64 = |part: &str, what: &str| {
            STANDARD_NO_PAD
                .decode(part.trim_end_matches('='))
                .map_err(|_| format!("the {what} is not base64"))
        };
        let parts: Vec<&str> = s.trim().split('$').collect();
        match parts.as_slice() {
            ["", "hmac-sha256", salt, tag] => {
                let (salt, tag) = (b64(salt, "salt")?, b64(tag, "tag")?);
                if salt.len() < 8 {
                    return Err("the salt is shorter than 8 bytes".into());
                }
                if tag.len() != 32 {
                    return Err("an hmac-sha256 tag is 32 bytes".into());
                }
                Ok(Self::HmacSha256 { salt, tag })
            }
            ["", "pbkdf2-sha256", iterations, salt, hash] => {
                let iterations = iterations
                    .strip_prefix("i=")
                    .and_then(|n| n.parse::<u32>().ok())
                    .filter(|n| (1..=MAX_PBKDF2_ITERATIONS).contains(n))
                    .and_then(NonZeroU32::new)
                    .ok_or_else(|| {
                        format!("iterations must be i=<1..={MAX_PBKDF2_ITERATIONS}>")
                    })?;
                let (salt, hash) = (b64(salt, "salt")?, b64(hash, "hash")?);
                if salt.len() < 8 {
                    return Err("the salt is shorter than 8 bytes".into());
                }
                if hash.len() < 16 {
                    return Err("the hash is shorter than 16 bytes".into());
                }
                Ok(Self::Pbkdf2Sha256 {
                    iterations,
                    salt,
                    hash,
                })
            }
            _ => Err(
                "not a token hash ($hmac-sha256$<salt>$<tag> or $pbkdf2-sha256$i=<n>$<salt>$<hash>)"
                    .into(),
            ),
        }
    }
}

/// One local token: who it authenticates, and how to check it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct LocalToken {
    /// The public half of the token.
    pub access_key: String,
    /// The hash of the secret half.
    pub hash: TokenHash,
    /// The user it authenticates.
    pub user: UserInfo,
    /// When it stops working.
    pub expires_at: Option<SystemTime>,
}

impl LocalToken {
    /// A token for `user` with this access key and hash, not expiring.
    pub fn new(access_key: impl Into<String>, hash: TokenHash, user: UserInfo) -> Self {
        Self {
            access_key: access_key.into(),
            hash,
            user,
            expires_at: None,
        }
    }

    /// Sets the expiry.
    #[must_use]
    pub fn expiring_at(mut self, at: SystemTime) -> Self {
        self.expires_at = Some(at);
        self
    }

    /// Makes a fresh random token for `user`: the token to hand to the user, and the entry to
    /// store (which holds only the hash).
    pub fn generate(user: UserInfo) -> Result<(Token, Self), ring::error::Unspecified> {
        let rng = ring::rand::SystemRandom::new();
        let access = format!("token-{}", random_alnum(&rng, 8)?);
        let secret = random_alnum(&rng, 48)?;
        let hash = TokenHash::new(&secret)?;
        let token = Token::new(format!("{access}:{secret}"));
        Ok((token, Self::new(access, hash, user)))
    }

    /// Reads a token from a Secret's decoded `data` (see the module docs); `origin` names it
    /// in errors (`secret rancher-auth/alice`).
    pub fn from_secret_data(
        origin: &str,
        data: &BTreeMap<String, Vec<u8>>,
    ) -> Result<Self, TokenError> {
        let err = |field: &str, reason: String| TokenError {
            origin: origin.to_owned(),
            field: field.to_owned(),
            reason,
        };
        let text = |field: &str| -> Result<Option<String>, TokenError> {
            match data.get(field) {
                None => Ok(None),
                Some(bytes) => String::from_utf8(bytes.clone())
                    .map(|s| Some(s.trim().to_owned()))
                    .map_err(|_| err(field, "is not UTF-8".into())),
            }
        };
        let required = |field: &str| -> Result<String, TokenError> {
            text(field)?
                .filter(|s| !s.is_empty())
                .ok_or_else(|| err(field, "is required".into()))
        };
        let access_key = required(keys::ACCESS_KEY)?;
        if Token::new(format!("{access_key}:x")).key_pair().is_none() {
            return Err(err(
                keys::ACCESS_KEY,
                "must be ASCII letters, digits, '-', '_' or '.', at most 256".into(),
            ));
        }
        let hash = required(keys::SECRET_HASH)?
            .parse::<TokenHash>()
            .map_err(|reason| err(keys::SECRET_HASH, reason))?;
        let username = required(keys::USERNAME)?;
        if username.starts_with(SYSTEM_PREFIX) {
            return Err(err(
                keys::USERNAME,
                format!("{username:?}: names starting with system: are Kubernetes' own"),
            ));
        }
        let mut user = UserInfo::new(username);
        if let Some(uid) = text(keys::UID)?.filter(|s| !s.is_empty()) {
            user = user.with_uid(uid);
        }
        if let Some(groups) = text(keys::GROUPS)? {
            for group in groups
                .split([',', '\n'])
                .map(str::trim)
                .filter(|g| !g.is_empty())
            {
                if group == crate::identity::GROUP_MASTERS {
                    return Err(err(
                        keys::GROUPS,
                        "system:masters cannot be granted by a local token".into(),
                    ));
                }
                user = user.with_group(group);
            }
        }
        let mut token = Self::new(access_key, hash, user);
        if let Some(at) = text(keys::EXPIRES_AT)?.filter(|s| !s.is_empty()) {
            let ts: jiff::Timestamp = at.parse().map_err(|e| {
                err(
                    keys::EXPIRES_AT,
                    format!("{at:?} is not an RFC 3339 time: {e}"),
                )
            })?;
            token = token.expiring_at(SystemTime::from(ts));
        }
        Ok(token)
    }

    /// The Secret data for this token (the inverse of [`LocalToken::from_secret_data`]).
    pub fn to_secret_data(&self) -> BTreeMap<String, String> {
        let mut data = BTreeMap::new();
        data.insert(keys::ACCESS_KEY.to_owned(), self.access_key.clone());
        data.insert(keys::SECRET_HASH.to_owned(), self.hash.to_string());
        data.insert(keys::USERNAME.to_owned(), self.user.username.clone());
        if !self.user.uid.is_empty() {
            data.insert(keys::UID.to_owned(), self.user.uid.clone());
        }
        if !self.user.groups.is_empty() {
            data.insert(keys::GROUPS.to_owned(), self.user.groups.join(","));
        }
        if let Some(at) = self.expires_at
            && let Ok(ts) = jiff::Timestamp::try_from(at)
        {
            data.insert(keys::EXPIRES_AT.to_owned(), ts.to_string());
        }
        data
    }
}

fn random_alnum(
    rng: &ring::rand::SystemRandom,
    len: usize,
) -> Result<String, ring::error::Unspecified> {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut out = String::with_capacity(len);
    let mut byte = [0u8; 1];
    while out.len() < len {
        rng.fill(&mut byte)?;
        // 252 = 7 * 36: rejecting the rest keeps every character equally likely.
        if byte[0] < 252 {
            out.push(char::from(ALPHABET[usize::from(byte[0]) % ALPHABET.len()]));
        }
    }
    Ok(out)
}

#[derive(Debug, Default)]
struct State {
    by_origin: BTreeMap<String, Arc<LocalToken>>,
    by_access_key: HashMap<String, Vec<String>>,
    ready: bool,
}

impl State {
    fn index(&mut self) {
        self.by_access_key.clear();
        for (origin, token) in &self.by_origin {
            self.by_access_key
                .entry(token.access_key.clone())
                .or_default()
                .push(origin.clone());
        }
    }
}

/// The set of local tokens, by origin (a Secret's `namespace/name`), kept current by a
/// watch and read by [`LocalAuthenticator`]. Cheap to share (`Arc`).
#[derive(Debug, Default)]
pub struct LocalTokens {
    state: RwLock<State>,
}

impl LocalTokens {
    /// An empty set that is not ready: [`LocalAuthenticator`] fails closed until the first
    /// [`LocalTokens::replace`].
    pub fn new() -> Self {
        Self::default()
    }

    /// A ready set holding `tokens`, for tests and static configurations.
    pub fn with(tokens: impl IntoIterator<Item = (String, LocalToken)>) -> Self {
        let set = Self::new();
        set.replace(tokens);
        set
    }

    /// Replaces every token (a full list) and marks the set ready.
    pub fn replace(&self, tokens: impl IntoIterator<Item = (String, LocalToken)>) {
        let mut state = self.state.write();
        state.by_origin = tokens
            .into_iter()
            .map(|(origin, token)| (origin, Arc::new(token)))
            .collect();
        state.index();
        state.ready = true;
    }

    /// Adds or replaces the token from `origin`.
    pub fn upsert(&self, origin: impl Into<String>, token: LocalToken) {
        let mut state = self.state.write();
        state.by_origin.insert(origin.into(), Arc::new(token));
        state.index();
    }

    /// Removes the token from `origin`, if any.
    pub fn remove(&self, origin: &str) {
        let mut state = self.state.write();
        if state.by_origin.remove(origin).is_some() {
            state.index();
        }
    }

    /// How many tokens are held.
    pub fn len(&self) -> usize {
        self.state.read().by_origin.len()
    }

    /// Whether no token is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Whether the first full list has arrived.
    pub fn is_ready(&self) -> bool {
        self.state.read().ready
    }

    fn lookup(&self, access_key: &str) -> Result<Lookup> {
        let state = self.state.read();
        if !state.ready {
            return Err(Error::NotReady {
                backend: "local tokens".into(),
            });
        }
        Ok(
            match state.by_access_key.get(access_key).map(Vec::as_slice) {
                None | Some([]) => Lookup::None,
                Some([origin]) => state
                    .by_origin
                    .get(origin)
                    .map_or(Lookup::None, |t| Lookup::One(t.clone())),
                Some(origins) => Lookup::Ambiguous(origins.join(", ")),
            },
        )
    }
}

enum Lookup {
    None,
    One(Arc<LocalToken>),
    Ambiguous(String),
}

/// Authenticates `ACCESS:SECRET` tokens against [`LocalTokens`], without network.
#[derive(Clone, Debug)]
pub struct LocalAuthenticator {
    tokens: Arc<LocalTokens>,
}

impl LocalAuthenticator {
    /// An authenticator over `tokens`.
    pub fn new(tokens: Arc<LocalTokens>) -> Self {
        Self { tokens }
    }

    /// The decision, computed without awaiting anything.
    pub fn check(&self, token: &Token) -> Result<Authentication> {
        let Some((access, secret)) = token.key_pair() else {
            return Ok(Authentication::unauthenticated(
                "the token is not of the form ACCESS:SECRET",
            ));
        };
        match self.tokens.lookup(access)? {
            Lookup::None => Ok(Authentication::unauthenticated(
                "no local token has this access key",
            )),
            Lookup::Ambiguous(origins) => Ok(Authentication::unauthenticated(format!(
                "the access key is defined by several local tokens ({origins}); none is used"
            ))),
            Lookup::One(local) => {
                if local.expires_at.is_some_and(|at| at <= SystemTime::now()) {
                    return Ok(Authentication::unauthenticated(
                        "the local token has expired",
                    ));
                }
                if !local.hash.verify(secret) {
                    return Ok(Authentication::unauthenticated(
                        "the secret does not match the local token",
                    ));
                }
                Ok(Authentication::Authenticated(local.user.clone()))
            }
        }
    }
}

#[async_trait]
impl TokenAuthenticator for LocalAuthenticator {
    async fn authenticate(&self, token: &Token) -> Result<Authentication> {
        self.check(token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(pairs: &[(&str, &str)]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
            .collect()
    }

    #[test]
    fn hashes_verify_only_their_secret_and_round_trip_as_text() {
        let h = TokenHash::new("s3cr3t").unwrap();
        assert!(h.verify("s3cr3t"));
        assert!(!h.verify("s3cr3u"));
        assert!(!h.verify(""));
        let text = h.to_string();
        assert!(text.starts_with("$hmac-sha256$"), "{text}");
        assert!(
            !format!("{h:?}").contains(&text[13..]),
            "Debug hides the material"
        );
        assert_eq!(text.parse::<TokenHash>().unwrap(), h);

        let p = TokenHash::new_pbkdf2("pw", NonZeroU32::new(1000).unwrap()).unwrap();
        assert!(p.verify("pw") && !p.verify("pW"));
        assert_eq!(p.to_string().parse::<TokenHash>().unwrap(), p);

        for bad in [
            "",
            "sha256:abc",
            "$hmac-sha256$c2FsdA$dGFn",
            "$hmac-sha256$!!!$dGFn",
            "$pbkdf2-sha256$i=0$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$pbkdf2-sha256$i=99999999$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
            "$pbkdf2-sha256$1000$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
        ] {
            assert!(bad.parse::<TokenHash>().is_err(), "{bad}");
        }
    }

    #[test]
    fn secrets_convert_both_ways_and_bad_ones_name_the_field() {
        let hash = TokenHash::new("sec").unwrap().to_string();
        let t = LocalToken::from_secret_data(
            "secret rancher-auth/alice",
            &data(&[
                ("accessKey", "token-abc"),
                ("secretHash", &hash),
                ("username", "alice"),
                ("groups", "rancher:environment:1a5:member,\nops"),
                ("expiresAt", "2100-01-01T00:00:00Z"),
            ]),
        )
        .unwrap();
        assert_eq!(t.user.groups, ["rancher:environment:1a5:member", "ops"]);
        let back: BTreeMap<String, Vec<u8>> = t
            .to_secret_data()
            .into_iter()
            .map(|(k, v)| (k, v.into_bytes()))
            .collect();
        assert_eq!(LocalToken::from_secret_data("again", &back).unwrap(), t);

        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("secretHash", &hash), ("username", "a")], "accessKey"),
            (
                &[
                    ("accessKey", "a b"),
                    ("secretHash", &hash),
                    ("username", "a"),
                ],
                "accessKey",
            ),
            (&[("accessKey", "k"), ("username", "a")], "secretHash"),
            (
                &[
                    ("accessKey", "k"),
                    ("secretHash", "plain"),
                    ("username", "a"),
                ],
                "secretHash",
            ),
            (&[("accessKey", "k"), ("secretHash", &hash)], "username"),
            (
                &[
                    ("accessKey", "k"),
                    ("secretHash", &hash),
                    ("username", "system:admin"),
                ],
                "username",
            ),
            (
                &[
                    ("accessKey", "k"),
                    ("secretHash", &hash),
                    ("username", "a"),
                    ("groups", "system:masters"),
                ],
                "groups",
            ),
            (
                &[
                    ("accessKey", "k"),
                    ("secretHash", &hash),
                    ("username", "a"),
                    ("expiresAt", "tomorrow"),
                ],
                "expiresAt",
            ),
        ];
        for (pairs, field) in cases {
            let e = LocalToken::from_secret_data("secret ns/x", &data(pairs)).unwrap_err();
            assert_eq!(e.field, *field, "{e}");
            assert!(e.to_string().starts_with("secret ns/x: "), "{e}");
        }
        let mut non_utf8 = data(&[("accessKey", "k"), ("secretHash", &hash)]);
        non_utf8.insert("username".into(), vec![0xff, 0xfe]);
        assert_eq!(
            LocalToken::from_secret_data("s", &non_utf8)
                .unwrap_err()
                .field,
            "username"
        );
    }

    #[tokio::test]
    async fn the_authenticator_checks_key_secret_and_expiry_and_fails_closed_until_loaded() {
        let tokens = Arc::new(LocalTokens::new());
        let authn = LocalAuthenticator::new(tokens.clone());
        let (token, entry) = LocalToken::generate(UserInfo::new("alice")).unwrap();
        assert!(authn.authenticate(&token).await.is_err(), "not loaded yet");

        tokens.replace([("ns/alice".to_owned(), entry.clone())]);
        let ok = authn.authenticate(&token).await.unwrap();
        assert_eq!(ok.user().unwrap().username, "alice");
        let (access, _) = token.key_pair().unwrap();
        let wrong = Token::new(format!("{access}:wrongsecret"));
        assert!(authn.authenticate(&wrong).await.unwrap().user().is_none());
        assert!(
            authn
                .authenticate(&Token::new("no-colon"))
                .await
                .unwrap()
                .user()
                .is_none()
        );

        // Expired.
        tokens.upsert(
            "ns/alice",
            entry
                .clone()
                .expiring_at(SystemTime::now() - std::time::Duration::from_secs(1)),
        );
        let expired = authn.authenticate(&token).await.unwrap();
        assert_eq!(
            expired,
            Authentication::unauthenticated("the local token has expired")
        );

        // The same access key twice: neither is used.
        tokens.upsert("ns/alice", entry.clone());
        tokens.upsert("ns/alice-copy", entry);
        assert!(authn.authenticate(&token).await.unwrap().user().is_none());
        tokens.remove("ns/alice-copy");
        assert!(authn.authenticate(&token).await.unwrap().user().is_some());
        assert_eq!(tokens.len(), 1);
    }
}
