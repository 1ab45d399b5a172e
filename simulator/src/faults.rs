//! Injected faults of one simulated machine, in one shape for the fleet
//! spec (`[factories.machines.faults]`, TOML) and the control API
//! (`PUT /machines/{id}/faults`, JSON; see `control`).
//!
//! What each does (Modbus and MQTT machines alike unless said):
//! - `slow_factor`: jobs started from now on take this many times longer.
//! - `scrap_burst`: the next N units made come out scrap.
//! - `garbage_reads`: the next N status reads (Modbus) or reports (MQTT)
//!   carry garbage: a state code the profile does not know, random words
//!   (or numbers) everywhere else.
//! - `flap_every_ms`: a flapping network: every period the machine drops
//!   its connections (Modbus), or goes silent for a period and back (MQTT).
//! - `jam`: the next `times` jobs (default 1) stop with fault `code` once
//!   `after_units` of their units are made (default 0: at once), keeping
//!   their token and counts, and go on `clear_after_ms` later (a jam its
//!   operator clears); `clear_after_ms = 0` waits for a clear over the
//!   control API.
//! - `power_loss`: the next `times` jobs (default 1) lose the machine's
//!   power half way through the unit after their first `after_units` units
//!   (default 0: in the middle of the first), so the units before it were
//!   shown as made.
//!   The machine comes back idle without its job: token, counts and fault
//!   code cleared; a Modbus machine also drops every connection. The same
//!   as `POST /machines/{id}/power-loss`, at a set point of a job.
//! - MQTT only: `duplicate_reports` (every report twice), `reorder_reports`
//!   (every report followed by the one before it, late), `lose_every` (every
//!   Nth report never published).
//!
//! At run time a power loss is also an action: `POST /machines/{id}/power-loss`.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::time::Instant;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultSpec {
    pub slow_factor: Option<f64>,
    pub scrap_burst: u32,
    pub garbage_reads: u32,
    pub flap_every_ms: u64,
    pub jam: Option<JamSpec>,
    pub power_loss: Option<PowerLossSpec>,
    pub duplicate_reports: bool,
    pub reorder_reports: bool,
    pub lose_every: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JamSpec {
    pub code: u32,
    #[serde(default)]
    pub after_units: u32,
    #[serde(default)]
    pub clear_after_ms: u64,
    #[serde(default = "one")]
    pub times: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerLossSpec {
    #[serde(default)]
    pub after_units: u32,
    #[serde(default = "one")]
    pub times: u32,
}

fn one() -> u32 {
    1
}

impl FaultSpec {
    /// Every problem, as `key: reason`.
    pub fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(factor) = self.slow_factor
            && !(factor.is_finite() && (0.01..=1000.0).contains(&factor))
        {
            out.push(format!("slow_factor: must be 0.01..=1000, got {factor}"));
        }
        if self.flap_every_ms != 0 && !(50..=3_600_000).contains(&self.flap_every_ms) {
            out.push(format!(
                "flap_every_ms: must be 0 (off) or 50..=3600000, got {}",
                self.flap_every_ms
            ));
        }
        out
    }
}

/// A machine's faults as they play out: the spec plus what is left of it.
#[derive(Debug, Default)]
pub(crate) struct FaultState {
    pub spec: FaultSpec,
    /// The running job was jammed already (a job jams once).
    jammed_this_job: bool,
    /// The running job lost the power already (once per job).
    lost_power_this_job: bool,
    /// When the current jam clears by itself.
    clear_at: Option<Instant>,
    /// Reports published (MQTT), for `lose_every`.
    reports: u64,
    /// When the spec was set: flapping counts its periods from here.
    epoch: Option<Instant>,
}

impl FaultState {
    pub fn set(&mut self, spec: FaultSpec) {
        self.spec = spec;
        self.epoch = Some(Instant::now());
    }

    /// MQTT flapping: whether the machine is off the network at `now` (every
    /// other period of `flap_every_ms`).
    pub fn flap_silent(&self, now: Instant) -> bool {
        let period = self.spec.flap_every_ms;
        match self.epoch {
            Some(epoch) if period > 0 => {
                let elapsed = now.saturating_duration_since(epoch).as_millis() as u64;
                (elapsed / period) % 2 == 1
            }
            _ => false,
        }
    }

    /// Real time per unit of a job started now.
    pub fn unit(&self, base: Duration) -> Duration {
        match self.spec.slow_factor {
            Some(factor) => base.mul_f64(factor),
            None => base,
        }
    }

    /// A new job's scrap plan, with the burst applied to its first units.
    pub fn new_job(&mut self, mut scrap: Vec<bool>) -> Vec<bool> {
        self.jammed_this_job = false;
        self.lost_power_this_job = false;
        let burst = (self.spec.scrap_burst as usize).min(scrap.len());
        scrap[..burst].fill(true);
        self.spec.scrap_burst -= burst as u32;
        scrap
    }

    /// The fault code to jam with now that the running job has finished
    /// `finished` of its `total` units, if it jams now.
    pub fn jam_now(&mut self, finished: usize, total: usize, now: Instant) -> Option<u32> {
        let jam = self.spec.jam.as_mut()?;
        if self.jammed_this_job || jam.times == 0 || finished >= total {
            return None;
        }
        if finished < jam.after_units as usize {
            return None;
        }
        jam.times -= 1;
        self.jammed_this_job = true;
        self.clear_at =
            (jam.clear_after_ms > 0).then(|| now + Duration::from_millis(jam.clear_after_ms));
        Some(jam.code)
    }

    /// Whether the machine loses its power now that the running job has
    /// worked `done` units' worth of time (2.5: two made, the third half
    /// way) of its `total` units.
    pub fn power_loss_now(&mut self, done: f64, total: usize) -> bool {
        let Some(loss) = self.spec.power_loss.as_mut() else {
            return false;
        };
        if self.lost_power_this_job
            || loss.times == 0
            || done >= total as f64
            || done < f64::from(loss.after_units) + 0.5
        {
            return false;
        }
        loss.times -= 1;
        self.lost_power_this_job = true;
        true
    }

    /// Whether a jam that clears by itself has cleared by `now`.
    pub fn cleared(&mut self, now: Instant) -> bool {
        match self.clear_at {
            Some(at) if now >= at => {
                self.clear_at = None;
                true
            }
            _ => false,
        }
    }

    /// A clear by hand (or power loss) ends the wait.
    pub fn forget_jam(&mut self) {
        self.clear_at = None;
    }

    /// Whether this read or report carries garbage (uses one up).
    pub fn take_garbage(&mut self) -> bool {
        if self.spec.garbage_reads == 0 {
            return false;
        }
        self.spec.garbage_reads -= 1;
        true
    }

    /// Whether the report about to go out is lost (counts it).
    pub fn lose_report(&mut self) -> bool {
        self.reports += 1;
        self.spec.lose_every > 0 && self.reports.is_multiple_of(u64::from(self.spec.lose_every))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_power_loss_strikes_once_per_job_after_its_units_as_often_as_set() {
        let mut state = FaultState::default();
        state.set(FaultSpec {
            power_loss: Some(PowerLossSpec {
                after_units: 1,
                times: 2,
            }),
            ..FaultSpec::default()
        });
        state.new_job(vec![false; 3]);
        assert!(!state.power_loss_now(0.9, 3), "not before its unit");
        assert!(
            !state.power_loss_now(1.2, 3),
            "not before half the next unit"
        );
        assert!(state.power_loss_now(1.5, 3));
        assert!(!state.power_loss_now(2.5, 3), "once per job");
        state.new_job(vec![false; 1]);
        assert!(!state.power_loss_now(1.0, 1), "never once the job is done");
        state.new_job(vec![false; 3]);
        assert!(state.power_loss_now(2.7, 3));
        state.new_job(vec![false; 3]);
        assert!(!state.power_loss_now(1.6, 3), "times used up");
        let parsed: FaultSpec =
            toml::from_str("power_loss = { after_units = 2 }").expect("power loss in TOML");
        assert_eq!(
            parsed.power_loss,
            Some(PowerLossSpec {
                after_units: 2,
                times: 1
            })
        );
    }

    #[test]
    fn a_jam_fires_once_per_job_after_its_units_and_clears_by_itself() {
        let mut state = FaultState::default();
        state.set(FaultSpec {
            jam: Some(JamSpec {
                code: 7,
                after_units: 2,
                clear_after_ms: 100,
                times: 2,
            }),
            ..FaultSpec::default()
        });
        let now = Instant::now();
        state.new_job(vec![false; 4]);
        assert_eq!(state.jam_now(1, 4, now), None);
        assert_eq!(state.jam_now(2, 4, now), Some(7));
        assert_eq!(state.jam_now(3, 4, now), None, "once per job");
        assert!(!state.cleared(now));
        assert!(state.cleared(now + Duration::from_millis(100)));
        state.new_job(vec![false; 4]);
        assert_eq!(
            state.jam_now(4, 4, now),
            None,
            "a finished job does not jam"
        );
        assert_eq!(state.jam_now(2, 4, now), Some(7));
        state.new_job(vec![false; 4]);
        assert_eq!(state.jam_now(2, 4, now), None, "times used up");
    }

    #[test]
    fn bursts_garbage_and_lost_reports_are_counted_down() {
        let mut state = FaultState::default();
        state.set(FaultSpec {
            scrap_burst: 3,
            garbage_reads: 1,
            lose_every: 2,
            slow_factor: Some(2.0),
            ..FaultSpec::default()
        });
        assert_eq!(state.new_job(vec![false; 2]), vec![true, true]);
        assert_eq!(state.new_job(vec![false; 2]), vec![true, false]);
        assert_eq!(state.new_job(vec![false; 2]), vec![false, false]);
        assert!(state.take_garbage());
        assert!(!state.take_garbage());
        let lost: Vec<bool> = (0..4).map(|_| state.lose_report()).collect();
        assert_eq!(lost, [false, true, false, true]);
        assert_eq!(
            state.unit(Duration::from_millis(10)),
            Duration::from_millis(20)
        );
    }

    #[test]
    fn specs_are_checked_and_read_from_toml() {
        let spec: FaultSpec = toml::from_str(
            "slow_factor = 3.0\nscrap_burst = 2\njam = { code = 42, clear_after_ms = 500 }\n",
        )
        .expect("parses");
        assert_eq!(
            spec.jam.as_ref().map(|j| (j.after_units, j.times)),
            Some((0, 1))
        );
        assert!(spec.problems().is_empty());
        let bad = FaultSpec {
            slow_factor: Some(0.0),
            flap_every_ms: 5,
            ..FaultSpec::default()
        };
        assert_eq!(bad.problems().len(), 2);
        assert!(toml::from_str::<FaultSpec>("typo = 1").is_err());
    }
}
