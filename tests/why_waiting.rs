//! End to end, operators asking why a job has not started: every queued
//! job says why it waits (an earlier step, no machine that takes jobs, its
//! place in a machine's queue) and a machine's queue shows each job's
//! position and estimated start and finish, through the API only.

mod support;

use fabflow::api::auth::Role;
use serde_json::{Value, json};
use std::time::Duration;
use support::{Api, Running, wait_for};

/// Slow enough that queues stay filled while the test looks at them.
const TIME_SCALE: f64 = 60.0;

/// How long a wait in these tests may take.
const LIMIT: Duration = Duration::from_secs(90);

async fn jobs(api: &Api, factory: &str) -> Vec<Value> {
    let (status, page) = api
        .get(&format!("/v1/jobs?factory={factory}&limit=500"))
        .await;
    assert_eq!(status, 200, "{page}");
    page["items"].as_array().cloned().unwrap_or_default()
}

/// The ids of `factory`'s DTG printers.
async fn dtg_printers(api: &Api, factory: &str) -> Vec<String> {
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
                .is_some_and(|c| c.iter().any(|p| p == "dtg_print"))
        })
        .filter_map(|m| m["id"].as_str().map(str::to_string))
        .collect()
}

fn time(value: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap_or_default())
        .unwrap_or_else(|err| panic!("{value} is not RFC 3339: {err}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_waiting_job_says_why_and_queues_say_when() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fleet = support::fleet(3, TIME_SCALE).await;
    let mut config = support::config(&fleet, &dir.path().join("why.db"), TIME_SCALE);
    // Three places per queue: while the resumed printer runs one job, two
    // stay queued, so the queue below is not a moment between a round and
    // the next dispatch (with the demo's two, it was; the test raced).
    config.scheduler.max_queue = 3;
    let north = config
        .factories
        .iter()
        .find(|f| f.id == "north")
        .map(|f| (f.lat, f.lon))
        .expect("the demo has a factory north");
    let running = Running::start(config).await;
    let operator = running.api(Role::Operator, "north").await;
    let brand = running.api(Role::Brand, "why-brand").await;

    // Every printer of north is paused before the orders come.
    let printers = dtg_printers(&operator, "north").await;
    assert!(!printers.is_empty(), "north has DTG printers");
    for printer in &printers {
        let (status, body) = operator
            .post(&format!("/v1/machines/{printer}/pause"), &json!({}), None)
            .await;
        assert_eq!(status, 200, "{body}");
    }
    for n in 0..8 {
        let body = json!({
            "external_ref": format!("why-{n}"),
            "customer": {"name": "Ada", "lat": north.0 + 0.001, "lon": north.1 + 0.001},
            "lines": [{"sku": "tee-black-m", "quantity": 3}],
        });
        let (status, order) = brand.post("/v1/orders", &body, None).await;
        assert_eq!(status, 201, "{order}");
        assert_eq!(order["factory"], "north", "{order}");
    }

    // Printing waits for a printer that takes jobs; pressing for printing.
    let all = jobs(&operator, "north").await;
    let prints: Vec<&Value> = all.iter().filter(|j| j["process"] == "dtg_print").collect();
    let presses: Vec<&Value> = all
        .iter()
        .filter(|j| j["process"] == "heat_press")
        .collect();
    assert_eq!((prints.len(), presses.len()), (8, 8), "{all:?}");
    for job in &prints {
        assert_eq!(job["state"], "pending", "{job}");
        assert_eq!(job["waiting"]["reason"], "no_machine_available", "{job}");
        let detail = job["waiting"]["detail"].as_str().unwrap_or_default();
        assert!(
            printers
                .iter()
                .all(|p| detail.contains(&format!("{p} is paused"))),
            "{detail}"
        );
    }
    for job in &presses {
        assert_eq!(job["waiting"]["reason"], "previous_step", "{job}");
        assert!(
            job["waiting"]["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("step 0 (dtg_print)"),
            "{job}"
        );
    }

    // One printer back: its queue fills and says when each job should run.
    let printer = &printers[0];
    let (status, body) = operator
        .post(&format!("/v1/machines/{printer}/resume"), &json!({}), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let queue = wait_for(
        "a queue of two jobs or more",
        Duration::from_secs(60),
        || async {
            let (status, queue) = operator.get(&format!("/v1/machines/{printer}/queue")).await;
            assert_eq!(status, 200, "{queue}");
            let queued = queue["jobs"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|j| j["state"] == "scheduled")
                .count();
            (queued >= 2).then_some(queue)
        },
    )
    .await;
    let mut last_finish: Option<chrono::DateTime<chrono::FixedOffset>> = None;
    let mut position = 0;
    for job in queue["jobs"].as_array().cloned().unwrap_or_default() {
        if job["state"] == "running" {
            assert!(job.get("waiting").is_none(), "{job}");
            continue;
        }
        position += 1;
        let waiting = &job["waiting"];
        assert_eq!(waiting["machine"], printer.as_str(), "{job}");
        assert_eq!(waiting["position"], position, "{job}");
        assert!(
            ["queued", "starting"].contains(&waiting["reason"].as_str().unwrap_or_default()),
            "{job}"
        );
        let (start, finish) = (
            time(&waiting["estimated_start"]),
            time(&waiting["estimated_finish"]),
        );
        assert!(finish > start, "{job}");
        if let Some(before) = last_finish {
            assert_eq!(
                start, before,
                "each job starts when the one before it ends: {job}"
            );
        }
        last_finish = Some(finish);
    }
    assert!(position >= 2, "{queue}");
    // The paused printers' jobs are gone from their queues; jobs still
    // pending wait for room on the working one, with an estimate.
    let pending: Vec<Value> = jobs(&operator, "north")
        .await
        .into_iter()
        .filter(|j| j["process"] == "dtg_print" && j["state"] == "pending")
        .collect();
    for job in &pending {
        assert_eq!(job["waiting"]["reason"], "queues_full", "{job}");
        assert_eq!(job["waiting"]["machine"], printer.as_str(), "{job}");
        assert!(job["waiting"]["estimated_start"].is_string(), "{job}");
    }

    // An operator moves jobs, and is refused where it makes no sense.
    let queued: Vec<Value> = queue["jobs"].as_array().cloned().unwrap_or_default();
    let last = queued
        .iter()
        .rev()
        .find(|j| j["state"] == "scheduled")
        .expect("a queued job");
    let token = last["token"].as_u64().expect("token");
    let other_printer = &printers[1];
    let refused = |body: &Value, words: &str| {
        assert_eq!(body["status"], 409, "{body}");
        assert!(
            body["detail"].as_str().unwrap_or_default().contains(words),
            "{body} should say {words:?}"
        );
    };
    let (status, body) = operator
        .post(
            &format!("/v1/jobs/{token}/move"),
            &json!({"machine": other_printer}),
            None,
        )
        .await;
    assert_eq!(status, 409, "{body}");
    refused(&body, "takes no jobs");
    let (status, machines) = operator.get("/v1/machines?factory=north").await;
    assert_eq!(status, 200, "{machines}");
    let press = machines
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .find(|m| {
            m["capabilities"]
                .as_array()
                .is_some_and(|c| !c.iter().any(|p| p == "dtg_print"))
        })
        .and_then(|m| m["id"].as_str().map(str::to_string))
        .expect("a machine that does not print");
    let (_, body) = operator
        .post(
            &format!("/v1/jobs/{token}/move"),
            &json!({"machine": press}),
            None,
        )
        .await;
    refused(&body, "does not do dtg_print");
    let (status, body) = operator
        .post(
            &format!("/v1/jobs/{token}/move"),
            &json!({"machin": other_printer}),
            None,
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"][0]["pointer"], "/machine", "{body}");
    let (status, body) = operator
        .post(
            &format!("/v1/jobs/{token}/move"),
            &json!({"machine": "south-dtg-1"}),
            None,
        )
        .await;
    assert_eq!(
        status, 404,
        "another factory's machine is not the operator's: {body}"
    );
    if let Some(on_machine) = queued.iter().find(|j| j["state"] == "running") {
        let (_, body) = operator
            .post(
                &format!("/v1/jobs/{}/move", on_machine["token"]),
                &json!({"machine": other_printer}),
                None,
            )
            .await;
        refused(&body, "only a pending or queued job moves");
    }
    let (status, body) = operator
        .post(
            &format!("/v1/machines/{other_printer}/resume"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, moved) = operator
        .post(
            &format!("/v1/jobs/{token}/move"),
            &json!({"machine": other_printer}),
            None,
        )
        .await;
    if status == 409 {
        // The printer it was queued on started it meanwhile.
        eprintln!("why_waiting: the job started before it could be moved");
        refused(&moved, "only a pending or queued job moves");
    } else {
        assert_eq!(status, 200, "{moved}");
        assert_eq!(moved["machine"], other_printer.as_str(), "{moved}");
        assert_eq!(moved["state"], "scheduled", "{moved}");
        let admin = running.api(Role::Admin, "*").await;
        let (_, audit) = admin.get("/v1/audit?limit=500").await;
        assert!(
            audit["items"]
                .as_array()
                .is_some_and(|items| items.iter().any(|a| a["action"] == "job.move")),
            "{audit}"
        );
        let kinds = support::assert_events_match_schemas(&admin).await;
        assert!(kinds.contains("job.moved"), "{kinds:?}");
    }
    let (status, body) = operator
        .post(
            &format!("/v1/machines/{other_printer}/pause"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // Pausing the working printer hands its queue back: the jobs it had not
    // started wait for a machine again.
    let (status, body) = operator
        .post(&format!("/v1/machines/{printer}/pause"), &json!({}), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, queue) = operator.get(&format!("/v1/machines/{printer}/queue")).await;
    assert_eq!(status, 200, "{queue}");
    assert!(
        queue["jobs"]
            .as_array()
            .is_some_and(|jobs| jobs.iter().all(|j| j["state"] != "scheduled")),
        "{queue}"
    );
    // More printing arrives while no printer takes jobs, so that there is
    // work to queue when the printer is back (the first orders may all be
    // printed by now).
    for n in 0..4 {
        let body = json!({
            "external_ref": format!("why-more-{n}"),
            "customer": {"name": "Ada", "lat": north.0 + 0.001, "lon": north.1 + 0.001},
            "lines": [{"sku": "tee-black-m", "quantity": 3}],
        });
        let (status, order) = brand.post("/v1/orders", &body, None).await;
        assert_eq!(status, 201, "{order}");
    }
    // Draining: the printer works through what it has queued, takes
    // nothing new, and pauses by itself once its queue is empty.
    let (status, body) = operator
        .post(&format!("/v1/machines/{printer}/resume"), &json!({}), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let queued_tokens = |queue: &Value| -> std::collections::BTreeSet<u64> {
        queue["jobs"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .filter(|j| j["state"] == "scheduled")
            .filter_map(|j| j["token"].as_u64())
            .collect()
    };
    wait_for("queued jobs again", Duration::from_secs(60), || async {
        let (_, queue) = operator.get(&format!("/v1/machines/{printer}/queue")).await;
        (!queued_tokens(&queue).is_empty()).then_some(())
    })
    .await;
    let (status, drained) = operator
        .post(&format!("/v1/machines/{printer}/drain"), &json!({}), None)
        .await;
    assert_eq!(status, 200, "{drained}");
    assert_eq!(drained["mode"], "draining", "{drained}");
    let (_, queue) = operator.get(&format!("/v1/machines/{printer}/queue")).await;
    let kept = queued_tokens(&queue);
    wait_for(
        "the drained printer to pause",
        Duration::from_secs(300),
        || async {
            let (_, queue) = operator.get(&format!("/v1/machines/{printer}/queue")).await;
            let now = queued_tokens(&queue);
            assert!(
                now.is_subset(&kept),
                "a draining machine takes nothing new: {now:?} after {kept:?}"
            );
            (queue["machine"]["mode"] == "paused").then_some(())
        },
    )
    .await;
    let admin = running.api(Role::Admin, "*").await;
    let (_, audit) = admin.get("/v1/audit?limit=500").await;
    assert!(
        audit["items"]
            .as_array()
            .is_some_and(|items| items.iter().any(|a| a["actor"] == "daemon (drained)")),
        "{audit}"
    );

    // Another factory's operator sees neither the machine nor its queue.
    let other = running.api(Role::Operator, "south").await;
    let (status, body) = other.get(&format!("/v1/machines/{printer}/queue")).await;
    assert_eq!(status, 404, "{body}");

    running.stop().await;
    fleet.shutdown().await;
}

/// A rush order on a full floor: the job queued behind a running one (not
/// started) goes back to the planner and the rush order's job runs before
/// it, as the machine's own start log shows.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_rush_order_overtakes_a_job_queued_before_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fleet = support::fleet(4, TIME_SCALE).await;
    let mut config = support::config(&fleet, &dir.path().join("rush.db"), TIME_SCALE);
    config.scheduler.max_queue = 2;
    let north = config
        .factories
        .iter()
        .find(|f| f.id == "north")
        .map(|f| (f.lat, f.lon))
        .expect("the demo has a factory north");
    let running = Running::start(config).await;
    let operator = running.api(Role::Operator, "north").await;
    let brand = running.api(Role::Brand, "rush-brand").await;

    // One printer of north works; the others are paused.
    let printers = dtg_printers(&operator, "north").await;
    let (printer, others) = printers.split_first().expect("north has a DTG printer");
    for other in others {
        let (status, body) = operator
            .post(&format!("/v1/machines/{other}/pause"), &json!({}), None)
            .await;
        assert_eq!(status, 200, "{body}");
    }
    let order = |n: usize, quantity: u32, deliver_by: Option<String>| {
        let mut body = json!({
            "external_ref": format!("rush-{n}"),
            "customer": {"name": "Ada", "lat": north.0 + 0.001, "lon": north.1 + 0.001},
            "lines": [{"sku": "tee-black-m", "quantity": quantity}],
        });
        if let Some(at) = deliver_by {
            body["deliver_by"] = json!(at);
        }
        body
    };
    // Three ordinary orders: ten tees each, 15 s of printing apiece here.
    for n in 0..3 {
        let (status, order) = brand.post("/v1/orders", &order(n, 10, None), None).await;
        assert_eq!(status, 201, "{order}");
        assert_eq!(order["factory"], "north", "{order}");
    }
    // The printer runs one and holds one queued; the third waits.
    let queued = wait_for("one print running and one queued", LIMIT, || async {
        let all = jobs(&operator, "north").await;
        let on = |state: &str| {
            all.iter()
                .find(|j| j["machine"] == printer.as_str() && j["state"] == state)
                .cloned()
        };
        on("running")?;
        on("scheduled")
    })
    .await;
    let queued_token = queued["token"].as_u64().expect("token") as u32;

    // A rush order, due in seven hours.
    let deliver_by = running.daemon.clock.now() + chrono::Duration::hours(7);
    let (status, rush) = brand
        .post(
            "/v1/orders",
            &order(9, 1, Some(deliver_by.to_rfc3339())),
            None,
        )
        .await;
    assert_eq!(status, 201, "{rush}");
    let rush_id = rush["id"].as_str().expect("id").to_string();
    let rush_print = wait_for("the rush print on the printer", LIMIT, || async {
        jobs(&operator, "north").await.into_iter().find(|j| {
            j["order_id"] == rush_id.as_str()
                && j["process"] == "dtg_print"
                && j["machine"] == printer.as_str()
        })
    })
    .await;
    let rush_token = rush_print["token"].as_u64().expect("token") as u32;
    // Both printed in the end; the rush one first.
    wait_for("both printed", LIMIT, || async {
        let started = fleet.started_tokens(printer);
        (started.contains(&rush_token) && started.contains(&queued_token)).then_some(())
    })
    .await;
    let started = fleet.started_tokens(printer);
    let at = |token: u32| started.iter().position(|t| *t == token);
    assert!(
        at(rush_token) < at(queued_token),
        "rush {rush_token} started after {queued_token}: {started:?}"
    );
    // The queued job went back once, with an event saying so.
    let admin = running.api(Role::Admin, "*").await;
    let events = admin.all_events().await;
    assert!(
        events.iter().any(|e| e["kind"] == "job.requeued"
            && e["subject"]["id"].as_str() == Some(queued_token.to_string().as_str())),
        "no job.requeued for {queued_token}"
    );
    running.stop().await;
    fleet.shutdown().await;
}
