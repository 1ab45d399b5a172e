//! Demand per sales event. Brands sell at pop-ups and weekend markets and send
//! their orders afterwards, so a brand's daily demand is a few spikes after
//! each event and zeros between them; what a brand needs to know is how much
//! of each SKU its *next event* will sell. This module turns daily demand into
//! one value per event, forecasts the next event's demand per SKU (per
//! visitor when footfall is known), and spreads it into a distribution that
//! `production::recommend_run` turns into a run for a service level.
//!
//! - `attribute`: each day's units go to the latest event that started on or
//!   before that day, if the day falls within the event's days plus
//!   `attribution_days` after it (orders are sent after the event); days
//!   outside every window are counted as unattributed, not guessed.
//! - `select_discount`: the level of a SKU's per-event series is a discounted
//!   mean of its past values, `sum (1 - a)^(age) v / sum (1 - a)^(age)`: `a`
//!   = 0 is the plain mean, `a` = 1 the last event alone ("same as last
//!   event"). One `a` per brand is chosen on a rolling origin over every SKU
//!   of the brand (each event forecast from the ones before it), errors
//!   scaled by each SKU's mean so that big SKUs do not decide alone.
//! - Per visitor: when the upcoming event and every past event of the SKU
//!   have a footfall, the series is units per visitor and the forecast is
//!   the level times the upcoming footfall; otherwise units per event.
//! - `event_outlook`: demand counts customers, each buying or not, so given
//!   the rate it is Poisson, with variance `mu`. The rate is estimated from
//!   a few events, which adds `mu x e` (`e` = `F sum w_k^2 / F_k / (sum
//!   w_k)^2` for weights `w_k`, footfalls `F_k` and the upcoming footfall
//!   `F`; all 1 per event): with three past markets of the same size, `e` is
//!   1/3. Markets also differ beyond footfall: the rolling-origin residuals
//!   `(actual - forecast) / sqrt(forecast x (1 + e))` (in units), pooled
//!   over the brand's SKUs, give the dispersion `phi = mean(residual^2)`,
//!   shrunk toward 1 by two pseudo-residuals and never below 1. The outlook
//!   is quasi-Poisson, `d x Poisson(point / d)` with `d = phi x (1 + e)`:
//!   mean `point`, variance `d x point`, sampled at evenly spread
//!   probabilities. A brand with fewer than two past events has no residual
//!   and `phi` = 1.
//!
//! Everything is pure, deterministic and total: NaN, infinite and negative
//! inputs count as 0, and nothing panics.

use chrono::NaiveDate;

use super::production::DemandOutlook;

/// The days of one sales event and its footfall (visitors), if counted.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EventWindow {
    pub starts_on: NaiveDate,
    /// Selling days, at least 1.
    pub days: u32,
    pub footfall: Option<f64>,
}

impl EventWindow {
    /// Whether `day` counts toward this event: from its first day to its
    /// last day plus `attribution_days`.
    fn covers(&self, day: NaiveDate, attribution_days: u32) -> bool {
        let since = (day - self.starts_on).num_days();
        since >= 0 && since < i64::from(self.days.max(1)) + i64::from(attribution_days)
    }
}

/// Units per event, in the order of `events`, and the units of days no
/// event covers. Each day goes to the latest-starting event that covers it
/// (a later event's orders are not counted twice when windows overlap).
pub fn attribute(
    daily: &[(NaiveDate, f64)],
    events: &[EventWindow],
    attribution_days: u32,
) -> (Vec<f64>, f64) {
    let mut totals = vec![0.0; events.len()];
    let mut unattributed = 0.0;
    for &(day, units) in daily {
        let units = clean(units);
        let owner = events
            .iter()
            .enumerate()
            .filter(|(_, event)| event.covers(day, attribution_days))
            .max_by_key(|(index, event)| (event.starts_on, *index))
            .map(|(index, _)| index);
        match owner {
            Some(index) => totals[index] += units,
            None => unattributed += units,
        }
    }
    (totals, unattributed)
}

/// One past event of one SKU: its units and its event's footfall.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PastEvent {
    pub units: f64,
    pub footfall: Option<f64>,
}

/// The discount weights tried, from the plain mean to the last event alone.
pub const DISCOUNTS: [f64; 7] = [0.0, 0.1, 0.2, 0.3, 0.5, 0.7, 1.0];

/// What a brand's past events say about its next one.
#[derive(Clone, Debug, PartialEq)]
pub struct EventModel {
    /// The discount chosen (see the module docs).
    pub discount: f64,
    /// The dispersion of demand around the forecast, relative to Poisson
    /// (>= 1; 1 with no residual).
    pub dispersion: f64,
    /// Rolling-origin residuals behind `dispersion`.
    pub residuals: usize,
}

/// Pseudo-residuals of a Poisson fit (squared residual 1) that the
/// dispersion is shrunk with: a few residuals cannot claim a tight spread,
/// nor one wild market a huge one.
const PRIOR_RESIDUALS: f64 = 2.0;

/// Whether a SKU is forecast per visitor for an upcoming event with
/// `upcoming_footfall`: every past event and the upcoming one have a
/// footfall above 0.
pub fn per_visitor(history: &[PastEvent], upcoming_footfall: Option<f64>) -> bool {
    positive(upcoming_footfall).is_some()
        && !history.is_empty()
        && history
            .iter()
            .all(|event| positive(event.footfall).is_some())
}

/// The values the model works on: units per visitor, or units.
fn values(history: &[PastEvent], by_visitor: bool) -> Vec<f64> {
    history
        .iter()
        .map(|event| {
            let units = clean(event.units);
            match (by_visitor, positive(event.footfall)) {
                (true, Some(footfall)) => units / footfall,
                _ => units,
            }
        })
        .collect()
}

/// The discounted mean of `values` (0 for none).
pub fn level(values: &[f64], discount: f64) -> f64 {
    let keep = 1.0 - discount.clamp(0.0, 1.0);
    let (mut sum, mut weights, mut weight) = (0.0, 0.0, 1.0);
    for value in values.iter().rev() {
        sum += weight * value;
        weights += weight;
        weight *= keep;
        if weight == 0.0 {
            break;
        }
    }
    if weights > 0.0 { sum / weights } else { 0.0 }
}

/// How much estimating the rate adds to the variance of a forecast, relative
/// to its mean: `target x sum w_k^2 / scale_k / (sum w_k)^2`, with the
/// discount's weights over `scales` (oldest first; the footfall of each
/// past event per visitor, 1 per event) and the forecast event's `target`
/// scale.
pub fn estimation_factor(scales: &[f64], target: f64, discount: f64) -> f64 {
    let keep = 1.0 - discount.clamp(0.0, 1.0);
    let (mut squares, mut weights, mut weight) = (0.0, 0.0, 1.0);
    for scale in scales.iter().rev() {
        let scale = if scale.is_finite() && *scale > 0.0 {
            *scale
        } else {
            1.0
        };
        squares += weight * weight / scale;
        weights += weight;
        weight *= keep;
        if weight == 0.0 {
            break;
        }
    }
    let target = if target.is_finite() && target > 0.0 {
        target
    } else {
        1.0
    };
    if weights > 0.0 {
        target * squares / (weights * weights)
    } else {
        0.0
    }
}

/// The scales of a SKU's past events: their footfalls per visitor, 1 per event.
fn scales(history: &[PastEvent], by_visitor: bool) -> Vec<f64> {
    history
        .iter()
        .map(|event| match (by_visitor, positive(event.footfall)) {
            (true, Some(footfall)) => footfall,
            _ => 1.0,
        })
        .collect()
}

/// Chooses the discount for a brand from its SKUs' histories (each a list of
/// past events, oldest first) and collects the chosen discount's relative
/// errors. `upcoming_footfall` decides which SKUs are modelled per visitor,
/// as `event_outlook` will.
pub fn select_discount(skus: &[Vec<PastEvent>], upcoming_footfall: Option<f64>) -> EventModel {
    let series: Vec<Vec<f64>> = skus
        .iter()
        .map(|history| values(history, per_visitor(history, upcoming_footfall)))
        .collect();
    let score = |discount: f64| -> f64 {
        let mut total = 0.0;
        for values in &series {
            let scale = mean(values);
            if scale <= 0.0 {
                continue;
            }
            for origin in 1..values.len() {
                let error = (values[origin] - level(&values[..origin], discount)) / scale;
                total += error * error;
            }
        }
        total
    };
    let mut best = (DISCOUNTS[0], score(DISCOUNTS[0]));
    for &discount in &DISCOUNTS[1..] {
        let candidate = score(discount);
        // Ties keep the smaller discount: the steadier estimate.
        if candidate < best.1 - 1e-12 {
            best = (discount, candidate);
        }
    }
    let discount = best.0;
    // Pearson residuals in units: a per-visitor forecast is scaled by the
    // footfall of the event it forecasts; each is divided by the spread
    // expected of a Poisson rate estimated from the events before it.
    let (mut squares, mut residuals) = (0.0, 0usize);
    for (history, values) in skus.iter().zip(&series) {
        let scales = scales(history, per_visitor(history, upcoming_footfall));
        for origin in 1..values.len() {
            let forecast = level(&values[..origin], discount) * scales[origin];
            if forecast > 0.0 {
                let spread = estimation_factor(&scales[..origin], scales[origin], discount);
                let residual = (values[origin] * scales[origin] - forecast)
                    / (forecast * (1.0 + spread)).sqrt();
                squares += residual * residual;
                residuals += 1;
            }
        }
    }
    let dispersion = ((squares + PRIOR_RESIDUALS) / (residuals as f64 + PRIOR_RESIDUALS)).max(1.0);
    EventModel {
        discount,
        dispersion,
        residuals,
    }
}

/// Probabilities at which the outlook is sampled.
const SAMPLE_POINTS: usize = 200;

/// The demand outlook of one SKU at an upcoming event: its point forecast
/// (the level times the upcoming footfall, per visitor; the level, per
/// event) spread quasi-Poisson by the brand's dispersion (module docs).
pub fn event_outlook(
    history: &[PastEvent],
    model: &EventModel,
    upcoming_footfall: Option<f64>,
) -> DemandOutlook {
    let by_visitor = per_visitor(history, upcoming_footfall);
    let rate = level(&values(history, by_visitor), model.discount);
    let point = match (by_visitor, positive(upcoming_footfall)) {
        (true, Some(footfall)) => rate * footfall,
        _ => rate,
    };
    let phi = if model.dispersion.is_finite() {
        model.dispersion.max(1.0)
    } else {
        1.0
    };
    let target_scale = match (by_visitor, positive(upcoming_footfall)) {
        (true, Some(footfall)) => footfall,
        _ => 1.0,
    };
    let phi =
        phi * (1.0 + estimation_factor(&scales(history, by_visitor), target_scale, model.discount));
    let samples = poisson_quantiles(point / phi, SAMPLE_POINTS)
        .into_iter()
        .map(|units| units * phi)
        .collect();
    DemandOutlook::from_samples(point, samples, model.residuals)
}

/// Quantiles of Poisson(`mean`) at probabilities `(j + 0.5) / points`, for
/// `j` in `0..points`, ascending. The probabilities are walked once along
/// the distribution, from its mode outwards in log space, so large means
/// neither underflow nor cost more than their spread.
pub fn poisson_quantiles(mean: f64, points: usize) -> Vec<f64> {
    let mean = clean(mean);
    if mean == 0.0 || points == 0 {
        return vec![0.0; points];
    }
    // The mass below `start` is negligible at the probabilities asked for
    // (12 standard deviations below the mean).
    let start = (mean - 12.0 * mean.sqrt() - 1.0).floor().max(0.0);
    let mut k = start;
    let mut log_p = k * mean.ln() - mean - ln_factorial(k);
    let mut cumulative = log_p.exp();
    let mut out = Vec::with_capacity(points);
    // The walk stops far above the mean whatever rounding does.
    let ceiling = mean + 40.0 * mean.sqrt() + 50.0;
    for j in 0..points {
        let probability = (j as f64 + 0.5) / points as f64;
        while cumulative < probability && k < ceiling {
            k += 1.0;
            log_p += mean.ln() - k.ln();
            cumulative += log_p.exp();
        }
        out.push(k);
    }
    out
}

/// ln(k!) for a whole k >= 0: exact sums up to 30, Stirling's series above.
fn ln_factorial(k: f64) -> f64 {
    if k < 2.0 {
        return 0.0;
    }
    if k <= 30.0 {
        return (2..=k as u32).map(|i| f64::from(i).ln()).sum();
    }
    let n = k + 1.0;
    (n - 0.5) * n.ln() - n + 0.5 * (2.0 * std::f64::consts::PI).ln() + 1.0 / (12.0 * n)
        - 1.0 / (360.0 * n.powi(3))
}

fn positive(value: Option<f64>) -> Option<f64> {
    value.filter(|v| v.is_finite() && *v > 0.0)
}

fn clean(value: f64) -> f64 {
    if value.is_finite() && value > 0.0 {
        value
    } else {
        0.0
    }
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::production::{RunRequest, recommend_run};
    use proptest::prelude::*;

    fn day(d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 11, d).expect("date")
    }

    fn window(d: u32, days: u32, footfall: Option<f64>) -> EventWindow {
        EventWindow {
            starts_on: day(d),
            days,
            footfall,
        }
    }

    fn past(units: f64, footfall: Option<f64>) -> PastEvent {
        PastEvent { units, footfall }
    }

    #[test]
    fn days_go_to_the_latest_event_that_covers_them() {
        let events = [window(7, 2, None), window(14, 2, None)];
        let daily = [
            (day(6), 1.0),   // before any event
            (day(7), 2.0),   // first event, day one
            (day(10), 4.0),  // first event, attribution
            (day(14), 8.0),  // second event (first's window has closed)
            (day(18), 16.0), // second event, attribution (2 + 3 days)
            (day(19), 32.0), // past the second's window
            (day(20), f64::NAN),
        ];
        let (totals, rest) = attribute(&daily, &events, 3);
        assert_eq!(totals, vec![6.0, 24.0]);
        assert_eq!(rest, 33.0);
        // Overlapping windows: a day both cover goes to the later event.
        let (totals, rest) = attribute(&daily, &events, 10);
        assert_eq!(totals, vec![6.0, 56.0]);
        assert_eq!(rest, 1.0);
    }

    #[test]
    fn the_level_runs_from_the_mean_to_the_last_value() {
        let values = [2.0, 4.0, 9.0];
        assert_eq!(level(&values, 0.0), 5.0);
        assert_eq!(level(&values, 1.0), 9.0);
        let half = level(&values, 0.5);
        assert!((half - (9.0 + 2.0 + 0.5) / 1.75).abs() < 1e-12);
        assert_eq!(level(&[], 0.3), 0.0);
    }

    #[test]
    fn a_steady_rate_picks_a_mean_and_a_trend_picks_a_short_memory() {
        let steady: Vec<Vec<PastEvent>> = (0..4)
            .map(|sku| {
                [10.0, 14.0, 9.0, 13.0, 11.0, 12.0]
                    .iter()
                    .map(|units| past(units + sku as f64, None))
                    .collect()
            })
            .collect();
        assert!(select_discount(&steady, None).discount <= 0.2);
        let rising: Vec<Vec<PastEvent>> = vec![
            [5.0, 10.0, 20.0, 40.0, 80.0]
                .iter()
                .map(|u| past(*u, None))
                .collect(),
        ];
        let model = select_discount(&rising, None);
        assert_eq!(model.discount, 1.0);
        assert_eq!(model.residuals, 4);
        // Each market doubles the last: far more spread than Poisson.
        assert!(model.dispersion > 5.0, "{model:?}");
    }

    #[test]
    fn footfall_scales_the_forecast_per_visitor() {
        // 5% of visitors buy at every event; the next event is twice as big.
        let history = [past(20.0, Some(400.0)), past(30.0, Some(600.0))];
        let model = select_discount(&[history.to_vec()], Some(1200.0));
        // A perfect forecast: the dispersion is the prior's, 1.
        assert_eq!((model.residuals, model.dispersion), (1, 1.0));
        let outlook = event_outlook(&history, &model, Some(1200.0));
        assert!((outlook.point() - 60.0).abs() < 1e-9);
        // Without the upcoming footfall: units per event.
        let outlook = event_outlook(&history, &select_discount(&[history.to_vec()], None), None);
        assert!(outlook.point() < 31.0);
        // A past event without footfall makes the SKU per event.
        assert!(!per_visitor(&[past(1.0, None)], Some(10.0)));
    }

    #[test]
    fn a_rate_from_one_event_doubles_the_poisson_spread() {
        let history = [past(50.0, None)];
        let model = select_discount(&[history.to_vec()], None);
        assert_eq!((model.residuals, model.dispersion), (0, 1.0));
        let outlook = event_outlook(&history, &model, None);
        let request = RunRequest {
            service_level: 0.98,
            stock_on_hand: 0,
            restockable_returns: 0,
        };
        let run = recommend_run(&outlook, &request).expect("valid");
        // Poisson noise (variance 50) plus the rate's own estimate from one
        // event (50 again): 2 x Poisson(25), whose 98% quantile is 2 x 35.
        assert!((68..=72).contains(&run.target), "{run:?}");
        assert!(run.availability >= 0.98 - 1e-9);
    }

    #[test]
    fn poisson_quantiles_match_known_values() {
        // Poisson(3): CDF 0.0498, 0.199, 0.423, 0.647, 0.815, 0.916, 0.966.
        let q = poisson_quantiles(3.0, 4); // p = 0.125, 0.375, 0.625, 0.875
        assert_eq!(q, vec![1.0, 2.0, 3.0, 5.0]);
        // A large mean: quantiles sit near mean + z * sqrt(mean).
        let q = poisson_quantiles(1.0e6, 2); // p = 0.25, 0.75
        assert!((q[0] - (1.0e6 - 674.5)).abs() < 5.0, "{q:?}");
        assert!((q[1] - (1.0e6 + 674.5)).abs() < 5.0, "{q:?}");
        assert_eq!(poisson_quantiles(0.0, 3), vec![0.0; 3]);
        assert_eq!(poisson_quantiles(f64::NAN, 2), vec![0.0; 2]);
    }

    #[test]
    fn estimating_from_few_events_widens_the_spread() {
        // Three events of the same size, the plain mean: a third more.
        assert!((estimation_factor(&[1.0; 3], 1.0, 0.0) - 1.0 / 3.0).abs() < 1e-12);
        // The last event alone: as much again as Poisson.
        assert!((estimation_factor(&[1.0; 3], 1.0, 1.0) - 1.0).abs() < 1e-12);
        // Per visitor: a bigger upcoming event leans harder on the estimate.
        let small = estimation_factor(&[400.0, 400.0], 400.0, 0.0);
        let big = estimation_factor(&[400.0, 400.0], 800.0, 0.0);
        assert!((small - 0.5).abs() < 1e-12 && (big - 1.0).abs() < 1e-12);
        assert_eq!(estimation_factor(&[], 5.0, 0.3), 0.0);
    }

    #[test]
    fn ln_factorial_is_continuous_at_the_switch() {
        let exact: f64 = (2..=31).map(|i| f64::from(i).ln()).sum();
        assert!((ln_factorial(31.0) - exact).abs() < 1e-9);
    }

    proptest! {
        #[test]
        fn attribution_loses_no_unit(
            days in prop::collection::vec((0u32..40, 0.0f64..50.0), 0..40),
            starts in prop::collection::vec((0u32..40, 1u32..4), 0..5),
            attribution in 0u32..10,
        ) {
            let base = day(1);
            let daily: Vec<_> = days.iter()
                .map(|(d, u)| (base + chrono::Days::new(u64::from(*d)), *u))
                .collect();
            let events: Vec<_> = starts.iter().map(|(d, n)| EventWindow {
                starts_on: base + chrono::Days::new(u64::from(*d)), days: *n, footfall: None,
            }).collect();
            let (totals, rest) = attribute(&daily, &events, attribution);
            let total: f64 = daily.iter().map(|(_, u)| u).sum();
            prop_assert!((totals.iter().sum::<f64>() + rest - total).abs() < 1e-6);
        }

        #[test]
        fn outlooks_are_finite_and_never_negative(
            units in prop::collection::vec(prop_oneof![Just(f64::NAN), Just(-1.0), 0.0f64..500.0], 0..6),
            footfall in prop::option::of(prop_oneof![Just(0.0), 1.0f64..5000.0]),
            upcoming in prop::option::of(prop_oneof![Just(f64::INFINITY), 1.0f64..5000.0]),
        ) {
            let history: Vec<_> = units.iter().map(|u| past(*u, footfall)).collect();
            let model = select_discount(std::slice::from_ref(&history), upcoming);
            let outlook = event_outlook(&history, &model, upcoming);
            prop_assert!(outlook.point().is_finite() && outlook.point() >= 0.0);
            prop_assert!(outlook.samples().iter().all(|s| s.is_finite() && *s >= 0.0));
            prop_assert!(outlook.samples().windows(2).all(|w| w[0] <= w[1]));
        }
    }
}
