//! What can go wrong sealing and opening a message. Cryptographic failures are
//! deliberately coarse: one variant per layer, with no hint of which byte or
//! which check failed.

use super::keys::KeyParseError;

/// Why a message could not be sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error(
        "the message is too long: {len} bytes of UTF-8, at most {max} fit in one message; split it into several"
    )]
    TextTooLong { len: usize, max: usize },
    /// An attachment's reference (its name, media type) and caption do not
    /// fit in one message.
    #[error(
        "the attachment's name, media type and caption are too long for one message; shorten the file name or the caption"
    )]
    FileRefTooLong,
    #[error("the {field} name is not a valid username: {reason}")]
    InvalidUsername { field: &'static str, reason: String },
    #[error("the send time is outside the years 0001 to 9999; check the system clock")]
    SentAtOutOfRange,
    #[error(
        "the recipient's public key is unusable (a low-order point); do not trust this key and ask the recipient to publish a new one"
    )]
    InvalidRecipientKey,
    #[error("the operating system's random number generator failed; try again")]
    RandomnessUnavailable,
}

/// Why a received message could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    #[error("the ciphertext is not valid base64 (standard alphabet, padded, no whitespace)")]
    InvalidBase64,
    #[error("the ciphertext is larger than 64 KiB once decoded")]
    TooLarge,
    #[error("the ephemeral public key is invalid: {0}")]
    InvalidEphemeralKey(#[source] KeyParseError),
    /// The outer box did not open: not encrypted to this identity key, or
    /// altered in transit. Which of the two is deliberately not said.
    #[error(
        "the message could not be decrypted: it was not encrypted to this identity key, or it was altered in transit"
    )]
    DecryptionFailed,
    /// The plaintext is a Kavro envelope, but it is malformed or its inner box
    /// does not open with the sender key it names.
    #[error(
        "the message claims to come from a Kavro client but its sender could not be verified (envelope not authentic); it was not shown"
    )]
    EnvelopeNotAuthentic,
    #[error(
        "the message uses envelope version {0}, which this client does not support; update Kavro to read it"
    )]
    UnsupportedVersion(u8),
    #[error("the message is neither a Kavro envelope nor UTF-8 text, so it cannot be shown")]
    LegacyNotUtf8,
}
