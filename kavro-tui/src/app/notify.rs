//! Telling the user about a message in a conversation that is not on
//! screen. Whether to is decided in `update` (and unit-tested there); this
//! only rings: the terminal bell, written by the app's loop between two
//! frames (it owns the terminal, so the BEL never lands inside a frame's
//! escape sequences).

use std::io::Write;

/// The ASCII bell.
const BEL: &[u8] = b"\x07";

/// Rings the bell on `out`. `title` and `body` name the sender and the
/// conversation (never the text); they are for a desktop notice, which
/// this build does not send (see docs: the bell is the one notification).
pub fn notify(out: &mut impl Write, title: &str, body: &str) {
    let _ = (title, body);
    // A terminal that cannot be written is not worth failing the app for.
    let _ = out.write_all(BEL).and_then(|()| out.flush());
}

#[cfg(test)]
mod tests {
    #[test]
    fn rings_the_bell_and_writes_nothing_else() {
        let mut out = Vec::new();
        super::notify(&mut out, "Kavro", "New message from bob");
        assert_eq!(out, b"\x07");
    }
}
