//! Namespaces in members: made by the federation when a federated Service's
//! namespace is missing there, and removed once the federation no longer
//! needs them and nothing else is in them.

use std::{collections::BTreeSet, time::Duration};

use k8s_openapi::api::core::v1::Namespace;
use kube::{
    Api, ResourceExt,
    api::{DeleteParams, DynamicObject, ListParams, ObjectMeta, PostParams},
    discovery::{Discovery, Scope, verbs},
};
use rancher_runtime::events::error_chain;

use super::MemberState;
use crate::well_known::MANAGED_BY_LABEL;

/// Creates namespace `ns` in a member, labelled `federation.rancher.io/federation:
/// <federation>` as made by the federation. One that appeared meanwhile (a
/// conflict) is fine: it is whoever made it first's.
pub(super) async fn ensure(
    federation: &str,
    client: &kube::Client,
    ns: &str,
) -> Result<(), kube::Error> {
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(ns.to_owned()),
            labels: Some([(MANAGED_BY_LABEL.to_owned(), federation.to_owned())].into()),
            ..ObjectMeta::default()
        },
        ..Namespace::default()
    };
    match Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
    {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 409 => Ok(()),
        Err(error) => Err(error),
    }
}

/// Objects every namespace gets without anyone asking (from the service
/// account and root CA controllers), which do not make it in use.
fn automatic(resource: &str, name: &str) -> bool {
    matches!(
        (resource, name),
        ("serviceaccounts", "default") | ("configmaps", "kube-root-ca.crt")
    )
}

/// Resources that do not make a namespace in use: events (about what was
/// there), and the endpoints a Service's controllers derive from it, which go
/// with it.
fn derived(group: &str, resource: &str) -> bool {
    matches!(
        (group, resource),
        ("", "events" | "endpoints")
            | ("events.k8s.io", "events")
            | ("discovery.k8s.io", "endpointslices")
    )
}

/// The first object found in `ns` that makes it in use, as `resource/name`;
/// `None` when there is none. Every namespaced resource the member serves
/// and can list is looked at.
async fn first_object(
    client: &kube::Client,
    discovery: &Discovery,
    ns: &str,
) -> Result<Option<String>, kube::Error> {
    for group in discovery.groups() {
        for (resource, caps) in group.recommended_resources() {
            if caps.scope != Scope::Namespaced
                || !caps.supports_operation(verbs::LIST)
                || derived(&resource.group, &resource.plural)
            {
                continue;
            }
            let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, &resource);
            let list = api.list_metadata(&ListParams::default().limit(50)).await?;
            let more = list
                .metadata
                .continue_
                .as_deref()
                .is_some_and(|c| !c.is_empty());
            let found = list
                .items
                .iter()
                .map(ResourceExt::name_any)
                .find(|name| !automatic(&resource.plural, name));
            if let Some(name) = found {
                return Ok(Some(format!("{}/{name}", resource.plural)));
            }
            if more {
                return Ok(Some(format!("{} (more than 50)", resource.plural)));
            }
        }
    }
    Ok(None)
}

/// Deletes the namespaces `federation` made in `member` that no live
/// federated Service of it needs (`keep`) and that hold nothing else.
/// Failures are logged; the next round retries.
pub(super) async fn sweep(
    federation: &str,
    member: &MemberState,
    keep: &BTreeSet<String>,
    timeout: Duration,
) {
    let Some(client) = &member.client else {
        return;
    };
    let api: Api<Namespace> = Api::all(client.clone());
    let listed = tokio::time::timeout(
        timeout,
        api.list(&ListParams::default().labels(&format!("{MANAGED_BY_LABEL}={federation}"))),
    )
    .await;
    let candidates: Vec<String> = match listed {
        Ok(Ok(list)) => list
            .items
            .iter()
            .filter(|ns| ns.metadata.deletion_timestamp.is_none())
            .map(ResourceExt::name_any)
            .filter(|name| !keep.contains(name))
            .collect(),
        Ok(Err(error)) => {
            tracing::warn!(cluster = member.name, error = %error_chain(&error), "listing the federation's namespaces failed");
            return;
        }
        Err(_) => return,
    };
    if candidates.is_empty() {
        return;
    }
    let discovery = match tokio::time::timeout(timeout, Discovery::new(client.clone()).run()).await
    {
        Ok(Ok(discovery)) => discovery,
        Ok(Err(error)) => {
            tracing::warn!(cluster = member.name, error = %error_chain(&error), "discovering the member's resources failed");
            return;
        }
        Err(_) => return,
    };
    for ns in candidates {
        match tokio::time::timeout(timeout, first_object(client, &discovery, &ns)).await {
            Ok(Ok(None)) => {}
            Ok(Ok(Some(object))) => {
                tracing::debug!(cluster = member.name, namespace = ns, %object, "namespace made by the federation is in use; kept");
                continue;
            }
            Ok(Err(error)) => {
                tracing::warn!(cluster = member.name, namespace = ns, error = %error_chain(&error), "looking into a namespace failed");
                continue;
            }
            Err(_) => continue,
        }
        match tokio::time::timeout(timeout, api.delete(&ns, &DeleteParams::default())).await {
            Ok(Ok(_)) => {
                tracing::info!(
                    cluster = member.name,
                    namespace = ns,
                    "deleted a namespace the federation made and no longer needs"
                );
            }
            Ok(Err(kube::Error::Api(status))) if status.code == 404 => {}
            Ok(Err(error)) => {
                tracing::warn!(cluster = member.name, namespace = ns, error = %error_chain(&error), "deleting a namespace failed");
            }
            Err(_) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn automatic_and_derived_objects_do_not_keep_a_namespace() {
        assert!(automatic("serviceaccounts", "default"));
        assert!(automatic("configmaps", "kube-root-ca.crt"));
        assert!(!automatic("configmaps", "settings"));
        assert!(!automatic("serviceaccounts", "builder"));
        assert!(derived("", "events"));
        assert!(derived("events.k8s.io", "events"));
        assert!(derived("discovery.k8s.io", "endpointslices"));
        assert!(!derived("", "services"));
        assert!(!derived("apps", "deployments"));
    }
}
