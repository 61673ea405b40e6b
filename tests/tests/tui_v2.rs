//! Kavro v2 in the chat app for real: three people registered with the real
//! `kavro` against a real `kavro-server`, three apps in tmux. Alice creates
//! a group from the app's dialog, the three exchange messages (each sees the
//! others' lines), alice removes carol from the member list, carol's app
//! shows the removal and does not get the next message.

use kavro_e2e::tmux::Tmux;
use kavro_e2e::{Server, User, skip_unless};

fn registered(server: &Server, name: &str) -> User {
    let user = User::new(name, &server.url);
    user.ok(&["register", name]);
    user
}

/// Opens `#team` in `name`'s app (Ctrl-N takes a group's name too) and sends `text`.
fn say(tmux: &Tmux, name: &str, text: &str) {
    tmux.keys(name, &["C-n"]);
    tmux.wait_for(name, "New conversation");
    tmux.type_text(name, "#team");
    tmux.keys(name, &["Enter"]);
    tmux.wait_for(name, "#team · ");
    tmux.type_text(name, text);
    tmux.keys(name, &["Enter"]);
}

#[test]
fn three_apps_create_a_group_chat_and_remove_a_member() {
    if skip_unless(Tmux::available(), "tmux") {
        return;
    }
    let server = Server::start();
    let people = ["alice", "bob", "carol"];
    let users: Vec<User> = people.iter().map(|n| registered(&server, n)).collect();

    let tmux = Tmux::new("v2");
    for (name, user) in people.iter().zip(&users) {
        tmux.start(name, user);
    }
    for name in people {
        tmux.wait_for(name, "online");
    }

    // Alice creates #team from the dialog (Ctrl-G: name, Tab, members, Enter).
    tmux.keys("alice", &["C-g"]);
    tmux.wait_for("alice", "New group");
    tmux.type_text("alice", "team");
    tmux.keys("alice", &["Tab"]);
    tmux.type_text("alice", "bob carol");
    tmux.keys("alice", &["Enter"]);
    tmux.wait_for("alice", "Created #team");
    // The others' apps join it on their own, with the system line.
    for name in ["bob", "carol"] {
        tmux.wait_for(name, "#team 3");
        tmux.wait_for(name, "this device joined (added by alice)");
    }

    // Everyone writes; everyone sees the others' lines.
    say(&tmux, "alice", "hello from alice");
    say(&tmux, "bob", "bob is here");
    say(&tmux, "carol", "carol says hi");
    for name in people {
        for text in ["hello from alice", "bob is here", "carol says hi"] {
            tmux.wait_for(name, text);
        }
    }

    // Alice removes carol from the member list (Ctrl-F, r, the name).
    tmux.keys("alice", &["C-f"]);
    tmux.wait_for("alice", "Members of #team");
    let members = tmux.wait_for("alice", "(this one)");
    assert!(members.contains("carol"), "{members}");
    tmux.keys("alice", &["r"]);
    tmux.wait_for("alice", "Remove from #team");
    tmux.type_text("alice", "carol");
    tmux.keys("alice", &["Enter"]);
    tmux.wait_for("alice", "Removed carol");
    tmux.wait_for("carol", "alice removed this device");
    tmux.wait_for("carol", "no longer a member");
    tmux.wait_for("bob", "alice removed carol");

    // The next message reaches bob, never carol.
    tmux.type_text("alice", "carol is gone");
    tmux.keys("alice", &["Enter"]);
    tmux.wait_for("bob", "carol is gone");
    let carol = tmux.screen("carol");
    assert!(!carol.contains("carol is gone"), "{carol}");
    // Nor is it in carol's local history (read once her app has quit).
    tmux.keys("carol", &["C-q"]);
    tmux.wait_for("carol", "EXITED 0");
    let history = users[2].ok(&["history", "#team"]);
    assert!(!history.contains("carol is gone"), "{history}");
    assert!(history.contains("alice removed this device"), "{history}");
}

/// An account created in the app's login form (F2) becomes the account's
/// Kavro v2 device too, as `kavro register` makes it.
#[test]
fn an_account_registered_in_the_app_is_a_v2_device() {
    if skip_unless(Tmux::available(), "tmux") {
        return;
    }
    let server = Server::start();
    let dave = User::new("dave", &server.url);
    let tmux = Tmux::new("appreg");
    tmux.start("dave", &dave);
    tmux.wait_for("dave", "Press F2 to create an account");
    tmux.keys("dave", &["F2"]);
    tmux.type_text("dave", "dave");
    tmux.keys("dave", &["Tab"]);
    tmux.type_text("dave", &dave.password);
    tmux.keys("dave", &["Enter"]);
    tmux.wait_for("dave", "No conversations yet");
    tmux.keys("dave", &["C-q"]);
    tmux.wait_for("dave", "EXITED 0");
    let devices = dave.ok(&["device", "list"]);
    assert!(devices.contains("this device"), "{devices}");
}

/// A 1:1 between two Kavro v2 apps goes over MLS, in the person's one
/// entry (no second "(mls)" chat), and both sides' histories say so.
#[test]
fn a_one_to_one_between_two_v2_apps_goes_over_mls_in_one_entry() {
    if skip_unless(Tmux::available(), "tmux") {
        return;
    }
    let server = Server::start();
    let alice = registered(&server, "alice");
    let bob = registered(&server, "bob");
    let tmux = Tmux::new("direct");
    tmux.start("alice", &alice);
    tmux.start("bob", &bob);
    tmux.wait_for("alice", "online");
    tmux.wait_for("bob", "online");

    tmux.keys("alice", &["C-n"]);
    tmux.wait_for("alice", "New conversation");
    tmux.type_text("alice", "bob");
    tmux.keys("alice", &["Enter"]);
    tmux.wait_for("alice", "bob · ");
    tmux.type_text("alice", "hello over mls");
    tmux.keys("alice", &["Enter"]);
    let shown = tmux.wait_for("bob", "hello over mls");
    assert!(!shown.contains("(mls)"), "{shown}");
    // bob answers in alice's entry: one conversation on both sides.
    tmux.keys("bob", &["C-n"]);
    tmux.wait_for("bob", "New conversation");
    tmux.type_text("bob", "alice");
    tmux.keys("bob", &["Enter"]);
    tmux.wait_for("bob", "alice · ");
    tmux.type_text("bob", "and back");
    tmux.keys("bob", &["Enter"]);
    let shown = tmux.wait_for("alice", "and back");
    assert!(!shown.contains("(mls)"), "{shown}");

    for (name, user, peer) in [("alice", &alice, "bob"), ("bob", &bob, "alice")] {
        tmux.keys(name, &["C-q"]);
        tmux.wait_for(name, "EXITED 0");
        let history = user.json(&["history", peer]);
        let texts: Vec<_> = history
            .iter()
            .filter(|l| l["kind"] == "text")
            .map(|l| {
                (
                    l["text"].as_str().unwrap_or("").to_owned(),
                    l["protocol"].clone(),
                )
            })
            .collect();
        assert_eq!(
            texts,
            vec![
                ("hello over mls".to_owned(), serde_json::json!("mls")),
                ("and back".to_owned(), serde_json::json!("mls")),
            ],
            "{history:?}"
        );
    }
}
