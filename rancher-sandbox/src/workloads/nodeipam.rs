//! Node pod ranges: every Node without `spec.podCIDR` gets the first free /24 of the
//! cluster range (default `10.42.0.0/16`), as kube-controller-manager's range allocator.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::json;

use super::events::{Recorder, Severity};
use super::objects::{self, Writer, meta};
use super::runner::Reconciler;
use crate::allocate::parse_ipv4_cidr;
use crate::store::{Change, State};

/// The controller's name, as kube-controller-manager's.
pub(crate) const NAME: &str = "node-ipam-controller";
/// The default cluster range, as k3s and Rancher use.
pub const DEFAULT_CLUSTER_CIDR: &str = "10.42.0.0/16";
/// The prefix length of each node's range.
pub const NODE_MASK: u32 = 24;

pub(crate) struct NodeIpam {
    network: u32,
    prefix: u32,
    writer: Writer,
    events: Recorder,
}

impl NodeIpam {
    /// `cidr` must parse with [`parse_ipv4_cidr`] and be wider than a node's range.
    pub(crate) fn new(cidr: &str) -> Option<Self> {
        let (network, prefix) = parse_ipv4_cidr(cidr, 8..=NODE_MASK)?;
        Some(Self {
            network: u32::from(network),
            prefix,
            writer: Writer { manager: NAME },
            events: Recorder::new(NAME),
        })
    }

    /// The node ranges, in order.
    fn ranges(&self) -> impl Iterator<Item = String> + '_ {
        let count = 1u32 << (NODE_MASK - self.prefix);
        (0..count).map(move |i| {
            let net = Ipv4Addr::from(self.network + (i << (32 - NODE_MASK)));
            format!("{net}/{NODE_MASK}")
        })
    }
}

impl Reconciler for NodeIpam {
    type Key = String;

    fn name(&self) -> &'static str {
        NAME
    }

    fn keys_for(&mut self, _state: &State, change: &Change, out: &mut Vec<String>) {
        if change.storage == "/nodes" {
            out.push(meta(&change.object, "name").to_string());
        }
    }

    fn all_keys(&mut self, state: &State, out: &mut Vec<String>) {
        if let Some(rt) = objects::rt(state, "", "nodes") {
            out.extend(
                objects::list(state, &rt, None)
                    .iter()
                    .map(|n| meta(n, "name").to_string()),
            );
        }
    }

    fn reconcile(&mut self, state: &mut State, name: &String) -> Option<Duration> {
        let rt = objects::rt(state, "", "nodes")?;
        let node = objects::get(state, &rt, "", name)?;
        if node["spec"]["podCIDR"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
            || objects::is_deleting(&node)
        {
            return None;
        }
        let taken: BTreeSet<String> = objects::list(state, &rt, None)
            .iter()
            .flat_map(|n| {
                n["spec"]["podCIDRs"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
            })
            .filter_map(|c| c.as_str().map(str::to_string))
            .collect();
        let Some(range) = self.ranges().find(|r| !taken.contains(r)) else {
            self.events.record(
                state,
                &node,
                ("v1", "Node"),
                Severity::Warning,
                "CIDRNotAvailable",
                format!("Node {name} status is now: CIDRNotAvailable"),
            );
            return Some(Duration::from_secs(30));
        };
        let mut updated = node.value.clone();
        updated["spec"]["podCIDR"] = json!(range);
        updated["spec"]["podCIDRs"] = json!([range]);
        if self.writer.update(state, &rt, updated).is_ok() {
            self.events.record(
                state,
                &node,
                ("v1", "Node"),
                Severity::Normal,
                "CIDRAssignmentSucceeded",
                format!("Node {name} was assigned pod range {range}"),
            );
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges_are_the_slash_24s_of_the_cluster_range() {
        let ipam = NodeIpam::new("10.42.0.0/16").unwrap();
        let first: Vec<String> = ipam.ranges().take(2).collect();
        assert_eq!(first, ["10.42.0.0/24", "10.42.1.0/24"]);
        assert_eq!(ipam.ranges().count(), 256);
        assert!(NodeIpam::new("10.42.0.0/25").is_none());
        assert!(NodeIpam::new("bogus").is_none());
    }
}
