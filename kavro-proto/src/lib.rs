//! Kavro's shared vocabulary: the wire types of every relay route, the rules for
//! valid input, and (in [`crypto`]) the end-to-end envelope.
//!
//! The relay (`kavro-server`) and the client (`kavro`) both depend on this crate,
//! so the two cannot disagree on a field name or a limit. With the `openapi`
//! feature the same types also describe themselves to poem-openapi, which is
//! how the server's `/openapi.json` documents exactly what the client parses.
#![forbid(unsafe_code)]

pub mod api;
pub mod crypto;
pub mod ids;
pub mod strings;
pub mod v2;
pub mod validate;

pub use ids::{DeviceId, MessageId, UserId};
