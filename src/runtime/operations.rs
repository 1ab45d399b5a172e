//! Operator and courier use cases: an operator's decision on a machine, a
//! courier's confirmation of a stop. Each is one store transaction with its
//! event (and, for decisions, its audit row naming the `actor`), followed by
//! the wake-ups it calls for.

use super::Runtime;
use super::wake::Wake;
use crate::domain::ModeInput;
use crate::store::{HandoffRecord, ModeChange, StoreError};

impl Runtime {
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

    /// A courier confirms a stop (`courier`: only their own stops).
    pub async fn confirm_handoff(
        &self,
        id: &str,
        courier: Option<&str>,
    ) -> Result<HandoffRecord, StoreError> {
        let handoff = self
            .store
            .confirm_handoff(id, courier, self.clock.now_ms())
            .await?;
        self.wakers.wake(Wake::OUTBOX);
        self.schedules.mark(handoff.courier.as_str());
        Ok(handoff)
    }
}
