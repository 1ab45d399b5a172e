//! Demand forecasting (pure): per-series models for intermittent, lumpy demand,
//! chosen per series on a rolling-origin backtest of its own history, with
//! empirical prediction intervals and recommended production runs.
//!
//! The core does no I/O: it takes values and dates, never reads a clock, never
//! logs, and returns values. Every function is deterministic and total: input
//! that is not a finite demand >= 0 is refused with a typed error, and nothing
//! derived from input can panic.
//!
//! Code map:
//! - `series`: `Series` (id, first date, `Frequency`, one value per period).
//! - `models`: the models (`ModelKind`) and `ForecastState`, a fitted model
//!   that forecasts and takes one new period in O(1) (`update`).
//! - `select`: `fit` (a fixed model, or `auto`: the mean of the three models with
//!   the least rolling-origin backtest error on the series' own history) and the
//!   `Backtest` errors everything empirical is built from.
//! - `intervals`: empirical prediction intervals from backtest errors.
//! - `events`: demand per sales event (days attributed to a brand's events,
//!   units per visitor when footfall is known) and the next event's outlook.
//! - `production`: `recommend_run`, the quantity for a service level net of
//!   stock and restockable returns, with the expected leftover.
//! - `csv`: the `unique_id,ds,y` text layout in, `unique_id,ds,y_hat` out
//!   (`Reader` and `ForecastWriter` for text in pieces and one series at a time).
//! - here: `forecast_series`, `forecast_all`, and `Forecaster`, which forecasts
//!   series one by one reusing its working buffers (a caller that writes each
//!   forecast before making the next never holds them all).
//!
//! **Architecture invariant:** this module knows no event, store or runtime
//! type. The runtime keeps one `ForecastState` per SKU (and factory), calls
//! `update` with each closed period's demand, and refits on its schedule.

pub mod csv;
pub mod events;
pub mod intervals;
pub mod models;
pub mod production;
pub mod select;
pub mod series;
mod smoothing;

use std::fmt;

use chrono::NaiveDate;

use self::models::Scratch;

pub use self::models::{ForecastState, ModelChoice, ModelKind, Parameters, UnknownModel};
pub use self::select::{Backtest, ModelFit, Score, SelectionRule};
pub use self::series::{DateOutOfRange, Frequency, InvalidValue, Series};

/// The forecast of one series.
#[derive(Clone, Debug, PartialEq)]
pub struct SeriesForecast {
    /// The series' unique id.
    pub id: String,
    /// Dates of the forecast periods, after the series' last date.
    pub dates: Vec<NaiveDate>,
    /// Point forecast per period (finite, >= 0).
    pub point: Vec<f64>,
    /// The model, its state and its backtest.
    pub fit: ModelFit,
}

/// Forecast dates that fall past chrono's calendar, for one series.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForecastError {
    /// The series.
    pub id: String,
    /// The overflowing period.
    pub error: DateOutOfRange,
}

impl fmt::Display for ForecastError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "series {:?}: {}", self.id, self.error)
    }
}

impl std::error::Error for ForecastError {}

/// Forecasts `horizon` periods of `series` with `choice` (a horizon of 0 gives
/// no periods; the backtest then uses one step).
pub fn forecast_series(
    series: &Series,
    horizon: usize,
    choice: ModelChoice,
) -> Result<SeriesForecast, ForecastError> {
    forecast_series_with_rule(series, horizon, choice, SelectionRule::default())
}

/// `forecast_series` with an explicit rule for `auto`.
pub fn forecast_series_with_rule(
    series: &Series,
    horizon: usize,
    choice: ModelChoice,
    rule: SelectionRule,
) -> Result<SeriesForecast, ForecastError> {
    forecast_with_scratch(series, horizon, choice, rule, &mut Scratch::default())
}

/// `forecast_series_with_rule` with buffers kept from earlier series.
fn forecast_with_scratch(
    series: &Series,
    horizon: usize,
    choice: ModelChoice,
    rule: SelectionRule,
    scratch: &mut Scratch,
) -> Result<SeriesForecast, ForecastError> {
    let dates = series
        .future_dates(horizon)
        .map_err(|error| ForecastError {
            id: series.id().to_owned(),
            error,
        })?;
    let fit = select::fit_valid_with(
        series.values(),
        horizon,
        choice,
        series.frequency().season_length(),
        rule,
        scratch,
    );
    Ok(SeriesForecast {
        id: series.id().to_owned(),
        dates,
        point: fit.state.forecast(horizon),
        fit,
    })
}

/// `forecast_series` for every series, in order; stops at the first series whose
/// dates overflow.
pub fn forecast_all(
    series: &[Series],
    horizon: usize,
    choice: ModelChoice,
    rule: SelectionRule,
) -> Result<Vec<SeriesForecast>, ForecastError> {
    let mut forecaster = Forecaster::new(horizon, choice, rule);
    series.iter().map(|one| forecaster.forecast(one)).collect()
}

/// Forecasts series one after another with the same settings, as
/// `forecast_all` does, keeping working buffers from one series to the next;
/// for a caller that writes each forecast out before the next (and so never
/// holds them all).
#[derive(Debug)]
pub struct Forecaster {
    horizon: usize,
    choice: ModelChoice,
    rule: SelectionRule,
    scratch: Scratch,
}

impl Forecaster {
    /// Forecasts of `horizon` periods with `choice` (and `rule` for `auto`).
    pub fn new(horizon: usize, choice: ModelChoice, rule: SelectionRule) -> Self {
        Forecaster {
            horizon,
            choice,
            rule,
            scratch: Scratch::default(),
        }
    }

    /// `forecast_series_with_rule` of `series` with these settings.
    pub fn forecast(&mut self, series: &Series) -> Result<SeriesForecast, ForecastError> {
        forecast_with_scratch(
            series,
            self.horizon,
            self.choice,
            self.rule,
            &mut self.scratch,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::intervals::prediction_intervals;
    use super::models::tests::Rng;
    use super::production::{DemandOutlook, RunRequest, recommend_run};
    use super::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).expect("test date")
    }

    #[test]
    fn forecasts_carry_dates_after_the_last_period() {
        let series = Series::new("a", date(2024, 1, 1), Frequency::Daily, vec![1.0, 0.0, 2.0])
            .expect("valid");
        let forecast = forecast_series(&series, 2, ModelChoice::Auto).expect("in range");
        assert_eq!(forecast.dates, vec![date(2024, 1, 4), date(2024, 1, 5)]);
        assert_eq!(forecast.point, vec![1.0, 1.0]);
        let none = forecast_series(&series, 0, ModelChoice::Auto).expect("in range");
        assert!(none.point.is_empty() && none.dates.is_empty());
    }

    #[test]
    fn dates_past_the_calendar_are_an_error_naming_the_series() {
        let late =
            Series::new("late", NaiveDate::MAX, Frequency::Weekly, vec![1.0]).expect("valid");
        let error =
            forecast_all(&[late], 1, ModelChoice::Auto, SelectionRule::Pool).expect_err("overflow");
        assert_eq!(error.id, "late");
        assert!(error.to_string().contains("late"));
    }

    /// Random series, every model and `auto`: forecasts, intervals and runs
    /// keep their invariants.
    #[test]
    fn properties_hold_on_random_series() {
        let mut rng = Rng::new(41);
        let mut choices = vec![ModelChoice::Auto];
        choices.extend(ModelKind::ALL.map(ModelChoice::Fixed));
        for round in 0..150 {
            let length = (rng.next_u64() % 130) as usize;
            let mut values = rng.series(length);
            if round % 5 == 0 {
                for value in values.iter_mut().step_by(4) {
                    *value *= 1e9;
                }
            }
            let frequency = if round % 2 == 0 {
                Frequency::Weekly
            } else {
                Frequency::Daily
            };
            let series = Series::new("p", date(2020, 1, 5), frequency, values).expect("valid");
            let horizon = 1 + (rng.next_u64() % 14) as usize;
            for &choice in &choices {
                let forecast = forecast_series(&series, horizon, choice).expect("in range");
                assert_eq!(forecast.point.len(), horizon);
                for &value in &forecast.point {
                    assert!(value.is_finite() && value >= 0.0, "{choice:?}: {value}");
                }
                for coverage in [0.5, 0.8, 0.98] {
                    let intervals =
                        prediction_intervals(&forecast.point, &forecast.fit.backtest, coverage)
                            .expect("valid coverage");
                    for interval in intervals {
                        assert!(interval.lower >= 0.0 && interval.lower <= interval.upper);
                    }
                }
                let outlook = DemandOutlook::from_backtest(
                    &forecast.point,
                    &forecast.fit.backtest,
                    1,
                    horizon,
                );
                let request = RunRequest {
                    service_level: 0.9,
                    stock_on_hand: rng.next_u64() % 5,
                    restockable_returns: rng.next_u64() % 3,
                };
                let run = recommend_run(&outlook, &request).expect("valid level");
                assert!(run.available >= run.target);
                assert_eq!(
                    run.available,
                    request.stock_on_hand + request.restockable_returns + run.quantity
                );
                assert!(run.expected_leftover >= 0.0 && run.expected_shortfall >= 0.0);
                if outlook.error_count() > 0 {
                    assert!(run.availability >= 0.9, "{choice:?}: {}", run.availability);
                }
                let mut state = forecast.fit.state.clone();
                state.update(3.0).expect("valid");
                assert!(
                    state
                        .forecast(horizon)
                        .iter()
                        .all(|v| v.is_finite() && *v >= 0.0)
                );
            }
        }
    }
}
