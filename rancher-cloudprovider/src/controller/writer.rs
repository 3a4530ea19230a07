//! The controller's writes to the API: finalizers, status, node metadata, events.
//! Behind a trait so the reconcilers can be tested against a recording fake.

use async_trait::async_trait;
use k8s_openapi::api::core::v1::{Node, NodeAddress, Service};
use kube::{
    Api, ResourceExt,
    api::{Patch, PatchParams},
};
use rancher_runtime::events::{Recorder, Type};
use serde_json::{Value, json};

use super::Error;
use crate::well_known::LOAD_BALANCER_CLEANUP_FINALIZER;

#[async_trait]
pub(crate) trait Writer: Send + Sync + 'static {
    /// Adds the cleanup finalizer (a no-op when present).
    async fn add_finalizer(&self, service: &Service) -> Result<(), Error>;
    /// Removes the cleanup finalizer (a no-op when absent).
    async fn remove_finalizer(&self, service: &Service) -> Result<(), Error>;
    /// Replaces `status.loadBalancer.ingress` (`None` clears it).
    async fn patch_status(
        &self,
        service: &Service,
        ingress: Option<Vec<k8s_openapi::api::core::v1::LoadBalancerIngress>>,
    ) -> Result<(), Error>;
    /// Merge-patches a Node (metadata and spec).
    async fn patch_node(&self, node: &str, patch: Value) -> Result<(), Error>;
    /// Replaces a Node's `status.addresses`.
    async fn patch_node_addresses(
        &self,
        node: &str,
        addresses: Vec<NodeAddress>,
    ) -> Result<(), Error>;
    /// Records an event about `service`; best-effort.
    async fn event(&self, service: &Service, type_: Type, reason: &str, note: String);
}

/// Writes through a [`kube::Client`].
pub(crate) struct KubeWriter {
    client: kube::Client,
    field_manager: String,
    recorder: Recorder,
}

impl KubeWriter {
    pub(crate) fn new(client: kube::Client, field_manager: String, controller: String) -> Self {
        Self {
            recorder: Recorder::new(client.clone(), controller),
            client,
            field_manager,
        }
    }

    fn services(&self, service: &Service) -> Api<Service> {
        Api::namespaced(
            self.client.clone(),
            &service.namespace().unwrap_or_default(),
        )
    }

    fn params(&self) -> PatchParams {
        PatchParams {
            field_manager: Some(self.field_manager.clone()),
            ..PatchParams::default()
        }
    }
}

fn api_error(service: &Service, source: kube::Error) -> Error {
    Error::Api {
        object: format!(
            "service {}/{}",
            service.namespace().unwrap_or_default(),
            service.name_any()
        ),
        source,
    }
}

/// A merge patch setting the finalizer list with ours added, or `None` when it is
/// there already. Like the upstream controller, the whole list is written.
pub(crate) fn add_finalizer_patch(service: &Service) -> Option<Value> {
    let mut finalizers = service.finalizers().to_vec();
    if finalizers
        .iter()
        .any(|f| f == LOAD_BALANCER_CLEANUP_FINALIZER)
    {
        return None;
    }
    finalizers.push(LOAD_BALANCER_CLEANUP_FINALIZER.to_owned());
    Some(json!({ "metadata": { "finalizers": finalizers } }))
}

/// A merge patch setting the finalizer list without ours, or `None` when it is
/// absent.
pub(crate) fn remove_finalizer_patch(service: &Service) -> Option<Value> {
    let finalizers = service.finalizers();
    if !finalizers
        .iter()
        .any(|f| f == LOAD_BALANCER_CLEANUP_FINALIZER)
    {
        return None;
    }
    let rest: Vec<&String> = finalizers
        .iter()
        .filter(|f| *f != LOAD_BALANCER_CLEANUP_FINALIZER)
        .collect();
    Some(json!({ "metadata": { "finalizers": rest } }))
}

#[async_trait]
impl Writer for KubeWriter {
    async fn add_finalizer(&self, service: &Service) -> Result<(), Error> {
        let Some(patch) = add_finalizer_patch(service) else {
            return Ok(());
        };
        self.services(service)
            .patch(&service.name_any(), &self.params(), &Patch::Merge(&patch))
            .await
            .map(drop)
            .map_err(|source| api_error(service, source))
    }

    async fn remove_finalizer(&self, service: &Service) -> Result<(), Error> {
        let Some(patch) = remove_finalizer_patch(service) else {
            return Ok(());
        };
        match self
            .services(service)
            .patch(&service.name_any(), &self.params(), &Patch::Merge(&patch))
            .await
        {
            Ok(_) => Ok(()),
            // Gone already: the finalizer went with it.
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(source) => Err(api_error(service, source)),
        }
    }

    async fn patch_status(
        &self,
        service: &Service,
        ingress: Option<Vec<k8s_openapi::api::core::v1::LoadBalancerIngress>>,
    ) -> Result<(), Error> {
        let ingress = match ingress {
            Some(ingress) => serde_json::to_value(ingress).map_err(Error::Encode)?,
            None => Value::Null,
        };
        rancher_runtime::status::patch_status(
            &self.services(service),
            &service.name_any(),
            &self.field_manager,
            json!({ "loadBalancer": { "ingress": ingress } }),
        )
        .await
        .map(drop)
        .map_err(Error::Status)
    }

    async fn patch_node(&self, node: &str, patch: Value) -> Result<(), Error> {
        Api::<Node>::all(self.client.clone())
            .patch(node, &self.params(), &Patch::Merge(&patch))
            .await
            .map(drop)
            .map_err(|source| Error::Api {
                object: format!("node {node}"),
                source,
            })
    }

    async fn patch_node_addresses(
        &self,
        node: &str,
        addresses: Vec<NodeAddress>,
    ) -> Result<(), Error> {
        rancher_runtime::status::patch_status(
            &Api::<Node>::all(self.client.clone()),
            node,
            &self.field_manager,
            json!({ "addresses": addresses }),
        )
        .await
        .map(drop)
        .map_err(Error::Status)
    }

    async fn event(&self, service: &Service, type_: Type, reason: &str, note: String) {
        self.recorder
            .publish(service, type_, reason, "Sync", note)
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Method, Request, Response, StatusCode};
    use k8s_openapi::api::core::v1::LoadBalancerIngress;
    use kube::{api::ObjectMeta, client::Body};
    use tower_test::mock::Handle;

    type ApiHandle = Handle<Request<Body>, Response<Body>>;

    fn writer() -> (KubeWriter, ApiHandle) {
        let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = kube::Client::new(service, "default");
        (
            KubeWriter::new(client, "test-manager".into(), "example.org/test".into()),
            handle,
        )
    }

    fn service(finalizers: &[&str]) -> Service {
        Service {
            metadata: ObjectMeta {
                namespace: Some("shop".into()),
                name: Some("web".into()),
                uid: Some("u-1".into()),
                finalizers: Some(finalizers.iter().map(|f| (*f).to_owned()).collect()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    /// Answers the next request with `service` and returns (method, path, content
    /// type, body).
    async fn next(handle: &mut ApiHandle, status: StatusCode) -> (Method, String, String, Value) {
        let (request, send) = handle.next_request().await.expect("a request");
        let method = request.method().clone();
        let path = request
            .uri()
            .path_and_query()
            .map(|p| p.to_string())
            .unwrap_or_default();
        let content_type = request
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body = request.into_body().collect_bytes().await.unwrap();
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let reply = if status == StatusCode::OK {
            serde_json::to_vec(&json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"namespace": "shop", "name": "web"}
            }))
        } else {
            serde_json::to_vec(&json!({
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "reason": "NotFound", "code": 404, "message": "services \"web\" not found"
            }))
        }
        .unwrap();
        send.send_response(
            Response::builder()
                .status(status)
                .header("content-type", "application/json")
                .body(Body::from(reply))
                .unwrap(),
        );
        (method, path, content_type, body)
    }

    #[tokio::test]
    async fn finalizer_patches_keep_other_finalizers() {
        let (writer, mut handle) = writer();
        let svc = service(&["example.org/keep"]);
        let (result, (method, path, content_type, body)) = tokio::join!(
            writer.add_finalizer(&svc),
            next(&mut handle, StatusCode::OK)
        );
        result.unwrap();
        assert_eq!(method, Method::PATCH);
        assert_eq!(
            path,
            "/api/v1/namespaces/shop/services/web?&fieldManager=test-manager"
        );
        assert_eq!(content_type, "application/merge-patch+json");
        assert_eq!(
            body,
            json!({"metadata": {"finalizers": ["example.org/keep", LOAD_BALANCER_CLEANUP_FINALIZER]}})
        );

        let svc = service(&["example.org/keep", LOAD_BALANCER_CLEANUP_FINALIZER]);
        let (result, (_, _, _, body)) = tokio::join!(
            writer.remove_finalizer(&svc),
            next(&mut handle, StatusCode::NOT_FOUND)
        );
        result.expect("a Service that is gone has lost its finalizer");
        assert_eq!(
            body,
            json!({"metadata": {"finalizers": ["example.org/keep"]}})
        );
        // Nothing to do: no request at all.
        writer.add_finalizer(&svc).await.unwrap();
        writer.remove_finalizer(&service(&[])).await.unwrap();
    }

    #[tokio::test]
    async fn status_goes_to_the_subresource_and_null_clears_it() {
        let (writer, mut handle) = writer();
        let svc = service(&[]);
        let ingress = vec![LoadBalancerIngress {
            ip: Some("192.0.2.10".into()),
            ip_mode: Some("Proxy".into()),
            ..Default::default()
        }];
        let (result, (method, path, _, body)) = tokio::join!(
            writer.patch_status(&svc, Some(ingress)),
            next(&mut handle, StatusCode::OK)
        );
        result.unwrap();
        assert_eq!(method, Method::PATCH);
        assert!(
            path.starts_with("/api/v1/namespaces/shop/services/web/status?"),
            "{path}"
        );
        assert_eq!(
            body,
            json!({"status": {"loadBalancer": {"ingress": [{"ip": "192.0.2.10", "ipMode": "Proxy"}]}}})
        );
        let (result, (_, _, _, body)) = tokio::join!(
            writer.patch_status(&svc, None),
            next(&mut handle, StatusCode::OK)
        );
        result.unwrap();
        assert_eq!(body, json!({"status": {"loadBalancer": {"ingress": null}}}));
    }
}
