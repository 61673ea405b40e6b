//! What every store story needs to set a scene: a message, a user, and the
//! options to open a fresh store on either backend. Test code only.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use kavro_proto::UserId;

use super::{NewMessage, NewUser, Store, StoreOptions};
use crate::clock::after;

/// A message of `body` from `from` to `to`, alive for an hour, with room
/// for 100 pending per recipient and per sender (stories that test the
/// quota lower both).
pub fn message(from: UserId, to: UserId, body: impl AsRef<[u8]>, now: DateTime<Utc>) -> NewMessage {
    NewMessage {
        sender_id: from,
        recipient_id: to,
        ciphertext: body.as_ref().to_vec(),
        ephemeral_pubkey: "ab".repeat(32),
        metadata: None,
        client_msg_id: None,
        created_at: now,
        expires_at: after(now, Duration::from_secs(3600)),
        max_pending: 100,
        max_pending_per_sender: 100,
    }
}

/// A new account named `name` (the name lowercased as its normal form).
pub fn new_user(name: &str, now: DateTime<Utc>) -> NewUser<'_> {
    NewUser {
        username: name,
        username_normalized: name,
        password_hash: "$argon2id$fake",
        created_at: now,
    }
}

/// Creates the account `name` (its normal form lowercased) and returns its id.
pub async fn user(store: &dyn Store, name: &str, now: DateTime<Utc>) -> UserId {
    let normalized = name.to_lowercase();
    store
        .create_user(NewUser {
            username_normalized: &normalized,
            ..new_user(name, now)
        })
        .await
        .unwrap()
}

/// A fresh SQLite store in `dir`, file `file`, migrated.
pub fn sqlite_options(dir: &Path, file: &str) -> StoreOptions {
    options(format!("sqlite://{}", dir.join(file).display()), 4)
}

/// A store at `url`, migrated, with `max_connections`.
pub fn options(url: String, max_connections: u32) -> StoreOptions {
    StoreOptions {
        url,
        read_url: None,
        max_connections,
        migrate: true,
    }
}
