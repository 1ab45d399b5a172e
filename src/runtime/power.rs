//! The factories' start-up draws, in memory: a supervisor takes room for a
//! start here (check and record under one lock, so two machines of a
//! factory never both take the last room), and the explanations read it.
//! The decision is `domain::power::admit`.
//!
//! A factory is driven by one daemon at a time (its lease), so its starts
//! are all seen here. After a restart the ledger is empty: starts made
//! just before it are not counted (at most one start-up window long).

use crate::domain::Millis;
use crate::domain::power::{Drawing, PowerWait, admit};
use fabflow_adapters::profile::Startup;
use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct PowerLedger {
    /// Each factory's `power_budget_w`, if it has one.
    budgets: HashMap<String, u32>,
    /// Per factory, the starts that may still draw. A std mutex held only
    /// to check and record (never across an await); nothing to do at
    /// shutdown.
    starts: Mutex<HashMap<String, Vec<Drawing>>>,
}

/// How long past its start-up window a room taken for a start that neither
/// went out nor was released is held (domain milliseconds).
pub const RESERVATION_GRACE_MS: Millis = 10 * 60 * 1000;

impl PowerLedger {
    pub fn new(budgets: HashMap<String, u32>) -> PowerLedger {
        PowerLedger {
            budgets,
            starts: Mutex::default(),
        }
    }

    pub fn budget(&self, factory: &str) -> Option<u32> {
        self.budgets.get(factory).copied()
    }

    /// Takes room for `machine` of `factory` to start now, drawing its
    /// profile's `startup`; the wait when the budget has no room. The room
    /// is held until the start goes out (`started`, which counts the window
    /// from then) or is given up (`release`): storing the dispatch may take
    /// longer than a start-up window, and another machine must not start in
    /// between. A supervisor that fails between the two without releasing
    /// holds it at most [`RESERVATION_GRACE_MS`] past the window.
    pub fn try_start(
        &self,
        factory: &str,
        machine: &str,
        startup: Option<Startup>,
        now: Millis,
    ) -> Result<(), PowerWait> {
        let (Some(budget), Some(startup)) = (self.budget(factory), startup) else {
            return Ok(());
        };
        let mut all = self
            .starts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let starts = all.entry(factory.to_string()).or_default();
        starts.retain(|d| d.until_ms > now && d.machine != machine);
        admit(Some(budget), starts, machine, startup.power_w, now)?;
        starts.push(Drawing {
            machine: machine.to_string(),
            power_w: startup.power_w,
            started_ms: now,
            until_ms: now
                .saturating_add(Millis::try_from(startup.duration_ms).unwrap_or(Millis::MAX))
                .saturating_add(RESERVATION_GRACE_MS),
        });
        Ok(())
    }

    /// Gives up the room `machine` took for a start that will not go out.
    pub fn release(&self, factory: &str, machine: &str) {
        let mut all = self
            .starts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(starts) = all.get_mut(factory) {
            starts.retain(|d| d.machine != machine);
        }
    }

    /// The start command of `machine` went out at `at` (or may have): its
    /// draw is counted from then, for its whole start-up window (room is
    /// taken before the dispatch is stored, a little earlier).
    pub fn started(&self, factory: &str, machine: &str, startup: Option<Startup>, at: Millis) {
        let (Some(_), Some(startup)) = (self.budget(factory), startup) else {
            return;
        };
        let mut all = self
            .starts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let starts = all.entry(factory.to_string()).or_default();
        starts.retain(|d| d.machine != machine);
        starts.push(Drawing {
            machine: machine.to_string(),
            power_w: startup.power_w,
            started_ms: at,
            until_ms: at
                .saturating_add(Millis::try_from(startup.duration_ms).unwrap_or(Millis::MAX)),
        });
    }

    /// The starts of `factory` still drawing at `now`.
    pub fn drawing(&self, factory: &str, now: Millis) -> Vec<Drawing> {
        let all = self
            .starts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        all.get(factory)
            .map(|starts| {
                starts
                    .iter()
                    .filter(|d| d.until_ms > now)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_take_room_until_their_window_ends() {
        let ledger = PowerLedger::new(HashMap::from([("north".to_string(), 2000)]));
        let warm = Some(Startup {
            power_w: 1500,
            duration_ms: 100,
        });
        assert_eq!(ledger.try_start("north", "a", warm, 0), Ok(()));
        let wait = ledger.try_start("north", "b", warm, 10).err();
        // Held until the start goes out (here: never, so the grace bounds it).
        assert_eq!(
            wait.and_then(|w| w.free_at_ms),
            Some(100 + RESERVATION_GRACE_MS)
        );
        assert_eq!(ledger.drawing("north", 10).len(), 1);
        // The start went out later than the room was taken: counted from then.
        ledger.started("north", "a", warm, 40);
        let wait = ledger.try_start("north", "b", warm, 100).err();
        assert_eq!(wait.and_then(|w| w.free_at_ms), Some(140));
        assert_eq!(ledger.try_start("north", "b", warm, 140), Ok(()));
        // No budget, or no draw in the profile: nothing is counted.
        assert_eq!(ledger.try_start("south", "c", warm, 100), Ok(()));
        assert_eq!(ledger.try_start("north", "d", None, 100), Ok(()));
        assert!(ledger.drawing("south", 100).is_empty());
        // A start given up frees its room at once.
        ledger.release("north", "b");
        assert_eq!(ledger.try_start("north", "e", warm, 150), Ok(()));
    }
}
