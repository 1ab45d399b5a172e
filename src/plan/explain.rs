//! Why jobs wait, and when queued ones should start and finish: a pure
//! reading of the floor as the store holds it (machines with their state
//! and mode, each machine's queue in dispatch order, pending jobs with any
//! open earlier step of their line).
//!
//! Estimates run each machine's queue in order from `now`: a running job
//! takes what is left of its units, every other one its quantity times its
//! seconds per unit. A machine that is not working (paused, faulted,
//! offline) gives no estimate: its queue waits on a person, not a clock.

use crate::domain::calendar::{Blocked, Calendar, Closed};
use crate::domain::power::{Drawing, admit};
use crate::domain::waiting::{WaitReason, Waiting};
use crate::domain::{JobState, MachineMode, MachineState, Millis};
use std::collections::HashMap;

/// A machine as the explanation needs it.
#[derive(Debug, Clone)]
pub struct FloorMachine {
    pub id: String,
    pub factory: String,
    pub capabilities: Vec<String>,
    pub materials: Vec<String>,
    pub state: MachineState,
    pub mode: MachineMode,
    pub fault_code: Option<i64>,
    /// The material an operator declared loaded (None: not known).
    pub loaded_material: Option<String>,
    /// Its shifts and planned maintenance (default: always works).
    pub calendar: Calendar,
    /// What it draws while starting a job (0: nothing counted).
    pub startup_power_w: u32,
    /// Its factory's power budget and the starts drawing now (None: no budget).
    pub factory_power: Option<FactoryPower>,
}

/// A factory's power budget and the starts of its machines still drawing.
#[derive(Debug, Clone, Default)]
pub struct FactoryPower {
    pub budget_w: u32,
    pub drawing: Vec<Drawing>,
}

impl FloorMachine {
    /// Why its factory's power budget holds a start back now, if it does.
    fn power_wait(&self, now: Millis) -> Option<(WaitReason, String, Option<Millis>)> {
        let power = self.factory_power.as_ref()?;
        let wait = admit(
            Some(power.budget_w),
            &power.drawing,
            &self.id,
            self.startup_power_w,
            now,
        )
        .err()?;
        let when = match wait.free_at_ms {
            Some(at) => format!("it may start at {}", clock_text(at)),
            None => "it never fits the budget".to_string(),
        };
        Some((
            WaitReason::PowerBudget,
            format!(
                "{}'s start-up draw ({} W) waits: machines of {} starting now draw {} W of its {} W power budget; {when}",
                self.id, wait.needed_w, self.factory, wait.drawing_w, wait.budget_w
            ),
            wait.free_at_ms,
        ))
    }
}

/// An instant as operators read it (RFC 3339, UTC, whole seconds).
fn clock_text(ms: Millis) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms).map_or_else(
        || format!("{ms} ms"),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    )
}

/// Why a calendar holds a job back, as a reason and a sentence.
fn calendar_reason(machine: &str, blocked: &Blocked) -> (WaitReason, String) {
    let opens = match blocked.opens_ms {
        Some(at) => format!("it may start at {}", clock_text(at)),
        None => "no opening within a year".to_string(),
    };
    match &blocked.why {
        Closed::OutsideShift => (
            WaitReason::OutsideShift,
            format!("{machine} is outside its shift; {opens}"),
        ),
        Closed::Maintenance(window) => (
            WaitReason::Maintenance,
            format!(
                "it would run into maintenance of {machine} from {} to {} ({}); {opens}",
                clock_text(window.start_ms),
                clock_text(window.end_ms),
                window.reason
            ),
        ),
    }
}

impl FloorMachine {
    fn can_make(&self, job: &FloorJob) -> bool {
        self.capabilities.contains(&job.process) && self.materials.contains(&job.material)
    }

    /// Whether it starts `job` as loaded now (an unknown material: yes).
    fn has_material_for(&self, job: &FloorJob) -> bool {
        crate::domain::machine::material_fits(self.loaded_material.as_deref(), &job.material)
    }

    /// The sentence for a job whose material is not loaded here.
    fn material_detail(&self, job: &FloorJob) -> String {
        format!(
            "needs {} loaded; {} has {} loaded",
            job.material,
            self.id,
            self.loaded_material
                .as_deref()
                .unwrap_or("no known material")
        )
    }

    /// Why this machine takes no job now, if it does not.
    fn unavailable(&self) -> Option<(WaitReason, String)> {
        let id = &self.id;
        match (self.mode, self.state) {
            (MachineMode::Paused, _) => {
                Some((WaitReason::MachinePaused, format!("{id} is paused")))
            }
            (MachineMode::Maintenance, _) | (_, MachineState::Maintenance) => {
                Some((WaitReason::MachinePaused, format!("{id} is in maintenance")))
            }
            (_, MachineState::Paused) => Some((
                WaitReason::MachinePaused,
                format!("{id} is paused at the machine"),
            )),
            (_, MachineState::Fault) => Some((
                WaitReason::MachineFaulted,
                match self.fault_code {
                    Some(code) => format!("{id} is faulted (code {code})"),
                    None => format!("{id} is faulted"),
                },
            )),
            (_, MachineState::Stuck) => Some((
                WaitReason::MachineFaulted,
                format!("{id} does not react to commands"),
            )),
            (_, MachineState::Offline) => {
                Some((WaitReason::MachineOffline, format!("{id} is offline")))
            }
            (
                MachineMode::Active | MachineMode::Draining,
                MachineState::Idle | MachineState::Running,
            ) => None,
        }
    }
}

/// A job as the explanation needs it.
#[derive(Debug, Clone)]
pub struct FloorJob {
    pub token: u32,
    pub factory: String,
    pub process: String,
    pub material: String,
    pub quantity: u32,
    pub good: u32,
    pub seconds_per_unit: f64,
    pub state: JobState,
    pub machine: Option<String>,
    /// Pending: the first earlier step of its line that is not done
    /// (step number, process).
    pub waits_for_step: Option<(i64, String)>,
}

impl FloorJob {
    fn work_ms(&self, running: bool) -> Millis {
        let units = if running {
            self.quantity.saturating_sub(self.good)
        } else {
            self.quantity
        };
        (f64::from(units) * self.seconds_per_unit.max(0.0) * 1000.0).round() as Millis
    }
}

/// Every job of `queues` (each machine's jobs in dispatch order: running,
/// held and dispatched ones first) and of `pending`, explained; jobs that
/// are running get no entry.
pub fn explain(
    now: Millis,
    machines: &[FloorMachine],
    queues: &HashMap<String, Vec<FloorJob>>,
    pending: &[FloorJob],
) -> HashMap<u32, Waiting> {
    let mut out = HashMap::new();
    // When each working machine is free of its whole queue.
    let mut free_at: HashMap<&str, Millis> = HashMap::new();
    for machine in machines {
        let queue = queues.get(&machine.id).map(Vec::as_slice).unwrap_or(&[]);
        let blocked = machine.unavailable();
        let mut at = now;
        let mut position = 0;
        for job in queue {
            match job.state {
                JobState::Running => {
                    at += job.work_ms(true);
                    continue;
                }
                JobState::Held => {
                    out.insert(
                        job.token,
                        Waiting {
                            reason: WaitReason::Held,
                            detail: format!(
                                "stopped by {}; waits for it to resume or for an operator to resume or abandon it",
                                machine.id
                            ),
                            machine: Some(machine.id.clone()),
                            position: None,
                            estimated_start_ms: None,
                            estimated_finish_ms: None,
                        },
                    );
                    continue;
                }
                _ => {}
            }
            if job.state == JobState::Scheduled && !machine.has_material_for(job) {
                // Skipped by the machine until an operator loads its material.
                out.insert(
                    job.token,
                    Waiting {
                        reason: WaitReason::MaterialNotLoaded,
                        detail: machine.material_detail(job),
                        machine: Some(machine.id.clone()),
                        position: None,
                        estimated_start_ms: None,
                        estimated_finish_ms: None,
                    },
                );
                continue;
            }
            position += 1;
            let (reason, detail, start) = match (&blocked, job.state) {
                (Some((reason, why)), _) => (
                    *reason,
                    format!("{why}; number {position} in its queue"),
                    None,
                ),
                (None, JobState::Dispatched) => (
                    WaitReason::Starting,
                    format!("sent to {}, which has not started it yet", machine.id),
                    Some(at),
                ),
                (None, _) => match machine.calendar.check(at, job.work_ms(false)) {
                    // The machine's calendar holds it back: the first in
                    // line says why; the others wait in the queue.
                    Some(blocked) => {
                        let (reason, why) = calendar_reason(&machine.id, &blocked);
                        if position == 1 && at == now {
                            (reason, why, blocked.opens_ms)
                        } else {
                            (
                                WaitReason::Queued,
                                format!("number {position} in the queue of {}; {why}", machine.id),
                                blocked.opens_ms,
                            )
                        }
                    }
                    None if position == 1 && at == now => match machine.power_wait(now) {
                        Some((reason, why, free)) => (reason, why, free),
                        None => (
                            WaitReason::Starting,
                            format!("next on {}, which is free", machine.id),
                            Some(at),
                        ),
                    },
                    None => (
                        WaitReason::Queued,
                        format!("number {position} in the queue of {}", machine.id),
                        Some(at),
                    ),
                },
            };
            let finish = start.map(|s| s + job.work_ms(false));
            if let Some(end) = finish {
                at = end;
            }
            out.insert(
                job.token,
                Waiting {
                    reason,
                    detail,
                    machine: Some(machine.id.clone()),
                    position: Some(position),
                    estimated_start_ms: start,
                    estimated_finish_ms: finish,
                },
            );
        }
        // A draining machine finishes its queue but takes nothing new.
        if blocked.is_none() && machine.mode == MachineMode::Active {
            free_at.insert(&machine.id, at);
        }
    }
    // Pending jobs, in the order given (the caller's: earliest deadline
    // first), each behind the ones before it on the machine that would be
    // free first.
    for job in pending {
        if let Some((step, process)) = &job.waits_for_step {
            out.insert(
                job.token,
                Waiting {
                    reason: WaitReason::PreviousStep,
                    detail: format!("waits for step {step} ({process}) of its line"),
                    machine: None,
                    position: None,
                    estimated_start_ms: None,
                    estimated_finish_ms: None,
                },
            );
            continue;
        }
        let capable: Vec<&FloorMachine> = machines
            .iter()
            .filter(|m| m.factory == job.factory && m.can_make(job))
            .collect();
        if capable.is_empty() {
            out.insert(
                job.token,
                Waiting {
                    reason: WaitReason::NoCapableMachine,
                    detail: format!(
                        "no machine of {} does {} with {}",
                        job.factory, job.process, job.material
                    ),
                    machine: None,
                    position: None,
                    estimated_start_ms: None,
                    estimated_finish_ms: None,
                },
            );
            continue;
        }
        // Placed only where its material is loaded (or not known).
        let loaded: Vec<&FloorMachine> = capable
            .iter()
            .copied()
            .filter(|m| m.has_material_for(job))
            .collect();
        if loaded.is_empty() {
            let each: Vec<String> = capable
                .iter()
                .map(|m| {
                    format!(
                        "{} has {}",
                        m.id,
                        m.loaded_material.as_deref().unwrap_or("no known material")
                    )
                })
                .collect();
            out.insert(
                job.token,
                Waiting {
                    reason: WaitReason::MaterialNotLoaded,
                    detail: format!(
                        "needs {} loaded on a machine that does {}; {} loaded",
                        job.material,
                        job.process,
                        each.join(", ")
                    ),
                    machine: None,
                    position: None,
                    estimated_start_ms: None,
                    estimated_finish_ms: None,
                },
            );
            continue;
        }
        let capable = loaded;
        let first_free = capable
            .iter()
            .filter_map(|m| free_at.get(m.id.as_str()).map(|at| (*at, m.id.as_str())))
            .min();
        match first_free {
            None => {
                let why: Vec<String> = capable
                    .iter()
                    .filter_map(|m| match m.unavailable() {
                        Some((_, why)) => Some(why),
                        None if m.mode == MachineMode::Draining => {
                            Some(format!("{} is draining", m.id))
                        }
                        None => None,
                    })
                    .collect();
                out.insert(
                    job.token,
                    Waiting {
                        reason: WaitReason::NoMachineAvailable,
                        detail: format!("no capable machine takes jobs: {}", why.join(", ")),
                        machine: None,
                        position: None,
                        estimated_start_ms: None,
                        estimated_finish_ms: None,
                    },
                );
            }
            Some((free, machine)) => {
                let calendar = capable
                    .iter()
                    .find(|m| m.id == machine)
                    .map(|m| &m.calendar);
                let work = job.work_ms(false);
                let start = calendar
                    .and_then(|c| c.next_start(free, work))
                    .unwrap_or(free);
                let finish = start + work;
                free_at.insert(machine, finish);
                let machine = machine.to_string();
                out.insert(
                    job.token,
                    Waiting {
                        reason: WaitReason::QueuesFull,
                        detail: format!(
                            "waits for room in a queue; {machine} is the first capable machine free"
                        ),
                        machine: Some(machine),
                        position: None,
                        estimated_start_ms: Some(start),
                        estimated_finish_ms: Some(finish),
                    },
                );
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: Millis = 1_000_000;

    fn machine(id: &str, state: MachineState, mode: MachineMode) -> FloorMachine {
        FloorMachine {
            id: id.into(),
            factory: "north".into(),
            capabilities: vec!["print".into()],
            materials: vec!["cotton".into()],
            state,
            mode,
            fault_code: None,
            loaded_material: None,
            calendar: Calendar::default(),
            startup_power_w: 0,
            factory_power: None,
        }
    }

    fn job(token: u32, state: JobState, machine: Option<&str>) -> FloorJob {
        FloorJob {
            token,
            factory: "north".into(),
            process: "print".into(),
            material: "cotton".into(),
            quantity: 2,
            good: 0,
            seconds_per_unit: 30.0,
            state,
            machine: machine.map(str::to_string),
            waits_for_step: None,
        }
    }

    #[test]
    fn a_queue_runs_in_order_from_what_is_left_of_the_running_job() {
        let machines = [machine("m1", MachineState::Running, MachineMode::Active)];
        let mut running = job(1, JobState::Running, Some("m1"));
        running.good = 1;
        let queues = HashMap::from([(
            "m1".to_string(),
            vec![
                running,
                job(2, JobState::Scheduled, Some("m1")),
                job(3, JobState::Scheduled, Some("m1")),
            ],
        )]);
        let out = explain(NOW, &machines, &queues, &[]);
        assert!(!out.contains_key(&1), "a running job does not wait");
        let second = &out[&2];
        assert_eq!(second.reason, WaitReason::Queued);
        assert_eq!(second.position, Some(1));
        assert_eq!(second.estimated_start_ms, Some(NOW + 30_000));
        assert_eq!(second.estimated_finish_ms, Some(NOW + 90_000));
        let third = &out[&3];
        assert_eq!(third.position, Some(2));
        assert_eq!(third.estimated_start_ms, Some(NOW + 90_000));
        assert_eq!(third.estimated_finish_ms, Some(NOW + 150_000));
    }

    #[test]
    fn the_next_job_on_a_free_machine_is_starting() {
        let machines = [machine("m1", MachineState::Idle, MachineMode::Active)];
        let queues = HashMap::from([(
            "m1".to_string(),
            vec![job(2, JobState::Scheduled, Some("m1"))],
        )]);
        let out = explain(NOW, &machines, &queues, &[]);
        assert_eq!(out[&2].reason, WaitReason::Starting);
        assert_eq!(out[&2].estimated_start_ms, Some(NOW));
    }

    #[test]
    fn a_stopped_machine_says_why_and_promises_no_time() {
        for (state, mode, reason, words) in [
            (
                MachineState::Idle,
                MachineMode::Paused,
                WaitReason::MachinePaused,
                "m1 is paused",
            ),
            (
                MachineState::Idle,
                MachineMode::Maintenance,
                WaitReason::MachinePaused,
                "maintenance",
            ),
            (
                MachineState::Fault,
                MachineMode::Active,
                WaitReason::MachineFaulted,
                "faulted",
            ),
            (
                MachineState::Stuck,
                MachineMode::Active,
                WaitReason::MachineFaulted,
                "does not react",
            ),
            (
                MachineState::Offline,
                MachineMode::Active,
                WaitReason::MachineOffline,
                "offline",
            ),
        ] {
            let machines = [machine("m1", state, mode)];
            let queues = HashMap::from([(
                "m1".to_string(),
                vec![job(2, JobState::Scheduled, Some("m1"))],
            )]);
            let out = explain(NOW, &machines, &queues, &[]);
            assert_eq!(out[&2].reason, reason, "{state:?} {mode:?}");
            assert!(out[&2].detail.contains(words), "{}", out[&2].detail);
            assert_eq!(out[&2].estimated_start_ms, None);
        }
    }

    #[test]
    fn held_jobs_wait_for_a_decision_and_do_not_hold_up_the_estimate() {
        let machines = [machine("m1", MachineState::Idle, MachineMode::Active)];
        let queues = HashMap::from([(
            "m1".to_string(),
            vec![
                job(1, JobState::Held, Some("m1")),
                job(2, JobState::Scheduled, Some("m1")),
            ],
        )]);
        let out = explain(NOW, &machines, &queues, &[]);
        assert_eq!(out[&1].reason, WaitReason::Held);
        assert_eq!(out[&2].position, Some(1));
    }

    #[test]
    fn pending_jobs_say_what_they_wait_for() {
        let machines = [
            machine("m1", MachineState::Running, MachineMode::Active),
            machine("m2", MachineState::Idle, MachineMode::Paused),
        ];
        let queues = HashMap::from([(
            "m1".to_string(),
            vec![job(1, JobState::Running, Some("m1"))],
        )]);
        let mut step = job(10, JobState::Pending, None);
        step.waits_for_step = Some((0, "cut".into()));
        let mut other_process = job(11, JobState::Pending, None);
        other_process.process = "embroider".into();
        let mut other_material = job(12, JobState::Pending, None);
        other_material.material = "denim".into();
        let waiting = job(13, JobState::Pending, None);
        let after = job(14, JobState::Pending, None);
        let out = explain(
            NOW,
            &machines,
            &queues,
            &[step, other_process, other_material, waiting, after],
        );
        assert_eq!(out[&10].reason, WaitReason::PreviousStep);
        assert!(out[&10].detail.contains("step 0 (cut)"));
        assert_eq!(out[&11].reason, WaitReason::NoCapableMachine);
        assert_eq!(out[&12].reason, WaitReason::NoCapableMachine);
        assert_eq!(out[&13].reason, WaitReason::QueuesFull);
        assert_eq!(out[&13].machine.as_deref(), Some("m1"));
        assert_eq!(out[&13].estimated_start_ms, Some(NOW + 60_000));
        // The next pending job waits behind the one before it.
        assert_eq!(out[&14].estimated_start_ms, Some(NOW + 120_000));
    }

    #[test]
    fn pending_jobs_with_every_capable_machine_stopped_name_each() {
        let mut faulted = machine("m1", MachineState::Fault, MachineMode::Active);
        faulted.fault_code = Some(42);
        let machines = [
            faulted,
            machine("m2", MachineState::Idle, MachineMode::Paused),
        ];
        let out = explain(
            NOW,
            &machines,
            &HashMap::new(),
            &[job(5, JobState::Pending, None)],
        );
        assert_eq!(out[&5].reason, WaitReason::NoMachineAvailable);
        assert!(
            out[&5].detail.contains("m1 is faulted (code 42)"),
            "{}",
            out[&5].detail
        );
        assert!(
            out[&5].detail.contains("m2 is paused"),
            "{}",
            out[&5].detail
        );
    }

    #[test]
    fn jobs_of_a_material_not_loaded_say_what_is_needed_and_what_is_loaded() {
        let mut m1 = machine("m1", MachineState::Idle, MachineMode::Active);
        m1.materials.push("tote".into());
        m1.loaded_material = Some("tote".into());
        let mut m2 = m1.clone();
        m2.id = "m2".into();
        let queues = HashMap::from([(
            "m1".to_string(),
            vec![job(1, JobState::Scheduled, Some("m1")), {
                let mut tote = job(2, JobState::Scheduled, Some("m1"));
                tote.material = "tote".into();
                tote
            }],
        )]);
        let out = explain(
            NOW,
            &[m1.clone(), m2],
            &queues,
            &[job(3, JobState::Pending, None)],
        );
        // Queued: skipped by its machine, which takes the tote job first.
        assert_eq!(out[&1].reason, WaitReason::MaterialNotLoaded);
        assert_eq!(out[&1].position, None);
        assert!(
            out[&1]
                .detail
                .contains("needs cotton loaded; m1 has tote loaded"),
            "{}",
            out[&1].detail
        );
        assert_eq!(out[&2].reason, WaitReason::Starting);
        assert_eq!(out[&2].position, Some(1));
        // Pending: every capable machine has another material.
        assert_eq!(out[&3].reason, WaitReason::MaterialNotLoaded);
        assert!(
            out[&3].detail.contains("needs cotton") && out[&3].detail.contains("m2 has tote"),
            "{}",
            out[&3].detail
        );
        // One machine of unknown material is enough to place it.
        let mut unknown = m1;
        unknown.loaded_material = None;
        let out = explain(
            NOW,
            &[unknown],
            &HashMap::new(),
            &[job(3, JobState::Pending, None)],
        );
        assert_eq!(out[&3].reason, WaitReason::QueuesFull);
    }

    #[test]
    fn a_calendar_says_when_the_first_job_may_start() {
        use crate::domain::calendar::{Shift, Window};
        // NOW is 1970-01-01T00:16:40Z; the shift opens every day at 01:00.
        let mut m1 = machine("m1", MachineState::Idle, MachineMode::Active);
        m1.calendar.shifts = vec![Shift::new("0 0 1 * * *", 3_600_000).expect("valid")];
        let queues = HashMap::from([(
            "m1".to_string(),
            vec![
                job(1, JobState::Scheduled, Some("m1")),
                job(2, JobState::Scheduled, Some("m1")),
            ],
        )]);
        let out = explain(NOW, std::slice::from_ref(&m1), &queues, &[]);
        assert_eq!(out[&1].reason, WaitReason::OutsideShift);
        assert!(
            out[&1]
                .detail
                .contains("m1 is outside its shift; it may start at 1970-01-01T01:00:00Z"),
            "{}",
            out[&1].detail
        );
        assert_eq!(out[&1].estimated_start_ms, Some(3_600_000));
        // The next one follows it, inside the shift.
        assert_eq!(out[&2].reason, WaitReason::Queued);
        assert_eq!(out[&2].estimated_start_ms, Some(3_600_000 + 60_000));
        // In shift, with maintenance planned before the job would finish.
        let mut m2 = machine("m1", MachineState::Idle, MachineMode::Active);
        m2.calendar.windows = vec![Window {
            start_ms: NOW + 30_000,
            end_ms: NOW + 600_000,
            reason: "belts".into(),
        }];
        let out = explain(NOW, &[m2], &queues, &[]);
        assert_eq!(out[&1].reason, WaitReason::Maintenance);
        assert!(out[&1].detail.contains("(belts)"), "{}", out[&1].detail);
        assert_eq!(out[&1].estimated_start_ms, Some(NOW + 600_000));
    }

    #[test]
    fn a_start_held_back_by_the_power_budget_says_so_and_when() {
        let mut m1 = machine("m1", MachineState::Idle, MachineMode::Active);
        m1.startup_power_w = 1500;
        m1.factory_power = Some(FactoryPower {
            budget_w: 2000,
            drawing: vec![Drawing {
                machine: "m2".into(),
                power_w: 1500,
                started_ms: NOW - 1000,
                until_ms: NOW + 60_000,
            }],
        });
        let queues = HashMap::from([(
            "m1".to_string(),
            vec![job(1, JobState::Scheduled, Some("m1"))],
        )]);
        let out = explain(NOW, std::slice::from_ref(&m1), &queues, &[]);
        assert_eq!(out[&1].reason, WaitReason::PowerBudget);
        assert!(
            out[&1]
                .detail
                .contains("draw 1500 W of its 2000 W power budget"),
            "{}",
            out[&1].detail
        );
        assert_eq!(out[&1].estimated_start_ms, Some(NOW + 60_000));
        // Room enough: it starts.
        m1.startup_power_w = 500;
        let out = explain(NOW, &[m1], &queues, &[]);
        assert_eq!(out[&1].reason, WaitReason::Starting);
    }
}
