//! The 48-hour promise: why an order is at risk of missing it.

use serde::{Deserialize, Serialize};

/// Why the network cannot deliver an order by its deadline, as the plan sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AtRiskReason {
    /// No machine of its factory that accepts jobs can run one of its steps
    /// (none has the capability, or all such are paused, faulted or offline).
    NoCapableMachine,
    /// The work queued ahead of it, and its own, ends too late to deliver in time.
    ProductionBacklog,
    /// Ready, but no courier of its zone can reach the customer by the deadline.
    NoCourierInTime,
    /// Not delivered yet, and its deadline is closer than the last call
    /// (an hour, or more on a scaled clock), whatever the estimates said: the estimates
    /// missed something (a courier behind schedule, a customer out, a
    /// slower line than planned), and the brand hears of it before the
    /// deadline, not after.
    DeadlineClose,
}

/// How long before its deadline an order still not delivered is flagged at
/// risk, whatever the estimates say (domain time).
pub const LAST_CALL_MS: super::Millis = 3_600_000;

/// The last-call margin for a watch that looks every `watch_every_ms` of
/// domain time: an hour, or three looks when they are further apart (a
/// scaled clock, a busy machine), so that a look lost still flags the
/// order before its deadline.
pub fn last_call_ms(watch_every_ms: super::Millis) -> super::Millis {
    LAST_CALL_MS.max(watch_every_ms.saturating_mul(3))
}

impl AtRiskReason {
    pub fn as_str(self) -> &'static str {
        match self {
            AtRiskReason::NoCapableMachine => "no_capable_machine",
            AtRiskReason::ProductionBacklog => "production_backlog",
            AtRiskReason::NoCourierInTime => "no_courier_in_time",
            AtRiskReason::DeadlineClose => "deadline_close",
        }
    }

    pub fn parse(text: &str) -> Option<AtRiskReason> {
        [
            AtRiskReason::NoCapableMachine,
            AtRiskReason::ProductionBacklog,
            AtRiskReason::NoCourierInTime,
            AtRiskReason::DeadlineClose,
        ]
        .into_iter()
        .find(|reason| reason.as_str() == text)
    }

    /// A sentence for people.
    pub fn describe(self) -> &'static str {
        match self {
            AtRiskReason::NoCapableMachine => {
                "no machine that accepts jobs at its factory can run one of its steps"
            }
            AtRiskReason::ProductionBacklog => {
                "the work queued ahead of it ends too late to deliver it by its deadline"
            }
            AtRiskReason::NoCourierInTime => {
                "no courier of its zone can reach the customer by its deadline"
            }
            AtRiskReason::DeadlineClose => {
                "not delivered yet, and its deadline is less than the last call away"
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_call_is_an_hour_or_three_looks_of_the_watch() {
        assert_eq!(last_call_ms(1_000), LAST_CALL_MS);
        assert_eq!(last_call_ms(1_200_000), LAST_CALL_MS);
        // A look every two seconds of real time at x1000: 2000 s of domain time.
        assert_eq!(last_call_ms(2_000_000), 6_000_000);
        assert_eq!(last_call_ms(i64::MAX), i64::MAX);
    }

    #[test]
    fn names_round_trip_and_match_serde() {
        for reason in [
            AtRiskReason::NoCapableMachine,
            AtRiskReason::ProductionBacklog,
            AtRiskReason::NoCourierInTime,
        ] {
            assert_eq!(AtRiskReason::parse(reason.as_str()), Some(reason));
            let json = serde_json::to_string(&reason).expect("serialise");
            assert_eq!(json, format!("\"{}\"", reason.as_str()));
            assert!(!reason.describe().is_empty());
        }
        assert_eq!(AtRiskReason::parse("late"), None);
    }
}
