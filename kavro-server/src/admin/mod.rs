//! `kavro-server admin …` and `kavro-server backup`: an operator's tools,
//! working on the configured database while the relay runs.
//!
//! They never migrate: a database with no schema, or with a schema other
//! than this build's, is refused before anything is read or written (run
//! `kavro-server migrate`, or use the matching `kavro-server`). Every change
//! is recorded in the audit log ([`crate::audit::admin_action`]).

pub mod backup;
mod invites;
mod users;

use std::path::PathBuf;
use std::str::FromStr as _;
use std::sync::Arc;

use crate::clock::Clock;
use crate::config::Config;
use crate::limits::Counters as _;
use crate::limits::redis::RedisCounters;
use crate::store::ops::SchemaState;
use crate::store::{self, ConnectError, StoreError, StoreOptions, Stores, TokenGeneration};

pub use invites::NewCode;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("no database at {0}: start the relay once, or run `kavro-server migrate`")]
    NoDatabase(PathBuf),
    #[error(
        "the database has no Kavro schema: run `kavro-server migrate` first (admin commands never migrate)"
    )]
    EmptySchema,
    #[error(
        "the database schema is at version {applied}, this kavro-server needs {expected}: run `kavro-server migrate` first (admin commands never migrate)"
    )]
    OldSchema { applied: i64, expected: i64 },
    #[error(
        "the database schema is at version {applied}, newer than this kavro-server knows ({expected}): use the kavro-server that runs the relay"
    )]
    NewerSchema { applied: i64, expected: i64 },
    #[error("no account named {0:?}")]
    UnknownUser(String),
    #[error("no invite {0:?} (give the id from `admin invites list`, or the code)")]
    UnknownInvite(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The configured database, checked to have this build's schema, and the
/// shared counters (when Redis is configured) to end sessions at once.
pub struct Admin {
    stores: Stores,
    counters: Option<RedisCounters>,
    clock: Arc<dyn Clock>,
    token_ttl: std::time::Duration,
}

/// The file behind a `sqlite:` URL (`None` for other schemes).
pub(crate) fn sqlite_file(url: &str) -> Result<Option<PathBuf>, AdminError> {
    if !url.starts_with("sqlite:") {
        return Ok(None);
    }
    let options = sqlx::sqlite::SqliteConnectOptions::from_str(url)
        .map_err(|e| AdminError::Connect(ConnectError::Open(e)))?;
    Ok(Some(options.get_filename().to_path_buf()))
}

impl Admin {
    /// Opens the configured database without migrating it, and refuses it
    /// unless its schema is exactly this build's.
    pub async fn open(config: &Config, clock: Arc<dyn Clock>) -> Result<Self, AdminError> {
        config
            .validate()
            .map_err(|e| AdminError::Invalid(e.to_string()))?;
        let url = config.effective_database_url();
        if let Some(file) = sqlite_file(&url)? {
            // Opening would create an empty file; an admin command changes nothing.
            if !file.is_file() {
                return Err(AdminError::NoDatabase(file));
            }
        }
        let stores = store::connect_stores(&StoreOptions {
            url,
            read_url: None,
            max_connections: 2,
            migrate: false,
        })
        .await?;
        match stores.ops.schema_state().await? {
            SchemaState::Empty => return Err(AdminError::EmptySchema),
            SchemaState::At { applied, expected } if applied < expected => {
                return Err(AdminError::OldSchema { applied, expected });
            }
            SchemaState::At { applied, expected } if applied > expected => {
                return Err(AdminError::NewerSchema { applied, expected });
            }
            SchemaState::At { .. } => {}
        }
        // Best effort: without it, the relays' once-a-second read of the
        // database ends the sessions (crate::revocations).
        let counters = match config.redis() {
            Some(redis) => match RedisCounters::connect(&redis, &config.redis_prefix).await {
                Ok(counters) => Some(counters),
                Err(err) => {
                    tracing::warn!(error = %crate::error::error_chain(&err), "Redis unreachable: relays end the sessions within a second from the database instead");
                    None
                }
            },
            None => None,
        };
        Ok(Self {
            stores,
            counters,
            clock,
            token_ttl: config.token_ttl,
        })
    }

    /// Tells the shared counters at once that `user`'s tokens below
    /// `generation` are refused (the relays also read it from the database).
    async fn revoke_now(&self, user: kavro_proto::UserId, generation: TokenGeneration) {
        let Some(counters) = &self.counters else {
            return;
        };
        let now = self.clock.now();
        let until = crate::clock::after(now, self.token_ttl);
        if let Err(err) = counters
            .revoke_generation(user, generation, until, now)
            .await
        {
            tracing::warn!(error = %crate::error::error_chain(&err), "Redis refused the revocation: relays apply it from the database within a second");
        }
    }
}
