//! MQTT out: the daemon's clients (`client`), the outbox publisher
//! (`outbox`) and courier schedules (`schedules`).
//!
//! rumqttc rules kept here: the event loop is polled by its own task, never
//! publishes, and never waits on anything past cancellation; reconnect backoff
//! is ours; in-flight messages live only in memory, so an outbox row is stamped
//! published only after the broker acknowledged that row's message (QoS 1
//! PUBACK, matched by packet id: see `outbox::Tracker`). Delivery is at least
//! once; every event carries a unique `id` for consumers to drop duplicates.
//! Only the outbox client reports deliveries; the schedules client's reports
//! nothing.

mod client;
mod outbox;
pub mod schedules;

pub use client::{AcknowledgedClient, Delivery, MqttClient, connect, connect_acknowledged};
pub use outbox::{PublishError, run_outbox};

use crate::config::MqttConfig;
use crate::runtime::broker::Embedded;

/// Where the daemon's MQTT clients connect.
#[derive(Debug, Clone)]
pub struct BrokerAddress {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl BrokerAddress {
    /// The configured external broker, or the embedded one started (its
    /// gateway, with the daemon's login).
    pub fn from_config(config: &MqttConfig, embedded: Option<&Embedded>) -> BrokerAddress {
        match (config, embedded) {
            (
                MqttConfig::External {
                    host,
                    port,
                    username,
                    password,
                },
                _,
            ) => BrokerAddress {
                host: host.clone(),
                port: *port,
                username: username.clone(),
                password: password.clone(),
            },
            (MqttConfig::Embedded { .. }, Some(embedded)) => BrokerAddress {
                host: embedded.addr.ip().to_string(),
                port: embedded.addr.port(),
                username: Some(embedded.daemon_user.clone()),
                password: Some(embedded.daemon_password.clone()),
            },
            (MqttConfig::Embedded { listen }, None) => BrokerAddress {
                host: listen.ip().to_string(),
                port: listen.port(),
                username: None,
                password: None,
            },
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://{}:{}", self.host, self.port)
    }
}
