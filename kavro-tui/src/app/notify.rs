//! Telling the user about a message in a conversation that is not on
//! screen. Whether to is decided in `update` (and unit-tested there); this
//! only rings: the terminal bell, written by the app's loop between two
//! frames (it owns the terminal, so the BEL never lands inside a frame's
//! escape sequences), and a desktop notification where a desktop session
//! exists (`DBUS_SESSION_BUS_ADDRESS` set), through `notify-rust` over zbus.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};

/// The ASCII bell.
const BEL: &[u8] = b"\x07";
/// How long the desktop shows the notice.
const DESKTOP_MILLIS: u32 = 5000;

/// A desktop notification on its way: a burst of messages shows one, and a
/// D-Bus that hangs holds one blocking thread, not one per message.
static DESKTOP_BUSY: AtomicBool = AtomicBool::new(false);

/// Whether a desktop session is there to notify.
pub fn desktop_session() -> bool {
    std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some_and(|v| !v.is_empty())
}

/// Rings the bell on `out`, and notifies the desktop when `desktop`.
/// `title` and `body` name the sender and the conversation, never the text
/// (a desktop notice can show on a locked screen).
pub fn notify(out: &mut impl Write, title: &str, body: &str, desktop: bool) {
    // A terminal that cannot be written is not worth failing the app for.
    let _ = out.write_all(BEL).and_then(|()| out.flush());
    if desktop && !DESKTOP_BUSY.swap(true, Ordering::AcqRel) {
        let (title, body) = (title.to_owned(), body.to_owned());
        // zbus's blocking call, on the blocking pool, never on a runtime worker.
        tokio::task::spawn_blocking(move || {
            let _ = notify_rust::Notification::new()
                .appname("Kavro")
                .summary(&title)
                .body(&body)
                .timeout(notify_rust::Timeout::Milliseconds(DESKTOP_MILLIS))
                .show();
            DESKTOP_BUSY.store(false, Ordering::Release);
        });
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn rings_the_bell_and_writes_nothing_else() {
        let mut out = Vec::new();
        super::notify(&mut out, "Kavro", "New message from bob", false);
        assert_eq!(out, b"\x07");
    }
}
