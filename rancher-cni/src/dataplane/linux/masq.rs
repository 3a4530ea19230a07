//! `ipMasq`: masquerade pod traffic that leaves the cluster network, with
//! `iptables`/`ip6tables` (as the reference `bridge` plugin does), one chain per
//! family: `RANCHER-CNI-MASQ` returns for the cluster networks and masquerades the
//! rest; `POSTROUTING` jumps to it for each pod range.

use std::process::Command;

use ipnet::IpNet;

use super::{Error, Result};

/// The chain in the `nat` table.
pub(super) const CHAIN: &str = "RANCHER-CNI-MASQ";

fn run(tool: &str, args: &[&str]) -> Result<bool> {
    let out = Command::new(tool)
        .args(["-w", "5", "-t", "nat"])
        .args(args)
        .output()
        .map_err(|e| {
            Error::Unsupported(format!("ipMasq needs {tool}, which could not be run: {e}"))
        })?;
    Ok(out.status.success())
}

fn ensure_rule(tool: &str, rule: &[&str]) -> Result<()> {
    let mut check = vec!["-C"];
    check.extend_from_slice(rule);
    if run(tool, &check)? {
        return Ok(());
    }
    let mut add = vec!["-A"];
    add.extend_from_slice(rule);
    if run(tool, &add)? {
        Ok(())
    } else {
        Err(Error::Unsupported(format!(
            "{tool} -t nat -A {} failed",
            rule.join(" ")
        )))
    }
}

/// Makes sure traffic from `sources` to anything outside `exclude` is masqueraded.
pub(super) fn ensure(sources: &[IpNet], exclude: &[IpNet]) -> Result<()> {
    for v6 in [false, true] {
        let tool = if v6 { "ip6tables" } else { "iptables" };
        let srcs: Vec<String> = sources
            .iter()
            .filter(|s| s.addr().is_ipv6() == v6)
            .map(ToString::to_string)
            .collect();
        if srcs.is_empty() {
            continue;
        }
        // -N fails when the chain exists: fine.
        run(tool, &["-N", CHAIN])?;
        for net in exclude.iter().filter(|n| n.addr().is_ipv6() == v6) {
            let net = net.to_string();
            ensure_rule(tool, &[CHAIN, "-d", &net, "-j", "RETURN"])?;
        }
        let multicast = if v6 { "ff00::/8" } else { "224.0.0.0/4" };
        ensure_rule(tool, &[CHAIN, "-d", multicast, "-j", "RETURN"])?;
        ensure_rule(tool, &[CHAIN, "-j", "MASQUERADE"])?;
        for src in &srcs {
            ensure_rule(
                tool,
                &[
                    "POSTROUTING",
                    "-s",
                    src,
                    "-m",
                    "comment",
                    "--comment",
                    "rancher-cni",
                    "-j",
                    CHAIN,
                ],
            )?;
        }
    }
    Ok(())
}
