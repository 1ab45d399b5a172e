//! The offline solvers on the command line: `fabflow forecast` runs the
//! demand models of `fabflow::forecast` on a long-format CSV file, so anyone
//! can hold them against other tools on the same data.
//!
//! Exit codes: 0 success, 1 an unreadable or malformed input file (every
//! problem on standard error as `FILE:LINE: reason`), 2 bad usage (clap).

use clap::Args;
use fabflow::forecast::{self, Frequency, ModelChoice, SelectionRule, csv as forecast_csv};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

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
pub fn forecast(args: ForecastArgs) -> ExitCode {
    let name = args.input.display().to_string();
    let text = match std::fs::read_to_string(&args.input) {
        Ok(text) => text,
        Err(err) => {
            eprintln!("{name}: {err}");
            return ExitCode::from(1);
        }
    };
    let parsed = match forecast_csv::parse(&text, args.freq) {
        Ok(parsed) => parsed,
        Err(errors) => {
            for error in errors {
                if error.line > 0 {
                    eprintln!("{name}:{}: {}", error.line, error.kind);
                } else {
                    eprintln!("{name}: {}", error.kind);
                }
            }
            return ExitCode::from(1);
        }
    };
    let forecasts = match forecast::forecast_all(
        &parsed.series,
        args.horizon as usize,
        args.model,
        SelectionRule::default(),
    ) {
        Ok(forecasts) => forecasts,
        Err(err) => {
            eprintln!("{name}: {err}");
            return ExitCode::from(1);
        }
    };
    let output = if args.levels.is_empty() {
        forecast_csv::format_forecasts(&forecasts)
    } else {
        match forecast_csv::format_forecasts_with_intervals(&forecasts, &args.levels) {
            Ok(output) => output,
            Err(err) => {
                eprintln!("error: {err}");
                return ExitCode::from(2);
            }
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
