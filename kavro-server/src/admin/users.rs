//! `admin users list | disable | enable | delete`.

use kavro_proto::validate;

use super::{Admin, AdminError};
use crate::audit;
use crate::store::DeletedAccount;
use crate::store::ops::AccountSummary;

impl Admin {
    pub async fn users(&self) -> Result<Vec<AccountSummary>, AdminError> {
        Ok(self.stores.ops.accounts().await?)
    }

    async fn named(&self, name: &str) -> Result<AccountSummary, AdminError> {
        let unknown = || AdminError::UnknownUser(name.to_owned());
        if validate::username(name).is_err() {
            return Err(unknown());
        }
        self.stores
            .ops
            .account(&validate::normalize_username(name))
            .await?
            .ok_or_else(unknown)
    }

    /// Disables the account and ends its sessions on every instance.
    pub async fn disable(&self, name: &str) -> Result<AccountSummary, AdminError> {
        let account = self.named(name).await?;
        let generation = self
            .stores
            .ops
            .disable_account(account.id, self.clock.now())
            .await?;
        self.revoke_now(account.id, generation).await;
        audit::admin_action("user_disable", &account.username);
        Ok(account)
    }

    /// Lets the account log in again; `false` when it was not disabled.
    pub async fn enable(&self, name: &str) -> Result<bool, AdminError> {
        let account = self.named(name).await?;
        let changed = self.stores.ops.enable_account(account.id).await?;
        audit::admin_action("user_enable", &account.username);
        Ok(changed)
    }

    /// Deletes the account as its owner's own deletion does (`DELETE /auth/me`).
    pub async fn delete(&self, name: &str) -> Result<DeletedAccount, AdminError> {
        let account = self.named(name).await?;
        let deleted = self
            .stores
            .store
            .delete_account(account.id, self.clock.now())
            .await?;
        self.revoke_now(account.id, deleted.generation).await;
        audit::admin_action("user_delete", &account.username);
        Ok(deleted)
    }
}
