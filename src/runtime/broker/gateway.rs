//! The embedded broker's access gateway: the only door to rumqttd, which
//! listens on a loopback port nobody is told and accepts only the gateway's
//! own login (drawn at each start). The gateway speaks MQTT 3.1.1 (rumqttc's
//! codec): it authenticates each CONNECT against [`Users`], then relays
//! packets both ways, checking every client PUBLISH topic, SUBSCRIBE filter
//! and will topic against that client's [`Identity`].
//!
//! - A refused SUBSCRIBE filter gets 0x80 in the SUBACK; the allowed ones go
//!   on to the broker (or the gateway answers alone when none is allowed).
//! - A refused PUBLISH is dropped: QoS 0 silently, QoS 1 with a PUBACK (so the
//!   client does not wait forever, as Mosquitto does), QoS 2 by closing the
//!   connection. Each refusal is counted in
//!   `fabflow_mqtt_denied_total{action}` and logged with the client id.
//! - Client ids are prefixed with the user name upstream, so no user can
//!   take over another user's session.
//! - Packets over the size limit close the connection, as rumqttd does.
//!
//! Architecture invariant: the gateway never changes a payload and never
//! publishes on its own; it only forwards, filters and answers refusals.

use super::access::Identity;
use super::users::Users;
use bytes::{Bytes, BytesMut};
use rumqttc::mqttbytes::v4::{
    ConnAck, ConnectReturnCode, Packet, PubAck, Publish, SubAck, Subscribe, SubscribeReasonCode,
};
use rumqttc::mqttbytes::{self, PacketType, QoS, check};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tracing::{Instrument, debug, info_span, warn};

/// How the gateway reaches the broker behind it, and its limits.
pub struct Gateway {
    /// rumqttd's private loopback address.
    pub upstream: SocketAddr,
    /// The login rumqttd accepts (the gateway's only).
    pub upstream_user: String,
    pub upstream_password: String,
    pub users: Users,
    /// Largest packet a client may send (bytes after the fixed header).
    pub max_packet_size: usize,
    /// Time a new connection has to send its CONNECT.
    pub connect_timeout: Duration,
    /// Open client connections at most; more are closed at once.
    pub max_connections: usize,
    /// Failed logins per client address.
    pub logins: LoginGuard,
}

/// Failed logins counted per client address and minute. Past
/// [`LoginGuard::MAX_FAILURES`] in a minute, each further refusal from that
/// address waits [`LoginGuard::TARPIT`] before its CONNACK and is logged at
/// debug level only: guessing gets slow and cannot flood the log. A valid
/// login is still checked and accepted (as on the HTTP edge): clients
/// behind one address (a factory's NAT) are not locked out by one of them.
#[derive(Debug, Default)]
pub struct LoginGuard {
    failures: Mutex<HashMap<std::net::IpAddr, (u32, std::time::Instant)>>,
}

impl LoginGuard {
    pub const MAX_FAILURES: u32 = 20;
    pub const WINDOW: Duration = Duration::from_secs(60);
    pub const TARPIT: Duration = Duration::from_secs(1);
    /// Addresses remembered at most; the expired are dropped first, then all.
    const MAX_ADDRESSES: usize = 10_000;

    /// Counts a failed login from `ip`; true if it is past the limit.
    pub fn failed(&self, ip: std::net::IpAddr, now: std::time::Instant) -> bool {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if failures.len() >= Self::MAX_ADDRESSES {
            failures.retain(|_, (_, since)| now.duration_since(*since) < Self::WINDOW);
            if failures.len() >= Self::MAX_ADDRESSES {
                failures.clear();
            }
        }
        let entry = failures.entry(ip).or_insert((0, now));
        if now.duration_since(entry.1) >= Self::WINDOW {
            *entry = (0, now);
        }
        entry.0 = entry.0.saturating_add(1);
        entry.0 > Self::MAX_FAILURES
    }
}

#[derive(Debug, thiserror::Error)]
enum GatewayError {
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
    #[error("MQTT: {0}")]
    Protocol(#[from] mqttbytes::Error),
    #[error("no CONNECT within the time limit")]
    ConnectTimeout,
    #[error("first packet is not CONNECT")]
    NotConnect,
    #[error("a second CONNECT")]
    SecondConnect,
    #[error("refused QoS 2 publish")]
    RefusedExactlyOnce,
    #[error("broker: {0}")]
    Upstream(String),
    #[error("client writer stopped")]
    WriterStopped,
}

/// Accepts clients on `listener` for as long as the process lives (like
/// rumqttd, the gateway has no stop: the daemon's clients stop first).
pub async fn serve(listener: TcpListener, gateway: Arc<Gateway>) {
    // Bounds open connections; a permit is held by each connection's task.
    let slots = Arc::new(Semaphore::new(gateway.max_connections));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                warn!(error = %err, "MQTT gateway: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            metrics::counter!("fabflow_mqtt_denied_total", "action" => "connection_limit")
                .increment(1);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let gateway = Arc::clone(&gateway);
        tokio::spawn(
            async move {
                if let Err(err) = connection(stream, &gateway).await {
                    debug!(error = %err, "MQTT gateway connection closed");
                }
                drop(permit);
            }
            .instrument(info_span!("mqtt_gateway", peer = %peer)),
        );
    }
}

/// Room made for each read (a thousand idle connections hold little).
const READ_CHUNK: usize = 4096;

/// Most bytes a relay gathers before writing them on.
const WRITE_BATCH: usize = 256 * 1024;

/// Packets waiting for the client, taken at once (one write for them all).
const CLIENT_BATCH: usize = 64;

/// Empties a written batch; one grown past twice the usual size (a
/// packet near the size limit) is given back, not kept for the
/// connection's life.
fn release(batch: &mut BytesMut) {
    batch.clear();
    if batch.capacity() > 2 * WRITE_BATCH {
        *batch = BytesMut::new();
    }
}

/// The next whole packet already in `buffer`, if there is one.
fn buffered_frame(
    buffer: &mut BytesMut,
    max_size: usize,
) -> Result<Option<(mqttbytes::FixedHeader, Bytes)>, GatewayError> {
    match check(buffer.iter(), max_size) {
        Ok(header) => {
            let frame = buffer.split_to(header.frame_length()).freeze();
            Ok(Some((header, frame)))
        }
        Err(mqttbytes::Error::InsufficientBytes(_)) => Ok(None),
        Err(err) => Err(err.into()),
    }
}

/// Reads one whole packet; None at a clean end of stream.
async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    buffer: &mut BytesMut,
    max_size: usize,
) -> Result<Option<(mqttbytes::FixedHeader, Bytes)>, GatewayError> {
    loop {
        if let Some(frame) = buffered_frame(buffer, max_size)? {
            return Ok(Some(frame));
        }
        buffer.reserve(READ_CHUNK);
        if reader.read_buf(buffer).await? == 0 {
            return if buffer.is_empty() {
                Ok(None)
            } else {
                Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof).into())
            };
        }
    }
}

/// The protocol name and level of a CONNECT frame, read by hand: rumqttc's
/// decoder takes MQTT 5 for 3.1.1 and would misread the rest.
fn protocol_of(frame: &[u8]) -> Option<(&[u8], u8)> {
    let length_bytes = frame[1..].iter().take_while(|b| *b & 0x80 != 0).count() + 1;
    let rest = frame.get(1 + length_bytes..)?;
    let name_len = u16::from_be_bytes([*rest.first()?, *rest.get(1)?]) as usize;
    let name = rest.get(2..2 + name_len)?;
    Some((name, *rest.get(2 + name_len)?))
}

fn encode(packet: &Packet) -> Bytes {
    let mut out = BytesMut::new();
    // Packets the gateway makes are small and well-formed.
    let _ = packet.write(&mut out, usize::MAX);
    out.freeze()
}

fn denied(action: &'static str) {
    metrics::counter!("fabflow_mqtt_denied_total", "action" => action).increment(1);
}

async fn refuse(client: &mut TcpStream, code: ConnectReturnCode) -> Result<(), GatewayError> {
    client
        .write_all(&encode(&Packet::ConnAck(ConnAck::new(code, false))))
        .await?;
    let _ = client.shutdown().await;
    Ok(())
}

async fn connection(mut client: TcpStream, gateway: &Gateway) -> Result<(), GatewayError> {
    let mut from_client = BytesMut::with_capacity(4096);
    let first = tokio::time::timeout(
        gateway.connect_timeout,
        read_frame(&mut client, &mut from_client, gateway.max_packet_size),
    )
    .await
    .map_err(|_| GatewayError::ConnectTimeout)??;
    let Some((header, frame)) = first else {
        return Ok(());
    };
    if header.packet_type()? != PacketType::Connect {
        return Err(GatewayError::NotConnect);
    }
    match protocol_of(&frame) {
        Some((b"MQTT", 4)) => {}
        Some((b"MQTT", 5)) => {
            // MQTT 5 CONNACK: no flags, 0x84 unsupported protocol version, no properties.
            denied("connect");
            client.write_all(&[0x20, 0x03, 0x00, 0x84, 0x00]).await?;
            let _ = client.shutdown().await;
            return Ok(());
        }
        _ => {
            denied("connect");
            return refuse(&mut client, ConnectReturnCode::RefusedProtocolVersion).await;
        }
    }
    let mut connect = match Packet::read(&mut BytesMut::from(&frame[..]), gateway.max_packet_size)?
    {
        Packet::Connect(connect) => connect,
        _ => return Err(GatewayError::NotConnect),
    };
    let client_id = connect.client_id.clone();
    let Some(login) = connect.login.take() else {
        denied("connect");
        warn!(mqtt.client = %client_id, "MQTT connection refused: no user name and password");
        return refuse(&mut client, ConnectReturnCode::NotAuthorized).await;
    };
    let identity = match gateway
        .users
        .authenticate(&login.username, &login.password)
        .await
    {
        Ok(Some(identity)) => identity,
        Ok(None) => {
            denied("connect");
            let ip = client.peer_addr().map(|peer| peer.ip());
            let throttled = ip.is_ok_and(|ip| gateway.logins.failed(ip, std::time::Instant::now()));
            if throttled {
                metrics::counter!("fabflow_mqtt_denied_total", "action" => "login_throttled")
                    .increment(1);
                debug!(mqtt.client = %client_id, mqtt.user = %login.username, "MQTT connection refused: bad user name or password (address over its failure limit)");
                tokio::time::sleep(LoginGuard::TARPIT).await;
            } else {
                warn!(mqtt.client = %client_id, mqtt.user = %login.username, "MQTT connection refused: bad user name or password");
            }
            return refuse(&mut client, ConnectReturnCode::BadUserNamePassword).await;
        }
        Err(err) => {
            warn!(error = %err, "MQTT gateway cannot read its users");
            return refuse(&mut client, ConnectReturnCode::ServiceUnavailable).await;
        }
    };
    if let Some(will) = &connect.last_will
        && !identity.may_publish(&will.topic)
    {
        denied("will");
        warn!(mqtt.client = %client_id, mqtt.user = %identity.user, topic = %will.topic, "MQTT connection refused: will topic not allowed");
        return refuse(&mut client, ConnectReturnCode::NotAuthorized).await;
    }
    if client_id.is_empty() && !connect.clean_session {
        return refuse(&mut client, ConnectReturnCode::BadClientId).await;
    }
    connect.client_id = if client_id.is_empty() {
        format!("{}:{}", identity.user, uuid::Uuid::new_v4().simple())
    } else {
        format!("{}:{client_id}", identity.user)
    };
    connect.set_login(
        gateway.upstream_user.clone(),
        gateway.upstream_password.clone(),
    );

    let mut broker = tokio::time::timeout(
        gateway.connect_timeout,
        TcpStream::connect(gateway.upstream),
    )
    .await
    .map_err(|_| GatewayError::Upstream("connect timed out".into()))??;
    let _ = broker.set_nodelay(true);
    broker.write_all(&encode(&Packet::Connect(connect))).await?;
    let mut from_broker = BytesMut::with_capacity(4096);
    let connack = tokio::time::timeout(
        gateway.connect_timeout,
        read_frame(&mut broker, &mut from_broker, usize::MAX),
    )
    .await
    .map_err(|_| GatewayError::Upstream("no CONNACK".into()))??;
    let Some((header, frame)) = connack else {
        return Err(GatewayError::Upstream("closed before CONNACK".into()));
    };
    if header.packet_type()? != PacketType::ConnAck {
        return Err(GatewayError::Upstream("first packet is not CONNACK".into()));
    }
    client.write_all(&frame).await?;
    if frame.get(3) != Some(&0) {
        return Err(GatewayError::Upstream("refused the connection".into()));
    }

    let (mut client_read, mut client_write) = client.into_split();
    let (mut broker_read, mut broker_write) = broker.into_split();
    // Packets for the client, from both directions (relayed from the broker,
    // or the gateway's own answers to refusals). Bounded: a client that does
    // not read holds up its own connection only. Dropped with the connection.
    let (to_client, mut outgoing) = mpsc::channel::<Bytes>(64);
    // SUBSCRIBEs sent on with some filters removed: by packet id, which of
    // the client's filters went on (true) or were refused (false).
    let narrowed: Mutex<HashMap<u16, Vec<bool>>> = Mutex::default();
    let session = Session {
        identity: &identity,
        client_id: &client_id,
        narrowed: &narrowed,
    };

    // Each relay passes on, in one write, every whole packet a read
    // brought (a burst of publishes is one write upward, not one each).
    let upward = async {
        let mut batch = BytesMut::new();
        while let Some(first) =
            read_frame(&mut client_read, &mut from_client, gateway.max_packet_size).await?
        {
            let mut next = Some(first);
            while let Some((header, frame)) = next {
                match session.upward(header, frame)? {
                    Upward::Broker(bytes) => batch.extend_from_slice(&bytes),
                    Upward::Client(bytes) => to_client
                        .send(bytes)
                        .await
                        .map_err(|_| GatewayError::WriterStopped)?,
                    Upward::Drop => {}
                }
                next = match batch.len() < WRITE_BATCH {
                    true => buffered_frame(&mut from_client, gateway.max_packet_size)?,
                    false => None,
                };
            }
            if !batch.is_empty() {
                broker_write.write_all(&batch).await?;
                release(&mut batch);
            }
        }
        Ok::<_, GatewayError>(())
    };
    let downward = async {
        while let Some((header, frame)) =
            read_frame(&mut broker_read, &mut from_broker, usize::MAX).await?
        {
            let bytes = session.downward(header, frame)?;
            to_client
                .send(bytes)
                .await
                .map_err(|_| GatewayError::WriterStopped)?;
        }
        Ok::<_, GatewayError>(())
    };
    let writer = async {
        let mut packets = Vec::new();
        let mut batch = BytesMut::new();
        while outgoing.recv_many(&mut packets, CLIENT_BATCH).await > 0 {
            if let [one] = packets.as_slice() {
                client_write.write_all(one).await?;
            } else {
                for packet in &packets {
                    batch.extend_from_slice(packet);
                }
                client_write.write_all(&batch).await?;
                release(&mut batch);
            }
            packets.clear();
        }
        Ok::<_, GatewayError>(())
    };
    // Whichever side ends first ends the connection; dropping the broker
    // side without a DISCONNECT lets rumqttd send the client's will, as the
    // client itself went away without one.
    tokio::select! {
        ended = upward => ended,
        ended = downward => ended,
        ended = writer => ended,
    }
}

/// What becomes of one packet from the client.
enum Upward {
    Broker(Bytes),
    Client(Bytes),
    Drop,
}

/// One client's connection: who it is and what it asked for.
struct Session<'a> {
    identity: &'a Identity,
    client_id: &'a str,
    narrowed: &'a Mutex<HashMap<u16, Vec<bool>>>,
}

impl Session<'_> {
    fn upward(&self, header: mqttbytes::FixedHeader, frame: Bytes) -> Result<Upward, GatewayError> {
        match header.packet_type()? {
            PacketType::Publish => {
                let publish = Publish::read(header, frame.clone())?;
                if self.identity.may_publish(&publish.topic) {
                    return Ok(Upward::Broker(frame));
                }
                denied("publish");
                warn!(mqtt.client = %self.client_id, mqtt.user = %self.identity.user, topic = %publish.topic, "MQTT publish refused");
                match publish.qos {
                    QoS::AtMostOnce => Ok(Upward::Drop),
                    QoS::AtLeastOnce => Ok(Upward::Client(encode(&Packet::PubAck(PubAck::new(
                        publish.pkid,
                    ))))),
                    QoS::ExactlyOnce => Err(GatewayError::RefusedExactlyOnce),
                }
            }
            PacketType::Subscribe => {
                let subscribe = Subscribe::read(header, frame.clone())?;
                let allowed: Vec<bool> = subscribe
                    .filters
                    .iter()
                    .map(|filter| self.identity.may_subscribe(&filter.path))
                    .collect();
                for filter in subscribe.filters.iter().zip(&allowed) {
                    if let (filter, false) = filter {
                        denied("subscribe");
                        warn!(mqtt.client = %self.client_id, mqtt.user = %self.identity.user, filter = %filter.path, "MQTT subscription refused");
                    }
                }
                if allowed.iter().all(|ok| *ok) {
                    return Ok(Upward::Broker(frame));
                }
                if !allowed.iter().any(|ok| *ok) {
                    let codes = vec![SubscribeReasonCode::Failure; allowed.len()];
                    return Ok(Upward::Client(encode(&Packet::SubAck(SubAck::new(
                        subscribe.pkid,
                        codes,
                    )))));
                }
                let kept = Subscribe {
                    pkid: subscribe.pkid,
                    filters: subscribe
                        .filters
                        .into_iter()
                        .zip(&allowed)
                        .filter(|(_, ok)| **ok)
                        .map(|(filter, _)| filter)
                        .collect(),
                };
                self.narrowed
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .insert(kept.pkid, allowed);
                Ok(Upward::Broker(encode(&Packet::Subscribe(kept))))
            }
            PacketType::Connect => Err(GatewayError::SecondConnect),
            _ => Ok(Upward::Broker(frame)),
        }
    }

    /// A packet from the broker, as the client gets it: a SUBACK for a
    /// narrowed SUBSCRIBE gets 0x80 back in the refused filters' places.
    fn downward(
        &self,
        header: mqttbytes::FixedHeader,
        frame: Bytes,
    ) -> Result<Bytes, GatewayError> {
        if header.packet_type()? != PacketType::SubAck {
            return Ok(frame);
        }
        let suback = SubAck::read(header, frame.clone())?;
        let Some(allowed) = self
            .narrowed
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(&suback.pkid)
        else {
            return Ok(frame);
        };
        let mut granted = suback.return_codes.into_iter();
        let codes = allowed
            .iter()
            .map(|ok| match ok {
                true => granted.next().unwrap_or(SubscribeReasonCode::Failure),
                false => SubscribeReasonCode::Failure,
            })
            .collect();
        Ok(encode(&Packet::SubAck(SubAck::new(suback.pkid, codes))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{IpAddr, Ipv4Addr};
    use std::time::Instant;

    #[test]
    fn failures_are_limited_per_address_and_minute() {
        let guard = LoginGuard::default();
        let (one, two) = (
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
            IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
        );
        let start = Instant::now();
        for n in 1..=LoginGuard::MAX_FAILURES {
            assert!(!guard.failed(one, start), "failure {n} is within the limit");
        }
        assert!(guard.failed(one, start), "one past the limit");
        assert!(
            !guard.failed(two, start),
            "another address has its own count"
        );
        let later = start + LoginGuard::WINDOW;
        assert!(!guard.failed(one, later), "a new minute starts a new count");
    }

    #[test]
    fn the_table_of_addresses_stays_bounded() {
        let guard = LoginGuard::default();
        let now = Instant::now();
        for n in 0..(LoginGuard::MAX_ADDRESSES as u32 + 5) {
            guard.failed(IpAddr::V4(Ipv4Addr::from(n)), now);
        }
        let size = guard
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len();
        assert!(size <= LoginGuard::MAX_ADDRESSES, "{size} addresses kept");
    }
}
