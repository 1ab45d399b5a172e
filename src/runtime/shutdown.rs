//! The runtime's stop sequence, stage by stage: each stage's tasks are told
//! to stop and awaited before the next stage begins.
//!
//! 1. intake: refuse new submissions, commit what was queued;
//! 2. work: scheduler, planning waves and machine supervisors (their drivers
//!    finish the request in flight, then stop);
//! 3. outbox: the publisher makes a last pass and waits for acknowledgements;
//!    the courier schedule publisher queues the schedules still marked;
//! 4. mqtt: the clients' event loops, which the outbox flush still needed;
//! 5. the database pool.
//!
//! The HTTP server, which feeds intake, is stopped by its owner before this.

use crate::store::Store;
use tokio::task::{JoinHandle, JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::info;

/// The runtime's tasks, grouped by the stage that stops them.
pub struct Shutdown {
    /// Closes intake; its committer drains what is queued, then ends.
    pub(super) intake: CancellationToken,
    pub(super) intake_task: JoinHandle<()>,
    /// Stops the scheduler, the waves and the machine drivers (whose
    /// supervisors end when their driver's facts channel closes).
    pub(super) work: CancellationToken,
    pub(super) work_tasks: JoinSet<()>,
    /// Tells the outbox publisher to flush and end.
    pub(super) outbox: CancellationToken,
    pub(super) outbox_task: JoinHandle<()>,
    /// The courier schedule publisher, told to stop with the same token.
    pub(super) schedules_task: JoinHandle<()>,
    /// Ends the MQTT clients' event loops, after the outbox flush.
    pub(super) mqtt: CancellationToken,
    pub(super) store: Store,
}

impl Shutdown {
    /// Runs every stage in order; returns when everything has stopped.
    pub async fn run(mut self) {
        info!("stopping intake after what it accepted is stored");
        self.intake.cancel();
        self.intake_task.await.ok();
        info!("stopping machine drivers after their in-flight requests");
        self.work.cancel();
        while self.work_tasks.join_next().await.is_some() {}
        info!("flushing the outbox");
        self.outbox.cancel();
        self.outbox_task.await.ok();
        self.schedules_task.await.ok();
        self.mqtt.cancel();
        self.store.close().await;
        info!("stopped");
    }
}
