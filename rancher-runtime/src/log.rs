//! Tracing setup for binaries: filter from `RUST_LOG`, plain or JSON lines, on
//! stderr.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

/// The log line format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Plain,
    /// One JSON object per line.
    Json,
}

/// Logging settings.
#[derive(Clone, Debug, Default)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct LogArgs {
    /// The log format.
    #[cfg_attr(
        feature = "clap",
        arg(long = "log-format", value_enum, default_value = "plain")
    )]
    pub format: LogFormat,
}

impl LogArgs {
    /// Installs the global subscriber, writing to stderr. The filter comes from
    /// `RUST_LOG`, else `default_filter` (e.g. `info`). Does nothing if a
    /// subscriber is already installed.
    pub fn init(&self, default_filter: &str) {
        let filter =
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
        let registry = tracing_subscriber::registry().with(filter);
        let result = match self.format {
            LogFormat::Plain => registry
                .with(fmt::layer().with_writer(std::io::stderr))
                .try_init(),
            LogFormat::Json => registry
                .with(fmt::layer().json().with_writer(std::io::stderr))
                .try_init(),
        };
        // An error only means a subscriber was installed already (tests, embedding).
        drop(result);
    }
}
