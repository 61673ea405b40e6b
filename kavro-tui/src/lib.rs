//! The Kavro client: an end-to-end encrypted chat client for the Kavro relay.
//!
//! The library is split so that the scripted subcommands (`cli`) and the
//! interactive chat app share one core:
//!
//! - [`paths`] and [`config`]: where files live, and the per-profile config;
//! - [`keystore`]: the identity secret and access token (OS keyring or a 0600 file);
//! - [`relay`]: the relay's HTTP API behind the [`relay::Relay`] trait
//!   ([`relay::HttpRelay`] for real, [`relay::MemoryRelay`] for tests);
//! - [`history`]: the local SQLite store (contacts, messages, outbox);
//! - [`pinning`]: the trust-on-first-use state machine for contacts' keys;
//! - [`session`]: the operations (register, send, sync the inbox, trust, ...),
//!   free of terminal code;
//! - [`cli`]: argument parsing, output formatting and exit codes;
//! - [`app`] and [`ui`]: the chat app (`kavro` with no subcommand): state,
//!   pure `update`, the network worker, and rendering.
#![forbid(unsafe_code)]

pub mod app;
pub mod cli;
pub mod config;
pub mod history;
pub mod keystore;
pub mod paths;
pub mod pinning;
pub mod relay;
pub mod session;
pub mod ui;

pub use session::{Session, SessionError};
