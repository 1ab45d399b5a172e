//! A courier's schedule in every form couriers use, seen as a courier sees
//! it: the iCalendar feed (parsed structurally here, and by Python's
//! `icalendar` when it is installed), the GeoJSON route, and the retained
//! MQTT schedule, which follows every confirmation.

mod support;

use fabflow::api::auth::Role;
use fabflow::config::{Config, MqttConfig};
use fabflow::domain::intake::{JobPlan, LineRequest};
use fabflow::domain::{JobInput, Location, MachineId};
use fabflow::store::{NewOrder, Store};
use rumqttc::{QoS, SubscribeReasonCode};
use serde_json::Value;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::Duration;
use support::{Api, Running, connect, login, wait_for};

const COURIERS: [&str; 3] = ["bike-1", "bike-2", "van-1"];

/// The demo network without machines, planning a wave every second.
fn config(db: &std::path::Path) -> Config {
    let mut config = Config::demo().expect("demo config");
    config.time_scale = 1.0;
    config.database.url = format!("sqlite://{}", db.display());
    config.mqtt = MqttConfig::Embedded {
        listen: SocketAddr::from(([127, 0, 0, 1], 0)),
    };
    for zone in &mut config.zones {
        zone.planning_cron = "* * * * * *".into();
    }
    config.machines.clear();
    config
}

fn order(n: usize, now: i64) -> NewOrder {
    NewOrder {
        id: format!("order-{n:02}").into(),
        brand: "acme".into(),
        external_ref: None,
        // A name a calendar must escape.
        customer_name: format!("Ada; Lovelace, {n}\\"),
        location: Location::new(52.50 + n as f64 * 0.004, 13.38 + n as f64 * 0.003),
        zone: "berlin".into(),
        factory: "north".into(),
        lines: vec![LineRequest {
            sku: "tee-black-m".into(),
            quantity: 1,
        }],
        deadline_ms: now + 48 * 3_600_000,
        accepted_ms: now,
        jobs: vec![JobPlan {
            line_index: 0,
            step_index: 0,
            process: "dtg_print".into(),
            recipe: 11,
            material: "cotton_tee".into(),
            quantity: 1,
            seconds_per_unit: 60.0,
            due_ms: now + 3_600_000,
        }],
        idempotency: None,
        follows: false,
    }
}

/// Accepts `count` orders and finishes their jobs, so they are ready.
async fn ready_orders(store: &Store, count: usize, now: i64) {
    let orders: Vec<NewOrder> = (0..count).map(|n| order(n, now)).collect();
    store.accept_orders(&orders).await.expect("accept");
    let jobs = store.schedulable_jobs(100).await.expect("jobs");
    assert_eq!(jobs.len(), count);
    for job in jobs {
        store
            .schedule_jobs(&[(job.token, MachineId::new("test-machine"))], now)
            .await
            .expect("schedule");
        store
            .transition_job(job.token, JobInput::Dispatch, now)
            .await
            .expect("dispatch");
        store
            .transition_job(
                job.token,
                JobInput::MachineFinished { good: 1, scrap: 0 },
                now,
            )
            .await
            .expect("done");
    }
}

struct World {
    running: Running,
    _dir: tempfile::TempDir,
    /// Each courier's API client, with its own token.
    couriers: Vec<(String, Api)>,
    admin: Api,
}

/// A daemon whose couriers were planned `count` orders.
async fn world(count: usize) -> World {
    let dir = tempfile::tempdir().expect("temp dir");
    let running = Running::start(config(&dir.path().join("feeds.db"))).await;
    let now = running.daemon.clock.now_ms();
    ready_orders(&running.daemon.store, count, now).await;
    let admin = running.api(Role::Admin, "*").await;
    let mut couriers = Vec::new();
    for courier in COURIERS {
        couriers.push((
            courier.to_string(),
            running.api(Role::Courier, courier).await,
        ));
    }
    wait_for("every order planned", Duration::from_secs(30), || {
        let couriers = couriers.clone();
        async move {
            let mut planned = 0;
            for (id, api) in &couriers {
                let (status, body) = api.get(&format!("/v1/couriers/{id}/schedule")).await;
                assert_eq!(status, 200, "{body}");
                planned += body["stops"].as_array().map_or(0, Vec::len);
            }
            (planned == 2 * count).then_some(())
        }
    })
    .await;
    World {
        running,
        _dir: dir,
        couriers,
        admin,
    }
}

async fn get_text(url: &str, token: Option<&str>) -> (u16, String, String) {
    let mut request = reqwest::Client::new().get(url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("request");
    let status = response.status().as_u16();
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (status, content_type, response.text().await.expect("body"))
}

/// Checks an iCalendar object's form (CRLF, folding, nesting) and returns
/// its events, each as its unfolded `NAME:value` lines.
fn ical_events(text: &str) -> Vec<Vec<String>> {
    assert!(text.ends_with("\r\n"), "ends with CRLF");
    let physical: Vec<&str> = text[..text.len() - 2].split("\r\n").collect();
    for line in &physical {
        assert!(
            !line.contains('\n') && !line.contains('\r'),
            "bare LF or CR in {line:?}"
        );
        assert!(line.len() <= 75, "{} octets: {line:?}", line.len());
    }
    let mut lines: Vec<String> = Vec::new();
    for line in physical {
        match line.strip_prefix(' ') {
            Some(rest) => lines.last_mut().expect("a line to continue").push_str(rest),
            None => lines.push(line.to_string()),
        }
    }
    assert_eq!(lines.first().map(String::as_str), Some("BEGIN:VCALENDAR"));
    assert_eq!(lines.last().map(String::as_str), Some("END:VCALENDAR"));
    assert!(lines.contains(&"VERSION:2.0".to_string()));
    assert!(lines.iter().any(|l| l.starts_with("PRODID:")));
    let mut events = Vec::new();
    let mut current: Option<Vec<String>> = None;
    for line in lines {
        match line.as_str() {
            "BEGIN:VEVENT" => {
                assert!(current.is_none(), "nested VEVENT");
                current = Some(Vec::new());
            }
            "END:VEVENT" => events.push(current.take().expect("END without BEGIN")),
            _ => {
                if let Some(event) = current.as_mut() {
                    event.push(line);
                }
            }
        }
    }
    events
}

fn property<'a>(event: &'a [String], name: &str) -> Option<&'a str> {
    event
        .iter()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(':'))
}

/// The first Python that can import the `icalendar` package: `python3` on
/// the PATH, or Debian's (`.ci/run` installs python3-icalendar), which a
/// pyenv or virtual environment earlier on the PATH may hide.
fn python_icalendar() -> Option<&'static str> {
    ["python3", "/usr/bin/python3"].into_iter().find(|python| {
        std::process::Command::new(python)
            .args(["-c", "import icalendar"])
            .output()
            .is_ok_and(|out| out.status.success())
    })
}

const PYTHON_CHECK: &str = r#"
import sys, icalendar
cal = icalendar.Calendar.from_ical(sys.stdin.buffer.read())
for event in cal.walk("VEVENT"):
    start, end = event.decoded("DTSTART"), event.decoded("DTEND")
    assert start.tzinfo is not None and start.utcoffset().total_seconds() == 0, start
    assert end > start, (start, end)
    geo = event.get("GEO")
    print("\t".join([str(event.get("UID")), str(event.get("SUMMARY")),
        str(event.get("LOCATION")), "%f;%f" % (geo.latitude, geo.longitude),
        str(event.get("STATUS"))]))
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schedules_come_as_icalendar_and_geojson_showing_only_the_couriers_own_stops() {
    let w = world(6).await;
    let base = w.running.base.clone();
    let mut seen_stops = BTreeSet::new();
    for (courier, api) in &w.couriers {
        let (status, json) = api.get(&format!("/v1/couriers/{courier}/schedule")).await;
        assert_eq!(status, 200);
        let stops = json["stops"].as_array().cloned().unwrap_or_default();
        let ids: BTreeSet<String> = stops
            .iter()
            .filter_map(|s| s["id"].as_str().map(str::to_string))
            .collect();
        assert!(
            ids.iter().all(|id| seen_stops.insert(id.clone())),
            "stops shared between couriers"
        );

        // iCalendar, by bearer header.
        let url = format!("{base}/v1/couriers/{courier}/schedule.ics");
        let (status, content_type, ics) = get_text(&url, Some(&api.token)).await;
        assert_eq!(status, 200, "{ics}");
        assert!(content_type.starts_with("text/calendar"), "{content_type}");
        let events = ical_events(&ics);
        assert_eq!(events.len(), stops.len(), "one VEVENT per stop");
        let uids: BTreeSet<String> = events
            .iter()
            .map(|e| {
                property(e, "UID")
                    .and_then(|uid| uid.strip_suffix("@fabflow"))
                    .expect("UID")
                    .to_string()
            })
            .collect();
        assert_eq!(uids, ids, "the courier's own stops, each once");
        for (event, stop) in events.iter().zip(&stops) {
            for name in [
                "DTSTAMP",
                "DTSTART",
                "DTEND",
                "SUMMARY",
                "LOCATION",
                "GEO",
                "DESCRIPTION",
                "STATUS",
            ] {
                assert!(
                    property(event, name).is_some(),
                    "{name} missing in {event:?}"
                );
            }
            let start = property(event, "DTSTART").expect("DTSTART");
            assert!(
                start.ends_with('Z') && start.len() == 16,
                "UTC date-time: {start}"
            );
            assert!(property(event, "DTEND").expect("DTEND") > start);
            let geo = property(event, "GEO").expect("GEO");
            let (lat, lon) = geo.split_once(';').expect("GEO lat;lon");
            let lat: f64 = lat.parse().expect("lat");
            let lon: f64 = lon.parse().expect("lon");
            assert!((lat - stop["lat"].as_f64().expect("lat")).abs() < 1e-5);
            assert!((lon - stop["lon"].as_f64().expect("lon")).abs() < 1e-5);
            let description = property(event, "DESCRIPTION").expect("DESCRIPTION");
            assert!(description.contains("Contact: "), "{description}");
            if stop["kind"] == "dropoff" {
                // The customer's `;`, `,` and `\` are escaped.
                assert!(description.contains("Ada\\; Lovelace\\, "), "{description}");
            }
        }

        // The same feed by ?token= for calendar apps; the same events.
        let (status, _, by_query) = get_text(&format!("{url}?token={}", api.token), None).await;
        assert_eq!(status, 200);
        assert_eq!(ical_events(&by_query).len(), events.len());

        if let Some(python) = python_icalendar() {
            let mut child = std::process::Command::new(python)
                .args(["-c", PYTHON_CHECK])
                .stdin(std::process::Stdio::piped())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("python3 runs");
            use std::io::Write as _;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(ics.as_bytes())
                .expect("feed written");
            let out = child.wait_with_output().expect("python3 ends");
            assert!(
                out.status.success(),
                "icalendar refused the feed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let parsed = String::from_utf8_lossy(&out.stdout);
            let parsed: Vec<&str> = parsed.lines().collect();
            assert_eq!(parsed.len(), stops.len(), "{parsed:?}");
            for line in parsed {
                let uid = line.split('\t').next().unwrap_or_default();
                assert!(ids.contains(uid.trim_end_matches("@fabflow")), "{line}");
            }
        } else {
            println!(
                "skipped: python3 icalendar is not installed (the Rust structural checks ran)"
            );
        }

        // GeoJSON.
        let url = format!("{base}/v1/couriers/{courier}/route.geojson");
        let (status, content_type, body) = get_text(&url, Some(&api.token)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(content_type, "application/geo+json");
        let geo: Value = serde_json::from_str(&body).expect("GeoJSON is JSON");
        assert_eq!(geo["type"], "FeatureCollection");
        let features = geo["features"].as_array().cloned().unwrap_or_default();
        let points: Vec<&Value> = features
            .iter()
            .filter(|f| f["geometry"]["type"] == "Point")
            .collect();
        assert_eq!(points.len(), stops.len(), "one Point per stop");
        for (point, stop) in points.iter().zip(&stops) {
            assert_eq!(point["type"], "Feature");
            assert_eq!(point["properties"]["stop_id"], stop["id"]);
            assert_eq!(point["properties"]["kind"], stop["kind"]);
            assert_eq!(point["properties"]["order_id"], stop["order_id"]);
            assert_eq!(point["properties"]["status"], stop["state"]);
            assert_eq!(point["properties"]["sequence"], stop["seq"]);
            assert!(point["properties"]["window_start"].is_string());
            assert!(point["properties"]["window_end"].is_string());
            // [lon, lat], as RFC 7946 orders positions.
            assert_eq!(point["geometry"]["coordinates"][0], stop["lon"]);
            assert_eq!(point["geometry"]["coordinates"][1], stop["lat"]);
        }
        let lines: Vec<&Value> = features
            .iter()
            .filter(|f| f["geometry"]["type"] == "LineString")
            .collect();
        if stops.len() >= 2 {
            assert!(!lines.is_empty(), "a route line");
        }
        for line in lines {
            let coordinates = line["geometry"]["coordinates"]
                .as_array()
                .expect("positions");
            assert!(coordinates.len() >= 2);
            assert!(
                coordinates
                    .iter()
                    .all(|p| p.as_array().is_some_and(|p| p.len() == 2))
            );
        }

        // Another courier's feeds are not found, as its JSON is not.
        for other in COURIERS.iter().filter(|c| *c != courier) {
            for path in ["schedule", "schedule.ics", "route.geojson"] {
                let url = format!("{base}/v1/couriers/{other}/{path}");
                let (status, content_type, body) = get_text(&url, Some(&api.token)).await;
                assert_eq!(status, 404, "{courier} reading {url}: {body}");
                assert_eq!(content_type, "application/problem+json");
                // Only the feeds take a token in the URL.
                let (status, _, _) = get_text(&format!("{url}?token={}", api.token), None).await;
                assert_eq!(status, if path == "schedule" { 401 } else { 404 });
            }
        }
    }
    assert_eq!(
        seen_stops.len(),
        12,
        "every stop in exactly one courier's feed"
    );

    // No token, or an unknown one, on a feed URL.
    let url = format!("{base}/v1/couriers/bike-1/schedule.ics");
    let (status, content_type, _) = get_text(&url, None).await;
    assert_eq!(
        (status, content_type.as_str()),
        (401, "application/problem+json")
    );
    let (status, _, _) = get_text(&format!("{url}?token=ffc_unknown"), None).await;
    assert_eq!(status, 401);
    // An admin reads any courier's feed.
    let (status, _, _) = get_text(&url, Some(&w.admin.token)).await;
    assert_eq!(status, 200);
    w.running.stop().await;
}

/// Confirms one stop as its courier, with the code the admin reads (as the
/// operator or the brand would hand it over).
async fn confirm(admin: &Api, courier: &Api, stop: &Value) {
    let id = stop["id"].as_str().expect("stop id");
    let (status, handoff) = admin.get(&format!("/v1/handoffs/{id}")).await;
    assert_eq!(status, 200, "{handoff}");
    let code = handoff["code"].as_str().expect("an admin sees the code");
    let (status, body) = courier
        .post(
            &format!("/v1/handoffs/{id}/confirm"),
            &serde_json::json!({ "code": code }),
            None,
        )
        .await;
    assert_eq!(status, 200, "confirming {id}: {body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retained_mqtt_schedule_follows_every_confirmation() {
    let w = world(4).await;
    // The courier with the most stops.
    let mut best: Option<(String, Api, Vec<Value>)> = None;
    for (courier, api) in &w.couriers {
        let (_, json) = api.get(&format!("/v1/couriers/{courier}/schedule")).await;
        let stops = json["stops"].as_array().cloned().unwrap_or_default();
        if best.as_ref().is_none_or(|(_, _, b)| stops.len() > b.len()) {
            best = Some((courier.clone(), api.clone(), stops));
        }
    }
    let (courier, api, stops) = best.expect("a courier");
    assert!(stops.len() >= 2, "{stops:?}");
    let broker = w.running.mqtt_login(&courier);
    let mut subscriber = connect(&broker, Some(login(&broker)))
        .await
        .expect("the courier logs in");
    let topic = format!("fabflow/v1/couriers/{courier}/schedule");
    assert_eq!(
        subscriber.subscribe(&[&topic]).await,
        vec![SubscribeReasonCode::Success(QoS::AtLeastOnce)]
    );
    let states = |payload: &Value| -> Vec<(String, String)> {
        payload["stops"]
            .as_array()
            .map(|stops| {
                stops
                    .iter()
                    .map(|s| {
                        (
                            s["id"].as_str().unwrap_or_default().to_string(),
                            s["state"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    let expected = |done: usize| -> Vec<(String, String)> {
        stops
            .iter()
            .enumerate()
            .map(|(n, s)| {
                let state = if n < done { "done" } else { "planned" };
                (
                    s["id"].as_str().unwrap_or_default().to_string(),
                    state.to_string(),
                )
            })
            .collect()
    };
    // The retained schedule lists every planned stop.
    subscriber
        .until(|t, payload| t == topic && states(payload) == expected(0))
        .await;
    // Each confirmation is followed by a schedule showing it done.
    for (n, stop) in stops.iter().enumerate() {
        confirm(&w.admin, &api, stop).await;
        let seen = subscriber
            .until(|t, payload| t == topic && states(payload) == expected(n + 1))
            .await;
        assert!(seen.iter().all(|(t, _)| *t == topic));
    }
    // How late each confirmed stop was is a histogram by kind.
    let metrics = reqwest::get(format!("{}/metrics", w.running.base))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    for kind in ["pickup", "dropoff"] {
        assert!(
            metrics.contains(&format!(
                "fabflow_handoff_lateness_seconds_count{{kind=\"{kind}\"}}"
            )),
            "{kind} lateness missing"
        );
    }
    // A subscriber arriving now gets the latest schedule, retained: all done.
    let mut late = connect(&broker, Some(login(&broker)))
        .await
        .expect("the courier logs in again");
    late.subscribe(&[&topic]).await;
    let (t, payload) = late.next().await;
    assert_eq!(
        (t.as_str(), states(&payload)),
        (topic.as_str(), expected(stops.len()))
    );
    subscriber.stop().await;
    late.stop().await;
    w.running.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stops_are_confirmed_with_their_code_and_failed_attempts_are_replanned_or_escalated() {
    let w = world(2).await;
    let operator = w.running.api(Role::Operator, "north").await;
    let south = w.running.api(Role::Operator, "south").await;
    let brand = w.running.api(Role::Brand, "acme").await;
    let (courier, api, stops) = {
        let mut found = None;
        for (courier, api) in &w.couriers {
            let (_, json) = api.get(&format!("/v1/couriers/{courier}/schedule")).await;
            let stops = json["stops"].as_array().cloned().unwrap_or_default();
            if !stops.is_empty() {
                found = Some((courier.clone(), api.clone(), stops));
                break;
            }
        }
        found.expect("a courier with stops")
    };
    let pickup = stops
        .iter()
        .find(|s| s["kind"] == "pickup")
        .expect("a pickup");
    let pickup_id = pickup["id"].as_str().expect("id");
    let order_id = pickup["order_id"].as_str().expect("order");
    let dropoff = stops
        .iter()
        .find(|s| s["kind"] == "dropoff" && s["order_id"] == order_id)
        .expect("its drop-off");
    let dropoff_id = dropoff["id"].as_str().expect("id");

    // Who sees which code: the operator the pickup's, the brand the
    // drop-off's; the courier neither, in any form.
    let (status, seen) = operator.get(&format!("/v1/handoffs/{pickup_id}")).await;
    assert_eq!(status, 200, "{seen}");
    let pickup_code = seen["code"]
        .as_str()
        .expect("the operator sees the pickup code")
        .to_string();
    assert!(pickup_code.len() == 6 && pickup_code.bytes().all(|b| b.is_ascii_digit()));
    let (_, seen) = operator.get(&format!("/v1/handoffs/{dropoff_id}")).await;
    assert!(seen.get("code").is_none(), "{seen}");
    let (status, _) = south.get(&format!("/v1/handoffs/{pickup_id}")).await;
    assert_eq!(status, 404, "another factory's operator");
    let (status, order) = brand.get(&format!("/v1/orders/{order_id}")).await;
    assert_eq!(status, 200);
    let handoffs = order["handoffs"].as_array().cloned().unwrap_or_default();
    let dropoff_code = handoffs
        .iter()
        .find(|h| h["id"] == dropoff_id)
        .and_then(|h| h["code"].as_str())
        .expect("the brand sees the drop-off code")
        .to_string();
    assert!(
        handoffs
            .iter()
            .find(|h| h["id"] == pickup_id)
            .is_some_and(|h| h.get("code").is_none())
    );
    let (status, mine) = api.get(&format!("/v1/handoffs/{pickup_id}")).await;
    assert_eq!(status, 200);
    assert!(
        mine.get("code").is_none(),
        "the courier never sees the code"
    );
    for path in ["schedule", "schedule.ics", "route.geojson"] {
        let url = format!("{}/v1/couriers/{courier}/{path}", w.running.base);
        let (_, _, body) = get_text(&url, Some(&api.token)).await;
        assert!(
            !body.contains(&pickup_code) && !body.contains(&dropoff_code),
            "{path} shows a code"
        );
    }

    // No code, then a wrong one: 422 pointing at /code, counted.
    let confirm_url = format!("/v1/handoffs/{pickup_id}/confirm");
    let (status, problem) = api.post(&confirm_url, &serde_json::json!({}), None).await;
    assert_eq!(
        (status, problem["errors"][0]["pointer"].as_str()),
        (422, Some("/code")),
        "{problem}"
    );
    let wrong = if pickup_code == "000000" {
        "000001"
    } else {
        "000000"
    };
    let (status, problem) = api
        .post(&confirm_url, &serde_json::json!({"code": wrong}), None)
        .await;
    assert_eq!(
        (status, problem["errors"][0]["pointer"].as_str()),
        (422, Some("/code")),
        "{problem}"
    );
    let (_, seen) = operator.get(&format!("/v1/handoffs/{pickup_id}")).await;
    assert_eq!(seen["wrong_codes"], 1);
    // Up to the limit (5 in the demo configuration): locked, 423, until released.
    for _ in 0..3 {
        let (status, _) = api
            .post(&confirm_url, &serde_json::json!({"code": wrong}), None)
            .await;
        assert_eq!(status, 422);
    }
    let (status, problem) = api
        .post(&confirm_url, &serde_json::json!({"code": wrong}), None)
        .await;
    assert_eq!(status, 423, "{problem}");
    let (status, problem) = api
        .post(
            &confirm_url,
            &serde_json::json!({"code": pickup_code}),
            None,
        )
        .await;
    assert_eq!(status, 423, "locked even for the right code: {problem}");
    let release = format!("/v1/handoffs/{pickup_id}/release");
    let (status, _) = api.post(&release, &serde_json::json!({}), None).await;
    assert_eq!(status, 403, "a courier cannot release");
    let (status, _) = south.post(&release, &serde_json::json!({}), None).await;
    assert_eq!(status, 404, "nor another factory's operator");
    let (status, released) = operator.post(&release, &serde_json::json!({}), None).await;
    assert_eq!(
        (status, released["state"].as_str()),
        (200, Some("planned")),
        "{released}"
    );
    let (_, audit) = w.admin.get("/v1/audit").await;
    assert!(
        audit["items"].as_array().is_some_and(|items| items
            .iter()
            .any(|a| a["action"] == "handoff.release" && a["target"] == pickup_id)),
        "{audit}"
    );
    let (status, body) = api
        .post(
            &confirm_url,
            &serde_json::json!({"code": pickup_code}),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // A failed drop-off: reason checked, the order back to ready and planned again.
    let fail_url = format!("/v1/handoffs/{dropoff_id}/fail");
    let (status, problem) = api
        .post(&fail_url, &serde_json::json!({"reason": "lost"}), None)
        .await;
    assert_eq!(
        (status, problem["errors"][0]["pointer"].as_str()),
        (422, Some("/reason"))
    );
    let (status, failed) = api
        .post(&fail_url, &serde_json::json!({"reason": "not_home"}), None)
        .await;
    assert_eq!(status, 200, "{failed}");
    assert_eq!(
        (failed["attempts"].as_u64(), failed["escalated"].as_bool()),
        (Some(1), Some(false))
    );
    // The next waves plan it again; each new attempt fails until the third escalates.
    for attempt in 2..=3u64 {
        let (courier, api, stop) =
            wait_for("the order planned again", Duration::from_secs(30), || {
                let couriers = w.couriers.clone();
                let order_id = order_id.to_string();
                async move {
                    for (courier, api) in &couriers {
                        let (_, json) = api.get(&format!("/v1/couriers/{courier}/schedule")).await;
                        let stops = json["stops"].as_array().cloned().unwrap_or_default();
                        if let Some(stop) = stops.into_iter().find(|s| {
                            s["order_id"] == order_id.as_str()
                                && s["kind"] == "pickup"
                                && s["state"] == "planned"
                        }) {
                            return Some((courier.clone(), api.clone(), stop));
                        }
                    }
                    None
                }
            })
            .await;
        let id = stop["id"].as_str().expect("id");
        let (status, failed) = api
            .post(
                &format!("/v1/handoffs/{id}/fail"),
                &serde_json::json!({"reason": "refused"}),
                None,
            )
            .await;
        assert_eq!(status, 200, "{courier}: {failed}");
        assert_eq!(failed["attempts"].as_u64(), Some(attempt));
        assert_eq!(failed["escalated"].as_bool(), Some(attempt == 3));
    }
    let (_, order) = brand.get(&format!("/v1/orders/{order_id}")).await;
    assert_eq!(order["state"], "ready");
    assert_eq!(order["escalation"]["attempts"], 3, "{order}");
    assert_eq!(order["escalation"]["reason"], "refused");
    w.running.stop().await;
}
