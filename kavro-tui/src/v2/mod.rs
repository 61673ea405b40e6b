//! Kavro v2 on the client: conversations are MLS groups (openmls), every
//! installation is a device of its account.
//!
//! - [`relay`]: the `/v2` routes as typed calls ([`V2Relay`]);
//! - [`payload`]: what an application message's plaintext carries;
//! - this module: [`V2Session`], one device: its registration or link, key
//!   package top-up and the device list;
//! - `groups`: create, add, remove, rename, each commit retried after a
//!   `409` (re-sync, rebuild, post again);
//! - `direct`: the one 1:1 conversation per pair of accounts;
//! - `trust`: each account's chain of device links, pinned root, safety number;
//! - `inbox`: sending, and applying the device's queue in order (welcomes,
//!   commits, application messages), acknowledged only after the local
//!   state is committed.
//!
//! Local state is in [`crate::mls::MlsStore`]; nothing here prints.

mod app_api;
#[cfg(test)]
mod cut_proxy;
mod direct;
pub mod files;
mod groups;
mod inbox;
pub mod payload;
pub mod profile;
pub mod relay;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_app_files;
#[cfg(test)]
mod tests_files;
#[cfg(test)]
mod tests_outbox;
#[cfg(test)]
mod tests_pq;
#[cfg(test)]
mod tests_resume;
#[cfg(test)]
mod tests_session_cache;
#[cfg(test)]
mod tests_trust;
mod trust;
// The relay in this process (kavro-server's own test harness).
#[cfg(test)]
#[allow(unused_macros, clippy::pedantic)]
#[path = "../../../kavro-server/tests/common/mod.rs"]
pub(crate) mod test_relay;

use chrono::Utc;
use kavro_proto::UserId;
use kavro_proto::v2::api::{
    ApproveLink, MlsDevice, NewLinkRequest, RegisterDevice, SessionProof, UploadKeyPackages,
};
use kavro_proto::v2::link::{SignatureKey, device_link_message, session_message};
use kavro_proto::v2::{GroupId, MlsDeviceId, QueueSeq};
use kavro_proto::validate::base64_encode;
use openmls::prelude::tls_codec::Serialize as _;
use openmls::prelude::{
    BasicCredential, Capabilities, Ciphersuite, Credential, CredentialWithKey, ExtensionType,
    KeyPackage, Lifetime,
};
use openmls_basic_credential::SignatureKeyPair;
use openmls_traits::signatures::Signer as _;
use uuid::Uuid;

pub use self::app_api::QueueWatch;
pub use self::groups::ConversationSummary;
use self::inbox::Received;
#[cfg(test)]
pub use self::inbox::SyncReport;
pub use self::relay::{Posted, V2Relay};
pub use self::trust::V2SafetyNumber;
use crate::keystore::AccessToken;
use crate::mls::rows::{self, DeviceRow};
use crate::mls::session_cache::{self, CachedToken};
use crate::mls::{MlsStore, MlsStoreError};
use crate::relay::RelayError;

/// The ciphersuite of every Kavro v2 group not created post-quantum.
pub const SUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;
/// `kavro group create --pq`: HPKE over X-Wing (ML-KEM-768 + X25519), the
/// same AES-128-GCM, SHA-256 and Ed25519 device keys (draft-ietf-mls-pq-ciphersuites).
pub const PQ_SUITE: Ciphersuite = Ciphersuite::MLS_128_MLKEM768X25519_AES128GCM_SHA256_Ed25519;
/// Every ciphersuite a device keeps key packages for on the relay, so it
/// can be added to classic and to post-quantum groups.
pub const SUITES: [Ciphersuite; 2] = [SUITE, PQ_SUITE];
/// Top up when fewer key packages than this remain on the relay ...
const KEY_PACKAGE_LOW: u32 = 10;
/// ... to this many.
const KEY_PACKAGE_TARGET: u32 = 30;
/// Lifetime of an uploaded key package.
const KEY_PACKAGE_LIFETIME_SECS: u64 = 28 * 24 * 3600;
/// A sync counts the key packages left on the relay when it applied a
/// Welcome (someone claimed one of this device's packages to add it), and
/// otherwise at most this often (claims that led to no Welcome; the
/// last-resort package covers the time between).
const KEY_PACKAGE_RECOUNT: chrono::TimeDelta = chrono::TimeDelta::hours(1);
/// A cached device token is used only while it has at least this long left.
const TOKEN_MARGIN: chrono::TimeDelta = chrono::TimeDelta::minutes(5);

/// A v2 operation failed.
#[derive(Debug, thiserror::Error)]
pub enum V2Error {
    #[error(transparent)]
    Relay(#[from] RelayError),
    #[error(transparent)]
    Store(#[from] MlsStoreError),
    /// openmls refused an operation (`what` says which).
    #[error("MLS {what} failed: {detail}")]
    Mls { what: &'static str, detail: String },
    /// This installation has no v2 device yet.
    #[error("this installation has no Kavro v2 device")]
    NoDevice,
    /// This installation already is a device.
    #[error("this installation already is device {0}")]
    AlreadyDevice(MlsDeviceId),
    #[error("no conversation {0}")]
    UnknownConversation(String),
    /// A conversation name is taken by another group.
    #[error("a conversation named {0} exists")]
    NameTaken(String),
    /// The user has no device that can be added (no key package left).
    #[error("{0} has no Kavro v2 device that can be added")]
    NoDevices(String),
    /// The relay handed out something that does not check (a key package not
    /// signed by the device it claims, a link code of another account).
    #[error("refused: {0}")]
    Refused(String),
    /// Still losing the race for the group's next epoch after several tries.
    #[error("the group kept changing; try again")]
    Contended,
    /// The relay has not approved the link request (yet).
    #[error("the link request is {0}")]
    LinkNotApproved(&'static str),
    #[error("the message is too long ({0} bytes, at most {max})", max = payload::MAX_TEXT_BYTES)]
    TooLong(usize),
    /// `username`'s account does not check against what is pinned here (its
    /// root device changed, or the relay's device list is inconsistent).
    #[error("{username}'s devices are refused: {reason}")]
    Untrusted { username: String, reason: String },
    /// A message kept in the outbox whose post failed for a transient reason:
    /// the next sync posts it (once: the relay drops a repeated
    /// `client_msg_id`), so it must not be sent again.
    #[error("{0}. The message is queued and goes out with the next sync, so do not send it again.")]
    Queued(Box<V2Error>),
    /// A file to send cannot be read, or a received one cannot be written.
    #[error("{0}")]
    File(String),
    /// A received attachment does not open or check.
    #[error("the attachment is refused: {0}")]
    Attachment(String),
    /// Another device is creating the same 1:1 conversation and its invitation
    /// has not arrived yet.
    #[error("the conversation with {0} is being set up by another device; try again")]
    DirectPending(String),
}

pub(crate) fn mls_err(what: &'static str) -> impl Fn(&dyn std::fmt::Display) -> V2Error {
    move |detail| V2Error::Mls {
        what,
        detail: detail.to_string(),
    }
}

/// Who is linking and what to show: the code to type on the approving
/// device, and the new device's key fingerprint to compare there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkStarted {
    pub request_id: Uuid,
    pub code: String,
    pub fingerprint: String,
}

/// One installation's v2 device.
pub struct V2Session {
    relay: V2Relay,
    store: MlsStore,
    signer: SignatureKeyPair,
    device: DeviceRow,
    token: AccessToken,
    /// The account token, to open a new device session when the relay
    /// refuses a cached one (`None` for a local-only session).
    account: Option<AccessToken>,
    /// `token` came from the session cache and the relay has not used it yet.
    token_from_cache: bool,
    /// Welcomes applied since the key packages were last counted.
    welcomes_since_count: usize,
    /// Texts applied from the queue and not yet reported by [`V2Session::sync`].
    unread: Vec<Received>,
}

/// A short fingerprint of a signature key (SHA-256, 20 hex digits in groups of 4).
pub fn fingerprint(key: &[u8]) -> String {
    use sha2::Digest as _;
    let digest = hex::encode(&sha2::Sha256::digest(key)[..10]);
    digest
        .as_bytes()
        .chunks(4)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A new device signature key (Ed25519).
/// What this client's leaves announce: both Kavro ciphersuites (openmls'
/// default list names the post-quantum ones only with its own feature, which
/// the workspace cannot turn on: Cargo.toml), and the last-resort extension
/// on a last-resort package.
pub fn capabilities(last_resort: bool) -> Capabilities {
    let builder = Capabilities::builder().ciphersuites(SUITES.to_vec());
    if last_resort {
        builder.extensions(vec![ExtensionType::LastResort]).build()
    } else {
        builder.build()
    }
}

pub fn new_signer() -> Result<SignatureKeyPair, V2Error> {
    SignatureKeyPair::new(SUITE.signature_algorithm())
        .map_err(|e| mls_err("key generation")(&format!("{e:?}")))
}

fn credential(username: &str, signer: &SignatureKeyPair) -> CredentialWithKey {
    CredentialWithKey {
        credential: BasicCredential::new(username.as_bytes().to_vec()).into(),
        signature_key: signer.public().into(),
    }
}

/// The username a member's basic credential names (`None` if it is not one).
pub(crate) fn credential_name(credential: &Credential) -> Option<String> {
    let basic = BasicCredential::try_from(credential.clone()).ok()?;
    String::from_utf8(basic.identity().to_vec()).ok()
}

/// Opens a device session on the relay and keeps its token in the session
/// cache for the next command.
async fn device_token(
    relay: &V2Relay,
    store: &MlsStore,
    account: &AccessToken,
    user: UserId,
    device: MlsDeviceId,
    signer: &SignatureKeyPair,
) -> Result<AccessToken, V2Error> {
    let timestamp = Utc::now().timestamp();
    let signature = signer
        .sign(&session_message(user, device, timestamp))
        .map_err(|e| mls_err("signing")(&format!("{e:?}")))?;
    let token = relay
        .open_session(
            account,
            device,
            &SessionProof {
                timestamp,
                signature: base64_encode(&signature).into(),
            },
        )
        .await?;
    let cached = CachedToken {
        device_id: device,
        token: token.access_token,
        expires_at: token.expires_at,
    };
    let mut conn = store.begin().await?;
    session_cache::save_device_token(&mut conn, &cached)
        .await
        .map_err(MlsStoreError::from)?;
    conn.commit().await.map_err(MlsStoreError::from)?;
    Ok(AccessToken::new(cached.token))
}

impl V2Session {
    /// Registers this installation as the account's first device.
    pub async fn register_first(
        relay: V2Relay,
        mut store: MlsStore,
        signer: SignatureKeyPair,
        account: &AccessToken,
        username: &str,
        user_id: UserId,
    ) -> Result<Self, V2Error> {
        if let Some(existing) = rows::device(&mut *store.begin().await?)
            .await
            .map_err(MlsStoreError::from)?
        {
            return Err(V2Error::AlreadyDevice(existing.device_id));
        }
        let registered = relay
            .register_device(
                account,
                &RegisterDevice {
                    signature_key: base64_encode(signer.public()).into(),
                    link: None,
                },
            )
            .await?;
        let partial = Self::finish_setup(
            relay,
            &mut store,
            signer,
            account,
            username,
            user_id,
            registered.id,
        )
        .await?;
        let mut session = partial.with_store(store);
        session.top_up_key_packages().await?;
        Ok(session)
    }

    /// Asks the relay to link this installation to the account; an existing
    /// device approves with the code ([`V2Session::approve_link`]).
    pub async fn start_link(
        relay: &V2Relay,
        account: &AccessToken,
        signer: &SignatureKeyPair,
    ) -> Result<LinkStarted, V2Error> {
        let created = relay
            .create_link_request(
                account,
                &NewLinkRequest {
                    signature_key: base64_encode(signer.public()).into(),
                },
            )
            .await?;
        Ok(LinkStarted {
            request_id: created.request_id,
            code: created.code,
            fingerprint: fingerprint(signer.public()),
        })
    }

    /// Completes a link once approved: this installation becomes the device.
    pub async fn finish_link(
        relay: V2Relay,
        mut store: MlsStore,
        signer: SignatureKeyPair,
        account: &AccessToken,
        request: Uuid,
        username: &str,
        user_id: UserId,
    ) -> Result<Self, V2Error> {
        let status = relay.link_request_status(account, request).await?;
        let device_id = match (status.status, status.device_id) {
            (kavro_proto::v2::api::LinkState::Approved, Some(id)) => id,
            (kavro_proto::v2::api::LinkState::Expired, _) => {
                return Err(V2Error::LinkNotApproved("expired"));
            }
            _ => return Err(V2Error::LinkNotApproved("still pending")),
        };
        let partial = Self::finish_setup(
            relay, &mut store, signer, account, username, user_id, device_id,
        )
        .await?;
        let mut session = partial.with_store(store);
        session.top_up_key_packages().await?;
        Ok(session)
    }

    /// Session, first key packages, and the device row (in that order: the
    /// row is written only once the relay knows the device and its packages).
    async fn finish_setup(
        relay: V2Relay,
        store: &mut MlsStore,
        signer: SignatureKeyPair,
        account: &AccessToken,
        username: &str,
        user_id: UserId,
        device_id: MlsDeviceId,
    ) -> Result<Partial, V2Error> {
        let token = device_token(&relay, store, account, user_id, device_id, &signer).await?;
        let device = DeviceRow {
            user_id,
            username: username.to_owned(),
            device_id,
            signature_key: signer.public().to_vec(),
            queue_after: QueueSeq(0),
        };
        let mut tx = store.begin().await?;
        rows::save_device(&mut tx, &device)
            .await
            .map_err(MlsStoreError::from)?;
        store.commit(tx).await?;
        Ok(Partial {
            relay,
            signer,
            device,
            token,
            account: account.duplicate(),
        })
    }

    /// Opens the device of this installation (registered or linked before).
    pub async fn open(
        relay: V2Relay,
        store: MlsStore,
        signer: SignatureKeyPair,
        account: &AccessToken,
    ) -> Result<Self, V2Error> {
        let device = rows::device(&mut *store.begin().await?)
            .await
            .map_err(MlsStoreError::from)?
            .ok_or(V2Error::NoDevice)?;
        if device.signature_key != signer.public() {
            return Err(V2Error::Refused(
                "the device key does not match this installation's MLS state".to_owned(),
            ));
        }
        let cached = session_cache::device_token(&mut *store.begin().await?)
            .await
            .map_err(MlsStoreError::from)?
            .filter(|c| {
                c.device_id == device.device_id && c.expires_at > Utc::now() + TOKEN_MARGIN
            });
        let token_from_cache = cached.is_some();
        let token = match cached {
            Some(cached) => AccessToken::new(cached.token),
            None => {
                device_token(
                    &relay,
                    &store,
                    account,
                    device.user_id,
                    device.device_id,
                    &signer,
                )
                .await?
            }
        };
        Ok(Self {
            relay,
            store,
            signer,
            device,
            token,
            account: Some(account.duplicate()),
            token_from_cache,
            welcomes_since_count: 0,
            unread: Vec::new(),
        })
    }

    /// Opens the device for local reads only (history, conversation list)
    /// without a device session: works offline; anything that talks to the
    /// relay fails as unauthorized.
    pub async fn open_local(
        relay: V2Relay,
        store: MlsStore,
        signer: SignatureKeyPair,
    ) -> Result<Self, V2Error> {
        let device = rows::device(&mut *store.begin().await?)
            .await
            .map_err(MlsStoreError::from)?
            .ok_or(V2Error::NoDevice)?;
        if device.signature_key != signer.public() {
            return Err(V2Error::Refused(
                "the device key does not match this installation's MLS state".to_owned(),
            ));
        }
        Ok(Self {
            relay,
            store,
            signer,
            device,
            token: AccessToken::new(String::new()),
            account: None,
            token_from_cache: false,
            welcomes_since_count: 0,
            unread: Vec::new(),
        })
    }

    pub fn device_id(&self) -> MlsDeviceId {
        self.device.device_id
    }

    pub fn username(&self) -> &str {
        &self.device.username
    }

    pub async fn close(self) {
        self.store.close().await;
    }

    /// Counts (and tops up) the key packages on the relay when a Welcome was
    /// applied since the last count, or the last count is older than
    /// [`KEY_PACKAGE_RECOUNT`]; otherwise does nothing (no round trip).
    pub(crate) async fn top_up_when_due(&mut self) -> Result<(), V2Error> {
        if self.welcomes_since_count == 0 {
            let counted_at =
                session_cache::key_packages_counted_at(&mut *self.store.begin().await?)
                    .await
                    .map_err(MlsStoreError::from)?;
            if counted_at.is_some_and(|at| Utc::now() - at < KEY_PACKAGE_RECOUNT) {
                return Ok(());
            }
        }
        self.top_up_key_packages().await?;
        Ok(())
    }

    /// Uploads key packages, per ciphersuite, when fewer than 10 remain
    /// (and a last-resort package if none is stored). Returns how many were
    /// uploaded. A relay that predates post-quantum groups answers the
    /// count for 0x0001 whatever was asked; it gets classic packages only.
    pub async fn top_up_key_packages(&mut self) -> Result<u32, V2Error> {
        let mut uploaded = 0;
        for suite in SUITES {
            let suite_id = u16::from(suite);
            let count = self
                .relay
                .key_package_count(&self.token, self.device.device_id, suite_id)
                .await?;
            if count.ciphersuite != suite_id
                || (count.remaining >= KEY_PACKAGE_LOW && count.last_resort)
            {
                continue;
            }
            let wanted = KEY_PACKAGE_TARGET.saturating_sub(count.remaining);
            let mut packages = Vec::with_capacity(wanted as usize);
            for _ in 0..wanted {
                packages.push(base64_encode(&self.key_package(suite, false)?).into());
            }
            let last_resort = if count.last_resort {
                None
            } else {
                Some(base64_encode(&self.key_package(suite, true)?).into())
            };
            // The private halves must be durable before anyone can use the packages.
            let tx = self.store.begin().await?;
            self.store.commit(tx).await?;
            self.relay
                .upload_key_packages(
                    &self.token,
                    self.device.device_id,
                    &UploadKeyPackages {
                        key_packages: packages,
                        last_resort,
                    },
                )
                .await?;
            uploaded += wanted;
        }
        let mut conn = self.store.begin().await?;
        session_cache::set_key_packages_counted_at(&mut conn, Utc::now())
            .await
            .map_err(MlsStoreError::from)?;
        conn.commit().await.map_err(MlsStoreError::from)?;
        self.welcomes_since_count = 0;
        Ok(uploaded)
    }

    fn key_package(&self, suite: Ciphersuite, last_resort: bool) -> Result<Vec<u8>, V2Error> {
        let mut builder = KeyPackage::builder()
            .key_package_lifetime(Lifetime::new(KEY_PACKAGE_LIFETIME_SECS))
            .leaf_node_capabilities(capabilities(last_resort));
        if last_resort {
            builder = builder.mark_as_last_resort();
        }
        let bundle = builder
            .build(
                suite,
                self.store.provider(),
                &self.signer,
                credential(&self.device.username, &self.signer),
            )
            .map_err(|e| mls_err("key package")(&e))?;
        bundle
            .key_package()
            .tls_serialize_detached()
            .map_err(|e| mls_err("key package")(&e))
    }

    /// Every device of `username` (revoked ones included), oldest first.
    pub async fn devices(&mut self, username: &str) -> Result<Vec<MlsDevice>, V2Error> {
        match self.relay.devices(&self.token, username).await {
            Ok(list) => Ok(list.devices),
            Err(err) => {
                let err = V2Error::from(err);
                if self.renewed_after(&err).await? {
                    Ok(self.relay.devices(&self.token, username).await?.devices)
                } else {
                    Err(err)
                }
            }
        }
    }

    /// After `err` from the relay: if it refused a device token that came
    /// from the session cache (the relay's keys changed, the device session
    /// was ended), opens a new session, once, and says so: the caller then
    /// retries what failed. Any other error is left to the caller.
    pub(crate) async fn renewed_after(&mut self, err: &V2Error) -> Result<bool, V2Error> {
        let unauthorized = matches!(err, V2Error::Relay(RelayError::Unauthorized(_)));
        let Some(account) = self
            .account
            .as_ref()
            .filter(|_| unauthorized && self.token_from_cache)
        else {
            return Ok(false);
        };
        self.token_from_cache = false;
        self.token = device_token(
            &self.relay,
            &self.store,
            account,
            self.device.user_id,
            self.device.device_id,
            &self.signer,
        )
        .await?;
        Ok(true)
    }

    /// Approves a link code typed on this device: checks the request is for
    /// this account, signs the link, and adds the new device to every
    /// conversation. Returns the new device and its key's fingerprint.
    pub async fn approve_link(&mut self, code: &str) -> Result<(MlsDevice, String), V2Error> {
        let view = self.relay.view_link_code(&self.token, code).await?;
        if view.user_id != self.device.user_id {
            return Err(V2Error::Refused(
                "the link code is for another account".to_owned(),
            ));
        }
        let new_key = SignatureKey::parse(view.signature_key.as_str())
            .map_err(|e| V2Error::Refused(format!("the new device's key {e}")))?;
        let me = SignatureKey::from_bytes(self.signer.public())
            .map_err(|e| V2Error::Refused(format!("this device's key {e}")))?;
        let signature = self
            .signer
            .sign(&device_link_message(self.device.user_id, &me, &new_key))
            .map_err(|e| mls_err("signing")(&format!("{e:?}")))?;
        let device = self
            .relay
            .approve_link(
                &self.token,
                code,
                &ApproveLink {
                    signature: base64_encode(&signature).into(),
                },
            )
            .await?;
        Ok((device, fingerprint(new_key.as_bytes())))
    }

    /// Revokes a device of this account on the relay, then removes it from
    /// every conversation with one commit each.
    pub async fn revoke_device(&mut self, device: MlsDeviceId) -> Result<MlsDevice, V2Error> {
        let revoked = self.relay.revoke_device(&self.token, device).await?;
        let key = kavro_proto::validate::base64_strict(revoked.signature_key.as_str())
            .ok_or_else(|| V2Error::Refused("the relay sent a malformed key".to_owned()))?;
        for conversation in self.conversation_ids().await? {
            if !self
                .load_group(&conversation)?
                .is_some_and(|g| g.is_active())
            {
                continue;
            }
            self.remove_devices(&conversation, &[(device, key.clone())])
                .await?;
        }
        Ok(revoked)
    }
}

/// A session being set up, before it owns its store.
struct Partial {
    relay: V2Relay,
    signer: SignatureKeyPair,
    device: DeviceRow,
    token: AccessToken,
    account: AccessToken,
}

impl Partial {
    fn with_store(self, store: MlsStore) -> V2Session {
        V2Session {
            relay: self.relay,
            store,
            signer: self.signer,
            device: self.device,
            token: self.token,
            account: Some(self.account),
            token_from_cache: false,
            welcomes_since_count: 0,
            unread: Vec::new(),
        }
    }
}

/// The group ids of conversations, for loops over all of them.
impl V2Session {
    async fn conversation_ids(&self) -> Result<Vec<GroupId>, V2Error> {
        let mut conn = self.store.begin().await?;
        Ok(rows::conversations(&mut conn)
            .await
            .map_err(MlsStoreError::from)?
            .into_iter()
            .map(|c| c.group_id)
            .collect())
    }
}
