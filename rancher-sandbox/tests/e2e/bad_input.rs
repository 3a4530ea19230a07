//! Bad requests get `Status` errors with the right code and reason; nothing panics and no
//! stored object changes. Raw HTTP, so the bytes are exactly what a broken client sends.

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, PostParams};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Sends one HTTP/1.1 request and returns (status code, parsed JSON body).
async fn send(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
) -> (u16, Value) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    // The server may answer (413) before reading everything; ignore write errors then.
    let _ = stream.write_all(body).await;
    let mut raw = Vec::new();
    let _ = stream.read_to_end(&mut raw).await;
    let text = String::from_utf8_lossy(&raw);
    let code: u16 = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_default();
    (code, serde_json::from_str(body).unwrap_or(Value::Null))
}

fn assert_status(got: &(u16, Value), code: u16, reason: &str) {
    assert_eq!(got.0, code, "{:?}", got.1);
    assert_eq!(got.1["kind"], "Status", "{:?}", got.1);
    assert_eq!(got.1["status"], "Failure");
    assert_eq!(got.1["code"], code);
    assert_eq!(got.1["reason"], reason, "{:?}", got.1);
    assert!(got.1["message"].as_str().is_some_and(|m| !m.is_empty()));
}

#[tokio::test]
async fn bad_requests_get_status_errors_and_change_nothing() {
    let sb = super::sandbox().await;
    let addr = sb.addr();
    let api: Api<ConfigMap> = Api::namespaced(sb.client(), "default");
    let cm: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "keep"}, "data": {"k": "v"}})).unwrap();
    let original = api.create(&PostParams::default(), &cm).await.unwrap();
    let collection = "/api/v1/namespaces/default/configmaps";
    let item = "/api/v1/namespaces/default/configmaps/keep";
    let json = "application/json";

    assert_status(
        &send(
            addr,
            "POST",
            collection,
            json,
            b"{\"metadata\": {\"name\": ",
        )
        .await,
        400,
        "BadRequest",
    );
    assert_status(
        &send(
            addr,
            "POST",
            collection,
            "application/yaml",
            b"metadata: [unclosed",
        )
        .await,
        400,
        "BadRequest",
    );
    assert_status(
        &send(addr, "POST", collection, json, b"[1, 2, 3]").await,
        400,
        "BadRequest",
    );
    assert_status(
        &send(addr, "POST", collection, json, &[0xff, 0xfe, 0x00]).await,
        400,
        "BadRequest",
    );
    assert_status(
        &send(
            addr,
            "POST",
            collection,
            json,
            br#"{"apiVersion": "apps/v1", "kind": "ConfigMap", "metadata": {"name": "x"}}"#,
        )
        .await,
        400,
        "BadRequest",
    );
    assert_status(
        &send(
            addr,
            "POST",
            collection,
            json,
            br#"{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}}"#,
        )
        .await,
        400,
        "BadRequest",
    );
    assert_status(
        &send(
            addr,
            "POST",
            collection,
            json,
            br#"{"metadata": {"name": "x", "labels": {"bad key!": "v"}}}"#,
        )
        .await,
        422,
        "Invalid",
    );
    assert_status(
        &send(
            addr,
            "POST",
            collection,
            "application/vnd.kubernetes.protobuf",
            b"k8s\0",
        )
        .await,
        415,
        "UnsupportedMediaType",
    );
    assert_status(
        &send(
            addr,
            "GET",
            "/apis/example.org/v1/namespaces/default/widgets",
            json,
            b"",
        )
        .await,
        404,
        "NotFound",
    );
    assert_status(
        &send(
            addr,
            "GET",
            "/api/v1/namespaces/default/gizmos/x",
            json,
            b"",
        )
        .await,
        404,
        "NotFound",
    );
    assert_status(
        &send(
            addr,
            "GET",
            &format!("{collection}?labelSelector=a%20in%20b"),
            json,
            b"",
        )
        .await,
        400,
        "BadRequest",
    );
    assert_status(
        &send(
            addr,
            "GET",
            &format!("{collection}?fieldSelector=data.k%3Dv"),
            json,
            b"",
        )
        .await,
        400,
        "BadRequest",
    );
    assert_status(
        &send(addr, "GET", &format!("{collection}?limit=-1"), json, b"").await,
        400,
        "BadRequest",
    );
    assert_status(
        &send(
            addr,
            "GET",
            &format!("{collection}?watch=true&resourceVersion=abc"),
            json,
            b"",
        )
        .await,
        400,
        "BadRequest",
    );
    assert_status(
        &send(addr, "PUT", collection, json, b"{}").await,
        405,
        "MethodNotAllowed",
    );
    assert_status(
        &send(addr, "POST", item, json, b"{}").await,
        405,
        "MethodNotAllowed",
    );

    // Wrongly shaped fields are Invalid, not a crash.
    let pods = "/api/v1/namespaces/default/pods";
    let pod = br#"{"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a", "image": "x", "ports": [5, "80"]}, 7]}}"#;
    assert_status(&send(addr, "POST", pods, json, pod).await, 422, "Invalid");
    let services = "/api/v1/namespaces/default/services";
    assert_status(
        &send(
            addr,
            "POST",
            services,
            json,
            br#"{"metadata": {"name": "s"}, "spec": "ClusterIP"}"#,
        )
        .await,
        422,
        "Invalid",
    );
    assert_status(
        &send(
            addr,
            "POST",
            services,
            json,
            br#"{"metadata": {"name": "s"}, "spec": {"ports": [80]}}"#,
        )
        .await,
        422,
        "Invalid",
    );
    let slices = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices";
    assert_status(
        &send(
            addr,
            "POST",
            slices,
            json,
            br#"{"metadata": {"name": "e"}, "addressType": "IPv4", "ports": [1]}"#,
        )
        .await,
        422,
        "Invalid",
    );
    assert_status(
        &send(
            addr,
            "PATCH",
            &format!("{item}?fieldManager=x"),
            "application/apply-patch+yaml",
            b"apiVersion: v1\nkind: ConfigMap\nmetadata: keep\n",
        )
        .await,
        400,
        "BadRequest",
    );
    assert_status(
        &send(
            addr,
            "POST",
            "/api/v1/namespaces",
            "application/vnd.kubernetes.protobuf",
            b"k8s\0\x0a\x02\x0a",
        )
        .await,
        415,
        "UnsupportedMediaType",
    );

    // Oversized bodies: 413.
    let big = format!(
        r#"{{"metadata": {{"name": "big"}}, "data": {{"k": "{}"}}}}"#,
        "x".repeat(rancher_sandbox::MAX_BODY_BYTES)
    );
    assert_status(
        &send(addr, "POST", collection, json, big.as_bytes()).await,
        413,
        "RequestEntityTooLarge",
    );

    // Patches that do not apply, or are not patches.
    let merge = "application/merge-patch+json";
    assert_status(
        &send(addr, "PATCH", item, merge, b"not json").await,
        400,
        "BadRequest",
    );
    assert_status(
        &send(addr, "PATCH", item, merge, b"[]").await,
        400,
        "BadRequest",
    );
    assert_status(
        &send(
            addr,
            "PATCH",
            item,
            "application/json-patch+json",
            br#"[{"op": "remove", "path": "/data/missing"}]"#,
        )
        .await,
        422,
        "Invalid",
    );
    assert_status(
        &send(
            addr,
            "PATCH",
            item,
            "application/json-patch+json",
            br#"[{"op": "explode", "path": "/data"}]"#,
        )
        .await,
        422,
        "Invalid",
    );
    assert_status(
        &send(
            addr,
            "PATCH",
            item,
            "application/json-patch+json",
            br#"{"op": "add"}"#,
        )
        .await,
        422,
        "Invalid",
    );
    assert_status(
        &send(
            addr,
            "PATCH",
            item,
            "application/strategic-merge-patch+json",
            br#"{"metadata": {"finalizers": [{"$patch": "bogus"}]}}"#,
        )
        .await,
        422,
        "Invalid",
    );
    assert_status(
        &send(
            addr,
            "PATCH",
            item,
            merge,
            br#"{"metadata": {"name": "renamed"}}"#,
        )
        .await,
        422,
        "Invalid",
    );
    assert_status(
        &send(
            addr,
            "PATCH",
            item,
            merge,
            br#"{"metadata": {"resourceVersion": "1"}, "data": {"k": "stale"}}"#,
        )
        .await,
        409,
        "Conflict",
    );
    assert_status(
        &send(addr, "PATCH", item, "text/plain", b"{}").await,
        415,
        "UnsupportedMediaType",
    );
    assert_status(
        &send(
            addr,
            "PATCH",
            &format!("{item}?fieldManager=x"),
            "application/apply-patch+yaml",
            b"data: {k: v}",
        )
        .await,
        400,
        "BadRequest",
    );
    assert_status(
        &send(
            addr,
            "PUT",
            item,
            json,
            br#"{"metadata": {"name": "other"}}"#,
        )
        .await,
        400,
        "BadRequest",
    );

    // The object is untouched and the server still serves.
    let after = api.get("keep").await.unwrap();
    assert_eq!(
        after.metadata.resource_version,
        original.metadata.resource_version
    );
    assert_eq!(after.data, original.data);
    assert_eq!(api.list(&Default::default()).await.unwrap().items.len(), 1);
}
