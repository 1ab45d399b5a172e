//! Bearer tokens: random, prefixed by role (`ffb_`, `ffo_`, `ffc_`, `ffa_`),
//! stored only as SHA-256 hashes, never logged. A caller carries its role,
//! scope (brand id, courier id, factory ids or `*`) and the token's public id.
//!
//! Expiry is on the wall clock (a token's life does not speed up with
//! `time_scale`). A revoked token stops working on every daemon within about
//! a second: each polls the database's token epoch and drops its cache when
//! it moves.

use super::ApiState;
use super::problem::ApiError;
use crate::store::{Store, StoreError, TokenRecord};
use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, header};
use rand::Rng;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Brand,
    Operator,
    Courier,
    Admin,
}

impl Role {
    pub fn prefix(self) -> &'static str {
        match self {
            Role::Brand => "ffb_",
            Role::Operator => "ffo_",
            Role::Courier => "ffc_",
            Role::Admin => "ffa_",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Brand => "brand",
            Role::Operator => "operator",
            Role::Courier => "courier",
            Role::Admin => "admin",
        }
    }

    pub fn parse(text: &str) -> Option<Role> {
        [Role::Brand, Role::Operator, Role::Courier, Role::Admin]
            .into_iter()
            .find(|role| role.as_str() == text)
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub role: Role,
    pub scope: String,
    /// The token's public id (for the audit trail).
    pub token_id: String,
    /// When the token stops working (wall clock, Unix ms), if ever.
    pub expires_ms: Option<i64>,
}

impl Caller {
    /// Who this caller is, for the audit trail: `operator:north (token 1a2b3c4d5e6f)`.
    pub fn actor(&self) -> String {
        format!(
            "{}:{} (token {})",
            self.role.as_str(),
            self.scope,
            self.token_id
        )
    }

    /// The brand whose orders this caller may see: Some(brand) for brands, None for all.
    pub fn brand_scope(&self) -> Option<&str> {
        (self.role == Role::Brand).then_some(self.scope.as_str())
    }

    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "a {} token cannot do this (needs {})",
                self.role.as_str(),
                roles
                    .iter()
                    .map(|r| r.as_str())
                    .collect::<Vec<_>>()
                    .join(" or ")
            )))
        }
    }

    /// Whether an operator's scope covers a factory.
    pub fn covers_factory(&self, factory: &str) -> bool {
        match self.role {
            Role::Admin => true,
            Role::Operator => self.scope == "*" || self.scope.split(',').any(|f| f == factory),
            _ => false,
        }
    }
}

pub fn hash(token: &str) -> String {
    // One formatting call for the digest (every request hashes its token).
    format!("{:x}", Sha256::digest(token.as_bytes()))
}

/// Creates a token for `role` and `scope` that never expires, stores its
/// hash, returns the token (shown once).
pub async fn issue(
    store: &Store,
    role: Role,
    scope: &str,
    name: &str,
    now: i64,
) -> Result<String, StoreError> {
    issue_expiring(store, role, scope, name, None, "cli", now)
        .await
        .map(|(token, _)| token)
}

/// Creates a token that stops working at `expires_ms` (wall clock, Unix
/// ms), if given; its creation is audited as `actor`'s. Returns the token
/// (shown once) and its public id.
pub async fn issue_expiring(
    store: &Store,
    role: Role,
    scope: &str,
    name: &str,
    expires_ms: Option<i64>,
    actor: &str,
    now: i64,
) -> Result<(String, String), StoreError> {
    let mut bytes = [0u8; 24];
    rand::rng().fill(&mut bytes);
    let body: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    let token = format!("{}{body}", role.prefix());
    let record = TokenRecord {
        role: role.as_str().into(),
        scope: scope.into(),
        name: name.into(),
    };
    let id = store
        .insert_token(&hash(&token), &record, expires_ms, actor, now)
        .await?;
    Ok((token, id))
}

/// Why `scope` is not a scope of `role` in this network, if it is not:
/// brands are named by id (letters, digits, `-`, `_`, `.`); operators by
/// configured factory ids (comma-separated) or `*`; couriers by a configured
/// courier id; admins by `*`. A typo would give a token that sees nothing.
pub fn scope_problem(role: Role, scope: &str, config: &crate::config::Config) -> Option<String> {
    let factories: Vec<&str> = config.factories.iter().map(|f| f.id.as_str()).collect();
    let couriers: Vec<&str> = config.couriers.iter().map(|c| c.id.as_str()).collect();
    match role {
        Role::Admin => (scope != "*").then(|| format!("an admin's scope is `*`, got {scope:?}")),
        Role::Brand => {
            let valid = !scope.is_empty()
                && scope.len() <= 64
                && scope
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
            (!valid).then(|| {
                format!("a brand id is 1..=64 letters, digits, `-`, `_` or `.`, got {scope:?}")
            })
        }
        Role::Operator if scope == "*" => None,
        Role::Operator => {
            let unknown: Vec<&str> = scope
                .split(',')
                .map(str::trim)
                .filter(|factory| !factories.contains(factory))
                .collect();
            (!unknown.is_empty()).then(|| {
                format!(
                    "unknown factories {unknown:?} (configured: {}; or `*`)",
                    factories.join(", ")
                )
            })
        }
        Role::Courier => (!couriers.contains(&scope)).then(|| {
            format!(
                "unknown courier {scope:?} (configured: {})",
                couriers.join(", ")
            )
        }),
    }
}

/// Milliseconds since the Unix epoch on the wall clock (token expiry).
pub fn wall_clock_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64)
}

/// Known tokens kept in memory while in use (a lookup per request is the
/// largest cost of intake otherwise; an entry lapses a minute after its last
/// use), and failed authentications counted per client address: past
/// [`MAX_FAILURES`] unknown tokens in a minute, that address gets 429 with
/// `Retry-After` for every unknown token until the minute is over. A valid
/// token is never refused for its address's failures: it is still looked up.
#[derive(Debug, Default)]
pub struct Guard {
    known: Mutex<HashMap<String, (Caller, Instant)>>,
    failures: Mutex<HashMap<IpAddr, (u32, Instant)>>,
    /// The database's token epoch last seen, and when it was read.
    epoch: Mutex<Option<(i64, Instant)>>,
}

/// How often the token epoch is read (revocations take effect within it).
const EPOCH_POLL: Duration = Duration::from_secs(1);

const TOKEN_TTL: Duration = Duration::from_secs(60);
const FAILURE_WINDOW: Duration = Duration::from_secs(60);
pub const MAX_FAILURES: u32 = 20;
const MAX_ENTRIES: usize = 10_000;

impl Guard {
    /// A token known and used within the last minute; its entry is renewed.
    fn cached(&self, hash: &str) -> Option<Caller> {
        self.cached_at(hash, Instant::now())
    }

    fn cached_at(&self, hash: &str, now: Instant) -> Option<Caller> {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        let (caller, used) = known.get_mut(hash)?;
        if now.saturating_duration_since(*used) >= TOKEN_TTL {
            return None;
        }
        if caller.expires_ms.is_some_and(|at| at <= wall_clock_ms()) {
            known.remove(hash);
            return None;
        }
        *used = now;
        Some(caller.clone())
    }

    /// Drops every cached token if the database's token epoch moved (a
    /// token was revoked) since it was last read, at most every EPOCH_POLL.
    async fn follow_revocations(&self, store: &Store) -> Result<(), StoreError> {
        let due = {
            let epoch = self.epoch.lock().unwrap_or_else(|p| p.into_inner());
            epoch.is_none_or(|(_, read)| read.elapsed() >= EPOCH_POLL)
        };
        if !due {
            return Ok(());
        }
        let current = store.token_epoch().await?;
        let mut epoch = self.epoch.lock().unwrap_or_else(|p| p.into_inner());
        if epoch.is_some_and(|(seen, _)| seen != current) {
            self.known.lock().unwrap_or_else(|p| p.into_inner()).clear();
        }
        *epoch = Some((current, Instant::now()));
        Ok(())
    }

    fn remember(&self, hash: String, caller: Caller) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        if known.len() >= MAX_ENTRIES {
            known.retain(|_, (_, at)| at.elapsed() < TOKEN_TTL);
            if known.len() >= MAX_ENTRIES {
                known.clear();
            }
        }
        known.insert(hash, (caller, Instant::now()));
    }

    /// When `ip` may guess again, if it is held back now.
    fn held_back(&self, ip: Option<IpAddr>) -> Option<Duration> {
        let ip = ip?;
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let (count, since) = failures.get(&ip)?;
        (*count >= MAX_FAILURES)
            .then(|| FAILURE_WINDOW.checked_sub(since.elapsed()))
            .flatten()
    }

    fn failed(&self, ip: Option<IpAddr>) {
        metrics::counter!("fabflow_auth_failures_total").increment(1);
        let Some(ip) = ip else { return };
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        if failures.len() >= MAX_ENTRIES {
            failures.retain(|_, (_, since)| since.elapsed() < FAILURE_WINDOW);
            if failures.len() >= MAX_ENTRIES {
                // Guesses from more addresses than the table holds within a
                // minute: memory stays bounded, the count starts over.
                failures.clear();
            }
        }
        let entry = failures.entry(ip).or_insert((0, Instant::now()));
        if entry.1.elapsed() >= FAILURE_WINDOW {
            *entry = (0, Instant::now());
        }
        entry.0 += 1;
    }
}

impl FromRequestParts<ApiState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        // No token is no guess: it is refused but not counted. Without a
        // bearer header, a dashboard session cookie may name the caller.
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            if let Some(caller) = caller_from_cookie(&parts.method, &parts.headers, ip, state).await
            {
                return caller;
            }
            return Err(ApiError::unauthorized(
                "missing Authorization: Bearer <token>",
            ));
        };
        // The scheme is case-insensitive (RFC 9110 section 11.1).
        let Some(token) = value
            .to_str()
            .ok()
            .and_then(|v| v.trim_start().split_once(' '))
            .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
            .map(|(_, token)| token.trim())
            .filter(|token| !token.is_empty())
        else {
            return Err(ApiError::unauthorized(
                "Authorization must be `Bearer <token>`",
            ));
        };
        caller_for(token, ip, state).await
    }
}

/// A caller named by a bearer token in the `Authorization` header or, when
/// there is none, by a `token` query parameter: for the feed URLs that
/// calendar and map apps subscribe to, which cannot send headers. Counted
/// and held back like header tokens; the request path is logged without its
/// query, so the token is never logged.
#[derive(Debug, Clone)]
pub struct FeedCaller(pub Caller);

impl FromRequestParts<ApiState> for FeedCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        if parts.headers.contains_key(header::AUTHORIZATION) {
            return Caller::from_request_parts(parts, state)
                .await
                .map(FeedCaller);
        }
        let query = axum::extract::Query::<HashMap<String, String>>::try_from_uri(&parts.uri)
            .map_err(|err| ApiError::bad_request(format!("query string: {err}")))?;
        let Some(token) = query
            .0
            .get("token")
            .map(|t| t.trim())
            .filter(|t| !t.is_empty())
        else {
            // The dashboard reads feeds with its session cookie.
            if let Some(caller) =
                caller_from_cookie(&parts.method, &parts.headers, None, state).await
            {
                return caller.map(FeedCaller);
            }
            return Err(ApiError::unauthorized(
                "missing Authorization: Bearer <token> (or ?token=<token> on a feed URL)",
            ));
        };
        let ip = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0.ip());
        caller_for(token, ip, state).await.map(FeedCaller)
    }
}

/// The caller `token` names, counting an unknown token against `ip`.
pub(super) async fn caller_for(
    token: &str,
    ip: Option<IpAddr>,
    state: &ApiState,
) -> Result<Caller, ApiError> {
    if !well_formed(token) {
        // Not a token fabflow could have issued: refused without asking
        // the database, and counted as a guess.
        return Err(refusal(&state.guard, ip));
    }
    caller_by_hash(
        &hash(token),
        |role| token.starts_with(role.prefix()),
        ip,
        state,
    )
    .await
}

/// Hex digits after a role's prefix in an issued token.
const TOKEN_HEX: usize = 48;

/// Whether `token` has the shape of an issued token: a role's prefix and
/// 48 lower-case hex digits.
fn well_formed(token: &str) -> bool {
    let Some(body) = [Role::Brand, Role::Operator, Role::Courier, Role::Admin]
        .iter()
        .find_map(|role| token.strip_prefix(role.prefix()))
    else {
        return false;
    };
    body.len() == TOKEN_HEX && body.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// The answer to an unknown token from `ip`: 429 with Retry-After while the
/// address is held back, else 401 (counted).
fn refusal(guard: &Guard, ip: Option<IpAddr>) -> ApiError {
    match guard.held_back(ip) {
        Some(wait) => ApiError::new(
            axum::http::StatusCode::TOO_MANY_REQUESTS,
            "too-many-failed-authentications",
            format!(
                "more than {MAX_FAILURES} failed authentications in a minute from this address; try again in {} s",
                wait.as_secs().max(1)
            ),
        )
        .with_retry_after(wait.as_secs_f64().ceil() as u64),
        None => {
            guard.failed(ip);
            ApiError::unauthorized("unknown token")
        }
    }
}

/// The caller whose token hashes to `hashed`, if its stored role passes
/// `role_ok` (a token's prefix must match its role), counting an unknown
/// token against `ip`.
pub(super) async fn caller_by_hash(
    hashed: &str,
    role_ok: impl Fn(Role) -> bool,
    ip: Option<IpAddr>,
    state: &ApiState,
) -> Result<Caller, ApiError> {
    let guard = &state.guard;
    {
        let hashed = hashed.to_string();
        guard
            .follow_revocations(&state.runtime.store)
            .await
            .map_err(ApiError::internal)?;
        if let Some(caller) = guard.cached(&hashed) {
            return Ok(caller);
        }
        // A held-back address still gets its valid tokens through; every
        // unknown one is answered 429 (a guess learns nothing either way).
        let record = state
            .runtime
            .store
            .find_token(&hashed, wall_clock_ms())
            .await
            .map_err(ApiError::internal)?;
        let caller = record.and_then(|found| {
            let role = Role::parse(&found.record.role).filter(|role| role_ok(*role))?;
            Some(Caller {
                role,
                scope: found.record.scope,
                token_id: found.id,
                expires_ms: found.expires_ms,
            })
        });
        match caller {
            Some(caller) => {
                guard.remember(hashed, caller.clone());
                Ok(caller)
            }
            None => Err(refusal(guard, ip)),
        }
    }
}

// ---- dashboard sessions --------------------------------------------------
//
// A dashboard session (see `api::session` for sign-in and the stream) names
// its caller by a cookie when a request has no bearer header. The session
// holds the token's hash, never the token, and every request through it
// looks the token up again by that hash. A request that changes state
// through a cookie must carry the session's CSRF token in `X-CSRF-Token`
// and come from the daemon's own origin.

/// The session cookie's name.
pub const COOKIE: &str = "fabflow_session";
/// The header a cookie-authenticated request that changes state carries.
pub const CSRF_HEADER: &str = "x-csrf-token";
const MAX_SESSIONS: usize = 10_000;

/// One signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// SHA-256 of the token it was opened with.
    pub token_hash: String,
    pub role: Role,
    pub csrf: String,
    /// Wall clock, Unix ms.
    pub expires_ms: i64,
}

/// Sessions in memory, by the SHA-256 of their cookie value: a restart
/// signs everyone out (they sign in again with their token).
#[derive(Debug, Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    pub fn insert(&self, id_hash: String, session: Session) {
        let mut by_id = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        if by_id.len() >= MAX_SESSIONS {
            let now = wall_clock_ms();
            by_id.retain(|_, s| s.expires_ms > now);
            if by_id.len() >= MAX_SESSIONS {
                by_id.clear();
            }
        }
        by_id.insert(id_hash, session);
    }

    pub fn get(&self, id_hash: &str) -> Option<Session> {
        let mut by_id = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        let session = by_id.get(id_hash)?.clone();
        if session.expires_ms <= wall_clock_ms() {
            by_id.remove(id_hash);
            return None;
        }
        Some(session)
    }

    pub fn remove(&self, id_hash: &str) {
        let mut by_id = self.by_id.lock().unwrap_or_else(|p| p.into_inner());
        by_id.remove(id_hash);
    }
}

pub fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The session cookie's value in `headers`, if any.
pub fn cookie_value(headers: &HeaderMap) -> Option<String> {
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
pub fn cross_origin(headers: &HeaderMap) -> Option<&'static str> {
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
async fn caller_from_cookie(
    method: &Method,
    headers: &HeaderMap,
    ip: Option<std::net::IpAddr>,
    state: &ApiState,
) -> Option<Result<Caller, ApiError>> {
    let value = cookie_value(headers)?;
    let id_hash = hash(&value);
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
    let caller = caller_by_hash(&session.token_hash, |found| found == role, ip, state).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Tokens are stored as this hash: it must read as it always did
    /// (SHA-256, lowercase hex), or stored tokens stop matching.
    #[test]
    fn a_token_hashes_to_lowercase_hex_sha256() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(hash("ffb_0").len(), 64);
    }

    #[test]
    fn a_token_in_constant_use_stays_cached_and_an_unused_one_lapses() {
        let guard = Guard::default();
        let caller = Caller {
            role: Role::Brand,
            scope: "acme".into(),
            token_id: "0123456789ab".into(),
            expires_ms: None,
        };
        guard.remember("used".into(), caller.clone());
        guard.remember("idle".into(), caller);
        let start = Instant::now();
        for minute in 1..=5u64 {
            // Used every 50 s: never lapses.
            let at = start + Duration::from_secs(50 * minute);
            assert!(guard.cached_at("used", at).is_some(), "use {minute}");
        }
        assert!(guard.cached_at("idle", start + TOKEN_TTL).is_none());
        assert!(guard.cached_at("unknown", start).is_none());
    }

    #[test]
    fn hashes_are_hex_sha256_and_scopes_work() {
        assert_eq!(
            hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        let operator = Caller {
            role: Role::Operator,
            scope: "north,south".into(),
            token_id: "0123456789ab".into(),
            expires_ms: None,
        };
        assert!(operator.covers_factory("north"));
        assert!(!operator.covers_factory("centre"));
        assert_eq!(operator.brand_scope(), None);
        let brand = Caller {
            role: Role::Brand,
            scope: "acme".into(),
            token_id: "0123456789ab".into(),
            expires_ms: None,
        };
        assert_eq!(brand.brand_scope(), Some("acme"));
        assert!(brand.require(&[Role::Admin]).is_err());
        assert!(!brand.covers_factory("north"));
        assert_eq!(Role::parse("courier"), Some(Role::Courier));
    }

    #[test]
    fn only_tokens_shaped_like_issued_ones_are_looked_up() {
        let hex = "0123456789abcdef".repeat(3);
        for role in [Role::Brand, Role::Operator, Role::Courier, Role::Admin] {
            assert!(well_formed(&format!("{}{hex}", role.prefix())), "{role:?}");
        }
        for bad in [
            String::new(),
            "ffb_nope".to_string(),
            format!("ffx_{hex}"),
            format!("ffb_{}", &hex[1..]),
            format!("ffb_{hex}0"),
            format!("ffb_{}", hex.to_uppercase()),
            format!("ffb_{}\u{e9}", &hex[2..]),
            format!("ffb_{hex}").replace('a', "g"),
        ] {
            assert!(!well_formed(&bad), "{bad:?}");
        }
    }
}

#[cfg(test)]
mod session_tests {
    use super::*;
    use axum::http::HeaderValue;

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
