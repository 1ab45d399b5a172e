//! JSON Schemas (draft 2020-12) of the event envelope, one per event kind,
//! and an example of each: what docs/events/ publishes for consumers.
//! `tests/event_schemas.rs` keeps the files equal to what this module
//! generates, and the end-to-end tests validate the events they see against
//! them. Pure: builds JSON values, reads and writes nothing.

use super::event::{Event, OrderedLine};
use super::returns::{InspectedLine, ReturnLine};
use super::{
    AtRiskReason, FactoryId, FailureReason, HoldCause, MachineId, MachineMode, MachineState,
    OrderState,
};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The envelope version the schemas describe.
pub const ENVELOPE_VERSION: u32 = 1;

/// One event of every variant, with the fields a consumer would see. The
/// match in [`variant_name`] is exhaustive, so a new variant does not compile
/// until it is named there and given a sample here.
pub fn samples() -> Vec<Event> {
    let line = OrderedLine {
        sku: "tee-black-m".into(),
        quantity: 2,
    };
    let mut out = vec![
        Event::OrderAccepted {
            factory: FactoryId::new("north"),
            lines: vec![line],
        },
        Event::JobMoved {
            machine: MachineId::new("north-dtg-2"),
        },
        Event::JobScheduled {
            machine: MachineId::new("dtg-1"),
        },
        Event::JobRequeued,
        Event::JobDispatched,
        Event::JobRunning,
        Event::JobDone { good: 2, scrap: 0 },
        Event::JobFailed {
            fault_code: Some(17),
        },
        Event::JobHeld {
            cause: HoldCause::Fault,
            fault_code: Some(17),
            good: Some(1),
            scrap: Some(0),
        },
        Event::JobResumed { operator: false },
        Event::JobAbandoned,
        Event::JobRetried,
        Event::JobCancelled,
        Event::MachineFaulted {
            fault_code: Some(17),
        },
        Event::MachineStateChanged {
            from: MachineState::Idle,
            to: MachineState::Running,
        },
        Event::MachineModeChanged {
            from: MachineMode::Active,
            to: MachineMode::Paused,
        },
        Event::MachineMaterialLoaded {
            from: Some("cotton_tee".into()),
            to: Some("tote".into()),
        },
        Event::MachineMaintenanceScheduled {
            window: "019ad5c4-7e2a-7c1e-9b1e-3f1d2c4b5a69".into(),
            start_ms: 1_796_112_000_000,
            end_ms: 1_796_119_200_000,
            reason: "print head cleaning".into(),
        },
        Event::MachineMaintenanceCancelled {
            window: "019ad5c4-7e2a-7c1e-9b1e-3f1d2c4b5a69".into(),
        },
        Event::HandoffPlanned,
        Event::HandoffConfirmed,
        Event::HandoffMissed,
        Event::HandoffFailed {
            reason: FailureReason::NotHome,
        },
        Event::HandoffLocked { wrong_codes: 5 },
        Event::HandoffReplanned {
            from_courier: "bike-1".into(),
            to_courier: "bike-2".into(),
        },
        Event::HandoffReleased,
        Event::OrderEscalated {
            reason: FailureReason::Refused,
            attempts: 3,
        },
        Event::OrderEscalationDecided {
            decision: super::escalation::EscalationDecision::Retry,
            deliver_by_ms: Some(1_767_225_600_000),
        },
        Event::OrderAtRisk {
            reason: AtRiskReason::ProductionBacklog,
            estimated_delivery_ms: Some(1_796_112_000_000),
            deadline_ms: 1_796_090_400_000,
        },
        Event::CourierDutyChanged {
            on_duty: false,
            released: 4,
            brought_back: 2,
        },
        Event::StockTaken {
            factory: FactoryId::new("north"),
            line: 0,
            sku: "tee-black-m".into(),
            units: 2,
        },
        Event::ReturnRequested {
            factory: FactoryId::new("north"),
            reason: "too small".into(),
            lines: vec![ReturnLine {
                line: 0,
                sku: "tee-black-m".into(),
                quantity: 1,
            }],
        },
        Event::ReturnPickupPlanned,
        Event::ReturnPickupMissed,
        Event::ReturnPickedUp,
        Event::ReturnReceived,
        Event::ReturnInspected {
            lines: vec![InspectedLine {
                line: 0,
                sku: "tee-black-m".into(),
                restocked: 1,
                scrapped: 0,
            }],
        },
        Event::ReturnCancelled,
    ];
    for to in [
        OrderState::InProduction,
        OrderState::Ready,
        OrderState::OutForDelivery,
        OrderState::Delivered,
        OrderState::Cancelled,
        OrderState::ReturnRequested,
        OrderState::ReturnInTransit,
        OrderState::Returned,
    ] {
        out.push(Event::OrderStateChanged {
            from: OrderState::Accepted,
            to,
        });
    }
    out
}

/// The variant's tag in `data.kind` (serde's snake_case name).
pub fn variant_name(event: &Event) -> &'static str {
    match event {
        Event::OrderAccepted { .. } => "order_accepted",
        Event::OrderStateChanged { .. } => "order_state_changed",
        Event::JobScheduled { .. } => "job_scheduled",
        Event::JobRequeued => "job_requeued",
        Event::JobMoved { .. } => "job_moved",
        Event::JobDispatched => "job_dispatched",
        Event::JobRunning => "job_running",
        Event::JobDone { .. } => "job_done",
        Event::JobFailed { .. } => "job_failed",
        Event::JobHeld { .. } => "job_held",
        Event::JobResumed { .. } => "job_resumed",
        Event::JobAbandoned => "job_abandoned",
        Event::JobRetried => "job_retried",
        Event::JobCancelled => "job_cancelled",
        Event::MachineFaulted { .. } => "machine_faulted",
        Event::MachineStateChanged { .. } => "machine_state_changed",
        Event::MachineModeChanged { .. } => "machine_mode_changed",
        Event::MachineMaterialLoaded { .. } => "machine_material_loaded",
        Event::MachineMaintenanceScheduled { .. } => "machine_maintenance_scheduled",
        Event::MachineMaintenanceCancelled { .. } => "machine_maintenance_cancelled",
        Event::HandoffPlanned => "handoff_planned",
        Event::HandoffConfirmed => "handoff_confirmed",
        Event::HandoffMissed => "handoff_missed",
        Event::HandoffFailed { .. } => "handoff_failed",
        Event::HandoffLocked { .. } => "handoff_locked",
        Event::HandoffReplanned { .. } => "handoff_replanned",
        Event::HandoffReleased => "handoff_released",
        Event::OrderEscalated { .. } => "order_escalated",
        Event::OrderEscalationDecided { .. } => "order_escalation_decided",
        Event::OrderAtRisk { .. } => "order_at_risk",
        Event::CourierDutyChanged { .. } => "courier_duty_changed",
        Event::StockTaken { .. } => "stock_taken",
        Event::ReturnRequested { .. } => "return_requested",
        Event::ReturnPickupPlanned => "return_pickup_planned",
        Event::ReturnPickupMissed => "return_pickup_missed",
        Event::ReturnPickedUp => "return_picked_up",
        Event::ReturnReceived => "return_received",
        Event::ReturnInspected { .. } => "return_inspected",
        Event::ReturnCancelled => "return_cancelled",
    }
}

/// What an event is about (the envelope's `subject.type`).
fn subject_type(kind: &str) -> &'static str {
    match kind.split('.').next() {
        Some("job") => "job",
        Some("machine") => "machine",
        Some("handoff") => "handoff",
        Some("return") => "return",
        Some("courier") => "courier",
        // stock.taken is about the order whose line it filled.
        _ => "order",
    }
}

/// The schema of each event variant's `data`, by variant tag, with the
/// definitions they share.
fn variant_schemas() -> (BTreeMap<String, Value>, Value) {
    let root = serde_json::to_value(schemars::schema_for!(Event)).unwrap_or(Value::Null);
    let defs = root.get("$defs").cloned().unwrap_or_else(|| json!({}));
    let mut variants = BTreeMap::new();
    for variant in root["oneOf"].as_array().into_iter().flatten() {
        let tag = &variant["properties"]["kind"];
        let name = tag["const"]
            .as_str()
            .or_else(|| tag["enum"][0].as_str())
            .unwrap_or_default();
        variants.insert(name.to_string(), variant.clone());
    }
    (variants, defs)
}

/// The schema of the whole envelope of events of `kind`.
fn envelope_schema(kind: &str, mut data: Value, defs: &Value) -> Value {
    if kind == "job.done"
        && let Some(properties) = data["properties"].as_object_mut()
    {
        properties.insert(
            "machine_seconds".into(),
            json!({
                "type": "number",
                "minimum": 0,
                "description": "Domain-clock seconds from the job's start (or dispatch) to done."
            }),
        );
    }
    let mut properties = json!({
        "schema": { "const": ENVELOPE_VERSION, "description": "Envelope version; fields are only added within a version." },
        "id": { "type": "string", "format": "uuid", "description": "Unique per event (UUIDv7); delivery is at least once." },
        "seq": { "type": "integer", "minimum": 1, "description": "Position in the event log, increasing in commit order." },
        "kind": { "const": kind },
        "at": { "type": "string", "format": "date-time", "description": "When, on the daemon's domain clock." },
        "subject": {
            "type": "object",
            "required": ["type", "id"],
            "properties": {
                "type": { "const": subject_type(kind) },
                "id": { "type": "string", "minLength": 1 }
            }
        },
        "order_id": { "type": ["string", "null"] },
        "brand": { "type": ["string", "null"] },
        "data": data,
    });
    if kind.starts_with("job.")
        && let Some(map) = properties.as_object_mut()
    {
        map.insert(
            "job".into(),
            json!({
                "type": "object",
                "description": "The job: what it makes, where, and whether its good units are finished goods.",
                "required": ["sku", "line", "step", "final_step", "process", "quantity", "factory", "machine"],
                "properties": {
                    "sku": { "type": ["string", "null"] },
                    "line": { "type": "integer", "minimum": 0 },
                    "step": { "type": "integer", "minimum": 0 },
                    "final_step": { "type": "boolean" },
                    "process": { "type": "string" },
                    "quantity": { "type": "integer", "minimum": 1 },
                    "factory": { "type": "string" },
                    "machine": { "type": ["string", "null"] }
                }
            }),
        );
    }
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": format!("urn:fabflow:events:v{ENVELOPE_VERSION}:{kind}"),
        "title": format!("fabflow event {kind}"),
        "type": "object",
        "required": ["schema", "id", "seq", "kind", "at", "subject", "data"],
        "properties": properties,
        "$defs": defs,
    })
}

/// Every event kind's envelope schema, by kind (`order.accepted`, ...).
pub fn kind_schemas() -> BTreeMap<&'static str, Value> {
    let (variants, defs) = variant_schemas();
    let mut out = BTreeMap::new();
    for event in samples() {
        let mut data = variants
            .get(variant_name(&event))
            .cloned()
            .unwrap_or(Value::Null);
        // One variant carries every order move; each kind names its state.
        if let Event::OrderStateChanged { to, .. } = &event
            && let Some(properties) = data["properties"].as_object_mut()
        {
            properties.insert("to".into(), json!({ "const": to.as_str() }));
        }
        out.insert(event.kind(), envelope_schema(event.kind(), data, &defs));
    }
    out
}

/// An example envelope of every event kind, by kind.
pub fn kind_examples() -> BTreeMap<&'static str, Value> {
    let mut out = BTreeMap::new();
    for event in samples() {
        let kind = event.kind();
        // Stable per kind (FNV-1a), so adding a kind changes no other example.
        let index = kind.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        }) % 100_000;
        let mut data = serde_json::to_value(&event).unwrap_or(Value::Null);
        if kind == "job.done"
            && let Some(map) = data.as_object_mut()
        {
            map.insert("machine_seconds".into(), json!(184.2));
        }
        let subject = subject_type(kind);
        let subject_id = match subject {
            "job" => "1207",
            "machine" => "dtg-1",
            "handoff" => "019ade41-77c2-7e3a-b0c4-6d2f18a9e310",
            "return" => "019ade52-1a0b-7f44-8e1d-0c3b5e7d9a21",
            "courier" => "bike-2",
            _ => "019ade2f-0f6b-7d02-8a61-3c8a4a9e51d4",
        };
        let about_order = !matches!(subject, "machine" | "courier");
        let mut envelope = json!({
            "schema": ENVELOPE_VERSION,
            "id": format!("019ade3c-5b1e-7c11-9c5e-{:012x}", 0x2f0b1c6f8a20_u64 + index),
            "seq": 100_000 + index,
            "kind": kind,
            "at": "2026-12-03T10:41:07.512+00:00",
            "subject": { "type": subject, "id": subject_id },
            "order_id": about_order.then_some("019ade2f-0f6b-7d02-8a61-3c8a4a9e51d4"),
            "brand": about_order.then_some("acme"),
            "data": data,
        });
        if kind.starts_with("job.")
            && let Some(map) = envelope.as_object_mut()
        {
            map.insert(
                "job".into(),
                json!({ "sku": "tee-black-m", "line": 0, "step": 1, "final_step": true,
                        "process": "heat_press", "quantity": 2, "factory": "north",
                        "machine": "press-1" }),
            );
        }
        out.insert(kind, envelope);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_a_schema_with_its_data_and_an_example() {
        let schemas = kind_schemas();
        let examples = kind_examples();
        assert_eq!(
            schemas.keys().collect::<Vec<_>>(),
            examples.keys().collect::<Vec<_>>()
        );
        for (kind, schema) in &schemas {
            assert!(
                schema["properties"]["data"]["properties"]["kind"].is_object(),
                "{kind}: no data schema"
            );
            assert_eq!(schema["properties"]["kind"]["const"], *kind);
        }
        assert!(schemas.contains_key("order.at_risk"));
        assert!(schemas.contains_key("order.delivered"));
        assert!(schemas.contains_key("return.received"));
    }
}
