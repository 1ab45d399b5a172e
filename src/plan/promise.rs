//! The promise estimate: when an order will be ready and delivered, from the
//! work queued in its factory, and whether that misses its deadline.
//!
//! A fluid model of earliest-deadline-first production, the rule the
//! scheduler follows: the jobs of one process in one factory form a queue
//! ordered by due time (then token), served by that process's machines
//! together. A job finishes when the machine time of everything up to and
//! including it is done, shared over the machines; the steps of a line run in
//! order, so a step also finishes no earlier than its own time after the step
//! before. The order is ready when its last line is, and delivered a delivery
//! lead later (waiting for a wave, riding to the customer).
//!
//! Machines work only in their open hours when the caller gives them
//! (`OpenHours`: shifts less maintenance, over a horizon): the queue's work
//! is then done at the pace of the machines open at each moment, and a
//! line's next step waits for an open machine too. Beyond the horizon every
//! machine counts as open.
//!
//! Machines work at their speed when the caller gives it (`with_speeds`:
//! the mean speed of a queue's machines; 2.0 does the work in half the
//! time). Each machine of a queue is taken at that mean, so the estimate is
//! exact when they share a speed.
//!
//! It is an estimate: it does not see setups, materials, or machines that
//! serve several processes at once (each counts fully for every process it
//! has); a job that may run past its shift's end is counted as stopping
//! there. It errs early on running jobs (counted whole). The caller may
//! hold it to a production plan that sees those (`Estimate::no_earlier_than`).
//! Pure: no I/O, no clock.

use crate::domain::{AtRiskReason, FactoryId, Millis};
use std::collections::HashMap;

/// A job in a factory's queues.
#[derive(Debug, Clone, PartialEq)]
pub struct QueuedWork {
    pub token: i64,
    pub factory: FactoryId,
    pub process: String,
    /// Machine time it needs, seconds.
    pub seconds: f64,
    pub due_ms: Millis,
}

/// One step still to make of an order's line.
#[derive(Debug, Clone, PartialEq)]
pub struct StepWork {
    pub line: i64,
    pub step: i64,
    pub process: String,
    pub seconds: f64,
    /// The job's token if it is already queued (then it is in the backlog);
    /// None for an order not yet stored.
    pub token: Option<i64>,
}

/// What the plan says of one order.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub ready_ms: Option<Millis>,
    pub delivery_ms: Option<Millis>,
    pub at_risk: Option<AtRiskReason>,
}

impl Estimate {
    /// This estimate, but ready no earlier than `planned_ready_ms` (the
    /// production plan's end for the order's planned jobs, which sees what
    /// this fluid model does not: setups, materials, each machine's own
    /// queue): delivery follows, and the order is at risk when that is past
    /// `deadline_ms`. An order no machine can make stays as it is.
    pub fn no_earlier_than(
        self,
        planned_ready_ms: Option<Millis>,
        deadline_ms: Millis,
        now_ms: Millis,
        delivery_lead_ms: Millis,
    ) -> Estimate {
        let (Some(ready_ms), Some(planned)) = (self.ready_ms, planned_ready_ms) else {
            return self;
        };
        if planned <= ready_ms {
            return self;
        }
        let lead = delivery_lead_ms.max(0);
        let delivery_ms = planned.saturating_add(lead);
        let reason = if now_ms.saturating_add(lead) > deadline_ms {
            AtRiskReason::NoCourierInTime
        } else {
            AtRiskReason::ProductionBacklog
        };
        Estimate {
            ready_ms: Some(planned),
            delivery_ms: Some(delivery_ms),
            at_risk: self
                .at_risk
                .or((delivery_ms > deadline_ms).then_some(reason)),
        }
    }
}

/// A factory and one of its processes.
type QueueKey = (FactoryId, String);

/// One machine's open intervals `[start, end)` (None: open all the time).
pub type MachineHours = Option<Vec<(Millis, Millis)>>;

/// How many of a queue's machines are open over time: from each step's
/// instant on, its count, until `until`; before the first step and from
/// `until` on, every machine.
#[derive(Debug, Clone, PartialEq)]
pub struct OpenHours {
    steps: Vec<(Millis, usize)>,
    until: Millis,
}

impl OpenHours {
    /// The open hours of a queue's machines between `from` and `until`:
    /// each machine's open intervals `[start, end)`, or None for a machine
    /// open all the time.
    pub fn of_machines(
        machines: &[Option<Vec<(Millis, Millis)>>],
        from: Millis,
        until: Millis,
    ) -> OpenHours {
        let mut always = 0usize;
        let mut edges: Vec<(Millis, i64)> = Vec::new();
        for machine in machines {
            match machine {
                None => always += 1,
                Some(intervals) => {
                    // One machine counts once, however its intervals overlap.
                    let mut own: Vec<(Millis, Millis)> = intervals
                        .iter()
                        .map(|&(start, end)| (start.max(from), end.min(until)))
                        .filter(|(start, end)| start < end)
                        .collect();
                    own.sort_unstable();
                    let mut merged: Vec<(Millis, Millis)> = Vec::with_capacity(own.len());
                    for (start, end) in own {
                        match merged.last_mut() {
                            Some(last) if start <= last.1 => last.1 = last.1.max(end),
                            _ => merged.push((start, end)),
                        }
                    }
                    for (start, end) in merged {
                        edges.push((start, 1));
                        edges.push((end, -1));
                    }
                }
            }
        }
        edges.sort_unstable();
        let mut steps = vec![(from, always)];
        let mut open = always as i64;
        for (at, change) in edges {
            open += change;
            let count = open.max(0) as usize;
            match steps.last_mut() {
                Some(last) if last.0 == at => last.1 = count,
                _ => steps.push((at, count)),
            }
        }
        OpenHours { steps, until }
    }

    /// Machines open at `t`, of `all`.
    fn open_at(&self, t: Millis, all: usize) -> usize {
        if t >= self.until {
            return all;
        }
        let at = self.steps.partition_point(|step| step.0 <= t);
        if at == 0 { all } else { self.steps[at - 1].1 }
    }

    /// When `work_ms` of machine time started at `from` is done, with
    /// every open machine working on it (`one`: a single job, on one
    /// machine at a time); `all` machines in the queue.
    fn finish(&self, from: Millis, work_ms: f64, all: usize, one: bool) -> Millis {
        let pace = |open: usize| if one { open.min(1) } else { open } as f64;
        let mut t = from;
        let mut left = work_ms.max(0.0);
        loop {
            let open = pace(self.open_at(t, all));
            // The end of this stretch of constant openness.
            let next = if t >= self.until {
                None
            } else {
                let at = self.steps.partition_point(|step| step.0 <= t);
                Some(
                    self.steps
                        .get(at)
                        .map_or(self.until, |step| step.0.min(self.until)),
                )
            };
            match next {
                Some(end) if open <= 0.0 => t = end,
                Some(end) if (end - t) as f64 * open < left => {
                    left -= (end - t) as f64 * open;
                    t = end;
                }
                _ => {
                    let open = open.max(1.0);
                    return t.saturating_add((left / open).ceil() as Millis);
                }
            }
        }
    }
}

#[derive(Debug, Clone)]
struct Queue {
    machines: usize,
    /// The machines' mean speed: machine time is work time over it.
    speed: f64,
    /// None: every machine open all the time.
    hours: Option<OpenHours>,
    /// (due, token) ascending.
    keys: Vec<(Millis, i64)>,
    /// prefix[i]: seconds of keys[..i].
    prefix: Vec<f64>,
}

impl Default for Queue {
    fn default() -> Self {
        Queue {
            machines: 0,
            speed: 1.0,
            hours: None,
            keys: Vec::new(),
            prefix: Vec::new(),
        }
    }
}

impl Queue {
    /// When `work_ms` of work at speed 1 from `from` is done on this
    /// queue's machines at their speed (`one`: on one machine at a time).
    fn finish(&self, from: Millis, work_ms: f64, one: bool) -> Millis {
        let work_ms = work_ms / self.speed;
        match &self.hours {
            Some(hours) => hours.finish(from, work_ms, self.machines, one),
            None => {
                let pace = if one {
                    1.0
                } else {
                    self.machines.max(1) as f64
                };
                from.saturating_add((work_ms.max(0.0) / pace).ceil() as Millis)
            }
        }
    }
}

/// The factories' queued work, by factory and process.
#[derive(Debug, Clone, Default)]
pub struct Backlog {
    queues: HashMap<QueueKey, Queue>,
}

impl Backlog {
    /// `machines`: per (factory, process), the machines that count as
    /// capacity (zero or absent: no machine can run it).
    pub fn new(
        work: impl IntoIterator<Item = QueuedWork>,
        machines: &HashMap<QueueKey, usize>,
    ) -> Backlog {
        let mut grouped: HashMap<QueueKey, Vec<(Millis, i64, f64)>> = HashMap::new();
        for item in work {
            grouped
                .entry((item.factory, item.process))
                .or_default()
                .push((item.due_ms, item.token, item.seconds.max(0.0)));
        }
        let mut queues: HashMap<QueueKey, Queue> = machines
            .iter()
            .map(|(key, &count)| {
                (
                    key.clone(),
                    Queue {
                        machines: count,
                        prefix: vec![0.0],
                        ..Queue::default()
                    },
                )
            })
            .collect();
        for (key, mut items) in grouped {
            items.sort_by_key(|item| (item.0, item.1));
            let queue = queues.entry(key).or_insert_with(|| Queue {
                prefix: vec![0.0],
                ..Queue::default()
            });
            let mut total = 0.0;
            for (due, token, seconds) in items {
                total += seconds;
                queue.keys.push((due, token));
                queue.prefix.push(total);
            }
        }
        Backlog { queues }
    }

    /// The machines of (factory, process) work only in `hours` (queues
    /// not named keep every machine open).
    pub fn with_open_hours(mut self, hours: HashMap<QueueKey, OpenHours>) -> Backlog {
        for (key, open) in hours {
            if let Some(queue) = self.queues.get_mut(&key) {
                queue.hours = Some(open);
            }
        }
        self
    }

    /// The machines of (factory, process) work at `speed` (their mean
    /// speed; 1.0 is the SKUs' `seconds_per_unit`). Queues not named, and
    /// speeds that are not positive and finite, keep 1.0.
    pub fn with_speeds(mut self, speeds: HashMap<QueueKey, f64>) -> Backlog {
        for (key, speed) in speeds {
            if let Some(queue) = self.queues.get_mut(&key)
                && speed.is_finite()
                && speed > 0.0
            {
                queue.speed = speed;
            }
        }
        self
    }

    /// When, from `now_ms`, a job of `seconds` with this due time (and
    /// token, if queued) is done, or None when no machine runs the process.
    fn fluid_finish_ms(
        &self,
        factory: &FactoryId,
        process: &str,
        due_ms: Millis,
        token: Option<i64>,
        seconds: f64,
        now_ms: Millis,
    ) -> Option<Millis> {
        let queue = self.queues.get(&(factory.clone(), process.to_string()))?;
        if queue.machines == 0 {
            return None;
        }
        let ahead = match token {
            // Everything up to and including itself.
            Some(token) => {
                let at = queue.keys.partition_point(|key| *key <= (due_ms, token));
                queue.prefix[at]
            }
            // Everything due no later, then itself.
            None => {
                let at = queue.keys.partition_point(|key| key.0 <= due_ms);
                queue.prefix[at] + seconds.max(0.0)
            }
        };
        Some(queue.finish(now_ms, ahead * 1000.0, false))
    }

    /// When one job of `seconds` started at `from_ms` on a machine of
    /// (factory, process) is done (None: no such machine).
    fn single_finish_ms(
        &self,
        factory: &FactoryId,
        process: &str,
        seconds: f64,
        from_ms: Millis,
    ) -> Option<Millis> {
        let queue = self.queues.get(&(factory.clone(), process.to_string()))?;
        (queue.machines > 0).then(|| queue.finish(from_ms, seconds * 1000.0, true))
    }

    /// When an order's remaining steps are done and it is delivered, and
    /// whether that is after its deadline.
    pub fn estimate(
        &self,
        factory: &FactoryId,
        steps: &[StepWork],
        deadline_ms: Millis,
        now_ms: Millis,
        delivery_lead_ms: Millis,
    ) -> Estimate {
        let mut steps: Vec<&StepWork> = steps.iter().collect();
        steps.sort_by_key(|s| (s.line, s.step));
        let mut ready_ms = now_ms;
        let mut line_end: Option<(i64, Millis)> = None;
        for step in steps {
            let no_machine = Estimate {
                ready_ms: None,
                delivery_ms: None,
                at_risk: Some(AtRiskReason::NoCapableMachine),
            };
            let Some(fluid) = self.fluid_finish_ms(
                factory,
                &step.process,
                deadline_ms,
                step.token,
                step.seconds,
                now_ms,
            ) else {
                return no_machine;
            };
            let start = match line_end {
                Some((line, end)) if line == step.line => end,
                _ => now_ms,
            };
            let Some(after_previous) =
                self.single_finish_ms(factory, &step.process, step.seconds.max(0.0), start)
            else {
                return no_machine;
            };
            let end = fluid.max(after_previous);
            line_end = Some((step.line, end));
            ready_ms = ready_ms.max(end);
        }
        let lead = delivery_lead_ms.max(0);
        let delivery_ms = ready_ms.saturating_add(lead);
        // Late even if it were ready now: the ride is the problem, not the queue.
        let reason = if now_ms.saturating_add(lead) > deadline_ms {
            AtRiskReason::NoCourierInTime
        } else {
            AtRiskReason::ProductionBacklog
        };
        Estimate {
            ready_ms: Some(ready_ms),
            delivery_ms: Some(delivery_ms),
            at_risk: (delivery_ms > deadline_ms).then_some(reason),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_planned_end_later_than_the_estimate_moves_it_and_may_flag_the_order() {
        let fluid = Estimate {
            ready_ms: Some(10_000),
            delivery_ms: Some(15_000),
            at_risk: None,
        };
        // Earlier or no plan: unchanged.
        assert_eq!(fluid.no_earlier_than(Some(9_000), 20_000, 0, 5_000), fluid);
        assert_eq!(fluid.no_earlier_than(None, 20_000, 0, 5_000), fluid);
        // Later, still in time.
        let later = fluid.no_earlier_than(Some(12_000), 20_000, 0, 5_000);
        assert_eq!(
            (later.ready_ms, later.delivery_ms, later.at_risk),
            (Some(12_000), Some(17_000), None)
        );
        // Later, past the deadline: the backlog's fault.
        let late = fluid.no_earlier_than(Some(16_000), 20_000, 0, 5_000);
        assert_eq!(late.delivery_ms, Some(21_000));
        assert_eq!(late.at_risk, Some(AtRiskReason::ProductionBacklog));
        // An order no machine can make is not given a plan's time.
        let none = Estimate {
            ready_ms: None,
            delivery_ms: None,
            at_risk: Some(AtRiskReason::NoCapableMachine),
        };
        assert_eq!(none.no_earlier_than(Some(16_000), 20_000, 0, 5_000), none);
    }

    use proptest::prelude::*;

    const HOUR: Millis = 3_600_000;

    fn factory() -> FactoryId {
        FactoryId::new("f")
    }

    fn work(token: i64, process: &str, seconds: f64, due_ms: Millis) -> QueuedWork {
        QueuedWork {
            token,
            factory: factory(),
            process: process.into(),
            seconds,
            due_ms,
        }
    }

    fn machines(pairs: &[(&str, usize)]) -> HashMap<(FactoryId, String), usize> {
        pairs
            .iter()
            .map(|(process, count)| ((factory(), process.to_string()), *count))
            .collect()
    }

    fn step(line: i64, step: i64, process: &str, seconds: f64, token: Option<i64>) -> StepWork {
        StepWork {
            line,
            step,
            process: process.into(),
            seconds,
            token,
        }
    }

    #[test]
    fn a_new_order_waits_for_the_work_due_before_it_shared_over_the_machines() {
        let backlog = Backlog::new(
            [
                work(1, "print", 3600.0, HOUR),
                work(2, "print", 3600.0, 2 * HOUR),
                work(3, "print", 3600.0, 100 * HOUR),
            ],
            &machines(&[("print", 2)]),
        );
        // Due at 10 h: the two earlier hours ahead of it on two machines
        // (1 h), then its own 2 h on them (1 h): ready after 2 h.
        let estimate = backlog.estimate(
            &factory(),
            &[step(0, 0, "print", 7200.0, None)],
            10 * HOUR,
            0,
            HOUR,
        );
        assert_eq!(estimate.ready_ms, Some(2 * HOUR));
        assert_eq!(estimate.delivery_ms, Some(3 * HOUR));
        assert_eq!(estimate.at_risk, None);
    }

    #[test]
    fn machines_at_twice_the_speed_make_the_same_work_in_half_the_time() {
        let queued = || {
            [
                work(1, "print", 3600.0, HOUR),
                work(2, "print", 3600.0, 2 * HOUR),
            ]
        };
        let order = [
            step(0, 0, "print", 3600.0, None),
            step(0, 1, "press", 1800.0, None),
        ];
        let nominal = Backlog::new(queued(), &machines(&[("print", 2), ("press", 1)]));
        let estimate = nominal.estimate(&factory(), &order, 10 * HOUR, 0, 0);
        // Print: 2 h ahead + 1 h own on two machines (1.5 h); press 0.5 h.
        assert_eq!(estimate.ready_ms, Some(2 * HOUR));
        let fast = Backlog::new(queued(), &machines(&[("print", 2), ("press", 1)])).with_speeds(
            HashMap::from([
                ((factory(), "print".to_string()), 2.0),
                ((factory(), "press".to_string()), 0.5),
            ]),
        );
        let estimate = fast.estimate(&factory(), &order, 10 * HOUR, 0, 0);
        // Print at 2x: 0.75 h; press at half speed: 1 h.
        assert_eq!(estimate.ready_ms, Some(HOUR + 45 * 60_000));
        // A speed that is not positive and finite is ignored.
        let odd = Backlog::new(queued(), &machines(&[("print", 2), ("press", 1)])).with_speeds(
            HashMap::from([
                ((factory(), "print".to_string()), 0.0),
                ((factory(), "press".to_string()), f64::NAN),
            ]),
        );
        assert_eq!(
            odd.estimate(&factory(), &order, 10 * HOUR, 0, 0).ready_ms,
            Some(2 * HOUR)
        );
    }

    #[test]
    fn steps_of_a_line_follow_each_other_and_lines_run_side_by_side() {
        let backlog = Backlog::new([], &machines(&[("print", 4), ("press", 4)]));
        let estimate = backlog.estimate(
            &factory(),
            &[
                step(0, 1, "press", 600.0, None),
                step(0, 0, "print", 1200.0, None),
                step(1, 0, "print", 300.0, None),
            ],
            10 * HOUR,
            1_000,
            0,
        );
        // Line 0: 1200 s then 600 s; line 1 ends sooner.
        assert_eq!(estimate.ready_ms, Some(1_000 + 1_800_000));
    }

    #[test]
    fn a_queued_job_counts_itself_once() {
        let backlog = Backlog::new(
            [work(7, "print", 600.0, HOUR), work(8, "print", 600.0, HOUR)],
            &machines(&[("print", 1)]),
        );
        let first = backlog.estimate(
            &factory(),
            &[step(0, 0, "print", 600.0, Some(7))],
            HOUR,
            0,
            0,
        );
        let second = backlog.estimate(
            &factory(),
            &[step(0, 0, "print", 600.0, Some(8))],
            HOUR,
            0,
            0,
        );
        assert_eq!(first.ready_ms, Some(600_000));
        assert_eq!(second.ready_ms, Some(1_200_000));
    }

    #[test]
    fn too_much_work_ahead_is_a_backlog_risk() {
        let backlog = Backlog::new(
            (0..60).map(|token| work(token, "print", 3600.0, HOUR)),
            &machines(&[("print", 1)]),
        );
        let estimate = backlog.estimate(
            &factory(),
            &[step(0, 0, "print", 60.0, None)],
            48 * HOUR,
            0,
            HOUR,
        );
        assert_eq!(estimate.at_risk, Some(AtRiskReason::ProductionBacklog));
        assert!(estimate.delivery_ms > Some(48 * HOUR));
    }

    #[test]
    fn no_machine_for_a_step_is_its_own_reason() {
        let backlog = Backlog::new([], &machines(&[("print", 1), ("embroider", 0)]));
        let estimate = backlog.estimate(
            &factory(),
            &[
                step(0, 0, "print", 60.0, None),
                step(0, 1, "embroider", 60.0, None),
            ],
            48 * HOUR,
            0,
            0,
        );
        assert_eq!(estimate.at_risk, Some(AtRiskReason::NoCapableMachine));
        assert_eq!(estimate.ready_ms, None);
        let elsewhere = backlog.estimate(
            &FactoryId::new("g"),
            &[step(0, 0, "print", 1.0, None)],
            0,
            0,
            0,
        );
        assert_eq!(elsewhere.at_risk, Some(AtRiskReason::NoCapableMachine));
    }

    #[test]
    fn a_ride_too_long_for_the_deadline_is_a_courier_risk() {
        let backlog = Backlog::new([], &machines(&[("print", 1)]));
        let estimate = backlog.estimate(
            &factory(),
            &[step(0, 0, "print", 60.0, None)],
            2 * HOUR,
            0,
            3 * HOUR,
        );
        assert_eq!(estimate.at_risk, Some(AtRiskReason::NoCourierInTime));
    }

    #[test]
    fn an_order_with_nothing_left_is_ready_now() {
        let backlog = Backlog::new([], &HashMap::new());
        let estimate = backlog.estimate(&factory(), &[], HOUR, 5, 10);
        assert_eq!(estimate.ready_ms, Some(5));
        assert_eq!(estimate.delivery_ms, Some(15));
        assert_eq!(estimate.at_risk, None);
    }

    #[test]
    fn work_waits_for_the_machines_open_hours() {
        // One printer, open 08-16 h on two days; it is 18 h.
        let day = 24 * HOUR;
        let hours = OpenHours::of_machines(
            &[Some(vec![
                (8 * HOUR, 16 * HOUR),
                (day + 8 * HOUR, day + 16 * HOUR),
            ])],
            18 * HOUR,
            2 * day,
        );
        let key = (factory(), "print".to_string());
        let backlog = Backlog::new([work(1, "print", 3600.0, HOUR)], &machines(&[("print", 1)]))
            .with_open_hours(HashMap::from([(key, hours)]));
        // The hour ahead of it, then its own two: 08-11 h the next day.
        let estimate = backlog.estimate(
            &factory(),
            &[step(0, 0, "print", 7200.0, None)],
            3 * day,
            18 * HOUR,
            HOUR,
        );
        assert_eq!(estimate.ready_ms, Some(day + 11 * HOUR));
        assert_eq!(estimate.delivery_ms, Some(day + 12 * HOUR));
        // Seven hours of work: the next day's shift and the morning after
        // the horizon (from 48 h every machine counts as open).
        let estimate = backlog.estimate(
            &factory(),
            &[step(0, 0, "print", 7.0 * 3600.0 + 1.0, None)],
            3 * day,
            18 * HOUR,
            0,
        );
        assert_eq!(estimate.ready_ms, Some(2 * day + 1_000));
    }

    #[test]
    fn a_step_after_another_waits_for_an_open_machine_and_open_machines_share_the_work() {
        let key = |process: &str| (factory(), process.to_string());
        // Two printers always open and a press open only from 10 h.
        let press = OpenHours::of_machines(&[Some(vec![(10 * HOUR, 20 * HOUR)])], 0, 20 * HOUR);
        let printers = OpenHours::of_machines(&[None, Some(vec![(0, 20 * HOUR)])], 0, 20 * HOUR);
        let backlog = Backlog::new([], &machines(&[("print", 2), ("press", 1)])).with_open_hours(
            HashMap::from([(key("press"), press), (key("print"), printers)]),
        );
        let estimate = backlog.estimate(
            &factory(),
            &[
                step(0, 0, "print", 7200.0, None),
                step(0, 1, "press", 1800.0, None),
            ],
            30 * HOUR,
            0,
            0,
        );
        // Printed by 2 h on one machine (a line's step runs on one), pressed
        // from 10 h.
        assert_eq!(estimate.ready_ms, Some(10 * HOUR + HOUR / 2));
        // The queue's work is shared by both open printers.
        let backlog = Backlog::new(
            [work(1, "print", 4.0 * 3600.0, HOUR)],
            &machines(&[("print", 2)]),
        )
        .with_open_hours(HashMap::from([(
            key("print"),
            OpenHours::of_machines(&[None, Some(vec![(0, 20 * HOUR)])], 0, 20 * HOUR),
        )]));
        let estimate = backlog.estimate(
            &factory(),
            &[step(0, 0, "print", 60.0, None)],
            30 * HOUR,
            0,
            0,
        );
        assert_eq!(estimate.ready_ms, Some(2 * HOUR + 30_000));
    }

    proptest! {
        /// Fewer open hours never make an order earlier, and machines open
        /// all the time give the estimate without open hours.
        #[test]
        fn closed_hours_never_make_an_order_earlier(
            queued in prop::collection::vec((0.0f64..20_000.0, 0i64..100), 0..20),
            own in prop::collection::vec((0.0f64..5_000.0, 0usize..2), 1..4),
            shifts in prop::collection::vec(prop::option::of(prop::collection::vec((0i64..40, 1i64..12), 0..4)), 1..4),
            now in 0i64..30,
        ) {
            let processes = ["print", "press"];
            let count = shifts.len();
            let items: Vec<QueuedWork> = queued.iter().enumerate()
                .map(|(i, (s, d))| work(i as i64, processes[i % 2], *s, d * HOUR))
                .collect();
            let steps: Vec<StepWork> = own.iter().enumerate()
                .map(|(i, (s, p))| step(0, i as i64, processes[*p], *s, None))
                .collect();
            let capacity = machines(&[("print", count), ("press", count)]);
            let base = Backlog::new(items.clone(), &capacity)
                .estimate(&factory(), &steps, 50 * HOUR, now * HOUR, 0);
            let intervals: Vec<Option<Vec<(Millis, Millis)>>> = shifts.iter()
                .map(|s| s.as_ref().map(|s| s.iter().map(|(a, l)| (a * HOUR, (a + l) * HOUR)).collect()))
                .collect();
            let hours = |machines: &[Option<Vec<(Millis, Millis)>>]| {
                processes.iter()
                    .map(|p| ((factory(), p.to_string()), OpenHours::of_machines(machines, now * HOUR, 60 * HOUR)))
                    .collect::<HashMap<_, _>>()
            };
            let closed = Backlog::new(items.clone(), &capacity)
                .with_open_hours(hours(&intervals))
                .estimate(&factory(), &steps, 50 * HOUR, now * HOUR, 0);
            // (Within a millisecond: the work is summed in floating point.)
            let ms = |e: Estimate| e.ready_ms.unwrap_or(Millis::MAX);
            prop_assert!(ms(closed).saturating_add(1) >= ms(base), "{closed:?} < {base:?}");
            let open = Backlog::new(items, &capacity)
                .with_open_hours(hours(&vec![None; count]))
                .estimate(&factory(), &steps, 50 * HOUR, now * HOUR, 0);
            prop_assert!(ms(open).abs_diff(ms(base)) <= 1, "{open:?} != {base:?}");
        }

        #[test]
        fn more_work_or_fewer_machines_never_makes_an_order_earlier(
            queued in prop::collection::vec((0.0f64..10_000.0, 0i64..100), 0..40),
            own in 1.0f64..5_000.0,
            due in 0i64..100,
            count in 1usize..5,
        ) {
            let items: Vec<QueuedWork> = queued.iter().enumerate()
                .map(|(i, (s, d))| work(i as i64, "print", *s, d * HOUR))
                .collect();
            let steps = [step(0, 0, "print", own, None)];
            let base = Backlog::new(items.clone(), &machines(&[("print", count)]))
                .estimate(&factory(), &steps, due * HOUR, 0, 0);
            let more = Backlog::new(
                items.iter().cloned().chain([work(1_000, "print", 100.0, 0)]),
                &machines(&[("print", count)]),
            )
            .estimate(&factory(), &steps, due * HOUR, 0, 0);
            let fewer = Backlog::new(items, &machines(&[("print", count.max(2) - 1)]))
                .estimate(&factory(), &steps, due * HOUR, 0, 0);
            prop_assert!(more.ready_ms >= base.ready_ms);
            prop_assert!(fewer.ready_ms >= base.ready_ms);
            // Never sooner than its own time on every machine at once.
            prop_assert!(base.ready_ms >= Some((own * 1000.0 / count as f64) as Millis));
        }
    }
}
