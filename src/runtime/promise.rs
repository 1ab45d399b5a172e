//! The promise watch: every second (real time; longer with a large backlog,
//! see `ROUND_PACE`), the orders in the making are
//! estimated against the factories' queued work (`plan::promise`); the
//! estimates are stored, and an order newly seen to miss its deadline is
//! flagged at risk with its `order.at_risk` event, long before the deadline.
//! Waves flag ready orders no courier reaches in time (`runtime::waves`).
//! Whatever the estimates say, an order not delivered by the last call
//! (`domain::promise::last_call_ms` before its deadline) is flagged then
//! (`deadline_close`): estimates can be wrong, the brand must still hear of
//! a late order before its deadline.

use crate::domain::{
    AtRiskReason, FactoryId, Location, MachineMode, MachineState, Millis, OrderId,
};
use crate::plan::Travel;
use crate::plan::promise::{Backlog, QueuedWork, StepWork};
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
            .saturating_add(2 * self.travel.service_ms)
    }
}

pub struct PromiseWatch {
    pub board: PromiseBoard,
    pub store: Store,
    pub clock: Clock,
    pub interval: Duration,
    pub lead: DeliveryLead,
    pub wakers: Wakers,
}

/// Machines that count as capacity, per factory and process: active ones
/// that are not faulted or stuck. An offline machine counts (a link that
/// drops for a moment is not a lost machine; one that stays away shows in
/// the backlog growing).
pub fn capacity(machines: &[crate::store::MachineRecord]) -> HashMap<(FactoryId, String), usize> {
    let mut counts: HashMap<(FactoryId, String), usize> = HashMap::new();
    for machine in machines {
        let counts_now = machine.mode == MachineMode::Active
            && !matches!(machine.state, MachineState::Fault | MachineState::Stuck);
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
            let started = std::time::Instant::now();
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
            match self.round().await {
                Ok(0) => {}
                Ok(flagged) => {
                    warn!(orders = flagged, "orders at risk of missing their promise");
                    metrics::counter!("fabflow_orders_at_risk_total").increment(flagged as u64);
                    self.wakers.wake(Wake::OUTBOX);
                }
                Err(err) => warn!(error = %err, "promise estimate failed"),
            }
            spent = started.elapsed();
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
        let backlog = Backlog::new(
            jobs.into_iter().map(|job| QueuedWork {
                token: job.token,
                factory: job.factory,
                process: job.process,
                seconds: job.seconds,
                due_ms: job.due_ms,
            }),
            &capacity(&machines),
        );
        let mut updates = Vec::new();
        for order in orders {
            let lead = self.lead.ms(order.factory.as_str(), order.location);
            let estimate = backlog.estimate(
                &order.factory,
                steps.get(&order.id).map_or(&[][..], Vec::as_slice),
                order.deadline_ms,
                now,
                lead,
            );
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
pub fn widest_gap_ms(schedule: &cron::Schedule, from: chrono::DateTime<chrono::Utc>) -> Millis {
    let day: Millis = 24 * 3_600_000;
    let week_end = from + chrono::Duration::days(7);
    let mut widest = 0;
    let mut last = from;
    for next in schedule.after(&from).take(10_000) {
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
    fn wave_gap_is_the_widest_cron_interval() {
        let from = chrono::DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .expect("time")
            .with_timezone(&chrono::Utc);
        let every_10_min: cron::Schedule = "0 */10 * * * *".parse().expect("cron");
        assert_eq!(widest_gap_ms(&every_10_min, from), 600_000);
        // Twice a day at 8 and 20 h: 12 h gaps.
        let twice: cron::Schedule = "0 0 8,20 * * *".parse().expect("cron");
        assert_eq!(widest_gap_ms(&twice, from), 12 * 3_600_000);
    }
}
