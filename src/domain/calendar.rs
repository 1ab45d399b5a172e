//! A machine's calendar: the shifts it works (a cron expression for each
//! shift's start, on the domain clock in the shift's time zone, UTC unless
//! told, and a duration) and the
//! maintenance windows planned ahead for it. Pure: every question takes the
//! instant it is about.
//!
//! Invariants (tested, and property-tested): a machine with no shifts is
//! always in shift; a job may start at `t` only inside a shift and when its
//! estimated run `[t, t + work)` meets no maintenance window (a job may run
//! past its shift's end: a machine is not stopped mid-job); `next_start`
//! is the earliest such instant at or after the one asked about.

use super::Millis;
use chrono::{DateTime, Utc};

/// How far ahead `next_start` looks for an opening (a year).
pub const HORIZON_MS: Millis = 366 * 24 * 3600 * 1000;

/// Candidate instants `next_start` tries before it gives up.
const MAX_STEPS: usize = 10_000;

/// One shift: it starts at each time of `schedule`, read as local time in
/// `zone` (a shift at 08:00 in Europe/Berlin starts at 07:00 UTC in winter
/// and 06:00 UTC in summer; a start that a clock change skips does not
/// happen that day), and lasts `duration_ms`.
#[derive(Debug, Clone)]
pub struct Shift {
    pub schedule: cron::Schedule,
    pub duration_ms: Millis,
    pub zone: chrono_tz::Tz,
}

impl Shift {
    /// A shift from its start cron expression (6 or 7 fields, seconds
    /// first) and its length; the reason when either is wrong.
    pub fn new(start: &str, duration_ms: Millis) -> Result<Shift, String> {
        let schedule = start.parse::<cron::Schedule>().map_err(|err| {
            format!("not a cron expression (sec min hour day month weekday): {err}")
        })?;
        if duration_ms <= 0 {
            return Err(format!(
                "the duration must be positive, got {duration_ms} ms"
            ));
        }
        Ok(Shift {
            schedule,
            duration_ms,
            zone: chrono_tz::UTC,
        })
    }

    /// The same shift in the IANA time zone `zone` (`Europe/Berlin`); the
    /// reason when there is no such zone.
    pub fn in_zone(self, zone: &str) -> Result<Shift, String> {
        let zone = parse_zone(zone)?;
        Ok(Shift { zone, ..self })
    }

    /// The schedule's starts from the instant `t` (its iterator, in the
    /// shift's zone).
    fn starts_from(&self, t: Millis) -> Option<cron::ScheduleIterator<'_, chrono_tz::Tz>> {
        let from = at(t)?.with_timezone(&self.zone);
        Some(self.schedule.after(&from))
    }

    /// Whether `t` is inside one of this shift's occurrences.
    fn contains(&self, t: Millis) -> bool {
        // The latest start at or before t decides: an earlier one ends
        // no later than it does.
        let Some(mut starts) = self.starts_from(t.saturating_add(1)) else {
            return false;
        };
        starts
            .next_back()
            .map(|start| start.timestamp_millis())
            .is_some_and(|start| start <= t && t < start.saturating_add(self.duration_ms))
    }

    /// The occurrence that contains `t`, else the next one: `[start, end)`.
    fn occurrence_from(&self, t: Millis) -> Option<(Millis, Millis)> {
        let latest = self
            .starts_from(t.saturating_add(1))
            .and_then(|mut starts| starts.next_back())
            .map(|start| start.timestamp_millis());
        if let Some(start) = latest
            && start <= t
            && t < start.saturating_add(self.duration_ms)
        {
            return Some((start, start.saturating_add(self.duration_ms)));
        }
        let start = self.next_start_after(t)?;
        Some((start, start.saturating_add(self.duration_ms)))
    }

    /// The first start strictly after `t`.
    fn next_start_after(&self, t: Millis) -> Option<Millis> {
        self.starts_from(t)?
            .next()
            .map(|start| start.timestamp_millis())
    }
}

/// The working time of someone on `shifts` (none: always) that contains
/// `t`, else the next one: `[start, end)`, with `end` the latest end of the
/// shifts running at `start`. None when no shift starts again.
pub fn shift_window(shifts: &[Shift], t: Millis) -> Option<(Millis, Option<Millis>)> {
    if shifts.is_empty() {
        return Some((t, None));
    }
    let occurrences: Vec<(Millis, Millis)> = shifts
        .iter()
        .filter_map(|shift| shift.occurrence_from(t))
        .collect();
    let start = occurrences.iter().map(|o| o.0.max(t)).min()?;
    let end = occurrences
        .iter()
        .filter(|o| o.0 <= start)
        .map(|o| o.1)
        .max()?;
    Some((start, Some(end)))
}

/// A cron schedule read as local time in a time zone (UTC unless told):
/// `0 0 9,13,17 * * *` in Europe/Berlin runs at 09:00, 13:00 and 17:00
/// Berlin time, summer and winter.
#[derive(Debug, Clone)]
pub struct ZonedSchedule {
    pub schedule: cron::Schedule,
    pub zone: chrono_tz::Tz,
}

impl ZonedSchedule {
    /// A schedule from its cron expression (6 or 7 fields, seconds first)
    /// and an optional IANA zone; the reason when either is wrong.
    pub fn new(expression: &str, zone: Option<&str>) -> Result<ZonedSchedule, String> {
        let schedule = expression.parse::<cron::Schedule>().map_err(|err| {
            format!("not a cron expression (sec min hour day month weekday): {err}")
        })?;
        let zone = match zone {
            Some(name) => parse_zone(name)?,
            None => chrono_tz::UTC,
        };
        Ok(ZonedSchedule { schedule, zone })
    }

    /// Its times strictly after `t`, in UTC.
    pub fn after(&self, t: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        self.schedule
            .after(&t.with_timezone(&self.zone))
            .map(|local| local.with_timezone(&Utc))
    }
}

/// Maintenance planned on a machine for `[start_ms, end_ms)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Window {
    pub start_ms: Millis,
    pub end_ms: Millis,
    pub reason: String,
}

/// Why a machine does not start a job now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Closed {
    /// Now is outside every shift of the machine.
    OutsideShift,
    /// The job would run into (or starts inside) this maintenance window.
    Maintenance(Window),
}

/// A job that may not start now, and the first instant it may (None: not
/// within [`HORIZON_MS`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub why: Closed,
    pub opens_ms: Option<Millis>,
}

/// A machine's shifts and maintenance windows.
#[derive(Debug, Clone, Default)]
pub struct Calendar {
    /// None at all: always in shift (a machine without a calendar).
    pub shifts: Vec<Shift>,
    pub windows: Vec<Window>,
}

/// A job's estimated machine time: `quantity` at `seconds_per_unit`
/// (0 for a value that is not a positive finite number).
pub fn work_ms(quantity: u32, seconds_per_unit: f64) -> Millis {
    let seconds = f64::from(quantity) * seconds_per_unit;
    if seconds.is_finite() && seconds > 0.0 {
        // `as` saturates at the ends of the range.
        (seconds * 1000.0).ceil() as Millis
    } else {
        0
    }
}

/// The longest maintenance window one request plans (31 days).
pub const MAX_WINDOW_MS: Millis = 31 * 24 * 3600 * 1000;

/// What is wrong with a maintenance window asked for at `now`, each as
/// (JSON pointer, reason); empty when it may be planned.
pub fn window_problems(
    start_ms: Millis,
    end_ms: Millis,
    reason: &str,
    now: Millis,
) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if end_ms <= start_ms {
        out.push(("/end", "must be after start".to_string()));
    } else if end_ms - start_ms > MAX_WINDOW_MS {
        out.push(("/end", "must be at most 31 days after start".to_string()));
    }
    if end_ms <= now {
        out.push((
            "/end",
            "is in the past: a window is planned ahead".to_string(),
        ));
    }
    let length = reason.trim().chars().count();
    if !(1..=200).contains(&length) {
        out.push((
            "/reason",
            format!("must be 1..=200 characters, got {length}"),
        ));
    }
    out
}

/// The IANA time zone named `name` (`Europe/Berlin`, `UTC`); the reason
/// when there is none.
pub fn parse_zone(name: &str) -> Result<chrono_tz::Tz, String> {
    name.parse::<chrono_tz::Tz>().map_err(|_| {
        format!("not an IANA time zone name (like \"Europe/Berlin\" or \"UTC\"): {name:?}")
    })
}

fn at(ms: Millis) -> Option<DateTime<Utc>> {
    DateTime::<Utc>::from_timestamp_millis(ms)
}

impl Calendar {
    /// Whether `t` is inside a shift (always, without shifts).
    pub fn in_shift(&self, t: Millis) -> bool {
        self.shifts.is_empty() || self.shifts.iter().any(|shift| shift.contains(t))
    }

    /// The first maintenance window that meets `[start, end)`.
    pub fn window_meeting(&self, start: Millis, end: Millis) -> Option<&Window> {
        self.windows
            .iter()
            .filter(|w| w.start_ms < end && start < w.end_ms)
            .min_by_key(|w| (w.start_ms, w.end_ms))
    }

    /// Whether a job of `work_ms` may start at `t`: inside a shift, and its
    /// run meets no maintenance window.
    pub fn fits(&self, t: Millis, work_ms: Millis) -> bool {
        self.in_shift(t)
            && self
                .window_meeting(t, t.saturating_add(work_ms.max(1)))
                .is_none()
    }

    /// The earliest instant at or after `from` at which a job of `work_ms`
    /// may start, within [`HORIZON_MS`]; None when there is none.
    ///
    /// The instants where it may start form a union of intervals whose left
    /// ends are `from`, a shift's start or a window's end; trying those in
    /// order finds the first.
    pub fn next_start(&self, from: Millis, work_ms: Millis) -> Option<Millis> {
        let limit = from.saturating_add(HORIZON_MS);
        let mut t = from;
        for _ in 0..MAX_STEPS {
            if self.fits(t, work_ms) {
                return Some(t);
            }
            let next_shift = self
                .shifts
                .iter()
                .filter_map(|shift| shift.next_start_after(t))
                .min();
            let next_window_end = self
                .windows
                .iter()
                .map(|w| w.end_ms)
                .filter(|end| *end > t)
                .min();
            t = match (next_shift, next_window_end) {
                (Some(a), Some(b)) => a.min(b),
                (Some(a), None) | (None, Some(a)) => a,
                (None, None) => return None,
            };
            if t > limit {
                return None;
            }
        }
        None
    }

    /// The occurrences `[start, end)` of its shifts that meet `[from,
    /// until)`, by start (None: no shifts, always in shift). At most
    /// `MAX_STEPS` per shift.
    pub fn shift_occurrences(&self, from: Millis, until: Millis) -> Option<Vec<(Millis, Millis)>> {
        if self.shifts.is_empty() {
            return None;
        }
        let mut out = Vec::new();
        for shift in &self.shifts {
            let Some(first) = shift.occurrence_from(from) else {
                continue;
            };
            let mut occurrence = first;
            for _ in 0..MAX_STEPS {
                if occurrence.0 >= until {
                    break;
                }
                out.push(occurrence);
                match shift.next_start_after(occurrence.0) {
                    Some(start) => {
                        occurrence = (start, start.saturating_add(shift.duration_ms));
                    }
                    None => break,
                }
            }
        }
        out.sort_unstable();
        Some(out)
    }

    /// Why a job of `work_ms` may not start at `now`, with the first
    /// instant it may; None when it may start now.
    pub fn check(&self, now: Millis, work_ms: Millis) -> Option<Blocked> {
        let why = if !self.in_shift(now) {
            Closed::OutsideShift
        } else {
            Closed::Maintenance(
                self.window_meeting(now, now.saturating_add(work_ms.max(1)))?
                    .clone(),
            )
        };
        Some(Blocked {
            why,
            opens_ms: self.next_start(now, work_ms),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const HOUR: Millis = 3_600_000;
    const MINUTE: Millis = 60_000;

    /// 2026-12-07 00:00:00 UTC, a Monday.
    fn monday() -> Millis {
        DateTime::parse_from_rfc3339("2026-12-07T00:00:00Z")
            .map(|t| t.timestamp_millis())
            .unwrap_or_default()
    }

    fn utc(rfc3339: &str) -> Millis {
        DateTime::parse_from_rfc3339(rfc3339)
            .map(|t| t.timestamp_millis())
            .expect("a time")
    }

    #[test]
    fn a_shift_in_a_time_zone_starts_at_its_local_time_across_clock_changes() {
        let berlin = Shift::new("0 0 8 * * Mon-Fri", 8 * HOUR)
            .expect("valid")
            .in_zone("Europe/Berlin")
            .expect("a zone");
        // Winter (UTC+1): 08:00 in Berlin is 07:00 UTC.
        let winter = utc("2026-12-07T00:00:00Z");
        assert_eq!(
            shift_window(std::slice::from_ref(&berlin), winter),
            Some((
                utc("2026-12-07T07:00:00Z"),
                Some(utc("2026-12-07T15:00:00Z"))
            ))
        );
        // Summer (UTC+2): 06:00 UTC; Friday 27 March 2026 is still winter
        // time, Monday 30 March (after the change on Sunday) summer time.
        let calendar = Calendar {
            shifts: vec![berlin.clone()],
            windows: Vec::new(),
        };
        assert_eq!(
            calendar.next_start(utc("2026-03-27T00:00:00Z"), HOUR),
            Some(utc("2026-03-27T07:00:00Z"))
        );
        assert_eq!(
            calendar.next_start(utc("2026-03-27T16:00:00Z"), HOUR),
            Some(utc("2026-03-30T06:00:00Z"))
        );
        assert!(calendar.in_shift(utc("2026-03-30T06:30:00Z")));
        assert!(!calendar.in_shift(utc("2026-03-30T05:30:00Z")));
        // Without a zone, the same expression is UTC.
        let plain = Shift::new("0 0 8 * * Mon-Fri", 8 * HOUR).expect("valid");
        assert_eq!(
            shift_window(&[plain], winter),
            Some((
                utc("2026-12-07T08:00:00Z"),
                Some(utc("2026-12-07T16:00:00Z"))
            ))
        );
        // A start that the spring change skips (02:30 on 29 March 2026 in
        // Berlin) does not happen that day; the next day's does.
        let night = Shift::new("0 30 2 * * *", HOUR)
            .expect("valid")
            .in_zone("Europe/Berlin")
            .expect("a zone");
        assert_eq!(
            shift_window(&[night], utc("2026-03-28T23:00:00Z")).map(|w| w.0),
            Some(utc("2026-03-30T00:30:00Z"))
        );
        assert!(parse_zone("Mars/Olympus").is_err());
        assert!(parse_zone("UTC").is_ok());
    }

    #[test]
    fn a_zoned_schedule_runs_at_local_time_across_clock_changes() {
        let berlin = ZonedSchedule::new("0 0 9 * * *", Some("Europe/Berlin")).expect("valid");
        let winter = at(utc("2026-12-07T00:00:00Z")).expect("instant");
        let summer = at(utc("2026-07-06T00:00:00Z")).expect("instant");
        assert_eq!(
            berlin.after(winter).next().map(|t| t.timestamp_millis()),
            Some(utc("2026-12-07T08:00:00Z"))
        );
        assert_eq!(
            berlin.after(summer).next().map(|t| t.timestamp_millis()),
            Some(utc("2026-07-06T07:00:00Z"))
        );
        let plain = ZonedSchedule::new("0 0 9 * * *", None).expect("valid");
        assert_eq!(
            plain.after(winter).next().map(|t| t.timestamp_millis()),
            Some(utc("2026-12-07T09:00:00Z"))
        );
        assert!(ZonedSchedule::new("0 0 9 * * *", Some("Mars/Olympus")).is_err());
        assert!(ZonedSchedule::new("every day", None).is_err());
    }

    #[test]
    fn shift_occurrences_list_the_shifts_that_meet_a_span() {
        let m = monday();
        let calendar = Calendar {
            shifts: vec![
                Shift::new("0 0 8 * * Mon-Fri", 8 * HOUR).expect("valid"),
                Shift::new("0 0 20 * * Sat", 2 * HOUR).expect("valid"),
            ],
            windows: Vec::new(),
        };
        assert_eq!(Calendar::default().shift_occurrences(m, m + HOUR), None);
        let day = 24 * HOUR;
        // From Monday noon (inside the first shift) to the next Monday 08:00.
        let got = calendar
            .shift_occurrences(m + 12 * HOUR, m + 7 * day + 8 * HOUR)
            .expect("shifts");
        let mut expected: Vec<(Millis, Millis)> = (0..5)
            .map(|d| (m + d * day + 8 * HOUR, m + d * day + 16 * HOUR))
            .collect();
        expected.push((m + 5 * day + 20 * HOUR, m + 5 * day + 22 * HOUR));
        assert_eq!(got, expected);
        // Every instant a job may start in the span lies in one of them.
        for hour in 0..(7 * 24) {
            let t = m + 12 * HOUR + hour * HOUR;
            if t >= m + 7 * day + 8 * HOUR {
                break;
            }
            assert_eq!(
                calendar.in_shift(t),
                got.iter().any(|&(a, b)| a <= t && t < b),
                "hour {hour}"
            );
        }
    }

    #[test]
    fn a_shift_window_is_the_shift_worked_now_or_the_next() {
        let m = monday();
        let days = vec![Shift::new("0 0 8 * * Mon-Fri", 8 * HOUR).expect("valid")];
        assert_eq!(shift_window(&[], m + HOUR), Some((m + HOUR, None)));
        // Before, in and after Monday's shift; Friday evening to Monday.
        assert_eq!(
            shift_window(&days, m + 7 * HOUR),
            Some((m + 8 * HOUR, Some(m + 16 * HOUR)))
        );
        assert_eq!(
            shift_window(&days, m + 9 * HOUR),
            Some((m + 9 * HOUR, Some(m + 16 * HOUR)))
        );
        assert_eq!(
            shift_window(&days, m + 16 * HOUR),
            Some((m + 32 * HOUR, Some(m + 40 * HOUR)))
        );
        let friday_night = m + 4 * 24 * HOUR + 20 * HOUR;
        assert_eq!(
            shift_window(&days, friday_night),
            Some((
                m + 7 * 24 * HOUR + 8 * HOUR,
                Some(m + 7 * 24 * HOUR + 16 * HOUR)
            ))
        );
        // Overlapping shifts: the one running longest from the start counts.
        let both = vec![
            days[0].clone(),
            Shift::new("0 0 12 * * Mon-Fri", 6 * HOUR).expect("valid"),
        ];
        assert_eq!(
            shift_window(&both, m + 13 * HOUR),
            Some((m + 13 * HOUR, Some(m + 18 * HOUR)))
        );
    }

    fn day_shift() -> Calendar {
        // 08:00 to 16:00, Monday to Friday.
        Calendar {
            shifts: vec![Shift::new("0 0 8 * * Mon-Fri", 8 * HOUR).expect("valid")],
            windows: Vec::new(),
        }
    }

    #[test]
    fn no_shifts_is_always_open() {
        let calendar = Calendar::default();
        assert!(calendar.in_shift(monday()));
        assert_eq!(calendar.check(monday(), HOUR), None);
        assert_eq!(calendar.next_start(monday(), HOUR), Some(monday()));
    }

    #[test]
    fn shifts_open_and_close_on_their_cron_times() {
        let calendar = day_shift();
        let m = monday();
        for (t, open) in [
            (m, false),
            (m + 8 * HOUR - 1, false),
            (m + 8 * HOUR, true),
            (m + 15 * HOUR, true),
            (m + 16 * HOUR - 1, true),
            (m + 16 * HOUR, false),
            (m + 5 * 24 * HOUR + 9 * HOUR, false), // Saturday
        ] {
            assert_eq!(calendar.in_shift(t), open, "{}", t - m);
        }
        // Before the shift: it opens at 08:00; after Friday's: on Monday.
        assert_eq!(
            calendar.check(m, HOUR),
            Some(Blocked {
                why: Closed::OutsideShift,
                opens_ms: Some(m + 8 * HOUR)
            })
        );
        let friday_night = m + 4 * 24 * HOUR + 20 * HOUR;
        assert_eq!(
            calendar.next_start(friday_night, HOUR),
            Some(m + 7 * 24 * HOUR + 8 * HOUR)
        );
        // A job may run past its shift's end; it only starts inside one.
        assert!(calendar.fits(m + 15 * HOUR + 59 * MINUTE, 3 * HOUR));
    }

    #[test]
    fn a_job_never_runs_into_maintenance() {
        let m = monday();
        let mut calendar = day_shift();
        calendar.windows.push(Window {
            start_ms: m + 10 * HOUR,
            end_ms: m + 11 * HOUR,
            reason: "belt change".into(),
        });
        // At 09:30 a one-hour job would run into the window: it waits for
        // the window's end.
        let blocked = calendar.check(m + 9 * HOUR + 30 * MINUTE, HOUR);
        assert_eq!(
            blocked.as_ref().map(|b| b.opens_ms),
            Some(Some(m + 11 * HOUR))
        );
        assert!(matches!(
            blocked.map(|b| b.why),
            Some(Closed::Maintenance(w)) if w.reason == "belt change"
        ));
        // A half-hour job fits before it; a window's end is exclusive.
        assert!(calendar.fits(m + 9 * HOUR + 30 * MINUTE, 30 * MINUTE));
        assert!(calendar.fits(m + 11 * HOUR, HOUR));
        // A window over the rest of the shift moves the start to the next day.
        calendar.windows.push(Window {
            start_ms: m + 11 * HOUR,
            end_ms: m + 16 * HOUR,
            reason: "service".into(),
        });
        assert_eq!(
            calendar.next_start(m + 10 * HOUR, HOUR),
            Some(m + 24 * HOUR + 8 * HOUR)
        );
    }

    #[test]
    fn no_opening_is_none() {
        let calendar = Calendar {
            shifts: Vec::new(),
            windows: vec![Window {
                start_ms: 0,
                end_ms: Millis::MAX,
                reason: "retired".into(),
            }],
        };
        assert_eq!(calendar.next_start(monday(), HOUR), None);
        assert!(Shift::new("every day", HOUR).is_err());
        assert!(Shift::new("0 0 8 * * *", 0).is_err());
    }

    #[test]
    fn a_window_is_planned_ahead_with_a_reason() {
        let m = monday();
        assert!(window_problems(m + HOUR, m + 2 * HOUR, "belts", m).is_empty());
        // Started already but not over: fine (maintenance in progress).
        assert!(window_problems(m - HOUR, m + HOUR, "belts", m).is_empty());
        let pointers =
            |p: Vec<(&'static str, String)>| p.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
        assert_eq!(
            pointers(window_problems(m + HOUR, m + HOUR, "x", m)),
            ["/end"]
        );
        assert_eq!(
            pointers(window_problems(m - 2 * HOUR, m - HOUR, " ", m)),
            ["/end", "/reason"]
        );
        assert_eq!(
            pointers(window_problems(m, m + MAX_WINDOW_MS + 1, "long", m)),
            ["/end"]
        );
    }

    proptest! {
        /// `next_start` returns an instant that fits, no earlier than asked,
        /// and nothing on the minute grid between the two fits.
        #[test]
        fn next_start_is_the_first_instant_that_fits(
            from_min in 0i64..(3 * 24 * 60),
            work_min in 1i64..300,
            hour in 0u32..24,
            length_h in 1i64..12,
            windows in prop::collection::vec((0i64..(4 * 24 * 60), 1i64..600), 0..4),
        ) {
            let m = monday();
            let shift = Shift::new(&format!("0 0 {hour} * * *"), length_h * HOUR).expect("valid");
            let calendar = Calendar {
                shifts: vec![shift],
                windows: windows.iter().map(|(start, length)| Window {
                    start_ms: m + start * MINUTE,
                    end_ms: m + (start + length) * MINUTE,
                    reason: "planned".into(),
                }).collect(),
            };
            let from = m + from_min * MINUTE;
            let work = work_min * MINUTE;
            let found = calendar.next_start(from, work);
            prop_assert!(found.is_some(), "a daily shift always opens within the horizon");
            let found = found.unwrap_or_default();
            prop_assert!(found >= from);
            prop_assert!(calendar.fits(found, work));
            prop_assert!(calendar.in_shift(found));
            prop_assert!(calendar.window_meeting(found, found + work).is_none());
            let mut t = from;
            while t < found {
                prop_assert!(!calendar.fits(t, work), "{} fits before {}", t - m, found - m);
                t += MINUTE;
            }
            // And `check` agrees with it.
            match calendar.check(from, work) {
                None => prop_assert_eq!(found, from),
                Some(blocked) => prop_assert_eq!(blocked.opens_ms, Some(found)),
            }
        }
    }
}
