//! Node ranges when the cluster does not allocate them: each agent claims a range
//! for its node in a ledger ConfigMap, written with optimistic concurrency (a PUT
//! with the resourceVersion it read), so two agents racing for one range cannot
//! both win; the loser reads again and picks another. The claim is then published
//! on the Node (annotation [`POD_CIDRS_ANNOTATION`](super::POD_CIDRS_ANNOTATION)),
//! also written with the Node's resourceVersion.

use std::collections::BTreeMap;

use ipnet::IpNet;
use k8s_openapi::api::core::v1::{ConfigMap, Node};
use kube::{
    Api, Client,
    api::{ObjectMeta, PostParams},
};

use super::{Error, Result, convert::node_ranges};
use crate::overlay::pick_free;

/// The ledger's namespace.
pub const LEDGER_NAMESPACE: &str = "kube-system";

/// The ledger's name; its data maps each claimed range to a node.
pub const LEDGER_NAME: &str = "rancher-cni-ranges";

/// How many times a claim is retried after losing a race.
const ATTEMPTS: usize = 20;

fn conflict(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 409)
}

/// The ranges of `node` in `cluster_cidrs` (one per family, `size_v4`/`size_v6`
/// long): those the ledger holds for it, else new ones claimed.
pub async fn claim(
    client: &Client,
    node: &str,
    cluster_cidrs: &[IpNet],
    size_v4: u8,
    size_v6: u8,
) -> Result<Vec<IpNet>> {
    let ledgers: Api<ConfigMap> = Api::namespaced(client.clone(), LEDGER_NAMESPACE);
    let nodes: Api<Node> = Api::all(client.clone());
    for _ in 0..ATTEMPTS {
        let current = ledgers
            .get_opt(LEDGER_NAME)
            .await
            .map_err(|e| Error::Kube("read the range ledger".into(), e))?;
        let mut data: BTreeMap<String, String> = current
            .as_ref()
            .and_then(|c| c.data.clone())
            .unwrap_or_default();
        let mine: Vec<IpNet> = data
            .iter()
            .filter(|(_, n)| n.as_str() == node)
            .filter_map(|(r, _)| r.parse().ok())
            .collect();
        let mut wanted = Vec::new();
        let mut changed = false;
        // Ranges any node holds: the ledger's and those set on Nodes by the cluster.
        let mut used: Vec<IpNet> = data.keys().filter_map(|r| r.parse().ok()).collect();
        let listed = nodes
            .list(&Default::default())
            .await
            .map_err(|e| Error::Kube("list nodes".into(), e))?;
        for n in &listed.items {
            used.extend(node_ranges(n));
        }
        for cluster in cluster_cidrs {
            if let Some(have) = mine.iter().find(|r| cluster.contains(*r)) {
                wanted.push(*have);
                continue;
            }
            let size = if cluster.addr().is_ipv4() {
                size_v4
            } else {
                size_v6
            };
            let range = pick_free(cluster, size, &used).ok_or_else(|| Error::NoFreeRange {
                cluster: *cluster,
                size,
            })?;
            data.insert(range.to_string(), node.to_string());
            used.push(range);
            wanted.push(range);
            changed = true;
        }
        if !changed {
            return Ok(wanted);
        }
        let written = match current {
            Some(mut cm) => {
                cm.data = Some(data);
                ledgers
                    .replace(LEDGER_NAME, &PostParams::default(), &cm)
                    .await
            }
            None => {
                let cm = ConfigMap {
                    metadata: ObjectMeta {
                        name: Some(LEDGER_NAME.to_string()),
                        namespace: Some(LEDGER_NAMESPACE.to_string()),
                        ..ObjectMeta::default()
                    },
                    data: Some(data),
                    ..ConfigMap::default()
                };
                ledgers.create(&PostParams::default(), &cm).await
            }
        };
        match written {
            Ok(_) => return Ok(wanted),
            // Someone else wrote first: read again.
            Err(e) if conflict(&e) => continue,
            Err(e) => return Err(Error::Kube("write the range ledger".into(), e)),
        }
    }
    Err(Error::Contended)
}

/// Drops ledger entries of nodes that no longer exist (a node that left frees its
/// range). Any agent may run it; a lost race is retried on the next call.
pub async fn release_departed(client: &Client, existing: &[String]) -> Result<usize> {
    let ledgers: Api<ConfigMap> = Api::namespaced(client.clone(), LEDGER_NAMESPACE);
    let Some(mut cm) = ledgers
        .get_opt(LEDGER_NAME)
        .await
        .map_err(|e| Error::Kube("read the range ledger".into(), e))?
    else {
        return Ok(0);
    };
    let mut data = cm.data.take().unwrap_or_default();
    let before = data.len();
    data.retain(|_, n| existing.contains(n));
    let dropped = before - data.len();
    if dropped == 0 {
        return Ok(0);
    }
    cm.data = Some(data);
    match ledgers
        .replace(LEDGER_NAME, &PostParams::default(), &cm)
        .await
    {
        Ok(_) => Ok(dropped),
        Err(e) if conflict(&e) => Ok(0),
        Err(e) => Err(Error::Kube("write the range ledger".into(), e)),
    }
}
