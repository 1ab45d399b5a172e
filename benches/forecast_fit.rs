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
//! Without `--input` it prints this usage and exits 0, so a plain
//! `cargo bench` passes by.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use fabflow::forecast::csv::{format_forecasts, parse};
use fabflow::forecast::{ModelChoice, SelectionRule, forecast_all};

struct Options {
    input: String,
    horizon: usize,
    model: ModelChoice,
    model_name: String,
    min_seconds: f64,
    output: Option<String>,
}

const USAGE: &str = "usage: forecast_fit --input FILE.csv --horizon H [--model M] [--min-seconds S] [--output FILE]";

fn options() -> Result<Option<Options>, String> {
    let mut input = None;
    let mut horizon = None;
    let mut model_name = "auto".to_owned();
    let mut min_seconds = 0.2;
    let mut output = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "--input" => input = Some(value("--input")?),
            "--horizon" => {
                let text = value("--horizon")?;
                horizon = Some(
                    text.parse::<usize>()
                        .map_err(|err| format!("--horizon {text:?}: {err}"))?,
                );
            }
            "--model" => model_name = value("--model")?,
            "--min-seconds" => {
                let text = value("--min-seconds")?;
                min_seconds = text
                    .parse::<f64>()
                    .map_err(|err| format!("--min-seconds {text:?}: {err}"))?;
            }
            "--output" => output = Some(value("--output")?),
            // cargo bench passes --bench to every bench binary.
            "--bench" => {}
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    let Some(input) = input else {
        return Ok(None);
    };
    let horizon = horizon.ok_or_else(|| format!("--horizon is required\n{USAGE}"))?;
    let model = model_name
        .parse::<ModelChoice>()
        .map_err(|err| format!("--model: {err}"))?;
    Ok(Some(Options {
        input,
        horizon,
        model,
        model_name,
        min_seconds,
        output,
    }))
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
    let options = match options() {
        Ok(Some(options)) => options,
        Ok(None) => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(err) => {
            eprintln!("forecast_fit: {err}");
            return ExitCode::from(2);
        }
    };
    let text = match std::fs::read_to_string(&options.input) {
        Ok(text) => text,
        Err(err) => {
            eprintln!("{}: {err}", options.input);
            return ExitCode::from(1);
        }
    };
    let parsed = match parse(&text, None) {
        Ok(parsed) => parsed,
        Err(errors) => {
            for error in errors {
                eprintln!("{}:{}: {}", options.input, error.line, error.kind);
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
                eprintln!("{}: {err}", options.input);
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
        eprintln!("{path}: {err}");
        return ExitCode::from(1);
    }
    let runs = walls.len();
    let cpu = cpu_total.map_or_else(
        || "null".to_owned(),
        |total| format!("{:.9}", total.as_secs_f64() / runs as f64),
    );
    println!(
        "{{\"model\":{:?},\"series\":{},\"runs\":{},\"wall_s\":{:.9},\"cpu_s\":{}}}",
        options.model_name,
        parsed.series.len(),
        runs,
        median(&mut walls),
        cpu
    );
    ExitCode::SUCCESS
}
