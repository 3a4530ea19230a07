//! The Docker config file provider against the conformance battery.

use std::time::Duration;

use base64::Engine as _;
use rancher_credentials::{
    CredentialProvider,
    model::{CacheKeyType, Request},
    provider::{DockerConfigConfig, DockerConfigProvider},
    testing::{Expectations, conformance},
};

fn write_config(dir: &tempfile::TempDir) -> std::path::PathBuf {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let path = dir.path().join("config.json");
    let json = serde_json::json!({
        "auths": {
            "registry.example.org": {"auth": b64("robot:s3cr3t")},
            "registry.example.org:5000": {"username": "port-robot", "password": "p0rt"},
            "https://index.docker.io/v1/": {"auth": b64("hub-user:hub-pass")},
        },
        "credsStore": "desktop"
    });
    std::fs::write(&path, json.to_string()).unwrap();
    path
}

#[tokio::test]
async fn passes_the_conformance_battery() {
    let dir = tempfile::tempdir().unwrap();
    let provider = DockerConfigProvider::new(DockerConfigConfig {
        cache_duration: Some(Duration::from_secs(300)),
        ..DockerConfigConfig::new(write_config(&dir))
    });
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
    conformance(
        &provider,
        &Expectations::new("docker.io/library/nginx", "hub-user", "hub-pass"),
    )
    .await;

    let response = provider
        .credentials(&Request::new("registry.example.org:5000/app"))
        .await
        .unwrap();
    assert_eq!(response.cache_key_type, CacheKeyType::Registry);
    assert_eq!(response.cache_duration, Some(Duration::from_secs(300)));
    assert_eq!(
        response.auth.keys().collect::<Vec<_>>(),
        ["registry.example.org:5000"],
        "only the entry with the image's port"
    );
}
