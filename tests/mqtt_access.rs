//! The embedded broker is not open to everyone (issue 10, item 1): clients
//! log in, and each is held to its topic rules by the access gateway. Seen
//! as clients see it, with rumqttc, against a whole daemon.

mod support;

use fabflow::api::auth::Role;
use fabflow::runtime::broker::access::MqttRole;
use fabflow::runtime::broker::users;
use rumqttc::{ConnectReturnCode, QoS, SubscribeReasonCode};
use serde_json::json;
use support::{BBOX, Running, SKUS, connect, login};

async fn daemon() -> (Running, fabflow_sim::Fleet, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let scale = 60.0;
    let fleet = support::fleet(5, scale).await;
    let config = support::config(&fleet, &dir.path().join("access.db"), scale);
    (Running::start(config).await, fleet, dir)
}

async fn stop(running: Running, fleet: fabflow_sim::Fleet) {
    running.stop().await;
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn anonymous_clients_and_wrong_passwords_are_refused_at_connect() {
    let (running, fleet, _dir) = daemon().await;
    let broker = &running.daemon.mqtt;
    assert_eq!(
        connect(broker, None).await.err(),
        Some(ConnectReturnCode::NotAuthorized),
        "anonymous client"
    );
    assert_eq!(
        connect(broker, Some(("van-1", "not-the-password")))
            .await
            .err(),
        Some(ConnectReturnCode::BadUserNamePassword),
        "wrong password"
    );
    assert_eq!(
        connect(broker, Some(("nobody", "x"))).await.err(),
        Some(ConnectReturnCode::BadUserNamePassword),
        "unknown user"
    );
    assert_eq!(
        connect(broker, Some(("fabflow", "x"))).await.err(),
        Some(ConnectReturnCode::BadUserNamePassword),
        "the daemon's user with a guessed password"
    );
    // The right password works, and a rotated one stops working.
    let van = running.mqtt_login("van-1");
    connect(&van, Some(login(&van)))
        .await
        .expect("van-1 logs in")
        .stop()
        .await;
    let now = running.daemon.clock.now_ms();
    let rotated = users::rotate(&running.daemon.store, "van-1", "test", now)
        .await
        .expect("store")
        .expect("van-1 exists");
    assert_eq!(
        connect(&van, Some(login(&van))).await.err(),
        Some(ConnectReturnCode::BadUserNamePassword),
        "the password before rotation"
    );
    connect(&van, Some(("van-1", &rotated)))
        .await
        .expect("the rotated password works")
        .stop()
        .await;
    // Guessing from one address past the limit: still refused (after a
    // wait), and a real login from that same address still works.
    for n in 0..25 {
        assert_eq!(
            connect(broker, Some(("van-1", &format!("guess-{n}"))))
                .await
                .err(),
            Some(ConnectReturnCode::BadUserNamePassword),
            "guess {n}"
        );
    }
    connect(&van, Some(("van-1", &rotated)))
        .await
        .expect("a real login from a throttled address")
        .stop()
        .await;
    stop(running, fleet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_courier_reads_only_its_own_schedule_and_cannot_forge_anything() {
    let (running, fleet, _dir) = daemon().await;
    let van_login = running.mqtt_login("van-1");
    let bike_login = running.mqtt_login("bike-1");
    let daemon_login = running.daemon.mqtt.clone();

    let mut van = connect(&van_login, Some(login(&van_login)))
        .await
        .expect("van-1 logs in");
    let codes = van
        .subscribe(&[
            "fabflow/v1/couriers/bike-1/schedule",
            "#",
            "fabflow/v1/couriers/+/schedule",
            "fabflow/v1/events/#",
            "fabflow/v1/couriers/van-1/#",
        ])
        .await;
    use SubscribeReasonCode::{Failure, Success};
    assert_eq!(
        codes,
        vec![
            Failure,
            Failure,
            Failure,
            Failure,
            Success(QoS::AtLeastOnce)
        ]
    );
    let mut refused = connect(&bike_login, Some(login(&bike_login)))
        .await
        .expect("bike-1 logs in");
    assert_eq!(refused.subscribe(&["#"]).await, vec![Failure]);

    // An observer sees everything that gets through.
    let observer = running.observer();
    let mut watch = connect(&observer, Some(login(&observer)))
        .await
        .expect("observer logs in");
    assert_eq!(
        watch.subscribe(&["fabflow/v1/#"]).await,
        vec![Success(QoS::AtLeastOnce)]
    );

    // Forgeries: by another courier, by the read-only observer.
    let forged = json!({"schema": 1, "courier": "van-1", "forged": true, "stops": []});
    let mut bike = refused;
    bike.publish("fabflow/v1/couriers/van-1/schedule", true, &forged)
        .await;
    bike.publish(
        "fabflow/v1/events/order.delivered",
        false,
        &json!({"forged": true, "kind": "order.delivered"}),
    )
    .await;
    watch
        .publish("fabflow/v1/couriers/van-1/schedule", true, &forged)
        .await;

    // Then the daemon publishes both couriers' schedules and an event.
    let mut daemon = connect(&daemon_login, Some(login(&daemon_login)))
        .await
        .expect("the daemon logs in");
    let schedule = |courier: &str| json!({"schema": 1, "courier": courier, "stops": []});
    daemon
        .publish(
            "fabflow/v1/couriers/bike-1/schedule",
            true,
            &schedule("bike-1"),
        )
        .await;
    daemon
        .publish(
            "fabflow/v1/couriers/van-1/schedule",
            true,
            &schedule("van-1"),
        )
        .await;
    daemon
        .publish(
            "fabflow/v1/events/test.marker",
            false,
            &json!({"marker": true}),
        )
        .await;

    // van-1 gets its own schedule (the daemon's own publisher may have sent
    // it one already, at start), and nothing else: not bike-1's, not a
    // forgery.
    let seen = van
        .until(|topic, payload| {
            topic == "fabflow/v1/couriers/van-1/schedule" && payload == &schedule("van-1")
        })
        .await;
    assert!(
        seen.iter().all(
            |(topic, payload)| topic == "fabflow/v1/couriers/van-1/schedule"
                && payload["courier"] == "van-1"
                && payload.get("forged").is_none()
        ),
        "van-1 received {seen:?}"
    );
    // The observer got the daemon's messages and no forgery before the marker.
    let seen = watch
        .until(|topic, _| topic == "fabflow/v1/events/test.marker")
        .await;
    assert!(
        seen.iter()
            .all(|(_, payload)| payload.get("forged").is_none()),
        "a forgery got through: {seen:?}"
    );

    // A later subscriber gets the daemon's retained schedule, not a forgery.
    let mut later = connect(&van_login, Some(login(&van_login)))
        .await
        .expect("van-1 logs in again");
    later
        .subscribe(&["fabflow/v1/couriers/van-1/schedule"])
        .await;
    let (_, retained) = later.next().await;
    assert_eq!(retained["courier"], "van-1");
    assert!(
        retained.get("forged").is_none(),
        "retained forgery: {retained}"
    );

    for client in [van, bike, watch, daemon, later] {
        client.stop().await;
    }
    stop(running, fleet).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_brand_receives_only_its_own_events() {
    let (running, fleet, _dir) = daemon().await;
    let store = &running.daemon.store;
    let now = running.daemon.clock.now_ms();
    let mut logins = Vec::new();
    for brand in ["brand-a", "brand-b"] {
        let user = users::create(store, MqttRole::Brand, brand, None, "test", now)
            .await
            .expect("store")
            .expect("new user");
        logins.push(user.password);
    }
    let broker = &running.daemon.mqtt;
    let mut brand_a = connect(broker, Some(("brand-a", &logins[0])))
        .await
        .expect("brand-a logs in");
    let mut brand_b = connect(broker, Some(("brand-b", &logins[1])))
        .await
        .expect("brand-b logs in");
    use SubscribeReasonCode::{Failure, Success};
    assert_eq!(
        brand_a
            .subscribe(&[
                "fabflow/v1/events/#",
                "fabflow/v1/brands/+/events/#",
                "fabflow/v1/brands/brand-b/events/#",
                "fabflow/v1/brands/brand-a/events/#",
            ])
            .await,
        vec![Failure, Failure, Failure, Success(QoS::AtLeastOnce)]
    );
    assert_eq!(
        brand_b
            .subscribe(&["fabflow/v1/brands/brand-b/events/#"])
            .await,
        vec![Success(QoS::AtLeastOnce)]
    );

    // brand-b's order first: brand-b sees it; then brand-a's.
    let order = |seed| fabflow_sim::generate_orders(seed, 1, &SKUS, BBOX);
    let token_b = running.token(Role::Brand, "brand-b").await;
    let report = fabflow_sim::fire(&running.base, &token_b, order(1), 1).await;
    assert_eq!(report.accepted, 1, "{:?}", report.rejected.first());
    let seen_b = brand_b
        .until(|_, payload| payload["kind"] == "order.accepted")
        .await;
    assert!(
        seen_b.iter().all(|(_, p)| p["brand"] == "brand-b"),
        "{seen_b:?}"
    );
    let token_a = running.token(Role::Brand, "brand-a").await;
    let report = fabflow_sim::fire(&running.base, &token_a, order(2), 1).await;
    assert_eq!(report.accepted, 1, "{:?}", report.rejected.first());
    let seen_a = brand_a
        .until(|_, payload| payload["kind"] == "order.accepted")
        .await;
    for (topic, payload) in &seen_a {
        assert_eq!(
            payload["brand"], "brand-a",
            "brand-a received {topic}: {payload}"
        );
        assert!(
            topic.starts_with("fabflow/v1/brands/brand-a/events/"),
            "{topic}"
        );
    }
    brand_a.stop().await;
    brand_b.stop().await;
    stop(running, fleet).await;
}

/// How long a raw connection waits for the gateway's answers.
const RAW_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

/// Opens a TCP connection to the gateway and writes `bytes` in one write.
async fn raw_send(
    broker: &fabflow::runtime::mqtt::BrokerAddress,
    bytes: &[u8],
) -> tokio::net::TcpStream {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect((broker.host.as_str(), broker.port))
        .await
        .expect("connect");
    stream.write_all(bytes).await.expect("write");
    stream
}

/// Sends `connect` (raw bytes) and returns what the gateway answers before closing.
async fn raw_answer(broker: &fabflow::runtime::mqtt::BrokerAddress, connect: &[u8]) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut stream = raw_send(broker, connect).await;
    let mut answer = Vec::new();
    tokio::time::timeout(RAW_LIMIT, stream.read_to_end(&mut answer))
        .await
        .expect("answer and close in time")
        .expect("read");
    answer
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn other_protocol_versions_wills_and_exactly_once_forgeries_are_refused() {
    let (running, fleet, _dir) = daemon().await;
    let broker = &running.daemon.mqtt;
    // MQTT 5 (level 5): an MQTT 5 CONNACK, 0x84 unsupported protocol version.
    let v5 = [
        0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 5, 0x02, 0, 60, 0, 0, 1, b'a',
    ];
    assert_eq!(raw_answer(broker, &v5).await, vec![0x20, 3, 0, 0x84, 0]);
    // MQTT 3.1 (MQIsdp, level 3): CONNACK 1, unacceptable protocol version.
    let v31 = [
        0x10, 15, 0, 6, b'M', b'Q', b'I', b's', b'd', b'p', 3, 0x02, 0, 60, 0, 1, b'a',
    ];
    assert_eq!(raw_answer(broker, &v31).await, vec![0x20, 2, 0, 1]);

    // A courier may not leave a will on an event topic.
    let van = running.mqtt_login("van-1");
    let mut options = rumqttc::MqttOptions::new("will-test", van.host.clone(), van.port);
    let (user, password) = login(&van);
    options.set_credentials(user, password);
    options.set_last_will(rumqttc::LastWill::new(
        "fabflow/v1/events/order.delivered",
        "forged",
        QoS::AtLeastOnce,
        false,
    ));
    let (_client, mut eventloop) = rumqttc::AsyncClient::new(options, 8);
    match eventloop.poll().await {
        Err(rumqttc::ConnectionError::ConnectionRefused(code)) => {
            assert_eq!(code, ConnectReturnCode::NotAuthorized)
        }
        other => panic!("expected a refusal, got {other:?}"),
    }

    // A refused QoS 2 publish closes the connection.
    let mut client = connect(&van, Some(login(&van))).await.expect("van-1");
    client
        .client
        .publish(
            "fabflow/v1/events/order.delivered",
            QoS::ExactlyOnce,
            false,
            "forged",
        )
        .await
        .expect("publish requested");
    assert!(
        client.closed().await,
        "the connection stays open after a refused QoS 2 publish"
    );
    stop(running, fleet).await;
}

/// MQTT packets encoded as a client sends them.
fn packets(list: Vec<rumqttc::mqttbytes::v4::Packet>) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    for packet in list {
        packet.write(&mut out, usize::MAX).expect("encode");
    }
    out.to_vec()
}

/// Writes `burst` in one write and reads packets until `pubacks` PUBACKs came.
async fn burst_answer(
    broker: &fabflow::runtime::mqtt::BrokerAddress,
    burst: &[u8],
    pubacks: usize,
) -> Vec<u16> {
    use rumqttc::mqttbytes::v4::Packet;
    use tokio::io::AsyncReadExt;
    let mut stream = raw_send(broker, burst).await;
    let mut buffer = bytes::BytesMut::new();
    let mut acked = Vec::new();
    let read = async {
        while acked.len() < pubacks {
            match Packet::read(&mut buffer, usize::MAX) {
                Ok(Packet::PubAck(ack)) => acked.push(ack.pkid),
                Ok(Packet::ConnAck(ack)) => {
                    assert_eq!(ack.code, ConnectReturnCode::Success, "logged in")
                }
                Ok(other) => panic!("unexpected {other:?}"),
                Err(rumqttc::mqttbytes::Error::InsufficientBytes(_)) => {
                    let n = stream.read_buf(&mut buffer).await.expect("read");
                    assert!(n > 0, "closed after {} PUBACKs", acked.len());
                }
                Err(err) => panic!("bad packet: {err}"),
            }
        }
    };
    tokio::time::timeout(RAW_LIMIT, read)
        .await
        .expect("every PUBACK in time");
    acked
}

/// The gateway relays a burst (many packets in one read) as a burst, and
/// still checks each packet: a connection's publishes all reach the broker
/// in their order, and refused ones among a burst are each answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_publishes_in_one_write_is_checked_and_relayed_in_order() {
    use rumqttc::mqttbytes::v4::{Connect, Login, Packet, Publish};
    let (running, fleet, _dir) = daemon().await;
    let broker = &running.daemon.mqtt;
    let observer = running.mqtt_login("observer");
    let mut watcher = connect(&observer, Some(login(&observer)))
        .await
        .expect("observer logs in");
    assert_eq!(
        watcher.subscribe(&["test/burst/#"]).await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    let count = 300u16;
    let connect_as = |user: &str, password: &str| {
        let mut connect = Connect::new(format!("burst-{user}"));
        connect.login = Some(Login::new(user, password));
        Packet::Connect(connect)
    };
    let publishes = |n: u16| {
        (1..=n).map(|pkid| {
            let mut publish = Publish::new(
                format!("test/burst/{pkid}"),
                QoS::AtLeastOnce,
                format!("{{\"n\":{pkid}}}"),
            );
            publish.pkid = pkid;
            Packet::Publish(publish)
        })
    };
    // A courier may publish nothing: each refused publish of its burst is
    // answered by the gateway, and none reaches the observer.
    let van = running.mqtt_login("van-1");
    let (user, password) = login(&van);
    let mut refused = vec![connect_as(user, password)];
    refused.extend(publishes(50));
    let acked = burst_answer(broker, &packets(refused), 50).await;
    assert_eq!(
        acked,
        (1..=50).collect::<Vec<u16>>(),
        "refusals answered in order"
    );
    // The daemon's own login: every publish of one write arrives, in order.
    let (user, password) = login(broker);
    let mut allowed = vec![connect_as(user, password)];
    allowed.extend(publishes(count));
    let mut acked = burst_answer(broker, &packets(allowed), count.into()).await;
    acked.sort_unstable();
    assert_eq!(
        acked,
        (1..=count).collect::<Vec<u16>>(),
        "each publish acknowledged"
    );
    for n in 1..=count {
        let (topic, payload) = watcher.next().await;
        assert_eq!(
            (topic.as_str(), &payload),
            (format!("test/burst/{n}").as_str(), &json!({ "n": n })),
            "message {n} of the burst"
        );
    }
    watcher.stop().await;
    stop(running, fleet).await;
}
