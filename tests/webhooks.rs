//! Brand webhooks as a brand's receiver meets them: every delivery checked
//! with the Standard Webhooks reference library (`standardwebhooks`, its own
//! HMAC), nothing lost across a receiver that fails for a while and a daemon
//! restart, dead deliveries listed and replayed, secrets rotated without a
//! gap, endpoints validated and scoped by brand.

mod support;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use fabflow::api::auth::Role;
use fabflow::config::Config;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use support::{Api, Running, wait_for};

/// One request the receiver got.
#[derive(Debug, Clone)]
struct Received {
    id: String,
    headers: HeaderMap,
    body: Bytes,
}

/// A brand's webhook receiver on a loopback port; answers `status`.
#[derive(Clone, Default)]
struct Receiver {
    requests: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
}

impl Receiver {
    async fn start(status: u16) -> (Receiver, String) {
        let receiver = Receiver::default();
        receiver.status.store(status, Ordering::SeqCst);
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(receiver.clone());
        let listener = support::listener().await;
        let url = format!("http://{}/hook", listener.local_addr().expect("address"));
        tokio::spawn(async move { axum::serve(listener, app).await });
        (receiver, url)
    }

    fn answer(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    fn requests(&self) -> Vec<Received> {
        self.requests.lock().expect("receiver lock").clone()
    }

    /// The ids of the requests that verify with `secret`, and how many
    /// requests did not.
    fn verified(&self, secret: &str) -> (BTreeSet<String>, usize) {
        let hook = standardwebhooks::Webhook::new(secret).expect("secret parses");
        let mut good = BTreeSet::new();
        let mut bad = 0;
        for request in self.requests() {
            match hook.verify(&request.body, &request.headers) {
                Ok(()) => {
                    good.insert(request.id);
                }
                Err(_) => bad += 1,
            }
        }
        (good, bad)
    }
}

async fn receive(State(receiver): State<Receiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let id = headers
        .get("webhook-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    receiver
        .requests
        .lock()
        .expect("receiver lock")
        .push(Received { id, headers, body });
    StatusCode::from_u16(receiver.status.load(Ordering::SeqCst)).unwrap_or(StatusCode::OK)
}

fn order(reference: &str) -> Value {
    json!({
        "external_ref": reference,
        "customer": {"name": "Ada", "lat": 52.52, "lon": 13.40},
        "lines": [{"sku": "tote-natural", "quantity": 1}]
    })
}

fn quick_retries(config: &mut Config, give_up_after_ms: u64) {
    config.webhooks.allow_private_networks = true;
    config.webhooks.first_retry_ms = 50;
    config.webhooks.max_retry_ms = 400;
    config.webhooks.give_up_after_ms = give_up_after_ms;
}

/// Every event of the brand in the log, by id.
async fn brand_events(api: &Api) -> HashMap<String, Value> {
    let mut out = HashMap::new();
    let mut after = 0;
    loop {
        let (status, page) = api
            .get(&format!("/v1/events?after={after}&limit=500"))
            .await;
        assert_eq!(status, 200, "{page}");
        for event in page["items"].as_array().cloned().unwrap_or_default() {
            out.insert(event["id"].as_str().unwrap_or_default().to_string(), event);
        }
        match page["next"].as_i64() {
            Some(next) => after = next,
            None => return out,
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_event_arrives_signed_through_failures_and_a_restart() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fleet = support::fleet(11, 600.0).await;
    let mut config = support::config(&fleet, &dir.path().join("hooks.db"), 600.0);
    quick_retries(&mut config, 600_000);
    let running = Running::start(config.clone()).await;
    let brand = running.token(Role::Brand, "hooked").await;
    let api = Api::new(running.base.clone(), brand.clone());
    let other = running.api(Role::Brand, "bystander").await;

    // The receiver fails at first: every delivery is retried.
    let (receiver, url) = Receiver::start(500).await;
    let (status, created) = api
        .post(
            "/v1/webhooks",
            &json!({"url": url, "description": "shop"}),
            None,
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let secret = created["secret"].as_str().expect("secret").to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let endpoint = created["id"].as_str().expect("id").to_string();

    for n in 0..4 {
        let (status, body) = api
            .post("/v1/orders", &order(&format!("h-{n}")), None)
            .await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = other
            .post("/v1/orders", &order(&format!("o-{n}")), None)
            .await;
        assert_eq!(status, 201, "{body}");
    }
    wait_for("failed attempts", Duration::from_secs(30), || async {
        (receiver.requests().len() >= 8).then_some(())
    })
    .await;
    let (status, page) = api
        .get(&format!("/v1/webhooks/{endpoint}/deliveries?state=pending"))
        .await;
    assert_eq!(status, 200, "{page}");
    let retried = page["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .find(|d| d["attempts"].as_i64() >= Some(1))
        .unwrap_or_else(|| panic!("no retried delivery in {page}"));
    assert_eq!(retried["last_status"], 500, "{retried}");

    // The daemon restarts while deliveries are failing; the receiver
    // recovers afterwards.
    running.stop().await;
    let running = Running::start(config).await;
    let api = Api::new(running.base.clone(), brand.clone());
    for n in 4..6 {
        let (status, body) = api
            .post("/v1/orders", &order(&format!("h-{n}")), None)
            .await;
        assert_eq!(status, 201, "{body}");
    }
    receiver.answer(204);

    let events = brand_events(&api).await;
    assert!(events.len() >= 6, "{} events", events.len());
    let wanted: BTreeSet<String> = events.keys().cloned().collect();
    let (good, bad) = wait_for("every event delivered", Duration::from_secs(60), || async {
        let (good, bad) = receiver.verified(&secret);
        wanted.is_subset(&good).then_some((good, bad))
    })
    .await;
    assert_eq!(bad, 0, "a delivery did not verify");
    // Only the brand's own events.
    for request in receiver.requests() {
        let event: Value = serde_json::from_slice(&request.body).expect("JSON body");
        assert_eq!(event["brand"], "hooked", "{event}");
        assert_eq!(
            event["id"],
            request.id.as_str(),
            "webhook-id is the event id"
        );
        assert_eq!(
            request
                .headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
    }
    assert!(good.len() >= wanted.len());
    wait_for(
        "no delivery left pending",
        Duration::from_secs(30),
        || async {
            let (_, page) = api
                .get(&format!("/v1/webhooks/{endpoint}/deliveries?state=pending"))
                .await;
            page["items"]
                .as_array()
                .is_some_and(Vec::is_empty)
                .then_some(())
        },
    )
    .await;
    running.stop().await;
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_deliveries_are_listed_replayed_and_secrets_rotate_without_a_gap() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fleet = support::fleet(12, 600.0).await;
    let mut config = support::config(&fleet, &dir.path().join("dead.db"), 600.0);
    quick_retries(&mut config, 300);
    let running = Running::start(config).await;
    let api = running.api(Role::Brand, "lapsed").await;
    let (receiver, url) = Receiver::start(503).await;
    let (status, created) = api
        .post(
            "/v1/webhooks",
            &json!({"url": url, "kinds": ["order.accepted"]}),
            None,
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let old_secret = created["secret"].as_str().expect("secret").to_string();
    let endpoint = created["id"].as_str().expect("id").to_string();
    let (status, body) = api.post("/v1/orders", &order("d-1"), None).await;
    assert_eq!(status, 201, "{body}");

    let dead = wait_for("a dead delivery", Duration::from_secs(30), || async {
        let (_, page) = api
            .get(&format!("/v1/webhooks/{endpoint}/deliveries?state=dead"))
            .await;
        page["items"]
            .as_array()
            .and_then(|items| items.first().cloned())
    })
    .await;
    assert_eq!(dead["kind"], "order.accepted", "{dead}");
    assert_eq!(dead["last_status"], 503, "{dead}");
    assert!(dead["attempts"].as_i64() >= Some(2), "{dead}");
    assert!(dead.get("next_attempt_at").is_none(), "{dead}");
    let tried = receiver.requests().len();
    assert!(tried >= 2, "{tried} attempts reached the receiver");
    // Only the kind asked for.
    for request in receiver.requests() {
        let event: Value = serde_json::from_slice(&request.body).expect("JSON body");
        assert_eq!(event["kind"], "order.accepted", "{event}");
    }

    // The brand rotates its secret, fixes its receiver and replays.
    let (status, rotated) = api
        .post(
            &format!("/v1/webhooks/{endpoint}/rotate-secret"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(status, 200, "{rotated}");
    let new_secret = rotated["secret"].as_str().expect("secret").to_string();
    assert_ne!(new_secret, old_secret);
    assert!(rotated["previous_secret_until"].is_string(), "{rotated}");
    receiver.answer(200);
    let (status, replayed) = api
        .post(
            &format!("/v1/webhooks/{endpoint}/replay-dead"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(status, 200, "{replayed}");
    assert!(replayed["replayed"].as_u64() >= Some(1), "{replayed}");
    wait_for("the replay delivered", Duration::from_secs(30), || async {
        let (_, page) = api
            .get(&format!(
                "/v1/webhooks/{endpoint}/deliveries?state=delivered"
            ))
            .await;
        (page["items"].as_array().map_or(0, Vec::len) >= 1).then_some(())
    })
    .await;
    // The replay carries both signatures during the grace: a receiver on
    // either secret accepts it.
    let replay = receiver.requests().last().cloned().expect("a request");
    for secret in [&old_secret, &new_secret] {
        let hook = standardwebhooks::Webhook::new(secret).expect("secret");
        hook.verify(&replay.body, &replay.headers)
            .unwrap_or_else(|err| panic!("replay does not verify with {secret}: {err:?}"));
    }
    // A delivered one can be replayed again; an unknown one is 404.
    let id = dead["id"].as_i64().expect("delivery id");
    let (status, again) = api
        .post(
            &format!("/v1/webhooks/{endpoint}/deliveries/{id}/replay"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["state"], "pending", "{again}");
    wait_for("the second replay", Duration::from_secs(30), || async {
        (receiver
            .requests()
            .iter()
            .filter(|r| r.id == replay.id)
            .count()
            >= 2)
            .then_some(())
    })
    .await;
    let (status, missing) = api
        .post(
            &format!("/v1/webhooks/{endpoint}/deliveries/999999/replay"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(status, 404, "{missing}");
    running.stop().await;
    fleet.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_are_validated_and_scoped_by_brand() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fleet = support::fleet(13, 600.0).await;
    // As in production: private networks are refused (the demo allows them).
    let mut config = support::config(&fleet, &dir.path().join("scoped.db"), 600.0);
    config.webhooks.allow_private_networks = false;
    let running = Running::start(config).await;
    let acme = running.api(Role::Brand, "acme").await;
    let zest = running.api(Role::Brand, "zest").await;
    let admin = running.api(Role::Admin, "*").await;
    let operator = running.api(Role::Operator, "north").await;

    let cases = [
        (json!({"url": "ftp://x.example/"}), 422, "/url"),
        (json!({"url": "http://127.0.0.1:9/hook"}), 422, "/url"),
        (json!({"url": "http://169.254.169.254/latest"}), 422, "/url"),
        (
            json!({"url": "https://ok.example/h", "kinds": ["order.*", "Nope"]}),
            422,
            "/kinds/1",
        ),
        (
            json!({"url": "https://ok.example/h", "description": "a\u{202E}b"}),
            422,
            "/description",
        ),
    ];
    for (body, status, pointer) in cases {
        let (got, problem) = acme.post("/v1/webhooks", &body, None).await;
        assert_eq!(got, status, "{body}: {problem}");
        let pointers: Vec<&str> = problem["errors"]
            .as_array()
            .map(|e| e.iter().filter_map(|e| e["pointer"].as_str()).collect())
            .unwrap_or_default();
        assert!(pointers.contains(&pointer), "{body}: {problem}");
    }
    let (status, problem) = acme
        .post(
            "/v1/webhooks",
            &json!({"url": "https://ok.example/h", "secret": "mine"}),
            None,
        )
        .await;
    assert_eq!(status, 422, "unknown field: {problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("secret"),
        "{problem}"
    );
    let (status, problem) = operator
        .post(
            "/v1/webhooks",
            &json!({"url": "https://ok.example/h"}),
            None,
        )
        .await;
    assert_eq!(status, 403, "{problem}");

    let (status, created) = acme
        .post(
            "/v1/webhooks",
            &json!({"url": "https://ok.example/h", "kinds": ["order.*", "job.done", "order.*"]}),
            None,
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["kinds"], json!(["job.done", "order.*"]));
    let id = created["id"].as_str().expect("id");
    let (status, listed) = acme.get("/v1/webhooks").await;
    assert_eq!(status, 200);
    assert_eq!(
        listed["items"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
    assert!(
        listed["items"][0].get("secret").is_none(),
        "secrets are shown once"
    );
    // Another brand sees nothing of it; an admin sees it.
    let (status, _) = zest.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(status, 404);
    let (_, listed) = zest.get("/v1/webhooks").await;
    assert_eq!(listed["items"], json!([]));
    let (status, _) = zest
        .post(
            &format!("/v1/webhooks/{id}/rotate-secret"),
            &json!({}),
            None,
        )
        .await;
    assert_eq!(status, 404);
    let (status, seen) = admin.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(seen["brand"], "acme");
    let (status, problem) = acme
        .get(&format!("/v1/webhooks/{id}/deliveries?state=lost"))
        .await;
    assert_eq!(status, 400, "{problem}");

    let client = reqwest::Client::new();
    let delete = |api: &Api| {
        client
            .delete(format!("{}/v1/webhooks/{id}", api.base))
            .bearer_auth(api.token.clone())
            .send()
    };
    let response = delete(&zest).await.expect("request");
    assert_eq!(response.status().as_u16(), 404);
    let response = delete(&acme).await.expect("request");
    assert_eq!(response.status().as_u16(), 204);
    let (status, _) = acme.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(status, 404);
    running.stop().await;
    fleet.shutdown().await;
}
