//! The dashboard's sign-in and live stream. An operator's or admin's token
//! becomes a session cookie (`HttpOnly`, `SameSite=Strict`, expiring), and
//! the page reads the same `/v1` API with it; `GET /dashboard/events` is a
//! server-sent event stream that says when something people watch changed.
//!
//! Invariant: a session holds the token's hash, never the token, and every
//! request through it looks the token up again as a bearer request would
//! (expiry, revocation within a second, the token's scope). A request that
//! changes state through a cookie must carry the session's CSRF token in
//! `X-CSRF-Token` and come from the daemon's own origin (`Origin` equal to
//! `Host`; `Sec-Fetch-Site`, when sent, `same-origin`).
//!
//! These routes are for the browser and stay out of `/openapi.json` on
//! purpose: they authenticate by cookie, not by the documented bearer
//! scheme, and a stream has no response schema to check.

use super::ApiState;
use super::auth::{self, COOKIE, Caller, Role, Session, cookie_value, cross_origin, random_hex};
use super::problem::ApiError;
use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

/// How long a session lasts (less if its token expires sooner).
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
/// The stream sends at most one change notice per this interval: a busy
/// floor becomes a steady refresh, not a flood.
const STREAM_COALESCE: Duration = Duration::from_millis(400);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SignIn {
    token: String,
}

/// What the page knows of its session.
#[derive(Debug, Serialize)]
pub struct SessionView {
    pub role: &'static str,
    /// `*` or the operator's factories, comma-separated.
    pub scope: String,
    /// Send it back as `X-CSRF-Token` with every change.
    pub csrf_token: String,
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// `POST /dashboard/session` with `{"token": "..."}`: an operator or admin
/// token opens a session; the answer sets the cookie and carries the CSRF
/// token. Unknown tokens count against the address like bearer guesses.
pub async fn sign_in(
    State(state): State<ApiState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    // Signing in from another site would sign the victim in as the attacker.
    if let Some(reason) = cross_origin(&headers) {
        return Err(ApiError::forbidden(reason));
    }
    super::body::require_json(&headers)?;
    let request: SignIn = serde_json::from_slice(&body).map_err(|_| {
        ApiError::invalid(vec![crate::domain::intake::FieldError::new(
            "/token",
            "required: an operator (ffo_) or admin (ffa_) token",
        )])
    })?;
    let token = request.token.trim();
    let caller = auth::caller_for(token, Some(peer.ip()), &state).await?;
    caller.require(&[Role::Operator, Role::Admin])?;
    let ttl_ms = i64::try_from(SESSION_TTL.as_millis()).unwrap_or(i64::MAX);
    let now = auth::wall_clock_ms();
    let expires_ms = caller
        .expires_ms
        .map_or(now + ttl_ms, |at| at.min(now + ttl_ms));
    let id = random_hex();
    let csrf = random_hex();
    state.sessions.insert(
        auth::hash(&id),
        Session {
            token_hash: auth::hash(token),
            role: caller.role,
            csrf: csrf.clone(),
            expires_ms,
        },
    );
    let max_age = ((expires_ms - now) / 1000).max(1);
    let cookie = format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}");
    let view = SessionView {
        role: caller.role.as_str(),
        scope: caller.scope.clone(),
        csrf_token: csrf,
        expires_at: super::views::rfc3339(expires_ms),
    };
    let mut response = (StatusCode::OK, Json(view)).into_response();
    let cookie = HeaderValue::from_str(&cookie).map_err(ApiError::internal)?;
    response.headers_mut().insert(header::SET_COOKIE, cookie);
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `GET /dashboard/session`: the current session (after a reload), or 401.
pub async fn current(
    State(state): State<ApiState>,
    headers: HeaderMap,
    caller: Caller,
) -> Result<Response, ApiError> {
    let session = cookie_value(&headers)
        .and_then(|value| state.sessions.get(&auth::hash(&value)))
        .ok_or_else(|| ApiError::unauthorized("not signed in"))?;
    let view = SessionView {
        role: caller.role.as_str(),
        scope: caller.scope.clone(),
        csrf_token: session.csrf,
        expires_at: super::views::rfc3339(session.expires_ms),
    };
    let mut response = Json(view).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// `DELETE /dashboard/session` (cookie, CSRF): signs out and clears the cookie.
pub async fn sign_out(
    State(state): State<ApiState>,
    headers: HeaderMap,
    _caller: Caller,
) -> Response {
    if let Some(value) = cookie_value(&headers) {
        state.sessions.remove(&auth::hash(&value));
    }
    let mut response = StatusCode::NO_CONTENT.into_response();
    response.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("fabflow_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    response
}

/// `GET /dashboard/events`: a server-sent event stream for operators and
/// admins. An event `changed` (data: a counter) is sent at once and then
/// whenever the runtime changed something people watch, at most one per
/// [`STREAM_COALESCE`]; the page then reads what it shows again. The stream
/// ends at shutdown, or when the caller's session or token expires (the
/// browser reconnects and meets a 401).
pub async fn events(
    State(state): State<ApiState>,
    caller: Caller,
) -> Result<Sse<impl futures::Stream<Item = Result<Event, Infallible>>>, ApiError> {
    caller.require(&[Role::Operator, Role::Admin])?;
    let changes = state.runtime.changes();
    let stop = state.streams_stop.clone();
    let expires_ms = caller.expires_ms;
    let stream = futures::stream::unfold((changes, true), move |(mut changes, first)| {
        let stop = stop.clone();
        async move {
            if !first {
                tokio::time::sleep(STREAM_COALESCE).await;
                let expired = || expires_ms.is_some_and(|at| at <= auth::wall_clock_ms());
                tokio::select! {
                    _ = stop.cancelled() => return None,
                    moved = changes.changed() => moved.ok()?,
                }
                if expired() {
                    return None;
                }
            }
            let count = *changes.borrow_and_update();
            let event = Event::default().event("changed").data(count.to_string());
            Some((Ok(event), (changes, false)))
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(Duration::from_secs(15))))
}
