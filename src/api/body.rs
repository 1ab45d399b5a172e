//! Reading a JSON request body: its Content-Type enforced (415), a syntax
//! error answered with its line and column (400), and a body of the wrong
//! shape answered 422 with the JSON pointer of the field at fault, like every
//! other validation error (axum's `Json` answers plain text, no pointer).
//!
//! Orders are read field by field instead (`order_json`), so that every field
//! at fault is answered at once; the smaller bodies read here stop at the
//! first, as serde's derive does.

use super::problem::{ApiError, rejection};
use crate::domain::intake::FieldError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A request body read as JSON into `T`.
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request(request: Request, state: &S) -> Result<Self, ApiError> {
        require_json(request.headers())?;
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|err| rejection(err.status(), err.body_text()))?;
        let value = parse_json(&bytes)?;
        typed(value).map(JsonBody)
    }
}

/// `value` read into `T`, or 422 naming the field at fault by its pointer.
pub fn typed<T: DeserializeOwned>(value: Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let pointer = pointer(err.path());
        let message = err.inner().to_string();
        ApiError::invalid(vec![field_error(pointer, message)])
    })
}

/// A JSON body's value after its Content-Type is checked.
pub fn json_value(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    require_json(headers)?;
    parse_json(body)
}

/// Refuses a body that does not say it is JSON (415).
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| v.trim().to_ascii_lowercase());
    match declared.as_deref() {
        Some("application/json") => Ok(()),
        Some(other) if other.starts_with("application/") && other.ends_with("+json") => Ok(()),
        other => Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported-media-type",
            format!(
                "Content-Type must be application/json, got {}",
                other.map_or("none".to_string(), |v| format!("{v:?}"))
            ),
        )),
    }
}

/// The body as JSON; a syntax error is 400 with its line and column.
pub fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|err| {
        ApiError::bad_request(format!("request body is not JSON: {err}")).with_errors(vec![
            FieldError::new(
                format!("line {}, column {}", err.line(), err.column()),
                err.to_string(),
            ),
        ])
    })
}

/// serde names a missing or unknown field in its message, at the pointer of
/// the object holding it; the pointer then goes down to the field itself.
fn field_error(pointer: String, message: String) -> FieldError {
    let named = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.split('`').next())
            .map(|field| {
                let at = format!("/{}", escape(field));
                if pointer.ends_with(&at) {
                    pointer.clone()
                } else {
                    format!("{pointer}{at}")
                }
            })
    };
    if let Some(at) = named("missing field `") {
        FieldError::new(at, "is required")
    } else if let Some(at) = named("unknown field `") {
        let expected = message.split_once(", ").map_or("", |(_, rest)| rest);
        FieldError::new(at, format!("is not a field here ({expected})"))
    } else {
        FieldError::new(pointer, message)
    }
}

/// A serde path as a JSON pointer (RFC 6901).
fn pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("/{index}")),
            Segment::Map { key } => out.push_str(&format!("/{}", escape(key))),
            Segment::Enum { variant } => out.push_str(&format!("/{}", escape(variant))),
            Segment::Unknown => {}
        }
    }
    out
}

fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        lines: Vec<Line>,
        reason: Option<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Line {
        line: u32,
        quantity: u32,
    }

    fn error_of(value: Value) -> (String, String) {
        let err = typed::<Body>(value).expect_err("refused");
        assert_eq!(err.status, StatusCode::UNPROCESSABLE_ENTITY);
        let [one] = err.errors.as_slice() else {
            panic!("one field error, got {:?}", err.errors)
        };
        (one.pointer.clone(), one.reason.clone())
    }

    #[test]
    fn a_wrong_type_is_answered_at_its_pointer() {
        let (at, reason) = error_of(
            serde_json::json!({"lines": [{"line": 0, "quantity": 1}, {"line": 1, "quantity": -1}]}),
        );
        assert_eq!(at, "/lines/1/quantity");
        assert!(reason.contains("-1"), "{reason}");
        let (at, _) = error_of(serde_json::json!({"lines": [{"line": 1.5, "quantity": 1}]}));
        assert_eq!(at, "/lines/0/line");
        let (at, _) = error_of(serde_json::json!({"lines": "all"}));
        assert_eq!(at, "/lines");
    }

    #[test]
    fn missing_and_unknown_fields_point_at_the_field() {
        let (at, reason) = error_of(serde_json::json!({"lines": [{"line": 0}]}));
        assert_eq!(
            (at.as_str(), reason.as_str()),
            ("/lines/0/quantity", "is required")
        );
        let (at, reason) = error_of(serde_json::json!({"lines": [], "a/b": 1}));
        assert_eq!(at, "/a~1b");
        assert!(reason.contains("expected"), "{reason}");
        let (at, _) = error_of(serde_json::json!({}));
        assert_eq!(at, "/lines");
    }

    #[test]
    fn only_json_is_taken() {
        let mut headers = HeaderMap::new();
        assert_eq!(
            json_value(&headers, b"{}").expect_err("no type").status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        headers.insert(header::CONTENT_TYPE, "text/plain".parse().expect("header"));
        assert_eq!(
            json_value(&headers, b"{}").expect_err("text").status,
            StatusCode::UNSUPPORTED_MEDIA_TYPE
        );
        headers.insert(
            header::CONTENT_TYPE,
            "application/merge-patch+json; charset=utf-8"
                .parse()
                .expect("header"),
        );
        assert!(json_value(&headers, b"{}").is_ok());
        let err = json_value(&headers, b"{\"a\":").expect_err("syntax");
        assert_eq!(err.status, StatusCode::BAD_REQUEST);
        assert!(err.errors[0].pointer.starts_with("line 1, column"));
    }
}
