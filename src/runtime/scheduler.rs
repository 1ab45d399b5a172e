//! The scheduling loop: every interval (or when woken), ready jobs are put in
//! machine queues by the pure planner: the head of each machine's queue in a
//! `plan::shop` floor plan (`planner = "shop"`, the default), or earliest
//! deadline first onto the shortest queue (`planner = "queue"`).
//!
//! Either way jobs reach machines only through `Store::schedule_jobs`, never
//! beyond `max_queue` per machine, so dispatch, fencing and re-planning on
//! pause, fault or offline (which hands queued jobs back) do not depend on
//! the planner. Jobs already dispatched or running never move.

use crate::config::Planner;
use crate::domain::calendar::Calendar;
use crate::domain::{JobToken, Location, MachineId, Millis};
use crate::plan::shop::{
    FloorJob, FloorMachine, FloorPlan, FloorStep, Openings, plan_floor, repair_floor, replan_floor,
};
use crate::plan::{JobCandidate, MachineSlot, assign_jobs};
use crate::runtime::clock::Clock;
use crate::runtime::wake::{Wake, Wakers};
use crate::store::{MachineRecord, SchedulableJob, Store, StoreError};
use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

/// The most ready jobs of one factory, process and material a round reads.
const MAX_JOBS_PER_KIND: usize = 200;

/// How much sooner a ready job must be due than a queued job not started
/// to take its place (domain time).
const HAND_BACK_GAIN_MS: Millis = 30 * 60_000;

/// The most ready jobs one look for rush jobs reads.
const HAND_BACK_READ: i64 = 50;

/// How often (real time) the scheduler looks for rush jobs.
const HAND_BACK_EVERY: Duration = Duration::from_secs(1);

/// Iteration cap of one `shop` round, besides its wall-clock budget.
const SHOP_MAX_ITERATIONS: u64 = 20_000;

/// The `shop` planner plans the floor in full (construction and search) at
/// least this often; rounds in between repair the last plan
/// (`plan::shop::repair_floor`) when few steps need a new place.
const FULL_PLAN_EVERY: Duration = Duration::from_secs(5);

/// A round repairs the last plan only when at most this share of the
/// floor's steps (and at least `REPAIR_MIN_LOOSE`) need a new place; more
/// (a burst of orders, the first round) is planned in full.
const REPAIR_LOOSE_SHARE: usize = 20;
const REPAIR_MIN_LOOSE: usize = 32;

/// After a round that took `t`, the next starts no sooner than
/// `REST_PER_ROUND * t` later: scheduling takes at most a fifth of a core
/// however large the floor (a `shop` round on a large floor takes its whole
/// budget). Small rounds (a few milliseconds) are not held back by it.
const REST_PER_ROUND: u32 = 4;

pub struct Scheduler {
    pub store: Store,
    pub clock: Clock,
    pub interval: Duration,
    pub max_queue: usize,
    pub planner: Planner,
    /// Wall-clock budget of the `shop` planner per round.
    pub plan_budget: Duration,
    /// Factory locations, for the floor objective's distance to the customer.
    pub factories: HashMap<String, Location>,
    /// Woken by supervisors and intake when there is new work or a free
    /// machine; wakes the outbox publisher after a round that queued jobs.
    pub wakers: Wakers,
    /// The leases this daemon holds: it schedules only onto the machines
    /// of its factories, each factory's jobs in a transaction fenced by
    /// that factory's lease.
    pub holdings: std::sync::Arc<crate::runtime::cluster::Holdings>,
    /// Each machine's configured shifts (none: always works), for the
    /// `shop` planner's machine availability.
    pub shifts: HashMap<String, Vec<crate::domain::calendar::Shift>>,
    /// Each machine's configured pace (none: speed 1, no setup), for the
    /// `shop` planner.
    pub paces: HashMap<String, Pace>,
    /// The `shop` planner's last plan: the next round starts from it
    /// (`plan::shop::replan_floor`), so queues do not reshuffle from round
    /// to round and the search goes on where the last round stopped.
    pub last_plan: SharedPlan,
    /// When the `shop` planner last planned in full (none yet: the next
    /// round does).
    pub last_full_plan: std::sync::Mutex<Option<Instant>>,
}

/// The `shop` planner's last plan, shared with the promise watch (which
/// reads each job's planned end from it).
pub type SharedPlan = std::sync::Arc<std::sync::Mutex<Option<std::sync::Arc<FloorPlan>>>>;

/// How a machine works, as configured: its speed against the SKUs'
/// seconds per unit, and how long a change of material takes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pace {
    pub speed: f64,
    pub setup_ms: Millis,
}

impl Default for Pace {
    fn default() -> Self {
        Pace {
            speed: 1.0,
            setup_ms: 0,
        }
    }
}

impl Pace {
    /// A machine's pace from its configuration.
    pub fn of(machine: &crate::config::MachineConfig) -> Pace {
        Pace {
            speed: machine.speed,
            setup_ms: (machine.setup_minutes * 60_000.0).round() as Millis,
        }
    }
}

impl Scheduler {
    pub async fn run(self, cancel: CancellationToken) {
        // Wake-ups within a fraction of the interval after a round share the
        // next round: on a large floor something changes every few
        // milliseconds, and a round reads every machine.
        let gap = self.interval / 2;
        let mut looked = tokio::time::Instant::now();
        let mut tried = HashSet::new();
        loop {
            let began = tokio::time::Instant::now();
            match self.round().await {
                Ok(0) => {}
                Ok(count) => {
                    debug!(jobs = count, "jobs scheduled");
                    self.wakers.wake(Wake::OUTBOX);
                }
                Err(err) => warn!(error = %err, "scheduling round failed"),
            }
            if looked.elapsed() >= HAND_BACK_EVERY {
                looked = tokio::time::Instant::now();
                match self.hand_back(&mut tried).await {
                    Ok(0) => {}
                    Ok(count) => {
                        info!(jobs = count, "queued jobs handed back for jobs due sooner");
                        // The freed places go to the earliest due now.
                        continue;
                    }
                    Err(err) => warn!(error = %err, "looking for rush jobs failed"),
                }
            }
            let took = began.elapsed();
            let rest = took * REST_PER_ROUND;
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = self.wakers.scheduler_woken() => {
                    tokio::select! {
                        _ = cancel.cancelled() => break,
                        _ = tokio::time::sleep_until(began + gap.max(took + rest)) => {}
                    }
                }
                _ = tokio::time::sleep(self.interval.max(rest)) => {}
            }
        }
        debug!("scheduler stopped");
    }

    /// One scheduling round; returns how many jobs were queued.
    pub async fn round(&self) -> Result<usize, StoreError> {
        let held = self.held();
        if held.is_empty() {
            return Ok(0);
        }
        // The queue rule places jobs only on machines that take jobs and
        // have room, so it reads only those (on a busy floor, few): a round
        // with nowhere to put a job ends before it reads the jobs. The floor
        // planner plans every machine.
        let (machines, loads): (Vec<MachineRecord>, HashMap<String, usize>) = match self.planner {
            Planner::Queue => {
                let mut loads = HashMap::new();
                let machines: Vec<MachineRecord> = self
                    .store
                    .machines_with_room(self.max_queue)
                    .await?
                    .into_iter()
                    .filter(|(machine, _)| {
                        held.contains_key(machine.factory.as_str())
                            && machine.state.accepts_jobs(machine.mode)
                    })
                    .map(|(machine, load)| {
                        loads.insert(machine.id.0.clone(), load);
                        machine
                    })
                    .collect();
                if machines.is_empty() {
                    return Ok(0);
                }
                (machines, loads)
            }
            Planner::Shop => {
                // The floor planner plans every machine, but only the heads
                // of the queues with room are ever written: a round on a
                // full floor ends here, as the queue rule's does.
                let room = self
                    .store
                    .machines_with_room(self.max_queue)
                    .await?
                    .into_iter()
                    .any(|(machine, _)| {
                        held.contains_key(machine.factory.as_str())
                            && machine.state.accepts_jobs(machine.mode)
                    });
                if !room {
                    return Ok(0);
                }
                let machines = self
                    .store
                    .list_machines(None)
                    .await?
                    .into_iter()
                    .filter(|machine| held.contains_key(machine.factory.as_str()))
                    .collect();
                (machines, HashMap::new())
            }
        };
        // Jobs of one factory, process and material are interchangeable to
        // the queue rule (the same machines can take them) and it places at
        // most one per free place, so it never needs more of each than the
        // free places in all: on a floor with a long backlog and a few free
        // places, a round decodes a few rows per kind, not 200.
        let per_kind = match self.planner {
            Planner::Queue => machines
                .iter()
                .map(|machine| {
                    let load = loads.get(machine.id.as_str()).copied().unwrap_or(0);
                    self.max_queue.saturating_sub(load)
                })
                .sum::<usize>()
                .min(MAX_JOBS_PER_KIND),
            Planner::Shop => MAX_JOBS_PER_KIND,
        };
        let mut jobs = self.store.schedulable_jobs(per_kind as i64).await?;
        jobs.retain(|job| held.contains_key(job.factory.as_str()));
        if jobs.is_empty() {
            return Ok(0);
        }
        let loads = match self.planner {
            Planner::Queue => loads,
            Planner::Shop => self.store.machine_loads().await?,
        };
        let now = self.clock.now_ms();
        let windows = self.store.maintenance_windows(None, now).await?;
        // Each machine's calendar: its shifts and maintenance windows.
        let mut calendars: HashMap<String, Calendar> = machines
            .iter()
            .map(|machine| {
                let shifts = self
                    .shifts
                    .get(machine.id.as_str())
                    .cloned()
                    .unwrap_or_default();
                (
                    machine.id.0.clone(),
                    Calendar {
                        shifts,
                        windows: Vec::new(),
                    },
                )
            })
            .collect();
        for window in &windows {
            if let Some(calendar) = calendars.get_mut(window.machine.as_str()) {
                calendar.windows.push(window.window());
            }
        }
        let slots: Vec<MachineSlot> = machines
            .into_iter()
            .map(|machine| MachineSlot {
                queue_len: loads.get(machine.id.as_str()).copied().unwrap_or(0),
                accepts_jobs: machine.state.accepts_jobs(machine.mode),
                opens_ms: calendars
                    .get(machine.id.as_str())
                    .and_then(|calendar| calendar.next_start(now, 1)),
                speed: self
                    .paces
                    .get(machine.id.as_str())
                    .map_or(1.0, |pace| pace.speed),
                id: machine.id,
                factory: machine.factory,
                capabilities: machine.capabilities,
                materials: machine.materials,
                loaded_material: machine.loaded_material,
            })
            .collect();
        let factory_of: HashMap<String, String> = slots
            .iter()
            .map(|slot| (slot.id.0.clone(), slot.factory.0.clone()))
            .collect();
        let assignments = match self.planner {
            Planner::Queue => queue_assignments(&jobs, &slots, self.max_queue),
            Planner::Shop => {
                let backlogs = self.store.machine_backlogs().await?;
                self.shop_assignments(jobs, slots, &backlogs, &calendars, now)
                    .await
            }
        };
        if assignments.is_empty() {
            return Ok(0);
        }
        // Each factory's assignments under its own lease.
        let mut by_factory: HashMap<&str, Vec<(JobToken, MachineId)>> = HashMap::new();
        for (token, machine) in assignments {
            if let Some(factory) = factory_of.get(machine.as_str()).map(String::as_str) {
                by_factory
                    .entry(factory)
                    .or_default()
                    .push((token, machine));
            }
        }
        let mut count = 0;
        for (factory, assignments) in by_factory {
            let Some(fence) = held.get(factory) else {
                continue;
            };
            match self
                .store
                .fenced(fence.clone())
                .schedule_jobs(&assignments, now)
                .await
            {
                Ok(scheduled) => {
                    count += scheduled;
                    // Their drivers read them now: an idle machine starts
                    // its job without waiting for its next poll.
                    let machines: std::collections::BTreeSet<&str> =
                        assignments.iter().map(|(_, m)| m.as_str()).collect();
                    for machine in machines {
                        self.wakers.ring_machine(machine);
                    }
                }
                Err(StoreError::Fenced(reason)) => {
                    debug!(factory.id = %factory, reason = %reason, "lease lost meanwhile; not scheduled");
                }
                Err(err) => return Err(err),
            }
        }
        metrics::counter!("fabflow_jobs_scheduled_total", "planner" => self.planner.as_str())
            .increment(count as u64);
        Ok(count)
    }

    /// The factories this daemon drives, with their fences.
    fn held(&self) -> HashMap<String, crate::store::Fence> {
        self.holdings
            .names()
            .into_iter()
            .filter_map(|name| {
                let factory = name.strip_prefix("factory/")?.to_string();
                Some((factory, self.holdings.fence(&name)?))
            })
            .collect()
    }

    /// A rush order on a full floor: jobs queued on machines (not started)
    /// go back to the planner when a ready job due more than
    /// [`HAND_BACK_GAIN_MS`] sooner could take their place
    /// (`plan::bumps`); the next round gives the freed places to the
    /// earliest due. Returns how many went back. Cheap when there is
    /// nothing to do: one read of the queued jobs and one of the ready
    /// jobs due before the latest of them.
    ///
    /// `tried` are the ready jobs that already had a place handed back: each
    /// ready job gets one, so a job the next round does not place there (a
    /// floor plan that puts it elsewhere) does not hand back a job a second.
    pub async fn hand_back(&self, tried: &mut HashSet<JobToken>) -> Result<usize, StoreError> {
        let held = self.held();
        if held.is_empty() {
            return Ok(0);
        }
        let queued: Vec<crate::plan::QueuedJob> = self
            .store
            .jobs_not_started()
            .await?
            .into_iter()
            .map(|(token, machine, due_ms)| crate::plan::QueuedJob {
                token,
                machine,
                due_ms,
            })
            .collect();
        let Some(latest) = queued.iter().map(|q| q.due_ms).max() else {
            return Ok(0);
        };
        let mut ready = self
            .store
            .ready_jobs_due_before(latest.saturating_sub(HAND_BACK_GAIN_MS), HAND_BACK_READ)
            .await?;
        ready.retain(|job| held.contains_key(job.factory.as_str()) && !tried.contains(&job.token));
        if ready.is_empty() {
            return Ok(0);
        }
        let machines: Vec<MachineSlot> = self
            .store
            .list_machines(None)
            .await?
            .into_iter()
            .filter(|machine| held.contains_key(machine.factory.as_str()))
            .map(|machine| MachineSlot {
                accepts_jobs: machine.state.accepts_jobs(machine.mode),
                queue_len: 0,
                opens_ms: None,
                speed: 1.0,
                id: machine.id,
                factory: machine.factory,
                capabilities: machine.capabilities,
                materials: machine.materials,
                loaded_material: machine.loaded_material,
            })
            .collect();
        let pairs = crate::plan::bumps(&candidates(&ready), &queued, &machines, HAND_BACK_GAIN_MS);
        // Forgetting the rest now and then keeps the set small; a job
        // still waiting then may hand back one more.
        if tried.len() > 10_000 {
            tried.clear();
        }
        tried.extend(pairs.iter().map(|(ready, _)| *ready));
        let tokens = pairs.into_iter().map(|(_, queued)| queued);
        let factory_of: HashMap<&MachineId, &str> = machines
            .iter()
            .map(|m| (&m.id, m.factory.as_str()))
            .collect();
        let mut by_factory: HashMap<&str, Vec<JobToken>> = HashMap::new();
        for token in tokens {
            let factory = queued
                .iter()
                .find(|q| q.token == token)
                .and_then(|q| factory_of.get(&q.machine));
            if let Some(factory) = factory {
                by_factory.entry(factory).or_default().push(token);
            }
        }
        let now = self.clock.now_ms();
        let mut count = 0;
        for (factory, tokens) in by_factory {
            let Some(fence) = held.get(factory) else {
                continue;
            };
            match self
                .store
                .fenced(fence.clone())
                .hand_back_jobs(&tokens, now)
                .await
            {
                Ok(back) => count += back,
                Err(StoreError::Fenced(reason)) => {
                    debug!(factory.id = %factory, reason = %reason, "lease lost meanwhile; nothing handed back");
                }
                Err(err) => return Err(err),
            }
        }
        if count > 0 {
            metrics::counter!("fabflow_jobs_handed_back_total").increment(count as u64);
            self.wakers.wake(Wake::OUTBOX);
        }
        Ok(count)
    }

    /// Plans the floor on a blocking thread within the round's budget, then
    /// takes the head of each machine's planned queue, up to its room. If
    /// the engine refuses the problem (a broken invariant of ours), the round
    /// falls back to the queue rule and says so.
    async fn shop_assignments(
        &self,
        jobs: Vec<SchedulableJob>,
        slots: Vec<MachineSlot>,
        backlogs: &HashMap<String, f64>,
        calendars: &HashMap<String, Calendar>,
        now: Millis,
    ) -> Vec<(JobToken, MachineId)> {
        let floor_machines = floor_machines(
            &slots,
            backlogs,
            calendars,
            &self.paces,
            &self.factories,
            now,
        );
        let floor_jobs = floor_jobs(&jobs, now);
        let room: HashMap<MachineId, usize> = slots
            .iter()
            .filter(|slot| slot.accepts_jobs)
            .map(|slot| {
                (
                    slot.id.clone(),
                    self.max_queue.saturating_sub(slot.queue_len),
                )
            })
            .collect();
        let budget = self.plan_budget;
        let previous = self.last_plan.lock().ok().and_then(|last| last.clone());
        let may_repair = self
            .last_full_plan
            .lock()
            .ok()
            .and_then(|last| *last)
            .is_some_and(|at| at.elapsed() < FULL_PLAN_EVERY);
        let planned = tokio::task::spawn_blocking(move || {
            let started = Instant::now();
            let steps: usize = floor_jobs.iter().map(|job| job.steps.len()).sum();
            let max_loose = (steps / REPAIR_LOOSE_SHARE).max(REPAIR_MIN_LOOSE);
            let repaired = previous
                .as_ref()
                .filter(|_| may_repair)
                .and_then(|previous| {
                    repair_floor(previous, &floor_jobs, &floor_machines, max_loose)
                });
            let full = repaired.is_none();
            let plan = match (repaired, &previous) {
                (Some(plan), _) => {
                    metrics::counter!("fabflow_floor_plan_repairs_total").increment(1);
                    Ok(plan)
                }
                (None, Some(previous)) => {
                    let mut progress =
                        || started.elapsed().as_secs_f64() / budget.as_secs_f64().max(1e-3);
                    replan_floor(
                        previous,
                        &floor_jobs,
                        &floor_machines,
                        1,
                        SHOP_MAX_ITERATIONS,
                        &mut progress,
                    )
                }
                (None, None) => {
                    let mut progress =
                        || started.elapsed().as_secs_f64() / budget.as_secs_f64().max(1e-3);
                    plan_floor(
                        &floor_jobs,
                        &floor_machines,
                        1,
                        SHOP_MAX_ITERATIONS,
                        &mut progress,
                    )
                }
            };
            metrics::histogram!("fabflow_floor_plan_seconds").record(started.elapsed());
            plan.map(|plan| {
                let heads = plan.queue_heads(&floor_jobs, &|id| room.get(id).copied().unwrap_or(0));
                (heads, plan, full)
            })
        })
        .await;
        match planned {
            Ok(Ok((heads, plan, full))) => {
                if let Ok(mut last) = self.last_plan.lock() {
                    *last = Some(std::sync::Arc::new(plan));
                }
                if full && let Ok(mut last) = self.last_full_plan.lock() {
                    *last = Some(Instant::now());
                }
                heads
            }
            Ok(Err(err)) => {
                metrics::counter!("fabflow_floor_plan_fallbacks_total").increment(1);
                warn!(error = %err, "floor planner refused the round; using the queue rule");
                queue_assignments(&jobs, &slots, self.max_queue)
            }
            Err(err) => {
                metrics::counter!("fabflow_floor_plan_fallbacks_total").increment(1);
                warn!(error = %err, "floor planner failed; using the queue rule");
                queue_assignments(&jobs, &slots, self.max_queue)
            }
        }
    }
}

fn queue_assignments(
    jobs: &[SchedulableJob],
    slots: &[MachineSlot],
    max_queue: usize,
) -> Vec<(JobToken, MachineId)> {
    assign_jobs(&candidates(jobs), slots, max_queue)
}

/// Ready jobs as the queue rule sees them.
fn candidates(jobs: &[SchedulableJob]) -> Vec<JobCandidate> {
    jobs.iter()
        .map(|job| JobCandidate {
            token: job.token,
            factory: job.factory.clone(),
            process: job.process.clone(),
            material: job.material.clone(),
            due_ms: job.due_ms,
        })
        .collect()
}

/// Machines as the floor planner sees them: free once the work already on
/// them (units not yet reported good, at their pace) is done, and not
/// before their calendar's next opening then (a shift, no maintenance); a
/// machine with no opening within a year takes no jobs. Their shifts and
/// maintenance for the week ahead go with them, so that later steps in a
/// plan start inside a shift too; their speed and setup time too.
fn floor_machines(
    slots: &[MachineSlot],
    backlogs: &HashMap<String, f64>,
    calendars: &HashMap<String, Calendar>,
    paces: &HashMap<String, Pace>,
    factories: &HashMap<String, Location>,
    now: Millis,
) -> Vec<FloorMachine> {
    slots
        .iter()
        .map(|slot| {
            let pace = paces.get(slot.id.as_str()).copied().unwrap_or_default();
            let backlog_s = backlogs.get(slot.id.as_str()).copied().unwrap_or(0.0);
            let free = now.saturating_add(seconds_to_ms(backlog_s / pace.speed));
            let opens = match calendars.get(slot.id.as_str()) {
                Some(calendar) => calendar.next_start(free, 1),
                None => Some(free),
            };
            FloorMachine {
                id: slot.id.clone(),
                factory: slot.factory.clone(),
                // An unknown factory (none in a validated config) only loses
                // the distance term: every machine of it is equally far.
                location: factories
                    .get(slot.factory.as_str())
                    .copied()
                    .unwrap_or(Location::new(0.0, 0.0)),
                capabilities: slot.capabilities.clone(),
                // A machine with a declared material starts only jobs of it
                // (the dispatcher's rule), so the plan offers it no other.
                materials: match &slot.loaded_material {
                    Some(loaded) => slot
                        .materials
                        .iter()
                        .filter(|m| *m == loaded)
                        .cloned()
                        .collect(),
                    None => slot.materials.clone(),
                },
                accepts_jobs: slot.accepts_jobs && opens.is_some(),
                speed: pace.speed,
                setup_ms: pace.setup_ms,
                loaded_material: slot.loaded_material.clone(),
                available_from_ms: opens.unwrap_or(free),
                openings: calendars
                    .get(slot.id.as_str())
                    .map_or_else(Openings::default, |calendar| {
                        openings(calendar, free, free.saturating_add(CALENDAR_AHEAD_MS))
                    }),
            }
        })
        .collect()
}

/// How far ahead the floor planner sees shifts and maintenance; later
/// starts are planned as if the machine were open (the dispatcher still
/// holds every start to the calendar).
const CALENDAR_AHEAD_MS: Millis = 7 * 24 * 3600 * 1000;

/// A machine's calendar from `from` to `until` as the planner takes it:
/// its shift occurrences and its maintenance windows.
fn openings(calendar: &Calendar, from: Millis, until: Millis) -> Openings {
    Openings {
        shifts: calendar.shift_occurrences(from, until),
        blocked: calendar
            .windows
            .iter()
            .filter(|w| w.end_ms > from && w.start_ms < until)
            .map(|w| (w.start_ms, w.end_ms))
            .collect(),
        until,
    }
}

/// Ready jobs as floor jobs: one step each (a line's later steps become
/// ready when this one is done), for the order's factory and customer.
fn floor_jobs(jobs: &[SchedulableJob], now: Millis) -> Vec<FloorJob> {
    jobs.iter()
        .map(|job| FloorJob {
            token: job.token,
            order: job.order_id.to_string(),
            factory: Some(job.factory.clone()),
            steps: vec![FloorStep {
                process: job.process.clone(),
                material: job.material.clone(),
                base_duration_ms: seconds_to_ms(f64::from(job.quantity) * job.seconds_per_unit)
                    .max(1),
            }],
            running: None,
            release_ms: now,
            due_ms: job.due_ms,
            customer: Some(job.customer),
        })
        .collect()
}

/// Seconds (possibly not finite, from the database) as whole milliseconds.
fn seconds_to_ms(seconds: f64) -> Millis {
    if seconds.is_finite() && seconds > 0.0 {
        // `as` saturates at the ends of the range.
        (seconds * 1000.0).ceil() as Millis
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::calendar::{Shift, Window};
    use crate::domain::{FactoryId, MachineId};

    fn slot(id: &str) -> MachineSlot {
        MachineSlot {
            id: MachineId::new(id),
            factory: FactoryId::new("north"),
            capabilities: vec!["print".into()],
            materials: vec!["cotton".into(), "tote".into()],
            accepts_jobs: true,
            queue_len: 0,
            loaded_material: None,
            opens_ms: Some(0),
            speed: 1.0,
        }
    }

    #[test]
    fn the_floor_planner_sees_calendars_and_loaded_materials() {
        // 1970-01-01T00:00:00Z; "a" works from 01:00, "b" has maintenance
        // until 00:30, "c" is closed for good, "d" has totes loaded.
        let now = 0;
        let calendars = HashMap::from([
            (
                "a".to_string(),
                Calendar {
                    shifts: vec![Shift::new("0 0 1 * * *", 3_600_000).expect("valid")],
                    windows: Vec::new(),
                },
            ),
            (
                "b".to_string(),
                Calendar {
                    shifts: Vec::new(),
                    windows: vec![Window {
                        start_ms: 0,
                        end_ms: 1_800_000,
                        reason: "belts".into(),
                    }],
                },
            ),
            (
                "c".to_string(),
                Calendar {
                    shifts: Vec::new(),
                    windows: vec![Window {
                        start_ms: 0,
                        end_ms: Millis::MAX,
                        reason: "retired".into(),
                    }],
                },
            ),
        ]);
        let mut loaded = slot("d");
        loaded.loaded_material = Some("tote".into());
        // "e" works twice as fast and takes 10 minutes to change material.
        let paces = HashMap::from([(
            "e".to_string(),
            Pace {
                speed: 2.0,
                setup_ms: 600_000,
            },
        )]);
        let machines = floor_machines(
            &[slot("a"), slot("b"), slot("c"), loaded, slot("e")],
            &HashMap::from([("b".to_string(), 60.0), ("e".to_string(), 100.0)]),
            &calendars,
            &paces,
            &HashMap::new(),
            now,
        );
        let by_id = |id: &str| {
            machines
                .iter()
                .find(|m| m.id.as_str() == id)
                .expect("machine")
        };
        assert_eq!(by_id("a").available_from_ms, 3_600_000);
        assert_eq!(by_id("b").available_from_ms, 1_800_000);
        assert!(!by_id("c").accepts_jobs);
        assert_eq!(by_id("d").materials, ["tote"]);
        assert_eq!(by_id("d").loaded_material.as_deref(), Some("tote"));
        assert_eq!(by_id("d").available_from_ms, now);
        assert_eq!((by_id("d").speed, by_id("d").setup_ms), (1.0, 0));
        // 100 s of units left at twice the pace: free in 50 s.
        assert_eq!(by_id("e").available_from_ms, 50_000);
        assert_eq!((by_id("e").speed, by_id("e").setup_ms), (2.0, 600_000));
        // The week ahead goes with them: "a"'s seven daily shifts, "b"'s
        // window; "d" has no calendar.
        let hour = 3_600_000;
        let week = 7 * 24 * hour;
        let a = &by_id("a").openings;
        assert_eq!(a.until, week);
        assert_eq!(
            a.shifts.as_deref(),
            Some(
                &(0..7)
                    .map(|d| (d * 24 * hour + hour, d * 24 * hour + 2 * hour))
                    .collect::<Vec<_>>()[..]
            )
        );
        let b = &by_id("b").openings;
        assert_eq!(
            (b.shifts.as_ref(), &b.blocked[..]),
            (None, &[(0, 1_800_000)][..])
        );
        assert_eq!(by_id("d").openings, Openings::default());
    }
}
