//! Contacts and their keys: the list, safety numbers, `trust`, and the
//! conversation history with one contact.

use kavro_proto::UserId;
use kavro_proto::crypto::{IdentityPublic, KeyFingerprint, SafetyNumber};

use super::{Session, SessionError, check_username, now};
use crate::history::{LegacyPolicy, StoredMessage};
use crate::pinning::{self, Contact, KeyState, Observation};

/// Your own key, for `kavro fingerprint`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnKey {
    pub username: String,
    pub public_key: IdentityPublic,
    pub fingerprint: KeyFingerprint,
}

/// A contact's keys and the safety numbers to compare.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactKeys {
    pub contact: Contact,
    /// With the pinned (trusted) key.
    pub safety_number: SafetyNumber,
    /// With the new key, when it changed: what `kavro trust` would accept.
    pub pending_safety_number: Option<SafetyNumber>,
    /// Whether the relay was asked for the current key just now (else the
    /// local record is shown: offline, or logged out).
    pub refreshed: bool,
}

/// What the user compared before trusting a contact's key: the safety
/// number or the key fingerprint shown to them, or (the chat app) the key
/// itself whose number it displayed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Compared {
    SafetyNumber(SafetyNumber),
    KeyFingerprint(KeyFingerprint),
    Key(IdentityPublic),
}

impl Compared {
    /// A safety number (60 digits) or a key fingerprint (32 hex digits), as
    /// typed, spaces allowed; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        SafetyNumber::parse(text)
            .map(Self::SafetyNumber)
            .or_else(|| KeyFingerprint::parse(text).map(Self::KeyFingerprint))
    }

    /// Whether this describes `key`, whose safety number with us is `number`.
    fn matches(&self, key: &IdentityPublic, number: &SafetyNumber) -> bool {
        match self {
            Self::SafetyNumber(compared) => compared == number,
            Self::KeyFingerprint(compared) => compared == &key.fingerprint(),
            Self::Key(compared) => compared == key,
        }
    }
}

/// The result of `trust`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrustOutcome {
    pub contact: Contact,
    pub safety_number: SafetyNumber,
    /// The key accepted replaced another one.
    pub replaced: Option<IdentityPublic>,
}

impl Session {
    /// All contacts, by name.
    pub async fn contacts(&self) -> Result<Vec<Contact>, SessionError> {
        Ok(self.history.contacts().await?)
    }

    /// The contact named `username` (any case), if pinned here.
    pub async fn contact(&self, username: &str) -> Result<Option<Contact>, SessionError> {
        Ok(self.history.contact(username).await?)
    }

    /// Shows or refuses legacy (unauthenticated) messages from `username`,
    /// or from everyone without a setting of their own (`None`).
    pub async fn set_legacy_policy(
        &self,
        username: Option<&str>,
        policy: LegacyPolicy,
    ) -> Result<(), SessionError> {
        if let Some(name) = username {
            check_username(name)?;
        }
        Ok(self.history.set_legacy_policy(username, policy).await?)
    }

    /// The legacy-message settings: `(None, policy)` is the default.
    pub async fn legacy_policies(
        &self,
    ) -> Result<Vec<(Option<String>, LegacyPolicy)>, SessionError> {
        Ok(self.history.legacy_policies().await?)
    }

    /// The contacts that messages waiting in the outbox are addressed to.
    pub async fn queued_peers(&self) -> Result<Vec<String>, SessionError> {
        let recipients: std::collections::BTreeSet<UserId> = self
            .history
            .outbox()
            .await?
            .iter()
            .map(|entry| entry.recipient_id)
            .collect();
        Ok(self
            .history
            .contacts()
            .await?
            .into_iter()
            .filter(|c| recipients.contains(&c.user_id))
            .map(|c| c.username)
            .collect())
    }

    /// Contacts whose key changed and is not trusted yet: warn about these
    /// on every read.
    pub async fn changed_contacts(&self) -> Result<Vec<Contact>, SessionError> {
        Ok(self.history.changed_contacts().await?)
    }

    /// This profile's own key (no network, no secret needed).
    pub fn own_key(&self) -> Result<OwnKey, SessionError> {
        let account = self.account()?;
        Ok(OwnKey {
            username: account.username.clone(),
            public_key: account.public_key,
            fingerprint: account.public_key.fingerprint(),
        })
    }

    /// A contact's keys and safety numbers. Asks the relay for the current
    /// key first when possible (a change is recorded, as when sending); with
    /// no relay, shows what is pinned. An unknown contact is pinned now.
    pub async fn contact_keys(&self, username: &str) -> Result<ContactKeys, SessionError> {
        check_username(username)?;
        let account = self.account()?.clone();
        let mut contact = self.history.contact(username).await?;
        let mut refreshed = false;
        let unlocked = match self.unlock() {
            Ok(unlocked) => Some(unlocked),
            Err(_) if contact.is_some() => None,
            Err(err) => return Err(err),
        };
        if let Some(unlocked) = &unlocked {
            match self.lookup(&unlocked.token, username).await {
                Ok((info, key)) => {
                    let observed = pinning::observe(
                        contact.as_ref(),
                        &info.username,
                        info.user_id,
                        key,
                        now(),
                    );
                    if let Some(changed) = observed.to_save() {
                        self.history.save_contact(changed).await?;
                        contact = Some(changed.clone());
                    }
                    refreshed = true;
                }
                Err(err) if contact.is_some() && err.is_transient() => {}
                Err(err) => return Err(err),
            }
        }
        let Some(contact) = contact else {
            return Err(SessionError::NoSuchUser(username.to_owned()));
        };
        let number = |key: &IdentityPublic| {
            SafetyNumber::compute(
                &account.username,
                &account.public_key,
                &contact.username,
                key,
            )
        };
        Ok(ContactKeys {
            safety_number: number(&contact.key),
            pending_safety_number: contact.pending.map(|p| number(&p.key)),
            contact,
            refreshed,
        })
    }

    /// Accepts a contact's key after the user compared safety numbers, but
    /// only the key the user compared: the new key if it changed, else the
    /// pinned key becomes verified; an unknown contact is looked up and
    /// pinned as verified. When the key that would be accepted is not the
    /// one `compared` describes (the relay showed another key since the
    /// number was read), nothing changes and the answer is
    /// [`SessionError::NotTheKeyCompared`].
    pub async fn trust(
        &self,
        username: &str,
        compared: &Compared,
    ) -> Result<TrustOutcome, SessionError> {
        check_username(username)?;
        let account = self.account()?.clone();
        let contact = if let Some(contact) = self.history.contact(username).await? {
            contact
        } else {
            let unlocked = self.unlock()?;
            let (info, key) = self.lookup(&unlocked.token, username).await?;
            match pinning::observe(None, &info.username, info.user_id, key, now()) {
                Observation::FirstUse(contact) => contact,
                _ => unreachable_contact(username)?,
            }
        };
        let candidate = *contact.key_to_trust();
        let number = SafetyNumber::compute(
            &account.username,
            &account.public_key,
            &contact.username,
            &candidate,
        );
        if !compared.matches(&candidate, &number) {
            return Err(SessionError::NotTheKeyCompared {
                username: contact.username,
            });
        }
        let replaced = (contact.state == KeyState::Changed).then_some(contact.key);
        let trusted = pinning::trust(&contact, now());
        self.history.save_contact(&trusted).await?;
        Ok(TrustOutcome {
            safety_number: number,
            contact: trusted,
            replaced,
        })
    }

    /// The last `limit` messages with `username`, oldest first.
    pub async fn history(
        &self,
        username: &str,
        limit: u32,
    ) -> Result<Vec<StoredMessage>, SessionError> {
        check_username(username)?;
        let contact = self.history.contact(username).await?;
        let user_id: Option<UserId> = contact.map(|c| c.user_id);
        Ok(self.history.conversation(username, user_id, limit).await?)
    }
}

/// `observe(None, ..)` always pins; this keeps the match exhaustive without a panic.
fn unreachable_contact(username: &str) -> Result<Contact, SessionError> {
    Err(SessionError::NoSuchUser(username.to_owned()))
}
