//! Per-contact settings kept with the history: whether legacy
//! (unauthenticated) messages are shown or refused.

use std::fmt;
use std::str::FromStr;

use sqlx::Row as _;

use super::{History, HistoryError};

/// What to do with a legacy message from someone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LegacyPolicy {
    /// Show it, marked as legacy (unauthenticated). The default.
    Allow,
    /// Keep its ciphertext, drop its text, show that it was refused.
    Refuse,
}

impl LegacyPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Refuse => "refuse",
        }
    }
}

impl fmt::Display for LegacyPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for LegacyPolicy {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "allow" => Ok(Self::Allow),
            "refuse" => Ok(Self::Refuse),
            other => Err(format!("{other:?} is not allow or refuse")),
        }
    }
}

/// The row that holds the default for everyone without a setting.
const DEFAULT_ROW: &str = "*";

impl History {
    /// The policy for legacy messages from `username` (`None`: from an
    /// account we know no name for): its own setting, else the default,
    /// else allow.
    pub async fn legacy_policy(
        &self,
        username: Option<&str>,
    ) -> Result<LegacyPolicy, HistoryError> {
        let name = username.map(str::to_ascii_lowercase);
        let row = sqlx::query(
            "SELECT policy FROM legacy_policy WHERE username_norm IN ($1, $2)
             ORDER BY username_norm = $2 LIMIT 1",
        )
        .bind(name.as_deref().unwrap_or(DEFAULT_ROW))
        .bind(DEFAULT_ROW)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            None => Ok(LegacyPolicy::Allow),
            Some(row) => row
                .try_get::<String, _>("policy")?
                .parse()
                .map_err(HistoryError::Corrupt),
        }
    }

    /// Sets the policy for `username`, or the default with `None`.
    pub async fn set_legacy_policy(
        &self,
        username: Option<&str>,
        policy: LegacyPolicy,
    ) -> Result<(), HistoryError> {
        let name = username.map_or_else(|| DEFAULT_ROW.to_owned(), str::to_ascii_lowercase);
        sqlx::query(
            "INSERT INTO legacy_policy (username_norm, policy) VALUES ($1, $2)
             ON CONFLICT (username_norm) DO UPDATE SET policy = excluded.policy",
        )
        .bind(name)
        .bind(policy.as_str())
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Every setting: `(None, default)` first if set, then by name.
    pub async fn legacy_policies(
        &self,
    ) -> Result<Vec<(Option<String>, LegacyPolicy)>, HistoryError> {
        let rows = sqlx::query(
            "SELECT username_norm, policy FROM legacy_policy
             ORDER BY username_norm <> '*', username_norm",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let name: String = row.try_get("username_norm")?;
                let policy = row
                    .try_get::<String, _>("policy")?
                    .parse()
                    .map_err(HistoryError::Corrupt)?;
                Ok(((name != DEFAULT_ROW).then_some(name), policy))
            })
            .collect()
    }
}
