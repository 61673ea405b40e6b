//! Group commit on SQLite's single writer. With `synchronous = FULL` every
//! commit waits for the disk, and under load the writer spent its time on
//! one commit per queue write (docs/BENCHMARKS.md, "Kavro v2"). Writes sent
//! here are queued to one task, which takes every write waiting (up to
//! [`MAX_BATCH`]) into one transaction and commits once.
//!
//! - It never waits for a batch to fill: a lone write is committed at once,
//!   so light load keeps its latency.
//! - Each write runs inside its own savepoint: a write that fails is rolled
//!   back alone, and the others in its batch still commit.
//! - Each caller gets its answer only after the commit that holds its write
//!   returned (durable), or an error (`503`) when that commit failed.
//! - The writes of a batch run one after another on the one connection, in
//!   the order they were queued, so a device's `seq` order is still the
//!   order of the writes.
//!
//! The task takes the connection from the writer pool per batch, so the
//! writes that do not come through here interleave with the batches.

use std::panic::AssertUnwindSafe;

use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use sqlx::{SqliteConnection, SqlitePool};
use tokio::sync::{mpsc, oneshot};

use crate::error::error_chain;
use crate::store::StoreError;

/// The most writes one transaction takes.
const MAX_BATCH: usize = 128;

/// Answers one caller once its batch's fate is known (`None`: committed).
type Answer = Box<dyn FnOnce(Option<&sqlx::Error>) + Send>;

/// One queued write. It says whether it succeeded (else its savepoint is
/// rolled back) and hands back how to answer its caller.
type Job =
    Box<dyn for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, (bool, Answer)> + Send>;

/// The queue of writes in front of the writer task. The task ends when the
/// last handle is dropped (the store with it).
#[derive(Clone)]
pub(super) struct GroupCommit {
    jobs: mpsc::UnboundedSender<Job>,
}

impl GroupCommit {
    /// Starts the writer task on `writer` (a pool of one connection). The
    /// queue is unbounded: its callers are HTTP requests, bounded by the
    /// relay's connection cap.
    pub(super) fn start(writer: SqlitePool) -> Self {
        let (jobs, queue) = mpsc::unbounded_channel();
        tokio::spawn(run(writer, queue));
        Self { jobs }
    }

    /// Runs `work` in the next batch and returns its result once the batch
    /// committed. A write that fails returns its own error, whatever the
    /// batch; a write that succeeded but whose commit failed returns
    /// [`StoreError::Unavailable`].
    pub(super) async fn write<T, E, F>(&self, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: for<'c> FnOnce(&'c mut SqliteConnection) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
    {
        let (answer, answered) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            Box::pin(async move {
                let result = work(conn).await;
                let ok = result.is_ok();
                let reply: Answer = Box::new(move |failed: Option<&sqlx::Error>| {
                    let result = match (result, failed) {
                        (Ok(_), Some(_)) => Err(not_committed().into()),
                        (result, _) => result,
                    };
                    // The caller may have gone; its write stands.
                    drop(answer.send(result));
                });
                (ok, reply)
            })
        });
        self.jobs.send(job).map_err(|_| E::from(not_committed()))?;
        answered
            .await
            .unwrap_or_else(|_| Err(not_committed().into()))
    }
}

fn not_committed() -> StoreError {
    StoreError::Unavailable(sqlx::Error::Protocol(
        "the write's batch was not committed".into(),
    ))
}

async fn run(writer: SqlitePool, mut queue: mpsc::UnboundedReceiver<Job>) {
    loop {
        let mut jobs = Vec::with_capacity(MAX_BATCH);
        if queue.recv_many(&mut jobs, MAX_BATCH).await == 0 {
            return;
        }
        metrics::histogram!("kavro_sqlite_batch_writes").record(jobs.len() as f64);
        // A panic drops the transaction (rolled back) and the batch's
        // answers (their callers get an error); the next batch goes on.
        if AssertUnwindSafe(commit(&writer, jobs))
            .catch_unwind()
            .await
            .is_err()
        {
            tracing::error!("a batched write panicked; its batch was rolled back");
        }
    }
}

/// Runs `jobs` in one transaction and answers each caller after the commit.
async fn commit(writer: &SqlitePool, jobs: Vec<Job>) {
    let mut answers = Vec::with_capacity(jobs.len());
    let outcome = run_jobs(writer, jobs, &mut answers).await;
    if let Err(err) = &outcome {
        tracing::error!(error = %error_chain(err), writes = answers.len(), "a batch of writes was not committed");
    }
    for answer in answers {
        answer(outcome.as_ref().err());
    }
}

async fn run_jobs(
    writer: &SqlitePool,
    jobs: Vec<Job>,
    answers: &mut Vec<Answer>,
) -> Result<(), sqlx::Error> {
    let mut tx = writer.begin().await?;
    for job in jobs {
        sqlx::query("SAVEPOINT batch_item")
            .execute(&mut *tx)
            .await?;
        let (ok, answer) = job(&mut tx).await;
        answers.push(answer);
        if !ok {
            sqlx::query("ROLLBACK TO batch_item")
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query("RELEASE batch_item").execute(&mut *tx).await?;
    }
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use futures_util::future::join_all;
    use sqlx::sqlite::SqlitePoolOptions;

    use super::*;

    async fn insert(conn: &mut SqliteConnection, value: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO t (v) VALUES ($1)")
            .bind(value)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// Writes queued together share a batch; one that fails is rolled back
    /// alone (even after a statement that succeeded) and the others commit.
    #[tokio::test]
    async fn a_failed_write_does_not_fail_its_batch() {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (v TEXT NOT NULL UNIQUE)")
            .execute(&pool)
            .await
            .unwrap();
        let batch = GroupCommit::start(pool.clone());
        let write = |values: &'static [&'static str]| {
            batch.write(move |conn| {
                Box::pin(async move {
                    for value in values {
                        insert(conn, value).await?;
                    }
                    Ok::<_, StoreError>(values.len())
                })
            })
        };
        // join_all queues every write before the writer task first runs.
        let results = join_all([
            write(&["a"]),
            write(&["b"]),
            write(&["a"]),
            write(&["d", "b"]),
            write(&["c"]),
        ])
        .await;
        let outcomes: Vec<_> = results
            .iter()
            .map(|r| match r {
                Ok(n) => Ok(*n),
                Err(StoreError::Conflict) => Err("conflict"),
                Err(other) => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            outcomes,
            [Ok(1), Ok(1), Err("conflict"), Err("conflict"), Ok(1)]
        );
        let stored: Vec<String> = sqlx::query_scalar("SELECT v FROM t ORDER BY v")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(stored, ["a", "b", "c"], "the failed write left nothing");
    }
}
