//! Kavro v2 (MLS) on the relay: what the `/v2` handlers share beyond the v1
//! [`AppState`](crate::state::AppState): the v2 store and device tokens.
//! The routes are in `api/v2/`, the persistence in `store/v2.rs`.

pub mod tokens;

use std::sync::Arc;

use crate::store::v2::V2Store;

pub use tokens::DeviceTokens;

pub struct V2State {
    pub store: Arc<dyn V2Store>,
    pub tokens: DeviceTokens,
    /// The blob store (attachments).
    pub blobs: Arc<crate::blobs::Blobs>,
}
