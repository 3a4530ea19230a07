//! The kubeconfig file written for a sandbox: one cluster, user and context per cluster.

use std::fmt::Write as _;

/// Renders a kubeconfig with one `(context name, server URL)` entry per cluster; the first
/// is the current context. Users carry no credentials (plain HTTP on loopback).
pub(crate) fn render(entries: &[(String, String)]) -> String {
    let mut out = String::from("apiVersion: v1\nkind: Config\npreferences: {}\nclusters:\n");
    for (name, server) in entries {
        let _ = write!(out, "- name: {name}\n  cluster:\n    server: {server}\n");
    }
    out.push_str("users:\n");
    for (name, _) in entries {
        let _ = write!(out, "- name: {name}\n  user: {{}}\n");
    }
    out.push_str("contexts:\n");
    for (name, _) in entries {
        let _ = write!(
            out,
            "- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\n    namespace: default\n"
        );
    }
    let current = entries.first().map_or("", |e| e.0.as_str());
    let _ = writeln!(out, "current-context: {current}");
    out
}
