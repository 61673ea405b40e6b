//! Moving one attachment between this machine and the relay's blob store,
//! whatever protocol carries its key (issue #14): sealing and uploading a
//! file ([`Transfer::seal_and_upload`]), downloading, opening and checking
//! one ([`Transfer::download`]). Kavro v2 (`v2::files`, a device token) and
//! the v1 envelope (`session::files`, the account token) both use it; what
//! announces the file differs, the bytes on the relay do not.
//!
//! Both directions read and write in pieces: memory stays flat whatever
//! the file's size. A dropped connection resumes where the relay stands
//! (upload: its `received`; download: the last whole segment written).

use std::path::{Path, PathBuf};

use kavro_proto::attachment::{
    self, AttachmentError, Decryptor, EncryptError, Encryptor, FileKey, FileRef,
};
use kavro_proto::v2::{BlobId, BlobStatus};
use uuid::Uuid;

use super::pipeline::{BATCH, Sealer, Sink, Writer, resume_point, seal_next};
use crate::attach::names;
use crate::keystore::AccessToken;
use crate::v2::V2Error;
use crate::v2::relay::V2Relay;

/// How often a transfer is tried again after the connection dropped.
const ATTEMPTS: u32 = 5;

/// Where a transfer stands, for a progress bar.
pub trait Progress: Send + Sync {
    /// `done` of `total` bytes moved.
    fn update(&self, done: u64, total: u64);
}

/// No progress shown.
#[cfg(test)]
pub struct Quiet;

#[cfg(test)]
impl Progress for Quiet {
    fn update(&self, _: u64, _: u64) {}
}

/// The file to send could not be read.
pub(super) fn file_error(path: &Path, err: &dyn std::fmt::Display) -> V2Error {
    V2Error::File(format!("{}: {err}", path.display()))
}

/// The media type a file name suggests.
fn media_type(path: &Path) -> String {
    mime_guess::from_path(path)
        .first_or_octet_stream()
        .essence_str()
        .to_owned()
}

/// The relay's blob routes, with the token of whoever transfers: a device
/// token (Kavro v2) or the account token (a v1 client). The field names are
/// those the loops were written against in `V2Session`.
pub struct Transfer<'a> {
    pub relay: &'a V2Relay,
    pub token: &'a AccessToken,
}

// The loops below were moved unchanged from `V2Session` (whose token was
// owned): `&self.token` stays as written there so that concurrent work on
// the loops merges cleanly.
#[allow(
    clippy::needless_borrow,
    reason = "loop bodies kept as moved from v2/files.rs"
)]
impl Transfer<'_> {
    /// Seals and uploads `path` as a new blob; returns what opens it (for
    /// the message that announces it). A file over the relay's cap is
    /// refused before a byte is uploaded (the relay's `413` names the cap).
    pub async fn seal_and_upload(
        &mut self,
        path: &Path,
        progress: &dyn Progress,
    ) -> Result<FileRef, V2Error> {
        // Readable, and a regular file, before anything goes to the relay.
        let opened = std::fs::File::open(path).map_err(|e| file_error(path, &e))?;
        let metadata = opened.metadata().map_err(|e| file_error(path, &e))?;
        if !metadata.is_file() {
            return Err(file_error(path, &"not a regular file"));
        }
        let size = metadata.len();
        let sealed = attachment::sealed_len(size);
        let created = self.relay.create_blob(self.token, sealed).await?;
        let key = FileKey::generate();
        let (key_b64, nonce_b64) = key.encoded();
        let sha256 = self
            .upload(path, opened, size, key, &created, progress)
            .await?;
        let name = path.file_name().map_or_else(
            || "attachment".to_owned(),
            |n| n.to_string_lossy().into_owned(),
        );
        Ok(FileRef {
            blob_id: created.blob_id.to_string(),
            key: key_b64,
            nonce: nonce_b64,
            size,
            sha256,
            name,
            media_type: media_type(path),
        })
    }

    /// Uploads the sealed file from where the relay stands, again after a
    /// dropped connection (at most [`ATTEMPTS`] times); returns the
    /// plaintext's SHA-256.
    async fn upload(
        &mut self,
        path: &Path,
        opened: std::fs::File,
        size: u64,
        key: FileKey,
        blob: &BlobStatus,
        progress: &dyn Progress,
    ) -> Result<String, V2Error> {
        let chunk_max = usize::try_from(blob.chunk_max.clamp(1, 64 << 20)).unwrap_or(8 << 20);
        let encryptor = Encryptor::new(key, opened, size).map_err(|e| attachment_error(&e))?;
        let mut sealing = seal_next(Sealer {
            encryptor,
            pending: None,
            chunk_max,
            spare: None,
        });
        let mut offset = 0u64;
        let mut attempts = 0;
        // The buffer the previous chunk went up in: two buffers take turns,
        // so memory stays at two chunks whatever the allocator keeps.
        let mut spare = None;
        loop {
            let (mut sealer, chunk) = sealing
                .await
                .map_err(|e| V2Error::File(format!("sealing the file: {e}")))?;
            let chunk = chunk.map_err(|e| encrypt_error(path, e))?;
            if chunk.is_empty() {
                return sealer
                    .encryptor
                    .finish()
                    .map_err(|e| encrypt_error(path, e));
            }
            // The following chunk is sealed while this one is sent.
            sealer.spare = spare.take();
            sealing = seal_next(sealer);
            let sent = bytes::Bytes::from(chunk);
            let mut body = sent.clone();
            while !body.is_empty() {
                match self
                    .relay
                    .put_blob_chunk(&self.token, blob.blob_id, offset, body.clone())
                    .await
                {
                    Ok(status) => {
                        offset = status.received;
                        body.clear();
                        progress.update(offset, blob.size);
                    }
                    Err(err) if err.is_transient() && attempts < ATTEMPTS => {
                        attempts += 1;
                        tokio::time::sleep(std::time::Duration::from_millis(200 << attempts)).await;
                        // Where the relay stands: what it has is not sent again.
                        let status = self.relay.blob_status(&self.token, blob.blob_id).await?;
                        let have = status.received.saturating_sub(offset);
                        let have = usize::try_from(have).unwrap_or(usize::MAX).min(body.len());
                        body = body.slice(have..);
                        offset = status.received;
                    }
                    Err(err) => return Err(err.into()),
                }
            }
            drop(body);
            // Ours alone again once the HTTP client let go of it.
            spare = sent.try_into_mut().ok().map(Vec::from);
        }
    }

    /// Downloads and opens one file into `dir`: first into a hidden part
    /// file, renamed to a free name only once everything checked.
    pub async fn download(
        &mut self,
        file: &FileRef,
        dir: &Path,
        progress: &dyn Progress,
    ) -> Result<PathBuf, V2Error> {
        let blob: BlobId = file
            .blob_id
            .parse()
            .map_err(|_| V2Error::Refused("the attachment names no valid blob".to_owned()))?;
        std::fs::create_dir_all(dir).map_err(|e| file_error(dir, &e))?;
        let part = dir.join(format!(".{}.kavro-part", Uuid::new_v4().simple()));
        let outcome = self.download_into(file, blob, &part, progress).await;
        match outcome {
            Ok(()) => {
                let name = names::safe_name(&file.name);
                let target = names::reserve(dir, &name).map_err(|e| file_error(dir, &e))?;
                std::fs::rename(&part, &target).map_err(|e| file_error(&target, &e))?;
                Ok(target)
            }
            Err(err) => {
                let _ = std::fs::remove_file(&part);
                Err(err)
            }
        }
    }

    async fn download_into(
        &mut self,
        file: &FileRef,
        blob: BlobId,
        part: &Path,
        progress: &dyn Progress,
    ) -> Result<(), V2Error> {
        let out = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(part)
            .map_err(|e| file_error(part, &e))?;
        let decryptor = Decryptor::new(file).map_err(|e| attachment_error(&e))?;
        let mut sink = Sink::new(decryptor, out);
        let total = attachment::sealed_len(file.size);
        let mut from = 0u64;
        let mut attempts = 0;
        loop {
            let attempt;
            (sink, attempt) = self.fetch(blob, from, total, sink, progress).await;
            match attempt {
                Ok(()) => break,
                Err(V2Error::Relay(err)) if err.is_transient() && attempts < ATTEMPTS => {
                    attempts += 1;
                    tokio::time::sleep(std::time::Duration::from_millis(200 << attempts)).await;
                    // Again from the last whole segment written.
                    let (segment, hasher) = resume_point(&mut sink.out, part)?;
                    sink.decryptor = Decryptor::resume(file, segment, hasher)
                        .map_err(|e| attachment_error(&e))?;
                    from = Decryptor::offset_of(segment);
                }
                Err(err) => return Err(err),
            }
        }
        let Sink { decryptor, out, .. } = sink;
        decryptor.finish().map_err(|e| attachment_error(&e))?;
        tokio::task::spawn_blocking(move || out.sync_all())
            .await
            .map_err(|e| V2Error::File(format!("saving the attachment: {e}")))?
            .map_err(|e| file_error(part, &e))?;
        Ok(())
    }

    /// Reads the blob from `from` into `sink`, in batches of about
    /// [`BATCH`] bytes: while one batch is opened and written on the
    /// blocking pool, the next one comes in. Gives `sink` back with the
    /// outcome.
    async fn fetch(
        &mut self,
        blob: BlobId,
        from: u64,
        total: u64,
        sink: Sink,
        progress: &dyn Progress,
    ) -> (Sink, Result<(), V2Error>) {
        let mut response = match self.relay.download_blob(&self.token, blob, from).await {
            Ok(response) => response,
            Err(err) => return (sink, Err(err.into())),
        };
        let mut writer = Writer::Idle(sink);
        let mut done = from;
        let mut batch = Vec::new();
        let mut batched = 0;
        loop {
            let piece = match self.relay.next_piece(&mut response).await {
                Ok(piece) => piece,
                Err(err) => {
                    // What came before the break is still written.
                    // A refused segment outweighs the broken connection.
                    let (sink, written) = writer.idle().await;
                    if let Err(refused) = written {
                        return (sink, Err(refused));
                    }
                    let (sink, written) = sink.write(batch).await;
                    return (sink, written.and(Err(err.into())));
                }
            };
            let end = piece.is_none();
            if let Some(piece) = piece {
                done += piece.len() as u64;
                batched += piece.len();
                batch.push(piece);
            }
            if batched >= BATCH || end {
                let (sink, written) = writer.idle().await;
                if let Err(err) = written {
                    return (sink, Err(err));
                }
                writer = Writer::Busy(sink.write_in_background(std::mem::take(&mut batch)));
                batched = 0;
                progress.update(done, total);
            }
            if end {
                return writer.idle().await;
            }
        }
    }
}

pub(super) fn attachment_error(err: &AttachmentError) -> V2Error {
    V2Error::Attachment(err.to_string())
}

fn encrypt_error(path: &Path, err: EncryptError) -> V2Error {
    match err {
        EncryptError::Read(e) => file_error(path, &e),
        EncryptError::Changed => file_error(path, &"the file changed while it was being sent"),
        EncryptError::Attachment(a) => attachment_error(&a),
    }
}
