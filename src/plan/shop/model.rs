//! The shop model: jobs made of ordered operations, each runnable on any of
//! several machines with a machine-specific duration; machines with a time
//! they become free, a setup time per change of material family, and
//! operations already running on them that never move. Plus the answer
//! (`Schedule`), its floor score, and `check`, an independent feasibility
//! checker that shares no code with the search.
//!
//! Times are plain integers in one unit chosen by the caller (minutes in the
//! literature files, milliseconds on the floor).

use std::fmt;

/// A point or a length of time, in the caller's unit.
pub type Time = i64;

/// One way to run an operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alternative {
    /// Index into `Problem::machines`.
    pub machine: usize,
    /// Processing time on that machine; at least 1.
    pub duration: Time,
    /// Cost of the floor objective's last term when the operation runs here
    /// (the metres from the machine's factory to the customer, say); 0 in the
    /// literature.
    pub distance: i64,
}

/// An operation already running: it keeps its machine and start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fixed {
    pub machine: usize,
    pub start: Time,
}

/// One step of a job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub alternatives: Vec<Alternative>,
    /// Material family: a machine changing from one family to another spends
    /// its `setup` time first. `None` never causes a setup.
    pub family: Option<u32>,
    /// Running now: only the first operation of a job can be.
    pub fixed: Option<Fixed>,
}

/// A job: operations that run in the given order, each after the previous ends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub operations: Vec<Operation>,
    /// No operation of the job starts before this.
    pub release: Time,
    /// When the job should be finished (floor objective only).
    pub due: Option<Time>,
    /// Jobs with the same order index make one order: the order is late when
    /// any of them is (floor objective only).
    pub order: usize,
}

/// A machine.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Machine {
    /// No operation that is not fixed starts on it before this.
    pub available_from: Time,
    /// Time spent when the family changes between consecutive operations
    /// (and before the first one, when it differs from `loaded_family`).
    pub setup: Time,
    pub loaded_family: Option<u32>,
    /// When an operation that is not fixed may start on it (default: any time).
    pub openings: Openings,
}

/// When a machine may start an operation, as far ahead as the caller
/// looked (`until`; from then on, at any time): inside one of its `shifts`
/// (None: at any time), with the run `[start, start + duration)` meeting
/// none of the `blocked` intervals (maintenance). An operation may run past
/// its shift's end. Intervals are `[from, to)`; `from < to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Openings {
    pub shifts: Option<Vec<(Time, Time)>>,
    pub blocked: Vec<(Time, Time)>,
    pub until: Time,
}

impl Default for Openings {
    /// Always open.
    fn default() -> Openings {
        Openings {
            shifts: None,
            blocked: Vec::new(),
            until: Time::MIN,
        }
    }
}

impl Openings {
    /// Whether an operation of `duration` may start at `start`.
    pub fn allows(&self, start: Time, duration: Time) -> bool {
        if start >= self.until {
            return true;
        }
        let in_shift = self
            .shifts
            .as_ref()
            .is_none_or(|shifts| shifts.iter().any(|&(from, to)| from <= start && start < to));
        let end = start.saturating_add(duration.max(1));
        in_shift
            && !self
                .blocked
                .iter()
                .any(|&(from, to)| from < end && start < to)
    }

    /// The earliest instant at or after `from` at which an operation of
    /// `duration` may start. The instants allowed form intervals whose left
    /// ends are `from`, a shift's start, a blocked interval's end or
    /// `until`; trying those in order finds the first.
    pub fn earliest_start(&self, from: Time, duration: Time) -> Time {
        let mut t = from;
        loop {
            if self.allows(t, duration) {
                return t;
            }
            let end = t.saturating_add(duration.max(1));
            // Past every reason `t` fails: the next shift's start when `t`
            // is outside every shift, the end of a blocked interval the
            // run meets; never beyond `until`.
            let outside = self.shifts.as_ref().and_then(|shifts| {
                (!shifts.iter().any(|&(a, b)| a <= t && t < b)).then(|| {
                    shifts
                        .iter()
                        .map(|&(a, _)| a)
                        .filter(|&a| a > t)
                        .min()
                        .unwrap_or(self.until)
                })
            });
            let blocked = self
                .blocked
                .iter()
                .filter(|&&(a, b)| a < end && t < b)
                .map(|&(_, b)| b)
                .max();
            let next = outside
                .into_iter()
                .chain(blocked)
                .max()
                .unwrap_or(self.until)
                .min(self.until);
            // Every candidate lies after `t`, so this ends.
            t = next.max(t.saturating_add(1));
        }
    }
}

/// A problem to schedule.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Problem {
    pub jobs: Vec<Job>,
    pub machines: Vec<Machine>,
}

/// What the search minimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Objective {
    /// The end of the last operation (the literature's FJSP).
    Makespan,
    /// Lexicographic: late orders, then total lateness, then setup time, then
    /// distance, then makespan.
    Floor,
}

/// A problem the engine refuses, with the place of the first fault found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelError {
    pub job: usize,
    pub op: usize,
    pub reason: String,
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "job {} operation {}: {}", self.job, self.op, self.reason)
    }
}

impl std::error::Error for ModelError {}

impl Problem {
    /// Checks what the search relies on: every operation has an alternative,
    /// machines exist, durations are positive, fixed operations come first in
    /// their job, run on a listed machine and do not overlap each other.
    pub fn validate(&self) -> Result<(), ModelError> {
        let fail = |job: usize, op: usize, reason: String| ModelError { job, op, reason };
        let mut fixed: Vec<(usize, Time, Time, usize, usize)> = Vec::new();
        for (j, job) in self.jobs.iter().enumerate() {
            for (o, op) in job.operations.iter().enumerate() {
                if op.alternatives.is_empty() {
                    return Err(fail(j, o, "no machine can run it".into()));
                }
                for alt in &op.alternatives {
                    if alt.machine >= self.machines.len() {
                        return Err(fail(
                            j,
                            o,
                            format!(
                                "machine {} does not exist ({} machines)",
                                alt.machine,
                                self.machines.len()
                            ),
                        ));
                    }
                    if alt.duration < 1 {
                        return Err(fail(
                            j,
                            o,
                            format!("duration must be at least 1, got {}", alt.duration),
                        ));
                    }
                }
                for (a, alt) in op.alternatives.iter().enumerate() {
                    if op.alternatives[..a]
                        .iter()
                        .any(|b| b.machine == alt.machine)
                    {
                        return Err(fail(j, o, format!("machine {} listed twice", alt.machine)));
                    }
                }
                if let Some(f) = op.fixed {
                    if o != 0 {
                        return Err(fail(
                            j,
                            o,
                            "only a job's first operation can be running".into(),
                        ));
                    }
                    let Some(alt) = op.alternatives.iter().find(|a| a.machine == f.machine) else {
                        return Err(fail(
                            j,
                            o,
                            format!("running on machine {}, which cannot run it", f.machine),
                        ));
                    };
                    fixed.push((f.machine, f.start, f.start + alt.duration, j, o));
                }
            }
        }
        fixed.sort_unstable();
        for pair in fixed.windows(2) {
            if pair[0].0 == pair[1].0 && pair[1].1 < pair[0].2 {
                return Err(fail(
                    pair[1].3,
                    pair[1].4,
                    format!(
                        "running on machine {} at the same time as job {}",
                        pair[1].0, pair[0].3
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Setup time on `machine` between an operation of family `from` (or the
    /// loaded family, for `None`) and one of family `to`.
    pub fn setup_between(&self, machine: usize, from: Option<u32>, to: Option<u32>) -> Time {
        let Some(m) = self.machines.get(machine) else {
            return 0;
        };
        match (from.or(m.loaded_family), to) {
            (Some(a), Some(b)) if a != b => m.setup,
            _ => 0,
        }
    }
}

/// One operation of the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScheduledOp {
    pub job: usize,
    pub op: usize,
    pub machine: usize,
    pub start: Time,
    pub end: Time,
}

/// The floor objective's terms, compared in this order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct FloorScore {
    pub late_orders: usize,
    pub total_lateness: Time,
    pub setup_time: Time,
    pub distance: i64,
    pub makespan: Time,
}

/// An answer: every operation once, by job then operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub operations: Vec<ScheduledOp>,
    pub makespan: Time,
    pub score: FloorScore,
    /// Search iterations run.
    pub iterations: u64,
}

/// A broken rule in a schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Violation {
    Missing {
        job: usize,
        op: usize,
    },
    Duplicate {
        job: usize,
        op: usize,
    },
    Incapable {
        job: usize,
        op: usize,
        machine: usize,
    },
    WrongDuration {
        job: usize,
        op: usize,
    },
    BeforeRelease {
        job: usize,
        op: usize,
    },
    Precedence {
        job: usize,
        op: usize,
    },
    Overlap {
        machine: usize,
        first: (usize, usize),
        second: (usize, usize),
    },
    FixedMoved {
        job: usize,
        op: usize,
    },
    /// Starts outside its machine's shifts or runs into maintenance.
    Closed {
        job: usize,
        op: usize,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::Missing { job, op } => write!(f, "job {job} op {op} is not scheduled"),
            Violation::Duplicate { job, op } => write!(f, "job {job} op {op} is scheduled twice"),
            Violation::Incapable { job, op, machine } => {
                write!(
                    f,
                    "job {job} op {op} is on machine {machine}, which cannot run it"
                )
            }
            Violation::WrongDuration { job, op } => {
                write!(f, "job {job} op {op} does not last its machine's duration")
            }
            Violation::BeforeRelease { job, op } => write!(
                f,
                "job {job} op {op} starts before its job's release or its machine is free"
            ),
            Violation::Precedence { job, op } => {
                write!(
                    f,
                    "job {job} op {op} starts before the previous operation ends"
                )
            }
            Violation::Overlap {
                machine,
                first,
                second,
            } => write!(
                f,
                "machine {machine}: job {} op {} starts before job {} op {} ends (plus setup)",
                second.0, second.1, first.0, first.1
            ),
            Violation::FixedMoved { job, op } => {
                write!(f, "job {job} op {op} is running but was moved")
            }
            Violation::Closed { job, op } => write!(
                f,
                "job {job} op {op} starts outside its machine's shifts or runs into its maintenance"
            ),
        }
    }
}

/// Checks a schedule against every rule of the model, independently of the
/// search: capability and duration, precedence, release times, fixed
/// operations, one operation at a time per machine with setups between.
pub fn check(problem: &Problem, operations: &[ScheduledOp]) -> Result<(), Violation> {
    let mut seen: Vec<Vec<Option<ScheduledOp>>> = problem
        .jobs
        .iter()
        .map(|job| vec![None; job.operations.len()])
        .collect();
    for s in operations {
        let Some(slot) = seen.get_mut(s.job).and_then(|ops| ops.get_mut(s.op)) else {
            return Err(Violation::Incapable {
                job: s.job,
                op: s.op,
                machine: s.machine,
            });
        };
        if slot.is_some() {
            return Err(Violation::Duplicate {
                job: s.job,
                op: s.op,
            });
        }
        *slot = Some(*s);
    }
    let mut per_machine: Vec<Vec<ScheduledOp>> = vec![Vec::new(); problem.machines.len()];
    for (j, job) in problem.jobs.iter().enumerate() {
        let mut previous_end = Time::MIN;
        for (o, op) in job.operations.iter().enumerate() {
            let Some(s) = seen[j][o] else {
                return Err(Violation::Missing { job: j, op: o });
            };
            let Some(alt) = op.alternatives.iter().find(|a| a.machine == s.machine) else {
                return Err(Violation::Incapable {
                    job: j,
                    op: o,
                    machine: s.machine,
                });
            };
            if s.end - s.start != alt.duration {
                return Err(Violation::WrongDuration { job: j, op: o });
            }
            if let Some(f) = op.fixed {
                if f.machine != s.machine || f.start != s.start {
                    return Err(Violation::FixedMoved { job: j, op: o });
                }
            } else {
                let machine = &problem.machines[s.machine];
                if s.start < job.release || s.start < machine.available_from {
                    return Err(Violation::BeforeRelease { job: j, op: o });
                }
                if !machine.openings.allows(s.start, alt.duration) {
                    return Err(Violation::Closed { job: j, op: o });
                }
            }
            if s.start < previous_end {
                return Err(Violation::Precedence { job: j, op: o });
            }
            previous_end = s.end;
            per_machine[s.machine].push(s);
        }
    }
    for (m, list) in per_machine.iter_mut().enumerate() {
        list.sort_by_key(|s| (s.start, s.end, s.job, s.op));
        let family = |s: &ScheduledOp| problem.jobs[s.job].operations[s.op].family;
        let fixed = |s: &ScheduledOp| problem.jobs[s.job].operations[s.op].fixed.is_some();
        if let Some(first) = list.first()
            && !fixed(first)
        {
            let setup = problem.setup_between(m, None, family(first));
            if first.start < problem.machines[m].available_from + setup {
                return Err(Violation::BeforeRelease {
                    job: first.job,
                    op: first.op,
                });
            }
        }
        for pair in list.windows(2) {
            let (a, b) = (&pair[0], &pair[1]);
            let setup = if fixed(b) {
                0
            } else {
                problem.setup_between(m, family(a), family(b))
            };
            if b.start < a.end + setup {
                return Err(Violation::Overlap {
                    machine: m,
                    first: (a.job, a.op),
                    second: (b.job, b.op),
                });
            }
        }
    }
    Ok(())
}

/// The floor score of a feasible schedule (setups counted between
/// consecutive operations of each machine, by start time).
pub fn floor_score(problem: &Problem, operations: &[ScheduledOp]) -> FloorScore {
    let mut score = FloorScore::default();
    let orders = problem.jobs.iter().map(|j| j.order + 1).max().unwrap_or(0);
    let mut order_lateness: Vec<Option<Time>> = vec![None; orders];
    let mut job_end = vec![Time::MIN; problem.jobs.len()];
    let mut per_machine: Vec<Vec<&ScheduledOp>> = vec![Vec::new(); problem.machines.len()];
    for s in operations {
        score.makespan = score.makespan.max(s.end);
        if let Some(end) = job_end.get_mut(s.job) {
            *end = (*end).max(s.end);
        }
        if let Some(alt) = problem
            .jobs
            .get(s.job)
            .and_then(|j| j.operations.get(s.op))
            .and_then(|o| o.alternatives.iter().find(|a| a.machine == s.machine))
        {
            score.distance += alt.distance;
        }
        if let Some(list) = per_machine.get_mut(s.machine) {
            list.push(s);
        }
    }
    for (j, job) in problem.jobs.iter().enumerate() {
        if let (Some(due), Some(slot)) = (job.due, order_lateness.get_mut(job.order))
            && job_end[j] != Time::MIN
        {
            let late = (job_end[j] - due).max(0);
            *slot = Some(slot.map_or(late, |l: Time| l.max(late)));
        }
    }
    for late in order_lateness.into_iter().flatten() {
        if late > 0 {
            score.late_orders += 1;
            score.total_lateness += late;
        }
    }
    for (m, list) in per_machine.iter_mut().enumerate() {
        list.sort_by_key(|s| (s.start, s.end));
        let family = |s: &ScheduledOp| problem.jobs[s.job].operations[s.op].family;
        let fixed = |s: &ScheduledOp| problem.jobs[s.job].operations[s.op].fixed.is_some();
        let mut previous: Option<Option<u32>> = None;
        for s in list.iter() {
            if !fixed(s) {
                score.setup_time += problem.setup_between(m, previous.flatten(), family(s));
            }
            previous = Some(family(s));
        }
    }
    score
}
