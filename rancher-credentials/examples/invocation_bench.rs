//! Wall time of one `rancher-credential-provider` invocation, process start to
//! exit, as the kubelet runs it: with the Docker config provider, and with the
//! Rancher provider against the fake Rancher server in this process.
//!
//! ```text
//! cargo build --release -p rancher-examples --bin rancher-credential-provider
//! cargo run --release -p rancher-credentials --example invocation_bench -- [BINARY] [RUNS]
//! ```
//!
//! BINARY defaults to `target/release/rancher-credential-provider`, RUNS to 200.
//! Prints one table row per provider: median, p90, p99 and max.

use std::{
    error::Error,
    io::Write as _,
    path::PathBuf,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use rancher_client::{Registry, RegistryCredential, testing::FakeRancher};
use rancher_credentials::model::{Request, Response};

const WARMUP: usize = 5;

/// A provider's name, its flags and its environment.
type Scenario = (&'static str, Vec<String>, Vec<(&'static str, String)>);

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn Error>> {
    rancher_runtime::install_crypto_provider();
    let mut args = std::env::args().skip(1);
    let binary = args.next().map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/release/rancher-credential-provider")
    });
    let runs: usize = args.next().map(|n| n.parse()).transpose()?.unwrap_or(200);
    if !binary.exists() {
        return Err(format!(
            "{} not found: build it first (see the module docs)",
            binary.display()
        )
        .into());
    }

    let dir = tempfile::tempdir()?;
    let config = dir.path().join("config.json");
    std::fs::write(
        &config,
        r#"{"auths":{"registry.example.org":{"username":"robot","password":"s3cr3t"},"registry.example.org:5000":{"username":"port","password":"p0rt"}}}"#,
    )?;
    let fake = FakeRancher::builder().start().await?;
    for (address, user, password) in [
        ("registry.example.org", "robot", "s3cr3t"),
        ("quay.io", "foo", "qwerty"),
        ("registry.example.net:5000", "bar", "asdfgh"),
    ] {
        let registry = fake.seed(&Registry::new(address))?;
        fake.seed(&RegistryCredential::new(&registry.meta.id, user, password))?;
    }

    let request = Request::new("registry.example.org/team/app").to_json();
    let config_arg = format!("--docker-config={}", config.display());
    let scenarios: Vec<Scenario> = vec![
        ("docker config file", vec![config_arg], Vec::new()),
        (
            "rancher (fake server)",
            vec!["--rancher".to_owned()],
            fake.env(),
        ),
    ];

    let mut out = std::io::stdout().lock();
    writeln!(
        out,
        "binary: {}, {runs} runs each after {WARMUP} warm-up runs",
        binary.display()
    )?;
    writeln!(out, "| provider | runs | median | p90 | p99 | max |")?;
    writeln!(out, "| --- | --- | --- | --- | --- | --- |")?;
    for (name, args, env) in scenarios {
        let binary = binary.clone();
        let request = request.clone();
        // Blocking process runs on their own thread; the fake keeps serving.
        let mut times = tokio::task::spawn_blocking(move || -> Result<Vec<Duration>, String> {
            let mut times = Vec::with_capacity(runs);
            for i in 0..WARMUP + runs {
                let elapsed = invoke(&binary, &args, &env, &request)?;
                if i >= WARMUP {
                    times.push(elapsed);
                }
            }
            Ok(times)
        })
        .await??;
        times.sort();
        let pick =
            |q: f64| times[((times.len() as f64 * q).ceil() as usize).clamp(1, times.len()) - 1];
        writeln!(
            out,
            "| {name} | {runs} | {} | {} | {} | {} |",
            ms(pick(0.5)),
            ms(pick(0.9)),
            ms(pick(0.99)),
            ms(times[times.len() - 1])
        )?;
    }
    Ok(())
}

/// One invocation, start to exit; checks that it answered.
fn invoke(
    binary: &PathBuf,
    args: &[String],
    env: &[(&str, String)],
    request: &[u8],
) -> Result<Duration, String> {
    let start = Instant::now();
    let mut child = Command::new(binary)
        .args(args)
        .env_remove("RUST_LOG")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("spawn: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(request)
            .map_err(|e| format!("stdin: {e}"))?;
    }
    let output = child.wait_with_output().map_err(|e| format!("wait: {e}"))?;
    let elapsed = start.elapsed();
    if !output.status.success() {
        return Err(format!(
            "exit {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    let response = Response::from_json(&output.stdout).map_err(|e| e.to_string())?;
    if response.auth.is_empty() {
        return Err("no credentials in the response".to_owned());
    }
    Ok(elapsed)
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1000.0)
}
