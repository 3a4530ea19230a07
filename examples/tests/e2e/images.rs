//! The container images of `./scripts/images`, built from the binaries cargo
//! built for these tests (reused when they did not change), imported into
//! Debian's containerd ([`Containerd`]) and run with `ctr run` on the host
//! network: every binary answers `--version`; each image runs as the user
//! `deploy/images.txt` gives (the non-root ones as `nonroot`, uid 65532);
//! `rancher-dns` answers `dig` and `/readyz` against the sandbox API server; the
//! ingress controller runs HAProxy inside its container and serves the seed's
//! `scalelb` Ingress to `curl`; the CNI agent's image installs the plugin with
//! the DaemonSet's own init container command. Then the same archives load into
//! Debian's podman and dockerd (each the test's own), under the same names, with
//! the same user and entrypoint, and every entrypoint answers `--version` there.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output},
};

use k8s_openapi::api::core::v1::Service;
use kube::{Api, api::PostParams};
use rancher_lb::testing::HttpEcho;
use serde_json::{Value, json};

use crate::{
    containerd::{Containerd, text},
    engines::{Docker, Engine, Podman},
    ingress_controller::manifests,
    support::{DEADLINE, curl, free_dns_port, free_port, kubectl, short, within},
};

const VERSION: &str = env!("CARGO_PKG_VERSION");
/// Where the kubeconfig is mounted in the containers.
const KUBE_DIR: &str = "/etc/rancher-kube";
/// Where the test mounts Debian's busybox-static to look inside an image that has no shell.
const PROBE: &str = "/.probe/busybox";

/// One line of `deploy/images.txt`.
struct Image {
    name: String,
    user: String,
    binaries: Vec<String>,
}

impl Image {
    fn reference(&self) -> String {
        format!("docker.io/rancher-plugins/{}:{VERSION}", self.name)
    }

    fn uid(&self) -> &str {
        self.user.split(':').next().unwrap_or_default()
    }
}

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The images `./scripts/images` builds.
fn images() -> Vec<Image> {
    let list = std::fs::read_to_string(workspace().join("deploy/images.txt")).expect("images.txt");
    list.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let columns: Vec<&str> = l.split_whitespace().collect();
            assert!(columns.len() >= 5, "deploy/images.txt: {l}");
            Image {
                name: columns[0].to_owned(),
                user: columns[1].to_owned(),
                binaries: columns[4..].iter().map(|b| (*b).to_owned()).collect(),
            }
        })
        .collect()
}

/// Runs `./scripts/images` on the binaries of this test build; the archives'
/// directory.
fn build_images() -> PathBuf {
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_rancher-dns"))
        .parent()
        .expect("target dir");
    let out = bin_dir.join("images");
    let built = Command::new(workspace().join("scripts/images"))
        .arg("--bin-dir")
        .arg(bin_dir)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("scripts/images runs");
    assert!(built.status.success(), "scripts/images: {}", text(&built));
    out
}

/// `ctr run --rm --net-host [opts] image id cmd...`. Every command run this way
/// prints something; ctr can lose a short-lived task's output when the task
/// exits before its FIFO is read (containerd/containerd#770 and its kin, seen
/// here once under a loaded test run: exit status 0, nothing printed), so a
/// run that succeeded without output is tried again, twice at most.
fn run(containerd: &Containerd, image: &Image, id: &str, opts: &[&str], cmd: &[&str]) -> Output {
    let reference = image.reference();
    let mut args = vec!["run", "--rm", "--net-host"];
    args.extend_from_slice(opts);
    args.push(&reference);
    args.push(id);
    args.extend_from_slice(cmd);
    let mut out = containerd.ctr(&args);
    for _ in 0..2 {
        if !(out.status.success() && out.stdout.is_empty()) {
            break;
        }
        out = containerd.ctr(&args);
    }
    out
}

/// `ctr run -d --net-host` with the kubeconfig directory mounted and the task's
/// output in `id.log` beside containerd's files.
fn run_detached(containerd: &Containerd, image: &Image, id: &str, kube_dir: &Path, cmd: &[&str]) {
    let log = format!(
        "file://{}",
        containerd.dir().join(format!("{id}.log")).display()
    );
    let mount = format!(
        "type=bind,src={},dst={KUBE_DIR},options=rbind:ro",
        kube_dir.display()
    );
    let reference = image.reference();
    let mut args = vec![
        "run",
        "-d",
        "--net-host",
        "--log-uri",
        &log,
        "--mount",
        &mount,
    ];
    args.push(&reference);
    args.push(id);
    args.extend_from_slice(cmd);
    let out = containerd.ctr(&args);
    assert!(out.status.success(), "ctr run {id}: {}", text(&out));
}

fn task_log(containerd: &Containerd, id: &str) -> String {
    std::fs::read_to_string(containerd.dir().join(format!("{id}.log"))).unwrap_or_default()
}

/// `Uid:` of `/proc/<pid>/status`: real, effective, saved, filesystem.
fn uids(pid: u32) -> String {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .map(|u| u.split_whitespace().collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn comm(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/comm"))
        .unwrap_or_default()
        .trim()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_images_run_in_containerd() {
    rancher_runtime::install_crypto_provider();
    let images = images();
    let archives = build_images();
    let dir = tempfile::tempdir().expect("tempdir");
    // The kubeconfig, readable by the images' non-root user.
    let kube_dir = dir.path().join("kube");
    std::fs::create_dir(&kube_dir).expect("kube dir");
    std::fs::set_permissions(&kube_dir, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let kubeconfig = kube_dir.join("kubeconfig");
    let sandbox = rancher_sandbox::Sandbox::builder()
        .kubeconfig_path(&kubeconfig)
        .start()
        .await
        .expect("sandbox");
    std::fs::set_permissions(&kubeconfig, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let in_container = format!("{KUBE_DIR}/kubeconfig");

    let containerd = Containerd::start().await;
    for image in &images {
        let archive = archives.join(format!("{}-{VERSION}.oci.tar", image.name));
        let out = containerd.ctr(&["images", "import", archive.to_str().expect("UTF-8")]);
        assert!(
            out.status.success(),
            "import {}: {}",
            archive.display(),
            text(&out)
        );
    }
    let listed =
        String::from_utf8_lossy(&containerd.ctr(&["images", "list", "-q"]).stdout).into_owned();

    // Every binary answers --version; each image runs as its user.
    let probe = format!("type=bind,src=/bin/busybox,dst={PROBE},options=rbind:ro");
    for image in &images {
        assert!(
            listed.contains(&image.reference()),
            "{} in {listed}",
            image.reference()
        );
        let entrypoint = format!("/usr/local/bin/{}", image.binaries[0]);
        let out = run(
            &containerd,
            image,
            "version",
            &[],
            &[&entrypoint, "--version"],
        );
        let expected = format!("{} {VERSION}", image.binaries[0]);
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&expected),
            "{}: {}",
            image.name,
            text(&out)
        );
        let out = run(
            &containerd,
            image,
            "id",
            &["--mount", &probe],
            &[PROBE, "id"],
        );
        let id = String::from_utf8_lossy(&out.stdout).into_owned();
        let expected = match image.uid() {
            "0" => "uid=0(root) gid=0(root)".to_owned(),
            uid => format!("uid={uid}(nonroot) gid={uid}(nonroot)"),
        };
        assert!(id.starts_with(&expected), "{}: {}", image.name, text(&out));
    }
    assert!(
        images.iter().filter(|i| i.uid() != "0").count() >= 5,
        "the distroless images run as non-root"
    );

    let image = |name: &str| images.iter().find(|i| i.name == name).expect(name);
    dns_answers(
        &containerd,
        image("rancher-dns"),
        &sandbox,
        &in_container,
        &kube_dir,
    )
    .await;
    ingress_serves(
        &containerd,
        image("rancher-ingress-controller"),
        &kubeconfig,
        &in_container,
        &kube_dir,
    )
    .await;
    cni_plugin_installs(&containerd, image("rancher-cni-agent"), dir.path());
    drop(containerd);

    // The same archives in the two other engines operators use.
    let podman = Podman::new();
    loads_and_runs(&podman, &archives, &images);
    drop(podman);
    let docker = Docker::start().await;
    loads_and_runs(&docker, &archives, &images);
}

/// Every archive loads into `engine` under its name, the image is configured with
/// its user and entrypoint, and the entrypoint answers `--version`.
fn loads_and_runs(engine: &dyn Engine, archives: &Path, images: &[Image]) {
    for image in images {
        let archive = archives.join(format!("{}-{VERSION}.oci.tar", image.name));
        let loaded = engine.load(&archive);
        let name = format!("rancher-plugins/{}:{VERSION}", image.name);
        assert!(
            loaded.iter().any(|r| r.ends_with(&name)),
            "{}: {} loaded as {loaded:?}",
            engine.name(),
            archive.display()
        );
        let entrypoint = format!("/usr/local/bin/{}", image.binaries[0]);
        let inspect = engine.client(&[
            "image",
            "inspect",
            "--format",
            "{{.Config.User}} {{json .Config.Entrypoint}}",
            &name,
        ]);
        assert_eq!(
            String::from_utf8_lossy(&inspect.stdout).trim(),
            format!("{} [\"{entrypoint}\"]", image.user),
            "{}: {name}: {}",
            engine.name(),
            text(&inspect)
        );
        let out = engine.run(&name, &["--version"]);
        let expected = format!("{} {VERSION}", image.binaries[0]);
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains(&expected),
            "{}: {name} --version: {}",
            engine.name(),
            text(&out)
        );
    }
}

/// rancher-dns in its container against the sandbox: `dig` and `/readyz`, as nonroot.
async fn dns_answers(
    containerd: &Containerd,
    image: &Image,
    sandbox: &rancher_sandbox::Sandbox,
    kubeconfig: &str,
    kube_dir: &Path,
) {
    let services: Api<Service> = Api::namespaced(sandbox.client(), "default");
    let web: Service = serde_json::from_value(json!({
        "metadata": {"name": "web"}, "spec": {"ports": [{"port": 80}]}}))
    .expect("service");
    let web = services
        .create(&PostParams::default(), &web)
        .await
        .expect("create web");
    let web_ip = web.spec.and_then(|s| s.cluster_ip).expect("a ClusterIP");
    let (port, admin) = (free_dns_port(), free_port());
    let (listen, admin_addr) = (format!("127.0.0.1:{port}"), format!("127.0.0.1:{admin}"));
    run_detached(
        containerd,
        image,
        "dns",
        kube_dir,
        &[
            "/usr/local/bin/rancher-dns",
            "--kubeconfig",
            kubeconfig,
            "--listen",
            &listen,
            "--admin",
            &admin_addr,
            "--upstream",
            "127.0.0.1:9",
        ],
    );
    let name = "web.default.svc.cluster.local";
    let answered = within(DEADLINE * 2, || async {
        (short(port, name).await == [web_ip.clone()]).then_some(())
    })
    .await;
    assert!(
        answered.is_some(),
        "dig {name} in time; log:\n{}",
        task_log(containerd, "dns")
    );
    let (code, body) = curl(&format!("http://{admin_addr}/readyz"), None).await;
    assert_eq!(code, 200, "{body}");
    let pids = containerd.pids("dns");
    assert_eq!(pids.len(), 1, "{pids:?}");
    assert_eq!(
        uids(pids[0]),
        "65532 65532 65532 65532",
        "rancher-dns runs as nonroot"
    );
}

/// The ingress controller in its container: HAProxy runs inside it and serves
/// the seed's `scalelb` Ingress on both hosts.
async fn ingress_serves(
    containerd: &Containerd,
    image: &Image,
    kubeconfig: &Path,
    in_container: &str,
    kube_dir: &Path,
) {
    let echo = HttpEcho::start("nginx").await.expect("echo backend");
    let (http_port, admin) = (free_port(), free_port());
    let seed = kube_dir.join("seed.yaml");
    std::fs::write(&seed, manifests(http_port, echo.port())).expect("seed");
    let (ok, out) = kubectl(kubeconfig, &["apply", "-f", seed.to_str().expect("UTF-8")]).await;
    assert!(ok, "{out}");
    let admin_addr = format!("127.0.0.1:{admin}");
    run_detached(
        containerd,
        image,
        "ingress",
        kube_dir,
        &[
            "/usr/local/bin/rancher-ingress-controller",
            "--kubeconfig",
            in_container,
            "--driver",
            "haproxy",
            "--hosts",
            "127.0.0.2,127.0.0.3",
            "--admin",
            &admin_addr,
        ],
    );
    for host in ["127.0.0.2", "127.0.0.3"] {
        let url = format!("http://{host}:{http_port}/foo/bar");
        let served = within(DEADLINE * 2, || async {
            let (code, body) = curl(&url, Some("foo.bar.com")).await;
            (code == 200).then_some(body)
        })
        .await;
        let log = task_log(containerd, "ingress");
        assert_eq!(
            served.as_deref(),
            Some("nginx /foo/bar"),
            "{url}; log:\n{log}"
        );
    }
    let (code, _) = curl(&format!("http://{admin_addr}/readyz"), None).await;
    assert_eq!(code, 200);
    // The HAProxy processes serving are the container's.
    let haproxies: Vec<u32> = containerd
        .pids("ingress")
        .into_iter()
        .filter(|p| comm(*p) == "haproxy")
        .collect();
    assert!(
        haproxies.len() >= 2,
        "a master and a worker per host in the container: {haproxies:?}"
    );
    let log = task_log(containerd, "ingress");
    assert_eq!(
        log.matches("maxconn lowered").count(),
        1,
        "ctr run gives 1024 open files: maxconn is lowered to fit, and that is said once:\n{log}"
    );
}

/// The DaemonSet's init container command, run in the agent's image, installs
/// the plugin into the host directory mounted at /host/opt/cni/bin.
fn cni_plugin_installs(containerd: &Containerd, image: &Image, dir: &Path) {
    let daemonset = std::fs::read_to_string(workspace().join("deploy/rancher-cni/daemonset.yaml"))
        .expect("daemonset.yaml");
    let daemonset: Value = serde_saphyr::from_str(&daemonset).expect("YAML");
    let init = &daemonset["spec"]["template"]["spec"]["initContainers"][0];
    let command: Vec<&str> = init["command"]
        .as_array()
        .into_iter()
        .flatten()
        .chain(init["args"].as_array().into_iter().flatten())
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        init["image"].as_str(),
        Some(&image.reference()["docker.io/".len()..])
    );
    let bin = dir.join("cni-bin");
    std::fs::create_dir(&bin).expect("cni bin");
    let mount = format!(
        "type=bind,src={},dst=/host/opt/cni/bin,options=rbind:rw",
        bin.display()
    );
    let out = run(
        containerd,
        image,
        "install-cni",
        &["--mount", &mount],
        &command,
    );
    assert!(out.status.success(), "{command:?}: {}", text(&out));
    let plugin = bin.join("rancher-cni");
    let version = Command::new(&plugin)
        .env("CNI_COMMAND", "VERSION")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("the installed plugin runs");
    assert!(
        String::from_utf8_lossy(&version.stdout).contains("supportedVersions"),
        "{}",
        text(&version)
    );
}
