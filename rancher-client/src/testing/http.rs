//! The fake server's HTTP side: routes, authentication and fault injection.

use std::{
    convert::Infallible,
    sync::{Arc, Mutex, MutexGuard},
};

use axum::{
    Json, Router,
    body::{Body, Bytes},
    extract::{Path, Query, State},
    http::{HeaderMap, Method, Request, StatusCode, header},
    response::{IntoResponse, Response},
    routing::{any, get},
};
use base64::Engine;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::{
    RecordedRequest, access, kubernetes,
    store::{Kind, Outcome, Store, not_found},
};
use crate::{Credentials, error::ErrorBody};

/// State shared by the connection tasks and the test handle.
pub(crate) struct Shared {
    pub(crate) store: Mutex<Store>,
    pub(crate) faults: Mutex<super::faults::Faults>,
    pub(crate) requests: Mutex<Vec<RecordedRequest>>,
    pub(crate) credentials: Option<Credentials>,
    pub(crate) project_id: String,
    pub(crate) origin: String,
    /// User accounts with their own keys.
    pub(crate) accounts: Mutex<Vec<access::Account>>,
}

/// Locks a mutex, recovering from poisoning (a panicking test must not wedge the server).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Shared {
    /// The store, with due transitions applied.
    pub(crate) fn store(&self) -> MutexGuard<'_, Store> {
        let mut s = lock(&self.store);
        s.tick();
        s
    }

    /// Whether the request carries the accepted key: basic authentication on the API, a
    /// bearer token made from the key (as in Rancher's kubeconfig) on the Kubernetes proxy.
    fn authorized(&self, path: &str, headers: &HeaderMap) -> bool {
        let Some(expected) = &self.credentials else {
            return true;
        };
        let Some(value) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        if kubernetes::is_proxy_path(path) {
            let token = value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "));
            return token
                .and_then(crate::resource::credentials_from_kubernetes_token)
                .is_some_and(|c| {
                    c.access_key == expected.access_key
                        && c.secret_key.expose() == expected.secret_key.expose()
                });
        }
        let Some(encoded) = value
            .strip_prefix("Basic ")
            .or_else(|| value.strip_prefix("basic "))
        else {
            return false;
        };
        let Ok(decoded) = base64::engine::general_purpose::STANDARD.decode(encoded.trim()) else {
            return false;
        };
        let Ok(decoded) = String::from_utf8(decoded) else {
            return false;
        };
        decoded.split_once(':').is_some_and(|(user, pass)| {
            user == expected.access_key && pass == expected.secret_key.expose()
        })
    }
}

pub(crate) fn error_response(body: ErrorBody) -> Response {
    let status = StatusCode::from_u16(body.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(body)).into_response()
}

fn respond(outcome: Outcome) -> Response {
    match outcome {
        Ok(v) => Json(v).into_response(),
        Err(e) => error_response(e),
    }
}

fn kind_of(collection: &str) -> Result<Kind, Response> {
    Kind::from_collection(collection)
        .ok_or_else(|| error_response(not_found(format!("collection {collection}"))))
}

type AppState = State<Arc<Shared>>;

fn check_project(shared: &Shared, project: &str) -> Result<(), Response> {
    if project == shared.project_id {
        Ok(())
    } else {
        Err(error_response(not_found(format!("project {project}"))))
    }
}

fn parse_body(body: &Bytes) -> Result<Value, Response> {
    if body.is_empty() {
        return Ok(json!({}));
    }
    serde_json::from_slice(body).map_err(|e| {
        error_response(ErrorBody::new(
            422,
            "InvalidBodyContent",
            format!("the request body is not JSON: {e}"),
        ))
    })
}

async fn api_root(State(shared): AppState) -> Response {
    let projects = format!("{}/v2-beta/projects", shared.origin);
    Json(json!({
        "type": "apiVersion",
        "id": "v2-beta",
        "links": { "self": format!("{}/v2-beta", shared.origin), "projects": projects },
    }))
    .into_response()
}

async fn list_projects(
    State(shared): AppState,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let store = shared.store();
    let url = store.collection_url(Kind::Project);
    respond(store.list(Kind::Project, &query, None, &url))
}

async fn create_project(State(shared): AppState, body: Bytes) -> Response {
    let input = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match shared.store().create(Kind::Project, input) {
        Ok(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Err(e) => error_response(e),
    }
}

async fn project(State(shared): AppState, Path(project): Path<String>) -> Response {
    respond(shared.store().get(Kind::Project, &project))
}

async fn update_project(
    State(shared): AppState,
    Path(project): Path<String>,
    body: Bytes,
) -> Response {
    match parse_body(&body) {
        Ok(input) => respond(shared.store().update(Kind::Project, &project, input)),
        Err(r) => r,
    }
}

async fn delete_project(State(shared): AppState, Path(project): Path<String>) -> Response {
    respond(shared.store().action(
        Kind::Project,
        &project,
        crate::resource::action::REMOVE,
        json!({}),
    ))
}

async fn project_action(
    State(shared): AppState,
    Path(project): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    body: Bytes,
) -> Response {
    let input = match parse_body(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let Some((_, name)) = query.iter().find(|(k, _)| k == "action") else {
        return error_response(ErrorBody::new(
            405,
            "MethodNotAllowed",
            "POST on a resource needs ?action=<name>",
        ));
    };
    if name.eq_ignore_ascii_case("setmembers") {
        return respond(access::set_members(&mut shared.store(), &project, &input));
    }
    respond(shared.store().action(Kind::Project, &project, name, input))
}

async fn list(
    State(shared): AppState,
    Path((project, collection)): Path<(String, String)>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let kind = match check_project(&shared, &project).and_then(|()| kind_of(&collection)) {
        Ok(k) => k,
        Err(r) => return r,
    };
    let store = shared.store();
    let url = format!("{}/{}", store.base_url, kind.collection());
    respond(store.list(kind, &query, None, &url))
}

async fn create(
    State(shared): AppState,
    Path((project, collection)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    let (kind, input) = match check_project(&shared, &project)
        .and_then(|()| kind_of(&collection))
        .and_then(|k| parse_body(&body).map(|b| (k, b)))
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    match shared.store().create(kind, input) {
        Ok(v) => (StatusCode::CREATED, Json(v)).into_response(),
        Err(e) => error_response(e),
    }
}

async fn get_one(
    State(shared): AppState,
    Path((project, collection, id)): Path<(String, String, String)>,
) -> Response {
    let kind = match check_project(&shared, &project).and_then(|()| kind_of(&collection)) {
        Ok(k) => k,
        Err(r) => return r,
    };
    respond(shared.store().get(kind, &id))
}

async fn update(
    State(shared): AppState,
    Path((project, collection, id)): Path<(String, String, String)>,
    body: Bytes,
) -> Response {
    let (kind, input) = match check_project(&shared, &project)
        .and_then(|()| kind_of(&collection))
        .and_then(|k| parse_body(&body).map(|b| (k, b)))
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    respond(shared.store().update(kind, &id, input))
}

async fn delete(
    State(shared): AppState,
    Path((project, collection, id)): Path<(String, String, String)>,
) -> Response {
    let kind = match check_project(&shared, &project).and_then(|()| kind_of(&collection)) {
        Ok(k) => k,
        Err(r) => return r,
    };
    respond(
        shared
            .store()
            .action(kind, &id, crate::resource::action::REMOVE, json!({})),
    )
}

async fn action(
    State(shared): AppState,
    Path((project, collection, id)): Path<(String, String, String)>,
    Query(query): Query<Vec<(String, String)>>,
    body: Bytes,
) -> Response {
    let (kind, input) = match check_project(&shared, &project)
        .and_then(|()| kind_of(&collection))
        .and_then(|k| parse_body(&body).map(|b| (k, b)))
    {
        Ok(x) => x,
        Err(r) => return r,
    };
    let Some((_, name)) = query.iter().find(|(k, _)| k == "action") else {
        return error_response(ErrorBody::new(
            405,
            "MethodNotAllowed",
            "POST on a resource needs ?action=<name>",
        ));
    };
    respond(shared.store().action(kind, &id, name, input))
}

async fn link(
    State(shared): AppState,
    Path((project, collection, id, link)): Path<(String, String, String, String)>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    let kind = match check_project(&shared, &project).and_then(|()| kind_of(&collection)) {
        Ok(k) => k,
        Err(r) => return r,
    };
    respond(shared.store().link(kind, &id, &link, &query))
}

async fn fallback(method: Method, uri: axum::http::Uri) -> Response {
    error_response(not_found(format!("{method} {}", uri.path())))
}

fn router(shared: Arc<Shared>) -> Router {
    let p = "/v2-beta/projects/{project}";
    Router::new()
        .route("/v2-beta", get(api_root))
        .route("/v2-beta/projects", get(list_projects).post(create_project))
        .route("/v2-beta/identities", get(access::identities))
        .route("/v2-beta/identity", get(access::identities))
        .route(
            "/v2-beta/projectmembers",
            get(access::list_members).post(access::create_member),
        )
        .route(
            "/v2-beta/projectmembers/{id}",
            get(access::get_member).delete(access::delete_member),
        )
        .route(
            p,
            get(project)
                .put(update_project)
                .delete(delete_project)
                .post(project_action),
        )
        .route(
            "/r/projects/{project}/kubernetes:6443/{*rest}",
            any(kubernetes::proxy),
        )
        .route(&format!("{p}/{{collection}}"), get(list).post(create))
        .route(
            &format!("{p}/{{collection}}/{{id}}"),
            get(get_one).put(update).delete(delete).post(action),
        )
        .route(
            &format!("{p}/{{collection}}/{{id}}/"),
            get(get_one).post(action),
        )
        .route(&format!("{p}/{{collection}}/{{id}}/{{link}}"), get(link))
        .fallback(fallback)
        .with_state(shared)
}

/// Accepts connections until `shutdown` is cancelled. Each request first goes through the
/// fault injection ([`super::faults`]) and the basic-auth check, then the routes.
pub(crate) async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: CancellationToken) {
    let app = router(shared.clone());
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let Ok((stream, _)) = accepted else {
            continue;
        };
        let shared = shared.clone();
        let app = app.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            let kill = CancellationToken::new();
            let kill_conn = kill.clone();
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let shared = shared.clone();
                let app = app.clone();
                let kill = kill_conn.clone();
                async move {
                    let resp = handle(shared, app, kill, req).await;
                    Ok::<_, Infallible>(resp)
                }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                () = kill.cancelled() => {}
                () = shutdown.cancelled() => {}
            }
        });
    }
}

async fn handle(
    shared: Arc<Shared>,
    app: Router,
    kill: CancellationToken,
    req: Request<hyper::body::Incoming>,
) -> Response {
    let method = req.method().to_string();
    let path = req.uri().path().to_owned();
    let query = req.uri().query().map(str::to_owned);
    let record = |status: Option<u16>| {
        lock(&shared.requests).push(RecordedRequest {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            status,
        });
    };
    let change = req.method() != hyper::Method::GET && req.method() != hyper::Method::HEAD;
    let mut fault = lock(&shared.faults).decide(change);
    if fault.drop {
        record(None);
        kill.cancel();
        return std::future::pending().await;
    }
    if let Some(delay) = fault.delay {
        tokio::time::sleep(delay).await;
    }
    lock(&shared.faults).after_delay(&mut fault, change);
    let resp = if let Some(status) = fault.status {
        error_response(ErrorBody::new(
            status,
            crate::error::code::SERVER_ERROR,
            "injected failure",
        ))
    } else if !shared.authorized(&path, req.headers())
        && !access::user_allowed(&shared, req.method(), &path, req.headers())
    {
        let mut r = error_response(ErrorBody::new(
            401,
            crate::error::code::UNAUTHORIZED,
            "Unauthorized",
        ));
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"Enter API access key and secret key\""),
        );
        r
    } else {
        match app.oneshot(req.map(Body::new)).await {
            Ok(r) => r,
            Err(never) => match never {},
        }
    };
    if fault.lose_answer {
        // Processed; the client never hears of it.
        record(None);
        kill.cancel();
        return std::future::pending().await;
    }
    record(Some(resp.status().as_u16()));
    resp
}
