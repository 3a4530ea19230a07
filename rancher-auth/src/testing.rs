//! Fakes and conformance batteries (feature `testing`).
//!
//! [`FakeAuthenticator`] and [`FakeAuthorizer`] answer from tables, count calls and fail on
//! demand. [`authenticator_conformance`] and [`authorizer_conformance`] check the trait
//! contracts on any implementation, ours or yours:
//!
//! ```
//! use rancher_auth::testing::{AuthenticatorExpectations, FakeAuthenticator, authenticator_conformance};
//! use rancher_auth::UserInfo;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! let authn = FakeAuthenticator::new().with_token("AKEY:s3cr3t", UserInfo::new("alice"));
//! authenticator_conformance(&authn, &AuthenticatorExpectations::new("AKEY:s3cr3t", "alice")).await;
//! # }
//! ```

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use parking_lot::Mutex;

use crate::authn::{Authentication, TokenAuthenticator};
use crate::authz::{
    Attributes, Authorizer, Decision, NonResourceAttributes, ResourceAttributes, Verdict,
};
use crate::error::{Error, Result};
use crate::identity::{Token, UserInfo};

/// An authenticator answering from a token → user table.
#[derive(Debug, Default)]
pub struct FakeAuthenticator {
    tokens: Mutex<HashMap<String, UserInfo>>,
    failing: AtomicBool,
    calls: AtomicUsize,
    delay: Mutex<Option<Duration>>,
}

impl FakeAuthenticator {
    /// An authenticator that knows no token.
    pub fn new() -> Self {
        Self::default()
    }

    /// Knows `token` as `user`.
    #[must_use]
    pub fn with_token(self, token: &str, user: UserInfo) -> Self {
        self.add_token(token, user);
        self
    }

    /// Waits this long before each answer.
    #[must_use]
    pub fn with_delay(self, delay: Duration) -> Self {
        *self.delay.lock() = Some(delay);
        self
    }

    /// Waits this long before each answer from now on (`None`: answers at once).
    pub fn set_delay(&self, delay: Option<Duration>) {
        *self.delay.lock() = delay;
    }

    /// Knows `token` as `user` from now on.
    pub fn add_token(&self, token: &str, user: UserInfo) {
        self.tokens.lock().insert(token.to_owned(), user);
    }

    /// Forgets `token`.
    pub fn remove_token(&self, token: &str) {
        self.tokens.lock().remove(token);
    }

    /// While `true`, every call fails with [`Error::Unavailable`].
    pub fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// Calls so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl TokenAuthenticator for FakeAuthenticator {
    async fn authenticate(&self, token: &Token) -> Result<Authentication> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let delay = *self.delay.lock();
        if let Some(delay) = delay {
            tokio::time::sleep(delay).await;
        }
        if self.failing.load(Ordering::SeqCst) {
            return Err(Error::unavailable(
                "fake",
                "the fake authenticator is failing",
            ));
        }
        Ok(match self.tokens.lock().get(token.expose()) {
            Some(user) => Authentication::Authenticated(user.clone()),
            None => Authentication::unauthenticated("unknown token"),
        })
    }
}

type Rule = Box<dyn Fn(&Attributes) -> Option<Decision> + Send + Sync>;

/// An authorizer answering from rules (closures) tried in order; no rule matching is
/// `NoOpinion`. It records every request.
#[derive(Default)]
pub struct FakeAuthorizer {
    rules: Vec<Rule>,
    failing: AtomicBool,
    seen: Mutex<Vec<Attributes>>,
}

impl std::fmt::Debug for FakeAuthorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeAuthorizer")
            .field("rules", &self.rules.len())
            .finish_non_exhaustive()
    }
}

impl FakeAuthorizer {
    /// An authorizer with no rules (no opinion on anything).
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a rule: `Some(decision)` answers, `None` passes to the next rule.
    #[must_use]
    pub fn with_rule(
        mut self,
        rule: impl Fn(&Attributes) -> Option<Decision> + Send + Sync + 'static,
    ) -> Self {
        self.rules.push(Box::new(rule));
        self
    }

    /// Allows everything `username` asks.
    #[must_use]
    pub fn allowing_user(self, username: &str) -> Self {
        let username = username.to_owned();
        self.with_rule(move |a| (a.user.username == username).then(|| Decision::allow("fake")))
    }

    /// While `true`, every call fails.
    pub fn fail(&self, failing: bool) {
        self.failing.store(failing, Ordering::SeqCst);
    }

    /// The requests seen so far.
    pub fn seen(&self) -> Vec<Attributes> {
        self.seen.lock().clone()
    }
}

#[async_trait]
impl Authorizer for FakeAuthorizer {
    async fn authorize(&self, attributes: &Attributes) -> Result<Decision> {
        self.seen.lock().push(attributes.clone());
        if self.failing.load(Ordering::SeqCst) {
            return Err(Error::unavailable("fake", "the fake authorizer is failing"));
        }
        Ok(self
            .rules
            .iter()
            .find_map(|rule| rule(attributes))
            .unwrap_or_else(|| Decision::no_opinion("no fake rule matched")))
    }
}

/// What [`authenticator_conformance`] may rely on.
#[derive(Clone, Debug)]
pub struct AuthenticatorExpectations {
    /// A token the authenticator accepts.
    pub valid_token: String,
    /// The username it gives for `valid_token`.
    pub username: String,
}

impl AuthenticatorExpectations {
    /// `valid_token` authenticates as `username`.
    pub fn new(valid_token: impl Into<String>, username: impl Into<String>) -> Self {
        Self {
            valid_token: valid_token.into(),
            username: username.into(),
        }
    }
}

/// Tokens no authenticator may accept, and must answer without panicking.
pub fn odd_tokens(valid: &str) -> Vec<String> {
    let mut odd = vec![
        String::new(),
        " ".into(),
        ":".into(),
        "::::".into(),
        "Bearer x".into(),
        "null".into(),
        "\u{0}".into(),
        "a:\u{0}".into(),
        "tab\there:x".into(),
        "ünïcödé:ßecret".into(),
        "🦀:🦀".into(),
        "../../etc/passwd:x".into(),
        "a:b\r\nX-Injected: 1".into(),
        "%41:%42".into(),
        "a".repeat(64 * 1024),
        format!("{}:{}", "a".repeat(4096), "b".repeat(4096)),
    ];
    // Near misses of the valid token.
    if let Some(last) = valid.chars().last() {
        let mut changed: String = valid.chars().take(valid.chars().count() - 1).collect();
        changed.push(if last == 'x' { 'y' } else { 'x' });
        odd.push(changed);
    }
    odd.push(format!("{valid}x"));
    odd.push(format!(" {valid}"));
    odd.push(valid.to_uppercase().replace(':', ";"));
    odd.push(valid.chars().rev().collect());
    odd.retain(|t| t != valid);
    odd
}

/// Checks the [`TokenAuthenticator`] contract on `authn`:
///
/// - the valid token authenticates as the expected user, with a non-empty username, the
///   same way on every call and under concurrency;
/// - odd tokens (empty, huge, control characters, unicode, near misses of the valid one) are
///   `Ok(Unauthenticated)`, never a user, never a panic;
/// - reasons and errors never contain the token.
///
/// # Panics
///
/// When a check fails.
pub async fn authenticator_conformance<A: TokenAuthenticator + ?Sized>(
    authn: &A,
    expect: &AuthenticatorExpectations,
) {
    let valid = Token::new(expect.valid_token.clone());
    for round in 0..3 {
        let answer = authn
            .authenticate(&valid)
            .await
            .unwrap_or_else(|e| panic!("round {round}: the valid token failed: {}", e.one_line()));
        let user = answer
            .user()
            .unwrap_or_else(|| panic!("round {round}: the valid token was refused: {answer:?}"));
        assert_eq!(user.username, expect.username, "round {round}");
        assert!(!user.username.is_empty());
    }
    let concurrent = (0..8).map(|_| authn.authenticate(&valid));
    for answer in futures::future::join_all(concurrent).await {
        let answer = answer.expect("concurrent lookups succeed");
        assert_eq!(
            answer.user().map(|u| u.username.as_str()),
            Some(expect.username.as_str())
        );
    }
    for odd in odd_tokens(&expect.valid_token) {
        let shown: String = odd.chars().take(40).collect();
        match authn.authenticate(&Token::new(odd.clone())).await {
            Ok(Authentication::Authenticated(user)) => {
                panic!("the odd token {shown:?} authenticated as {user:?}")
            }
            Ok(Authentication::Unauthenticated { reason }) => {
                assert!(
                    odd.len() < 3 || !reason.contains(&odd),
                    "the reason for {shown:?} contains the token: {reason}"
                );
                assert!(
                    !reason.contains(&expect.valid_token),
                    "a reason contains the valid token"
                );
            }
            Err(error) => {
                panic!(
                    "the odd token {shown:?} gave an error, not a no: {}",
                    error.one_line()
                )
            }
        }
    }
}

/// One case for [`authorizer_conformance`]: these attributes get this verdict.
#[derive(Clone, Debug)]
pub struct AuthorizerCase {
    /// The request.
    pub attributes: Attributes,
    /// The verdict it must get.
    pub verdict: Verdict,
}

impl AuthorizerCase {
    /// `attributes` must get `verdict`.
    pub fn new(attributes: Attributes, verdict: Verdict) -> Self {
        Self {
            attributes,
            verdict,
        }
    }
}

/// Checks the [`Authorizer`] contract on `authz`:
///
/// - every case gets its verdict, the same on every call and under concurrency, with a
///   reason for `Deny` and `NoOpinion`;
/// - odd requests made from each case's user (empty verb, unknown verbs, huge and unicode
///   names, odd paths, both scopes) are answered with `Ok`, never a panic; a request whose
///   verb is empty or unknown to Kubernetes is never allowed unless a case allows that user
///   everything (`*`, checked by asking for `escalate` on `clusterroles`).
///
/// # Panics
///
/// When a check fails.
pub async fn authorizer_conformance<A: Authorizer + ?Sized>(authz: &A, cases: &[AuthorizerCase]) {
    for (i, case) in cases.iter().enumerate() {
        for round in 0..2 {
            let decision = authz
                .authorize(&case.attributes)
                .await
                .unwrap_or_else(|e| panic!("case {i} ({}): {}", case.attributes, e.one_line()));
            assert_eq!(
                decision.verdict, case.verdict,
                "case {i} round {round}: {} by {:?}: {}",
                case.attributes, case.attributes.user.username, decision.reason
            );
            if decision.verdict != Verdict::Allow {
                assert!(
                    !decision.reason.is_empty(),
                    "case {i}: a {:?} needs a reason",
                    decision.verdict
                );
            }
        }
    }
    let concurrent = cases.iter().map(|c| authz.authorize(&c.attributes));
    for (case, decision) in cases
        .iter()
        .zip(futures::future::join_all(concurrent).await)
    {
        assert_eq!(
            decision.expect("concurrent decisions succeed").verdict,
            case.verdict
        );
    }
    let mut users: Vec<UserInfo> = cases.iter().map(|c| c.attributes.user.clone()).collect();
    users.dedup();
    for user in users {
        let superuser = authz
            .authorize(&Attributes::resource(
                user.clone(),
                ResourceAttributes::new("escalate", "rbac.authorization.k8s.io", "clusterroles"),
            ))
            .await
            .map(|d| d.is_allowed())
            .unwrap_or(false);
        for attributes in odd_requests(&user) {
            let decision = authz
                .authorize(&attributes)
                .await
                .unwrap_or_else(|e| panic!("odd request {attributes}: {}", e.one_line()));
            let verb = attributes.verb();
            if !superuser && (verb.is_empty() || verb.starts_with("\u{0}") || verb.contains(' ')) {
                assert!(
                    !decision.is_allowed(),
                    "{:?} was allowed the odd request {attributes}",
                    user.username
                );
            }
        }
    }
}

fn odd_requests(user: &UserInfo) -> Vec<Attributes> {
    let huge = "x".repeat(10_000);
    let mut out = Vec::new();
    for verb in ["", "GET", "get list", "\u{0}", "délète"] {
        out.push(Attributes::resource(
            user.clone(),
            ResourceAttributes::new(verb, "", "pods").in_namespace("default"),
        ));
        out.push(Attributes::non_resource(
            user.clone(),
            NonResourceAttributes::new(verb, "/api"),
        ));
    }
    for (group, resource, ns, name) in [
        ("", "", "", ""),
        ("", "pods", &*huge, ""),
        ("", "pods", "default", &*huge),
        ("🦀", "crabs", "default", "ferris"),
        ("example.org", "widgets/../../secrets", "", ""),
        ("", "secrets", "kube-system", "*"),
    ] {
        out.push(Attributes::resource(
            user.clone(),
            ResourceAttributes::new("get", group, resource)
                .in_namespace(ns)
                .named(name),
        ));
    }
    for path in ["", "*", "/../", "/api/../apis", &huge, "/\u{0}"] {
        out.push(Attributes::non_resource(
            user.clone(),
            NonResourceAttributes::new("get", path),
        ));
    }
    out
}

/// An [`Arc`]'d fake authenticator and authorizer, for wiring into a server in tests.
pub fn fakes() -> (Arc<FakeAuthenticator>, Arc<FakeAuthorizer>) {
    (
        Arc::new(FakeAuthenticator::new()),
        Arc::new(FakeAuthorizer::new()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::environment::{EnvironmentAuthorizer, environment_group};
    use crate::local::{LocalAuthenticator, LocalToken, LocalTokens};
    use crate::roles::RoleTable;

    #[tokio::test]
    async fn the_fakes_pass_their_own_batteries() {
        let authn = FakeAuthenticator::new().with_token("AK:SK", UserInfo::new("alice"));
        authenticator_conformance(&authn, &AuthenticatorExpectations::new("AK:SK", "alice")).await;
        let authz = FakeAuthorizer::new()
            .allowing_user("root")
            .with_rule(|a| (a.user.username == "bob").then(|| Decision::deny("bob may not")));
        let root = UserInfo::new("root");
        let bob = UserInfo::new("bob");
        let pods = ResourceAttributes::new("list", "", "pods");
        authorizer_conformance(
            &authz,
            &[
                AuthorizerCase::new(Attributes::resource(root, pods.clone()), Verdict::Allow),
                AuthorizerCase::new(Attributes::resource(bob, pods.clone()), Verdict::Deny),
                AuthorizerCase::new(
                    Attributes::resource(UserInfo::new("eve"), pods),
                    Verdict::NoOpinion,
                ),
            ],
        )
        .await;
    }

    #[tokio::test]
    async fn the_local_authenticator_passes_the_battery() {
        let (token, entry) = LocalToken::generate(UserInfo::new("alice")).unwrap();
        let tokens = Arc::new(LocalTokens::with([("ns/alice".to_owned(), entry)]));
        let authn = LocalAuthenticator::new(tokens);
        authenticator_conformance(
            &authn,
            &AuthenticatorExpectations::new(token.expose(), "alice"),
        )
        .await;
    }

    #[tokio::test]
    async fn the_environment_authorizer_passes_the_battery() {
        let authz = EnvironmentAuthorizer::new("1a5", RoleTable::default());
        let user = |role: &str| UserInfo::new(role).with_group(environment_group("1a5", role));
        let create_cr =
            || ResourceAttributes::new("create", "rbac.authorization.k8s.io", "clusterroles");
        let pods_in = |verb: &str| ResourceAttributes::new(verb, "", "pods").in_namespace("web");
        let secrets = ResourceAttributes::new("get", "", "secrets").in_namespace("web");
        let nodes = ResourceAttributes::new("list", "", "nodes");
        let cases = [
            (user("owner"), create_cr(), Verdict::Allow),
            (user("member"), create_cr(), Verdict::Deny),
            (user("member"), pods_in("create"), Verdict::Allow),
            (user("restricted"), nodes.clone(), Verdict::NoOpinion),
            (user("restricted"), pods_in("delete"), Verdict::Allow),
            (user("readonly"), pods_in("list"), Verdict::Allow),
            (user("readonly"), secrets, Verdict::Deny),
            (user("readonly"), pods_in("create"), Verdict::NoOpinion),
            (UserInfo::new("stranger"), nodes, Verdict::NoOpinion),
        ]
        .map(|(u, r, v)| AuthorizerCase::new(Attributes::resource(u, r), v));
        authorizer_conformance(&authz, &cases).await;
    }
}
