//! End to end, an operator's fleet controls through the API (and the CLI):
//! declaring the material loaded on a machine, and what dispatch and the
//! waiting reasons then say. Starts the simulator and the daemon on
//! loopback and looks only through the API, as a user would.

mod support;

use fabflow::api::auth::Role;
use serde_json::{Value, json};
use std::time::Duration;
use support::{Api, Running, wait_for};

/// Slow enough that queues stay filled while the test looks at them.
const TIME_SCALE: f64 = 60.0;

const BIN: &str = env!("CARGO_BIN_EXE_fabflow");

async fn jobs(api: &Api, factory: &str) -> Vec<Value> {
    let (status, page) = api
        .get(&format!("/v1/jobs?factory={factory}&limit=500"))
        .await;
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().cloned().unwrap_or_default()
}

/// The ids of `factory`'s machines that do `process`.
async fn machines_doing(api: &Api, factory: &str, process: &str) -> Vec<String> {
    let (status, machines) = api.get(&format!("/v1/machines?factory={factory}")).await;
    assert_eq!(status, 200, "{machines}");
    machines
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|m| {
            m["capabilities"]
                .as_array()
                .is_some_and(|c| c.iter().any(|p| p == process))
        })
        .filter_map(|m| m["id"].as_str().map(str::to_string))
        .collect()
}

async fn order_tees(brand: &Api, near: (f64, f64), prefix: &str, count: usize) -> Vec<Value> {
    let mut orders = Vec::new();
    for n in 0..count {
        let body = json!({
            "external_ref": format!("{prefix}-{n}"),
            "customer": {"name": "Ada", "lat": near.0 + 0.001, "lon": near.1 + 0.001},
            "lines": [{"sku": "tee-black-m", "quantity": 2}],
        });
        let (status, order) = brand.post("/v1/orders", &body, None).await;
        assert_eq!(status, 201, "{order}");
        assert_eq!(order["factory"], "north", "{order}");
        orders.push(order);
    }
    orders
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_declared_material_decides_what_a_machine_starts_and_why_jobs_wait() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fleet = support::fleet(5, TIME_SCALE).await;
    let config = support::config(&fleet, &dir.path().join("material.db"), TIME_SCALE);
    let north = config
        .factories
        .iter()
        .find(|f| f.id == "north")
        .map(|f| (f.lat, f.lon))
        .expect("the demo has a factory north");
    let running = Running::start(config).await;
    let operator = running.api(Role::Operator, "north").await;
    let brand = running.api(Role::Brand, "material-brand").await;
    let admin = running.api(Role::Admin, "*").await;

    let printers = machines_doing(&operator, "north", "dtg_print").await;
    assert!(printers.len() >= 2, "north has two DTG printers or more");

    // A material the model cannot use is refused, pointing at the field.
    let (status, body) = operator
        .post(
            &format!("/v1/machines/{}/material", printers[0]),
            &json!({"material": "pla"}),
            None,
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["pointer"], "/material", "{body}");
    let reason = body["errors"][0]["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("cannot use \"pla\"") && reason.contains("cotton_tee"),
        "names the material and what the model uses: {body}"
    );
    let (status, body) = operator
        .post(
            &format!("/v1/machines/{}/material", printers[0]),
            &json!({"materal": "tote"}),
            None,
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["pointer"], "/material", "{body}");
    // Another factory's operator does not see the machine.
    let south = running.api(Role::Operator, "south").await;
    let (status, body) = south
        .post(
            &format!("/v1/machines/{}/material", printers[0]),
            &json!({"material": "tote"}),
            None,
        )
        .await;
    assert_eq!(status, 404, "{body}");

    // Every printer of north has totes loaded before tee orders come.
    for printer in &printers {
        let (status, body) = operator
            .post(
                &format!("/v1/machines/{printer}/material"),
                &json!({"material": "tote"}),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["loaded_material"], "tote", "{body}");
    }
    order_tees(&brand, north, "material", 4).await;
    let prints: Vec<Value> = jobs(&operator, "north")
        .await
        .into_iter()
        .filter(|j| j["process"] == "dtg_print")
        .collect();
    assert_eq!(prints.len(), 4, "{prints:?}");
    for job in &prints {
        assert_eq!(
            job["state"], "pending",
            "nothing places a tee on a tote printer: {job}"
        );
        assert_eq!(job["waiting"]["reason"], "material_not_loaded", "{job}");
        let detail = job["waiting"]["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("needs cotton_tee")
                && detail.contains(&format!("{} has tote", printers[0])),
            "names the material needed and the one loaded: {detail}"
        );
    }

    // The operator loads tees on one printer, from the CLI: the jobs go
    // there, and only there.
    let token = running.token(Role::Operator, "north").await;
    let output = tokio::process::Command::new(BIN)
        .args(["machine", "material", &printers[0], "cotton_tee"])
        .env("FABFLOW_URL", &running.base)
        .env("FABFLOW_TOKEN", &token)
        .output()
        .await
        .expect("run fabflow");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains(&format!("machine {} has cotton_tee loaded", printers[0])),
        "{stdout}"
    );
    let refused = tokio::process::Command::new(BIN)
        .args(["machine", "material", &printers[0], "pla"])
        .env("FABFLOW_URL", &running.base)
        .env("FABFLOW_TOKEN", &token)
        .output()
        .await
        .expect("run fabflow");
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("422") && stderr.contains("cannot use"),
        "{stderr}"
    );

    let started = wait_for(
        "a tee print to start on the cotton printer",
        Duration::from_secs(120),
        || async {
            let prints: Vec<Value> = jobs(&operator, "north")
                .await
                .into_iter()
                .filter(|j| j["process"] == "dtg_print")
                .collect();
            prints
                .iter()
                .any(|j| ["running", "done"].contains(&j["state"].as_str().unwrap_or_default()))
                .then_some(prints)
        },
    )
    .await;
    for job in &started {
        assert!(
            job["machine"].is_null() || job["machine"] == printers[0].as_str(),
            "a tee print only on the printer with tees: {job}"
        );
        if job["state"] == "pending" {
            assert_ne!(job["waiting"]["reason"], "material_not_loaded", "{job}");
        }
    }

    // Audited and published, each event matching its schema.
    let (_, audit) = admin.get("/v1/audit?limit=500").await;
    let materials: Vec<&Value> = audit["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|a| a["action"] == "machine.material")
                .collect()
        })
        .unwrap_or_default();
    assert_eq!(materials.len(), printers.len() + 1, "{audit}");
    let kinds = support::assert_events_match_schemas(&admin).await;
    assert!(kinds.contains("machine.material_loaded"), "{kinds:?}");

    running.stop().await;
    fleet.shutdown().await;
}

/// The jobs of `order`.
async fn order_jobs(api: &Api, order: &str) -> Vec<Value> {
    let (status, page) = api
        .get(&format!("/v1/jobs?order_id={order}&limit=500"))
        .await;
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().cloned().unwrap_or_default()
}

fn find<'a>(jobs: &'a [Value], line: i64, process: &str) -> &'a Value {
    jobs.iter()
        .find(|j| j["line_index"] == line && j["process"] == process && j["replaces"].is_null())
        .unwrap_or_else(|| panic!("line {line} has a {process} job: {jobs:?}"))
}

fn token_of(job: &Value) -> u64 {
    job["token"].as_u64().expect("a job token")
}

async fn post_job(api: &Api, token: u64, action: &str) -> (u16, Value) {
    api.post(&format!("/v1/jobs/{token}/{action}"), &Value::Null, None)
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn operators_cancel_jobs_not_started_and_retry_held_ones() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fleet = support::fleet(7, TIME_SCALE).await;
    let config = support::config(&fleet, &dir.path().join("cancel.db"), TIME_SCALE);
    let north = config
        .factories
        .iter()
        .find(|f| f.id == "north")
        .map(|f| (f.lat, f.lon))
        .expect("the demo has a factory north");
    let running = Running::start(config).await;
    let operator = running.api(Role::Operator, "north").await;
    let brand = running.api(Role::Brand, "cancel-brand").await;
    let admin = running.api(Role::Admin, "*").await;

    // Tees only on north's printers: tote prints wait for their material.
    let printers = machines_doing(&operator, "north", "dtg_print").await;
    for printer in &printers {
        let (status, body) = operator
            .post(
                &format!("/v1/machines/{printer}/material"),
                &json!({"material": "cotton_tee"}),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let order = |reference: &str, lines: Value| {
        json!({
            "external_ref": reference,
            "customer": {"name": "Ada", "lat": north.0 + 0.001, "lon": north.1 + 0.001},
            "lines": lines,
        })
    };
    let (status, mixed) = brand
        .post(
            "/v1/orders",
            &order(
                "cancel-mixed",
                json!([{"sku": "tee-black-m", "quantity": 1}, {"sku": "tote-natural", "quantity": 1}]),
            ),
            None,
        )
        .await;
    assert_eq!(status, 201, "{mixed}");
    let (status, totes) = brand
        .post(
            "/v1/orders",
            &order(
                "cancel-totes",
                json!([{"sku": "tote-natural", "quantity": 2}]),
            ),
            None,
        )
        .await;
    assert_eq!(status, 201, "{totes}");
    let mixed_id = mixed["id"].as_str().expect("order id").to_string();
    let totes_id = totes["id"].as_str().expect("order id").to_string();

    // Cancelling a later step takes its whole line off the floor; with no
    // line left, the order is cancelled.
    let jobs = order_jobs(&operator, &totes_id).await;
    let press = token_of(find(&jobs, 0, "heat_press"));
    let print = token_of(find(&jobs, 0, "dtg_print"));
    let (status, cancelled) = post_job(&operator, press, "cancel").await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["job"]["state"], "cancelled", "{cancelled}");
    assert_eq!(cancelled["order_state"], "cancelled", "{cancelled}");
    let tokens: Vec<u64> = cancelled["cancelled"]
        .as_array()
        .map(|t| t.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    assert_eq!(tokens.len(), 2, "{cancelled}");
    assert!(
        tokens.contains(&press) && tokens.contains(&print),
        "{cancelled}"
    );
    let (_, seen) = brand.get(&format!("/v1/orders/{totes_id}")).await;
    assert_eq!(seen["state"], "cancelled", "the brand sees it: {seen}");
    let (status, body) = post_job(&operator, print, "cancel").await;
    assert_eq!(
        status, 409,
        "a cancelled job is not cancelled twice: {body}"
    );
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("only a pending or queued job is cancelled"),
        "{body}"
    );
    // Another factory's operator does not see the job.
    let south = running.api(Role::Operator, "south").await;
    let (status, body) = post_job(&south, print, "cancel").await;
    assert_eq!(status, 404, "{body}");

    // The tee line of the mixed order is made; cancelling its tote line
    // then leaves only done lines: the order is ready.
    wait_for(
        "the tee line of the mixed order made",
        Duration::from_secs(180),
        || async {
            let jobs = order_jobs(&operator, &mixed_id).await;
            let tee: Vec<&Value> = jobs
                .iter()
                .filter(|j| j["line_index"] == 0 && j["state"] != "failed")
                .collect();
            (!tee.is_empty() && tee.iter().all(|j| j["state"] == "done")).then_some(())
        },
    )
    .await;
    let jobs = order_jobs(&operator, &mixed_id).await;
    let tote_print = find(&jobs, 1, "dtg_print");
    assert_eq!(tote_print["state"], "pending", "{tote_print}");
    assert_eq!(
        tote_print["waiting"]["reason"], "material_not_loaded",
        "{tote_print}"
    );
    let (status, cancelled) = post_job(&operator, token_of(tote_print), "cancel").await;
    assert_eq!(status, 200, "{cancelled}");
    assert_eq!(cancelled["order_state"], "ready", "{cancelled}");
    let (_, seen) = brand.get(&format!("/v1/orders/{mixed_id}")).await;
    assert_eq!(seen["state"], "ready", "{seen}");

    // A running job is not cancelled, nor is a line with a job on a machine.
    let (status, tees) = brand
        .post(
            "/v1/orders",
            &order("retry-tees", json!([{"sku": "tee-black-m", "quantity": 3}])),
            None,
        )
        .await;
    assert_eq!(status, 201, "{tees}");
    let tees_id = tees["id"].as_str().expect("order id").to_string();
    let printer = wait_for(
        "a printer running the tees",
        Duration::from_secs(120),
        || async {
            printers
                .iter()
                .filter_map(|id| fleet.machine(id))
                .find(|m| m.snapshot().state == fabflow_adapters::RunState::Running)
        },
    )
    .await;
    printer.set_hold(true);
    let token = u64::from(printer.snapshot().job_token);
    wait_for(
        "the print seen running",
        Duration::from_secs(60),
        || async {
            let jobs = order_jobs(&operator, &tees_id).await;
            jobs.iter()
                .any(|j| token_of(j) == token && j["state"] == "running")
                .then_some(())
        },
    )
    .await;
    let (status, body) = post_job(&operator, token, "cancel").await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("is running"),
        "{body}"
    );
    let jobs = order_jobs(&operator, &tees_id).await;
    let press = token_of(find(&jobs, 0, "heat_press"));
    let (status, body) = post_job(&operator, press, "cancel").await;
    assert_eq!(status, 409, "{body}");
    let detail = body["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&format!("job {token}")) && detail.contains(printer.machine_id()),
        "names the job on a machine and where: {body}"
    );
    let (status, body) = post_job(&operator, token, "retry").await;
    assert_eq!(status, 409, "only a held job is retried: {body}");

    // The printer loses power: the job is held, and the operator retries
    // it: failed, its units made again under new tokens.
    printer.power_cycle().await;
    printer.set_hold(false);
    wait_for("the lost print held", Duration::from_secs(60), || async {
        let jobs = order_jobs(&operator, &tees_id).await;
        jobs.iter()
            .any(|j| token_of(j) == token && j["state"] == "held")
            .then_some(())
    })
    .await;
    let (status, retried) = post_job(&operator, token, "retry").await;
    assert_eq!(status, 200, "{retried}");
    assert_eq!(retried["state"], "failed", "{retried}");
    let jobs = order_jobs(&operator, &tees_id).await;
    let remade: Vec<&Value> = jobs.iter().filter(|j| j["replaces"] == token).collect();
    assert!(!remade.is_empty(), "units made again: {jobs:?}");
    assert!(remade.iter().all(|j| token_of(j) != token));
    let (status, body) = post_job(&operator, token, "retry").await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("already being made again"),
        "{body}"
    );

    // Audited and published, each event matching its schema.
    let (_, audit) = admin.get("/v1/audit?limit=500").await;
    for action in ["job.cancel", "job.retry"] {
        assert!(
            audit["items"]
                .as_array()
                .is_some_and(|items| items.iter().any(|a| a["action"] == action)),
            "{action}: {audit}"
        );
    }
    let kinds = support::assert_events_match_schemas(&admin).await;
    for kind in [
        "job.cancelled",
        "job.retried",
        "order.cancelled",
        "order.ready",
    ] {
        assert!(kinds.contains(kind), "{kind}: {kinds:?}");
    }

    running.stop().await;
    fleet.shutdown().await;
}

fn rfc3339(value: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap_or_default())
        .unwrap_or_else(|err| panic!("{value} is not RFC 3339: {err}"))
}

/// The first queued job of `machine` among `jobs` (its next to start).
fn first_queued<'a>(jobs: &'a [Value], machine: &str) -> Option<&'a Value> {
    jobs.iter()
        .filter(|j| j["machine"] == machine && j["state"] == "scheduled")
        .find(|j| j["waiting"]["position"] == 1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shifts_and_planned_maintenance_decide_when_jobs_start() {
    use chrono::{Duration as Span, DurationRound, Utc};
    let dir = tempfile::tempdir().expect("temp dir");
    let fleet = support::fleet(11, TIME_SCALE).await;
    let mut config = support::config(&fleet, &dir.path().join("calendar.db"), TIME_SCALE);
    // The queue rule, which spreads the four prints over both printers, so
    // that each has one waiting: one for its shift, one for its
    // maintenance. The shop planner (the default) rightly puts all four on
    // the printer that opens first, and none would wait for maintenance.
    config.scheduler.planner = fabflow::config::Planner::Queue;
    let north = config
        .factories
        .iter()
        .find(|f| f.id == "north")
        .map(|f| (f.lat, f.lon))
        .expect("the demo has a factory north");
    // north-dtg-1 works one hour a day, from half an hour (domain time)
    // after the daemon starts, its shift written in Kolkata's local time
    // (UTC+05:30: a zone is honoured to the half hour); north-dtg-2 always
    // works.
    let opens = (Utc::now() + Span::minutes(30))
        .duration_trunc(Span::minutes(1))
        .expect("a minute");
    let local = opens.with_timezone(&chrono_tz::Asia::Kolkata);
    let shift_cron = format!("0 {} {} * * *", local.format("%M"), local.format("%H"));
    for machine in &mut config.machines {
        if machine.id == "north-dtg-1" {
            machine.calendar = Some(fabflow::config::CalendarConfig {
                shifts: vec![fabflow::config::ShiftConfig {
                    start: shift_cron.clone(),
                    duration_minutes: 60,
                }],
                timezone: Some("Asia/Kolkata".into()),
            });
        }
    }
    let printers = ["north-dtg-1", "north-dtg-2"];
    let running = Running::start(config).await;
    let operator = running.api(Role::Operator, "north").await;
    let brand = running.api(Role::Brand, "calendar-brand").await;
    let admin = running.api(Role::Admin, "*").await;
    assert_eq!(
        machines_doing(&operator, "north", "dtg_print").await,
        printers
    );

    // Maintenance planned on north-dtg-2 from a minute from now, for 40
    // minutes (domain time): a print there would run into it.
    let (_, health) = operator.get("/healthz").await;
    let now = rfc3339(&health["now"]);
    let start = (now + Span::minutes(1)).to_rfc3339();
    let end_at = now + Span::minutes(40);
    let end = end_at.to_rfc3339();
    let windows = "/v1/machines/north-dtg-2/maintenance-windows";
    for (body, pointer) in [
        (
            json!({"start": start, "end": start, "reason": "belts"}),
            "/end",
        ),
        (
            json!({"start": "tomorrow", "end": end, "reason": "belts"}),
            "/start",
        ),
        (
            json!({"start": start, "end": end, "reason": " "}),
            "/reason",
        ),
    ] {
        let (status, problem) = operator.post(windows, &body, None).await;
        assert_eq!(status, 422, "{problem}");
        assert_eq!(problem["errors"][0]["pointer"], pointer, "{problem}");
    }
    let south = running.api(Role::Operator, "south").await;
    let body = json!({"start": start, "end": end, "reason": "print head cleaning"});
    let (status, problem) = south.post(windows, &body, None).await;
    assert_eq!(status, 404, "{problem}");
    let (status, window) = operator.post(windows, &body, None).await;
    assert_eq!(status, 201, "{window}");
    let window_id = window["id"].as_str().expect("a window id").to_string();
    let (status, listed) = operator.get(windows).await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed.as_array().map(Vec::len), Some(1), "{listed}");

    order_tees(&brand, north, "calendar", 4).await;
    let queued = wait_for(
        "a print queued on each printer",
        Duration::from_secs(60),
        || async {
            let jobs = jobs(&operator, "north").await;
            printers
                .iter()
                .all(|p| first_queued(&jobs, p).is_some())
                .then_some(jobs)
        },
    )
    .await;
    for job in queued.iter().filter(|j| j["process"] == "dtg_print") {
        assert!(
            ["pending", "scheduled"].contains(&job["state"].as_str().unwrap_or_default()),
            "no print starts outside a shift or into maintenance: {job}"
        );
    }
    let outside = first_queued(&queued, "north-dtg-1").expect("queued");
    assert_eq!(outside["waiting"]["reason"], "outside_shift", "{outside}");
    assert!(
        outside["waiting"]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("north-dtg-1 is outside its shift"),
        "{outside}"
    );
    assert_eq!(
        rfc3339(&outside["waiting"]["estimated_start"]),
        opens,
        "it starts when the shift opens: {outside}"
    );
    let maintained = first_queued(&queued, "north-dtg-2").expect("queued");
    assert_eq!(
        maintained["waiting"]["reason"], "maintenance",
        "{maintained}"
    );
    assert!(
        maintained["waiting"]["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("(print head cleaning)"),
        "{maintained}"
    );
    assert_eq!(
        rfc3339(&maintained["waiting"]["estimated_start"]).timestamp(),
        end_at.timestamp(),
        "it starts when the maintenance ends: {maintained}"
    );

    // The window removed, north-dtg-2 starts its print.
    let (status, removed) = operator.delete(&format!("{windows}/{window_id}")).await;
    assert_eq!(status, 200, "{removed}");
    let (status, body) = operator.delete(&format!("{windows}/{window_id}")).await;
    assert_eq!(status, 404, "{body}");
    let started = |printer: &'static str| {
        let operator = &operator;
        move || async move {
            jobs(operator, "north")
                .await
                .iter()
                .any(|j| {
                    j["machine"] == printer
                        && j["process"] == "dtg_print"
                        && ["dispatched", "running", "done"]
                            .contains(&j["state"].as_str().unwrap_or_default())
                })
                .then_some(())
        }
    };
    wait_for(
        "a print on north-dtg-2 once its maintenance is off",
        Duration::from_secs(60),
        started("north-dtg-2"),
    )
    .await;
    // north-dtg-1 starts when its shift opens, not before.
    let (_, health) = operator.get("/healthz").await;
    if rfc3339(&health["now"]) < opens {
        let now_jobs = jobs(&operator, "north").await;
        assert!(
            !now_jobs.iter().any(|j| j["machine"] == "north-dtg-1"
                && ["dispatched", "running", "done"]
                    .contains(&j["state"].as_str().unwrap_or_default())),
            "nothing starts on north-dtg-1 before its shift"
        );
    }
    wait_for(
        "a print on north-dtg-1 once its shift opens",
        Duration::from_secs(180),
        started("north-dtg-1"),
    )
    .await;
    let (_, health) = operator.get("/healthz").await;
    assert!(rfc3339(&health["now"]) >= opens, "{health}");

    let (_, audit) = admin.get("/v1/audit?limit=500").await;
    for action in ["machine.maintenance_window", "machine.maintenance_cancel"] {
        assert!(
            audit["items"]
                .as_array()
                .is_some_and(|items| items.iter().any(|a| a["action"] == action)),
            "{action}: {audit}"
        );
    }
    let kinds = support::assert_events_match_schemas(&admin).await;
    for kind in [
        "machine.maintenance_scheduled",
        "machine.maintenance_cancelled",
    ] {
        assert!(kinds.contains(kind), "{kind}: {kinds:?}");
    }

    running.stop().await;
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn starts_are_staggered_under_a_factory_power_budget() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fleet = support::fleet(13, TIME_SCALE).await;
    let mut config = support::config(&fleet, &dir.path().join("power.db"), TIME_SCALE);
    let north = config
        .factories
        .iter()
        .find(|f| f.id == "north")
        .map(|f| (f.lat, f.lon))
        .expect("the demo has a factory north");
    // Two printers drawing 1500 W each for 20 minutes (domain time) after a
    // start, in a factory with 2000 W for start-ups: never both at once.
    const STARTUP_MS: i64 = 20 * 60_000;
    for factory in &mut config.factories {
        if factory.id == "north" {
            factory.power_budget_w = Some(2000);
        }
    }
    let profiles: Vec<fabflow_adapters::Profile> = fabflow_adapters::builtin_profiles()
        .into_iter()
        .map(|mut profile| {
            profile.startup =
                (profile.model == "acme-dtg-200").then_some(fabflow_adapters::profile::Startup {
                    power_w: 1500,
                    duration_ms: STARTUP_MS as u64,
                });
            profile
        })
        .collect();
    let running = Running::start_with(config, profiles).await;
    let operator = running.api(Role::Operator, "north").await;
    let brand = running.api(Role::Brand, "power-brand").await;
    let admin = running.api(Role::Admin, "*").await;
    let printers = machines_doing(&operator, "north", "dtg_print").await;
    assert_eq!(printers.len(), 2, "{printers:?}");

    order_tees(&brand, north, "power", 2).await;
    // One printer starts; the other's print waits for room in the budget.
    let held_back = wait_for(
        "a print held back by the power budget",
        Duration::from_secs(60),
        || async {
            jobs(&operator, "north")
                .await
                .into_iter()
                .find(|j| j["waiting"]["reason"] == "power_budget")
        },
    )
    .await;
    let detail = held_back["waiting"]["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("draw 1500 W of its 2000 W power budget"),
        "{held_back}"
    );
    assert!(
        held_back["waiting"]["estimated_start"].is_string(),
        "says when there is room: {held_back}"
    );
    // Both print in the end, never both starting within one start-up window.
    wait_for(
        "both printers started",
        Duration::from_secs(180),
        || async {
            let jobs = jobs(&operator, "north").await;
            printers
                .iter()
                .all(|p| {
                    jobs.iter().any(|j| {
                        j["machine"] == p.as_str()
                            && j["process"] == "dtg_print"
                            && ["running", "done"]
                                .contains(&j["state"].as_str().unwrap_or_default())
                    })
                })
                .then_some(())
        },
    )
    .await;
    let (status, events) = admin.get("/v1/events?limit=500").await;
    assert_eq!(status, 200, "{events}");
    let mut starts: Vec<(i64, String)> = events["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["kind"] == "job.dispatched")
        .filter(|e| printers.iter().any(|p| e["job"]["machine"] == p.as_str()))
        .map(|e| {
            (
                rfc3339(&e["at"]).timestamp_millis(),
                e["job"]["machine"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    starts.sort();
    assert!(starts.len() >= 2, "{starts:?}");
    for pair in starts.windows(2) {
        if pair[0].1 != pair[1].1 {
            assert!(
                pair[1].0 - pair[0].0 >= STARTUP_MS,
                "two printers started within one start-up window: {starts:?}"
            );
        }
    }

    running.stop().await;
    fleet.shutdown().await;
}
