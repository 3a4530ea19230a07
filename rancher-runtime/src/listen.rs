//! Binding listening sockets with errors that name the address and the flag.
//!
//! A binary that fails to start because a port is taken should say which
//! address and which flag to change: "binding the admin server to
//! 0.0.0.0:10254 (--admin)", caused by "Address already in use". Every
//! listening socket a binary opens from a flag goes through [`BindError`].

use std::{io, net::SocketAddr};

use tokio::net::TcpListener;

/// A listening socket could not be bound.
///
/// Displays as `binding the <what> to <addr> (<flag>)`; the operating
/// system's reason is the [`source`](std::error::Error::source).
#[derive(Debug, thiserror::Error)]
#[error("binding the {what} to {addr}{}", flag.map(|f| format!(" ({f})")).unwrap_or_default())]
pub struct BindError {
    /// What listens there, e.g. `admin server`, `dns server (udp)`.
    pub what: &'static str,
    /// The address asked for.
    pub addr: SocketAddr,
    /// The flag the address came from, e.g. `--admin`; `None` when it came
    /// from code.
    pub flag: Option<&'static str>,
    /// Why it failed.
    #[source]
    pub source: io::Error,
}

impl BindError {
    /// An error binding `what` to `addr`, from `flag`.
    pub fn new(
        what: &'static str,
        addr: SocketAddr,
        flag: Option<&'static str>,
        source: io::Error,
    ) -> Self {
        Self {
            what,
            addr,
            flag,
            source,
        }
    }

    /// Whether another socket holds the address.
    pub fn is_addr_in_use(&self) -> bool {
        self.source.kind() == io::ErrorKind::AddrInUse
    }
}

/// Binds a TCP listener for `what` on `addr` (from `flag`).
pub async fn tcp(
    what: &'static str,
    addr: SocketAddr,
    flag: Option<&'static str>,
) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError::new(what, addr, flag, source))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_taken_port_names_the_address_the_flag_and_the_reason() {
        let taken = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = taken.local_addr().unwrap();
        let error = tcp("admin server", addr, Some("--admin"))
            .await
            .unwrap_err();
        assert!(error.is_addr_in_use());
        assert_eq!(
            error.to_string(),
            format!("binding the admin server to {addr} (--admin)")
        );
        let cause = std::error::Error::source(&error).unwrap().to_string();
        assert!(cause.contains("Address already in use"), "{cause}");
        let from_code = BindError::new("probe", addr, None, io::ErrorKind::AddrInUse.into());
        assert_eq!(
            from_code.to_string(),
            format!("binding the probe to {addr}")
        );
    }
}
