//! `fabflow-sim`: run a simulated fleet of Modbus TCP machines, fire a burst
//! of orders at a fabflow API, or run couriers that confirm their stops.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use fabflow_sim::{
    CourierConfig, CourierFaults, CourierSpec, Fleet, FleetSpec, ReturnsSpec, couriers, fire,
    generate_orders,
};
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(
    name = "fabflow-sim",
    version,
    about = "Simulated microfactory network for fabflow"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start simulated machines (real Modbus TCP servers on 127.0.0.1) and run until Ctrl-C.
    ///
    /// Prints one line per machine: factory, machine, model, address.
    Fleet {
        /// Fleet spec (TOML: seed, time_scale, [[factories]] with [[factories.machines]]).
        /// Without it, the demo fleet: 3 factories, 12 machines.
        #[arg(long, value_name = "FILE")]
        spec: Option<PathBuf>,
        /// Scrap RNG seed (overrides the spec's).
        #[arg(long)]
        seed: Option<u64>,
        /// Simulated seconds per real second (overrides the spec's; demo default 60).
        #[arg(long, value_name = "X")]
        time_scale: Option<f64>,
        /// Load machine profiles from this directory instead of the built-in ones.
        #[arg(long, value_name = "DIR")]
        profiles: Option<PathBuf>,
        /// Run N machines for each machine of the spec (the same model,
        /// cycle time and scrap rate; copies are named `<id>-c2`, `<id>-c3`,
        /// ...): a larger floor for load and crash runs.
        #[arg(long, value_name = "N", default_value_t = 1,
              value_parser = clap::value_parser!(u32).range(1..=1000))]
        copies: u32,
        /// Serve the control API (machine status, start logs, fault
        /// injection) on this loopback address, e.g. 127.0.0.1:7070 (port 0:
        /// any free port; the address is printed).
        #[arg(long, value_name = "ADDR", value_parser = parse_loopback)]
        control: Option<std::net::SocketAddr>,
    },
    /// Post a deterministic burst of orders to {api}/v1/orders and print the report.
    Burst {
        /// API base URL, e.g. http://127.0.0.1:8080
        #[arg(long, value_name = "URL")]
        api: String,
        /// Brand bearer token.
        #[arg(long, env = "FABFLOW_TOKEN", hide_env_values = true)]
        token: String,
        /// Number of orders.
        #[arg(long, default_value_t = 100)]
        count: usize,
        /// Seed of the generated orders (same seed, same orders).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Requests in flight at once.
        #[arg(long, default_value_t = 8)]
        concurrency: usize,
        /// SKUs to order, comma-separated.
        #[arg(
            long,
            value_delimiter = ',',
            default_value = "tee-black-m,tee-white-l,tote-natural,mug-white"
        )]
        skus: Vec<String>,
        /// Delivery area: min_lat,min_lon,max_lat,max_lon (default: central Berlin).
        #[arg(
            long,
            value_delimiter = ',',
            num_args = 4,
            default_value = "52.45,13.25,52.58,13.55"
        )]
        bbox: Vec<f64>,
    },
    /// Run couriers against {api} until Ctrl-C: each polls the daemon clock
    /// (/healthz) and its schedule, and confirms every stop whose ETA has passed,
    /// in order. Then prints what they did.
    Couriers {
        /// API base URL, e.g. http://127.0.0.1:8080
        #[arg(long, value_name = "URL")]
        api: String,
        /// A courier and its bearer token; repeat for more couriers.
        #[arg(
            long = "courier",
            value_name = "ID=TOKEN",
            required = true,
            value_delimiter = ',',
            value_parser = parse_courier,
            env = "FABFLOW_COURIERS",
            hide_env_values = true
        )]
        couriers: Vec<CourierSpec>,
        /// Real milliseconds between polls.
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
        poll_ms: u64,
        /// Probability (0..=1) that a courier skips a stop and never confirms it.
        #[arg(long, default_value_t = 0.0, value_parser = parse_probability)]
        miss_rate: f64,
        /// Seed of every chance below and of the missed stops (same seed,
        /// same stops missed, late, failed...).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Riding speed over the plan's (0.05..=20): legs take their planned
        /// time divided by this; never earlier than a stop's ETA.
        #[arg(long, default_value_t = 1.0)]
        speed: f64,
        /// Probability (0..=1) that a courier arrives late at a stop.
        #[arg(long, default_value_t = 0.0, value_parser = parse_probability)]
        late_rate: f64,
        /// A late courier arrives 1 to this many simulated minutes after it would have.
        #[arg(long, default_value_t = 30.0)]
        late_max_minutes: f64,
        /// Probability (0..=1) that the customer is not home at a stop at the
        /// customer: the courier reports a failed attempt (`not_home`).
        #[arg(long, default_value_t = 0.0, value_parser = parse_probability)]
        not_home_rate: f64,
        /// Probability (0..=1) that a courier enters a wrong code once before
        /// the right one.
        #[arg(long, default_value_t = 0.0, value_parser = parse_probability)]
        wrong_code_rate: f64,
        /// Probability (0..=1), after each confirmed stop, that the courier
        /// drops out for the day (off duty until the next midnight of the
        /// daemon's clock; it still hands over the parcels it carries).
        #[arg(long, default_value_t = 0.0, value_parser = parse_probability)]
        dropout_rate: f64,
        /// One courier's own fault, replacing the value above for it:
        /// ID:FIELD=VALUE (FIELD one of speed, late_rate, late_max_minutes,
        /// not_home_rate, wrong_code_rate, dropout_rate); repeat for more.
        #[arg(long = "courier-fault", value_name = "ID:FIELD=VALUE", value_parser = parse_courier_fault)]
        courier_faults: Vec<(String, String, f64)>,
        /// Share (0..=1) of delivered orders whose customer asks for a
        /// return (through the brand token); the operator token inspects
        /// every return received. Needs both tokens.
        #[arg(long, default_value_t = 0.0, value_parser = parse_probability, requires = "brand_token")]
        return_rate: f64,
        /// Probability (0..=1) that the operator scraps a returned unit
        /// rather than restocking it.
        #[arg(long, default_value_t = 0.2, value_parser = parse_probability)]
        scrap_rate: f64,
        /// An operator token (all factories): the couriers read each
        /// pickup's code with it, as the factory operator hands it over.
        #[arg(
            long,
            env = "FABFLOW_OPERATOR_TOKEN",
            hide_env_values = true,
            requires = "brand_token"
        )]
        operator_token: Option<String>,
        /// A brand token: the couriers read each drop-off's code with it,
        /// as the brand's customer hands it over. Repeat it (or give a
        /// comma-separated list) when the orders are several brands': each
        /// stop's code is read with the token that sees it.
        #[arg(
            long,
            env = "FABFLOW_BRAND_TOKEN",
            hide_env_values = true,
            value_delimiter = ',',
            requires = "operator_token"
        )]
        brand_token: Vec<String>,
    },
}

fn parse_courier(text: &str) -> Result<CourierSpec, String> {
    match text.split_once('=') {
        Some((id, token)) if !id.is_empty() && !token.is_empty() => Ok(CourierSpec {
            id: id.to_string(),
            token: token.to_string(),
        }),
        _ => Err("expected ID=TOKEN, both non-empty".to_string()),
    }
}

fn parse_courier_fault(text: &str) -> Result<(String, String, f64), String> {
    let (id, setting) = text
        .split_once(':')
        .ok_or_else(|| "expected ID:FIELD=VALUE".to_string())?;
    let (field, value) = setting
        .split_once('=')
        .ok_or_else(|| "expected ID:FIELD=VALUE".to_string())?;
    if id.is_empty() {
        return Err("expected ID:FIELD=VALUE, with a courier id".to_string());
    }
    let value: f64 = value
        .parse()
        .map_err(|err| format!("{field}: {err} (`{value}`)"))?;
    // Checked here so that a typo fails at once, with the list of fields.
    let mut probe = CourierFaults::default();
    probe.set(field, value)?;
    Ok((id.to_string(), field.to_string(), value))
}

fn parse_loopback(text: &str) -> Result<std::net::SocketAddr, String> {
    let addr: std::net::SocketAddr = text.parse().map_err(|err| format!("{err}"))?;
    if addr.ip().is_loopback() {
        Ok(addr)
    } else {
        Err(format!(
            "must be a loopback address (the control API has no authentication), got {addr}"
        ))
    }
}

fn parse_probability(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if (0.0..=1.0).contains(&value) => Ok(value),
        Ok(value) => Err(format!("must be 0..=1, got {value}")),
        Err(err) => Err(err.to_string()),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match Cli::parse().command {
        Command::Fleet {
            spec,
            seed,
            time_scale,
            profiles,
            copies,
            control,
        } => {
            let mut spec = match spec {
                Some(path) => {
                    FleetSpec::load(&path).with_context(|| format!("loading {}", path.display()))?
                }
                None => FleetSpec::demo(1, 60.0),
            };
            if let Some(seed) = seed {
                spec.seed = seed;
            }
            if let Some(time_scale) = time_scale {
                spec.time_scale = time_scale;
            }
            spec.replicate(copies);
            let profiles = match profiles {
                Some(dir) => {
                    fabflow_adapters::load_dir(&dir).map_err(|e| anyhow::anyhow!("{e}"))?
                }
                None => fabflow_adapters::builtin_profiles(),
            };
            let fleet = std::sync::Arc::new(Fleet::start(&spec, &profiles).await?);
            for machine in fleet.machines() {
                println!(
                    "{}\t{}\t{}\t{}",
                    machine.factory_id, machine.machine_id, machine.model, machine.addr
                );
            }
            // Stops the control API at the end.
            let cancel = CancellationToken::new();
            if let Some(addr) = control {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding the control API to {addr}"))?;
                println!("control\thttp://{}", listener.local_addr()?);
                let fleet = std::sync::Arc::clone(&fleet);
                let cancel = cancel.clone();
                tokio::spawn(async move {
                    if let Err(err) = fabflow_sim::control::serve(listener, fleet, cancel).await {
                        tracing::error!(error = %err, "control API stopped");
                    }
                });
            }
            // MQTT machines log in to the daemon's broker as their own
            // users: `fabflow demo` starts them; standalone, they are left out.
            for machine in Fleet::mqtt_machines_of(&spec, &profiles) {
                eprintln!(
                    "{}\t{}\t{}\tnot started (MQTT: run it with `fabflow demo`)",
                    machine.factory_id, machine.machine_id, machine.model
                );
            }
            wait_for_stop_signal().await?;
            cancel.cancel();
            fleet.shutdown().await;
            let duplicates = fleet.duplicate_starts();
            if !duplicates.is_empty() {
                eprintln!("duplicate starts (machine, token): {duplicates:?}");
            }
        }
        Command::Burst {
            api,
            token,
            count,
            seed,
            concurrency,
            skus,
            bbox,
        } => {
            let [min_lat, min_lon, max_lat, max_lon] = bbox[..] else {
                anyhow::bail!("--bbox needs 4 numbers, got {}", bbox.len());
            };
            let skus: Vec<&str> = skus.iter().map(String::as_str).collect();
            let orders = generate_orders(seed, count, &skus, (min_lat, min_lon, max_lat, max_lon));
            let report = fire(&api, &token, orders, concurrency).await;
            println!("accepted: {}", report.accepted);
            println!("rejected: {}", report.rejected.len());
            for (index, status, body) in &report.rejected {
                println!("  order {index}: {status} {body}");
            }
            for (label, q) in [("p50", 0.5), ("p95", 0.95), ("max", 1.0)] {
                if let Some(latency) = report.latency_quantile(q) {
                    println!("latency {label}: {latency:?}");
                }
            }
        }
        Command::Couriers {
            api,
            couriers,
            poll_ms,
            miss_rate,
            seed,
            operator_token,
            brand_token,
            speed,
            late_rate,
            late_max_minutes,
            not_home_rate,
            wrong_code_rate,
            dropout_rate,
            courier_faults,
            return_rate,
            scrap_rate,
        } => {
            let faults = CourierFaults {
                speed,
                late_rate,
                late_max_minutes,
                not_home_rate,
                wrong_code_rate,
                dropout_rate,
            };
            let mut problems: Vec<String> = faults.problems();
            let mut per_courier = std::collections::BTreeMap::new();
            for (id, field, value) in courier_faults {
                let own = per_courier.entry(id.clone()).or_insert(faults);
                if let Err(problem) = own.set(&field, value) {
                    problems.push(format!("--courier-fault {id}: {problem}"));
                }
            }
            for (id, own) in &per_courier {
                problems.extend(
                    own.problems()
                        .into_iter()
                        .map(|p| format!("--courier-fault {id}: {p}")),
                );
            }
            let returns = ReturnsSpec {
                rate: return_rate,
                scrap_rate,
            };
            problems.extend(returns.problems());
            if !problems.is_empty() {
                anyhow::bail!("{}", problems.join("\n"));
            }
            let config = CourierConfig {
                poll_interval: Duration::from_millis(poll_ms),
                miss_rate,
                seed,
                faults,
                per_courier,
                returns,
                codes: operator_token.map(|operator_token| fabflow_sim::CodeSource {
                    operator_token,
                    brand_tokens: brand_token,
                }),
                ..CourierConfig::new(api, couriers)
            };
            // Stops the couriers; cancelled on Ctrl-C/SIGTERM or if waiting for them fails.
            let cancel = CancellationToken::new();
            let running = tokio::spawn(couriers::run(config, cancel.clone()));
            let stopped = wait_for_stop_signal().await;
            cancel.cancel();
            let report = running.await.context("courier runner failed")?;
            stopped?;
            println!("confirmed: {}", report.confirmed);
            println!("conflicts: {}", report.conflicts);
            println!("errors: {}", report.errors);
            println!("missed: {}", report.missed);
            println!("late: {}", report.late);
            println!("not home: {}", report.not_home);
            println!("wrong codes: {}", report.wrong_codes);
            println!("dropouts: {}", report.dropouts);
            for (courier, counts) in &report.per_courier {
                println!(
                    "  {courier}: confirmed {} conflicts {} errors {} missed {} late {} not home {} wrong codes {} dropouts {}",
                    counts.confirmed,
                    counts.conflicts,
                    counts.errors,
                    counts.missed,
                    counts.late,
                    counts.not_home,
                    counts.wrong_codes,
                    counts.dropouts
                );
            }
            let back = &report.returns;
            println!(
                "returns: requested {} ({} units), refused {}, inspected {}: restocked {}, scrapped {}; errors {}",
                back.requested,
                back.units,
                back.refused,
                back.inspected,
                back.restocked,
                back.scrapped,
                back.errors
            );
        }
    }
    Ok(())
}

/// Waits for Ctrl-C (SIGINT) or, on Unix, SIGTERM.
async fn wait_for_stop_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.context("waiting for Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}
