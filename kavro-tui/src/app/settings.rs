//! The chat app's settings file: `<config>/profiles/<profile>.app.toml`,
//! beside the profile's account config, so each profile keeps its own.
//!
//! ```toml
//! # Written by kavro's chat app (Ctrl-O toggles it).
//! notifications = true   # bell / desktop notice for messages not on screen
//! ```
//!
//! A missing file means the defaults; a file that does not parse is ignored
//! for reading (the app says so once) and replaced on the next save.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::state::AppSettings;
use crate::paths::ProfilePaths;

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[serde(default = "yes")]
    notifications: bool,
}

fn yes() -> bool {
    true
}

pub fn path(paths: &ProfilePaths) -> PathBuf {
    paths.config_file.with_extension("app.toml")
}

/// The settings in `path`; the defaults (and the reason) when it cannot be read.
pub fn load(path: &Path) -> (AppSettings, Option<String>) {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
            return (AppSettings::default(), None);
        }
        Err(err) => {
            return (
                AppSettings::default(),
                Some(format!("cannot read {}: {err}", path.display())),
            );
        }
    };
    match toml::from_str::<File>(&text) {
        Ok(file) => (
            AppSettings {
                notifications: file.notifications,
            },
            None,
        ),
        Err(err) => (
            AppSettings::default(),
            Some(format!(
                "{} is not valid ({}); using the defaults",
                path.display(),
                err.message()
            )),
        ),
    }
}

pub fn save(path: &Path, settings: AppSettings) -> std::io::Result<()> {
    let file = File {
        notifications: settings.notifications,
    };
    let body = toml::to_string(&file).map_err(std::io::Error::other)?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(
        path,
        format!("# Written by kavro's chat app (Ctrl-O toggles it).\n{body}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("work.app.toml");
        assert_eq!(load(&path), (AppSettings::default(), None));
        save(
            &path,
            AppSettings {
                notifications: false,
            },
        )
        .unwrap();
        assert_eq!(
            load(&path),
            (
                AppSettings {
                    notifications: false
                },
                None
            )
        );
    }

    #[test]
    fn a_bad_file_gives_the_defaults_and_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("work.app.toml");
        std::fs::write(&path, "notifications = \"loud\"\n").unwrap();
        let (settings, problem) = load(&path);
        assert_eq!(settings, AppSettings::default());
        assert!(problem.unwrap().contains("not valid"));
        std::fs::write(&path, "sounds = true\n").unwrap();
        assert!(load(&path).1.is_some(), "unknown keys are refused");
    }
}
