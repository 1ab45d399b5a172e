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
use super::auth::{self, Caller, Role};
use super::problem::ApiError;
use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use rand::Rng;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

/// The session cookie's name.
pub const COOKIE: &str = "fabflow_session";
/// The header a cookie-authenticated request that changes state carries.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts (less if its token expires sooner).
pub const SESSION_TTL: Duration = Duration::from_secs(8 * 3600);
const MAX_SESSIONS: usize = 10_000;
/// The stream sends at most one change notice per this interval: a busy
/// floor becomes a steady refresh, not a flood.
const STREAM_COALESCE: Duration = Duration::from_millis(400);

/// One signed-in browser.
#[derive(Debug, Clone)]
struct Session {
    /// SHA-256 of the token it was opened with.
    token_hash: String,
    role: Role,
    csrf: String,
    /// Wall clock, Unix ms.
    expires_ms: i64,
}

/// Sessions in memory, by the SHA-256 of their cookie value: a restart
/// signs everyone out (they sign in again with their token).
#[derive(Debug, Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    fn insert(&self, id_hash: String, session: Session) {
        let mut by_id = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        if by_id.len() >= MAX_SESSIONS {
            let now = auth::wall_clock_ms();
            by_id.retain(|_, s| s.expires_ms > now);
            if by_id.len() >= MAX_SESSIONS {
                by_id.clear();
            }
        }
        by_id.insert(id_hash, session);
    }

    fn get(&self, id_hash: &str) -> Option<Session> {
        let mut by_id = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        let session = by_id.get(id_hash)?.clone();
        if session.expires_ms <= auth::wall_clock_ms() {
            by_id.remove(id_hash);
            return None;
        }
        Some(session)
    }

    fn remove(&self, id_hash: &str) {
        let mut by_id = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        by_id.remove(id_hash);
    }
}

fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The session cookie's value in `headers`, if any.
fn cookie_value(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.trim().to_string())
        .filter(|value| !value.is_empty())
}

/// Equal byte strings, compared in time independent of where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Why a request is not from the daemon's own origin, if it is not: its
/// `Origin` must name the host it was sent to, and `Sec-Fetch-Site`, when
/// the browser sends it, must be `same-origin`.
fn cross_origin(headers: &HeaderMap) -> Option<&'static str> {
    if let Some(site) = headers.get("sec-fetch-site")
        && site.as_bytes() != b"same-origin"
    {
        return Some("the request did not come from this site (Sec-Fetch-Site)");
    }
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Some("missing Origin header");
    };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    match (origin_host, host) {
        (Some(origin_host), Some(host)) if origin_host.eq_ignore_ascii_case(host) => None,
        _ => Some("the request's Origin is not this site"),
    }
}

/// The caller a session cookie names, for a request of `method` with
/// `headers`: None when there is no cookie at all (the caller gives the
/// bearer error instead).
pub(super) async fn caller_from_cookie(
    method: &Method,
    headers: &HeaderMap,
    ip: Option<std::net::IpAddr>,
    state: &ApiState,
) -> Option<Result<Caller, ApiError>> {
    let value = cookie_value(headers)?;
    let id_hash = auth::hash(&value);
    let Some(session) = state.sessions.get(&id_hash) else {
        return Some(Err(ApiError::unauthorized(
            "the session expired or is unknown; sign in again",
        )));
    };
    let safe = matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    if !safe {
        let csrf_ok = headers
            .get(CSRF_HEADER)
            .is_some_and(|sent| same(sent.as_bytes(), session.csrf.as_bytes()));
        if !csrf_ok {
            return Some(Err(ApiError::forbidden(
                "a change made with a session cookie needs the session's X-CSRF-Token header",
            )));
        }
        if let Some(reason) = cross_origin(headers) {
            return Some(Err(ApiError::forbidden(reason)));
        }
    }
    let role = session.role;
    let caller = auth::caller_by_hash(&session.token_hash, |found| found == role, ip, state).await;
    if caller.is_err() {
        state.sessions.remove(&id_hash);
    }
    Some(caller.map(|caller| {
        Caller {
            expires_ms: Some(
                caller
                    .expires_ms
                    .map_or(session.expires_ms, |at| at.min(session.expires_ms)),
            ),
            ..caller
        }
    }))
}

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

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_str(value).expect("test header"));
        }
        map
    }

    #[test]
    fn the_session_cookie_is_found_among_others() {
        let found = cookie_value(&headers(&[("cookie", "a=1; fabflow_session=abc ; b=2")]));
        assert_eq!(found.as_deref(), Some("abc"));
        assert_eq!(cookie_value(&headers(&[("cookie", "a=1")])), None);
        assert_eq!(
            cookie_value(&headers(&[("cookie", "fabflow_session=")])),
            None
        );
    }

    #[test]
    fn only_requests_from_the_same_origin_pass() {
        let ok = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
        ]);
        assert_eq!(cross_origin(&ok), None);
        let same_site = headers(&[
            ("host", "fab.example"),
            ("origin", "https://fab.example"),
            ("sec-fetch-site", "same-origin"),
        ]);
        assert_eq!(cross_origin(&same_site), None);
        let other = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://evil.example"),
        ]);
        assert!(cross_origin(&other).is_some());
        let no_origin = headers(&[("host", "127.0.0.1:8080")]);
        assert!(cross_origin(&no_origin).is_some());
        let cross_site = headers(&[
            ("host", "127.0.0.1:8080"),
            ("origin", "http://127.0.0.1:8080"),
            ("sec-fetch-site", "cross-site"),
        ]);
        assert!(cross_origin(&cross_site).is_some());
    }

    #[test]
    fn comparison_is_exact() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"ab"));
    }
}
