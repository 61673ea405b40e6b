//! The device's MLS signature key (Ed25519), in `mls-device.key` in the
//! profile's private data directory (0700), mode 0600, next to `mls.db`:
//! JSON `{"key": hex}`, the key pair's TLS encoding (openmls_basic_credential:
//! private key, public key, signature scheme). Created once with `create_new`
//! (an existing key is never overwritten) and never regenerated: a missing
//! or unreadable key is an error that names the file.

use std::io::Write as _;
use std::path::Path;

use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls_basic_credential::SignatureKeyPair;
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::v2::SUITE;

/// The key file could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum DeviceKeyError {
    #[error("cannot write the device key {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read the device key {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the device key {path} is corrupt")]
    Corrupt { path: String },
}

#[derive(Serialize, Deserialize)]
struct KeyFile {
    key: String,
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.key);
    }
}

/// The key pair's TLS encoding (it holds the private key).
pub fn encode(signer: &SignatureKeyPair) -> Zeroizing<Vec<u8>> {
    Zeroizing::new(signer.tls_serialize_detached().expect("a key pair encodes"))
}

/// A key pair from [`encode`]'s bytes.
pub fn decode(bytes: &[u8]) -> Option<SignatureKeyPair> {
    let signer = SignatureKeyPair::tls_deserialize_exact(bytes).ok()?;
    (signer.signature_scheme() == SUITE.signature_algorithm() && signer.public().len() == 32)
        .then_some(signer)
}

/// Writes `signer` to a new file at `path` (0600); fails if one exists.
pub fn create(path: &Path, signer: &SignatureKeyPair) -> Result<(), DeviceKeyError> {
    let write_err = |source| DeviceKeyError::Write {
        path: path.display().to_string(),
        source,
    };
    let text = Zeroizing::new(
        serde_json::to_string(&KeyFile {
            key: hex::encode(encode(signer).as_slice()),
        })
        .map_err(|e| write_err(std::io::Error::other(e)))?,
    );
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(write_err)?;
    file.write_all(text.as_bytes()).map_err(write_err)?;
    file.sync_all().map_err(write_err)
}

/// Reads the key at `path`; `None` if there is no file.
pub fn load(path: &Path) -> Result<Option<SignatureKeyPair>, DeviceKeyError> {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => Zeroizing::new(text),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(DeviceKeyError::Read {
                path: path.display().to_string(),
                source,
            });
        }
    };
    let corrupt = || DeviceKeyError::Corrupt {
        path: path.display().to_string(),
    };
    let file: KeyFile = serde_json::from_str(&text).map_err(|_| corrupt())?;
    let bytes = Zeroizing::new(hex::decode(&file.key).map_err(|_| corrupt())?);
    decode(&bytes).map(Some).ok_or_else(corrupt)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_once_read_back_and_corruption_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mls-device.key");
        assert!(load(&path).unwrap().is_none());
        let signer = crate::v2::new_signer().unwrap();
        create(&path, &signer).unwrap();
        assert!(create(&path, &signer).is_err(), "never overwritten");
        let read = load(&path).unwrap().unwrap();
        assert_eq!(read.public(), signer.public());
        assert_eq!(*encode(&read), *encode(&signer));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::write(&path, "{\"key\":\"zz\"}").unwrap();
        assert!(matches!(load(&path), Err(DeviceKeyError::Corrupt { .. })));
        std::fs::write(&path, "{\"key\":\"0001\"}").unwrap();
        assert!(matches!(load(&path), Err(DeviceKeyError::Corrupt { .. })));
        std::fs::write(&path, "not json").unwrap();
        assert!(matches!(load(&path), Err(DeviceKeyError::Corrupt { .. })));
    }
}
