//! The retention sweep: drops the ciphertext of messages whose time to live
//! ran out, deletes receipts older than the receipt TTL, and releases the
//! names of accounts deleted longer ago than the reservation period. Acknowledged
//! messages lose their ciphertext at once (in the ack itself).

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::clock::before;
use crate::state::AppState;
use crate::store::{StoreError, SweepCutoffs, SweepReport};

/// One sweep at the state's current time.
pub async fn sweep_once(state: &AppState) -> Result<SweepReport, StoreError> {
    let now = state.clock.now();
    let report = state
        .store
        .sweep(SweepCutoffs {
            now,
            receipts_before: before(now, state.settings.receipt_ttl),
            names_before: before(now, state.settings.username_reservation),
        })
        .await?;
    if report.expired > 0 || report.purged > 0 || report.names_released > 0 {
        tracing::info!(
            expired = report.expired,
            purged = report.purged,
            names_released = report.names_released,
            "retention sweep"
        );
    }
    metrics::counter!("kavro_sweeps_total").increment(1);
    metrics::counter!("kavro_messages_expired_total").increment(report.expired);
    metrics::counter!("kavro_receipts_purged_total").increment(report.purged);
    match state.v2.store.sweep_v2(now).await {
        Ok(v2) if v2 != crate::store::v2::V2SweepReport::default() => {
            tracing::info!(?v2, "v2 retention sweep");
        }
        Ok(_) => {}
        Err(err) => {
            tracing::warn!(error = %crate::error::error_chain(&err), "v2 retention sweep failed; will retry");
        }
    }
    match state.v2.blobs.collect(now).await {
        Ok(0) => {}
        Ok(blobs) => tracing::info!(blobs, "blob retention sweep"),
        Err(err) => {
            tracing::warn!(error = %crate::error::error_chain(&err), "blob retention sweep failed; will retry");
        }
    }
    Ok(report)
}

/// Sweeps every `interval` until `stop` is cancelled.
pub async fn run(state: Arc<AppState>, interval: Duration, stop: CancellationToken) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = ticker.tick() => {
                if let Err(err) = sweep_once(&state).await {
                    tracing::warn!(error = %crate::error::error_chain(&err), "retention sweep failed; will retry");
                }
            }
        }
    }
}
