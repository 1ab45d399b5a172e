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
}

impl AtRiskReason {
    pub fn as_str(self) -> &'static str {
        match self {
            AtRiskReason::NoCapableMachine => "no_capable_machine",
            AtRiskReason::ProductionBacklog => "production_backlog",
            AtRiskReason::NoCourierInTime => "no_courier_in_time",
        }
    }

    pub fn parse(text: &str) -> Option<AtRiskReason> {
        [
            AtRiskReason::NoCapableMachine,
            AtRiskReason::ProductionBacklog,
            AtRiskReason::NoCourierInTime,
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
