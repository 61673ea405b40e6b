//! Kavro v2 1:1 chats and the security points with the real binaries, on
//! SQLite and (with `KAVRO_TEST_DATABASE_URL`) PostgreSQL: three people,
//! alice and bob with two installations each; a 1:1 chat over MLS between
//! all four of their devices, a v1 contact beside it, a group of three, a
//! device linked and revoked (it reads nothing after), two members updating
//! their keys at once (one epoch, the same for all), and a device that was
//! offline across many epochs catching up in order.

mod v2_support;

use kavro_e2e::{Server, ServerOptions, User};
use kavro_server::testing::TestDatabase;
use serde_json::Value;

use self::v2_support::{line, linked, registered, v2_texts};

/// Epochs the offline device misses (each a key update by another member).
const OFFLINE_EPOCHS: usize = 12;

fn epoch(user: &User, conversation: &str) -> u64 {
    user.json(&["group", "list"])
        .iter()
        .find(|c| c["conversation"] == conversation)
        .and_then(|c| c["epoch"].as_u64())
        .unwrap_or_else(|| panic!("{} has no {conversation}", user.name))
}

fn story(server: &Server) {
    let alice = registered(server, "alice");
    let bob = registered(server, "bob");
    let carol = registered(server, "carol");
    let (alice2, _) = linked(server, &alice);
    let (bob2, bob_devices) = linked(server, &bob);

    // 1:1 over MLS: every device of both accounts is in it.
    let sent = alice.json(&["send", "bob", "hello bob"]);
    assert_eq!(sent[0]["protocol"], "mls");
    assert_eq!(sent[0]["to"], "bob");
    // A 1:1 chat is labelled with the other person.
    for user in [&bob, &bob2] {
        assert_eq!(v2_texts(user), vec![line("alice", "alice", "hello bob")]);
    }
    assert_eq!(v2_texts(&alice2), vec![line("bob", "alice", "hello bob")]);
    let run = bob2.run_with_stdin(&["send", "alice", "-"], "from bob's laptop\n");
    assert!(run.status.success(), "{run:?}");
    for user in [&alice, &alice2] {
        assert_eq!(
            v2_texts(user),
            vec![line("bob", "bob", "from bob's laptop")]
        );
    }
    let history = alice2.json(&["history", "bob"]);
    let texts: Vec<&str> = history
        .iter()
        .filter(|l| l["kind"] == "text")
        .filter_map(|l| l["text"].as_str())
        .collect();
    assert_eq!(texts, vec!["hello bob", "from bob's laptop"]);
    assert!(history.iter().all(|l| l["protocol"] == "mls"));
    assert_eq!(alice.json(&["group", "list"]).len(), 1, "one 1:1 chat");

    // The safety number is the same on both sides and covers both devices.
    let a_number = alice.json(&["fingerprint", "bob"]);
    let b_number = bob2.json(&["fingerprint", "alice"]);
    let v2 = |lines: &[Value]| {
        lines
            .iter()
            .find(|l| l["protocol"] == "mls")
            .map(|l| l["safety_number"].clone())
            .expect("a v2 safety number")
    };
    assert_eq!(v2(&a_number), v2(&b_number));
    let number = v2(&a_number).as_str().expect("digits").to_owned();
    let trusted = alice.json(&["trust", "bob", &number]);
    assert_eq!(trusted[0]["verified"], true);

    // dave has no v2 device (an older client): v1, marked so.
    let dave = User::new("dave", &server.url);
    kavro_e2e::Http::new(&server.url).register("dave", &dave.password);
    dave.json(&["login", "dave"]);
    let sent = alice.json(&["send", "dave", "v1 still works"]);
    assert_eq!(sent[0]["protocol"], "v1");
    let got = dave.json(&["inbox"]);
    assert_eq!(got[0]["text"], "v1 still works");
    assert_eq!(got[0]["protocol"], "v1");
    // The reply comes over v1 too; alice's device (v2) marks it in text,
    // dave's installation (v1 only) has nothing to tell apart. (v1 has one
    // identity key per account: the one alice's laptop published when it
    // logged in last, so the laptop reads it.)
    let replied = dave.json(&["send", "alice", "v1 reply"]);
    assert_eq!(replied[0]["protocol"], "v1");
    let shown = alice2.ok(&["inbox"]);
    let reply = shown
        .lines()
        .find(|l| l.contains("v1 reply"))
        .unwrap_or_else(|| panic!("the reply in alice's inbox: {shown}"));
    assert!(reply.starts_with("[v1] "), "{reply}");
    alice.json(&["send", "dave", "second v1 line"]);
    let unmarked = dave.ok(&["inbox"]);
    assert!(
        unmarked.contains("second v1 line") && !unmarked.contains("[v1]"),
        "{unmarked}"
    );

    // A group of three.
    alice.json(&[
        "group", "create", "team", "--member", "bob", "--member", "carol",
    ]);
    alice.json(&["send", "#team", "hello team"]);
    for user in [&bob2, &carol, &alice2] {
        assert_eq!(v2_texts(user), vec![line("#team", "alice", "hello team")]);
    }
    // bob's first device also sees what his laptop sent in the 1:1 chat.
    assert_eq!(
        v2_texts(&bob),
        vec![
            line("alice", "bob", "from bob's laptop"),
            line("#team", "alice", "hello team")
        ]
    );

    // bob revokes his laptop: it reads nothing sent after, in any conversation.
    let laptop = bob_devices[1]["device_id"]
        .as_i64()
        .expect("id")
        .to_string();
    bob.json(&["device", "revoke", &laptop]);
    alice.json(&["send", "bob", "after the revocation"]);
    alice.json(&["send", "#team", "team after the revocation"]);
    let run = bob2.exec(&["--json", "inbox"]);
    assert!(!run.stdout.contains("after the revocation"), "{run:?}");
    assert_eq!(
        v2_texts(&bob),
        vec![
            line("alice", "alice", "after the revocation"),
            line("#team", "alice", "team after the revocation"),
        ]
    );
    carol.json(&["inbox"]);
    alice2.json(&["inbox"]);

    // Two members update their keys at once: both succeed (the loser
    // re-syncs and commits again), and everyone ends in the same epoch.
    let before = epoch(&alice, "#team");
    let racing: Vec<_> = [&bob, &carol]
        .iter()
        .map(|user| {
            user.command(&["--json", "group", "update", "team"])
                .spawn()
                .expect("kavro group update")
        })
        .collect();
    for mut child in racing {
        assert!(child.wait().expect("exits").success());
    }
    let epochs: Vec<u64> = [&alice, &alice2, &bob, &carol]
        .iter()
        .map(|u| {
            u.json(&["inbox"]);
            epoch(u, "#team")
        })
        .collect();
    assert_eq!(epochs, vec![before + 2; 4], "no fork");

    // alice's laptop is offline while the group moves on many epochs.
    for i in 0..OFFLINE_EPOCHS {
        let user = if i % 2 == 0 { &bob } else { &carol };
        user.json(&["group", "update", "team"]);
        user.json(&["send", "#team", &format!("epoch {i}")]);
    }
    let caught: Vec<String> = v2_texts(&alice2)
        .into_iter()
        .map(|(_, _, text)| text)
        .collect();
    let expected: Vec<String> = (0..OFFLINE_EPOCHS).map(|i| format!("epoch {i}")).collect();
    assert_eq!(caught, expected, "every message, in order");
    assert_eq!(epoch(&alice2, "#team"), before + 2 + OFFLINE_EPOCHS as u64);
}

#[test]
fn one_to_one_and_group_chats_across_devices_on_sqlite() {
    story(&Server::start());
}

#[test]
fn one_to_one_and_group_chats_across_devices_on_postgres() {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let Some(db) = runtime.block_on(TestDatabase::create()) else {
        return;
    };
    let server = Server::start_with(&ServerOptions {
        env: vec![
            ("KAVRO_DATABASE_URL".to_owned(), db.url.clone()),
            (
                "KAVRO_JWT_SECRET".to_owned(),
                "v2-chat-tests-3d9a7c1e5b2f8406-not-a-real-secret".to_owned(),
            ),
            (
                "KAVRO_FERNET_KEYS".to_owned(),
                kavro_server::fieldcrypt::FieldCrypt::generate_key(),
            ),
        ],
        ..ServerOptions::default()
    });
    story(&server);
    drop(server);
    drop(db);
}
