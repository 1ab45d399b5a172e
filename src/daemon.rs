//! The composition root: starts the runtime, puts the HTTP API on top of it,
//! and stops both in order. The only module that knows both `runtime` and
//! `api`.
//!
//! Shutdown (SIGINT/SIGTERM or the caller's token): stop the HTTP server
//! first (requests in flight finish), then the runtime's stages in order
//! (see [`crate::runtime::Shutdown`]).

use crate::api::serve::EdgeLimits;
use crate::api::{self, ApiState};
use crate::config::Config;
use crate::runtime::{self, Clock, mqtt::BrokerAddress};
use crate::store::Store;
use fabflow_adapters::Profile;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tracing::info;

/// A started daemon.
pub struct Daemon {
    pub http: SocketAddr,
    pub mqtt: BrokerAddress,
    pub store: Store,
    pub clock: Clock,
    /// The leases this daemon holds now (what it drives and plans).
    pub leases: std::sync::Arc<runtime::cluster::Holdings>,
    /// Embedded broker users created at this start, with their passwords
    /// (shown once; see [`runtime::Started::mqtt_users`]).
    pub mqtt_users: Vec<runtime::broker::users::NewUser>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Daemon {
    /// Starts every part on the current runtime and returns once the API and
    /// the broker accept connections. `shutdown` stops it all, in order.
    pub async fn start(
        config: Config,
        profiles: Vec<Profile>,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Daemon> {
        let started = runtime::start(&config, &profiles).await?;
        let runtime = started.runtime;
        let (store, clock) = (runtime.store.clone(), runtime.clock);
        let leases = std::sync::Arc::clone(&runtime.leases);
        let state = ApiState::new(runtime, &config.http, metrics_handle());
        let http = listener.local_addr()?;
        let streams_stop = state.streams_stop.clone();
        let app = api::router(state);
        // Stops the HTTP server; cancelled first at shutdown.
        let http_stop = CancellationToken::new();
        let http_token = http_stop.clone();
        warn_if_handles_run_out(config.http.max_connections);
        let limits = EdgeLimits {
            header_read_timeout: Duration::from_millis(config.http.header_read_timeout_ms),
            max_connections: config.http.max_connections,
        };
        let server = tokio::spawn(api::serve::serve(listener, app, limits, http_token));
        let stages = started.shutdown;
        let mqtt_users = started.mqtt_users;
        let task = tokio::spawn(async move {
            shutdown.cancelled().await;
            info!("shutting down: stopping HTTP intake");
            http_stop.cancel();
            streams_stop.cancel();
            let served = server.await;
            stages.run().await;
            served?;
            Ok(())
        });
        Ok(Daemon {
            http,
            mqtt: started.broker,
            store,
            clock,
            leases,
            mqtt_users,
            task,
        })
    }

    /// Waits until the daemon has stopped.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await?
    }
}

/// The process-wide Prometheus recorder (installed once, shared by every
/// daemon a test starts in one process).
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            // Histograms as buckets (Grafana's histogram_quantile), not
            // summaries: HTTP requests in wall seconds, jobs in domain
            // seconds (minutes to two days), intake's group commits in
            // orders, everything else by default.
            use metrics_exporter_prometheus::Matcher;
            let http = [
                0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ];
            let jobs = [
                10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 14400.0, 28800.0, 86400.0,
                172800.0,
            ];
            let batch = [1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
            PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Prefix("fabflow_job_".into()), &jobs)
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full("fabflow_intake_batch_orders".into()),
                        &batch,
                    )
                })
                .and_then(|builder| {
                    builder.set_buckets_for_metric(
                        Matcher::Full("fabflow_http_request_seconds".into()),
                        &http,
                    )
                })
                .and_then(|builder| builder.set_buckets(&http))
                .ok()?
                .install_recorder()
                .ok()
        })
        .clone()
}

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Handles kept for everything but HTTP connections (database, broker,
/// machines, files).
const RESERVED_HANDLES: u64 = 256;

/// Warns when `[http] max_connections` could use up the process's file
/// handles before the connection limit refuses anything: the daemon then
/// keeps running, but cannot open a database file or a machine link while
/// the connections are held.
fn warn_if_handles_run_out(max_connections: usize) {
    let Ok((soft, _)) = rlimit::getrlimit(rlimit::Resource::NOFILE) else {
        return;
    };
    let wanted = max_connections as u64 + RESERVED_HANDLES;
    if wanted > soft {
        tracing::warn!(
            max_connections,
            open_files_limit = soft,
            "http.max_connections plus {RESERVED_HANDLES} handles for the rest exceeds the open-files limit; \
             lower max_connections or raise the limit (ulimit -n, LimitNOFILE=)"
        );
    }
}
