//! The Kavro client: an end-to-end encrypted chat client for the Kavro relay.
//!
//! The library is split so that the scripted subcommands (`cli`) and the
//! interactive chat app share one core:
//!
//! - `paths` and `config`: where files live, and the per-profile config;
//! - `keystore`: the identity secret and access token (OS keyring or a 0600 file);
//! - `relay`: the relay's HTTP API behind the `relay::Relay` trait
//!   (`relay::HttpRelay` for real, `relay::MemoryRelay` in unit tests only);
//! - `history`: the local SQLite store (contacts, messages, outbox);
//! - `pinning`: the trust-on-first-use state machine for contacts' keys;
//! - `mls` and `v2`: Kavro v2 (MLS groups, devices): the local MLS state
//!   and the `/v2` client with its operations;
//! - `attach`: attachments on this machine (safe names for received files,
//!   the downloads directory, the progress bar);
//! - `session`: the operations (register, send, sync the inbox, trust, ...),
//!   free of terminal code;
//! - `cli`: argument parsing, output formatting and exit codes;
//! - `app` and `ui`: the chat app (`kavro` with no subcommand): state,
//!   pure `update`, the network worker, and rendering.
#![forbid(unsafe_code)]

mod app;
mod attach;
mod cli;
mod config;
mod history;
mod keystore;
mod mls;
mod paths;
mod pinning;
mod relay;
mod session;
mod ui;
mod v2;

pub use cli::main;
