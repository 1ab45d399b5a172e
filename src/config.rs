//! Typed configuration: parsed with `deny_unknown_fields`, then validated,
//! reporting every problem at once with its file and key.

use crate::domain::intake::IntakeRules;
use crate::domain::{Catalog, HOUR_MS, Location, ProcessStep, Sku, Zone};
use serde::Deserialize;
use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::Path;

/// The demo configuration, compiled in so `fabflow demo` works from anywhere.
pub const DEMO_TOML: &str = include_str!("../config/demo.toml");

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Simulated seconds per real second (1 in production).
    #[serde(default = "one")]
    pub time_scale: f64,
    /// Directories of machine profiles (`*.toml`, one model per file), read
    /// besides the built-in ones; relative to the configuration file.
    #[serde(default)]
    pub profile_dirs: Vec<std::path::PathBuf>,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub mqtt: MqttConfig,
    #[serde(default)]
    pub intake: IntakeConfig,
    #[serde(default)]
    pub scheduler: SchedulerConfig,
    #[serde(default)]
    pub cluster: ClusterConfig,
    #[serde(default)]
    pub webhooks: WebhooksConfig,
    #[serde(default)]
    pub forecasts: ForecastsConfig,
    #[serde(default)]
    pub handoffs: HandoffsConfig,
    #[serde(default)]
    pub routing: RoutingConfig,
    #[serde(default)]
    pub returns: ReturnsConfig,
    #[serde(default)]
    pub zones: Vec<ZoneConfig>,
    #[serde(default)]
    pub factories: Vec<FactoryConfig>,
    #[serde(default)]
    pub machines: Vec<MachineConfig>,
    #[serde(default)]
    pub couriers: Vec<CourierConfig>,
    #[serde(default)]
    pub skus: Vec<Sku>,
}

fn one() -> f64 {
    1.0
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    pub listen: SocketAddr,
    pub max_body_bytes: usize,
    /// A client must send a request's whole header within this time, and a
    /// kept-alive connection with no new request is closed after it.
    #[serde(default = "default_header_read_timeout_ms")]
    pub header_read_timeout_ms: u64,
    /// A request (handler and body) that takes longer is answered 408.
    #[serde(default = "default_request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// Open connections at most; more are closed at once, so idle sockets
    /// cannot use up the daemon's file handles.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// When set, `/metrics` answers only `Authorization: Bearer <this>`
    /// (for a daemon on a public address).
    #[serde(default)]
    pub metrics_token: Option<String>,
}

fn default_header_read_timeout_ms() -> u64 {
    10_000
}

fn default_request_timeout_ms() -> u64 {
    30_000
}

fn default_max_connections() -> usize {
    1_024
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 4 * 1024 * 1024,
            header_read_timeout_ms: default_header_read_timeout_ms(),
            request_timeout_ms: default_request_timeout_ms(),
            max_connections: default_max_connections(),
            metrics_token: None,
        }
    }
}

/// Demand forecasts: when every brand's SKUs are refitted and published
/// on MQTT (the API fits on request).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ForecastsConfig {
    /// Cron (with seconds) on the domain clock; hourly by default.
    pub refit_cron: String,
    /// IANA time zone `refit_cron` is read in; UTC when absent.
    pub timezone: Option<String>,
    /// Days ahead in the published forecasts.
    pub horizon_days: u64,
    /// Days after a sales event's last day whose orders still count toward
    /// it (brands send their orders after the event).
    pub attribution_days: u64,
}

impl Default for ForecastsConfig {
    fn default() -> Self {
        Self {
            refit_cron: "0 0 * * * *".into(),
            timezone: None,
            horizon_days: 14,
            attribution_days: 5,
        }
    }
}

/// Brand webhooks: how failed deliveries are retried, and where endpoints may be.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// The wait after a delivery's first failure; it doubles with each
    /// failure (times a random 0.5..1.5) up to `max_retry_ms`.
    pub first_retry_ms: u64,
    pub max_retry_ms: u64,
    /// A delivery still failing this long after its first attempt is dead,
    /// for the brand to list and replay (default 24 h).
    pub give_up_after_ms: u64,
    /// One attempt's limit: connect, send and answer.
    pub timeout_ms: u64,
    /// Attempts in flight at once, over every endpoint.
    pub concurrency: usize,
    /// Allow endpoints in private, loopback and link-local networks (off by
    /// default: a brand could otherwise reach the factory's own network).
    pub allow_private_networks: bool,
    /// How long a rotated-out secret keeps signing beside the new one.
    pub rotation_grace_ms: u64,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        Self {
            first_retry_ms: 5_000,
            max_retry_ms: 3_600_000,
            give_up_after_ms: 24 * 3_600_000,
            timeout_ms: 10_000,
            concurrency: 8,
            allow_private_networks: false,
            rotation_grace_ms: 24 * 3_600_000,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (created if missing) or `postgres://...`.
    pub url: String,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: "sqlite://fabflow.db".into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "snake_case")]
pub enum MqttConfig {
    /// A rumqttd broker inside the daemon.
    Embedded { listen: SocketAddr },
    /// An external broker (Mosquitto, EMQX).
    External {
        host: String,
        port: u16,
        #[serde(default)]
        username: Option<String>,
        #[serde(default)]
        password: Option<String>,
        /// Connect with TLS (rustls), trusting the certificate authorities in
        /// this PEM file; without it the connection is plain MQTT.
        #[serde(default)]
        ca_file: Option<std::path::PathBuf>,
    },
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig::Embedded {
            listen: SocketAddr::from(([127, 0, 0, 1], 1883)),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IntakeConfig {
    pub promise_hours: i64,
    pub min_lead_hours: i64,
    pub delivery_buffer_hours: i64,
}

impl Default for IntakeConfig {
    fn default() -> Self {
        Self {
            promise_hours: 48,
            min_lead_hours: 6,
            delivery_buffer_hours: 8,
        }
    }
}

impl IntakeConfig {
    pub fn rules(&self) -> IntakeRules {
        IntakeRules {
            promise_ms: self.promise_hours * HOUR_MS,
            min_lead_ms: self.min_lead_hours * HOUR_MS,
            delivery_buffer_ms: self.delivery_buffer_hours * HOUR_MS,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SchedulerConfig {
    /// Real milliseconds between scheduling rounds.
    pub interval_ms: u64,
    /// Jobs queued per machine, including the one it runs.
    pub max_queue: usize,
    /// How jobs are chosen for the queues: `shop` (`plan::shop::plan_floor`,
    /// the default) or `queue` (earliest due first, onto the shortest
    /// capable queue).
    #[serde(default)]
    pub planner: Planner,
    /// Wall-clock budget of the `shop` planner per round, milliseconds.
    #[serde(default = "default_plan_budget_ms")]
    pub plan_budget_ms: u64,
}

/// The scheduler's planner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Planner {
    /// Earliest due first, each job onto the capable machine with the
    /// shortest queue (`plan::assign_jobs`).
    Queue,
    /// The flexible job-shop engine under the floor objective; each
    /// machine's queue is filled from the head of its planned queue.
    #[default]
    Shop,
}

impl Planner {
    pub fn as_str(self) -> &'static str {
        match self {
            Planner::Queue => "queue",
            Planner::Shop => "shop",
        }
    }
}

fn default_plan_budget_ms() -> u64 {
    50
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            interval_ms: 250,
            max_queue: 2,
            planner: Planner::default(),
            plan_budget_ms: default_plan_budget_ms(),
        }
    }
}

/// Several daemons on one PostgreSQL database: who this daemon is and how
/// its leases are timed (docs/architecture.md, "Several daemons"). A
/// daemon that dies has its factories taken over within about `lease_ms`
/// plus `renew_interval_ms`; one cut off from the database stops driving
/// its machines `renew_margin_ms` before its leases can expire.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClusterConfig {
    /// This daemon's name among the others (unique per running daemon).
    /// Default: the host name and the process id.
    pub daemon_id: Option<String>,
    /// How long a lease (and a heartbeat) lasts unrenewed, milliseconds.
    pub lease_ms: u64,
    /// How often leases and the heartbeat are renewed, milliseconds.
    pub renew_interval_ms: u64,
    /// How long before its lease could expire a daemon that could not
    /// renew stops driving, milliseconds (covers a command in flight and
    /// clock rate differences).
    pub renew_margin_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        Self {
            daemon_id: None,
            lease_ms: 10_000,
            renew_interval_ms: 2_000,
            renew_margin_ms: 3_000,
        }
    }
}

impl ClusterConfig {
    /// The configured daemon id, or `<host>-<pid>`.
    pub fn daemon_id(&self) -> String {
        if let Some(id) = &self.daemon_id {
            return id.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .map(|name| name.trim().to_string())
            .filter(|name| !name.is_empty())
            .or_else(|| std::env::var("HOSTNAME").ok())
            .unwrap_or_else(|| "fabflow".into());
        format!("{host}-{}", std::process::id())
    }

    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(id) = &self.daemon_id
            && (id.is_empty() || id.len() > 128 || id.chars().any(char::is_control))
        {
            out.push(format!(
                "cluster.daemon_id: must be 1..=128 printable characters, got {id:?}"
            ));
        }
        if !(1_000..=600_000).contains(&self.lease_ms) {
            out.push(format!(
                "cluster.lease_ms: must be 1000..=600000, got {}",
                self.lease_ms
            ));
        }
        if self.renew_margin_ms < 500 || self.renew_margin_ms >= self.lease_ms {
            out.push(format!(
                "cluster.renew_margin_ms: must be 500.. and less than lease_ms ({}), got {}",
                self.lease_ms, self.renew_margin_ms
            ));
        }
        // At least two renewals fit in the time a lease is valid locally.
        let valid = self.lease_ms.saturating_sub(self.renew_margin_ms);
        if self.renew_interval_ms < 100 || self.renew_interval_ms.saturating_mul(2) > valid {
            out.push(format!(
                "cluster.renew_interval_ms: must be 100.. and at most half of lease_ms - renew_margin_ms ({valid}), got {}",
                self.renew_interval_ms
            ));
        }
        out
    }
}

/// Proof of handoff: how many wrong codes lock a stop, how many failed
/// attempts escalate an order.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HandoffsConfig {
    /// Wrong codes after which a stop is locked until an operator releases it.
    #[serde(default = "default_max_wrong_codes")]
    pub max_wrong_codes: u32,
    /// Failed attempts (not home, wrong address, refused) of one order after
    /// which it is escalated instead of planned again.
    #[serde(default = "default_max_attempts")]
    pub max_attempts: u32,
}

fn default_max_wrong_codes() -> u32 {
    5
}

fn default_max_attempts() -> u32 {
    3
}

impl Default for HandoffsConfig {
    fn default() -> Self {
        Self {
            max_wrong_codes: default_max_wrong_codes(),
            max_attempts: default_max_attempts(),
        }
    }
}

/// How planning waves route couriers (`[routing]`): travel assumptions and
/// the router's budget.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoutingConfig {
    /// Courier speed door to door, km/h (a cargo bike in town: 15).
    #[serde(default = "default_speed_kmh")]
    pub speed_kmh: f64,
    /// Road distance over great-circle distance (1.3 in most towns).
    #[serde(default = "default_detour_factor")]
    pub detour_factor: f64,
    /// Time at a customer's door (handing over, code, parking), seconds.
    #[serde(default = "default_service_s")]
    pub service_s: f64,
    /// Time per parcel at a factory (collected there, or a return brought
    /// back), seconds.
    #[serde(default = "default_handover_s")]
    pub handover_s: f64,
    /// Wall-clock budget of the router per wave, milliseconds.
    #[serde(default = "default_time_limit_ms")]
    pub time_limit_ms: u64,
    /// `distance` (fewest kilometres) or `couriers` (fewest couriers first).
    #[serde(default)]
    pub objective: RoutingObjective,
    /// The most parcels one wave routes, counting the couriers' parcels
    /// not yet dropped off: new ones beyond it (the latest deadlines) wait
    /// for a later wave. The router's work grows faster than its stops; a
    /// backlog of thousands in one wave took minutes and gigabytes.
    #[serde(default = "default_max_wave_parcels")]
    pub max_wave_parcels: usize,
    /// A ready order is planned at once, not at its zone's next cron wave,
    /// when that wave would leave less than its direct ride, its two stops
    /// and this margin (for a courier to reach the pickup) before its
    /// deadline. Seconds.
    #[serde(default = "default_rush_margin_s")]
    pub rush_margin_s: f64,
    /// An OSRM `table` response (JSON, with `sources` locations) whose road
    /// times the waves use instead of the great circle; relative to the
    /// configuration file. Read and checked at start and by `check-config`.
    #[serde(default)]
    pub matrix_file: Option<std::path::PathBuf>,
    /// A wave may rebuild the couriers' planned stops; the rebuilt plan
    /// replaces the kept one when it has fewer late orders, or as many and
    /// is shorter by at least this many metres (seconds with a
    /// `matrix_file`) ...
    #[serde(default = "default_rebuild_min_gain_m")]
    pub rebuild_min_gain_m: f64,
    /// ... and this share of the kept plan's length ...
    #[serde(default = "default_rebuild_min_gain_share")]
    pub rebuild_min_gain_share: f64,
    /// ... and brings no planned drop-off more than this many seconds later.
    #[serde(default = "default_rebuild_max_delay_s")]
    pub rebuild_max_delay_s: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoutingObjective {
    #[default]
    Distance,
    Couriers,
}

fn default_speed_kmh() -> f64 {
    15.0
}

fn default_detour_factor() -> f64 {
    1.3
}

fn default_service_s() -> f64 {
    180.0
}

fn default_handover_s() -> f64 {
    30.0
}

fn default_time_limit_ms() -> u64 {
    500
}

fn default_max_wave_parcels() -> usize {
    400
}

fn default_rush_margin_s() -> f64 {
    1800.0
}

// The planner's own defaults (`plan::route::Hysteresis`; a test in
// `runtime::waves` holds them equal).
fn default_rebuild_min_gain_m() -> f64 {
    500.0
}

fn default_rebuild_min_gain_share() -> f64 {
    0.05
}

fn default_rebuild_max_delay_s() -> f64 {
    900.0
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            speed_kmh: default_speed_kmh(),
            detour_factor: default_detour_factor(),
            service_s: default_service_s(),
            handover_s: default_handover_s(),
            time_limit_ms: default_time_limit_ms(),
            objective: RoutingObjective::default(),
            max_wave_parcels: default_max_wave_parcels(),
            rush_margin_s: default_rush_margin_s(),
            matrix_file: None,
            rebuild_min_gain_m: default_rebuild_min_gain_m(),
            rebuild_min_gain_share: default_rebuild_min_gain_share(),
            rebuild_max_delay_s: default_rebuild_max_delay_s(),
        }
    }
}

/// How long after delivery a brand may ask for a return (`[returns]`),
/// with exceptions per brand (`[[returns.brands]]`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReturnsConfig {
    /// Days after delivery during which a return may be requested.
    #[serde(default = "default_return_window_days")]
    pub window_days: u32,
    #[serde(default)]
    pub brands: Vec<BrandReturnsConfig>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrandReturnsConfig {
    pub brand: String,
    pub window_days: u32,
}

fn default_return_window_days() -> u32 {
    14
}

impl Default for ReturnsConfig {
    fn default() -> Self {
        Self {
            window_days: default_return_window_days(),
            brands: Vec::new(),
        }
    }
}

impl ReturnsConfig {
    /// The return window of `brand`, in days.
    pub fn window_days_for(&self, brand: &str) -> u32 {
        self.brands
            .iter()
            .find(|b| b.brand == brand)
            .map_or(self.window_days, |b| b.window_days)
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ZoneConfig {
    pub id: String,
    /// Boundary corners as `[lat, lon]`.
    pub corners: Vec<[f64; 2]>,
    /// When courier planning waves run (cron, seconds first, on the simulated clock).
    pub planning_cron: String,
    /// IANA time zone `planning_cron` is read in (`Europe/Berlin`); UTC
    /// when absent.
    #[serde(default)]
    pub timezone: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FactoryConfig {
    pub id: String,
    pub name: String,
    pub lat: f64,
    pub lon: f64,
    /// The most its machines may draw together while starting jobs (each
    /// machine's `startup_power_w` for its `startup_ms` after a start, from
    /// its profile): starts are staggered to stay under it. None: no limit.
    #[serde(default)]
    pub power_budget_w: Option<u32>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MachineConfig {
    pub id: String,
    pub factory: String,
    /// A profile model from adapters/profiles (e.g. `acme-dtg-200`).
    pub model: String,
    /// Modbus TCP address `host:port` (Modbus machines only).
    #[serde(default)]
    pub address: Option<SocketAddr>,
    /// An MQTT machine's serial, filled into its profile's `{serial}`
    /// topics; defaults to the machine id (MQTT machines only).
    #[serde(default)]
    pub serial: Option<String>,
    /// Materials loaded now; defaults to every material of the profile.
    #[serde(default)]
    pub materials: Option<Vec<String>>,
    #[serde(default = "default_poll_ms")]
    pub poll_interval_ms: u64,
    #[serde(default = "default_timeout_ms")]
    pub request_timeout_ms: u64,
    /// When the machine works: without it, always. The dispatcher starts a
    /// job only inside a shift (it may run past the shift's end).
    #[serde(default)]
    pub calendar: Option<CalendarConfig>,
    /// How fast it works against the SKUs' `seconds_per_unit` (2.0: a step
    /// of 90 s a unit takes 45 s here): the `shop` planner's durations on
    /// it, the `queue` rule's queue lengths in time, and the promise's
    /// estimate (at the mean speed of a process's machines). Default 1.
    #[serde(default = "default_speed")]
    pub speed: f64,
    /// Minutes it takes to change over from one material to another (the
    /// `shop` planner groups jobs of a material to save them). Default 0.
    #[serde(default)]
    pub setup_minutes: f64,
}

fn default_speed() -> f64 {
    1.0
}

/// A machine's working calendar.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarConfig {
    /// The shifts (at least one); they may overlap.
    pub shifts: Vec<ShiftConfig>,
    /// The IANA time zone the shifts' start times are in (`Europe/Berlin`:
    /// a shift at 08:00 stays at 08:00 local time across clock changes);
    /// none: UTC.
    #[serde(default)]
    pub timezone: Option<String>,
}

/// One shift: when it starts (a cron expression on the domain clock, in the
/// calendar's `timezone` or UTC, 6 or 7 fields, seconds first:
/// `0 0 8 * * Mon-Fri`) and how long it lasts.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShiftConfig {
    pub start: String,
    pub duration_minutes: u32,
}

impl CalendarConfig {
    /// The shifts as the domain's calendar takes them (a shift that does
    /// not parse, which validation refuses, is left out).
    pub fn shifts(&self) -> Vec<crate::domain::calendar::Shift> {
        self.shifts
            .iter()
            .filter_map(|shift| {
                let shift = crate::domain::calendar::Shift::new(
                    &shift.start,
                    i64::from(shift.duration_minutes) * 60_000,
                )
                .ok()?;
                match &self.timezone {
                    Some(zone) => shift.in_zone(zone).ok(),
                    None => Some(shift),
                }
            })
            .collect()
    }
}

impl MachineConfig {
    /// The serial an MQTT machine's topics are made with: `serial`, or the id.
    pub fn serial(&self) -> &str {
        self.serial.as_deref().unwrap_or(&self.id)
    }
}

/// What is wrong with each of `shifts` (under `{key}.shifts[i]`).
fn shift_problems(key: &str, shifts: &[ShiftConfig], problem: &mut impl FnMut(String, String)) {
    for (index, shift) in shifts.iter().enumerate() {
        let at = format!("{key}.shifts[{index}]");
        if let Err(err) = shift.start.parse::<cron::Schedule>() {
            problem(
                format!("{at}.start"),
                format!("not a cron expression (sec min hour day month weekday): {err}"),
            );
        }
        if !(1..=10_080).contains(&shift.duration_minutes) {
            problem(
                format!("{at}.duration_minutes"),
                format!("must be 1..=10080 (a week), got {}", shift.duration_minutes),
            );
        }
    }
}

/// Whether `zone`, if given, names an IANA time zone (under `key`).
fn zone_problem(key: &str, zone: Option<&str>, problem: &mut impl FnMut(String, String)) {
    if let Some(Err(reason)) = zone.map(crate::domain::calendar::parse_zone) {
        problem(key.to_string(), reason);
    }
}

fn default_poll_ms() -> u64 {
    200
}

fn default_timeout_ms() -> u64 {
    1_000
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CourierConfig {
    pub id: String,
    pub zone: String,
    pub lat: f64,
    pub lon: f64,
    /// Orders one route can carry.
    pub capacity: usize,
    /// When the courier works (cron start and length, as a machine's
    /// calendar; none: always). A wave plans stops only within the shift
    /// the courier is in, or the next one.
    #[serde(default)]
    pub shifts: Vec<ShiftConfig>,
    /// The IANA time zone of the shifts' start times; none: UTC.
    #[serde(default)]
    pub timezone: Option<String>,
    /// Where each route ends (a depot); none: at its last stop.
    #[serde(default)]
    pub end_lat: Option<f64>,
    #[serde(default)]
    pub end_lon: Option<f64>,
    /// Litres it carries at once, counted for SKUs with a `volume_l`
    /// (none: only `capacity` counts).
    #[serde(default)]
    pub volume_l: Option<f64>,
}

impl CourierConfig {
    /// The shifts as the domain's calendar takes them (a shift that does
    /// not parse, which validation refuses, is left out).
    pub fn shifts(&self) -> Vec<crate::domain::calendar::Shift> {
        CalendarConfig {
            shifts: self.shifts.clone(),
            timezone: self.timezone.clone(),
        }
        .shifts()
    }

    /// Where its routes end, if it has a depot.
    pub fn end(&self) -> Option<Location> {
        Some(Location::new(self.end_lat?, self.end_lon?))
    }
}

/// Every problem found in one configuration file.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub file: String,
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for problem in &self.problems {
            if !first {
                writeln!(f)?;
            }
            first = false;
            write!(f, "{problem} ({})", self.file)?;
        }
        Ok(())
    }
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let (config, problems) = Config::load_unchecked(path)?;
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError {
                file: path.display().to_string(),
                problems,
            })
        }
    }

    /// The file as read, and the problems of its values (none: valid). A
    /// file that cannot be read or does not deserialize is an error; value
    /// problems are returned beside the config, so that a caller can report
    /// them together with what depends on more than the file (profiles).
    pub fn load_unchecked(path: &Path) -> Result<(Config, Vec<String>), ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|err| ConfigError {
            file: file.clone(),
            problems: vec![format!("cannot read: {err}")],
        })?;
        let mut config = Config::deserialize(&text, &file)?;
        let base = path.parent().unwrap_or(Path::new("."));
        for dir in &mut config.profile_dirs {
            if dir.is_relative() {
                *dir = base.join(&*dir);
            }
        }
        if let Some(file) = &mut config.routing.matrix_file
            && file.is_relative()
        {
            *file = base.join(&*file);
        }
        let problems = config.problems();
        Ok((config, problems))
    }

    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let config = Config::deserialize(text, file)?;
        let problems = config.problems();
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError {
                file: file.into(),
                problems,
            })
        }
    }

    fn deserialize(text: &str, file: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|err| {
            // A TOML syntax error stops there; wrong keys and types are
            // looked for in every section and entry, and reported together
            // with the problems of the values that could be read.
            let (mut problems, clean) = shape_problems(text);
            if problems.is_empty() {
                problems.push(describe_toml_error(&err));
            } else if let Some(Ok(rest)) =
                clean.map(|clean| toml::Value::Table(clean).try_into::<Config>())
            {
                for problem in rest.problems() {
                    if !problems.contains(&problem) {
                        problems.push(problem);
                    }
                }
            }
            ConfigError {
                file: file.into(),
                problems,
            }
        })
    }

    pub fn demo() -> Result<Config, ConfigError> {
        Config::parse(DEMO_TOML, "config/demo.toml (built in)")
    }

    /// Every problem with the values, each as `key: reason`.
    pub fn problems(&self) -> Vec<String> {
        let mut out = self.cluster.problems();
        let mut problem = |key: String, reason: String| out.push(format!("{key}: {reason}"));
        if !(self.time_scale.is_finite() && (0.001..=100_000.0).contains(&self.time_scale)) {
            problem(
                "time_scale".into(),
                format!("must be 0.001..=100000, got {}", self.time_scale),
            );
        }
        if !(1024..=256 * 1024 * 1024).contains(&self.http.max_body_bytes) {
            problem(
                "http.max_body_bytes".into(),
                format!("must be 1024..=268435456, got {}", self.http.max_body_bytes),
            );
        }
        if let Err(err) = self.forecasts.refit_cron.parse::<cron::Schedule>() {
            problem(
                "forecasts.refit_cron".into(),
                format!("not a cron expression (sec min hour day month weekday): {err}"),
            );
        }
        zone_problem(
            "forecasts.timezone",
            self.forecasts.timezone.as_deref(),
            &mut problem,
        );
        if !(1..=366).contains(&self.forecasts.horizon_days) {
            problem(
                "forecasts.horizon_days".into(),
                format!("must be 1..=366, got {}", self.forecasts.horizon_days),
            );
        }
        if self.forecasts.attribution_days > 60 {
            problem(
                "forecasts.attribution_days".into(),
                format!("must be 0..=60, got {}", self.forecasts.attribution_days),
            );
        }
        let hooks = &self.webhooks;
        let ranges: [(&str, u64, std::ops::RangeInclusive<u64>); 9] = [
            (
                "webhooks.first_retry_ms",
                hooks.first_retry_ms,
                10..=86_400_000,
            ),
            (
                "webhooks.max_retry_ms",
                hooks.max_retry_ms,
                hooks.first_retry_ms..=86_400_000,
            ),
            (
                "webhooks.give_up_after_ms",
                hooks.give_up_after_ms,
                100..=30 * 86_400_000,
            ),
            ("webhooks.timeout_ms", hooks.timeout_ms, 100..=120_000),
            ("webhooks.concurrency", hooks.concurrency as u64, 1..=256),
            (
                "webhooks.rotation_grace_ms",
                hooks.rotation_grace_ms,
                0..=30 * 86_400_000,
            ),
            (
                "http.header_read_timeout_ms",
                self.http.header_read_timeout_ms,
                100..=600_000,
            ),
            (
                "http.request_timeout_ms",
                self.http.request_timeout_ms,
                100..=3_600_000,
            ),
            (
                "http.max_connections",
                self.http.max_connections as u64,
                1..=1_000_000,
            ),
        ];
        for (key, value, range) in ranges {
            if !range.contains(&value) {
                problem(
                    key.into(),
                    format!("must be {}..={}, got {value}", range.start(), range.end()),
                );
            }
        }
        if let MqttConfig::Embedded { listen } = &self.mqtt
            && listen.port() != 0
            && listen.port() == self.http.listen.port()
            && (listen.ip() == self.http.listen.ip()
                || listen.ip().is_unspecified()
                || self.http.listen.ip().is_unspecified())
        {
            problem(
                "mqtt.listen".into(),
                format!(
                    "{listen} is also http.listen ({}); the two need their own ports",
                    self.http.listen
                ),
            );
        }
        let url = &self.database.url;
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            problem(
                "database.url".into(),
                format!(
                    "must start with sqlite: or postgres://, got {:?}",
                    redact(url)
                ),
            );
        }
        let intake = &self.intake;
        if !(1..=24 * 14).contains(&intake.promise_hours) {
            problem(
                "intake.promise_hours".into(),
                format!("must be 1..=336, got {}", intake.promise_hours),
            );
        }
        if intake.min_lead_hours < 0 || intake.min_lead_hours > intake.promise_hours {
            problem(
                "intake.min_lead_hours".into(),
                format!("must be 0..=promise_hours, got {}", intake.min_lead_hours),
            );
        }
        if intake.delivery_buffer_hours < 0 || intake.delivery_buffer_hours >= intake.promise_hours
        {
            problem(
                "intake.delivery_buffer_hours".into(),
                format!(
                    "must be 0..promise_hours, got {}",
                    intake.delivery_buffer_hours
                ),
            );
        }
        if !(10..=60_000).contains(&self.scheduler.interval_ms) {
            problem(
                "scheduler.interval_ms".into(),
                format!("must be 10..=60000, got {}", self.scheduler.interval_ms),
            );
        }
        if !(1..=100).contains(&self.scheduler.max_queue) {
            problem(
                "scheduler.max_queue".into(),
                format!("must be 1..=100, got {}", self.scheduler.max_queue),
            );
        }
        if !(1..=10_000).contains(&self.scheduler.plan_budget_ms) {
            problem(
                "scheduler.plan_budget_ms".into(),
                format!("must be 1..=10000, got {}", self.scheduler.plan_budget_ms),
            );
        }
        if !(1..=20).contains(&self.handoffs.max_wrong_codes) {
            problem(
                "handoffs.max_wrong_codes".into(),
                format!("must be 1..=20, got {}", self.handoffs.max_wrong_codes),
            );
        }
        let routing = &self.routing;
        if !(routing.speed_kmh.is_finite() && (1.0..=200.0).contains(&routing.speed_kmh)) {
            problem(
                "routing.speed_kmh".into(),
                format!("must be 1..=200, got {}", routing.speed_kmh),
            );
        }
        if !(routing.detour_factor.is_finite() && (1.0..=5.0).contains(&routing.detour_factor)) {
            problem(
                "routing.detour_factor".into(),
                format!("must be 1..=5, got {}", routing.detour_factor),
            );
        }
        if !(routing.service_s.is_finite() && (0.0..=3600.0).contains(&routing.service_s)) {
            problem(
                "routing.service_s".into(),
                format!("must be 0..=3600, got {}", routing.service_s),
            );
        }
        if !(routing.handover_s.is_finite() && (0.0..=3600.0).contains(&routing.handover_s)) {
            problem(
                "routing.handover_s".into(),
                format!("must be 0..=3600, got {}", routing.handover_s),
            );
        }
        if !(10..=60_000).contains(&routing.time_limit_ms) {
            problem(
                "routing.time_limit_ms".into(),
                format!("must be 10..=60000, got {}", routing.time_limit_ms),
            );
        }
        if !(1..=100_000).contains(&routing.max_wave_parcels) {
            problem(
                "routing.max_wave_parcels".into(),
                format!("must be 1..=100000, got {}", routing.max_wave_parcels),
            );
        }
        if !(routing.rush_margin_s.is_finite() && (0.0..=86_400.0).contains(&routing.rush_margin_s))
        {
            problem(
                "routing.rush_margin_s".into(),
                format!("must be 0..=86400, got {}", routing.rush_margin_s),
            );
        }
        for (key, value, range) in [
            (
                "routing.rebuild_min_gain_m",
                routing.rebuild_min_gain_m,
                0.0..=1e7,
            ),
            (
                "routing.rebuild_min_gain_share",
                routing.rebuild_min_gain_share,
                0.0..=1.0,
            ),
            (
                "routing.rebuild_max_delay_s",
                routing.rebuild_max_delay_s,
                0.0..=604_800.0,
            ),
        ] {
            if !(value.is_finite() && range.contains(&value)) {
                problem(
                    key.into(),
                    format!("must be {}..={}, got {value}", range.start(), range.end()),
                );
            }
        }
        if !(1..=10).contains(&self.handoffs.max_attempts) {
            problem(
                "handoffs.max_attempts".into(),
                format!("must be 1..=10, got {}", self.handoffs.max_attempts),
            );
        }
        if !(1..=365).contains(&self.returns.window_days) {
            problem(
                "returns.window_days".into(),
                format!("must be 1..=365, got {}", self.returns.window_days),
            );
        }
        let mut return_brands = BTreeSet::new();
        for brand in &self.returns.brands {
            let key = format!("returns.brands.{}", brand.brand);
            if !return_brands.insert(brand.brand.as_str()) {
                problem(key.clone(), "duplicate brand".into());
            }
            if !(1..=365).contains(&brand.window_days) {
                problem(
                    format!("{key}.window_days"),
                    format!("must be 1..=365, got {}", brand.window_days),
                );
            }
        }
        let mut zone_ids = BTreeSet::new();
        for zone in &self.zones {
            let key = format!("zones.{}", zone.id);
            if !zone_ids.insert(zone.id.as_str()) {
                problem(key.clone(), "duplicate zone id".into());
            }
            if zone.corners.len() < 3 {
                problem(
                    format!("{key}.corners"),
                    format!("needs at least 3 corners, got {}", zone.corners.len()),
                );
            }
            for (index, [lat, lon]) in zone.corners.iter().enumerate() {
                if !Location::new(*lat, *lon).is_valid() {
                    problem(
                        format!("{key}.corners[{index}]"),
                        format!("[{lat}, {lon}] is not a valid [lat, lon]"),
                    );
                }
            }
            if let Err(err) = zone.planning_cron.parse::<cron::Schedule>() {
                problem(
                    format!("{key}.planning_cron"),
                    format!("{err} (6 or 7 fields, seconds first, e.g. \"0 0 */2 * * *\")"),
                );
            }
            zone_problem(
                &format!("{key}.timezone"),
                zone.timezone.as_deref(),
                &mut problem,
            );
        }
        let mut factory_ids = BTreeSet::new();
        for factory in &self.factories {
            let key = format!("factories.{}", factory.id);
            if !factory_ids.insert(factory.id.as_str()) {
                problem(key.clone(), "duplicate factory id".into());
            }
            if factory.power_budget_w == Some(0) {
                problem(
                    format!("{key}.power_budget_w"),
                    "must be more than 0 watts (leave it out for no budget)".into(),
                );
            }
            if !Location::new(factory.lat, factory.lon).is_valid() {
                problem(
                    key,
                    format!("({}, {}) is not a valid lat/lon", factory.lat, factory.lon),
                );
            }
        }
        let mut machine_ids = BTreeSet::new();
        for machine in &self.machines {
            let key = format!("machines.{}", machine.id);
            if !machine_ids.insert(machine.id.as_str()) {
                problem(key.clone(), "duplicate machine id".into());
            }
            if !factory_ids.contains(machine.factory.as_str()) {
                problem(
                    format!("{key}.factory"),
                    format!("unknown factory {:?}", machine.factory),
                );
            }
            if !(20..=60_000).contains(&machine.poll_interval_ms) {
                problem(
                    format!("{key}.poll_interval_ms"),
                    format!("must be 20..=60000, got {}", machine.poll_interval_ms),
                );
            }
            if !(50..=60_000).contains(&machine.request_timeout_ms) {
                problem(
                    format!("{key}.request_timeout_ms"),
                    format!("must be 50..=60000, got {}", machine.request_timeout_ms),
                );
            }
            if !(machine.speed.is_finite() && (0.05..=20.0).contains(&machine.speed)) {
                problem(
                    format!("{key}.speed"),
                    format!(
                        "must be 0.05..=20 (times the SKUs' seconds_per_unit pace), got {}",
                        machine.speed
                    ),
                );
            }
            if !(machine.setup_minutes.is_finite()
                && (0.0..=1440.0).contains(&machine.setup_minutes))
            {
                problem(
                    format!("{key}.setup_minutes"),
                    format!("must be 0..=1440, got {}", machine.setup_minutes),
                );
            }
            if let Some(calendar) = &machine.calendar {
                if calendar.shifts.is_empty() {
                    problem(
                        format!("{key}.calendar.shifts"),
                        "needs at least one shift (leave the calendar out for a machine that always works)".into(),
                    );
                }
                shift_problems(&format!("{key}.calendar"), &calendar.shifts, &mut problem);
                zone_problem(
                    &format!("{key}.calendar.timezone"),
                    calendar.timezone.as_deref(),
                    &mut problem,
                );
            }
        }
        let mut courier_ids = BTreeSet::new();
        for courier in &self.couriers {
            let key = format!("couriers.{}", courier.id);
            if !courier_ids.insert(courier.id.as_str()) {
                problem(key.clone(), "duplicate courier id".into());
            }
            if !zone_ids.contains(courier.zone.as_str()) {
                problem(
                    format!("{key}.zone"),
                    format!("unknown zone {:?}", courier.zone),
                );
            }
            if !(1..=500).contains(&courier.capacity) {
                problem(
                    format!("{key}.capacity"),
                    format!("must be 1..=500, got {}", courier.capacity),
                );
            }
            if !Location::new(courier.lat, courier.lon).is_valid() {
                problem(
                    key.clone(),
                    format!("({}, {}) is not a valid lat/lon", courier.lat, courier.lon),
                );
            }
            match (courier.end_lat, courier.end_lon) {
                (None, None) => {}
                (Some(lat), Some(lon)) if Location::new(lat, lon).is_valid() => {}
                (Some(lat), Some(lon)) => problem(
                    format!("{key}.end_lat"),
                    format!("({lat}, {lon}) is not a valid lat/lon"),
                ),
                (Some(_), None) => problem(
                    format!("{key}.end_lon"),
                    "missing: end_lat and end_lon go together".into(),
                ),
                (None, Some(_)) => problem(
                    format!("{key}.end_lat"),
                    "missing: end_lat and end_lon go together".into(),
                ),
            }
            shift_problems(&key, &courier.shifts, &mut problem);
            zone_problem(
                &format!("{key}.timezone"),
                courier.timezone.as_deref(),
                &mut problem,
            );
            if let Some(litres) = courier.volume_l
                && !(litres.is_finite() && litres > 0.0 && litres <= 1e6)
            {
                problem(
                    format!("{key}.volume_l"),
                    format!("must be > 0 and at most 1000000 litres, got {litres}"),
                );
            }
        }
        let mut sku_codes = BTreeSet::new();
        for sku in &self.skus {
            let key = format!("skus.{}", sku.code);
            if !sku_codes.insert(sku.code.as_str()) {
                problem(key.clone(), "duplicate SKU code".into());
            }
            if sku.route.is_empty() {
                problem(format!("{key}.route"), "needs at least one step".into());
            }
            if let Some(litres) = sku.volume_l
                && !(litres.is_finite() && litres > 0.0 && litres <= 10_000.0)
            {
                problem(
                    format!("{key}.volume_l"),
                    format!("must be > 0 and at most 10000 litres, got {litres}"),
                );
            }
            for (index, step) in sku.route.iter().enumerate() {
                if !(step.seconds_per_unit.is_finite() && step.seconds_per_unit > 0.0) {
                    problem(
                        format!("{key}.route[{index}].seconds_per_unit"),
                        format!("must be > 0, got {}", step.seconds_per_unit),
                    );
                }
            }
        }
        out
    }

    pub fn zones(&self) -> Vec<Zone> {
        self.zones
            .iter()
            .map(|zone| {
                let corners: Vec<Location> = zone
                    .corners
                    .iter()
                    .map(|[lat, lon]| Location::new(*lat, *lon))
                    .collect();
                Zone::from_corners(zone.id.clone(), &corners)
            })
            .collect()
    }

    pub fn catalog(&self) -> Catalog {
        Catalog::new(self.skus.iter().cloned())
    }

    /// Every process some SKU needs.
    pub fn processes(&self) -> BTreeSet<String> {
        self.skus
            .iter()
            .flat_map(|sku| {
                sku.route
                    .iter()
                    .map(|step: &ProcessStep| step.process.clone())
            })
            .collect()
    }
}

/// Every unknown key and wrong type in the file, each at its dotted key
/// (`machines.press-2.adress: unknown field `adress`, expected ...`), or the
/// one syntax error that stops the file from being read at all; and the file
/// without the keys at fault (entries and sections that cannot do without
/// them left out), whose values can then be checked too.
fn shape_problems(text: &str) -> (Vec<String>, Option<toml::Table>) {
    /// A section (or top-level value) read as `T`: its problems, and its
    /// value without the keys at fault (None: it cannot be read).
    fn section<T: serde::de::DeserializeOwned>(
        key: &str,
        value: &toml::Value,
        out: &mut Vec<String>,
    ) -> Option<toml::Value> {
        let (problems, clean) = value_problems::<T>(value);
        for line in problems {
            // A section's problems start at their own key (`.listen: ...`).
            let sep = if line.starts_with(['.', ':']) {
                ""
            } else {
                ": "
            };
            out.push(format!("{key}{sep}{line}"));
        }
        clean
    }
    /// An array of entries read as `T`s: each entry's problems under its id,
    /// and the entries that can be read.
    fn each<T: serde::de::DeserializeOwned>(
        key: &str,
        value: &toml::Value,
        out: &mut Vec<String>,
    ) -> Option<toml::Value> {
        let Some(items) = value.as_array() else {
            return section::<Vec<T>>(key, value, out);
        };
        let mut kept = Vec::new();
        for (index, item) in items.iter().enumerate() {
            // Entries are named by their id (or code) where they have one.
            let name = item
                .get("id")
                .or_else(|| item.get("code"))
                .and_then(toml::Value::as_str)
                .map_or_else(|| format!("[{index}]"), |id| format!(".{id}"));
            let (problems, clean) = value_problems::<T>(item);
            for problem in problems {
                out.push(format!("{key}{name}{problem}"));
            }
            kept.extend(clean);
        }
        Some(toml::Value::Array(kept))
    }
    let table: toml::Table = match text.parse() {
        Ok(table) => table,
        Err(err) => return (vec![describe_toml_error(&err)], None),
    };
    let mut out = Vec::new();
    let mut clean = toml::Table::new();
    for (key, value) in &table {
        let kept = match key.as_str() {
            "time_scale" => section::<f64>(key, value, &mut out),
            "profile_dirs" => section::<Vec<std::path::PathBuf>>(key, value, &mut out),
            "http" => section::<HttpConfig>(key, value, &mut out),
            "database" => section::<DatabaseConfig>(key, value, &mut out),
            "mqtt" => section::<MqttConfig>(key, value, &mut out),
            "intake" => section::<IntakeConfig>(key, value, &mut out),
            "scheduler" => section::<SchedulerConfig>(key, value, &mut out),
            "cluster" => section::<ClusterConfig>(key, value, &mut out),
            "webhooks" => section::<WebhooksConfig>(key, value, &mut out),
            "forecasts" => section::<ForecastsConfig>(key, value, &mut out),
            "handoffs" => section::<HandoffsConfig>(key, value, &mut out),
            "routing" => section::<RoutingConfig>(key, value, &mut out),
            "returns" => section::<ReturnsConfig>(key, value, &mut out),
            "zones" => each::<ZoneConfig>(key, value, &mut out),
            "factories" => each::<FactoryConfig>(key, value, &mut out),
            "machines" => each::<MachineConfig>(key, value, &mut out),
            "couriers" => each::<CourierConfig>(key, value, &mut out),
            "skus" => each::<Sku>(key, value, &mut out),
            _ => {
                out.push(format!(
                    "{key}: unknown key (expected time_scale, profile_dirs, http, database, mqtt, intake, \
                     scheduler, webhooks, forecasts, handoffs, routing, returns, zones, factories, machines, couriers, skus)"
                ));
                None
            }
        };
        if let Some(kept) = kept {
            clean.insert(key.clone(), kept);
        }
    }
    (out, Some(clean))
}

/// Every problem serde finds reading `value` as `T`, each as `.dotted.key:
/// reason` (`: reason` for the value itself). serde stops at the first, so
/// the key at fault is taken out and the value read again, until it reads or
/// a required key is missing.
fn value_problems<T: serde::de::DeserializeOwned>(
    value: &toml::Value,
) -> (Vec<String>, Option<toml::Value>) {
    const MOST: usize = 32;
    let mut value = value.clone();
    let mut out = Vec::new();
    let mut removed: Vec<Vec<String>> = Vec::new();
    while out.len() < MOST {
        let err = match serde_path_to_error::deserialize::<_, T>(value.clone()) {
            Ok(_) => return (out, Some(value)),
            Err(err) => err,
        };
        let message = err.inner().message().trim().to_string();
        let mut keys: Vec<String> = err
            .path()
            .iter()
            .filter_map(|segment| match segment {
                serde_path_to_error::Segment::Map { key } => Some(key.clone()),
                serde_path_to_error::Segment::Seq { index } => Some(index.to_string()),
                _ => None,
            })
            .collect();
        let named = |prefix: &str| {
            message
                .strip_prefix(prefix)
                .and_then(|rest| rest.split('`').next())
                .map(str::to_string)
        };
        // The key shown, and the key taken out before reading again: a
        // missing field is shown at itself, and its table is taken out.
        let mut shown = keys.clone();
        if let Some(field) = named("unknown field `") {
            if keys.last() != Some(&field) {
                keys.push(field);
            }
            shown.clone_from(&keys);
        } else if let Some(field) = named("missing field `") {
            shown.push(field);
            if removed.contains(&shown) {
                // Its wrong value is already reported.
                break;
            }
        }
        let dotted: String = shown.iter().map(|k| format!(".{k}")).collect();
        out.push(format!("{dotted}: {message}"));
        if keys.is_empty() || !remove_key(&mut value, &keys) {
            break;
        }
        removed.push(keys);
    }
    (out, None)
}

/// Takes the key at `path` out of `value`; false when there is none.
fn remove_key(value: &mut toml::Value, path: &[String]) -> bool {
    let Some((last, parents)) = path.split_last() else {
        return false;
    };
    let mut at = value;
    for key in parents {
        let next = match at {
            toml::Value::Table(table) => table.get_mut(key),
            toml::Value::Array(items) => key.parse::<usize>().ok().and_then(|i| items.get_mut(i)),
            _ => None,
        };
        let Some(next) = next else {
            return false;
        };
        at = next;
    }
    match at {
        toml::Value::Table(table) => table.remove(last).is_some(),
        toml::Value::Array(items) => match last.parse::<usize>() {
            Ok(i) if i < items.len() => {
                items.remove(i);
                true
            }
            _ => false,
        },
        _ => false,
    }
}

fn describe_toml_error(err: &toml::de::Error) -> String {
    // toml's message names the key and the line; keep it on one line.
    err.to_string()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Hides a password in a database URL for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let userinfo = &url[scheme + 3..at];
            match userinfo.split_once(':') {
                Some((user, _)) => format!("{}://{user}:***@{}", &url[..scheme], &url[at + 1..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cluster_timings_must_let_a_daemon_stop_before_its_lease_expires() {
        let ok = super::Config::parse(
            "[cluster]\ndaemon_id = \"a\"\nlease_ms = 5000\nrenew_interval_ms = 1000\nrenew_margin_ms = 1500\n",
            "t.toml",
        )
        .expect("valid");
        assert_eq!(ok.cluster.daemon_id(), "a");
        let err = super::Config::parse(
            "[cluster]\nlease_ms = 4000\nrenew_interval_ms = 1500\nrenew_margin_ms = 4000\n",
            "t.toml",
        )
        .expect_err("invalid");
        let keys: Vec<&str> = err
            .problems
            .iter()
            .map(|p| p.split(':').next().unwrap_or(""))
            .collect();
        assert_eq!(
            keys,
            ["cluster.renew_margin_ms", "cluster.renew_interval_ms"],
            "{err}"
        );
        // A wrong key in [cluster] is reported with its place.
        let err = super::Config::parse("[cluster]\nlease = 5\n", "t.toml").expect_err("key");
        assert!(err.problems[0].starts_with("cluster"), "{err}");
        // Defaults: a take-over within lease_ms + renew_interval_ms <= 20 s.
        let defaults = super::ClusterConfig::default();
        assert!(defaults.lease_ms + defaults.renew_interval_ms <= 20_000);
        assert!(defaults.problems().is_empty());
        assert!(!defaults.daemon_id().is_empty());
    }

    #[test]
    fn wrong_keys_and_types_are_reported_together_with_their_places() {
        let text = "time_scale = \"fast\"\ncolour = 1\n[http]\nlisten = \"127.0.0.1:8080\"\nmax_body_bytes = 1024\nmax_conections = 5\n\
                    [[machines]]\nid = \"press-2\"\nfactory = \"north\"\nmodel = \"m\"\nadress = \"127.0.0.1:502\"\n\
                    [[machines]]\nid = \"ok\"\nfactory = \"north\"\nmodel = \"m\"\naddress = \"127.0.0.1:502\"\n";
        let err = super::Config::parse(text, "t.toml").expect_err("invalid");
        let keys: Vec<&str> = err
            .problems
            .iter()
            .map(|p| p.split(':').next().unwrap_or(""))
            .collect();
        assert_eq!(
            keys,
            [
                "colour",
                "http.max_conections",
                "machines.press-2.adress",
                "time_scale",
                // The values of what could be read, checked too.
                "machines.press-2.factory",
                "machines.ok.factory"
            ],
            "{err}"
        );
        // A syntax error is one problem, with its line.
        let err = super::Config::parse("[http\n", "t.toml").expect_err("syntax");
        assert_eq!(err.problems.len(), 1, "{err}");
        assert!(err.problems[0].contains("line 1"), "{err}");
    }

    #[test]
    fn every_bad_key_of_a_section_is_reported_at_its_dotted_key() {
        let text = "time_scale = \"fast\"\n[http]\nlisten = \"127.0.0.1:8080\"\nmax_body_bytes = \"big\"\nmax_conections = 5\n\
                    [[machines]]\nid = \"p\"\nfactory = \"north\"\nmodel = \"m\"\naddress = \"127.0.0.1:502\"\n\
                    speed = \"fast\"\nadress = 1\n[[machines]]\nfactory = \"north\"\n";
        let err = super::Config::parse(text, "t.toml").expect_err("invalid");
        let mut keys: Vec<&str> = err
            .problems
            .iter()
            .map(|p| p.split(':').next().unwrap_or(""))
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "http.max_body_bytes",
                "http.max_conections",
                "machines.p.adress",
                "machines.p.factory",
                "machines.p.speed",
                "machines[1].id",
                "time_scale"
            ],
            "{err}"
        );
        let speed = err
            .problems
            .iter()
            .find(|p| p.starts_with("machines.p.speed"))
            .expect("speed");
        assert!(speed.contains("invalid type"), "{speed}");
        assert!(err.to_string().contains("t.toml"), "{err}");
        // Values out of range are reported beside unknown keys.
        let text = "colour = 1\ntime_scale = -5.0\n[http]\nlisten = \"127.0.0.1:8080\"\nmax_body_bytes = 5\nmax_conections = 5\n";
        let err = super::Config::parse(text, "t.toml").expect_err("invalid");
        let mut keys: Vec<&str> = err
            .problems
            .iter()
            .map(|p| p.split(':').next().unwrap_or(""))
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "colour",
                "http.max_body_bytes",
                "http.max_conections",
                "time_scale"
            ],
            "{err}"
        );
    }

    #[test]
    fn known_sections_are_not_reported_with_a_wrong_key_elsewhere() {
        // One wrong key: only it is reported, not the valid sections beside it.
        let text = "colour = 1\n[webhooks]\n[forecasts]\n[routing]\nspeed_kmh = 20.0\n";
        let err = super::Config::parse(text, "t.toml").expect_err("invalid");
        assert_eq!(err.problems.len(), 1, "{:?}", err.problems);
        assert!(err.problems[0].starts_with("colour:"), "{:?}", err.problems);
        let text = "[routing]\nspeed = 20.0\n";
        let err = super::Config::parse(text, "t.toml").expect_err("invalid");
        assert!(
            err.problems[0].starts_with("routing.speed: unknown field `speed`"),
            "{:?}",
            err.problems
        );
    }

    #[test]
    fn courier_shifts_and_depots_are_read_and_checked() {
        let text = "id = \"van-9\"\nzone = \"berlin\"\nlat = 52.5\nlon = 13.4\ncapacity = 20\n\
                    end_lat = 52.51\nend_lon = 13.41\n\
                    shifts = [{ start = \"0 0 8 * * Mon-Fri\", duration_minutes = 600 }]\n";
        let courier: super::CourierConfig = toml::from_str(text).expect("parses");
        assert_eq!(courier.end(), Some(super::Location::new(52.51, 13.41)));
        assert_eq!(courier.shifts().len(), 1);

        let mut config = super::Config::demo().expect("demo config");
        let id = config.couriers[0].id.clone();
        config.couriers[0].end_lat = Some(52.5);
        config.couriers[0].shifts = vec![super::ShiftConfig {
            start: "at eight".into(),
            duration_minutes: 0,
        }];
        config.couriers[1].end_lat = Some(95.0);
        config.couriers[1].end_lon = Some(13.4);
        let other = config.couriers[1].id.clone();
        let problems = config.problems();
        for key in [
            format!("couriers.{id}.end_lon: missing"),
            format!("couriers.{id}.shifts[0].start: not a cron expression"),
            format!("couriers.{id}.shifts[0].duration_minutes: must be 1..=10080"),
            format!("couriers.{other}.end_lat: (95, 13.4) is not a valid lat/lon"),
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(&key)),
                "{key}: {problems:?}"
            );
        }
    }

    #[test]
    fn planning_and_refit_crons_take_a_time_zone() {
        let mut config = super::Config::demo().expect("demo config");
        assert!(config.problems().is_empty(), "{:?}", config.problems());
        config.zones[0].timezone = Some("Europe/Berlin".into());
        config.forecasts.timezone = Some("America/New_York".into());
        assert!(config.problems().is_empty(), "{:?}", config.problems());
        config.zones[0].timezone = Some("Europe/Atlantis".into());
        config.forecasts.timezone = Some("UTC+2".into());
        let problems = config.problems();
        for key in [
            format!(
                "zones.{}.timezone: not an IANA time zone name",
                config.zones[0].id
            ),
            "forecasts.timezone: not an IANA time zone name".to_string(),
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(&key)),
                "{key}: {problems:?}"
            );
        }
    }

    #[test]
    fn a_machines_speed_and_setup_are_read_and_checked() {
        let machine = |extra: &str| -> super::MachineConfig {
            toml::from_str(&format!(
                "id = \"{}\"\nfactory = \"north\"\nmodel = \"acme-dtg-200\"\n{extra}",
                if extra.is_empty() { "n" } else { "m" }
            ))
            .expect("a machine")
        };
        let (m, n) = (machine("speed = 1.5\nsetup_minutes = 12.5\n"), machine(""));
        assert_eq!((m.speed, m.setup_minutes), (1.5, 12.5));
        // Left out: speed 1, no setup.
        assert_eq!((n.speed, n.setup_minutes), (1.0, 0.0));
        let mut config = super::Config::demo().expect("demo config");
        let first = config.machines.len();
        config.machines.extend([m, n]);
        config.machines[first].speed = 0.0;
        config.machines[first].setup_minutes = -1.0;
        config.machines[first + 1].speed = f64::NAN;
        let problems = config.problems();
        for key in [
            "machines.m.speed: must be 0.05..=20",
            "machines.m.setup_minutes: must be 0..=1440",
            "machines.n.speed: must be 0.05..=20",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(key)),
                "{key}: {problems:?}"
            );
        }
        assert_eq!(
            problems
                .iter()
                .filter(|p| p.starts_with("machines."))
                .count(),
            3,
            "{problems:?}"
        );
    }

    #[test]
    fn machine_calendars_are_checked_shift_by_shift() {
        let mut config = super::Config::demo().expect("demo config");
        let shift = |start: &str, duration_minutes| super::ShiftConfig {
            start: start.into(),
            duration_minutes,
        };
        for id in ["m1", "m2"] {
            config.machines.push(super::MachineConfig {
                id: id.into(),
                factory: "north".into(),
                model: "acme-dtg-200".into(),
                address: None,
                serial: None,
                materials: None,
                poll_interval_ms: 200,
                request_timeout_ms: 1000,
                calendar: None,
                speed: 1.0,
                setup_minutes: 0.0,
            });
        }
        let id = config.machines[0].id.clone();
        config.machines[0].calendar = Some(super::CalendarConfig {
            shifts: vec![shift("0 0 8 * * Mon-Fri", 480), shift("0 0 8 * *", 0)],
            timezone: Some("Europe/Berlin".into()),
        });
        config.machines[1].calendar = Some(super::CalendarConfig {
            shifts: vec![],
            timezone: Some("Europe/Atlantis".into()),
        });
        let problems = config.problems();
        let second = format!("machines.{id}.calendar.shifts[1]");
        for key in [
            format!("{second}.start: not a cron expression"),
            format!("{second}.duration_minutes: must be 1..=10080"),
            format!(
                "machines.{}.calendar.shifts: needs at least one shift",
                config.machines[1].id
            ),
            format!(
                "machines.{}.calendar.timezone: not an IANA time zone name",
                config.machines[1].id
            ),
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(&key)),
                "{key}: {problems:?}"
            );
        }
        assert!(
            !problems.iter().any(|p| p.contains("shifts[0]")),
            "{problems:?}"
        );
        assert!(
            !problems
                .iter()
                .any(|p| p.starts_with(&format!("machines.{id}.calendar.timezone"))),
            "Europe/Berlin is a zone: {problems:?}"
        );
        // In a file: the calendar's keys, and a wrong one with its place.
        let text = "[[machines]]\nid = \"m\"\nfactory = \"north\"\nmodel = \"m\"\n\
                    calendar = { shifts = [{ start = \"0 0 8 * * *\", duration_minutes = 60 }] }\n";
        let parsed = super::Config::parse(text, "t.toml");
        assert!(
            parsed.as_ref().map_or_else(
                |err| !err.to_string().contains("calendar"),
                |c| c.machines[0]
                    .calendar
                    .as_ref()
                    .is_some_and(|c| c.shifts().len() == 1)
            ),
            "{:?}",
            parsed.err()
        );
        let text = "[[machines]]\nid = \"m\"\nfactory = \"north\"\nmodel = \"m\"\n\
                    calendar = { shifts = [{ start = \"0 0 8 * * *\", hours = 8 }] }\n";
        let err = super::Config::parse(text, "t.toml").expect_err("unknown key");
        assert!(err.to_string().contains("hours"), "{err}");
    }

    #[test]
    fn routing_values_out_of_range_are_named() {
        let mut config = super::Config::demo().expect("demo config");
        config.routing.speed_kmh = 0.0;
        config.routing.detour_factor = 0.5;
        config.routing.time_limit_ms = 0;
        config.routing.max_wave_parcels = 0;
        config.routing.rush_margin_s = -1.0;
        config.routing.rebuild_min_gain_m = f64::NAN;
        config.routing.rebuild_min_gain_share = 1.5;
        config.routing.rebuild_max_delay_s = -60.0;
        let problems = config.problems();
        for key in [
            "routing.speed_kmh",
            "routing.detour_factor",
            "routing.time_limit_ms",
            "routing.max_wave_parcels",
            "routing.rush_margin_s",
            "routing.rebuild_min_gain_m",
            "routing.rebuild_min_gain_share",
            "routing.rebuild_max_delay_s",
        ] {
            assert!(
                problems.iter().any(|p| p.starts_with(key)),
                "{key}: {problems:?}"
            );
        }
    }

    #[test]
    fn the_planner_is_a_choice_with_a_budget() {
        let base = "[scheduler]\ninterval_ms = 250\nmax_queue = 2\n";
        let parse = |extra: &str| super::Config::parse(&format!("{base}{extra}"), "t.toml");
        let config = parse("").expect("default planner");
        assert_eq!(config.scheduler.planner, super::Planner::Shop);
        assert_eq!(config.scheduler.plan_budget_ms, 50);
        let config = parse("planner = \"shop\"\nplan_budget_ms = 80\n").expect("shop");
        assert_eq!(config.scheduler.planner, super::Planner::Shop);
        assert_eq!(config.scheduler.plan_budget_ms, 80);
        let config = parse("planner = \"queue\"\n").expect("queue");
        assert_eq!(config.scheduler.planner, super::Planner::Queue);
        let err = parse("planner = \"fancy\"\n").expect_err("unknown planner");
        assert_eq!(err.problems.len(), 1, "{err}");
        assert!(err.problems[0].starts_with("scheduler.planner: "), "{err}");
        assert!(err.problems[0].contains("fancy"), "{err}");
        assert!(err.to_string().contains("t.toml"), "{err}");
        let err = parse("plan_budget_ms = 0\n").expect_err("no budget");
        assert_eq!(
            err.problems,
            ["scheduler.plan_budget_ms: must be 1..=10000, got 0"]
        );
    }

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            super::redact("postgres://u:secret@db/x"),
            "postgres://u:***@db/x"
        );
        assert_eq!(super::redact("postgres://u@db/x"), "postgres://u@db/x");
        assert_eq!(super::redact("sqlite://a.db"), "sqlite://a.db");
    }
}
