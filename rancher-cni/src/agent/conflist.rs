//! The network configuration list the agent writes for the container runtime.

use std::{io::Write, path::Path};

use ipnet::IpNet;
use serde_json::{Value, json};

use crate::{
    config::PLUGIN_TYPE,
    protocol::{CURRENT_VERSION, SUPPORTED_VERSIONS},
};

/// The file the agent writes in `--cni-conf-dir`.
pub const CONFLIST_FILE: &str = "10-rancher-cni.conflist";

/// The `cniVersion` of the conflist. Runtimes that read `cniVersions` (libcni 1.2
/// and later) take the highest version listed there, 1.1.0 with STATUS and GC;
/// older ones (containerd 1.6, CRI-O 1.2x) read only `cniVersion` and cannot
/// parse a 1.1.0 result, so it stays at 1.0.0.
pub const CONFLIST_VERSION: &str = "1.0.0";

/// The network's name in the conflist (and the reservations' directory).
pub const NETWORK_NAME: &str = "rancher";

/// What goes into the conflist.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflist {
    /// The node's ranges, one per family.
    pub ranges: Vec<IpNet>,
    /// The cluster networks (routed through the bridge, not masqueraded).
    pub cluster_cidrs: Vec<IpNet>,
    /// The bridge.
    pub bridge: String,
    /// The pods' MTU.
    pub mtu: u32,
    /// Masquerade traffic leaving the cluster networks.
    pub ip_masq: bool,
}

impl Conflist {
    /// The conflist as JSON.
    pub fn render(&self) -> Value {
        let sets: Vec<Value> = self
            .ranges
            .iter()
            .map(|r| json!([{"subnet": r.to_string()}]))
            .collect();
        let routes: Vec<Value> = self
            .cluster_cidrs
            .iter()
            .map(|c| json!({"dst": c.to_string()}))
            .collect();
        json!({
            "cniVersion": CONFLIST_VERSION,
            "cniVersions": SUPPORTED_VERSIONS,
            "name": NETWORK_NAME,
            "plugins": [{
                "type": PLUGIN_TYPE,
                "bridge": self.bridge,
                "mtu": self.mtu,
                "hairpinMode": true,
                "isDefaultGateway": true,
                "ipMasq": self.ip_masq,
                "clusterNetworks": self.cluster_cidrs.iter().map(ToString::to_string).collect::<Vec<_>>(),
                "ipam": {"ranges": sets, "routes": routes}
            }]
        })
    }

    /// Writes the conflist to `dir` atomically (a temporary file renamed over the
    /// old one), only when its content changes; `Ok(true)` when it wrote.
    pub fn write(&self, dir: &Path) -> std::io::Result<bool> {
        let text = serde_json::to_string_pretty(&self.render()).map_err(std::io::Error::other)?;
        let path = dir.join(CONFLIST_FILE);
        if std::fs::read_to_string(&path).is_ok_and(|old| old == text) {
            return Ok(false);
        }
        std::fs::create_dir_all(dir)?;
        let tmp = dir.join(format!(".{CONFLIST_FILE}.tmp"));
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)?;
        Ok(true)
    }
}

/// The single plugin configuration a runtime hands the plugin for `conflist`:
/// the plugin object with the list's `name` and `cniVersion`, as libcni builds it.
pub fn plugin_config(conflist: &Value) -> Option<Value> {
    let mut plugin = conflist.get("plugins")?.get(0)?.clone();
    let obj = plugin.as_object_mut()?;
    obj.insert("name".into(), conflist.get("name")?.clone());
    obj.insert(
        "cniVersion".into(),
        conflist
            .get("cniVersion")
            .cloned()
            .unwrap_or_else(|| Value::String(CURRENT_VERSION.into())),
    );
    Some(plugin)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NetConf;

    #[test]
    fn the_plugin_accepts_what_the_agent_writes() {
        let list = Conflist {
            ranges: vec![
                "10.42.3.0/24".parse().unwrap(),
                "fd42:0:0:3::/64".parse().unwrap(),
            ],
            cluster_cidrs: vec!["10.42.0.0/16".parse().unwrap()],
            bridge: "cni0".into(),
            mtu: 1450,
            ip_masq: false,
        };
        let conf = plugin_config(&list.render()).unwrap();
        let parsed = NetConf::parse(conf.to_string().as_bytes()).unwrap();
        assert_eq!(parsed.name, NETWORK_NAME);
        assert_eq!(parsed.mtu, Some(1450));
        assert_eq!(parsed.range_sets.len(), 2);
        let dir = tempfile::tempdir().unwrap();
        assert!(list.write(dir.path()).unwrap());
        assert!(
            !list.write(dir.path()).unwrap(),
            "unchanged content is not rewritten"
        );
    }
}
