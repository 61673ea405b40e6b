//! The bounds of v2, shared so the client can refuse before a round trip and
//! the relay enforces the same numbers. docs/PROTOCOL.md lists them.

/// Largest MLS message (commit, welcome, proposal, application) once decoded.
pub const MAX_MLS_MESSAGE_BYTES: usize = 256 * 1024;
/// Largest base64 text of an MLS message.
pub const MAX_MLS_MESSAGE_B64_CHARS: usize = MAX_MLS_MESSAGE_BYTES.div_ceil(3) * 4;
/// Largest key package once decoded.
pub const MAX_KEY_PACKAGE_BYTES: usize = 8 * 1024;
/// Key packages a device may have outstanding on the relay (plus one last-resort package).
pub const MAX_KEY_PACKAGES_PER_DEVICE: u32 = 100;
/// Most devices named in one commit's `added` or `removed`.
pub const MAX_MEMBERS_CHANGED_PER_COMMIT: usize = 1000;
/// Most member devices of one group.
pub const MAX_GROUP_MEMBERS: u32 = 1000;
/// Group id length in bytes, and the longest wire form (unpadded base64url).
pub const GROUP_ID_MAX_BYTES: usize = 64;
pub const GROUP_ID_MAX_CHARS: usize = GROUP_ID_MAX_BYTES.div_ceil(3) * 4;
/// Queue page size bounds and default.
pub const QUEUE_LIMIT_MAX: u32 = 500;
pub const QUEUE_LIMIT_DEFAULT: u32 = 100;
/// Longest queue long-poll, in seconds.
pub const QUEUE_WAIT_MAX: u32 = 60;
/// How far a session proof's timestamp may be from the relay's clock, in seconds.
pub const SESSION_SKEW_SECS: i64 = 300;
/// A device token's lifetime, in seconds.
pub const DEVICE_TOKEN_TTL_SECS: i64 = 3600;
/// A link code's lifetime, in seconds, and the failed approvals it survives.
pub const LINK_CODE_TTL_SECS: i64 = 600;
pub const LINK_CODE_MAX_FAILURES: u32 = 3;
/// Link codes: this many characters of [`LINK_CODE_ALPHABET`] (50 bits).
pub const LINK_CODE_LEN: usize = 10;
/// Crockford's base32 alphabet: no I, L, O or U, so a code read aloud is unambiguous.
pub const LINK_CODE_ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Open link requests one account may have at once.
pub const MAX_OPEN_LINK_REQUESTS: u32 = 5;
/// The largest chunk one blob `PUT` takes (`BlobStatus::chunk_max`).
pub const BLOB_CHUNK_MAX: u64 = 8 * 1024 * 1024;
/// The relay's default blob size cap (configurable: `blob_max_bytes`).
pub const DEFAULT_BLOB_MAX_BYTES: u64 = 100 * 1024 * 1024;
