//! Insertion heuristics: the cheapest feasible place for a request over all
//! routes, greedy re-insertion in a given order (the "recreate" step of the
//! search) and regret-2 construction of a first solution. Invariant: they
//! only ever make feasible insertions; a request with no feasible place stays
//! unassigned.

use super::instance::Instance;
use super::rng::Rng;
use super::route::{Insertion, Working};

/// How insertions are priced and which routes may be opened.
#[derive(Debug, Clone, Copy)]
pub(crate) struct InsertRules {
    /// May an empty vehicle be given its first stop?
    pub allow_new_routes: bool,
    /// Extra cost of opening a route, on top of the vehicle's fixed cost
    /// (large under the vehicles-first objective).
    pub route_penalty: f64,
    /// Probability of skipping a candidate position (SISR's blinks).
    pub blink_rate: f64,
}

/// Cheapest feasible insertion of `request` over all routes. Among empty
/// routes, only the first vehicle of each class is tried (the others would
/// give the same answer).
pub(crate) fn best_insertion(
    instance: &Instance,
    working: &Working,
    request: usize,
    rules: &InsertRules,
    rng: &mut Rng,
    tried_classes: &mut Vec<usize>,
) -> Option<Insertion> {
    let stops = &instance.request_nodes[request];
    tried_classes.clear();
    let mut best: Option<Insertion> = None;
    let blink = rules.blink_rate;
    let mut skip = || blink > 0.0 && rng.chance(blink);
    for (index, route) in working.routes.iter().enumerate() {
        let opening = if route.is_empty() {
            if !rules.allow_new_routes {
                continue;
            }
            let class = instance.vehicle_class[index];
            if tried_classes.contains(&class) {
                continue;
            }
            tried_classes.push(class);
            instance.vehicles[index].fixed_cost + rules.route_penalty
        } else {
            0.0
        };
        let limit = best.map_or(f64::INFINITY, |best| best.delta - opening);
        let found = match **stops {
            [single] => route.best_single(instance, single, index, limit, &mut skip),
            [first, second] => route.best_pair(instance, first, second, index, limit, &mut skip),
            _ => None,
        };
        if let Some(mut insertion) = found {
            insertion.delta += opening;
            if best.is_none_or(|best| insertion.delta < best.delta) {
                best = Some(insertion);
            }
        }
    }
    best
}

/// Inserts `order`'s requests one by one at their cheapest place; those with
/// none go back to `working.unassigned`.
pub(crate) fn recreate(
    instance: &Instance,
    working: &mut Working,
    order: &[usize],
    rules: &InsertRules,
    rng: &mut Rng,
    tried_classes: &mut Vec<usize>,
) {
    for &request in order {
        match best_insertion(instance, working, request, rules, rng, tried_classes) {
            Some(insertion) => working.insert(instance, request, &insertion),
            None => working.unassigned.push(request),
        }
    }
}

/// Regret-2 construction: repeatedly inserts the request whose best place
/// beats its second best (in another route) by the most, so that requests
/// with few good options go first.
pub(crate) fn regret_construct(instance: &Instance, rules: &InsertRules) -> Working {
    let mut working = Working::empty(instance);
    working.unassigned.clear();
    let vehicle_count = instance.vehicles.len();
    let mut pending: Vec<usize> = (0..instance.requests.len()).collect();
    // cache[request * vehicles + vehicle]: best insertion into that route.
    let mut cache: Vec<Option<Insertion>> = vec![None; instance.requests.len() * vehicle_count];
    let mut no_blink = || false;
    let evaluate =
        |working: &Working, request: usize, vehicle: usize, skip: &mut dyn FnMut() -> bool| {
            let route = &working.routes[vehicle];
            let stops = &instance.request_nodes[request];
            let found = match **stops {
                [single] => route.best_single(instance, single, vehicle, f64::INFINITY, skip),
                [first, second] => {
                    route.best_pair(instance, first, second, vehicle, f64::INFINITY, skip)
                }
                _ => None,
            };
            found.map(|mut insertion| {
                if route.is_empty() {
                    insertion.delta += instance.vehicles[vehicle].fixed_cost + rules.route_penalty;
                }
                insertion
            })
        };
    for &request in &pending {
        for vehicle in 0..vehicle_count {
            cache[request * vehicle_count + vehicle] =
                evaluate(&working, request, vehicle, &mut no_blink);
        }
    }
    let mut classes_seen: Vec<usize> = Vec::new();
    while !pending.is_empty() {
        // (index in pending, regret, best)
        let mut chosen: Option<(usize, f64, Insertion)> = None;
        let mut hopeless = Vec::new();
        for (slot, &request) in pending.iter().enumerate() {
            let mut first: Option<Insertion> = None;
            let mut second = f64::INFINITY;
            classes_seen.clear();
            for vehicle in 0..vehicle_count {
                if working.routes[vehicle].is_empty() {
                    if !rules.allow_new_routes {
                        continue;
                    }
                    let class = instance.vehicle_class[vehicle];
                    if classes_seen.contains(&class) {
                        continue;
                    }
                    classes_seen.push(class);
                }
                if let Some(insertion) = cache[request * vehicle_count + vehicle] {
                    match first {
                        Some(best) if insertion.delta >= best.delta => {
                            second = second.min(insertion.delta);
                        }
                        Some(best) => {
                            second = best.delta;
                            first = Some(insertion);
                        }
                        None => first = Some(insertion),
                    }
                }
            }
            let Some(best) = first else {
                hopeless.push(slot);
                continue;
            };
            let regret = if second.is_finite() {
                second - best.delta
            } else {
                f64::MAX
            };
            let better = match chosen {
                None => true,
                Some((_, chosen_regret, chosen_best)) => {
                    regret > chosen_regret
                        || (regret == chosen_regret && best.delta < chosen_best.delta)
                }
            };
            if better {
                chosen = Some((slot, regret, best));
            }
        }
        // Requests with no place now never get one (routes only fill up).
        for &slot in hopeless.iter().rev() {
            working.unassigned.push(pending.swap_remove(slot));
            if let Some((chosen_slot, _, _)) = &mut chosen
                && *chosen_slot == pending.len()
            {
                *chosen_slot = slot;
            }
        }
        let Some((slot, _, insertion)) = chosen else {
            break;
        };
        let request = pending.swap_remove(slot);
        let vehicle = insertion.route;
        working.insert(instance, request, &insertion);
        for &other in &pending {
            cache[other * vehicle_count + vehicle] =
                evaluate(&working, other, vehicle, &mut no_blink);
        }
    }
    working.unassigned.sort_unstable();
    working
}
