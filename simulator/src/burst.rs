//! Order bursts: deterministic order generation and a concurrent sender that
//! posts them to the daemon's API as a brand would.
//!
//! Wire format: `POST {api}/v1/orders` with `Authorization: Bearer <token>`,
//! `Idempotency-Key: fabflow-sim-<external_ref>` (so re-firing a burst replays
//! rather than duplicates) and a JSON body
//! `{"external_ref", "customer": {"name", "lat", "lon"}, "lines": [{"sku", "quantity"}]}`.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

const FIRST_NAMES: &[&str] = &[
    "Ada", "Ben", "Chloé", "Deniz", "Emil", "Fatima", "Greta", "Hugo", "Ines", "Jonas", "Kemal",
    "Lena", "Mia", "Noah", "Olga", "Paul",
];
const LAST_NAMES: &[&str] = &[
    "Schmidt", "Yilmaz", "Nowak", "Rossi", "Müller", "Kowalski", "Dubois", "Silva", "Berg",
    "Hansen", "Weber", "Costa",
];

/// `count` orders, the same for the same `seed`: 1-3 lines each with distinct
/// SKUs where possible, quantity 1-3, customers uniformly inside `bbox`
/// `(min_lat, min_lon, max_lat, max_lon)`. External refs are `evt-<seed>-0001`...
pub fn generate_orders(
    seed: u64,
    count: usize,
    skus: &[&str],
    bbox: (f64, f64, f64, f64),
) -> Vec<Value> {
    let mut rng = StdRng::seed_from_u64(seed);
    let (min_lat, min_lon, max_lat, max_lon) = bbox;
    (0..count)
        .map(|index| {
            let name = format!(
                "{} {}",
                FIRST_NAMES[rng.random_range(0..FIRST_NAMES.len())],
                LAST_NAMES[rng.random_range(0..LAST_NAMES.len())]
            );
            let lat = round5(min_lat + rng.random::<f64>() * (max_lat - min_lat));
            let lon = round5(min_lon + rng.random::<f64>() * (max_lon - min_lon));
            let line_count = rng.random_range(1..=3usize).min(skus.len().max(1));
            let mut chosen: Vec<&str> = Vec::new();
            while chosen.len() < line_count && !skus.is_empty() {
                let sku = skus[rng.random_range(0..skus.len())];
                if !chosen.contains(&sku) || chosen.len() >= skus.len() {
                    chosen.push(sku);
                }
            }
            let lines: Vec<Value> = chosen
                .into_iter()
                .map(|sku| json!({ "sku": sku, "quantity": rng.random_range(1..=3u32) }))
                .collect();
            json!({
                "external_ref": format!("evt-{seed}-{:04}", index + 1),
                "customer": { "name": name, "lat": lat, "lon": lon },
                "lines": lines,
            })
        })
        .collect()
}

fn round5(value: f64) -> f64 {
    (value * 100_000.0).round() / 100_000.0
}

/// What happened to a burst.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BurstReport {
    /// Orders answered with a 2xx status.
    pub accepted: usize,
    /// (order index, HTTP status, body); status 0 when no response arrived.
    pub rejected: Vec<(usize, u16, String)>,
    /// Per order, in order index: time from send to full response.
    pub latencies: Vec<Duration>,
}

impl BurstReport {
    /// The latency at quantile `q` (0..=1), if any request was made.
    pub fn latency_quantile(&self, q: f64) -> Option<Duration> {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let last = sorted.len().checked_sub(1)?;
        let index = ((last as f64) * q.clamp(0.0, 1.0)).round() as usize;
        sorted.get(index).copied()
    }
}

/// Posts every order to `{api_base}/v1/orders`, at most `concurrency` at once.
pub async fn fire(
    api_base: &str,
    token: &str,
    orders: Vec<Value>,
    concurrency: usize,
) -> BurstReport {
    let client = reqwest::Client::new();
    let url = format!("{}/v1/orders", api_base.trim_end_matches('/'));
    // Bounds the requests in flight; dropped with the burst.
    let permits = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut tasks = JoinSet::new();
    let count = orders.len();
    for (index, order) in orders.into_iter().enumerate() {
        let client = client.clone();
        let url = url.clone();
        let auth = format!("Bearer {token}");
        let permits = Arc::clone(&permits);
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let key = format!(
                "fabflow-sim-{}",
                order
                    .get("external_ref")
                    .and_then(Value::as_str)
                    .unwrap_or("order")
            );
            let began = Instant::now();
            let sent = client
                .post(&url)
                .header("Authorization", auth)
                .header("Idempotency-Key", key)
                .json(&order)
                .send()
                .await;
            let outcome = match sent {
                Ok(response) => {
                    let status = response.status();
                    let body = response.text().await.unwrap_or_default();
                    (status.as_u16(), status.is_success(), body)
                }
                Err(err) => (0, false, err.to_string()),
            };
            (index, began.elapsed(), outcome)
        });
    }
    let mut report = BurstReport {
        latencies: vec![Duration::ZERO; count],
        ..BurstReport::default()
    };
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((index, latency, (status, ok, body))) => {
                report.latencies[index] = latency;
                if ok {
                    report.accepted += 1;
                } else {
                    report.rejected.push((index, status, body));
                }
            }
            Err(err) => report
                .rejected
                .push((usize::MAX, 0, format!("sender task failed: {err}"))),
        }
    }
    report.rejected.sort_by_key(|(index, _, _)| *index);
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    const SKUS: &[&str] = &["tee-black-m", "tote-natural", "mug-white"];
    const BERLIN: (f64, f64, f64, f64) = (52.45, 13.25, 52.58, 13.55);

    #[test]
    fn orders_are_deterministic_per_seed_and_within_bounds() {
        let a = generate_orders(42, 50, SKUS, BERLIN);
        assert_eq!(a, generate_orders(42, 50, SKUS, BERLIN));
        assert_ne!(a, generate_orders(43, 50, SKUS, BERLIN));
        for order in &a {
            let lat = order["customer"]["lat"].as_f64().expect("lat");
            let lon = order["customer"]["lon"].as_f64().expect("lon");
            assert!((BERLIN.0..=BERLIN.2).contains(&lat) && (BERLIN.1..=BERLIN.3).contains(&lon));
            let lines = order["lines"].as_array().expect("lines");
            assert!((1..=3).contains(&lines.len()));
            for line in lines {
                assert!((1..=3).contains(&line["quantity"].as_u64().expect("qty")));
                assert!(SKUS.contains(&line["sku"].as_str().expect("sku")));
            }
        }
        assert_eq!(a[0]["external_ref"], "evt-42-0001");
    }
}
