//! Forecasting models for intermittent demand and their incremental state: SES,
//! Croston (classic and optimised), SBA, TSB, ADIDA, IMAPA, seasonal naive,
//! the historical mean, zero, an equal-weight combination, and the pool that
//! `auto` builds.
//!
//! Invariants: `ForecastState::fit` is a pure function of the values; after a fit,
//! `update(y)` folds in one more period in O(1) (O(k) for the k aggregation
//! levels of IMAPA or the k members of a combination or pool, all fixed at fit
//! time) with the fitted constants, so a full refit is only needed to
//! re-estimate them. For finite values >= 0 every forecast is finite and >= 0.
//! Where statsforecast has the same model (CrostonClassic, CrostonOptimized,
//! CrostonSBA, TSB with fixed constants, ADIDA, IMAPA,
//! SimpleExponentialSmoothingOptimized), `fit` reproduces its point forecast:
//! bit for bit with fixed constants, to about 1e-8 with optimised ones (where
//! the in-sample error has one minimum; where it has several, or none, as
//! when it is flat, the two searches may settle on different constants).

use std::fmt;
use std::str::FromStr;

use super::series::{InvalidValue, is_valid_demand, validate_values};
use super::smoothing::{Smoother, optimal_alpha};

/// Which model forecasts a series.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ModelKind {
    /// Simple exponential smoothing, alpha in [0.01, 0.99] by least in-sample
    /// one-step squared error (statsforecast's SimpleExponentialSmoothingOptimized).
    Ses,
    /// Croston: SES (alpha 0.1) of the non-zero demand sizes divided by SES
    /// (alpha 0.1) of the intervals between them.
    CrostonClassic,
    /// Croston with each alpha in [0.1, 0.3] by least in-sample squared error.
    CrostonOptimized,
    /// Syntetos-Boylan approximation: classic Croston times 1 - 0.1/2 = 0.95.
    Sba,
    /// Teunter-Syntetos-Babai: SES of the demand probability (updated every
    /// period) times SES of the sizes; each alpha in [0.01, 0.3] by least
    /// in-sample one-step squared error of its own smoother.
    Tsb,
    /// Aggregate-disaggregate: sums over buckets of the mean inter-demand
    /// interval, optimised SES on the sums, divided by the bucket width.
    Adida,
    /// ADIDA at every width from 1 to the mean interval, averaged.
    Imapa,
    /// The value one season earlier (7 days or 52 weeks); with less than one
    /// season of history, the last value.
    SeasonalNaive,
    /// Mean of all history.
    Mean,
    /// Always zero.
    Zero,
    /// Equal-weight mean of SES, SBA, TSB and IMAPA.
    Combination,
    /// Equal-weight mean of the `select::POOL_SIZE` candidates with the least
    /// backtest error on the series: what `auto` gives. Not a candidate itself,
    /// and not available as a fixed model.
    Pool,
}

impl ModelKind {
    /// Every model that can be fitted on its own (all but `Pool`), in the order
    /// `auto` prefers them when their backtest errors tie.
    pub const ALL: [ModelKind; 11] = [
        ModelKind::Combination,
        ModelKind::Sba,
        ModelKind::Tsb,
        ModelKind::Ses,
        ModelKind::Imapa,
        ModelKind::Adida,
        ModelKind::CrostonOptimized,
        ModelKind::CrostonClassic,
        ModelKind::Mean,
        ModelKind::SeasonalNaive,
        ModelKind::Zero,
    ];

    /// The models averaged by `Combination`.
    pub const COMBINED: [ModelKind; 4] = [
        ModelKind::Ses,
        ModelKind::Sba,
        ModelKind::Tsb,
        ModelKind::Imapa,
    ];

    /// Name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Ses => "ses",
            ModelKind::CrostonClassic => "croston",
            ModelKind::CrostonOptimized => "croston_optimized",
            ModelKind::Sba => "sba",
            ModelKind::Tsb => "tsb",
            ModelKind::Adida => "adida",
            ModelKind::Imapa => "imapa",
            ModelKind::SeasonalNaive => "seasonal_naive",
            ModelKind::Mean => "mean",
            ModelKind::Zero => "zero",
            ModelKind::Combination => "combination",
            ModelKind::Pool => "pool",
        }
    }

    /// The model in `ALL` with this `name()`.
    pub fn from_name(name: &str) -> Option<Self> {
        ModelKind::ALL.into_iter().find(|kind| kind.name() == name)
    }

    /// True when the model forecasts the same value for every step ahead (a
    /// pool is flat unless it holds the seasonal naive model; see
    /// `ForecastState::is_flat`).
    pub fn is_flat(self) -> bool {
        self != ModelKind::SeasonalNaive
    }
}

impl fmt::Display for ModelKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A fixed model, or `Auto`: the model with the least rolling-origin error on
/// the series' own history (see `select`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ModelChoice {
    /// Chosen per series by `select::fit`.
    Auto,
    /// This model for every series.
    Fixed(ModelKind),
}

impl ModelChoice {
    /// `auto` or the model's name.
    pub fn name(self) -> &'static str {
        match self {
            ModelChoice::Auto => "auto",
            ModelChoice::Fixed(kind) => kind.name(),
        }
    }
}

/// A model name that is neither `auto` nor a `ModelKind` name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnknownModel {
    /// What was given.
    pub name: String,
}

impl fmt::Display for UnknownModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown model {:?}; expected auto", self.name)?;
        for kind in ModelKind::ALL {
            write!(f, ", {}", kind.name())?;
        }
        Ok(())
    }
}

impl std::error::Error for UnknownModel {}

impl FromStr for ModelChoice {
    type Err = UnknownModel;

    fn from_str(name: &str) -> Result<Self, Self::Err> {
        if name == "auto" {
            return Ok(ModelChoice::Auto);
        }
        ModelKind::from_name(name)
            .map(ModelChoice::Fixed)
            .ok_or_else(|| UnknownModel {
                name: name.to_owned(),
            })
    }
}

/// Smoothing constant of classic Croston and SBA (statsforecast's choice).
const CROSTON_ALPHA: f64 = 0.1;
/// SBA's debiasing factor, 1 - alpha / 2.
const SBA_FACTOR: f64 = 1.0 - CROSTON_ALPHA / 2.0;
/// Bounds of the optimised Croston, ADIDA and IMAPA constants (statsforecast).
const CROSTON_BOUNDS: (f64, f64) = (0.1, 0.3);
/// Bounds of the SES constant (statsforecast's SimpleExponentialSmoothingOptimized).
const SES_BOUNDS: (f64, f64) = (0.01, 0.99);
/// Bounds of both TSB constants: the 0.01-0.3 range the intermittent-demand
/// literature recommends (Syntetos and Boylan), slow enough to damp the noise of
/// sparse data.
const TSB_BOUNDS: (f64, f64) = (0.01, 0.3);

/// Fitted constants of a model, for reports and for restoring a state.
#[derive(Clone, Debug, PartialEq)]
pub enum Parameters {
    /// Models without constants (mean, zero, seasonal naive).
    None,
    /// SES.
    Ses { alpha: f64 },
    /// Croston-type: constants of the size and interval smoothers, and the
    /// factor applied to their ratio (1, or 0.95 for SBA).
    Croston {
        alpha_size: f64,
        alpha_interval: f64,
        factor: f64,
    },
    /// TSB: constants of the size and probability smoothers.
    Tsb {
        alpha_size: f64,
        alpha_probability: f64,
    },
    /// ADIDA and IMAPA: one (bucket width, alpha) per aggregation level.
    Aggregated { levels: Vec<(usize, f64)> },
    /// The members of a combination (in `ModelKind::COMBINED` order) or of a
    /// pool (best first), with their constants.
    Combination {
        members: Vec<(ModelKind, Parameters)>,
    },
}

/// One aggregation level of ADIDA/IMAPA: SES over sums of `width` periods.
#[derive(Clone, Debug, PartialEq)]
struct Bucketed {
    width: usize,
    sums: Smoother,
    partial_sum: f64,
    partial_count: usize,
}

impl Bucketed {
    /// Adds one period; true when it completes a bucket (the level changes).
    fn observe(&mut self, y: f64) -> bool {
        self.partial_sum += y;
        self.partial_count += 1;
        if self.partial_count >= self.width {
            self.sums.observe(self.partial_sum);
            self.partial_sum = 0.0;
            self.partial_count = 0;
            true
        } else {
            false
        }
    }

    fn per_period(&self) -> f64 {
        self.sums.level.unwrap_or(0.0) / self.width.max(1) as f64
    }

    fn fresh(&self) -> Self {
        Bucketed {
            width: self.width,
            sums: self.sums.fresh(),
            partial_sum: 0.0,
            partial_count: 0,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
enum Inner {
    Ses(Smoother),
    Croston {
        size: Smoother,
        interval: Smoother,
        /// Periods since the last non-zero demand, counting the current one.
        since_demand: u64,
        factor: f64,
    },
    Tsb {
        probability: Smoother,
        size: Smoother,
    },
    Aggregated(Vec<Bucketed>),
    SeasonalNaive {
        season: usize,
        /// Ring buffer of the last `season` values once full.
        recent: Vec<f64>,
        /// Index of the oldest value in `recent` once it is full.
        oldest: usize,
    },
    Mean {
        sum: f64,
        count: u64,
    },
    Zero,
    Combination(Vec<ForecastState>),
}

/// A fitted model and everything it needs to forecast and to take new periods.
#[derive(Clone, Debug, PartialEq)]
pub struct ForecastState {
    kind: ModelKind,
    observations: u64,
    inner: Inner,
}

impl ForecastState {
    /// Fits `kind` to `values` (oldest first). `season_length` is used by the
    /// seasonal naive model only (`Frequency::season_length`). Every value must be
    /// finite and >= 0.
    pub fn fit(
        kind: ModelKind,
        values: &[f64],
        season_length: usize,
    ) -> Result<Self, InvalidValue> {
        validate_values(values)?;
        Ok(fit_valid(kind, values, season_length))
    }

    /// The model.
    pub fn kind(&self) -> ModelKind {
        self.kind
    }

    /// Periods seen: by the fit and by `update` since.
    pub fn observations(&self) -> u64 {
        self.observations
    }

    /// The fitted constants.
    pub fn parameters(&self) -> Parameters {
        match &self.inner {
            Inner::Ses(level) => Parameters::Ses { alpha: level.alpha },
            Inner::Croston {
                size,
                interval,
                factor,
                ..
            } => Parameters::Croston {
                alpha_size: size.alpha,
                alpha_interval: interval.alpha,
                factor: *factor,
            },
            Inner::Tsb { probability, size } => Parameters::Tsb {
                alpha_size: size.alpha,
                alpha_probability: probability.alpha,
            },
            Inner::Aggregated(levels) => Parameters::Aggregated {
                levels: levels
                    .iter()
                    .map(|level| (level.width, level.sums.alpha))
                    .collect(),
            },
            Inner::Combination(members) => Parameters::Combination {
                members: members
                    .iter()
                    .map(|member| (member.kind, member.parameters()))
                    .collect(),
            },
            Inner::SeasonalNaive { .. } | Inner::Mean { .. } | Inner::Zero => Parameters::None,
        }
    }

    /// Folds in the demand of one more period, keeping the fitted constants.
    /// O(1) per model (O(k) for IMAPA's k levels and the combination's members).
    /// A NaN, infinite or negative value is refused and changes nothing.
    pub fn update(&mut self, y: f64) -> Result<(), InvalidValue> {
        if !is_valid_demand(y) {
            return Err(InvalidValue {
                index: usize::try_from(self.observations).unwrap_or(usize::MAX),
                value: y,
            });
        }
        self.observe(y + 0.0);
        Ok(())
    }

    /// True when every step ahead gets the same forecast.
    pub fn is_flat(&self) -> bool {
        match &self.inner {
            Inner::Combination(members) => members.iter().all(ForecastState::is_flat),
            _ => self.kind.is_flat(),
        }
    }

    /// Point forecasts for the next `horizon` periods.
    pub fn forecast(&self, horizon: usize) -> Vec<f64> {
        if self.is_flat() {
            vec![self.forecast_step(1); horizon]
        } else {
            (1..=horizon).map(|step| self.forecast_step(step)).collect()
        }
    }

    /// Point forecast `step` periods ahead (1 is the next period; 0 counts as 1).
    pub fn forecast_step(&self, step: usize) -> f64 {
        match &self.inner {
            Inner::Ses(level) => level.level.unwrap_or(0.0),
            Inner::Croston {
                size,
                interval,
                factor,
                ..
            } => croston_forecast(size, interval, *factor),
            Inner::Tsb { probability, size } => tsb_forecast(probability, size),
            Inner::Aggregated(levels) => {
                if levels.is_empty() {
                    0.0
                } else {
                    levels.iter().map(Bucketed::per_period).sum::<f64>() / levels.len() as f64
                }
            }
            Inner::SeasonalNaive {
                season,
                recent,
                oldest,
            } => {
                if recent.len() >= *season && *season > 0 {
                    let offset = (step.max(1) - 1) % season;
                    recent
                        .get((oldest + offset) % season)
                        .copied()
                        .unwrap_or(0.0)
                } else {
                    recent.last().copied().unwrap_or(0.0)
                }
            }
            Inner::Mean { sum, count } => {
                if *count == 0 {
                    0.0
                } else {
                    sum / *count as f64
                }
            }
            Inner::Zero => 0.0,
            Inner::Combination(members) => {
                if members.is_empty() {
                    0.0
                } else {
                    members
                        .iter()
                        .map(|member| member.forecast_step(step))
                        .sum::<f64>()
                        / members.len() as f64
                }
            }
        }
    }

    /// The same model and constants with no history: what a backtest replays.
    pub(crate) fn fresh(&self) -> ForecastState {
        let inner = match &self.inner {
            Inner::Ses(level) => Inner::Ses(level.fresh()),
            Inner::Croston {
                size,
                interval,
                factor,
                ..
            } => Inner::Croston {
                size: size.fresh(),
                interval: interval.fresh(),
                since_demand: 0,
                factor: *factor,
            },
            Inner::Tsb { probability, size } => Inner::Tsb {
                probability: probability.fresh(),
                size: size.fresh(),
            },
            Inner::Aggregated(levels) => {
                Inner::Aggregated(levels.iter().map(Bucketed::fresh).collect())
            }
            Inner::SeasonalNaive { season, .. } => Inner::SeasonalNaive {
                season: *season,
                recent: Vec::with_capacity(*season),
                oldest: 0,
            },
            Inner::Mean { .. } => Inner::Mean { sum: 0.0, count: 0 },
            Inner::Zero => Inner::Zero,
            Inner::Combination(members) => {
                Inner::Combination(members.iter().map(ForecastState::fresh).collect())
            }
        };
        ForecastState {
            kind: self.kind,
            observations: 0,
            inner,
        }
    }

    /// The equal-weight mean of already fitted members: `kind` is `Combination`
    /// (members in `ModelKind::COMBINED` order) or `Pool`.
    pub(crate) fn combination(kind: ModelKind, members: Vec<ForecastState>) -> ForecastState {
        let observations = members.first().map_or(0, |member| member.observations);
        ForecastState {
            kind,
            observations,
            inner: Inner::Combination(members),
        }
    }

    /// This Croston-type state as `kind` with another debiasing factor.
    fn with_factor(&self, kind: ModelKind, factor: f64) -> ForecastState {
        let mut state = self.clone();
        state.kind = kind;
        if let Inner::Croston {
            factor: own_factor, ..
        } = &mut state.inner
        {
            *own_factor = factor;
        }
        state
    }

    /// `replay` of `fresh()`: the one-step forecasts from index `record_from` on
    /// of this model and its constants replayed from no history, pushed to
    /// `recorded` (aggregation levels are replayed one by one, without copying
    /// their list).
    pub(crate) fn replay_from_scratch(
        &self,
        values: &[f64],
        record_from: usize,
        recorded: &mut Vec<f64>,
    ) {
        match &self.inner {
            Inner::Aggregated(levels) => {
                let start = recorded.len();
                recorded.resize(start + values.len().saturating_sub(record_from), 0.0);
                let totals = recorded.get_mut(start..).unwrap_or(&mut []);
                for level in levels {
                    let mut level = level.fresh();
                    replay_level(&mut level, values, record_from, totals);
                }
                mean_of_levels(totals, levels.len());
            }
            _ => self.fresh().replay(values, record_from, recorded),
        }
    }

    /// The models whose mean this state forecasts (itself for a single model).
    pub fn members(&self) -> Vec<ModelKind> {
        match &self.inner {
            Inner::Combination(members) => members.iter().map(|member| member.kind).collect(),
            _ => vec![self.kind],
        }
    }

    /// `update` for a value already known to be valid.
    pub(crate) fn observe(&mut self, y: f64) {
        self.observations = self.observations.saturating_add(1);
        match &mut self.inner {
            Inner::Ses(level) => level.observe(y),
            Inner::Croston {
                size,
                interval,
                since_demand,
                ..
            } => croston_observe(size, interval, since_demand, y),
            Inner::Tsb { probability, size } => tsb_observe(probability, size, y),
            Inner::Aggregated(levels) => {
                for level in levels {
                    level.observe(y);
                }
            }
            Inner::SeasonalNaive {
                season,
                recent,
                oldest,
            } => {
                if recent.len() < *season {
                    recent.push(y);
                } else if let Some(slot) = recent.get_mut(*oldest) {
                    *slot = y;
                    *oldest = (*oldest + 1) % (*season).max(1);
                }
            }
            Inner::Mean { sum, count } => {
                *sum += y;
                *count = count.saturating_add(1);
            }
            Inner::Zero => {}
            Inner::Combination(members) => {
                for member in members {
                    member.observe(y);
                }
            }
        }
    }

    /// Observes every value in order, pushing the one-step forecast made before
    /// each value from index `record_from` on into `recorded`. The same as
    /// calling `forecast_step(1)` and `observe` in turn, with the model matched
    /// once instead of at every period.
    fn replay(&mut self, values: &[f64], record_from: usize, recorded: &mut Vec<f64>) {
        self.observations = self.observations.saturating_add(values.len() as u64);
        let (before, after) = values.split_at(record_from.min(values.len()));
        match &mut self.inner {
            Inner::Ses(level) => {
                for &y in before {
                    level.observe(y);
                }
                for &y in after {
                    recorded.push(level.level.unwrap_or(0.0));
                    level.observe(y);
                }
            }
            Inner::Croston {
                size,
                interval,
                since_demand,
                factor,
            } => croston_replay(
                size,
                interval,
                since_demand,
                *factor,
                values,
                record_from,
                recorded,
            ),
            Inner::Tsb { probability, size } => {
                tsb_replay(probability, size, values, record_from, recorded);
            }
            Inner::Mean { sum, count } => {
                for &y in before {
                    *sum += y;
                }
                *count = count.saturating_add(before.len() as u64);
                for &y in after {
                    recorded.push(if *count == 0 {
                        0.0
                    } else {
                        *sum / *count as f64
                    });
                    *sum += y;
                    *count = count.saturating_add(1);
                }
            }
            Inner::Zero => recorded.extend(after.iter().map(|_| 0.0)),
            Inner::Aggregated(levels) => {
                // Level by level, adding each one's per-period forecast at every
                // origin, then the mean: the same sums in the same order as
                // `forecast_step`.
                let start = recorded.len();
                recorded.extend(after.iter().map(|_| 0.0));
                let totals = recorded.get_mut(start..).unwrap_or(&mut []);
                for level in levels.iter_mut() {
                    replay_level(level, values, record_from, totals);
                }
                mean_of_levels(totals, levels.len());
            }
            Inner::Combination(members) => {
                // Member by member, then the mean: the same sums in the same
                // order as `forecast_step`.
                let start = recorded.len();
                recorded.extend(after.iter().map(|_| 0.0));
                let mut member_forecasts = Vec::with_capacity(after.len());
                for member in members.iter_mut() {
                    member_forecasts.clear();
                    member.replay(values, record_from, &mut member_forecasts);
                    let totals = recorded.get_mut(start..).unwrap_or(&mut []);
                    for (total, forecast) in totals.iter_mut().zip(&member_forecasts) {
                        *total += forecast;
                    }
                }
                let count = members.len();
                for total in recorded.get_mut(start..).unwrap_or(&mut []) {
                    *total = if count == 0 {
                        0.0
                    } else {
                        *total / count as f64
                    };
                }
            }
            Inner::SeasonalNaive { .. } => {
                // Undo the count above: `observe` counts again.
                self.observations = self.observations.saturating_sub(values.len() as u64);
                for &y in before {
                    self.observe(y);
                }
                for &y in after {
                    recorded.push(self.forecast_step(1));
                    self.observe(y);
                }
            }
        }
    }
}

/// Observes `values`, adding the level's per-period forecast before each one
/// from index `record_from` on to `totals` (one per such value).
fn replay_level(level: &mut Bucketed, values: &[f64], record_from: usize, totals: &mut [f64]) {
    // Bucket by bucket: the per-period forecast changes only when one closes,
    // so it is added to the totals of a whole bucket's periods at once, and the
    // bucket's sum is taken in one go (in order, as `observe` takes it).
    let width = level.width.max(1);
    // Computed when a bucket that is recorded needs it (a division).
    let mut per_period = None;
    let mut position = 0;
    while position < values.len() {
        let end = (position + width.saturating_sub(level.partial_count).max(1)).min(values.len());
        if end > record_from {
            let from = position.max(record_from) - record_from;
            let forecast = *per_period.get_or_insert_with(|| level.per_period());
            for total in totals.get_mut(from..end - record_from).unwrap_or(&mut []) {
                *total += forecast;
            }
        }
        level.partial_sum = values
            .get(position..end)
            .unwrap_or(&[])
            .iter()
            .fold(level.partial_sum, |sum, &y| sum + y);
        level.partial_count += end - position;
        if level.partial_count >= width {
            level.sums.observe(level.partial_sum);
            level.partial_sum = 0.0;
            level.partial_count = 0;
            per_period = None;
        }
        position = end;
    }
}

/// Sums over `count` levels to their mean, as `forecast_step` takes it.
fn mean_of_levels(totals: &mut [f64], count: usize) {
    for total in totals {
        *total = if count == 0 {
            0.0
        } else {
            *total / count as f64
        };
    }
}

/// `ForecastState::fit` for values already checked.
pub(crate) fn fit_valid(kind: ModelKind, values: &[f64], season_length: usize) -> ForecastState {
    fit_recording(kind, values, season_length, None, &mut Scratch::default()).0
}

/// Buffers of `f64` handed from one fit to the next, so that fitting many series
/// allocates little besides what the results keep.
#[derive(Debug, Default)]
pub(crate) struct Scratch {
    buffers: Vec<Vec<f64>>,
}

impl Scratch {
    /// An empty buffer (one given back before, if any).
    pub(crate) fn take(&mut self) -> Vec<f64> {
        let mut buffer = self.buffers.pop().unwrap_or_default();
        buffer.clear();
        buffer
    }

    /// Keeps `buffer` for a later `take`.
    pub(crate) fn give(&mut self, buffer: Vec<f64>) {
        // A fit holds about 16 at once; more is a leak of its own.
        if self.buffers.len() < 64 {
            self.buffers.push(buffer);
        }
    }
}

/// Fits `kind` and, when `first_origin` is given, also returns the one-step
/// forecast the model, replayed from no history with the fitted constants, makes
/// at each period from `first_origin` on (the flat forecast of a backtest
/// origin). Models fitted by replaying the history record these on the way;
/// ADIDA and IMAPA (whose fit aligns buckets to the end) replay once more.
pub(crate) fn fit_recording(
    kind: ModelKind,
    values: &[f64],
    season_length: usize,
    first_origin: Option<usize>,
    scratch: &mut Scratch,
) -> (ForecastState, Vec<f64>) {
    let history = History::new(values, scratch);
    let fitted = fit_history(kind, &history, season_length, first_origin, scratch);
    history.release(scratch);
    fitted
}

/// A candidate of `auto`: a fitted model and its recorded one-step forecasts
/// (see `fit_recording`).
pub(crate) struct Recorded {
    pub(crate) state: ForecastState,
    pub(crate) forecasts: Vec<f64>,
}

/// Every candidate `auto` compares, in `ModelKind::ALL` order, each with its
/// one-step forecasts from `first_origin` on; the seasonal naive model only when
/// `with_seasonal_naive`. The same states and forecasts as `fit_recording` of
/// each kind, bit for bit, with the work they share done once: the sizes and
/// intervals of the demands; the combination's members; SBA, which is classic
/// Croston times 0.95; and ADIDA's level, which is IMAPA's widest unless
/// ADIDA's rules for one or no whole bucket apply.
pub(crate) fn fit_candidates(
    values: &[f64],
    season_length: usize,
    first_origin: usize,
    with_seasonal_naive: bool,
    scratch: &mut Scratch,
) -> Vec<Recorded> {
    let history = History::new(values, scratch);
    let origin = Some(first_origin);
    let fit = |kind: ModelKind, scratch: &mut Scratch| {
        let (state, forecasts) = fit_history(kind, &history, season_length, origin, scratch);
        Recorded { state, forecasts }
    };
    let ses = fit(ModelKind::Ses, scratch);
    let croston = fit(ModelKind::CrostonClassic, scratch);
    // Classic Croston's forecast is `size / interval * 1.0`, SBA's the same
    // quotient times 0.95: the same bits as replaying SBA.
    let mut sba_forecasts = scratch.take();
    sba_forecasts.extend(
        croston
            .forecasts
            .iter()
            .map(|forecast| forecast * SBA_FACTOR),
    );
    let sba = Recorded {
        state: croston.state.with_factor(ModelKind::Sba, SBA_FACTOR),
        forecasts: sba_forecasts,
    };
    let tsb = fit(ModelKind::Tsb, scratch);
    let imapa = fit(ModelKind::Imapa, scratch);
    let adida = match (&imapa.state.inner, history.adida_rules_apply()) {
        (Inner::Aggregated(levels), false) => match levels.last() {
            Some(widest) => {
                let state = fitted(
                    ModelKind::Adida,
                    values,
                    Inner::Aggregated(vec![widest.clone()]),
                );
                let mut forecasts = scratch.take();
                state.replay_from_scratch(values, first_origin, &mut forecasts);
                Recorded { state, forecasts }
            }
            None => fit(ModelKind::Adida, scratch),
        },
        _ => fit(ModelKind::Adida, scratch),
    };
    let members = [&ses, &sba, &tsb, &imapa];
    let mut combined = scratch.take();
    combined.resize(ses.forecasts.len(), 0.0);
    for member in members {
        for (total, forecast) in combined.iter_mut().zip(&member.forecasts) {
            *total += forecast;
        }
    }
    for total in &mut combined {
        *total /= members.len() as f64;
    }
    let combination = Recorded {
        state: ForecastState::combination(
            ModelKind::Combination,
            members.iter().map(|member| member.state.clone()).collect(),
        ),
        forecasts: combined,
    };
    let croston_optimized = fit(ModelKind::CrostonOptimized, scratch);
    let mean = fit(ModelKind::Mean, scratch);
    let seasonal_naive = with_seasonal_naive.then(|| fit(ModelKind::SeasonalNaive, scratch));
    let zero = fit(ModelKind::Zero, scratch);
    history.release(scratch);
    let mut candidates = Vec::with_capacity(ModelKind::ALL.len());
    candidates.extend([
        combination,
        sba,
        tsb,
        ses,
        imapa,
        adida,
        croston_optimized,
        croston,
        mean,
    ]);
    candidates.extend(seasonal_naive);
    candidates.push(zero);
    candidates
}

/// What several models take from one history, computed once.
struct History<'a> {
    values: &'a [f64],
    /// Non-zero demand sizes and the intervals before each (the first counts
    /// from before the first period), as statsforecast's `_demand` and
    /// `_intervals`.
    sizes: Vec<f64>,
    intervals: Vec<f64>,
    /// Rounded mean interval between demands, `None` for an all-zero history.
    width: Option<usize>,
}

impl<'a> History<'a> {
    fn new(values: &'a [f64], scratch: &mut Scratch) -> Self {
        let mut sizes = scratch.take();
        let mut intervals = scratch.take();
        sizes.resize(values.len(), 0.0);
        intervals.resize(values.len(), 0.0);
        // Without a branch on the data (see `croston_replay`): every period is
        // written at the next free place, which advances only on a demand,
        // with its 1-based position; the only value carried from one period
        // to the next is that integer count. The intervals are then the
        // differences of the positions (whole numbers, so exact).
        let mut count = 0;
        for (position, &y) in values.iter().enumerate() {
            if let (Some(size), Some(interval)) = (sizes.get_mut(count), intervals.get_mut(count)) {
                *size = y;
                *interval = (position + 1) as f64;
            }
            count += usize::from(y > 0.0);
        }
        sizes.truncate(count);
        intervals.truncate(count);
        for index in (1..intervals.len()).rev() {
            let before = intervals.get(index - 1).copied().unwrap_or(0.0);
            if let Some(interval) = intervals.get_mut(index) {
                *interval -= before;
            }
        }
        let width = mean_interval_width(values, count);
        History {
            values,
            sizes,
            intervals,
            width,
        }
    }

    fn release(self, scratch: &mut Scratch) {
        scratch.give(self.sizes);
        scratch.give(self.intervals);
    }

    /// True when ADIDA's level differs from IMAPA's widest: some demand, and at
    /// most one whole bucket.
    fn adida_rules_apply(&self) -> bool {
        let width = self.width.unwrap_or(1);
        self.width.is_some() && self.values.len() / width <= 1
    }
}

fn fit_history(
    kind: ModelKind,
    history: &History<'_>,
    season_length: usize,
    first_origin: Option<usize>,
    scratch: &mut Scratch,
) -> (ForecastState, Vec<f64>) {
    let values = history.values;
    let record_from = first_origin.unwrap_or(usize::MAX);
    let mut recorded = scratch.take();
    let replayed = |inner: Inner, recorded: &mut Vec<f64>| {
        let mut state = ForecastState {
            kind,
            observations: 0,
            inner,
        };
        state.replay(values, record_from, recorded);
        state
    };
    let state = match kind {
        ModelKind::Ses => {
            let alpha = optimal_alpha(values, SES_BOUNDS.0, SES_BOUNDS.1);
            replayed(Inner::Ses(Smoother::new(alpha)), &mut recorded)
        }
        ModelKind::CrostonClassic => replayed(
            croston_inner(CROSTON_ALPHA, CROSTON_ALPHA, 1.0),
            &mut recorded,
        ),
        ModelKind::Sba => replayed(
            croston_inner(CROSTON_ALPHA, CROSTON_ALPHA, SBA_FACTOR),
            &mut recorded,
        ),
        ModelKind::CrostonOptimized => {
            let alpha_size = optimal_alpha(&history.sizes, CROSTON_BOUNDS.0, CROSTON_BOUNDS.1);
            let alpha_interval =
                optimal_alpha(&history.intervals, CROSTON_BOUNDS.0, CROSTON_BOUNDS.1);
            replayed(
                croston_inner(alpha_size, alpha_interval, 1.0),
                &mut recorded,
            )
        }
        ModelKind::Tsb => {
            let (alpha_size, alpha_probability) = tsb_constants(history, scratch);
            replayed(tsb_inner(alpha_size, alpha_probability), &mut recorded)
        }
        ModelKind::Mean => replayed(Inner::Mean { sum: 0.0, count: 0 }, &mut recorded),
        ModelKind::Zero => replayed(Inner::Zero, &mut recorded),
        ModelKind::Adida => {
            let width = history.width.unwrap_or(1);
            let level = bucketed(values, width, true, history.width.is_none(), scratch);
            let state = fitted(kind, values, Inner::Aggregated(vec![level]));
            if first_origin.is_some() {
                state.replay_from_scratch(values, record_from, &mut recorded);
            }
            state
        }
        ModelKind::Imapa => {
            let widest = history.width.unwrap_or(1);
            let levels = (1..=widest)
                .map(|width| bucketed(values, width, false, history.width.is_none(), scratch))
                .collect();
            let state = fitted(kind, values, Inner::Aggregated(levels));
            if first_origin.is_some() {
                state.replay_from_scratch(values, record_from, &mut recorded);
            }
            state
        }
        ModelKind::SeasonalNaive => {
            let season = season_length.max(1);
            let tail = values
                .get(values.len().saturating_sub(season)..)
                .unwrap_or(&[]);
            let mut recent = Vec::with_capacity(season);
            recent.extend_from_slice(tail);
            let state = fitted(
                kind,
                values,
                Inner::SeasonalNaive {
                    season,
                    recent,
                    oldest: 0,
                },
            );
            if first_origin.is_some() {
                state.replay_from_scratch(values, record_from, &mut recorded);
            }
            state
        }
        ModelKind::Combination | ModelKind::Pool => {
            let mut members = Vec::with_capacity(ModelKind::COMBINED.len());
            for member in ModelKind::COMBINED {
                let (state, forecasts) =
                    fit_history(member, history, season_length, first_origin, scratch);
                if members.is_empty() {
                    recorded.extend_from_slice(&forecasts);
                } else {
                    for (total, forecast) in recorded.iter_mut().zip(&forecasts) {
                        *total += forecast;
                    }
                }
                scratch.give(forecasts);
                members.push(state);
            }
            let count = members.len().max(1) as f64;
            for total in &mut recorded {
                *total /= count;
            }
            // A pool fitted on its own is the combination: the choice of members
            // needs a backtest, which `select` does.
            ForecastState::combination(ModelKind::Combination, members)
        }
    };
    (state, recorded)
}

#[inline]
fn croston_observe(size: &mut Smoother, interval: &mut Smoother, since_demand: &mut u64, y: f64) {
    *since_demand = since_demand.saturating_add(1);
    if y > 0.0 {
        size.observe(y);
        interval.observe(*since_demand as f64);
        *since_demand = 0;
    }
}

/// `croston_observe` over `values`, pushing `croston_forecast` before each value
/// from index `record_from` on. Once both levels exist (from the first demand
/// on), the loop does not branch on the data: with intermittent demand `y > 0`
/// is a coin flip the processor cannot predict, so both new levels are computed
/// every period and kept only on a demand (the same arithmetic as `observe`,
/// so the same bits).
fn croston_replay(
    size: &mut Smoother,
    interval: &mut Smoother,
    since_demand: &mut u64,
    factor: f64,
    values: &[f64],
    record_from: usize,
    recorded: &mut Vec<f64>,
) {
    let mut index = 0;
    let (mut size_level, mut interval_level) = loop {
        if let (Some(size_level), Some(interval_level)) = (size.level, interval.level) {
            break (size_level, interval_level);
        }
        let Some(&y) = values.get(index) else {
            return;
        };
        if index >= record_from {
            recorded.push(croston_forecast(size, interval, factor));
        }
        croston_observe(size, interval, since_demand, y);
        index += 1;
    };
    let (size_alpha, interval_alpha) = (size.alpha, interval.alpha);
    let (size_complement, interval_complement) = (1.0 - size_alpha, 1.0 - interval_alpha);
    // Counted in a float (exact for any count of periods a slice can hold):
    // converting a u64 at every period costs more than the model.
    let mut since = *since_demand as f64;
    let record_from = record_from.saturating_sub(index);
    for (position, &y) in values.get(index..).unwrap_or(&[]).iter().enumerate() {
        if position >= record_from {
            recorded.push(if interval_level > 0.0 {
                size_level / interval_level * factor
            } else {
                size_level * factor
            });
        }
        since += 1.0;
        let demand = y > 0.0;
        let new_size = size_alpha * y + size_complement * size_level;
        let new_interval = interval_alpha * since + interval_complement * interval_level;
        size_level = if demand { new_size } else { size_level };
        interval_level = if demand { new_interval } else { interval_level };
        since = if demand { 0.0 } else { since };
    }
    size.level = Some(size_level);
    interval.level = Some(interval_level);
    *since_demand = since as u64;
}

/// `tsb_observe` over `values`, pushing `tsb_forecast` before each value from
/// index `record_from` on, without branching on the data once the size level
/// exists (see `croston_replay`).
fn tsb_replay(
    probability: &mut Smoother,
    size: &mut Smoother,
    values: &[f64],
    record_from: usize,
    recorded: &mut Vec<f64>,
) {
    let mut index = 0;
    let (mut probability_level, mut size_level) = loop {
        if let (Some(probability_level), Some(size_level)) = (probability.level, size.level) {
            break (probability_level, size_level);
        }
        let Some(&y) = values.get(index) else {
            return;
        };
        if index >= record_from {
            recorded.push(tsb_forecast(probability, size));
        }
        tsb_observe(probability, size, y);
        index += 1;
    };
    let (probability_alpha, size_alpha) = (probability.alpha, size.alpha);
    let (probability_complement, size_complement) = (1.0 - probability_alpha, 1.0 - size_alpha);
    let record_from = record_from.saturating_sub(index);
    for (position, &y) in values.get(index..).unwrap_or(&[]).iter().enumerate() {
        if position >= record_from {
            recorded.push(probability_level * size_level);
        }
        let demand = y > 0.0;
        let occurred = if demand { 1.0 } else { 0.0 };
        probability_level =
            probability_alpha * occurred + probability_complement * probability_level;
        let new_size = size_alpha * y + size_complement * size_level;
        size_level = if demand { new_size } else { size_level };
    }
    probability.level = Some(probability_level);
    size.level = Some(size_level);
}

#[inline]
fn croston_forecast(size: &Smoother, interval: &Smoother, factor: f64) -> f64 {
    match (size.level, interval.level) {
        (Some(size), Some(interval)) if interval > 0.0 => size / interval * factor,
        (Some(size), _) => size * factor,
        // No demand yet: statsforecast forecasts the last value, which is 0.
        _ => 0.0,
    }
}

#[inline]
fn tsb_observe(probability: &mut Smoother, size: &mut Smoother, y: f64) {
    probability.observe(if y > 0.0 { 1.0 } else { 0.0 });
    if y > 0.0 {
        size.observe(y);
    }
}

#[inline]
fn tsb_forecast(probability: &Smoother, size: &Smoother) -> f64 {
    probability.level.unwrap_or(0.0) * size.level.unwrap_or(0.0)
}

/// One-step forecasts at each period from `first_origin` on, replaying `state`'s
/// model and constants from no history.
pub(crate) fn replay_forecasts(
    state: &ForecastState,
    values: &[f64],
    first_origin: usize,
) -> Vec<f64> {
    let mut forecasts = Vec::with_capacity(values.len().saturating_sub(first_origin));
    state.replay_from_scratch(values, first_origin, &mut forecasts);
    forecasts
}

fn croston_inner(alpha_size: f64, alpha_interval: f64, factor: f64) -> Inner {
    Inner::Croston {
        size: Smoother::new(alpha_size),
        interval: Smoother::new(alpha_interval),
        since_demand: 0,
        factor,
    }
}

/// A state built directly from the whole history.
fn fitted(kind: ModelKind, values: &[f64], inner: Inner) -> ForecastState {
    ForecastState {
        kind,
        observations: values.len() as u64,
        inner,
    }
}

/// Non-zero demand sizes and the intervals before each (the first counts from
/// before the first period), as statsforecast's `_demand` and `_intervals`.
#[cfg(test)]
fn sizes_and_intervals(values: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let history = History::new(values, &mut Scratch::default());
    (history.sizes, history.intervals)
}

fn tsb_inner(alpha_size: f64, alpha_probability: f64) -> Inner {
    Inner::Tsb {
        probability: Smoother::new(alpha_probability),
        size: Smoother::new(alpha_size),
    }
}

/// TSB constants, each by least in-sample one-step squared error of its own
/// smoother on `TSB_BOUNDS`: the size constant on the non-zero sizes, the
/// probability constant on the 0/1 occurrence series (as CrostonOptimized fits
/// its two smoothers separately).
fn tsb_constants(history: &History<'_>, scratch: &mut Scratch) -> (f64, f64) {
    let mut occurrences = scratch.take();
    occurrences.extend(
        history
            .values
            .iter()
            .map(|&y| if y > 0.0 { 1.0 } else { 0.0 }),
    );
    let constants = (
        optimal_alpha(&history.sizes, TSB_BOUNDS.0, TSB_BOUNDS.1),
        optimal_alpha(&occurrences, TSB_BOUNDS.0, TSB_BOUNDS.1),
    );
    scratch.give(occurrences);
    constants
}

/// Rounded mean interval between the `count` non-zero demands of `values` (the
/// ADIDA bucket width and the widest IMAPA level), `None` for an all-zero
/// series. The intervals sum to the position of the last demand, so their mean
/// is that over the count. Python rounds half to even, and so do we.
fn mean_interval_width(values: &[f64], count: usize) -> Option<usize> {
    let last = values.iter().rposition(|&y| y > 0.0)?;
    let mean = (last + 1) as f64 / count.max(1) as f64;
    // mean <= values.len(), so the cast is in range.
    Some((mean.round_ties_even() as usize).max(1))
}

/// SES over sums of `width` periods, buckets aligned to end at the last period
/// (a remainder at the start is dropped), as statsforecast does. `adida_rules`
/// applies ADIDA's `chunk_forecast` shortcuts (one bucket: its sum; no whole
/// bucket: the last value), which IMAPA does not use. All-zero history gives
/// no level (a zero forecast, as statsforecast's) and a mid-range constant for
/// later updates; `all_zero` says whether the history is (known once for
/// every level).
fn bucketed(
    values: &[f64],
    width: usize,
    adida_rules: bool,
    all_zero: bool,
    scratch: &mut Scratch,
) -> Bucketed {
    let width = width.max(1);
    let default_alpha = (CROSTON_BOUNDS.0 + CROSTON_BOUNDS.1) / 2.0;
    let mut sums = scratch.take();
    sums.extend(
        values
            .get(values.len() % width..)
            .unwrap_or(&[])
            .chunks_exact(width)
            .map(|chunk| chunk.iter().sum::<f64>()),
    );
    let sums_smoother = if all_zero {
        Smoother::new(default_alpha)
    } else if adida_rules && sums.len() <= 1 {
        Smoother {
            alpha: default_alpha,
            level: sums.first().or(values.last()).copied(),
        }
    } else {
        let alpha = optimal_alpha(&sums, CROSTON_BOUNDS.0, CROSTON_BOUNDS.1);
        Smoother::over(alpha, &sums)
    };
    scratch.give(sums);
    Bucketed {
        width,
        sums: sums_smoother,
        partial_sum: 0.0,
        partial_count: 0,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Forecast of `kind` fitted to `values`, one step ahead.
    fn next(kind: ModelKind, values: &[f64]) -> f64 {
        ForecastState::fit(kind, values, 52)
            .expect("valid values")
            .forecast_step(1)
    }

    fn assert_close(actual: f64, expected: f64, what: &str) {
        assert_within(actual, expected, 1e-12, what);
    }

    fn assert_within(actual: f64, expected: f64, relative: f64, what: &str) {
        let tolerance = relative * expected.abs().max(1.0);
        assert!(
            (actual - expected).abs() <= tolerance,
            "{what}: got {actual:?}, expected {expected:?}"
        );
    }

    /// A tiny deterministic generator (splitmix64), for property-style tests
    /// without extra crates.
    pub(crate) struct Rng(u64);

    impl Rng {
        pub(crate) fn new(seed: u64) -> Self {
            Rng(seed)
        }

        pub(crate) fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        pub(crate) fn unit(&mut self) -> f64 {
            (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
        }

        /// An intermittent series: demand with probability `p`, sizes 1..=max.
        pub(crate) fn series(&mut self, length: usize) -> Vec<f64> {
            let probability = self.unit();
            let largest = 1 + self.next_u64() % 20;
            (0..length)
                .map(|_| {
                    if self.unit() < probability {
                        (1 + self.next_u64() % largest) as f64
                    } else {
                        0.0
                    }
                })
                .collect()
        }
    }

    #[test]
    fn croston_by_hand() {
        // sizes 3, 2, 1, 4; intervals 3, 4, 2, 3; alpha 0.1:
        // sizes   3 -> 3 -> 2.9 -> 2.71 -> 2.839
        // intervals 3 -> 3 -> 3.1 -> 2.99 -> 2.991
        let values = [0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 2.0, 0.0, 1.0, 0.0, 0.0, 4.0];
        assert_close(
            next(ModelKind::CrostonClassic, &values),
            2.839 / 2.991,
            "croston",
        );
        assert_close(next(ModelKind::Sba, &values), 0.95 * 2.839 / 2.991, "sba");
    }

    #[test]
    fn tsb_by_hand() {
        // probability 0, 0, 0, then 0.1; size 1: forecast 0.1
        let state = tsb_with(&[0.0, 0.0, 0.0, 1.0], 0.1, 0.1);
        assert_close(state.forecast_step(1), 0.1, "tsb");
        // probability 1 -> 1 -> 0.9 -> 0.91; sizes 2 -> 2 -> 2.3: 0.91 * 2.3
        let state = tsb_with(&[2.0, 0.0, 5.0], 0.1, 0.1);
        assert_close(state.forecast_step(1), 0.91 * 2.3, "tsb");
    }

    #[test]
    fn ses_mean_zero_and_seasonal_naive_by_hand() {
        assert_close(next(ModelKind::Mean, &[1.0, 2.0, 6.0]), 3.0, "mean");
        assert_eq!(next(ModelKind::Zero, &[1.0, 2.0, 6.0]), 0.0);
        let weekly = ForecastState::fit(ModelKind::SeasonalNaive, &[1.0, 2.0, 3.0, 4.0, 5.0], 3)
            .expect("valid");
        assert_eq!(weekly.forecast(5), vec![3.0, 4.0, 5.0, 3.0, 4.0]);
        let short = ForecastState::fit(ModelKind::SeasonalNaive, &[1.0, 2.0], 3).expect("valid");
        assert_eq!(short.forecast(2), vec![2.0, 2.0]);
        // constant series: every alpha gives the constant
        assert_close(next(ModelKind::Ses, &[4.0, 4.0, 4.0]), 4.0, "ses");
    }

    /// statsforecast 2.1.1's model functions (`_croston_classic`, `_croston_optimized`,
    /// `_croston_sba`, `_adida`, `_imapa`, `_ses_optimized`, `_tsb`) on float64
    /// arrays; values printed with `repr`. (Its `StatsForecast` front end casts to
    /// float32, so results through it differ from these in the 8th digit.)
    const STATSFORECAST: &[(&[f64], [f64; 6])] = &[
        // croston, croston_optimized, sba, adida, imapa, ses
        (
            &[0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 2.0, 0.0, 1.0, 0.0, 0.0, 4.0],
            [
                0.9491808759612169,
                0.9491808759611025,
                0.901721832163156,
                0.9523333333332383,
                0.9260408296948235,
                0.865744186026036,
            ],
        ),
        (&[5.0], [5.0, 5.0, 4.75, 5.0, 5.0, 5.0]),
        (
            &[0.0, 0.0, 0.0, 1.0],
            [0.25, 0.25, 0.2375, 0.25, 0.22083333333333333, 0.5],
        ),
        (
            &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0],
            [
                4.4867844009999995,
                7.7608250829969725,
                4.2624451809499995,
                7.7608250829969725,
                7.7608250829969725,
                9.989898989898611,
            ],
        ),
        (
            &[
                0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 7.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0,
                0.0, 0.0, 0.0, 0.0, 0.0, 9.0, 0.0, 0.0, 0.0, 0.0, 3.0,
            ],
            [
                0.9252539912917274,
                0.9252539912915205,
                0.878991291727141,
                1.0071428571429029,
                0.95864077720641,
                0.6562532289844674,
            ],
        ),
        (
            &[
                2.0, 0.0, 1.0, 0.0, 0.0, 3.0, 1.0, 0.0, 0.0, 0.0, 2.0, 5.0, 0.0, 1.0,
            ],
            [
                1.372010390870747,
                1.1293981504255375,
                1.3034098713272095,
                1.0608305000002172,
                1.2060427382304506,
                1.3512549713982929,
            ],
        ),
    ];

    #[test]
    fn agrees_with_statsforecast() {
        let kinds = [
            ModelKind::CrostonClassic,
            ModelKind::CrostonOptimized,
            ModelKind::Sba,
            ModelKind::Adida,
            ModelKind::Imapa,
            ModelKind::Ses,
        ];
        for (values, expected) in STATSFORECAST {
            for (kind, expected) in kinds.iter().zip(expected) {
                // Same constants: the same bits. Optimised constants: Brent and
                // statsforecast's golden section stop at slightly different
                // points (1e-8 apart), and StatsForecast itself returns float32.
                let relative = match kind {
                    ModelKind::CrostonClassic | ModelKind::Sba => 1e-12,
                    _ => 1e-7,
                };
                let what = format!("{kind} on {values:?}");
                assert_within(next(*kind, values), *expected, relative, &what);
            }
        }
    }

    #[test]
    fn tsb_with_fixed_constants_agrees_with_statsforecast() {
        // statsforecast TSB(alpha_d, alpha_p): (values, alpha_d, alpha_p, forecast)
        let cases: &[(&[f64], f64, f64, f64)] = &[
            (
                &[0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 2.0, 0.0, 1.0, 0.0, 0.0, 4.0],
                0.1,
                0.1,
                0.7684918878271003,
            ),
            (
                &[0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 2.0, 0.0, 1.0, 0.0, 0.0, 4.0],
                0.3,
                0.05,
                0.4456710406982427,
            ),
            (
                &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0],
                0.3,
                0.05,
                7.7608250829999985,
            ),
            (
                &[
                    2.0, 0.0, 1.0, 0.0, 0.0, 3.0, 1.0, 0.0, 0.0, 0.0, 2.0, 5.0, 0.0, 1.0,
                ],
                0.3,
                0.05,
                1.6817278875225312,
            ),
        ];
        for (values, alpha_size, alpha_probability, expected) in cases {
            let state = tsb_with(values, *alpha_size, *alpha_probability);
            assert_close(state.forecast_step(1), *expected, "tsb");
        }
    }

    #[test]
    fn optimised_constants_beat_a_grid_on_their_own_error() {
        let mut rng = Rng::new(7);
        let grid = |lower: f64, upper: f64| {
            (0..=40).map(move |i| lower + (upper - lower) * f64::from(i) / 40.0)
        };
        for _ in 0..40 {
            let values = rng.series(60);
            let (sizes, intervals) = sizes_and_intervals(&values);
            let occurrences: Vec<f64> = values
                .iter()
                .map(|&y| f64::from(u8::from(y > 0.0)))
                .collect();
            let checks: Vec<(ModelKind, &[f64], f64, f64, f64)> = match (
                ForecastState::fit(ModelKind::Tsb, &values, 52)
                    .expect("valid")
                    .parameters(),
                ForecastState::fit(ModelKind::CrostonOptimized, &values, 52)
                    .expect("valid")
                    .parameters(),
                ForecastState::fit(ModelKind::Ses, &values, 52)
                    .expect("valid")
                    .parameters(),
            ) {
                (
                    Parameters::Tsb {
                        alpha_size,
                        alpha_probability,
                    },
                    Parameters::Croston {
                        alpha_size: croston_size,
                        alpha_interval,
                        ..
                    },
                    Parameters::Ses { alpha },
                ) => vec![
                    (ModelKind::Tsb, &sizes, alpha_size, 0.01, 0.3),
                    (ModelKind::Tsb, &occurrences, alpha_probability, 0.01, 0.3),
                    (ModelKind::CrostonOptimized, &sizes, croston_size, 0.1, 0.3),
                    (
                        ModelKind::CrostonOptimized,
                        &intervals,
                        alpha_interval,
                        0.1,
                        0.3,
                    ),
                    (ModelKind::Ses, &values, alpha, 0.01, 0.99),
                ],
                other => panic!("unexpected parameters {other:?}"),
            };
            for (kind, series, alpha, lower, upper) in checks {
                assert!((lower..=upper).contains(&alpha), "{kind}: {alpha}");
                let found = ses_sse(series, alpha);
                for candidate in grid(lower, upper) {
                    let other = ses_sse(series, candidate);
                    // Brent stops within ~1e-8 of the best constant.
                    assert!(
                        found <= other + 1e-6 * other.max(1.0),
                        "{kind}: {alpha} vs {candidate}"
                    );
                }
            }
        }
    }

    #[test]
    fn all_zero_empty_and_one_point_series() {
        for kind in ModelKind::ALL {
            assert_eq!(next(kind, &[0.0; 30]), 0.0, "{kind} on zeros");
            assert_eq!(next(kind, &[]), 0.0, "{kind} on nothing");
            let one = next(kind, &[3.0]);
            let expected = match kind {
                ModelKind::Zero => 0.0,
                ModelKind::Sba => 2.85,
                ModelKind::Combination => (3.0 + 2.85 + 3.0 + 3.0) / 4.0,
                _ => 3.0,
            };
            assert_close(one, expected, kind.name());
        }
    }

    #[test]
    fn rejects_invalid_values_in_fit_and_update() {
        assert!(ForecastState::fit(ModelKind::Ses, &[1.0, f64::NAN], 7).is_err());
        let mut state = ForecastState::fit(ModelKind::Sba, &[1.0, 0.0, 2.0], 7).expect("valid");
        let before = state.clone();
        for bad in [-1.0, f64::NAN, f64::INFINITY] {
            assert!(state.update(bad).is_err());
        }
        assert_eq!(state, before);
    }

    #[test]
    fn update_matches_refit_for_models_with_fixed_constants() {
        let mut rng = Rng::new(11);
        for _ in 0..50 {
            let values = rng.series(40);
            let split = (rng.next_u64() % 40) as usize;
            for kind in [
                ModelKind::CrostonClassic,
                ModelKind::Sba,
                ModelKind::Mean,
                ModelKind::Zero,
                ModelKind::SeasonalNaive,
            ] {
                let whole = ForecastState::fit(kind, &values, 7).expect("valid");
                let mut state = ForecastState::fit(kind, &values[..split], 7).expect("valid");
                for &y in &values[split..] {
                    state.update(y).expect("valid");
                }
                assert_eq!(state.forecast(10), whole.forecast(10), "{kind}");
                assert_eq!(state.observations(), 40);
            }
        }
    }

    /// `fit_candidates`, which shares work between the candidates, gives each
    /// the very state and forecasts of fitting it alone.
    #[test]
    fn candidates_are_what_fitting_each_alone_gives() {
        let mut rng = Rng::new(43);
        let mut scratch = Scratch::default();
        for round in 0..80 {
            let length = (rng.next_u64() % 120) as usize;
            let mut values = rng.series(length);
            if round % 6 == 0 {
                // One demand only, or none: ADIDA's own rules apply.
                values.iter_mut().skip(1).for_each(|value| *value = 0.0);
            }
            let origin = (length / 2).max(1);
            let season = if round % 2 == 0 { 7 } else { 52 };
            let candidates = fit_candidates(&values, season, origin, true, &mut scratch);
            let kinds: Vec<ModelKind> = candidates.iter().map(|c| c.state.kind()).collect();
            assert_eq!(kinds, ModelKind::ALL.to_vec());
            for candidate in candidates {
                let kind = candidate.state.kind();
                let (state, forecasts) =
                    fit_recording(kind, &values, season, Some(origin), &mut scratch);
                assert_eq!(candidate.state, state, "{kind}");
                let bits =
                    |forecasts: &[f64]| forecasts.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&candidate.forecasts), bits(&forecasts), "{kind}");
            }
        }
    }

    /// `replay` (with its branch-free loops) gives the very bits of forecasting
    /// and observing one period at a time, for every model, from every origin.
    #[test]
    fn replay_matches_one_period_at_a_time() {
        let mut rng = Rng::new(19);
        for round in 0..60 {
            let length = (rng.next_u64() % 70) as usize;
            let mut values = rng.series(length);
            if round % 4 == 0 {
                values
                    .iter_mut()
                    .take(length / 2)
                    .for_each(|value| *value = 0.0);
            }
            let record_from = (rng.next_u64() % 80) as usize;
            for kind in ModelKind::ALL {
                let fitted = ForecastState::fit(kind, &values, 7).expect("valid");
                let mut replayed = fitted.fresh();
                let mut recorded = Vec::new();
                replayed.replay(&values, record_from, &mut recorded);
                let mut stepped = fitted.fresh();
                let mut expected = Vec::new();
                for (index, &y) in values.iter().enumerate() {
                    if index >= record_from {
                        expected.push(stepped.forecast_step(1));
                    }
                    stepped.observe(y);
                }
                let bits =
                    |forecasts: &[f64]| forecasts.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&recorded), bits(&expected), "{kind}");
                assert_eq!(replayed, stepped, "{kind}");
            }
        }
    }

    #[test]
    fn replaying_with_the_fitted_constants_reproduces_the_fit() {
        let mut rng = Rng::new(13);
        for _ in 0..30 {
            let values = rng.series(48);
            for kind in [
                ModelKind::Ses,
                ModelKind::CrostonOptimized,
                ModelKind::Tsb,
                ModelKind::Mean,
            ] {
                let fitted = ForecastState::fit(kind, &values, 52).expect("valid");
                let mut replay = fitted.fresh();
                for &y in &values {
                    replay.observe(y);
                }
                assert_eq!(replay, fitted, "{kind}");
            }
        }
    }

    #[test]
    fn update_of_aggregated_models_waits_for_a_whole_bucket() {
        // width round(6/2) = 3 (demands at periods 2 and 5)
        let values = [0.0, 0.0, 3.0, 0.0, 0.0, 3.0];
        let mut state = ForecastState::fit(ModelKind::Adida, &values, 52).expect("valid");
        assert_eq!(state.parameters(), state.parameters());
        let before = state.forecast_step(1);
        state.update(9.0).expect("valid");
        state.update(0.0).expect("valid");
        assert_eq!(state.forecast_step(1), before);
        state.update(0.0).expect("valid");
        assert!(state.forecast_step(1) > before);
    }

    #[test]
    fn imapa_and_adida_round_the_mean_interval_half_to_even() {
        // demands at periods 1 and 4: mean interval 5 / 2 = 2.5 -> 2
        let values = [0.0, 1.0, 0.0, 0.0, 1.0];
        let widths = |kind| match ForecastState::fit(kind, &values, 52)
            .expect("valid")
            .parameters()
        {
            Parameters::Aggregated { levels } => levels.iter().map(|l| l.0).collect::<Vec<_>>(),
            _ => Vec::new(),
        };
        assert_eq!(widths(ModelKind::Adida), vec![2]);
        assert_eq!(widths(ModelKind::Imapa), vec![1, 2]);
    }

    #[test]
    fn forecasts_are_finite_and_non_negative() {
        let mut rng = Rng::new(17);
        for round in 0..200 {
            let length = (rng.next_u64() % 120) as usize;
            let mut values = rng.series(length);
            if round % 7 == 0 {
                // huge and tiny values
                for value in values.iter_mut().step_by(3) {
                    *value *= 1e12;
                }
                if let Some(first) = values.first_mut() {
                    *first = 1e-300;
                }
            }
            for kind in ModelKind::ALL {
                let mut state = ForecastState::fit(kind, &values, 7).expect("valid");
                for forecast in state.forecast(14) {
                    assert!(
                        forecast.is_finite() && forecast >= 0.0,
                        "{kind}: {forecast}"
                    );
                }
                state.update(5.0).expect("valid");
                state.update(0.0).expect("valid");
                let forecast = state.forecast_step(3);
                assert!(
                    forecast.is_finite() && forecast >= 0.0,
                    "{kind}: {forecast}"
                );
            }
        }
    }

    #[test]
    fn model_names_round_trip() {
        for kind in ModelKind::ALL {
            assert_eq!(ModelKind::from_name(kind.name()), Some(kind));
            assert_eq!(
                kind.name().parse::<ModelChoice>(),
                Ok(ModelChoice::Fixed(kind))
            );
        }
        assert_eq!("auto".parse::<ModelChoice>(), Ok(ModelChoice::Auto));
        let error = "arima".parse::<ModelChoice>().expect_err("unknown");
        assert!(error.to_string().contains("croston"));
    }

    /// A TSB state with given constants (for tests against statsforecast's fixed TSB).
    fn tsb_with(values: &[f64], alpha_size: f64, alpha_probability: f64) -> ForecastState {
        let mut state = ForecastState {
            kind: ModelKind::Tsb,
            observations: 0,
            inner: tsb_inner(alpha_size, alpha_probability),
        };
        for &y in values {
            state.observe(y);
        }
        state
    }

    /// SES's in-sample error, for tests of the optimisers.
    fn ses_sse(values: &[f64], alpha: f64) -> f64 {
        crate::forecast::smoothing::sse(values, alpha)
    }
}
