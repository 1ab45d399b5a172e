//! A season end to end: two brands sell at three weekend markets, send each
//! market's orders afterwards, and the fleet makes them; simulated couriers
//! deliver them, and customers send some back (picked up, inspected,
//! mostly restocked, and taken by later orders). Orders, completions and
//! returns flow through the event log into per-event demand, and the run
//! fabflow recommends for each brand's fourth market, net of the restocked
//! units on the shelves, is scored against the simulator's true demand for
//! it, beside the naive plan "make what the last market sold".

mod support;

use fabflow::api::auth::Role;
use fabflow::runtime::forecasts::day_of;
use fabflow_sim::couriers::{self, CourierConfig, CourierSpec};
use fabflow_sim::season::score;
use fabflow_sim::{CodeSource, ReturnsSpec, SeasonSpec};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::time::Duration;
use support::{Api, Running, wait_for};
use tokio_util::sync::CancellationToken;

/// Units of a brand's events of `kind`, summed from `data.units` (or the
/// quantities of `data.lines`), per SKU.
fn units_of(events: &[Value], kind: &str) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for event in events.iter().filter(|e| e["kind"] == kind) {
        let data = &event["data"];
        if let Some(units) = data["units"].as_i64() {
            *out.entry(data["sku"].as_str().unwrap_or_default().to_string())
                .or_default() += units;
        }
        for line in data["lines"].as_array().into_iter().flatten() {
            *out.entry(line["sku"].as_str().unwrap_or_default().to_string())
                .or_default() += line["quantity"].as_i64().unwrap_or(0);
        }
    }
    out
}

/// Restocked units on the shelves of every factory, per SKU.
async fn shelves(operator: &Api) -> BTreeMap<String, u64> {
    let (status, body) = operator.get("/v1/stock").await;
    assert_eq!(status, 200, "{body}");
    let mut out = BTreeMap::new();
    for row in body.as_array().into_iter().flatten() {
        *out.entry(row["sku"].as_str().unwrap_or_default().to_string())
            .or_default() += row["units"].as_u64().unwrap_or(0);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fourth_market_is_planned_from_the_first_three_better_than_the_last_one() {
    let dir = tempfile::tempdir().expect("temp dir");
    // One simulated day per two real seconds.
    let scale = 43_200.0;
    let fleet = support::fleet(31, scale).await;
    let mut config = support::config(&fleet, &dir.path().join("season.db"), scale);
    config.forecasts.refit_cron = "0 0 */6 * * *".into();
    config.forecasts.attribution_days = 4;
    for zone in &mut config.zones {
        zone.planning_cron = "0 0 */4 * * *".into();
    }
    let courier_ids: Vec<String> = config.couriers.iter().map(|c| c.id.clone()).collect();
    let running = Running::start(config).await;
    let today = || day_of(running.daemon.clock.now_ms()).expect("day");
    let day0 = today();
    let date = |offset: u32| day0 + chrono::Days::new(u64::from(offset));
    let season = SeasonSpec::demo(11);

    let mut apis = Vec::new();
    for brand in &season.brands {
        let api = running.api(Role::Brand, &brand.brand).await;
        for event in &brand.events {
            let (status, body) = api
                .put(
                    &format!("/v1/sales-events/{}", event.id),
                    &json!({"name": format!("Market {}", event.id), "starts_on": date(event.day),
                            "days": event.days, "footfall": event.footfall}),
                )
                .await;
            assert_eq!(status, 201, "{body}");
        }
        apis.push(api);
    }
    // A bad event is refused with every field named.
    let (status, body) = apis[0]
        .put(
            "/v1/sales-events/bad%2Fid",
            &json!({"name": "", "starts_on": date(40), "days": 0}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    let pointers: Vec<&str> = body["errors"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["pointer"].as_str())
        .collect();
    assert_eq!(pointers, ["/id"], "{body}");
    let (status, body) = apis[0]
        .put(
            "/v1/sales-events/loom-x",
            &json!({"name": "", "starts_on": date(40), "days": 0, "footfall": 20_000_000}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["errors"].as_array().map(Vec::len), Some(3), "{body}");
    // Replacing an event answers 200; a brand sees only its own events.
    let first = &season.brands[0].events[0];
    let (status, _) = apis[0]
        .put(
            &format!("/v1/sales-events/{}", first.id),
            &json!({"name": "Market loom-1", "starts_on": date(first.day), "days": first.days, "footfall": first.footfall}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, list) = apis[1].get("/v1/sales-events").await;
    assert_eq!(status, 200);
    assert!(
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .all(|e| e["brand"] == "kiln"),
        "{list}"
    );
    let (status, _) = apis[1].get("/v1/forecasts/events/loom-4").await;
    assert_eq!(status, 404);

    // Couriers deliver; a quarter of the customers send something back,
    // and the operator restocks most of it.
    let operator = running.api(Role::Operator, "*").await;
    let mut specs = Vec::new();
    for id in &courier_ids {
        specs.push(CourierSpec {
            id: id.clone(),
            token: running.token(Role::Courier, id).await,
        });
    }
    let stop_couriers = CancellationToken::new();
    let street = tokio::spawn(couriers::run(
        CourierConfig {
            poll_interval: Duration::from_millis(50),
            seed: 11,
            codes: Some(CodeSource {
                operator_token: operator.token.clone(),
                brand_tokens: apis.iter().map(|api| api.token.clone()).collect(),
            }),
            returns: ReturnsSpec {
                rate: 0.25,
                scrap_rate: 0.2,
            },
            ..CourierConfig::new(running.base.clone(), specs)
        },
        stop_couriers.clone(),
    ));

    // Each market's orders are sent from its second day on.
    let mut sent: Vec<BTreeMap<String, i64>> = vec![BTreeMap::new(); season.brands.len()];
    for event in 0..3 {
        let second_day = date(season.brands[0].events[event].day + 1);
        wait_for(
            "the market's second day",
            Duration::from_secs(60),
            || async { (today() >= second_day).then_some(()) },
        )
        .await;
        for (b, api) in apis.iter().enumerate() {
            let orders = season.orders(b, event, support::BBOX);
            for order in &orders {
                for line in order["lines"].as_array().into_iter().flatten() {
                    *sent[b]
                        .entry(line["sku"].as_str().unwrap_or_default().to_string())
                        .or_default() += line["quantity"].as_i64().unwrap_or(0);
                }
            }
            let count = orders.len();
            let report = fabflow_sim::fire(&running.base, &api.token, orders, 8).await;
            assert_eq!(report.accepted, count, "{:?}", report.rejected);
        }
        let window_end = date(season.brands[0].events[event].day + 2 + 4);
        assert!(
            today() < window_end,
            "orders were sent after the market's attribution window"
        );
    }

    // Once the third market's window has closed, the fourth is planned.
    let closed = date(16 + 2 + 4);
    wait_for(
        "the third market's window to close",
        Duration::from_secs(60),
        || async { (today() >= closed).then_some(()) },
    )
    .await;
    let mut fabflow_made = BTreeMap::new();
    let mut fabflow_80 = BTreeMap::new();
    let mut naive_made = BTreeMap::new();
    let mut demand = BTreeMap::new();
    let (mut point_error, mut naive_error) = (0.0, 0.0);
    let (mut stock_netted, mut returned_counted) = (0_u64, 0.0);
    for (b, api) in apis.iter().enumerate() {
        let brand = &season.brands[b];
        let next = &brand.events[3];
        // Read until every order is counted and the stock netted out is
        // the shelves' (an inspection may land between two reads).
        let plan = wait_for("every order counted", Duration::from_secs(30), || async {
            let (status, plan) = api
                .get(&format!(
                    "/v1/forecasts/events/{}?service_level=0.98",
                    next.id
                ))
                .await;
            assert_eq!(status, 200, "{plan}");
            let counted: f64 = plan["skus"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|s| s["history"].as_array().cloned().unwrap_or_default())
                .filter_map(|v| v.as_f64())
                .sum();
            let shelves = shelves(&operator).await;
            let netted = plan["skus"].as_array().into_iter().flatten().all(|s| {
                s["stock_on_hand"].as_u64()
                    == Some(
                        shelves
                            .get(s["sku"].as_str().unwrap_or_default())
                            .copied()
                            .unwrap_or(0),
                    )
            });
            (netted && counted as i64 == sent[b].values().sum::<i64>()).then_some(plan)
        })
        .await;
        // The same plan at a lower service level: less made, never more.
        let (status, lower) = api
            .get(&format!(
                "/v1/forecasts/events/{}?service_level=0.8",
                next.id
            ))
            .await;
        assert_eq!(status, 200, "{lower}");
        for (high, low) in plan["skus"]
            .as_array()
            .into_iter()
            .flatten()
            .zip(lower["skus"].as_array().into_iter().flatten())
        {
            assert_eq!(high["sku"], low["sku"]);
            assert!(
                low["quantity"].as_u64() <= high["quantity"].as_u64(),
                "{low} vs {high}"
            );
            fabflow_80.insert(
                format!(
                    "{}/{}",
                    brand.brand,
                    low["sku"].as_str().unwrap_or_default()
                ),
                low["quantity"].as_u64().unwrap_or(0) + low["stock_on_hand"].as_u64().unwrap_or(0),
            );
        }
        assert!(today() < date(next.day), "planned after the market began");
        let ids: Vec<&str> = brand.events[..3].iter().map(|e| e.id.as_str()).collect();
        assert_eq!(plan["history"], json!(ids), "{plan}");
        assert_eq!(plan["event"]["footfall"], json!(next.footfall));
        let truth = season.true_demand(b, 3);
        for sku in plan["skus"].as_array().expect("skus") {
            let name = sku["sku"].as_str().expect("sku").to_string();
            // Each past market's units are exactly what it sold.
            let history: Vec<u64> = (0..3)
                .map(|e| u64::from(season.true_demand(b, e)[&name]))
                .collect();
            let counted: Vec<u64> = sku["history"]
                .as_array()
                .expect("history")
                .iter()
                .filter_map(Value::as_f64)
                .map(|v| v as u64)
                .collect();
            assert_eq!(counted, history, "{name} of {}", brand.brand);
            assert_eq!(sku["basis"], "per_visitor");
            let quantity = sku["quantity"].as_u64().expect("quantity");
            // The run is what the service level needs beyond the shelves.
            let stock = sku["stock_on_hand"].as_u64().expect("stock");
            let target = sku["target"].as_u64().expect("target");
            assert_eq!(quantity, target.saturating_sub(stock), "{sku}");
            stock_netted += stock;
            returned_counted += sku["returned"].as_f64().expect("returned");
            let expected = sku["expected_demand"].as_f64().expect("expected");
            let actual = f64::from(truth[&name]);
            point_error += (expected - actual).abs();
            naive_error += (history[2] as f64 - actual).abs();
            let key = format!("{}/{name}", brand.brand);
            // Both plans have the shelves' units besides what they make.
            fabflow_made.insert(key.clone(), quantity + stock);
            naive_made.insert(key.clone(), history[2] + stock);
            demand.insert(key, truth[&name]);
        }
    }
    let ours = score(&fabflow_made, &demand);
    let ours_80 = score(&fabflow_80, &demand);
    let naive = score(&naive_made, &demand);
    eprintln!(
        "fourth market, {} units demanded: fabflow at 98% fill {:.3}, leftover {}, shortfall {}; \
         at 80% fill {:.3}, leftover {}, shortfall {}; |point - demand| {point_error:.1}; \
         same as last market: fill {:.3}, leftover {}, shortfall {}, |last - demand| {naive_error:.1}",
        demand.values().sum::<u32>(),
        ours.fill_rate,
        ours.leftover,
        ours.shortfall,
        ours_80.fill_rate,
        ours_80.leftover,
        ours_80.shortfall,
        naive.fill_rate,
        naive.leftover,
        naive.shortfall
    );
    assert!(
        ours.fill_rate > naive.fill_rate && ours.fill_rate >= 0.95,
        "{ours:?} vs {naive:?}"
    );
    assert!(point_error < naive_error, "{point_error} vs {naive_error}");

    // The plan is published, retained, where only the brand reads.
    let observer = running.observer();
    let mut mqtt = support::connect(&observer, Some(support::login(&observer)))
        .await
        .expect("observer connects");
    mqtt.subscribe(&["fabflow/v1/brands/loom/plans/#"]).await;
    let seen = tokio::time::timeout(
        Duration::from_secs(30),
        mqtt.until(|topic, payload| {
            topic == "fabflow/v1/brands/loom/plans/loom-4"
                && payload["history"].as_array().map(Vec::len) == Some(3)
        }),
    )
    .await;
    assert!(seen.is_ok(), "no plan published for loom-4");
    mqtt.stop().await;

    // Returns flowed into the forecasts: the plans counted units asked back
    // and netted restocked units out.
    eprintln!(
        "fourth market plans: {returned_counted} units asked back within past markets' windows, \
         {stock_netted} restocked units netted out"
    );
    assert!(returned_counted > 0.0, "no return reached the forecasts");
    assert!(stock_netted > 0, "no restocked unit was netted out");

    // Completions and returns flow back: each brand has made what it sold,
    // less what restocked units filled, and every unit its customers asked
    // back is counted as returned.
    for (b, brand) in season.brands.iter().enumerate() {
        let sold: i64 = sent[b].values().sum();
        wait_for("production counted", Duration::from_secs(180), || async {
            let events = apis[b].all_events().await;
            let taken: i64 = units_of(&events, "stock.taken").values().sum();
            let asked_back: i64 = units_of(&events, "return.requested").values().sum();
            let rows = running
                .daemon
                .store
                .demand(Some(&brand.brand), None, None)
                .await
                .expect("demand");
            let produced: i64 = rows.iter().map(|row| row.produced).sum();
            let returned: i64 = rows.iter().map(|row| row.returned).sum();
            assert!(
                produced + taken <= sold,
                "{produced} made and {taken} from stock of {sold} sold"
            );
            (produced + taken == sold && returned == asked_back).then_some(())
        })
        .await;
    }
    stop_couriers.cancel();
    let street = street.await.expect("couriers");
    eprintln!("couriers and customers: {street:?}");
    assert!(
        street.returns.requested > 0 && street.returns.restocked > 0,
        "{:?}",
        street.returns
    );
    running.stop().await;
}
