//! The built-in echo server every container port runs instead of the container's image:
//! an HTTP request is answered `POD PATH`, any other TCP connection gets `POD` and then
//! its own bytes back, a UDP datagram gets `POD`. Each request is a line in the
//! container's log.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio_util::sync::CancellationToken;

use super::logs::ContainerLog;

/// How long a TCP client may stay silent before it is greeted as a plain TCP client.
const GREETING_DELAY: Duration = Duration::from_millis(250);
/// The largest request head or body read.
const MAX_REQUEST: usize = 64 * 1024;

/// Who answers: the pod's name and the container's log.
#[derive(Debug)]
pub(crate) struct Echo {
    pub(crate) pod: String,
    pub(crate) log: Arc<ContainerLog>,
}

/// Serves TCP on an already bound listener until `stop`.
pub(crate) fn serve_tcp(
    listener: std::net::TcpListener,
    echo: Arc<Echo>,
    stop: CancellationToken,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let listener = TcpListener::from_std(listener)?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                accepted = listener.accept() => {
                    if let Ok((stream, peer)) = accepted {
                        let (echo, stop) = (echo.clone(), stop.clone());
                        tokio::spawn(async move {
                            tokio::select! {
                                () = connection(stream, peer, &echo) => {}
                                () = stop.cancelled() => {}
                            }
                        });
                    }
                }
                () = stop.cancelled() => return,
            }
        }
    });
    Ok(())
}

/// Serves UDP on an already bound socket until `stop`.
pub(crate) fn serve_udp(
    socket: std::net::UdpSocket,
    echo: Arc<Echo>,
    stop: CancellationToken,
) -> io::Result<()> {
    socket.set_nonblocking(true)?;
    let socket = UdpSocket::from_std(socket)?;
    tokio::spawn(async move {
        let mut buf = vec![0u8; 65_536];
        loop {
            tokio::select! {
                got = socket.recv_from(&mut buf) => {
                    if let Ok((n, peer)) = got {
                        echo.log.push(format!("{} UDP datagram of {n} bytes", peer.ip()));
                        let _ = socket.send_to(format!("{}\n", echo.pod).as_bytes(), peer).await;
                    }
                }
                () = stop.cancelled() => return,
            }
        }
    });
    Ok(())
}

/// Whether the first bytes are an HTTP request line's method and a space.
fn looks_like_http(first: &[u8]) -> bool {
    let method: Vec<u8> = first.iter().copied().take_while(|b| *b != b' ').collect();
    !method.is_empty()
        && method.len() <= 10
        && method.len() < first.len()
        && method.iter().all(u8::is_ascii_uppercase)
}

async fn connection(stream: TcpStream, peer: SocketAddr, echo: &Echo) {
    let mut reader = BufReader::new(stream);
    let http = match tokio::time::timeout(GREETING_DELAY, reader.fill_buf()).await {
        Ok(Ok([])) | Ok(Err(_)) => return,
        Ok(Ok(first)) => looks_like_http(first),
        Err(_) => false,
    };
    if http {
        http_requests(reader, peer, echo).await;
    } else {
        echo.log.push(format!("{} TCP connection", peer.ip()));
        let mut stream = reader;
        if stream
            .get_mut()
            .write_all(format!("{}\n", echo.pod).as_bytes())
            .await
            .is_err()
        {
            return;
        }
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if stream.get_mut().write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// Keep-alive HTTP/1.x: each request answered with the pod's name and the path.
async fn http_requests(mut reader: BufReader<TcpStream>, peer: SocketAddr, echo: &Echo) {
    loop {
        let mut request = String::new();
        match reader.read_line(&mut request).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let mut parts = request.split_whitespace();
        let method = parts.next().unwrap_or("GET").to_string();
        let path = parts.next().unwrap_or("/").to_string();
        let version = parts.next().unwrap_or("HTTP/1.0").to_string();
        let mut length = 0usize;
        let mut agent = String::from("-");
        let mut close = version == "HTTP/1.0";
        let mut head = request.len();
        loop {
            let mut line = String::new();
            match reader.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(n) => head += n,
            }
            if line == "\r\n" || line == "\n" || head > MAX_REQUEST {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                let value = value.trim();
                match name.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = value.parse().unwrap_or(0),
                    "user-agent" => agent = value.to_string(),
                    "connection" => close = value.eq_ignore_ascii_case("close"),
                    _ => {}
                }
            }
        }
        if length > 0 {
            let mut body = vec![0u8; length.min(MAX_REQUEST)];
            if reader.read_exact(&mut body).await.is_err() {
                return;
            }
        }
        let body = format!("{} {path}\n", echo.pod);
        let time = jiff::Timestamp::now()
            .strftime("%d/%b/%Y:%H:%M:%S +0000")
            .to_string();
        echo.log.push(format!(
            "{} - - [{time}] \"{method} {path} {version}\" 200 {} \"-\" \"{agent}\"",
            peer.ip(),
            body.len()
        ));
        let response = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n{}\r\n{}",
            body.len(),
            if close { "Connection: close\r\n" } else { "" },
            if method == "HEAD" { "" } else { body.as_str() }
        );
        if reader
            .get_mut()
            .write_all(response.as_bytes())
            .await
            .is_err()
            || close
        {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_is_told_from_other_protocols() {
        assert!(looks_like_http(b"GET / HTTP/1.1\r\n"));
        assert!(looks_like_http(b"OPTIONS *"));
        assert!(!looks_like_http(b"GET"));
        assert!(!looks_like_http(b"\x16\x03\x01"));
        assert!(!looks_like_http(b"hello world"));
    }

    #[tokio::test]
    async fn answers_http_and_tcp() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let log = super::super::logs::PodLogs::default().open("ns", "web-1", "c");
        let echo = Arc::new(Echo {
            pod: "web-1".into(),
            log: log.clone(),
        });
        let stop = CancellationToken::new();
        serve_tcp(listener, echo, stop.clone()).unwrap();
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /foo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
        assert!(out.ends_with("web-1 /foo\n"), "{out}");
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut greeting = [0u8; 6];
        s.read_exact(&mut greeting).await.unwrap();
        assert_eq!(&greeting, b"web-1\n");
        stop.cancel();
    }
}
