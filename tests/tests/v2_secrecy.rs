//! Forward secrecy and post-compromise security of Kavro v2 (issue #12,
//! point 5) with the real binaries, on the SQLite relay.
//!
//! The attacker is the relay operator: it keeps every ciphertext (read from
//! the relay's database before the victim's device acknowledges it) and
//! holds a full copy of the victim's installation (config and data
//! directories: MLS state, device key file, session token). To make a copy
//! try a captured ciphertext with the real client, the entry is queued again
//! for the victim's device and the copy runs `kavro inbox`. Every negative
//! result has its control in the same test: a copy whose state is current
//! reads a replayed entry, so the replay itself is shown to work.

#[path = "v2_support/attacker.rs"]
mod attacker;
#[allow(
    dead_code,
    reason = "linking a second device is for the multi-device tests"
)]
mod v2_support;

use kavro_e2e::{Server, User};
use kavro_proto::v2::api::QueueKind;

use self::attacker::{Captured, RelayDb, copy_installation, device_id, epoch, history_count};
use self::v2_support::{line, registered, v2_texts};

const TEAM: &str = "#team";

/// alice and bob in `#team` (alice created it, bob joined from his queue).
fn team(server: &Server) -> (User, User) {
    let alice = registered(server, "alice");
    let bob = registered(server, "bob");
    alice.json(&["group", "create", "team", "--member", "bob"]);
    assert!(v2_texts(&bob).is_empty(), "bob joins, nothing to read yet");
    assert_eq!(epoch(&alice, TEAM), epoch(&bob, TEAM));
    (alice, bob)
}

/// The one entry waiting for `device`, checked to be of `kind`.
fn only_entry(relay: &RelayDb, device: i64, kind: QueueKind) -> Vec<Captured> {
    let pending = relay.pending(device);
    assert_eq!(pending.len(), 1, "one entry waiting: {pending:?}");
    assert_eq!(pending[0].kind, kind.code(), "{pending:?}");
    pending
}

/// The one message waiting for `device`, checked not to carry `text` in clear.
fn only_message(relay: &RelayDb, device: i64, text: &str) -> Vec<Captured> {
    let pending = only_entry(relay, device, QueueKind::Application);
    assert!(
        !pending[0]
            .body
            .windows(text.len())
            .any(|w| w == text.as_bytes()),
        "the relay holds ciphertext only"
    );
    pending
}

/// `kavro --json inbox` of `user`, which must succeed; its stdout.
fn inbox_stdout(user: &User) -> String {
    let run = user.exec(&["--json", "inbox"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    run.stdout
}

/// Epochs a member keeps after moving on (`MAX_PAST_EPOCHS` in
/// kavro-tui/src/v2/groups.rs), for messages queued before a commit.
const PAST_EPOCHS_KEPT: u64 = 2;

/// Replays `captured` to `stolen`, a copy of the installation of the device
/// `device` that read it before being copied: nothing new may show, in the
/// inbox or in the history (which holds the line the device stored when it
/// read the message: plaintext at rest, outside what forward secrecy covers).
fn replay_reads_nothing(
    relay: &RelayDb,
    device: i64,
    stolen: &User,
    captured: &[Captured],
    text: &str,
) {
    let kept = history_count(stolen, TEAM, text);
    assert_eq!(kept, 1, "the line the device stored when it read it");
    relay.replay(device, captured);
    let shown = inbox_stdout(stolen);
    assert!(!shown.contains(text), "the stolen copy read it: {shown}");
    assert!(
        relay.pending(device).is_empty(),
        "the stolen copy did take the replayed entry"
    );
    assert_eq!(history_count(stolen, TEAM, text), kept);
}

/// `alice` commits a key update and `bob` applies it.
fn next_epoch(alice: &User, bob: &User) {
    let before = epoch(bob, TEAM);
    alice.json(&["group", "update", "team"]);
    assert!(v2_texts(bob).is_empty());
    assert_eq!(epoch(bob, TEAM), before + 1, "bob applied alice's commit");
}

#[test]
fn a_copy_taken_after_the_epoch_moved_on_cannot_read_a_captured_message() {
    let server = Server::start();
    let relay = RelayDb::open(&server);
    let (alice, bob) = team(&server);
    let bob_device = device_id(&bob);
    let secret = "the launch code is 0451";

    alice.json(&["send", TEAM, secret]);
    let captured = only_message(&relay, bob_device, secret);
    // The control: bob's installation before he reads the message.
    let control = copy_installation(&bob);
    assert_eq!(v2_texts(&bob), vec![line(TEAM, "alice", secret)]);

    // One epoch on, the message's epoch is among those bob keeps (its key
    // was deleted when he read it); past them, the whole epoch is gone. The
    // attacker copies bob's installation at both points and has the captured
    // ciphertext delivered to each copy again.
    next_epoch(&alice, &bob);
    let stolen_next_epoch = copy_installation(&bob);
    for _ in 0..PAST_EPOCHS_KEPT {
        next_epoch(&alice, &bob);
    }
    let stolen_later = copy_installation(&bob);
    assert!(relay.pending(bob_device).is_empty(), "bob acknowledged all");
    replay_reads_nothing(&relay, bob_device, &stolen_next_epoch, &captured, secret);
    replay_reads_nothing(&relay, bob_device, &stolen_later, &captured, secret);

    // The control reads the same replayed bytes: the replay works, and the
    // copies above failed for want of keys, not of a message.
    assert_eq!(history_count(&control, TEAM, secret), 0);
    relay.replay(bob_device, &captured);
    assert_eq!(v2_texts(&control), vec![line(TEAM, "alice", secret)]);
    assert_eq!(history_count(&control, TEAM, secret), 1);
    assert!(relay.pending(bob_device).is_empty());
}

#[test]
fn a_copy_taken_before_a_key_update_reads_nothing_sent_after_it() {
    let server = Server::start();
    let relay = RelayDb::open(&server);
    let (alice, bob) = team(&server);
    let alice_device = device_id(&alice);
    let bob_device = device_id(&bob);

    // The attacker copies bob's installation.
    let stolen = copy_installation(&bob);

    // The control: before bob's update, the copy reads what is sent (here,
    // a captured message replayed after bob read it).
    let before_update = "before the update";
    alice.json(&["send", TEAM, before_update]);
    let captured = only_message(&relay, bob_device, before_update);
    assert_eq!(v2_texts(&bob), vec![line(TEAM, "alice", before_update)]);
    relay.replay(bob_device, &captured);
    assert_eq!(
        v2_texts(&stolen),
        vec![line(TEAM, "alice", before_update)],
        "the stolen copy follows the group until bob updates"
    );
    assert!(relay.pending(bob_device).is_empty());

    // bob replaces his keys (one commit); alice applies it.
    let old = epoch(&bob, TEAM);
    bob.json(&["group", "update", "team"]);
    assert_eq!(epoch(&bob, TEAM), old + 1);
    let commit = only_entry(&relay, alice_device, QueueKind::Commit);
    assert!(v2_texts(&alice).is_empty());
    assert_eq!(epoch(&alice, TEAM), old + 1, "alice applied bob's commit");

    let after_update = "after the update";
    alice.json(&["send", TEAM, after_update]);
    let captured = only_message(&relay, bob_device, after_update);
    // bob's real installation reads it (from the relay, before any replay,
    // so the stolen copy's acknowledgements cannot take it from him).
    assert_eq!(v2_texts(&bob), vec![line(TEAM, "alice", after_update)]);

    // The attacker gets bob's own commit and the new message: it can follow
    // neither.
    let mut replayed = commit;
    replayed.extend(captured);
    relay.replay(bob_device, &replayed);
    let shown = inbox_stdout(&stolen);
    assert!(
        !shown.contains(after_update),
        "the stolen copy read it: {shown}"
    );
    assert!(
        relay.pending(bob_device).is_empty(),
        "the stolen copy did take both replayed entries"
    );
    assert_eq!(history_count(&stolen, TEAM, after_update), 0);
    assert_eq!(epoch(&stolen, TEAM), old, "still in the epoch before");
}
