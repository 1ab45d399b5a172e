//! Machine counters: what a job produced, from counters that count per job
//! or lifetime totals.
//!
//! A cumulative counter is read when the job is started (its baseline, stored
//! with the job) and again when it is done; the job made the difference,
//! taken modulo the register's range so a counter that wrapped past its
//! largest value in between still gives the right count (one wrap at most:
//! a job never makes 65 536 units).

/// What a machine's counter counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counting {
    /// Units of the current job; the machine resets it at each start.
    PerJob,
    /// Lifetime totals, wrapping to 0 after `modulus - 1`.
    Cumulative { modulus: u64 },
}

/// How many units `now` is past `baseline` on a counter that wraps at
/// `modulus` (values at or above it are taken modulo it first).
pub fn delta(baseline: u32, now: u32, modulus: u64) -> u32 {
    if modulus == 0 {
        return now.wrapping_sub(baseline);
    }
    let base = u64::from(baseline) % modulus;
    let now = u64::from(now) % modulus;
    // Below modulus <= 2^32, so it fits.
    u32::try_from((now + modulus - base) % modulus).unwrap_or(u32::MAX)
}

/// The units a job made, from the counter it shows now and the value read
/// when the job was started. A cumulative counter without a baseline (a job
/// started before baselines were kept) is taken as shown.
pub fn produced(counting: Counting, baseline: Option<u32>, shown: u32) -> u32 {
    match (counting, baseline) {
        (Counting::PerJob, _) | (Counting::Cumulative { .. }, None) => shown,
        (Counting::Cumulative { modulus }, Some(baseline)) => delta(baseline, shown, modulus),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const U16: u64 = 1 << 16;
    const U32: u64 = 1 << 32;

    #[test]
    fn delta_counts_forward_and_across_the_wrap() {
        let table = [
            // (baseline, now, modulus, expected)
            (0, 0, U16, 0),
            (7, 9, U16, 2),
            (65_534, 65_535, U16, 1),
            (65_534, 0, U16, 2),
            (65_534, 3, U16, 5),
            (65_535, 65_535, U16, 0),
            (u32::MAX - 1, 1, U32, 3),
            (u32::MAX, u32::MAX, U32, 0),
            (5, 2, U32, u32::MAX - 2),
            // Out-of-range raw values are taken modulo the width.
            (65_536 + 4, 6, U16, 2),
        ];
        for (baseline, now, modulus, expected) in table {
            assert_eq!(
                delta(baseline, now, modulus),
                expected,
                "{baseline} -> {now} mod {modulus}"
            );
        }
    }

    #[test]
    fn produced_uses_the_baseline_only_for_cumulative_counters() {
        let cumulative = Counting::Cumulative { modulus: U16 };
        assert_eq!(produced(Counting::PerJob, Some(5), 2), 2);
        assert_eq!(produced(Counting::PerJob, None, 2), 2);
        assert_eq!(produced(cumulative, Some(5), 7), 2);
        assert_eq!(produced(cumulative, Some(65_535), 1), 2);
        assert_eq!(produced(cumulative, None, 7), 7);
    }
}
