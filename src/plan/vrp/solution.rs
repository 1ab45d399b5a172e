//! What the solver returns, and an independent checker that re-simulates a
//! set of routes against an `Instance`. Invariant: `check` shares no code with
//! the search (it walks the public model, not the solver's cached route data),
//! so a bug in the search's incremental feasibility shows up here.

use std::fmt;

use super::instance::{Instance, LOAD_DIMS, Load, RequestKind, Role, Stop};

/// Slack allowed when comparing times, for floating-point sums.
pub const TIME_EPSILON: f64 = 1.0e-6;

/// One stop on a route: which request, and which end of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Visit {
    pub request: usize,
    pub role: Role,
}

/// One vehicle's stops in visiting order (start and end locations excluded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePlan {
    pub vehicle: usize,
    pub visits: Vec<Visit>,
}

/// The solver's answer: used routes, requests left out, and their cost.
#[derive(Debug, Clone, PartialEq)]
pub struct Solution {
    /// Non-empty routes only, ordered by vehicle index.
    pub routes: Vec<RoutePlan>,
    /// Requests no route serves, ascending. The caller flags these orders.
    pub unserved: Vec<usize>,
    /// Sum of arc costs plus fixed costs of used vehicles.
    pub cost: f64,
    /// Sum of matrix distances over all routes.
    pub distance: f64,
    /// Number of non-empty routes.
    pub vehicles: usize,
    /// Search iterations done (for reports and tests).
    pub iterations: u64,
}

/// Times at one stop, in the matrix's time unit.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StopTime {
    pub arrival: f64,
    pub service_start: f64,
    pub departure: f64,
}

/// One route re-simulated: leaving the start at the shift's start and waiting
/// where a window is not yet open.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteReport {
    pub vehicle: usize,
    pub distance: f64,
    pub duration: f64,
    /// Arc costs plus the vehicle's fixed cost.
    pub cost: f64,
    pub departure: f64,
    /// Arrival at the end location (departure from the last stop for open routes).
    pub arrival: f64,
    pub stops: Vec<StopTime>,
}

/// A feasible set of routes, measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    pub routes: Vec<RouteReport>,
    pub distance: f64,
    pub cost: f64,
    /// Non-empty routes.
    pub vehicles: usize,
    /// Requests on no route, ascending.
    pub unserved: Vec<usize>,
}

/// Why a set of routes is not a solution of the instance.
#[derive(Debug, Clone, PartialEq)]
pub enum Violation {
    UnknownVehicle {
        route: usize,
        vehicle: usize,
    },
    VehicleUsedTwice {
        vehicle: usize,
    },
    UnknownRequest {
        route: usize,
        position: usize,
        request: usize,
    },
    /// The role does not exist for the request's kind.
    WrongRole {
        route: usize,
        position: usize,
        request: usize,
    },
    /// A stop is visited more than once.
    StopTwice {
        request: usize,
        role: Role,
    },
    /// A shipment's stops are not both on the same route.
    PairSplit {
        request: usize,
    },
    DeliveryBeforePickup {
        route: usize,
        request: usize,
    },
    /// A request bound to one vehicle is on another's route.
    WrongVehicle {
        route: usize,
        request: usize,
        bound: usize,
    },
    OverCapacity {
        route: usize,
        /// 0 is the start; 1.. are stops.
        position: usize,
        dimension: usize,
        load: i64,
        capacity: i64,
    },
    /// Service starts after the window closes.
    Late {
        route: usize,
        position: usize,
        service_start: f64,
        latest: f64,
    },
    /// The vehicle reaches its end after the shift ends.
    LateAtEnd {
        route: usize,
        arrival: f64,
        latest: f64,
    },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Violation::UnknownVehicle { route, vehicle } => {
                write!(f, "route {route}: no vehicle {vehicle}")
            }
            Violation::VehicleUsedTwice { vehicle } => {
                write!(f, "vehicle {vehicle} drives more than one route")
            }
            Violation::UnknownRequest {
                route,
                position,
                request,
            } => write!(f, "route {route} stop {position}: no request {request}"),
            Violation::WrongRole {
                route,
                position,
                request,
            } => write!(
                f,
                "route {route} stop {position}: request {request} has no such stop"
            ),
            Violation::StopTwice { request, role } => {
                write!(f, "request {request}: {role:?} stop visited twice")
            }
            Violation::PairSplit { request } => {
                write!(f, "request {request}: pickup and delivery not on one route")
            }
            Violation::DeliveryBeforePickup { route, request } => {
                write!(
                    f,
                    "route {route}: request {request} delivered before pickup"
                )
            }
            Violation::WrongVehicle {
                route,
                request,
                bound,
            } => write!(
                f,
                "route {route}: request {request} is bound to vehicle {bound}"
            ),
            Violation::OverCapacity {
                route,
                position,
                dimension,
                load,
                capacity,
            } => write!(
                f,
                "route {route} after stop {position}: load {load} > capacity {capacity} (dimension {dimension})"
            ),
            Violation::Late {
                route,
                position,
                service_start,
                latest,
            } => write!(
                f,
                "route {route} stop {position}: service starts at {service_start} > {latest}"
            ),
            Violation::LateAtEnd {
                route,
                arrival,
                latest,
            } => write!(f, "route {route}: back at {arrival} > shift end {latest}"),
        }
    }
}

fn stop_of(instance: &Instance, visit: Visit) -> Option<Stop> {
    let request = instance.requests.get(visit.request)?;
    match (&request.kind, visit.role) {
        (RequestKind::Delivery { stop }, Role::Single) => Some(*stop),
        (RequestKind::Pickup { stop }, Role::Single) => Some(*stop),
        (RequestKind::Shipment { pickup, .. }, Role::Pickup) => Some(*pickup),
        (RequestKind::Shipment { delivery, .. }, Role::Delivery) => Some(*delivery),
        _ => None,
    }
}

/// Re-simulates `routes` on `instance`: each vehicle at most once, each stop at
/// most once, shipments whole and pickup first, loads within capacity in every
/// dimension at every point, service starting inside every window, and every
/// vehicle back by the end of its shift. Requests on no route are reported as
/// unserved (not a violation). Empty routes are allowed and cost nothing.
pub fn check(instance: &Instance, routes: &[RoutePlan]) -> Result<Evaluation, Violation> {
    let request_count = instance.requests.len();
    let mut vehicle_used = vec![false; instance.vehicles.len()];
    // Per request: route of its pickup/single stop and of its delivery stop.
    let mut seen: Vec<[Option<usize>; 2]> = vec![[None, None]; request_count];
    let mut reports = Vec::with_capacity(routes.len());
    let mut total_distance = 0.0;
    let mut total_cost = 0.0;
    let mut used = 0;
    for (route_index, route) in routes.iter().enumerate() {
        let Some(vehicle) = instance.vehicles.get(route.vehicle) else {
            return Err(Violation::UnknownVehicle {
                route: route_index,
                vehicle: route.vehicle,
            });
        };
        if std::mem::replace(&mut vehicle_used[route.vehicle], true) {
            return Err(Violation::VehicleUsedTwice {
                vehicle: route.vehicle,
            });
        }
        let mut stops = Vec::with_capacity(route.visits.len());
        for (position, &visit) in route.visits.iter().enumerate() {
            let Some(stop) = stop_of(instance, visit) else {
                return Err(if visit.request >= request_count {
                    Violation::UnknownRequest {
                        route: route_index,
                        position: position + 1,
                        request: visit.request,
                    }
                } else {
                    Violation::WrongRole {
                        route: route_index,
                        position: position + 1,
                        request: visit.request,
                    }
                });
            };
            if let Some(bound) = instance.bound_vehicle(visit.request)
                && bound != route.vehicle
            {
                return Err(Violation::WrongVehicle {
                    route: route_index,
                    request: visit.request,
                    bound,
                });
            }
            let slot = usize::from(visit.role == Role::Delivery);
            if seen[visit.request][slot].is_some() {
                return Err(Violation::StopTwice {
                    request: visit.request,
                    role: visit.role,
                });
            }
            if visit.role == Role::Delivery && seen[visit.request][0] != Some(route_index) {
                return Err(if seen[visit.request][0].is_none() {
                    Violation::DeliveryBeforePickup {
                        route: route_index,
                        request: visit.request,
                    }
                } else {
                    Violation::PairSplit {
                        request: visit.request,
                    }
                });
            }
            seen[visit.request][slot] = Some(route_index);
            stops.push(stop);
        }
        if route.visits.is_empty() {
            reports.push(RouteReport {
                vehicle: route.vehicle,
                distance: 0.0,
                duration: 0.0,
                cost: 0.0,
                departure: vehicle.shift.start,
                arrival: vehicle.shift.start,
                stops: Vec::new(),
            });
            continue;
        }
        // Loads: deliveries are on board from the start.
        let mut load: Load = [0; LOAD_DIMS];
        for visit in &route.visits {
            let request = &instance.requests[visit.request];
            if matches!(request.kind, RequestKind::Delivery { .. }) {
                for (dimension, value) in load.iter_mut().enumerate() {
                    *value += request.amount[dimension];
                }
            }
        }
        let over = |load: &Load, position: usize| -> Result<(), Violation> {
            for (dimension, (&load, &capacity)) in load.iter().zip(&vehicle.capacity).enumerate() {
                if load > capacity {
                    return Err(Violation::OverCapacity {
                        route: route_index,
                        position,
                        dimension,
                        load,
                        capacity,
                    });
                }
            }
            Ok(())
        };
        over(&load, 0)?;
        let matrix = &instance.matrix;
        let mut distance = 0.0;
        let mut duration = 0.0;
        let mut time = vehicle.shift.start;
        let mut at = vehicle.start_location;
        let mut times = Vec::with_capacity(stops.len());
        for (position, (visit, stop)) in route.visits.iter().zip(&stops).enumerate() {
            let request = &instance.requests[visit.request];
            let sign = match (&request.kind, visit.role) {
                (RequestKind::Delivery { .. }, _) | (_, Role::Delivery) => -1,
                _ => 1,
            };
            for (dimension, value) in load.iter_mut().enumerate() {
                *value += sign * request.amount[dimension];
            }
            over(&load, position + 1)?;
            distance += matrix.distance(at, stop.location);
            duration += matrix.duration(at, stop.location);
            let arrival = time + matrix.duration(at, stop.location);
            let service_start = arrival.max(stop.window.start);
            if service_start > stop.window.end + TIME_EPSILON {
                return Err(Violation::Late {
                    route: route_index,
                    position: position + 1,
                    service_start,
                    latest: stop.window.end,
                });
            }
            time = service_start + stop.service;
            times.push(StopTime {
                arrival,
                service_start,
                departure: time,
            });
            at = stop.location;
        }
        if let Some(end) = vehicle.end_location {
            distance += matrix.distance(at, end);
            duration += matrix.duration(at, end);
            time += matrix.duration(at, end);
        }
        if time > vehicle.shift.end + TIME_EPSILON {
            return Err(Violation::LateAtEnd {
                route: route_index,
                arrival: time,
                latest: vehicle.shift.end,
            });
        }
        let arc_cost = instance.arc_cost;
        let cost = arc_cost.per_distance * distance
            + arc_cost.per_duration * duration
            + vehicle.fixed_cost;
        total_distance += distance;
        total_cost += cost;
        used += 1;
        reports.push(RouteReport {
            vehicle: route.vehicle,
            distance,
            duration,
            cost,
            departure: vehicle.shift.start,
            arrival: time,
            stops: times,
        });
    }
    let mut unserved = Vec::new();
    for (request, slots) in seen.iter().enumerate() {
        let shipment = matches!(
            instance.requests[request].kind,
            RequestKind::Shipment { .. }
        );
        match (slots[0], slots[1], shipment) {
            (None, None, _) => unserved.push(request),
            (Some(_), None, true) => return Err(Violation::PairSplit { request }),
            _ => {}
        }
    }
    Ok(Evaluation {
        routes: reports,
        distance: total_distance,
        cost: total_cost,
        vehicles: used,
        unserved,
    })
}
