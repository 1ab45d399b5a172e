//! The daemon's moving parts and its use cases: intake, scheduler, machine
//! supervisors, planning waves, the outbox publisher and the embedded broker,
//! started by [`start`] and stopped in order by [`Shutdown`]; [`Runtime`] is
//! the handle whose use cases (accept an order, pause a machine, confirm a
//! handoff) the API and the CLI call. Owns the [`Clock`].
//!
//! Architecture invariant: the runtime knows no HTTP. Callers hand it parsed
//! requests and a caller's identity; it hands back records and typed errors.

pub mod broker;
pub mod clock;
pub mod cluster;
pub mod event_plans;
pub mod explain;
pub mod forecasts;
pub mod intake;
pub mod mqtt;
pub mod operations;
pub mod orders;
pub mod power;
pub mod profiles;
pub mod promise;
pub mod returns;
pub mod scheduler;
pub mod shutdown;
pub mod supervisor;
pub mod wake;
pub mod waves;
pub mod webhooks;

pub use clock::Clock;
pub use intake::Intake;
pub use shutdown::Shutdown;
pub use wake::{Wake, Wakers};

use crate::config::{Config, ConfigError, CourierConfig, MqttConfig, redact};
use crate::domain::calendar::ZonedSchedule;
use crate::domain::intake::IntakeRules;
use crate::domain::intake::MAX_QUANTITY;
use crate::domain::{Catalog, FactoryId, Location, MachineId, Zone};
use crate::plan::FactorySite;
use crate::store::{MachineSpec, Store};
use anyhow::Context;
use fabflow_adapters::profile::SignalName;
use fabflow_adapters::{DriverConfig, MachineDriver, ModbusConnector, MqttConnector, Profile};
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span};

/// What the network looks like, derived once from configuration and profiles.
#[derive(Debug, Clone)]
pub struct Network {
    pub catalog: Catalog,
    pub zones: Vec<Zone>,
    pub factories: Vec<FactorySite>,
    /// Each factory's `power_budget_w`, where it has one.
    pub power_budgets: HashMap<String, u32>,
    pub rules: IntakeRules,
    pub couriers: Vec<CourierConfig>,
    pub machines: Vec<(crate::config::MachineConfig, Arc<Profile>)>,
    /// Wrong codes that lock a stop, failed attempts that escalate an order.
    pub handoffs: crate::config::HandoffsConfig,
    /// Return windows, per brand.
    pub returns: crate::config::ReturnsConfig,
    /// Road times for the waves (`[routing] matrix_file`), if configured.
    pub roads: Option<Arc<crate::plan::roads::Roads>>,
}

/// Reads and checks an OSRM `table` file for the waves.
fn load_roads(path: &std::path::Path) -> Result<crate::plan::roads::Roads, String> {
    let text = std::fs::read_to_string(path).map_err(|err| format!("cannot read: {err}"))?;
    let table = crate::plan::vrp::parse_osrm_table(&text).map_err(|err| err.to_string())?;
    table.to_matrix().map_err(|err| err.to_string())?;
    crate::plan::roads::Roads::from_table(&table)
}

impl Network {
    /// Joins configuration and profiles; every problem is reported at once.
    pub fn new(config: &Config, profiles: &[Profile], file: &str) -> Result<Network, ConfigError> {
        let by_model: HashMap<&str, &Profile> =
            profiles.iter().map(|p| (p.model.as_str(), p)).collect();
        let mut problems = Vec::new();
        let mut machines = Vec::new();
        let mut capabilities: HashMap<&str, BTreeSet<(String, String)>> = HashMap::new();
        for machine in &config.machines {
            let Some(profile) = by_model.get(machine.model.as_str()) else {
                let mut known: Vec<&str> = by_model.keys().copied().collect();
                known.sort_unstable();
                problems.push(format!(
                    "machines.{}.model: unknown machine model {:?} (profiles: {})",
                    machine.id,
                    machine.model,
                    known.join(", ")
                ));
                continue;
            };
            if let Some(materials) = &machine.materials {
                for material in materials {
                    if !profile.materials.contains(material) {
                        problems.push(format!(
                            "machines.{}.materials: {:?} is not a material of {}",
                            machine.id, material, profile.model
                        ));
                    }
                }
            }
            let materials = machine.materials.as_ref().unwrap_or(&profile.materials);
            capabilities
                .entry(machine.factory.as_str())
                .or_default()
                .extend(profile.capabilities.iter().flat_map(|process| {
                    materials
                        .iter()
                        .map(move |material| (process.clone(), material.clone()))
                }));
            machines.push((machine.clone(), Arc::new((*profile).clone())));
        }
        // One device per address and unit id: two machines configured on the
        // same one would both be driven, and start each other's jobs. Over
        // MQTT, one machine per report topic, for the same reason.
        let mut devices: HashMap<(std::net::SocketAddr, u8), &str> = HashMap::new();
        let mut topics: HashMap<String, &str> = HashMap::new();
        for (machine, profile) in &machines {
            match (&profile.mqtt, machine.address) {
                (None, Some(address)) => {
                    if machine.serial.is_some() {
                        problems.push(format!(
                            "machines.{}.serial: only for MQTT machines ({} speaks Modbus)",
                            machine.id, profile.model
                        ));
                    }
                    if let Some(first) = devices.insert((address, profile.unit_id), &machine.id) {
                        problems.push(format!(
                            "machines.{}.address: {} unit {} is already machine {first}'s",
                            machine.id, address, profile.unit_id
                        ));
                    }
                }
                (None, None) => problems.push(format!(
                    "machines.{}.address: required for a Modbus machine ({}), as host:port",
                    machine.id, profile.model
                )),
                (Some(spec), address) => {
                    if address.is_some() {
                        problems.push(format!(
                            "machines.{}.address: not for an MQTT machine ({} is reached through the broker; give `serial` if its topics use another name than the id)",
                            machine.id, profile.model
                        ));
                    }
                    if let Some(reason) = broker::access::invalid_id(&machine.id) {
                        problems.push(format!(
                            "machines.{}: an MQTT machine's id is its broker login, and it {reason}",
                            machine.id
                        ));
                    }
                    if let Some(reason) = broker::access::invalid_id(machine.serial()) {
                        problems.push(format!(
                            "machines.{}.serial: {:?} {reason} (it is a topic level)",
                            machine.id,
                            machine.serial()
                        ));
                    }
                    let topic = spec.report_topic_for(machine.serial());
                    if let Some(first) = topics.insert(topic.clone(), &machine.id) {
                        problems.push(format!(
                            "machines.{}.serial: report topic {topic} is already machine {first}'s",
                            machine.id
                        ));
                    }
                }
            }
        }
        // With machines configured, every step of every SKU needs one that can
        // do it (else every order of that SKU is refused). A configuration
        // without machines (the demo adds its simulated fleet) is not held
        // to this.
        if !machines.is_empty() {
            for sku in &config.skus {
                for (index, step) in sku.route.iter().enumerate() {
                    if !machines
                        .iter()
                        .any(|(_, profile)| profile.capabilities.contains(&step.process))
                    {
                        problems.push(format!(
                            "skus.{}.route[{index}].process: no configured machine can do {:?}",
                            sku.code, step.process
                        ));
                    }
                }
            }
        }
        // Every recipe and quantity must fit the registers of every machine
        // that could be given the step.
        for sku in &config.skus {
            for (index, step) in sku.route.iter().enumerate() {
                for (machine, profile) in &machines {
                    if !profile.capabilities.contains(&step.process) {
                        continue;
                    }
                    let checks = [
                        (SignalName::Recipe, "recipe", i64::from(step.recipe)),
                        (SignalName::Quantity, "quantity", i64::from(MAX_QUANTITY)),
                    ];
                    for (signal, what, value) in checks {
                        let range = profile
                            .signal(signal)
                            .and_then(|s| s.value_type.integer_range());
                        if let Some((low, high)) = range
                            && !(low..=high).contains(&value)
                        {
                            problems.push(format!(
                                "skus.{}.route[{index}].{what}: {value} does not fit the {what} register of {} (machine {}, {low}..={high})",
                                sku.code, profile.model, machine.id
                            ));
                        }
                    }
                }
            }
        }
        // A machine whose start-up draw alone passes its factory's budget
        // would never start.
        let power_budgets: HashMap<String, u32> = config
            .factories
            .iter()
            .filter_map(|f| Some((f.id.clone(), f.power_budget_w?)))
            .collect();
        for (machine, profile) in &machines {
            if let (Some(budget), Some(startup)) =
                (power_budgets.get(&machine.factory), profile.startup)
                && startup.power_w > *budget
            {
                problems.push(format!(
                    "factories.{}.power_budget_w: {budget} W is less than machine {}'s start-up draw ({} W, profile {}): it would never start",
                    machine.factory, machine.id, startup.power_w, profile.model
                ));
            }
        }
        let roads = match &config.routing.matrix_file {
            None => None,
            Some(path) => match load_roads(path) {
                Ok(roads) => Some(Arc::new(roads)),
                Err(reason) => {
                    problems.push(format!("routing.matrix_file: {}: {reason}", path.display()));
                    None
                }
            },
        };
        if !problems.is_empty() {
            return Err(ConfigError {
                file: file.into(),
                problems,
            });
        }
        let zones = config.zones();
        let factories = config
            .factories
            .iter()
            .map(|f| {
                let location = Location::new(f.lat, f.lon);
                FactorySite {
                    id: FactoryId::new(f.id.clone()),
                    location,
                    capabilities: capabilities.get(f.id.as_str()).cloned().unwrap_or_default(),
                    zone: zones
                        .iter()
                        .find(|zone| zone.contains(location))
                        .map(|zone| zone.id.clone()),
                }
            })
            .collect();
        Ok(Network {
            roads,
            catalog: config.catalog(),
            zones,
            factories,
            power_budgets,
            rules: config.intake.rules(),
            couriers: config.couriers.clone(),
            machines,
            handoffs: config.handoffs,
            returns: config.returns.clone(),
        })
    }

    /// The configured MQTT machines' own topics, by machine id (their
    /// broker login).
    pub fn machine_topics(&self) -> HashMap<String, broker::access::MachineTopics> {
        self.machines
            .iter()
            .filter_map(|(machine, profile)| {
                let spec = profile.mqtt.as_ref()?;
                Some((
                    machine.id.clone(),
                    broker::access::MachineTopics {
                        report: spec.report_topic_for(machine.serial()),
                        command: spec.command_topic_for(machine.serial()),
                    },
                ))
            })
            .collect()
    }

    pub fn factory_location(&self, id: &str) -> Option<Location> {
        self.factories
            .iter()
            .find(|f| f.id.as_str() == id)
            .map(|f| f.location)
    }
}

/// The running runtime's handle: its state and its use cases. Cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    pub store: Store,
    pub clock: Clock,
    pub network: Arc<Network>,
    /// The leases this daemon holds: which factories it drives and which
    /// zones' waves it plans (all of them on SQLite).
    pub leases: Arc<cluster::Holdings>,
    /// Submits orders to the group-commit task; closed by [`Shutdown`].
    intake: Intake,
    /// Wakes the scheduler and the outbox publisher after a change.
    wakers: Wakers,
    /// How webhook endpoints are checked and secrets rotated.
    webhooks: Arc<webhooks::WebhookSettings>,
    /// Marks couriers whose schedule changed, for the schedule publisher.
    schedules: mqtt::schedules::ScheduleChanges,
    /// The promise watch's latest backlog, for estimates at intake.
    promises: promise::PromiseBoard,
    lead: Arc<promise::DeliveryLead>,
    /// Days after a sales event whose orders count toward it.
    attribution_days: u32,
    /// Forecast models kept between refits (rolled forward per closed day).
    fits: Arc<forecasts::FitCache>,
    /// The factories' start-up draws, shared with the supervisors.
    pub power: Arc<power::PowerLedger>,
}

/// A started runtime: its handle, its stop sequence, and where its MQTT
/// clients connect.
pub struct Started {
    pub runtime: Runtime,
    pub shutdown: Shutdown,
    pub broker: mqtt::BrokerAddress,
    /// Embedded broker users created at this start (the observer and the
    /// configured couriers, first start only), with their passwords: shown
    /// once, stored only as hashes.
    pub mqtt_users: Vec<broker::users::NewUser>,
}

/// Opens the database, starts the broker (if embedded), registers the
/// configured machines and starts every task. Returns once the broker
/// accepts connections.
pub async fn start(config: &Config, profiles: &[Profile]) -> anyhow::Result<Started> {
    let network = Arc::new(Network::new(config, profiles, "configuration")?);
    let daemon_id = config.cluster.daemon_id();
    let store = Store::connect_as(&config.database.url, &daemon_id)
        .await
        .with_context(|| format!("opening database {}", redact(&config.database.url)))?;
    let single = store.backend() == crate::store::Backend::Sqlite;
    info!(daemon.id = %daemon_id, single, "daemon");
    let clock = Clock::load(&store, config.time_scale).await?;
    let (embedded, mqtt_users) = match &config.mqtt {
        MqttConfig::Embedded { listen } => {
            let embedded =
                broker::start_embedded(*listen, store.clone(), network.machine_topics()).await?;
            let couriers: Vec<String> = network.couriers.iter().map(|c| c.id.clone()).collect();
            let machines: Vec<(String, String)> = network
                .machines
                .iter()
                .filter(|(_, profile)| profile.mqtt.is_some())
                .map(|(machine, _)| (machine.id.clone(), machine.factory.clone()))
                .collect();
            let created =
                broker::users::ensure(&store, &couriers, &machines, clock.now_ms()).await?;
            (Some(embedded), created)
        }
        MqttConfig::External { .. } => (None, Vec::new()),
    };
    let broker_address = mqtt::BrokerAddress::from_config(&config.mqtt, embedded.as_ref())?;
    info!(mqtt = %broker_address.url(), embedded = embedded.is_some(), "MQTT broker");
    register_machines(&store, &network, clock, single).await?;

    let intake_stop = CancellationToken::new();
    let work_stop = CancellationToken::new();
    let outbox_stop = CancellationToken::new();
    let mqtt_stop = CancellationToken::new();
    let wakers = Wakers::default();
    let (intake, intake_task) = Intake::start(store.clone(), intake_stop.clone());

    let mut work = JoinSet::new();
    // The leases this daemon holds; what runs under each checks it.
    let holdings = Arc::new(cluster::Holdings::default());
    let power = Arc::new(power::PowerLedger::new(network.power_budgets.clone()));
    let start_factory: cluster::StartFactory = {
        let power = Arc::clone(&power);
        let network = Arc::clone(&network);
        let broker_address = broker_address.clone();
        let store = store.clone();
        let wakers = wakers.clone();
        let holdings = Arc::clone(&holdings);
        Arc::new(move |factory, fence, stop, tasks| {
            start_machines(
                &network,
                &broker_address,
                &store,
                clock,
                &wakers,
                &holdings,
                &power,
                factory,
                fence,
                &stop,
                tasks,
            )
        })
    };
    let lease_names: BTreeSet<String> = network
        .factories
        .iter()
        .map(|f| f.id.0.clone())
        .chain(network.machines.iter().map(|(m, _)| m.factory.clone()))
        .map(|factory| cluster::factory_lease(&factory))
        .collect();
    let zone_leases: BTreeSet<String> = config
        .zones
        .iter()
        .map(|zone| cluster::zone_lease(&zone.id))
        .collect();
    let mut leases: Vec<String> = lease_names.into_iter().collect();
    leases.extend(zone_leases);
    let coordinator = cluster::Coordinator {
        store: store.clone(),
        daemon: daemon_id.clone(),
        timings: cluster::Timings {
            lease: Duration::from_millis(config.cluster.lease_ms),
            renew_interval: Duration::from_millis(config.cluster.renew_interval_ms),
            renew_margin: Duration::from_millis(config.cluster.renew_margin_ms),
        },
        single,
        leases,
        holdings: Arc::clone(&holdings),
        start_factory,
    };
    work.spawn(
        coordinator
            .run(work_stop.clone())
            .instrument(info_span!("cluster", daemon.id = %daemon_id)),
    );
    // Each machine's configured shifts (none: always works).
    let shifts: HashMap<String, Vec<crate::domain::calendar::Shift>> = network
        .machines
        .iter()
        .map(|(machine, _)| {
            let shifts = machine
                .calendar
                .as_ref()
                .map(crate::config::CalendarConfig::shifts)
                .unwrap_or_default();
            (machine.id.clone(), shifts)
        })
        .collect();
    let floor_plan: scheduler::SharedPlan = Arc::default();
    let scheduler = scheduler::Scheduler {
        store: store.clone(),
        clock,
        interval: Duration::from_millis(config.scheduler.interval_ms),
        max_queue: config.scheduler.max_queue,
        planner: config.scheduler.planner,
        plan_budget: Duration::from_millis(config.scheduler.plan_budget_ms),
        factories: network
            .factories
            .iter()
            .map(|f| (f.id.0.clone(), f.location))
            .collect(),
        wakers: wakers.clone(),
        holdings: Arc::clone(&holdings),
        shifts: shifts.clone(),
        paces: network
            .machines
            .iter()
            .map(|(machine, _)| (machine.id.clone(), scheduler::Pace::of(machine)))
            .collect(),
        last_plan: Arc::clone(&floor_plan),
        last_full_plan: std::sync::Mutex::new(None),
    };
    work.spawn(
        scheduler
            .run(work_stop.clone())
            .instrument(info_span!("scheduler")),
    );
    let schedules_client = mqtt::connect(&broker_address, "schedules", mqtt_stop.clone());
    let schedules = mqtt::schedules::ScheduleChanges::default();
    let factory_locations: HashMap<String, Location> = network
        .factories
        .iter()
        .map(|f| (f.id.0.clone(), f.location))
        .collect();
    let mut wave_gap_ms = 0;
    for zone in &config.zones {
        let schedule = ZonedSchedule::new(&zone.planning_cron, zone.timezone.as_deref())
            .map_err(anyhow::Error::msg)
            .with_context(|| format!("zones.{}.planning_cron", zone.id))?;
        wave_gap_ms = wave_gap_ms.max(promise::widest_gap_ms(&schedule, clock.now()));
        let waves = waves::Waves {
            routing: config.routing.clone(),
            roads: network.roads.clone(),
            store: store.clone(),
            clock,
            zone: zone.id.clone(),
            schedule,
            couriers: network
                .couriers
                .iter()
                .filter(|c| c.zone == zone.id)
                .cloned()
                .collect(),
            factories: factory_locations.clone(),
            schedules: schedules.clone(),
            wakers: wakers.clone(),
            holdings: Arc::clone(&holdings),
            rush_poll: (!single).then_some(waves::RUSH_POLL),
            sku_volumes: config
                .skus
                .iter()
                .filter_map(|sku| Some((sku.code.clone(), sku.volume_l?)))
                .collect(),
        };
        work.spawn(
            waves
                .run(work_stop.clone())
                .instrument(info_span!("waves", zone = %zone.id)),
        );
    }
    let lead = Arc::new(promise::DeliveryLead {
        travel: waves::travel(&config.routing),
        roads: network.roads.clone(),
        // An order that cannot afford to wait for the next cron wave gets
        // a rush wave at once (`plan::rush`): it waits at most the margin.
        wave_gap_ms: wave_gap_ms.min(waves::rush_margin_ms(&config.routing)),
        factories: factory_locations.clone(),
    });
    let promises = promise::PromiseBoard::default();
    let watch = promise::PromiseWatch {
        board: promises.clone(),
        store: store.clone(),
        clock,
        interval: Duration::from_secs(1),
        lead: (*lead).clone(),
        wakers: wakers.clone(),
        shifts,
        speeds: network
            .machines
            .iter()
            .map(|(machine, _)| (machine.id.clone(), machine.speed))
            .collect(),
        plan: floor_plan,
        intake: Some(intake.load.clone()),
    };
    // One round before intake opens, so that every accepted order's reply
    // carries its estimate (the board is empty until a round has run).
    if let Err(err) = watch.round().await {
        tracing::warn!(error = %err, "first promise estimate failed; replies carry estimates from the next round");
    }
    work.spawn(
        watch
            .run(work_stop.clone())
            .instrument(info_span!("promise")),
    );
    let webhook_settings = webhooks::WebhookSettings::from(&config.webhooks);
    let deliverer = webhooks::Deliverer {
        store: store.clone(),
        client: webhooks::WebhookClient::new(&webhook_settings)?,
        settings: webhook_settings.clone(),
        wakers: wakers.clone(),
    };
    work.spawn(
        deliverer
            .run(work_stop.clone())
            .instrument(info_span!("webhooks")),
    );
    work.spawn(
        forecasts::DemandCounter {
            store: store.clone(),
        }
        .run(work_stop.clone())
        .instrument(info_span!("demand")),
    );
    let forecast_client = mqtt::connect(&broker_address, "forecasts", mqtt_stop.clone());
    let fits = Arc::new(forecasts::FitCache::default());
    work.spawn(
        forecasts::ForecastPublisher {
            store: store.clone(),
            clock,
            schedule: ZonedSchedule::new(
                &config.forecasts.refit_cron,
                config.forecasts.timezone.as_deref(),
            )
            .map_err(anyhow::Error::msg)
            .context("forecasts.refit_cron")?,
            horizon_days: config.forecasts.horizon_days as usize,
            attribution_days: config.forecasts.attribution_days.min(60) as u32,
            fits: Arc::clone(&fits),
            mqtt: forecast_client.client,
        }
        .run(work_stop.clone())
        .instrument(info_span!("forecasts")),
    );
    let outbox_client = mqtt::connect_acknowledged(&broker_address, "outbox", mqtt_stop.clone());
    let outbox_task = tokio::spawn(
        mqtt::run_outbox_as(
            store.clone(),
            clock,
            outbox_client,
            outbox_stop.clone(),
            wakers.clone(),
            mqtt::OutboxClaim {
                daemon: daemon_id.clone(),
                claim_ms: i64::try_from(config.cluster.lease_ms).unwrap_or(i64::MAX),
            },
        )
        .instrument(info_span!("outbox")),
    );
    // Stopped with the outbox, after the waves: their last changes go out.
    let schedules_task = tokio::spawn(
        mqtt::schedules::run_schedules(
            store.clone(),
            clock,
            schedules_client,
            network.couriers.iter().map(|c| c.id.clone()).collect(),
            schedules.clone(),
            outbox_stop.clone(),
        )
        .instrument(info_span!("schedules")),
    );
    Ok(Started {
        runtime: Runtime {
            store: store.clone(),
            clock,
            network,
            leases: holdings,
            intake,
            wakers,
            webhooks: Arc::new(webhook_settings),
            schedules,
            promises,
            lead,
            attribution_days: config.forecasts.attribution_days.min(60) as u32,
            fits,
            power,
        },
        shutdown: Shutdown {
            intake: intake_stop,
            intake_task,
            work: work_stop,
            work_tasks: work,
            outbox: outbox_stop,
            outbox_task,
            schedules_task,
            mqtt: mqtt_stop,
            store,
        },
        broker: broker_address,
        mqtt_users,
    })
}

/// Starts the drivers and supervisors of one factory's machines under its
/// lease: each supervisor writes through a store fenced by the lease's
/// epoch and checks the lease before every command; `stop` stops the
/// drivers (their supervisors end with them).
#[allow(clippy::too_many_arguments)]
fn start_machines(
    network: &Network,
    broker_address: &mqtt::BrokerAddress,
    store: &Store,
    clock: Clock,
    wakers: &Wakers,
    holdings: &Arc<cluster::Holdings>,
    power: &Arc<power::PowerLedger>,
    factory: &str,
    fence: crate::store::Fence,
    stop: &CancellationToken,
    tasks: &mut JoinSet<()>,
) {
    let fenced = store.fenced(fence.clone());
    for (machine, profile) in network
        .machines
        .iter()
        .filter(|(m, _)| m.factory == factory)
    {
        let timeout = Duration::from_millis(machine.request_timeout_ms);
        let driver = DriverConfig {
            name: machine.id.clone(),
            poll_interval: Duration::from_millis(machine.poll_interval_ms),
            request_timeout: timeout,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
        };
        let (handle, facts) = match (&profile.mqtt, machine.address) {
            (Some(_), _) => {
                // The daemon's own login; a stable client id per machine, so
                // the broker keeps its session (and the reports queued in it)
                // across reconnects, restarts and take-overs.
                let connector = match MqttConnector::new(
                    broker_address.machine_broker(),
                    Arc::clone(profile),
                    machine.serial(),
                    format!("fabflow-machine-{}", machine.id),
                    timeout,
                ) {
                    Ok(connector) => connector,
                    Err(err) => {
                        tracing::error!(machine.id = %machine.id, error = %err, "machine not driven: its MQTT link cannot be set up");
                        continue;
                    }
                };
                MachineDriver::spawn(driver, connector, stop.child_token())
            }
            (None, Some(address)) => {
                let connector = ModbusConnector::new(address, Arc::clone(profile), timeout);
                MachineDriver::spawn(driver, connector, stop.child_token())
            }
            (None, None) => {
                // Network::new refuses this configuration.
                tracing::error!(machine.id = %machine.id, "machine not driven: no address");
                continue;
            }
        };
        wakers.register_machine(&machine.id, handle.clone());
        let supervisor = supervisor::Supervisor {
            machine: machine.id.clone(),
            store: fenced.clone(),
            clock,
            handle,
            wakers: wakers.clone(),
            refusals: Default::default(),
            behaviour: supervisor::Behaviour::of(profile),
            protocol: profile.protocol.as_str(),
            lease: Some(cluster::LeaseCheck {
                holdings: Arc::clone(holdings),
                lease: fence.lease.clone(),
                epoch: fence.epoch,
            }),
            factory: machine.factory.clone(),
            startup: profile.startup,
            power: Arc::clone(power),
            shifts: machine
                .calendar
                .as_ref()
                .map(crate::config::CalendarConfig::shifts)
                .unwrap_or_default(),
        };
        let span = info_span!("supervisor", machine.id = %machine.id, factory.id = %machine.factory, adapter = profile.protocol.as_str(), lease.epoch = fence.epoch);
        tasks.spawn(supervisor.run(facts).instrument(span));
    }
}

/// Records the configured machines; machines no longer configured are
/// retired (offline, their jobs planned again).
/// With several daemons (`single` false) the machines keep their recorded
/// state: another daemon may be driving them.
async fn register_machines(
    store: &Store,
    network: &Network,
    clock: Clock,
    single: bool,
) -> anyhow::Result<()> {
    let specs: Vec<MachineSpec> = network
        .machines
        .iter()
        .map(|(machine, profile)| MachineSpec {
            id: MachineId::new(machine.id.clone()),
            factory: FactoryId::new(machine.factory.clone()),
            model: profile.model.clone(),
            address: match (&profile.mqtt, machine.address) {
                (Some(spec), _) => format!("mqtt:{}", spec.report_topic_for(machine.serial())),
                (None, Some(address)) => address.to_string(),
                (None, None) => String::new(),
            },
            capabilities: profile.capabilities.clone(),
            materials: machine
                .materials
                .clone()
                .unwrap_or_else(|| profile.materials.clone()),
        })
        .collect();
    if single {
        store.register_machines(&specs, clock.now_ms()).await?;
    } else {
        store
            .register_shared_machines(&specs, clock.now_ms())
            .await?;
    }
    let configured: Vec<MachineId> = specs.iter().map(|spec| spec.id.clone()).collect();
    for machine in store
        .retire_unconfigured(&configured, clock.now_ms())
        .await?
    {
        tracing::warn!(machine.id = %machine, "machine is no longer configured: marked offline, its jobs planned again");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each factory stands in the zone whose polygon holds it, and an
    /// order goes to a capable factory of its own zone before a nearer one
    /// of another zone.
    #[test]
    fn factories_know_their_zone_and_orders_stay_in_theirs() {
        let mut config = Config::demo().expect("demo config");
        let zone = config.zones[0].clone();
        let band = |id: &str, south: f64, north: f64| crate::config::ZoneConfig {
            id: id.into(),
            corners: vec![
                [south, 13.20],
                [south, 13.60],
                [north, 13.60],
                [north, 13.20],
            ],
            ..zone.clone()
        };
        config.zones = vec![band("north", 52.50, 52.62), band("south", 52.40, 52.50)];
        let profiles = fabflow_adapters::builtin_profiles();
        let mut network = Network::new(&config, &profiles, "test").expect("valid");
        let tee: BTreeSet<(String, String)> = [("dtg".to_string(), "cotton".to_string())].into();
        for site in &mut network.factories {
            site.capabilities = tee.clone();
        }
        let zone_of = |id: &str| {
            network
                .factories
                .iter()
                .find(|f| f.id.as_str() == id)
                .and_then(|f| f.zone.clone())
        };
        assert_eq!(zone_of("north").as_deref(), Some("north"));
        assert_eq!(zone_of("centre").as_deref(), Some("north"));
        assert_eq!(zone_of("south").as_deref(), Some("south"));
        // Just south of the zones' border: the centre factory is nearer,
        // the south one is in the customer's zone; both print on cotton.
        let customer = Location::new(52.4995, 13.41);
        let centre = network
            .factories
            .iter()
            .find(|f| f.id.as_str() == "centre")
            .expect("centre");
        let south = network
            .factories
            .iter()
            .find(|f| f.id.as_str() == "south")
            .expect("south");
        assert!(centre.location.distance_m(customer) < south.location.distance_m(customer));
        let needs = tee;
        let chosen = crate::plan::choose_factory(customer, "south", &needs, &network.factories);
        assert_eq!(chosen.map(|f| f.id.as_str()), Some("south"));
        let chosen = crate::plan::choose_factory(customer, "elsewhere", &needs, &network.factories);
        assert_eq!(chosen.map(|f| f.id.as_str()), Some("centre"));
    }
}
