//! The controller's index: the watched objects, converted and stored in
//! [`Sources`], with change tracking so the controller knows what to redo.
//!
//! Fed by `rancher_runtime::index` drivers through the sink traits; tests feed
//! [`source`](crate::source) objects directly.

use std::{collections::BTreeSet, sync::Arc};

use k8s_openapi::api::{
    core::v1::{Secret as KubeSecret, Service as KubeService},
    discovery::v1::EndpointSlice as KubeSlice,
    networking::v1::{Ingress as KubeIngress, IngressClass as KubeClass},
};
use rancher_runtime::index::{IndexClusterResource, IndexNamespacedResource};
use tokio::sync::Notify;

use crate::{
    convert,
    model::IngressKey,
    source::{EndpointSlice, Ingress, IngressClass, Secret, Service},
    translate::Sources,
};

/// What changed since the controller last looked.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Changes {
    /// Something translation reads changed: translate again.
    pub spec: bool,
    /// Ingresses whose status alone changed.
    pub status: BTreeSet<IngressKey>,
}

/// The watched objects.
#[derive(Debug, Default)]
pub struct Index {
    sources: Sources,
    changes: Changes,
    notify: Arc<Notify>,
}

impl Index {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Woken after every change.
    pub fn notifier(&self) -> Arc<Notify> {
        self.notify.clone()
    }

    /// The stored objects.
    pub fn sources(&self) -> &Sources {
        &self.sources
    }

    /// Takes the changes recorded since the last call.
    pub fn take_changes(&mut self) -> Changes {
        std::mem::take(&mut self.changes)
    }

    fn changed(&mut self) {
        self.changes.spec = true;
        self.notify.notify_one();
    }

    /// Stores an Ingress. A change of its status alone does not call for a new
    /// translation.
    pub fn apply_ingress(&mut self, ingress: Ingress) {
        if let Some(old) = self.sources.ingress(&ingress.key) {
            if *old == ingress {
                return;
            }
            let same_spec = Ingress {
                status: ingress.status.clone(),
                ..old.clone()
            } == ingress;
            if same_spec {
                self.changes.status.insert(ingress.key.clone());
                self.sources.apply_ingress(ingress);
                self.notify.notify_one();
                return;
            }
        }
        self.sources.apply_ingress(ingress);
        self.changed();
    }

    /// Removes an Ingress.
    pub fn delete_ingress(&mut self, key: &IngressKey) {
        if self.sources.delete_ingress(key).is_some() {
            self.changed();
        }
    }

    /// Stores an IngressClass.
    pub fn apply_class(&mut self, class: IngressClass) {
        self.sources.apply_class(class);
        self.changed();
    }

    /// Stores a Service.
    pub fn apply_service(&mut self, service: Service) {
        self.sources.apply_service(service);
        self.changed();
    }

    /// Stores an EndpointSlice.
    pub fn apply_slice(&mut self, slice: EndpointSlice) {
        self.sources.apply_slice(slice);
        self.changed();
    }

    /// Stores a Secret.
    pub fn apply_secret(&mut self, secret: Secret) {
        self.sources.apply_secret(secret);
        self.changed();
    }
}

impl IndexNamespacedResource<KubeIngress> for Index {
    fn apply(&mut self, resource: KubeIngress) {
        self.apply_ingress(convert::ingress(&resource));
    }
    fn delete(&mut self, namespace: String, name: String) {
        self.delete_ingress(&IngressKey::new(namespace, name));
    }
}

impl IndexClusterResource<KubeClass> for Index {
    fn apply(&mut self, resource: KubeClass) {
        self.apply_class(convert::class(&resource));
    }
    fn delete(&mut self, name: String) {
        self.sources.delete_class(&name);
        self.changed();
    }
}

impl IndexNamespacedResource<KubeService> for Index {
    fn apply(&mut self, resource: KubeService) {
        self.apply_service(convert::service(&resource));
    }
    fn delete(&mut self, namespace: String, name: String) {
        self.sources.delete_service(&namespace, &name);
        self.changed();
    }
}

impl IndexNamespacedResource<KubeSlice> for Index {
    fn apply(&mut self, resource: KubeSlice) {
        self.apply_slice(convert::slice(&resource));
    }
    fn delete(&mut self, namespace: String, name: String) {
        self.sources.delete_slice(&namespace, &name);
        self.changed();
    }
}

impl IndexNamespacedResource<KubeSecret> for Index {
    fn apply(&mut self, resource: KubeSecret) {
        self.apply_secret(convert::secret(&resource));
    }
    fn delete(&mut self, namespace: String, name: String) {
        if self.sources.has_secret(&namespace, &name) {
            self.sources.delete_secret(&namespace, &name);
            self.changed();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::*;

    #[test]
    fn status_only_changes_do_not_ask_for_a_translation() {
        let mut index = Index::new();
        let ingress = mk_ingress("default", "a", 1, vec![]);
        index.apply_ingress(ingress.clone());
        assert!(index.take_changes().spec);
        index.apply_ingress(ingress.clone());
        assert_eq!(
            index.take_changes(),
            Changes::default(),
            "no change, nothing to do"
        );
        let mut written = ingress.clone();
        written.status = vec![crate::model::Address::parse("127.0.0.2")];
        index.apply_ingress(written);
        let changes = index.take_changes();
        assert!(!changes.spec);
        assert_eq!(
            changes.status.into_iter().collect::<Vec<_>>(),
            std::slice::from_ref(&ingress.key)
        );
        index.apply_ingress(annotate(ingress, "scale", "2"));
        assert!(index.take_changes().spec);
    }
}
