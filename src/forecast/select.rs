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
//! mean of the three best (`SelectionRule::Pool`).
//!
//! Invariants: only the values passed in are used (a caller evaluating on a
//! holdout passes the history before it, and nothing of the holdout reaches the
//! choice); the result is a deterministic function of the input; ties go to the
//! model earlier in `ModelKind::ALL`.

use super::models::{
    ForecastState, ModelChoice, ModelKind, fit_recording, fit_valid as fit_model, replay_forecasts,
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
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Backtest {
    horizon: usize,
    first_origin: usize,
    origin_count: usize,
    /// Rows one after the other: origin `first_origin + o` has
    /// `min(horizon, origin_count - o)` errors, 1, 2, ... steps ahead (rows are
    /// shorter where the history ends first).
    errors: Vec<f64>,
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
        self.errors.len()
    }

    /// The errors of each origin, in order.
    pub fn rows(&self) -> impl Iterator<Item = &[f64]> + '_ {
        let mut offset = 0;
        (0..self.origin_count).map(move |origin| {
            let length = self.horizon.min(self.origin_count - origin);
            let row = self.errors.get(offset..offset + length).unwrap_or(&[]);
            offset += length;
            row
        })
    }

    /// Mean squared error over every (origin, step) pair, `None` without any.
    pub fn mse(&self) -> Option<f64> {
        let count = self.errors.len();
        (count > 0).then(|| self.errors.iter().map(|e| e * e).sum::<f64>() / count as f64)
    }

    /// Errors `step` periods ahead (1-based), one per origin that reaches it.
    pub fn step_errors(&self, step: usize) -> Vec<f64> {
        let index = step.max(1) - 1;
        self.rows()
            .filter_map(|row| row.get(index).copied())
            .collect()
    }

    /// Every error at any step, pooled.
    pub fn all_errors(&self) -> Vec<f64> {
        self.errors.clone()
    }

    /// Errors of the total over steps `first_step..=last_step` (1-based): for each
    /// origin whose row reaches `last_step`, the sum of its errors there.
    pub fn window_errors(&self, first_step: usize, last_step: usize) -> Vec<f64> {
        let first = first_step.max(1) - 1;
        let last = last_step.max(1) - 1;
        if first > last {
            return Vec::new();
        }
        self.rows()
            .filter_map(|row| row.get(first..=last).map(|window| window.iter().sum()))
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
    let horizon = horizon.max(1);
    let origin = first_origin(values.len());
    let (state, scores) = match choice {
        ModelChoice::Fixed(kind) => (fit_model(kind, values, season_length), Vec::new()),
        ModelChoice::Auto if values.len() < MIN_HISTORY_FOR_SELECTION => (
            fit_model(SHORT_HISTORY_MODEL, values, season_length),
            Vec::new(),
        ),
        ModelChoice::Auto => choose(values, horizon, season_length, rule),
    };
    let backtest = backtest(&state, values, horizon, origin);
    ModelFit {
        state,
        backtest,
        scores,
    }
}

/// Replays `state`'s model and constants over `values` and records its errors.
pub fn backtest(
    state: &ForecastState,
    values: &[f64],
    horizon: usize,
    first_origin: usize,
) -> Backtest {
    let first_origin = first_origin.min(values.len());
    let scored = values.get(first_origin..).unwrap_or(&[]);
    let mut errors = Vec::with_capacity(scored.len() * horizon);
    if state.is_flat() {
        let forecasts = replay_forecasts(state, values, first_origin);
        for (index, forecast) in forecasts.iter().enumerate() {
            let ahead = scored.get(index..).unwrap_or(&[]).iter().take(horizon);
            errors.extend(ahead.map(|actual| actual - forecast));
        }
    } else {
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
    }
    Backtest {
        horizon,
        first_origin,
        origin_count: scored.len(),
        errors,
    }
}

/// One candidate's squared error per origin.
struct Candidate {
    state: ForecastState,
    losses: Vec<f64>,
}

/// Squared error per origin of flat forecasts.
fn flat_losses(forecasts: &[f64], scored: &[f64], horizon: usize) -> Vec<f64> {
    forecasts
        .iter()
        .enumerate()
        .map(|(index, &forecast)| {
            scored
                .get(index..)
                .unwrap_or(&[])
                .iter()
                .take(horizon)
                .map(|actual| (actual - forecast) * (actual - forecast))
                .sum()
        })
        .collect()
}

fn choose(
    values: &[f64],
    horizon: usize,
    season_length: usize,
    rule: SelectionRule,
) -> (ForecastState, Vec<Score>) {
    let origin = first_origin(values.len());
    let scored = values.get(origin..).unwrap_or(&[]);
    let pairs: usize = (0..scored.len())
        .map(|index| horizon.min(scored.len() - index))
        .sum();
    let mut candidates: Vec<Candidate> = Vec::with_capacity(ModelKind::ALL.len());
    // Forecasts of the combination's members at each origin, summed.
    let mut combined = vec![0.0; scored.len()];
    let mut members: Vec<ForecastState> = Vec::with_capacity(ModelKind::COMBINED.len());
    for kind in ModelKind::COMBINED {
        let (state, forecasts) = fit_recording(kind, values, season_length, Some(origin));
        for (total, forecast) in combined.iter_mut().zip(&forecasts) {
            *total += forecast;
        }
        let losses = flat_losses(&forecasts, scored, horizon);
        members.push(state.clone());
        candidates.push(Candidate { state, losses });
    }
    for total in &mut combined {
        *total /= ModelKind::COMBINED.len() as f64;
    }
    candidates.push(Candidate {
        state: ForecastState::combination(ModelKind::Combination, members),
        losses: flat_losses(&combined, scored, horizon),
    });
    for kind in ModelKind::ALL {
        match kind {
            _ if ModelKind::COMBINED.contains(&kind) || kind == ModelKind::Combination => {}
            // Only with a whole season before the first origin.
            ModelKind::SeasonalNaive if origin < season_length.max(1) => {}
            ModelKind::SeasonalNaive => {
                let state = fit_model(kind, values, season_length);
                let losses = backtest(&state, values, horizon, origin)
                    .rows()
                    .map(|row| row.iter().map(|error| error * error).sum())
                    .collect();
                candidates.push(Candidate { state, losses });
            }
            _ => {
                let (state, forecasts) = fit_recording(kind, values, season_length, Some(origin));
                let losses = flat_losses(&forecasts, scored, horizon);
                candidates.push(Candidate { state, losses });
            }
        }
    }
    // Back in `ModelKind::ALL` order, which breaks ties.
    candidates.sort_by_key(|candidate| {
        ModelKind::ALL
            .iter()
            .position(|&kind| kind == candidate.state.kind())
    });

    let denominator = pairs.max(1) as f64;
    let scores: Vec<Score> = candidates
        .iter()
        .map(|candidate| Score {
            kind: candidate.state.kind(),
            mse: candidate.losses.iter().sum::<f64>() / denominator,
        })
        .collect();
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
            let mut pool: Vec<Option<ForecastState>> = candidates
                .into_iter()
                .map(|candidate| Some(candidate.state))
                .collect();
            let members: Vec<ForecastState> = ranking
                .iter()
                .take(POOL_SIZE)
                .filter_map(|&index| pool.get_mut(index).and_then(Option::take))
                .collect();
            return (ForecastState::combination(ModelKind::Pool, members), scores);
        }
        SelectionRule::LeastError => best,
        SelectionRule::OneStandardError => {
            let best_losses = candidates
                .get(best)
                .map(|candidate| candidate.losses.as_slice())
                .unwrap_or(&[]);
            candidates
                .iter()
                .position(|candidate| {
                    within_one_standard_error(&candidate.losses, best_losses, denominator, horizon)
                })
                .unwrap_or(best)
        }
    };
    let state = candidates.swap_remove(chosen.min(candidates.len().saturating_sub(1)));
    (state.state, scores)
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
