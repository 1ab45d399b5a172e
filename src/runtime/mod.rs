//! The daemon's moving parts: intake, scheduler, machine supervisors, planning
//! waves, the outbox publisher and the embedded broker, started and stopped
//! in order. Owns the [`Clock`].
//!
//! Shutdown (SIGINT/SIGTERM or the caller's token): stop HTTP intake first,
//! let intake commit what it accepted, stop machine drivers after their
//! in-flight request, then flush the outbox.

pub mod broker;
pub mod clock;
pub mod intake;
pub mod mqtt;
pub mod scheduler;
pub mod supervisor;
pub mod waves;

pub use clock::Clock;
pub use intake::Intake;

use crate::config::{Config, ConfigError, CourierConfig, MqttConfig};
use crate::domain::intake::IntakeRules;
use crate::domain::intake::MAX_QUANTITY;
use crate::domain::{Catalog, FactoryId, Location, Zone};
use crate::plan::FactorySite;
use crate::store::{MachineSpec, Store};
use anyhow::Context;
use fabflow_adapters::profile::SignalName;
use fabflow_adapters::{DriverConfig, MachineDriver, ModbusConnector, Profile};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, info_span};

/// What the network looks like, derived once from configuration and profiles.
#[derive(Debug, Clone)]
pub struct Network {
    pub catalog: Catalog,
    pub zones: Vec<Zone>,
    pub factories: Vec<FactorySite>,
    pub rules: IntakeRules,
    pub couriers: Vec<CourierConfig>,
    pub machines: Vec<(crate::config::MachineConfig, Arc<Profile>)>,
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
        if !problems.is_empty() {
            return Err(ConfigError {
                file: file.into(),
                problems,
            });
        }
        let factories = config
            .factories
            .iter()
            .map(|f| FactorySite {
                id: FactoryId::new(f.id.clone()),
                location: Location::new(f.lat, f.lon),
                capabilities: capabilities.get(f.id.as_str()).cloned().unwrap_or_default(),
            })
            .collect();
        Ok(Network {
            catalog: config.catalog(),
            zones: config.zones(),
            factories,
            rules: config.intake.rules(),
            couriers: config.couriers.clone(),
            machines,
        })
    }

    pub fn factory_location(&self, id: &str) -> Option<Location> {
        self.factories
            .iter()
            .find(|f| f.id.as_str() == id)
            .map(|f| f.location)
    }
}

/// The process-wide Prometheus recorder (installed once, shared by every
/// daemon a test starts in one process).
pub fn metrics_handle() -> Option<PrometheusHandle> {
    static HANDLE: OnceLock<Option<PrometheusHandle>> = OnceLock::new();
    HANDLE
        .get_or_init(|| PrometheusBuilder::new().install_recorder().ok())
        .clone()
}

/// Everything the HTTP API needs.
#[derive(Clone)]
pub struct Shared {
    pub store: Store,
    pub clock: Clock,
    pub intake: Intake,
    pub network: Arc<Network>,
    pub metrics: Option<PrometheusHandle>,
    /// Wakes the scheduler when new orders arrive.
    pub scheduler: Arc<Notify>,
    pub max_body_bytes: usize,
    /// Token cache and failed-authentication counts.
    pub guard: Arc<crate::api::auth::Guard>,
}

/// A started daemon.
pub struct Daemon {
    pub http: SocketAddr,
    pub mqtt: mqtt::BrokerAddress,
    pub store: Store,
    pub clock: Clock,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Daemon {
    /// Starts every part on the current runtime and returns once the API and
    /// the broker accept connections. `shutdown` stops it all, in order.
    pub async fn start(
        config: Config,
        profiles: Vec<Profile>,
        listener: TcpListener,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Daemon> {
        let network = Arc::new(Network::new(&config, &profiles, "configuration")?);
        let store = Store::connect(&config.database.url)
            .await
            .with_context(|| format!("opening database {}", redact(&config.database.url)))?;
        let clock = Clock::load(&store, config.time_scale).await?;
        let embedded = match &config.mqtt {
            MqttConfig::Embedded { listen } => {
                let listen = *listen;
                Some(tokio::task::spawn_blocking(move || broker::start(listen)).await??)
            }
            MqttConfig::External { .. } => None,
        };
        let broker_address = mqtt::BrokerAddress::from_config(&config.mqtt, embedded);
        info!(mqtt = %broker_address.url(), embedded = embedded.is_some(), "MQTT broker");
        let specs: Vec<MachineSpec> = network
            .machines
            .iter()
            .map(|(machine, profile)| MachineSpec {
                id: machine.id.clone(),
                factory: machine.factory.clone(),
                model: profile.model.clone(),
                address: machine.address.to_string(),
                capabilities: profile.capabilities.clone(),
                materials: machine
                    .materials
                    .clone()
                    .unwrap_or_else(|| profile.materials.clone()),
            })
            .collect();
        store.register_machines(&specs, clock.now_ms()).await?;
        let configured: Vec<String> = specs.iter().map(|spec| spec.id.clone()).collect();
        for machine in store
            .retire_unconfigured(&configured, clock.now_ms())
            .await?
        {
            tracing::warn!(machine.id = %machine, "machine is no longer configured: marked offline, its jobs planned again");
        }

        // One token per stage, stopped in order by the shutdown sequence.
        let http_stop = CancellationToken::new();
        let machines_stop = CancellationToken::new();
        let work_stop = CancellationToken::new();
        let outbox_stop = CancellationToken::new();
        // The MQTT clients' event loops outlive the publisher, so its final flush can be acknowledged.
        let mqtt_stop = CancellationToken::new();
        let scheduler_wake = Arc::new(Notify::new());
        let outbox_wake = Arc::new(Notify::new());

        let (intake, intake_task) = Intake::start(store.clone());
        let shared = Shared {
            store: store.clone(),
            clock,
            intake,
            network: Arc::clone(&network),
            metrics: metrics_handle(),
            scheduler: Arc::clone(&scheduler_wake),
            max_body_bytes: config.http.max_body_bytes,
            guard: Arc::default(),
        };
        let http = listener.local_addr()?;
        let app = crate::api::router(shared);
        let http_token = http_stop.clone();
        let server = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .with_graceful_shutdown(async move { http_token.cancelled().await })
            .await
        });

        let mut machine_tasks = JoinSet::new();
        for (machine, profile) in &network.machines {
            let timeout = Duration::from_millis(machine.request_timeout_ms);
            let driver = DriverConfig {
                name: machine.id.clone(),
                poll_interval: Duration::from_millis(machine.poll_interval_ms),
                request_timeout: timeout,
                backoff_min: Duration::from_millis(100),
                backoff_max: Duration::from_secs(5),
            };
            let connector = ModbusConnector::new(machine.address, Arc::clone(profile), timeout);
            let (handle, facts) =
                MachineDriver::spawn(driver, connector, machines_stop.child_token());
            let supervisor = supervisor::Supervisor {
                machine: machine.id.clone(),
                store: store.clone(),
                clock,
                handle,
                scheduler: Arc::clone(&scheduler_wake),
                outbox: Arc::clone(&outbox_wake),
                refusals: Default::default(),
            };
            let span = info_span!("supervisor", machine.id = %machine.id, factory.id = %machine.factory, adapter = "modbus");
            machine_tasks.spawn(supervisor.run(facts).instrument(span));
        }

        let mut work = JoinSet::new();
        let scheduler = scheduler::Scheduler {
            store: store.clone(),
            clock,
            interval: Duration::from_millis(config.scheduler.interval_ms),
            max_queue: config.scheduler.max_queue,
            wake: Arc::clone(&scheduler_wake),
            outbox: Arc::clone(&outbox_wake),
        };
        work.spawn(
            scheduler
                .run(work_stop.clone())
                .instrument(info_span!("scheduler")),
        );
        let schedules = mqtt::connect(&broker_address, "schedules", mqtt_stop.clone());
        let factory_locations: HashMap<String, Location> = network
            .factories
            .iter()
            .map(|f| (f.id.0.clone(), f.location))
            .collect();
        for zone in &config.zones {
            let schedule: cron::Schedule = zone
                .planning_cron
                .parse()
                .with_context(|| format!("zones.{}.planning_cron", zone.id))?;
            let waves = waves::Waves {
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
                mqtt: schedules.client.clone(),
                outbox: Arc::clone(&outbox_wake),
            };
            work.spawn(
                waves
                    .run(work_stop.clone())
                    .instrument(info_span!("waves", zone = %zone.id)),
            );
        }
        let outbox_client =
            mqtt::connect_acknowledged(&broker_address, "outbox", mqtt_stop.clone());
        let publisher = tokio::spawn(
            mqtt::run_outbox(
                store.clone(),
                clock,
                outbox_client,
                outbox_stop.clone(),
                Arc::clone(&outbox_wake),
            )
            .instrument(info_span!("outbox")),
        );

        let task_store = store.clone();
        let task = tokio::spawn(async move {
            shutdown.cancelled().await;
            info!("shutting down: stopping intake");
            http_stop.cancel();
            let served = server.await;
            intake_task.await.ok();
            info!("stopping machine drivers after their in-flight requests");
            work_stop.cancel();
            machines_stop.cancel();
            while work.join_next().await.is_some() {}
            while machine_tasks.join_next().await.is_some() {}
            info!("flushing the outbox");
            outbox_stop.cancel();
            publisher.await.ok();
            mqtt_stop.cancel();
            drop(schedules);
            task_store.close().await;
            info!("stopped");
            served??;
            Ok(())
        });
        Ok(Daemon {
            http,
            mqtt: broker_address,
            store,
            clock,
            task,
        })
    }

    /// Waits until the daemon has stopped.
    pub async fn wait(self) -> anyhow::Result<()> {
        self.task.await?
    }
}

pub use crate::config::redact;

/// Resolves when SIGINT or SIGTERM arrives.
pub async fn signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
