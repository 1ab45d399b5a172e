//! Courier routing for a planning wave, on the PDPTW engine of [`super::vrp`].
//!
//! Every order to move (a delivery from its factory to the customer, or a
//! return from the customer to a factory) is a pickup-and-drop-off pair carried
//! by one courier, pickup first, and its deadline (the 48-hour promise, or the
//! return's pickup deadline) is a hard time window on both stops. A courier
//! starts where and when its earlier stops leave it, and carries at most its
//! capacity of parcels at once. Travel is the great-circle distance times a
//! detour factor at a configured speed, plus a service time per stop.
//!
//! Two passes: the first keeps every deadline hard. Orders it cannot fit are
//! *at risk*: no courier of the wave reaches them in time. The second pass
//! plans them anyway with their deadline lifted (late beats never), while the
//! others keep theirs. Orders no courier can take at all (no capacity) stay
//! unrouted for the next wave.
//!
//! Invariants (property-tested): each order is on at most one route, once as a
//! pickup and once as a drop-off, the pickup first; no courier ever carries
//! more than its capacity; arrival times never go backwards and never start
//! before the courier is free; an order not at risk arrives by its deadline.

use super::vrp::{
    ArcCost, Instance, Matrix, ModelError, Objective, Request, RequestKind, Role, SolveOptions,
    Stop, TimeWindow, Vehicle, check, solve,
};
use crate::domain::{CourierId, HandoffKind, Location, Millis, OrderId};

/// A courier as a wave sees it: free from `available_ms` at `start`.
#[derive(Debug, Clone, PartialEq)]
pub struct CourierSlot {
    pub id: CourierId,
    /// Where the courier is when it is free: its depot, or its last planned stop.
    pub start: Location,
    /// When it is free (its last planned stop done), never before the wave.
    pub available_ms: Millis,
    /// Parcels it carries at once.
    pub capacity: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteOrder {
    pub order: OrderId,
    /// The return this pickup-and-drop-off moves (None: the order's delivery).
    pub return_id: Option<String>,
    pub pickup: Location,
    pub dropoff: Location,
    pub deadline_ms: Millis,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RouteStop {
    pub order: OrderId,
    pub return_id: Option<String>,
    pub kind: HandoffKind,
    pub location: Location,
    /// When the courier arrives (or starts service, if it waits).
    pub eta_ms: Millis,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RoutePlan {
    pub courier: CourierId,
    pub stops: Vec<RouteStop>,
}

/// A wave's answer.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WavePlan {
    pub routes: Vec<RoutePlan>,
    /// Indices into the orders no courier could deliver by their deadline
    /// (routed late, or not routed at all).
    pub at_risk: Vec<usize>,
    /// Indices into the orders left for a later wave (no courier could take them).
    pub unrouted: Vec<usize>,
}

/// Travel assumptions for a wave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Travel {
    pub speed_m_per_s: f64,
    pub service_ms: Millis,
    /// Roads are longer than the crow flies: great-circle distance times this.
    pub detour_factor: f64,
}

impl Default for Travel {
    fn default() -> Self {
        // A cargo bike in town: about 15 km/h, three minutes a stop.
        Self {
            speed_m_per_s: 4.2,
            service_ms: 180_000,
            detour_factor: 1.3,
        }
    }
}

impl Travel {
    /// Door to door, in milliseconds: the detoured great-circle distance at speed.
    pub fn leg_ms(&self, from: Location, to: Location) -> Millis {
        (from.distance_m(to) * self.detour_factor / self.speed_m_per_s * 1000.0) as Millis
    }
}

/// Search settings for a wave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WaveSearch {
    pub objective: Objective,
    pub seed: u64,
    /// A deterministic cap on ruin-and-recreate iterations per pass.
    pub max_iterations: u64,
}

impl Default for WaveSearch {
    fn default() -> Self {
        WaveSearch {
            objective: Objective::Distance,
            seed: 1,
            max_iterations: 20_000,
        }
    }
}

/// How far past the wave a lifted deadline reaches (a week).
const HORIZON_S: f64 = 7.0 * 24.0 * 3600.0;

/// Plans one wave. `progress` returns the share of the time budget used
/// (see [`super::vrp::solve`]); the caller reads the clock. Errors only on
/// travel settings or locations the model refuses (not a latitude/longitude,
/// a speed of 0).
pub fn plan_routes(
    couriers: &[CourierSlot],
    orders: &[RouteOrder],
    now_ms: Millis,
    travel: Travel,
    search: WaveSearch,
    progress: &mut dyn FnMut() -> f64,
) -> Result<WavePlan, ModelError> {
    if orders.is_empty() {
        return Ok(WavePlan::default());
    }
    let couriers: Vec<&CourierSlot> = couriers.iter().filter(|c| c.capacity > 0).collect();
    if couriers.is_empty() {
        return Ok(WavePlan {
            routes: Vec::new(),
            at_risk: (0..orders.len()).collect(),
            unrouted: (0..orders.len()).collect(),
        });
    }
    // Locations: couriers' starts, then each order's pickup and drop-off.
    let mut points: Vec<(f64, f64)> = couriers
        .iter()
        .map(|c| (c.start.lat, c.start.lon))
        .collect();
    for order in orders {
        points.push((order.pickup.lat, order.pickup.lon));
        points.push((order.dropoff.lat, order.dropoff.lon));
    }
    let matrix = Matrix::haversine(&points, travel.speed_m_per_s, travel.detour_factor)?;
    let seconds = |ms: Millis| (ms - now_ms) as f64 / 1000.0;
    let service = travel.service_ms.max(0) as f64 / 1000.0;
    let vehicles: Vec<Vehicle> = couriers
        .iter()
        .enumerate()
        .map(|(index, courier)| Vehicle {
            start_location: index,
            end_location: None,
            shift: TimeWindow::new(seconds(courier.available_ms.max(now_ms)), HORIZON_S * 2.0),
            capacity: [i64::try_from(courier.capacity).unwrap_or(i64::MAX), 0],
            fixed_cost: 0.0,
        })
        .collect();
    let requests = |lifted: &[bool]| -> Vec<Request> {
        orders
            .iter()
            .enumerate()
            .map(|(index, order)| {
                let end = if lifted[index] {
                    HORIZON_S
                } else {
                    seconds(order.deadline_ms).clamp(0.0, HORIZON_S)
                };
                let window = TimeWindow::new(0.0, end);
                let base = couriers.len() + 2 * index;
                Request {
                    kind: RequestKind::Shipment {
                        pickup: Stop {
                            location: base,
                            service,
                            window,
                        },
                        delivery: Stop {
                            location: base + 1,
                            service,
                            window,
                        },
                    },
                    amount: [1, 0],
                }
            })
            .collect()
    };
    let options = SolveOptions {
        objective: search.objective,
        seed: search.seed,
        max_iterations: search.max_iterations,
        ..SolveOptions::default()
    };
    // First pass: every deadline hard, half the budget.
    let mut lifted = vec![false; orders.len()];
    let strict = Instance::new(
        matrix.clone(),
        requests(&lifted),
        vehicles.clone(),
        ArcCost::default(),
    )?;
    let mut first_half = || progress() * 2.0;
    let mut solution = solve(&strict, &options, &mut first_half);
    let mut instance = strict;
    let at_risk = solution.unserved.clone();
    if !at_risk.is_empty() {
        for &index in &at_risk {
            lifted[index] = true;
        }
        let relaxed = Instance::new(matrix, requests(&lifted), vehicles, ArcCost::default())?;
        let mut second_half = || (progress() - 0.5) * 2.0;
        let late_too = solve(&relaxed, &options, &mut second_half);
        // Keep the second pass only if it lost none of the orders the first
        // one delivered in time.
        if late_too.unserved.iter().all(|index| lifted[*index]) {
            solution = late_too;
            instance = relaxed;
        }
    }
    let evaluation = check(&instance, &solution.routes)
        .map_err(|violation| ModelError::new(format!("the router broke a rule: {violation:?}")))?;
    let mut routes = Vec::with_capacity(solution.routes.len());
    for (route, report) in solution.routes.iter().zip(&evaluation.routes) {
        let stops = route
            .visits
            .iter()
            .zip(&report.stops)
            .map(|(visit, time)| {
                let order = &orders[visit.request];
                let (kind, location) = match visit.role {
                    Role::Delivery => (HandoffKind::Dropoff, order.dropoff),
                    Role::Pickup | Role::Single => (HandoffKind::Pickup, order.pickup),
                };
                RouteStop {
                    order: order.order.clone(),
                    return_id: order.return_id.clone(),
                    kind,
                    location,
                    eta_ms: now_ms + (time.service_start * 1000.0).round() as Millis,
                }
            })
            .collect();
        routes.push(RoutePlan {
            courier: couriers[route.vehicle].id.clone(),
            stops,
        });
    }
    Ok(WavePlan {
        routes,
        at_risk,
        unrouted: solution.unserved,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    const HOUR: Millis = 3_600_000;

    fn order(id: &str, pickup: (f64, f64), dropoff: (f64, f64), deadline_ms: Millis) -> RouteOrder {
        RouteOrder {
            order: OrderId::new(id),
            return_id: None,
            pickup: Location::new(pickup.0, pickup.1),
            dropoff: Location::new(dropoff.0, dropoff.1),
            deadline_ms,
        }
    }

    fn courier(id: &str, capacity: usize) -> CourierSlot {
        CourierSlot {
            id: CourierId::new(id),
            start: Location::new(52.50, 13.40),
            available_ms: 0,
            capacity,
        }
    }

    fn plan(couriers: &[CourierSlot], orders: &[RouteOrder], now: Millis) -> WavePlan {
        let search = WaveSearch {
            max_iterations: 2_000,
            ..WaveSearch::default()
        };
        plan_routes(
            couriers,
            orders,
            now,
            Travel::default(),
            search,
            &mut || 0.0,
        )
        .expect("valid model")
    }

    fn sequence(plan: &RoutePlan) -> Vec<(&str, HandoffKind)> {
        plan.stops
            .iter()
            .map(|s| (s.order.as_str(), s.kind))
            .collect()
    }

    #[test]
    fn nearby_drop_off_on_the_way_out_and_times_from_travel() {
        // The near customer lies on the way to the far one: picking both up
        // and dropping the near one first is the shortest route.
        let orders = [
            order("far", (52.50, 13.41), (52.60, 13.41), 10 * HOUR),
            order("near", (52.50, 13.41), (52.53, 13.41), 10 * HOUR),
        ];
        let plans = plan(&[courier("c", 5)], &orders, 0);
        assert!(plans.at_risk.is_empty() && plans.unrouted.is_empty());
        let stops = sequence(&plans.routes[0]);
        assert_eq!(stops.len(), 4);
        assert!(
            stops[..2].iter().all(|s| s.1 == HandoffKind::Pickup),
            "{stops:?}"
        );
        assert_eq!(
            stops[2..],
            [
                ("near", HandoffKind::Dropoff),
                ("far", HandoffKind::Dropoff)
            ]
        );
        // About 680 m times 1.3 at 4.2 m/s to the factory.
        let first = plans.routes[0].stops[0].eta_ms;
        assert!((200_000..220_000).contains(&first), "{first}");
        // Each later stop comes after the service time of the one before.
        for pair in plans.routes[0].stops.windows(2) {
            assert!(pair[1].eta_ms >= pair[0].eta_ms + 180_000);
        }
    }

    #[test]
    fn capacity_counts_parcels_on_board_at_once() {
        // Three parcels for a courier carrying two: it comes back for the third.
        let orders = [
            order("a", (52.50, 13.41), (52.52, 13.41), 10 * HOUR),
            order("b", (52.50, 13.41), (52.52, 13.42), 10 * HOUR),
            order("c", (52.50, 13.41), (52.52, 13.43), 10 * HOUR),
        ];
        let plans = plan(&[courier("c", 2)], &orders, 0);
        assert!(plans.unrouted.is_empty(), "{plans:?}");
        let mut on_board = 0i32;
        for stop in &plans.routes[0].stops {
            on_board += if stop.kind == HandoffKind::Pickup {
                1
            } else {
                -1
            };
            assert!(on_board <= 2, "{:?}", sequence(&plans.routes[0]));
        }
    }

    #[test]
    fn an_order_no_courier_reaches_in_time_is_at_risk_and_still_routed() {
        // 20 km away with 30 minutes left: a cargo bike needs about two hours.
        let orders = [
            order("doomed", (52.50, 13.41), (52.68, 13.41), HOUR / 2),
            order("fine", (52.50, 13.41), (52.51, 13.41), 10 * HOUR),
        ];
        let plans = plan(&[courier("c", 5)], &orders, 0);
        assert_eq!(plans.at_risk, vec![0]);
        assert!(plans.unrouted.is_empty());
        let fine = plans.routes[0]
            .stops
            .iter()
            .find(|s| s.order.as_str() == "fine" && s.kind == HandoffKind::Dropoff)
            .expect("fine is routed");
        assert!(fine.eta_ms <= 10 * HOUR);
        assert!(
            plans.routes[0]
                .stops
                .iter()
                .any(|s| s.order.as_str() == "doomed")
        );
    }

    #[test]
    fn a_busy_courier_starts_where_and_when_its_last_stop_leaves_it() {
        let mut busy = courier("busy", 5);
        busy.available_ms = 2 * HOUR;
        let orders = [order("o", (52.50, 13.41), (52.51, 13.41), 10 * HOUR)];
        let plans = plan(&[busy], &orders, 0);
        assert!(plans.routes[0].stops[0].eta_ms >= 2 * HOUR);
    }

    #[test]
    fn without_couriers_every_order_waits_and_is_at_risk() {
        let orders = [order("o", (52.50, 13.41), (52.51, 13.41), 10 * HOUR)];
        let plans = plan(&[courier("off", 0)], &orders, 0);
        assert_eq!(plans.unrouted, vec![0]);
        assert_eq!(plans.at_risk, vec![0]);
        assert!(plans.routes.is_empty());
    }

    #[test]
    fn bad_travel_settings_are_refused() {
        let orders = [order("o", (52.50, 13.41), (52.51, 13.41), 10 * HOUR)];
        let travel = Travel {
            speed_m_per_s: 0.0,
            ..Travel::default()
        };
        let result = plan_routes(
            &[courier("c", 1)],
            &orders,
            0,
            travel,
            WaveSearch::default(),
            &mut || 1.0,
        );
        assert!(result.is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn routes_are_well_formed(
            points in prop::collection::vec((52.4f64..52.6, 13.3f64..13.5, 52.4f64..52.6, 13.3f64..13.5, 0i64..(20 * HOUR)), 0..25),
            couriers in prop::collection::vec((0usize..4, 0i64..HOUR), 1..4),
        ) {
            let now = 1_000;
            let orders: Vec<RouteOrder> = points.iter().enumerate()
                .map(|(i, (a, b, c, d, due))| order(&format!("o{i}"), (*a, *b), (*c, *d), now + *due))
                .collect();
            let slots: Vec<CourierSlot> = couriers.iter().enumerate()
                .map(|(i, (cap, free))| CourierSlot { available_ms: now + *free, ..courier(&format!("c{i}"), *cap) })
                .collect();
            let search = WaveSearch { max_iterations: 200, ..WaveSearch::default() };
            let plans = plan_routes(&slots, &orders, now, Travel::default(), search, &mut || 0.0)
                .expect("valid model");
            let mut seen: HashMap<OrderId, (usize, Vec<HandoffKind>)> = HashMap::new();
            for (route, plan) in plans.routes.iter().enumerate() {
                let slot = slots.iter().find(|c| c.id == plan.courier).expect("known courier");
                let mut last = slot.available_ms;
                let mut on_board = 0usize;
                for stop in &plan.stops {
                    prop_assert!(stop.eta_ms >= last);
                    last = stop.eta_ms;
                    if stop.kind == HandoffKind::Pickup { on_board += 1 } else { on_board -= 1 }
                    prop_assert!(on_board <= slot.capacity);
                    let entry = seen.entry(stop.order.clone()).or_insert_with(|| (route, Vec::new()));
                    prop_assert_eq!(entry.0, route, "order on two routes");
                    entry.1.push(stop.kind);
                    let index: usize = stop.order.as_str()[1..].parse().expect("index");
                    if stop.kind == HandoffKind::Dropoff && !plans.at_risk.contains(&index) {
                        prop_assert!(stop.eta_ms <= orders[index].deadline_ms.max(now) + 1);
                    }
                }
            }
            for (_, kinds) in seen.values() {
                prop_assert_eq!(kinds, &vec![HandoffKind::Pickup, HandoffKind::Dropoff]);
            }
            prop_assert_eq!(seen.len() + plans.unrouted.len(), orders.len());
            for index in &plans.unrouted {
                prop_assert!(plans.at_risk.contains(index));
            }
        }
    }
}
