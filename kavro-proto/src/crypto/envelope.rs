//! Envelope v1, the outer plaintext our clients exchange: a magic prefix, a
//! version, the sender's identity key, and an inner `crypto_box` from the
//! sender's identity secret to the recipient's identity key holding the padded
//! payload. Also the size constants and padding buckets.
//!
//! ```text
//! offset  len  field
//!      0    4  magic FF 4B 56 52 ("\xFFKVR"; 0xFF never starts UTF-8 text)
//!      4    1  version = 0x01 (text) or 0x03 (attachment, see below)
//!      5   32  sender identity public key
//!     37   24  inner nonce
//!     61  16+n inner box: crypto_box(sender_sk, recipient_pk, nonce, payload || zeros)
//! ```
//!
//! Version `0x03` is the same envelope around a payload that also carries an
//! attachment's [`FileRef`](crate::attachment::FileRef). A text envelope is
//! byte for byte what it was before attachments; a client that knows only
//! `0x01` refuses `0x03` as [`OpenError::UnsupportedVersion`] ("update
//! Kavro"), never as garbage. `0x02` stays unassigned: the v1 test vectors
//! use it as *the* unknown version (`fail_unknown_version`).

use super::error::{OpenError, SealError};
use super::keys::{IdentityKeypair, IdentityPublic};
use super::nacl::{self, KEY_LEN, NONCE_LEN, TAG_LEN};
use super::payload::{self, PAYLOAD_MAX_OVERHEAD, Payload};
use crate::validate::MAX_CIPHERTEXT_BYTES;

/// First bytes of every envelope. `0xFF` can never start (or appear in) valid
/// UTF-8, so an envelope is never mistaken for a legacy text and vice versa.
pub const ENVELOPE_MAGIC: [u8; 4] = [0xFF, b'K', b'V', b'R'];
/// The envelope version of a text message.
pub const ENVELOPE_VERSION: u8 = 1;
/// The envelope version of an attachment (a text payload, its text the
/// caption, plus the file reference).
pub const ENVELOPE_FILE_VERSION: u8 = 3;
/// Magic, version, sender key and inner nonce.
pub const ENVELOPE_HEADER_LEN: usize = ENVELOPE_MAGIC.len() + 1 + KEY_LEN + NONCE_LEN;
/// What the outer layer adds to its plaintext: nonce and tag.
pub const OUTER_OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// Decoded ciphertext length minus padded payload length.
pub const ENVELOPE_OVERHEAD: usize = OUTER_OVERHEAD + ENVELOPE_HEADER_LEN + TAG_LEN;

/// The only decoded ciphertext lengths an envelope can have: the relay learns
/// the bucket, not the text length. Powers of two up to the relay's 64 KiB cap.
pub const CIPHERTEXT_BUCKETS: [usize; 9] = [
    256,
    512,
    1024,
    2048,
    4096,
    8192,
    16_384,
    32_768,
    MAX_CIPHERTEXT_BYTES,
];

/// Longest text (UTF-8 bytes) an envelope carries, whatever the usernames.
pub const MAX_TEXT_BYTES: usize = MAX_CIPHERTEXT_BYTES - ENVELOPE_OVERHEAD - PAYLOAD_MAX_OVERHEAD;

/// Longest text a legacy (unpadded, unauthenticated) message carries.
pub const MAX_LEGACY_TEXT_BYTES: usize = MAX_CIPHERTEXT_BYTES - OUTER_OVERHEAD;

const _: () = {
    assert!(ENVELOPE_HEADER_LEN == 61);
    assert!(ENVELOPE_OVERHEAD == 117);
    assert!(MAX_TEXT_BYTES == 65_296);
    assert!(CIPHERTEXT_BUCKETS[CIPHERTEXT_BUCKETS.len() - 1] == MAX_CIPHERTEXT_BYTES);
    // The smallest bucket must hold a payload with two maximal usernames.
    assert!(CIPHERTEXT_BUCKETS[0] > ENVELOPE_OVERHEAD + PAYLOAD_MAX_OVERHEAD);
};

/// The bucket (decoded ciphertext length) for an unpadded payload of
/// `payload_len` bytes, or `None` if it does not fit in any.
pub fn bucket_for_payload_len(payload_len: usize) -> Option<usize> {
    CIPHERTEXT_BUCKETS
        .into_iter()
        .find(|bucket| bucket - ENVELOPE_OVERHEAD >= payload_len)
}

/// Whether an outer plaintext is meant as an envelope. Anything starting with
/// `0xFF` is (it cannot be legacy text); it may still turn out malformed.
pub(crate) fn is_envelope(plaintext: &[u8]) -> bool {
    plaintext.first() == Some(&ENVELOPE_MAGIC[0])
}

/// Builds the envelope bytes (the outer plaintext) for `payload`.
pub(crate) fn seal(
    sender: &IdentityKeypair,
    recipient: &IdentityPublic,
    payload: &Payload,
    inner_nonce: &[u8; NONCE_LEN],
) -> Result<Vec<u8>, SealError> {
    let version = if payload.file.is_some() {
        ENVELOPE_FILE_VERSION
    } else {
        ENVELOPE_VERSION
    };
    let mut inner =
        payload::encode(payload, version, recipient, MAX_TEXT_BYTES).map_err(|err| match err {
            payload::EncodeError::InvalidUsername { field, reason } => {
                SealError::InvalidUsername { field, reason }
            }
            payload::EncodeError::TextTooLong { len } => SealError::TextTooLong {
                len,
                max: MAX_TEXT_BYTES,
            },
            payload::EncodeError::SentAtOutOfRange => SealError::SentAtOutOfRange,
        })?;
    let bucket = bucket_for_payload_len(inner.len()).ok_or(if payload.file.is_some() {
        SealError::FileRefTooLong
    } else {
        SealError::TextTooLong {
            len: payload.text.len(),
            max: MAX_TEXT_BYTES,
        }
    })?;
    inner.resize(bucket - ENVELOPE_OVERHEAD, 0);

    let inner_box = nacl::seal(
        sender.secret().as_x25519(),
        recipient.as_bytes(),
        inner_nonce,
        &inner,
    )
    .map_err(|_| SealError::InvalidRecipientKey)?;

    let mut envelope = Vec::with_capacity(ENVELOPE_HEADER_LEN + inner_box.len());
    envelope.extend_from_slice(&ENVELOPE_MAGIC);
    envelope.push(version);
    envelope.extend_from_slice(sender.public().as_bytes());
    envelope.extend_from_slice(inner_nonce);
    envelope.extend_from_slice(&inner_box);
    Ok(envelope)
}

/// Opens envelope bytes: returns the sender key the envelope names (proven by
/// the inner box) and the payload.
pub(crate) fn open(
    recipient: &IdentityKeypair,
    envelope: &[u8],
) -> Result<(IdentityPublic, Payload), OpenError> {
    let (magic, rest) = envelope
        .split_first_chunk::<4>()
        .ok_or(OpenError::EnvelopeNotAuthentic)?;
    if magic != &ENVELOPE_MAGIC {
        return Err(OpenError::EnvelopeNotAuthentic);
    }
    let ([version], rest) = rest
        .split_first_chunk::<1>()
        .ok_or(OpenError::EnvelopeNotAuthentic)?;
    if *version != ENVELOPE_VERSION && *version != ENVELOPE_FILE_VERSION {
        return Err(OpenError::UnsupportedVersion(*version));
    }
    let (sender_key, rest) = rest
        .split_first_chunk::<KEY_LEN>()
        .ok_or(OpenError::EnvelopeNotAuthentic)?;
    let (inner_nonce, inner_box) = rest
        .split_first_chunk::<NONCE_LEN>()
        .ok_or(OpenError::EnvelopeNotAuthentic)?;

    // X25519 ignores the top bit, so a key with it set would open the inner
    // box like its canonical twin yet compare unequal to the pinned key. No
    // real public key has it set: refuse it, so `sender_key` is canonical.
    if sender_key[KEY_LEN - 1] & 0x80 != 0 {
        return Err(OpenError::EnvelopeNotAuthentic);
    }
    let sender_key = IdentityPublic::from_bytes(*sender_key);
    let inner = nacl::open(
        recipient.secret().as_x25519(),
        sender_key.as_bytes(),
        inner_nonce,
        inner_box,
    )
    .map_err(|_| OpenError::EnvelopeNotAuthentic)?;
    // The inner payload repeats the version and names our key: a box that
    // opened with our static key but was made for someone else (reflected
    // back to us) or under another version is refused here.
    let payload = payload::decode(&inner, *version, recipient.public())
        .map_err(|_| OpenError::EnvelopeNotAuthentic)?;
    Ok((sender_key, payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::keys::IdentitySecret;
    use chrono::DateTime;
    use uuid::Uuid;

    fn pair(byte: u8) -> IdentityKeypair {
        IdentityKeypair::from_secret(IdentitySecret::from_bytes([byte; 32]))
    }

    fn payload(text: &str) -> Payload {
        Payload {
            sender: "alice".into(),
            recipient: "bob".into(),
            sent_at: DateTime::from_timestamp_millis(1_780_000_000_000).unwrap(),
            message_id: Uuid::from_u128(42),
            text: text.into(),
            file: None,
        }
    }

    fn file_ref() -> crate::attachment::FileRef {
        crate::attachment::FileRef {
            blob_id: Uuid::from_u128(7).to_string(),
            key: crate::validate::base64_encode(&[1; 32]),
            nonce: crate::validate::base64_encode(&[2; 7]),
            size: 1234,
            sha256: "ab".repeat(32),
            name: "report.pdf".into(),
            media_type: "application/pdf".into(),
        }
    }

    #[test]
    fn a_file_envelope_is_version_3_and_opens_with_its_file() {
        let (alice, bob) = (pair(1), pair(2));
        let mut sent = payload("the numbers");
        sent.file = Some(file_ref());
        let bytes = seal(&alice, bob.public(), &sent, &[9; 24]).unwrap();
        assert_eq!(&bytes[..5], b"\xFFKVR\x03");
        assert_eq!(
            bytes.len(),
            512 - OUTER_OVERHEAD,
            "the file ref moves it up a bucket"
        );
        let (sender, opened) = open(&bob, &bytes).unwrap();
        assert_eq!(&sender, alice.public());
        assert_eq!(opened, sent);
        // A text envelope is unchanged by the file kind.
        let text = seal(&alice, bob.public(), &payload("hi"), &[9; 24]).unwrap();
        assert_eq!(text[4], ENVELOPE_VERSION);
    }

    #[test]
    fn the_version_byte_cannot_swap_text_and_file() {
        let (alice, bob) = (pair(1), pair(2));
        let mut bytes = seal(&alice, bob.public(), &payload("hi"), &[9; 24]).unwrap();
        bytes[4] = ENVELOPE_FILE_VERSION;
        assert_eq!(open(&bob, &bytes), Err(OpenError::EnvelopeNotAuthentic));
        let mut with_file = payload("");
        with_file.file = Some(file_ref());
        let mut bytes = seal(&alice, bob.public(), &with_file, &[9; 24]).unwrap();
        bytes[4] = ENVELOPE_VERSION;
        assert_eq!(open(&bob, &bytes), Err(OpenError::EnvelopeNotAuthentic));
    }

    #[test]
    fn a_file_ref_too_large_for_the_cap_is_an_error() {
        let (alice, bob) = (pair(1), pair(2));
        let mut huge = file_ref();
        huge.name = "n".repeat(MAX_TEXT_BYTES);
        let mut sent = payload("");
        sent.file = Some(huge);
        assert_eq!(
            seal(&alice, bob.public(), &sent, &[0; 24]),
            Err(SealError::FileRefTooLong)
        );
        // Just under the cap still goes, in the largest bucket.
        let mut fits = file_ref();
        let base = serde_json::to_vec(&fits).unwrap().len();
        fits.name = "n".repeat(MAX_TEXT_BYTES - base - 4 - 10 + "report.pdf".len());
        let mut sent = payload("");
        sent.file = Some(fits);
        let bytes = seal(&alice, bob.public(), &sent, &[0; 24]).unwrap();
        assert_eq!(bytes.len(), MAX_CIPHERTEXT_BYTES - OUTER_OVERHEAD);
        assert_eq!(open(&bob, &bytes).unwrap().1, sent);
    }

    #[test]
    fn buckets() {
        assert_eq!(bucket_for_payload_len(0), Some(256));
        assert_eq!(bucket_for_payload_len(256 - 117), Some(256));
        assert_eq!(bucket_for_payload_len(256 - 116), Some(512));
        assert_eq!(bucket_for_payload_len(65_536 - 117), Some(65_536));
        assert_eq!(bucket_for_payload_len(65_536 - 116), None);
        assert!(CIPHERTEXT_BUCKETS.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(MAX_LEGACY_TEXT_BYTES, 65_496);
    }

    #[test]
    fn seal_then_open() {
        let (alice, bob) = (pair(1), pair(2));
        let bytes = seal(&alice, bob.public(), &payload("hi"), &[9; 24]).unwrap();
        assert_eq!(bytes.len(), 256 - OUTER_OVERHEAD);
        assert_eq!(&bytes[..5], b"\xFFKVR\x01");
        assert_eq!(&bytes[5..37], alice.public().as_bytes());
        assert!(is_envelope(&bytes));
        let (sender, opened) = open(&bob, &bytes).unwrap();
        assert_eq!(&sender, alice.public());
        assert_eq!(opened, payload("hi"));
    }

    #[test]
    fn reflection_back_to_the_sender_is_refused() {
        // DH(alice, bob) = DH(bob, alice): an envelope from alice to bob whose
        // header is rewritten to name bob opens at alice's side cryptographically;
        // the recipient key inside the payload is what refuses it.
        let (alice, bob) = (pair(1), pair(2));
        let mut bytes = seal(&alice, bob.public(), &payload("hi"), &[9; 24]).unwrap();
        bytes[5..37].copy_from_slice(bob.public().as_bytes());
        assert_eq!(open(&alice, &bytes), Err(OpenError::EnvelopeNotAuthentic));
    }

    #[test]
    fn sender_key_with_top_bit_set_is_refused() {
        let (alice, bob) = (pair(1), pair(2));
        let mut bytes = seal(&alice, bob.public(), &payload("hi"), &[9; 24]).unwrap();
        assert!(open(&bob, &bytes).is_ok());
        bytes[5 + KEY_LEN - 1] ^= 0x80;
        assert_eq!(open(&bob, &bytes), Err(OpenError::EnvelopeNotAuthentic));
    }

    #[test]
    fn version_and_truncation() {
        let (alice, bob) = (pair(1), pair(2));
        let mut bytes = seal(&alice, bob.public(), &payload("hi"), &[9; 24]).unwrap();
        for cut in 0..bytes.len() {
            let result = open(&bob, &bytes[..cut]);
            assert_eq!(result, Err(OpenError::EnvelopeNotAuthentic), "cut at {cut}");
        }
        bytes[4] = 7;
        assert_eq!(open(&bob, &bytes), Err(OpenError::UnsupportedVersion(7)));
    }

    #[test]
    fn too_long_text_is_an_error_not_a_panic() {
        let (alice, bob) = (pair(1), pair(2));
        let text = "x".repeat(MAX_TEXT_BYTES + 1);
        assert_eq!(
            seal(&alice, bob.public(), &payload(&text), &[0; 24]),
            Err(SealError::TextTooLong {
                len: MAX_TEXT_BYTES + 1,
                max: MAX_TEXT_BYTES
            })
        );
    }
}
