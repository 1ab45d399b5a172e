//! The HTTP edge under sockets that misbehave: idle connections and slow
//! headers are closed by the daemon, the connection limit keeps file handles
//! free, and the API answers again as soon as they are gone; a request whose
//! body never completes is answered 408.

mod support;

use fabflow::config::{Config, MqttConfig};
use std::net::SocketAddr;
use std::time::Duration;
use support::Running;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const LIMIT: usize = 16;

async fn daemon(dir: &std::path::Path) -> Running {
    daemon_with(dir, |_| {}).await
}

async fn daemon_with(dir: &std::path::Path, change: impl FnOnce(&mut Config)) -> Running {
    let mut config = Config::demo().expect("demo config");
    config.database.url = format!("sqlite://{}", dir.join("edge.db").display());
    config.mqtt = MqttConfig::Embedded {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    config.machines = Vec::new();
    config.http.header_read_timeout_ms = 500;
    config.http.request_timeout_ms = 500;
    config.http.max_connections = LIMIT;
    change(&mut config);
    Running::start(config).await
}

/// Waits until the daemon closes `socket` (EOF or reset), reading and
/// dropping whatever it sends first.
async fn closed_by_daemon(socket: &mut TcpStream) -> bool {
    let mut buffer = [0u8; 1024];
    let closing = async {
        loop {
            match socket.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), closing)
        .await
        .is_ok()
}

async fn healthz(base: &str) -> Option<u16> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .build()
        .ok()?;
    let response = client.get(format!("{base}/healthz")).send().await.ok()?;
    Some(response.status().as_u16())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_sockets_are_closed_and_the_api_answers_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let running = daemon(dir.path()).await;
    let address = running.daemon.http;

    // Twice the limit of sockets that never send a byte, and one that
    // sends half a request header and then nothing.
    let mut idle = Vec::new();
    for _ in 0..2 * LIMIT {
        idle.push(TcpStream::connect(address).await.expect("connect"));
    }
    let mut slow = TcpStream::connect(address).await.expect("connect");
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: fabflow\r\n")
        .await
        .expect("half a header");

    // The daemon closes every one of them (held open by this client).
    assert!(closed_by_daemon(&mut slow).await, "a slow header is closed");
    for (n, socket) in idle.iter_mut().enumerate() {
        assert!(closed_by_daemon(socket).await, "idle socket {n} is closed");
    }
    // And the API answers, with the sockets still open on this side.
    let status = support::wait_for("healthz answers", Duration::from_secs(30), || {
        let base = running.base.clone();
        async move { healthz(&base).await }
    })
    .await;
    assert_eq!(status, 200);

    // A kept-alive connection with no second request is closed too.
    let mut kept = TcpStream::connect(address).await.expect("connect");
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: fabflow\r\n\r\n")
        .await
        .expect("request");
    let mut head = [0u8; 12];
    kept.read_exact(&mut head).await.expect("response");
    assert_eq!(&head, b"HTTP/1.1 200");
    assert!(
        closed_by_daemon(&mut kept).await,
        "an idle keep-alive is closed"
    );

    drop(idle);
    running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_never_completes_is_answered_408() {
    let dir = tempfile::tempdir().expect("temp dir");
    let running = daemon(dir.path()).await;
    let token = running.token(fabflow::api::auth::Role::Brand, "acme").await;
    let mut socket = TcpStream::connect(running.daemon.http)
        .await
        .expect("connect");
    let head = format!(
        "POST /v1/orders HTTP/1.1\r\nHost: fabflow\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"customer\":"
    );
    socket.write_all(head.as_bytes()).await.expect("request");
    let mut response = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), async {
        let mut buffer = [0u8; 4096];
        loop {
            match socket.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    response.extend_from_slice(&buffer[..n]);
                    if response.windows(4).any(|w| w == b"\r\n\r\n") && response.ends_with(b"}") {
                        break;
                    }
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "an answer within 30 s");
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("application/problem+json"), "{text}");
    assert!(text.contains("Idempotency-Key"), "{text}");
    running.stop().await;
}

/// Past the connection limit a new socket is closed at once, while those
/// holding the limit are still served; the refusal is counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_past_the_limit_are_closed_at_once() {
    const HELD: usize = 4;
    let dir = tempfile::tempdir().expect("temp dir");
    // Headers may take two minutes: a socket closed within the 30 s that
    // `closed_by_daemon` waits was closed by the limit, not by a timer.
    let running = daemon_with(dir.path(), |config| {
        config.http.header_read_timeout_ms = 120_000;
        config.http.request_timeout_ms = 120_000;
        config.http.max_connections = HELD;
    })
    .await;
    let address = running.daemon.http;
    let mut held = Vec::new();
    for _ in 0..HELD {
        held.push(TcpStream::connect(address).await.expect("connect"));
    }
    let mut past = TcpStream::connect(address).await.expect("connect");
    assert!(
        closed_by_daemon(&mut past).await,
        "a socket past the limit is closed"
    );

    // The sockets holding the limit are served.
    let first = &mut held[0];
    first
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: fabflow\r\n\r\n")
        .await
        .expect("request");
    let mut head = [0u8; 12];
    first.read_exact(&mut head).await.expect("response");
    assert_eq!(&head, b"HTTP/1.1 200");

    // Once they are gone, the API answers new connections and counts the
    // refusal.
    drop(held);
    let metrics = support::wait_for("metrics answer", Duration::from_secs(30), || {
        let base = running.base.clone();
        async move {
            let response = reqwest::get(format!("{base}/metrics")).await.ok()?;
            response.text().await.ok()
        }
    })
    .await;
    let refused = metrics
        .lines()
        .find_map(|line| line.strip_prefix("fabflow_http_connections_refused_total "))
        .and_then(|n| n.trim().parse::<f64>().ok());
    assert!(refused.is_some_and(|n| n >= 1.0), "{refused:?}");
    running.stop().await;
}
