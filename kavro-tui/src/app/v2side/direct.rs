//! A contact's 1:1 from the chat app, decided as `kavro send USER` decides
//! it: over the 1:1 MLS conversation of both accounts when the contact's
//! account has active v2 devices, else over the v1 box (the worker's v1
//! path). The decision needs the relay, so it is made here, not in `update`.

use kavro_proto::crypto::SafetyNumber;

use super::{V2Side, text};
use crate::app::action::V2Event;
use crate::app::state::{MessageView, MlsKeysView};
use crate::v2::{V2Error, V2Session};

/// Why a 1:1 over MLS was not sent, as the failed line shows it.
pub fn reason(peer: &str, err: &V2Error) -> String {
    match err {
        // The core's words name "another device"; the user only needs to wait.
        V2Error::DirectPending(_) => {
            format!("the 1:1 chat with {peer} is being set up, try again")
        }
        other => text(other),
    }
}

/// Whether `err` says the relay could not be asked (not that it refused).
fn unreachable(err: &V2Error) -> bool {
    matches!(err, V2Error::Relay(e) if e.is_transient())
}

impl V2Side {
    /// Sends `body` to `peer` over MLS and reports it as [`V2Event::Sent`]
    /// (labelled with `peer`: the person's entry). `false`, with nothing
    /// reported, when it goes over v1 instead: `peer`'s account has no active
    /// v2 device, or the relay cannot be asked and this device has no 1:1
    /// with `peer` yet (the v1 outbox then keeps it and retries, as before
    /// v2). With a 1:1 here, an unreachable relay fails the line instead: it
    /// must not fall back to v1 behind the user's back.
    pub async fn send_direct(&self, pending: u64, peer: &str, body: &str) -> bool {
        let mut v2 = self.v2.lock().await;
        let known = v2.find(peer).await.is_ok();
        let outcome = match v2.has_active_devices(peer).await {
            Ok(true) => self.direct(&mut v2, peer, body, known).await,
            Ok(false) => return false,
            Err(err) if !known && unreachable(&err) => return false,
            Err(err) => Err(err),
        };
        if let Err(V2Error::Queued(cause)) = &outcome {
            self.emit(V2Event::Queued {
                pending,
                label: peer.to_owned(),
                reason: text(cause),
            });
            return true;
        }
        self.emit(V2Event::Sent {
            pending,
            label: peer.to_owned(),
            outcome: outcome.map_err(|err| reason(peer, &err)),
        });
        true
    }

    /// `peer`'s Kavro v2 safety number for the Ctrl-F view: `None` when the
    /// account has no active v2 device (the view shows the v1 key alone),
    /// or the relay cannot be asked (said in a notice).
    pub async fn mls_keys(&self, peer: &str) -> Option<MlsKeysView> {
        let mut v2 = self.v2.lock().await;
        let number = match v2.has_active_devices(peer).await {
            Ok(true) => v2.safety_number(peer).await,
            Ok(false) => return None,
            Err(err) => Err(err),
        };
        match number {
            Ok(number) => Some(MlsKeysView {
                number: number.safety_number,
                verified: number.verified,
                devices: number.devices,
            }),
            Err(err) => {
                self.emit(V2Event::Failed(format!(
                    "Kavro v2 safety number with {peer}: {}",
                    text(&err)
                )));
                None
            }
        }
    }

    /// `v` on the v2 safety number: verified if it is still the number over
    /// both roots (a new root since it was shown is refused).
    pub(super) async fn trust_root(
        &self,
        v2: &mut V2Session,
        peer: &str,
        number: &SafetyNumber,
    ) -> Result<(), V2Error> {
        match v2.trust_root(peer, number).await? {
            Ok(_) => self.emit(V2Event::Done(format!(
                "{peer}'s Kavro v2 safety number is verified (every device of the account)"
            ))),
            Err(_) => self.emit(V2Event::Failed(format!(
                "Not verified: {peer}'s Kavro v2 safety number changed since it was shown. Press Ctrl-F and compare the new one"
            ))),
        }
        Ok(())
    }

    /// Finds or creates the 1:1 with `peer`, sends, and returns its history.
    async fn direct(
        &self,
        v2: &mut V2Session,
        peer: &str,
        body: &str,
        known: bool,
    ) -> Result<Vec<MessageView>, V2Error> {
        let group = v2.direct(peer).await?;
        v2.send(&group, body).await?;
        if !known {
            // A new 1:1: the list shows it in the person's entry now rather
            // than after the next sync. The message went out either way, so
            // a failure here must not mark it failed (a retry would repeat it).
            let _ = self.publish(v2, &[]).await;
        }
        self.history_views(v2, &group).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::relay::RelayError;

    #[test]
    fn a_pending_one_to_one_says_to_try_again_and_others_keep_their_reason() {
        let pending = reason("bob", &V2Error::DirectPending("bob".into()));
        assert_eq!(pending, "the 1:1 chat with bob is being set up, try again");
        let untrusted = reason(
            "bob",
            &V2Error::Untrusted {
                username: "bob".into(),
                reason: "the root device changed".into(),
            },
        );
        assert!(untrusted.contains("the root device changed"), "{untrusted}");
        let refused = V2Error::Relay(RelayError::Forbidden("no".into()));
        assert!(!unreachable(&refused));
    }
}
