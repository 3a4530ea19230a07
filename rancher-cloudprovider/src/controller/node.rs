//! The node controller part: provider ID, addresses, instance type and zone labels
//! from the provider's [`Instances`] and [`Zones`].

use std::sync::Arc;

use k8s_openapi::api::core::v1::Taint;
use kube::ResourceExt;
use parking_lot::RwLock;
use serde_json::{Map, Value, json};

use super::{Error, Result, Writer};
use crate::{
    Instances, Zones, convert,
    index::Index,
    well_known::{INSTANCE_TYPE_LABEL, REGION_LABEL, UNINITIALIZED_TAINT, ZONE_LABEL},
};

pub(crate) struct Reconciler {
    index: Arc<RwLock<Index>>,
    instances: Arc<dyn Instances>,
    zones: Option<Arc<dyn Zones>>,
    writer: Arc<dyn Writer>,
}

fn provider_error(node: &str, call: &'static str, source: crate::Error) -> Error {
    Error::Provider {
        call,
        object: format!("node {node}"),
        source,
    }
}

/// `Ok(None)` for an optional capability the provider does not have.
fn optional<T>(result: crate::Result<T>) -> crate::Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(error) if error.is_not_implemented() => Ok(None),
        Err(error) => Err(error),
    }
}

impl Reconciler {
    pub(crate) fn new(
        index: Arc<RwLock<Index>>,
        instances: Arc<dyn Instances>,
        zones: Option<Arc<dyn Zones>>,
        writer: Arc<dyn Writer>,
    ) -> Self {
        Self {
            index,
            instances,
            zones,
            writer,
        }
    }

    pub(crate) async fn reconcile(&self, name: &str) -> Result<()> {
        let Some(node) = self.index.read().node(name) else {
            return Ok(());
        };
        let model = convert::node(&node);
        let exists = self
            .instances
            .instance_exists(&model)
            .await
            .map_err(|e| provider_error(name, "instance_exists", e))?;
        if !exists {
            // Not ours to initialise (or gone); node lifecycle is out of scope.
            return Ok(());
        }

        let mut labels = Map::new();
        let mut spec = Map::new();
        if model.provider_id.is_none() {
            let id = self
                .instances
                .provider_id(&model)
                .await
                .map_err(|e| provider_error(name, "provider_id", e))?;
            spec.insert("providerID".into(), Value::String(id));
        }
        let mut set_label = |key: &str, value: String| {
            if !value.is_empty() && model.labels.get(key) != Some(&value) {
                labels.insert(key.into(), Value::String(value));
            }
        };
        if let Some(instance_type) = optional(self.instances.instance_type(&model).await)
            .map_err(|e| provider_error(name, "instance_type", e))?
        {
            set_label(INSTANCE_TYPE_LABEL, instance_type);
        }
        if let Some(zones) = &self.zones
            && let Some(zone) =
                optional(zones.zone(&model).await).map_err(|e| provider_error(name, "zone", e))?
        {
            set_label(ZONE_LABEL, zone.zone);
            set_label(REGION_LABEL, zone.region);
        }
        let taints: Vec<Taint> = node
            .spec
            .as_ref()
            .and_then(|s| s.taints.clone())
            .unwrap_or_default();
        if taints.iter().any(|t| t.key == UNINITIALIZED_TAINT) {
            let rest: Vec<&Taint> = taints
                .iter()
                .filter(|t| t.key != UNINITIALIZED_TAINT)
                .collect();
            spec.insert(
                "taints".into(),
                serde_json::to_value(rest).map_err(Error::Encode)?,
            );
        }
        if !labels.is_empty() || !spec.is_empty() {
            let mut patch = json!({});
            if !labels.is_empty() {
                patch["metadata"] = json!({ "labels": labels });
            }
            if !spec.is_empty() {
                patch["spec"] = Value::Object(spec);
            }
            self.writer.patch_node(&node.name_any(), patch).await?;
        }

        if let Some(addresses) = optional(self.instances.node_addresses(&model).await)
            .map_err(|e| provider_error(name, "node_addresses", e))?
            && !addresses.is_empty()
            && addresses != model.addresses
        {
            self.writer
                .patch_node_addresses(name, convert::node_addresses(&addresses))
                .await?;
        }
        Ok(())
    }
}
