//! A minimal OpenAPI v3 surface: `/openapi/v3` and one document per group/version that
//! lists each kind's PATCH operation with its `x-kubernetes-group-version-kind` and the
//! `fieldValidation` parameter. That is what `kubectl` reads to learn that the server
//! validates fields itself; with it, `kubectl apply`/`create`/`replace` work without
//! `--validate=false`. No schemas are published (`kubectl explain` does not work).
//!
//! `/openapi/v2` is an empty document: older kubectl (such as Debian's 1.20) downloads it
//! for client-side validation and skips kinds it has no schema for.

use serde_json::{Map, Value, json};

use crate::resource::Registry;

/// The protobuf media type of the OpenAPI v2 document.
const OPENAPI_V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// `/openapi/v2`: empty, as protobuf (an empty message) or JSON, whichever was asked for.
pub(crate) fn v2(req: &axum::extract::Request) -> axum::response::Response {
    let accept = req
        .headers()
        .get(http::header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let (content_type, body) = if accept.contains("protobuf") {
        (OPENAPI_V2_PROTOBUF, Vec::new())
    } else {
        let doc = json!({"swagger": "2.0", "info": {"title": "Kubernetes", "version": crate::discovery::version()["gitVersion"]}, "paths": {}});
        (
            "application/json",
            serde_json::to_vec(&doc).unwrap_or_default(),
        )
    };
    let mut resp = axum::response::Response::new(axum::body::Body::from(body));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    resp
}

fn gv_key(group: &str, version: &str) -> String {
    if group.is_empty() {
        format!("api/{version}")
    } else {
        format!("apis/{group}/{version}")
    }
}

/// `/openapi/v3`: the index of group/version documents.
pub(crate) fn index(reg: &Registry) -> Value {
    let mut paths = Map::new();
    for t in reg.types() {
        let key = gv_key(&t.group, &t.version);
        let url = format!("/openapi/v3/{key}?hash={}", reg.types().len());
        paths.insert(key, json!({"serverRelativeURL": url}));
    }
    json!({"paths": paths})
}

/// `/openapi/v3/<api/v1 | apis/group/version>`, if served.
pub(crate) fn group_version(reg: &Registry, group: &str, version: &str) -> Option<Value> {
    if !reg.has_group_version(group, version) {
        return None;
    }
    let prefix = if group.is_empty() {
        format!("/api/{version}")
    } else {
        format!("/apis/{group}/{version}")
    };
    let mut paths = Map::new();
    for t in reg
        .types()
        .iter()
        .filter(|t| t.group == group && t.version == version)
    {
        let base = if t.namespaced {
            format!("{prefix}/namespaces/{{namespace}}/{}/{{name}}", t.plural)
        } else {
            format!("{prefix}/{}/{{name}}", t.plural)
        };
        let op = json!({
            "patch": {
                "operationId": format!("patch{}", t.kind),
                "x-kubernetes-action": "patch",
                "x-kubernetes-group-version-kind": {"group": t.group, "version": t.version, "kind": t.kind},
                "parameters": [
                    {"name": "fieldValidation", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                    {"name": "fieldManager", "in": "query", "schema": {"type": "string", "uniqueItems": true}},
                    {"name": "force", "in": "query", "schema": {"type": "boolean", "uniqueItems": true}},
                ],
                "responses": {"200": {"description": "OK"}},
            }
        });
        paths.insert(base.clone(), op.clone());
        if t.status {
            paths.insert(format!("{base}/status"), op);
        }
    }
    Some(json!({
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": crate::discovery::version()["gitVersion"]},
        "paths": paths,
        "components": {"schemas": {}},
    }))
}
