//! The end-to-end layer (docs/API.md part 5): identity keys, the outer
//! libsodium-compatible box, the authenticated v1 envelope, and safety numbers.
//!
//! The relay never sees any of this; it stores `ciphertext` and
//! `ephemeral_pubkey` as opaque strings. The format is specified, with its
//! limits and what it does not protect, in `docs/PROTOCOL.md`; known-answer
//! vectors are in `kavro-proto/tests/data/`.
//!
//! ```
//! use kavro_proto::crypto::{open, seal, IdentityKeypair, Opened, Payload};
//!
//! let alice = IdentityKeypair::generate();
//! let bob = IdentityKeypair::generate();
//! let sent = Payload::new("alice", "bob", "hi bob");
//! let wire = seal(&alice, bob.public(), &sent).unwrap();
//!
//! match open(&bob, &wire.ciphertext_b64, &wire.ephemeral_pubkey_hex).unwrap() {
//!     // Still to check by the caller: sender_key is the key pinned for
//!     // payload.sender, and the payload is addressed to us.
//!     Opened::Envelope { sender_key, payload } => {
//!         assert_eq!(&sender_key, alice.public());
//!         assert!(payload.is_addressed_to("bob"));
//!         assert_eq!(payload, sent);
//!     }
//!     Opened::Legacy { .. } => unreachable!("our clients always send envelopes"),
//! }
//! ```

mod envelope;
mod error;
mod fingerprint;
mod keys;
mod message;
mod nacl;
mod payload;

pub use envelope::{
    CIPHERTEXT_BUCKETS, ENVELOPE_FILE_VERSION, ENVELOPE_HEADER_LEN, ENVELOPE_MAGIC,
    ENVELOPE_OVERHEAD, ENVELOPE_VERSION, MAX_LEGACY_TEXT_BYTES, MAX_TEXT_BYTES, OUTER_OVERHEAD,
    bucket_for_payload_len,
};
pub use error::{OpenError, SealError};
pub use fingerprint::{
    KeyFingerprint, PARTY_HALF_GROUPS, PartyHalf, SAFETY_NUMBER_GROUPS, SAFETY_NUMBER_ITERATIONS,
    SafetyNumber,
};
pub use keys::{
    IdentityKeypair, IdentityPublic, IdentitySecret, KeyParseError, PUBLIC_KEY_HEX_LEN,
};
#[cfg(fuzzing)]
#[doc(hidden)]
pub use message::seal_raw_for_fuzzing;
pub use message::{Opened, SealedMessage, open, seal, seal_legacy};
#[doc(hidden)]
pub use message::{SealRandomness, seal_legacy_with_fixed_randomness, seal_with_fixed_randomness};
pub use nacl::{KEY_LEN, NONCE_LEN, TAG_LEN};
pub use payload::{
    PAYLOAD_FIXED_LEN, PAYLOAD_MAX_OVERHEAD, Payload, SENT_AT_MAX_MS, SENT_AT_MIN_MS,
};
