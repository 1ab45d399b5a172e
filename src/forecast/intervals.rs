//! Empirical prediction intervals: the point forecast plus quantiles of the
//! model's own rolling-origin errors at the same step ahead. Croston-type models
//! have no valid analytic intervals, so no distribution is assumed.
//!
//! Invariants: quantiles are sample values (no interpolation, Hyndman-Fan
//! type 1), so an interval never claims more than the errors show; bounds are
//! floored at 0 (demand is never negative) and `0 <= lower <= upper` always
//! holds. With no error at a step, the errors of every step are pooled; with
//! none at all the interval is the point itself. With n errors, coverage
//! above 1 - 1/n is not resolved: the bounds are the extreme errors.

use std::fmt;

use super::select::Backtest;

/// A coverage or service level outside (0, 1], or NaN.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct InvalidLevel {
    /// What was given.
    pub level: f64,
}

impl fmt::Display for InvalidLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "level {} is not in (0, 1]", self.level)
    }
}

impl std::error::Error for InvalidLevel {}

/// Checks that `level` is in (0, 1].
pub fn check_level(level: f64) -> Result<f64, InvalidLevel> {
    if level > 0.0 && level <= 1.0 {
        Ok(level)
    } else {
        Err(InvalidLevel { level })
    }
}

/// The smallest sample `x` with at least a `probability` share of `sorted` at or
/// below it (`sorted` ascending); `None` when empty. `probability` is clamped to
/// [0, 1]; 0 gives the minimum.
pub fn quantile(sorted: &[f64], probability: f64) -> Option<f64> {
    let count = sorted.len();
    if count == 0 {
        return None;
    }
    let probability = if probability.is_nan() {
        0.0
    } else {
        probability.clamp(0.0, 1.0)
    };
    // Nearest rank: ceil(p * n), 1-based; the cast saturates and is clamped.
    let rank = (probability * count as f64).ceil() as usize;
    sorted.get(rank.clamp(1, count) - 1).copied()
}

/// Sorts finite values ascending, dropping any NaN.
pub fn sorted(mut values: Vec<f64>) -> Vec<f64> {
    values.retain(|value| !value.is_nan());
    values.sort_by(f64::total_cmp);
    values
}

/// A prediction interval for one period.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Interval {
    /// Lower bound, >= 0.
    pub lower: f64,
    /// Upper bound, >= `lower`.
    pub upper: f64,
}

/// Central intervals covering `coverage` (in (0, 1]) around each point forecast,
/// from the errors of the same step in `backtest`.
pub fn prediction_intervals(
    point: &[f64],
    backtest: &Backtest,
    coverage: f64,
) -> Result<Vec<Interval>, InvalidLevel> {
    let coverage = check_level(coverage)?;
    let pooled = sorted(backtest.all_errors());
    let tail = (1.0 - coverage) / 2.0;
    Ok(point
        .iter()
        .enumerate()
        .map(|(index, &forecast)| {
            let at_step = sorted(backtest.step_errors(index + 1));
            let errors = if at_step.is_empty() {
                &pooled
            } else {
                &at_step
            };
            let low = quantile(errors, tail).unwrap_or(0.0);
            let high = quantile(errors, 1.0 - tail).unwrap_or(0.0);
            let lower = (forecast + low).max(0.0);
            let upper = (forecast + high).max(lower);
            Interval { lower, upper }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_quantiles() {
        let values = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(quantile(&values, 0.0), Some(1.0));
        assert_eq!(quantile(&values, 0.25), Some(1.0));
        assert_eq!(quantile(&values, 0.26), Some(2.0));
        assert_eq!(quantile(&values, 0.5), Some(2.0));
        assert_eq!(quantile(&values, 0.98), Some(4.0));
        assert_eq!(quantile(&values, 1.0), Some(4.0));
        assert_eq!(quantile(&values, f64::NAN), Some(1.0));
        assert_eq!(quantile(&[], 0.5), None);
    }

    #[test]
    fn levels_must_be_in_the_unit_interval() {
        for bad in [0.0, -0.1, 1.5, f64::NAN] {
            assert!(check_level(bad).is_err(), "{bad}");
        }
        assert_eq!(check_level(1.0), Ok(1.0));
    }

    #[test]
    fn intervals_from_backtest_errors_by_hand() {
        use crate::forecast::models::{ForecastState, ModelKind};
        use crate::forecast::select::backtest;
        // Mean of 2, 4, 0, 6 backtested from origin 2 with two steps: errors
        // -3, 3 (origin 2) and 4 (origin 3).
        let values = [2.0, 4.0, 0.0, 6.0];
        let state = ForecastState::fit(ModelKind::Mean, &values, 7).expect("valid");
        let errors = backtest(&state, &values, 2, 2);
        let point = state.forecast(3);
        assert_eq!(point, vec![3.0; 3]);
        let intervals = prediction_intervals(&point, &errors, 0.5).expect("valid");
        // step 1: errors -3, 4 -> quantiles at 0.25 and 0.75: -3 and 4
        assert_eq!(
            intervals[0],
            Interval {
                lower: 0.0,
                upper: 7.0
            }
        );
        // step 2: error 3 alone
        assert_eq!(
            intervals[1],
            Interval {
                lower: 6.0,
                upper: 6.0
            }
        );
        // step 3: no error that far ahead; all errors pooled (-3, 3, 4)
        assert_eq!(
            intervals[2],
            Interval {
                lower: 0.0,
                upper: 7.0
            }
        );
        assert!(prediction_intervals(&point, &errors, 0.0).is_err());
    }

    #[test]
    fn sorting_drops_nan() {
        assert_eq!(sorted(vec![3.0, f64::NAN, -1.0]), vec![-1.0, 3.0]);
    }
}
