//! Simple exponential smoothing primitives shared by every model: the smoothed
//! level, the in-sample one-step sum of squared errors (with its derivatives),
//! and the search for the smoothing constant with the least error.
//!
//! Invariants: the arithmetic follows statsforecast's `src/ses.cpp` step by step
//! (the level starts at the first value and is then smoothed with it, written
//! `alpha * x + (1 - alpha) * level`), so with the same constant the forecasts
//! are the same to the last bit; optimised constants agree with statsforecast's
//! golden-section search to about 1e-10 where the error has one minimum in the
//! bounds. Every loop is bounded; nothing here panics, whatever the input.

/// An exponentially smoothed level with its constant.
///
/// `level` is `None` until the first observation, which becomes the level.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Smoother {
    pub(crate) alpha: f64,
    pub(crate) level: Option<f64>,
}

impl Smoother {
    pub(crate) fn new(alpha: f64) -> Self {
        Smoother { alpha, level: None }
    }

    /// Smooths in one observation: O(1).
    pub(crate) fn observe(&mut self, x: f64) {
        let prior = self.level.unwrap_or(x);
        self.level = Some(self.alpha * x + (1.0 - self.alpha) * prior);
    }

    /// Same constant, no history.
    pub(crate) fn fresh(&self) -> Self {
        Smoother::new(self.alpha)
    }

    /// A smoother that has seen `values` in order.
    pub(crate) fn over(alpha: f64, values: &[f64]) -> Self {
        let mut smoother = Smoother::new(alpha);
        for &x in values {
            smoother.observe(x);
        }
        smoother
    }
}

/// In-sample sum of squared one-step errors of SES over `values` (statsforecast's
/// `ses_sse`): the first value is the initial level and is not scored.
///
/// Two periods per step: the level two periods on is computed from the level
/// now (`a*x1 + c*a*x0 + c*c*level`), which halves the chain of dependent
/// multiply-adds the processor waits on. The sum differs from the one-period
/// loop only in rounding.
pub(crate) fn sse(values: &[f64], alpha: f64) -> f64 {
    let Some((&first, rest)) = values.split_first() else {
        return 0.0;
    };
    let complement = 1.0 - alpha;
    let complement_squared = complement * complement;
    let mut level = first;
    let mut previous = first;
    let (mut total_even, mut total_odd) = (0.0, 0.0);
    let mut remaining = rest;
    while let [x0, x1, tail @ ..] = remaining {
        let smoothed_previous = alpha * previous;
        let level0 = smoothed_previous + complement * level;
        let level1 = (alpha * x0 + complement * smoothed_previous) + complement_squared * level;
        let error0 = x0 - level0;
        let error1 = x1 - level1;
        total_even += error0 * error0;
        total_odd += error1 * error1;
        level = level1;
        previous = *x1;
        remaining = tail;
    }
    if let [x] = remaining {
        level = alpha * previous + complement * level;
        let error = x - level;
        total_even += error * error;
    }
    total_even + total_odd
}

/// Stopping step of the search for a smoothing constant.
pub(crate) const ALPHA_TOLERANCE: f64 = 1e-10;

/// Most evaluations of one search (Newton usually needs 3 to 8).
const MAX_SEARCH_STEPS: usize = 60;

/// Bracket width at which the search switches from golden section to Newton.
const GOLDEN_WIDTH: f64 = 0.05;

/// The in-sample one-step SSE of SES and its first two derivatives in alpha,
/// in one pass (forward-mode: the level's derivatives follow their own
/// recursions, `dL' = e + (1 - alpha) dL` and `d2L' = -2 dL + (1 - alpha) d2L`).
fn sse_with_derivatives(values: &[f64], alpha: f64) -> (f64, f64, f64) {
    let Some((&first, rest)) = values.split_first() else {
        return (0.0, 0.0, 0.0);
    };
    let complement = 1.0 - alpha;
    // Level after the first value (it is the first value for every alpha).
    let mut level = alpha * first + complement * first;
    let (mut slope, mut curvature) = (0.0, 0.0);
    let (mut total, mut gradient, mut hessian) = (0.0, 0.0, 0.0);
    for &x in rest {
        let error = x - level;
        total += error * error;
        gradient += error * slope;
        hessian += slope * slope - error * curvature;
        curvature = -2.0 * slope + complement * curvature;
        slope = error + complement * slope;
        level = alpha * x + complement * level;
    }
    (total, -2.0 * gradient, 2.0 * hessian)
}

/// The SES constant on `[lower, upper]` with the least in-sample one-step SSE.
///
/// statsforecast searches the same bounds by golden section on the SSE alone
/// (about 55 evaluations). Here the SSE comes with its derivatives, so the
/// search is a safeguarded Newton iteration on the derivative: a bound whose
/// derivative points outwards is a minimum and is returned as is; otherwise
/// the root of the derivative is kept bracketed and Newton steps that leave the
/// bracket or stall become bisections. Both find the same minimum on a unimodal
/// error, here to 1e-10 in about 3 to 8 passes. An error that is flat (say zeros,
/// then one demand at the end) leaves the choice arbitrary; statsforecast then
/// stops at the middle of the bounds, and so does this.
pub(crate) fn optimal_alpha(values: &[f64], lower: f64, upper: f64) -> f64 {
    let middle = 0.5 * (lower + upper);
    if values.len() < 2 {
        // Nothing to score: every constant gives the same forecast.
        return middle;
    }
    let (best, least) = search(values, lower, upper);
    // "Flat" up to rounding relative to the size of the data.
    let energy: f64 = values.iter().map(|x| x * x).sum();
    if (sse(values, middle) - least).abs() <= 1e-12 * energy {
        middle
    } else {
        best
    }
}

/// Golden-section steps exactly as statsforecast takes them until the bracket
/// is `GOLDEN_WIDTH` wide (the steps that decide which of several minima the
/// search ends in), then Newton on the derivative inside that bracket.
fn search(values: &[f64], lower: f64, upper: f64) -> (f64, f64) {
    let ratio = (5f64.sqrt() + 1.0) / 2.0;
    let (mut a, mut b) = (lower, upper);
    let mut c = b - (b - a) / ratio;
    let mut d = a + (b - a) / ratio;
    let mut fc = sse(values, c);
    let mut fd = sse(values, d);
    while (b - a).abs() >= GOLDEN_WIDTH {
        if fc < fd {
            b = d;
            d = c;
            fd = fc;
            c = b - (b - a) / ratio;
            fc = sse(values, c);
        } else if fd < fc {
            a = c;
            c = d;
            fc = fd;
            d = a + (b - a) / ratio;
            fd = sse(values, d);
        } else {
            // statsforecast stops at a tie, in the middle of the bracket.
            let x = (a + b) / 2.0;
            return (x, sse(values, x));
        }
    }
    // The minimum of [a, b] is at a bound of the search when the derivative
    // there points outwards.
    if a == lower {
        let (total, slope, _) = sse_with_derivatives(values, lower);
        if slope >= 0.0 {
            return (lower, total);
        }
    }
    if b == upper {
        let (total, slope, _) = sse_with_derivatives(values, upper);
        if slope <= 0.0 {
            return (upper, total);
        }
    }
    let start = if fc < fd { c } else { d };
    newton(values, a, b, start)
}

/// A minimum of the SSE in `[low, high]` by Newton steps on the derivative from
/// `start`, each evaluation narrowing the bracket by the sign of the
/// derivative; a step that leaves the bracket or does not halve the previous
/// one becomes a bisection. Returns the point and its SSE.
fn newton(values: &[f64], mut low: f64, mut high: f64, start: f64) -> (f64, f64) {
    let mut x = start;
    let mut previous_step = high - low;
    let mut best = (x, f64::INFINITY);
    for _ in 0..MAX_SEARCH_STEPS {
        let (total, slope, curvature) = sse_with_derivatives(values, x);
        if total < best.1 {
            best = (x, total);
        }
        if slope.is_nan() {
            break;
        }
        if slope < 0.0 {
            low = x;
        } else {
            high = x;
        }
        let step = slope / curvature;
        let next = if curvature > 0.0
            && x - step > low
            && x - step < high
            && step.abs() < 0.5 * previous_step
        {
            x - step
        } else {
            0.5 * (low + high)
        };
        previous_step = (next - x).abs();
        if previous_step < ALPHA_TOLERANCE || high - low < ALPHA_TOLERANCE {
            let total = sse(values, next);
            if total <= best.1 {
                best = (next, total);
            }
            break;
        }
        x = next;
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn level_starts_at_first_value_and_smooths() {
        // 2, then 0.5*4 + 0.5*2 = 3, then 0.5*0 + 0.5*3 = 1.5
        let smoother = Smoother::over(0.5, &[2.0, 4.0, 0.0]);
        assert_eq!(smoother.level, Some(1.5));
        assert_eq!(Smoother::over(0.5, &[]).level, None);
    }

    #[test]
    fn sse_scores_every_value_after_the_first() {
        // levels before x1, x2: 2, 3; errors 2, -3
        assert_eq!(sse(&[2.0, 4.0, 0.0], 0.5), 4.0 + 9.0);
        assert_eq!(sse(&[5.0], 0.3), 0.0);
        assert_eq!(sse(&[], 0.3), 0.0);
    }

    #[test]
    fn derivatives_match_finite_differences() {
        let values = [0.0, 3.0, 0.0, 0.0, 5.0, 1.0, 0.0, 2.0, 0.0, 0.0, 4.0];
        for alpha in [0.05, 0.2, 0.5, 0.9] {
            let (total, slope, curvature) = sse_with_derivatives(&values, alpha);
            let step = 1e-5;
            let numeric_slope =
                (sse(&values, alpha + step) - sse(&values, alpha - step)) / (2.0 * step);
            let numeric_curvature = (sse(&values, alpha + step) - 2.0 * sse(&values, alpha)
                + sse(&values, alpha - step))
                / (step * step);
            assert!((total - sse(&values, alpha)).abs() < 1e-9);
            assert!(
                (slope - numeric_slope).abs() < 1e-5 * numeric_slope.abs().max(1.0),
                "{slope} {numeric_slope}"
            );
            assert!(
                (curvature - numeric_curvature).abs() < 1e-3 * numeric_curvature.abs().max(1.0),
                "{curvature} {numeric_curvature}"
            );
        }
    }

    #[test]
    fn optimal_alpha_on_bounds_flat_and_short_input() {
        // Alternating values want slow smoothing: the lower bound itself.
        let mut alternating = vec![5.0];
        alternating.extend((0..40).map(|t| f64::from(t % 2) * 10.0));
        assert_eq!(optimal_alpha(&alternating, 0.1, 0.3), 0.1);
        // A ramp wants the largest constant.
        let ramp: Vec<f64> = (0..20).map(f64::from).collect();
        assert_eq!(optimal_alpha(&ramp, 0.1, 0.3), 0.3);
        // Flat error: the middle, as statsforecast.
        assert_eq!(optimal_alpha(&[0.0, 0.0, 0.0, 1.0], 0.1, 0.3), 0.2);
        assert_eq!(optimal_alpha(&[4.0, 4.0, 4.0], 0.1, 0.3), 0.2);
        assert_eq!(optimal_alpha(&[4.0], 0.01, 0.99), 0.5);
    }

    #[test]
    fn optimal_alpha_stays_in_bounds() {
        let values = [0.0, 10.0, 0.0, 10.0, 0.0];
        let alpha = optimal_alpha(&values, 0.1, 0.3);
        assert!((0.1..=0.3).contains(&alpha));
        // no point of a fine grid does better
        let best = sse(&values, alpha);
        for step in 0..=200 {
            let candidate = 0.1 + 0.2 * f64::from(step) / 200.0;
            assert!(
                best <= sse(&values, candidate) + 1e-12,
                "{alpha} vs {candidate}"
            );
        }
    }
}
