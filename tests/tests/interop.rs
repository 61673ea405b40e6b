//! Interoperability with libsodium clients, through PyNaCl
//! (`tests/interop/pynacl_peer.py`, a legacy client in a few lines):
//! a message a legacy client sends reaches `kavro inbox` as unverified text,
//! and the outer layer of what `kavro send` produces opens with PyNaCl.
//!
//! Needs `python3` with PyNaCl (`pip install pynacl`); skipped with a
//! printed reason otherwise, except under `KAVRO_REQUIRE_SERVICES=1`.

use std::process::Command;

use kavro_e2e::{Server, User, skip_unless};
use serde_json::Value;

const PEER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/interop/pynacl_peer.py");

fn pynacl_available() -> bool {
    Command::new("python3")
        .args(["-c", "import nacl.public"])
        .output()
        .is_ok_and(|out| out.status.success())
}

/// Runs the Python peer; returns its JSON lines.
fn peer(args: &[&str]) -> Vec<Value> {
    let out = Command::new("python3")
        .arg(PEER)
        .args(args)
        .output()
        .expect("run python3");
    assert!(
        out.status.success(),
        "pynacl_peer.py {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("JSON line"))
        .collect()
}

fn registered(server: &Server, name: &str) -> (User, Value) {
    let user = User::new(name, &server.url);
    let me = user.json(&["register", name]).remove(0);
    (user, me)
}

#[test]
fn a_legacy_pynacl_message_is_shown_unverified() {
    if skip_unless(
        pynacl_available(),
        "python3 with PyNaCl (pip install pynacl)",
    ) {
        return;
    }
    let server = Server::start();
    let (alice, _) = registered(&server, "alice");
    let (bob, bob_me) = registered(&server, "bob");

    // Alice's legacy client (PyNaCl) sends to Bob's published key.
    let sent = peer(&[
        "send",
        &server.url,
        &alice.token(),
        &bob_me["user_id"].to_string(),
        bob_me["public_key"].as_str().expect("key"),
        "hello from PyNaCl ✓",
    ]);
    assert_eq!(sent[0]["status"], "stored");

    let run = bob.exec(&["--json", "inbox"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    let lines = run.json_lines();
    assert_eq!(lines.len(), 1, "{run:?}");
    let message = &lines[0];
    assert_eq!(message["text"], "hello from PyNaCl ✓");
    assert_eq!(message["verified"], false);
    assert_eq!(message["trust"], "legacy");
    assert_eq!(message["state"], "unverified");
    assert_eq!(
        message["id"],
        Value::Null,
        "a legacy message has no envelope id"
    );
    assert!(
        message["error"]
            .as_str()
            .is_some_and(|e| e.contains("legacy")),
        "{message}"
    );
    let human = bob.exec(&["history", "--limit", "5", "alice"]);
    assert_eq!(human.code, Some(0), "{human:?}");
}

#[test]
fn the_outer_layer_of_kavro_send_opens_with_pynacl() {
    if skip_unless(
        pynacl_available(),
        "python3 with PyNaCl (pip install pynacl)",
    ) {
        return;
    }
    let server = Server::start();
    let (alice, alice_me) = registered(&server, "alice");
    let (bob, _) = registered(&server, "bob");
    alice.ok(&["send", "--v1", "bob", "for libsodium"]);

    // Bob's secret key, read from his key file (KAVRO_KEY_STORE=file).
    let opened = peer(&[
        "open-inbox",
        &server.url,
        &bob.token(),
        &bob.identity_secret_hex(),
    ]);
    assert_eq!(opened.len(), 1);
    let message = &opened[0];
    assert_eq!(message["length"], 256, "the smallest padding bucket");
    let envelope = &message["envelope"];
    assert_eq!(envelope["version"], 1, "{message}");
    assert_eq!(envelope["sender_key"], alice_me["public_key"]);

    // Not acknowledged by the Python side: Kavro still reads it, verified.
    let got = bob.json(&["inbox"]);
    assert_eq!(got[0]["text"], "for libsodium");
    assert_eq!(got[0]["authenticated"], true);
}
