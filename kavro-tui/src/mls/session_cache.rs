//! The device session token and the last key package count, kept between
//! commands (`v2_session_cache`), so that `kavro send` neither opens a
//! device session nor counts key packages on every run (each is a round trip
//! to the relay; the send itself is one).

use chrono::{DateTime, Utc};
use kavro_proto::v2::MlsDeviceId;
use sqlx::{Row as _, SqliteConnection};

/// A device token the relay issued, and until when it is valid.
#[derive(Clone, PartialEq, Eq)]
pub struct CachedToken {
    pub device_id: MlsDeviceId,
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

// The token never reaches a log through Debug.
impl std::fmt::Debug for CachedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CachedToken")
            .field("device_id", &self.device_id)
            .field("token", &"<redacted>")
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The cached token, if one is stored.
pub async fn device_token(conn: &mut SqliteConnection) -> Result<Option<CachedToken>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT device_id, device_token, device_token_expires_at FROM v2_session_cache \
         WHERE id = 1 AND device_id IS NOT NULL AND device_token IS NOT NULL \
         AND device_token_expires_at IS NOT NULL",
    )
    .fetch_optional(conn)
    .await?;
    row.map(|row| {
        Ok(CachedToken {
            device_id: MlsDeviceId(row.try_get("device_id")?),
            token: row.try_get("device_token")?,
            expires_at: row.try_get("device_token_expires_at")?,
        })
    })
    .transpose()
}

pub async fn save_device_token(
    conn: &mut SqliteConnection,
    token: &CachedToken,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO v2_session_cache (id, device_id, device_token, device_token_expires_at) \
         VALUES (1, $1, $2, $3) \
         ON CONFLICT (id) DO UPDATE SET device_id = excluded.device_id, \
         device_token = excluded.device_token, \
         device_token_expires_at = excluded.device_token_expires_at",
    )
    .bind(token.device_id.0)
    .bind(&token.token)
    .bind(token.expires_at)
    .execute(conn)
    .await?;
    Ok(())
}

/// Forgets the token (refused by the relay, or the account logged out).
pub async fn forget_device_token(conn: &mut SqliteConnection) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE v2_session_cache SET device_id = NULL, device_token = NULL, \
         device_token_expires_at = NULL WHERE id = 1",
    )
    .execute(conn)
    .await?;
    Ok(())
}

/// When the device last counted its key packages on the relay.
pub async fn key_packages_counted_at(
    conn: &mut SqliteConnection,
) -> Result<Option<DateTime<Utc>>, sqlx::Error> {
    let row = sqlx::query("SELECT key_packages_counted_at FROM v2_session_cache WHERE id = 1")
        .fetch_optional(conn)
        .await?;
    Ok(match row {
        Some(row) => row.try_get("key_packages_counted_at")?,
        None => None,
    })
}

pub async fn set_key_packages_counted_at(
    conn: &mut SqliteConnection,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO v2_session_cache (id, key_packages_counted_at) VALUES (1, $1) \
         ON CONFLICT (id) DO UPDATE SET key_packages_counted_at = excluded.key_packages_counted_at",
    )
    .bind(at)
    .execute(conn)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mls::MlsStore;

    #[tokio::test]
    async fn the_cache_keeps_forgets_and_never_shows_the_token() {
        let dir = tempfile::tempdir().unwrap();
        let store = MlsStore::open(&dir.path().join("mls.db")).await.unwrap();
        let mut conn = store.begin().await.unwrap();
        assert_eq!(device_token(&mut conn).await.unwrap(), None);
        assert_eq!(key_packages_counted_at(&mut conn).await.unwrap(), None);

        let at = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        set_key_packages_counted_at(&mut conn, at).await.unwrap();
        let token = CachedToken {
            device_id: MlsDeviceId(7),
            token: "secret-token".to_owned(),
            expires_at: at,
        };
        save_device_token(&mut conn, &token).await.unwrap();
        assert_eq!(device_token(&mut conn).await.unwrap(), Some(token.clone()));
        assert_eq!(key_packages_counted_at(&mut conn).await.unwrap(), Some(at));
        assert!(!format!("{token:?}").contains("secret-token"));

        forget_device_token(&mut conn).await.unwrap();
        assert_eq!(device_token(&mut conn).await.unwrap(), None);
        assert_eq!(
            key_packages_counted_at(&mut conn).await.unwrap(),
            Some(at),
            "forgetting the token keeps the count time"
        );
    }
}
