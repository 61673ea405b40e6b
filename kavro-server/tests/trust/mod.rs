//! Issue #9's relay half through the API: sessions that end everywhere
//! (password change, log out everywhere, account deletion), retired keys,
//! device names shown only to their owner, the metadata cap and the
//! restricted `/metrics`. Each scenario runs on SQLite and (in CI) PostgreSQL;
//! part of the `routes` test binary.

mod accounts;
mod keys;
mod operations;
