//! Reader for the standard flexible job-shop text format (Brandimarte,
//! Hurink and the other literature sets): a line `<jobs> <machines>` (some
//! files add a third number, the average machines per operation, which is
//! ignored), then one line per job: `<operations>`, then per operation `<k>`
//! and k pairs `<machine> <processing time>`, machines numbered from 0.
//! Blank lines are skipped. Invariant: a malformed file is an error naming
//! its 1-based line and the reason, never a panic.

use super::model::{Alternative, Job, Machine, Operation, Problem};
use std::fmt;

/// A file that could not be read: the 1-based line and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

impl std::error::Error for ParseError {}

fn error(line: usize, reason: impl Into<String>) -> ParseError {
    ParseError {
        line,
        reason: reason.into(),
    }
}

/// Largest count accepted for jobs, machines, operations per job and
/// machines per operation: more is surely a broken file.
const MAX_COUNT: usize = 100_000;

fn count(line: usize, token: Option<&str>, what: &str) -> Result<usize, ParseError> {
    let Some(token) = token else {
        return Err(error(line, format!("{what}: missing, the line ends early")));
    };
    let value: usize = token.parse().map_err(|_| {
        error(
            line,
            format!("{what}: expected a whole number, got {token:?}"),
        )
    })?;
    if value > MAX_COUNT {
        return Err(error(
            line,
            format!("{what}: {value} is more than {MAX_COUNT}"),
        ));
    }
    Ok(value)
}

/// Parses an FJSP file into a makespan problem (no releases, setups or dues).
pub fn parse_fjsp(text: &str) -> Result<Problem, ParseError> {
    let mut lines = text
        .lines()
        .enumerate()
        .map(|(i, l)| (i + 1, l.trim()))
        .filter(|(_, l)| !l.is_empty());
    let Some((header_line, header)) = lines.next() else {
        return Err(error(1, "empty file: expected `<jobs> <machines>`"));
    };
    let mut fields = header.split_whitespace();
    let jobs = count(header_line, fields.next(), "number of jobs")?;
    let machines = count(header_line, fields.next(), "number of machines")?;
    if let Some(average) = fields.next()
        && average.parse::<f64>().is_err()
    {
        return Err(error(
            header_line,
            format!("average machines per operation: expected a number, got {average:?}"),
        ));
    }
    if fields.next().is_some() {
        return Err(error(
            header_line,
            "expected `<jobs> <machines>` and at most an average, got more numbers",
        ));
    }
    if jobs == 0 {
        return Err(error(header_line, "number of jobs must be at least 1"));
    }
    if machines == 0 {
        return Err(error(header_line, "number of machines must be at least 1"));
    }
    let mut problem = Problem {
        jobs: Vec::with_capacity(jobs),
        machines: vec![Machine::default(); machines],
    };
    for j in 0..jobs {
        let Some((line, text)) = lines.next() else {
            return Err(error(
                text.lines().count().max(1),
                format!("expected {jobs} job lines, found {j}"),
            ));
        };
        let mut tokens = text.split_whitespace();
        let operations = count(line, tokens.next(), "number of operations")?;
        if operations == 0 {
            return Err(error(line, format!("job {j} has no operations")));
        }
        let mut job = Job {
            operations: Vec::with_capacity(operations),
            release: 0,
            due: None,
            order: j,
        };
        for o in 0..operations {
            let what = format!("job {j} operation {o}: number of machines");
            let k = count(line, tokens.next(), &what)?;
            if k == 0 {
                return Err(error(line, format!("job {j} operation {o}: no machine")));
            }
            let mut alternatives = Vec::with_capacity(k.min(machines));
            for _ in 0..k {
                let machine = count(
                    line,
                    tokens.next(),
                    &format!("job {j} operation {o}: machine"),
                )?;
                if machine >= machines {
                    return Err(error(
                        line,
                        format!(
                            "job {j} operation {o}: machine {machine} out of range 0..{machines}"
                        ),
                    ));
                }
                let time = count(
                    line,
                    tokens.next(),
                    &format!("job {j} operation {o}: processing time"),
                )?;
                if time == 0 {
                    return Err(error(
                        line,
                        format!("job {j} operation {o}: processing time must be positive"),
                    ));
                }
                if alternatives
                    .iter()
                    .any(|a: &Alternative| a.machine == machine)
                {
                    return Err(error(
                        line,
                        format!("job {j} operation {o}: machine {machine} listed twice"),
                    ));
                }
                alternatives.push(Alternative {
                    machine,
                    duration: time as i64,
                    distance: 0,
                });
            }
            job.operations.push(Operation {
                alternatives,
                family: None,
                fixed: None,
            });
        }
        if let Some(extra) = tokens.next() {
            return Err(error(
                line,
                format!("job {j}: unexpected {extra:?} after its {operations} operations"),
            ));
        }
        problem.jobs.push(job);
    }
    if let Some((line, _)) = lines.next() {
        return Err(error(
            line,
            format!("unexpected line after the {jobs} jobs"),
        ));
    }
    Ok(problem)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fails(text: &str) -> (usize, String) {
        let err = parse_fjsp(text).expect_err("malformed");
        (err.line, err.reason)
    }

    #[test]
    fn reads_jobs_operations_and_alternatives() {
        let problem = parse_fjsp("2 3\n2 2 0 5 1 4 1 2 3\n\n1 1 1 7\n").expect("valid");
        assert_eq!(problem.machines.len(), 3);
        assert_eq!(problem.jobs.len(), 2);
        let ops = &problem.jobs[0].operations;
        assert_eq!(ops.len(), 2);
        let pairs = |o: &Operation| {
            o.alternatives
                .iter()
                .map(|a| (a.machine, a.duration))
                .collect::<Vec<_>>()
        };
        assert_eq!(pairs(&ops[0]), vec![(0, 5), (1, 4)]);
        assert_eq!(pairs(&ops[1]), vec![(2, 3)]);
        assert_eq!(pairs(&problem.jobs[1].operations[0]), vec![(1, 7)]);
    }

    #[test]
    fn accepts_the_average_in_the_header() {
        let problem = parse_fjsp("1 2 1.5\n1 2 0 3 1 4\n").expect("valid");
        assert_eq!(problem.jobs.len(), 1);
    }

    #[test]
    fn malformed_files_name_line_and_reason() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 1, "empty file"),
            ("x 2\n", 1, "number of jobs"),
            ("2\n", 1, "number of machines: missing"),
            ("1 2 3 4\n", 1, "at most an average"),
            ("1 2 avg\n", 1, "average"),
            ("0 2\n", 1, "at least 1"),
            ("2 2\n1 1 0 3\n", 2, "expected 2 job lines, found 1"),
            ("1 2\n1 1 2 3\n", 2, "machine 2 out of range"),
            ("1 2\n1 1 0 0\n", 2, "must be positive"),
            (
                "1 2\n1 1 0\n",
                2,
                "job 0 operation 0: processing time: missing",
            ),
            ("1 2\n2 1 0 3\n", 2, "operation 1: number of machines"),
            ("1 2\n1 1 0 3 9\n", 2, "unexpected \"9\""),
            ("1 2\n1 0\n", 2, "no machine"),
            ("1 2\n0\n", 2, "no operations"),
            ("1 2\n1 2 0 3 0 4\n", 2, "listed twice"),
            ("1 2\n1 1 0 -3\n", 2, "whole number"),
            ("1 2\n\n1 1 0 3\n1 1 0 3\n", 4, "unexpected line"),
        ];
        for (text, line, reason) in cases {
            let (got_line, got_reason) = fails(text);
            assert_eq!(got_line, *line, "{text:?}: {got_reason}");
            assert!(
                got_reason.contains(reason),
                "{text:?}: {got_reason:?} lacks {reason:?}"
            );
        }
    }
}
