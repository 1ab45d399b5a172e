//! The layering of docs/architecture.md, held against the code:
//!
//! - the core (`src/domain`, `src/plan`, `src/forecast`) does no I/O: it takes
//!   `now` as a parameter, never awaits, never logs, and names nothing that does;
//! - dependencies point one way, down: api -> runtime -> (store, plan,
//!   forecast, adapters) -> domain; the runtime never names the API, the store
//!   never names a planner, the runtime or the API, the API never names a
//!   planner or the adapters; only `daemon` (the composition root) names both
//!   runtime and api;
//! - no two files of `src/` import each other, directly or around a circle;
//! - the adapters and simulator crates know nothing of the daemon crate.
//!
//! These tests read the sources as text.
//! They are tripwires, not proofs: they skip lines that start with `//`, matches
//! whole names only (`brand` does not match `rand`), and cannot see through
//! re-exports or nested grouped imports such as `use std::{fs, net}`.

use std::collections::{BTreeMap, BTreeSet};
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

// ---- Direction: which module may name which ----

/// Top-level modules of `src/` and what each must never name. Dependencies
/// point one way, down: api -> runtime -> (store, plan, forecast, adapters)
/// -> domain; `daemon` composes runtime and api and nothing names it.
const NEVER: &[(&str, &[&str])] = &[
    (
        "domain",
        &[
            "plan",
            "forecast",
            "store",
            "runtime",
            "api",
            "daemon",
            "config",
            "demo",
            "fabflow_adapters",
        ],
    ),
    (
        "plan",
        &[
            "forecast",
            "store",
            "runtime",
            "api",
            "daemon",
            "config",
            "demo",
            "fabflow_adapters",
        ],
    ),
    (
        "forecast",
        &[
            "plan",
            "store",
            "runtime",
            "api",
            "daemon",
            "config",
            "demo",
            "fabflow_adapters",
        ],
    ),
    (
        "store",
        &[
            "plan",
            "forecast",
            "runtime",
            "api",
            "daemon",
            "demo",
            "fabflow_adapters",
        ],
    ),
    ("runtime", &["api", "daemon", "demo"]),
    ("api", &["plan", "daemon", "demo", "fabflow_adapters"]),
    ("config", &["plan", "store", "runtime", "api", "daemon"]),
];

/// The module path of a source file under `src/`: `src/store/jobs.rs` is
/// `["store", "jobs"]`, `src/store/mod.rs` is `["store"]`, `src/lib.rs` is `[]`.
fn module_path(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative
        .iter()
        .map(|part| part.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs").to_string();
        if !matches!(stem.as_str(), "mod" | "lib" | "main") {
            parts.push(stem);
        }
    }
    parts
}

/// Every module path a text names through `crate::`, `super::` or `self::`
/// (grouped imports such as `super::{jobs::x, Store}` give one path per
/// member), resolved against the naming file's own module path. Paths of
/// `fabflow_adapters` are returned as `["fabflow_adapters"]`.
fn named_paths(text: &str, own: &[String]) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim_start();
        if line.starts_with("//") {
            continue;
        }
        if contains_name(line, "fabflow_adapters") {
            out.push(vec!["fabflow_adapters".to_string()]);
        }
        for root in ["crate::", "super::", "self::"] {
            for (start, _) in line.match_indices(root) {
                if line[..start].chars().next_back().is_some_and(is_ident_char) {
                    continue;
                }
                // `super` is the parent of the file's module (for a mod.rs,
                // the parent of its directory); `self` the module itself.
                let base: Vec<String> = match root {
                    "crate::" => Vec::new(),
                    "super::" => own[..own.len().saturating_sub(1)].to_vec(),
                    _ => own.to_vec(),
                };
                let rest = &line[start + root.len()..];
                for tail in path_tails(rest) {
                    let mut path = base.clone();
                    path.extend(tail);
                    out.push(path);
                }
            }
        }
    }
    out
}

/// The identifier paths that start `text`: `a::b::C` gives `[a, b, C]`;
/// `{a::x, B}` gives `[a, x]` and `[B]` (one level of braces).
fn path_tails(text: &str) -> Vec<Vec<String>> {
    let segments = |text: &str| -> Vec<String> {
        let mut segments = Vec::new();
        let mut rest = text;
        loop {
            let ident: String = rest.chars().take_while(|c| is_ident_char(*c)).collect();
            if ident.is_empty() {
                break;
            }
            rest = &rest[ident.len()..];
            segments.push(ident);
            match rest.strip_prefix("::") {
                Some(next) if next.starts_with(|c: char| is_ident_char(c)) => rest = next,
                _ => break,
            }
        }
        segments
    };
    let head = segments(text);
    let after = &text[head
        .iter()
        .map(|s| s.len() + 2)
        .sum::<usize>()
        .min(text.len())..];
    if let Some(group) = after.strip_prefix('{').or_else(|| text.strip_prefix('{')) {
        let group = group.split('}').next().unwrap_or("");
        return group
            .split(',')
            .map(|member| {
                let mut path = head.clone();
                path.extend(segments(member.trim()));
                path
            })
            .filter(|path| !path.is_empty())
            .collect();
    }
    vec![head]
}

/// The file a module path names: the longest prefix that is a file under `src/`.
fn resolve(src: &Path, path: &[String]) -> Option<PathBuf> {
    for len in (1..=path.len()).rev() {
        let prefix: PathBuf = path[..len].iter().collect();
        let file = src.join(&prefix).with_extension("rs");
        if file.is_file() {
            return Some(file);
        }
        let dir = src.join(&prefix).join("mod.rs");
        if dir.is_file() {
            return Some(dir);
        }
    }
    None
}

struct SourceFile {
    path: PathBuf,
    module: Vec<String>,
    text: String,
}

fn src_files() -> (PathBuf, Vec<SourceFile>) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let mut paths = Vec::new();
    rust_files(&src, &mut paths);
    paths.sort();
    let files = paths
        .into_iter()
        .map(|path| {
            let text = std::fs::read_to_string(&path)
                .unwrap_or_else(|err| panic!("cannot read {}: {err}", path.display()));
            let relative = path.strip_prefix(&src).unwrap_or(&path).to_path_buf();
            SourceFile {
                module: module_path(&relative),
                path,
                text,
            }
        })
        .collect();
    (src, files)
}

fn is_mod_file(path: &Path) -> bool {
    path.file_name()
        .is_some_and(|name| name == "mod.rs" || name == "lib.rs" || name == "main.rs")
}

#[test]
fn dependencies_point_one_way() {
    let (src, files) = src_files();
    let mut problems = Vec::new();
    for file in &files {
        let Some(top) = file.module.first() else {
            continue;
        };
        let Some((_, never)) = NEVER.iter().find(|(module, _)| module == top) else {
            continue;
        };
        let shown = file.path.strip_prefix(&src).unwrap_or(&file.path).display();
        let mut seen = BTreeSet::new();
        for path in named_paths(&file.text, &file.module) {
            let Some(target) = path.first() else { continue };
            if never.contains(&target.as_str()) && seen.insert(target.clone()) {
                problems.push(format!(
                    "src/{shown} names `{target}`, which `{top}` must never use"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "dependencies point one way (docs/architecture.md):\n{}",
        problems.join("\n")
    );
}

#[test]
fn no_two_files_import_each_other_around_a_circle() {
    let (src, files) = src_files();
    let index: BTreeMap<PathBuf, usize> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.path.clone(), i))
        .collect();
    // Edges from a file to the files it names; a module file naming its own
    // children (declaring and re-exporting them) is how modules compose, not
    // a dependency.
    let mut edges: Vec<BTreeSet<usize>> = vec![BTreeSet::new(); files.len()];
    for (i, file) in files.iter().enumerate() {
        let parent = is_mod_file(&file.path);
        for path in named_paths(&file.text, &file.module) {
            let Some(target) = resolve(&src, &path) else {
                continue;
            };
            let Some(&j) = index.get(&target) else {
                continue;
            };
            let descendant = files[j].module.starts_with(&file.module) && parent;
            if j != i && !descendant {
                edges[i].insert(j);
            }
        }
    }
    let cycles = strongly_connected(&edges);
    let shown: Vec<String> = cycles
        .iter()
        .map(|cycle| {
            cycle
                .iter()
                .map(|&i| {
                    files[i]
                        .path
                        .strip_prefix(&src)
                        .unwrap_or(&files[i].path)
                        .display()
                        .to_string()
                })
                .collect::<Vec<_>>()
                .join(" <-> ")
        })
        .collect();
    assert!(
        shown.is_empty(),
        "files that import each other (directly or around a circle):\n{}",
        shown.join("\n")
    );
}

/// Groups of two or more nodes that reach each other (Tarjan's algorithm).
fn strongly_connected(edges: &[BTreeSet<usize>]) -> Vec<Vec<usize>> {
    struct Search<'a> {
        edges: &'a [BTreeSet<usize>],
        index: Vec<Option<usize>>,
        low: Vec<usize>,
        on_stack: Vec<bool>,
        stack: Vec<usize>,
        next: usize,
        groups: Vec<Vec<usize>>,
    }
    impl Search<'_> {
        fn visit(&mut self, v: usize) {
            self.index[v] = Some(self.next);
            self.low[v] = self.next;
            self.next += 1;
            self.stack.push(v);
            self.on_stack[v] = true;
            for &w in self.edges[v].iter() {
                match self.index[w] {
                    None => {
                        self.visit(w);
                        self.low[v] = self.low[v].min(self.low[w]);
                    }
                    Some(index) if self.on_stack[w] => self.low[v] = self.low[v].min(index),
                    Some(_) => {}
                }
            }
            if Some(self.low[v]) == self.index[v] {
                let mut group = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack[w] = false;
                    group.push(w);
                    if w == v {
                        break;
                    }
                }
                if group.len() > 1 {
                    group.sort_unstable();
                    self.groups.push(group);
                }
            }
        }
    }
    let n = edges.len();
    let mut search = Search {
        edges,
        index: vec![None; n],
        low: vec![0; n],
        on_stack: vec![false; n],
        stack: Vec::new(),
        next: 0,
        groups: Vec::new(),
    };
    for v in 0..n {
        if search.index[v].is_none() {
            search.visit(v);
        }
    }
    search.groups
}

#[test]
fn the_other_crates_know_nothing_of_the_daemon() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut problems = Vec::new();
    for crate_dir in ["adapters", "simulator"] {
        let manifest = std::fs::read_to_string(root.join(crate_dir).join("Cargo.toml"))
            .unwrap_or_else(|err| panic!("cannot read {crate_dir}/Cargo.toml: {err}"));
        if manifest.lines().any(|line| {
            let line = line.trim_start();
            line.starts_with("fabflow ")
                || line.starts_with("fabflow=")
                || line.starts_with("fabflow.")
        }) {
            problems.push(format!(
                "{crate_dir}/Cargo.toml depends on the daemon crate `fabflow`"
            ));
        }
        let mut files = Vec::new();
        rust_files(&root.join(crate_dir), &mut files);
        for file in files {
            let text = std::fs::read_to_string(&file)
                .unwrap_or_else(|err| panic!("cannot read {}: {err}", file.display()));
            for (number, line) in text.lines().enumerate() {
                if !line.trim_start().starts_with("//") && contains_name(line, "fabflow::") {
                    problems.push(format!(
                        "{}:{}: names `fabflow::`",
                        file.display(),
                        number + 1
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn paths_are_read_as_modules() {
    let own = vec!["store".to_string(), "jobs".to_string()];
    let paths = named_paths(
        "use super::write::{NewJob, emit};\nuse super::{Store, parse};\nuse crate::domain::JobState;",
        &own,
    );
    assert!(paths.contains(&vec!["store".into(), "write".into(), "NewJob".into()]));
    assert!(paths.contains(&vec!["store".into(), "Store".into()]));
    assert!(paths.contains(&vec!["domain".into(), "JobState".into()]));
    let own = vec!["runtime".to_string()];
    let paths = named_paths("use super::api::auth::Guard;", &own);
    assert_eq!(
        paths,
        vec![vec!["api".to_string(), "auth".into(), "Guard".into()]]
    );
    assert_eq!(
        module_path(Path::new("store/mod.rs")),
        vec!["store".to_string()]
    );
    assert_eq!(module_path(Path::new("lib.rs")), Vec::<String>::new());
    let cycle = strongly_connected(&[
        BTreeSet::from([1]),
        BTreeSet::from([2]),
        BTreeSet::from([0]),
        BTreeSet::new(),
    ]);
    assert_eq!(cycle, vec![vec![0, 1, 2]]);
}
