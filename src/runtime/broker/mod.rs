//! The embedded MQTT broker, so the demo and small sites need no external
//! service: rumqttd behind an access gateway (`gateway`) that authenticates
//! every client (`users`) and holds it to its topic rules (`access`).
//! rumqttd's `start()` blocks forever and has no shutdown call, so it gets
//! its own thread that lives as long as the process.
//!
//! Architecture invariant: rumqttd listens only on a loopback port that is
//! never published, and accepts only the gateway's login, drawn at each start
//! and held in memory; every client, the daemon's own included, goes through
//! the gateway.

pub mod access;
mod gateway;
pub mod users;

use crate::store::Store;
use gateway::Gateway;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};
use users::{DAEMON_USER, Users, generate_password};

/// Largest packet a client may send, after the fixed header (rumqttd's
/// `max_payload_size` too).
pub const MAX_PACKET_SIZE: usize = 4 * 1024 * 1024;

/// Size of one segment of a filter's in-memory message log (the embedded
/// broker's), and how many segments a filter keeps: at most
/// `SEGMENT_BYTES * SEGMENT_COUNT` (plus one message) per filter, what a
/// subscriber may lag behind before it skips messages (a few thousand
/// events).
const SEGMENT_BYTES: usize = 512 * 1024;
const SEGMENT_COUNT: usize = 4;

/// The same for each MQTT machine's own report and command topics: one
/// filter per machine each, read at once by the machine's link (the
/// daemon's, or the machine's), so a few dozen messages of slack is plenty,
/// and a thousand machines hold a few MiB rather than a few GiB.
const MACHINE_SEGMENT_BYTES: usize = 4 * 1024;
const MACHINE_SEGMENT_COUNT: usize = 4;

/// A started embedded broker.
#[derive(Debug, Clone)]
pub struct Embedded {
    /// The gateway's address: where clients connect.
    pub addr: SocketAddr,
    /// The daemon's user name and this run's password for it.
    pub daemon_user: String,
    pub daemon_password: String,
}

/// Starts rumqttd on a private loopback port and the access gateway on
/// `listen` (port 0: a free port is picked); returns once both accept
/// connections. Users are read from `store` at each CONNECT, so a user
/// created or rotated with the CLI counts at once.
/// `machine_topics` are the configured MQTT machines' own topics, by user
/// name (see [`Users::new`]).
pub async fn start_embedded(
    listen: SocketAddr,
    store: Store,
    machine_topics: std::collections::HashMap<String, access::MachineTopics>,
) -> Result<Embedded, BrokerError> {
    let machine_filters: Vec<String> = machine_topics
        .values()
        .flat_map(|topics| [topics.report.clone(), topics.command.clone()])
        .collect();
    let upstream_user = "gateway".to_string();
    let upstream_password = generate_password();
    let login = (upstream_user.clone(), upstream_password.clone());
    let upstream = tokio::task::spawn_blocking(move || {
        start_rumqttd(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            Some(login),
            &machine_filters,
        )
    })
    .await
    .map_err(|err| BrokerError::Config(err.to_string()))??;
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .map_err(|err| BrokerError::Bind(listen, err))?;
    let addr = listener
        .local_addr()
        .map_err(|err| BrokerError::Bind(listen, err))?;
    let daemon_password = generate_password();
    let gateway = Gateway {
        upstream,
        upstream_user,
        upstream_password,
        users: Users::new(store, &daemon_password, machine_topics),
        max_packet_size: MAX_PACKET_SIZE,
        connect_timeout: Duration::from_secs(10),
        max_connections: 1000,
        logins: gateway::LoginGuard::default(),
    };
    tokio::spawn(gateway::serve(listener, Arc::new(gateway)));
    Ok(Embedded {
        addr,
        daemon_user: DAEMON_USER.to_string(),
        daemon_password,
    })
}

/// Starts a bare rumqttd on `listen` with no logins and no topic rules, for
/// tests of MQTT clients alone; the daemon uses [`start_embedded`].
pub fn start_open(listen: SocketAddr) -> Result<SocketAddr, BrokerError> {
    start_rumqttd(listen, None, &[])
}

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("embedded MQTT broker: cannot pick a free port: {0}")]
    Port(std::io::Error),
    #[error("embedded MQTT broker: bad config: {0}")]
    Config(String),
    #[error("embedded MQTT broker: cannot listen on {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
    #[error("embedded MQTT broker did not accept connections on {0} within 10 s (port in use?)")]
    NotListening(SocketAddr),
}

/// Starts rumqttd on `listen` (port 0: a free port is picked), accepting
/// only `login` if given, and returns once it accepts connections, with the
/// address it listens on.
///
/// rumqttd keeps every message published on a subscribed filter in that
/// filter's in-memory log until the log's segments are full
/// (bytebeamio/rumqtt#957), up to ten 100 MB segments each by default. The
/// log is only what lagging subscribers catch up from, so 2 MiB per filter
/// is kept (a subscriber further behind skips to the oldest message kept;
/// the event log and `GET /v1/events` are the durable record). Each MQTT
/// machine's own report and command topics (`machine_filters`), one filter
/// each per machine, keep 16 KiB: with one size for all, 300 machines
/// reporting once a second would each fill their own log, about 0.1 MiB/s
/// in all, for hours.
fn start_rumqttd(
    listen: SocketAddr,
    login: Option<(String, String)>,
    machine_filters: &[String],
) -> Result<SocketAddr, BrokerError> {
    let addr = if listen.port() == 0 {
        let probe = TcpListener::bind(listen).map_err(BrokerError::Port)?;
        probe.local_addr().map_err(BrokerError::Port)?
    } else {
        listen
    };
    if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
        return Err(BrokerError::NotListening(addr));
    }
    let text = format!(
        r#"
id = 0
[router]
id = 0
max_connections = 1000
max_outgoing_packet_count = 1000
max_segment_size = {SEGMENT_BYTES}
max_segment_count = {SEGMENT_COUNT}
[v4.1]
name = "v4-1"
listen = "{addr}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = {MAX_PACKET_SIZE}
max_inflight_count = 500
dynamic_filters = true
"#
    );
    let mut config: rumqttd::Config =
        toml::from_str(&text).map_err(|err| BrokerError::Config(err.to_string()))?;
    if !machine_filters.is_empty() {
        config.router.custom_segment = Some(
            machine_filters
                .iter()
                .map(|topic| {
                    (
                        topic.clone(),
                        rumqttd::SegmentConfig {
                            max_segment_size: MACHINE_SEGMENT_BYTES,
                            max_segment_count: MACHINE_SEGMENT_COUNT,
                        },
                    )
                })
                .collect(),
        );
    }
    if let Some((user, password)) = login {
        for server in config
            .v4
            .iter_mut()
            .flat_map(|servers| servers.values_mut())
        {
            server.connections.auth = Some([(user.clone(), password.clone())].into());
        }
    }
    std::thread::Builder::new()
        .name("mqtt-broker".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(err) = broker.start() {
                tracing::error!(error = %err, "embedded MQTT broker stopped");
            }
        })
        .map_err(BrokerError::Port)?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(addr);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(BrokerError::NotListening(addr))
}
