//! The Rancher provider against the fake Rancher server.

use std::time::Duration;

use rancher_client::{Registry, RegistryCredential, RetryPolicy, testing::FakeRancher};
use rancher_credentials::{
    CredentialProvider,
    model::{CacheKeyType, Request},
    provider::{RancherConfig, RancherProvider},
    testing::{Expectations, conformance},
};

async fn fake() -> FakeRancher {
    rancher_runtime::install_crypto_provider();
    FakeRancher::builder()
        .settle_delay(Duration::ZERO)
        .start()
        .await
        .unwrap()
}

/// Seeds an active registry with one credential; returns the registry id.
fn registry(fake: &FakeRancher, address: &str, username: &str, password: &str) -> String {
    let registry = fake.seed(&Registry::new(address)).unwrap();
    fake.seed(&RegistryCredential::new(
        &registry.meta.id,
        username,
        password,
    ))
    .unwrap();
    registry.meta.id
}

fn provider(fake: &FakeRancher, config: RancherConfig) -> RancherProvider {
    RancherProvider::new(fake.client(), config)
}

fn user_for(response: &rancher_credentials::model::Response, image: &str) -> Vec<(String, String)> {
    response
        .lookup(image)
        .into_iter()
        .map(|(_, auth)| (auth.username.clone(), auth.password.expose().to_owned()))
        .collect()
}

#[tokio::test]
async fn each_registry_gets_its_own_credential() {
    let fake = fake().await;
    // The original provider's test fixtures, plus a registry on a port.
    registry(&fake, "quay.io", "foo", "qwerty");
    registry(&fake, "192.168.5.0", "bar", "asdfgh");
    registry(&fake, "registry.example.org:5000", "baz", "zxcvbn");
    let provider = provider(
        &fake,
        RancherConfig::default().cache_duration(Some(Duration::from_secs(30))),
    );

    let response = provider
        .credentials(&Request::new("quay.io/foo/bar"))
        .await
        .unwrap();
    assert_eq!(response.cache_key_type, CacheKeyType::Global);
    assert_eq!(response.cache_duration, Some(Duration::from_secs(30)));
    assert_eq!(response.auth.len(), 3);
    // Exactly one credential each, and its own: not the last one's.
    assert_eq!(
        user_for(&response, "quay.io/foo/bar"),
        [("foo".into(), "qwerty".into())]
    );
    assert_eq!(
        user_for(&response, "192.168.5.0/foo/bar"),
        [("bar".into(), "asdfgh".into())]
    );
    assert_eq!(
        user_for(&response, "registry.example.org:5000/team/app"),
        [("baz".into(), "zxcvbn".into())]
    );
    assert!(user_for(&response, "1.1.1.1/foo/bar").is_empty());
    assert!(
        user_for(&response, "registry.example.org/team/app").is_empty(),
        "the key carries the port, so the port-less image does not match"
    );
}

#[tokio::test]
async fn removed_and_inactive_objects_are_skipped() {
    let fake = fake().await;
    let client = fake.client();
    registry(&fake, "active.example.org", "a", "1");
    let inactive = registry(&fake, "inactive.example.org", "b", "2");
    let removed = registry(&fake, "removed.example.org", "c", "3");
    let with_removed_credential = fake.seed(&Registry::new("nocred.example.org")).unwrap();
    let credential = fake
        .seed(&RegistryCredential::new(
            &with_removed_credential.meta.id,
            "d",
            "4",
        ))
        .unwrap();
    let with_inactive_credential = fake.seed(&Registry::new("offcred.example.org")).unwrap();
    let off = fake
        .seed(&RegistryCredential::new(
            &with_inactive_credential.meta.id,
            "e",
            "5",
        ))
        .unwrap();

    client.registries().deactivate(&inactive).await.unwrap();
    client.registries().remove(&removed).await.unwrap();
    client
        .registry_credentials()
        .remove(&credential.meta.id)
        .await
        .unwrap();
    client
        .registry_credentials()
        .deactivate(&off.meta.id)
        .await
        .unwrap();
    fake.settle_now();

    let response = provider(&fake, RancherConfig::default())
        .credentials(&Request::new("active.example.org/app"))
        .await
        .unwrap();
    assert_eq!(
        response.auth.keys().collect::<Vec<_>>(),
        ["active.example.org"]
    );
}

#[tokio::test]
async fn the_newest_credential_of_a_registry_wins() {
    let fake = fake().await;
    let registry = fake.seed(&Registry::new("registry.example.org")).unwrap();
    // The fake stamps `created` itself; the later one is the newer.
    fake.seed(&RegistryCredential::new(
        &registry.meta.id,
        "old",
        "old-pass",
    ))
    .unwrap();
    fake.seed(&RegistryCredential::new(
        &registry.meta.id,
        "new",
        "new-pass",
    ))
    .unwrap();
    let response = provider(&fake, RancherConfig::default())
        .credentials(&Request::new("registry.example.org/app"))
        .await
        .unwrap();
    assert_eq!(
        user_for(&response, "registry.example.org/app"),
        [("new".into(), "new-pass".into())]
    );
}

#[tokio::test]
async fn lists_are_paginated() {
    let fake = fake().await;
    for i in 0..7 {
        registry(
            &fake,
            &format!("r{i}.example.org"),
            &format!("user{i}"),
            &format!("pass{i}"),
        );
    }
    fake.clear_requests();
    let response = provider(&fake, RancherConfig::default().page_size(3))
        .credentials(&Request::new("r6.example.org/app"))
        .await
        .unwrap();
    assert_eq!(response.auth.len(), 7);
    for i in 0..7 {
        assert_eq!(
            user_for(&response, &format!("r{i}.example.org/app")),
            [(format!("user{i}"), format!("pass{i}"))]
        );
    }
    // Three pages of registries and three of credentials.
    let gets = fake.requests().iter().filter(|r| r.method == "GET").count();
    assert_eq!(gets, 6, "{:?}", fake.requests());
}

#[tokio::test]
async fn passes_the_conformance_battery() {
    let fake = fake().await;
    registry(&fake, "registry.example.org", "robot", "s3cr3t");
    registry(&fake, "registry.example.org:5000", "port-robot", "p0rt");
    let provider = provider(&fake, RancherConfig::default());
    conformance(
        &provider,
        &Expectations::new("registry.example.org/team/app", "robot", "s3cr3t"),
    )
    .await;
    conformance(
        &provider,
        &Expectations::new("registry.example.org:5000/team/app", "port-robot", "p0rt"),
    )
    .await;
}

#[tokio::test]
async fn wrong_keys_fail_without_showing_them() {
    let fake = fake().await;
    registry(&fake, "registry.example.org", "robot", "s3cr3t");
    let config = fake.config().credentials(rancher_client::Credentials::new(
        "intruder",
        "not-the-secret-key",
    ));
    let client = rancher_client::Client::new(config).unwrap();
    let err = RancherProvider::new(client, RancherConfig::default())
        .credentials(&Request::new("registry.example.org/app"))
        .await
        .unwrap_err();
    let chain = error_chain(&err);
    assert!(chain.starts_with("rancher failed: unauthorized"), "{chain}");
    assert!(chain.contains("401"), "{chain}");
    assert!(
        !chain.contains("not-the-secret-key") && !chain.contains("s3cr3t"),
        "{chain}"
    );
}

#[tokio::test]
async fn server_errors_fail_after_the_client_retries() {
    let fake = fake().await;
    registry(&fake, "registry.example.org", "robot", "s3cr3t");
    let config = fake.config().retry(RetryPolicy {
        max_retries: 2,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
    });
    let provider = RancherProvider::new(
        rancher_client::Client::new(config).unwrap(),
        RancherConfig::default(),
    );
    fake.fail_next(3);
    let err = provider
        .credentials(&Request::new("registry.example.org/app"))
        .await
        .unwrap_err();
    let chain = error_chain(&err);
    assert!(chain.contains("500"), "{chain}");
    assert!(!chain.contains("s3cr3t"), "{chain}");
    // Once the server recovers, the next request succeeds.
    let response = provider
        .credentials(&Request::new("registry.example.org/app"))
        .await
        .unwrap();
    assert_eq!(response.auth.len(), 1);
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[tokio::test]
async fn rancher_faults_for_a_while_fail_cleanly_then_recover_without_writing() {
    use rancher_client::testing::Fault;
    let fake = fake().await;
    registry(&fake, "registry.example.org", "robot", "s3cr3t");
    let config = fake
        .config()
        .timeout(Duration::from_millis(500))
        .retry(RetryPolicy {
            max_retries: 1,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
        });
    let provider = RancherProvider::new(
        rancher_client::Client::new(config).unwrap(),
        RancherConfig::default(),
    );
    let request = Request::new("registry.example.org/app");
    for fault in [
        Fault::Status(500),
        Fault::Status(503),
        Fault::Drop,
        Fault::LoseAnswer,
        Fault::Slow(Duration::from_secs(2)),
    ] {
        fake.fault_for(fault, Duration::from_millis(1500));
        let started = tokio::time::Instant::now();
        // While the fault lasts, an answer is either an error that names no
        // secret, or (reads are answered under a lost-answer fault) right.
        let mut failed = false;
        while started.elapsed() < Duration::from_millis(1000) {
            match provider.credentials(&request).await {
                Ok(response) => {
                    assert_eq!(fault, Fault::LoseAnswer, "{fault:?} answered");
                    assert_eq!(
                        user_for(&response, "registry.example.org/app"),
                        [("robot".into(), "s3cr3t".into())]
                    );
                }
                Err(err) => {
                    let chain = error_chain(&err);
                    assert!(!chain.contains("s3cr3t"), "{fault:?}: {chain}");
                    failed = true;
                }
            }
        }
        assert_eq!(failed, fault != Fault::LoseAnswer, "{fault:?}");
        // Recovered: the same answer as before the fault.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let response = loop {
            if let Ok(response) = provider.credentials(&request).await {
                break response;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{fault:?}: recovered"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(
            user_for(&response, "registry.example.org/app"),
            [("robot".into(), "s3cr3t".into())],
            "{fault:?}"
        );
    }
    let writes: Vec<_> = fake
        .requests()
        .into_iter()
        .filter(|r| r.method != "GET")
        .collect();
    assert_eq!(writes, Vec::new(), "the provider only reads");
}
