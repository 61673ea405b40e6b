//! Long-term identity keys (X25519): a secret that is zeroized on drop and read
//! only on purpose, and the public half people publish, pin and compare.

use std::{fmt, str::FromStr};

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use x25519_dalek::StaticSecret;

use super::nacl::KEY_LEN;

/// Length of the hex form of a public key.
pub const PUBLIC_KEY_HEX_LEN: usize = 2 * KEY_LEN;

/// Why bytes or text are not a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum KeyParseError {
    #[error(
        "a public key is {PUBLIC_KEY_HEX_LEN} hex digits (32 bytes), but this one has {found} characters"
    )]
    HexLength { found: usize },
    #[error("a public key may contain only the hex digits 0-9 and a-f (either case)")]
    NotHex,
    #[error("a key is {KEY_LEN} bytes, but {found} bytes were given")]
    ByteLength { found: usize },
}

/// The secret half of an identity: 32 bytes, an X25519 scalar before clamping
/// (the same encoding as libsodium's `crypto_box` secret key).
///
/// Not `Clone`, `Debug` or `Serialize` on purpose; zeroized on drop (the inner
/// `StaticSecret` does it). Read the bytes with [`Self::expose_secret_bytes`].
pub struct IdentitySecret(StaticSecret);

impl IdentitySecret {
    /// A fresh secret from the operating system's random number generator.
    ///
    /// Panics if the OS generator fails, as `getrandom` failures are not
    /// recoverable in any useful way at this point.
    pub fn generate() -> Self {
        Self(StaticSecret::random())
    }

    /// Loads a secret, e.g. from a keystore. The caller should zeroize its own
    /// copy of `bytes` afterwards.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(StaticSecret::from(bytes))
    }

    /// Like [`Self::from_bytes`], from a slice that must be exactly 32 bytes.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, KeyParseError> {
        let array: [u8; KEY_LEN] = bytes
            .try_into()
            .map_err(|_| KeyParseError::ByteLength { found: bytes.len() })?;
        Ok(Self::from_bytes(array))
    }

    /// The raw secret, for writing it to a keystore. Handle with care.
    pub fn expose_secret_bytes(&self) -> &[u8; KEY_LEN] {
        self.0.as_bytes()
    }

    /// The matching public key.
    pub fn public(&self) -> IdentityPublic {
        IdentityPublic(x25519_dalek::PublicKey::from(&self.0).to_bytes())
    }

    pub(crate) fn as_x25519(&self) -> &StaticSecret {
        &self.0
    }
}

/// The inner `StaticSecret` wipes its bytes when dropped (x25519-dalek's
/// `zeroize` feature, on by default; a test checks it is on).
impl zeroize::ZeroizeOnDrop for IdentitySecret {}

/// Its secret half wipes itself when dropped.
impl zeroize::ZeroizeOnDrop for IdentityKeypair {}

/// An identity secret with its public key computed once.
pub struct IdentityKeypair {
    secret: IdentitySecret,
    public: IdentityPublic,
}

impl IdentityKeypair {
    /// A fresh identity from the OS random number generator.
    pub fn generate() -> Self {
        Self::from_secret(IdentitySecret::generate())
    }

    pub fn from_secret(secret: IdentitySecret) -> Self {
        let public = secret.public();
        Self { secret, public }
    }

    pub fn secret(&self) -> &IdentitySecret {
        &self.secret
    }

    pub fn public(&self) -> &IdentityPublic {
        &self.public
    }
}

/// Redacted: shows only the public key, so a keypair inside a larger state
/// struct can still be debug-printed safely.
impl fmt::Debug for IdentityKeypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IdentityKeypair")
            .field("public", &self.public)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// A 32-byte X25519 public key: an identity key, or the ephemeral key of a message.
///
/// Displayed, serialized and published as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdentityPublic([u8; KEY_LEN]);

impl IdentityPublic {
    pub const fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Lowercase hex, the form the relay stores and returns.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses 64 hex digits, either case.
    pub fn from_hex(text: &str) -> Result<Self, KeyParseError> {
        if text.len() != PUBLIC_KEY_HEX_LEN {
            return Err(KeyParseError::HexLength {
                found: text.chars().count(),
            });
        }
        let mut bytes = [0u8; KEY_LEN];
        hex::decode_to_slice(text, &mut bytes).map_err(|_| KeyParseError::NotHex)?;
        Ok(Self(bytes))
    }
}

impl fmt::Debug for IdentityPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IdentityPublic({})", self.to_hex())
    }
}

impl fmt::Display for IdentityPublic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl FromStr for IdentityPublic {
    type Err = KeyParseError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::from_hex(text)
    }
}

impl Serialize for IdentityPublic {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for IdentityPublic {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::from_hex(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::implements_debug;

    /// The secret lives in x25519-dalek's `StaticSecret`: 32 bytes, so it
    /// needs dropping only because its `Drop` zeroizes them (a compile error
    /// if the field stops being one). The secret has no `Debug`; the
    /// keypair's prints only the public half (`debug_and_serde`).
    #[test]
    fn secret_is_zeroized_on_drop_and_never_printed() {
        fn zeroizable<T: zeroize::Zeroize>(_: &T) {}
        let secret = IdentitySecret::from_bytes([0x42; 32]);
        zeroizable(&secret.0);
        assert!(std::mem::needs_drop::<StaticSecret>());
        assert!(!implements_debug!(IdentitySecret));
        assert!(implements_debug!(IdentityKeypair), "the probe can say yes");
    }

    #[test]
    fn public_key_matches_rfc7748() {
        let mut secret = [0u8; 32];
        hex::decode_to_slice(
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a",
            &mut secret,
        )
        .unwrap();
        let pair = IdentityKeypair::from_secret(IdentitySecret::from_bytes(secret));
        assert_eq!(
            pair.public().to_hex(),
            "8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a"
        );
        assert_eq!(pair.secret().expose_secret_bytes(), &secret);
    }

    #[test]
    fn generated_keys_differ_and_round_trip() {
        let a = IdentityKeypair::generate();
        let b = IdentityKeypair::generate();
        assert_ne!(a.public(), b.public());
        let again = IdentitySecret::from_slice(a.secret().expose_secret_bytes()).unwrap();
        assert_eq!(&again.public(), a.public());
    }

    #[test]
    fn hex_parsing() {
        let key = IdentityPublic::from_bytes([0xab; 32]);
        assert_eq!(key.to_hex(), "ab".repeat(32));
        assert_eq!(IdentityPublic::from_hex(&"AB".repeat(32)), Ok(key));
        assert_eq!("aB".repeat(32).parse::<IdentityPublic>(), Ok(key));
        assert_eq!(
            IdentityPublic::from_hex(&"ab".repeat(31)),
            Err(KeyParseError::HexLength { found: 62 })
        );
        assert_eq!(
            IdentityPublic::from_hex(&"zz".repeat(32)),
            Err(KeyParseError::NotHex)
        );
        // 64 bytes of non-ASCII: refused as non-hex, without panicking on a
        // char boundary.
        assert_eq!(
            IdentityPublic::from_hex(&"é".repeat(32)),
            Err(KeyParseError::NotHex)
        );
        // The length in the message counts characters, not bytes.
        assert_eq!(
            IdentityPublic::from_hex(&"é".repeat(3)),
            Err(KeyParseError::HexLength { found: 3 })
        );
        assert!(IdentityPublic::from_hex("").is_err());
        let err = IdentityPublic::from_hex("abc").unwrap_err().to_string();
        assert!(err.contains("64 hex digits"), "{err}");
    }

    #[test]
    fn secret_from_wrong_length_slice() {
        assert_eq!(
            IdentitySecret::from_slice(&[0u8; 31]).err(),
            Some(KeyParseError::ByteLength { found: 31 })
        );
    }

    // Secrets: never printed, copied implicitly or serialised; wiped on drop.
    static_assertions::assert_impl_all!(IdentitySecret: zeroize::ZeroizeOnDrop);
    static_assertions::assert_not_impl_any!(
        IdentitySecret: fmt::Debug,
        fmt::Display,
        Clone,
        Serialize
    );
    static_assertions::assert_impl_all!(IdentityKeypair: zeroize::ZeroizeOnDrop);
    static_assertions::assert_not_impl_any!(IdentityKeypair: Clone, Serialize);
    static_assertions::assert_impl_all!(
        crate::crypto::SealRandomness: zeroize::ZeroizeOnDrop
    );
    static_assertions::assert_not_impl_any!(
        crate::crypto::SealRandomness: fmt::Debug,
        Clone
    );
    // x25519-dalek derives `Zeroize` with `zeroize(drop)`, which wipes on drop
    // but does not add the `ZeroizeOnDrop` marker: the feature must stay on.
    static_assertions::assert_impl_all!(StaticSecret: zeroize::Zeroize);

    #[test]
    fn debug_and_serde() {
        let pair = IdentityKeypair::from_secret(IdentitySecret::from_bytes([0x42; 32]));
        let debug = format!("{pair:?}");
        assert!(debug.contains(&pair.public().to_hex()), "{debug}");
        assert!(debug.contains("redacted"), "{debug}");
        assert!(!debug.contains(&"42".repeat(32)), "{debug}");

        let json = serde_json::to_string(pair.public()).unwrap();
        assert_eq!(json, format!("\"{}\"", pair.public().to_hex()));
        let back: IdentityPublic = serde_json::from_str(&json).unwrap();
        assert_eq!(&back, pair.public());
        assert!(serde_json::from_str::<IdentityPublic>("\"00\"").is_err());
    }
}
