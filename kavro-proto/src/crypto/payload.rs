//! The authenticated inside of a v1 envelope: who wrote to whom, when, which
//! message and what text, in a fixed binary layout followed by zero padding.
//!
//! Binary rather than JSON so that the text's encoded length is exactly its
//! UTF-8 length (JSON escaping can grow text sixfold), which is what lets
//! [`super::MAX_TEXT_BYTES`] be a constant.
//!
//! An attachment (envelope version [`super::ENVELOPE_FILE_VERSION`]) is the
//! same layout, its text the caption, followed by the [`FileRef`] as a
//! length-prefixed JSON object (docs/PROTOCOL.md section 5.1): the file
//! reference is small and bounded by the bucket, so JSON's growth does not
//! matter there, and it is the form v2's MLS payload already carries.

use std::fmt;

use chrono::{DateTime, Utc};
use uuid::Uuid;

use super::envelope::ENVELOPE_FILE_VERSION;
use super::keys::IdentityPublic;
use super::nacl::KEY_LEN;
use crate::attachment::{FileKey, FileRef};
use crate::validate;

/// Bytes of the payload encoding that do not depend on its strings: version
/// (1), recipient key (32), sent at (8), message id (16), the two name length
/// bytes (2) and the text length (4).
pub const PAYLOAD_FIXED_LEN: usize = 1 + KEY_LEN + 8 + 16 + 1 + 1 + 4;

/// The largest payload overhead: fixed fields plus two usernames of maximum length.
pub const PAYLOAD_MAX_OVERHEAD: usize = PAYLOAD_FIXED_LEN + 2 * validate::USERNAME_MAX;

/// Earliest `sent_at` a payload may carry: 0001-01-01T00:00:00Z, in Unix milliseconds.
pub const SENT_AT_MIN_MS: i64 = -62_135_596_800_000;
/// Latest `sent_at` a payload may carry: 9999-12-31T23:59:59.999Z. The range is
/// that of four-digit years, which every language's date type can hold.
pub const SENT_AT_MAX_MS: i64 = 253_402_300_799_999;

/// One chat message as the sender wrote it.
///
/// `Debug` shows the text's length, not the text, so logs do not leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Payload {
    /// The sender's username (3–30 of `[A-Za-z0-9_-]`).
    pub sender: String,
    /// The recipient's username; the receiver checks it is its own.
    pub recipient: String,
    /// When the sender sealed it. Encoded in whole milliseconds: sealing
    /// drops anything finer.
    pub sent_at: DateTime<Utc>,
    /// Random (UUID v4) per message; receivers de-duplicate on it.
    pub message_id: Uuid,
    /// The text; for an attachment its caption (empty: none).
    pub text: String,
    /// An attachment: the relay's blob and what opens it. `Some` makes the
    /// envelope a file envelope (version [`super::ENVELOPE_FILE_VERSION`]).
    pub file: Option<FileRef>,
}

impl Payload {
    /// A new message sent now, with a fresh random id. The time is truncated
    /// to milliseconds so the payload survives a round trip unchanged.
    pub fn new(
        sender: impl Into<String>,
        recipient: impl Into<String>,
        text: impl Into<String>,
    ) -> Self {
        let now = Utc::now();
        Self {
            sender: sender.into(),
            recipient: recipient.into(),
            sent_at: DateTime::from_timestamp_millis(now.timestamp_millis()).unwrap_or(now),
            message_id: Uuid::new_v4(),
            text: text.into(),
            file: None,
        }
    }

    /// A new attachment message sent now: `file` with an optional caption.
    pub fn with_file(
        sender: impl Into<String>,
        recipient: impl Into<String>,
        file: FileRef,
        caption: Option<&str>,
    ) -> Self {
        Self {
            file: Some(file),
            ..Self::new(sender, recipient, caption.unwrap_or_default())
        }
    }

    /// Whether this payload names `username` as its recipient (usernames are
    /// unique ignoring case). A client must check this before showing it.
    pub fn is_addressed_to(&self, username: &str) -> bool {
        self.recipient.eq_ignore_ascii_case(username)
    }

    /// Whether this payload names `username` as its sender (ignoring case).
    pub fn is_from(&self, username: &str) -> bool {
        self.sender.eq_ignore_ascii_case(username)
    }
}

impl fmt::Debug for Payload {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Payload")
            .field("sender", &self.sender)
            .field("recipient", &self.recipient)
            .field("sent_at", &self.sent_at)
            .field("message_id", &self.message_id)
            .field("text", &format_args!("<{} bytes>", self.text.len()))
            .field("file", &self.file)
            .finish()
    }
}

/// Why a payload cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EncodeError {
    InvalidUsername { field: &'static str, reason: String },
    TextTooLong { len: usize },
    SentAtOutOfRange,
}

/// Bytes the file reference's length field takes.
const FILE_LEN_BYTES: usize = 4;

/// Encodes `payload` without padding. `max_text` bounds the text length.
/// The caller passes [`ENVELOPE_FILE_VERSION`] exactly when the payload
/// has a file (the envelope chooses the version from the payload).
pub(crate) fn encode(
    payload: &Payload,
    version: u8,
    recipient_key: &IdentityPublic,
    max_text: usize,
) -> Result<Vec<u8>, EncodeError> {
    for (field, name) in [
        ("sender", &payload.sender),
        ("recipient", &payload.recipient),
    ] {
        validate::username(name)
            .map_err(|reason| EncodeError::InvalidUsername { field, reason })?;
    }
    let text = payload.text.as_bytes();
    if text.len() > max_text {
        return Err(EncodeError::TextTooLong { len: text.len() });
    }
    let text_len =
        u32::try_from(text.len()).map_err(|_| EncodeError::TextTooLong { len: text.len() })?;
    let millis = payload.sent_at.timestamp_millis();
    if !(SENT_AT_MIN_MS..=SENT_AT_MAX_MS).contains(&millis) {
        return Err(EncodeError::SentAtOutOfRange);
    }

    let mut out = Vec::with_capacity(PAYLOAD_MAX_OVERHEAD + text.len());
    out.push(version);
    out.extend_from_slice(recipient_key.as_bytes());
    out.extend_from_slice(&millis.to_be_bytes());
    out.extend_from_slice(payload.message_id.as_bytes());
    for name in [&payload.sender, &payload.recipient] {
        // Valid usernames are at most 30 ASCII bytes, so the length fits a byte.
        out.push(name.len() as u8);
        out.extend_from_slice(name.as_bytes());
    }
    out.extend_from_slice(&text_len.to_be_bytes());
    out.extend_from_slice(text);
    if let Some(file) = &payload.file {
        // Serialising a struct of strings and a number cannot fail; the
        // length is bounded by the bucket check of the caller.
        let json = serde_json::to_vec(file).unwrap_or_default();
        let len = u32::try_from(json.len()).map_err(|_| EncodeError::TextTooLong {
            len: text.len() + json.len(),
        })?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&json);
    }
    Ok(out)
}

/// Whether a received file reference is usable as it stands: a blob id that
/// is a UUID, a 32-byte key and 7-byte nonce, a SHA-256 in lowercase hex.
/// Anything else is refused with the envelope, not at download time.
fn file_ref_is_well_formed(file: &FileRef) -> bool {
    Uuid::try_parse(&file.blob_id).is_ok()
        && FileKey::from_ref(file).is_ok()
        && file.sha256.len() == 64
        && file
            .sha256
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// The payload is not well formed. Carries no detail: the caller reports it
/// as "envelope not authentic" either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Malformed;

/// Decodes an authenticated, padded payload. Everything is checked: the
/// version matches the envelope's, the recipient key is ours, names are valid
/// usernames, lengths stay in bounds, the text is UTF-8 and the padding is zero.
pub(crate) fn decode(
    bytes: &[u8],
    version: u8,
    recipient_key: &IdentityPublic,
) -> Result<Payload, Malformed> {
    let mut input = Reader(bytes);
    if input.array::<1>()? != &[version] {
        return Err(Malformed);
    }
    if input.array::<KEY_LEN>()? != recipient_key.as_bytes() {
        return Err(Malformed);
    }
    let millis = i64::from_be_bytes(*input.array::<8>()?);
    if !(SENT_AT_MIN_MS..=SENT_AT_MAX_MS).contains(&millis) {
        return Err(Malformed);
    }
    let sent_at = DateTime::from_timestamp_millis(millis).ok_or(Malformed)?;
    let message_id = Uuid::from_bytes(*input.array::<16>()?);
    let sender = input.username()?;
    let recipient = input.username()?;
    let text_len = u32::from_be_bytes(*input.array::<4>()?) as usize;
    let text = std::str::from_utf8(input.take(text_len)?)
        .map_err(|_| Malformed)?
        .to_owned();
    let file = if version == ENVELOPE_FILE_VERSION {
        let len = u32::from_be_bytes(*input.array::<FILE_LEN_BYTES>()?) as usize;
        let file: FileRef = serde_json::from_slice(input.take(len)?).map_err(|_| Malformed)?;
        if !file_ref_is_well_formed(&file) {
            return Err(Malformed);
        }
        Some(file)
    } else {
        None
    };
    if input.0.iter().any(|&b| b != 0) {
        return Err(Malformed);
    }
    Ok(Payload {
        sender,
        recipient,
        sent_at,
        message_id,
        text,
        file,
    })
}

/// A cursor over untrusted bytes that never panics: every read is bounds-checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn array<const N: usize>(&mut self) -> Result<&'a [u8; N], Malformed> {
        let (head, rest) = self.0.split_first_chunk::<N>().ok_or(Malformed)?;
        self.0 = rest;
        Ok(head)
    }

    fn take(&mut self, len: usize) -> Result<&'a [u8], Malformed> {
        if len > self.0.len() {
            return Err(Malformed);
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    fn username(&mut self) -> Result<String, Malformed> {
        let [len] = *self.array::<1>()?;
        let name = std::str::from_utf8(self.take(usize::from(len))?).map_err(|_| Malformed)?;
        validate::username(name).map_err(|_| Malformed)?;
        Ok(name.to_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Payload {
        Payload {
            sender: "alice".into(),
            recipient: "Bob".into(),
            sent_at: DateTime::from_timestamp_millis(1_780_000_000_123).unwrap(),
            message_id: Uuid::from_u128(0x0123_4567_89ab_4cde_8f01_2345_6789_abcd),
            text: "héllo".into(),
            file: None,
        }
    }

    const KEY: IdentityPublic = IdentityPublic::from_bytes([7; 32]);

    #[test]
    fn constants() {
        assert_eq!(PAYLOAD_FIXED_LEN, 63);
        assert_eq!(PAYLOAD_MAX_OVERHEAD, 123);
    }

    #[test]
    fn layout_is_as_documented() {
        let bytes = encode(&sample(), 1, &KEY, 100).unwrap();
        assert_eq!(bytes.len(), PAYLOAD_FIXED_LEN + 5 + 3 + 6);
        assert_eq!(bytes[0], 1);
        assert_eq!(&bytes[1..33], &[7; 32]);
        assert_eq!(&bytes[33..41], &1_780_000_000_123_i64.to_be_bytes());
        assert_eq!(&bytes[41..57], sample().message_id.as_bytes());
        assert_eq!(&bytes[57..63], b"\x05alice");
        assert_eq!(&bytes[63..67], b"\x03Bob");
        assert_eq!(&bytes[67..71], &[0, 0, 0, 6]);
        assert_eq!(&bytes[71..], "héllo".as_bytes());
    }

    #[test]
    fn round_trip_with_padding() {
        let mut bytes = encode(&sample(), 1, &KEY, 100).unwrap();
        bytes.resize(bytes.len() + 50, 0);
        assert_eq!(decode(&bytes, 1, &KEY), Ok(sample()));
    }

    #[test]
    fn rejects_what_it_should() {
        let good = encode(&sample(), 1, &KEY, 100).unwrap();
        assert_eq!(decode(&good, 2, &KEY), Err(Malformed), "version mismatch");
        let other = IdentityPublic::from_bytes([8; 32]);
        assert_eq!(decode(&good, 1, &other), Err(Malformed), "not our key");
        for cut in 0..good.len() {
            assert_eq!(
                decode(&good[..cut], 1, &KEY),
                Err(Malformed),
                "cut at {cut}"
            );
        }
        let mut padded = good.clone();
        padded.extend_from_slice(&[0, 0, 1]);
        assert_eq!(decode(&padded, 1, &KEY), Err(Malformed), "nonzero padding");
        let mut bad_name = good.clone();
        bad_name[58] = b' ';
        assert_eq!(
            decode(&bad_name, 1, &KEY),
            Err(Malformed),
            "invalid username"
        );
        let mut bad_utf8 = good.clone();
        let last = bad_utf8.len() - 1;
        bad_utf8[last] = 0xff;
        assert_eq!(decode(&bad_utf8, 1, &KEY), Err(Malformed), "text not UTF-8");
        let mut long_text = good;
        long_text[67..71].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(decode(&long_text, 1, &KEY), Err(Malformed), "text overruns");
    }

    fn with_file() -> Payload {
        let mut p = sample();
        p.file = Some(FileRef {
            blob_id: Uuid::from_u128(9).to_string(),
            key: validate::base64_encode(&[1; 32]),
            nonce: validate::base64_encode(&[2; 7]),
            size: 10,
            sha256: "0f".repeat(32),
            name: "a.png".into(),
            media_type: "image/png".into(),
        });
        p
    }

    #[test]
    fn a_file_payload_round_trips_and_a_text_one_carries_no_file() {
        let bytes = encode(&with_file(), ENVELOPE_FILE_VERSION, &KEY, 100).unwrap();
        let text_part = encode(&sample(), ENVELOPE_FILE_VERSION, &KEY, 100).unwrap();
        assert_eq!(
            &bytes[1..text_part.len()],
            &text_part[1..],
            "same layout up to the text"
        );
        let mut padded = bytes.clone();
        padded.resize(bytes.len() + 20, 0);
        assert_eq!(
            decode(&padded, ENVELOPE_FILE_VERSION, &KEY),
            Ok(with_file())
        );
        // Under version 1 the file reference is trailing garbage.
        assert_eq!(decode(&bytes, 1, &KEY), Err(Malformed));
        // A version 3 payload without a file reference is cut short.
        assert_eq!(
            decode(&text_part, ENVELOPE_FILE_VERSION, &KEY),
            Err(Malformed)
        );
    }

    #[test]
    fn a_malformed_file_ref_is_refused() {
        let good = encode(&with_file(), ENVELOPE_FILE_VERSION, &KEY, 100).unwrap();
        let json_at = encode(&sample(), 1, &KEY, 100).unwrap().len() + 4;
        for cut in json_at - 4..good.len() {
            assert_eq!(
                decode(&good[..cut], ENVELOPE_FILE_VERSION, &KEY),
                Err(Malformed),
                "cut at {cut}"
            );
        }
        let mut not_json = good.clone();
        not_json[json_at] = b'x';
        assert_eq!(
            decode(&not_json, ENVELOPE_FILE_VERSION, &KEY),
            Err(Malformed)
        );
        let bad_refs: [fn(&mut FileRef); 5] = [
            |f| f.blob_id = "not-a-uuid".into(),
            |f| f.key = validate::base64_encode(&[1; 31]),
            |f| f.nonce = "***".into(),
            |f| f.sha256 = "0F".repeat(32),
            |f| f.sha256 = "0f".repeat(31),
        ];
        for (i, spoil) in bad_refs.into_iter().enumerate() {
            let mut p = with_file();
            spoil(p.file.as_mut().unwrap());
            let bytes = encode(&p, ENVELOPE_FILE_VERSION, &KEY, 100).unwrap();
            assert_eq!(
                decode(&bytes, ENVELOPE_FILE_VERSION, &KEY),
                Err(Malformed),
                "{i}"
            );
        }
    }

    #[test]
    fn sent_at_range() {
        use chrono::TimeZone as _;
        let min = Utc.with_ymd_and_hms(1, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(min.timestamp_millis(), SENT_AT_MIN_MS);
        let max = Utc.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).unwrap();
        assert_eq!(max.timestamp_millis() + 999, SENT_AT_MAX_MS);
        let mut p = sample();
        for (millis, ok) in [
            (SENT_AT_MIN_MS, true),
            (SENT_AT_MAX_MS, true),
            (SENT_AT_MIN_MS - 1, false),
            (SENT_AT_MAX_MS + 1, false),
        ] {
            p.sent_at = DateTime::from_timestamp_millis(millis).unwrap();
            let encoded = encode(&p, 1, &KEY, 100);
            assert_eq!(encoded.is_ok(), ok, "{millis}");
            // Decoding applies the same range to what another client may send.
            let mut bytes = encode(&sample(), 1, &KEY, 100).unwrap();
            bytes[33..41].copy_from_slice(&millis.to_be_bytes());
            assert_eq!(decode(&bytes, 1, &KEY).is_ok(), ok, "{millis}");
        }
    }

    #[test]
    fn encode_checks_names_and_length() {
        let mut p = sample();
        p.recipient = "no spaces allowed".into();
        assert!(matches!(
            encode(&p, 1, &KEY, 100),
            Err(EncodeError::InvalidUsername {
                field: "recipient",
                ..
            })
        ));
        let mut p = sample();
        p.text = "x".repeat(101);
        assert_eq!(
            encode(&p, 1, &KEY, 100),
            Err(EncodeError::TextTooLong { len: 101 })
        );
    }

    #[test]
    fn debug_hides_text_and_new_is_millisecond_precise() {
        let p = Payload::new("alice", "bob", "top secret words");
        let debug = format!("{p:?}");
        assert!(!debug.contains("secret"), "{debug}");
        assert!(debug.contains("<16 bytes>"), "{debug}");
        assert_eq!(p.sent_at.timestamp_subsec_nanos() % 1_000_000, 0);
        assert_eq!(p.message_id.get_version_num(), 4);
        assert!(p.is_addressed_to("BOB") && p.is_from("Alice") && !p.is_from("bob"));
    }
}
