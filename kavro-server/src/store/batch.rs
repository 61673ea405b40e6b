//! Group commit: concurrent writes share one transaction, and so one disk
//! flush. With `synchronous = FULL` (SQLite) or `synchronous_commit = on`
//! (PostgreSQL) every commit waits for the disk, and under load a relay
//! spent its time on one commit per queue write (docs/BENCHMARKS.md). Writes
//! sent here are queued to a writer task (a *lane*), which takes every write
//! waiting (up to a maximum) into one transaction and commits once.
//!
//! - It never waits for a batch to fill: a lone write is committed at once
//!   (in a plain transaction, without a savepoint), so light load keeps its
//!   latency.
//! - Each write of a larger batch runs inside its own savepoint: a write
//!   that fails is rolled back alone, and the others in its batch still
//!   commit. Writes that undo their own refusals
//!   ([`GroupCommit::write_atomic_keyed`], PostgreSQL's sends and acks) skip
//!   the savepoints, which cost two round trips each on PostgreSQL; when one
//!   of them fails, its batch is rolled back and run again with savepoints.
//! - Each caller gets its answer only after the commit that holds its write
//!   returned (durable), or an error (`503`) when that commit failed.
//! - Each write carries a *lock key*; a batch runs its writes sorted by key
//!   (stable: equal keys keep their queue order) and a key always goes to
//!   the same lane. On PostgreSQL the key is the recipient whose
//!   `inbox_counts` row the write locks first, so every batch takes those
//!   locks in one global order, as single writes do (no deadlock across
//!   lanes and instances), and one recipient's writes keep their order. On
//!   SQLite there is one lane and one key: the single writer in queue order,
//!   so a device's `seq` order is the order of the writes.
//!
//! A lane takes a connection from its pool per batch, so the writes that do
//! not come through here interleave with the batches.

use std::ops::DerefMut;
use std::panic::AssertUnwindSafe;
use std::sync::{Arc, Mutex, PoisonError};

use futures_util::FutureExt as _;
use futures_util::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use crate::error::error_chain;
use crate::store::StoreError;

/// What a lane needs from a database: a transaction and three statements.
pub(crate) trait Writer: Clone + Send + Sync + 'static {
    type Conn: Send + 'static;
    type Tx: DerefMut<Target = Self::Conn> + Send + 'static;
    fn begin(&self) -> BoxFuture<'_, Result<Self::Tx, sqlx::Error>>;
    fn commit(tx: Self::Tx) -> BoxFuture<'static, Result<(), sqlx::Error>>;
    fn rollback(tx: Self::Tx) -> BoxFuture<'static, Result<(), sqlx::Error>>;
    /// Runs one of the fixed savepoint statements.
    fn run<'c>(
        conn: &'c mut Self::Conn,
        sql: &'static str,
    ) -> BoxFuture<'c, Result<(), sqlx::Error>>;
}

macro_rules! writer_for {
    ($pool:ty, $db:ty, $conn:ty) => {
        impl Writer for $pool {
            type Conn = $conn;
            type Tx = sqlx::Transaction<'static, $db>;
            fn begin(&self) -> BoxFuture<'_, Result<Self::Tx, sqlx::Error>> {
                Box::pin(sqlx::Pool::begin(self))
            }
            fn commit(tx: Self::Tx) -> BoxFuture<'static, Result<(), sqlx::Error>> {
                Box::pin(tx.commit())
            }
            fn rollback(tx: Self::Tx) -> BoxFuture<'static, Result<(), sqlx::Error>> {
                Box::pin(tx.rollback())
            }
            fn run<'c>(
                conn: &'c mut Self::Conn,
                sql: &'static str,
            ) -> BoxFuture<'c, Result<(), sqlx::Error>> {
                Box::pin(async move {
                    sqlx::query(sql).execute(conn).await?;
                    Ok(())
                })
            }
        }
    };
}

writer_for!(sqlx::SqlitePool, sqlx::Sqlite, sqlx::SqliteConnection);
writer_for!(sqlx::PgPool, sqlx::Postgres, sqlx::PgConnection);

/// How one write of a batch ended, as its lane sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    /// It wrote what it had to.
    Done,
    /// It refused and left nothing written: the transaction goes on intact.
    Refused,
    /// It failed: what it wrote must be rolled back, and on PostgreSQL the
    /// whole transaction is aborted.
    Failed,
}

/// Runs one queued write and keeps its result for its [`Answer`]. A
/// repeatable write may be run again after its batch was rolled back.
type Run<C> = Box<dyn for<'c> FnMut(&'c mut C) -> BoxFuture<'c, Step> + Send>;

/// Answers one caller once its batch's fate is known (`None`: committed).
type Answer = Box<dyn FnOnce(Option<&sqlx::Error>) + Send>;

/// Where a write leaves its result until the batch's fate is known.
type Slot<R> = Arc<Mutex<Option<R>>>;

fn put<R>(slot: &Slot<R>, result: R) {
    *slot.lock().unwrap_or_else(PoisonError::into_inner) = Some(result);
}

fn take<R>(slot: &Slot<R>) -> Option<R> {
    slot.lock().unwrap_or_else(PoisonError::into_inner).take()
}

/// One queued write and the key it locks first.
struct Keyed<C> {
    key: i64,
    /// Its refusals write nothing and it may run twice (see
    /// [`GroupCommit::write_atomic_keyed`]).
    repeatable: bool,
    run: Run<C>,
    answer: Answer,
}

/// The queues of writes in front of the lanes. A lane's task ends when the
/// last handle is dropped (the store with it).
pub(crate) struct GroupCommit<W: Writer> {
    lanes: Vec<mpsc::UnboundedSender<Keyed<W::Conn>>>,
}

impl<W: Writer> Clone for GroupCommit<W> {
    fn clone(&self) -> Self {
        Self {
            lanes: self.lanes.clone(),
        }
    }
}

impl<W: Writer> GroupCommit<W> {
    /// Starts `lanes` writer tasks on `writer` (at least one), each taking
    /// up to `max_batch` writes per transaction. The queues are unbounded:
    /// their callers are HTTP requests, bounded by the relay's connection
    /// cap.
    pub(crate) fn start(writer: &W, lanes: usize, max_batch: usize) -> Self {
        let lanes = (0..lanes.max(1))
            .map(|_| {
                let (jobs, queue) = mpsc::unbounded_channel();
                tokio::spawn(run(writer.clone(), queue, max_batch.max(1)));
                jobs
            })
            .collect();
        Self { lanes }
    }

    /// Runs `work` in the next batch and returns its result once the batch
    /// committed. A write that fails returns its own error, whatever the
    /// batch; a write that succeeded but whose commit failed returns
    /// [`StoreError::Unavailable`].
    pub(crate) async fn write<T, E, F>(&self, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: for<'c> FnOnce(&'c mut W::Conn) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
    {
        self.write_keyed(0, work).await
    }

    /// [`Self::write`] for a write whose first lock is on `key` (see the
    /// module doc): the lane is chosen by the key, and batches run their
    /// writes in key order. In a batch the write runs in its own savepoint.
    pub(crate) async fn write_keyed<T, E, F>(&self, key: i64, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: for<'c> FnOnce(&'c mut W::Conn) -> BoxFuture<'c, Result<T, E>> + Send + 'static,
    {
        let slot: Slot<Result<T, E>> = Arc::default();
        let kept = slot.clone();
        let mut work = Some(work);
        let run: Run<W::Conn> = Box::new(move |conn| {
            let (work, slot) = (work.take(), kept.clone());
            Box::pin(async move {
                // A batch holding a one-shot write is never run twice.
                let Some(work) = work else {
                    return Step::Failed;
                };
                let result = work(conn).await;
                let step = if result.is_ok() {
                    Step::Done
                } else {
                    Step::Failed
                };
                put(&slot, result);
                step
            })
        });
        self.submit(key, false, run, slot, |result, failed| {
            match (result, failed) {
                (Some(Ok(_)), Some(_)) | (None, _) => Err(not_committed().into()),
                (Some(result), _) => result,
            }
        })
        .await
    }

    /// A write that PostgreSQL can batch without a savepoint: `work` either
    /// writes everything and returns `Ok(Ok(_))`, or writes nothing (undoing
    /// its own changes before it returns) and returns `Ok(Err(refusal))`;
    /// `Err(_)` is a database error that may have aborted the transaction.
    /// A batch made only of such writes runs them one after the other in
    /// one transaction, one statement round trip less than
    /// `SAVEPOINT`/`RELEASE` around each; when one fails, the batch is
    /// rolled back and run again with a savepoint per write, so a failed
    /// write still fails alone. So `work` may run twice (never after a
    /// commit), and each caller is answered once, after the commit.
    pub(crate) async fn write_atomic_keyed<T, R, E, F>(
        &self,
        key: i64,
        mut work: F,
    ) -> Result<Result<T, R>, E>
    where
        T: Send + 'static,
        R: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: for<'c> FnMut(&'c mut W::Conn) -> BoxFuture<'c, Result<Result<T, R>, E>>
            + Send
            + 'static,
    {
        let slot: Slot<Result<Result<T, R>, E>> = Arc::default();
        let kept = slot.clone();
        let run: Run<W::Conn> = Box::new(move |conn| {
            let (attempt, slot) = (work(conn), kept.clone());
            Box::pin(async move {
                let result = attempt.await;
                let step = match &result {
                    Ok(Ok(_)) => Step::Done,
                    Ok(Err(_)) => Step::Refused,
                    Err(_) => Step::Failed,
                };
                put(&slot, result);
                step
            })
        });
        self.submit(key, true, run, slot, |result, failed| {
            match (result, failed) {
                (Some(Ok(Ok(_))), Some(_)) | (None, _) => Err(not_committed().into()),
                (Some(result), _) => result,
            }
        })
        .await
    }

    /// Queues `run` on `key`'s lane and waits for `finish` to turn what it
    /// left in `slot` (nothing if it never ran) and the batch's fate into
    /// the caller's answer.
    async fn submit<R, O>(
        &self,
        key: i64,
        repeatable: bool,
        run: Run<W::Conn>,
        slot: Slot<R>,
        finish: fn(Option<R>, Option<&sqlx::Error>) -> O,
    ) -> O
    where
        R: Send + 'static,
        O: Send + 'static,
    {
        let (reply, answered) = oneshot::channel();
        let answer: Answer = Box::new(move |failed: Option<&sqlx::Error>| {
            // The caller may have gone; its write stands.
            drop(reply.send(finish(take(&slot), failed)));
        });
        let lane = &self.lanes[lane_of(key, self.lanes.len())];
        let queued = Keyed {
            key,
            repeatable,
            run,
            answer,
        };
        if let Err(mpsc::error::SendError(queued)) = lane.send(queued) {
            // No lane: answered as a write that never ran.
            (queued.answer)(None);
        }
        answered.await.unwrap_or_else(|_| finish(None, None))
    }
}

fn lane_of(key: i64, lanes: usize) -> usize {
    usize::try_from(key.rem_euclid(i64::try_from(lanes).unwrap_or(1))).unwrap_or(0)
}

fn not_committed() -> StoreError {
    StoreError::Unavailable(sqlx::Error::Protocol(
        "the write's batch was not committed".into(),
    ))
}

async fn run<W: Writer>(
    writer: W,
    mut queue: mpsc::UnboundedReceiver<Keyed<W::Conn>>,
    max_batch: usize,
) {
    loop {
        let mut jobs = Vec::with_capacity(max_batch);
        if queue.recv_many(&mut jobs, max_batch).await == 0 {
            return;
        }
        metrics::histogram!("kavro_batch_writes").record(jobs.len() as f64);
        jobs.sort_by_key(|job| job.key);
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
async fn commit<W: Writer>(writer: &W, mut jobs: Vec<Keyed<W::Conn>>) {
    let outcome = run_jobs(writer, &mut jobs).await;
    if let Err(err) = &outcome {
        tracing::error!(error = %error_chain(err), writes = jobs.len(), "a batch of writes was not committed");
    }
    for job in jobs {
        (job.answer)(outcome.as_ref().err());
    }
}

async fn run_jobs<W: Writer>(writer: &W, jobs: &mut [Keyed<W::Conn>]) -> Result<(), sqlx::Error> {
    if let [job] = jobs {
        // Alone in its transaction: no savepoint; a write that did not
        // succeed is rolled back.
        let mut tx = writer.begin().await?;
        return if (job.run)(&mut *tx).await == Step::Done {
            W::commit(tx).await
        } else {
            W::rollback(tx).await
        };
    }
    if jobs.iter().all(|job| job.repeatable) {
        let mut tx = writer.begin().await?;
        let mut failed = false;
        for job in jobs.iter_mut() {
            if (job.run)(&mut *tx).await == Step::Failed {
                failed = true;
                break;
            }
        }
        if !failed {
            return W::commit(tx).await;
        }
        // Nothing of this attempt stays; run the batch again, each write in
        // its own savepoint, so the failed write fails alone.
        W::rollback(tx).await?;
        metrics::counter!("kavro_batch_retries_total").increment(1);
    }
    let mut tx = writer.begin().await?;
    for job in jobs.iter_mut() {
        W::run(&mut *tx, "SAVEPOINT batch_item").await?;
        if (job.run)(&mut *tx).await != Step::Done {
            W::run(&mut *tx, "ROLLBACK TO batch_item").await?;
        }
        W::run(&mut *tx, "RELEASE batch_item").await?;
    }
    W::commit(tx).await
}

#[cfg(test)]
mod tests {
    use futures_util::future::join_all;
    use sqlx::SqliteConnection;
    use sqlx::sqlite::SqlitePoolOptions;

    use super::*;

    async fn insert(conn: &mut SqliteConnection, value: &str) -> Result<(), StoreError> {
        sqlx::query("INSERT INTO t (v) VALUES ($1)")
            .bind(value)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }

    /// A one-connection in-memory database with table `t (v UNIQUE)`.
    async fn table_t() -> sqlx::SqlitePool {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (v TEXT NOT NULL UNIQUE)")
            .execute(&pool)
            .await
            .unwrap();
        pool
    }

    /// Writes queued together share a batch; one that fails is rolled back
    /// alone (even after a statement that succeeded) and the others commit.
    #[tokio::test]
    async fn a_failed_write_does_not_fail_its_batch() {
        let pool = table_t().await;
        let batch = GroupCommit::start(&pool, 1, 128);
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

    /// A batch runs its writes in key order (equal keys in queue order),
    /// and a lone write that fails leaves nothing.
    #[tokio::test]
    async fn a_batch_runs_in_key_order() {
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect("sqlite::memory:")
            .await
            .unwrap();
        sqlx::query("CREATE TABLE t (n INTEGER PRIMARY KEY AUTOINCREMENT, v TEXT NOT NULL UNIQUE)")
            .execute(&pool)
            .await
            .unwrap();
        let batch = GroupCommit::start(&pool, 1, 128);
        let write = |key: i64, value: &'static str| {
            batch.write_keyed(key, move |conn| {
                Box::pin(async move { insert(conn, value).await })
            })
        };
        let results =
            join_all([write(3, "c"), write(1, "a1"), write(2, "b"), write(1, "a2")]).await;
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        let stored: Vec<String> = sqlx::query_scalar("SELECT v FROM t ORDER BY n")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(stored, ["a1", "a2", "b", "c"]);
        let alone = batch
            .write(|conn| {
                Box::pin(async move {
                    insert(conn, "d").await?;
                    insert(conn, "a1").await
                })
            })
            .await;
        assert!(matches!(alone, Err(StoreError::Conflict)), "{alone:?}");
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM t WHERE v = 'd'")
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(count, 0, "the lone failed write was rolled back");
    }

    /// Writes that undo their own refusals share a transaction without
    /// savepoints; one that fails sends its batch round again with
    /// savepoints: the others are stored once, the failed one not at all,
    /// and a refusal is answered as such.
    #[tokio::test]
    async fn a_failed_atomic_write_reruns_its_batch_with_savepoints() {
        let pool = table_t().await;
        insert(&mut pool.acquire().await.unwrap(), "taken")
            .await
            .unwrap();
        let batch = GroupCommit::start(&pool, 1, 128);
        let runs = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let write = |value: &'static str| {
            let runs = runs.clone();
            batch.write_atomic_keyed(0, move |conn| {
                runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Box::pin(async move {
                    if value == "refused" {
                        return Ok(Err("no"));
                    }
                    insert(conn, value).await.map(Ok)
                })
            })
        };
        let together = |values: [&'static str; 3]| join_all(values.map(write));
        let clean = together(["a", "refused", "b"]).await;
        assert!(
            matches!(clean[..], [Ok(Ok(())), Ok(Err("no")), Ok(Ok(()))]),
            "{clean:?}"
        );
        assert_eq!(runs.swap(0, std::sync::atomic::Ordering::Relaxed), 3);
        let failed = together(["c", "taken", "d"]).await;
        assert!(
            matches!(
                failed[..],
                [Ok(Ok(())), Err(StoreError::Conflict), Ok(Ok(()))]
            ),
            "{failed:?}"
        );
        // c and taken once without savepoints, then all three with them.
        assert_eq!(runs.load(std::sync::atomic::Ordering::Relaxed), 5);
        let stored: Vec<String> = sqlx::query_scalar("SELECT v FROM t ORDER BY v")
            .fetch_all(&pool)
            .await
            .unwrap();
        assert_eq!(stored, ["a", "b", "c", "d", "taken"]);
    }

    #[test]
    fn lanes_take_every_key() {
        assert_eq!(lane_of(7, 1), 0);
        assert_eq!(lane_of(7, 4), 3);
        assert_eq!(lane_of(-1, 4), 3);
        assert_eq!(lane_of(i64::MIN, 3), 1);
    }
}
