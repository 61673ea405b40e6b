//! How results look: a human line, or one JSON object per line (`--json`).
//! Pure functions from core results to text, plus a [`Printer`] that writes
//! them. Text that came over the network is sanitised before it reaches a
//! terminal (no escape sequences, no bidirectional overrides).

pub mod results;

use std::io::Write as _;

use chrono::{DateTime, Local, Utc};
use kavro_proto::crypto::SafetyNumber;
use serde_json::{Value, json};

use crate::history::{Direction, MessageState, SenderMark, StoredMessage};
use crate::pinning::{Contact, KeyState};

/// Writes results to standard output in the chosen format.
pub struct Printer {
    pub json: bool,
}

impl Printer {
    /// Prints `human` or `json`, whichever the format asks for.
    pub fn emit(&self, human: &str, json: &Value) -> std::io::Result<()> {
        let mut out = std::io::stdout().lock();
        if self.json {
            writeln!(out, "{json}")?;
        } else {
            writeln!(out, "{human}")?;
        }
        out.flush()
    }

    /// Prints a line only in human mode (headings, empty-list notes).
    pub fn human(&self, text: &str) -> std::io::Result<()> {
        if self.json {
            return Ok(());
        }
        let mut out = std::io::stdout().lock();
        writeln!(out, "{text}")?;
        out.flush()
    }
}

/// RFC 3339 in UTC with milliseconds, for JSON.
pub fn json_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// Local time to the second, for people.
pub fn human_time(t: DateTime<Utc>) -> String {
    t.with_timezone(&Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// Replaces what could drive a terminal (control characters other than
/// newline and tab, bidirectional overrides) with U+FFFD.
pub fn sanitize(text: &str) -> String {
    text.chars()
        .map(|c| {
            let bidi = matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}');
            if (c.is_control() && c != '\n' && c != '\t') || bidi {
                '\u{FFFD}'
            } else {
                c
            }
        })
        .collect()
}

/// Who sent or received a message, for people: the name, else the account number.
fn party(message: &StoredMessage) -> String {
    match (&message.peer, message.peer_user_id) {
        (Some(name), _) => sanitize(name),
        (None, Some(id)) => format!("user #{id}"),
        (None, None) => "unknown sender".to_owned(),
    }
}

/// One message as JSON: `id` (the envelope's message id, or null), `from`,
/// `to`, `sent_at`, `text` (null when unreadable), `state`, and `error`
/// when there is one; for a received message its two marks apart:
/// `authenticated` (made with the sender's pinned key), `verified` (and that
/// key's safety number was compared) and `trust` (`verified`, `pinned`,
/// `legacy`, `refused`, `unverified`, `key_mismatch` or `undecryptable`).
pub fn message_json(message: &StoredMessage, me: &str) -> Value {
    let peer = message.peer.clone().map_or(Value::Null, Value::String);
    let (from, to) = match message.direction {
        Direction::In => (peer, Value::String(me.to_owned())),
        Direction::Out => (Value::String(me.to_owned()), peer),
    };
    let mut value = json!({
        "id": message.msg_uuid.map(|u| u.to_string()),
        "relay_id": message.relay_id.map(|id| id.0),
        "direction": message.direction.as_str(),
        "from": from,
        "to": to,
        "peer_user_id": message.peer_user_id.map(|id| id.0),
        "sent_at": json_time(message.sent_at),
        "received_at": json_time(message.received_at),
        "text": message.text,
        "state": message.state.as_str(),
        "protocol": "v1",
    });
    let mark = message.sender_mark();
    if let Some(object) = value.as_object_mut() {
        if let Some(error) = &message.error {
            object.insert("error".into(), Value::String(error.clone()));
        }
        if let Some(at) = message.delivered_at {
            object.insert("delivered_at".into(), Value::String(json_time(at)));
        }
        if let Some(mark) = mark {
            object.insert("authenticated".into(), Value::Bool(message.verified));
            object.insert("verified".into(), Value::Bool(mark == SenderMark::Verified));
            object.insert("trust".into(), Value::String(mark.as_str().to_owned()));
        }
    }
    value
}

/// Indents continuation lines of a multi-line text under the first.
fn indent(text: &str) -> String {
    sanitize(text).replace('\n', "\n    ")
}

/// One message for people: `2026-11-29 18:40:01  alice [verified]: hello`
/// (safety number compared) or `[pinned]` (the key pinned on first use, not
/// compared), with a loud tag for anything unauthenticated.
pub fn message_line(message: &StoredMessage) -> String {
    let time = human_time(message.sent_at);
    let who = party(message);
    let text = message.text.as_deref().map(indent);
    let error = message.error.as_deref().map(sanitize).unwrap_or_default();
    match message.state {
        MessageState::In(_) => {
            use SenderMark as M;
            match (message.sender_mark(), text) {
                (Some(M::Verified), Some(text)) => format!("{time}  {who} [verified]: {text}"),
                (Some(M::Pinned), Some(text)) => format!("{time}  {who} [pinned]: {text}"),
                (Some(M::Legacy), Some(text)) => {
                    format!("{time}  {who} [LEGACY, SENDER NOT AUTHENTICATED: {error}]: {text}")
                }
                (Some(M::Refused), _) => format!(
                    "{time}  {who} [REFUSED: {error}] (kept with its ciphertext in the history)"
                ),
                (Some(M::Unverified), Some(text)) => {
                    format!("{time}  {who} [UNVERIFIED: {error}]: {text}")
                }
                (Some(M::KeyMismatch), Some(text)) => {
                    format!("{time}  {who} [NOT VERIFIED, KEY MISMATCH: {error}]: {text}")
                }
                (_, _) => format!(
                    "{time}  {who} [UNDECRYPTABLE: {error}] (kept with its ciphertext in the history)"
                ),
            }
        }
        MessageState::Out(state) => {
            use crate::history::OutgoingState as S;
            let text = text.unwrap_or_default();
            let status = match state {
                S::Pending => "queued, not sent yet".to_owned(),
                S::Stored => "sent".to_owned(),
                S::Delivered => "delivered".to_owned(),
                S::Failed => format!("FAILED: {error}"),
            };
            format!("{time}  you -> {who}: {text}  ({status})")
        }
    }
}

/// A contact's key state for people: `CHANGED` in capitals.
pub fn key_state_word(state: KeyState) -> &'static str {
    match state {
        KeyState::Pinned => "pinned",
        KeyState::Verified => "verified",
        KeyState::Changed => "CHANGED",
    }
}

pub fn contact_json(contact: &Contact) -> Value {
    let mut value = json!({
        "username": contact.username,
        "user_id": contact.user_id.0,
        "state": contact.state.as_str(),
        "key": contact.key.to_hex(),
        "fingerprint": contact.key.fingerprint().to_string(),
    });
    if let (Some(object), Some(pending)) = (value.as_object_mut(), contact.pending) {
        object.insert("changed_key".into(), Value::String(pending.key.to_hex()));
        object.insert(
            "changed_fingerprint".into(),
            Value::String(pending.key.fingerprint().to_string()),
        );
    }
    value
}

pub fn contact_line(contact: &Contact) -> String {
    let name = sanitize(&contact.username);
    let word = key_state_word(contact.state);
    match contact.pending {
        Some(pending) => format!(
            "{name:<30} {word:<9} {}  now shows {}: run `kavro fingerprint {name}`, then `kavro trust {name} <safety number>`",
            contact.key.fingerprint(),
            pending.key.fingerprint()
        ),
        None => format!("{name:<30} {word:<9} {}", contact.key.fingerprint()),
    }
}

/// A safety number as three indented rows of four groups.
pub fn safety_block(number: &SafetyNumber) -> String {
    number
        .lines()
        .iter()
        .map(|line| format!("    {line}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The warning printed on every read while a contact's key is changed.
pub fn changed_warning(contact: &Contact) -> String {
    let name = sanitize(&contact.username);
    format!(
        "warning: {name}'s identity key CHANGED and is not trusted: `kavro send {name}` is refused and messages made with the new key are not verified. Compare safety numbers with `kavro fingerprint {name}`, then run `kavro trust {name} <the number you compared>`."
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::{IncomingState, LocalId, OutgoingState};
    use crate::pinning::PendingKey;
    use kavro_proto::crypto::IdentityPublic;
    use kavro_proto::{MessageId, UserId};

    fn at(ms: i64) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(ms).unwrap()
    }

    fn incoming(state: IncomingState, text: Option<&str>, error: Option<&str>) -> StoredMessage {
        StoredMessage {
            local_id: LocalId(1),
            direction: Direction::In,
            msg_uuid: Some(uuid::Uuid::from_u128(7)),
            relay_id: Some(MessageId(12)),
            peer: Some("alice".into()),
            peer_user_id: Some(UserId(1)),
            sent_at: at(1_780_000_000_123),
            received_at: at(1_780_000_001_000),
            text: text.map(str::to_owned),
            verified: state == IncomingState::Ok,
            state: MessageState::In(state),
            legacy: false,
            key_compared: false,
            error: error.map(str::to_owned),
            sender_key: None,
            ciphertext: None,
            ephemeral_pubkey: None,
            delivered_at: None,
        }
    }

    #[test]
    fn message_json_shape() {
        let ok = message_json(&incoming(IncomingState::Ok, Some("hi"), None), "bob");
        assert_eq!(
            ok,
            json!({
                "id": "00000000-0000-0000-0000-000000000007",
                "relay_id": 12,
                "direction": "in",
                "from": "alice",
                "to": "bob",
                "peer_user_id": 1,
                "sent_at": "2026-05-28T20:26:40.123Z",
                "received_at": "2026-05-28T20:26:41.000Z",
                "text": "hi",
                "state": "ok",
                "protocol": "v1",
                "authenticated": true,
                "verified": false,
                "trust": "pinned",
            })
        );
        let mut compared = incoming(IncomingState::Ok, Some("hi"), None);
        compared.key_compared = true;
        let compared = message_json(&compared, "bob");
        assert_eq!(
            (&compared["verified"], &compared["trust"]),
            (&json!(true), &json!("verified"))
        );
        let broken = message_json(
            &incoming(IncomingState::Undecryptable, None, Some("tampered")),
            "bob",
        );
        assert_eq!(broken["text"], Value::Null);
        assert_eq!(broken["verified"], false);
        assert_eq!(broken["authenticated"], false);
        assert_eq!(broken["trust"], "undecryptable");
        assert_eq!(broken["state"], "undecryptable");
        assert_eq!(broken["error"], "tampered");

        let mut out = incoming(IncomingState::Ok, Some("yo"), None);
        out.direction = Direction::Out;
        out.state = MessageState::Out(OutgoingState::Delivered);
        out.delivered_at = Some(at(1_780_000_002_000));
        let sent = message_json(&out, "bob");
        assert_eq!(
            (sent["from"].as_str(), sent["to"].as_str()),
            (Some("bob"), Some("alice"))
        );
        assert_eq!(sent["state"], "delivered");
        assert_eq!(sent["delivered_at"], "2026-05-28T20:26:42.000Z");
        assert!(sent.get("trust").is_none() && sent.get("verified").is_none());
    }

    #[test]
    fn human_lines_are_loud_about_trust() {
        let ok = message_line(&incoming(IncomingState::Ok, Some("hi\nthere"), None));
        assert!(ok.ends_with("alice [pinned]: hi\n    there"), "{ok}");
        let mut compared = incoming(IncomingState::Ok, Some("hi"), None);
        compared.key_compared = true;
        let compared = message_line(&compared);
        assert!(compared.ends_with("alice [verified]: hi"), "{compared}");
        let unverified = message_line(&incoming(
            IncomingState::Unverified,
            Some("hey"),
            Some("names differ"),
        ));
        assert!(
            unverified.contains("[UNVERIFIED: names differ]: hey"),
            "{unverified}"
        );
        let mut legacy = incoming(IncomingState::Unverified, Some("hey"), Some("legacy"));
        legacy.legacy = true;
        let line = message_line(&legacy);
        assert!(
            line.contains("[LEGACY, SENDER NOT AUTHENTICATED: legacy]: hey"),
            "{line}"
        );
        legacy.text = None;
        let line = message_line(&legacy);
        assert!(
            line.contains("[REFUSED: legacy]") && !line.contains("hey"),
            "{line}"
        );
        let mismatch = message_line(&incoming(
            IncomingState::KeyMismatch,
            Some("x"),
            Some("other key"),
        ));
        assert!(mismatch.contains("KEY MISMATCH"), "{mismatch}");
        let broken = message_line(&incoming(
            IncomingState::Undecryptable,
            None,
            Some("tampered"),
        ));
        assert!(broken.contains("[UNDECRYPTABLE: tampered]"), "{broken}");
        let mut unknown = incoming(IncomingState::Undecryptable, None, Some("x"));
        unknown.peer = None;
        assert!(message_line(&unknown).contains("user #1"));
    }

    #[test]
    fn terminal_escapes_are_neutralised() {
        assert_eq!(sanitize("a\u{1b}[2Jb\tc\nd"), "a\u{FFFD}[2Jb\tc\nd");
        assert_eq!(sanitize("x\u{202E}y\u{0007}"), "x\u{FFFD}y\u{FFFD}");
        let line = message_line(&incoming(
            IncomingState::Ok,
            Some("\u{1b}]0;pwned\u{7}"),
            None,
        ));
        assert!(
            !line.contains('\u{1b}') && !line.contains('\u{7}'),
            "{line:?}"
        );
    }

    #[test]
    fn contact_shapes() {
        let mut contact = Contact {
            username: "bob".into(),
            user_id: UserId(2),
            key: IdentityPublic::from_bytes([1; 32]),
            state: KeyState::Pinned,
            pending: None,
            first_seen: at(0),
            updated_at: at(0),
        };
        let value = contact_json(&contact);
        assert_eq!(value["state"], "pinned");
        assert_eq!(value["key"], "01".repeat(32));
        assert!(value.get("changed_key").is_none());
        contact.state = KeyState::Changed;
        contact.pending = Some(PendingKey {
            key: IdentityPublic::from_bytes([2; 32]),
            user_id: UserId(2),
        });
        let value = contact_json(&contact);
        assert_eq!(value["state"], "changed");
        assert_eq!(value["changed_key"], "02".repeat(32));
        let line = contact_line(&contact);
        assert!(
            line.contains("CHANGED") && line.contains("kavro trust bob"),
            "{line}"
        );
        assert!(changed_warning(&contact).contains("kavro fingerprint bob"));
    }
}
