//! A factory's power budget: machines draw their profile's start-up power
//! for a while after each start, and a start waits while it would take the
//! factory's summed start-up draw past its budget. Pure: the caller gives
//! the starts still drawing and the instant.
//!
//! Invariant (tested): with every start admitted by [`admit`], the summed
//! draw of the starts still in their start-up window never exceeds the
//! budget.

use super::Millis;

/// One machine's start: it draws `power_w` during `[started_ms, until_ms)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Drawing {
    pub machine: String,
    pub power_w: u32,
    pub started_ms: Millis,
    pub until_ms: Millis,
}

/// Why a start waits: what the factory's starts draw now, its budget, what
/// the machine needs, and when enough will be free (None: never, the
/// machine alone needs more than the budget).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PowerWait {
    pub drawing_w: u64,
    pub budget_w: u32,
    pub needed_w: u32,
    pub free_at_ms: Option<Millis>,
}

/// The summed draw at `now` of the starts whose start-up window has not
/// ended. A start recorded as later than `now` counts too: the callers'
/// instants are read at different moments (a supervisor reads the clock,
/// waits on the database, then asks), and a start taken meanwhile must not
/// slip past.
pub fn drawing_at(starts: &[Drawing], now: Millis) -> u64 {
    starts
        .iter()
        .filter(|d| now < d.until_ms)
        .map(|d| u64::from(d.power_w))
        .sum()
}

/// Whether `machine` may start now, drawing `needed_w`, in a factory with
/// `budget_w` (None: no budget) whose other starts are `starts`; the wait
/// when it may not. A machine that draws nothing always may.
pub fn admit(
    budget_w: Option<u32>,
    starts: &[Drawing],
    machine: &str,
    needed_w: u32,
    now: Millis,
) -> Result<(), PowerWait> {
    let Some(budget_w) = budget_w else {
        return Ok(());
    };
    if needed_w == 0 {
        return Ok(());
    }
    // The machine's own earlier start is over (it starts one job at a time);
    // every other start not yet over counts, even one recorded as later
    // than `now` (see `drawing_at`).
    let others: Vec<&Drawing> = starts
        .iter()
        .filter(|d| d.machine != machine && now < d.until_ms)
        .collect();
    let drawing_w: u64 = others.iter().map(|d| u64::from(d.power_w)).sum();
    let budget = u64::from(budget_w);
    let needed = u64::from(needed_w);
    if drawing_w + needed <= budget {
        return Ok(());
    }
    let free_at_ms = if needed > budget {
        None
    } else {
        // Starts end in order of their window's end: the first instant the
        // rest leaves room.
        let mut ends: Vec<(Millis, u64)> = others
            .iter()
            .map(|d| (d.until_ms, u64::from(d.power_w)))
            .collect();
        ends.sort_unstable();
        let mut left = drawing_w;
        ends.into_iter().find_map(|(end, power)| {
            left -= power;
            (left + needed <= budget).then_some(end)
        })
    };
    Err(PowerWait {
        drawing_w,
        budget_w,
        needed_w,
        free_at_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn start(machine: &str, power_w: u32, started_ms: Millis, until_ms: Millis) -> Drawing {
        Drawing {
            machine: machine.into(),
            power_w,
            started_ms,
            until_ms,
        }
    }

    #[test]
    fn starts_wait_for_room_under_the_budget() {
        let starts = [start("a", 1500, 0, 100), start("b", 1000, 50, 300)];
        // No budget, or no draw: always.
        assert_eq!(admit(None, &starts, "c", 5000, 60), Ok(()));
        assert_eq!(admit(Some(100), &starts, "c", 0, 60), Ok(()));
        // 2500 W drawing of 3000: 500 W fit, 1000 W wait until "a" is done.
        assert_eq!(admit(Some(3000), &starts, "c", 500, 60), Ok(()));
        assert_eq!(
            admit(Some(3000), &starts, "c", 1000, 60),
            Err(PowerWait {
                drawing_w: 2500,
                budget_w: 3000,
                needed_w: 1000,
                free_at_ms: Some(100)
            })
        );
        // 2000 W need both done.
        assert_eq!(
            admit(Some(3000), &starts, "c", 2500, 60).map_err(|w| w.free_at_ms),
            Err(Some(300))
        );
        // Past their windows, nothing draws.
        assert_eq!(admit(Some(3000), &starts, "c", 3000, 300), Ok(()));
        assert_eq!(drawing_at(&starts, 60), 2500);
        // A machine's own start does not count against its next one.
        assert_eq!(admit(Some(2000), &starts, "a", 1000, 60), Ok(()));
        // A start recorded at an instant after the one asked about still
        // draws: two supervisors read the clock before either took room.
        let later = [start("b", 1500, 70, 170)];
        assert_eq!(drawing_at(&later, 60), 1500);
        assert_eq!(
            admit(Some(2000), &later, "a", 1500, 60).map_err(|w| w.drawing_w),
            Err(1500)
        );
        // More than the whole budget: never.
        assert_eq!(
            admit(Some(1000), &[], "c", 1500, 0).map_err(|w| w.free_at_ms),
            Err(None)
        );
    }

    proptest! {
        /// Admitting starts one after another (each at its own instant)
        /// never lets the summed start-up draw pass the budget.
        #[test]
        fn the_summed_draw_stays_under_the_budget(
            budget in 1u32..5000,
            tries in prop::collection::vec((0usize..6, 0u32..3000, 0i64..50, 1i64..200), 0..40),
        ) {
            let mut starts: Vec<Drawing> = Vec::new();
            let mut now = 0;
            for (machine, power, step, length) in tries {
                now += step;
                let machine = format!("m{machine}");
                // A machine starts one job at a time: skip one still starting.
                if starts.iter().any(|d| d.machine == machine && now < d.until_ms) {
                    continue;
                }
                match admit(Some(budget), &starts, &machine, power, now) {
                    Ok(()) => starts.push(start(&machine, power, now, now + length)),
                    Err(wait) => {
                        prop_assert!(wait.drawing_w + u64::from(power) > u64::from(budget));
                        if let Some(free) = wait.free_at_ms {
                            prop_assert!(free > now);
                            prop_assert!(admit(Some(budget), &starts, &machine, power, free).is_ok());
                        }
                    }
                }
                let drawing: u64 = starts
                    .iter()
                    .filter(|d| d.power_w > 0)
                    .filter(|d| d.started_ms <= now && now < d.until_ms)
                    .map(|d| u64::from(d.power_w))
                    .sum();
                prop_assert!(drawing <= u64::from(budget), "{drawing} W of {budget}");
            }
        }
    }
}
