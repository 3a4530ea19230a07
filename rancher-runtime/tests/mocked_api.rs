//! The exact API requests of leader election and status patches, against a mocked
//! API server (tower-test, as kube-rs tests its own clients).

use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use k8s_openapi::{
    api::{coordination::v1::Lease, networking::v1::Ingress},
    apimachinery::pkg::apis::meta::v1::MicroTime,
    jiff::Timestamp,
};
use kube::{Api, client::Body};
use rancher_runtime::lease::{Elector, LeaderArgs};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;
use tower_test::mock::{Handle, SendResponse};

type ApiHandle = Handle<Request<Body>, Response<Body>>;

fn mock() -> (kube::Client, ApiHandle) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (kube::Client::new(service, "default"), handle)
}

/// Takes the next request and checks its method and path (query included).
async fn expect(
    handle: &mut ApiHandle,
    method: Method,
    path_and_query: &str,
) -> (Request<Body>, Value, SendResponse<Response<Body>>) {
    let (request, send) = tokio::time::timeout(Duration::from_secs(10), handle.next_request())
        .await
        .expect("a request within 10 s")
        .expect("the client is still alive");
    assert_eq!(request.method(), method, "method of {}", request.uri());
    assert_eq!(
        request.uri().path_and_query().map(|p| p.as_str()),
        Some(path_and_query)
    );
    let (parts, body) = request.into_parts();
    let bytes = body.collect_bytes().await.unwrap();
    let value = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes).unwrap()
    };
    (Request::from_parts(parts, Body::empty()), value, send)
}

fn respond(send: SendResponse<Response<Body>>, status: StatusCode, body: &Value) {
    send.send_response(
        Response::builder()
            .status(status)
            .header("content-type", "application/json")
            .body(Body::from(serde_json::to_vec(body).unwrap()))
            .unwrap(),
    );
}

fn not_found(name: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": format!("leases.coordination.k8s.io \"{name}\" not found"),
        "reason": "NotFound", "code": 404,
        "details": {"name": name, "group": "coordination.k8s.io", "kind": "leases"}
    })
}

/// The lease as the API server would return it: the request body plus metadata.
fn stored(mut lease: Value, resource_version: &str) -> Value {
    lease["apiVersion"] = json!("coordination.k8s.io/v1");
    lease["kind"] = json!("Lease");
    lease["metadata"]["namespace"] = json!("kube-system");
    lease["metadata"]["resourceVersion"] = json!(resource_version);
    lease
}

fn args() -> LeaderArgs {
    LeaderArgs {
        lease_duration: Duration::from_secs(15),
        ..LeaderArgs::new("kube-system", "rancher-ingress")
    }
}

const LEASE_PATH: &str =
    "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/rancher-ingress";

#[tokio::test]
async fn lease_is_created_renewed_and_released() {
    let (client, mut handle) = mock();
    let api: Api<Lease> = Api::namespaced(client, "kube-system");
    let mut elector = Elector::new(api, "rancher-ingress".into(), "replica-a".into(), &args());
    let leadership = elector.leadership();

    // Round 1: no lease yet → create it, holding it.
    let server = tokio::spawn(async move {
        let (_, _, send) = expect(&mut handle, Method::GET, LEASE_PATH).await;
        respond(send, StatusCode::NOT_FOUND, &not_found("rancher-ingress"));
        let (request, body, send) = expect(
            &mut handle,
            Method::POST,
            "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases?",
        )
        .await;
        assert_eq!(request.headers()["content-type"], "application/json");
        assert_eq!(body["metadata"]["name"], "rancher-ingress");
        assert_eq!(body["spec"]["holderIdentity"], "replica-a");
        assert_eq!(body["spec"]["leaseDurationSeconds"], 15);
        assert_eq!(body["spec"]["leaseTransitions"], 0);
        assert!(body["spec"]["acquireTime"].is_string());
        assert!(body["spec"]["renewTime"].is_string());
        let created = stored(body, "10");
        respond(send, StatusCode::CREATED, &created);
        (handle, created)
    });
    assert!(elector.round().await.unwrap(), "the creator leads");
    let (mut handle, created) = server.await.unwrap();

    // Round 2: the lease is ours → renew it in place with its resourceVersion.
    let server = tokio::spawn(async move {
        let (_, _, send) = expect(&mut handle, Method::GET, LEASE_PATH).await;
        respond(send, StatusCode::OK, &created);
        let (_, body, send) = expect(&mut handle, Method::PUT, &format!("{LEASE_PATH}?")).await;
        assert_eq!(
            body["metadata"]["resourceVersion"], "10",
            "optimistic concurrency"
        );
        assert_eq!(body["spec"]["holderIdentity"], "replica-a");
        assert_eq!(
            body["spec"]["leaseTransitions"], 0,
            "a renewal is no transition"
        );
        assert_eq!(
            body["spec"]["acquireTime"], created["spec"]["acquireTime"],
            "a renewal keeps the acquire time"
        );
        let renewed = stored(body, "11");
        respond(send, StatusCode::OK, &renewed);
        handle
    });
    assert!(elector.round().await.unwrap(), "the holder keeps leading");
    let mut handle = server.await.unwrap();
    assert!(!leadership.is_leader(), "only run() publishes leadership");

    // Release: no holder, one-second duration, same resourceVersion.
    let server = tokio::spawn(async move {
        let (_, body, send) = expect(&mut handle, Method::PUT, &format!("{LEASE_PATH}?")).await;
        assert_eq!(body["metadata"]["resourceVersion"], "11");
        assert!(body["spec"].get("holderIdentity").is_none(), "{body}");
        assert_eq!(body["spec"]["leaseDurationSeconds"], 1);
        let released = stored(body, "12");
        respond(send, StatusCode::OK, &released);
    });
    elector.release().await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn run_leads_then_releases_on_shutdown() {
    let (client, mut handle) = mock();
    let shutdown = CancellationToken::new();
    let (mut leadership, elector) = args().start(client, shutdown.clone());
    let elector = tokio::spawn(elector.expect("election is enabled"));
    assert!(!leadership.is_leader(), "not leader before the first round");

    let (_, _, send) = expect(&mut handle, Method::GET, LEASE_PATH).await;
    respond(send, StatusCode::NOT_FOUND, &not_found("rancher-ingress"));
    let (_, body, send) = expect(
        &mut handle,
        Method::POST,
        "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases?",
    )
    .await;
    respond(send, StatusCode::CREATED, &stored(body, "1"));
    assert_eq!(leadership.changed().await, Some(true));

    shutdown.cancel();
    let (_, body, send) = expect(&mut handle, Method::PUT, &format!("{LEASE_PATH}?")).await;
    assert!(body["spec"].get("holderIdentity").is_none());
    respond(send, StatusCode::OK, &stored(body, "2"));
    elector.await.unwrap();
    assert!(!leadership.is_leader(), "released on shutdown");
}

fn held_by(holder: &str, resource_version: &str) -> Value {
    let now = serde_json::to_value(MicroTime(Timestamp::now())).unwrap();
    stored(
        json!({
            "metadata": {"name": "rancher-ingress"},
            "spec": {
                "holderIdentity": holder, "leaseDurationSeconds": 15,
                "acquireTime": now, "renewTime": now, "leaseTransitions": 4
            }
        }),
        resource_version,
    )
}

#[tokio::test(start_paused = true)]
async fn a_standby_waits_for_expiry_then_takes_over() {
    let (client, mut handle) = mock();
    let api: Api<Lease> = Api::namespaced(client, "kube-system");
    let mut elector = Elector::new(api, "rancher-ingress".into(), "replica-b".into(), &args());
    let other = held_by("replica-a", "7");

    // Held and fresh: no write.
    let lease = other.clone();
    let server = tokio::spawn(async move {
        let (_, _, send) = expect(&mut handle, Method::GET, LEASE_PATH).await;
        respond(send, StatusCode::OK, &lease);
        handle
    });
    assert!(!elector.round().await.unwrap());
    let mut handle = server.await.unwrap();

    // Not renewed for longer than the lease duration (on our clock): take over.
    tokio::time::advance(Duration::from_secs(16)).await;
    let server = tokio::spawn(async move {
        let (_, _, send) = expect(&mut handle, Method::GET, LEASE_PATH).await;
        respond(send, StatusCode::OK, &other);
        let (_, body, send) = expect(&mut handle, Method::PUT, &format!("{LEASE_PATH}?")).await;
        assert_eq!(body["metadata"]["resourceVersion"], "7");
        assert_eq!(body["spec"]["holderIdentity"], "replica-b");
        assert_eq!(body["spec"]["leaseTransitions"], 5);
        respond(send, StatusCode::OK, &stored(body, "8"));
        handle
    });
    assert!(elector.round().await.unwrap());
    let mut handle = server.await.unwrap();

    // Losing a write race (409) means standby, not an error.
    let lease = held_by("replica-b", "8");
    let server = tokio::spawn(async move {
        let (_, _, send) = expect(&mut handle, Method::GET, LEASE_PATH).await;
        respond(send, StatusCode::OK, &lease);
        let (_, _, send) = expect(&mut handle, Method::PUT, &format!("{LEASE_PATH}?")).await;
        respond(
            send,
            StatusCode::CONFLICT,
            &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "Conflict", "code": 409, "message": "the object has been modified"}),
        );
    });
    assert!(!elector.round().await.unwrap());
    server.await.unwrap();
}

#[tokio::test]
async fn status_patch_goes_to_the_status_subresource_with_the_field_manager() {
    let (client, mut handle) = mock();
    let api: Api<Ingress> = Api::namespaced(client, "web");
    let server = tokio::spawn(async move {
        let (request, body, send) = expect(
            &mut handle,
            Method::PATCH,
            "/apis/networking.k8s.io/v1/namespaces/web/ingresses/scalelb/status?&fieldManager=rancher-ingress",
        )
        .await;
        assert_eq!(
            request.headers()["content-type"],
            "application/merge-patch+json"
        );
        assert_eq!(
            body,
            json!({"status": {"loadBalancer": {"ingress": [{"ip": "127.0.0.2"}, {"ip": "127.0.0.3"}]}}})
        );
        respond(
            send,
            StatusCode::OK,
            &json!({
                "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                "metadata": {"name": "scalelb", "namespace": "web"},
                "status": body["status"]
            }),
        );
    });
    let status = json!({"loadBalancer": {"ingress": [{"ip": "127.0.0.2"}, {"ip": "127.0.0.3"}]}});
    let ingress = rancher_runtime::status::patch_status(&api, "scalelb", "rancher-ingress", status)
        .await
        .unwrap();
    server.await.unwrap();
    let addresses: Vec<_> = ingress
        .status
        .and_then(|s| s.load_balancer)
        .and_then(|lb| lb.ingress)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|i| i.ip)
        .collect();
    assert_eq!(addresses, ["127.0.0.2", "127.0.0.3"]);
}

#[tokio::test]
async fn a_failed_status_patch_names_the_object() {
    let (client, mut handle) = mock();
    let api: Api<Ingress> = Api::namespaced(client, "web");
    tokio::spawn(async move {
        let (_, _, send) = expect(
            &mut handle,
            Method::PATCH,
            "/apis/networking.k8s.io/v1/namespaces/web/ingresses/gone/status?&fieldManager=m",
        )
        .await;
        respond(
            send,
            StatusCode::NOT_FOUND,
            &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "ingresses.networking.k8s.io \"gone\" not found"}),
        );
    });
    let err = rancher_runtime::status::patch_status(&api, "gone", "m", json!({}))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to patch the status of Ingress gone"
    );
}

#[tokio::test(start_paused = true)]
async fn a_standby_tries_to_take_over_the_moment_the_lease_expires() {
    let (client, mut handle) = mock();
    let api: Api<Lease> = Api::namespaced(client, "kube-system");
    let elector = Elector::new(api, "rancher-ingress".into(), "replica-b".into(), &args());
    let mut leadership = elector.leadership();
    let shutdown = CancellationToken::new();
    let run = tokio::spawn(elector.run(shutdown.clone()));
    // The holder was killed right after its last renewal: the Lease never
    // changes again. Rounds come every 2 s, and the last one exactly when the
    // Lease expires (15 s after it was first seen), not at the next tick (16 s).
    let start = tokio::time::Instant::now();
    let other = held_by("replica-a", "7");
    let mut gets = Vec::new();
    loop {
        let (_, _, send) = expect(&mut handle, Method::GET, LEASE_PATH).await;
        gets.push(start.elapsed());
        respond(send, StatusCode::OK, &other);
        if gets.len() == 9 {
            break;
        }
    }
    let (_, body, send) = expect(&mut handle, Method::PUT, &format!("{LEASE_PATH}?")).await;
    assert_eq!(body["spec"]["holderIdentity"], "replica-b");
    respond(send, StatusCode::OK, &stored(body, "8"));
    assert!(leadership.wait_leader().await);
    let expected: Vec<Duration> = (0..8)
        .map(|i| Duration::from_secs(2 * i))
        .chain([Duration::from_secs(15)])
        .collect();
    assert_eq!(gets, expected);
    shutdown.cancel();
    // The release on shutdown.
    let (_, body, send) = expect(&mut handle, Method::PUT, &format!("{LEASE_PATH}?")).await;
    assert!(body["spec"]["holderIdentity"].is_null());
    respond(send, StatusCode::OK, &stored(body, "9"));
    run.await.unwrap();
}
