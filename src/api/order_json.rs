//! Reading an order from JSON: the request's shape checked field by field, so
//! every field at fault is answered at once with its JSON pointer (serde's
//! derive stops at the first, and takes a positional array for an object),
//! and the canonical form an idempotency key is compared by.

use crate::domain::intake::{Customer, FieldError, LineRequest, OrderRequest};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// An order read from `value`, or every field at fault. `at` prefixes the
/// pointers (empty for a request body).
pub fn read_order(value: &Value) -> Result<OrderRequest, Vec<FieldError>> {
    let mut errors = Vec::new();
    let Some(object) = value.as_object() else {
        return Err(vec![FieldError::new(
            "",
            format!("must be a JSON object (an order), got {}", kind(value)),
        )]);
    };
    unknown_fields(
        object,
        "",
        &["external_ref", "brand", "customer", "lines", "deliver_by"],
        &mut errors,
    );
    let external_ref = optional_text(object, "external_ref", "", &mut errors);
    let brand = optional_text(object, "brand", "", &mut errors);
    let customer = match object.get("customer") {
        None => {
            errors.push(FieldError::new("/customer", "is required"));
            None
        }
        Some(Value::Object(customer)) => {
            unknown_fields(customer, "/customer", &["name", "lat", "lon"], &mut errors);
            let name = required_text(customer, "name", "/customer", &mut errors);
            let lat = number(customer, "lat", "/customer", &mut errors);
            let lon = number(customer, "lon", "/customer", &mut errors);
            match (name, lat, lon) {
                (Some(name), Some(lat), Some(lon)) => Some(Customer { name, lat, lon }),
                _ => None,
            }
        }
        Some(other) => {
            errors.push(FieldError::new(
                "/customer",
                format!(
                    "must be an object with name, lat and lon, got {}",
                    kind(other)
                ),
            ));
            None
        }
    };
    let lines = match object.get("lines") {
        None => {
            errors.push(FieldError::new("/lines", "is required"));
            None
        }
        Some(Value::Array(items)) => {
            let mut lines = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let at = format!("/lines/{index}");
                let Some(line) = item.as_object() else {
                    errors.push(FieldError::new(
                        at,
                        format!(
                            "must be an object with sku and quantity, got {}",
                            kind(item)
                        ),
                    ));
                    continue;
                };
                unknown_fields(line, &at, &["sku", "quantity"], &mut errors);
                let sku = required_text(line, "sku", &at, &mut errors);
                let quantity = match line.get("quantity") {
                    None => {
                        errors.push(FieldError::new(format!("{at}/quantity"), "is required"));
                        None
                    }
                    Some(value) => match value.as_u64().and_then(|n| u32::try_from(n).ok()) {
                        Some(quantity) => Some(quantity),
                        None => {
                            errors.push(FieldError::new(
                                format!("{at}/quantity"),
                                format!("must be a whole number 1..=100, got {value}"),
                            ));
                            None
                        }
                    },
                };
                if let (Some(sku), Some(quantity)) = (sku, quantity) {
                    lines.push(LineRequest { sku, quantity });
                }
            }
            Some(lines)
        }
        Some(other) => {
            errors.push(FieldError::new(
                "/lines",
                format!("must be an array of lines, got {}", kind(other)),
            ));
            None
        }
    };
    let deliver_by = match object.get("deliver_by") {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => match DateTime::parse_from_rfc3339(text) {
            Ok(at) => Some(at.with_timezone(&Utc)),
            Err(err) => {
                errors.push(FieldError::new(
                    "/deliver_by",
                    format!("must be an RFC 3339 time (2026-12-03T18:00:00Z): {err}"),
                ));
                None
            }
        },
        Some(other) => {
            errors.push(FieldError::new(
                "/deliver_by",
                format!("must be an RFC 3339 time, got {}", kind(other)),
            ));
            None
        }
    };
    match (customer, lines) {
        (Some(customer), Some(lines)) if errors.is_empty() => Ok(OrderRequest {
            external_ref,
            brand,
            customer,
            lines,
            deliver_by,
        }),
        _ => Err(errors),
    }
}

/// The SHA-256 of `value`'s canonical form (object keys sorted, no
/// insignificant whitespace): two bodies that differ only in spacing or key
/// order mean the same request.
pub fn canonical_hash(value: &Value) -> String {
    let mut text = Vec::with_capacity(256);
    canonical(value, &mut text);
    format!("{:x}", Sha256::digest(&text))
}

fn canonical(value: &Value, out: &mut Vec<u8>) {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(&String, &Value)> = map.iter().collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            out.push(b'{');
            for (index, (key, inner)) in entries.into_iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                scalar(key, out);
                out.push(b':');
                canonical(inner, out);
            }
            out.push(b'}');
        }
        Value::Array(items) => {
            out.push(b'[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(b',');
                }
                canonical(item, out);
            }
            out.push(b']');
        }
        other => scalar(other, out),
    }
}

/// A string or a scalar as compact JSON.
fn scalar<T: serde::Serialize + ?Sized>(value: &T, out: &mut Vec<u8>) {
    // Writing JSON of a string or a scalar into memory cannot fail.
    let _ = serde_json::to_writer(&mut *out, value);
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn unknown_fields(
    object: &Map<String, Value>,
    at: &str,
    known: &[&str],
    errors: &mut Vec<FieldError>,
) {
    for key in object.keys() {
        if !known.contains(&key.as_str()) {
            errors.push(FieldError::new(
                format!("{at}/{}", escape(key)),
                format!("unknown field (expected {})", known.join(", ")),
            ));
        }
    }
}

/// A key as a JSON pointer segment (RFC 6901).
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

fn optional_text(
    object: &Map<String, Value>,
    key: &str,
    at: &str,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    match object.get(key) {
        None | Some(Value::Null) => None,
        Some(_) => required_text(object, key, at, errors),
    }
}

fn required_text(
    object: &Map<String, Value>,
    key: &str,
    at: &str,
    errors: &mut Vec<FieldError>,
) -> Option<String> {
    required(object, key, at, "a string", errors, |v| {
        v.as_str().map(str::to_string)
    })
}

fn number(
    object: &Map<String, Value>,
    key: &str,
    at: &str,
    errors: &mut Vec<FieldError>,
) -> Option<f64> {
    required(object, key, at, "a number", errors, Value::as_f64)
}

/// `object[key]` read by `read`, or a problem at `at/key`: missing, or not
/// `what`.
fn required<T>(
    object: &Map<String, Value>,
    key: &str,
    at: &str,
    what: &str,
    errors: &mut Vec<FieldError>,
    read: impl Fn(&Value) -> Option<T>,
) -> Option<T> {
    let pointer = || format!("{at}/{key}");
    match object.get(key) {
        None => {
            errors.push(FieldError::new(pointer(), "is required"));
            None
        }
        Some(value) => {
            let read = read(value);
            if read.is_none() {
                errors.push(FieldError::new(
                    pointer(),
                    format!("must be {what}, got {}", kind(value)),
                ));
            }
            read
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pointers(value: Value) -> Vec<String> {
        match read_order(&value) {
            Ok(_) => Vec::new(),
            Err(errors) => errors.into_iter().map(|e| e.pointer).collect(),
        }
    }

    #[test]
    fn a_good_order_reads_as_serde_would() {
        let value = json!({"external_ref": "pos-1", "customer": {"name": "Ada", "lat": 52.5, "lon": 13.4},
            "lines": [{"sku": "tee", "quantity": 2}], "deliver_by": "2026-12-03T18:00:00Z"});
        let read = read_order(&value).expect("valid");
        let derived: OrderRequest = serde_json::from_value(value).expect("serde");
        assert_eq!(read, derived);
    }

    #[test]
    fn every_field_at_fault_is_named() {
        let value = json!({"customer": {"name": 7, "lat": "north"},
            "lines": [{"sku": "tee", "quantity": -1}, {"sku": "mug", "quantity": 1.5}, "hat"],
            "colour": "red", "deliver_by": "tomorrow"});
        assert_eq!(
            pointers(value),
            [
                "/colour",
                "/customer/name",
                "/customer/lat",
                "/customer/lon",
                "/lines/0/quantity",
                "/lines/1/quantity",
                "/lines/2",
                "/deliver_by"
            ]
        );
    }

    #[test]
    fn a_positional_array_is_not_an_order() {
        let value = json!(["pos-1", null, {"name": "Ada", "lat": 52.5, "lon": 13.4}, [], null]);
        assert!(
            serde_json::from_value::<OrderRequest>(value.clone()).is_ok(),
            "serde takes it"
        );
        assert_eq!(pointers(value), [""]);
        assert_eq!(
            pointers(json!({"customer": ["Ada", 52.5, 13.4], "lines": [["tee", 1]]})),
            ["/customer", "/lines/0"]
        );
    }

    #[test]
    fn spacing_and_key_order_do_not_change_the_canonical_hash() {
        let a: Value =
            serde_json::from_str(r#"{"b": 1, "a": {"y": [1, 2], "x": "é"}}"#).expect("json");
        let b: Value =
            serde_json::from_str(r#"{"a":{"x":"\u00e9","y":[1,2]},"b":1}"#).expect("json");
        let c: Value = serde_json::from_str(r#"{"a":{"x":"é","y":[2,1]},"b":1}"#).expect("json");
        assert_eq!(canonical_hash(&a), canonical_hash(&b));
        assert_ne!(canonical_hash(&a), canonical_hash(&c));
    }

    /// Hashes stored with idempotency keys before an upgrade must match
    /// a retry after it: the canonical form (sorted keys, compact JSON,
    /// UTF-8 as is) and lowercase hex are fixed. The expected value is
    /// SHA-256 of `{"a":{"x":"é","y":[1,2.5,null,true]},"b":"q\""}`.
    #[test]
    fn the_canonical_hash_is_sha256_of_sorted_compact_json() {
        let value: Value =
            serde_json::from_str(r#"{"b": "q\"", "a": {"y": [1, 2.5, null, true], "x": "é"}}"#)
                .expect("json");
        assert_eq!(
            canonical_hash(&value),
            "742c9aa04ed55958488a1ea779718def2d22f40b01df520bb0ba4ac0d68326a3"
        );
    }
}
