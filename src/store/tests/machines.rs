//! Store scenarios: Machines: registration, observations, operator modes, machines dropped from the configuration.

use super::*;

#[tokio::test]
async fn machines_register_observe_and_change_mode() {
    use crate::domain::{MachineInput, MachineMode, MachineState, ModeInput, Reported};
    on_every_backend(|store| async move {
        let spec = dtg_spec("dtg-1");
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
            .change_machine_mode("dtg-1", ModeInput::Pause, "operator:north", NOW)
            .await
            .expect("pause");
        let audit = store.list_audit(None, 10).await.expect("audit");
        assert_eq!(
            audit
                .iter()
                .map(|e| (
                    e.actor.as_str(),
                    e.action.as_str(),
                    e.target.as_str(),
                    e.detail.as_str()
                ))
                .collect::<Vec<_>>(),
            [(
                "operator:north",
                "machine.mode",
                "dtg-1",
                "active -> paused"
            )],
            "the decision is audited in its own transaction"
        );
        assert!(
            store
                .change_machine_mode("dtg-1", ModeInput::Pause, "operator:north", NOW)
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
            .retire_unconfigured(&[MachineId::new("keep")], NOW)
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
                .retire_unconfigured(&[MachineId::new("keep")], NOW)
                .await
                .expect("again")
                .is_empty()
        );
    })
    .await;
}

#[tokio::test]
async fn a_plan_never_lands_on_a_machine_that_stopped_taking_jobs_meanwhile() {
    use crate::domain::{MachineInput, ModeInput, Reported};
    on_every_backend(|store| async move {
        let spec = dtg_spec("dtg-1");
        store
            .register_machines(&[spec], NOW)
            .await
            .expect("register");
        store
            .accept_orders(&[new_order("o1", "acme", None)])
            .await
            .expect("accept");
        let print = store.schedulable_jobs(10).await.expect("schedulable")[0].token;
        let plan = [(print, MachineId::new("dtg-1"))];
        let schedule = || {
            let (store, plan) = (store.clone(), plan.clone());
            async move { store.schedule_jobs(&plan, NOW).await.expect("schedule") }
        };
        // Never seen: offline, takes nothing.
        assert_eq!(schedule().await, 0);
        store
            .observe_machine(
                "dtg-1",
                MachineInput::Reported(Reported::Idle),
                None,
                None,
                NOW,
            )
            .await
            .expect("observe");
        // Paused after the plan was made: the pause wins.
        store
            .change_machine_mode("dtg-1", ModeInput::Pause, "operator:north", NOW)
            .await
            .expect("pause");
        assert_eq!(schedule().await, 0);
        store
            .change_machine_mode("dtg-1", ModeInput::Resume, "operator:north", NOW)
            .await
            .expect("resume");
        // Totes loaded meanwhile: a cotton job does not go there.
        store
            .load_material("dtg-1", Some("tote"), "operator:north", NOW)
            .await
            .expect("load");
        assert_eq!(schedule().await, 0);
        assert_eq!(
            store.get_job(print).await.expect("get").map(|j| j.state),
            Some(JobState::Pending)
        );
        store
            .load_material("dtg-1", Some("cotton_tee"), "operator:north", NOW)
            .await
            .expect("load");
        assert_eq!(schedule().await, 1);
        assert_eq!(store.machine_queue("dtg-1").await.expect("queue").len(), 1);
    })
    .await;
}

#[tokio::test]
async fn machines_with_room_are_those_under_the_queue_cap_with_their_queue_lengths() {
    on_every_backend(|store| async move {
        store
            .register_machines(&[dtg_spec("dtg-1"), dtg_spec("dtg-2")], NOW)
            .await
            .expect("register");
        report_idle(&store, "dtg-1").await;
        store
            .accept_orders(&[new_order("o1", "acme", None), new_order("o2", "acme", None)])
            .await
            .expect("accept");
        let prints: Vec<(JobToken, MachineId)> = store
            .schedulable_jobs(10)
            .await
            .expect("schedulable")
            .into_iter()
            .map(|job| (job.token, MachineId::new("dtg-1")))
            .collect();
        assert_eq!(prints.len(), 2);
        assert_eq!(
            store.schedule_jobs(&prints, NOW).await.expect("schedule"),
            2
        );
        let room = |cap: usize| {
            let store = store.clone();
            async move {
                store
                    .machines_with_room(cap)
                    .await
                    .expect("room")
                    .into_iter()
                    .map(|(machine, load)| (machine.id.0, load))
                    .collect::<Vec<_>>()
            }
        };
        // dtg-2 is listed though offline: whether it takes jobs is the caller's rule.
        assert_eq!(room(2).await, [("dtg-2".to_string(), 0)]);
        assert_eq!(
            room(3).await,
            [("dtg-1".to_string(), 2), ("dtg-2".to_string(), 0)]
        );
        assert_eq!(room(0).await, []);
    })
    .await;
}

/// Marks every event published; returns how many audit rows there are.
async fn settle(store: &Store) -> usize {
    let ids: Vec<String> = store
        .unpublished(10_000)
        .await
        .expect("outbox")
        .into_iter()
        .map(|e| e.id)
        .collect();
    store.mark_published(&ids, NOW).await.expect("mark");
    store.list_audit(None, 1_000).await.expect("audit").len()
}

/// Issue 6, item 7: every operator decision is one transaction with
/// exactly one event of its own kind and one audit row; a refused decision
/// leaves neither.
#[tokio::test]
async fn every_operator_decision_is_one_event_and_one_audit_row() {
    use crate::domain::ModeInput;
    on_every_backend(|store| async move {
        store
            .register_machines(&[dtg_spec("dtg-1"), dtg_spec("dtg-2")], NOW)
            .await
            .expect("register");
        report_idle(&store, "dtg-1").await;
        report_idle(&store, "dtg-2").await;
        store
            .accept_orders(&[new_order("o1", "acme", None)])
            .await
            .expect("accept");
        let token = store.schedulable_jobs(10).await.expect("ready")[0].token;
        store
            .schedule_jobs(&[(token, MachineId::new("dtg-1"))], NOW)
            .await
            .expect("queued");
        let mut audited = settle(&store).await;
        let actor = "operator:north";
        let mut decided = |kind: &'static str, events: Vec<String>, audit: usize| {
            assert_eq!(events, [kind], "one event of the decision's own kind");
            assert_eq!(audit, audited + 1, "{kind}: one audit row");
            audited = audit;
        };

        store
            .load_material("dtg-1", Some("cotton_tee"), actor, NOW)
            .await
            .expect("load");
        let events = outbox_kinds(&store).await;
        decided("machine.material_loaded", events, settle(&store).await);

        let window = store
            .schedule_maintenance(
                "dtg-2",
                NOW + 3_600_000,
                NOW + 7_200_000,
                "belt",
                actor,
                NOW,
            )
            .await
            .expect("maintenance");
        let events = outbox_kinds(&store).await;
        decided(
            "machine.maintenance_scheduled",
            events,
            settle(&store).await,
        );

        store
            .cancel_maintenance("dtg-2", &window.id, actor, NOW)
            .await
            .expect("cancel maintenance");
        let events = outbox_kinds(&store).await;
        decided(
            "machine.maintenance_cancelled",
            events,
            settle(&store).await,
        );

        store
            .move_job(token, "dtg-2", actor, NOW)
            .await
            .expect("move");
        let events = outbox_kinds(&store).await;
        decided("job.moved", events, settle(&store).await);

        for input in [ModeInput::Drain, ModeInput::Resume, ModeInput::Pause] {
            store
                .change_machine_mode("dtg-1", input, actor, NOW)
                .await
                .expect("mode");
            let events = outbox_kinds(&store).await;
            decided("machine.mode_changed", events, settle(&store).await);
        }

        // Refused: no event, no audit row.
        assert!(
            store
                .load_material("dtg-1", Some("ceramic_mug"), actor, NOW)
                .await
                .is_err()
        );
        assert!(
            store
                .change_machine_mode("dtg-1", ModeInput::Pause, actor, NOW)
                .await
                .is_err()
        );
        assert!(
            store
                .move_job(JobToken(4_000_000_000), "dtg-1", actor, NOW)
                .await
                .is_err()
        );
        assert_eq!(outbox_kinds(&store).await, Vec::<String>::new());
        assert_eq!(settle(&store).await, audited);
    })
    .await;
}
