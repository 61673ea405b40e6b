//! The Kavro relay: an HTTP service that stores only opaque ciphertext between
//! end-to-end encrypted clients. See `ARCHITECTURE.md` for the map.
#![forbid(unsafe_code)]

pub mod admin;
pub mod api;
pub mod audit;
pub mod auth;
pub mod blobs;
pub mod bootstrap;
pub mod clock;
pub mod config;
pub mod error;
pub mod fieldcrypt;
pub mod http;
pub mod limits;
pub mod redis_link;
pub mod retention;
pub mod revocations;
pub mod secret;
pub mod server;
pub mod state;
pub mod store;
pub mod tls;
pub mod v2;
pub mod wake;

#[cfg(any(test, feature = "testing"))]
pub mod testing;
