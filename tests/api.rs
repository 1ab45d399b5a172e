//! The HTTP API as a client sees it: problem+json errors with the field at
//! fault, tenant scoping, idempotency keys, all-or-nothing imports, limits.

mod support;

use fabflow::api::auth::Role;
use serde_json::{Value, json};
use support::{Api, Running};

struct World {
    running: Running,
    fleet: fabflow_sim::Fleet,
    _dir: tempfile::TempDir,
    base: String,
    acme: Api,
    zest: Api,
    admin: Api,
    operator: Api,
    courier: Api,
}

async fn world() -> World {
    let dir = tempfile::tempdir().expect("temp dir");
    let fleet = support::fleet(3, 600.0).await;
    let mut config = support::config(&fleet, &dir.path().join("api.db"), 600.0);
    config.http.max_body_bytes = 64 * 1024;
    let running = Running::start(config).await;
    World {
        base: running.base.clone(),
        acme: running.api(Role::Brand, "acme").await,
        zest: running.api(Role::Brand, "zest").await,
        admin: running.api(Role::Admin, "*").await,
        operator: running.api(Role::Operator, "north").await,
        courier: running.api(Role::Courier, "bike-1").await,
        running,
        fleet,
        _dir: dir,
    }
}

impl World {
    async fn stop(self) {
        self.running.stop().await;
        self.fleet.shutdown().await;
    }
}

fn order(reference: &str) -> Value {
    json!({
        "external_ref": reference,
        "customer": {"name": "Ada", "lat": 52.52, "lon": 13.40},
        "lines": [{"sku": "tee-black-m", "quantity": 2}, {"sku": "mug-white", "quantity": 1}]
    })
}

fn pointers(problem: &Value) -> Vec<String> {
    problem["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .filter_map(|e| e["pointer"].as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_are_created_read_listed_and_scoped_by_brand() {
    let w = world().await;
    let (status, created) = w
        .acme
        .post("/v1/orders", &order("a-1"), Some("key-1"))
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["state"], "accepted");
    assert_eq!(created["brand"], "acme");
    let id = created["id"].as_str().expect("id").to_string();

    let (status, got) = w.acme.get(&format!("/v1/orders/{id}")).await;
    assert_eq!(status, 200);
    assert_eq!(got["external_ref"], "a-1");
    assert!(
        got["jobs"].as_array().is_some_and(|jobs| jobs.len() == 3),
        "tee: print + press, mug: uv print"
    );

    // Another brand's order does not exist for it: 404, not 403.
    let (status, problem) = w.zest.get(&format!("/v1/orders/{id}")).await;
    assert_eq!(status, 404, "{problem}");
    assert_eq!(problem["status"], 404);
    let (_, listed) = w.zest.get("/v1/orders").await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(0));
    let (_, listed) = w.acme.get("/v1/orders?state=accepted").await;
    assert!(
        listed["items"]
            .as_array()
            .is_some_and(|items| items.len() <= 1)
    );

    // Admins must say whose order it is; brands may not submit for others.
    let (status, problem) = w.admin.post("/v1/orders", &order("x"), None).await;
    assert_eq!(
        (status, pointers(&problem)),
        (422, vec!["/brand".to_string()])
    );
    let mut for_zest = order("x");
    for_zest["brand"] = json!("zest");
    let (status, _) = w.acme.post("/v1/orders", &for_zest, None).await;
    assert_eq!(status, 422);
    let (status, created) = w.admin.post("/v1/orders", &for_zest, None).await;
    assert_eq!((status, created["brand"].as_str()), (201, Some("zest")));

    // Couriers and operators cannot submit orders.
    let (status, problem) = w.courier.post("/v1/orders", &order("c"), None).await;
    assert_eq!(status, 403, "{problem}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_problem_json_naming_the_field() {
    let w = world().await;
    let client = reqwest::Client::new();
    // No token, bad token.
    let response = client
        .get(format!("{}/v1/orders", w.base))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 401);
    assert_eq!(
        response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("application/problem+json")
    );
    let (status, _) = Api::new(w.base.clone(), "ffb_nope").get("/v1/orders").await;
    assert_eq!(status, 401);

    // Every invalid field at once, each with its JSON pointer.
    let bad = json!({
        "customer": {"name": "", "lat": 48.1, "lon": 11.5},
        "lines": [{"sku": "hat", "quantity": 0}]
    });
    let (status, problem) = w.acme.post("/v1/orders", &bad, None).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(
        pointers(&problem),
        vec![
            "/customer/name",
            "/customer",
            "/lines/0/sku",
            "/lines/0/quantity"
        ]
    );
    // Unknown fields are refused (no mass assignment), each with its
    // pointer like every other field at fault; malformed JSON is 400.
    let mut sneaky = order("s");
    sneaky["state"] = json!("delivered");
    let (status, problem) = w.acme.post("/v1/orders", &sneaky, None).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(pointers(&problem), vec!["/state"]);
    assert!(
        problem["detail"]
            .as_str()
            .is_some_and(|d| d.contains("state")),
        "{problem}"
    );
    let response = client
        .post(format!("{}/v1/orders", w.base))
        .bearer_auth(&w.acme.token)
        .header("content-type", "application/json")
        .body("{\"customer\":")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 400);

    // Type errors: every field at fault with its pointer, not the first
    // parse error; a positional array is not an order.
    let typed = json!({
        "customer": {"name": "Ada", "lat": "52.5", "lon": 13.4},
        "lines": [{"sku": "tee-black-m", "quantity": -1}, {"sku": "mug-white", "quantity": 1.5}]
    });
    let (status, problem) = w.acme.post("/v1/orders", &typed, None).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(
        pointers(&problem),
        vec!["/customer/lat", "/lines/0/quantity", "/lines/1/quantity"]
    );
    let positional = json!([null, null, {"name": "Ada", "lat": 52.52, "lon": 13.4}, [{"sku": "tee-black-m", "quantity": 1}], null]);
    let (status, problem) = w.acme.post("/v1/orders", &positional, None).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(pointers(&problem), vec![""]);
    // Names with control characters or bidirectional overrides are refused;
    // lengths count characters.
    for name in ["Mal\u{0}lory", "\u{202E}yrollaM", "line\nbreak"] {
        let mut bad = order("n");
        bad["customer"]["name"] = json!(name);
        let (status, problem) = w.acme.post("/v1/orders", &bad, None).await;
        assert_eq!(status, 422, "{name:?}: {problem}");
        assert_eq!(pointers(&problem), vec!["/customer/name"], "{name:?}");
    }
    let mut long = order("l");
    long["customer"]["name"] = json!("é".repeat(200));
    let (status, problem) = w.acme.post("/v1/orders", &long, None).await;
    assert_eq!(
        status, 201,
        "200 characters are 400 bytes and fine: {problem}"
    );
    // The body must be declared JSON.
    let response = client
        .post(format!("{}/v1/orders", w.base))
        .bearer_auth(&w.acme.token)
        .header("content-type", "text/plain")
        .body(order("t").to_string())
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 415);
    // A wrong method says so, as a problem.
    let response = client
        .delete(format!("{}/v1/orders", w.base))
        .bearer_auth(&w.acme.token)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 405);
    assert!(response.headers().contains_key("allow"));
    let problem: Value = response.json().await.expect("problem+json");
    assert_eq!(problem["title"], "Method Not Allowed", "{problem}");
    assert!(
        problem["type"]
            .as_str()
            .is_some_and(|t| t.ends_with("/method-not-allowed")),
        "{problem}"
    );
    // The smaller bodies (returns, webhooks, operators' decisions) name
    // the field at fault too, and take only JSON.
    let (status, problem) = w
        .acme
        .post(
            "/v1/orders/no-such-order/returns",
            &json!({"lines": [{"line": 0, "quantity": -1}], "reason": "small"}),
            None,
        )
        .await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(pointers(&problem), vec!["/lines/0/quantity"]);
    let (status, problem) = w.acme.post("/v1/webhooks", &json!({"url": 5}), None).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(pointers(&problem), vec!["/url"]);
    let (status, problem) = w.acme.post("/v1/webhooks", &json!({}), None).await;
    assert_eq!(status, 422, "{problem}");
    assert_eq!(pointers(&problem), vec!["/url"]);
    for (token, path) in [
        (&w.acme.token, "/v1/webhooks"),
        (&w.operator.token, "/v1/machines/north-press-1/material"),
        (&w.operator.token, "/v1/jobs/1/move"),
    ] {
        let response = client
            .post(format!("{}{path}", w.base))
            .bearer_auth(token)
            .header("content-type", "text/plain")
            .body("{}")
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), 415, "{path}");
    }
    // The Bearer scheme is case-insensitive.
    let response = client
        .get(format!("{}/v1/orders", w.base))
        .header("authorization", format!("bearer {}", w.acme.token))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 200);

    // Body limit, page limit, unknown routes: problems too.
    let huge = json!({"external_ref": "x".repeat(100_000), "customer": {"name": "A", "lat": 52.5, "lon": 13.4}, "lines": []});
    let (status, problem) = w.acme.post("/v1/orders", &huge, None).await;
    assert_eq!(status, 413, "{problem}");
    assert_eq!(problem["status"], 413);
    let (status, problem) = w.acme.get("/v1/orders?limit=100000").await;
    assert_eq!(status, 400, "{problem}");
    let (status, problem) = w.acme.get("/v1/nothing-here").await;
    assert_eq!((status, problem["status"].as_u64()), (404, Some(404)));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_keys_replay_and_refuse_a_different_body() {
    let w = world().await;
    let (status, first) = w
        .acme
        .post("/v1/orders", &order("i-1"), Some("retry-me"))
        .await;
    assert_eq!(status, 201);
    let (status, again) = w
        .acme
        .post("/v1/orders", &order("i-1"), Some("retry-me"))
        .await;
    assert_eq!(status, 201);
    assert_eq!(again["id"], first["id"], "the first response is replayed");
    // The same order spaced and ordered differently means the same request.
    let respaced = serde_json::to_string_pretty(&json!({
        "lines": order("i-1")["lines"],
        "customer": order("i-1")["customer"],
        "external_ref": "i-1",
    }))
    .expect("json");
    let response = reqwest::Client::new()
        .post(format!("{}/v1/orders", w.base))
        .bearer_auth(&w.acme.token)
        .header("content-type", "application/json")
        .header("idempotency-key", "retry-me")
        .body(respaced)
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), 201);
    let replayed: Value = response.json().await.expect("json");
    assert_eq!(replayed["id"], first["id"], "replayed, not refused");
    let (status, problem) = w
        .acme
        .post("/v1/orders", &order("i-2"), Some("retry-me"))
        .await;
    assert_eq!(status, 422, "{problem}");
    // Keys are per brand.
    let (status, other) = w
        .zest
        .post("/v1/orders", &order("i-1"), Some("retry-me"))
        .await;
    assert_eq!(status, 201);
    assert_ne!(other["id"], first["id"]);
    let (_, listed) = w.acme.get("/v1/orders").await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(1));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imports_are_all_or_nothing_with_a_line_report() {
    let w = world().await;
    let client = reqwest::Client::new();
    let import = |body: String, content_type: &'static str| {
        let request = client
            .post(format!("{}/v1/orders/import", w.base))
            .bearer_auth(&w.acme.token)
            .header("content-type", content_type)
            .body(body);
        async move {
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let bad_csv = "external_ref,customer_name,lat,lon,sku,quantity\n\
                   e-1,Ada,52.52,13.40,tee-black-m,1\n\
                   e-1,Ada,52.52,13.40,mug-white,2\n\
                   e-2,Bob,52.50,13.41,no-such-sku,1\n\
                   e-3,Cy,52.51,13.39,tote-natural,1\n";
    let (status, report) = import(bad_csv.into(), "text/csv").await;
    assert_eq!(status, 422, "{report}");
    assert_eq!(report["imported"], 0);
    let lines = report["orders"].as_array().cloned().unwrap_or_default();
    assert_eq!(lines.len(), 3, "{report}");
    assert_eq!(lines[1]["line"], 4);
    assert_eq!(lines[1]["errors"][0]["pointer"], "/lines/0/sku");
    let (_, listed) = w.acme.get("/v1/orders").await;
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(0),
        "nothing half-imported"
    );

    let good_csv = bad_csv.replace("no-such-sku", "phone-case");
    let (status, report) = import(good_csv, "text/csv").await;
    assert_eq!(status, 201, "{report}");
    assert_eq!(report["imported"], 3);
    let ndjson = format!("{}\n{}\n", order("n-1"), order("n-2"));
    let (status, report) = import(ndjson, "application/x-ndjson").await;
    assert_eq!(
        (status, report["imported"].as_u64()),
        (201, Some(2)),
        "{report}"
    );
    let (status, _) = import("x".into(), "application/pdf").await;
    assert_eq!(status, 415);
    let (_, listed) = w.acme.get("/v1/orders").await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(5));

    // Rows of one reference form one order wherever they stand; rows of one
    // reference naming another customer are refused with their lines.
    let scattered = "external_ref,customer_name,lat,lon,sku,quantity\n\
                     s-1,Alice,52.52,13.40,tee-black-m,1\n\
                     s-2,Mallory,52.50,13.41,mug-white,1\n\
                     s-1,Alice,52.52,13.40,mug-white,1\n\
                     s-2,Alice,52.52,13.40,phone-case,1\n";
    let (status, report) = import(scattered.into(), "text/csv").await;
    assert_eq!(status, 422, "{report}");
    let lines = report["orders"].as_array().cloned().unwrap_or_default();
    assert_eq!(lines.len(), 2, "{report}");
    assert!(
        lines[0]["errors"].as_array().is_some_and(Vec::is_empty),
        "{report}"
    );
    assert_eq!(lines[1]["line"], 3);
    assert_eq!(lines[1]["errors"][0]["pointer"], "line 5");
    let fixed = scattered.replace("s-2,Alice,52.52,13.40", "s-2,Mallory,52.50,13.41");
    let (status, report) = import(fixed, "text/csv").await;
    assert_eq!(
        (status, report["imported"].as_u64()),
        (201, Some(2)),
        "{report}"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operators_couriers_and_ops_endpoints() {
    let w = world().await;
    let (status, created) = w.acme.post("/v1/orders", &order("o-1"), None).await;
    assert_eq!(status, 201);
    let id = created["id"].as_str().expect("id").to_string();

    let (status, machines) = w.operator.get("/v1/machines").await;
    assert_eq!(status, 200);
    let machines = machines.as_array().cloned().unwrap_or_default();
    assert!(!machines.is_empty());
    assert!(
        machines.iter().all(|m| m["factory"] == "north"),
        "an operator sees its factories only"
    );
    let (status, _) = w.operator.get("/v1/jobs?factory=south").await;
    assert_eq!(status, 404);
    let (status, jobs) = w.admin.get(&format!("/v1/jobs?order_id={id}")).await;
    assert_eq!(status, 200);
    assert_eq!(jobs["items"].as_array().map(Vec::len), Some(3));
    let (status, _) = w.acme.get("/v1/jobs").await;
    assert_eq!(status, 403);

    // Pause and resume a machine.
    let machine = machines[0]["id"].as_str().expect("machine id").to_string();
    let (status, paused) = w
        .operator
        .post(&format!("/v1/machines/{machine}/pause"), &json!({}), None)
        .await;
    assert_eq!(
        (status, paused["mode"].as_str()),
        (200, Some("paused")),
        "{paused}"
    );
    let (status, _) = w
        .operator
        .post(&format!("/v1/machines/{machine}/pause"), &json!({}), None)
        .await;
    assert_eq!(status, 409);
    let (status, _) = w
        .operator
        .post(&format!("/v1/machines/{machine}/resume"), &json!({}), None)
        .await;
    assert_eq!(status, 200);

    // A courier sees only its own schedule.
    let (status, schedule) = w.courier.get("/v1/couriers/bike-1/schedule").await;
    assert_eq!(
        (status, schedule["courier"].as_str()),
        (200, Some("bike-1"))
    );
    let (status, _) = w.courier.get("/v1/couriers/bike-2/schedule").await;
    assert_eq!(status, 404);
    let (status, _) = w
        .courier
        .post("/v1/handoffs/nope/confirm", &json!({}), None)
        .await;
    assert_eq!(status, 404);

    // Cancel: the brand's own order, once.
    let (status, _) = w
        .zest
        .post(&format!("/v1/orders/{id}/cancel"), &json!({}), None)
        .await;
    assert_eq!(status, 404);

    let client = reqwest::Client::new();
    let spec: Value = client
        .get(format!("{}/openapi.json", w.base))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert!(spec["paths"]["/v1/orders"]["post"].is_object());
    assert!(spec["paths"]["/v1/couriers/{id}/schedule"]["get"].is_object());
    let health: Value = client
        .get(format!("{}/healthz", w.base))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(health["status"], "ok");
    let metrics = client
        .get(format!("{}/metrics", w.base))
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("text");
    assert!(metrics.contains("fabflow_orders"), "{metrics}");
    // Every state reads at every scrape, an empty one as 0 (not its last count).
    assert!(
        metrics.contains("fabflow_orders{state=\"returned\"} 0"),
        "{metrics}"
    );
    let dashboard = client
        .get(format!("{}/", w.base))
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("text");
    assert!(dashboard.contains("fabflow"));
    w.stop().await;
}

/// A token with an expiry works until then, cached or not, and is refused
/// after it (the cache does not outlive it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expiring_token_is_refused_once_it_expired() {
    let w = world().await;
    let now = fabflow::api::auth::wall_clock_ms();
    let (token, _id) = fabflow::api::auth::issue_expiring(
        &w.running.daemon.store,
        Role::Brand,
        "acme",
        "short-lived",
        Some(now + 1_500),
        "test",
        now,
    )
    .await
    .expect("token");
    let api = Api::new(w.base.clone(), token);
    let (status, _) = api.get("/v1/orders").await;
    assert_eq!(status, 200, "valid before its expiry");
    let (status, _) = api.get("/v1/orders").await;
    assert_eq!(status, 200, "and from the cache");
    tokio::time::sleep(std::time::Duration::from_millis(2_500)).await;
    let (status, problem) = api.get("/v1/orders").await;
    assert_eq!(status, 401, "expired: {problem}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_failed_authentications_are_slowed_down() {
    let w = world().await;
    let (status, _) = w.acme.get("/v1/orders").await;
    assert_eq!(
        status, 200,
        "acme's token is known before the guessing starts"
    );
    let stranger = Api::new(w.base.clone(), "ffb_guessing");
    for _ in 0..fabflow::api::auth::MAX_FAILURES {
        let (status, _) = stranger.get("/v1/orders").await;
        assert_eq!(status, 401);
    }
    let (status, problem) = stranger.get("/v1/orders").await;
    assert_eq!(status, 429, "{problem}");
    assert_eq!(problem["status"], 429);
    // The guesser is told when to come back.
    let response = reqwest::Client::new()
        .get(format!("{}/v1/orders", w.base))
        .bearer_auth("ffb_guessing-again")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status().as_u16(), 429);
    let retry_after: u64 = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    // A valid token is never refused for its address's failures, even one
    // the daemon has not seen from anyone yet.
    let fresh = w.running.api(Role::Brand, "fresh").await;
    let (status, _) = fresh.get("/v1/orders").await;
    assert_eq!(status, 200);
    // A token already in use keeps working.
    let (status, _) = w.acme.get("/v1/orders").await;
    assert_eq!(status, 200);
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_key_covers_the_whole_file() {
    let w = world().await;
    let client = reqwest::Client::new();
    let import = |body: String, key: &'static str| {
        let request = client
            .post(format!("{}/v1/orders/import", w.base))
            .bearer_auth(&w.acme.token)
            .header("content-type", "application/x-ndjson")
            .header("idempotency-key", key)
            .body(body);
        async move {
            let response = request.send().await.expect("request");
            let status = response.status().as_u16();
            let replayed = response.headers().contains_key("idempotent-replayed");
            (
                status,
                replayed,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let file = format!("{}\n{}\n", order("k-1"), order("k-2"));
    let (status, replayed, first) = import(file.clone(), "event-42").await;
    assert_eq!((status, replayed), (201, false), "{first}");
    let (status, replayed, again) = import(file.clone(), "event-42").await;
    assert_eq!((status, replayed), (201, true));
    assert_eq!(again, first, "the first report is replayed");
    // An amended, longer file under the same key: refused whole, nothing stored.
    let longer = format!("{file}{}\n", order("k-3"));
    let (status, _, problem) = import(longer, "event-42").await;
    assert_eq!(status, 422, "{problem}");
    let (_, listed) = w.acme.get("/v1/orders").await;
    assert_eq!(listed["items"].as_array().map(Vec::len), Some(2));
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_decisions_are_in_the_audit_trail_that_only_admins_read() {
    let w = world().await;
    let (status, machines) = w.operator.get("/v1/machines").await;
    assert_eq!(status, 200, "{machines}");
    let machine = machines[0]["id"]
        .as_str()
        .expect("a machine in north")
        .to_string();
    let (status, view) = w
        .operator
        .post(&format!("/v1/machines/{machine}/pause"), &json!({}), None)
        .await;
    assert_eq!(status, 200, "{view}");
    let (status, problem) = w.operator.get("/v1/audit").await;
    assert_eq!(status, 403, "{problem}");
    let (status, page) = w.admin.get("/v1/audit").await;
    assert_eq!(status, 200, "{page}");
    let entry = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|e| e["action"] == "machine.mode" && e["target"] == machine.as_str())
        .unwrap_or_else(|| panic!("the pause is audited: {page}"));
    let actor = entry["actor"].as_str().expect("actor");
    assert!(actor.starts_with("operator:north (token "), "{actor}");
    assert_eq!(entry["detail"], "active -> paused");
    assert!(entry["at"].is_string());

    // Admins' decisions too: a brand's sales event put and deleted, a
    // brand's webhook endpoint given a new secret and removed; and the
    // broker users the daemon made at its start.
    let (status, event) = w
        .admin
        .put(
            "/v1/sales-events/spring?brand=acme",
            &json!({"name": "Spring market", "starts_on": "2027-03-06", "days": 2}),
        )
        .await;
    assert_eq!(status, 201, "{event}");
    let (status, _) = w.admin.delete("/v1/sales-events/spring?brand=acme").await;
    assert_eq!(status, 204);
    let (status, endpoint) = w
        .acme
        .post(
            "/v1/webhooks",
            &json!({"url": "https://93.184.216.34/hooks"}),
            None,
        )
        .await;
    assert_eq!(status, 201, "{endpoint}");
    let id = endpoint["id"].as_str().expect("endpoint id").to_string();
    let (status, rotated) = w
        .admin
        .post(
            &format!("/v1/webhooks/{id}/rotate-secret"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let (status, _) = w.admin.delete(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(status, 204);
    let (status, page) = w.admin.get("/v1/audit?limit=200").await;
    assert_eq!(status, 200, "{page}");
    let items = page["items"].as_array().cloned().unwrap_or_default();
    for (action, target) in [
        ("sales_event.put", "acme/spring"),
        ("sales_event.delete", "acme/spring"),
        ("webhook.rotate_secret", id.as_str()),
        ("webhook.delete", id.as_str()),
    ] {
        let entry = items
            .iter()
            .find(|e| e["action"] == action && e["target"] == target)
            .unwrap_or_else(|| panic!("{action} {target} is audited: {page}"));
        assert!(
            entry["actor"]
                .as_str()
                .is_some_and(|a| a.starts_with("admin:")),
            "{entry}"
        );
    }
    assert!(
        items
            .iter()
            .any(|e| e["action"] == "mqtt_user.create" && e["target"] == "observer"),
        "{page}"
    );
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_consumer_resumes_the_event_log_after_the_last_seq_it_saw() {
    let w = world().await;
    for n in 0..3 {
        let (status, _) = w
            .acme
            .post("/v1/orders", &order(&format!("ev-{n}")), None)
            .await;
        assert_eq!(status, 201);
    }
    let (status, _) = w.zest.post("/v1/orders", &order("zest-ev"), None).await;
    assert_eq!(status, 201);

    // Page by page, two at a time, until the log has acme's three accepts.
    let mut seen: Vec<Value> = Vec::new();
    let mut after: Option<i64> = None;
    while seen
        .iter()
        .filter(|e| e["kind"] == "order.accepted")
        .count()
        < 3
    {
        let path = match after {
            Some(seq) => format!("/v1/events?limit=2&after={seq}"),
            None => "/v1/events?limit=2".to_string(),
        };
        let (status, page) = w.acme.get(&path).await;
        assert_eq!(status, 200, "{page}");
        let items = page["items"].as_array().cloned().unwrap_or_default();
        assert!(!items.is_empty() || page["next"].is_null(), "{page}");
        if items.is_empty() {
            break;
        }
        after = items.last().and_then(|e| e["seq"].as_i64());
        seen.extend(items);
    }
    assert!(
        seen.iter().all(|e| e["brand"] == "acme"),
        "a brand reads only its own events"
    );
    let seqs: Vec<i64> = seen.iter().filter_map(|e| e["seq"].as_i64()).collect();
    assert!(
        seqs.windows(2).all(|w| w[0] < w[1]),
        "in log order, no repeats: {seqs:?}"
    );
    let ids: std::collections::HashSet<&str> =
        seen.iter().filter_map(|e| e["id"].as_str()).collect();
    assert_eq!(ids.len(), seen.len(), "unique ids");
    // Resuming after the last seq seen gives nothing new yet, and the admin
    // reads every brand's events.
    let last = seqs.last().copied().expect("events");
    let (_, page) = w.acme.get(&format!("/v1/events?after={last}")).await;
    assert!(
        page["items"]
            .as_array()
            .is_some_and(|items| items.iter().all(|e| e["brand"] == "acme")),
        "{page}"
    );
    let (status, page) = w.admin.get("/v1/events?limit=500").await;
    assert_eq!(status, 200);
    let brands: std::collections::HashSet<&str> = page["items"]
        .as_array()
        .map(|items| items.iter().filter_map(|e| e["brand"].as_str()).collect())
        .unwrap_or_default();
    assert!(
        brands.contains("acme") && brands.contains("zest"),
        "{brands:?}"
    );
    let (status, _) = w.courier.get("/v1/events").await;
    assert_eq!(status, 403);
    let (status, problem) = w.acme.get("/v1/events?after=-1").await;
    assert_eq!(status, 400, "{problem}");
    w.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jobs_cursor_is_described_and_checked_as_a_token() {
    let w = world().await;
    let (status, problem) = w.operator.get("/v1/jobs?after=abc").await;
    assert_eq!(status, 400, "{problem}");
    assert_eq!(pointers(&problem), ["after"], "{problem}");
    let (status, problem) = w.operator.get("/v1/jobs?after=-4").await;
    assert_eq!(status, 400, "{problem}");
    let (status, page) = w.operator.get("/v1/jobs?after=0&limit=1").await;
    assert_eq!(status, 200, "{page}");
    let spec: Value = reqwest::get(format!("{}/openapi.json", w.base))
        .await
        .expect("openapi")
        .json()
        .await
        .expect("json");
    let after = spec["paths"]["/v1/jobs"]["get"]["parameters"]
        .as_array()
        .and_then(|ps| ps.iter().find(|p| p["name"] == "after").cloned())
        .expect("after parameter");
    assert_eq!(after["schema"]["pattern"], "^[0-9]{0,18}$", "{after}");

    // The order's schema states the bounds the server holds it to.
    let schemas = &spec["components"]["schemas"];
    let line = &schemas["LineRequest"]["properties"]["quantity"];
    assert_eq!(
        (&line["minimum"], &line["maximum"]),
        (&json!(1), &json!(100)),
        "{line}"
    );
    let lines = &schemas["OrderRequest"]["properties"]["lines"];
    assert_eq!(
        (&lines["minItems"], &lines["maxItems"]),
        (&json!(1), &json!(50)),
        "{lines}"
    );
    let name = &schemas["Customer"]["properties"]["name"];
    assert_eq!(
        (&name["minLength"], &name["maxLength"]),
        (&json!(1), &json!(200)),
        "{name}"
    );
    w.stop().await;
}
