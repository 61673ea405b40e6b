//! The moving parts of an attachment transfer (issue #14), kept apart from
//! what a transfer means ([`super::transfer`]): an upload seals its next chunk
//! on the blocking pool while the current one goes up ([`seal_next`]); a
//! download opens and writes one batch there while the next comes in
//! ([`Writer`]), flushes the part file as it grows ([`Flusher`]), and finds
//! where to go on after a break ([`resume_point`]).

use std::io::{Read as _, Seek as _, Write as _};
use std::path::Path;

use kavro_proto::attachment::{self, DecryptError, Decryptor, EncryptError, Encryptor, SEGMENT};
use sha2::Digest as _;

use super::transfer::{attachment_error, file_error};
use crate::v2::V2Error;

/// Bytes of the blob opened and written at once, off the async runtime.
pub(super) const BATCH: usize = 1024 * 1024;

/// Where a download goes: its decryptor and the part file.
pub(super) struct Sink {
    pub(super) decryptor: Decryptor,
    pub(super) out: std::fs::File,
    /// Blob bytes taken in this process (what the flusher goes by).
    written: u64,
    flusher: Flusher,
}

/// A download's sink: free, or busy writing a batch on the blocking pool.
// One per download, moved once per batch: boxing the sink buys nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum Writer {
    Idle(Sink),
    Busy(tokio::task::JoinHandle<(Sink, Result<(), V2Error>)>),
}

impl Writer {
    /// The sink once its batch is written, with that write's outcome.
    pub(super) async fn idle(self) -> (Sink, Result<(), V2Error>) {
        match self {
            Self::Idle(sink) => (sink, Ok(())),
            Self::Busy(task) => match task.await {
                Ok(done) => done,
                // The blocking task panicked: the sink went with it.
                Err(err) => std::panic::resume_unwind(err.into_panic()),
            },
        }
    }
}

impl Sink {
    /// Writes into `out`, flushed to disk as it grows.
    pub(super) fn new(decryptor: Decryptor, out: std::fs::File) -> Self {
        let flusher = Flusher::start(&out);
        Self {
            decryptor,
            out,
            written: 0,
            flusher,
        }
    }

    /// Opens `sealed` and writes its plaintext on the blocking pool.
    pub(super) fn write_in_background(
        mut self,
        sealed: Vec<bytes::Bytes>,
    ) -> tokio::task::JoinHandle<(Self, Result<(), V2Error>)> {
        tokio::task::spawn_blocking(move || {
            let written = self.push(&sealed);
            (self, written)
        })
    }

    /// [`Self::write_in_background`], waited for.
    pub(super) async fn write(self, sealed: Vec<bytes::Bytes>) -> (Self, Result<(), V2Error>) {
        Writer::Busy(self.write_in_background(sealed)).idle().await
    }

    fn push(&mut self, sealed: &[bytes::Bytes]) -> Result<(), V2Error> {
        for piece in sealed {
            self.decryptor
                .push(piece, &mut self.out)
                .map_err(|e| match e {
                    DecryptError::Attachment(a) => attachment_error(&a),
                    DecryptError::Write(e) => V2Error::File(format!("writing the attachment: {e}")),
                })?;
        }
        self.written += sealed.iter().map(|p| p.len() as u64).sum::<u64>();
        self.flusher.wrote(self.written);
        Ok(())
    }
}

/// Flushes a part file to disk while it grows, on a thread of its own, so
/// the disk writes overlap the download and the final `sync_all` (before
/// the file gets its name) has little left: the kernel would otherwise keep
/// a whole 1 GiB file in the page cache and write all of it in that last
/// sync. Best effort: a failed flush here shows in the final sync.
struct Flusher {
    wrote: Option<std::sync::mpsc::Sender<u64>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for Flusher {
    /// Stops the thread and waits for it (at most one flush), so the part
    /// file is closed when the download is over.
    fn drop(&mut self) {
        self.wrote = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// How much a part file grows between two flushes.
const FLUSH_EVERY: u64 = 32 * 1024 * 1024;

impl Flusher {
    fn start(out: &std::fs::File) -> Self {
        let Ok(file) = out.try_clone() else {
            return Self {
                wrote: None,
                thread: None,
            };
        };
        let (wrote, grown) = std::sync::mpsc::channel::<u64>();
        let spawned = std::thread::Builder::new()
            .name("kavro-flush".to_owned())
            .spawn(move || {
                let mut flushed = 0;
                while let Ok(mut written) = grown.recv() {
                    // Only the latest length counts.
                    while let Ok(later) = grown.try_recv() {
                        written = later;
                    }
                    if written >= flushed + FLUSH_EVERY {
                        let _ = file.sync_data();
                        flushed = written;
                    }
                }
            });
        match spawned {
            Ok(thread) => Self {
                wrote: Some(wrote),
                thread: Some(thread),
            },
            Err(_) => Self {
                wrote: None,
                thread: None,
            },
        }
    }

    /// `written` bytes are in the file now.
    fn wrote(&self, written: u64) {
        if let Some(wrote) = &self.wrote {
            let _ = wrote.send(written);
        }
    }
}

/// The sealing side of an upload: the file's encryptor, the rest of a
/// segment that did not fit the last chunk, the chunk size.
pub(super) struct Sealer {
    pub(super) encryptor: Encryptor<std::fs::File>,
    pub(super) pending: Option<Vec<u8>>,
    pub(super) chunk_max: usize,
    /// A buffer to seal the next chunk into (an uploaded chunk's).
    pub(super) spare: Option<Vec<u8>>,
}

type Sealed = (Sealer, Result<Vec<u8>, EncryptError>);

/// Seals the next chunk on the blocking pool (file reads, ChaCha20-Poly1305
/// and SHA-256 are blocking work); an empty chunk means the file is done.
pub(super) fn seal_next(mut sealer: Sealer) -> tokio::task::JoinHandle<Sealed> {
    tokio::task::spawn_blocking(move || {
        let mut chunk = match sealer.spare.take() {
            Some(mut spare) => {
                spare.clear();
                spare.reserve(sealer.chunk_max);
                spare
            }
            None => Vec::with_capacity(sealer.chunk_max),
        };
        let filled = fill_chunk(
            &mut sealer.encryptor,
            &mut sealer.pending,
            &mut chunk,
            sealer.chunk_max,
        );
        (sealer, filled.map(|()| chunk))
    })
}

/// Appends sealed segments to `chunk` up to `chunk_max` bytes (a segment
/// may span two chunks: its rest waits in `pending`).
pub(super) fn fill_chunk(
    encryptor: &mut Encryptor<std::fs::File>,
    pending: &mut Option<Vec<u8>>,
    chunk: &mut Vec<u8>,
    chunk_max: usize,
) -> Result<(), EncryptError> {
    while chunk.len() < chunk_max {
        // A whole segment fits: sealed in place in the chunk.
        if pending.is_none() && chunk_max - chunk.len() >= attachment::SEALED_SEGMENT {
            if !encryptor.seal_into(chunk)? {
                break;
            }
            continue;
        }
        let segment = match pending.take() {
            Some(rest) => rest,
            None => match encryptor.next_segment()? {
                Some(segment) => segment,
                None => break,
            },
        };
        let room = chunk_max - chunk.len();
        if segment.len() > room {
            chunk.extend_from_slice(&segment[..room]);
            *pending = Some(segment[room..].to_vec());
        } else {
            chunk.extend_from_slice(&segment);
        }
    }
    Ok(())
}

/// Where an interrupted download goes on: the whole segments in the part
/// file (the rest is cut off) and the SHA-256 state over them.
pub(super) fn resume_point(
    out: &mut std::fs::File,
    part: &Path,
) -> Result<(u64, sha2::Sha256), V2Error> {
    let io = |e: std::io::Error| file_error(part, &e);
    let len = out.metadata().map_err(io)?.len();
    let segment = len / SEGMENT as u64;
    let keep = segment * SEGMENT as u64;
    out.set_len(keep).map_err(io)?;
    out.seek(std::io::SeekFrom::Start(0)).map_err(io)?;
    let mut hasher = sha2::Sha256::new();
    let mut buffer = vec![0u8; SEGMENT];
    let mut left = keep;
    while left > 0 {
        let n = usize::try_from(left.min(SEGMENT as u64)).unwrap_or(SEGMENT);
        out.read_exact(&mut buffer[..n]).map_err(io)?;
        hasher.update(&buffer[..n]);
        left -= n as u64;
    }
    out.seek(std::io::SeekFrom::Start(keep)).map_err(io)?;
    out.flush().map_err(io)?;
    Ok((segment, hasher))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use kavro_proto::attachment::{FileKey, SEALED_SEGMENT};

    /// Chunks of any size, whole segments sealed in place or split across
    /// two chunks, carry the same bytes as the segments one by one.
    #[test]
    fn chunks_of_any_size_are_the_segments_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let plain: Vec<u8> = (0..5 * SEGMENT + 3).map(|i| (i % 251) as u8).collect();
        std::fs::write(&path, &plain).unwrap();
        let size = plain.len() as u64;
        let key = FileKey::generate();
        let (k, n) = key.encoded();
        let reference = |k: &str, n: &str| {
            let file = attachment::FileRef {
                blob_id: String::new(),
                key: k.to_owned(),
                nonce: n.to_owned(),
                size,
                sha256: String::new(),
                name: String::new(),
                media_type: String::new(),
            };
            FileKey::from_ref(&file).unwrap()
        };
        let mut one_by_one =
            Encryptor::new(reference(&k, &n), std::fs::File::open(&path).unwrap(), size).unwrap();
        let mut expected = Vec::new();
        while let Some(segment) = one_by_one.next_segment().unwrap() {
            expected.extend_from_slice(&segment);
        }
        let sha = one_by_one.finish().unwrap();
        for chunk_max in [
            1000,
            SEALED_SEGMENT - 1,
            SEALED_SEGMENT,
            3 * SEALED_SEGMENT + 7,
            8 << 20,
        ] {
            let mut sealer = Sealer {
                encryptor: Encryptor::new(
                    reference(&k, &n),
                    std::fs::File::open(&path).unwrap(),
                    size,
                )
                .unwrap(),
                pending: None,
                chunk_max,
                spare: None,
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .build()
                .unwrap();
            let mut got = Vec::new();
            // Each chunk is sealed into the buffer of the one before, as
            // an upload recycles them: nothing of the old one may remain.
            let mut spare = None;
            loop {
                sealer.spare = spare.take();
                let (next, chunk) = runtime
                    .block_on(async move { seal_next(sealer).await })
                    .unwrap();
                sealer = next;
                let chunk = chunk.unwrap();
                if chunk.is_empty() {
                    break;
                }
                assert!(chunk.len() <= chunk_max);
                got.extend_from_slice(&chunk);
                spare = Some(chunk);
            }
            assert_eq!(got, expected, "chunk_max {chunk_max}");
            assert_eq!(sealer.encryptor.finish().unwrap(), sha);
        }
    }
}
