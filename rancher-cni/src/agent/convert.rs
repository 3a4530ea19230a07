//! Node objects to the overlay's [`NodeInfo`].

use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use kube::ResourceExt;

use super::{POD_CIDRS_ANNOTATION, PUBLIC_IP_ANNOTATION, VTEP_MAC_ANNOTATION};
use crate::overlay::NodeInfo;

/// A node's pod ranges: `spec.podCIDRs` (or `spec.podCIDR`) when the cluster
/// allocates them, else the ranges its agent claimed (annotation).
pub fn node_ranges(node: &Node) -> Vec<IpNet> {
    let spec = node.spec.as_ref();
    let mut from_spec: Vec<String> = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
    if from_spec.is_empty()
        && let Some(one) = spec.and_then(|s| s.pod_cidr.clone())
    {
        from_spec.push(one);
    }
    let raw: Vec<String> = if from_spec.is_empty() {
        node.annotations()
            .get(POD_CIDRS_ANNOTATION)
            .map(|v| v.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default()
    } else {
        from_spec
    };
    raw.iter()
        .filter_map(|s| s.parse::<IpNet>().ok())
        .map(|n| n.trunc())
        .collect()
}

/// What the overlay needs of `node`. Malformed annotations count as absent: the
/// node is left out until its agent publishes valid ones.
pub fn node_info(node: &Node) -> NodeInfo {
    let annotations = node.annotations();
    NodeInfo {
        name: node.name_any(),
        ranges: node_ranges(node),
        vtep_mac: annotations
            .get(VTEP_MAC_ANNOTATION)
            .and_then(|m| m.parse().ok()),
        underlay: annotations
            .get(PUBLIC_IP_ANNOTATION)
            .and_then(|m| m.parse().ok()),
    }
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::NodeSpec;
    use kube::api::ObjectMeta;

    use super::*;

    #[test]
    fn spec_wins_over_claims_and_bad_annotations_are_ignored() {
        let mut node = Node {
            metadata: ObjectMeta {
                name: Some("n1".into()),
                annotations: Some(
                    [
                        (POD_CIDRS_ANNOTATION.to_string(), "10.42.7.0/24".to_string()),
                        (VTEP_MAC_ANNOTATION.to_string(), "nonsense".to_string()),
                        (PUBLIC_IP_ANNOTATION.to_string(), "192.0.2.7".to_string()),
                    ]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            ..Node::default()
        };
        let info = node_info(&node);
        assert_eq!(info.ranges, vec!["10.42.7.0/24".parse::<IpNet>().unwrap()]);
        assert_eq!(info.vtep_mac, None);
        assert!(info.peer().is_none());
        node.spec = Some(NodeSpec {
            pod_cidrs: Some(vec!["10.42.9.0/24".into(), "fd42:0:0:9::/64".into()]),
            ..NodeSpec::default()
        });
        assert_eq!(node_ranges(&node).len(), 2);
        assert_eq!(node_ranges(&node)[0].to_string(), "10.42.9.0/24");
    }
}
