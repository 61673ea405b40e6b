//! The Kavro v2 subcommands: `device link|approve|list|revoke`, `group
//! create|add|remove|leave|rename|update|list|members`, and the `#GROUP` forms of `send`
//! and `history`; `inbox` applies the device's queue after v1's inbox.
//!
//! The installation's v2 state is `mls.db` in the profile's data directory
//! and the device key beside the account's secrets (see `crate::mls`).

use std::path::PathBuf;
use std::time::Duration;

use serde_json::json;

use super::args::{DeviceCommand, GroupCommand};
use super::exit::{self, UsageError};
use super::output::{Printer, json_time, sanitize};
use crate::mls::MlsStore;
use crate::mls::device_key::{self, DeviceKeyHome};
use crate::session::Session;
use crate::v2::{PQ_SUITE, SUITE, V2Error, V2Relay, V2Session, new_signer};

/// Longest group name, in characters.
const MAX_GROUP_NAME: usize = 40;
/// How long `device link` waits for the approval, and `device approve` for
/// the new device's key packages.
const LINK_POLL: Duration = Duration::from_secs(1);
const APPROVE_WAIT: Duration = Duration::from_secs(60);

/// Where this installation keeps its device key: beside the account's
/// secrets (the OS keyring, or `mls-device.key` with a file key store).
fn key_home(session: &Session) -> anyhow::Result<DeviceKeyHome> {
    Ok(crate::v2::profile::device_key_home(session)?)
}

fn db_path(session: &Session) -> PathBuf {
    crate::v2::profile::mls_db_path(session)
}

fn relay(session: &Session) -> anyhow::Result<V2Relay> {
    let server = session.profile().server();
    super::relay_client(server)
        .map(|client| V2Relay::with_client(server, client))
        .map_err(|e| session.relay_error(e).into())
}

/// Whether this installation has a v2 device key.
pub fn has_device(session: &Session) -> anyhow::Result<bool> {
    Ok(key_home(session)?.exists()?)
}

/// Opens this installation's device, or says how to get one.
pub(super) async fn open(session: &Session) -> anyhow::Result<V2Session> {
    let unlocked = session.unlock()?;
    let Some(signer) = key_home(session)?.load()? else {
        return Err(UsageError(
            "this installation is not a Kavro v2 device yet: run `kavro device link` here and approve the code on a device of the account"
                .to_owned(),
        )
        .into());
    };
    let store = MlsStore::open(&db_path(session)).await?;
    Ok(V2Session::open(relay(session)?, store, signer, &unlocked.token).await?)
}

/// Opens this installation's device for local reads (offline too).
pub(super) async fn open_local(session: &Session) -> anyhow::Result<V2Session> {
    let Some(signer) = key_home(session)?.load()? else {
        return Err(V2Error::NoDevice.into());
    };
    let store = MlsStore::open(&db_path(session)).await?;
    Ok(V2Session::open_local(relay(session)?, store, signer).await?)
}

/// After `kavro register`: this installation becomes the account's first device.
pub async fn register_first_device(session: &Session) -> anyhow::Result<()> {
    let unlocked = session.unlock()?;
    let signer = new_signer()?;
    key_home(session)?.create(&signer)?;
    let store = MlsStore::open(&db_path(session)).await?;
    let v2 = V2Session::register_first(
        relay(session)?,
        store,
        signer,
        &unlocked.token,
        &unlocked.account.username,
        unlocked.account.user_id,
    )
    .await?;
    v2.close().await;
    Ok(())
}

pub async fn device(
    session: &Session,
    printer: &Printer,
    command: &DeviceCommand,
) -> anyhow::Result<u8> {
    match command {
        DeviceCommand::Link { timeout } => {
            link(session, printer, Duration::from_secs(*timeout)).await
        }
        DeviceCommand::Approve { code } => {
            let mut v2 = open(session).await?;
            let (device, fingerprint) = v2.approve_link(code.trim()).await?;
            // The new device uploads its key packages right after the approval.
            let deadline = tokio::time::Instant::now() + APPROVE_WAIT;
            let added = loop {
                match v2.add_own_device(device.id).await {
                    Ok(added) => break added,
                    Err(V2Error::NoDevices(_)) if tokio::time::Instant::now() < deadline => {
                        tokio::time::sleep(LINK_POLL).await;
                    }
                    Err(err) => return Err(err.into()),
                }
            };
            v2.close().await;
            printer.emit(
                &format!(
                    "approved device {} (key {fingerprint}); added to {added} conversation(s)",
                    device.id
                ),
                &json!({"device_id": device.id, "fingerprint": fingerprint, "conversations": added}),
            )?;
            Ok(exit::OK)
        }
        DeviceCommand::List { username } => {
            let mut v2 = open(session).await?;
            let user = username.clone().unwrap_or_else(|| v2.username().to_owned());
            let devices = v2.devices(&user).await?;
            let own = v2.device_id();
            v2.close().await;
            for device in devices {
                let key = kavro_proto::validate::base64_strict(device.signature_key.as_str())
                    .unwrap_or_default();
                let fingerprint = crate::v2::fingerprint(&key);
                let this = device.id == own;
                let revoked = device.revoked_at.is_some();
                printer.emit(
                    &format!(
                        "{:>6}  {fingerprint}  {}{}{}",
                        device.id,
                        json_time(device.created_at),
                        if revoked { "  revoked" } else { "" },
                        if this { "  (this device)" } else { "" },
                    ),
                    &json!({
                        "device_id": device.id,
                        "fingerprint": fingerprint,
                        "created_at": json_time(device.created_at),
                        "revoked": revoked,
                        "this_device": this,
                        "linked_by": device.link.map(|l| l.signer_device_id),
                    }),
                )?;
            }
            Ok(exit::OK)
        }
        DeviceCommand::Revoke { device_id } => {
            let mut v2 = open(session).await?;
            if kavro_proto::v2::MlsDeviceId(*device_id) == v2.device_id() {
                return Err(UsageError(
                    "this is the device you are using; revoke it from another one".to_owned(),
                )
                .into());
            }
            let revoked = v2
                .revoke_device(kavro_proto::v2::MlsDeviceId(*device_id))
                .await?;
            v2.close().await;
            printer.emit(
                &format!(
                    "revoked device {} and removed it from every conversation",
                    revoked.id
                ),
                &json!({"device_id": revoked.id, "revoked": true}),
            )?;
            Ok(exit::OK)
        }
    }
}

/// `device link`: prints the code and fingerprint, waits for the approval.
async fn link(session: &Session, printer: &Printer, timeout: Duration) -> anyhow::Result<u8> {
    let unlocked = session.unlock()?;
    if has_device(session)? {
        return Err(UsageError(
            "this installation already is a Kavro v2 device (`kavro device list`)".to_owned(),
        )
        .into());
    }
    let relay = relay(session)?;
    let signer = new_signer()?;
    let started = V2Session::start_link(&relay, &unlocked.token, &signer).await?;
    printer.emit(
        &format!(
            "On a device of {} run:  kavro device approve {}\nThis device's key: {}\nWaiting for the approval...",
            unlocked.account.username, started.code, started.fingerprint
        ),
        &json!({"code": started.code, "fingerprint": started.fingerprint, "status": "pending"}),
    )?;
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let store = MlsStore::open(&db_path(session)).await?;
        match V2Session::finish_link(
            relay.clone(),
            store,
            copy_signer(&signer),
            &unlocked.token,
            started.request_id,
            &unlocked.account.username,
            unlocked.account.user_id,
        )
        .await
        {
            Ok(v2) => {
                key_home(session)?.create(&signer)?;
                let id = v2.device_id();
                v2.close().await;
                printer.emit(
                    &format!("linked: this installation is device {id}"),
                    &json!({"device_id": id, "status": "approved"}),
                )?;
                return Ok(exit::OK);
            }
            Err(V2Error::LinkNotApproved("still pending"))
                if tokio::time::Instant::now() < deadline =>
            {
                tokio::time::sleep(LINK_POLL).await;
            }
            Err(err) => return Err(err.into()),
        }
    }
}

/// `SignatureKeyPair` is not `Clone`: a copy from its raw parts.
fn copy_signer(
    signer: &openmls_basic_credential::SignatureKeyPair,
) -> openmls_basic_credential::SignatureKeyPair {
    device_key::decode(&device_key::encode(signer)).expect("a key pair decodes")
}

fn group_name(text: &str) -> anyhow::Result<String> {
    let name = text.strip_prefix('#').unwrap_or(text).trim();
    if name.is_empty()
        || name.chars().count() > MAX_GROUP_NAME
        || name
            .chars()
            .any(|c| c.is_control() || c == '#' || c.is_whitespace())
    {
        return Err(UsageError(format!(
            "invalid group name {text:?}: 1 to {MAX_GROUP_NAME} characters, no spaces, '#' or control characters"
        ))
        .into());
    }
    Ok(name.to_owned())
}

fn check_users(users: &[String]) -> anyhow::Result<()> {
    for user in users {
        crate::session::check_username(user)?;
    }
    Ok(())
}

pub async fn group(
    session: &Session,
    printer: &Printer,
    command: &GroupCommand,
) -> anyhow::Result<u8> {
    let mut v2 = open(session).await?;
    let result = group_inner(&mut v2, printer, command).await;
    v2.close().await;
    result
}

async fn group_inner(
    v2: &mut V2Session,
    printer: &Printer,
    command: &GroupCommand,
) -> anyhow::Result<u8> {
    v2.sync().await?;
    match command {
        GroupCommand::Create { name, members, pq } => {
            let name = group_name(name)?;
            check_users(members)?;
            let suite = if *pq { PQ_SUITE } else { SUITE };
            let id = v2.create_group_in(suite, Some(&name), members).await?;
            printer.emit(
                &format!(
                    "created #{name} with {}{}",
                    members.join(", "),
                    if *pq { " (post-quantum)" } else { "" }
                ),
                &json!({
                    "group": format!("#{name}"),
                    "group_id": id.to_text(),
                    "members": members,
                    "post_quantum": pq,
                }),
            )?;
        }
        GroupCommand::Add { group, members } => {
            check_users(members)?;
            let id = v2.find(&format!("#{}", group_name(group)?)).await?;
            v2.add_members(&id, members).await?;
            printer.emit(
                &format!("added {}", members.join(", ")),
                &json!({"added": members}),
            )?;
        }
        GroupCommand::Remove { group, members } => {
            check_users(members)?;
            let id = v2.find(&format!("#{}", group_name(group)?)).await?;
            v2.remove_members(&id, members).await?;
            printer.emit(
                &format!("removed {}", members.join(", ")),
                &json!({"removed": members}),
            )?;
        }
        GroupCommand::Leave { group } => {
            let id = v2.find(&format!("#{}", group_name(group)?)).await?;
            v2.leave(&id).await?;
            printer.emit(
                "left the group (removed at the next member's sync)",
                &json!({"left": true}),
            )?;
        }
        GroupCommand::Rename { group, name } => {
            let new = group_name(name)?;
            let id = v2.find(&format!("#{}", group_name(group)?)).await?;
            v2.rename(&id, &new).await?;
            printer.emit(
                &format!("renamed to #{new}"),
                &json!({"group": format!("#{new}")}),
            )?;
        }
        GroupCommand::Update { group } => {
            let id = v2.find(&format!("#{}", group_name(group)?)).await?;
            v2.update_keys(&id).await?;
            printer.emit("updated this device's keys", &json!({"updated": true}))?;
        }
        GroupCommand::List => {
            for c in v2.conversations().await? {
                let pq = v2.is_post_quantum(&c.group_id)?;
                printer.emit(
                    &format!(
                        "{}  {} member(s), {} device(s){}{}",
                        sanitize(&c.label),
                        c.members.len(),
                        c.devices,
                        if pq { ", post-quantum" } else { "" },
                        if c.active { "" } else { "  (removed)" }
                    ),
                    &json!({
                        "conversation": c.label,
                        "group_id": c.group_id.to_text(),
                        "members": c.members,
                        "devices": c.devices,
                        "epoch": c.epoch,
                        "active": c.active,
                        "post_quantum": pq,
                    }),
                )?;
            }
        }
        GroupCommand::Members { group } => {
            let id = v2.find(&format!("#{}", group_name(group)?)).await?;
            let summary = v2
                .conversations()
                .await?
                .into_iter()
                .find(|c| c.group_id == id)
                .ok_or_else(|| V2Error::UnknownConversation(group.clone()))?;
            for member in &summary.members {
                printer.emit(&sanitize(member), &json!({"username": member}))?;
            }
        }
    }
    Ok(exit::OK)
}

/// `kavro send #GROUP TEXT`.
pub async fn send(
    session: &Session,
    printer: &Printer,
    target: &str,
    text: &str,
) -> anyhow::Result<u8> {
    let mut v2 = open(session).await?;
    let result = async {
        v2.sync().await?;
        let id = v2.find(target).await?;
        let message = v2.send(&id, text).await?;
        printer.emit(
            &format!("sent to {target}"),
            &json!({"conversation": target, "id": message.to_string(), "protocol": "mls"}),
        )?;
        anyhow::Ok(exit::OK)
    }
    .await;
    v2.close().await;
    result
}

/// `kavro history #GROUP`.
pub async fn history(
    session: &Session,
    printer: &Printer,
    target: &str,
    limit: u32,
) -> anyhow::Result<u8> {
    let v2 = open_local(session).await?;
    let result = async {
        let id = v2.find(target).await?;
        for line in v2.history(&id, limit).await? {
            let (human, json) = line_output(target, &line);
            printer.emit(&human, &json)?;
        }
        anyhow::Ok(exit::OK)
    }
    .await;
    v2.close().await;
    result
}

/// One history line of conversation `target`, as text and JSON.
pub(super) fn line_output(
    target: &str,
    line: &crate::mls::rows::MessageRow,
) -> (String, serde_json::Value) {
    let system = line.kind == crate::mls::rows::LineKind::System;
    let human = if system {
        format!("{}  * {}", json_time(line.at), sanitize(&line.body))
    } else {
        format!(
            "{}  {}: {}",
            json_time(line.at),
            sanitize(&line.sender),
            sanitize(&line.body)
        )
    };
    let json = json!({
        "conversation": target,
        "from": line.sender,
        "outgoing": line.outgoing,
        "kind": if system { "system" } else { "text" },
        "text": line.body,
        "epoch": line.epoch,
        "at": json_time(line.at),
        "protocol": "mls",
    });
    (human, json)
}

/// After v1's inbox: applies the v2 queue, prints the texts that came and
/// saves the files that came into `download_dir` (or the default one).
pub async fn inbox(
    session: &Session,
    printer: &Printer,
    download_dir: Option<&std::path::Path>,
) -> anyhow::Result<()> {
    if !has_device(session)? {
        return Ok(());
    }
    let mut v2 = open(session).await?;
    let result = async {
        let report = v2.sync().await?;
        let labels = v2.conversations().await?;
        for received in report.received {
            let label = labels
                .iter()
                .find(|c| c.group_id == received.group_id)
                .map_or_else(|| received.group_id.to_text(), |c| c.label.clone());
            printer.emit(
                &format!(
                    "[{}] {}: {}",
                    sanitize(&label),
                    sanitize(&received.sender),
                    sanitize(&received.text)
                ),
                &json!({
                    "conversation": label,
                    "from": received.sender,
                    "text": received.text,
                    "protocol": "mls",
                }),
            )?;
        }
        let dir = super::files::download_dir(session, download_dir);
        super::files::save_received(&mut v2, printer, &dir).await?;
        anyhow::Ok(())
    }
    .await;
    v2.close().await;
    result
}
