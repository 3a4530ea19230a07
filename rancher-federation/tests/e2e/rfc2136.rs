//! The RFC 2136 provider against a real BIND.

use std::time::Duration;

use rancher_federation::{
    model::{Changes, DnsName, Federation, Record, RecordData, RecordSet},
    provider::{DnsProvider, Error, TsigKey, conformance},
};

use crate::bind::{ALGORITHM, Bind, KEY_NAME, ZONE};

fn a(name: &str, ip: &str) -> Record {
    Record::new(
        DnsName::new(name).unwrap(),
        180,
        RecordData::A(ip.parse().unwrap()),
    )
}

#[tokio::test]
async fn rfc2136_provider_passes_the_conformance_battery_against_bind() {
    let bind = Bind::start().await;
    conformance::run_under(&bind.provider(), ZONE).await;
    // Records outside the federation's names were never touched.
    assert_eq!(bind.dig(&format!("www.{ZONE}"), "A"), ["192.0.2.80"]);
}

#[tokio::test]
async fn changes_are_visible_to_dig_and_minimal() {
    let bind = Bind::start().await;
    let provider = bind.provider();
    let scope = Federation::new("myfed", ZONE).unwrap().scope();
    let global = "nginx.default.myfed.svc.example.org";
    let zone = "nginx.default.myfed.svc.z1.r1.example.org";
    let region = "nginx.default.myfed.svc.r1.example.org";
    let desired: RecordSet = [
        a(global, "192.0.2.1"),
        a(global, "192.0.2.2"),
        a(region, "192.0.2.1"),
        Record::new(
            DnsName::new(zone).unwrap(),
            180,
            RecordData::Cname(DnsName::new(region).unwrap()),
        ),
    ]
    .into();
    provider.ensure(&scope, &desired).await.unwrap();
    assert_eq!(bind.dig(global, "A"), ["192.0.2.1", "192.0.2.2"]);
    assert_eq!(bind.dig(zone, "CNAME"), [format!("{region}.")]);
    // dig follows the CNAME inside the zone.
    assert_eq!(
        bind.dig(zone, "A"),
        ["192.0.2.1".to_owned(), format!("{region}.")]
    );

    let ttl = std::process::Command::new("dig")
        .args([
            "@127.0.0.1",
            "-p",
            &bind.port().to_string(),
            "+noall",
            "+answer",
            global,
            "A",
        ])
        .output()
        .unwrap();
    let answer = String::from_utf8_lossy(&ttl.stdout);
    assert!(
        answer
            .lines()
            .all(|l| l.split_whitespace().nth(1) == Some("180")),
        "{answer}"
    );

    let mut second = desired.clone();
    second.remove(&a(global, "192.0.2.2"));
    let changes = provider.ensure(&scope, &second).await.unwrap();
    assert_eq!(
        changes,
        Changes {
            removed: vec![a(global, "192.0.2.2")],
            added: vec![]
        }
    );
    assert_eq!(bind.dig(global, "A"), ["192.0.2.1"]);

    provider.ensure(&scope, &RecordSet::new()).await.unwrap();
    assert!(bind.dig(global, "A").is_empty());
    assert!(bind.dig(zone, "CNAME").is_empty(), "no CNAME left behind");
}

#[tokio::test]
async fn a_key_bind_does_not_accept_is_rejected_as_unauthorized() {
    let bind = Bind::start().await;
    let scope = Federation::new("myfed", ZONE).unwrap().scope();
    let desired: RecordSet = [a("nginx.default.myfed.svc.example.org", "192.0.2.1")].into();

    // The right name with a different secret.
    let wrong = TsigKey::new(KEY_NAME, ALGORITHM, "d3JvbmctIHNlY3JldC13cm9uZy1zZWNyZXQ=").unwrap();
    let error = bind
        .provider_with(Some(wrong.clone()))
        .ensure(&scope, &desired)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Unauthorized { .. }), "{error:?}");
    // An update alone (no transfer first) is refused the same way.
    let error = bind
        .provider_with(Some(wrong))
        .apply(&Changes {
            removed: vec![],
            added: desired.iter().cloned().collect(),
        })
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Unauthorized { .. }), "{error:?}");

    // A key BIND does not know.
    let unknown = TsigKey::new("stranger", ALGORITHM, bind.secret()).unwrap();
    let error = bind
        .provider_with(Some(unknown))
        .ensure(&scope, &desired)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Unauthorized { .. }), "{error:?}");

    // No key at all: transfers and updates are refused.
    let error = bind
        .provider_with(None)
        .ensure(&scope, &desired)
        .await
        .unwrap_err();
    assert!(matches!(error, Error::Refused { .. }), "{error:?}");

    assert!(
        bind.dig("nginx.default.myfed.svc.example.org", "A")
            .is_empty(),
        "nothing written"
    );
    // The right key still works afterwards.
    bind.provider().ensure(&scope, &desired).await.unwrap();
    assert_eq!(
        bind.dig("nginx.default.myfed.svc.example.org", "A"),
        ["192.0.2.1"]
    );
}

#[tokio::test]
async fn records_converge_after_bind_restarts() {
    let mut bind = Bind::start().await;
    let provider = bind.provider();
    let scope = Federation::new("myfed", ZONE).unwrap().scope();
    let global = "nginx.default.myfed.svc.example.org";
    let first: RecordSet = [a(global, "192.0.2.1")].into();
    provider.ensure(&scope, &first).await.unwrap();

    bind.stop();
    let second: RecordSet = [a(global, "192.0.2.1"), a(global, "192.0.2.2")].into();
    let error = provider.ensure(&scope, &second).await.unwrap_err();
    assert!(matches!(error, Error::Unreachable { .. }), "{error:?}");
    assert_eq!(error.retry_after(), Some(Duration::from_secs(5)));

    bind.restart().await;
    assert_eq!(
        provider.records(&scope).await.unwrap(),
        first,
        "the journal kept the update applied before the restart"
    );
    let changes = provider.ensure(&scope, &second).await.unwrap();
    assert_eq!(changes.added, vec![a(global, "192.0.2.2")]);
    assert_eq!(bind.dig(global, "A"), ["192.0.2.1", "192.0.2.2"]);
}
