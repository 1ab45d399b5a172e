//! Loading profiles: every `*.toml` of a directory, or the built-in set
//! compiled into the binary; problems of all files are reported at once,
//! and a model defined twice is one of them.

use std::path::Path;

use super::{Profile, ProfileError, ProfileErrors};

/// Loads and validates every `*.toml` file in `dir` (sorted by name), reporting
/// the problems of all files at once, plus models defined twice.
pub fn load_dir(dir: impl AsRef<Path>) -> Result<Vec<Profile>, ProfileErrors> {
    let (profiles, errors) = read_dir(dir);
    if errors.is_empty() {
        Ok(profiles)
    } else {
        Err(ProfileErrors(errors))
    }
}

/// Every valid profile of `dir`'s `*.toml` files, and every problem found
/// (unreadable files, invalid ones, models defined twice), so a caller can
/// check the valid ones further and still report everything at once.
pub fn read_dir(dir: impl AsRef<Path>) -> (Vec<Profile>, Vec<ProfileError>) {
    let dir = dir.as_ref();
    let io_error = |origin: &Path, err: std::io::Error| ProfileError {
        origin: origin.display().to_string(),
        key: String::new(),
        message: err.to_string(),
    };
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(err) => return (Vec::new(), vec![io_error(dir, err)]),
    };
    let mut paths = Vec::new();
    let mut errors = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => {
                let path = entry.path();
                if path.extension().is_some_and(|ext| ext == "toml") {
                    paths.push(path);
                }
            }
            Err(err) => errors.push(io_error(dir, err)),
        }
    }
    paths.sort();
    let mut texts = Vec::new();
    for path in paths {
        match std::fs::read_to_string(&path) {
            Ok(text) => texts.push((path.display().to_string(), text)),
            Err(err) => errors.push(io_error(&path, err)),
        }
    }
    let sources: Vec<(&str, &str)> = texts
        .iter()
        .map(|(o, t)| (o.as_str(), t.as_str()))
        .collect();
    let (profiles, more) = parse_each(&sources);
    errors.extend(more);
    (profiles, errors)
}

/// The profile files compiled into the binary, as (origin, text).
/// `tests` check that this list matches adapters/profiles/ exactly.
pub const BUILTIN_SOURCES: &[(&str, &str)] = &[
    (
        "adapters/profiles/acme-dtg-200.toml",
        include_str!("../../profiles/acme-dtg-200.toml"),
    ),
    (
        "adapters/profiles/forge-fdm-3.toml",
        include_str!("../../profiles/forge-fdm-3.toml"),
    ),
    (
        "adapters/profiles/generic-json.toml",
        include_str!("../../profiles/generic-json.toml"),
    ),
    (
        "adapters/profiles/heatwave-hp-40.toml",
        include_str!("../../profiles/heatwave-hp-40.toml"),
    ),
    (
        "adapters/profiles/lumen-uv-6.toml",
        include_str!("../../profiles/lumen-uv-6.toml"),
    ),
    (
        "adapters/profiles/strata-p1.toml",
        include_str!("../../profiles/strata-p1.toml"),
    ),
];

/// Every profile of adapters/profiles, embedded at build time so an installed
/// binary works without the files.
///
/// # Panics
/// If an embedded profile is invalid: a broken invariant of this crate, which
/// its tests check.
pub fn builtin_profiles() -> Vec<Profile> {
    match parse_all(BUILTIN_SOURCES) {
        Ok(profiles) => profiles,
        Err(errors) => panic!("embedded profiles of fabflow-adapters are invalid:\n{errors}"),
    }
}

/// Parses several profiles, collecting every error and duplicate models.
fn parse_all(sources: &[(&str, &str)]) -> Result<Vec<Profile>, ProfileErrors> {
    let (profiles, errors) = parse_each(sources);
    if errors.is_empty() {
        Ok(profiles)
    } else {
        Err(ProfileErrors(errors))
    }
}

/// The valid profiles of `sources`, and every problem (duplicate models among them).
fn parse_each(sources: &[(&str, &str)]) -> (Vec<Profile>, Vec<ProfileError>) {
    let mut profiles: Vec<Profile> = Vec::new();
    let mut errors = Vec::new();
    for (origin, text) in sources {
        match Profile::from_toml_str(text, origin) {
            Ok(profile) => {
                if let Some(first) = profiles.iter().find(|p| p.model == profile.model) {
                    errors.push(ProfileError {
                        origin: profile.origin.clone(),
                        key: "model".to_string(),
                        message: format!(
                            "model `{}` is already defined in {}",
                            profile.model, first.origin
                        ),
                    });
                } else {
                    profiles.push(profile);
                }
            }
            Err(more) => errors.extend(more.0),
        }
    }
    (profiles, errors)
}
