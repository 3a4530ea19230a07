//! The exec protocol in process: request bytes in, response bytes out.

use std::time::Duration;

use rancher_credentials::{
    exec,
    model::{CacheKeyType, Request, Response},
    testing::FakeProvider,
};

#[tokio::test]
async fn cache_key_types_and_durations_reach_the_wire() {
    for (key_type, duration, expected) in [
        (CacheKeyType::Image, None, None),
        (CacheKeyType::Registry, Some(Duration::ZERO), Some("0s")),
        (
            CacheKeyType::Global,
            Some(Duration::from_secs(90)),
            Some("1m30s"),
        ),
    ] {
        let provider = FakeProvider::new()
            .with_auth("registry.example.org:5000", "u", "p")
            .with_cache(key_type, duration);
        let mut out = Vec::new();
        let request = Request::new("registry.example.org:5000/app").to_json();
        exec::run(&request[..], &mut out, &provider).await.unwrap();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["cacheKeyType"], format!("{key_type:?}"));
        assert_eq!(value["cacheDuration"].as_str(), expected);
        assert_eq!(value["auth"]["registry.example.org:5000"]["username"], "u");
        let response = Response::from_json(&out).unwrap();
        assert_eq!(response.cache_duration, duration);
    }
}

#[tokio::test]
async fn a_provider_error_writes_nothing_and_hides_the_password() {
    let provider = FakeProvider::new().with_auth("registry.example.org", "u", "hunter2");
    provider.fail_with(Some("connection refused"));
    let mut out = Vec::new();
    let request = Request::new("registry.example.org/app").to_json();
    let err = exec::run(&request[..], &mut out, &provider)
        .await
        .unwrap_err();
    assert!(out.is_empty());
    assert_eq!(err.exit_code(), exec::EXIT_FAILURE);
    assert!(!err.one_line().contains("hunter2"));
    assert_eq!(
        provider.requests(),
        [Request::new("registry.example.org/app")]
    );
}
