//! 1:1 conversations with a Kavro v2 contact: `kavro send USER` and
//! `kavro history USER` use the 1:1 MLS group of both accounts' devices
//! when this installation is a v2 device and USER's account has v2 devices;
//! otherwise (`Ok(None)`) the caller uses the v1 box, and those messages are
//! marked `v1`. `kavro fingerprint USER` / `kavro trust USER NUMBER` add the
//! v2 safety number, over both accounts' root device keys.

use kavro_proto::crypto::SafetyNumber;
use serde_json::{Value, json};

use super::exit;
use super::output::{self, Printer, sanitize};
use super::v2::{has_device, line_output, open, open_local};
use crate::relay::RelayError;
use crate::session::Session;
use crate::v2::{V2Error, V2Session};

/// Whether `username` has a device that is not revoked (`false` for an
/// unknown user: v1 reports that in its own words).
async fn has_v2_devices(v2: &mut V2Session, username: &str) -> Result<bool, V2Error> {
    match v2.devices(username).await {
        Ok(devices) => Ok(devices.iter().any(|d| d.revoked_at.is_none())),
        Err(V2Error::Relay(RelayError::NotFound(_))) => Ok(false),
        Err(err) => Err(err),
    }
}

/// Opens this installation's device if it has one.
async fn open_if_device(session: &Session) -> anyhow::Result<Option<V2Session>> {
    if !has_device(session)? {
        return Ok(None);
    }
    open(session).await.map(Some)
}

/// `kavro send USER TEXT` over MLS; `None`: USER has no v2 device (or this
/// installation is none), send over v1.
pub async fn send(
    session: &Session,
    printer: &Printer,
    username: &str,
    text: &str,
) -> anyhow::Result<Option<u8>> {
    crate::session::check_username(username)?;
    let Some(mut v2) = open_if_device(session).await? else {
        return Ok(None);
    };
    let result = async {
        if !has_v2_devices(&mut v2, username).await? {
            return anyhow::Ok(None);
        }
        v2.sync().await?;
        let id = v2.direct(username).await?;
        let message = v2.send(&id, text).await?;
        printer.emit(
            &format!("Sent to {} (MLS).", sanitize(username)),
            &json!({
                "to": username,
                "conversation": username,
                "id": message.to_string(),
                "state": "stored",
                "protocol": "mls",
            }),
        )?;
        Ok(Some(exit::OK))
    }
    .await;
    v2.close().await;
    result
}

/// `kavro history USER` when a 1:1 MLS conversation with USER exists here:
/// its lines and the v1 messages (marked `v1`) in time order; `None`: only
/// v1 history (shown as before).
pub async fn history(
    session: &Session,
    printer: &Printer,
    username: &str,
    limit: u32,
) -> anyhow::Result<Option<u8>> {
    crate::session::check_username(username)?;
    if !has_device(session)? {
        return Ok(None);
    }
    let v2 = open_local(session).await?;
    let lines = async {
        let Ok(id) = v2.find(username).await else {
            return anyhow::Ok(None);
        };
        Ok(Some(v2.history(&id, limit).await?))
    }
    .await;
    v2.close().await;
    let Some(lines) = lines? else {
        return Ok(None);
    };
    let me = session.account()?.username.clone();
    let mut shown: Vec<(chrono::DateTime<chrono::Utc>, String, Value)> = lines
        .iter()
        .map(|line| {
            let (human, json) = line_output(username, line);
            (line.at, human, json)
        })
        .collect();
    for message in session.history(username, limit).await? {
        let json = output::message_json(&message, &me);
        let human = format!("[v1] {}", output::message_line(&message));
        shown.push((message.sent_at, human, json));
    }
    shown.sort_by_key(|(at, _, _)| *at);
    let skip = shown.len().saturating_sub(limit as usize);
    for (_, human, json) in shown.into_iter().skip(skip) {
        printer.emit(&human, &json)?;
    }
    Ok(Some(exit::OK))
}

/// The v2 part of `kavro fingerprint USER`: the safety number over both
/// accounts' root device keys (nothing if either side has no v2 device).
pub async fn fingerprint(
    session: &Session,
    printer: &Printer,
    username: &str,
) -> anyhow::Result<()> {
    let Some(mut v2) = open_if_device(session).await? else {
        return Ok(());
    };
    let result = async {
        if !has_v2_devices(&mut v2, username).await? {
            return anyhow::Ok(());
        }
        let number = v2.safety_number(username).await?;
        let me = v2.username().to_owned();
        emit_number(printer, &number, &me)?;
        Ok(())
    }
    .await;
    v2.close().await;
    result
}

fn emit_number(
    printer: &Printer,
    number: &crate::v2::V2SafetyNumber,
    me: &str,
) -> std::io::Result<()> {
    let name = sanitize(&number.username);
    let state = if number.verified {
        "verified"
    } else {
        "pinned on first use, not compared yet"
    };
    printer.emit(
        &format!(
            "Kavro v2 (MLS) safety number with {name} ({state}; root device key {}, covering {name}'s {} device(s)):\n{}\n\
             Ask {name} to run `kavro fingerprint {me}`; if the numbers match, run `kavro trust {name} <number>`.",
            number.root_fingerprint,
            number.devices,
            number.safety_number.lines().join("\n"),
        ),
        &json!({
            "protocol": "mls",
            "username": number.username,
            "safety_number": number.safety_number.digits(),
            "root_fingerprint": number.root_fingerprint,
            "devices": number.devices,
            "verified": number.verified,
        }),
    )
}

/// `kavro trust USER NUMBER` with the v2 safety number: `None` when
/// `compared` is not a safety number or not the v2 one (v1 decides then).
pub async fn trust(
    session: &Session,
    printer: &Printer,
    username: &str,
    compared: &str,
) -> anyhow::Result<Option<u8>> {
    let Some(number) = SafetyNumber::parse(compared) else {
        return Ok(None);
    };
    let Some(mut v2) = open_if_device(session).await? else {
        return Ok(None);
    };
    let result = async {
        if !has_v2_devices(&mut v2, username).await? {
            return anyhow::Ok(None);
        }
        let Ok(trusted) = v2.trust_root(username, &number).await? else {
            return Ok(None);
        };
        let me = v2.username().to_owned();
        emit_number(printer, &trusted, &me)?;
        Ok(Some(exit::OK))
    }
    .await;
    v2.close().await;
    result
}
