//! The account-management commands: `password`, `logout --everywhere`,
//! `keys` (and `keys retire`), `delete-account`.

use std::io::{BufRead as _, IsTerminal as _};

use kavro_proto::DeviceId;
use kavro_proto::strings::Password;
use serde_json::json;
use zeroize::Zeroizing;

use super::exit::{self, UsageError};
use super::input;
use super::output::{self, Printer, json_time};
use crate::session::Session;

/// `password`: the current and the new password, prompted or from stdin.
pub async fn password(
    session: &Session,
    printer: &Printer,
    from_stdin: bool,
) -> anyhow::Result<u8> {
    let username = session.account()?.username.clone();
    let (current, new) = if from_stdin {
        two_lines(&mut std::io::stdin().lock())?
    } else {
        if !std::io::stdin().is_terminal() {
            return Err(UsageError(
                "no password given: type them at a terminal, or pipe the current and the new one (two lines) with --password-stdin".to_owned(),
            )
            .into());
        }
        let current = Zeroizing::new(rpassword::prompt_password(format!(
            "Current password for {username}: "
        ))?);
        // Prompted even when KAVRO_PASSWORD is set: that is the old one.
        let new = Zeroizing::new(rpassword::prompt_password("New password: ")?);
        let again = Zeroizing::new(rpassword::prompt_password("Repeat the new password: ")?);
        if *new != *again {
            return Err(UsageError("the two new passwords differ; try again".to_owned()).into());
        }
        (
            Password::from(current.as_str()),
            Password::from(new.as_str()),
        )
    };
    session.change_password(&current, &new).await?;
    printer.emit(
        &format!(
            "Password changed for {username}; every other session of the account is logged out."
        ),
        &json!({"username": username, "password_changed": true}),
    )?;
    Ok(exit::OK)
}

/// The first two lines of `reader`: the current and the new password.
fn two_lines(reader: &mut impl std::io::BufRead) -> anyhow::Result<(Password, Password)> {
    let mut read = || -> anyhow::Result<Password> {
        let mut line = Zeroizing::new(String::new());
        reader.read_line(&mut line)?;
        let trimmed = line.trim_end_matches(['\n', '\r']);
        if trimmed.is_empty() {
            return Err(UsageError(
                "--password-stdin: give the current password on the first line and the new one on the second".to_owned(),
            )
            .into());
        }
        Ok(Password::from(trimmed))
    };
    let current = read()?;
    let new = read()?;
    Ok((current, new))
}

/// `logout --everywhere`.
pub async fn logout_everywhere(session: &mut Session, printer: &Printer) -> anyhow::Result<u8> {
    crate::v2::profile::forget_device_session_at_logout(session).await;
    let username = session.logout_everywhere().await?;
    printer.emit(
        &format!("Logged out {username} everywhere: every session of the account is revoked."),
        &json!({"username": username, "logged_out": true, "everywhere": true}),
    )?;
    Ok(exit::OK)
}

/// `keys`: our keys on the relay.
pub async fn keys(session: &Session, printer: &Printer) -> anyhow::Result<u8> {
    for key in session.own_keys().await? {
        let name = key.device_name.as_deref().map(output::sanitize);
        printer.emit(
            &format!(
                "#{:<6} {}  {}  {}{}",
                key.id,
                key.key.fingerprint(),
                output::human_time(key.created_at),
                name.as_deref().unwrap_or("-"),
                if key.current { "  (this device)" } else { "" }
            ),
            &json!({
                "id": key.id.0,
                "key": key.key.to_hex(),
                "fingerprint": key.key.fingerprint().to_string(),
                "device_name": key.device_name,
                "created_at": json_time(key.created_at),
                "current": key.current,
            }),
        )?;
    }
    Ok(exit::OK)
}

/// `keys retire ID`.
pub async fn retire(session: &Session, printer: &Printer, id: i64) -> anyhow::Result<u8> {
    let key = session.retire_key(DeviceId(id)).await?;
    printer.emit(
        &format!(
            "Retired key #{id} ({}): the relay no longer serves it; contacts who pinned it will see a key change.",
            key.fingerprint()
        ),
        &json!({"id": id, "key": key.to_hex(), "retired": true}),
    )?;
    Ok(exit::OK)
}

/// `delete-account`: confirmed by typing the username, or `--yes`.
pub async fn delete_account(
    session: &mut Session,
    printer: &Printer,
    yes: bool,
    password_stdin: bool,
) -> anyhow::Result<u8> {
    let account = session.account()?.clone();
    if !yes {
        if !std::io::stdin().is_terminal() {
            return Err(UsageError(
                "delete-account asks you to type the username at a terminal; scripts pass --yes"
                    .to_owned(),
            )
            .into());
        }
        eprintln!(
            "This deletes {} on {} for good: its keys, the messages waiting for it and its sessions. Type the username to confirm:",
            account.username, account.server
        );
        let mut typed = String::new();
        std::io::stdin().lock().read_line(&mut typed)?;
        if !typed.trim().eq_ignore_ascii_case(&account.username) {
            return Err(
                UsageError("the username did not match; nothing was deleted".to_owned()).into(),
            );
        }
    }
    let password = input::password(password_stdin, &account.username, false)?;
    let history = session.delete_account(&password).await?;
    printer.emit(
        &format!(
            "Deleted {} on {}; this profile's key and token are removed. The local history stays in {history}.",
            account.username, account.server
        ),
        &json!({"username": account.username, "deleted": true, "history": history}),
    )?;
    Ok(exit::OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_passwords_from_stdin() {
        let (current, new) = two_lines(&mut &b"Old-pass1\nN3w-pass!\n"[..]).unwrap();
        assert_eq!((current.as_str(), new.as_str()), ("Old-pass1", "N3w-pass!"));
        let (_, new) = two_lines(&mut &b"Old-pass1\r\nN3w-pass!"[..]).unwrap();
        assert_eq!(new.as_str(), "N3w-pass!");
        for bad in [&b"only-one\n"[..], b"", b"\nN3w-pass!\n"] {
            let err = two_lines(&mut &bad[..]).unwrap_err();
            assert!(err.downcast_ref::<UsageError>().is_some(), "{err}");
        }
    }
}
