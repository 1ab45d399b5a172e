//! docs/events/ holds a JSON Schema (draft 2020-12) and an example of every
//! event kind, generated from the event types (`domain::event_schema`). This
//! test fails when a file is missing, stale or left over; run it with
//! `FABFLOW_BLESS=1` to write them again. Every example validates against
//! its kind's schema, and broken copies of an example do not.

use fabflow::domain::event_schema::{kind_examples, kind_schemas};
use serde_json::Value;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn dir(what: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("docs/events")
        .join(what)
}

fn pretty(value: &Value) -> String {
    let mut text = serde_json::to_string_pretty(value).expect("serialise");
    text.push('\n');
    text
}

fn check_folder(what: &str, wanted: &[(String, String)]) -> Vec<String> {
    let folder = dir(what);
    let bless = std::env::var_os("FABFLOW_BLESS").is_some();
    let mut problems = Vec::new();
    if bless {
        std::fs::create_dir_all(&folder).expect("create folder");
    }
    let names: BTreeSet<String> = wanted.iter().map(|(name, _)| name.clone()).collect();
    for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if !names.contains(&name) {
            if bless {
                std::fs::remove_file(entry.path()).expect("remove stale file");
            } else {
                problems.push(format!("docs/events/{what}/{name}: no such event kind"));
            }
        }
    }
    for (name, text) in wanted {
        let path = folder.join(name);
        if bless {
            std::fs::write(&path, text).expect("write");
        } else if std::fs::read_to_string(&path).ok().as_deref() != Some(text.as_str()) {
            problems.push(format!("docs/events/{what}/{name}: missing or stale"));
        }
    }
    problems
}

#[test]
fn schema_and_example_files_match_the_event_types() {
    let schemas: Vec<(String, String)> = kind_schemas()
        .iter()
        .map(|(kind, schema)| (format!("{kind}.schema.json"), pretty(schema)))
        .collect();
    let examples: Vec<(String, String)> = kind_examples()
        .iter()
        .map(|(kind, example)| (format!("{kind}.json"), pretty(example)))
        .collect();
    let mut problems = check_folder("schemas", &schemas);
    problems.extend(check_folder("examples", &examples));
    assert!(
        problems.is_empty(),
        "{}\n(regenerate with FABFLOW_BLESS=1 cargo test --test event_schemas)",
        problems.join("\n")
    );
}

#[test]
fn every_example_is_valid_and_broken_ones_are_not() {
    let schemas = kind_schemas();
    for (kind, example) in kind_examples() {
        let validator = jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&schemas[kind])
            .unwrap_or_else(|err| panic!("{kind}: schema does not compile: {err}"));
        let errors: Vec<String> = validator
            .iter_errors(&example)
            .map(|e| e.to_string())
            .collect();
        assert!(errors.is_empty(), "{kind}: {errors:?}");
        // Another kind's name, a missing id, a data field of the wrong type.
        let mut wrong_kind = example.clone();
        wrong_kind["kind"] = Value::from("order.teleported");
        assert!(!validator.is_valid(&wrong_kind), "{kind}");
        let mut no_id = example.clone();
        no_id.as_object_mut().expect("object").remove("id");
        assert!(!validator.is_valid(&no_id), "{kind}");
        let mut bad_data = example.clone();
        bad_data["data"]["kind"] = Value::from(17);
        assert!(!validator.is_valid(&bad_data), "{kind}");
    }
}
