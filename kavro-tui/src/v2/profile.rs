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

/// Forgets the cached device session token (at logout): the next command
/// opens a new device session with the next login's account token.
pub async fn forget_device_session(session: &Session) -> Result<(), crate::mls::MlsStoreError> {
    let path = mls_db_path(session);
    if !path.exists() {
        return Ok(());
    }
    let store = crate::mls::MlsStore::open(&path).await?;
    let mut conn = store.begin().await?;
    crate::mls::session_cache::forget_device_token(&mut conn).await?;
    conn.commit().await?;
    store.close().await;
    Ok(())
}

/// [`forget_device_session`] for a logout, which must not fail over the MLS
/// state: a warning on stderr instead (the token expires within the hour).
pub async fn forget_device_session_at_logout(session: &Session) {
    if let Err(err) = forget_device_session(session).await {
        eprintln!("warning: could not forget this device's session token: {err}");
    }
}
