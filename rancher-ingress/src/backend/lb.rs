//! The in-tree backend: load balancers realised by a `rancher-lb`
//! [`Driver`] (HAProxy on managed hosts, or the Rancher API).

use std::{
    collections::BTreeSet,
    sync::{Arc, Mutex, PoisonError},
};

use async_trait::async_trait;
use rancher_lb::{
    driver::{self, Driver},
    model::{
        BackendSpec, CertificateSpec, EndpointSpec, HttpRouteSpec, LbId, ListenerSpec,
        LoadBalancer as LbModel, LoadBalancerSpec, PathMatch, PlacementSpec,
        Protocol as LbProtocol, StickinessSpec,
    },
};
use tokio::sync::broadcast;

use crate::{
    backend::{Error, IngressBackend, Result},
    host::Host,
    model::{Address, LoadBalancer, Protocol, Status},
    path::PathKind,
};

/// The cookie name used when a stickiness policy names none.
pub const DEFAULT_STICKY_COOKIE: &str = "lb-sticky";

/// An [`IngressBackend`] on a `rancher-lb` [`Driver`].
pub struct LbBackend {
    driver: Arc<dyn Driver>,
    /// Names ensured and not deleted since this process started. Shared with
    /// the task behind [`IngressBackend::changes`], which passes on only these:
    /// a driver may serve other controllers' load balancers too.
    known: Arc<Mutex<BTreeSet<String>>>,
    /// The model last ensured per name.
    models: Mutex<std::collections::BTreeMap<String, LbModel>>,
}

impl std::fmt::Debug for LbBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LbBackend").finish_non_exhaustive()
    }
}

impl LbBackend {
    /// A backend driving `driver`.
    pub fn new(driver: Arc<dyn Driver>) -> Self {
        Self {
            driver,
            known: Arc::new(Mutex::new(BTreeSet::new())),
            models: Mutex::new(std::collections::BTreeMap::new()),
        }
    }

    /// The models last ensured, for drivers whose status must be re-read from
    /// their API (the Rancher driver's `refresh`).
    pub fn models(&self) -> Vec<LbModel> {
        self.models
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    fn known(&self) -> std::sync::MutexGuard<'_, BTreeSet<String>> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn id(name: &str) -> Result<LbId> {
    LbId::new(name).map_err(|error| Error::Unsupported {
        name: name.to_owned(),
        what: format!("the name ({error})"),
    })
}

/// Maps a translated load balancer onto a `rancher-lb` model.
pub fn to_model(lb: &LoadBalancer) -> Result<LbModel> {
    let placement = &lb.placement;
    // An HTTPS listener without a certificate cannot serve: leave it out.
    let listeners: Vec<ListenerSpec> = lb
        .listeners
        .iter()
        .filter(|l| l.protocol == Protocol::Http || !lb.certificates.is_empty())
        .map(|l| ListenerSpec {
            port: u32::from(l.port),
            protocol: match l.protocol {
                Protocol::Http => LbProtocol::Http,
                Protocol::Https => LbProtocol::Https,
            },
        })
        .collect();
    let stickiness =
        lb.stickiness
            .as_ref()
            .map_or(StickinessSpec::None, |s| StickinessSpec::Cookie {
                name: s
                    .cookie
                    .clone()
                    .or_else(|| s.name.clone())
                    .unwrap_or_else(|| DEFAULT_STICKY_COOKIE.to_owned()),
            });
    let mut spec = LoadBalancerSpec {
        id: lb.name.clone(),
        listeners: listeners.clone(),
        backends: lb
            .backends
            .values()
            .map(|b| BackendSpec {
                name: b.id(),
                endpoints: b
                    .endpoints
                    .iter()
                    .map(|e| EndpointSpec {
                        address: e.ip().to_string(),
                        port: u32::from(e.port()),
                    })
                    .collect(),
                stickiness: stickiness.clone(),
                ..BackendSpec::default()
            })
            .collect(),
        certificates: lb
            .certificates
            .iter()
            .map(|c| CertificateSpec {
                name: c.name.replace('/', "."),
                chain_pem: c.chain_pem.clone(),
                key_pem: c.key_pem.expose().to_owned(),
                default: c.hosts.contains(&Host::Any),
                hosts: c
                    .hosts
                    .iter()
                    .filter(|h| **h != Host::Any)
                    .map(ToString::to_string)
                    .collect(),
            })
            .collect(),
        scale: lb.scale,
        placement: PlacementSpec {
            required_labels: placement.required.clone(),
            forbidden_labels: placement.forbidden.clone(),
            preferred_labels: placement.preferred.clone(),
            avoided_labels: placement.avoided.clone(),
            global: placement.global,
            preferred_hosts: Vec::new(),
        },
        snippet: lb.snippet.clone(),
        // Without a listener there is nothing to serve it on.
        default_backend: lb.default_backend.clone().filter(|_| !listeners.is_empty()),
        ..LoadBalancerSpec::default()
    };
    for listener in &listeners {
        for route in &lb.routes {
            spec.http_routes.push(HttpRouteSpec {
                port: listener.port,
                host: (route.host != Host::Any).then(|| route.host.to_string()),
                path: Some(route.path.path().to_owned()),
                path_match: match route.path.kind() {
                    PathKind::Exact => PathMatch::Exact,
                    PathKind::Prefix => PathMatch::Prefix,
                },
                backend: route.backend.clone(),
            });
        }
    }
    LbModel::new(&spec).map_err(|error| Error::Other {
        name: lb.name.clone(),
        source: Box::new(error),
    })
}

fn status(status: &driver::Status) -> Status {
    let mut out = Status::new(status.addresses.iter().copied().map(Address::Ip));
    out.problems = status
        .conditions
        .iter()
        .filter(|c| {
            matches!(
                c.kind,
                driver::ConditionKind::Shortfall | driver::ConditionKind::InstanceDown
            )
        })
        .map(|c| format!("{}: {}", c.kind, c.message))
        .collect();
    out
}

fn driver_error(name: &str, error: driver::Error) -> Error {
    match error {
        driver::Error::Retry { after } => Error::Retry {
            name: name.to_owned(),
            reason: "the driver is converging".to_owned(),
            after,
        },
        driver::Error::Rejected { reason, .. } => Error::Unsupported {
            name: name.to_owned(),
            what: reason,
        },
        driver::Error::NotImplemented => Error::NotImplemented("this driver operation"),
        other => Error::Other {
            name: name.to_owned(),
            source: Box::new(other),
        },
    }
}

#[async_trait]
impl IngressBackend for LbBackend {
    async fn ensure(&self, lb: &LoadBalancer) -> Result<Status> {
        let model = to_model(lb)?;
        let result = self
            .driver
            .ensure(&model)
            .await
            .map_err(|e| driver_error(&lb.name, e))?;
        self.known().insert(lb.name.clone());
        self.models
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(lb.name.clone(), model);
        Ok(status(&result))
    }

    async fn ensure_deleted(&self, name: &str) -> Result<()> {
        let id = id(name)?;
        self.driver
            .ensure_deleted(&id)
            .await
            .map_err(|e| driver_error(name, e))?;
        self.known().remove(name);
        self.models
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(name);
        Ok(())
    }

    /// The load balancers ensured by this process, and those the driver
    /// holds under an Ingress load balancer name
    /// ([`BALANCER_PREFIX`](crate::translate::BALANCER_PREFIX), no dots):
    /// after a restart, the Rancher driver finds the ones created before.
    /// A driver shared with another Ingress controller must keep them apart
    /// (the Rancher driver: one stack per controller).
    async fn list(&self) -> Result<Vec<String>> {
        let held = self
            .driver
            .list()
            .await
            .map_err(|e| driver_error("(all)", e))?;
        let mut names = self.known().clone();
        names.extend(
            held.iter()
                .map(LbId::as_str)
                .filter(|name| {
                    name.starts_with(crate::translate::BALANCER_PREFIX) && !name.contains('.')
                })
                .map(str::to_owned),
        );
        Ok(names.into_iter().collect())
    }

    async fn status(&self, name: &str) -> Result<Option<Status>> {
        let id = id(name)?;
        Ok(self
            .driver
            .status(&id)
            .await
            .map_err(|e| driver_error(name, e))?
            .as_ref()
            .map(status))
    }

    fn changes(&self) -> Option<broadcast::Receiver<String>> {
        let mut updates = self.driver.subscribe();
        let (tx, rx) = broadcast::channel(driver::STATUS_CHANNEL_CAPACITY);
        let known = self.known.clone();
        tokio::spawn(async move {
            loop {
                match updates.recv().await {
                    Ok(update) => {
                        let name = update.id.as_str();
                        let ours = known
                            .lock()
                            .unwrap_or_else(PoisonError::into_inner)
                            .contains(name);
                        if ours && tx.send(name.to_owned()).is_err() {
                            break;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                    Err(broadcast::error::RecvError::Closed) => break,
                }
            }
        });
        Some(rx)
    }
}

#[cfg(test)]
mod tests {
    use std::{net::IpAddr, time::Duration};

    use rancher_lb::{placement::Host as LbHost, testing::FakeDriver};

    use super::*;
    use crate::{
        fixtures::*,
        translate::{Config, Sources, translate},
    };

    fn hosts() -> Vec<IpAddr> {
        vec!["127.0.0.2".parse().unwrap(), "127.0.0.3".parse().unwrap()]
    }

    fn backend() -> LbBackend {
        LbBackend::new(Arc::new(FakeDriver::new(
            hosts().into_iter().map(LbHost::new).collect(),
        )))
    }

    #[tokio::test]
    async fn passes_the_backend_battery_on_the_fake_driver() {
        crate::testing::conformance(&backend(), Duration::from_secs(5)).await;
    }

    #[tokio::test]
    async fn translated_load_balancers_are_valid_models() {
        let mut sources = Sources::new();
        sources.apply_class(rancher_class());
        sources.apply_service(mk_service("default", "nginx-service", &[("", 80)]));
        sources.apply_slice(mk_slice(
            "default",
            "s",
            "nginx-service",
            &[("", 8080)],
            &["10.42.0.5"],
        ));
        sources.apply_secret(mk_tls_secret(
            "default",
            "org",
            EXAMPLE_ORG_CRT,
            EXAMPLE_ORG_KEY,
        ));
        sources.apply_secret(mk_tls_secret(
            "default",
            "net",
            EXAMPLE_NET_CRT,
            EXAMPLE_NET_KEY,
        ));
        let mut ingress = mk_ingress(
            "default",
            "scalelb",
            1,
            vec![
                rule(
                    "foo.bar.com",
                    vec![path("/foo", "Prefix", svc("nginx-service", 80))],
                ),
                rule(
                    "*.example.org",
                    vec![path("/x", "Exact", svc("nginx-service", 80))],
                ),
            ],
        );
        ingress.default_backend = Some(svc("nginx-service", 80));
        let ingress = with_tls(
            with_tls(ingress, &["www.example.org"], "org"),
            &["www.example.net"],
            "net",
        );
        sources.apply_ingress(annotate(
            annotate(ingress, "scale", "2"),
            crate::annotations::STICKINESS,
            "cookie: route",
        ));
        let translation = translate(&sources, &Config::default());
        let lb = translation.balancers.values().next().unwrap();
        let model = to_model(lb).unwrap();
        assert_eq!(model.scale(), 2);
        assert_eq!(model.listeners().len(), 2);
        // Two listeners × two routes; the default backend serves both
        // listeners' unmatched requests.
        assert_eq!(model.http_routes().len(), 4);
        assert_eq!(
            model.default_backend().map(|b| b.as_str()),
            lb.default_backend.as_deref()
        );
        assert_eq!(model.certificates().len(), 2);

        let backend = backend();
        let status = backend.ensure(lb).await.unwrap();
        assert_eq!(
            status.addresses,
            hosts().into_iter().map(Address::Ip).collect::<Vec<_>>()
        );
        assert_eq!(backend.list().await.unwrap(), vec![lb.name.clone()]);
    }

    #[tokio::test]
    async fn scheduler_placement_reaches_the_driver() {
        let driver = FakeDriver::new(vec![
            LbHost::new(hosts()[0]).with_label("etcd", "true"),
            LbHost::new(hosts()[1]),
            LbHost::new("127.0.0.4".parse().unwrap()),
        ]);
        let backend = LbBackend::new(Arc::new(driver));
        let mut lb = LoadBalancer {
            name: "x".into(),
            scale: 1,
            ..LoadBalancer::default()
        };
        lb.placement.global = true;
        lb.placement
            .forbidden
            .insert("etcd".to_owned(), "true".to_owned());
        let model = to_model(&lb).unwrap();
        assert!(model.placement().global);
        let status = backend.ensure(&lb).await.unwrap();
        // Every host but the forbidden one, whatever the scale.
        let want: Vec<Address> = ["127.0.0.3", "127.0.0.4"]
            .iter()
            .map(|a| Address::Ip(a.parse().unwrap()))
            .collect();
        assert_eq!(status.addresses, want);

        // A label both required and forbidden names the field.
        lb.placement
            .required
            .insert("etcd".to_owned(), "true".to_owned());
        let error = rancher_runtime::events::error_chain(&backend.ensure(&lb).await.unwrap_err());
        assert!(error.contains("placement.forbidden_labels"), "{error}");
    }

    #[tokio::test]
    async fn changes_carry_only_this_backends_load_balancers_on_a_shared_driver() {
        let mut sources = Sources::new();
        sources.apply_class(rancher_class());
        sources.apply_service(mk_service("default", "nginx-service", &[("", 80)]));
        sources.apply_slice(mk_slice(
            "default",
            "s",
            "nginx-service",
            &[("", 8080)],
            &["10.42.0.5"],
        ));
        sources.apply_ingress(mk_ingress(
            "default",
            "web",
            1,
            vec![rule(
                "foo.bar.com",
                vec![path("/foo", "Prefix", svc("nginx-service", 80))],
            )],
        ));
        let translation = translate(&sources, &Config::default());
        let ours = translation.balancers.values().next().unwrap().clone();
        let mut theirs = ours.clone();
        theirs.name = format!("{}-other", ours.name);

        // Two controllers sharing one driver, as in the sandbox demo.
        let driver: Arc<dyn Driver> = Arc::new(FakeDriver::new(
            hosts().into_iter().map(LbHost::new).collect(),
        ));
        let a = LbBackend::new(driver.clone());
        let b = LbBackend::new(driver);
        let mut a_changes = a.changes().unwrap();
        let mut b_changes = b.changes().unwrap();
        a.ensure(&ours).await.unwrap();
        b.ensure(&theirs).await.unwrap();
        let a_first = tokio::time::timeout(Duration::from_secs(5), a_changes.recv())
            .await
            .expect("a status change for our own load balancer")
            .unwrap();
        assert_eq!(a_first, ours.name);
        let b_first = tokio::time::timeout(Duration::from_secs(5), b_changes.recv())
            .await
            .expect("a status change for the other backend's load balancer")
            .unwrap();
        assert_eq!(b_first, theirs.name, "b never hears of a's load balancer");
        while let Ok(name) = a_changes.try_recv() {
            assert_eq!(name, ours.name, "a never hears of b's load balancer");
        }
        while let Ok(name) = b_changes.try_recv() {
            assert_eq!(name, theirs.name);
        }
    }
}
