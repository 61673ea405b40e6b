//! Request bodies for sends, built once and reused, and the send timestamp the
//! delivery scenario hides in the (opaque to the relay) ciphertext bytes.
//!
//! A stamped ciphertext starts with `KVB1` and the send time as a little-endian
//! `u64` of microseconds since the run's epoch: 12 bytes, which are exactly the
//! first 16 base64 characters (base64 maps every 3 bytes to 4 characters on
//! their own). So a body is a fixed JSON template and stamping a send is
//! overwriting 16 characters of a copy, not a new serialisation.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use kavro_proto::UserId;
use kavro_proto::api::SendMessage;
use rand::RngCore;

/// Marks a ciphertext made by kavro-bench with a send timestamp.
pub const MAGIC: [u8; 4] = *b"KVB1";
/// Bytes of magic plus timestamp at the start of a stamped ciphertext.
pub const STAMP_BYTES: usize = 12;
/// Base64 characters those bytes take.
pub const STAMP_CHARS: usize = 16;
/// The default ciphertext size: about a short chat message in a crypto_box.
pub const DEFAULT_CIPHERTEXT_BYTES: usize = 200;

/// The 12 stamp bytes for a send at `micros` after the run's epoch.
pub fn stamp_bytes(micros: u64) -> [u8; STAMP_BYTES] {
    let mut out = [0u8; STAMP_BYTES];
    out[..4].copy_from_slice(&MAGIC);
    out[4..].copy_from_slice(&micros.to_le_bytes());
    out
}

/// The send time in a stamped ciphertext (as the relay returns it: base64),
/// or `None` when it was not stamped by us.
pub fn read_stamp(ciphertext_b64: &str) -> Option<u64> {
    let head = ciphertext_b64.get(..STAMP_CHARS)?;
    let mut bytes = [0u8; STAMP_BYTES];
    let n = STANDARD.decode_slice(head, &mut bytes).ok()?;
    if n != STAMP_BYTES || bytes[..4] != MAGIC {
        return None;
    }
    let mut micros = [0u8; 8];
    micros.copy_from_slice(&bytes[4..]);
    Some(u64::from_le_bytes(micros))
}

/// A `POST /messages` body for one recipient, serialised once.
#[derive(Debug, Clone)]
pub struct SendTemplate {
    json: Bytes,
    /// Where the ciphertext's base64 starts in `json`.
    ciphertext_at: usize,
}

impl SendTemplate {
    /// One template per user in `users`, shared by every task: a send copies nothing.
    pub fn for_users(
        users: &[crate::setup::BenchUser],
        len: usize,
    ) -> std::sync::Arc<Vec<SendTemplate>> {
        let mut rng = rand::rng();
        std::sync::Arc::new(
            users
                .iter()
                .map(|u| SendTemplate::new(u.id, len, &mut rng))
                .collect(),
        )
    }

    /// A body with `len` random ciphertext bytes (at least [`STAMP_BYTES`]) and
    /// a random ephemeral key, made from the relay's own wire type.
    pub fn new(recipient: UserId, len: usize, rng: &mut impl RngCore) -> Self {
        let mut ciphertext = vec![0u8; len.max(STAMP_BYTES)];
        rng.fill_bytes(&mut ciphertext);
        let mut ephemeral = [0u8; 32];
        rng.fill_bytes(&mut ephemeral);
        let encoded = STANDARD.encode(&ciphertext);
        let message = SendMessage {
            recipient_id: recipient,
            ciphertext: encoded.clone().into(),
            ephemeral_pubkey: hex::encode(ephemeral).into(),
            metadata: None,
            client_msg_id: None,
        };
        let json = crate::client::json_body(&message);
        // Base64 never needs JSON escaping, so the text appears verbatim.
        let ciphertext_at =
            find(&json, encoded.as_bytes()).expect("the ciphertext is in its own body");
        Self {
            json,
            ciphertext_at,
        }
    }

    /// The body as is (shared, no copy).
    pub fn body(&self) -> Bytes {
        self.json.clone()
    }

    /// A copy of the body whose ciphertext carries the send time `micros`.
    pub fn stamped(&self, micros: u64) -> Bytes {
        let mut body = self.json.to_vec();
        let slot = &mut body[self.ciphertext_at..self.ciphertext_at + STAMP_CHARS];
        let written = STANDARD
            .encode_slice(stamp_bytes(micros), slot)
            .expect("16 characters hold the base64 of 12 bytes");
        debug_assert_eq!(written, STAMP_CHARS);
        Bytes::from(body)
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn stamp_round_trips_through_base64() {
        for micros in [0, 1, 1_234_567, u64::from(u32::MAX) + 7, u64::MAX] {
            let mut ciphertext = stamp_bytes(micros).to_vec();
            ciphertext.extend_from_slice(&[0xAB; 188]);
            assert_eq!(read_stamp(&STANDARD.encode(&ciphertext)), Some(micros));
        }
    }

    #[test]
    fn foreign_ciphertexts_have_no_stamp() {
        assert_eq!(read_stamp(""), None);
        assert_eq!(read_stamp("aGk="), None);
        assert_eq!(read_stamp(&STANDARD.encode([7u8; 64])), None);
        assert_eq!(read_stamp("!!!!!!!!!!!!!!!!!!!!"), None);
    }

    #[test]
    fn template_is_a_valid_send_body() {
        let mut rng = StdRng::seed_from_u64(7);
        let template = SendTemplate::new(UserId(42), DEFAULT_CIPHERTEXT_BYTES, &mut rng);
        let body: SendMessage = serde_json::from_slice(&template.body()).unwrap();
        assert_eq!(body.recipient_id, UserId(42));
        let bytes = kavro_proto::validate::ciphertext(body.ciphertext.as_str()).unwrap();
        assert_eq!(bytes.len(), DEFAULT_CIPHERTEXT_BYTES);
        kavro_proto::validate::pubkey_hex(body.ephemeral_pubkey.as_str()).unwrap();
        assert!(body.metadata.is_none() && body.client_msg_id.is_none());
    }

    #[test]
    fn stamping_changes_only_the_first_twelve_bytes() {
        let mut rng = StdRng::seed_from_u64(9);
        let template = SendTemplate::new(UserId(3), 200, &mut rng);
        let plain: SendMessage = serde_json::from_slice(&template.body()).unwrap();
        let stamped: SendMessage = serde_json::from_slice(&template.stamped(987_654_321)).unwrap();
        assert_eq!(read_stamp(stamped.ciphertext.as_str()), Some(987_654_321));
        assert_eq!(read_stamp(plain.ciphertext.as_str()), None);
        let a = STANDARD.decode(plain.ciphertext.as_str()).unwrap();
        let b = STANDARD.decode(stamped.ciphertext.as_str()).unwrap();
        assert_eq!(a.len(), b.len());
        assert_eq!(a[STAMP_BYTES..], b[STAMP_BYTES..]);
        assert_eq!(plain.ephemeral_pubkey, stamped.ephemeral_pubkey);
        // The template itself is untouched.
        assert_eq!(template.body(), template.body());
        assert_ne!(template.stamped(1), template.body());
    }
}
