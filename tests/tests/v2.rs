//! Kavro v2 (MLS) with the real binaries: three people, bob with two
//! installations (linked with a code, later revoked), a group of three with
//! messages in every direction, a removal, and the refusals' exit codes.

mod v2_support;

use kavro_e2e::Server;

use self::v2_support::{line, linked, registered, v2_texts};

#[test]
fn a_group_of_three_with_a_linked_and_revoked_device() {
    let server = Server::start();
    let alice = registered(&server, "alice");
    let bob = registered(&server, "bob");
    let carol = registered(&server, "carol");

    // bob's second installation: log in, ask for a link, approve the code on
    // the first one.
    let (bob2, devices) = linked(&server, &bob);
    assert_eq!(devices.len(), 2);
    assert_eq!(devices[0]["this_device"], true);
    assert_eq!(devices[1]["linked_by"], devices[0]["device_id"]);

    // alice creates the group; all four installations take part.
    let created = alice.json(&[
        "group", "create", "team", "--member", "bob", "--member", "carol",
    ]);
    assert_eq!(created[0]["group"], "#team");
    for user in [&bob, &bob2, &carol] {
        assert!(v2_texts(user).is_empty());
    }
    alice.json(&["send", "#team", "hello team"]);
    for user in [&bob, &bob2, &carol] {
        assert_eq!(v2_texts(user), vec![line("#team", "alice", "hello team")]);
    }
    let run = bob2.exec(&["send", "#team", "from bob's laptop"]);
    assert_eq!(run.code, Some(0), "{run:?}");
    assert_eq!(
        v2_texts(&alice),
        vec![line("#team", "bob", "from bob's laptop")]
    );
    assert_eq!(
        v2_texts(&bob),
        vec![line("#team", "bob", "from bob's laptop")]
    );
    assert_eq!(
        v2_texts(&carol),
        vec![line("#team", "bob", "from bob's laptop")]
    );
    let listed = carol.json(&["group", "list"]);
    assert_eq!(listed[0]["conversation"], "#team");
    assert_eq!(listed[0]["devices"], 4);
    let members = alice.json(&["group", "members", "team"]);
    assert_eq!(members.len(), 3);

    // bob revokes his laptop: it reads nothing sent after.
    let laptop = devices[1]["device_id"].as_i64().expect("id").to_string();
    bob.json(&["device", "revoke", &laptop]);
    alice.json(&["send", "#team", "after the revocation"]);
    let run = bob2.exec(&["--json", "inbox"]);
    assert_ne!(run.code, Some(0), "{run:?}");
    assert!(!run.stdout.contains("after the revocation"), "{run:?}");
    assert_eq!(
        v2_texts(&bob),
        vec![line("#team", "alice", "after the revocation")]
    );
    assert_eq!(
        v2_texts(&carol),
        vec![line("#team", "alice", "after the revocation")]
    );

    // carol is removed: she sees nothing after.
    alice.json(&["group", "remove", "team", "carol"]);
    alice.json(&["send", "#team", "carol is gone"]);
    assert!(v2_texts(&carol).is_empty());
    assert_eq!(
        v2_texts(&bob),
        vec![line("#team", "alice", "carol is gone")]
    );
    let history = alice.json(&["history", "#team"]);
    let texts: Vec<&str> = history
        .iter()
        .filter(|l| l["kind"] == "text")
        .filter_map(|l| l["text"].as_str())
        .collect();
    assert_eq!(
        texts,
        vec![
            "hello team",
            "from bob's laptop",
            "after the revocation",
            "carol is gone"
        ]
    );

    // Refusals and their exit codes.
    assert_eq!(alice.exec(&["send", "#nope", "x"]).code, Some(6));
    assert_eq!(
        alice
            .exec(&["group", "create", "bad name", "--member", "bob"])
            .code,
        Some(2)
    );
    assert_eq!(
        alice
            .exec(&["group", "create", "team", "--member", "bob"])
            .code,
        Some(2)
    );
    assert_eq!(
        alice
            .exec(&["group", "create", "x", "--member", "nobody"])
            .code,
        Some(6)
    );
    assert_eq!(carol.exec(&["send", "#team", "let me in"]).code, Some(1));
}
