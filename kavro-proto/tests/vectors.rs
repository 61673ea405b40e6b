//! Known-answer vectors for the end-to-end layer (`tests/data/*.json`, laid out
//! in docs/PROTOCOL.md): every good vector opens to its expected content and
//! seals again to identical bytes; every `fail_` vector is refused with its
//! expected error. The files are fixed; this test only reads them.

use std::collections::{BTreeMap, BTreeSet};

use chrono::DateTime;
use kavro_proto::crypto::{
    CIPHERTEXT_BUCKETS, IdentityKeypair, IdentityPublic, IdentitySecret, KeyFingerprint, OpenError,
    Opened, PartyHalf, Payload, SAFETY_NUMBER_ITERATIONS, SafetyNumber, SealRandomness, open,
    seal_legacy_with_fixed_randomness, seal_with_fixed_randomness,
};
use kavro_proto::validate::base64_strict;
use serde::Deserialize;

#[derive(Deserialize)]
struct EnvelopeFile {
    keys: BTreeMap<String, KeyVector>,
    envelope: Vec<EnvelopeVector>,
    legacy: Vec<LegacyVector>,
    fail: Vec<FailVector>,
}

#[derive(Deserialize)]
struct KeyVector {
    secret: String,
    public: String,
}

#[derive(Deserialize)]
struct EnvelopeVector {
    name: String,
    sender: String,
    recipient: String,
    ephemeral_secret: String,
    outer_nonce: String,
    inner_nonce: String,
    payload: PayloadVector,
    ciphertext_len: usize,
    ephemeral_pubkey: String,
    ciphertext: String,
}

#[derive(Deserialize)]
struct PayloadVector {
    sender: String,
    recipient: String,
    sent_at_ms: i64,
    message_id: String,
    text: String,
}

#[derive(Deserialize)]
struct LegacyVector {
    name: String,
    recipient: String,
    ephemeral_secret: String,
    nonce: String,
    text: String,
    ephemeral_pubkey: String,
    ciphertext: String,
}

#[derive(Deserialize)]
struct FailVector {
    name: String,
    recipient: String,
    error: String,
    version: Option<u8>,
    ephemeral_pubkey: String,
    ciphertext: String,
}

#[derive(Deserialize)]
struct FingerprintFile {
    key_fingerprint: Vec<KeyFingerprintVector>,
}

#[derive(Deserialize)]
struct SafetyNumberFile {
    iterations: u32,
    safety_number: Vec<SafetyNumberVector>,
}

#[derive(Deserialize)]
struct SafetyNumberVector {
    a_name: String,
    a_key: String,
    b_name: String,
    b_key: String,
    a_half: String,
    b_half: String,
    safety_number: String,
}

#[derive(Deserialize)]
struct KeyFingerprintVector {
    key: String,
    fingerprint: String,
}

fn load<T: serde::de::DeserializeOwned>(file: &str) -> T {
    let path = format!("{}/tests/data/{file}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn bytes<const N: usize>(text: &str) -> [u8; N] {
    let mut out = [0u8; N];
    hex::decode_to_slice(text, &mut out).unwrap_or_else(|e| panic!("{text}: {e}"));
    out
}

fn keypairs(file: &EnvelopeFile) -> BTreeMap<&str, IdentityKeypair> {
    file.keys
        .iter()
        .map(|(name, key)| {
            let pair = IdentityKeypair::from_secret(IdentitySecret::from_bytes(bytes(&key.secret)));
            assert_eq!(pair.public().to_hex(), key.public, "public key of {name}");
            (name.as_str(), pair)
        })
        .collect()
}

/// The stable name of each error kind in the vector files.
fn kind(err: &OpenError) -> &'static str {
    match err {
        OpenError::InvalidBase64 => "invalid_base64",
        OpenError::TooLarge => "too_large",
        OpenError::InvalidEphemeralKey(_) => "invalid_ephemeral_key",
        OpenError::DecryptionFailed => "decryption_failed",
        OpenError::EnvelopeNotAuthentic => "envelope_not_authentic",
        OpenError::UnsupportedVersion(_) => "unsupported_version",
        OpenError::LegacyNotUtf8 => "legacy_not_utf8",
    }
}

#[test]
fn envelope_vectors_open_and_reseal_identically() {
    let file: EnvelopeFile = load("envelope_v1.json");
    let keys = keypairs(&file);
    assert!(file.envelope.len() >= 5);
    for v in &file.envelope {
        let (sender, recipient) = (&keys[v.sender.as_str()], &keys[v.recipient.as_str()]);
        let expected = Payload {
            sender: v.payload.sender.clone(),
            recipient: v.payload.recipient.clone(),
            sent_at: DateTime::from_timestamp_millis(v.payload.sent_at_ms).unwrap(),
            message_id: v.payload.message_id.parse().unwrap(),
            text: v.payload.text.clone(),
        };

        let opened = open(recipient, &v.ciphertext, &v.ephemeral_pubkey)
            .unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert_eq!(
            opened,
            Opened::Envelope {
                sender_key: *sender.public(),
                payload: expected.clone()
            },
            "{}",
            v.name
        );

        let decoded = base64_strict(&v.ciphertext).unwrap();
        assert_eq!(decoded.len(), v.ciphertext_len, "{}", v.name);
        assert!(CIPHERTEXT_BUCKETS.contains(&decoded.len()), "{}", v.name);

        let randomness = SealRandomness {
            ephemeral_secret: bytes(&v.ephemeral_secret),
            outer_nonce: bytes(&v.outer_nonce),
            inner_nonce: bytes(&v.inner_nonce),
        };
        let again = seal_with_fixed_randomness(sender, recipient.public(), &expected, &randomness)
            .unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert_eq!(again.ephemeral_pubkey_hex, v.ephemeral_pubkey, "{}", v.name);
        assert!(
            again.ciphertext_b64 == v.ciphertext,
            "{}: resealed bytes differ",
            v.name
        );
    }
}

#[test]
fn legacy_vectors_open_and_reseal_identically() {
    let file: EnvelopeFile = load("envelope_v1.json");
    let keys = keypairs(&file);
    assert!(!file.legacy.is_empty());
    for v in &file.legacy {
        let recipient = &keys[v.recipient.as_str()];
        assert_eq!(
            open(recipient, &v.ciphertext, &v.ephemeral_pubkey),
            Ok(Opened::Legacy {
                text: v.text.clone()
            }),
            "{}",
            v.name
        );
        let again = seal_legacy_with_fixed_randomness(
            recipient.public(),
            &v.text,
            &bytes(&v.ephemeral_secret),
            &bytes(&v.nonce),
        )
        .unwrap();
        assert_eq!(again.ephemeral_pubkey_hex, v.ephemeral_pubkey, "{}", v.name);
        assert_eq!(again.ciphertext_b64, v.ciphertext, "{}", v.name);
    }
}

#[test]
fn fail_vectors_are_refused_with_the_expected_error() {
    let file: EnvelopeFile = load("envelope_v1.json");
    let keys = keypairs(&file);
    let mut kinds_seen = BTreeSet::new();
    for v in &file.fail {
        assert!(v.name.starts_with("fail_"), "{}", v.name);
        let result = open(
            &keys[v.recipient.as_str()],
            &v.ciphertext,
            &v.ephemeral_pubkey,
        );
        let err = match result {
            Ok(opened) => panic!("{} was accepted: {opened:?}", v.name),
            Err(err) => err,
        };
        assert_eq!(kind(&err), v.error, "{}: {err}", v.name);
        if let OpenError::UnsupportedVersion(version) = err {
            assert_eq!(Some(version), v.version, "{}", v.name);
        }
        kinds_seen.insert(kind(&err));
    }
    // Every refusal a vector can show is shown (a 64 KiB+ input is left to the
    // unit tests to keep the file small).
    let expected: BTreeSet<_> = [
        "invalid_base64",
        "invalid_ephemeral_key",
        "decryption_failed",
        "envelope_not_authentic",
        "unsupported_version",
        "legacy_not_utf8",
    ]
    .into_iter()
    .collect();
    assert_eq!(kinds_seen, expected);
}

/// A half as its 6 groups, written like the vectors.
fn half_text(half: &PartyHalf) -> String {
    half.groups()
        .iter()
        .map(|g| format!("{g:05}"))
        .collect::<Vec<_>>()
        .join(" ")
}

#[test]
fn safety_number_vectors() {
    let file: SafetyNumberFile = load("safety_number_v2.json");
    assert_eq!(file.iterations, SAFETY_NUMBER_ITERATIONS);
    assert!(!file.safety_number.is_empty());
    for v in &file.safety_number {
        let a: IdentityPublic = v.a_key.parse().unwrap();
        let b: IdentityPublic = v.b_key.parse().unwrap();
        // Each half depends on its own party only.
        let a_half = PartyHalf::of_account(&v.a_name, &a);
        assert_eq!(half_text(&a_half), v.a_half);
        assert_eq!(half_text(&PartyHalf::of_account(&v.b_name, &b)), v.b_half);
        let number = SafetyNumber::compute(&v.a_name, &a, &v.b_name, &b);
        assert_eq!(number.to_string(), v.safety_number);
        assert!(number.contains(&a_half));
        // The same on the other side, and whatever case each side uses.
        let swapped = SafetyNumber::compute(&v.b_name.to_uppercase(), &b, &v.a_name, &a);
        assert_eq!(swapped, number);
    }
}

#[test]
fn fingerprint_vectors() {
    let file: FingerprintFile = load("fingerprint_v1.json");
    assert!(!file.key_fingerprint.is_empty());
    for v in &file.key_fingerprint {
        let key: IdentityPublic = v.key.parse().unwrap();
        assert_eq!(KeyFingerprint::of(&key).to_string(), v.fingerprint);
    }
}
