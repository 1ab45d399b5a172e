//! Returns: a brand asks for delivered units back; a courier picks them up
//! from the customer and drops them at the order's factory; the operator
//! inspects them, restocking or scrapping each unit.
//!
//! `requested → pickup_planned → picked_up → received → inspected`, with
//! `pickup_planned → requested` (the pickup was missed or failed: planned
//! again) and `requested | pickup_planned → cancelled`. `inspected` and
//! `cancelled` never change.
//!
//! The rules are pure functions here: what may be returned ([`check_request`]),
//! what an inspection must account for ([`check_inspection`]) and which lines
//! of a new order restocked units fill ([`fill_from_stock`]).

use super::intake::{FieldError, LineRequest, text_problem};
use super::{DAY_MS, Event, Millis, OrderState, TransitionError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReturnState {
    /// Asked for; waits for a planning wave.
    Requested,
    /// A wave planned the pickup from the customer and the drop-off at the factory.
    PickupPlanned,
    /// The courier has the parcel.
    PickedUp,
    /// The parcel is at the factory, waiting for inspection.
    Received,
    /// Every unit restocked or scrapped.
    Inspected,
    Cancelled,
}

/// Facts that move a return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReturnInput {
    /// A wave planned its pickup and drop-off.
    PlanPickup,
    /// The pickup was missed or failed: the return waits for the next wave.
    PickupMissed,
    /// The courier confirmed the pickup at the customer.
    PickedUp,
    /// The courier confirmed the drop-off at the factory.
    Received,
    /// The operator inspected every unit.
    Inspect(Vec<InspectedLine>),
    /// The brand (or an admin) cancelled it before the parcel left the customer.
    Cancel,
}

/// One line of a return: a line of its order and how many of its units.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, schemars::JsonSchema,
)]
pub struct ReturnLine {
    /// The index of the line in the order's `lines` (0-based).
    pub line: usize,
    pub sku: String,
    pub quantity: u32,
}

/// What inspection made of a line's units.
#[derive(
    Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema, schemars::JsonSchema,
)]
pub struct InspectedLine {
    pub line: usize,
    pub sku: String,
    /// Units put back in the factory's stock.
    pub restocked: u32,
    /// Units thrown away.
    pub scrapped: u32,
}

/// A line of a brand's request: which line of the order, how many units.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct RequestedLine {
    pub line: usize,
    pub quantity: u32,
}

/// A line of an operator's inspection.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct InspectionLine {
    pub line: usize,
    pub restocked: u32,
    pub scrapped: u32,
}

/// How long a return waits to be picked up, as the planner's deadline (a
/// return has no promise to the customer; this orders it among the wave's
/// work).
pub const PICKUP_DEADLINE_MS: Millis = 2 * DAY_MS;

/// The longest reason a brand may give.
pub const MAX_REASON_CHARS: usize = 500;

impl ReturnState {
    pub const ALL: [ReturnState; 6] = [
        ReturnState::Requested,
        ReturnState::PickupPlanned,
        ReturnState::PickedUp,
        ReturnState::Received,
        ReturnState::Inspected,
        ReturnState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReturnState::Requested => "requested",
            ReturnState::PickupPlanned => "pickup_planned",
            ReturnState::PickedUp => "picked_up",
            ReturnState::Received => "received",
            ReturnState::Inspected => "inspected",
            ReturnState::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, ReturnState::Inspected | ReturnState::Cancelled)
    }

    /// The one transition function of the return state machine.
    pub fn handle(self, input: ReturnInput) -> Result<(ReturnState, Vec<Event>), TransitionError> {
        use ReturnInput as I;
        use ReturnState as S;
        let (next, event) = match (self, input) {
            (S::Requested, I::PlanPickup) => (S::PickupPlanned, Event::ReturnPickupPlanned),
            (S::PickupPlanned, I::PickupMissed) => (S::Requested, Event::ReturnPickupMissed),
            (S::PickupPlanned, I::PickedUp) => (S::PickedUp, Event::ReturnPickedUp),
            (S::PickedUp, I::Received) => (S::Received, Event::ReturnReceived),
            (S::Received, I::Inspect(lines)) => (S::Inspected, Event::ReturnInspected { lines }),
            (S::Requested | S::PickupPlanned, I::Cancel) => (S::Cancelled, Event::ReturnCancelled),
            (from, input) => return Err(TransitionError::new("return", from, input)),
        };
        Ok((next, vec![event]))
    }
}

/// Checks a brand's request against its order: delivered, within the
/// window (from `delivered_ms`, on the domain clock), and no line asked for
/// more than was delivered minus what earlier returns (not cancelled)
/// already took (`returned[i]` for the order's line `i`). Every problem is
/// reported at once, each with a JSON pointer into the request (`""`: the
/// request as a whole, for the order's state and the window).
#[allow(clippy::too_many_arguments)]
pub fn check_request(
    order_state: OrderState,
    delivered_ms: Millis,
    window_ms: Millis,
    now: Millis,
    order_lines: &[LineRequest],
    returned: &[u32],
    request: &[RequestedLine],
    reason: &str,
) -> Result<Vec<ReturnLine>, Vec<FieldError>> {
    if order_state != OrderState::Delivered {
        return Err(vec![FieldError::new(
            "",
            format!("the order is {order_state}; only a delivered order can be returned"),
        )]);
    }
    let mut errors = Vec::new();
    let closes = delivered_ms.saturating_add(window_ms);
    if now > closes {
        errors.push(FieldError::new(
            "",
            format!(
                "the return window of {} days closed at {} (delivered at {})",
                window_ms / DAY_MS,
                rfc3339(closes),
                rfc3339(delivered_ms)
            ),
        ));
    }
    match reason.trim() {
        "" => errors.push(FieldError::new(
            "/reason",
            "required: why the units come back",
        )),
        text if text.chars().count() > MAX_REASON_CHARS => errors.push(FieldError::new(
            "/reason",
            format!("at most {MAX_REASON_CHARS} characters"),
        )),
        text => {
            if let Some(problem) = text_problem(text) {
                errors.push(FieldError::new("/reason", problem));
            }
        }
    }
    if request.is_empty() {
        errors.push(FieldError::new("/lines", "must name at least one line"));
    }
    let mut lines = Vec::with_capacity(request.len());
    let mut seen = Vec::new();
    for (index, asked) in request.iter().enumerate() {
        let Some(ordered) = order_lines.get(asked.line) else {
            errors.push(FieldError::new(
                format!("/lines/{index}/line"),
                format!(
                    "the order has lines 0..={}, not {}",
                    order_lines.len().saturating_sub(1),
                    asked.line
                ),
            ));
            continue;
        };
        if seen.contains(&asked.line) {
            errors.push(FieldError::new(
                format!("/lines/{index}/line"),
                format!("line {} is named twice", asked.line),
            ));
            continue;
        }
        seen.push(asked.line);
        let already = returned.get(asked.line).copied().unwrap_or(0);
        let left = ordered.quantity.saturating_sub(already);
        if asked.quantity == 0 {
            errors.push(FieldError::new(
                format!("/lines/{index}/quantity"),
                "must be at least 1",
            ));
        } else if asked.quantity > left {
            errors.push(FieldError::new(
                format!("/lines/{index}/quantity"),
                format!(
                    "at most {left} units of line {} ({}) can be returned: {} delivered, {already} already returned",
                    asked.line, ordered.sku, ordered.quantity
                ),
            ));
        }
        lines.push(ReturnLine {
            line: asked.line,
            sku: ordered.sku.clone(),
            quantity: asked.quantity,
        });
    }
    if errors.is_empty() {
        Ok(lines)
    } else {
        Err(errors)
    }
}

/// Checks an operator's inspection: each line of the return is named once,
/// and its restocked and scrapped units add up to the units returned.
pub fn check_inspection(
    returned: &[ReturnLine],
    inspection: &[InspectionLine],
) -> Result<Vec<InspectedLine>, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut inspected: Vec<InspectedLine> = Vec::with_capacity(returned.len());
    for (index, line) in inspection.iter().enumerate() {
        let Some(back) = returned.iter().find(|r| r.line == line.line) else {
            let lines: Vec<String> = returned.iter().map(|r| r.line.to_string()).collect();
            errors.push(FieldError::new(
                format!("/lines/{index}/line"),
                format!(
                    "line {} is not in this return (its lines: {})",
                    line.line,
                    lines.join(", ")
                ),
            ));
            continue;
        };
        if inspected.iter().any(|seen| seen.line == line.line) {
            errors.push(FieldError::new(
                format!("/lines/{index}/line"),
                format!("line {} is named twice", line.line),
            ));
            continue;
        }
        let counted = u64::from(line.restocked) + u64::from(line.scrapped);
        if counted != u64::from(back.quantity) {
            errors.push(FieldError::new(
                format!("/lines/{index}"),
                format!(
                    "restocked + scrapped must be the {} units returned, got {} + {}",
                    back.quantity, line.restocked, line.scrapped
                ),
            ));
        }
        inspected.push(InspectedLine {
            line: line.line,
            sku: back.sku.clone(),
            restocked: line.restocked,
            scrapped: line.scrapped,
        });
    }
    for back in returned {
        if !inspection.iter().any(|line| line.line == back.line) {
            errors.push(FieldError::new(
                "/lines",
                format!(
                    "line {} ({} units of {}) is not inspected",
                    back.line, back.quantity, back.sku
                ),
            ));
        }
    }
    if errors.is_empty() {
        Ok(inspected)
    } else {
        Err(errors)
    }
}

/// Which lines of a new order restocked units fill, given the factory's
/// stock per SKU: a line is taken from stock only if the stock covers its
/// whole quantity (no partial cover), in line order; `stock` is left with
/// what remains. Returns, per line, whether it was filled.
pub fn fill_from_stock(lines: &[LineRequest], stock: &mut HashMap<String, u32>) -> Vec<bool> {
    lines
        .iter()
        .map(|line| match stock.get_mut(&line.sku) {
            Some(units) if *units >= line.quantity && line.quantity > 0 => {
                *units -= line.quantity;
                true
            }
            _ => false,
        })
        .collect()
}

fn rfc3339(ms: Millis) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map_or_else(|| ms.to_string(), |t| t.to_rfc3339())
}

impl fmt::Display for ReturnState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ReturnState {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        ReturnState::ALL
            .into_iter()
            .find(|state| state.as_str() == text)
            .ok_or_else(|| format!("unknown return state {text:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ReturnInput as I;
    use ReturnState as S;

    fn inspect() -> ReturnInput {
        I::Inspect(vec![InspectedLine {
            line: 0,
            sku: "tee".into(),
            restocked: 2,
            scrapped: 1,
        }])
    }

    /// Runs `script` from `requested`; `expected` is the final state, or
    /// the index of the input that must be refused.
    fn check(script: &[ReturnInput], expected: Result<ReturnState, usize>) {
        let mut state = S::Requested;
        for (index, input) in script.iter().enumerate() {
            match state.handle(input.clone()) {
                Ok((next, events)) => {
                    assert_eq!(events.len(), 1);
                    assert!(events[0].kind().starts_with("return."), "{events:?}");
                    state = next;
                }
                Err(err) => {
                    assert_eq!(expected, Err(index), "refused {input:?} in {state}: {err}");
                    assert_eq!(err.from, state.as_str());
                    return;
                }
            }
        }
        assert_eq!(expected, Ok(state));
    }

    #[test]
    fn transitions() {
        check(&[], Ok(S::Requested));
        check(&[I::PlanPickup], Ok(S::PickupPlanned));
        check(&[I::PlanPickup, I::PickupMissed], Ok(S::Requested));
        check(
            &[I::PlanPickup, I::PickupMissed, I::PlanPickup],
            Ok(S::PickupPlanned),
        );
        check(&[I::PlanPickup, I::PickedUp], Ok(S::PickedUp));
        check(&[I::PlanPickup, I::PickedUp, I::Received], Ok(S::Received));
        check(
            &[I::PlanPickup, I::PickedUp, I::Received, inspect()],
            Ok(S::Inspected),
        );
        check(&[I::Cancel], Ok(S::Cancelled));
        check(&[I::PlanPickup, I::Cancel], Ok(S::Cancelled));
        check(&[I::PlanPickup, I::PickedUp, I::Cancel], Err(2));
        check(&[I::PickedUp], Err(0));
        check(&[I::Received], Err(0));
        check(&[inspect()], Err(0));
        check(&[I::PickupMissed], Err(0));
        check(&[I::PlanPickup, I::PlanPickup], Err(1));
        check(&[I::PlanPickup, I::Received], Err(1));
        check(&[I::PlanPickup, I::PickedUp, inspect()], Err(2));
        check(&[I::PlanPickup, I::PickedUp, I::PickupMissed], Err(2));
    }

    #[test]
    fn terminal_states_never_change() {
        let inputs = [
            I::PlanPickup,
            I::PickupMissed,
            I::PickedUp,
            I::Received,
            inspect(),
            I::Cancel,
        ];
        for state in S::ALL.into_iter().filter(|s| s.is_terminal()) {
            for input in inputs.clone() {
                assert!(
                    state.handle(input.clone()).is_err(),
                    "{state} took {input:?}"
                );
            }
        }
    }

    #[test]
    fn names_round_trip() {
        for state in S::ALL {
            assert_eq!(state.as_str().parse::<S>(), Ok(state));
            assert_eq!(
                serde_json::to_string(&state).ok(),
                Some(format!("\"{state}\""))
            );
        }
        assert!("shipped".parse::<S>().is_err());
    }

    fn order_lines() -> Vec<LineRequest> {
        vec![
            LineRequest {
                sku: "tee".into(),
                quantity: 3,
            },
            LineRequest {
                sku: "tote".into(),
                quantity: 1,
            },
        ]
    }

    fn asked(line: usize, quantity: u32) -> RequestedLine {
        RequestedLine { line, quantity }
    }

    /// The pointers of a refused request (Ok: the lines' quantities).
    fn request(
        state: OrderState,
        now: Millis,
        returned: &[u32],
        lines: &[RequestedLine],
        reason: &str,
    ) -> Result<Vec<u32>, Vec<String>> {
        check_request(
            state,
            1_000,
            14 * DAY_MS,
            now,
            &order_lines(),
            returned,
            lines,
            reason,
        )
        .map(|lines| lines.iter().map(|l| l.quantity).collect())
        .map_err(|errors| errors.into_iter().map(|e| e.pointer).collect())
    }

    #[test]
    fn requests_are_checked_against_the_order() {
        use OrderState::{Delivered, OutForDelivery};
        let d = Delivered;
        let within = 1_000 + 14 * DAY_MS;
        type Case<'a> = (
            OrderState,
            Millis,
            &'a [u32],
            Vec<RequestedLine>,
            &'a str,
            Result<Vec<u32>, Vec<&'a str>>,
        );
        let table: [Case; 11] = [
            (d, 2_000, &[0, 0], vec![asked(0, 3)], "too big", Ok(vec![3])),
            (
                d,
                within,
                &[1, 0],
                vec![asked(0, 2), asked(1, 1)],
                "x",
                Ok(vec![2, 1]),
            ),
            (
                OutForDelivery,
                2_000,
                &[0, 0],
                vec![asked(0, 1)],
                "x",
                Err(vec![""]),
            ),
            (
                d,
                within + 1,
                &[0, 0],
                vec![asked(0, 1)],
                "x",
                Err(vec![""]),
            ),
            (
                d,
                2_000,
                &[0, 0],
                vec![asked(0, 4)],
                "x",
                Err(vec!["/lines/0/quantity"]),
            ),
            (
                d,
                2_000,
                &[2, 0],
                vec![asked(0, 2)],
                "x",
                Err(vec!["/lines/0/quantity"]),
            ),
            (
                d,
                2_000,
                &[0, 0],
                vec![asked(0, 0)],
                "x",
                Err(vec!["/lines/0/quantity"]),
            ),
            (
                d,
                2_000,
                &[0, 0],
                vec![asked(2, 1)],
                "x",
                Err(vec!["/lines/0/line"]),
            ),
            (
                d,
                2_000,
                &[0, 0],
                vec![asked(1, 1), asked(1, 1)],
                "x",
                Err(vec!["/lines/1/line"]),
            ),
            (
                d,
                2_000,
                &[0, 0],
                vec![],
                " ",
                Err(vec!["/reason", "/lines"]),
            ),
            (
                d,
                within + 1,
                &[3, 0],
                vec![asked(0, 1)],
                "x",
                Err(vec!["", "/lines/0/quantity"]),
            ),
        ];
        for (state, now, returned, lines, reason, expected) in table {
            let expected = expected.map_err(|p| p.into_iter().map(String::from).collect());
            assert_eq!(
                request(state, now, returned, &lines, reason),
                expected,
                "{state} at {now}, returned {returned:?}, {lines:?}"
            );
        }
    }

    #[test]
    fn inspections_account_for_every_unit() {
        let back = vec![
            ReturnLine {
                line: 0,
                sku: "tee".into(),
                quantity: 3,
            },
            ReturnLine {
                line: 1,
                sku: "tote".into(),
                quantity: 1,
            },
        ];
        let line = |line, restocked, scrapped| InspectionLine {
            line,
            restocked,
            scrapped,
        };
        let pointers = |given: &[InspectionLine]| -> Result<Vec<(u32, u32)>, Vec<String>> {
            check_inspection(&back, given)
                .map(|lines| lines.iter().map(|l| (l.restocked, l.scrapped)).collect())
                .map_err(|errors| errors.into_iter().map(|e| e.pointer).collect())
        };
        assert_eq!(
            pointers(&[line(0, 2, 1), line(1, 0, 1)]),
            Ok(vec![(2, 1), (0, 1)])
        );
        assert_eq!(
            pointers(&[line(0, 2, 2), line(1, 0, 1)]),
            Err(vec!["/lines/0".into()])
        );
        assert_eq!(pointers(&[line(0, 3, 0)]), Err(vec!["/lines".into()]));
        assert_eq!(
            pointers(&[line(0, 3, 0), line(1, 1, 0), line(2, 1, 0)]),
            Err(vec!["/lines/2/line".into()])
        );
        assert_eq!(
            pointers(&[line(0, 3, 0), line(0, 3, 0), line(1, 1, 0)]),
            Err(vec!["/lines/1/line".into()])
        );
    }

    #[test]
    fn stock_fills_whole_lines_only() {
        let lines = |items: &[(&str, u32)]| -> Vec<LineRequest> {
            items
                .iter()
                .map(|(sku, quantity)| LineRequest {
                    sku: sku.to_string(),
                    quantity: *quantity,
                })
                .collect()
        };
        let mut stock: HashMap<String, u32> = [("tee".to_string(), 2)].into();
        assert_eq!(
            fill_from_stock(&lines(&[("tee", 3)]), &mut stock),
            vec![false]
        );
        assert_eq!(stock["tee"], 2, "a partial cover takes nothing");
        assert_eq!(
            fill_from_stock(&lines(&[("tote", 1), ("tee", 2), ("tee", 1)]), &mut stock),
            vec![false, true, false]
        );
        assert_eq!(stock["tee"], 0);
        let mut stock: HashMap<String, u32> = [("tee".to_string(), 5)].into();
        assert_eq!(
            fill_from_stock(&lines(&[("tee", 2), ("tee", 3)]), &mut stock),
            vec![true, true]
        );
        assert_eq!(stock["tee"], 0);
    }
}
