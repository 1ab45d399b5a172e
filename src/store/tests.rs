//! Store tests: every scenario runs on a fresh SQLite file, and on a fresh
//! PostgreSQL database when FABFLOW_TEST_POSTGRES_URL is set.

use super::*;
use crate::domain::intake::{JobPlan, LineRequest};
use crate::domain::{
    HandoffKind, HandoffState, JobInput, JobState, JobToken, Location, MachineId, OrderState,
};
use orders::Idempotency;
use sqlx::AssertSqlSafe;
use std::future::Future;

const NOW: Millis = 1_800_000_000_000;

/// Runs `scenario` on SQLite, then on PostgreSQL if configured.
async fn on_every_backend<F, Fut>(scenario: F)
where
    F: Fn(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let store = Store::connect(&url).await.expect("sqlite store");
    scenario(store.clone()).await;
    store.close().await;
    match std::env::var("FABFLOW_TEST_POSTGRES_URL") {
        Ok(base) if !base.is_empty() => {
            let store = fresh_postgres(&base).await;
            scenario(store.clone()).await;
            store.close().await;
        }
        _ => eprintln!(
            "store: PostgreSQL scenarios skipped (set FABFLOW_TEST_POSTGRES_URL to run them)"
        ),
    }
}

/// A new, empty PostgreSQL database for one scenario.
pub(crate) async fn fresh_postgres(base: &str) -> Store {
    sqlx::any::install_default_drivers();
    let name = format!("fabflow_test_{}", uuid::Uuid::new_v4().simple());
    let admin = sqlx::AnyPool::connect(base)
        .await
        .expect("connect to PostgreSQL");
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("create database");
    admin.close().await;
    let (prefix, _) = base
        .rsplit_once('/')
        .expect("postgres URL with a database name");
    Store::connect(&format!("{prefix}/{name}"))
        .await
        .expect("postgres store")
}

fn plan(line_index: usize, step_index: usize, process: &str) -> JobPlan {
    JobPlan {
        line_index,
        step_index,
        process: process.into(),
        recipe: 11,
        material: "cotton_tee".into(),
        quantity: 2,
        seconds_per_unit: 60.0,
        due_ms: NOW + 3_600_000,
    }
}

fn new_order(id: &str, brand: &str, key: Option<&str>) -> NewOrder {
    NewOrder {
        id: id.into(),
        brand: brand.into(),
        external_ref: Some(format!("ref-{id}")),
        customer_name: "Ada".into(),
        location: Location::new(52.5, 13.4),
        zone: "berlin".into(),
        factory: "north".into(),
        lines: vec![LineRequest {
            sku: "tee".into(),
            quantity: 2,
        }],
        deadline_ms: NOW + 48 * 3_600_000,
        accepted_ms: NOW,
        jobs: vec![plan(0, 0, "dtg_print"), plan(0, 1, "heat_press")],
        follows: false,
        idempotency: key.map(|key| Idempotency {
            key: key.into(),
            request_hash: format!("hash-{id}"),
            status: 201,
            response: format!("{{\"id\":\"{id}\"}}"),
        }),
    }
}

async fn outbox_kinds(store: &Store) -> Vec<String> {
    store
        .unpublished(10_000)
        .await
        .expect("outbox")
        .into_iter()
        .map(|event| event.kind)
        .collect()
}

#[tokio::test]
async fn orders_are_accepted_with_jobs_and_events_and_keys_replay() {
    on_every_backend(|store| async move {
        let batch = [
            new_order("o1", "acme", Some("k1")),
            new_order("o2", "acme", Some("k1")),
            new_order("o3", "zest", None),
        ];
        let mut reused = batch[1].clone();
        reused.idempotency = batch[0].idempotency.clone();
        let outcomes = store
            .accept_orders(&[batch[0].clone(), reused.clone(), batch[2].clone()])
            .await
            .expect("accept");
        assert_eq!(
            outcomes,
            vec![
                AcceptOutcome::Created,
                AcceptOutcome::Replayed {
                    status: 201,
                    response: "{\"id\":\"o1\"}".into()
                },
                AcceptOutcome::Created
            ]
        );
        // Same key, different body: refused, nothing stored.
        let outcomes = store
            .accept_orders(&[batch[1].clone()])
            .await
            .expect("accept");
        assert_eq!(outcomes, vec![AcceptOutcome::KeyReused]);
        assert!(store.get_order("o2", None).await.expect("get").is_none());

        let order = store
            .get_order("o1", Some("acme"))
            .await
            .expect("get")
            .expect("o1");
        assert_eq!(order.state, OrderState::Accepted);
        assert_eq!(order.lines[0].sku, "tee");
        // Another brand's order does not exist for this brand.
        assert!(
            store
                .get_order("o3", Some("acme"))
                .await
                .expect("get")
                .is_none()
        );
        let acme = store
            .list_orders(&OrderFilter {
                brand: Some("acme".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(
            acme.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(),
            vec!["o1"]
        );
        let all = store
            .list_orders(&OrderFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(all.len(), 2);
        let page = store
            .list_orders(&OrderFilter {
                after: Some("o1".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(
            page.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(),
            vec!["o3"]
        );

        let jobs = store
            .list_jobs(&JobFilter {
                order_id: Some("o1".into()),
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("jobs");
        assert_eq!(jobs.len(), 2);
        assert!(jobs.iter().all(|job| job.state == JobState::Pending));
        assert_ne!(jobs[0].token, jobs[1].token);
        assert_eq!(
            outbox_kinds(&store).await,
            vec!["order.accepted", "order.accepted"]
        );
    })
    .await;
}

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
            .transition_job(first, JobInput::MachineLost, NOW)
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
        let refused = store.cancel_order(&order_of_first, Some("acme"), NOW).await;
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
            store.cancel_order(&other, Some("zest"), NOW).await,
            Err(StoreError::NotFound(_))
        ));
        let cancelled = store
            .cancel_order(&other, Some("acme"), NOW)
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
async fn waves_and_confirmed_handoffs_deliver_orders() {
    on_every_backend(|store| async move {
        store
            .accept_orders(&[new_order("o1", "acme", None)])
            .await
            .expect("accept");
        for _ in 0..2 {
            let ready = store.schedulable_jobs(10).await.expect("schedulable");
            let token = ready[0].token;
            store
                .schedule_jobs(&[(token, MachineId::new("m"))], NOW)
                .await
                .expect("schedule");
            store
                .transition_job(token, JobInput::Dispatch, NOW)
                .await
                .expect("dispatch");
            store
                .transition_job(token, JobInput::MachineFinished { good: 2, scrap: 0 }, NOW)
                .await
                .expect("done");
        }
        let waiting = store.wave_orders("berlin").await.expect("wave orders");
        assert_eq!(waiting.len(), 1);
        let stop = |id: &str, kind, seq| HandoffRecord {
            id: id.into(),
            wave: "w1".into(),
            courier: "bike-1".into(),
            order_id: "o1".into(),
            kind,
            seq,
            place: "north".into(),
            location: Location::new(52.5, 13.4),
            eta_ms: NOW + seq,
            state: HandoffState::Planned,
            updated_ms: NOW,
        };
        store
            .save_wave(
                &[
                    stop("h1", HandoffKind::Pickup, 0),
                    stop("h2", HandoffKind::Dropoff, 1),
                ],
                NOW,
            )
            .await
            .expect("save wave");
        assert!(
            store
                .wave_orders("berlin")
                .await
                .expect("wave orders")
                .is_empty(),
            "planned orders are not replanned"
        );
        assert_eq!(
            store
                .courier_schedule("bike-1")
                .await
                .expect("schedule")
                .len(),
            2
        );
        assert!(
            store
                .courier_schedule("bike-2")
                .await
                .expect("schedule")
                .is_empty()
        );
        assert!(matches!(
            store.confirm_handoff("h1", Some("bike-2"), NOW).await,
            Err(StoreError::NotFound(_))
        ));
        store
            .confirm_handoff("h1", Some("bike-1"), NOW)
            .await
            .expect("pickup");
        assert_eq!(
            store
                .get_order("o1", None)
                .await
                .expect("get")
                .map(|o| o.state),
            Some(OrderState::OutForDelivery)
        );
        assert!(
            store
                .confirm_handoff("h1", Some("bike-1"), NOW)
                .await
                .is_err(),
            "a stop is confirmed once"
        );
        store
            .confirm_handoff("h2", None, NOW)
            .await
            .expect("drop-off");
        assert_eq!(
            store
                .get_order("o1", None)
                .await
                .expect("get")
                .map(|o| o.state),
            Some(OrderState::Delivered)
        );
    })
    .await;
}

#[tokio::test]
async fn machines_register_observe_and_change_mode() {
    use crate::domain::{MachineInput, MachineMode, MachineState, ModeInput, Reported};
    on_every_backend(|store| async move {
        let spec = MachineSpec {
            id: "dtg-1".into(),
            factory: "north".into(),
            model: "acme-dtg-200".into(),
            address: "127.0.0.1:5020".into(),
            capabilities: vec!["dtg_print".into()],
            materials: vec!["cotton_tee".into(), "tote".into()],
        };
        store
            .register_machines(std::slice::from_ref(&spec), NOW)
            .await
            .expect("register");
        let state = store
            .observe_machine(
                "dtg-1",
                MachineInput::Reported(Reported::Idle),
                Some(7),
                None,
                NOW,
            )
            .await
            .expect("observe");
        assert_eq!(state, MachineState::Idle);
        store
            .set_machine_mode("dtg-1", ModeInput::Pause, NOW)
            .await
            .expect("pause");
        assert!(
            store
                .set_machine_mode("dtg-1", ModeInput::Pause, NOW)
                .await
                .is_err()
        );
        // Re-registering keeps the operator's mode.
        store
            .register_machines(&[spec], NOW)
            .await
            .expect("register");
        let machine = store
            .get_machine("dtg-1")
            .await
            .expect("get")
            .expect("machine");
        assert_eq!(
            (machine.mode, machine.job_token),
            (MachineMode::Paused, Some(7))
        );
        assert_eq!(machine.materials, vec!["cotton_tee", "tote"]);
        assert_eq!(
            outbox_kinds(&store).await,
            vec!["machine.state_changed", "machine.mode_changed"]
        );
        let ids: Vec<String> = store
            .unpublished(10)
            .await
            .expect("outbox")
            .into_iter()
            .map(|e| e.id)
            .collect();
        store.mark_published(&ids, NOW).await.expect("mark");
        assert_eq!(store.outbox_backlog().await.expect("backlog"), 0);
        assert!(store.get_meta("clock").await.expect("meta").is_none());
        store.set_meta("clock", "1").await.expect("meta");
        store.set_meta("clock", "2").await.expect("meta");
        assert_eq!(
            store.get_meta("clock").await.expect("meta").as_deref(),
            Some("2")
        );
    })
    .await;
}

#[tokio::test]
async fn sqlite_runs_with_wal_and_full_sync() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::connect(&format!("sqlite://{}", dir.path().join("p.db").display()))
        .await
        .expect("store");
    let mode: String = sqlx::query("PRAGMA journal_mode")
        .fetch_one(&store.write)
        .await
        .expect("pragma")
        .get(0);
    let sync: i64 = sqlx::query("PRAGMA synchronous")
        .fetch_one(&store.write)
        .await
        .expect("pragma")
        .get(0);
    assert_eq!((mode.as_str(), sync), ("wal", 2));
}

#[tokio::test]
async fn large_batches_are_split_into_statements_and_keys_still_replay() {
    on_every_backend(|store| async move {
        let batch: Vec<NewOrder> = (0..1_200)
            .map(|i| new_order(&format!("o{i:05}"), "acme", Some(&format!("k{i}"))))
            .collect();
        let outcomes = store.accept_orders(&batch).await.expect("accept");
        assert!(outcomes.iter().all(|o| *o == AcceptOutcome::Created));
        let again = store.accept_orders(&batch).await.expect("replay");
        assert!(
            again
                .iter()
                .all(|o| matches!(o, AcceptOutcome::Replayed { .. })),
            "every key replays"
        );
        let counts = store.order_counts().await.expect("counts");
        assert_eq!(counts.get(&OrderState::Accepted), Some(&1_200));
        let jobs = store
            .list_jobs(&JobFilter {
                limit: 5_000,
                ..Default::default()
            })
            .await
            .expect("jobs");
        assert_eq!(jobs.len(), 2_400);
        let tokens: std::collections::BTreeSet<u32> = jobs.iter().map(|j| j.token.0).collect();
        assert_eq!(tokens.len(), 2_400, "tokens are unique");
        assert_eq!(store.outbox_backlog().await.expect("backlog"), 1_200);
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
            order.id = format!("twin-{round}");
            store.accept_orders(&[order.clone()]).await.expect("accept");
            let jobs: Vec<JobToken> = store
                .list_jobs(&JobFilter {
                    order_id: Some(order.id.clone()),
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
async fn followers_share_the_fate_of_their_leader() {
    on_every_backend(|store| async move {
        let file = |suffix: &str, hash: &str| {
            let mut first = new_order(&format!("f1{suffix}"), "acme", Some("import-1"));
            if let Some(idem) = first.idempotency.as_mut() {
                idem.request_hash = hash.into();
            }
            let mut second = new_order(&format!("f2{suffix}"), "acme", None);
            second.follows = true;
            vec![first, second]
        };
        let created = store.accept_orders(&file("", "h1")).await.expect("import");
        assert_eq!(
            created,
            vec![AcceptOutcome::Created, AcceptOutcome::Created]
        );
        // The same file again: replayed, nothing new.
        let again = store
            .accept_orders(&file("-again", "h1"))
            .await
            .expect("replay");
        assert!(
            again
                .iter()
                .all(|o| matches!(o, AcceptOutcome::Replayed { .. })),
            "{again:?}"
        );
        // Another file under the same key: refused whole.
        let other = store
            .accept_orders(&file("-other", "h2"))
            .await
            .expect("refuse");
        assert_eq!(
            other,
            vec![AcceptOutcome::KeyReused, AcceptOutcome::KeyReused]
        );
        let orders = store
            .list_orders(&OrderFilter {
                limit: 10,
                ..Default::default()
            })
            .await
            .expect("list");
        assert_eq!(
            orders.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(),
            vec!["f1", "f2"]
        );
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
async fn machines_dropped_from_the_configuration_give_their_jobs_back() {
    use crate::domain::{MachineInput, MachineState, Reported};
    on_every_backend(|store| async move {
        let spec = |id: &str| MachineSpec {
            id: id.into(),
            factory: "north".into(),
            model: "acme-dtg-200".into(),
            address: "127.0.0.1:5020".into(),
            capabilities: vec!["dtg_print".into()],
            materials: vec!["cotton_tee".into()],
        };
        store
            .register_machines(&[spec("keep"), spec("gone")], NOW)
            .await
            .expect("register");
        store
            .observe_machine(
                "gone",
                MachineInput::Reported(Reported::Idle),
                Some(1),
                None,
                NOW,
            )
            .await
            .expect("observe");
        store
            .accept_orders(&[new_order("o1", "acme", None), new_order("o2", "acme", None)])
            .await
            .expect("accept");
        let ready = store.schedulable_jobs(10).await.expect("schedulable");
        let (running, queued) = (ready[0].token, ready[1].token);
        store
            .schedule_jobs(
                &[
                    (running, MachineId::new("gone")),
                    (queued, MachineId::new("gone")),
                ],
                NOW,
            )
            .await
            .expect("schedule");
        store
            .transition_job(running, JobInput::Dispatch, NOW)
            .await
            .expect("dispatch");

        let retired = store
            .retire_unconfigured(&["keep".to_string()], NOW)
            .await
            .expect("retire");
        assert_eq!(retired, vec!["gone".to_string()]);
        let gone = store
            .get_machine("gone")
            .await
            .expect("get")
            .expect("machine");
        assert_eq!(gone.state, MachineState::Offline);
        let job = |token| {
            let store = store.clone();
            async move { store.get_job(token).await.expect("get").expect("job") }
        };
        assert_eq!(
            (job(queued).await.state, job(queued).await.machine),
            (JobState::Pending, None)
        );
        assert_eq!(
            job(running).await.state,
            JobState::Failed,
            "made again elsewhere"
        );
        assert!(store.machine_queue("gone").await.expect("queue").is_empty());
        assert!(
            store
                .retire_unconfigured(&["keep".to_string()], NOW)
                .await
                .expect("again")
                .is_empty()
        );
    })
    .await;
}

#[tokio::test]
async fn overdue_pickups_are_missed_and_their_orders_planned_again() {
    on_every_backend(|store| async move {
        store
            .accept_orders(&[new_order("o1", "acme", None)])
            .await
            .expect("accept");
        for _ in 0..2 {
            let token = store.schedulable_jobs(10).await.expect("schedulable")[0].token;
            store
                .schedule_jobs(&[(token, MachineId::new("m"))], NOW)
                .await
                .expect("schedule");
            store
                .transition_job(token, JobInput::Dispatch, NOW)
                .await
                .expect("dispatch");
            store
                .transition_job(token, JobInput::MachineFinished { good: 2, scrap: 0 }, NOW)
                .await
                .expect("done");
        }
        let stop = |id: &str, kind, seq, eta_ms| HandoffRecord {
            id: id.into(),
            wave: "w1".into(),
            courier: "bike-1".into(),
            order_id: "o1".into(),
            kind,
            seq,
            place: "north".into(),
            location: Location::new(52.5, 13.4),
            eta_ms,
            state: HandoffState::Planned,
            updated_ms: NOW,
        };
        store
            .save_wave(
                &[
                    stop("h1", HandoffKind::Pickup, 0, NOW + 10),
                    stop("h2", HandoffKind::Dropoff, 1, NOW + 20),
                ],
                NOW,
            )
            .await
            .expect("wave");
        assert_eq!(
            store
                .miss_overdue_pickups("berlin", NOW, NOW)
                .await
                .expect("miss"),
            0,
            "not overdue yet"
        );
        assert_eq!(
            store
                .miss_overdue_pickups("elsewhere", NOW + 100, NOW)
                .await
                .expect("miss"),
            0
        );
        assert_eq!(
            store
                .miss_overdue_pickups("berlin", NOW + 100, NOW)
                .await
                .expect("miss"),
            1
        );
        let states: Vec<HandoffState> = store
            .order_handoffs("o1")
            .await
            .expect("handoffs")
            .iter()
            .map(|h| h.state)
            .collect();
        assert_eq!(states, vec![HandoffState::Missed, HandoffState::Missed]);
        assert_eq!(
            store
                .wave_orders("berlin")
                .await
                .expect("wave orders")
                .len(),
            1,
            "planned again"
        );
        assert!(
            store
                .courier_schedule("bike-1")
                .await
                .expect("schedule")
                .is_empty()
        );
        let kinds = outbox_kinds(&store).await;
        assert_eq!(kinds.iter().filter(|k| *k == "handoff.missed").count(), 2);
    })
    .await;
}
