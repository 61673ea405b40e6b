//! Accounts and keys on SQLite: registration (with the account's inbox
//! counter), lookups of live accounts, token generations, account deletion,
//! and publishing and retiring keys.

use chrono::{DateTime, Utc};
use kavro_proto::{DeviceId, UserId};
use sqlx::Row;

use super::{SqliteStore, from_ms, ms, unsigned, user_row};
use crate::store::{
    DeletedAccount, DeviceRecord, NewUser, Published, RevokedGeneration, StoreError,
    TokenGeneration, UserRecord,
};

impl SqliteStore {
    pub(super) async fn insert_user(&self, user: NewUser<'_>) -> Result<UserId, StoreError> {
        let mut tx = self.writer.begin().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO users (username, username_normalized, password_hash, created_at)
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(user.username)
        .bind(user.username_normalized)
        .bind(user.password_hash)
        .bind(ms(user.created_at))
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query("INSERT INTO inbox_counts (recipient_id) VALUES ($1)")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(UserId(id))
    }

    pub(super) async fn live_user_by_name(
        &self,
        normalized: &str,
    ) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, username, password_hash, token_generation FROM users
             WHERE username_normalized = $1 AND deleted_at IS NULL",
        )
        .bind(normalized)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.as_ref().map(user_row).transpose()?)
    }

    pub(super) async fn live_user_by_id(
        &self,
        id: UserId,
    ) -> Result<Option<UserRecord>, StoreError> {
        let row = sqlx::query(
            "SELECT id, username, password_hash, token_generation FROM users
             WHERE id = $1 AND deleted_at IS NULL",
        )
        .bind(id.0)
        .fetch_optional(&self.reader)
        .await?;
        Ok(row.as_ref().map(user_row).transpose()?)
    }

    /// Raises the token generation, setting a new password hash if given.
    pub(super) async fn raise_generation(
        &self,
        user: UserId,
        password_hash: Option<&str>,
        now: DateTime<Utc>,
    ) -> Result<TokenGeneration, StoreError> {
        let generation: Option<i64> = sqlx::query_scalar(
            "UPDATE users SET token_generation = token_generation + 1, tokens_revoked_at = $2,
                              password_hash = coalesce($3, password_hash)
             WHERE id = $1 AND deleted_at IS NULL RETURNING token_generation",
        )
        .bind(user.0)
        .bind(ms(now))
        .bind(password_hash)
        .fetch_optional(&self.writer)
        .await?;
        generation
            .map(|g| TokenGeneration(unsigned(g)))
            .ok_or(StoreError::NotFound)
    }

    pub(super) async fn close_account(
        &self,
        user: UserId,
        now: DateTime<Utc>,
    ) -> Result<DeletedAccount, StoreError> {
        let mut tx = self.writer.begin().await?;
        let generation: Option<i64> = sqlx::query_scalar(
            "UPDATE users SET deleted_at = $2, password_hash = '',
                              token_generation = token_generation + 1, tokens_revoked_at = $2
             WHERE id = $1 AND deleted_at IS NULL RETURNING token_generation",
        )
        .bind(user.0)
        .bind(ms(now))
        .fetch_optional(&mut *tx)
        .await?;
        let Some(generation) = generation else {
            return Err(StoreError::NotFound);
        };
        // The inbox row first: sends to this account see it gone and answer 404.
        for sql in [
            "DELETE FROM inbox_counts WHERE recipient_id = $1",
            "DELETE FROM sender_counts WHERE recipient_id = $1",
            "DELETE FROM devices WHERE user_id = $1",
            // Receipts of what it sent: only it could read them.
            "DELETE FROM messages WHERE sender_id = $1 AND recipient_id <> $1
               AND (delivered_at IS NOT NULL OR ciphertext IS NULL)",
        ] {
            sqlx::query(sql).bind(user.0).execute(&mut *tx).await?;
        }
        let deleted = sqlx::query("DELETE FROM messages WHERE recipient_id = $1")
            .bind(user.0)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(DeletedAccount {
            generation: TokenGeneration(unsigned(generation)),
            messages_deleted: deleted,
        })
    }

    pub(super) async fn generations_since(
        &self,
        since: DateTime<Utc>,
    ) -> Result<Vec<RevokedGeneration>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, token_generation, tokens_revoked_at FROM users
             WHERE tokens_revoked_at > $1",
        )
        .bind(ms(since))
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(RevokedGeneration {
                    user: UserId(row.try_get("id")?),
                    generation: TokenGeneration(unsigned(row.try_get("token_generation")?)),
                    revoked_at: from_ms(row.try_get("tokens_revoked_at")?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    pub(super) async fn publish_key(
        &self,
        user: UserId,
        identity_pubkey: &str,
        device_name: Option<Vec<u8>>,
        now: DateTime<Utc>,
    ) -> Result<Published, StoreError> {
        let mut tx = self.writer.begin().await?;
        let added = sqlx::query(
            "INSERT INTO devices (user_id, identity_pubkey, device_name, created_at)
             VALUES ($1, $2, $3, $4) ON CONFLICT (user_id, identity_pubkey) DO NOTHING",
        )
        .bind(user.0)
        .bind(identity_pubkey)
        .bind(device_name)
        .bind(ms(now))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let outcome = if added == 1 {
            Published::Added
        } else {
            let retired: Option<i64> = sqlx::query_scalar(
                "SELECT retired_at FROM devices WHERE user_id = $1 AND identity_pubkey = $2",
            )
            .bind(user.0)
            .bind(identity_pubkey)
            .fetch_one(&mut *tx)
            .await?;
            if retired.is_some() {
                Published::Retired
            } else {
                Published::AlreadyPublished
            }
        };
        tx.commit().await?;
        Ok(outcome)
    }

    pub(super) async fn live_devices(&self, user: UserId) -> Result<Vec<DeviceRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, user_id, identity_pubkey, device_name, created_at FROM devices
             WHERE user_id = $1 AND retired_at IS NULL ORDER BY created_at, id",
        )
        .bind(user.0)
        .fetch_all(&self.reader)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(DeviceRecord {
                    id: DeviceId(row.try_get("id")?),
                    user_id: UserId(row.try_get("user_id")?),
                    identity_pubkey: row.try_get("identity_pubkey")?,
                    device_name: row.try_get("device_name")?,
                    created_at: from_ms(row.try_get("created_at")?),
                })
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(StoreError::from)
    }

    pub(super) async fn retire_key(
        &self,
        user: UserId,
        device: DeviceId,
        now: DateTime<Utc>,
    ) -> Result<bool, StoreError> {
        let found: Option<i64> = sqlx::query_scalar(
            "UPDATE devices SET retired_at = coalesce(retired_at, $3)
             WHERE id = $1 AND user_id = $2 RETURNING id",
        )
        .bind(device.0)
        .bind(user.0)
        .bind(ms(now))
        .fetch_optional(&self.writer)
        .await?;
        Ok(found.is_some())
    }
}
