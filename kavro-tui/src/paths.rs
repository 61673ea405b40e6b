//! Where Kavro keeps its files: the config and data directories (platform
//! defaults from `directories`, overridden by `KAVRO_CONFIG_DIR` and
//! `KAVRO_DATA_DIR`) and the per-profile paths inside them.
//!
//! ```text
//! <config>/profiles/<profile>.toml          the profile's account (config.rs)
//! <data>/profiles/<profile>/                mode 0700
//!     history.sqlite3                       contacts, messages, outbox (history.rs)
//!     secrets.json                          mode 0600, file key store only (keystore/file.rs)
//! ```

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// Overrides the config directory.
pub const ENV_CONFIG_DIR: &str = "KAVRO_CONFIG_DIR";
/// Overrides the data directory.
pub const ENV_DATA_DIR: &str = "KAVRO_DATA_DIR";

/// Why the directories could not be determined.
#[derive(Debug, thiserror::Error)]
pub enum PathsError {
    #[error(
        "cannot find a home directory for Kavro's files; set {ENV_CONFIG_DIR} and {ENV_DATA_DIR}"
    )]
    NoHome,
    #[error(
        "invalid profile name {0:?}: use 1 to 64 characters of A-Z, a-z, 0-9, '_', '-' and '.', not starting with '.'"
    )]
    InvalidProfile(String),
}

/// The two roots: configuration (small, editable) and data (history, secrets).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dirs {
    config: PathBuf,
    data: PathBuf,
}

impl Dirs {
    pub fn new(config: impl Into<PathBuf>, data: impl Into<PathBuf>) -> Self {
        Self {
            config: config.into(),
            data: data.into(),
        }
    }

    /// The platform defaults (`~/.config/kavro`, `~/.local/share/kavro` on
    /// Linux), each replaced by its environment variable when set.
    pub fn from_env() -> Result<Self, PathsError> {
        let from_var = |name: &str| {
            std::env::var_os(name)
                .filter(|value| !value.is_empty())
                .map(PathBuf::from)
        };
        let config = from_var(ENV_CONFIG_DIR);
        let data = from_var(ENV_DATA_DIR);
        if let (Some(config), Some(data)) = (&config, &data) {
            return Ok(Self::new(config, data));
        }
        let project = directories::ProjectDirs::from("", "", "kavro").ok_or(PathsError::NoHome)?;
        Ok(Self {
            config: config.unwrap_or_else(|| project.config_dir().to_path_buf()),
            data: data.unwrap_or_else(|| project.data_dir().to_path_buf()),
        })
    }

    /// The paths of one profile.
    pub fn profile(&self, name: &ProfileName) -> ProfilePaths {
        ProfilePaths {
            name: name.clone(),
            config_file: self
                .config
                .join("profiles")
                .join(format!("{}.toml", name.0)),
            data_dir: self.data.join("profiles").join(&name.0),
        }
    }
}

/// A validated profile name: it becomes a file and a directory name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ProfileName(String);

impl ProfileName {
    /// The profile used when none is named.
    pub const DEFAULT: &'static str = "default";

    pub fn new(name: &str) -> Result<Self, PathsError> {
        let valid = (1..=64).contains(&name.len())
            && !name.starts_with('.')
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if valid {
            Ok(Self(name.to_owned()))
        } else {
            Err(PathsError::InvalidProfile(name.to_owned()))
        }
    }
}

impl fmt::Display for ProfileName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The files of one profile.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfilePaths {
    pub name: ProfileName,
    /// The TOML config of the profile's account.
    pub config_file: PathBuf,
    /// Private (0700) directory for the history and, with the file key store, secrets.
    pub data_dir: PathBuf,
}

impl ProfilePaths {
    pub fn history_db(&self) -> PathBuf {
        self.data_dir.join("history.sqlite3")
    }

    pub fn secrets_file(&self) -> PathBuf {
        self.data_dir.join("secrets.json")
    }
}

/// Creates `dir` (and its parents) and makes `dir` itself private to the
/// user (0700 on Unix), tightening it if it already existed.
pub fn ensure_private_dir(dir: &Path) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
        if mode != 0o700 {
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_names() {
        for good in ["default", "work", "a", "alice-2", "x.y_z", &"p".repeat(64)] {
            assert!(ProfileName::new(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".",
            "..",
            ".hidden",
            "a/b",
            "a\\b",
            "ä",
            &"p".repeat(65),
            "a b",
        ] {
            assert!(ProfileName::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn layout() {
        let dirs = Dirs::new("/c", "/d");
        let paths = dirs.profile(&ProfileName::new("work").unwrap());
        assert_eq!(paths.config_file, Path::new("/c/profiles/work.toml"));
        assert_eq!(paths.data_dir, Path::new("/d/profiles/work"));
        assert_eq!(
            paths.history_db(),
            Path::new("/d/profiles/work/history.sqlite3")
        );
        assert_eq!(
            paths.secrets_file(),
            Path::new("/d/profiles/work/secrets.json")
        );
    }

    #[cfg(unix)]
    #[test]
    fn private_dir_is_0700() {
        use std::os::unix::fs::PermissionsExt as _;
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("a/b");
        ensure_private_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        ensure_private_dir(&dir).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
    }
}
