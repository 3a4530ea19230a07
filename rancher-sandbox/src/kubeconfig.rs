//! The kubeconfig file written for a sandbox: one cluster, user and context per cluster.

use std::fmt::Write as _;

use base64::Engine as _;

/// One cluster of the kubeconfig.
pub(crate) struct Entry {
    /// Context, cluster and user name.
    pub(crate) name: String,
    /// The server URL.
    pub(crate) server: String,
    /// With access control on: the admin token and the CA (PEM) of the serving certificate.
    pub(crate) credentials: Option<(String, String)>,
}

/// Renders a kubeconfig with one entry per cluster; the first is the current context.
/// Users carry the cluster's admin token when access control is on, no credentials
/// otherwise (plain HTTP on loopback).
pub(crate) fn render(entries: &[Entry]) -> String {
    // A JSON string is a YAML string: values are quoted whatever they hold.
    let quote = |s: &str| serde_json::Value::String(s.to_owned()).to_string();
    let mut out = String::from("apiVersion: v1\nkind: Config\npreferences: {}\nclusters:\n");
    for e in entries {
        let _ = write!(
            out,
            "- name: {}\n  cluster:\n    server: {}\n",
            e.name, e.server
        );
        if let Some((_, ca)) = &e.credentials {
            let data = base64::engine::general_purpose::STANDARD.encode(ca);
            let _ = writeln!(out, "    certificate-authority-data: {data}");
        }
    }
    out.push_str("users:\n");
    for e in entries {
        match &e.credentials {
            Some((token, _)) => {
                let _ = write!(
                    out,
                    "- name: {}\n  user:\n    token: {}\n",
                    e.name,
                    quote(token)
                );
            }
            None => {
                let _ = write!(out, "- name: {}\n  user: {{}}\n", e.name);
            }
        }
    }
    out.push_str("contexts:\n");
    for e in entries {
        let name = &e.name;
        let _ = write!(
            out,
            "- name: {name}\n  context:\n    cluster: {name}\n    user: {name}\n    namespace: default\n"
        );
    }
    let current = entries.first().map_or("", |e| e.name.as_str());
    let _ = writeln!(out, "current-context: {current}");
    out
}

/// A client for the cluster `name` at `server` that sends `token` and trusts `ca_pem`,
/// built from the same kubeconfig the sandbox writes.
pub(crate) async fn client(
    name: &str,
    server: &str,
    token: &str,
    ca_pem: &str,
) -> Result<kube::Client, kube::Error> {
    let text = render(&[Entry {
        name: name.to_owned(),
        server: server.to_owned(),
        credentials: Some((token.to_owned(), ca_pem.to_owned())),
    }]);
    let kubeconfig =
        kube::config::Kubeconfig::from_yaml(&text).map_err(kube::Error::InferKubeconfig)?;
    let config = kube::Config::from_custom_kubeconfig(
        kubeconfig,
        &kube::config::KubeConfigOptions::default(),
    )
    .await
    .map_err(kube::Error::InferKubeconfig)?;
    kube::Client::try_from(config)
}
