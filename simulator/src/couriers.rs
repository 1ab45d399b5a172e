//! Simulated couriers: one task per courier polls the daemon's clock
//! (`GET /healthz`) and its schedule (`GET /v1/couriers/{id}/schedule`), and
//! confirms each due stop (`POST /v1/handoffs/{id}/confirm`) as a rider would,
//! with the stop's proof-of-handoff code when [`CodeSource`] is given: the
//! code a factory operator (pickup) or a customer (drop-off) would hand
//! over, read as they would (`GET /v1/handoffs/{id}` with their token).
//!
//! Couriers misbehave by seeded chance ([`CourierFaults`], per courier):
//! they ride slower than planned (`speed`), run late at a stop, find a
//! customer not home (`POST /v1/handoffs/{id}/fail`), enter a wrong code
//! once before the right one, or drop out for the day
//! (`POST /v1/couriers/{id}/duty`). Every chance is decided from the seed,
//! the courier and the stop id, so the same seed misbehaves at the same
//! stops however the polls fall.
//!
//! Invariants: within a wave a courier confirms stops in `seq` order and never
//! passes a planned stop that is not yet due (its ETA is later than the
//! daemon's `now`, or the courier has not yet arrived: see [`CourierFaults`]). A stop it has passed (missed on purpose, answered 409, or
//! refused with another 4xx) is never tried again. Transport errors and 5xx
//! replies are counted and retried on the next poll. Nothing here panics on
//! what the daemon sends.
//!
//! Architecture invariant: couriers know only the wire (HTTP JSON and RFC 3339
//! timestamps, parsed here), never the daemon's types or clock.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;
use serde::de::{self, Deserializer};
use thiserror::Error;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

/// A request that takes longer than this counts as a transport error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Polls are never closer together than this, whatever the config says.
const MIN_POLL_INTERVAL: Duration = Duration::from_millis(1);
/// At most this many bytes of an error body go into a log line.
const BODY_EXCERPT: usize = 200;

/// One courier: its id (as in the daemon's network config) and its bearer token.
#[derive(Clone, PartialEq, Eq)]
pub struct CourierSpec {
    pub id: String,
    pub token: String,
}

impl fmt::Debug for CourierSpec {
    // The token is a credential: keep it out of logs and panics.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CourierSpec")
            .field("id", &self.id)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// Who hands couriers the stops' codes: an operator token that sees every
/// factory's pickups, and the tokens of the brands whose customers receive
/// the drop-offs (a stop's code is read with each in turn until one sees it).
#[derive(Clone, PartialEq, Eq)]
pub struct CodeSource {
    pub operator_token: String,
    pub brand_tokens: Vec<String>,
}

impl CodeSource {
    /// Codes handed over by one brand's customers and the operator.
    pub fn one_brand(operator_token: impl Into<String>, brand_token: impl Into<String>) -> Self {
        CodeSource {
            operator_token: operator_token.into(),
            brand_tokens: vec![brand_token.into()],
        }
    }
}

impl fmt::Debug for CodeSource {
    // Tokens are credentials: keep them out of logs and panics.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CodeSource { <redacted> }")
    }
}

/// What [`run`] simulates.
#[derive(Debug, Clone)]
pub struct CourierConfig {
    /// API base URL, e.g. `http://127.0.0.1:8080`.
    pub api_base: String,
    pub couriers: Vec<CourierSpec>,
    /// Real time between the end of one poll and the start of the next
    /// (at least 1 ms).
    pub poll_interval: Duration,
    /// Probability (0..=1) that a due stop is skipped and never confirmed.
    /// Decided once per stop from `seed` and the stop id, so the same seed
    /// misses the same stops however the polls fall.
    pub miss_rate: f64,
    pub seed: u64,
    /// Where couriers get each stop's code; None confirms without one (a
    /// daemon that requires codes then refuses, and the stop is passed).
    pub codes: Option<CodeSource>,
    /// How every courier misbehaves, unless `per_courier` says otherwise.
    pub faults: CourierFaults,
    /// Faults of single couriers, by courier id (replacing `faults`).
    pub per_courier: BTreeMap<String, CourierFaults>,
    /// Customers asking for returns and the operator inspecting them
    /// (needs `codes`: the brand and operator tokens).
    pub returns: crate::returns::ReturnsSpec,
}

/// How one courier misbehaves. Rates are probabilities (0..=1) decided
/// once per stop from the seed, the courier id and the stop id.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CourierFaults {
    /// Riding speed over the plan's (0.05..=20): a leg between two stops
    /// takes its planned time divided by this, counted from when the
    /// courier confirmed the stop before. A courier never arrives before a
    /// stop's ETA, so above 1 it only catches up after delays.
    pub speed: f64,
    /// Chance that the courier arrives late at a stop, by 1 to
    /// `late_max_minutes` (simulated) minutes more.
    pub late_rate: f64,
    pub late_max_minutes: f64,
    /// Chance that a customer is not home at a stop at the customer (a
    /// delivery's drop-off, a return's pickup): the courier reports a failed
    /// attempt `not_home` instead of confirming.
    pub not_home_rate: f64,
    /// Chance that the courier first enters a wrong code (refused, 422),
    /// then the right one.
    pub wrong_code_rate: f64,
    /// Chance, after each confirmed stop, that the courier drops out for the
    /// day: it goes off duty (its pickups not yet made are planned with
    /// others), hands over the parcels it carries (the drop-offs the daemon
    /// leaves with it), makes no new pickup, and comes back on duty at the
    /// next midnight (UTC) of the daemon's clock.
    pub dropout_rate: f64,
}

impl Default for CourierFaults {
    /// A courier that keeps to the plan.
    fn default() -> CourierFaults {
        CourierFaults {
            speed: 1.0,
            late_rate: 0.0,
            late_max_minutes: 30.0,
            not_home_rate: 0.0,
            wrong_code_rate: 0.0,
            dropout_rate: 0.0,
        }
    }
}

impl CourierFaults {
    /// Every field out of range, as `field: must be ..., got ...`.
    pub fn problems(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let rates = [
            ("late_rate", self.late_rate),
            ("not_home_rate", self.not_home_rate),
            ("wrong_code_rate", self.wrong_code_rate),
            ("dropout_rate", self.dropout_rate),
        ];
        for (name, value) in rates {
            if !(0.0..=1.0).contains(&value) {
                problems.push(format!("{name}: must be 0..=1, got {value}"));
            }
        }
        if !(0.05..=20.0).contains(&self.speed) {
            problems.push(format!("speed: must be 0.05..=20, got {}", self.speed));
        }
        if !(1.0..=600.0).contains(&self.late_max_minutes) {
            problems.push(format!(
                "late_max_minutes: must be 1..=600, got {}",
                self.late_max_minutes
            ));
        }
        problems
    }

    /// Sets one field by its name (as in [`CourierFaults::problems`]).
    pub fn set(&mut self, field: &str, value: f64) -> Result<(), String> {
        let slot = match field {
            "speed" => &mut self.speed,
            "late_rate" => &mut self.late_rate,
            "late_max_minutes" => &mut self.late_max_minutes,
            "not_home_rate" => &mut self.not_home_rate,
            "wrong_code_rate" => &mut self.wrong_code_rate,
            "dropout_rate" => &mut self.dropout_rate,
            other => {
                return Err(format!(
                    "unknown courier fault `{other}` (speed, late_rate, late_max_minutes, \
                     not_home_rate, wrong_code_rate, dropout_rate)"
                ));
            }
        };
        *slot = value;
        Ok(())
    }

    /// Out-of-range values pulled into range (NaN rates count as 0, a NaN
    /// speed as 1), so that a library caller cannot make a courier panic.
    fn sanitized(self) -> CourierFaults {
        let rate = |value: f64| {
            if value.is_nan() {
                0.0
            } else {
                value.clamp(0.0, 1.0)
            }
        };
        let within = |value: f64, low: f64, high: f64, fallback: f64| {
            if value.is_nan() {
                fallback
            } else {
                value.clamp(low, high)
            }
        };
        CourierFaults {
            speed: within(self.speed, 0.05, 20.0, 1.0),
            late_rate: rate(self.late_rate),
            late_max_minutes: within(self.late_max_minutes, 1.0, 600.0, 30.0),
            not_home_rate: rate(self.not_home_rate),
            wrong_code_rate: rate(self.wrong_code_rate),
            dropout_rate: rate(self.dropout_rate),
        }
    }
}

impl CourierConfig {
    /// Defaults: poll every 500 ms, miss nothing, seed 1.
    pub fn new(api_base: impl Into<String>, couriers: Vec<CourierSpec>) -> CourierConfig {
        CourierConfig {
            api_base: api_base.into(),
            couriers,
            poll_interval: Duration::from_millis(500),
            miss_rate: 0.0,
            seed: 1,
            codes: None,
            faults: CourierFaults::default(),
            per_courier: BTreeMap::new(),
            returns: crate::returns::ReturnsSpec::default(),
        }
    }
}

/// One courier's counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CourierCounts {
    /// Stops answered 2xx.
    pub confirmed: usize,
    /// Stops answered 409 (already confirmed, or the order cannot move yet);
    /// each is then passed, never retried.
    pub conflicts: usize,
    /// Failed polls or confirms: transport errors, non-409 error statuses and
    /// replies that could not be read. One per failed request.
    pub errors: usize,
    /// Stops skipped on purpose (`miss_rate`).
    pub missed: usize,
    /// Stops reached late on purpose (`late_rate`), confirmed or not.
    pub late: usize,
    /// Failed attempts reported (`not_home_rate`) and accepted.
    pub not_home: usize,
    /// Wrong codes entered on purpose (`wrong_code_rate`) and refused.
    pub wrong_codes: usize,
    /// Times the courier went off duty (`dropout_rate`).
    pub dropouts: usize,
}

impl CourierCounts {
    fn add(&mut self, other: &CourierCounts) {
        self.confirmed += other.confirmed;
        self.conflicts += other.conflicts;
        self.errors += other.errors;
        self.missed += other.missed;
        self.late += other.late;
        self.not_home += other.not_home;
        self.wrong_codes += other.wrong_codes;
        self.dropouts += other.dropouts;
    }
}

/// What the couriers did, summed over couriers and per courier id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CourierReport {
    pub confirmed: usize,
    pub conflicts: usize,
    pub errors: usize,
    pub missed: usize,
    pub late: usize,
    pub not_home: usize,
    pub wrong_codes: usize,
    pub dropouts: usize,
    /// Counts by courier id (a duplicated id sums its tasks).
    pub per_courier: BTreeMap<String, CourierCounts>,
    /// What the customers and the operator did with returns.
    pub returns: crate::returns::ReturnsReport,
}

impl CourierReport {
    fn add(&mut self, courier: String, counts: CourierCounts) {
        self.confirmed += counts.confirmed;
        self.conflicts += counts.conflicts;
        self.errors += counts.errors;
        self.missed += counts.missed;
        self.late += counts.late;
        self.not_home += counts.not_home;
        self.wrong_codes += counts.wrong_codes;
        self.dropouts += counts.dropouts;
        self.per_courier.entry(courier).or_default().add(&counts);
    }
}

/// Runs one task per courier until `cancel`, then returns what they did.
///
/// Cancellation abandons reads in flight at once; a confirm in flight is let
/// finish (bounded by a 10 s request timeout) so the report matches what the
/// daemon recorded.
pub async fn run(config: CourierConfig, cancel: CancellationToken) -> CourierReport {
    let mut report = CourierReport::default();
    let client = match reqwest::Client::builder().timeout(REQUEST_TIMEOUT).build() {
        Ok(client) => client,
        Err(err) => {
            warn!(error = %err, "cannot build the HTTP client; no courier started");
            report.errors += 1;
            return report;
        }
    };
    let api = Arc::new(Api {
        client,
        base: config.api_base.trim_end_matches('/').to_string(),
        codes: config.codes,
    });
    let poll_interval = config.poll_interval.max(MIN_POLL_INTERVAL);
    let miss_rate = if config.miss_rate.is_nan() {
        0.0
    } else {
        config.miss_rate.clamp(0.0, 1.0)
    };
    // Customers asking for returns and the operator inspecting them: a
    // task of its own, stopped with the couriers.
    let returns = match (&api.codes, config.returns.is_active()) {
        (Some(codes), true) => Some(tokio::spawn(
            crate::returns::run(
                api.client.clone(),
                api.base.clone(),
                codes.clone(),
                config.returns,
                config.seed,
                poll_interval,
                cancel.child_token(),
            )
            .instrument(info_span!("customers")),
        )),
        (None, true) => {
            warn!("returns need the brand and operator tokens (codes); none requested");
            None
        }
        _ => None,
    };
    let mut tasks = JoinSet::new();
    for spec in config.couriers {
        let span = info_span!("courier", courier.id = %spec.id);
        let faults = config
            .per_courier
            .get(&spec.id)
            .copied()
            .unwrap_or(config.faults)
            .sanitized();
        let courier = Courier {
            api: Arc::clone(&api),
            miss: MissPolicy {
                seed: config.seed,
                rate: miss_rate,
            },
            chance: Chance::new(config.seed, &spec.id),
            faults,
            poll_interval,
            spec,
            passed: HashMap::new(),
            first_eta: HashMap::new(),
            last_done: HashMap::new(),
            fumbled: HashSet::new(),
            off_duty: Duty::On,
            counts: CourierCounts::default(),
        };
        // A child token per task; cancelled with the root.
        tasks.spawn(courier.run(cancel.child_token()).instrument(span));
    }
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((courier, counts)) => report.add(courier, counts),
            Err(err) => {
                warn!(error = %err, "courier task failed");
                report.errors += 1;
            }
        }
    }
    if let Some(task) = returns {
        match task.await {
            Ok(done) => report.returns = done,
            Err(err) => {
                warn!(error = %err, "customers task failed");
                report.errors += 1;
            }
        }
    }
    report
}

/// The daemon as couriers see it.
struct Api {
    client: reqwest::Client,
    /// Base URL without a trailing slash.
    base: String,
    codes: Option<CodeSource>,
}

impl Api {
    /// The daemon's simulated clock.
    async fn now(&self) -> Result<WireTime, CourierError> {
        let health: Health = self.get_json("healthz", "/healthz", None).await?;
        health
            .now
            .ok_or_else(|| CourierError::Protocol("healthz: `now` is null".to_string()))
    }

    async fn schedule(&self, courier: &CourierSpec) -> Result<Schedule, CourierError> {
        let path = format!("/v1/couriers/{}/schedule", courier.id);
        self.get_json("schedule", &path, Some(&courier.token)).await
    }

    /// The code the operator (at the factory: a delivery's pickup, a
    /// return's drop-off) or the customer (a delivery's drop-off, a return's
    /// pickup) hands the courier at `stop`, if codes are simulated.
    async fn code(&self, stop: &Stop) -> Result<Option<String>, CourierError> {
        let Some(codes) = &self.codes else {
            return Ok(None);
        };
        let at_factory = (stop.kind == "pickup") == stop.return_id.is_none();
        let path = format!("/v1/handoffs/{}", stop.id);
        if at_factory {
            let handoff: HandoffCode = self
                .get_json("handoff", &path, Some(&codes.operator_token))
                .await?;
            return Ok(handoff.code);
        }
        // The customer is one brand's: another brand's token gets a 404.
        for token in &codes.brand_tokens {
            match self
                .get_json::<HandoffCode>("handoff", &path, Some(token))
                .await
            {
                Ok(handoff) => return Ok(handoff.code),
                Err(CourierError::Status { status: 404, .. }) => {}
                Err(err) => return Err(err),
            }
        }
        if codes.brand_tokens.is_empty() {
            return Ok(None);
        }
        Err(CourierError::Status {
            request: "handoff",
            status: 404,
            body: format!("no brand token sees stop {}", stop.id),
        })
    }

    /// Confirms one stop, with its code if given; any 2xx is a confirmation.
    async fn confirm(
        &self,
        courier: &CourierSpec,
        handoff: &str,
        code: Option<&str>,
    ) -> Result<(), CourierError> {
        let body = code.map(|code| serde_json::json!({ "code": code }));
        let path = format!("/v1/handoffs/{handoff}/confirm");
        self.post("confirm", &path, &courier.token, body).await
    }

    /// Reports a failed attempt at one stop (`not_home`, ...).
    async fn fail(
        &self,
        courier: &CourierSpec,
        handoff: &str,
        reason: &str,
    ) -> Result<(), CourierError> {
        let path = format!("/v1/handoffs/{handoff}/fail");
        let body = serde_json::json!({ "reason": reason });
        self.post("fail", &path, &courier.token, Some(body)).await
    }

    /// Goes on or off duty.
    async fn duty(&self, courier: &CourierSpec, on_duty: bool) -> Result<(), CourierError> {
        let path = format!("/v1/couriers/{}/duty", courier.id);
        let body = serde_json::json!({ "on_duty": on_duty });
        self.post("duty", &path, &courier.token, Some(body)).await
    }

    /// POSTs `body` (none: an empty body); any 2xx is success, 409 a conflict.
    async fn post(
        &self,
        request: &'static str,
        path: &str,
        token: &str,
        body: Option<serde_json::Value>,
    ) -> Result<(), CourierError> {
        let mut builder = self
            .client
            .post(format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            builder = builder.json(&body);
        }
        let response = builder.send().await?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = excerpt(response.text().await.unwrap_or_default());
        Err(if status == reqwest::StatusCode::CONFLICT {
            CourierError::Conflict { body }
        } else {
            CourierError::Status {
                request,
                status: status.as_u16(),
                body,
            }
        })
    }

    async fn get_json<T: serde::de::DeserializeOwned>(
        &self,
        request: &'static str,
        path: &str,
        token: Option<&str>,
    ) -> Result<T, CourierError> {
        let mut builder = self.client.get(format!("{}{path}", self.base));
        if let Some(token) = token {
            builder = builder.bearer_auth(token);
        }
        let response = builder.send().await?;
        let status = response.status();
        let body = response.text().await?;
        if !status.is_success() {
            return Err(CourierError::Status {
                request,
                status: status.as_u16(),
                body: excerpt(body),
            });
        }
        serde_json::from_str(&body)
            .map_err(|err| CourierError::Protocol(format!("{request}: {err}")))
    }
}

fn excerpt(mut body: String) -> String {
    if body.len() > BODY_EXCERPT {
        let mut end = BODY_EXCERPT;
        while !body.is_char_boundary(end) {
            end -= 1;
        }
        body.truncate(end);
        body.push('…');
    }
    body
}

/// `err: its source: its source's source`, as reqwest's own message leaves
/// out why (e.g. "connection refused").
fn with_sources(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// Why a request failed.
#[derive(Debug, Error)]
enum CourierError {
    /// No reply: connection refused, reset, timed out.
    #[error("transport: {}", with_sources(.0))]
    Transport(#[from] reqwest::Error),
    /// 409 to a confirm: already confirmed, or the order cannot move yet.
    #[error("conflict: {body}")]
    Conflict { body: String },
    #[error("{request}: HTTP {status}: {body}")]
    Status {
        request: &'static str,
        status: u16,
        body: String,
    },
    /// A reply we could not read.
    #[error("protocol: {0}")]
    Protocol(String),
}

impl CourierError {
    /// Whether the same request may succeed on a later poll. A refusal of a
    /// confirm (4xx other than 408/429) is not: the stop is passed instead.
    fn is_retryable(&self) -> bool {
        match self {
            CourierError::Transport(_) | CourierError::Protocol(_) => true,
            CourierError::Conflict { .. } => false,
            CourierError::Status { status, .. } => {
                *status >= 500 || *status == 408 || *status == 429
            }
        }
    }
}

/// What a code holder reads of a handoff.
#[derive(Debug, Deserialize)]
struct HandoffCode {
    code: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Health {
    now: Option<WireTime>,
}

#[derive(Debug, Deserialize)]
struct Schedule {
    stops: Vec<Stop>,
}

/// One stop of a schedule, as much of it as a courier needs.
#[derive(Debug, Clone, Deserialize)]
struct Stop {
    /// Handoff id, to confirm the stop with.
    id: String,
    wave: String,
    seq: i64,
    #[serde(default)]
    kind: String,
    #[serde(default)]
    order_id: String,
    eta: Option<WireTime>,
    state: StopState,
    /// Set on a return's stops: picked up at the customer, dropped at the factory.
    #[serde(default)]
    return_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
enum StopState {
    Planned,
    Done,
    /// Any other state (e.g. `missed`): nothing for the courier to do.
    #[serde(other)]
    Other,
}

/// Why a courier went past a stop without confirming it; it never tries it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Passed {
    Missed,
    Conflict,
    Refused,
    /// A failed attempt reported (`not_home`).
    Failed,
}

/// What a courier does next with a due stop.
#[derive(Debug, Clone, Copy)]
enum Step<'a> {
    Confirm(&'a Stop),
    Miss(&'a Stop),
    /// Report a failed attempt: the customer is not home.
    NotHome(&'a Stop),
}

/// What a courier makes of a stop, once it is due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Confirm,
    Miss,
    NotHome,
    /// Not the courier's to do now (a pickup while off duty): neither
    /// worked nor holding back the stops after it.
    Skip,
}

/// The due stops, in (wave, seq) order, that a courier works through this
/// poll. Within a wave it stops at the first planned stop that is not due
/// (`due_at` unknown or later than `now`) and has not been passed or
/// skipped; `choose` says what it does at each. Pure: no I/O, no clock.
fn plan<'a>(
    stops: &'a [Stop],
    now: WireTime,
    passed: &HashMap<String, Passed>,
    due_at: impl Fn(&Stop) -> Option<WireTime>,
    choose: impl Fn(&Stop) -> Action,
) -> Vec<Step<'a>> {
    let mut ordered: Vec<&Stop> = stops.iter().collect();
    ordered.sort_by(|a, b| (&a.wave, a.seq).cmp(&(&b.wave, b.seq)));
    let mut steps = Vec::new();
    let mut blocked_wave: Option<&str> = None;
    for stop in ordered {
        if blocked_wave == Some(stop.wave.as_str())
            || stop.state != StopState::Planned
            || passed.contains_key(&stop.id)
        {
            continue;
        }
        let action = choose(stop);
        if action == Action::Skip {
            continue;
        }
        match due_at(stop) {
            Some(due) if due <= now => steps.push(match action {
                Action::Miss => Step::Miss(stop),
                Action::NotHome => Step::NotHome(stop),
                Action::Confirm | Action::Skip => Step::Confirm(stop),
            }),
            _ => blocked_wave = Some(stop.wave.as_str()),
        }
    }
    steps
}

/// FNV-1a of `parts`, separated: stable across Rust versions, unlike `DefaultHasher`.
fn fnv(parts: &[&str]) -> u64 {
    parts
        .iter()
        .flat_map(|part| part.bytes().chain(std::iter::once(0xff)))
        .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
            (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
        })
}

/// A number in 0..1 drawn once and for all for `(seed, parts)`.
pub(crate) fn roll(seed: u64, parts: &[&str]) -> f64 {
    StdRng::seed_from_u64(seed ^ fnv(parts)).random::<f64>()
}

/// Decides, once and for all per stop, whether the courier misses it.
#[derive(Debug, Clone, Copy)]
struct MissPolicy {
    seed: u64,
    /// In 0..=1.
    rate: f64,
}

impl MissPolicy {
    fn misses(&self, stop_id: &str) -> bool {
        if self.rate <= 0.0 {
            return false;
        }
        let hash = stop_id
            .bytes()
            .fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
                (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
            });
        StdRng::seed_from_u64(self.seed ^ hash).random::<f64>() < self.rate
    }
}

/// One courier's seeded chances: the same seed, courier and stop always
/// draw the same number for the same fault.
#[derive(Debug, Clone)]
struct Chance {
    seed: u64,
    courier: String,
}

impl Chance {
    fn new(seed: u64, courier: &str) -> Chance {
        Chance {
            seed,
            courier: courier.to_string(),
        }
    }

    fn roll(&self, fault: &str, stop: &str) -> f64 {
        roll(self.seed, &[fault, &self.courier, stop])
    }
}

/// Whether a courier works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Duty {
    On,
    /// Decided to drop out; the daemon has not yet been told (retried each poll).
    Leaving,
    /// Off duty until this time on the daemon's clock.
    Off {
        until: WireTime,
    },
}

struct Courier {
    api: Arc<Api>,
    spec: CourierSpec,
    miss: MissPolicy,
    chance: Chance,
    faults: CourierFaults,
    poll_interval: Duration,
    /// Stops gone past, by handoff id; pruned to the current schedule.
    passed: HashMap<String, Passed>,
    /// Each stop's ETA when the courier first saw it (the plan's, before
    /// any delay pushed it), by handoff id; pruned to the current schedule.
    first_eta: HashMap<String, WireTime>,
    /// Per wave, the last stop the courier worked: its first ETA and when
    /// the courier arrived there (simulated, on the daemon's clock).
    last_done: HashMap<String, (WireTime, WireTime)>,
    /// Stops where a wrong code was entered already (once is enough);
    /// pruned to the current schedule.
    fumbled: HashSet<String>,
    off_duty: Duty,
    counts: CourierCounts,
}

impl Courier {
    /// Simulated minutes late at `stop`, if the courier runs late there.
    fn late_minutes(&self, stop: &Stop) -> Option<f64> {
        let faults = &self.faults;
        (faults.late_rate > 0.0 && self.chance.roll("late", &stop.id) < faults.late_rate)
            .then(|| 1.0 + self.chance.roll("late-by", &stop.id) * (faults.late_max_minutes - 1.0))
    }

    /// When the courier arrives at `stop`: not before its ETA; after the
    /// leg from the wave's last stop at the courier's speed; later still
    /// if it runs late there. None while the ETA is unknown.
    fn due_at(&self, stop: &Stop) -> Option<WireTime> {
        let eta = stop.eta?;
        let mut due = eta;
        if let Some(&(previous_eta, arrived)) = self.last_done.get(&stop.wave) {
            let planned = self.first_eta.get(&stop.id).copied().unwrap_or(eta);
            let leg = planned.seconds_since(previous_eta).max(0.0);
            due = due.max(arrived.plus_seconds(leg / self.faults.speed));
        }
        if let Some(minutes) = self.late_minutes(stop) {
            due = due.plus_seconds(minutes * 60.0);
        }
        Some(due)
    }

    /// What the courier does at `stop` when it is due.
    fn choose(&self, stop: &Stop) -> Action {
        if self.off_duty != Duty::On && stop.kind == "pickup" {
            return Action::Skip;
        }
        if self.miss.misses(&stop.id) {
            return Action::Miss;
        }
        let at_customer = (stop.kind == "dropoff") == stop.return_id.is_none();
        if at_customer
            && self.faults.not_home_rate > 0.0
            && self.chance.roll("not-home", &stop.id) < self.faults.not_home_rate
        {
            return Action::NotHome;
        }
        Action::Confirm
    }

    /// The stop is worked: later legs of its wave start from here.
    fn arrived(&mut self, stop: &Stop) {
        if let Some(due) = self.due_at(stop) {
            let planned = self
                .first_eta
                .get(&stop.id)
                .copied()
                .or(stop.eta)
                .unwrap_or(due);
            self.last_done.insert(stop.wave.clone(), (planned, due));
        }
    }

    /// Gets the stop's code (if codes are simulated), enters a wrong one
    /// first if the courier fumbles here, then confirms with the right one.
    async fn confirm(&mut self, stop: &Stop) -> Result<(), CourierError> {
        let code = self.api.code(stop).await?;
        let fumbles = self.faults.wrong_code_rate > 0.0
            && self.chance.roll("wrong-code", &stop.id) < self.faults.wrong_code_rate
            && !self.fumbled.contains(&stop.id);
        if let (Some(right), true) = (code.as_deref(), fumbles) {
            let wrong = wrong_code(right);
            match self.api.confirm(&self.spec, &stop.id, Some(&wrong)).await {
                Err(CourierError::Status { status: 422, .. }) => {
                    self.fumbled.insert(stop.id.clone());
                    self.counts.wrong_codes += 1;
                    info!(handoff.id = %stop.id, order.id = %stop.order_id,
                        "wrong code entered on purpose, refused");
                }
                // Taken (a stop without a code): nothing more to enter.
                Ok(()) => return Ok(()),
                Err(err) => return Err(err),
            }
        }
        self.api
            .confirm(&self.spec, &stop.id, code.as_deref())
            .await
    }

    async fn run(mut self, cancel: CancellationToken) -> (String, CourierCounts) {
        info!(faults = ?self.faults, "courier started");
        while !cancel.is_cancelled() {
            if let Err(err) = self.poll(&cancel).await {
                self.counts.errors += 1;
                warn!(error = %err, "courier poll failed; retrying next poll");
            }
            if cancel
                .run_until_cancelled(tokio::time::sleep(self.poll_interval))
                .await
                .is_none()
            {
                break;
            }
        }
        info!(
            confirmed = self.counts.confirmed,
            conflicts = self.counts.conflicts,
            errors = self.counts.errors,
            missed = self.counts.missed,
            late = self.counts.late,
            not_home = self.counts.not_home,
            wrong_codes = self.counts.wrong_codes,
            dropouts = self.counts.dropouts,
            "courier stopped"
        );
        (self.spec.id, self.counts)
    }

    /// Tells the daemon the courier's duty changes, if it does now: a
    /// drop-out decided earlier, or the next day begun.
    async fn keep_duty(&mut self, now: WireTime) -> Result<(), CourierError> {
        match self.off_duty {
            Duty::On => {}
            Duty::Leaving => {
                self.api.duty(&self.spec, false).await?;
                self.off_duty = Duty::Off {
                    until: now.next_midnight(),
                };
                self.counts.dropouts += 1;
                warn!("dropped out for the day: off duty");
            }
            Duty::Off { until } if until <= now => {
                self.api.duty(&self.spec, true).await?;
                self.off_duty = Duty::On;
                info!("a new day: back on duty");
            }
            Duty::Off { .. } => {}
        }
        Ok(())
    }

    /// One poll: read the clock and the schedule, then work what is due.
    /// Returns the first retryable error; the rest of the poll is dropped so
    /// that no later stop is worked before the failed one.
    async fn poll(&mut self, cancel: &CancellationToken) -> Result<(), CourierError> {
        let Some(now) = cancel.run_until_cancelled(self.api.now()).await else {
            return Ok(());
        };
        let now = now?;
        self.keep_duty(now).await?;
        let Some(schedule) = cancel
            .run_until_cancelled(self.api.schedule(&self.spec))
            .await
        else {
            return Ok(());
        };
        let schedule = schedule?;
        let current: HashSet<&str> = schedule.stops.iter().map(|s| s.id.as_str()).collect();
        self.passed.retain(|id, _| current.contains(id.as_str()));
        self.first_eta.retain(|id, _| current.contains(id.as_str()));
        self.fumbled.retain(|id| current.contains(id.as_str()));
        let waves: HashSet<&str> = schedule.stops.iter().map(|s| s.wave.as_str()).collect();
        self.last_done
            .retain(|wave, _| waves.contains(wave.as_str()));
        for stop in &schedule.stops {
            if let Some(eta) = stop.eta {
                self.first_eta.entry(stop.id.clone()).or_insert(eta);
            }
        }
        let steps = plan(
            &schedule.stops,
            now,
            &self.passed,
            |stop| self.due_at(stop),
            |stop| self.choose(stop),
        );
        let mut blocked: HashSet<String> = HashSet::new();
        for step in steps {
            if cancel.is_cancelled() {
                break;
            }
            let stop = match step {
                Step::Confirm(stop) | Step::Miss(stop) | Step::NotHome(stop) => stop,
            };
            // The plan was drawn before this poll's earlier stops were
            // worked: the leg from them may not be ridden yet.
            if blocked.contains(&stop.wave) || self.due_at(stop).is_none_or(|due| due > now) {
                blocked.insert(stop.wave.clone());
                continue;
            }
            let late = self.late_minutes(stop);
            match step {
                Step::Miss(stop) => {
                    self.passed.insert(stop.id.clone(), Passed::Missed);
                    self.counts.missed += 1;
                    info!(handoff.id = %stop.id, order.id = %stop.order_id, wave = %stop.wave,
                        seq = stop.seq, kind = %stop.kind, "stop missed on purpose");
                }
                Step::NotHome(stop) => {
                    match self.api.fail(&self.spec, &stop.id, "not_home").await {
                        Ok(()) => {
                            self.arrived(stop);
                            self.passed.insert(stop.id.clone(), Passed::Failed);
                            self.counts.not_home += 1;
                            self.counts.late += usize::from(late.is_some());
                            info!(handoff.id = %stop.id, order.id = %stop.order_id, wave = %stop.wave,
                            seq = stop.seq, kind = %stop.kind, "customer not home; attempt reported failed");
                        }
                        Err(err) => self.passed_on(stop, err)?,
                    }
                }
                Step::Confirm(stop) => match self.confirm(stop).await {
                    Ok(()) => {
                        self.arrived(stop);
                        self.counts.confirmed += 1;
                        self.counts.late += usize::from(late.is_some());
                        info!(handoff.id = %stop.id, order.id = %stop.order_id, wave = %stop.wave,
                            seq = stop.seq, kind = %stop.kind, late_minutes = late.unwrap_or(0.0),
                            "stop confirmed");
                        if self.off_duty == Duty::On
                            && self.faults.dropout_rate > 0.0
                            && self.chance.roll("dropout", &stop.id) < self.faults.dropout_rate
                        {
                            self.off_duty = Duty::Leaving;
                            self.keep_duty(now).await?;
                            // The pickups left in this poll are no longer ours.
                            blocked.extend(current_waves(&schedule.stops));
                        }
                    }
                    Err(err) => self.passed_on(stop, err)?,
                },
            }
        }
        debug!(passed = self.passed.len(), "poll done");
        Ok(())
    }

    /// Passes `stop` after a refusal (409, or another 4xx), or hands back a
    /// retryable error for the poll to stop at.
    fn passed_on(&mut self, stop: &Stop, err: CourierError) -> Result<(), CourierError> {
        match err {
            err @ CourierError::Conflict { .. } => {
                self.passed.insert(stop.id.clone(), Passed::Conflict);
                self.counts.conflicts += 1;
                info!(handoff.id = %stop.id, order.id = %stop.order_id, error = %err,
                    "stop conflicted; passing it");
                Ok(())
            }
            err if !err.is_retryable() => {
                self.passed.insert(stop.id.clone(), Passed::Refused);
                self.counts.errors += 1;
                warn!(handoff.id = %stop.id, order.id = %stop.order_id, error = %err,
                    "stop refused; passing it");
                Ok(())
            }
            err => Err(err),
        }
    }
}

/// Every wave of `stops`.
fn current_waves(stops: &[Stop]) -> impl Iterator<Item = String> + '_ {
    stops.iter().map(|stop| stop.wave.clone())
}

/// A code that is not `right`: its last digit moved on by one (a typo).
fn wrong_code(right: &str) -> String {
    let mut chars: Vec<char> = right.chars().collect();
    match chars.last_mut() {
        Some(last) => {
            *last = match last.to_digit(10) {
                Some(digit) => char::from_digit((digit + 1) % 10, 10).unwrap_or('0'),
                None => '0',
            };
        }
        None => chars.push('0'),
    }
    chars.into_iter().collect()
}

/// An RFC 3339 timestamp as whole seconds since the Unix epoch (UTC) plus
/// nanoseconds, so that comparisons hold across offsets and precisions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct WireTime {
    seconds: i64,
    nanos: u32,
}

impl WireTime {
    /// Seconds from `earlier` to `self` (negative if `earlier` is later).
    fn seconds_since(self, earlier: WireTime) -> f64 {
        (self.seconds - earlier.seconds) as f64
            + (f64::from(self.nanos) - f64::from(earlier.nanos)) / 1e9
    }

    /// `self` plus `seconds` (at nanosecond precision; non-finite adds nothing).
    fn plus_seconds(self, seconds: f64) -> WireTime {
        if !seconds.is_finite() {
            return self;
        }
        let total = i128::from(self.nanos) + (seconds * 1e9).round() as i128;
        let carry = total.div_euclid(1_000_000_000);
        WireTime {
            seconds: self
                .seconds
                .saturating_add(i64::try_from(carry).unwrap_or(0)),
            nanos: u32::try_from(total.rem_euclid(1_000_000_000)).unwrap_or(0),
        }
    }

    /// The next midnight (UTC) after `self`.
    fn next_midnight(self) -> WireTime {
        WireTime {
            seconds: (self.seconds.div_euclid(86_400) + 1) * 86_400,
            nanos: 0,
        }
    }

    /// `YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`, `T`/`Z` in either case.
    fn parse(text: &str) -> Option<WireTime> {
        let bytes = text.as_bytes();
        let number = |range: std::ops::Range<usize>| -> Option<i64> {
            let digits = bytes.get(range)?;
            digits.iter().try_fold(0_i64, |value, &byte| {
                byte.is_ascii_digit()
                    .then(|| value * 10 + i64::from(byte - b'0'))
            })
        };
        let separators = [(4, b'-'), (7, b'-'), (13, b':'), (16, b':')];
        if separators
            .iter()
            .any(|&(at, sep)| bytes.get(at) != Some(&sep))
            || !matches!(bytes.get(10), Some(b'T' | b't'))
        {
            return None;
        }
        let (year, month, day) = (number(0..4)?, number(5..7)?, number(8..10)?);
        let (hour, minute, second) = (number(11..13)?, number(14..16)?, number(17..19)?);
        if !(1..=12).contains(&month)
            || day < 1
            || day > days_in_month(year, month)
            || hour > 23
            || minute > 59
            || second > 60
        {
            return None;
        }
        let mut rest = &bytes[19..];
        let mut nanos = 0_u32;
        if let Some((b'.', fraction)) = rest.split_first() {
            let digits = fraction.iter().take_while(|b| b.is_ascii_digit()).count();
            if digits == 0 {
                return None;
            }
            for (place, byte) in fraction[..digits].iter().enumerate().take(9) {
                nanos += u32::from(byte - b'0') * 10_u32.pow(8 - place as u32);
            }
            rest = &fraction[digits..];
        }
        let offset_seconds = match rest {
            [b'Z' | b'z'] => 0,
            [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
                let digits = [*h1, *h2, *m1, *m2];
                if !digits.iter().all(u8::is_ascii_digit) {
                    return None;
                }
                let value = |a: u8, b: u8| i64::from(a - b'0') * 10 + i64::from(b - b'0');
                let (hours, minutes) = (value(*h1, *h2), value(*m1, *m2));
                if hours > 23 || minutes > 59 {
                    return None;
                }
                let magnitude = hours * 3600 + minutes * 60;
                if *sign == b'-' { -magnitude } else { magnitude }
            }
            _ => return None,
        };
        let seconds =
            days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
                - offset_seconds;
        Some(WireTime { seconds, nanos })
    }
}

impl<'de> Deserialize<'de> for WireTime {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<WireTime, D::Error> {
        let text = String::deserialize(deserializer)?;
        WireTime::parse(&text)
            .ok_or_else(|| de::Error::custom(format!("not an RFC 3339 timestamp: `{text}`")))
    }
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the given civil date (proleptic Gregorian), after
/// Howard Hinnant's `days_from_civil`.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let day_of_year = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    era * 146_097 + day_of_era - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn time(text: &str) -> WireTime {
        WireTime::parse(text).unwrap_or_else(|| panic!("test timestamp `{text}` must parse"))
    }

    #[test]
    fn wire_time_parses_rfc3339() {
        let cases: &[(&str, Option<(i64, u32)>)] = &[
            ("1970-01-01T00:00:00Z", Some((0, 0))),
            ("2026-11-22T10:00:00Z", Some((1_795_341_600, 0))),
            ("2026-11-22T10:00:00.5Z", Some((1_795_341_600, 500_000_000))),
            (
                "2026-11-22T10:00:00.123456789Z",
                Some((1_795_341_600, 123_456_789)),
            ),
            (
                "2026-11-22T10:00:00.1234567891Z",
                Some((1_795_341_600, 123_456_789)),
            ),
            ("2026-11-22T11:30:00+01:30", Some((1_795_341_600, 0))),
            ("2026-11-22T08:00:00-02:00", Some((1_795_341_600, 0))),
            ("2026-11-22t10:00:00z", Some((1_795_341_600, 0))),
            ("2024-02-29T00:00:00Z", Some((1_709_164_800, 0))),
            ("1969-12-31T23:59:59Z", Some((-1, 0))),
            ("2025-02-29T00:00:00Z", None),
            ("2026-13-01T00:00:00Z", None),
            ("2026-11-22T24:00:00Z", None),
            ("2026-11-22T10:00:00", None),
            ("2026-11-22T10:00:00.Z", None),
            ("2026-11-22 10:00:00Z", None),
            ("2026-11-22T10:00:00+0100", None),
            ("2026-11-22T10:00Z", None),
            ("", None),
            ("2026-1x-22T10:00:00Z", None),
        ];
        for (text, expected) in cases {
            let parsed = WireTime::parse(text).map(|t| (t.seconds, t.nanos));
            assert_eq!(parsed, *expected, "{text}");
        }
        assert!(time("2026-11-22T10:00:00.5Z") > time("2026-11-22T10:00:00Z"));
        assert!(time("2026-11-22T10:00:00Z") < time("2026-11-22T10:30:00+00:00"));
    }

    fn stop(id: &str, wave: &str, seq: i64, eta: Option<&str>, state: StopState) -> Stop {
        Stop {
            id: id.to_string(),
            wave: wave.to_string(),
            seq,
            kind: String::new(),
            order_id: String::new(),
            eta: eta.map(time),
            state,
            return_id: None,
        }
    }

    /// Runs `plan` at `now` and renders the steps as `+id` (confirm) and `-id` (miss).
    fn check(stops: &[Stop], now: &str, passed: &[&str], missed: &[&str], expected: &str) {
        let passed: HashMap<String, Passed> = passed
            .iter()
            .map(|id| (id.to_string(), Passed::Conflict))
            .collect();
        let steps = plan(
            stops,
            time(now),
            &passed,
            |stop| stop.eta,
            |stop| {
                if missed.contains(&stop.id.as_str()) {
                    Action::Miss
                } else {
                    Action::Confirm
                }
            },
        );
        let rendered: Vec<String> = steps
            .iter()
            .map(|step| match step {
                Step::Confirm(stop) => format!("+{}", stop.id),
                Step::Miss(stop) => format!("-{}", stop.id),
                Step::NotHome(stop) => format!("!{}", stop.id),
            })
            .collect();
        assert_eq!(rendered.join(" "), expected, "now {now}, passed {passed:?}");
    }

    #[test]
    fn plan_works_due_stops_in_wave_and_seq_order() {
        use StopState::{Done, Other, Planned};
        let t = |minute: u32| format!("2026-11-22T10:{minute:02}:00Z");
        let (t1, t2, t3, t5) = (t(1), t(2), t(3), t(5));
        // Deliberately out of order, as a defensive courier must not trust it.
        let stops = [
            stop("b0", "w2", 0, Some(&t1), Planned),
            stop("a2", "w1", 2, Some(&t3), Planned),
            stop("a0", "w1", 0, Some(&t1), Planned),
            stop("a1", "w1", 1, Some(&t2), Planned),
        ];
        check(&stops, &t(0), &[], &[], "");
        check(&stops, &t1, &[], &[], "+a0 +b0");
        check(&stops, &t2, &[], &[], "+a0 +a1 +b0");
        check(&stops, &t5, &[], &[], "+a0 +a1 +a2 +b0");
        check(&stops, &t5, &["a1"], &[], "+a0 +a2 +b0");
        check(&stops, &t5, &[], &["a1"], "+a0 -a1 +a2 +b0");
        check(&stops, &t5, &["a0", "a1", "a2", "b0"], &[], "");

        // A planned stop not yet due holds back the later stops of its wave
        // only, even if those are due.
        let stops = [
            stop("a0", "w1", 0, Some(&t1), Done),
            stop("a1", "w1", 1, Some(&t5), Planned),
            stop("a2", "w1", 2, Some(&t2), Planned),
            stop("a3", "w1", 3, None, Planned),
            stop("b0", "w2", 0, None, Planned),
            stop("b1", "w2", 1, Some(&t1), Planned),
            stop("c0", "w3", 0, Some(&t1), Other),
            stop("c1", "w3", 1, Some(&t2), Planned),
        ];
        check(&stops, &t3, &[], &[], "+c1");
        check(&stops, &t5, &[], &[], "+a1 +a2 +c1");
        check(&stops, &t5, &["b0"], &[], "+a1 +a2 +b1 +c1");
    }

    fn courier(faults: CourierFaults) -> Courier {
        Courier {
            api: Arc::new(Api {
                client: reqwest::Client::new(),
                base: "http://127.0.0.1:9".to_string(),
                codes: None,
            }),
            spec: CourierSpec {
                id: "bike-1".to_string(),
                token: "ffc_x".to_string(),
            },
            miss: MissPolicy { seed: 1, rate: 0.0 },
            chance: Chance::new(1, "bike-1"),
            faults,
            poll_interval: Duration::from_millis(1),
            passed: HashMap::new(),
            first_eta: HashMap::new(),
            last_done: HashMap::new(),
            fumbled: HashSet::new(),
            off_duty: Duty::On,
            counts: CourierCounts::default(),
        }
    }

    #[test]
    fn a_courier_arrives_by_its_speed_and_lateness_never_before_the_eta() {
        use StopState::Planned;
        let t = |minute: u32| format!("2026-11-22T10:{minute:02}:00Z");
        let a = stop("a", "w", 0, Some(&t(0)), Planned);
        let b = stop("b", "w", 1, Some(&t(20)), Planned);
        // At the plan's speed, on time: each stop at its ETA.
        let mut keeps = courier(CourierFaults::default());
        keeps.first_eta.insert("a".into(), time(&t(0)));
        keeps.first_eta.insert("b".into(), time(&t(20)));
        assert_eq!(keeps.due_at(&a), Some(time(&t(0))));
        keeps.arrived(&a);
        assert_eq!(keeps.due_at(&b), Some(time(&t(20))));
        // At half speed the 20-minute leg takes 40.
        let mut slow = courier(CourierFaults {
            speed: 0.5,
            ..CourierFaults::default()
        });
        slow.first_eta = keeps.first_eta.clone();
        slow.arrived(&a);
        assert_eq!(slow.due_at(&b), Some(time(&t(40))));
        // Twice as fast: still not before the ETA.
        let mut fast = courier(CourierFaults {
            speed: 2.0,
            ..CourierFaults::default()
        });
        fast.first_eta = keeps.first_eta.clone();
        fast.arrived(&a);
        assert_eq!(fast.due_at(&b), Some(time(&t(20))));
        // Always late: 1 to 10 minutes after the ETA, the same each time.
        let late = courier(CourierFaults {
            late_rate: 1.0,
            late_max_minutes: 10.0,
            ..CourierFaults::default()
        });
        let due = late.due_at(&a).expect("due");
        let by = due.seconds_since(time(&t(0)));
        assert!((60.0..=600.0).contains(&by), "{by} s late");
        assert_eq!(late.due_at(&a), Some(due));
        assert_eq!(keeps.due_at(&stop("c", "w", 2, None, Planned)), None);
    }

    #[test]
    fn a_courier_chooses_not_home_only_at_customers_and_no_pickup_off_duty() {
        use StopState::Planned;
        let eta = "2026-11-22T10:00:00Z";
        let mut pickup = stop("p", "w", 0, Some(eta), Planned);
        pickup.kind = "pickup".into();
        let mut dropoff = stop("d", "w", 1, Some(eta), Planned);
        dropoff.kind = "dropoff".into();
        let mut back_pickup = pickup.clone();
        back_pickup.return_id = Some("r".into());
        let mut back_dropoff = dropoff.clone();
        back_dropoff.return_id = Some("r".into());
        let mut out = courier(CourierFaults {
            not_home_rate: 1.0,
            ..CourierFaults::default()
        });
        assert_eq!(
            out.choose(&pickup),
            Action::Confirm,
            "a factory is always in"
        );
        assert_eq!(out.choose(&dropoff), Action::NotHome);
        assert_eq!(out.choose(&back_pickup), Action::NotHome);
        assert_eq!(out.choose(&back_dropoff), Action::Confirm);
        out.off_duty = Duty::Off {
            until: time(eta).next_midnight(),
        };
        assert_eq!(out.choose(&pickup), Action::Skip);
        assert_eq!(out.choose(&back_pickup), Action::Skip);
        assert_eq!(
            out.choose(&dropoff),
            Action::NotHome,
            "parcels on board go on"
        );
        assert_eq!(
            time(eta).next_midnight(),
            time("2026-11-23T00:00:00Z"),
            "back the next day"
        );
        let keeps = courier(CourierFaults::default());
        assert_eq!(keeps.choose(&dropoff), Action::Confirm);
    }

    #[test]
    fn wrong_codes_differ_from_the_right_one() {
        for right in ["042137", "000009", "999999", ""] {
            assert_ne!(wrong_code(right), right);
        }
        assert_eq!(wrong_code("042139"), "042130");
    }

    #[test]
    fn courier_faults_are_checked_and_set_by_name() {
        assert!(CourierFaults::default().problems().is_empty());
        let mut faults = CourierFaults::default();
        faults.set("late_rate", 1.5).expect("a known field");
        faults.set("speed", 0.0).expect("a known field");
        assert_eq!(
            faults.problems(),
            vec![
                "late_rate: must be 0..=1, got 1.5".to_string(),
                "speed: must be 0.05..=20, got 0".to_string()
            ]
        );
        assert!(faults.set("lateness", 1.0).is_err());
        let sane = CourierFaults {
            speed: f64::NAN,
            not_home_rate: f64::NAN,
            ..faults
        }
        .sanitized();
        assert!(sane.problems().is_empty(), "{sane:?}");
    }

    #[test]
    fn misses_follow_the_seed_and_rate() {
        let ids: Vec<String> = (0..1000).map(|i| format!("handoff-{i}")).collect();
        let count = |seed, rate| {
            let policy = MissPolicy { seed, rate };
            ids.iter().filter(|id| policy.misses(id)).count()
        };
        assert_eq!(count(7, 0.0), 0);
        assert_eq!(count(7, 1.0), 1000);
        let some = count(7, 0.3);
        assert!(
            (200..400).contains(&some),
            "{some} of 1000 missed at rate 0.3"
        );
        assert_eq!(count(7, 0.3), some, "same seed, same misses");
        let policy = MissPolicy { seed: 7, rate: 0.5 };
        let other = MissPolicy { seed: 8, rate: 0.5 };
        assert!(ids.iter().any(|id| policy.misses(id) != other.misses(id)));
    }

    #[test]
    fn stops_deserialize_from_the_daemon_shape() {
        let body = r#"{"schema":1,"courier":"bike-1","generated_at":"2026-11-22T10:00:00Z",
            "stops":[{"id":"h1","wave":"w","order_id":"o1","kind":"pickup","seq":0,
            "place":"north","lat":52.5,"lon":13.4,"eta":"2026-11-22T10:05:00.250Z","state":"planned"},
            {"id":"h2","wave":"w","order_id":"o1","kind":"dropoff","seq":1,
            "place":"customer","lat":52.5,"lon":13.4,"eta":null,"state":"missed"}]}"#;
        let schedule: Schedule = serde_json::from_str(body).expect("daemon schedule must parse");
        assert_eq!(schedule.stops.len(), 2);
        assert_eq!(schedule.stops[0].eta, Some(time("2026-11-22T10:05:00.25Z")));
        assert_eq!(schedule.stops[0].state, StopState::Planned);
        assert_eq!(schedule.stops[1].eta, None);
        assert_eq!(schedule.stops[1].state, StopState::Other);
        let health: Health = serde_json::from_str(
            r#"{"status":"ok","database":"ok","now":"2026-11-22T10:00:00Z","time_scale":600.0}"#,
        )
        .expect("healthz must parse");
        assert_eq!(health.now, Some(time("2026-11-22T10:00:00Z")));
    }
}
