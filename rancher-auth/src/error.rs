//! Why an authenticator or an authorizer could not answer.

/// A boxed error from a backend.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// An authenticator or authorizer could not tell: the answer is unknown, not "no".
///
/// The webhook server turns every `Error` into a non-200 answer, which kube-apiserver neither
/// caches nor reads as a yes, so an outage never lets anybody in (fail closed). Messages name
/// the backend and what failed, never a token or a key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The backend could not be reached or failed (Rancher down, 5xx, connection refused).
    #[error("{backend} is unavailable")]
    Unavailable {
        /// Which backend: `rancher`, `local tokens`.
        backend: String,
        /// The cause.
        #[source]
        source: BoxError,
    },
    /// The backend did not answer in time.
    #[error("{backend} did not answer within {after:?}")]
    Timeout {
        /// Which backend.
        backend: String,
        /// How long we waited.
        after: std::time::Duration,
    },
    /// The backend answered with something that is not an answer (garbage, a wrong shape).
    #[error("{backend} answered with an invalid response: {reason}")]
    InvalidResponse {
        /// Which backend.
        backend: String,
        /// What was wrong with it.
        reason: String,
    },
    /// The backend is not ready to answer yet (its first load has not finished).
    #[error("{backend} is not ready")]
    NotReady {
        /// Which backend.
        backend: String,
    },
}

impl Error {
    /// `Unavailable` for `backend` with `source`.
    pub fn unavailable(backend: impl Into<String>, source: impl Into<BoxError>) -> Self {
        Self::Unavailable {
            backend: backend.into(),
            source: source.into(),
        }
    }

    /// `InvalidResponse` for `backend`.
    pub fn invalid_response(backend: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::InvalidResponse {
            backend: backend.into(),
            reason: reason.into(),
        }
    }

    /// The message and its causes on one line (`a: b: c`), for logs and answers.
    pub fn one_line(&self) -> String {
        let mut line = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            line.push_str(": ");
            line.push_str(&cause.to_string());
            source = cause.source();
        }
        line
    }
}

/// Result of authenticators and authorizers.
pub type Result<T, E = Error> = std::result::Result<T, E>;
