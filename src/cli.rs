//! Command-line interface.

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};
use fabflow::api::auth::{self, Role};
use fabflow::config::{Config, ConfigError};
use fabflow::daemon::{self, Daemon};
use fabflow::domain::OrderState;
use fabflow::runtime;
use fabflow::store::Store;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "fabflow",
    version,
    about = "Fulfilment orchestration for neighbourhood microfactories"
)]
pub struct Cli {
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the daemon with a configuration file.
    Run {
        /// Configuration file (TOML), e.g. config/production.example.toml.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Run everything on this machine: daemon, embedded MQTT broker, SQLite,
    /// a simulated fleet of 3 factories / 15 machines (12 Modbus, 3 MQTT), simulated couriers and
    /// a burst of post-event orders.
    Demo(DemoArgs),
    /// Check a configuration file and report every problem in it.
    CheckConfig {
        /// Configuration file (TOML).
        file: PathBuf,
    },
    /// Manage API tokens (writes to the configured database).
    Tokens {
        #[command(subcommand)]
        command: TokenCommand,
    },
    /// Manage the embedded MQTT broker's users (writes to the configured
    /// database; the running daemon checks logins against it at each CONNECT).
    MqttUsers {
        #[command(subcommand)]
        command: MqttUserCommand,
    },
    /// Work with orders through the HTTP API.
    Orders {
        #[command(subcommand)]
        command: OrderCommand,
    },
    /// List machines with their state, mode, job and queue (HTTP API).
    Machines {
        /// Only this factory's machines.
        #[arg(long)]
        factory: Option<String>,
        #[command(flatten)]
        api: crate::ops_cli::ApiArgs,
    },
    /// List jobs, filtered by factory and state (HTTP API).
    Jobs {
        #[arg(long)]
        factory: Option<String>,
        /// pending | scheduled | dispatched | running | held | done | failed | cancelled
        #[arg(long)]
        state: Option<String>,
        #[command(flatten)]
        api: crate::ops_cli::ApiArgs,
    },
    /// Pause, drain, resume a machine, or start or end its maintenance (HTTP API).
    Machine {
        #[command(subcommand)]
        command: crate::ops_cli::MachineCommand,
        #[command(flatten)]
        api: crate::ops_cli::ApiArgs,
    },
    /// Decide a held job: resume it, or abandon (retry) it (HTTP API).
    Job {
        #[command(subcommand)]
        command: crate::ops_cli::JobCommand,
        #[command(flatten)]
        api: crate::ops_cli::ApiArgs,
    },
    /// Forecast demand from a long-format CSV file (`unique_id,ds,y`) with
    /// fabflow's models; writes `unique_id,ds,y_hat` to standard output.
    Forecast(crate::solve::ForecastArgs),
    /// Solve a Solomon (VRPTW) or Li & Lim (PDPTW) instance with the courier
    /// router; prints JSON with `vehicles`, `distance` and `routes`.
    Route(crate::solve::RouteArgs),
    /// Solve a flexible job-shop instance (FJSP text format) with the
    /// production scheduler; prints JSON with `makespan` and `operations`.
    Schedule(crate::solve::ScheduleArgs),
}

#[derive(Debug, Args)]
struct DemoArgs {
    /// HTTP port on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// MQTT port of the embedded broker on 127.0.0.1 (0: any free port).
    #[arg(long, default_value_t = 1883)]
    mqtt_port: u16,
    /// Orders in the post-event burst.
    #[arg(long, default_value_t = 300)]
    orders: usize,
    /// Seed for the fleet and the orders (same seed, same demo).
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Simulated seconds per real second.
    #[arg(long, default_value_t = 600.0)]
    time_scale: f64,
    /// SQLite file to use (default: a new file in a temporary directory).
    #[arg(long, conflicts_with = "database_url")]
    db: Option<PathBuf>,
    /// Use this database instead of SQLite (e.g. postgres://user@host/db).
    #[arg(long)]
    database_url: Option<String>,
    /// Stop once every order is delivered (or waits for an operator's
    /// decision after its delivery attempts ran out) instead of running
    /// until Ctrl-C.
    #[arg(long)]
    exit_when_done: bool,
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Create a token; it is printed once and stored only as a hash.
    Create {
        #[arg(long, short)]
        config: PathBuf,
        /// brand | operator | courier | admin
        #[arg(long)]
        role: String,
        /// Brand id, courier id, comma-separated factory ids, or `*`.
        #[arg(long)]
        scope: String,
        /// A name to recognise the token by.
        #[arg(long, default_value = "cli")]
        name: String,
        /// Days until the token stops working (wall clock); never if not given.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3650))]
        expires_in_days: Option<u32>,
    },
    /// List tokens: id, role, scope, name, created, expires, revoked (never the token).
    List {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Revoke a token by its id (from `tokens list`): every daemon on the
    /// database stops accepting it within about a second.
    Revoke {
        #[arg(long, short)]
        config: PathBuf,
        /// The token's id (12 hex digits), or the token itself.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum MqttUserCommand {
    /// Create a user with a random password, printed once and stored only as a hash.
    Create {
        #[arg(long, short)]
        config: PathBuf,
        /// observer | courier | brand | machine
        #[arg(long)]
        role: String,
        /// The user name: the courier, brand or machine id (or any name for an observer).
        #[arg(long)]
        name: String,
        /// The machine's factory (machines only).
        #[arg(long)]
        factory: Option<String>,
    },
    /// Give a user a new random password (printed once); the old one stops working.
    Rotate {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        name: String,
    },
    /// Remove a user.
    Delete {
        #[arg(long, short)]
        config: PathBuf,
        #[arg(long)]
        name: String,
    },
    /// List users (name, role, factory; never passwords).
    List {
        #[arg(long, short)]
        config: PathBuf,
    },
}

#[derive(Debug, Subcommand)]
enum OrderCommand {
    /// Import a whole event's orders (CSV or NDJSON): all or nothing, with a per-line report.
    Import {
        /// The file (.csv, or .ndjson/.jsonl).
        file: PathBuf,
        /// API base URL.
        #[arg(long, env = "FABFLOW_URL", default_value = "http://127.0.0.1:8080")]
        url: String,
        /// Brand (or admin) token.
        #[arg(long, env = "FABFLOW_TOKEN")]
        token: String,
        /// Retry-safe key: importing the same file again with it replays the first result.
        #[arg(long)]
        idempotency_key: Option<String>,
    },
    /// Show one order with its jobs and handoffs.
    Show {
        /// The order's id.
        id: String,
        #[command(flatten)]
        api: crate::ops_cli::ApiArgs,
    },
    /// Decide what becomes of an escalated order (its delivery attempts ran out).
    Decide {
        /// The order's id.
        id: String,
        decision: crate::ops_cli::Decision,
        /// With retry: the new latest delivery time (RFC 3339).
        #[arg(long)]
        deliver_by: Option<String>,
        #[command(flatten)]
        api: crate::ops_cli::ApiArgs,
    },
}

/// Logs to stderr; `RUST_LOG` overrides `default` (the demo keeps its
/// terminal for the progress line and logs only warnings by default).
fn init_logging(json: bool, default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.compact().init();
    }
}

/// Runs the offline solvers (`forecast`, `route`, `schedule`) at once: they
/// are synchronous and need no async runtime, whose worker threads would
/// cost each run about a millisecond to start. Any other command comes back
/// for `main` (boxed: a `Cli` is large for an error variant).
pub fn run_offline(cli: Cli) -> Result<ExitCode, Box<Cli>> {
    match cli.command {
        Command::Forecast(args) => Ok(crate::solve::forecast(args)),
        Command::Route(args) => Ok(crate::solve::route(args)),
        Command::Schedule(args) => Ok(crate::solve::schedule(args)),
        command => Err(Box::new(Cli { command, ..cli })),
    }
}

pub async fn main(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::CheckConfig { file } => check_config(&file),
        Command::Run { config } => {
            init_logging(
                cli.log_json,
                "info,rumqttd=off,rumqttc=warn,sqlx=warn,tower_http=warn",
            );
            run(&config).await
        }
        Command::Demo(args) => {
            init_logging(cli.log_json, "warn,rumqttd=off");
            demo(args).await
        }
        Command::Tokens { command } => tokens(command).await,
        Command::MqttUsers { command } => mqtt_users(command).await,
        Command::Orders {
            command:
                OrderCommand::Import {
                    file,
                    url,
                    token,
                    idempotency_key,
                },
        } => import(&file, &url, &token, idempotency_key.as_deref()).await,
        Command::Orders {
            command: OrderCommand::Show { id, api },
        } => crate::ops_cli::show_order(&api, &id).await,
        Command::Orders {
            command:
                OrderCommand::Decide {
                    id,
                    decision,
                    deliver_by,
                    api,
                },
        } => crate::ops_cli::decide_order(&api, &id, decision, deliver_by.as_deref()).await,
        Command::Machines { factory, api } => {
            crate::ops_cli::machines(&api, factory.as_deref()).await
        }
        Command::Jobs {
            factory,
            state,
            api,
        } => crate::ops_cli::jobs(&api, factory.as_deref(), state.as_deref()).await,
        Command::Machine { command, api } => crate::ops_cli::machine(&api, command).await,
        Command::Job { command, api } => crate::ops_cli::job(&api, command).await,
        Command::Forecast(args) => Ok(crate::solve::forecast(args)),
        Command::Route(args) => Ok(crate::solve::route(args)),
        Command::Schedule(args) => Ok(crate::solve::schedule(args)),
    }
}

async fn tokens(command: TokenCommand) -> anyhow::Result<ExitCode> {
    match command {
        TokenCommand::Create {
            config,
            role,
            scope,
            name,
            expires_in_days,
        } => {
            let config = load(&config)?;
            let role = Role::parse(&role).with_context(|| {
                format!("--role must be brand, operator, courier or admin, got {role:?}")
            })?;
            if let Some(problem) = auth::scope_problem(role, &scope, &config) {
                bail!("--scope: {problem}");
            }
            let expires_ms = expires_in_days.map(|days| {
                auth::wall_clock_ms() + i64::from(days) * 24 * fabflow::domain::HOUR_MS
            });
            let store = Store::connect(&config.database.url).await?;
            let (token, _) = auth::issue_expiring(
                &store,
                role,
                &scope,
                &name,
                expires_ms,
                "cli",
                auth::wall_clock_ms(),
            )
            .await?;
            store.close().await;
            println!("{token}");
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::List { config } => {
            let config = load(&config)?;
            let store = Store::connect(&config.database.url).await?;
            let tokens = store.list_tokens().await?;
            store.close().await;
            let when = |ms: Option<i64>| {
                ms.and_then(chrono::DateTime::from_timestamp_millis)
                    .map_or("-".to_string(), |t| t.format("%Y-%m-%d %H:%M").to_string())
            };
            println!(
                "{:<12}  {:<8}  {:<20}  {:<16}  {:<16}  {:<16}  REVOKED",
                "ID", "ROLE", "SCOPE", "NAME", "CREATED", "EXPIRES"
            );
            for token in tokens {
                println!(
                    "{:<12}  {:<8}  {:<20}  {:<16}  {:<16}  {:<16}  {}",
                    token.id,
                    token.role,
                    token.scope,
                    token.name,
                    when(Some(token.created_ms)),
                    when(token.expires_ms),
                    when(token.revoked_ms)
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        TokenCommand::Revoke { config, id } => {
            let config = load(&config)?;
            // The token itself names its id through its hash.
            let id = if id.len() == fabflow::store::TOKEN_ID_LEN {
                id
            } else {
                auth::hash(&id)[..fabflow::store::TOKEN_ID_LEN].to_string()
            };
            let store = Store::connect(&config.database.url).await?;
            let revoked = store.revoke_token(&id, "cli", auth::wall_clock_ms()).await;
            store.close().await;
            match revoked {
                Ok(()) => {
                    println!("revoked {id}");
                    Ok(ExitCode::SUCCESS)
                }
                Err(fabflow::store::StoreError::NotFound(_)) => {
                    bail!("no live token with id {id} (see `fabflow tokens list`)")
                }
                Err(err) => Err(err.into()),
            }
        }
    }
}

async fn mqtt_users(command: MqttUserCommand) -> anyhow::Result<ExitCode> {
    use fabflow::runtime::broker::{access::MqttRole, users};
    let now = fabflow::runtime::Clock::new(1.0).now_ms();
    let config = match &command {
        MqttUserCommand::Create { config, .. }
        | MqttUserCommand::Rotate { config, .. }
        | MqttUserCommand::Delete { config, .. }
        | MqttUserCommand::List { config } => load(config)?,
    };
    let store = Store::connect(&config.database.url).await?;
    let outcome = match command {
        MqttUserCommand::Create {
            role,
            name,
            factory,
            ..
        } => {
            let role = MqttRole::parse(&role)
                .filter(|role| *role != MqttRole::Daemon)
                .with_context(|| {
                    format!("--role must be observer, courier, brand or machine, got {role:?}")
                })?;
            match users::create(&store, role, &name, factory.as_deref(), "cli", now).await? {
                Some(user) => {
                    println!("{}", user.password);
                    ExitCode::SUCCESS
                }
                None => {
                    eprintln!("MQTT user {name:?} exists; use `fabflow mqtt-users rotate`");
                    ExitCode::FAILURE
                }
            }
        }
        MqttUserCommand::Rotate { name, .. } => {
            match users::rotate(&store, &name, "cli", now).await? {
                Some(password) => {
                    println!("{password}");
                    ExitCode::SUCCESS
                }
                None => {
                    eprintln!("no MQTT user {name:?}");
                    ExitCode::FAILURE
                }
            }
        }
        MqttUserCommand::Delete { name, .. } => {
            if store.delete_mqtt_user(&name, "cli", now).await? {
                ExitCode::SUCCESS
            } else {
                eprintln!("no MQTT user {name:?}");
                ExitCode::FAILURE
            }
        }
        MqttUserCommand::List { .. } => {
            for user in store.mqtt_users().await? {
                println!("{}\t{}\t{}", user.username, user.role, user.factory);
            }
            ExitCode::SUCCESS
        }
    };
    store.close().await;
    Ok(outcome)
}

fn load(path: &std::path::Path) -> anyhow::Result<Config> {
    Ok(Config::load(path)?)
}

/// `machines.ID.model` problems of a file read only as TOML: models neither
/// built in nor in its `profile_dirs` (profile files that do not read are
/// left to the next run, once the file reads).
fn unknown_models(file: &std::path::Path) -> Vec<String> {
    let Some(table) = std::fs::read_to_string(file)
        .ok()
        .and_then(|text| text.parse::<toml::Table>().ok())
    else {
        return Vec::new();
    };
    let base = file.parent().unwrap_or(std::path::Path::new("."));
    let mut known: Vec<String> = fabflow_adapters::builtin_profiles()
        .into_iter()
        .map(|p| p.model)
        .collect();
    let dirs = table.get("profile_dirs").and_then(toml::Value::as_array);
    for dir in dirs.into_iter().flatten().filter_map(toml::Value::as_str) {
        let (found, _) = fabflow_adapters::read_dir(base.join(dir));
        known.extend(found.into_iter().map(|p| p.model));
    }
    known.sort_unstable();
    known.dedup();
    let machines = table.get("machines").and_then(toml::Value::as_array);
    machines
        .into_iter()
        .flatten()
        .enumerate()
        .filter_map(|(index, machine)| {
            let model = machine.get("model")?.as_str()?;
            if known.iter().any(|k| k == model) {
                return None;
            }
            let id = machine
                .get("id")
                .and_then(toml::Value::as_str)
                .map_or_else(|| format!("[{index}]"), |id| format!(".{id}"));
            Some(format!(
                "machines{id}.model: unknown machine model {model:?} (profiles: {})",
                known.join(", ")
            ))
        })
        .collect()
}

fn check_config(file: &std::path::Path) -> anyhow::Result<ExitCode> {
    // Every problem at once: the values', the profiles', and how machines
    // join their models (an unknown model beside a bad value).
    let (config, problems) = match Config::load_unchecked(file) {
        Ok(loaded) => loaded,
        Err(mut err) => {
            // The file does not read as a config (unknown keys, wrong
            // types): its machines' models are still checked, from the raw
            // file, so that they are not left for the next run.
            err.problems.extend(unknown_models(file));
            eprintln!("{err}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let mut failed = false;
    if !problems.is_empty() {
        eprintln!(
            "{}",
            ConfigError {
                file: file.display().to_string(),
                problems,
            }
        );
        failed = true;
    }
    match runtime::profiles::load_profiles(&config) {
        Ok(profiles) => {
            if let Err(err) = runtime::Network::new(&config, &profiles, &file.display().to_string())
            {
                eprintln!("{err}");
                failed = true;
            }
        }
        Err(errors) => {
            eprintln!("{errors}");
            failed = true;
        }
    }
    if failed {
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "{}: ok ({} zones, {} factories, {} machines, {} couriers, {} SKUs)",
        file.display(),
        config.zones.len(),
        config.factories.len(),
        config.machines.len(),
        config.couriers.len(),
        config.skus.len()
    );
    Ok(ExitCode::SUCCESS)
}

async fn run(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    let profiles = runtime::profiles::load_profiles(&config)?;
    let listener = tokio::net::TcpListener::bind(config.http.listen)
        .await
        .with_context(|| format!("binding http.listen {}", config.http.listen))?;
    let shutdown = CancellationToken::new();
    let daemon = Daemon::start(config, profiles, listener, shutdown.clone()).await?;
    if !daemon.mqtt_users.is_empty() {
        println!(
            "MQTT users created (passwords shown once; `fabflow mqtt-users rotate` makes new ones):"
        );
        for user in &daemon.mqtt_users {
            println!("  {:<9} {:<20} {}", user.role, user.username, user.password);
        }
    }
    tracing::info!(url = %format!("http://{}", daemon.http), "fabflow is running");
    daemon::signal().await;
    shutdown.cancel();
    daemon.wait().await?;
    Ok(ExitCode::SUCCESS)
}

async fn bind_or_any(port: u16) -> anyhow::Result<tokio::net::TcpListener> {
    match tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).await {
        Ok(listener) => Ok(listener),
        Err(err) if port != 0 => {
            eprintln!("port {port} is busy ({err}); using a free port instead");
            Ok(tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?)
        }
        Err(err) => Err(err.into()),
    }
}

fn port_free(port: u16) -> bool {
    std::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], port))).is_ok()
}

async fn demo(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let mut config = Config::demo()?;
    config.time_scale = args.time_scale;
    let temp = tempdir_for_demo()?;
    let db = args
        .db
        .clone()
        .unwrap_or_else(|| temp.join("fabflow-demo.db"));
    config.database.url = match &args.database_url {
        Some(url) => url.clone(),
        None => format!("sqlite://{}", db.display()),
    };
    let mqtt_port = if args.mqtt_port != 0 && port_free(args.mqtt_port) {
        args.mqtt_port
    } else {
        0
    };
    config.mqtt = fabflow::config::MqttConfig::Embedded {
        listen: SocketAddr::from(([127, 0, 0, 1], mqtt_port)),
    };

    let profiles = fabflow_adapters::builtin_profiles();
    let spec = fabflow_sim::FleetSpec::demo(args.seed, args.time_scale);
    let mut fleet = fabflow_sim::Fleet::start(&spec, &profiles)
        .await
        .context("starting the simulated fleet")?;
    config.machines = fabflow::demo::machines(&fleet, 50, 1_000);
    let machine_count = config.machines.len();
    let mqtt_machines = fabflow::demo::mqtt_machines(&spec, &profiles, 50, 1_000);
    let mqtt_count = mqtt_machines.len();
    config.machines.extend(mqtt_machines.iter().cloned());
    let database_url = config.database.url.clone();
    let couriers: Vec<String> = config.couriers.iter().map(|c| c.id.clone()).collect();
    let listener = bind_or_any(args.port).await?;
    let shutdown = CancellationToken::new();
    let daemon = Daemon::start(config, profiles.clone(), listener, shutdown.clone()).await?;
    let url = format!("http://{}", daemon.http);
    let now = daemon.clock.now_ms();
    // The MQTT machines log in as their own users: made at this start, or
    // (a database kept from an earlier demo) given a new password now.
    let mut passwords: std::collections::HashMap<String, String> = daemon
        .mqtt_users
        .iter()
        .map(|user| (user.username.clone(), user.password.clone()))
        .collect();
    for machine in &mqtt_machines {
        if !passwords.contains_key(&machine.id) {
            let rotated =
                fabflow::runtime::broker::users::rotate(&daemon.store, &machine.id, "demo", now)
                    .await?
                    .with_context(|| format!("no MQTT user for machine {}", machine.id))?;
            passwords.insert(machine.id.clone(), rotated);
        }
    }
    fleet
        .start_mqtt(
            &spec,
            &profiles,
            &daemon.mqtt.host,
            daemon.mqtt.port,
            &passwords,
            Duration::from_millis(500),
        )
        .await
        .context("starting the simulated MQTT machines")?;
    let brand = auth::issue(&daemon.store, Role::Brand, "demo-brand", "demo brand", now).await?;
    let operator = auth::issue(&daemon.store, Role::Operator, "*", "demo operator", now).await?;
    let admin = auth::issue(&daemon.store, Role::Admin, "*", "demo admin", now).await?;
    let brand_mqtt = fabflow::runtime::broker::users::create(
        &daemon.store,
        fabflow::runtime::broker::access::MqttRole::Brand,
        "demo-brand",
        None,
        "demo",
        now,
    )
    .await?;
    let mut courier_tokens = Vec::new();
    for courier in &couriers {
        let token = auth::issue(&daemon.store, Role::Courier, courier, courier, now).await?;
        courier_tokens.push((courier.clone(), token));
    }
    println!();
    println!("fabflow demo is up: {url}");
    println!("  dashboard  {url}/#token={operator}");
    println!("  API spec   {url}/openapi.json");
    println!(
        "  MQTT       {}  (topics fabflow/v1/#; users below)",
        daemon.mqtt.url()
    );
    println!("  database   {}", fabflow::config::redact(&database_url));
    println!(
        "  fleet      3 factories, {machine_count} Modbus TCP machines on 127.0.0.1, {mqtt_count} MQTT machines on the broker"
    );
    println!(
        "  time       x{} (48 simulated hours take {:.1} minutes)",
        args.time_scale,
        48.0 * 60.0 / args.time_scale
    );
    println!("tokens (shown once):");
    println!("  brand      {brand}");
    println!("  operator   {operator}");
    println!("  admin      {admin}");
    for (courier, token) in &courier_tokens {
        println!("  courier    {token}  ({courier})");
    }
    println!("MQTT users (shown once; user name, then password):");
    for user in daemon.mqtt_users.iter().chain(&brand_mqtt) {
        println!(
            "  {:<9}  {:<12}  {}",
            user.role, user.username, user.password
        );
    }
    if let Some(observer) = daemon
        .mqtt_users
        .iter()
        .find(|user| user.role == fabflow::runtime::broker::access::MqttRole::Observer)
    {
        println!(
            "try: mosquitto_sub -h {} -p {} -u {} -P {} -t 'fabflow/v1/#' -v",
            daemon.mqtt.host, daemon.mqtt.port, observer.username, observer.password
        );
    }
    println!("try: curl -H 'Authorization: Bearer {brand}' {url}/v1/orders?limit=5");
    println!("(warnings only on stderr; RUST_LOG=info shows every job and machine)");
    println!();

    let courier_stop = CancellationToken::new();
    let courier_specs = courier_tokens
        .iter()
        .map(|(id, token)| fabflow_sim::couriers::CourierSpec {
            id: id.clone(),
            token: token.clone(),
        })
        .collect();
    let courier_task = tokio::spawn(fabflow_sim::couriers::run(
        fabflow_sim::couriers::CourierConfig {
            poll_interval: Duration::from_millis(250),
            seed: args.seed,
            // The operator gives pickups' codes, the brand's customers drop-offs'.
            codes: Some(fabflow_sim::CodeSource::one_brand(
                operator.clone(),
                brand.clone(),
            )),
            // Couriers as they are: now and then late, a customer out, a
            // mistyped code, and bike-2 may call it a day early.
            faults: demo_courier_faults(0.0),
            per_courier: [("bike-2".to_string(), demo_courier_faults(0.01))].into(),
            // One delivered order in twenty comes back; the operator
            // restocks most of it.
            returns: fabflow_sim::ReturnsSpec {
                rate: 0.05,
                scrap_rate: 0.2,
            },
            ..fabflow_sim::couriers::CourierConfig::new(url.clone(), courier_specs)
        },
        courier_stop.clone(),
    ));

    let skus = [
        "tee-black-m",
        "tee-black-m",
        "tote-natural",
        "mug-white",
        "phone-case",
        "tee-black-m",
        "tote-natural",
        "keychain",
    ];
    let orders =
        fabflow_sim::generate_orders(args.seed, args.orders, &skus, (52.45, 13.30, 52.57, 13.52));
    let burst_url = url.clone();
    let burst_token = brand.clone();
    let burst =
        tokio::spawn(async move { fabflow_sim::fire(&burst_url, &burst_token, orders, 16).await });

    let started = daemon.clock.now_ms();
    let mut ticker = tokio::time::interval(Duration::from_secs(2));
    let mut burst = Some(burst);
    let signal = daemon::signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            _ = &mut signal => break,
            _ = ticker.tick() => {}
        }
        if let Some(task) = burst.as_mut().filter(|t| t.is_finished()) {
            match task.await {
                Ok(report) => println!(
                    "burst: {} orders accepted, {} rejected{}",
                    report.accepted,
                    report.rejected.len(),
                    report
                        .rejected
                        .first()
                        .map(|(i, status, body)| format!(
                            " (first: order {i}, HTTP {status}: {body})"
                        ))
                        .unwrap_or_default()
                ),
                Err(err) => println!("burst failed: {err}"),
            }
            burst = None;
        }
        let counts = daemon.store.order_counts().await.unwrap_or_default();
        let n = |state: OrderState| counts.get(&state).copied().unwrap_or(0);
        let total: i64 = counts.values().sum();
        // Orders whose delivery attempts ran out (not home, refused) wait
        // for an operator (`POST /v1/orders/{id}/escalation`); the demo says
        // so rather than seem stuck.
        let escalated = daemon.store.escalated_count().await.unwrap_or(0);
        let waiting = if escalated > 0 {
            format!(" · waiting for an operator {escalated}")
        } else {
            String::new()
        };
        let hours = (daemon.clock.now_ms() - started) as f64 / 3_600_000.0;
        println!(
            "[+{hours:5.1} h] orders {total}: accepted {} · in production {} · ready {} · handed off {} · delivered {}{waiting}",
            n(OrderState::Accepted),
            n(OrderState::InProduction),
            n(OrderState::Ready),
            n(OrderState::OutForDelivery),
            n(OrderState::Delivered),
        );
        let settled = n(OrderState::Delivered) + n(OrderState::Cancelled);
        if args.exit_when_done && burst.is_none() && total > 0 && settled + escalated >= total {
            if escalated > 0 {
                println!(
                    "every order is delivered but {escalated}, whose delivery attempts ran out: \
                     they wait for an operator's decision (GET /v1/orders?state=ready)"
                );
            } else {
                println!("every order is delivered");
            }
            break;
        }
    }
    println!("stopping…");
    courier_stop.cancel();
    let _ = courier_task.await;
    shutdown.cancel();
    daemon.wait().await?;
    fleet.shutdown().await;
    if let Some(dup) = fleet.duplicate_starts().first() {
        bail!("machine {} started job token {} twice", dup.0, dup.1);
    }
    Ok(ExitCode::SUCCESS)
}

/// The demo couriers' modest faults, dropping out at `dropout_rate` per stop.
fn demo_courier_faults(dropout_rate: f64) -> fabflow_sim::CourierFaults {
    fabflow_sim::CourierFaults {
        speed: 1.0,
        late_rate: 0.05,
        late_max_minutes: 20.0,
        not_home_rate: 0.02,
        wrong_code_rate: 0.03,
        dropout_rate,
    }
}

fn tempdir_for_demo() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!("fabflow-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

async fn import(
    file: &std::path::Path,
    url: &str,
    token: &str,
    key: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let body = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let content_type = match file.extension().and_then(|e| e.to_str()) {
        Some("csv") => "text/csv",
        Some("ndjson" | "jsonl") => "application/x-ndjson",
        _ => bail!("{}: use a .csv, .ndjson or .jsonl file", file.display()),
    };
    let client = reqwest::Client::new();
    let mut request = client
        .post(format!("{}/v1/orders/import", url.trim_end_matches('/')))
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body);
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = request
        .send()
        .await
        .with_context(|| format!("POST {url}/v1/orders/import"))?;
    let status = response.status();
    let report: serde_json::Value = response.json().await.context("reading the import report")?;
    if let Some(orders) = report.get("orders").and_then(|o| o.as_array()) {
        for line in orders {
            let errors = line
                .get("errors")
                .and_then(|e| e.as_array())
                .cloned()
                .unwrap_or_default();
            let at = line.get("line").and_then(|l| l.as_u64()).unwrap_or(0);
            if errors.is_empty() {
                println!(
                    "line {at}: ok {}",
                    line.get("id").and_then(|i| i.as_str()).unwrap_or("-")
                );
            } else {
                for error in errors {
                    println!(
                        "line {at}: {} {}",
                        error.get("pointer").and_then(|p| p.as_str()).unwrap_or(""),
                        error.get("reason").and_then(|r| r.as_str()).unwrap_or("")
                    );
                }
            }
        }
    } else {
        println!("{report}");
    }
    if status.is_success() {
        println!(
            "imported {} orders",
            report.get("imported").and_then(|n| n.as_u64()).unwrap_or(0)
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!("nothing imported (HTTP {status})");
        Ok(ExitCode::FAILURE)
    }
}
