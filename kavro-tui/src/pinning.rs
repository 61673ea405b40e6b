//! Trust on first use for contacts' identity keys, as a pure state machine.
//!
//! ```text
//!            first key seen                  another key seen
//!   (none) ─────────────────▶ pinned ─────────────────────────▶ changed
//!                               │  kavro trust                    │ kavro trust
//!                               ▼                                 ▼ (accepts the new key)
//!                            verified ───── another key seen ──▶ changed
//! ```
//!
//! A key is "seen" when the relay returns it as the contact's newest key
//! (before sending, or when looking them up) or when an envelope from them is
//! made with it. While `changed`, sending to the contact is refused and every
//! read warns; messages made with the old, pinned key still verify (that key
//! is still the trusted one); messages made with the new key do not.
//! `kavro trust` accepts exactly the key whose safety number `kavro
//! fingerprint` showed, never a key fetched afterwards.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use kavro_proto::UserId;
use kavro_proto::crypto::IdentityPublic;

/// How far a contact's key is trusted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyState {
    /// Pinned on first use, never compared out of band.
    Pinned,
    /// The user compared safety numbers and ran `kavro trust`.
    Verified,
    /// Another key was seen since pinning: not trusted until `kavro trust`.
    Changed,
}

impl KeyState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pinned => "pinned",
            Self::Verified => "verified",
            Self::Changed => "changed",
        }
    }
}

impl fmt::Display for KeyState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyState {
    type Err = String;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "pinned" => Ok(Self::Pinned),
            "verified" => Ok(Self::Verified),
            "changed" => Ok(Self::Changed),
            other => Err(format!("unknown key state {other:?}")),
        }
    }
}

/// A key seen for a contact that differs from the pinned one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PendingKey {
    pub key: IdentityPublic,
    /// The account the new key was seen for (the relay's user id).
    pub user_id: UserId,
}

/// Someone whose key we pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// As the relay spells it.
    pub username: String,
    pub user_id: UserId,
    /// The trusted key.
    pub key: IdentityPublic,
    pub state: KeyState,
    /// Set exactly when `state` is `Changed`.
    pub pending: Option<PendingKey>,
    pub first_seen: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl Contact {
    /// Whether messages to this contact may be sealed now.
    pub fn can_send(&self) -> bool {
        self.state != KeyState::Changed
    }

    /// Whether `key`, used by account `user_id`, is the trusted key.
    pub fn trusts(&self, user_id: UserId, key: &IdentityPublic) -> bool {
        self.user_id == user_id && &self.key == key
    }

    /// The key `kavro trust` would accept: the pending one if any, else the pinned one.
    pub fn key_to_trust(&self) -> &IdentityPublic {
        self.pending.as_ref().map_or(&self.key, |p| &p.key)
    }
}

/// What seeing a key for a contact means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observation {
    /// Not a contact yet: pin this (trust on first use) and save it.
    FirstUse(Contact),
    /// The pinned key: trusted (even while another key is pending).
    Match,
    /// A key other than the pinned one: save the contact, now `Changed`.
    Changed(Contact),
    /// The same untrusted key as already pending: nothing to save.
    StillChanged,
}

impl Observation {
    /// Whether the key seen is the trusted one (first use counts as trusted).
    pub fn trusted(&self) -> bool {
        matches!(self, Self::FirstUse(_) | Self::Match)
    }

    /// The contact to save, if the observation changed anything.
    pub fn to_save(&self) -> Option<&Contact> {
        match self {
            Self::FirstUse(contact) | Self::Changed(contact) => Some(contact),
            Self::Match | Self::StillChanged => None,
        }
    }
}

/// `key` was seen for `username` (account `user_id`) at `now`.
pub fn observe(
    existing: Option<&Contact>,
    username: &str,
    user_id: UserId,
    key: IdentityPublic,
    now: DateTime<Utc>,
) -> Observation {
    let Some(contact) = existing else {
        return Observation::FirstUse(Contact {
            username: username.to_owned(),
            user_id,
            key,
            state: KeyState::Pinned,
            pending: None,
            first_seen: now,
            updated_at: now,
        });
    };
    if contact.trusts(user_id, &key) {
        return Observation::Match;
    }
    let pending = PendingKey { key, user_id };
    if contact.pending == Some(pending) {
        return Observation::StillChanged;
    }
    Observation::Changed(Contact {
        state: KeyState::Changed,
        pending: Some(pending),
        updated_at: now,
        ..contact.clone()
    })
}

/// The user accepts the contact's key after comparing safety numbers: the
/// pending key if there is one, else the pinned key becomes verified.
pub fn trust(contact: &Contact, now: DateTime<Utc>) -> Contact {
    let (key, user_id) = contact
        .pending
        .map_or((contact.key, contact.user_id), |p| (p.key, p.user_id));
    Contact {
        key,
        user_id,
        state: KeyState::Verified,
        pending: None,
        updated_at: now,
        ..contact.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K1: IdentityPublic = IdentityPublic::from_bytes([1; 32]);
    const K2: IdentityPublic = IdentityPublic::from_bytes([2; 32]);
    const K3: IdentityPublic = IdentityPublic::from_bytes([3; 32]);
    const BOB: UserId = UserId(2);

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_780_000_000 + secs, 0).unwrap()
    }

    fn pinned() -> Contact {
        match observe(None, "Bob", BOB, K1, t(0)) {
            Observation::FirstUse(c) => c,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn first_use_pins() {
        let bob = pinned();
        assert_eq!(bob.state, KeyState::Pinned);
        assert_eq!((bob.key, bob.user_id, bob.pending), (K1, BOB, None));
        assert!(bob.can_send());
        assert!(observe(None, "Bob", BOB, K1, t(0)).trusted());
    }

    #[test]
    fn same_key_matches() {
        let bob = pinned();
        let seen = observe(Some(&bob), "bob", BOB, K1, t(5));
        assert_eq!(seen, Observation::Match);
        assert!(seen.trusted() && seen.to_save().is_none());
    }

    #[test]
    fn another_key_changes_until_trusted() {
        let bob = pinned();
        let seen = observe(Some(&bob), "bob", BOB, K2, t(5));
        assert!(!seen.trusted());
        let changed = seen.to_save().unwrap().clone();
        assert_eq!(changed.state, KeyState::Changed);
        assert_eq!(changed.key, K1, "the pinned key stays");
        assert_eq!(
            changed.pending,
            Some(PendingKey {
                key: K2,
                user_id: BOB
            })
        );
        assert_eq!((changed.first_seen, changed.updated_at), (t(0), t(5)));
        assert!(!changed.can_send());
        assert_eq!(changed.key_to_trust(), &K2);

        // Seeing the same new key again changes nothing; the old one still verifies.
        assert_eq!(
            observe(Some(&changed), "bob", BOB, K2, t(6)),
            Observation::StillChanged
        );
        assert_eq!(
            observe(Some(&changed), "bob", BOB, K1, t(6)),
            Observation::Match
        );
        // A third key replaces the pending one.
        let third = observe(Some(&changed), "bob", BOB, K3, t(7));
        assert_eq!(third.to_save().unwrap().pending.unwrap().key, K3);

        // Trust accepts the pending key, exactly.
        let trusted = trust(&changed, t(8));
        assert_eq!(trusted.state, KeyState::Verified);
        assert_eq!((trusted.key, trusted.pending), (K2, None));
        assert!(trusted.can_send());
        assert_eq!(
            observe(Some(&trusted), "bob", BOB, K2, t(9)),
            Observation::Match
        );
        assert!(!observe(Some(&trusted), "bob", BOB, K1, t(9)).trusted());
    }

    #[test]
    fn trusting_a_pinned_key_verifies_it() {
        let verified = trust(&pinned(), t(3));
        assert_eq!(verified.state, KeyState::Verified);
        assert_eq!(verified.key, K1);
    }

    #[test]
    fn another_account_under_the_same_name_is_a_change() {
        let bob = pinned();
        let seen = observe(Some(&bob), "bob", UserId(99), K1, t(5));
        let changed = seen.to_save().unwrap();
        assert_eq!(changed.state, KeyState::Changed);
        let trusted = trust(changed, t(6));
        assert_eq!(trusted.user_id, UserId(99));
    }

    #[test]
    fn states_round_trip_as_text() {
        for state in [KeyState::Pinned, KeyState::Verified, KeyState::Changed] {
            assert_eq!(state.as_str().parse::<KeyState>(), Ok(state));
        }
        assert!("trusted".parse::<KeyState>().is_err());
    }
}
