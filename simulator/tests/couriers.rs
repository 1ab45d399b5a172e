//! Simulated couriers against a fake daemon (a real axum server on
//! 127.0.0.1:0) whose clock the test moves by hand.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use fabflow_sim::couriers::{self, CourierConfig, CourierCounts, CourierReport, CourierSpec};
use serde_json::json;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const COURIER: &str = "bike-1";
const TOKEN: &str = "ffc_bike1";
/// How long a wait for the couriers may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(20);

fn at(minute: u32) -> String {
    format!("2026-11-22T10:{minute:02}:00Z")
}

#[derive(Debug, Clone)]
struct FakeStop {
    id: &'static str,
    seq: i64,
    kind: &'static str,
    eta_minute: u32,
    /// The status a confirm gets while the stop is planned.
    reply: StatusCode,
    done: bool,
}

/// The fake daemon's whole state; every change wakes the test's waits.
#[derive(Debug, Clone)]
struct Fake {
    /// The daemon clock: minutes past 10:00.
    now_minute: u32,
    stops: Vec<FakeStop>,
    /// Every confirm request, in arrival order: (handoff id, clock minute).
    confirms: Vec<(String, u32)>,
    schedule_reads: usize,
    /// Requests refused for a wrong token.
    refused: usize,
    /// While set, /healthz answers 500.
    failing: bool,
    health_failures: usize,
}

type Shared = Arc<watch::Sender<Fake>>;

fn authorized(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {TOKEN}"))
}

async fn healthz(State(fake): State<Shared>) -> Response {
    let mut reply = None;
    fake.send_modify(|fake| {
        reply = Some(if fake.failing {
            fake.health_failures += 1;
            (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response()
        } else {
            Json(json!({"status": "ok", "database": "ok", "now": at(fake.now_minute), "time_scale": 600.0}))
                .into_response()
        });
    });
    reply.expect("send_modify runs the closure")
}

async fn schedule(
    State(fake): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&headers) {
        fake.send_modify(|fake| fake.refused += 1);
        return StatusCode::UNAUTHORIZED.into_response();
    }
    if id != COURIER {
        return StatusCode::NOT_FOUND.into_response();
    }
    let mut stops = Vec::new();
    fake.send_modify(|fake| {
        fake.schedule_reads += 1;
        stops = fake
            .stops
            .iter()
            .map(|stop| {
                json!({
                    "id": stop.id, "wave": "w-0001", "order_id": "ord-1", "kind": stop.kind,
                    "seq": stop.seq, "place": if stop.kind == "pickup" { "north" } else { "customer" },
                    "lat": 52.5, "lon": 13.4, "eta": at(stop.eta_minute),
                    "state": if stop.done { "done" } else { "planned" },
                })
            })
            .collect();
    });
    Json(json!({"schema": 1, "courier": COURIER, "generated_at": at(0), "stops": stops}))
        .into_response()
}

async fn confirm(
    State(fake): State<Shared>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if !authorized(&headers) {
        return StatusCode::UNAUTHORIZED.into_response();
    }
    let mut status = StatusCode::NOT_FOUND;
    fake.send_modify(|fake| {
        let now = fake.now_minute;
        fake.confirms.push((id.clone(), now));
        if let Some(stop) = fake.stops.iter_mut().find(|stop| stop.id == id) {
            status = if stop.done {
                StatusCode::CONFLICT
            } else {
                stop.reply
            };
            if status == StatusCode::OK {
                stop.done = true;
            }
        }
    });
    if status == StatusCode::OK {
        Json(json!({"id": id, "order_id": "ord-1", "state": "done"})).into_response()
    } else {
        (
            status,
            [("content-type", "application/problem+json")],
            r#"{"title":"conflict","status":409}"#,
        )
            .into_response()
    }
}

/// Three stops of one wave, due at 10:01, 10:02 and 10:03; the second
/// answers 409 (its order cannot move yet) and stays planned.
fn three_stops() -> Vec<FakeStop> {
    let stop = |id, seq, kind, eta_minute, reply| FakeStop {
        id,
        seq,
        kind,
        eta_minute,
        reply,
        done: false,
    };
    vec![
        stop("h-pickup", 0, "pickup", 1, StatusCode::OK),
        stop("h-drop-a", 1, "dropoff", 2, StatusCode::CONFLICT),
        stop("h-drop-b", 2, "dropoff", 3, StatusCode::OK),
    ]
}

struct Daemon {
    fake: Shared,
    api: String,
    server: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Daemon {
    async fn start(now_minute: u32, stops: Vec<FakeStop>) -> Daemon {
        let (fake, _) = watch::channel(Fake {
            now_minute,
            stops,
            confirms: Vec::new(),
            schedule_reads: 0,
            refused: 0,
            failing: false,
            health_failures: 0,
        });
        let fake: Shared = Arc::new(fake);
        let app = axum::Router::new()
            .route("/healthz", get(healthz))
            .route("/v1/couriers/{id}/schedule", get(schedule))
            .route("/v1/handoffs/{id}/confirm", post(confirm))
            .with_state(Arc::clone(&fake));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let api = format!("http://{}", listener.local_addr().expect("addr"));
        let server = tokio::spawn(async move { axum::serve(listener, app).await });
        Daemon { fake, api, server }
    }

    fn state(&self) -> Fake {
        self.fake.borrow().clone()
    }

    /// Waits until `condition` holds for the fake's state, failing the test after `DEADLINE`.
    async fn wait_for(&self, what: &str, condition: impl FnMut(&Fake) -> bool) -> Fake {
        let mut changes = self.fake.subscribe();
        match tokio::time::timeout(DEADLINE, changes.wait_for(condition)).await {
            Ok(Ok(state)) => state.clone(),
            Ok(Err(_)) => panic!("fake daemon gone while waiting for {what}"),
            Err(_) => panic!("timed out waiting for {what}; state: {:?}", self.state()),
        }
    }

    /// Waits until the couriers have read the schedule `polls` more times, so
    /// every poll before those has finished its confirms.
    async fn wait_polls(&self, polls: usize) -> Fake {
        let target = self.state().schedule_reads + polls;
        self.wait_for(&format!("{polls} more schedule reads"), |fake| {
            fake.schedule_reads >= target
        })
        .await
    }

    fn set_now(&self, minute: u32) {
        self.fake.send_modify(|fake| fake.now_minute = minute);
    }
}

fn config(api: &str) -> CourierConfig {
    CourierConfig {
        poll_interval: Duration::from_millis(2),
        ..CourierConfig::new(
            api,
            vec![CourierSpec {
                id: COURIER.to_string(),
                token: TOKEN.to_string(),
            }],
        )
    }
}

fn confirmed_ids(fake: &Fake) -> Vec<&str> {
    fake.confirms.iter().map(|(id, _)| id.as_str()).collect()
}

#[tokio::test]
async fn couriers_confirm_due_stops_in_order_once_and_pass_a_conflict() {
    let daemon = Daemon::start(0, three_stops()).await;
    let cancel = CancellationToken::new();
    let running = tokio::spawn(couriers::run(config(&daemon.api), cancel.clone()));

    // 10:00: nothing is due.
    let fake = daemon.wait_polls(3).await;
    assert!(
        fake.confirms.is_empty(),
        "confirmed before any ETA: {:?}",
        fake.confirms
    );

    // 10:01: only the pickup is due.
    daemon.set_now(1);
    daemon
        .wait_for("the pickup confirmed", |fake| !fake.confirms.is_empty())
        .await;
    let fake = daemon.wait_polls(3).await;
    assert_eq!(fake.confirms, vec![("h-pickup".to_string(), 1)]);

    // 10:05: both drop-offs are due; the first gets 409 and is passed, the
    // second is then confirmed.
    daemon.set_now(5);
    daemon
        .wait_for("the last drop-off confirmed", |fake| fake.stops[2].done)
        .await;
    let fake = daemon.wait_polls(3).await;
    assert_eq!(
        confirmed_ids(&fake),
        ["h-pickup", "h-drop-a", "h-drop-b"],
        "in order, each once"
    );
    for (id, minute) in &fake.confirms {
        let stop = fake
            .stops
            .iter()
            .find(|stop| stop.id == id)
            .expect("a known stop");
        assert!(
            *minute >= stop.eta_minute,
            "{id} confirmed at 10:{minute:02}, before its ETA"
        );
    }
    assert!(
        !fake.stops[1].done,
        "the 409 stop stays planned on the daemon, and is not retried"
    );

    // /healthz failing: each failure counted, then the couriers carry on.
    daemon.fake.send_modify(|fake| fake.failing = true);
    daemon
        .wait_for("three failed health checks", |fake| {
            fake.health_failures >= 3
        })
        .await;
    daemon.fake.send_modify(|fake| fake.failing = false);
    let fake = daemon.wait_polls(2).await;
    assert_eq!(
        fake.confirms.len(),
        3,
        "no retries after recovering: {:?}",
        fake.confirms
    );

    cancel.cancel();
    let report = tokio::time::timeout(DEADLINE, running)
        .await
        .expect("couriers stop when cancelled")
        .expect("courier runner must not panic");
    let counts = CourierCounts {
        confirmed: 2,
        conflicts: 1,
        errors: daemon.state().health_failures,
        missed: 0,
        ..CourierCounts::default()
    };
    assert_eq!(
        report,
        CourierReport {
            confirmed: counts.confirmed,
            conflicts: counts.conflicts,
            errors: counts.errors,
            missed: 0,
            per_courier: [(COURIER.to_string(), counts)].into(),
            ..CourierReport::default()
        }
    );
    daemon.server.abort();
}

#[tokio::test]
async fn a_courier_that_misses_every_stop_confirms_nothing() {
    let daemon = Daemon::start(10, three_stops()).await;
    let cancel = CancellationToken::new();
    let config = CourierConfig {
        miss_rate: 1.0,
        ..config(&daemon.api)
    };
    let running = tokio::spawn(couriers::run(config, cancel.clone()));
    let fake = daemon.wait_polls(3).await;
    cancel.cancel();
    let report = tokio::time::timeout(DEADLINE, running)
        .await
        .expect("couriers stop when cancelled")
        .expect("courier runner must not panic");
    assert!(fake.confirms.is_empty(), "{:?}", fake.confirms);
    assert_eq!(
        (
            report.confirmed,
            report.missed,
            report.conflicts,
            report.errors
        ),
        (0, 3, 0, 0)
    );
    daemon.server.abort();
}

#[tokio::test]
async fn a_wrong_token_is_an_error_not_a_panic() {
    let daemon = Daemon::start(10, three_stops()).await;
    let cancel = CancellationToken::new();
    let mut config = config(&daemon.api);
    config.couriers[0].token = "wrong".to_string();
    let running = tokio::spawn(couriers::run(config, cancel.clone()));
    // The second refusal means the first poll has ended and been counted.
    daemon
        .wait_for("two refused schedule reads", |fake| fake.refused >= 2)
        .await;
    cancel.cancel();
    let report = tokio::time::timeout(DEADLINE, running)
        .await
        .expect("couriers stop when cancelled")
        .expect("courier runner must not panic");
    assert!(daemon.state().confirms.is_empty());
    assert_eq!((report.confirmed, report.conflicts), (0, 0));
    assert!(report.errors >= 1, "{report:?}");
    daemon.server.abort();
}
