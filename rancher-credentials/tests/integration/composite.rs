//! The composite asks in order, returns the first answer with a matching
//! credential, and does not hide failures behind an empty answer.

use std::time::Duration;

use rancher_credentials::{
    CredentialProvider,
    model::{CacheKeyType, Request, Response},
    provider::CompositeProvider,
    testing::{Expectations, FakeProvider, conformance},
};

#[tokio::test]
async fn the_first_provider_with_a_matching_credential_wins() {
    let first = std::sync::Arc::new(FakeProvider::new().with_auth("a.example.org", "first", "1"));
    let second = std::sync::Arc::new(
        FakeProvider::new()
            .with_auth("a.example.org", "second", "2")
            .with_auth("b.example.org", "second-b", "3")
            .with_cache(CacheKeyType::Global, Some(Duration::from_secs(30))),
    );
    let mut composite = CompositeProvider::new();
    composite.push(first.clone());
    composite.push(second.clone());

    let response = composite
        .credentials(&Request::new("a.example.org/app"))
        .await
        .unwrap();
    assert_eq!(response.auth["a.example.org"].username, "first");
    assert_eq!(
        second.requests().len(),
        0,
        "not asked once the first answered"
    );

    let response = composite
        .credentials(&Request::new("b.example.org/app"))
        .await
        .unwrap();
    assert_eq!(response.auth["b.example.org"].username, "second-b");
    assert_eq!(response.cache_key_type, CacheKeyType::Global);
    assert_eq!(first.requests().len(), 2);

    let response = composite
        .credentials(&Request::new("c.example.org/app"))
        .await
        .unwrap();
    assert_eq!(response, Response::empty());
}

#[tokio::test]
async fn a_failure_is_skipped_when_a_later_provider_answers() {
    let broken = std::sync::Arc::new(FakeProvider::new());
    broken.fail_with(Some("backend down"));
    let mut composite = CompositeProvider::new();
    composite.push(broken.clone());
    composite.push(std::sync::Arc::new(FakeProvider::new().with_auth(
        "a.example.org",
        "backup",
        "1",
    )));
    let response = composite
        .credentials(&Request::new("a.example.org/app"))
        .await
        .unwrap();
    assert_eq!(response.auth["a.example.org"].username, "backup");

    // Nobody has it and one failed: the failure, not an empty (cacheable) answer.
    let err = composite
        .credentials(&Request::new("z.example.org/app"))
        .await
        .unwrap_err();
    assert_eq!(err.to_string(), "fake failed");
    assert_eq!(broken.requests().len(), 2);
}

#[tokio::test]
async fn an_empty_composite_answers_empty() {
    let composite = CompositeProvider::new();
    assert!(composite.is_empty());
    let response = composite
        .credentials(&Request::new("a.example.org/app"))
        .await
        .unwrap();
    assert_eq!(response, Response::empty());
}

#[tokio::test]
async fn the_composite_and_the_fake_pass_the_conformance_battery() {
    let fake = FakeProvider::new()
        .with_auth("registry.example.org", "robot", "s3cr3t")
        .with_auth("*.example.net", "wild", "w1ld");
    conformance(
        &fake,
        &Expectations::new("registry.example.org/team/app", "robot", "s3cr3t")
            .unknown_image("nothing.example.com/app"),
    )
    .await;
    let composite = CompositeProvider::new()
        .with(FakeProvider::new().with_auth("other.example.org", "o", "o"))
        .with(fake);
    conformance(
        &composite,
        &Expectations::new("registry.example.org/team/app", "robot", "s3cr3t")
            .unknown_image("nothing.example.com/app"),
    )
    .await;
    conformance(
        &composite,
        &Expectations::new("mirror.example.net/team/app", "wild", "w1ld")
            .unknown_image("example.net/app"),
    )
    .await;
}

#[tokio::test]
#[should_panic(expected = "is not the expected one")]
async fn the_battery_catches_a_wrong_credential() {
    let fake = FakeProvider::new().with_auth("registry.example.org", "robot", "wrong");
    conformance(
        &fake,
        &Expectations::new("registry.example.org/app", "robot", "s3cr3t"),
    )
    .await;
}

#[tokio::test]
#[should_panic(expected = "no auth key matches")]
async fn the_battery_catches_a_key_without_the_port() {
    // The classic mistake: the registry runs on :5000 but the key drops the port.
    let fake = FakeProvider::new().with_auth("registry.example.org", "robot", "s3cr3t");
    conformance(
        &fake,
        &Expectations::new("registry.example.org:5000/app", "robot", "s3cr3t"),
    )
    .await;
}
