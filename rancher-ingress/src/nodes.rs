//! Load balancer hosts from Kubernetes Nodes: each Node's address (InternalIP,
//! else ExternalIP), its labels, and whether it is Ready, handed to a
//! `rancher-lb` driver's `set_hosts` whenever they change.

use std::{collections::BTreeMap, net::IpAddr, sync::Arc};

use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;
use rancher_lb::{driver::Driver, placement::Host};
use rancher_runtime::index::IndexClusterResource;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The Node address types used, in order of preference.
pub const ADDRESS_TYPES: [&str; 2] = ["InternalIP", "ExternalIP"];

/// Converts a Node to a host; `None` without a usable IP address.
pub fn host(node: &Node) -> Option<Host> {
    let status = node.status.as_ref()?;
    let addresses = status.addresses.as_deref().unwrap_or_default();
    let address: IpAddr = ADDRESS_TYPES.iter().find_map(|kind| {
        addresses
            .iter()
            .filter(|a| a.type_ == *kind)
            .find_map(|a| a.address.parse().ok())
    })?;
    let healthy = status
        .conditions
        .as_deref()
        .unwrap_or_default()
        .iter()
        .any(|c| c.type_ == "Ready" && c.status == "True")
        && !node
            .spec
            .as_ref()
            .and_then(|s| s.unschedulable)
            .unwrap_or(false);
    Some(Host {
        address,
        labels: node.labels().clone(),
        healthy,
    })
}

/// The hosts known from Nodes; publishes the sorted list on every change.
#[derive(Debug)]
pub struct NodeHosts {
    hosts: BTreeMap<String, Host>,
    tx: watch::Sender<Vec<Host>>,
}

impl NodeHosts {
    /// An empty set and a receiver of its changes.
    pub fn new() -> (Self, watch::Receiver<Vec<Host>>) {
        let (tx, rx) = watch::channel(Vec::new());
        (
            Self {
                hosts: BTreeMap::new(),
                tx,
            },
            rx,
        )
    }

    fn publish(&self) {
        let mut hosts: Vec<Host> = self.hosts.values().cloned().collect();
        hosts.sort_by_key(|h| h.address);
        hosts.dedup_by_key(|h| h.address);
        self.tx.send_if_modified(|current| {
            if *current == hosts {
                false
            } else {
                *current = hosts;
                true
            }
        });
    }
}

impl IndexClusterResource<Node> for NodeHosts {
    fn apply(&mut self, node: Node) {
        let name = node.name_any();
        match host(&node) {
            Some(host) => self.hosts.insert(name, host),
            None => self.hosts.remove(&name),
        };
        self.publish();
    }

    fn delete(&mut self, name: String) {
        self.hosts.remove(&name);
        self.publish();
    }
}

/// Hands every change of `hosts` to `driver` until `shutdown`.
pub async fn feed(
    driver: Arc<dyn Driver>,
    mut hosts: watch::Receiver<Vec<Host>>,
    shutdown: CancellationToken,
) {
    loop {
        let current = hosts.borrow_and_update().clone();
        if let Err(error) = driver.set_hosts(current).await {
            tracing::warn!(
                error = &error as &dyn std::error::Error,
                "updating load balancer hosts failed"
            );
        }
        tokio::select! {
            changed = hosts.changed() => if changed.is_err() { return },
            () = shutdown.cancelled() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ip: &str, ready: &str) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": {"lb": "true"}},
            "status": {
                "addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}],
                "conditions": [{"type": "Ready", "status": ready}]
            }
        }))
        .unwrap()
    }

    #[test]
    fn nodes_become_hosts_and_changes_are_published() {
        let (mut hosts, mut rx) = NodeHosts::new();
        hosts.apply(node("b", "127.0.0.3", "True"));
        hosts.apply(node("a", "127.0.0.2", "False"));
        assert!(rx.has_changed().unwrap());
        let list = rx.borrow_and_update().clone();
        assert_eq!(
            list.iter()
                .map(|h| (h.address.to_string(), h.healthy))
                .collect::<Vec<_>>(),
            [
                ("127.0.0.2".to_owned(), false),
                ("127.0.0.3".to_owned(), true)
            ]
        );
        assert_eq!(list[0].labels["lb"], "true");
        hosts.apply(node("b", "127.0.0.3", "True"));
        assert!(!rx.has_changed().unwrap(), "no change, nothing published");
        hosts.delete("a".into());
        assert_eq!(rx.borrow_and_update().len(), 1);
    }
}
