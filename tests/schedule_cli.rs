//! `fabflow schedule` end to end: an FJSP file in, `makespan` and
//! `operations` out as JSON, checked here against the file's own rules; a
//! malformed file named by file and line with exit code 1.

use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;

/// Three jobs on three machines; the optimum makespan is 10 (proven by
/// CP-SAT): machine 2 alone can run job 0's second and job 2's last
/// operation (3 + 4), and neither can start before 3.
const FJSP: &str = "3 3 1.6
2 2 0 3 1 4 1 2 3
2 1 1 4 2 0 3 2 3
3 1 0 2 2 1 2 2 1 1 2 4
";

fn write(name: &str, text: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::write(&path, text).expect("temporary file");
    path
}

fn schedule(args: &[&str]) -> (i32, String, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_fabflow"))
        .arg("schedule")
        .args(args)
        .output()
        .expect("fabflow runs");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// (machine, time) pairs per operation per job, read from `FJSP`.
fn instance() -> Vec<Vec<Vec<(u64, u64)>>> {
    FJSP.lines()
        .skip(1)
        .map(|line| {
            let t: Vec<u64> = line
                .split_whitespace()
                .map(|x| x.parse().expect("number"))
                .collect();
            let mut i = 1;
            let mut ops = Vec::new();
            for _ in 0..t[0] {
                let k = t[i] as usize;
                i += 1;
                ops.push((0..k).map(|p| (t[i + 2 * p], t[i + 2 * p + 1])).collect());
                i += 2 * k;
            }
            ops
        })
        .collect()
}

/// Every rule of the problem, checked from the JSON alone.
fn assert_feasible(result: &Value) {
    let jobs = instance();
    let ops = result["operations"].as_array().expect("operations");
    assert_eq!(ops.len(), jobs.iter().map(Vec::len).sum::<usize>());
    let mut placed = Vec::new();
    for op in ops {
        let get = |k: &str| op[k].as_u64().expect("unsigned field");
        let (j, o, m, start) = (get("job"), get("op"), get("machine"), get("start"));
        let duration = jobs[j as usize][o as usize]
            .iter()
            .find(|(machine, _)| *machine == m)
            .map(|(_, d)| *d)
            .expect("capable machine");
        placed.push((j, o, m, start, start + duration));
    }
    placed.sort_unstable();
    for pair in placed.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        assert!(a.0 != b.0 || a.1 != b.1, "operation twice: {a:?}");
        if a.0 == b.0 {
            assert!(b.3 >= a.4, "precedence: {a:?} then {b:?}");
        }
    }
    for a in &placed {
        for b in &placed {
            if a != b && a.2 == b.2 {
                assert!(
                    a.4 <= b.3 || b.4 <= a.3,
                    "overlap on machine {}: {a:?} {b:?}",
                    a.2
                );
            }
        }
    }
    let end = placed.iter().map(|p| p.4).max().expect("operations");
    assert_eq!(result["makespan"].as_u64(), Some(end));
}

#[test]
fn an_fjsp_instance_is_solved_and_reported() {
    let path = write("tiny.fjsp.txt", FJSP);
    let path = path.to_str().expect("utf-8 path");
    let args = [
        "--format",
        "fjsp",
        "--time-limit-ms",
        "5000",
        "--max-iterations",
        "2000",
        "--seed",
        "3",
        path,
    ];
    let (code, stdout, stderr) = schedule(&args);
    assert_eq!(code, 0, "{stderr}");
    let result: Value = serde_json::from_str(stdout.trim()).expect("JSON");
    assert_feasible(&result);
    assert_eq!(result["makespan"].as_u64(), Some(10));
    // Same seed, same iteration cap: the same schedule.
    let (_, again, _) = schedule(&args);
    let again: Value = serde_json::from_str(again.trim()).expect("JSON");
    assert_eq!(result["operations"], again["operations"]);
}

#[test]
fn a_zero_time_limit_still_returns_a_feasible_schedule() {
    let path = write("tiny0.fjsp.txt", FJSP);
    let path = path.to_str().expect("utf-8 path");
    let (code, stdout, stderr) = schedule(&["--format", "fjsp", "--time-limit-ms", "0", path]);
    assert_eq!(code, 0, "{stderr}");
    assert_feasible(&serde_json::from_str(stdout.trim()).expect("JSON"));
}

#[test]
fn malformed_files_are_named_by_file_line_and_reason() {
    let cases = [
        ("empty.fjsp.txt", "", ":1: empty file"),
        ("header.fjsp.txt", "2 x\n", ":1: number of machines"),
        ("short.fjsp.txt", "2 2\n1 1 0 3\n", "expected 2 job lines"),
        (
            "range.fjsp.txt",
            "1 2\n\n1 1 5 3\n",
            ":3: job 0 operation 0: machine 5 out of range",
        ),
        (
            "time.fjsp.txt",
            "1 2\n1 1 0 0\n",
            ":2: job 0 operation 0: processing time must be positive",
        ),
        (
            "cut.fjsp.txt",
            "1 2\n2 1 0 3 1\n",
            ":2: job 0 operation 1: machine: missing",
        ),
        (
            "extra.fjsp.txt",
            "1 2\n1 1 0 3 7\n",
            ":2: job 0: unexpected",
        ),
    ];
    for (name, text, want) in cases {
        let path = write(name, text);
        let path_text = path.to_str().expect("utf-8 path");
        let (code, stdout, stderr) =
            schedule(&["--format", "fjsp", "--time-limit-ms", "100", path_text]);
        assert_eq!(code, 1, "{name}: {stderr}");
        assert!(stdout.is_empty(), "{name}: {stdout}");
        assert!(stderr.starts_with(path_text), "{name}: {stderr}");
        assert!(stderr.contains(want), "{name}: {stderr:?} lacks {want:?}");
    }
    let (code, _, stderr) = schedule(&[
        "--format",
        "fjsp",
        "--time-limit-ms",
        "100",
        "/nonexistent/instance.txt",
    ]);
    assert_eq!(code, 1);
    assert!(stderr.contains("/nonexistent/instance.txt"), "{stderr}");
}
