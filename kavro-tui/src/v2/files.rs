//! Attachments over Kavro v2 (issue #14): a file is sealed on this device
//! (`kavro_proto::attachment`: a fresh key, ChaCha20-Poly1305 STREAM),
//! uploaded to the relay as a blob in chunks, and announced to the
//! conversation in an MLS message that carries the key ([`Body::File`]).
//! Received files are recorded when their message is applied and downloaded
//! afterwards ([`V2Session::save_pending`]): decrypted as they stream in,
//! checked (every segment, the size, the SHA-256), and only then given their
//! final name in the downloads directory. Moving the bytes is
//! `attach::transfer`'s, with this device's token.

use std::path::{Path, PathBuf};

use kavro_proto::v2::{BlobId, GroupId};
use uuid::Uuid;

use super::payload::{Body, Payload};
use super::{V2Error, V2Session};
use crate::attach::transfer::{Progress, Transfer};
use crate::mls::MlsStoreError;
use crate::mls::attachments::{self, AttachmentRow, AttachmentState};

/// A received file, after [`V2Session::save_pending`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaveOutcome {
    pub row: AttachmentRow,
    /// Where it was saved, or why it was not.
    pub result: Result<PathBuf, String>,
}

impl V2Session {
    /// The blob routes with this device's token.
    fn transfer(&self) -> Transfer<'_> {
        Transfer {
            relay: &self.relay,
            token: &self.token,
        }
    }

    /// Seals and uploads `path`, then sends it to `group` with `caption`;
    /// returns the message id. A file over the relay's cap is refused
    /// before a byte is uploaded (the relay's `413` names the cap).
    pub async fn send_file(
        &mut self,
        group: &GroupId,
        path: &Path,
        caption: Option<&str>,
        progress: &dyn Progress,
    ) -> Result<Uuid, V2Error> {
        let file = self.transfer().seal_and_upload(path, progress).await?;
        let payload = Payload::new(Body::File {
            file,
            caption: caption.map(str::to_owned),
        });
        self.send_payload(group, &payload).await?;
        Ok(payload.id)
    }

    /// Downloads every received file not saved yet into `dir`; a file that
    /// does not check is marked failed with the reason (nothing is saved
    /// under its name). Transport errors stop the run (the file stays
    /// pending for the next one).
    pub async fn save_pending(
        &mut self,
        dir: &Path,
        progress: &dyn Progress,
    ) -> Result<Vec<SaveOutcome>, V2Error> {
        let pending = {
            let mut conn = self.store.begin().await?;
            attachments::list(&mut conn, Some(AttachmentState::Pending))
                .await
                .map_err(MlsStoreError::from)?
        };
        let mut outcomes = Vec::new();
        for (index, row) in pending.iter().enumerate() {
            let row = row.clone();
            let result = match self.transfer().download(&row.file, dir, progress).await {
                Ok(path) => Ok(path),
                Err(V2Error::Relay(err)) if err.is_transient() => return Err(err.into()),
                Err(err) => Err(err.to_string()),
            };
            // Done with the blob either way (a refused one will not change),
            // unless another message still to save refers to it: the relay
            // may delete it. Best effort: it expires anyway.
            let needed_later = pending[index + 1..]
                .iter()
                .any(|later| later.file.blob_id == row.file.blob_id);
            if let (false, Ok(blob)) = (needed_later, row.file.blob_id.parse::<BlobId>()) {
                let _ = self.relay.ack_blob(&self.token, blob).await;
            }
            let mut conn = self.store.begin().await?;
            match &result {
                Ok(path) => {
                    attachments::set_saved(&mut conn, row.id, &path.display().to_string()).await
                }
                Err(reason) => attachments::set_failed(&mut conn, row.id, reason).await,
            }
            .map_err(MlsStoreError::from)?;
            conn.commit().await.map_err(MlsStoreError::from)?;
            outcomes.push(SaveOutcome { row, result });
        }
        Ok(outcomes)
    }

    /// Every attachment of this device, oldest first.
    pub async fn attachments(&self) -> Result<Vec<AttachmentRow>, V2Error> {
        let mut conn = self.store.begin().await?;
        Ok(attachments::list(&mut conn, None)
            .await
            .map_err(MlsStoreError::from)?)
    }
}
