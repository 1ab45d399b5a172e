//! Tests of the routing engine: parsers (good and malformed files), the
//! independent checker, tiny instances whose optimum is found by brute force,
//! and property-style runs over random instances (every answer feasible, the
//! same seed giving the same answer).

use super::rng::Rng;
use super::*;

// ------------------------------------------------------------------ helpers

fn window(start: f64, end: f64) -> TimeWindow {
    TimeWindow::new(start, end)
}

fn stop(location: usize, service: f64, start: f64, end: f64) -> Stop {
    Stop {
        location,
        service,
        window: window(start, end),
    }
}

fn depot_vehicle(capacity: i64, end: f64) -> Vehicle {
    Vehicle {
        start_location: 0,
        end_location: Some(0),
        shift: window(0.0, end),
        capacity: [capacity, 0],
        fixed_cost: 0.0,
    }
}

fn options(seed: u64, iterations: u64) -> SolveOptions {
    SolveOptions {
        seed,
        max_iterations: iterations,
        ..SolveOptions::default()
    }
}

fn solve_iterations(instance: &Instance, options: &SolveOptions) -> Solution {
    solve(instance, options, &mut || 0.0)
}

/// A random instance on a 100x100 square: `requests` deliveries (or
/// shipments when `pairs`), windows wide enough that most are servable.
fn random_instance(rng: &mut Rng, requests: usize, vehicles: usize, pairs: bool) -> Instance {
    let stops_per_request = if pairs { 2 } else { 1 };
    let mut points = vec![(50.0, 50.0)];
    for _ in 0..requests * stops_per_request {
        points.push((rng.unit() * 100.0, rng.unit() * 100.0));
    }
    let horizon = 400.0;
    let random_window = |rng: &mut Rng, location: usize| {
        let centre = rng.unit() * horizon * 0.7;
        let width = 20.0 + rng.unit() * 150.0;
        stop(location, 5.0, centre, (centre + width).min(horizon))
    };
    let mut list = Vec::new();
    for r in 0..requests {
        let amount = [1 + rng.below(10) as i64, rng.below(5) as i64];
        let kind = if pairs {
            let pickup = random_window(rng, 1 + 2 * r);
            let mut delivery = random_window(rng, 2 + 2 * r);
            delivery.window.end = horizon;
            RequestKind::Shipment { pickup, delivery }
        } else {
            RequestKind::Delivery {
                stop: random_window(rng, 1 + r),
            }
        };
        list.push(Request { kind, amount });
    }
    let fleet = (0..vehicles)
        .map(|_| Vehicle {
            start_location: 0,
            end_location: Some(0),
            shift: window(0.0, horizon + 200.0),
            capacity: [30, 12],
            fixed_cost: 0.0,
        })
        .collect();
    Instance::new(Matrix::euclidean(&points), list, fleet, ArcCost::default()).unwrap()
}

// ------------------------------------------------------------------ parsers

const SOLOMON: &str = "TINY1

VEHICLE
NUMBER     CAPACITY
  2         10

CUSTOMER
CUST NO.  XCOORD.   YCOORD.    DEMAND   READY TIME  DUE DATE   SERVICE   TIME

    0      0          0          0          0        100          0
    1      3          4          4          0        100          1
    2      6          8          5          0        100          1
    3      0          5          6          0        100          1
";

const LILIM: &str = "2\t10\t1
0\t0\t0\t0\t0\t100\t0\t0\t0
1\t3\t4\t4\t0\t100\t1\t0\t2
2\t6\t8\t-4\t0\t100\t1\t1\t0
3\t0\t5\t6\t0\t100\t1\t0\t4
4\t0\t10\t-6\t0\t100\t1\t3\t0
";

#[test]
fn solomon_parses() {
    let parsed = parse_solomon(SOLOMON).unwrap();
    assert_eq!(parsed.name, "TINY1");
    assert_eq!(parsed.instance.requests().len(), 3);
    assert_eq!(parsed.instance.vehicles().len(), 2);
    assert_eq!(parsed.instance.vehicles()[0].capacity, [10, 0]);
    assert_eq!(parsed.instance.matrix().distance(0, 1), 5.0);
    assert_eq!(parsed.stop_ids, vec![[1, 1], [2, 2], [3, 3]]);
    let solution = solve_iterations(&parsed.instance, &options(1, 200));
    let report = parsed.report(&solution);
    assert_eq!(report.vehicles, 2);
    let mut visited: Vec<usize> = report.routes.concat();
    visited.sort_unstable();
    assert_eq!(visited, vec![1, 2, 3]);
    let json = report.to_json();
    assert!(json.starts_with("{\"instance\":\"TINY1\",\"vehicles\":2,\"distance\":"));
}

#[test]
fn lilim_parses() {
    let parsed = parse_lilim(LILIM).unwrap();
    assert_eq!(parsed.instance.requests().len(), 2);
    assert_eq!(parsed.stop_ids, vec![[1, 2], [3, 4]]);
    let solution = solve_iterations(&parsed.instance, &options(1, 200));
    let report = parsed.report(&solution);
    // Both pairs fit one vehicle: 0 -> 1 -> 2 -> 3 -> 4 -> 0 or similar.
    assert_eq!(report.vehicles, 1);
    let route = &report.routes[0];
    let at = |id| route.iter().position(|&n| n == id).unwrap();
    assert!(at(1) < at(2) && at(3) < at(4));
    check(&parsed.instance, &solution.routes).unwrap();
}

fn solomon_error(text: &str) -> ParseError {
    parse_solomon(text).expect_err("malformed file accepted")
}

#[test]
fn solomon_malformed_files_name_line_and_reason() {
    let cases: &[(&str, &str, usize, &str)] = &[
        // (what, from, line, reason contains)
        (
            "    2      6          8          5",
            "    2      6          8          5          0        100          1",
            12,
            "expected 7 fields",
        ),
        (
            "    2      6          x          5          0        100          1",
            "    2      6          8          5          0        100          1",
            12,
            "y: not a number",
        ),
        (
            "    2      6          8          5          0        100          1\n    2      6          8          5          0        100          1",
            "    2      6          8          5          0        100          1",
            13,
            "appears twice",
        ),
        (
            "    2      6          8          5        200        100          1",
            "    2      6          8          5          0        100          1",
            12,
            "is after due date",
        ),
        (
            "    2      6          8          5.5          0        100          1",
            "    2      6          8          5          0        100          1",
            12,
            "whole number",
        ),
        (
            "  2         ten",
            "  2         10",
            5,
            "capacity: not a number",
        ),
        ("CARS", "VEHICLE", 3, "expected \"VEHICLE\""),
    ];
    for &(bad, good, line, reason) in cases {
        let text = SOLOMON.replacen(good, bad, 1);
        let err = solomon_error(&text);
        assert_eq!(err.line, line, "{bad}: {err}");
        assert!(err.reason.contains(reason), "{bad}: {err}");
    }
    assert!(solomon_error("").reason.contains("VEHICLE"));
    let no_rows = SOLOMON.split("CUSTOMER").next().unwrap();
    assert!(solomon_error(no_rows).reason.contains("CUSTOMER"));
    let depot_second = SOLOMON.replacen("    0      0 ", "    9      0 ", 1);
    assert!(solomon_error(&depot_second).reason.contains("depot"));
}

#[test]
fn lilim_malformed_files_name_line_and_reason() {
    let cases: &[(&str, &str, usize, &str)] = &[
        ("2\t10", "2\t10\t1", 1, "vehicles capacity speed"),
        (
            "2\t6\t8\t-4\t0\t100\t1\t3\t0",
            "2\t6\t8\t-4\t0\t100\t1\t1\t0",
            3,
            "does not name it back",
        ),
        (
            "2\t6\t8\t-5\t0\t100\t1\t1\t0",
            "2\t6\t8\t-4\t0\t100\t1\t1\t0",
            3,
            "expected q >= 0 and -q",
        ),
        (
            "3\t0\t5\t6\t0\t100\t1\t0\t0",
            "3\t0\t5\t6\t0\t100\t1\t0\t4",
            5,
            "neither a pickup",
        ),
        (
            "3\t0\t5\t6\t0\t100\t1\t0\t9",
            "3\t0\t5\t6\t0\t100\t1\t0\t4",
            5,
            "does not exist",
        ),
        (
            "4\t0\t10\t-6\t0\t100\t1\t3",
            "4\t0\t10\t-6\t0\t100\t1\t3\t0",
            6,
            "expected 9 fields",
        ),
    ];
    for &(bad, good, line, reason) in cases {
        let text = LILIM.replacen(good, bad, 1);
        let err = parse_lilim(&text).expect_err("malformed file accepted");
        assert_eq!(err.line, line, "{bad}: {err}");
        assert!(err.reason.contains(reason), "{bad}: {err}");
    }
    assert_eq!(parse_lilim("").unwrap_err().line, 1);
}

#[test]
fn parsers_never_panic_on_mangled_text() {
    let mut rng = Rng::new(3);
    for source in [SOLOMON, LILIM] {
        let bytes: Vec<char> = source.chars().collect();
        for _ in 0..300 {
            let mut text = bytes.clone();
            for _ in 0..1 + rng.below(4) {
                let at = rng.below(text.len());
                match rng.below(3) {
                    0 => {
                        text.remove(at);
                    }
                    1 => text.insert(at, ['-', '9', ' ', '\n', 'x', '.'][rng.below(6)]),
                    _ => text.truncate(at),
                }
            }
            let text: String = text.into_iter().collect();
            if let Ok(parsed) = parse_solomon(&text).or_else(|_| parse_lilim(&text)) {
                let solution = solve_iterations(&parsed.instance, &options(1, 20));
                check(&parsed.instance, &solution.routes).unwrap();
            }
        }
    }
}

// ------------------------------------------------------------------ checker

/// Depot at 0, stops at 1..=4 on a line 10 apart; one shipment 1 -> 2 and
/// deliveries at 3 and 4.
fn line_instance(capacity: i64, late_at_4: f64) -> Instance {
    let points = [
        (0.0, 0.0),
        (10.0, 0.0),
        (20.0, 0.0),
        (30.0, 0.0),
        (40.0, 0.0),
    ];
    let requests = vec![
        Request {
            kind: RequestKind::Shipment {
                pickup: stop(1, 0.0, 0.0, 1000.0),
                delivery: stop(2, 0.0, 0.0, 1000.0),
            },
            amount: [5, 0],
        },
        Request {
            kind: RequestKind::Delivery {
                stop: stop(3, 0.0, 0.0, 1000.0),
            },
            amount: [3, 0],
        },
        Request {
            kind: RequestKind::Delivery {
                stop: stop(4, 0.0, 0.0, late_at_4),
            },
            amount: [3, 0],
        },
    ];
    Instance::new(
        Matrix::euclidean(&points),
        requests,
        vec![
            depot_vehicle(capacity, 1000.0),
            depot_vehicle(capacity, 1000.0),
        ],
        ArcCost::default(),
    )
    .unwrap()
}

fn visit(request: usize, role: Role) -> Visit {
    Visit { request, role }
}

fn plan(vehicle: usize, visits: &[Visit]) -> RoutePlan {
    RoutePlan {
        vehicle,
        visits: visits.to_vec(),
    }
}

#[test]
fn checker_accepts_a_feasible_plan_and_measures_it() {
    let instance = line_instance(11, 1000.0);
    let route = plan(
        0,
        &[
            visit(0, Role::Pickup),
            visit(0, Role::Delivery),
            visit(1, Role::Single),
            visit(2, Role::Single),
        ],
    );
    let evaluation = check(&instance, &[route]).unwrap();
    assert_eq!(evaluation.distance, 80.0);
    assert_eq!(evaluation.vehicles, 1);
    assert!(evaluation.unserved.is_empty());
    assert_eq!(evaluation.routes[0].stops[3].service_start, 40.0);
    // Leaving request 2 out is allowed and reported.
    let partial = plan(0, &[visit(0, Role::Pickup), visit(0, Role::Delivery)]);
    assert_eq!(check(&instance, &[partial]).unwrap().unserved, vec![1, 2]);
}

#[test]
fn checker_finds_each_kind_of_violation() {
    use Role::{Delivery, Pickup, Single};
    let full = [
        visit(0, Pickup),
        visit(0, Delivery),
        visit(1, Single),
        visit(2, Single),
    ];
    let instance = line_instance(11, 1000.0);
    let cases: Vec<(Instance, Vec<RoutePlan>, &str)> = vec![
        // Deliveries 3 + 3 are on board with the shipment's 5: 11 > 10.
        (
            line_instance(10, 1000.0),
            vec![plan(0, &full)],
            "OverCapacity",
        ),
        (line_instance(11, 39.0), vec![plan(0, &full)], "Late"),
        (
            instance.clone(),
            vec![plan(0, &[visit(0, Delivery), visit(0, Pickup)])],
            "DeliveryBeforePickup",
        ),
        (
            instance.clone(),
            vec![plan(0, &[visit(0, Pickup)]), plan(1, &[visit(0, Delivery)])],
            "PairSplit",
        ),
        (
            instance.clone(),
            vec![plan(0, &[visit(0, Pickup)])],
            "PairSplit",
        ),
        (
            instance.clone(),
            vec![plan(0, &[visit(1, Single), visit(1, Single)])],
            "StopTwice",
        ),
        (
            instance.clone(),
            vec![plan(0, &[visit(1, Single)]), plan(0, &[visit(2, Single)])],
            "VehicleUsedTwice",
        ),
        (instance.clone(), vec![plan(5, &[])], "UnknownVehicle"),
        (
            instance.clone(),
            vec![plan(0, &[visit(9, Single)])],
            "UnknownRequest",
        ),
        (
            instance.clone(),
            vec![plan(0, &[visit(1, Pickup)])],
            "WrongRole",
        ),
    ];
    for (instance, routes, expected) in cases {
        let violation = check(&instance, &routes).expect_err(expected);
        let shown = format!("{violation:?}");
        assert!(shown.starts_with(expected), "{expected}: got {shown}");
        assert!(!violation.to_string().is_empty());
    }
    // The shift end counts too.
    let mut short = line_instance(11, 1000.0);
    short.vehicles[0].shift.end = 79.0;
    let violation = check(&short, &[plan(0, &full)]).unwrap_err();
    assert!(matches!(violation, Violation::LateAtEnd { .. }));
}

// ------------------------------------------------------------------ optimum

/// Best distance over every assignment of stops to at most two vehicles and
/// every order, by brute force through the checker (independent of search).
fn brute_force(instance: &Instance) -> f64 {
    let visits: Vec<Visit> = instance
        .requests()
        .iter()
        .enumerate()
        .flat_map(|(request, r)| match r.kind {
            RequestKind::Shipment { .. } => {
                vec![visit(request, Role::Pickup), visit(request, Role::Delivery)]
            }
            _ => vec![visit(request, Role::Single)],
        })
        .collect();
    let mut best = f64::INFINITY;
    let mut order: Vec<usize> = (0..visits.len()).collect();
    // Heap's algorithm over all permutations, each split into two routes.
    fn permutations(k: usize, order: &mut Vec<usize>, each: &mut dyn FnMut(&[usize])) {
        if k <= 1 {
            each(order);
            return;
        }
        for i in 0..k {
            permutations(k - 1, order, each);
            let j = if k.is_multiple_of(2) { i } else { 0 };
            order.swap(j, k - 1);
        }
    }
    let n = order.len();
    permutations(n, &mut order, &mut |perm| {
        for split in 0..=perm.len() {
            let first: Vec<Visit> = perm[..split].iter().map(|&i| visits[i]).collect();
            let second: Vec<Visit> = perm[split..].iter().map(|&i| visits[i]).collect();
            let routes = [plan(0, &first), plan(1, &second)];
            if let Ok(evaluation) = check(instance, &routes)
                && evaluation.unserved.is_empty()
            {
                best = best.min(evaluation.distance);
            }
        }
    });
    best
}

#[test]
fn finds_the_optimum_of_tiny_instances() {
    let mut rng = Rng::new(11);
    for case in 0..12 {
        let pairs = case % 2 == 1;
        let requests = if pairs { 3 } else { 6 };
        let instance = random_instance(&mut rng, requests, 2, pairs);
        let optimum = brute_force(&instance);
        let solution = solve_iterations(&instance, &options(case, 3000));
        let evaluation = check(&instance, &solution.routes).unwrap();
        if optimum.is_finite() {
            assert!(solution.unserved.is_empty(), "case {case}");
            assert!(
                (evaluation.distance - optimum).abs() < 1e-6,
                "case {case}: found {} but the optimum is {optimum}",
                evaluation.distance
            );
        }
    }
}

#[test]
fn hand_made_line_has_known_optimum() {
    // Everything fits one vehicle: out and back along the line, 80.
    let instance = line_instance(11, 1000.0);
    let solution = solve_iterations(&instance, &options(1, 500));
    assert_eq!(solution.vehicles, 1);
    assert!((solution.distance - 80.0).abs() < 1e-9);
    assert!((solution.cost - 80.0).abs() < 1e-9);
}

// ------------------------------------------------------------------ properties

#[test]
fn every_solution_is_feasible_and_reports_its_unserved() {
    let mut rng = Rng::new(5);
    for case in 0..24u64 {
        let pairs = case % 2 == 0;
        let requests = 5 + rng.below(30);
        let vehicles = 1 + rng.below(5);
        let instance = random_instance(&mut rng, requests, vehicles, pairs);
        for objective in [Objective::Distance, Objective::VehiclesThenDistance] {
            let options = SolveOptions {
                objective,
                ..options(case, 300)
            };
            let solution = solve_iterations(&instance, &options);
            let evaluation = check(&instance, &solution.routes)
                .unwrap_or_else(|v| panic!("case {case}: infeasible: {v}"));
            assert_eq!(evaluation.unserved, solution.unserved, "case {case}");
            assert_eq!(evaluation.vehicles, solution.vehicles);
            assert!((evaluation.distance - solution.distance).abs() < 1e-6);
            assert!((evaluation.cost - solution.cost).abs() < 1e-6);
        }
    }
}

#[test]
fn same_seed_same_answer() {
    let mut rng = Rng::new(9);
    for pairs in [false, true] {
        let instance = random_instance(&mut rng, 25, 4, pairs);
        for objective in [Objective::Distance, Objective::VehiclesThenDistance] {
            let options = SolveOptions {
                objective,
                ..options(42, 500)
            };
            let first = solve_iterations(&instance, &options);
            let second = solve_iterations(&instance, &options);
            assert_eq!(first, second);
        }
    }
}

#[test]
fn progress_callback_stops_the_search() {
    let mut rng = Rng::new(2);
    let instance = random_instance(&mut rng, 20, 3, false);
    let mut calls = 0u64;
    let solution = solve(&instance, &options(1, u64::MAX), &mut || {
        calls += 1;
        calls as f64 / 50.0
    });
    assert!(solution.iterations <= 51, "{}", solution.iterations);
    check(&instance, &solution.routes).unwrap();
}

#[test]
fn impossible_requests_are_unserved_not_errors() {
    let points = [(0.0, 0.0), (100.0, 0.0), (1.0, 0.0)];
    let requests = vec![
        // Window closes before anyone can get there.
        Request {
            kind: RequestKind::Delivery {
                stop: stop(1, 0.0, 0.0, 50.0),
            },
            amount: [1, 0],
        },
        // Bigger than any vehicle.
        Request {
            kind: RequestKind::Delivery {
                stop: stop(2, 0.0, 0.0, 500.0),
            },
            amount: [99, 0],
        },
        Request {
            kind: RequestKind::Delivery {
                stop: stop(2, 0.0, 0.0, 500.0),
            },
            amount: [1, 0],
        },
    ];
    let instance = Instance::new(
        Matrix::euclidean(&points),
        requests,
        vec![depot_vehicle(10, 500.0)],
        ArcCost::default(),
    )
    .unwrap();
    for objective in [Objective::Distance, Objective::VehiclesThenDistance] {
        let options = SolveOptions {
            objective,
            ..options(1, 100)
        };
        let solution = solve_iterations(&instance, &options);
        assert_eq!(solution.unserved, vec![0, 1]);
        assert_eq!(solution.vehicles, 1);
    }
    // No vehicles at all: everything unserved.
    let empty = Instance::new(
        Matrix::euclidean(&points),
        instance.requests().to_vec(),
        Vec::new(),
        ArcCost::default(),
    )
    .unwrap();
    let solution = solve_iterations(&empty, &options(1, 10));
    assert_eq!(solution.unserved, vec![0, 1, 2]);
}

#[test]
fn vehicles_first_trades_distance_for_couriers() {
    // Two customers on opposite sides: two vehicles are shorter when windows
    // allow both, one vehicle is fewer.
    let points = [(0.0, 0.0), (10.0, 0.0), (-10.0, 0.0)];
    let deliver = |location| Request {
        kind: RequestKind::Delivery {
            stop: stop(location, 0.0, 0.0, 1000.0),
        },
        amount: [1, 0],
    };
    let mut vehicle = depot_vehicle(10, 1000.0);
    vehicle.fixed_cost = 0.0;
    let instance = Instance::new(
        Matrix::euclidean(&points),
        vec![deliver(1), deliver(2)],
        vec![vehicle; 2],
        ArcCost::default(),
    )
    .unwrap();
    let by_distance = solve_iterations(&instance, &options(1, 200));
    assert!((by_distance.distance - 40.0).abs() < 1e-9);
    let fewest = solve_iterations(
        &instance,
        &SolveOptions {
            objective: Objective::VehiclesThenDistance,
            ..options(1, 200)
        },
    );
    assert_eq!(fewest.vehicles, 1);
    assert!((fewest.distance - 40.0).abs() < 1e-9);

    // With far-apart windows that do not allow one route, it takes two.
    let timed = |location, start: f64| Request {
        kind: RequestKind::Delivery {
            stop: stop(location, 0.0, start, start + 1.0),
        },
        amount: [1, 0],
    };
    let tight = Instance::new(
        Matrix::euclidean(&points),
        vec![timed(1, 10.0), timed(2, 10.0)],
        vec![depot_vehicle(10, 1000.0); 3],
        ArcCost::default(),
    )
    .unwrap();
    let fewest = solve_iterations(
        &tight,
        &SolveOptions {
            objective: Objective::VehiclesThenDistance,
            ..options(1, 200)
        },
    );
    assert_eq!(fewest.vehicles, 2);
    assert!(fewest.unserved.is_empty());
}

#[test]
fn volume_and_open_routes_and_pickups_are_respected() {
    // Two parcels, each half a van by volume; a pickup brought back to the end.
    let points = [(0.0, 0.0), (5.0, 0.0), (6.0, 0.0), (7.0, 0.0), (100.0, 0.0)];
    let requests = vec![
        Request {
            kind: RequestKind::Delivery {
                stop: stop(1, 0.0, 0.0, 1000.0),
            },
            amount: [1, 6],
        },
        Request {
            kind: RequestKind::Delivery {
                stop: stop(2, 0.0, 0.0, 1000.0),
            },
            amount: [1, 6],
        },
        Request {
            kind: RequestKind::Pickup {
                stop: stop(3, 0.0, 0.0, 1000.0),
            },
            amount: [1, 1],
        },
    ];
    let van = Vehicle {
        start_location: 0,
        end_location: None,
        shift: window(0.0, 1000.0),
        capacity: [10, 10],
        fixed_cost: 5.0,
    };
    let instance = Instance::new(
        Matrix::euclidean(&points),
        requests,
        vec![van; 3],
        ArcCost::default(),
    )
    .unwrap();
    let solution = solve_iterations(&instance, &options(1, 300));
    let evaluation = check(&instance, &solution.routes).unwrap();
    // Volume forces two vans; open routes do not drive back.
    assert_eq!(solution.vehicles, 2);
    assert!(solution.unserved.is_empty());
    assert!((evaluation.cost - solution.cost).abs() < 1e-9);
    assert!(solution.distance <= 13.0 + 1e-9, "{}", solution.distance);
}

// ------------------------------------------------------------------ model

#[test]
fn instance_validation_names_the_field() {
    let points = [(0.0, 0.0), (1.0, 0.0)];
    let bad_stop = Request {
        kind: RequestKind::Delivery {
            stop: stop(7, 0.0, 0.0, 10.0),
        },
        amount: [1, 0],
    };
    let err = Instance::new(
        Matrix::euclidean(&points),
        vec![bad_stop],
        vec![],
        ArcCost::default(),
    )
    .unwrap_err();
    assert!(err.reason.starts_with("requests[0].stop.location"), "{err}");
    let backwards = Request {
        kind: RequestKind::Delivery {
            stop: stop(1, 0.0, 10.0, 5.0),
        },
        amount: [1, 0],
    };
    let err = Instance::new(
        Matrix::euclidean(&points),
        vec![backwards],
        vec![],
        ArcCost::default(),
    )
    .unwrap_err();
    assert!(err.reason.starts_with("requests[0].stop.window"), "{err}");
    let mut vehicle = depot_vehicle(1, 10.0);
    vehicle.capacity = [-1, 0];
    let err = Instance::new(
        Matrix::euclidean(&points),
        vec![],
        vec![vehicle],
        ArcCost::default(),
    )
    .unwrap_err();
    assert!(err.reason.starts_with("vehicles[0].capacity"), "{err}");
    assert!(Matrix::from_rows(&[vec![0.0, 1.0], vec![1.0]], None).is_err());
    assert!(Matrix::from_rows(&[vec![0.0, f64::NAN], vec![1.0, 0.0]], None).is_err());
}

#[test]
fn haversine_matrix_is_plausible() {
    // Berlin to Munich is about 504 km as the crow flies.
    let points = [(52.5200, 13.4050), (48.1351, 11.5820)];
    let matrix = Matrix::haversine(&points, 10.0, 1.3).unwrap();
    let metres = matrix.distance(0, 1);
    assert!((metres / 1.3 - 504_000.0).abs() < 3_000.0, "{metres}");
    assert!((matrix.duration(0, 1) - metres / 10.0).abs() < 1e-6);
    assert_eq!(matrix.distance(1, 1), 0.0);
    assert!(Matrix::haversine(&points, 0.0, 1.3).is_err());
    assert!(Matrix::haversine(&points, 10.0, 0.5).is_err());
    assert!(Matrix::haversine(&[(91.0, 0.0)], 10.0, 1.3).is_err());
}

// ------------------------------------------------------------ bound requests

#[test]
fn a_bound_request_is_served_only_by_its_vehicle() {
    // Two identical vehicles; both deliveries bound to the second one.
    let points = [(0.0, 0.0), (10.0, 0.0), (-10.0, 0.0)];
    let deliver = |location| Request {
        kind: RequestKind::Delivery {
            stop: stop(location, 0.0, 0.0, 1000.0),
        },
        amount: [1, 0],
    };
    let instance = Instance::new(
        Matrix::euclidean(&points),
        vec![deliver(1), deliver(2)],
        vec![depot_vehicle(10, 1000.0); 2],
        ArcCost::default(),
    )
    .unwrap()
    .bind_requests(vec![Some(1), Some(1)])
    .unwrap();
    let solution = solve_iterations(&instance, &options(3, 300));
    assert!(solution.unserved.is_empty(), "{solution:?}");
    assert_eq!(solution.routes.len(), 1);
    assert_eq!(solution.routes[0].vehicle, 1);
    // The checker refuses the same stops on the other vehicle.
    let wrong = [plan(0, &[visit(0, Role::Single), visit(1, Role::Single)])];
    assert!(matches!(
        check(&instance, &wrong),
        Err(Violation::WrongVehicle { bound: 1, .. })
    ));
    // Binding to a vehicle that does not exist is refused.
    let again = Instance::new(
        Matrix::euclidean(&points),
        vec![deliver(1)],
        vec![depot_vehicle(10, 1000.0)],
        ArcCost::default(),
    )
    .unwrap();
    assert!(again.clone().bind_requests(vec![Some(1)]).is_err());
    assert!(again.bind_requests(vec![]).is_err());
}

#[test]
fn random_bindings_are_always_kept() {
    let mut rng = Rng::new(17);
    for round in 0..20 {
        let instance = random_instance(&mut rng, 12, 3, round % 2 == 0);
        let bound: Vec<Option<usize>> = (0..12)
            .map(|_| rng.chance(0.4).then(|| rng.below(3)))
            .collect();
        let instance = instance.bind_requests(bound.clone()).unwrap();
        let solution = solve_iterations(&instance, &options(round, 200));
        // The independent checker holds every binding.
        check(&instance, &solution.routes).unwrap_or_else(|v| panic!("round {round}: {v:?}"));
        for route in &solution.routes {
            for visit in &route.visits {
                if let Some(vehicle) = bound[visit.request] {
                    assert_eq!(vehicle, route.vehicle, "round {round}");
                }
            }
        }
    }
}
