//! Test helpers for code built on a [`Session`]: devices (each with its own
//! config and data directories and a file key store) talking to one
//! [`MemoryRelay`].

use std::sync::Arc;

use kavro_proto::strings::Password;

use super::Session;
use crate::config::Profile;
use crate::keystore::{KeyStoreKind, Keystores};
use crate::paths::Dirs;
use crate::relay::MemoryRelay;

pub const SERVER: &str = "http://127.0.0.1:8000";

pub fn password() -> Password {
    Password::from("Corr3ct-horse")
}

/// One device: its own config and data directories.
pub struct Device {
    pub dir: tempfile::TempDir,
    pub session: Session,
}

pub async fn session_in(
    dir: &std::path::Path,
    relay: &Arc<MemoryRelay>,
    stores: Keystores,
) -> Session {
    let dirs = Dirs::new(dir.join("config"), dir.join("data"));
    let profile = Profile::load(&dirs, "default", Some(SERVER)).unwrap();
    let relay: Arc<dyn crate::relay::Relay> = relay.clone();
    Session::open(profile, relay, stores).await.unwrap()
}

pub fn file_store(dir: &std::path::Path) -> Keystores {
    Keystores::without_keyring(
        dir.join("data/profiles/default/secrets.json"),
        Some(KeyStoreKind::File),
    )
}

pub async fn device(relay: &Arc<MemoryRelay>) -> Device {
    let dir = tempfile::tempdir().unwrap();
    let session = session_in(dir.path(), relay, file_store(dir.path())).await;
    Device { dir, session }
}

pub async fn registered(relay: &Arc<MemoryRelay>, name: &str) -> Device {
    let mut device = device(relay).await;
    let summary = device
        .session
        .register(name, &password(), None)
        .await
        .unwrap();
    assert!(summary.new_key);
    assert_eq!(summary.key_store, KeyStoreKind::File);
    device
}

pub async fn reopen(device: Device, relay: &Arc<MemoryRelay>) -> Device {
    let Device { dir, session } = device;
    session.close().await;
    let session = session_in(dir.path(), relay, file_store(dir.path())).await;
    Device { dir, session }
}
