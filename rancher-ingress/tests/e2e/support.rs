//! A sandbox with the Ingress controller running against it, object builders,
//! and waits on conditions with deadlines.

use std::{future::Future, path::PathBuf, sync::Arc, time::Duration};

use k8s_openapi::{
    ByteString,
    api::{
        core::v1::{Secret, Service},
        discovery::v1::EndpointSlice,
        events::v1::Event,
        networking::v1::{Ingress, IngressClass},
    },
};
use kube::{
    Api,
    api::{DeleteParams, ListParams, PostParams},
};
use prometheus_client::registry::Registry;
use rancher_ingress::{
    backend::IngressBackend,
    run::{self, IngressArgs},
};
use rancher_runtime::{lease::Leadership, ready::Readiness, shutdown::Shutdown};
use rancher_sandbox::Sandbox;

pub(crate) struct Running {
    pub(crate) _sandbox: Sandbox,
    pub(crate) client: kube::Client,
    pub(crate) kubeconfig: PathBuf,
    shutdown: Shutdown,
    _dir: tempfile::TempDir,
}

impl Running {
    /// A sandbox with the class `rancher` and the controller on `backend`.
    pub(crate) async fn start(backend: Arc<dyn IngressBackend>) -> Self {
        let running = Self::without_controller().await;
        running.start_own_controller(backend).await;
        running
    }

    /// Starts the controller on `backend`, leading, stopped by [`Self::stop`].
    pub(crate) async fn start_own_controller(&self, backend: Arc<dyn IngressBackend>) {
        self.start_controller(backend, Leadership::always(), &self.shutdown)
            .await;
    }

    /// A sandbox with the classes `rancher` and `nginx`, no controller yet.
    pub(crate) async fn without_controller() -> Self {
        rancher_runtime::install_crypto_provider();
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        let sandbox = Sandbox::builder()
            .kubeconfig_path(&kubeconfig)
            .start()
            .await
            .expect("sandbox starts");
        let client = sandbox.client();
        apply(&client, class("rancher", "rancher.io/ingress")).await;
        apply(&client, class("nginx", "k8s.io/ingress-nginx")).await;
        Self {
            _sandbox: sandbox,
            client,
            kubeconfig,
            shutdown: Shutdown::new(),
            _dir: dir,
        }
    }

    /// Starts a controller on this sandbox that acts while `leadership`
    /// leads and stops with `shutdown`; returns once its caches synced.
    pub(crate) async fn start_controller(
        &self,
        backend: Arc<dyn IngressBackend>,
        leadership: Leadership,
        shutdown: &Shutdown,
    ) {
        let readiness = Readiness::new();
        let mut registry = Registry::default();
        run::start(
            &IngressArgs::default(),
            self.client.clone(),
            backend,
            &mut registry,
            &readiness,
            leadership,
            shutdown,
        );
        wait_for("caches synced", || {
            let ready = readiness.is_ready();
            async move { ready.then_some(()) }
        })
        .await;
    }

    /// Runs `task` until the controller stops.
    pub(crate) fn spawn_until_stopped<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let token = self.shutdown.token();
        self.shutdown.spawn(async move {
            tokio::select! {
                () = task => {}
                () = token.cancelled() => {}
            }
        });
    }

    pub(crate) async fn stop(self) {
        self.shutdown
            .drain(Duration::from_secs(10))
            .await
            .expect("controller stops");
    }

    pub(crate) fn ingresses(&self) -> Api<Ingress> {
        Api::namespaced(self.client.clone(), "default")
    }

    /// Creates or replaces an object in `default` (server-side apply).
    pub(crate) async fn apply<K>(&self, object: K)
    where
        K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
            + Clone
            + serde::Serialize
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
    {
        let name = object.meta().name.clone().expect("named");
        let api: Api<K> = Api::namespaced(self.client.clone(), "default");
        match api.get_opt(&name).await.expect("get") {
            None => {
                api.create(&PostParams::default(), &object)
                    .await
                    .expect("create");
            }
            Some(current) => {
                let mut object = object;
                object.meta_mut().resource_version = current.meta().resource_version.clone();
                api.replace(&name, &PostParams::default(), &object)
                    .await
                    .expect("replace");
            }
        }
    }

    pub(crate) async fn delete_ingress(&self, name: &str) {
        self.ingresses()
            .delete(name, &DeleteParams::default())
            .await
            .expect("delete");
    }

    /// The addresses in an Ingress's status.
    pub(crate) async fn addresses(&self, name: &str) -> Vec<String> {
        let Some(ingress) = self.ingresses().get_opt(name).await.expect("get") else {
            return Vec::new();
        };
        ingress
            .status
            .and_then(|s| s.load_balancer)
            .and_then(|lb| lb.ingress)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|entry| entry.ip.or(entry.hostname))
            .collect()
    }

    /// Waits until the Ingress's status lists exactly `want`.
    pub(crate) async fn wait_addresses(&self, name: &str, want: &[&str]) {
        wait_for(&format!("{name} status {want:?}"), || async {
            let have = self.addresses(name).await;
            (have == want).then_some(())
        })
        .await;
    }

    /// `(type, reason, note)` of the events about Ingress `name`.
    pub(crate) async fn events(&self, name: &str) -> Vec<(String, String, String)> {
        let api: Api<Event> = Api::namespaced(self.client.clone(), "default");
        api.list(&ListParams::default())
            .await
            .expect("events")
            .items
            .into_iter()
            .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
            .map(|e| {
                (
                    e.type_.unwrap_or_default(),
                    e.reason.unwrap_or_default(),
                    e.note.unwrap_or_default(),
                )
            })
            .collect()
    }

    /// Waits for a Warning event about `name` whose note contains `text`.
    pub(crate) async fn wait_warning(&self, name: &str, text: &str) -> String {
        wait_for(
            &format!("a warning about {name} containing {text:?}"),
            || async {
                self.events(name)
                    .await
                    .into_iter()
                    .find(|(type_, _, note)| type_ == "Warning" && note.contains(text))
                    .map(|(_, _, note)| note)
            },
        )
        .await
    }

    /// Runs `kubectl` against the sandbox and returns its standard output.
    pub(crate) async fn kubectl(&self, args: &[&str]) -> String {
        let output = tokio::process::Command::new("kubectl")
            .arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .args(args)
            .output()
            .await
            .expect("kubectl runs");
        assert!(
            output.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

async fn apply(client: &kube::Client, class: IngressClass) {
    Api::<IngressClass>::all(client.clone())
        .create(&PostParams::default(), &class)
        .await
        .expect("ingress class created");
}

fn class(name: &str, controller: &str) -> IngressClass {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name},
        "spec": {"controller": controller}
    }))
    .expect("class")
}

/// Polls `check` every 20 ms until it returns `Some`, for at most 30 s.
pub(crate) async fn wait_for<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// An Ingress from `(host, path, pathType, service, port)` rules.
pub(crate) fn ingress(
    name: &str,
    class: &str,
    annotations: &[(&str, &str)],
    rules: &[(&str, &str, &str, &str, u16)],
) -> Ingress {
    let rules: Vec<serde_json::Value> = rules
        .iter()
        .map(|(host, path, path_type, service, port)| {
            serde_json::json!({
                "host": host,
                "http": {"paths": [{
                    "path": path, "pathType": path_type,
                    "backend": {"service": {"name": service, "port": {"number": port}}}
                }]}
            })
        })
        .collect();
    let annotations: serde_json::Map<String, serde_json::Value> = annotations
        .iter()
        .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
        .collect();
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "default", "annotations": annotations},
        "spec": {"ingressClassName": class, "rules": rules}
    }))
    .expect("ingress")
}

/// Adds `tls` entries `(hosts, secret)`.
pub(crate) fn with_tls(mut ingress: Ingress, entries: &[(&[&str], &str)]) -> Ingress {
    let tls = entries
        .iter()
        .map(|(hosts, secret)| {
            serde_json::from_value(serde_json::json!({"hosts": hosts, "secretName": secret}))
                .expect("tls")
        })
        .collect();
    ingress.spec.as_mut().expect("spec").tls = Some(tls);
    ingress
}

/// A Service with one TCP port named `http`.
pub(crate) fn service(name: &str, port: u16) -> Service {
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"ports": [{"name": "http", "port": port, "protocol": "TCP"}]}
    }))
    .expect("service")
}

/// The EndpointSlice of `service`: its `http` port is `target` on these
/// ready addresses.
pub(crate) fn slice(service: &str, target: u16, addresses: &[&str]) -> EndpointSlice {
    let endpoints: Vec<serde_json::Value> = addresses
        .iter()
        .map(|a| serde_json::json!({"addresses": [a], "conditions": {"ready": true}}))
        .collect();
    serde_json::from_value(serde_json::json!({
        "metadata": {"name": format!("{service}-1"), "namespace": "default",
                     "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": target, "protocol": "TCP"}],
        "endpoints": endpoints
    }))
    .expect("slice")
}

/// A `kubernetes.io/tls` Secret.
pub(crate) fn tls_secret(name: &str, cert: &str, key: &str) -> Secret {
    Secret {
        metadata: kube::api::ObjectMeta {
            name: Some(name.into()),
            namespace: Some("default".into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            [
                ("tls.crt".to_owned(), ByteString(cert.as_bytes().to_vec())),
                ("tls.key".to_owned(), ByteString(key.as_bytes().to_vec())),
            ]
            .into(),
        ),
        ..Default::default()
    }
}
