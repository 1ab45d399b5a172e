//! `/metrics` against the API: the state gauges read what the API shows at
//! the same moment (a state that empties reads 0, not its last count), the
//! HTTP counters are labelled by route template (never an id), and
//! `[http] metrics_token` closes the endpoint to scrapes without it.

mod support;

use fabflow::api::auth::Role;
use serde_json::json;
use std::collections::BTreeMap;
use std::time::Duration;
use support::{Api, Running, wait_for};

const TIME_SCALE: f64 = 60.0;
const LIMIT: Duration = Duration::from_secs(240);
const METRICS_TOKEN: &str = "scrape-secret-0123456789";

/// The samples of a Prometheus text exposition: (name, labels) -> value.
fn parse(text: &str) -> BTreeMap<(String, BTreeMap<String, String>), f64> {
    let mut samples = BTreeMap::new();
    for line in text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
    {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = match series.split_once('{') {
            Some((name, rest)) => {
                let mut labels = BTreeMap::new();
                for pair in rest.trim_end_matches('}').split("\",") {
                    if let Some((key, value)) = pair.split_once("=\"") {
                        labels.insert(key.to_string(), value.trim_end_matches('"').to_string());
                    }
                }
                (name.to_string(), labels)
            }
            None => (series.to_string(), BTreeMap::new()),
        };
        samples.insert((name, labels), value);
    }
    samples
}

type Samples = BTreeMap<(String, BTreeMap<String, String>), f64>;

/// The value of `name` with exactly `labels`, if present.
fn sample(samples: &Samples, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let labels: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    samples.get(&(name.to_string(), labels)).copied()
}

async fn scrape(base: &str, token: Option<&str>) -> (u16, String) {
    let client = reqwest::Client::new();
    let mut request = client.get(format!("{base}/metrics"));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("scrape");
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// Orders per state as the API lists them.
async fn api_order_counts(api: &Api) -> BTreeMap<String, f64> {
    let mut counts = BTreeMap::new();
    for order in api.all_orders().await {
        let state = order["state"].as_str().unwrap_or_default().to_string();
        *counts.entry(state).or_insert(0.0) += 1.0;
    }
    counts
}

/// Scrapes until the API showed the same order counts just before and just
/// after the scrape (nothing moved meanwhile); returns those counts and the scrape.
async fn steady_scrape(base: &str, api: &Api) -> (BTreeMap<String, f64>, Samples) {
    wait_for("a scrape while the orders stand still", LIMIT, || async {
        let before = api_order_counts(api).await;
        let (status, text) = scrape(base, Some(METRICS_TOKEN)).await;
        assert_eq!(status, 200, "{text}");
        let after = api_order_counts(api).await;
        (before == after).then(|| (after, parse(&text)))
    })
    .await
}

fn order_gauges_match(counts: &BTreeMap<String, f64>, samples: &Samples) {
    for state in [
        "accepted",
        "in_production",
        "ready",
        "out_for_delivery",
        "delivered",
        "cancelled",
        "return_requested",
        "return_in_transit",
        "returned",
    ] {
        let expected = counts.get(state).copied().unwrap_or(0.0);
        let shown = sample(samples, "fabflow_orders", &[("state", state)]);
        assert_eq!(
            shown,
            Some(expected),
            "fabflow_orders{{state={state:?}}} against the API's {counts:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn gauges_read_what_the_api_shows_and_requests_are_counted_by_route() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fleet = support::fleet(5, TIME_SCALE).await;
    let mut config = support::config(&fleet, &dir.path().join("metrics.db"), TIME_SCALE);
    config.http.metrics_token = Some(METRICS_TOKEN.into());
    let running = Running::start(config).await;
    let admin = running.api(Role::Admin, "*").await;
    let brand = running.api(Role::Brand, "metrics-brand").await;

    // The token closes /metrics.
    let (status, _) = scrape(&running.base, None).await;
    assert_eq!(status, 401);
    let (status, _) = scrape(&running.base, Some("wrong")).await;
    assert_eq!(status, 401);

    // Every machine paused: an order waits, accepted, and can be cancelled.
    let (status, machines) = admin.get("/v1/machines").await;
    assert_eq!(status, 200, "{machines}");
    let machine_ids: Vec<String> = machines
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter_map(|m| m["id"].as_str().map(str::to_string))
        .collect();
    assert!(!machine_ids.is_empty());
    for id in &machine_ids {
        let (status, body) = admin
            .post(&format!("/v1/machines/{id}/pause"), &json!({}), None)
            .await;
        assert_eq!(status, 200, "pause {id}: {body}");
    }
    let order = json!({
        "external_ref": "metrics-1",
        "customer": {"name": "Grace Metrics", "lat": 52.52, "lon": 13.405},
        "lines": [{"sku": "tee-black-m", "quantity": 1}],
    });
    let (status, created) = brand.post("/v1/orders", &order, Some("metrics-1")).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("order id").to_string();

    let (counts, samples) = steady_scrape(&running.base, &admin).await;
    assert_eq!(counts.get("accepted"), Some(&1.0), "{counts:?}");
    order_gauges_match(&counts, &samples);
    let paused: f64 = samples
        .iter()
        .filter(|((name, labels), _)| {
            name == "fabflow_machines" && labels.get("state").map(String::as_str) == Some("paused")
        })
        .map(|(_, value)| value)
        .sum();
    assert_eq!(paused, machine_ids.len() as f64, "every machine paused");
    let (status, jobs) = admin.get("/v1/jobs?limit=500").await;
    assert_eq!(status, 200, "{jobs}");
    let pending = jobs["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .filter(|j| j["state"] == "pending")
        .count();
    assert_eq!(
        sample(&samples, "fabflow_jobs", &[("state", "pending")]),
        Some(pending as f64),
        "pending jobs against the API's {jobs}"
    );

    // Cancelled: `accepted` empties and must read 0, not its last value.
    let (status, body) = brand
        .post(&format!("/v1/orders/{id}/cancel"), &json!({}), None)
        .await;
    assert_eq!(status, 200, "{body}");
    let (counts, samples) = steady_scrape(&running.base, &admin).await;
    assert_eq!(counts.get("accepted"), None, "{counts:?}");
    assert_eq!(counts.get("cancelled"), Some(&1.0), "{counts:?}");
    order_gauges_match(&counts, &samples);

    // Resumed: the machines' gauge follows, and production runs.
    for id in &machine_ids {
        let (status, body) = admin
            .post(&format!("/v1/machines/{id}/resume"), &json!({}), None)
            .await;
        assert_eq!(status, 200, "resume {id}: {body}");
    }
    let (status, _) = admin.get(&format!("/v1/orders/{id}")).await;
    assert_eq!(status, 200);
    let samples = wait_for("no machine shown paused", LIMIT, || async {
        let (_, text) = scrape(&running.base, Some(METRICS_TOKEN)).await;
        let samples = parse(&text);
        let paused: f64 = samples
            .iter()
            .filter(|((name, labels), _)| {
                name == "fabflow_machines"
                    && labels.get("state").map(String::as_str) == Some("paused")
            })
            .map(|(_, value)| value)
            .sum();
        (paused == 0.0).then_some(samples)
    })
    .await;

    // Requests are counted by route template, never by id.
    let order_route = sample(
        &samples,
        "fabflow_http_requests_total",
        &[
            ("method", "GET"),
            ("route", "/v1/orders/{id}"),
            ("status", "200"),
        ],
    );
    assert!(
        order_route.is_some_and(|n| n >= 1.0),
        "GET /v1/orders/{{id}} counted"
    );
    let cancel_route = sample(
        &samples,
        "fabflow_http_requests_total",
        &[
            ("method", "POST"),
            ("route", "/v1/orders/{id}/cancel"),
            ("status", "200"),
        ],
    );
    assert!(
        cancel_route.is_some_and(|n| n >= 1.0),
        "POST cancel counted"
    );
    for (name, labels) in samples.keys() {
        for value in labels.values() {
            assert!(!value.contains(&id), "{name} has the order id in a label");
        }
    }
    let histogram = samples
        .keys()
        .any(|(name, _)| name == "fabflow_http_request_seconds_bucket");
    assert!(histogram, "HTTP latency is a histogram");
    for name in [
        "fabflow_outbox_backlog",
        "fabflow_outbox_oldest_age_seconds",
        "fabflow_orders_at_risk",
    ] {
        assert!(sample(&samples, name, &[]).is_some(), "{name} exported");
    }
    let couriers = samples
        .keys()
        .filter(|(name, _)| name == "fabflow_courier_planned_stops")
        .count();
    assert!(couriers > 0, "a planned-stops gauge per courier");

    running.stop().await;
    drop(fleet);
}

/// The `shop` planner plans in full, then repairs its plan in the rounds
/// that follow within `FULL_PLAN_EVERY` (`plan::shop::repair_floor`), and
/// production goes on through them: a burst of orders is made, the
/// repairs are counted, and no round fell back to the queue rule.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_shop_planner_repairs_its_plan_between_full_rounds() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fleet = support::fleet(6, TIME_SCALE).await;
    let mut config = support::config(&fleet, &dir.path().join("repairs.db"), TIME_SCALE);
    config.http.metrics_token = Some(METRICS_TOKEN.into());
    let running = Running::start(config).await;
    let admin = running.api(Role::Admin, "*").await;
    let brand = running.api(Role::Brand, "repair-brand").await;
    let orders = 16;
    for i in 0..orders {
        let sku = support::SKUS[i % support::SKUS.len()];
        let order = json!({
            "external_ref": format!("repair-{i}"),
            "customer": {"name": format!("Customer {i}"), "lat": 52.50 + i as f64 / 1000.0, "lon": 13.40},
            "lines": [{"sku": sku, "quantity": 1 + i % 3}],
        });
        let (status, created) = brand
            .post("/v1/orders", &order, Some(&format!("repair-{i}")))
            .await;
        assert_eq!(status, 201, "{created}");
    }
    wait_for("every order made", LIMIT, || async {
        let counts = api_order_counts(&admin).await;
        let making: f64 = ["accepted", "in_production"]
            .iter()
            .filter_map(|state| counts.get(*state))
            .sum();
        (making == 0.0 && counts.values().sum::<f64>() == orders as f64).then_some(())
    })
    .await;
    let (status, text) = scrape(&running.base, Some(METRICS_TOKEN)).await;
    assert_eq!(status, 200, "{text}");
    let samples = parse(&text);
    let repairs = sample(&samples, "fabflow_floor_plan_repairs_total", &[]).unwrap_or(0.0);
    assert!(repairs >= 1.0, "no round repaired the plan: {text}");
    let fallbacks = sample(&samples, "fabflow_floor_plan_fallbacks_total", &[]).unwrap_or(0.0);
    assert_eq!(fallbacks, 0.0, "a round fell back to the queue rule");
    running.stop().await;
    drop(fleet);
}
