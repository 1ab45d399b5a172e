//! The operator's CLI over the API (`FABFLOW_URL`, `FABFLOW_TOKEN`): tables,
//! `--json`, machine modes, and a non-zero exit with the API's problem on
//! errors. Runs the built `fabflow` binary against a daemon on loopback.

mod support;

use fabflow::api::auth::Role;
use serde_json::{Value, json};
use support::Running;

const BIN: &str = env!("CARGO_BIN_EXE_fabflow");

struct Run {
    ok: bool,
    stdout: String,
    stderr: String,
}

async fn fabflow(base: &str, token: Option<&str>, args: &[&str]) -> Run {
    let mut command = tokio::process::Command::new(BIN);
    command.args(args).env("FABFLOW_URL", base);
    match token {
        Some(token) => command.env("FABFLOW_TOKEN", token),
        None => command.env_remove("FABFLOW_TOKEN"),
    };
    let output = command.output().await.expect("run fabflow");
    Run {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_operator_lists_and_steers_machines_and_reads_orders_from_the_cli() {
    let dir = tempfile::tempdir().expect("temp dir");
    let fleet = support::fleet(9, 60.0).await;
    let config = support::config(&fleet, &dir.path().join("cli.db"), 60.0);
    let running = Running::start(config).await;
    let base = running.base.clone();
    let operator = running.token(Role::Operator, "north").await;
    let admin = running.token(Role::Admin, "*").await;
    let brand = running.api(Role::Brand, "cli-brand").await;

    // An aligned table: the header and every row put each column at the same place.
    let run = fabflow(&base, Some(&operator), &["machines"]).await;
    assert!(run.ok, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines[0].starts_with("MACHINE"), "{}", run.stdout);
    let state_at = lines[0].find("STATE").expect("a STATE column");
    assert!(lines.len() > 1, "{}", run.stdout);
    for line in &lines[1..] {
        assert!(line.starts_with("north-"), "only north's machines: {line}");
        assert!(
            line[state_at..].starts_with(|c: char| c.is_ascii_lowercase()),
            "column aligned: {line}"
        );
    }

    let run = fabflow(&base, Some(&operator), &["machines", "--json"]).await;
    assert!(run.ok, "{}", run.stderr);
    let machines: Value = serde_json::from_str(&run.stdout).expect("--json prints JSON");
    let first = machines[0]["id"].as_str().expect("a machine").to_string();

    // Drain (finish the queue, then pause), then resume.
    let run = fabflow(&base, Some(&operator), &["machine", "drain", &first]).await;
    assert!(run.ok, "{}", run.stderr);
    assert!(run.stdout.contains("(mode draining)"), "{}", run.stdout);
    let run = fabflow(
        &base,
        Some(&operator),
        &["machine", "resume", &first, "--json"],
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    let resumed: Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(resumed["mode"], "active");

    // Maintenance now: the machine leaves the floor, then is ready again.
    let run = fabflow(&base, Some(&operator), &["machine", "maintenance", &first]).await;
    assert!(run.ok, "{}", run.stderr);
    assert!(run.stdout.contains("(mode maintenance)"), "{}", run.stdout);
    let run = fabflow(
        &base,
        Some(&operator),
        &["machine", "ready", &first, "--json"],
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    let ready: Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert_eq!(ready["mode"], "active", "{ready}");

    // Maintenance planned ahead: shown, listed, removed.
    let now = running.daemon.clock.now_ms();
    let at = |hours: i64| {
        chrono::DateTime::from_timestamp_millis(now + hours * 3_600_000)
            .expect("a time")
            .to_rfc3339()
    };
    let (start, end) = (at(24), at(26));
    let run = fabflow(
        &base,
        Some(&operator),
        &[
            "machine",
            "plan-maintenance",
            &first,
            &start,
            &end,
            "nozzle swap",
            "--json",
        ],
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    let planned: Value = serde_json::from_str(&run.stdout).expect("JSON");
    let window = planned[0]["id"].as_str().expect("window id").to_string();
    assert_eq!(planned[0]["reason"], "nozzle swap", "{planned}");
    let run = fabflow(&base, Some(&operator), &["machine", "windows", &first]).await;
    assert!(run.ok, "{}", run.stderr);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert!(lines[0].starts_with("WINDOW"), "{}", run.stdout);
    assert_eq!(lines.len(), 2, "{}", run.stdout);
    assert!(
        lines[1].starts_with(&window) && lines[1].contains("nozzle swap"),
        "{}",
        run.stdout
    );
    // A window that ends before it starts is refused with the API's problem.
    let run = fabflow(
        &base,
        Some(&operator),
        &[
            "machine",
            "plan-maintenance",
            &first,
            &end,
            &start,
            "backwards",
        ],
    )
    .await;
    assert!(!run.ok);
    assert!(run.stderr.contains("422"), "{}", run.stderr);
    let run = fabflow(
        &base,
        Some(&operator),
        &["machine", "cancel-maintenance", &first, &window],
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    assert!(run.stdout.contains("removed"), "{}", run.stdout);
    let run = fabflow(
        &base,
        Some(&operator),
        &["machine", "windows", &first, "--json"],
    )
    .await;
    assert!(run.ok, "{}", run.stderr);
    assert_eq!(
        serde_json::from_str::<Value>(&run.stdout).expect("JSON"),
        json!([]),
        "{}",
        run.stdout
    );

    // Errors: another factory's machine, no token, a job that is not held.
    let run = fabflow(&base, Some(&operator), &["machine", "pause", "south-dtg-1"]).await;
    assert!(!run.ok);
    assert!(run.stderr.contains("404"), "{}", run.stderr);
    let run = fabflow(&base, None, &["machines"]).await;
    assert!(!run.ok);
    assert!(run.stderr.contains("FABFLOW_TOKEN"), "{}", run.stderr);
    let run = fabflow(&base, Some(&operator), &["job", "retry", "999999"]).await;
    assert!(!run.ok);
    assert!(run.stderr.contains("404"), "{}", run.stderr);

    // An order, its jobs, and the order shown.
    let order = json!({
        "external_ref": "cli-1",
        "customer": {"name": "Linus Cli", "lat": 52.5405, "lon": 13.4197},
        "lines": [{"sku": "tee-black-m", "quantity": 1}],
    });
    let (status, created) = brand.post("/v1/orders", &order, Some("cli-1")).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().expect("id").to_string();
    let run = fabflow(&base, Some(&admin), &["jobs", "--json"]).await;
    assert!(run.ok, "{}", run.stderr);
    let jobs: Value = serde_json::from_str(&run.stdout).expect("JSON");
    assert!(
        jobs.as_array()
            .is_some_and(|jobs| jobs.iter().any(|j| j["order_id"] == id.as_str())),
        "{jobs}"
    );
    let run = fabflow(&base, Some(&admin), &["jobs", "--state", "nonsense"]).await;
    assert!(!run.ok);
    assert!(run.stderr.contains("400"), "{}", run.stderr);
    let run = fabflow(&base, Some(&admin), &["orders", "show", &id]).await;
    assert!(run.ok, "{}", run.stderr);
    assert!(run.stdout.contains("cli-1"), "{}", run.stdout);
    assert!(run.stdout.contains("PROCESS"), "{}", run.stdout);

    running.stop().await;
    drop(fleet);
}
