//! Recognising replays. A received message is stored once per dedupe key:
//!
//! - an envelope: `env:<sender key>:<message id>`, so a forgery under
//!   another key cannot shadow a real message, and a real one replayed
//!   (by the relay, under a new relay id) is a duplicate;
//! - a legacy or undecryptable message (no authenticated id):
//!   `legacy:` + SHA-256 of the ephemeral key, with the top bit that X25519
//!   ignores cleared (so flipping it does not make a "new" message), and
//!   the ciphertext.
//!
//! A history database only knows what it stored. To keep replays out when
//! the database is newer than the identity (wiped, moved, or created by an
//! upgrade), it records a *replay horizon* with the identity key it belongs
//! to: an envelope whose signed send time is earlier than the horizon may
//! have been read before, and is flagged (`History::replay_horizon`; the
//! session shows it unverified and pins nothing). A new identity key starts
//! with no horizon: nothing can have been sent to a key before it existed.

use chrono::{DateTime, Utc};
use kavro_proto::crypto::IdentityPublic;
use sha2::{Digest as _, Sha256};
use sqlx::Row as _;

use super::{History, HistoryError, NewIncoming, parse_ts, ts};

/// The dedupe key of a message without an authenticated id.
pub(super) fn legacy_dedupe_key(ephemeral_pubkey: &str, ciphertext: &str) -> String {
    let ephemeral = match IdentityPublic::from_hex(ephemeral_pubkey) {
        Ok(key) => {
            let mut bytes = *key.as_bytes();
            bytes[31] &= 0x7f;
            hex::encode(bytes)
        }
        Err(_) => ephemeral_pubkey.to_ascii_lowercase(),
    };
    let digest = Sha256::new()
        .chain_update(ephemeral.as_bytes())
        .chain_update(b"\0")
        .chain_update(ciphertext.as_bytes())
        .finalize();
    format!("legacy:{}", hex::encode(digest))
}

impl NewIncoming {
    /// What makes two deliveries the same message (see the module docs).
    pub fn dedupe_key(&self) -> String {
        match (self.sender_key, self.msg_uuid) {
            (Some(key), Some(id)) => format!("env:{}:{id}", key.to_hex()),
            _ => legacy_dedupe_key(&self.ephemeral_pubkey, &self.ciphertext),
        }
    }
}

impl History {
    /// Envelopes to `identity` signed before this time may have been read
    /// in an earlier history database; `None`: no horizon (this database
    /// has known the key since it was made).
    pub async fn replay_horizon(
        &self,
        identity: &IdentityPublic,
    ) -> Result<Option<DateTime<Utc>>, HistoryError> {
        let row = sqlx::query("SELECT identity_key, since FROM replay_horizon WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let key: String = row.try_get("identity_key")?;
        if !key.eq_ignore_ascii_case(&identity.to_hex()) {
            return Ok(None);
        }
        let since = parse_ts(&row.try_get::<String, _>("since")?)?;
        Ok((since > DateTime::UNIX_EPOCH).then_some(since))
    }

    /// Records that this history belongs to `identity`: a key new to this
    /// database gets the horizon `since` (`None` for a key generated just
    /// now, which nothing can have been sent to before); the horizon of a
    /// key already recorded is kept.
    pub async fn record_identity(
        &self,
        identity: &IdentityPublic,
        since: Option<DateTime<Utc>>,
    ) -> Result<(), HistoryError> {
        sqlx::query(
            "INSERT INTO replay_horizon (id, identity_key, since) VALUES (1, $1, $2)
             ON CONFLICT (id) DO UPDATE SET identity_key = excluded.identity_key,
                 since = excluded.since
             WHERE replay_horizon.identity_key <> excluded.identity_key",
        )
        .bind(identity.to_hex())
        .bind(ts(since.unwrap_or(DateTime::UNIX_EPOCH)))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Gives rows stored before dedupe keys were normalised (`sha256:`)
    /// their current key, so a replay with a flipped ephemeral-key bit is
    /// still recognised.
    pub(super) async fn rehash_legacy_keys(&self) -> Result<(), HistoryError> {
        let rows = sqlx::query(
            "SELECT id, ephemeral_pubkey, ciphertext FROM messages
             WHERE direction = 'in' AND dedupe_key LIKE 'sha256:%'
                 AND ephemeral_pubkey IS NOT NULL AND ciphertext IS NOT NULL",
        )
        .fetch_all(&self.pool)
        .await?;
        for row in rows {
            let id: i64 = row.try_get("id")?;
            let key = legacy_dedupe_key(
                &row.try_get::<String, _>("ephemeral_pubkey")?,
                &row.try_get::<String, _>("ciphertext")?,
            );
            // A clash means the row duplicates another: keep the old key.
            let _ = sqlx::query("UPDATE messages SET dedupe_key = $2 WHERE id = $1")
                .bind(id)
                .bind(key)
                .execute(&self.pool)
                .await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ignored_ephemeral_key_bit_does_not_make_a_new_message() {
        let key = "ab".repeat(32);
        let mut flipped = key.clone();
        flipped.replace_range(62..64, "2b"); // 0xab ^ 0x80
        assert_eq!(
            legacy_dedupe_key(&key, "AAAA"),
            legacy_dedupe_key(&flipped, "AAAA")
        );
        assert_eq!(
            legacy_dedupe_key(&key.to_uppercase(), "AAAA"),
            legacy_dedupe_key(&key, "AAAA")
        );
        assert_ne!(
            legacy_dedupe_key(&key, "AAAA"),
            legacy_dedupe_key(&key, "AAAB")
        );
    }
}
