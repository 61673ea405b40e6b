//! Kavro v2 (MLS) on the relay, over HTTP: every `/v2` route and its
//! refusals on SQLite and PostgreSQL (`routes`, `links`), three openmls
//! clients through the relay (`three_clients`), and two relay instances on
//! one PostgreSQL and Redis under concurrent committers (`scaleout`), and
//! key packages per ciphersuite for post-quantum groups (`suites`), and
//! the blob store for attachments (`blobs`; with account tokens and
//! account holders for v1 attachments, `blobs_v1`).

// Scenario helpers outside #[test] fns unwrap too: a failure is a test failure.
#![allow(clippy::unwrap_used)]

#[path = "../common/mod.rs"]
mod common;

mod blobs;
mod blobs_v1;
mod client;
mod links;
mod routes;
mod scaleout;
mod suites;
mod three_clients;
