//! Attachments on this machine (issue #14): what the end-to-end part needs
//! around it (`kavro_proto::attachment` seals, `transfer` moves the blob,
//! `v2::files` and `session::files` announce it): safe names and the
//! downloads directory for received files, and the progress bar of a
//! transfer.

pub mod names;
mod pipeline;
pub mod progress;
pub mod transfer;
