//! Simple exponential smoothing primitives shared by every model: the smoothed
//! level, the in-sample one-step sum of squared errors (with its derivatives),
//! and the search for the smoothing constant with the least error.
//!
//! Invariants: the arithmetic follows statsforecast's `src/ses.cpp` step by step
//! (the level starts at the first value and is then smoothed with it, written
//! `alpha * x + (1 - alpha) * level`), so with the same constant the forecasts
//! are the same to the last bit; optimised constants agree with statsforecast's
//! golden-section search to about 1e-8 (the flatness of the error at its
//! minimum leaves no more to agree on) where the error has one minimum in the
//! bounds. Every loop is bounded; nothing here panics, whatever the input.
//!
//! Cost: the search evaluates the error at several constants in each pass over
//! the values (`sse_lanes`), since one pass is bound by the latency of the level
//! recursion and independent constants overlap; see `optimal_alpha`.

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
    let ([total], _) = sse_lanes(values, [alpha]);
    total
}

/// `sse` at `K` constants in one pass over the values, and the sum of the
/// squared values. Each lane does exactly the arithmetic of `sse` alone (so gives
/// the same bits); the lanes are independent, so the processor overlaps them
/// and a pass over three constants costs little more than over one.
#[allow(clippy::needless_range_loop)] // lanes index several arrays at once
fn sse_lanes<const K: usize>(values: &[f64], alphas: [f64; K]) -> ([f64; K], f64) {
    let Some((&first, rest)) = values.split_first() else {
        return ([0.0; K], 0.0);
    };
    let complement = alphas.map(|alpha| 1.0 - alpha);
    let complement_squared = complement.map(|complement| complement * complement);
    let mut level = [first; K];
    let mut previous = first;
    let (mut total_even, mut total_odd) = ([0.0; K], [0.0; K]);
    let mut energy = first * first;
    let mut pairs = rest.chunks_exact(2);
    for pair in &mut pairs {
        let &[x0, x1] = pair else {
            continue;
        };
        for lane in 0..K {
            let alpha = alphas[lane];
            let smoothed_previous = alpha * previous;
            let level0 = smoothed_previous + complement[lane] * level[lane];
            let level1 = (alpha * x0 + complement[lane] * smoothed_previous)
                + complement_squared[lane] * level[lane];
            let error0 = x0 - level0;
            let error1 = x1 - level1;
            total_even[lane] += error0 * error0;
            total_odd[lane] += error1 * error1;
            level[lane] = level1;
        }
        energy += x0 * x0 + x1 * x1;
        previous = x1;
    }
    if let &[x] = pairs.remainder() {
        for lane in 0..K {
            level[lane] = alphas[lane] * previous + complement[lane] * level[lane];
            let error = x - level[lane];
            total_even[lane] += error * error;
        }
        energy += x * x;
    }
    let mut totals = [0.0; K];
    for lane in 0..K {
        totals[lane] = total_even[lane] + total_odd[lane];
    }
    (totals, energy)
}

/// Stopping step of the search for a smoothing constant.
pub(crate) const ALPHA_TOLERANCE: f64 = 1e-10;

/// Most evaluations of one search (Newton usually needs 2 to 4).
const MAX_SEARCH_STEPS: usize = 60;

/// Bracket width at which the search switches from golden section to Newton.
const GOLDEN_WIDTH: f64 = 0.05;

/// The in-sample one-step SSE of SES and its first two derivatives in alpha,
/// in one pass (forward-mode: the level's derivatives follow their own
/// recursions, `dL' = e + (1 - alpha) dL` and `d2L' = -2 dL + (1 - alpha) d2L`).
fn sse_with_derivatives(values: &[f64], alpha: f64) -> (f64, f64, f64) {
    let [result] = sse_with_derivatives_lanes(values, [alpha]);
    result
}

/// `sse_with_derivatives` at `K` constants in one pass, each lane with exactly
/// the arithmetic of one alone.
#[allow(clippy::needless_range_loop)] // lanes index several arrays at once
fn sse_with_derivatives_lanes<const K: usize>(
    values: &[f64],
    alphas: [f64; K],
) -> [(f64, f64, f64); K] {
    let Some((&first, rest)) = values.split_first() else {
        return [(0.0, 0.0, 0.0); K];
    };
    let complement = alphas.map(|alpha| 1.0 - alpha);
    // Level after the first value (it is the first value for every alpha).
    let mut level = [0.0; K];
    for lane in 0..K {
        level[lane] = alphas[lane] * first + complement[lane] * first;
    }
    let (mut slope, mut curvature) = ([0.0; K], [0.0; K]);
    let (mut total, mut gradient, mut hessian) = ([0.0; K], [0.0; K], [0.0; K]);
    for &x in rest {
        for lane in 0..K {
            let error = x - level[lane];
            total[lane] += error * error;
            gradient[lane] += error * slope[lane];
            hessian[lane] += slope[lane] * slope[lane] - error * curvature[lane];
            curvature[lane] = -2.0 * slope[lane] + complement[lane] * curvature[lane];
            slope[lane] = error + complement[lane] * slope[lane];
            level[lane] = alphas[lane] * x + complement[lane] * level[lane];
        }
    }
    let mut results = [(0.0, 0.0, 0.0); K];
    for lane in 0..K {
        results[lane] = (total[lane], -2.0 * gradient[lane], 2.0 * hessian[lane]);
    }
    results
}

/// The SES constant on `[lower, upper]` with the least in-sample one-step SSE.
///
/// statsforecast searches the same bounds by golden section on the SSE alone
/// (about 55 evaluations). Here the first golden-section steps are taken exactly
/// as statsforecast takes them (they decide which of several minima the search
/// ends in), then the SSE comes with its derivatives and the search is a
/// safeguarded Newton iteration on the derivative: a bound whose derivative
/// points outwards is a minimum and is returned as is; otherwise the root of the
/// derivative is kept bracketed and Newton steps that leave the bracket or stall
/// become bisections. Both find the same minimum on a unimodal error, here to
/// about 1e-10. An error that is flat (say zeros, then one demand at the end)
/// leaves the choice arbitrary; statsforecast then stops at the middle of the
/// bounds, and so does this.
///
/// Cost: every pass over the values evaluates several constants at once (the
/// first two golden points with the middle, and both points the first step may
/// need when the steps are odd in number; each golden step with both points the
/// next step may need; a bound's derivative with Newton's start), which the
/// processor overlaps; and Newton starts from the parabola through the last
/// golden points and stops once its steps show the next would be negligible.
/// On intermittent demand a search takes about 4 to 5 passes over the values
/// (half of them evaluating three or five constants) where the search one
/// constant at a time took about 10 (7 of the error, 3 of the error with
/// derivatives).
pub(crate) fn optimal_alpha(values: &[f64], lower: f64, upper: f64) -> f64 {
    let middle = 0.5 * (lower + upper);
    if values.len() < 2 {
        // Nothing to score: every constant gives the same forecast.
        return middle;
    }
    let mut golden = Golden::new(lower, upper);
    if golden.steps().is_multiple_of(2) {
        // Steps go two per pass after this one.
        let ([at_c, at_d, at_middle], energy) = sse_lanes(values, [golden.c, golden.d, middle]);
        golden.at_c = at_c;
        golden.at_d = at_d;
        let (best, least) = search(values, lower, upper, golden);
        return if (at_middle - least).abs() <= 1e-12 * energy {
            middle
        } else {
            best
        };
    }
    // An odd number of steps: the first pass also takes the first step's
    // point, for either outcome, and the rest go two per pass.
    let ([at_c, at_d, at_middle, at_lower, at_upper], energy) = sse_lanes(
        values,
        [
            golden.c,
            golden.d,
            middle,
            golden.peek(Side::Lower),
            golden.peek(Side::Upper),
        ],
    );
    golden.at_c = at_c;
    golden.at_d = at_d;
    let (best, least) = if golden.width() < GOLDEN_WIDTH {
        search(values, lower, upper, golden)
    } else {
        match golden.side() {
            Some(side) => {
                golden.step(
                    side,
                    match side {
                        Side::Lower => at_lower,
                        Side::Upper => at_upper,
                    },
                );
                search(values, lower, upper, golden)
            }
            // statsforecast stops at a tie, in the middle of the bracket.
            None => (middle, at_middle),
        }
    };
    // "Flat" up to rounding relative to the size of the data.
    if (at_middle - least).abs() <= 1e-12 * energy {
        middle
    } else {
        best
    }
}

/// Which part of a golden-section bracket keeps the minimum.
#[derive(Clone, Copy)]
enum Side {
    /// `[a, d]`: the SSE at `c` is the smaller.
    Lower,
    /// `[c, b]`: the SSE at `d` is the smaller.
    Upper,
}

/// A golden-section bracket `[a, b]` with its inner points `c < d` and the SSE
/// at each, stepped exactly as statsforecast steps it.
#[derive(Clone, Copy)]
struct Golden {
    a: f64,
    b: f64,
    c: f64,
    d: f64,
    at_c: f64,
    at_d: f64,
    /// The SSE at `a` and `b` once they are former inner points (NaN before).
    at_a: f64,
    at_b: f64,
}

impl Golden {
    fn new(lower: f64, upper: f64) -> Self {
        let ratio = Self::ratio();
        Golden {
            a: lower,
            b: upper,
            c: upper - (upper - lower) / ratio,
            d: lower + (upper - lower) / ratio,
            at_c: f64::NAN,
            at_d: f64::NAN,
            at_a: f64::NAN,
            at_b: f64::NAN,
        }
    }

    /// `(sqrt(5) + 1) / 2` as statsforecast computes it.
    fn ratio() -> f64 {
        (5f64.sqrt() + 1.0) / 2.0
    }

    fn width(&self) -> f64 {
        (self.b - self.a).abs()
    }

    /// About how many steps narrow the bracket below `GOLDEN_WIDTH` (each
    /// takes it to 1 / ratio of its width): 3 for a bracket 0.2 wide, 7 for
    /// 0.98. Only the grouping of evaluations into passes depends on it.
    fn steps(&self) -> usize {
        let mut width = self.width();
        let mut steps = 0;
        while width >= GOLDEN_WIDTH && steps < MAX_SEARCH_STEPS {
            width /= Self::ratio();
            steps += 1;
        }
        steps
    }

    /// The side to keep; `None` on a tie (or NaN), where statsforecast stops.
    fn side(&self) -> Option<Side> {
        if self.at_c < self.at_d {
            Some(Side::Lower)
        } else if self.at_d < self.at_c {
            Some(Side::Upper)
        } else {
            None
        }
    }

    /// The new inner point a step to `side` evaluates.
    fn peek(&self, side: Side) -> f64 {
        let ratio = Self::ratio();
        match side {
            Side::Lower => self.d - (self.d - self.a) / ratio,
            Side::Upper => self.c + (self.b - self.c) / ratio,
        }
    }

    /// The lowest point of the parabola through the better inner point and its
    /// neighbours, when their SSEs are known (a bound of the search has none),
    /// the parabola opens upwards and the point lies inside the bracket: a
    /// start for Newton within about 1e-3 of the minimum, where the better inner
    /// point is within about 1e-2.
    fn vertex(&self) -> Option<f64> {
        let ((x0, f0), (x1, f1), (x2, f2)) = if self.at_c < self.at_d {
            (
                (self.a, self.at_a),
                (self.c, self.at_c),
                (self.d, self.at_d),
            )
        } else {
            (
                (self.c, self.at_c),
                (self.d, self.at_d),
                (self.b, self.at_b),
            )
        };
        if !(f1 <= f0 && f1 <= f2) {
            return None;
        }
        let p = (x1 - x0) * (f1 - f2);
        let q = (x1 - x2) * (f1 - f0);
        let x = x1 - ((x1 - x0) * p - (x1 - x2) * q) / (2.0 * (p - q));
        (x > self.a && x < self.b).then_some(x)
    }

    /// Narrows the bracket to `side`, with `value` the SSE at the new inner
    /// point (`peek(side)`).
    fn step(&mut self, side: Side, value: f64) {
        let point = self.peek(side);
        match side {
            Side::Lower => {
                self.b = self.d;
                self.at_b = self.at_d;
                self.d = self.c;
                self.at_d = self.at_c;
                self.c = point;
                self.at_c = value;
            }
            Side::Upper => {
                self.a = self.c;
                self.at_a = self.at_c;
                self.c = self.d;
                self.at_c = self.at_d;
                self.d = point;
                self.at_d = value;
            }
        }
    }
}

/// Golden-section steps as statsforecast takes them until the bracket is
/// `GOLDEN_WIDTH` wide, then Newton on the derivative inside it. Returns the
/// constant and its SSE. Each pass over the values takes two golden steps: the
/// next point, and both points the step after may need.
fn search(values: &[f64], lower: f64, upper: f64, mut golden: Golden) -> (f64, f64) {
    let tie = |golden: &Golden| {
        // statsforecast stops at a tie, in the middle of the bracket.
        let x = (golden.a + golden.b) / 2.0;
        (x, sse(values, x))
    };
    while golden.width() >= GOLDEN_WIDTH {
        let Some(first) = golden.side() else {
            return tie(&golden);
        };
        let point = golden.peek(first);
        // Where the step after goes, for either outcome of this one.
        let mut after = golden;
        after.step(first, f64::NAN);
        let ([at_point, at_lower, at_upper], _) = sse_lanes(
            values,
            [point, after.peek(Side::Lower), after.peek(Side::Upper)],
        );
        golden.step(first, at_point);
        if golden.width() < GOLDEN_WIDTH {
            break;
        }
        let Some(second) = golden.side() else {
            return tie(&golden);
        };
        golden.step(
            second,
            match second {
                Side::Lower => at_lower,
                Side::Upper => at_upper,
            },
        );
    }
    let start = golden.vertex().unwrap_or(if golden.at_c < golden.at_d {
        golden.c
    } else {
        golden.d
    });
    // The minimum of [a, b] is at a bound of the search when the derivative
    // there points outwards; the derivative at Newton's start comes in the
    // same pass.
    let bound = if golden.a == lower {
        Some((lower, Side::Lower))
    } else if golden.b == upper {
        Some((upper, Side::Upper))
    } else {
        None
    };
    let at_start = match bound {
        Some((bound, side)) => {
            let [(total, slope, _), at_start] = sse_with_derivatives_lanes(values, [bound, start]);
            match side {
                Side::Lower if slope >= 0.0 => return (bound, total),
                Side::Upper if slope <= 0.0 => return (bound, total),
                _ => at_start,
            }
        }
        None => sse_with_derivatives(values, start),
    };
    newton(values, golden.a, golden.b, start, at_start)
}

/// A minimum of the SSE in `[low, high]` by Newton steps on the derivative from
/// `start` (where the SSE and its derivatives are `at_start`), each evaluation
/// narrowing the bracket by the sign of the derivative; a step that leaves the
/// bracket or does not halve the previous one becomes a bisection. Stops when a
/// step is below `ALPHA_TOLERANCE`, or when the last two Newton steps show the
/// next would be (Newton's error squares with each step, so a step of 1e-8
/// after one of 1e-4 leaves about 1e-16): that saves the pass that would only
/// confirm it. Returns the point and its SSE (that of the last point evaluated,
/// within rounding of the point returned).
fn newton(
    values: &[f64],
    mut low: f64,
    mut high: f64,
    start: f64,
    at_start: (f64, f64, f64),
) -> (f64, f64) {
    let mut x = start;
    let mut evaluated = at_start;
    let mut previous_step = high - low;
    let mut previous_newton_step: Option<f64> = None;
    let mut best = (x, f64::INFINITY);
    for iteration in 0..MAX_SEARCH_STEPS {
        if iteration > 0 {
            evaluated = sse_with_derivatives(values, x);
        }
        let (total, slope, curvature) = evaluated;
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
        let is_newton = curvature > 0.0
            && x - step > low
            && x - step < high
            && step.abs() < 0.5 * previous_step;
        let next = if is_newton {
            x - step
        } else {
            0.5 * (low + high)
        };
        previous_step = (next - x).abs();
        if previous_step < ALPHA_TOLERANCE || high - low < ALPHA_TOLERANCE {
            return (next, best.1);
        }
        if is_newton {
            if let Some(earlier) = previous_newton_step {
                let ratio = step / earlier;
                if step.abs() * ratio * ratio < 0.01 * ALPHA_TOLERANCE {
                    return (next, best.1);
                }
            }
            previous_newton_step = Some(step);
        } else {
            previous_newton_step = None;
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
