//! Recommended production runs: how many units to make so that demand over a
//! window (an event) is met with a chosen probability, net of stock on hand and
//! restockable returns, and how much is expected to be left over.
//!
//! Demand is an empirical distribution: the point forecast of the window's total
//! plus each backtest error of that total (`Backtest::window_errors`), floored
//! at 0. "Service level" is the probability of no stock-out over the window
//! (cycle service level): the target is the smallest sampled demand that at least
//! that share of samples does not exceed, rounded up to whole units.
//!
//! Invariants: pure arithmetic on the samples given; quantities are whole units
//! and never negative; a run is never recommended when stock and returns already
//! cover the target.

use std::fmt;

use super::intervals::{InvalidLevel, check_level, quantile, sorted};
use super::select::Backtest;

/// Possible totals of demand over a window, from a forecast and its errors.
#[derive(Clone, Debug, PartialEq)]
pub struct DemandOutlook {
    point: f64,
    /// Ascending, each >= 0; never empty (the point alone when there is no error).
    samples: Vec<f64>,
    error_count: usize,
}

impl DemandOutlook {
    /// Total demand over steps `first_step..=last_step` (1-based) of `point`,
    /// spread by the backtest's errors of that same window. Without any origin
    /// whose backtest reaches `last_step` (a history shorter than the window),
    /// the outlook is the point total alone: `error_count()` is then 0 and the
    /// caller should treat the recommendation as unbacked.
    pub fn from_backtest(
        point: &[f64],
        backtest: &Backtest,
        first_step: usize,
        last_step: usize,
    ) -> Self {
        let first = first_step.max(1) - 1;
        let last = last_step.max(1);
        let total: f64 = point.get(first..last).unwrap_or(&[]).iter().sum();
        Self::from_errors(total, &backtest.window_errors(first_step, last_step))
    }

    /// Point total plus each error (`actual - forecast`), floored at 0. NaN and
    /// infinite errors are ignored; a NaN or negative point counts as 0.
    pub fn from_errors(point_total: f64, errors: &[f64]) -> Self {
        let point = if point_total.is_finite() && point_total > 0.0 {
            point_total
        } else {
            0.0
        };
        let samples: Vec<f64> = errors
            .iter()
            .filter(|error| error.is_finite())
            .map(|error| (point + error).max(0.0))
            .collect();
        let error_count = samples.len();
        let samples = if samples.is_empty() {
            vec![point]
        } else {
            sorted(samples)
        };
        DemandOutlook {
            point,
            samples,
            error_count,
        }
    }

    /// An outlook from sampled totals (any order; NaN, infinite and negative
    /// samples count as 0) around `point`, backed by `error_count` errors.
    /// No sample gives the point alone.
    pub fn from_samples(point: f64, samples: Vec<f64>, error_count: usize) -> Self {
        let clean = |value: f64| {
            if value.is_finite() && value > 0.0 {
                value
            } else {
                0.0
            }
        };
        let point = clean(point);
        let samples: Vec<f64> = samples.into_iter().map(clean).collect();
        let samples = if samples.is_empty() {
            vec![point]
        } else {
            sorted(samples)
        };
        DemandOutlook {
            point,
            samples,
            error_count,
        }
    }

    /// The same outlook with demand never below `floor` (units already
    /// sold, such as pre-orders): the point and every sample are raised to
    /// it. A floor that is not finite and positive changes nothing.
    pub fn at_least(mut self, floor: f64) -> Self {
        if floor.is_finite() && floor > 0.0 {
            self.point = self.point.max(floor);
            for sample in &mut self.samples {
                *sample = sample.max(floor);
            }
        }
        self
    }

    /// The point forecast of the total.
    pub fn point(&self) -> f64 {
        self.point
    }

    /// The sampled totals, ascending.
    pub fn samples(&self) -> &[f64] {
        &self.samples
    }

    /// How many backtest errors back the samples (0: the point alone).
    pub fn error_count(&self) -> usize {
        self.error_count
    }

    /// Smallest sampled total with at least `level` of the samples at or below it.
    pub fn quantile(&self, level: f64) -> f64 {
        quantile(&self.samples, level).unwrap_or(self.point)
    }

    /// Mean of `max(0, available - demand)` over the samples.
    pub fn expected_leftover(&self, available: f64) -> f64 {
        mean(
            self.samples
                .iter()
                .map(|demand| (available - demand).max(0.0)),
        )
    }

    /// Mean of `max(0, demand - available)` over the samples.
    pub fn expected_shortfall(&self, available: f64) -> f64 {
        mean(
            self.samples
                .iter()
                .map(|demand| (demand - available).max(0.0)),
        )
    }

    /// Share of samples that `available` covers.
    pub fn availability(&self, available: f64) -> f64 {
        mean(
            self.samples
                .iter()
                .map(|&demand| if demand <= available { 1.0 } else { 0.0 }),
        )
    }
}

fn mean(values: impl ExactSizeIterator<Item = f64>) -> f64 {
    let count = values.len();
    if count == 0 {
        0.0
    } else {
        values.sum::<f64>() / count as f64
    }
}

/// What the brand and the factories know before an event.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunRequest {
    /// Probability of meeting all demand over the window, in (0, 1] (0.98 for
    /// "98% availability").
    pub service_level: f64,
    /// Finished units on hand for this SKU at this factory.
    pub stock_on_hand: u64,
    /// Returned units that can be restocked before the window starts.
    pub restockable_returns: u64,
}

/// A recommended production run.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RunRecommendation {
    /// Units to produce (0 when stock and returns already cover the target).
    pub quantity: u64,
    /// Units that reach the service level: the demand quantile, rounded up.
    pub target: u64,
    /// Stock plus returns plus the run.
    pub available: u64,
    /// Expected units left after the window.
    pub expected_leftover: f64,
    /// Expected units of demand not met.
    pub expected_shortfall: f64,
    /// Share of sampled demands that `available` covers (>= the service level
    /// when the outlook has errors).
    pub availability: f64,
    /// Backtest errors behind the outlook (0: point forecast alone).
    pub error_count: usize,
}

/// A request that cannot be answered.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum RunError {
    /// The service level is not in (0, 1].
    ServiceLevel(InvalidLevel),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::ServiceLevel(error) => write!(f, "service level: {error}"),
        }
    }
}

impl std::error::Error for RunError {}

/// The run that reaches `request.service_level` on `outlook`, net of stock and
/// restockable returns.
pub fn recommend_run(
    outlook: &DemandOutlook,
    request: &RunRequest,
) -> Result<RunRecommendation, RunError> {
    let level = check_level(request.service_level).map_err(RunError::ServiceLevel)?;
    // `as` saturates: an absurd demand gives u64::MAX, never a panic.
    let target = outlook.quantile(level).ceil() as u64;
    let on_hand = request
        .stock_on_hand
        .saturating_add(request.restockable_returns);
    let quantity = target.saturating_sub(on_hand);
    let available = on_hand.saturating_add(quantity);
    let available_units = available as f64;
    Ok(RunRecommendation {
        quantity,
        target,
        available,
        expected_leftover: outlook.expected_leftover(available_units),
        expected_shortfall: outlook.expected_shortfall(available_units),
        availability: outlook.availability(available_units),
        error_count: outlook.error_count(),
    })
}

/// The run from a demand quantile alone (when only that is known): quantity
/// to reach `demand_at_level`, and a lower bound of the expected leftover,
/// `max(0, available - mean_demand)` (Jensen: the true expectation is at least
/// that). Negative or NaN demands count as 0.
pub fn recommend_from_quantile(
    demand_at_level: f64,
    mean_demand: f64,
    stock_on_hand: u64,
    restockable_returns: u64,
) -> (u64, f64) {
    let clean = |value: f64| if value > 0.0 { value } else { 0.0 };
    let target = clean(demand_at_level).ceil() as u64;
    let on_hand = stock_on_hand.saturating_add(restockable_returns);
    let quantity = target.saturating_sub(on_hand);
    let available = on_hand.saturating_add(quantity) as f64;
    (quantity, (available - clean(mean_demand)).max(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(service_level: f64, stock: u64, returns: u64) -> RunRequest {
        RunRequest {
            service_level,
            stock_on_hand: stock,
            restockable_returns: returns,
        }
    }

    #[test]
    fn covers_the_service_level_quantile_net_of_stock_and_returns() {
        // Point 10; errors give totals 7, 9, 10, 12, 20.
        let outlook = DemandOutlook::from_errors(10.0, &[-3.0, -1.0, 0.0, 2.0, 10.0]);
        assert_eq!(outlook.samples(), &[7.0, 9.0, 10.0, 12.0, 20.0]);
        let run = recommend_run(&outlook, &request(0.8, 3, 2)).expect("valid");
        // 80% of 5 samples: the 4th, 12.
        assert_eq!(run.target, 12);
        assert_eq!(run.quantity, 7);
        assert_eq!(run.available, 12);
        // leftovers 5, 3, 2, 0, 0 -> 2; shortfalls 0, 0, 0, 0, 8 -> 1.6
        assert!((run.expected_leftover - 2.0).abs() < 1e-12);
        assert!((run.expected_shortfall - 1.6).abs() < 1e-12);
        assert!((run.availability - 0.8).abs() < 1e-12);
        assert_eq!(run.error_count, 5);
    }

    #[test]
    fn no_run_when_stock_covers_the_target() {
        let outlook = DemandOutlook::from_errors(4.0, &[-1.0, 0.0, 1.0]);
        let run = recommend_run(&outlook, &request(0.98, 10, 0)).expect("valid");
        assert_eq!(run.quantity, 0);
        assert_eq!(run.available, 10);
        assert!((run.expected_leftover - 6.0).abs() < 1e-12);
    }

    #[test]
    fn fractional_targets_round_up_and_demand_is_floored_at_zero() {
        let outlook = DemandOutlook::from_errors(0.4, &[-2.0, 0.1]);
        assert_eq!(outlook.samples(), &[0.0, 0.5]);
        let run = recommend_run(&outlook, &request(1.0, 0, 0)).expect("valid");
        assert_eq!(run.target, 1);
    }

    #[test]
    fn without_errors_the_point_is_the_outlook() {
        let outlook = DemandOutlook::from_errors(2.5, &[]);
        assert_eq!(outlook.error_count(), 0);
        let run = recommend_run(&outlook, &request(0.98, 1, 0)).expect("valid");
        assert_eq!((run.target, run.quantity, run.error_count), (3, 2, 0));
    }

    #[test]
    fn refuses_service_levels_outside_the_unit_interval() {
        let outlook = DemandOutlook::from_errors(1.0, &[0.0]);
        for bad in [0.0, 1.01, f64::NAN, -1.0] {
            assert!(recommend_run(&outlook, &request(bad, 0, 0)).is_err());
        }
    }

    #[test]
    fn huge_inputs_saturate() {
        let outlook = DemandOutlook::from_errors(f64::MAX, &[f64::MAX, f64::INFINITY]);
        let run = recommend_run(&outlook, &request(0.5, u64::MAX, u64::MAX)).expect("valid");
        assert_eq!(run.quantity, 0);
        assert_eq!(run.available, u64::MAX);
    }

    #[test]
    fn from_a_quantile_alone() {
        assert_eq!(recommend_from_quantile(7.2, 5.0, 2, 1), (5, 3.0));
        assert_eq!(recommend_from_quantile(f64::NAN, -1.0, 0, 0), (0, 0.0));
    }

    #[test]
    fn pre_orders_floor_the_outlook() {
        let outlook = DemandOutlook::from_errors(10.0, &[-6.0, 0.0, 5.0]).at_least(8.0);
        assert_eq!(outlook.point(), 10.0);
        assert_eq!(outlook.samples(), &[8.0, 10.0, 15.0]);
        let low = DemandOutlook::from_errors(2.0, &[]).at_least(7.0);
        assert_eq!(low.point(), 7.0);
        assert_eq!(low.samples(), &[7.0]);
        let same = DemandOutlook::from_errors(2.0, &[1.0]);
        assert_eq!(same.clone().at_least(f64::NAN), same);
        assert_eq!(same.clone().at_least(-3.0), same);
    }
}
