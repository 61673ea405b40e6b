//! Attachments end to end (issue #14): a file is encrypted on the sender's
//! device under a fresh random key, in segments of [`SEGMENT`] bytes, with
//! the STREAM construction over ChaCha20-Poly1305 (RustCrypto's
//! `aead::stream::StreamBE32`, the construction age uses): each segment's
//! nonce carries its position and whether it is the last one, so a blob that
//! was truncated, reordered, extended or altered does not decrypt. The relay
//! stores only the ciphertext (a blob). What opens it travels inside the
//! end-to-end message, never in the clear: [`FileRef`] (the key, the nonce
//! prefix, the plaintext's size and SHA-256, the file name and media type).
//!
//! Segments are addressed by position, so an interrupted upload resumes at
//! any segment ([`FileKey::encrypt_segment`] of segment `i` needs only the
//! plaintext from `i * SEGMENT`), and a download resumes likewise
//! ([`Decryptor::resume`]).

use chacha20poly1305::ChaCha20Poly1305;
use chacha20poly1305::aead::stream::{NewStream as _, StreamBE32, StreamPrimitive as _};
use chacha20poly1305::aead::{KeyInit as _, rand_core::RngCore as _};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use zeroize::Zeroizing;

/// Plaintext bytes per segment (the last one may be shorter, even empty).
pub const SEGMENT: usize = 64 * 1024;
/// What each segment grows by (the Poly1305 tag).
pub const TAG: usize = 16;
/// A ciphertext segment's full size.
pub const SEALED_SEGMENT: usize = SEGMENT + TAG;
/// STREAM's nonce prefix for ChaCha20-Poly1305 with a 32-bit counter and the
/// last-segment flag: 12 - 4 - 1 bytes.
pub const NONCE_PREFIX: usize = 7;

/// How many segments a plaintext of `size` bytes takes (at least one: an
/// empty file is one empty, authenticated, last segment).
pub fn segments(size: u64) -> u64 {
    size.div_ceil(SEGMENT as u64).max(1)
}

/// The blob's size for a plaintext of `size` bytes.
pub fn sealed_len(size: u64) -> u64 {
    size + segments(size) * TAG as u64
}

/// An attachment did not decrypt or does not match what the message says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachmentError {
    #[error("the file is too large for one attachment")]
    TooLarge,
    #[error("the attachment's key or nonce is malformed")]
    BadKey,
    #[error("segment {0} of the attachment does not decrypt (altered, reordered or not this file)")]
    Segment(u64),
    #[error("the attachment is cut short")]
    Truncated,
    #[error("the attachment is longer than announced")]
    TooLong,
    #[error("the attachment's content does not match its SHA-256")]
    HashMismatch,
}

/// What opens an attachment and describes it: inside the end-to-end
/// message, next to the relay's blob id.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRef {
    /// The relay's blob (a UUID).
    pub blob_id: String,
    /// The file key, base64 (32 bytes).
    pub key: String,
    /// STREAM's nonce prefix, base64 (7 bytes).
    pub nonce: String,
    /// The plaintext's size in bytes.
    pub size: u64,
    /// The plaintext's SHA-256, lowercase hex.
    pub sha256: String,
    /// The file's name on the sender's side (the receiver sanitises it).
    pub name: String,
    /// Its media type (e.g. `image/png`; `application/octet-stream` when unknown).
    pub media_type: String,
}

// The key never reaches a log through Debug.
impl std::fmt::Debug for FileRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileRef")
            .field("blob_id", &self.blob_id)
            .field("size", &self.size)
            .field("sha256", &self.sha256)
            .field("name", &self.name)
            .field("media_type", &self.media_type)
            .finish_non_exhaustive()
    }
}

/// A file's key and nonce prefix: fresh and random for every file.
pub struct FileKey {
    key: Zeroizing<[u8; 32]>,
    nonce: [u8; NONCE_PREFIX],
}

impl FileKey {
    pub fn generate() -> Self {
        let mut key = Zeroizing::new([0u8; 32]);
        let mut nonce = [0u8; NONCE_PREFIX];
        let mut rng = chacha20poly1305::aead::OsRng;
        rng.fill_bytes(key.as_mut());
        rng.fill_bytes(&mut nonce);
        Self { key, nonce }
    }

    /// The key of a received [`FileRef`].
    pub fn from_ref(file: &FileRef) -> Result<Self, AttachmentError> {
        let key = crate::validate::base64_strict(&file.key).ok_or(AttachmentError::BadKey)?;
        let nonce = crate::validate::base64_strict(&file.nonce).ok_or(AttachmentError::BadKey)?;
        let key: [u8; 32] = key.try_into().map_err(|_| AttachmentError::BadKey)?;
        let nonce: [u8; NONCE_PREFIX] = nonce.try_into().map_err(|_| AttachmentError::BadKey)?;
        Ok(Self {
            key: Zeroizing::new(key),
            nonce,
        })
    }

    /// The key and nonce as [`FileRef`] carries them.
    pub fn encoded(&self) -> (String, String) {
        (
            crate::validate::base64_encode(self.key.as_ref()),
            crate::validate::base64_encode(&self.nonce),
        )
    }

    fn stream(&self) -> StreamBE32<ChaCha20Poly1305> {
        let aead = ChaCha20Poly1305::new(self.key.as_ref().into());
        StreamBE32::from_aead(aead, self.nonce.as_ref().into())
    }

    /// Seals segment `index` of a file of `size` bytes: `plain` is exactly
    /// the plaintext from `index * SEGMENT` (a full segment, or the rest).
    pub fn encrypt_segment(
        &self,
        size: u64,
        index: u64,
        plain: &[u8],
    ) -> Result<Vec<u8>, AttachmentError> {
        let position = u32::try_from(index).map_err(|_| AttachmentError::TooLarge)?;
        let last = index + 1 == segments(size);
        let mut buffer = Vec::with_capacity(plain.len() + TAG);
        buffer.extend_from_slice(plain);
        self.stream()
            .encrypt_in_place(position, last, b"", &mut buffer)
            .map_err(|_| AttachmentError::TooLarge)?;
        Ok(buffer)
    }
}

/// Seals a file as it is read: yields the blob's segments in order and,
/// once all are out, the plaintext's SHA-256 ([`Encryptor::finish`]). `size`
/// is the file's size when it was chosen; a file that turns out shorter or
/// longer is refused (it changed while being sent).
pub struct Encryptor<R> {
    key: FileKey,
    reader: R,
    size: u64,
    index: u64,
    hasher: Sha256,
    done: bool,
}

/// Sealing failed: reading the file, or the file changed under us.
#[derive(Debug, thiserror::Error)]
pub enum EncryptError {
    #[error("cannot read the file: {0}")]
    Read(std::io::Error),
    #[error("the file changed while it was being sent")]
    Changed,
    #[error(transparent)]
    Attachment(#[from] AttachmentError),
}

impl<R: std::io::Read> Encryptor<R> {
    pub fn new(key: FileKey, reader: R, size: u64) -> Result<Self, AttachmentError> {
        if segments(size) > u64::from(u32::MAX) {
            return Err(AttachmentError::TooLarge);
        }
        Ok(Self {
            key,
            reader,
            size,
            index: 0,
            hasher: Sha256::new(),
            done: false,
        })
    }

    pub fn key(&self) -> &FileKey {
        &self.key
    }

    /// The next sealed segment, `None` after the last.
    pub fn next_segment(&mut self) -> Result<Option<Vec<u8>>, EncryptError> {
        let mut sealed = Vec::new();
        Ok(self.seal_into(&mut sealed)?.then_some(sealed))
    }

    /// Appends the next sealed segment to `out`, read, hashed and sealed
    /// in place there (no buffer of its own, no copy); `false` after the
    /// last. An upload fills its chunks this way.
    pub fn seal_into(&mut self, out: &mut Vec<u8>) -> Result<bool, EncryptError> {
        if self.done {
            return Ok(false);
        }
        let start = self.index * SEGMENT as u64;
        let want = usize::try_from((self.size - start).min(SEGMENT as u64)).unwrap_or(SEGMENT);
        let at = out.len();
        out.reserve(want + TAG);
        out.resize(at + want, 0);
        let read = self.reader.read_exact(&mut out[at..]);
        if let Err(e) = read {
            out.truncate(at);
            return Err(match e.kind() {
                std::io::ErrorKind::UnexpectedEof => EncryptError::Changed,
                _ => EncryptError::Read(e),
            });
        }
        let last = self.index + 1 == segments(self.size);
        hash_and_seal(&self.key, &mut self.hasher, self.index, last, out, at)?;
        self.index += 1;
        if last {
            // Nothing may follow the announced size.
            let mut probe = [0u8; 1];
            match self.reader.read(&mut probe) {
                Ok(0) => {}
                Ok(_) => return Err(EncryptError::Changed),
                Err(e) => return Err(EncryptError::Read(e)),
            }
            self.done = true;
        }
        Ok(true)
    }

    /// The plaintext's SHA-256 (hex), once every segment was taken.
    pub fn finish(self) -> Result<String, EncryptError> {
        if !self.done {
            return Err(EncryptError::Changed);
        }
        Ok(sha256_hex(self.hasher))
    }
}

/// Hashes the plaintext in `out` from `at` and seals it there as segment
/// `index`. Kept apart from the reader-generic [`Encryptor`] (and likewise
/// [`Decryptor::open_buffered`] from its writer-generic caller) so that the
/// cipher is compiled once, in this crate, with this crate's optimisation
/// level: generic code is compiled in the crate that uses it, and in an
/// unoptimised test build ChaCha20 moved a few MB/s.
fn hash_and_seal(
    key: &FileKey,
    hasher: &mut Sha256,
    index: u64,
    last: bool,
    out: &mut Vec<u8>,
    at: usize,
) -> Result<(), AttachmentError> {
    hasher.update(&out[at..]);
    let position = u32::try_from(index).map_err(|_| AttachmentError::TooLarge)?;
    key.stream()
        .encrypt_in_place(position, last, b"", &mut Tail { vec: out, at })
        .map_err(|_| AttachmentError::TooLarge)
}

/// The end of a vector from `at`, as the AEAD's in-place buffer: a segment
/// is sealed where it lies in an upload's chunk.
struct Tail<'a> {
    vec: &'a mut Vec<u8>,
    at: usize,
}

impl AsRef<[u8]> for Tail<'_> {
    fn as_ref(&self) -> &[u8] {
        &self.vec[self.at..]
    }
}

impl AsMut<[u8]> for Tail<'_> {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.vec[self.at..]
    }
}

impl chacha20poly1305::aead::Buffer for Tail<'_> {
    fn extend_from_slice(&mut self, other: &[u8]) -> chacha20poly1305::aead::Result<()> {
        self.vec.extend_from_slice(other);
        Ok(())
    }

    fn truncate(&mut self, len: usize) {
        self.vec.truncate(self.at + len);
    }
}

/// SHA-256 in the form [`FileRef::sha256`] carries.
pub fn sha256_hex(hasher: Sha256) -> String {
    hex::encode(hasher.finalize())
}

/// Opens a blob as it streams in: [`Decryptor::push`] the bytes in any
/// pieces, each completed segment's plaintext goes to `out`; then
/// [`Decryptor::finish`] checks that the whole file came, with its SHA-256.
/// Nothing it returns is trustworthy until `finish` says so.
pub struct Decryptor {
    stream: StreamBE32<ChaCha20Poly1305>,
    size: u64,
    sha256: String,
    next: u64,
    buffer: Vec<u8>,
    hasher: Sha256,
    written: u64,
}

impl Decryptor {
    pub fn new(file: &FileRef) -> Result<Self, AttachmentError> {
        Self::resume(file, 0, Sha256::new())
    }

    /// Continues at segment `segment` (the blob from byte `segment *
    /// SEALED_SEGMENT`), with `hasher` over the plaintext of the segments
    /// before it (what an interrupted download already wrote).
    pub fn resume(file: &FileRef, segment: u64, hasher: Sha256) -> Result<Self, AttachmentError> {
        let key = FileKey::from_ref(file)?;
        if segments(file.size) > u64::from(u32::MAX) {
            return Err(AttachmentError::TooLarge);
        }
        if segment >= segments(file.size) {
            return Err(AttachmentError::TooLong);
        }
        Ok(Self {
            stream: key.stream(),
            size: file.size,
            sha256: file.sha256.to_ascii_lowercase(),
            next: segment,
            buffer: Vec::with_capacity(SEALED_SEGMENT),
            hasher,
            written: segment * SEGMENT as u64,
        })
    }

    /// The blob's offset this decryptor starts at for segment `segment`.
    pub fn offset_of(segment: u64) -> u64 {
        segment * SEALED_SEGMENT as u64
    }

    fn total(&self) -> u64 {
        segments(self.size)
    }

    /// Takes the next bytes of the blob; writes each completed segment's
    /// plaintext to `out`.
    pub fn push(
        &mut self,
        mut bytes: &[u8],
        out: &mut impl std::io::Write,
    ) -> Result<(), DecryptError> {
        while !bytes.is_empty() {
            if self.next >= self.total() {
                return Err(AttachmentError::TooLong.into());
            }
            let want = self.sealed_len_of(self.next) - self.buffer.len();
            let take = want.min(bytes.len());
            self.buffer.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.buffer.len() == self.sealed_len_of(self.next) {
                self.open_segment(out)?;
            }
        }
        Ok(())
    }

    fn sealed_len_of(&self, index: u64) -> usize {
        if index + 1 < self.total() {
            SEALED_SEGMENT
        } else {
            // The last segment: what is left of the plaintext, plus the tag.
            let before = (self.total() - 1) * SEGMENT as u64;
            usize::try_from(self.size - before).unwrap_or(SEGMENT) + TAG
        }
    }

    fn open_segment(&mut self, out: &mut impl std::io::Write) -> Result<(), DecryptError> {
        let mut plain = self.open_buffered()?;
        out.write_all(&plain).map_err(DecryptError::Write)?;
        self.written += plain.len() as u64;
        self.next += 1;
        plain.clear();
        self.buffer = plain;
        Ok(())
    }

    /// Opens the buffered segment in place and hashes its plaintext (see
    /// [`hash_and_seal`] for why this is not in `open_segment`).
    fn open_buffered(&mut self) -> Result<Vec<u8>, AttachmentError> {
        let last = self.next + 1 == self.total();
        let mut sealed = std::mem::take(&mut self.buffer);
        let position = u32::try_from(self.next).map_err(|_| AttachmentError::TooLong)?;
        self.stream
            .decrypt_in_place(position, last, b"", &mut sealed)
            .map_err(|_| AttachmentError::Segment(self.next))?;
        self.hasher.update(&sealed);
        Ok(sealed)
    }

    /// Every segment came and the plaintext has the announced SHA-256.
    pub fn finish(self) -> Result<(), AttachmentError> {
        if self.next < self.total() || !self.buffer.is_empty() {
            return Err(AttachmentError::Truncated);
        }
        if self.written != self.size || sha256_hex(self.hasher) != self.sha256 {
            return Err(AttachmentError::HashMismatch);
        }
        Ok(())
    }
}

/// Decrypting failed: the attachment, or writing its plaintext out.
#[derive(Debug, thiserror::Error)]
pub enum DecryptError {
    #[error(transparent)]
    Attachment(#[from] AttachmentError),
    #[error("cannot write the attachment: {0}")]
    Write(std::io::Error),
}

#[cfg(test)]
#[path = "attachment_tests.rs"]
mod tests;
