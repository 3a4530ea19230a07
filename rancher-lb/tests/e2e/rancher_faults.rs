//! The Rancher driver while the Rancher API fails for a while: 500s and 503s,
//! dropped connections, answers lost after the change was made, slow answers.
//! The driver is retried as a controller requeues it; once Rancher recovers,
//! what it holds is exactly what was asked: nothing duplicated (no second
//! load balancer service or certificate) and nothing removed that was wanted.

use std::time::Duration;

use rancher_client::testing::{FakeRancher, Fault};
use rancher_client::{Certificate as RCertificate, LoadBalancerService};
use rancher_lb::driver::Driver;
use rancher_lb::model::LoadBalancer;
use rancher_lb::rancher::{RancherConfig, RancherDriver};

use crate::rancher::{fake, http, live, tcp};
use crate::support::eventually;

/// How long each fault lasts.
const FAULT: Duration = Duration::from_secs(2);

/// Retries `op` every 200 ms, as a controller's requeue would, until it
/// succeeds.
async fn until_ok<F, Fut, T>(what: &str, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = rancher_lb::driver::Result<T>>,
{
    eventually(what, 60, || {
        let attempt = op();
        async move {
            match attempt.await {
                Ok(value) => Some(value),
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    None
                }
            }
        }
    })
    .await
}

fn live_certificates(fake: &FakeRancher) -> Vec<RCertificate> {
    fake.list::<RCertificate>()
        .into_iter()
        .filter(|c| !c.meta.is_removed())
        .collect()
}

/// Every request that asked Rancher to remove something.
fn removals(fake: &FakeRancher) -> Vec<String> {
    fake.requests()
        .iter()
        .filter(|r| {
            r.method == "DELETE"
                || (r.method == "POST" && r.query.as_deref() == Some("action=remove"))
        })
        .map(|r| r.path.clone())
        .collect()
}

fn scale_of(services: &[LoadBalancerService], port: u16) -> Option<u32> {
    services
        .iter()
        .find(|s| s.public_ports().contains(&port))
        .and_then(|s| s.scale)
}

async fn ensure_all(driver: &RancherDriver, lbs: &[&LoadBalancer], what: &str) {
    for lb in lbs {
        until_ok(&format!("{what}: {}", lb.id()), || driver.ensure(lb)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rancher_faults_for_a_while_neither_duplicate_nor_remove_anything() {
    for fault in [
        Fault::Status(500),
        Fault::Status(503),
        Fault::Drop,
        Fault::LoseAnswer,
        Fault::Slow(Duration::from_millis(700)),
    ] {
        let fake = fake().await;
        let driver = RancherDriver::new(fake.client(), RancherConfig::new());
        let web = http("default.web", 1, "www.example.org", "/", true);
        let db = tcp("default.db", 1);

        // Created while the fault lasts.
        fake.fault_for(fault, FAULT);
        ensure_all(&driver, &[&web, &db], &format!("{fault:?}: created")).await;
        if matches!(fault, Fault::Drop | Fault::LoseAnswer) {
            let hit = fake
                .requests()
                .iter()
                .any(|r| r.status.is_none() && (fault == Fault::Drop || r.method != "GET"));
            assert!(hit, "{fault:?}: a request met the fault");
        }
        let made = live(&fake);
        assert_eq!(made.len(), 2, "{fault:?}: one service each: {made:?}");
        assert_eq!(
            live_certificates(&fake).len(),
            1,
            "{fault:?}: one certificate"
        );
        assert_eq!(removals(&fake), Vec::<String>::new(), "{fault:?}");

        // Changed while the fault lasts: scaled in place.
        let web2 = http("default.web", 2, "www.example.org", "/", true);
        let db2 = tcp("default.db", 2);
        fake.fault_for(fault, FAULT);
        ensure_all(&driver, &[&web2, &db2], &format!("{fault:?}: scaled")).await;
        let scaled = live(&fake);
        assert_eq!(scaled.len(), 2, "{fault:?}: {scaled:?}");
        assert_eq!(scale_of(&scaled, 80), Some(2), "{fault:?}");
        assert_eq!(scale_of(&scaled, 5432), Some(2), "{fault:?}");
        assert_eq!(
            scaled.iter().map(|s| &s.meta.id).collect::<Vec<_>>(),
            made.iter().map(|s| &s.meta.id).collect::<Vec<_>>(),
            "{fault:?}: the same services"
        );
        assert_eq!(live_certificates(&fake).len(), 1, "{fault:?}");
        assert_eq!(removals(&fake), Vec::<String>::new(), "{fault:?}");

        // One deleted while the fault lasts: the other stays.
        fake.fault_for(fault, FAULT);
        until_ok(&format!("{fault:?}: deleted"), || {
            driver.ensure_deleted(db2.id())
        })
        .await;
        let left = live(&fake);
        assert_eq!(left.len(), 1, "{fault:?}: {left:?}");
        let web_service = made.iter().find(|s| s.public_ports().contains(&80));
        assert_eq!(
            Some(&left[0].meta.id),
            web_service.map(|s| &s.meta.id),
            "{fault:?}: web's service stays"
        );
        assert_eq!(live_certificates(&fake).len(), 1, "{fault:?}");
        let ids = until_ok(&format!("{fault:?}: listed"), || driver.list()).await;
        assert_eq!(ids, vec![web2.id().clone()], "{fault:?}");

        // Recovered: ensuring again changes nothing.
        fake.clear_requests();
        driver.ensure(&web2).await.expect("recovered");
        let writes: Vec<_> = fake
            .requests()
            .into_iter()
            .filter(|r| r.method != "GET")
            .collect();
        assert_eq!(writes, Vec::new(), "{fault:?}: nothing to change");
        fake.shutdown();
    }
}
