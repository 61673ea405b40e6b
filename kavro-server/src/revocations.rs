//! Session revocations made outside this process reach it: every second the
//! relay reads the token generations the database raised lately and puts
//! them into its counters. `kavro-server admin users disable` (another
//! process) raises a generation in the database; with Redis it also writes
//! the shared counters at once, and without Redis (in-process counters) this
//! loop is what makes the running relay refuse the old tokens.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::{after, before};
use crate::state::AppState;
use crate::store::StoreError;

/// How often the database is asked.
pub const POLL_EVERY: Duration = Duration::from_secs(1);

/// Revocations are read again for this long, so one committed a little
/// late, or stamped by a host whose clock is a little behind, is not missed.
/// Applying one twice changes nothing.
const OVERLAP: Duration = Duration::from_secs(10);

/// Applies the revocations recorded at or after `since`; returns how many.
pub async fn apply_since(
    state: &AppState,
    since: chrono::DateTime<chrono::Utc>,
) -> Result<usize, StoreError> {
    let revoked = state.store.revoked_generations(since).await?;
    for entry in &revoked {
        let until = after(entry.revoked_at, state.settings.token_ttl);
        // A refusal is logged by the limiter; the next poll tries again.
        let _ = state
            .limiter
            .revoke_generation(entry.user, entry.generation, until)
            .await;
    }
    Ok(revoked.len())
}

/// Polls every [`POLL_EVERY`] until `stop` is cancelled.
pub async fn run(state: Arc<AppState>, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(POLL_EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {
                let since = before(state.clock.now(), OVERLAP);
                if let Err(err) = apply_since(&state, since).await {
                    tracing::warn!(error = %crate::error::error_chain(&err), "reading session revocations failed; will retry");
                }
            }
        }
    }
}
