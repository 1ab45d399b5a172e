//! `fabflow forecast` end to end: a CSV file in, forecasts out on standard
//! output; malformed rows named by file and line with exit code 1; bad usage
//! exit code 2.

use std::path::PathBuf;
use std::process::Command;

fn write(name: &str, text: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, text).expect("temporary file");
    path
}

fn run(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_fabflow"))
        .arg("forecast")
        .args(args)
        .output()
        .expect("fabflow runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn forecasts_a_file() {
    let path = write(
        "forecast_ok.csv",
        "unique_id,ds,y\na,2024-01-07,2\na,2024-01-14,0\na,2024-01-21,4\n",
    );
    let path = path.to_str().expect("utf-8 path");
    let (code, stdout, stderr) = run(&["--input", path, "--horizon", "2", "--model", "mean"]);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(
        stdout,
        "unique_id,ds,y_hat\na,2024-01-28,2\na,2024-02-04,2\n"
    );
}

#[test]
fn auto_forecasts_every_series_of_a_file() {
    // Five intermittent weekly series of 40 weeks, one all zero, one a single
    // sale; the file lists them interleaved and out of order.
    let mut text = String::from("unique_id,ds,y\n");
    let start = chrono::NaiveDate::from_ymd_opt(2024, 1, 7).expect("date");
    for week in (0..40u32).rev() {
        let ds = start + chrono::Duration::weeks(i64::from(week));
        for (id, y) in [
            ("lumpy", if week % 5 == 0 { 7 } else { 0 }),
            ("steady", 3 + week % 2),
            ("zero", 0),
            ("once", u32::from(week == 12)),
            ("rising", week / 8),
        ] {
            text.push_str(&format!("{id},{ds},{y}\n"));
        }
    }
    let path = write("forecast_auto.csv", &text);
    let path = path.to_str().expect("utf-8 path");
    let (code, stdout, stderr) = run(&["--input", path, "--horizon", "8", "--level", "90"]);
    assert_eq!(code, 0, "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("unique_id,ds,y_hat"), "{}", lines[0]);
    let ids: std::collections::BTreeSet<&str> = lines[1..]
        .iter()
        .filter_map(|l| l.split(',').next())
        .collect();
    assert_eq!(ids.len(), 5);
    assert_eq!(lines.len() - 1, 5 * 8, "8 weeks per series");
    for line in &lines[1..] {
        let fields: Vec<&str> = line.split(',').collect();
        let value: f64 = fields[2].parse().expect("y_hat");
        assert!(value.is_finite() && value >= 0.0, "{line}");
        if fields[0] == "zero" {
            assert_eq!(value, 0.0, "an all-zero series forecasts zero: {line}");
        }
    }
    assert!(
        lines.iter().any(|l| l.starts_with("steady,2024-10-13,")),
        "the first forecast week follows the last observed one"
    );
}

#[test]
fn malformed_rows_are_reported_with_file_and_line() {
    let path = write(
        "forecast_bad.csv",
        "unique_id,ds,y\na,2024-01-07,2\na,2024-01-14,-1\na,someday,1\n",
    );
    let name = path.to_str().expect("utf-8 path");
    let (code, stdout, stderr) = run(&["--input", name, "--horizon", "2"]);
    assert_eq!(code, 1);
    assert!(stdout.is_empty());
    assert_eq!(
        stderr,
        format!(
            "{name}:3: y -1 is negative\n{name}:4: ds \"someday\" is not a date (expected YYYY-MM-DD)\n"
        )
    );
}

#[test]
fn bad_usage_exits_2() {
    for args in [
        &["--horizon", "2"][..],
        &["--input", "x.csv", "--horizon", "0"],
        &["--input", "x.csv", "--horizon", "2", "--model", "arima"],
    ] {
        let (code, _, stderr) = run(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error:") && stderr.contains("--"),
            "{stderr}"
        );
    }
}

#[test]
fn missing_file_exits_1() {
    let (code, _, stderr) = run(&["--input", "/nonexistent/forecast.csv", "--horizon", "1"]);
    assert_eq!(code, 1);
    assert!(
        stderr.starts_with("/nonexistent/forecast.csv: "),
        "{stderr}"
    );
}

/// A file larger than the command's read block (and a line longer than one)
/// gives what the library gives for the whole text at once.
#[test]
fn files_larger_than_a_block_read_as_a_whole() {
    use fabflow::forecast::{
        ModelChoice, ModelKind, SelectionRule, csv as forecast_csv, forecast_all,
    };
    let mut text = String::from("unique_id,ds,y\n");
    let start = chrono::NaiveDate::from_ymd_opt(2020, 1, 5).expect("date");
    for series in 0..600 {
        for week in 0..120 {
            let date = start + chrono::Days::new(week * 7);
            let value = (series * 7 + week * 3) % 11 % 4;
            text.push_str(&format!("s{series},{date},{value}.0\n"));
        }
    }
    let long = "x".repeat(1_300_000);
    text.push_str(&format!("{long},2020-01-01,1\n{long},2020-01-08,2\r\n"));
    let path = write("forecast_large.csv", &text);
    let path = path.to_str().expect("utf-8 path");
    let (code, stdout, stderr) = run(&["--input", path, "--horizon", "3", "--model", "ses"]);
    assert_eq!(code, 0, "{stderr}");
    let parsed = forecast_csv::parse(&text, None).expect("valid");
    let forecasts = forecast_all(
        &parsed.series,
        3,
        ModelChoice::Fixed(ModelKind::Ses),
        SelectionRule::Pool,
    )
    .expect("in range");
    assert_eq!(stdout, forecast_csv::format_forecasts(&forecasts));
    assert!(stdout.len() > 20_000);
}

/// Threads fitting series side by side change nothing in the output: the
/// series (more than one thread's claim) come out in input order, byte for
/// byte as with one thread, with and without interval columns.
#[test]
fn threads_give_the_same_output_as_one() {
    let mut text = String::from("unique_id,ds,y\n");
    let start = chrono::NaiveDate::from_ymd_opt(2021, 1, 3).expect("date");
    for series in 0..300u64 {
        for week in 0..30u64 {
            let date = start + chrono::Days::new(week * 7);
            let value = (series * 5 + week * week) % 13 % 5;
            text.push_str(&format!("t{series},{date},{value}\n"));
        }
    }
    let path = write("forecast_threads.csv", &text);
    let path = path.to_str().expect("utf-8 path");
    for extra in [&[][..], &["--level", "80"][..]] {
        let output = |threads: &str| {
            let mut args = vec!["--input", path, "--horizon", "4", "--threads", threads];
            args.extend_from_slice(extra);
            let (code, stdout, stderr) = run(&args);
            assert_eq!(code, 0, "{stderr}");
            stdout
        };
        let one = output("1");
        assert_eq!(one.lines().count(), 1 + 300 * 4);
        for threads in ["2", "3", "0"] {
            assert!(output(threads) == one, "--threads {threads} {extra:?}");
        }
    }
}
