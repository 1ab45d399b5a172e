//! Supervision benchmark: one `fabflow run` daemon supervising many simulated
//! machines (Modbus TCP and MQTT mixed), each polled (Modbus) or reporting
//! (MQTT) once per `--poll-ms`, while orders keep every machine busy.
//!
//! ```text
//! cargo build --release --bin fabflow
//! cargo bench --bench supervision -- --machines 1000
//! ```
//!
//! The daemon runs as its own process (found at `--fabflow`, default
//! `target/release/fabflow`), on a fresh SQLite file, its embedded broker and
//! 1x time; the simulated fleet runs in this process. It reports, over the
//! measured window:
//! - the daemon's CPU share (user + system time from /proc, in cores) and its
//!   RSS (peak resident set, and the largest sampled);
//! - the delay from a machine making a job's last unit (dated by the
//!   simulated machine itself) to the daemon storing the job as done
//!   (`jobs.updated_ms` of its done transition), p50/p90/p99/max, for
//!   Modbus and MQTT machines apart;
//! - as the same run's reference, what bare polling costs: this process's
//!   CPU while it reads every Modbus machine's status once per period with
//!   fabflow's own Modbus adapter and nothing else (no database, no
//!   broker), measured before the daemon starts. It includes the simulated
//!   machines answering.
//!
//! Linux only (/proc). Without `--machines` it prints how to use it and exits
//! 0, so a plain `cargo bench` does not start 1,000 machines. Needs an open
//! file limit of about three per machine (`ulimit -n`). See
//! docs/benchmarks.md.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use clap::Parser;
use fabflow_adapters::{MachineLink, ModbusLink, Profile};
use fabflow_sim::{FactorySpec, Fleet, FleetSpec, MachineSpec};
use sqlx::Row;
use tokio::io::{AsyncBufReadExt, BufReader};

#[derive(Debug, Parser)]
#[command(
    about = "Supervise many simulated machines with one daemon and report its CPU, RSS and completion delay"
)]
struct Args {
    /// Machines in the fleet (without it: print usage and exit).
    #[arg(long)]
    machines: Option<usize>,
    /// Modbus poll interval and MQTT report interval, milliseconds.
    #[arg(long, default_value_t = 1000)]
    poll_ms: u64,
    /// Simulated seconds per unit, on average (each machine's is spread over
    /// 0.75x..1.25x of it; 1x time).
    #[arg(long, default_value_t = 20.0)]
    cycle_seconds: f64,
    /// Seconds from the first orders to the measured window (machines fill up).
    #[arg(long, default_value_t = 60)]
    warmup: u64,
    /// Length of the measured window, seconds.
    #[arg(long, default_value_t = 120)]
    seconds: u64,
    /// Seconds of the bare-polling reference (0: skip it).
    #[arg(long, default_value_t = 15)]
    reference_seconds: u64,
    /// Orders per second fed after the first burst (default: about what the
    /// fleet completes, with a fifth more).
    #[arg(long)]
    orders_per_s: Option<f64>,
    /// The daemon's `[scheduler] interval_ms` (the demo's: 100).
    #[arg(long, default_value_t = 100)]
    scheduler_interval_ms: u64,
    /// The daemon's `[scheduler] planner` (`shop`, the default, or `queue`).
    #[arg(long, default_value = "shop")]
    planner: String,
    /// The daemon's binary.
    #[arg(long, default_value = "target/release/fabflow")]
    fabflow: PathBuf,
    /// Keep the work directory (config, database, daemon log).
    #[arg(long)]
    keep: bool,
    /// Passed by `cargo bench` to every bench binary; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

/// Machines are dealt from blocks of 20: 6 DTG printers, 2 heat presses, 5
/// UV printers and 1 FDM printer on Modbus TCP; 4 JSON heat presses and 2
/// networked 3D printers on MQTT (30% MQTT).
const BLOCK: [(&str, usize); 6] = [
    ("acme-dtg-200", 6),
    ("heatwave-hp-40", 2),
    ("generic-json", 4),
    ("lumen-uv-6", 5),
    ("forge-fdm-3", 1),
    ("strata-p1", 2),
];
const FACTORIES: [&str; 3] = ["north", "centre", "south"];
const SKUS: [&str; 5] = [
    "tee-black-m",
    "tote-natural",
    "mug-white",
    "phone-case",
    "keychain",
];
const BBOX: (f64, f64, f64, f64) = (52.45, 13.30, 52.57, 13.52);
/// Jobs per order of `generate_orders` over SKUS: 2 lines on average, each
/// 1.4 jobs (tees and totes take two steps).
const JOBS_PER_ORDER: f64 = 2.8;

fn main() -> ExitCode {
    let args = Args::parse();
    let Some(machines) = args.machines else {
        println!("supervision benchmark: pass --machines N (see --help), e.g.");
        println!("  cargo build --release --bin fabflow");
        println!("  cargo bench --bench supervision -- --machines 1000");
        return ExitCode::SUCCESS;
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("supervision: cannot start tokio: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(&args, machines)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("supervision: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn log(message: &str) {
    eprintln!("[{:>7.1} s] {message}", START.elapsed().as_secs_f64());
}

static START: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

/// The fleet: machines dealt from BLOCK in turn over the three factories.
fn fleet_spec(machines: usize, cycle_seconds: f64) -> FleetSpec {
    let models: Vec<&str> = BLOCK
        .iter()
        .flat_map(|(model, count)| std::iter::repeat_n(*model, *count))
        .collect();
    let mut factories: Vec<FactorySpec> = FACTORIES
        .iter()
        .map(|id| FactorySpec {
            id: id.to_string(),
            machines: Vec::new(),
        })
        .collect();
    for n in 0..machines {
        let model = models[n % models.len()];
        // Cycle times spread over 0.75x..1.25x (a golden-ratio sequence), so
        // that finishes fall at every phase of the poll period, as on a
        // real floor, not in step with it.
        let spread = 0.75 + 0.5 * (n as f64 * 0.618_033_988_75).fract();
        factories[n % FACTORIES.len()].machines.push(MachineSpec {
            id: format!("m{n:04}"),
            model: model.to_string(),
            cycle_seconds: cycle_seconds * spread,
            scrap_rate: 0.01,
            faults: Default::default(),
        });
    }
    FleetSpec {
        seed: 1,
        time_scale: 1.0,
        factories,
    }
}

/// CPU time (user + system) of a process so far, from /proc/PID/stat.
fn cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .with_context(|| format!("reading /proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .context("unexpected /proc stat format")?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |index: usize| -> anyhow::Result<u64> {
        fields
            .get(index)
            .and_then(|f| f.parse().ok())
            .context("unexpected /proc stat format")
    };
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    let total = ticks(11)? + ticks(12)?;
    Ok(Duration::from_secs_f64(total as f64 / clock_ticks() as f64))
}

fn clock_ticks() -> u64 {
    static TICKS: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| {
        std::process::Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|text| text.trim().parse().ok())
            .unwrap_or(100)
    });
    *TICKS
}

/// (VmRSS, VmHWM) of a process in MiB.
fn memory_mib(pid: u32) -> anyhow::Result<(f64, f64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    let field = |name: &str| -> f64 {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kb| kb.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    Ok((field("VmRSS:"), field("VmHWM:")))
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Quantile of sorted values (nearest rank).
fn quantile(sorted: &[i64], q: f64) -> i64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

/// Reads every Modbus machine's status once per period for `seconds`, with
/// fabflow's adapter and nothing else; returns this process's CPU share.
async fn bare_polling(
    fleet: &Fleet,
    profiles: &[Profile],
    period: Duration,
    seconds: u64,
) -> anyhow::Result<(f64, usize)> {
    let stop = Arc::new(AtomicBool::new(false));
    let reads = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for machine in fleet.machines() {
        let profile = profiles
            .iter()
            .find(|p| p.model == machine.model)
            .with_context(|| format!("no profile {}", machine.model))?;
        let mut link = ModbusLink::connect(
            machine.addr,
            Arc::new(profile.clone()),
            Duration::from_secs(2),
        )
        .await
        .with_context(|| format!("connecting to {}", machine.machine_id))?;
        let (stop, reads) = (Arc::clone(&stop), Arc::clone(&reads));
        tasks.push(tokio::spawn(async move {
            let mut ticker = tokio::time::interval(period);
            while !stop.load(Ordering::Relaxed) {
                ticker.tick().await;
                if link.read_status().await.is_ok() {
                    reads.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    // Let the first ticks (all at once) pass.
    tokio::time::sleep(period * 2).await;
    let me = std::process::id();
    let (cpu0, wall0, reads0) = (cpu_time(me)?, Instant::now(), reads.load(Ordering::Relaxed));
    tokio::time::sleep(Duration::from_secs(seconds)).await;
    let cpu = (cpu_time(me)? - cpu0).as_secs_f64() / wall0.elapsed().as_secs_f64();
    let done = reads.load(Ordering::Relaxed) - reads0;
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        let _ = task.await;
    }
    Ok((cpu, done))
}

struct Work {
    dir: PathBuf,
    keep: bool,
}

impl Drop for Work {
    fn drop(&mut self) {
        if self.keep {
            eprintln!("work directory kept: {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

async fn run(args: &Args, machines: usize) -> anyhow::Result<()> {
    if !args.fabflow.exists() {
        bail!(
            "{} not found: run `cargo build --release --bin fabflow` first (or pass --fabflow)",
            args.fabflow.display()
        );
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let work = Work {
        dir: tempfile::Builder::new()
            .prefix("fabflow-supervision-")
            .tempdir()?
            .keep(),
        keep: args.keep,
    };
    let period = Duration::from_millis(args.poll_ms);
    let profiles = fabflow_adapters::builtin_profiles();
    let spec = fleet_spec(machines, args.cycle_seconds);
    let mut fleet = Fleet::start(&spec, &profiles)
        .await
        .context("starting the simulated fleet")?;
    let mqtt = Fleet::mqtt_machines_of(&spec, &profiles);
    log(&format!(
        "fleet: {} Modbus TCP machines, {} MQTT machines, {} factories",
        fleet.machines().len(),
        mqtt.len(),
        FACTORIES.len()
    ));

    let reference = if args.reference_seconds > 0 {
        let (cpu, reads) = bare_polling(&fleet, &profiles, period, args.reference_seconds).await?;
        log(&format!(
            "reference: bare polling of {} Modbus machines: {:.3} cores ({:.0} reads/s)",
            fleet.machines().len(),
            cpu,
            reads as f64 / args.reference_seconds as f64
        ));
        Some(cpu)
    } else {
        None
    };

    // The daemon's configuration: the demo's, at 1x, on free ports and a
    // fresh database in the work directory, with the fleet's machines.
    let (http_port, mqtt_port) = (free_port()?, free_port()?);
    let database = work.dir.join("supervision.db");
    let mut config = std::fs::read_to_string(root.join("config/demo.toml"))
        .context("reading config/demo.toml")?
        .replace(
            "url = \"sqlite://fabflow-demo.db\"",
            &format!("url = \"sqlite://{}\"", database.display()),
        )
        .replace(
            "listen = \"127.0.0.1:8080\"",
            &format!("listen = \"127.0.0.1:{http_port}\""),
        )
        .replace(
            "listen = \"127.0.0.1:1883\"",
            &format!("listen = \"127.0.0.1:{mqtt_port}\""),
        )
        .replace("time_scale = 600.0", "time_scale = 1.0")
        .replace("max_connections = 1024", "max_connections = 4096")
        .replace(
            "interval_ms = 100",
            &format!(
                "interval_ms = {}\nplanner = \"{}\"",
                args.scheduler_interval_ms, args.planner
            ),
        );
    let timeout = (args.poll_ms * 2).max(1000);
    for machine in fleet.machines() {
        config.push_str(&format!(
            "\n[[machines]]\nid = \"{}\"\nfactory = \"{}\"\nmodel = \"{}\"\naddress = \"{}\"\npoll_interval_ms = {}\nrequest_timeout_ms = {timeout}\n",
            machine.machine_id, machine.factory_id, machine.model, machine.addr, args.poll_ms
        ));
    }
    for machine in &mqtt {
        config.push_str(&format!(
            "\n[[machines]]\nid = \"{}\"\nfactory = \"{}\"\nmodel = \"{}\"\nserial = \"{}\"\npoll_interval_ms = {}\nrequest_timeout_ms = {timeout}\n",
            machine.machine_id, machine.factory_id, machine.model, machine.serial, args.poll_ms
        ));
    }
    let config_path = work.dir.join("supervision.toml");
    std::fs::write(&config_path, config)?;
    let token = tokio::process::Command::new(&args.fabflow)
        .args(["tokens", "create", "--config"])
        .arg(&config_path)
        .args(["--role", "brand", "--scope", "bench", "--name", "bench"])
        .output()
        .await
        .context("running fabflow tokens create")?;
    if !token.status.success() {
        bail!(
            "fabflow tokens create failed: {}",
            String::from_utf8_lossy(&token.stderr)
        );
    }
    let token = String::from_utf8_lossy(&token.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();

    let daemon_log = std::fs::File::create(work.dir.join("daemon.log"))?;
    let mut daemon = tokio::process::Command::new(&args.fabflow)
        .arg("run")
        .arg("--config")
        .arg(&config_path)
        .stdout(Stdio::piped())
        .stderr(daemon_log)
        .kill_on_drop(true)
        .spawn()
        .context("starting fabflow run")?;
    let pid = daemon.id().context("the daemon has no pid")?;
    let api = format!("http://127.0.0.1:{http_port}");
    // The MQTT machines' passwords: printed once, at the first start.
    let mut passwords = HashMap::new();
    let stdout = daemon.stdout.take().context("no daemon stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let wanted: std::collections::HashSet<&str> =
        mqtt.iter().map(|m| m.machine_id.as_str()).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    while passwords.len() < wanted.len() {
        let line = tokio::time::timeout_at(deadline.into(), lines.next_line())
            .await
            .context("the daemon did not print its MQTT users within 120 s")??
            .context("the daemon stopped (see daemon.log; --keep keeps it)")?;
        let words: Vec<&str> = line.split_whitespace().collect();
        if let [_, user, password] = words[..]
            && wanted.contains(user)
        {
            passwords.insert(user.to_string(), password.to_string());
        }
    }
    // Keep reading its stdout so that it never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let client = reqwest::Client::new();
    loop {
        if let Ok(reply) = client.get(format!("{api}/healthz")).send().await
            && reply.status().is_success()
        {
            break;
        }
        if Instant::now() > deadline {
            bail!("the daemon did not become healthy within 120 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    fleet
        .start_mqtt(&spec, &profiles, "127.0.0.1", mqtt_port, &passwords, period)
        .await
        .context("starting the MQTT machines")?;
    log(&format!("daemon up at {api} (pid {pid})"));

    // Orders: a first burst of one per machine, then a steady rate.
    let completions = machines as f64 / (2.0 * args.cycle_seconds);
    let rate = args
        .orders_per_s
        .unwrap_or(completions / JOBS_PER_ORDER * 1.2);
    let feeding = Arc::new(AtomicBool::new(true));
    let rejected = Arc::new(AtomicUsize::new(0));
    let accepted = Arc::new(AtomicUsize::new(0));
    let feeder = {
        let (feeding, rejected, accepted) = (
            Arc::clone(&feeding),
            Arc::clone(&rejected),
            Arc::clone(&accepted),
        );
        let (api, token) = (api.clone(), token.clone());
        tokio::spawn(async move {
            let mut batch = 0u64;
            let mut send = |count: usize| {
                batch += 1;
                fabflow_sim::burst::generate_orders(batch, count, &SKUS, BBOX)
            };
            let first = send(machines);
            let report = fabflow_sim::burst::fire(&api, &token, first, 16).await;
            accepted.fetch_add(report.accepted, Ordering::Relaxed);
            rejected.fetch_add(report.rejected.len(), Ordering::Relaxed);
            let mut owed = 0.0;
            let mut ticker = tokio::time::interval(Duration::from_secs(1));
            while feeding.load(Ordering::Relaxed) {
                ticker.tick().await;
                owed += rate;
                let count = owed.floor() as usize;
                owed -= count as f64;
                if count > 0 {
                    let report = fabflow_sim::burst::fire(&api, &token, send(count), 8).await;
                    accepted.fetch_add(report.accepted, Ordering::Relaxed);
                    rejected.fetch_add(report.rejected.len(), Ordering::Relaxed);
                }
            }
        })
    };
    log(&format!(
        "feeding: {machines} orders at once, then {rate:.1}/s (the fleet completes about {completions:.1} jobs/s)"
    ));
    tokio::time::sleep(Duration::from_secs(args.warmup)).await;

    // The measured window.
    let me = std::process::id();
    let (daemon0, me0, wall0) = (cpu_time(pid)?, cpu_time(me)?, Instant::now());
    let window_start = unix_ms();
    let mut rss_max: f64 = 0.0;
    let mut last_report = Instant::now();
    while wall0.elapsed() < Duration::from_secs(args.seconds) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let (rss, _) = memory_mib(pid)?;
        rss_max = rss_max.max(rss);
        if last_report.elapsed() >= Duration::from_secs(15) {
            last_report = Instant::now();
            let share = (cpu_time(pid)? - daemon0).as_secs_f64() / wall0.elapsed().as_secs_f64();
            log(&format!(
                "measuring: {:.0}/{} s, daemon {share:.3} cores, RSS {rss:.1} MiB, orders accepted {}",
                wall0.elapsed().as_secs_f64(),
                args.seconds,
                accepted.load(Ordering::Relaxed)
            ));
        }
    }
    let wall = wall0.elapsed().as_secs_f64();
    let window_end = unix_ms();
    let daemon_cpu = (cpu_time(pid)? - daemon0).as_secs_f64() / wall;
    let fleet_cpu = (cpu_time(me)? - me0).as_secs_f64() / wall;
    let (rss_end, hwm) = memory_mib(pid)?;
    feeding.store(false, Ordering::Relaxed);
    let _ = feeder.await;
    // Jobs finished at the window's end get time to be recorded.
    tokio::time::sleep(period * 3 + Duration::from_secs(2)).await;

    // What the machines say they finished in the window.
    let mut finished: Vec<(String, bool, u32, i64)> = Vec::new();
    let mqtt_ids: std::collections::HashSet<String> =
        mqtt.iter().map(|m| m.machine_id.clone()).collect();
    for id in fleet.machine_ids() {
        let is_mqtt = mqtt_ids.contains(&id);
        for (token, at) in fleet.finished_log(&id) {
            let at = at as i64;
            if (window_start..window_end).contains(&at) {
                finished.push((id.clone(), is_mqtt, token, at));
            }
        }
    }
    // Stop the daemon (SIGTERM, graceful) before reading its database.
    if let Some(pid) = daemon.id() {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status();
    }
    match tokio::time::timeout(Duration::from_secs(30), daemon.wait()).await {
        Ok(status) => {
            status?;
        }
        Err(_) => {
            daemon.kill().await?;
        }
    }
    fleet.shutdown().await;
    let pool = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect(&format!("sqlite://{}?mode=ro", database.display()))
        .await
        .context("opening the daemon's database")?;
    let rows = sqlx::query("SELECT token, machine, updated_ms FROM jobs WHERE state = 'done'")
        .fetch_all(&pool)
        .await?;
    let mut recorded: HashMap<(String, u32), i64> = HashMap::new();
    for row in rows {
        let token: i64 = row.try_get("token")?;
        let machine: Option<String> = row.try_get("machine")?;
        let at: i64 = row.try_get("updated_ms")?;
        if let (Some(machine), Ok(token)) = (machine, u32::try_from(token)) {
            recorded.insert((machine, token), at);
        }
    }
    let mut delays: [Vec<i64>; 2] = [Vec::new(), Vec::new()];
    let mut missing = 0;
    for (machine, is_mqtt, token, at) in &finished {
        match recorded.get(&(machine.clone(), *token)) {
            Some(stored) => delays[usize::from(*is_mqtt)].push(stored - at),
            None => missing += 1,
        }
    }

    println!();
    println!(
        "supervision: {machines} machines ({} Modbus TCP, {} MQTT), poll/report every {} ms, `{}` planner every {} ms, {:.0} s measured after {} s",
        fleet.machines().len(),
        mqtt.len(),
        args.poll_ms,
        args.planner,
        args.scheduler_interval_ms,
        wall,
        args.warmup
    );
    println!(
        "orders: {} accepted, {} refused",
        accepted.load(Ordering::Relaxed),
        rejected.load(Ordering::Relaxed)
    );
    println!("daemon CPU:  {daemon_cpu:.3} cores (user + system over the window)");
    println!(
        "daemon RSS:  {rss_max:.1} MiB largest sampled, {hwm:.1} MiB peak (VmHWM), {rss_end:.1} MiB at the end"
    );
    println!("fleet CPU:   {fleet_cpu:.3} cores (this process: simulated machines, order feed)");
    if let Some(reference) = reference {
        println!(
            "reference:   {reference:.3} cores for bare polling of the Modbus machines (adapter + simulated machines, no daemon)"
        );
    }
    let [mut modbus, mut mqtt_delays] = delays;
    let mut all: Vec<i64> = modbus.iter().chain(&mqtt_delays).copied().collect();
    for (label, values) in [
        ("Modbus", &mut modbus),
        ("MQTT", &mut mqtt_delays),
        ("all", &mut all),
    ] {
        values.sort_unstable();
        println!(
            "finish -> recorded, {label:<6}: {} jobs, p50 {} ms, p90 {} ms, p99 {} ms, max {} ms",
            values.len(),
            quantile(values, 0.5),
            quantile(values, 0.9),
            quantile(values, 0.99),
            values.last().copied().unwrap_or(0)
        );
    }
    println!("finished in the window but not recorded as done: {missing}");
    Ok(())
}
