//! The `admin` subcommands of `kavro-server`: parsing and printing around
//! [`kavro_server::admin::Admin`].

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use clap::Subcommand;
use kavro_server::admin::Admin;
use kavro_server::clock::SystemClock;
use kavro_server::config::Config;
use kavro_server::store::ops::{AccountSummary, InviteRecord};
use serde_json::json;

#[derive(Subcommand, Debug)]
pub enum AdminCommand {
    /// Accounts: list, disable, enable, delete.
    #[command(subcommand)]
    Users(UsersCommand),
    /// Invite codes for `registration = "invite"`.
    #[command(subcommand)]
    Invites(InvitesCommand),
}

#[derive(Subcommand, Debug)]
pub enum UsersCommand {
    /// Every account: created, last seen (login), keys, devices, pending messages.
    List {
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Refuse the account's logins and end its sessions on every instance.
    Disable { name: String },
    /// Let a disabled account log in again.
    Enable { name: String },
    /// Delete the account as its owner's own deletion does.
    Delete { name: String },
}

#[derive(Subcommand, Debug)]
pub enum InvitesCommand {
    /// Create a code (printed once; only its hash is stored).
    Create {
        /// How many registrations the code admits.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// How long the code stays valid, e.g. `7d`, `12h` (default: no expiry).
        #[arg(long, value_parser = humantime::parse_duration)]
        expires: Option<Duration>,
    },
    /// Every code: id, uses, expiry, state.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a code by its id (from `list`) or the code itself.
    Revoke { id_or_code: String },
}

pub async fn run(command: AdminCommand, config: &Config) -> anyhow::Result<()> {
    let admin = Admin::open(config, Arc::new(SystemClock)).await?;
    match command {
        AdminCommand::Users(UsersCommand::List { json }) => {
            let users = admin.users().await?;
            if json {
                let rows: Vec<_> = users.iter().map(user_json).collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                print_users(&users);
            }
        }
        AdminCommand::Users(UsersCommand::Disable { name }) => {
            let account = admin.disable(&name).await?;
            println!(
                "disabled {}: its logins are refused and its sessions ended",
                account.username
            );
        }
        AdminCommand::Users(UsersCommand::Enable { name }) => {
            if admin.enable(&name).await? {
                println!("enabled {name}: it can log in again");
            } else {
                println!("{name} was not disabled; nothing changed");
            }
        }
        AdminCommand::Users(UsersCommand::Delete { name }) => {
            let deleted = admin.delete(&name).await?;
            println!(
                "deleted {name} ({} queued messages to it deleted)",
                deleted.messages_deleted
            );
        }
        AdminCommand::Invites(InvitesCommand::Create { uses, expires }) => {
            let created = admin.create_invite(uses, expires).await?;
            println!("{}", created.code);
            eprintln!(
                "invite {}: {} use(s), {}; shown only now",
                created.id.0,
                uses,
                created.record.expires_at.map_or_else(
                    || "no expiry".to_owned(),
                    |t| format!("expires {}", time(t))
                )
            );
        }
        AdminCommand::Invites(InvitesCommand::List { json }) => {
            let invites = admin.invites().await?;
            if json {
                let rows: Vec<_> = invites.iter().map(invite_json).collect();
                println!("{}", serde_json::Value::Array(rows));
            } else {
                print_invites(&invites, Utc::now());
            }
        }
        AdminCommand::Invites(InvitesCommand::Revoke { id_or_code }) => {
            let id = admin.revoke_invite(&id_or_code).await?;
            println!("revoked invite {}", id.0);
        }
    }
    Ok(())
}

fn time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn maybe_time(t: Option<DateTime<Utc>>) -> String {
    t.map_or_else(|| "-".to_owned(), time)
}

fn user_json(u: &AccountSummary) -> serde_json::Value {
    json!({
        "id": u.id.0,
        "username": u.username,
        "created_at": time(u.created_at),
        "last_seen_at": u.last_seen_at.map(time),
        "disabled_at": u.disabled_at.map(time),
        "keys": u.keys,
        "devices": u.devices,
        "pending_messages": u.pending,
    })
}

fn print_users(users: &[AccountSummary]) {
    println!(
        "{:<30} {:<20} {:<20} {:>4} {:>7} {:>7}  STATUS",
        "USERNAME", "CREATED", "LAST SEEN", "KEYS", "DEVICES", "PENDING"
    );
    for u in users {
        println!(
            "{:<30} {:<20} {:<20} {:>4} {:>7} {:>7}  {}",
            u.username,
            time(u.created_at),
            maybe_time(u.last_seen_at),
            u.keys,
            u.devices,
            u.pending,
            if u.disabled_at.is_some() {
                "disabled"
            } else {
                "active"
            }
        );
    }
}

fn invite_state(i: &InviteRecord, now: DateTime<Utc>) -> &'static str {
    if i.revoked_at.is_some() {
        "revoked"
    } else if i.uses >= i.max_uses {
        "used up"
    } else if i.expires_at.is_some_and(|t| t <= now) {
        "expired"
    } else {
        "valid"
    }
}

fn invite_json(i: &InviteRecord) -> serde_json::Value {
    json!({
        "id": i.id.0,
        "uses": i.uses,
        "max_uses": i.max_uses,
        "created_at": time(i.created_at),
        "expires_at": i.expires_at.map(time),
        "revoked_at": i.revoked_at.map(time),
        "state": invite_state(i, Utc::now()),
    })
}

fn print_invites(invites: &[InviteRecord], now: DateTime<Utc>) {
    println!(
        "{:>6} {:>9} {:<20} {:<20}  STATE",
        "ID", "USES", "CREATED", "EXPIRES"
    );
    for i in invites {
        println!(
            "{:>6} {:>9} {:<20} {:<20}  {}",
            i.id.0,
            format!("{}/{}", i.uses, i.max_uses),
            time(i.created_at),
            maybe_time(i.expires_at),
            invite_state(i, now)
        );
    }
}
