//! The real `kavro` client against the real `kavro-server`: two (or more)
//! users, each with their own config and data directories and the file key
//! store. Covers the scripted subcommands end to end, including a relay that
//! substitutes a key, tampered ciphertext, and an offline relay.

use std::process::Stdio;

use base64::Engine as _;
use kavro_e2e::{Http, Run, Server, User, output_with_stdin};
use serde_json::{Value, json};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

fn registered(server: &Server, name: &str) -> User {
    let user = User::new(name, &server.url);
    let out = user.json(&["register", name]);
    assert_eq!(out[0]["username"], name);
    assert_eq!(out[0]["key_store"], "file");
    assert_eq!(out[0]["new_key"], true);
    user
}

/// Runs with stdin and captures everything.
fn with_stdin(user: &User, args: &[&str], stdin: &str, drop_password: bool) -> Run {
    let mut command = user.command(args);
    if drop_password {
        command.env_remove("KAVRO_PASSWORD");
    }
    Run::from_output(&output_with_stdin(command, stdin))
}

fn user_devices(http: &Http, token: &str, name: &str) -> Vec<Value> {
    let (status, body) = http.get(&format!("/users/{name}"), Some(token));
    assert_eq!(status, 200, "{body}");
    body["devices"].as_array().expect("devices").clone()
}

#[test]
fn two_people_exchange_verified_messages() {
    let server = Server::start();
    let alice = registered(&server, "alice");
    let bob = registered(&server, "bob");

    // Alice -> Bob with the text as an argument; Bob -> Alice through stdin.
    let sent = alice.json(&["send", "--v1", "bob", "hello bob"]);
    assert_eq!(sent[0]["to"], "bob");
    assert_eq!(sent[0]["state"], "stored");
    let run = with_stdin(
        &bob,
        &["send", "--v1", "alice"],
        "hi alice\nsecond line\n",
        false,
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stderr.contains("pinned alice's key"), "{run:?}");

    // Bob reads: verified text, then nothing left.
    let run = bob.exec(&["inbox"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("alice [pinned]: hello bob"), "{run:?}");
    assert!(!run.stdout.contains("UNVERIFIED"), "{run:?}");
    let run = bob.exec(&["inbox"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("No new messages"), "{run:?}");

    // Alice reads as JSON (the global flag after the subcommand works too).
    let run = alice.exec(&["inbox", "--json"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    let lines = run.json_lines();
    assert_eq!(lines.len(), 1, "{run:?}");
    let message = &lines[0];
    assert_eq!(message["from"], "bob");
    assert_eq!(message["to"], "alice");
    assert_eq!(message["text"], "hi alice\nsecond line");
    assert_eq!(message["authenticated"], true);
    assert_eq!(message["trust"], "pinned", "not compared: not verified");
    assert_eq!(message["verified"], false);
    assert_eq!(message["state"], "ok");
    assert!(message["id"].as_str().is_some_and(|id| id.len() == 36));
    assert!(
        message["sent_at"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z'))
    );
    assert!(message.get("error").is_none());
    assert!(alice.json(&["inbox"]).is_empty());

    // Acknowledged on the relay: nothing pending for either.
    let http = Http::new(&server.url);
    for user in [&alice, &bob] {
        let (status, inbox) = http.get("/messages/inbox", Some(&user.token()));
        assert_eq!(status, 200);
        assert_eq!(inbox["messages"], json!([]), "{}", user.name);
    }

    // History is kept on both sides, oldest first.
    let history = alice.json(&["history", "bob"]);
    assert_eq!(history.len(), 2);
    assert_eq!(history[0]["direction"], "out");
    assert_eq!(history[0]["text"], "hello bob");
    assert_eq!(history[0]["state"], "stored");
    assert_eq!(history[1]["direction"], "in");
    assert_eq!(history[1]["from"], "bob");
    let history = bob.exec(&["history", "alice"]);
    assert!(
        history.stdout.contains("alice [pinned]: hello bob"),
        "{history:?}"
    );
    assert!(
        history.stdout.contains("you -> alice: hi alice"),
        "{history:?}"
    );

    // Whoami, contacts, and matching safety numbers.
    let me = alice.json(&["whoami"]);
    assert_eq!(me[0]["username"], "alice");
    assert_eq!(me[0]["server"], server.url.as_str());
    assert_eq!(me[0]["newest_key_is_ours"], true);
    let contacts = alice.json(&["contacts"]);
    assert_eq!(contacts.len(), 1);
    assert_eq!(contacts[0]["username"], "bob");
    assert_eq!(contacts[0]["state"], "pinned");
    let a = alice.json(&["fingerprint", "bob"]);
    let b = bob.json(&["fingerprint", "alice"]);
    assert_eq!(a[0]["safety_number"], b[0]["safety_number"]);
    assert_eq!(a[0]["safety_number"].as_str().map(str::len), Some(71));
    let own = alice.json(&["fingerprint"]);
    assert_eq!(own[0]["fingerprint"], me[0]["fingerprint"]);
    // `trust` wants what was compared: a bare `trust bob` is a usage error.
    let run = alice.exec(&["trust", "bob"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("safety number"), "{run:?}");
    let number = a[0]["safety_number"].as_str().expect("number");
    let trusted = alice.json(&["trust", "bob", number]);
    assert_eq!(trusted[0]["state"], "verified");
    assert_eq!(alice.json(&["contacts"])[0]["state"], "verified");

    // --wait-delivered returns once Bob has fetched it.
    let waiting = alice
        .command(&[
            "--json",
            "send",
            "bob",
            "are you there?",
            "--wait-delivered",
            "--timeout",
            "30",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn send");
    let mut fetched = false;
    for _ in 0..100 {
        let run = bob.exec(&["--json", "inbox"]);
        assert_eq!(run.code, Some(0), "{run:?}");
        if run
            .json_lines()
            .iter()
            .any(|m| m["text"] == "are you there?")
        {
            fetched = true;
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(fetched, "bob never got the message");
    let run = Run::from_output(&waiting.wait_with_output().expect("send output"));
    assert_eq!(run.code, Some(0), "{run:?}");
    let out = run.json_lines();
    assert_eq!(out[0]["state"], "delivered", "{run:?}");
    let history = alice.json(&["history", "bob", "--limit", "1"]);
    assert_eq!(history[0]["state"], "delivered");
}

#[test]
fn a_substituted_key_is_refused_until_trusted() {
    let server = Server::start();
    let http = Http::new(&server.url);
    let alice = registered(&server, "alice");
    let bob = registered(&server, "bob");
    alice.ok(&["send", "--v1", "bob", "before"]);

    // The relay (here: anyone holding Bob's token) publishes another key for Bob.
    let (bob_token, _) = http.login("bob", &bob.password);
    let fake = kavro_proto::crypto::IdentityKeypair::generate();
    let (status, body) = http.post(
        "/keys/publish",
        Some(&bob_token),
        &json!({"identity_pubkey": fake.public().to_hex()}),
    );
    assert_eq!(status, 201, "{body}");

    let run = alice.exec(&["send", "--v1", "bob", "after"]);
    assert_eq!(run.code, Some(4), "{run:?}");
    assert!(run.stderr.contains("kavro fingerprint bob"), "{run:?}");
    assert!(run.stderr.contains("kavro trust bob"), "{run:?}");
    // Still refused; every read warns.
    assert_eq!(alice.exec(&["send", "--v1", "bob", "again"]).code, Some(4));
    for args in [&["inbox"][..], &["contacts"], &["history", "bob"]] {
        let run = alice.exec(args);
        assert_eq!(run.code, Some(0), "{args:?}: {run:?}");
        assert!(run.stderr.contains("CHANGED"), "{args:?}: {run:?}");
    }
    let contacts = alice.json(&["contacts"]);
    assert_eq!(contacts[0]["state"], "changed");
    assert_eq!(contacts[0]["changed_key"], fake.public().to_hex());
    let keys = alice.json(&["fingerprint", "bob"]);
    assert_eq!(keys[0]["state"], "changed");
    assert_ne!(keys[0]["changed_safety_number"], keys[0]["safety_number"]);
    // Comparing with the real Bob shows the mismatch: his number is the old one.
    let bobs = bob.json(&["fingerprint", "alice"]);
    assert_eq!(bobs[0]["safety_number"], keys[0]["safety_number"]);

    let shown = keys[0]["changed_safety_number"]
        .as_str()
        .expect("number")
        .to_owned();
    assert_eq!(
        keys[0]["changed_key_fingerprint"],
        fake.public().fingerprint().to_string()
    );

    // Between `fingerprint` and `trust` the relay shows a third key, which
    // the next send records: the number Alice compared is not that key's.
    let third = kavro_proto::crypto::IdentityKeypair::generate();
    let (status, body) = http.post(
        "/keys/publish",
        Some(&bob_token),
        &json!({"identity_pubkey": third.public().to_hex()}),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        alice.exec(&["send", "--v1", "bob", "refused"]).code,
        Some(4)
    );
    let run = alice.exec(&["trust", "bob", &shown]);
    assert_eq!(run.code, Some(4), "{run:?}");
    assert!(run.stderr.contains("kavro fingerprint bob"), "{run:?}");
    assert_eq!(alice.json(&["contacts"])[0]["state"], "changed");
    let keys = alice.json(&["fingerprint", "bob"]);
    assert_eq!(keys[0]["changed_key"], third.public().to_hex());
    // The key fingerprint works as well as the safety number.
    let key_id = keys[0]["changed_key_fingerprint"].as_str().expect("id");
    let trusted = alice.json(&["trust", "bob", key_id]);
    assert_eq!(trusted[0]["state"], "verified");
    assert_eq!(trusted[0]["key"], third.public().to_hex());
    assert!(alice.exec(&["inbox"]).stderr.is_empty());
    alice.ok(&["send", "--v1", "bob", "to the new key"]);

    // The real Bob cannot open what went to the substituted key: reported,
    // stored and acknowledged, never shown as verified.
    let got = bob.json(&["inbox"]);
    assert_eq!(got.len(), 2);
    assert_eq!(
        (got[0]["text"].as_str(), got[0]["authenticated"].as_bool()),
        (Some("before"), Some(true))
    );
    assert_eq!(got[1]["state"], "undecryptable");
    assert_eq!(got[1]["verified"], false);
    assert_eq!(got[1]["text"], Value::Null);
}

#[test]
fn tampered_messages_are_reported_stored_and_acknowledged() {
    let server = Server::start();
    let http = Http::new(&server.url);
    let alice = registered(&server, "alice");
    let bob = registered(&server, "bob");
    alice.ok(&["send", "--v1", "bob", "genuine"]);
    let alice_token = alice.token();
    let devices = user_devices(&http, &alice_token, "bob");
    let bob_id = devices[0]["user_id"].as_i64().expect("user id");
    let bob_key = kavro_proto::crypto::IdentityPublic::from_hex(
        devices[0]["identity_pubkey"].as_str().expect("key"),
    )
    .expect("key");

    // 1. A real envelope with one flipped byte: the outer box fails.
    let alice_pair = kavro_proto::crypto::IdentityKeypair::from_secret(
        kavro_proto::crypto::IdentitySecret::from_slice(
            &hex::decode(alice.identity_secret_hex()).expect("hex"),
        )
        .expect("secret"),
    );
    let payload = kavro_proto::crypto::Payload::new("alice", "bob", "tampered");
    let sealed = kavro_proto::crypto::seal(&alice_pair, &bob_key, &payload).expect("seal");
    let mut bytes = B64.decode(&sealed.ciphertext_b64).expect("b64");
    bytes[100] ^= 0x01;
    // 2. A valid outer box whose plaintext claims to be an envelope but is not.
    let eph = crypto_box::SecretKey::from([7u8; 32]);
    let salsa = crypto_box::SalsaBox::new(&crypto_box::PublicKey::from(*bob_key.as_bytes()), &eph);
    let nonce = [9u8; 24];
    let mut broken = nonce.to_vec();
    {
        use crypto_box::aead::Aead as _;
        broken.extend(
            salsa
                .encrypt(&nonce.into(), &b"\xFFKVR\x01not really an envelope"[..])
                .expect("box"),
        );
    }
    for (ciphertext, ephemeral) in [
        (B64.encode(&bytes), sealed.ephemeral_pubkey_hex.clone()),
        (
            B64.encode(&broken),
            hex::encode(eph.public_key().as_bytes()),
        ),
    ] {
        let (status, body) = http.post(
            "/messages/",
            Some(&alice_token),
            &json!({"recipient_id": bob_id, "ciphertext": ciphertext, "ephemeral_pubkey": ephemeral}),
        );
        assert_eq!(status, 201, "{body}");
    }

    let run = bob.exec(&["inbox"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert!(run.stdout.contains("alice [pinned]: genuine"), "{run:?}");
    assert_eq!(run.stdout.matches("UNDECRYPTABLE").count(), 2, "{run:?}");
    assert!(run.stdout.contains("could not be decrypted"), "{run:?}");
    assert!(run.stdout.contains("envelope not authentic"), "{run:?}");
    assert!(!run.stdout.contains("tampered"), "never shown: {run:?}");

    // Acknowledged on the relay, kept locally with the error state.
    let (_, inbox) = http.get("/messages/inbox", Some(&bob.token()));
    assert_eq!(inbox["messages"], json!([]));
    let history = bob.json(&["history", "alice"]);
    assert_eq!(history.len(), 3);
    assert_eq!(history[0]["authenticated"], true);
    for broken in &history[1..] {
        assert_eq!(broken["state"], "undecryptable", "{broken}");
        assert_eq!(broken["verified"], false);
        assert_eq!(broken["text"], Value::Null);
        assert!(broken["error"].as_str().is_some());
    }
}

#[test]
fn errors_have_documented_exit_codes_and_say_what_to_do() {
    let server = Server::start();
    let alice = registered(&server, "alice");
    registered(&server, "bob");

    let run = alice.exec(&["send", "--v1", "nobody", "hi"]);
    assert_eq!(run.code, Some(6), "{run:?}");
    assert!(run.stderr.contains("no user named \"nobody\""), "{run:?}");
    let run = alice.exec(&["--json", "send", "--v1", "nobody", "hi"]);
    let error: Value = serde_json::from_str(run.stderr.trim()).expect("JSON error");
    assert_eq!(error["exit_code"], 6);
    let run = alice.exec(&["send", "--v1", "not a name", "hi"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert_eq!(alice.exec(&["send"]).code, Some(2));
    assert_eq!(alice.exec(&["frobnicate"]).code, Some(2));

    // A fresh device that never logged in.
    let stranger = User::new("carol", &server.url);
    for args in [
        &["inbox"][..],
        &["send", "--v1", "alice", "hi"],
        &["whoami"],
    ] {
        let run = stranger.exec(args);
        assert_eq!(run.code, Some(3), "{args:?}: {run:?}");
        assert!(run.stderr.contains("kavro login"), "{args:?}: {run:?}");
    }
    // Wrong password.
    let mut wrong = User::new("alice", &server.url);
    wrong.password = "Wr0ng-password".into();
    let run = wrong.exec(&["login", "alice"]);
    assert_eq!(run.code, Some(3), "{run:?}");
    assert!(
        run.stderr.contains("Incorrect username or password"),
        "{run:?}"
    );
    // No password source at all is a usage error.
    let run = with_stdin(&stranger, &["register", "carol"], "", true);
    assert_eq!(run.code, Some(2), "{run:?}");
    // --password-stdin works without KAVRO_PASSWORD.
    let run = with_stdin(
        &stranger,
        &["register", "carol", "--password-stdin"],
        "Carols-Pw-1\n",
        true,
    );
    assert_eq!(run.code, Some(0), "{run:?}");

    // Logged out: refused with a hint, and the old token is revoked.
    let token = alice.token();
    alice.ok(&["logout"]);
    let (status, _) = Http::new(&server.url).get("/auth/me", Some(&token));
    assert_eq!(status, 401);
    let run = alice.exec(&["send", "--v1", "bob", "hi"]);
    assert_eq!(run.code, Some(3), "{run:?}");
    assert!(run.stderr.contains("kavro login alice"), "{run:?}");
    alice.ok(&["login", "alice"]);
    alice.ok(&["send", "--v1", "bob", "back again"]);

    // The relay goes away.
    drop(server);
    for args in [
        &["send", "--v1", "bob", "anyone?"][..],
        &["inbox"],
        &["whoami"],
    ] {
        let run = alice.exec(args);
        assert_eq!(run.code, Some(5), "{args:?}: {run:?}");
        assert!(
            run.stderr.contains("cannot reach the Kavro relay"),
            "{run:?}"
        );
        assert!(run.stderr.contains("refused"), "{run:?}");
    }
    // Local reads still work offline.
    let history = alice.json(&["history", "bob"]);
    assert_eq!(history.len(), 1);
}

#[test]
fn login_on_a_new_device_generates_and_publishes_a_new_key() {
    let server = Server::start();
    let http = Http::new(&server.url);
    let alice = registered(&server, "alice");
    let bob = registered(&server, "bob");
    alice.ok(&["send", "--v1", "bob", "hi"]);
    let old = bob.json(&["whoami"]);

    let laptop = User::new("bob", &server.url);
    let out = laptop.json(&["login", "bob"]);
    assert_eq!(out[0]["new_key"], true);
    assert_ne!(out[0]["public_key"], old[0]["public_key"]);
    let devices = user_devices(&http, &laptop.token(), "bob");
    assert_eq!(devices.len(), 2);
    assert_eq!(devices[1]["identity_pubkey"], out[0]["public_key"]);

    // The old device learns it is no longer the newest; Alice sees a change.
    assert_eq!(bob.json(&["whoami"])[0]["newest_key_is_ours"], false);
    assert_eq!(
        alice.exec(&["send", "--v1", "bob", "which one?"]).code,
        Some(4)
    );
    // Logging in again on the same device keeps its key.
    let again = laptop.json(&["login", "bob"]);
    assert_eq!(again[0]["new_key"], false);
    assert_eq!(again[0]["public_key"], out[0]["public_key"]);
}

/// Waits for `child` to exit, up to `secs` seconds (then kills it and fails).
fn wait_exit(child: &mut std::process::Child, secs: u64) -> Option<i32> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(secs);
    while std::time::Instant::now() < deadline {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status.code();
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let _ = child.kill();
    panic!("kavro did not exit within {secs} s");
}

#[test]
fn inbox_watch_prints_messages_as_they_arrive() {
    use std::io::{BufRead as _, BufReader, Read as _};

    let server = Server::start();
    let alice = registered(&server, "alice");
    let bob = registered(&server, "bob");

    // Watching for exactly one message: what a script waiting for a reply does.
    let mut waiter = bob
        .command(&["--json", "inbox", "--watch", "--limit", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn inbox --watch");
    let mut stderr = BufReader::new(waiter.stderr.take().expect("stderr"));
    let mut line = String::new();
    stderr.read_line(&mut line).expect("read stderr");
    assert!(line.contains("Waiting for new messages"), "{line}");
    alice.ok(&["send", "--v1", "bob", "ping"]);
    assert_eq!(wait_exit(&mut waiter, 30), Some(0));
    let mut stdout = String::new();
    waiter
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut stdout)
        .expect("read stdout");
    let message: Value = serde_json::from_str(stdout.trim()).expect("one JSON line");
    assert_eq!(message["text"], "ping");
    assert_eq!(message["authenticated"], true);
    assert_eq!(message["trust"], "pinned", "not compared: not verified");
    assert_eq!(message["verified"], false);

    // Ctrl-C ends a watch cleanly.
    let mut watch = bob
        .command(&["inbox", "--watch"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn inbox --watch");
    let mut stderr = BufReader::new(watch.stderr.take().expect("stderr"));
    let mut line = String::new();
    stderr.read_line(&mut line).expect("read stderr");
    assert!(line.contains("Ctrl-C"), "{line}");
    let status = std::process::Command::new("kill")
        .args(["-INT", &watch.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    assert_eq!(wait_exit(&mut watch, 10), Some(0));
}

/// The account commands against the real relay's routes (#9 points 6-8):
/// keys and retiring one, a password change, logging out everywhere, and
/// deleting the account.
#[test]
fn account_commands_keys_password_logout_everywhere_and_deletion() {
    let server = Server::start();
    let http = Http::new(&server.url);
    let alice = registered(&server, "alice");
    // Alice's second device: a second key, now her newest.
    let laptop = User::new("alice", &server.url);
    assert_eq!(laptop.json(&["login", "alice"])[0]["new_key"], true);
    let bob = registered(&server, "bob");

    // `keys`: both, this device's marked; the key in use cannot be retired.
    let keys = alice.json(&["keys"]);
    assert_eq!(keys.len(), 2, "{keys:?}");
    let mine = keys.iter().find(|k| k["current"] == true).expect("current");
    let other = keys.iter().find(|k| k["current"] == false).expect("other");
    assert_eq!(mine["device_name"], "kavro", "shown to the owner");
    let run = alice.exec(&["keys", "retire", &mine["id"].to_string()]);
    assert_eq!(run.code, Some(2), "{run:?}");
    // Device names are not shown to others.
    let (bob_token, _) = http.login("bob", &bob.password);
    let devices = user_devices(&http, &bob_token, "alice");
    assert!(
        devices.iter().all(|d| d["device_name"].is_null()),
        "{devices:?}"
    );

    // Bob pins the newest key (the laptop's); Alice retires it: a key change.
    bob.ok(&["send", "--v1", "alice", "to the laptop"]);
    let retired = alice.json(&["keys", "retire", &other["id"].to_string()]);
    assert_eq!(retired[0]["retired"], true);
    assert_eq!(alice.json(&["keys"]).len(), 1);
    assert_eq!(bob.exec(&["send", "--v1", "alice", "again"]).code, Some(4));

    // `password`: the other session is refused afterwards; a wrong current
    // password is refused (exit 3).
    let run = with_stdin(
        &alice,
        &["password", "--password-stdin"],
        "Wr0ng-password\nAn0ther-pass!\n",
        false,
    );
    assert_eq!(run.code, Some(3), "{run:?}");
    let run = with_stdin(
        &alice,
        &["--json", "password", "--password-stdin"],
        "Corr3ct-horse\nN3w-password!\n",
        false,
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    alice.ok(&["whoami"]);
    assert_eq!(laptop.exec(&["whoami"]).code, Some(3));

    // `logout --everywhere`: every token of the account is refused.
    let (other_token, _) = http.login("alice", "N3w-password!");
    alice.json(&["logout", "--everywhere"]);
    let (status, _) = http.get("/auth/me", Some(&other_token));
    assert_eq!(status, 401);
    assert_eq!(alice.exec(&["whoami"]).code, Some(3));

    // `delete-account`: needs the username typed, or --yes and the password.
    let run = with_stdin(
        &alice,
        &["login", "alice", "--password-stdin"],
        "N3w-password!\n",
        true,
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        alice.exec(&["delete-account"]).code,
        Some(2),
        "no terminal, no --yes"
    );
    let run = with_stdin(
        &alice,
        &["delete-account", "--yes", "--password-stdin"],
        "Wr0ng-password\n",
        true,
    );
    assert_eq!(run.code, Some(3), "{run:?}");
    let run = with_stdin(
        &alice,
        &["--json", "delete-account", "--yes", "--password-stdin"],
        "N3w-password!\n",
        true,
    );
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(run.json_lines()[0]["deleted"], true);
    assert!(
        !alice
            .data_dir
            .path()
            .join("profiles/default/secrets.json")
            .exists(),
        "the profile's secrets are gone"
    );
    assert_eq!(alice.exec(&["whoami"]).code, Some(3));
    assert_eq!(
        bob.exec(&["send", "--v1", "alice", "anyone?"]).code,
        Some(6)
    );
    // The name stays reserved.
    let thief = User::new("alice", &server.url);
    let run = thief.exec(&["register", "alice"]);
    assert_eq!(run.code, Some(2), "{run:?}");
    assert!(run.stderr.contains("already taken"), "{run:?}");
}
