//! The results of the account, send and key commands, each as a human text
//! and a JSON object (see [`super::Printer::emit`]). Pure functions, so
//! every shape is unit-tested without a relay.

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::{json_time, key_state_word, safety_block, sanitize};
use crate::session::{
    AccountSummary, ContactKeys, LogoutOutcome, OwnKey, SentMessage, TrustOutcome, WhoAmI,
};

/// A text for people and the same result for scripts.
pub type Shown = (String, Value);

/// Where a sent message is, as `kavro send` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendState {
    /// The relay stored it (the recipient has not fetched it, or nobody waited).
    Stored,
    /// The recipient acknowledged it (`--wait-delivered`).
    Delivered,
    /// Its time to live ran out on the relay before the recipient fetched it.
    Expired,
}

impl SendState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stored => "stored",
            Self::Delivered => "delivered",
            Self::Expired => "expired",
        }
    }
}

/// `register` and `login`.
pub fn account(summary: &AccountSummary, register: bool) -> Shown {
    let verb = if register {
        "Registered"
    } else {
        "Logged in as"
    };
    let mut human = format!(
        "{verb} {} (user #{}) on {}.\nYour key fingerprint: {}",
        summary.username, summary.user_id, summary.server, summary.fingerprint
    );
    if summary.new_key && !register {
        human.push_str(
            "\nThis device has a new identity key (published): contacts will see a key change and should compare safety numbers with you.",
        );
    }
    let value = json!({
        "username": summary.username,
        "user_id": summary.user_id.0,
        "server": summary.server.as_str(),
        "public_key": summary.public_key.to_hex(),
        "fingerprint": summary.fingerprint.to_string(),
        "key_store": summary.key_store.as_str(),
        "new_key": summary.new_key,
    });
    (human, value)
}

/// `logout`.
pub fn logout(outcome: &LogoutOutcome) -> Shown {
    if !outcome.was_logged_in {
        return (
            format!("{} was not logged in.", outcome.username),
            json!({"username": outcome.username, "logged_out": true, "revoked": false}),
        );
    }
    (
        format!("Logged out {}.", outcome.username),
        json!({
            "username": outcome.username,
            "logged_out": true,
            "revoked": outcome.revoke_error.is_none(),
        }),
    )
}

/// `whoami`.
pub fn whoami(me: &WhoAmI) -> Shown {
    let mut human = format!(
        "{} (user #{}) on {}, profile `{}`\nkey fingerprint: {}\nsecrets kept in {}",
        me.username, me.user_id, me.server, me.profile, me.fingerprint, me.key_location
    );
    if !me.newest_key_is_ours {
        human.push_str("\nwarning: another device published a newer key for this account; contacts now encrypt to that device, and this one cannot read those messages. Run `kavro login` here to make this device's key the newest again.");
    }
    let value = json!({
        "username": me.username,
        "user_id": me.user_id.0,
        "server": me.server.as_str(),
        "profile": me.profile,
        "public_key": me.public_key.to_hex(),
        "fingerprint": me.fingerprint.to_string(),
        "key_store": me.key_store.as_str(),
        "newest_key_is_ours": me.newest_key_is_ours,
    });
    (human, value)
}

/// `send`: where the message got to.
pub fn sent(sent: &SentMessage, state: SendState, delivered_at: Option<DateTime<Utc>>) -> Shown {
    let human = match state {
        SendState::Delivered => format!("Sent to {} and delivered (v1).", sent.to),
        SendState::Stored | SendState::Expired => format!("Sent to {} (v1).", sent.to),
    };
    let value = json!({
        "id": sent.msg_uuid.to_string(),
        "relay_id": sent.relay_id.0,
        "to": sent.to,
        "sent_at": json_time(sent.sent_at),
        "state": state.as_str(),
        "delivered_at": delivered_at.map(json_time),
        "protocol": "v1",
    });
    (human, value)
}

/// `fingerprint` without a username: our own key.
pub fn own_key(own: &OwnKey) -> Shown {
    (
        format!(
            "Your key fingerprint ({}):\n    {}\nRead it to a contact, or compare safety numbers with `kavro fingerprint <username>`.",
            own.username, own.fingerprint
        ),
        json!({
            "username": own.username,
            "public_key": own.public_key.to_hex(),
            "fingerprint": own.fingerprint.to_string(),
        }),
    )
}

/// `fingerprint USER`: the safety numbers to compare, and how.
pub fn contact_keys(keys: &ContactKeys, me: &str) -> Shown {
    let name = sanitize(&keys.contact.username);
    let mut human = if let (Some(pending), Some(new)) =
        (&keys.pending_safety_number, keys.contact.pending)
    {
        format!(
            "{name}'s key CHANGED. Safety number with the NEW key (key fingerprint {}):\n{}\n\
             Previously pinned key ({}), safety number:\n{}\n\
             Ask {name} to run `kavro fingerprint {me}` and read you their number, in person or over another channel you trust. \
             Only if it matches the NEW number, run `kavro trust {name} <that number>` (kavro trusts only the key that number belongs to).",
            new.key.fingerprint(),
            safety_block(pending),
            keys.contact.key.fingerprint(),
            safety_block(&keys.safety_number),
        )
    } else {
        format!(
            "Safety number with {name} ({}, key fingerprint {}):\n{}\n\
             Ask {name} to run `kavro fingerprint {me}` and compare, in person or over another channel you trust. \
             If the numbers match, run `kavro trust {name} <that number>` to mark this key verified.",
            key_state_word(keys.contact.state),
            keys.contact.key.fingerprint(),
            safety_block(&keys.safety_number),
        )
    };
    if !keys.refreshed {
        human.push_str(
            "\n(the relay was not asked for the current key: this is the key pinned locally)",
        );
    }
    let value = json!({
        "username": keys.contact.username,
        "state": keys.contact.state.as_str(),
        "safety_number": keys.safety_number.to_string(),
        "key": keys.contact.key.to_hex(),
        "key_fingerprint": keys.contact.key.fingerprint().to_string(),
        "changed_safety_number": keys.pending_safety_number.map(|n| n.to_string()),
        "changed_key": keys.contact.pending.map(|p| p.key.to_hex()),
        "changed_key_fingerprint": keys.contact.pending.map(|p| p.key.fingerprint().to_string()),
        "refreshed": keys.refreshed,
    });
    (human, value)
}

/// `trust USER`.
pub fn trusted(outcome: &TrustOutcome) -> Shown {
    let name = sanitize(&outcome.contact.username);
    let human = if outcome.replaced.is_some() {
        format!(
            "Now trusting {name}'s new key {} (verified). You can send to {name} again.",
            outcome.contact.key.fingerprint()
        )
    } else {
        format!(
            "{name}'s key {} is verified.",
            outcome.contact.key.fingerprint()
        )
    };
    let value = json!({
        "username": outcome.contact.username,
        "state": outcome.contact.state.as_str(),
        "key": outcome.contact.key.to_hex(),
        "fingerprint": outcome.contact.key.fingerprint().to_string(),
        "safety_number": outcome.safety_number.to_string(),
        "replaced_key": outcome.replaced.map(|k| k.to_hex()),
    });
    (human, value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{LocalId, OutgoingState};
    use kavro_proto::MessageId;

    #[test]
    fn send_states_are_reported_as_words() {
        let at = DateTime::from_timestamp_millis(1_780_000_000_123).unwrap();
        let message = SentMessage {
            local_id: LocalId(1),
            msg_uuid: uuid::Uuid::from_u128(7),
            relay_id: MessageId(12),
            to: "bob".into(),
            sent_at: at,
            state: OutgoingState::Stored,
            first_use: None,
            flushed: crate::session::FlushReport::default(),
        };
        let (human, json) = sent(&message, SendState::Stored, None);
        assert_eq!(human, "Sent to bob (v1).");
        assert_eq!(json["state"], "stored");
        assert_eq!(json["delivered_at"], Value::Null);
        let (human, json) = sent(&message, SendState::Delivered, Some(at));
        assert_eq!(human, "Sent to bob and delivered (v1).");
        assert_eq!(json["state"], "delivered");
        assert_eq!(json["delivered_at"], "2026-05-28T20:26:40.123Z");
        assert_eq!(
            sent(&message, SendState::Expired, None).1["state"],
            "expired"
        );
    }
}
