//! Attachments over the v1 envelope (issue #14), for contacts without Kavro
//! v2: the file is sealed and uploaded with the account token
//! (`attach::transfer`, the same code as v2), the recipient's account is
//! named the blob's holder, and the key travels in an authenticated file
//! envelope (`kavro_proto::crypto`, envelope version 3). Received files are
//! recorded with their message when the envelope verified
//! (`history::files`) and saved by [`Session::save_files`].
//!
//! Who can receive one: a contact whose authenticated envelope reached this
//! history runs a Kavro client; anyone else may be a legacy client, which
//! cannot open a file envelope, so the send is refused before anything is
//! uploaded ([`SessionError::FilesNotReceivable`]).

use std::path::{Path, PathBuf};

use kavro_proto::crypto::Payload;
use kavro_proto::v2::BlobId;

use super::{SentMessage, Session, SessionError, check_username};
use crate::attach::transfer::{Progress, Transfer};
use crate::history::FileRow;
use crate::mls::attachments::AttachmentState;
use crate::v2::V2Error;
use crate::v2::relay::V2Relay;

/// A received file after [`Session::save_files`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SavedFile {
    pub row: FileRow,
    /// Where it was saved, or why it was not.
    pub result: Result<PathBuf, String>,
}

impl Session {
    /// Seals and uploads `path`, lets `to`'s account read the blob, and
    /// sends `to` a file envelope with `caption`. Refused before anything
    /// is uploaded when `to` never sent this history an authenticated
    /// envelope, or their key changed.
    pub async fn send_file(
        &self,
        relay: &V2Relay,
        to: &str,
        path: &Path,
        caption: Option<&str>,
        progress: &dyn Progress,
    ) -> Result<SentMessage, SessionError> {
        check_username(to)?;
        // Decided from this history alone, before the relay is asked anything.
        let known = self.history.contact(to).await?;
        let kavro = match &known {
            Some(contact) => {
                self.history
                    .has_verified_envelope_from(contact.user_id)
                    .await?
            }
            None => false,
        };
        if !kavro {
            return Err(SessionError::FilesNotReceivable {
                username: known.map_or_else(|| to.to_owned(), |c| c.username),
            });
        }
        let unlocked = self.unlock()?;
        let flushed = self.flush_first(&unlocked).await?;
        let (contact, first_use) = self.recipient(&unlocked, to).await?;
        let mut transfer = Transfer {
            relay,
            token: &unlocked.token,
        };
        let file = transfer
            .seal_and_upload(path, progress)
            .await
            .map_err(|e| self.transfer_error(e))?;
        let blob: BlobId = file
            .blob_id
            .parse()
            .map_err(|_| SessionError::Attachment("the relay named an invalid blob".to_owned()))?;
        relay
            .add_blob_holder(&unlocked.token, blob, contact.user_id)
            .await
            .map_err(|e| self.relay_error(e))?;
        let caption = caption.unwrap_or_default();
        let payload = Payload::with_file(
            unlocked.account.username.clone(),
            contact.username.clone(),
            file.clone(),
            Some(caption),
        );
        let file = Some((file, caption.to_owned()));
        self.send_sealed(&unlocked, contact, payload, file, first_use, flushed)
            .await
    }

    /// Downloads every received v1 file not saved yet into `dir`: checked
    /// as v2 files are, nothing under the final name of one that does not
    /// check (it is marked failed with the reason). Done with a blob, the
    /// account acknowledges it (best effort: it expires anyway). Transport
    /// errors stop the run; the file stays pending for the next one.
    pub async fn save_files(
        &self,
        relay: &V2Relay,
        dir: &Path,
        progress: &dyn Progress,
    ) -> Result<Vec<SavedFile>, SessionError> {
        let pending = self.history.files(Some(AttachmentState::Pending)).await?;
        if pending.is_empty() {
            return Ok(Vec::new());
        }
        let unlocked = self.unlock()?;
        let mut transfer = Transfer {
            relay,
            token: &unlocked.token,
        };
        let mut saved = Vec::with_capacity(pending.len());
        for (index, row) in pending.iter().enumerate() {
            let result = match transfer.download(&row.file, dir, progress).await {
                Ok(path) => Ok(path),
                Err(V2Error::Relay(err)) if err.is_transient() => {
                    return Err(self.relay_error(err));
                }
                Err(err) => Err(err.to_string()),
            };
            // Another message still to save may name the same blob.
            let needed_later = pending[index + 1..]
                .iter()
                .any(|later| later.file.blob_id == row.file.blob_id);
            if let (false, Ok(blob)) = (needed_later, row.file.blob_id.parse::<BlobId>()) {
                let _ = relay.ack_blob(&unlocked.token, blob).await;
            }
            match &result {
                Ok(path) => {
                    self.history
                        .set_file_saved(row.id, &path.display().to_string())
                        .await?;
                }
                Err(reason) => self.history.set_file_failed(row.id, reason).await?,
            }
            saved.push(SavedFile {
                row: row.clone(),
                result,
            });
        }
        Ok(saved)
    }

    /// Every attachment of v1 conversations here, oldest first.
    pub async fn files(&self) -> Result<Vec<FileRow>, SessionError> {
        Ok(self.history.files(None).await?)
    }

    fn transfer_error(&self, err: V2Error) -> SessionError {
        match err {
            V2Error::Relay(err) => self.relay_error(err),
            other => SessionError::Attachment(other.to_string()),
        }
    }
}
