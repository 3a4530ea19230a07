//! `rancher-credential-provider`: a kubelet image credential provider plugin.
//! Reads one `CredentialProviderRequest` on stdin and writes one
//! `CredentialProviderResponse` on stdout; errors go to stderr as one line.

use std::{io::Write as _, process::ExitCode};

use clap::Parser;
use rancher_credentials::{cli::ProviderArgs, exec};
use rancher_runtime::log::LogArgs;

/// Registry credentials for the kubelet from Docker config files, Secrets or Rancher.
#[derive(Parser)]
#[command(name = "rancher-credential-provider", version)]
struct Args {
    #[command(flatten)]
    providers: ProviderArgs,
    #[command(flatten)]
    log: LogArgs,
}

fn main() -> ExitCode {
    rancher_runtime::install_crypto_provider();
    let args = Args::parse();
    args.log.init("warn");
    // One request per process: a single-threaded runtime starts fastest.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => return fail(&format!("failed to start the runtime: {err}"), 1),
    };
    let code = runtime.block_on(async {
        let provider = match args.providers.provider().await {
            Ok(provider) => provider,
            Err(err) => return fail(&exec::one_line(&err), 1),
        };
        let (stdin, stdout) = (tokio::io::stdin(), tokio::io::stdout());
        match exec::run_with_timeout(stdin, stdout, &provider, args.providers.timeout).await {
            Ok(_) => ExitCode::SUCCESS,
            Err(err) => fail(&err.one_line(), err.exit_code()),
        }
    });
    // Do not wait for a request still hanging on a blocking thread.
    runtime.shutdown_background();
    code
}

/// One line on stderr, which the kubelet adds to its log, and the exit code.
fn fail(message: &str, code: u8) -> ExitCode {
    // If stderr is gone there is nobody left to tell.
    let _ = writeln!(std::io::stderr(), "rancher-credential-provider: {message}");
    ExitCode::from(code)
}
