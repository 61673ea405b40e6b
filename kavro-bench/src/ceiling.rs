//! `ceiling`: what PostgreSQL itself does on this machine with the simplest
//! write a relay could make per message, next to the relay's own sends, in
//! one run (issue #15, point 6).
//!
//! pgbench runs a plain single-row `INSERT … RETURNING id` into a table
//! shaped like the relay's `messages` (same columns, the recipient index),
//! one commit per insert, at the run's concurrency with `-M prepared` (the
//! relay's driver prepares its statements), for the run's duration, in a
//! database of its own that is dropped afterwards. Then the relay's `send`
//! load runs for the same time at the same concurrency, and the report puts
//! both figures and their ratio side by side. The relay may be on SQLite:
//! the ceiling is still PostgreSQL's, the same yardstick for both backends.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context as _, bail};
use serde_json::{Map, Value, json};
use sqlx::Connection as _;
use sqlx::postgres::{PgConnectOptions, PgConnection};

/// Recipients (and senders) the inserts spread over, like `--users`.
const PGBENCH_USERS: usize = 100;

/// The table, shaped like the relay's `messages` (kavro-server's PostgreSQL
/// migrations): the columns a send writes and the index a recipient's
/// inbox read uses.
const SCHEMA: &str = "CREATE TABLE messages (
    id               BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    sender_id        BIGINT      NOT NULL,
    recipient_id     BIGINT      NOT NULL,
    ciphertext       BYTEA       NOT NULL,
    ephemeral_pubkey TEXT        NOT NULL,
    created_at       TIMESTAMPTZ NOT NULL,
    expires_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX messages_recipient ON messages (recipient_id, id)";

/// How to reach PostgreSQL and pgbench.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CeilingPlan {
    /// A PostgreSQL URL whose user may create databases; its database is
    /// only used to create and drop the run's own. pgbench gets its host,
    /// port and user (a password reaches it through `PGPASSWORD`).
    pub admin_url: String,
    /// The pgbench executable.
    pub pgbench: PathBuf,
    /// pgbench worker threads (`-j`).
    pub threads: usize,
}

/// What pgbench reported.
#[derive(Debug, Clone, PartialEq)]
pub struct Pgbench {
    pub tps: f64,
    pub latency_avg_ms: Option<f64>,
    pub transactions: u64,
    pub failed: u64,
}

impl Pgbench {
    /// The figures of the report: pgbench's, the relay's and their ratio.
    pub fn figures(&self, relay_sends_per_s: f64, concurrency: usize) -> Map<String, Value> {
        let mut map = Map::new();
        map.insert("pgbench_insert_tps".into(), json!(self.tps));
        if let Some(latency) = self.latency_avg_ms {
            map.insert("pgbench_latency_avg_ms".into(), json!(latency));
        }
        map.insert("pgbench_transactions".into(), json!(self.transactions));
        map.insert("pgbench_failed".into(), json!(self.failed));
        map.insert("pgbench_clients".into(), json!(concurrency));
        map.insert("relay_sends_per_s".into(), json!(relay_sends_per_s));
        if self.tps > 0.0 {
            map.insert(
                "relay_to_ceiling_ratio".into(),
                json!(relay_sends_per_s / self.tps),
            );
        }
        map
    }
}

/// Parses pgbench's summary (PostgreSQL 13 and later print one `tps` line
/// "without initial connection time"; older ones two, "including" and
/// "excluding connections establishing": the latter is taken).
pub fn parse_pgbench(output: &str) -> anyhow::Result<Pgbench> {
    let mut tps = None;
    let mut latency_avg_ms = None;
    let mut transactions = None;
    let mut failed = 0;
    for line in output.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("tps = ") {
            if rest.contains("including connections establishing") {
                continue;
            }
            tps = Some(first_number(rest).context("pgbench's tps line has no number")?);
        } else if let Some(rest) = line.strip_prefix("latency average = ") {
            let value = first_number(rest).context("pgbench's latency line has no number")?;
            if !rest.trim_end().ends_with("ms") {
                bail!("pgbench's latency is not in ms: {line:?}");
            }
            latency_avg_ms = Some(value);
        } else if let Some(rest) = line.strip_prefix("number of transactions actually processed: ")
        {
            transactions = Some(
                rest.split(['/', ' '])
                    .next()
                    .and_then(|n| n.parse::<u64>().ok())
                    .context("pgbench's transaction count is not a number")?,
            );
        } else if let Some(rest) = line.strip_prefix("number of failed transactions: ") {
            failed = rest
                .split(' ')
                .next()
                .and_then(|n| n.parse::<u64>().ok())
                .context("pgbench's failed count is not a number")?;
        }
    }
    let (Some(tps), Some(transactions)) = (tps, transactions) else {
        bail!("pgbench printed no tps / transaction count: {output:?}");
    };
    if !tps.is_finite() || tps < 0.0 {
        bail!("pgbench printed an impossible tps: {tps}");
    }
    Ok(Pgbench {
        tps,
        latency_avg_ms,
        transactions,
        failed,
    })
}

fn first_number(text: &str) -> Option<f64> {
    text.split_whitespace()
        .next()
        .and_then(|n| n.parse::<f64>().ok())
}

/// The pgbench script: one plain single-row insert, one commit.
fn script(message_bytes: usize) -> String {
    let ciphertext = "ab".repeat(message_bytes);
    format!(
        "\\set sender random(1, :users)\n\
         \\set recipient random(1, :users)\n\
         INSERT INTO messages (sender_id, recipient_id, ciphertext, ephemeral_pubkey, created_at, expires_at) \
         VALUES (:sender, :recipient, '\\x{ciphertext}'::bytea, \
         'cc2a5e2d0878cdf5981b36207824be2e1c995fcb112d976a1aa39c8014937bef', now(), now() + interval '30 days') \
         RETURNING id;\n"
    )
}

/// Creates the run's database, runs pgbench in it for `duration` at
/// `clients`, and drops the database (also when pgbench failed).
pub async fn measure(
    plan: &CeilingPlan,
    run_id: &str,
    clients: usize,
    duration: Duration,
    message_bytes: usize,
) -> anyhow::Result<Pgbench> {
    let admin: PgConnectOptions = plan
        .admin_url
        .parse()
        .context("--pg-url is not a PostgreSQL URL")?;
    let database = format!("kavro_ceiling_{}", run_id.to_ascii_lowercase());
    if !database
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        bail!("--run-id {run_id:?} does not make a plain database name");
    }
    let mut conn = PgConnection::connect_with(&admin)
        .await
        .with_context(|| format!("cannot connect to PostgreSQL at {}", safe_url(&admin)))?;
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {database}")))
        .execute(&mut conn)
        .await
        .context("cannot create the ceiling's database (does the user have CREATEDB?)")?;
    let outcome = run_in(plan, &admin, &database, clients, duration, message_bytes).await;
    let dropped = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {database} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await;
    if let Err(err) = dropped {
        eprintln!("warning: could not drop the ceiling's database {database}: {err}");
    }
    outcome
}

async fn run_in(
    plan: &CeilingPlan,
    admin: &PgConnectOptions,
    database: &str,
    clients: usize,
    duration: Duration,
    message_bytes: usize,
) -> anyhow::Result<Pgbench> {
    let options = admin.clone().database(database);
    let mut conn = PgConnection::connect_with(&options).await?;
    sqlx::raw_sql(SCHEMA)
        .execute(&mut conn)
        .await
        .context("cannot create the ceiling's table")?;
    conn.close().await?;
    let script_path = std::env::temp_dir().join(format!("{database}.sql"));
    tokio::fs::write(&script_path, script(message_bytes))
        .await
        .with_context(|| format!("cannot write {}", script_path.display()))?;
    let result = pgbench(plan, &options, &script_path, clients, duration).await;
    drop(tokio::fs::remove_file(&script_path).await);
    result
}

async fn pgbench(
    plan: &CeilingPlan,
    options: &PgConnectOptions,
    script_path: &Path,
    clients: usize,
    duration: Duration,
) -> anyhow::Result<Pgbench> {
    let seconds = duration.as_secs_f64().ceil().max(1.0);
    let mut command = tokio::process::Command::new(&plan.pgbench);
    command
        .args(["-n", "-M", "prepared"])
        .arg("-h")
        .arg(options.get_host())
        .arg("-p")
        .arg(options.get_port().to_string())
        .arg("-U")
        .arg(options.get_username())
        .arg("-c")
        .arg(clients.to_string())
        .arg("-j")
        .arg(plan.threads.min(clients).max(1).to_string())
        .arg("-T")
        .arg(format!("{seconds:.0}"))
        .arg("-D")
        .arg(format!("users={PGBENCH_USERS}"))
        .arg("-f")
        .arg(script_path)
        .arg(options.get_database().unwrap_or("postgres"))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    let output = command
        .output()
        .await
        .with_context(|| format!("cannot run {}", plan.pgbench.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "pgbench failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        );
    }
    parse_pgbench(&stdout)
}

/// The server part of a URL, without its password.
fn safe_url(options: &PgConnectOptions) -> String {
    format!(
        "{}@{}:{}",
        options.get_username(),
        options.get_host(),
        options.get_port()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const PG15: &str = "pgbench (15.20 (Debian 15.20-0+deb12u1))
transaction type: /tmp/kavro_ceiling_x.sql
scaling factor: 1
query mode: prepared
number of clients: 32
number of threads: 2
maximum number of tries: 1
duration: 15 s
number of transactions actually processed: 123510
number of failed transactions: 0 (0.000%)
latency average = 3.885 ms
initial connection time = 25.123 ms
tps = 8234.123456 (without initial connection time)
";

    const PG12: &str = "transaction type: send.sql
scaling factor: 1
query mode: prepared
number of clients: 32
number of threads: 2
duration: 30 s
number of transactions actually processed: 97050
latency average = 9.893 ms
tps = 3234.901 (including connections establishing)
tps = 3235.125 (excluding connections establishing)
";

    #[test]
    fn parses_pgbench_15() {
        let figures = parse_pgbench(PG15).unwrap();
        assert_eq!(
            figures,
            Pgbench {
                tps: 8_234.123_456,
                latency_avg_ms: Some(3.885),
                transactions: 123_510,
                failed: 0,
            }
        );
    }

    #[test]
    fn parses_older_pgbench_excluding_connections() {
        let figures = parse_pgbench(PG12).unwrap();
        assert_eq!((figures.tps, figures.transactions), (3235.125, 97_050));
        assert_eq!(figures.latency_avg_ms, Some(9.893));
    }

    #[test]
    fn counts_failed_transactions() {
        let text = PG15.replace(
            "number of failed transactions: 0 (0.000%)",
            "number of failed transactions: 12 (0.010%)",
        );
        assert_eq!(parse_pgbench(&text).unwrap().failed, 12);
    }

    #[test]
    fn refuses_output_without_figures() {
        for bad in [
            "",
            "pgbench: error: connection to server failed",
            // tps but no transaction count
            "tps = 12.5 (without initial connection time)\n",
            &PG15.replace("tps = 8234.123456", "tps = many"),
            &PG15.replace("tps = 8234.123456", "tps = -3"),
            &PG15.replace("tps = 8234.123456", "tps = NaN"),
            &PG15.replace("processed: 123510", "processed: lots"),
            &PG15.replace("3.885 ms", "3.885 s"),
            &PG15.replace("transactions: 0 (", "transactions: x ("),
        ] {
            assert!(parse_pgbench(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn figures_hold_the_ratio() {
        let pgbench = parse_pgbench(PG15).unwrap();
        let figures = pgbench.figures(4117.06, 32);
        let ratio = figures["relay_to_ceiling_ratio"].as_f64().unwrap();
        assert!((ratio - 0.5).abs() < 1e-3, "{ratio}");
        assert_eq!(figures["pgbench_clients"], 32);
        let none = Pgbench {
            tps: 0.0,
            ..pgbench
        }
        .figures(10.0, 32);
        assert!(!none.contains_key("relay_to_ceiling_ratio"));
    }

    #[test]
    fn the_script_inserts_one_row_with_the_message_size() {
        let text = script(200);
        assert_eq!(text.matches("INSERT INTO messages").count(), 1);
        assert!(text.contains(&format!("'\\x{}'", "ab".repeat(200))));
        assert!(text.trim_end().ends_with("RETURNING id;"));
    }
}
