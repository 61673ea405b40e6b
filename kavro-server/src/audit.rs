//! The audit trail (docs/API.md part 4): one structured log line per security
//! event, under the `kavro::audit` target so operators can route it apart.
//! Lines carry usernames, user ids and client addresses, never passwords,
//! tokens or ciphertext.

use std::net::IpAddr;

use kavro_proto::UserId;

const TARGET: &str = "kavro::audit";

fn ip_text(ip: Option<IpAddr>) -> String {
    ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string())
}

pub fn registered(user: UserId, username: &str, ip: Option<IpAddr>) {
    tracing::info!(target: TARGET, event = "register", user_id = user.0, username, ip = %ip_text(ip));
}

pub fn login_succeeded(user: UserId, username: &str, ip: Option<IpAddr>) {
    tracing::info!(target: TARGET, event = "login_success", user_id = user.0, username, ip = %ip_text(ip));
}

pub fn login_failed(username: &str, ip: Option<IpAddr>) {
    tracing::warn!(target: TARGET, event = "login_failure", username = %truncate(username), ip = %ip_text(ip));
}

pub fn locked_out(username: &str, ip: Option<IpAddr>, seconds: u64) {
    tracing::warn!(target: TARGET, event = "lockout", username = %truncate(username), ip = %ip_text(ip), seconds);
}

pub fn login_while_locked(username: &str, ip: Option<IpAddr>) {
    tracing::warn!(target: TARGET, event = "login_refused_locked", username = %truncate(username), ip = %ip_text(ip));
}

pub fn key_published(user: UserId, pubkey_hex: &str, ip: Option<IpAddr>) {
    tracing::info!(target: TARGET, event = "key_publish", user_id = user.0, pubkey = pubkey_hex, ip = %ip_text(ip));
}

pub fn key_retired(user: UserId, key: kavro_proto::DeviceId, ip: Option<IpAddr>) {
    tracing::info!(target: TARGET, event = "key_retire", user_id = user.0, key_id = key.0, ip = %ip_text(ip));
}

pub fn password_changed(user: UserId, ip: Option<IpAddr>) {
    tracing::info!(target: TARGET, event = "password_change", user_id = user.0, ip = %ip_text(ip));
}

pub fn password_check_failed(user: UserId, ip: Option<IpAddr>) {
    tracing::warn!(target: TARGET, event = "password_check_failure", user_id = user.0, ip = %ip_text(ip));
}

pub fn logged_out_everywhere(user: UserId, ip: Option<IpAddr>) {
    tracing::info!(target: TARGET, event = "logout_all", user_id = user.0, ip = %ip_text(ip));
}

pub fn account_deleted(user: UserId, username: &str, ip: Option<IpAddr>) {
    tracing::info!(target: TARGET, event = "account_delete", user_id = user.0, username, ip = %ip_text(ip));
}

pub fn logged_out(user: UserId, ip: Option<IpAddr>) {
    tracing::info!(target: TARGET, event = "logout", user_id = user.0, ip = %ip_text(ip));
}

pub fn invite_used(invite: i64, user: UserId) {
    tracing::info!(target: TARGET, event = "invite_use", invite_id = invite, user_id = user.0);
}

pub fn login_refused_disabled(user: UserId, username: &str, ip: Option<IpAddr>) {
    tracing::warn!(target: TARGET, event = "login_refused_disabled", user_id = user.0, username, ip = %ip_text(ip));
}

/// An operator's action from `kavro-server admin`: who ran it is the
/// operating system's business (the process runs as the operator); the
/// action and its object are recorded here.
pub fn admin_action(action: &str, object: &str) {
    tracing::info!(target: TARGET, event = "admin", action, object = %truncate(object));
}

/// A failed login may carry anything as a username; keep log lines bounded
/// and printable.
fn truncate(name: &str) -> String {
    name.chars()
        .take(64)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}
