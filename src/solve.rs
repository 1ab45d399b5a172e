//! The offline solvers on the command line: `fabflow forecast` runs the
//! demand models of `fabflow::forecast` on a long-format CSV file, and
//! `fabflow route` the courier router of `fabflow::plan::vrp` on a Solomon or
//! Li & Lim instance, and `fabflow schedule` the production scheduler of
//! `fabflow::plan::shop` on a flexible job-shop instance, so anyone can hold
//! them against other tools on the same data. The clock is read here, never in the solvers.
//!
//! Exit codes: 0 success, 1 an unreadable or malformed input file (every
//! problem on standard error as `FILE:LINE: reason`), 2 bad usage (clap).

use clap::Args;
use fabflow::forecast::csv::{CsvError, ForecastWriter, ParsedCsv, Reader};
use fabflow::forecast::{ForecastError, Forecaster, Frequency, ModelChoice, SelectionRule, Series};
use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug, Args)]
pub struct ForecastArgs {
    /// Long-format CSV with columns `unique_id,ds,y` (statsforecast's layout;
    /// `ds` a date YYYY-MM-DD; daily or weekly is inferred from the dates,
    /// missing periods count as 0).
    #[arg(long)]
    input: PathBuf,
    /// Periods to forecast (days or weeks, as the input).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    horizon: u32,
    /// auto (per series, the best models on a rolling backtest of its own
    /// history), or one of: ses, croston, croston_optimized, sba, tsb, adida,
    /// imapa, seasonal_naive, mean, zero, combination.
    #[arg(long, default_value = "auto", value_parser = parse_model)]
    model: ModelChoice,
    /// daily or weekly, instead of inferring it from the dates.
    #[arg(long, value_parser = parse_frequency)]
    freq: Option<Frequency>,
    /// Add empirical prediction intervals at this coverage in percent
    /// (columns y_hat_lo_<L>, y_hat_hi_<L>); repeatable.
    #[arg(long = "level", value_parser = parse_level)]
    levels: Vec<f64>,
    /// Threads that fit series side by side (0: one per core). The output is
    /// the same, byte for byte, for any number.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=256))]
    threads: u32,
}

fn parse_model(text: &str) -> Result<ModelChoice, String> {
    text.parse().map_err(|err| format!("{err}"))
}

fn parse_frequency(text: &str) -> Result<Frequency, String> {
    Frequency::from_name(text).ok_or_else(|| format!("{text:?}: expected daily or weekly"))
}

fn parse_level(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|level| *level > 0.0 && *level < 100.0)
        .ok_or_else(|| format!("{text:?}: expected a percentage between 0 and 100"))
}

/// `fabflow forecast`: CSV file in, `unique_id,ds,y_hat` CSV on standard output.
/// The file is read in blocks; the forecasts are printed once every series
/// has one (nothing is printed if one fails).
pub fn forecast(args: ForecastArgs) -> ExitCode {
    let name = args.input.display().to_string();
    let parsed = match read_csv(&args.input, args.freq) {
        Ok(Ok(parsed)) => parsed,
        Ok(Err(errors)) => {
            for error in errors {
                if error.line > 0 {
                    eprintln!("{name}:{}: {}", error.line, error.kind);
                } else {
                    eprintln!("{name}: {}", error.kind);
                }
            }
            return ExitCode::from(1);
        }
        Err(err) => {
            eprintln!("{name}: {err}");
            return ExitCode::from(1);
        }
    };
    if let Err(err) = ForecastWriter::with_levels(&args.levels) {
        eprintln!("error: {err}");
        return ExitCode::from(2);
    }
    let threads = match args.threads {
        0 => std::thread::available_parallelism().map_or(1, usize::from),
        threads => threads as usize,
    };
    let settings = Settings {
        horizon: args.horizon as usize,
        model: args.model,
        levels: &args.levels,
    };
    let output = match forecast_text(&parsed.series, &settings, threads) {
        Ok(output) => output,
        Err(err) => {
            eprintln!("{name}: {err}");
            return ExitCode::from(1);
        }
    };
    let mut stdout = std::io::stdout().lock();
    if let Err(err) = stdout
        .write_all(output.as_bytes())
        .and_then(|()| stdout.flush())
    {
        // A closed pipe (`| head`) is not an error of ours.
        if err.kind() != std::io::ErrorKind::BrokenPipe {
            eprintln!("error: writing the forecasts: {err}");
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}

/// What `fabflow forecast` makes of each series.
struct Settings<'a> {
    horizon: usize,
    model: ModelChoice,
    /// Interval levels in percent, already checked by `ForecastWriter::with_levels`.
    levels: &'a [f64],
}

impl Settings<'_> {
    /// The forecast CSV rows of `series`, appended to `out`; the first
    /// series whose dates overflow is the error.
    fn rows(&self, series: &[Series], out: &mut String) -> Result<(), ForecastError> {
        let mut writer = ForecastWriter::with_levels(self.levels).unwrap_or_default();
        let mut forecaster = Forecaster::new(self.horizon, self.model, SelectionRule::default());
        for one in series {
            writer.rows(out, &forecaster.forecast(one)?);
        }
        Ok(())
    }
}

/// Series a thread claims at a time: enough to make claiming cheap, few
/// enough that the threads finish together.
const SERIES_PER_CLAIM: usize = 64;

/// The whole output (header, then every series' rows in input order) with
/// `threads` threads fitting series side by side. Each thread claims the
/// next `SERIES_PER_CLAIM` series and writes their rows to a text of their
/// own; the texts are joined in series order, so the output and the error
/// (that of the first failing series) are the same for any thread count.
fn forecast_text(
    series: &[Series],
    settings: &Settings<'_>,
    threads: usize,
) -> Result<String, ForecastError> {
    let mut output = String::with_capacity(64 + series.len() * settings.horizon * 40);
    ForecastWriter::with_levels(settings.levels)
        .unwrap_or_default()
        .header(&mut output);
    let chunks = series.len().div_ceil(SERIES_PER_CLAIM);
    let threads = threads.clamp(1, chunks.max(1));
    if threads == 1 {
        settings.rows(series, &mut output)?;
        return Ok(output);
    }
    // The index of the next chunk to claim; every thread stops once it
    // passes the last.
    let next = AtomicUsize::new(0);
    let mut done: Vec<(usize, Result<String, ForecastError>)> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                scope.spawn(|| {
                    let mut claimed = Vec::new();
                    loop {
                        let chunk = next.fetch_add(1, Ordering::Relaxed);
                        let Some(part) = series.chunks(SERIES_PER_CLAIM).nth(chunk) else {
                            return claimed;
                        };
                        let mut text = String::with_capacity(part.len() * settings.horizon * 40);
                        let result = settings.rows(part, &mut text).map(|()| text);
                        claimed.push((chunk, result));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|worker| match worker.join() {
                Ok(claimed) => claimed,
                // A panic is a broken invariant of the forecaster: pass it on.
                Err(panic) => std::panic::resume_unwind(panic),
            })
            .collect()
    });
    done.sort_unstable_by_key(|(chunk, _)| *chunk);
    for (_, text) in done {
        output.push_str(&text?);
    }
    Ok(output)
}

/// Bytes read from the input at a time: a large file is never held whole.
const BLOCK_BYTES: usize = 1 << 20;

/// Reads `path` in blocks of whole lines into the forecast CSV reader.
fn read_csv(
    path: &Path,
    frequency: Option<Frequency>,
) -> io::Result<Result<ParsedCsv, Vec<CsvError>>> {
    let mut file = File::open(path)?;
    let size = file.metadata().map_or(0, |metadata| metadata.len());
    let mut reader = Reader::new(frequency);
    let mut buffer = vec![0; BLOCK_BYTES];
    // Bytes in `buffer`: a partial line from the block before, then new ones.
    let mut filled = 0;
    let mut read_so_far = 0u64;
    loop {
        if filled == buffer.len() {
            // A line longer than the buffer.
            buffer.resize(buffer.len() * 2, 0);
        }
        let mut at_end = false;
        while filled < buffer.len() {
            let read = file.read(buffer.get_mut(filled..).unwrap_or(&mut []))?;
            if read == 0 {
                at_end = true;
                break;
            }
            filled += read;
        }
        let whole_lines = if at_end {
            filled
        } else {
            match buffer
                .get(..filled)
                .and_then(|bytes| bytes.iter().rposition(|&byte| byte == b'\n'))
            {
                Some(last_line_end) => last_line_end + 1,
                None => continue,
            }
        };
        let bytes = buffer.get(..whole_lines).unwrap_or(&[]);
        let text = std::str::from_utf8(bytes).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "stream did not contain valid UTF-8",
            )
        })?;
        let first = read_so_far == 0;
        reader.feed(text);
        read_so_far += whole_lines as u64;
        if first && !at_end && whole_lines > 0 {
            // As many rows again per byte in the rest of the file.
            let rows = reader.row_count() as u64 * size.saturating_sub(read_so_far) / read_so_far;
            reader.reserve_rows(usize::try_from(rows).unwrap_or(0) + 1024);
        }
        buffer.copy_within(whole_lines..filled, 0);
        filled -= whole_lines;
        if at_end {
            return Ok(reader.finish());
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum InstanceFormat {
    /// Solomon VRPTW (C1, R1, RC1, ...).
    Solomon,
    /// Li & Lim PDPTW (lc1, lr1, lrc1, ...).
    Lilim,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum RouteObjective {
    /// Least total distance.
    Distance,
    /// Fewest couriers, then least distance.
    Vehicles,
}

#[derive(Debug, Args)]
pub struct RouteArgs {
    /// The instance's file format.
    #[arg(long, value_enum)]
    format: InstanceFormat,
    /// Search time budget in milliseconds.
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    time_limit_ms: u64,
    /// Seed of the search (same seed, same iterations, same result).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// What to minimise.
    #[arg(long, value_enum, default_value = "distance")]
    objective: RouteObjective,
    /// Stop after this many search iterations (deterministic runs, whatever the machine).
    #[arg(long)]
    max_iterations: Option<u64>,
    /// The instance file.
    file: PathBuf,
}

/// `fabflow route`: an instance file in, JSON with `vehicles`, `distance`
/// (Euclidean, unrounded) and `routes` (the file's node ids in visiting
/// order, depot excluded) out.
pub fn route(args: RouteArgs) -> ExitCode {
    use fabflow::plan::vrp::{self, Objective, SearchParams, SolveOptions};
    let name = args.file.display().to_string();
    let text = match std::fs::read_to_string(&args.file) {
        Ok(text) => text,
        Err(err) => {
            eprintln!("{name}: {err}");
            return ExitCode::from(1);
        }
    };
    let parsed = match args.format {
        InstanceFormat::Solomon => vrp::parse_solomon(&text),
        InstanceFormat::Lilim => vrp::parse_lilim(&text),
    };
    let mut literature = match parsed {
        Ok(instance) => instance,
        Err(err) => {
            eprintln!("{name}:{}: {}", err.line, err.reason);
            return ExitCode::from(1);
        }
    };
    if literature.name.is_empty() {
        literature.name = args
            .file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
    }
    let options = SolveOptions {
        objective: match args.objective {
            RouteObjective::Distance => Objective::Distance,
            RouteObjective::Vehicles => Objective::VehiclesThenDistance,
        },
        seed: args.seed,
        max_iterations: args.max_iterations.unwrap_or(u64::MAX),
        params: SearchParams::default(),
    };
    let started = std::time::Instant::now();
    let limit = args.time_limit_ms as f64 / 1000.0;
    let mut progress = || {
        if limit <= 0.0 {
            1.0
        } else {
            started.elapsed().as_secs_f64() / limit
        }
    };
    let solution = vrp::solve(&literature.instance, &options, &mut progress);
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Err(violation) = vrp::check(&literature.instance, &solution.routes) {
        eprintln!("error: internal error, the solution breaks a constraint: {violation}");
        return ExitCode::from(3);
    }
    let json = literature.report(&solution).to_json();
    // The run's own numbers after the literature's fields.
    let json = format!(
        "{},\"iterations\":{},\"elapsed_ms\":{:.1}}}",
        json.strip_suffix('}').unwrap_or(&json),
        solution.iterations,
        elapsed_ms
    );
    println!("{json}");
    ExitCode::SUCCESS
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ScheduleFormat {
    /// Flexible job shop (Brandimarte, Hurink): `<jobs> <machines>`, then a
    /// line per job; machines numbered from 0.
    Fjsp,
}

#[derive(Debug, Args)]
pub struct ScheduleArgs {
    /// The instance's file format.
    #[arg(long, value_enum)]
    format: ScheduleFormat,
    /// Search time budget in milliseconds.
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=3_600_000))]
    time_limit_ms: u64,
    /// Seed of the search (same seed, same iterations, same result).
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Stop after this many search iterations (deterministic runs, whatever the machine).
    #[arg(long)]
    max_iterations: Option<u64>,
    /// The instance file.
    file: PathBuf,
}

/// `fabflow schedule`: an FJSP file in, JSON with `makespan` and
/// `operations` (`{"job","op","machine","start"}`, numbered from 0 as in the
/// file) out, plus the run's `iterations` and `elapsed_ms`.
pub fn schedule(args: ScheduleArgs) -> ExitCode {
    use fabflow::plan::shop::{self, Objective, SolveOptions};
    let name = args.file.display().to_string();
    let text = match std::fs::read_to_string(&args.file) {
        Ok(text) => text,
        Err(err) => {
            eprintln!("{name}: {err}");
            return ExitCode::from(1);
        }
    };
    let problem = match args.format {
        ScheduleFormat::Fjsp => shop::parse_fjsp(&text),
    };
    let problem = match problem {
        Ok(problem) => problem,
        Err(err) => {
            eprintln!("{name}:{}: {}", err.line, err.reason);
            return ExitCode::from(1);
        }
    };
    let options = SolveOptions {
        objective: Objective::Makespan,
        seed: args.seed,
        max_iterations: args.max_iterations.unwrap_or(u64::MAX),
    };
    let started = std::time::Instant::now();
    let limit = args.time_limit_ms as f64 / 1000.0;
    let mut progress = || {
        if limit <= 0.0 {
            1.0
        } else {
            started.elapsed().as_secs_f64() / limit
        }
    };
    let schedule = match shop::solve(&problem, &options, &mut progress) {
        Ok(schedule) => schedule,
        Err(err) => {
            eprintln!("{name}: {err}");
            return ExitCode::from(1);
        }
    };
    let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
    if let Err(violation) = shop::check(&problem, &schedule.operations) {
        eprintln!("error: internal error, the schedule breaks a rule: {violation}");
        return ExitCode::from(3);
    }
    let operations: Vec<serde_json::Value> = schedule
        .operations
        .iter()
        .map(|s| {
            serde_json::json!({"job": s.job, "op": s.op, "machine": s.machine, "start": s.start})
        })
        .collect();
    let json = serde_json::json!({
        "makespan": schedule.makespan,
        "operations": operations,
        "iterations": schedule.iterations,
        "elapsed_ms": (elapsed_ms * 10.0).round() / 10.0,
    });
    println!("{json}");
    ExitCode::SUCCESS
}
