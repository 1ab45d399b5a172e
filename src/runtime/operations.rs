//! Operator and courier use cases: an operator's decision on a machine, a
//! courier's confirmation of a stop. Each is one store transaction with its
//! event (and, for decisions, its audit row naming the `actor`), followed by
//! the wake-ups it calls for.

use super::Runtime;
use super::wake::Wake;
use crate::domain::escalation::{EscalationDecision, Refusal};
use crate::domain::{AtRiskReason, FailureReason, JobInput, JobToken, Millis, ModeInput};
use crate::store::OrderRecord;
use crate::store::{
    Confirmation, FailedAttempt, HandoffRecord, JobTransition, MaterialChange, ModeChange,
    PromiseUpdate, StoreError, WindowRecord,
};
use tracing::{info, warn};

/// A stop confirmed this long after its ETA (domain time) delays the
/// courier's later stops.
pub const LATE_STOP_MS: Millis = 5 * 60_000;

/// What an operator decides about a held job.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldDecision {
    /// The job goes on on its machine (which still shows it, out of its fault).
    Resume,
    /// The job ends; its units not reported good are made again under new
    /// tokens, and its token is retired.
    Abandon,
    /// The same end as `Abandon`, asked for as "make it again" (`job.retried`).
    Retry,
}

impl Runtime {
    /// Follows what people watch: the value moves after every change the
    /// runtime makes or records (see `Wakers::changed`). Only the latest
    /// value is kept, so a reader sees "something changed since", not each
    /// change.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.wakers.watch_changes()
    }

    /// Pauses, resumes, or starts or ends maintenance of a machine; a mode
    /// that takes no jobs hands its queued jobs back to the planner, in the
    /// same transaction.
    pub async fn change_machine_mode(
        &self,
        machine: &str,
        input: ModeInput,
        actor: &str,
    ) -> Result<ModeChange, StoreError> {
        let change = self
            .store
            .change_machine_mode(machine, input, actor, self.clock.now_ms())
            .await?;
        self.wakers.wake(Wake::mode_changed(&change));
        Ok(change)
    }

    /// An operator declares the material loaded on a machine (None: not
    /// known); its queued jobs of another material go back to the planner.
    pub async fn load_material(
        &self,
        machine: &str,
        material: Option<&str>,
        actor: &str,
    ) -> Result<MaterialChange, StoreError> {
        let change = self
            .store
            .load_material(machine, material, actor, self.clock.now_ms())
            .await?;
        metrics::counter!("fabflow_machine_materials_loaded_total").increment(1);
        // Jobs of the new material may now be placed and started there.
        self.wakers.wake(Wake::BOTH);
        Ok(change)
    }

    /// An operator plans maintenance on a machine for `[start_ms, end_ms)`
    /// (checked by the caller with `domain::calendar::window_problems`):
    /// no job starts there that would run into it.
    pub async fn schedule_maintenance(
        &self,
        machine: &str,
        start_ms: Millis,
        end_ms: Millis,
        reason: &str,
        actor: &str,
    ) -> Result<WindowRecord, StoreError> {
        let window = self
            .store
            .schedule_maintenance(
                machine,
                start_ms,
                end_ms,
                reason,
                actor,
                self.clock.now_ms(),
            )
            .await?;
        self.wakers.wake(Wake::OUTBOX);
        Ok(window)
    }

    /// An operator removes a planned maintenance window of a machine.
    pub async fn cancel_maintenance(
        &self,
        machine: &str,
        id: &str,
        actor: &str,
    ) -> Result<WindowRecord, StoreError> {
        let window = self
            .store
            .cancel_maintenance(machine, id, actor, self.clock.now_ms())
            .await?;
        self.wakers.wake(Wake::BOTH);
        Ok(window)
    }

    /// An operator's decision on a held job (audited as `actor`'s).
    pub async fn decide_held_job(
        &self,
        token: JobToken,
        decision: HeldDecision,
        actor: &str,
    ) -> Result<JobTransition, StoreError> {
        let input = match decision {
            HeldDecision::Resume => JobInput::Resume,
            HeldDecision::Abandon => JobInput::Abandon,
            HeldDecision::Retry => JobInput::Retry,
        };
        let moved = self
            .store
            .decide_held_job(token, input, actor, self.clock.now_ms())
            .await?;
        metrics::counter!("fabflow_held_jobs_decided_total", "decision" => match decision {
            HeldDecision::Resume => "resume",
            HeldDecision::Abandon => "abandon",
            HeldDecision::Retry => "retry",
        })
        .increment(1);
        self.wakers.wake(Wake::job_moved(&moved));
        Ok(moved)
    }

    /// An operator cancels a pending or queued job, and with it the rest of
    /// its line not yet made; the order follows (cancelled with every line
    /// cancelled, ready with the lines left all done). Refused while any job
    /// of the line is on a machine. Returns the job's transition and every
    /// job cancelled.
    pub async fn cancel_job(
        &self,
        token: JobToken,
        actor: &str,
    ) -> Result<(JobTransition, Vec<JobToken>), StoreError> {
        let cancelled = self
            .store
            .cancel_job(token, actor, self.clock.now_ms())
            .await?;
        metrics::counter!("fabflow_jobs_cancelled_total").increment(cancelled.1.len() as u64);
        // Queues have room; the events go out (a ready order waits for its
        // zone's next wave, as after any last job done).
        self.wakers.wake(Wake::BOTH);
        Ok(cancelled)
    }

    /// An operator moves a pending or queued job to another machine's queue
    /// (refused with the reason when it makes no sense: a job on its
    /// machine, a machine that cannot make it or takes no jobs, an earlier
    /// step not done).
    pub async fn move_job(
        &self,
        token: JobToken,
        machine: &str,
        actor: &str,
    ) -> Result<JobTransition, StoreError> {
        let moved = self
            .store
            .move_job(token, machine, actor, self.clock.now_ms())
            .await?;
        metrics::counter!("fabflow_jobs_moved_total").increment(1);
        // The queue it left has room; the event goes out.
        self.wakers.wake(Wake::BOTH);
        Ok(moved)
    }

    /// A courier confirms a stop with its code (`courier`: only their own
    /// stops; `code` None: an admin's confirmation, unchecked). A wrong code
    /// is counted, and locks the stop at the configured limit.
    pub async fn confirm_handoff(
        &self,
        id: &str,
        courier: Option<&str>,
        code: Option<&str>,
    ) -> Result<Confirmation, StoreError> {
        let outcome = self
            .store
            .confirm_handoff(
                id,
                courier,
                code,
                self.network.handoffs.max_wrong_codes,
                self.clock.now_ms(),
            )
            .await?;
        match &outcome {
            Confirmation::Confirmed(handoff) => {
                self.wakers.wake(Wake::OUTBOX);
                self.schedules.mark(handoff.courier.as_str());
                self.after_late_stop(handoff).await?;
                // A courier that has made its last stop takes the parcels
                // waiting now rather than idling until the next cron wave.
                if !self
                    .store
                    .courier_has_open_stops(handoff.courier.as_str())
                    .await?
                {
                    info!(courier = %handoff.courier, "courier free: planning a wave now");
                    self.wakers.replan();
                }
            }
            Confirmation::WrongCode { locked, .. } => {
                metrics::counter!("fabflow_handoff_wrong_codes_total").increment(1);
                if *locked {
                    metrics::counter!("fabflow_handoffs_locked_total").increment(1);
                    self.wakers.wake(Wake::OUTBOX);
                    if let Some(courier) = courier {
                        self.schedules.mark(courier);
                    } else if let Some(found) = self.store.get_handoff(id).await? {
                        self.schedules.mark(found.handoff.courier.as_str());
                    }
                }
            }
        }
        Ok(outcome)
    }

    /// A stop confirmed well after its ETA pushes the courier's later stops
    /// back by as much; a delivery that then misses its deadline is flagged
    /// at risk now, not when the deadline has passed.
    async fn after_late_stop(&self, handoff: &HandoffRecord) -> Result<(), StoreError> {
        let now = self.clock.now_ms();
        let delay = now - handoff.eta_ms;
        // Simulated seconds after the planned time (0 for an early stop).
        metrics::histogram!("fabflow_handoff_lateness_seconds", "kind" => handoff.kind.as_str())
            .record(delay.max(0) as f64 / 1000.0);
        if delay < LATE_STOP_MS {
            return Ok(());
        }
        let late = self
            .store
            .delay_courier(handoff.courier.as_str(), delay)
            .await?;
        let updates: Vec<PromiseUpdate> = late
            .into_iter()
            .map(|drop| PromiseUpdate {
                order_id: drop.order_id,
                brand: drop.brand,
                deadline_ms: drop.deadline_ms,
                eta_ready_ms: None,
                eta_delivery_ms: Some(drop.eta_ms),
                at_risk: Some(AtRiskReason::NoCourierInTime),
            })
            .collect();
        let flagged = self.store.record_promises(&updates, now).await?;
        if flagged > 0 {
            metrics::counter!("fabflow_orders_at_risk_total").increment(flagged as u64);
            warn!(courier = %handoff.courier, orders = flagged, delay_ms = delay,
                "a late courier will miss these orders' deadlines");
            self.wakers.wake(Wake::OUTBOX);
        }
        Ok(())
    }

    /// A courier goes off duty (dropping out for the day) or back on. Its
    /// pickups not yet made are handed back, the parcels it has on board
    /// brought back to their factory, and every zone re-plans now.
    pub async fn set_courier_duty(
        &self,
        courier: &str,
        on_duty: bool,
        actor: &str,
    ) -> Result<crate::store::DutyChange, StoreError> {
        let change = self
            .store
            .set_courier_duty(courier, on_duty, actor, self.clock.now_ms())
            .await?;
        self.wakers.wake(Wake::OUTBOX);
        self.schedules.mark(courier);
        self.wakers.replan();
        Ok(change)
    }

    /// A courier reports a failed attempt at a stop: re-planned in the next
    /// wave, or escalated after the configured number of attempts.
    pub async fn fail_handoff(
        &self,
        id: &str,
        courier: Option<&str>,
        reason: FailureReason,
    ) -> Result<FailedAttempt, StoreError> {
        let failed = self
            .store
            .fail_handoff(
                id,
                courier,
                reason,
                self.network.handoffs.max_attempts,
                self.clock.now_ms(),
            )
            .await?;
        metrics::counter!("fabflow_handoff_failures_total", "reason" => reason.as_str())
            .increment(1);
        if failed.escalated {
            metrics::counter!("fabflow_orders_escalated_total").increment(1);
        }
        // A failed drop-off puts its order back to ready: it may not be able
        // to wait for the next cron wave.
        self.wakers.wake(Wake::OUTBOX | Wake::WAVES);
        self.schedules.mark(failed.handoff.courier.as_str());
        Ok(failed)
    }

    /// An operator decides what becomes of an escalated order (see
    /// `domain::escalation`); a decision that makes no sense is `Ok(Err)`.
    /// A retried order is ready for the next wave (at once if it cannot
    /// wait for it).
    pub async fn decide_escalation(
        &self,
        order_id: &str,
        decision: EscalationDecision,
        deliver_by_ms: Option<Millis>,
        actor: &str,
    ) -> Result<Result<OrderRecord, Refusal>, StoreError> {
        let decided = self
            .store
            .decide_escalation(
                order_id,
                decision,
                deliver_by_ms,
                actor,
                self.clock.now_ms(),
            )
            .await?;
        if decided.is_ok() {
            metrics::counter!("fabflow_escalations_decided_total", "decision" => decision.as_str())
                .increment(1);
            self.wakers.wake(Wake::OUTBOX | Wake::WAVES);
        }
        Ok(decided)
    }

    /// An operator releases a stop locked by wrong codes (audited as `actor`'s).
    pub async fn release_handoff(
        &self,
        id: &str,
        actor: &str,
    ) -> Result<HandoffRecord, StoreError> {
        let handoff = self
            .store
            .release_handoff(id, actor, self.clock.now_ms())
            .await?;
        self.wakers.wake(Wake::OUTBOX);
        self.schedules.mark(handoff.courier.as_str());
        Ok(handoff)
    }
}
