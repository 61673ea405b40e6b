//! `kavro-bench seed`: puts many users and messages straight into a relay's
//! database (not through the API), so a benchmark can run against 1, 10 or
//! 100 thousand stored rows without hours of Argon2 registrations.
//!
//! The rows look like the relay's own: every user has the same valid Argon2id
//! hash (of [`crate::setup::PASSWORD`], with the relay's default parameters,
//! so a login costs what a real one does) and one published key; messages are
//! undelivered, 200 dummy bytes each, spread round-robin over the seeded
//! users' inboxes, each from the next seeded user. Users are generated in SQL
//! (`generate_series` on PostgreSQL, a recursive CTE on SQLite) and inserted
//! in committed batches, so progress shows and no transaction grows huge.
//!
//! The relay's pending counters (`inbox_counts`, `sender_counts`, which its
//! quotas read instead of counting the queue) are created with the users and
//! recounted for the seeded users once their messages are in.
//!
//! The database must already have the relay's schema (`kavro-server migrate`).

use std::ops::Range;
use std::time::Instant;

use anyhow::Context as _;
use argon2::PasswordHasher as _;
use sqlx::{Connection as _, PgConnection, SqliteConnection};

/// Rows per committed batch.
pub const BATCH: u64 = 10_000;
/// Ciphertext bytes of a seeded message (the load generator's default size).
const CIPHERTEXT_BYTES: usize = crate::payload::DEFAULT_CIPHERTEXT_BYTES;
/// Seeded messages expire like the relay's default (`message_ttl` 30 days).
const TTL_MS: i64 = 30 * 24 * 3600 * 1000;
/// Rows per SQLite `INSERT … VALUES` statement (2 bound values each, far
/// below SQLite's limit of 32,766 variables).
const SQLITE_VALUES_ROWS: usize = 1000;

/// What to seed, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub database_url: String,
    pub users: u64,
    pub messages: u64,
    /// Usernames are `<prefix><i>`, i from 1.
    pub prefix: String,
}

/// What a seed run did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Seeded {
    pub users: u64,
    pub messages: u64,
    pub prefix: String,
    pub seconds: f64,
}

/// The usernames' prefix for run `run`: `seed_<run>_`.
pub fn prefix(run: &str) -> String {
    format!("seed_{run}_")
}

/// The half-open ranges `[from, to)` of `0..total` in steps of `size`.
pub fn batches(total: u64, size: u64) -> Vec<Range<u64>> {
    let size = size.max(1);
    (0..total.div_ceil(size))
        .map(|b| b * size..((b + 1) * size).min(total))
        .collect()
}

/// Indexes into the seeded users of the sender and recipient of message `i`:
/// round-robin over the inboxes, each from the next user (never oneself when
/// there are two users or more).
pub fn pair(i: u64, users: u64) -> (usize, usize) {
    let recipient = i % users;
    let sender = (i + 1) % users;
    (sender as usize, recipient as usize)
}

/// Checks what the command line cannot; the message says what to change.
pub fn validate(plan: &Plan) -> Result<(), String> {
    if !(plan.database_url.starts_with("sqlite:")
        || plan.database_url.starts_with("postgres:")
        || plan.database_url.starts_with("postgresql:"))
    {
        return Err(
            "--database-url must be sqlite://PATH (the relay's DATA_DIR/kavro.db) or postgres://…"
                .into(),
        );
    }
    if plan.messages > 0 && plan.users < 2 {
        return Err("messages need at least 2 seeded users (--users 2 or more)".into());
    }
    let longest = format!("{}{}", plan.prefix, plan.users.max(1));
    kavro_proto::validate::username(&longest)
        .map_err(|e| format!("usernames like {longest:?} are refused by the relay: {e}"))?;
    Ok(())
}

/// One PHC string for every seeded user: Argon2id with the relay's default
/// parameters, of the load generator's password.
pub fn password_hash() -> anyhow::Result<String> {
    argon2::Argon2::default()
        .hash_password(crate::setup::PASSWORD.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("hashing the seed password: {e}"))
}

/// Seeds `plan` and reports progress on stderr.
pub async fn run(plan: &Plan) -> anyhow::Result<Seeded> {
    validate(plan).map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    let hash = password_hash()?;
    let now_ms = chrono::Utc::now().timestamp_millis();
    let ciphertext: Vec<u8> = (0..CIPHERTEXT_BYTES)
        .map(|i| (i * 37 % 251) as u8)
        .collect();
    let rows = Rows {
        plan,
        hash: &hash,
        now_ms,
        ciphertext: &ciphertext,
    };
    let redacted = redact(&plan.database_url);
    if plan.database_url.starts_with("sqlite:") {
        let mut conn = SqliteConnection::connect(&plan.database_url)
            .await
            .with_context(|| format!("opening {redacted}"))?;
        sqlx::query("PRAGMA busy_timeout = 10000")
            .execute(&mut conn)
            .await?;
        check_schema(
            sqlx::query("SELECT 1 FROM users LIMIT 0")
                .execute(&mut conn)
                .await,
        )?;
        rows.sqlite(&mut conn).await?;
    } else {
        let mut conn = PgConnection::connect(&plan.database_url)
            .await
            .with_context(|| format!("connecting to {redacted}"))?;
        check_schema(
            sqlx::query("SELECT 1 FROM users LIMIT 0")
                .execute(&mut conn)
                .await,
        )?;
        rows.postgres(&mut conn).await?;
    }
    Ok(Seeded {
        users: plan.users,
        messages: plan.messages,
        prefix: plan.prefix.clone(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

fn check_schema<T>(result: Result<T, sqlx::Error>) -> anyhow::Result<()> {
    result.map(|_| ()).map_err(|e| {
        anyhow::anyhow!(
            "this database has no Kavro schema ({e}): run `kavro-server migrate` with the same \
             database URL (or --data-dir for SQLite) first"
        )
    })
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    }
}

/// The row contents shared by both backends.
struct Rows<'a> {
    plan: &'a Plan,
    hash: &'a str,
    now_ms: i64,
    ciphertext: &'a [u8],
}

impl Rows<'_> {
    async fn postgres(&self, conn: &mut PgConnection) -> anyhow::Result<()> {
        let now = chrono::DateTime::from_timestamp_millis(self.now_ms).unwrap_or_default();
        let expires =
            chrono::DateTime::from_timestamp_millis(self.now_ms + TTL_MS).unwrap_or_default();
        let mut ids: Vec<i64> = Vec::with_capacity(self.plan.users as usize);
        for range in batches(self.plan.users, BATCH) {
            let mut tx = conn.begin().await?;
            let batch: Vec<i64> = sqlx::query_scalar(
                "INSERT INTO users (username, username_normalized, password_hash, created_at)
                 SELECT $1 || i, $1 || i, $2, $3 FROM generate_series($4::bigint, $5::bigint) AS i
                 RETURNING id",
            )
            .bind(&self.plan.prefix)
            .bind(self.hash)
            .bind(now)
            .bind(range.start as i64 + 1)
            .bind(range.end as i64)
            .fetch_all(&mut *tx)
            .await
            .context("inserting users (is this prefix seeded already? pick another --run-id)")?;
            sqlx::query(
                "INSERT INTO devices (user_id, identity_pubkey, device_name, created_at)
                 SELECT id, lpad(to_hex(id), 64, '0'), NULL, $2 FROM unnest($1::bigint[]) AS id",
            )
            .bind(&batch)
            .bind(now)
            .execute(&mut *tx)
            .await
            .context("inserting keys")?;
            sqlx::query("INSERT INTO inbox_counts (recipient_id) SELECT unnest($1::bigint[])")
                .bind(&batch)
                .execute(&mut *tx)
                .await
                .context("inserting the pending counters")?;
            tx.commit().await?;
            ids.extend(batch);
            progress("users", range.end, self.plan.users);
        }
        ids.sort_unstable();
        for range in batches(self.plan.messages, BATCH) {
            let (senders, recipients) = pairs(&ids, range.clone());
            sqlx::query(
                "INSERT INTO messages (sender_id, recipient_id, ciphertext, ephemeral_pubkey,
                                       metadata, client_msg_id, created_at, expires_at)
                 SELECT s, r, $3, $4, NULL, NULL, $5, $6 FROM unnest($1::bigint[], $2::bigint[]) AS t(s, r)",
            )
            .bind(&senders)
            .bind(&recipients)
            .bind(self.ciphertext)
            .bind(EPHEMERAL_KEY)
            .bind(now)
            .bind(expires)
            .execute(&mut *conn)
            .await
            .context("inserting messages")?;
            progress("messages", range.end, self.plan.messages);
        }
        let mut tx = conn.begin().await?;
        sqlx::query(
            "INSERT INTO sender_counts (recipient_id, sender_id, pending)
             SELECT recipient_id, sender_id, count(*) FROM messages
             WHERE recipient_id = ANY($1) AND delivered_at IS NULL AND ciphertext IS NOT NULL
             GROUP BY recipient_id, sender_id
             ON CONFLICT (recipient_id, sender_id) DO UPDATE SET pending = EXCLUDED.pending",
        )
        .bind(&ids)
        .execute(&mut *tx)
        .await
        .context("counting the pending messages per sender")?;
        sqlx::query(
            "UPDATE inbox_counts i SET pending = c.n FROM (
               SELECT recipient_id, count(*) AS n FROM messages
               WHERE recipient_id = ANY($1) AND delivered_at IS NULL AND ciphertext IS NOT NULL
               GROUP BY recipient_id) c
             WHERE i.recipient_id = c.recipient_id",
        )
        .bind(&ids)
        .execute(&mut *tx)
        .await
        .context("counting the pending messages")?;
        tx.commit().await?;
        // Fresh statistics, so the planner sees the seeded tables as they are
        // (autovacuum would get there too, at a time of its choosing).
        sqlx::query("ANALYZE users, devices, messages, inbox_counts, sender_counts")
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    async fn sqlite(&self, conn: &mut SqliteConnection) -> anyhow::Result<()> {
        let mut ids: Vec<i64> = Vec::with_capacity(self.plan.users as usize);
        for range in batches(self.plan.users, BATCH) {
            let mut tx = conn.begin().await?;
            let batch: Vec<i64> = sqlx::query_scalar(
                "WITH RECURSIVE g(i) AS (SELECT ?4 UNION ALL SELECT i + 1 FROM g WHERE i < ?5)
                 INSERT INTO users (username, username_normalized, password_hash, created_at)
                 SELECT ?1 || i, ?1 || i, ?2, ?3 FROM g
                 RETURNING id",
            )
            .bind(&self.plan.prefix)
            .bind(self.hash)
            .bind(self.now_ms)
            .bind(range.start as i64 + 1)
            .bind(range.end as i64)
            .fetch_all(&mut *tx)
            .await
            .context("inserting users (is this prefix seeded already? pick another --run-id)")?;
            let (low, high) = (
                batch.iter().min().copied().unwrap_or(0),
                batch.iter().max().copied().unwrap_or(-1),
            );
            // Inside this transaction nobody else writes, so the batch's ids
            // are exactly those with our prefix between its lowest and highest.
            sqlx::query(
                "INSERT INTO devices (user_id, identity_pubkey, device_name, created_at)
                 SELECT id, printf('%064x', id), NULL, ?1 FROM users
                 WHERE id BETWEEN ?2 AND ?3 AND substr(username_normalized, 1, length(?4)) = ?4",
            )
            .bind(self.now_ms)
            .bind(low)
            .bind(high)
            .bind(&self.plan.prefix)
            .execute(&mut *tx)
            .await
            .context("inserting keys")?;
            sqlx::query(
                "INSERT INTO inbox_counts (recipient_id)
                 SELECT id FROM users
                 WHERE id BETWEEN ?1 AND ?2 AND substr(username_normalized, 1, length(?3)) = ?3",
            )
            .bind(low)
            .bind(high)
            .bind(&self.plan.prefix)
            .execute(&mut *tx)
            .await
            .context("inserting the pending counters")?;
            tx.commit().await?;
            ids.extend(batch);
            progress("users", range.end, self.plan.users);
        }
        ids.sort_unstable();
        for range in batches(self.plan.messages, BATCH) {
            let mut tx = conn.begin().await?;
            let (senders, recipients) = pairs(&ids, range.clone());
            for chunk in (0..senders.len())
                .collect::<Vec<_>>()
                .chunks(SQLITE_VALUES_ROWS)
            {
                let mut insert = sqlx::QueryBuilder::<sqlx::Sqlite>::new(
                    "INSERT INTO messages (sender_id, recipient_id, ciphertext, ephemeral_pubkey,
                                           metadata, client_msg_id, created_at, expires_at) ",
                );
                insert.push_values(chunk, |mut row, &k| {
                    row.push_bind(senders[k])
                        .push_bind(recipients[k])
                        .push_bind(self.ciphertext)
                        .push_bind(EPHEMERAL_KEY)
                        .push("NULL")
                        .push("NULL")
                        .push_bind(self.now_ms)
                        .push_bind(self.now_ms + TTL_MS);
                });
                insert
                    .build()
                    .execute(&mut *tx)
                    .await
                    .context("inserting messages")?;
            }
            tx.commit().await?;
            progress("messages", range.end, self.plan.messages);
        }
        let mut tx = conn.begin().await?;
        // Recount the seeded users' counters from their rows.
        sqlx::query(
            "INSERT INTO sender_counts (recipient_id, sender_id, pending)
             SELECT recipient_id, sender_id, count(*) FROM messages
             WHERE recipient_id IN (
                 SELECT id FROM users WHERE substr(username_normalized, 1, length(?1)) = ?1)
               AND delivered_at IS NULL AND ciphertext IS NOT NULL
             GROUP BY recipient_id, sender_id
             ON CONFLICT (recipient_id, sender_id) DO UPDATE SET pending = excluded.pending",
        )
        .bind(&self.plan.prefix)
        .execute(&mut *tx)
        .await
        .context("counting the pending messages per sender")?;
        sqlx::query(
            "UPDATE inbox_counts SET pending = (
               SELECT count(*) FROM messages
               WHERE recipient_id = inbox_counts.recipient_id AND delivered_at IS NULL
                 AND ciphertext IS NOT NULL)
             WHERE recipient_id IN (
                 SELECT id FROM users WHERE substr(username_normalized, 1, length(?1)) = ?1)",
        )
        .bind(&self.plan.prefix)
        .execute(&mut *tx)
        .await
        .context("counting the pending messages")?;
        tx.commit().await?;
        sqlx::query("ANALYZE").execute(&mut *conn).await?;
        Ok(())
    }
}

/// Every seeded message's (dummy) ephemeral key.
const EPHEMERAL_KEY: &str = "5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed5eed";

/// Sender and recipient ids of messages `range`, from the seeded `ids`.
fn pairs(ids: &[i64], range: Range<u64>) -> (Vec<i64>, Vec<i64>) {
    range
        .map(|i| {
            let (s, r) = pair(i, ids.len() as u64);
            (ids[s], ids[r])
        })
        .unzip()
}

fn progress(what: &str, done: u64, total: u64) {
    eprintln!("  {what}: {done}/{total}");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(url: &str, users: u64, messages: u64) -> Plan {
        Plan {
            database_url: url.into(),
            users,
            messages,
            prefix: prefix("ab12cd"),
        }
    }

    #[test]
    fn batches_cover_the_range_once() {
        assert_eq!(batches(0, 10), Vec::<Range<u64>>::new());
        assert_eq!(batches(25, 10), vec![0..10, 10..20, 20..25]);
        assert_eq!(batches(20, 10), vec![0..10, 10..20]);
        assert_eq!(batches(3, 0), vec![0..1, 1..2, 2..3], "size 0 means 1");
        let total: u64 = batches(100_000, BATCH)
            .iter()
            .map(|r| r.end - r.start)
            .sum();
        assert_eq!(total, 100_000);
    }

    #[test]
    fn messages_go_round_robin_and_never_to_oneself() {
        let mut inbox = [0; 4];
        for i in 0..40 {
            let (sender, recipient) = pair(i, 4);
            assert_ne!(sender, recipient);
            assert!(sender < 4 && recipient < 4);
            inbox[recipient] += 1;
        }
        assert_eq!(inbox, [10; 4]);
        assert_eq!(
            pairs(&[10, 20, 30], 0..4),
            (vec![20, 30, 10, 20], vec![10, 20, 30, 10])
        );
    }

    #[test]
    fn plans_are_checked() {
        validate(&plan("postgres://postgres@127.0.0.1/x", 100_000, 100_000)).unwrap();
        validate(&plan("sqlite:///tmp/kavro.db", 1, 0)).unwrap();
        assert!(
            validate(&plan("mysql://x", 10, 10))
                .unwrap_err()
                .contains("--database-url")
        );
        assert!(
            validate(&plan("sqlite://x.db", 1, 5))
                .unwrap_err()
                .contains("--users")
        );
        let mut long = plan("sqlite://x.db", 10, 0);
        long.prefix = prefix("much_too_long_for_names");
        assert!(validate(&long).unwrap_err().contains("refused"));
        assert_eq!(prefix("ab12cd"), "seed_ab12cd_");
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("sqlite:///tmp/x.db"), "sqlite:///tmp/x.db");
    }

    #[test]
    fn the_hash_verifies_the_bench_password_with_the_relays_parameters() {
        use argon2::PasswordVerifier as _;
        let phc = password_hash().unwrap();
        let parsed = argon2::PasswordHash::new(&phc).unwrap();
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        argon2::Argon2::default()
            .verify_password(crate::setup::PASSWORD.as_bytes(), &parsed)
            .unwrap();
        assert!(
            argon2::Argon2::default()
                .verify_password(b"Wrong-pass-1", &parsed)
                .is_err()
        );
    }

    static SQLITE_MIGRATOR: sqlx::migrate::Migrator =
        sqlx::migrate!("../kavro-server/migrations/sqlite");

    /// The whole command against a real SQLite file with the relay's schema.
    #[tokio::test]
    async fn seeds_a_sqlite_database() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("kavro.db").display());
        // Without the schema: a clear hint.
        let empty = plan(&format!("{url}?mode=rwc"), 3, 3);
        let err = run(&empty).await.unwrap_err().to_string();
        assert!(err.contains("kavro-server migrate"), "{err}");
        {
            let mut conn = SqliteConnection::connect(&format!("{url}?mode=rwc"))
                .await
                .unwrap();
            SQLITE_MIGRATOR.run(&mut conn).await.unwrap();
        }
        let seeded = run(&plan(&url, 25, 60)).await.unwrap();
        assert_eq!((seeded.users, seeded.messages), (25, 60));
        let mut conn = SqliteConnection::connect(&url).await.unwrap();
        let count = |sql: &'static str| sqlx::query_scalar::<_, i64>(sql);
        assert_eq!(
            count("SELECT count(*) FROM users")
                .fetch_one(&mut conn)
                .await
                .unwrap(),
            25
        );
        assert_eq!(
            count("SELECT count(*) FROM devices")
                .fetch_one(&mut conn)
                .await
                .unwrap(),
            25
        );
        assert_eq!(
            count("SELECT count(*) FROM messages WHERE delivered_at IS NULL AND length(ciphertext) = 200")
                .fetch_one(&mut conn)
                .await
                .unwrap(),
            60
        );
        assert_eq!(
            count("SELECT count(*) FROM messages WHERE sender_id = recipient_id")
                .fetch_one(&mut conn)
                .await
                .unwrap(),
            0
        );
        // The relay's pending counters agree with the rows.
        assert_eq!(
            count("SELECT sum(pending) FROM inbox_counts")
                .fetch_one(&mut conn)
                .await
                .unwrap(),
            60
        );
        assert_eq!(
            count("SELECT count(*) FROM inbox_counts")
                .fetch_one(&mut conn)
                .await
                .unwrap(),
            25
        );
        assert_eq!(
            count(
                "SELECT count(*) FROM sender_counts s WHERE pending <> (SELECT count(*)
                 FROM messages m WHERE m.recipient_id = s.recipient_id
                 AND m.sender_id = s.sender_id)"
            )
            .fetch_one(&mut conn)
            .await
            .unwrap(),
            0
        );
        let names: Vec<String> =
            sqlx::query_scalar("SELECT username FROM users ORDER BY id LIMIT 2")
                .fetch_all(&mut conn)
                .await
                .unwrap();
        assert_eq!(names, ["seed_ab12cd_1", "seed_ab12cd_2"]);
        let key: String = sqlx::query_scalar("SELECT identity_pubkey FROM devices LIMIT 1")
            .fetch_one(&mut conn)
            .await
            .unwrap();
        kavro_proto::validate::pubkey_hex(&key).unwrap();
        // The same prefix again would duplicate usernames: refused, and said why.
        let err = format!("{:#}", run(&plan(&url, 2, 0)).await.unwrap_err());
        assert!(err.contains("--run-id"), "{err}");
    }
}
