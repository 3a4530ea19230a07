//! The Rancher authenticator against the fake Rancher: members by role, wrong keys, removed
//! members, and Rancher down, slow or answering garbage.

use std::time::Duration;

use rancher_auth::{
    Authentication, Token, TokenAuthenticator,
    rancher::{EXTRA_PRINCIPAL_IDS, RancherAuthenticator, RancherConfig},
    testing::{AuthenticatorExpectations, authenticator_conformance},
};
use rancher_client::{
    Config, RetryPolicy,
    resource::{kubernetes_token, role},
    testing::{FakeRancher, FakeUser, GROUP_ID_TYPE},
};

fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

async fn fake() -> FakeRancher {
    FakeRancher::builder()
        .settle_delay(Duration::from_millis(5))
        .user(FakeUser::new("olivia").role(role::OWNER))
        .user(FakeUser::new("mike").role(role::MEMBER))
        .user(FakeUser::new("rita").role(role::RESTRICTED))
        .user(FakeUser::new("ravi").role(role::READONLY).group("ops"))
        .user(FakeUser::new("nina"))
        .start()
        .await
        .unwrap()
}

fn authenticator(fake: &FakeRancher, timeout: Duration) -> RancherAuthenticator {
    let client = rancher_client::Client::new(
        Config::new(fake.url())
            .unwrap()
            .credentials(fake.credentials().unwrap().clone())
            .retry(RetryPolicy::none()),
    )
    .unwrap();
    let env = client.project_id().unwrap().to_owned();
    RancherAuthenticator::new(client, RancherConfig::new(env).timeout(timeout))
}

fn token(login: &str) -> Token {
    let c = FakeUser::new(login).credentials();
    Token::new(format!("{}:{}", c.access_key, c.secret_key.expose()))
}

#[tokio::test]
async fn members_get_their_role_as_a_group() {
    init();
    let fake = fake().await;
    let authn = authenticator(&fake, Duration::from_secs(5));
    let env = authn.environment().to_owned();
    for (login, role) in [
        ("olivia", "owner"),
        ("mike", "member"),
        ("rita", "restricted"),
        ("ravi", "readonly"),
    ] {
        let answer = authn.authenticate(&token(login)).await.unwrap();
        let user = answer
            .user()
            .unwrap_or_else(|| panic!("{login}: {answer:?}"));
        assert_eq!(user.username, login);
        assert_eq!(
            user.uid,
            format!("rancher_id:{}", fake.user_id(login).unwrap())
        );
        assert_eq!(user.groups, [format!("rancher:environment:{env}:{role}")]);
    }
    // ravi also joins through his group as owner: the better role wins.
    fake.add_member(&env, GROUP_ID_TYPE, "ops", role::OWNER)
        .unwrap();
    let ravi = authn.authenticate(&token("ravi")).await.unwrap();
    let ravi = ravi.user().unwrap();
    assert_eq!(ravi.groups, [format!("rancher:environment:{env}:owner")]);
    assert_eq!(ravi.extra[EXTRA_PRINCIPAL_IDS].len(), 2);

    // Rancher 1.x's kubeconfig token works too.
    let legacy = Token::new(kubernetes_token(&FakeUser::new("mike").credentials()).expose());
    let mike = authn.authenticate(&legacy).await.unwrap();
    assert_eq!(mike.user().unwrap().username, "mike");

    authenticator_conformance(
        &authn,
        &AuthenticatorExpectations::new(token("olivia").expose(), "olivia"),
    )
    .await;
}

#[tokio::test]
async fn strangers_wrong_keys_and_removed_members_are_definite_noes() {
    init();
    let fake = fake().await;
    let authn = authenticator(&fake, Duration::from_secs(5));
    let env = authn.environment().to_owned();
    let no = |a: Authentication| match a {
        Authentication::Unauthenticated { reason } => reason,
        other => panic!("{other:?}"),
    };
    let reason = no(authn.authenticate(&token("nina")).await.unwrap());
    assert!(reason.contains("not a member of environment"), "{reason}");
    let reason = no(authn
        .authenticate(&Token::new("OLIVIA-AK:wrong"))
        .await
        .unwrap());
    assert_eq!(reason, "Rancher does not accept this API key");
    let asked = fake.requests().len();
    no(authn.authenticate(&Token::new("not a key")).await.unwrap());
    assert_eq!(
        fake.requests().len(),
        asked,
        "odd tokens never reach Rancher"
    );

    assert_eq!(fake.remove_user_from(&env, "mike"), 1);
    no(authn.authenticate(&token("mike")).await.unwrap());
}

#[tokio::test]
async fn rancher_down_slow_or_garbled_is_an_error_never_a_user() {
    init();
    let fake = fake().await;
    let authn = authenticator(&fake, Duration::from_millis(300));

    fake.fail_next(1);
    let err = authn.authenticate(&token("olivia")).await.unwrap_err();
    assert!(
        err.one_line().contains("rancher is unavailable"),
        "{}",
        err.one_line()
    );
    // Members listing failing after the identity lookup: still an error.
    fake.drop_next(1);
    assert!(authn.authenticate(&token("olivia")).await.is_err());

    fake.set_response_delay(Some(Duration::from_secs(2)));
    let err = authn.authenticate(&token("olivia")).await.unwrap_err();
    assert!(
        matches!(err, rancher_auth::Error::Timeout { .. }),
        "{err:?}"
    );
    fake.set_response_delay(None);
    assert!(
        authn
            .authenticate(&token("olivia"))
            .await
            .unwrap()
            .user()
            .is_some()
    );

    // A server answering garbage where Rancher should be.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let garbage = axum::Router::new().fallback(|| async { "<html>not rancher</html>" });
    tokio::spawn(async move { axum::serve(listener, garbage).await });
    let client = rancher_client::Client::new(
        Config::new(&format!("http://{addr}/v2-beta/projects/1a5"))
            .unwrap()
            .credentials(rancher_client::Credentials::new("a", "b"))
            .retry(RetryPolicy::none()),
    )
    .unwrap();
    let garbled = RancherAuthenticator::new(client, RancherConfig::new("1a5"));
    let err = garbled.authenticate(&token("olivia")).await.unwrap_err();
    assert!(
        matches!(err, rancher_auth::Error::InvalidResponse { .. }),
        "{err:?}"
    );
    assert!(!err.one_line().contains("olivia-secret"));
}
