//! Field encryption at rest (docs/API.md part 4): `device_name` and `metadata` are
//! stored as Fernet tokens, so a copy of the database alone does not reveal
//! them. Several keys may be configured: the first encrypts, all decrypt,
//! which lets operators rotate keys without a migration.

use fernet::{Fernet, MultiFernet};

#[derive(Debug, thiserror::Error)]
pub enum FieldCryptError {
    #[error("no Fernet key configured")]
    NoKey,
    #[error("Fernet key number {0} is not 32 bytes of url-safe base64")]
    BadKey(usize),
    #[error("a stored field could not be decrypted (wrong Fernet key?)")]
    Decrypt,
}

pub struct FieldCrypt {
    keys: MultiFernet,
}

impl FieldCrypt {
    /// `keys` is comma separated; the first encrypts.
    pub fn new(keys: &str) -> Result<Self, FieldCryptError> {
        let fernets = keys
            .split(',')
            .map(str::trim)
            .filter(|k| !k.is_empty())
            .enumerate()
            .map(|(i, k)| Fernet::new(k).ok_or(FieldCryptError::BadKey(i + 1)))
            .collect::<Result<Vec<_>, _>>()?;
        if fernets.is_empty() {
            return Err(FieldCryptError::NoKey);
        }
        Ok(Self {
            keys: MultiFernet::new(fernets),
        })
    }

    pub fn generate_key() -> String {
        Fernet::generate_key()
    }

    pub fn encrypt(&self, plain: &[u8]) -> Vec<u8> {
        self.keys.encrypt(plain).into_bytes()
    }

    pub fn decrypt(&self, stored: &[u8]) -> Result<Vec<u8>, FieldCryptError> {
        let token = std::str::from_utf8(stored).map_err(|_| FieldCryptError::Decrypt)?;
        self.keys
            .decrypt(token)
            .map_err(|_| FieldCryptError::Decrypt)
    }

    pub fn encrypt_str(&self, plain: &str) -> Vec<u8> {
        self.encrypt(plain.as_bytes())
    }

    pub fn decrypt_string(&self, stored: &[u8]) -> Result<String, FieldCryptError> {
        String::from_utf8(self.decrypt(stored)?).map_err(|_| FieldCryptError::Decrypt)
    }

    pub fn encrypt_json(&self, value: &serde_json::Value) -> Vec<u8> {
        self.encrypt(value.to_string().as_bytes())
    }

    pub fn decrypt_json(&self, stored: &[u8]) -> Result<serde_json::Value, FieldCryptError> {
        serde_json::from_slice(&self.decrypt(stored)?).map_err(|_| FieldCryptError::Decrypt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kavro_proto::implements_debug;

    /// The Fernet keys are zeroized on drop and cannot be printed: a
    /// `Fernet` is two byte arrays, so it needs dropping only because its
    /// `Drop` zeroizes them; neither it nor anything holding it has `Debug`.
    #[test]
    fn keys_are_zeroized_and_never_printed() {
        fn zeroizable<T: zeroize::Zeroize>() {}
        zeroizable::<fernet::Fernet>();
        assert!(std::mem::needs_drop::<fernet::Fernet>());
        assert!(!implements_debug!(fernet::Fernet));
        assert!(!implements_debug!(fernet::MultiFernet));
        assert!(!implements_debug!(FieldCrypt));
    }

    #[test]
    fn round_trip_and_rotation() {
        let old = FieldCrypt::generate_key();
        let new = FieldCrypt::generate_key();
        let before = FieldCrypt::new(&old).unwrap();
        let stored = before.encrypt_str("laptop");
        assert!(!String::from_utf8_lossy(&stored).contains("laptop"));
        let rotated = FieldCrypt::new(&format!("{new},{old}")).unwrap();
        assert_eq!(rotated.decrypt_string(&stored).unwrap(), "laptop");
        let json = serde_json::json!({"a": [1, 2, {"b": null}]});
        assert_eq!(
            rotated.decrypt_json(&rotated.encrypt_json(&json)).unwrap(),
            json
        );
        let other = FieldCrypt::new(&FieldCrypt::generate_key()).unwrap();
        assert!(other.decrypt(&stored).is_err());
        assert!(other.decrypt(b"\xff\xfe").is_err());
    }

    #[test]
    fn bad_keys_are_refused() {
        assert!(matches!(FieldCrypt::new(""), Err(FieldCryptError::NoKey)));
        assert!(matches!(
            FieldCrypt::new("short"),
            Err(FieldCryptError::BadKey(1))
        ));
    }
}
