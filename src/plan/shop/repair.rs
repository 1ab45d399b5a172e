//! The fast re-plan after a small change: the last floor plan repaired in
//! place instead of planned again.
//!
//! When a machine faults, goes offline or is paused, or a rush order
//! arrives, most of the floor's plan still holds. `repair_floor` keeps
//! every waiting step of the previous plan on its machine and in its place
//! in that machine's order, and places only the steps that need a place:
//! those of a machine that can no longer run them (with their jobs' later
//! steps, whose plan followed from theirs), and those of jobs the previous
//! plan did not know. Each such step, least slack first (due time
//! less the work left from it), tries each capable machine: ahead of the
//! planned steps that end after its latest on-time start (the floor rule
//! of `search::WarmStart`, so a rush job overtakes work that has time), a
//! few places behind that, and the end of the queue; it goes where the
//! fewest steps are made late (it and those it pushes back, estimated from
//! the planned times), then the least lateness is added, then it ends
//! first. Then every start and end is computed
//! again in one pass over the precedence graph (each machine's order, each
//! job's step order), with setups, release times, the time each machine is
//! free and its openings, and the plan is scored as `plan_floor` scores it.
//!
//! Cost: linear in the steps on the floor plus, per displaced step and
//! capable machine, a binary search and a few walks down the queue; no
//! problem is built and no search is run (the caller's next full round
//! improves the plan).
//!
//! Invariants: running steps stay where and when they are, first on their
//! machine; a step goes only to a machine that runs it (`FloorMachine::runs`);
//! steps that kept their machine keep their relative order on it; the
//! machines' orders and the jobs' step orders never close a cycle (a step
//! waiting for itself): each step carries a potential that grows along both
//! (kept steps their planned start, running steps the least), and a step
//! is placed only where one fits between its predecessors and successor.
//! When more steps need a place than the caller allows, it returns `None`
//! and the caller plans in full.

use super::floor::{FloorJob, FloorMachine, FloorPlan, PlannedStep};
use crate::domain::{JobToken, Location, MachineId, Millis};
use std::collections::{BTreeMap, HashMap};

/// Lookups only (never iterated where order matters): a fast fixed hasher.
type Map<K, V> = HashMap<K, V, foldhash::fast::FixedState>;

const NONE: u32 = u32::MAX;

/// Room between two planned starts' potentials for steps placed between
/// them (halved by each one placed in the same gap: 40 fit).
const GAP_BITS: u32 = 40;

/// The potential of running steps (first on their machines, first in their
/// jobs), below every planned start's.
const RUNNING: i128 = i128::MIN / 4;

/// Below every potential: no predecessor.
const BOTTOM: i128 = i128::MIN / 2;

/// How many places behind the first one a displaced step tries on each
/// machine (besides the end of its queue): each costs a walk down the
/// queue, so a machine with thousands of steps queued stays cheap.
const PLACES_BEHIND: usize = 32;

/// `previous` repaired for the floor as it is now (`jobs` with the steps
/// they still need, `machines` as they are); `None` when more than
/// `max_loose` steps need a new place (a full `replan_floor` does better
/// then). See the module's doc.
pub fn repair_floor(
    previous: &FloorPlan,
    jobs: &[FloorJob],
    machines: &[FloorMachine],
    max_loose: usize,
) -> Option<FloorPlan> {
    Repair::new(jobs, machines).run(previous, max_loose)
}

/// A kind of step: (the job's factory, process, material).
type KindKey<'a> = (Option<&'a str>, &'a str, &'a str);

/// Whether each machine runs each kind of step, asked once per pair: a
/// dense table while machines x kinds stays small, a map beyond.
enum Runs {
    Dense { machines: usize, answers: Vec<u8> },
    Sparse(Map<(u32, u32), bool>),
}

/// Most cells of a dense `Runs` table (16 MiB).
const DENSE_RUNS: usize = 1 << 24;

impl Runs {
    fn new(machines: usize, kinds: usize) -> Runs {
        match machines.checked_mul(kinds) {
            Some(cells) if cells <= DENSE_RUNS => Runs::Dense {
                machines,
                answers: vec![0; cells],
            },
            _ => Runs::Sparse(Map::default()),
        }
    }

    fn get(&self, machine: u32, kind: u32) -> Option<bool> {
        match self {
            Runs::Dense { machines, answers } => {
                match answers[kind as usize * machines + machine as usize] {
                    0 => None,
                    answer => Some(answer == 2),
                }
            }
            Runs::Sparse(map) => map.get(&(machine, kind)).copied(),
        }
    }

    fn set(&mut self, machine: u32, kind: u32, runs: bool) {
        match self {
            Runs::Dense { machines, answers } => {
                answers[kind as usize * *machines + machine as usize] = 1 + u8::from(runs);
            }
            Runs::Sparse(map) => {
                map.insert((machine, kind), runs);
            }
        }
    }
}

/// Where a step placed by the repair goes: the best by (steps made late,
/// lateness added, its end, distance to the customer, machine), at `at` in
/// that machine's order.
struct Place {
    key: (u32, Millis, Millis, i64, u32),
    at: usize,
    potential: i128,
    start: Millis,
}

/// A job's steps as nodes of the precedence graph, numbered job by job;
/// what the passes need of each job and step read once, compactly.
struct Repair<'a> {
    jobs: &'a [FloorJob],
    machines: &'a [FloorMachine],
    /// First node of each job (and one past the last); its steps are
    /// consecutive nodes.
    first: Vec<u32>,
    job_of: Vec<u32>,
    /// Per job: its token, release, due time, customer (read once, in
    /// job order, so that the passes below stay in dense arrays).
    token: Vec<JobToken>,
    release: Vec<Millis>,
    due: Vec<Millis>,
    customer: Vec<Option<Location>>,
    /// Per job: the machine its last step kept from the previous plan and
    /// that plan's distance from there to the customer (`NONE`: not kept).
    kept_distance: Vec<(u32, i64)>,
    /// Per node: duration at speed 1, material's number, and the number of
    /// its (factory, process, material), which decides the machines that
    /// run it.
    base: Vec<Millis>,
    /// Per node: its latest end for its job to be on time (due time less
    /// the work of the job's later steps at speed 1).
    latest_end: Vec<Millis>,
    material: Vec<u32>,
    kind: Vec<u32>,
    /// Per machine: the number of its loaded material (`NONE`: none).
    loaded: Vec<u32>,
    /// Whether machine runs kind, as asked.
    runs: Runs,
    machine_of: Vec<u32>,
    start: Vec<Millis>,
    end: Vec<Millis>,
    duration: Vec<Millis>,
    fixed: Vec<bool>,
    /// A topological potential: strictly increasing along every edge of
    /// the precedence graph (machine order, job order), so that graph has
    /// no cycle. Steps kept from the previous plan have their planned start
    /// (scaled), running steps the least; a step placed by the repair goes
    /// only where a value fits between its predecessors and successor.
    potential: Vec<i128>,
    /// Each machine's order of nodes.
    seq: Vec<Vec<u32>>,
    alive: Vec<bool>,
    unplaceable: Vec<(JobToken, String)>,
}

impl<'a> Repair<'a> {
    fn new(jobs: &'a [FloorJob], machines: &'a [FloorMachine]) -> Repair<'a> {
        let steps: usize = jobs.iter().map(|job| job.steps.len()).sum();
        let mut first = Vec::with_capacity(jobs.len() + 1);
        let mut job_of = Vec::with_capacity(steps);
        let mut base = Vec::with_capacity(steps);
        let mut latest_end = Vec::with_capacity(steps);
        let mut material = Vec::with_capacity(steps);
        let mut kind = Vec::with_capacity(steps);
        let mut token = Vec::with_capacity(jobs.len());
        let mut release = Vec::with_capacity(jobs.len());
        let mut due = Vec::with_capacity(jobs.len());
        let mut customer = Vec::with_capacity(jobs.len());
        let mut materials: Map<&str, u32> = Map::default();
        let mut kinds: Map<KindKey, (u32, u32)> = Map::default();
        // Consecutive steps are often of one kind (an order's lines, a
        // batch of one product): compared before hashed.
        let mut last: Option<(KindKey, (u32, u32))> = None;
        for (j, job) in jobs.iter().enumerate() {
            first.push(job_of.len() as u32);
            token.push(job.token);
            release.push(job.release_ms);
            due.push(job.due_ms);
            customer.push(job.customer);
            let factory = job.factory.as_ref().map(|f| f.as_str());
            for step in &job.steps {
                job_of.push(j as u32);
                base.push(step.base_duration_ms);
                let key = (factory, step.process.as_str(), step.material.as_str());
                let (k, m) = match last {
                    Some((seen, ids)) if seen == key => ids,
                    _ => {
                        let next = kinds.len() as u32;
                        let ids = *kinds.entry(key).or_insert_with(|| {
                            let count = materials.len() as u32;
                            (next, *materials.entry(key.2).or_insert(count))
                        });
                        last = Some((key, ids));
                        ids
                    }
                };
                kind.push(k);
                material.push(m);
            }
            // Latest ends, last step first: due less the work after it.
            let from = latest_end.len();
            latest_end.resize(job_of.len(), 0);
            let mut after: Millis = 0;
            for x in (from..job_of.len()).rev() {
                latest_end[x] = job.due_ms.saturating_sub(after);
                after = after.saturating_add(base[x].max(0));
            }
        }
        first.push(job_of.len() as u32);
        let loaded = machines
            .iter()
            .map(|m| match m.loaded_material.as_deref() {
                // A loaded material no step needs differs from every step's.
                Some(name) => materials.get(name).copied().unwrap_or(NONE - 1),
                None => NONE,
            })
            .collect();
        let n = job_of.len();
        Repair {
            jobs,
            machines,
            first,
            job_of,
            token,
            release,
            due,
            customer,
            kept_distance: vec![(NONE, 0); jobs.len()],
            base,
            latest_end,
            material,
            kind,
            loaded,
            runs: Runs::new(machines.len(), kinds.len()),
            machine_of: vec![NONE; n],
            start: vec![0; n],
            end: vec![0; n],
            duration: vec![0; n],
            fixed: vec![false; n],
            potential: vec![0; n],
            seq: vec![Vec::new(); machines.len()],
            alive: vec![true; jobs.len()],
            unplaceable: Vec::new(),
        }
    }

    fn steps_of(&self, j: usize) -> std::ops::Range<u32> {
        self.first[j]..self.first[j + 1]
    }

    fn step_index(&self, node: u32) -> usize {
        (node - self.first[self.job_of[node as usize] as usize]) as usize
    }

    /// Whether `machine` may run `node` now (`FloorMachine::runs`, asked
    /// once per machine and kind of step).
    fn machine_runs(&mut self, machine: u32, node: u32) -> bool {
        let m = &self.machines[machine as usize];
        if !m.accepts_jobs {
            return false;
        }
        let kind = self.kind[node as usize];
        if let Some(runs) = self.runs.get(machine, kind) {
            return runs;
        }
        let job = &self.jobs[self.job_of[node as usize] as usize];
        let runs = m.runs(job, &job.steps[self.step_index(node)]);
        self.runs.set(machine, kind, runs);
        runs
    }

    /// `node`'s duration on `machine` (a running step's: as it runs).
    fn duration_on(&self, node: u32, machine: u32) -> Millis {
        if self.fixed[node as usize] {
            let job = &self.jobs[self.job_of[node as usize] as usize];
            if let Some(r) = &job.running {
                return (r.ends_ms - r.started_ms).max(1);
            }
        }
        let m = &self.machines[machine as usize];
        let speed = if m.speed > 0.0 { m.speed } else { 1.0 };
        ((self.base[node as usize] as f64 / speed).ceil() as Millis).max(1)
    }

    /// Setup on `machine` before `node` after `previous` (none: after the
    /// loaded material); none before a running step.
    fn setup(&self, machine: u32, previous: Option<u32>, node: u32) -> Millis {
        if self.fixed[node as usize] {
            return 0;
        }
        let from = match previous {
            Some(p) => self.material[p as usize],
            None => self.loaded[machine as usize],
        };
        if from != NONE && from != self.material[node as usize] {
            self.machines[machine as usize].setup_ms.max(0)
        } else {
            0
        }
    }

    /// Earliest start of `node` (taking `duration`) on `machine` after
    /// `previous` (a step and its end there) once its job is `ready`: as
    /// `search::Search::start_bound` computes it.
    fn start_bound(
        &self,
        node: u32,
        machine: u32,
        duration: Millis,
        previous: Option<(u32, Millis)>,
        ready: Millis,
    ) -> Millis {
        let m = &self.machines[machine as usize];
        let from_machine = match previous {
            Some((p, end)) => end + self.setup(machine, Some(p), node),
            None => m.available_from_ms + self.setup(machine, None, node),
        };
        let earliest = from_machine
            .max(m.available_from_ms)
            .max(self.release[self.job_of[node as usize] as usize])
            .max(ready);
        if m.openings.shifts.is_none() && m.openings.blocked.is_empty() {
            earliest
        } else {
            m.openings.earliest_start(earliest, duration)
        }
    }

    /// Puts `node` on `machine` at `at` in its order.
    fn assign(&mut self, node: u32, machine: u32, start: Millis, potential: i128) {
        let x = node as usize;
        self.machine_of[x] = machine;
        self.duration[x] = self.duration_on(node, machine);
        self.start[x] = start;
        self.end[x] = start + self.duration[x];
        self.potential[x] = potential;
    }

    /// `node` on `machine` at the first place from `at` where a potential
    /// fits (after the job's previous step, of potential `after`, and the
    /// machine's previous step; before its next one), once its job is
    /// `ready`, with what it costs: steps made late (it and those it pushes
    /// back, each against its latest on-time end), added lateness, its end,
    /// its distance to the customer.
    fn place(
        &self,
        node: u32,
        machine: u32,
        mut at: usize,
        after: i128,
        ready: Millis,
        distance: i64,
    ) -> Place {
        let queue = &self.seq[machine as usize];
        let potential = loop {
            let low = at
                .checked_sub(1)
                .map_or(BOTTOM, |i| self.potential[queue[i] as usize])
                .max(after);
            match queue.get(at) {
                None => break low + (1 << GAP_BITS),
                Some(&x) if self.potential[x as usize] - low >= 2 => {
                    break low + (self.potential[x as usize] - low) / 2;
                }
                Some(_) => at += 1,
            }
        };
        let previous = at.checked_sub(1).map(|i| {
            let p = queue[i];
            (p, self.end[p as usize])
        });
        let duration = self.duration_on(node, machine);
        let start = self.start_bound(node, machine, duration, previous, ready);
        let end = start + duration;
        let mut made_late = u32::from(end > self.latest_end[node as usize]);
        let mut lateness = (end - self.latest_end[node as usize]).max(0);
        // The steps behind it move back until idle time before one absorbs
        // the push (setups as planned).
        let mut previous_end = end;
        for &x in &queue[at..] {
            let x = x as usize;
            let push = previous_end - self.start[x];
            if push <= 0 {
                break;
            }
            let late_before = (self.end[x] - self.latest_end[x]).max(0);
            let late_after = (self.end[x] + push - self.latest_end[x]).max(0);
            made_late += u32::from(late_before == 0 && late_after > 0);
            lateness += late_after - late_before;
            previous_end = self.end[x] + push;
        }
        Place {
            key: (made_late, lateness, end, distance, machine),
            at,
            potential,
            start,
        }
    }

    fn run(mut self, previous: &FloorPlan, max_loose: usize) -> Option<FloorPlan> {
        let machine_index: Map<&MachineId, u32> = self
            .machines
            .iter()
            .enumerate()
            .map(|(i, m)| (&m.id, i as u32))
            .collect();
        // Running steps first on their machines, in the order they started.
        let mut running: Vec<(Millis, u32, u32)> = Vec::new();
        for (j, job) in self.jobs.iter().enumerate() {
            let (Some(r), false) = (&job.running, job.steps.is_empty()) else {
                continue;
            };
            let node = self.first[j];
            match machine_index.get(&r.machine) {
                Some(&m) => {
                    self.fixed[node as usize] = true;
                    running.push((r.started_ms, m, node));
                }
                None => {
                    self.alive[j] = false;
                    self.unplaceable.push((
                        job.token,
                        format!("running on unknown machine {}", r.machine),
                    ));
                }
            }
        }
        running.sort_unstable();
        for &(started, m, node) in &running {
            self.assign(node, m, started, RUNNING);
            self.seq[m as usize].push(node);
        }
        // Waiting steps keep their planned machine and order where it can
        // still run them.
        let mut job_index: Map<JobToken, u32> =
            Map::with_capacity_and_hasher(self.token.len(), Default::default());
        job_index.extend(self.token.iter().enumerate().map(|(j, &t)| (t, j as u32)));
        for (id, queue) in &previous.queues {
            let Some(&m) = machine_index.get(id) else {
                continue;
            };
            if !self.machines[m as usize].accepts_jobs {
                continue;
            }
            for planned in queue {
                let Some(&j) = job_index.get(&planned.token) else {
                    continue;
                };
                let steps = self.steps_of(j as usize);
                let Some(s) = (steps.len()).checked_sub(planned.steps_after + 1) else {
                    continue;
                };
                let node = steps.start + s as u32;
                if !self.alive[j as usize]
                    || self.fixed[node as usize]
                    || self.machine_of[node as usize] != NONE
                    || !self.machine_runs(m, node)
                {
                    continue;
                }
                self.assign(
                    node,
                    m,
                    planned.start_ms,
                    i128::from(planned.start_ms) << GAP_BITS,
                );
                if planned.steps_after == 0 {
                    self.kept_distance[j as usize] = (m, planned.distance_m);
                }
                self.seq[m as usize].push(node);
            }
        }
        // A step that needs a place takes the job's later steps with it
        // (their plan followed from its), so no step placed below has a
        // successor already in place.
        let mut unkept = false;
        for j in 0..self.jobs.len() {
            let nodes = self.steps_of(j);
            if let Some(from) = nodes.clone().find(|&x| self.machine_of[x as usize] == NONE) {
                for x in from..nodes.end {
                    unkept |= self.machine_of[x as usize] != NONE;
                    self.machine_of[x as usize] = NONE;
                }
            }
        }
        if unkept {
            let machine_of = &self.machine_of;
            for queue in &mut self.seq {
                queue.retain(|&x| machine_of[x as usize] != NONE);
            }
        }
        // The rest need a place: least slack first, each job's steps in order.
        let mut loose: Vec<(Millis, u32)> = Vec::new();
        for j in 0..self.jobs.len() {
            if !self.alive[j] {
                continue;
            }
            let mut remaining: Millis = 0;
            for node in self.steps_of(j).rev() {
                remaining += self.base[node as usize].max(0);
                if self.machine_of[node as usize] == NONE {
                    loose.push((self.due[j].saturating_sub(remaining), node));
                }
            }
        }
        if loose.len() > max_loose {
            return None;
        }
        loose.sort_unstable();
        // A job bound to a factory asks only that factory's machines.
        let mut of_factory: Map<&str, Vec<u32>> = Map::default();
        for (i, m) in self.machines.iter().enumerate() {
            of_factory
                .entry(m.factory.as_str())
                .or_default()
                .push(i as u32);
        }
        let everyone: Vec<u32> = (0..self.machines.len() as u32).collect();
        let mut capable: Map<u32, Vec<u32>> = Map::default();
        for &(slack, node) in &loose {
            let j = self.job_of[node as usize] as usize;
            if !self.alive[j] {
                continue;
            }
            let kind = self.kind[node as usize];
            if let std::collections::hash_map::Entry::Vacant(slot) = capable.entry(kind) {
                let candidates = match &self.jobs[j].factory {
                    Some(f) => of_factory.get(f.as_str()).map_or(&[][..], Vec::as_slice),
                    None => &everyone,
                };
                let list = candidates
                    .iter()
                    .copied()
                    .filter(|&m| self.machine_runs(m, node))
                    .collect();
                slot.insert(list);
            }
            let capable = &capable[&kind];
            let s = self.step_index(node);
            if capable.is_empty() {
                let job = &self.jobs[j];
                let step = &job.steps[s];
                self.alive[j] = false;
                self.unplaceable.push((
                    job.token,
                    format!(
                        "no machine accepts step {s} ({} on {})",
                        step.process, step.material
                    ),
                ));
                continue;
            }
            let (ready, after) = if s > 0 {
                let x = node as usize - 1;
                (self.end[x], self.potential[x])
            } else {
                (Millis::MIN, BOTTOM)
            };
            let last = node + 1 == self.first[j + 1];
            let mut best: Option<Place> = None;
            for &m in capable {
                let queue = &self.seq[m as usize];
                let distance = match (last, self.customer[j]) {
                    (true, Some(c)) => {
                        self.machines[m as usize].location.distance_m(c).round() as i64
                    }
                    _ => 0,
                };
                let pinned = queue
                    .iter()
                    .take_while(|&&x| self.fixed[x as usize])
                    .count();
                let ahead =
                    pinned + queue[pinned..].partition_point(|&x| self.end[x as usize] <= slack);
                // Ahead of the planned steps that end after its latest
                // start, a little behind them, or at the end: wherever
                // makes fewest late, then least lateness, then ends first.
                let behind = (ahead + PLACES_BEHIND).min(queue.len());
                for at in (ahead..=behind).chain(std::iter::once(queue.len())) {
                    let place = self.place(node, m, at, after, ready, distance);
                    if best.as_ref().is_none_or(|b| place.key < b.key) {
                        best = Some(place);
                    }
                }
            }
            if let Some(place) = best {
                let m = place.key.4;
                self.assign(node, m, place.start, place.potential);
                self.seq[m as usize].insert(place.at, node);
            }
        }
        if !self.unplaceable.is_empty() {
            let alive = &self.alive;
            let job_of = &self.job_of;
            for queue in &mut self.seq {
                queue.retain(|&x| alive[job_of[x as usize] as usize]);
            }
        }
        self.times()?;
        Some(self.plan())
    }

    /// Every start and end again, in precedence order (Kahn's algorithm);
    /// `None` on a cycle (which the potentials rule out; kept as a guard).
    fn times(&mut self) -> Option<()> {
        let n = self.job_of.len();
        let mut pos = vec![0u32; n];
        let mut indegree = vec![0u8; n];
        let mut order: Vec<u32> = Vec::with_capacity(n);
        let mut count = 0;
        for queue in &self.seq {
            for (i, &x) in queue.iter().enumerate() {
                pos[x as usize] = i as u32;
            }
        }
        for j in 0..self.jobs.len() {
            if !self.alive[j] {
                continue;
            }
            let first = self.first[j];
            for x in self.steps_of(j) {
                let d = u8::from(x > first) + u8::from(pos[x as usize] > 0);
                indegree[x as usize] = d;
                count += 1;
                if d == 0 {
                    order.push(x);
                }
            }
        }
        let mut next = 0;
        while let Some(&x) = order.get(next) {
            next += 1;
            let m = self.machine_of[x as usize];
            let p = pos[x as usize] as usize;
            let queue = &self.seq[m as usize];
            let j = self.job_of[x as usize] as usize;
            if !self.fixed[x as usize] {
                let previous = p.checked_sub(1).map(|i| {
                    let a = queue[i];
                    (a, self.end[a as usize])
                });
                let ready = if x > self.first[j] {
                    self.end[x as usize - 1]
                } else {
                    Millis::MIN
                };
                let duration = self.duration[x as usize];
                let start = self.start_bound(x, m, duration, previous, ready);
                self.start[x as usize] = start;
                self.end[x as usize] = start + duration;
            }
            if x + 1 < self.first[j + 1] {
                let y = x as usize + 1;
                indegree[y] -= 1;
                if indegree[y] == 0 {
                    order.push(y as u32);
                }
            }
            if let Some(&b) = queue.get(p + 1) {
                indegree[b as usize] -= 1;
                if indegree[b as usize] == 0 {
                    order.push(b);
                }
            }
        }
        (order.len() == count).then_some(())
    }

    /// Metres from `machine` to job `j`'s customer (0 without one): the
    /// previous plan's figure when its last step kept that machine.
    fn distance(&self, j: usize, machine: u32) -> i64 {
        match (self.kept_distance[j], self.customer[j]) {
            ((kept, distance), _) if kept == machine => distance,
            (_, Some(c)) => self.machines[machine as usize]
                .location
                .distance_m(c)
                .round() as i64,
            (_, None) => 0,
        }
    }

    fn plan(self) -> FloorPlan {
        let mut queues: BTreeMap<MachineId, Vec<PlannedStep>> = BTreeMap::new();
        let mut setup_ms = 0;
        let mut distance_m = 0;
        for (m, queue) in self.seq.iter().enumerate() {
            let mut previous = None;
            let mut planned = Vec::with_capacity(queue.len());
            for &x in queue {
                setup_ms += self.setup(m as u32, previous, x);
                previous = Some(x);
                let j = self.job_of[x as usize] as usize;
                let s = self.step_index(x);
                let steps_after = self.steps_of(j).len() - 1 - s;
                planned.push(PlannedStep {
                    token: self.token[j],
                    step: s,
                    steps_after,
                    start_ms: self.start[x as usize],
                    end_ms: self.end[x as usize],
                    distance_m: match steps_after {
                        0 => self.distance(j, m as u32),
                        _ => 0,
                    },
                });
                distance_m += planned.last().map_or(0, |p| p.distance_m);
            }
            queues.insert(self.machines[m].id.clone(), planned);
        }
        // Late orders: each order's latest job, over the late jobs only
        // (few, where a plan is any good), so no order is looked up for
        // the rest.
        let mut order_late: Map<&str, Millis> = Map::default();
        for j in 0..self.jobs.len() {
            let steps = self.steps_of(j);
            if !self.alive[j] || steps.is_empty() {
                continue;
            }
            let last = (steps.end - 1) as usize;
            let late = self.end[last] - self.due[j];
            if late > 0 {
                let slot = order_late.entry(self.jobs[j].order.as_str()).or_default();
                *slot = (*slot).max(late);
            }
        }
        FloorPlan {
            queues,
            late_orders: order_late.len(),
            total_lateness_ms: order_late.values().sum(),
            setup_ms,
            distance_m,
            unplaceable: self.unplaceable,
        }
    }
}
