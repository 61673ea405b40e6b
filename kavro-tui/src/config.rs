//! The per-profile configuration: which relay a profile talks to, which
//! account it is, and where that account's secrets live. Stored as TOML in
//! `<config>/profiles/<profile>.toml`; absent until the first `register` or
//! `login`.
//!
//! ```toml
//! # Written by kavro. One account per profile.
//! server = "https://relay.example.org"
//! username = "alice"
//! user_id = 7
//! key_store = "keyring"        # or "file"
//! public_key = "8520f009…"     # 64 hex digits: the identity key this device published
//! ```

use std::fmt;
use std::io::Write as _;
use std::path::Path;

use kavro_proto::UserId;
use kavro_proto::crypto::IdentityPublic;
use serde::{Deserialize, Serialize};

use crate::keystore::KeyStoreKind;
use crate::paths::{Dirs, PathsError, ProfileName, ProfilePaths};

/// The relay used when neither `--server`, `KAVRO_SERVER` nor the profile names one.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:8000";
/// Environment variable naming the relay.
pub const ENV_SERVER: &str = "KAVRO_SERVER";
/// Environment variable naming the profile.
pub const ENV_PROFILE: &str = "KAVRO_PROFILE";

/// Why the configuration could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error(transparent)]
    Paths(#[from] PathsError),
    #[error(
        "invalid server URL {url:?}: {reason} (expected something like https://relay.example.org)"
    )]
    InvalidServer { url: String, reason: String },
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid Kavro profile: {reason}; fix or remove it")]
    Invalid { path: String, reason: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// A relay's base URL: `http` or `https`, without a trailing slash.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ServerUrl(String);

impl ServerUrl {
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        let invalid = |reason: &str| ConfigError::InvalidServer {
            url: text.to_owned(),
            reason: reason.to_owned(),
        };
        let url = reqwest::Url::parse(text.trim()).map_err(|e| invalid(&e.to_string()))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid("the scheme must be http or https"));
        }
        if url.host_str().is_none() {
            return Err(invalid("the URL has no host"));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(invalid("the URL must not have a query or a fragment"));
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("the URL must not contain credentials"));
        }
        Ok(Self(url.as_str().trim_end_matches('/').to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the token and password would cross the network unencrypted:
    /// plain `http` to anything but a loopback address.
    pub fn is_cleartext_remote(&self) -> bool {
        let Ok(url) = reqwest::Url::parse(&self.0) else {
            return false;
        };
        if url.scheme() != "http" {
            return false;
        }
        let host = url
            .host_str()
            .unwrap_or_default()
            .trim_start_matches('[')
            .trim_end_matches(']');
        if host.eq_ignore_ascii_case("localhost") {
            return false;
        }
        host.parse::<std::net::IpAddr>()
            .map_or(true, |ip| !ip.is_loopback())
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for ServerUrl {
    type Error = ConfigError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<ServerUrl> for String {
    fn from(value: ServerUrl) -> Self {
        value.0
    }
}

/// The account a profile is set up for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountConfig {
    pub server: ServerUrl,
    /// As the relay spells it.
    pub username: String,
    pub user_id: UserId,
    /// Where the identity secret and token are kept.
    pub key_store: KeyStoreKind,
    /// This device's identity key, as published.
    pub public_key: IdentityPublic,
}

/// A profile: its paths, its account (once registered or logged in), and the
/// relay the current command talks to.
#[derive(Debug, Clone)]
pub struct Profile {
    paths: ProfilePaths,
    account: Option<AccountConfig>,
    server: ServerUrl,
}

impl Profile {
    /// Loads profile `name`. `server_override` (from `--server` or
    /// `KAVRO_SERVER`) wins over the profile's server, which wins over
    /// [`DEFAULT_SERVER`].
    pub fn load(
        dirs: &Dirs,
        name: &str,
        server_override: Option<&str>,
    ) -> Result<Self, ConfigError> {
        let name = ProfileName::new(name)?;
        let paths = dirs.profile(&name);
        let account = read_account(&paths.config_file)?;
        let server = match (server_override, &account) {
            (Some(url), _) => ServerUrl::parse(url)?,
            (None, Some(account)) => account.server.clone(),
            (None, None) => ServerUrl::parse(DEFAULT_SERVER)?,
        };
        Ok(Self {
            paths,
            account,
            server,
        })
    }

    pub fn name(&self) -> &ProfileName {
        &self.paths.name
    }

    pub fn paths(&self) -> &ProfilePaths {
        &self.paths
    }

    /// The relay this command talks to.
    pub fn server(&self) -> &ServerUrl {
        &self.server
    }

    /// The profile's account, whatever its server.
    pub fn account(&self) -> Option<&AccountConfig> {
        self.account.as_ref()
    }

    /// Records the account (after register or login) and writes the file.
    pub fn save_account(&mut self, account: AccountConfig) -> Result<(), ConfigError> {
        write_account(&self.paths.config_file, &account)?;
        self.server = account.server.clone();
        self.account = Some(account);
        Ok(())
    }
}

impl Profile {
    /// Forgets the account (after it was deleted): removes the profile's
    /// config file, so the profile can be used for another account.
    pub fn forget_account(&mut self) -> Result<(), ConfigError> {
        match std::fs::remove_file(&self.paths.config_file) {
            Err(source) if source.kind() != std::io::ErrorKind::NotFound => {
                return Err(ConfigError::Write {
                    path: self.paths.config_file.display().to_string(),
                    source,
                });
            }
            _ => {}
        }
        self.account = None;
        Ok(())
    }
}

fn read_account(path: &Path) -> Result<Option<AccountConfig>, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(ConfigError::Read {
                path: path.display().to_string(),
                source,
            });
        }
    };
    toml::from_str(&text)
        .map(Some)
        .map_err(|e| ConfigError::Invalid {
            path: path.display().to_string(),
            reason: e.message().to_owned(),
        })
}

fn write_account(path: &Path, account: &AccountConfig) -> Result<(), ConfigError> {
    let write_err = |source| ConfigError::Write {
        path: path.display().to_string(),
        source,
    };
    let body = toml::to_string(account).map_err(|e| ConfigError::Invalid {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let text = format!("# Written by kavro. One account per profile.\n{body}");
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(dir).map_err(write_err)?;
    // Write a temporary file and rename it over the old one, so a crash never
    // leaves a half-written profile behind.
    let tmp = path.with_extension("toml.tmp");
    let mut file = std::fs::File::create(&tmp).map_err(write_err)?;
    file.write_all(text.as_bytes()).map_err(write_err)?;
    file.sync_all().map_err(write_err)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(write_err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_normalised() {
        let url = ServerUrl::parse("http://127.0.0.1:8000/").unwrap();
        assert_eq!(url.as_str(), "http://127.0.0.1:8000");
        let url = ServerUrl::parse(" https://relay.example.org/kavro/ ").unwrap();
        assert_eq!(url.as_str(), "https://relay.example.org/kavro");
        for bad in [
            "",
            "relay.example.org",
            "ftp://x",
            "http://x/?a=1",
            "http://u:p@x",
        ] {
            assert!(ServerUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cleartext_detection() {
        let remote = |u: &str| ServerUrl::parse(u).unwrap().is_cleartext_remote();
        assert!(remote("http://relay.example.org"));
        assert!(remote("http://10.0.0.1:8000"));
        assert!(!remote("http://127.0.0.1:8000"));
        assert!(!remote("http://localhost:8000"));
        assert!(!remote("http://[::1]:8000"));
        assert!(!remote("https://relay.example.org"));
    }

    fn account() -> AccountConfig {
        AccountConfig {
            server: ServerUrl::parse("http://127.0.0.1:9").unwrap(),
            username: "Alice".into(),
            user_id: UserId(7),
            key_store: KeyStoreKind::File,
            public_key: IdentityPublic::from_bytes([0xab; 32]),
        }
    }

    #[test]
    fn profile_round_trip_and_server_precedence() {
        let root = tempfile::tempdir().unwrap();
        let dirs = Dirs::new(root.path().join("c"), root.path().join("d"));
        let mut profile = Profile::load(&dirs, "default", None).unwrap();
        assert!(profile.account().is_none());
        assert_eq!(profile.server().as_str(), DEFAULT_SERVER);
        profile.save_account(account()).unwrap();

        let text = std::fs::read_to_string(&profile.paths().config_file).unwrap();
        assert!(text.contains("username = \"Alice\""), "{text}");
        assert!(text.contains("key_store = \"file\""), "{text}");
        assert!(text.contains(&"ab".repeat(32)), "{text}");

        let again = Profile::load(&dirs, "default", None).unwrap();
        assert_eq!(again.account(), Some(&account()));
        assert_eq!(again.server().as_str(), "http://127.0.0.1:9");
        let other = Profile::load(&dirs, "default", Some("http://127.0.0.1:10/")).unwrap();
        assert_eq!(other.server().as_str(), "http://127.0.0.1:10");
        assert!(Profile::load(&dirs, "../x", None).is_err());
    }

    #[test]
    fn a_broken_file_is_reported_not_ignored() {
        let root = tempfile::tempdir().unwrap();
        let dirs = Dirs::new(root.path().join("c"), root.path().join("d"));
        let path = dirs
            .profile(&ProfileName::new("default").unwrap())
            .config_file;
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "server = 3").unwrap();
        let err = Profile::load(&dirs, "default", None).unwrap_err();
        assert!(
            err.to_string().contains("not a valid Kavro profile"),
            "{err}"
        );
    }
}
