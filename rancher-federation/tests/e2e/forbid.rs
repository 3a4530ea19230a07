//! A proxy in front of a sandbox cluster that refuses to create namespaces,
//! as RBAC does for credentials without `create` on `namespaces`.

use http_body_util::{BodyExt, Full, combinators::BoxBody};
use hyper::{
    Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header,
};
use hyper_util::{
    client::legacy::{Client, connect::HttpConnector},
    rt::{TokioExecutor, TokioIo},
};
use tokio::net::TcpListener;

type Body = BoxBody<Bytes, hyper::Error>;

/// What kube-apiserver answers when RBAC refuses the create.
fn forbidden() -> Response<Body> {
    let status = serde_json::json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": "namespaces is forbidden: User \"federation\" cannot create resource \"namespaces\" in API group \"\" at the cluster scope",
        "reason": "Forbidden", "details": {"kind": "namespaces"}, "code": 403,
    });
    let mut response = Response::new(
        Full::new(Bytes::from(status.to_string()))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = StatusCode::FORBIDDEN;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    response
}

/// Starts the proxy in front of `upstream` (e.g. `http://127.0.0.1:6443`);
/// returns its URL. It runs until the test's runtime ends.
pub(crate) async fn namespace_creation_refused(upstream: String) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build_http();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (client, upstream) = (client.clone(), upstream.clone());
            let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                let (client, upstream) = (client.clone(), upstream.clone());
                async move {
                    if req.method() == hyper::Method::POST
                        && req.uri().path() == "/api/v1/namespaces"
                    {
                        return Ok::<_, hyper::Error>(forbidden());
                    }
                    let path = req
                        .uri()
                        .path_and_query()
                        .map_or("/", |p| p.as_str())
                        .to_owned();
                    *req.uri_mut() = format!("{upstream}{path}").parse().expect("uri");
                    req.headers_mut().remove(header::HOST);
                    Ok(match client.request(req).await {
                        Ok(resp) => resp.map(BodyExt::boxed),
                        Err(_) => {
                            let mut resp = forbidden();
                            *resp.status_mut() = StatusCode::BAD_GATEWAY;
                            resp
                        }
                    })
                }
            });
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    url
}
