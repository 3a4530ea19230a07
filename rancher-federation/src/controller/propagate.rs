//! Propagation: the member Services a `FederatedService` asks for, their
//! ready endpoints, and the sweep of those whose `FederatedService` is gone.

use std::{collections::BTreeSet, time::Duration};

use k8s_openapi::api::{core::v1::Service, discovery::v1::EndpointSlice};
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams},
};
use rancher_runtime::events::error_chain;

use super::{MemberState, namespace};
use crate::{
    crd::FederatedService,
    well_known::{MANAGED_BY_LABEL, SERVICE_NAME_LABEL},
};

pub(super) enum Propagation {
    Collision,
    /// The namespace was missing and could not be created.
    Namespace(String),
    Failed(String),
}

/// The member Service the template asks for.
fn member_service(federation: &str, ns: &str, name: &str, fs: &FederatedService) -> Service {
    let template = &fs.spec.template;
    let mut labels = template.metadata.labels.clone();
    labels.insert(MANAGED_BY_LABEL.to_owned(), federation.to_owned());
    let mut spec = template.spec.clone();
    // Addresses are allocated by each member.
    spec.cluster_ip = None;
    spec.cluster_ips = None;
    Service {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(ns.to_owned()),
            labels: Some(labels),
            annotations: (!template.metadata.annotations.is_empty())
                .then(|| template.metadata.annotations.clone()),
            ..ObjectMeta::default()
        },
        spec: Some(spec),
        status: None,
    }
}

pub(super) async fn ensure_member_service(
    federation: &str,
    client: &kube::Client,
    ns: &str,
    name: &str,
    fs: &FederatedService,
) -> Result<Service, Propagation> {
    let api: Api<Service> = Api::namespaced(client.clone(), ns);
    let failed = |what: &str, error: kube::Error| {
        Propagation::Failed(format!("{what}: {}", error_chain(&error)))
    };
    let desired = member_service(federation, ns, name, fs);
    let existing = api
        .get_opt(name)
        .await
        .map_err(|error| failed("reading the service", error))?;
    let Some(existing) = existing else {
        return match api.create(&PostParams::default(), &desired).await {
            // Creating a namespaced object answers 404 when its namespace is
            // missing: make it, labelled as the federation's, and retry.
            Err(kube::Error::Api(status)) if status.code == 404 => {
                namespace::ensure(federation, client, ns)
                    .await
                    .map_err(|error| {
                        Propagation::Namespace(format!(
                            "creating namespace {ns} failed: {}",
                            error_chain(&error)
                        ))
                    })?;
                api.create(&PostParams::default(), &desired)
                    .await
                    .map_err(|error| failed("creating the service", error))
            }
            other => other.map_err(|error| failed("creating the service", error)),
        };
    };
    if existing.labels().get(MANAGED_BY_LABEL).map(String::as_str) != Some(federation) {
        return Err(Propagation::Collision);
    }
    if drifted(&existing, &desired) {
        let spec = desired.spec.clone().unwrap_or_default();
        let patch = serde_json::json!({
            "metadata": {
                "labels": desired.metadata.labels,
                "annotations": desired.metadata.annotations,
            },
            "spec": {
                "type": spec.type_,
                "ports": spec.ports,
                "selector": spec.selector,
                "externalTrafficPolicy": spec.external_traffic_policy,
                "sessionAffinity": spec.session_affinity,
                "loadBalancerClass": spec.load_balancer_class,
            }
        });
        return api
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .map_err(|error| failed("updating the service", error));
    }
    Ok(existing)
}

/// Whether the member Service differs from the template in what the
/// controller manages.
fn drifted(existing: &Service, desired: &Service) -> bool {
    let (Some(have), Some(want)) = (existing.spec.as_ref(), desired.spec.as_ref()) else {
        return true;
    };
    let labels_ok = desired
        .labels()
        .iter()
        .all(|(k, v)| existing.labels().get(k) == Some(v));
    let annotations_ok = desired
        .annotations()
        .iter()
        .all(|(k, v)| existing.annotations().get(k) == Some(v));
    let ports = |spec: &k8s_openapi::api::core::v1::ServiceSpec| {
        spec.ports
            .clone()
            .unwrap_or_default()
            .into_iter()
            .map(|mut p| {
                // Node ports are allocated by the member unless pinned.
                if want_port(want, &p).is_none_or(|w| w.node_port.is_none()) {
                    p.node_port = None;
                }
                p.protocol.get_or_insert_with(|| "TCP".to_owned());
                p
            })
            .collect::<Vec<_>>()
    };
    !labels_ok
        || !annotations_ok
        || have.type_.as_deref().unwrap_or("ClusterIP")
            != want.type_.as_deref().unwrap_or("ClusterIP")
        || have.selector != want.selector
        || ports(have) != ports(want)
}

fn want_port<'a>(
    want: &'a k8s_openapi::api::core::v1::ServiceSpec,
    port: &k8s_openapi::api::core::v1::ServicePort,
) -> Option<&'a k8s_openapi::api::core::v1::ServicePort> {
    want.ports
        .as_ref()?
        .iter()
        .find(|w| w.port == port.port && w.name == port.name)
}

/// Ready endpoints of Service `ns/name`: addresses of EndpointSlice
/// endpoints whose `ready` condition is not false.
pub(super) async fn ready_endpoints(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<usize, kube::Error> {
    let slices = Api::<EndpointSlice>::namespaced(client.clone(), ns)
        .list(&ListParams::default().labels(&format!("{SERVICE_NAME_LABEL}={name}")))
        .await?;
    Ok(slices
        .items
        .iter()
        .flat_map(|slice| slice.endpoints.iter().flatten())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
        .map(|e| e.addresses.len())
        .sum())
}

/// Deletes the managed Services of `federation` in `member` whose
/// `FederatedService` is gone. Failures are logged; the next round retries.
pub(super) async fn sweep_orphans(
    federation: &str,
    member: &MemberState,
    keep: &BTreeSet<(String, String)>,
    timeout: Duration,
) {
    let Some(client) = &member.client else {
        return;
    };
    let api: Api<Service> = Api::all(client.clone());
    let listed = tokio::time::timeout(
        timeout,
        api.list(&ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={federation}"))),
    )
    .await;
    let services = match listed {
        Ok(Ok(list)) => list.items,
        Ok(Err(error)) => {
            tracing::warn!(cluster = member.name, error = %error_chain(&error), "listing managed services failed");
            return;
        }
        Err(_) => return,
    };
    for service in services {
        let ns = service.namespace().unwrap_or_default();
        let name = service.name_any();
        if keep.contains(&(ns.clone(), name.clone())) {
            continue;
        }
        let api: Api<Service> = Api::namespaced(client.clone(), &ns);
        match tokio::time::timeout(timeout, api.delete(&name, &DeleteParams::default())).await {
            Ok(Ok(_)) => {
                tracing::info!(cluster = member.name, service = %format!("{ns}/{name}"), "deleted the service of a removed federated service")
            }
            Ok(Err(kube::Error::Api(status))) if status.code == 404 => {}
            Ok(Err(error)) => {
                tracing::warn!(cluster = member.name, error = %error_chain(&error), "deleting a managed service failed")
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{FederatedServiceSpec, ServiceTemplate};
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};

    fn fs(ports: Vec<ServicePort>) -> FederatedService {
        FederatedService::new(
            "nginx",
            FederatedServiceSpec {
                federation: "myfed".into(),
                template: ServiceTemplate {
                    metadata: Default::default(),
                    spec: ServiceSpec {
                        type_: Some("LoadBalancer".into()),
                        cluster_ip: Some("10.43.0.9".into()),
                        selector: Some([("app".to_owned(), "nginx".to_owned())].into()),
                        ports: Some(ports),
                        ..ServiceSpec::default()
                    },
                },
            },
        )
    }

    fn port(n: i32) -> ServicePort {
        ServicePort {
            port: n,
            ..ServicePort::default()
        }
    }

    #[test]
    fn member_services_carry_the_ownership_label_and_no_cluster_ip() {
        let service = member_service("myfed", "default", "nginx", &fs(vec![port(80)]));
        assert_eq!(
            service.labels().get(MANAGED_BY_LABEL).map(String::as_str),
            Some("myfed")
        );
        let spec = service.spec.unwrap();
        assert_eq!(spec.cluster_ip, None);
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
    }

    #[test]
    fn drift_ignores_member_allocations_but_sees_template_changes() {
        let desired = member_service("myfed", "default", "nginx", &fs(vec![port(80)]));
        let mut existing = desired.clone();
        let spec = existing.spec.as_mut().unwrap();
        spec.cluster_ip = Some("10.43.7.7".into());
        spec.ports.as_mut().unwrap()[0].node_port = Some(30080);
        spec.ports.as_mut().unwrap()[0].protocol = Some("TCP".into());
        existing
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("extra".into(), "kept".into());
        assert!(!drifted(&existing, &desired), "allocations are not drift");

        let changed = member_service("myfed", "default", "nginx", &fs(vec![port(8080)]));
        assert!(drifted(&existing, &changed), "a new port is drift");
        let mut relabelled = desired.clone();
        relabelled
            .metadata
            .labels
            .as_mut()
            .unwrap()
            .insert("tier".into(), "web".into());
        assert!(drifted(&existing, &relabelled), "a new label is drift");
    }
}
