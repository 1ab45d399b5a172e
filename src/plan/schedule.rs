//! Job scheduling: earliest deadline first, onto the capable machine with the
//! shortest queue; factories chosen by haversine distance.
//!
//! Invariants (property-tested): a job is assigned at most once; only to a
//! machine of its own factory that has the capability and the material and
//! accepts jobs; no machine's queue grows beyond `max_queue`; a queued job
//! is handed back only for a ready job due sooner that its machine could run.

use crate::domain::{FactoryId, JobToken, Location, MachineId, Millis};
use std::collections::{BTreeSet, HashMap, HashSet};

/// A factory as the planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct FactorySite {
    pub id: FactoryId,
    pub location: Location,
    /// (process, material) pairs its machines can run.
    pub capabilities: BTreeSet<(String, String)>,
    /// The delivery zone it stands in (None: outside every zone).
    pub zone: Option<String>,
}

/// The factory that makes an order delivered at `location` in `zone`:
/// among those that can run every (process, material) pair in `needs`,
/// one in the order's own zone first (its couriers then stay in their
/// zone), then the nearest.
pub fn choose_factory<'a>(
    location: Location,
    zone: &str,
    needs: &BTreeSet<(String, String)>,
    factories: &'a [FactorySite],
) -> Option<&'a FactorySite> {
    factories
        .iter()
        .filter(|factory| needs.is_subset(&factory.capabilities))
        .min_by(|a, b| {
            let away = |f: &FactorySite| f.zone.as_deref() != Some(zone);
            let da = a.location.distance_m(location);
            let db = b.location.distance_m(location);
            away(a)
                .cmp(&away(b))
                .then(da.total_cmp(&db))
                .then_with(|| a.id.cmp(&b.id))
        })
}

/// A machine as the planner sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct MachineSlot {
    pub id: MachineId,
    pub factory: FactoryId,
    pub capabilities: Vec<String>,
    pub materials: Vec<String>,
    /// Online, active and not faulted.
    pub accepts_jobs: bool,
    /// Jobs already scheduled, dispatched or running on it.
    pub queue_len: usize,
    /// The material an operator declared loaded (None: not known). A
    /// machine with a known material gets only jobs of that material.
    pub loaded_material: Option<String>,
    /// When its calendar next lets it start a job (now, when it is open;
    /// None: no opening ahead, it takes no jobs). The queue rule fills
    /// machines open sooner first: a machine outside its shift or in
    /// maintenance gets a job only when every capable machine open earlier
    /// has a full queue.
    pub opens_ms: Option<Millis>,
    /// Its speed against the SKUs' `seconds_per_unit` (1.0: nominal; 2.0
    /// works twice as fast): among machines open as soon, the queue rule
    /// fills the one whose queue would be shortest in time, `(queue + 1) /
    /// speed`.
    pub speed: f64,
}

/// A job whose earlier steps are done, waiting for a machine.
#[derive(Debug, Clone, PartialEq)]
pub struct JobCandidate {
    pub token: JobToken,
    pub factory: FactoryId,
    pub process: String,
    pub material: String,
    pub due_ms: Millis,
}

impl MachineSlot {
    fn can_run(&self, job: &JobCandidate) -> bool {
        self.accepts_jobs
            && self.factory == job.factory
            && self.capabilities.contains(&job.process)
            && self.materials.contains(&job.material)
            && crate::domain::machine::material_fits(self.loaded_material.as_deref(), &job.material)
    }

    /// How long its queue would be, in jobs at nominal speed, with one more
    /// job on it (a speed that is not positive and finite counts as 1).
    fn load_with_one_more(&self, queue: usize) -> f64 {
        let speed = if self.speed.is_finite() && self.speed > 0.0 {
            self.speed
        } else {
            1.0
        };
        (queue + 1) as f64 / speed
    }

    /// 0 when its loaded material is the job's, 1 when not known: among
    /// equally short queues, a machine set up for the job goes first.
    fn setup_rank(&self, job: &JobCandidate) -> u8 {
        u8::from(self.loaded_material.as_deref() != Some(job.material.as_str()))
    }
}

/// Assigns jobs, earliest due first (ties by token), each to the capable
/// machine open soonest, then with the shortest queue in time (one more job
/// over its speed; ties to a machine with the job's material loaded, then
/// by machine id), never letting a queue grow past
/// `max_queue`. A machine with a known loaded material takes only jobs of
/// that material. Jobs that fit nowhere are left out, for the next round.
pub fn assign_jobs(
    jobs: &[JobCandidate],
    machines: &[MachineSlot],
    max_queue: usize,
) -> Vec<(JobToken, MachineId)> {
    // Queue lengths by machine position; machines sharing an id share one
    // count (the first position's), starting from the last one's queue_len.
    let mut first_of: HashMap<&MachineId, usize> = HashMap::new();
    let slot_of: Vec<usize> = machines
        .iter()
        .enumerate()
        .map(|(i, m)| *first_of.entry(&m.id).or_insert(i))
        .collect();
    let mut queues = vec![0; machines.len()];
    for (i, machine) in machines.iter().enumerate() {
        queues[slot_of[i]] = machine.queue_len;
    }
    // Places left on machines that take jobs at all: once none is left, no
    // job can be placed (a round after a fault, with every other queue
    // full, then costs nothing however many jobs wait).
    let mut taking = vec![false; machines.len()];
    for (i, machine) in machines.iter().enumerate() {
        if machine.accepts_jobs && machine.opens_ms.is_some() {
            taking[slot_of[i]] = true;
        }
    }
    let mut room: usize = (0..machines.len())
        .filter(|&slot| taking[slot])
        .map(|slot| max_queue.saturating_sub(queues[slot]))
        .sum();
    if room == 0 {
        return Vec::new();
    }
    let mut order: Vec<&JobCandidate> = jobs.iter().collect();
    order.sort_by(|a, b| a.due_ms.cmp(&b.due_ms).then(a.token.cmp(&b.token)));
    // Only a job's own factory's machines can run it, and whether one can
    // depends only on the job's factory, process and material: the capable
    // machines (in their given order) are worked out once per such triple.
    let mut by_factory: HashMap<&FactoryId, Vec<usize>> = HashMap::new();
    for (i, machine) in machines.iter().enumerate() {
        by_factory.entry(&machine.factory).or_default().push(i);
    }
    let mut capable: HashMap<(&FactoryId, &str, &str), Vec<usize>> = HashMap::new();
    let mut seen = HashSet::new();
    let mut assignments = Vec::new();
    for job in order {
        if !seen.insert(job.token) {
            continue;
        }
        let key = (&job.factory, job.process.as_str(), job.material.as_str());
        let local = capable.entry(key).or_insert_with(|| {
            by_factory.get(&job.factory).map_or_else(Vec::new, |local| {
                local
                    .iter()
                    .copied()
                    .filter(|&i| machines[i].can_run(job))
                    .collect()
            })
        });
        let best = local
            .iter()
            .filter_map(|&i| {
                let opens = machines[i].opens_ms?;
                let queue = queues[slot_of[i]];
                (queue < max_queue).then_some(((opens, queue), i))
            })
            .min_by(|((opens_a, queue_a), a), ((opens_b, queue_b), b)| {
                let (a, b) = (&machines[*a], &machines[*b]);
                opens_a
                    .cmp(opens_b)
                    .then_with(|| {
                        a.load_with_one_more(*queue_a)
                            .total_cmp(&b.load_with_one_more(*queue_b))
                    })
                    .then_with(|| a.setup_rank(job).cmp(&b.setup_rank(job)))
                    .then_with(|| a.id.cmp(&b.id))
            });
        if let Some((_, i)) = best {
            queues[slot_of[i]] += 1;
            assignments.push((job.token, machines[i].id.clone()));
            room -= 1;
            if room == 0 {
                break;
            }
        }
    }
    assignments
}

/// A job in a machine's queue, not started yet: the planner may still take
/// it back.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedJob {
    pub token: JobToken,
    pub machine: MachineId,
    pub due_ms: Millis,
}

/// The queued jobs to hand back so that ready jobs due sooner take their
/// places (a rush order on a full floor), as (ready job, queued job) pairs.
/// Earliest due first, each ready job takes the place of the queued job due
/// latest among the machines that could run it, if that one is due more
/// than `min_gain_ms` after it; each queued job is handed back at most
/// once. Handing back moves nothing by itself: the next round assigns the
/// freed places, earliest due first.
pub fn bumps(
    ready: &[JobCandidate],
    queued: &[QueuedJob],
    machines: &[MachineSlot],
    min_gain_ms: Millis,
) -> Vec<(JobToken, JobToken)> {
    let by_id: HashMap<&MachineId, &MachineSlot> = machines.iter().map(|m| (&m.id, m)).collect();
    let mut order: Vec<&JobCandidate> = ready.iter().collect();
    order.sort_by_key(|job| (job.due_ms, job.token));
    let mut taken: HashSet<JobToken> = HashSet::new();
    let mut out = Vec::new();
    for job in order {
        let latest = queued
            .iter()
            .filter(|q| !taken.contains(&q.token))
            .filter(|q| q.due_ms > job.due_ms.saturating_add(min_gain_ms))
            .filter(|q| by_id.get(&q.machine).is_some_and(|m| m.can_run(job)))
            .max_by_key(|q| (q.due_ms, q.token));
        if let Some(queued) = latest {
            taken.insert(queued.token);
            out.push((job.token, queued.token));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn queued(token: u32, machine: &str, due_ms: Millis) -> QueuedJob {
        QueuedJob {
            token: JobToken(token),
            machine: MachineId::new(machine),
            due_ms,
        }
    }

    #[test]
    fn a_ready_job_due_sooner_takes_the_place_of_the_queued_job_due_latest() {
        let hour = 3_600_000;
        let machines = [
            machine("a", "f", "print", 2),
            machine("b", "f", "print", 2),
            machine("p", "f", "press", 2),
        ];
        let queued = [
            queued(1, "a", 30 * hour),
            queued(2, "b", 40 * hour),
            queued(3, "p", 50 * hour),
        ];
        // A rush print due in 5 h: b's job, due latest of the printers'.
        assert_eq!(
            bumps(&[job(9, "f", "print", 5 * hour)], &queued, &machines, hour),
            [(JobToken(9), JobToken(2))]
        );
        // Two rush prints: both printers' jobs, the later one first.
        assert_eq!(
            bumps(
                &[
                    job(9, "f", "print", 5 * hour),
                    job(8, "f", "print", 6 * hour)
                ],
                &queued,
                &machines,
                hour
            ),
            [(JobToken(9), JobToken(2)), (JobToken(8), JobToken(1))]
        );
        // Not due sooner by more than the gain: nothing moves.
        assert!(
            bumps(
                &[job(9, "f", "print", 39 * hour + 1)],
                &queued[1..2],
                &machines,
                hour
            )
            .is_empty()
        );
        // No machine that could run it (another factory, a paused one, a
        // material not loaded): nothing moves.
        assert!(bumps(&[job(9, "g", "print", hour)], &queued, &machines, hour).is_empty());
        let mut paused = machines.clone();
        paused[1].accepts_jobs = false;
        assert_eq!(
            bumps(&[job(9, "f", "print", hour)], &queued, &paused, hour),
            [(JobToken(9), JobToken(1))]
        );
        let mut totes = machines.clone();
        totes[0].loaded_material = Some("tote".into());
        totes[1].loaded_material = Some("tote".into());
        assert!(bumps(&[job(9, "f", "print", hour)], &queued, &totes, hour).is_empty());
    }

    fn machine(id: &str, factory: &str, process: &str, queue_len: usize) -> MachineSlot {
        MachineSlot {
            id: MachineId::new(id),
            factory: FactoryId::new(factory),
            capabilities: vec![process.into()],
            materials: vec!["cotton".into()],
            accepts_jobs: true,
            queue_len,
            loaded_material: None,
            opens_ms: Some(0),
            speed: 1.0,
        }
    }

    fn job(token: u32, factory: &str, process: &str, due_ms: Millis) -> JobCandidate {
        JobCandidate {
            token: JobToken(token),
            factory: FactoryId::new(factory),
            process: process.into(),
            material: "cotton".into(),
            due_ms,
        }
    }

    fn names(assignments: &[(JobToken, MachineId)]) -> Vec<(u32, &str)> {
        assignments.iter().map(|(t, m)| (t.0, m.as_str())).collect()
    }

    #[test]
    fn machines_open_now_fill_first_and_one_never_open_takes_nothing() {
        // "closed" opens in an hour, "open" now with a longer queue,
        // "retired" never: the open one takes jobs up to its room, then
        // the closed one; the retired one none.
        let mut closed = machine("closed", "f", "print", 0);
        closed.opens_ms = Some(3_600_000);
        let open = machine("open", "f", "print", 1);
        let mut retired = machine("retired", "f", "print", 0);
        retired.opens_ms = None;
        let jobs: Vec<JobCandidate> = (1..=5).map(|t| job(t, "f", "print", 100)).collect();
        let assigned = assign_jobs(&jobs, &[closed, open, retired], 3);
        assert_eq!(
            names(&assigned),
            [
                (1, "open"),
                (2, "open"),
                (3, "closed"),
                (4, "closed"),
                (5, "closed")
            ]
        );
    }

    #[test]
    fn earliest_deadline_goes_to_the_shortest_queue() {
        let machines = [machine("a", "f", "print", 1), machine("b", "f", "print", 0)];
        let jobs = [
            job(1, "f", "print", 300),
            job(2, "f", "print", 100),
            job(3, "f", "print", 200),
        ];
        let got = assign_jobs(&jobs, &machines, 2);
        assert_eq!(names(&got), vec![(2, "b"), (3, "a"), (1, "b")]);
    }

    #[test]
    fn a_faster_machine_takes_a_longer_queue_in_jobs_when_it_is_shorter_in_time() {
        // "a" works three times as fast: one queued job there is a third
        // of one on "b". (1 + 1) / 3 < (0 + 1) / 1: the job goes to "a".
        let mut fast = machine("a", "f", "print", 1);
        fast.speed = 3.0;
        let slow = machine("b", "f", "print", 0);
        let got = assign_jobs(&[job(1, "f", "print", 0)], &[fast.clone(), slow.clone()], 4);
        assert_eq!(names(&got), vec![(1, "a")]);
        // At twice the speed the two are even, and the tie goes by id.
        fast.speed = 2.0;
        let mut later = slow.clone();
        later.id = MachineId::new("0");
        let got = assign_jobs(&[job(1, "f", "print", 0)], &[fast.clone(), later], 4);
        assert_eq!(names(&got), vec![(1, "0")]);
        // Four jobs: "a" at 3x ends with three of them and "b" one.
        fast.speed = 3.0;
        fast.queue_len = 0;
        let jobs: Vec<JobCandidate> = (1..=4).map(|t| job(t, "f", "print", 0)).collect();
        let got = assign_jobs(&jobs, &[fast, slow], 4);
        let on_a = got.iter().filter(|(_, m)| m.as_str() == "a").count();
        assert_eq!(on_a, 3, "{got:?}");
        // A speed that is not positive and finite counts as 1.
        let mut odd = machine("a", "f", "print", 1);
        odd.speed = f64::NAN;
        let got = assign_jobs(
            &[job(1, "f", "print", 0)],
            &[odd, machine("b", "f", "print", 0)],
            4,
        );
        assert_eq!(names(&got), vec![(1, "b")]);
    }

    #[test]
    fn capability_material_factory_and_availability_are_respected() {
        let mut paused = machine("p", "f", "print", 0);
        paused.accepts_jobs = false;
        let mut no_material = machine("n", "f", "print", 0);
        no_material.materials = vec!["pla".into()];
        let machines = [
            paused,
            no_material,
            machine("press", "f", "press", 0),
            machine("other", "g", "print", 0),
        ];
        assert!(assign_jobs(&[job(1, "f", "print", 0)], &machines, 2).is_empty());
        assert_eq!(
            names(&assign_jobs(&[job(2, "f", "press", 0)], &machines, 2)),
            vec![(2, "press")]
        );
    }

    #[test]
    fn a_loaded_material_takes_only_its_jobs_and_is_preferred() {
        let mut tote = machine("a", "f", "print", 0);
        tote.materials.push("tote".into());
        tote.loaded_material = Some("tote".into());
        let mut cotton = machine("b", "f", "print", 0);
        cotton.loaded_material = Some("cotton".into());
        let unknown = machine("c", "f", "print", 0);
        let mut tote_job = job(2, "f", "print", 1);
        tote_job.material = "tote".into();
        // The cotton job goes to the machine with cotton loaded, though "a"
        // sorts first; the tote job to the one with totes.
        let got = assign_jobs(&[job(1, "f", "print", 0), tote_job], &[tote, cotton], 2);
        assert_eq!(names(&got), vec![(1, "b"), (2, "a")]);
        // With cotton loaded nowhere, a cotton job waits rather than going
        // to the tote machine; a machine of unknown material takes it.
        let mut tote = machine("a", "f", "print", 0);
        tote.loaded_material = Some("tote".into());
        assert!(assign_jobs(&[job(1, "f", "print", 0)], std::slice::from_ref(&tote), 2).is_empty());
        assert_eq!(
            names(&assign_jobs(
                &[job(1, "f", "print", 0)],
                &[tote, unknown],
                2
            )),
            vec![(1, "c")]
        );
    }

    #[test]
    fn queues_are_capped() {
        let machines = [machine("a", "f", "print", 1)];
        let jobs = [job(1, "f", "print", 0), job(2, "f", "print", 1)];
        assert_eq!(names(&assign_jobs(&jobs, &machines, 2)), vec![(1, "a")]);
    }

    #[test]
    fn nearest_capable_factory() {
        let pairs = |ps: &[(&str, &str)]| {
            ps.iter()
                .map(|(p, m)| (p.to_string(), m.to_string()))
                .collect::<BTreeSet<_>>()
        };
        let site = |id: &str, lat: f64, capabilities: &[(&str, &str)]| FactorySite {
            id: FactoryId::new(id),
            location: Location::new(lat, 13.4),
            capabilities: pairs(capabilities),
            zone: Some("z".into()),
        };
        let factories = [
            site("near", 52.50, &[("print", "cotton")]),
            site(
                "far",
                52.60,
                &[("print", "cotton"), ("print", "tote"), ("press", "cotton")],
            ),
        ];
        let want = |ps: &[&str]| {
            ps.iter()
                .map(|p| {
                    p.split_once(':')
                        .map_or((p.to_string(), "cotton".to_string()), |(p, m)| {
                            (p.to_string(), m.to_string())
                        })
                })
                .collect::<BTreeSet<_>>()
        };
        let here = Location::new(52.49, 13.4);
        assert_eq!(
            choose_factory(here, "z", &want(&["print"]), &factories).map(|f| f.id.as_str()),
            Some("near")
        );
        assert_eq!(
            choose_factory(here, "z", &want(&["print", "press"]), &factories)
                .map(|f| f.id.as_str()),
            Some("far")
        );
        assert!(choose_factory(here, "z", &want(&["laser"]), &factories).is_none());
        // The near factory prints, but has no totes loaded.
        assert_eq!(
            choose_factory(here, "z", &want(&["print:tote"]), &factories).map(|f| f.id.as_str()),
            Some("far")
        );
        // A capable factory in the order's own zone goes before a nearer
        // one in another zone; with none in its zone, the nearest.
        let mut zoned = factories.clone();
        zoned[0].zone = Some("other".into());
        assert_eq!(
            choose_factory(here, "z", &want(&["print"]), &zoned).map(|f| f.id.as_str()),
            Some("far")
        );
        assert_eq!(
            choose_factory(here, "elsewhere", &want(&["print"]), &zoned).map(|f| f.id.as_str()),
            Some("near")
        );
    }

    proptest! {
        #[test]
        fn assignments_respect_every_constraint(
            specs in prop::collection::vec((0usize..2, 0usize..2, 0i64..1000), 0..40),
            queues in prop::collection::vec((0usize..2, 0usize..2, 0usize..3, any::<bool>(), 0usize..3), 1..8),
            max_queue in 1usize..4,
        ) {
            let factories = ["f0", "f1"];
            let processes = ["print", "press"];
            let loaded = [None, Some("cotton"), Some("tote")];
            let machines: Vec<MachineSlot> = queues.iter().enumerate().map(|(i, (f, p, q, ok, l))| {
                let mut m = machine(&format!("m{i}"), factories[*f], processes[*p], *q);
                m.accepts_jobs = *ok;
                m.loaded_material = loaded[*l].map(str::to_string);
                m
            }).collect();
            let jobs: Vec<JobCandidate> = specs.iter().enumerate()
                .map(|(t, (f, p, due))| job(t as u32, factories[*f], processes[*p], *due))
                .collect();
            let got = assign_jobs(&jobs, &machines, max_queue);
            let mut tokens = BTreeSet::new();
            let mut load: HashMap<&str, usize> = machines.iter().map(|m| (m.id.as_str(), m.queue_len)).collect();
            for (token, machine_id) in &got {
                prop_assert!(tokens.insert(*token), "job {token} assigned twice");
                let machine = machines.iter().find(|m| &m.id == machine_id).expect("known machine");
                let job = jobs.iter().find(|j| j.token == *token).expect("known job");
                prop_assert!(machine.can_run(job));
                *load.entry(machine_id.as_str()).or_default() += 1;
            }
            for m in &machines {
                let after = load[m.id.as_str()];
                prop_assert!(after == m.queue_len || after <= max_queue, "{} has {after}", m.id);
            }
            // Handing back: only queued jobs, each once, each for a ready
            // job due sooner by more than the gain that its machine could
            // run; never more than the ready jobs.
            let queued: Vec<QueuedJob> = machines.iter().enumerate()
                .map(|(i, m)| queued(1000 + i as u32, m.id.as_str(), (i as i64) * 137 % 1000))
                .collect();
            let handed = bumps(&jobs, &queued, &machines, 50);
            let ready: BTreeSet<JobToken> = handed.iter().map(|(r, _)| *r).collect();
            let back: BTreeSet<JobToken> = handed.iter().map(|(_, q)| *q).collect();
            prop_assert_eq!(ready.len(), handed.len());
            prop_assert_eq!(back.len(), handed.len());
            for (r, token) in &handed {
                let q = queued.iter().find(|q| q.token == *token).expect("a queued job");
                let m = machines.iter().find(|m| m.id == q.machine).expect("its machine");
                let j = jobs.iter().find(|j| j.token == *r).expect("a ready job");
                prop_assert!(j.due_ms + 50 < q.due_ms && m.can_run(j));
            }
            // A job left out had nowhere to go: every machine that could
            // run it is full.
            for job in jobs.iter().filter(|j| !tokens.contains(&j.token)) {
                for m in machines.iter().filter(|m| m.can_run(job)) {
                    prop_assert!(
                        load[m.id.as_str()] >= max_queue,
                        "job {} left out while {} has room", job.token, m.id
                    );
                }
            }
        }
    }
}
