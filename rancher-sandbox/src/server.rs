//! The HTTP front: request routing, body decoding, content negotiation and responses.

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Query, Request, State as AxumState};
use axum::response::Response;
use futures::FutureExt as _;
use http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use serde::Serialize;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::convert;
use crate::discovery;
use crate::managed::Writer;
use crate::openapi;
use crate::resource::{NameRule, ResourceType};
use crate::selector::{FieldSelector, LabelSelector};
use crate::status::{ApiError, ApiResult};
use crate::store::{
    Deleted, ListOptions, Obj, Part, PatchType, Propagation, State, Store, WatchFrom, dry_run,
};
use crate::table::{self, IncludeObject};
use crate::watch::{self, WatchParams};

/// The largest request body accepted, as kube-apiserver's default (3 MiB).
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;

/// Per-cluster state shared by all requests.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) store: Store,
    pub(crate) addr: String,
    pub(crate) bookmark_interval: Duration,
    pub(crate) shutdown: CancellationToken,
    /// The logs of the containers the sandbox nodes run.
    pub(crate) logs: Arc<crate::workloads::node::logs::PodLogs>,
    /// Authentication and authorization, when configured.
    pub(crate) access: Option<Arc<crate::access::Gate>>,
    /// Test hooks: listener stops and watch stalls.
    pub(crate) faults: crate::faults::Faults,
}

/// How objects are rendered, from the `Accept` header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Output {
    Full,
    Metadata,
    Table(IncludeObject),
}

fn output_for(headers: &HeaderMap, query: &HashMap<String, String>) -> Output {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if accept.contains("as=Table") {
        Output::Table(IncludeObject::parse(
            query.get("includeObject").map(String::as_str),
        ))
    } else if accept.contains("as=PartialObjectMetadata") {
        Output::Metadata
    } else {
        Output::Full
    }
}

fn json_response(code: StatusCode, body: &impl Serialize) -> Response {
    let bytes = serde_json::to_vec(body).unwrap_or_default();
    let mut resp = Response::new(Body::from(bytes));
    *resp.status_mut() = code;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn error_response(e: &ApiError) -> Response {
    json_response(
        StatusCode::from_u16(e.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &e.to_status(),
    )
}

/// The router for one cluster.
pub(crate) fn router(shared: Arc<Shared>) -> axum::Router {
    axum::Router::new().fallback(handle).with_state(shared)
}

async fn handle(AxumState(shared): AxumState<Arc<Shared>>, req: Request) -> Response {
    let req = match crate::access::admit(shared.access.as_deref(), req).await {
        crate::access::Admission::Pass(req) => req,
        crate::access::Admission::Answer(response) => return response,
    };
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    tracing::debug!(%method, %path, query = req.uri().query().unwrap_or_default(), "request");
    // A bug must not take the server down: a panic becomes a 500 Status.
    let result = std::panic::AssertUnwindSafe(route(&shared, req))
        .catch_unwind()
        .await
        .unwrap_or_else(|_| {
            tracing::error!(%method, %path, "request handler panicked");
            Err(ApiError::internal(
                "the sandbox failed to handle the request",
            ))
        });
    match result {
        Ok(resp) => resp,
        Err(e) => {
            tracing::debug!(%method, %path, error = %e, "request failed");
            error_response(&e)
        }
    }
}

/// A parsed resource request path.
struct Target {
    rt: Arc<ResourceType>,
    namespace: Option<String>,
    name: Option<String>,
    part: Part,
}

async fn route(shared: &Arc<Shared>, req: Request) -> ApiResult<Response> {
    let path = req.uri().path().to_string();
    let segs: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    let get = req.method() == Method::GET;
    let ok = |v: Value| Ok(json_response(StatusCode::OK, &v));
    match segs.as_slice() {
        [] if get => ok(
            json!({"paths": ["/api", "/api/v1", "/apis", "/healthz", "/livez", "/readyz", "/version"]}),
        ),
        ["version"] if get => ok(discovery::version()),
        ["healthz" | "livez" | "readyz", ..] if get => {
            let mut resp = Response::new(Body::from("ok"));
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            Ok(resp)
        }
        ["api"] if get => ok(discovery::core_versions(&shared.addr)),
        ["apis"] if get => {
            let state = shared.store.lock();
            ok(discovery::groups(&state.registry))
        }
        ["apis", group] if get => {
            let state = shared.store.lock();
            discovery::group(&state.registry, group)
                .map_or_else(|| Err(ApiError::no_route(&path)), ok)
        }
        ["api", "v1"] if get => {
            let state = shared.store.lock();
            discovery::resources(&state.registry, "", "v1")
                .map_or_else(|| Err(ApiError::no_route(&path)), ok)
        }
        ["apis", group, version] if get => {
            let state = shared.store.lock();
            discovery::resources(&state.registry, group, version)
                .map_or_else(|| Err(ApiError::no_route(&path)), ok)
        }
        ["openapi", "v2"] if get => Ok(openapi::v2(&req)),
        ["openapi", "v3"] if get => {
            let state = shared.store.lock();
            ok(openapi::index(&state.registry))
        }
        ["openapi", "v3", "api", version] if get => {
            let state = shared.store.lock();
            openapi::group_version(&state.registry, "", version)
                .map_or_else(|| Err(ApiError::no_route(&path)), ok)
        }
        ["openapi", "v3", "apis", group, version] if get => {
            let state = shared.store.lock();
            openapi::group_version(&state.registry, group, version)
                .map_or_else(|| Err(ApiError::no_route(&path)), ok)
        }
        ["api", "v1", rest @ ..] => {
            resource(
                shared,
                req,
                "",
                "v1",
                rest.iter().map(|s| s.to_string()).collect(),
            )
            .await
        }
        ["apis", group, version, rest @ ..] => {
            let (g, v) = (group.to_string(), version.to_string());
            resource(
                shared,
                req,
                &g,
                &v,
                rest.iter().map(|s| s.to_string()).collect(),
            )
            .await
        }
        _ if !get && matches!(segs.first(), Some(&"api" | &"apis" | &"version")) => {
            Err(ApiError::method_not_allowed(format!(
                "the server does not allow this method on the requested resource (path {path})"
            )))
        }
        _ => Err(ApiError::no_route(&path)),
    }
}

fn parse_target(
    state: &State,
    group: &str,
    version: &str,
    mut rest: Vec<String>,
    path: &str,
) -> ApiResult<(Target, bool)> {
    let mut legacy_watch = false;
    if rest.first().is_some_and(|s| s == "watch") {
        legacy_watch = true;
        rest.remove(0);
    }
    let not_found = || ApiError::no_route(path);
    let (namespace, plural, name, sub) = if rest.len() >= 3
        && rest[0] == "namespaces"
        && state
            .find_type(group, version, &rest[2])
            .is_some_and(|t| t.namespaced)
    {
        (
            Some(rest[1].clone()),
            rest[2].clone(),
            rest.get(3).cloned(),
            rest.get(4).cloned(),
        )
    } else if !rest.is_empty() && rest.len() <= 3 {
        (
            None,
            rest[0].clone(),
            rest.get(1).cloned(),
            rest.get(2).cloned(),
        )
    } else {
        return Err(not_found());
    };
    if rest.len() > 5 {
        return Err(not_found());
    }
    let rt = state
        .find_type(group, version, &plural)
        .ok_or_else(not_found)?;
    if rt.namespaced && namespace.is_none() && name.is_some() {
        return Err(not_found());
    }
    let part = match sub.as_deref() {
        None => Part::Main,
        Some("status") if rt.status => Part::Status,
        Some("scale") if rt.scale => Part::Scale,
        Some("log") if rt.group.is_empty() && rt.plural == "pods" => Part::Log,
        Some(_) => return Err(not_found()),
    };
    Ok((
        Target {
            rt,
            namespace,
            name,
            part,
        },
        legacy_watch,
    ))
}

async fn read_body(req: Request) -> ApiResult<(HeaderMap, Vec<u8>)> {
    let headers = req.headers().clone();
    if let Some(len) = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && len > MAX_BODY_BYTES
    {
        return Err(ApiError::too_large(MAX_BODY_BYTES));
    }
    let bytes = axum::body::to_bytes(req.into_body(), MAX_BODY_BYTES)
        .await
        .map_err(|e| {
            let too_large = std::error::Error::source(&e)
                .is_some_and(|s| s.to_string().contains("length limit"))
                || e.to_string().contains("length limit");
            if too_large {
                ApiError::too_large(MAX_BODY_BYTES)
            } else {
                ApiError::bad_request(format!("reading the request body failed: {e}"))
            }
        })?;
    Ok((headers, bytes.to_vec()))
}

fn content_type(headers: &HeaderMap) -> String {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/json")
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Decodes a JSON or YAML body into a value.
pub(crate) fn decode(body: &[u8], yaml: bool) -> ApiResult<Value> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty"));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v) => Ok(v),
        Err(json_err) if yaml => {
            let text = std::str::from_utf8(body)
                .map_err(|_| ApiError::bad_request("the YAML body is not UTF-8"))?;
            serde_saphyr::from_str::<Value>(text).map_err(|e| {
                ApiError::bad_request(format!("error decoding YAML: {e} (as JSON: {json_err})"))
            })
        }
        Err(e) => Err(ApiError::bad_request(format!(
            "error decoding the request body as JSON: {e}"
        ))),
    }
}

pub(crate) fn decode_object(headers: &HeaderMap, body: &[u8]) -> ApiResult<Value> {
    let ct = content_type(headers);
    match ct.as_str() {
        "application/json" | "" | "*/*" => decode(body, false),
        "application/yaml" | "application/x-yaml" | "text/yaml" => decode(body, true),
        crate::protobuf::MEDIA_TYPE => crate::protobuf::decode(body)
            .map_err(|e| ApiError::unsupported_media_type(&format!("{ct} ({e})"))),
        other => Err(ApiError::unsupported_media_type(other)),
    }
}

fn list_options(rt: &ResourceType, q: &HashMap<String, String>) -> ApiResult<ListOptions> {
    let labels = LabelSelector::parse(q.get("labelSelector").map_or("", String::as_str))?;
    let fields = FieldSelector::parse(
        q.get("fieldSelector").map_or("", String::as_str),
        |f| rt.field_label_supported(f),
        &rt.kind,
    )?;
    let limit = match q.get("limit").filter(|s| !s.is_empty()) {
        Some(l) => Some(l.parse::<usize>().map_err(|_| {
            ApiError::bad_request(format!(
                "invalid limit {l:?}: must be a non-negative integer"
            ))
        })?),
        None => None,
    };
    Ok(ListOptions {
        labels,
        fields,
        limit,
        continue_token: q.get("continue").cloned(),
    })
}

fn flag(q: &HashMap<String, String>, name: &str) -> bool {
    q.get(name).is_some_and(|v| v == "true" || v == "1")
}

#[derive(Serialize)]
struct ListBody<'a> {
    kind: String,
    #[serde(rename = "apiVersion")]
    api_version: String,
    metadata: Value,
    items: Vec<Cow<'a, Value>>,
}

/// A full list, assembled from the objects' shared encodings where possible.
fn list_response(rt: &ResourceType, meta: &Value, items: &[Arc<Obj>]) -> Response {
    let mut buf: Vec<u8> =
        Vec::with_capacity(items.iter().map(|o| o.json().len() + 1).sum::<usize>() + 256);
    buf.extend_from_slice(b"{\"kind\":");
    buf.extend_from_slice(&serde_json::to_vec(&format!("{}List", rt.kind)).unwrap_or_default());
    buf.extend_from_slice(b",\"apiVersion\":");
    buf.extend_from_slice(&serde_json::to_vec(&rt.api_version()).unwrap_or_default());
    buf.extend_from_slice(b",\"metadata\":");
    buf.extend_from_slice(&serde_json::to_vec(meta).unwrap_or_default());
    buf.extend_from_slice(b",\"items\":[");
    for (i, o) in items.iter().enumerate() {
        if i > 0 {
            buf.push(b',');
        }
        if convert::served_as_stored(rt, o) {
            buf.extend_from_slice(o.json());
        } else {
            buf.extend_from_slice(
                &serde_json::to_vec(&convert::present(rt, o)).unwrap_or_default(),
            );
        }
    }
    buf.extend_from_slice(b"]}");
    let mut resp = Response::new(Body::from(buf));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// The `propagationPolicy` (or legacy `orphanDependents`) of a DELETE, from its body
/// or its query.
fn propagation(opts: &Value, query: &HashMap<String, String>) -> ApiResult<Propagation> {
    let policy = opts["propagationPolicy"]
        .as_str()
        .or_else(|| query.get("propagationPolicy").map(String::as_str));
    let orphan = opts["orphanDependents"]
        .as_bool()
        .or_else(|| query.get("orphanDependents").map(|v| v == "true"));
    match (policy, orphan) {
        (Some(_), Some(_)) => Err(ApiError::invalid(
            "DeleteOptions",
            "meta.k8s.io",
            "",
            &["propagationPolicy: Invalid value: orphanDependents and propagationPolicy cannot be both set".to_string()],
        )),
        (Some("Foreground"), None) => Ok(Propagation::Foreground),
        (Some("Orphan"), None) | (None, Some(true)) => Ok(Propagation::Orphan),
        (Some("Background") | None, None) | (None, Some(false)) => Ok(Propagation::Background),
        (Some(other), None) => Err(ApiError::invalid(
            "DeleteOptions",
            "meta.k8s.io",
            "",
            &[format!("propagationPolicy: Unsupported value: {other:?}: supported values: \"Foreground\", \"Background\", \"Orphan\"")],
        )),
    }
}

async fn resource(
    shared: &Arc<Shared>,
    req: Request,
    group: &str,
    version: &str,
    rest: Vec<String>,
) -> ApiResult<Response> {
    let path = req.uri().path().to_string();
    let query: HashMap<String, String> = Query::try_from_uri(req.uri())
        .map(|Query(q)| q)
        .unwrap_or_default();
    let method = req.method().clone();
    let writer = Writer::from_request(
        query.get("fieldManager").map(String::as_str),
        req.headers()
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok()),
    );
    let (target, legacy_watch) = {
        let state = shared.store.lock();
        parse_target(&state, group, version, rest, &path)?
    };
    let dry = dry_run::requested(query.get("dryRun").map(String::as_str), &Value::Null)?;
    let Target {
        rt,
        namespace,
        name,
        part,
    } = target;
    let ns = namespace.clone().unwrap_or_default();
    let output = output_for(req.headers(), &query);
    let ok = |code: StatusCode, obj: &Value| respond(&rt, output, code, obj);
    // What a write answers with: the object written, or what a dry run would have written.
    let shown = |dry: bool, previous: Option<Arc<Obj>>, written: Arc<Obj>| {
        if dry {
            Obj::new(dry_run::answer(
                previous.as_deref().map(|p| &p.value),
                &written,
            ))
        } else {
            written
        }
    };
    if part == Part::Log {
        if method != Method::GET {
            return Err(ApiError::method_not_allowed(format!(
                "the server does not allow {method} on {path}"
            )));
        }
        let pod = shared
            .store
            .lock()
            .get(&rt, &ns, name.as_deref().unwrap_or_default())?;
        return crate::workloads::node::logs::serve(
            &shared.logs,
            &pod,
            &query,
            shared.shutdown.clone(),
        );
    }
    if part == Part::Scale {
        let target = (ns.as_str(), name.unwrap_or_default());
        return scale(shared, req, (&rt, target), &writer, dry).await;
    }
    match (method.clone(), name.as_deref()) {
        (Method::GET, Some(name)) => {
            let obj = shared.store.lock().get(&rt, &ns, name)?;
            ok(StatusCode::OK, &obj)
        }
        (Method::GET, None) => list_or_watch(shared, &rt, namespace, &query, output, legacy_watch),
        (Method::POST, None) => {
            if rt.namespaced && namespace.is_none() {
                return Err(ApiError::method_not_allowed(format!(
                    "{} must be created in a namespace",
                    rt.qualified()
                )));
            }
            let (headers, body) = read_body(req).await?;
            let obj = decode_object(&headers, &body)?;
            let created = write(shared, dry, |s| s.create(&rt, &ns, obj, &writer))?;
            ok(StatusCode::CREATED, &shown(dry, None, created))
        }
        (Method::PUT, Some(name)) => {
            let (headers, body) = read_body(req).await?;
            let obj = decode_object(&headers, &body)?;
            let previous = shared.store.lock().get(&rt, &ns, name).ok();
            let updated = write(shared, dry, |s| {
                s.update(&rt, &ns, name, obj, part, &writer)
            })?;
            ok(
                if previous.is_some() {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                },
                &shown(dry, previous, updated),
            )
        }
        (Method::PATCH, Some(name)) => {
            let (headers, body) = read_body(req).await?;
            let ct = content_type(&headers);
            let kind = patch_type(&ct, &rt)?;
            let patch = decode(&body, kind == PatchType::Apply)?;
            let previous = shared.store.lock().get(&rt, &ns, name).ok();
            let force = flag(&query, "force");
            let patched = write(shared, dry, |s| {
                s.patch(&rt, &ns, name, kind, patch, part, &writer, force)
            })?;
            ok(
                if previous.is_some() {
                    StatusCode::OK
                } else {
                    StatusCode::CREATED
                },
                &shown(dry, previous, patched),
            )
        }
        (Method::DELETE, Some(name)) => {
            let opts = delete_options(req).await?;
            let pre = &opts["preconditions"];
            let propagation = propagation(&opts, &query)?;
            let dry = dry || dry_run::requested(None, &opts)?;
            let previous = shared.store.lock().get(&rt, &ns, name).ok();
            let result = write(shared, dry, |s| {
                s.delete_propagating(
                    &rt,
                    &ns,
                    name,
                    (pre["resourceVersion"].as_str(), pre["uid"].as_str()),
                    propagation,
                )
            })?;
            match result {
                Deleted::Now(obj) if rt.group.is_empty() && rt.plural == "pods" => {
                    ok(StatusCode::OK, &shown(dry, previous, obj))
                }
                Deleted::Now(obj) => Ok(json_response(
                    StatusCode::OK,
                    &State::delete_status(&rt, &obj),
                )),
                Deleted::Pending(obj) => ok(StatusCode::OK, &shown(dry, previous, obj)),
            }
        }
        (Method::DELETE, None) => {
            let dry = dry || dry_run::requested(None, &delete_options(req).await?)?;
            let opts = list_options(&rt, &query)?;
            let deleted = write(shared, dry, |s| {
                s.delete_collection(&rt, namespace.as_deref(), &opts)
            })?;
            let rv = shared.store.lock().resource_version();
            let body = ListBody {
                kind: format!("{}List", rt.kind),
                api_version: rt.api_version(),
                metadata: json!({"resourceVersion": rv.to_string()}),
                items: deleted.iter().map(|o| convert::present(&rt, o)).collect(),
            };
            Ok(json_response(StatusCode::OK, &body))
        }
        (m, _) => Err(ApiError::method_not_allowed(format!(
            "the server does not allow {m} on {path}"
        ))),
    }
}

/// The `DeleteOptions` body of a DELETE (`null` when there is none).
async fn delete_options(req: Request) -> ApiResult<Value> {
    let (_, body) = read_body(req).await?;
    if body.iter().all(u8::is_ascii_whitespace) {
        Ok(Value::Null)
    } else {
        decode(&body, false)
    }
}

/// Runs `write` on the store, or for a dry run (`dry`) on a copy of it that is dropped
/// after: the write is checked as the real one would be and nothing changes.
fn write<T>(
    shared: &Shared,
    dry: bool,
    write: impl FnOnce(&mut State) -> ApiResult<T>,
) -> ApiResult<T> {
    if dry {
        let mut copy = shared.store.lock().dry_run_copy();
        write(&mut copy)
    } else {
        write(&mut shared.store.lock())
    }
}

/// An object in the representation asked for (full, metadata only, or a table row).
fn respond(
    rt: &ResourceType,
    output: Output,
    code: StatusCode,
    obj: &Value,
) -> ApiResult<Response> {
    let presented = convert::present(rt, obj);
    let body = match output {
        Output::Table(include) => {
            let rv = obj["metadata"]["resourceVersion"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            table::table(
                rt,
                [presented.as_ref()].into_iter(),
                rv,
                None,
                include,
                true,
            )
        }
        Output::Metadata => table::partial_metadata(&presented),
        Output::Full => presented.into_owned(),
    };
    Ok(json_response(code, &body))
}

/// The Scale subresource: GET, PUT, and the three patch types on it.
async fn scale(
    shared: &Arc<Shared>,
    req: Request,
    (rt, (ns, name)): (&Arc<ResourceType>, (&str, String)),
    writer: &Writer,
    dry: bool,
) -> ApiResult<Response> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    match method {
        Method::GET => {
            let obj = shared.store.lock().get(rt, ns, &name)?;
            Ok(json_response(StatusCode::OK, &State::scale_of(&obj)))
        }
        Method::PUT | Method::PATCH => {
            let (headers, body) = read_body(req).await?;
            let ct = content_type(&headers);
            let previous = shared.store.lock().get(rt, ns, &name).ok();
            let scale = write(shared, dry, |s| {
                s.scale(rt, ns, &name, writer, |current| {
                    match (method.as_str(), ct.as_str()) {
                        ("PUT", _) => decode_object(&headers, &body),
                        (_, "application/merge-patch+json") => {
                            Ok(crate::patch::merge_patch(&current, &decode(&body, false)?))
                        }
                        (_, "application/json-patch+json") => crate::patch::json_patch(
                            &current,
                            &decode(&body, false)?,
                        )
                        .map_err(|e| {
                            ApiError::invalid("Scale", "autoscaling", &name, &[e.to_string()])
                        }),
                        (_, "application/strategic-merge-patch+json") => {
                            crate::patch::strategic_merge_patch(&current, &decode(&body, false)?)
                                .map_err(|e| {
                                    ApiError::invalid(
                                        "Scale",
                                        "autoscaling",
                                        &name,
                                        &[e.to_string()],
                                    )
                                })
                        }
                        (_, other) => Err(ApiError::unsupported_media_type(other)),
                    }
                })
            })?;
            let scale = if dry {
                let before = previous.map(|p| State::scale_of(&p));
                dry_run::answer(before.as_ref(), &scale)
            } else {
                scale
            };
            Ok(json_response(StatusCode::OK, &scale))
        }
        m => Err(ApiError::method_not_allowed(format!(
            "the server does not allow {m} on {path}"
        ))),
    }
}

/// A collection's GET: a watch (`?watch=1` or the legacy `/watch/` path) or a list, in
/// the representation asked for.
fn list_or_watch(
    shared: &Arc<Shared>,
    rt: &Arc<ResourceType>,
    namespace: Option<String>,
    query: &HashMap<String, String>,
    output: Output,
    legacy_watch: bool,
) -> ApiResult<Response> {
    let opts = list_options(rt, query)?;
    if legacy_watch || flag(query, "watch") {
        let initial = flag(query, "sendInitialEvents");
        let from = match query.get("resourceVersion").map(String::as_str) {
            None | Some("" | "0") => WatchFrom::Current,
            Some(_) if initial => WatchFrom::Current,
            Some(v) => WatchFrom::Version(
                v.parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid resourceVersion {v:?}")))?,
            ),
        };
        let timeout = match query.get("timeoutSeconds").filter(|s| !s.is_empty()) {
            Some(t) => Some(Duration::from_secs(t.parse().map_err(|_| {
                ApiError::bad_request(format!("invalid timeoutSeconds {t:?}"))
            })?)),
            None => None,
        };
        let params = WatchParams {
            from,
            labels: opts.labels,
            fields: opts.fields,
            bookmarks: flag(query, "allowWatchBookmarks"),
            timeout,
            output,
            initial_events_end: initial,
        };
        let body = watch::start(shared, rt.clone(), namespace, params);
        let mut resp = Response::new(body);
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        resp.headers_mut().insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        return Ok(resp);
    }
    let page = shared.store.lock().list(rt, namespace.as_deref(), &opts)?;
    let mut meta = json!({"resourceVersion": page.resource_version.to_string()});
    if let Some(c) = &page.continue_token {
        meta["continue"] = json!(c);
    }
    if let Some(r) = page.remaining {
        meta["remainingItemCount"] = json!(r);
    }
    let items = page.items.iter().map(|o| convert::present(rt, o));
    match output {
        Output::Table(include) => {
            let presented: Vec<Cow<'_, Value>> = items.collect();
            let t = table::table(
                rt,
                presented.iter().map(AsRef::as_ref),
                page.resource_version,
                page.continue_token.as_deref(),
                include,
                true,
            );
            Ok(json_response(StatusCode::OK, &t))
        }
        Output::Metadata => {
            let body = ListBody {
                kind: "PartialObjectMetadataList".to_string(),
                api_version: "meta.k8s.io/v1".to_string(),
                metadata: meta,
                items: items
                    .map(|o| Cow::Owned(table::partial_metadata(&o)))
                    .collect(),
            };
            Ok(json_response(StatusCode::OK, &body))
        }
        Output::Full => Ok(list_response(rt, &meta, &page.items)),
    }
}

/// The patch type a PATCH's content type names.
fn patch_type(ct: &str, rt: &ResourceType) -> ApiResult<PatchType> {
    Ok(match ct {
        "application/merge-patch+json" => PatchType::Merge,
        "application/json-patch+json" => PatchType::Json,
        "application/strategic-merge-patch+json" => {
            if rt.names == NameRule::PathSegment {
                return Err(ApiError::unsupported_media_type(
                    "application/strategic-merge-patch+json (not supported for custom resources)",
                ));
            }
            PatchType::Strategic
        }
        "application/apply-patch+yaml" => PatchType::Apply,
        other => return Err(ApiError::unsupported_media_type(other)),
    })
}
