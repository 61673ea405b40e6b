//! The v2 trust tables: each account's pinned root device key (and whether
//! its safety number was compared) and the devices seen in its chain. Plain
//! queries on a connection, like [`super::rows`].

use chrono::{DateTime, Utc};
use kavro_proto::UserId;
use kavro_proto::v2::MlsDeviceId;
use sqlx::{Row as _, SqliteConnection};

/// An account's pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PinRow {
    pub user_id: UserId,
    pub root_key: Vec<u8>,
    /// The user compared the safety number over this root key.
    pub verified: bool,
    pub pinned_at: DateTime<Utc>,
}

pub async fn pin(
    conn: &mut SqliteConnection,
    username: &str,
) -> Result<Option<PinRow>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT user_id, root_key, verified, pinned_at FROM v2_pins WHERE username = $1",
    )
    .bind(username.to_ascii_lowercase())
    .fetch_optional(conn)
    .await?;
    row.map(|row| {
        Ok(PinRow {
            user_id: UserId(row.try_get("user_id")?),
            root_key: row.try_get("root_key")?,
            verified: row.try_get::<i64, _>("verified")? != 0,
            pinned_at: row.try_get("pinned_at")?,
        })
    })
    .transpose()
}

/// Pins an account seen for the first time (an existing pin is kept).
pub async fn save_pin(
    conn: &mut SqliteConnection,
    username: &str,
    user_id: UserId,
    root_key: &[u8],
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO v2_pins (username, user_id, root_key, pinned_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (username) DO NOTHING",
    )
    .bind(username.to_ascii_lowercase())
    .bind(user_id.0)
    .bind(root_key)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Marks the pinned root as compared by the user.
pub async fn set_verified(conn: &mut SqliteConnection, username: &str) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE v2_pins SET verified = 1 WHERE username = $1")
        .bind(username.to_ascii_lowercase())
        .execute(conn)
        .await?;
    Ok(())
}

/// The devices of `username` seen in its chain: (id, signature key).
pub async fn known_devices(
    conn: &mut SqliteConnection,
    username: &str,
) -> Result<Vec<(MlsDeviceId, Vec<u8>)>, sqlx::Error> {
    sqlx::query(
        "SELECT device_id, signature_key FROM v2_known_devices WHERE username = $1 ORDER BY device_id",
    )
    .bind(username.to_ascii_lowercase())
    .fetch_all(conn)
    .await?
    .iter()
    .map(|row| {
        Ok((
            MlsDeviceId(row.try_get("device_id")?),
            row.try_get("signature_key")?,
        ))
    })
    .collect()
}

/// Records a device seen in `username`'s chain; `true` if it is new.
pub async fn add_known_device(
    conn: &mut SqliteConnection,
    username: &str,
    device: MlsDeviceId,
    key: &[u8],
) -> Result<bool, sqlx::Error> {
    let added = sqlx::query(
        "INSERT INTO v2_known_devices (username, device_id, signature_key) VALUES ($1, $2, $3) \
         ON CONFLICT (username, device_id) DO NOTHING",
    )
    .bind(username.to_ascii_lowercase())
    .bind(device.0)
    .bind(key)
    .execute(conn)
    .await?
    .rows_affected();
    Ok(added > 0)
}
