//! Lateness of a schedule and lower bounds on it, for judging a plan's
//! quality: how late the jobs of a machine queue finish when run back to back,
//! and how little lateness any schedule could have.
//!
//! Invariant (tested): for jobs that all start no earlier than 0 and take the
//! same time on every machine of a set of `machines` identical ones, no
//! schedule of them on those machines has fewer late jobs or less total
//! lateness than `lateness_bound` says. Lateness here is tardiness:
//! `max(0, end - due)`.

use crate::domain::Millis;

/// Late jobs and their total lateness (tardiness), in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Lateness {
    pub late_jobs: usize,
    pub total_lateness_ms: Millis,
}

impl std::ops::Add for Lateness {
    type Output = Lateness;
    fn add(self, other: Lateness) -> Lateness {
        Lateness {
            late_jobs: self.late_jobs + other.late_jobs,
            total_lateness_ms: self.total_lateness_ms + other.total_lateness_ms,
        }
    }
}

impl Lateness {
    /// The larger of two bounds, term by term (each a valid lower bound).
    pub fn max(self, other: Lateness) -> Lateness {
        Lateness {
            late_jobs: self.late_jobs.max(other.late_jobs),
            total_lateness_ms: self.total_lateness_ms.max(other.total_lateness_ms),
        }
    }
}

/// A job as these bounds see it: how long it takes and when it is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimedJob {
    pub processing_ms: Millis,
    pub due_ms: Millis,
}

/// One machine running `queue` in order, back to back from `start_ms`.
pub fn queue_lateness(queue: &[TimedJob], start_ms: Millis) -> Lateness {
    let mut end = start_ms;
    let mut lateness = Lateness::default();
    for job in queue {
        end += job.processing_ms;
        if end > job.due_ms {
            lateness.late_jobs += 1;
            lateness.total_lateness_ms += end - job.due_ms;
        }
    }
    lateness
}

/// A lower bound on the late jobs and on the total lateness of `jobs`
/// (released at 0, no pre-emption) on `machines` identical machines.
///
/// Why it holds: take any schedule and list the jobs by completion time
/// `C(1) <= C(2) <= ...`. Running them in that order on one machine `machines`
/// times as fast finishes job i at `(p(1) + ... + p(i)) / machines <= C(i)`,
/// since that work was done by `C(i)` on `machines` machines. So:
///
/// - late jobs: at least the optimum of that fast machine, which Moore and
///   Hodgson's rule computes exactly; and at least the jobs that are late even
///   alone (`p > due`);
/// - total lateness: the i-th smallest completion time is at least
///   `max(S(i) / machines, q(i))`, where `S(i)` sums the i shortest processing
///   times and `q(i)` is the i-th shortest one (the i first-finished jobs
///   include one at least that long). Tardiness `max(0, C - d)` only grows
///   with `C`, and pairing sorted completion times with sorted due dates
///   minimises the sum of a convex function of their difference, so summing
///   `max(0, that bound - d(i))` over due dates in ascending order is a lower
///   bound. Fractions are rounded down.
///
/// With no machine there is no schedule to bound: the result is zero.
pub fn lateness_bound(jobs: &[TimedJob], machines: usize) -> Lateness {
    if machines == 0 || jobs.is_empty() {
        return Lateness::default();
    }
    let k = machines as i128;
    // Late jobs: Moore-Hodgson on the fast machine, in units scaled by k.
    let mut by_due: Vec<TimedJob> = jobs.to_vec();
    by_due.sort_by_key(|job| (job.due_ms, job.processing_ms));
    let mut kept = std::collections::BinaryHeap::new();
    let mut work: i128 = 0;
    let mut removed = 0;
    for job in &by_due {
        kept.push(job.processing_ms);
        work += i128::from(job.processing_ms);
        if work > k * i128::from(job.due_ms.max(0)) {
            if let Some(longest) = kept.pop() {
                work -= i128::from(longest);
            }
            removed += 1;
        }
    }
    let alone = jobs
        .iter()
        .filter(|job| job.processing_ms > job.due_ms)
        .count();
    // Total lateness: sorted completion bounds against sorted due dates.
    let mut processing: Vec<Millis> = jobs.iter().map(|job| job.processing_ms).collect();
    processing.sort_unstable();
    let mut prefix: i128 = 0;
    let mut total: i128 = 0;
    for (shortest, job) in processing.iter().zip(&by_due) {
        prefix += i128::from(*shortest);
        let completion = (prefix / k).max(i128::from(*shortest));
        total += (completion - i128::from(job.due_ms)).max(0);
    }
    Lateness {
        late_jobs: removed.max(alone),
        total_lateness_ms: Millis::try_from(total).unwrap_or(Millis::MAX),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn job(processing_ms: Millis, due_ms: Millis) -> TimedJob {
        TimedJob {
            processing_ms,
            due_ms,
        }
    }

    #[test]
    fn one_machine_queue_and_bound() {
        let jobs = [job(10, 10), job(10, 15), job(10, 40)];
        // Back to back: ends 10, 20, 30; only the second is late, by 5.
        let expected = Lateness {
            late_jobs: 1,
            total_lateness_ms: 5,
        };
        assert_eq!(queue_lateness(&jobs, 0), expected);
        // On one machine this order is optimal, and the bound is exact.
        assert_eq!(lateness_bound(&jobs, 1), expected);
        // Two machines: nobody needs to be late.
        assert_eq!(lateness_bound(&jobs, 2), Lateness::default());
    }

    proptest! {
        /// Any schedule: jobs dealt to machines in some order, each machine
        /// running its share back to back, is never better than the bound.
        #[test]
        fn bound_never_exceeds_a_schedule(
            jobs in prop::collection::vec((1i64..50, 0i64..200, 0usize..4), 1..30),
            machines in 1usize..5,
        ) {
            let timed: Vec<TimedJob> = jobs.iter().map(|&(p, d, _)| job(p, d)).collect();
            let mut queues = vec![Vec::new(); machines];
            for (&(p, d, m), _) in jobs.iter().zip(0..) {
                queues[m % machines].push(job(p, d));
            }
            let bound = lateness_bound(&timed, machines);
            for pass in 0..2 {
                if pass == 1 {
                    // Earliest due first on each machine: a tighter schedule.
                    for queue in &mut queues {
                        queue.sort_by_key(|job| job.due_ms);
                    }
                }
                let actual = queues
                    .iter()
                    .map(|queue| queue_lateness(queue, 0))
                    .fold(Lateness::default(), |a, b| a + b);
                prop_assert!(bound.late_jobs <= actual.late_jobs, "{bound:?} > {actual:?}");
                prop_assert!(
                    bound.total_lateness_ms <= actual.total_lateness_ms,
                    "{bound:?} > {actual:?}"
                );
            }
        }
    }
}
