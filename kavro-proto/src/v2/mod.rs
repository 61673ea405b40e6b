//! Kavro v2: the relay's half of MLS (RFC 9420). Devices with signed device
//! links, key packages, groups with one order per group and per-device queues.
//!
//! - [`api`]: the request and response bodies of every `/v2` route;
//! - [`blobs`]: the relay's blob store for attachments (ids, upload status);
//! - [`limits`]: the bounds both sides check (sizes, counts, times);
//! - [`chain`]: the client's check of an account's chain of device links
//!   from its (pinned) root device;
//! - [`link`]: the exact bytes a device signs to link another device or to
//!   open a session, and their verification (Ed25519);
//! - [`suites`]: the MLS ciphersuites Kavro speaks (classic and post-quantum);
//! - [`mls`] (feature `mls`): what a Delivery Service reads of an MLS message
//!   (group id, epoch, content type) and the key package checks, on openmls.
//!
//! docs/PROTOCOL.md ("Kavro v2") is the contract in prose.

pub mod api;
pub mod blobs;
pub mod chain;
pub mod ids;
pub mod limits;
pub mod link;
#[cfg(feature = "mls")]
pub mod mls;
mod strings;
pub mod suites;

pub use blobs::{BlobHolder, BlobId, BlobStatus, NewBlob};
pub use ids::{GroupId, MlsDeviceId, QueueSeq, V2MessageId};
pub use strings::{GroupIdText, MlsBytes, SignatureB64, SignatureKeyB64};
