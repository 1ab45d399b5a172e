//! End to end, the street side: a post-event burst of orders (150, or 500 as the issue asks) on the
//! simulated fleet, delivered by simulated couriers who now and then run
//! late, find a customer out, mistype a code or drop out for the day; one
//! delivered order in twenty comes back, is inspected by the simulated
//! operator, and what is restocked fills later orders. Looked at only
//! through the API, the event log and the machines' own start logs.
//!
//! The promise checked is the issue's: every order delivered, and each one
//! delivered after its deadline was flagged at risk before the deadline.

mod support;

use fabflow::api::auth::Role;
use fabflow_sim::couriers::{self, CourierConfig, CourierFaults, CourierSpec};
use fabflow_sim::{CodeSource, ReturnsSpec};
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;
use support::{Api, BBOX, Running, SKUS, wait_for};
use tokio_util::sync::CancellationToken;

/// Simulated seconds per real second: 48 simulated hours in under three
/// minutes. A stall of the loaded machine costs the world this many
/// seconds; late orders it causes must still be flagged in time.
const TIME_SCALE: f64 = 1000.0;
/// Generous: making 500 orders takes five to ten minutes of real time on a
/// loaded two-core machine (the per-job overhead is real time, whatever
/// the scale).
const LIMIT: Duration = Duration::from_secs(1500);
/// Orders in the burst: 150 by default, so the suite stays short; the
/// issue's 500 with `FABFLOW_BURST_ORDERS=500 cargo test --test burst`.
fn burst_orders() -> usize {
    std::env::var("FABFLOW_BURST_ORDERS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|&n| n >= 50)
        .unwrap_or(150)
}
const SEED: u64 = 2027;
/// Order ids are the daemon's (random), so how many orders the simulator
/// picks is binomial: at one in ten of 150 orders, fewer than 3 or more
/// than 37 happens about once in 40,000 runs (at one in twenty, fewer
/// than 3 was one run in 55, and CI met it).
const RETURN_RATE: f64 = 0.1;
/// The fleet works this many times faster than the demo's (machines and
/// the catalog alike), as a microfactory network staffed for a post-event
/// burst: 500 orders on the demo's pace would take four days of making, and
/// the test minutes of waiting for a foregone conclusion (most orders late).
const PACE: f64 = 4.0;
/// Couriers added to the demo's three, as a courier company would for the
/// burst: three carry about ten orders an hour between them.
const EXTRA_COURIERS: usize = 7;

fn time(value: &Value) -> chrono::DateTime<chrono::FixedOffset> {
    chrono::DateTime::parse_from_rfc3339(value.as_str().unwrap_or_default())
        .unwrap_or_else(|err| panic!("{value} is not RFC 3339: {err}"))
}

/// Every return, following the cursor.
async fn all_returns(api: &Api) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let (status, body) = api.get(&format!("/v1/returns?limit=500{after}")).await;
        assert_eq!(status, 200, "{body}");
        out.extend(body["items"].as_array().cloned().unwrap_or_default());
        match body["next"].as_str() {
            Some(next) => after = format!("&after={next}"),
            None => return out,
        }
    }
}

/// Units on the shelves, by (factory, sku).
async fn stock(api: &Api) -> BTreeMap<(String, String), i64> {
    let (status, body) = api.get("/v1/stock").await;
    assert_eq!(status, 200, "{body}");
    body.as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|row| {
            (
                (
                    row["factory"].as_str().unwrap_or_default().to_string(),
                    row["sku"].as_str().unwrap_or_default().to_string(),
                ),
                row["units"].as_i64().unwrap_or(0),
            )
        })
        .collect()
}

/// Whether every order is delivered; the orders. Says how far it got
/// every ten seconds or so, for a run that times out.
async fn all_delivered(api: &Api, count: usize) -> Option<Vec<Value>> {
    static SAID: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    let orders = api.all_orders().await;
    if let Ok(mut said) = SAID.lock()
        && said.is_none_or(|at| at.elapsed() > Duration::from_secs(10))
    {
        *said = Some(std::time::Instant::now());
        let mut states: BTreeMap<String, usize> = BTreeMap::new();
        for order in &orders {
            *states.entry(order["state"].to_string()).or_default() += 1;
        }
        let stuck: Vec<&Value> = orders
            .iter()
            .filter(|o| o["state"] != "delivered")
            .take(2)
            .collect();
        eprintln!("orders {}: {states:?}; e.g. {stuck:?}", orders.len());
    }
    (orders.len() == count && orders.iter().all(|o| o["state"] == "delivered")).then_some(orders)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_orders_with_faulty_couriers_and_returns_keeps_the_promise() {
    let n_orders = burst_orders();
    eprintln!("burst of {n_orders} orders (FABFLOW_BURST_ORDERS)");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut spec = fabflow_sim::FleetSpec::demo(SEED, TIME_SCALE);
    for machine in spec
        .factories
        .iter_mut()
        .flat_map(|f| f.machines.iter_mut())
    {
        machine.cycle_seconds /= PACE;
    }
    let fleet = fabflow_sim::Fleet::start(&spec, &fabflow_adapters::builtin_profiles())
        .await
        .expect("fleet starts");
    let mut config = support::config(&fleet, &dir.path().join("burst.db"), TIME_SCALE);
    for step in config.skus.iter_mut().flat_map(|sku| sku.route.iter_mut()) {
        step.seconds_per_unit /= PACE;
    }
    let template = config.couriers[0].clone();
    for n in 0..EXTRA_COURIERS {
        config.couriers.push(fabflow::config::CourierConfig {
            id: format!("extra-{n}"),
            // Spread over the city, a kilometre or two apart.
            lat: template.lat - 0.02 + 0.01 * (n % 4) as f64,
            lon: template.lon - 0.03 + 0.02 * (n / 4) as f64,
            ..template.clone()
        });
    }
    let factories: HashMap<String, (f64, f64)> = config
        .factories
        .iter()
        .map(|f| (f.id.clone(), (f.lat, f.lon)))
        .collect();
    let courier_ids: Vec<String> = config.couriers.iter().map(|c| c.id.clone()).collect();
    let running = Running::start(config).await;
    let brand_token = running.token(Role::Brand, "burst-brand").await;
    let brand = Api::new(running.base.clone(), brand_token.clone());
    let operator = running.api(Role::Operator, "*").await;
    let admin = running.api(Role::Admin, "*").await;

    // Couriers at modest fault rates; one of them also calls it a day now
    // and then. Customers return one delivered order in ten.
    let mut specs = Vec::new();
    for id in &courier_ids {
        specs.push(CourierSpec {
            id: id.clone(),
            token: running.token(Role::Courier, id).await,
        });
    }
    let faults = CourierFaults {
        speed: 0.9,
        late_rate: 0.05,
        late_max_minutes: 30.0,
        not_home_rate: 0.03,
        wrong_code_rate: 0.05,
        dropout_rate: 0.0,
    };
    let quitter = courier_ids
        .iter()
        .find(|id| id.starts_with("bike"))
        .expect("a bike courier")
        .clone();
    let sim = CourierConfig {
        poll_interval: Duration::from_millis(200),
        seed: SEED,
        codes: Some(CodeSource::one_brand(
            operator.token.clone(),
            brand_token.clone(),
        )),
        faults,
        per_courier: [(
            quitter.clone(),
            CourierFaults {
                dropout_rate: 0.02,
                ..faults
            },
        )]
        .into(),
        returns: ReturnsSpec {
            rate: RETURN_RATE,
            scrap_rate: 0.2,
        },
        ..CourierConfig::new(running.base.clone(), specs)
    };
    let stop_couriers = CancellationToken::new();
    let street = tokio::spawn(couriers::run(sim, stop_couriers.clone()));

    // The burst.
    let orders = fabflow_sim::generate_orders(SEED, n_orders, &SKUS, BBOX);
    let report = fabflow_sim::fire(&running.base, &brand_token, orders, 16).await;
    assert_eq!(
        report.accepted,
        n_orders,
        "rejected: {:?}",
        report.rejected.first()
    );

    // Every order delivered, with faults on the road.
    let delivered = wait_for("every burst order delivered", LIMIT, || {
        all_delivered(&brand, n_orders)
    })
    .await;

    // The customers the simulator picks ask for their returns; each is
    // picked up, received and inspected.
    let expected: HashSet<String> = delivered
        .iter()
        .filter(|order| {
            let id = order["id"].as_str().unwrap_or_default();
            let quantities: Vec<u32> = order["lines"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|line| line["quantity"].as_u64().unwrap_or(0) as u32)
                .collect();
            fabflow_sim::returns::asked_back(SEED, RETURN_RATE, id, &quantities).is_some()
        })
        .filter_map(|order| order["id"].as_str().map(str::to_string))
        .collect();
    assert!(
        (n_orders / 50..=n_orders / 4).contains(&expected.len()) && !expected.is_empty(),
        "{} of {n_orders} orders chosen for a return at {RETURN_RATE}",
        expected.len()
    );
    let returns = wait_for("every expected return inspected", LIMIT, || async {
        let returns = all_returns(&admin).await;
        let asked: HashSet<String> = returns
            .iter()
            .filter_map(|r| r["order_id"].as_str().map(str::to_string))
            .collect();
        (asked == expected && returns.iter().all(|r| r["state"] == "inspected")).then_some(returns)
    })
    .await;
    let (mut restocked, mut scrapped) = (0, 0);
    for back in &returns {
        let inspection = back["inspection"].as_array().cloned().unwrap_or_default();
        let returned: i64 = back["lines"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .iter()
            .map(|l| l["quantity"].as_i64().unwrap_or(0))
            .sum();
        let kept: i64 = inspection
            .iter()
            .map(|l| l["restocked"].as_i64().unwrap_or(0))
            .sum();
        let lost: i64 = inspection
            .iter()
            .map(|l| l["scrapped"].as_i64().unwrap_or(0))
            .sum();
        assert_eq!(kept + lost, returned, "every unit accounted for: {back}");
        restocked += kept;
        scrapped += lost;
    }
    assert!(restocked > 0, "nothing restocked of {returns:?}");

    // Later orders of the restocked SKUs, at their factories, take the
    // shelf's units before anything is made.
    let shelves = stock(&operator).await;
    // Orders of the burst still arriving while the first returns came back
    // may have taken units already (the burst takes a while to post).
    let taken_early: i64 = admin
        .all_events()
        .await
        .iter()
        .filter(|e| e["kind"] == "stock.taken")
        .map(|e| e["data"]["units"].as_i64().unwrap_or(0))
        .sum();
    assert_eq!(
        shelves.values().sum::<i64>(),
        restocked - taken_early,
        "the shelves hold what was restocked and not yet taken: {shelves:?}"
    );
    let mut later = Vec::new();
    for ((factory, sku), units) in &shelves {
        if *units <= 0 {
            continue;
        }
        let (lat, lon) = factories[factory.as_str()];
        let body = json!({
            "external_ref": format!("later-{factory}-{sku}"),
            "customer": {"name": "Later", "lat": lat + 0.001, "lon": lon + 0.001},
            "lines": [{"sku": sku, "quantity": 1}],
        });
        let (status, order) = brand.post("/v1/orders", &body, None).await;
        assert_eq!(status, 201, "{order}");
        assert_eq!(order["factory"], factory.as_str(), "{order}");
        later.push(order["id"].as_str().expect("id").to_string());
    }
    assert!(!later.is_empty());
    let after = stock(&operator).await;
    for (shelf, units) in &shelves {
        if *units > 0 {
            assert_eq!(
                after.get(shelf).copied().unwrap_or(0),
                units - 1,
                "one unit of {shelf:?} taken by a later order"
            );
        }
    }
    let total = n_orders + later.len();
    let everything = wait_for("every order delivered, the later ones too", LIMIT, || {
        all_delivered(&brand, total)
    })
    .await;
    stop_couriers.cancel();
    let street = street.await.expect("the couriers stop cleanly");

    // The promise: each order delivered after its deadline was flagged
    // before it.
    let events = admin.all_events().await;
    let delivered_at: HashMap<&str, &Value> = events
        .iter()
        .filter(|e| e["kind"] == "order.delivered")
        .filter_map(|e| Some((e["order_id"].as_str()?, &e["at"])))
        .collect();
    let (mut late, mut flagged) = (0, 0);
    for order in &everything {
        let id = order["id"].as_str().expect("id");
        let at = delivered_at
            .get(id)
            .unwrap_or_else(|| panic!("no order.delivered for {id}"));
        flagged += usize::from(order["at_risk"]["since"].is_string());
        if time(at) > time(&order["deadline"]) {
            late += 1;
            let since = order["at_risk"]["since"].as_str().unwrap_or_else(|| {
                panic!(
                    "order {id} delivered at {at} after its deadline {}, never flagged",
                    order["deadline"]
                )
            });
            assert!(
                time(&order["at_risk"]["since"]) < time(&order["deadline"]),
                "order {id} flagged at {since}, after its deadline: {order}"
            );
        }
    }
    // Later orders were filled from the shelves, not made.
    let taken: Vec<&Value> = events
        .iter()
        .filter(|e| e["kind"] == "stock.taken")
        .collect();
    assert!(taken.len() >= later.len(), "{taken:?}");
    for id in &later {
        assert!(
            taken.iter().any(|e| e["order_id"] == id.as_str()),
            "later order {id} not filled from stock"
        );
        let (_, detail) = brand.get(&format!("/v1/orders/{id}")).await;
        assert_eq!(detail["jobs"], json!([]), "{detail}");
    }

    // The faults happened, and the daemon saw them.
    let kinds: HashSet<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert!(street.late > 0, "{street:?}");
    assert!(street.not_home > 0, "{street:?}");
    assert!(street.wrong_codes > 0, "{street:?}");
    assert!(kinds.contains("handoff.failed"), "{kinds:?}");
    if street.dropouts > 0 {
        assert!(kinds.contains("courier.duty_changed"), "{kinds:?}");
    }
    // (A later order delivered may be asked back too, after the count above.)
    assert!(street.returns.requested >= expected.len(), "{street:?}");
    assert!(street.returns.inspected >= returns.len(), "{street:?}");
    assert!(street.returns.restocked >= restocked as usize, "{street:?}");

    // No job token was ever started twice, on any machine.
    assert_eq!(fleet.duplicate_starts(), Vec::<(String, u32)>::new());
    support::assert_events_match_schemas(&admin).await;
    eprintln!(
        "burst: {total} orders delivered, {late} after their deadline (each flagged before it), \
         {flagged} flagged at risk; couriers: {} confirmed, {} late, {} not home, {} wrong codes, \
         {} drop-outs ({quitter}); returns: {} requested, {restocked} units restocked, \
         {scrapped} scrapped, {taken_early} units taken by burst orders, {} later orders filled from stock",
        street.confirmed,
        street.late,
        street.not_home,
        street.wrong_codes,
        street.dropouts,
        returns.len(),
        later.len()
    );
    running.stop().await;
    fleet.shutdown().await;
}
