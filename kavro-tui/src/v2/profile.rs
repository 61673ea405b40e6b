//! Where a profile keeps its Kavro v2 device, for the CLI and the chat app
//! alike: the MLS signature key beside the account's other secrets (the OS
//! keyring, or `mls-device.key`, 0600; see [`DeviceKeyHome`]) and the MLS
//! state (`mls.db`). One place, so the two front ends cannot look in
//! different ones.

use std::path::PathBuf;

use crate::mls::device_key::DeviceKeyHome;
use crate::session::{Session, SessionError};

/// The device key's home for the profile's current account.
pub fn device_key_home(session: &Session) -> Result<DeviceKeyHome, SessionError> {
    let (kind, account, keyring) = session.secrets_home()?;
    Ok(DeviceKeyHome::new(
        kind,
        &account,
        keyring,
        session.profile().paths().data_dir.join("mls-device.key"),
    ))
}

/// The profile's MLS state.
pub fn mls_db_path(session: &Session) -> PathBuf {
    session.profile().paths().data_dir.join("mls.db")
}
