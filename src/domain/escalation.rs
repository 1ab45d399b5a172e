//! An operator's decision on an escalated order (one whose delivery
//! attempts ran out): deliver again (perhaps by a new deadline), put its
//! units back on its factory's shelf, or cancel the delivery. Pure: which
//! decisions make sense for an order as it stands, and what each does.
//!
//! Invariants (tested): only an escalated order that is `ready` (its
//! parcel back at its factory) can be decided; a new deadline goes only
//! with `retry` and lies after now; the two other decisions cancel the order.

use super::{Millis, OrderInput, OrderState};
use serde::{Deserialize, Serialize};

#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum EscalationDecision {
    /// Plan the delivery again (attempts count from zero), by `deliver_by`
    /// if given.
    Retry,
    /// Deliver nothing: the order is cancelled and its units go on its
    /// factory's shelf for later orders of the same SKUs.
    ReturnToFactory,
    /// Deliver nothing: the order is cancelled, its units not restocked
    /// (collected by the customer, or given up).
    CancelDelivery,
}

impl EscalationDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            EscalationDecision::Retry => "retry",
            EscalationDecision::ReturnToFactory => "return_to_factory",
            EscalationDecision::CancelDelivery => "cancel_delivery",
        }
    }

    /// The order's move, if the decision moves it.
    pub fn order_input(self) -> Option<OrderInput> {
        match self {
            EscalationDecision::Retry => None,
            EscalationDecision::ReturnToFactory | EscalationDecision::CancelDelivery => {
                Some(OrderInput::Cancel)
            }
        }
    }

    /// Whether its units go back on the factory's shelf.
    pub fn restocks(self) -> bool {
        self == EscalationDecision::ReturnToFactory
    }
}

/// Why a decision makes no sense: the JSON pointer of the field at fault
/// (None: the order as it stands) and the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub pointer: Option<&'static str>,
    pub reason: String,
}

/// Checks `decision` (with `deliver_by_ms`) for an order in `state`,
/// `escalated` or not, at `now_ms`.
pub fn check_decision(
    decision: EscalationDecision,
    deliver_by_ms: Option<Millis>,
    escalated: bool,
    state: OrderState,
    now_ms: Millis,
) -> Result<(), Refusal> {
    let refuse = |pointer, reason: String| Err(Refusal { pointer, reason });
    if let Some(deliver_by) = deliver_by_ms {
        if decision != EscalationDecision::Retry {
            return refuse(
                Some("/deliver_by"),
                format!(
                    "a new deadline goes only with decision retry, not {}",
                    decision.as_str()
                ),
            );
        }
        if deliver_by <= now_ms {
            return refuse(Some("/deliver_by"), "must be later than now".to_string());
        }
    }
    if !escalated {
        return refuse(
            None,
            "the order is not escalated: there is nothing to decide".into(),
        );
    }
    if state != OrderState::Ready {
        return refuse(
            None,
            format!("the order is {}, not ready at its factory", state.as_str()),
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use EscalationDecision as D;

    const NOW: Millis = 1_000_000;

    /// (decision, deliver_by, escalated, state) -> refused pointer, or Ok.
    fn check(
        decision: D,
        deliver_by: Option<Millis>,
        escalated: bool,
        state: OrderState,
        expected: Result<(), Option<&str>>,
    ) {
        let got = check_decision(decision, deliver_by, escalated, state, NOW)
            .map_err(|refusal| refusal.pointer);
        assert_eq!(
            got, expected,
            "{decision:?} {deliver_by:?} {escalated} {state:?}"
        );
    }

    #[test]
    fn decisions_on_a_table() {
        use OrderState::*;
        check(D::Retry, None, true, Ready, Ok(()));
        check(D::Retry, Some(NOW + 1), true, Ready, Ok(()));
        check(D::ReturnToFactory, None, true, Ready, Ok(()));
        check(D::CancelDelivery, None, true, Ready, Ok(()));
        check(D::Retry, Some(NOW), true, Ready, Err(Some("/deliver_by")));
        check(
            D::CancelDelivery,
            Some(NOW + 1),
            true,
            Ready,
            Err(Some("/deliver_by")),
        );
        check(D::Retry, None, false, Ready, Err(None));
        check(D::Retry, None, true, OutForDelivery, Err(None));
        check(D::CancelDelivery, None, true, Delivered, Err(None));
        check(D::ReturnToFactory, None, false, Cancelled, Err(None));
    }

    #[test]
    fn what_each_decision_does() {
        assert_eq!(D::Retry.order_input(), None);
        assert!(!D::Retry.restocks());
        assert!(D::ReturnToFactory.restocks());
        assert!(!D::CancelDelivery.restocks());
        // Both cancellations are allowed from ready by the order's machine.
        for decision in [D::ReturnToFactory, D::CancelDelivery] {
            let input = decision.order_input().expect("moves the order");
            assert_eq!(
                OrderState::Ready.handle(input).map(|(next, _)| next),
                Ok(OrderState::Cancelled)
            );
        }
    }
}
