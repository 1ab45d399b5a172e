//! The promise watch: every second (real time; longer with a large backlog,
//! see `ROUND_PACE`, and up to `INTAKE_WAIT_MOST` longer while a burst of
//! orders arrives, see `IntakeLoad`), the orders in the making are
//! estimated against the factories' queued work (`plan::promise`); the
//! estimates are stored, and an order newly seen to miss its deadline is
//! flagged at risk with its `order.at_risk` event, long before the deadline.
//! Waves flag ready orders no courier reaches in time (`runtime::waves`).
//! Whatever the estimates say, an order not delivered by the last call
//! (`domain::promise::last_call_ms` before its deadline) is flagged then
//! (`deadline_close`): estimates can be wrong, the brand must still hear of
//! a late order before its deadline.

use crate::domain::calendar::{Calendar, Shift};
use crate::domain::{
    AtRiskReason, FactoryId, Location, MachineMode, MachineState, Millis, OrderId,
};
use crate::plan::Travel;
use crate::plan::promise::{Backlog, MachineHours, OpenHours, QueuedWork, StepWork};
use crate::runtime::clock::Clock;
use crate::runtime::wake::{Wake, Wakers};
use crate::store::{PromiseUpdate, Store, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

/// Estimates that moved less than this are not written again.
const ETA_SLACK_MS: Millis = 60_000;

/// A round reads every order in the making and every open job: with a
/// backlog of tens of thousands it takes hundreds of milliseconds, and
/// intake shares the database with it. The watch rests this many times as
/// long as its last round took (its interval at least), so it takes at most
/// a fifth of one core however large the backlog; the last call allows for
/// the longer gap.
const ROUND_PACE: u32 = 4;

/// The rest before the next round: `interval`, or `ROUND_PACE` times the
/// last round if longer.
fn pause(interval: Duration, spent: Duration) -> Duration {
    interval.max(spent.saturating_mul(ROUND_PACE))
}

/// The latest backlog the watch computed, shared with intake so that an
/// accepted order's reply carries its estimate.
#[derive(Clone, Default)]
pub struct PromiseBoard {
    latest: Arc<RwLock<Option<Arc<Backlog>>>>,
}

impl PromiseBoard {
    fn publish(&self, backlog: Backlog) {
        if let Ok(mut latest) = self.latest.write() {
            *latest = Some(Arc::new(backlog));
        }
    }

    /// The backlog of the watch's last round, if it ran.
    pub fn latest(&self) -> Option<Arc<Backlog>> {
        self.latest.read().ok().and_then(|latest| latest.clone())
    }
}

/// How long from ready to delivered, the same way for intake and the watch.
#[derive(Debug, Clone)]
pub struct DeliveryLead {
    pub travel: Travel,
    /// Road times from `[routing] matrix_file`, as the waves use them.
    pub roads: Option<std::sync::Arc<crate::plan::roads::Roads>>,
    /// Longest wait for a planning wave that matters to the promise: the
    /// widest gap of the zones' crons, or the rush margin if shorter (an
    /// order that cannot wait for its cron wave gets one at once).
    pub wave_gap_ms: Millis,
    pub factories: HashMap<String, Location>,
}

impl DeliveryLead {
    /// The wait for a wave, the ride, and the two stops.
    pub fn ms(&self, factory: &str, customer: Location) -> Millis {
        use crate::plan::route::Legs;
        let ride = self.factories.get(factory).map_or(0, |at| {
            crate::plan::route::Rides {
                roads: self.roads.as_deref(),
                travel: self.travel,
            }
            .leg_ms(*at, customer)
        });
        self.wave_gap_ms
            .saturating_add(ride)
            .saturating_add(self.travel.handover_ms.max(0))
            .saturating_add(self.travel.service_ms.max(0))
    }
}

pub struct PromiseWatch {
    pub board: PromiseBoard,
    pub store: Store,
    pub clock: Clock,
    pub interval: Duration,
    pub lead: DeliveryLead,
    pub wakers: Wakers,
    /// Each machine's configured shifts (none: always works), for the
    /// machines' open hours.
    pub shifts: HashMap<String, Vec<Shift>>,
    /// Each machine's configured speed (none: 1.0).
    pub speeds: HashMap<String, f64>,
    /// The `shop` planner's last plan: an order is ready no earlier than
    /// its planned jobs' planned ends (`Estimate::no_earlier_than`).
    pub plan: crate::runtime::scheduler::SharedPlan,
    /// Intake's load (none: never wait for it): a round waits while
    /// requests arrive in group commits (`INTAKE_WINDOW`, `INTAKE_WAIT_MOST`).
    pub intake: Option<crate::runtime::intake::IntakeLoad>,
}

/// A round waits while a group commit of intake ended within this window:
/// its reads and writes would slow a burst of orders (docs/benchmarks.md),
/// and its estimates would be outdated by the burst's next second anyway.
const INTAKE_WINDOW: Duration = Duration::from_millis(200);
/// Longest a round waits for intake. The estimates in replies and the
/// at-risk flags lag a long burst by this much more; the last call does not
/// wait.
const INTAKE_WAIT_MOST: Duration = Duration::from_secs(10);

/// How far ahead the estimates see machines' shifts and maintenance;
/// later, every machine counts as open.
const OPEN_HOURS_AHEAD_MS: Millis = 7 * 24 * 3_600_000;

/// Whether a machine counts as capacity now: active, not faulted or stuck.
/// An offline machine counts (a link that drops for a moment is not a lost
/// machine; one that stays away shows in the backlog growing).
fn counts_now(machine: &crate::store::MachineRecord) -> bool {
    machine.mode == MachineMode::Active
        && !matches!(machine.state, MachineState::Fault | MachineState::Stuck)
}

/// The open hours of each (factory, process)'s machines that count, from
/// `now` for `OPEN_HOURS_AHEAD_MS`: their shifts less their maintenance
/// windows. Queues whose machines have neither are left out (always open).
pub fn open_hours(
    machines: &[crate::store::MachineRecord],
    shifts: &HashMap<String, Vec<Shift>>,
    windows: &[crate::store::WindowRecord],
    now: Millis,
) -> HashMap<(FactoryId, String), OpenHours> {
    let until = now.saturating_add(OPEN_HOURS_AHEAD_MS);
    let mut per_queue: HashMap<(FactoryId, String), Vec<MachineHours>> = HashMap::new();
    for machine in machines.iter().filter(|m| counts_now(m)) {
        let calendar = Calendar {
            shifts: shifts.get(machine.id.as_str()).cloned().unwrap_or_default(),
            windows: windows
                .iter()
                .filter(|w| w.machine == machine.id.as_str())
                .map(|w| w.window())
                .collect(),
        };
        let open = if calendar.shifts.is_empty() && calendar.windows.is_empty() {
            None
        } else {
            let shifts = calendar
                .shift_occurrences(now, until)
                .unwrap_or_else(|| vec![(now, until)]);
            Some(less(&shifts, &calendar.windows))
        };
        for process in &machine.capabilities {
            per_queue
                .entry((machine.factory.clone(), process.clone()))
                .or_default()
                .push(open.clone());
        }
    }
    per_queue
        .into_iter()
        .filter(|(_, machines)| machines.iter().any(Option::is_some))
        .map(|(key, machines)| (key, OpenHours::of_machines(&machines, now, until)))
        .collect()
}

/// `intervals` less the maintenance `windows` (both `[start, end)`).
fn less(
    intervals: &[(Millis, Millis)],
    windows: &[crate::domain::calendar::Window],
) -> Vec<(Millis, Millis)> {
    let mut out = Vec::new();
    for &(start, end) in intervals {
        let mut pieces = vec![(start, end)];
        for window in windows {
            pieces = pieces
                .into_iter()
                .flat_map(|(a, b)| {
                    if window.end_ms <= a || b <= window.start_ms {
                        vec![(a, b)]
                    } else {
                        [(a, window.start_ms.min(b)), (window.end_ms.max(a), b)]
                            .into_iter()
                            .filter(|(x, y)| x < y)
                            .collect()
                    }
                })
                .collect();
        }
        out.extend(pieces);
    }
    out
}

/// The mean configured speed of each (factory, process)'s machines that
/// count now (`speeds` by machine id; a machine not named works at 1.0).
pub fn mean_speeds(
    machines: &[crate::store::MachineRecord],
    speeds: &HashMap<String, f64>,
) -> HashMap<(FactoryId, String), f64> {
    let mut sums: HashMap<(FactoryId, String), (f64, usize)> = HashMap::new();
    for machine in machines.iter().filter(|m| counts_now(m)) {
        let speed = speeds.get(machine.id.as_str()).copied().unwrap_or(1.0);
        for process in &machine.capabilities {
            let entry = sums
                .entry((machine.factory.clone(), process.clone()))
                .or_insert((0.0, 0));
            entry.0 += speed;
            entry.1 += 1;
        }
    }
    sums.into_iter()
        .map(|(key, (sum, count))| (key, sum / count as f64))
        .collect()
}

/// Machines that count as capacity, per factory and process (`counts_now`).
pub fn capacity(machines: &[crate::store::MachineRecord]) -> HashMap<(FactoryId, String), usize> {
    let mut counts: HashMap<(FactoryId, String), usize> = HashMap::new();
    for machine in machines {
        let counts_now = counts_now(machine);
        for process in &machine.capabilities {
            let entry = counts
                .entry((machine.factory.clone(), process.clone()))
                .or_insert(0);
            if counts_now {
                *entry += 1;
            }
        }
    }
    counts
}

impl PromiseWatch {
    pub async fn run(self, cancel: CancellationToken) {
        // Domain time between the last two looks: a busy machine stretches
        // it past `interval`, and the last call must allow for that.
        let mut previous: Option<Millis> = None;
        let mut gap_ms: Millis = 0;
        let mut spent = Duration::ZERO;
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(pause(self.interval, spent)) => {}
            }
            let called = std::time::Instant::now();
            let now = self.clock.now_ms();
            if let Some(before) = previous {
                gap_ms = now - before;
            }
            previous = Some(now);
            match self.last_call(gap_ms).await {
                Ok(0) => {}
                Ok(flagged) => {
                    warn!(
                        orders = flagged,
                        "orders not delivered at the last call before their deadline"
                    );
                    metrics::counter!("fabflow_orders_at_risk_total").increment(flagged as u64);
                    self.wakers.wake(Wake::OUTBOX);
                }
                Err(err) => warn!(error = %err, "last call failed"),
            }
            let calling = called.elapsed();
            if let Some(load) = &self.intake {
                let waited = tokio::select! {
                    _ = cancel.cancelled() => return,
                    waited = load.quiet(INTAKE_WINDOW, INTAKE_WAIT_MOST) => waited,
                };
                if !waited.is_zero() {
                    metrics::histogram!("fabflow_promise_intake_wait_seconds").record(waited);
                }
            }
            let started = std::time::Instant::now();
            match self.round().await {
                Ok(0) => {}
                Ok(flagged) => {
                    warn!(orders = flagged, "orders at risk of missing their promise");
                    metrics::counter!("fabflow_orders_at_risk_total").increment(flagged as u64);
                    self.wakers.wake(Wake::OUTBOX);
                }
                Err(err) => warn!(error = %err, "promise estimate failed"),
            }
            spent = calling + started.elapsed();
            metrics::histogram!("fabflow_promise_round_seconds").record(spent);
        }
    }

    /// Flags every order not delivered by the last call before its
    /// deadline; `gap_ms` is the domain time since the watch looked last.
    /// Runs before the estimates, which take long with many orders.
    pub async fn last_call(&self, gap_ms: Millis) -> Result<usize, StoreError> {
        let now = self.clock.now_ms();
        // The watch's own period in domain time, or the last gap if longer.
        let every_ms =
            ((self.interval.as_secs_f64() * 1000.0 * self.clock.scale()) as Millis).max(gap_ms);
        self.store
            .flag_undelivered_by(
                now + crate::domain::promise::last_call_ms(every_ms),
                AtRiskReason::DeadlineClose,
                now,
            )
            .await
    }

    /// One estimate of every order in the making; returns how many were
    /// newly flagged at risk.
    pub async fn round(&self) -> Result<usize, StoreError> {
        let orders = self.store.orders_in_making().await?;
        let now = self.clock.now_ms();
        let machines = self.store.list_machines(None).await?;
        let jobs = self.store.open_jobs().await?;
        let mut steps: HashMap<OrderId, Vec<StepWork>> = HashMap::new();
        for job in &jobs {
            steps
                .entry(job.order_id.clone())
                .or_default()
                .push(StepWork {
                    line: job.line,
                    step: job.step,
                    process: job.process.clone(),
                    seconds: job.seconds,
                    token: Some(job.token),
                });
        }
        let windows = self.store.maintenance_windows(None, now).await?;
        let backlog = Backlog::new(
            jobs.into_iter().map(|job| QueuedWork {
                token: job.token,
                factory: job.factory,
                process: job.process,
                seconds: job.seconds,
                due_ms: job.due_ms,
            }),
            &capacity(&machines),
        )
        .with_open_hours(open_hours(&machines, &self.shifts, &windows, now))
        .with_speeds(mean_speeds(&machines, &self.speeds));
        // Each planned job's planned end (its last step), from the plan.
        let plan = self.plan.lock().ok().and_then(|plan| plan.clone());
        let planned_end: HashMap<i64, Millis> = plan
            .iter()
            .flat_map(|plan| plan.queues.values().flatten())
            .filter(|step| step.steps_after == 0)
            .map(|step| (i64::from(step.token.0), step.end_ms))
            .collect();
        let mut updates = Vec::new();
        for order in orders {
            let lead = self.lead.ms(order.factory.as_str(), order.location);
            let work = steps.get(&order.id).map_or(&[][..], Vec::as_slice);
            let planned_ready = work
                .iter()
                .filter_map(|step| planned_end.get(&step.token?))
                .max()
                .copied();
            let estimate = backlog
                .estimate(&order.factory, work, order.deadline_ms, now, lead)
                .no_earlier_than(planned_ready, order.deadline_ms, now, lead);
            let moved = |old: Option<Millis>, new: Option<Millis>| match (old, new) {
                (Some(old), Some(new)) => (old - new).abs() >= ETA_SLACK_MS,
                (old, new) => old != new,
            };
            let newly_at_risk = estimate.at_risk.is_some() && order.at_risk.is_none();
            if newly_at_risk
                || moved(order.eta_ready_ms, estimate.ready_ms)
                || moved(order.eta_delivery_ms, estimate.delivery_ms)
            {
                updates.push(PromiseUpdate {
                    order_id: order.id,
                    brand: order.brand,
                    deadline_ms: order.deadline_ms,
                    eta_ready_ms: estimate.ready_ms,
                    eta_delivery_ms: estimate.delivery_ms,
                    at_risk: estimate.at_risk,
                });
            }
        }
        self.board.publish(backlog);
        let mut flagged = 0;
        for chunk in updates.chunks(500) {
            flagged += self.store.record_promises(chunk, now).await?;
        }

        debug!(updated = updates.len(), flagged, "promise estimates");
        Ok(flagged)
    }
}

/// The widest gap between two runs of a cron schedule over the next week
/// (domain time), for the wait for a planning wave; capped at a day.
pub fn widest_gap_ms(
    schedule: &crate::domain::calendar::ZonedSchedule,
    from: chrono::DateTime<chrono::Utc>,
) -> Millis {
    let day: Millis = 24 * 3_600_000;
    let week_end = from + chrono::Duration::days(7);
    let mut widest = 0;
    let mut last = from;
    for next in schedule.after(from).take(10_000) {
        widest = widest.max((next - last).num_milliseconds());
        last = next;
        if next > week_end {
            break;
        }
    }
    if last == from { day } else { widest.min(day) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store with one machine (m1 at north, printing and pressing) and
    /// one order, o1, due in 48 hours; a watch over it (every second, no
    /// plan, not waiting for intake). Keep `TempDir` alive.
    async fn one_order() -> (
        tempfile::TempDir,
        Store,
        PromiseWatch,
        crate::store::NewOrder,
    ) {
        use crate::store::MachineSpec;
        use crate::store::tests::new_order;
        let dir = tempfile::tempdir().expect("temp dir");
        let url = format!("sqlite://{}", dir.path().join("promise.db").display());
        let store = Store::connect(&url).await.expect("store");
        let clock = Clock::new(1.0);
        let now = clock.now_ms();
        let spec = MachineSpec {
            id: "m1".into(),
            factory: "north".into(),
            model: "acme-dtg-200".into(),
            address: "127.0.0.1:5020".into(),
            capabilities: vec!["dtg_print".into(), "heat_press".into()],
            materials: vec!["cotton_tee".into()],
        };
        store
            .register_machines(&[spec], now)
            .await
            .expect("machines");
        let mut order = new_order("o1", "acme", None);
        order.accepted_ms = now;
        order.deadline_ms = now + 48 * 3_600_000;
        store
            .accept_orders(&[order.clone()])
            .await
            .expect("accepted");
        let watch = PromiseWatch {
            board: PromiseBoard::default(),
            store: store.clone(),
            clock,
            interval: Duration::from_secs(1),
            lead: DeliveryLead {
                travel: crate::plan::Travel::default(),
                roads: None,
                wave_gap_ms: 0,
                factories: [("north".to_string(), Location::new(52.5, 13.4))].into(),
            },
            wakers: Wakers::default(),
            shifts: HashMap::new(),
            speeds: HashMap::new(),
            plan: Arc::default(),
            intake: None,
        };
        (dir, store, watch, order)
    }

    /// The watch holds an order's estimate to the production plan: with its
    /// job planned to end past the deadline, the order is ready then and at
    /// risk, where the fluid estimate alone had it early and in time.
    #[tokio::test]
    async fn an_order_is_ready_no_earlier_than_its_planned_job_ends() {
        use crate::domain::{JobToken, MachineId};
        use crate::plan::shop::{FloorPlan, PlannedStep};
        let (_dir, store, watch, order) = one_order().await;
        let first = store
            .open_jobs()
            .await
            .expect("jobs")
            .into_iter()
            .filter(|job| job.order_id.as_str() == "o1")
            .map(|job| job.token)
            .min()
            .expect("a job");
        assert_eq!(watch.round().await.expect("round"), 0);
        let fluid = store
            .get_order("o1", None)
            .await
            .expect("read")
            .expect("o1");
        let ready = fluid.promise.eta_ready_ms.expect("estimated");
        assert!(ready < order.deadline_ms, "{fluid:?}");
        assert_eq!(fluid.promise.at_risk, None);

        // The plan has its first step end past the deadline (a long setup,
        // say): the order is ready no earlier, and flagged.
        let planned_end = order.deadline_ms + 3_600_000;
        let floor = FloorPlan {
            queues: [(
                MachineId::new("m1"),
                vec![PlannedStep {
                    token: JobToken(u32::try_from(first).expect("token")),
                    step: 0,
                    steps_after: 0,
                    start_ms: planned_end - 60_000,
                    end_ms: planned_end,
                    distance_m: 0,
                }],
            )]
            .into(),
            late_orders: 1,
            total_lateness_ms: 0,
            setup_ms: 0,
            distance_m: 0,
            unplaceable: Vec::new(),
        };
        *watch.plan.lock().expect("plan") = Some(Arc::new(floor));
        assert_eq!(watch.round().await.expect("round"), 1);
        let planned = store
            .get_order("o1", None)
            .await
            .expect("read")
            .expect("o1");
        assert_eq!(
            planned.promise.eta_ready_ms,
            Some(planned_end),
            "{planned:?}"
        );
        assert_eq!(
            planned.promise.at_risk.as_deref(),
            Some("production_backlog")
        );
        store.close().await;
    }

    /// While intake commits requests in groups, a round waits; once they
    /// stop, it runs and stores the estimate.
    #[tokio::test]
    async fn a_round_waits_while_intake_commits_groups() {
        use crate::runtime::intake::IntakeLoad;
        let (_dir, store, mut watch, _) = one_order().await;
        let load = IntakeLoad::default();
        watch.interval = Duration::from_millis(50);
        watch.intake = Some(load.clone());
        let estimated = || async {
            store
                .get_order("o1", None)
                .await
                .expect("read")
                .expect("o1")
                .promise
                .eta_ready_ms
        };
        let noting = load.note_every(Duration::from_millis(10));
        let cancel = CancellationToken::new();
        let running = tokio::spawn(watch.run(cancel.clone()));
        // Thirty of the watch's intervals, all of them within a burst.
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        assert_eq!(estimated().await, None, "no round during the burst");
        noting.abort();
        let mut ready = None;
        for _ in 0..150 {
            ready = estimated().await;
            if ready.is_some() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ready.is_some(), "a round after the burst");
        cancel.cancel();
        running.await.expect("watch");
        store.close().await;
    }

    #[test]
    fn a_long_round_stretches_the_rest_after_it() {
        let second = Duration::from_secs(1);
        assert_eq!(pause(second, Duration::ZERO), second);
        assert_eq!(pause(second, Duration::from_millis(200)), second);
        assert_eq!(
            pause(second, Duration::from_millis(300)),
            Duration::from_millis(1200)
        );
        assert_eq!(pause(second, Duration::MAX), Duration::MAX);
    }

    #[test]
    fn machines_work_their_shifts_less_maintenance_and_faulted_ones_not_at_all() {
        use crate::domain::{MachineId, MachineState};
        use crate::plan::promise::StepWork;
        const HOUR: Millis = 3_600_000;
        let machine = |id: &str, factory: &str, state: MachineState| crate::store::MachineRecord {
            id: MachineId::new(id),
            factory: FactoryId::new(factory),
            model: "m".into(),
            address: String::new(),
            capabilities: vec!["print".into()],
            materials: Vec::new(),
            state,
            mode: MachineMode::Active,
            job_token: None,
            fault_code: None,
            loaded_material: None,
            updated_ms: 0,
        };
        // 1970-01-01 00:00 UTC. "a" works 08-16 h with maintenance 09-10 h;
        // "b" has no calendar but is faulted; "c" (another factory) has none.
        let machines = [
            machine("a", "f", MachineState::Idle),
            machine("b", "f", MachineState::Fault),
            machine("c", "g", MachineState::Idle),
        ];
        let shifts = HashMap::from([(
            "a".to_string(),
            vec![Shift::new("0 0 8 * * *", 8 * HOUR).expect("shift")],
        )]);
        let windows = [crate::store::WindowRecord {
            id: "w".into(),
            machine: "a".into(),
            start_ms: 9 * HOUR,
            end_ms: 10 * HOUR,
            reason: "belts".into(),
            created_by: "op".into(),
            created_ms: 0,
        }];
        // Mean speeds of the machines that count: "b" is faulted.
        let speeds = HashMap::from([("a".to_string(), 1.5), ("b".to_string(), 3.0)]);
        assert_eq!(
            mean_speeds(&machines, &speeds),
            HashMap::from([
                ((FactoryId::new("f"), "print".to_string()), 1.5),
                ((FactoryId::new("g"), "print".to_string()), 1.0),
            ])
        );
        let hours = open_hours(&machines, &shifts, &windows, 0);
        assert!(hours.contains_key(&(FactoryId::new("f"), "print".to_string())));
        assert!(!hours.contains_key(&(FactoryId::new("g"), "print".to_string())));
        let backlog = Backlog::new([], &capacity(&machines)).with_open_hours(hours);
        let two_hours = [StepWork {
            line: 0,
            step: 0,
            process: "print".into(),
            seconds: 7200.0,
            token: None,
        }];
        // 08-09 h, then 10-11 h.
        let estimate = backlog.estimate(&FactoryId::new("f"), &two_hours, 48 * HOUR, 0, 0);
        assert_eq!(estimate.ready_ms, Some(11 * HOUR));
        let estimate = backlog.estimate(&FactoryId::new("g"), &two_hours, 48 * HOUR, 0, 0);
        assert_eq!(estimate.ready_ms, Some(2 * HOUR));
    }

    #[test]
    fn wave_gap_is_the_widest_cron_interval() {
        let from = chrono::DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .expect("time")
            .with_timezone(&chrono::Utc);
        let cron = |text| crate::domain::calendar::ZonedSchedule::new(text, None).expect("cron");
        let every_10_min = cron("0 */10 * * * *");
        assert_eq!(widest_gap_ms(&every_10_min, from), 600_000);
        // Twice a day at 8 and 20 h: 12 h gaps.
        let twice = cron("0 0 8,20 * * *");
        assert_eq!(widest_gap_ms(&twice, from), 12 * 3_600_000);
    }
}
