//! An HTTP echo backend for load balancer tests and benchmarks.

use std::net::SocketAddr;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// An HTTP/1.1 keep-alive backend on 127.0.0.1 that answers every request with
/// the body `NAME PATH`, so a request through a load balancer shows which
/// backend served it and what path reached it. Stops when dropped.
#[derive(Debug)]
pub struct HttpEcho {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl HttpEcho {
    /// Starts a backend named `name` on a free port.
    pub async fn start(name: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let name = name.to_owned();
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve(stream, name.clone()));
            }
        });
        Ok(Self { addr, task })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Drop for HttpEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Serves requests without bodies on one connection until the client goes.
async fn serve(stream: TcpStream, name: String) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut request = String::new();
        if reader.read_line(&mut request).await.unwrap_or(0) == 0 {
            return;
        }
        let path = request.split(' ').nth(1).unwrap_or_default().to_owned();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).await.unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
        }
        let body = format!("{name} {path}");
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
