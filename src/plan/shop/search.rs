//! The search: a list-scheduling construction, then a tabu search over the
//! disjunctive graph (machine assignment plus the sequence on each machine).
//!
//! A solution is an alternative per operation and a sequence per machine;
//! start times follow as longest paths (heads), and tails give the longest
//! path from an operation's end to the end of the schedule. Moves take one
//! operation out of its machine's sequence and insert it elsewhere, on the
//! same machine or another capable one:
//!
//! - makespan: the neighbourhood is built on the critical operations. Within
//!   each critical block (consecutive critical operations on one machine) an
//!   operation moves to the front or the back of the block, and the first or
//!   last one moves into it (N7, Zhang et al. 2007, which contains N5 of
//!   Nowicki and Smutnicki); every critical operation may also move to
//!   another capable machine, at the best position among those that cannot
//!   close a cycle (Mastrolilli and Gambardella 2000). Moves are ranked by an
//!   estimate of the longest path through the moved operations, computed
//!   from the current heads and tails in time linear in the block; the best
//!   move that is not tabu (or that beats the best known) is applied and the
//!   schedule recomputed exactly. Tabu attributes are the machine pairs
//!   reversed and the machine an operation left, for a randomised tenure.
//!   After a long stall the search restarts from the best schedule with a
//!   few random moves.
//! - floor: the same moves (on the path to the latest order, or random ones
//!   and moves next to an operation of the same family when nothing is
//!   late), each scored exactly, lexicographically.
//!
//! Invariants: every solution held is acyclic (a move that would close a
//! cycle is undone); fixed operations never move and stay first on their
//! machines; no clock is read (the caller's `progress` says when to stop),
//! so the result depends only on the problem, the options and the seed when
//! `max_iterations` ends the run.

use super::model::{
    Alternative, FloorScore, ModelError, Objective, Problem, Schedule, ScheduledOp, Time,
};
use crate::plan::vrp::rng::Rng;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

const NONE: u32 = u32::MAX;

/// How list scheduling finds the next operation to place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListRule {
    /// Compare every ready operation on every alternative (makespan's rule,
    /// and the definition of the floor's).
    Scan,
    /// The floor's rule through a heap by slack (`construct_floor`).
    FloorHeap,
}

/// How to run one solve.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SolveOptions {
    pub objective: Objective,
    pub seed: u64,
    /// Stop after this many iterations (a deterministic budget); the
    /// progress callback can stop earlier.
    pub max_iterations: u64,
}

impl Default for SolveOptions {
    fn default() -> Self {
        SolveOptions {
            objective: Objective::Makespan,
            seed: 1,
            max_iterations: u64::MAX,
        }
    }
}

/// Schedules `problem`. `progress` is called once per iteration and returns
/// the share of the time budget used (1.0 or more stops the search); the
/// caller reads the clock. With a callback that ignores the clock (`|| 0.0`)
/// and a finite `max_iterations`, the answer depends only on the arguments.
pub fn solve(
    problem: &Problem,
    options: &SolveOptions,
    progress: &mut dyn FnMut() -> f64,
) -> Result<Schedule, ModelError> {
    problem.validate()?;
    let flat = Flat::new(problem);
    let mut search = Search::new(&flat, options);
    let state = search.run(progress);
    Ok(search.to_schedule(&state))
}

/// A starting point for the floor search: a previous plan, as the machine
/// each operation was planned on and its planned start, per job and
/// operation (`hints[job][operation]`). The construction keeps each hinted
/// operation on its machine and places operations in the order of their
/// planned ends (so each machine's order and each job's order come back);
/// operations without a hint (new jobs, or whose machine is no longer among
/// their alternatives) are placed by the floor's list rule (least slack
/// first, on the machine that finishes them first), among the hinted ones
/// by comparing their slack (latest on-time start) with those ends: an
/// urgent new job goes ahead of every planned step that would otherwise
/// end after its latest start.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct WarmStart {
    pub hints: Vec<Vec<Option<(usize, Time)>>>,
}

/// `solve` under the floor objective, starting from `warm` rather than
/// from scratch: the re-plan after a change keeps what still holds of the
/// previous plan, and the search goes on from it. (Not cheaper than `solve`
/// as a whole: the problem is still flattened and scored in full.)
pub fn solve_from(
    problem: &Problem,
    options: &SolveOptions,
    warm: &WarmStart,
    progress: &mut dyn FnMut() -> f64,
) -> Result<Schedule, ModelError> {
    problem.validate()?;
    let flat = Flat::new(problem);
    let mut search = Search::new(&flat, options);
    let hints = flat.warm_hints(warm);
    let state = search.construct_warm(&hints);
    let state = search.improve(state, progress);
    Ok(search.to_schedule(&state))
}

/// The problem flattened: operations numbered globally, job by job.
struct Flat<'a> {
    problem: &'a Problem,
    n: usize,
    job_of: Vec<u32>,
    index_in_job: Vec<u32>,
    prev_job: Vec<u32>,
    next_job: Vec<u32>,
    alts: Vec<&'a [Alternative]>,
    release: Vec<Time>,
    family: Vec<Option<u32>>,
    /// (alternative index, start) of running operations.
    fixed: Vec<Option<(u16, Time)>>,
    avail: Vec<Time>,
    has_setups: bool,
    job_last: Vec<u32>,
    /// Minimal work left from each operation to its job's end, included.
    remaining: Vec<Time>,
    lower_bound: Time,
}

impl<'a> Flat<'a> {
    fn new(problem: &'a Problem) -> Flat<'a> {
        let mut flat = Flat {
            problem,
            n: 0,
            job_of: Vec::new(),
            index_in_job: Vec::new(),
            prev_job: Vec::new(),
            next_job: Vec::new(),
            alts: Vec::new(),
            release: Vec::new(),
            family: Vec::new(),
            fixed: Vec::new(),
            avail: problem.machines.iter().map(|m| m.available_from).collect(),
            has_setups: problem.machines.iter().any(|m| m.setup > 0),
            job_last: Vec::new(),
            remaining: Vec::new(),
            lower_bound: 0,
        };
        let mut total_min = 0;
        for (j, job) in problem.jobs.iter().enumerate() {
            let first = flat.n as u32;
            let count = job.operations.len();
            let mut job_min = 0;
            for (o, op) in job.operations.iter().enumerate() {
                let id = flat.n as u32;
                flat.job_of.push(j as u32);
                flat.index_in_job.push(o as u32);
                flat.prev_job.push(if o == 0 { NONE } else { id - 1 });
                flat.next_job
                    .push(if o + 1 == count { NONE } else { id + 1 });
                flat.alts.push(&op.alternatives);
                flat.release.push(job.release);
                flat.family.push(op.family);
                flat.fixed.push(op.fixed.and_then(|f| {
                    op.alternatives
                        .iter()
                        .position(|a| a.machine == f.machine)
                        .map(|a| (a as u16, f.start))
                }));
                let min = op
                    .alternatives
                    .iter()
                    .map(|a| a.duration)
                    .min()
                    .unwrap_or(0);
                job_min += min;
                total_min += min;
                flat.remaining.push(min);
                flat.n += 1;
            }
            flat.job_last.push(if count == 0 {
                NONE
            } else {
                first + count as u32 - 1
            });
            for id in (first as usize..flat.n).rev() {
                if flat.next_job[id] != NONE {
                    flat.remaining[id] += flat.remaining[flat.next_job[id] as usize];
                }
            }
            flat.lower_bound = flat.lower_bound.max(job.release + job_min);
        }
        let machines = problem.machines.len().max(1) as Time;
        let earliest = flat.avail.iter().copied().min().unwrap_or(0).min(0);
        flat.lower_bound = flat
            .lower_bound
            .max(earliest + (total_min + machines - 1) / machines);
        // Work that only one machine can do.
        let mut only = vec![0; problem.machines.len()];
        for alts in &flat.alts {
            if let [alt] = alts {
                only[alt.machine] += alt.duration;
            }
        }
        for (m, load) in only.iter().enumerate() {
            flat.lower_bound = flat.lower_bound.max(flat.avail[m] + load);
        }
        flat
    }
}

impl Flat<'_> {
    /// `warm`'s hints per flat operation, as (alternative, planned end: the
    /// planned start plus the duration there); none where the hinted
    /// machine is not among the alternatives.
    fn warm_hints(&self, warm: &WarmStart) -> Vec<Option<(u16, Time)>> {
        (0..self.n)
            .map(|op| {
                let job = self.job_of[op] as usize;
                let index = self.index_in_job[op] as usize;
                let (machine, start) = (*warm.hints.get(job)?.get(index)?)?;
                let alt = self.alts[op].iter().position(|a| a.machine == machine)?;
                Some((
                    alt as u16,
                    start.saturating_add(self.alts[op][alt].duration),
                ))
            })
            .collect()
    }

    /// Due time less the least work left from `op` to its job's end
    /// (`Time::MAX / 4` for a job with no due time): the floor's priority.
    fn slack(&self, op: u32) -> Time {
        self.problem.jobs[self.job_of[op as usize] as usize]
            .due
            .map_or(Time::MAX / 4, |due| due - self.remaining[op as usize])
    }
}

/// One candidate move: `op` to alternative `alt`, at `index` in that
/// machine's sequence once `op` has left its own.
#[derive(Debug, Clone, Copy)]
struct Move {
    op: u32,
    alt: u16,
    index: u32,
    estimate: Time,
    tie: u32,
}

struct Undo {
    op: u32,
    old_alt: u16,
    old_machine: u32,
    old_index: u32,
    new_machine: u32,
    new_index: u32,
}

#[derive(Clone)]
struct State {
    alt: Vec<u16>,
    seq: Vec<Vec<u32>>,
    pos: Vec<u32>,
    head: Vec<Time>,
    tail: Vec<Time>,
    makespan: Time,
    score: FloorScore,
}

struct Search<'a> {
    flat: &'a Flat<'a>,
    options: SolveOptions,
    rng: Rng,
    iterations: u64,
    /// Fixed operations at the front of each machine.
    fixed_count: Vec<u32>,
    indegree: Vec<u32>,
    order: Vec<u32>,
    /// (a, b): `a` may not be put before `b` on their machine until the iteration.
    tabu_pairs: HashMap<(u32, u32), u64>,
    /// (op, machine): `op` may not go back to `machine` until the iteration.
    tabu_machine: HashMap<(u32, u32), u64>,
    tenure: u64,
    moves: Vec<Move>,
}

impl<'a> Search<'a> {
    fn new(flat: &'a Flat<'a>, options: &SolveOptions) -> Search<'a> {
        let mut fixed_count = vec![0; flat.problem.machines.len()];
        for (op, fixed) in flat.fixed.iter().enumerate() {
            if let Some((alt, _)) = fixed {
                fixed_count[flat.alts[op][*alt as usize].machine] += 1;
            }
        }
        Search {
            flat,
            options: *options,
            rng: Rng::new(options.seed),
            iterations: 0,
            fixed_count,
            indegree: vec![0; flat.n],
            order: Vec::with_capacity(flat.n),
            tabu_pairs: HashMap::new(),
            tabu_machine: HashMap::new(),
            tenure: 4 + (flat.n as f64).sqrt() as u64 / 2,
            moves: Vec::new(),
        }
    }

    fn machine(&self, state: &State, op: u32) -> u32 {
        self.flat.alts[op as usize][state.alt[op as usize] as usize].machine as u32
    }

    fn duration(&self, state: &State, op: u32) -> Time {
        self.flat.alts[op as usize][state.alt[op as usize] as usize].duration
    }

    fn setup(&self, machine: u32, from: Option<u32>, to: u32) -> Time {
        if !self.flat.has_setups || self.flat.fixed[to as usize].is_some() {
            return 0;
        }
        self.flat.problem.setup_between(
            machine as usize,
            from.and_then(|f| self.flat.family[f as usize]),
            self.flat.family[to as usize],
        )
    }

    /// Earliest start of `op` on `machine` after `previous` (and its end) on
    /// that machine and its job predecessor's end.
    /// The earliest start of `op` (taking `duration`) on `machine` after
    /// `previous` (an operation and its end) and once its job is `job_ready`:
    /// after the setup, the machine's free time and the job's release, at
    /// the machine's next opening for a run that long.
    fn start_bound(
        &self,
        op: u32,
        machine: u32,
        duration: Time,
        previous: Option<(u32, Time)>,
        job_ready: Time,
    ) -> Time {
        if let Some((_, start)) = self.flat.fixed[op as usize] {
            return start;
        }
        let from_machine = match previous {
            Some((p, end)) => end + self.setup(machine, Some(p), op),
            None => self.flat.avail[machine as usize] + self.setup(machine, None, op),
        };
        let earliest = from_machine
            .max(self.flat.avail[machine as usize])
            .max(self.flat.release[op as usize])
            .max(job_ready);
        let openings = &self.flat.problem.machines[machine as usize].openings;
        if openings.shifts.is_none() && openings.blocked.is_empty() {
            earliest
        } else {
            openings.earliest_start(earliest, duration)
        }
    }

    fn reindex(&self, state: &mut State, machine: u32) {
        let State { seq, pos, .. } = state;
        for (i, &op) in seq[machine as usize].iter().enumerate() {
            pos[op as usize] = i as u32;
        }
    }

    /// Heads, tails, makespan and score from scratch; false on a cycle.
    fn evaluate(&mut self, state: &mut State) -> bool {
        let n = self.flat.n;
        self.order.clear();
        for op in 0..n {
            let mut d = 0;
            if self.flat.prev_job[op] != NONE {
                d += 1;
            }
            if state.pos[op] > 0 {
                d += 1;
            }
            self.indegree[op] = d;
            if d == 0 {
                self.order.push(op as u32);
            }
        }
        let mut next = 0;
        while next < self.order.len() {
            let op = self.order[next];
            next += 1;
            let m = self.machine(state, op);
            let p = state.pos[op as usize] as usize;
            let previous = if p > 0 {
                let a = state.seq[m as usize][p - 1];
                Some((a, state.head[a as usize] + self.duration(state, a)))
            } else {
                None
            };
            let jp = self.flat.prev_job[op as usize];
            let ready = if jp != NONE {
                state.head[jp as usize] + self.duration(state, jp)
            } else {
                Time::MIN
            };
            state.head[op as usize] =
                self.start_bound(op, m, self.duration(state, op), previous, ready);
            let js = self.flat.next_job[op as usize];
            if js != NONE {
                self.indegree[js as usize] -= 1;
                if self.indegree[js as usize] == 0 {
                    self.order.push(js);
                }
            }
            if let Some(&b) = state.seq[m as usize].get(p + 1) {
                self.indegree[b as usize] -= 1;
                if self.indegree[b as usize] == 0 {
                    self.order.push(b);
                }
            }
        }
        if self.order.len() < n {
            return false;
        }
        let mut makespan = 0;
        for i in (0..n).rev() {
            let op = self.order[i];
            let m = self.machine(state, op);
            let mut tail = 0;
            let js = self.flat.next_job[op as usize];
            if js != NONE {
                tail = self.duration(state, js) + state.tail[js as usize];
            }
            let p = state.pos[op as usize] as usize;
            if let Some(&b) = state.seq[m as usize].get(p + 1) {
                tail = tail.max(
                    self.setup(m, Some(op), b) + self.duration(state, b) + state.tail[b as usize],
                );
            }
            state.tail[op as usize] = tail;
            makespan = makespan.max(state.head[op as usize] + self.duration(state, op));
        }
        state.makespan = makespan;
        if self.options.objective == Objective::Floor {
            state.score = self.score(state);
        } else {
            state.score.makespan = makespan;
        }
        true
    }

    fn score(&self, state: &State) -> FloorScore {
        let problem = self.flat.problem;
        let mut score = FloorScore {
            makespan: state.makespan,
            ..FloorScore::default()
        };
        let mut order_late: HashMap<usize, Time> = HashMap::new();
        for (j, job) in problem.jobs.iter().enumerate() {
            let last = self.flat.job_last[j];
            if let (Some(due), true) = (job.due, last != NONE) {
                let end = state.head[last as usize] + self.duration(state, last);
                let late = (end - due).max(0);
                let slot = order_late.entry(job.order).or_insert(0);
                *slot = (*slot).max(late);
            }
        }
        for late in order_late.into_values() {
            if late > 0 {
                score.late_orders += 1;
                score.total_lateness += late;
            }
        }
        for op in 0..self.flat.n {
            score.distance += self.flat.alts[op][state.alt[op] as usize].distance;
        }
        for (m, seq) in state.seq.iter().enumerate() {
            let mut previous = None;
            for &op in seq {
                score.setup_time += self.setup(m as u32, previous, op);
                previous = Some(op);
            }
        }
        score
    }

    fn apply(&self, state: &mut State, mv: &Move) -> Undo {
        let op = mv.op;
        let old_machine = self.machine(state, op);
        let old_index = state.pos[op as usize];
        state.seq[old_machine as usize].remove(old_index as usize);
        let old_alt = state.alt[op as usize];
        state.alt[op as usize] = mv.alt;
        let new_machine = self.machine(state, op);
        let list = &mut state.seq[new_machine as usize];
        let index = (mv.index as usize).min(list.len());
        list.insert(index, op);
        self.reindex(state, old_machine);
        if new_machine != old_machine {
            self.reindex(state, new_machine);
        }
        Undo {
            op,
            old_alt,
            old_machine,
            old_index,
            new_machine,
            new_index: index as u32,
        }
    }

    fn undo(&self, state: &mut State, undo: &Undo) {
        state.seq[undo.new_machine as usize].remove(undo.new_index as usize);
        state.alt[undo.op as usize] = undo.old_alt;
        state.seq[undo.old_machine as usize].insert(undo.old_index as usize, undo.op);
        self.reindex(state, undo.old_machine);
        if undo.new_machine != undo.old_machine {
            self.reindex(state, undo.new_machine);
        }
    }

    /// List scheduling: repeatedly the ready operation and machine that
    /// finish first (makespan; ties to the most work left), or the ready
    /// operation of least slack on the machine that finishes it first
    /// (floor). Fixed operations are placed first.
    fn construct(&mut self) -> State {
        let rule = match self.options.objective {
            Objective::Floor => ListRule::FloorHeap,
            Objective::Makespan => ListRule::Scan,
        };
        self.construct_by(rule)
    }

    /// `construct` with the ready operations picked by `rule`.
    fn construct_by(&mut self, rule: ListRule) -> State {
        self.construct_with(rule, &[])
    }

    /// `construct_by`, with `hints` (per operation, or empty) for the
    /// floor heap.
    fn construct_with(&mut self, rule: ListRule, hints: &[Option<(u16, Time)>]) -> State {
        let flat = self.flat;
        let machines = flat.problem.machines.len();
        let mut state = State {
            alt: vec![0; flat.n],
            seq: vec![Vec::new(); machines],
            pos: vec![0; flat.n],
            head: vec![0; flat.n],
            tail: vec![0; flat.n],
            makespan: 0,
            score: FloorScore::default(),
        };
        let mut machine_end: Vec<Option<(u32, Time)>> = vec![None; machines];
        let mut job_ready: Vec<Time> = flat.problem.jobs.iter().map(|j| j.release).collect();
        let mut next_op: Vec<u32> = Vec::with_capacity(flat.job_last.len());
        let mut first = 0u32;
        for job in &flat.problem.jobs {
            let count = job.operations.len() as u32;
            next_op.push(if count == 0 { NONE } else { first });
            first += count;
        }
        // Running operations first, by start.
        let mut fixed: Vec<(Time, u32)> = (0..flat.n as u32)
            .filter_map(|op| flat.fixed[op as usize].map(|(_, start)| (start, op)))
            .collect();
        fixed.sort_unstable();
        for (start, op) in fixed {
            if let Some((alt, _)) = flat.fixed[op as usize] {
                state.alt[op as usize] = alt;
                let m = self.machine(&state, op);
                state.seq[m as usize].push(op);
                let end = start + self.duration(&state, op);
                machine_end[m as usize] = Some((op, end));
                let j = flat.job_of[op as usize] as usize;
                job_ready[j] = end;
                next_op[j] = flat.next_job[op as usize];
            }
        }
        match rule {
            ListRule::FloorHeap => {
                self.construct_floor(
                    &mut state,
                    &mut machine_end,
                    &mut job_ready,
                    &next_op,
                    hints,
                );
            }
            ListRule::Scan => loop {
                let floor = self.options.objective == Objective::Floor;
                let mut best: Option<(Time, Time, Time, u32, u16)> = None;
                for &op in &next_op {
                    if op == NONE {
                        continue;
                    }
                    let slack = flat.slack(op);
                    for (a, alt) in flat.alts[op as usize].iter().enumerate() {
                        let end = self.end_on(op, alt, &machine_end, &job_ready);
                        let key = if floor {
                            (slack, end, alt.distance)
                        } else {
                            (end, -flat.remaining[op as usize], 0)
                        };
                        let candidate = (key.0, key.1, key.2, op, a as u16);
                        if best.is_none_or(|b| candidate < b) {
                            best = Some(candidate);
                        }
                    }
                }
                let Some((_, _, _, op, a)) = best else {
                    break;
                };
                self.place(&mut state, &mut machine_end, &mut job_ready, op, a);
                next_op[flat.job_of[op as usize] as usize] = flat.next_job[op as usize];
            },
        }
        for m in 0..machines {
            self.reindex(&mut state, m as u32);
        }
        let acyclic = self.evaluate(&mut state);
        debug_assert!(acyclic, "list scheduling follows job order");
        state
    }

    /// The floor construction from a previous plan (`solve_from`): as
    /// `construct_by(FloorHeap)`, with hinted operations ranked by their
    /// planned end and kept on their machine.
    fn construct_warm(&mut self, hints: &[Option<(u16, Time)>]) -> State {
        self.construct_with(ListRule::FloorHeap, hints)
    }

    /// When `op` would end on alternative `alt`, after what that machine
    /// has and once its job is ready (list scheduling's look-ahead).
    fn end_on(
        &self,
        op: u32,
        alt: &Alternative,
        machine_end: &[Option<(u32, Time)>],
        job_ready: &[Time],
    ) -> Time {
        let job = self.flat.job_of[op as usize] as usize;
        let start = self.start_bound(
            op,
            alt.machine as u32,
            alt.duration,
            machine_end[alt.machine],
            job_ready[job],
        );
        start + alt.duration
    }

    /// Puts `op` on its alternative `a`, after what that machine has.
    fn place(
        &self,
        state: &mut State,
        machine_end: &mut [Option<(u32, Time)>],
        job_ready: &mut [Time],
        op: u32,
        a: u16,
    ) {
        state.alt[op as usize] = a;
        let m = self.machine(state, op);
        let j = self.flat.job_of[op as usize] as usize;
        let duration = self.duration(state, op);
        let start = self.start_bound(op, m, duration, machine_end[m as usize], job_ready[j]);
        let end = start + duration;
        state.seq[m as usize].push(op);
        machine_end[m as usize] = Some((op, end));
        job_ready[j] = end;
    }

    /// List scheduling under the floor objective: the ready operation of
    /// least slack, on the machine that finishes it first (then the nearer
    /// to the customer; then the lower operation and alternative). Slack
    /// does not depend on the machines, so the ready operations wait in a
    /// heap by slack and only those tied on the least slack are compared by
    /// their ends: the same choice as comparing every ready operation, in
    /// O(n log n) rather than O(n^2) when ties are few.
    ///
    /// With `hints` (a previous plan, see `WarmStart`), a hinted operation
    /// waits in the heap by its planned end instead of its slack and is
    /// compared only on its hinted alternative: the previous sequences come
    /// back in order, and unhinted operations join them by slack.
    fn construct_floor(
        &self,
        state: &mut State,
        machine_end: &mut [Option<(u32, Time)>],
        job_ready: &mut [Time],
        next_op: &[u32],
        hints: &[Option<(u16, Time)>],
    ) {
        let flat = self.flat;
        let hint = |op: u32| hints.get(op as usize).copied().flatten();
        let key = |op: u32| hint(op).map_or_else(|| flat.slack(op), |(_, end)| end);
        let mut ready: BinaryHeap<Reverse<(Time, u32)>> = next_op
            .iter()
            .filter(|&&op| op != NONE)
            .map(|&op| Reverse((key(op), op)))
            .collect();
        let mut tied = Vec::new();
        while let Some(Reverse((least, first))) = ready.pop() {
            // A hinted operation has one machine: nothing to compare.
            if let Some((a, _)) = hint(first) {
                self.place(state, machine_end, job_ready, first, a);
                let next = flat.next_job[first as usize];
                if next != NONE {
                    ready.push(Reverse((key(next), next)));
                }
                continue;
            }
            tied.clear();
            tied.push(first);
            while let Some(&Reverse((s, op))) = ready.peek() {
                if s != least {
                    break;
                }
                ready.pop();
                tied.push(op);
            }
            let mut best: Option<(Time, Time, u32, u16)> = None;
            for &op in &tied {
                let alts = flat.alts[op as usize].iter().enumerate();
                let hinted = hint(op).map(|(a, _)| a as usize);
                for (a, alt) in alts.filter(|(a, _)| hinted.is_none_or(|h| h == *a)) {
                    let end = self.end_on(op, alt, machine_end, job_ready);
                    let candidate = (end, alt.distance, op, a as u16);
                    if best.is_none_or(|b| candidate < b) {
                        best = Some(candidate);
                    }
                }
            }
            // Operations without alternatives are refused by validation.
            let Some((_, _, op, a)) = best else {
                continue;
            };
            for &other in &tied {
                if other != op {
                    ready.push(Reverse((least, other)));
                }
            }
            self.place(state, machine_end, job_ready, op, a);
            let next = flat.next_job[op as usize];
            if next != NONE {
                ready.push(Reverse((key(next), next)));
            }
        }
    }

    fn run(&mut self, progress: &mut dyn FnMut() -> f64) -> State {
        let state = self.construct();
        self.improve(state, progress)
    }

    /// The search from a constructed `state`.
    fn improve(&mut self, state: State, progress: &mut dyn FnMut() -> f64) -> State {
        if self.flat.n == 0 {
            return state;
        }
        match self.options.objective {
            Objective::Makespan => self.tabu_makespan(state, progress),
            Objective::Floor => self.floor_search(state, progress),
        }
    }

    fn stop(&mut self, progress: &mut dyn FnMut() -> f64) -> bool {
        if self.iterations >= self.options.max_iterations || progress() >= 1.0 {
            return true;
        }
        self.iterations += 1;
        false
    }

    fn critical(&self, state: &State, op: u32) -> bool {
        state.head[op as usize] + self.duration(state, op) + state.tail[op as usize]
            == state.makespan
    }

    /// Critical blocks: runs of critical operations joined by tight arcs on
    /// one machine, as (machine, first index, length).
    fn blocks(&self, state: &State, out: &mut Vec<(u32, u32, u32)>) {
        out.clear();
        for (m, seq) in state.seq.iter().enumerate() {
            let mut start: Option<usize> = None;
            for i in 0..seq.len() {
                let op = seq[i];
                let crit = self.critical(state, op);
                let joined = crit && i > 0 && start.is_some() && {
                    let a = seq[i - 1];
                    state.head[a as usize]
                        + self.duration(state, a)
                        + self.setup(m as u32, Some(a), op)
                        == state.head[op as usize]
                };
                if !joined {
                    if let Some(s) = start
                        && i - s >= 2
                    {
                        out.push((m as u32, s as u32, (i - s) as u32));
                    }
                    start = crit.then_some(i);
                }
            }
            if let Some(s) = start
                && seq.len() - s >= 2
            {
                out.push((m as u32, s as u32, (seq.len() - s) as u32));
            }
        }
    }

    /// Estimate of the longest path through the operations that a move of
    /// `op` from index `from` to index `to` (after removal) on its machine
    /// shifts; `None` when the move would put a job's operations out of order.
    fn estimate_shift(&self, state: &State, machine: u32, from: usize, to: usize) -> Option<Time> {
        let seq = &state.seq[machine as usize];
        let op = seq[from];
        let mut segment: [u32; 64] = [0; 64];
        let (lo, hi) = (from.min(to), from.max(to));
        let len = hi - lo + 1;
        if len > segment.len() {
            return None;
        }
        if to < from {
            segment[0] = op;
            segment[1..len].copy_from_slice(&seq[to..from]);
        } else {
            segment[..len - 1].copy_from_slice(&seq[from + 1..=to]);
            segment[len - 1] = op;
        }
        let segment = &segment[..len];
        // Place of an operation in the segment's new order.
        let in_segment = |x: u32| -> Option<usize> {
            if x == op {
                return Some(if to < from { 0 } else { len - 1 });
            }
            if self.machine(state, x) != machine {
                return None;
            }
            let p = state.pos[x as usize] as usize;
            if to < from {
                (to..from).contains(&p).then(|| p - to + 1)
            } else {
                (from + 1..=to).contains(&p).then(|| p - from - 1)
            }
        };
        let mut heads = [0 as Time; 64];
        let mut previous = if lo > 0 {
            let a = seq[lo - 1];
            Some((a, state.head[a as usize] + self.duration(state, a)))
        } else {
            None
        };
        for (k, &x) in segment.iter().enumerate() {
            let jp = self.flat.prev_job[x as usize];
            let ready = if jp == NONE {
                Time::MIN
            } else {
                match in_segment(jp) {
                    Some(i) if i < k => heads[i] + self.duration(state, jp),
                    Some(_) => return None,
                    None => state.head[jp as usize] + self.duration(state, jp),
                }
            };
            heads[k] = self.start_bound(x, machine, self.duration(state, x), previous, ready);
            previous = Some((x, heads[k] + self.duration(state, x)));
        }
        let mut estimate = 0;
        let mut following: Option<(u32, Time)> = seq
            .get(hi + 1)
            .map(|&b| (b, self.duration(state, b) + state.tail[b as usize]));
        let mut tails = [0 as Time; 64];
        for k in (0..len).rev() {
            let x = segment[k];
            let js = self.flat.next_job[x as usize];
            let mut tail = 0;
            if js != NONE {
                tail = match in_segment(js) {
                    Some(i) if i > k => tails[i] + self.duration(state, js),
                    Some(_) => return None,
                    None => state.tail[js as usize] + self.duration(state, js),
                };
            }
            if let Some((b, rest)) = following {
                tail = tail.max(self.setup(machine, Some(x), b) + rest);
            }
            tails[k] = tail;
            following = Some((x, self.duration(state, x) + tail));
            estimate = estimate.max(heads[k] + self.duration(state, x) + tail);
        }
        Some(estimate)
    }

    /// Range of indexes on `machine` where `op` can go without closing a
    /// cycle (a sufficient test on the current heads), and the best one by
    /// the estimate of the longest path through `op`.
    fn best_insertion(&self, state: &State, op: u32, alt: u16) -> Option<(u32, Time)> {
        let a = &self.flat.alts[op as usize][alt as usize];
        let machine = a.machine as u32;
        let seq = &state.seq[machine as usize];
        let r = state.head[op as usize];
        let end = r + self.duration(state, op);
        let fixed = self.fixed_count[machine as usize] as usize;
        let lo = seq
            .iter()
            .position(|&x| state.head[x as usize] + self.duration(state, x) > r)
            .unwrap_or(seq.len())
            .max(fixed);
        let hi = seq
            .iter()
            .position(|&x| state.head[x as usize] >= end)
            .unwrap_or(seq.len());
        if lo > hi {
            return None;
        }
        let jp = self.flat.prev_job[op as usize];
        let ready = if jp == NONE {
            Time::MIN
        } else {
            state.head[jp as usize] + self.duration(state, jp)
        };
        let js = self.flat.next_job[op as usize];
        let job_tail = if js == NONE {
            0
        } else {
            self.duration(state, js) + state.tail[js as usize]
        };
        let mut best: Option<(u32, Time)> = None;
        for k in lo..=hi {
            let previous = (k > 0).then(|| {
                let x = seq[k - 1];
                (x, state.head[x as usize] + self.duration(state, x))
            });
            let start = self.start_bound(op, machine, a.duration, previous, ready);
            let tail = match seq.get(k) {
                Some(&b) => job_tail.max(
                    self.setup(machine, Some(op), b)
                        + self.duration(state, b)
                        + state.tail[b as usize],
                ),
                None => job_tail,
            };
            let estimate = start + a.duration + tail;
            if best.is_none_or(|(_, e)| estimate < e) {
                best = Some((k as u32, estimate));
            }
        }
        best
    }

    fn is_tabu(&self, state: &State, mv: &Move) -> bool {
        let op = mv.op;
        let machine = self.machine(state, op);
        let target = self.flat.alts[op as usize][mv.alt as usize].machine as u32;
        let now = self.iterations;
        if target != machine {
            return self
                .tabu_machine
                .get(&(op, target))
                .is_some_and(|&until| until > now);
        }
        let seq = &state.seq[machine as usize];
        let from = state.pos[op as usize] as usize;
        let to = mv.index as usize;
        if to < from {
            // op passes seq[to..from] leftwards: op now before each.
            seq[to..from]
                .iter()
                .any(|&x| self.tabu_pairs.get(&(op, x)).is_some_and(|&u| u > now))
        } else {
            seq[from + 1..=to.min(seq.len() - 1)]
                .iter()
                .any(|&x| self.tabu_pairs.get(&(x, op)).is_some_and(|&u| u > now))
        }
    }

    fn make_tabu(&mut self, state: &State, mv: &Move) {
        let op = mv.op;
        let machine = self.machine(state, op);
        let target = self.flat.alts[op as usize][mv.alt as usize].machine as u32;
        let until = self.iterations + self.tenure + self.rng.below(self.tenure as usize + 1) as u64;
        if target != machine {
            self.tabu_machine.insert((op, machine), until);
            return;
        }
        let seq = &state.seq[machine as usize];
        let from = state.pos[op as usize] as usize;
        let to = mv.index as usize;
        if to < from {
            for &x in &seq[to..from] {
                self.tabu_pairs.insert((x, op), until);
            }
        } else {
            for &x in &seq[from + 1..=to.min(seq.len() - 1)] {
                self.tabu_pairs.insert((op, x), until);
            }
        }
        if self.tabu_pairs.len() > 4 * self.flat.n + 1024 {
            let now = self.iterations;
            self.tabu_pairs.retain(|_, until| *until > now);
        }
    }

    /// The makespan neighbourhood of `state`, estimated, into `self.moves`.
    fn makespan_moves(&mut self, state: &State, blocks: &mut Vec<(u32, u32, u32)>) {
        let mut moves = std::mem::take(&mut self.moves);
        moves.clear();
        self.blocks(state, blocks);
        for &(m, first, len) in blocks.iter() {
            let seq = &state.seq[m as usize];
            let (first, len) = (first as usize, len as usize);
            let last = first + len - 1;
            let fixed = self.fixed_count[m as usize] as usize;
            let mut push = |search: &mut Search, from: usize, to: usize| {
                let op = seq[from];
                if from == to || from < fixed || to < fixed {
                    return;
                }
                if let Some(estimate) = search.estimate_shift(state, m, from, to) {
                    let tie = search.rng.next_u64() as u32;
                    moves.push(Move {
                        op,
                        alt: state.alt[op as usize],
                        index: to as u32,
                        estimate,
                        tie,
                    });
                }
            };
            for i in first + 1..=last {
                push(self, i, first);
            }
            for i in first..last {
                push(self, i, last);
            }
            for i in first + 2..last {
                push(self, first, i - 1);
                push(self, last, i);
            }
        }
        for op in 0..self.flat.n as u32 {
            if self.flat.fixed[op as usize].is_some() || !self.critical(state, op) {
                continue;
            }
            let current = state.alt[op as usize];
            for alt in 0..self.flat.alts[op as usize].len() as u16 {
                if alt == current {
                    continue;
                }
                if let Some((index, estimate)) = self.best_insertion(state, op, alt) {
                    let tie = self.rng.next_u64() as u32;
                    moves.push(Move {
                        op,
                        alt,
                        index,
                        estimate,
                        tie,
                    });
                }
            }
        }
        self.moves = moves;
    }

    fn tabu_makespan(&mut self, mut state: State, progress: &mut dyn FnMut() -> f64) -> State {
        let mut best = state.clone();
        let mut blocks = Vec::new();
        let mut since_best = 0u64;
        let stall = 2_000 + 20 * self.flat.n as u64;
        while best.makespan > self.flat.lower_bound && !self.stop(progress) {
            since_best += 1;
            if since_best > stall {
                state.clone_from(&best);
                let count = 2 + self.rng.below(4);
                self.perturb(&mut state, count);
                self.tabu_pairs.clear();
                self.tabu_machine.clear();
                since_best = 0;
            }
            self.makespan_moves(&state, &mut blocks);
            let mut moves = std::mem::take(&mut self.moves);
            moves.sort_unstable_by_key(|m| (m.estimate, m.tie));
            let mut applied = false;
            let mut fallback: Option<usize> = None;
            for (i, mv) in moves.iter().enumerate() {
                let tabu = self.is_tabu(&state, mv);
                if tabu && mv.estimate >= best.makespan {
                    fallback = fallback.or(Some(i));
                    continue;
                }
                if self.try_move(&mut state, mv) {
                    applied = true;
                    break;
                }
            }
            if !applied {
                let done = match fallback {
                    Some(i) => {
                        let mv = moves[self.rng.below(moves.len() - i) + i];
                        self.try_move(&mut state, &mv)
                    }
                    None => false,
                };
                if !done {
                    self.perturb(&mut state, 1);
                }
            }
            self.moves = moves;
            if state.makespan < best.makespan {
                best.clone_from(&state);
                since_best = 0;
            }
        }
        best
    }

    /// Applies `mv` and recomputes; undoes it and returns false on a cycle.
    fn try_move(&mut self, state: &mut State, mv: &Move) -> bool {
        self.make_tabu(state, mv);
        let undo = self.apply(state, mv);
        if self.evaluate(state) {
            return true;
        }
        self.undo(state, &undo);
        let restored = self.evaluate(state);
        debug_assert!(restored, "undoing a move restores an acyclic graph");
        false
    }

    /// A random move of `op`: another capable machine or its own, at a
    /// position that cannot close a cycle when one is known.
    fn random_move(&mut self, state: &State, op: u32) -> Option<Move> {
        let alts = self.flat.alts[op as usize].len();
        let alt = self.rng.below(alts) as u16;
        let machine = self.flat.alts[op as usize][alt as usize].machine as u32;
        if alt != state.alt[op as usize] {
            let (index, estimate) = self.best_insertion(state, op, alt)?;
            return Some(Move {
                op,
                alt,
                index,
                estimate,
                tie: 0,
            });
        }
        let len = state.seq[machine as usize].len();
        let fixed = self.fixed_count[machine as usize] as usize;
        if len <= fixed + 1 {
            return None;
        }
        let from = state.pos[op as usize] as usize;
        let shift = 1 + self.rng.below(3);
        let to = if self.rng.chance(0.5) {
            from.saturating_sub(shift).max(fixed)
        } else {
            (from + shift).min(len - 1)
        };
        (to != from).then_some(Move {
            op,
            alt,
            index: to as u32,
            estimate: 0,
            tie: 0,
        })
    }

    fn perturb(&mut self, state: &mut State, count: usize) {
        let movable: Vec<u32> = (0..self.flat.n as u32)
            .filter(|&op| self.flat.fixed[op as usize].is_none())
            .collect();
        if movable.is_empty() {
            return;
        }
        for _ in 0..count {
            let critical: Vec<u32> = movable
                .iter()
                .copied()
                .filter(|&op| self.critical(state, op))
                .collect();
            let pool = if critical.is_empty() || self.rng.chance(0.3) {
                &movable
            } else {
                &critical
            };
            let op = pool[self.rng.below(pool.len())];
            if let Some(mv) = self.random_move(state, op) {
                let undo = self.apply(state, &mv);
                if !self.evaluate(state) {
                    self.undo(state, &undo);
                    let restored = self.evaluate(state);
                    debug_assert!(restored, "undoing a move restores an acyclic graph");
                }
            }
        }
    }

    /// Operations on a longest path ending at `op`'s end.
    fn path_to(&self, state: &State, op: u32, out: &mut Vec<u32>) {
        out.clear();
        let mut x = op;
        loop {
            out.push(x);
            let head = state.head[x as usize];
            let m = self.machine(state, x);
            let p = state.pos[x as usize] as usize;
            let jp = self.flat.prev_job[x as usize];
            let mut next = NONE;
            if p > 0 {
                let a = state.seq[m as usize][p - 1];
                if state.head[a as usize] + self.duration(state, a) + self.setup(m, Some(a), x)
                    == head
                {
                    next = a;
                }
            }
            if next == NONE
                && jp != NONE
                && state.head[jp as usize] + self.duration(state, jp) == head
            {
                next = jp;
            }
            if next == NONE || out.len() > self.flat.n {
                break;
            }
            x = next;
        }
    }

    /// Floor objective: sampled neighbourhood, every candidate scored
    /// exactly, best non-tabu candidate taken (tabu ones when they beat the
    /// best), best schedule kept.
    fn floor_search(&mut self, mut state: State, progress: &mut dyn FnMut() -> f64) -> State {
        let mut best = state.clone();
        let movable: Vec<u32> = (0..self.flat.n as u32)
            .filter(|&op| self.flat.fixed[op as usize].is_none())
            .collect();
        if movable.is_empty() {
            return best;
        }
        let mut path = Vec::new();
        let mut candidates: Vec<Move> = Vec::new();
        let samples = 12;
        let mut since_best = 0u64;
        let stall = 500 + 5 * self.flat.n as u64;
        while !self.stop(progress) {
            since_best += 1;
            if since_best > stall {
                state.clone_from(&best);
                let count = 1 + self.rng.below(3);
                self.perturb(&mut state, count);
                since_best = 0;
            }
            candidates.clear();
            // Operations that decide the latest job's end.
            let latest = self.latest_job(&state);
            path.clear();
            if let Some(last) = latest {
                self.path_to(&state, last, &mut path);
                path.retain(|&op| self.flat.fixed[op as usize].is_none());
            }
            for _ in 0..samples {
                let op = if !path.is_empty() && self.rng.chance(0.7) {
                    path[self.rng.below(path.len())]
                } else {
                    movable[self.rng.below(movable.len())]
                };
                if let Some(mv) = self.random_move(&state, op) {
                    candidates.push(mv);
                }
                if let Some(mv) = self.family_move(&state, op) {
                    candidates.push(mv);
                }
            }
            let mut chosen: Option<(FloorScore, Move)> = None;
            for (tried, mv) in candidates.iter().enumerate() {
                // Each candidate is scored over the whole floor: on a large
                // one, a whole iteration would overrun the budget.
                if tried > 0 && progress() >= 1.0 {
                    break;
                }
                let undo = self.apply(&mut state, mv);
                let ok = self.evaluate(&mut state);
                let score = state.score;
                self.undo(&mut state, &undo);
                if !ok {
                    continue;
                }
                let tabu = self.is_tabu(&state, mv);
                if tabu && score >= best.score {
                    continue;
                }
                if chosen.as_ref().is_none_or(|(s, _)| score < *s) {
                    chosen = Some((score, *mv));
                }
            }
            let restored = self.evaluate(&mut state);
            debug_assert!(restored, "undone moves leave an acyclic graph");
            if let Some((_, mv)) = chosen {
                self.try_move(&mut state, &mv);
            }
            if state.score < best.score {
                best.clone_from(&state);
                since_best = 0;
            }
        }
        best
    }

    /// The job that ends latest past its due time (or latest, when none is late).
    fn latest_job(&self, state: &State) -> Option<u32> {
        let mut best: Option<(Time, u32)> = None;
        for (j, job) in self.flat.problem.jobs.iter().enumerate() {
            let last = self.flat.job_last[j];
            if last == NONE {
                continue;
            }
            let end = state.head[last as usize] + self.duration(state, last);
            let key = job.due.map_or(end - state.makespan, |due| end - due);
            if best.is_none_or(|(k, _)| key > k) {
                best = Some((key, last));
            }
        }
        best.map(|(_, op)| op)
    }

    /// Moves `op` right after another operation of its family on a capable
    /// machine (fewer setups), if one exists.
    fn family_move(&mut self, state: &State, op: u32) -> Option<Move> {
        let family = self.flat.family[op as usize]?;
        if !self.flat.has_setups || self.flat.fixed[op as usize].is_some() {
            return None;
        }
        let alts = self.flat.alts[op as usize];
        let a = self.rng.below(alts.len());
        let machine = alts[a].machine;
        let seq = &state.seq[machine];
        let same: Vec<usize> = (0..seq.len())
            .filter(|&i| seq[i] != op && self.flat.family[seq[i] as usize] == Some(family))
            .collect();
        if same.is_empty() {
            return None;
        }
        let mut index = same[self.rng.below(same.len())] + 1;
        if a as u16 == state.alt[op as usize] && (state.pos[op as usize] as usize) < index {
            index -= 1;
        }
        let fixed = self.fixed_count[machine] as usize;
        Some(Move {
            op,
            alt: a as u16,
            index: index.max(fixed) as u32,
            estimate: 0,
            tie: 0,
        })
    }

    fn to_schedule(&self, state: &State) -> Schedule {
        let mut operations = Vec::with_capacity(self.flat.n);
        for op in 0..self.flat.n as u32 {
            let start = state.head[op as usize];
            operations.push(ScheduledOp {
                job: self.flat.job_of[op as usize] as usize,
                op: self.flat.index_in_job[op as usize] as usize,
                machine: self.machine(state, op) as usize,
                start,
                end: start + self.duration(state, op),
            });
        }
        let score = super::model::floor_score(self.flat.problem, &operations);
        debug_assert!(
            self.options.objective != Objective::Floor || score == state.score,
            "the search's own floor score matches the independent one"
        );
        Schedule {
            operations,
            makespan: state.makespan,
            score,
            iterations: self.iterations,
        }
    }
}

/// The floor construction both ways, as each machine's sequence: by heap
/// (what `solve` uses) and by comparing every ready operation (the rule's
/// definition).
#[cfg(test)]
pub(super) fn floor_constructions(problem: &Problem) -> (Vec<Vec<u32>>, Vec<Vec<u32>>) {
    let flat = Flat::new(problem);
    let options = SolveOptions {
        objective: Objective::Floor,
        ..SolveOptions::default()
    };
    let mut search = Search::new(&flat, &options);
    let heap = search.construct_by(ListRule::FloorHeap).seq;
    let scan = search.construct_by(ListRule::Scan).seq;
    (heap, scan)
}
