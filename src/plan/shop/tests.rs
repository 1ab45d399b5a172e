use super::*;
use crate::domain::{FactoryId, JobToken, Location, MachineId, Millis};
use proptest::prelude::*;

fn solve_with(problem: &Problem, objective: Objective, seed: u64, iterations: u64) -> Schedule {
    let options = SolveOptions {
        objective,
        seed,
        max_iterations: iterations,
    };
    solve(problem, &options, &mut || 0.0).expect("valid problem")
}

fn alt(machine: usize, duration: Time) -> Alternative {
    Alternative {
        machine,
        duration,
        distance: 0,
    }
}

fn op(alternatives: Vec<Alternative>) -> Operation {
    Operation {
        alternatives,
        family: None,
        fixed: None,
    }
}

fn job(operations: Vec<Operation>) -> Job {
    Job {
        operations,
        release: 0,
        due: None,
        order: 0,
    }
}

#[test]
fn a_small_flexible_shop_reaches_its_optimum() {
    // Two jobs, two machines; each job's two operations can go anywhere,
    // but machine 1 is twice as slow. Optimum: 6 (both jobs in parallel,
    // crossed over).
    let problem = Problem {
        jobs: vec![
            job(vec![
                op(vec![alt(0, 3), alt(1, 6)]),
                op(vec![alt(0, 3), alt(1, 6)]),
            ]),
            job(vec![op(vec![alt(1, 3)]), op(vec![alt(0, 3), alt(1, 3)])]),
        ],
        machines: vec![Machine::default(); 2],
    };
    let schedule = solve_with(&problem, Objective::Makespan, 1, 1000);
    check(&problem, &schedule.operations).expect("feasible");
    assert_eq!(schedule.makespan, 6);
}

#[test]
fn the_same_seed_gives_the_same_schedule() {
    let text = "3 3\n3 2 0 3 1 5 1 2 4 2 0 2 2 6\n2 1 1 4 2 0 3 2 2\n3 1 0 5 1 1 2 2 1 3 2 4\n";
    let problem = parse_fjsp(text).expect("valid");
    let a = solve_with(&problem, Objective::Makespan, 9, 300);
    let b = solve_with(&problem, Objective::Makespan, 9, 300);
    assert_eq!(a, b);
    check(&problem, &a.operations).expect("feasible");
}

#[test]
fn the_checker_finds_each_kind_of_violation() {
    let problem = Problem {
        jobs: vec![
            job(vec![op(vec![alt(0, 2)]), op(vec![alt(0, 2), alt(1, 3)])]),
            job(vec![op(vec![alt(0, 1)])]),
        ],
        machines: vec![Machine::default(); 2],
    };
    let s = |job, op, machine, start, end| ScheduledOp {
        job,
        op,
        machine,
        start,
        end,
    };
    let good = vec![s(0, 0, 0, 0, 2), s(0, 1, 1, 2, 5), s(1, 0, 0, 2, 3)];
    assert_eq!(check(&problem, &good), Ok(()));
    let cases = [
        (
            vec![s(0, 0, 0, 0, 2), s(0, 1, 1, 2, 5)],
            Violation::Missing { job: 1, op: 0 },
        ),
        (
            vec![s(0, 0, 1, 0, 2), s(0, 1, 1, 2, 5), s(1, 0, 0, 2, 3)],
            Violation::Incapable {
                job: 0,
                op: 0,
                machine: 1,
            },
        ),
        (
            vec![s(0, 0, 0, 0, 2), s(0, 1, 1, 1, 4), s(1, 0, 0, 2, 3)],
            Violation::Precedence { job: 0, op: 1 },
        ),
        (
            vec![s(0, 0, 0, 0, 2), s(0, 1, 1, 2, 5), s(1, 0, 0, 1, 2)],
            Violation::Overlap {
                machine: 0,
                first: (0, 0),
                second: (1, 0),
            },
        ),
        (
            vec![s(0, 0, 0, 0, 2), s(0, 1, 1, 2, 4), s(1, 0, 0, 2, 3)],
            Violation::WrongDuration { job: 0, op: 1 },
        ),
    ];
    for (schedule, want) in cases {
        assert_eq!(check(&problem, &schedule), Err(want));
    }
}

#[test]
fn invalid_problems_are_refused() {
    let mut fixed_late = op(vec![alt(0, 2)]);
    fixed_late.fixed = Some(Fixed {
        machine: 0,
        start: 0,
    });
    let cases = [
        (job(vec![op(vec![])]), "no machine"),
        (job(vec![op(vec![alt(5, 1)])]), "does not exist"),
        (job(vec![op(vec![alt(0, 0)])]), "at least 1"),
        (job(vec![op(vec![alt(0, 1), alt(0, 2)])]), "listed twice"),
        (
            job(vec![op(vec![alt(0, 1)]), fixed_late]),
            "only a job's first",
        ),
    ];
    for (j, reason) in cases {
        let problem = Problem {
            jobs: vec![j],
            machines: vec![Machine::default()],
        };
        let err = solve(&problem, &SolveOptions::default(), &mut || 1.0).expect_err("invalid");
        assert!(err.reason.contains(reason), "{err}");
    }
}

#[test]
fn the_floor_objective_puts_late_orders_first_then_setups() {
    // One machine, two materials, setup 5. Job 0 (family 1) is due early;
    // jobs 1 and 2 (family 0) are due late. Best: 0 first (on time), then
    // the two family-0 jobs together: one setup after job 0.
    let fam = |family: u32, duration: Time| Operation {
        alternatives: vec![alt(0, duration)],
        family: Some(family),
        fixed: None,
    };
    let due_job = |family, due, order| Job {
        operations: vec![fam(family, 3)],
        release: 0,
        due: Some(due),
        order,
    };
    let problem = Problem {
        jobs: vec![due_job(1, 3, 0), due_job(0, 100, 1), due_job(0, 100, 2)],
        machines: vec![Machine {
            available_from: 0,
            setup: 5,
            loaded_family: Some(1),
            ..Machine::default()
        }],
    };
    let schedule = solve_with(&problem, Objective::Floor, 3, 500);
    check(&problem, &schedule.operations).expect("feasible");
    assert_eq!(schedule.score.late_orders, 0);
    assert_eq!(schedule.score.setup_time, 5);
    assert_eq!(schedule.operations[0].start, 0);
}

/// A machine of factory "f" running `process` on cotton, free now, always open.
fn floor_machine(id: &str, process: &str) -> FloorMachine {
    FloorMachine {
        id: MachineId::new(id),
        factory: FactoryId::new("f"),
        location: Location::new(52.5, 13.4),
        capabilities: vec![process.into()],
        materials: vec!["cotton".into()],
        accepts_jobs: true,
        speed: 1.0,
        setup_ms: 0,
        loaded_material: None,
        available_from_ms: 0,
        openings: Openings::default(),
    }
}

#[test]
fn floor_plans_keep_running_steps_and_respect_machines() {
    let machine = |id: &str, process: &str| FloorMachine {
        available_from_ms: 1_000,
        ..floor_machine(id, process)
    };
    let step = |process: &str, ms| FloorStep {
        process: process.into(),
        material: "cotton".into(),
        base_duration_ms: ms,
    };
    let floor_job = |token, steps, running| FloorJob {
        token: JobToken(token),
        order: format!("o{token}"),
        factory: None,
        steps,
        running,
        release_ms: 0,
        due_ms: 50_000,
        customer: Some(Location::new(52.52, 13.4)),
    };
    let machines = [
        machine("p1", "print"),
        machine("p2", "print"),
        machine("h1", "press"),
    ];
    let jobs = [
        floor_job(
            1,
            vec![step("print", 4_000), step("press", 1_000)],
            Some(Running {
                machine: MachineId::new("p1"),
                started_ms: 0,
                ends_ms: 3_000,
            }),
        ),
        floor_job(2, vec![step("print", 2_000), step("press", 1_000)], None),
        floor_job(3, vec![step("print", 2_000), step("press", 1_000)], None),
        floor_job(4, vec![step("laser", 2_000)], None),
    ];
    let plan = plan_floor(&jobs, &machines, 1, 200, &mut || 0.0).expect("valid");
    assert_eq!(plan.unplaceable.len(), 1);
    assert_eq!(plan.unplaceable[0].0, JobToken(4));
    assert_eq!(plan.late_orders, 0);
    let p1 = &plan.queues[&MachineId::new("p1")];
    assert_eq!(
        (p1[0].token, p1[0].start_ms, p1[0].end_ms),
        (JobToken(1), 0, 3_000)
    );
    for (id, queue) in &plan.queues {
        for pair in queue.windows(2) {
            assert!(pair[1].start_ms >= pair[0].end_ms, "{id} overlaps");
        }
        for step in queue {
            assert!(
                step.start_ms >= 1_000 || step.token == JobToken(1),
                "{id} before free"
            );
        }
    }
    assert_eq!(plan.queues[&MachineId::new("h1")].len(), 3);
}

#[test]
fn floor_plans_start_steps_inside_shifts_and_clear_of_maintenance() {
    // One press, working 1,000..5,000 and 10,000..20,000, maintained
    // 12,000..13,000; a second step may run past its shift's end.
    let press = FloorMachine {
        openings: Openings {
            shifts: Some(vec![(1_000, 5_000), (10_000, 20_000)]),
            blocked: vec![(12_000, 13_000)],
            until: 30_000,
        },
        ..floor_machine("h1", "press")
    };
    let job = |token: u32, ms| FloorJob {
        token: JobToken(token),
        order: format!("o{token}"),
        factory: None,
        steps: vec![FloorStep {
            process: "press".into(),
            material: "cotton".into(),
            base_duration_ms: ms,
        }],
        running: None,
        release_ms: 0,
        due_ms: 100_000,
        customer: None,
    };
    // 3,000 + 2,500 (starts at 4,000, inside the first shift, runs past it)
    // + 1,500 (the shift is over: 10,000) + 1,000 (11,500 would meet the
    // maintenance: 13,000).
    let jobs = [job(1, 3_000), job(2, 2_500), job(3, 1_500), job(4, 1_000)];
    let plan = plan_floor(&jobs, std::slice::from_ref(&press), 1, 0, &mut || 0.0).expect("valid");
    let starts: Vec<(u32, Millis)> = plan.queues[&press.id]
        .iter()
        .map(|p| (p.token.0, p.start_ms))
        .collect();
    assert_eq!(starts, [(1, 1_000), (2, 4_000), (3, 10_000), (4, 13_000)]);
    // And after any search, every start is one the calendar allows.
    let searched =
        plan_floor(&jobs, std::slice::from_ref(&press), 3, 300, &mut || 0.0).expect("valid");
    for p in &searched.queues[&press.id] {
        assert!(
            press.openings.allows(p.start_ms, p.end_ms - p.start_ms),
            "{p:?}"
        );
    }
}

/// A random problem: up to 6 jobs of up to 4 operations on up to 4
/// machines; in floor mode also releases, dues, families, setups, machines
/// free later, and running first operations.
fn problem_strategy(floor: bool) -> impl Strategy<Value = Problem> {
    let machines = 1usize..5;
    machines.prop_flat_map(move |m| {
        let alternative = (0..m, 1i64..20, 0i64..50);
        let operation = (
            prop::collection::vec(alternative, 1..=m),
            prop::option::of(0u32..3),
        );
        let job_spec = (
            prop::collection::vec(operation, 1..5),
            0i64..30,
            0i64..120,
            0usize..3,
            any::<bool>(),
            0i64..10,
        );
        // Shifts (start, length), maintenance (start, length), horizon.
        let openings = (
            prop::option::of(prop::collection::vec((0i64..120, 5i64..40), 1..4)),
            prop::collection::vec((0i64..150, 1i64..20), 0..3),
            0i64..200,
        )
            .prop_map(|(shifts, blocked, until)| Openings {
                shifts: shifts.map(|s| s.into_iter().map(|(a, l)| (a, a + l)).collect()),
                blocked: blocked.into_iter().map(|(a, l)| (a, a + l)).collect(),
                until,
            });
        let machine_spec = (0i64..20, 0i64..6, prop::option::of(0u32..3), openings);
        (
            prop::collection::vec(job_spec, 1..7),
            prop::collection::vec(machine_spec, m..=m),
        )
            .prop_map(move |(jobs, machine_specs)| {
                let mut running_on = vec![false; machine_specs.len()];
                let jobs = jobs
                    .into_iter()
                    .map(|(ops, release, due, order, run, start)| {
                        let mut operations: Vec<Operation> = ops
                            .into_iter()
                            .map(|(alts, family)| {
                                let mut alternatives: Vec<Alternative> = Vec::new();
                                for (machine, duration, distance) in alts {
                                    if alternatives.iter().all(|a| a.machine != machine) {
                                        alternatives.push(Alternative {
                                            machine,
                                            duration,
                                            distance,
                                        });
                                    }
                                }
                                Operation {
                                    alternatives,
                                    family: if floor { family } else { None },
                                    fixed: None,
                                }
                            })
                            .collect();
                        if floor && run {
                            let first = &mut operations[0];
                            let machine = first.alternatives[0].machine;
                            if !running_on[machine] {
                                running_on[machine] = true;
                                first.fixed = Some(Fixed { machine, start });
                            }
                        }
                        Job {
                            operations,
                            release: if floor { release } else { 0 },
                            due: floor.then_some(due),
                            order,
                        }
                    })
                    .collect();
                let machines = machine_specs
                    .into_iter()
                    .map(|(free, setup, loaded, openings)| {
                        if floor {
                            Machine {
                                available_from: free,
                                setup,
                                loaded_family: loaded,
                                openings,
                            }
                        } else {
                            Machine::default()
                        }
                    })
                    .collect();
                Problem { jobs, machines }
            })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn makespan_schedules_are_feasible(
        problem in problem_strategy(false),
        seed in 0u64..1000,
        iterations in 0u64..400,
    ) {
        let schedule = solve_with(&problem, Objective::Makespan, seed, iterations);
        prop_assert_eq!(check(&problem, &schedule.operations), Ok(()));
        let end = schedule.operations.iter().map(|s| s.end).max().unwrap_or(0);
        prop_assert_eq!(schedule.makespan, end);
    }

    /// A machine's earliest start is allowed, and nothing earlier from the
    /// same instant is (checked instant by instant).
    #[test]
    fn the_earliest_start_is_the_first_instant_the_calendar_allows(
        shifts in prop::option::of(prop::collection::vec((0i64..120, 1i64..40), 0..4)),
        blocked in prop::collection::vec((0i64..150, 1i64..30), 0..4),
        until in 0i64..220,
        from in 0i64..200,
        duration in 1i64..30,
    ) {
        let openings = Openings {
            shifts: shifts.map(|s| s.into_iter().map(|(a, l)| (a, a + l)).collect()),
            blocked: blocked.into_iter().map(|(a, l)| (a, a + l)).collect(),
            until,
        };
        let start = openings.earliest_start(from, duration);
        prop_assert!(start >= from);
        prop_assert!(openings.allows(start, duration));
        for t in from..start {
            prop_assert!(!openings.allows(t, duration), "{t} allowed before {start}");
        }
    }

    /// The floor's list scheduling through a heap by slack places every
    /// operation where comparing all ready operations would (ties on slack
    /// included: the random dues make many).
    #[test]
    fn the_floor_construction_by_heap_is_the_construction_by_scan(
        problem in problem_strategy(true),
    ) {
        let (heap, scan) = super::search::floor_constructions(&problem);
        prop_assert_eq!(heap, scan);
    }

    #[test]
    fn floor_schedules_are_feasible_and_keep_running_operations(
        problem in problem_strategy(true),
        seed in 0u64..1000,
        iterations in 0u64..300,
    ) {
        let schedule = solve_with(&problem, Objective::Floor, seed, iterations);
        // `check` covers capability, precedence, releases, machines free
        // from, setups, one at a time, and running operations unmoved.
        prop_assert_eq!(check(&problem, &schedule.operations), Ok(()));
        prop_assert_eq!(schedule.score, floor_score(&problem, &schedule.operations));
    }

    #[test]
    fn the_floor_search_never_ends_worse_than_its_construction_and_repeats(
        problem in problem_strategy(true),
        seed in 0u64..1000,
    ) {
        let start = solve_with(&problem, Objective::Floor, seed, 0);
        let searched = solve_with(&problem, Objective::Floor, seed, 80);
        prop_assert!(searched.score <= start.score);
        prop_assert_eq!(searched.clone(), solve_with(&problem, Objective::Floor, seed, 80));
    }

    #[test]
    fn the_search_never_ends_worse_than_its_construction(
        problem in problem_strategy(false),
        seed in 0u64..1000,
    ) {
        let start = solve_with(&problem, Objective::Makespan, seed, 0);
        let searched = solve_with(&problem, Objective::Makespan, seed, 300);
        prop_assert!(searched.makespan <= start.makespan);
    }
}

/// A random floor: machines of two factories with one process and material
/// each, some not accepting jobs, some busy for a while; single-step jobs
/// (what the runtime's scheduler passes), some pinned to a factory.
#[allow(clippy::type_complexity)]
fn floor_strategy() -> impl Strategy<Value = (Vec<FloorMachine>, Vec<FloorJob>, Vec<usize>)> {
    let machines = prop::collection::vec(
        (0usize..2, 0usize..2, 0usize..2, any::<bool>(), 0i64..5_000),
        0..6,
    );
    let jobs = prop::collection::vec(
        (0usize..3, 0usize..2, 0usize..2, 1i64..4_000, 0i64..20_000),
        0..14,
    );
    let rooms = prop::collection::vec(0usize..3, 6);
    (machines, jobs, rooms).prop_map(|(machines, jobs, rooms)| {
        let factories = ["f0", "f1"];
        let processes = ["print", "press"];
        let materials = ["cotton", "tote"];
        let machines = machines
            .into_iter()
            .enumerate()
            .map(|(i, (f, p, m, accepts, busy))| FloorMachine {
                id: MachineId::new(format!("m{i}")),
                factory: FactoryId::new(factories[f]),
                location: Location::new(52.5 + f as f64 / 10.0, 13.4),
                capabilities: vec![processes[p].into()],
                materials: vec![materials[m].into()],
                accepts_jobs: accepts,
                speed: 1.0,
                setup_ms: 0,
                loaded_material: None,
                available_from_ms: busy,
                openings: Openings::default(),
            })
            .collect();
        let jobs = jobs
            .into_iter()
            .enumerate()
            .map(|(t, (f, p, m, ms, due))| FloorJob {
                token: JobToken(t as u32),
                order: format!("o{}", t / 2),
                factory: factories.get(f).map(|id| FactoryId::new(*id)),
                steps: vec![FloorStep {
                    process: processes[p].into(),
                    material: materials[m].into(),
                    base_duration_ms: ms,
                }],
                running: None,
                release_ms: 0,
                due_ms: due,
                customer: Some(Location::new(52.52, 13.4)),
            })
            .collect();
        (machines, jobs, rooms)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// What the runtime queues from a floor plan: each job at most once,
    /// only on a machine that accepts jobs, of the job's factory, with its
    /// process and material, and never more than the machine's room.
    #[test]
    fn queue_heads_respect_machines_and_room((machines, jobs, rooms) in floor_strategy()) {
        let plan = plan_floor(&jobs, &machines, 7, 60, &mut || 0.0).expect("valid floor");
        let room = |id: &MachineId| {
            machines.iter().position(|m| &m.id == id).map_or(0, |i| rooms[i])
        };
        let heads = plan.queue_heads(&jobs, &room);
        let mut seen = std::collections::BTreeSet::new();
        let mut per_machine: std::collections::BTreeMap<&MachineId, usize> = Default::default();
        for (token, id) in &heads {
            prop_assert!(seen.insert(*token), "job {token} queued twice");
            let machine = machines.iter().find(|m| &m.id == id).expect("known machine");
            let job = jobs.iter().find(|j| j.token == *token).expect("known job");
            let step = &job.steps[0];
            prop_assert!(machine.accepts_jobs, "{id} does not accept jobs");
            prop_assert!(job.factory.as_ref().is_none_or(|f| *f == machine.factory));
            prop_assert!(machine.capabilities.contains(&step.process));
            prop_assert!(machine.materials.contains(&step.material));
            *per_machine.entry(id).or_default() += 1;
        }
        for (id, count) in per_machine {
            prop_assert!(count <= room(id), "{id}: {count} queued, room {}", room(id));
        }
        // A job some machine could run now is queued, or every machine that
        // could run it is full or planned it behind others.
        for job in &jobs {
            let capable: Vec<&FloorMachine> = machines
                .iter()
                .filter(|m| {
                    m.accepts_jobs
                        && job.factory.as_ref().is_none_or(|f| *f == m.factory)
                        && m.capabilities.contains(&job.steps[0].process)
                        && m.materials.contains(&job.steps[0].material)
                })
                .collect();
            let planned = plan.queues.values().flatten().any(|p| p.token == job.token);
            prop_assert_eq!(planned, !capable.is_empty(), "job {}", job.token);
        }
    }
}

#[test]
fn queue_heads_take_the_front_of_each_planned_queue() {
    let machine = |id: &str| floor_machine(id, "print");
    let job = |token: u32, due_ms| FloorJob {
        token: JobToken(token),
        order: format!("o{token}"),
        factory: Some(FactoryId::new("f")),
        steps: vec![FloorStep {
            process: "print".into(),
            material: "cotton".into(),
            base_duration_ms: 1_000,
        }],
        running: None,
        release_ms: 0,
        due_ms,
        customer: None,
    };
    let jobs: Vec<FloorJob> = (1..=5).map(|t| job(t, 1_000 * i64::from(t))).collect();
    let plan = plan_floor(&jobs, &[machine("a")], 1, 100, &mut || 0.0).expect("valid");
    // One machine, dues one second apart: the plan is earliest due first,
    // and only the room's worth of its front is queued now.
    let heads = plan.queue_heads(&jobs, &|_| 2);
    let tokens: Vec<u32> = heads.iter().map(|(t, _)| t.0).collect();
    assert_eq!(tokens, [1, 2]);
    assert!(plan.queue_heads(&jobs, &|_| 0).is_empty());
    // Nothing to plan: an empty plan, nothing queued.
    let empty = plan_floor(&[], &[machine("a")], 1, 100, &mut || 0.0).expect("empty");
    assert!(empty.queue_heads(&[], &|_| 2).is_empty());
}

/// `schedule`'s machine and start for each operation, as a warm start.
fn hints_of(problem: &Problem, schedule: &Schedule) -> WarmStart {
    let mut hints: Vec<Vec<Option<(usize, Time)>>> = problem
        .jobs
        .iter()
        .map(|job| vec![None; job.operations.len()])
        .collect();
    for s in &schedule.operations {
        hints[s.job][s.op] = Some((s.machine, s.start));
    }
    WarmStart { hints }
}

fn solve_warm(problem: &Problem, warm: &WarmStart, seed: u64, iterations: u64) -> Schedule {
    let options = SolveOptions {
        objective: Objective::Floor,
        seed,
        max_iterations: iterations,
    };
    solve_from(problem, &options, warm, &mut || 0.0).expect("valid problem")
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    /// Started from a schedule of the same problem, the warm construction
    /// gives that schedule back: every operation on its machine, in its
    /// order, at its time.
    #[test]
    fn a_warm_start_from_a_schedule_gives_it_back(
        problem in problem_strategy(true),
        seed in 0u64..1000,
        iterations in 0u64..200,
    ) {
        let schedule = solve_with(&problem, Objective::Floor, seed, iterations);
        let again = solve_warm(&problem, &hints_of(&problem, &schedule), seed, 0);
        prop_assert_eq!(again.operations, schedule.operations);
        prop_assert_eq!(again.score, schedule.score);
    }

    /// Whatever the hints (machines that cannot run the operation, starts
    /// that contradict the job's order, none at all), a warm start is a
    /// feasible schedule, before and after its search.
    #[test]
    fn warm_starts_from_any_hints_are_feasible(
        problem in problem_strategy(true),
        raw in prop::collection::vec(prop::option::of((0usize..5, -50i64..200)), 30),
        seed in 0u64..1000,
        iterations in 0u64..100,
    ) {
        let mut next = raw.iter().cycle();
        let hints = problem
            .jobs
            .iter()
            .map(|job| job.operations.iter().map(|_| next.next().copied().flatten()).collect())
            .collect();
        let warm = WarmStart { hints };
        let schedule = solve_warm(&problem, &warm, seed, iterations);
        prop_assert_eq!(check(&problem, &schedule.operations), Ok(()));
        prop_assert_eq!(schedule.score, floor_score(&problem, &schedule.operations));
        let start = solve_warm(&problem, &warm, seed, 0);
        prop_assert!(schedule.score <= start.score);
    }
}

/// Print jobs of one second on cotton, due at `due_ms`, of factory "f".
fn print_job(token: u32, due_ms: Millis) -> FloorJob {
    FloorJob {
        token: JobToken(token),
        order: format!("o{token}"),
        factory: Some(FactoryId::new("f")),
        steps: vec![FloorStep {
            process: "print".into(),
            material: "cotton".into(),
            base_duration_ms: 1_000,
        }],
        running: None,
        release_ms: 0,
        due_ms,
        customer: None,
    }
}

/// The tokens of a machine's planned queue, in order.
fn tokens_on(plan: &FloorPlan, id: &str) -> Vec<u32> {
    plan.queues[&MachineId::new(id)]
        .iter()
        .map(|p| p.token.0)
        .collect()
}

#[test]
fn a_re_plan_after_a_fault_moves_only_that_machines_steps() {
    let machines: Vec<FloorMachine> = ["a", "b", "c"]
        .iter()
        .map(|id| floor_machine(id, "print"))
        .collect();
    let jobs: Vec<FloorJob> = (1..=30)
        .map(|t| print_job(t, 20_000 + 997 * i64::from(t % 7)))
        .collect();
    let plan = plan_floor(&jobs, &machines, 1, 300, &mut || 0.0).expect("valid");
    let mut faulted = machines.clone();
    faulted[0].accepts_jobs = false;
    let again = replan_floor(&plan, &jobs, &faulted, 1, 0, &mut || 0.0).expect("valid");
    assert!(tokens_on(&again, "a").is_empty(), "{again:?}");
    let on_a = tokens_on(&plan, "a");
    for id in ["b", "c"] {
        // What b and c had stays in its order; a's steps join them.
        let kept: Vec<u32> = tokens_on(&again, id)
            .into_iter()
            .filter(|t| !on_a.contains(t))
            .collect();
        assert_eq!(kept, tokens_on(&plan, id), "{id}");
    }
    let planned: usize = again.queues.values().map(Vec::len).sum();
    assert_eq!(planned, jobs.len());
    // The search then goes on from there.
    let searched = replan_floor(&plan, &jobs, &faulted, 1, 200, &mut || 0.0).expect("valid");
    assert!(
        (searched.late_orders, searched.total_lateness_ms)
            <= (again.late_orders, again.total_lateness_ms)
    );
}

#[test]
fn a_rush_job_goes_ahead_of_work_planned_after_its_latest_start() {
    let machines = [floor_machine("a", "print")];
    let mut jobs: Vec<FloorJob> = (1..=10).map(|t| print_job(t, 100_000)).collect();
    let plan = plan_floor(&jobs, &machines, 1, 0, &mut || 0.0).expect("valid");
    jobs.push(print_job(99, 2_500));
    let again = replan_floor(&plan, &jobs, &machines, 1, 0, &mut || 0.0).expect("valid");
    let queue = tokens_on(&again, "a");
    assert!(
        queue.iter().position(|t| *t == 99) <= Some(1),
        "the rush job waits behind planned work: {queue:?}"
    );
    assert_eq!(again.late_orders, 0);
    // The others keep their order around it.
    let others: Vec<u32> = queue.into_iter().filter(|t| *t != 99).collect();
    assert_eq!(others, tokens_on(&plan, "a"));
}

#[test]
fn a_step_keeps_its_machine_once_the_step_before_it_is_done() {
    let machines = [
        floor_machine("p1", "print"),
        floor_machine("p2", "print"),
        floor_machine("h1", "press"),
        floor_machine("h2", "press"),
    ];
    let two_steps = |token: u32| FloorJob {
        steps: vec![
            FloorStep {
                process: "print".into(),
                material: "cotton".into(),
                base_duration_ms: 2_000,
            },
            FloorStep {
                process: "press".into(),
                material: "cotton".into(),
                base_duration_ms: 1_000 + 500 * i64::from(token % 3),
            },
        ],
        ..print_job(token, 30_000)
    };
    let jobs: Vec<FloorJob> = (1..=8).map(two_steps).collect();
    let plan = plan_floor(&jobs, &machines, 3, 200, &mut || 0.0).expect("valid");
    let press_of = |plan: &FloorPlan, token: u32| {
        plan.queues
            .iter()
            .find(|(_, queue)| {
                queue
                    .iter()
                    .any(|p| p.token.0 == token && p.steps_after == 0)
            })
            .map(|(id, _)| id.clone())
    };
    // Job 1's print step is done: what is left of it is its press step,
    // now its step 0.
    let mut later = jobs.clone();
    later[0].steps.remove(0);
    let again = replan_floor(&plan, &later, &machines, 3, 0, &mut || 0.0).expect("valid");
    for token in 1..=8 {
        assert_eq!(
            press_of(&again, token),
            press_of(&plan, token),
            "job {token}"
        );
    }
}

/// A floor plan as the engine's operations of `built` (for `check`).
fn operations_of(
    built: &floor::Built,
    machines: &[FloorMachine],
    plan: &FloorPlan,
) -> Vec<ScheduledOp> {
    let job_of: std::collections::HashMap<JobToken, usize> = built
        .placed
        .iter()
        .enumerate()
        .map(|(j, job)| (job.token, j))
        .collect();
    let mut operations = Vec::new();
    for (id, queue) in &plan.queues {
        let machine = machines
            .iter()
            .position(|m| &m.id == id)
            .expect("known machine");
        for p in queue {
            operations.push(ScheduledOp {
                job: job_of[&p.token],
                op: p.step,
                machine,
                start: p.start_ms,
                end: p.end_ms,
            });
        }
    }
    operations
}

/// A random floor for the repair: machines of two processes, some with
/// setups, a loaded material and shifts; jobs of one or two steps, some
/// bound to a factory, some with their first step running.
fn repair_strategy() -> impl Strategy<Value = (Vec<FloorMachine>, Vec<FloorJob>)> {
    let machines = prop::collection::vec(
        (
            0usize..2,
            0usize..2,
            any::<bool>(),
            0i64..3_000,
            any::<bool>(),
            0i64..2_000,
        ),
        1..7,
    );
    let jobs = prop::collection::vec(
        (
            0usize..3,
            prop::collection::vec((0usize..2, 0usize..2, 1i64..3_000), 1..3),
            0i64..30_000,
            0usize..4,
        ),
        0..16,
    );
    (machines, jobs).prop_map(|(machines, jobs)| {
        let factories = ["f0", "f1"];
        let processes = ["print", "press"];
        let materials = ["cotton", "tote"];
        let machines: Vec<FloorMachine> = machines
            .into_iter()
            .enumerate()
            .map(|(i, (f, p, loaded, setup, shifts, busy))| FloorMachine {
                id: MachineId::new(format!("m{i}")),
                factory: FactoryId::new(factories[f]),
                location: Location::new(52.5 + f as f64 / 10.0, 13.4),
                capabilities: vec![processes[p].into(), processes[(p + i) % 2].into()],
                materials: materials.iter().map(|m| m.to_string()).collect(),
                accepts_jobs: true,
                speed: 1.0 + (i % 3) as f64 / 2.0,
                setup_ms: setup,
                loaded_material: loaded.then(|| materials[i % 2].to_string()),
                available_from_ms: busy,
                openings: if shifts {
                    Openings {
                        shifts: Some(vec![(0, 4_000), (8_000, 14_000)]),
                        blocked: vec![(10_000, 10_500)],
                        until: 20_000,
                    }
                } else {
                    Openings::default()
                },
            })
            .collect();
        let mut busy: Vec<MachineId> = Vec::new();
        let jobs = jobs
            .into_iter()
            .enumerate()
            .map(|(t, (f, steps, due, run))| {
                let steps: Vec<FloorStep> = steps
                    .into_iter()
                    .map(|(p, m, ms)| FloorStep {
                        process: processes[p].into(),
                        material: materials[m].into(),
                        base_duration_ms: ms,
                    })
                    .collect();
                // Every fourth job or so has its first step running on a
                // machine that has that process and runs nothing else.
                let running = (run == 0)
                    .then(|| {
                        machines
                            .iter()
                            .find(|m| {
                                m.capabilities.contains(&steps[0].process) && !busy.contains(&m.id)
                            })
                            .map(|m| Running {
                                machine: m.id.clone(),
                                started_ms: 0,
                                ends_ms: steps[0].base_duration_ms,
                            })
                    })
                    .flatten();
                busy.extend(running.iter().map(|r| r.machine.clone()));
                FloorJob {
                    token: JobToken(t as u32),
                    order: format!("o{}", t / 2),
                    factory: factories.get(f).map(|id| FactoryId::new(*id)),
                    steps,
                    running,
                    release_ms: (t as i64 % 3) * 500,
                    due_ms: due,
                    customer: (t % 2 == 0).then(|| Location::new(52.52, 13.4)),
                }
            })
            .collect();
        (machines, jobs)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// After machines stop taking jobs, some jobs finish a step or leave
    /// and new ones arrive, the repaired plan is feasible by the engine's
    /// own checker, scored as the engine scores it, keeps running steps,
    /// places every job it does not call unplaceable, and keeps the order
    /// of the steps that kept their machine.
    #[test]
    fn a_repaired_plan_is_feasible_and_keeps_what_held(
        (machines, jobs) in repair_strategy(),
        down in prop::collection::vec(any::<bool>(), 7),
        changes in prop::collection::vec(0usize..4, 16),
        new_jobs in 0usize..5,
        iterations in 0u64..60,
    ) {
        let plan = plan_floor(&jobs, &machines, 1, iterations, &mut || 0.0).expect("valid");
        let mut now_machines = machines.clone();
        for (m, down) in now_machines.iter_mut().zip(&down) {
            if *down {
                m.accepts_jobs = false;
            }
        }
        let mut now_jobs: Vec<FloorJob> = Vec::new();
        for (job, change) in jobs.iter().zip(&changes) {
            match change {
                // Done and gone.
                0 => {}
                // Its first step is done (a running one: the next waits).
                1 if job.steps.len() > 1 => {
                    let mut job = job.clone();
                    job.steps.remove(0);
                    job.running = None;
                    now_jobs.push(job);
                }
                _ => now_jobs.push(job.clone()),
            }
        }
        for k in 0..new_jobs {
            let mut job = jobs.first().cloned().unwrap_or_else(|| print_job(0, 5_000));
            job.token = JobToken(1_000 + k as u32);
            job.running = None;
            job.due_ms = 2_000 * k as i64;
            now_jobs.push(job);
        }
        // Never a cycle: steps are placed only where a topological
        // potential fits.
        let repaired = repair_floor(&plan, &now_jobs, &now_machines, usize::MAX);
        prop_assert!(repaired.is_some(), "the repair closed a cycle");
        let repaired = repaired.expect("checked");
        let built = floor::build(&now_jobs, &now_machines, None);
        let operations = operations_of(&built, &now_machines, &repaired);
        prop_assert_eq!(check(&built.problem, &operations), Ok(()));
        let score = floor_score(&built.problem, &operations);
        prop_assert_eq!(
            (score.late_orders, score.total_lateness, score.setup_time, score.distance),
            (repaired.late_orders, repaired.total_lateness_ms, repaired.setup_ms, repaired.distance_m)
        );
        let unplaceable = |plan: &FloorPlan| {
            let mut tokens: Vec<JobToken> = plan.unplaceable.iter().map(|(t, _)| *t).collect();
            tokens.sort();
            tokens
        };
        let expected: Vec<JobToken> = {
            let mut tokens: Vec<JobToken> = built.unplaceable.iter().map(|(t, _)| *t).collect();
            tokens.sort();
            tokens
        };
        prop_assert_eq!(unplaceable(&repaired), expected);
        // Jobs that wait and whose steps were all planned on machines
        // still up keep their machines, and their order on each.
        let down_ids: Vec<&MachineId> = now_machines
            .iter()
            .filter(|m| !m.accepts_jobs)
            .map(|m| &m.id)
            .collect();
        let kept_jobs: Vec<JobToken> = now_jobs
            .iter()
            .filter(|job| job.running.is_none())
            .filter(|job| {
                plan.queues.iter().all(|(id, queue)| {
                    !down_ids.contains(&id) || queue.iter().all(|p| p.token != job.token)
                })
            })
            .filter(|job| plan.queues.values().flatten().any(|p| p.token == job.token))
            .map(|job| job.token)
            .collect();
        for (id, queue) in &repaired.queues {
            let key = |p: &PlannedStep| (p.token, p.steps_after);
            let now: Vec<_> = queue
                .iter()
                .filter(|p| kept_jobs.contains(&p.token))
                .map(key)
                .collect();
            let before: Vec<_> = plan.queues[id]
                .iter()
                .filter(|p| kept_jobs.contains(&p.token))
                .map(key)
                .filter(|k| now_jobs.iter().any(|j| j.token == k.0 && k.1 < j.steps.len()))
                .collect();
            prop_assert_eq!(now, before, "on {}", id);
        }
    }
}

#[test]
fn a_repair_after_a_fault_moves_only_that_machines_steps() {
    let machines: Vec<FloorMachine> = ["a", "b", "c"]
        .iter()
        .map(|id| floor_machine(id, "print"))
        .collect();
    let jobs: Vec<FloorJob> = (1..=30)
        .map(|t| print_job(t, 20_000 + 997 * i64::from(t % 7)))
        .collect();
    let plan = plan_floor(&jobs, &machines, 1, 300, &mut || 0.0).expect("valid");
    let mut faulted = machines.clone();
    faulted[0].accepts_jobs = false;
    let on_a = tokens_on(&plan, "a");
    assert!(repair_floor(&plan, &jobs, &faulted, on_a.len() - 1).is_none());
    let again = repair_floor(&plan, &jobs, &faulted, on_a.len()).expect("repaired");
    assert!(tokens_on(&again, "a").is_empty(), "{again:?}");
    for id in ["b", "c"] {
        let kept: Vec<u32> = tokens_on(&again, id)
            .into_iter()
            .filter(|t| !on_a.contains(t))
            .collect();
        assert_eq!(kept, tokens_on(&plan, id), "{id}");
    }
    let planned: usize = again.queues.values().map(Vec::len).sum();
    assert_eq!(planned, jobs.len());
    // Nothing changed: the plan comes back as it was.
    let same = repair_floor(&plan, &jobs, &machines, 0).expect("nothing loose");
    assert_eq!(same, plan);
}

#[test]
fn a_repair_puts_a_rush_job_ahead_of_work_planned_after_its_latest_start() {
    let machines = [floor_machine("a", "print"), floor_machine("b", "print")];
    let mut jobs: Vec<FloorJob> = (1..=10).map(|t| print_job(t, 100_000)).collect();
    let plan = plan_floor(&jobs, &machines, 1, 0, &mut || 0.0).expect("valid");
    jobs.push(print_job(99, 2_500));
    let again = repair_floor(&plan, &jobs, &machines, 1).expect("repaired");
    let (id, queue) = again
        .queues
        .iter()
        .find(|(_, q)| q.iter().any(|p| p.token.0 == 99))
        .expect("placed");
    assert!(
        queue.iter().position(|p| p.token.0 == 99) <= Some(1),
        "the rush job waits behind planned work on {id}: {queue:?}"
    );
    assert_eq!(again.late_orders, 0);
    for (id, queue) in &again.queues {
        let others: Vec<u32> = queue
            .iter()
            .map(|p| p.token.0)
            .filter(|t| *t != 99)
            .collect();
        assert_eq!(others, tokens_on(&plan, id.as_str()), "{id}");
    }
}
