//! Wake-ups: the one place that turns what a store call changed into the
//! tasks that must look again. The scheduler looks when work or capacity
//! appears (a job back to pending or finished, a queue emptied, new orders);
//! the outbox publisher looks when events were written.

use crate::domain::{JobState, OrderState};
use crate::store::{JobTransition, ModeChange};
use fabflow_adapters::MachineHandle;
use std::collections::HashMap;
use std::sync::Arc;
use tokio::sync::{Notify, watch};

/// What a change calls for. Combine several with `|`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wake {
    pub scheduler: bool,
    pub outbox: bool,
    /// An order became ready (or went back to ready): the waves look for
    /// rush orders that cannot wait for their next cron time.
    pub waves: bool,
}

impl Wake {
    pub const NONE: Wake = Wake {
        scheduler: false,
        outbox: false,
        waves: false,
    };
    /// Events were written.
    pub const OUTBOX: Wake = Wake {
        scheduler: false,
        outbox: true,
        waves: false,
    };
    /// Work or capacity appeared.
    pub const SCHEDULER: Wake = Wake {
        scheduler: true,
        outbox: false,
        waves: false,
    };
    pub const BOTH: Wake = Wake {
        scheduler: true,
        outbox: true,
        waves: false,
    };
    /// An order may have become ready for a courier.
    pub const WAVES: Wake = Wake {
        scheduler: false,
        outbox: false,
        waves: true,
    };

    /// After a job moved: its events; the planner when the job left a
    /// machine's queue (finished, failed, back to pending); the waves when
    /// its order became ready.
    pub fn job_moved(moved: &JobTransition) -> Wake {
        let state = moved.job.state;
        Wake {
            scheduler: state.is_terminal() || matches!(state, JobState::Pending | JobState::Held),
            outbox: true,
            waves: moved.order_state == Some(OrderState::Ready),
        }
    }

    /// After `count` queued jobs went back to the planner.
    pub fn unscheduled(count: usize) -> Wake {
        Wake {
            scheduler: count > 0,
            outbox: false,
            waves: false,
        }
    }

    /// After an operator's mode decision: its event, and the planner (jobs
    /// came back, or the machine takes jobs again).
    pub fn mode_changed(_change: &ModeChange) -> Wake {
        Wake::BOTH
    }
}

impl std::ops::BitOr for Wake {
    type Output = Wake;
    fn bitor(self, other: Wake) -> Wake {
        Wake {
            scheduler: self.scheduler || other.scheduler,
            outbox: self.outbox || other.outbox,
            waves: self.waves || other.waves,
        }
    }
}

impl std::ops::BitOrAssign for Wake {
    fn bitor_assign(&mut self, other: Wake) {
        *self = *self | other;
    }
}

/// The tasks to wake; cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct Wakers {
    /// Wakes the scheduler loop early (it also runs on its interval, so a
    /// lost wake-up only delays). Lives as long as any clone; nothing to close.
    scheduler: Arc<Notify>,
    /// Wakes the outbox publisher early (it also polls on its own).
    outbox: Arc<Notify>,
    /// Wakes the webhook worker with the outbox publisher: both follow the
    /// event log.
    webhooks: Arc<Notify>,
    /// Wakes every zone's waves for a re-plan now (a courier dropped out).
    /// A watch, so a re-plan asked while a wave runs is seen after it (a
    /// `Notify::notify_waiters` reached only waves waiting at that moment);
    /// nothing to close.
    replan: Arc<watch::Sender<u64>>,
    /// Counts orders becoming ready: each zone's waves follow it and plan
    /// at once for an order that cannot wait for the next cron time. A
    /// watch, so a change while a wave runs is seen after it (never lost);
    /// nothing to close.
    ready: Arc<watch::Sender<u64>>,
    /// Counts changes people watch (every wake-up, a machine's recorded
    /// state, a running job's counts), for the dashboard's event stream. A
    /// watch keeps only the latest value: a slow reader skips to now, never
    /// blocks a writer. Nothing to close: readers end with their requests.
    changes: Arc<watch::Sender<u64>>,
    /// The drivers of the machines this daemon drives, by machine id: the
    /// scheduler rings a machine it just queued work for, so that its
    /// driver reads it now rather than at its next poll (an idle machine
    /// then starts the job at once). A std mutex, held only to look up.
    machines: Arc<std::sync::Mutex<HashMap<String, MachineHandle>>>,
}

impl Wakers {
    /// `handle` drives `machine` from now on (replacing an earlier driver).
    pub fn register_machine(&self, machine: &str, handle: MachineHandle) {
        self.machines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(machine.to_string(), handle);
    }

    /// Asks `machine`'s driver, if this daemon drives it, to read it now.
    pub fn ring_machine(&self, machine: &str) {
        let handle = self
            .machines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(machine)
            .cloned();
        if let Some(handle) = handle {
            handle.poll_now();
        }
    }

    pub fn wake(&self, wake: Wake) {
        if wake != Wake::NONE {
            self.changed();
        }
        if wake.scheduler {
            self.scheduler.notify_one();
        }
        if wake.outbox {
            self.outbox.notify_one();
            self.webhooks.notify_one();
        }
        if wake.waves {
            self.ready
                .send_modify(|count| *count = count.wrapping_add(1));
        }
    }

    /// Follows orders becoming ready (see [`Wake::waves`]).
    pub fn watch_ready(&self) -> watch::Receiver<u64> {
        self.ready.subscribe()
    }

    /// Marks that something people watch changed (what a wake-up does not
    /// cover: a machine's recorded state, a running job's counts).
    pub fn changed(&self) {
        self.changes
            .send_modify(|count| *count = count.wrapping_add(1));
    }

    /// Follows the change count (see [`Wakers::changed`]).
    pub fn watch_changes(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Asks every zone's waves to plan now rather than at their next cron
    /// time (a wave already running plans again once it is done).
    pub fn replan(&self) {
        self.replan
            .send_modify(|count| *count = count.wrapping_add(1));
    }

    /// Follows re-plan requests (see [`Wakers::replan`]).
    pub fn watch_replan(&self) -> watch::Receiver<u64> {
        self.replan.subscribe()
    }

    /// Resolves when someone woke the scheduler.
    pub async fn scheduler_woken(&self) {
        self.scheduler.notified().await;
    }

    /// Resolves when someone woke the outbox publisher.
    pub async fn outbox_woken(&self) {
        self.outbox.notified().await;
    }

    /// Resolves when events were written (the webhook worker's wake-up).
    pub async fn webhooks_woken(&self) {
        self.webhooks.notified().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_combine() {
        assert_eq!(Wake::OUTBOX | Wake::SCHEDULER, Wake::BOTH);
        assert_eq!(Wake::NONE | Wake::OUTBOX, Wake::OUTBOX);
        assert_eq!(Wake::unscheduled(0), Wake::NONE);
        assert_eq!(Wake::unscheduled(2), Wake::SCHEDULER);
        assert_eq!(
            Wake::BOTH | Wake::WAVES,
            Wake {
                waves: true,
                ..Wake::BOTH
            }
        );
    }

    #[test]
    fn an_order_becoming_ready_is_seen_by_a_waves_watcher_even_if_it_was_busy() {
        let wakers = Wakers::default();
        let mut ready = wakers.watch_ready();
        wakers.wake(Wake::OUTBOX);
        assert!(!ready.has_changed().expect("open"));
        wakers.wake(Wake::SCHEDULER | Wake::WAVES);
        // Not waiting at the time of the wake-up, and still not lost.
        assert!(ready.has_changed().expect("open"));
        ready.borrow_and_update();
        assert!(!ready.has_changed().expect("open"));
        // A re-plan asked while nobody waits is not lost either.
        let replan = wakers.watch_replan();
        wakers.replan();
        assert!(replan.has_changed().expect("open"));
    }

    #[test]
    fn every_wake_up_and_each_marked_change_moves_the_change_count() {
        let wakers = Wakers::default();
        let changes = wakers.watch_changes();
        wakers.wake(Wake::NONE);
        assert_eq!(*changes.borrow(), 0);
        wakers.wake(Wake::SCHEDULER);
        wakers.changed();
        assert_eq!(*changes.borrow(), 2);
    }
}
