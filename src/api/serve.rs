//! The HTTP edge: accepts connections and serves the router over HTTP/1.1,
//! with the limits a public listener needs. `axum::serve` has none of them.
//!
//! - A client must send a request's whole header within
//!   `header_read_timeout`, and a kept-alive connection that sends no new
//!   request is closed after the same time (hyper's header-read timer runs
//!   from the moment a connection waits for a request head).
//! - At most `max_connections` are open; a connection past that is closed at
//!   once, so idle sockets cannot use up the daemon's file handles.
//! - The accept loop survives accept errors (out of file handles, aborted
//!   connections): it waits a moment and goes on.
//!
//! Shutdown: the listener is closed, requests in flight finish, idle
//! connections are closed.

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;
use tracing::{debug, warn};

/// The limits of the HTTP edge (see the module doc).
#[derive(Debug, Clone, Copy)]
pub struct EdgeLimits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

/// How long the accept loop waits after an accept error (file handles
/// exhausted) before it tries again.
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// Serves `router` on `listener` until `shutdown` is cancelled, then lets
/// requests in flight finish.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: EdgeLimits,
    shutdown: CancellationToken,
) {
    // One permit per open connection; a permit is returned when its
    // connection ends. Nothing waits on it: a connection past the limit is
    // closed at once.
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    metrics::counter!("fabflow_http_accept_errors_total").increment(1);
                    warn!(error = %err, "accepting a connection failed; retrying");
                    tokio::time::sleep(ACCEPT_RETRY).await;
                    continue;
                }
            },
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            metrics::counter!("fabflow_http_connections_refused_total").increment(1);
            debug!(%peer, "connection limit reached; closing the new connection");
            drop(stream);
            continue;
        };
        let service = router
            .clone()
            .map_request(move |request: Request<Incoming>| {
                let mut request = request.map(Body::new);
                request.extensions_mut().insert(ConnectInfo(peer));
                request
            });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(limits.header_read_timeout)
            .keep_alive(true)
            .serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                debug!(%peer, error = %err, "connection ended with an error");
            }
            drop(permit);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}
