//! The exact bytes a device signs, and their verification.
//!
//! Two statements are signed with a device's Ed25519 MLS signature key (the
//! credential key of `MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519`), each
//! behind its own context string so that a signature over one can never be
//! taken for the other, nor for anything MLS signs (MLS signs a
//! `SignContent` that starts with a length-prefixed "MLS 1.0 " label):
//!
//! | statement      | bytes (`||` is concatenation, integers big-endian)                                     |
//! |----------------|----------------------------------------------------------------------------------------|
//! | device link    | `"kavro-v2 device link\0"` (21) `|| user_id` (i64, 8) `|| signer_key` (32) `|| new_key` (32) |
//! | session proof  | `"kavro-v2 device session\0"` (24) `|| user_id` (i64, 8) `|| device_id` (i64, 8) `|| timestamp` (i64, 8) |
//!
//! A device link says "the device with `signer_key` admits `new_key` into
//! account `user_id`". Clients check the chain of links from the account's
//! root device themselves; the relay checks it too before it stores a device.
//! Signatures are verified strictly (`verify_strict`: no small-order keys, no
//! malleable signatures). Test vectors: `tests` below and docs/PROTOCOL.md.

use ed25519_dalek::{Signature, VerifyingKey};

use crate::ids::UserId;
use crate::validate::{base64_encode, base64_strict};

use super::ids::MlsDeviceId;

/// Context of a device link signature.
pub const DEVICE_LINK_CONTEXT: &[u8] = b"kavro-v2 device link\0";
/// Context of a session proof signature.
pub const SESSION_CONTEXT: &[u8] = b"kavro-v2 device session\0";
/// Length of an Ed25519 public key and of a signature.
pub const SIGNATURE_KEY_LEN: usize = 32;
pub const SIGNATURE_LEN: usize = 64;

/// An Ed25519 public key that decodes to a valid curve point.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SignatureKey([u8; SIGNATURE_KEY_LEN]);

impl std::fmt::Debug for SignatureKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SignatureKey({})", base64_encode(&self.0))
    }
}

/// A signature could not be checked or did not verify. One coarse error: no
/// oracle about which part was wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the signature does not verify")]
pub struct BadSignature;

impl SignatureKey {
    /// Accepts 32 bytes that are a valid, non-weak Ed25519 public key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, String> {
        let bytes: [u8; SIGNATURE_KEY_LEN] = bytes
            .try_into()
            .map_err(|_| format!("must be {SIGNATURE_KEY_LEN} bytes"))?;
        let key = VerifyingKey::from_bytes(&bytes)
            .map_err(|_| "is not a valid Ed25519 public key".to_owned())?;
        if key.is_weak() {
            return Err("is a weak (small-order) Ed25519 key".to_owned());
        }
        Ok(Self(bytes))
    }

    /// Parses the wire form (standard base64 with padding).
    pub fn parse(text: &str) -> Result<Self, String> {
        let bytes =
            base64_strict(text).ok_or_else(|| "must be standard base64 with padding".to_owned())?;
        Self::from_bytes(&bytes)
    }

    pub fn as_bytes(&self) -> &[u8; SIGNATURE_KEY_LEN] {
        &self.0
    }

    /// The wire form.
    pub fn to_base64(&self) -> String {
        base64_encode(&self.0)
    }

    /// Verifies `signature` over `message` with this key.
    pub fn verify(
        &self,
        message: &[u8],
        signature: &[u8; SIGNATURE_LEN],
    ) -> Result<(), BadSignature> {
        let key = VerifyingKey::from_bytes(&self.0).map_err(|_| BadSignature)?;
        let signature = Signature::from_bytes(signature);
        key.verify_strict(message, &signature)
            .map_err(|_| BadSignature)
    }
}

/// Parses the wire form of a signature.
pub fn parse_signature(text: &str) -> Result<[u8; SIGNATURE_LEN], String> {
    let bytes =
        base64_strict(text).ok_or_else(|| "must be standard base64 with padding".to_owned())?;
    bytes
        .try_into()
        .map_err(|_| format!("must be {SIGNATURE_LEN} bytes"))
}

/// The bytes of a device link (see the module table).
pub fn device_link_message(user: UserId, signer: &SignatureKey, new: &SignatureKey) -> Vec<u8> {
    let mut message = Vec::with_capacity(DEVICE_LINK_CONTEXT.len() + 8 + 2 * SIGNATURE_KEY_LEN);
    message.extend_from_slice(DEVICE_LINK_CONTEXT);
    message.extend_from_slice(&user.0.to_be_bytes());
    message.extend_from_slice(signer.as_bytes());
    message.extend_from_slice(new.as_bytes());
    message
}

/// The bytes of a session proof (see the module table).
pub fn session_message(user: UserId, device: MlsDeviceId, timestamp: i64) -> Vec<u8> {
    let mut message = Vec::with_capacity(SESSION_CONTEXT.len() + 24);
    message.extend_from_slice(SESSION_CONTEXT);
    message.extend_from_slice(&user.0.to_be_bytes());
    message.extend_from_slice(&device.0.to_be_bytes());
    message.extend_from_slice(&timestamp.to_be_bytes());
    message
}

/// Checks that `signer` admitted `new` into account `user`.
pub fn verify_device_link(
    user: UserId,
    signer: &SignatureKey,
    new: &SignatureKey,
    signature: &[u8; SIGNATURE_LEN],
) -> Result<(), BadSignature> {
    signer.verify(&device_link_message(user, signer, new), signature)
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::{Signer as _, SigningKey};

    use super::*;

    fn key(seed: u8) -> (SigningKey, SignatureKey) {
        let signing = SigningKey::from_bytes(&[seed; 32]);
        let public = SignatureKey::from_bytes(signing.verifying_key().as_bytes()).unwrap();
        (signing, public)
    }

    /// The vector in docs/PROTOCOL.md: root key from seed 0x01*32, new key
    /// from seed 0x02*32, user id 42.
    #[test]
    fn device_link_test_vector() {
        let (root_secret, root) = key(1);
        let (_, new) = key(2);
        let message = device_link_message(UserId(42), &root, &new);
        assert_eq!(message.len(), 21 + 8 + 32 + 32);
        let signature = root_secret.sign(&message).to_bytes();
        assert_eq!(
            hex::encode(&message),
            concat!(
                "6b6176726f2d763220646576696365206c696e6b00",
                "000000000000002a",
                "8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c",
                "8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394",
            )
        );
        assert_eq!(hex::encode(signature), EXPECTED_LINK_SIGNATURE);
        verify_device_link(UserId(42), &root, &new, &signature).unwrap();
        // Any other account, signer, key or bit is refused.
        assert!(verify_device_link(UserId(43), &root, &new, &signature).is_err());
        assert!(verify_device_link(UserId(42), &new, &root, &signature).is_err());
        let (_, third) = key(3);
        assert!(verify_device_link(UserId(42), &root, &third, &signature).is_err());
        let mut flipped = signature;
        flipped[10] ^= 1;
        assert!(verify_device_link(UserId(42), &root, &new, &flipped).is_err());
    }

    const EXPECTED_LINK_SIGNATURE: &str = "5ee86d9fc8a67943eef2a1f8446d0a7ae649e30dae577843f06409390e06431b88f1c7b15f0fb057d6c2f7fb13696dc3ceac686ffa39fdda708b1a278befab0a";

    #[test]
    fn session_proof_is_domain_separated() {
        let (secret, public) = key(1);
        let session = session_message(UserId(42), MlsDeviceId(7), 1_700_000_000);
        assert_eq!(&session[..SESSION_CONTEXT.len()], SESSION_CONTEXT);
        let signature = secret.sign(&session).to_bytes();
        public.verify(&session, &signature).unwrap();
        // A session signature is never a link signature, and the reverse.
        let (_, other) = key(2);
        let link = device_link_message(UserId(42), &public, &other);
        assert!(public.verify(&link, &signature).is_err());
        assert!(
            public
                .verify(
                    &session_message(UserId(42), MlsDeviceId(7), 1_700_000_001),
                    &signature
                )
                .is_err()
        );
    }

    #[test]
    fn bad_keys_and_signatures_are_refused() {
        assert!(SignatureKey::from_bytes(&[0u8; 31]).is_err());
        // The identity point has small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert!(SignatureKey::from_bytes(&identity).is_err());
        assert!(SignatureKey::parse("not base64!").is_err());
        let (_, good) = key(9);
        assert_eq!(SignatureKey::parse(&good.to_base64()).unwrap(), good);
        assert!(parse_signature(&base64_encode(&[1u8; 63])).is_err());
        assert_eq!(
            parse_signature(&base64_encode(&[1u8; 64])).unwrap(),
            [1u8; 64]
        );
    }
}
