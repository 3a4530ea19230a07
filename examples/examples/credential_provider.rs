//! Your own `CredentialProvider`: a registry mirror that uses the credentials
//! of the registry it mirrors, read from the sandbox's `regcred` Secret.
//!
//! Run with (the sandbox running in another terminal):
//!
//! ```text
//! echo '{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"mirror.example.net/app"}' \
//!   | cargo run -q -p rancher-examples --example credential_provider -- --kubeconfig target/sandbox/kubeconfig
//! ```
//!
//! The kubelet writes one request on stdin and reads one response on stdout;
//! `exec::run` does that part, the provider only answers.

use async_trait::async_trait;
use clap::Parser;
use rancher_credentials::model::{Request, Response};
use rancher_credentials::provider::Result;
use rancher_credentials::provider::secret::{SecretConfig, SecretProvider, SecretRef};
use rancher_credentials::{CredentialProvider, exec, matching};
use rancher_runtime::client::ClientArgs;

/// Images of `mirror` get the credentials `inner` has for `upstream`.
struct Mirror<P> {
    mirror: String,
    upstream: String,
    inner: P,
}

#[async_trait]
impl<P: CredentialProvider> CredentialProvider for Mirror<P> {
    async fn credentials(&self, request: &Request) -> Result<Response> {
        if matching::registry(&request.image) != self.mirror {
            return self.inner.credentials(request).await;
        }
        let path = request.image.split_once('/').map_or("", |(_, path)| path);
        let upstream = Request::new(format!("{}/{path}", self.upstream));
        let answer = self.inner.credentials(&upstream).await?;
        let mut response =
            Response::new(answer.cache_key_type).with_cache_duration(answer.cache_duration);
        for auth in answer.auth.into_values() {
            response = response.with_auth(self.mirror.clone(), auth);
        }
        Ok(response)
    }
}

/// Answers one kubelet request for mirror.example.net from Secret default/regcred.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    client: ClientArgs,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    rancher_runtime::install_crypto_provider();
    let client = Args::parse().client.client().await?;
    let secret = SecretProvider::new(
        client,
        SecretConfig::new(SecretRef::new("default", "regcred")),
    );
    let provider = Mirror {
        mirror: "mirror.example.net".to_owned(),
        upstream: "registry.example.org".to_owned(),
        inner: secret,
    };
    if let Err(err) = exec::run(tokio::io::stdin(), tokio::io::stdout(), &provider).await {
        anyhow::bail!("{}", err.one_line());
    }
    Ok(())
}
