//! The floor's view of the engine, used by the runtime's scheduler loop
//! when `[scheduler] planner = "shop"`: jobs with their remaining steps (process, material,
//! base duration), machines as `plan::schedule::MachineSlot` sees them plus
//! speed, setup per material change, loaded material and the time they are
//! free, and jobs already running. `plan_floor` turns them into a
//! `model::Problem`, solves it under the floor objective (late orders, total
//! lateness, setup time, distance to the customer) and returns an ordered
//! queue per machine with estimated starts and ends.
//!
//! Invariants: a step goes only to a machine that accepts jobs, belongs to
//! the job's factory (when the job names one), has the step's process and
//! material; a running step keeps its machine and start; a job with a step
//! that no machine can run is returned in `unplaceable`, not scheduled.
//! A step starts on a machine only from `available_from_ms` on and when its
//! `openings` allow (inside a shift, its run meeting no maintenance).

use super::model::{
    Alternative, Fixed, Job, Machine, ModelError, Objective, Openings, Operation, Problem,
};
use super::search::{SolveOptions, WarmStart, solve, solve_from};
use crate::domain::{FactoryId, JobToken, Location, MachineId, Millis};
use std::collections::{BTreeMap, HashMap};

/// A machine on the floor.
#[derive(Debug, Clone, PartialEq)]
pub struct FloorMachine {
    pub id: MachineId,
    pub factory: FactoryId,
    /// Where the factory is (for the distance to the customer).
    pub location: Location,
    pub capabilities: Vec<String>,
    pub materials: Vec<String>,
    /// Online, active and not faulted.
    pub accepts_jobs: bool,
    /// Time a step's base duration is divided by (1.0 is nominal).
    pub speed: f64,
    /// Setup time when the material changes.
    pub setup_ms: Millis,
    pub loaded_material: Option<String>,
    /// No new step starts before this (now, or the end of a pause).
    pub available_from_ms: Millis,
    /// Its shifts and maintenance ahead (`Openings::default()`: any time).
    pub openings: Openings,
}

/// One remaining step of a job (a line's process route, in order).
#[derive(Debug, Clone, PartialEq)]
pub struct FloorStep {
    pub process: String,
    pub material: String,
    /// Duration at speed 1.0 for the whole quantity.
    pub base_duration_ms: Millis,
}

/// A step running now: it stays where and when it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Running {
    pub machine: MachineId,
    pub started_ms: Millis,
    pub ends_ms: Millis,
}

/// A job (line item) with the steps it still needs.
#[derive(Debug, Clone, PartialEq)]
pub struct FloorJob {
    pub token: JobToken,
    /// Jobs with the same order key make one order for "late orders".
    pub order: String,
    /// Only machines of this factory, when set.
    pub factory: Option<FactoryId>,
    pub steps: Vec<FloorStep>,
    /// The first step is running (its duration is `ends_ms - started_ms`).
    pub running: Option<Running>,
    pub release_ms: Millis,
    pub due_ms: Millis,
    /// The customer, for the distance term (last step's factory to here).
    pub customer: Option<Location>,
}

/// One step in a machine's queue.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedStep {
    pub token: JobToken,
    pub step: usize,
    /// How many of the job's steps follow this one: names the step across
    /// plans, as the job's earlier steps finish (`replan_floor`).
    pub steps_after: usize,
    pub start_ms: Millis,
    pub end_ms: Millis,
    /// For a job's last step, metres from this machine to the job's
    /// customer (what the plan's `distance_m` sums); 0 for earlier steps
    /// and jobs without a customer. A repair reuses it for steps that keep
    /// their machine.
    pub distance_m: i64,
}

/// The plan: a queue per machine in start order, the score, and jobs that
/// cannot be placed with why.
#[derive(Debug, Clone, PartialEq)]
pub struct FloorPlan {
    pub queues: BTreeMap<MachineId, Vec<PlannedStep>>,
    pub late_orders: usize,
    pub total_lateness_ms: Millis,
    pub setup_ms: Millis,
    pub distance_m: i64,
    pub unplaceable: Vec<(JobToken, String)>,
}

impl FloorPlan {
    /// What to queue now: from each machine's planned queue, in start order,
    /// the first steps of jobs not running yet, as many as `room` allows for
    /// that machine (0 for a machine it does not know). The rest of the plan
    /// is only a forecast: the next round plans again. A job is taken once.
    pub fn queue_heads(
        &self,
        jobs: &[FloorJob],
        room: &dyn Fn(&MachineId) -> usize,
    ) -> Vec<(JobToken, MachineId)> {
        let waiting: std::collections::BTreeSet<JobToken> = jobs
            .iter()
            .filter(|job| job.running.is_none())
            .map(|job| job.token)
            .collect();
        let mut taken = std::collections::BTreeSet::new();
        let mut heads = Vec::new();
        for (machine, queue) in &self.queues {
            let room = room(machine);
            let mut placed = 0;
            for planned in queue {
                if placed >= room {
                    break;
                }
                if planned.step == 0
                    && waiting.contains(&planned.token)
                    && taken.insert(planned.token)
                {
                    heads.push((planned.token, machine.clone()));
                    placed += 1;
                }
            }
        }
        heads
    }
}

impl FloorMachine {
    /// Whether it may run `step` of `job` now.
    pub(super) fn runs(&self, job: &FloorJob, step: &FloorStep) -> bool {
        self.accepts_jobs
            && job.factory.as_ref().is_none_or(|f| *f == self.factory)
            && self.capabilities.contains(&step.process)
            && self.materials.contains(&step.material)
    }
}

/// Plans `jobs` onto `machines` under the floor objective. `progress` as in
/// `search::solve` (the caller's clock); `max_iterations` caps the search.
pub fn plan_floor(
    jobs: &[FloorJob],
    machines: &[FloorMachine],
    seed: u64,
    max_iterations: u64,
    progress: &mut dyn FnMut() -> f64,
) -> Result<FloorPlan, ModelError> {
    floor(jobs, machines, None, seed, max_iterations, progress)
}

/// `plan_floor` starting from `previous` (the last plan; see
/// `search::WarmStart`): every step still waiting keeps its machine and its
/// place in that machine's order when the machine can still run it; steps
/// of new jobs, and those of a machine that faulted, went offline or was
/// paused, are placed by the floor's list rule among them; the search then
/// goes on from there. The daemon re-plans this way every round after its
/// first, so planned queues stay put and the search's work accumulates.
pub fn replan_floor(
    previous: &FloorPlan,
    jobs: &[FloorJob],
    machines: &[FloorMachine],
    seed: u64,
    max_iterations: u64,
    progress: &mut dyn FnMut() -> f64,
) -> Result<FloorPlan, ModelError> {
    floor(
        jobs,
        machines,
        Some(previous),
        seed,
        max_iterations,
        progress,
    )
}

/// The engine's problem for a floor: jobs that can be placed (`placed[j]`
/// is problem job `j`), those that cannot with why, and the previous
/// plan's hints when there is one.
pub(super) struct Built<'a> {
    pub problem: Problem,
    pub placed: Vec<&'a FloorJob>,
    pub unplaceable: Vec<(JobToken, String)>,
    pub warm: WarmStart,
}

fn floor(
    jobs: &[FloorJob],
    machines: &[FloorMachine],
    previous: Option<&FloorPlan>,
    seed: u64,
    max_iterations: u64,
    progress: &mut dyn FnMut() -> f64,
) -> Result<FloorPlan, ModelError> {
    let Built {
        problem,
        placed,
        unplaceable,
        warm,
    } = build(jobs, machines, previous);
    let options = SolveOptions {
        objective: Objective::Floor,
        seed,
        max_iterations,
    };
    let schedule = match previous {
        Some(_) => solve_from(&problem, &options, &warm, progress)?,
        None => solve(&problem, &options, progress)?,
    };
    let mut queues: BTreeMap<MachineId, Vec<PlannedStep>> = machines
        .iter()
        .map(|m| (m.id.clone(), Vec::new()))
        .collect();
    for s in &schedule.operations {
        if let (Some(machine), Some(job)) = (machines.get(s.machine), placed.get(s.job)) {
            let distance_m = problem.jobs[s.job].operations[s.op]
                .alternatives
                .iter()
                .find(|alt| alt.machine == s.machine)
                .map_or(0, |alt| alt.distance);
            queues
                .entry(machine.id.clone())
                .or_default()
                .push(PlannedStep {
                    token: job.token,
                    step: s.op,
                    steps_after: job.steps.len().saturating_sub(s.op + 1),
                    start_ms: s.start,
                    end_ms: s.end,
                    distance_m,
                });
        }
    }
    for queue in queues.values_mut() {
        queue.sort_by_key(|p| (p.start_ms, p.end_ms));
    }
    Ok(FloorPlan {
        queues,
        late_orders: schedule.score.late_orders,
        total_lateness_ms: schedule.score.total_lateness,
        setup_ms: schedule.score.setup_time,
        distance_m: schedule.score.distance,
        unplaceable,
    })
}

/// The problem `plan_floor` solves for `jobs` on `machines`.
pub(super) fn build<'a>(
    jobs: &'a [FloorJob],
    machines: &[FloorMachine],
    previous: Option<&FloorPlan>,
) -> Built<'a> {
    let machine_index: HashMap<&MachineId, usize> = machines
        .iter()
        .enumerate()
        .map(|(i, m)| (&m.id, i))
        .collect();
    // Where the previous plan had each step: (token, steps after it).
    let planned: HashMap<(JobToken, usize), (usize, Millis)> = previous
        .into_iter()
        .flat_map(|plan| &plan.queues)
        .filter_map(|(id, queue)| Some((machine_index.get(id).copied()?, queue)))
        .flat_map(|(m, queue)| {
            queue
                .iter()
                .map(move |p| ((p.token, p.steps_after), (m, p.start_ms)))
        })
        .collect();
    let mut warm = WarmStart::default();
    let mut families: BTreeMap<&str, u32> = BTreeMap::new();
    // Every material a step needs or a machine has loaded is a family (a
    // loaded material no step needs still costs a setup to change).
    let materials = jobs
        .iter()
        .flat_map(|job| job.steps.iter().map(|step| step.material.as_str()))
        .chain(machines.iter().filter_map(|m| m.loaded_material.as_deref()));
    for material in materials {
        let next = families.len() as u32;
        families.entry(material).or_insert(next);
    }
    let mut orders: BTreeMap<&str, usize> = BTreeMap::new();
    let mut problem = Problem {
        jobs: Vec::new(),
        machines: machines
            .iter()
            .map(|m| Machine {
                available_from: m.available_from_ms,
                setup: m.setup_ms.max(0),
                loaded_family: m
                    .loaded_material
                    .as_deref()
                    .and_then(|name| families.get(name).copied()),
                openings: m.openings.clone(),
            })
            .collect(),
    };
    let mut placed: Vec<&'a FloorJob> = Vec::new();
    let mut unplaceable = Vec::new();
    let mut capable: HashMap<(Option<&FactoryId>, &str, &str), Vec<usize>> = HashMap::new();
    let mut running_on: Vec<usize> = Vec::with_capacity(1);
    'jobs: for job in jobs {
        let mut operations = Vec::with_capacity(job.steps.len());
        for (s, step) in job.steps.iter().enumerate() {
            let last = s + 1 == job.steps.len();
            let running = if s == 0 { job.running.as_ref() } else { None };
            // Which machines run a step depends only on the job's factory,
            // the process and the material: worked out once per triple.
            let capable: &[usize] = match running {
                Some(r) => {
                    running_on.clear();
                    running_on.extend(machines.iter().position(|m| m.id == r.machine));
                    &running_on
                }
                None => capable
                    .entry((
                        job.factory.as_ref(),
                        step.process.as_str(),
                        step.material.as_str(),
                    ))
                    .or_insert_with(|| {
                        machines
                            .iter()
                            .enumerate()
                            .filter(|(_, m)| m.runs(job, step))
                            .map(|(i, _)| i)
                            .collect()
                    }),
            };
            let alternatives: Vec<Alternative> = capable
                .iter()
                .map(|&i| (i, &machines[i]))
                .map(|(i, m)| Alternative {
                    machine: i,
                    duration: match running {
                        Some(r) => (r.ends_ms - r.started_ms).max(1),
                        None => {
                            let speed = if m.speed > 0.0 { m.speed } else { 1.0 };
                            ((step.base_duration_ms as f64 / speed).ceil() as Millis).max(1)
                        }
                    },
                    distance: match (last, job.customer) {
                        (true, Some(c)) => m.location.distance_m(c).round() as i64,
                        _ => 0,
                    },
                })
                .collect();
            if alternatives.is_empty() {
                let reason = match running {
                    Some(r) => format!("running on unknown machine {}", r.machine),
                    None => format!(
                        "no machine accepts step {s} ({} on {})",
                        step.process, step.material
                    ),
                };
                unplaceable.push((job.token, reason));
                continue 'jobs;
            }
            operations.push(Operation {
                fixed: running.map(|r| Fixed {
                    machine: alternatives[0].machine,
                    start: r.started_ms,
                }),
                alternatives,
                family: families.get(step.material.as_str()).copied(),
            });
        }
        if previous.is_some() {
            let count = job.steps.len();
            warm.hints.push(
                (0..count)
                    .map(|s| planned.get(&(job.token, count - 1 - s)).copied())
                    .collect(),
            );
        }
        let next = orders.len();
        let order = *orders.entry(job.order.as_str()).or_insert(next);
        problem.jobs.push(Job {
            operations,
            release: job.release_ms,
            due: Some(job.due_ms),
            order,
        });
        placed.push(job);
    }
    Built {
        problem,
        placed,
        unplaceable,
        warm,
    }
}
