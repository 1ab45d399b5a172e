//! The embedded MQTT broker (rumqttd), so the demo and small sites need no
//! external service. rumqttd's `start()` blocks forever and has no shutdown
//! call, so it gets its own thread that lives as long as the process.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    #[error("embedded MQTT broker: cannot pick a free port: {0}")]
    Port(std::io::Error),
    #[error("embedded MQTT broker: bad config: {0}")]
    Config(String),
    #[error("embedded MQTT broker did not accept connections on {0} within 10 s (port in use?)")]
    NotListening(SocketAddr),
}

/// Starts a broker on `listen` (port 0: a free port is picked) and returns
/// once it accepts connections, with the address it listens on.
pub fn start(listen: SocketAddr) -> Result<SocketAddr, BrokerError> {
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
max_segment_size = 104857600
max_segment_count = 10
[v4.1]
name = "v4-1"
listen = "{addr}"
next_connection_delay_ms = 1
[v4.1.connections]
connection_timeout_ms = 60000
max_payload_size = 4194304
max_inflight_count = 500
dynamic_filters = true
"#
    );
    let config: rumqttd::Config =
        toml::from_str(&text).map_err(|err| BrokerError::Config(err.to_string()))?;
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
