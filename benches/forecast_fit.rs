//! fabflow's forecast models timed in memory, the way statsforecast's
//! `StatsForecast.forecast` is timed by `benches/forecast_peer.py`: the series
//! are read and parsed first, outside the timer; the timer covers fitting
//! every series and building its forecast (dates and points), nothing else.
//!
//! ```text
//! cargo bench --bench forecast_fit -- --input train.csv --horizon 8 --model auto [--min-seconds 0.2] [--output forecast.csv]
//! ```
//!
//! It fits the whole set again and again until `--min-seconds` have passed
//! (at least three times) and prints one JSON line: the model, the series,
//! the runs, the median wall seconds of one fit of the whole set, and its
//! CPU seconds: this thread's CPU time over all the runs (from
//! /proc/thread-self/schedstat on Linux, which moves at scheduler ticks, so
//! it is taken over the whole loop, not per run), divided by the runs; null
//! where there is no such file. `--output` writes the last run's forecasts as
//! `unique_id,ds,y_hat` CSV, the same bytes `fabflow forecast` prints
//! (the peer script scores them). One thread, as `fabflow forecast`'s default.
//! Without `--input` it says so and exits 0, so a plain `cargo bench`
//! passes by.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;

use fabflow::forecast::csv::{format_forecasts, parse};
use fabflow::forecast::{ModelChoice, SelectionRule, forecast_all};

#[derive(Debug, Parser)]
#[command(about = "Time fabflow's forecast models in memory (see benches/forecast_peer.py)")]
struct Options {
    /// Long-format CSV (`unique_id,ds,y`), as `fabflow forecast --input`.
    #[arg(long)]
    input: Option<PathBuf>,
    /// Periods to forecast.
    #[arg(long, default_value_t = 8)]
    horizon: usize,
    /// The model, as `fabflow forecast --model`.
    #[arg(long, default_value = "auto", value_parser = parse_model)]
    model: ModelChoice,
    /// Fit the whole set again until this many seconds have passed.
    #[arg(long, default_value_t = 0.2)]
    min_seconds: f64,
    /// Write the last run's forecasts here as `unique_id,ds,y_hat` CSV.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Passed by `cargo bench` to every bench binary; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

fn parse_model(text: &str) -> Result<ModelChoice, String> {
    text.parse().map_err(|err| format!("{err}"))
}

/// This thread's CPU time so far, where Linux tells it.
fn thread_cpu() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let nanos = text.split_whitespace().next()?.parse::<u64>().ok()?;
    Some(Duration::from_nanos(nanos))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let middle = values.len() / 2;
    if values.len() % 2 == 1 {
        values[middle]
    } else {
        (values[middle - 1] + values[middle]) / 2.0
    }
}

fn main() -> ExitCode {
    let options = Options::parse();
    let Some(input) = &options.input else {
        println!("forecast_fit: nothing to do without --input (see --help)");
        return ExitCode::SUCCESS;
    };
    let name = input.display();
    let text = match std::fs::read_to_string(input) {
        Ok(text) => text,
        Err(err) => {
            eprintln!("{name}: {err}");
            return ExitCode::from(1);
        }
    };
    let parsed = match parse(&text, None) {
        Ok(parsed) => parsed,
        Err(errors) => {
            for error in errors {
                eprintln!("{name}:{}: {}", error.line, error.kind);
            }
            return ExitCode::from(1);
        }
    };
    drop(text);
    let mut walls = Vec::new();
    let mut last = Vec::new();
    let cpu_before = thread_cpu();
    let started = Instant::now();
    while walls.len() < 3 || started.elapsed().as_secs_f64() < options.min_seconds {
        let before = Instant::now();
        let forecasts = forecast_all(
            &parsed.series,
            options.horizon,
            options.model,
            SelectionRule::default(),
        );
        let wall = before.elapsed();
        match forecasts {
            Ok(forecasts) => last = std::hint::black_box(forecasts),
            Err(err) => {
                eprintln!("{name}: {err}");
                return ExitCode::from(1);
            }
        }
        walls.push(wall.as_secs_f64());
    }
    let cpu_total = match (cpu_before, thread_cpu()) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    if let Some(path) = &options.output
        && let Err(err) = std::fs::write(path, format_forecasts(&last))
    {
        eprintln!("{}: {err}", path.display());
        return ExitCode::from(1);
    }
    let runs = walls.len();
    let figures = serde_json::json!({
        "model": options.model.name(),
        "series": parsed.series.len(),
        "runs": runs,
        "wall_s": median(&mut walls),
        "cpu_s": cpu_total.map(|total| total.as_secs_f64() / runs as f64),
    });
    println!("{figures}");
    ExitCode::SUCCESS
}
