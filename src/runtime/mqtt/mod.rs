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
pub use outbox::{OutboxClaim, PublishError, run_outbox, run_outbox_as};

use crate::config::MqttConfig;
use crate::runtime::broker::Embedded;
use std::path::Path;
use std::sync::Arc;

/// Why the TLS settings for the external broker cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("mqtt.ca_file {path}: {reason}")]
    CaFile { path: String, reason: String },
}

/// A rustls client configuration (ring provider) that trusts the
/// certificate authorities in the PEM file at `ca_file`.
pub fn tls_config(ca_file: &Path) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let fail = |reason: String| TlsError::CaFile {
        path: ca_file.display().to_string(),
        reason,
    };
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca_file).map_err(|err| fail(err.to_string()))?;
    for cert in certs {
        let cert = cert.map_err(|err| fail(err.to_string()))?;
        roots.add(cert).map_err(|err| fail(err.to_string()))?;
    }
    if roots.is_empty() {
        return Err(fail("no certificate in the file".into()));
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|err| fail(err.to_string()))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Arc::new(config))
}

/// Where the daemon's MQTT clients connect.
#[derive(Debug, Clone)]
pub struct BrokerAddress {
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
    /// TLS to the broker, if configured (external brokers only).
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl BrokerAddress {
    /// The same broker and login, for the MQTT machine links.
    pub fn machine_broker(&self) -> fabflow_adapters::MqttBroker {
        fabflow_adapters::MqttBroker {
            host: self.host.clone(),
            port: self.port,
            username: self.username.clone(),
            password: self.password.clone(),
            tls: self
                .tls
                .as_ref()
                .map(|tls| rumqttc::TlsConfiguration::Rustls(Arc::clone(tls))),
        }
    }

    /// The configured external broker, or the embedded one started (its
    /// gateway, with the daemon's login).
    pub fn from_config(
        config: &MqttConfig,
        embedded: Option<&Embedded>,
    ) -> Result<BrokerAddress, TlsError> {
        Ok(match (config, embedded) {
            (
                MqttConfig::External {
                    host,
                    port,
                    username,
                    password,
                    ca_file,
                },
                _,
            ) => BrokerAddress {
                host: host.clone(),
                port: *port,
                username: username.clone(),
                password: password.clone(),
                tls: ca_file.as_deref().map(tls_config).transpose()?,
            },
            (MqttConfig::Embedded { .. }, Some(embedded)) => BrokerAddress {
                host: embedded.addr.ip().to_string(),
                port: embedded.addr.port(),
                username: Some(embedded.daemon_user.clone()),
                password: Some(embedded.daemon_password.clone()),
                tls: None,
            },
            (MqttConfig::Embedded { listen }, None) => BrokerAddress {
                host: listen.ip().to_string(),
                port: listen.port(),
                username: None,
                password: None,
                tls: None,
            },
        })
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "mqtts" } else { "mqtt" };
        format!("{scheme}://{}:{}", self.host, self.port)
    }
}
