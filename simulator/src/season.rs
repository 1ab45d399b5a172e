//! A season of sales events with a known true demand: brands sell at weekend
//! markets, each visitor buys each SKU with a fixed probability, and the
//! orders of an event are sent to the daemon after it. The true demand of an
//! event not held yet can be drawn too, so a recommended production run can
//! be scored against what the event would really sell.
//!
//! Everything is seeded: the same spec gives the same demand and orders.

use std::collections::BTreeMap;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// One brand's season.
#[derive(Debug, Clone, PartialEq)]
pub struct BrandSeason {
    pub brand: String,
    /// SKUs and the share of visitors who buy one unit of each.
    pub skus: Vec<(String, f64)>,
    pub events: Vec<SeasonEvent>,
}

/// One sales event: its id, first day (days after the season starts),
/// selling days and footfall.
#[derive(Debug, Clone, PartialEq)]
pub struct SeasonEvent {
    pub id: String,
    pub day: u32,
    pub days: u32,
    pub footfall: u32,
}

/// A seeded season.
#[derive(Debug, Clone, PartialEq)]
pub struct SeasonSpec {
    pub seed: u64,
    pub brands: Vec<BrandSeason>,
}

impl SeasonSpec {
    /// Two brands at four weekend markets each (Saturday and Sunday), the
    /// fourth after a weekend off; footfall changes from event to event, so
    /// "the same as last time" is a poor plan and demand per visitor a good
    /// one. The SKUs are the demo catalog's.
    pub fn demo(seed: u64) -> SeasonSpec {
        let event = |id: &str, day: u32, footfall: u32| SeasonEvent {
            id: id.into(),
            day,
            days: 2,
            footfall,
        };
        let skus = |list: &[(&str, f64)]| {
            list.iter()
                .map(|(sku, rate)| (sku.to_string(), *rate))
                .collect()
        };
        SeasonSpec {
            seed,
            brands: vec![
                BrandSeason {
                    brand: "loom".into(),
                    skus: skus(&[
                        ("tee-black-m", 0.06),
                        ("tote-natural", 0.04),
                        ("phone-case", 0.02),
                    ]),
                    events: vec![
                        event("loom-1", 2, 350),
                        event("loom-2", 9, 500),
                        event("loom-3", 16, 300),
                        event("loom-4", 30, 700),
                    ],
                },
                BrandSeason {
                    brand: "kiln".into(),
                    skus: skus(&[
                        ("mug-white", 0.05),
                        ("tee-black-m", 0.03),
                        ("tote-natural", 0.02),
                    ]),
                    events: vec![
                        event("kiln-1", 2, 400),
                        event("kiln-2", 9, 250),
                        event("kiln-3", 16, 450),
                        event("kiln-4", 30, 600),
                    ],
                },
            ],
        }
    }

    fn rng(&self, brand: usize, event: usize, salt: u64) -> StdRng {
        StdRng::seed_from_u64(
            self.seed
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add((brand as u64) << 40 ^ (event as u64) << 20 ^ salt),
        )
    }

    /// The units of each SKU the event really sells: Poisson(footfall x rate).
    pub fn true_demand(&self, brand: usize, event: usize) -> BTreeMap<String, u32> {
        let (Some(season), mut rng) = (self.brands.get(brand), self.rng(brand, event, 1)) else {
            return BTreeMap::new();
        };
        let Some(spec) = season.events.get(event) else {
            return BTreeMap::new();
        };
        season
            .skus
            .iter()
            .map(|(sku, rate)| {
                (
                    sku.clone(),
                    poisson(&mut rng, f64::from(spec.footfall) * rate),
                )
            })
            .collect()
    }

    /// The event's true demand as order bodies (`POST /v1/orders`): 1-3 units
    /// per order, customers uniformly inside `bbox`; external refs
    /// `<event>-0001`...
    pub fn orders(&self, brand: usize, event: usize, bbox: (f64, f64, f64, f64)) -> Vec<Value> {
        let Some(spec) = self.brands.get(brand).and_then(|b| b.events.get(event)) else {
            return Vec::new();
        };
        let mut units: Vec<String> = Vec::new();
        for (sku, count) in self.true_demand(brand, event) {
            units.extend(std::iter::repeat_n(sku, count as usize));
        }
        let mut rng = self.rng(brand, event, 2);
        // Shuffle, then cut into baskets of 1-3 units.
        for i in (1..units.len()).rev() {
            units.swap(i, rng.random_range(0..=i));
        }
        let (min_lat, min_lon, max_lat, max_lon) = bbox;
        let mut orders = Vec::new();
        let mut rest = units.as_slice();
        while !rest.is_empty() {
            let take = rng.random_range(1..=3usize).min(rest.len());
            let (basket, after) = rest.split_at(take);
            rest = after;
            let mut lines: BTreeMap<&str, u32> = BTreeMap::new();
            for sku in basket {
                *lines.entry(sku.as_str()).or_default() += 1;
            }
            let lat = min_lat + rng.random::<f64>() * (max_lat - min_lat);
            let lon = min_lon + rng.random::<f64>() * (max_lon - min_lon);
            orders.push(json!({
                "external_ref": format!("{}-{:04}", spec.id, orders.len() + 1),
                "customer": {"name": "Market customer", "lat": round5(lat), "lon": round5(lon)},
                "lines": lines.iter().map(|(sku, quantity)| json!({"sku": sku, "quantity": quantity})).collect::<Vec<_>>(),
            }));
        }
        orders
    }
}

/// How a production plan fared against the demand it was made for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PlanScore {
    /// Units sold out of units demanded (1 when nothing was demanded).
    pub fill_rate: f64,
    /// Units made and not sold.
    pub leftover: u64,
    /// Units demanded and not made.
    pub shortfall: u64,
}

/// Scores `made` (units per SKU) against `demand`.
pub fn score(made: &BTreeMap<String, u64>, demand: &BTreeMap<String, u32>) -> PlanScore {
    let (mut sold, mut wanted, mut leftover, mut shortfall) = (0u64, 0u64, 0u64, 0u64);
    let skus: std::collections::BTreeSet<&String> = made.keys().chain(demand.keys()).collect();
    for sku in skus {
        let m = made.get(sku).copied().unwrap_or(0);
        let d = u64::from(demand.get(sku).copied().unwrap_or(0));
        sold += m.min(d);
        wanted += d;
        leftover += m.saturating_sub(d);
        shortfall += d.saturating_sub(m);
    }
    PlanScore {
        fill_rate: if wanted == 0 {
            1.0
        } else {
            sold as f64 / wanted as f64
        },
        leftover,
        shortfall,
    }
}

/// A Poisson draw by inversion (means up to a few hundred).
fn poisson(rng: &mut StdRng, mean: f64) -> u32 {
    if !(mean.is_finite() && mean > 0.0) {
        return 0;
    }
    let u: f64 = rng.random();
    let mut k = 0u32;
    let mut p = (-mean).exp();
    let mut cumulative = p;
    while cumulative < u && k < 100_000 {
        k += 1;
        p *= mean / f64::from(k);
        cumulative += p;
        if p == 0.0 && cumulative < u {
            break;
        }
    }
    k
}

fn round5(value: f64) -> f64 {
    (value * 100_000.0).round() / 100_000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orders_carry_exactly_the_true_demand() {
        let season = SeasonSpec::demo(7);
        for brand in 0..2 {
            for event in 0..4 {
                let demand = season.true_demand(brand, event);
                let mut ordered: BTreeMap<String, u32> = BTreeMap::new();
                for order in season.orders(brand, event, (52.45, 13.30, 52.57, 13.52)) {
                    let lines = order["lines"].as_array().expect("lines");
                    let units: u64 = lines
                        .iter()
                        .map(|l| l["quantity"].as_u64().unwrap_or(0))
                        .sum();
                    assert!((1..=3).contains(&units), "{order}");
                    for line in lines {
                        *ordered
                            .entry(line["sku"].as_str().expect("sku").to_string())
                            .or_default() += line["quantity"].as_u64().expect("qty") as u32;
                    }
                }
                ordered.retain(|_, units| *units > 0);
                let mut wanted = demand.clone();
                wanted.retain(|_, units| *units > 0);
                assert_eq!(ordered, wanted);
                assert_eq!(season.true_demand(brand, event), demand, "seeded");
            }
        }
    }

    #[test]
    fn poisson_draws_have_their_mean() {
        let mut rng = StdRng::seed_from_u64(3);
        let draws: Vec<u32> = (0..20_000).map(|_| poisson(&mut rng, 30.0)).collect();
        let mean = draws.iter().map(|&d| f64::from(d)).sum::<f64>() / draws.len() as f64;
        assert!((mean - 30.0).abs() < 0.3, "{mean}");
        assert_eq!(poisson(&mut rng, 0.0), 0);
    }

    #[test]
    fn scores_count_what_sold_and_what_was_left() {
        let made = BTreeMap::from([("a".to_string(), 10u64), ("b".to_string(), 2)]);
        let demand = BTreeMap::from([("a".to_string(), 8u32), ("b".to_string(), 4)]);
        let s = score(&made, &demand);
        assert_eq!((s.leftover, s.shortfall), (2, 2));
        assert!((s.fill_rate - 10.0 / 12.0).abs() < 1e-12);
    }
}
