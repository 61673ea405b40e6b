//! The outer layer of docs/API.md part 5 and the public seal/open entry points:
//! `ciphertext = base64(nonce[24] || crypto_box(eph_sk, recipient_pk, plaintext))`,
//! `ephemeral_pubkey = hex(eph_pk)`, where the plaintext is an envelope (our
//! clients) or bare UTF-8 text (legacy libsodium clients).

use std::fmt;

use crypto_box::aead::rand_core::{OsRng, RngCore};
use x25519_dalek::StaticSecret;
use zeroize::{Zeroize, ZeroizeOnDrop};

use super::envelope::{self, MAX_LEGACY_TEXT_BYTES};
use super::error::{OpenError, SealError};
use super::keys::{IdentityKeypair, IdentityPublic};
use super::nacl::{self, KEY_LEN, NONCE_LEN};
use super::payload::Payload;
use crate::validate::{self, CiphertextError};

/// What goes into the relay's `ciphertext` and `ephemeral_pubkey` fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedMessage {
    /// Standard base64 with padding of `nonce || box`.
    pub ciphertext_b64: String,
    /// Lowercase hex of the one-time ephemeral public key.
    pub ephemeral_pubkey_hex: String,
}

/// A message that opened.
#[allow(
    clippy::large_enum_variant,
    reason = "one value per received message, matched at once: boxing the payload buys nothing"
)]
#[derive(Clone, PartialEq, Eq)]
pub enum Opened {
    /// From one of our clients. The inner box proves the message was made with
    /// the secret of `sender_key` (or with ours: see docs/PROTOCOL.md), for us,
    /// under this version. Before showing it as verified the caller must still
    /// check that `sender_key` is the key it pinned for `payload.sender`, that
    /// `payload.is_addressed_to(own username)`, that `payload.sender` is who the
    /// relay says sent it, and that `payload.message_id` is not a duplicate.
    Envelope {
        sender_key: IdentityPublic,
        payload: Payload,
    },
    /// Plain text from a legacy client: nothing about its sender is verified.
    Legacy { text: String },
}

/// Hides the text, like [`Payload`]'s `Debug`.
impl fmt::Debug for Opened {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Envelope {
                sender_key,
                payload,
            } => f
                .debug_struct("Envelope")
                .field("sender_key", sender_key)
                .field("payload", payload)
                .finish(),
            Self::Legacy { text } => f
                .debug_struct("Legacy")
                .field("text", &format_args!("<{} bytes>", text.len()))
                .finish(),
        }
    }
}

/// The random values one sealing uses. Only test vectors set them by hand:
/// reusing them for two messages breaks confidentiality.
#[doc(hidden)]
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SealRandomness {
    pub ephemeral_secret: [u8; KEY_LEN],
    pub outer_nonce: [u8; NONCE_LEN],
    pub inner_nonce: [u8; NONCE_LEN],
}

impl SealRandomness {
    fn from_os_rng() -> Result<Self, SealError> {
        let mut fresh = Self {
            ephemeral_secret: [0; KEY_LEN],
            outer_nonce: [0; NONCE_LEN],
            inner_nonce: [0; NONCE_LEN],
        };
        for buf in [
            &mut fresh.ephemeral_secret[..],
            &mut fresh.outer_nonce[..],
            &mut fresh.inner_nonce[..],
        ] {
            OsRng
                .try_fill_bytes(buf)
                .map_err(|_| SealError::RandomnessUnavailable)?;
        }
        Ok(fresh)
    }
}

/// Seals `payload` from `sender` to `recipient` as a v1 envelope inside the
/// outer box, with a fresh ephemeral key and fresh nonces.
pub fn seal(
    sender: &IdentityKeypair,
    recipient: &IdentityPublic,
    payload: &Payload,
) -> Result<SealedMessage, SealError> {
    seal_with_fixed_randomness(sender, recipient, payload, &SealRandomness::from_os_rng()?)
}

/// [`seal`] with caller-chosen randomness, for known-answer test vectors only.
#[doc(hidden)]
pub fn seal_with_fixed_randomness(
    sender: &IdentityKeypair,
    recipient: &IdentityPublic,
    payload: &Payload,
    randomness: &SealRandomness,
) -> Result<SealedMessage, SealError> {
    let envelope = envelope::seal(sender, recipient, payload, &randomness.inner_nonce)?;
    seal_outer(
        recipient,
        &envelope,
        &randomness.ephemeral_secret,
        &randomness.outer_nonce,
    )
}

/// Seals `text` the way a legacy libsodium client does: the bare UTF-8 text in
/// the outer box, unpadded and without sender authentication.
pub fn seal_legacy(recipient: &IdentityPublic, text: &str) -> Result<SealedMessage, SealError> {
    let randomness = SealRandomness::from_os_rng()?;
    seal_legacy_with_fixed_randomness(
        recipient,
        text,
        &randomness.ephemeral_secret,
        &randomness.outer_nonce,
    )
}

/// [`seal_legacy`] with caller-chosen randomness, for known-answer test vectors only.
#[doc(hidden)]
pub fn seal_legacy_with_fixed_randomness(
    recipient: &IdentityPublic,
    text: &str,
    ephemeral_secret: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
) -> Result<SealedMessage, SealError> {
    if text.len() > MAX_LEGACY_TEXT_BYTES {
        return Err(SealError::TextTooLong {
            len: text.len(),
            max: MAX_LEGACY_TEXT_BYTES,
        });
    }
    seal_outer(recipient, text.as_bytes(), ephemeral_secret, nonce)
}

/// Seals arbitrary plaintext bytes in the outer box, with no envelope: only
/// for the fuzzer (`cargo fuzz` sets `cfg(fuzzing)`), which must reach the
/// envelope parser behind a valid outer box.
#[cfg(fuzzing)]
#[doc(hidden)]
pub fn seal_raw_for_fuzzing(
    recipient: &IdentityPublic,
    plaintext: &[u8],
    ephemeral_secret: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
) -> Result<SealedMessage, SealError> {
    seal_outer(recipient, plaintext, ephemeral_secret, nonce)
}

fn seal_outer(
    recipient: &IdentityPublic,
    plaintext: &[u8],
    ephemeral_secret: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
) -> Result<SealedMessage, SealError> {
    let ephemeral = StaticSecret::from(*ephemeral_secret);
    let ephemeral_public = x25519_dalek::PublicKey::from(&ephemeral);
    let boxed = nacl::seal(&ephemeral, recipient.as_bytes(), nonce, plaintext)
        .map_err(|_| SealError::InvalidRecipientKey)?;
    let mut wire = Vec::with_capacity(NONCE_LEN + boxed.len());
    wire.extend_from_slice(nonce);
    wire.extend_from_slice(&boxed);
    Ok(SealedMessage {
        ciphertext_b64: validate::base64_encode(&wire),
        ephemeral_pubkey_hex: hex::encode(ephemeral_public.as_bytes()),
    })
}

/// Opens a message from the relay with our identity. Never panics, whatever
/// the input.
pub fn open(
    recipient: &IdentityKeypair,
    ciphertext_b64: &str,
    ephemeral_pubkey_hex: &str,
) -> Result<Opened, OpenError> {
    let ephemeral =
        IdentityPublic::from_hex(ephemeral_pubkey_hex).map_err(OpenError::InvalidEphemeralKey)?;
    let wire = validate::ciphertext(ciphertext_b64).map_err(|err| match err {
        CiphertextError::InvalidBase64 => OpenError::InvalidBase64,
        CiphertextError::TooLarge | CiphertextError::TooLong => OpenError::TooLarge,
        // Zero bytes cannot hold a nonce and a tag: just a box that fails.
        CiphertextError::Empty => OpenError::DecryptionFailed,
    })?;
    let (nonce, boxed) = wire
        .split_first_chunk::<NONCE_LEN>()
        .ok_or(OpenError::DecryptionFailed)?;
    let plaintext = nacl::open(
        recipient.secret().as_x25519(),
        ephemeral.as_bytes(),
        nonce,
        boxed,
    )
    .map_err(|_| OpenError::DecryptionFailed)?;

    if envelope::is_envelope(&plaintext) {
        let (sender_key, payload) = envelope::open(recipient, &plaintext)?;
        Ok(Opened::Envelope {
            sender_key,
            payload,
        })
    } else {
        String::from_utf8(plaintext)
            .map(|text| Opened::Legacy { text })
            .map_err(|_| OpenError::LegacyNotUtf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::envelope::{CIPHERTEXT_BUCKETS, MAX_TEXT_BYTES};
    use crate::crypto::keys::IdentitySecret;

    fn decoded_len(sealed: &SealedMessage) -> usize {
        validate::base64_strict(&sealed.ciphertext_b64)
            .unwrap()
            .len()
    }

    #[test]
    fn envelope_round_trip() {
        let alice = IdentityKeypair::generate();
        let bob = IdentityKeypair::generate();
        let payload = Payload::new("alice", "bob", "hello, bob");
        let sealed = seal(&alice, bob.public(), &payload).unwrap();
        assert_eq!(sealed.ephemeral_pubkey_hex.len(), 64);
        assert_eq!(
            sealed.ephemeral_pubkey_hex,
            sealed.ephemeral_pubkey_hex.to_lowercase()
        );
        assert_ne!(sealed.ephemeral_pubkey_hex, alice.public().to_hex());
        assert_eq!(decoded_len(&sealed), 256);
        let opened = open(&bob, &sealed.ciphertext_b64, &sealed.ephemeral_pubkey_hex).unwrap();
        assert_eq!(
            opened,
            Opened::Envelope {
                sender_key: *alice.public(),
                payload
            }
        );
        // Not for carol.
        let carol = IdentityKeypair::generate();
        assert_eq!(
            open(&carol, &sealed.ciphertext_b64, &sealed.ephemeral_pubkey_hex),
            Err(OpenError::DecryptionFailed)
        );
    }

    #[test]
    fn each_seal_is_fresh() {
        let alice = IdentityKeypair::generate();
        let bob = IdentityKeypair::generate();
        let payload = Payload::new("alice", "bob", "same");
        let a = seal(&alice, bob.public(), &payload).unwrap();
        let b = seal(&alice, bob.public(), &payload).unwrap();
        assert_ne!(a.ciphertext_b64, b.ciphertext_b64);
        assert_ne!(a.ephemeral_pubkey_hex, b.ephemeral_pubkey_hex);
    }

    #[test]
    fn legacy_round_trip() {
        let bob = IdentityKeypair::generate();
        let sealed = seal_legacy(bob.public(), "plain old text ✓").unwrap();
        assert_eq!(decoded_len(&sealed), 40 + "plain old text ✓".len());
        assert_eq!(
            open(&bob, &sealed.ciphertext_b64, &sealed.ephemeral_pubkey_hex).unwrap(),
            Opened::Legacy {
                text: "plain old text ✓".into()
            }
        );
        let too_long = "x".repeat(MAX_LEGACY_TEXT_BYTES + 1);
        assert!(matches!(
            seal_legacy(bob.public(), &too_long),
            Err(SealError::TextTooLong { .. })
        ));
        let longest = "x".repeat(MAX_LEGACY_TEXT_BYTES);
        assert_eq!(
            decoded_len(&seal_legacy(bob.public(), &longest).unwrap()),
            65_536
        );
    }

    #[test]
    fn longest_text_fills_the_largest_bucket() {
        let alice = IdentityKeypair::generate();
        let bob = IdentityKeypair::generate();
        let long_name = "a".repeat(30);
        let mut payload =
            Payload::new(long_name.clone(), long_name, "é".repeat(MAX_TEXT_BYTES / 2));
        let sealed = seal(&alice, bob.public(), &payload).unwrap();
        assert_eq!(decoded_len(&sealed), 65_536);
        assert!(open(&bob, &sealed.ciphertext_b64, &sealed.ephemeral_pubkey_hex).is_ok());
        payload.text.push('x');
        assert_eq!(
            seal(&alice, bob.public(), &payload),
            Err(SealError::TextTooLong {
                len: MAX_TEXT_BYTES + 1,
                max: MAX_TEXT_BYTES
            })
        );
        assert!(CIPHERTEXT_BUCKETS.contains(&65_536));
    }

    #[test]
    fn bad_inputs_have_their_own_errors() {
        let bob = IdentityKeypair::generate();
        let sealed = seal_legacy(bob.public(), "x").unwrap();
        let eph = &sealed.ephemeral_pubkey_hex;
        assert_eq!(
            open(&bob, "not base64!", eph),
            Err(OpenError::InvalidBase64)
        );
        assert_eq!(open(&bob, "", eph), Err(OpenError::DecryptionFailed));
        assert_eq!(open(&bob, "AAAA", eph), Err(OpenError::DecryptionFailed));
        assert!(matches!(
            open(&bob, &sealed.ciphertext_b64, "abc"),
            Err(OpenError::InvalidEphemeralKey(_))
        ));
        let huge = validate::base64_encode(&vec![0; 65_537]);
        assert_eq!(open(&bob, &huge, eph), Err(OpenError::TooLarge));
        // The all-zero ephemeral key is a low-order point: refused like libsodium.
        assert_eq!(
            open(&bob, &sealed.ciphertext_b64, &"00".repeat(32)),
            Err(OpenError::DecryptionFailed)
        );
    }

    #[test]
    fn low_order_recipient_key_is_refused_when_sealing() {
        let alice = IdentityKeypair::from_secret(IdentitySecret::from_bytes([1; 32]));
        let zero = IdentityPublic::from_bytes([0; 32]);
        assert_eq!(
            seal(&alice, &zero, &Payload::new("alice", "bob", "x")),
            Err(SealError::InvalidRecipientKey)
        );
        assert_eq!(seal_legacy(&zero, "x"), Err(SealError::InvalidRecipientKey));
    }

    #[test]
    fn debug_hides_text() {
        let opened = Opened::Legacy {
            text: "private words".into(),
        };
        assert!(!format!("{opened:?}").contains("private"));
    }
}
