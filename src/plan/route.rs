//! Courier routing for a planning wave: orders (deliveries from a factory
//! to a customer, and returns from a customer to a factory, each a pickup
//! and a drop-off) are shared out earliest deadline first, up to each courier's capacity, and each courier's stops are
//! put in nearest-neighbour order (a real router comes later).
//!
//! Invariants (property-tested): each order is on at most one route, once as a
//! pickup and once as a drop-off, the pickup first; no route carries more
//! orders than its courier's capacity; arrival times never go backwards.

use crate::domain::{CourierId, HandoffKind, Location, Millis, OrderId};

#[derive(Debug, Clone, PartialEq)]
pub struct CourierSlot {
    pub id: CourierId,
    pub start: Location,
    /// Orders one route can carry.
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
    pub eta_ms: Millis,
}

#[derive(Debug, Clone, PartialEq)]
pub struct RoutePlan {
    pub courier: CourierId,
    pub stops: Vec<RouteStop>,
}

/// Travel assumptions for a wave.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Travel {
    pub speed_m_per_s: f64,
    pub service_ms: Millis,
}

impl Default for Travel {
    fn default() -> Self {
        // A cargo bike in town: about 15 km/h, three minutes a stop.
        Self {
            speed_m_per_s: 4.2,
            service_ms: 180_000,
        }
    }
}

pub fn plan_routes(
    couriers: &[CourierSlot],
    orders: &[RouteOrder],
    now_ms: Millis,
    travel: Travel,
) -> Vec<RoutePlan> {
    let mut queue: Vec<&RouteOrder> = orders.iter().collect();
    queue.sort_by(|a, b| {
        a.deadline_ms
            .cmp(&b.deadline_ms)
            .then_with(|| a.order.cmp(&b.order))
            .then_with(|| a.return_id.cmp(&b.return_id))
    });
    let mut queue = queue.into_iter();
    let mut plans = Vec::new();
    for courier in couriers.iter().filter(|courier| courier.capacity > 0) {
        let load: Vec<&RouteOrder> = queue.by_ref().take(courier.capacity).collect();
        if load.is_empty() {
            break;
        }
        plans.push(RoutePlan {
            courier: courier.id.clone(),
            stops: nearest_neighbour(courier.start, &load, now_ms, travel),
        });
    }
    plans
}

fn nearest_neighbour(
    start: Location,
    load: &[&RouteOrder],
    now_ms: Millis,
    travel: Travel,
) -> Vec<RouteStop> {
    // For each order: None = still to pick up, Some(false) = on board, Some(true) = delivered.
    let mut delivered: Vec<Option<bool>> = vec![None; load.len()];
    let mut here = start;
    let mut clock = now_ms;
    let mut stops = Vec::with_capacity(load.len() * 2);
    loop {
        let next = load
            .iter()
            .enumerate()
            .filter_map(|(index, order)| match delivered[index] {
                None => Some((index, HandoffKind::Pickup, order.pickup)),
                Some(false) => Some((index, HandoffKind::Dropoff, order.dropoff)),
                Some(true) => None,
            })
            .min_by(|a, b| {
                here.distance_m(a.2)
                    .total_cmp(&here.distance_m(b.2))
                    .then(a.0.cmp(&b.0))
            });
        let Some((index, kind, location)) = next else {
            break;
        };
        let travel_ms = (here.distance_m(location) / travel.speed_m_per_s * 1000.0) as Millis;
        clock += travel_ms + travel.service_ms;
        delivered[index] = Some(kind == HandoffKind::Dropoff);
        stops.push(RouteStop {
            order: load[index].order.clone(),
            return_id: load[index].return_id.clone(),
            kind,
            location,
            eta_ms: clock,
        });
        here = location;
    }
    stops
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

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
            capacity,
        }
    }

    #[test]
    fn nearest_stop_next_and_pickup_before_dropoff() {
        let orders = [
            order("far", (52.50, 13.41), (52.60, 13.40), 10),
            order("near", (52.50, 13.41), (52.51, 13.41), 20),
        ];
        let plans = plan_routes(&[courier("c", 5)], &orders, 0, Travel::default());
        let stops: Vec<(&str, HandoffKind)> = plans[0]
            .stops
            .iter()
            .map(|s| (s.order.as_str(), s.kind))
            .collect();
        assert_eq!(
            stops,
            vec![
                ("far", HandoffKind::Pickup),
                ("near", HandoffKind::Pickup),
                ("near", HandoffKind::Dropoff),
                ("far", HandoffKind::Dropoff),
            ]
        );
        // About 680 m at 4.2 m/s plus three minutes of service.
        assert!(
            (340_000..360_000).contains(&plans[0].stops[0].eta_ms),
            "{}",
            plans[0].stops[0].eta_ms
        );
    }

    #[test]
    fn earliest_deadlines_fill_the_first_courier() {
        let orders = [
            order("late", (52.5, 13.4), (52.5, 13.4), 300),
            order("early", (52.5, 13.4), (52.5, 13.4), 100),
            order("mid", (52.5, 13.4), (52.5, 13.4), 200),
        ];
        let plans = plan_routes(
            &[courier("a", 2), courier("b", 2), courier("c", 2)],
            &orders,
            0,
            Travel::default(),
        );
        assert_eq!(plans.len(), 2, "an idle courier gets no route");
        let on = |plan: &RoutePlan| -> Vec<String> {
            let mut ids: Vec<String> = plan.stops.iter().map(|s| s.order.0.clone()).collect();
            ids.dedup();
            ids.sort();
            ids
        };
        assert_eq!(on(&plans[0]), vec!["early", "mid"]);
        assert_eq!(on(&plans[1]), vec!["late"]);
    }

    proptest! {
        #[test]
        fn routes_are_well_formed(
            points in prop::collection::vec((52.4f64..52.6, 13.3f64..13.5, 52.4f64..52.6, 13.3f64..13.5, 0i64..1000), 0..30),
            capacities in prop::collection::vec(0usize..6, 1..5),
        ) {
            let orders: Vec<RouteOrder> = points.iter().enumerate()
                .map(|(i, (a, b, c, d, due))| order(&format!("o{i}"), (*a, *b), (*c, *d), *due))
                .collect();
            let couriers: Vec<CourierSlot> = capacities.iter().enumerate()
                .map(|(i, cap)| courier(&format!("c{i}"), *cap))
                .collect();
            let plans = plan_routes(&couriers, &orders, 1_000, Travel::default());
            let mut seen: HashMap<OrderId, (usize, Vec<HandoffKind>)> = HashMap::new();
            for (route, plan) in plans.iter().enumerate() {
                let capacity = couriers.iter().find(|c| c.id == plan.courier).map_or(0, |c| c.capacity);
                let mut last = 1_000;
                for stop in &plan.stops {
                    prop_assert!(stop.eta_ms >= last);
                    last = stop.eta_ms;
                    let entry = seen.entry(stop.order.clone()).or_insert_with(|| (route, Vec::new()));
                    prop_assert_eq!(entry.0, route, "order on two routes");
                    entry.1.push(stop.kind);
                }
                prop_assert!(plan.stops.len() <= capacity * 2);
            }
            for (_, kinds) in seen.values() {
                prop_assert_eq!(kinds, &vec![HandoffKind::Pickup, HandoffKind::Dropoff]);
            }
            let total: usize = capacities.iter().sum();
            prop_assert_eq!(seen.len(), orders.len().min(total));
        }
    }
}
