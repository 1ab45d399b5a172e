//! The crash harness (`benches/crash_harness.py`, docs/reliability.md) in a
//! short run, so that CI kills daemons on every change: the daemon and the
//! simulated fleet run as separate processes, orders are fed over HTTP while
//! the daemon is killed with SIGKILL and restarted, and the harness checks
//! that every order that got a 2xx is delivered, that no machine started a
//! job token twice (the machines' own logs) and that the outbox drained. On
//! PostgreSQL (`FABFLOW_TEST_POSTGRES_URL`, with `mosquitto` on the PATH) two
//! daemons share the database and a Mosquitto, are killed in turn, and the
//! broker is restarted halfway; `FABFLOW_TEST_POSTGRES_RESTART` (a shell
//! command, set by `.ci/run`) restarts PostgreSQL there too.
//!
//! The harness needs `python3` (standard library only) and the simulator's
//! binary, which `cargo test --workspace` builds beside `fabflow`; without
//! either, the tests say so in one line and pass.

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_fabflow");

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Whether `program` runs (`--version` or `-h` answered at all).
fn runs(program: &str, arg: &str) -> bool {
    Command::new(program)
        .arg(arg)
        .output()
        .is_ok_and(|out| out.status.success() || !out.stdout.is_empty() || !out.stderr.is_empty())
}

/// The directory holding `fabflow` and `fabflow-sim`, or why the harness
/// cannot run here.
fn harness_ready() -> Result<PathBuf, String> {
    let dir = Path::new(BIN)
        .parent()
        .ok_or("the fabflow binary has no directory")?
        .to_path_buf();
    if !dir.join("fabflow-sim").is_file() {
        return Err(format!(
            "no fabflow-sim beside {BIN} (`cargo test --workspace` or `cargo build -p fabflow-sim` builds it)"
        ));
    }
    if !runs("python3", "--version") {
        return Err("no python3 on the PATH".into());
    }
    Ok(dir)
}

/// [`harness_ready`], or None after saying in one line why the harness on
/// `database` is skipped.
fn harness_or_skip(database: &str) -> Option<PathBuf> {
    harness_ready()
        .inspect_err(|why| eprintln!("skipped: crash harness on {database}: {why}"))
        .ok()
}

/// Runs the harness with `args`; returns its summary after asserting that
/// it passed.
fn harness(bin_dir: &Path, args: &[&str]) -> Value {
    let out = Command::new("python3")
        .arg(root().join("benches/crash_harness.py"))
        .arg("--bin-dir")
        .arg(bin_dir)
        .args(args)
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail = |text: &str| {
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    };
    // The summary is the JSON object printed last.
    let summary: Value = stdout
        .rfind("\n{")
        .and_then(|at| serde_json::from_str(stdout[at..].trim()).ok())
        .unwrap_or_else(|| {
            panic!(
                "no summary (exit {:?})\n--- stdout\n{}\n--- stderr\n{}",
                out.status,
                tail(&stdout),
                tail(&stderr)
            )
        });
    assert!(
        out.status.success() && summary["failures"].as_array().is_some_and(Vec::is_empty),
        "the harness found failures (exit {:?}): {summary:#}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        tail(&stdout),
        tail(&stderr)
    );
    summary
}

#[test]
fn sqlite_daemon_killed_again_and_again_loses_no_order_and_makes_no_job_twice() {
    let Some(bin_dir) = harness_or_skip("SQLite") else {
        return;
    };
    let summary = harness(
        &bin_dir,
        &[
            "--orders",
            "100",
            "--kills",
            "4",
            "--couriers",
            "8",
            "--time-scale",
            "1200",
            "--seed",
            "11",
        ],
    );
    assert_eq!(summary["database"], "sqlite");
    assert_eq!(summary["kills_survived"], 4, "{summary:#}");
    assert_eq!(summary["accepted"], summary["delivered"], "{summary:#}");
    assert!(
        summary["accepted"].as_u64().is_some_and(|n| n > 0),
        "{summary:#}"
    );
    // The machines really ran the jobs (every order has at least one step).
    assert!(
        summary["machine_starts"].as_u64() >= summary["accepted"].as_u64(),
        "{summary:#}"
    );
}

#[test]
fn two_daemons_on_postgresql_killed_in_turn_with_the_broker_restarted_lose_nothing() {
    let Ok(url) = std::env::var("FABFLOW_TEST_POSTGRES_URL") else {
        eprintln!("skipped: crash harness on PostgreSQL: FABFLOW_TEST_POSTGRES_URL is not set");
        return;
    };
    let Some(bin_dir) = harness_or_skip("PostgreSQL") else {
        return;
    };
    // With a database to test against, a missing tool is a broken setup,
    // not a reason to skip.
    for (tool, arg) in [
        ("mosquitto", "-h"),
        ("mosquitto_sub", "--help"),
        ("mosquitto_pub", "--help"),
        ("psql", "--version"),
    ] {
        assert!(
            runs(tool, arg),
            "{tool} is needed for the PostgreSQL crash harness (apt-get install mosquitto mosquitto-clients postgresql-client)"
        );
    }
    let restart = std::env::var("FABFLOW_TEST_POSTGRES_RESTART").ok();
    let mut args = vec![
        "--postgres",
        url.as_str(),
        "--broker",
        "mosquitto",
        "--daemons",
        "2",
        "--restart-broker",
        "--orders",
        "100",
        "--kills",
        "4",
        "--couriers",
        "8",
        "--time-scale",
        "1200",
        "--seed",
        "12",
    ];
    match &restart {
        Some(command) => args.extend(["--pg-restart-cmd", command.as_str()]),
        None => eprintln!(
            "note: FABFLOW_TEST_POSTGRES_RESTART is not set: PostgreSQL is not restarted mid-run"
        ),
    }
    let summary = harness(&bin_dir, &args);
    assert_eq!(summary["database"], "postgres", "{summary:#}");
    assert_eq!(summary["daemons"], 2, "{summary:#}");
    assert_eq!(summary["kills_survived"], 4, "{summary:#}");
    assert_eq!(summary["accepted"], summary["delivered"], "{summary:#}");
    // Every event the log lists reached the subscriber on Mosquitto.
    assert!(
        summary["events_checked"].as_u64().is_some_and(|n| n > 0),
        "{summary:#}"
    );
}
