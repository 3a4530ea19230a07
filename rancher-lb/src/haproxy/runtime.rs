//! Talking to HAProxy over its UNIX sockets: the runtime API (stats socket,
//! `set server ...`) and the master CLI (`show proc`, `reload`).

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

/// Errors from the sockets.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Connecting, writing or reading failed.
    #[error("haproxy socket {path}: {source}")]
    Io {
        /// The socket.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No answer in time.
    #[error("haproxy socket {path}: no answer within {timeout:?}")]
    Timeout {
        /// The socket.
        path: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// HAProxy refused a command (its first line only: a payload, such as a
    /// certificate's private key, is never kept).
    #[error("haproxy refused {command:?}: {answer}")]
    Refused {
        /// The command.
        command: String,
        /// HAProxy's answer.
        answer: String,
    },
    /// An answer could not be understood.
    #[error("unexpected answer from haproxy: {0:?}")]
    Unexpected(String),
}

/// Result alias for this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Sends one command line and reads the whole answer.
pub async fn command(path: &Path, line: &str, timeout: Duration) -> Result<String> {
    let shown = path.display().to_string();
    let io = |source| Error::Io {
        path: shown.clone(),
        source,
    };
    let exchange = async {
        let mut s = UnixStream::connect(path).await.map_err(io)?;
        s.write_all(line.as_bytes()).await.map_err(io)?;
        s.write_all(b"\n").await.map_err(io)?;
        s.shutdown().await.map_err(io)?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.map_err(io)?;
        Ok(out)
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| Error::Timeout {
            path: shown.clone(),
            timeout,
        })?
}

/// Answers that mean success: `set server`, the map commands (nothing),
/// `set ssl cert` (a transaction) and `commit ssl cert` (`Success!`).
fn accepted(answer: &str) -> bool {
    let a = answer.trim();
    a.is_empty()
        || a.starts_with("IP changed from")
        || a.starts_with("no need to change")
        || a.starts_with("port changed from")
        || a.contains("changed from")
        || a.starts_with("Transaction created for certificate")
        || a.starts_with("Transaction updated for certificate")
        || (a.starts_with("Committing") && a.ends_with("Success!"))
}

/// Runs runtime API commands on the stats socket, one connection each, and
/// checks each answer.
pub async fn run(path: &Path, commands: &[String], timeout: Duration) -> Result<()> {
    for cmd in commands {
        let answer = command(path, cmd, timeout).await?;
        if !accepted(&answer) {
            return Err(Error::Refused {
                command: cmd.lines().next().unwrap_or_default().to_owned(),
                answer: answer.trim().to_owned(),
            });
        }
    }
    Ok(())
}

/// What `show proc` on the master CLI reports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Procs {
    /// The master's pid.
    pub master: u32,
    /// Reloads since the master started.
    pub reloads: u32,
    /// Failed reloads.
    pub failed_reloads: u32,
    /// Current workers' pids.
    pub workers: Vec<u32>,
    /// Old workers still finishing connections.
    pub old_workers: Vec<u32>,
}

/// Parses `show proc` (HAProxy 2.x and 3.x formats).
pub fn parse_procs(text: &str) -> Result<Procs> {
    let mut p = Procs::default();
    let mut section = "";
    let mut saw_master = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(h) = line.strip_prefix('#') {
            let h = h.trim();
            if h.starts_with("workers") {
                section = "workers";
            } else if h.starts_with("old workers") {
                section = "old";
            } else if !h.starts_with("<PID>") {
                section = "other";
            }
            continue;
        }
        let tokens: Vec<&str> = line.split_whitespace().collect();
        let Some(pid) = tokens.first().and_then(|t| t.parse::<u32>().ok()) else {
            continue;
        };
        match (tokens.get(1).copied(), section) {
            (Some("master"), _) => {
                saw_master = true;
                p.master = pid;
                p.reloads = tokens.get(2).and_then(|t| t.parse().ok()).unwrap_or(0);
                if let Some(i) = tokens.iter().position(|t| *t == "[failed:") {
                    p.failed_reloads = tokens
                        .get(i + 1)
                        .map(|t| t.trim_end_matches(']'))
                        .and_then(|t| t.parse().ok())
                        .unwrap_or(0);
                }
            }
            (Some("worker"), "workers") => p.workers.push(pid),
            (Some("worker"), "old") => p.old_workers.push(pid),
            _ => {}
        }
    }
    if saw_master {
        Ok(p)
    } else {
        Err(Error::Unexpected(text.chars().take(200).collect()))
    }
}

/// `show proc` on the master CLI.
pub async fn show_proc(master: &Path, timeout: Duration) -> Result<Procs> {
    parse_procs(&command(master, "show proc", timeout).await?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_show_proc_of_2_6() {
        let text = "#<PID>          <type>          <reloads>       <uptime>        <version>      \n\
            5329            master          1 [failed: 0]   0d00h10m18s     2.6.12-1+deb12u4\n\
            # workers\n\
            5442            worker          0               0d00h10m14s     2.6.12-1+deb12u4\n\
            # old workers\n\
            5332            worker          1               0d00h10m20s     2.6.12-1+deb12u4\n\
            # programs\n\n";
        let p = parse_procs(text).unwrap();
        assert_eq!(
            p,
            Procs {
                master: 5329,
                reloads: 1,
                failed_reloads: 0,
                workers: vec![5442],
                old_workers: vec![5332],
            }
        );
        assert!(parse_procs("Unknown command\n").is_err());
    }

    #[test]
    fn recognises_set_server_answers() {
        assert!(accepted(""));
        assert!(accepted(
            "no need to change the addr, port changed from '1' to '9' by 'stats socket command'"
        ));
        assert!(accepted(
            "IP changed from '127.0.0.1' to '10.0.0.1', port changed from '1' to '80' by 'stats socket command'"
        ));
        assert!(!accepted("No such server."));
        assert!(accepted(
            "Transaction created for certificate /run/lb/gen-1/certs/a:org.pem!"
        ));
        assert!(accepted(
            "Committing /run/lb/gen-1/certs/a:org.pem\n.\nSuccess!\n"
        ));
        assert!(!accepted(
            "Committing /run/lb/gen-1/certs/a:org.pem\nError!\nunable to load the key"
        ));
    }
}
