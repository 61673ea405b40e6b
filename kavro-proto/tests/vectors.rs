//! Known-answer vectors for the end-to-end layer (`tests/data/*.json`, laid out
//! in docs/PROTOCOL.md): every good vector opens to its expected content and
//! seals again to identical bytes; every `fail_` vector is refused with its
//! expected error. The files are fixed; this test only reads them.

use std::collections::{BTreeMap, BTreeSet};

use chrono::DateTime;
use kavro_proto::attachment::FileRef;
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
    /// File envelopes (version 3) only.
    #[serde(default)]
    file: Option<FileRef>,
}

/// `envelope_file_v3.json`: file envelopes and their refusals.
#[derive(Deserialize)]
struct FileEnvelopeFile {
    keys: BTreeMap<String, KeyVector>,
    envelope: Vec<EnvelopeVector>,
    fail: Vec<FailVector>,
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

fn keypairs(keys: &BTreeMap<String, KeyVector>) -> BTreeMap<&str, IdentityKeypair> {
    keys.iter()
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
    assert!(file.envelope.len() >= 5);
    assert!(file.envelope.iter().all(|v| v.payload.file.is_none()));
    check_envelopes(&keypairs(&file.keys), &file.envelope);
}

/// Every vector opens to its payload from its sender and seals again to
/// identical bytes.
fn check_envelopes(keys: &BTreeMap<&str, IdentityKeypair>, vectors: &[EnvelopeVector]) {
    for v in vectors {
        let (sender, recipient) = (&keys[v.sender.as_str()], &keys[v.recipient.as_str()]);
        let expected = Payload {
            sender: v.payload.sender.clone(),
            recipient: v.payload.recipient.clone(),
            sent_at: DateTime::from_timestamp_millis(v.payload.sent_at_ms)
                .expect("sent_at in range"),
            message_id: v.payload.message_id.parse().expect("a UUID"),
            text: v.payload.text.clone(),
            file: v.payload.file.clone(),
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

        let decoded = base64_strict(&v.ciphertext).expect("base64");
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
    let keys = keypairs(&file.keys);
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
    let kinds_seen = check_fails(&keypairs(&file.keys), &file.fail);
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

/// Every vector is refused with its error; returns the kinds seen.
fn check_fails(
    keys: &BTreeMap<&str, IdentityKeypair>,
    vectors: &[FailVector],
) -> BTreeSet<&'static str> {
    let mut kinds_seen = BTreeSet::new();
    for v in vectors {
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
    kinds_seen
}

/// File envelopes (version 3): each opens to its payload and file
/// reference and seals again identically; each `fail_` one is refused.
#[test]
fn file_envelope_vectors() {
    let file: FileEnvelopeFile = load("envelope_file_v3.json");
    let keys = keypairs(&file.keys);
    assert!(file.envelope.len() >= 3);
    assert!(file.envelope.iter().all(|v| v.payload.file.is_some()));
    check_envelopes(&keys, &file.envelope);
    let kinds = check_fails(&keys, &file.fail);
    assert!(kinds.contains("envelope_not_authentic"), "{kinds:?}");
}

/// Spoils a file reference for a `fail_` vector.
type Spoil = fn(&mut FileRef);

/// Prints `envelope_file_v3.json` from fixed inputs: run once with
/// `cargo test -p kavro-proto --test vectors generate_file_vectors --
/// --ignored --nocapture`, checked in, then fixed like the v1 file.
#[test]
#[ignore = "generates the file vectors; they are fixed once checked in"]
fn generate_file_vectors() {
    let v1: EnvelopeFile = load("envelope_v1.json");
    let keys = keypairs(&v1.keys);
    let file_ref = |name: &str, size: u64, media: &str, blob: u128| FileRef {
        blob_id: uuid::Uuid::from_u128(blob).to_string(),
        key: kavro_proto::validate::base64_encode(&[0x42; 32]),
        nonce: kavro_proto::validate::base64_encode(&[0x24; 7]),
        size,
        sha256: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08".into(),
        name: name.into(),
        media_type: media.into(),
    };
    let cases = [
        (
            "file_no_caption",
            "alice",
            "bob",
            "",
            file_ref(
                "report.pdf",
                1_234_567,
                "application/pdf",
                0x0123_4567_89ab_4cde_8f01_2345_6789_abcd,
            ),
        ),
        (
            "file_with_caption",
            "alice",
            "bob",
            "the numbers for Q3 ✓",
            file_ref(
                "photo 1.png",
                4_096,
                "image/png",
                0x1111_2222_3333_4444_8555_6666_7777_8888,
            ),
        ),
        (
            "file_unicode_name",
            "bob",
            "alice",
            "",
            file_ref(
                "Übersicht – 2026.txt",
                0,
                "text/plain",
                0x2222_3333_4444_4555_9666_7777_8888_9999,
            ),
        ),
    ];
    let mut envelope = Vec::new();
    let mut fail = Vec::new();
    for (i, (name, from, to, caption, file)) in cases.into_iter().enumerate() {
        let i = u8::try_from(i).unwrap();
        let payload = Payload {
            sender: from.into(),
            recipient: to.into(),
            sent_at: DateTime::from_timestamp_millis(1_780_000_000_000 + i64::from(i)).unwrap(),
            message_id: uuid::Uuid::from_u128(
                0xf11e_0000_0000_4000_8000_0000_0000_0000 + u128::from(i),
            ),
            text: caption.into(),
            file: Some(file.clone()),
        };
        let randomness = SealRandomness {
            ephemeral_secret: [0x10 + i; 32],
            outer_nonce: [0x20 + i; 24],
            inner_nonce: [0x30 + i; 24],
        };
        let sealed =
            seal_with_fixed_randomness(&keys[from], keys[to].public(), &payload, &randomness)
                .unwrap();
        envelope.push(serde_json::json!({
            "name": name,
            "sender": from,
            "recipient": to,
            "ephemeral_secret": hex::encode(randomness.ephemeral_secret),
            "outer_nonce": hex::encode(randomness.outer_nonce),
            "inner_nonce": hex::encode(randomness.inner_nonce),
            "payload": {
                "sender": from,
                "recipient": to,
                "sent_at_ms": payload.sent_at.timestamp_millis(),
                "message_id": payload.message_id.to_string(),
                "text": caption,
                "file": file,
            },
            "ciphertext_len": base64_strict(&sealed.ciphertext_b64).unwrap().len(),
            "ephemeral_pubkey": sealed.ephemeral_pubkey_hex,
            "ciphertext": sealed.ciphertext_b64,
        }));
        if i == 0 {
            fail.push(serde_json::json!({
                "name": "fail_file_wrong_recipient",
                "comment": "vector 'file_no_caption' given to carol",
                "recipient": "carol",
                "error": "decryption_failed",
                "ephemeral_pubkey": sealed.ephemeral_pubkey_hex,
                "ciphertext": sealed.ciphertext_b64,
            }));
        }
    }
    let spoilt: [(&str, &str, Spoil); 4] = [
        (
            "fail_file_blob_id_not_uuid",
            "the file reference's blob_id is not a UUID (inner box valid, alice to bob)",
            |f| f.blob_id = "blob-1".into(),
        ),
        (
            "fail_file_key_too_short",
            "the file key is 31 bytes, not 32 (inner box valid, alice to bob)",
            |f| f.key = kavro_proto::validate::base64_encode(&[0x42; 31]),
        ),
        (
            "fail_file_nonce_not_base64",
            "the nonce prefix is not base64 (inner box valid, alice to bob)",
            |f| f.nonce = "not base64!".into(),
        ),
        (
            "fail_file_sha256_upper_case",
            "the SHA-256 is upper-case hex (inner box valid, alice to bob)",
            |f| f.sha256 = f.sha256.to_uppercase(),
        ),
    ];
    for (j, (name, comment, spoil)) in spoilt.into_iter().enumerate() {
        let j = u8::try_from(j).unwrap();
        let mut file = file_ref("x.bin", 1, "application/octet-stream", 5);
        spoil(&mut file);
        let payload = Payload {
            sender: "alice".into(),
            recipient: "bob".into(),
            sent_at: DateTime::from_timestamp_millis(1_780_000_000_000).unwrap(),
            message_id: uuid::Uuid::from_u128(
                0xbad0_0000_0000_4000_8000_0000_0000_0000 + u128::from(j),
            ),
            text: String::new(),
            file: Some(file),
        };
        let randomness = SealRandomness {
            ephemeral_secret: [0x50 + j; 32],
            outer_nonce: [0x60 + j; 24],
            inner_nonce: [0x70 + j; 24],
        };
        let sealed =
            seal_with_fixed_randomness(&keys["alice"], keys["bob"].public(), &payload, &randomness)
                .unwrap();
        fail.push(serde_json::json!({
            "name": name,
            "comment": comment,
            "recipient": "bob",
            "error": "envelope_not_authentic",
            "ephemeral_pubkey": sealed.ephemeral_pubkey_hex,
            "ciphertext": sealed.ciphertext_b64,
        }));
    }
    let keys_json: BTreeMap<_, _> = v1
        .keys
        .iter()
        .map(|(name, k)| {
            (
                name.clone(),
                serde_json::json!({"secret": k.secret, "public": k.public}),
            )
        })
        .collect();
    let out = serde_json::json!({
        "about": [
            "Known-answer vectors for Kavro file envelopes (envelope version 3, attachments over v1). See docs/PROTOCOL.md section 5.1.",
            "Same layout as envelope_v1.json; each payload adds 'file' (the FileRef carried after the caption).",
            "'fail' vectors must be refused by open(recipient, ciphertext, ephemeral_pubkey) with 'error'."
        ],
        "keys": keys_json,
        "envelope": envelope,
        "fail": fail,
    });
    println!("{}", serde_json::to_string_pretty(&out).unwrap());
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
