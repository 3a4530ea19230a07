//! A conformance battery any [`DnsBackend`] can run (feature `testing`).
//!
//! The battery drives the backend with full syncs and incremental changes
//! from a [`RecordIndex`] and checks, through a caller-supplied observer,
//! what the backend serves: `observe(name)` returns the IPv4 addresses
//! served for `name`, or `None` when the name does not resolve.

use std::future::Future;
use std::net::Ipv4Addr;

use super::DnsBackend;
use crate::fixtures::{mk_endpoint, mk_headless, mk_service, mk_slice};
use crate::model::{Options, ServiceKey};
use crate::records::RecordIndex;

fn ips(list: &[&str]) -> Option<Vec<Ipv4Addr>> {
    let mut v: Vec<Ipv4Addr> = list.iter().filter_map(|s| s.parse().ok()).collect();
    v.sort();
    Some(v)
}

async fn check<F, Fut>(observe: &F, name: &str, want: Option<Vec<Ipv4Addr>>, step: &str)
where
    F: Fn(String) -> Fut,
    Fut: Future<Output = Option<Vec<Ipv4Addr>>>,
{
    let mut got = observe(name.to_owned()).await;
    if let Some(v) = got.as_mut() {
        v.sort();
    }
    assert_eq!(got, want, "{step}: {name}");
}

/// Runs the battery. Panics with the failing step and name.
pub async fn run<B, F, Fut>(backend: &B, observe: F)
where
    B: DnsBackend + ?Sized,
    F: Fn(String) -> Fut,
    Fut: Future<Output = Option<Vec<Ipv4Addr>>>,
{
    let a = "a.ns.svc.cluster.local";
    let b = "b.ns.svc.cluster.local";
    let h = "h.ns.svc.cluster.local";
    let mut index = RecordIndex::new(Options::default());
    index.apply_service(mk_service("ns", "a", &["10.43.0.1"], vec![]));
    index.apply_service(mk_headless("ns", "h", vec![]));
    index.apply_slice(mk_slice(
        "ns",
        "h-1",
        "h",
        vec![
            mk_endpoint("10.42.0.1", Some("h-0"), true),
            mk_endpoint("10.42.0.2", Some("h-1"), true),
        ],
        vec![],
    ));

    backend.sync(&index.view()).await.expect("sync");
    check(&observe, a, ips(&["10.43.0.1"]), "after full sync").await;
    check(
        &observe,
        h,
        ips(&["10.42.0.1", "10.42.0.2"]),
        "after full sync",
    )
    .await;
    check(
        &observe,
        "h-1.h.ns.svc.cluster.local",
        ips(&["10.42.0.2"]),
        "after full sync",
    )
    .await;
    check(&observe, b, None, "after full sync").await;

    let changes = index.apply_service(mk_service("ns", "b", &["10.43.0.2"], vec![]));
    backend.apply(&changes).await.expect("apply add");
    check(&observe, b, ips(&["10.43.0.2"]), "after adding b").await;
    check(
        &observe,
        a,
        ips(&["10.43.0.1"]),
        "after adding b, a untouched",
    )
    .await;

    // Idempotent: the same changes again leave the same result.
    backend.apply(&changes).await.expect("apply again");
    check(&observe, b, ips(&["10.43.0.2"]), "after re-applying").await;

    let changes = index.delete_service(&ServiceKey::new("ns", "a"));
    backend.apply(&changes).await.expect("apply delete");
    check(&observe, a, None, "after deleting a").await;

    let changes = index.apply_slice(mk_slice(
        "ns",
        "h-1",
        "h",
        vec![
            mk_endpoint("10.42.0.1", Some("h-0"), false),
            mk_endpoint("10.42.0.2", Some("h-1"), true),
        ],
        vec![],
    ));
    backend
        .apply(&changes)
        .await
        .expect("apply endpoint change");
    check(&observe, h, ips(&["10.42.0.2"]), "after h-0 went unready").await;
    check(
        &observe,
        "h-0.h.ns.svc.cluster.local",
        None,
        "after h-0 went unready",
    )
    .await;

    let empty = RecordIndex::new(Options::default());
    backend.sync(&empty.view()).await.expect("re-sync");
    check(&observe, b, None, "after re-sync to empty").await;
    check(&observe, h, None, "after re-sync to empty").await;
}
