//! Token authentication: the [`TokenAuthenticator`] trait and [`Union`], which asks several
//! in order.

use std::sync::Arc;

use async_trait::async_trait;

use crate::error::{Error, Result};
use crate::identity::{Token, UserInfo};

/// What an authenticator says about a token it could judge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Authentication {
    /// The token is valid and belongs to this user.
    Authenticated(UserInfo),
    /// The token is not valid here: unknown, wrong secret, expired, not a member. This answer
    /// is definite, so it may be cached (for the negative TTL).
    Unauthenticated {
        /// Why, for logs and the caller; never the token.
        reason: String,
    },
}

impl Authentication {
    /// `Unauthenticated` with a reason.
    pub fn unauthenticated(reason: impl Into<String>) -> Self {
        Self::Unauthenticated {
            reason: reason.into(),
        }
    }

    /// The user, when authenticated.
    pub fn user(&self) -> Option<&UserInfo> {
        match self {
            Self::Authenticated(user) => Some(user),
            Self::Unauthenticated { .. } => None,
        }
    }
}

/// Turns a bearer token into a user.
///
/// # Contract
///
/// - `Ok(Authenticated(user))` only for a token that is valid now. The username must not
///   be empty.
/// - `Ok(Unauthenticated { reason })` for every token that is definitely not valid here,
///   however odd: empty, not UTF-8-looking, huge, of a shape this authenticator does not
///   use. Such answers may be cached for the negative TTL.
/// - `Err` only when the answer cannot be known now (the backend is down, slow, or answered
///   garbage). The caller must then fail closed: deny, and cache nothing.
/// - Never panic on input, and never put the token in a reason, an error, a log line or a
///   metric.
#[async_trait]
pub trait TokenAuthenticator: Send + Sync + 'static {
    /// Judges `token`.
    async fn authenticate(&self, token: &Token) -> Result<Authentication>;
}

#[async_trait]
impl<A: TokenAuthenticator + ?Sized> TokenAuthenticator for Arc<A> {
    async fn authenticate(&self, token: &Token) -> Result<Authentication> {
        (**self).authenticate(token).await
    }
}

#[async_trait]
impl<A: TokenAuthenticator + ?Sized> TokenAuthenticator for Box<A> {
    async fn authenticate(&self, token: &Token) -> Result<Authentication> {
        (**self).authenticate(token).await
    }
}

/// Asks several authenticators in order, like kube-apiserver's union authenticator.
///
/// The first `Authenticated` answer wins and the rest are not asked. If none authenticates
/// and one of them failed, the union fails (it cannot know that the failed one would not
/// have said yes). Otherwise the token is `Unauthenticated`, with the reasons joined.
///
/// Put authenticators that need no network first: a local hashed token then keeps working
/// while Rancher is down.
#[derive(Clone, Default)]
pub struct Union {
    members: Vec<Arc<dyn TokenAuthenticator>>,
}

impl std::fmt::Debug for Union {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Union")
            .field("members", &self.members.len())
            .finish()
    }
}

impl Union {
    /// An empty union (which authenticates nobody).
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends an authenticator, asked after the ones before it.
    #[must_use]
    pub fn with(mut self, authenticator: Arc<dyn TokenAuthenticator>) -> Self {
        self.members.push(authenticator);
        self
    }
}

#[async_trait]
impl TokenAuthenticator for Union {
    async fn authenticate(&self, token: &Token) -> Result<Authentication> {
        let mut reasons = Vec::new();
        let mut failure: Option<Error> = None;
        for member in &self.members {
            match member.authenticate(token).await {
                Ok(Authentication::Authenticated(user)) => {
                    return Ok(Authentication::Authenticated(user));
                }
                Ok(Authentication::Unauthenticated { reason }) => reasons.push(reason),
                Err(error) => {
                    if failure.is_none() {
                        failure = Some(error);
                    }
                }
            }
        }
        match failure {
            Some(error) => Err(error),
            None if reasons.is_empty() => Ok(Authentication::unauthenticated(
                "no authenticator is configured",
            )),
            None => Ok(Authentication::unauthenticated(reasons.join("; "))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::FakeAuthenticator;

    #[tokio::test]
    async fn union_takes_the_first_yes_and_fails_closed() {
        let local = Arc::new(FakeAuthenticator::new().with_token("local-1", UserInfo::new("bob")));
        let remote = Arc::new(FakeAuthenticator::new().with_token("AK:SK", UserInfo::new("alice")));
        let union = Union::new().with(local.clone()).with(remote.clone());

        let alice = union.authenticate(&Token::new("AK:SK")).await.unwrap();
        assert_eq!(alice.user().unwrap().username, "alice");
        let bob = union.authenticate(&Token::new("local-1")).await.unwrap();
        assert_eq!(bob.user().unwrap().username, "bob");
        assert_eq!(remote.calls(), 1, "a local yes does not ask the remote");
        assert!(matches!(
            union.authenticate(&Token::new("nope")).await.unwrap(),
            Authentication::Unauthenticated { .. }
        ));

        // The remote is down: local tokens still work, everyone else is an error, not a no.
        remote.fail(true);
        let bob = union.authenticate(&Token::new("local-1")).await.unwrap();
        assert_eq!(bob.user().unwrap().username, "bob");
        assert!(union.authenticate(&Token::new("AK:SK")).await.is_err());
        assert!(union.authenticate(&Token::new("nope")).await.is_err());

        let empty = Union::new().authenticate(&Token::new("x")).await.unwrap();
        assert!(empty.user().is_none());
    }
}
