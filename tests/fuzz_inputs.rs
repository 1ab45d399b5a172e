//! Inputs from outside never crash the daemon: property-driven fuzzing of
//! every parser that reads text or JSON someone else wrote (configuration,
//! machine profiles, order JSON, the forecast CSV, routing instances and
//! OSRM tables) and of what machines send (Modbus registers and MQTT
//! reports, decoded through every built-in profile). Each target gets arbitrary text and mutations of a valid
//! file (bytes replaced, inserted, deleted; lines duplicated and dropped),
//! and must answer Ok or an error, never panic.
//!
//! cargo-fuzz needs a nightly toolchain, which this project does not
//! assume; proptest runs on stable and keeps every failure it finds in
//! `tests/fuzz_inputs.proptest-regressions` (commit it), replayed first on
//! every run.
//! The case count is bounded for CI (`FABFLOW_FUZZ_CASES`, default 300 per
//! target); raise it for a longer hunt:
//! `FABFLOW_FUZZ_CASES=100000 cargo test --release --test fuzz_inputs`.

use proptest::prelude::*;
use proptest::test_runner::Config as RunnerConfig;
use serde_json::Value;

fn cases() -> u32 {
    std::env::var("FABFLOW_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300)
}

fn runner() -> RunnerConfig {
    RunnerConfig {
        cases: cases(),
        ..RunnerConfig::default()
    }
}

/// One edit of a text.
#[derive(Debug, Clone)]
enum Edit {
    Replace(usize, char),
    Insert(usize, String),
    Delete(usize, usize),
    DuplicateLine(usize),
    DropLine(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    // Characters parsers care about, and some they should not.
    let interesting = prop_oneof![
        Just('"'),
        Just('\''),
        Just('='),
        Just('['),
        Just(']'),
        Just('{'),
        Just('}'),
        Just(','),
        Just('\n'),
        Just('#'),
        Just('-'),
        Just('.'),
        Just('0'),
        Just('9'),
        Just('\u{0}'),
        Just('\u{202E}'),
        Just('é'),
        any::<char>(),
    ];
    prop_oneof![
        (any::<usize>(), interesting).prop_map(|(at, c)| Edit::Replace(at, c)),
        (
            any::<usize>(),
            prop_oneof![
                Just("-1".to_string()),
                Just("1e309".to_string()),
                Just("NaN".to_string()),
                Just("99999999999999999999".to_string()),
                Just("\"\"".to_string()),
                Just("[[".to_string()),
                ".{0,12}",
            ]
        )
            .prop_map(|(at, s)| Edit::Insert(at, s)),
        (any::<usize>(), 1usize..40).prop_map(|(at, n)| Edit::Delete(at, n)),
        any::<usize>().prop_map(Edit::DuplicateLine),
        any::<usize>().prop_map(Edit::DropLine),
    ]
}

/// `text` with `edits` applied (positions wrap around; char boundaries kept).
fn mutate(text: &str, edits: &[Edit]) -> String {
    let mut chars: Vec<char> = text.chars().collect();
    for edit in edits {
        let len = chars.len().max(1);
        match edit {
            Edit::Replace(at, c) => {
                if let Some(slot) = chars.get_mut(at % len) {
                    *slot = *c;
                }
            }
            Edit::Insert(at, s) => {
                let at = at % (chars.len() + 1);
                chars.splice(at..at, s.chars());
            }
            Edit::Delete(at, n) => {
                let at = at % len;
                let end = (at + n).min(chars.len());
                if at < end {
                    chars.drain(at..end);
                }
            }
            Edit::DuplicateLine(at) | Edit::DropLine(at) => {
                let text: String = chars.iter().collect();
                let mut lines: Vec<&str> = text.split('\n').collect();
                let at = at % lines.len().max(1);
                if matches!(edit, Edit::DuplicateLine(_)) {
                    if let Some(line) = lines.get(at).copied() {
                        lines.insert(at, line);
                    }
                } else if at < lines.len() {
                    lines.remove(at);
                }
                chars = lines.join("\n").chars().collect();
            }
        }
    }
    chars.into_iter().collect()
}

fn mutated(base: &'static str) -> impl Strategy<Value = String> {
    prop::collection::vec(edit(), 1..8).prop_map(move |edits| mutate(base, &edits))
}

/// Arbitrary text, or a mutation of `base`.
fn text_near(base: &'static str) -> impl Strategy<Value = String> {
    prop_oneof![1 => ".{0,200}", 4 => mutated(base)]
}

/// Arbitrary JSON values, nested a few levels.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,30}".prop_map(Value::String),
        prop_oneof![
            Just("tee-black-m"),
            Just("mug-white"),
            Just(""),
            Just("\u{202E}x")
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("external_ref".to_string()),
                    Just("customer".to_string()),
                    Just("name".to_string()),
                    Just("lat".to_string()),
                    Just("lon".to_string()),
                    Just("lines".to_string()),
                    Just("sku".to_string()),
                    Just("quantity".to_string()),
                    Just("deadline".to_string()),
                    "[a-z_]{1,8}",
                ],
                inner,
                0..6
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

const ORDER: &str = r#"{"external_ref": "r-1", "customer": {"name": "Ada", "lat": 52.52, "lon": 13.40},
 "lines": [{"sku": "tee-black-m", "quantity": 2}, {"sku": "mug-white", "quantity": 1}]}"#;

const IMPORT_CSV: &str = "external_ref,customer_name,lat,lon,sku,quantity\na,Ada,52.52,13.40,tee-black-m,1\na,Ada,52.52,13.40,mug-white,2\nb,Bob,52.50,13.35,tee-black-m,1\n";

const FORECAST_CSV: &str = "unique_id,ds,y\ntee,2026-01-05,3\ntee,2026-01-12,0\ntee,2026-01-19,5\nmug,2026-01-05,1\nmug,2026-01-06,0\n";

const SOLOMON: &str = "C101\n\nVEHICLE\nNUMBER     CAPACITY\n  25         200\n\nCUSTOMER\nCUST NO.  XCOORD.   YCOORD.    DEMAND   READY TIME  DUE DATE   SERVICE   TIME\n\n    0      40         50          0          0       1236          0\n    1      45         68         10        912        967         90\n    2      45         70         30        825        870         90\n";

const LILIM: &str = "25\t200\t1\n0\t40\t50\t0\t0\t1236\t0\t0\t0\n1\t45\t68\t-10\t912\t967\t90\t2\t0\n2\t45\t70\t10\t825\t870\t90\t0\t1\n";

const OSRM: &str =
    r#"{"code": "Ok", "durations": [[0, 120.5], [118.0, 0]], "distances": [[0, 900], [880, 0]]}"#;

proptest! {
    #![proptest_config(runner())]

    #[test]
    fn configuration_text_never_panics(text in text_near(fabflow::config::DEMO_TOML)) {
        if let Ok(config) = fabflow::config::Config::parse(&text, "fuzz.toml") {
            let _ = config.problems();
            let _ = config.catalog();
            let _ = config.zones();
            // And the network the daemon builds from it (factories, zones,
            // machines against their models, routes against processes).
            let _ = fabflow::runtime::Network::new(
                &config,
                &fabflow_adapters::builtin_profiles(),
                "fuzz.toml",
            );
        }
    }

    #[test]
    fn machine_profiles_never_panic(
        which in 0..fabflow_adapters::profile::BUILTIN_SOURCES.len(),
        edits in prop::collection::vec(edit(), 1..8),
        arbitrary in ".{0,200}",
        use_arbitrary in prop::bool::weighted(0.2),
    ) {
        let (origin, source) = fabflow_adapters::profile::BUILTIN_SOURCES[which];
        let text = if use_arbitrary { arbitrary } else { mutate(source, &edits) };
        let _ = fabflow_adapters::Profile::from_toml_str(&text, origin);
    }

    #[test]
    fn modbus_registers_never_panic(
        seed_words in prop::collection::vec(any::<u16>(), 0..64),
        lengths in prop::collection::vec(0usize..130, 1..8),
        extremes in prop::collection::vec(prop_oneof![Just(0u16), Just(u16::MAX), Just(0x7FFF), Just(0x8000), Just(0x7FC0)], 0..16),
    ) {
        // Any words, in blocks of any length (short, long, empty), through
        // every built-in Modbus profile: a status or an error, never a panic.
        let mut pool: Vec<u16> = seed_words.iter().chain(&extremes).copied().collect();
        if pool.is_empty() {
            pool.push(0);
        }
        for profile in fabflow_adapters::builtin_profiles().iter().filter(|p| p.mqtt.is_none()) {
            let mut block = 0usize;
            let mut read = |_kind, _start, count: u16| {
                let len = match lengths.get(block % lengths.len()) {
                    Some(&len) if len < 125 => len,
                    _ => usize::from(count),
                };
                block += 1;
                (0..len).map(|i| pool[(i + block) % pool.len()]).collect()
            };
            if let Ok(status) = fabflow_adapters::status_from_reads(profile, &mut read) {
                prop_assert!(status.progress_percent.is_none_or(f64::is_finite));
            }
        }
    }

    #[test]
    fn mqtt_reports_never_panic(value in json(), text in ".{0,200}", raw in prop::collection::vec(any::<u8>(), 0..200)) {
        // Arbitrary JSON, text and bytes through every MQTT profile's report reader.
        for profile in fabflow_adapters::builtin_profiles() {
            let Some(spec) = profile.mqtt.as_ref() else { continue };
            let json = serde_json::to_vec(&value).unwrap_or_default();
            for payload in [json.as_slice(), text.as_bytes(), raw.as_slice()] {
                let _ = fabflow_adapters::mqtt::read_report(spec, payload);
            }
        }
    }

    #[test]
    fn mqtt_reports_near_a_valid_one_never_panic(edits in prop::collection::vec(edit(), 1..8)) {
        const REPORT: &str = r#"{"print":{"gcode_state":"RUNNING","mc_percent":42,"job_id":"17","sequence_id":"9","plates_done":1,"plates_failed":0,"print_error":0}}"#;
        let text = mutate(REPORT, &edits);
        for profile in fabflow_adapters::builtin_profiles() {
            if let Some(spec) = profile.mqtt.as_ref() {
                let _ = fabflow_adapters::mqtt::read_report(spec, text.as_bytes());
            }
        }
    }

    #[test]
    fn order_json_never_panics(value in json()) {
        let _ = fabflow::api::order_json::read_order(&value);
        let _ = fabflow::api::order_json::canonical_hash(&value);
    }

    #[test]
    fn order_text_near_a_valid_order_never_panics(
        text in mutated(ORDER),
        now_ms in any::<i64>(),
    ) {
        if let Ok(value) = serde_json::from_str::<Value>(&text)
            && let Ok(order) = fabflow::api::order_json::read_order(&value)
        {
            // An order that reads is checked against the demo's catalog
            // and zones at any moment, as intake does.
            let config = fabflow::config::Config::demo().expect("demo config");
            let _ = fabflow::domain::intake::validate(
                &order,
                &config.catalog(),
                &config.zones(),
                &config.intake.rules(),
                now_ms,
            );
        }
    }

    #[test]
    fn ndjson_imports_never_panic(
        lines in prop::collection::vec(prop_oneof![mutated(ORDER), ".{0,80}"], 0..6),
    ) {
        let _ = fabflow::api::orders::parse_import("application/x-ndjson", &lines.join("\n"));
    }

    #[test]
    fn csv_imports_never_panic(text in text_near(IMPORT_CSV)) {
        let _ = fabflow::api::orders::parse_import("text/csv", &text);
    }

    #[test]
    fn forecast_csv_never_panics(text in text_near(FORECAST_CSV), weekly in any::<bool>()) {
        use fabflow::forecast::Frequency;
        let frequency = weekly.then_some(Frequency::Weekly);
        if let Ok(parsed) = fabflow::forecast::csv::parse(&text, frequency) {
            let _ = fabflow::forecast::forecast_all(
                &parsed.series,
                3,
                fabflow::forecast::ModelChoice::Auto,
                fabflow::forecast::SelectionRule::default(),
            );
        }
    }

    #[test]
    fn routing_files_never_panic(
        solomon in text_near(SOLOMON),
        lilim in text_near(LILIM),
        osrm in text_near(OSRM),
    ) {
        let _ = fabflow::plan::vrp::parse_solomon(&solomon);
        let _ = fabflow::plan::vrp::parse_lilim(&lilim);
        let _ = fabflow::plan::vrp::parse_osrm_table(&osrm);
    }
}

#[test]
fn the_mutator_keeps_text_valid_and_changes_it() {
    let edits = [
        Edit::Replace(3, 'é'),
        Edit::Insert(1_000, "x".into()),
        Edit::Delete(0, 2),
        Edit::DuplicateLine(1),
        Edit::DropLine(7),
    ];
    let out = mutate("ab\ncd\nef", &edits);
    assert_ne!(out, "ab\ncd\nef");
    assert!(out.contains('é'), "{out}");
}
