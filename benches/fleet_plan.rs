//! Fleet planning at scale and plan quality, on seeded generated floors.
//!
//! ```text
//! cargo bench --bench fleet_plan -- --seed 1
//! ```
//!
//! 1. Speed: the queue rule (`plan::assign_jobs`) over 100,000 pending jobs
//!    and 1,000 machines in 50 factories, then again after one machine
//!    faults; the shop planner (`plan::shop::plan_floor`) on the same floor at
//!    growing job counts while its construction stays within `--shop-limit-s`.
//! 2. Quality: on smaller generated floors with tight due dates, late jobs and
//!    total lateness of each planner's schedule (each machine runs its queue
//!    back to back from 0) against a lower bound (`plan::lateness`).
//!
//! It prints plain text, with a reference time (sorting 1,000,000 u64)
//! measured in the same run. See docs/benchmarks.md.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use clap::Parser;
use fabflow::domain::{FactoryId, JobToken, Location, MachineId, Millis};
use fabflow::plan::lateness::{Lateness, TimedJob, lateness_bound, queue_lateness};
use fabflow::plan::shop::{
    FloorJob, FloorMachine, FloorPlan, FloorStep, Openings, plan_floor, repair_floor, replan_floor,
};
use fabflow::plan::{JobCandidate, MachineSlot, assign_jobs};

#[derive(Debug, Parser)]
#[command(about = "Time the fleet planners at scale and compare their plans' lateness")]
struct Args {
    /// Seed of every generated floor.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    #[arg(long, default_value_t = 50)]
    factories: usize,
    #[arg(long, default_value_t = 1_000)]
    machines: usize,
    #[arg(long, default_value_t = 100_000)]
    jobs: usize,
    /// Repetitions of each timed queue-rule pass (min/median/max reported).
    #[arg(long, default_value_t = 5)]
    repeat: usize,
    /// The daemon's `scheduler.max_queue` (default 2).
    #[arg(long, default_value_t = 2)]
    max_queue: usize,
    /// Shop planner: time budget of one plan (the progress closure).
    #[arg(long, default_value_t = 2_000)]
    shop_budget_ms: u64,
    /// Shop planner: job counts tried on the full floor, in order.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "1000,2000,5000,10000,20000,50000,100000"
    )]
    shop_sizes: Vec<usize>,
    /// Shop planner: stop growing once a construction alone took longer.
    #[arg(long, default_value_t = 20.0)]
    shop_limit_s: f64,
    /// Quality: number of generated instances (200 to 2,000 jobs).
    #[arg(long, default_value_t = 10)]
    quality_instances: usize,
    /// Quality: shop planner budget per instance.
    #[arg(long, default_value_t = 1_000)]
    quality_budget_ms: u64,
    /// Passed by `cargo bench` to every bench binary; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The daemon's iteration cap of the shop planner (runtime::scheduler).
const SHOP_MAX_ITERATIONS: u64 = 20_000;
const MINUTE_MS: Millis = 60_000;
const HOUR_MS: Millis = 60 * MINUTE_MS;
const PROCESSES: &[&str] = &["print", "cut", "embroider", "press", "engrave", "sew"];
const MATERIALS: &[&str] = &["pla", "petg", "cotton", "poly", "birch"];

/// splitmix64: small, seeded, and the same on every platform and version.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn range(&mut self, low: Millis, high: Millis) -> Millis {
        low + (self.next() % (high - low + 1) as u64) as Millis
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// 1 to `most` distinct names out of `names`.
    fn some_of(&mut self, names: &[&str], most: usize) -> Vec<String> {
        let count = 1 + self.below(most.min(names.len()));
        let mut pool: Vec<&str> = names.to_vec();
        (0..count)
            .map(|_| pool.swap_remove(self.below(pool.len())).to_string())
            .collect()
    }
}

/// What the generator decides about a floor.
struct Shape {
    factories: usize,
    machines: usize,
    jobs: usize,
    processing_ms: (Millis, Millis),
    /// Due times are drawn uniformly from this range (from time 0).
    due_ms: (Millis, Millis),
}

struct BenchJob {
    candidate: JobCandidate,
    processing_ms: Millis,
    customer: Location,
}

struct Fleet {
    locations: HashMap<FactoryId, Location>,
    machines: Vec<MachineSlot>,
    jobs: Vec<BenchJob>,
}

fn city(rng: &mut Rng) -> Location {
    // A city-sized box (Berlin).
    Location::new(52.40 + 0.2 * rng.unit(), 13.20 + 0.4 * rng.unit())
}

fn generate(seed: u64, shape: &Shape) -> Fleet {
    let mut rng = Rng(seed);
    let factories: Vec<(FactoryId, Location)> = (0..shape.factories)
        .map(|f| (FactoryId::new(format!("factory-{f:02}")), city(&mut rng)))
        .collect();
    let machines: Vec<MachineSlot> = (0..shape.machines)
        .map(|m| MachineSlot {
            id: MachineId::new(format!("machine-{m:04}")),
            factory: factories[m % shape.factories].0.clone(),
            capabilities: rng.some_of(PROCESSES, 3),
            materials: rng.some_of(MATERIALS, 3),
            accepts_jobs: true,
            queue_len: 0,
            loaded_material: None,
            opens_ms: Some(0),
            speed: 1.0,
        })
        .collect();
    let jobs = (0..shape.jobs)
        .map(|j| {
            // A machine of a random factory, and something it can run: every
            // job has at least one capable machine.
            let factory = rng.below(shape.factories);
            let per_factory = shape.machines.div_ceil(shape.factories);
            let mut m = factory + shape.factories * rng.below(per_factory);
            if m >= shape.machines {
                m = factory;
            }
            let machine = &machines[m];
            BenchJob {
                candidate: JobCandidate {
                    token: JobToken(j as u32),
                    factory: machine.factory.clone(),
                    process: machine.capabilities[rng.below(machine.capabilities.len())].clone(),
                    material: machine.materials[rng.below(machine.materials.len())].clone(),
                    due_ms: rng.range(shape.due_ms.0, shape.due_ms.1),
                },
                processing_ms: rng.range(shape.processing_ms.0, shape.processing_ms.1),
                customer: city(&mut rng),
            }
        })
        .collect();
    Fleet {
        locations: factories.into_iter().collect(),
        machines,
        jobs,
    }
}

fn candidates(fleet: &Fleet, count: usize) -> Vec<JobCandidate> {
    fleet.jobs[..count]
        .iter()
        .map(|job| job.candidate.clone())
        .collect()
}

fn floor_machines(fleet: &Fleet) -> Vec<FloorMachine> {
    fleet
        .machines
        .iter()
        .map(|slot| FloorMachine {
            id: slot.id.clone(),
            factory: slot.factory.clone(),
            location: fleet.locations[&slot.factory],
            capabilities: slot.capabilities.clone(),
            materials: slot.materials.clone(),
            accepts_jobs: slot.accepts_jobs,
            speed: 1.0,
            setup_ms: 0,
            loaded_material: None,
            available_from_ms: 0,
            openings: Openings::default(),
        })
        .collect()
}

/// As the runtime builds them: one step, released now (0), one order each.
fn floor_jobs(fleet: &Fleet, count: usize) -> Vec<FloorJob> {
    fleet.jobs[..count]
        .iter()
        .map(|job| FloorJob {
            token: job.candidate.token,
            order: job.candidate.token.to_string(),
            factory: Some(job.candidate.factory.clone()),
            steps: vec![FloorStep {
                process: job.candidate.process.clone(),
                material: job.candidate.material.clone(),
                base_duration_ms: job.processing_ms,
            }],
            running: None,
            release_ms: 0,
            due_ms: job.candidate.due_ms,
            customer: Some(job.customer),
        })
        .collect()
}

/// min / median / max of repeated timings, in milliseconds.
fn spread(times: &mut [Duration]) -> String {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    format!(
        "min {:.1} ms, median {:.1} ms, max {:.1} ms ({} runs)",
        ms(times[0]),
        ms(times[times.len() / 2]),
        ms(times[times.len() - 1]),
        times.len()
    )
}

fn timed<T>(repeat: usize, mut run: impl FnMut() -> T) -> (String, T) {
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..repeat.max(1) {
        let started = Instant::now();
        let answer = run();
        times.push(started.elapsed());
        last = Some(answer);
    }
    let answer = last.unwrap_or_else(|| unreachable!("repeat is at least 1"));
    (spread(&mut times), answer)
}

/// Reference work for readers on other machines: sort 1,000,000 u64.
fn reference(repeat: usize) -> String {
    let mut rng = Rng(7);
    let values: Vec<u64> = (0..1_000_000).map(|_| rng.next()).collect();
    let (line, checksum) = timed(repeat, || {
        let mut copy = values.clone();
        copy.sort_unstable();
        copy[500_000]
    });
    std::hint::black_box(checksum);
    line
}

/// Jobs per machine after `assign_jobs`.
fn queue_counts(assignments: &[(JobToken, MachineId)]) -> HashMap<MachineId, usize> {
    let mut counts = HashMap::new();
    for (_, machine) in assignments {
        *counts.entry(machine.clone()).or_insert(0) += 1;
    }
    counts
}

/// The floor after one round: queues as assigned, `faulted` out and empty.
fn after_fault(
    machines: &[MachineSlot],
    counts: &HashMap<MachineId, usize>,
    faulted: &MachineId,
) -> Vec<MachineSlot> {
    machines
        .iter()
        .map(|slot| {
            let mut slot = slot.clone();
            if slot.id == *faulted {
                slot.accepts_jobs = false;
                slot.queue_len = 0;
            } else {
                slot.queue_len = counts.get(&slot.id).copied().unwrap_or(0);
            }
            slot
        })
        .collect()
}

fn queue_rule_at_scale(args: &Args, fleet: &Fleet) {
    let jobs = candidates(fleet, fleet.jobs.len());
    println!("queue rule (plan::assign_jobs; time of the call only, inputs built beforehand):");
    for (label, max_queue) in [
        ("daemon max_queue", args.max_queue),
        ("unlimited max_queue", usize::MAX),
    ] {
        let (line, first) = timed(args.repeat, || {
            assign_jobs(&jobs, &fleet.machines, max_queue)
        });
        let shown = if max_queue == usize::MAX {
            "unlimited".to_string()
        } else {
            max_queue.to_string()
        };
        println!(
            "  full pass, {label} = {shown}: {line}; {} of {} jobs queued",
            first.len(),
            jobs.len()
        );
        // Fault the machine that got the earliest-due job; its jobs go back
        // to pending, every other queue stays as assigned.
        let Some((_, faulted)) = first.first().cloned() else {
            continue;
        };
        let counts = queue_counts(&first);
        let machines = after_fault(&fleet.machines, &counts, &faulted);
        let queued: HashSet<JobToken> = first
            .iter()
            .filter(|(_, machine)| *machine != faulted)
            .map(|(token, _)| *token)
            .collect();
        let pending: Vec<JobCandidate> = jobs
            .iter()
            .filter(|job| !queued.contains(&job.token))
            .cloned()
            .collect();
        let displaced = counts.get(&faulted).copied().unwrap_or(0);
        let placed: HashSet<JobToken> = first.iter().map(|(token, _)| *token).collect();
        let unplaced: HashSet<JobToken> = jobs
            .iter()
            .map(|job| job.token)
            .filter(|token| !placed.contains(token))
            .collect();
        let (line, again) = timed(args.repeat, || assign_jobs(&pending, &machines, max_queue));
        println!(
            "  re-plan after {faulted} faults ({displaced} jobs back to pending, {} pending in all, \
             the daemon's next round): {line}; {} queued",
            pending.len(),
            again.len()
        );
        if max_queue == usize::MAX {
            let displaced_jobs: Vec<JobCandidate> = pending
                .iter()
                .filter(|job| !unplaced.contains(&job.token))
                .cloned()
                .collect();
            let (line, again) = timed(args.repeat, || {
                assign_jobs(&displaced_jobs, &machines, max_queue)
            });
            println!(
                "  re-plan of only the {} displaced jobs (others keep their queues): {line}; {} queued",
                displaced_jobs.len(),
                again.len()
            );
        }
    }
}

fn shop_at_scale(args: &Args, fleet: &Fleet) {
    println!(
        "shop planner (plan::shop::plan_floor, seed 1, iteration cap {SHOP_MAX_ITERATIONS}, one step per job, \
         on all {} machines):",
        fleet.machines.len()
    );
    let machines = floor_machines(fleet);
    let mut last: Option<(usize, f64)> = None;
    for &size in &args.shop_sizes {
        if size > fleet.jobs.len() {
            break;
        }
        let jobs = floor_jobs(fleet, size);
        // Construction alone: no search iteration allowed.
        let started = Instant::now();
        let built = plan_floor(&jobs, &machines, 1, 0, &mut || 0.0);
        let construct_s = started.elapsed().as_secs_f64();
        // The re-plan after one machine faults, as the daemon's next round
        // makes it: the same jobs on the floor without that machine
        // (construction alone; its search is bounded by the round's budget).
        let mut faulted = machines.clone();
        faulted[0].accepts_jobs = false;
        let started = Instant::now();
        let replanned = plan_floor(&jobs, &faulted, 1, 0, &mut || 0.0);
        let replan_s = started.elapsed().as_secs_f64();
        // The same re-plan as the daemon makes it: from the previous plan
        // (`replan_floor`), the faulted machine's steps placed among the rest.
        let started = Instant::now();
        let warm = built
            .as_ref()
            .ok()
            .map(|plan| replan_floor(plan, &jobs, &faulted, 1, 0, &mut || 0.0));
        let warm_s = started.elapsed().as_secs_f64();
        // The repair the daemon makes between full rounds: only the faulted
        // machine's steps placed again (`repair_floor`).
        // Repeated (`--repeat`): one repair takes milliseconds, and one
        // sample of it swings with the allocator's state.
        let (repair_times, repaired) = timed(args.repeat, || {
            built
                .as_ref()
                .ok()
                .and_then(|plan| repair_floor(plan, &jobs, &faulted, usize::MAX))
        });
        let budget = Duration::from_millis(args.shop_budget_ms);
        let started = Instant::now();
        let mut progress = || started.elapsed().as_secs_f64() / budget.as_secs_f64().max(1e-3);
        let searched = plan_floor(&jobs, &machines, 1, SHOP_MAX_ITERATIONS, &mut progress);
        let search_s = started.elapsed().as_secs_f64();
        match (built, searched, replanned) {
            (Ok(built), Ok(searched), Ok(replanned)) => println!(
                "  {size} jobs: construction alone {construct_s:.3} s ({}); with a {} ms budget {search_s:.3} s ({}); \
                 re-plan after one machine faults, construction alone: from scratch {replan_s:.3} s ({}), \
                 from the previous plan {warm_s:.4} s ({}); repair of the previous plan {repair_times} ({})",
                score(&built),
                args.shop_budget_ms,
                score(&searched),
                score(&replanned),
                match &warm {
                    Some(Ok(plan)) => score(plan),
                    Some(Err(err)) => format!("refused: {err}"),
                    None => "no previous plan".to_string(),
                },
                repaired
                    .as_ref()
                    .map_or("no previous plan".to_string(), score),
            ),
            (Err(err), _, _) | (_, Err(err), _) | (_, _, Err(err)) => {
                println!("  {size} jobs: refused: {err}")
            }
        }
        last = Some((size, construct_s));
        if construct_s > args.shop_limit_s {
            println!(
                "  stopping: construction took over {} s (--shop-limit-s)",
                args.shop_limit_s
            );
            break;
        }
    }
    if let Some((size, _)) = last
        && size < fleet.jobs.len()
    {
        println!(
            "  not run at {} jobs (the last size tried was {size}: see --shop-sizes and --shop-limit-s)",
            fleet.jobs.len()
        );
    }
}

fn score(plan: &FloorPlan) -> String {
    format!(
        "planner's own score: {} late, total lateness {:.1} h, {} unplaceable",
        plan.late_orders,
        plan.total_lateness_ms as f64 / HOUR_MS as f64,
        plan.unplaceable.len()
    )
}

/// Each machine runs its queue back to back from 0.
fn queues_lateness(queues: &BTreeMap<MachineId, Vec<TimedJob>>) -> Lateness {
    queues
        .values()
        .map(|queue| queue_lateness(queue, 0))
        .fold(Lateness::default(), |a, b| a + b)
}

fn timed_jobs(fleet: &Fleet) -> HashMap<JobToken, TimedJob> {
    fleet
        .jobs
        .iter()
        .map(|job| {
            (
                job.candidate.token,
                TimedJob {
                    processing_ms: job.processing_ms,
                    due_ms: job.candidate.due_ms,
                },
            )
        })
        .collect()
}

/// The queue rule once with unlimited queues; each queue in assignment
/// (earliest due first) order.
fn queue_rule_once(fleet: &Fleet, timing: &HashMap<JobToken, TimedJob>) -> (Lateness, usize) {
    let jobs = candidates(fleet, fleet.jobs.len());
    let assignments = assign_jobs(&jobs, &fleet.machines, usize::MAX);
    let mut queues: BTreeMap<MachineId, Vec<TimedJob>> = BTreeMap::new();
    for (token, machine) in &assignments {
        queues
            .entry(machine.clone())
            .or_default()
            .push(timing[token]);
    }
    (queues_lateness(&queues), jobs.len() - assignments.len())
}

/// The queue rule as the daemon runs it: a round at 0 and whenever a job
/// ends, each filling queues up to `max_queue` (the running job counts).
fn queue_rule_rounds(
    fleet: &Fleet,
    timing: &HashMap<JobToken, TimedJob>,
    max_queue: usize,
) -> (Lateness, usize) {
    let mut slots = fleet.machines.clone();
    let index: HashMap<MachineId, usize> = slots
        .iter()
        .enumerate()
        .map(|(i, slot)| (slot.id.clone(), i))
        .collect();
    let mut queues: Vec<VecDeque<JobToken>> = vec![VecDeque::new(); slots.len()];
    let mut ends: Vec<Option<Millis>> = vec![None; slots.len()];
    let mut pending = candidates(fleet, fleet.jobs.len());
    let mut lateness = Lateness::default();
    let mut now = 0;
    loop {
        for (slot, queue) in slots.iter_mut().zip(&queues) {
            slot.queue_len = queue.len();
        }
        let assigned = assign_jobs(&pending, &slots, max_queue);
        let taken: HashSet<JobToken> = assigned.iter().map(|(token, _)| *token).collect();
        pending.retain(|job| !taken.contains(&job.token));
        for (token, machine) in assigned {
            queues[index[&machine]].push_back(token);
        }
        for (queue, end) in queues.iter().zip(ends.iter_mut()) {
            if end.is_none()
                && let Some(token) = queue.front()
            {
                *end = Some(now + timing[token].processing_ms);
            }
        }
        let Some(next) = ends.iter().flatten().min().copied() else {
            break;
        };
        now = next;
        for (queue, end) in queues.iter_mut().zip(ends.iter_mut()) {
            if *end == Some(now)
                && let Some(token) = queue.pop_front()
            {
                let job = timing[&token];
                if now > job.due_ms {
                    lateness.late_jobs += 1;
                    lateness.total_lateness_ms += now - job.due_ms;
                }
                *end = queue.front().map(|next| now + timing[next].processing_ms);
            }
        }
    }
    (lateness, pending.len())
}

/// The shop planner's full plan; each machine runs it in planned order.
fn shop_plan(
    fleet: &Fleet,
    timing: &HashMap<JobToken, TimedJob>,
    budget: Duration,
) -> Result<(Lateness, usize, f64), String> {
    let jobs = floor_jobs(fleet, fleet.jobs.len());
    let machines = floor_machines(fleet);
    let started = Instant::now();
    let mut progress = || started.elapsed().as_secs_f64() / budget.as_secs_f64().max(1e-3);
    let plan = plan_floor(&jobs, &machines, 1, SHOP_MAX_ITERATIONS, &mut progress)
        .map_err(|err| err.to_string())?;
    let seconds = started.elapsed().as_secs_f64();
    let queues: BTreeMap<MachineId, Vec<TimedJob>> = plan
        .queues
        .iter()
        .map(|(machine, steps)| {
            (
                machine.clone(),
                steps.iter().map(|step| timing[&step.token]).collect(),
            )
        })
        .collect();
    Ok((queues_lateness(&queues), plan.unplaceable.len(), seconds))
}

/// `plan::lateness::lateness_bound` per factory: the larger of (a) the sum
/// over groups of jobs with the same capable machines, each on those
/// machines, and (b) all the factory's jobs on every machine that can run one
/// of them. Factories share no job and no machine, so their bounds add up.
fn fleet_bound(fleet: &Fleet, timing: &HashMap<JobToken, TimedJob>) -> Lateness {
    let mut by_factory: BTreeMap<&FactoryId, BTreeMap<Vec<usize>, Vec<TimedJob>>> = BTreeMap::new();
    for job in &fleet.jobs {
        let capable: Vec<usize> = fleet
            .machines
            .iter()
            .enumerate()
            .filter(|(_, m)| {
                m.accepts_jobs
                    && m.factory == job.candidate.factory
                    && m.capabilities.contains(&job.candidate.process)
                    && m.materials.contains(&job.candidate.material)
            })
            .map(|(i, _)| i)
            .collect();
        by_factory
            .entry(&job.candidate.factory)
            .or_default()
            .entry(capable)
            .or_default()
            .push(timing[&job.candidate.token]);
    }
    let mut total = Lateness::default();
    for groups in by_factory.values() {
        let fine = groups
            .iter()
            .map(|(capable, jobs)| lateness_bound(jobs, capable.len()))
            .fold(Lateness::default(), |a, b| a + b);
        let any: HashSet<usize> = groups.keys().flatten().copied().collect();
        let all: Vec<TimedJob> = groups.values().flatten().copied().collect();
        let coarse = lateness_bound(&all, any.len());
        total = total + fine.max(coarse);
    }
    total
}

fn hours(ms: Millis) -> f64 {
    ms as f64 / HOUR_MS as f64
}

fn quality(args: &Args) {
    println!(
        "plan quality ({} instances; late jobs / total lateness in hours; each machine runs its \
         queue back to back from 0; processing 10-60 min, due times uniform over the last 3/4 of \
         an even share of the work):",
        args.quality_instances
    );
    println!(
        "  {:>5} {:>4} {:>3} | {:>16} | {:>16} | {:>16} | {:>16}",
        "jobs",
        "mach",
        "fac",
        "queue once",
        format!("queue rounds q={}", args.max_queue),
        "shop plan",
        "lower bound"
    );
    let mut sums = [Lateness::default(); 4];
    let mut shop_seconds: Vec<f64> = Vec::new();
    for i in 0..args.quality_instances {
        let steps = args.quality_instances.saturating_sub(1).max(1);
        let jobs = 200 + 1_800 * i / steps;
        let machines = 20 + 30 * i / steps;
        let factories = 2 + 3 * i / steps;
        // An even share of the expected work (35 min a job) per machine.
        let share = (jobs as Millis * 35 * MINUTE_MS) / machines as Millis;
        let shape = Shape {
            factories,
            machines,
            jobs,
            processing_ms: (10 * MINUTE_MS, 60 * MINUTE_MS),
            due_ms: (share / 4, share),
        };
        let fleet = generate(args.seed.wrapping_add(1_000 + i as u64), &shape);
        let timing = timed_jobs(&fleet);
        let (once, left_once) = queue_rule_once(&fleet, &timing);
        let (rounds, left_rounds) = queue_rule_rounds(&fleet, &timing, args.max_queue);
        let bound = fleet_bound(&fleet, &timing);
        let shop = shop_plan(
            &fleet,
            &timing,
            Duration::from_millis(args.quality_budget_ms),
        );
        let cell =
            |l: Lateness| format!("{:>5} / {:>8.1}", l.late_jobs, hours(l.total_lateness_ms));
        let shop_cell = match &shop {
            Ok((lateness, unplaceable, seconds)) => {
                shop_seconds.push(*seconds);
                sums[2] = sums[2] + *lateness;
                if *unplaceable > 0 {
                    format!("{} ({unplaceable} unplaced)", cell(*lateness))
                } else {
                    cell(*lateness)
                }
            }
            Err(err) => format!("refused: {err}"),
        };
        sums[0] = sums[0] + once;
        sums[1] = sums[1] + rounds;
        sums[3] = sums[3] + bound;
        println!(
            "  {jobs:>5} {machines:>4} {factories:>3} | {} | {} | {shop_cell} | {}",
            cell(once),
            cell(rounds),
            cell(bound)
        );
        if left_once + left_rounds > 0 {
            println!("    (queue rule left {left_once} / {left_rounds} jobs unplaced)");
        }
    }
    let cell = |l: Lateness| format!("{:>5} / {:>8.1}", l.late_jobs, hours(l.total_lateness_ms));
    println!(
        "  {:>14} | {} | {} | {} | {}",
        "sum",
        cell(sums[0]),
        cell(sums[1]),
        cell(sums[2]),
        cell(sums[3])
    );
    if !shop_seconds.is_empty() {
        let most = shop_seconds.iter().copied().fold(0.0, f64::max);
        println!(
            "  shop planner: budget {} ms, iteration cap {SHOP_MAX_ITERATIONS}, longest plan {most:.2} s",
            args.quality_budget_ms
        );
    }
}

fn main() {
    let args = Args::parse();
    let command: Vec<String> = std::env::args().collect();
    println!("command: {}", command.join(" "));
    println!(
        "reference, sort 1,000,000 u64 (sort_unstable): {}",
        reference(args.repeat)
    );
    let shape = Shape {
        factories: args.factories.max(1),
        machines: args.machines.max(1),
        jobs: args.jobs,
        processing_ms: (2 * MINUTE_MS, 40 * MINUTE_MS),
        due_ms: (HOUR_MS, 48 * HOUR_MS),
    };
    let started = Instant::now();
    let fleet = generate(args.seed, &shape);
    println!(
        "floor: seed {}, {} factories, {} machines (1-3 of {} processes, 1-3 of {} materials), \
         {} jobs (2-40 min, due 1-48 h), generated in {:.2} s",
        args.seed,
        shape.factories,
        shape.machines,
        PROCESSES.len(),
        MATERIALS.len(),
        shape.jobs,
        started.elapsed().as_secs_f64()
    );
    queue_rule_at_scale(&args, &fleet);
    shop_at_scale(&args, &fleet);
    quality(&args);
}
