//! Rush orders: when a ready order cannot wait for its zone's next cron
//! wave. Pure: the caller gives the next wave's time and the travel.
//!
//! The rule: an order must be on a courier's route by its *latest wave*,
//! its deadline minus the direct ride from its pickup to its drop-off, the
//! service time at both stops, and a margin (for a courier to reach the
//! pickup, and for the router's own time). A ready order whose latest wave
//! falls before the zone's next cron wave is planned at once instead.
//!
//! Invariants (tested): a later deadline is never more urgent; an order
//! whose latest wave is at or after the next wave is never rush; a bigger
//! margin never makes an order less urgent.

use super::route::Legs;
use crate::domain::{Location, Millis};

/// The latest time a wave may plan an order and still deliver it by
/// `deadline_ms`: the deadline less the direct ride, the handover at the
/// factory, the service at the door and `margin_ms`.
pub fn latest_wave_ms(
    pickup: Location,
    dropoff: Location,
    deadline_ms: Millis,
    travel: &impl Legs,
    margin_ms: Millis,
) -> Millis {
    deadline_ms
        .saturating_sub(travel.leg_ms(pickup, dropoff))
        .saturating_sub(travel.handover_ms().max(0))
        .saturating_sub(travel.service_ms().max(0))
        .saturating_sub(margin_ms.max(0))
}

/// Whether a ready order must be planned now rather than at `next_wave_ms`
/// (the zone's next cron time).
pub fn cannot_wait(
    pickup: Location,
    dropoff: Location,
    deadline_ms: Millis,
    next_wave_ms: Millis,
    travel: &impl Legs,
    margin_ms: Millis,
) -> bool {
    latest_wave_ms(pickup, dropoff, deadline_ms, travel, margin_ms) < next_wave_ms
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::route::Travel;
    use proptest::prelude::*;

    const HOUR: Millis = 3_600_000;
    const MINUTE: Millis = 60_000;

    fn factory() -> Location {
        Location::new(52.50, 13.40)
    }

    fn customer() -> Location {
        // About 2.2 km north: 1.3 times that at 4.2 m/s is about 11.5 minutes.
        Location::new(52.52, 13.40)
    }

    /// (deadline, next wave, margin) → rush?
    fn check(deadline: Millis, next_wave: Millis, margin: Millis, expected: bool) {
        let travel = Travel::default();
        assert_eq!(
            cannot_wait(factory(), customer(), deadline, next_wave, &travel, margin),
            expected,
            "deadline {deadline}, next wave {next_wave}, margin {margin}"
        );
    }

    #[test]
    fn the_rule_on_a_table() {
        // Ride about 11.5 min, two stops 6 min, margin 30 min: latest wave
        // about 47.5 minutes before the deadline.
        check(48 * HOUR, 2 * HOUR, 30 * MINUTE, false);
        check(10 * HOUR, 20 * HOUR, 30 * MINUTE, true);
        check(3 * HOUR, 2 * HOUR, 30 * MINUTE, false);
        check(2 * HOUR + 40 * MINUTE, 2 * HOUR, 30 * MINUTE, true);
        check(2 * HOUR + 50 * MINUTE, 2 * HOUR, 30 * MINUTE, false);
        // No margin: only the ride and the stops count.
        check(2 * HOUR + 20 * MINUTE, 2 * HOUR, 0, false);
        check(2 * HOUR + 10 * MINUTE, 2 * HOUR, 0, true);
        // Already past its deadline: rush (late beats never).
        check(0, HOUR, 0, true);
    }

    #[test]
    fn latest_wave_counts_ride_stops_and_margin() {
        let travel = Travel::default();
        let ride = travel.leg_ms(factory(), customer());
        assert_eq!(
            latest_wave_ms(factory(), customer(), 10 * HOUR, &travel, 30 * MINUTE),
            10 * HOUR - ride - travel.handover_ms - travel.service_ms - 30 * MINUTE
        );
        // No overflow at the edges.
        assert_eq!(
            latest_wave_ms(factory(), customer(), Millis::MIN, &travel, HOUR),
            Millis::MIN
        );
    }

    #[test]
    fn rides_take_the_tables_time_and_the_rush_rule_uses_it() {
        use crate::plan::route::{Legs, Rides};
        use crate::plan::vrp::parse_osrm_table;
        // Three waypoints on a line, one-way slow between the last two.
        let table = r#"{"code":"Ok",
            "durations":[[0,100,200],[100,0,100],[200,900,0]],
            "sources":[{"location":[13.40,52.50]},{"location":[13.41,52.50]},{"location":[13.42,52.50]}]}"#;
        let roads =
            crate::plan::roads::Roads::from_table(&parse_osrm_table(table).expect("parses"))
                .expect("roads");
        let travel = Travel::default();
        let on_roads = Rides {
            roads: Some(&roads),
            travel,
        };
        let (a, c) = (Location::new(52.50, 13.40), Location::new(52.50, 13.42));
        // On waypoints: exactly the table, each way.
        assert_eq!(on_roads.leg_ms(a, c), 200_000);
        assert_eq!(on_roads.leg_ms(c, Location::new(52.50, 13.41)), 900_000);
        assert_eq!(on_roads.service_ms(), travel.service_ms);
        // The slow road makes an order rush that the great circle would let
        // wait: 1.36 km is about 7 minutes by air, 15 by the table.
        let b = Location::new(52.50, 13.41);
        let deadline = 3_600_000;
        let next_wave = deadline - 12 * 60_000 - 2 * travel.service_ms;
        assert!(!cannot_wait(c, b, deadline, next_wave, &travel, 0));
        assert!(cannot_wait(c, b, deadline, next_wave, &on_roads, 0));
    }

    proptest! {
        #[test]
        fn urgency_is_monotone(
            deadline in 0i64..(72 * HOUR),
            later in 0i64..(24 * HOUR),
            next_wave in 0i64..(72 * HOUR),
            margin in 0i64..(4 * HOUR),
            more in 0i64..(4 * HOUR),
            lat in 52.40f64..52.60,
            lon in 13.30f64..13.50,
        ) {
            let travel = Travel::default();
            let dropoff = Location::new(lat, lon);
            let rush = |deadline, margin| cannot_wait(factory(), dropoff, deadline, next_wave, &travel, margin);
            // A later deadline is never more urgent.
            if rush(deadline + later, margin) {
                prop_assert!(rush(deadline, margin));
            }
            // A bigger margin never makes an order less urgent.
            if rush(deadline, margin) {
                prop_assert!(rush(deadline, margin + more));
            }
            // Never rush when the latest wave is at or after the next wave.
            let latest = latest_wave_ms(factory(), dropoff, deadline, &travel, margin);
            prop_assert_eq!(rush(deadline, margin), latest < next_wave);
        }
    }
}
