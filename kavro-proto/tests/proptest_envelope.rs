//! Properties of the end-to-end layer: round trips for any text up to the
//! limit, every single-bit change refused, no input makes `open` panic, and
//! the ciphertext length reveals only the bucket.

// Helpers and fixtures outside `#[test]` fns unwrap too: a failure is a failed test.
#![allow(clippy::unwrap_used)]

use std::sync::LazyLock;

use chrono::DateTime;
use crypto_box::aead::Aead as _;
use kavro_proto::crypto::{
    CIPHERTEXT_BUCKETS, ENVELOPE_MAGIC, ENVELOPE_OVERHEAD, ENVELOPE_VERSION, IdentityKeypair,
    IdentitySecret, MAX_TEXT_BYTES, OpenError, Opened, PAYLOAD_FIXED_LEN, Payload, SealedMessage,
    bucket_for_payload_len, open, seal,
};
use kavro_proto::validate::{base64_encode, base64_strict};
use proptest::prelude::*;
use uuid::Uuid;

static ALICE: LazyLock<IdentityKeypair> =
    LazyLock::new(|| IdentityKeypair::from_secret(IdentitySecret::from_bytes([0xa1; 32])));
static BOB: LazyLock<IdentityKeypair> =
    LazyLock::new(|| IdentityKeypair::from_secret(IdentitySecret::from_bytes([0xb0; 32])));

/// One sealed message whose bits the bit-flip property changes.
static SEALED: LazyLock<(SealedMessage, Vec<u8>)> = LazyLock::new(|| {
    let sealed = seal(
        &ALICE,
        BOB.public(),
        &payload("a message to tamper with".into()),
    )
    .unwrap();
    let wire = base64_strict(&sealed.ciphertext_b64).unwrap();
    (sealed, wire)
});

fn payload(text: String) -> Payload {
    Payload {
        sender: "alice".into(),
        recipient: "bob".into(),
        sent_at: DateTime::from_timestamp_millis(1_780_000_000_000).unwrap(),
        message_id: Uuid::from_u128(7),
        text,
        file: None,
    }
}

/// Texts of any Unicode, mostly short, sometimes near the limit.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        8 => ".{0,300}",
        1 => (0..=MAX_TEXT_BYTES).prop_map(|len| "x".repeat(len)),
        1 => (0usize..=32, any::<char>()).prop_map(|(shorter, c)| {
            // Fill up to exactly MAX_TEXT_BYTES - shorter bytes, ending in `c`.
            let target = MAX_TEXT_BYTES - shorter;
            let mut text = "y".repeat(target.saturating_sub(c.len_utf8()));
            text.push(c);
            text
        }),
    ]
}

/// Puts arbitrary bytes in a valid outer box to bob, so the envelope and
/// legacy parsers behind it see them.
fn in_outer_box(plaintext: &[u8]) -> (String, String) {
    let eph = crypto_box::SecretKey::from([0x5e; 32]);
    let bob = crypto_box::PublicKey::from(*BOB.public().as_bytes());
    let nonce = [0x11u8; 24];
    let boxed = crypto_box::SalsaBox::new(&bob, &eph)
        .encrypt(&nonce.into(), plaintext)
        .unwrap();
    let mut wire = nonce.to_vec();
    wire.extend(boxed);
    (
        base64_encode(&wire),
        hex::encode(eph.public_key().as_bytes()),
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

    #[test]
    fn any_text_up_to_the_limit_round_trips(text in text()) {
        prop_assume!(text.len() <= MAX_TEXT_BYTES);
        let sent = payload(text);
        let sealed = seal(&ALICE, BOB.public(), &sent).unwrap();
        let opened = open(&BOB, &sealed.ciphertext_b64, &sealed.ephemeral_pubkey_hex).unwrap();
        prop_assert_eq!(opened, Opened::Envelope { sender_key: *ALICE.public(), payload: sent });
    }

    #[test]
    fn the_length_reveals_only_the_bucket(text in text()) {
        prop_assume!(text.len() <= MAX_TEXT_BYTES);
        let len = text.len();
        let sealed = seal(&ALICE, BOB.public(), &payload(text)).unwrap();
        let wire_len = base64_strict(&sealed.ciphertext_b64).unwrap().len();
        // "alice" and "bob" take 8 bytes of names.
        let expected = bucket_for_payload_len(PAYLOAD_FIXED_LEN + 8 + len).unwrap();
        prop_assert_eq!(wire_len, expected);
        prop_assert!(CIPHERTEXT_BUCKETS.contains(&wire_len));
        // Every other text length in the same bucket gives the same length.
        let smallest_in_bucket = CIPHERTEXT_BUCKETS
            .iter()
            .take_while(|&&b| b < expected)
            .last()
            .map_or(0, |&b| b - ENVELOPE_OVERHEAD - PAYLOAD_FIXED_LEN - 8 + 1);
        let other = seal(&ALICE, BOB.public(), &payload("z".repeat(smallest_in_bucket))).unwrap();
        prop_assert_eq!(base64_strict(&other.ciphertext_b64).unwrap().len(), wire_len);
    }

    #[test]
    fn flipping_any_bit_is_refused(byte in any::<prop::sample::Index>(), bit in 0..8u8) {
        let (sealed, wire) = &*SEALED;
        let mut tampered = wire.clone();
        tampered[byte.index(wire.len())] ^= 1 << bit;
        let result = open(&BOB, &base64_encode(&tampered), &sealed.ephemeral_pubkey_hex);
        prop_assert_eq!(result, Err(OpenError::DecryptionFailed));
    }

    #[test]
    fn open_never_panics_on_arbitrary_strings(ciphertext in ".{0,400}", eph in ".{0,70}") {
        let _ = open(&BOB, &ciphertext, &eph);
    }

    #[test]
    fn open_never_panics_on_arbitrary_bytes(wire in proptest::collection::vec(any::<u8>(), 0..600)) {
        let eph = &SEALED.0.ephemeral_pubkey_hex;
        prop_assert!(open(&BOB, &base64_encode(&wire), eph).is_err());
    }

    #[test]
    fn any_plaintext_behind_a_valid_outer_box_is_handled(
        tail in proptest::collection::vec(any::<u8>(), 0..400),
        prefix in 0..=5usize,
    ) {
        // Starting with a prefix of the magic and version steers the bytes
        // into the envelope parser; without it they are a legacy plaintext.
        let mut plaintext = [&ENVELOPE_MAGIC[..], &[ENVELOPE_VERSION]].concat();
        plaintext.truncate(prefix);
        plaintext.extend_from_slice(&tail);
        let (ciphertext, eph) = in_outer_box(&plaintext);
        let result = open(&BOB, &ciphertext, &eph);
        if plaintext.first() == Some(&0xFF) {
            prop_assert!(matches!(
                result,
                Err(OpenError::EnvelopeNotAuthentic | OpenError::UnsupportedVersion(_))
            ));
        } else {
            let expected = std::str::from_utf8(&plaintext)
                .map(|text| Opened::Legacy { text: text.to_owned() })
                .map_err(|_| OpenError::LegacyNotUtf8);
            prop_assert_eq!(result, expected);
        }
    }
}
