//! What the attacker of the secrecy tests holds, made with no help from the
//! binaries: the relay operator's view (a device's queue entries read straight
//! from the relay's SQLite file, and put back to be delivered again) and a
//! full copy of a victim's installation (its config and data directories:
//! `mls.db` with its WAL, the `mls-device.key` fallback, `secrets.json`).
//!
//! Only for tests that include it by path: the other users of `v2_support`
//! would see these as dead code.

use std::path::Path;
use std::time::Duration;

use kavro_e2e::{Server, User};
use sqlx::sqlite::{SqliteConnectOptions, SqlitePool, SqlitePoolOptions};
use sqlx::{Row as _, SqliteConnection};

/// One queue entry as the relay stores it (`v2_messages`, migration 0003):
/// everything needed to queue the same bytes again.
#[derive(Debug, Clone)]
pub struct Captured {
    pub group_id: Vec<u8>,
    pub sender_device: i64,
    pub kind: i16,
    pub epoch: i64,
    /// The MLS message, exactly as posted (ciphertext for application messages).
    pub body: Vec<u8>,
    pub result_epoch: i64,
    pub recipients: i64,
    pub created_at: i64,
    pub expires_at: i64,
}

/// The relay's own SQLite database (`<data dir>/kavro.db`), opened beside the
/// running relay (WAL mode, so both can use it).
pub struct RelayDb {
    runtime: tokio::runtime::Runtime,
    pool: SqlitePool,
}

impl RelayDb {
    pub fn open(server: &Server) -> Self {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let options = SqliteConnectOptions::new()
            .filename(server.data_dir.path().join("kavro.db"))
            .busy_timeout(Duration::from_secs(10));
        let pool = runtime
            .block_on(
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(options),
            )
            .expect("open the relay's database");
        Self { runtime, pool }
    }

    /// The entries waiting in `device`'s queue (not yet acknowledged), in order.
    pub fn pending(&self, device: i64) -> Vec<Captured> {
        self.runtime
            .block_on(
                sqlx::query(
                    "SELECT m.group_id, m.sender_device, m.kind, m.epoch, m.body,
                            m.result_epoch, m.recipients, m.created_at, m.expires_at
                     FROM v2_queue q JOIN v2_messages m ON m.id = q.message_id
                     WHERE q.device_id = $1 ORDER BY q.seq",
                )
                .bind(device)
                .fetch_all(&self.pool),
            )
            .expect("read the queue")
            .iter()
            .map(|row| Captured {
                group_id: row.get("group_id"),
                sender_device: row.get("sender_device"),
                kind: row.get("kind"),
                epoch: row.get("epoch"),
                body: row.get("body"),
                result_epoch: row.get("result_epoch"),
                recipients: row.get("recipients"),
                created_at: row.get("created_at"),
                expires_at: row.get("expires_at"),
            })
            .collect()
    }

    /// Queues `entries` for `device` again, at the end of its queue (new
    /// `seq`s, as the relay would give them: after every position any copy of
    /// the device has applied), each with its own body row.
    pub fn replay(&self, device: i64, entries: &[Captured]) {
        self.runtime
            .block_on(async {
                let mut tx = self.pool.begin().await?;
                for entry in entries {
                    requeue(&mut tx, device, entry).await?;
                }
                tx.commit().await
            })
            .expect("queue the captured entries again");
    }
}

async fn requeue(
    conn: &mut SqliteConnection,
    device: i64,
    entry: &Captured,
) -> Result<(), sqlx::Error> {
    let message: i64 = sqlx::query_scalar(
        "INSERT INTO v2_messages (group_id, sender_device, kind, epoch, body, client_msg_id,
                                  result_epoch, recipients, pending, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, NULL, $6, $7, 1, $8, $9) RETURNING id",
    )
    .bind(&entry.group_id)
    .bind(entry.sender_device)
    .bind(entry.kind)
    .bind(entry.epoch)
    .bind(&entry.body)
    .bind(entry.result_epoch)
    .bind(entry.recipients)
    .bind(entry.created_at)
    .bind(entry.expires_at)
    .fetch_one(&mut *conn)
    .await?;
    let seq: i64 = sqlx::query_scalar(
        "UPDATE v2_devices SET next_seq = next_seq + 1 WHERE id = $1 RETURNING next_seq - 1",
    )
    .bind(device)
    .fetch_one(&mut *conn)
    .await?;
    sqlx::query("INSERT INTO v2_queue (device_id, seq, message_id) VALUES ($1, $2, $3)")
        .bind(device)
        .bind(seq)
        .bind(message)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// This installation's device id (`device list`, the line marked `this_device`).
pub fn device_id(user: &User) -> i64 {
    user.json(&["device", "list"])
        .iter()
        .find(|d| d["this_device"] == true)
        .and_then(|d| d["device_id"].as_i64())
        .unwrap_or_else(|| panic!("{} has no v2 device", user.name))
}

/// A full copy of `user`'s installation, taken while no `kavro` runs: the
/// same account, device key, session token and MLS state, in new
/// directories (the original is never touched by the copy).
pub fn copy_installation(user: &User) -> User {
    let copy = User::new(&user.name, &user.server);
    copy_tree(user.config_dir.path(), copy.config_dir.path());
    copy_tree(user.data_dir.path(), copy.data_dir.path());
    copy
}

/// Copies the contents of `from` into the existing directory `to`, with
/// their permissions (the client wants its 0700 directories and 0600 keys).
fn copy_tree(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read a directory to copy") {
        let entry = entry.expect("directory entry");
        let target = to.join(entry.file_name());
        let meta = entry.metadata().expect("metadata");
        if meta.is_dir() {
            std::fs::create_dir(&target).expect("create a directory");
            copy_tree(&entry.path(), &target);
            std::fs::set_permissions(&target, meta.permissions()).expect("permissions");
        } else if meta.is_file() {
            std::fs::copy(entry.path(), &target).expect("copy a file");
        }
    }
}

/// How many history lines of `conversation` carry `text` (`history --json`).
pub fn history_count(user: &User, conversation: &str, text: &str) -> usize {
    user.json(&["history", conversation])
        .iter()
        .filter(|l| l["kind"] == "text" && l["text"] == text)
        .count()
}

/// The conversation's epoch on this installation (`group list`, which
/// applies the device's queue first: call it when nothing captured waits).
pub fn epoch(user: &User, conversation: &str) -> u64 {
    user.json(&["group", "list"])
        .iter()
        .find(|c| c["conversation"] == conversation)
        .and_then(|c| c["epoch"].as_u64())
        .unwrap_or_else(|| panic!("{} has no {conversation}", user.name))
}
