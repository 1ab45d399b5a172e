//! Per-series model choice by a rolling-origin backtest on the series' own
//! history, and the backtest errors that empirical intervals and production-run
//! recommendations are built from.
//!
//! The backtest: fit the model on the whole history given, then replay it from
//! no history with those constants; from the first origin (half the history) on,
//! at every period `t`, forecast the next `horizon` periods from what was seen
//! before `t`, and record `actual - forecast` for each step that lies inside the
//! history. This is a rolling origin with fixed parameters: the states are
//! updated one period at a time, exactly as `ForecastState::update` does live.
//! (Constants fitted on the whole history see the scored periods; re-fitting at
//! every origin would cost a fit per origin. Nothing outside the history given
//! is ever seen.)
//!
//! `auto` scores every candidate by its mean squared error over all (origin,
//! step) pairs (the loss RMSSE scales, per series) and by default forecasts the
//! mean of the three best (`SelectionRule::Pool`). A flat model's forecast for
//! every step from origin `t` is its state at `t`, so one replay per candidate
//! (recorded while fitting, `models::fit_candidates`) gives all its errors, and
//! the pool's are those of its members' recorded forecasts averaged.
//!
//! Invariants: only the values passed in are used (a caller evaluating on a
//! holdout passes the history before it, and nothing of the holdout reaches the
//! choice); the result is a deterministic function of the input; ties go to the
//! model earlier in `ModelKind::ALL`.

use std::borrow::Cow;

use super::models::{
    ForecastState, ModelChoice, ModelKind, Scratch, fit_candidates, fit_recording, replay_forecasts,
};
use super::series::{InvalidValue, validate_values};

/// Shortest history on which `auto` compares models: 8 periods give 4 origins.
/// Shorter series use `SHORT_HISTORY_MODEL`.
pub const MIN_HISTORY_FOR_SELECTION: usize = 8;

/// `auto`'s model for series shorter than `MIN_HISTORY_FOR_SELECTION`: with a
/// few points there is nothing to compare on, and the mean of what there is has
/// the least variance of the level estimates (it is the value for one point and
/// zero for all zeros).
pub const SHORT_HISTORY_MODEL: ModelKind = ModelKind::Mean;

/// Number of models `SelectionRule::Pool` averages.
pub const POOL_SIZE: usize = 3;

/// How `auto` turns backtest errors into a choice.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SelectionRule {
    /// The equal-weight mean of the `POOL_SIZE` candidates with the least mean
    /// squared backtest error ("forecast pooling", Kourentzes, Barrow and
    /// Petropoulos 2019): picking one model on a short, noisy backtest often
    /// picks noise, averaging the few best keeps most of the gain of selecting
    /// and little of the risk.
    #[default]
    Pool,
    /// The model with the least mean squared backtest error.
    LeastError,
    /// The model earliest in `ModelKind::ALL` (the combination first) whose mean
    /// squared error is within one standard error of the least (the "one
    /// standard error" rule, Breiman et al. 1984). The standard error is that of
    /// the difference in mean squared error between the two models, with the
    /// overlap of consecutive windows accounted for (Newey-West, `horizon - 1`
    /// lags, as in the Diebold-Mariano test).
    OneStandardError,
}

impl SelectionRule {
    /// `pool`, `least-error` or `one-se`.
    pub fn name(self) -> &'static str {
        match self {
            SelectionRule::Pool => "pool",
            SelectionRule::LeastError => "least-error",
            SelectionRule::OneStandardError => "one-se",
        }
    }

    /// The rule with this `name()`.
    pub fn from_name(name: &str) -> Option<Self> {
        [
            SelectionRule::Pool,
            SelectionRule::LeastError,
            SelectionRule::OneStandardError,
        ]
        .into_iter()
        .find(|rule| rule.name() == name)
    }
}

/// Mean squared backtest error of one candidate.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Score {
    /// The candidate.
    pub kind: ModelKind,
    /// Mean over every (origin, step) pair of the squared error.
    pub mse: f64,
}

/// Rolling-origin errors (`actual - forecast`) of one model on its history.
///
/// Origin `first_origin + o` has `min(horizon, origin_count - o)` errors, 1, 2,
/// ... steps ahead (rows are shorter where the history ends first). A flat
/// model's errors are kept as what they are made of, the actual values and one
/// forecast per origin (a quarter of the memory of the errors themselves at 8
/// steps ahead); other models' errors are kept one by one.
#[derive(Clone, Debug)]
pub struct Backtest {
    horizon: usize,
    first_origin: usize,
    origin_count: usize,
    errors: Errors,
}

#[derive(Clone, Debug)]
enum Errors {
    /// Origin `o`, step `s` (0-based): `actuals[o + s] - forecasts[o]`.
    Flat {
        actuals: Vec<f64>,
        forecasts: Vec<f64>,
    },
    /// The rows one after the other.
    Rows(Vec<f64>),
}

/// The errors of one origin, in step order.
enum RowErrors<'a> {
    Flat {
        actuals: std::slice::Iter<'a, f64>,
        forecast: f64,
    },
    Rows(std::slice::Iter<'a, f64>),
}

impl Iterator for RowErrors<'_> {
    type Item = f64;

    fn next(&mut self) -> Option<f64> {
        match self {
            RowErrors::Flat { actuals, forecast } => {
                actuals.next().map(|actual| actual - *forecast)
            }
            RowErrors::Rows(errors) => errors.next().copied(),
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let length = match self {
            RowErrors::Flat { actuals, .. } => actuals.len(),
            RowErrors::Rows(errors) => errors.len(),
        };
        (length, Some(length))
    }
}

impl ExactSizeIterator for RowErrors<'_> {}

impl Default for Backtest {
    fn default() -> Self {
        Backtest {
            horizon: 0,
            first_origin: 0,
            origin_count: 0,
            errors: Errors::Rows(Vec::new()),
        }
    }
}

/// Equal when the errors are, however they are kept.
impl PartialEq for Backtest {
    fn eq(&self, other: &Self) -> bool {
        self.horizon == other.horizon
            && self.first_origin == other.first_origin
            && self.origin_count == other.origin_count
            && self
                .row_errors()
                .map(Iterator::collect::<Vec<_>>)
                .eq(other.row_errors().map(Iterator::collect::<Vec<_>>))
    }
}

impl Backtest {
    /// Steps ahead forecast from each origin.
    pub fn horizon(&self) -> usize {
        self.horizon
    }

    /// Index of the first origin (the first period forecast).
    pub fn first_origin(&self) -> usize {
        self.first_origin
    }

    /// Number of origins.
    pub fn origin_count(&self) -> usize {
        self.origin_count
    }

    /// Number of (origin, step) errors.
    pub fn error_count(&self) -> usize {
        match &self.errors {
            Errors::Flat { .. } => error_count(self.origin_count, self.horizon),
            Errors::Rows(errors) => errors.len(),
        }
    }

    /// The errors of each origin, in order.
    pub fn rows(&self) -> impl Iterator<Item = Cow<'_, [f64]>> + '_ {
        self.row_errors().map(|row| match row {
            RowErrors::Rows(errors) => Cow::Borrowed(errors.as_slice()),
            flat => Cow::Owned(flat.collect()),
        })
    }

    /// Each origin's errors, without copying them.
    fn row_errors(&self) -> impl Iterator<Item = RowErrors<'_>> + '_ {
        let mut offset = 0;
        (0..self.origin_count).map(move |origin| {
            let length = self.horizon.min(self.origin_count - origin);
            match &self.errors {
                Errors::Flat { actuals, forecasts } => RowErrors::Flat {
                    actuals: actuals.get(origin..origin + length).unwrap_or(&[]).iter(),
                    forecast: forecasts.get(origin).copied().unwrap_or(0.0),
                },
                Errors::Rows(errors) => {
                    let row = errors.get(offset..offset + length).unwrap_or(&[]);
                    offset += length;
                    RowErrors::Rows(row.iter())
                }
            }
        })
    }

    /// Mean squared error over every (origin, step) pair, `None` without any.
    pub fn mse(&self) -> Option<f64> {
        let count = self.error_count();
        (count > 0).then(|| {
            self.row_errors()
                .flatten()
                .map(|error| error * error)
                .sum::<f64>()
                / count as f64
        })
    }

    /// Errors `step` periods ahead (1-based), one per origin that reaches it.
    pub fn step_errors(&self, step: usize) -> Vec<f64> {
        let index = step.max(1) - 1;
        self.row_errors()
            .filter_map(|mut row| row.nth(index))
            .collect()
    }

    /// Every error at any step, pooled.
    pub fn all_errors(&self) -> Vec<f64> {
        self.row_errors().flatten().collect()
    }

    /// Errors of the total over steps `first_step..=last_step` (1-based): for each
    /// origin whose row reaches `last_step`, the sum of its errors there.
    pub fn window_errors(&self, first_step: usize, last_step: usize) -> Vec<f64> {
        let first = first_step.max(1) - 1;
        let last = last_step.max(1) - 1;
        if first > last {
            return Vec::new();
        }
        self.row_errors()
            .filter(|row| row.len() > last)
            .map(|row| row.skip(first).take(last - first + 1).sum())
            .collect()
    }
}

/// A fitted model with its backtest, and for `auto` the scores it chose on.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelFit {
    /// The fitted model, ready to forecast and to take new periods.
    pub state: ForecastState,
    /// Its rolling-origin errors on the history.
    pub backtest: Backtest,
    /// Every candidate's mean squared error, in `ModelKind::ALL` order (empty for
    /// a fixed model or a history too short to compare on).
    pub scores: Vec<Score>,
}

/// The first origin for a history of `length` periods: half of it (at least 1),
/// so every model has seen as much as it is scored on.
pub fn first_origin(length: usize) -> usize {
    (length / 2).max(1)
}

/// Fits the chosen model to `values` (finite, >= 0) and backtests it with
/// `horizon` steps; `Auto` compares the candidates with `SelectionRule::default()`
/// (a pool of the best three).
/// `season_length` is `Frequency::season_length` of the series.
pub fn fit(
    values: &[f64],
    horizon: usize,
    choice: ModelChoice,
    season_length: usize,
) -> Result<ModelFit, InvalidValue> {
    fit_with_rule(
        values,
        horizon,
        choice,
        season_length,
        SelectionRule::default(),
    )
}

/// `fit` with an explicit selection rule for `Auto`.
pub fn fit_with_rule(
    values: &[f64],
    horizon: usize,
    choice: ModelChoice,
    season_length: usize,
    rule: SelectionRule,
) -> Result<ModelFit, InvalidValue> {
    validate_values(values)?;
    Ok(fit_valid(values, horizon, choice, season_length, rule))
}

/// `fit_with_rule` for values already known to be valid (a `Series`).
pub(crate) fn fit_valid(
    values: &[f64],
    horizon: usize,
    choice: ModelChoice,
    season_length: usize,
    rule: SelectionRule,
) -> ModelFit {
    fit_valid_with(
        values,
        horizon,
        choice,
        season_length,
        rule,
        &mut Scratch::default(),
    )
}

/// `fit_valid` with buffers kept from fitting earlier series.
pub(crate) fn fit_valid_with(
    values: &[f64],
    horizon: usize,
    choice: ModelChoice,
    season_length: usize,
    rule: SelectionRule,
    scratch: &mut Scratch,
) -> ModelFit {
    let horizon = horizon.max(1);
    let origin = first_origin(values.len());
    let fixed = |kind: ModelKind, scratch: &mut Scratch| {
        let (state, forecasts) = fit_recording(kind, values, season_length, Some(origin), scratch);
        let backtest = if state.is_flat() {
            flat_backtest(&forecasts, values, horizon, origin)
        } else {
            backtest(&state, values, horizon, origin)
        };
        scratch.give(forecasts);
        ModelFit {
            state,
            backtest,
            scores: Vec::new(),
        }
    };
    match choice {
        ModelChoice::Fixed(kind) => fixed(kind, scratch),
        ModelChoice::Auto if values.len() < MIN_HISTORY_FOR_SELECTION => {
            fixed(SHORT_HISTORY_MODEL, scratch)
        }
        ModelChoice::Auto => choose(values, horizon, season_length, rule, scratch),
    }
}

/// Replays `state`'s model and constants over `values` and records its errors.
pub fn backtest(
    state: &ForecastState,
    values: &[f64],
    horizon: usize,
    first_origin: usize,
) -> Backtest {
    if state.is_flat() {
        let forecasts = replay_forecasts(state, values, first_origin.min(values.len()));
        return flat_backtest(&forecasts, values, horizon, first_origin);
    }
    stepped_backtest(state, values, horizon, first_origin)
}

/// `backtest` by replaying one period at a time and forecasting every step from
/// each origin (what a model whose forecast changes with the step needs), the
/// errors kept one by one.
fn stepped_backtest(
    state: &ForecastState,
    values: &[f64],
    horizon: usize,
    first_origin: usize,
) -> Backtest {
    let first_origin = first_origin.min(values.len());
    let scored = values.get(first_origin..).unwrap_or(&[]);
    let mut errors = Vec::with_capacity(error_count(scored.len(), horizon));
    let mut replay = state.fresh();
    for &y in values.get(..first_origin).unwrap_or(&[]) {
        replay.observe(y);
    }
    for (index, &y) in scored.iter().enumerate() {
        let ahead = scored.get(index..).unwrap_or(&[]).iter().take(horizon);
        errors.extend(
            ahead
                .enumerate()
                .map(|(step, actual)| actual - replay.forecast_step(step + 1)),
        );
        replay.observe(y);
    }
    Backtest {
        horizon,
        first_origin,
        origin_count: scored.len(),
        errors: Errors::Rows(errors),
    }
}

/// Number of (origin, step) pairs of `origins` origins, `horizon` steps each
/// where the history lasts.
fn error_count(origins: usize, horizon: usize) -> usize {
    // Counting origins from the end: the k-th last has min(k, horizon) steps.
    let short = horizon.min(origins);
    short * (short + 1) / 2 + (origins - short) * horizon
}

/// The backtest of a flat model from its one-step forecast at each origin
/// (`forecasts[i]` made before period `first_origin + i`), which is also its
/// forecast for every later step from that origin.
fn flat_backtest(
    forecasts: &[f64],
    values: &[f64],
    horizon: usize,
    first_origin: usize,
) -> Backtest {
    let first_origin = first_origin.min(values.len());
    let scored = values.get(first_origin..).unwrap_or(&[]);
    // One forecast per origin (a replay records exactly that many).
    let mut forecasts = forecasts.get(..scored.len()).unwrap_or(forecasts).to_vec();
    forecasts.resize(scored.len(), 0.0);
    Backtest {
        horizon,
        first_origin,
        origin_count: scored.len(),
        errors: Errors::Flat {
            actuals: scored.to_vec(),
            forecasts,
        },
    }
}

/// Origins whose losses `flat_losses` sums side by side.
const ORIGIN_BLOCK: usize = 8;

/// Squared error per origin of flat forecasts (`forecasts[i]` for origin `i`
/// of `scored`), into `losses`. Each origin's sum adds its steps in order; the
/// sums of `ORIGIN_BLOCK` origins are kept side by side in registers, one step
/// at a time, so the processor computes them together.
#[inline(never)] // on its own, its sums stay in registers
fn flat_losses(forecasts: &[f64], scored: &[f64], horizon: usize, losses: &mut Vec<f64>) {
    losses.clear();
    let origins = forecasts.len().min(scored.len());
    // Origins before `full` have all `horizon` steps inside the history.
    let full = scored
        .len()
        .saturating_sub(horizon.saturating_sub(1))
        .min(origins);
    let mut start = 0;
    while start + ORIGIN_BLOCK <= full {
        let Some(block) = forecasts
            .get(start..start + ORIGIN_BLOCK)
            .and_then(|block| <&[f64; ORIGIN_BLOCK]>::try_from(block).ok())
        else {
            break;
        };
        let mut sums = [0.0; ORIGIN_BLOCK];
        for step in 0..horizon {
            let from = start + step;
            let Some(actuals) = scored
                .get(from..from + ORIGIN_BLOCK)
                .and_then(|actuals| <&[f64; ORIGIN_BLOCK]>::try_from(actuals).ok())
            else {
                break;
            };
            for lane in 0..ORIGIN_BLOCK {
                let error = actuals[lane] - block[lane];
                sums[lane] += error * error;
            }
        }
        losses.extend_from_slice(&sums);
        start += ORIGIN_BLOCK;
    }
    for (origin, forecast) in forecasts.iter().enumerate().take(origins).skip(start) {
        let ahead = scored.get(origin..).unwrap_or(&[]).iter().take(horizon);
        losses.push(ahead.fold(0.0, |sum, actual| {
            let error = actual - forecast;
            sum + error * error
        }));
    }
}

fn choose(
    values: &[f64],
    horizon: usize,
    season_length: usize,
    rule: SelectionRule,
    scratch: &mut Scratch,
) -> ModelFit {
    let origin = first_origin(values.len());
    let scored = values.get(origin..).unwrap_or(&[]);
    let pairs = error_count(scored.len(), horizon);
    // Only with a whole season before the first origin.
    let with_seasonal_naive = origin >= season_length.max(1);
    let mut candidates =
        fit_candidates(values, season_length, origin, with_seasonal_naive, scratch);
    let denominator = pairs.max(1) as f64;
    let mut losses: Vec<Vec<f64>> = Vec::new();
    let mut spare = scratch.take();
    let mut scores: Vec<Score> = Vec::with_capacity(candidates.len());
    for candidate in &candidates {
        let kind = candidate.state.kind();
        let keep = rule == SelectionRule::OneStandardError;
        let mut own = Vec::new();
        let target = if keep { &mut own } else { &mut spare };
        if candidate.state.is_flat() {
            flat_losses(&candidate.forecasts, scored, horizon, target);
        } else {
            target.clear();
            target.extend(
                backtest(&candidate.state, values, horizon, origin)
                    .rows()
                    .map(|row| row.iter().map(|error| error * error).sum::<f64>()),
            );
        }
        scores.push(Score {
            kind,
            mse: target.iter().sum::<f64>() / denominator,
        });
        if keep {
            losses.push(own);
        }
    }
    scratch.give(spare);
    // Candidate indices from least to most error; the sort is stable, so ties
    // keep `ModelKind::ALL` order.
    let mut ranking: Vec<usize> = (0..scores.len()).collect();
    ranking.sort_by(|&a, &b| {
        let mse = |index: usize| scores.get(index).map_or(f64::INFINITY, |score| score.mse);
        mse(a).total_cmp(&mse(b))
    });
    let best = ranking.first().copied().unwrap_or(0);
    let chosen = match rule {
        SelectionRule::Pool => {
            let members: Vec<usize> = ranking.iter().take(POOL_SIZE).copied().collect();
            // The pool's forecast at each origin: its members' summed in pool
            // order, over their count, as `ForecastState::forecast_step` does.
            let mut pooled = scratch.take();
            pooled.resize(scored.len(), 0.0);
            for &index in &members {
                if let Some(member) = candidates.get(index) {
                    for (total, forecast) in pooled.iter_mut().zip(&member.forecasts) {
                        *total += forecast;
                    }
                }
            }
            for total in &mut pooled {
                *total /= members.len().max(1) as f64;
            }
            let mut slots: Vec<Option<ForecastState>> = candidates
                .into_iter()
                .map(|candidate| {
                    scratch.give(candidate.forecasts);
                    Some(candidate.state)
                })
                .collect();
            let states: Vec<ForecastState> = members
                .iter()
                .filter_map(|&index| slots.get_mut(index).and_then(Option::take))
                .collect();
            let state = ForecastState::combination(ModelKind::Pool, states);
            let backtest = if state.is_flat() {
                flat_backtest(&pooled, values, horizon, origin)
            } else {
                backtest(&state, values, horizon, origin)
            };
            scratch.give(pooled);
            return ModelFit {
                state,
                backtest,
                scores,
            };
        }
        SelectionRule::LeastError => best,
        SelectionRule::OneStandardError => {
            let best_losses = losses.get(best).map(Vec::as_slice).unwrap_or(&[]);
            losses
                .iter()
                .position(|candidate| {
                    within_one_standard_error(candidate, best_losses, denominator, horizon)
                })
                .unwrap_or(best)
        }
    };
    let chosen = candidates.swap_remove(chosen.min(candidates.len().saturating_sub(1)));
    for candidate in candidates {
        scratch.give(candidate.forecasts);
    }
    let backtest = if chosen.state.is_flat() {
        flat_backtest(&chosen.forecasts, values, horizon, origin)
    } else {
        backtest(&chosen.state, values, horizon, origin)
    };
    scratch.give(chosen.forecasts);
    ModelFit {
        state: chosen.state,
        backtest,
        scores,
    }
}

/// True when the mean squared error of `losses` exceeds that of `best` by no
/// more than one standard error of that difference.
///
/// Windows from consecutive origins overlap by `horizon - 1` periods, so their
/// loss differences are correlated; the standard error is the Newey-West
/// (Bartlett-weighted) long-run variance with `horizon - 1` lags, as the
/// Diebold-Mariano test for h-step forecasts uses, not the i.i.d. formula, which
/// would understate it about `sqrt(horizon)`-fold.
fn within_one_standard_error(losses: &[f64], best: &[f64], pairs: f64, horizon: usize) -> bool {
    let origins = losses.len().min(best.len());
    if origins == 0 {
        return true;
    }
    // Per-origin differences, scaled so that their sum is the MSE difference.
    let differences: Vec<f64> = losses
        .iter()
        .zip(best)
        .map(|(loss, best)| (loss - best) / pairs)
        .collect();
    let excess: f64 = differences.iter().sum();
    if excess <= 0.0 {
        return true;
    }
    let count = origins as f64;
    let mean = excess / count;
    let autocovariance = |lag: usize| {
        differences
            .iter()
            .zip(differences.iter().skip(lag))
            .map(|(a, b)| (a - mean) * (b - mean))
            .sum::<f64>()
            / count
    };
    let lags = horizon.saturating_sub(1).min(origins - 1);
    let mut long_run_variance = autocovariance(0);
    for lag in 1..=lags {
        let weight = 1.0 - lag as f64 / (lags + 1) as f64;
        long_run_variance += 2.0 * weight * autocovariance(lag);
    }
    // Standard error of the sum of `origins` differences.
    let standard_error = (count * long_run_variance.max(0.0)).sqrt();
    excess <= standard_error
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::forecast::models::fit_valid as fit_model;
    use crate::forecast::models::tests::Rng;

    fn auto(values: &[f64], rule: SelectionRule) -> ModelFit {
        fit_with_rule(values, 8, ModelChoice::Auto, 52, rule).expect("valid values")
    }

    #[test]
    fn backtest_by_hand() {
        // Mean model on 2, 4, 0, 6 with horizon 2; first origin 2.
        let state = fit_model(ModelKind::Mean, &[2.0, 4.0, 0.0, 6.0], 52);
        let backtest = backtest(&state, &[2.0, 4.0, 0.0, 6.0], 2, 2);
        // origin 2: mean 3, errors 0-3, 6-3; origin 3: mean 2, error 6-2.
        assert_eq!(
            backtest.rows().collect::<Vec<_>>(),
            vec![&[-3.0, 3.0][..], &[4.0][..]]
        );
        assert_eq!(backtest.origin_count(), 2);
        assert_eq!(backtest.error_count(), 3);
        assert_eq!(backtest.mse(), Some(34.0 / 3.0));
        assert_eq!(backtest.step_errors(1), vec![-3.0, 4.0]);
        assert_eq!(backtest.step_errors(2), vec![3.0]);
        assert_eq!(backtest.window_errors(1, 2), vec![0.0]);
        assert_eq!(backtest.window_errors(2, 2), vec![3.0]);
        assert!(backtest.window_errors(2, 1).is_empty());
    }

    /// A flat model's backtest, kept as forecasts and actuals, answers every
    /// question with the very bits of its errors replayed and kept one by one.
    #[test]
    fn flat_backtests_agree_with_stepped_ones() {
        let mut rng = Rng::new(37);
        for round in 0..40 {
            let length = (rng.next_u64() % 50) as usize;
            let values = rng.series(length);
            let horizon = 1 + (rng.next_u64() % 9) as usize;
            let origin = first_origin(values.len());
            let kind = ModelKind::ALL[round % ModelKind::ALL.len()];
            let state = fit_model(kind, &values, 7);
            if !state.is_flat() {
                continue;
            }
            let flat = backtest(&state, &values, horizon, origin);
            let stepped = stepped_backtest(&state, &values, horizon, origin);
            assert!(matches!(flat.errors, Errors::Flat { .. }));
            assert_eq!(flat, stepped, "{kind}");
            let bits = |errors: Vec<f64>| errors.iter().map(|e| e.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(flat.all_errors()), bits(stepped.all_errors()));
            assert_eq!(flat.error_count(), stepped.error_count());
            assert_eq!(
                flat.mse().map(f64::to_bits),
                stepped.mse().map(f64::to_bits)
            );
            for step in 0..=horizon + 1 {
                assert_eq!(
                    bits(flat.step_errors(step)),
                    bits(stepped.step_errors(step))
                );
                for last in step..=horizon + 1 {
                    assert_eq!(
                        bits(flat.window_errors(step, last)),
                        bits(stepped.window_errors(step, last))
                    );
                }
            }
            assert!(flat.rows().eq(stepped.rows()));
        }
    }

    #[test]
    fn short_empty_and_all_zero_histories() {
        for values in [&[][..], &[4.0], &[1.0, 0.0, 2.0]] {
            let fit = auto(values, SelectionRule::default());
            assert_eq!(fit.state.kind(), SHORT_HISTORY_MODEL);
            assert!(fit.scores.is_empty());
        }
        assert_eq!(
            auto(&[4.0], SelectionRule::Pool).state.forecast(3),
            vec![4.0; 3]
        );
        assert_eq!(
            auto(&[], SelectionRule::Pool).state.forecast(2),
            vec![0.0; 2]
        );
        for rule in [
            SelectionRule::Pool,
            SelectionRule::LeastError,
            SelectionRule::OneStandardError,
        ] {
            let zeros = auto(&[0.0; 40], rule);
            assert_eq!(zeros.state.forecast(4), vec![0.0; 4], "{rule:?}");
            assert_eq!(zeros.backtest.mse(), Some(0.0));
        }
    }

    #[test]
    fn rules_choose_from_the_scores() {
        let mut rng = Rng::new(23);
        for _ in 0..30 {
            let values = rng.series(60);
            let pool = auto(&values, SelectionRule::Pool);
            let mut ranked = pool.scores.clone();
            ranked.sort_by(|a, b| a.mse.total_cmp(&b.mse));
            let best: Vec<ModelKind> = ranked.iter().take(POOL_SIZE).map(|s| s.kind).collect();
            assert_eq!(pool.state.kind(), ModelKind::Pool);
            assert_eq!(pool.state.members(), best);
            // 52-week seasonal naive needs 52 periods before the first origin.
            assert_eq!(pool.scores.len(), ModelKind::ALL.len() - 1);

            let least = auto(&values, SelectionRule::LeastError);
            assert_eq!(least.state.kind(), ranked[0].kind);
            let mse = least.backtest.mse().unwrap_or(f64::NAN);
            assert!((mse - ranked[0].mse).abs() <= 1e-12 * mse.max(1.0));

            let one_se = auto(&values, SelectionRule::OneStandardError);
            let chosen = one_se.scores.iter().find(|s| s.kind == one_se.state.kind());
            assert!(chosen.is_some_and(|s| s.mse >= ranked[0].mse));
        }
    }

    #[test]
    fn candidate_scores_are_their_own_backtests() {
        let mut rng = Rng::new(29);
        let values = rng.series(70);
        let fit = auto(&values, SelectionRule::Pool);
        for score in &fit.scores {
            let fixed = fit_with_rule(
                &values,
                8,
                ModelChoice::Fixed(score.kind),
                52,
                SelectionRule::Pool,
            )
            .expect("valid");
            let mse = fixed.backtest.mse().unwrap_or(f64::NAN);
            assert!(
                (mse - score.mse).abs() <= 1e-12 * mse.max(1.0),
                "{}: {mse} vs {}",
                score.kind,
                score.mse
            );
        }
    }

    #[test]
    fn one_standard_error_rule_needs_clear_evidence() {
        // Same losses: within.
        assert!(within_one_standard_error(
            &[1.0, 2.0, 3.0],
            &[1.0, 2.0, 3.0],
            3.0,
            2
        ));
        // A steady excess: the difference has no spread, so it is clear.
        assert!(!within_one_standard_error(
            &[2.0, 3.0, 4.0],
            &[1.0, 2.0, 3.0],
            3.0,
            2
        ));
        // A small excess among large swings: within.
        assert!(within_one_standard_error(
            &[10.0, 0.0, 10.2, 0.0],
            &[0.0, 10.0, 0.0, 10.0],
            4.0,
            1
        ));
        // Demand stops halfway: the combination's slow members lag, SES and the
        // zero forecast do not, and the rule leaves the combination.
        let mut values = vec![5.0; 30];
        values.extend([0.0; 30]);
        let fit = auto(&values, SelectionRule::OneStandardError);
        assert_ne!(fit.state.kind(), ModelKind::Combination);
        assert!(fit.state.forecast_step(1) < 0.5, "{:?}", fit.state.kind());
    }

    #[test]
    fn seasonal_naive_competes_once_a_season_precedes_the_first_origin() {
        let season = 7;
        let values: Vec<f64> = (0..70)
            .map(|t| if t % season == 5 { 9.0 } else { 0.0 })
            .collect();
        let fit = fit_with_rule(
            &values,
            7,
            ModelChoice::Auto,
            season,
            SelectionRule::LeastError,
        )
        .expect("valid");
        assert_eq!(fit.state.kind(), ModelKind::SeasonalNaive);
        assert_eq!(fit.backtest.mse(), Some(0.0));
        assert_eq!(
            fit.state.forecast(7),
            vec![0.0, 0.0, 0.0, 0.0, 0.0, 9.0, 0.0]
        );
    }

    #[test]
    fn selection_is_deterministic() {
        let mut rng = Rng::new(31);
        let values = rng.series(90);
        assert_eq!(
            auto(&values, SelectionRule::Pool),
            auto(&values, SelectionRule::Pool)
        );
    }
}
