//! Environments (projects) against the fake Rancher server: listing at the API root, labels,
//! lifecycle, and the Kubernetes API access Rancher gives to each one through its proxy.

use std::{collections::BTreeMap, time::Duration};

use rancher_client::{
    Credentials, ListParams, Project,
    resource::KubernetesAccess,
    testing::{FakeProject, FakeRancher},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
    sync::mpsc,
};

const FED_LABEL: &str = "federation.rancher.io/name";

fn init() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

#[tokio::test]
async fn projects_are_listed_at_the_api_root_with_their_labels() {
    init();
    let fake = FakeRancher::builder()
        .settle_delay(Duration::from_millis(5))
        .project(FakeProject::new("east").label(FED_LABEL, "myfed"))
        .project(FakeProject::new("legacy").orchestration("cattle"))
        .start()
        .await
        .unwrap();
    let client = fake.client();
    let api = client.projects();

    let all = api.list(&ListParams::new().removed_null()).await.unwrap();
    let names: Vec<_> = all.iter().filter_map(|p| p.meta.name.clone()).collect();
    assert_eq!(names, ["Default", "east", "legacy"]);
    let served = &all[0];
    assert_eq!(served.meta.id, client.project_id().unwrap());
    assert!(served.is_kubernetes());
    assert!(served.meta.links.contains_key("stacks"), "{served:?}");
    assert!(!all[2].is_kubernetes());

    let east_id = fake.project_id_by_name("east").unwrap();
    let east = api.get(&east_id).await.unwrap();
    assert_eq!(east.label_value(FED_LABEL), Some("myfed"));
    assert_eq!(
        fake.requests().last().unwrap().path,
        format!("/v2-beta/projects/{east_id}")
    );

    // Created through the API with labels; names are unique among live environments.
    let created = api
        .create(
            &Project::new("west")
                .orchestration("kubernetes")
                .label(FED_LABEL, "myfed"),
        )
        .await
        .unwrap();
    assert_eq!(created.label_value(FED_LABEL), Some("myfed"));
    let dup = api.create(&Project::new("west")).await.unwrap_err();
    assert_eq!(dup.status(), Some(422), "{dup}");

    // Labels change through an update, and through the fake's handle.
    let mut west = api.get(&created.meta.id).await.unwrap();
    west.labels.clear();
    let west = api.update(&west).await.unwrap();
    assert!(west.labels.is_empty());
    assert!(fake.set_project_labels(&east_id, BTreeMap::new()));
    assert_eq!(
        api.get(&east_id).await.unwrap().label_value(FED_LABEL),
        None
    );

    // Removed environments drop out of `removed_null` lists.
    assert!(fake.remove_project(&east_id));
    fake.settle_now();
    let live = api.list(&ListParams::new().removed_null()).await.unwrap();
    assert!(live.iter().all(|p| p.meta.id != east_id));

    // Labels that are not strings are refused, naming the type.
    let resp = reqwest::Client::new()
        .post(format!("http://{}/v2-beta/projects", fake.addr()))
        .basic_auth(
            rancher_client::testing::DEFAULT_ACCESS_KEY,
            Some(rancher_client::testing::DEFAULT_SECRET_KEY),
        )
        .json(&serde_json::json!({"name": "x", "labels": {"k": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 422);
    assert!(resp.text().await.unwrap().contains("invalid project"));
}

/// A backend that records each request's head on `heads` and answers with a body sent in two
/// chunks, the second only after `release` gets a message.
async fn backend() -> (
    String,
    mpsc::UnboundedReceiver<String>,
    mpsc::UnboundedSender<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let (heads_tx, heads) = mpsc::unbounded_channel();
    let (release, mut released) = mpsc::unbounded_channel::<()>();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let Ok(n) = stream.read(&mut buf).await else {
                    break;
                };
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            let _ = heads_tx.send(String::from_utf8_lossy(&head).into_owned());
            let _ = stream
                .write_all(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n6\r\nfirst\n\r\n",
                )
                .await;
            let _ = released.recv().await;
            let _ = stream.write_all(b"7\r\nsecond\n\r\n0\r\n\r\n").await;
        }
    });
    (url, heads, release)
}

#[tokio::test]
async fn the_kubernetes_proxy_takes_the_key_as_bearer_token_and_streams() {
    init();
    let (kube_url, mut heads, release) = backend().await;
    let fake = FakeRancher::builder()
        .project(FakeProject::new("east").kubernetes(kube_url))
        .project(FakeProject::new("bare"))
        .start()
        .await
        .unwrap();
    let client = fake.client();
    let east = client
        .projects()
        .get(&fake.project_id_by_name("east").unwrap())
        .await
        .unwrap();
    let access = client.kubernetes_access(&east).unwrap();
    assert_eq!(
        access.server.as_str(),
        format!(
            "http://{}/r/projects/{}/kubernetes:6443",
            fake.addr(),
            east.meta.id
        )
    );
    assert!(!access.insecure_skip_tls_verify);

    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/namespaces?watch=true", access.server);
    let mut resp = http
        .get(&url)
        .bearer_auth(access.token.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    // The first chunk arrives while the backend still holds the second: the proxy streams.
    let first = tokio::time::timeout(Duration::from_secs(10), resp.chunk())
        .await
        .expect("the first chunk is forwarded before the response ends")
        .unwrap()
        .unwrap();
    assert_eq!(&first[..], b"first\n");
    release.send(()).unwrap();
    let second = resp.chunk().await.unwrap().unwrap();
    assert_eq!(&second[..], b"second\n");
    let head = heads.recv().await.unwrap();
    assert!(
        head.starts_with("GET /api/v1/namespaces?watch=true HTTP/1.1\r\n"),
        "{head}"
    );
    assert!(
        !head.to_ascii_lowercase().contains("authorization"),
        "{head}"
    );

    // Other keys, basic auth and no token are refused before reaching the backend.
    let other = KubernetesAccess::for_project(
        &access.server,
        &east.meta.id,
        &Credentials::new("someone", "else"),
    )
    .unwrap();
    for req in [
        http.get(&url).bearer_auth(other.token.expose()),
        http.get(&url).basic_auth(
            rancher_client::testing::DEFAULT_ACCESS_KEY,
            Some(rancher_client::testing::DEFAULT_SECRET_KEY),
        ),
        http.get(&url),
    ] {
        assert_eq!(req.send().await.unwrap().status(), 401);
    }
    assert!(heads.try_recv().is_err());

    // An environment without an API server, and one that does not exist.
    let bare = fake.project_id_by_name("bare").unwrap();
    let bare_url = format!(
        "http://{}/r/projects/{bare}/kubernetes:6443/version",
        fake.addr()
    );
    let resp = http
        .get(&bare_url)
        .bearer_auth(access.token.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let missing = format!(
        "http://{}/r/projects/1a999/kubernetes:6443/version",
        fake.addr()
    );
    let resp = http
        .get(&missing)
        .bearer_auth(access.token.expose())
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 404);
}
