//! Random, truncated and hostile packets: the server answers FORMERR,
//! NOTIMP, REFUSED (or a proper answer) or drops, never panics, and keeps
//! serving.

use std::sync::Arc;

use rancher_dns::model::Options;
use rancher_dns::server::{Handler, Outcome, ServerConfig};

use crate::common::{dig, start};

fn valid(rng: &mut fastrand::Rng) -> Vec<u8> {
    let names = [
        "web.ns.svc.cluster.local",
        "mongodb.ns.svc.cluster.local",
        "x.example.org",
        "cluster.local",
    ];
    let mut p = vec![rng.u8(..), rng.u8(..), 0x01, 0, 0, 1, 0, 0, 0, 0, 0, 0];
    for label in names[rng.usize(..names.len())].split('.') {
        p.push(label.len() as u8);
        p.extend(label.as_bytes());
    }
    p.push(0);
    p.extend([0, [1, 28, 33, 12, 16, 255, 252, 99][rng.usize(..8)], 0, 1]);
    p
}

fn hostile(rng: &mut fastrand::Rng) -> Vec<u8> {
    let mut p = valid(rng);
    match rng.u8(..10) {
        0 => (0..rng.usize(..600)).map(|_| rng.u8(..)).collect(),
        1 => {
            let at = rng.usize(..p.len());
            p.truncate(at);
            p
        }
        2 => {
            for _ in 0..rng.usize(1..8) {
                let i = rng.usize(..p.len());
                p[i] = rng.u8(..);
            }
            p
        }
        3 => {
            // Compression loop: the question name points at itself.
            p.truncate(12);
            p.extend([0xc0, 12, 0, 1, 0, 1]);
            p
        }
        4 => {
            // Oversized label.
            p.truncate(12);
            p.push(rng.u8(64..=255));
            p.extend((0..200).map(|_| b'a'));
            p.extend([0, 0, 1, 0, 1]);
            p
        }
        5 => {
            // Unknown type and class.
            let n = p.len();
            p[n - 4..].copy_from_slice(&[rng.u8(..), rng.u8(..), rng.u8(..), rng.u8(..)]);
            p
        }
        6 => {
            // Many questions.
            p[4..6].copy_from_slice(&rng.u16(2..).to_be_bytes());
            p
        }
        7 => {
            // Additional records with a compression loop, or several OPTs.
            p[11] = rng.u8(1..4);
            for _ in 0..p[11] {
                if rng.bool() {
                    p.extend([0xc0, (p.len() & 0xff) as u8]);
                } else {
                    p.push(0);
                }
                p.extend([0, 41, rng.u8(..), rng.u8(..), 0, rng.u8(..2), 0, 0, 0, 0]);
            }
            p
        }
        8 => {
            // Opcodes other than QUERY, or a response.
            p[2] = rng.u8(..);
            p
        }
        _ => {
            // Claims records it does not carry.
            p[6..12].copy_from_slice(&[
                rng.u8(..),
                rng.u8(..),
                rng.u8(..),
                rng.u8(..),
                rng.u8(..),
                rng.u8(..),
            ]);
            p
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_never_panics_and_answers_sanely() {
    let r = start(Options::default(), vec![], true).await;
    let handler = Handler::new(
        r.backend.snapshots(),
        &ServerConfig::default(),
        r.metrics.clone(),
    );
    let mut rng = fastrand::Rng::with_seed(0x5eed);
    let mut out = Vec::new();
    let (mut replies, mut drops) = (0, 0);
    for _ in 0..200_000 {
        let p = hostile(&mut rng);
        for tcp in [false, true] {
            match handler.answer(&p, &mut out, tcp) {
                Outcome::Reply => {
                    replies += 1;
                    assert!(out.len() >= 12, "short response to {p:?}");
                    assert_eq!(out[..2], p[..2], "id echoed");
                    assert_ne!(out[2] & 0x80, 0, "QR set");
                    assert!(
                        [0, 1, 2, 3, 4, 5].contains(&(out[3] & 0x0f)),
                        "rcode {}",
                        out[3] & 0x0f
                    );
                    if !tcp {
                        assert!(out.len() <= 65535);
                    }
                }
                Outcome::Drop => drops += 1,
                Outcome::Forward(_) | Outcome::Chase(_) => {}
            }
        }
    }
    assert!(
        replies > 100_000 && drops > 0,
        "{replies} replies, {drops} drops"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_serving_after_junk_over_udp_and_tcp() {
    use tokio::io::AsyncWriteExt;
    let r = Arc::new(start(Options::default(), vec![], true).await);
    let a = r.addr();
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..5_000 {
        let _ = sock.send_to(&hostile(&mut rng), a).await;
    }
    for _ in 0..50 {
        let mut s = tokio::net::TcpStream::connect(a).await.unwrap();
        let p = hostile(&mut rng);
        let claimed = if rng.bool() {
            p.len() as u16
        } else {
            rng.u16(..)
        };
        let _ = s.write_all(&claimed.to_be_bytes()).await;
        let _ = s.write_all(&p).await;
        drop(s);
    }
    let (udp, tcp) = tokio::task::spawn_blocking(move || {
        (
            dig(a, &["web.ns.svc.cluster.local", "A"]),
            dig(a, &["web.ns.svc.cluster.local", "A", "+tcp"]),
        )
    })
    .await
    .unwrap();
    assert_eq!(udp.data(), vec!["10.43.0.7"]);
    assert_eq!(tcp.data(), vec!["10.43.0.7"]);
}
