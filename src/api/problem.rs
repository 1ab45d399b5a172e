//! API errors as `application/problem+json` (RFC 9457). A 5xx hides its
//! details from the client and logs them in the request's span.

use crate::domain::intake::FieldError;
use crate::runtime::intake::IntakeError;
use crate::runtime::orders::OrderError;
use crate::store::StoreError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The fields at fault, as JSON pointers into the request (or `line N` for imports).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldError>,
}

#[derive(Debug)]
pub struct ApiError {
    pub(super) status: StatusCode,
    kind: &'static str,
    detail: String,
    pub(super) errors: Vec<FieldError>,
    /// Seconds for a `Retry-After` header (429, 503).
    retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, kind: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            kind,
            detail: detail.into(),
            errors: Vec::new(),
            retry_after: None,
        }
    }

    /// Tells the client when to try again.
    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds.max(1));
        self
    }

    pub fn invalid(errors: Vec<FieldError>) -> Self {
        let detail = match errors.as_slice() {
            [one] => format!("{}: {}", one.pointer, one.reason),
            many => format!("{} fields are invalid", many.len()),
        };
        Self {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            kind: "validation",
            detail,
            errors,
            retry_after: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "bad-request", detail)
    }

    pub fn not_found(what: impl Into<String>) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("{} not found", what.into()),
        )
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", detail)
    }

    pub fn conflict(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", detail)
    }

    pub fn internal(err: impl std::fmt::Display) -> Self {
        tracing::error!(error = %err, "request failed");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "internal error; see the daemon's log",
        )
    }

    /// The field errors of a validation problem.
    pub fn field_errors(self) -> Option<Vec<FieldError>> {
        (!self.errors.is_empty()).then_some(self.errors)
    }

    pub fn with_errors(mut self, errors: Vec<FieldError>) -> Self {
        self.errors = errors;
        self
    }
}

/// Seconds a client is asked to wait while the database refuses writes.
const RETRY_UNAVAILABLE_S: u64 = 5;

/// Seconds a client is asked to wait after its transaction lost to another
/// (PostgreSQL aborted it: a deadlock or a serialization conflict).
const RETRY_CONTENTION_S: u64 = 1;

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        match err {
            // Not the request's fault, and nothing of it was stored.
            err if err.is_contention() => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database-contention",
                format!(
                    "the database aborted this request's transaction in favour of another ({err}); nothing was stored, try again"
                ),
            )
            .with_retry_after(RETRY_CONTENTION_S),
            StoreError::NotFound(what) => ApiError::not_found(what),
            StoreError::Conflict(detail) => ApiError::conflict(detail),
            StoreError::Locked(detail) => ApiError::new(StatusCode::LOCKED, "locked", detail),
            StoreError::Transition(err) => ApiError::conflict(err.to_string()),
            StoreError::Unavailable(reason) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database-unavailable",
                format!(
                    "the database refuses writes for now ({reason}); nothing was stored, try again later"
                ),
            )
            .with_retry_after(RETRY_UNAVAILABLE_S),
            other => ApiError::internal(other),
        }
    }
}

impl From<OrderError> for ApiError {
    fn from(err: OrderError) -> Self {
        match err {
            OrderError::Invalid(errors) => ApiError::invalid(errors),
            OrderError::KeyReused => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "idempotency-key-reused",
                "this Idempotency-Key was used with a different request body",
            ),
            OrderError::ImportRefused(_) => ApiError::invalid(Vec::new()),
            OrderError::Intake(err) => err.into(),
            OrderError::Store(err) => err.into(),
            OrderError::Render(err) => ApiError::internal(err),
        }
    }
}

impl From<IntakeError> for ApiError {
    fn from(err: IntakeError) -> Self {
        match err {
            IntakeError::KeyInFlight => ApiError::conflict(err.to_string()),
            IntakeError::Closed => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                err.to_string(),
            ),
            IntakeError::Failed(err) => match &*err {
                StoreError::Unavailable(reason) => StoreError::Unavailable(reason.clone()).into(),
                err if err.is_contention() => ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database-contention",
                    format!("the database aborted this request's transaction in favour of another ({err}); nothing was stored, try again"),
                )
                .with_retry_after(RETRY_CONTENTION_S),
                _ => ApiError::internal(err),
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let title = self
            .status
            .canonical_reason()
            .unwrap_or("error")
            .to_string();
        let body = Problem {
            kind: format!("https://fabflow.dev/problems/{}", self.kind),
            title,
            status: self.status.as_u16(),
            detail: self.detail,
            errors: self.errors,
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(seconds) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// Turns axum's own rejections (bad query strings, too-large bodies) into problems.
pub fn rejection(status: StatusCode, detail: String) -> ApiError {
    let kind = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "too-large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported-media-type",
        StatusCode::METHOD_NOT_ALLOWED => "method-not-allowed",
        StatusCode::REQUEST_TIMEOUT => "request-timeout",
        _ => "bad-request",
    };
    ApiError::new(status, kind, detail)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::borrow::Cow;

    /// A database error with a SQLSTATE, as PostgreSQL sends one.
    #[derive(Debug)]
    struct Sqlstate(&'static str);

    impl std::fmt::Display for Sqlstate {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "error {}", self.0)
        }
    }

    impl std::error::Error for Sqlstate {}

    impl sqlx::error::DatabaseError for Sqlstate {
        fn message(&self) -> &str {
            "deadlock detected"
        }
        fn code(&self) -> Option<Cow<'_, str>> {
            Some(Cow::Borrowed(self.0))
        }
        fn kind(&self) -> sqlx::error::ErrorKind {
            sqlx::error::ErrorKind::Other
        }
        fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
            self
        }
        fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
            self
        }
    }

    /// A transaction PostgreSQL aborted for another (deadlock,
    /// serialization) is the client's to retry: 503 with Retry-After, not
    /// a 500; any other database error stays a 500.
    #[test]
    fn a_transaction_lost_to_another_is_a_503_to_retry() {
        for code in ["40P01", "40001"] {
            let err = StoreError::Database(sqlx::Error::Database(Box::new(Sqlstate(code))));
            let api: ApiError = err.into();
            assert_eq!(api.status, StatusCode::SERVICE_UNAVAILABLE, "{code}");
            assert_eq!(api.retry_after, Some(RETRY_CONTENTION_S), "{code}");
            assert_eq!(api.kind, "database-contention");
        }
        let err = StoreError::Database(sqlx::Error::Database(Box::new(Sqlstate("23505"))));
        let api: ApiError = err.into();
        assert_eq!(api.status, StatusCode::INTERNAL_SERVER_ERROR);
    }
}
