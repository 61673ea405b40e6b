//! [`MemoryRelay`]: the relay's v1 HTTP contract, as the client relies on
//! it, in process memory, for tests of code built on the client core,
//! without a server. It also lets a
//! test play the malicious or broken relay: go offline, substitute a user's
//! key, or deliver arbitrary ciphertext.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use kavro_proto::api::{
    Credentials, DeliveryState, DeliveryStatus, Device, FieldError, InboxMessage, InboxOrder, Me,
    NewAccount, PublishKey, SendMessage, UserInfo,
};
use kavro_proto::strings::Password;
use kavro_proto::validate::{self, CiphertextError};
use kavro_proto::{DeviceId, MessageId, UserId};
use uuid::Uuid;

use super::{InboxQuery, LongPoll, Relay, RelayError};
use crate::keystore::AccessToken;

struct User {
    id: UserId,
    username: String,
    password: String,
    devices: Vec<Device>,
    /// Keys retired by the user: never served or published again.
    retired: Vec<String>,
    /// Deleted: the name stays reserved, nothing else is left.
    deleted: bool,
}

struct Stored {
    id: MessageId,
    sender: UserId,
    recipient: UserId,
    ciphertext: String,
    ephemeral_pubkey: String,
    client_msg_id: Option<Uuid>,
    created_at: DateTime<Utc>,
    delivered_at: Option<DateTime<Utc>>,
}

#[derive(Default)]
struct State {
    users: Vec<User>,
    tokens: BTreeMap<String, UserId>,
    messages: BTreeMap<MessageId, Stored>,
    next_id: i64,
    offline: bool,
    rate_limited: Option<std::time::Duration>,
    /// Sends to store but answer as if the connection dropped.
    lose_send_answers: usize,
    /// Acks to refuse as if the relay went away after the fetch.
    fail_acks: usize,
    /// What `/ready` says about long-poll (the memory relay never waits).
    long_poll: Option<LongPoll>,
    /// The `wait` of every inbox request, in order.
    inbox_waits: Vec<u32>,
}

impl State {
    fn next(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }

    fn user_by_name(&self, name: &str) -> Option<&User> {
        self.users
            .iter()
            .find(|u| !u.deleted && u.username.eq_ignore_ascii_case(name))
    }

    /// Taken by an account, deleted ones included (their names stay reserved).
    fn name_taken(&self, name: &str) -> bool {
        self.users
            .iter()
            .any(|u| u.username.eq_ignore_ascii_case(name))
    }

    /// The caller's account, with its password checked.
    fn check_password(
        &mut self,
        token: &AccessToken,
        password: &str,
    ) -> Result<UserId, RelayError> {
        let id = self.caller(token)?;
        match self.user_by_id(id) {
            Some(user) if user.password == password => Ok(id),
            _ => Err(RelayError::Unauthorized("Incorrect password".to_owned())),
        }
    }

    fn revoke_all(&mut self, user: UserId) {
        self.tokens.retain(|_, owner| *owner != user);
    }

    fn user_by_id(&mut self, id: UserId) -> Option<&mut User> {
        self.users.iter_mut().find(|u| u.id == id)
    }

    fn caller(&self, token: &AccessToken) -> Result<UserId, RelayError> {
        self.tokens
            .get(token.expose())
            .copied()
            .ok_or_else(|| RelayError::Unauthorized("Invalid token".to_owned()))
    }

    fn issue(&mut self, user: UserId) -> AccessToken {
        let token = format!("memory-token-{}", self.next());
        self.tokens.insert(token.clone(), user);
        AccessToken::new(token)
    }

    fn add_device(&mut self, user: UserId, key_hex: String, name: Option<String>) {
        let id = DeviceId(self.next());
        if let Some(user) = self.user_by_id(user)
            && !user.devices.iter().any(|d| d.identity_pubkey == key_hex)
        {
            user.devices.push(Device {
                id,
                user_id: user.id,
                identity_pubkey: key_hex,
                device_name: name,
                created_at: Utc::now(),
            });
        }
    }
}

/// An in-memory relay; see the module docs.
pub struct MemoryRelay {
    state: Mutex<State>,
}

impl Default for MemoryRelay {
    fn default() -> Self {
        Self::new()
    }
}

/// A user's keys as `caller` sees them: device names for their owner only.
fn devices_for(user: &User, caller: UserId) -> Vec<Device> {
    user.devices
        .iter()
        .map(|d| Device {
            device_name: d.device_name.clone().filter(|_| caller == user.id),
            ..d.clone()
        })
        .collect()
}

fn rejected(status: u16, message: &str, field: Option<(&str, String)>) -> RelayError {
    RelayError::Rejected {
        status,
        message: message.to_owned(),
        details: field
            .map(|(field, message)| {
                vec![FieldError {
                    field: field.to_owned(),
                    message,
                }]
            })
            .unwrap_or_default(),
    }
}

impl MemoryRelay {
    pub fn new() -> Self {
        Self {
            state: Mutex::new(State::default()),
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A test that panicked while holding the lock poisons it; the state
        // is still consistent (every change is a single step).
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn open(&self) -> Result<MutexGuard<'_, State>, RelayError> {
        let state = self.lock();
        if state.offline {
            return Err(RelayError::Unreachable {
                server: "memory://relay".to_owned(),
                detail: "Connection refused (simulated)".to_owned(),
            });
        }
        if let Some(retry_after) = state.rate_limited {
            return Err(RelayError::RateLimited {
                retry_after: Some(retry_after),
                message: "Too many requests (simulated)".to_owned(),
            });
        }
        Ok(state)
    }

    /// Makes every call fail as if the relay were down (or back up).
    pub fn set_offline(&self, offline: bool) {
        self.lock().offline = offline;
    }

    /// What `/ready` answers about long-poll (default: off).
    pub fn set_long_poll(&self, long_poll: LongPoll) {
        self.lock().long_poll = Some(long_poll);
    }

    /// The `wait` every inbox request asked for, in order.
    pub fn inbox_waits(&self) -> Vec<u32> {
        self.lock().inbox_waits.clone()
    }

    /// Makes every call answer `429` with this `Retry-After` (or stop).
    pub fn set_rate_limited(&self, retry_after: Option<std::time::Duration>) {
        self.lock().rate_limited = retry_after;
    }

    /// The next `count` sends are stored, but their answer is lost (the
    /// caller sees the relay as unreachable): what a retry must survive.
    pub fn lose_send_answers(&self, count: usize) {
        self.lock().lose_send_answers = count;
    }

    /// The next `count` acknowledgements fail as if the relay went away
    /// between the fetch and the ack (or the client crashed there).
    pub fn fail_acks(&self, count: usize) {
        self.lock().fail_acks = count;
    }

    fn ack_refused(state: &mut State) -> Result<(), RelayError> {
        if state.fail_acks > 0 {
            state.fail_acks -= 1;
            return Err(RelayError::Unreachable {
                server: "memory://relay".to_owned(),
                detail: "Connection reset (simulated)".to_owned(),
            });
        }
        Ok(())
    }

    /// Publishes `key_hex` for `username`, as a relay substituting keys would.
    pub fn publish_as(&self, username: &str, key_hex: &str) {
        let mut state = self.lock();
        if let Some(id) = state.user_by_name(username).map(|u| u.id) {
            state.add_device(id, key_hex.to_owned(), None);
        }
    }

    /// Queues arbitrary ciphertext from `sender` to `recipient` (by name).
    pub fn inject(
        &self,
        sender: &str,
        recipient: &str,
        ciphertext: &str,
        ephemeral_pubkey: &str,
    ) -> MessageId {
        let mut state = self.lock();
        let sender = state.user_by_name(sender).map_or(UserId(0), |u| u.id);
        let recipient = state.user_by_name(recipient).map_or(UserId(0), |u| u.id);
        let id = MessageId(state.next());
        state.messages.insert(
            id,
            Stored {
                id,
                sender,
                recipient,
                ciphertext: ciphertext.to_owned(),
                ephemeral_pubkey: ephemeral_pubkey.to_owned(),
                client_msg_id: None,
                created_at: Utc::now(),
                delivered_at: None,
            },
        );
        id
    }

    /// Delivers a queued message again under a new id, as a replaying relay would.
    pub fn replay(&self, id: MessageId) -> Option<MessageId> {
        let mut state = self.lock();
        let (sender, recipient, ciphertext, eph) = {
            let m = state.messages.get(&id)?;
            (
                m.sender,
                m.recipient,
                m.ciphertext.clone(),
                m.ephemeral_pubkey.clone(),
            )
        };
        let new_id = MessageId(state.next());
        state.messages.insert(
            new_id,
            Stored {
                id: new_id,
                sender,
                recipient,
                ciphertext,
                ephemeral_pubkey: eph,
                client_msg_id: None,
                created_at: Utc::now(),
                delivered_at: None,
            },
        );
        Some(new_id)
    }

    /// Unacknowledged messages for `username`.
    pub fn pending_for(&self, username: &str) -> usize {
        let state = self.lock();
        let Some(user) = state.user_by_name(username).map(|u| u.id) else {
            return 0;
        };
        state
            .messages
            .values()
            .filter(|m| m.recipient == user && m.delivered_at.is_none())
            .count()
    }

    /// Every message ever stored (acknowledged or not).
    pub fn stored_count(&self) -> usize {
        self.lock().messages.len()
    }
}

#[async_trait]
impl Relay for MemoryRelay {
    async fn long_poll(&self) -> Result<LongPoll, RelayError> {
        let state = self.open()?;
        Ok(state.long_poll.unwrap_or(LongPoll::Off))
    }

    async fn register(&self, credentials: &NewAccount) -> Result<AccessToken, RelayError> {
        let mut state = self.open()?;
        let name = credentials.username.as_str();
        if let Err(reason) = validate::username(name) {
            return Err(rejected(
                422,
                "Validation failed",
                Some(("username", reason)),
            ));
        }
        if let Err(reason) = validate::password(credentials.password.as_str()) {
            return Err(rejected(
                422,
                "Validation failed",
                Some(("password", reason)),
            ));
        }
        if state.name_taken(name) {
            return Err(rejected(
                400,
                &format!("Username '{name}' is already taken"),
                None,
            ));
        }
        let id = UserId(state.next());
        state.users.push(User {
            id,
            username: name.to_owned(),
            password: credentials.password.as_str().to_owned(),
            devices: Vec::new(),
            retired: Vec::new(),
            deleted: false,
        });
        Ok(state.issue(id))
    }

    async fn login(&self, credentials: &Credentials) -> Result<AccessToken, RelayError> {
        let mut state = self.open()?;
        let id = state
            .user_by_name(credentials.username.as_str())
            .filter(|u| u.password == credentials.password.as_str())
            .map(|u| u.id)
            .ok_or_else(|| {
                RelayError::Unauthorized("Incorrect username or password.".to_owned())
            })?;
        Ok(state.issue(id))
    }

    async fn logout(&self, token: &AccessToken) -> Result<(), RelayError> {
        let mut state = self.open()?;
        state.caller(token)?;
        state.tokens.remove(token.expose());
        Ok(())
    }

    async fn me(&self, token: &AccessToken) -> Result<Me, RelayError> {
        let mut state = self.open()?;
        let id = state.caller(token)?;
        let user = state
            .user_by_id(id)
            .ok_or_else(|| RelayError::Unauthorized("Account no longer exists".to_owned()))?;
        Ok(Me {
            user_id: user.id,
            username: user.username.clone(),
        })
    }

    async fn publish_key(&self, token: &AccessToken, key: &PublishKey) -> Result<(), RelayError> {
        let mut state = self.open()?;
        let id = state.caller(token)?;
        let bytes = validate::pubkey_hex(key.identity_pubkey.as_str())
            .map_err(|m| rejected(422, "Validation failed", Some(("identity_pubkey", m))))?;
        if state
            .user_by_id(id)
            .is_some_and(|u| u.retired.contains(&hex::encode(bytes)))
        {
            return Err(rejected(409, "This key was retired", None));
        }
        state.add_device(
            id,
            hex::encode(bytes),
            key.device_name
                .clone()
                .map(kavro_proto::strings::DeviceName::into_inner),
        );
        Ok(())
    }

    async fn user_by_name(
        &self,
        token: &AccessToken,
        username: &str,
    ) -> Result<UserInfo, RelayError> {
        let state = self.open()?;
        let caller = state.caller(token)?;
        let user = state
            .user_by_name(username)
            .ok_or_else(|| RelayError::NotFound("No such user".to_owned()))?;
        Ok(UserInfo {
            user_id: user.id,
            username: user.username.clone(),
            devices: devices_for(user, caller),
        })
    }

    async fn change_password(
        &self,
        token: &AccessToken,
        current: &Password,
        new: &Password,
    ) -> Result<AccessToken, RelayError> {
        let mut state = self.open()?;
        let id = state.check_password(token, current.as_str())?;
        validate::password(new.as_str())
            .map_err(|m| rejected(422, "Validation failed", Some(("new_password", m))))?;
        if let Some(user) = state.user_by_id(id) {
            user.password = new.as_str().to_owned();
        }
        state.revoke_all(id);
        Ok(state.issue(id))
    }

    async fn logout_all(&self, token: &AccessToken) -> Result<(), RelayError> {
        let mut state = self.open()?;
        let id = state.caller(token)?;
        state.revoke_all(id);
        Ok(())
    }

    async fn delete_account(
        &self,
        token: &AccessToken,
        password: &Password,
    ) -> Result<(), RelayError> {
        let mut state = self.open()?;
        let id = state.check_password(token, password.as_str())?;
        if let Some(user) = state.user_by_id(id) {
            user.deleted = true;
            user.devices.clear();
            user.password.clear();
        }
        state.messages.retain(|_, m| m.recipient != id);
        state.revoke_all(id);
        Ok(())
    }

    async fn keys(&self, token: &AccessToken, user: UserId) -> Result<Vec<Device>, RelayError> {
        let mut state = self.open()?;
        let caller = state.caller(token)?;
        Ok(state
            .user_by_id(user)
            .filter(|u| !u.deleted)
            .map(|u| devices_for(u, caller))
            .unwrap_or_default())
    }

    async fn retire_key(&self, token: &AccessToken, key: DeviceId) -> Result<(), RelayError> {
        let mut state = self.open()?;
        let id = state.caller(token)?;
        let user = state
            .user_by_id(id)
            .ok_or_else(|| RelayError::Unauthorized("Account no longer exists".to_owned()))?;
        let Some(index) = user.devices.iter().position(|d| d.id == key) else {
            return Err(RelayError::NotFound("Key not found".to_owned()));
        };
        let device = user.devices.remove(index);
        user.retired.push(device.identity_pubkey);
        Ok(())
    }

    async fn send(
        &self,
        token: &AccessToken,
        message: &SendMessage,
    ) -> Result<MessageId, RelayError> {
        let mut state = self.open()?;
        let sender = state.caller(token)?;
        validate::ciphertext(message.ciphertext.as_str()).map_err(|e| match e {
            CiphertextError::InvalidBase64 => rejected(400, &e.to_string(), None),
            CiphertextError::Empty | CiphertextError::TooLong => rejected(
                422,
                "Validation failed",
                Some(("ciphertext", e.to_string())),
            ),
            CiphertextError::TooLarge => rejected(413, &e.to_string(), None),
        })?;
        validate::pubkey_hex(message.ephemeral_pubkey.as_str())
            .map_err(|m| rejected(422, "Validation failed", Some(("ephemeral_pubkey", m))))?;
        if let Some(client_id) = message.client_msg_id
            && let Some(first) = state
                .messages
                .values()
                .find(|m| m.sender == sender && m.client_msg_id == Some(client_id))
        {
            return Ok(first.id);
        }
        if state.user_by_id(message.recipient_id).is_none() {
            return Err(RelayError::NotFound("Recipient not found".to_owned()));
        }
        let id = MessageId(state.next());
        state.messages.insert(
            id,
            Stored {
                id,
                sender,
                recipient: message.recipient_id,
                ciphertext: message.ciphertext.as_str().to_owned(),
                ephemeral_pubkey: message.ephemeral_pubkey.as_str().to_ascii_lowercase(),
                client_msg_id: message.client_msg_id,
                created_at: Utc::now(),
                delivered_at: None,
            },
        );
        if state.lose_send_answers > 0 {
            state.lose_send_answers -= 1;
            return Err(RelayError::Unreachable {
                server: "memory://relay".to_owned(),
                detail: "connection reset (simulated)".to_owned(),
            });
        }
        Ok(id)
    }

    async fn inbox(
        &self,
        token: &AccessToken,
        query: InboxQuery,
    ) -> Result<Vec<InboxMessage>, RelayError> {
        let mut state = self.open()?;
        let me = state.caller(token)?;
        state.inbox_waits.push(query.wait);
        if !(validate::INBOX_LIMIT_MIN..=validate::INBOX_LIMIT_MAX).contains(&query.limit)
            || query.wait > validate::INBOX_WAIT_MAX
        {
            return Err(rejected(
                422,
                "Validation failed",
                Some(("limit", "out of range".into())),
            ));
        }
        let mut pending: Vec<&Stored> = state
            .messages
            .values()
            .filter(|m| m.recipient == me && m.delivered_at.is_none())
            .collect();
        if query.order == InboxOrder::Desc {
            pending.reverse();
        }
        Ok(pending
            .into_iter()
            .take(query.limit as usize)
            .map(|m| InboxMessage {
                id: m.id,
                sender_id: m.sender,
                recipient_id: m.recipient,
                ciphertext: m.ciphertext.clone(),
                ephemeral_pubkey: m.ephemeral_pubkey.clone(),
                metadata: None,
                created_at: m.created_at,
            })
            .collect())
    }

    async fn ack_many(&self, token: &AccessToken, ids: &[MessageId]) -> Result<u64, RelayError> {
        let mut state = self.open()?;
        Self::ack_refused(&mut state)?;
        let me = state.caller(token)?;
        if ids.len() > validate::BATCH_ACK_MAX {
            return Err(rejected(
                422,
                "Validation failed",
                Some(("ids", "too many".into())),
            ));
        }
        let mut count = 0;
        for id in ids {
            if let Some(message) = state.messages.get_mut(id)
                && message.recipient == me
            {
                message.delivered_at.get_or_insert_with(Utc::now);
                count += 1;
            }
        }
        Ok(count)
    }

    async fn message_status(
        &self,
        token: &AccessToken,
        id: MessageId,
    ) -> Result<DeliveryStatus, RelayError> {
        let state = self.open()?;
        let me = state.caller(token)?;
        let message = state
            .messages
            .get(&id)
            .filter(|m| m.sender == me)
            .ok_or_else(|| RelayError::NotFound("Message not found".to_owned()))?;
        Ok(DeliveryStatus {
            status: if message.delivered_at.is_some() {
                DeliveryState::Delivered
            } else {
                DeliveryState::Pending
            },
            delivered_at: message.delivered_at,
        })
    }
}
