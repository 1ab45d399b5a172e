//! Store scenarios: Jobs: the lifecycle and its follow-ups (order moves, units made again), lost jobs, scheduling reads.

use super::*;

#[tokio::test]
async fn job_lifecycle_moves_the_order_and_replaces_scrap() {
    on_every_backend(|store| async move {
        store
            .accept_orders(&[new_order("o1", "acme", None)])
            .await
            .expect("accept");
        // Only the first step is schedulable until it is done.
        let ready = store.schedulable_jobs(10).await.expect("schedulable");
        assert_eq!(ready.len(), 1);
        let print = ready[0].token;
        let machine = MachineId::new("dtg-1");
        assert_eq!(
            store
                .schedule_jobs(&[(print, machine.clone())], NOW)
                .await
                .expect("schedule"),
            1
        );
        // Scheduling it twice is a no-op, not a second queue entry.
        assert_eq!(
            store
                .schedule_jobs(&[(print, machine.clone())], NOW)
                .await
                .expect("schedule"),
            0
        );
        assert_eq!(store.machine_queue("dtg-1").await.expect("queue").len(), 1);
        let moved = store
            .transition_job(print, JobInput::Dispatch, NOW)
            .await
            .expect("dispatch");
        assert_eq!(moved.order_state, Some(OrderState::InProduction));
        // A stale compare-and-set fails and changes nothing.
        let stale = store.transition_job(print, JobInput::Dispatch, NOW).await;
        assert!(matches!(stale, Err(StoreError::Transition(_))), "{stale:?}");
        let finished = store
            .transition_job(print, JobInput::MachineFinished { good: 1, scrap: 1 }, NOW)
            .await
            .expect("finish");
        let remake = finished.replacement.expect("scrap is made again");
        assert_eq!(
            store
                .get_job(remake)
                .await
                .expect("get")
                .map(|j| (j.quantity, j.replaces)),
            Some((1, Some(print)))
        );
        // The press waits for the remake of the print.
        let ready: Vec<JobToken> = store
            .schedulable_jobs(10)
            .await
            .expect("schedulable")
            .iter()
            .map(|j| j.token)
            .collect();
        assert_eq!(ready, vec![remake]);
        for token in [remake] {
            store
                .schedule_jobs(&[(token, machine.clone())], NOW)
                .await
                .expect("schedule");
            store
                .transition_job(token, JobInput::Dispatch, NOW)
                .await
                .expect("dispatch");
            store
                .transition_job(token, JobInput::MachineFinished { good: 1, scrap: 0 }, NOW)
                .await
                .expect("finish");
        }
        let press = store.schedulable_jobs(10).await.expect("schedulable");
        assert_eq!(press.len(), 1);
        let press = press[0].token;
        store
            .schedule_jobs(&[(press, MachineId::new("press-1"))], NOW)
            .await
            .expect("schedule");
        store
            .transition_job(press, JobInput::Dispatch, NOW)
            .await
            .expect("dispatch");
        let running = store
            .transition_job(press, JobInput::MachineStarted, NOW)
            .await
            .expect("start");
        assert_eq!(running.order_state, None);
        let done = store
            .transition_job(press, JobInput::MachineFinished { good: 2, scrap: 0 }, NOW)
            .await
            .expect("finish");
        assert_eq!(done.order_state, Some(OrderState::Ready));
        let kinds = outbox_kinds(&store).await;
        assert_eq!(kinds.iter().filter(|k| *k == "job.done").count(), 3);
        assert_eq!(kinds.last().map(String::as_str), Some("order.ready"));
    })
    .await;
}

#[tokio::test]
async fn a_lost_job_goes_back_to_pending_and_cancel_spares_running_orders() {
    on_every_backend(|store| async move {
        store
            .accept_orders(&[new_order("o1", "acme", None), new_order("o2", "acme", None)])
            .await
            .expect("accept");
        let ready = store.schedulable_jobs(10).await.expect("schedulable");
        let (first, second) = (ready[0].token, ready[1].token);
        store
            .schedule_jobs(&[(first, MachineId::new("m"))], NOW)
            .await
            .expect("schedule");
        store
            .transition_job(first, JobInput::Dispatch, NOW)
            .await
            .expect("dispatch");
        let lost = store
            .transition_job(first, JobInput::StartRefused, NOW)
            .await
            .expect("lost");
        assert_eq!(
            (lost.job.state, lost.job.machine),
            (JobState::Pending, None)
        );
        store
            .schedule_jobs(&[(first, MachineId::new("m"))], NOW)
            .await
            .expect("schedule");
        store
            .transition_job(first, JobInput::Dispatch, NOW)
            .await
            .expect("dispatch");
        let order_of_first = lost.job.order_id.clone();
        let refused = store
            .cancel_order(&order_of_first, Some("acme"), "brand:acme", NOW)
            .await;
        assert!(
            matches!(refused, Err(StoreError::Conflict(_))),
            "{refused:?}"
        );
        let other = store
            .get_job(second)
            .await
            .expect("get")
            .expect("job")
            .order_id;
        assert!(matches!(
            store
                .cancel_order(&other, Some("zest"), "brand:zest", NOW)
                .await,
            Err(StoreError::NotFound(_))
        ));
        let cancelled = store
            .cancel_order(&other, Some("acme"), "brand:acme", NOW)
            .await
            .expect("cancel");
        assert_eq!(cancelled.state, OrderState::Cancelled);
        assert_eq!(
            store.get_job(second).await.expect("get").map(|j| j.state),
            Some(JobState::Cancelled)
        );
        let counts = store.order_counts().await.expect("counts");
        assert_eq!(counts.get(&OrderState::Cancelled), Some(&1));
        assert_eq!(counts.get(&OrderState::InProduction), Some(&1));
    })
    .await;
}

#[tokio::test]
async fn jobs_of_one_order_finishing_at_once_still_make_it_ready() {
    on_every_backend(|store| async move {
        let mut order = new_order("twin", "acme", None);
        // Two independent single-step lines: both jobs are schedulable at once.
        order.jobs = vec![plan(0, 0, "dtg_print"), plan(1, 0, "dtg_print")];
        for round in 0..15 {
            let mut order = order.clone();
            order.id = OrderId::new(format!("twin-{round}"));
            store.accept_orders(&[order.clone()]).await.expect("accept");
            let jobs: Vec<JobToken> = store
                .list_jobs(&JobFilter {
                    order_id: Some(order.id.to_string()),
                    limit: 10,
                    ..Default::default()
                })
                .await
                .expect("jobs")
                .iter()
                .map(|j| j.token)
                .collect();
            for token in &jobs {
                store
                    .schedule_jobs(&[(*token, MachineId::new("m"))], NOW)
                    .await
                    .expect("schedule");
                store
                    .transition_job(*token, JobInput::Dispatch, NOW)
                    .await
                    .expect("dispatch");
            }
            let finish = |token| {
                store.transition_job(token, JobInput::MachineFinished { good: 2, scrap: 0 }, NOW)
            };
            let (a, b) = tokio::join!(finish(jobs[0]), finish(jobs[1]));
            a.expect("first");
            b.expect("second");
            let state = store
                .get_order(&order.id, None)
                .await
                .expect("get")
                .map(|o| o.state);
            assert_eq!(state, Some(OrderState::Ready), "round {round}");
        }
    })
    .await;
}

#[tokio::test]
async fn a_backlog_elsewhere_does_not_hide_schedulable_work() {
    on_every_backend(|store| async move {
        // 30 early orders for a factory, then one late order for another.
        let mut batch: Vec<NewOrder> = (0..30)
            .map(|i| new_order(&format!("n{i:02}"), "acme", None))
            .collect();
        let mut late = new_order("s00", "acme", None);
        late.factory = "south".into();
        for job in &mut late.jobs {
            job.due_ms += 1_000_000;
        }
        batch.push(late);
        store.accept_orders(&batch).await.expect("accept");
        let candidates = store.schedulable_jobs(5).await.expect("schedulable");
        let north = candidates
            .iter()
            .filter(|c| c.factory.as_str() == "north")
            .count();
        let south = candidates
            .iter()
            .filter(|c| c.factory.as_str() == "south")
            .count();
        assert_eq!(
            (north, south),
            (5, 1),
            "at most 5 per group, and every group is seen"
        );
    })
    .await;
}

#[tokio::test]
async fn a_unit_ruined_at_a_later_step_is_made_again_from_the_first() {
    on_every_backend(|store| async move {
        store
            .accept_orders(&[new_order("o1", "acme", None)])
            .await
            .expect("accept");
        let run = |token: JobToken, good: u32, scrap: u32| {
            let store = store.clone();
            async move {
                store
                    .schedule_jobs(&[(token, MachineId::new("m"))], NOW)
                    .await
                    .expect("schedule");
                store
                    .transition_job(token, JobInput::Dispatch, NOW)
                    .await
                    .expect("dispatch");
                store
                    .transition_job(token, JobInput::MachineFinished { good, scrap }, NOW)
                    .await
                    .expect("finish")
            }
        };
        let print = store.schedulable_jobs(10).await.expect("schedulable")[0].token;
        assert_eq!(run(print, 2, 0).await.replacement, None);
        let press = store.schedulable_jobs(10).await.expect("schedulable")[0].token;
        // One pressed unit ruined, and one missing (good + scrap < quantity).
        let pressed = run(press, 0, 1).await;
        assert!(pressed.replacement.is_some());
        assert_eq!(pressed.order_state, None, "not ready: two units short");
        let jobs = store
            .list_jobs(&JobFilter {
                order_id: Some("o1".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("jobs");
        let redo: Vec<(i64, u32, Option<u32>)> = jobs
            .iter()
            .filter(|j| j.replaces.is_some())
            .map(|j| (j.step_index, j.quantity, j.replaces.map(|t| t.0)))
            .collect();
        assert_eq!(redo, vec![(0, 2, Some(press.0)), (1, 2, Some(press.0))]);
        // Print again, then press again: the order is ready.
        let again = store.schedulable_jobs(10).await.expect("schedulable");
        assert_eq!(again.len(), 1, "the new press waits for the new print");
        run(again[0].token, 2, 0).await;
        let press_again = store.schedulable_jobs(10).await.expect("schedulable")[0].token;
        assert_eq!(
            run(press_again, 2, 0).await.order_state,
            Some(OrderState::Ready)
        );
    })
    .await;
}

#[tokio::test]
async fn a_dispatch_stores_the_counter_baseline_with_the_job() {
    on_every_backend(|store| async move {
        store
            .accept_orders(&[new_order("o1", "acme", None)])
            .await
            .expect("accept");
        let token = store.schedulable_jobs(10).await.expect("schedulable")[0].token;
        store
            .schedule_jobs(&[(token, MachineId::new("emb-1"))], NOW)
            .await
            .expect("schedule");
        let baseline = CounterBaseline {
            good: 65_535,
            scrap: 7,
        };
        let moved = store
            .dispatch_job(token, Some(baseline), NOW)
            .await
            .expect("dispatch");
        assert_eq!(moved.job.state, JobState::Dispatched);
        assert_eq!(moved.job.baseline, Some(baseline));
        // Read back as a restarted daemon would: from the machine's queue.
        let queue = store.machine_queue("emb-1").await.expect("queue");
        assert_eq!(queue.len(), 1);
        assert_eq!(queue[0].baseline, Some(baseline));
        // The dispatch is a compare-and-set like any transition.
        let again = store.dispatch_job(token, None, NOW).await;
        assert!(matches!(again, Err(StoreError::Transition(_))), "{again:?}");
        assert_eq!(
            store
                .get_job(token)
                .await
                .expect("get")
                .and_then(|j| j.baseline),
            Some(baseline)
        );
    })
    .await;
}

#[tokio::test]
async fn a_held_job_is_resumed_or_abandoned_and_an_abandoned_token_is_never_reused() {
    on_every_backend(|store| async move {
        store
            .register_machines(
                &[MachineSpec {
                    id: "m".into(),
                    factory: "north".into(),
                    model: "acme-dtg-200".into(),
                    address: "127.0.0.1:5020".into(),
                    capabilities: vec!["dtg_print".into()],
                    materials: vec!["cotton_tee".into()],
                }],
                NOW,
            )
            .await
            .expect("register");
        report_idle(&store, "m").await;
        store
            .accept_orders(&[new_order("o1", "acme", None)])
            .await
            .expect("accept");
        let token = store.schedulable_jobs(10).await.expect("schedulable")[0].token;
        store
            .schedule_jobs(&[(token, MachineId::new("m"))], NOW)
            .await
            .expect("schedule");
        for input in [JobInput::Dispatch, JobInput::MachineStarted] {
            store.transition_job(token, input, NOW).await.expect("move");
        }
        let quantity = store
            .get_job(token)
            .await
            .expect("get")
            .expect("job")
            .quantity;
        assert!(quantity >= 2, "the test needs a job of several units");
        let held = store
            .transition_job(
                token,
                JobInput::MachineHeld {
                    cause: HoldCause::Fault,
                    fault_code: Some(42),
                    counts: Some((1, 0)),
                },
                NOW,
            )
            .await
            .expect("held");
        assert_eq!(
            (
                held.job.state,
                held.job.fault_code,
                held.job.hold_cause,
                held.job.good
            ),
            (JobState::Held, Some(42), Some(HoldCause::Fault), 1)
        );
        // Still on its machine: in its queue.
        assert_eq!(store.machine_queue("m").await.expect("queue").len(), 1);
        // The machine (as last observed) does not show the job: no resume.
        let refused = store
            .decide_held_job(token, JobInput::Resume, "operator:north", NOW)
            .await;
        assert!(
            matches!(refused, Err(StoreError::Conflict(_))),
            "{refused:?}"
        );
        store
            .observe_machine(
                "m",
                MachineInput::Reported(crate::domain::Reported::Idle),
                Some(token.0),
                None,
                NOW,
            )
            .await
            .expect("observe");
        let resumed = store
            .decide_held_job(token, JobInput::Resume, "operator:north", NOW)
            .await
            .expect("resume");
        assert_eq!(
            (resumed.job.state, resumed.job.fault_code),
            (JobState::Running, None)
        );
        // Held again, then abandoned: only the units not reported good are remade.
        store
            .transition_job(
                token,
                JobInput::MachineHeld {
                    cause: HoldCause::Lost,
                    fault_code: None,
                    counts: None,
                },
                NOW,
            )
            .await
            .expect("held again");
        let abandoned = store
            .decide_held_job(token, JobInput::Abandon, "operator:north", NOW)
            .await
            .expect("abandon");
        assert_eq!(
            (abandoned.job.state, abandoned.job.good),
            (JobState::Failed, 1)
        );
        let remake = abandoned.replacement.expect("units remade");
        let remade = store.get_job(remake).await.expect("get").expect("job");
        assert_eq!(
            (remade.quantity, remade.replaces),
            (quantity - 1, Some(token))
        );
        assert_ne!(remake, token, "remade under a new token");
        assert!(store.is_retired(token).await.expect("retired"));
        // A second decision is refused: the job is no longer held.
        let again = store
            .decide_held_job(token, JobInput::Abandon, "operator:north", NOW)
            .await;
        assert!(matches!(again, Err(StoreError::Transition(_))), "{again:?}");
        // Each decision is audited once.
        let audit = store.list_audit(None, 100).await.expect("audit");
        let actions: Vec<&str> = audit.iter().map(|a| a.action.as_str()).collect();
        assert_eq!(actions, ["job.resume", "job.abandon"]);
        // Events: held, resumed, held, abandoned.
        let kinds = outbox_kinds(&store).await;
        for kind in ["job.held", "job.resumed", "job.abandoned"] {
            assert!(kinds.iter().any(|k| k == kind), "{kind} in {kinds:?}");
        }
    })
    .await;
}

#[tokio::test]
async fn a_retired_token_is_never_dispatched_again() {
    on_every_backend(|store| async move {
        store
            .accept_orders(&[new_order("o1", "acme", None)])
            .await
            .expect("accept");
        let token = store.schedulable_jobs(10).await.expect("schedulable")[0].token;
        store
            .schedule_jobs(&[(token, MachineId::new("m"))], NOW)
            .await
            .expect("schedule");
        store
            .transition_job(token, JobInput::Dispatch, NOW)
            .await
            .expect("dispatch");
        // Start outcome unknown, machine without the token: retired.
        let failed = store
            .transition_job(token, JobInput::MachineAborted { fault_code: None }, NOW)
            .await
            .expect("retire");
        assert_eq!(failed.job.state, JobState::Failed);
        assert!(failed.replacement.is_some());
        assert!(store.is_retired(token).await.expect("retired"));
        // Even a row put back to scheduled by hand is never dispatched.
        store
            .write_statement(
                sqlx::query("UPDATE jobs SET state = 'scheduled' WHERE token = $1")
                    .bind(i64::from(token.0)),
            )
            .await
            .expect("tamper");
        let dispatched = store.transition_job(token, JobInput::Dispatch, NOW).await;
        assert!(
            matches!(dispatched, Err(StoreError::Conflict(_))),
            "{dispatched:?}"
        );
    })
    .await;
}

#[tokio::test]
async fn schedulable_jobs_carry_work_and_customer_and_backlogs_count_queued_work() {
    on_every_backend(|store| async move {
        store
            .accept_orders(&[new_order("o1", "acme", None)])
            .await
            .expect("accept");
        let ready = store.schedulable_jobs(10).await.expect("schedulable");
        assert_eq!(ready.len(), 1);
        let job = &ready[0];
        assert_eq!(job.order_id.as_str(), "o1");
        assert_eq!((job.quantity, job.seconds_per_unit), (2, 60.0));
        assert_eq!(job.customer, Location::new(52.5, 13.4));
        assert!(store.machine_backlogs().await.expect("backlogs").is_empty());
        store
            .schedule_jobs(&[(job.token, MachineId::new("dtg-1"))], NOW)
            .await
            .expect("schedule");
        let backlogs = store.machine_backlogs().await.expect("backlogs");
        assert_eq!(backlogs.get("dtg-1").copied(), Some(120.0));
        assert_eq!(backlogs.len(), 1);
    })
    .await;
}

#[tokio::test]
async fn queued_jobs_not_started_go_back_to_the_planner() {
    on_every_backend(|store| async move {
        store
            .accept_orders(&[
                new_order("later", "acme", None),
                new_order("rush", "acme", None),
            ])
            .await
            .expect("accept");
        let ready = store.schedulable_jobs(10).await.expect("schedulable");
        let first_of = |order: &str| {
            ready
                .iter()
                .find(|j| j.order_id.as_str() == order)
                .map(|j| j.token)
                .expect("a ready job")
        };
        let (later, rush) = (first_of("later"), first_of("rush"));
        store
            .write_statement(sqlx::query(
                "UPDATE jobs SET due_ms = due_ms - 3600000 WHERE order_id = 'rush'",
            ))
            .await
            .expect("due sooner");
        store
            .schedule_jobs(&[(later, MachineId::new("m"))], NOW)
            .await
            .expect("schedule");
        let queued = store.jobs_not_started().await.expect("queued");
        assert_eq!(queued.len(), 1, "{queued:?}");
        let (token, machine, due_ms) = queued[0].clone();
        assert_eq!((token, machine.as_str()), (later, "m"));
        // Ready and due before the queued one: the rush order's first step
        // only (its second waits for it), and only when due strictly before.
        let sooner = store
            .ready_jobs_due_before(due_ms, 10)
            .await
            .expect("ready");
        assert_eq!(sooner.iter().map(|j| j.token).collect::<Vec<_>>(), [rush]);
        assert!(
            store
                .ready_jobs_due_before(due_ms - 3_600_000, 10)
                .await
                .expect("ready")
                .is_empty()
        );
        // Handed back: the queued job only (the rush job is not queued).
        assert_eq!(
            store
                .hand_back_jobs(&[later, rush], NOW)
                .await
                .expect("back"),
            1
        );
        let job = store.get_job(later).await.expect("read").expect("job");
        assert_eq!(job.state, JobState::Pending);
        assert!(store.jobs_not_started().await.expect("queued").is_empty());
    })
    .await;
}
