//! Adapter compliance suite: every builtin profile, driven through
//! `ModbusLink` and `MachineDriver` against a simulated machine on a real
//! socket. No mocks, no sleeps as synchronisation, no timing thresholds.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use fabflow_adapters::profile::{SignalName, WordOrder};
use fabflow_adapters::{
    AdapterError, DeviceErrorCode, DriverConfig, JobCommand, MachineDriver, MachineFact,
    MachineLink, MachineStatus, ModbusConnector, ModbusLink, Profile, RunState,
};
use fabflow_sim::{Fleet, FleetSpec, SimMachine, SimMachineConfig, SimMachineHandle};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_modbus::client::Reader;
use tokio_util::sync::CancellationToken;

/// Generous: only a broken implementation should ever reach it.
const DEADLINE: Duration = Duration::from_secs(20);
const REQUEST_TIMEOUT: Duration = Duration::from_millis(300);

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_millis() as u64
}

async fn sim(profile: &Profile, seed: u64) -> SimMachineHandle {
    let config = SimMachineConfig {
        machine_id: format!("sim-{}", profile.model),
        cycle_seconds: 1.0,
        scrap_rate: 0.3,
        // 1 s per unit at x100: a 4-unit job takes 40 ms of real time.
        time_scale: 100.0,
        seed,
    };
    SimMachine::start(config, Arc::new(profile.clone()))
        .await
        .expect("sim machine starts")
}

async fn link(sim: &SimMachineHandle, profile: &Profile) -> ModbusLink {
    ModbusLink::connect(sim.addr(), Arc::new(profile.clone()), REQUEST_TIMEOUT)
        .await
        .expect("connects")
}

/// Polls `probe` until it yields a value or the deadline passes.
async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + DEADLINE;
    loop {
        if let Some(value) = probe().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Polls the link until the machine reports `state`.
async fn wait_for_state(link: &mut ModbusLink, state: RunState) -> MachineStatus {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let status = link.read_status().await.expect("status");
        if status.state == state {
            return status;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {state}: {status:?}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Receives facts until one matches, returning it and the facts before it.
async fn next_fact(
    facts: &mut mpsc::Receiver<MachineFact>,
    what: &str,
    matches: impl Fn(&MachineFact) -> bool,
) -> (MachineFact, Vec<MachineFact>) {
    let mut skipped = Vec::new();
    let deadline = Instant::now() + DEADLINE;
    loop {
        let fact = tokio::time::timeout_at(deadline, facts.recv())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}; saw {skipped:?}"))
            .unwrap_or_else(|| panic!("facts closed while waiting for {what}"));
        if matches(&fact) {
            return (fact, skipped);
        }
        skipped.push(fact);
    }
}

fn status_where(fact: &MachineFact, check: impl Fn(&MachineStatus) -> bool) -> bool {
    matches!(fact, MachineFact::Status(status) if check(status))
}

fn job(profile_index: usize) -> JobCommand {
    JobCommand {
        // High and low words differ, so a word-order bug cannot hide.
        job_token: 0x0001_0002 + u32::try_from(profile_index).expect("small") * 0x0101,
        recipe: 7,
        quantity: 4,
    }
}

fn assert_busy(result: Result<(), AdapterError>, model: &str) {
    match result {
        Err(AdapterError::Device {
            code: DeviceErrorCode::Busy,
            ..
        }) => {}
        other => panic!("{model}: expected Device Busy, got {other:?}"),
    }
}

#[tokio::test]
async fn link_runs_a_job_through_its_whole_cycle_on_every_profile() {
    for (index, profile) in modbus_profiles().iter().enumerate() {
        let model = profile.model.as_str();
        let sim = sim(profile, 1).await;
        let mut link = link(&sim, profile).await;

        let idle = link.read_status().await.expect("status");
        assert_eq!((idle.state, idle.job_token), (RunState::Idle, 0), "{model}");

        let cmd = job(index);
        sim.set_hold(true);
        link.start_job(&cmd).await.expect("start");
        let running = link.read_status().await.expect("status");
        assert_eq!(running.state, RunState::Running, "{model}");
        assert_eq!(running.job_token, cmd.job_token, "{model}");
        let snapshot = sim.snapshot();
        assert_eq!(
            (snapshot.recipe, snapshot.quantity),
            (cmd.recipe, cmd.quantity),
            "{model}"
        );

        // The token sits on the wire in the profile's documented word order.
        let token = profile.required(SignalName::JobToken);
        let mut raw = tokio_modbus::client::tcp::connect_slave(
            sim.addr(),
            tokio_modbus::Slave(profile.unit_id),
        )
        .await
        .expect("raw client");
        let words = raw
            .read_holding_registers(token.address, 2)
            .await
            .expect("transport")
            .expect("no exception");
        let (high, low) = (
            (cmd.job_token >> 16) as u16,
            (cmd.job_token & 0xFFFF) as u16,
        );
        let expected = match token.word_order {
            WordOrder::Big => vec![high, low],
            WordOrder::Little => vec![low, high],
        };
        assert_eq!(words, expected, "{model}: job_token layout");

        // A start while busy is refused by the device, typed.
        assert_busy(link.start_job(&job(99)).await, model);
        assert_eq!(
            link.read_status()
                .await
                .expect("link still usable")
                .job_token,
            cmd.job_token
        );

        let released = unix_ms();
        sim.set_hold(false);
        let done = wait_for_state(&mut link, RunState::Done).await;
        assert_eq!(done.job_token, cmd.job_token, "{model}");
        // Its finish is logged with the time its last unit was made: after
        // the hold ended, not after now.
        let finished = sim.finished_log();
        assert_eq!(finished.len(), 1, "{model}: {finished:?}");
        assert_eq!(finished[0].0, cmd.job_token, "{model}");
        assert!(
            (released..=unix_ms()).contains(&finished[0].1),
            "{model}: finished at {} outside {released}..now",
            finished[0].1
        );
        assert_eq!(
            done.good_count + done.scrap_count,
            cmd.quantity,
            "{model}: {done:?}"
        );
        if let Some(progress) = done.progress_percent {
            assert!(
                (progress - 100.0).abs() < 0.5,
                "{model}: progress {progress}"
            );
        }
        assert_busy(link.start_job(&job(98)).await, model);

        link.acknowledge().await.expect("acknowledge");
        let after = link.read_status().await.expect("status");
        assert_eq!(
            (after.state, after.job_token),
            (RunState::Idle, cmd.job_token),
            "{model}"
        );
        assert_eq!(sim.started_tokens(), vec![cmd.job_token], "{model}");
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn driver_runs_a_job_and_keeps_the_connection_on_device_errors() {
    for (index, profile) in modbus_profiles().iter().enumerate() {
        let model = profile.model.as_str();
        let sim = sim(profile, 2).await;
        let cancel = CancellationToken::new();
        let mut config = DriverConfig::new(format!("m-{model}"));
        config.poll_interval = Duration::from_millis(10);
        config.request_timeout = REQUEST_TIMEOUT;
        let connector =
            ModbusConnector::new(sim.addr(), Arc::new(profile.clone()), REQUEST_TIMEOUT);
        let (handle, mut facts) = MachineDriver::spawn(config, connector, cancel.clone());

        next_fact(&mut facts, "connected", |f| *f == MachineFact::Connected).await;
        next_fact(&mut facts, "idle status", |f| {
            status_where(f, |s| s.state == RunState::Idle)
        })
        .await;

        let cmd = job(index);
        sim.set_hold(true);
        handle.start_job(cmd.clone()).await.expect("start");
        assert_eq!(
            handle.read_status().await.expect("status").state,
            RunState::Running
        );
        assert_busy(handle.start_job(job(99)).await, model);
        sim.set_hold(false);

        let (done, before) = next_fact(&mut facts, "done status", |f| {
            status_where(f, |s| {
                s.state == RunState::Done && s.job_token == cmd.job_token
            })
        })
        .await;
        assert!(
            !before
                .iter()
                .any(|f| matches!(f, MachineFact::Disconnected { .. })),
            "{model}: a device error must not drop the connection: {before:?}"
        );
        let MachineFact::Status(done) = done else {
            unreachable!("matched a status")
        };
        assert_eq!(done.good_count + done.scrap_count, cmd.quantity, "{model}");

        handle.acknowledge().await.expect("acknowledge");
        next_fact(&mut facts, "idle again", |f| {
            status_where(f, |s| {
                s.state == RunState::Idle && s.job_token == cmd.job_token
            })
        })
        .await;
        assert_eq!(sim.started_tokens(), vec![cmd.job_token], "{model}");

        cancel.cancel();
        handle.stopped().await;
        assert!(matches!(
            handle.read_status().await,
            Err(AdapterError::DriverStopped)
        ));
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn a_silent_machine_times_out_and_the_driver_reconnects_after() {
    for profile in modbus_profiles() {
        let model = profile.model.as_str();
        let sim = sim(&profile, 3).await;

        let mut direct = link(&sim, &profile).await;
        sim.set_silent(true);
        let error = direct.read_status().await.expect_err("silent");
        assert!(
            matches!(error, AdapterError::Timeout { .. }),
            "{model}: {error:?}"
        );
        assert!(error.is_retryable() && error.breaks_connection());
        // A link that timed out refuses further use.
        assert!(matches!(
            direct.read_status().await,
            Err(AdapterError::NotConnected)
        ));
        sim.set_silent(false);

        let cancel = CancellationToken::new();
        let mut config = DriverConfig::new(format!("m-{model}"));
        config.poll_interval = Duration::from_millis(10);
        config.request_timeout = REQUEST_TIMEOUT;
        config.backoff_min = Duration::from_millis(10);
        config.backoff_max = Duration::from_millis(50);
        let connector =
            ModbusConnector::new(sim.addr(), Arc::new(profile.clone()), REQUEST_TIMEOUT);
        let (handle, mut facts) = MachineDriver::spawn(config, connector, cancel.clone());
        next_fact(&mut facts, "first status", |f| {
            matches!(f, MachineFact::Status(_))
        })
        .await;

        sim.set_silent(true);
        next_fact(&mut facts, "disconnected", |f| {
            matches!(f, MachineFact::Disconnected { .. })
        })
        .await;
        sim.set_silent(false);
        let (_, _) = next_fact(&mut facts, "reconnected", |f| *f == MachineFact::Connected).await;
        next_fact(&mut facts, "fresh status", |f| {
            matches!(f, MachineFact::Status(_))
        })
        .await;
        handle.read_status().await.expect("usable after reconnect");

        // Dropped connections are noticed and replaced too.
        sim.drop_connections().await;
        next_fact(&mut facts, "disconnected after drop", |f| {
            matches!(f, MachineFact::Disconnected { .. })
        })
        .await;
        next_fact(&mut facts, "reconnected after drop", |f| {
            *f == MachineFact::Connected
        })
        .await;
        next_fact(&mut facts, "status after drop", |f| {
            matches!(f, MachineFact::Status(_))
        })
        .await;

        cancel.cancel();
        handle.stopped().await;
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn an_injected_fault_shows_state_and_code() {
    for (index, profile) in modbus_profiles().iter().enumerate() {
        let model = profile.model.as_str();
        let sim = sim(profile, 4).await;
        let mut link = link(&sim, profile).await;
        sim.set_hold(true);
        link.start_job(&job(index)).await.expect("start");
        sim.inject_fault(42);
        let status = link.read_status().await.expect("status");
        assert_eq!(status.state, RunState::Fault, "{model}");
        if profile.signal(SignalName::FaultCode).is_some() {
            assert_eq!(status.fault_code, Some(42), "{model}");
        }
        let refused = link.acknowledge().await.expect_err("fault still active");
        assert_eq!(
            refused.device_code(),
            Some(DeviceErrorCode::ServerDeviceFailure),
            "{model}"
        );
        // Cleared, the job the fault stopped goes on under its token.
        sim.clear_fault();
        let status = link.read_status().await.expect("status");
        assert_eq!(
            (
                status.state,
                status.job_token,
                status.fault_code.unwrap_or(0)
            ),
            (RunState::Running, job(index).job_token, 0),
            "{model}"
        );
        assert_eq!(
            sim.started_tokens(),
            vec![job(index).job_token],
            "{model}: one start"
        );
        sim.set_hold(false);
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn a_wrong_unit_id_is_refused_by_the_machine() {
    for profile in modbus_profiles() {
        let sim = sim(&profile, 5).await;
        let mut wrong = profile.clone();
        wrong.unit_id = if profile.unit_id == 9 { 10 } else { 9 };
        let mut link = link(&sim, &wrong).await;
        let error = link.read_status().await.expect_err("wrong unit");
        assert_eq!(
            error.device_code(),
            Some(DeviceErrorCode::GatewayTargetDevice),
            "{error:?}"
        );
        sim.shutdown().await;
    }
}

/// Runs three 20-unit jobs on every machine of a fleet and returns the scrap counts.
async fn scrap_pattern(seed: u64) -> Vec<(String, Vec<u32>)> {
    let profiles = fabflow_adapters::builtin_profiles();
    let mut spec = FleetSpec::demo(seed, 100.0);
    for machine in spec
        .factories
        .iter_mut()
        .flat_map(|f| f.machines.iter_mut())
    {
        machine.cycle_seconds = 0.0; // instant jobs: determinism, not timing
        machine.scrap_rate = 0.5;
    }
    let fleet = Fleet::start(&spec, &profiles).await.expect("fleet starts");
    let mut pattern = Vec::new();
    for info in fleet.machines() {
        let profile = profiles
            .iter()
            .find(|p| p.model == info.model)
            .expect("profile");
        let mut link = ModbusLink::connect(info.addr, Arc::new(profile.clone()), REQUEST_TIMEOUT)
            .await
            .expect("connects");
        let mut scraps = Vec::new();
        for round in 0..3 {
            let cmd = JobCommand {
                job_token: 1000 + round,
                recipe: 1,
                quantity: 20,
            };
            link.start_job(&cmd).await.expect("start");
            let done = wait_for_state(&mut link, RunState::Done).await;
            assert_eq!(done.good_count + done.scrap_count, 20);
            scraps.push(done.scrap_count);
            link.acknowledge().await.expect("ack");
        }
        pattern.push((info.machine_id, scraps));
    }
    // Every machine got tokens 1000..1003: duplicates across the fleet.
    assert_eq!(
        fleet.duplicate_starts().len(),
        3 * (fleet.machines().len() - 1)
    );
    fleet.shutdown().await;
    pattern
}

#[tokio::test]
async fn same_seed_gives_the_same_scrap_pattern() {
    let first = scrap_pattern(11).await;
    let second = scrap_pattern(11).await;
    assert_eq!(first, second);
    let total: u32 = first.iter().flat_map(|(_, s)| s).sum();
    assert!(total > 0, "scrap_rate 0.5 over 720 units produced no scrap");
}

#[tokio::test]
async fn fleet_reports_machines_and_duplicate_starts() {
    let profiles = fabflow_adapters::builtin_profiles();
    let fleet = Fleet::start(&FleetSpec::demo(1, 1000.0), &profiles)
        .await
        .expect("fleet");
    let machines = fleet.machines();
    assert_eq!(machines.len(), 12);
    assert!(
        machines
            .iter()
            .all(|m| m.addr.ip().is_loopback() && m.addr.port() != 0)
    );
    let first = &machines[0];
    let profile = profiles
        .iter()
        .find(|p| p.model == first.model)
        .expect("profile");
    let mut link = ModbusLink::connect(first.addr, Arc::new(profile.clone()), REQUEST_TIMEOUT)
        .await
        .expect("connects");
    let cmd = JobCommand {
        job_token: 77,
        recipe: 1,
        quantity: 1,
    };
    link.start_job(&cmd).await.expect("start");
    assert_eq!(fleet.started_tokens(&first.machine_id), vec![77]);
    assert!(fleet.duplicate_starts().is_empty());
    let sim = fleet.machine(&first.machine_id).expect("handle");
    eventually("done", || async {
        (sim.snapshot().state == RunState::Done).then_some(())
    })
    .await;
    link.acknowledge().await.expect("ack");
    link.start_job(&cmd)
        .await
        .expect("second start of the same token");
    assert_eq!(
        fleet.duplicate_starts(),
        vec![(first.machine_id.clone(), 77)]
    );
    assert!(fleet.machine("nope").is_none());
    fleet.shutdown().await;
}

/// The built-in Modbus profiles (the MQTT ones are driven by their own suite).
fn modbus_profiles() -> Vec<fabflow_adapters::Profile> {
    fabflow_adapters::builtin_profiles()
        .into_iter()
        .filter(|p| p.protocol == fabflow_adapters::profile::Protocol::Modbus)
        .collect()
}
