//! The core (`src/domain`, `src/plan`, `src/forecast`) does no I/O: it takes
//! `now` as a parameter, never awaits, never logs, and names nothing that does.
//! This test reads those sources as text and fails on any forbidden name.
//!
//! It is a tripwire, not a proof: it skips lines that start with `//`, matches
//! whole names only (`brand` does not match `rand`), and cannot see through
//! re-exports or grouped imports such as `use std::{fs, net}`.

use std::path::{Path, PathBuf};

/// Directories that hold the pure core, relative to the package root.
const CORE_DIRS: &[&str] = &["src/domain", "src/plan", "src/forecast"];

/// Names the core must not use: async runtimes, databases, HTTP, the
/// adapters crate, MQTT, the file system and network, clocks, printing and logging.
const FORBIDDEN: &[&str] = &[
    "tokio",
    "sqlx",
    "axum",
    "fabflow_adapters",
    "rumqttc",
    "reqwest",
    "std::fs",
    "std::net",
    "SystemTime",
    "Instant::now",
    "Utc::now",
    "Local::now",
    "println!",
    "tracing::",
    // Same rule, other spellings.
    "print!",
    "eprint!",
    "eprintln!",
    "dbg!",
    "std::io",
    "std::env",
    "std::process",
    "std::thread",
    "now_v7",
];

/// One forbidden name found in a source text.
#[derive(Debug, PartialEq, Eq)]
struct Finding {
    /// 1-based line number.
    line: usize,
    word: &'static str,
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// True when `word` occurs in `line` as a whole name: not preceded by an
/// identifier character, and, when it ends in one, not followed by one.
fn contains_name(line: &str, word: &str) -> bool {
    let word_ends_in_ident = word.chars().last().is_some_and(is_ident_char);
    line.match_indices(word).any(|(start, _)| {
        let before_ok = !line[..start].chars().next_back().is_some_and(is_ident_char);
        let after_ok = !word_ends_in_ident
            || !line[start + word.len()..]
                .chars()
                .next()
                .is_some_and(is_ident_char);
        before_ok && after_ok
    })
}

/// Every forbidden name in `text`, by line, skipping lines that start with `//`.
fn scan(text: &str) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        for &word in FORBIDDEN {
            if contains_name(line, word) {
                findings.push(Finding {
                    line: index + 1,
                    word,
                });
            }
        }
    }
    findings
}

fn rust_files(dir: &Path, files: &mut Vec<PathBuf>) {
    let entries =
        std::fs::read_dir(dir).unwrap_or_else(|err| panic!("cannot read {}: {err}", dir.display()));
    for entry in entries {
        let path = entry
            .unwrap_or_else(|err| panic!("cannot read an entry of {}: {err}", dir.display()))
            .path();
        if path.is_dir() {
            rust_files(&path, files);
        } else if path.extension().is_some_and(|ext| ext == "rs") {
            files.push(path);
        }
    }
}

#[test]
fn core_names_no_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for dir in CORE_DIRS {
        let dir = root.join(dir);
        assert!(
            dir.is_dir(),
            "{} is missing: the layout is fixed",
            dir.display()
        );
        rust_files(&dir, &mut files);
    }
    assert!(!files.is_empty(), "no .rs files under {CORE_DIRS:?}");
    files.sort();

    let mut problems = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file)
            .unwrap_or_else(|err| panic!("cannot read {}: {err}", file.display()));
        let shown = file.strip_prefix(root).unwrap_or(file).display();
        for Finding { line, word } in scan(&text) {
            problems.push(format!(
                "{shown}:{line}: names `{word}`, which the pure core must not use"
            ));
        }
    }
    assert!(
        problems.is_empty(),
        "the core (src/domain, src/plan, src/forecast) does no I/O; \
         move this to src/runtime or an adapter, or take it as a parameter:\n{}",
        problems.join("\n")
    );
}

#[test]
fn scan_finds_forbidden_names() {
    let text = "\
use tokio::sync::mpsc;
// tokio in a line comment is fine
    /// so is Utc::now() in a doc comment
//! and tracing:: in a module doc
let now = chrono::Utc::now();
let brand = pick(); // `rand` inside `brand` is not a name
let stokio = 1;
eprintln!(\"{}\", std::fs::read_to_string(path)?);
fn plan(now: DateTime<Utc>) {}
";
    assert_eq!(
        scan(text),
        vec![
            Finding {
                line: 1,
                word: "tokio"
            },
            Finding {
                line: 5,
                word: "Utc::now"
            },
            Finding {
                line: 8,
                word: "std::fs"
            },
            Finding {
                line: 8,
                word: "eprintln!"
            },
        ]
    );
}

#[test]
fn scan_accepts_pure_code() {
    let text = "\
//! Job scheduling: pure.
pub fn schedule(now: DateTime<Utc>, jobs: &[Job]) -> Vec<Assignment> {
    jobs.iter().filter(|job| job.due > now).map(Assignment::from).collect()
}
";
    assert_eq!(scan(text), Vec::new());
}
