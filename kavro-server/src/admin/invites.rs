//! `admin invites create | list | revoke`. A code is 128 random bits in hex,
//! shown once; the database keeps only its SHA-256.

use std::time::Duration;

use super::{Admin, AdminError};
use crate::audit;
use crate::clock::after;
use crate::store::ops::{InviteHash, InviteId, InviteRecord, NewInvite};

/// A code just created: the only time it is shown.
pub struct NewCode {
    pub id: InviteId,
    pub code: String,
    pub record: NewInvite,
}

impl Admin {
    pub async fn create_invite(
        &self,
        uses: u32,
        expires_in: Option<Duration>,
    ) -> Result<NewCode, AdminError> {
        if uses == 0 || i32::try_from(uses).is_err() {
            return Err(AdminError::Invalid(
                "--uses must be between 1 and 2147483647".to_owned(),
            ));
        }
        let code = hex::encode(rand::random::<[u8; 16]>());
        let now = self.clock.now();
        let record = NewInvite {
            hash: InviteHash::of(&code),
            max_uses: uses,
            created_at: now,
            expires_at: expires_in.map(|d| after(now, d)),
        };
        let id = self.stores.ops.create_invite(record.clone()).await?;
        audit::admin_action("invite_create", &id.0.to_string());
        Ok(NewCode { id, code, record })
    }

    pub async fn invites(&self) -> Result<Vec<InviteRecord>, AdminError> {
        Ok(self.stores.ops.invites().await?)
    }

    /// Revokes the invite with this id (as `invites list` shows it) or this code.
    pub async fn revoke_invite(&self, id_or_code: &str) -> Result<InviteId, AdminError> {
        let unknown = || AdminError::UnknownInvite(id_or_code.to_owned());
        let id = match id_or_code.trim().parse::<i64>() {
            Ok(id) => InviteId(id),
            Err(_) => self
                .stores
                .ops
                .invite_by_hash(&InviteHash::of(id_or_code))
                .await?
                .ok_or_else(unknown)?,
        };
        if !self.stores.ops.revoke_invite(id, self.clock.now()).await? {
            return Err(unknown());
        }
        audit::admin_action("invite_revoke", &id.0.to_string());
        Ok(id)
    }
}
