//! `fabflow route` end to end: a Solomon or Li & Lim file in, the
//! literature's measures out as JSON; a malformed file named by file and
//! line with exit code 1.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

const SOLOMON: &str = "TINY1

VEHICLE
NUMBER     CAPACITY
  2         10

CUSTOMER
CUST NO.  XCOORD.   YCOORD.    DEMAND   READY TIME  DUE DATE   SERVICE   TIME

    0      0          0          0          0        100          0
    1      3          4          4          0        100          1
    2      6          8          5          0        100          1
    3      0          5          6          0        100          1
";

const LILIM: &str = "2\t10\t1
0\t0\t0\t0\t0\t100\t0\t0\t0
1\t3\t4\t4\t0\t100\t1\t0\t2
2\t6\t8\t-4\t0\t100\t1\t1\t0
3\t0\t5\t6\t0\t100\t1\t0\t4
4\t0\t10\t-6\t0\t100\t1\t3\t0
";

fn write(name: &str, text: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, text).expect("temporary file");
    path
}

fn route(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_fabflow"))
        .arg("route")
        .args(args)
        .output()
        .expect("fabflow runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

fn visited(result: &Value) -> Vec<u64> {
    let mut nodes: Vec<u64> = result["routes"]
        .as_array()
        .expect("routes")
        .iter()
        .flat_map(|r| r.as_array().cloned().unwrap_or_default())
        .filter_map(|n| n.as_u64())
        .collect();
    nodes.sort_unstable();
    nodes
}

#[test]
fn a_solomon_instance_is_solved_and_reported_as_the_literature_does() {
    let path = write("tiny.solomon.txt", SOLOMON);
    let path = path.to_str().expect("utf-8 path");
    let (code, stdout, stderr) = route(&[
        "--format",
        "solomon",
        "--time-limit-ms",
        "2000",
        "--max-iterations",
        "500",
        "--seed",
        "3",
        path,
    ]);
    assert_eq!(code, 0, "{stderr}");
    let result: Value = serde_json::from_str(stdout.trim()).expect("JSON");
    assert_eq!(
        visited(&result),
        [1, 2, 3],
        "each customer once, depot excluded"
    );
    // Capacity 10 and demands 4 + 5 + 6: two couriers at least.
    assert_eq!(result["vehicles"], 2, "{result}");
    let distance = result["distance"].as_f64().expect("distance");
    // Depot to (3,4) to (6,8) and back is 20, to (0,5) and back 10.
    assert!((distance - 30.0).abs() < 1e-9, "{result}");
    // Deterministic for a seed and an iteration cap.
    let (_, again, _) = route(&[
        "--format",
        "solomon",
        "--time-limit-ms",
        "2000",
        "--max-iterations",
        "500",
        "--seed",
        "3",
        path,
    ]);
    let again: Value = serde_json::from_str(again.trim()).expect("JSON");
    assert_eq!(again["routes"], result["routes"]);
}

#[test]
fn a_li_lim_instance_keeps_each_pickup_before_its_delivery() {
    let path = write("tiny.lilim.txt", LILIM);
    let path = path.to_str().expect("utf-8 path");
    let (code, stdout, stderr) = route(&[
        "--format",
        "lilim",
        "--time-limit-ms",
        "1000",
        "--max-iterations",
        "300",
        "--objective",
        "vehicles",
        path,
    ]);
    assert_eq!(code, 0, "{stderr}");
    let result: Value = serde_json::from_str(stdout.trim()).expect("JSON");
    assert_eq!(visited(&result), [1, 2, 3, 4]);
    for route in result["routes"].as_array().expect("routes") {
        let stops: Vec<u64> = route
            .as_array()
            .expect("route")
            .iter()
            .filter_map(|n| n.as_u64())
            .collect();
        for (pickup, delivery) in [(1, 2), (3, 4)] {
            let p = stops.iter().position(|&n| n == pickup);
            let d = stops.iter().position(|&n| n == delivery);
            assert_eq!(
                p.is_some(),
                d.is_some(),
                "a pair rides one courier: {route}"
            );
            if let (Some(p), Some(d)) = (p, d) {
                assert!(p < d, "pickup {pickup} before delivery {delivery}: {route}");
            }
        }
    }
}

#[test]
fn a_malformed_file_is_named_with_its_line() {
    let bad = SOLOMON.replacen("    2      6          8", "    2      six        8", 1);
    let path = write("bad.solomon.txt", &bad);
    let name = path.to_str().expect("utf-8 path");
    let (code, stdout, stderr) = route(&["--format", "solomon", "--time-limit-ms", "100", name]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.starts_with(&format!("{name}:12: x: not a number")),
        "{stderr}"
    );
    let (code, _, stderr) = route(&["--format", "tsplib", "--time-limit-ms", "100", name]);
    assert_eq!(code, 2, "{stderr}");
}
