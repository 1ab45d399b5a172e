//! Machine models: the profiles built into the binary and those in the
//! configuration's `profile_dirs`. Adding a model is adding a file there;
//! `check-config` and `run` read the same set.
//!
//! Invariant: a model is defined once. A file that names a built-in model,
//! or a model another file names, is refused with both places.

use crate::config::Config;
use fabflow_adapters::{Profile, ProfileError, ProfileErrors, builtin_profiles, read_dir};

/// The built-in profiles and every profile of `config.profile_dirs`; every
/// problem of every file at once.
pub fn load_profiles(config: &Config) -> Result<Vec<Profile>, ProfileErrors> {
    let mut profiles = builtin_profiles();
    let mut errors = Vec::new();
    for dir in &config.profile_dirs {
        let (found, problems) = read_dir(dir);
        errors.extend(problems);
        for profile in found {
            if let Some(first) = profiles.iter().find(|p| p.model == profile.model) {
                errors.push(ProfileError {
                    origin: profile.origin.clone(),
                    key: "model".into(),
                    message: format!(
                        "model `{}` is already defined in {}; give this one another name",
                        profile.model, first.origin
                    ),
                });
            } else {
                profiles.push(profile);
            }
        }
    }
    if errors.is_empty() {
        Ok(profiles)
    } else {
        Err(ProfileErrors(errors))
    }
}
