//! Echo HTTP backends: each answers every request with its name and the
//! request path, so a `curl` through a load balancer shows which backend
//! served it.

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// Binds `addr` and serves until `shutdown`; the body of every response is
/// `NAME PATH\n`.
///
/// # Errors
///
/// When `addr` cannot be bound.
pub(super) async fn start(
    addr: SocketAddr,
    name: String,
    shutdown: CancellationToken,
) -> std::io::Result<tokio::task::JoinHandle<()>> {
    let listener = TcpListener::bind(addr).await?;
    Ok(tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    if let Ok((stream, _)) = accepted {
                        tokio::spawn(serve(stream, name.clone(), shutdown.clone()));
                    }
                }
                () = shutdown.cancelled() => return,
            }
        }
    }))
}

async fn serve(stream: TcpStream, name: String, shutdown: CancellationToken) {
    tokio::select! {
        () = connection(stream, &name) => {}
        () = shutdown.cancelled() => {}
    }
}

/// Serves keep-alive HTTP/1.1 requests without bodies until the client goes.
async fn connection(stream: TcpStream, name: &str) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut request = String::new();
        if reader.read_line(&mut request).await.unwrap_or(0) == 0 {
            return;
        }
        let path = request.split(' ').nth(1).unwrap_or("/").to_owned();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" || line == "\n" {
                break;
            }
        }
        let body = format!("{name} {path}\n");
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        if reader
            .get_mut()
            .write_all(response.as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}
