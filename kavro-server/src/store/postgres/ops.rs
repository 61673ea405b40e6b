//! The operator's operations on PostgreSQL (see [`crate::store::ops`]).
//! Everything reads the primary: an operator acts on what they just saw.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kavro_proto::UserId;
use sqlx::Row;
use sqlx::postgres::PgRow;

use super::{MIGRATOR, PgStore, unsigned};
use crate::store::ops::{
    AccountSummary, InviteHash, InviteId, InviteRecord, NewInvite, OpsStore, SchemaState,
    schema_state,
};
use crate::store::{StoreError, TokenGeneration};

/// The accounts query (live accounts with their counts), ending in `$tail`:
/// one literal per use, as sqlx takes only static SQL.
macro_rules! accounts_query {
    ($tail:literal) => {
        concat!(
            "SELECT u.id, u.username, u.created_at, u.last_seen_at, u.disabled_at,
       (SELECT count(*) FROM devices d WHERE d.user_id = u.id AND d.retired_at IS NULL) AS keys,
       (SELECT count(*) FROM v2_devices v WHERE v.user_id = u.id AND v.revoked_at IS NULL)
         AS v2_devices,
       coalesce((SELECT pending FROM inbox_counts c WHERE c.recipient_id = u.id), 0) AS pending
     FROM users u WHERE u.deleted_at IS NULL",
            $tail
        )
    };
}

fn account_row(row: &PgRow) -> Result<AccountSummary, sqlx::Error> {
    Ok(AccountSummary {
        id: UserId(row.try_get("id")?),
        username: row.try_get("username")?,
        created_at: row.try_get("created_at")?,
        last_seen_at: row.try_get("last_seen_at")?,
        disabled_at: row.try_get("disabled_at")?,
        keys: unsigned(row.try_get("keys")?),
        devices: unsigned(row.try_get("v2_devices")?),
        pending: unsigned(row.try_get("pending")?),
    })
}

fn invite_row(row: &PgRow) -> Result<InviteRecord, sqlx::Error> {
    Ok(InviteRecord {
        id: InviteId(row.try_get("id")?),
        max_uses: u32::try_from(row.try_get::<i32, _>("max_uses")?).unwrap_or_default(),
        uses: u32::try_from(row.try_get::<i32, _>("uses")?).unwrap_or_default(),
        created_at: row.try_get("created_at")?,
        expires_at: row.try_get("expires_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

#[async_trait]
impl OpsStore for PgStore {
    async fn schema_state(&self) -> Result<SchemaState, StoreError> {
        let has_table: bool =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                .fetch_one(&self.primary)
                .await?;
        let applied: Option<i64> = if has_table {
            sqlx::query_scalar("SELECT max(version) FROM _sqlx_migrations WHERE success")
                .fetch_one(&self.primary)
                .await?
        } else {
            None
        };
        Ok(schema_state(applied, &MIGRATOR))
    }

    async fn accounts(&self) -> Result<Vec<AccountSummary>, StoreError> {
        let rows = sqlx::query(accounts_query!(" ORDER BY u.id"))
            .fetch_all(&self.primary)
            .await?;
        rows.iter()
            .map(account_row)
            .collect::<Result<_, _>>()
            .map_err(StoreError::from)
    }

    async fn account(&self, normalized: &str) -> Result<Option<AccountSummary>, StoreError> {
        let row = sqlx::query(accounts_query!(" AND u.username_normalized = $1"))
            .bind(normalized)
            .fetch_optional(&self.primary)
            .await?;
        Ok(row.as_ref().map(account_row).transpose()?)
    }

    async fn disable_account(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<TokenGeneration, StoreError> {
        let generation: Option<i64> = sqlx::query_scalar(
            "UPDATE users SET disabled_at = coalesce(disabled_at, $2),
                              token_generation = token_generation + 1, tokens_revoked_at = $2
             WHERE id = $1 AND deleted_at IS NULL RETURNING token_generation",
        )
        .bind(user.0)
        .bind(now)
        .fetch_optional(&self.primary)
        .await?;
        generation
            .map(|g| TokenGeneration(unsigned(g)))
            .ok_or(StoreError::NotFound)
    }

    async fn enable_account(&self, user: UserId) -> Result<bool, StoreError> {
        let changed = sqlx::query(
            "UPDATE users SET disabled_at = NULL
             WHERE id = $1 AND deleted_at IS NULL AND disabled_at IS NOT NULL",
        )
        .bind(user.0)
        .execute(&self.primary)
        .await?
        .rows_affected();
        Ok(changed == 1)
    }

    async fn is_disabled(&self, user: UserId) -> Result<bool, StoreError> {
        let disabled: Option<bool> =
            sqlx::query_scalar("SELECT disabled_at IS NOT NULL FROM users WHERE id = $1")
                .bind(user.0)
                .fetch_optional(&self.primary)
                .await?;
        Ok(disabled.unwrap_or(false))
    }

    async fn touch_last_seen(&self, user: UserId, now: DateTime<Utc>) -> Result<(), StoreError> {
        sqlx::query("UPDATE users SET last_seen_at = $2 WHERE id = $1")
            .bind(user.0)
            .bind(now)
            .execute(&self.primary)
            .await?;
        Ok(())
    }

    async fn create_invite(&self, invite: NewInvite) -> Result<InviteId, StoreError> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO invites (code_hash, max_uses, created_at, expires_at)
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(invite.hash.0.as_slice())
        .bind(i32::try_from(invite.max_uses).unwrap_or(i32::MAX))
        .bind(invite.created_at)
        .bind(invite.expires_at)
        .fetch_one(&self.primary)
        .await?;
        Ok(InviteId(id))
    }

    async fn invites(&self) -> Result<Vec<InviteRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, max_uses, uses, created_at, expires_at, revoked_at FROM invites ORDER BY id",
        )
        .fetch_all(&self.primary)
        .await?;
        rows.iter()
            .map(invite_row)
            .collect::<Result<_, _>>()
            .map_err(StoreError::from)
    }

    async fn invite_by_hash(&self, hash: &InviteHash) -> Result<Option<InviteId>, StoreError> {
        let id: Option<i64> = sqlx::query_scalar("SELECT id FROM invites WHERE code_hash = $1")
            .bind(hash.0.as_slice())
            .fetch_optional(&self.primary)
            .await?;
        Ok(id.map(InviteId))
    }

    async fn revoke_invite(&self, id: InviteId, now: DateTime<Utc>) -> Result<bool, StoreError> {
        let changed =
            sqlx::query("UPDATE invites SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1")
                .bind(id.0)
                .bind(now)
                .execute(&self.primary)
                .await?
                .rows_affected();
        Ok(changed == 1)
    }

    async fn use_invite(
        &self,
        hash: &InviteHash,
        now: DateTime<Utc>,
    ) -> Result<Option<InviteId>, StoreError> {
        // The row lock of the UPDATE orders concurrent uses; the condition is
        // re-checked on the locked row, so the last use goes to one of them.
        let id: Option<i64> = sqlx::query_scalar(
            "UPDATE invites SET uses = uses + 1
             WHERE code_hash = $1 AND revoked_at IS NULL AND uses < max_uses
               AND (expires_at IS NULL OR expires_at > $2)
             RETURNING id",
        )
        .bind(hash.0.as_slice())
        .bind(now)
        .fetch_optional(&self.primary)
        .await?;
        Ok(id.map(InviteId))
    }

    async fn release_invite(&self, id: InviteId) -> Result<(), StoreError> {
        sqlx::query("UPDATE invites SET uses = uses - 1 WHERE id = $1 AND uses > 0")
            .bind(id.0)
            .execute(&self.primary)
            .await?;
        Ok(())
    }

    async fn oldest_pending(
        &self,
        now: DateTime<Utc>,
    ) -> Result<Option<DateTime<Utc>>, StoreError> {
        let oldest: Option<DateTime<Utc>> = sqlx::query_scalar(
            "SELECT min(created_at) FROM messages
             WHERE delivered_at IS NULL AND ciphertext IS NOT NULL AND expires_at > $1",
        )
        .bind(now)
        .fetch_one(&self.read)
        .await?;
        Ok(oldest)
    }
}
