//! Order intake rules: what makes an order acceptable, and the jobs it becomes.
//!
//! Validation reports every problem at once, each with the JSON pointer of the
//! field at fault, so a brand can fix a whole order in one go.

use super::{Catalog, HOUR_MS, Location, Millis, Zone};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

pub const MAX_LINES: usize = 50;
pub const MAX_QUANTITY: u32 = 100;
pub const MAX_TEXT: usize = 200;

/// An order as a brand submits it. Only these fields are writable.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OrderRequest {
    /// The brand's own reference (e.g. its point-of-sale receipt number).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 200)]
    pub external_ref: Option<String>,
    /// Only for admin tokens: the brand the order belongs to.
    #[serde(default)]
    pub brand: Option<String>,
    pub customer: Customer,
    #[schema(min_items = 1, max_items = 50)]
    pub lines: Vec<LineRequest>,
    /// Latest delivery time; defaults to acceptance plus the delivery promise.
    #[serde(default)]
    pub deliver_by: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    /// 1..=200 characters; no control or bidirectional formatting characters.
    #[schema(min_length = 1, max_length = 200)]
    pub name: String,
    #[schema(minimum = -90, maximum = 90)]
    pub lat: f64,
    #[schema(minimum = -180, maximum = 180)]
    pub lon: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LineRequest {
    pub sku: String,
    #[schema(minimum = 1, maximum = 100)]
    pub quantity: u32,
}

/// A problem with one field of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FieldError {
    /// JSON pointer to the field (RFC 6901), e.g. `/lines/0/sku`.
    pub pointer: String,
    pub reason: String,
}

impl FieldError {
    pub fn new(pointer: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            pointer: pointer.into(),
            reason: reason.into(),
        }
    }
}

/// The intake policy, from configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct IntakeRules {
    /// The delivery promise: deadline = accepted + this, unless `deliver_by` is earlier.
    pub promise_ms: Millis,
    /// Production and delivery need at least this long.
    pub min_lead_ms: Millis,
    /// Time kept free at the end for the courier.
    pub delivery_buffer_ms: Millis,
}

impl Default for IntakeRules {
    fn default() -> Self {
        Self {
            promise_ms: 48 * HOUR_MS,
            min_lead_ms: 6 * HOUR_MS,
            delivery_buffer_ms: 8 * HOUR_MS,
        }
    }
}

/// An order that passed validation.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidOrder {
    pub zone: String,
    pub location: Location,
    pub deadline_ms: Millis,
    pub jobs: Vec<JobPlan>,
}

/// One job to create: a step of a line.
#[derive(Debug, Clone, PartialEq)]
pub struct JobPlan {
    pub line_index: usize,
    pub step_index: usize,
    pub process: String,
    pub recipe: u32,
    pub material: String,
    pub quantity: u32,
    pub seconds_per_unit: f64,
    pub due_ms: Millis,
}

/// What is wrong with a person's text (a name, a reference), if anything:
/// it must be 1..=MAX_TEXT characters (not bytes), with no control
/// characters (NUL, line breaks) and no bidirectional overrides or isolates
/// (U+202A..U+202E, U+2066..U+2069), which make a label read as something
/// else on a screen or a parcel.
pub fn text_problem(text: &str) -> Option<String> {
    let count = text.chars().count();
    if count == 0 || count > MAX_TEXT {
        return Some(format!("must be 1..={MAX_TEXT} characters, got {count}"));
    }
    let bidi = |c: char| matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
    text.chars()
        .enumerate()
        .find(|(_, c)| c.is_control() || bidi(*c))
        .map(|(at, c)| {
            format!(
                "character {} is U+{:04X}, a control or bidirectional formatting character",
                at + 1,
                u32::from(c)
            )
        })
}

/// Checks an order against the catalog, the served zones and the clock.
pub fn validate(
    request: &OrderRequest,
    catalog: &Catalog,
    zones: &[Zone],
    rules: &IntakeRules,
    now_ms: Millis,
) -> Result<ValidOrder, Vec<FieldError>> {
    let mut errors = Vec::new();
    if let Some(reference) = &request.external_ref
        && let Some(problem) = text_problem(reference)
    {
        errors.push(FieldError::new("/external_ref", problem));
    }
    if let Some(problem) = text_problem(request.customer.name.trim()) {
        errors.push(FieldError::new("/customer/name", problem));
    }
    let location = Location::new(request.customer.lat, request.customer.lon);
    let zone = if !location.is_valid() {
        errors.push(FieldError::new(
            "/customer",
            "lat must be within -90..=90 and lon within -180..=180",
        ));
        None
    } else {
        let zone = zones.iter().find(|zone| zone.contains(location));
        if zone.is_none() {
            errors.push(FieldError::new(
                "/customer",
                format!(
                    "({}, {}) is outside every served zone",
                    location.lat, location.lon
                ),
            ));
        }
        zone
    };
    if request.lines.is_empty() || request.lines.len() > MAX_LINES {
        errors.push(FieldError::new(
            "/lines",
            format!("must have 1..={MAX_LINES} lines"),
        ));
    }
    for (index, line) in request.lines.iter().enumerate() {
        if catalog.get(&line.sku).is_none() {
            errors.push(FieldError::new(
                format!("/lines/{index}/sku"),
                format!("unknown SKU {:?}", line.sku),
            ));
        }
        if line.quantity == 0 || line.quantity > MAX_QUANTITY {
            errors.push(FieldError::new(
                format!("/lines/{index}/quantity"),
                format!("must be 1..={MAX_QUANTITY}, got {}", line.quantity),
            ));
        }
    }
    let promised = now_ms + rules.promise_ms;
    let deadline_ms = match request.deliver_by {
        Some(at) => {
            let at_ms = at.timestamp_millis();
            if at_ms < now_ms + rules.min_lead_ms {
                errors.push(FieldError::new(
                    "/deliver_by",
                    format!(
                        "is not reachable: production and delivery need at least {} hours",
                        rules.min_lead_ms / HOUR_MS
                    ),
                ));
            }
            at_ms.min(promised)
        }
        None => promised,
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let Some(zone) = zone else {
        return Err(vec![FieldError::new(
            "/customer",
            "outside every served zone",
        )]);
    };
    Ok(ValidOrder {
        zone: zone.id.clone(),
        location,
        deadline_ms,
        jobs: plan_jobs(request, catalog, deadline_ms - rules.delivery_buffer_ms),
    })
}

/// Expands the lines into jobs, one per process step, each due early enough
/// for the steps after it to finish by `ready_by_ms`.
pub fn plan_jobs(request: &OrderRequest, catalog: &Catalog, ready_by_ms: Millis) -> Vec<JobPlan> {
    let mut jobs = Vec::new();
    for (line_index, line) in request.lines.iter().enumerate() {
        let Some(sku) = catalog.get(&line.sku) else {
            continue;
        };
        let mut due_ms = ready_by_ms;
        let mut steps = Vec::with_capacity(sku.route.len());
        for (step_index, step) in sku.route.iter().enumerate().rev() {
            steps.push(JobPlan {
                line_index,
                step_index,
                process: step.process.clone(),
                recipe: step.recipe,
                material: step.material.clone(),
                quantity: line.quantity,
                seconds_per_unit: step.seconds_per_unit,
                due_ms,
            });
            due_ms -= (step.seconds_per_unit * f64::from(line.quantity) * 1000.0) as Millis;
        }
        steps.reverse();
        jobs.extend(steps);
    }
    jobs
}

#[cfg(test)]
mod tests {

    #[test]
    fn text_is_counted_in_characters_and_refuses_controls_and_bidi_overrides() {
        let cases: &[(&str, bool)] = &[
            ("Ada", true),
            ("Zoë Ångström", true),
            ("", false),
            ("Mallory\u{0}", false),
            ("line\nbreak", false),
            ("\u{202E}gpj.exe", false),
            ("isolate \u{2067}x\u{2069}", false),
        ];
        for (text, ok) in cases {
            assert_eq!(text_problem(text).is_none(), *ok, "{text:?}");
        }
        // 200 two-byte characters are 400 bytes: still fine.
        assert!(text_problem(&"é".repeat(MAX_TEXT)).is_none());
        assert!(text_problem(&"é".repeat(MAX_TEXT + 1)).is_some());
    }

    use super::*;
    use crate::domain::{ProcessStep, Sku};

    fn catalog() -> Catalog {
        let step = |process: &str, recipe, seconds| ProcessStep {
            process: process.into(),
            recipe,
            material: "cotton_tee".into(),
            seconds_per_unit: seconds,
        };
        Catalog::new([
            Sku {
                code: "tee".into(),
                name: "Tee".into(),
                route: vec![step("dtg_print", 1, 60.0), step("heat_press", 2, 30.0)],
                volume_l: None,
            },
            Sku {
                code: "mug".into(),
                name: "Mug".into(),
                route: vec![step("uv_print", 3, 45.0)],
                volume_l: None,
            },
        ])
    }

    fn zones() -> Vec<Zone> {
        vec![Zone::from_corners(
            "centre",
            &[
                Location::new(52.0, 13.0),
                Location::new(52.0, 14.0),
                Location::new(53.0, 14.0),
                Location::new(53.0, 13.0),
            ],
        )]
    }

    fn request() -> OrderRequest {
        OrderRequest {
            external_ref: Some("pos-1".into()),
            brand: None,
            customer: Customer {
                name: "Ada".into(),
                lat: 52.5,
                lon: 13.4,
            },
            lines: vec![
                LineRequest {
                    sku: "tee".into(),
                    quantity: 2,
                },
                LineRequest {
                    sku: "mug".into(),
                    quantity: 1,
                },
            ],
            deliver_by: None,
        }
    }

    const NOW: Millis = 1_800_000_000_000;

    fn pointers(request: &OrderRequest) -> Vec<String> {
        match validate(request, &catalog(), &zones(), &IntakeRules::default(), NOW) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.into_iter().map(|e| e.pointer).collect(),
        }
    }

    #[test]
    fn a_good_order_becomes_jobs_in_route_order() {
        let rules = IntakeRules::default();
        let valid = validate(&request(), &catalog(), &zones(), &rules, NOW).expect("valid");
        assert_eq!(valid.zone, "centre");
        assert_eq!(valid.deadline_ms, NOW + 48 * HOUR_MS);
        let steps: Vec<_> = valid
            .jobs
            .iter()
            .map(|j| (j.line_index, j.step_index, j.process.as_str()))
            .collect();
        assert_eq!(
            steps,
            vec![
                (0, 0, "dtg_print"),
                (0, 1, "heat_press"),
                (1, 0, "uv_print")
            ]
        );
        let ready_by = valid.deadline_ms - rules.delivery_buffer_ms;
        assert_eq!(valid.jobs[1].due_ms, ready_by);
        // The print must leave time for pressing two tees (2 x 30 s).
        assert_eq!(valid.jobs[0].due_ms, ready_by - 60_000);
        assert_eq!(valid.jobs[2].due_ms, ready_by);
    }

    #[test]
    fn every_problem_is_reported_with_its_place() {
        let mut bad = request();
        bad.customer.name = " ".into();
        bad.lines[0].sku = "hat".into();
        bad.lines[1].quantity = 0;
        bad.external_ref = Some(String::new());
        assert_eq!(
            pointers(&bad),
            vec![
                "/external_ref",
                "/customer/name",
                "/lines/0/sku",
                "/lines/1/quantity"
            ]
        );
    }

    #[test]
    fn location_and_lines() {
        let mut outside = request();
        outside.customer.lat = 48.1;
        assert_eq!(pointers(&outside), vec!["/customer"]);
        let mut invalid = request();
        invalid.customer.lon = 200.0;
        assert_eq!(pointers(&invalid), vec!["/customer"]);
        let mut empty = request();
        empty.lines.clear();
        assert_eq!(pointers(&empty), vec!["/lines"]);
        let mut many = request();
        many.lines = vec![many.lines[0].clone(); MAX_LINES + 1];
        assert_eq!(pointers(&many), vec!["/lines"]);
        let mut huge = request();
        huge.lines[0].quantity = MAX_QUANTITY + 1;
        assert_eq!(pointers(&huge), vec!["/lines/0/quantity"]);
    }

    #[test]
    fn deliver_by_must_be_reachable_and_caps_at_the_promise() {
        let at = |ms: Millis| DateTime::<Utc>::from_timestamp_millis(ms);
        let mut soon = request();
        soon.deliver_by = at(NOW + HOUR_MS);
        assert_eq!(pointers(&soon), vec!["/deliver_by"]);
        let mut early = request();
        early.deliver_by = at(NOW + 24 * HOUR_MS);
        let valid =
            validate(&early, &catalog(), &zones(), &IntakeRules::default(), NOW).expect("valid");
        assert_eq!(valid.deadline_ms, NOW + 24 * HOUR_MS);
        let mut late = request();
        late.deliver_by = at(NOW + 100 * HOUR_MS);
        let valid =
            validate(&late, &catalog(), &zones(), &IntakeRules::default(), NOW).expect("valid");
        assert_eq!(valid.deadline_ms, NOW + 48 * HOUR_MS);
    }

    #[test]
    fn unknown_fields_are_refused() {
        let json =
            r#"{"customer":{"name":"A","lat":52.5,"lon":13.4},"lines":[],"state":"delivered"}"#;
        assert!(serde_json::from_str::<OrderRequest>(json).is_err());
    }
}
