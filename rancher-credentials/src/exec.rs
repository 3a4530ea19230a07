//! The kubelet exec protocol: one request on stdin, one response on stdout.
//!
//! [`run`] reads stdin to its end, parses the request strictly
//! ([`Request::from_json`]), asks the provider within a deadline, and writes
//! exactly one response document. On any failure nothing is written to stdout;
//! the caller prints the error's [`one_line`](Error::one_line) text on stderr and
//! exits with its [`exit_code`](Error::exit_code). No message quotes a credential.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::{
    model::{self, Request, Response},
    provider::{self, CredentialProvider},
};

/// The deadline [`run`] gives the provider: comfortably inside the kubelet's hard
/// one-minute limit, after which it kills the plugin.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(50);

/// The largest request accepted on stdin. Real requests are well under 10 KiB
/// (an image name, a token, a few annotations).
pub const MAX_REQUEST_BYTES: u64 = 1 << 20;

/// Exit code for a request the plugin cannot accept.
pub const EXIT_INVALID_REQUEST: u8 = 2;
/// Exit code for a provider failure, a timeout, or an I/O error.
pub const EXIT_FAILURE: u8 = 1;

/// Why an invocation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Reading stdin failed.
    #[error("failed to read the request from stdin")]
    ReadRequest(#[source] std::io::Error),
    /// The request is larger than [`MAX_REQUEST_BYTES`].
    #[error("request on stdin is larger than {MAX_REQUEST_BYTES} bytes")]
    RequestTooLarge,
    /// The request is not a valid `CredentialProviderRequest`.
    #[error("invalid request")]
    InvalidRequest(#[source] model::Error),
    /// The provider failed.
    #[error("no credentials for {image}")]
    Provider {
        /// The image from the request.
        image: String,
        /// The provider's error.
        #[source]
        source: provider::Error,
    },
    /// The provider did not answer within the deadline.
    #[error("no credentials for {image}: the provider did not answer within {after:?}")]
    Timeout {
        /// The image from the request.
        image: String,
        /// The deadline.
        after: Duration,
    },
    /// Writing stdout failed.
    #[error("failed to write the response to stdout")]
    WriteResponse(#[source] std::io::Error),
}

/// Result of an invocation.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The process exit code for this error: [`EXIT_INVALID_REQUEST`] for a
    /// request that cannot be accepted, [`EXIT_FAILURE`] otherwise.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::RequestTooLarge | Self::InvalidRequest(_) => EXIT_INVALID_REQUEST,
            _ => EXIT_FAILURE,
        }
    }

    /// The error and its causes on one line, `outer: inner: innermost`, for
    /// stderr. The kubelet shows it in its own log.
    pub fn one_line(&self) -> String {
        one_line(self)
    }
}

/// Any error and its causes on one line, `outer: inner: innermost`.
pub fn one_line(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        line.push_str(": ");
        line.push_str(&cause.to_string());
        source = cause.source();
    }
    line.replace(['\n', '\r'], " ")
}

/// Serves one kubelet request with the default deadline ([`DEFAULT_TIMEOUT`]).
pub async fn run<R, W, P>(stdin: R, stdout: W, provider: &P) -> Result<Response>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    P: CredentialProvider + ?Sized,
{
    run_with_timeout(stdin, stdout, provider, DEFAULT_TIMEOUT).await
}

/// Serves one kubelet request: reads the request from `stdin` to its end, asks
/// `provider` within `timeout`, writes the response to `stdout` and returns it.
/// On error nothing is written.
pub async fn run_with_timeout<R, W, P>(
    mut stdin: R,
    mut stdout: W,
    provider: &P,
    timeout: Duration,
) -> Result<Response>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
    P: CredentialProvider + ?Sized,
{
    let mut input = Vec::new();
    (&mut stdin)
        .take(MAX_REQUEST_BYTES + 1)
        .read_to_end(&mut input)
        .await
        .map_err(Error::ReadRequest)?;
    if input.len() as u64 > MAX_REQUEST_BYTES {
        return Err(Error::RequestTooLarge);
    }
    let request = Request::from_json(&input).map_err(Error::InvalidRequest)?;
    tracing::debug!(image = %request.image, "credentials requested");

    let response = match tokio::time::timeout(timeout, provider.credentials(&request)).await {
        Ok(Ok(response)) => response,
        Ok(Err(source)) => {
            return Err(Error::Provider {
                image: request.image,
                source,
            });
        }
        Err(_elapsed) => {
            return Err(Error::Timeout {
                image: request.image,
                after: timeout,
            });
        }
    };
    tracing::debug!(
        image = %request.image,
        keys = response.auth.len(),
        cache_key_type = ?response.cache_key_type,
        "credentials found"
    );
    stdout
        .write_all(&response.to_json())
        .await
        .map_err(Error::WriteResponse)?;
    stdout.flush().await.map_err(Error::WriteResponse)?;
    Ok(response)
}

#[cfg(test)]
mod tests {
    use async_trait::async_trait;

    use super::*;
    use crate::model::{AuthConfig, CacheKeyType};

    /// Answers with one credential for the image's registry, or fails.
    struct Echo {
        fail: bool,
        hang: bool,
    }

    #[async_trait]
    impl CredentialProvider for Echo {
        async fn credentials(&self, request: &Request) -> provider::Result<Response> {
            if self.hang {
                std::future::pending::<()>().await;
            }
            if self.fail {
                return Err(provider::Error::Backend {
                    backend: "echo".into(),
                    source: "connection refused".into(),
                });
            }
            Ok(Response::new(CacheKeyType::Registry)
                .with_cache_duration(Some(Duration::from_secs(60)))
                .with_auth(
                    crate::matching::registry(&request.image),
                    AuthConfig::new("user", "hunter2"),
                ))
        }
    }

    const OK: Echo = Echo {
        fail: false,
        hang: false,
    };

    async fn invoke(input: &[u8], provider: &Echo) -> (Result<Response>, Vec<u8>) {
        let mut out = Vec::new();
        let result = run_with_timeout(input, &mut out, provider, Duration::from_secs(5)).await;
        (result, out)
    }

    #[tokio::test]
    async fn answers_one_request_with_one_document() {
        let request = Request::new("registry.example.org:5000/team/app").to_json();
        let (result, out) = invoke(&request, &OK).await;
        let response = result.unwrap();
        assert_eq!(Response::from_json(&out).unwrap(), response);
        assert_eq!(out.iter().filter(|&&b| b == b'\n').count(), 1);
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["cacheDuration"], "1m0s");
        assert_eq!(
            value["auth"]["registry.example.org:5000"]["password"],
            "hunter2"
        );
    }

    #[tokio::test]
    async fn invalid_requests_write_nothing_and_exit_2() {
        for input in [
            &b""[..],
            b"{",
            br#"{"kind":"CredentialProviderRequest","apiVersion":"v1","image":"a"}"#,
            br#"{"kind":"Pod","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":"a"}"#,
            br#"{"kind":"CredentialProviderRequest","apiVersion":"credentialprovider.kubelet.k8s.io/v1","image":""}"#,
        ] {
            let (result, out) = invoke(input, &OK).await;
            let err = result.unwrap_err();
            assert_eq!(err.exit_code(), EXIT_INVALID_REQUEST, "{err}");
            assert!(out.is_empty());
            assert!(!err.one_line().contains('\n'));
            assert!(err.one_line().starts_with("invalid request: "), "{}", err.one_line());
        }
    }

    #[tokio::test]
    async fn oversized_requests_are_refused() {
        let input = vec![b' '; MAX_REQUEST_BYTES as usize + 10];
        let (result, out) = invoke(&input, &OK).await;
        assert!(matches!(result, Err(Error::RequestTooLarge)));
        assert!(out.is_empty());
    }

    #[tokio::test]
    async fn provider_failures_write_nothing_and_exit_1() {
        let request = Request::new("registry.example.org/app").to_json();
        let (result, out) = invoke(
            &request,
            &Echo {
                fail: true,
                hang: false,
            },
        )
        .await;
        let err = result.unwrap_err();
        assert_eq!(err.exit_code(), EXIT_FAILURE);
        assert_eq!(
            err.one_line(),
            "no credentials for registry.example.org/app: echo failed: connection refused"
        );
        assert!(out.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn a_hanging_provider_fails_at_the_deadline() {
        let request = Request::new("registry.example.org/app").to_json();
        let hang = Echo {
            fail: false,
            hang: true,
        };
        let mut out = Vec::new();
        let err = run(&request[..], &mut out, &hang).await.unwrap_err();
        assert!(
            matches!(err, Error::Timeout { after, .. } if after == DEFAULT_TIMEOUT),
            "{err}"
        );
        assert_eq!(err.exit_code(), EXIT_FAILURE);
        assert!(out.is_empty());
    }
}
