//! Orders: create (with Idempotency-Key), get, list, cancel, and bulk import
//! of a whole event (NDJSON or CSV, all or nothing, with a per-line report).

use super::ApiState;
use super::auth::{Caller, Role};
use super::body::{json_value, parse_json, require_json};
use super::order_json::{canonical_hash, read_order};
use super::problem::ApiError;
use super::views::{OrderDetail, OrderPage, OrderView, job_view};
use crate::domain::OrderState;
use crate::domain::intake::{Customer, FieldError, LineRequest, OrderRequest};
use crate::runtime::{
    self,
    orders::{IdempotencyKey, Import, OrderError, ParsedLine, Submitted, Submitter},
};
use crate::store::{JobFilter, OrderFilter, OrderRecord};
use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;

const IDEMPOTENCY_KEY: &str = "idempotency-key";

fn body_hash(body: &[u8]) -> String {
    format!("{:x}", Sha256::digest(body))
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    match headers.get(IDEMPOTENCY_KEY) {
        None => Ok(None),
        Some(value) => {
            let key = value
                .to_str()
                .map_err(|_| ApiError::bad_request("Idempotency-Key must be visible ASCII"))?
                .trim()
                .trim_matches('"');
            if key.is_empty() || key.len() > 255 {
                return Err(ApiError::bad_request(
                    "Idempotency-Key must be 1..=255 characters",
                ));
            }
            Ok(Some(key.to_string()))
        }
    }
}

/// Who submits, for the order use cases (brand and admin tokens only).
fn submitter(caller: &Caller) -> Result<Submitter, ApiError> {
    match caller.role {
        Role::Brand => Ok(Submitter::Brand(caller.scope.clone())),
        Role::Admin => Ok(Submitter::Admin),
        _ => Err(ApiError::forbidden(
            "only brand and admin tokens submit orders",
        )),
    }
}

fn key_of(key: Option<String>, request_hash: impl FnOnce() -> String) -> Option<IdempotencyKey> {
    key.map(|key| IdempotencyKey {
        key,
        request_hash: request_hash(),
    })
}

fn json_response(
    status: StatusCode,
    body: String,
    replayed: bool,
    location: Option<&str>,
) -> Response {
    let mut response = (status, body).into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if replayed {
        headers.insert("idempotent-replayed", HeaderValue::from_static("true"));
    }
    if let Some(location) = location.and_then(|l| HeaderValue::from_str(l).ok()) {
        headers.insert(header::LOCATION, location);
    }
    response
}

/// Submit one order.
#[utoipa::path(post, path = "/v1/orders", tag = "orders",
    request_body = OrderRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "Retry-safe key: the first response is replayed", min_length = 1, max_length = 255)),
    responses(
        (status = 201, description = "Accepted", body = OrderView),
        (status = 409, description = "Same key still in flight", body = super::problem::Problem),
        (status = 422, description = "Invalid order, or key reused with another body", body = super::problem::Problem),
        (status = 503, description = "The database refuses writes for now (e.g. a full disk): nothing stored; retry after Retry-After seconds", body = super::problem::Problem,
            headers(("Retry-After" = u64, description = "Seconds to wait"))),
    ),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let submitter = submitter(&caller)?;
    require_json(&headers)?;
    let key = idempotency_key(&headers)?;
    let value = parse_json(&body)?;
    let request = read_order(&value).map_err(ApiError::invalid)?;
    // Same key, same meaning: spacing and key order do not count.
    let key = key_of(key, || canonical_hash(&value));
    let render = |order: &OrderRecord| {
        serde_json::to_string(&OrderView::from(order)).map_err(|err| err.to_string())
    };
    match state
        .runtime
        .accept_order(&submitter, request, key, render)
        .await?
    {
        Submitted::Created { value, reply } => {
            // The request's log lines from here on carry the new order.
            tracing::Span::current().record("order.id", tracing::field::display(&value.id));
            let location = format!("/v1/orders/{}", value.id);
            Ok(json_response(
                StatusCode::CREATED,
                reply,
                false,
                Some(&location),
            ))
        }
        Submitted::Replayed { status, reply } => Ok(replayed(status, reply)),
    }
}

/// One order, with its jobs.
#[utoipa::path(get, path = "/v1/orders/{id}", tag = "orders",
    params(("id" = String, Path, description = "Order id")),
    responses((status = 200, body = OrderDetail), (status = 404, body = super::problem::Problem)),
    security(("bearer" = [])))]
pub async fn get(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<OrderDetail>, ApiError> {
    caller.require(&[Role::Brand, Role::Operator, Role::Admin])?;
    let order = state
        .runtime
        .store
        .get_order(&id, caller.brand_scope())
        .await?
        .filter(|order| caller.role != Role::Operator || caller.covers_factory(&order.factory))
        .ok_or_else(|| ApiError::not_found(format!("order {id}")))?;
    let jobs = state
        .runtime
        .store
        .list_jobs(&JobFilter {
            order_id: Some(id.clone()),
            limit: 1_000,
            ..Default::default()
        })
        .await?;
    let handoffs = state.runtime.store.order_handoffs(&id).await?;
    let escalation = state.runtime.store.order_escalation(&id).await?;
    let returns = state.runtime.store.order_returns(&id).await?;
    Ok(Json(OrderDetail {
        returns: returns.iter().map(super::views::ReturnView::from).collect(),
        order: OrderView::from(&order),
        jobs: jobs.iter().map(job_view).collect(),
        handoffs: handoffs
            .iter()
            .map(|h| {
                let show = super::ops::sees_code(&caller, h, &order.factory, &order.brand);
                super::views::HandoffView::new(h, show)
            })
            .collect(),
        escalation: escalation.as_ref().map(super::views::EscalationView::from),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListOrders {
    /// Only orders in this state.
    pub state: Option<OrderState>,
    /// Cursor: the `next` of the previous page.
    #[serde(default, deserialize_with = "super::empty_as_none")]
    pub after: Option<String>,
    /// Page size, 1..=500 (default 100).
    #[param(minimum = 1, maximum = 500)]
    pub limit: Option<i64>,
}

/// A brand's orders (all orders for operators and admins), oldest first.
#[utoipa::path(get, path = "/v1/orders", tag = "orders", params(ListOrders),
    responses((status = 200, body = OrderPage)), security(("bearer" = [])))]
pub async fn list(
    State(state): State<ApiState>,
    caller: Caller,
    Query(query): Query<ListOrders>,
) -> Result<Json<OrderPage>, ApiError> {
    caller.require(&[Role::Brand, Role::Operator, Role::Admin])?;
    let limit = super::page_limit(query.limit)?;
    let orders = state
        .runtime
        .store
        .list_orders(&OrderFilter {
            brand: caller.brand_scope().map(str::to_string),
            state: query.state,
            after: query.after,
            limit,
        })
        .await?;
    let items: Vec<OrderView> = orders
        .iter()
        .filter(|order| caller.role != Role::Operator || caller.covers_factory(&order.factory))
        .map(OrderView::from)
        .collect();
    let next = (orders.len() as i64 == limit)
        .then(|| orders.last().map(|o| o.id.to_string()))
        .flatten();
    Ok(Json(OrderPage { items, next }))
}

/// Cancel an order that has no job on a machine yet.
#[utoipa::path(post, path = "/v1/orders/{id}/cancel", tag = "orders",
    params(("id" = String, Path, description = "Order id")),
    responses((status = 200, body = OrderView), (status = 404, body = super::problem::Problem),
        (status = 409, description = "Already in production on a machine, or past production", body = super::problem::Problem)),
    security(("bearer" = [])))]
pub async fn cancel(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Json<OrderView>, ApiError> {
    caller.require(&[Role::Brand, Role::Admin])?;
    let order = state
        .runtime
        .cancel_order(&id, caller.brand_scope(), &caller.actor())
        .await?;
    Ok(Json(OrderView::from(&order)))
}

/// An operator's decision on an escalated order.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EscalationRequest {
    pub decision: crate::domain::escalation::EscalationDecision,
    /// With `retry` only: the new latest delivery time (RFC 3339, later than now).
    #[serde(default)]
    pub deliver_by: Option<chrono::DateTime<chrono::Utc>>,
}

/// What becomes of an escalated order (its delivery attempts ran out):
/// `retry` plans it again (attempts count from zero; `deliver_by` sets a
/// new deadline), `return_to_factory` cancels it and puts its units on its
/// factory's shelf, `cancel_delivery` cancels it. Operators of the order's
/// factory and admins. Refused with 422 (and the field's pointer) for a
/// malformed decision, 409 for an order that is not escalated or not back
/// at its factory. One transaction, one event (`order.escalation_decided`,
/// with `order.cancelled` when it cancels), audited (`order.escalation`).
#[utoipa::path(post, path = "/v1/orders/{id}/escalation", tag = "orders",
    params(("id" = String, Path, description = "Order id")),
    request_body = EscalationRequest,
    responses((status = 200, body = OrderView), (status = 400, body = super::problem::Problem),
        (status = 404, body = super::problem::Problem, description = "No such order (for this operator)"),
        (status = 409, body = super::problem::Problem, description = "Nothing to decide; `detail` says why"),
        (status = 422, body = super::problem::Problem)),
    security(("bearer" = [])))]
pub async fn decide_escalation(
    State(state): State<ApiState>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<OrderView>, ApiError> {
    caller.require(&[Role::Operator, Role::Admin])?;
    let visible = state
        .runtime
        .store
        .get_order(&id, None)
        .await?
        .is_some_and(|order| caller.role == Role::Admin || caller.covers_factory(&order.factory));
    if !visible {
        return Err(ApiError::not_found(format!("order {id}")));
    }
    let value = json_value(&headers, &body)?;
    let request = escalation_request(value)?;
    let deliver_by_ms = request.deliver_by.map(|at| at.timestamp_millis());
    match state
        .runtime
        .decide_escalation(&id, request.decision, deliver_by_ms, &caller.actor())
        .await?
    {
        Ok(order) => Ok(Json(OrderView::from(&order))),
        Err(refusal) => Err(match refusal.pointer {
            Some(pointer) => ApiError::invalid(vec![FieldError::new(pointer, &refusal.reason)]),
            None => ApiError::conflict(format!("order {id}: {}", refusal.reason)),
        }),
    }
}

/// Reads an escalation decision, naming each field at fault.
fn escalation_request(value: serde_json::Value) -> Result<EscalationRequest, ApiError> {
    let Some(fields) = value.as_object() else {
        return Err(ApiError::invalid(vec![FieldError::new(
            "",
            "must be an object with `decision` (and `deliver_by` for retry)",
        )]));
    };
    let mut errors = Vec::new();
    for key in fields.keys() {
        if key != "decision" && key != "deliver_by" {
            errors.push(FieldError::new(
                format!("/{key}"),
                "unknown field (decision, deliver_by)",
            ));
        }
    }
    let decision = fields
        .get("decision")
        .cloned()
        .and_then(|d| serde_json::from_value(d).ok());
    if decision.is_none() {
        errors.push(FieldError::new(
            "/decision",
            "must be retry, return_to_factory or cancel_delivery",
        ));
    }
    let deliver_by = match fields.get("deliver_by") {
        None | Some(serde_json::Value::Null) => None,
        Some(value) => {
            let parsed = serde_json::from_value(value.clone()).ok();
            if parsed.is_none() {
                errors.push(FieldError::new(
                    "/deliver_by",
                    "must be an RFC 3339 time, e.g. 2026-12-24T18:00:00Z",
                ));
            }
            parsed
        }
    };
    match decision {
        Some(decision) if errors.is_empty() => Ok(EscalationRequest {
            decision,
            deliver_by,
        }),
        _ => Err(ApiError::invalid(errors)),
    }
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    /// Orders stored (0 when anything was wrong: nothing is half-imported).
    pub imported: usize,
    /// One entry per order, in file order.
    pub orders: Vec<ImportLine>,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ImportLine {
    /// 1-based line in the file where the order starts.
    pub line: usize,
    pub external_ref: Option<String>,
    pub id: Option<String>,
    /// What is wrong with it (empty when it is fine).
    pub errors: Vec<FieldError>,
}

impl From<runtime::orders::ImportLine> for ImportLine {
    fn from(line: runtime::orders::ImportLine) -> ImportLine {
        ImportLine {
            line: line.line,
            external_ref: line.external_ref,
            id: line.id,
            errors: line.errors,
        }
    }
}

impl ImportReport {
    /// The report of a stored import.
    fn stored(import: &Import) -> ImportReport {
        ImportReport {
            imported: import.lines.len(),
            orders: import.lines.iter().cloned().map(ImportLine::from).collect(),
        }
    }
}

/// Import a whole event's orders: NDJSON (`application/x-ndjson`, one order
/// per line) or CSV (`text/csv`, columns
/// `external_ref,customer_name,lat,lon,sku,quantity`; rows with the same
/// external_ref form one order). All or nothing.
#[utoipa::path(post, path = "/v1/orders/import", tag = "orders",
    request_body(description = "One order per line: NDJSON (the order JSON), or CSV with a header line",
        content((String = "application/x-ndjson"), (String = "text/csv"))),
    responses((status = 201, body = ImportReport),
        (status = 400, description = "Not UTF-8, no orders, a CSV without its header", body = super::problem::Problem),
        (status = 415, description = "Neither NDJSON nor CSV", body = super::problem::Problem),
        (status = 422, description = "Nothing imported; see the per-line report", body = ImportReport),
        (status = 503, description = "The database refuses writes for now (e.g. a full disk): nothing stored; retry after Retry-After seconds", body = super::problem::Problem,
            headers(("Retry-After" = u64, description = "Seconds to wait")))),
    security(("bearer" = [])))]
pub async fn import(
    State(state): State<ApiState>,
    caller: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    let submitter = submitter(&caller)?;
    let key = idempotency_key(&headers)?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let text = std::str::from_utf8(&body)
        .map_err(|err| ApiError::bad_request(format!("body is not UTF-8: {err}")))?;
    let parsed = parse_import(&content_type, text)?;
    if parsed.is_empty() {
        return Err(ApiError::bad_request("the file holds no orders"));
    }
    if parsed.len() > 100_000 {
        return Err(ApiError::bad_request("at most 100000 orders per import"));
    }
    let key = key_of(key, || import_hash(&content_type, text));
    let render = |import: &Import| {
        serde_json::to_string(&ImportReport::stored(import)).map_err(|err| err.to_string())
    };
    match state
        .runtime
        .import_orders(&submitter, parsed, key, render)
        .await
    {
        Ok(Submitted::Created { reply, .. }) => {
            Ok(json_response(StatusCode::CREATED, reply, false, None))
        }
        Ok(Submitted::Replayed { status, reply }) => Ok(replayed(status, reply)),
        Err(OrderError::ImportRefused(lines)) => {
            let report = ImportReport {
                imported: 0,
                orders: lines.into_iter().map(ImportLine::from).collect(),
            };
            Ok((StatusCode::UNPROCESSABLE_ENTITY, Json(report)).into_response())
        }
        Err(OrderError::KeyReused) => Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency-key-reused",
            "this Idempotency-Key was used with a different file; nothing was imported",
        )),
        Err(err) => Err(err.into()),
    }
}

/// The first response to a key, replayed.
fn replayed(status: u16, reply: String) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    json_response(status, reply, true, None)
}

/// What an import's Idempotency-Key is compared by: for NDJSON the
/// canonical form of each order (spacing and key order do not matter, the
/// orders' order does), for CSV the text (where spacing is data).
fn import_hash(content_type: &str, text: &str) -> String {
    if content_type == "text/csv" {
        return body_hash(text.as_bytes());
    }
    let lines: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(
            |line| match serde_json::from_str::<serde_json::Value>(line) {
                Ok(value) => canonical_hash(&value),
                Err(_) => body_hash(line.as_bytes()),
            },
        )
        .collect();
    body_hash(format!("{content_type}\n{}", lines.join("\n")).as_bytes())
}

/// An import body of `content_type` (lower case, without parameters) read
/// into orders, each with its line number and its problems.
pub fn parse_import(content_type: &str, text: &str) -> Result<Vec<ParsedLine>, ApiError> {
    match content_type {
        "application/x-ndjson" | "application/jsonl" | "application/json-seq" => {
            Ok(parse_ndjson(text))
        }
        "text/csv" => parse_csv(text),
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            format!("Content-Type must be application/x-ndjson or text/csv, got {other:?}"),
        )),
    }
}

fn parse_ndjson(text: &str) -> Vec<ParsedLine> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty())
        .map(|(index, line)| {
            let parsed = serde_json::from_str::<serde_json::Value>(line)
                .map_err(|err| {
                    vec![FieldError::new(
                        format!("line {}, column {}", index + 1, err.column()),
                        err.to_string(),
                    )]
                })
                .and_then(|value| read_order(&value));
            (index + 1, parsed)
        })
        .collect()
}

#[derive(Debug, Deserialize)]
struct CsvRow {
    external_ref: String,
    customer_name: String,
    lat: f64,
    lon: f64,
    sku: String,
    quantity: u32,
}

fn parse_csv(text: &str) -> Result<Vec<ParsedLine>, ApiError> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let headers = reader
        .headers()
        .map_err(|err| ApiError::bad_request(format!("CSV header: {err}")))?
        .clone();
    for column in [
        "external_ref",
        "customer_name",
        "lat",
        "lon",
        "sku",
        "quantity",
    ] {
        if !headers.iter().any(|h| h == column) {
            return Err(ApiError::bad_request(format!(
                "CSV header misses column {column:?} (needs external_ref,customer_name,lat,lon,sku,quantity)"
            )));
        }
    }
    // Rows with one external_ref form one order wherever they stand in the
    // file; it starts at its first row. Rows of one order that name another
    // customer are refused, each with its line.
    let mut out: Vec<ParsedLine> = Vec::new();
    let mut by_ref: HashMap<String, (usize, usize, String, f64, f64)> = HashMap::new();
    for record in reader.records() {
        let record = match record {
            Ok(record) => record,
            Err(err) => {
                let line = err.position().map_or(0, |p| p.line() as usize);
                out.push((
                    line,
                    Err(vec![FieldError::new(
                        format!("line {line}"),
                        err.to_string(),
                    )]),
                ));
                continue;
            }
        };
        let line = record.position().map_or(0, |p| p.line() as usize);
        let row: CsvRow = match record.deserialize(Some(&headers)) {
            Ok(row) => row,
            Err(err) => {
                out.push((
                    line,
                    Err(vec![FieldError::new(
                        format!("line {line}"),
                        err.to_string(),
                    )]),
                ));
                continue;
            }
        };
        let line_request = LineRequest {
            sku: row.sku,
            quantity: row.quantity,
        };
        if let Some((index, first_line, name, lat, lon)) = by_ref.get(&row.external_ref) {
            let same_customer = *name == row.customer_name && *lat == row.lat && *lon == row.lon;
            let (_, parsed) = &mut out[*index];
            match (same_customer, parsed) {
                (true, Ok(order)) => order.lines.push(line_request),
                (true, Err(_)) => {}
                (false, parsed) => {
                    let error = FieldError::new(
                        format!("line {line}"),
                        format!(
                            "external_ref {:?} names customer {:?} at ({}, {}), but line {first_line} names {name:?} at ({lat}, {lon}); rows of one order name one customer",
                            row.external_ref, row.customer_name, row.lat, row.lon
                        ),
                    );
                    match parsed {
                        Err(errors) => errors.push(error),
                        Ok(_) => *parsed = Err(vec![error]),
                    }
                }
            }
            continue;
        }
        by_ref.insert(
            row.external_ref.clone(),
            (out.len(), line, row.customer_name.clone(), row.lat, row.lon),
        );
        out.push((
            line,
            Ok(OrderRequest {
                external_ref: Some(row.external_ref),
                brand: None,
                customer: Customer {
                    name: row.customer_name,
                    lat: row.lat,
                    lon: row.lon,
                },
                lines: vec![line_request],
                deliver_by: None,
            }),
        ));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Fuzzing the CSV import (issue 10): arbitrary text, and rows made of
    // the characters CSV cares about under the real header, never panic.
    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config::with_cases(300))]

        #[test]
        fn csv_import_never_panics(text in ".{0,300}") {
            let _ = parse_csv(&text);
        }

        #[test]
        fn csv_rows_under_the_header_never_panic(
            rows in proptest::collection::vec("[a-z0-9,.\\-\"\r\u{0}\u{202E}é ]{0,40}", 0..8)
        ) {
            let text = format!(
                "external_ref,customer_name,lat,lon,sku,quantity\n{}",
                rows.join("\n")
            );
            let _ = parse_csv(&text);
        }
    }

    #[test]
    fn csv_rows_with_one_reference_form_one_order() {
        let text = "external_ref,customer_name,lat,lon,sku,quantity\n\
                    a,Ada,52.5,13.4,tee,1\n\
                    a,Ada,52.5,13.4,mug,2\n\
                    b,Bob,52.5,13.4,tee,x\n\
                    c,Cy,52.5,13.4,tee,3\n";
        let parsed = parse_csv(text).expect("parsed");
        assert_eq!(parsed.len(), 3);
        let first = parsed[0].1.as_ref().expect("order a");
        assert_eq!(first.lines.len(), 2);
        assert_eq!(parsed[0].0, 2);
        assert!(parsed[1].1.is_err(), "bad quantity is reported");
        assert_eq!(parsed[1].0, 4);
        assert!(parse_csv("ref,name\n").is_err());
    }

    #[test]
    fn csv_rows_group_by_reference_wherever_they_stand_and_conflicts_are_refused() {
        let text = "external_ref,customer_name,lat,lon,sku,quantity\n\
                    a,Alice,52.5,13.4,tee,1\n\
                    m,Mallory,52.4,13.3,mug,1\n\
                    a,Alice,52.5,13.4,mug,2\n\
                    m,Alice,52.5,13.4,keychain,1\n";
        let parsed = parse_csv(text).expect("parsed");
        assert_eq!(parsed.len(), 2, "two references, two orders");
        let alice = parsed[0].1.as_ref().expect("order a");
        assert_eq!(alice.lines.len(), 2, "rows 2 and 4 are one order");
        let errors = parsed[1].1.as_ref().expect_err("order m conflicts");
        assert_eq!(parsed[1].0, 3);
        assert_eq!(errors[0].pointer, "line 5");
        assert!(
            errors[0].reason.contains("line 3 names \"Mallory\""),
            "{}",
            errors[0].reason
        );
    }

    #[test]
    fn an_ndjson_import_is_compared_by_its_orders_not_its_spacing() {
        let one = "{\"a\": 1, \"b\": [1, 2]}\n{\"c\": \"x\"}\n";
        let same = "\n{\"b\":[1,2],\"a\":1}\r\n\n  {\"c\":\"x\"}  ";
        let other = "{\"c\": \"x\"}\n{\"a\": 1, \"b\": [1, 2]}\n";
        let ndjson = "application/x-ndjson";
        assert_eq!(import_hash(ndjson, one), import_hash(ndjson, same));
        assert_ne!(import_hash(ndjson, one), import_hash(ndjson, other));
        assert_ne!(
            import_hash("text/csv", "a,b\n1,2\n"),
            import_hash("text/csv", "a,b\n1, 2\n")
        );
    }

    #[test]
    fn ndjson_reports_lines() {
        let text = "{\"customer\":{\"name\":\"A\",\"lat\":52.5,\"lon\":13.4},\"lines\":[{\"sku\":\"t\",\"quantity\":1}]}\n\n{oops\n";
        let parsed = parse_ndjson(text);
        assert_eq!(parsed.len(), 2);
        assert!(parsed[0].1.is_ok());
        assert_eq!(parsed[1].0, 3);
        assert!(parsed[1].1.is_err());
    }
}
