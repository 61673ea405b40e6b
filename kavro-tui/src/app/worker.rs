//! The network worker: owns the [`Session`], turns [`Command`]s into session
//! calls and reports results as [`Action`]s; the inbox sync runs beside it
//! ([`super::sync`]). The UI never waits on it.

use std::sync::Arc;

use kavro_proto::strings::Password;
use tokio::sync::{RwLock, mpsc};

use super::action::{Action, NetEvent, SendOutcome, V2Event};
use super::command::{Command, V2Command};
use super::settings;
use super::state::{ContactEntry, KeysView, Me, SendStatus};
use super::sync::{self, SyncSettings, emit, report_history, retry_outbox};
use super::v2side::V2Side;
use crate::session::{Compared, DeliveryOutcome, Session, SessionError};

pub struct Worker {
    session: Arc<RwLock<Session>>,
    actions: mpsc::UnboundedSender<Action>,
    settings: SyncSettings,
    /// The Kavro v2 side, once this installation's device is open.
    v2: tokio::sync::OnceCell<Arc<V2Side>>,
}

fn lines(number: &kavro_proto::crypto::SafetyNumber) -> Vec<String> {
    number.lines().to_vec()
}

impl Worker {
    pub fn new(
        session: Arc<RwLock<Session>>,
        actions: mpsc::UnboundedSender<Action>,
        settings: SyncSettings,
    ) -> Self {
        Self {
            session,
            actions,
            settings,
            v2: tokio::sync::OnceCell::new(),
        }
    }

    fn emit(&self, event: NetEvent) {
        emit(&self.actions, event);
    }

    /// Loads the account and contacts and starts syncing; `false` when not logged in.
    pub async fn start(&self) -> bool {
        let session = self.session.read().await;
        let (Ok(account), Ok(own)) = (session.account(), session.own_key()) else {
            return false;
        };
        let me = Me {
            username: account.username.clone(),
            server: account.server.as_str().to_owned(),
            fingerprint: own.fingerprint.to_string(),
        };
        let mut contacts = Vec::new();
        for contact in session.contacts().await.unwrap_or_default() {
            // The newest message orders the list (the most recent conversation opens).
            let last_message = session
                .history(&contact.username, 1)
                .await
                .ok()
                .and_then(|m| m.last().map(|m| m.received_at.max(m.sent_at)));
            let mut entry = ContactEntry::person(contact.username, Some(contact.state));
            entry.last_activity = Some(last_message.unwrap_or(contact.updated_at));
            contacts.push(entry);
        }
        drop(session);
        self.emit(NetEvent::Ready { me, contacts });
        tokio::spawn(sync::sync_loop(
            self.session.clone(),
            self.actions.clone(),
            self.settings,
        ));
        if self.v2.get().is_none()
            && let Some(v2) = V2Side::open(self.session.clone(), self.actions.clone()).await
        {
            tokio::spawn(v2.clone().sync_loop(self.settings));
            let _ = self.v2.set(v2);
        }
        true
    }

    /// Carries out one command.
    pub async fn handle(&self, command: Command) {
        match command {
            Command::Login {
                username,
                password,
                register,
                invite,
            } => self.login(&username, password, register, invite).await,
            Command::Send {
                pending,
                peer,
                text,
            } => {
                // As `kavro send USER`: over the 1:1 MLS conversation when
                // this installation is a v2 device and USER's account has
                // active v2 devices (the v2 side reports it), else over v1.
                if let Some(v2) = self.v2.get()
                    && v2.send_direct(pending, &peer, &text).await
                {
                    return;
                }
                self.send(pending, peer, &text).await;
            }
            Command::LoadHistory { peer } => self.history(peer).await,
            Command::OpenConversation { name } => {
                let session = self.session.read().await;
                match session.contact_keys(&name).await {
                    Ok(keys) => self.emit(NetEvent::Opened {
                        peer: keys.contact.username,
                        state: keys.contact.state,
                    }),
                    Err(err) => self.emit(NetEvent::Failed(err.to_string())),
                }
            }
            Command::LoadKeys { peer } => self.keys(&peer).await,
            // To a person: over Kavro v2 when their account has v2 devices
            // (as `kavro send USER --file`), else in a v1 file envelope.
            Command::V2(V2Command::SendFile {
                pending,
                group: None,
                label,
                file,
            }) if !label.starts_with('#')
                && match self.v2.get() {
                    Some(v2) => !v2.file_reaches(&label).await,
                    None => true,
                } =>
            {
                let (session, actions) = (self.session.clone(), self.actions.clone());
                // Its own task: an upload takes a while.
                tokio::spawn(async move {
                    let session = session.read().await;
                    super::files_v1::send_file(&session, &actions, pending, label, file).await;
                });
            }
            Command::SaveV1Files => {
                let session = self.session.read().await;
                let dir = super::v2side::files::download_dir(&session);
                super::files_v1::save_received(&session, &self.actions, &dir).await;
            }
            Command::V2(command) => match self.v2.get() {
                Some(v2) => v2.handle(command).await,
                None => self.emit(NetEvent::Failed(
                    "this installation is not a Kavro v2 device".to_owned(),
                )),
            },
            Command::SaveSettings(settings) => {
                let path = settings::path(self.session.read().await.profile().paths());
                let saved =
                    tokio::task::spawn_blocking(move || settings::save(&path, settings)).await;
                if let Ok(Err(err)) = saved {
                    self.emit(NetEvent::Failed(format!("Settings not saved: {err}")));
                }
            }
            // The app's own loop rings the bell (it owns the terminal).
            Command::Notify { .. } => {}
            Command::Complete { typed } => {
                let asked = typed.clone();
                let completion = tokio::task::spawn_blocking(move || {
                    super::complete::complete(&asked, super::complete::home().as_deref())
                })
                .await
                .unwrap_or_default();
                self.emit(NetEvent::Completed { typed, completion });
            }
            Command::LoadPicture { id, path } => {
                let actions = self.actions.clone();
                // Decoding is blocking work, and off the command queue.
                tokio::task::spawn_blocking(move || {
                    let image = super::pictures::thumbnail(std::path::Path::new(&path));
                    emit(&actions, NetEvent::Picture { id, image });
                });
            }
            Command::OpenFile { path } => {
                let actions = self.actions.clone();
                // Off the command queue: a viewer may take a moment to start.
                tokio::task::spawn_blocking(move || {
                    if let Err(reason) = super::opener::open(std::path::Path::new(&path)) {
                        emit(&actions, NetEvent::Failed(reason));
                    }
                });
            }
            Command::Trust { peer, key } => {
                let session = self.session.read().await;
                match session.trust(&peer, &Compared::Key(key)).await {
                    Ok(outcome) => self.emit(NetEvent::KeyState {
                        peer: outcome.contact.username,
                        state: outcome.contact.state,
                    }),
                    Err(SessionError::NotTheKeyCompared { username }) => {
                        self.emit(NetEvent::Failed(format!(
                            "Not verified: {username}'s key changed again since the safety number was shown. Press Ctrl-F and compare the new one"
                        )));
                    }
                    Err(err) => self.emit(NetEvent::Failed(err.to_string())),
                }
            }
            Command::RetryOutbox => {
                retry_outbox(&*self.session.read().await, &self.actions).await;
            }
            Command::CheckDeliveries { peer, messages } => {
                let session = self.session.read().await;
                // Errors are not worth a notice: the next check asks again.
                let Ok(changed) = session.check_deliveries(&messages).await else {
                    return;
                };
                for (local_id, outcome) in changed {
                    let status = match outcome {
                        DeliveryOutcome::Delivered(_) => SendStatus::Delivered,
                        DeliveryOutcome::Expired => SendStatus::Failed(
                            "expired on the relay before it was fetched".to_owned(),
                        ),
                        DeliveryOutcome::TimedOut => continue,
                    };
                    self.emit(NetEvent::Status {
                        peer: peer.clone(),
                        local_id,
                        status,
                    });
                }
            }
        }
    }

    /// Logs in, or registers (with the invite code, if one was typed).
    async fn login(
        &self,
        username: &str,
        password: String,
        register: bool,
        invite: Option<String>,
    ) {
        let password = Password::from(password);
        let result = {
            let mut session = self.session.write().await;
            if register {
                session
                    .register(username, &password, invite.as_deref())
                    .await
                    .map(|_| ())
            } else {
                session.login(username, &password).await.map(|_| ())
            }
        };
        match result {
            Ok(()) => {
                if register {
                    // As `kavro register` does: this installation becomes the
                    // account's first Kavro v2 device (the account works without).
                    let session = self.session.read().await;
                    if let Err(err) = crate::cli::v2::register_first_device(&session).await {
                        self.emit(NetEvent::V2(V2Event::Failed(format!(
                            "the account works, but this installation could not become its Kavro v2 device: {err:#}"
                        ))));
                    }
                }
                self.emit(NetEvent::LoggedIn);
                self.start().await;
            }
            Err(err) => self.emit(NetEvent::LoginFailed(err.to_string())),
        }
    }

    async fn send(&self, pending: u64, peer: String, text: &str) {
        let session = self.session.read().await;
        let outcome = super::files_v1::outcome(&peer, session.send(&peer, text).await);
        let stored = matches!(outcome, SendOutcome::Stored { .. });
        self.emit(NetEvent::Sent {
            pending,
            peer: peer.clone(),
            outcome,
        });
        if !stored {
            // The outbox may now hold it: show the conversation as the history has it.
            if let Err(err) = report_history(&session, &self.actions, peer).await {
                self.emit(NetEvent::Failed(err.to_string()));
            }
        }
    }

    async fn history(&self, peer: String) {
        let session = self.session.read().await;
        if let Err(err) = report_history(&session, &self.actions, peer).await {
            self.emit(NetEvent::Failed(err.to_string()));
        }
    }

    async fn keys(&self, peer: &str) {
        let session = self.session.read().await;
        let own = match session.own_key() {
            Ok(own) => own,
            Err(err) => {
                self.emit(NetEvent::Failed(err.to_string()));
                return;
            }
        };
        let keys = session.contact_keys(peer).await;
        drop(session);
        let mls = match (&keys, self.v2.get()) {
            (Ok(_), Some(v2)) => v2.mls_keys(peer).await.map(Box::new),
            _ => None,
        };
        match keys {
            Ok(keys) => {
                let pending = keys
                    .contact
                    .pending
                    .as_ref()
                    .zip(keys.pending_safety_number.as_ref())
                    .map(|(p, number)| (p.key.fingerprint().to_string(), lines(number)));
                self.emit(NetEvent::Keys(KeysView {
                    peer: keys.contact.username.clone(),
                    state: keys.contact.state,
                    own_fingerprint: own.fingerprint.to_string(),
                    fingerprint: keys.contact.key.fingerprint().to_string(),
                    safety_number: lines(&keys.safety_number),
                    pending,
                    key_shown: *keys.contact.key_to_trust(),
                    mls,
                }));
            }
            Err(err) => self.emit(NetEvent::Failed(err.to_string())),
        }
    }
}
