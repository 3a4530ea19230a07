//! A conformance battery any [`DnsProvider`] can run: ours, or a user's.
//!
//! ```
//! # tokio::runtime::Runtime::new().unwrap().block_on(async {
//! use rancher_federation::provider::{MemoryProvider, conformance};
//! conformance::run(&MemoryProvider::new()).await;
//! # });
//! ```
//!
//! The battery writes names of two federations, `conformance` and
//! `conformance-other`, under the suffix it is given (`example.org` for
//! [`run`]), and removes them again when it passes. It panics with a message
//! naming the broken rule.

use super::{DnsProvider, Error};
use crate::model::{Changes, DnsName, Federation, Record, RecordData, RecordSet, Scope};

/// Runs the battery under `example.org`.
pub async fn run(provider: &dyn DnsProvider) {
    run_under(provider, "example.org").await;
}

/// Runs the battery with names under `suffix`, which must lie in the
/// provider's zone.
pub async fn run_under(provider: &dyn DnsProvider, suffix: &str) {
    let fed = Federation::new("conformance", suffix).expect("valid suffix");
    let other = Federation::new("conformance-other", suffix).expect("valid suffix");
    let (scope, other_scope) = (fed.scope(), other.scope());
    let name = |level: &str| {
        DnsName::new(&format!("web.default.conformance.svc.{level}{suffix}")).expect("valid name")
    };
    let (global, region, zone) = (name(""), name("r1."), name("z1.r1."));
    let a = |name: &DnsName, ip: &str, ttl: u32| {
        Record::new(name.clone(), ttl, RecordData::A(ip.parse().expect("ip")))
    };
    let aaaa = |name: &DnsName, ip: &str| {
        Record::new(name.clone(), 180, RecordData::Aaaa(ip.parse().expect("ip")))
    };
    let cname = |name: &DnsName, to: &DnsName| {
        Record::new(name.clone(), 180, RecordData::Cname(to.clone()))
    };

    // Start clean.
    ensure_ok(provider, &scope, &RecordSet::new()).await;
    ensure_ok(provider, &other_scope, &RecordSet::new()).await;
    assert!(
        read(provider, &scope).await.is_empty(),
        "ensuring an empty set leaves no record in the scope"
    );

    // Additions.
    let first: RecordSet = [
        a(&global, "192.0.2.1", 180),
        a(&global, "192.0.2.2", 180),
        a(&region, "192.0.2.1", 180),
        cname(&zone, &region),
    ]
    .into();
    let changes = ensure_ok(provider, &scope, &first).await;
    assert!(changes.removed.is_empty(), "nothing to remove: {changes:?}");
    assert_eq!(changes.added.len(), 4, "four records added: {changes:?}");
    assert_eq!(read(provider, &scope).await, first, "records read back");

    // Idempotence.
    let again = ensure_ok(provider, &scope, &first).await;
    assert!(
        again.is_empty(),
        "a second ensure changes nothing: {again:?}"
    );

    // Minimal change: one address replaced.
    let second: RecordSet = [
        a(&global, "192.0.2.1", 180),
        a(&global, "192.0.2.3", 180),
        a(&region, "192.0.2.1", 180),
        cname(&zone, &region),
    ]
    .into();
    let changes = ensure_ok(provider, &scope, &second).await;
    assert_eq!(
        changes,
        Changes {
            removed: vec![a(&global, "192.0.2.2", 180)],
            added: vec![a(&global, "192.0.2.3", 180)],
        },
        "only the replaced address changes"
    );
    assert_eq!(read(provider, &scope).await, second);

    // A name switches between addresses and a CNAME, both ways; AAAA records.
    let third: RecordSet = [
        a(&global, "192.0.2.1", 180),
        aaaa(&global, "2001:db8::1"),
        cname(&region, &global),
        a(&zone, "192.0.2.1", 180),
    ]
    .into();
    ensure_ok(provider, &scope, &third).await;
    assert_eq!(
        read(provider, &scope).await,
        third,
        "A and CNAME swap places, AAAA is kept"
    );

    // A TTL change.
    let fourth: RecordSet = [a(&global, "192.0.2.1", 60), a(&global, "192.0.2.4", 60)].into();
    ensure_ok(provider, &scope, &fourth).await;
    assert_eq!(read(provider, &scope).await, fourth, "new TTL read back");

    // Another federation's names are left alone.
    let other_name =
        DnsName::new(&format!("web.default.conformance-other.svc.{suffix}")).expect("valid name");
    let theirs: RecordSet = [a(&other_name, "198.51.100.1", 180)].into();
    ensure_ok(provider, &other_scope, &theirs).await;
    ensure_ok(provider, &scope, &RecordSet::new()).await;
    assert!(read(provider, &scope).await.is_empty(), "scope emptied");
    assert_eq!(
        read(provider, &other_scope).await,
        theirs,
        "emptying one federation keeps the other's records"
    );

    // Records outside the scope are refused and change nothing.
    match provider.ensure(&scope, &theirs).await {
        Err(Error::OutOfScope { .. }) => {}
        other => panic!("a record outside the scope must be refused, got {other:?}"),
    }
    assert_eq!(read(provider, &other_scope).await, theirs);

    // Removing a missing record is not an error.
    provider
        .apply(&Changes {
            removed: vec![a(&global, "192.0.2.99", 180)],
            added: vec![],
        })
        .await
        .expect("removing a missing record succeeds");

    ensure_ok(provider, &other_scope, &RecordSet::new()).await;
    assert!(read(provider, &other_scope).await.is_empty(), "cleaned up");
}

async fn ensure_ok(provider: &dyn DnsProvider, scope: &Scope, desired: &RecordSet) -> Changes {
    match provider.ensure(scope, desired).await {
        Ok(changes) => changes,
        Err(error) => panic!("ensure failed: {error} ({error:?})"),
    }
}

async fn read(provider: &dyn DnsProvider, scope: &Scope) -> RecordSet {
    match provider.records(scope).await {
        Ok(records) => records,
        Err(error) => panic!("reading records failed: {error} ({error:?})"),
    }
}
